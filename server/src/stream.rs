//! The commit stream: the writer tells readers, in LSN order, which pages
//! each durable commit changed, so that readers drop those pages from their
//! caches and move their read point on, without asking storage.
//!
//! The writer listens for QUIC (mutual TLS, the cluster's certificates) on
//! the UDP port with the number of its PostgreSQL TCP port. A reader opens a
//! connection; the writer opens one unidirectional stream to it and sends a
//! `Hello` (the durable LSN: the reader's cache may be stale from before,
//! so it clears it and starts there) and then an `Advance` per durable LSN
//! move, each naming every page changed since the previous one. QUIC keeps
//! a stream ordered and complete, so a reader can only miss frames across
//! connections, and every connection starts with a `Hello`. A reader too slow
//! to keep up is disconnected (and resynchronises when it reconnects).

use borealis_storage::ids::{Epoch, Lsn, PageId};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Frames a subscriber may fall behind by before it is disconnected.
const SUBSCRIBER_BACKLOG: usize = 16_384;
/// The largest frame a reader accepts.
const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The TLS server name instances present (the cluster's node certificate).
const SERVER_NAME: &str = "localhost";
/// ALPN of the commit stream.
const ALPN: &[u8] = b"borealis-commits/1";
/// How often the writer says it is alive when no commit moves.
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);
/// A reader that hears nothing for this long takes the writer for gone and
/// reconnects (a SIGKILLed writer never closes its connections).
const SILENCE_TIMEOUT: Duration = Duration::from_millis(1500);

/// One message of the stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// The start of a connection: the writer's epoch and durable LSN.
    Hello { epoch: Epoch, durable_lsn: Lsn },
    /// The durable LSN moved to `durable_lsn`; `pages` changed since the
    /// previous frame. `sent_at_micros` is the writer's wall clock when it
    /// acknowledged the commit (for replica lag).
    Advance { durable_lsn: Lsn, pages: Vec<PageId>, sent_at_micros: u64 },
    /// Nothing moved; the writer is alive.
    Heartbeat,
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn encode_frame(frame: &Frame) -> Vec<u8> {
    let body = bincode::serialize(frame).expect("frames always serialise");
    let mut bytes = Vec::with_capacity(body.len() + 4);
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// The writer's side: publishes advances to every subscriber.
#[derive(Clone, Debug)]
pub struct Publisher {
    frames: broadcast::Sender<Arc<Vec<u8>>>,
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher::new()
    }
}

impl Publisher {
    /// A publisher with no subscribers yet.
    pub fn new() -> Publisher {
        Publisher { frames: broadcast::channel(SUBSCRIBER_BACKLOG).0 }
    }

    /// Publishes that the durable LSN moved to `durable_lsn`, changing `pages`.
    pub fn advance(&self, durable_lsn: Lsn, pages: Vec<PageId>) {
        let frame = Frame::Advance { durable_lsn, pages, sent_at_micros: now_micros() };
        // No subscriber is not an error.
        let _ = self.frames.send(Arc::new(encode_frame(&frame)));
    }

    /// Tells every subscriber to start over from `durable_lsn` (what changed
    /// on the way is unknown).
    pub fn resync(&self, epoch: Epoch, durable_lsn: Lsn) {
        let _ = self.frames.send(Arc::new(encode_frame(&Frame::Hello { epoch, durable_lsn })));
    }

    /// Serves subscribers on `addr` (UDP) until the task is dropped;
    /// `hello` gives the epoch and durable LSN for a new subscriber.
    pub async fn serve(
        self,
        addr: SocketAddr,
        tls_dir: &Path,
        hello: impl Fn() -> (Epoch, Lsn) + Send + Sync + 'static,
    ) -> anyhow::Result<()> {
        let config = borealis_storage::tls::quic_server_config_for(tls_dir, ALPN)?;
        let endpoint = quinn::Endpoint::server(config, addr)?;
        tracing::info!(%addr, "commit stream listening");
        let hello = Arc::new(hello);
        while let Some(incoming) = endpoint.accept().await {
            let frames = self.frames.subscribe();
            let hello = Arc::clone(&hello);
            tokio::spawn(async move {
                if let Err(e) = serve_subscriber(incoming, frames, hello()).await {
                    tracing::info!("a commit stream subscriber left: {e}");
                }
            });
        }
        Ok(())
    }
}

async fn serve_subscriber(
    incoming: quinn::Incoming,
    mut frames: broadcast::Receiver<Arc<Vec<u8>>>,
    (epoch, durable_lsn): (Epoch, Lsn),
) -> anyhow::Result<()> {
    let connection = incoming.await?;
    let peer = connection.remote_address();
    let mut send = connection.open_uni().await?;
    send.write_all(&encode_frame(&Frame::Hello { epoch, durable_lsn })).await?;
    tracing::info!(%peer, %durable_lsn, "a reader subscribed to the commit stream");
    let heartbeat_frame = encode_frame(&Frame::Heartbeat);
    let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
    loop {
        tokio::select! {
            _ = heartbeat.tick() => send.write_all(&heartbeat_frame).await?,
            frame = frames.recv() => match frame {
                Ok(bytes) => send.write_all(&bytes).await?,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    connection.close(1u32.into(), b"too far behind");
                    anyhow::bail!("{peer} fell {missed} frames behind; it will resynchronise");
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            reason = connection.closed() => anyhow::bail!("{peer}: {reason}"),
        }
    }
}

/// What a reader does with the frames it receives.
pub trait Subscriber: Send + Sync + 'static {
    /// A new connection: everything cached may be stale; start at `durable_lsn`.
    fn resync(&self, epoch: Epoch, durable_lsn: Lsn);
    /// The durable LSN moved; `pages` changed on the way.
    fn advance(&self, durable_lsn: Lsn, pages: &[PageId], sent_at_micros: u64);
    /// The connection ended: read points stop moving until the next `resync`.
    fn disconnected(&self);
}

/// Follows the writer's stream at `writer` (UDP) forever, reconnecting
/// with a growing pause after a failure.
pub async fn follow(writer: SocketAddr, tls_dir: &Path, subscriber: Arc<dyn Subscriber>) -> anyhow::Result<()> {
    let config = borealis_storage::tls::quic_client_config_for(tls_dir, ALPN)?;
    let bind: SocketAddr = if writer.is_ipv6() { "[::1]:0".parse()? } else { "127.0.0.1:0".parse()? };
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(config);
    let first_pause = Duration::from_millis(50);
    let mut pause = first_pause;
    loop {
        let mut synced = false;
        let Err(e) = follow_once(&endpoint, writer, subscriber.as_ref(), &mut synced).await;
        subscriber.disconnected();
        if synced {
            tracing::info!(%writer, "lost the commit stream: {e:#}");
            pause = first_pause;
        } else {
            tracing::debug!(%writer, "cannot reach the commit stream: {e:#}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Follows one connection until it fails; `synced` tells whether it got as far as a hello.
async fn follow_once(
    endpoint: &quinn::Endpoint,
    writer: SocketAddr,
    subscriber: &dyn Subscriber,
    synced: &mut bool,
) -> anyhow::Result<std::convert::Infallible> {
    let connection = endpoint.connect(writer, SERVER_NAME)?.await?;
    let mut recv = connection.accept_uni().await?;
    loop {
        let mut len = [0u8; 4];
        match tokio::time::timeout(SILENCE_TIMEOUT, recv.read_exact(&mut len)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => anyhow::bail!("the stream ended: {e}"),
            Err(_) => anyhow::bail!("the writer was silent for {SILENCE_TIMEOUT:?}"),
        }
        let len = u32::from_le_bytes(len) as usize;
        anyhow::ensure!(len <= FRAME_BYTES_MAX, "a {len}-byte frame is too large");
        let mut body = vec![0u8; len];
        tokio::time::timeout(SILENCE_TIMEOUT, recv.read_exact(&mut body)).await??;
        match bincode::deserialize::<Frame>(&body)? {
            Frame::Hello { epoch, durable_lsn } => {
                tracing::info!(%writer, %epoch, %durable_lsn, "following the commit stream");
                subscriber.resync(epoch, durable_lsn);
                *synced = true;
            }
            Frame::Advance { durable_lsn, pages, sent_at_micros } => {
                anyhow::ensure!(*synced, "an advance before the hello");
                subscriber.advance(durable_lsn, &pages, sent_at_micros);
            }
            Frame::Heartbeat => {}
        }
    }
}
