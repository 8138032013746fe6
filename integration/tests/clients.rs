//! Unmodified PostgreSQL tools against a running cluster: pgbench
//! initialises its tables (COPY, VACUUM, ALTER TABLE ADD PRIMARY KEY) and
//! runs TPC-B and select-only through the cluster endpoint, and psql's
//! `\copy` streams CSV in, refusing bad rows without writing any, and
//! `\copy ... to` / `COPY ... TO STDOUT` stream it back out.

use borealis_integration::{Cluster, PASSWORD};
use std::process::Command;
use std::time::Duration;

/// Runs pgbench with `args` against `port`; returns its combined output, failing on a non-zero exit.
fn pgbench(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(args)
        .arg("postgres")
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .map_err(|e| anyhow::anyhow!("failed to run pgbench (make deps installs it): {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    anyhow::ensure!(output.status.success(), "pgbench {args:?} failed:\n{text}");
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_initialises_and_runs_unmodified() -> anyhow::Result<()> {
    let cluster = Cluster::start_new(1)?;
    let port = cluster.ports.cluster;
    let init = pgbench(port, &["-i", "-s", "1"])?;
    assert!(init.contains("creating primary keys") && init.contains("done in"), "{init}");

    // Bounded by transaction count, not time: 4 clients x 25 transactions each.
    let tpcb = pgbench(port, &["-c", "4", "-j", "2", "-t", "25", "-M", "prepared"])?;
    assert!(tpcb.contains("number of transactions actually processed: 100/100"), "{tpcb}");
    let client = cluster.connect(port).await?;
    let row = client
        .query_one(
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers),
                    (SELECT sum(bbalance) FROM pgbench_branches), (SELECT count(*) FROM pgbench_history)",
            &[],
        )
        .await?;
    let (accounts, tellers, branches): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(row.get::<_, i64>(3), 100, "one history row per TPC-B transaction");
    assert_eq!((accounts, tellers), (branches, branches), "TPC-B keeps the three balance sums equal");
    // (A run starts by truncating pgbench_history, so it is counted before the next one.)
    let select_only = pgbench(port, &["-c", "4", "-j", "2", "-t", "100", "-S", "-M", "prepared"])?;
    assert!(select_only.contains("number of transactions actually processed: 400/400"), "{select_only}");

    // The primary keys pgbench added are enforced and used.
    let duplicate = client.simple_query("INSERT INTO pgbench_accounts VALUES (1, 1, 0, '')").await;
    assert_eq!(duplicate.err().and_then(|e| e.code().map(|c| c.code().to_string())).as_deref(), Some("23505"));
    let plan = client.simple_query("EXPLAIN SELECT abalance FROM pgbench_accounts WHERE aid = 7").await?;
    let text = format!("{plan:?}");
    assert!(text.contains("IndexScan"), "{text}");

    // The reader endpoint sees the initialised accounts.
    let reader = cluster.connect(cluster.ports.reader).await?;
    let mut count = 0;
    for _ in 0..50 {
        count = reader.query_one("SELECT count(*) FROM pgbench_accounts", &[]).await?.get::<_, i64>(0);
        if count == 100_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count, 100_000);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_streams_csv_and_refuses_bad_rows() -> anyhow::Result<()> {
    let cluster = Cluster::start_new(1)?;
    let port = cluster.ports.cluster;
    let (ok, _, err) = cluster.psql(port, "CREATE TABLE people (id int PRIMARY KEY, name text, born date)")?;
    assert!(ok, "{err}");
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("good.csv");
    let mut csv = String::from("id,name,born\n");
    for id in 0..5000 {
        csv.push_str(&format!("{id},\"name, {id}\",2000-01-{:02}\n", id % 28 + 1));
    }
    std::fs::write(&good, csv)?;
    let (ok, out, err) =
        cluster.psql(port, &format!("\\copy people FROM '{}' WITH (FORMAT csv, HEADER)", good.display()))?;
    assert!(ok && out.contains("COPY 5000"), "{out}{err}");

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "6000,ok,2000-01-01\n6001,bad date,not-a-date\n")?;
    let (ok, _, err) = cluster.psql(port, &format!("\\copy people FROM '{}' WITH (FORMAT csv)", bad.display()))?;
    assert!(!ok && err.contains("invalid input"), "{err}");

    let (ok, out, err) = cluster.psql(port, "SELECT count(*), min(name), max(born) FROM people")?;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "5000|name, 0|2000-01-28", "the bad file wrote nothing");

    // Out again: CSV with a header through \copy, text and a query through COPY TO STDOUT.
    let copied = dir.path().join("out.csv");
    let (ok, out, err) =
        cluster.psql(port, &format!("\\copy people TO '{}' WITH (FORMAT csv, HEADER)", copied.display()))?;
    assert!(ok && out.contains("COPY 5000"), "{out}{err}");
    let text = std::fs::read_to_string(&copied)?;
    assert_eq!(text.lines().count(), 5001, "a header and every row");
    assert_eq!(text.lines().next(), Some("id,name,born"));
    assert!(text.contains("\n17,\"name, 17\",2000-01-18\n"), "quoted as PostgreSQL quotes");
    let (ok, out, err) = cluster.psql(
        port,
        "COPY (SELECT id, name, NULL AS nothing FROM people WHERE id < 3 ORDER BY id) TO STDOUT WITH (DELIMITER '|', NULL 'none')",
    )?;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "0|name, 0|none\n1|name, 1|none\n2|name, 2|none");
    let client = cluster.connect(port).await?;
    let stream = client.copy_out("COPY people (id) TO STDOUT").await?;
    let chunks: Vec<_> = futures::TryStreamExt::try_collect(stream).await?;
    assert_eq!(chunks.len(), 5000, "one CopyData per row");
    let (ok, _, err) =
        cluster.psql(cluster.ports.reader, &format!("\\copy people FROM '{}' WITH (FORMAT csv)", bad.display()))?;
    assert!(!ok && err.contains("read-only"), "{err}");

    // RETURNING, through the simple protocol (psql) and the extended one (tokio-postgres).
    let (ok, out, err) =
        cluster.psql(port, "INSERT INTO people VALUES (7000, 'new', NULL) RETURNING id, upper(name)")?;
    assert!(ok && out.starts_with("7000|NEW"), "{out}{err}");
    let client = cluster.connect(port).await?;
    let rows =
        client.query("UPDATE people SET name = $1 WHERE id = $2 RETURNING id, name", &[&"renamed", &7000i32]).await?;
    assert_eq!((rows[0].get::<_, i32>(0), rows[0].get::<_, String>(1)), (7000, "renamed".to_string()));
    let deleted = client.execute("DELETE FROM people WHERE id >= 4990 RETURNING id", &[]).await?;
    assert_eq!(deleted, 11, "the DELETE tag counts the returned rows");

    // Skipped IF [NOT] EXISTS statements say so in a NOTICE, as PostgreSQL's
    // do, unless client_min_messages asks for warnings only.
    let (ok, out, err) = cluster.psql(
        port,
        "DROP TABLE IF EXISTS no_such_table; CREATE TABLE IF NOT EXISTS people (id int); DROP INDEX IF EXISTS no_such_index",
    )?;
    assert!(ok, "{out}{err}");
    for notice in [
        "NOTICE:  table \"no_such_table\" does not exist, skipping",
        "NOTICE:  relation \"people\" already exists, skipping",
        "NOTICE:  index \"no_such_index\" does not exist, skipping",
    ] {
        assert!(err.contains(notice), "no {notice:?} in {err}");
    }
    let (ok, out, err) = cluster.psql(port, "SET client_min_messages = warning; DROP TABLE IF EXISTS no_such_table")?;
    assert!(ok && !err.contains("NOTICE"), "{out}{err}");

    // psql's PGTZ reaches the session as its TimeZone: timestamptz prints there.
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let at = "SELECT timestamptz '2024-07-01 10:00:00+00'";
    let (ok, out, err) = cluster.psql_with(&conninfo, at, &[("PGTZ", "Europe/Paris")])?;
    assert!(ok && out.trim() == "2024-07-01 12:00:00+02", "{out}{err}");
    let copy = format!("COPY ({at}) TO STDOUT");
    let (ok, out, err) = cluster.psql_with(&conninfo, &copy, &[("PGTZ", "America/New_York")])?;
    assert!(ok && out.trim() == "2024-07-01 06:00:00-04", "COPY TO prints in the TimeZone too: {out}{err}");
    let (ok, out, err) = cluster.psql_with(&conninfo, &format!("SHOW TimeZone; {at}"), &[("PGTZ", "Mars/Olympus")])?;
    assert!(ok && out.trim() == "UTC\n2024-07-01 10:00:00+00", "an unknown zone leaves UTC: {out}{err}");
    Ok(())
}
