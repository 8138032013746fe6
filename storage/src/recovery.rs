//! Volume recovery by a new writer (see `writer` for the outline).
//!
//! Why it keeps every acknowledged commit: a commit C was acknowledged only
//! once every group had SCL >= C on a write quorum (4 of 6). Any read quorum
//! (3 of 6) overlaps it, so the most complete responding segment of each
//! group has SCL >= C, hence VCL >= C and VDL >= C. Records above VDL were
//! never acknowledged; they are annulled by a truncation range that reaches
//! past anything the old writer could have assigned (its allocation stayed
//! within LAL of its durable LSN or of its own start).

use crate::client::{BULK_REQUEST_TIMEOUT, REQUEST_TIMEOUT, StorageClient, StorageError, placement, unexpected};
use crate::ids::{Epoch, Lsn, NodeId, ProtectionGroupId};
use crate::proto::{GroupAppend, NodeStatus, Request, Response, SegmentProgress, Truncation};
use crate::writer::{VolumeConfig, fetch_records, statuses_of};
use std::collections::{BTreeMap, BTreeSet};

/// What recovery hands to the writer.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub epoch: Epoch,
    /// VDL: the last commit kept.
    pub durable_lsn: Lsn,
    /// The end of the new truncation range; new LSNs start above it.
    pub lsn_floor: Lsn,
    /// Every truncation range, to be repeated to daemons that missed one.
    pub truncations: Vec<Truncation>,
    /// Per group: the last record kept.
    pub group_tails: BTreeMap<ProtectionGroupId, Lsn>,
    /// Per group: the SCL of each segment that answered.
    pub segments: BTreeMap<ProtectionGroupId, BTreeMap<NodeId, Lsn>>,
}

/// Per group: the most complete responding segment.
#[derive(Debug, Clone, Copy)]
struct GroupBest {
    node: NodeId,
    segment_complete_lsn: Lsn,
}

pub(crate) async fn recover(client: &StorageClient, config: &VolumeConfig) -> Result<Recovered, StorageError> {
    let epoch = raise_epoch(client, config).await?;
    let (raised, truncations, statuses) = spread_truncations(client, config, epoch).await?;
    let best = best_segments(config, &statuses)?;
    let volume_complete = best.values().map(|b| b.segment_complete_lsn).min();
    let hint = statuses.values().map(|s| s.durable_lsn).max().unwrap_or(Lsn::ZERO);
    let mut durable_lsn = match volume_complete {
        Some(vcl) => hint.min(vcl),
        None => hint,
    };
    if let Some(vcl) = volume_complete {
        for (group, b) in &best {
            durable_lsn = durable_lsn.max(chain_point(client, b.node, *group, vcl).await?.0);
        }
    }
    let mut group_tails = BTreeMap::new();
    for (group, b) in &best {
        let tail = chain_point(client, b.node, *group, durable_lsn).await?.1;
        group_tails.insert(*group, tail);
        catch_up(client, config, epoch, &statuses, (*group, *b), (tail, durable_lsn)).await;
    }
    let seen =
        statuses.values().flat_map(|s| s.segments.iter().map(|p| p.segment_complete_lsn)).max().unwrap_or(Lsn::ZERO);
    let old_end = truncations.iter().map(|t| t.up_to).max().unwrap_or(Lsn::ZERO);
    let up_to = Lsn(durable_lsn.max(seen).max(old_end).0.saturating_add(config.lsn_allocation_limit));
    let truncation = Truncation { epoch, above: durable_lsn, up_to };
    let segments = truncate(client, config, epoch, &raised, truncation, best.keys()).await?;
    let mut truncations = truncations;
    truncations.push(truncation);
    Ok(Recovered { epoch, durable_lsn, lsn_floor: up_to, truncations, group_tails, segments })
}

/// Raises the epoch to one above any seen on a write quorum.
async fn raise_epoch(client: &StorageClient, config: &VolumeConfig) -> Result<Epoch, StorageError> {
    let answers = client.status_all().await;
    let seen = answers.iter().filter_map(|(_, a)| a.as_ref().ok().map(|s| s.epoch)).max().unwrap_or_default();
    let epoch = Epoch(seen.0 + 1);
    let request = Request::RaiseEpoch { epoch };
    let nodes: Vec<NodeId> = client.nodes().iter().map(|n| NodeId(n.index)).collect();
    let replies = futures::future::join_all(nodes.iter().map(|n| client.request(*n, &request, REQUEST_TIMEOUT))).await;
    let mut raised = 0;
    for reply in replies {
        match reply {
            Ok(Response::EpochRaised { epoch: e }) if e == epoch => raised += 1,
            Ok(Response::EpochRaised { epoch: current }) | Ok(Response::StaleEpoch { current }) => {
                return Err(StorageError::StaleEpoch { current });
            }
            Ok(_) | Err(_) => {}
        }
    }
    if raised < config.write_quorum {
        return Err(StorageError::QuorumLost {
            what: "raise the epoch",
            needed: config.write_quorum,
            answered: raised,
        });
    }
    Ok(epoch)
}

/// Gives every raised daemon every truncation range any of them knows, then
/// returns the raised daemons, the ranges and their (final) statuses.
async fn spread_truncations(
    client: &StorageClient,
    config: &VolumeConfig,
    epoch: Epoch,
) -> Result<(BTreeSet<NodeId>, Vec<Truncation>, BTreeMap<NodeId, NodeStatus>), StorageError> {
    let all: BTreeSet<NodeId> = client.nodes().iter().map(|n| NodeId(n.index)).collect();
    let statuses: BTreeMap<NodeId, NodeStatus> =
        statuses_of(client, &all).await.into_iter().filter(|(_, s)| s.epoch == epoch).collect();
    let known: BTreeSet<Truncation> = statuses.values().flat_map(|s| s.truncations.iter().copied()).collect();
    for (node, status) in &statuses {
        for truncation in known.iter().filter(|t| !status.truncations.contains(t)) {
            let request = Request::Truncate { epoch, truncation: *truncation };
            match client.request(*node, &request, REQUEST_TIMEOUT).await {
                Ok(Response::Truncated { .. }) => {}
                Ok(other) => tracing::warn!(%node, "failed to spread a truncation: {}", unexpected(other)),
                Err(e) => tracing::warn!(%node, "failed to spread a truncation: {e}"),
            }
        }
    }
    let raised: BTreeSet<NodeId> = statuses.keys().copied().collect();
    let statuses: BTreeMap<NodeId, NodeStatus> =
        statuses_of(client, &raised).await.into_iter().filter(|(_, s)| s.epoch == epoch).collect();
    if statuses.len() < config.write_quorum {
        return Err(StorageError::QuorumLost {
            what: "read segment status",
            needed: config.write_quorum,
            answered: statuses.len(),
        });
    }
    Ok((statuses.keys().copied().collect(), known.into_iter().collect(), statuses))
}

fn progress_of(status: &NodeStatus, group: ProtectionGroupId) -> Option<&SegmentProgress> {
    status.segments.iter().find(|p| p.protection_group == group)
}

/// Per group with records anywhere: its most complete segment among a read quorum.
fn best_segments(
    config: &VolumeConfig,
    statuses: &BTreeMap<NodeId, NodeStatus>,
) -> Result<BTreeMap<ProtectionGroupId, GroupBest>, StorageError> {
    let groups: BTreeSet<ProtectionGroupId> =
        statuses.values().flat_map(|s| s.segments.iter().map(|p| p.protection_group)).collect();
    let mut best = BTreeMap::new();
    for group in groups {
        let responders: Vec<NodeId> =
            placement(&config.nodes, group).into_iter().filter(|n| statuses.contains_key(n)).collect();
        if responders.len() < config.read_quorum {
            return Err(StorageError::QuorumLost {
                what: "read quorum",
                needed: config.read_quorum,
                answered: responders.len(),
            });
        }
        let scl = |node: &NodeId| progress_of(&statuses[node], group).map_or(Lsn::ZERO, |p| p.segment_complete_lsn);
        let node = *responders.iter().max_by_key(|n| scl(n)).expect("a read quorum is not empty");
        best.insert(group, GroupBest { node, segment_complete_lsn: scl(&node) });
    }
    Ok(best)
}

/// The last commit and the last record at or below `lsn` on `node`.
async fn chain_point(
    client: &StorageClient,
    node: NodeId,
    group: ProtectionGroupId,
    lsn: Lsn,
) -> Result<(Lsn, Lsn), StorageError> {
    let request = Request::ChainPoint { protection_group: group, at_or_below: lsn };
    match client.request(node, &request, REQUEST_TIMEOUT).await? {
        Response::ChainPoint { commit_lsn, record_lsn } => Ok((commit_lsn, record_lsn)),
        other => Err(unexpected(other)),
    }
}

/// Brings the group's responding segments that are not complete to `durable`
/// up to it with records from the best segment. Failures are only logged:
/// `truncate` counts who is complete afterwards.
async fn catch_up(
    client: &StorageClient,
    config: &VolumeConfig,
    epoch: Epoch,
    statuses: &BTreeMap<NodeId, NodeStatus>,
    (group, best): (ProtectionGroupId, GroupBest),
    (tail, durable): (Lsn, Lsn),
) {
    for node in placement(&config.nodes, group) {
        let Some(status) = statuses.get(&node) else { continue };
        let progress = progress_of(status, group);
        let (node_tail, node_scl) = progress.map_or((Lsn::ZERO, Lsn::ZERO), |p| (p.tail_lsn, p.segment_complete_lsn));
        if node == best.node || node_scl >= durable {
            continue;
        }
        let records = match fetch_records(client, best.node, group, node_tail, tail).await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(%node, %group, "failed to fetch records for catch-up: {e}");
                continue;
            }
        };
        let request = Request::Append {
            epoch,
            groups: vec![GroupAppend { protection_group: group, records, tail_lsn: tail }],
            complete_to: durable,
            durable_lsn: Lsn::ZERO,
            min_read_point: Lsn::ZERO,
            all_groups: false,
        };
        match client.request(node, &request, BULK_REQUEST_TIMEOUT).await {
            Ok(Response::Appended { .. }) => tracing::info!(%node, %group, %durable, "segment caught up"),
            Ok(other) => tracing::warn!(%node, %group, "catch-up refused: {}", unexpected(other)),
            Err(e) => tracing::warn!(%node, %group, "catch-up failed: {e}"),
        }
    }
}

/// Persists the new truncation range on the raised daemons; every group
/// must then be complete to its end on a write quorum.
async fn truncate(
    client: &StorageClient,
    config: &VolumeConfig,
    epoch: Epoch,
    raised: &BTreeSet<NodeId>,
    truncation: Truncation,
    groups: impl Iterator<Item = &ProtectionGroupId>,
) -> Result<BTreeMap<ProtectionGroupId, BTreeMap<NodeId, Lsn>>, StorageError> {
    let request = Request::Truncate { epoch, truncation };
    let replies = futures::future::join_all(raised.iter().map(|n| client.request(*n, &request, REQUEST_TIMEOUT))).await;
    let mut progress: BTreeMap<NodeId, Vec<SegmentProgress>> = BTreeMap::new();
    for (node, reply) in raised.iter().zip(replies) {
        match reply {
            Ok(Response::Truncated { segments }) => {
                progress.insert(*node, segments);
            }
            Ok(other) => tracing::warn!(%node, "truncation refused: {}", unexpected(other)),
            Err(e) => tracing::warn!(%node, "truncation failed: {e}"),
        }
    }
    if progress.len() < config.write_quorum {
        return Err(StorageError::QuorumLost {
            what: "persist the truncation",
            needed: config.write_quorum,
            answered: progress.len(),
        });
    }
    let mut segments = BTreeMap::new();
    for group in groups {
        let scls: BTreeMap<NodeId, Lsn> = progress
            .iter()
            .map(|(node, list)| {
                let scl =
                    list.iter().find(|p| p.protection_group == *group).map_or(Lsn::ZERO, |p| p.segment_complete_lsn);
                (*node, scl)
            })
            .collect();
        let complete = scls.values().filter(|scl| **scl >= truncation.up_to).count();
        if complete < config.write_quorum {
            return Err(StorageError::QuorumLost {
                what: "complete segments after catch-up",
                needed: config.write_quorum,
                answered: complete,
            });
        }
        segments.insert(*group, scls);
    }
    Ok(segments)
}
