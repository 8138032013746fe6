//! The engine (one per instance) and its sessions (one per connection).
//!
//! A statement's path: [`Session::execute`] parses the SQL with sqlparser
//! (PostgreSQL dialect), then per statement:
//! 1. transaction control (BEGIN, COMMIT, ROLLBACK, SET TRANSACTION) is handled here;
//! 2. writes (INSERT, UPDATE, DELETE, CREATE/DROP TABLE and SEQUENCE, ...)
//!    run in a write transaction: a [`WriteSet`] over a recent commit, moved
//!    onto the newest before each statement, then the statement
//!    (`crate::dml`, `crate::ddl`); an autocommit statement commits at once,
//!    a block at COMMIT;
//! 3. queries are planned and run by DataFusion over the statement's
//!    [`Snapshot`]: a fresh read point per statement (read committed), the
//!    block's snapshot (repeatable read, serializable), or the open write
//!    transaction's (with its private pages).
//!
//! Concurrency: write transactions run side by side, each with private
//! pages over the commit it is based on, and lock what they change
//! (`crate::locks`): the database (`IntentExclusive` for DML, `Exclusive`
//! for DDL and VACUUM, so schema changes run alone), each row an UPDATE or
//! DELETE changes, each unique key added or removed, and (`Share`) each key
//! a foreign key check relies on. A statement that meets a lock another
//! transaction holds does not wait in the middle of its changes: the
//! attempt ends, the transaction is put back as it was before the
//! statement, the session waits for the lock (bounded by `lock_timeout`,
//! 55P03, cancelled by `statement_timeout`; a wait that closes a cycle
//! fails at once with 40P01), and the statement runs again on the newest
//! commit (`Session::write_attempts`). A lock released by a commit the
//! statement did not read also sends it round again, so what it changes
//! is what the newest commit holds. Before each statement and at COMMIT
//! the transaction is moved onto the newest commit (`crate::rebase`: the
//! read point moves if no commit since changed its pages, else its row
//! changes are replayed there); commits are submitted one at a time under
//! the commit lock. Readers never wait.
//!
//! Isolation (`crate::isolation`), per block:
//! - READ COMMITTED (and READ UNCOMMITTED, run as it, as in PostgreSQL):
//!   each statement reads a fresh snapshot, or once the block writes, the
//!   newest commit plus its own writes. So a second
//!   `UPDATE t SET x = x + 1` of a row waits for the first's row lock and
//!   then reads its committed value: no update is lost.
//! - REPEATABLE READ: one snapshot S, taken by the block's first statement
//!   that reads or writes (not at BEGIN); if that statement writes, on the
//!   newest commit. The write set is built on a newer commit W (a
//!   `WriteSet` invariant), which may be newer than S. The rule that
//!   reconciles them: the commit log gives the pages commits after S
//!   changed (`WriteSet::changed_since`, extended each time the write set
//!   moves on). Statements compute their targets at S (plus the block's own writes);
//!   the write set then changes a row of such a page only if the row is the
//!   same at S and W (else 40001 "could not serialize access due to
//!   concurrent update") and applies the change to W, and the block reads
//!   that page as S had it plus its own rows (`heap::Merge`). So what it
//!   reads is exactly S plus its own writes: rows inserted after S stay
//!   invisible, and updating or deleting a row changed after S fails (also
//!   after waiting for the row's lock, as in PostgreSQL).
//!   Conflicts are per row on heap pages but per page on index pages (an
//!   insert whose index leaf a later commit changed fails, stricter than
//!   PostgreSQL; a retry succeeds). DDL committed after S fails the first
//!   write as well (the catalog at S may lack an index the newest one
//!   maintains).
//! - SERIALIZABLE: REPEATABLE READ, and a block whose first write (or
//!   locking read) comes after any other transaction committed since its
//!   snapshot fails with 40001, as does one that must move onto a newer
//!   commit with other data (before a statement or at COMMIT): each writing
//!   block then behaves as if it ran alone at its commit, and a read-only
//!   one reads a state between two commits: the execution is serializable,
//!   write skew included. This first-committer-wins rule is stricter than
//!   PostgreSQL's SSI (it fails some blocks SSI would let commit);
//!   read-only blocks never fail, on the writer or on readers. Sequence
//!   marks (nextval's commits) do not count, as sequences are not
//!   transactional.
//!
//! Locking reads (SELECT ... FOR UPDATE / NO KEY UPDATE / SHARE / KEY
//! SHARE [OF t]), in a block, until COMMIT or ROLLBACK: a plain SELECT of
//! one table (`isolation::RowLocking`) locks the rows it returns, X for
//! FOR [NO KEY] UPDATE and S for FOR [KEY] SHARE: it runs its query for
//! their addresses and locks them one by one; a row another transaction
//! holds makes it wait and start over on the newest commit, fail with
//! 55P03 (NOWAIT), or pass the row by (SKIP LOCKED, which then returns
//! just the rows it locked, up to its LIMIT). Other shapes (joins,
//! subqueries) lock the tables they name, coarser than PostgreSQL. Then
//! they read as the block's writes do (READ COMMITTED: the newest commit;
//! REPEATABLE READ: 40001 if a locked row, or a page of a locked table's
//! heap, changed since the snapshot; SERIALIZABLE: 40001 if anything was
//! committed since). Read-only blocks and readers refuse them (25006).
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
//! ROLLBACK TO puts the copy back, and also leaves the failed state (locks
//! taken since stay until the block ends). While a block has savepoints,
//! failing it keeps its write transaction (and its locks), so that ROLLBACK
//! TO can resume it;
//! SET LOCAL values are not rolled back to a savepoint.

use crate::catalog::{Catalog, CatalogEntry, META_PAGE, Meta, QualifiedName, RoleDef, SearchPath, SequenceState};
use crate::copy::{CopyFormat, CopyParser, CopyTarget, Record};
use crate::error::{SqlError, sqlstate};
use crate::free_space::SharedFreeSpace;
use crate::heap::{Snapshot, WriteSet};
use crate::isolation::{self, Changes, CommitLog, IsolationLevel, LockingRead, TxMode};
use crate::locks::{self, Acquired, LockManager, LockMode, LockTag, TxnLocks};
use crate::pg_catalog::{self, PgCatalogSchema};
use crate::provider::{CatalogView, ROWS_SCHEMA, SEARCH_PATH_SCHEMA, TablesCatalog, TablesSchema};
use crate::sequence::{SequenceContext, Sequences};

/// The field metadata key under which a timestamptz result column carries
/// the session's TimeZone (see `Session::in_time_zone`).
pub const TIME_ZONE_METADATA: &str = "borealis.time_zone";

/// Schema holding, while a RETURNING list is evaluated, the rows its statement wrote.
pub(crate) const RETURNING_SCHEMA: &str = "__borealis_returning";
use crate::settings::{self, Settings};
use crate::volume::Volume;
use crate::{alter, ddl, dml, names, pg_rewrite, rebase, roles, views};
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
    ContextModifier, CopySource, CopyTarget as AstCopyTarget, CreateTable, Expr, Ident, ObjectType, Query, Reset,
    SelectItem, Set, VacuumStatement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

/// The SQL engine of one instance (writer or reader) over one volume.
pub struct Engine {
    volume: Arc<dyn Volume>,
    read_only: bool,
    /// Held while a transaction is moved onto the newest commit and
    /// submitted, and while the newest commit is looked up to move one: so
    /// commits are submitted one at a time, each on the one before.
    /// An autocommit statement runs under it, start to commit (see
    /// `Session::write_attempts`).
    commit_lock: Arc<tokio::sync::Mutex<()>>,
    /// Row, key, table and database locks of the write transactions.
    locks: Arc<LockManager>,
    /// The next page id to hand out (see `TxnLocks::allocate_page`).
    next_page: Arc<AtomicU64>,
    /// The last catalog loaded, by catalog version.
    catalog_cache: Mutex<Arc<Catalog>>,
    /// Which heap pages have room, as of the newest submitted commit (see `crate::free_space`).
    free_space: SharedFreeSpace,
    /// Sequences' current values (see `crate::sequence`).
    sequences: Arc<Sequences>,
    /// The pages recent commits changed (rebasing and REPEATABLE READ and
    /// SERIALIZABLE writes read it); written under the commit lock.
    commits: Mutex<CommitLog>,
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
        let newest = if read_only { read_point } else { volume.write_read_point().await? };
        Ok(Arc::new(Engine {
            commits: Mutex::new(CommitLog::new(newest)),
            volume,
            read_only,
            commit_lock: Arc::default(),
            locks: Arc::default(),
            next_page: Arc::default(),
            catalog_cache: Mutex::new(Arc::new(Catalog::default())),
            free_space: SharedFreeSpace::default(),
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

    /// The engine's free space map, for tests that look into it.
    #[cfg(test)]
    pub(crate) fn free_space(&self) -> &SharedFreeSpace {
        &self.free_space
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

    /// Starts a write transaction holding the database lock in `mode`
    /// (`IntentExclusive` for DML, `Exclusive` for DDL), waited for at most
    /// `timeout` (55P03 after it, as PostgreSQL's lock_timeout), or with
    /// `nowait` not at all; it reads at the newest submitted commit
    /// (durable or not: see [`Engine::commit`]). Cancel-safe: a dropped
    /// wait takes nothing.
    async fn begin_write(&self, mode: LockMode, wait: LockWait, keeps_snapshot: bool) -> Result<WriteTxn, SqlError> {
        let base = self.volume.write_read_point().await?;
        let locks = Arc::new(TxnLocks::new(Arc::clone(&self.locks), base, keeps_snapshot, Arc::clone(&self.next_page)));
        take_lock(&locks, LockTag::Database, mode, wait).await?;
        let read_point = self.volume.write_read_point().await?;
        self.locks.rebase(locks.id(), read_point);
        let writes =
            WriteSet::new(Arc::clone(&self.volume), read_point, Arc::clone(&self.free_space)).with_locks(locks);
        Ok(WriteTxn { writes, private_ddl: false, base: None, serializable: false, commit_guard: None })
    }

    /// Moves `txn` onto the newest submitted commit (see `crate::rebase`);
    /// 40001 for a SERIALIZABLE transaction if other data was committed since its base.
    async fn refresh(&self, txn: &mut WriteTxn) -> Result<(), SqlError> {
        let target = match txn.commit_guard {
            Some(_) => self.rebase_target(txn).await?,
            None => {
                let _commit = self.commit_lock.lock().await;
                self.rebase_target(txn).await?
            }
        };
        self.move_onto(txn, target).await
    }

    /// Where `txn` must move and what changed on the way; the caller holds the commit lock.
    async fn rebase_target(&self, txn: &WriteTxn) -> Result<Option<rebase::Target>, SqlError> {
        let newest = self.volume.write_read_point().await?;
        let base = txn.writes.read_point();
        if newest == base {
            return Ok(None);
        }
        let commits = self.commits.lock().expect("commit log lock poisoned");
        let changed = match commits.since(base) {
            Changes::Pages { data: true, .. } if txn.serializable => return Err(isolation::read_write_dependencies()),
            Changes::Pages { pages, .. } => Some(pages),
            Changes::Unknown if txn.serializable => return Err(isolation::read_write_dependencies()),
            Changes::Unknown => None,
        };
        let since_snapshot = match &txn.base {
            None => None,
            Some(snapshot) => match commits.since(snapshot.read_point()) {
                Changes::Pages { pages, .. } => Some((snapshot.read_point(), pages)),
                Changes::Unknown => return Err(isolation::concurrent_update()),
            },
        };
        Ok(Some(rebase::Target { newest, changed, since_snapshot }))
    }

    async fn move_onto(&self, txn: &mut WriteTxn, target: Option<rebase::Target>) -> Result<(), SqlError> {
        let Some(target) = target else { return Ok(()) };
        let newest = target.newest;
        let catalog = self.catalog_at(&txn.snapshot(), txn.private_ddl).await?;
        rebase::rebase(&mut txn.writes, target, &catalog, txn.private_ddl).await?;
        if let Some(locks) = txn.writes.locks() {
            self.locks.rebase(locks.id(), newest);
        }
        Ok(())
    }

    /// Makes `txn` (just begun, nothing written) read `snapshot`, the older
    /// snapshot of a REPEATABLE READ or SERIALIZABLE transaction, while its
    /// write set stays on the newest commit (see "Isolation" in the module
    /// docs): SERIALIZABLE fails if anything but sequence marks was
    /// committed since the snapshot; both fail if DDL was (the snapshot's
    /// catalog may lack an index the newest one maintains), or if the
    /// snapshot is older than the commit log; otherwise the write set is
    /// told which pages changed since the snapshot.
    async fn keep_snapshot(
        &self,
        txn: &mut WriteTxn,
        snapshot: &Snapshot,
        isolation: IsolationLevel,
    ) -> Result<(), SqlError> {
        let newest = txn.writes.read_point();
        assert!(snapshot.read_point() <= newest, "snapshot {} above the newest commit {newest}", snapshot.read_point());
        let conflict = || match isolation {
            IsolationLevel::Serializable => isolation::read_write_dependencies(),
            _ => isolation::concurrent_update(),
        };
        let changes = self.commits.lock().expect("commit log lock poisoned").since(snapshot.read_point());
        let Changes::Pages { mut pages, data } = changes else { return Err(conflict()) };
        if data && isolation == IsolationLevel::Serializable {
            return Err(conflict());
        }
        if pages.contains(&META_PAGE) {
            let version =
                |page: &borealis_storage::page::Page| Meta::from_page(page).map(|m| m.map(|m| m.catalog_version));
            if version(&*snapshot.page(META_PAGE).await?)? != version(&*txn.writes.page(META_PAGE).await?)? {
                return Err(conflict());
            }
            // Otherwise the meta tuple only counted pages and table ids:
            // counters the write set may take from the newest commit.
            pages.remove(&META_PAGE);
        }
        if !pages.is_empty() {
            txn.writes.changed_since(snapshot.read_point(), pages);
        }
        txn.base = Some(Box::new(snapshot.clone()));
        Ok(())
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
    /// a write transaction of its own commits them.
    async fn persist_sequences(&self, catalog: &Catalog, txn: Option<&mut WriteTxn>) -> Result<(), SqlError> {
        if self.read_only || self.sequences.unpersisted(catalog).is_empty() {
            return Ok(());
        }
        let (mut own, mut txn) = match txn {
            Some(txn) => (None, Some(txn)),
            None => {
                let own = self.begin_write(LockMode::IntentExclusive, LockWait::Timeout(None), false).await?;
                (Some(own), None)
            }
        };
        // Lock order: the commit lock (the separate commit below needs it),
        // then the persist lock.
        let mut commit_lock = None;
        match (own.as_mut(), txn.as_deref()) {
            (Some(own), _) => own.commit_guard = Some(Arc::clone(&self.commit_lock).lock_owned().await),
            (None, Some(txn)) if txn.commit_guard.is_none() => commit_lock = Some(self.commit_lock.lock().await),
            _ => {}
        }
        let _persisting = self.sequences.persist_lock.lock().await;
        let unpersisted = self.sequences.unpersisted(catalog);
        let mut separate = match &own {
            Some(_) => None,
            None => {
                let read_point = self.volume.write_read_point().await?;
                Some(WriteSet::new(Arc::clone(&self.volume), read_point, Arc::clone(&self.free_space)))
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
            self.commit_marked(own, true).await?;
        }
        if let Some(separate) = separate.filter(|s| !s.is_empty()) {
            // Sequence pages change only here, under the persist lock: the
            // marks apply to the newest commit as they are (the commit lock is held).
            let read_point = separate.read_point();
            let (bodies, pages, _) = separate.into_parts();
            let changed: Vec<PageId> = pages.keys().copied().collect();
            let lsn = self.volume.submit(bodies, pages).await.map_err(|e| {
                self.commits.lock().expect("commit log lock poisoned").lose();
                e.to_sql_error(true)
            })?;
            assert!(lsn > read_point, "commit LSN {lsn} is not above its read point {read_point}");
            self.commits.lock().expect("commit log lock poisoned").record(lsn, changed, true);
            drop(commit_lock.take());
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
    /// Group commit: the commit lock is released once the volume has assigned
    /// the commit's LSNs (`Volume::submit`), not once it is durable, so the
    /// next write transaction builds on it while its records are on the way;
    /// many commits then share each storage round trip. The session is
    /// answered only when its commit is durable, and commits become durable
    /// in LSN order, so a transaction built on one that fails fails too.
    async fn commit(&self, txn: WriteTxn) -> Result<(), SqlError> {
        self.commit_marked(txn, false).await
    }

    /// [`Engine::commit`]; `sequence_marks` says the transaction only wrote
    /// sequences' high-water marks (which SERIALIZABLE transactions ignore).
    async fn commit_marked(&self, txn: WriteTxn, sequence_marks: bool) -> Result<(), SqlError> {
        if txn.writes.is_empty() {
            return Ok(());
        }
        let mut txn = txn;
        let guard = match txn.commit_guard.take() {
            Some(guard) => guard,
            None => Arc::clone(&self.commit_lock).lock_owned().await,
        };
        let target = self.rebase_target(&txn).await?;
        // Its locks are all held: a replay never waits (see `crate::rebase`).
        self.move_onto(&mut txn, target)
            .await
            .map_err(|error| if locks::is_restart(&error) { isolation::concurrent_update() } else { error })?;
        let locks = txn.writes.locks().cloned();
        let WriteTxn { writes, .. } = txn;
        let read_point = writes.read_point();
        let (bodies, pages, free_space) = writes.into_parts();
        let records = bodies.len();
        let changed: Vec<PageId> = pages.keys().copied().collect();
        let lsn = self.volume.submit(bodies, pages).await.map_err(|e| {
            self.commits.lock().expect("commit log lock poisoned").lose();
            e.to_sql_error(true)
        })?;
        // Invariant 2: LSNs rise. The transaction was moved onto the newest
        // commit under the commit lock, so its commit must land above it.
        assert!(lsn > read_point, "commit LSN {lsn} is not above the transaction's read point {read_point}");
        self.commits.lock().expect("commit log lock poisoned").record(lsn, changed, sequence_marks);
        // Under the commit lock still: the next transactions choose pages with it.
        self.free_space.lock().expect("free space map lock poisoned").merge(free_space);
        // Waiters wake to a newest commit that has this one.
        if let Some(locks) = locks {
            locks.release_committed(lsn);
        }
        drop(guard);
        if let Err(error) = self.volume.wait_durable(lsn).await {
            // The map may describe pages of a commit that will not be.
            self.free_space.lock().expect("free space map lock poisoned").clear();
            return Err(error.to_sql_error(true));
        }
        tracing::debug!(commit_lsn = %lsn, records, "transaction committed");
        Ok(())
    }
}

/// An open write transaction: its locks live as long as its write set
/// (and the write set's savepoint copies).
pub(crate) struct WriteTxn {
    pub(crate) writes: WriteSet,
    /// The transaction changed the catalog (its catalog is private).
    pub(crate) private_ddl: bool,
    /// The older snapshot its statements read, under REPEATABLE READ and
    /// SERIALIZABLE (see [`Engine::keep_snapshot`]); None: the write set's own.
    /// Boxed: every session state holds a `WriteTxn`'s room.
    base: Option<Box<Snapshot>>,
    /// SERIALIZABLE: moving onto a newer commit with other data fails (40001).
    serializable: bool,
    /// The engine's commit lock, held by an autocommit statement from its
    /// start to its commit (see `Session::write_attempts`).
    commit_guard: Option<OwnedMutexGuard<()>>,
}

impl WriteTxn {
    /// What the transaction's next statement reads: its snapshot with its own writes on top.
    pub(crate) fn snapshot(&self) -> Snapshot {
        match &self.base {
            Some(base) => base.with_writes(&self.writes),
            None => self.writes.snapshot(),
        }
    }
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
    /// VACUUM (on the writer: refreshes the free space map, see
    /// `Session::vacuum`), ANALYZE (no planner statistics to gather) and DEALLOCATE.
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
        Statement::CreateView(_) => Kind::Write("CREATE VIEW"),
        Statement::Drop { object_type: ObjectType::View, .. } => Kind::Write("DROP VIEW"),
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

/// Removes `NO KEY` from `FOR NO KEY UPDATE` and `KEY` from `FOR KEY
/// SHARE`, lock strengths sqlparser does not know; locking whole tables,
/// they lock as FOR UPDATE and FOR SHARE do.
fn weaken_lock_strengths(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let word = |token: &TokenWithSpan, text: &str| matches!(&token.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text));
    let significant: Vec<usize> =
        (0..tokens.len()).filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_))).collect();
    let mut dropped = std::collections::HashSet::new();
    for window in significant.windows(4) {
        let [lock, first, second, third] = window else { continue };
        if !word(&tokens[*lock], "for") {
            continue;
        }
        if word(&tokens[*first], "no") && word(&tokens[*second], "key") && word(&tokens[*third], "update") {
            dropped.extend([*first, *second]);
        } else if word(&tokens[*first], "key") && word(&tokens[*second], "share") {
            dropped.insert(*first);
        }
    }
    if let [.., lock, first, second] = significant[..]
        && word(&tokens[lock], "for")
        && word(&tokens[first], "key")
        && word(&tokens[second], "share")
    {
        dropped.insert(first);
    }
    tokens.into_iter().enumerate().filter(|(i, _)| !dropped.contains(i)).map(|(_, token)| token).collect()
}

/// Parses `sql` into statements (PostgreSQL dialect). Adds what sqlparser
/// lacks: `ABORT [WORK | TRANSACTION]` (PostgreSQL's ROLLBACK),
/// `FOR NO KEY UPDATE` and `FOR KEY SHARE` (see `weaken_lock_strengths`),
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
    let (tokens, overriding) = take_overriding(weaken_lock_strengths(tokens));
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
            statements.push(parse_vacuum(&mut parser).map_err(syntax)?);
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

/// The rest of PostgreSQL's `VACUUM [(options)] [FULL] [FREEZE] [VERBOSE]
/// [ANALYZE] [table [(columns)] [, ...]]`. Only the table matters (see
/// `Session::vacuum`): one table named is kept; none, or several (one
/// statement cannot carry them), means every table.
fn parse_vacuum(parser: &mut Parser) -> Result<Statement, ParserError> {
    if parser.consume_token(&Token::LParen) {
        skip_parenthesized(parser)?;
    } else {
        for keyword in [Keyword::FULL, Keyword::FREEZE, Keyword::VERBOSE, Keyword::ANALYZE] {
            let _ = parser.parse_keyword(keyword);
        }
    }
    let mut tables = Vec::new();
    while !matches!(parser.peek_token().token, Token::SemiColon | Token::EOF) {
        tables.push(parser.parse_object_name(false)?);
        if parser.consume_token(&Token::LParen) {
            skip_parenthesized(parser)?;
        }
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    let table_name = if tables.len() == 1 { tables.pop() } else { None };
    Ok(Statement::Vacuum(VacuumStatement {
        full: false,
        sort_only: false,
        delete_only: false,
        reindex: false,
        recluster: false,
        table_name,
        threshold: None,
        boost: false,
    }))
}

/// Skips to the parenthesis that closes one just consumed.
fn skip_parenthesized(parser: &mut Parser) -> Result<(), ParserError> {
    let mut depth = 1;
    while depth > 0 {
        match parser.next_token().token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::EOF => return Err(ParserError::ParserError("expected ), found end of input".into())),
            _ => {}
        }
    }
    Ok(())
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
    /// (with its locks) for ROLLBACK TO.
    failed_txn: Option<WriteTxn>,
    /// The sequence functions' state (what nextval used).
    sequences: Arc<SequenceContext>,
    /// The open block called nextval or setval.
    block_used_sequences: bool,
    /// The role the session runs as (the login role).
    user: String,
    /// Notices raised by statements since the front end last took them.
    notices: Vec<String>,
    /// The open block's characteristics and snapshot (meaningless while idle).
    block: Block,
}

/// What a transaction block keeps besides its write transaction.
struct Block {
    mode: TxMode,
    /// REPEATABLE READ and SERIALIZABLE: the snapshot every statement
    /// reads, taken by the first statement that reads or writes.
    snapshot: Option<Snapshot>,
    /// A statement that reads or writes ran: the isolation level is fixed
    /// (PostgreSQL's "before any query").
    queried: bool,
}

impl Block {
    fn new(mode: TxMode) -> Block {
        Block { mode, snapshot: None, queried: false }
    }
}

/// Prepared statements whose plans a session keeps; past it the cache starts over.
const CACHED_PLANS_MAX: usize = 256;

/// A prepared statement's logical plan (a query's, or the query an
/// INSERT, UPDATE or DELETE reads), optimised once with its parameters as
/// placeholders. The planner drops it when the session's settings or role
/// change; it is used only at the catalog version it was planned at.
pub(crate) struct CachedPlan {
    plan: LogicalPlan,
    /// The types the parameters were inferred to have; values are cast to them.
    param_types: Vec<DataType>,
    /// PostgreSQL's names for the result columns.
    names: Option<Vec<Option<String>>>,
    catalog_version: u64,
}

/// A plan ready to run: optimised already (from the cache) or not.
pub(crate) enum Planned {
    Optimized(LogicalPlan),
    Unoptimized(LogicalPlan),
}

/// A savepoint: the block's write state when it was set.
struct Savepoint {
    name: String,
    /// The write set and whether it held DDL; None if nothing was written yet.
    writes: Option<(WriteSet, bool)>,
}

/// What a COPY's writes need of its session.
struct CopySession<'a> {
    engine: &'a Engine,
    lock_timeout: Option<std::time::Duration>,
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
    async fn feed(&mut self, data: &[u8], planner: &Planner, session: &CopySession<'_>) -> Result<(), SqlError> {
        self.parser.feed(data, &mut self.records)?;
        if self.records.len() >= COPY_BATCH_ROWS {
            self.flush(planner, session).await?;
        }
        Ok(())
    }

    /// Writes the buffered rows: again, from the transaction as it was,
    /// after a lock wait (a key another transaction is adding) or on a
    /// newer commit (see `Session::write_attempts`).
    async fn flush(&mut self, planner: &Planner, session: &CopySession<'_>) -> Result<(), SqlError> {
        let defaults = self.default_values(planner).await?;
        let zone = *planner.time_zone.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (rows, batch) = self.target.rows(&self.records, &defaults, zone)?;
        self.records.clear();
        if let Some(checks) = &self.checks {
            checks.check_values(&batch)?;
        }
        loop {
            session.engine.refresh(&mut self.txn).await?;
            let (writes, copied) = (self.txn.writes.clone(), self.rows);
            match self.write_rows(&rows, &batch).await {
                Err(error) if locks::is_restart(&error) => {
                    self.txn.writes = writes;
                    self.rows = copied;
                    if let Some(locks) = self.txn.writes.locks()
                        && let Some((tag, mode)) = locks.take_blocked()
                    {
                        wait_for(locks, &tag, mode, session.lock_timeout).await?;
                    }
                }
                other => return other,
            }
        }
    }

    async fn write_rows(&mut self, rows: &[Vec<u8>], batch: &RecordBatch) -> Result<(), SqlError> {
        let def = Arc::clone(&self.target.def);
        for row in rows {
            dml::insert_row(&mut self.txn, &def, row.clone()).await?;
            self.rows += 1;
            if self.rows.is_multiple_of(COPY_PROGRESS_ROWS) {
                tracing::info!(table = %def.name, rows = self.rows, "COPY in progress");
            }
        }
        if let Some(checks) = &self.checks {
            checks.check_references(&self.txn.writes, batch).await?;
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
            block: Block::new(TxMode { isolation: IsolationLevel::ReadCommitted, read_only: false }),
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
        self.planner.clear_plans();
        self.user = name.to_string();
        self.settings.set_reported("is_superuser", if superuser { "on" } else { "off" });
        self.planner.set_user(name);
    }

    /// The role the session runs as.
    /// Applies a parameter the client sent at startup, as `SET` would.
    pub fn set_startup_parameter(&mut self, name: &str, value: &str) -> Result<(), SqlError> {
        self.settings.set(name, value.to_string(), false)?;
        self.settings_changed();
        Ok(())
    }

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
        let session = CopySession { engine: &self.engine, lock_timeout: self.settings.lock_timeout() };
        if copy.failure.is_none()
            && let Err(error) = copy.feed(data, &self.planner, &session).await
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
                Ok(()) => {
                    let session = CopySession { engine: &self.engine, lock_timeout: self.settings.lock_timeout() };
                    copy.flush(&self.planner, &session).await
                }
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
        let mut txn = self.take_write_txn(LockMode::IntentExclusive).await?;
        self.engine.refresh(&mut txn).await?;
        let catalog = self.engine.catalog_at(&txn.snapshot(), txn.private_ddl).await?;
        self.prepare(Arc::clone(&catalog), txn.snapshot());
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
            self.block = Block::new(self.settings.default_transaction_mode());
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
                        self.block.snapshot = None;
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
        self.planner.prepared_sql = Some(sql.to_string());
        let result = self.run(statement, Some(params)).await;
        self.planner.prepared_sql = None;
        result
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
        // Describe takes no snapshot for the block: a write described
        // first must still take it when it writes, on the newest commit.
        let (snapshot, private_ddl) = match (&self.tx, &self.block.snapshot) {
            (TxState::InBlock(Some(txn)), _) => (txn.snapshot(), txn.private_ddl),
            (TxState::InBlock(None), Some(snapshot)) => (snapshot.clone(), false),
            _ => (self.engine.read_snapshot().await?, false),
        };
        let catalog = self.engine.catalog_at(&snapshot, private_ddl).await?;
        self.prepare(catalog, snapshot);
        let mut statement = statement;
        if let Statement::Query(query) = &mut statement {
            // Described as the plain query; the lock is taken at Execute.
            LockingRead::take(query);
        }
        self.expand_views(&mut statement)?;
        let empty = pg_rewrite::provably_empty(&statement);
        if matches!(kind, Kind::Read) {
            pg_rewrite::rewrite(&mut statement);
        } else {
            pg_rewrite::rewrite_casts(&mut statement);
        }
        let names = names::postgres_column_names_aliasing(&mut statement);
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
        self.block.snapshot = None;
        if self.settings.end_block() {
            self.settings_changed();
        }
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
            // transaction (and its locks) is given up.
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
        let result = result.and_then(|output| self.in_time_zone(output));
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
            Kind::Begin => return self.begin(&statement),
            Kind::Commit => return self.commit().await,
            Kind::Rollback => return Ok(self.rollback()),
            Kind::RollbackTo => return self.savepoint(statement),
            _ if matches!(self.tx, TxState::Failed) => return Err(failed_block()),
            Kind::Savepoint => return self.savepoint(statement),
            Kind::Set => return self.setting(statement),
            Kind::Write(command) if self.engine.read_only || self.transaction_mode().read_only => {
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
            Kind::Maintenance("VACUUM") if !self.engine.read_only => return self.vacuum(statement).await,
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

    /// Marks the timestamptz columns of `output` with the session's TimeZone
    /// (field metadata [`TIME_ZONE_METADATA`]), for the front end to print
    /// them in it; nothing to do under UTC.
    fn in_time_zone(&self, output: QueryOutput) -> Result<QueryOutput, SqlError> {
        if *self.planner.time_zone.read().unwrap_or_else(|poisoned| poisoned.into_inner()) == crate::datetime::Zone::UTC
        {
            return Ok(output);
        }
        let zone = self.settings.get("timezone")?;
        let mark = |schema: SchemaRef, batches: Vec<RecordBatch>| -> Result<_, SqlError> {
            let Some(marked) = in_time_zone(&schema, &zone) else { return Ok((schema, batches)) };
            let batches = batches
                .into_iter()
                .map(|batch| batch.with_schema(Arc::clone(&marked)).map_err(|e| SqlError::from_arrow(&e)))
                .collect::<Result<_, _>>()?;
            Ok((marked, batches))
        };
        Ok(match output {
            QueryOutput::Rows { schema, batches } => {
                let (schema, batches) = mark(schema, batches)?;
                QueryOutput::Rows { schema, batches }
            }
            QueryOutput::Returning { command, schema, batches } => {
                let (schema, batches) = mark(schema, batches)?;
                QueryOutput::Returning { command, schema, batches }
            }
            QueryOutput::CopyOut { format, schema, rows } => {
                let stream_schema = rows.0.schema();
                let batches = futures::StreamExt::map(rows.0, move |batch| {
                    let batch = batch?;
                    Ok(match in_time_zone(&batch.schema(), &zone) {
                        Some(marked) => batch.with_schema(marked)?,
                        None => batch,
                    })
                });
                let rows = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(stream_schema, batches);
                QueryOutput::CopyOut { format, schema, rows: CopyOutStream(Box::pin(rows)) }
            }
            other => other,
        })
    }

    /// BEGIN / START TRANSACTION [modes]. In the implicit block of a
    /// multi-statement query it turns that block into an explicit one, its
    /// modes applied as SET TRANSACTION would.
    fn begin(&mut self, statement: &Statement) -> Result<QueryOutput, SqlError> {
        let Statement::StartTransaction { modes, .. } = statement else {
            return Err(SqlError::internal("begin given another statement"));
        };
        if matches!(self.tx, TxState::Idle) {
            let mode = self.settings.default_transaction_mode().with(modes)?;
            self.tx = TxState::InBlock(None);
            self.block = Block::new(mode);
        } else if self.implicit_block {
            self.set_transaction(self.block.mode.with(modes)?)?;
        } else {
            tracing::debug!("BEGIN inside a transaction block ignored");
        }
        Ok(QueryOutput::command("BEGIN"))
    }

    /// The characteristics of the open transaction; while idle, those the
    /// next one gets.
    fn transaction_mode(&self) -> TxMode {
        match self.tx {
            TxState::Idle => self.settings.default_transaction_mode(),
            _ => self.block.mode,
        }
    }

    /// SET TRANSACTION (or SET transaction_isolation / transaction_read_only)
    /// to `mode`: once a statement of the block has read or written, the
    /// isolation level is fixed, and so is read-only (25001, as PostgreSQL).
    /// Outside a block it does nothing (PostgreSQL warns).
    fn set_transaction(&mut self, mode: TxMode) -> Result<(), SqlError> {
        if matches!(self.tx, TxState::Idle) {
            tracing::debug!("SET TRANSACTION outside a transaction block ignored");
            return Ok(());
        }
        if self.block.queried && mode.isolation != self.block.mode.isolation {
            return Err(SqlError::new(
                sqlstate::ACTIVE_SQL_TRANSACTION,
                "SET TRANSACTION ISOLATION LEVEL must be called before any query",
            ));
        }
        if !self.savepoints.is_empty() && mode.isolation != self.block.mode.isolation {
            return Err(SqlError::new(
                sqlstate::ACTIVE_SQL_TRANSACTION,
                "SET TRANSACTION ISOLATION LEVEL must not be called in a subtransaction",
            ));
        }
        if self.block.queried && self.block.mode.read_only && !mode.read_only {
            return Err(SqlError::new(
                sqlstate::ACTIVE_SQL_TRANSACTION,
                "transaction read-write mode must be set before any query",
            ));
        }
        self.block.mode = mode;
        Ok(())
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
                    let catalog = self.engine.catalog_at(&txn.snapshot(), txn.private_ddl).await?;
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

    /// Settings may plan differently (time zone, search path...): cached
    /// plans go, and plans read the TimeZone now set.
    fn settings_changed(&mut self) {
        self.planner.clear_plans();
        *self.planner.time_zone.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = self.settings.time_zone();
    }

    /// VACUUM [table]: DELETE and UPDATE free a row's space at once, so
    /// there are no dead rows to remove; what VACUUM does is refresh the
    /// free space map from the committed pages: of the table named, or of
    /// every table and the catalog (forgetting the chains of dropped and
    /// truncated tables). It takes the database lock exclusively, so that
    /// no commit but sequence marks lands while it walks (it waits for the
    /// open write transactions, as DDL does), and writes nothing. A reader has no map: VACUUM there does
    /// nothing.
    async fn vacuum(&mut self, statement: Statement) -> Result<QueryOutput, SqlError> {
        let Statement::Vacuum(vacuum) = statement else {
            return Err(SqlError::internal("vacuum given another statement"));
        };
        let wait = LockWait::Timeout(self.settings.lock_timeout());
        let txn = self.engine.begin_write(LockMode::Exclusive, wait, false).await?;
        let snapshot = txn.writes.snapshot();
        let catalog = self.engine.catalog_at(&snapshot, false).await?;
        self.prepare(Arc::clone(&catalog), snapshot);
        let firsts: Vec<_> = match &vacuum.table_name {
            Some(name) => {
                let name = ddl::qualified_name(name)?;
                catalog.check_schema(&name)?;
                vec![catalog.resolve_table(self.planner.search_path(), &name)?.def.first_page]
            }
            None => {
                let meta = txn.writes.meta().await?;
                catalog.tables().map(|entry| entry.def.first_page).chain([meta.catalog_first_page]).collect()
            }
        };
        for first in &firsts {
            txn.writes.refresh_free_space(*first).await?;
        }
        if vacuum.table_name.is_none() {
            let known = firsts.into_iter().collect();
            self.engine.free_space.lock().expect("free space map lock poisoned").retain(&known);
        }
        Ok(QueryOutput::command("VACUUM"))
    }

    /// SET, RESET and SHOW.
    fn setting(&mut self, statement: Statement) -> Result<QueryOutput, SqlError> {
        let changes = !matches!(statement, Statement::ShowVariable { .. });
        let output = self.change_setting(statement);
        if changes {
            self.settings_changed();
        }
        output
    }

    fn change_setting(&mut self, statement: Statement) -> Result<QueryOutput, SqlError> {
        match statement {
            Statement::Set(Set::SingleAssignment { scope, variable, values, .. }) => {
                let local = matches!(scope, Some(ContextModifier::Local));
                // SET LOCAL outside a block has no effect (PostgreSQL warns).
                if local && matches!(self.tx, TxState::Idle) {
                    return Ok(QueryOutput::command("SET"));
                }
                let name = variable.to_string();
                if name.eq_ignore_ascii_case("transaction_isolation") {
                    let level = IsolationLevel::from_setting("transaction_isolation", &settings::value_text(&values)?)?;
                    self.set_transaction(TxMode { isolation: level, ..self.block.mode })?;
                    return Ok(QueryOutput::command("SET"));
                }
                if name.eq_ignore_ascii_case("transaction_read_only") {
                    let read_only = settings::parse_bool("transaction_read_only", &settings::value_text(&values)?)?;
                    self.set_transaction(TxMode { read_only, ..self.block.mode })?;
                    return Ok(QueryOutput::command("SET"));
                }
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
            Statement::Set(Set::SetTransaction { snapshot: Some(_), .. }) => {
                Err(SqlError::unsupported("SET TRANSACTION SNAPSHOT"))
            }
            Statement::Set(Set::SetTransaction { modes, session: false, .. }) => {
                self.set_transaction(self.block.mode.with(&modes)?)?;
                Ok(QueryOutput::command("SET"))
            }
            // SET SESSION CHARACTERISTICS AS TRANSACTION: the defaults of later transactions.
            Statement::Set(Set::SetTransaction { modes, session: true, .. }) => {
                let mode = self.settings.default_transaction_mode().with(&modes)?;
                self.settings.set("default_transaction_isolation", mode.isolation.name().to_string(), false)?;
                let read_only = if mode.read_only { "on" } else { "off" };
                self.settings.set("default_transaction_read_only", read_only.to_string(), false)?;
                Ok(QueryOutput::command("SET"))
            }
            // SET NAMES, roles: accepted.
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
                let mode = self.transaction_mode();
                let rows = if name.eq_ignore_ascii_case("all") {
                    self.settings.all()
                } else if name.eq_ignore_ascii_case("transaction_isolation") {
                    vec![(name.to_ascii_lowercase(), mode.isolation.name().to_string())]
                } else if name.eq_ignore_ascii_case("transaction_read_only") {
                    vec![(name.to_ascii_lowercase(), if mode.read_only { "on" } else { "off" }.to_string())]
                } else {
                    vec![(name.to_ascii_lowercase(), self.settings.get(&name)?)]
                };
                show_output(&name, rows)
            }
            other => Err(SqlError::internal(format_args!("not a setting statement: {other}"))),
        }
    }

    /// The snapshot a read statement uses, and whether it holds private
    /// DDL: the open write transaction's; in a REPEATABLE READ or
    /// SERIALIZABLE block, the block's (taken now if this is its first
    /// statement); else a fresh one (READ COMMITTED).
    async fn statement_snapshot(&mut self) -> Result<(Snapshot, bool), SqlError> {
        self.block.queried |= !matches!(self.tx, TxState::Idle);
        let read_committed = !self.block.mode.isolation.keeps_snapshot();
        match &mut self.tx {
            TxState::InBlock(Some(txn)) => {
                if read_committed {
                    self.engine.refresh(txn).await?;
                }
                Ok((txn.snapshot(), txn.private_ddl))
            }
            TxState::InBlock(None) if self.block.mode.isolation.keeps_snapshot() => {
                if let Some(snapshot) = &self.block.snapshot {
                    return Ok((snapshot.clone(), false));
                }
                let snapshot = self.engine.read_snapshot().await?;
                self.block.snapshot = Some(snapshot.clone());
                Ok((snapshot, false))
            }
            _ => Ok((self.engine.read_snapshot().await?, false)),
        }
    }

    /// The block's write transaction, or a new one, holding the database
    /// lock in `mode` (`Exclusive` for DDL; a transaction that wrote rows
    /// upgrades to it, waiting for the other writers), waited for at most
    /// lock_timeout. In a REPEATABLE READ or SERIALIZABLE block a new one
    /// reads the block's snapshot, which is taken now (on the newest
    /// commit) if no statement took it yet.
    async fn take_write_txn(&mut self, mode: LockMode) -> Result<WriteTxn, SqlError> {
        self.block.queried |= !matches!(self.tx, TxState::Idle);
        let wait = LockWait::Timeout(self.settings.lock_timeout());
        if let TxState::InBlock(open) = &mut self.tx
            && let Some(txn) = open.take()
        {
            if mode == LockMode::Exclusive
                && let Some(locks) = txn.writes.locks()
                && let Err(error) = take_lock(locks, LockTag::Database, mode, wait).await
            {
                // The block keeps its transaction; the statement fails.
                self.tx = TxState::InBlock(Some(txn));
                return Err(error);
            }
            return Ok(txn);
        }
        let isolation = self.block.mode.isolation;
        let in_block = matches!(self.tx, TxState::InBlock(_));
        let keeps_snapshot = in_block && isolation.keeps_snapshot();
        let mut txn = self.engine.begin_write(mode, wait, keeps_snapshot).await?;
        txn.serializable = in_block && isolation == IsolationLevel::Serializable;
        if keeps_snapshot {
            let snapshot = match &self.block.snapshot {
                Some(snapshot) => snapshot.clone(),
                None => Snapshot::committed(Arc::clone(&self.engine.volume), txn.writes.read_point()),
            };
            self.block.snapshot = Some(snapshot.clone());
            self.engine.keep_snapshot(&mut txn, &snapshot, isolation).await?;
        }
        Ok(txn)
    }

    /// After a statement attempt ended with [`locks::restart`]: waits for
    /// the lock it could not take, if that was why (at most lock_timeout).
    async fn wait_blocked(&self, txn: &WriteTxn) -> Result<(), SqlError> {
        let Some(locks) = txn.writes.locks() else { return Ok(()) };
        match locks.take_blocked() {
            Some((tag, mode)) => wait_for(locks, &tag, mode, self.settings.lock_timeout()).await,
            None => Ok(()),
        }
    }

    async fn read(&mut self, statement: Statement, params: Option<Vec<ScalarValue>>) -> Result<QueryOutput, SqlError> {
        if matches!(statement, Statement::Copy { .. }) {
            return self.copy_out(statement).await;
        }
        let mut statement = statement;
        let mut locked_query = None;
        if let Statement::Query(query) = &mut statement
            && let Some(locking) = LockingRead::take(query)
        {
            // Its rows (or tables) are locked now; SKIP LOCKED reads the rows it locked.
            let query = query.as_ref().clone();
            locked_query = self.lock_for_read(&locking, &query, params.as_ref()).await?;
            // What it returns depends on the locks it got: never a kept plan.
            self.planner.prepared_sql = None;
        }
        if let Some(query) = locked_query {
            statement = Statement::Query(Box::new(query));
        }
        let (snapshot, private_ddl) = self.statement_snapshot().await?;
        let catalog = self.engine.catalog_at(&snapshot, private_ddl).await?;
        self.engine.load_sequences(&catalog, self.open_txn()).await?;
        self.prepare(Arc::clone(&catalog), snapshot);
        // A prepared query planned before runs its cached plan.
        if private_ddl {
            self.planner.prepared_sql = None;
        }
        if let Some(values) = &params
            && let Some(cached) = self.planner.cached("query")
        {
            return self.run_cached(&cached, values.clone()).await;
        }
        self.expand_views(&mut statement)?;
        // Judged before the rewrites, which may add aggregates inside subqueries.
        let empty = pg_rewrite::provably_empty(&statement);
        pg_rewrite::rewrite(&mut statement);
        let names = names::postgres_column_names_aliasing(&mut statement);
        let planned = match (&params, &empty) {
            (Some(values), None) if self.planner.prepared_sql.is_some() => {
                let unbound = self.planner.plan_unbound(statement).await?;
                if let Some(cached) = self.planner.cache("query", &unbound, names.clone())? {
                    return self.run_cached(&cached, values.clone()).await;
                }
                // Not reusable: bind the plan just made rather than planning again.
                Planner::bind(unbound, params)
            }
            _ => self.planner.plan(statement, params).await,
        };
        let plan = match (planned, empty) {
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

    /// Runs a cached query plan with `values` bound to its parameters.
    async fn run_cached(&mut self, cached: &CachedPlan, values: Vec<ScalarValue>) -> Result<QueryOutput, SqlError> {
        let plan = Planner::bind_cached(cached, values)?;
        let (schema, batches) = self.planner.collect_optimized(&plan).await?;
        let (schema, batches) = names::rename_batches(schema, batches, cached.names.clone())?;
        Ok(QueryOutput::Rows { schema, batches })
    }

    /// Takes the locks of a locking read (SELECT ... FOR UPDATE and the
    /// like; see "Locking reads" in the module docs) in the block's write
    /// transaction, kept until COMMIT or ROLLBACK: the rows it returns when
    /// it reads one table ([`Session::lock_rows`]), else the tables it
    /// names, `Exclusive` (FOR UPDATE, FOR NO KEY UPDATE) or `Share` (FOR
    /// SHARE, FOR KEY SHARE). The query then reads the transaction's state;
    /// under SKIP LOCKED the query to run instead is returned. Outside a
    /// block the locks are only waited for (they would end with the statement).
    async fn lock_for_read(
        &mut self,
        locking: &LockingRead,
        query: &Query,
        params: Option<&Vec<ScalarValue>>,
    ) -> Result<Option<Query>, SqlError> {
        if self.engine.read_only || self.transaction_mode().read_only {
            return Err(locking.read_only_error());
        }
        let mut txn = self.take_write_txn(LockMode::IntentExclusive).await?;
        let result = match isolation::RowLocking::of(query, locking) {
            Some(rows) => self.lock_rows(&mut txn, locking, &rows, params).await,
            None => self.lock_tables(&mut txn, locking).await.map(|()| None),
        };
        if let TxState::InBlock(open) = &mut self.tx {
            *open = Some(txn);
        }
        result
    }

    /// Locks the rows a one-table locking read returns: runs the query for
    /// their addresses, then locks them one by one. A row another
    /// transaction holds: NOWAIT fails (55P03), SKIP LOCKED passes it by
    /// (and the query returned reads just the rows locked), otherwise the
    /// statement waits and starts over on the newest commit, as it does
    /// when a row it locked was changed by a commit it did not read
    /// (REPEATABLE READ: 40001).
    async fn lock_rows(
        &mut self,
        txn: &mut WriteTxn,
        locking: &LockingRead,
        rows: &isolation::RowLocking,
        params: Option<&Vec<ScalarValue>>,
    ) -> Result<Option<Query>, SqlError> {
        let mode = if locking.clause == "FOR UPDATE" { LockMode::Exclusive } else { LockMode::Share };
        let locks = txn.writes.locks().cloned().ok_or_else(|| SqlError::internal("locking read without locks"))?;
        loop {
            self.engine.refresh(txn).await?;
            let (snapshot, private_ddl) = (txn.snapshot(), txn.private_ddl);
            let catalog = self.engine.catalog_at(&snapshot, private_ddl).await?;
            self.prepare(Arc::clone(&catalog), snapshot);
            let Some(entry) = catalog.find_table(self.planner.search_path(), &ddl::qualified_name(&rows.table)?) else {
                return Err(SqlError::undefined_table(&rows.table.to_string()));
            };
            let entry = entry.clone();
            let addresses_query = rows.addresses_query(&entry.def, locking.skip_locked)?;
            let plan = self.planner.plan(addresses_query, params.cloned()).await?;
            let (_, batches) = self.planner.collect(&plan).await?;
            let mut locked = Vec::new();
            let mut start_over = false;
            'rows: for batch in &batches {
                for address in dml::row_addresses(batch)? {
                    if locking.skip_locked && rows.limit_reached(locked.len()) {
                        break 'rows;
                    }
                    let tag = LockTag::Row(entry.def.first_page, address);
                    match locks.manager().try_acquire(locks.id(), &tag, mode) {
                        Acquired::Granted => locked.push(address),
                        Acquired::Stale if txn.base.is_some() => return Err(isolation::concurrent_update()),
                        Acquired::Stale => {
                            start_over = true;
                            break 'rows;
                        }
                        Acquired::Blocked(..) if locking.nowait => return Err(locking.not_available()),
                        Acquired::Blocked(..) if locking.skip_locked => {}
                        Acquired::Blocked(tag, mode) => {
                            wait_for(&locks, &tag, mode, self.settings.lock_timeout()).await?;
                            start_over = true;
                            break 'rows;
                        }
                    }
                }
            }
            if start_over {
                tracing::debug!("locking read starts over on a newer commit");
                continue;
            }
            for address in &locked {
                // REPEATABLE READ: 40001 if the row changed since the snapshot.
                txn.writes.check_row(*address).await?;
            }
            return locking.skip_locked.then(|| rows.locked_query(&entry.def, &locked)).transpose();
        }
    }

    async fn lock_tables(&mut self, txn: &mut WriteTxn, locking: &LockingRead) -> Result<(), SqlError> {
        let (snapshot, private_ddl) = (txn.snapshot(), txn.private_ddl);
        let catalog = self.engine.catalog_at(&snapshot, private_ddl).await?;
        self.prepare(Arc::clone(&catalog), snapshot);
        let mut chains = Vec::new();
        for name in &locking.tables {
            if let Some(entry) = catalog.find_table(self.planner.search_path(), &ddl::qualified_name(name)?) {
                chains.push(entry.def.first_page);
            }
        }
        let mode = if locking.clause == "FOR UPDATE" { LockMode::Exclusive } else { LockMode::Share };
        let locks = txn.writes.locks().cloned().ok_or_else(|| SqlError::internal("locking read without locks"))?;
        for first in &chains {
            let wait = match locking.nowait {
                true => LockWait::No(locking.not_available()),
                false => LockWait::Timeout(self.settings.lock_timeout()),
            };
            take_lock(&locks, LockTag::Table(*first), mode, wait).await?;
        }
        // READ COMMITTED reads what was committed before the locks were
        // granted; REPEATABLE READ learns what changed since its snapshot.
        self.engine.refresh(txn).await?;
        if txn.writes.has_changes_since_snapshot() {
            // A locked row must not have changed since the snapshot,
            // checked per page of the locked tables' heaps.
            for first in chains {
                txn.writes.check_chain_unchanged(first).await?;
            }
        }
        Ok(())
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

    /// CREATE TABLE name AS query: a table whose columns are the query's
    /// (its names, types from the query's result types), then the query's
    /// rows inserted, as `SELECT n` reports, all in `txn`.
    async fn create_table_as(&mut self, txn: &mut WriteTxn, mut create: CreateTable) -> Result<QueryOutput, SqlError> {
        let Some(query) = create.query.take() else {
            return Err(SqlError::internal("CREATE TABLE AS without a query"));
        };
        if !create.columns.is_empty() {
            return Err(SqlError::unsupported("CREATE TABLE AS with a column list (name the columns in the query)"));
        }
        let name = ddl::qualified_name(&create.name)?;
        let snapshot = txn.writes.snapshot();
        let catalog = self.engine.catalog_at(&snapshot, txn.private_ddl).await?;
        self.prepare(Arc::clone(&catalog), snapshot);
        let path = self.planner.search_path().clone();
        if catalog.find_relation(&path, &name).is_some_and(|schema| name.schema.as_ref().is_none_or(|s| *s == schema)) {
            if create.if_not_exists {
                crate::notice::raise(format!("relation \"{}\" already exists, skipping", name.name));
                return Ok(QueryOutput::command("CREATE TABLE AS"));
            }
            return Err(crate::catalog::relation_exists(&name.name));
        }
        let mut select = Statement::Query(query.clone());
        self.expand_views(&mut select)?;
        pg_rewrite::rewrite(&mut select);
        let names = names::postgres_column_names(&select);
        let plan = self.planner.plan_unbound(select).await?;
        let fields = plan.schema().fields();
        let mut columns = Vec::with_capacity(fields.len());
        for (position, field) in fields.iter().enumerate() {
            let column = names
                .as_ref()
                .and_then(|names| names.get(position).cloned().flatten())
                .unwrap_or_else(|| field.name().clone());
            let ty = crate::types::SqlType::from_arrow(field)?;
            columns.push(format!("{} {}", Ident::with_quote('"', column), ty));
        }
        let table = create.name.to_string();
        let ddl_sql = format!("CREATE TABLE {table} ({})", columns.join(", "));
        let Some(created) = parse(&ddl_sql)?.pop() else {
            return Err(SqlError::internal("CREATE TABLE did not parse"));
        };
        Box::pin(self.write_in(txn, created, None)).await?;
        let insert_sql = format!("INSERT INTO {table} {query}");
        let Some(insert) = parse(&insert_sql)?.pop() else { return Err(SqlError::internal("INSERT did not parse")) };
        match Box::pin(self.write_in(txn, insert, None)).await? {
            QueryOutput::Command { tag } => {
                let rows = tag.rsplit(' ').next().unwrap_or("0").to_string();
                Ok(QueryOutput::command(format!("SELECT {rows}")))
            }
            other => Ok(other),
        }
    }

    /// Replaces the views `statement` reads by their queries (after
    /// `prepare`); 42809 if it writes to a view.
    fn expand_views(&self, statement: &mut Statement) -> Result<(), SqlError> {
        let (catalog, path) = (self.planner.catalog(), self.planner.search_path());
        if let Some(target) = dml::target_name(statement) {
            views::refuse_write(catalog, path, &ddl::qualified_name(target)?)?;
        }
        views::expand(statement, catalog, path)
    }

    /// The open write transaction of the block, if it has one.
    fn open_txn(&self) -> Option<&WriteTxn> {
        match &self.tx {
            TxState::InBlock(Some(txn)) => Some(txn),
            _ => None,
        }
    }

    async fn write(&mut self, statement: Statement, params: Option<Vec<ScalarValue>>) -> Result<QueryOutput, SqlError> {
        let mode = match statement {
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => LockMode::IntentExclusive,
            _ => LockMode::Exclusive,
        };
        let mut txn = self.take_write_txn(mode).await?;
        let alone = matches!(self.tx, TxState::Idle);
        let result = self.write_attempts(&mut txn, statement, params, alone).await;
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

    /// Runs a write statement in `txn`, on the newest commit: again after
    /// waiting for a lock another transaction held, or on a newer state
    /// when a row it locked was changed by a commit it did not read (see
    /// `crate::locks`); each attempt starts from the transaction as it was.
    ///
    /// `alone` (an autocommit write) runs each attempt under the engine's
    /// commit lock, kept for its commit, so nothing commits between its
    /// start and its commit and it never needs moving (what the commit
    /// lock serialises is what one statement's page changes cost; its
    /// storage round trip is not under it). The commit lock is let go
    /// while the statement waits for a row lock.
    async fn write_attempts(
        &mut self,
        txn: &mut WriteTxn,
        statement: Statement,
        params: Option<Vec<ScalarValue>>,
        alone: bool,
    ) -> Result<QueryOutput, SqlError> {
        loop {
            if alone {
                txn.commit_guard = Some(Arc::clone(&self.engine.commit_lock).lock_owned().await);
            }
            self.engine.refresh(txn).await?;
            let (writes, private_ddl) = (txn.writes.clone(), txn.private_ddl);
            match self.write_in(txn, statement.clone(), params.clone()).await {
                Err(error) if locks::is_restart(&error) => {
                    txn.commit_guard = None;
                    txn.writes = writes;
                    txn.private_ddl = private_ddl;
                    self.wait_blocked(txn).await?;
                    tracing::debug!("statement runs again after a lock wait or a newer commit");
                }
                other => return other,
            }
        }
    }

    async fn write_in(
        &mut self,
        txn: &mut WriteTxn,
        statement: Statement,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<QueryOutput, SqlError> {
        let snapshot = txn.snapshot();
        let catalog = self.engine.catalog_at(&snapshot, txn.private_ddl).await?;
        if !matches!(statement, Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)) {
            self.prepare(Arc::clone(&catalog), snapshot.clone());
        }
        let path = self.planner.search_path().clone();
        match statement {
            Statement::CreateTable(create) if create.query.is_some() => {
                Box::pin(self.create_table_as(txn, create)).await
            }
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
            Statement::CreateView(create) => views::create(txn, &self.planner, &catalog, &path, &create).await,
            Statement::Drop { object_type: ObjectType::View, if_exists, names, cascade, .. } => {
                txn.private_ddl = true;
                views::drop(txn, &catalog, &path, (if_exists, cascade), &names).await
            }
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
                // ADD COLUMN fills the stored rows with its default, which may take sequence values.
                self.engine.load_sequences(&catalog, Some(txn)).await?;
                let output = alter::alter_table(txn, &self.planner, &catalog, &alter).await?;
                if self.sequences_used() {
                    self.engine.persist_sequences(&catalog, Some(txn)).await?;
                }
                Ok(output)
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
                if txn.private_ddl {
                    self.planner.prepared_sql = None;
                }
                self.engine.load_sequences(&catalog, Some(txn)).await?;
                self.prepare(Arc::clone(&catalog), snapshot);
                self.expand_views(&mut statement)?;
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

/// How long a lock may be waited for.
pub(crate) enum LockWait {
    /// At most this long (None: as long as it takes); 55P03 after it.
    Timeout(Option<std::time::Duration>),
    /// Not at all: this error if another transaction holds it (NOWAIT).
    No(SqlError),
}

/// Takes `mode` on `tag` for the transaction of `locks`, waiting as `wait` says.
async fn take_lock(locks: &TxnLocks, tag: LockTag, mode: LockMode, wait: LockWait) -> Result<(), SqlError> {
    if !matches!(locks.manager().try_acquire(locks.id(), &tag, mode), Acquired::Blocked(..)) {
        return Ok(());
    }
    match wait {
        LockWait::No(error) => Err(error),
        LockWait::Timeout(timeout) => wait_for(locks, &tag, mode, timeout).await,
    }
}

/// Waits until the transaction of `locks` holds `mode` on `tag`: at most
/// `timeout` (55P03 after it); 40P01 if the wait closes a cycle.
async fn wait_for(
    locks: &TxnLocks,
    tag: &LockTag,
    mode: LockMode,
    timeout: Option<std::time::Duration>,
) -> Result<(), SqlError> {
    let wait = locks.manager().wait(locks.id(), tag, mode);
    match timeout {
        None => wait.await,
        Some(timeout) => tokio::time::timeout(timeout, wait).await.map_err(|_| isolation::lock_timeout())?,
    }
}

/// `schema` with its timestamptz fields marked with the TimeZone `zone`
/// (see `Session::in_time_zone`); None if it has none.
fn in_time_zone(schema: &SchemaRef, zone: &str) -> Option<SchemaRef> {
    if !schema.fields().iter().any(|f| matches!(f.data_type(), DataType::Timestamp(_, Some(_)))) {
        return None;
    }
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Timestamp(_, Some(_)) => {
                let mut metadata = field.metadata().clone();
                metadata.insert(TIME_ZONE_METADATA.to_string(), zone.to_string());
                Arc::new(field.as_ref().clone().with_metadata(metadata))
            }
            _ => Arc::clone(field),
        })
        .collect();
    Some(Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone())))
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
    /// The SQL text of the prepared statement being executed: the plan
    /// cache's key. None outside the extended protocol and while the
    /// transaction's catalog is private (its version may be reused).
    pub(crate) prepared_sql: Option<String>,
    /// Optimised plans of prepared statements, by SQL text and purpose.
    plans: HashMap<String, HashMap<&'static str, Arc<CachedPlan>>>,
    /// The session's TimeZone, which plans read timestamptz text in and write it out in.
    pub(crate) time_zone: crate::datetime::SessionZone,
}

impl Planner {
    fn new(volume: &Arc<dyn Volume>, sequences: Arc<SequenceContext>) -> Planner {
        let mut config = SessionConfig::new().with_information_schema(true).with_target_partitions(1);
        // Keep strings as Utf8 everywhere, the type tables store.
        config.options_mut().sql_parser.map_string_types_to_utf8view = false;
        // timestamptz values are instants, kept in UTC; the session's
        // TimeZone applies to their text (see `Session::in_time_zone`).
        config.options_mut().execution.time_zone = Some(crate::types::UTC.to_string());
        config.options_mut().catalog.default_schema = SEARCH_PATH_SCHEMA.to_string();
        let builder = SessionStateBuilder::new().with_config(config).with_default_features();
        let time_zone = crate::datetime::SessionZone::new(std::sync::RwLock::new(crate::datetime::Zone::UTC));
        let mut state = crate::datetime::install(crate::integers::install(builder), Arc::clone(&time_zone)).build();
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
            prepared_sql: None,
            plans: HashMap::new(),
            time_zone,
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
        self.view.set_snapshot(snapshot.clone());
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
        Planner::bind(plan, params)
    }

    /// `plan` with `params` bound (08P01 if their number is not the plan's).
    fn bind(plan: LogicalPlan, params: Option<Vec<ScalarValue>>) -> Result<LogicalPlan, SqlError> {
        let Some(values) = params else { return Ok(plan) };
        let expected = crate::dml::ordered_param_types(&plan.get_parameter_types()?)?.len();
        if values.len() != expected {
            return Err(parameter_count_mismatch(values.len(), expected));
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
        let mut statement = parse(&sql)?.pop().ok_or_else(|| SqlError::internal("RETURNING did not parse"))?;
        let names = names::postgres_column_names_aliasing(&mut statement);
        let plan = self.plan_over(vec![(alias.value.clone(), schema, batches)], statement).await?;
        let (schema, batches) = self.collect(&plan).await?;
        names::rename_batches(schema, batches, names)
    }

    /// The unbound plan of `statement`, planned while `tables` (name,
    /// schema, rows) are visible as `"__borealis_returning".name`; the plan
    /// keeps its tables after they are no longer visible.
    pub(crate) async fn plan_over(
        &self,
        tables: Vec<(String, SchemaRef, Vec<RecordBatch>)>,
        statement: Statement,
    ) -> Result<LogicalPlan, SqlError> {
        let mut registered = Vec::with_capacity(tables.len());
        let mut result = Ok(());
        for (name, schema, batches) in tables {
            result = MemTable::try_new(schema, vec![batches])
                .and_then(|table| self.returning.register_table(name.clone(), Arc::new(table)))
                .map(|_| registered.push(name))
                .map_err(SqlError::from);
            if result.is_err() {
                break;
            }
        }
        let plan = match result {
            Ok(()) => self.plan_unbound(statement).await,
            Err(error) => Err(error),
        };
        for name in registered {
            self.returning.deregister_table(&name)?;
        }
        plan
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

    /// Forgets every cached plan (settings or role changed).
    pub(crate) fn clear_plans(&mut self) {
        self.plans.clear();
    }

    /// The cached plan for `purpose` of the prepared statement being
    /// executed, if it was planned at the current catalog version.
    pub(crate) fn cached(&mut self, purpose: &'static str) -> Option<Arc<CachedPlan>> {
        let sql = self.prepared_sql.as_deref()?;
        let by_purpose = self.plans.get_mut(sql)?;
        let cached = by_purpose.get(purpose)?;
        if cached.catalog_version == self.catalog.version {
            return Some(Arc::clone(cached));
        }
        by_purpose.remove(purpose);
        None
    }

    /// Optimises `unbound` once for `purpose` of the prepared statement
    /// being executed and keeps it (see [`Planner::optimize_reusable`]);
    /// None if there is no such statement or its plan cannot be reused.
    /// An untyped parameter (`SELECT $1`) takes the type of its value, so
    /// its statement is planned per execution.
    pub(crate) fn cache(
        &mut self,
        purpose: &'static str,
        unbound: &LogicalPlan,
        names: Option<Vec<Option<String>>>,
    ) -> Result<Option<Arc<CachedPlan>>, SqlError> {
        let Some(sql) = self.prepared_sql.clone() else { return Ok(None) };
        let inferred = unbound.get_parameter_types()?;
        if !inferred.values().all(Option::is_some) {
            return Ok(None);
        }
        let Some(plan) = self.optimize_reusable(unbound) else { return Ok(None) };
        let param_types = crate::dml::ordered_param_types(&inferred)?;
        let cached = Arc::new(CachedPlan { plan, param_types, names, catalog_version: self.catalog.version });
        if self.plans.len() >= CACHED_PLANS_MAX {
            self.plans.clear();
        }
        self.plans.entry(sql).or_default().insert(purpose, Arc::clone(&cached));
        Ok(Some(cached))
    }

    /// `cached`'s plan with `values` bound, cast to the parameters' types.
    pub(crate) fn bind_cached(cached: &CachedPlan, values: Vec<ScalarValue>) -> Result<LogicalPlan, SqlError> {
        if values.len() != cached.param_types.len() {
            return Err(parameter_count_mismatch(values.len(), cached.param_types.len()));
        }
        let values = values
            .into_iter()
            .zip(&cached.param_types)
            .map(|(value, ty)| if value.data_type() == *ty { Ok(value) } else { value.cast_to(ty) })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(cached.plan.clone().with_param_values(values)?)
    }

    /// `statement` with `params` bound, ready to run: for a prepared
    /// statement, its cached plan for `purpose` (made on first use).
    pub(crate) async fn plan_for(
        &mut self,
        purpose: &'static str,
        statement: Statement,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<Planned, SqlError> {
        if let Some(values) = &params {
            if let Some(cached) = self.cached(purpose) {
                return Ok(Planned::Optimized(Planner::bind_cached(&cached, values.clone())?));
            }
            if self.prepared_sql.is_some() {
                let unbound = self.plan_unbound(statement).await?;
                if let Some(cached) = self.cache(purpose, &unbound, None)? {
                    return Ok(Planned::Optimized(Planner::bind_cached(&cached, values.clone())?));
                }
                // Not reusable: bind the plan just made rather than planning again.
                return Ok(Planned::Unoptimized(Planner::bind(unbound, params)?));
            }
        }
        Ok(Planned::Unoptimized(self.plan(statement, params).await?))
    }

    /// Runs a plan from [`Planner::plan_for`] to completion.
    pub(crate) async fn collect_planned(&self, planned: &Planned) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
        match planned {
            Planned::Optimized(plan) => self.collect_optimized(plan).await,
            Planned::Unoptimized(plan) => self.collect(plan).await,
        }
    }

    /// `plan` optimised for reuse with different parameter values, or None
    /// if it must be planned per execution: it calls a function that is not
    /// immutable (now(), nextval(), current_user...: the optimiser folds
    /// stable ones to this execution's values), or its optimisation needs
    /// the values.
    pub(crate) fn optimize_reusable(&self, plan: &LogicalPlan) -> Option<LogicalPlan> {
        use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
        let mut reusable = true;
        let _ = plan.apply_with_subqueries(|node| {
            node.apply_expressions(|expr| {
                expr.apply(|e| {
                    if let datafusion::logical_expr::Expr::ScalarFunction(function) = e
                        && function.func.signature().volatility != datafusion::logical_expr::Volatility::Immutable
                    {
                        reusable = false;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        });
        if !reusable || matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) {
            return None;
        }
        self.state.optimize(plan).inspect_err(|error| tracing::debug!(%error, "plan kept per execution")).ok()
    }

    /// Plans and runs an optimised `plan` (see [`Planner::optimize_reusable`]).
    pub(crate) async fn collect_optimized(
        &self,
        plan: &LogicalPlan,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
        let physical = Box::pin(self.state.query_planner().create_physical_plan(plan, &self.state)).await?;
        let schema = physical.schema();
        let batches = Box::pin(datafusion::physical_plan::collect(physical, self.state.task_ctx())).await?;
        Ok((schema, batches))
    }

    /// Optimises, plans and runs `plan` to completion.
    pub(crate) async fn collect(&self, plan: &LogicalPlan) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
        let physical = Box::pin(self.state.create_physical_plan(plan)).await?;
        let schema = physical.schema();
        let batches = Box::pin(datafusion::physical_plan::collect(physical, self.state.task_ctx())).await?;
        Ok((schema, batches))
    }
}

/// 08P01: Bind gave `supplied` parameter values for a statement that has `required`.
fn parameter_count_mismatch(supplied: usize, required: usize) -> SqlError {
    SqlError::new(
        sqlstate::PROTOCOL_VIOLATION,
        format!("bind message supplies {supplied} parameters, but prepared statement requires {required}"),
    )
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
