//! The closed-loop driver of the OLTP workloads: N clients, each on its own
//! connection with a prepared statement, run one operation after another
//! (no think time) for warm-up + duration; only operations that start after
//! the warm-up count.
//!
//! Every operation checks its answer: an insert must insert one row, a point
//! select must read the value the loader wrote, an update must update one
//! row. A wrong answer stops the measurement as `WrongAnswer`.

use crate::bench::WrongAnswer;
use crate::bench::stats::{Latencies, Throughput};
use crate::bench::systems::Endpoints;
use anyhow::{Context, bail};
use std::time::{Duration, Instant};
use tokio_postgres::types::Type;

/// Longest one operation may take before the measurement fails: far above
/// any sane latency, low enough that a stuck server does not stall the run.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Ids of one client's inserts are `id_base + client × this + sequence`.
const IDS_PER_CLIENT: i64 = 1_000_000_000;

/// The key-value table of point selects and updates: (id, v = id × 3, pad).
pub const KV_TABLE: &str = "bench_kv";
/// The table of single-row insert commits.
pub const COMMIT_TABLE: &str = "bench_commit";

/// What each client does in its loop.
#[derive(Debug, Clone, Copy)]
pub enum Operation {
    /// Insert one row into `COMMIT_TABLE` (one autocommitted transaction).
    Insert { id_base: i64 },
    /// Read one random row of `KV_TABLE` (ids 0..rows) by primary key.
    Select { rows: i64 },
    /// Add 1 to one random row of `KV_TABLE` by primary key.
    Update { rows: i64 },
}

impl Operation {
    fn sql(self) -> (String, Vec<Type>) {
        match self {
            Operation::Insert { .. } => (
                format!("insert into {COMMIT_TABLE} (id, client, payload) values ($1, $2, $3)"),
                vec![Type::INT8, Type::INT4, Type::TEXT],
            ),
            Operation::Select { .. } => (format!("select v from {KV_TABLE} where id = $1"), vec![Type::INT8]),
            Operation::Update { .. } => (format!("update {KV_TABLE} set v = v + 1 where id = $1"), vec![Type::INT8]),
        }
    }
}

/// Timing of a closed-loop measurement.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub duration: Duration,
}

/// Runs `operation` from `clients` connections and returns what was measured.
pub async fn measure(
    endpoints: &Endpoints,
    operation: Operation,
    clients: usize,
    timing: Timing,
) -> anyhow::Result<Throughput> {
    let (sql, types) = operation.sql();
    let mut sessions = Vec::with_capacity(clients);
    for _ in 0..clients {
        let client = endpoints.connect_write().await?;
        let statement =
            client.prepare_typed(&sql, &types).await.with_context(|| format!("failed to prepare `{sql}`"))?;
        sessions.push((client, statement));
    }
    let start = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(index, (client, statement))| {
            tokio::spawn(client_loop(client, statement, operation, index, start, timing))
        })
        .collect();
    let mut latencies = Latencies::default();
    for client_latencies in crate::bench::join_tasks(tasks).await? {
        latencies.merge(client_latencies);
    }
    Throughput::over(latencies, timing.duration).context("no operation finished in the measured time")
}

async fn client_loop(
    client: tokio_postgres::Client,
    statement: tokio_postgres::Statement,
    operation: Operation,
    index: usize,
    start: Instant,
    timing: Timing,
) -> anyhow::Result<Latencies> {
    let measured_from = start + timing.warmup;
    let end = measured_from + timing.duration;
    let mut random = SplitMix64(0x9e37_79b9 ^ index as u64);
    let client_id = i32::try_from(index).context("too many clients")?;
    let mut latencies = Latencies::default();
    for sequence in 0i64.. {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let once = once(&client, &statement, operation, client_id, sequence, &mut random);
        tokio::time::timeout(OPERATION_TIMEOUT, once)
            .await
            .map_err(|_| anyhow::anyhow!("an operation took over {OPERATION_TIMEOUT:?}"))??;
        if started >= measured_from {
            latencies.record(started.elapsed());
        }
    }
    Ok(latencies)
}

async fn once(
    client: &tokio_postgres::Client,
    statement: &tokio_postgres::Statement,
    operation: Operation,
    client_id: i32,
    sequence: i64,
    random: &mut SplitMix64,
) -> anyhow::Result<()> {
    match operation {
        Operation::Insert { id_base } => {
            let id = id_base + i64::from(client_id) * IDS_PER_CLIENT + sequence;
            let inserted =
                client.execute(statement, &[&id, &client_id, &"commit probe"]).await.context("failed to insert")?;
            if inserted != 1 {
                bail!(WrongAnswer(format!("insert of id {id} reported {inserted} rows")));
            }
        }
        Operation::Select { rows } => {
            let id = random.below(rows);
            let row = client.query_opt(statement, &[&id]).await.context("failed to select")?;
            let value: Option<i64> = row.map(|row| row.try_get(0)).transpose().context("failed to read v")?;
            if value != Some(id * 3) {
                bail!(WrongAnswer(format!("select of id {id} read {value:?}, expected {}", id * 3)));
            }
        }
        Operation::Update { rows } => {
            let id = random.below(rows);
            let updated = client.execute(statement, &[&id]).await.context("failed to update")?;
            if updated != 1 {
                bail!(WrongAnswer(format!("update of id {id} reported {updated} rows, expected 1")));
            }
        }
    }
    Ok(())
}

/// A small seeded generator, so each client's key sequence is reproducible.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in 0..bound (bound > 0).
    pub fn below(&mut self, bound: i64) -> i64 {
        assert!(bound > 0, "bound {bound} must be positive");
        (self.next_u64() % bound as u64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_keys_stay_in_range_and_repeat_per_seed() {
        let mut first = SplitMix64(7);
        let mut second = SplitMix64(7);
        for _ in 0..1000 {
            let key = first.below(10);
            assert!((0..10).contains(&key));
            assert_eq!(key, second.below(10));
        }
    }
}
