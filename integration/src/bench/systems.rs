//! The two systems under test, each behind a guard that stops it on drop.
//!
//! - `Postgres`: a throwaway PostgreSQL cluster made by `initdb` in a
//!   temporary directory, listening on 127.0.0.1 at a port picked at run time,
//!   with the default durability (fsync on, synchronous_commit on). As root,
//!   initdb refuses to run, so every PostgreSQL binary runs as the `postgres`
//!   user through `runuser`, and the directory is handed to that user.
//! - `Borealis`: a local cluster started by `borealis up` from a cluster file
//!   written with run-time ports (`crate::cluster_file`).
//!
//! Both use the same superuser name and password, so a workload sees the two
//! systems only as two `Endpoints`.

use anyhow::{Context, bail};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long either system may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// Protection group size of the bench cluster: the production default
/// (10 GiB), so a run measures the layout a real volume would have.
const PROTECTION_GROUP_SIZE_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// The user PostgreSQL's binaries run as when the bench runs as root.
const POSTGRES_OS_USER: &str = "postgres";

/// Which system a figure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Borealis,
    Postgres,
}

impl System {
    /// The name shown in progress messages.
    pub fn name(self) -> &'static str {
        match self {
            System::Borealis => "Borealis",
            System::Postgres => "PostgreSQL",
        }
    }
}

/// Where a workload connects: the read-write endpoint and, for Borealis,
/// the reader endpoint; plus the data directory (for the fsync probe).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub system: System,
    /// Port of the read-write endpoint (Borealis: the cluster endpoint).
    pub write_port: u16,
    /// Port for read-only queries (Borealis: the reader endpoint;
    /// PostgreSQL: the same server).
    pub read_port: u16,
    /// The directory the system keeps its data in.
    pub data_dir: PathBuf,
}

impl Endpoints {
    /// A tokio-postgres connection string for `port`.
    pub fn conninfo(&self, port: u16) -> String {
        format!(
            "host=127.0.0.1 port={port} user=postgres password={} dbname=postgres connect_timeout=10",
            crate::PASSWORD
        )
    }

    /// Connects to `port` and drives the connection in the background.
    pub async fn connect(&self, port: u16) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(&self.conninfo(port), tokio_postgres::NoTls)
            .await
            .with_context(|| format!("failed to connect to {} on port {port}", self.system.name()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Connects to the read-write endpoint.
    pub async fn connect_write(&self) -> anyhow::Result<tokio_postgres::Client> {
        self.connect(self.write_port).await
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Finds a PostgreSQL program on PATH or in `/usr/lib/postgresql/<version>/bin`
/// (newest version first), as Debian's packages install them.
pub fn find_postgres_program(name: &str) -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join(name)).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|entry| entry.path().join("bin").join(name)).collect())
        .unwrap_or_default();
    versioned.sort_by_key(|path| std::cmp::Reverse(postgres_version_of(path)));
    on_path.into_iter().chain(versioned).find(|path| path.is_file()).with_context(|| {
        format!("{name} not found on PATH or in /usr/lib/postgresql/*/bin: run scripts/install-bench-deps.sh")
    })
}

/// The major version in a path like /usr/lib/postgresql/15/bin/initdb.
fn postgres_version_of(path: &Path) -> u32 {
    path.components().filter_map(|component| component.as_os_str().to_str()?.parse().ok()).next().unwrap_or(0)
}

/// A throwaway PostgreSQL server, stopped on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    pg_ctl: PathBuf,
    running: bool,
    durable: bool,
}

impl Postgres {
    /// Runs initdb in a new directory under `work_dir` and starts the server
    /// with the default durability (what the bench measures).
    pub fn start(work_dir: &Path) -> anyhow::Result<Postgres> {
        Postgres::start_with(work_dir, true)
    }

    /// Like [`Postgres::start`] with fsync off: for tests that compare
    /// answers, where a shutdown checkpoint that syncs every database they
    /// made would only cost time.
    pub fn start_without_fsync(work_dir: &Path) -> anyhow::Result<Postgres> {
        Postgres::start_with(work_dir, false)
    }

    fn start_with(work_dir: &Path, durable: bool) -> anyhow::Result<Postgres> {
        let initdb = find_postgres_program("initdb")?;
        let pg_ctl = find_postgres_program("pg_ctl")?;
        let dir = tempfile::Builder::new().prefix("bench-postgres-").tempdir_in(work_dir)?;
        let port = crate::free_ports(1)?[0];
        if is_root() {
            give_to_postgres_user(dir.path())?;
        }
        let mut postgres = Postgres { dir, port, pg_ctl, running: false, durable };
        std::fs::write(postgres.dir.path().join("password"), crate::PASSWORD)?;
        postgres.give_file_to_owner("password")?;
        let data = postgres.data_dir();
        let status = postgres
            .as_owner(&initdb)
            .args(["--auth=scram-sha-256", "--username=postgres", "--encoding=UTF8", "--locale=C.UTF-8"])
            .arg(format!("--pwfile={}", postgres.dir.path().join("password").display()))
            .arg("-D")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("failed to run initdb")?;
        if !status.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&status.stderr).trim());
        }
        postgres.pg_ctl_start()?;
        Ok(postgres)
    }

    fn pg_ctl_start(&mut self) -> anyhow::Result<()> {
        let sync = if self.durable { "on" } else { "off" };
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync={sync} -c synchronous_commit={sync} -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        let output = self
            .as_owner(&self.pg_ctl)
            .arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", &START_TIMEOUT.as_secs().to_string(), "-o", &options])
            .stdin(Stdio::null())
            .output()
            .context("failed to run pg_ctl start")?;
        if !output.status.success() {
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("pg_ctl start failed: {}\n{log_text}", String::from_utf8_lossy(&output.stderr).trim());
        }
        self.running = true;
        Ok(())
    }

    /// A command that runs `program` as the data directory's owner.
    fn as_owner(&self, program: &Path) -> Command {
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", POSTGRES_OS_USER, "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn give_file_to_owner(&self, name: &str) -> anyhow::Result<()> {
        if is_root() { give_to_postgres_user(&self.dir.path().join(name)) } else { Ok(()) }
    }

    /// The PostgreSQL data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where workloads connect.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints { system: System::Postgres, write_port: self.port, read_port: self.port, data_dir: self.data_dir() }
    }

    /// Stops the server (fast shutdown), waiting for it to exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        let status = self
            .as_owner(&self.pg_ctl)
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("failed to run pg_ctl stop")?;
        if !status.success() {
            self.kill_postmaster();
            bail!("pg_ctl stop failed ({status}); killed the postmaster");
        }
        Ok(())
    }

    /// SIGKILLs the postmaster named in postmaster.pid, as a last resort.
    fn kill_postmaster(&self) {
        let pid_file = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).unwrap_or_default();
        if let Some(pid) = pid_file.lines().next().and_then(|line| line.trim().parse::<libc::pid_t>().ok())
            && pid > 1
        {
            // SAFETY: sending a signal to the postmaster this guard started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn give_to_postgres_user(path: &Path) -> anyhow::Result<()> {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{POSTGRES_OS_USER}:"))
        .arg(path)
        .status()
        .context("failed to run chown")?;
    if !status.success() {
        bail!(
            "chown {POSTGRES_OS_USER} {} failed: is there a `postgres` user? (install-bench-deps.sh makes one)",
            path.display()
        );
    }
    Ok(())
}

/// A Borealis local cluster started with `borealis up`, stopped on drop.
pub struct Borealis {
    dir: tempfile::TempDir,
    ports: crate::Ports,
    launcher: Option<Child>,
}

impl Borealis {
    /// Writes a cluster file with fresh ports (and each instance's buffer
    /// cache of `buffer_cache_bytes`) under `work_dir` and runs `binary up`
    /// until it prints "is up".
    pub fn start(binary: &Path, work_dir: &Path, readers: usize, buffer_cache_bytes: u64) -> anyhow::Result<Borealis> {
        let dir = tempfile::Builder::new().prefix("bench-borealis-").tempdir_in(work_dir)?;
        let ports = crate::Ports::pick(readers)?;
        let config = dir.path().join("cluster.toml");
        let text = crate::cluster_file(&ports, PROTECTION_GROUP_SIZE_BYTES).replacen(
            "[cluster]\n",
            &format!("[cluster]\nbuffer_cache_bytes = {buffer_cache_bytes}\n"),
            1,
        );
        std::fs::write(&config, text)?;
        let log = std::fs::File::create(dir.path().join("up.log"))?;
        let mut command = Command::new(binary);
        command.arg("up").arg("--config").arg(&config).arg("--data-dir").arg(dir.path().join("data"));
        command
            .env_remove("BOREALIS_PASSWORD")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let launcher = command.spawn().with_context(|| format!("failed to start {} up", binary.display()))?;
        let mut borealis = Borealis { dir, ports, launcher: Some(launcher) };
        borealis.wait_until_up()?;
        Ok(borealis)
    }

    fn wait_until_up(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.launcher.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.launcher = None;
                bail!("borealis up exited with {status}: {}", self.log_tail());
            }
            if std::fs::read_to_string(self.dir.path().join("up.log")).is_ok_and(|text| text.contains("is up")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("cluster not up after {} s: {}", START_TIMEOUT.as_secs(), self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines the launcher printed, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Where workloads connect.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            system: System::Borealis,
            write_port: self.ports.cluster,
            read_port: self.ports.reader,
            data_dir: self.dir.path().join("data"),
        }
    }

    /// If `borealis up` has exited on its own: its status and last lines.
    pub fn exited_early(&mut self) -> Option<String> {
        let status = self.launcher.as_mut()?.try_wait().ok()??;
        self.launcher = None;
        Some(format!("{status}: {}", self.log_tail()))
    }

    /// Stops the cluster as Ctrl-C does; SIGKILLs it after 30 s.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        match self.launcher.take() {
            Some(child) => crate::stop_launcher(child),
            None => Ok(()),
        }
    }
}

impl Drop for Borealis {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_debian_path() {
        assert_eq!(postgres_version_of(Path::new("/usr/lib/postgresql/15/bin/initdb")), 15);
        assert_eq!(postgres_version_of(Path::new("/usr/local/bin/initdb")), 0);
    }
}
