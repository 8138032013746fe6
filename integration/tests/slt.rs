//! The SQL logic tests: every `sql/tests/slt/*.slt` file is its own test,
//! run against a real Borealis cluster through tokio-postgres, and the files
//! marked `# pg_compat` also against a real PostgreSQL server, where they
//! must give the same answers.
//!
//! Method: the files are in the `sqllogictest` crate's format and run by its
//! runner; the adapter sends each record with the simple query protocol, so
//! values are compared exactly as the server's text output (as psql shows
//! them), joined by one space, NULL as `NULL` and the empty string as
//! `(empty)`. Error records name the SQLSTATE, `statement error (23505)`,
//! and match only that code. A file stops at its first failing record; on
//! Borealis the failure shows the tail of the writer's log.
//!
//! Isolation: Borealis has no CREATE DATABASE, so each file gets a fresh
//! cluster of its own (six storage daemons and a writer, about a second to
//! start); the PostgreSQL server is started once and each file gets a fresh
//! database in it. A file sees nothing of another's tables, roles or
//! sequences on Borealis; on PostgreSQL roles are cluster-wide, so a
//! comparable file must not depend on roles another file creates.
//!
//! Records this suite adds to the format:
//! - `system ok` + `restart` (spelt as a system record so that the crate's
//!   parser takes it; no other command is allowed, a file runs no shell): on
//!   Borealis, SIGKILL the writer process and start it again on the same
//!   volume (durability, recovery, the catalog on pages); on PostgreSQL,
//!   only a new session (its durability is not under test). Sessions end
//!   either way: the runner's connections and `control` settings start
//!   afresh.
//! - `COPY ... FROM STDIN` as a statement's first line, its rows on the
//!   lines after it (tab-separated, as psql scripts write them, optionally
//!   ended by `\.`); `statement count N` checks the rows copied.
//! - `COPY ... TO STDOUT` as a query: each line a row, its tab-separated
//!   fields the values, as COPY writes them (`\N` for NULL).
//!
//! In a comparable file, `skipif borealis` marks a record Borealis cannot
//! run yet (the answer is PostgreSQL's), `onlyif borealis` what it does
//! instead (usually 0A000), and `skipif postgres` an answer that depends on
//! the PostgreSQL host; each with a comment saying why.
//!
//! `SLT_POSTGRES=off` skips the PostgreSQL runs (for a machine without the
//! server package); `make test` installs it, so CI runs them.

use anyhow::{Context, bail};
use borealis_integration::bench::systems::{Endpoints, Postgres};
use borealis_integration::processes::ProcessCluster;
use libtest_mimic::{Arguments, Failed, Trial};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Record, Runner};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The marker line that puts a file in the PostgreSQL-comparable set.
const PG_COMPAT_MARKER: &str = "# pg_compat";
/// The one command a `system ok` record may hold.
const RESTART_COMMAND: &str = "restart";

/// One server session, as the runner drives it.
struct Session {
    client: tokio_postgres::Client,
    engine: &'static str,
}

/// A failed statement, shown with its SQLSTATE and the server's message
/// (tokio-postgres' own Display says only "db error").
#[derive(Debug)]
struct SessionError(tokio_postgres::Error);

impl std::fmt::Display for SessionError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(error) => write!(formatter, "{} {}: {}", error.severity(), error.code().code(), error.message()),
            None => write!(formatter, "{}", self.0),
        }
    }
}

impl std::error::Error for SessionError {}

impl Session {
    async fn connect(conninfo: &str, engine: &'static str) -> Result<Session, SessionError> {
        let (client, connection) =
            tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await.map_err(SessionError)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Session { client, engine })
    }
}

#[async_trait::async_trait]
impl AsyncDB for Session {
    type Error = SessionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SessionError> {
        match copy_direction(sql) {
            Some(CopyDirection::In) => return self.copy_in(sql).await,
            Some(CopyDirection::Out) => return self.copy_out(sql).await,
            None => {}
        }
        use tokio_postgres::SimpleQueryMessage;
        let mut rows = Vec::new();
        let mut columns = None;
        let mut affected = 0;
        for message in self.client.simple_query(sql).await.map_err(SessionError)? {
            match message {
                SimpleQueryMessage::RowDescription(description) => columns = Some(description.len()),
                SimpleQueryMessage::Row(row) => {
                    rows.push((0..row.len()).map(|index| value_text(row.get(index))).collect::<Vec<_>>());
                }
                SimpleQueryMessage::CommandComplete(count) => affected = count,
                _ => {}
            }
        }
        Ok(match columns {
            Some(count) => DBOutput::Rows { types: vec![DefaultColumnType::Any; count], rows },
            None => DBOutput::StatementComplete(affected),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        self.engine
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }

    fn error_sql_state(error: &SessionError) -> Option<String> {
        error.0.code().map(|code| code.code().to_string())
    }
}

enum CopyDirection {
    In,
    Out,
}

/// Whether `sql` is COPY ... FROM STDIN or COPY ... TO STDOUT, which the
/// simple query protocol cannot carry through tokio-postgres.
fn copy_direction(sql: &str) -> Option<CopyDirection> {
    let statement = sql.lines().next()?.to_ascii_uppercase();
    if !statement.trim_start().starts_with("COPY ") {
        return None;
    }
    if statement.contains("FROM STDIN") {
        Some(CopyDirection::In)
    } else if statement.contains("TO STDOUT") {
        Some(CopyDirection::Out)
    } else {
        None
    }
}

impl Session {
    /// `COPY ... FROM STDIN` on the record's first line, the data on the
    /// lines after it (up to `\.`, as psql scripts write it): the count is
    /// the rows copied.
    async fn copy_in(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SessionError> {
        use futures::SinkExt;
        let mut lines = sql.lines();
        let statement = lines.next().unwrap_or_default();
        let mut data = String::new();
        for line in lines.take_while(|line| *line != "\\.") {
            data.push_str(line);
            data.push('\n');
        }
        let sink = self.client.copy_in(statement).await.map_err(SessionError)?;
        futures::pin_mut!(sink);
        sink.send(std::io::Cursor::new(data.into_bytes())).await.map_err(SessionError)?;
        let count = sink.finish().await.map_err(SessionError)?;
        Ok(DBOutput::StatementComplete(count))
    }

    /// `COPY ... TO STDOUT`: each line a row, its tab-separated fields the
    /// row's values (COPY's own text: `\N` for NULL, escapes as sent).
    async fn copy_out(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SessionError> {
        use futures::TryStreamExt;
        let stream = self.client.copy_out(sql).await.map_err(SessionError)?;
        let chunks: Vec<_> = stream.try_collect().await.map_err(SessionError)?;
        let text = String::from_utf8_lossy(&chunks.concat()).into_owned();
        let rows: Vec<Vec<String>> =
            text.lines().map(|line| line.split('\t').map(|field| value_text(Some(field))).collect()).collect();
        let columns = rows.first().map_or(1, Vec::len);
        Ok(DBOutput::Rows { types: vec![DefaultColumnType::Any; columns], rows })
    }
}

/// A value as the files write it: NULL as `NULL`, '' as `(empty)`.
fn value_text(value: Option<&str>) -> String {
    match value {
        None => "NULL".to_string(),
        Some("") => "(empty)".to_string(),
        Some(text) => text.to_string(),
    }
}

/// What a file runs against.
enum Target {
    /// A fresh Borealis cluster for this file alone.
    Borealis(Box<ProcessCluster>),
    /// A fresh database in the shared PostgreSQL server.
    Postgres { conninfo: String },
}

impl Target {
    fn engine(&self) -> &'static str {
        match self {
            Target::Borealis(_) => "borealis",
            Target::Postgres { .. } => "postgres",
        }
    }

    fn conninfo(&self) -> String {
        match self {
            Target::Borealis(cluster) => format!(
                "host=127.0.0.1 port={} user=postgres password={} dbname=postgres connect_timeout=10",
                cluster.ports.writer,
                borealis_integration::PASSWORD
            ),
            Target::Postgres { conninfo } => conninfo.clone(),
        }
    }

    /// The `restart` record: see the module doc.
    async fn restart(&mut self) -> anyhow::Result<()> {
        if let Target::Borealis(cluster) = self {
            cluster.kill9("writer")?;
            cluster.start_instance("writer").await?;
        }
        Ok(())
    }

    fn runner(&self) -> Runner<Session, impl sqllogictest::MakeConnection<Conn = Session> + use<>> {
        let conninfo = self.conninfo();
        let engine = self.engine();
        let mut runner = Runner::new(move || {
            let conninfo = conninfo.clone();
            async move { Session::connect(&conninfo, engine).await }
        });
        runner.add_label(engine);
        // Values compare exactly, spaces included (the crate's default
        // collapses runs of whitespace, which would hide char(n) padding).
        runner.with_normalizer(String::clone);
        runner
    }
}

/// Runs every record of `path` against `target`.
async fn run_file(path: &Path, mut target: Target) -> anyhow::Result<()> {
    let records = sqllogictest::parse_file::<DefaultColumnType>(path)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("failed to parse {}", path.display()))?;
    let mut runner = target.runner();
    for record in records {
        if let Record::System { loc, command, .. } = &record {
            if command.trim() != RESTART_COMMAND {
                bail!("{loc}: unknown system command {command:?}: only `{RESTART_COMMAND}` is allowed");
            }
            runner.shutdown_async().await;
            target.restart().await.with_context(|| format!("{loc}: restart failed"))?;
            runner = target.runner();
            continue;
        }
        if let Err(error) = runner.run_async(record).await {
            let log = match &target {
                Target::Borealis(cluster) => format!("\nwriter log tail:\n{}", cluster.log_tail("writer", 20)),
                Target::Postgres { .. } => String::new(),
            };
            bail!("{}{log}", error.display(false));
        }
    }
    runner.shutdown_async().await;
    Ok(())
}

async fn borealis_target() -> anyhow::Result<Target> {
    let mut cluster = ProcessCluster::new(0, 5000)?;
    cluster.start_all().await?;
    Ok(Target::Borealis(Box::new(cluster)))
}

/// The PostgreSQL server shared by the comparable files, started by the
/// first of them and stopped when the suite ends.
type SharedPostgres = Arc<Mutex<Option<Result<Postgres, String>>>>;

async fn postgres_target(server: &SharedPostgres, name: &str) -> anyhow::Result<Target> {
    let endpoints: Endpoints = {
        let mut slot = server.lock().expect("no test panics while holding the server");
        let started = slot.get_or_insert_with(|| {
            let work_dir = std::env::temp_dir();
            Postgres::start_without_fsync(&work_dir).map_err(|error| format!("{error:#}"))
        });
        match started {
            Ok(postgres) => postgres.endpoints(),
            Err(error) => bail!("PostgreSQL did not start: {error}"),
        }
    };
    let database = format!("slt_{name}");
    let admin = endpoints.connect_write().await?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {database}")).await?;
    admin.batch_execute(&format!("CREATE DATABASE {database}")).await?;
    let conninfo = endpoints.conninfo(endpoints.write_port).replace("dbname=postgres", &format!("dbname={database}"));
    Ok(Target::Postgres { conninfo })
}

fn slt_files() -> anyhow::Result<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("failed to list {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|path| path.extension().is_some_and(|extension| extension == "slt"));
    files.sort();
    Ok(files)
}

fn is_pg_compat(path: &Path) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().take_while(|line| line.starts_with('#')).any(|line| line.trim() == PG_COMPAT_MARKER))
}

fn block_on(future: impl std::future::Future<Output = anyhow::Result<()>>) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| Failed::from(format!("failed to build a runtime: {error}")))?;
    runtime.block_on(future).map_err(|error| Failed::from(format!("{error:#}")))
}

fn main() -> anyhow::Result<()> {
    let arguments = Arguments::from_args();
    let postgres_wanted = std::env::var("SLT_POSTGRES").map_or(true, |value| value != "off");
    let server: SharedPostgres = Arc::new(Mutex::new(None));
    let mut trials = Vec::new();
    for path in slt_files()? {
        let name = path.file_stem().and_then(|stem| stem.to_str()).context("an .slt file name is UTF-8")?.to_string();
        let file = path.clone();
        trials.push(Trial::test(format!("borealis::{name}"), move || {
            block_on(async move { run_file(&file, borealis_target().await?).await })
        }));
        if is_pg_compat(&path)? {
            let server = Arc::clone(&server);
            trials.push(
                Trial::test(format!("postgres::{name}"), move || {
                    block_on(async move { run_file(&path, postgres_target(&server, &name).await?).await })
                })
                .with_ignored_flag(!postgres_wanted),
            );
        }
    }
    let conclusion = libtest_mimic::run(&arguments, trials);
    // Stop PostgreSQL before exiting: `exit` runs no destructors.
    drop(server.lock().expect("the trials are over").take());
    conclusion.exit()
}
