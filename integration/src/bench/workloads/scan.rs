//! Full scan and aggregates over one table of `scan_rows` rows: a global
//! aggregate and a 100-group GROUP BY, each timed as the median of several
//! runs after a warm-up; Borealis's answers are checked against PostgreSQL's.

use super::Timed;
use crate::bench::load::{self, Loaded, Part};
use crate::bench::progress;
use crate::bench::report::Better;
use crate::bench::{Context, Metric, Run};

/// The scanned table: (id, g = id % 100, v = id % 1000 as float8).
const SCAN_TABLE: &str = "bench_scan";

/// Loads the table and times the queries on both systems.
pub async fn run(context: &Context, run: &mut Run) -> anyhow::Result<()> {
    let settings = &context.settings;
    let rows = settings.scan_rows;
    let loaded = run
        .each(async |endpoints| {
            let ddl = format!("create table {SCAN_TABLE} (id int8 primary key, g int4 not null, v float8 not null)");
            super::execute(&endpoints, &ddl).await?;
            let bar = context.progress.counter(&format!("load {SCAN_TABLE} into {}", endpoints.system.name()), rows);
            let parts = scan_parts(rows, settings.load_connections);
            let loaded =
                load::load(&endpoints, SCAN_TABLE, parts, settings.copy_batch_rows, settings.load_timeout, &bar).await;
            progress::done(&bar);
            loaded
        })
        .await;
    run.rows(
        "scan",
        &loaded,
        &[Metric::new(format!("load {rows} rows (COPY)"), "rows/s", Better::Higher, Loaded::rows_per_s)],
    );
    let queries = [
        ("count, sum, min, max", format!("select count(*), sum(v), min(id), max(id) from {SCAN_TABLE}")),
        ("group by 100 groups", format!("select g, count(*), sum(v) from {SCAN_TABLE} group by g order by g")),
    ];
    for (name, sql) in queries {
        let mut pair = run
            .each(async |endpoints| {
                loaded.ready(endpoints.system)?;
                let client = endpoints.connect_write().await?;
                let _bar = context.progress.counter(&format!("{} scan: {name}", endpoints.system.name()), 0);
                super::time_query(&client, &sql, settings.query_repeats, settings.query_timeout).await
            })
            .await;
        if let Some(note) = super::check_answer(run, &format!("scan {name}"), &mut pair) {
            run.report.notes.push(note);
        }
        run.rows(
            "scan",
            &pair,
            &[Metric::new(format!("{name} over {rows} rows"), "ms", Better::Lower, |timed: &Timed| timed.median_ms)],
        );
    }
    Ok(())
}

/// The rows as COPY text lines (id, g, v); integers need no escaping.
fn scan_parts(rows: u64, parts: u64) -> Vec<Part> {
    load::split_range(rows, parts)
        .into_iter()
        .map(|range| Box::new(range.map(|id| format!("{id}\t{}\t{}", id % 100, id % 1000))) as Part)
        .collect()
}
