//! `borealis status`: each process of the cluster, its role, whether it
//! answers, and the volume's durable LSN as the storage daemons know it;
//! for instances, their buffer cache and (readers) their replica lag.
//! Also the readiness probes `borealis up` waits on.

use borealis_config::ClusterConfig;
use borealis_storage::client::node_status;
use borealis_storage::ids::Lsn;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a probe waits for one process to answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

async fn tcp_answers(addr: SocketAddr) -> bool {
    matches!(tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await, Ok(Ok(_)))
}

/// True when every address accepts a TCP connection.
pub async fn tcp_ready(addrs: Vec<SocketAddr>) -> bool {
    for addr in addrs {
        if !tcp_answers(addr).await {
            return false;
        }
    }
    true
}

/// True when every storage daemon answers a status request over QUIC.
pub async fn storage_ready(config: &ClusterConfig) -> bool {
    match node_status(config.storage.clone(), &config.tls_dir()).await {
        Ok(reports) => reports.iter().all(|report| report.status.is_ok()),
        Err(_) => false,
    }
}

/// An instance's replica lag (readers) and buffer cache, asked over SQL.
async fn instance_details(config: &ClusterConfig, addr: SocketAddr) -> anyhow::Result<String> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(addr.ip().to_string()).port(addr.port()).user("postgres").password(&config.password).dbname("postgres");
    pg.connect_timeout(PROBE_TIMEOUT);
    let (client, connection) = tokio::time::timeout(PROBE_TIMEOUT, pg.connect(tokio_postgres::NoTls)).await??;
    let connection = tokio::spawn(connection);
    let row = client.query_one("SELECT borealis_replica_lag(), borealis_buffer_cache()", &[]).await?;
    drop(client);
    let _ = connection.await;
    let lag: Option<f64> = row.get(0);
    let cache: Option<String> = row.get(1);
    let lag = lag.map(|ms| format!("replica lag {ms:.3} ms, ")).unwrap_or_default();
    Ok(format!("{lag}buffer cache {}", cache.unwrap_or_default()))
}

/// Prints the status table.
pub async fn print(config: &ClusterConfig) -> anyhow::Result<()> {
    println!("{:<12} {:<10} {:<24} {:<8} details", "process", "role", "address", "state");
    let mut durable_lsn: Option<Lsn> = None;
    let reports = node_status(config.storage.clone(), &config.tls_dir()).await?;
    for report in reports {
        let node = &report.node;
        let (state, details) = match report.status {
            Ok(status) => {
                durable_lsn = Some(durable_lsn.map_or(status.durable_lsn, |lsn| lsn.max(status.durable_lsn)));
                ("up", format!("{}, epoch {}, durable LSN {}", node.az, status.epoch, status.durable_lsn))
            }
            Err(e) => ("down", format!("{}: {e}", node.az)),
        };
        println!("{:<12} {:<10} {:<24} {:<8} {details}", node.name, "storage", format!("{}/udp", node.addr), state);
    }
    for instance in &config.instances {
        let (state, details) = match instance_details(config, instance.addr).await {
            Ok(details) => ("up", details),
            Err(e) if tcp_answers(instance.addr).await => ("up", format!("cannot query it: {e}")),
            Err(_) => ("down", String::new()),
        };
        println!(
            "{:<12} {:<10} {:<24} {state:<8} {details}",
            instance.name,
            instance.role.to_string(),
            instance.addr.to_string()
        );
    }
    for (name, addr) in [("cluster", config.cluster_endpoint), ("reader", config.reader_endpoint)] {
        let state = if tcp_answers(addr).await { "up" } else { "down" };
        println!("{:<12} {:<10} {:<24} {state}", name, "endpoint", addr.to_string());
    }
    match durable_lsn {
        Some(lsn) => println!("\nvolume durable LSN: {lsn}"),
        None => println!("\nvolume durable LSN: unknown (no storage daemon answers)"),
    }
    Ok(())
}
