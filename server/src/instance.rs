//! A compute instance: the writer or a reader of the cluster's volume.
//!
//! Start-up of the writer: connect to the storage daemons, run recovery (raise
//! the epoch, find the durable end of the log, truncate above it), open the SQL
//! engine on the volume (bootstrapping an empty one), then accept PostgreSQL
//! connections. A reader opens the same volume read-only. Only when the
//! engine is open does the instance listen, so "port accepts" means "ready".

use crate::frontend::{self, Frontend};
use crate::volume::{ReaderVolume, WriterVolume};
use anyhow::Context;
use borealis_config::{ClientTls, ClusterConfig, Role};
use borealis_sql::{Engine, Volume};
use borealis_storage::client::{VolumeConfig, VolumeReader, VolumeWriter};
use borealis_storage::ids::VolumeLayout;
use std::sync::Arc;
use tracing::info;

/// Runs the instance `name` of `config` until the process is stopped.
pub async fn run(config: &ClusterConfig, name: &str) -> anyhow::Result<()> {
    let instance =
        config.instance(name).with_context(|| format!("no instance named `{name}` in the cluster file"))?.clone();
    let (volume, read_only): (Arc<dyn Volume>, bool) = match instance.role {
        Role::Writer => {
            let storage =
                VolumeWriter::open(VolumeConfig::from_cluster(config)).await.context("failed to recover the volume")?;
            info!(durable_lsn = %storage.durable_lsn(), epoch = %storage.epoch(), "volume recovered");
            let volume = Arc::new(WriterVolume::new(storage, config.buffer_cache_bytes));
            WriterVolume::keep_history_moving(&volume);
            let stream = Arc::clone(&volume);
            let (addr, tls_dir) = (instance.addr, config.tls_dir());
            tokio::spawn(async move {
                if let Err(e) = WriterVolume::serve_commit_stream(stream, addr, &tls_dir).await {
                    tracing::error!("the commit stream stopped: {e:#}");
                }
            });
            (volume, false)
        }
        Role::Reader => {
            let layout = VolumeLayout::from_group_size_bytes(config.protection_group_size_bytes);
            let storage = VolumeReader::open(config.storage.clone(), &config.tls_dir(), layout)
                .context("failed to open the volume")?;
            let volume = Arc::new(ReaderVolume::new(storage, config.buffer_cache_bytes));
            ReaderVolume::report_read_points(&volume);
            match config.instances.iter().find(|i| i.role == Role::Writer) {
                Some(writer) => ReaderVolume::follow(&volume, writer.addr, &config.tls_dir()),
                None => tracing::warn!("no writer in the cluster file: read points come from storage"),
            }
            (volume, true)
        }
    };
    let engine = Engine::open(volume, read_only)
        .await
        .map_err(|e| anyhow::anyhow!("failed to open the SQL engine: {}", e.message()))?;
    let tls = frontend::tls_acceptor(&config.tls_dir()).context("failed to set up TLS for clients")?;
    let tls_required = config.client_tls == ClientTls::Required;
    let frontend = Arc::new(Frontend::new(engine, &config.password, read_only, Some(tls), tls_required));
    info!(name, role = %instance.role, addr = %instance.addr, "instance ready");
    frontend::listen(frontend, instance.addr).await.with_context(|| format!("failed to serve on {}", instance.addr))
}
