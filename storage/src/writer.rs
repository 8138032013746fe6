//! The volume writer over QUIC: recovery at open, then quorum commits. The
//! decisions are the sans-IO `writer_core::WriterCore` and
//! `recovery_core::RecoveryCore`; this shell runs one sender task per daemon
//! and publishes the durable LSN to waiting commits.
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

use crate::client::{
    BULK_REQUEST_TIMEOUT, REQUEST_TIMEOUT, StorageClient, StorageError, page_requests, placement_of, unexpected,
};
use crate::ids::{Epoch, Lsn, NodeId, PageId, ProtectionGroupId, VolumeLayout};
use crate::page::Page;
use crate::proto::{Request, Response};
use crate::redo::{RedoBody, RedoRecord};
use crate::writer_core::{Outgoing, WriterCore, WriterSettings};
use borealis_config::{ClusterConfig, StorageNode};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};

pub use crate::recovery_core::REPAIR_BYTES_MAX;
pub use crate::writer_core::{APPEND_RECORDS_MAX, CommitLsns, RETAINED_RECORDS_MAX};

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

#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    durable_lsn: Lsn,
    /// Records daemons have acknowledged so far: moves while a large
    /// transaction (whose only commit point is its last record) ships.
    shipped: u64,
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
    state: Mutex<WriterCore>,
    progress: watch::Sender<Progress>,
    wake: BTreeMap<NodeId, Arc<Notify>>,
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

    fn start(
        client: Arc<StorageClient>,
        config: VolumeConfig,
        recovered: crate::recovery_core::Recovered,
    ) -> VolumeWriter {
        let settings = WriterSettings {
            placement: placement_of(&config.nodes),
            layout: config.layout,
            write_quorum: config.write_quorum,
            lsn_allocation_limit: config.lsn_allocation_limit,
        };
        let epoch = recovered.epoch;
        let progress = Progress { durable_lsn: recovered.durable_lsn, ..Progress::default() };
        let core = WriterCore::new(settings, recovered);
        let wake = core.nodes().into_iter().map(|n| (n, Arc::new(Notify::new()))).collect();
        let shared = Arc::new(Shared {
            client,
            epoch,
            state: Mutex::new(core),
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
        self.shared.lock().set_min_read_point(min_read_point);
    }

    /// Makes `bodies` durable as one transaction. Returns once every record
    /// up to the commit is on a write quorum of its group (VDL >= commit).
    /// Concurrent calls are acknowledged in LSN order. On `QuorumTimeout`
    /// (LSN allocation blocked, or no daemon acknowledging records, for
    /// the commit timeout) the outcome is unknown. Cancel-safe only in that a
    /// dropped call leaves its records in flight (they may still become durable).
    pub async fn commit(&self, bodies: Vec<RedoBody>) -> Result<CommitLsns, StorageError> {
        let lsns = self.submit(&bodies).await?;
        self.wait_durable(lsns.commit).await?;
        Ok(lsns)
    }

    /// The first half of [`VolumeWriter::commit`]: assigns the transaction's
    /// LSNs (waiting while the LSN allocation limit is reached) and hands its
    /// records to the senders. Transactions submitted later get higher LSNs
    /// and are never durable before this one.
    pub async fn submit(&self, bodies: &[RedoBody]) -> Result<CommitLsns, StorageError> {
        if bodies.is_empty() {
            return Err(StorageError::Invalid("a commit needs at least one redo record".into()));
        }
        let timeout = self.shared.config.commit_timeout;
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut progress = self.shared.progress.subscribe();
        let lsns = loop {
            if let Some(lsns) = self.try_assign(bodies)? {
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
        Ok(lsns)
    }

    /// The second half of [`VolumeWriter::commit`]: waits until the submitted
    /// transaction whose commit LSN is `commit` is durable (VDL >= `commit`).
    pub async fn wait_durable(&self, commit: Lsn) -> Result<(), StorageError> {
        let timeout = self.shared.config.commit_timeout;
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let mut progress = self.shared.progress.subscribe();
        // The timeout measures a lack of progress, not the commit's total
        // time: a large transaction takes as long as its records take to
        // ship, and fails only if daemons stop acknowledging records.
        let mut shipped = progress.borrow().shipped;
        let mut deadline = tokio::time::Instant::now() + timeout;
        let outcome = loop {
            let current = *progress.borrow_and_update();
            if current.fenced || current.closed || current.durable_lsn >= commit {
                break current;
            }
            if current.shipped > shipped {
                shipped = current.shipped;
                deadline = tokio::time::Instant::now() + timeout;
            }
            match tokio::time::timeout_at(deadline, progress.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(StorageError::Cancelled),
                Err(_) => return Err(StorageError::QuorumTimeout { timeout_ms }),
            }
        };
        if outcome.durable_lsn >= commit {
            Ok(())
        } else if outcome.fenced {
            Err(StorageError::Fenced)
        } else {
            Err(StorageError::Cancelled)
        }
    }

    /// Waits until every LSN assigned so far is durable and returns the
    /// durable LSN (a commit point at or above all of them), failing with
    /// `QuorumTimeout` when no daemon acknowledges records for the commit timeout.
    ///
    /// After a commit fails with `QuorumTimeout` its records stay in flight
    /// and become durable once a write quorum returns (before any later
    /// commit, which waits behind them). A caller that built state on the
    /// failed commit's absence (cached pages, free slots) must call this
    /// before its next commit and then reread at the returned LSN, or its
    /// next redo may conflict with the in-doubt commit's and stop every
    /// segment's applicator.
    pub async fn settle(&self) -> Result<Lsn, StorageError> {
        let target = self.shared.lock().allocated_lsn();
        self.wait_durable(target).await?;
        Ok(self.durable_lsn())
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
        Ok(self.shared.lock().assign(bodies))
    }

    /// Pages as of `read_point` (at most the durable LSN) from segments
    /// known to be complete to it, in the order asked; one request per
    /// protection group they fall in, sent at once.
    pub async fn get_pages(&self, pages: &[PageId], read_point: Lsn) -> Result<Vec<Page>, StorageError> {
        let durable = self.durable_lsn();
        if read_point > durable {
            // Storage applies records up to a read point, so it must be durable.
            return Err(StorageError::Invalid(format!("read point {read_point} is above the durable LSN {durable}")));
        }
        let layout = self.shared.lock().layout();
        let requests = page_requests(layout, pages).into_iter().map(|(_, run)| {
            // None: no record ever touched the group, every page there is empty.
            let candidates = self.shared.lock().read_candidates(pages[run.start], read_point);
            async move {
                match candidates {
                    None => Ok(vec![sealed_empty_page(); run.len()]),
                    Some(candidates) => self.shared.client.get_pages(&candidates, &pages[run], read_point).await,
                }
            }
        });
        let answers = futures::future::try_join_all(requests).await?;
        Ok(answers.into_iter().flatten().collect())
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

fn sealed_empty_page() -> Page {
    let mut page = Page::empty();
    page.seal();
    page
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, WriterCore> {
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

    /// Counts records a daemon acknowledged.
    fn shipped(&self, records: usize) {
        if records > 0 {
            self.progress.send_modify(|p| p.shipped += records as u64);
        }
    }

    /// Publishes a new VDL (from the core) and wakes the senders.
    fn publish(&self, durable: Option<Lsn>) {
        if let Some(durable_lsn) = durable {
            self.progress.send_modify(|p| p.durable_lsn = p.durable_lsn.max(durable_lsn));
            for wake in self.wake.values() {
                wake.notify_one();
            }
        }
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
    let requests = shared.lock().hello_requests();
    let mut answers = Vec::with_capacity(requests.len());
    for request in &requests {
        answers.push(shared.client.request(node, request, REQUEST_TIMEOUT).await?);
    }
    let durable = shared.lock().hello_answered(node, answers)?;
    shared.publish(durable);
    Ok(())
}

/// Sends the next append (or repair) to `node`, or waits for work.
async fn send_next(shared: &Shared, node: NodeId, wake: &Notify) -> Result<(), StorageError> {
    let outgoing = shared.lock().next_outgoing(node);
    match outgoing {
        None => {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(IDLE_CHECK) => {}
            }
            Ok(())
        }
        Some(Outgoing::Append(request)) => {
            let records = record_count(&request);
            let answer = shared.client.request(node, &request, BULK_REQUEST_TIMEOUT).await?;
            let durable = shared.lock().appended(node, answer)?;
            shared.shipped(records);
            shared.publish(durable);
            Ok(())
        }
        Some(Outgoing::Repair { protection_group, after, up_to, source }) => {
            repair(shared, node, protection_group, (after, up_to), source).await
        }
    }
}

fn record_count(request: &Request) -> usize {
    match request {
        Request::Append { groups, .. } => groups.iter().map(|g| g.records.len()).sum(),
        _ => 0,
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
    let request = shared.lock().repair_append(protection_group, records, after);
    let answer = shared.client.request(node, &request, BULK_REQUEST_TIMEOUT).await?;
    let durable = shared.lock().appended(node, answer)?;
    shared.shipped(record_count(&request));
    shared.publish(durable);
    Ok(())
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
