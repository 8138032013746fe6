//! The proxy: the cluster's stable endpoints.
//!
//! The cluster endpoint forwards each connection to the writer; the reader
//! endpoint spreads connections over the readers, round robin, skipping any
//! that refuse the connection, and falls back to the writer when no reader
//! answers (as Aurora's reader endpoint does). Forwarding is at the TCP level,
//! so TLS, authentication and cancellation pass through unchanged.

use anyhow::Context;
use borealis_config::ClusterConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

/// How long the proxy waits for an instance to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where one endpoint sends its connections.
struct Endpoint {
    name: &'static str,
    /// Candidates in preference order; the first `rotating` are rotated.
    targets: Vec<SocketAddr>,
    rotating: usize,
    next: AtomicUsize,
}

impl Endpoint {
    /// Targets to try for a new connection, in order.
    fn candidates(&self) -> Vec<SocketAddr> {
        if self.rotating == 0 {
            return self.targets.clone();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.rotating;
        let mut order: Vec<SocketAddr> =
            (0..self.rotating).map(|i| self.targets[(start + i) % self.rotating]).collect();
        order.extend_from_slice(&self.targets[self.rotating..]);
        order
    }
}

/// Runs the proxy of `config` until the process is stopped.
pub async fn run(config: &ClusterConfig) -> anyhow::Result<()> {
    let writer = config.writer().addr;
    let readers: Vec<SocketAddr> = config.readers().map(|r| r.addr).collect();
    let cluster = Arc::new(Endpoint { name: "cluster", targets: vec![writer], rotating: 0, next: AtomicUsize::new(0) });
    let rotating = readers.len();
    let mut reader_targets = readers;
    reader_targets.push(writer);
    let reader = Arc::new(Endpoint { name: "reader", targets: reader_targets, rotating, next: AtomicUsize::new(0) });
    let cluster_listener = TcpListener::bind(config.cluster_endpoint)
        .await
        .with_context(|| format!("failed to bind the cluster endpoint {}", config.cluster_endpoint))?;
    let reader_listener = TcpListener::bind(config.reader_endpoint)
        .await
        .with_context(|| format!("failed to bind the reader endpoint {}", config.reader_endpoint))?;
    info!(cluster = %config.cluster_endpoint, reader = %config.reader_endpoint, "proxy ready");
    tokio::try_join!(serve(cluster_listener, cluster), serve(reader_listener, reader))?;
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
        let endpoint = Endpoint { name: "reader", targets: vec![a, b, w], rotating: 2, next: AtomicUsize::new(0) };
        assert_eq!(endpoint.candidates(), vec![a, b, w]);
        assert_eq!(endpoint.candidates(), vec![b, a, w]);
        assert_eq!(endpoint.candidates(), vec![a, b, w]);
    }
}
