//! pgbench's builtin TPC-B and select-only scripts, prepared, through the
//! cluster endpoint. The four tables are created and loaded here with COPY
//! on both systems alike, and pgbench runs with `-n` (no vacuum). After TPC-B,
//! the balance invariant (accounts, tellers, branches and history all sum to
//! the same total) is checked: a break is a wrong answer.

use crate::bench::load::{self, Loaded, Part};
use crate::bench::report::Better;
use crate::bench::systems::{Endpoints, find_postgres_program};
use crate::bench::{Context, Metric, Run, WrongAnswer, progress};
use anyhow::{Context as _, bail};
use std::time::Duration;

/// Clients and threads of every pgbench run (the setting).
const CLIENTS: u32 = 8;
const THREADS: u32 = 2;
/// Accounts per unit of scale, as pgbench defines it.
const ACCOUNTS_PER_SCALE: u64 = 100_000;
/// Tellers per unit of scale, as pgbench defines it.
const TELLERS_PER_SCALE: u64 = 10;

const DDL: &str = "create table pgbench_branches (bid int4 primary key, bbalance int4 not null, filler varchar(88));
create table pgbench_tellers (tid int4 primary key, bid int4 not null, tbalance int4 not null, filler varchar(84));
create table pgbench_accounts (aid int4 primary key, bid int4 not null, abalance int4 not null, filler varchar(84));
create table pgbench_history (tid int4, bid int4, aid int4, delta int4, mtime timestamp, filler varchar(22));";

/// What one pgbench run reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgbenchResult {
    pub tps: f64,
    pub latency_average_ms: f64,
}

/// Loads pgbench's tables and runs TPC-B and select-only on both systems.
pub async fn run(context: &Context, run: &mut Run) -> anyhow::Result<()> {
    let pgbench = find_postgres_program("pgbench")?;
    let settings = &context.settings;
    let scale = settings.pgbench_scale;
    let loaded = run.each(async |endpoints| load_tables(context, &endpoints, scale).await).await;
    run.rows(
        "pgbench",
        &loaded,
        &[Metric::new(format!("load scale {scale} (COPY)"), "rows/s", Better::Higher, Loaded::rows_per_s)],
    );
    for (name, select_only) in [("TPC-B", false), ("select-only", true)] {
        let pair = run
            .each(async |endpoints| {
                loaded.ready(endpoints.system)?;
                let label = format!("{} pgbench {name}", endpoints.system.name());
                let _bar = context.progress.timed(&label, settings.warmup + settings.duration);
                run_pgbench(&pgbench, &endpoints, select_only, settings.warmup).await.context("warm-up run failed")?;
                let result = run_pgbench(&pgbench, &endpoints, select_only, settings.duration).await?;
                if !select_only {
                    check_balances(&endpoints).await?;
                }
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

async fn load_tables(context: &Context, endpoints: &Endpoints, scale: u64) -> anyhow::Result<Loaded> {
    let settings = &context.settings;
    super::execute(endpoints, DDL).await?;
    let accounts = ACCOUNTS_PER_SCALE * scale;
    let bar = context
        .progress
        .counter(&format!("load pgbench tables into {}", endpoints.system.name()), accounts + scale * 11);
    let batch = settings.copy_batch_rows;
    let branches: Vec<Part> = vec![Box::new((1..=scale).map(|bid| format!("{bid}\t0\t\\N")))];
    let tellers: Vec<Part> = vec![Box::new(
        (1..=scale * TELLERS_PER_SCALE).map(|tid| format!("{tid}\t{}\t0\t\\N", (tid - 1) / TELLERS_PER_SCALE + 1)),
    )];
    let account_parts: Vec<Part> = load::split_range(accounts, settings.load_connections)
        .into_iter()
        .map(|range| {
            Box::new(range.map(|index| format!("{}\t{}\t0\t", index + 1, index / ACCOUNTS_PER_SCALE + 1))) as Part
        })
        .collect();
    let mut total = load::load(endpoints, "pgbench_branches", branches, batch, settings.load_timeout, &bar).await?;
    let tellers_loaded = load::load(endpoints, "pgbench_tellers", tellers, batch, settings.load_timeout, &bar).await?;
    let accounts_loaded =
        load::load(endpoints, "pgbench_accounts", account_parts, batch, settings.load_timeout, &bar).await?;
    progress::done(&bar);
    for part in [tellers_loaded, accounts_loaded] {
        total.rows += part.rows;
        total.elapsed += part.elapsed;
    }
    Ok(total)
}

/// Runs pgbench for `duration` and parses what it printed.
async fn run_pgbench(
    pgbench: &std::path::Path,
    endpoints: &Endpoints,
    select_only: bool,
    duration: Duration,
) -> anyhow::Result<PgbenchResult> {
    let mut command = tokio::process::Command::new(pgbench);
    command
        .args(["-n", "-M", "prepared", "-h", "127.0.0.1", "-U", "postgres"])
        .args(["-c", &CLIENTS.to_string(), "-j", &THREADS.to_string()])
        .args(["-T", &duration.as_secs().max(1).to_string(), "-p", &endpoints.write_port.to_string()])
        .env("PGPASSWORD", crate::PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .kill_on_drop(true);
    if select_only {
        command.arg("-S");
    }
    command.arg("postgres");
    let output = tokio::time::timeout(duration + Duration::from_secs(120), command.output())
        .await
        .map_err(|_| anyhow::anyhow!("pgbench did not finish in {} s", duration.as_secs() + 120))?
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

/// Checks TPC-B's invariant: every balance table and the history sum to the
/// same total.
async fn check_balances(endpoints: &Endpoints) -> anyhow::Result<()> {
    let client = endpoints.connect_write().await?;
    let mut sums = Vec::new();
    for (table, column) in [
        ("pgbench_accounts", "abalance"),
        ("pgbench_tellers", "tbalance"),
        ("pgbench_branches", "bbalance"),
        ("pgbench_history", "delta"),
    ] {
        let rows = crate::bench::compare::query_rows(&client, &format!("select sum({column}) from {table}")).await?;
        let text = rows.first().and_then(|row| row.first().cloned().flatten()).unwrap_or_else(|| "0".to_string());
        let sum: i64 = text.parse().with_context(|| format!("sum({column}) is `{text}`"))?;
        sums.push((table, sum));
    }
    if sums.windows(2).any(|pair| pair[0].1 != pair[1].1) {
        bail!(WrongAnswer(format!("pgbench balances differ after TPC-B: {sums:?}")));
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
