//! The volume writer: recovery at open, then quorum commits.
//!
//! Open (DESIGN.md invariant 6): read every daemon's status, raise the epoch
//! to one above the highest seen on a write quorum, spread every known
//! truncation range, find per protection group the most complete segment of
//! a read quorum (its SCL bounds what any acknowledged commit can need), take
//! VCL as the lowest of those and VDL as the last commit at or below it,
//! bring lagging segments up to VDL from the most complete one, and persist
//! the truncation of `(VDL, VDL + LAL]` (further if needed) with the new
//! epoch. New LSNs start above the truncated range.
//!
//! Commit: bodies get consecutive LSNs (the last one is the commit), back
//! links per group and the epoch; one sender task per daemon ships them in
//! order (`Append`, boxcarred: while one append is in flight the next
//! records queue) and reports SCLs to the `QuorumTracker`; the commit returns
//! once VDL passes it. Records stay in memory until every segment has them
//! (bounded), so a returning daemon is caught up by resending; one that
//! fell behind further is repaired from a peer segment.

use crate::client::{BULK_REQUEST_TIMEOUT, REQUEST_TIMEOUT, StorageClient, StorageError, placement, unexpected};
use crate::ids::{Epoch, Lsn, NodeId, PageId, ProtectionGroupId, VolumeLayout};
use crate::page::Page;
use crate::proto::{GroupAppend, NodeStatus, Request, Response, SegmentProgress, Truncation};
use crate::quorum::QuorumTracker;
use crate::redo::{RedoBody, RedoRecord};
use borealis_config::{ClusterConfig, StorageNode};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Records per group in one append: bounds a message well under the limit.
pub const APPEND_RECORDS_MAX: usize = 4096;
/// Records kept per group for resending to lagging segments; beyond it,
/// records every write quorum has are dropped and laggards are repaired
/// from peers.
pub const RETAINED_RECORDS_MAX: usize = 200_000;
/// Bytes of records asked for per `GetRecords` during repair.
pub const REPAIR_BYTES_MAX: u32 = 16 * 1024 * 1024;
/// First and last wait before retrying a failed daemon.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// An idle sender checks its work this often even without a wake-up.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// What a writer needs to know about the volume.
#[derive(Debug, Clone)]
pub struct VolumeConfig {
    /// Every storage daemon.
    pub nodes: Vec<StorageNode>,
    /// The cluster's TLS material.
    pub tls_dir: PathBuf,
    /// Page to protection group mapping.
    pub layout: VolumeLayout,
    /// Segments (of 6) that must have a record before it counts as durable.
    pub write_quorum: usize,
    /// Segments (of 6) read at recovery.
    pub read_quorum: usize,
    /// How long a commit waits for its quorum.
    pub commit_timeout: Duration,
    /// LAL: how far LSN assignment may run ahead of the durable LSN.
    pub lsn_allocation_limit: u64,
}

impl VolumeConfig {
    /// The volume of a validated cluster.
    pub fn from_cluster(config: &ClusterConfig) -> VolumeConfig {
        VolumeConfig {
            nodes: config.storage.clone(),
            tls_dir: config.tls_dir(),
            layout: VolumeLayout::from_group_size_bytes(config.protection_group_size_bytes),
            write_quorum: config.write_quorum,
            read_quorum: config.read_quorum,
            commit_timeout: Duration::from_millis(config.commit_timeout_ms),
            lsn_allocation_limit: config.lsn_allocation_limit,
        }
    }
}

/// LSNs of a commit: its records are `first..=commit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitLsns {
    pub first: Lsn,
    /// The commit point: a read point once acknowledged.
    pub commit: Lsn,
}

#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    durable_lsn: Lsn,
    fenced: bool,
    closed: bool,
}

/// The single writer of a volume. Clones share it; dropping the last clone
/// stops its sender tasks.
#[derive(Debug, Clone)]
pub struct VolumeWriter {
    shared: Arc<Shared>,
    _close: Arc<CloseOnDrop>,
}

#[derive(Debug)]
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[derive(Debug)]
struct Shared {
    client: Arc<StorageClient>,
    config: VolumeConfig,
    epoch: Epoch,
    truncations: Vec<Truncation>,
    state: Mutex<WriterState>,
    progress: watch::Sender<Progress>,
    wake: BTreeMap<NodeId, Arc<Notify>>,
}

#[derive(Debug, Default)]
struct NodeCursor {
    /// Per group: the last record the segment has or was sent.
    sent: BTreeMap<ProtectionGroupId, Lsn>,
    told_complete: Lsn,
    told_durable: Lsn,
}

#[derive(Debug)]
struct WriterState {
    tracker: QuorumTracker,
    /// Allocation may run to `max(durable, lsn_floor) + LAL`.
    lsn_floor: Lsn,
    group_tails: BTreeMap<ProtectionGroupId, Lsn>,
    retained: BTreeMap<ProtectionGroupId, BTreeMap<Lsn, RedoRecord>>,
    cursors: BTreeMap<NodeId, NodeCursor>,
    min_read_point: Option<Lsn>,
}

/// What a sender does next.
enum Outgoing {
    Append(Request),
    Repair { protection_group: ProtectionGroupId, after: Lsn, up_to: Lsn, source: NodeId },
}

impl VolumeWriter {
    /// Recovers the volume and becomes its writer (raising the epoch fences
    /// any previous writer).
    pub async fn open(config: VolumeConfig) -> Result<VolumeWriter, StorageError> {
        let client = Arc::new(StorageClient::new(config.nodes.clone(), &config.tls_dir)?);
        let recovered = crate::recovery::recover(&client, &config).await?;
        tracing::info!(epoch = %recovered.epoch, durable_lsn = %recovered.durable_lsn, "volume recovered");
        Ok(VolumeWriter::start(client, config, recovered))
    }

    fn start(client: Arc<StorageClient>, config: VolumeConfig, recovered: crate::recovery::Recovered) -> VolumeWriter {
        let mut state = WriterState {
            tracker: QuorumTracker::new(config.write_quorum, recovered.durable_lsn, recovered.lsn_floor),
            lsn_floor: recovered.lsn_floor,
            group_tails: recovered.group_tails,
            retained: BTreeMap::new(),
            cursors: config.nodes.iter().map(|n| (NodeId(n.index), NodeCursor::default())).collect(),
            min_read_point: None,
        };
        for (group, segments) in &recovered.segments {
            state.add_group(&config.nodes, *group);
            for (node, scl) in segments {
                state.tracker.add_segment(*group, *node, *scl);
            }
        }
        let wake = config.nodes.iter().map(|n| (NodeId(n.index), Arc::new(Notify::new()))).collect();
        let progress = Progress { durable_lsn: recovered.durable_lsn, ..Progress::default() };
        let shared = Arc::new(Shared {
            client,
            epoch: recovered.epoch,
            truncations: recovered.truncations,
            state: Mutex::new(state),
            progress: watch::Sender::new(progress),
            wake,
            config,
        });
        for node in shared.wake.keys() {
            tokio::spawn(sender_loop(Arc::clone(&shared), *node));
        }
        VolumeWriter { _close: Arc::new(CloseOnDrop(Arc::clone(&shared))), shared }
    }

    /// The writer's epoch.
    pub fn epoch(&self) -> Epoch {
        self.shared.epoch
    }

    /// VDL: every commit at or below it is acknowledged; a read point.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.progress.borrow().durable_lsn
    }

    /// Whether a newer writer has fenced this one.
    pub fn is_fenced(&self) -> bool {
        self.shared.progress.borrow().fenced
    }

    /// The lowest read point any open statement (of the writer and of the
    /// readers) holds; storage may drop history below it.
    pub fn set_min_read_point(&self, min_read_point: Lsn) {
        self.shared.lock().min_read_point = Some(min_read_point);
    }

    /// Makes `bodies` durable as one transaction. Returns once every record
    /// up to the commit is on a write quorum of its group (VDL >= commit).
    /// Concurrent calls are acknowledged in LSN order. On `QuorumTimeout`
    /// the outcome is unknown. Cancel-safe only in that a dropped call
    /// leaves its records in flight (they may still become durable).
    pub async fn commit(&self, bodies: Vec<RedoBody>) -> Result<CommitLsns, StorageError> {
        if bodies.is_empty() {
            return Err(StorageError::Invalid("a commit needs at least one redo record".into()));
        }
        let timeout = self.shared.config.commit_timeout;
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut progress = self.shared.progress.subscribe();
        let lsns = loop {
            if let Some(lsns) = self.try_assign(&bodies)? {
                break lsns;
            }
            // Back-pressure: wait for VDL to move (LAL reached).
            match tokio::time::timeout_at(deadline, progress.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(StorageError::Cancelled),
                Err(_) => return Err(StorageError::QuorumTimeout { timeout_ms }),
            }
        };
        for wake in self.shared.wake.values() {
            wake.notify_one();
        }
        let reached = progress.wait_for(|p| p.fenced || p.closed || p.durable_lsn >= lsns.commit);
        let outcome = match tokio::time::timeout_at(deadline, reached).await {
            Ok(Ok(p)) => *p,
            Ok(Err(_)) => return Err(StorageError::Cancelled),
            Err(_) => return Err(StorageError::QuorumTimeout { timeout_ms }),
        };
        if outcome.durable_lsn >= lsns.commit {
            Ok(lsns)
        } else if outcome.fenced {
            Err(StorageError::Fenced)
        } else {
            Err(StorageError::Cancelled)
        }
    }

    /// Waits until every LSN assigned so far is durable and returns the
    /// durable LSN (a commit point at or above all of them), failing with
    /// `QuorumTimeout` after the commit timeout.
    ///
    /// After a commit fails with `QuorumTimeout` its records stay in flight
    /// and become durable once a write quorum returns (before any later
    /// commit, which waits behind them). A caller that built state on the
    /// failed commit's absence (cached pages, free slots) must call this
    /// before its next commit and then reread at the returned LSN, or its
    /// next redo may conflict with the in-doubt commit's and stop every
    /// segment's applicator.
    pub async fn settle(&self) -> Result<Lsn, StorageError> {
        let target = self.shared.lock().tracker.allocated_lsn();
        let timeout = self.shared.config.commit_timeout;
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let mut progress = self.shared.progress.subscribe();
        let reached = progress.wait_for(|p| p.fenced || p.closed || p.durable_lsn >= target);
        let outcome = match tokio::time::timeout(timeout, reached).await {
            Ok(Ok(p)) => *p,
            Ok(Err(_)) => return Err(StorageError::Cancelled),
            Err(_) => return Err(StorageError::QuorumTimeout { timeout_ms }),
        };
        match (outcome.durable_lsn >= target, outcome.fenced) {
            (true, _) => Ok(outcome.durable_lsn),
            (false, true) => Err(StorageError::Fenced),
            (false, false) => Err(StorageError::Cancelled),
        }
    }

    /// Assigns LSNs if LAL allows; None means wait.
    fn try_assign(&self, bodies: &[RedoBody]) -> Result<Option<CommitLsns>, StorageError> {
        let progress = *self.shared.progress.borrow();
        if progress.fenced {
            return Err(StorageError::Fenced);
        }
        if progress.closed {
            return Err(StorageError::Cancelled);
        }
        let mut state = self.shared.lock();
        let count = bodies.len() as u64;
        let limit =
            state.tracker.durable_lsn().max(state.lsn_floor).0.saturating_add(self.shared.config.lsn_allocation_limit);
        if state.tracker.allocated_lsn().0.saturating_add(count) > limit {
            return Ok(None);
        }
        let first = state.tracker.allocated_lsn().next();
        let last_index = bodies.len() - 1;
        for (index, body) in bodies.iter().enumerate() {
            let lsn = state.tracker.allocated_lsn().next();
            let group = self.shared.config.layout.group_of(body.page());
            if !state.tracker.has_group(group) {
                state.add_group(&self.shared.config.nodes, group);
            }
            let prev_lsn = state.group_tails.get(&group).copied().unwrap_or(Lsn::ZERO);
            let record = RedoRecord {
                lsn,
                prev_lsn,
                protection_group: group,
                epoch: self.shared.epoch,
                is_commit: index == last_index,
                body: body.clone(),
            };
            state.tracker.assign(lsn, record.is_commit);
            state.group_tails.insert(group, lsn);
            state.retained.entry(group).or_default().insert(lsn, record);
        }
        Ok(Some(CommitLsns { first, commit: state.tracker.allocated_lsn() }))
    }

    /// The page as of `read_point` (at most the durable LSN) from a segment
    /// known to be complete to it.
    pub async fn get_page(&self, page: PageId, read_point: Lsn) -> Result<Page, StorageError> {
        let durable = self.durable_lsn();
        if read_point > durable {
            // Storage applies records up to a read point, so it must be durable.
            return Err(StorageError::Invalid(format!("read point {read_point} is above the durable LSN {durable}")));
        }
        let group = self.shared.config.layout.group_of(page);
        let candidates = {
            let state = self.shared.lock();
            if !state.tracker.has_group(group) {
                // No record ever touched this group: every page is empty.
                return Ok(sealed_empty_page());
            }
            covering_first(placement(&self.shared.config.nodes, group), read_point, |node| {
                state.tracker.segment_complete_lsn(group, node)
            })
        };
        self.shared.client.get_page(&candidates, page, read_point).await
    }

    /// Points the writer at a daemon's new address (it came back elsewhere).
    pub fn set_node_address(&self, node: NodeId, addr: std::net::SocketAddr) {
        self.shared.client.set_address(node, addr);
        if let Some(wake) = self.shared.wake.get(&node) {
            wake.notify_one();
        }
    }

    /// Stops the sender tasks; later commits fail with `Cancelled`.
    pub fn close(&self) {
        self.shared.close();
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

fn sealed_empty_page() -> Page {
    let mut page = Page::empty();
    page.seal();
    page
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, WriterState> {
        self.state.lock().expect("writer state poisoned: a sender panicked")
    }

    fn close(&self) {
        self.progress.send_modify(|p| p.closed = true);
        for wake in self.wake.values() {
            wake.notify_one();
        }
    }

    fn fence(&self, node: NodeId) {
        if !self.progress.borrow().fenced {
            tracing::warn!(%node, epoch = %self.epoch, "writer fenced by a newer epoch");
        }
        self.progress.send_modify(|p| p.fenced = true);
    }

    fn stopping(&self) -> bool {
        let p = *self.progress.borrow();
        p.fenced || p.closed
    }

    /// Takes segment progress reported by `node`; publishes a new VDL.
    fn acknowledged(&self, node: NodeId, segments: &[SegmentProgress]) {
        let durable = {
            let mut state = self.lock();
            let mut durable = None;
            for segment in segments {
                if let Some(cursor) = state.cursors.get_mut(&node)
                    && let Some(sent) = cursor.sent.get_mut(&segment.protection_group)
                {
                    *sent = segment.tail_lsn;
                }
                if let Some(d) =
                    state.tracker.acknowledged(node, segment.protection_group, segment.segment_complete_lsn)
                {
                    durable = Some(d);
                }
                state.trim_retained(segment.protection_group);
            }
            durable
        };
        if let Some(durable_lsn) = durable {
            self.progress.send_modify(|p| p.durable_lsn = p.durable_lsn.max(durable_lsn));
            for wake in self.wake.values() {
                wake.notify_one();
            }
        }
    }
}

impl WriterState {
    fn add_group(&mut self, nodes: &[StorageNode], group: ProtectionGroupId) {
        for node in placement(nodes, group) {
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

    /// Forgets what was in flight to `node` after a failure.
    fn rewind(&mut self, node: NodeId) {
        if let Some(cursor) = self.cursors.get_mut(&node) {
            cursor.told_complete = Lsn::ZERO;
            cursor.told_durable = Lsn::ZERO;
        }
    }

    /// The next append for `node`, or None when it has everything.
    fn next_outgoing(&mut self, node: NodeId, epoch: Epoch) -> Option<Outgoing> {
        let allocated = self.tracker.allocated_lsn();
        let durable = self.tracker.durable_lsn();
        let min_read_point = self.min_read_point.unwrap_or(durable).min(durable);
        let cursor = self.cursors.get_mut(&node)?;
        let mut groups = Vec::with_capacity(cursor.sent.len());
        let mut any_records = false;
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
                records.extend(pending.take(APPEND_RECORDS_MAX).cloned());
                if let Some(last) = records.last() {
                    *sent = last.lsn;
                }
            }
            any_records |= !records.is_empty();
            groups.push(GroupAppend { protection_group: *group, records, tail_lsn });
        }
        if !any_records && cursor.told_complete >= allocated && cursor.told_durable >= durable {
            return None;
        }
        cursor.told_complete = allocated;
        cursor.told_durable = durable;
        Some(Outgoing::Append(Request::Append {
            epoch,
            groups,
            complete_to: allocated,
            durable_lsn: durable,
            min_read_point,
            all_groups: true,
        }))
    }
}

/// Ships records to one daemon, in order, one append in flight at a time.
async fn sender_loop(shared: Arc<Shared>, node: NodeId) {
    let wake = Arc::clone(&shared.wake[&node]);
    let mut backoff = BACKOFF_MIN;
    let mut needs_hello = true;
    while !shared.stopping() {
        let result = if needs_hello { hello(&shared, node).await } else { send_next(&shared, node, &wake).await };
        match result {
            Ok(()) => {
                needs_hello = false;
                backoff = BACKOFF_MIN;
            }
            Err(e) if e.is_fenced() => {
                shared.fence(node);
                return;
            }
            Err(e) => {
                tracing::debug!(%node, "storage daemon unavailable: {e}");
                shared.lock().rewind(node);
                needs_hello = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// After (re)connecting: makes sure the daemon has our epoch and every
/// truncation, and learns how far each of its segments is.
async fn hello(shared: &Shared, node: NodeId) -> Result<(), StorageError> {
    let client = &shared.client;
    match client.request(node, &Request::RaiseEpoch { epoch: shared.epoch }, REQUEST_TIMEOUT).await? {
        Response::EpochRaised { epoch } if epoch == shared.epoch => {}
        Response::EpochRaised { epoch } => return Err(StorageError::StaleEpoch { current: epoch }),
        other => return Err(unexpected(other)),
    }
    let mut segments: Vec<SegmentProgress> = Vec::new();
    for truncation in &shared.truncations {
        let request = Request::Truncate { epoch: shared.epoch, truncation: *truncation };
        match client.request(node, &request, REQUEST_TIMEOUT).await? {
            Response::Truncated { segments: after } => segments = after,
            other => return Err(unexpected(other)),
        }
    }
    if shared.truncations.is_empty() {
        segments = client.status(node).await?.segments;
    }
    {
        let mut state = shared.lock();
        if let Some(cursor) = state.cursors.get_mut(&node) {
            for sent in cursor.sent.values_mut() {
                *sent = Lsn::ZERO;
            }
        }
    }
    shared.acknowledged(node, &segments);
    Ok(())
}

/// Sends the next append (or repair) to `node`, or waits for work.
async fn send_next(shared: &Shared, node: NodeId, wake: &Notify) -> Result<(), StorageError> {
    let outgoing = shared.lock().next_outgoing(node, shared.epoch);
    match outgoing {
        None => {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(IDLE_CHECK) => {}
            }
            Ok(())
        }
        Some(Outgoing::Append(request)) => match shared.client.request(node, &request, BULK_REQUEST_TIMEOUT).await? {
            Response::Appended { segments } => {
                shared.acknowledged(node, &segments);
                Ok(())
            }
            other => Err(unexpected(other)),
        },
        Some(Outgoing::Repair { protection_group, after, up_to, source }) => {
            repair(shared, node, protection_group, (after, up_to), source).await
        }
    }
}

/// Copies records `(after, up_to]` of a group from `source` to `node`.
async fn repair(
    shared: &Shared,
    node: NodeId,
    protection_group: ProtectionGroupId,
    (after, up_to): (Lsn, Lsn),
    source: NodeId,
) -> Result<(), StorageError> {
    tracing::info!(%node, %source, %protection_group, %after, %up_to, "repairing a lagging segment");
    let records = fetch_records(&shared.client, source, protection_group, after, up_to).await?;
    let tail_lsn = records.last().map_or(after, |r| r.lsn);
    let request = Request::Append {
        epoch: shared.epoch,
        groups: vec![GroupAppend { protection_group, records, tail_lsn }],
        complete_to: tail_lsn,
        durable_lsn: Lsn::ZERO,
        min_read_point: Lsn::ZERO,
        all_groups: false,
    };
    match shared.client.request(node, &request, BULK_REQUEST_TIMEOUT).await? {
        Response::Appended { segments } => {
            shared.acknowledged(node, &segments);
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}

/// Every chained record of a group in `(after, up_to]` held by `source`.
pub(crate) async fn fetch_records(
    client: &StorageClient,
    source: NodeId,
    protection_group: ProtectionGroupId,
    mut after: Lsn,
    up_to: Lsn,
) -> Result<Vec<RedoRecord>, StorageError> {
    let mut out: Vec<RedoRecord> = Vec::new();
    loop {
        let request = Request::GetRecords { protection_group, after, up_to, bytes_max: REPAIR_BYTES_MAX };
        match client.request(source, &request, BULK_REQUEST_TIMEOUT).await? {
            Response::Records { records, more } => {
                let Some(last) = records.last().map(|r| r.lsn) else { return Ok(out) };
                out.extend(records);
                if !more {
                    return Ok(out);
                }
                after = last;
            }
            other => return Err(unexpected(other)),
        }
    }
}

/// Statuses of `nodes` that answered.
pub(crate) async fn statuses_of(client: &StorageClient, nodes: &BTreeSet<NodeId>) -> BTreeMap<NodeId, NodeStatus> {
    let answers = futures::future::join_all(nodes.iter().map(|node| client.status(*node))).await;
    nodes.iter().copied().zip(answers).filter_map(|(node, answer)| answer.ok().map(|s| (node, s))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::PageKind;

    const GROUP: ProtectionGroupId = ProtectionGroupId(0);

    fn state_with_records(lsns: std::ops::RangeInclusive<u64>) -> WriterState {
        let nodes: Vec<StorageNode> = (0..6)
            .map(|index| StorageNode {
                index,
                name: format!("s{index}"),
                az: format!("az{}", index / 2),
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + index as u16)),
            })
            .collect();
        let mut state = WriterState {
            tracker: QuorumTracker::new(4, Lsn::ZERO, Lsn::ZERO),
            lsn_floor: Lsn::ZERO,
            group_tails: BTreeMap::new(),
            retained: BTreeMap::new(),
            cursors: BTreeMap::new(),
            min_read_point: None,
        };
        state.add_group(&nodes, GROUP);
        for lsn in 1..=*lsns.end() {
            let body = RedoBody::InitPage { page: PageId(1), kind: PageKind::Heap };
            let record = RedoRecord {
                lsn: Lsn(lsn),
                prev_lsn: Lsn(lsn - 1),
                protection_group: GROUP,
                epoch: Epoch(1),
                is_commit: true,
                body,
            };
            state.tracker.assign(Lsn(lsn), true);
            state.group_tails.insert(GROUP, Lsn(lsn));
            if lsns.contains(&lsn) {
                state.retained.entry(GROUP).or_default().insert(Lsn(lsn), record);
            }
        }
        state
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
        let mut state = state_with_records(1..=5);
        let Some(Outgoing::Append(Request::Append { groups, complete_to, .. })) =
            state.next_outgoing(NodeId(0), Epoch(1))
        else {
            panic!("expected an append");
        };
        assert_eq!(complete_to, Lsn(5));
        assert_eq!(groups[0].records.iter().map(|r| r.lsn.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert!(state.next_outgoing(NodeId(0), Epoch(1)).is_none(), "nothing new to send");
    }

    #[test]
    fn records_no_longer_kept_are_repaired_from_a_peer() {
        let mut state = state_with_records(4..=5);
        state.tracker.acknowledged(NodeId(3), GROUP, Lsn(5));
        match state.next_outgoing(NodeId(0), Epoch(1)) {
            Some(Outgoing::Repair { after, up_to, source, .. }) => {
                assert_eq!((after, up_to, source), (Lsn(0), Lsn(3), NodeId(3)));
            }
            _ => panic!("expected a repair"),
        }
    }
}
