//! One segment: the records of one protection group held by one daemon, and
//! how complete they are (sans-IO).
//!
//! Records chain by their back link (`prev_lsn`). A record whose back link is
//! the chain's tail extends the chain; one that arrives early is held until
//! the gap fills (at most `HELD_RECORDS_MAX`). The segment complete LSN (SCL)
//! is the chain's tail, or further when the writer promised (`complete_to`)
//! that the group has no records between that tail and the promise.
//!
//! Records at or below a checkpoint are released from memory
//! (`release_through`): their pages are in the page file and every segment
//! of the group has them. The segment remembers the last record and commit
//! it released, which is also what it restarts from (`SegmentBase`).

use crate::ids::{Epoch, Lsn, ProtectionGroupId};
use crate::proto::SegmentProgress;
use crate::redo::RedoRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Included};

/// Records held out of order per segment. Bounds memory when a gap never
/// fills; records beyond it are dropped (the writer or a peer resends them).
pub const HELD_RECORDS_MAX: usize = 100_000;

/// What happened to an inserted record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// It extended the chain (and possibly released held records).
    Chained,
    /// It waits for an earlier record.
    Held,
    /// The segment already has it.
    Duplicate,
    /// Dropped: the held set is full, or its back link forks the chain.
    Dropped,
}

/// Where a segment stands after releasing its records through a checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentBase {
    pub protection_group: ProtectionGroupId,
    /// The last record released.
    pub tail_lsn: Lsn,
    /// The last commit record released.
    pub commit_lsn: Lsn,
    /// The SCL when the checkpoint was taken.
    pub segment_complete_lsn: Lsn,
}

/// One segment's records.
#[derive(Debug)]
pub struct Segment {
    protection_group: ProtectionGroupId,
    segment_complete_lsn: Lsn,
    tail_lsn: Lsn,
    /// Records at or below `released.tail_lsn` are no longer in memory.
    released: SegmentBase,
    records: BTreeMap<Lsn, RedoRecord>,
    commits: BTreeSet<Lsn>,
    held: BTreeMap<Lsn, RedoRecord>,
    /// Promises waiting for the chain to reach their tail: tail -> complete_to.
    promises: BTreeMap<Lsn, Lsn>,
}

impl Segment {
    /// An empty segment of `protection_group`.
    pub fn new(protection_group: ProtectionGroupId) -> Segment {
        Segment::from_base(SegmentBase { protection_group, ..SegmentBase::default() })
    }

    /// A segment restarting from a checkpoint: its chain continues after
    /// the released tail.
    pub fn from_base(base: SegmentBase) -> Segment {
        Segment {
            protection_group: base.protection_group,
            segment_complete_lsn: base.segment_complete_lsn.max(base.tail_lsn),
            tail_lsn: base.tail_lsn,
            released: base,
            records: BTreeMap::new(),
            commits: BTreeSet::new(),
            held: BTreeMap::new(),
            promises: BTreeMap::new(),
        }
    }

    /// The segment complete LSN.
    pub fn segment_complete_lsn(&self) -> Lsn {
        self.segment_complete_lsn
    }

    /// The last record of the complete chain.
    pub fn tail_lsn(&self) -> Lsn {
        self.tail_lsn
    }

    /// Number of records waiting for a gap to fill.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Progress as reported to clients.
    pub fn progress(&self) -> SegmentProgress {
        SegmentProgress {
            protection_group: self.protection_group,
            segment_complete_lsn: self.segment_complete_lsn,
            tail_lsn: self.tail_lsn,
            commit_lsn: self.last_commit_at_or_below(self.tail_lsn),
        }
    }

    /// Adds a record of this segment's group.
    pub fn insert(&mut self, record: RedoRecord) -> Insert {
        assert_eq!(record.protection_group, self.protection_group, "record of another group");
        assert!(record.prev_lsn < record.lsn, "back link {} not below {}", record.prev_lsn, record.lsn);
        if record.lsn <= self.tail_lsn {
            return Insert::Duplicate;
        }
        if record.prev_lsn < self.tail_lsn {
            return Insert::Dropped;
        }
        if record.prev_lsn > self.tail_lsn {
            if self.held.len() >= HELD_RECORDS_MAX && !self.held.contains_key(&record.prev_lsn) {
                return Insert::Dropped;
            }
            self.held.insert(record.prev_lsn, record);
            return Insert::Held;
        }
        self.chain(record);
        while let Some(next) = self.held.remove(&self.tail_lsn) {
            self.chain(next);
        }
        Insert::Chained
    }

    fn chain(&mut self, record: RedoRecord) {
        debug_assert_eq!(record.prev_lsn, self.tail_lsn);
        self.tail_lsn = record.lsn;
        self.segment_complete_lsn = self.segment_complete_lsn.max(record.lsn);
        self.promises = self.promises.split_off(&record.lsn);
        if let Some(complete_to) = self.promises.remove(&record.lsn) {
            self.segment_complete_lsn = self.segment_complete_lsn.max(complete_to);
        }
        if record.is_commit() {
            self.commits.insert(record.lsn);
        }
        self.records.insert(record.lsn, record);
    }

    /// The writer's promise: the group has no records in `(tail_lsn, complete_to]`.
    /// Taken when this segment's chain ends at `tail_lsn`, now or once it
    /// gets there (so the order of appends and promises does not matter).
    pub fn extend_complete(&mut self, tail_lsn: Lsn, complete_to: Lsn) {
        if self.tail_lsn == tail_lsn {
            self.segment_complete_lsn = self.segment_complete_lsn.max(complete_to);
        } else if tail_lsn > self.tail_lsn
            && (self.promises.len() < HELD_RECORDS_MAX || self.promises.contains_key(&tail_lsn))
        {
            let promised = self.promises.entry(tail_lsn).or_insert(complete_to);
            *promised = (*promised).max(complete_to);
        }
    }

    /// Drops records at or below `lsn` from memory; returns the new base.
    pub fn release_through(&mut self, lsn: Lsn) -> SegmentBase {
        let kept = self.records.split_off(&lsn.next());
        if let Some(last) = self.records.keys().next_back() {
            self.released.tail_lsn = *last;
        }
        let kept_commits = self.commits.split_off(&lsn.next());
        if let Some(last) = self.commits.iter().next_back() {
            self.released.commit_lsn = *last;
        }
        self.records = kept;
        self.commits = kept_commits;
        self.released.segment_complete_lsn = self.segment_complete_lsn;
        self.released
    }

    /// Records in memory (not yet released by a checkpoint).
    pub fn resident_records(&self) -> usize {
        self.records.len()
    }

    /// Annuls records older than `epoch` in `(above, up_to]`. A segment that
    /// was complete to `above` becomes complete to `up_to` (the range is empty
    /// by decree). Returns how many records were removed.
    pub fn truncate(&mut self, epoch: Epoch, above: Lsn, up_to: Lsn) -> usize {
        let annulled = |r: &RedoRecord| r.epoch < epoch && r.lsn > above && r.lsn <= up_to;
        let before = self.records.len() + self.held.len();
        self.records.retain(|_, r| !annulled(r));
        self.held.retain(|_, r| !annulled(r));
        let removed = before - self.records.len() - self.held.len();
        self.promises.retain(|tail, _| *tail <= above);
        self.commits.retain(|lsn| self.records.contains_key(lsn));
        self.tail_lsn = self.records.keys().next_back().copied().unwrap_or(self.released.tail_lsn);
        // Annulled records never existed, so a segment complete to `above`
        // stays complete as far as it was, and at least to `up_to`.
        if self.segment_complete_lsn >= above {
            self.segment_complete_lsn = self.segment_complete_lsn.max(up_to);
        }
        while let Some(next) = self.held.remove(&self.tail_lsn) {
            self.chain(next);
        }
        removed
    }

    /// Chained records in `(after, up_to]`, stopping after `bytes_max`
    /// encoded bytes (but returning at least one); true if more remain.
    /// None when some of them were released by a checkpoint.
    pub fn records_between(&self, after: Lsn, up_to: Lsn, bytes_max: usize) -> Option<(Vec<RedoRecord>, bool)> {
        if after < self.released.tail_lsn {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for record in self.records.range((Excluded(after), Included(up_to))).map(|(_, r)| r) {
            let size = bincode::serialized_size(record).map_or(usize::MAX, |s| s as usize);
            if !out.is_empty() && bytes.saturating_add(size) > bytes_max {
                return Some((out, true));
            }
            bytes = bytes.saturating_add(size);
            out.push(record.clone());
        }
        Some((out, false))
    }

    /// Chained records in `(after, up_to]`, in order.
    pub fn records_in(&self, after: Lsn, up_to: Lsn) -> impl Iterator<Item = &RedoRecord> {
        let range = if up_to > after { Some((Excluded(after), Included(up_to))) } else { None };
        range.into_iter().flat_map(|r| self.records.range(r).map(|(_, record)| record))
    }

    /// The last record of the chain at or below `lsn` (`Lsn::ZERO` if none).
    pub fn last_record_at_or_below(&self, lsn: Lsn) -> Lsn {
        let released = Some(self.released.tail_lsn).filter(|released| *released <= lsn).unwrap_or(Lsn::ZERO);
        self.records.range(..=lsn).next_back().map_or(released, |(lsn, _)| *lsn)
    }

    /// The last commit record of the chain at or below `lsn` (`Lsn::ZERO` if none).
    pub fn last_commit_at_or_below(&self, lsn: Lsn) -> Lsn {
        let released = Some(self.released.commit_lsn).filter(|released| *released <= lsn).unwrap_or(Lsn::ZERO);
        self.commits.range(..=lsn).next_back().copied().unwrap_or(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PageId;
    use crate::redo::RedoBody;

    fn record(lsn: u64, prev: u64, epoch: u64, is_commit: bool) -> RedoRecord {
        RedoRecord {
            lsn: Lsn(lsn),
            prev_lsn: Lsn(prev),
            protection_group: ProtectionGroupId(0),
            epoch: Epoch(epoch),
            commit_lsn: if is_commit { Lsn(lsn) } else { Lsn(lsn + 1) },
            body: RedoBody::DeleteTuple { page: PageId(1), slot: 0 },
        }
    }

    #[test]
    fn gaps_hold_the_complete_lsn_until_they_fill() {
        let mut segment = Segment::new(ProtectionGroupId(0));
        assert_eq!(segment.insert(record(2, 0, 1, false)), Insert::Chained);
        assert_eq!(segment.insert(record(7, 5, 1, true)), Insert::Held);
        assert_eq!(segment.insert(record(9, 7, 1, false)), Insert::Held);
        assert_eq!(segment.segment_complete_lsn(), Lsn(2));
        assert_eq!(segment.insert(record(5, 2, 1, false)), Insert::Chained);
        assert_eq!(segment.segment_complete_lsn(), Lsn(9));
        assert_eq!(segment.held_count(), 0);
        assert_eq!(segment.insert(record(5, 2, 1, false)), Insert::Duplicate);
        assert_eq!(segment.progress().commit_lsn, Lsn(7));
    }

    #[test]
    fn promises_extend_only_a_matching_chain() {
        let mut segment = Segment::new(ProtectionGroupId(0));
        segment.insert(record(3, 0, 1, true));
        segment.extend_complete(Lsn(2), Lsn(10));
        assert_eq!(segment.segment_complete_lsn(), Lsn(3));
        segment.extend_complete(Lsn(3), Lsn(10));
        assert_eq!(segment.segment_complete_lsn(), Lsn(10));
        assert_eq!(segment.tail_lsn(), Lsn(3));
        // A promise that arrives before its records is kept until they chain.
        segment.extend_complete(Lsn(14), Lsn(20));
        segment.insert(record(14, 12, 1, false));
        assert_eq!(segment.segment_complete_lsn(), Lsn(10));
        segment.insert(record(12, 3, 1, false));
        assert_eq!(segment.segment_complete_lsn(), Lsn(20));
    }

    #[test]
    fn truncation_annuls_older_epochs_only() {
        let mut segment = Segment::new(ProtectionGroupId(0));
        for (lsn, prev) in [(1, 0), (2, 1), (3, 2), (4, 3)] {
            segment.insert(record(lsn, prev, 1, lsn == 2));
        }
        assert_eq!(segment.truncate(Epoch(2), Lsn(2), Lsn(100)), 2);
        assert_eq!(segment.tail_lsn(), Lsn(2));
        assert_eq!(segment.segment_complete_lsn(), Lsn(100));
        assert_eq!(segment.insert(record(101, 2, 2, true)), Insert::Chained);
        assert_eq!(segment.truncate(Epoch(2), Lsn(2), Lsn(100)), 0);
        assert_eq!(segment.tail_lsn(), Lsn(101));
    }

    #[test]
    fn records_are_paged_by_size() {
        let mut segment = Segment::new(ProtectionGroupId(0));
        for lsn in 1..=10 {
            segment.insert(record(lsn, lsn - 1, 1, false));
        }
        let (first, more) = segment.records_between(Lsn(0), Lsn(10), 1).unwrap();
        assert_eq!((first.len(), more), (1, true));
        let (rest, more) = segment.records_between(Lsn(1), Lsn(8), usize::MAX).unwrap();
        assert_eq!((rest.len(), more), (7, false));
    }

    #[test]
    fn released_records_leave_memory_and_the_chain_goes_on() {
        let mut segment = Segment::new(ProtectionGroupId(0));
        for lsn in 1..=6 {
            segment.insert(record(lsn, lsn - 1, 1, lsn % 2 == 0));
        }
        let base = segment.release_through(Lsn(5));
        assert_eq!((base.tail_lsn, base.commit_lsn, base.segment_complete_lsn), (Lsn(5), Lsn(4), Lsn(6)));
        assert_eq!(segment.resident_records(), 1);
        assert_eq!(segment.records_between(Lsn(3), Lsn(6), usize::MAX), None, "released records cannot be served");
        assert_eq!(segment.records_between(Lsn(5), Lsn(6), usize::MAX).unwrap().0.len(), 1);
        assert_eq!(
            (segment.last_commit_at_or_below(Lsn(5)), segment.last_record_at_or_below(Lsn(5))),
            (Lsn(4), Lsn(5))
        );

        let mut restarted = Segment::from_base(base);
        assert_eq!(restarted.insert(record(3, 2, 1, false)), Insert::Duplicate);
        assert_eq!(restarted.insert(record(6, 5, 1, true)), Insert::Chained);
        assert_eq!((restarted.tail_lsn(), restarted.segment_complete_lsn()), (Lsn(6), Lsn(6)));
        assert_eq!(restarted.last_commit_at_or_below(Lsn(5)), Lsn(4));
    }
}
