//! Page versions built by the log applicator (sans-IO).
//!
//! Each page keeps a short list of images, oldest first. Readers only read at
//! commit points and a transaction's records have consecutive LSNs, so a
//! record of the transaction that made the newest image (same commit LSN)
//! changes that image in place, however many records of other pages came
//! between; a record of a later transaction starts a new version. Versions that no read point can reach
//! any more (older than the newest one at or below the horizon) are dropped
//! by `collect_garbage`, and read points below the horizon get `TooOld`.
//!
//! A checkpoint writes images out (`BaseImages`, the daemon's page file) and
//! `evict` drops pages whose every version is checkpointed: a read or a
//! record that finds no version in memory starts from the checkpointed image.

use crate::ids::{Lsn, PageId};
use crate::page::Page;
use crate::redo::{RedoError, RedoRecord};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
struct Version {
    /// LSN of the last record applied to this image.
    lsn: Lsn,
    /// Commit LSN of the transaction of that record: later records of the
    /// same transaction change the image in place.
    commit_lsn: Lsn,
    page: Arc<Page>,
}

/// A read point below the retained history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooOld {
    /// The oldest read point still served.
    pub oldest: Lsn,
}

/// Page images written out by checkpoints, each as of the checkpoint that
/// last wrote it.
pub trait BaseImages: Send + Sync + std::fmt::Debug {
    /// The image of `page`; None if no checkpoint wrote it.
    fn read(&self, page: PageId) -> Result<Option<Page>, String>;
    /// Every page some checkpoint wrote.
    fn page_ids(&self) -> Vec<PageId>;
}

/// No checkpointed images: every page lives in memory.
#[derive(Debug, Default)]
pub struct InMemoryOnly;

impl BaseImages for InMemoryOnly {
    fn read(&self, _page: PageId) -> Result<Option<Page>, String> {
        Ok(None)
    }

    fn page_ids(&self) -> Vec<PageId> {
        Vec::new()
    }
}

/// Why a page could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("{0}")]
    TooOld(TooOld),
    #[error("cannot read the checkpointed image of page {page}: {reason}")]
    Base { page: PageId, reason: String },
}

impl std::fmt::Display for TooOld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "read point below the oldest kept version ({})", self.oldest)
    }
}

/// Every page's versions.
#[derive(Debug)]
pub struct PageVersions {
    pages: HashMap<PageId, Vec<Version>>,
    history_floor: Lsn,
    base: Arc<dyn BaseImages>,
}

impl Default for PageVersions {
    fn default() -> Self {
        PageVersions::new()
    }
}

impl PageVersions {
    /// No pages, all history available, nothing checkpointed.
    pub fn new() -> PageVersions {
        PageVersions::with_base(Arc::new(InMemoryOnly), Lsn::ZERO)
    }

    /// Pages checkpointed in `base`; history below `floor` (the newest
    /// checkpoint, possibly interrupted) is gone.
    pub fn with_base(base: Arc<dyn BaseImages>, floor: Lsn) -> PageVersions {
        PageVersions { pages: HashMap::new(), history_floor: floor, base }
    }

    fn base_image(&self, page: PageId) -> Result<Option<Page>, VersionError> {
        self.base.read(page).map_err(|reason| VersionError::Base { page, reason })
    }

    /// Applies a record on top of its page's newest version (read from the
    /// checkpointed image when none is in memory). A record the checkpointed
    /// image already holds (a checkpoint interrupted by a crash wrote it) is
    /// skipped.
    pub fn apply(&mut self, record: &RedoRecord) -> Result<(), RedoError> {
        let page = record.body.page();
        if !self.pages.contains_key(&page) {
            let base = self.base_image(page).map_err(|e| RedoError::Decode(e.to_string()))?;
            match base {
                Some(image) if image.lsn() >= record.lsn => return Ok(()),
                Some(image) => {
                    let lsn = image.lsn();
                    self.pages.insert(page, vec![Version { lsn, commit_lsn: lsn, page: Arc::new(image) }]);
                }
                None => {}
            }
        }
        let versions = self.pages.entry(page).or_default();
        match versions.last_mut() {
            Some(newest) if newest.commit_lsn == record.commit_lsn => {
                record.apply(Arc::make_mut(&mut newest.page))?;
                newest.lsn = record.lsn;
            }
            newest => {
                let mut image = newest.map(|v| Page::clone(&v.page)).unwrap_or_default();
                record.apply(&mut image)?;
                versions.push(Version { lsn: record.lsn, commit_lsn: record.commit_lsn, page: Arc::new(image) });
            }
        }
        Ok(())
    }

    /// The page as of `read_point`: its newest version at or below it, else
    /// its checkpointed image, else an all-zero page.
    pub fn page_at(&self, page: PageId, read_point: Lsn) -> Result<Arc<Page>, VersionError> {
        if read_point < self.history_floor {
            return Err(VersionError::TooOld(TooOld { oldest: self.history_floor }));
        }
        let found = self.pages.get(&page).and_then(|versions| versions.iter().rev().find(|v| v.lsn <= read_point));
        if let Some(version) = found {
            return Ok(Arc::clone(&version.page));
        }
        match self.base_image(page)? {
            Some(image) if image.lsn() <= read_point => Ok(Arc::new(image)),
            _ => Ok(Arc::new(Page::empty())),
        }
    }

    /// The newest image at or below `lsn` of every page changed in
    /// `(since, lsn]`: what a checkpoint at `lsn` writes.
    pub fn changed_between(&self, since: Lsn, lsn: Lsn) -> Vec<(PageId, Arc<Page>)> {
        self.pages
            .iter()
            .filter_map(|(page, versions)| {
                let version = versions.iter().rev().find(|v| v.lsn <= lsn)?;
                (version.lsn > since).then(|| (*page, Arc::clone(&version.page)))
            })
            .collect()
    }

    /// Drops pages whose every version is at or below `checkpoint` (their
    /// newest is in the checkpointed images); history below it is gone.
    pub fn evict(&mut self, checkpoint: Lsn) {
        self.pages.retain(|_, versions| versions.last().is_some_and(|v| v.lsn > checkpoint));
        self.history_floor = self.history_floor.max(checkpoint);
    }

    /// Pages held in memory.
    pub fn resident_pages(&self) -> usize {
        self.pages.len()
    }

    /// Drops versions that no read point at or above `horizon` can reach.
    pub fn collect_garbage(&mut self, horizon: Lsn) {
        if horizon <= self.history_floor {
            return;
        }
        self.history_floor = horizon;
        for versions in self.pages.values_mut() {
            let reachable = versions.iter().rposition(|v| v.lsn <= horizon);
            if let Some(keep_from) = reachable {
                versions.drain(..keep_from);
            }
        }
    }

    /// The oldest read point served.
    pub fn history_floor(&self) -> Lsn {
        self.history_floor
    }

    /// Every page with a version in memory or a checkpointed image, sorted.
    pub fn page_ids(&self) -> Vec<PageId> {
        let mut ids: Vec<PageId> = self.pages.keys().copied().chain(self.base.page_ids()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Whether `page` has a version at or below `lsn` (it existed then).
    pub fn has_version_at(&self, page: PageId, lsn: Lsn) -> Result<bool, VersionError> {
        if self.pages.get(&page).is_some_and(|versions| versions.first().is_some_and(|v| v.lsn <= lsn)) {
            return Ok(true);
        }
        Ok(self.base_image(page)?.is_some_and(|image| image.lsn() <= lsn))
    }

    /// Versions kept for `page` (for tests and metrics).
    pub fn version_count(&self, page: PageId) -> usize {
        self.pages.get(&page).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Epoch, ProtectionGroupId};
    use crate::page::PageKind;
    use crate::redo::RedoBody;

    const PAGE: PageId = PageId(7);

    fn record(lsn: u64, is_commit: bool, body: RedoBody) -> RedoRecord {
        RedoRecord {
            lsn: Lsn(lsn),
            prev_lsn: Lsn(lsn - 1),
            protection_group: ProtectionGroupId(0),
            epoch: Epoch(1),
            commit_lsn: if is_commit { Lsn(lsn) } else { Lsn(lsn + 1) },
            body,
        }
    }

    fn insert(lsn: u64, is_commit: bool, slot: u16, data: &[u8]) -> RedoRecord {
        record(lsn, is_commit, RedoBody::InsertTuple { page: PAGE, slot, data: data.to_vec() })
    }

    fn versions_after(records: &[RedoRecord]) -> PageVersions {
        let mut versions = PageVersions::new();
        for r in records {
            versions.apply(r).unwrap();
        }
        versions
    }

    #[test]
    fn reads_see_the_page_as_of_each_commit() {
        let versions = versions_after(&[
            record(1, false, RedoBody::InitPage { page: PAGE, kind: PageKind::Heap }),
            insert(2, true, 0, b"a"),
            insert(3, false, 1, b"b"),
            insert(4, true, 2, b"c"),
        ]);
        assert_eq!(versions.version_count(PAGE), 2, "records of one transaction share a version");
        assert_eq!(versions.page_at(PAGE, Lsn(0)).unwrap().kind(), PageKind::Empty);
        let at_2 = versions.page_at(PAGE, Lsn(2)).unwrap();
        assert_eq!((at_2.tuple(0), at_2.tuple(1)), (Some(&b"a"[..]), None));
        let at_9 = versions.page_at(PAGE, Lsn(9)).unwrap();
        assert_eq!(at_9.tuple(2), Some(&b"c"[..]));
        assert_eq!(versions.page_at(PageId(99), Lsn(9)).unwrap().lsn(), Lsn::ZERO);
    }

    #[test]
    fn a_transaction_writing_many_pages_makes_one_version_of_each() {
        // Records 1..=6 are one transaction alternating between a heap page
        // and an index page (commit at 6); 7..=8 a second transaction.
        let other = PageId(8);
        let in_txn = |lsn: u64, commit: u64, page: PageId, slot: u16| RedoRecord {
            commit_lsn: Lsn(commit),
            ..record(lsn, false, RedoBody::InsertTuple { page, slot, data: vec![lsn as u8] })
        };
        let mut records = vec![
            RedoRecord {
                commit_lsn: Lsn(6),
                ..record(1, false, RedoBody::InitPage { page: PAGE, kind: PageKind::Heap })
            },
            RedoRecord {
                commit_lsn: Lsn(6),
                ..record(2, false, RedoBody::InitPage { page: other, kind: PageKind::Heap })
            },
        ];
        records.extend([in_txn(3, 6, PAGE, 0), in_txn(4, 6, other, 0), in_txn(5, 6, PAGE, 1), in_txn(6, 6, other, 1)]);
        records.extend([in_txn(7, 8, PAGE, 2), in_txn(8, 8, other, 2)]);
        let versions = versions_after(&records);
        assert_eq!((versions.version_count(PAGE), versions.version_count(other)), (2, 2));
        let at_6 = versions.page_at(PAGE, Lsn(6)).unwrap();
        assert_eq!((at_6.tuple(1), at_6.tuple(2)), (Some(&[5u8][..]), None));
        assert_eq!(versions.page_at(PAGE, Lsn(8)).unwrap().tuple(2), Some(&[7u8][..]));
        assert_eq!(versions.page_at(other, Lsn(0)).unwrap().kind(), PageKind::Empty);
    }

    #[test]
    fn garbage_collection_keeps_what_the_horizon_reaches() {
        let mut versions = versions_after(&[
            record(1, true, RedoBody::InitPage { page: PAGE, kind: PageKind::Heap }),
            insert(2, true, 0, b"a"),
            insert(3, true, 1, b"b"),
            insert(4, true, 2, b"c"),
        ]);
        assert_eq!(versions.version_count(PAGE), 4);
        versions.collect_garbage(Lsn(3));
        assert_eq!(versions.version_count(PAGE), 2);
        assert_eq!(versions.page_at(PAGE, Lsn(3)).unwrap().tuple(1), Some(&b"b"[..]));
        assert!(matches!(versions.page_at(PAGE, Lsn(2)), Err(VersionError::TooOld(TooOld { oldest: Lsn(3) }))));
    }

    #[test]
    fn a_failed_apply_is_reported() {
        let mut versions = PageVersions::new();
        let err = versions.apply(&record(1, true, RedoBody::DeleteTuple { page: PAGE, slot: 4 }));
        assert!(err.is_err());
    }
}
