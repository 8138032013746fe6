//! Goal: the storage volume stays available and loses nothing acknowledged
//! while its daemons die, freeze and return (issue 3, "How it is shown").
//!
//! Method: a cluster of real processes (6 storage daemons in 3 zones, a
//! writer, a reader, the proxy) started one by one by the process harness,
//! with a 2 s commit timeout. One task inserts single-row transactions
//! through the cluster endpoint at a bounded pace and records which were
//! acknowledged. Meanwhile the test SIGSTOPs one daemon for a few seconds while the reader keeps reading
//! (hedged reads keep them fast), SIGKILLs one daemon (writes go on), then
//! its zone partner (a whole zone: writes go on), then one more (a zone plus
//! one: commits fail after the timeout and none is acknowledged, reads on
//! existing data go on through the writer and the reader), restarts the
//! three (writes resume by themselves).
//! Finally every process is SIGKILLed and restarted: every acknowledged row
//! must be present (count and ids), and all 6 segments of every protection
//! group must report identical page digests at the same LSN.

use anyhow::{Context, ensure};
use borealis_integration::processes::ProcessCluster;
use borealis_integration::sqlstate;
use borealis_storage::ids::Lsn;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Commit timeout in the cluster file: short, so the zone-plus-one phase is.
const COMMIT_TIMEOUT_MS: u64 = 2000;
/// Pause between two inserts: bounds the load to a few hundred rows.
const INSERT_PAUSE: Duration = Duration::from_millis(25);

#[derive(Debug, Clone)]
struct Outcome {
    id: i64,
    started: Instant,
    latency: Duration,
    error: Option<String>,
}

/// Inserts rows 1, 2, … one transaction each until `stop`; reconnects when
/// the connection breaks.
async fn write_load(
    cluster_port: u16,
    connect: impl Fn(u16) -> tokio::task::JoinHandle<anyhow::Result<tokio_postgres::Client>>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut client = connect(cluster_port).await??;
    let mut id = 0i64;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        let started = Instant::now();
        let result = client.execute("INSERT INTO t VALUES ($1, 'row')", &[&id]).await;
        let latency = started.elapsed();
        let error = result.err().map(|e| format!("{} {e}", sqlstate(&e).unwrap_or_default()));
        outcomes.lock().expect("outcomes").push(Outcome { id, started, latency, error });
        if client.is_closed() {
            client = connect(cluster_port).await??;
        }
        tokio::time::sleep(INSERT_PAUSE).await;
    }
    Ok(())
}

fn acked_between(outcomes: &[Outcome], from: Instant, to: Instant) -> Vec<&Outcome> {
    outcomes.iter().filter(|o| o.error.is_none() && o.started >= from && o.started + o.latency <= to).collect()
}

fn percentile(latencies: &mut [Duration], fraction: f64) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies.sort();
    let index = ((latencies.len() as f64 - 1.0) * fraction).round() as usize;
    latencies[index]
}

fn latency_line(outcomes: &[Outcome], from: Instant, to: Instant) -> String {
    let mut latencies: Vec<Duration> = acked_between(outcomes, from, to).iter().map(|o| o.latency).collect();
    format!(
        "{} acked, p50 {:?}, p99 {:?}",
        latencies.len(),
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99)
    )
}

/// The longest time without an acknowledgement in `[from, to]`.
fn longest_gap(outcomes: &[Outcome], from: Instant, to: Instant) -> Duration {
    let mut acks: Vec<Instant> = outcomes.iter().filter(|o| o.error.is_none()).map(|o| o.started + o.latency).collect();
    acks.retain(|at| *at >= from && *at <= to);
    acks.sort();
    let mut previous = from;
    let mut longest = Duration::ZERO;
    for at in acks.iter().copied().chain([to]) {
        longest = longest.max(at.saturating_duration_since(previous));
        previous = at;
    }
    longest
}

async fn count_rows(client: &tokio_postgres::Client) -> anyhow::Result<(i64, Duration)> {
    let started = Instant::now();
    let row = client.query_one("SELECT count(*) FROM t", &[]).await?;
    Ok((row.get(0), started.elapsed()))
}

async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_daemon_zone_and_quorum_loss() -> anyhow::Result<()> {
    let test_started = Instant::now();
    let mut cluster = ProcessCluster::new(1, COMMIT_TIMEOUT_MS)?;
    cluster.start_all().await.context("cluster did not start")?;
    let setup = cluster.connect(cluster.ports.cluster).await?;
    setup.batch_execute("CREATE TABLE t (id int8 PRIMARY KEY, note text NOT NULL)").await?;
    let reader = cluster.connect(cluster.ports.reader).await?;

    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let conninfo_port = cluster.ports.cluster;
    let password = borealis_integration::PASSWORD;
    let connect = move |port: u16| {
        tokio::spawn(async move {
            let conninfo = format!(
                "host=127.0.0.1 port={port} user=postgres password={password} dbname=postgres connect_timeout=10"
            );
            let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(client)
        })
    };
    let load = tokio::spawn(write_load(conninfo_port, connect, Arc::clone(&outcomes), Arc::clone(&stop)));
    let snapshot = || outcomes.lock().expect("outcomes").clone();

    // Baseline.
    let t0 = Instant::now();
    sleep(Duration::from_secs(3)).await;
    println!("baseline: {}", latency_line(&snapshot(), t0, Instant::now()));

    // A frozen daemon: writes and reads go on (reads hedge around it).
    let t_pause = Instant::now();
    cluster.pause(&ProcessCluster::storage_name(3))?;
    let mut reader_latencies = Vec::new();
    while t_pause.elapsed() < Duration::from_secs(4) {
        let (_, took) = count_rows(&reader).await.context("read through the reader with a frozen daemon")?;
        reader_latencies.push(took);
        sleep(Duration::from_millis(200)).await;
    }
    let t_resume = Instant::now();
    cluster.resume(&ProcessCluster::storage_name(3))?;
    let paused = snapshot();
    println!(
        "storage-4 stopped: writes {}; reader count(*) p50 {:?}, max {:?} over {} reads",
        latency_line(&paused, t_pause, t_resume),
        percentile(&mut reader_latencies.clone(), 0.5),
        reader_latencies.iter().max().copied().unwrap_or_default(),
        reader_latencies.len()
    );
    ensure!(acked_between(&paused, t_pause, t_resume).len() >= 5, "writes stopped with a frozen daemon");
    sleep(Duration::from_secs(2)).await;
    println!("after SIGCONT: {}", latency_line(&snapshot(), t_resume, Instant::now()));

    // One daemon.
    let t_kill_one = Instant::now();
    cluster.kill_storage(0)?;
    sleep(Duration::from_secs(3)).await;
    let t_kill_zone = Instant::now();
    let after_one = snapshot();
    println!("one daemon down: {}", latency_line(&after_one, t_kill_one, t_kill_zone));
    ensure!(acked_between(&after_one, t_kill_one, t_kill_zone).len() >= 5, "writes stopped with one daemon down");

    // A whole zone (storage-1 and storage-2 are az-a).
    cluster.kill_storage(1)?;
    sleep(Duration::from_secs(4)).await;
    let t_kill_three = Instant::now();
    let after_zone = snapshot();
    println!(
        "zone az-a down: {}; longest stall {:?}",
        latency_line(&after_zone, t_kill_zone, t_kill_three),
        longest_gap(&after_zone, t_kill_zone, t_kill_three)
    );
    ensure!(acked_between(&after_zone, t_kill_zone, t_kill_three).len() >= 5, "writes stopped with a zone down");

    // A zone plus one: commits must not be acknowledged; reads go on.
    cluster.kill_storage(2)?;
    // Commits already in flight may still complete: look from a moment later.
    let t_quorum_lost = Instant::now() + Duration::from_millis(300);
    sleep(Duration::from_millis(COMMIT_TIMEOUT_MS * 2 + 1500)).await;
    let (rows_writer, writer_read) = count_rows(&setup).await.context("read through the writer without quorum")?;
    let (rows_reader, reader_read) = count_rows(&reader).await.context("read through the reader without quorum")?;
    let t_restart = Instant::now();
    let lost = snapshot();
    let acked_without_quorum = acked_between(&lost, t_quorum_lost, t_restart);
    ensure!(acked_without_quorum.is_empty(), "acknowledged without a write quorum: {acked_without_quorum:?}");
    let failed: Vec<&Outcome> = lost.iter().filter(|o| o.started >= t_quorum_lost && o.error.is_some()).collect();
    ensure!(!failed.is_empty(), "no commit failed without a write quorum");
    println!(
        "zone plus one down: {} commits failed, first after {:?}: {}; reads: writer {rows_writer} rows in {writer_read:?}, reader {rows_reader} rows in {reader_read:?}",
        failed.len(),
        failed[0].latency,
        failed[0].error.as_deref().unwrap_or_default()
    );
    for outcome in &failed {
        ensure!(
            outcome.latency >= Duration::from_millis(COMMIT_TIMEOUT_MS - 100)
                && outcome.latency < Duration::from_millis(COMMIT_TIMEOUT_MS * 3),
            "a commit failed after {:?}, not after the {COMMIT_TIMEOUT_MS} ms timeout: {outcome:?}",
            outcome.latency
        );
    }

    // The three return: writes resume by themselves.
    for index in 0..3 {
        cluster.start_storage(index).await?;
    }
    let t_restarted = Instant::now();
    let resumed_at = loop {
        let now = snapshot();
        if let Some(first) = now.iter().find(|o| o.error.is_none() && o.started >= t_restarted) {
            break first.started + first.latency;
        }
        ensure!(t_restarted.elapsed() < Duration::from_secs(20), "writes did not resume within 20 s");
        sleep(Duration::from_millis(50)).await;
    };
    println!(
        "daemons restarted (in {:?}); first commit acknowledged {:?} after they answered",
        t_restarted - t_restart,
        resumed_at.saturating_duration_since(t_restarted)
    );
    sleep(Duration::from_secs(2)).await;

    // Stop the load, then power-cycle everything.
    stop.store(true, Ordering::Relaxed);
    load.await.context("load task panicked")??;
    let outcomes = snapshot();
    let attempted: BTreeSet<i64> = outcomes.iter().map(|o| o.id).collect();
    let acked: BTreeSet<i64> = outcomes.iter().filter(|o| o.error.is_none()).map(|o| o.id).collect();
    println!("{} inserts, {} acknowledged", attempted.len(), acked.len());
    drop((setup, reader));
    cluster.kill_all();
    cluster.start_all().await.context("cluster did not restart")?;

    let client = cluster.connect(cluster.ports.cluster).await?;
    let rows = client.query("SELECT id FROM t ORDER BY id", &[]).await?;
    let present: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let present_set: BTreeSet<i64> = present.iter().copied().collect();
    let (count, _) = count_rows(&client).await?;
    ensure!(present.len() == present_set.len(), "duplicate ids after restart");
    ensure!(count as usize == present.len(), "count(*) {count} but {} ids", present.len());
    let missing: Vec<&i64> = acked.difference(&present_set).collect();
    ensure!(missing.is_empty(), "acknowledged rows lost: {missing:?}");
    let invented: Vec<&i64> = present_set.difference(&attempted).collect();
    ensure!(invented.is_empty(), "rows never inserted appeared: {invented:?}");
    println!(
        "after restart: {} rows ({} acknowledged, {} unacknowledged that became durable)",
        present.len(),
        acked.len(),
        present.len() - acked.len()
    );

    // Every segment of every group holds the same pages at the same LSN.
    let lsn = converged_lsn(&cluster).await?;
    let digests = cluster.digests(lsn).await?;
    ensure!(!digests.is_empty(), "no protection group reported");
    for (group, by_node) in &digests {
        ensure!(by_node.len() == 6, "group {group} has {} segments, not 6", by_node.len());
        let first = by_node.values().next().expect("six segments");
        for (node, pages) in by_node {
            ensure!(pages == first, "segment of group {group} on {node} differs at {lsn}");
        }
    }
    let pages: usize = digests.values().filter_map(|by_node| by_node.values().next()).map(Vec::len).sum();
    println!(
        "{} protection groups, {pages} pages, identical on all 6 segments at {lsn}; test took {:?}",
        digests.len(),
        test_started.elapsed()
    );
    Ok(())
}

/// The newest durable LSN once every segment is complete to it (gossip and
/// the writer bring the returned daemons up to date).
async fn converged_lsn(cluster: &ProcessCluster) -> anyhow::Result<Lsn> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let statuses = cluster.storage_status().await?;
        let durable = statuses.iter().map(|s| s.durable_lsn).max().unwrap_or(Lsn::ZERO);
        let lagging: Vec<String> = statuses
            .iter()
            .flat_map(|s| s.segments.iter().map(move |p| (s.node, p)))
            .filter(|(_, p)| p.segment_complete_lsn < durable)
            .map(|(node, p)| format!("{node}/{}: {}", p.protection_group, p.segment_complete_lsn))
            .collect();
        if lagging.is_empty() && durable > Lsn::ZERO {
            return Ok(durable);
        }
        ensure!(Instant::now() < deadline, "segments not complete to {durable} after 20 s: {lagging:?}");
        sleep(Duration::from_millis(200)).await;
    }
}
