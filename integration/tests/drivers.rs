//! Real drivers and ORMs against a running cluster: psycopg 3, SQLAlchemy 2
//! (ORM over psycopg), node-postgres and pgjdbc.
//!
//! Goal: applications written for PostgreSQL connect and work unmodified.
//! Method: each test starts its own cluster and runs one client program from
//! `integration/clients/` with the connection in the libpq environment
//! variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), which psycopg
//! and node-postgres read themselves and the Java program reads by name. A
//! program runs every one of its checks, prints `ok`/`FAIL` per check and
//! exits non-zero if any failed; its output is shown on failure. Each
//! program is killed if it outlives `CLIENT_TIMEOUT`.
//!
//! `make deps` (scripts/install-test-deps.sh) installs the clients: a Python
//! virtual environment in `integration/clients/python/.venv`, `pg` in
//! `integration/clients/node/node_modules`, and Debian's pgjdbc.

use anyhow::{Context, bail};
use borealis_integration::{Cluster, PASSWORD};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one client program may run: each finishes in seconds; the bound
/// only keeps a hung driver from hanging the suite.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);
/// Debian's pgjdbc (package libpostgresql-jdbc-java).
const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Runs `command` with the cluster's connection in the environment, killing
/// it after `CLIENT_TIMEOUT`; fails with its output unless it exits 0.
fn run_client(cluster: &Cluster, mut command: Command, what: &str) -> anyhow::Result<String> {
    let log = tempfile::NamedTempFile::new()?;
    command
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", cluster.ports.cluster.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", PASSWORD)
        .env("PGDATABASE", "postgres")
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .env_remove("PGSSLMODE")
        .stdin(Stdio::null())
        .stdout(log.reopen()?)
        .stderr(log.reopen()?);
    let started = Instant::now();
    let mut child = command.spawn().with_context(|| format!("failed to start {what} (make deps installs it)"))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > CLIENT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let output = std::fs::read_to_string(log.path()).unwrap_or_default();
            bail!("{what} did not finish in {} s:\n{output}", CLIENT_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(log.path())?;
    if !status.success() {
        bail!("{what} failed ({status}):\n{output}\n--- cluster ---\n{}", cluster.log());
    }
    Ok(output)
}

fn python() -> anyhow::Result<PathBuf> {
    let python = clients_dir().join("python/.venv/bin/python");
    if !python.exists() {
        bail!("{} is missing: run `make deps`", python.display());
    }
    Ok(python)
}

fn run_python(script: &str) -> anyhow::Result<()> {
    let cluster = Cluster::start_new(0)?;
    let mut command = Command::new(python()?);
    command.arg(clients_dir().join("python").join(script)).env("PYTHONDONTWRITEBYTECODE", "1");
    let output = run_client(&cluster, command, script)?;
    assert!(output.contains(" passed, 0 failed"), "{output}");
    Ok(())
}

#[test]
fn psycopg() -> anyhow::Result<()> {
    run_python("test_psycopg.py")
}

#[test]
fn sqlalchemy_orm() -> anyhow::Result<()> {
    run_python("test_sqlalchemy.py")
}

#[test]
fn node_postgres() -> anyhow::Result<()> {
    let dir = clients_dir().join("node");
    if !dir.join("node_modules/pg").exists() {
        bail!("{} has no node_modules/pg: run `make deps`", dir.display());
    }
    let cluster = Cluster::start_new(0)?;
    let mut command = Command::new("node");
    command.arg(dir.join("test_pg.js")).current_dir(&dir);
    let output = run_client(&cluster, command, "test_pg.js")?;
    assert!(output.contains(" passed, 0 failed"), "{output}");
    Ok(())
}

#[test]
fn pgjdbc() -> anyhow::Result<()> {
    if !Path::new(PGJDBC_JAR).exists() {
        bail!("{PGJDBC_JAR} is missing: run `make deps` (Debian's libpostgresql-jdbc-java)");
    }
    let classes = tempfile::tempdir()?;
    let source = clients_dir().join("java/JdbcClientTest.java");
    let javac = Command::new("javac")
        .args(["-encoding", "UTF-8", "-cp", PGJDBC_JAR, "-d"])
        .arg(classes.path())
        .arg(&source)
        .output()
        .context("failed to run javac")?;
    if !javac.status.success() {
        bail!("javac failed:\n{}{}", String::from_utf8_lossy(&javac.stdout), String::from_utf8_lossy(&javac.stderr));
    }
    let cluster = Cluster::start_new(0)?;
    let mut command = Command::new("java");
    let classpath = format!("{}:{PGJDBC_JAR}", classes.path().display());
    command.args(["-Dfile.encoding=UTF-8", "-Duser.timezone=UTC", "-cp", &classpath, "JdbcClientTest"]);
    let output = run_client(&cluster, command, "JdbcClientTest")?;
    assert!(output.contains(" passed, 0 failed"), "{output}");
    Ok(())
}
