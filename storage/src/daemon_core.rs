//! How a storage daemon answers requests (sans-IO): the epoch fence, the
//! order of syncs and answers, and gossip's repair plan. The QUIC daemon
//! (`daemon`) and the simulation both drive `SegmentStore` through these
//! methods, so they run one logic.
//!
//! A request is first `step`ped. Most are answered at once (`Step::Reply`).
//! One that changes durable state comes back as `Step::Sync`: the caller
//! writes the state file if `persist_state` is set, then logs and syncs the
//! records and promises (in that order), and only then calls `finish` for
//! the answer. Nothing is reported complete before it is synced, and an
//! epoch is persisted before anything is done under it.
//!
//! Epoch fence (DESIGN.md invariant 6): a request carrying an epoch below
//! the daemon's is refused with `StaleEpoch`; a newer one is taken (and must
//! be persisted first). `RaiseEpoch` is a new writer's claim and is refused
//! unless its epoch is strictly newer: two writers that picked the same
//! epoch (each from statuses that missed the other's raise) cannot both win
//! a write quorum for it. An append whose epoch was overtaken while it synced
//! is not acknowledged either, since the new writer may have truncated it.

use crate::ids::{Epoch, Lsn, NodeId, PageId, ProtectionGroupId};
use crate::log::Promise;
use crate::proto::{GroupAppend, NodeStatus, PAGES_PER_REQUEST_MAX, Request, Response, SegmentProgress, Truncation};
use crate::store::{EpochCheck, PageRefusal, SegmentStore};
use std::collections::BTreeMap;
use std::time::Instant;

/// The most bytes of records one `GetRecords` answer carries (half the
/// message limit, leaving room for the envelope).
pub const RECORDS_BYTES_MAX: usize = crate::proto::MESSAGE_BYTES_MAX / 2;

/// What to do with a request.
#[derive(Debug)]
pub enum Step {
    /// Answer now.
    Reply(Response),
    /// Make `work` durable, then call `finish`.
    Sync(SyncWork),
}

/// Durable work that must complete before a request is answered.
#[derive(Debug)]
pub struct SyncWork {
    /// The state file must be rewritten (epoch raised, truncation taken)
    /// before the log is written.
    pub persist_state: bool,
    /// Records to log and sync (the groups come back to `finish`).
    pub groups: Vec<GroupAppend>,
    /// Promises to log with the records: they move an SCL.
    pub promises: Vec<Promise>,
    /// What `finish` does once all of it is durable.
    pub then: Pending,
}

impl SyncWork {
    /// Whether anything must be written to the log.
    pub fn logs(&self) -> bool {
        !self.promises.is_empty() || self.groups.iter().any(|g| !g.records.is_empty())
    }
}

/// The second half of a request that waited for a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// A writer's append.
    Append { epoch: Epoch, complete_to: Lsn, all_groups: bool, durable_lsn: Lsn, min_read_point: Lsn },
    /// Records copied from a peer by gossip (no writer, no epoch).
    Repair { complete_to: Lsn },
    /// `RaiseEpoch`: answer with the epoch.
    EpochRaised,
    /// `AdvanceDurable` under a newer epoch.
    Advance { durable_lsn: Lsn, min_read_point: Lsn },
    /// `Truncate`, or a truncation adopted from a peer: answer with progress.
    Truncated,
}

impl SegmentStore {
    /// Takes `epoch` if it is not older than ours: `Ok(true)` when it is
    /// newer and must be persisted before the request proceeds.
    fn accept_epoch(&mut self, epoch: Epoch) -> Result<bool, Response> {
        match self.check_epoch(epoch) {
            EpochCheck::Current => Ok(false),
            EpochCheck::Stale { current } => Err(Response::StaleEpoch { current }),
            EpochCheck::Newer => {
                let raised = self.raise_epoch(epoch);
                assert!(raised, "epoch {epoch} checked newer than {} but not raised", self.epoch());
                Ok(true)
            }
        }
    }

    /// First half of a request. `now` is the daemon's clock (read points of
    /// readers are held for a while after their last read).
    pub fn step(&mut self, request: Request, now: Instant) -> Step {
        match request {
            Request::Append { epoch, groups, complete_to, durable_lsn, min_read_point, all_groups } => {
                let persist_state = match self.accept_epoch(epoch) {
                    Ok(newer) => newer,
                    Err(stale) => return Step::Reply(stale),
                };
                if let Err(message) = validate_append(epoch, &groups) {
                    return Step::Reply(Response::Failed { message });
                }
                let then = Pending::Append { epoch, complete_to, all_groups, durable_lsn, min_read_point };
                self.sync_or_finish(persist_state, groups, complete_to, then)
            }
            Request::GetPages { pages, read_point } => Step::Reply(self.get_pages(&pages, read_point, now)),
            Request::Status => Step::Reply(Response::Status(self.status())),
            Request::HoldReadPoint { read_point } => {
                Step::Reply(Response::Held { kept: self.hold_read_point(read_point, now) })
            }
            Request::AdvanceDurable { epoch, durable_lsn, min_read_point } => match self.accept_epoch(epoch) {
                Err(stale) => Step::Reply(stale),
                Ok(false) => {
                    self.advance_durable(durable_lsn, min_read_point);
                    Step::Reply(Response::Advanced)
                }
                Ok(true) => Step::Sync(SyncWork {
                    persist_state: true,
                    groups: Vec::new(),
                    promises: Vec::new(),
                    then: Pending::Advance { durable_lsn, min_read_point },
                }),
            },
            // A claim: only a strictly newer epoch is taken, so that two
            // recovering writers can never both hold one epoch.
            Request::RaiseEpoch { epoch } => match self.accept_epoch(epoch) {
                Err(stale) => Step::Reply(stale),
                Ok(false) => Step::Reply(Response::StaleEpoch { current: self.epoch() }),
                Ok(true) => Step::Sync(SyncWork {
                    persist_state: true,
                    groups: Vec::new(),
                    promises: Vec::new(),
                    then: Pending::EpochRaised,
                }),
            },
            Request::Truncate { epoch, truncation } => {
                if let Err(stale) = self.accept_epoch(epoch) {
                    return Step::Reply(stale);
                }
                match self.truncate(truncation) {
                    Ok(_) => Step::Sync(SyncWork {
                        persist_state: true,
                        groups: Vec::new(),
                        promises: Vec::new(),
                        then: Pending::Truncated,
                    }),
                    Err(message) => Step::Reply(Response::Failed { message }),
                }
            }
            Request::GetRecords { protection_group, after, up_to, bytes_max } => {
                let bytes_max = (bytes_max as usize).min(RECORDS_BYTES_MAX);
                Step::Reply(match self.records(protection_group, after, up_to, bytes_max) {
                    Some((records, more)) => Response::Records { records, more },
                    None => Response::Failed {
                        message: format!(
                            "records of group {protection_group} after {after} were released by a checkpoint"
                        ),
                    },
                })
            }
            Request::ChainPoint { protection_group, at_or_below } => {
                let (commit_lsn, record_lsn) = self.chain_point(protection_group, at_or_below);
                Step::Reply(Response::ChainPoint { commit_lsn, record_lsn })
            }
            Request::Digest { protection_group, lsn } => {
                let segment_complete_lsn = self.segment_complete_lsn(protection_group);
                Step::Reply(match self.digest(protection_group, lsn) {
                    Ok(pages) => Response::Digest { segment_complete_lsn, pages },
                    Err(refusal) => refused(refusal),
                })
            }
        }
    }

    /// Answer to `GetPages`: every page or the first refusal.
    fn get_pages(&mut self, pages: &[PageId], read_point: Lsn, now: Instant) -> Response {
        if pages.len() > PAGES_PER_REQUEST_MAX {
            return Response::Failed {
                message: format!("{} pages asked, at most {PAGES_PER_REQUEST_MAX}", pages.len()),
            };
        }
        let mut images = Vec::with_capacity(pages.len());
        for &page in pages {
            match self.get_page(page, read_point, now) {
                Ok(image) => images.push(image.as_bytes().to_vec()),
                Err(refusal) => return refused(refusal),
            }
        }
        Response::Pages { images }
    }

    /// Gossip repair: records of one group copied from a peer whose chain
    /// ends at `tail_lsn` and which is complete to `complete_to`.
    pub fn repair(&mut self, groups: Vec<GroupAppend>, complete_to: Lsn) -> Step {
        if let Err(message) = validate_append(Epoch(u64::MAX), &groups) {
            return Step::Reply(Response::Failed { message });
        }
        self.sync_or_finish(false, groups, complete_to, Pending::Repair { complete_to })
    }

    /// Gossip: takes a truncation range learnt from a peer, raising the
    /// epoch to its epoch if needed (a writer of that epoch exists).
    pub fn adopt_truncation(&mut self, truncation: Truncation) -> Step {
        if truncation.epoch > self.epoch() {
            self.raise_epoch(truncation.epoch);
        }
        match self.truncate(truncation) {
            Ok(_) => Step::Sync(SyncWork {
                persist_state: true,
                groups: Vec::new(),
                promises: Vec::new(),
                then: Pending::Truncated,
            }),
            Err(message) => Step::Reply(Response::Failed { message }),
        }
    }

    fn sync_or_finish(
        &mut self,
        persist_state: bool,
        groups: Vec<GroupAppend>,
        complete_to: Lsn,
        then: Pending,
    ) -> Step {
        let promises = self.promises_needed(&groups, complete_to);
        let work = SyncWork { persist_state, groups, promises, then };
        if work.persist_state || work.logs() {
            Step::Sync(work)
        } else {
            Step::Reply(self.finish(work.then, work.groups))
        }
    }

    /// Second half of a request: its work is durable. `groups` are those of
    /// the `SyncWork`.
    pub fn finish(&mut self, then: Pending, groups: Vec<GroupAppend>) -> Response {
        match then {
            Pending::Append { epoch, complete_to, all_groups, durable_lsn, min_read_point } => {
                let segments = self.append_synced(groups, complete_to, all_groups);
                // A writer fenced while its records were syncing is not told
                // they are complete: the new writer may have truncated them.
                if let EpochCheck::Stale { current } = self.check_epoch(epoch) {
                    return Response::StaleEpoch { current };
                }
                self.advance_durable(durable_lsn, min_read_point);
                Response::Appended { segments }
            }
            Pending::Repair { complete_to } => {
                Response::Appended { segments: self.append_synced(groups, complete_to, false) }
            }
            Pending::EpochRaised => Response::EpochRaised { epoch: self.epoch() },
            Pending::Advance { durable_lsn, min_read_point } => {
                self.advance_durable(durable_lsn, min_read_point);
                Response::Advanced
            }
            Pending::Truncated => Response::Truncated { segments: self.status().segments },
        }
    }
}

fn refused(refusal: PageRefusal) -> Response {
    match refusal {
        PageRefusal::NotComplete { segment_complete_lsn } => Response::NotComplete { segment_complete_lsn },
        PageRefusal::TooOld { oldest } => Response::TooOld { oldest },
        PageRefusal::Failed(message) => Response::Failed { message },
    }
}

/// Refuses appends whose records do not belong where they claim.
pub fn validate_append(epoch: Epoch, groups: &[GroupAppend]) -> Result<(), String> {
    for group in groups {
        let protection_group: ProtectionGroupId = group.protection_group;
        for record in &group.records {
            if record.protection_group != protection_group || record.epoch > epoch || record.prev_lsn >= record.lsn {
                return Err(format!("record {} does not fit group {protection_group} at epoch {epoch}", record.lsn));
            }
        }
    }
    Ok(())
}

/// One repair gossip decided: copy a group's records from a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GossipFetch {
    /// The group to repair.
    pub protection_group: ProtectionGroupId,
    /// The most complete peer.
    pub peer: NodeId,
    /// Our chain's tail: copy records after it.
    pub after: Lsn,
    /// The peer's chain tail: copy up to it.
    pub tail_lsn: Lsn,
    /// The peer's SCL, taken once our chain ends at `tail_lsn`.
    pub complete_to: Lsn,
}

/// Truncation ranges some peer has accepted and we have not (they are facts
/// decided by a writer, so they are adopted as they are).
pub fn truncations_to_adopt(mine: &NodeStatus, peers: &[NodeStatus]) -> Vec<Truncation> {
    let mut missing: Vec<Truncation> =
        peers.iter().flat_map(|p| p.truncations.iter().copied()).filter(|t| !mine.truncations.contains(t)).collect();
    missing.sort_unstable();
    missing.dedup();
    missing
}

/// Per protection group where a peer is more complete than we are: the
/// most complete peer and what to copy from it. Take `mine` after adopting
/// the truncations.
pub fn gossip_fetches(mine: &NodeStatus, peers: &[NodeStatus]) -> Vec<GossipFetch> {
    let ours: BTreeMap<ProtectionGroupId, SegmentProgress> =
        mine.segments.iter().map(|p| (p.protection_group, *p)).collect();
    let mut best: BTreeMap<ProtectionGroupId, (NodeId, SegmentProgress)> = BTreeMap::new();
    for status in peers.iter().filter(|s| s.node != mine.node) {
        for progress in &status.segments {
            let entry = best.entry(progress.protection_group).or_insert((status.node, *progress));
            if progress.segment_complete_lsn > entry.1.segment_complete_lsn {
                *entry = (status.node, *progress);
            }
        }
    }
    best.into_iter()
        .filter_map(|(group, (peer, theirs))| {
            let (after, scl) =
                ours.get(&group).map_or((Lsn::ZERO, Lsn::ZERO), |p| (p.tail_lsn, p.segment_complete_lsn));
            (theirs.segment_complete_lsn > scl).then_some(GossipFetch {
                protection_group: group,
                peer,
                after,
                tail_lsn: theirs.tail_lsn,
                complete_to: theirs.segment_complete_lsn,
            })
        })
        .collect()
}

/// Per protection group of ours, the lowest SCL among the other daemons
/// holding it (`holders`), when every one of them answered: records at or
/// below it are held by every segment and a checkpoint may release them.
pub fn peer_floors(
    mine: &NodeStatus,
    peers: &[NodeStatus],
    holders: impl Fn(ProtectionGroupId) -> Vec<NodeId>,
) -> Vec<(ProtectionGroupId, Lsn)> {
    mine.segments
        .iter()
        .filter_map(|ours| {
            let group = ours.protection_group;
            let mut floor = ours.segment_complete_lsn;
            for holder in holders(group).into_iter().filter(|node| *node != mine.node) {
                let status = peers.iter().find(|s| s.node == holder)?;
                let theirs = status.segments.iter().find(|p| p.protection_group == group);
                floor = floor.min(theirs.map_or(Lsn::ZERO, |p| p.segment_complete_lsn));
            }
            Some((group, floor))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::VolumeLayout;
    use crate::store::PersistedState;

    fn store() -> SegmentStore {
        SegmentStore::new(NodeId(0), VolumeLayout { pages_per_group: 4 }, PersistedState::default())
    }

    fn run(store: &mut SegmentStore, request: Request) -> Response {
        match store.step(request, Instant::now()) {
            Step::Reply(response) => response,
            Step::Sync(work) => store.finish(work.then, work.groups),
        }
    }

    #[test]
    fn records_are_released_only_when_every_holder_answered_and_has_them() {
        let progress = |group: u32, scl: u64| SegmentProgress {
            protection_group: ProtectionGroupId(group),
            segment_complete_lsn: Lsn(scl),
            tail_lsn: Lsn(scl),
            commit_lsn: Lsn(scl),
        };
        let status = |node: u32, segments: Vec<SegmentProgress>| NodeStatus {
            node: NodeId(node),
            epoch: Epoch(1),
            durable_lsn: Lsn(0),
            segments,
            truncations: Vec::new(),
        };
        let mine = status(0, vec![progress(0, 50), progress(1, 70), progress(2, 10)]);
        // Group 0 on nodes 0-2, group 1 on 0 and 3 (3 is down), group 2 on 0 and 1.
        let holders = |group: ProtectionGroupId| match group.0 {
            0 => vec![NodeId(0), NodeId(1), NodeId(2)],
            1 => vec![NodeId(0), NodeId(3)],
            _ => vec![NodeId(0), NodeId(1)],
        };
        let peers = [status(1, vec![progress(0, 60)]), status(2, vec![progress(0, 40), progress(1, 90)])];
        let floors = peer_floors(&mine, &peers, holders);
        assert_eq!(floors, vec![(ProtectionGroupId(0), Lsn(40)), (ProtectionGroupId(2), Lsn(0))]);
    }

    #[test]
    fn an_epoch_is_claimed_once_and_stale_epochs_are_refused() {
        let mut store = store();
        assert_eq!(run(&mut store, Request::RaiseEpoch { epoch: Epoch(2) }), Response::EpochRaised { epoch: Epoch(2) });
        // A second writer that picked the same epoch loses it.
        assert_eq!(
            run(&mut store, Request::RaiseEpoch { epoch: Epoch(2) }),
            Response::StaleEpoch { current: Epoch(2) }
        );
        let advance = Request::AdvanceDurable { epoch: Epoch(2), durable_lsn: Lsn(5), min_read_point: Lsn(5) };
        assert_eq!(run(&mut store, advance), Response::Advanced, "the holder of the epoch still writes");
        let old = Request::AdvanceDurable { epoch: Epoch(1), durable_lsn: Lsn(9), min_read_point: Lsn(9) };
        assert_eq!(run(&mut store, old), Response::StaleEpoch { current: Epoch(2) });
        assert_eq!(store.durable_lsn(), Lsn(5));
    }
}
