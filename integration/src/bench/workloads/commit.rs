//! Commit latency: single-row inserts, each its own transaction, from 1, 8
//! and 32 clients; p50/p99 latency and commits per second at each count.
//! Each commit must be durable before it is acknowledged (PostgreSQL: WAL
//! fsync; Borealis: 4 of 6 storage replicas), so compare with the fsync rows.

use super::closed_loop::{self, COMMIT_TABLE, Operation, Timing};
use crate::bench::report::Better;
use crate::bench::stats::Throughput;
use crate::bench::{Context, Metric, Run};

/// Ids of one client-count level start at level × this, so levels never collide.
const IDS_PER_LEVEL: i64 = 1_000_000_000_000;

/// Creates the table and measures each client count on both systems.
pub async fn run(context: &Context, run: &mut Run) -> anyhow::Result<()> {
    let ddl = format!("create table {COMMIT_TABLE} (id int8 primary key, client int4 not null, payload text not null)");
    let created = run.each(async |endpoints| super::execute(&endpoints, &ddl).await).await;
    let timing = Timing { warmup: context.settings.warmup, duration: context.settings.duration };
    for (level, &clients) in context.settings.commit_clients.iter().enumerate() {
        let operation = Operation::Insert { id_base: level as i64 * IDS_PER_LEVEL };
        let pair = run
            .each(async |endpoints| {
                created.ready(endpoints.system)?;
                let label = format!("{} commits, {clients} clients", endpoints.system.name());
                let _bar = context.progress.timed(&label, timing.warmup + timing.duration);
                closed_loop::measure(&endpoints, operation, clients, timing).await
            })
            .await;
        let metrics = [
            Metric::new(
                format!("commits/s, {clients} clients"),
                "commits/s",
                Better::Higher,
                |measured: &Throughput| measured.per_s,
            ),
            Metric::new(format!("p50, {clients} clients"), "ms", Better::Lower, |measured: &Throughput| {
                measured.latency.p50_ms
            }),
            Metric::new(format!("p99, {clients} clients"), "ms", Better::Lower, |measured: &Throughput| {
                measured.latency.p99_ms
            }),
        ];
        run.rows("commit", &pair, &metrics);
    }
    Ok(())
}
