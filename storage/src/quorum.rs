//! The writer's view of durability (sans-IO): which LSNs have reached a write
//! quorum of their protection group, and so which commits may be acknowledged.
//!
//! Each segment reports its SCL (it has every record of its group up to it).
//! A group is complete (PGCL) up to the SCL that `write_quorum` of its
//! segments have reached; the volume is complete (VCL) up to the lowest PGCL,
//! capped by the last LSN assigned; the volume durable LSN (VDL) is the last
//! commit at or below the VCL. A commit is acknowledged only once VDL >= it.

use crate::ids::{Lsn, NodeId, ProtectionGroupId};
use std::collections::{BTreeMap, BTreeSet};

/// Tracks segment progress and derives PGCL, VCL and VDL.
#[derive(Debug, Clone)]
pub struct QuorumTracker {
    write_quorum: usize,
    allocated_lsn: Lsn,
    durable_lsn: Lsn,
    groups: BTreeMap<ProtectionGroupId, BTreeMap<NodeId, Lsn>>,
    commits: BTreeSet<Lsn>,
}

impl QuorumTracker {
    /// A tracker that starts with `durable_lsn` durable and LSNs up to
    /// `allocated_lsn` already used.
    pub fn new(write_quorum: usize, durable_lsn: Lsn, allocated_lsn: Lsn) -> QuorumTracker {
        assert!(write_quorum > 0, "a write quorum of zero makes nothing durable");
        assert!(durable_lsn <= allocated_lsn, "durable {durable_lsn} above allocated {allocated_lsn}");
        QuorumTracker { write_quorum, allocated_lsn, durable_lsn, groups: BTreeMap::new(), commits: BTreeSet::new() }
    }

    /// Declares a segment of `protection_group` on `node` with its current SCL.
    pub fn add_segment(&mut self, protection_group: ProtectionGroupId, node: NodeId, segment_complete_lsn: Lsn) {
        let scl = self.groups.entry(protection_group).or_default().entry(node).or_insert(Lsn::ZERO);
        *scl = (*scl).max(segment_complete_lsn);
    }

    /// Whether segments of `protection_group` are known.
    pub fn has_group(&self, protection_group: ProtectionGroupId) -> bool {
        self.groups.contains_key(&protection_group)
    }

    /// Records that `lsn` was assigned; LSNs rise strictly.
    pub fn assign(&mut self, lsn: Lsn, is_commit: bool) {
        assert!(lsn > self.allocated_lsn, "LSN {lsn} assigned after {}", self.allocated_lsn);
        self.allocated_lsn = lsn;
        if is_commit {
            self.commits.insert(lsn);
        }
    }

    /// A segment reports its SCL; returns the new VDL if it advanced.
    pub fn acknowledged(&mut self, node: NodeId, protection_group: ProtectionGroupId, scl: Lsn) -> Option<Lsn> {
        let segments = self.groups.get_mut(&protection_group)?;
        let known = segments.get_mut(&node)?;
        *known = (*known).max(scl);
        let volume_complete = self.volume_complete_lsn();
        let durable = self.commits.range(..=volume_complete).next_back().copied()?;
        self.commits = self.commits.split_off(&durable.next());
        assert!(durable > self.durable_lsn, "durable LSN moves back from {} to {durable}", self.durable_lsn);
        debug_assert!(self.groups.keys().all(|g| self.group_complete_lsn(*g) >= durable));
        self.durable_lsn = durable;
        Some(durable)
    }

    /// PGCL: the SCL reached by a write quorum of the group's segments.
    pub fn group_complete_lsn(&self, protection_group: ProtectionGroupId) -> Lsn {
        let Some(segments) = self.groups.get(&protection_group) else {
            return self.allocated_lsn;
        };
        let mut scls: Vec<Lsn> = segments.values().copied().collect();
        scls.sort_unstable_by(|a, b| b.cmp(a));
        scls.get(self.write_quorum - 1).copied().unwrap_or(Lsn::ZERO)
    }

    /// VCL: every group is complete up to it.
    pub fn volume_complete_lsn(&self) -> Lsn {
        self.groups.keys().map(|g| self.group_complete_lsn(*g)).fold(self.allocated_lsn, Lsn::min)
    }

    /// VDL: the last commit at or below the VCL.
    pub fn durable_lsn(&self) -> Lsn {
        self.durable_lsn
    }

    /// The last LSN assigned.
    pub fn allocated_lsn(&self) -> Lsn {
        self.allocated_lsn
    }

    /// The SCL last reported by a segment (`Lsn::ZERO` if unknown).
    pub fn segment_complete_lsn(&self, protection_group: ProtectionGroupId, node: NodeId) -> Lsn {
        self.groups.get(&protection_group).and_then(|s| s.get(&node)).copied().unwrap_or(Lsn::ZERO)
    }

    /// The segment of the group with the highest SCL, other than `except`.
    pub fn best_segment(&self, protection_group: ProtectionGroupId, except: NodeId) -> Option<NodeId> {
        let segments = self.groups.get(&protection_group)?;
        segments.iter().filter(|(node, _)| **node != except).max_by_key(|(_, scl)| **scl).map(|(node, _)| *node)
    }

    /// The lowest SCL of any segment of the group (records at or below it are
    /// on every segment and need not be kept for resending).
    pub fn group_floor_lsn(&self, protection_group: ProtectionGroupId) -> Lsn {
        self.groups.get(&protection_group).and_then(|segments| segments.values().min().copied()).unwrap_or(Lsn::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ProtectionGroupId = ProtectionGroupId(0);
    const B: ProtectionGroupId = ProtectionGroupId(1);

    fn tracker() -> QuorumTracker {
        let mut tracker = QuorumTracker::new(4, Lsn::ZERO, Lsn::ZERO);
        for node in 0..6 {
            tracker.add_segment(A, NodeId(node), Lsn::ZERO);
            tracker.add_segment(B, NodeId(node), Lsn::ZERO);
        }
        tracker
    }

    #[test]
    fn durable_needs_four_of_six_in_every_group() {
        let mut tracker = tracker();
        for lsn in 1..=3 {
            tracker.assign(Lsn(lsn), lsn == 3);
        }
        for node in 0..3 {
            assert_eq!(tracker.acknowledged(NodeId(node), A, Lsn(3)), None);
            assert_eq!(tracker.acknowledged(NodeId(node), B, Lsn(3)), None);
        }
        assert_eq!(tracker.acknowledged(NodeId(3), A, Lsn(3)), None, "group B is not complete yet");
        assert_eq!(tracker.acknowledged(NodeId(3), B, Lsn(3)), Some(Lsn(3)));
        assert_eq!(tracker.durable_lsn(), Lsn(3));
    }

    #[test]
    fn durable_stops_at_the_last_commit_below_the_complete_lsn() {
        let mut tracker = tracker();
        for (lsn, commit) in [(1, false), (2, true), (3, false), (4, false), (5, true)] {
            tracker.assign(Lsn(lsn), commit);
        }
        for node in 0..4 {
            tracker.acknowledged(NodeId(node), B, Lsn(5));
        }
        for node in 0..3 {
            tracker.acknowledged(NodeId(node), A, Lsn(4));
        }
        assert_eq!(tracker.acknowledged(NodeId(5), A, Lsn(4)), Some(Lsn(2)));
        assert_eq!(tracker.volume_complete_lsn(), Lsn(4));
        assert_eq!(tracker.acknowledged(NodeId(5), A, Lsn(5)), None);
        assert_eq!(tracker.acknowledged(NodeId(0), A, Lsn(5)), None);
        assert_eq!(tracker.acknowledged(NodeId(1), A, Lsn(5)), None);
        assert_eq!(tracker.acknowledged(NodeId(2), A, Lsn(5)), Some(Lsn(5)));
        assert_eq!(tracker.group_floor_lsn(A), Lsn::ZERO, "segments 3 and 4 never answered");
        let best = tracker.best_segment(A, NodeId(9)).unwrap();
        assert_eq!(tracker.segment_complete_lsn(A, best), Lsn(5));
    }

    #[test]
    fn late_and_unknown_acknowledgements_change_nothing() {
        let mut tracker = tracker();
        tracker.assign(Lsn(1), true);
        for node in 0..4 {
            tracker.acknowledged(NodeId(node), A, Lsn(1));
            tracker.acknowledged(NodeId(node), B, Lsn(1));
        }
        assert_eq!(tracker.durable_lsn(), Lsn(1));
        assert_eq!(tracker.acknowledged(NodeId(0), A, Lsn(0)), None);
        assert_eq!(tracker.acknowledged(NodeId(9), A, Lsn(9)), None);
    }
}
