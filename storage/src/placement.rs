//! Which storage daemons hold the segments of each protection group
//! (sans-IO, no configuration types, so that the protocol cores and the
//! simulation share it with the network client).
//!
//! With exactly six daemons every group has a segment on each. With more,
//! a group takes two daemons in each of the three zones, chosen
//! deterministically from the group id, so that every process computes the
//! same placement from the cluster file alone.

use crate::ids::{NodeId, ProtectionGroupId};
use std::collections::BTreeMap;

/// Segments of one protection group: 2 in each of 3 availability zones.
pub const SEGMENTS_PER_GROUP: usize = 6;

/// The daemons of a volume with their availability zones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    nodes: Vec<(NodeId, String)>,
}

impl Placement {
    /// A placement over `nodes` (daemon, availability zone), in cluster-file order.
    pub fn new(nodes: impl IntoIterator<Item = (NodeId, String)>) -> Placement {
        Placement { nodes: nodes.into_iter().collect() }
    }

    /// Every daemon, in cluster-file order.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|(node, _)| *node).collect()
    }

    /// The daemons holding a segment of `protection_group`.
    pub fn segments(&self, protection_group: ProtectionGroupId) -> Vec<NodeId> {
        if self.nodes.len() <= SEGMENTS_PER_GROUP {
            return self.nodes();
        }
        let mut zones: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
        for (node, az) in &self.nodes {
            zones.entry(az.as_str()).or_default().push(*node);
        }
        let per_zone = SEGMENTS_PER_GROUP / zones.len().max(1);
        let mut chosen = Vec::with_capacity(SEGMENTS_PER_GROUP);
        for members in zones.values() {
            let start = protection_group.0 as usize * per_zone;
            chosen.extend((0..per_zone.min(members.len())).map(|k| members[(start + k) % members.len()]));
        }
        chosen
    }
}
