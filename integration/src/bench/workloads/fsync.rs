//! The physical limit of commit latency: how many 8 KiB write + fdatasync
//! rounds per second the disk under each data directory does (what
//! pg_test_fsync calls "write, fdatasync"). No database commits faster than
//! its disk syncs unless it batches commits (group commit) or skips the sync.
//!
//! Both columns are the same kind of figure (the disk under that system's
//! data directory), so the row has no ratio.

use crate::bench::report::Better;
use crate::bench::stats::{Latencies, Throughput};
use crate::bench::{Context, Metric, Run};
use anyhow::Context as _;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The size of each write: one PostgreSQL WAL page.
const WRITE_BYTES: usize = 8192;

/// Measures the fsync rate in each system's data directory.
pub async fn run(context: &Context, run: &mut Run) -> anyhow::Result<()> {
    let duration = context.settings.duration;
    let pair = run
        .each(async |endpoints| {
            let _bar = context.progress.timed(&format!("fdatasync in {} data dir", endpoints.system.name()), duration);
            let dir = endpoints.data_dir.clone();
            tokio::task::spawn_blocking(move || measure(&dir, duration)).await.context("fsync probe panicked")?
        })
        .await;
    let metrics = [
        Metric::new("write+fdatasync 8 KiB rate", "syncs/s", Better::Higher, |measured: &Throughput| measured.per_s),
        Metric::new("write+fdatasync p50", "ms", Better::Lower, |measured: &Throughput| measured.latency.p50_ms),
        Metric::new("write+fdatasync p99", "ms", Better::Lower, |measured: &Throughput| measured.latency.p99_ms),
    ];
    let first = run.report.rows.len();
    run.rows("fsync (disk limit)", &pair, &metrics);
    for row in &mut run.report.rows[first..] {
        row.ratio = None;
    }
    Ok(())
}

/// Overwrites one 8 KiB block and fdatasyncs it in a loop for `duration`.
pub fn measure(dir: &Path, duration: Duration) -> anyhow::Result<Throughput> {
    let path = dir.join("bench-fsync-probe");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    let block = vec![0x5a_u8; WRITE_BYTES];
    let mut latencies = Latencies::default();
    let end = Instant::now() + duration;
    let result = loop {
        let started = Instant::now();
        if started >= end {
            break Ok(());
        }
        if let Err(error) = file.write_all_at(&block, 0).and_then(|()| file.sync_data()) {
            break Err(error);
        }
        latencies.record(started.elapsed());
    };
    let _ = std::fs::remove_file(&path);
    result.with_context(|| format!("failed to write and sync {}", path.display()))?;
    Throughput::over(latencies, duration).context("no sync finished in the measured time")
}

#[cfg(test)]
mod tests {
    #[test]
    fn measures_a_temporary_directory() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let summary = super::measure(dir.path(), std::time::Duration::from_millis(50)).expect("fsync works");
        assert!(summary.latency.count > 0 && summary.per_s > 0.0);
        assert!(!dir.path().join("bench-fsync-probe").exists());
    }
}
