//! Roles on a real cluster: CREATE ROLE / CREATE USER, ALTER ROLE and DROP
//! ROLE by the superuser, then logins as those roles with SCRAM-SHA-256
//! through the cluster endpoint, a reader and psql.
//!
//! Goal: roles live in the catalog on the volume, so the writer, its readers
//! and a restarted cluster all check logins against them; a wrong password
//! or an unknown role is 28P01 and a NOLOGIN role 28000, and no password
//! ever reaches a log. Method: tokio-postgres and psql with each role's
//! password; SQLSTATEs of the refused logins; a search of every process log
//! for the passwords at the end.

use borealis_integration::{Cluster, sqlstate};

/// Passwords of the test's roles: distinctive, so that the log search cannot
/// match anything else.
const ALICE_PASSWORD: &str = "alice-Pw-7f3e1";
const ALICE_NEW_PASSWORD: &str = "alice-Pw-new-93b2";
const WRONG_PASSWORD: &str = "wrong-Pw-51c0d";
const BOSS_PASSWORD: &str = "boss-Pw-0a9d4";

fn conninfo(port: u16, user: &str, password: &str) -> String {
    format!("host=127.0.0.1 port={port} user={user} password={password} dbname=postgres connect_timeout=10")
}

/// Connects as `user`; the SQLSTATE of the refusal if the server refused.
async fn login(port: u16, user: &str, password: &str) -> Result<tokio_postgres::Client, String> {
    match tokio_postgres::connect(&conninfo(port, user, password), tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(client)
        }
        Err(error) => Err(sqlstate(&error).unwrap_or_else(|| format!("no SQLSTATE: {error}"))),
    }
}

/// Logs in as `user` on `port` until it succeeds or 5 s pass (a reader
/// learns about a new role when its read point passes the commit).
async fn login_when_visible(port: u16, user: &str, password: &str) -> Result<tokio_postgres::Client, String> {
    let mut last = Err(String::new());
    for _ in 0..50 {
        last = login(port, user, password).await;
        if last.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    last
}

async fn current_user(client: &tokio_postgres::Client) -> anyhow::Result<(String, String)> {
    let row = client.query_one("SELECT current_user, session_user", &[]).await?;
    Ok((row.get(0), row.get(1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_log_in_with_their_passwords() -> anyhow::Result<()> {
    let mut cluster = Cluster::start_new(1)?;
    let port = cluster.ports.cluster;
    let admin = cluster.connect(port).await?;
    admin.batch_execute(&format!("CREATE USER alice PASSWORD '{ALICE_PASSWORD}'")).await?;
    admin.batch_execute(&format!("CREATE ROLE boss WITH LOGIN SUPERUSER PASSWORD '{BOSS_PASSWORD}'")).await?;
    admin.batch_execute(&format!("CREATE ROLE auditors PASSWORD '{ALICE_PASSWORD}'")).await?;
    admin.batch_execute("CREATE TABLE notes (id int PRIMARY KEY, body text)").await?;

    // Alice logs in as herself, is no superuser, and may not create roles.
    let alice = login(port, "alice", ALICE_PASSWORD).await.map_err(anyhow::Error::msg)?;
    assert_eq!(current_user(&alice).await?, ("alice".to_string(), "alice".to_string()));
    let superuser: String = alice.query_one("SHOW is_superuser", &[]).await?.get(0);
    assert_eq!(superuser, "off");
    let error = alice.batch_execute("CREATE ROLE mallory").await.expect_err("alice created a role");
    assert_eq!(sqlstate(&error).as_deref(), Some("42501"), "{error}");
    alice.batch_execute("INSERT INTO notes VALUES (1, 'from alice')").await?;

    // A superuser from the catalog may manage roles.
    let boss = login(port, "boss", BOSS_PASSWORD).await.map_err(anyhow::Error::msg)?;
    let superuser: String = boss.query_one("SHOW is_superuser", &[]).await?.get(0);
    assert_eq!(superuser, "on");
    boss.batch_execute("CREATE ROLE temp; DROP ROLE temp").await?;

    // Refusals: wrong password and unknown role look the same; NOLOGIN is 28000.
    assert_eq!(login(port, "alice", WRONG_PASSWORD).await.err().as_deref(), Some("28P01"));
    assert_eq!(login(port, "nobody", WRONG_PASSWORD).await.err().as_deref(), Some("28P01"));
    assert_eq!(login(port, "auditors", ALICE_PASSWORD).await.err().as_deref(), Some("28000"));
    assert_eq!(login(port, "auditors", WRONG_PASSWORD).await.err().as_deref(), Some("28P01"));

    // psql: its login, and \du listing the roles as PostgreSQL 15's psql does.
    let (ok, out, err) =
        cluster.psql_conninfo(&format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"), "\\du")?;
    assert!(ok, "psql \\du failed: {err}");
    for line in [
        "alice     |                                                            | {}",
        "auditors  | Cannot login                                               | {}",
        "boss      | Superuser                                                  | {}",
        "postgres  | Superuser, Create role, Create DB, Replication, Bypass RLS | {}",
    ] {
        let unaligned = line.split('|').map(str::trim).collect::<Vec<_>>().join("|");
        assert!(out.lines().any(|l| l == unaligned), "\\du lacks `{unaligned}`:\n{out}");
    }

    // A reader checks logins against the same catalog.
    let reader_port = cluster.ports.readers[0];
    let on_reader = login_when_visible(reader_port, "alice", ALICE_PASSWORD).await.map_err(anyhow::Error::msg)?;
    assert_eq!(current_user(&on_reader).await?.0, "alice");
    assert_eq!(login(reader_port, "alice", WRONG_PASSWORD).await.err().as_deref(), Some("28P01"));

    // ALTER ROLE: a new password replaces the old; NOLOGIN stops logins.
    admin.batch_execute(&format!("ALTER ROLE alice PASSWORD '{ALICE_NEW_PASSWORD}'")).await?;
    assert_eq!(login(port, "alice", ALICE_PASSWORD).await.err().as_deref(), Some("28P01"));
    login(port, "alice", ALICE_NEW_PASSWORD).await.map_err(anyhow::Error::msg)?;

    // Roles survive a restart of the whole cluster.
    drop((alice, boss, on_reader, admin));
    cluster.stop()?;
    cluster.start()?;
    let alice = login(port, "alice", ALICE_NEW_PASSWORD).await.map_err(anyhow::Error::msg)?;
    let count: i64 = alice.query_one("SELECT count(*) FROM notes", &[]).await?.get(0);
    assert_eq!(count, 1);
    let admin = cluster.connect(port).await?;
    admin.batch_execute("ALTER ROLE alice NOLOGIN").await?;
    assert_eq!(login(port, "alice", ALICE_NEW_PASSWORD).await.err().as_deref(), Some("28000"));
    admin.batch_execute("DROP ROLE alice").await?;
    assert_eq!(login(port, "alice", ALICE_NEW_PASSWORD).await.err().as_deref(), Some("28P01"));

    // No password, right or wrong, is in any log.
    let logs = cluster.log();
    let mut texts = vec![logs];
    for entry in std::fs::read_dir(cluster.data_dir().join("logs"))?.flatten() {
        texts.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    for password in [ALICE_PASSWORD, ALICE_NEW_PASSWORD, WRONG_PASSWORD, BOSS_PASSWORD] {
        assert!(!texts.iter().any(|text| text.contains(password)), "a log holds the password {password}");
    }
    Ok(())
}
