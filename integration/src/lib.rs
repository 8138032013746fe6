//! The integration harness: a whole Borealis cluster started by the real
//! `borealis up`, on loopback ports chosen at run time, in a temporary
//! directory, driven by real clients (tokio-postgres, psql).
//!
//! A `Cluster` owns the launcher's process group: dropping it stops every
//! process it started; `kill9` kills them all with SIGKILL, as a power loss
//! would, and `start` brings the same data directory back.

pub mod bench;
pub mod processes;

use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a cluster may take to come up (daemons, recovery, instances).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The superuser password every test cluster uses.
pub const PASSWORD: &str = "test-password";

/// The `borealis` binary: `BOREALIS_BIN` when set, else the one built next
/// to the test executable.
pub fn borealis_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("BOREALIS_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/borealis
    let profile_dir = exe.parent().and_then(Path::parent).context("test binary has no profile directory")?;
    let binary = profile_dir.join("borealis");
    if !binary.exists() {
        bail!("{} is missing: run `cargo build --workspace --bins` (make test does)", binary.display());
    }
    Ok(binary)
}

/// `count` distinct loopback port numbers, each free for both TCP and UDP
/// (storage daemons listen on UDP, instances on TCP, and the commit stream
/// on UDP under the writer's TCP port number). Every socket stays bound until
/// all are chosen, so no number is handed out twice, and a number this
/// process handed out before is never handed out again (tests start
/// clusters side by side). The numbers come from below the kernel's
/// ephemeral range, so that no socket bound to port 0 (a QUIC client's, a
/// connection's) takes one before its process binds it.
pub fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (low, high) = (10_000u16, ephemeral_low.max(12_000));
    // Processes start at different points of the range.
    let span = u32::from(high - low);
    let mut next = low + (std::process::id() * 7_919 % span) as u16;
    let mut held = Vec::with_capacity(count);
    let mut ports = Vec::with_capacity(count);
    for _ in 0..span {
        if ports.len() == count {
            break;
        }
        let port = next;
        next = if next + 1 >= high { low } else { next + 1 };
        if handed_out.contains(&port) {
            continue;
        }
        let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) else { continue };
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
            held.push((tcp, udp));
            ports.push(port);
        }
    }
    anyhow::ensure!(ports.len() == count, "found {} of {count} free loopback ports", ports.len());
    handed_out.extend(&ports);
    Ok(ports)
}

/// Addresses of one test cluster.
#[derive(Clone, Debug)]
pub struct Ports {
    pub storage: Vec<u16>,
    pub writer: u16,
    pub readers: Vec<u16>,
    pub cluster: u16,
    pub reader: u16,
}

impl Ports {
    /// Fresh loopback ports, all distinct, for a cluster with `readers` readers.
    pub fn pick(readers: usize) -> anyhow::Result<Ports> {
        let mut ports = free_ports(6 + 1 + readers + 2)?.into_iter();
        let mut next = || ports.next().expect("free_ports returns as many as asked");
        Ok(Ports {
            storage: (0..6).map(|_| next()).collect(),
            writer: next(),
            readers: (0..readers).map(|_| next()).collect(),
            cluster: next(),
            reader: next(),
        })
    }
}

/// A cluster file for `ports`, with small protection groups so that a test's
/// data spans several of them.
pub fn cluster_file(ports: &Ports, protection_group_size_bytes: u64) -> String {
    let mut text = format!(
        "[cluster]\nname = \"test\"\npassword = \"{PASSWORD}\"\n\n[volume]\nprotection_group_size_bytes = {protection_group_size_bytes}\ncommit_timeout_ms = 5000\n\n"
    );
    let zones = ["az-a", "az-a", "az-b", "az-b", "az-c", "az-c"];
    for (index, port) in ports.storage.iter().enumerate() {
        let _ = write!(
            text,
            "[[storage]]\nname = \"storage-{}\"\naz = \"{}\"\naddr = \"127.0.0.1:{port}\"\n\n",
            index + 1,
            zones[index]
        );
    }
    let _ =
        write!(text, "[[instance]]\nname = \"writer\"\nrole = \"writer\"\naddr = \"127.0.0.1:{}\"\n\n", ports.writer);
    for (index, port) in ports.readers.iter().enumerate() {
        let _ = write!(
            text,
            "[[instance]]\nname = \"reader-{}\"\nrole = \"reader\"\naddr = \"127.0.0.1:{port}\"\n\n",
            index + 1
        );
    }
    let _ = write!(
        text,
        "[proxy]\ncluster_addr = \"127.0.0.1:{}\"\nreader_addr = \"127.0.0.1:{}\"\n",
        ports.cluster, ports.reader
    );
    text
}

/// A running (or stopped) test cluster.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub ports: Ports,
    launcher: Option<Child>,
}

impl Cluster {
    /// Writes a cluster file with fresh ports and starts the cluster.
    pub fn start_new(readers: usize) -> anyhow::Result<Cluster> {
        Cluster::start_new_with(readers, "")
    }

    /// Like [`Cluster::start_new`], with `cluster_settings` (TOML lines)
    /// added to the file's `[cluster]` section, e.g. `client_tls = "required"`.
    pub fn start_new_with(readers: usize, cluster_settings: &str) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let ports = Ports::pick(readers)?;
        let file =
            cluster_file(&ports, 256 * 1024).replacen("[cluster]\n", &format!("[cluster]\n{cluster_settings}\n"), 1);
        std::fs::write(dir.path().join("cluster.toml"), file)?;
        let mut cluster = Cluster { dir, ports, launcher: None };
        cluster.start()?;
        Ok(cluster)
    }

    /// The cluster file's path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("cluster.toml")
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A `borealis` command for this cluster's files.
    pub fn command(&self, subcommand: &str) -> anyhow::Result<Command> {
        let mut command = Command::new(borealis_binary()?);
        command.arg(subcommand).arg("--config").arg(self.config_path()).arg("--data-dir").arg(self.data_dir());
        command.env_remove("BOREALIS_PASSWORD");
        Ok(command)
    }

    /// Starts `borealis up` and waits until the cluster endpoint answers SQL.
    pub fn start(&mut self) -> anyhow::Result<()> {
        assert!(self.launcher.is_none(), "cluster already running");
        let log_path = self.dir.path().join("up.log");
        // Only what this start writes counts: earlier starts' banners are history.
        let log_start = std::fs::metadata(&log_path).map_or(0, |m| m.len() as usize);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let mut command = self.command("up")?;
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0);
        self.launcher = Some(command.spawn().context("failed to start borealis up")?);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.launcher.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.launcher = None;
                bail!("borealis up exited with {status}:\n{}", self.log());
            }
            if self.up_log_says_ready(log_start) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("cluster not up after {} s:\n{}", START_TIMEOUT.as_secs(), self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn up_log_says_ready(&self, from_byte: usize) -> bool {
        std::fs::read_to_string(self.dir.path().join("up.log"))
            .is_ok_and(|text| text.get(from_byte..).is_some_and(|new| new.contains("is up")))
    }

    /// The launcher's output and the tail of every process log, for failures.
    pub fn log(&self) -> String {
        let mut text = std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default();
        if let Ok(entries) = std::fs::read_dir(self.data_dir().join("logs")) {
            for entry in entries.flatten() {
                let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let lines: Vec<&str> = body.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                let _ = write!(text, "\n--- {} ---\n{tail}", entry.path().display());
            }
        }
        text
    }

    /// Stops the cluster as Ctrl-C does, waiting for a clean exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        match self.launcher.take() {
            Some(child) => stop_launcher(child),
            None => Ok(()),
        }
    }

    /// Kills the launcher and every process of the cluster with SIGKILL.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.launcher.take() {
            signal_group(&child, libc::SIGKILL);
            child.wait()?;
            // Children die with the launcher; give the kernel a moment to reap
            // them and release their ports.
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(())
    }

    /// The pid of the cluster's process `name` (e.g. `writer`, `storage-2`),
    /// found by its command line: the launcher restarts children, so pids change.
    pub fn pid_of(&self, name: &str) -> Option<libc::pid_t> {
        let data_dir = self.data_dir();
        let data_dir = data_dir.to_string_lossy();
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
            let pid: libc::pid_t = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<String> =
                cmdline.split(|b| *b == 0).map(|arg| String::from_utf8_lossy(arg).into_owned()).collect();
            let ours = args.iter().any(|arg| arg == data_dir.as_ref());
            let named = args.windows(2).any(|pair| pair[0] == "--name" && pair[1] == name);
            (ours && named).then_some(pid)
        })
    }

    /// Kills the cluster's process `name` with SIGKILL; true if it was found.
    pub fn kill9_process(&self, name: &str) -> bool {
        match self.pid_of(name) {
            // SAFETY: signalling a process of this test's cluster.
            Some(pid) => unsafe { libc::kill(pid, libc::SIGKILL) == 0 },
            None => false,
        }
    }

    /// The address of the cluster endpoint.
    pub fn cluster_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.cluster))
    }

    /// A tokio-postgres connection string for `port`.
    pub fn conninfo(&self, port: u16) -> String {
        format!("host=127.0.0.1 port={port} user=postgres password={PASSWORD} dbname=postgres connect_timeout=10")
    }

    /// Connects with tokio-postgres to `port` and drives the connection in the background.
    pub async fn connect(&self, port: u16) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(&self.conninfo(port), tokio_postgres::NoTls)
            .await
            .with_context(|| format!("failed to connect to port {port}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Connects to the instance on `port` once it answers a query again
    /// (after the launcher restarted it), waiting at most a minute.
    pub async fn reconnect(&self, port: u16) -> anyhow::Result<tokio_postgres::Client> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(client) = self.connect(port).await
                && client.simple_query("SELECT 1").await.is_ok()
            {
                return Ok(client);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "instance on port {port} did not come back:
{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `sql` with psql against `port`; returns (success, stdout, stderr).
    pub fn psql(&self, port: u16, sql: &str) -> anyhow::Result<(bool, String, String)> {
        self.psql_conninfo(&format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"), sql)
    }

    /// Runs `sql` with psql on a libpq connection string (TLS options and all).
    pub fn psql_conninfo(&self, conninfo: &str, sql: &str) -> anyhow::Result<(bool, String, String)> {
        self.psql_with(conninfo, sql, &[])
    }

    /// [`Cluster::psql_conninfo`] with more environment (`PGTZ`, ...).
    pub fn psql_with(&self, conninfo: &str, sql: &str, env: &[(&str, &str)]) -> anyhow::Result<(bool, String, String)> {
        let output = Command::new("psql")
            .envs(env.iter().copied())
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo])
            .arg("-c")
            .arg(sql)
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .context("failed to run psql (make deps installs it)")?;
        Ok((
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }
}

/// Sends `signal` to the process group led by `child` (started with `process_group(0)`).
pub fn signal_group(child: &Child, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else { return };
    // SAFETY: signalling the process group created for this child.
    unsafe {
        libc::killpg(pid, signal);
    }
}

/// Stops a `borealis up` started in its own process group as Ctrl-C does,
/// waiting up to 30 s for a clean exit, then SIGKILLs the whole group so no
/// child outlives it.
pub fn stop_launcher(mut child: Child) -> anyhow::Result<()> {
    signal_group(&child, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            signal_group(&child, libc::SIGKILL);
            child.wait()?;
            bail!("borealis up did not stop in 30 s; killed it");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal_group(&child, libc::SIGKILL);
    Ok(())
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.stop().is_err() {
            let _ = self.kill9();
        }
    }
}

/// The SQLSTATE of a tokio-postgres error, if the server sent one.
pub fn sqlstate(error: &tokio_postgres::Error) -> Option<String> {
    error.code().map(|code| code.code().to_string())
}
