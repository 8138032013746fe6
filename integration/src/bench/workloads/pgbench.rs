//! pgbench as a PostgreSQL user runs it, through the cluster endpoint:
//! `pgbench -i -s <scale>` creates and loads the four tables (COPY, VACUUM,
//! primary keys) and is timed, then the builtin TPC-B and select-only scripts
//! run prepared, each after a warm-up run. Every run starts, as pgbench does
//! without `-n`, by vacuuming branches and tellers and truncating the history.
//!
//! After each measured run the balance invariant is checked: accounts,
//! tellers and branches sum to the same total, and, since the run began with
//! an empty history, the history sums to what that total moved during the
//! run. A break is a wrong answer.

use crate::bench::report::Better;
use crate::bench::systems::{Endpoints, find_postgres_program};
use crate::bench::{Context, Metric, Run, WrongAnswer};
use anyhow::{Context as _, bail};
use std::path::Path;
use std::time::{Duration, Instant};

/// Clients and threads of every pgbench run (the setting).
const CLIENTS: u32 = 8;
const THREADS: u32 = 2;
/// Time pgbench may run past its `-T` (connecting, vacuum and truncate
/// before the run, finishing the last transactions) before it counts as hung.
const RUN_GRACE: Duration = Duration::from_secs(120);

/// What one pgbench run reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgbenchResult {
    pub tps: f64,
    pub latency_average_ms: f64,
}

/// Initialises pgbench's tables and runs TPC-B and select-only on both systems.
pub async fn run(context: &Context, run: &mut Run) -> anyhow::Result<()> {
    let pgbench = find_postgres_program("pgbench")?;
    let settings = &context.settings;
    let scale = settings.pgbench_scale;
    let initialized = run
        .each(async |endpoints| {
            let label = format!("{} pgbench -i -s {scale}", endpoints.system.name());
            let _bar = context.progress.counter(&label, 0);
            initialize(&pgbench, &endpoints, scale, settings.load_timeout).await
        })
        .await;
    run.rows(
        "pgbench",
        &initialized,
        &[Metric::new(format!("pgbench -i -s {scale}"), "s", Better::Lower, |elapsed: &Duration| {
            elapsed.as_secs_f64()
        })],
    );
    for (name, select_only) in [("TPC-B", false), ("select-only", true)] {
        let pair = run
            .each(async |endpoints| {
                initialized.ready(endpoints.system)?;
                let label = format!("{} pgbench {name}", endpoints.system.name());
                let _bar = context.progress.timed(&label, settings.warmup + settings.duration);
                run_pgbench(&pgbench, &endpoints, select_only, settings.warmup).await.context("warm-up run failed")?;
                let client = endpoints.connect_write().await?;
                let before = balance_total(&client).await?;
                let result = run_pgbench(&pgbench, &endpoints, select_only, settings.duration).await?;
                check_history(&client, name, before).await?;
                Ok(result)
            })
            .await;
        let metrics = [
            Metric::new(format!("{name} tps, {CLIENTS} clients"), "tps", Better::Higher, |result: &PgbenchResult| {
                result.tps
            }),
            Metric::new(format!("{name} latency average"), "ms", Better::Lower, |result: &PgbenchResult| {
                result.latency_average_ms
            }),
        ];
        run.rows("pgbench", &pair, &metrics);
    }
    Ok(())
}

/// A pgbench command against `endpoints`' read-write endpoint, without the
/// database name (it must come last).
fn pgbench_command(pgbench: &Path, endpoints: &Endpoints) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(pgbench);
    command
        .args(["-h", "127.0.0.1", "-U", "postgres", "-p", &endpoints.write_port.to_string()])
        .env("PGPASSWORD", crate::PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .kill_on_drop(true);
    command
}

/// Runs `pgbench -i -q -s scale` and returns how long it took.
async fn initialize(pgbench: &Path, endpoints: &Endpoints, scale: u64, timeout: Duration) -> anyhow::Result<Duration> {
    let mut command = pgbench_command(pgbench, endpoints);
    command.args(["-i", "-q", "-s", &scale.to_string(), "postgres"]);
    let started = Instant::now();
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| anyhow::anyhow!("pgbench -i did not finish in {} s", timeout.as_secs()))?
        .context("failed to run pgbench -i")?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!(
            "pgbench -i exited with {}: {}",
            output.status,
            last_error_line(&String::from_utf8_lossy(&output.stderr))
        );
    }
    Ok(elapsed)
}

/// Runs pgbench for `duration` and parses what it printed.
async fn run_pgbench(
    pgbench: &Path,
    endpoints: &Endpoints,
    select_only: bool,
    duration: Duration,
) -> anyhow::Result<PgbenchResult> {
    let mut command = pgbench_command(pgbench, endpoints);
    command
        .args(["-M", "prepared", "-c", &CLIENTS.to_string(), "-j", &THREADS.to_string()])
        .args(["-T", &duration.as_secs().max(1).to_string()]);
    if select_only {
        command.arg("-S");
    }
    command.arg("postgres");
    let limit = duration + RUN_GRACE;
    let output = tokio::time::timeout(limit, command.output())
        .await
        .map_err(|_| anyhow::anyhow!("pgbench did not finish in {} s", limit.as_secs()))?
        .context("failed to run pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("pgbench exited with {}: {}", output.status, last_error_line(&stderr));
    }
    parse_output(&stdout).with_context(|| format!("unexpected pgbench output: {stdout}"))
}

/// The most telling line of pgbench's stderr: the server's error (a client
/// aborted on it), else pgbench's own first error, else its last line.
fn last_error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    let server_error = lines.iter().find(|line| line.contains("ERROR:") || line.contains("FATAL:"));
    let own_error = lines.iter().find(|line| line.contains("error") && !line.contains("Run was aborted"));
    server_error.or(own_error).or(lines.last()).unwrap_or(&"(no output)").to_string()
}

/// Parses pgbench's summary: "tps = N (without initial connection time)"
/// and "latency average = N ms". Failed transactions (pgbench 15 reports
/// them) make the run fail rather than count.
pub fn parse_output(stdout: &str) -> anyhow::Result<PgbenchResult> {
    let mut tps = None;
    let mut latency_average_ms = None;
    for line in stdout.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("tps = ") {
            if rest.contains("including") && tps.is_some() {
                continue;
            }
            tps = Some(first_number(rest)?);
        } else if let Some(rest) = line.strip_prefix("latency average = ") {
            latency_average_ms = Some(first_number(rest)?);
        } else if let Some(rest) = line.strip_prefix("number of failed transactions: ") {
            let failed = first_number(rest)?;
            if failed > 0.0 {
                bail!("{failed} transactions failed");
            }
        }
    }
    Ok(PgbenchResult {
        tps: tps.context("no `tps = ` line")?,
        latency_average_ms: latency_average_ms.context("no `latency average = ` line")?,
    })
}

fn first_number(text: &str) -> anyhow::Result<f64> {
    let token = text.split_whitespace().next().unwrap_or_default();
    token.parse().with_context(|| format!("`{token}` is not a number"))
}

/// `sum(column)` of `table`; an empty table sums to 0.
async fn sum(client: &tokio_postgres::Client, table: &str, column: &str) -> anyhow::Result<i64> {
    let rows = crate::bench::compare::query_rows(client, &format!("select sum({column}) from {table}")).await?;
    let text = rows.first().and_then(|row| row.first().cloned().flatten()).unwrap_or_else(|| "0".to_string());
    text.parse().with_context(|| format!("sum({column}) of {table} is `{text}`"))
}

/// Checks that accounts, tellers and branches sum to the same total (every
/// TPC-B transaction adds the same delta to one row of each) and returns it.
async fn balance_total(client: &tokio_postgres::Client) -> anyhow::Result<i64> {
    let mut sums = Vec::new();
    for (table, column) in
        [("pgbench_accounts", "abalance"), ("pgbench_tellers", "tbalance"), ("pgbench_branches", "bbalance")]
    {
        sums.push((table, sum(client, table, column).await?));
    }
    if sums.windows(2).any(|pair| pair[0].1 != pair[1].1) {
        bail!(WrongAnswer(format!("pgbench balances differ: {sums:?}")));
    }
    Ok(sums[0].1)
}

/// Checks the invariant after a run of `script` that began at balance total
/// `before` with the history truncated: the balances still agree, and the
/// history holds exactly the deltas the run added (none for select-only).
async fn check_history(client: &tokio_postgres::Client, script: &str, before: i64) -> anyhow::Result<()> {
    let after = balance_total(client).await.with_context(|| format!("after {script}"))?;
    let history = sum(client, "pgbench_history", "delta").await?;
    if history != after - before {
        bail!(WrongAnswer(format!(
            "pgbench history sums to {history} after {script}, but the balances moved by {} ({before} to {after})",
            after - before
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PGBENCH_15: &str = "pgbench (15.8 (Debian 15.8-0+deb12u1))
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 10
query mode: prepared
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 12345
number of failed transactions: 0 (0.000%)
latency average = 6.480 ms
initial connection time = 12.345 ms
tps = 1234.567890 (without initial connection time)
";

    #[test]
    fn parses_pgbench_15() {
        let result = parse_output(PGBENCH_15).expect("parses");
        assert_eq!(result, PgbenchResult { tps: 1234.56789, latency_average_ms: 6.48 });
    }

    #[test]
    fn parses_older_pgbench_with_two_tps_lines() {
        let text = "latency average = 2.000 ms\ntps = 4000.1 (including connections establishing)\ntps = 4100.2 (excluding connections establishing)\n";
        let result = parse_output(text).expect("parses");
        assert_eq!(result.tps, 4100.2);
    }

    #[test]
    fn failed_transactions_fail_the_run() {
        let text = PGBENCH_15.replace("failed transactions: 0 (0.000%)", "failed transactions: 3 (0.020%)");
        assert!(parse_output(&text).is_err());
        assert!(parse_output("nothing here").is_err());
    }

    #[test]
    fn picks_the_error_line() {
        let stderr = "pgbench: error: client 0 script 0 aborted in command 4 query 0: ERROR:  unsupported\npgbench: error: Run was aborted; the above results are incomplete.\n";
        assert!(last_error_line(stderr).contains("unsupported"));
        let stderr = "pgbench: error: connection to server failed\npgbench: error: Run was aborted; the above results are incomplete.\n";
        assert!(last_error_line(stderr).contains("connection to server failed"));
        assert_eq!(last_error_line(""), "(no output)");
    }
}
