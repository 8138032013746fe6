//! The storage daemon: a QUIC (mutual TLS) server in front of a
//! `store::SegmentStore`, with a redo log and a state file on disk.
//!
//! Requests are decided by the sans-IO core (`daemon_core`); this shell
//! does the I/O it asks for. An `Append` passes through: epoch check (a
//! newer epoch is persisted first), the log writer thread (which writes every queued append, syncs
//! once for all of them and then answers each: group commit), insertion into
//! the segments, and the answer with each segment's SCL. Nothing is reported
//! complete before it is synced. A `RaiseEpoch` or `Truncate` is persisted in
//! the state file before it is answered. At start the state file is read and
//! the log replayed; a torn tail is cut.
//!
//! A background tick applies records up to the durable LSN, collects page
//! versions no read point can reach, saves the durable LSN hint, and takes
//! a checkpoint: the pages changed since the last one go to the page file
//! (synced), then the state file records it, then memory and log files it
//! covers are released.

use crate::daemon_core::{Pending, Step};
use crate::ids::{NodeId, VolumeLayout};
use crate::log::{self, LogFiles, RedoLog};
use crate::pagefile::PageFile;
use crate::placement::Placement;
use crate::proto::{self, GroupAppend, MESSAGE_BYTES_MAX, Request, Response};
use crate::store::{SegmentStore, StoreError};
use crate::tls::{self, TlsError};
use borealis_config::StorageNode;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// Appends queued for the log writer. While one sync runs, up to this many
/// further appends queue and share the next sync; more wait for room.
pub const LOG_QUEUE_CAPACITY: usize = 1024;
/// How often the background tick runs.
pub const TICK_INTERVAL: Duration = Duration::from_secs(1);
pub use crate::daemon_core::RECORDS_BYTES_MAX;
/// How long shutdown waits for connections to close cleanly.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// How to run one daemon.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// This daemon's id (its index in the cluster file).
    pub node: NodeId,
    /// UDP address to listen on; port 0 picks a free port (see `DaemonHandle::local_addr`).
    pub listen: SocketAddr,
    /// Where the log and state file live (created if missing).
    pub data_dir: PathBuf,
    /// Where the cluster's TLS material lives (see `tls::ensure_cluster_certs`).
    pub tls_dir: PathBuf,
    /// Page to protection group mapping of the volume.
    pub layout: VolumeLayout,
    /// Every storage daemon of the cluster (this one may be included), for
    /// gossip repair; empty turns gossip off.
    pub peers: Vec<StorageNode>,
}

/// Why a daemon could not start or stopped.
#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("TLS setup failed: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot {what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
    #[error("daemon task failed: {0}")]
    Task(String),
}

fn io_error(what: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
    move |source| DaemonError::Io { what, source }
}

/// A running daemon.
#[derive(Debug)]
pub struct DaemonHandle {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), DaemonError>>,
}

impl DaemonHandle {
    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes connections, waits for the log writer to finish.
    pub async fn stop(mut self) -> Result<(), DaemonError> {
        if let Some(stop) = self.stop.take() {
            let _already_stopped = stop.send(());
        }
        (&mut self.task).await.map_err(|e| DaemonError::Task(e.to_string()))?
    }
}

/// Runs a daemon until `shutdown` completes.
pub async fn run(options: DaemonOptions, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let handle = start(options).await?;
    shutdown.await;
    handle.stop().await
}

/// Starts a daemon: replays its log, binds, and serves in the background.
pub async fn start(options: DaemonOptions) -> Result<DaemonHandle, DaemonError> {
    let server_config = tls::quic_server_config(&options.tls_dir)?;
    let (data_dir, listen, node) = (options.data_dir.clone(), options.listen, options.node);
    let gossip = match options.peers.is_empty() {
        true => None,
        false => Some(
            crate::client::StorageClient::new(options.peers.clone(), &options.tls_dir)
                .map_err(|e| DaemonError::Task(format!("cannot start gossip: {e}")))?,
        ),
    };
    let placement = Placement::new(options.peers.iter().map(|n| (NodeId(n.index), n.az.clone())));
    let (store, log, pages) = tokio::task::spawn_blocking(move || open_files(&options))
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))??;
    let log_files = log.files();
    let endpoint = quinn::Endpoint::server(server_config, listen).map_err(io_error("bind the storage port"))?;
    let local_addr = endpoint.local_addr().map_err(io_error("read the bound address"))?;
    let (log_sender, log_thread) = spawn_log_writer(log)?;
    let daemon = Arc::new(Daemon {
        store: Mutex::new(store),
        log: log_sender,
        log_files,
        pages,
        data_dir,
        persist_lock: tokio::sync::Mutex::new(()),
    });
    let (stop, stopped) = oneshot::channel();
    let gossip = gossip.map(|client| (client, node, placement));
    let task = tokio::spawn(serve(daemon, endpoint, stopped, log_thread, gossip));
    tracing::info!(%local_addr, "storage daemon listening");
    Ok(DaemonHandle { local_addr, stop: Some(stop), task })
}

fn open_files(options: &DaemonOptions) -> Result<(SegmentStore, RedoLog, Arc<PageFile>), DaemonError> {
    std::fs::create_dir_all(&options.data_dir).map_err(io_error("create the data directory"))?;
    let state = log::load_state(&options.data_dir).map_err(io_error("read the state file"))?;
    let pages = Arc::new(PageFile::open(&options.data_dir).map_err(io_error("open the page file"))?);
    let (log, replay) = RedoLog::open(&options.data_dir).map_err(io_error("open the redo log"))?;
    if replay.torn_bytes > 0 {
        tracing::warn!(torn_bytes = replay.torn_bytes, "cut a torn tail off the redo log");
    }
    let checkpoint = state.checkpoint.lsn;
    let mut store = SegmentStore::with_base(options.node, options.layout, state, Arc::clone(&pages) as _);
    if !options.peers.is_empty() {
        store.watch_peers();
    }
    let replayed = replay.entries.len();
    for entry in replay.entries {
        store.replay(entry);
    }
    tracing::info!(node = %options.node, replayed, %checkpoint, pages = pages.len(), epoch = %store.epoch(),
        "redo log replayed");
    Ok((store, log, pages))
}

/// An append waiting for the log writer; the groups come back once synced.
struct LogAppend {
    groups: Vec<GroupAppend>,
    promises: Vec<log::Promise>,
    done: oneshot::Sender<Result<Vec<GroupAppend>, String>>,
}

/// The log writer: a thread that drains the queue, writes every append it
/// found, syncs once and answers them all. After a failed write or sync it
/// refuses every later append (the tail is unknown until a restart cuts it).
fn spawn_log_writer(mut log: RedoLog) -> Result<(mpsc::Sender<LogAppend>, std::thread::JoinHandle<()>), DaemonError> {
    let (sender, mut receiver) = mpsc::channel::<LogAppend>(LOG_QUEUE_CAPACITY);
    let thread = std::thread::Builder::new()
        .name("redo-log-writer".into())
        .spawn(move || {
            let mut failed: Option<String> = None;
            while let Some(first) = receiver.blocking_recv() {
                let mut batch = vec![first];
                while let Ok(next) = receiver.try_recv() {
                    batch.push(next);
                }
                if failed.is_none() {
                    let records = batch.iter().flat_map(|a| a.groups.iter().flat_map(|g| g.records.iter()));
                    let promises: Vec<log::Promise> = batch.iter().flat_map(|a| a.promises.iter().copied()).collect();
                    if let Err(e) = log.append(records, &promises) {
                        tracing::error!("failed to append to the redo log: {e:#}");
                        failed = Some(format!("redo log failed: {e}"));
                    }
                }
                for append in batch {
                    let result = match &failed {
                        Some(reason) => Err(reason.clone()),
                        None => Ok(append.groups),
                    };
                    let _requester_gone = append.done.send(result);
                }
            }
        })
        .map_err(io_error("start the log writer thread"))?;
    Ok((sender, thread))
}

pub(crate) struct Daemon {
    store: Mutex<SegmentStore>,
    log: mpsc::Sender<LogAppend>,
    log_files: LogFiles,
    pages: Arc<PageFile>,
    data_dir: PathBuf,
    /// Serialises state file writes; each writes the latest state.
    persist_lock: tokio::sync::Mutex<()>,
}

async fn serve(
    daemon: Arc<Daemon>,
    endpoint: quinn::Endpoint,
    mut stopped: oneshot::Receiver<()>,
    log_thread: std::thread::JoinHandle<()>,
    gossip: Option<(crate::client::StorageClient, NodeId, Placement)>,
) -> Result<(), DaemonError> {
    let mut connections = JoinSet::new();
    connections.spawn(tick_loop(Arc::clone(&daemon)));
    if let Some((client, node, placement)) = gossip {
        connections.spawn(crate::gossip::gossip_loop(Arc::clone(&daemon), client, node, placement));
    }
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                connections.spawn(serve_connection(Arc::clone(&daemon), incoming));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    endpoint.close(0u32.into(), b"daemon stopping");
    connections.shutdown().await;
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, endpoint.wait_idle()).await;
    drop(daemon);
    tokio::task::spawn_blocking(move || log_thread.join())
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))?
        .map_err(|_| DaemonError::Task("log writer thread panicked".into()))
}

async fn tick_loop(daemon: Arc<Daemon>) {
    let mut interval = tokio::time::interval(TICK_INTERVAL);
    let mut saved_durable = daemon.lock().durable_lsn();
    loop {
        interval.tick().await;
        let (result, durable) = {
            let mut store = daemon.lock();
            (store.tick(Instant::now()), store.durable_lsn())
        };
        if let Err(StoreError::Apply(e)) = result {
            tracing::error!("applicator stopped: failed to apply a record: {e:#}");
        }
        if let Err(e) = daemon.checkpoint().await {
            tracing::warn!("checkpoint failed: {e:#}");
        } else if durable > saved_durable {
            match daemon.persist().await {
                Ok(()) => saved_durable = durable,
                Err(e) => tracing::warn!("failed to save the durable LSN hint: {e:#}"),
            }
        }
    }
}

async fn serve_connection(daemon: Arc<Daemon>, incoming: quinn::Incoming) {
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(e) => {
            tracing::debug!("failed to accept a connection: {e:#}");
            return;
        }
    };
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            stream = connection.accept_bi() => match stream {
                Ok((send, recv)) => { streams.spawn(serve_stream(Arc::clone(&daemon), send, recv)); }
                Err(e) => {
                    tracing::debug!(peer = %connection.remote_address(), "connection ended: {e:#}");
                    break;
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
}

async fn serve_stream(daemon: Arc<Daemon>, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let bytes = match recv.read_to_end(MESSAGE_BYTES_MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::debug!("failed to read a request: {e:#}");
            return;
        }
    };
    let response = match proto::decode::<Request>(&bytes) {
        Ok(request) => daemon.handle(request).await,
        Err(e) => Response::Failed { message: e.to_string() },
    };
    if let Err(e) = send.write_all(&proto::encode(&response)).await {
        tracing::debug!("failed to send a response: {e:#}");
        return;
    }
    let _peer_gone = send.finish();
    let _ = send.stopped().await;
}

impl Daemon {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SegmentStore> {
        self.store.lock().expect("store mutex poisoned: a handler panicked")
    }

    /// Writes the current state file; the latest state wins.
    async fn persist(&self) -> Result<(), std::io::Error> {
        let _serial = self.persist_lock.lock().await;
        let state = self.lock().persisted().clone();
        let dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || log::store_state(&dir, &state)).await.map_err(std::io::Error::other)?
    }

    /// Writes the pages changed since the last checkpoint, records the
    /// checkpoint, and releases the memory and log files it covers.
    async fn checkpoint(&self) -> Result<(), std::io::Error> {
        let Some(plan) = self.lock().checkpoint_plan() else {
            return Ok(());
        };
        self.lock().begin_checkpoint(plan.lsn);
        self.persist().await?;
        let pages = Arc::clone(&self.pages);
        let written = plan.pages.len();
        tokio::task::spawn_blocking(move || {
            let images: Vec<_> = plan.pages.iter().map(|(id, page)| (*id, page.as_ref())).collect();
            pages.write_synced(&images)
        })
        .await
        .map_err(std::io::Error::other)??;
        let (resident_pages, resident_records) = {
            let mut store = self.lock();
            store.finish_checkpoint(plan.lsn);
            store.resident()
        };
        self.persist().await?;
        let files = self.log_files.clone();
        let deleted = tokio::task::spawn_blocking(move || files.delete_through(plan.lsn))
            .await
            .map_err(std::io::Error::other)??;
        tracing::debug!(lsn = %plan.lsn, written, resident_pages, resident_records, deleted_log_files = deleted,
            "checkpoint");
        Ok(())
    }

    async fn handle(&self, request: Request) -> Response {
        let step = self.lock().step(request, Instant::now());
        self.complete(step).await
    }

    /// Does the durable work a step asks for (state file first, then the
    /// log), then finishes it.
    pub(crate) async fn complete(&self, step: Step) -> Response {
        let work = match step {
            Step::Reply(response) => return response,
            Step::Sync(work) => work,
        };
        if work.persist_state {
            if let Err(e) = self.persist().await {
                return Response::Failed { message: format!("cannot persist the daemon state: {e}") };
            }
            if let Pending::EpochRaised = work.then {
                tracing::info!(epoch = %self.lock().epoch(), "epoch raised");
            }
        }
        let groups = if work.logs() {
            match self.log_append(work.groups, work.promises).await {
                Ok(groups) => groups,
                Err(message) => return Response::Failed { message },
            }
        } else {
            work.groups
        };
        self.lock().finish(work.then, groups)
    }

    /// Writes and syncs records and promises through the log writer.
    async fn log_append(
        &self,
        groups: Vec<GroupAppend>,
        promises: Vec<log::Promise>,
    ) -> Result<Vec<GroupAppend>, String> {
        let (done, synced) = oneshot::channel();
        let stopped = || "the redo log writer has stopped".to_string();
        self.log.send(LogAppend { groups, promises, done }).await.map_err(|_| stopped())?;
        synced.await.map_err(|_| stopped())?
    }
}
