//! `borealis up`: the whole cluster of a cluster file as child processes.
//!
//! Order of start: storage daemons, then the writer (which recovers the
//! volume from them), then the readers, then the proxy; each group must answer
//! before the next starts. A child that exits while the cluster runs is
//! restarted (a crashed daemon rejoins and catches up by gossip; a restarted
//! writer recovers the volume), unless it keeps exiting. Stopping reverses
//! the order: SIGTERM, a grace period, then SIGKILL. Children die with the launcher (PR_SET_PDEATHSIG),
//! so a killed launcher leaves nothing running. One data directory serves one
//! launcher at a time: a lock file refuses a second `up` on it.

use crate::{load_config, shutdown_signal, status};
use anyhow::{Context, bail};
use borealis_config::ClusterConfig;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// How long a group of processes may take to answer after it starts. The
/// writer's recovery is the slowest part: it replays nothing itself, but the
/// daemons replay their logs first.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Name of the lock file in the data directory.
const LOCK_FILE: &str = "borealis.lock";
/// Restarts of one child within `RESTART_WINDOW` after which the launcher
/// stops restarting it: a child that cannot stay up needs a person.
const RESTARTS_MAX: usize = 5;
/// The window `RESTARTS_MAX` counts in.
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// A started child process.
struct Process {
    name: String,
    role: &'static str,
    /// The `borealis` subcommand and `--name` it was started with.
    subcommand: &'static str,
    instance: Option<String>,
    child: Child,
    log: PathBuf,
    /// When it was restarted, within the last `RESTART_WINDOW`.
    restarts: std::collections::VecDeque<Instant>,
    /// It kept exiting; it is no longer restarted.
    given_up: bool,
}

/// Holds the data directory's lock for the launcher's lifetime.
struct DataDirLock {
    _file: File,
}

fn lock_data_dir(data_dir: &Path) -> anyhow::Result<DataDirLock> {
    let path = data_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    // SAFETY: flock on a valid, owned file descriptor; no memory is shared.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        bail!(
            "another `borealis up` is already running on data directory {} (lock {} is held)",
            data_dir.display(),
            path.display()
        );
    }
    file.set_len(0)?;
    writeln!(file, "{}", std::process::id())?;
    Ok(DataDirLock { _file: file })
}

/// Runs `borealis up`: starts the cluster, prints how to connect, waits for
/// Ctrl-C or SIGTERM, stops the cluster.
pub async fn up(config_path: Option<PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load_config(config_path.as_deref(), data_dir)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("failed to create data directory {}", config.data_dir.display()))?;
    let data_dir = config.data_dir.canonicalize()?;
    let _lock = lock_data_dir(&data_dir)?;
    let config_path = config_path.map(|p| p.canonicalize()).transpose()?;
    borealis_storage::tls::ensure_cluster_certs(&config.tls_dir()).context("failed to create TLS certificates")?;
    std::fs::create_dir_all(data_dir.join("logs"))?;

    let mut processes = Vec::new();
    let result = start_all(&config, config_path.as_deref(), &data_dir, &mut processes).await;
    if let Err(e) = result {
        stop_all(&mut processes).await;
        return Err(e);
    }
    print_banner(&config, &data_dir);
    tokio::select! {
        () = shutdown_signal() => println!("\nstopping the cluster..."),
        () = supervise(&mut processes, config_path.as_deref(), &data_dir) => {}
    }
    stop_all(&mut processes).await;
    println!("cluster stopped");
    Ok(())
}

async fn start_all(
    config: &ClusterConfig,
    config_path: Option<&Path>,
    data_dir: &Path,
    processes: &mut Vec<Process>,
) -> anyhow::Result<()> {
    for node in &config.storage {
        processes.push(spawn(config_path, data_dir, "storage", Some(&node.name), "storage")?);
    }
    wait_ready(processes, || status::storage_ready(config)).await.context("storage daemons did not start")?;
    let writer = config.writer();
    processes.push(spawn(config_path, data_dir, "instance", Some(&writer.name), "writer")?);
    let writer_addr = writer.addr;
    wait_ready(processes, || status::tcp_ready(vec![writer_addr])).await.context("the writer did not start")?;
    let readers: Vec<_> = config.readers().cloned().collect();
    for reader in &readers {
        processes.push(spawn(config_path, data_dir, "instance", Some(&reader.name), "reader")?);
    }
    let reader_addrs: Vec<_> = readers.iter().map(|r| r.addr).collect();
    wait_ready(processes, || status::tcp_ready(reader_addrs.clone())).await.context("the readers did not start")?;
    processes.push(spawn(config_path, data_dir, "proxy", None, "proxy")?);
    let endpoints = vec![config.cluster_endpoint, config.reader_endpoint];
    wait_ready(processes, || status::tcp_ready(endpoints.clone())).await.context("the proxy did not start")?;
    Ok(())
}

fn spawn(
    config_path: Option<&Path>,
    data_dir: &Path,
    subcommand: &'static str,
    name: Option<&str>,
    role: &'static str,
) -> anyhow::Result<Process> {
    let process_name = name.unwrap_or(subcommand).to_string();
    let log = data_dir.join("logs").join(format!("{process_name}.log"));
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("failed to open {}", log.display()))?;
    let exe = std::env::current_exe().context("failed to find the borealis binary")?;
    let mut command = Command::new(exe);
    command.arg(subcommand).arg("--data-dir").arg(data_dir);
    if let Some(path) = config_path {
        command.arg("--config").arg(path);
    }
    if let Some(name) = name {
        command.arg("--name").arg(name);
    }
    command.stdin(Stdio::null()).stdout(log_file.try_clone()?).stderr(log_file);
    // SAFETY: prctl is async-signal-safe and touches only this child's state.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().with_context(|| format!("failed to start {process_name}"))?;
    Ok(Process {
        name: process_name,
        role,
        subcommand,
        instance: name.map(str::to_string),
        child,
        log,
        restarts: std::collections::VecDeque::new(),
        given_up: false,
    })
}

/// Polls `probe` until it succeeds; fails early if a child exits.
async fn wait_ready<F, Fut>(processes: &mut [Process], probe: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        for process in processes.iter_mut() {
            if let Some(exit) = process.child.try_wait()? {
                bail!("{} exited during start-up ({exit}); its log:\n{}", process.name, log_tail(&process.log));
            }
        }
        if probe().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not ready after {} s", READY_TIMEOUT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Restarts children that exit while the cluster runs; never returns.
async fn supervise(processes: &mut [Process], config_path: Option<&Path>, data_dir: &Path) {
    loop {
        for process in processes.iter_mut().filter(|p| !p.given_up) {
            let Ok(Some(status)) = process.child.try_wait() else { continue };
            let now = Instant::now();
            while process.restarts.front().is_some_and(|at| now.duration_since(*at) > RESTART_WINDOW) {
                process.restarts.pop_front();
            }
            if process.restarts.len() >= RESTARTS_MAX {
                eprintln!(
                    "{} exited ({status}) {} times within {} s; not restarting it (log: {})",
                    process.name,
                    RESTARTS_MAX + 1,
                    RESTART_WINDOW.as_secs(),
                    process.log.display()
                );
                process.given_up = true;
                continue;
            }
            eprintln!("{} exited ({status}); restarting it", process.name);
            match spawn(config_path, data_dir, process.subcommand, process.instance.as_deref(), process.role) {
                Ok(fresh) => {
                    process.child = fresh.child;
                    process.restarts.push_back(now);
                }
                Err(e) => eprintln!("failed to restart {}: {e:#}", process.name),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stop_all(processes: &mut Vec<Process>) {
    // Reverse start order: proxy, readers, writer, storage.
    for group in ["proxy", "reader", "writer", "storage"] {
        let members: Vec<&mut Process> = processes.iter_mut().filter(|p| p.role == group).collect();
        for process in &members {
            if let Some(pid) = process.child.id() {
                // SAFETY: sending a signal to our own child's pid.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
        }
        for process in members {
            match tokio::time::timeout(STOP_GRACE, process.child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    eprintln!("{} did not stop in {} s; killing it", process.name, STOP_GRACE.as_secs());
                    let _ = process.child.kill().await;
                }
            }
        }
    }
    processes.clear();
}

fn print_banner(config: &ClusterConfig, data_dir: &Path) {
    println!();
    println!("Borealis cluster `{}` is up (data in {})", config.name, data_dir.display());
    println!();
    println!("  {:<12} {:<22} serves", "endpoint", "address");
    println!("  {:<12} {:<22} the writer (reads and writes)", "cluster", config.cluster_endpoint);
    println!("  {:<12} {:<22} the readers (read-only, load balanced)", "reader", config.reader_endpoint);
    for instance in &config.instances {
        println!("  {:<12} {:<22} {} instance", instance.name, instance.addr, instance.role);
    }
    for node in &config.storage {
        println!("  {:<12} {:<22} storage daemon in {} (QUIC)", node.name, node.addr.to_string() + "/udp", node.az);
    }
    println!();
    let addr = config.cluster_endpoint;
    if std::env::var(crate::PASSWORD_ENV).is_ok() {
        println!("Connect (password from {}):", crate::PASSWORD_ENV);
        println!("  psql -h {} -p {} -U postgres postgres", addr.ip(), addr.port());
    } else {
        println!("Connect:");
        println!("  PGPASSWORD={} psql -h {} -p {} -U postgres postgres", config.password, addr.ip(), addr.port());
    }
    println!();
    println!("Logs are in {}. Stop with Ctrl-C.", data_dir.join("logs").display());
}
