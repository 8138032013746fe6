//! A process-level harness: every process of a test cluster (six storage
//! daemons, the writer, the readers, the proxy) started on its own, so that a
//! test can SIGKILL, SIGSTOP/SIGCONT and restart each one individually.
//!
//! The harness does what `borealis up` does, one process at a time: it writes
//! a cluster file with ports chosen at run time on 127.0.0.1, creates the
//! cluster's TLS material, starts each process as `borealis <role> --config F
//! --data-dir D --name N` with its output in `D/logs/N.log`, and waits for it
//! to answer (storage: a QUIC status request; instances and proxy: a TCP
//! connect). Every process still running is killed on Drop (a stopped one is
//! continued first so that it can die).

use crate::{PASSWORD, Ports, borealis_binary, cluster_file};
use anyhow::{Context, bail};
use borealis_config::{ClusterConfig, ClusterFile, StorageNode};
use borealis_storage::client::{StorageClient, node_status};
use borealis_storage::ids::{Lsn, NodeId, ProtectionGroupId};
use borealis_storage::proto::{NodeStatus, PageDigest};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one process (or group) may take to answer after it starts.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Protection group size of harness clusters: small, so that a test's rows
/// span several groups.
pub const PROTECTION_GROUP_SIZE_BYTES: u64 = 64 * 1024;

/// A cluster whose processes the test starts and stops one by one.
pub struct ProcessCluster {
    /// Holds the cluster file, data directory and logs; removed on Drop.
    pub dir: tempfile::TempDir,
    /// The cluster's addresses.
    pub ports: Ports,
    /// The validated cluster file (data directory resolved).
    pub config: ClusterConfig,
    running: BTreeMap<String, Running>,
}

struct Running {
    child: Child,
    stopped: bool,
}

impl ProcessCluster {
    /// Writes a cluster file (with `commit_timeout_ms`) and the TLS
    /// material; starts nothing.
    pub fn new(readers: usize, commit_timeout_ms: u64) -> anyhow::Result<ProcessCluster> {
        let dir = tempfile::tempdir()?;
        let ports = Ports::pick(readers)?;
        let text = cluster_file(&ports, PROTECTION_GROUP_SIZE_BYTES)
            .replace("commit_timeout_ms = 5000", &format!("commit_timeout_ms = {commit_timeout_ms}"));
        if !text.contains(&format!("commit_timeout_ms = {commit_timeout_ms}\n")) {
            bail!("the cluster file template changed: cannot set commit_timeout_ms");
        }
        let config_path = dir.path().join("cluster.toml");
        std::fs::write(&config_path, &text)?;
        let mut file = ClusterFile::parse(&text)?;
        file.cluster.data_dir = dir.path().join("data");
        let config = file.validate(None).context("failed to validate the harness cluster file")?;
        std::fs::create_dir_all(config.data_dir.join("logs"))?;
        borealis_storage::tls::ensure_cluster_certs(&config.tls_dir()).context("failed to create TLS material")?;
        Ok(ProcessCluster { dir, ports, config, running: BTreeMap::new() })
    }

    /// The cluster file's path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("cluster.toml")
    }

    /// Name of the storage daemon with index `index` (0-based).
    pub fn storage_name(index: usize) -> String {
        format!("storage-{}", index + 1)
    }

    /// Starts every process in `borealis up`'s order, waiting for each group.
    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        for index in 0..self.config.storage.len() {
            self.spawn("storage", Some(&Self::storage_name(index)))?;
        }
        self.wait_storage((0..self.config.storage.len()).collect()).await?;
        self.start_instance("writer").await?;
        let readers: Vec<String> = self.config.readers().map(|r| r.name.clone()).collect();
        for reader in readers {
            self.start_instance(&reader).await?;
        }
        self.start_proxy().await
    }

    /// Starts storage daemon `index` (0-based) and waits until it answers.
    pub async fn start_storage(&mut self, index: usize) -> anyhow::Result<()> {
        self.spawn("storage", Some(&Self::storage_name(index)))?;
        self.wait_storage(vec![index]).await
    }

    /// Adds a reader to the cluster file (a fresh loopback port) and starts
    /// it; returns its name and port. Nothing else restarts.
    pub async fn add_reader(&mut self) -> anyhow::Result<(String, u16)> {
        let port = crate::free_ports(1)?[0];
        let name = format!("reader-{}", self.config.instances.len());
        let mut text = std::fs::read_to_string(self.config_path())?;
        let proxy = text.find("[proxy]").context("the cluster file has no [proxy] section")?;
        let section = format!("[[instance]]\nname = \"{name}\"\nrole = \"reader\"\naddr = \"127.0.0.1:{port}\"\n\n");
        text.insert_str(proxy, &section);
        self.rewrite_config(&text)?;
        self.start_instance(&name).await?;
        self.ports.readers.push(port);
        Ok((name, port))
    }

    /// Removes reader `name` from the cluster file (it keeps running).
    pub fn remove_reader(&mut self, name: &str) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(self.config_path())?;
        let start = text
            .find(&format!("name = \"{name}\""))
            .and_then(|at| text[..at].rfind("[[instance]]"))
            .with_context(|| format!("no instance {name} in the cluster file"))?;
        let end = text[start + 1..]
            .find("[[")
            .or_else(|| text[start + 1..].find("[proxy]"))
            .map_or(text.len(), |e| start + 1 + e);
        let text = format!("{}{}", &text[..start], &text[end..]);
        self.rewrite_config(&text)
    }

    fn rewrite_config(&mut self, text: &str) -> anyhow::Result<()> {
        let mut file = ClusterFile::parse(text)?;
        file.cluster.data_dir = self.config.data_dir.clone();
        self.config = file.validate(None).context("the changed cluster file does not validate")?;
        let tmp = self.config_path().with_extension("toml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.config_path())?;
        Ok(())
    }

    /// Starts the instance `name` (writer or reader) and waits for its port.
    pub async fn start_instance(&mut self, name: &str) -> anyhow::Result<()> {
        let addr = self.config.instance(name).with_context(|| format!("no instance {name}"))?.addr;
        self.spawn("instance", Some(name))?;
        self.wait_tcp(name, addr).await
    }

    /// Starts the proxy and waits for both endpoints.
    pub async fn start_proxy(&mut self) -> anyhow::Result<()> {
        self.spawn("proxy", None)?;
        self.wait_tcp("proxy", self.config.cluster_endpoint).await?;
        self.wait_tcp("proxy", self.config.reader_endpoint).await
    }

    fn spawn(&mut self, subcommand: &str, name: Option<&str>) -> anyhow::Result<()> {
        let process = name.unwrap_or(subcommand).to_string();
        if self.running.contains_key(&process) {
            bail!("{process} is already running");
        }
        let log_path = self.config.data_dir.join("logs").join(format!("{process}.log"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let mut command = Command::new(borealis_binary()?);
        command.arg(subcommand).arg("--config").arg(self.config_path()).arg("--data-dir").arg(&self.config.data_dir);
        if let Some(name) = name {
            command.arg("--name").arg(name);
        }
        command.env("BOREALIS_PASSWORD", PASSWORD).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = command.spawn().with_context(|| format!("failed to start {process}"))?;
        self.running.insert(process, Running { child, stopped: false });
        Ok(())
    }

    /// Fails if `process` has exited, with its log.
    fn check_alive(&mut self, process: &str) -> anyhow::Result<()> {
        if let Some(running) = self.running.get_mut(process)
            && let Some(status) = running.child.try_wait()?
        {
            self.running.remove(process);
            bail!("{process} exited ({status}):\n{}", self.log_tail(process, 30));
        }
        Ok(())
    }

    async fn wait_storage(&mut self, indices: Vec<usize>) -> anyhow::Result<()> {
        let nodes: Vec<StorageNode> = indices.iter().map(|i| self.config.storage[*i].clone()).collect();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for index in &indices {
                self.check_alive(&Self::storage_name(*index))?;
            }
            if let Ok(reports) = node_status(nodes.clone(), &self.config.tls_dir()).await
                && reports.iter().all(|r| r.status.is_ok())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("storage daemons {indices:?} not ready in {} s", READY_TIMEOUT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_tcp(&mut self, process: &str, addr: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_alive(process)?;
            let connect = tokio::net::TcpStream::connect(addr);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{process} not answering on {addr} after {} s:\n{}", READY_TIMEOUT.as_secs(), self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal(&mut self, process: &str, signal: libc::c_int) -> anyhow::Result<()> {
        let running = self.running.get_mut(process).with_context(|| format!("{process} is not running"))?;
        let pid = libc::pid_t::try_from(running.child.id()).context("pid out of range")?;
        // SAFETY: signalling a child we started and have not reaped yet.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!("kill({pid}, {signal}) failed: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// SIGKILLs `process` (as a power loss would) and reaps it.
    pub fn kill9(&mut self, process: &str) -> anyhow::Result<()> {
        self.signal(process, libc::SIGKILL)?;
        if let Some(mut running) = self.running.remove(process) {
            running.child.wait()?;
        }
        Ok(())
    }

    /// SIGKILLs storage daemon `index` (0-based).
    pub fn kill_storage(&mut self, index: usize) -> anyhow::Result<()> {
        self.kill9(&Self::storage_name(index))
    }

    /// Freezes `process` (SIGSTOP): it holds its sockets but answers nothing.
    pub fn pause(&mut self, process: &str) -> anyhow::Result<()> {
        self.signal(process, libc::SIGSTOP)?;
        if let Some(running) = self.running.get_mut(process) {
            running.stopped = true;
        }
        Ok(())
    }

    /// Lets a paused `process` run again (SIGCONT).
    pub fn resume(&mut self, process: &str) -> anyhow::Result<()> {
        self.signal(process, libc::SIGCONT)?;
        if let Some(running) = self.running.get_mut(process) {
            running.stopped = false;
        }
        Ok(())
    }

    /// Whether `process` was started and has not been killed.
    pub fn is_running(&self, process: &str) -> bool {
        self.running.contains_key(process)
    }

    /// SIGKILLs every process (continuing paused ones first).
    pub fn kill_all(&mut self) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            if self.running.get(&name).is_some_and(|r| r.stopped) {
                let _ = self.resume(&name);
            }
            let _ = self.kill9(&name);
        }
    }

    /// The cluster endpoint.
    pub fn cluster_addr(&self) -> SocketAddr {
        self.config.cluster_endpoint
    }

    /// A tokio-postgres connection to `port`, driven in the background.
    pub async fn connect(&self, port: u16) -> anyhow::Result<tokio_postgres::Client> {
        let conninfo =
            format!("host=127.0.0.1 port={port} user=postgres password={PASSWORD} dbname=postgres connect_timeout=10");
        let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("failed to connect to port {port}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A storage client for the cluster's daemons (status, digests).
    pub fn storage_client(&self) -> anyhow::Result<StorageClient> {
        Ok(StorageClient::new(self.config.storage.clone(), &self.config.tls_dir())?)
    }

    /// Status of every daemon; fails if any does not answer.
    pub async fn storage_status(&self) -> anyhow::Result<Vec<NodeStatus>> {
        let reports = node_status(self.config.storage.clone(), &self.config.tls_dir()).await?;
        reports.into_iter().map(|r| r.status.with_context(|| format!("{} does not answer", r.node.name))).collect()
    }

    /// Per protection group, each daemon's page digest as of `lsn`.
    pub async fn digests(
        &self,
        lsn: Lsn,
    ) -> anyhow::Result<BTreeMap<ProtectionGroupId, BTreeMap<NodeId, Vec<PageDigest>>>> {
        let client = self.storage_client()?;
        let statuses = self.storage_status().await?;
        let mut out: BTreeMap<ProtectionGroupId, BTreeMap<NodeId, Vec<PageDigest>>> = BTreeMap::new();
        for status in &statuses {
            for segment in &status.segments {
                let pages = client
                    .digest(status.node, segment.protection_group, lsn)
                    .await
                    .with_context(|| format!("digest of {} on {}", segment.protection_group, status.node))?;
                out.entry(segment.protection_group).or_default().insert(status.node, pages);
            }
        }
        client.close();
        Ok(out)
    }

    /// The last `lines` lines of one process's log.
    pub fn log_tail(&self, process: &str, lines: usize) -> String {
        let path = self.config.data_dir.join("logs").join(format!("{process}.log"));
        let body = std::fs::read_to_string(path).unwrap_or_default();
        let all: Vec<&str> = body.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The tail of every process's log, for failure messages.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(entries) = std::fs::read_dir(self.config.data_dir.join("logs")) {
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths {
                let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                let _ = write!(text, "\n--- {name} ---\n{}", self.log_tail(&name, 15));
            }
        }
        text
    }

    /// Lines of every log containing ` WARN ` or ` ERROR `, with the process name.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.config.data_dir.join("logs")) {
            for path in entries.flatten().map(|e| e.path()) {
                let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                let body = std::fs::read_to_string(&path).unwrap_or_default();
                out.extend(
                    body.lines()
                        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                        .map(|l| format!("{name}: {l}")),
                );
            }
        }
        out
    }
}

/// Set (to anything) to keep a harness cluster's directory after the test.
pub const KEEP_ENV: &str = "BOREALIS_KEEP_TEST_DIR";

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        self.kill_all();
        if std::env::var_os(KEEP_ENV).is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::TempDir::new().expect("a temporary directory"));
            eprintln!("kept the cluster directory {}", dir.keep().display());
        }
    }
}
