//! The workloads. Each one owns its tables (created fresh in both systems),
//! measures both systems through `Run::each`, and adds its rows to the
//! report. A workload that fails as a whole (its setup broke) adds one
//! failed row instead, and the run goes on to the next workload.

pub mod closed_loop;
pub mod commit;
pub mod fsync;
pub mod lag;
pub mod pgbench;
pub mod point;
pub mod scan;
pub mod tpch;
pub mod tpch_ceiling;

use super::report::{Better, Cell, Row};
use super::{Context, Run, Workload};

/// Runs one workload, turning a harness error into a failed row.
pub async fn run(workload: Workload, context: &Context, run: &mut Run) {
    context.progress.start_workload(name(workload));
    let result = match workload {
        Workload::All => Ok(()),
        Workload::Fsync => fsync::run(context, run).await,
        Workload::Commit => commit::run(context, run).await,
        Workload::Point => point::run(context, run).await,
        Workload::Scan => scan::run(context, run).await,
        Workload::Pgbench => pgbench::run(context, run).await,
        Workload::Lag => lag::run(context, run).await,
        Workload::Tpch => tpch::run(context, run).await,
    };
    if let Err(error) = result {
        context.progress.println(&format!("{} failed: {error:#}", name(workload)));
        let cell = Cell::failed(&error);
        run.report.push(Row::new(name(workload), "(workload)", "-", Better::Higher, cell.clone(), cell));
    }
}

/// The workload's name in the report.
pub fn name(workload: Workload) -> &'static str {
    match workload {
        Workload::All => "all",
        Workload::Fsync => "fsync (disk limit)",
        Workload::Commit => "commit",
        Workload::Point => "point",
        Workload::Scan => "scan",
        Workload::Pgbench => "pgbench",
        Workload::Lag => "replica lag",
        Workload::Tpch => "tpc-h",
    }
}

use super::compare::{self, Match, Rows};
use super::systems::Endpoints;
use super::{Pair, WrongAnswer};
use anyhow::Context as _;
use std::time::{Duration, Instant};

/// Runs `sql` (one or more statements) on the read-write endpoint.
pub async fn execute(endpoints: &Endpoints, sql: &str) -> anyhow::Result<()> {
    let client = endpoints.connect_write().await?;
    client.batch_execute(sql).await.with_context(|| format!("failed to run `{}`", first_line(sql)))?;
    Ok(())
}

/// A query timed over several runs, with the answer of its first run.
#[derive(Debug, Clone)]
pub struct Timed {
    /// Median time of the timed runs.
    pub median_ms: f64,
    /// The rows of the warm-up run.
    pub rows: Rows,
}

/// Runs `sql` once to warm up (keeping its answer), then up to `repeats`
/// more times (at least once, and no more once `timeout` has passed in all),
/// each bounded by `timeout`, and returns the median time.
pub async fn time_query(
    client: &tokio_postgres::Client,
    sql: &str,
    repeats: usize,
    timeout: Duration,
) -> anyhow::Result<Timed> {
    time_answers(async || Ok(compare::query_rows(client, sql).await?), repeats, timeout).await
}

/// The timing policy of `time_query` for any way of getting an answer:
/// `answer` runs once to warm up (its rows are kept), then is timed up to
/// `repeats` more times, each run bounded by `timeout`.
pub async fn time_answers(
    mut answer: impl AsyncFnMut() -> anyhow::Result<Rows>,
    repeats: usize,
    timeout: Duration,
) -> anyhow::Result<Timed> {
    let mut run_once = async || {
        let started = Instant::now();
        let rows = tokio::time::timeout(timeout, answer())
            .await
            .map_err(|_| anyhow::anyhow!("query ran over {} s", timeout.as_secs()))?
            .context("query failed")?;
        anyhow::Ok((started.elapsed().as_secs_f64() * 1e3, rows))
    };
    let started = Instant::now();
    let (first_ms, rows) = run_once().await?;
    let mut times_ms = vec![];
    // A slow query is timed fewer times, so one query cannot eat the run.
    while times_ms.len() < repeats && (times_ms.is_empty() || started.elapsed() < timeout) {
        times_ms.push(run_once().await?.0);
    }
    let median_ms = super::stats::median(&times_ms).unwrap_or(first_ms);
    Ok(Timed { median_ms, rows })
}

/// Checks Borealis's answer against PostgreSQL's: a difference is recorded as
/// a wrong answer and Borealis's cell becomes a failure. Returns a note when
/// only the order of rows differed.
pub fn check_answer(run: &mut Run, label: &str, pair: &mut Pair<Timed>) -> Option<String> {
    let (Ok(borealis), Ok(postgres)) = (&pair.borealis, &pair.postgres) else { return None };
    match compare::compare(&postgres.rows, &borealis.rows) {
        Ok(Match::Exact) => None,
        Ok(Match::Unordered) => Some(format!("{label}: Borealis returned the right rows in another order")),
        Err(difference) => {
            let error = anyhow::Error::new(WrongAnswer(format!("{label}: {difference}")));
            pair.borealis = run.outcome(super::systems::System::Borealis, Err(error));
            None
        }
    }
}

fn first_line(sql: &str) -> &str {
    let line = sql.trim().lines().next().unwrap_or_default();
    &line[..line.len().min(80)]
}
