//! Loading rows with multi-row INSERT, the one bulk path both systems share
//! (Borealis has no COPY yet).
//!
//! The rows come split into parts; each part gets its own connection and
//! task and sends `INSERT INTO t VALUES (..), (..), ...` statements of
//! `batch_rows` rows each, autocommitted. A load is bounded by a deadline:
//! past it the load fails rather than running on.

use super::systems::Endpoints;
use anyhow::{Context, bail};
use indicatif::ProgressBar;
use std::time::{Duration, Instant};

/// One part of a table's rows, each row already a SQL tuple "(1, 'a', 2.5)".
pub type Part = Box<dyn Iterator<Item = String> + Send>;

/// How a load went.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    pub rows: u64,
    pub elapsed: Duration,
}

impl Loaded {
    /// Rows per second over the whole load.
    pub fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Inserts every part into `table` concurrently, one connection per part.
pub async fn load(
    endpoints: &Endpoints,
    table: &str,
    parts: Vec<Part>,
    batch_rows: usize,
    timeout: Duration,
    bar: &ProgressBar,
) -> anyhow::Result<Loaded> {
    assert!(batch_rows > 0, "batch_rows must be positive");
    let started = Instant::now();
    let deadline = started + timeout;
    let mut tasks = Vec::with_capacity(parts.len());
    for part in parts {
        let client = endpoints.connect_write().await?;
        let prefix = format!("insert into {table} values ");
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move { load_part(client, prefix, part, batch_rows, deadline, bar).await }));
    }
    let rows = super::join_tasks(tasks).await?.into_iter().sum();
    Ok(Loaded { rows, elapsed: started.elapsed() })
}

async fn load_part(
    client: tokio_postgres::Client,
    prefix: String,
    mut part: Part,
    batch_rows: usize,
    deadline: Instant,
    bar: ProgressBar,
) -> anyhow::Result<u64> {
    let mut loaded = 0u64;
    loop {
        let mut statement = prefix.clone();
        let mut count = 0;
        for row in part.by_ref().take(batch_rows) {
            if count > 0 {
                statement.push_str(", ");
            }
            statement.push_str(&row);
            count += 1;
        }
        if count == 0 {
            return Ok(loaded);
        }
        if Instant::now() > deadline {
            bail!("load exceeded its time limit after {loaded} rows of this part");
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(remaining, client.batch_execute(&statement))
            .await
            .map_err(|_| anyhow::anyhow!("load exceeded its time limit after {loaded} rows of this part"))?
            .with_context(|| format!("failed to insert a batch of {count} rows after {loaded}"))?;
        loaded += count as u64;
        bar.inc(count as u64);
    }
}

/// A SQL string literal, with quotes doubled.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Splits `0..total` into `parts` ranges of nearly equal size.
pub fn split_range(total: u64, parts: u64) -> Vec<std::ops::Range<u64>> {
    let parts = parts.max(1);
    (0..parts).map(|index| (total * index / parts)..(total * (index + 1) / parts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn ranges_cover_everything_once() {
        let ranges = split_range(10, 3);
        assert_eq!(ranges, vec![0..3, 3..6, 6..10]);
        assert_eq!(split_range(2, 4).iter().map(|range| range.end - range.start).sum::<u64>(), 2);
        assert_eq!(split_range(5, 0), vec![0..5]);
    }
}
