//! The spine, end to end: `borealis up` starts 6 storage daemons in 3 zones,
//! a writer, readers and the proxy as real processes; tokio-postgres and psql
//! drive SQL through the cluster endpoint, the writer's instance endpoint and
//! the reader endpoint; errors carry their SQLSTATEs; and every committed row
//! survives `kill -9` of every process.

use borealis_integration::{Cluster, PASSWORD, sqlstate};
use tokio_postgres::SimpleQueryMessage;

fn rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect()
}

async fn expect_sqlstate(client: &tokio_postgres::Client, sql: &str, want: &str) {
    match client.simple_query(sql).await {
        Ok(_) => panic!("`{sql}` succeeded, expected SQLSTATE {want}"),
        Err(e) => assert_eq!(sqlstate(&e).as_deref(), Some(want), "`{sql}`: {e}"),
    }
}

/// Runs a count query on a reader until it returns `want` (readers learn the
/// durable LSN shortly after the writer acknowledges) or 5 s pass; returns the last count.
async fn count_when_reached(reader: &tokio_postgres::Client, sql: &str, want: i64) -> anyhow::Result<i64> {
    let mut count = 0;
    for _ in 0..50 {
        count = reader.query_one(sql, &[]).await?.get::<_, i64>(0);
        if count == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_through_every_endpoint() -> anyhow::Result<()> {
    let cluster = Cluster::start_new(2)?;
    let client = cluster.connect(cluster.ports.cluster).await?;

    client
        .batch_execute(
            "CREATE TABLE accounts (
                id int4 PRIMARY KEY,
                owner text NOT NULL,
                nickname varchar(20),
                balance numeric(12, 2),
                big int8,
                ratio float8,
                active bool,
                opened date,
                touched timestamp
            )",
        )
        .await?;
    client
        .batch_execute(
            "INSERT INTO accounts VALUES
                (1, 'ada', 'countess', 100.50, 9000000000, 0.5, true, '2024-01-02', '2024-01-02 03:04:05'),
                (2, 'brian', NULL, 20.00, 1, 1.25, false, '2023-12-31', '2023-12-31 23:59:59'),
                (3, 'cleo', 'c', 0.01, -5, NULL, true, NULL, NULL)",
        )
        .await?;
    client.batch_execute("CREATE TABLE branches (account_id int8, city text)").await?;
    client.batch_execute("INSERT INTO branches VALUES (1, 'Oslo'), (2, 'Lima'), (1, 'Kyiv')").await?;

    // Filters, ORDER BY, LIMIT, text output of every type.
    let got = rows(&client.simple_query("SELECT * FROM accounts WHERE balance > 1 ORDER BY id LIMIT 5").await?);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0],
        ["1", "ada", "countess", "100.50", "9000000000", "0.5", "t", "2024-01-02", "2024-01-02 03:04:05"]
            .map(|s| Some(s.to_string()))
            .to_vec()
    );
    assert_eq!(got[1][2], None);

    // Joins and aggregates.
    let got = rows(
        &client
            .simple_query(
                "SELECT a.owner, count(*) AS n FROM accounts a JOIN branches b ON a.id = b.account_id \
                 GROUP BY a.owner ORDER BY n DESC, a.owner",
            )
            .await?,
    );
    assert_eq!(got, vec![vec![Some("ada".into()), Some("2".into())], vec![Some("brian".into()), Some("1".into())]]);
    let got = rows(&client.simple_query("SELECT sum(balance), max(big), min(opened) FROM accounts").await?);
    assert_eq!(got[0], vec![Some("120.51".into()), Some("9000000000".into()), Some("2023-12-31".into())]);

    // UPDATE and DELETE with their row counts; extended protocol with parameters.
    let updated = client.execute("UPDATE accounts SET nickname = $1 WHERE id = $2", &[&"bee", &2i32]).await?;
    assert_eq!(updated, 1);
    client.batch_execute("UPDATE accounts SET balance = balance + 1 WHERE id = 2").await?;
    let row = client.query_one("SELECT owner, nickname FROM accounts WHERE id = $1", &[&2i32]).await?;
    assert_eq!(row.get::<_, String>(0), "brian");
    assert_eq!(row.get::<_, String>(1), "bee");
    let balance = rows(&client.simple_query("SELECT balance FROM accounts WHERE id = 2").await?);
    assert_eq!(balance[0][0].as_deref(), Some("21.00"));
    assert_eq!(client.execute("DELETE FROM branches WHERE city = 'Lima'", &[]).await?, 1);
    let row = client.query_one("SELECT count(*) FROM branches", &[]).await?;
    assert_eq!(row.columns()[0].name(), "count", "result columns carry PostgreSQL's names");
    assert_eq!(row.get::<_, i64>(0), 2);

    // Errors with their SQLSTATEs; the session stays usable after each.
    expect_sqlstate(&client, "SELEC 1", "42601").await;
    expect_sqlstate(&client, "SELECT * FROM no_such_table", "42P01").await;
    expect_sqlstate(&client, "INSERT INTO accounts (id, owner) VALUES (1, 'dup')", "23505").await;
    expect_sqlstate(&client, "INSERT INTO accounts (id) VALUES (99)", "23502").await;
    let count: i64 = client.query_one("SELECT count(*) FROM accounts", &[]).await?.get(0);
    assert_eq!(count, 3, "failed statements must leave the data as it was");

    // Transactions: ROLLBACK leaves nothing, COMMIT makes it visible.
    client.batch_execute("BEGIN; INSERT INTO branches VALUES (3, 'Rome'); ROLLBACK").await?;
    client.batch_execute("BEGIN").await?;
    client.batch_execute("INSERT INTO branches VALUES (3, 'Pune')").await?;
    let inside: i64 = client.query_one("SELECT count(*) FROM branches", &[]).await?.get(0);
    assert_eq!(inside, 3, "a transaction sees its own writes");
    client.batch_execute("COMMIT").await?;
    let cities = rows(&client.simple_query("SELECT city FROM branches ORDER BY city").await?);
    assert_eq!(cities, vec![vec![Some("Kyiv".into())], vec![Some("Oslo".into())], vec![Some("Pune".into())]]);

    // The writer's own instance endpoint, with psql.
    let (ok, out, err) = cluster.psql(cluster.ports.writer, "SELECT owner FROM accounts WHERE id = 3")?;
    assert!(ok, "psql failed: {err}");
    assert_eq!(out.trim(), "cleo");
    let (ok, out, err) = cluster.psql(cluster.ports.cluster, "SELECT count(*) FROM branches")?;
    assert!(ok, "psql failed: {err}");
    assert_eq!(out.trim(), "3");
    let (ok, _, err) = cluster.psql(cluster.ports.cluster, "SELECT * FROM nowhere")?;
    assert!(!ok && err.contains("nowhere"), "psql should report the missing table: {err}");

    // TLS: psql verifies the server against the cluster's CA, through the proxy.
    let ca = cluster.data_dir().join("tls").join("ca.pem");
    let conninfo = format!(
        "host=localhost port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
        cluster.ports.cluster,
        ca.display()
    );
    let (ok, out, err) = cluster.psql_conninfo(&conninfo, "SELECT count(*) FROM accounts")?;
    assert!(ok, "psql over TLS failed: {err}");
    assert_eq!(out.trim(), "3");

    // Readers serve committed data through the reader endpoint, and refuse writes.
    let reader = cluster.connect(cluster.ports.reader).await?;
    let seen = count_when_reached(&reader, "SELECT count(*) FROM branches", 3).await?;
    assert_eq!(seen, 3, "the reader endpoint must see committed rows");
    expect_sqlstate(&reader, "INSERT INTO branches VALUES (9, 'Nope')", "25006").await;
    for port in &cluster.ports.readers {
        let (ok, out, err) = cluster.psql(*port, "SELECT owner FROM accounts ORDER BY id LIMIT 1")?;
        assert!(ok, "psql on reader {port} failed: {err}");
        assert_eq!(out.trim(), "ada");
    }

    // A long query is really cancelled (57014) and the session goes on.
    let token = client.cancel_token();
    let long = {
        let sql = "SELECT count(*) FROM generate_series(1, 10000000000) AS g(x) WHERE x % 7 = 3";
        let started = std::time::Instant::now();
        let query = client.simple_query(sql);
        let cancel = async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            token.cancel_query(tokio_postgres::NoTls).await
        };
        let (result, cancelled) = tokio::join!(query, cancel);
        cancelled?;
        (result, started.elapsed())
    };
    match long.0 {
        Ok(_) => panic!("the query finished instead of being cancelled"),
        Err(e) => assert_eq!(sqlstate(&e).as_deref(), Some("57014"), "{e}"),
    }
    assert!(long.1 < std::time::Duration::from_secs(30), "cancel took {:?}", long.1);
    let one: i64 = client.query_one("SELECT count(*) FROM accounts", &[]).await?.get(0);
    assert_eq!(one, 3);

    // Settings: remembered per session, shown, and statement_timeout honoured.
    client.batch_execute("SET application_name = 'spine'; SET statement_timeout = '300ms'").await?;
    let shown = rows(&client.simple_query("SHOW application_name").await?);
    assert_eq!(shown, vec![vec![Some("spine".to_string())]]);
    expect_sqlstate(&client, "SELECT count(*) FROM generate_series(1, 10000000000) AS g(x) WHERE x % 7 = 3", "57014")
        .await;
    client.batch_execute("RESET statement_timeout").await?;
    expect_sqlstate(&client, "SET no_such_setting = 1", "42704").await;

    // DROP TABLE.
    client.batch_execute("DROP TABLE branches").await?;
    expect_sqlstate(&client, "SELECT * FROM branches", "42P01").await;

    // A wrong password is refused with 28P01.
    let bad = cluster.conninfo(cluster.ports.cluster).replace(PASSWORD, "wrong");
    let err = tokio_postgres::connect(&bad, tokio_postgres::NoTls).await.err().expect("wrong password accepted");
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err}");

    // An unknown database is refused with 3D000.
    let other_db = cluster.conninfo(cluster.ports.cluster).replace("dbname=postgres", "dbname=nope");
    let err = tokio_postgres::connect(&other_db, tokio_postgres::NoTls).await.err().expect("unknown database accepted");
    assert_eq!(sqlstate(&err).as_deref(), Some("3D000"), "{err}");

    // `borealis status` shows every process and the durable LSN.
    let status = cluster.command("status")?.output()?;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "status failed: {text}");
    assert!(text.contains("storage-6") && text.contains("reader-2") && text.contains("durable LSN"), "{text}");
    assert!(!text.contains("down"), "every process should answer:\n{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_rows_survive_kill_dash_nine_of_everything() -> anyhow::Result<()> {
    let mut cluster = Cluster::start_new(1)?;
    {
        let client = cluster.connect(cluster.ports.cluster).await?;
        client.batch_execute("CREATE TABLE kept (id int8 PRIMARY KEY, note text)").await?;
        // Enough rows to fill several pages, across several protection groups.
        for chunk in 0..10 {
            let values: Vec<String> = (0..200)
                .map(|i| format!("({}, 'note number {} padded to take some room')", chunk * 200 + i, i))
                .collect();
            client.batch_execute(&format!("INSERT INTO kept VALUES {}", values.join(","))).await?;
        }
        client.batch_execute("UPDATE kept SET note = 'changed' WHERE id % 100 = 0").await?;
        client.batch_execute("DELETE FROM kept WHERE id >= 1990").await?;
        client.batch_execute("BEGIN; INSERT INTO kept VALUES (-1, 'never committed')").await?;
    }

    // A second `up` on the same data directory is refused.
    let second = cluster.command("up")?.output()?;
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already running"), "{err}");

    cluster.kill9()?;
    cluster.start()?;

    let client = cluster.connect(cluster.ports.cluster).await?;
    let row = client
        .query_one("SELECT count(*), count(*) FILTER (WHERE note = 'changed'), min(id), max(id) FROM kept", &[])
        .await?;
    assert_eq!(row.get::<_, i64>(0), 1990, "{}", cluster.log());
    assert_eq!(row.get::<_, i64>(1), 20);
    assert_eq!(row.get::<_, i64>(2), 0);
    assert_eq!(row.get::<_, i64>(3), 1989);
    // And the volume takes new writes after recovery.
    client.batch_execute("INSERT INTO kept VALUES (5000, 'after restart')").await?;
    let reader = cluster.connect(cluster.ports.reader).await?;
    assert_eq!(count_when_reached(&reader, "SELECT count(*) FROM kept", 1991).await?, 1991);

    // The launcher restarts a child that dies: kill -9 a storage daemon and
    // the writer; the writer comes back, recovers the volume, and serves.
    assert!(cluster.kill9_process("storage-2"), "storage-2 not found");
    let old_writer = cluster.pid_of("writer").expect("writer running");
    assert!(cluster.kill9_process("writer"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let count = loop {
        if let Ok(client) = cluster.connect(cluster.ports.writer).await
            && let Ok(row) = client.query_one("SELECT count(*) FROM kept", &[]).await
        {
            break row.get::<_, i64>(0);
        }
        assert!(std::time::Instant::now() < deadline, "writer did not come back:\n{}", cluster.log());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(count, 1991);
    assert_ne!(cluster.pid_of("writer"), Some(old_writer), "a new writer process serves");
    assert!(cluster.pid_of("storage-2").is_some(), "storage-2 was restarted");

    // A clean stop and start keeps everything too.
    cluster.stop()?;
    cluster.start()?;
    let client = cluster.connect(cluster.ports.cluster).await?;
    let count: i64 = client.query_one("SELECT count(*) FROM kept", &[]).await?.get(0);
    assert_eq!(count, 1991);
    Ok(())
}
