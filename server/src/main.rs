//! `borealis`: one binary, a subcommand per role.

use borealis_server::{instance, launcher, load_config, proxy, shutdown_signal, status};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "borealis", version, about = "Borealis: PostgreSQL on the wire, Aurora's architecture underneath")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ClusterArgs {
    /// Cluster file (TOML); the local topology when omitted.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory, overriding the cluster file's.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Start every process of the cluster on this machine and wait for Ctrl-C.
    Up(ClusterArgs),
    /// Run one storage daemon.
    Storage {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The daemon's name in the cluster file.
        #[arg(long)]
        name: String,
    },
    /// Run one compute instance (writer or reader).
    Instance {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The instance's name in the cluster file.
        #[arg(long)]
        name: String,
    },
    /// Run the proxy (cluster and reader endpoints).
    Proxy(ClusterArgs),
    /// Show each process, its role, whether it answers, and the durable LSN.
    Status(ClusterArgs),
}

/// Stack of each runtime thread: DataFusion's planner recurses deeply, and
/// unoptimised builds overflow tokio's 2 MiB default on ordinary statements.
const THREAD_STACK_BYTES: usize = 8 * 1024 * 1024;

fn main() -> anyhow::Result<()> {
    borealis_server::init_tracing();
    let cli = Cli::parse();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(THREAD_STACK_BYTES).build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => launcher::up(args.config, args.data_dir).await,
        Command::Storage { cluster, name } => {
            let config = load_config(cluster.config.as_deref(), cluster.data_dir)?;
            borealis_server::run_storage(&config, &name, shutdown_signal()).await
        }
        Command::Instance { cluster, name } => {
            let config = load_config(cluster.config.as_deref(), cluster.data_dir)?;
            tokio::select! {
                result = instance::run(&config, &name) => result,
                () = shutdown_signal() => Ok(()),
            }
        }
        Command::Proxy(args) => {
            let config = load_config(args.config.as_deref(), args.data_dir.clone())?;
            let reload = move || match load_config(args.config.as_deref(), args.data_dir.clone()) {
                Ok(config) => Some(config),
                Err(e) => {
                    tracing::warn!("cannot read the cluster file again: {e:#}");
                    None
                }
            };
            tokio::select! {
                result = proxy::run(&config, reload) => result,
                () = shutdown_signal() => Ok(()),
            }
        }
        Command::Status(args) => {
            let config = load_config(args.config.as_deref(), args.data_dir)?;
            status::print(&config).await
        }
    }
}
