//! The front end's protocol, as PostgreSQL clients use it, against a real
//! cluster: partial fetch from a portal (Execute with a row limit, then
//! PortalSuspended, then more Executes on the same portal) and the startup
//! errors a client gets for a database that does not exist.
//!
//! Goal: drivers that stream large results in chunks (tokio-postgres
//! `query_portal`, pgjdbc `setFetchSize`, psycopg server-side cursors) get
//! every row exactly once, in order, and can interleave other statements
//! between chunks. Method: tokio-postgres through the cluster endpoint, with
//! the row counts and values checked chunk by chunk.

use borealis_integration::{Cluster, PASSWORD, sqlstate};

/// Rows in the table the portals read: several chunks of every size tried.
const ROWS: i64 = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_return_rows_in_chunks() -> anyhow::Result<()> {
    let cluster = Cluster::start_new(0)?;
    let mut client = cluster.connect(cluster.ports.cluster).await?;
    client.batch_execute("CREATE TABLE numbers (n int8 PRIMARY KEY, label text NOT NULL)").await?;
    client
        .batch_execute(&format!("INSERT INTO numbers SELECT x, 'n' || x FROM generate_series(1, {ROWS}) AS g(x)"))
        .await?;

    let statement = client.prepare("SELECT n, label FROM numbers WHERE n > $1 ORDER BY n").await?;
    for chunk in [1_i32, 7, 100, 250, 1000] {
        let transaction = client.transaction().await?;
        let portal = transaction.bind(&statement, &[&0_i64]).await?;
        let mut seen = Vec::new();
        loop {
            let rows = transaction.query_portal(&portal, chunk).await?;
            assert!(rows.len() <= chunk as usize, "chunk {chunk} returned {} rows", rows.len());
            // A statement between chunks does not disturb the suspended portal.
            let one: i32 = transaction.query_one("SELECT 1", &[]).await?.get(0);
            assert_eq!(one, 1);
            let done = rows.len() < chunk as usize;
            seen.extend(rows.iter().map(|row| (row.get::<_, i64>(0), row.get::<_, String>(1))));
            if done {
                break;
            }
        }
        transaction.commit().await?;
        let want: Vec<(i64, String)> = (1..=ROWS).map(|n| (n, format!("n{n}"))).collect();
        assert_eq!(seen, want, "chunks of {chunk}");
    }

    // Two portals of one transaction advance independently.
    let transaction = client.transaction().await?;
    let low = transaction.bind(&statement, &[&0_i64]).await?;
    let high = transaction.bind(&statement, &[&200_i64]).await?;
    let first_low = transaction.query_portal(&low, 3).await?;
    let first_high = transaction.query_portal(&high, 3).await?;
    let second_low = transaction.query_portal(&low, 3).await?;
    let numbers = |rows: &[tokio_postgres::Row]| rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>();
    assert_eq!(numbers(&first_low), [1, 2, 3]);
    assert_eq!(numbers(&first_high), [201, 202, 203]);
    assert_eq!(numbers(&second_low), [4, 5, 6]);
    transaction.rollback().await?;

    // The connection is still in a usable state after the transactions.
    let count: i64 = client.query_one("SELECT count(*) FROM numbers", &[]).await?.get(0);
    assert_eq!(count, ROWS);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_is_3d000() -> anyhow::Result<()> {
    let cluster = Cluster::start_new(0)?;
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres password={PASSWORD} dbname=nosuchdb connect_timeout=10",
        cluster.ports.cluster
    );
    let error = match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
        Ok(_) => anyhow::bail!("connecting to an unknown database succeeded"),
        Err(error) => error,
    };
    assert_eq!(sqlstate(&error).as_deref(), Some("3D000"), "{error}");
    let message = error.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
    assert_eq!(message, "database \"nosuchdb\" does not exist");
    let (ok, _, err) = cluster.psql_conninfo(
        &format!("host=127.0.0.1 port={} user=postgres dbname=other", cluster.ports.cluster),
        "SELECT 1",
    )?;
    assert!(!ok && err.contains("database \"other\" does not exist"), "psql: {err}");
    // The right database still works.
    let client = cluster.connect(cluster.ports.cluster).await?;
    let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    assert_eq!(one, 1);
    Ok(())
}
