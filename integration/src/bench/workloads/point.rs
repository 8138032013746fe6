//! Point select and point update by primary key on a loaded table, from
//! `point_clients` clients with prepared statements. Selects check the value
//! the loader wrote (v = id × 3), so they run before the updates.

use super::closed_loop::{self, KV_TABLE, Operation, Timing};
use crate::bench::load::{self, Loaded, Part};
use crate::bench::progress;
use crate::bench::report::Better;
use crate::bench::stats::Throughput;
use crate::bench::{Context, Metric, Run};

/// Bytes of padding per row, so rows have a realistic width (~60 bytes).
const PAD: &str = "pppppppppppppppppppppppppppppppppppppppp";

/// Loads the table, then measures selects and updates on both systems.
pub async fn run(context: &Context, run: &mut Run) -> anyhow::Result<()> {
    let settings = &context.settings;
    let rows = settings.point_rows;
    let loaded = run
        .each(async |endpoints| {
            let ddl = format!("create table {KV_TABLE} (id int8 primary key, v int8 not null, pad text not null)");
            super::execute(&endpoints, &ddl).await?;
            let bar = context.progress.counter(&format!("load {KV_TABLE} into {}", endpoints.system.name()), rows);
            let parts = kv_parts(rows, settings.load_connections);
            let loaded =
                load::load(&endpoints, KV_TABLE, parts, settings.copy_batch_rows, settings.load_timeout, &bar).await;
            progress::done(&bar);
            loaded
        })
        .await;
    let load_metric = [Metric::new(format!("load {rows} rows (COPY)"), "rows/s", Better::Higher, Loaded::rows_per_s)];
    run.rows("point", &loaded, &load_metric);
    let timing = Timing { warmup: settings.warmup, duration: settings.duration };
    let key_count = i64::try_from(rows)?;
    for (name, operation) in
        [("select", Operation::Select { rows: key_count }), ("update", Operation::Update { rows: key_count })]
    {
        let pair = run
            .each(async |endpoints| {
                loaded.ready(endpoints.system)?;
                let label = format!("{} point {name}, {} clients", endpoints.system.name(), settings.point_clients);
                let _bar = context.progress.timed(&label, timing.warmup + timing.duration);
                closed_loop::measure(&endpoints, operation, settings.point_clients, timing).await
            })
            .await;
        let clients = settings.point_clients;
        let metrics = [
            Metric::new(format!("{name}s/s, {clients} clients"), "ops/s", Better::Higher, |measured: &Throughput| {
                measured.per_s
            }),
            Metric::new(format!("{name} p50, {clients} clients"), "ms", Better::Lower, |measured: &Throughput| {
                measured.latency.p50_ms
            }),
            Metric::new(format!("{name} p99, {clients} clients"), "ms", Better::Lower, |measured: &Throughput| {
                measured.latency.p99_ms
            }),
        ];
        run.rows("point", &pair, &metrics);
    }
    Ok(())
}

/// The rows as COPY text lines (id, v, pad); integers and `PAD` need no escaping.
fn kv_parts(rows: u64, parts: u64) -> Vec<Part> {
    load::split_range(rows, parts)
        .into_iter()
        .map(|range| Box::new(range.map(|id| format!("{id}\t{}\t{PAD}", id * 3))) as Part)
        .collect()
}
