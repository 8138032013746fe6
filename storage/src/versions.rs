//! Page versions built by the log applicator (sans-IO).
//!
//! Each page keeps a short list of images, oldest first. Readers only read at
//! commit points and a transaction's records have consecutive LSNs, so a
//! record of the transaction that made the newest image (same commit LSN)
//! changes that image in place, however many records of other pages came
//! between; a record of a later transaction starts a new version. Versions that no read point can reach
//! any more (older than the newest one at or below the horizon) are dropped
//! by `collect_garbage`, and read points below the horizon get `TooOld`.

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

/// Every page's versions.
#[derive(Debug, Default)]
pub struct PageVersions {
    pages: HashMap<PageId, Vec<Version>>,
    history_floor: Lsn,
}

impl PageVersions {
    /// No pages, all history available.
    pub fn new() -> PageVersions {
        PageVersions::default()
    }

    /// Applies a record on top of its page's newest version.
    pub fn apply(&mut self, record: &RedoRecord) -> Result<(), RedoError> {
        let versions = self.pages.entry(record.body.page()).or_default();
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

    /// The page as of `read_point`: its newest version at or below it, or an
    /// all-zero page if it had none.
    pub fn page_at(&self, page: PageId, read_point: Lsn) -> Result<Arc<Page>, TooOld> {
        if read_point < self.history_floor {
            return Err(TooOld { oldest: self.history_floor });
        }
        let found = self.pages.get(&page).and_then(|versions| versions.iter().rev().find(|v| v.lsn <= read_point));
        Ok(found.map_or_else(|| Arc::new(Page::empty()), |v| Arc::clone(&v.page)))
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

    /// Every page with at least one version, in no particular order.
    pub fn page_ids(&self) -> impl Iterator<Item = PageId> + '_ {
        self.pages.keys().copied()
    }

    /// Whether `page` has a version at or below `lsn` (it existed then).
    pub fn has_version_at(&self, page: PageId, lsn: Lsn) -> bool {
        self.pages.get(&page).is_some_and(|versions| versions.first().is_some_and(|v| v.lsn <= lsn))
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
        assert_eq!(versions.page_at(PAGE, Lsn(2)).unwrap_err(), TooOld { oldest: Lsn(3) });
    }

    #[test]
    fn a_failed_apply_is_reported() {
        let mut versions = PageVersions::new();
        let err = versions.apply(&record(1, true, RedoBody::DeleteTuple { page: PAGE, slot: 4 }));
        assert!(err.is_err());
    }
}
