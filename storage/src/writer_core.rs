//! The volume writer's protocol core (sans-IO): LSN assignment under the
//! LAL, what to send to each daemon next, and what its answers mean for the
//! volume durable LSN.
//!
//! The QUIC writer (`writer`) and the simulation drive it the same way: per
//! daemon, one exchange at a time. After (re)connecting, the `hello_requests`
//! are sent in order and their answers handed to `hello_answered`; then
//! `next_outgoing` says what to send (an append, or a repair of records no
//! longer kept in memory, fetched from a peer and sent with `repair_append`),
//! and `appended` takes the answer. A failed exchange is followed by
//! `rewind` and a new hello. `assign` stamps a transaction's redo bodies with
//! LSNs, back links and the epoch; the commit is acknowledged once
//! `durable_lsn` (VDL) passes it (DESIGN.md invariant 3). Any answer that
//! shows a newer epoch is `StorageError::StaleEpoch`: this writer is fenced
//! and must stop.

use crate::error::{StorageError, unexpected};
use crate::ids::{Epoch, Lsn, NodeId, PageId, ProtectionGroupId, VolumeLayout};
use crate::placement::Placement;
use crate::proto::{GroupAppend, Request, Response, SegmentProgress, Truncation};
use crate::quorum::QuorumTracker;
use crate::recovery_core::Recovered;
use crate::redo::{RedoBody, RedoRecord};
use std::collections::BTreeMap;

/// Records per group in one append: bounds a message well under the limit.
pub const APPEND_RECORDS_MAX: usize = 4096;
/// Records kept per group for resending to lagging segments; beyond it,
/// records every write quorum has are dropped and laggards are repaired
/// from peers.
pub const RETAINED_RECORDS_MAX: usize = 200_000;

/// The volume as the writer core sees it.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Which daemons hold each group's segments.
    pub placement: Placement,
    /// Page to protection group mapping.
    pub layout: VolumeLayout,
    /// Segments (of 6) that must have a record before it counts as durable.
    pub write_quorum: usize,
    /// LAL: how far LSN assignment may run ahead of the durable LSN.
    pub lsn_allocation_limit: u64,
}

/// LSNs of a commit: its records are `first..=commit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitLsns {
    pub first: Lsn,
    /// The commit point: a read point once acknowledged.
    pub commit: Lsn,
}

/// What to send to a daemon next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// An `Append` (records, completeness promise, durable LSN).
    Append(Request),
    /// Copy `(after, up_to]` of a group from `source`, then send it with
    /// `repair_append`.
    Repair { protection_group: ProtectionGroupId, after: Lsn, up_to: Lsn, source: NodeId },
}

#[derive(Debug, Default)]
struct NodeCursor {
    /// Per group: the last record the segment has or was sent.
    sent: BTreeMap<ProtectionGroupId, Lsn>,
    told_complete: Lsn,
    told_durable: Lsn,
    told_min_read_point: Lsn,
}

/// The writer's state.
#[derive(Debug)]
pub struct WriterCore {
    settings: WriterSettings,
    epoch: Epoch,
    truncations: Vec<Truncation>,
    tracker: QuorumTracker,
    /// Allocation may run to `max(durable, lsn_floor) + LAL`.
    lsn_floor: Lsn,
    group_tails: BTreeMap<ProtectionGroupId, Lsn>,
    retained: BTreeMap<ProtectionGroupId, BTreeMap<Lsn, RedoRecord>>,
    cursors: BTreeMap<NodeId, NodeCursor>,
    min_read_point: Option<Lsn>,
}

impl WriterCore {
    /// The writer of a volume that `recovered` describes.
    pub fn new(settings: WriterSettings, recovered: Recovered) -> WriterCore {
        let mut core = WriterCore {
            tracker: QuorumTracker::new(settings.write_quorum, recovered.durable_lsn, recovered.lsn_floor),
            epoch: recovered.epoch,
            truncations: recovered.truncations,
            lsn_floor: recovered.lsn_floor,
            group_tails: recovered.group_tails,
            retained: BTreeMap::new(),
            cursors: settings.placement.nodes().into_iter().map(|n| (n, NodeCursor::default())).collect(),
            min_read_point: None,
            settings,
        };
        for (group, segments) in &recovered.segments {
            core.add_group(*group);
            for (node, scl) in segments {
                core.tracker.add_segment(*group, *node, *scl);
            }
        }
        core
    }

    /// The writer's epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// VDL: every commit at or below it may be acknowledged.
    pub fn durable_lsn(&self) -> Lsn {
        self.tracker.durable_lsn()
    }

    /// The last LSN assigned.
    pub fn allocated_lsn(&self) -> Lsn {
        self.tracker.allocated_lsn()
    }

    /// Every daemon the writer sends to.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.cursors.keys().copied().collect()
    }

    /// The lowest read point of the writer and the readers.
    pub fn set_min_read_point(&mut self, min_read_point: Lsn) {
        self.min_read_point = Some(min_read_point);
    }

    /// Stamps `bodies` (one transaction, not empty) with LSNs if the LAL
    /// allows; None means wait for the durable LSN to move.
    pub fn assign(&mut self, bodies: &[RedoBody]) -> Option<CommitLsns> {
        assert!(!bodies.is_empty(), "a commit needs at least one redo record");
        let count = bodies.len() as u64;
        let limit = self.tracker.durable_lsn().max(self.lsn_floor).0.saturating_add(self.settings.lsn_allocation_limit);
        if self.tracker.allocated_lsn().0.saturating_add(count) > limit {
            return None;
        }
        let first = self.tracker.allocated_lsn().next();
        let commit_lsn = Lsn(first.0 + count - 1);
        for body in bodies {
            let lsn = self.tracker.allocated_lsn().next();
            let group = self.settings.layout.group_of(body.page());
            if !self.tracker.has_group(group) {
                self.add_group(group);
            }
            let prev_lsn = self.group_tails.get(&group).copied().unwrap_or(Lsn::ZERO);
            assert!(prev_lsn < lsn, "back link {prev_lsn} not below {lsn}");
            let record = RedoRecord {
                lsn,
                prev_lsn,
                protection_group: group,
                epoch: self.epoch,
                commit_lsn,
                body: body.clone(),
            };
            self.tracker.assign(lsn, record.is_commit());
            self.group_tails.insert(group, lsn);
            self.retained.entry(group).or_default().insert(lsn, record);
        }
        Some(CommitLsns { first, commit: self.tracker.allocated_lsn() })
    }

    /// How pages map to protection groups.
    pub fn layout(&self) -> VolumeLayout {
        self.settings.layout
    }

    /// The segments to read `page` at `read_point` from, those known to be
    /// complete to it first; None when no record ever touched its group
    /// (every page there is empty).
    pub fn read_candidates(&self, page: PageId, read_point: Lsn) -> Option<Vec<NodeId>> {
        let group = self.settings.layout.group_of(page);
        if !self.tracker.has_group(group) {
            return None;
        }
        let nodes = self.settings.placement.segments(group);
        Some(covering_first(nodes, read_point, |node| self.tracker.segment_complete_lsn(group, node)))
    }

    /// What to send, in order, after (re)connecting to a daemon: our epoch
    /// (with the durable LSN; a daemon that missed recovery takes the epoch
    /// here), every truncation range (or a status request when there is none).
    pub fn hello_requests(&self) -> Vec<Request> {
        let durable_lsn = self.tracker.durable_lsn();
        let min_read_point = self.min_read_point.unwrap_or(durable_lsn).min(durable_lsn);
        let mut requests = vec![Request::AdvanceDurable { epoch: self.epoch, durable_lsn, min_read_point }];
        requests.extend(self.truncations.iter().map(|t| Request::Truncate { epoch: self.epoch, truncation: *t }));
        if self.truncations.is_empty() {
            requests.push(Request::Status);
        }
        requests
    }

    /// Answers to `hello_requests`, in order: learns how far each segment
    /// of `node` is (everything will be offered again from there). Returns
    /// the new VDL if it moved.
    pub fn hello_answered(&mut self, node: NodeId, answers: Vec<Response>) -> Result<Option<Lsn>, StorageError> {
        let mut segments = Vec::new();
        for answer in answers {
            match answer {
                Response::Advanced => {}
                Response::Truncated { segments: after } => segments = after,
                Response::Status(status) => segments = status.segments,
                other => return Err(unexpected(other)),
            }
        }
        if let Some(cursor) = self.cursors.get_mut(&node) {
            for sent in cursor.sent.values_mut() {
                *sent = Lsn::ZERO;
            }
        }
        Ok(self.acknowledged(node, &segments))
    }

    /// The answer to an append (or a repair append) sent to `node`.
    pub fn appended(&mut self, node: NodeId, answer: Response) -> Result<Option<Lsn>, StorageError> {
        match answer {
            Response::Appended { segments } => Ok(self.acknowledged(node, &segments)),
            other => Err(unexpected(other)),
        }
    }

    /// Forgets what was in flight to `node` after a failure.
    pub fn rewind(&mut self, node: NodeId) {
        if let Some(cursor) = self.cursors.get_mut(&node) {
            cursor.told_complete = Lsn::ZERO;
            cursor.told_durable = Lsn::ZERO;
            cursor.told_min_read_point = Lsn::ZERO;
        }
    }

    /// The append carrying records `(after, ..]` copied from a peer.
    pub fn repair_append(&self, protection_group: ProtectionGroupId, records: Vec<RedoRecord>, after: Lsn) -> Request {
        let tail_lsn = records.last().map_or(after, |r| r.lsn);
        Request::Append {
            epoch: self.epoch,
            groups: vec![GroupAppend { protection_group, records, tail_lsn }],
            complete_to: tail_lsn,
            durable_lsn: Lsn::ZERO,
            min_read_point: Lsn::ZERO,
            all_groups: false,
        }
    }

    /// Takes segment progress reported by `node`; returns the new VDL if it moved.
    fn acknowledged(&mut self, node: NodeId, segments: &[SegmentProgress]) -> Option<Lsn> {
        let before = self.tracker.durable_lsn();
        for segment in segments {
            if let Some(cursor) = self.cursors.get_mut(&node)
                && let Some(sent) = cursor.sent.get_mut(&segment.protection_group)
            {
                *sent = segment.tail_lsn;
            }
            self.tracker.acknowledged(node, segment.protection_group, segment.segment_complete_lsn);
            self.trim_retained(segment.protection_group);
        }
        let after = self.tracker.durable_lsn();
        (after > before).then_some(after)
    }

    fn add_group(&mut self, group: ProtectionGroupId) {
        for node in self.settings.placement.segments(group) {
            self.tracker.add_segment(group, node, Lsn::ZERO);
            self.cursors.entry(node).or_default().sent.entry(group).or_insert(Lsn::ZERO);
        }
    }

    /// Drops records every segment has, and (over the bound) records a write
    /// quorum has.
    fn trim_retained(&mut self, group: ProtectionGroupId) {
        let floor = self.tracker.group_floor_lsn(group);
        let durable = self.tracker.durable_lsn();
        if let Some(records) = self.retained.get_mut(&group) {
            let cut = if records.len() > RETAINED_RECORDS_MAX { floor.max(durable) } else { floor };
            *records = records.split_off(&cut.next());
        }
    }

    /// The next exchange with `node`, or None when it has everything.
    pub fn next_outgoing(&mut self, node: NodeId) -> Option<Outgoing> {
        let allocated = self.tracker.allocated_lsn();
        let durable = self.tracker.durable_lsn();
        let min_read_point = self.min_read_point.unwrap_or(durable).min(durable);
        let cursor = self.cursors.get_mut(&node)?;
        let mut groups = Vec::with_capacity(cursor.sent.len());
        let mut any_records = false;
        // One append carries at most APPEND_RECORDS_MAX records in all, so
        // that a large transaction spread over many groups ships in steps.
        let mut budget = APPEND_RECORDS_MAX;
        for (group, sent) in cursor.sent.iter_mut() {
            let tail_lsn = self.group_tails.get(group).copied().unwrap_or(Lsn::ZERO);
            let mut records = Vec::new();
            if *sent < tail_lsn {
                let from = sent.next();
                let retained = self.retained.get(group);
                let pending = retained.into_iter().flat_map(|r| r.range(from..).map(|(_, record)| record));
                let mut pending = pending.peekable();
                // The records right after what the segment has were dropped
                // from memory: copy them from the most complete peer segment.
                let next_kept = pending.peek().map_or(tail_lsn, |first| first.prev_lsn);
                if next_kept != *sent {
                    let source = self.tracker.best_segment(*group, node)?;
                    return Some(Outgoing::Repair { protection_group: *group, after: *sent, up_to: next_kept, source });
                }
                records.extend(pending.take(budget).cloned());
                budget -= records.len();
                if let Some(last) = records.last() {
                    *sent = last.lsn;
                }
            }
            any_records |= !records.is_empty();
            groups.push(GroupAppend { protection_group: *group, records, tail_lsn });
        }
        if !any_records
            && cursor.told_complete >= allocated
            && cursor.told_durable >= durable
            && cursor.told_min_read_point >= min_read_point
        {
            return None;
        }
        cursor.told_complete = allocated;
        cursor.told_durable = durable;
        cursor.told_min_read_point = min_read_point;
        Some(Outgoing::Append(Request::Append {
            epoch: self.epoch,
            groups,
            complete_to: allocated,
            durable_lsn: durable,
            min_read_point,
            all_groups: true,
        }))
    }
}

/// The segments known to be complete to `read_point` (the client picks the
/// fastest of them); only when none is known to be, all of them, most
/// complete first (their SCLs may have moved since they last answered).
fn covering_first(mut nodes: Vec<NodeId>, read_point: Lsn, scl: impl Fn(NodeId) -> Lsn) -> Vec<NodeId> {
    if nodes.iter().any(|node| scl(*node) >= read_point) {
        nodes.retain(|node| scl(*node) >= read_point);
    } else {
        nodes.sort_by_key(|node| std::cmp::Reverse(scl(*node)));
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::PageKind;

    const GROUP: ProtectionGroupId = ProtectionGroupId(0);

    fn core_with_records(lsns: std::ops::RangeInclusive<u64>) -> WriterCore {
        let placement = Placement::new((0..6).map(|i| (NodeId(i), format!("az{}", i / 2))));
        let settings = WriterSettings {
            placement,
            layout: VolumeLayout { pages_per_group: 4 },
            write_quorum: 4,
            lsn_allocation_limit: 1000,
        };
        let mut core = WriterCore::new(settings, Recovered::empty(Epoch(1)));
        core.add_group(GROUP);
        for lsn in 1..=*lsns.end() {
            let body = RedoBody::InitPage { page: PageId(1), kind: PageKind::Heap };
            let record = RedoRecord {
                lsn: Lsn(lsn),
                prev_lsn: Lsn(lsn - 1),
                protection_group: GROUP,
                epoch: Epoch(1),
                commit_lsn: Lsn(lsn),
                body,
            };
            core.tracker.assign(Lsn(lsn), true);
            core.group_tails.insert(GROUP, Lsn(lsn));
            if lsns.contains(&lsn) {
                core.retained.entry(GROUP).or_default().insert(Lsn(lsn), record);
            }
        }
        core
    }

    #[test]
    fn reads_go_to_segments_known_to_cover_the_read_point() {
        let scls = [Lsn(9), Lsn(3), Lsn(12), Lsn(9), Lsn(0), Lsn(5)];
        let nodes: Vec<NodeId> = (0..6).map(NodeId).collect();
        let scl = |node: NodeId| scls[node.0 as usize];
        assert_eq!(covering_first(nodes.clone(), Lsn(9), scl), [NodeId(0), NodeId(2), NodeId(3)]);
        let none_covers = covering_first(nodes, Lsn(20), scl);
        assert_eq!(none_covers[..2], [NodeId(2), NodeId(0)], "most complete first");
        assert_eq!(none_covers.len(), 6);
    }

    #[test]
    fn a_segment_gets_every_record_it_misses_in_one_append() {
        let mut core = core_with_records(1..=5);
        let Some(Outgoing::Append(Request::Append { groups, complete_to, .. })) = core.next_outgoing(NodeId(0)) else {
            panic!("expected an append");
        };
        assert_eq!(complete_to, Lsn(5));
        assert_eq!(groups[0].records.iter().map(|r| r.lsn.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert!(core.next_outgoing(NodeId(0)).is_none(), "nothing new to send");
    }

    #[test]
    fn records_no_longer_kept_are_repaired_from_a_peer() {
        let mut core = core_with_records(4..=5);
        core.tracker.acknowledged(NodeId(3), GROUP, Lsn(5));
        match core.next_outgoing(NodeId(0)) {
            Some(Outgoing::Repair { after, up_to, source, .. }) => {
                assert_eq!((after, up_to, source), (Lsn(0), Lsn(3), NodeId(3)));
            }
            _ => panic!("expected a repair"),
        }
    }

    #[test]
    fn assignment_stops_at_the_lsn_allocation_limit_and_a_newer_epoch_fences() {
        let mut core = core_with_records(1..=1);
        core.settings.lsn_allocation_limit = 3;
        let body = RedoBody::InitPage { page: PageId(1), kind: PageKind::Heap };
        assert_eq!(core.assign(&[body.clone(), body.clone()]), Some(CommitLsns { first: Lsn(2), commit: Lsn(3) }));
        assert_eq!(core.assign(std::slice::from_ref(&body)), None, "LAL reached");
        let fenced = core.hello_answered(NodeId(0), vec![Response::StaleEpoch { current: Epoch(2) }]);
        assert_eq!(fenced, Err(StorageError::StaleEpoch { current: Epoch(2) }));
    }
}
