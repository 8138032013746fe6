//! Volume recovery by a new writer (sans-IO): a sequence of rounds, each a
//! batch of requests to daemons whose answers (or failures) decide the next.
//!
//! 1. Status of every daemon: the new epoch is one above any seen.
//! 2. `RaiseEpoch` on every daemon; a write quorum must take it, and any
//!    refusal (a daemon already at that epoch or above) ends the attempt:
//!    the epoch may be another writer's. This fences the old writer
//!    (DESIGN.md invariant 6).
//! 3. Status again; the raised daemons get every truncation range any of
//!    them knows, then report their final status (a write quorum must).
//! 4. Per protection group, the most complete segment of a read quorum;
//!    VCL is the lowest of those SCLs and VDL the last commit at or below it
//!    (asked of those segments with `ChainPoint`), never below the durable
//!    LSN hint the daemons were told.
//! 5. Lagging segments are brought up to VDL with records copied from the
//!    most complete one (failures only cost completeness, checked in 6).
//! 6. The truncation range `(VDL, VDL + LAL]` (further if an older range or
//!    a segment reached further) is persisted on the raised daemons; every
//!    group must then be complete to its end on a write quorum.
//!
//! Why it keeps every acknowledged commit: a commit C was acknowledged only
//! once every group had SCL >= C on a write quorum (4 of 6). Any read quorum
//! (3 of 6) overlaps it, so the most complete responding segment of each
//! group has SCL >= C, hence VCL >= C and VDL >= C. Records above VDL were
//! never acknowledged; they are annulled by a truncation range that reaches
//! past anything the old writer could have assigned (its allocation stayed
//! within LAL of its durable LSN or of its own start).

use crate::error::{StorageError, unexpected};
use crate::ids::{Epoch, Lsn, NodeId, ProtectionGroupId};
use crate::placement::Placement;
use crate::proto::{GroupAppend, NodeStatus, Request, Response, SegmentProgress, Truncation};
use crate::redo::RedoRecord;
use std::collections::{BTreeMap, BTreeSet};

/// Bytes of records asked for per `GetRecords` during repair.
pub const REPAIR_BYTES_MAX: u32 = 16 * 1024 * 1024;

/// What recovery needs to know about the volume.
#[derive(Debug, Clone)]
pub struct RecoverySettings {
    /// Which daemons hold each group's segments.
    pub placement: Placement,
    /// Segments (of 6) that make a write quorum.
    pub write_quorum: usize,
    /// Segments (of 6) that make a read quorum.
    pub read_quorum: usize,
    /// LAL: how far the old writer may have run ahead of its durable LSN.
    pub lsn_allocation_limit: u64,
}

/// What recovery hands to the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
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

impl Recovered {
    /// An empty volume at `epoch` (for tests of the writer core).
    pub fn empty(epoch: Epoch) -> Recovered {
        Recovered {
            epoch,
            durable_lsn: Lsn::ZERO,
            lsn_floor: Lsn::ZERO,
            truncations: Vec::new(),
            group_tails: BTreeMap::new(),
            segments: BTreeMap::new(),
        }
    }
}

/// Per group: the most complete responding segment.
#[derive(Debug, Clone, Copy)]
struct GroupBest {
    node: NodeId,
    segment_complete_lsn: Lsn,
}

/// Records being copied to a lagging segment.
#[derive(Debug)]
struct CatchUp {
    source: NodeId,
    after: Lsn,
    up_to: Lsn,
    records: Vec<RedoRecord>,
    fetched: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Survey,
    Raise,
    Statuses,
    Spread,
    Confirm,
    CommitPoints,
    Tails,
    Fetch,
    CatchUp,
    Truncate,
    Done,
}

/// One recovery, from the first status round to the truncation.
#[derive(Debug)]
pub struct RecoveryCore {
    settings: RecoverySettings,
    phase: Phase,
    outbox: Vec<(NodeId, Request)>,
    outcome: Option<Result<Recovered, StorageError>>,
    epoch: Epoch,
    known: BTreeSet<Truncation>,
    statuses: BTreeMap<NodeId, NodeStatus>,
    best: BTreeMap<ProtectionGroupId, GroupBest>,
    durable_lsn: Lsn,
    group_tails: BTreeMap<ProtectionGroupId, Lsn>,
    catch_ups: BTreeMap<(ProtectionGroupId, NodeId), CatchUp>,
    /// The catch-ups whose `GetRecords` are in the current round, in order.
    fetching: Vec<(ProtectionGroupId, NodeId)>,
    truncation: Option<Truncation>,
}

impl RecoveryCore {
    /// A recovery that starts by asking every daemon for its status.
    pub fn new(settings: RecoverySettings) -> RecoveryCore {
        let outbox = settings.placement.nodes().into_iter().map(|n| (n, Request::Status)).collect();
        RecoveryCore {
            settings,
            phase: Phase::Survey,
            outbox,
            outcome: None,
            epoch: Epoch::default(),
            known: BTreeSet::new(),
            statuses: BTreeMap::new(),
            best: BTreeMap::new(),
            durable_lsn: Lsn::ZERO,
            group_tails: BTreeMap::new(),
            catch_ups: BTreeMap::new(),
            fetching: Vec::new(),
            truncation: None,
        }
    }

    /// The epoch this recovery raises (known after the first round).
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The requests of the current round; send them all (concurrently) and
    /// hand every answer, in the same order, to `answered`.
    pub fn requests(&self) -> &[(NodeId, Request)] {
        &self.outbox
    }

    /// The result, once recovery has finished (taken once).
    pub fn outcome(&mut self) -> Option<Result<Recovered, StorageError>> {
        self.outcome.take()
    }

    /// Answers to `requests`, in order (a failed or timed-out request is an error).
    pub fn answered(&mut self, answers: Vec<Result<Response, StorageError>>) {
        assert_eq!(answers.len(), self.outbox.len(), "one answer per request");
        let sent = std::mem::take(&mut self.outbox);
        let mut answers: Vec<(NodeId, Request, Result<Response, StorageError>)> =
            sent.into_iter().zip(answers).map(|((node, request), answer)| (node, request, answer)).collect();
        // Rounds with nothing to send are passed through at once.
        loop {
            if let Err(e) = self.round(answers) {
                self.phase = Phase::Done;
                self.outbox.clear();
                self.outcome = Some(Err(e));
            }
            if self.phase == Phase::Done || !self.outbox.is_empty() {
                return;
            }
            answers = Vec::new();
        }
    }

    fn round(&mut self, answers: Vec<(NodeId, Request, Result<Response, StorageError>)>) -> Result<(), StorageError> {
        let all = self.settings.placement.nodes();
        match self.phase {
            Phase::Survey => {
                let seen =
                    answers.iter().filter_map(|(_, _, a)| status_of(a).map(|s| s.epoch)).max().unwrap_or_default();
                self.epoch = Epoch(seen.0 + 1);
                self.outbox = all.into_iter().map(|n| (n, Request::RaiseEpoch { epoch: self.epoch })).collect();
                self.phase = Phase::Raise;
            }
            Phase::Raise => {
                let mut raised = 0;
                for (_, _, answer) in answers {
                    match answer {
                        Ok(Response::EpochRaised { epoch }) if epoch == self.epoch => raised += 1,
                        Ok(Response::EpochRaised { epoch: current }) | Ok(Response::StaleEpoch { current }) => {
                            return Err(StorageError::StaleEpoch { current });
                        }
                        Ok(_) | Err(_) => {}
                    }
                }
                self.need(raised, "raise the epoch")?;
                self.outbox = all.into_iter().map(|n| (n, Request::Status)).collect();
                self.phase = Phase::Statuses;
            }
            Phase::Statuses => {
                let statuses = self.raised_statuses(answers);
                self.known = statuses.values().flat_map(|s| s.truncations.iter().copied()).collect();
                let epoch = self.epoch;
                for (node, status) in &statuses {
                    for truncation in self.known.iter().filter(|t| !status.truncations.contains(t)) {
                        self.outbox.push((*node, Request::Truncate { epoch, truncation: *truncation }));
                    }
                }
                self.statuses = statuses;
                self.phase = Phase::Spread;
            }
            Phase::Spread => {
                self.outbox = self.statuses.keys().map(|n| (*n, Request::Status)).collect();
                self.phase = Phase::Confirm;
            }
            Phase::Confirm => {
                self.statuses = self.raised_statuses(answers);
                self.need(self.statuses.len(), "read segment status")?;
                self.best = self.best_segments()?;
                let volume_complete = self.best.values().map(|b| b.segment_complete_lsn).min();
                let hint = self.statuses.values().map(|s| s.durable_lsn).max().unwrap_or(Lsn::ZERO);
                self.durable_lsn = volume_complete.map_or(hint, |vcl| hint.min(vcl));
                if let Some(vcl) = volume_complete {
                    self.outbox = self.chain_points(vcl);
                }
                self.phase = Phase::CommitPoints;
            }
            Phase::CommitPoints => {
                for (_, _, answer) in answers {
                    let (commit_lsn, _) = chain_point(answer)?;
                    self.durable_lsn = self.durable_lsn.max(commit_lsn);
                }
                self.outbox = self.chain_points(self.durable_lsn);
                self.phase = Phase::Tails;
            }
            Phase::Tails => {
                for (_, request, answer) in answers {
                    let (_, record_lsn) = chain_point(answer)?;
                    if let Request::ChainPoint { protection_group, .. } = request {
                        self.group_tails.insert(protection_group, record_lsn);
                    }
                }
                self.plan_catch_ups();
                self.outbox = self.fetch_requests();
                self.phase = Phase::Fetch;
            }
            Phase::Fetch => {
                let keys = std::mem::take(&mut self.fetching);
                for (key, (_, _, answer)) in keys.into_iter().zip(answers) {
                    self.take_records(key, answer);
                }
                self.outbox = self.fetch_requests();
                if self.outbox.is_empty() {
                    self.outbox = self.catch_up_appends();
                    self.phase = Phase::CatchUp;
                }
            }
            Phase::CatchUp => {
                // Failures only cost completeness, which the truncation round counts.
                let seen = self.statuses.values().flat_map(|s| s.segments.iter().map(|p| p.segment_complete_lsn)).max();
                let old_end = self.known.iter().map(|t| t.up_to).max().unwrap_or(Lsn::ZERO);
                let end = self.durable_lsn.max(seen.unwrap_or(Lsn::ZERO)).max(old_end);
                let up_to = Lsn(end.0.saturating_add(self.settings.lsn_allocation_limit));
                let truncation = Truncation { epoch: self.epoch, above: self.durable_lsn, up_to };
                self.truncation = Some(truncation);
                self.outbox =
                    self.statuses.keys().map(|n| (*n, Request::Truncate { epoch: self.epoch, truncation })).collect();
                self.phase = Phase::Truncate;
            }
            Phase::Truncate => {
                let recovered = self.finish(answers)?;
                self.outcome = Some(Ok(recovered));
                self.phase = Phase::Done;
            }
            Phase::Done => {}
        }
        Ok(())
    }

    fn need(&self, answered: usize, what: &'static str) -> Result<(), StorageError> {
        let needed = self.settings.write_quorum;
        if answered < needed {
            return Err(StorageError::QuorumLost { what, needed, answered });
        }
        Ok(())
    }

    /// Statuses of daemons that hold our epoch.
    fn raised_statuses(
        &self,
        answers: Vec<(NodeId, Request, Result<Response, StorageError>)>,
    ) -> BTreeMap<NodeId, NodeStatus> {
        answers
            .into_iter()
            .filter_map(|(node, _, answer)| match answer {
                Ok(Response::Status(status)) if status.epoch == self.epoch => Some((node, status)),
                _ => None,
            })
            .collect()
    }

    /// Per group with records anywhere: its most complete segment among a read quorum.
    fn best_segments(&self) -> Result<BTreeMap<ProtectionGroupId, GroupBest>, StorageError> {
        let groups: BTreeSet<ProtectionGroupId> =
            self.statuses.values().flat_map(|s| s.segments.iter().map(|p| p.protection_group)).collect();
        let mut best = BTreeMap::new();
        for group in groups {
            let responders: Vec<NodeId> =
                self.settings.placement.segments(group).into_iter().filter(|n| self.statuses.contains_key(n)).collect();
            if responders.len() < self.settings.read_quorum {
                return Err(StorageError::QuorumLost {
                    what: "read quorum",
                    needed: self.settings.read_quorum,
                    answered: responders.len(),
                });
            }
            let scl =
                |node: &NodeId| progress_of(&self.statuses[node], group).map_or(Lsn::ZERO, |p| p.segment_complete_lsn);
            let node = *responders.iter().max_by_key(|n| scl(n)).expect("a read quorum is not empty");
            best.insert(group, GroupBest { node, segment_complete_lsn: scl(&node) });
        }
        Ok(best)
    }

    fn chain_points(&self, at_or_below: Lsn) -> Vec<(NodeId, Request)> {
        self.best
            .iter()
            .map(|(group, b)| (b.node, Request::ChainPoint { protection_group: *group, at_or_below }))
            .collect()
    }

    /// The responding segments not complete to VDL, to be fed from the best one.
    fn plan_catch_ups(&mut self) {
        for (group, best) in &self.best {
            let tail = self.group_tails.get(group).copied().unwrap_or(Lsn::ZERO);
            for node in self.settings.placement.segments(*group) {
                let Some(status) = self.statuses.get(&node) else { continue };
                let progress = progress_of(status, *group);
                let (node_tail, scl) =
                    progress.map_or((Lsn::ZERO, Lsn::ZERO), |p| (p.tail_lsn, p.segment_complete_lsn));
                if node == best.node || scl >= self.durable_lsn {
                    continue;
                }
                let catch_up =
                    CatchUp { source: best.node, after: node_tail, up_to: tail, records: Vec::new(), fetched: false };
                self.catch_ups.insert((*group, node), catch_up);
            }
        }
    }

    /// The next `GetRecords` of every catch-up still fetching (their keys
    /// go to `fetching`, in the same order).
    fn fetch_requests(&mut self) -> Vec<(NodeId, Request)> {
        let mut requests = Vec::new();
        for (key, c) in self.catch_ups.iter().filter(|(_, c)| !c.fetched) {
            let after = c.records.last().map_or(c.after, |r| r.lsn);
            let request =
                Request::GetRecords { protection_group: key.0, after, up_to: c.up_to, bytes_max: REPAIR_BYTES_MAX };
            requests.push((c.source, request));
            self.fetching.push(*key);
        }
        requests
    }

    fn take_records(&mut self, key: (ProtectionGroupId, NodeId), answer: Result<Response, StorageError>) {
        let Some(catch_up) = self.catch_ups.get_mut(&key) else { return };
        match answer {
            Ok(Response::Records { records, more }) => {
                catch_up.fetched = records.is_empty() || !more;
                catch_up.records.extend(records);
            }
            // The segment stays behind; the truncation round counts it.
            Ok(_) | Err(_) => {
                self.catch_ups.remove(&key);
            }
        }
    }

    fn catch_up_appends(&mut self) -> Vec<(NodeId, Request)> {
        let epoch = self.epoch;
        let durable = self.durable_lsn;
        std::mem::take(&mut self.catch_ups)
            .into_iter()
            .map(|((group, node), c)| {
                let request = Request::Append {
                    epoch,
                    groups: vec![GroupAppend { protection_group: group, records: c.records, tail_lsn: c.up_to }],
                    complete_to: durable,
                    durable_lsn: Lsn::ZERO,
                    min_read_point: Lsn::ZERO,
                    all_groups: false,
                };
                (node, request)
            })
            .collect()
    }

    /// Counts the daemons that persisted the truncation and, per group, the
    /// segments complete to its end.
    fn finish(
        &self,
        answers: Vec<(NodeId, Request, Result<Response, StorageError>)>,
    ) -> Result<Recovered, StorageError> {
        let truncation = self.truncation.expect("the truncation is decided before it is sent");
        let progress: BTreeMap<NodeId, Vec<SegmentProgress>> = answers
            .into_iter()
            .filter_map(|(node, _, answer)| match answer {
                Ok(Response::Truncated { segments }) => Some((node, segments)),
                _ => None,
            })
            .collect();
        self.need(progress.len(), "persist the truncation")?;
        let mut segments = BTreeMap::new();
        for group in self.best.keys() {
            let scls: BTreeMap<NodeId, Lsn> = progress
                .iter()
                .map(|(node, list)| {
                    let scl = list
                        .iter()
                        .find(|p| p.protection_group == *group)
                        .map_or(Lsn::ZERO, |p| p.segment_complete_lsn);
                    (*node, scl)
                })
                .collect();
            let complete = scls.values().filter(|scl| **scl >= truncation.up_to).count();
            self.need(complete, "complete segments after catch-up")?;
            segments.insert(*group, scls);
        }
        let mut truncations: Vec<Truncation> = self.known.iter().copied().collect();
        truncations.push(truncation);
        Ok(Recovered {
            epoch: self.epoch,
            durable_lsn: self.durable_lsn,
            lsn_floor: truncation.up_to,
            truncations,
            group_tails: self.group_tails.clone(),
            segments,
        })
    }
}

fn status_of(answer: &Result<Response, StorageError>) -> Option<&NodeStatus> {
    match answer {
        Ok(Response::Status(status)) => Some(status),
        _ => None,
    }
}

fn progress_of(status: &NodeStatus, group: ProtectionGroupId) -> Option<&SegmentProgress> {
    status.segments.iter().find(|p| p.protection_group == group)
}

fn chain_point(answer: Result<Response, StorageError>) -> Result<(Lsn, Lsn), StorageError> {
    match answer? {
        Response::ChainPoint { commit_lsn, record_lsn } => Ok((commit_lsn, record_lsn)),
        other => Err(unexpected(other)),
    }
}
