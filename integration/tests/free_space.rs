//! Free space reuse against real processes: a table that a writer empties
//! and refills keeps its size, while a reader scanning it at its own read
//! points always sees one whole round of rows, never a mix of the rows that
//! left a slot and the rows that took it.
//!
//! Method: a writer and one reader; rounds of `BEGIN; DELETE; INSERT;
//! COMMIT` on the writer (the same ids, a new round number) while a task on
//! the reader checks count, rounds and id sum of the table; then
//! pg_relation_size on the writer against the first round's, and on the
//! reader once it has caught up; sizes by oid through the extended protocol
//! as psql's `\dt+` asks them; no WARN or ERROR in any log.

use anyhow::Context;
use borealis_integration::processes::ProcessCluster;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const ROWS: i64 = 2000;
const ROUNDS: i64 = 20;

async fn relation_size(client: &tokio_postgres::Client) -> anyhow::Result<i64> {
    Ok(client.query_one("SELECT pg_relation_size('t')", &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_churned_table_keeps_its_size_and_readers_see_whole_rounds() -> anyhow::Result<()> {
    let mut cluster = ProcessCluster::new(1, 5000)?;
    cluster.start_all().await.context("cluster did not start")?;
    let writer = cluster.connect(cluster.ports.writer).await?;
    let round = |n: i64| {
        format!(
            "BEGIN; DELETE FROM t; INSERT INTO t SELECT value, {n}, repeat('p', 80) \
             FROM generate_series(1, {ROWS}); COMMIT"
        )
    };
    writer.batch_execute("CREATE TABLE t (id int8 PRIMARY KEY, round int8 NOT NULL, pad text)").await?;
    writer.batch_execute(&round(0)).await?;
    let first_size = relation_size(&writer).await?;

    let reader_port = cluster.ports.readers[0];
    let reader = cluster.connect(reader_port).await?;
    let started = Instant::now();
    while reader.query_one("SELECT count(*) FROM t", &[]).await.ok().map(|row| row.get::<_, i64>(0)) != Some(ROWS) {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(5), "the reader never saw the first round");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut scans = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let sql = "SELECT count(*), count(DISTINCT round), sum(id)::int8 FROM t";
                let row = reader.query_one(sql, &[]).await?;
                let seen: (i64, i64, Option<i64>) = (row.get(0), row.get(1), row.get(2));
                anyhow::ensure!(seen == (ROWS, 1, Some(ROWS * (ROWS + 1) / 2)), "the reader saw {seen:?}");
                scans += 1;
            }
            Ok((reader, scans))
        })
    };
    for n in 1..=ROUNDS {
        writer.batch_execute(&round(n)).await?;
    }
    stop.store(true, Ordering::Relaxed);
    let (reader, scans) = watcher.await??;
    assert!(scans > 0, "the reader scanned during the rounds");

    let size = relation_size(&writer).await?;
    eprintln!("{ROUNDS} rounds of {ROWS} rows: {size} bytes, the first round {first_size}; {scans} reader scans");
    assert!(size <= first_size + 8192, "{size} bytes after {ROUNDS} rounds, {first_size} after one");
    let started = Instant::now();
    while relation_size(&reader).await? != size {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(5), "the reader's size never matched the writer's");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let by_oid = "SELECT pg_size_pretty(pg_table_size(c.oid)), pg_total_relation_size(c.oid) > pg_relation_size(c.oid) \
                  FROM pg_class c WHERE c.relname = $1";
    let row = writer.query_one(by_oid, &[&"t"]).await?;
    let (pretty, with_index): (String, bool) = (row.get(0), row.get(1));
    assert_eq!(pretty, format!("{} kB", size / 1024));
    assert!(with_index, "the primary key's pages count in the total");
    let warnings = cluster.warnings();
    assert!(warnings.is_empty(), "{warnings:#?}");
    Ok(())
}
