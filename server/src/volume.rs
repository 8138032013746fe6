//! The instances' side of the `borealis_sql::Volume` seam: pages from the
//! storage volume through a moka buffer cache, and commits as redo.
//!
//! Writer: the cache holds the newest committed version of each cached page.
//! A commit's redo is made durable on a write quorum first, then applied to
//! the cached pages it touches, then the visible LSN advances — all under one
//! short lock, so a statement either sees a commit completely or not at all.
//! A statement reading at `read_point` uses a cached page only if the page's
//! LSN is at or below the read point (then it is the version as of the read
//! point, because the cache always holds the newest version); otherwise it
//! asks storage for the page as of its read point (DESIGN.md invariant 5).
//!
//! Reader: without the commit stream a reader cannot know which cached pages
//! changed, so its cache is keyed by (page, read point): an entry can never
//! be stale, and statements at the same read point share it.

use async_trait::async_trait;
use borealis_sql::{Volume, VolumeError};
use borealis_storage::client::{StorageError, VolumeReader, VolumeWriter};
use borealis_storage::ids::{Lsn, PageId};
use borealis_storage::page::{PAGE_SIZE, Page};
use borealis_storage::redo::RedoBody;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes of pages an instance caches.
pub const CACHE_BYTES: u64 = 256 * 1024 * 1024;
/// How long storage keeps page history for statements that started earlier:
/// a statement older than this may get "snapshot too old" on a page changed since.
const HISTORY_RETENTION: Duration = Duration::from_secs(60);
/// Bound on the retention ring (one entry per commit at most).
const RETENTION_ENTRIES_MAX: usize = 100_000;

fn page_weight() -> u32 {
    u32::try_from(PAGE_SIZE).expect("page size fits u32")
}

/// Maps storage failures to what the SQL layer reports.
pub fn volume_error(error: StorageError) -> VolumeError {
    match error {
        fenced if fenced.is_fenced() => VolumeError::Fenced(fenced.to_string()),
        StorageError::QuorumTimeout { .. } => VolumeError::Timeout(error.to_string()),
        retryable if retryable.is_retryable() => VolumeError::Unavailable(retryable.to_string()),
        other => VolumeError::Internal(other.to_string()),
    }
}

struct WriterState {
    /// The LSN of the newest commit applied to the cache; statements read here.
    visible_lsn: Lsn,
    /// A commit was started and did not finish (quorum timeout, or its future
    /// was dropped): its records may still become durable, so the cache and
    /// `visible_lsn` may lack it. The next commit must settle it first.
    in_doubt: bool,
    /// (when, visible LSN) per commit, oldest first, for the min read point.
    history: VecDeque<(Instant, Lsn)>,
}

/// The writer's volume: quorum commits and a cache of newest page versions.
pub struct WriterVolume {
    storage: VolumeWriter,
    cache: moka::sync::Cache<PageId, Arc<Page>>,
    state: Mutex<WriterState>,
}

impl WriterVolume {
    /// Wraps a recovered storage writer; reads start at its durable LSN.
    pub fn new(storage: VolumeWriter) -> WriterVolume {
        let visible_lsn = storage.durable_lsn();
        let cache = moka::sync::Cache::builder().max_capacity(CACHE_BYTES).weigher(|_, _| page_weight()).build();
        let state = WriterState { visible_lsn, in_doubt: false, history: VecDeque::new() };
        WriterVolume { storage, cache, state: Mutex::new(state) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies a durable commit to the cached pages and makes it visible.
    fn install(&self, bodies: &[RedoBody], first_lsn: Lsn, commit_lsn: Lsn) -> Result<(), VolumeError> {
        let mut state = self.lock();
        assert!(commit_lsn > state.visible_lsn, "commit {commit_lsn} not above visible {}", state.visible_lsn);
        let mut lsn = first_lsn;
        for body in bodies {
            if let Some(cached) = self.cache.get(&body.page()) {
                let mut page = Page::clone(&cached);
                match body.apply_body(&mut page) {
                    Ok(()) => {
                        page.set_lsn(lsn);
                        self.cache.insert(body.page(), Arc::new(page));
                    }
                    Err(e) => {
                        // Storage has the record; only our copy is wrong: drop it.
                        tracing::error!(page = %body.page(), %lsn, "failed to apply committed redo to cached page: {e}");
                        self.cache.invalidate(&body.page());
                    }
                }
            }
            lsn = lsn.next();
        }
        assert_eq!(lsn, commit_lsn.next(), "commit LSNs must be consecutive");
        state.visible_lsn = commit_lsn;
        state.in_doubt = false;
        self.advance_history(state, commit_lsn);
        Ok(())
    }

    /// Records a new visible LSN for the min read point and tells storage.
    fn advance_history(&self, mut state: std::sync::MutexGuard<'_, WriterState>, visible_lsn: Lsn) {
        let now = Instant::now();
        state.history.push_back((now, visible_lsn));
        let min_read_point = retained_read_point(&mut state.history, now);
        drop(state);
        self.storage.set_min_read_point(min_read_point);
    }

    /// Waits until every LSN storage assigned is durable, then drops the
    /// cache and reads from there: an in-doubt commit is now either in the
    /// volume or annulled, and nothing cached predates the answer.
    async fn settle(&self) -> Result<(), VolumeError> {
        let durable_lsn = self.storage.settle().await.map_err(|e| match e {
            fenced if fenced.is_fenced() => VolumeError::Fenced(fenced.to_string()),
            other => VolumeError::NotCommitted(other.to_string()),
        })?;
        self.cache.invalidate_all();
        let mut state = self.lock();
        assert!(durable_lsn >= state.visible_lsn, "settled LSN {durable_lsn} below visible {}", state.visible_lsn);
        state.visible_lsn = durable_lsn;
        state.in_doubt = false;
        tracing::info!(%durable_lsn, "an in-doubt commit was settled; the cache was dropped");
        self.advance_history(state, durable_lsn);
        Ok(())
    }
}

/// Drops history entries older than the retention window (keeping the
/// newest of them) and returns the read point storage must still serve.
fn retained_read_point(history: &mut VecDeque<(Instant, Lsn)>, now: Instant) -> Lsn {
    while history.len() > RETENTION_ENTRIES_MAX
        || (history.len() > 1 && now.duration_since(history[1].0) > HISTORY_RETENTION)
    {
        history.pop_front();
    }
    history.front().map_or(Lsn::ZERO, |(_, lsn)| *lsn)
}

#[async_trait]
impl Volume for WriterVolume {
    async fn read_page(&self, page: PageId, read_point: Lsn) -> Result<Arc<Page>, VolumeError> {
        if let Some(cached) = self.cache.get(&page)
            && cached.lsn() <= read_point
        {
            return Ok(cached);
        }
        let fetched = Arc::new(self.storage.get_page(page, read_point).await.map_err(volume_error)?);
        let state = self.lock();
        // Only the newest version may enter the cache: no commit since read_point.
        if state.visible_lsn == read_point {
            self.cache.insert(page, fetched.clone());
        }
        Ok(fetched)
    }

    async fn read_point(&self) -> Result<Lsn, VolumeError> {
        Ok(self.lock().visible_lsn)
    }

    async fn commit(&self, bodies: Vec<RedoBody>) -> Result<Lsn, VolumeError> {
        if self.lock().in_doubt {
            // The transaction was built on a state that may lack the in-doubt
            // commit: its redo could collide with it. Refuse it unsent.
            self.settle().await?;
            return Err(VolumeError::Conflict("an earlier commit's outcome was unknown".into()));
        }
        // Set before the await: if this future is dropped mid-commit, the
        // records may still become durable.
        self.lock().in_doubt = true;
        let lsns = self.storage.commit(bodies.clone()).await.map_err(volume_error)?;
        self.install(&bodies, lsns.first, lsns.commit)?;
        Ok(lsns.commit)
    }
}

/// A reader's volume: pages at read points learned from storage.
pub struct ReaderVolume {
    storage: VolumeReader,
    cache: moka::sync::Cache<(PageId, Lsn), Arc<Page>>,
    /// Read points never go backwards on one reader.
    newest_read_point: Mutex<Lsn>,
}

impl ReaderVolume {
    /// Wraps a storage reader.
    pub fn new(storage: VolumeReader) -> ReaderVolume {
        let cache = moka::sync::Cache::builder().max_capacity(CACHE_BYTES).weigher(|_, _| page_weight()).build();
        ReaderVolume { storage, cache, newest_read_point: Mutex::new(Lsn::ZERO) }
    }
}

#[async_trait]
impl Volume for ReaderVolume {
    async fn read_page(&self, page: PageId, read_point: Lsn) -> Result<Arc<Page>, VolumeError> {
        if let Some(cached) = self.cache.get(&(page, read_point)) {
            return Ok(cached);
        }
        let fetched = Arc::new(self.storage.get_page(page, read_point).await.map_err(volume_error)?);
        self.cache.insert((page, read_point), fetched.clone());
        Ok(fetched)
    }

    async fn read_point(&self) -> Result<Lsn, VolumeError> {
        let learned = self.storage.read_point().await.map_err(volume_error)?;
        let mut newest = self.newest_read_point.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *newest = (*newest).max(learned);
        Ok(*newest)
    }

    async fn commit(&self, _bodies: Vec<RedoBody>) -> Result<Lsn, VolumeError> {
        Err(VolumeError::ReadOnly)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_keeps_the_read_point_of_the_window_start() {
        let start = Instant::now();
        let mut history = VecDeque::new();
        history.push_back((start, Lsn(10)));
        history.push_back((start + Duration::from_secs(30), Lsn(20)));
        history.push_back((start + Duration::from_secs(90), Lsn(30)));
        // At 100 s, the window starts at 40 s: LSN 20 was visible then.
        assert_eq!(retained_read_point(&mut history, start + Duration::from_secs(100)), Lsn(20));
        // At 200 s, only the newest entry remains relevant.
        assert_eq!(retained_read_point(&mut history, start + Duration::from_secs(200)), Lsn(30));
        assert_eq!(history.len(), 1);
    }
}
