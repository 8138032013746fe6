//! Loading rows with `COPY t FROM STDIN` in text format, as a PostgreSQL
//! user bulk-loads, on both systems alike.
//!
//! The rows come split into parts, each row already a COPY text line
//! (`line` builds one from fields). Each part gets its own connection and
//! task, which sends its rows as a sequence of COPYs of at most `batch_rows`
//! rows each, in chunks of about `COPY_CHUNK_BYTES`. A COPY is one
//! transaction, and Borealis holds a transaction's pages in memory until it
//! commits, so the batch bounds what one commit carries. A load is bounded
//! by a deadline: past it the load fails rather than running on.

use super::systems::Endpoints;
use anyhow::{Context, bail};
use futures::SinkExt as _;
use indicatif::ProgressBar;
use std::io::Cursor;
use std::time::{Duration, Instant};

/// One part of a table's rows, each row one COPY text line without its
/// trailing newline (see `line`).
pub type Part = Box<dyn Iterator<Item = String> + Send>;

/// Bytes of COPY data sent in one CopyData message: large enough that the
/// per-message cost vanishes, small enough that a part's buffer stays small.
pub const COPY_CHUNK_BYTES: usize = 64 * 1024;

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

/// Copies every part into `table` concurrently, one connection per part.
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
        let statement = format!("copy {table} from stdin");
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move { load_part(client, statement, part, batch_rows, deadline, bar).await }));
    }
    let rows = super::join_tasks(tasks).await?.into_iter().sum();
    Ok(Loaded { rows, elapsed: started.elapsed() })
}

async fn load_part(
    client: tokio_postgres::Client,
    statement: String,
    mut part: Part,
    batch_rows: usize,
    deadline: Instant,
    bar: ProgressBar,
) -> anyhow::Result<u64> {
    let mut loaded = 0u64;
    loop {
        let mut rows = part.by_ref().take(batch_rows).peekable();
        if rows.peek().is_none() {
            return Ok(loaded);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            bail!("load exceeded its time limit after {loaded} rows of this part");
        }
        // Dropping the sink on timeout aborts the COPY, so nothing half-sent commits.
        let copied = tokio::time::timeout(remaining, copy_batch(&client, &statement, &mut rows, &bar))
            .await
            .map_err(|_| anyhow::anyhow!("load exceeded its time limit after {loaded} rows of this part"))?
            .with_context(|| format!("failed to copy a batch of rows after {loaded}"))?;
        loaded += copied;
    }
}

/// Sends `rows` as one COPY and returns the rows the server reports copied,
/// which must be the rows sent.
async fn copy_batch(
    client: &tokio_postgres::Client,
    statement: &str,
    rows: &mut impl Iterator<Item = String>,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    let sink = client.copy_in::<_, Cursor<Vec<u8>>>(statement).await.context("failed to start COPY")?;
    let mut sink = std::pin::pin!(sink);
    let mut sent = 0u64;
    let mut chunk = String::with_capacity(COPY_CHUNK_BYTES + 1024);
    let mut chunk_rows = 0u64;
    for row in rows {
        chunk.push_str(&row);
        chunk.push('\n');
        chunk_rows += 1;
        if chunk.len() >= COPY_CHUNK_BYTES {
            let full = std::mem::replace(&mut chunk, String::with_capacity(COPY_CHUNK_BYTES + 1024));
            sink.send(Cursor::new(full.into_bytes())).await.context("failed to send COPY data")?;
            sent += chunk_rows;
            bar.inc(chunk_rows);
            chunk_rows = 0;
        }
    }
    if chunk_rows > 0 {
        sink.send(Cursor::new(chunk.into_bytes())).await.context("failed to send COPY data")?;
        sent += chunk_rows;
        bar.inc(chunk_rows);
    }
    let copied = sink.as_mut().finish().await.context("failed to finish COPY")?;
    if copied != sent {
        bail!("COPY reported {copied} rows copied, {sent} were sent");
    }
    Ok(copied)
}

/// One COPY text line of `fields` (`None` is NULL): tab-separated, NULL as
/// `\N`, each value escaped by `escape_into`.
pub fn line<'a>(fields: impl IntoIterator<Item = Option<&'a str>>) -> String {
    let mut text = String::new();
    for (index, field) in fields.into_iter().enumerate() {
        if index > 0 {
            text.push('\t');
        }
        match field {
            Some(value) => escape_into(&mut text, value),
            None => text.push_str("\\N"),
        }
    }
    text
}

/// Appends `value` as a COPY text field: backslash, tab, newline and carriage
/// return become `\\`, `\t`, `\n` and `\r`, so that no value can end a field
/// or a row, or read as `\N`.
pub fn escape_into(text: &mut String, value: &str) {
    if !value.contains(['\\', '\t', '\n', '\r']) {
        text.push_str(value);
        return;
    }
    for character in value.chars() {
        match character {
            '\\' => text.push_str("\\\\"),
            '\t' => text.push_str("\\t"),
            '\n' => text.push_str("\\n"),
            '\r' => text.push_str("\\r"),
            other => text.push(other),
        }
    }
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
    fn special_characters_are_escaped() {
        let cases = [
            ("plain", "plain"),
            ("", ""),
            ("a\\b", "a\\\\b"),
            ("a\tb", "a\\tb"),
            ("line\nnext", "line\\nnext"),
            ("cr\r", "cr\\r"),
            ("\\N", "\\\\N"),
            ("it's \"quoted\", é", "it's \"quoted\", é"),
            ("\\\t\n\r", "\\\\\\t\\n\\r"),
        ];
        for (value, want) in cases {
            let mut text = String::new();
            escape_into(&mut text, value);
            assert_eq!(text, want, "escaping {value:?}");
        }
    }

    #[test]
    fn lines_separate_fields_with_tabs_and_write_null_as_backslash_n() {
        assert_eq!(line([Some("1"), None, Some("a\tb"), Some("")]), "1\t\\N\ta\\tb\t");
        assert_eq!(line([None]), "\\N");
        assert_eq!(line(std::iter::empty()), "");
    }

    #[test]
    fn ranges_cover_everything_once() {
        let ranges = split_range(10, 3);
        assert_eq!(ranges, vec![0..3, 3..6, 6..10]);
        assert_eq!(split_range(2, 4).iter().map(|range| range.end - range.start).sum::<u64>(), 2);
        assert_eq!(split_range(5, 0), vec![0..5]);
    }
}
