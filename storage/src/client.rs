//! The storage client compute uses: one QUIC endpoint with a lazily
//! (re)connected connection per storage daemon, request/response calls with
//! timeouts, page reads from one complete replica, and the volume reader.
//! The volume writer (quorum writes and recovery) is in `writer`.
//!
//! A page read names its read point and goes to one segment of the page's
//! protection group, the fastest by its recent latency (`hedge`); if that one
//! is slow a second (hedged) read goes to the next and the first answer wins;
//! on `NotComplete`, `TooOld` or a failure the next segment is tried. Every
//! page received is checked with `Page::verify`.

use crate::hedge::ReadLatencies;
use crate::ids::{Lsn, NodeId, PageId, ProtectionGroupId, VolumeLayout};
use crate::page::Page;
use crate::placement::Placement;
use crate::proto::{self, MESSAGE_BYTES_MAX, NodeStatus, PAGES_PER_REQUEST_MAX, PageDigest, Request, Response};
use crate::tls::{self, TlsError};
use borealis_config::StorageNode;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use crate::error::StorageError;
pub(crate) use crate::error::unexpected;
pub use crate::writer::{CommitLsns, VolumeConfig, VolumeWriter};

/// Time allowed for one ordinary request (connect included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for a request that moves many records (catch-up).
pub const BULK_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Retries of a page read that no replica can serve yet; with the doubling
/// wait from `PAGE_RETRY_WAIT_MIN` they span about 1.3 s.
const PAGE_RETRIES: u32 = 6;
const PAGE_RETRY_WAIT_MIN: Duration = Duration::from_millis(20);
/// The name every daemon's certificate carries.
const SERVER_NAME: &str = "localhost";

impl From<TlsError> for StorageError {
    fn from(e: TlsError) -> Self {
        StorageError::Tls(e.to_string())
    }
}

/// Segments of `protection_group`: all daemons when there are exactly six,
/// otherwise two per zone chosen deterministically from the group id.
pub fn placement(nodes: &[StorageNode], protection_group: ProtectionGroupId) -> Vec<NodeId> {
    placement_of(nodes).segments(protection_group)
}

/// The sans-IO placement of the daemons of a cluster file.
pub fn placement_of(nodes: &[StorageNode]) -> Placement {
    Placement::new(nodes.iter().map(|n| (NodeId(n.index), n.az.clone())))
}

const _: () = assert!(crate::placement::SEGMENTS_PER_GROUP == borealis_config::SEGMENTS_PER_GROUP);

/// One endpoint and a connection per daemon.
pub struct StorageClient {
    endpoint: quinn::Endpoint,
    nodes: Vec<StorageNode>,
    addresses: Mutex<HashMap<NodeId, SocketAddr>>,
    connections: Mutex<HashMap<NodeId, quinn::Connection>>,
    /// Page-read latency per daemon and recent failures: the order of
    /// replicas for reads and when to hedge.
    latencies: Mutex<ReadLatencies>,
}

impl std::fmt::Debug for StorageClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageClient").field("nodes", &self.nodes.len()).finish()
    }
}

impl StorageClient {
    /// A client for `nodes`, using the cluster TLS material in `tls_dir`.
    /// Must be called inside a tokio runtime.
    pub fn new(nodes: Vec<StorageNode>, tls_dir: &Path) -> Result<StorageClient, StorageError> {
        let config = tls::quic_client_config(tls_dir)?;
        let ipv6 = nodes.first().is_some_and(|n| n.addr.is_ipv6());
        let any: IpAddr = if ipv6 { Ipv6Addr::UNSPECIFIED.into() } else { Ipv4Addr::UNSPECIFIED.into() };
        let mut endpoint =
            quinn::Endpoint::client(SocketAddr::new(any, 0)).map_err(|e| StorageError::Io(e.to_string()))?;
        endpoint.set_default_client_config(config);
        let addresses = nodes.iter().map(|n| (NodeId(n.index), n.addr)).collect();
        Ok(StorageClient {
            endpoint,
            nodes,
            addresses: Mutex::new(addresses),
            connections: Mutex::new(HashMap::new()),
            latencies: Mutex::new(ReadLatencies::new()),
        })
    }

    /// The daemons this client knows.
    pub fn nodes(&self) -> &[StorageNode] {
        &self.nodes
    }

    /// Replaces a daemon's address (it came back elsewhere).
    pub fn set_address(&self, node: NodeId, addr: SocketAddr) {
        self.addresses.lock().expect("address map poisoned").insert(node, addr);
        self.forget(node);
    }

    fn forget(&self, node: NodeId) {
        self.connections.lock().expect("connection map poisoned").remove(&node);
    }

    async fn connection(&self, node: NodeId) -> Result<quinn::Connection, StorageError> {
        let cached = self.connections.lock().expect("connection map poisoned").get(&node).cloned();
        if let Some(connection) = cached
            && connection.close_reason().is_none()
        {
            return Ok(connection);
        }
        let addr = self.addresses.lock().expect("address map poisoned").get(&node).copied();
        let addr = addr.ok_or_else(|| StorageError::Invalid(format!("unknown storage node {node}")))?;
        let connecting = self.endpoint.connect(addr, SERVER_NAME).map_err(|e| StorageError::Io(e.to_string()))?;
        let connection = connecting.await.map_err(|e| StorageError::Io(format!("connect to {node}: {e}")))?;
        self.connections.lock().expect("connection map poisoned").insert(node, connection.clone());
        Ok(connection)
    }

    /// Sends one request on its own stream and waits for the answer.
    /// Cancel-safe: dropping the future abandons only its stream.
    pub async fn request(&self, node: NodeId, request: &Request, timeout: Duration) -> Result<Response, StorageError> {
        let exchange = async {
            let connection = self.connection(node).await?;
            let (mut send, mut recv) = connection.open_bi().await.map_err(|e| StorageError::Io(e.to_string()))?;
            send.write_all(&proto::encode(request)).await.map_err(|e| StorageError::Io(e.to_string()))?;
            send.finish().map_err(|e| StorageError::Io(e.to_string()))?;
            let bytes = recv.read_to_end(MESSAGE_BYTES_MAX).await.map_err(|e| StorageError::Io(e.to_string()))?;
            proto::decode::<Response>(&bytes).map_err(|e| StorageError::Corrupt(e.to_string()))
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(StorageError::Io(format!("{node} did not answer within {} ms", timeout.as_millis()))),
        };
        if matches!(result, Err(StorageError::Io(_))) {
            self.forget(node);
            self.latencies().failed(node, Instant::now());
        }
        result
    }

    /// `Status` of one daemon.
    pub async fn status(&self, node: NodeId) -> Result<NodeStatus, StorageError> {
        match self.request(node, &Request::Status, REQUEST_TIMEOUT).await? {
            Response::Status(status) => Ok(status),
            other => Err(unexpected(other)),
        }
    }

    /// `Status` of every daemon, concurrently; failures are returned in place.
    pub async fn status_all(&self) -> Vec<(NodeId, Result<NodeStatus, StorageError>)> {
        let ids: Vec<NodeId> = self.nodes.iter().map(|n| NodeId(n.index)).collect();
        let answers = futures::future::join_all(ids.iter().map(|node| self.status(*node))).await;
        ids.into_iter().zip(answers).collect()
    }

    /// Pages of one protection group as of `read_point` from the first of
    /// `candidates` that can serve them, verified, in the order asked. When
    /// none is complete to the read point yet (the records are on their
    /// way), tries again a few times.
    pub async fn get_pages(
        &self,
        candidates: &[NodeId],
        pages: &[PageId],
        read_point: Lsn,
    ) -> Result<Vec<Page>, StorageError> {
        let mut wait = PAGE_RETRY_WAIT_MIN;
        for _ in 0..PAGE_RETRIES {
            match self.get_pages_once(candidates, pages, read_point).await {
                Err(StorageError::NotComplete { .. }) => tokio::time::sleep(wait).await,
                other => return other,
            }
            wait *= 2;
        }
        self.get_pages_once(candidates, pages, read_point).await
    }

    /// One pass over the candidates: the fastest first, a hedged second
    /// read if it is slow, and the rest one by one after refusals.
    async fn get_pages_once(
        &self,
        candidates: &[NodeId],
        pages: &[PageId],
        read_point: Lsn,
    ) -> Result<Vec<Page>, StorageError> {
        use futures::StreamExt;
        let mut best_error = StorageError::NotComplete { have: Lsn::ZERO, want: read_point };
        let ordered = self.latencies().order(candidates, Instant::now());
        let mut untried = ordered.iter().copied();
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut started: HashMap<NodeId, Instant> = HashMap::new();
        let mut hedges = 0;
        let launch = |node: NodeId| async move {
            let started = Instant::now();
            (node, self.pages_request(node, pages, read_point).await, started.elapsed())
        };
        let Some(first) = untried.next() else { return Err(best_error) };
        let mut hedge_at = tokio::time::Instant::now() + self.latencies().hedge_delay(first, Instant::now());
        started.insert(first, Instant::now());
        in_flight.push(launch(first));
        loop {
            let can_hedge = hedges < crate::hedge::HEDGED_READS_MAX && untried.len() > 0;
            let (node, result, latency) = tokio::select! {
                Some(done) = in_flight.next() => done,
                () = tokio::time::sleep_until(hedge_at), if can_hedge => {
                    if let Some(node) = untried.next() {
                        tracing::debug!(first = ?pages.first(), count = pages.len(), %read_point, hedge_to = %node, "page read is slow: hedging");
                        hedges += 1;
                        started.insert(node, Instant::now());
                        in_flight.push(launch(node));
                    }
                    continue;
                }
                else => return Err(best_error),
            };
            started.remove(&node);
            if !matches!(result, Err(StorageError::Io(_))) {
                self.latencies().answered(node, latency, Instant::now());
            }
            match result {
                Ok(images) => {
                    let now = Instant::now();
                    let mut latencies = self.latencies();
                    for (loser, at) in &started {
                        latencies.abandoned(*loser, now.saturating_duration_since(*at), now);
                    }
                    return Ok(images);
                }
                Err(error) => {
                    tracing::debug!(%node, first = ?pages.first(), count = pages.len(), %read_point, "page read refused: {error}");
                    best_error = more_telling(best_error, error);
                }
            }
            // Refused or failed: ask the next replica now, if none is asked.
            if in_flight.is_empty() {
                let Some(next) = untried.next() else { return Err(best_error) };
                hedge_at = tokio::time::Instant::now() + self.latencies().hedge_delay(next, Instant::now());
                started.insert(next, Instant::now());
                in_flight.push(launch(next));
            }
        }
    }

    /// One `GetPages` to one daemon, every image verified.
    async fn pages_request(&self, node: NodeId, pages: &[PageId], read_point: Lsn) -> Result<Vec<Page>, StorageError> {
        let request = Request::GetPages { pages: pages.to_vec(), read_point };
        match self.request(node, &request, REQUEST_TIMEOUT).await? {
            Response::Pages { images } if images.len() == pages.len() => {
                images.iter().map(|bytes| verified_page(bytes)).collect()
            }
            Response::Pages { images } => {
                Err(StorageError::Corrupt(format!("{node} answered {} pages for {} asked", images.len(), pages.len())))
            }
            Response::NotComplete { segment_complete_lsn } => {
                Err(StorageError::NotComplete { have: segment_complete_lsn, want: read_point })
            }
            Response::TooOld { oldest } => Err(StorageError::TooOld { oldest, want: read_point }),
            other => Err(unexpected(other)),
        }
    }

    fn latencies(&self) -> MutexGuard<'_, ReadLatencies> {
        self.latencies.lock().expect("latency map poisoned")
    }

    /// A CRC of every page of `protection_group` as of `lsn` on `node`, with
    /// the segment's SCL: segments of a group that are complete to `lsn`
    /// must answer the same list.
    pub async fn digest(
        &self,
        node: NodeId,
        protection_group: ProtectionGroupId,
        lsn: Lsn,
    ) -> Result<Vec<PageDigest>, StorageError> {
        match self.request(node, &Request::Digest { protection_group, lsn }, BULK_REQUEST_TIMEOUT).await? {
            Response::Digest { pages, .. } => Ok(pages),
            Response::NotComplete { segment_complete_lsn } => {
                Err(StorageError::NotComplete { have: segment_complete_lsn, want: lsn })
            }
            Response::TooOld { oldest } => Err(StorageError::TooOld { oldest, want: lsn }),
            other => Err(unexpected(other)),
        }
    }

    /// Closes every connection.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"client closing");
    }
}

/// Splits `pages` into runs (in their order) that one `GetPages` each can
/// ask for: same protection group, at most [`PAGES_PER_REQUEST_MAX`].
pub(crate) fn page_requests(layout: VolumeLayout, pages: &[PageId]) -> Vec<(ProtectionGroupId, Range<usize>)> {
    let mut runs: Vec<(ProtectionGroupId, Range<usize>)> = Vec::new();
    for (index, page) in pages.iter().enumerate() {
        let group = layout.group_of(*page);
        match runs.last_mut() {
            Some((last, run)) if *last == group && run.len() < PAGES_PER_REQUEST_MAX => run.end = index + 1,
            _ => runs.push((group, index..index + 1)),
        }
    }
    runs
}

fn verified_page(bytes: &[u8]) -> Result<Page, StorageError> {
    let page = Page::from_bytes(bytes).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    page.verify().map_err(|e| StorageError::Corrupt(e.to_string()))?;
    Ok(page)
}

/// Keeps the error that says most about why no replica served a page.
fn more_telling(kept: StorageError, new: StorageError) -> StorageError {
    match (&kept, &new) {
        (StorageError::TooOld { .. }, _) => kept,
        (_, StorageError::TooOld { .. }) => new,
        (StorageError::NotComplete { have: a, .. }, StorageError::NotComplete { have: b, .. }) if b > a => new,
        (StorageError::NotComplete { .. }, StorageError::Corrupt(_)) => new,
        _ => kept,
    }
}

/// Daemons asked for a read point: a read quorum, so the answer is at least
/// as new as any durable LSN a write quorum has been told.
pub const READ_POINT_ANSWERS: usize = 3;

/// Reads pages at read points; never writes.
#[derive(Debug, Clone)]
pub struct VolumeReader {
    client: Arc<StorageClient>,
    layout: VolumeLayout,
}

impl VolumeReader {
    /// A reader of the volume on `nodes`.
    pub fn open(nodes: Vec<StorageNode>, tls_dir: &Path, layout: VolumeLayout) -> Result<VolumeReader, StorageError> {
        Ok(VolumeReader { client: Arc::new(StorageClient::new(nodes, tls_dir)?), layout })
    }

    /// A recent read point: the highest durable LSN reported by the first
    /// `READ_POINT_ANSWERS` daemons to answer (always a commit point; a
    /// daemon that is down costs nothing once enough others answered).
    pub async fn read_point(&self) -> Result<Lsn, StorageError> {
        use futures::StreamExt;
        let mut answers: futures::stream::FuturesUnordered<_> =
            self.client.nodes().iter().map(|n| self.client.status(NodeId(n.index))).collect();
        let (mut best, mut answered) = (None, 0);
        let mut last_error = StorageError::QuorumLost { what: "read point", needed: 1, answered: 0 };
        while let Some(answer) = answers.next().await {
            match answer {
                Ok(status) => {
                    best = best.max(Some(status.durable_lsn));
                    answered += 1;
                    if answered >= READ_POINT_ANSWERS {
                        break;
                    }
                }
                Err(e) => last_error = e,
            }
        }
        best.ok_or(last_error)
    }

    /// Pages as of `read_point`, in the order asked: one request per
    /// protection group they fall in (and per [`PAGES_PER_REQUEST_MAX`]),
    /// sent at once.
    pub async fn get_pages(&self, pages: &[PageId], read_point: Lsn) -> Result<Vec<Page>, StorageError> {
        let requests = page_requests(self.layout, pages).into_iter().map(|(group, run)| {
            let candidates = placement(self.client.nodes(), group);
            async move { self.client.get_pages(&candidates, &pages[run], read_point).await }
        });
        let answers = futures::future::try_join_all(requests).await?;
        Ok(answers.into_iter().flatten().collect())
    }

    /// Asks every daemon to keep the history of `read_point` (a statement
    /// still reads there); returns how many answered that they keep it.
    pub async fn hold_read_point(&self, read_point: Lsn) -> usize {
        let request = Request::HoldReadPoint { read_point };
        let asks = self.client.nodes().iter().map(|n| self.client.request(NodeId(n.index), &request, HOLD_TIMEOUT));
        let answers = futures::future::join_all(asks).await;
        answers.into_iter().filter(|a| matches!(a, Ok(Response::Held { kept: true }))).count()
    }
}

/// How long a daemon may take to answer a `HoldReadPoint`.
const HOLD_TIMEOUT: Duration = Duration::from_secs(2);

/// One daemon as `borealis status` shows it.
#[derive(Debug, Clone)]
pub struct NodeReport {
    /// The daemon's entry in the cluster file.
    pub node: StorageNode,
    /// Its status, or why it did not answer.
    pub status: Result<NodeStatus, StorageError>,
}

/// Asks every daemon for its status.
pub async fn node_status(nodes: Vec<StorageNode>, tls_dir: &Path) -> Result<Vec<NodeReport>, StorageError> {
    let client = StorageClient::new(nodes, tls_dir)?;
    let answers = client.status_all().await;
    client.close();
    Ok(client.nodes().iter().cloned().zip(answers).map(|(node, (_, status))| NodeReport { node, status }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_requests_split_by_group_and_size_keeping_order() {
        let layout = VolumeLayout { pages_per_group: 1000 };
        let pages: Vec<PageId> = [1, 2, 1500, 3].into_iter().map(PageId).collect();
        let groups =
            |runs: Vec<(ProtectionGroupId, Range<usize>)>| runs.into_iter().map(|(g, r)| (g.0, r)).collect::<Vec<_>>();
        assert_eq!(groups(page_requests(layout, &pages)), [(0, 0..2), (1, 2..3), (0, 3..4)]);
        let many: Vec<PageId> = (0..PAGES_PER_REQUEST_MAX as u64 + 1).map(PageId).collect();
        assert_eq!(
            groups(page_requests(layout, &many)),
            [(0, 0..PAGES_PER_REQUEST_MAX), (0, PAGES_PER_REQUEST_MAX..PAGES_PER_REQUEST_MAX + 1)]
        );
    }

    fn nodes(count: u32) -> Vec<StorageNode> {
        (0..count)
            .map(|index| StorageNode {
                index,
                name: format!("s{index}"),
                az: format!("az{}", index % 3),
                addr: SocketAddr::from(([127, 0, 0, 1], 7000 + index as u16)),
            })
            .collect()
    }

    #[test]
    fn placement_puts_two_segments_in_each_zone() {
        assert_eq!(placement(&nodes(6), ProtectionGroupId(5)).len(), 6);
        for group in 0..10 {
            let chosen = placement(&nodes(9), ProtectionGroupId(group));
            assert_eq!(chosen.len(), 6);
            for zone in 0..3 {
                assert_eq!(chosen.iter().filter(|n| n.0 % 3 == zone).count(), 2);
            }
            assert_eq!(chosen, placement(&nodes(9), ProtectionGroupId(group)), "deterministic");
        }
    }

    #[test]
    fn errors_classify() {
        assert!(StorageError::Io("x".into()).is_retryable());
        assert!(!StorageError::QuorumTimeout { timeout_ms: 1 }.is_retryable());
        assert!(StorageError::Fenced.is_fenced());
        assert!(StorageError::Cancelled.is_cancel());
    }
}
