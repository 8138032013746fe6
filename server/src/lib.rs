//! The `borealis` binary's library: every role a process can play.
//!
//! - `storage`: a storage daemon (the daemon itself lives in borealis-storage).
//! - `instance`: the writer or a reader: pgwire front end over the SQL engine,
//!   with a buffer cache over the storage volume.
//! - `proxy`: the cluster and reader endpoints.
//! - `launcher`: `borealis up`, which starts all of them as child processes.
//! - `status`: what each process of a cluster is doing.
//! - `wire`: checks of the frontend messages' framing before pgwire decodes them.
//!
//! A statement's path: client → proxy → instance (`frontend`) → SQL engine →
//! `volume` (cache, storage client) → QUIC → storage daemons, and back.

pub mod copy_out;
pub mod frontend;
pub mod instance;
pub mod launcher;
pub mod pgtypes;
pub mod proxy;
pub mod status;
pub mod stream;
pub mod volume;
pub mod wire;

use anyhow::Context;
use borealis_config::{ClusterConfig, ClusterFile};
use std::path::{Path, PathBuf};

/// Environment variable that overrides the superuser password of the cluster file.
pub const PASSWORD_ENV: &str = "BOREALIS_PASSWORD";

/// Loads the cluster file (the local topology when `path` is None), with
/// `data_dir` overriding the file's data directory.
pub fn load_config(path: Option<&Path>, data_dir: Option<PathBuf>) -> anyhow::Result<ClusterConfig> {
    let password = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
    let config = match path {
        None => ClusterConfig::local(data_dir, password)?,
        Some(path) => {
            let mut file = ClusterFile::load(path)?;
            if let Some(dir) = data_dir {
                file.cluster.data_dir = dir;
            }
            file.validate(password).with_context(|| format!("cluster file {}", path.display()))?
        }
    };
    Ok(config)
}

/// Installs the tracing subscriber: RUST_LOG filter, `info` by default.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
}

/// Resolves when the process receives SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(e) => {
            tracing::error!("failed to listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Runs the storage daemon `name` of `config` until `shutdown` resolves.
pub async fn run_storage(
    config: &ClusterConfig,
    name: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let node =
        config.storage_node(name).with_context(|| format!("no storage daemon named `{name}` in the cluster file"))?;
    let options = borealis_storage::daemon::DaemonOptions {
        node: borealis_storage::ids::NodeId(node.index),
        listen: node.addr,
        data_dir: config.process_dir(&node.name),
        tls_dir: config.tls_dir(),
        layout: borealis_storage::ids::VolumeLayout::from_group_size_bytes(config.protection_group_size_bytes),
        peers: config.storage.clone(),
    };
    borealis_storage::daemon::run(options, shutdown).await.with_context(|| format!("storage daemon {name} failed"))
}
