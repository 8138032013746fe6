//! `borealis-bench`: Borealis against PostgreSQL, side by side, in one run.
//!
//! Every speed claim of Borealis is a ratio to PostgreSQL measured on the
//! same machine in the same run, because a shared machine's absolute times
//! mean little. A run goes:
//!
//! 1. start a throwaway PostgreSQL (`systems::Postgres`) and a Borealis local
//!    cluster (`systems::Borealis`); if either fails to start, its column
//!    reads `failed: <reason>` and the other is still measured;
//! 2. run each chosen workload (`workloads`) against both, alternating which
//!    goes first, each bounded in time and size, with a warm-up;
//! 3. collect one `report::Row` per figure: Borealis, PostgreSQL, and the
//!    ratio oriented so that higher is better for Borealis;
//! 4. stop both (their guards stop them on drop as well, so an error or a
//!    panic never leaves a server behind), print the table, and write
//!    `report.json` and `ratios.png` into the output directory.
//!
//! TPC-H also runs its queries on a ceiling, DataFusion in this process over
//! Parquet files of the same data (`workloads::tpch_ceiling`); those figures
//! go into a table of their own (`report::CeilingRow`).
//!
//! A workload that cannot run on Borealis is reported as failed, never given
//! a number. A wrong answer (TPC-H rows that differ from PostgreSQL's, on
//! Borealis or on the ceiling, a broken pgbench balance invariant, a point
//! read of the wrong value) is listed in the report and makes the run exit
//! non-zero.

pub mod chart;
pub mod compare;
pub mod load;
pub mod progress;
pub mod report;
pub mod stats;
pub mod systems;
pub mod workloads;

use anyhow::Context as _;
use report::{Better, Cell, Report, Row};
use std::path::{Path, PathBuf};
use std::time::Duration;
use systems::{Endpoints, System};

/// Command line of `borealis-bench`.
#[derive(Debug, clap::Parser)]
#[command(name = "borealis-bench", about = "Benchmarks Borealis against PostgreSQL on this machine")]
pub struct Cli {
    /// The workload to run.
    #[command(subcommand)]
    pub workload: Workload,
    /// Smaller scales and shorter runs (the whole run takes under 5 minutes).
    #[arg(long, global = true)]
    pub quick: bool,
    /// Where report.json and ratios.png are written.
    #[arg(long, global = true, default_value = "bench-results")]
    pub out: PathBuf,
    /// The `borealis` binary (default: next to this binary, then
    /// target/release/borealis, then target/debug/borealis).
    #[arg(long, global = true)]
    pub borealis: Option<PathBuf>,
    /// Where both systems keep their data during the run, and TPC-H its
    /// Parquet files (default: the system's temporary directory).
    #[arg(long, global = true)]
    pub work_dir: Option<PathBuf>,
    /// TPC-H scale factor instead of the mode's (0.01 quick, 1 full).
    #[arg(long, global = true)]
    pub tpch_scale: Option<f64>,
}

/// The workloads, each a subcommand; `all` runs every one in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Workload {
    /// Every workload below.
    All,
    /// Raw write+fdatasync rate of the data directories' disk.
    Fsync,
    /// Single-row insert commits: p50/p99 latency and commits/s at 1, 8, 32 clients.
    Commit,
    /// Point select and point update by primary key.
    Point,
    /// Full scan and aggregates over one table.
    Scan,
    /// pgbench TPC-B and select-only.
    Pgbench,
    /// Replica lag on Borealis's reader endpoint at a steady commit rate.
    Lag,
    /// TPC-H: 22 queries, answers checked against PostgreSQL's; also run on
    /// DataFusion over Parquet files of the same data, as the ceiling.
    Tpch,
}

impl Workload {
    /// The workloads this subcommand runs.
    pub fn expand(self) -> Vec<Workload> {
        use Workload::*;
        match self {
            All => vec![Fsync, Commit, Point, Scan, Pgbench, Lag, Tpch],
            one => vec![one],
        }
    }
}

/// Scales, durations and limits of a run; `quick` and `full` differ only here.
#[derive(Debug, Clone)]
pub struct Settings {
    pub quick: bool,
    /// Time each timed measurement runs before it starts counting.
    pub warmup: Duration,
    /// Time each timed measurement counts.
    pub duration: Duration,
    /// Client counts of the commit workload.
    pub commit_clients: Vec<usize>,
    /// Rows of the point select/update table.
    pub point_rows: u64,
    /// Concurrent clients of point select/update.
    pub point_clients: usize,
    /// Rows of the scan table.
    pub scan_rows: u64,
    /// Timed repetitions of each scan query (after one warm-up run).
    pub query_repeats: usize,
    /// pgbench scale factor (100,000 accounts each).
    pub pgbench_scale: u64,
    /// Target commit rates of the replica-lag workload, one run each.
    pub lag_commits_per_s: Vec<u64>,
    /// TPC-H scale factor.
    pub tpch_scale_factor: f64,
    /// Longest a single query may run; also the time after which a query
    /// is not repeated any more.
    pub query_timeout: Duration,
    /// Longest the 22 TPC-H queries may take in all on one system; past it
    /// the remaining queries are reported as skipped.
    pub tpch_budget: Duration,
    /// Longest one table's load may take; also bounds `pgbench -i`.
    pub load_timeout: Duration,
    /// Rows per COPY when loading. A COPY is one transaction, and Borealis
    /// holds a transaction's pages in memory until it commits, so this bounds
    /// the memory one load connection pins on the writer.
    pub copy_batch_rows: usize,
    /// Connections that load a table at once.
    pub load_connections: u64,
    /// Each Borealis instance's buffer cache (`[cluster] buffer_cache_bytes`):
    /// PostgreSQL's reads are served by the operating system's page cache,
    /// which holds the whole data set on this machine; a reporting reader
    /// is given a cache of the size its data set asks for.
    pub buffer_cache_bytes: u64,
}

impl Settings {
    /// The settings of `--quick` (true) or of a full run (false).
    pub fn new(quick: bool) -> Settings {
        if quick {
            Settings {
                quick,
                warmup: Duration::from_secs(1),
                duration: Duration::from_secs(4),
                commit_clients: vec![1, 8, 32],
                point_rows: 20_000,
                point_clients: 8,
                scan_rows: 200_000,
                query_repeats: 2,
                pgbench_scale: 1,
                lag_commits_per_s: vec![1_000],
                tpch_scale_factor: 0.01,
                query_timeout: Duration::from_secs(15),
                tpch_budget: Duration::from_secs(90),
                load_timeout: Duration::from_secs(45),
                copy_batch_rows: 10_000,
                load_connections: 2,
                buffer_cache_bytes: 256 * 1024 * 1024,
            }
        } else {
            Settings {
                quick,
                warmup: Duration::from_secs(5),
                duration: Duration::from_secs(30),
                commit_clients: vec![1, 8, 32],
                point_rows: 1_000_000,
                point_clients: 8,
                scan_rows: 10_000_000,
                query_repeats: 3,
                pgbench_scale: 10,
                lag_commits_per_s: vec![1_000, 5_000],
                tpch_scale_factor: 1.0,
                query_timeout: Duration::from_secs(600),
                tpch_budget: Duration::from_secs(3600),
                load_timeout: Duration::from_secs(3600),
                copy_batch_rows: 50_000,
                load_connections: 4,
                buffer_cache_bytes: 2 * 1024 * 1024 * 1024,
            }
        }
    }

    /// The settings as (name, value) pairs for the report.
    pub fn describe(&self) -> Vec<(String, String)> {
        let pairs = [
            ("mode", if self.quick { "quick".to_string() } else { "full".to_string() }),
            ("warmup_s", self.warmup.as_secs_f64().to_string()),
            ("duration_s", self.duration.as_secs_f64().to_string()),
            ("commit_clients", format!("{:?}", self.commit_clients)),
            ("point_rows", self.point_rows.to_string()),
            ("point_clients", self.point_clients.to_string()),
            ("scan_rows", self.scan_rows.to_string()),
            ("pgbench_scale", self.pgbench_scale.to_string()),
            ("lag_commits_per_s", format!("{:?}", self.lag_commits_per_s)),
            ("tpch_scale_factor", self.tpch_scale_factor.to_string()),
            ("copy_batch_rows", self.copy_batch_rows.to_string()),
            ("buffer_cache_bytes", self.buffer_cache_bytes.to_string()),
        ];
        pairs.into_iter().map(|(name, value)| (name.to_string(), value)).collect()
    }
}

/// An answer that differs from the reference: the run must fail.
#[derive(Debug)]
pub struct WrongAnswer(pub String);

impl std::fmt::Display for WrongAnswer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "wrong answer: {}", self.0)
    }
}

impl std::error::Error for WrongAnswer {}

/// What workloads read: the settings and the progress bars.
pub struct Context {
    pub settings: Settings,
    /// Where the systems and the workloads keep their data during the run.
    pub work_dir: PathBuf,
    pub progress: progress::Progress,
}

/// Both systems' outcomes of one measurement; a failure is already a cell.
pub struct Pair<M> {
    pub borealis: Result<M, Cell>,
    pub postgres: Result<M, Cell>,
}

impl<M> Pair<M> {
    /// `system`'s outcome, or an error carrying its failure (for a
    /// measurement that needs an earlier step, such as a load, to have worked).
    pub fn ready(&self, system: System) -> anyhow::Result<&M> {
        let outcome = match system {
            System::Borealis => &self.borealis,
            System::Postgres => &self.postgres,
        };
        match outcome {
            Ok(measurement) => Ok(measurement),
            Err(Cell::Failed(reason)) => Err(anyhow::anyhow!("{reason}")),
            Err(_) => Err(anyhow::anyhow!("not run")),
        }
    }
}

/// One figure taken from a measurement `M`.
pub struct Metric<M> {
    pub name: String,
    pub unit: &'static str,
    pub better: Better,
    pub value: fn(&M) -> f64,
}

impl<M> Metric<M> {
    /// A figure named `name` in `unit`, read from `M` by `value`.
    pub fn new(name: impl Into<String>, unit: &'static str, better: Better, value: fn(&M) -> f64) -> Metric<M> {
        Metric { name: name.into(), unit, better, value }
    }
}

/// The systems of the run and the report being filled.
pub struct Run {
    borealis: Result<Endpoints, String>,
    postgres: Result<Endpoints, String>,
    /// The report so far.
    pub report: Report,
    /// Counts measurements, to alternate which system goes first.
    turn: usize,
}

impl Run {
    /// Runs `measure` on both systems, alternating which goes first.
    pub async fn each<M>(&mut self, mut measure: impl AsyncFnMut(Endpoints) -> anyhow::Result<M>) -> Pair<M> {
        self.turn += 1;
        let order = if self.turn.is_multiple_of(2) {
            [System::Postgres, System::Borealis]
        } else {
            [System::Borealis, System::Postgres]
        };
        let mut pair = Pair { borealis: Err(Cell::NotApplicable), postgres: Err(Cell::NotApplicable) };
        for system in order {
            let outcome = match self.endpoints(system) {
                Ok(endpoints) => {
                    let result = measure(endpoints).await;
                    self.outcome(system, result)
                }
                Err(reason) => Err(Cell::Failed(reason)),
            };
            match system {
                System::Borealis => pair.borealis = outcome,
                System::Postgres => pair.postgres = outcome,
            }
        }
        pair
    }

    /// Runs `measure` on Borealis only; PostgreSQL's cell reads "n/a".
    pub async fn borealis_only<M>(&mut self, measure: impl AsyncFnOnce(Endpoints) -> anyhow::Result<M>) -> Pair<M> {
        let borealis = match self.endpoints(System::Borealis) {
            Ok(endpoints) => {
                let result = measure(endpoints).await;
                self.outcome(System::Borealis, result)
            }
            Err(reason) => Err(Cell::Failed(reason)),
        };
        Pair { borealis, postgres: Err(Cell::NotApplicable) }
    }

    fn endpoints(&self, system: System) -> Result<Endpoints, String> {
        match system {
            System::Borealis => self.borealis.clone(),
            System::Postgres => self.postgres.clone(),
        }
    }

    /// Turns an error into a failed cell, recording it if it is a wrong answer.
    pub fn outcome<M>(&mut self, system: System, result: anyhow::Result<M>) -> Result<M, Cell> {
        result.map_err(|error| {
            if let Some(wrong) = error.chain().find_map(|cause| cause.downcast_ref::<WrongAnswer>()) {
                self.report.wrong_answers.push(format!("{}: {}", system.name(), wrong.0));
            }
            Cell::failed(&error)
        })
    }

    /// Adds one row per metric of `pair` to the report.
    pub fn rows<M>(&mut self, workload: &str, pair: &Pair<M>, metrics: &[Metric<M>]) {
        for metric in metrics {
            let cell = |outcome: &Result<M, Cell>| match outcome {
                Ok(measurement) => Cell::Value((metric.value)(measurement)),
                Err(cell) => cell.clone(),
            };
            let row = Row::new(
                workload,
                &metric.name,
                metric.unit,
                metric.better,
                cell(&pair.borealis),
                cell(&pair.postgres),
            );
            self.report.push(row);
        }
    }
}

/// Awaits every task; on the first failure aborts the tasks not yet awaited,
/// so that no client of a failed measurement runs on into the next one.
pub async fn join_tasks<T>(tasks: Vec<tokio::task::JoinHandle<anyhow::Result<T>>>) -> anyhow::Result<Vec<T>> {
    let mut results = Vec::with_capacity(tasks.len());
    let mut tasks = tasks.into_iter();
    while let Some(task) = tasks.next() {
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(error) => Err(anyhow::anyhow!("task panicked: {error}")),
        };
        match outcome {
            Ok(value) => results.push(value),
            Err(error) => {
                tasks.for_each(|rest| rest.abort());
                return Err(error);
            }
        }
    }
    Ok(results)
}

/// Runs the bench as `cli` asks; returns whether every answer was right.
pub async fn main(cli: Cli) -> anyhow::Result<bool> {
    let mut settings = Settings::new(cli.quick);
    if let Some(scale_factor) = cli.tpch_scale {
        anyhow::ensure!(scale_factor > 0.0, "--tpch-scale must be positive");
        settings.tpch_scale_factor = scale_factor;
    }
    let workloads = cli.workload.expand();
    let work_dir = cli.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work_dir).with_context(|| format!("failed to create {}", work_dir.display()))?;
    let context =
        Context { progress: progress::Progress::new(workloads.len() as u64), settings, work_dir: work_dir.clone() };
    let report = Report {
        mode: if cli.quick { "quick".into() } else { "full".into() },
        started_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
        machine: machine_description(),
        settings: context.settings.describe(),
        ..Report::default()
    };

    context.progress.println("starting PostgreSQL");
    let mut postgres = systems::Postgres::start(&work_dir).map_err(|error| format!("{error:#}"));
    context.progress.println("starting Borealis (borealis up)");
    let mut borealis = borealis_binary(cli.borealis.as_deref())
        .and_then(|binary| systems::Borealis::start(&binary, &work_dir, 2, context.settings.buffer_cache_bytes))
        .map_err(|error| format!("{error:#}"));
    let mut report = report;
    for (system, outcome) in [("PostgreSQL", postgres.as_ref().err()), ("Borealis", borealis.as_ref().err())] {
        if let Some(reason) = outcome {
            context.progress.println(&format!("{system} failed to start: {reason}"));
            report.notes.push(format!("{system} did not start: {reason}"));
        }
    }
    let mut run = Run {
        borealis: borealis
            .as_ref()
            .map(|cluster| cluster.endpoints())
            .map_err(|_| "did not start (see notes)".to_string()),
        postgres: postgres
            .as_ref()
            .map(|server| server.endpoints())
            .map_err(|_| "did not start (see notes)".to_string()),
        report,
        turn: 0,
    };
    for workload in workloads {
        workloads::run(workload, &context, &mut run).await;
        context.progress.finish_workload();
    }
    context.progress.finish();
    if let Some(exit) = borealis.as_mut().ok().and_then(|cluster| cluster.exited_early()) {
        run.report.notes.push(format!("Borealis exited during the run: {exit}"));
    }
    if let Ok(cluster) = borealis.as_mut()
        && let Err(error) = cluster.stop()
    {
        run.report.notes.push(format!("stopping Borealis: {error:#}"));
    }
    if let Ok(server) = postgres.as_mut()
        && let Err(error) = server.stop()
    {
        run.report.notes.push(format!("stopping PostgreSQL: {error:#}"));
    }
    finish_report(&run.report, &cli.out)?;
    Ok(run.report.wrong_answers.is_empty())
}

/// Prints the table and writes report.json and ratios.png into `out`.
fn finish_report(report: &Report, out: &Path) -> anyhow::Result<()> {
    println!("\n{}", report.table());
    for note in &report.notes {
        println!("note: {note}");
    }
    for wrong in &report.wrong_answers {
        println!("WRONG ANSWER: {wrong}");
    }
    std::fs::create_dir_all(out).with_context(|| format!("failed to create {}", out.display()))?;
    let json_path = out.join("report.json");
    std::fs::write(&json_path, report.to_json()?)
        .with_context(|| format!("failed to write {}", json_path.display()))?;
    let chart_path = out.join("ratios.png");
    chart::draw(report, &chart_path).with_context(|| format!("failed to draw {}", chart_path.display()))?;
    println!("wrote {} and {}", json_path.display(), chart_path.display());
    Ok(())
}

/// The `borealis` binary: `--borealis`, else the one built next to this
/// binary, else target/release, else target/debug.
fn borealis_binary(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        anyhow::ensure!(path.is_file(), "--borealis {} does not exist", path.display());
        return Ok(path.to_path_buf());
    }
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("borealis")));
    let candidates = beside.into_iter().chain(["target/release/borealis", "target/debug/borealis"].map(PathBuf::from));
    let tried: Vec<PathBuf> = candidates.collect();
    tried
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .with_context(|| format!("no borealis binary at {tried:?}: build it (make bench does) or pass --borealis"))
}

fn machine_description() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, Linux {}", kernel.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_expands_to_every_workload_once() {
        let all = Workload::All.expand();
        assert_eq!(all.len(), 7);
        assert!(!all.contains(&Workload::All));
        assert_eq!(Workload::Scan.expand(), vec![Workload::Scan]);
    }

    #[test]
    fn wrong_answers_are_recorded() {
        let mut run = Run { borealis: Err("x".into()), postgres: Err("y".into()), report: Report::default(), turn: 0 };
        let error = anyhow::Error::new(WrongAnswer("q01 row 1 differs".into())).context("tpch q01");
        let outcome: Result<(), Cell> = run.outcome(System::Borealis, Err(error));
        assert!(matches!(outcome, Err(Cell::Failed(reason)) if reason.contains("wrong answer")));
        assert_eq!(run.report.wrong_answers, vec!["Borealis: q01 row 1 differs".to_string()]);
        let plain: Result<(), Cell> = run.outcome(System::Postgres, Err(anyhow::anyhow!("timeout")));
        assert!(plain.is_err());
        assert_eq!(run.report.wrong_answers.len(), 1);
    }

    #[tokio::test]
    async fn join_tasks_stops_the_rest_on_failure() {
        let failing = tokio::spawn(async { anyhow::bail!("client 0 failed") });
        let endless = tokio::spawn(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            anyhow::Ok(1)
        });
        let outcome: anyhow::Result<Vec<i32>> =
            tokio::time::timeout(Duration::from_secs(5), join_tasks(vec![failing, endless]))
                .await
                .expect("join_tasks returns at the first failure");
        assert_eq!(outcome.expect_err("fails").to_string(), "client 0 failed");
        let both = join_tasks(vec![tokio::spawn(async { anyhow::Ok(1) }), tokio::spawn(async { anyhow::Ok(2) })]).await;
        assert_eq!(both.expect("both succeed"), vec![1, 2]);
    }

    #[test]
    fn quick_is_smaller_than_full() {
        let (quick, full) = (Settings::new(true), Settings::new(false));
        assert!(quick.duration < full.duration && quick.scan_rows < full.scan_rows);
        assert!(quick.tpch_scale_factor < full.tpch_scale_factor);
    }
}
