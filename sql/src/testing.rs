//! An in-memory [`Volume`] for tests: every page version kept per LSN.
//!
//! `MemoryVolume::new()` is a writer's view; [`MemoryVolume::reader`] gives a
//! read-only handle on the same pages (what a reader instance sees through
//! storage). Commits apply redo with [`RedoRecord::apply`], so the same page
//! rules as the storage daemons hold (a record never applies twice).

use crate::volume::{Volume, VolumeError};
use async_trait::async_trait;
use borealis_storage::ids::{Epoch, Lsn, PageId, ProtectionGroupId};
use borealis_storage::page::Page;
use borealis_storage::redo::{RedoBody, RedoRecord};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Pages {
    /// Every version of every page, by the LSN of the record that made it.
    versions: HashMap<PageId, BTreeMap<Lsn, Arc<Page>>>,
    /// LSN of the last commit record.
    commit_lsn: Lsn,
    /// Commits to refuse with `Unavailable` before accepting again (fault injection).
    commits_to_fail: usize,
}

/// In-memory pages with full history. Cloning shares the pages.
#[derive(Clone)]
pub struct MemoryVolume {
    pages: Arc<Mutex<Pages>>,
    read_only: bool,
}

impl Default for MemoryVolume {
    fn default() -> Self {
        MemoryVolume::new()
    }
}

impl MemoryVolume {
    /// An empty volume, writable through this handle.
    pub fn new() -> MemoryVolume {
        MemoryVolume { pages: Arc::new(Mutex::new(Pages::default())), read_only: false }
    }

    /// A read-only handle on the same pages.
    pub fn reader(&self) -> MemoryVolume {
        MemoryVolume { pages: Arc::clone(&self.pages), read_only: true }
    }

    /// Makes the next `count` commits fail with `Unavailable` (nothing applied).
    pub fn fail_next_commits(&self, count: usize) {
        self.lock().commits_to_fail = count;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pages> {
        self.pages.lock().expect("memory volume mutex poisoned by a panicking test")
    }
}

impl Pages {
    fn page_at(&self, page: PageId, read_point: Lsn) -> Arc<Page> {
        self.versions
            .get(&page)
            .and_then(|versions| versions.range(..=read_point).next_back())
            .map(|(_, image)| Arc::clone(image))
            .unwrap_or_else(|| Arc::new(Page::empty()))
    }

    fn apply(&mut self, bodies: Vec<RedoBody>) -> Result<Lsn, VolumeError> {
        let count = bodies.len();
        let mut staged: HashMap<PageId, Page> = HashMap::new();
        let mut lsn = self.commit_lsn;
        let mut made = Vec::with_capacity(count);
        for body in bodies {
            lsn = lsn.next();
            let page_id = body.page();
            let mut image = match staged.remove(&page_id) {
                Some(image) => image,
                None => (*self.page_at(page_id, self.commit_lsn)).clone(),
            };
            let record = RedoRecord {
                lsn,
                prev_lsn: Lsn::ZERO,
                protection_group: ProtectionGroupId(0),
                epoch: Epoch(1),
                commit_lsn: Lsn(self.commit_lsn.0 + count as u64),
                body,
            };
            record.apply(&mut image).map_err(|e| VolumeError::Internal(e.to_string()))?;
            made.push((page_id, lsn, image.clone()));
            staged.insert(page_id, image);
        }
        for (page_id, lsn, image) in made {
            self.versions.entry(page_id).or_default().insert(lsn, Arc::new(image));
        }
        self.commit_lsn = lsn;
        Ok(lsn)
    }
}

#[async_trait]
impl Volume for MemoryVolume {
    async fn read_page(&self, page: PageId, read_point: Lsn) -> Result<Arc<Page>, VolumeError> {
        Ok(self.lock().page_at(page, read_point))
    }

    async fn read_point(&self) -> Result<Lsn, VolumeError> {
        Ok(self.lock().commit_lsn)
    }

    async fn commit(&self, bodies: Vec<RedoBody>) -> Result<Lsn, VolumeError> {
        if self.read_only {
            return Err(VolumeError::ReadOnly);
        }
        let mut pages = self.lock();
        if pages.commits_to_fail > 0 {
            pages.commits_to_fail -= 1;
            return Err(VolumeError::Unavailable("injected commit failure".into()));
        }
        // A failed apply leaves nothing behind: versions are only inserted
        // once every record applied.
        pages.apply(bodies)
    }
}
