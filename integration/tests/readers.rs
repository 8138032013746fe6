//! Readers follow the writer's commit stream: they never show a torn or
//! rolled-back transaction, they see an acknowledged commit within the lag
//! bound, and restarting a reader or the writer never exposes stale pages.

use anyhow::Context;
use borealis_integration::processes::ProcessCluster;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const ACCOUNTS: i64 = 200;
const BALANCE: i64 = 1000;
/// How long an acknowledged commit may take to show on a reader here (the
/// lag is milliseconds; this bound is for a loaded 2-core machine).
const VISIBLE_WITHIN: Duration = Duration::from_secs(2);

async fn sum_and_count(client: &tokio_postgres::Client) -> anyhow::Result<(i64, i64)> {
    let row = client.query_one("SELECT sum(balance)::int8, count(*) FROM accounts", &[]).await?;
    Ok((row.get(0), row.get(1)))
}

/// Waits until `client` (a reader) sees `expected` for `sql`, failing after `VISIBLE_WITHIN`.
async fn sees(client: &tokio_postgres::Client, sql: &str, expected: i64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let value: i64 = client.query_one(sql, &[]).await?.get(0);
        if value == expected {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < VISIBLE_WITHIN,
            "{sql} gave {value}, not {expected}, after {VISIBLE_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_whole_transactions_quickly_and_never_stale_pages() -> anyhow::Result<()> {
    let mut cluster = ProcessCluster::new(2, 5000)?;
    cluster.start_all().await.context("cluster did not start")?;
    let writer = cluster.connect(cluster.ports.writer).await?;
    writer.batch_execute("CREATE TABLE accounts (id int8 PRIMARY KEY, balance int8 NOT NULL)").await?;
    writer
        .batch_execute(&format!("INSERT INTO accounts SELECT value, {BALANCE} FROM generate_series(1, {ACCOUNTS})"))
        .await?;
    let total = ACCOUNTS * BALANCE;
    let reader_ports = cluster.ports.readers.clone();
    let first_reader = cluster.connect(reader_ports[0]).await?;
    sees(&first_reader, "SELECT count(*) FROM accounts", ACCOUNTS).await?;

    // Transfers on the writer while both readers sum the balances.
    let stop = Arc::new(AtomicBool::new(false));
    let mut watchers = Vec::new();
    for port in reader_ports.clone() {
        let client = cluster.connect(port).await?;
        let stop = Arc::clone(&stop);
        watchers.push(tokio::spawn(async move {
            let mut sums = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let (sum, count) = sum_and_count(&client).await?;
                anyhow::ensure!((sum, count) == (total, ACCOUNTS), "reader on {port} saw sum {sum} over {count} rows");
                sums += 1;
            }
            Ok(sums)
        }));
    }
    let transfers = 150;
    for i in 0..transfers {
        let (from, to) = (1 + i % ACCOUNTS, 1 + (i * 7 + 3) % ACCOUNTS);
        writer
            .batch_execute(&format!(
                "BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = {from}; \
                 UPDATE accounts SET balance = balance + 10 WHERE id = {to}; COMMIT"
            ))
            .await?;
    }
    stop.store(true, Ordering::Relaxed);
    for watcher in watchers {
        let sums = watcher.await??;
        assert!(sums > 0, "each reader summed at least once during the transfers");
    }

    // An acknowledged commit shows on a reader within the bound, and the
    // reader reports its lag; the writer has none.
    writer.execute("UPDATE accounts SET balance = 7 WHERE id = 1", &[]).await?;
    let waited = sees(&first_reader, "SELECT balance FROM accounts WHERE id = 1", 7).await?;
    let lag: Option<f64> = first_reader.query_one("SELECT borealis_replica_lag()", &[]).await?.get(0);
    let lag = lag.context("a reader following the stream reports its lag")?;
    assert!(lag >= 0.0 && lag < VISIBLE_WITHIN.as_secs_f64() * 1000.0, "lag {lag} ms");
    let none: Option<f64> = writer.query_one("SELECT borealis_replica_lag()", &[]).await?.get(0);
    assert_eq!(none, None);
    eprintln!("commit visible on the reader after {waited:?}; reported lag {lag:.3} ms");

    // A rolled-back row is never seen.
    writer.batch_execute("BEGIN; INSERT INTO accounts VALUES (-1, 5); ROLLBACK").await?;
    writer.execute("UPDATE accounts SET balance = 8 WHERE id = 1", &[]).await?;
    sees(&first_reader, "SELECT balance FROM accounts WHERE id = 1", 8).await?;
    assert_eq!(first_reader.query_one("SELECT count(*) FROM accounts WHERE id = -1", &[]).await?.get::<_, i64>(0), 0);

    // A reader killed and restarted serves the current state.
    cluster.kill9("reader-1")?;
    writer.execute("UPDATE accounts SET balance = 9 WHERE id = 1", &[]).await?;
    cluster.start_instance("reader-1").await?;
    let restarted = cluster.connect(reader_ports[0]).await?;
    sees(&restarted, "SELECT balance FROM accounts WHERE id = 1", 9).await?;

    // The writer restarts: the reader resynchronises and never shows the
    // page it cached before a commit it could not hear about.
    let second_reader = cluster.connect(reader_ports[1]).await?;
    sees(&second_reader, "SELECT balance FROM accounts WHERE id = 1", 9).await?;
    drop(writer);
    cluster.kill9("writer")?;
    cluster.start_instance("writer").await?;
    let writer = cluster.connect(cluster.ports.writer).await?;
    writer.execute("UPDATE accounts SET balance = 10 WHERE id = 1", &[]).await?;
    sees(&second_reader, "SELECT balance FROM accounts WHERE id = 1", 10).await?;
    let sum = "SELECT sum(balance)::int8 FROM accounts";
    let on_writer: i64 = writer.query_one(sum, &[]).await?.get(0);
    sees(&restarted, sum, on_writer).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_readers_follow_one_writer() -> anyhow::Result<()> {
    let mut cluster = ProcessCluster::new(15, 5000)?;
    cluster.start_all().await.context("a cluster with 15 readers did not start")?;
    let writer = cluster.connect(cluster.ports.writer).await?;
    writer
        .batch_execute("CREATE TABLE t (id int8 PRIMARY KEY); INSERT INTO t SELECT g FROM generate_series(1, 100) g")
        .await?;
    let readers = cluster.ports.readers.clone();
    assert_eq!(readers.len(), 15);
    let mut clients = Vec::new();
    for port in &readers {
        let client = cluster.connect(*port).await?;
        sees(&client, "SELECT count(*) FROM t", 100).await.with_context(|| format!("reader on {port}"))?;
        clients.push(client);
    }
    writer.execute("DELETE FROM t WHERE id > 90", &[]).await?;
    for (client, port) in clients.iter().zip(&readers) {
        sees(client, "SELECT count(*) FROM t", 90).await.with_context(|| format!("reader on {port}"))?;
        let cache: Option<String> = client.query_one("SELECT borealis_buffer_cache()", &[]).await?.get(0);
        assert!(cache.is_some_and(|c| c.contains("\"hits\"")), "reader on {port} reports its cache");
    }
    // The reader endpoint spreads over them and sees the same.
    let endpoint = cluster.connect(cluster.ports.reader).await?;
    sees(&endpoint, "SELECT count(*) FROM t", 90).await?;
    Ok(())
}

/// How often the proxy reads the cluster file again (`proxy::RELOAD_INTERVAL`).
const PROXY_RELOAD: Duration = Duration::from_secs(2);

/// True when a connection to the reader endpoint lands on a reader (which
/// refuses writes with 25006), false when it lands on the writer.
async fn reader_endpoint_reaches_a_reader(cluster: &ProcessCluster) -> anyhow::Result<bool> {
    let client = cluster.connect(cluster.ports.reader).await?;
    match client.execute("INSERT INTO probe VALUES (1)", &[]).await {
        Ok(_) => Ok(false),
        Err(e) if borealis_integration::sqlstate(&e).as_deref() == Some("25006") => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Waits until connections to the reader endpoint land on a reader
/// (`reader`) or on the writer, for a few proxy reloads at most.
async fn reader_endpoint_becomes(cluster: &ProcessCluster, reader: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + PROXY_RELOAD * 5;
    while reader_endpoint_reaches_a_reader(cluster).await? != reader {
        let lands_on = if reader { "a reader" } else { "the writer" };
        anyhow::ensure!(Instant::now() < deadline, "the reader endpoint never landed on {lands_on}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_join_and_leave_without_restarting_the_others() -> anyhow::Result<()> {
    let mut cluster = ProcessCluster::new(1, 5000)?;
    cluster.start_all().await.context("cluster did not start")?;
    let writer = cluster.connect(cluster.ports.writer).await?;
    writer
        .batch_execute("CREATE TABLE probe (id int8); CREATE TABLE t (id int8 PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await?;
    let (name, port) = cluster.add_reader().await?;
    let added = cluster.connect(port).await?;
    sees(&added, "SELECT count(*) FROM t", 1).await?;

    // With the first reader gone, the reader endpoint still reaches a reader:
    // the proxy learnt the new one from the cluster file.
    cluster.kill9("reader-1")?;
    reader_endpoint_becomes(&cluster, true).await.with_context(|| format!("waiting for {name}"))?;
    writer.execute("INSERT INTO t VALUES (2)", &[]).await?;
    sees(&added, "SELECT count(*) FROM t", 2).await?;

    // Removed from the file (still running), it leaves the endpoint, which
    // falls back to the writer.
    cluster.remove_reader(&name)?;
    reader_endpoint_becomes(&cluster, false).await.with_context(|| format!("after removing {name}"))?;
    Ok(())
}
