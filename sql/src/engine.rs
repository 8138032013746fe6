//! The engine (one per instance) and its sessions (one per connection).
//!
//! A statement's path: [`Session::execute`] parses the SQL with sqlparser
//! (PostgreSQL dialect), then per statement:
//! 1. transaction control (BEGIN, COMMIT, ROLLBACK) is handled here;
//! 2. writes (INSERT, UPDATE, DELETE, CREATE/DROP TABLE and SEQUENCE, ...)
//!    run in a write transaction: the engine-wide write lock, a [`WriteSet`]
//!    over the newest commit, then the statement (`crate::dml`,
//!    `crate::ddl`); an autocommit statement commits at once, a block at
//!    COMMIT;
//! 3. queries are planned and run by DataFusion over the statement's
//!    [`Snapshot`]: a fresh read point per statement (read committed), or the
//!    open write transaction's private pages.
//!
//! Concurrency: one write transaction at a time per engine, serialized by an
//! async mutex taken at a transaction's first write and released at COMMIT or
//! ROLLBACK (or when the session drops or the block fails). Row locks come
//! later. Readers never wait for it.
//!
//! Error policy: a failed statement leaves the engine and the session usable;
//! inside a block it puts the block in the failed state (25P02 until
//! ROLLBACK, and COMMIT then rolls back), as PostgreSQL does.
//!
//! Sequences: a statement that took sequence values (nextval, setval,
//! defaults) writes their high-water marks before it returns, in a commit
//! of its own unless the sequence is the block's own (see `crate::sequence`
//! and `Engine::persist_sequences`).
//!
//! Savepoints (SAVEPOINT, ROLLBACK TO, RELEASE) copy the open write set:
//! ROLLBACK TO puts the copy back, and also leaves the failed state. While a
//! block has savepoints, failing it keeps its write transaction (and the
//! write lock), so that ROLLBACK TO can resume on the same committed state;
//! SET LOCAL values are not rolled back to a savepoint.

use crate::catalog::{Catalog, CatalogEntry, META_PAGE, Meta, QualifiedName, RoleDef, SearchPath, SequenceState};
use crate::copy::{CopyFormat, CopyParser, CopyTarget, Record};
use crate::error::{SqlError, sqlstate};
use crate::heap::{Snapshot, WriteSet};
use crate::pg_catalog::{self, PgCatalogSchema};
use crate::provider::{CatalogView, ROWS_SCHEMA, SEARCH_PATH_SCHEMA, TablesCatalog, TablesSchema};
use crate::sequence::{SequenceContext, Sequences};

/// Schema holding, while a RETURNING list is evaluated, the rows its statement wrote.
const RETURNING_SCHEMA: &str = "__borealis_returning";
use crate::settings::{self, Settings};
use crate::volume::Volume;
use crate::{ddl, dml, names, pg_rewrite, roles};
use borealis_storage::ids::{Lsn, PageId};
use borealis_storage::redo::RedoBody;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::{ScalarValue, TableReference};
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::ast::{
    ContextModifier, CopySource, CopyTarget as AstCopyTarget, Expr, Ident, ObjectType, Reset, SelectItem, Set,
    VacuumStatement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

/// The SQL engine of one instance (writer or reader) over one volume.
pub struct Engine {
    volume: Arc<dyn Volume>,
    read_only: bool,
    /// Held by the one open write transaction.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// The last catalog loaded, by catalog version.
    catalog_cache: Mutex<Arc<Catalog>>,
    /// Last page of each heap chain as of the newest commit (hints; see `WriteSet`).
    last_pages: Mutex<HashMap<PageId, PageId>>,
    /// Sequences' current values (see `crate::sequence`).
    sequences: Arc<Sequences>,
}

impl Engine {
    /// Opens the engine. A writer bootstraps an empty volume (meta page and
    /// empty catalog); a reader of an empty volume sees no tables until the
    /// writer has bootstrapped it.
    pub async fn open(volume: Arc<dyn Volume>, read_only: bool) -> Result<Arc<Engine>, SqlError> {
        let read_point = volume.read_point().await?;
        let meta = Meta::from_page(&*volume.read_page(META_PAGE, read_point).await?)?;
        if meta.is_none() && !read_only {
            let lsn = volume.commit(Meta::bootstrap_bodies()).await.map_err(|e| e.to_sql_error(true))?;
            tracing::info!(commit_lsn = %lsn, "bootstrapped an empty volume");
        }
        Ok(Arc::new(Engine {
            volume,
            read_only,
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            catalog_cache: Mutex::new(Arc::new(Catalog::default())),
            last_pages: Mutex::new(HashMap::new()),
            sequences: Arc::new(Sequences::default()),
        }))
    }

    /// A new session (connection state: transaction, DataFusion context),
    /// running as the bootstrap superuser until [`Session::set_user`].
    pub fn session(self: &Arc<Self>) -> Session {
        Session::new(Arc::clone(self))
    }

    /// The stored role `name` as the newest committed catalog has it (what
    /// a login checks); None for an unknown role and for the bootstrap
    /// superuser, which is not stored.
    pub async fn role(&self, name: &str) -> Result<Option<Arc<RoleDef>>, SqlError> {
        let snapshot = self.read_snapshot().await?;
        let catalog = self.catalog_at(&snapshot, false).await?;
        Ok(catalog.role(name).map(|entry| Arc::clone(&entry.def)))
    }

    /// The committed state a new statement reads.
    async fn read_snapshot(&self) -> Result<Snapshot, SqlError> {
        let read_point: Lsn = self.volume.read_point().await?;
        Ok(Snapshot::committed(Arc::clone(&self.volume), read_point))
    }

    /// The catalog `snapshot` sees, from the cache if its version matches.
    /// `private_ddl` says the snapshot holds uncommitted DDL, whose catalog
    /// must never be cached (its version number may be reused by another commit).
    async fn catalog_at(&self, snapshot: &Snapshot, private_ddl: bool) -> Result<Arc<Catalog>, SqlError> {
        if private_ddl {
            return Ok(Arc::new(Catalog::load(snapshot).await?));
        }
        let meta = Meta::from_page(&*snapshot.page(META_PAGE).await?)?;
        let version = meta.map_or(0, |m| m.catalog_version);
        {
            let cached = self.catalog_cache.lock().expect("catalog cache lock poisoned");
            if cached.version == version {
                return Ok(Arc::clone(&cached));
            }
        }
        let catalog = Arc::new(Catalog::load(snapshot).await?);
        tracing::debug!(catalog_version = catalog.version, read_point = %snapshot.read_point(), "catalog loaded");
        *self.catalog_cache.lock().expect("catalog cache lock poisoned") = Arc::clone(&catalog);
        Ok(catalog)
    }

    /// Starts a write transaction: waits for the write lock, then reads at
    /// the newest submitted commit (durable or not: see [`Engine::commit`]).
    async fn begin_write(&self) -> Result<WriteTxn, SqlError> {
        let guard = Arc::clone(&self.write_lock).lock_owned().await;
        let read_point = self.volume.write_read_point().await?;
        let last_pages = self.last_pages.lock().expect("last pages lock poisoned").clone();
        let writes = WriteSet::new(Arc::clone(&self.volume), read_point, last_pages);
        Ok(WriteTxn { _guard: guard, writes, private_ddl: false })
    }

    /// Loads the state of the sequences of `catalog` not in memory yet: from
    /// the newest commit, or from `txn` for a sequence it created. Readers
    /// hand out no values and load nothing.
    async fn load_sequences(&self, catalog: &Catalog, txn: Option<&WriteTxn>) -> Result<(), SqlError> {
        if self.read_only {
            return Ok(());
        }
        let missing = self.sequences.missing(catalog);
        if missing.is_empty() {
            return Ok(());
        }
        let newest = self.volume.write_read_point().await?;
        for entry in missing {
            let page = match txn {
                Some(txn) if txn.writes.holds(entry.def.page) => txn.writes.page(entry.def.page).await?,
                _ => self.volume.read_page(entry.def.page, newest).await?,
            };
            let state = SequenceState::from_page(&page)?;
            self.sequences.insert_loaded(Arc::clone(&entry.def), state);
        }
        Ok(())
    }

    /// Writes the sequences' high-water marks that moved (see
    /// `crate::sequence`) and waits until they are durable, so that no
    /// value handed out can be handed out again after a crash. A sequence
    /// created by `txn` keeps its mark in `txn`; the others are written in a
    /// commit of their own (nextval is not transactional). Without `txn`,
    /// the engine's write lock is taken for that commit.
    async fn persist_sequences(&self, catalog: &Catalog, txn: Option<&mut WriteTxn>) -> Result<(), SqlError> {
        if self.read_only || self.sequences.unpersisted(catalog).is_empty() {
            return Ok(());
        }
        let (mut own, mut txn) = match txn {
            Some(txn) => (None, Some(txn)),
            None => (Some(self.begin_write().await?), None),
        };
        // After the write lock (held by `txn` or `own`): lock order.
        let _persisting = self.sequences.persist_lock.lock().await;
        let unpersisted = self.sequences.unpersisted(catalog);
        let mut separate = match &own {
            Some(_) => None,
            None => {
                Some(WriteSet::new(Arc::clone(&self.volume), self.volume.write_read_point().await?, HashMap::new()))
            }
        };
        for (_, page, state) in &unpersisted {
            let body = RedoBody::UpdateTuple { page: *page, slot: 0, data: state.encode() };
            if let Some(own) = own.as_mut() {
                own.writes.apply(body).await?;
            } else if let Some(txn) = txn.as_deref_mut().filter(|txn| txn.writes.holds(*page)) {
                txn.writes.apply(body).await?;
            } else if let Some(separate) = separate.as_mut() {
                separate.apply(body).await?;
            }
        }
        if let Some(own) = own {
            self.commit(own).await?;
        }
        if let Some(separate) = separate.filter(|s| !s.is_empty()) {
            let read_point = separate.read_point();
            let (bodies, pages, _) = separate.into_parts();
            let lsn = self.volume.submit(bodies, pages).await.map_err(|e| e.to_sql_error(true))?;
            assert!(lsn > read_point, "commit LSN {lsn} is not above its read point {read_point}");
            self.volume.wait_durable(lsn).await.map_err(|e| e.to_sql_error(true))?;
            tracing::debug!(commit_lsn = %lsn, "sequence marks committed");
        }
        for (uid, _, state) in unpersisted {
            self.sequences.persisted(uid, state);
        }
        Ok(())
    }

    /// Commits a write transaction: its redo goes to the volume in one call.
    ///
    /// Group commit: the write lock is released once the volume has assigned
    /// the commit's LSNs (`Volume::submit`), not once it is durable, so the
    /// next write transaction builds on it while its records are on the way;
    /// many commits then share each storage round trip. The session is
    /// answered only when its commit is durable, and commits become durable
    /// in LSN order, so a transaction built on one that fails fails too.
    async fn commit(&self, txn: WriteTxn) -> Result<(), SqlError> {
        if txn.writes.is_empty() {
            return Ok(());
        }
        let WriteTxn { _guard: guard, writes, .. } = txn;
        let read_point = writes.read_point();
        let (bodies, pages, last_pages) = writes.into_parts();
        let records = bodies.len();
        let lsn = self.volume.submit(bodies, pages).await.map_err(|e| e.to_sql_error(true))?;
        // Invariant 2: LSNs rise. The transaction read the newest commit
        // under the write lock, so its commit must land above it.
        assert!(lsn > read_point, "commit LSN {lsn} is not above the transaction's read point {read_point}");
        *self.last_pages.lock().expect("last pages lock poisoned") = last_pages;
        drop(guard);
        if let Err(error) = self.volume.wait_durable(lsn).await {
            // The chain hints may name pages of a commit that will not be.
            self.last_pages.lock().expect("last pages lock poisoned").clear();
            return Err(error.to_sql_error(true));
        }
        tracing::debug!(commit_lsn = %lsn, records, "transaction committed");
        Ok(())
    }
}

/// An open write transaction: holds the engine's write lock while it lives.
pub(crate) struct WriteTxn {
    _guard: OwnedMutexGuard<()>,
    pub(crate) writes: WriteSet,
    /// The transaction changed the catalog (its catalog is private).
    pub(crate) private_ddl: bool,
}

/// The rows of a COPY TO STDOUT, produced batch by batch as the client takes them.
pub struct CopyOutStream(pub datafusion::execution::SendableRecordBatchStream);

impl std::fmt::Debug for CopyOutStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CopyOutStream")
    }
}

/// What a statement returns.
#[derive(Debug)]
pub enum QueryOutput {
    /// A result set.
    Rows { schema: SchemaRef, batches: Vec<RecordBatch> },
    /// The rows of INSERT/UPDATE/DELETE ... RETURNING; `command` is the tag
    /// without its row count ("INSERT 0", "UPDATE", "DELETE").
    Returning { command: &'static str, schema: SchemaRef, batches: Vec<RecordBatch> },
    /// A command completion tag, e.g. "INSERT 0 3", "UPDATE 2", "CREATE TABLE", "BEGIN".
    Command { tag: String },
    /// COPY FROM STDIN started: the client now sends `columns` fields per
    /// row; feed them to [`Session::copy_data`], then call
    /// [`Session::copy_done`] (or [`Session::copy_fail`]).
    CopyIn { columns: usize },
    /// COPY TO STDOUT: the rows of `schema` (its names are the HEADER
    /// line's) to send in `format`, one CopyData per row. The plan runs as
    /// the stream is polled, a batch at a time, never the whole result at
    /// once; a failure mid-way comes as the stream's error.
    CopyOut { format: CopyFormat, schema: SchemaRef, rows: CopyOutStream },
}

impl QueryOutput {
    pub(crate) fn command(tag: impl Into<String>) -> QueryOutput {
        QueryOutput::Command { tag: tag.into() }
    }
}

/// Parameter types and result shape of a statement (extended protocol Describe).
#[derive(Debug, Clone)]
pub struct Described {
    /// Type of each parameter `$1..$n`, in order; Utf8 where it cannot be inferred.
    pub param_types: Vec<DataType>,
    /// The result columns, None for statements that return no rows.
    pub schema: Option<SchemaRef>,
}

/// Transaction state as PostgreSQL's ReadyForQuery reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    /// Not in a transaction block ('I').
    Idle,
    /// In a transaction block ('T').
    InBlock,
    /// In a failed transaction block ('E'): statements are refused until ROLLBACK.
    Failed,
}

enum TxState {
    Idle,
    /// In BEGIN ... COMMIT; the write transaction starts at the first write.
    InBlock(Option<WriteTxn>),
    Failed,
}

/// What kind of statement, for dispatch.
enum Kind {
    Begin,
    Commit,
    Rollback,
    /// ROLLBACK TO SAVEPOINT: allowed in a failed block.
    RollbackTo,
    /// SAVEPOINT and RELEASE SAVEPOINT.
    Savepoint,
    /// Accepted and ignored (session settings).
    Set,
    /// Changes data or schema; the name is PostgreSQL's command name.
    Write(&'static str),
    /// VACUUM and ANALYZE: accepted, with nothing to do yet (no dead
    /// tuples to reclaim in place, no planner statistics).
    Maintenance(&'static str),
    Read,
}

fn classify(statement: &Statement) -> Result<Kind, SqlError> {
    Ok(match statement {
        Statement::StartTransaction { .. } => Kind::Begin,
        Statement::Commit { chain: false, .. } => Kind::Commit,
        Statement::Rollback { chain: false, savepoint: None } => Kind::Rollback,
        Statement::Rollback { chain: false, savepoint: Some(_) } => Kind::RollbackTo,
        Statement::Savepoint { .. } | Statement::ReleaseSavepoint { .. } => Kind::Savepoint,
        Statement::Commit { .. } | Statement::Rollback { .. } => {
            return Err(SqlError::unsupported("AND CHAIN and savepoints"));
        }
        Statement::Set(_) | Statement::Reset(_) | Statement::ShowVariable { .. } => Kind::Set,
        Statement::Insert(_) => Kind::Write("INSERT"),
        Statement::Copy { to: false, .. } => Kind::Write("COPY"),
        Statement::Update(_) => Kind::Write("UPDATE"),
        Statement::Delete(_) => Kind::Write("DELETE"),
        Statement::CreateTable(_) => Kind::Write("CREATE TABLE"),
        Statement::CreateIndex(_) => Kind::Write("CREATE INDEX"),
        Statement::CreateSchema { .. } => Kind::Write("CREATE SCHEMA"),
        Statement::Drop { object_type: ObjectType::Schema, .. } => Kind::Write("DROP SCHEMA"),
        Statement::CreateSequence { .. } => Kind::Write("CREATE SEQUENCE"),
        Statement::Truncate(_) => Kind::Write("TRUNCATE TABLE"),
        Statement::AlterTable(_) => Kind::Write("ALTER TABLE"),
        Statement::Vacuum(_) => Kind::Maintenance("VACUUM"),
        // SQL-level PREPARE is not supported, so there is nothing to free;
        // psycopg sends DEALLOCATE ALL to reset its prepared statements, and
        // re-preparing a name in Parse replaces the old statement.
        Statement::Deallocate { .. } => Kind::Maintenance("DEALLOCATE"),
        Statement::Analyze(_) => Kind::Maintenance("ANALYZE"),
        Statement::Drop { object_type: ObjectType::Index, .. } => Kind::Write("DROP INDEX"),
        Statement::Drop { object_type: ObjectType::Sequence, .. } => Kind::Write("DROP SEQUENCE"),
        Statement::Drop { object_type: ObjectType::Role | ObjectType::User, .. } => Kind::Write("DROP ROLE"),
        Statement::CreateRole(_) => Kind::Write("CREATE ROLE"),
        Statement::AlterRole { .. } => Kind::Write("ALTER ROLE"),
        Statement::Drop { .. } => Kind::Write("DROP TABLE"),
        Statement::Query(_) | Statement::Explain { .. } | Statement::Copy { to: true, .. } => Kind::Read,
        other => {
            let text = other.to_string();
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            return Err(SqlError::unsupported(format_args!("statement {}", words.join(" "))));
        }
    })
}

/// Removes `OVERRIDING {SYSTEM | USER} VALUE` (INSERT's clause, which
/// sqlparser does not know) from `tokens`; returns the remaining tokens and,
/// for each clause removed, the index of the token that followed it.
fn take_overriding(tokens: Vec<TokenWithSpan>) -> (Vec<TokenWithSpan>, Vec<(usize, dml::Overriding)>) {
    let word = |token: &TokenWithSpan, text: &str| matches!(&token.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text));
    let mut kept = Vec::with_capacity(tokens.len());
    let mut found = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        if word(&tokens[at], "overriding") {
            let next: Vec<usize> =
                (at + 1..tokens.len()).filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_))).take(2).collect();
            if let [kind, value] = next[..]
                && word(&tokens[value], "value")
                && (word(&tokens[kind], "system") || word(&tokens[kind], "user"))
            {
                let overriding =
                    if word(&tokens[kind], "system") { dml::Overriding::System } else { dml::Overriding::User };
                found.push((kept.len(), overriding));
                at = value + 1;
                continue;
            }
        }
        kept.push(tokens[at].clone());
        at += 1;
    }
    (kept, found)
}

/// Parses `sql` into statements (PostgreSQL dialect). Adds what sqlparser
/// lacks: `ABORT [WORK | TRANSACTION]` (PostgreSQL's ROLLBACK),
/// PostgreSQL's `CREATE USER` and `ALTER USER` (CREATE ROLE ... LOGIN and
/// ALTER ROLE; sqlparser reads other dialects' USER statements),
/// PostgreSQL's `VACUUM [options] [tables]` (sqlparser knows Redshift's),
/// and INSERT's `OVERRIDING {SYSTEM | USER} VALUE` (see `dml::Overriding`).
pub(crate) fn parse(sql: &str) -> Result<Vec<Statement>, SqlError> {
    let syntax = |e: ParserError| SqlError::syntax(&e);
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| syntax(ParserError::from(e)))?;
    let (tokens, overriding) = take_overriding(tokens);
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            return Ok(statements);
        }
        let start = parser.index();
        if parser.parse_keyword(Keyword::ABORT) {
            let _ = parser.parse_one_of_keywords(&[Keyword::WORK, Keyword::TRANSACTION]);
            statements.push(Statement::Rollback { chain: false, savepoint: None });
        } else if parser.parse_keywords(&[Keyword::CREATE, Keyword::USER]) {
            let mut create = parser.parse_create_role().map_err(syntax)?;
            create.login = Some(create.login.unwrap_or(true));
            statements.push(Statement::CreateRole(create));
        } else if parser.parse_keywords(&[Keyword::ALTER, Keyword::USER]) {
            statements.push(parser.parse_alter_role().map_err(syntax)?);
        } else if parser.peek_keyword(Keyword::COPY) {
            // sqlparser's COPY refuses PostgreSQL's boolean option values
            // (`WITH (FREEZE ON)`, as pgbench sends); ours parses the modern
            // option list, sqlparser's the rest.
            match parser.maybe_parse(|p| p.parse_statement()).map_err(syntax)? {
                Some(statement) => statements.push(statement),
                None => statements.push(crate::copy::parse_copy(&mut parser).map_err(syntax)?),
            }
        } else if parser.parse_keyword(Keyword::VACUUM) {
            // Nothing of VACUUM's arguments matters while it has nothing to do.
            while !matches!(parser.peek_token().token, Token::SemiColon | Token::EOF) {
                parser.next_token();
            }
            statements.push(Statement::Vacuum(VacuumStatement {
                full: false,
                sort_only: false,
                delete_only: false,
                reindex: false,
                recluster: false,
                table_name: None,
                threshold: None,
                boost: false,
            }));
        } else {
            statements.push(parser.parse_statement().map_err(syntax)?);
        }
        if let Some((_, kind)) = overriding.iter().find(|(at, _)| (start..=parser.index()).contains(at)) {
            match statements.last_mut() {
                Some(Statement::Insert(insert)) => dml::set_overriding(insert, *kind),
                _ => return Err(SqlError::new(sqlstate::SYNTAX_ERROR, "syntax error at or near \"OVERRIDING\"")),
            }
        }
        if parser.peek_token().token != Token::EOF && !parser.consume_token(&Token::SemiColon) {
            let found = parser.peek_token();
            return Err(SqlError::new(
                sqlstate::SYNTAX_ERROR,
                format!("syntax error: expected end of statement, found {found}"),
            ));
        }
    }
}

/// One connection's state.
pub struct Session {
    engine: Arc<Engine>,
    planner: Planner,
    tx: TxState,
    /// A statement started and has not finished. Still set at the next call
    /// means its future was dropped (client cancel, timeout): its block fails.
    statement_in_flight: bool,
    /// The open block is the implicit one of a multi-statement `execute`.
    implicit_block: bool,
    /// SET / SHOW parameters of this session.
    settings: Settings,
    /// A COPY FROM STDIN receiving data.
    copy: Option<CopyIn>,
    /// The open block's savepoints, oldest first.
    savepoints: Vec<Savepoint>,
    /// The write transaction of a failed block that has savepoints, kept
    /// (with the write lock) for ROLLBACK TO.
    failed_txn: Option<WriteTxn>,
    /// The sequence functions' state (what nextval used).
    sequences: Arc<SequenceContext>,
    /// The open block called nextval or setval.
    block_used_sequences: bool,
    /// The role the session runs as (the login role).
    user: String,
    /// Notices raised by statements since the front end last took them.
    notices: Vec<String>,
}

/// A savepoint: the block's write state when it was set.
struct Savepoint {
    name: String,
    /// The write set and whether it held DDL; None if nothing was written yet.
    writes: Option<(WriteSet, bool)>,
}

/// Rows parsed before they are written to the transaction's pages.
const COPY_BATCH_ROWS: usize = 4096;
/// A COPY logs its progress every this many rows.
const COPY_PROGRESS_ROWS: u64 = 1_000_000;

/// A COPY FROM STDIN in progress.
struct CopyIn {
    txn: WriteTxn,
    /// The COPY runs in a transaction of its own (no block was open).
    autocommit: bool,
    target: CopyTarget,
    parser: CopyParser,
    records: Vec<Record>,
    rows: u64,
    /// The target table's CHECK and FOREIGN KEY constraints, if it has any.
    checks: Option<crate::constraint::RowChecks>,
    /// The first error; later data is ignored and COPY fails at its end.
    failure: Option<SqlError>,
}

impl CopyIn {
    async fn feed(&mut self, data: &[u8], planner: &Planner) -> Result<(), SqlError> {
        self.parser.feed(data, &mut self.records)?;
        if self.records.len() >= COPY_BATCH_ROWS {
            self.flush(planner).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, planner: &Planner) -> Result<(), SqlError> {
        let defaults = self.default_values(planner).await?;
        let (rows, batch) = self.target.rows(&self.records, &defaults)?;
        self.records.clear();
        if let Some(checks) = &self.checks {
            checks.check_values(&batch)?;
        }
        let def = Arc::clone(&self.target.def);
        for row in rows {
            dml::insert_row(&mut self.txn, &def, row).await?;
            self.rows += 1;
            if self.rows.is_multiple_of(COPY_PROGRESS_ROWS) {
                tracing::info!(table = %def.name, rows = self.rows, "COPY in progress");
            }
        }
        if let Some(checks) = &self.checks {
            checks.check_references(&self.txn.writes, &batch).await?;
        }
        Ok(())
    }

    /// The defaults of the columns not copied, one value per buffered record
    /// (evaluated by DataFusion row by row, so nextval gives each its own).
    async fn default_values(&self, planner: &Planner) -> Result<Vec<datafusion::arrow::array::ArrayRef>, SqlError> {
        let defaulted = self.target.defaulted();
        if defaulted.is_empty() || self.records.is_empty() {
            return Ok(Vec::new());
        }
        let items: Vec<&str> = defaulted.iter().map(|(_, text)| *text).collect();
        let sql = format!("SELECT {} FROM generate_series(1, {})", items.join(", "), self.records.len());
        let statement = parse(&sql)?.pop().ok_or_else(|| SqlError::internal("defaults did not parse"))?;
        let plan = planner.plan_unbound(statement).await?;
        let (_, batches) = planner.collect(&plan).await?;
        let schema = batches.first().map(RecordBatch::schema).ok_or_else(|| SqlError::internal("no default rows"))?;
        let batch =
            datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(|e| SqlError::from_arrow(&e))?;
        Ok(batch.columns().to_vec())
    }
}

impl Session {
    fn new(engine: Arc<Engine>) -> Session {
        let sequences = Arc::new(SequenceContext::new(Arc::clone(&engine.sequences), Arc::default(), engine.read_only));
        let planner = Planner::new(&engine.volume, Arc::clone(&sequences));
        Session {
            engine,
            planner,
            tx: TxState::Idle,
            statement_in_flight: false,
            implicit_block: false,
            settings: Settings::default(),
            copy: None,
            savepoints: Vec::new(),
            failed_txn: None,
            sequences,
            block_used_sequences: false,
            user: crate::functions::SUPERUSER_NAME.to_string(),
            notices: Vec::new(),
        }
    }

    /// The notices statements raised since the last call, unless
    /// `client_min_messages` asks for warnings or worse only.
    pub fn take_notices(&mut self) -> Vec<String> {
        let notices = std::mem::take(&mut self.notices);
        if notices.is_empty() {
            return notices;
        }
        let level = self.settings.get("client_min_messages").unwrap_or_default().to_ascii_lowercase();
        if matches!(level.as_str(), "warning" | "error" | "fatal" | "panic") { Vec::new() } else { notices }
    }

    /// Runs the session as role `name` from now on: what current_user and
    /// session_user answer, and whose privileges role statements check.
    /// `superuser` is reported as `is_superuser` (the catalog decides again
    /// at each statement that needs it).
    pub fn set_user(&mut self, name: &str, superuser: bool) {
        self.user = name.to_string();
        self.settings.set_reported("is_superuser", if superuser { "on" } else { "off" });
        self.planner.set_user(name);
    }

    /// The role the session runs as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Sets the planner's catalog and snapshot for the next statement, and
    /// points name resolution, current_schema() and current_schemas() at
    /// the session's search_path (SET, SET LOCAL and RESET change it between statements).
    fn prepare(&mut self, catalog: Arc<Catalog>, snapshot: Snapshot) {
        self.planner.prepare(catalog, snapshot);
        let search_path = self.settings.get("search_path").unwrap_or_default();
        self.planner.follow_search_path(&search_path, &self.user);
    }

    /// Whether the statement took sequence values whose marks must be written.
    fn sequences_used(&mut self) -> bool {
        let used = self.sequences.take_used();
        self.block_used_sequences |= used;
        used
    }

    /// Feeds COPY FROM STDIN data. An error is kept and reported by
    /// [`Session::copy_done`], as PostgreSQL reports it once the client stops sending.
    pub async fn copy_data(&mut self, data: &[u8]) {
        let Some(copy) = self.copy.as_mut() else { return };
        if copy.failure.is_none()
            && let Err(error) = copy.feed(data, &self.planner).await
        {
            copy.failure = Some(error);
        }
    }

    /// Ends COPY FROM STDIN: writes the last rows and, outside a block, commits.
    pub async fn copy_done(&mut self) -> Result<QueryOutput, SqlError> {
        let Some(mut copy) = self.copy.take() else {
            return Err(SqlError::new(sqlstate::PROTOCOL_VIOLATION, "CopyDone without COPY FROM STDIN"));
        };
        let written = match copy.failure.take() {
            Some(error) => Err(error),
            None => match copy.parser.finish(&mut copy.records) {
                Ok(()) => copy.flush(&self.planner).await,
                Err(error) => Err(error),
            },
        };
        let written = match written {
            Ok(()) if self.sequences_used() => {
                self.engine.persist_sequences(&Arc::clone(&self.planner.catalog), Some(&mut copy.txn)).await
            }
            other => other,
        };
        if let Err(error) = written {
            self.end_failed_copy(copy.autocommit);
            return Err(error);
        }
        let tag = format!("COPY {}", copy.rows);
        if copy.autocommit {
            self.engine.commit(copy.txn).await?;
        } else {
            self.tx = TxState::InBlock(Some(copy.txn));
        }
        tracing::debug!(%tag, "COPY done");
        Ok(QueryOutput::command(tag))
    }

    /// The client abandoned COPY FROM STDIN: nothing of it is written.
    pub fn copy_fail(&mut self, message: &str) -> SqlError {
        if let Some(copy) = self.copy.take() {
            self.end_failed_copy(copy.autocommit);
        }
        SqlError::new(sqlstate::QUERY_CANCELED, format!("COPY from stdin failed: {message}"))
    }

    fn end_failed_copy(&mut self, autocommit: bool) {
        if !autocommit {
            self.tx = TxState::Failed;
        }
    }

    async fn start_copy(&mut self, statement: Statement) -> Result<QueryOutput, SqlError> {
        let Statement::Copy { source, target, options, legacy_options, .. } = statement else {
            return Err(SqlError::internal("start_copy given another statement"));
        };
        if !matches!(target, AstCopyTarget::Stdin) {
            return Err(SqlError::unsupported("COPY from a file or program (use COPY FROM STDIN, or psql's \\copy)"));
        }
        let CopySource::Table { table_name, columns } = source else {
            return Err(SqlError::unsupported("COPY (query) FROM"));
        };
        if self.implicit_block {
            return Err(SqlError::unsupported("COPY FROM STDIN among other statements of one query"));
        }
        let format = CopyFormat::from_options(&options, &legacy_options)?;
        let autocommit = !matches!(self.tx, TxState::InBlock(_));
        let open = match &mut self.tx {
            TxState::InBlock(open) => open.take(),
            _ => None,
        };
        let txn = match open {
            Some(txn) => txn,
            None => self.engine.begin_write().await?,
        };
        let catalog = self.engine.catalog_at(&txn.writes.snapshot(), txn.private_ddl).await?;
        self.prepare(Arc::clone(&catalog), txn.writes.snapshot());
        let name = ddl::qualified_name(&table_name)?;
        catalog.check_schema(&name)?;
        let entry = catalog.resolve_table(self.planner.search_path(), &name)?;
        let target = CopyTarget::new(Arc::clone(&entry.def), &columns)?;
        let columns = target.field_count();
        if !target.defaulted().is_empty() {
            self.engine.load_sequences(&catalog, Some(&txn)).await?;
        }
        let checks = crate::constraint::RowChecks::new(&self.planner, &catalog, &target.def)?;
        self.copy = Some(CopyIn {
            txn,
            autocommit,
            target,
            parser: CopyParser::new(format),
            records: Vec::with_capacity(COPY_BATCH_ROWS),
            rows: 0,
            checks,
            failure: None,
        });
        Ok(QueryOutput::CopyIn { columns })
    }

    /// How long a statement may run before it is cancelled (SET statement_timeout); None: no limit.
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        self.settings.statement_timeout()
    }

    /// Transaction state for ReadyForQuery.
    pub fn transaction_status(&self) -> TransactionStatus {
        match self.tx {
            TxState::Idle => TransactionStatus::Idle,
            TxState::InBlock(_) if self.statement_in_flight && self.implicit_block => TransactionStatus::Idle,
            TxState::InBlock(_) if self.statement_in_flight => TransactionStatus::Failed,
            TxState::InBlock(_) => TransactionStatus::InBlock,
            TxState::Failed => TransactionStatus::Failed,
        }
    }

    /// Runs every statement of `sql` (simple query protocol), stopping at the
    /// first error. Several statements outside a block form one implicit
    /// transaction (PostgreSQL semantics): an error rolls all of them back.
    ///
    /// Cancel safety: dropping the future fails the open block (as a
    /// cancelled statement does in PostgreSQL); a dropped autocommit
    /// statement commits nothing unless the drop lands inside
    /// `Volume::commit`, whose outcome is then unknown.
    pub async fn execute(&mut self, sql: &str) -> Result<Vec<QueryOutput>, SqlError> {
        let (outputs, error) = self.execute_batch(sql).await;
        match error {
            Some(error) => Err(error),
            None => Ok(outputs),
        }
    }

    /// Like [`Session::execute`], but also returns the outputs of the
    /// statements that ran before the first error, which PostgreSQL reports
    /// to the client before the error (their effects are rolled back with the
    /// implicit transaction).
    pub async fn execute_batch(&mut self, sql: &str) -> (Vec<QueryOutput>, Option<SqlError>) {
        let statements = match self.parse_or_fail(sql) {
            Ok(statements) => statements,
            Err(error) => return (Vec::new(), Some(error)),
        };
        // As in PostgreSQL, several statements outside a block run as one
        // implicit transaction: all commit at the end or none do.
        let mut implicit = statements.len() > 1 && matches!(self.tx, TxState::Idle);
        if implicit {
            self.tx = TxState::InBlock(None);
            self.implicit_block = true;
        }
        let mut outputs = Vec::with_capacity(statements.len());
        for statement in statements {
            let ends_implicit = matches!(
                statement,
                Statement::StartTransaction { .. } | Statement::Commit { .. } | Statement::Rollback { .. }
            );
            match self.run(statement, None).await {
                Ok(output) => outputs.push(output),
                Err(error) => {
                    if implicit {
                        self.tx = TxState::Idle;
                        self.implicit_block = false;
                    }
                    return (outputs, Some(error));
                }
            }
            implicit &= !ends_implicit;
            self.implicit_block = implicit;
        }
        if implicit {
            self.implicit_block = false;
            if let Err(error) = self.commit().await {
                return (outputs, Some(error));
            }
        }
        (outputs, None)
    }

    /// Runs one statement with parameter values for `$1..$n` (extended protocol Execute).
    pub async fn execute_with_params(&mut self, sql: &str, params: Vec<ScalarValue>) -> Result<QueryOutput, SqlError> {
        let statement = self.parse_one(sql)?;
        self.run(statement, Some(params)).await
    }

    /// Parameter types and result schema of one statement (extended protocol Parse/Describe).
    pub async fn describe(&mut self, sql: &str) -> Result<Described, SqlError> {
        self.describe_typed(sql, &[]).await
    }

    /// Like [`Session::describe`], with the parameter types the client
    /// declared in Parse (None where it left one to the server). A declared
    /// type decides the type of a result column that is the parameter
    /// itself, as in PostgreSQL (`SELECT $1::int2` and `SELECT $1` with
    /// `$1` declared int2 both describe an int2 column).
    pub async fn describe_typed(&mut self, sql: &str, declared: &[Option<DataType>]) -> Result<Described, SqlError> {
        let statement = self.parse_one(sql)?;
        let kind = classify(&statement)?;
        if matches!(self.tx, TxState::Failed) && !matches!(kind, Kind::Commit | Kind::Rollback | Kind::RollbackTo) {
            return Err(failed_block());
        }
        if let Statement::ShowVariable { .. } = &statement
            && let QueryOutput::Rows { schema, .. } = self.setting(statement.clone())?
        {
            return Ok(Described { param_types: Vec::new(), schema: Some(schema) });
        }
        // COPY TO STDOUT answers with CopyOutResponse, not a row description.
        let copy = matches!(statement, Statement::Copy { .. });
        if copy || !matches!(kind, Kind::Read | Kind::Write("INSERT" | "UPDATE" | "DELETE")) {
            return Ok(Described { param_types: Vec::new(), schema: None });
        }
        let (snapshot, private_ddl) = self.statement_snapshot().await?;
        let catalog = self.engine.catalog_at(&snapshot, private_ddl).await?;
        self.prepare(catalog, snapshot);
        let empty = pg_rewrite::provably_empty(&statement);
        let mut statement = statement;
        if matches!(kind, Kind::Read) {
            pg_rewrite::rewrite(&mut statement);
        } else {
            pg_rewrite::rewrite_casts(&mut statement);
        }
        let names = names::postgres_column_names(&statement);
        let mut described = match (dml::describe(&mut self.planner, statement, declared).await, empty) {
            (Ok(described), _) => described,
            // As in `read`: a query over an empty system table has a known shape.
            (Err(_), Some(columns)) => {
                return Ok(Described { param_types: Vec::new(), schema: Some(text_schema(&columns)) });
            }
            (Err(error), None) => return Err(error),
        };
        if let (Some(names), Some(schema)) = (names, described.schema.as_mut()) {
            *schema = names::rename(schema, &names);
        }
        Ok(described)
    }

    fn parse_or_fail(&mut self, sql: &str) -> Result<Vec<Statement>, SqlError> {
        if std::mem::take(&mut self.statement_in_flight) {
            tracing::debug!("previous statement was dropped before it finished");
            if std::mem::take(&mut self.implicit_block) {
                self.tx = TxState::Idle;
            }
            self.fail_block();
        }
        parse(sql).inspect_err(|_| self.fail_block())
    }

    fn parse_one(&mut self, sql: &str) -> Result<Statement, SqlError> {
        let mut statements = self.parse_or_fail(sql)?;
        match statements.len() {
            1 => Ok(statements.remove(0)),
            0 => Err(SqlError::new(sqlstate::SYNTAX_ERROR, "empty statement")),
            _ => {
                self.fail_block();
                Err(SqlError::new(sqlstate::SYNTAX_ERROR, "cannot insert multiple commands into a prepared statement"))
            }
        }
    }

    /// A statement failed: a block becomes failed and releases its write
    /// lock, unless it has savepoints to roll back to.
    fn fail_block(&mut self) {
        match std::mem::replace(&mut self.tx, TxState::Failed) {
            TxState::InBlock(open) => {
                if !self.savepoints.is_empty() {
                    self.failed_txn = open;
                }
            }
            other => self.tx = other,
        }
    }

    /// The block ended (COMMIT or ROLLBACK): its savepoints go with it.
    fn end_block(&mut self) {
        self.settings.end_block();
        self.savepoints.clear();
        self.failed_txn = None;
        self.block_used_sequences = false;
    }

    /// SAVEPOINT, RELEASE SAVEPOINT and ROLLBACK TO SAVEPOINT.
    fn savepoint(&mut self, statement: Statement) -> Result<QueryOutput, SqlError> {
        let in_block = !self.implicit_block && matches!(self.tx, TxState::InBlock(_) | TxState::Failed);
        let (command, name) = match &statement {
            Statement::Savepoint { name } => ("SAVEPOINT", name),
            Statement::ReleaseSavepoint { name } => ("RELEASE", name),
            Statement::Rollback { savepoint: Some(name), .. } => ("ROLLBACK", name),
            other => return Err(SqlError::internal(format_args!("not a savepoint statement: {other}"))),
        };
        if !in_block {
            let what = if command == "ROLLBACK" { "ROLLBACK TO SAVEPOINT" } else { command };
            return Err(SqlError::new(
                sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                format!("{what} can only be used in transaction blocks"),
            ));
        }
        let name = name.value.clone();
        // (A failed block refuses SAVEPOINT and RELEASE before they get here.)
        if command == "SAVEPOINT" {
            let writes = match &self.tx {
                TxState::InBlock(Some(txn)) => Some((txn.writes.clone(), txn.private_ddl)),
                _ => None,
            };
            self.savepoints.push(Savepoint { name, writes });
            return Ok(QueryOutput::command("SAVEPOINT"));
        }
        // The newest savepoint of that name, as in PostgreSQL.
        let Some(index) = self.savepoints.iter().rposition(|savepoint| savepoint.name == name) else {
            return Err(SqlError::new(
                sqlstate::INVALID_SAVEPOINT_SPECIFICATION,
                format!("savepoint \"{name}\" does not exist"),
            ));
        };
        if command == "RELEASE" {
            self.savepoints.truncate(index);
            return Ok(QueryOutput::command("RELEASE"));
        }
        // ROLLBACK TO keeps the savepoint itself and drops the later ones.
        self.savepoints.truncate(index + 1);
        let current = match std::mem::replace(&mut self.tx, TxState::Idle) {
            TxState::InBlock(open) => open,
            _ => self.failed_txn.take(),
        };
        let restored = match (current, &self.savepoints[index].writes) {
            (Some(mut txn), Some((writes, private_ddl))) => {
                txn.writes = writes.clone();
                txn.private_ddl = *private_ddl;
                Some(txn)
            }
            // Nothing was written when the savepoint was set: the write
            // transaction (and the write lock) is given up.
            (_, None) => None,
            (None, Some(_)) => {
                return Err(SqlError::internal("savepoint holds writes but the block has no transaction"));
            }
        };
        if restored.is_some() {
            // The restored write set may hold older marks of sequences the block created.
            self.engine.sequences.forget_persisted();
        }
        self.tx = TxState::InBlock(restored);
        Ok(QueryOutput::command("ROLLBACK"))
    }

    async fn run(&mut self, statement: Statement, params: Option<Vec<ScalarValue>>) -> Result<QueryOutput, SqlError> {
        self.statement_in_flight = true;
        // Boxed so that a statement's (large) future lives on the heap, not the caller's stack.
        let (result, notices) = crate::notice::collect(Box::pin(self.dispatch(statement, params))).await;
        self.notices.extend(notices);
        self.statement_in_flight = false;
        if result.is_err() {
            self.fail_block();
        }
        result
    }

    async fn dispatch(
        &mut self,
        statement: Statement,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<QueryOutput, SqlError> {
        let kind = classify(&statement)?;
        match kind {
            Kind::Begin => return Ok(self.begin()),
            Kind::Commit => return self.commit().await,
            Kind::Rollback => return Ok(self.rollback()),
            Kind::RollbackTo => return self.savepoint(statement),
            _ if matches!(self.tx, TxState::Failed) => return Err(failed_block()),
            Kind::Savepoint => return self.savepoint(statement),
            Kind::Set => return self.setting(statement),
            Kind::Write(command) if self.engine.read_only => {
                return Err(SqlError::new(
                    sqlstate::READ_ONLY_SQL_TRANSACTION,
                    format!("cannot execute {command} in a read-only transaction"),
                ));
            }
            Kind::Maintenance("VACUUM") if !matches!(self.tx, TxState::Idle) => {
                return Err(SqlError::new(
                    sqlstate::ACTIVE_SQL_TRANSACTION,
                    "VACUUM cannot run inside a transaction block",
                ));
            }
            Kind::Maintenance(command) => return Ok(QueryOutput::command(command)),
            Kind::Write(_) | Kind::Read => {}
        }
        if matches!(kind, Kind::Read) {
            return self.read(statement, params).await;
        }
        if matches!(kind, Kind::Write("COPY")) {
            return self.start_copy(statement).await;
        }
        self.write(statement, params).await
    }

    fn begin(&mut self) -> QueryOutput {
        if matches!(self.tx, TxState::Idle) {
            self.tx = TxState::InBlock(None);
        } else {
            tracing::debug!("BEGIN inside a transaction block ignored");
        }
        QueryOutput::command("BEGIN")
    }

    async fn commit(&mut self) -> Result<QueryOutput, SqlError> {
        let used_sequences = self.block_used_sequences;
        self.end_block();
        match std::mem::replace(&mut self.tx, TxState::Idle) {
            TxState::Idle => Ok(QueryOutput::command("COMMIT")),
            TxState::Failed => Ok(QueryOutput::command("ROLLBACK")),
            TxState::InBlock(None) => Ok(QueryOutput::command("COMMIT")),
            TxState::InBlock(Some(mut txn)) => {
                // A ROLLBACK TO may have undone the mark of a sequence the
                // block created (`Sequences::forget_persisted`): write it again.
                if used_sequences && self.engine.sequences.any_unpersisted() {
                    let catalog = self.engine.catalog_at(&txn.writes.snapshot(), txn.private_ddl).await?;
                    self.engine.persist_sequences(&catalog, Some(&mut txn)).await?;
                }
                self.engine.commit(txn).await?;
                Ok(QueryOutput::command("COMMIT"))
            }
        }
    }

    fn rollback(&mut self) -> QueryOutput {
        self.end_block();
        self.tx = TxState::Idle;
        QueryOutput::command("ROLLBACK")
    }

    /// SET, RESET and SHOW.
    fn setting(&mut self, statement: Statement) -> Result<QueryOutput, SqlError> {
        match statement {
            Statement::Set(Set::SingleAssignment { scope, variable, values, .. }) => {
                let local = matches!(scope, Some(ContextModifier::Local));
                // SET LOCAL outside a block has no effect (PostgreSQL warns).
                if local && matches!(self.tx, TxState::Idle) {
                    return Ok(QueryOutput::command("SET"));
                }
                let name = variable.to_string();
                match values.as_slice() {
                    [Expr::Identifier(ident)] if ident.value.eq_ignore_ascii_case("default") => {
                        self.settings.reset(Some(&name))?
                    }
                    _ => self.settings.set(&name, settings::value_text(&values)?, local)?,
                }
                Ok(QueryOutput::command("SET"))
            }
            Statement::Set(Set::SetTimeZone { local, value }) => {
                self.settings.set("timezone", settings::value_text(&[value])?, local)?;
                Ok(QueryOutput::command("SET"))
            }
            // SET TRANSACTION / SESSION CHARACTERISTICS, SET NAMES, roles:
            // accepted; read committed is what every transaction gets today.
            Statement::Set(_) => Ok(QueryOutput::command("SET")),
            Statement::Reset(reset) => {
                match reset.reset {
                    Reset::ALL => self.settings.reset(None)?,
                    Reset::ConfigurationParameter(name) => self.settings.reset(Some(&name.to_string()))?,
                }
                Ok(QueryOutput::command("RESET"))
            }
            Statement::ShowVariable { variable } => {
                let words = variable.iter().map(|ident| ident.value.as_str()).collect::<Vec<_>>().join(" ");
                let name = settings::show_name(&words);
                let rows = if name.eq_ignore_ascii_case("all") {
                    self.settings.all()
                } else {
                    vec![(name.to_ascii_lowercase(), self.settings.get(&name)?)]
                };
                show_output(&name, rows)
            }
            other => Err(SqlError::internal(format_args!("not a setting statement: {other}"))),
        }
    }

    /// The snapshot a read statement uses, and whether it holds private DDL.
    async fn statement_snapshot(&self) -> Result<(Snapshot, bool), SqlError> {
        match &self.tx {
            TxState::InBlock(Some(txn)) => Ok((txn.writes.snapshot(), txn.private_ddl)),
            _ => Ok((self.engine.read_snapshot().await?, false)),
        }
    }

    async fn read(&mut self, statement: Statement, params: Option<Vec<ScalarValue>>) -> Result<QueryOutput, SqlError> {
        if matches!(statement, Statement::Copy { .. }) {
            return self.copy_out(statement).await;
        }
        let (snapshot, private_ddl) = self.statement_snapshot().await?;
        let catalog = self.engine.catalog_at(&snapshot, private_ddl).await?;
        self.engine.load_sequences(&catalog, self.open_txn()).await?;
        self.prepare(Arc::clone(&catalog), snapshot);
        // Judged before the rewrites, which may add aggregates inside subqueries.
        let empty = pg_rewrite::provably_empty(&statement);
        let mut statement = statement;
        pg_rewrite::rewrite(&mut statement);
        let names = names::postgres_column_names(&statement);
        let plan = match (self.planner.plan(statement, params).await, empty) {
            (Ok(plan), _) => plan,
            (Err(error), Some(columns)) => {
                tracing::debug!(%error, "catalog query answered without rows: it reads an empty system table");
                return Ok(QueryOutput::Rows { schema: text_schema(&columns), batches: Vec::new() });
            }
            (Err(error), None) => return Err(error),
        };
        let (schema, batches) = self.planner.collect(&plan).await?;
        if self.sequences_used() {
            let txn = match &mut self.tx {
                TxState::InBlock(Some(txn)) => Some(txn),
                _ => None,
            };
            self.engine.persist_sequences(&catalog, txn).await?;
        }
        let (schema, batches) = names::rename_batches(schema, batches, names)?;
        Ok(QueryOutput::Rows { schema, batches })
    }

    /// COPY table [(columns)] | (query) TO STDOUT: the query's rows as a
    /// stream at the statement's snapshot (see [`QueryOutput::CopyOut`]).
    async fn copy_out(&mut self, statement: Statement) -> Result<QueryOutput, SqlError> {
        let Statement::Copy { source, target, options, legacy_options, .. } = statement else {
            return Err(SqlError::internal("copy_out given another statement"));
        };
        if !matches!(target, AstCopyTarget::Stdout) {
            return Err(SqlError::unsupported("COPY to a file or program (use COPY TO STDOUT, or psql's \\copy)"));
        }
        let format = CopyFormat::from_options(&options, &legacy_options)?;
        let mut copied_table = None;
        let mut query = match source {
            CopySource::Table { table_name, columns } => {
                let name = ddl::qualified_name(&table_name)?;
                copied_table = Some(name.clone());
                let table = match &name.schema {
                    Some(schema) => {
                        format!("{}.{}", Ident::with_quote('"', schema), Ident::with_quote('"', &name.name))
                    }
                    None => Ident::with_quote('"', &name.name).to_string(),
                };
                let items = if columns.is_empty() {
                    "*".to_string()
                } else {
                    let names: Vec<String> =
                        columns.iter().map(|c| Ident::with_quote('"', ddl::normalize(c)).to_string()).collect();
                    names.join(", ")
                };
                parse(&format!("SELECT {items} FROM {table}"))?
                    .pop()
                    .ok_or_else(|| SqlError::internal("COPY's query did not parse"))?
            }
            CopySource::Query(query) => Statement::Query(query),
        };
        let (snapshot, private_ddl) = self.statement_snapshot().await?;
        let catalog = self.engine.catalog_at(&snapshot, private_ddl).await?;
        self.engine.load_sequences(&catalog, self.open_txn()).await?;
        self.prepare(Arc::clone(&catalog), snapshot);
        if let Some(name) = &copied_table {
            catalog.check_schema(name)?;
        }
        pg_rewrite::rewrite(&mut query);
        let names = names::postgres_column_names(&query);
        let plan = self.planner.plan(query, None).await?;
        let (schema, rows) = self.planner.stream(&plan).await?;
        let (schema, _) = names::rename_batches(schema, Vec::new(), names)?;
        Ok(QueryOutput::CopyOut { format, schema, rows: CopyOutStream(rows) })
    }

    /// The open write transaction of the block, if it has one.
    fn open_txn(&self) -> Option<&WriteTxn> {
        match &self.tx {
            TxState::InBlock(Some(txn)) => Some(txn),
            _ => None,
        }
    }

    async fn write(&mut self, statement: Statement, params: Option<Vec<ScalarValue>>) -> Result<QueryOutput, SqlError> {
        let mut txn = match &mut self.tx {
            TxState::InBlock(open) => match open.take() {
                Some(txn) => txn,
                None => self.engine.begin_write().await?,
            },
            _ => self.engine.begin_write().await?,
        };
        let result = self.write_in(&mut txn, statement, params).await;
        match &mut self.tx {
            TxState::InBlock(open) => {
                *open = Some(txn);
                result
            }
            _ => {
                let output = result?;
                self.engine.commit(txn).await?;
                Ok(output)
            }
        }
    }

    async fn write_in(
        &mut self,
        txn: &mut WriteTxn,
        statement: Statement,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<QueryOutput, SqlError> {
        let snapshot = txn.writes.snapshot();
        let catalog = self.engine.catalog_at(&snapshot, txn.private_ddl).await?;
        if !matches!(statement, Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)) {
            self.prepare(Arc::clone(&catalog), snapshot.clone());
        }
        let path = self.planner.search_path().clone();
        match statement {
            Statement::CreateTable(create) => {
                txn.private_ddl = true;
                ddl::create_table(txn, &self.planner, &catalog, &create).await
            }
            Statement::CreateSchema {
                schema_name,
                if_not_exists,
                options: None,
                default_collate_spec: None,
                with: None,
                clone: None,
            } => {
                txn.private_ddl = true;
                ddl::create_schema(txn, &catalog, &schema_name, if_not_exists).await
            }
            Statement::CreateSchema { .. } => Err(SqlError::unsupported("CREATE SCHEMA with options")),
            Statement::CreateIndex(create) => {
                txn.private_ddl = true;
                ddl::create_index(txn, &catalog, &path, &create).await
            }
            Statement::CreateSequence { if_not_exists, name, data_type, sequence_options, owned_by, temporary } => {
                if temporary || owned_by.is_some() {
                    return Err(SqlError::unsupported("TEMPORARY and OWNED BY sequences"));
                }
                txn.private_ddl = true;
                ddl::create_sequence(txn, &catalog, &path, if_not_exists, &name, data_type.as_ref(), &sequence_options)
                    .await
            }
            Statement::Truncate(truncate) => {
                txn.private_ddl = true;
                ddl::truncate(txn, &catalog, &path, &truncate).await
            }
            Statement::AlterTable(alter) => {
                txn.private_ddl = true;
                ddl::alter_table(txn, &self.planner, &catalog, &alter).await
            }
            Statement::Drop { object_type: ObjectType::Role | ObjectType::User, if_exists, names, .. } => {
                txn.private_ddl = true;
                let actor = roles::Actor { name: &self.user, superuser: roles::is_superuser(&catalog, &self.user) };
                roles::drop_roles(&mut txn.writes, &catalog, &actor, if_exists, &names).await?;
                Ok(QueryOutput::command("DROP ROLE"))
            }
            Statement::Drop { object_type, if_exists, names, cascade, .. } => {
                txn.private_ddl = true;
                ddl::drop_tables(txn, &catalog, &path, object_type, (if_exists, cascade), &names).await
            }
            Statement::CreateRole(create) => {
                txn.private_ddl = true;
                let actor = roles::Actor { name: &self.user, superuser: roles::is_superuser(&catalog, &self.user) };
                roles::create_role(&mut txn.writes, &catalog, &actor, &create).await?;
                Ok(QueryOutput::command("CREATE ROLE"))
            }
            Statement::AlterRole { name, operation } => {
                txn.private_ddl = true;
                let actor = roles::Actor { name: &self.user, superuser: roles::is_superuser(&catalog, &self.user) };
                roles::alter_role(&mut txn.writes, &catalog, &actor, &name, &operation).await?;
                Ok(QueryOutput::command("ALTER ROLE"))
            }
            mut statement => {
                self.engine.load_sequences(&catalog, Some(txn)).await?;
                self.prepare(Arc::clone(&catalog), snapshot);
                pg_rewrite::alias_function_columns(&mut statement);
                pg_rewrite::rewrite_casts(&mut statement);
                let output = Box::pin(dml::run(&mut self.planner, txn, statement, params)).await?;
                if self.sequences_used() {
                    self.engine.persist_sequences(&catalog, Some(txn)).await?;
                }
                Ok(output)
            }
        }
    }
}

fn failed_block() -> SqlError {
    SqlError::new(
        sqlstate::IN_FAILED_SQL_TRANSACTION,
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

/// DataFusion planning and execution for one session. See `crate::provider`
/// for how the catalog and snapshot reach the scans.
pub(crate) struct Planner {
    state: SessionState,
    /// Where RETURNING finds the rows a statement wrote (see [`Planner::returning`]).
    returning: Arc<MemorySchemaProvider>,
    view: Arc<CatalogView>,
    catalog: Arc<Catalog>,
    /// The (search_path, user, catalog version) `path` was computed for.
    search_path: Option<(String, String, u64)>,
    /// Where unqualified names are looked up (the schemas of the search path that exist).
    path: SearchPath,
}

impl Planner {
    fn new(volume: &Arc<dyn Volume>, sequences: Arc<SequenceContext>) -> Planner {
        let mut config = SessionConfig::new().with_information_schema(true).with_target_partitions(1);
        // Keep strings as Utf8 everywhere, the type tables store.
        config.options_mut().sql_parser.map_string_types_to_utf8view = false;
        // timestamptz values are instants in UTC, the only TimeZone there is.
        config.options_mut().execution.time_zone = Some(crate::types::UTC.to_string());
        config.options_mut().catalog.default_schema = SEARCH_PATH_SCHEMA.to_string();
        let builder = SessionStateBuilder::new().with_config(config).with_default_features();
        let mut state = crate::datetime::install(crate::integers::install(builder)).build();
        crate::functions::register(&mut state).expect("registering functions on a fresh state succeeds");
        crate::datetime::register(&mut state).expect("registering functions on a fresh state succeeds");
        crate::functions::register_volume(&mut state, volume).expect("registering functions on a fresh state succeeds");
        let view = sequences.view();
        crate::pg_functions::register(&mut state, &view).expect("registering functions on a fresh state succeeds");
        crate::sequence::register(&mut state, &sequences).expect("registering functions on a fresh state succeeds");
        let catalog: Arc<dyn datafusion::catalog::CatalogProvider> = Arc::new(TablesCatalog::new(Arc::clone(&view)));
        state
            .catalog_list()
            .register_catalog(state.config().options().catalog.default_catalog.clone(), Arc::clone(&catalog));
        let system = Arc::new(PgCatalogSchema::new(Arc::clone(&view)));
        catalog.register_schema(pg_catalog::SCHEMA, Arc::clone(&system) as _).expect("memory catalog accepts schemas");
        let unqualified = Arc::new(TablesSchema::search_path(Arc::clone(&view), system));
        catalog.register_schema(SEARCH_PATH_SCHEMA, unqualified).expect("memory catalog accepts schemas");
        let rows = Arc::new(TablesSchema::rows(Arc::clone(&view)));
        catalog.register_schema(ROWS_SCHEMA, rows).expect("memory catalog accepts schemas");
        let returning = Arc::new(MemorySchemaProvider::new());
        catalog.register_schema(RETURNING_SCHEMA, returning.clone()).expect("memory catalog accepts schemas");
        Planner {
            state,
            returning,
            view,
            catalog: Arc::new(Catalog::default()),
            search_path: None,
            path: SearchPath::public(),
        }
    }

    /// Unqualified names resolve, and current_schema() and
    /// current_schemas(include implicit) answer, from `search_path` (the
    /// session's value) for `user` and the schemas of the statement's
    /// catalog; re-computed only when one of them changed since the last statement.
    fn follow_search_path(&mut self, search_path: &str, user: &str) {
        let key = (search_path.to_string(), user.to_string(), self.catalog.version);
        if self.search_path.as_ref() == Some(&key) {
            self.view.set_path(self.path.clone());
            return;
        }
        let exists = |name: &str| self.catalog.schema_exists(name);
        let explicit = settings::search_path_schemas(search_path, user, false, exists);
        let implicit = settings::search_path_schemas(search_path, user, true, exists);
        self.path = SearchPath { schemas: explicit.clone() };
        self.view.set_path(self.path.clone());
        let list = |names: &[String]| {
            let values: Vec<ScalarValue> = names.iter().map(|n| ScalarValue::Utf8(Some(n.clone()))).collect();
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Utf8))
        };
        let (with, without) = (list(&implicit), list(&explicit));
        let schemas = datafusion::logical_expr::create_udf(
            "current_schemas",
            vec![DataType::Boolean],
            DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new_list_field(DataType::Utf8, true))),
            datafusion::logical_expr::Volatility::Stable,
            Arc::new(move |args: &[datafusion::logical_expr::ColumnarValue]| {
                let implicit = match args.first() {
                    Some(datafusion::logical_expr::ColumnarValue::Scalar(ScalarValue::Boolean(Some(flag)))) => *flag,
                    _ => true,
                };
                Ok(datafusion::logical_expr::ColumnarValue::Scalar(if implicit {
                    with.clone()
                } else {
                    without.clone()
                }))
            }),
        );
        let first = ScalarValue::Utf8(explicit.first().cloned());
        let schema = datafusion::logical_expr::create_udf(
            "current_schema",
            vec![],
            DataType::Utf8,
            datafusion::logical_expr::Volatility::Stable,
            Arc::new(move |_: &[datafusion::logical_expr::ColumnarValue]| {
                Ok(datafusion::logical_expr::ColumnarValue::Scalar(first.clone()))
            }),
        );
        for udf in [schemas, schema] {
            datafusion::execution::FunctionRegistry::register_udf(&mut self.state, Arc::new(udf))
                .expect("registering a function on a session state succeeds");
        }
        self.search_path = Some(key);
    }

    /// current_user, session_user, user and current_role answer `name`
    /// (replacing the functions of the same names, by name).
    fn set_user(&mut self, name: &str) {
        for function in ["current_user", "session_user", "user", "current_role"] {
            let value = ScalarValue::Utf8(Some(name.to_string()));
            let udf = datafusion::logical_expr::create_udf(
                function,
                vec![],
                DataType::Utf8,
                datafusion::logical_expr::Volatility::Stable,
                Arc::new(move |_: &[datafusion::logical_expr::ColumnarValue]| {
                    Ok(datafusion::logical_expr::ColumnarValue::Scalar(value.clone()))
                }),
            );
            datafusion::execution::FunctionRegistry::register_udf(&mut self.state, Arc::new(udf))
                .expect("registering a function on a session state succeeds");
        }
    }

    /// Sets the catalog and snapshot for the next statement.
    pub(crate) fn prepare(&mut self, catalog: Arc<Catalog>, snapshot: Snapshot) {
        self.view.set(Arc::clone(&catalog));
        self.catalog = catalog;
        self.state.config_mut().set_extension(Arc::new(snapshot));
        // The statement's start time: now() and CURRENT_TIMESTAMP fold to it
        // (one value per statement, as in PostgreSQL's transaction-less case).
        let options = Arc::new(self.state.config().options().as_ref().clone());
        self.state.execution_props_mut().mark_start_execution(options);
    }

    /// The catalog of the current statement.
    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The search path of the current statement.
    pub(crate) fn search_path(&self) -> &SearchPath {
        &self.path
    }

    /// The table a DataFusion table reference names (as DML plans carry
    /// them), resolved as the planner resolved it; 42P01 if there is none.
    pub(crate) fn resolve_reference(&self, reference: &TableReference) -> Result<&CatalogEntry, SqlError> {
        let schema = reference.schema().filter(|schema| *schema != SEARCH_PATH_SCHEMA);
        let name = QualifiedName { schema: schema.map(str::to_string), name: reference.table().to_string() };
        self.catalog.resolve_table(&self.path, &name)
    }

    /// The logical plan of `statement` without binding parameters.
    pub(crate) async fn plan_unbound(&self, statement: Statement) -> Result<LogicalPlan, SqlError> {
        let statement = DfStatement::Statement(Box::new(statement));
        for reference in self.state.resolve_table_references(&statement)? {
            let schema = reference.schema();
            let is_function = schema.is_none() && self.state.table_functions().contains_key(reference.table());
            let is_system = schema.is_none() && pg_catalog::is_system_table(reference.table());
            let is_fixed = schema.is_some_and(|schema| {
                [pg_catalog::SCHEMA, "information_schema", ROWS_SCHEMA, RETURNING_SCHEMA].contains(&schema)
            });
            if !is_function && !is_system && !is_fixed {
                self.resolve_reference(&reference)?;
            }
        }
        // Boxed: DataFusion's planning futures are large; keep them off the caller's stack.
        let plan = Box::pin(self.state.statement_to_plan(statement)).await?;
        // Literals are typed here, not only in the analyzer, so that Describe
        // reports the types execution produces.
        crate::integers::type_literals(plan)
    }

    /// The logical plan of `statement` with `params` bound.
    pub(crate) async fn plan(
        &self,
        statement: Statement,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<LogicalPlan, SqlError> {
        let plan = self.plan_unbound(statement).await?;
        let Some(values) = params else { return Ok(plan) };
        let expected = crate::dml::ordered_param_types(&plan.get_parameter_types()?)?.len();
        if values.len() != expected {
            return Err(SqlError::new(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "bind message supplies {} parameters, but prepared statement requires {expected}",
                    values.len()
                ),
            ));
        }
        Ok(plan.with_param_values(values)?)
    }

    /// Evaluates a RETURNING list over the rows a statement wrote: `rows`
    /// (batches of the table's columns) are exposed as `alias` to
    /// `SELECT items FROM alias`. With no batches, only the schema is computed.
    pub(crate) async fn returning(
        &self,
        alias: &Ident,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        items: &[SelectItem],
    ) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
        let list: Vec<String> = items.iter().map(ToString::to_string).collect();
        let sql = format!("SELECT {} FROM \"{RETURNING_SCHEMA}\".{alias} AS {alias}", list.join(", "));
        let statement = parse(&sql)?.pop().ok_or_else(|| SqlError::internal("RETURNING did not parse"))?;
        let names = names::postgres_column_names(&statement);
        let table = MemTable::try_new(schema, vec![batches])?;
        self.returning.register_table(alias.value.clone(), Arc::new(table))?;
        let result = async {
            let plan = self.plan_unbound(statement).await?;
            self.collect(&plan).await
        }
        .await;
        self.returning.deregister_table(&alias.value)?;
        let (schema, batches) = result?;
        names::rename_batches(schema, batches, names)
    }

    /// A row expression (a CHECK constraint's) compiled over `schema`, with
    /// DataFusion's type coercion; evaluated on batches of that schema.
    pub(crate) fn physical_expr(
        &self,
        expr: Expr,
        schema: &datafusion::common::DFSchema,
    ) -> Result<Arc<dyn datafusion::physical_expr::PhysicalExpr>, SqlError> {
        let with_alias = datafusion::sql::sqlparser::ast::ExprWithAlias { expr, alias: None };
        let logical = self.state.create_logical_expr_from_sql_expr(with_alias, schema)?;
        Ok(self.state.create_physical_expr(logical, schema)?)
    }

    /// Optimises and plans `plan`, and starts it as a stream of batches.
    pub(crate) async fn stream(
        &self,
        plan: &LogicalPlan,
    ) -> Result<(SchemaRef, datafusion::execution::SendableRecordBatchStream), SqlError> {
        let physical = Box::pin(self.state.create_physical_plan(plan)).await?;
        let schema = physical.schema();
        let stream = datafusion::physical_plan::execute_stream(physical, self.state.task_ctx())?;
        Ok((schema, stream))
    }

    /// Optimises, plans and runs `plan` to completion.
    pub(crate) async fn collect(&self, plan: &LogicalPlan) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
        let physical = Box::pin(self.state.create_physical_plan(plan)).await?;
        let schema = physical.schema();
        let batches = Box::pin(datafusion::physical_plan::collect(physical, self.state.task_ctx())).await?;
        Ok((schema, batches))
    }
}

/// A schema of text columns named `columns`.
fn text_schema(columns: &[String]) -> SchemaRef {
    use datafusion::arrow::datatypes::{Field, Schema};
    Arc::new(Schema::new(columns.iter().map(|name| Field::new(name, DataType::Utf8, true)).collect::<Vec<_>>()))
}

/// SHOW's result: one text column named after the parameter (`name`,
/// `setting` for SHOW ALL), as PostgreSQL answers.
fn show_output(name: &str, rows: Vec<(String, String)>) -> Result<QueryOutput, SqlError> {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{Field, Schema};
    let all = name.eq_ignore_ascii_case("all");
    let (schema, columns): (Schema, Vec<datafusion::arrow::array::ArrayRef>) = if all {
        let names = StringArray::from_iter_values(rows.iter().map(|(n, _)| n.as_str()));
        let values = StringArray::from_iter_values(rows.iter().map(|(_, v)| v.as_str()));
        (
            Schema::new(vec![Field::new("name", DataType::Utf8, false), Field::new("setting", DataType::Utf8, false)]),
            vec![Arc::new(names), Arc::new(values)],
        )
    } else {
        let values = StringArray::from_iter_values(rows.iter().map(|(_, v)| v.as_str()));
        (Schema::new(vec![Field::new(name.to_ascii_lowercase(), DataType::Utf8, false)]), vec![Arc::new(values)])
    };
    let schema = Arc::new(schema);
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| SqlError::from_arrow(&e))?;
    Ok(QueryOutput::Rows { schema, batches: vec![batch] })
}
