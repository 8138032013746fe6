//! Replica lag on Borealis: writers commit single-row inserts through the
//! cluster endpoint at a steady rate while a sampler takes the newest
//! acknowledged row, polls the reader endpoint until that row is visible,
//! and records the time from the commit's acknowledgement to its
//! visibility. The figure includes one reader query's round trip, the
//! resolution of the method. A second sampler asks the reader for its own
//! figure (`borealis_replica_lag()`: the writer's acknowledgement to the
//! reader's read point passing the commit, without the query round trip).
//! PostgreSQL has no replica here: "n/a".

use crate::bench::report::Better;
use crate::bench::stats::{Latencies, Summary};
use crate::bench::systems::Endpoints;
use crate::bench::{Context, Metric, Run};
use anyhow::{Context as _, bail};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_postgres::types::Type;

/// The table the writers insert into.
const LAG_TABLE: &str = "bench_lag";
/// Commits per second one writer connection is asked for; more
/// connections share a higher rate, so one slow commit does not stall it.
const COMMITS_PER_WRITER: u64 = 250;
/// A row not visible on a reader after this long fails the measurement.
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the lag workload measured.
#[derive(Debug, Clone, Copy)]
pub struct Lag {
    /// Commits per second the writers achieved.
    pub commits_per_s: f64,
    pub lag: Summary,
    /// What the reader reported (`borealis_replica_lag()`), sampled.
    pub reported: Summary,
}

/// Measures replica lag on Borealis.
pub async fn run(context: &Context, run: &mut Run) -> anyhow::Result<()> {
    let settings = &context.settings;
    for &rate in &settings.lag_commits_per_s {
        run_at(context, run, rate).await?;
    }
    Ok(())
}

async fn run_at(context: &Context, run: &mut Run, rate: u64) -> anyhow::Result<()> {
    let settings = &context.settings;
    let table = format!("{LAG_TABLE}_{rate}");
    let pair = run
        .borealis_only(async |endpoints| {
            let ddl = format!("create table {table} (id int8 primary key, written_us int8 not null)");
            super::execute(&endpoints, &ddl).await?;
            let _bar = context
                .progress
                .timed(&format!("Borealis replica lag at {rate} commits/s"), settings.warmup + settings.duration);
            measure(&endpoints, &table, rate, settings.warmup, settings.duration).await
        })
        .await;
    let metrics = [
        Metric::new(format!("commits/s achieved (target {rate})"), "commits/s", Better::Higher, |lag: &Lag| {
            lag.commits_per_s
        }),
        Metric::new("lag p50", "ms", Better::Lower, |lag: &Lag| lag.lag.p50_ms),
        Metric::new("lag p99", "ms", Better::Lower, |lag: &Lag| lag.lag.p99_ms),
        Metric::new("lag max", "ms", Better::Lower, |lag: &Lag| lag.lag.max_ms),
        Metric::new("reader-reported lag p50", "ms", Better::Lower, |lag: &Lag| lag.reported.p50_ms),
        Metric::new("reader-reported lag p99", "ms", Better::Lower, |lag: &Lag| lag.reported.p99_ms),
        Metric::new("reader-reported lag max", "ms", Better::Lower, |lag: &Lag| lag.reported.max_ms),
    ];
    run.rows(&format!("replica lag at {rate}/s"), &pair, &metrics);
    Ok(())
}

/// Writes at `rate` commits/s and samples visibility on the reader endpoint.
pub async fn measure(
    endpoints: &Endpoints,
    table: &str,
    rate: u64,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Lag> {
    let start = Instant::now();
    let end = start + warmup + duration;
    let (newest_sender, newest) = watch::channel::<Option<(i64, Instant)>>(None);
    let connections = rate.div_ceil(COMMITS_PER_WRITER).max(1);
    let mut writers = Vec::new();
    for writer in 0..connections {
        let client = endpoints.connect_write().await?;
        let target = Target { writer, writers: connections, rate };
        writers.push(tokio::spawn(write_loop(client, table.to_string(), target, end, newest_sender.clone())));
    }
    drop(newest_sender);
    let reader = endpoints.connect(endpoints.read_port).await?;
    let reporter = endpoints.connect(endpoints.read_port).await?;
    let reported = tokio::spawn(async move { reported_loop(&reporter, start + warmup, end).await });
    let sampled = sample_loop(&reader, table, newest, start + warmup, end).await;
    if sampled.is_err() {
        writers.iter().for_each(|writer| writer.abort());
    }
    let lags = sampled?;
    let commits: u64 = crate::bench::join_tasks(writers).await?.into_iter().sum();
    let lag = lags.summary().context("no row became visible during the measurement")?;
    let reported = reported.await??.summary().context("the reader reported no lag during the measurement")?;
    let elapsed = (warmup + duration).as_secs_f64();
    Ok(Lag { commits_per_s: commits as f64 / elapsed, lag, reported })
}

/// Samples the reader's own lag figure every 10 ms.
async fn reported_loop(
    reader: &tokio_postgres::Client,
    measured_from: Instant,
    end: Instant,
) -> anyhow::Result<Latencies> {
    let statement = reader.prepare("select borealis_replica_lag()").await.context("failed to prepare the lag query")?;
    let mut lags = Latencies::default();
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    while Instant::now() < end {
        ticks.tick().await;
        let lag: Option<f64> =
            reader.query_one(&statement, &[]).await.context("failed to ask the reader's lag")?.get(0);
        if let Some(ms) = lag.filter(|_| Instant::now() >= measured_from) {
            lags.record(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    Ok(lags)
}

/// One writer connection's share of the target rate.
#[derive(Clone, Copy)]
struct Target {
    writer: u64,
    writers: u64,
    rate: u64,
}

async fn write_loop(
    client: tokio_postgres::Client,
    table: String,
    Target { writer, writers, rate }: Target,
    end: Instant,
    newest: watch::Sender<Option<(i64, Instant)>>,
) -> anyhow::Result<u64> {
    let sql = format!("insert into {table} (id, written_us) values ($1, $2)");
    let statement =
        client.prepare_typed(&sql, &[Type::INT8, Type::INT8]).await.context("failed to prepare the insert")?;
    let period = Duration::from_secs_f64(writers as f64 / rate.max(1) as f64);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut commits = 0u64;
    while Instant::now() < end {
        ticks.tick().await;
        let id = i64::try_from(writer + writers * commits)?;
        let micros = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros())?;
        client.execute(&statement, &[&id, &micros]).await.context("failed to insert")?;
        let acknowledged = Instant::now();
        newest.send_if_modified(|newest| {
            let newer = newest.is_none_or(|(newest_id, _)| id > newest_id);
            if newer {
                *newest = Some((id, acknowledged));
            }
            newer
        });
        commits += 1;
    }
    Ok(commits)
}

async fn sample_loop(
    reader: &tokio_postgres::Client,
    table: &str,
    mut newest: watch::Receiver<Option<(i64, Instant)>>,
    measured_from: Instant,
    end: Instant,
) -> anyhow::Result<Latencies> {
    let sql = format!("select id from {table} where id = $1");
    let statement = reader.prepare_typed(&sql, &[Type::INT8]).await.context("failed to prepare the reader's select")?;
    let mut lags = Latencies::default();
    while Instant::now() < end {
        if tokio::time::timeout(Duration::from_secs(1), newest.changed()).await.is_err() {
            continue;
        }
        let Some((id, acknowledged)) = *newest.borrow_and_update() else { continue };
        loop {
            if reader.query_opt(&statement, &[&id]).await.context("failed to read from the reader endpoint")?.is_some()
            {
                break;
            }
            if acknowledged.elapsed() > VISIBILITY_TIMEOUT {
                bail!(
                    "row {id} not visible on the reader endpoint {} s after its commit",
                    VISIBILITY_TIMEOUT.as_secs()
                );
            }
        }
        if acknowledged >= measured_from {
            lags.record(acknowledged.elapsed());
        }
    }
    Ok(lags)
}
