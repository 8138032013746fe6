//! The proxy: the cluster's stable endpoints.
//!
//! The cluster endpoint forwards each connection to the writer; the reader
//! endpoint spreads connections over the readers, round robin, skipping any
//! that refuse the connection, and falls back to the writer when no reader
//! answers (as Aurora's reader endpoint does). Forwarding is at the TCP level,
//! so TLS, authentication and cancellation pass through unchanged.
//!
//! The proxy reads the cluster file again every `RELOAD_INTERVAL`: a reader
//! added to it (and started) joins the reader endpoint, a reader removed
//! leaves it, and no other process restarts.

use anyhow::Context;
use borealis_config::ClusterConfig;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

/// How long the proxy waits for an instance to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the proxy reads the cluster file again for readers added or removed.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Where one endpoint sends its connections.
struct Endpoint {
    name: &'static str,
    targets: RwLock<Targets>,
    next: AtomicUsize,
}

/// Candidates in preference order; the first `rotating` are rotated.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Targets {
    addrs: Vec<SocketAddr>,
    rotating: usize,
}

impl Targets {
    /// The reader endpoint's: every reader in turn, then the writer.
    fn readers_then_writer(config: &ClusterConfig) -> Targets {
        let mut addrs: Vec<SocketAddr> = config.readers().map(|r| r.addr).collect();
        let rotating = addrs.len();
        addrs.push(config.writer().addr);
        Targets { addrs, rotating }
    }
}

impl Endpoint {
    fn new(name: &'static str, targets: Targets) -> Endpoint {
        Endpoint { name, targets: RwLock::new(targets), next: AtomicUsize::new(0) }
    }

    /// Targets to try for a new connection, in order.
    fn candidates(&self) -> Vec<SocketAddr> {
        let targets = self.targets.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        if targets.rotating == 0 {
            return targets.addrs.clone();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % targets.rotating;
        let mut order: Vec<SocketAddr> =
            (0..targets.rotating).map(|i| targets.addrs[(start + i) % targets.rotating]).collect();
        order.extend_from_slice(&targets.addrs[targets.rotating..]);
        order
    }

    /// Replaces the targets; true if they changed.
    fn replace(&self, targets: Targets) -> bool {
        let mut current = self.targets.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let changed = *current != targets;
        *current = targets;
        changed
    }
}

/// Runs the proxy of `config` until the process is stopped; `reload` reads
/// the cluster file again (None when it cannot be read: nothing changes).
pub async fn run(config: &ClusterConfig, reload: impl Fn() -> Option<ClusterConfig>) -> anyhow::Result<()> {
    let writer = config.writer().addr;
    let cluster = Arc::new(Endpoint::new("cluster", Targets { addrs: vec![writer], rotating: 0 }));
    let reader = Arc::new(Endpoint::new("reader", Targets::readers_then_writer(config)));
    let follow = {
        let reader = Arc::clone(&reader);
        async move {
            let mut interval = tokio::time::interval(RELOAD_INTERVAL);
            loop {
                interval.tick().await;
                if let Some(config) = reload() {
                    let targets = Targets::readers_then_writer(&config);
                    let readers = targets.rotating;
                    if reader.replace(targets) {
                        info!(readers, "the reader endpoint follows the cluster file's readers");
                    }
                }
            }
        }
    };
    let cluster_listener = TcpListener::bind(config.cluster_endpoint)
        .await
        .with_context(|| format!("failed to bind the cluster endpoint {}", config.cluster_endpoint))?;
    let reader_listener = TcpListener::bind(config.reader_endpoint)
        .await
        .with_context(|| format!("failed to bind the reader endpoint {}", config.reader_endpoint))?;
    info!(cluster = %config.cluster_endpoint, reader = %config.reader_endpoint, "proxy ready");
    tokio::select! {
        result = async { tokio::try_join!(serve(cluster_listener, cluster), serve(reader_listener, reader)) } => {
            result?;
        }
        () = follow => {}
    }
    Ok(())
}

async fn serve(listener: TcpListener, endpoint: Arc<Endpoint>) -> anyhow::Result<()> {
    loop {
        let (client, peer) = listener.accept().await.context("failed to accept a connection")?;
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            match connect(&endpoint).await {
                Some((mut upstream, target)) => {
                    debug!(endpoint = endpoint.name, %peer, %target, "forwarding");
                    let mut client = client;
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                        debug!(endpoint = endpoint.name, %peer, "forwarding ended: {e}");
                    }
                }
                None => warn!(endpoint = endpoint.name, %peer, "no instance accepts connections"),
            }
        });
    }
}

async fn connect(endpoint: &Endpoint) -> Option<(TcpStream, SocketAddr)> {
    for target in endpoint.candidates() {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(stream)) => return Some((stream, target)),
            Ok(Err(e)) => debug!(endpoint = endpoint.name, %target, "failed to connect: {e}"),
            Err(_) => debug!(endpoint = endpoint.name, %target, "connect timed out"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_endpoint_rotates_then_falls_back_to_the_writer() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let w: SocketAddr = "127.0.0.1:3".parse().unwrap();
        let endpoint = Endpoint::new("reader", Targets { addrs: vec![a, b, w], rotating: 2 });
        assert_eq!(endpoint.candidates(), vec![a, b, w]);
        assert_eq!(endpoint.candidates(), vec![b, a, w]);
        assert_eq!(endpoint.candidates(), vec![a, b, w]);
        assert!(!endpoint.replace(Targets { addrs: vec![a, b, w], rotating: 2 }));
        assert!(endpoint.replace(Targets { addrs: vec![b, w], rotating: 1 }), "a reader left");
        assert_eq!(endpoint.candidates(), vec![b, w]);
    }
}
