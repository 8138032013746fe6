//! Gossip repair: a daemon whose segments are behind a peer's pulls the
//! missing records from that peer, without any writer.
//!
//! Every `GOSSIP_INTERVAL` the daemon asks its peers for their status. It
//! adopts truncation ranges it missed (they are facts decided by a writer),
//! then, for each protection group where a peer is more complete, copies the
//! peer's chained records after its own tail and takes the peer's SCL (the
//! peer is complete to it, and after the copy both chains end at the same
//! record). Records and the SCL promise go through the log like an append.

use crate::client::StorageClient;
use crate::daemon::Daemon;
use crate::ids::{Epoch, Lsn, NodeId, ProtectionGroupId};
use crate::proto::{GroupAppend, NodeStatus, SegmentProgress};
use crate::writer::fetch_records;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How often a daemon compares itself with its peers: often enough that a
/// returning daemon catches up within seconds, rare enough to cost nothing.
pub const GOSSIP_INTERVAL: Duration = Duration::from_secs(2);

/// Runs gossip rounds until the task is aborted.
pub(crate) async fn gossip_loop(daemon: Arc<Daemon>, client: StorageClient, me: NodeId) {
    let mut interval = tokio::time::interval(GOSSIP_INTERVAL);
    loop {
        interval.tick().await;
        if let Err(e) = gossip_round(&daemon, &client, me).await {
            tracing::debug!("gossip round failed: {e}");
        }
    }
}

async fn gossip_round(daemon: &Daemon, client: &StorageClient, me: NodeId) -> Result<(), String> {
    let peers: Vec<NodeStatus> =
        client.status_all().await.into_iter().filter(|(node, _)| *node != me).filter_map(|(_, s)| s.ok()).collect();
    for status in &peers {
        for truncation in &status.truncations {
            if !daemon.lock().persisted().truncations.contains(truncation) {
                tracing::info!(?truncation, peer = %status.node, "adopting a truncation range from a peer");
                daemon.adopt_truncation(*truncation).await?;
            }
        }
    }
    let mine: BTreeMap<ProtectionGroupId, SegmentProgress> =
        daemon.lock().status().segments.into_iter().map(|p| (p.protection_group, p)).collect();
    for (group, (peer, best)) in most_complete_peers(&peers) {
        let (tail, scl) = mine.get(&group).map_or((Lsn::ZERO, Lsn::ZERO), |p| (p.tail_lsn, p.segment_complete_lsn));
        if best.segment_complete_lsn <= scl {
            continue;
        }
        let records = fetch_records(client, peer, group, tail, best.tail_lsn).await.map_err(|e| e.to_string())?;
        let count = records.len();
        let groups = vec![GroupAppend { protection_group: group, records, tail_lsn: best.tail_lsn }];
        crate::daemon::validate_append(Epoch(u64::MAX), &groups)?;
        let after = daemon.ingest(groups, best.segment_complete_lsn, false).await?;
        let now = after.first().map_or(scl, |p| p.segment_complete_lsn);
        tracing::info!(%group, %peer, count, from = %scl, to = %now, "segment repaired from a peer");
    }
    Ok(())
}

/// Per group: the peer with the highest SCL and its progress.
fn most_complete_peers(peers: &[NodeStatus]) -> BTreeMap<ProtectionGroupId, (NodeId, SegmentProgress)> {
    let mut best: BTreeMap<ProtectionGroupId, (NodeId, SegmentProgress)> = BTreeMap::new();
    for status in peers {
        for progress in &status.segments {
            let entry = best.entry(progress.protection_group).or_insert((status.node, *progress));
            if progress.segment_complete_lsn > entry.1.segment_complete_lsn {
                *entry = (status.node, *progress);
            }
        }
    }
    best
}
