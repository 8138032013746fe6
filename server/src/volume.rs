//! The instances' side of the `borealis_sql::Volume` seam: pages from the
//! storage volume through a moka buffer cache, and commits as redo.
//!
//! Writer: the cache holds the newest durable version of each cached page.
//! Commits are pipelined (group commit): `submit` assigns a transaction's
//! LSNs and keeps its page images in `staged` (not evictable, and the cache
//! entries of those pages are dropped), where the next write transactions,
//! reading at the newest submitted commit, find them. When storage reports a
//! commit durable, the staged pages up to the durable LSN move into the
//! cache and the visible LSN (where statements read) advances — under one
//! short lock, so a statement either sees a commit completely or not at all.
//! Write transactions run side by side, so one may read at a submitted
//! commit older than the newest: `staged` keeps every version above the
//! visible LSN, and a read takes the newest staged version at or below its
//! read point. Failing that, it uses a cached page only if the page's LSN is
//! at or below the read point (the cache holds the newest durable version,
//! so it is then the version as of the read point); otherwise it asks storage
//! for the page as of its read point, or as of the visible LSN for a read
//! point above it — a page not staged did not change since (DESIGN.md
//! invariant 5).
//!
//! Reader: without the commit stream a reader cannot know which cached pages
//! changed, so its cache is keyed by (page, read point): an entry can never
//! be stale, and statements at the same read point share it.

use crate::stream::{Publisher, Subscriber};
use async_trait::async_trait;
use borealis_sql::heap::Overlay;
use borealis_sql::volume::{CacheStats, ReadPointHold};
use borealis_sql::{Volume, VolumeError};
use borealis_storage::client::{StorageError, VolumeReader, VolumeWriter};
use borealis_storage::ids::Epoch;
use borealis_storage::ids::{Lsn, PageId};
use borealis_storage::page::{PAGE_SIZE, Page};
use borealis_storage::redo::RedoBody;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The buffer cache of an instance: pages weighed in bytes, with counters.
pub struct PageCache {
    pages: moka::sync::Cache<PageId, Arc<Page>>,
    capacity_bytes: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: Arc<AtomicU64>,
}

impl PageCache {
    /// A cache of at most `capacity_bytes` of pages.
    pub fn new(capacity_bytes: u64) -> PageCache {
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&evictions);
        let pages = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_, _| page_weight())
            .eviction_listener(move |_, _, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        PageCache { pages, capacity_bytes, hits: AtomicU64::new(0), misses: AtomicU64::new(0), evictions }
    }

    /// The cached image of `page` if `usable` accepts it; counts a hit or a miss.
    fn get(&self, page: PageId, usable: impl FnOnce(&Page) -> bool) -> Option<Arc<Page>> {
        let found = self.pages.get(&page).filter(|cached| usable(cached));
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn insert(&self, page: PageId, image: Arc<Page>) {
        self.pages.insert(page, image);
    }

    fn invalidate(&self, page: &PageId) {
        self.pages.invalidate(page);
    }

    fn invalidate_all(&self) {
        self.pages.invalidate_all();
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        self.pages.run_pending_tasks();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bytes: self.pages.weighted_size(),
            capacity_bytes: self.capacity_bytes,
        }
    }
}
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
    /// The newest durable commit; statements read here.
    visible_lsn: Lsn,
    /// The newest submitted commit (>= `visible_lsn`); write transactions read here.
    staged_lsn: Lsn,
    /// The images of each page changed by commits above `visible_lsn`,
    /// oldest first: write transactions built on different submitted
    /// commits read each their own version.
    staged: HashMap<PageId, Vec<Arc<Page>>>,
    /// A commit was started and did not finish (quorum timeout, or its future
    /// was dropped): its records may still become durable, so the cache and
    /// `visible_lsn` may lack it. The next commit must settle it first.
    in_doubt: bool,
    /// (when, visible LSN) per commit, oldest first, for the min read point.
    history: VecDeque<(Instant, Lsn)>,
    /// Pages changed by each submitted commit not yet durable, for the
    /// commit stream.
    unpublished: BTreeMap<Lsn, Vec<PageId>>,
}

/// The writer's volume: quorum commits and a cache of newest page versions.
pub struct WriterVolume {
    storage: VolumeWriter,
    cache: PageCache,
    state: Mutex<WriterState>,
    /// Tells readers which pages each durable commit changed.
    publisher: Publisher,
    /// Read points of running statements, kept whatever the retention window.
    holds: Arc<ReadPointHolds>,
}

impl WriterVolume {
    /// Wraps a recovered storage writer; reads start at its durable LSN.
    pub fn new(storage: VolumeWriter, cache_bytes: u64) -> WriterVolume {
        let visible_lsn = storage.durable_lsn();
        let cache = PageCache::new(cache_bytes);
        let state = WriterState {
            visible_lsn,
            staged_lsn: visible_lsn,
            staged: HashMap::new(),
            in_doubt: false,
            history: VecDeque::new(),
            unpublished: BTreeMap::new(),
        };
        WriterVolume {
            storage,
            cache,
            state: Mutex::new(state),
            publisher: Publisher::new(),
            holds: Arc::new(ReadPointHolds::default()),
        }
    }

    /// Serves the commit stream on `addr` (UDP) until the task is dropped.
    pub async fn serve_commit_stream(
        volume: Arc<WriterVolume>,
        addr: SocketAddr,
        tls_dir: &Path,
    ) -> anyhow::Result<()> {
        let publisher = volume.publisher.clone();
        let hello = move || (volume.storage.epoch(), volume.lock().visible_lsn);
        publisher.serve(addr, tls_dir, hello).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves the min read point on while no commits arrive (it is
    /// otherwise recomputed at each commit), so that storage can collect
    /// history and checkpoint after a burst of writes. Runs until the
    /// volume is dropped.
    pub fn keep_history_moving(volume: &Arc<WriterVolume>) {
        let volume = Arc::downgrade(volume);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            loop {
                interval.tick().await;
                let Some(volume) = volume.upgrade() else { return };
                let state = volume.lock();
                let visible_lsn = state.visible_lsn;
                volume.advance_history(state, visible_lsn);
            }
        });
    }

    /// Applies a durable commit to the cached pages and makes it visible
    /// (the unpipelined `commit`, with nothing staged).
    fn install(&self, bodies: &[RedoBody], first_lsn: Lsn, commit_lsn: Lsn) -> Result<(), VolumeError> {
        let mut state = self.lock();
        assert!(commit_lsn > state.staged_lsn, "commit {commit_lsn} not above staged {}", state.staged_lsn);
        let mut lsn = first_lsn;
        for body in bodies {
            if let Some(cached) = self.cache.pages.get(&body.page()) {
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
        self.publisher.advance(commit_lsn, bodies.iter().map(RedoBody::page).collect());
        state.visible_lsn = commit_lsn;
        state.staged_lsn = commit_lsn;
        state.in_doubt = false;
        self.advance_history(state, commit_lsn);
        Ok(())
    }

    /// Records a new visible LSN for the min read point and tells storage.
    fn advance_history(&self, mut state: std::sync::MutexGuard<'_, WriterState>, visible_lsn: Lsn) {
        let now = Instant::now();
        state.history.push_back((now, visible_lsn));
        let retained = retained_read_point(&mut state.history, now);
        let min_read_point = self.holds.oldest().map_or(retained, |held| held.min(retained));
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
        state.staged_lsn = durable_lsn;
        state.staged.clear();
        state.unpublished.clear();
        state.in_doubt = false;
        // Readers cannot know what the settled commit changed: they resynchronise.
        self.publisher.resync(self.storage.epoch(), durable_lsn);
        tracing::info!(%durable_lsn, "an in-doubt commit was settled; the cache was dropped");
        self.advance_history(state, durable_lsn);
        Ok(())
    }
}

impl WriterVolume {
    /// Storage reports commits up to `durable` durable: their staged pages
    /// move to the cache and statements see them. Only fully staged commits
    /// become visible (a commit is staged right after its LSNs are assigned).
    fn made_durable(&self, durable: Lsn) {
        let mut state = self.lock();
        let visible = durable.min(state.staged_lsn);
        if visible <= state.visible_lsn {
            return;
        }
        let done: Vec<PageId> =
            state.staged.iter().filter(|(_, versions)| versions[0].lsn() <= visible).map(|(id, _)| *id).collect();
        for id in done {
            let Some(versions) = state.staged.get_mut(&id) else { continue };
            let durable = versions.iter().take_while(|page| page.lsn() <= visible).count();
            // The newest durable version is what the cache holds.
            let newest_durable = versions.drain(..durable).next_back().expect("one version is durable");
            if versions.is_empty() {
                state.staged.remove(&id);
            }
            self.cache.insert(id, newest_durable);
        }
        let later = state.unpublished.split_off(&visible.next());
        let published = std::mem::replace(&mut state.unpublished, later);
        let mut pages: Vec<PageId> = published.into_values().flatten().collect();
        pages.sort_unstable();
        pages.dedup();
        self.publisher.advance(visible, pages);
        state.visible_lsn = visible;
        self.advance_history(state, visible);
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
        Ok(self.read_pages(&[page], read_point).await?.pop().expect("one page asked"))
    }

    async fn read_pages(&self, pages: &[PageId], read_point: Lsn) -> Result<Vec<Arc<Page>>, VolumeError> {
        let (mut found, fetch_at) = {
            let state = self.lock();
            let found: Vec<Option<Arc<Page>>> = pages
                .iter()
                .map(|page| {
                    let staged = state.staged.get(page).into_iter().flatten();
                    match staged.take_while(|staged| staged.lsn() <= read_point).last() {
                        Some(staged) => Some(Arc::clone(staged)),
                        // Older than every staged version: durable (or never written).
                        None => self.cache.get(*page, |cached| cached.lsn() <= read_point),
                    }
                })
                .collect();
            // Above the visible LSN only staged pages changed.
            (found, read_point.min(state.visible_lsn))
        };
        let missing = missing_pages(pages, &found);
        if !missing.is_empty() {
            let fetched = self.storage.get_pages(&missing, fetch_at).await.map_err(volume_error)?;
            let state = self.lock();
            // Only the newest durable version may enter the cache: no commit
            // since the fetch point, and none staged for the page.
            fill_missing(pages, &mut found, fetched, |page, image| {
                if state.visible_lsn == fetch_at && !state.staged.contains_key(&page) {
                    self.cache.insert(page, Arc::clone(image));
                }
            });
        }
        Ok(found.into_iter().map(|page| page.expect("filled above")).collect())
    }

    async fn read_point(&self) -> Result<Lsn, VolumeError> {
        Ok(self.lock().visible_lsn)
    }

    async fn write_read_point(&self) -> Result<Lsn, VolumeError> {
        Ok(self.lock().staged_lsn)
    }

    async fn submit(&self, bodies: Vec<RedoBody>, mut pages: Overlay) -> Result<Lsn, VolumeError> {
        if self.lock().in_doubt {
            self.settle().await?;
            return Err(VolumeError::Conflict("an earlier commit's outcome was unknown".into()));
        }
        // Set before the await: if this future is dropped once the LSNs are
        // assigned, the records may become durable without being staged.
        self.lock().in_doubt = true;
        let lsns = self.storage.submit(&bodies).await.map_err(volume_error)?;
        let mut last_lsn: HashMap<PageId, Lsn> = HashMap::new();
        let mut lsn = lsns.first;
        for body in &bodies {
            last_lsn.insert(body.page(), lsn);
            lsn = lsn.next();
        }
        let mut state = self.lock();
        state.unpublished.insert(lsns.commit, last_lsn.keys().copied().collect());
        for (id, lsn) in last_lsn {
            let image = pages
                .remove(&id)
                .ok_or_else(|| VolumeError::Internal(format!("commit changes page {id} but has no image of it")))?;
            let mut image = Arc::unwrap_or_clone(image);
            image.set_lsn(lsn);
            self.cache.invalidate(&id);
            state.staged.entry(id).or_default().push(Arc::new(image));
        }
        state.staged_lsn = lsns.commit;
        state.in_doubt = false;
        Ok(lsns.commit)
    }

    async fn wait_durable(&self, commit: Lsn) -> Result<(), VolumeError> {
        match self.storage.wait_durable(commit).await {
            Ok(()) => {
                self.made_durable(self.storage.durable_lsn());
                Ok(())
            }
            Err(error) => {
                // Later commits were built on this one: the next one settles.
                self.lock().in_doubt = true;
                Err(volume_error(error))
            }
        }
    }

    fn hold_read_point(&self, read_point: Lsn) -> Option<ReadPointHold> {
        Some(self.holds.hold(read_point))
    }

    fn cache_stats(&self) -> Option<CacheStats> {
        Some(self.cache.stats())
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

/// A reader's volume: a cache of pages kept current by the writer's commit
/// stream, misses read from storage at the statement's read point.
///
/// A cached image is the page as of its LSN and stays cached until a commit
/// changes the page: the stream names the pages, which are dropped before
/// the read point moves past that commit. A miss may be fetched at an older
/// read point while such a commit arrives, so an image is cached only if no
/// commit above its read point changed the page (`Following::changed`).
/// While the stream is down the read point comes from storage, and the cache
/// is dropped whenever it moves.
pub struct ReaderVolume {
    storage: VolumeReader,
    cache: PageCache,
    following: Mutex<Following>,
    holds: Arc<ReadPointHolds>,
}

/// Read points that running statements hold, with their counts.
#[derive(Default)]
pub struct ReadPointHolds(Mutex<BTreeMap<Lsn, usize>>);

impl ReadPointHolds {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Lsn, usize>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Holds `read_point` until the returned value is dropped.
    fn hold(self: &Arc<Self>, read_point: Lsn) -> ReadPointHold {
        *self.lock().entry(read_point).or_insert(0) += 1;
        Arc::new(Held { holds: Arc::clone(self), read_point })
    }

    /// The oldest read point a statement still holds.
    fn oldest(&self) -> Option<Lsn> {
        self.lock().keys().next().copied()
    }
}

struct Held {
    holds: Arc<ReadPointHolds>,
    read_point: Lsn,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut holds = self.holds.lock();
        if let Some(count) = holds.get_mut(&self.read_point) {
            *count -= 1;
            if *count == 0 {
                holds.remove(&self.read_point);
            }
        }
    }
}

/// The pages of `pages` that `found` lacks, in order.
fn missing_pages(pages: &[PageId], found: &[Option<Arc<Page>>]) -> Vec<PageId> {
    pages.iter().zip(found).filter(|(_, found)| found.is_none()).map(|(page, _)| *page).collect()
}

/// Puts `fetched` (the images of [`missing_pages`], in order) in the gaps
/// of `found`, offering each to `admit` (which may cache it).
fn fill_missing(
    pages: &[PageId],
    found: &mut [Option<Arc<Page>>],
    fetched: Vec<Page>,
    mut admit: impl FnMut(PageId, &Arc<Page>),
) {
    let mut fetched = fetched.into_iter();
    for (page, slot) in pages.iter().zip(found.iter_mut()).filter(|(_, slot)| slot.is_none()) {
        let image = Arc::new(fetched.next().expect("one image per missing page"));
        admit(*page, &image);
        *slot = Some(image);
    }
}

/// How often a reader tells storage the oldest read point its statements hold.
const HOLD_REFRESH: Duration = Duration::from_secs(5);

/// How long a reader remembers which pages changed at which LSN; a page
/// fetched at an older read point is not cached.
const CHANGES_RETENTION: Duration = Duration::from_secs(60);
/// Replica lag samples kept.
const LAG_SAMPLES: usize = 1024;

#[derive(Default)]
struct Following {
    /// Whether the commit stream is connected (and past its hello).
    connected: bool,
    /// The newest read point; never goes backwards.
    read_point: Lsn,
    /// Per page, the newest commit LSN that changed it (recent ones).
    changed: HashMap<PageId, Lsn>,
    /// (when, read point) of recent advances, oldest first.
    advances: VecDeque<(Instant, Lsn)>,
    /// Images fetched below this are not cached (what changed below it is forgotten).
    cache_floor: Lsn,
    /// Recent replica lags, newest last.
    lags: VecDeque<Duration>,
}

impl Following {
    fn forget_old_changes(&mut self, now: Instant) {
        let mut forgotten = None;
        while self.advances.front().is_some_and(|(at, _)| now.duration_since(*at) > CHANGES_RETENTION) {
            forgotten = self.advances.pop_front().map(|(_, lsn)| lsn);
        }
        if let Some(lsn) = forgotten {
            self.cache_floor = self.cache_floor.max(lsn);
            let floor = self.cache_floor;
            self.changed.retain(|_, changed| *changed > floor);
        }
    }

    /// Whether an image fetched at `read_point` may be cached.
    fn cacheable(&self, page: PageId, read_point: Lsn) -> bool {
        read_point >= self.cache_floor && self.changed.get(&page).is_none_or(|changed| *changed <= read_point)
    }
}

impl ReaderVolume {
    /// Wraps a storage reader; `follow` connects it to the writer's commit stream.
    pub fn new(storage: VolumeReader, cache_bytes: u64) -> ReaderVolume {
        let cache = PageCache::new(cache_bytes);
        ReaderVolume {
            storage,
            cache,
            following: Mutex::new(Following::default()),
            holds: Arc::new(ReadPointHolds::default()),
        }
    }

    /// Tells storage, every `HOLD_REFRESH`, the oldest read point a running
    /// statement holds, so that its history stays however long it runs.
    pub fn report_read_points(volume: &Arc<ReaderVolume>) {
        let volume = Arc::downgrade(volume);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(HOLD_REFRESH);
            loop {
                interval.tick().await;
                let Some(volume) = volume.upgrade() else { return };
                if let Some(oldest) = volume.holds.oldest()
                    && volume.storage.hold_read_point(oldest).await == 0
                {
                    tracing::warn!(read_point = %oldest, "no storage daemon keeps the history of a running statement");
                }
            }
        });
    }

    /// Follows the writer's commit stream at `writer` (UDP) for as long as the volume lives.
    pub fn follow(volume: &Arc<ReaderVolume>, writer: SocketAddr, tls_dir: &Path) {
        let subscriber: Arc<dyn Subscriber> = Arc::clone(volume) as _;
        let tls_dir = tls_dir.to_path_buf();
        tokio::spawn(async move {
            if let Err(e) = crate::stream::follow(writer, &tls_dir, subscriber).await {
                tracing::error!("cannot follow the commit stream: {e:#}");
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Following> {
        self.following.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Subscriber for ReaderVolume {
    fn resync(&self, _epoch: Epoch, durable_lsn: Lsn) {
        let mut following = self.lock();
        self.cache.invalidate_all();
        following.read_point = following.read_point.max(durable_lsn);
        following.cache_floor = following.read_point;
        following.changed.clear();
        following.advances.clear();
        following.connected = true;
    }

    fn advance(&self, durable_lsn: Lsn, pages: &[PageId], sent_at_micros: u64) {
        let now = Instant::now();
        let mut following = self.lock();
        for page in pages {
            self.cache.invalidate(page);
            following.changed.insert(*page, durable_lsn);
        }
        following.read_point = following.read_point.max(durable_lsn);
        following.advances.push_back((now, durable_lsn));
        following.forget_old_changes(now);
        let lag = Duration::from_micros(crate::stream::now_micros().saturating_sub(sent_at_micros));
        if following.lags.len() == LAG_SAMPLES {
            following.lags.pop_front();
        }
        following.lags.push_back(lag);
    }

    fn disconnected(&self) {
        self.lock().connected = false;
    }
}

#[async_trait]
impl Volume for ReaderVolume {
    async fn read_page(&self, page: PageId, read_point: Lsn) -> Result<Arc<Page>, VolumeError> {
        Ok(self.read_pages(&[page], read_point).await?.pop().expect("one page asked"))
    }

    async fn read_pages(&self, pages: &[PageId], read_point: Lsn) -> Result<Vec<Arc<Page>>, VolumeError> {
        let mut found: Vec<Option<Arc<Page>>> =
            pages.iter().map(|page| self.cache.get(*page, |cached| cached.lsn() <= read_point)).collect();
        let missing = missing_pages(pages, &found);
        if !missing.is_empty() {
            let fetched = self.storage.get_pages(&missing, read_point).await.map_err(volume_error)?;
            let following = self.lock();
            fill_missing(pages, &mut found, fetched, |page, image| {
                if following.cacheable(page, read_point) {
                    self.cache.insert(page, Arc::clone(image));
                }
            });
        }
        Ok(found.into_iter().map(|page| page.expect("filled above")).collect())
    }

    async fn read_point(&self) -> Result<Lsn, VolumeError> {
        {
            let following = self.lock();
            if following.connected {
                return Ok(following.read_point);
            }
        }
        // No commit stream: ask storage, and forget the cache when the
        // read point moves (which pages changed is unknown).
        let learned = self.storage.read_point().await.map_err(volume_error)?;
        let mut following = self.lock();
        if learned > following.read_point && !following.connected {
            self.cache.invalidate_all();
            following.read_point = learned;
            following.cache_floor = learned;
            following.changed.clear();
        }
        Ok(following.read_point)
    }

    async fn commit(&self, _bodies: Vec<RedoBody>) -> Result<Lsn, VolumeError> {
        Err(VolumeError::ReadOnly)
    }

    fn hold_read_point(&self, read_point: Lsn) -> Option<ReadPointHold> {
        Some(self.holds.hold(read_point))
    }

    fn cache_stats(&self) -> Option<CacheStats> {
        Some(self.cache.stats())
    }

    fn replica_lag(&self) -> Option<Duration> {
        let following = self.lock();
        following.lags.back().copied().filter(|_| following.connected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_point_is_held_until_its_last_statement_ends() {
        let holds = Arc::new(ReadPointHolds::default());
        let first = holds.hold(Lsn(10));
        let second = holds.hold(Lsn(10));
        let later = holds.hold(Lsn(20));
        assert_eq!(holds.oldest(), Some(Lsn(10)));
        drop(first);
        assert_eq!(holds.oldest(), Some(Lsn(10)), "another statement still reads at 10");
        drop(second);
        assert_eq!(holds.oldest(), Some(Lsn(20)));
        drop(later);
        assert_eq!(holds.oldest(), None);
    }

    #[test]
    fn a_page_fetched_before_a_commit_that_changed_it_is_not_cached() {
        let start = Instant::now();
        let mut following = Following::default();
        following.changed.insert(PageId(1), Lsn(50));
        following.advances.push_back((start, Lsn(50)));
        assert!(!following.cacheable(PageId(1), Lsn(40)), "fetched at 40, changed at 50: stale");
        assert!(following.cacheable(PageId(1), Lsn(50)));
        assert!(following.cacheable(PageId(2), Lsn(40)), "page 2 did not change");
        // Once the change is forgotten, older fetches are refused outright.
        following.forget_old_changes(start + CHANGES_RETENTION + Duration::from_secs(1));
        assert!(following.changed.is_empty());
        assert!(!following.cacheable(PageId(2), Lsn(40)));
        assert!(following.cacheable(PageId(1), Lsn(50)));
    }

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
