//! The storage daemon's state machine (sans-IO): its epoch, its segments,
//! their page versions, and the truncation ranges it has accepted.
//!
//! The daemon shell feeds it requests and does the I/O around it: an append
//! is checked (`check_epoch`), its records are logged and synced by the shell,
//! and only then inserted (`insert_synced`), so an SCL that is reported is
//! always durable. Pages are built lazily: records are applied up to a read
//! point when a page is read there, and up to the durable LSN in the
//! background; records above the durable LSN may still be truncated, so they
//! are never applied before a read point (always durable) covers them.
//!
//! A checkpoint (`checkpoint_plan`, then `finish_checkpoint` once the shell
//! has synced the pages) bounds memory: pages whose every version is at or
//! below it leave memory for the page file, and records at or below it leave
//! memory (the shell deletes log files that hold nothing newer). Its LSN is
//! at most the durable LSN, the oldest read point, every segment's applied
//! LSN and, while peers are watched, what every peer segment of the group
//! already holds: a record is released only when no segment can still need it.

use crate::ids::{Epoch, Lsn, NodeId, PageId, ProtectionGroupId, VolumeLayout};
use crate::page::Page;
use crate::proto::{GroupAppend, NodeStatus, PageDigest, SegmentProgress, Truncation};
use crate::redo::{RedoError, RedoRecord};
use crate::segment::{Insert, Segment, SegmentBase};
use crate::versions::{BaseImages, InMemoryOnly, PageVersions, VersionError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a reader's read point holds history after its last page read.
pub const READER_READ_POINT_HOLD: Duration = Duration::from_secs(30);

/// What the daemon keeps in its state file (everything but the log).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    pub epoch: Epoch,
    /// A hint: never above the true volume durable LSN.
    pub durable_lsn: Lsn,
    pub truncations: Vec<Truncation>,
    pub checkpoint: Checkpoint,
}

/// The last checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Every record at or below it is applied, its pages are in the page
    /// file and its records may be gone from the log.
    pub lsn: Lsn,
    /// Where each segment stands at `lsn`.
    pub segments: Vec<SegmentBase>,
    /// A checkpoint being written (equal to `lsn` when none is): the page
    /// file may hold images as new as this, so history below it is gone.
    pub writing: Lsn,
}

/// What a checkpoint writes before `finish_checkpoint`.
#[derive(Debug)]
pub struct CheckpointPlan {
    pub lsn: Lsn,
    /// The newest image at or below `lsn` of each page changed since the last checkpoint.
    pub pages: Vec<(PageId, Arc<Page>)>,
}

/// The outcome of comparing a request's epoch with the daemon's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochCheck {
    /// Same epoch.
    Current,
    /// Newer: the daemon must persist it before it acts on the request.
    Newer,
    /// Older: refuse.
    Stale { current: Epoch },
}

/// Why a page cannot be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageRefusal {
    NotComplete {
        segment_complete_lsn: Lsn,
    },
    TooOld {
        oldest: Lsn,
    },
    /// The segment's applicator stopped on a record it cannot apply.
    Failed(String),
}

#[derive(Debug)]
struct SegmentState {
    segment: Segment,
    applied_lsn: Lsn,
    failed: Option<String>,
}

/// The daemon's state.
#[derive(Debug)]
pub struct SegmentStore {
    node: NodeId,
    layout: VolumeLayout,
    persisted: PersistedState,
    writer_min_read_point: Lsn,
    reader_read_points: BTreeMap<Lsn, Instant>,
    segments: BTreeMap<ProtectionGroupId, SegmentState>,
    /// Groups without records here have none at or below this (writer's promise).
    unlisted_complete_lsn: Lsn,
    versions: PageVersions,
    /// Per group, what every peer segment holds (their lowest SCL); None
    /// when peers are not watched (no gossip): then nothing waits for them.
    peer_floors: Option<BTreeMap<ProtectionGroupId, Lsn>>,
}

impl SegmentStore {
    /// A store with every page in memory, starting from persisted state;
    /// replay the log with `replay`.
    pub fn new(node: NodeId, layout: VolumeLayout, persisted: PersistedState) -> SegmentStore {
        SegmentStore::with_base(node, layout, persisted, Arc::new(InMemoryOnly))
    }

    /// A store whose checkpointed pages are in `base`.
    pub fn with_base(
        node: NodeId,
        layout: VolumeLayout,
        persisted: PersistedState,
        base: Arc<dyn BaseImages>,
    ) -> SegmentStore {
        let checkpoint = &persisted.checkpoint;
        let floor = checkpoint.lsn.max(checkpoint.writing);
        let segments = checkpoint
            .segments
            .iter()
            .map(|base| {
                let state =
                    SegmentState { segment: Segment::from_base(*base), applied_lsn: checkpoint.lsn, failed: None };
                (base.protection_group, state)
            })
            .collect();
        SegmentStore {
            node,
            layout,
            writer_min_read_point: Lsn::ZERO,
            reader_read_points: BTreeMap::new(),
            segments,
            unlisted_complete_lsn: Lsn::ZERO,
            versions: PageVersions::with_base(base, floor),
            peer_floors: None,
            persisted,
        }
    }

    /// Makes checkpoints wait until every peer segment holds a record
    /// before it is released (set when gossip runs).
    pub fn watch_peers(&mut self) {
        self.peer_floors.get_or_insert_with(BTreeMap::new);
    }

    /// Learns that every peer segment of `protection_group` is complete to `lsn`.
    pub fn peers_complete_to(&mut self, protection_group: ProtectionGroupId, lsn: Lsn) {
        if let Some(floors) = &mut self.peer_floors {
            let floor = floors.entry(protection_group).or_insert(lsn);
            *floor = (*floor).max(lsn);
        }
    }

    /// The next checkpoint, if the LSN it may take has moved: the history
    /// floor, which `tick` keeps at or below the checkpoint bound so that
    /// every page's image at the floor is still in memory or on disk.
    pub fn checkpoint_plan(&self) -> Option<CheckpointPlan> {
        let lsn = self.checkpoint_bound().min(self.versions.history_floor());
        let since = self.persisted.checkpoint.lsn;
        (lsn > since).then(|| CheckpointPlan { lsn, pages: self.versions.changed_between(since, lsn) })
    }

    /// How far a checkpoint may go, read points aside: the durable LSN,
    /// every segment's applied LSN and what every peer segment holds.
    fn checkpoint_bound(&self) -> Lsn {
        let durable = self.persisted.durable_lsn;
        let mut lsn = durable;
        for (group, state) in &self.segments {
            let segment = &state.segment;
            let applied = if state.applied_lsn >= durable.min(segment.tail_lsn()) {
                durable.min(segment.segment_complete_lsn())
            } else {
                state.applied_lsn
            };
            lsn = lsn.min(applied);
            if let Some(floors) = &self.peer_floors {
                lsn = lsn.min(floors.get(group).copied().unwrap_or(Lsn::ZERO));
            }
        }
        lsn
    }

    /// Notes that a checkpoint at `lsn` is being written (persist before writing pages).
    pub fn begin_checkpoint(&mut self, lsn: Lsn) {
        self.persisted.checkpoint.writing = lsn;
    }

    /// The pages of the checkpoint at `lsn` are synced: releases the records
    /// and pages it covers from memory (persist afterwards).
    pub fn finish_checkpoint(&mut self, lsn: Lsn) {
        let segments = self.segments.values_mut().map(|state| state.segment.release_through(lsn)).collect();
        self.persisted.checkpoint = Checkpoint { lsn, segments, writing: lsn };
        self.versions.evict(lsn);
    }

    /// Pages and records held in memory.
    pub fn resident(&self) -> (usize, usize) {
        let records = self.segments.values().map(|s| s.segment.resident_records()).sum();
        (self.versions.resident_pages(), records)
    }

    /// The state to persist.
    pub fn persisted(&self) -> &PersistedState {
        &self.persisted
    }

    /// The current epoch.
    pub fn epoch(&self) -> Epoch {
        self.persisted.epoch
    }

    /// Compares a request's epoch with ours.
    pub fn check_epoch(&self, epoch: Epoch) -> EpochCheck {
        match epoch.cmp(&self.persisted.epoch) {
            std::cmp::Ordering::Equal => EpochCheck::Current,
            std::cmp::Ordering::Greater => EpochCheck::Newer,
            std::cmp::Ordering::Less => EpochCheck::Stale { current: self.persisted.epoch },
        }
    }

    /// Raises the epoch (in memory; the shell persists before answering).
    /// Returns false if `epoch` is older than the current one.
    pub fn raise_epoch(&mut self, epoch: Epoch) -> bool {
        if epoch < self.persisted.epoch {
            return false;
        }
        self.persisted.epoch = epoch;
        true
    }

    fn segment_mut(&mut self, protection_group: ProtectionGroupId) -> &mut SegmentState {
        self.segments.entry(protection_group).or_insert_with(|| SegmentState {
            segment: Segment::new(protection_group),
            applied_lsn: Lsn::ZERO,
            failed: None,
        })
    }

    /// Inserts a record that is durable in the log (also used at replay).
    /// Records annulled by a truncation range are ignored.
    pub fn insert_synced(&mut self, record: RedoRecord) -> Insert {
        if self.persisted.truncations.iter().any(|t| t.annuls(&record)) {
            return Insert::Dropped;
        }
        self.segment_mut(record.protection_group).segment.insert(record)
    }

    /// Replays one log entry.
    pub fn replay(&mut self, entry: crate::log::LogEntry) {
        match entry {
            crate::log::LogEntry::Record(record) => {
                self.insert_synced(record);
            }
            crate::log::LogEntry::Promise { protection_group, tail_lsn, complete_to } => {
                self.segment_mut(protection_group).segment.extend_complete(tail_lsn, complete_to);
            }
        }
    }

    /// The promises of an append that would move an SCL (those must be
    /// logged with the records).
    pub fn promises_needed(&self, groups: &[GroupAppend], complete_to: Lsn) -> Vec<(ProtectionGroupId, Lsn, Lsn)> {
        groups
            .iter()
            .filter(|g| complete_to > g.tail_lsn)
            .filter(|g| {
                self.segments.get(&g.protection_group).is_none_or(|s| s.segment.segment_complete_lsn() < complete_to)
            })
            .map(|g| (g.protection_group, g.tail_lsn, complete_to))
            .collect()
    }

    /// Inserts a synced append and takes the writer's completeness promise;
    /// returns the progress of every segment named.
    pub fn append_synced(
        &mut self,
        groups: Vec<GroupAppend>,
        complete_to: Lsn,
        all_groups: bool,
    ) -> Vec<SegmentProgress> {
        let mut progress = Vec::with_capacity(groups.len());
        for group in groups {
            for record in group.records {
                self.insert_synced(record);
            }
            let state = self.segment_mut(group.protection_group);
            state.segment.extend_complete(group.tail_lsn, complete_to);
            progress.push(state.segment.progress());
        }
        if all_groups {
            self.unlisted_complete_lsn = self.unlisted_complete_lsn.max(complete_to);
        }
        progress
    }

    /// Learns the volume durable LSN and the writer's min read point.
    pub fn advance_durable(&mut self, durable_lsn: Lsn, min_read_point: Lsn) {
        self.persisted.durable_lsn = self.persisted.durable_lsn.max(durable_lsn);
        self.writer_min_read_point = self.writer_min_read_point.max(min_read_point);
    }

    /// The durable LSN this daemon knows.
    pub fn durable_lsn(&self) -> Lsn {
        self.persisted.durable_lsn
    }

    /// Records and applies a truncation range to every segment (in memory;
    /// the shell persists before answering). Returns every segment's progress.
    pub fn truncate(&mut self, truncation: Truncation) -> Result<Vec<SegmentProgress>, String> {
        for state in self.segments.values() {
            if state.segment.records_in(truncation.above, state.applied_lsn).any(|r| truncation.annuls(r)) {
                return Err(format!(
                    "truncation {truncation:?} would annul records applied up to {}",
                    state.applied_lsn
                ));
            }
        }
        for state in self.segments.values_mut() {
            state.segment.truncate(truncation.epoch, truncation.above, truncation.up_to);
        }
        if !self.persisted.truncations.contains(&truncation) {
            self.persisted.truncations.push(truncation);
        }
        Ok(self.segments.values().map(|s| s.segment.progress()).collect())
    }

    /// The SCL of a group; a group without records here is complete as far
    /// as the writer promised for unlisted groups.
    pub fn segment_complete_lsn(&self, protection_group: ProtectionGroupId) -> Lsn {
        match self.segments.get(&protection_group) {
            Some(state) if state.segment.tail_lsn() > Lsn::ZERO || state.segment.held_count() > 0 => {
                state.segment.segment_complete_lsn()
            }
            Some(state) => state.segment.segment_complete_lsn().max(self.unlisted_complete_lsn),
            None => self.unlisted_complete_lsn,
        }
    }

    /// Keeps the history a reader's statement at `read_point` needs, as a
    /// page read there would; false if it is already gone.
    pub fn hold_read_point(&mut self, read_point: Lsn, now: Instant) -> bool {
        if read_point < self.versions.history_floor() {
            return false;
        }
        self.reader_read_points.insert(read_point, now);
        true
    }

    /// The page as of `read_point`, sealed. A read point is always durable
    /// (it names a commit the writer acknowledged), so records up to it may
    /// be applied.
    pub fn get_page(&mut self, page: PageId, read_point: Lsn, now: Instant) -> Result<Page, PageRefusal> {
        let protection_group = self.layout.group_of(page);
        let scl = self.segment_complete_lsn(protection_group);
        if read_point > scl {
            return Err(PageRefusal::NotComplete { segment_complete_lsn: scl });
        }
        if read_point < self.versions.history_floor() {
            return Err(PageRefusal::TooOld { oldest: self.versions.history_floor() });
        }
        self.reader_read_points.insert(read_point, now);
        self.apply_up_to(protection_group, read_point).map_err(|e| PageRefusal::Failed(e.to_string()))?;
        let image = self.versions.page_at(page, read_point).map_err(refusal)?;
        let mut sealed = Arc::unwrap_or_clone(image);
        sealed.seal();
        Ok(sealed)
    }

    /// A CRC of every page of the group as of `lsn` (a read point), for
    /// checking that segments converge; pages without a version at or
    /// below `lsn` are left out. Refused like a page read above the SCL or
    /// below the kept history.
    pub fn digest(&mut self, protection_group: ProtectionGroupId, lsn: Lsn) -> Result<Vec<PageDigest>, PageRefusal> {
        let scl = self.segment_complete_lsn(protection_group);
        if lsn > scl {
            return Err(PageRefusal::NotComplete { segment_complete_lsn: scl });
        }
        if lsn < self.versions.history_floor() {
            return Err(PageRefusal::TooOld { oldest: self.versions.history_floor() });
        }
        self.apply_up_to(protection_group, lsn).map_err(|e| PageRefusal::Failed(e.to_string()))?;
        let layout = self.layout;
        let mut digests = Vec::new();
        for page in self.versions.page_ids() {
            if layout.group_of(page) != protection_group || !self.versions.has_version_at(page, lsn).map_err(refusal)? {
                continue;
            }
            let image = self.versions.page_at(page, lsn).map_err(refusal)?;
            let mut sealed = Arc::unwrap_or_clone(image);
            sealed.seal();
            digests.push(PageDigest { page, crc: crc32c::crc32c(sealed.as_bytes()) });
        }
        Ok(digests)
    }

    /// Applies the group's chained records up to `lsn`. Stops the segment's
    /// applicator on the first record it cannot apply (never skips it).
    pub fn apply_up_to(&mut self, protection_group: ProtectionGroupId, lsn: Lsn) -> Result<(), StoreError> {
        let Some(state) = self.segments.get_mut(&protection_group) else {
            return Ok(());
        };
        if let Some(reason) = &state.failed {
            return Err(StoreError::ApplicatorStopped(reason.clone()));
        }
        let up_to = lsn.min(state.segment.tail_lsn());
        let mut applied = state.applied_lsn;
        let mut failure = None;
        for record in state.segment.records_in(applied, up_to) {
            if let Err(e) = self.versions.apply(record) {
                failure = Some(e);
                break;
            }
            applied = record.lsn;
        }
        state.applied_lsn = applied;
        if let Some(e) = failure {
            state.failed = Some(e.to_string());
            return Err(StoreError::Apply(e));
        }
        state.applied_lsn = applied.max(up_to);
        Ok(())
    }

    /// Background work: applies every segment up to the durable LSN and
    /// drops history below the min read point (writer's and recent readers').
    pub fn tick(&mut self, now: Instant) -> Result<(), StoreError> {
        let durable = self.persisted.durable_lsn;
        let groups: Vec<ProtectionGroupId> = self.segments.keys().copied().collect();
        let mut first_error = Ok(());
        for group in groups {
            if let Err(e) = self.apply_up_to(group, durable)
                && first_error.is_ok()
            {
                first_error = Err(e);
            }
        }
        self.reader_read_points.retain(|_, seen| now.saturating_duration_since(*seen) < READER_READ_POINT_HOLD);
        let reader_min = self.reader_read_points.keys().next().copied().unwrap_or(Lsn(u64::MAX));
        // History below the next checkpoint must keep each page's image at
        // it until the checkpoint writes it.
        let horizon = self.writer_min_read_point.min(reader_min).min(self.checkpoint_bound());
        self.versions.collect_garbage(horizon);
        first_error
    }

    /// The group's chained records in `(after, up_to]`, at most `bytes_max`.
    pub fn records(
        &self,
        protection_group: ProtectionGroupId,
        after: Lsn,
        up_to: Lsn,
        bytes_max: usize,
    ) -> Option<(Vec<RedoRecord>, bool)> {
        match self.segments.get(&protection_group) {
            Some(state) => state.segment.records_between(after, up_to, bytes_max),
            None => Some((Vec::new(), false)),
        }
    }

    /// The last commit and the last record at or below `lsn` in the group's chain.
    pub fn chain_point(&self, protection_group: ProtectionGroupId, lsn: Lsn) -> (Lsn, Lsn) {
        self.segments.get(&protection_group).map_or((Lsn::ZERO, Lsn::ZERO), |s| {
            (s.segment.last_commit_at_or_below(lsn), s.segment.last_record_at_or_below(lsn))
        })
    }

    /// What `Status` reports.
    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            node: self.node,
            epoch: self.persisted.epoch,
            durable_lsn: self.persisted.durable_lsn,
            segments: self.segments.values().map(|s| s.segment.progress()).collect(),
            truncations: self.persisted.truncations.clone(),
        }
    }
}

fn refusal(error: VersionError) -> PageRefusal {
    match error {
        VersionError::TooOld(too_old) => PageRefusal::TooOld { oldest: too_old.oldest },
        other => PageRefusal::Failed(other.to_string()),
    }
}

/// A failure of the applicator.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("applicator failed: {0}")]
    Apply(#[from] RedoError),
    #[error("applicator stopped earlier: {0}")]
    ApplicatorStopped(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon_core::Step;
    use crate::page::PageKind;
    use crate::proto::{Request, Response};
    use crate::redo::RedoBody;

    const GROUP: ProtectionGroupId = ProtectionGroupId(0);

    fn record(lsn: u64, prev: u64, epoch: u64, is_commit: bool, body: RedoBody) -> RedoRecord {
        let commit_lsn = if is_commit { Lsn(lsn) } else { Lsn(lsn + 1) };
        RedoRecord {
            lsn: Lsn(lsn),
            prev_lsn: Lsn(prev),
            protection_group: GROUP,
            epoch: Epoch(epoch),
            commit_lsn,
            body,
        }
    }

    fn store() -> SegmentStore {
        let layout = VolumeLayout { pages_per_group: 1000 };
        SegmentStore::new(NodeId(1), layout, PersistedState::default())
    }

    #[test]
    fn pages_are_served_only_up_to_the_complete_lsn() {
        let mut store = store();
        let page = PageId(5);
        let now = Instant::now();
        store.insert_synced(record(1, 0, 1, false, RedoBody::InitPage { page, kind: PageKind::Heap }));
        store.insert_synced(record(2, 1, 1, true, RedoBody::InsertTuple { page, slot: 0, data: b"x".to_vec() }));
        store.insert_synced(record(4, 3, 1, true, RedoBody::DeleteTuple { page, slot: 0 }));
        let served = store.get_page(page, Lsn(2), now).unwrap();
        served.verify().unwrap();
        assert_eq!(served.tuple(0), Some(&b"x"[..]));
        assert_eq!(store.get_page(page, Lsn(4), now), Err(PageRefusal::NotComplete { segment_complete_lsn: Lsn(2) }));
        store.append_synced(
            vec![GroupAppend { protection_group: GROUP, records: vec![], tail_lsn: Lsn(2) }],
            Lsn(3),
            true,
        );
        assert_eq!(store.get_page(page, Lsn(4), now), Err(PageRefusal::NotComplete { segment_complete_lsn: Lsn(3) }));
        assert!(store.get_page(page, Lsn(3), now).is_ok(), "the promise extends the complete LSN");
    }

    #[test]
    fn truncated_records_are_ignored_at_replay() {
        let mut store = store();
        let page = PageId(1);
        store.insert_synced(record(1, 0, 1, true, RedoBody::InitPage { page, kind: PageKind::Heap }));
        store.insert_synced(record(2, 1, 1, false, RedoBody::InitPage { page, kind: PageKind::Heap }));
        let truncation = Truncation { epoch: Epoch(2), above: Lsn(1), up_to: Lsn(50) };
        store.truncate(truncation).unwrap();
        let persisted = store.persisted().clone();
        let mut replayed = SegmentStore::new(NodeId(1), VolumeLayout { pages_per_group: 1000 }, persisted);
        replayed.insert_synced(record(1, 0, 1, true, RedoBody::InitPage { page, kind: PageKind::Heap }));
        assert_eq!(
            replayed.insert_synced(record(2, 1, 1, false, RedoBody::InitPage { page, kind: PageKind::Heap })),
            Insert::Dropped
        );
        assert_eq!(replayed.status().segments[0].tail_lsn, Lsn(1));
    }

    #[test]
    fn digests_agree_at_equal_lsns_whatever_the_order_of_arrival() {
        let page = PageId(5);
        let other_group_page = PageId(1500);
        let records = [
            record(1, 0, 1, false, RedoBody::InitPage { page, kind: PageKind::Heap }),
            record(2, 1, 1, true, RedoBody::InsertTuple { page, slot: 0, data: b"x".to_vec() }),
            record(3, 2, 1, true, RedoBody::InsertTuple { page, slot: 1, data: b"y".to_vec() }),
        ];
        let mut in_order = store();
        let mut reversed = store();
        for r in &records {
            in_order.insert_synced(r.clone());
        }
        for r in records.iter().rev() {
            reversed.insert_synced(r.clone());
        }
        let mut foreign = record(4, 0, 1, true, RedoBody::InitPage { page: other_group_page, kind: PageKind::Heap });
        foreign.protection_group = ProtectionGroupId(1);
        in_order.insert_synced(foreign);
        in_order.apply_up_to(ProtectionGroupId(1), Lsn(4)).unwrap();
        let at_2 = in_order.digest(GROUP, Lsn(2)).unwrap();
        assert_eq!(at_2.len(), 1, "only this group's pages");
        assert_eq!(at_2, reversed.digest(GROUP, Lsn(2)).unwrap());
        let at_3 = in_order.digest(GROUP, Lsn(3)).unwrap();
        assert_ne!(at_2, at_3, "the page changed at 3");
        assert_eq!(at_3, reversed.digest(GROUP, Lsn(3)).unwrap());
        assert_eq!(in_order.digest(GROUP, Lsn(0)).unwrap(), vec![], "nothing existed at 0");
        assert_eq!(in_order.digest(GROUP, Lsn(9)), Err(PageRefusal::NotComplete { segment_complete_lsn: Lsn(3) }));
    }

    /// Runs a whole checkpoint as the daemon does; `finish` false stops
    /// after the pages are written (a crash before the state file says so).
    fn checkpoint(store: &mut SegmentStore, pages: &crate::pagefile::PageFile, finish: bool) -> Lsn {
        let plan = store.checkpoint_plan().expect("the checkpoint can move");
        store.begin_checkpoint(plan.lsn);
        let images: Vec<_> = plan.pages.iter().map(|(id, page)| (*id, page.as_ref())).collect();
        pages.write_synced(&images).unwrap();
        if finish {
            store.finish_checkpoint(plan.lsn);
        }
        plan.lsn
    }

    #[test]
    fn checkpoints_move_pages_to_the_page_file_and_restarts_continue_from_them() {
        let dir = tempfile::tempdir().unwrap();
        let pages = Arc::new(crate::pagefile::PageFile::open(dir.path()).unwrap());
        let layout = VolumeLayout { pages_per_group: 1000 };
        let mut store = SegmentStore::with_base(NodeId(1), layout, PersistedState::default(), pages.clone());
        let (a, b) = (PageId(5), PageId(6));
        let now = Instant::now();
        let mut log = vec![
            record(1, 0, 1, false, RedoBody::InitPage { page: a, kind: PageKind::Heap }),
            record(2, 1, 1, true, RedoBody::InitPage { page: b, kind: PageKind::Heap }),
            record(3, 2, 1, true, RedoBody::InsertTuple { page: a, slot: 0, data: b"a3".to_vec() }),
            record(4, 3, 1, true, RedoBody::InsertTuple { page: b, slot: 0, data: b"b4".to_vec() }),
        ];
        for r in &log {
            store.insert_synced(r.clone());
        }
        assert!(store.checkpoint_plan().is_none(), "nothing is durable yet");
        store.advance_durable(Lsn(3), Lsn(3));
        store.tick(now).unwrap();
        assert_eq!(checkpoint(&mut store, &pages, true), Lsn(3));
        assert_eq!(store.resident(), (0, 1), "both pages are in the page file; record 4 (not durable) stays");
        assert_eq!(store.get_page(a, Lsn(3), now).unwrap().tuple(0), Some(&b"a3"[..]), "served from the page file");
        assert_eq!(store.get_page(a, Lsn(2), now), Err(PageRefusal::TooOld { oldest: Lsn(3) }));
        assert!(matches!(
            store.step(
                Request::GetRecords { protection_group: GROUP, after: Lsn(1), up_to: Lsn(4), bytes_max: 1 << 20 },
                now
            ),
            Step::Reply(Response::Failed { .. })
        ));

        // A record of a page that left memory starts from its checkpointed image.
        log.push(record(5, 4, 1, true, RedoBody::InsertTuple { page: a, slot: 1, data: b"a5".to_vec() }));
        store.insert_synced(log[4].clone());
        store.advance_durable(Lsn(5), Lsn(5));
        store.tick(now).unwrap();
        assert!(store.checkpoint_plan().is_none(), "a reader read at 3 a moment ago: its history stays");
        let now = now + READER_READ_POINT_HOLD + Duration::from_secs(1);
        store.tick(now).unwrap();
        let at_5 = store.get_page(a, Lsn(5), now).unwrap();
        assert_eq!((at_5.tuple(0), at_5.tuple(1)), (Some(&b"a3"[..]), Some(&b"a5"[..])));
        // Crash after writing the next checkpoint's pages, before the state file.
        assert_eq!(checkpoint(&mut store, &pages, false), Lsn(5));
        let persisted = store.persisted().clone();
        assert_eq!((persisted.checkpoint.lsn, persisted.checkpoint.writing), (Lsn(3), Lsn(5)));

        let pages = Arc::new(crate::pagefile::PageFile::open(dir.path()).unwrap());
        let mut restarted = SegmentStore::with_base(NodeId(1), layout, persisted, pages);
        for r in &log {
            restarted.insert_synced(r.clone());
        }
        restarted.advance_durable(Lsn(5), Lsn(5));
        restarted.tick(now).unwrap();
        let at_5 = restarted.get_page(a, Lsn(5), now).unwrap();
        assert_eq!(
            (at_5.tuple(0), at_5.tuple(1)),
            (Some(&b"a3"[..]), Some(&b"a5"[..])),
            "records the image holds are skipped"
        );
        assert_eq!(restarted.get_page(b, Lsn(5), now).unwrap().tuple(0), Some(&b"b4"[..]));
        assert_eq!(restarted.status().segments[0].tail_lsn, Lsn(5));
        assert_eq!(restarted.chain_point(GROUP, Lsn(5)), (Lsn(5), Lsn(5)));
    }

    #[test]
    fn tick_collects_history_below_the_min_read_point() {
        let mut store = store();
        let page = PageId(3);
        let now = Instant::now();
        store.insert_synced(record(1, 0, 1, true, RedoBody::InitPage { page, kind: PageKind::Heap }));
        store.insert_synced(record(2, 1, 1, true, RedoBody::InsertTuple { page, slot: 0, data: b"a".to_vec() }));
        store.insert_synced(record(3, 2, 1, true, RedoBody::DeleteTuple { page, slot: 0 }));
        store.advance_durable(Lsn(3), Lsn(2));
        store.tick(now).unwrap();
        assert!(store.get_page(page, Lsn(2), now).is_ok());
        assert_eq!(store.get_page(page, Lsn(1), now), Err(PageRefusal::TooOld { oldest: Lsn(2) }));
        // A reader's long statement at 2 holds the history while it runs.
        let later = now + READER_READ_POINT_HOLD / 2;
        assert!(store.hold_read_point(Lsn(2), later));
        let later = now + READER_READ_POINT_HOLD + Duration::from_secs(1);
        store.advance_durable(Lsn(3), Lsn(3));
        store.tick(later).unwrap();
        assert!(store.get_page(page, Lsn(2), later).is_ok(), "held");
        let later = later + READER_READ_POINT_HOLD + Duration::from_secs(1);
        store.tick(later).unwrap();
        assert_eq!(store.get_page(page, Lsn(2), later), Err(PageRefusal::TooOld { oldest: Lsn(3) }));
        assert!(!store.hold_read_point(Lsn(2), later), "gone");
    }
}
