//! Gossip repair: a daemon whose segments are behind a peer's pulls the
//! missing records from that peer, without any writer.
//!
//! Every `GOSSIP_INTERVAL` the daemon asks its peers for their status. It
//! adopts truncation ranges it missed (they are facts decided by a writer),
//! then, for each protection group where a peer is more complete, copies the
//! peer's chained records after its own tail and takes the peer's SCL (the
//! peer is complete to it, and after the copy both chains end at the same
//! record). Records and the SCL promise go through the log like an append.
//! The decisions are the sans-IO `daemon_core::truncations_to_adopt` and
//! `daemon_core::gossip_fetches`; this loop only moves messages.

use crate::client::StorageClient;
use crate::daemon::Daemon;
use crate::daemon_core::{GossipFetch, gossip_fetches, peer_floors, truncations_to_adopt};
use crate::ids::{Lsn, NodeId};
use crate::placement::Placement;
use crate::proto::{GroupAppend, NodeStatus, Response};
use crate::writer::fetch_records;
use std::sync::Arc;
use std::time::Duration;

/// How often a daemon compares itself with its peers: often enough that a
/// returning daemon catches up within seconds, rare enough to cost nothing.
pub const GOSSIP_INTERVAL: Duration = Duration::from_secs(2);

/// Runs gossip rounds until the task is aborted.
pub(crate) async fn gossip_loop(daemon: Arc<Daemon>, client: StorageClient, me: NodeId, placement: Placement) {
    let mut interval = tokio::time::interval(GOSSIP_INTERVAL);
    loop {
        interval.tick().await;
        if let Err(e) = gossip_round(&daemon, &client, me, &placement).await {
            tracing::debug!("gossip round failed: {e}");
        }
    }
}

async fn gossip_round(
    daemon: &Daemon,
    client: &StorageClient,
    me: NodeId,
    placement: &Placement,
) -> Result<(), String> {
    let peers: Vec<NodeStatus> =
        client.status_all().await.into_iter().filter(|(node, _)| *node != me).filter_map(|(_, s)| s.ok()).collect();
    let mine = daemon.lock().status();
    {
        let mut store = daemon.lock();
        for (group, floor) in peer_floors(&mine, &peers, |group| placement.segments(group)) {
            store.peers_complete_to(group, floor);
        }
    }
    for truncation in truncations_to_adopt(&mine, &peers) {
        tracing::info!(?truncation, "adopting a truncation range from a peer");
        let step = daemon.lock().adopt_truncation(truncation);
        if let Response::Failed { message } = daemon.complete(step).await {
            return Err(message);
        }
    }
    let mine = daemon.lock().status();
    for fetch in gossip_fetches(&mine, &peers) {
        let GossipFetch { protection_group: group, peer, after, tail_lsn, complete_to } = fetch;
        let records = fetch_records(client, peer, group, after, tail_lsn).await.map_err(|e| e.to_string())?;
        let count = records.len();
        let step = daemon.lock().repair(vec![GroupAppend { protection_group: group, records, tail_lsn }], complete_to);
        match daemon.complete(step).await {
            Response::Appended { segments } => {
                let now = segments.first().map_or(Lsn::ZERO, |p| p.segment_complete_lsn);
                tracing::info!(%group, %peer, count, to = %now, "segment repaired from a peer");
            }
            Response::Failed { message } => return Err(message),
            other => return Err(format!("unexpected repair outcome {other:?}")),
        }
    }
    Ok(())
}
