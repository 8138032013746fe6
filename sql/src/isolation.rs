//! Transaction isolation levels, access modes and locking reads, on top of
//! the engine's write transactions and their locks (see `crate::engine` for
//! the rules; this module holds their parts that need no session).
//!
//! - [`TxMode`]: a transaction's isolation level and access mode, from
//!   `default_transaction_isolation` / `default_transaction_read_only`,
//!   `BEGIN ...`, `SET TRANSACTION ...`.
//! - [`CommitLog`]: the pages each recent commit changed, so that a
//!   REPEATABLE READ transaction writing on a newer state than its snapshot
//!   can tell which pages changed under it, and a SERIALIZABLE one whether
//!   anything did.
//! - [`LockingRead`]: `SELECT ... FOR UPDATE | NO KEY UPDATE | SHARE | KEY
//!   SHARE [OF t] [NOWAIT | SKIP LOCKED]`, taken off the query before
//!   DataFusion plans it.

use crate::catalog::TableDef;
use crate::error::{SqlError, sqlstate};
use crate::heap::RowAddress;
use crate::provider::{ROW_ADDRESS_COLUMN, ROWS_SCHEMA};
use borealis_storage::ids::{Lsn, PageId};
use datafusion::sql::sqlparser::ast::{
    Expr, GroupByExpr, Ident, LimitClause, LockType, NonBlock, ObjectName, Query, SelectItem, SetExpr, Statement,
    TableFactor, TransactionAccessMode, TransactionIsolationLevel, TransactionMode, visit_expressions,
};
use std::collections::{HashSet, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;

/// A transaction's isolation level, as PostgreSQL names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsolationLevel {
    /// Accepted and shown, run as READ COMMITTED (as PostgreSQL does).
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

impl IsolationLevel {
    /// The level a setting value names (`'repeatable read'`, any case); 22023 otherwise.
    pub fn from_setting(name: &str, value: &str) -> Result<IsolationLevel, SqlError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "read uncommitted" => Ok(IsolationLevel::ReadUncommitted),
            "read committed" => Ok(IsolationLevel::ReadCommitted),
            "repeatable read" => Ok(IsolationLevel::RepeatableRead),
            "serializable" => Ok(IsolationLevel::Serializable),
            _ => Err(SqlError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!("invalid value for parameter \"{name}\": \"{value}\""),
            )),
        }
    }

    fn from_ast(level: &TransactionIsolationLevel) -> Result<IsolationLevel, SqlError> {
        Ok(match level {
            TransactionIsolationLevel::ReadUncommitted => IsolationLevel::ReadUncommitted,
            TransactionIsolationLevel::ReadCommitted => IsolationLevel::ReadCommitted,
            TransactionIsolationLevel::RepeatableRead => IsolationLevel::RepeatableRead,
            TransactionIsolationLevel::Serializable => IsolationLevel::Serializable,
            TransactionIsolationLevel::Snapshot => return Err(SqlError::unsupported("ISOLATION LEVEL SNAPSHOT")),
        })
    }

    /// The name SHOW transaction_isolation answers.
    pub fn name(self) -> &'static str {
        match self {
            IsolationLevel::ReadUncommitted => "read uncommitted",
            IsolationLevel::ReadCommitted => "read committed",
            IsolationLevel::RepeatableRead => "repeatable read",
            IsolationLevel::Serializable => "serializable",
        }
    }

    /// Whether the transaction reads one snapshot for all its statements.
    pub fn keeps_snapshot(self) -> bool {
        matches!(self, IsolationLevel::RepeatableRead | IsolationLevel::Serializable)
    }
}

/// A transaction's characteristics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxMode {
    pub isolation: IsolationLevel,
    pub read_only: bool,
}

impl TxMode {
    /// `modes` (of BEGIN or SET TRANSACTION) applied over `self`.
    pub fn with(mut self, modes: &[TransactionMode]) -> Result<TxMode, SqlError> {
        for mode in modes {
            match mode {
                TransactionMode::IsolationLevel(level) => self.isolation = IsolationLevel::from_ast(level)?,
                TransactionMode::AccessMode(access) => self.read_only = *access == TransactionAccessMode::ReadOnly,
            }
        }
        Ok(self)
    }
}

/// 40001 for a REPEATABLE READ or SERIALIZABLE transaction that would
/// change (or lock) what a commit after its snapshot changed.
pub fn concurrent_update() -> SqlError {
    SqlError::new(sqlstate::SERIALIZATION_FAILURE, "could not serialize access due to concurrent update")
}

/// 40001 for a SERIALIZABLE transaction that writes after another
/// transaction committed since its snapshot.
pub fn read_write_dependencies() -> SqlError {
    SqlError::new(
        sqlstate::SERIALIZATION_FAILURE,
        "could not serialize access due to read/write dependencies among transactions",
    )
    .with_detail("Another transaction committed since this transaction's snapshot; retry the transaction.")
}

/// Commits kept in a [`CommitLog`]: a REPEATABLE READ or SERIALIZABLE
/// transaction whose snapshot is older than the oldest kept commit cannot
/// tell what changed since, and fails when it writes (40001). Thousands of
/// commits is far longer than a transaction usually reads before it writes,
/// and the log stays a few hundred KiB at most.
pub const COMMIT_LOG_COMMITS_MAX: usize = 4096;

/// What commits since a snapshot changed, by page.
#[derive(Debug)]
pub struct CommitLog {
    /// Every commit above this LSN is in `commits`.
    complete_above: Lsn,
    /// (commit LSN, pages changed, only sequence marks), LSNs rising.
    commits: VecDeque<(Lsn, Arc<[PageId]>, bool)>,
    /// A commit whose LSN is not known may have landed since the last one
    /// recorded (see [`CommitLog::lose`]).
    lost: bool,
}

/// What changed since a snapshot (see [`CommitLog::since`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Changes {
    /// The pages changed by commits after the snapshot, and whether any of
    /// those commits changed data (more than sequence marks).
    Pages { pages: HashSet<PageId>, data: bool },
    /// The snapshot is older than the log.
    Unknown,
}

impl CommitLog {
    /// A log that knows every commit after `start` (the newest commit when the engine opened).
    pub fn new(start: Lsn) -> CommitLog {
        CommitLog { complete_above: start, commits: VecDeque::new(), lost: false }
    }

    /// A commit failed in a way that leaves its outcome, and LSN, unknown:
    /// no snapshot taken before it can know what changed since. It lies
    /// below the next commit recorded, so from then on the log is complete
    /// again just below that one.
    pub fn lose(&mut self) {
        self.lost = true;
    }

    /// Records a commit; `sequence_marks` says it only wrote sequences' high-water marks.
    pub fn record(&mut self, lsn: Lsn, pages: impl IntoIterator<Item = PageId>, sequence_marks: bool) {
        if let Some((last, _, _)) = self.commits.back() {
            assert!(lsn > *last, "commit LSN {lsn} recorded after {last}");
        }
        if std::mem::take(&mut self.lost) {
            self.commits.clear();
            self.complete_above = Lsn(lsn.0.saturating_sub(1));
        }
        self.commits.push_back((lsn, pages.into_iter().collect(), sequence_marks));
        while self.commits.len() > COMMIT_LOG_COMMITS_MAX {
            let (dropped, _, _) = self.commits.pop_front().expect("log is not empty");
            self.complete_above = dropped;
        }
    }

    /// What the commits after `snapshot` changed.
    pub fn since(&self, snapshot: Lsn) -> Changes {
        if snapshot < self.complete_above || self.lost {
            return Changes::Unknown;
        }
        let mut pages = HashSet::new();
        let mut data = false;
        for (lsn, changed, sequence_marks) in self.commits.iter().rev() {
            if *lsn <= snapshot {
                break;
            }
            pages.extend(changed.iter().copied());
            data |= !sequence_marks;
        }
        Changes::Pages { pages, data }
    }
}

/// A query's locking clause, taken off it (see [`LockingRead::take`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockingRead {
    /// PostgreSQL's name for the clause, as its errors say ("FOR UPDATE", "FOR SHARE").
    pub clause: &'static str,
    pub nowait: bool,
    pub skip_locked: bool,
    /// The tables whose rows it locks: those named by OF, else those of the FROM list.
    pub tables: Vec<ObjectName>,
}

impl LockingRead {
    /// Takes the locking clauses off `query` (DataFusion does not plan
    /// them); None when it has none. Several clauses lock as the strongest
    /// does; NOWAIT wins over SKIP LOCKED, and both over waiting.
    pub fn take(query: &mut Query) -> Option<LockingRead> {
        if query.locks.is_empty() {
            return None;
        }
        let locks = std::mem::take(&mut query.locks);
        let update = locks.iter().any(|lock| lock.lock_type == LockType::Update);
        let nowait = locks.iter().any(|lock| lock.nonblock == Some(NonBlock::Nowait));
        let skip_locked = !nowait && locks.iter().any(|lock| lock.nonblock == Some(NonBlock::SkipLocked));
        let mut tables: Vec<ObjectName> = locks.iter().filter_map(|lock| lock.of.clone()).collect();
        if tables.is_empty()
            && let SetExpr::Select(select) = query.body.as_ref()
        {
            for from in &select.from {
                let factors = std::iter::once(&from.relation).chain(from.joins.iter().map(|join| &join.relation));
                for factor in factors {
                    if let TableFactor::Table { name, args: None, .. } = factor {
                        tables.push(name.clone());
                    }
                }
            }
        }
        Some(LockingRead { clause: if update { "FOR UPDATE" } else { "FOR SHARE" }, nowait, skip_locked, tables })
    }

    /// 25006 for a locking read where nothing may be written.
    pub fn read_only_error(&self) -> SqlError {
        SqlError::new(
            sqlstate::READ_ONLY_SQL_TRANSACTION,
            format!("cannot execute SELECT {} in a read-only transaction", self.clause),
        )
    }

    /// 55P03 for NOWAIT when another transaction holds a conflicting lock.
    pub fn not_available(&self) -> SqlError {
        let relation = self.tables.first().and_then(|name| name.0.last()).and_then(|part| part.as_ident());
        let relation = relation.map_or_else(String::new, crate::ddl::normalize);
        SqlError::new(sqlstate::LOCK_NOT_AVAILABLE, format!("could not obtain lock on row in relation \"{relation}\""))
    }
}

/// A locking read whose rows can be locked one by one: a plain SELECT of
/// one table (no joins, grouping, DISTINCT, set operations or WITH), with
/// WHERE, ORDER BY and LIMIT (under SKIP LOCKED, a literal LIMIT and no
/// OFFSET). Other shapes lock whole tables.
#[derive(Debug)]
pub struct RowLocking {
    /// The table as the query names it.
    pub table: ObjectName,
    /// What the query calls it (its alias, else its name).
    alias: Ident,
    projection: Vec<SelectItem>,
    selection: Option<Expr>,
    /// ` ORDER BY ...` (with its leading space), or empty.
    order_by: String,
    /// ` LIMIT ... [OFFSET ...]`, or empty.
    limit_clause: String,
    /// The LIMIT, when it is a literal.
    limit: Option<usize>,
}

impl RowLocking {
    /// The row-by-row form of `query` (its locking clause already taken
    /// off), None if it must lock whole tables.
    pub fn of(query: &Query, locking: &LockingRead) -> Option<RowLocking> {
        if query.with.is_some() || query.fetch.is_some() {
            return None;
        }
        let SetExpr::Select(select) = query.body.as_ref() else { return None };
        let [from] = select.from.as_slice() else { return None };
        let TableFactor::Table { name, alias, args: None, .. } = &from.relation else { return None };
        let plain = from.joins.is_empty()
            && select.distinct.is_none()
            && select.having.is_none()
            && matches!(&select.group_by, GroupByExpr::Expressions(exprs, _) if exprs.is_empty())
            && select.projection.iter().all(|item| !has_aggregate(item));
        let alias =
            alias.as_ref().map_or_else(|| name.0.last().and_then(|p| p.as_ident()).cloned(), |a| Some(a.name.clone()));
        let locks_it = locking.tables.iter().all(|locked| {
            locked == name || (locked.0.len() == 1 && locked.0.last().and_then(|p| p.as_ident()) == alias.as_ref())
        });
        let (limit, offset) = match &query.limit_clause {
            None => (None, false),
            Some(LimitClause::LimitOffset { limit, offset, limit_by }) if limit_by.is_empty() => {
                let literal = match limit {
                    Some(Expr::Value(value)) => value.to_string().parse::<usize>().ok(),
                    _ => None,
                };
                (literal.or(limit.is_none().then_some(usize::MAX)), offset.is_some())
            }
            Some(_) => return None,
        };
        if !plain || !locks_it || (locking.skip_locked && (offset || limit.is_none() && query.limit_clause.is_some())) {
            return None;
        }
        Some(RowLocking {
            table: name.clone(),
            alias: alias?,
            projection: select.projection.clone(),
            selection: select.selection.clone(),
            order_by: query.order_by.as_ref().map_or_else(String::new, |o| format!(" {o}")),
            limit_clause: query.limit_clause.as_ref().map_or_else(String::new, ToString::to_string),
            limit,
        })
    }

    /// Whether SKIP LOCKED has locked as many rows as the query's LIMIT asks.
    pub fn limit_reached(&self, locked: usize) -> bool {
        self.limit.is_some_and(|limit| locked >= limit)
    }

    /// The query for the addresses of the rows to lock, in the query's
    /// order; under SKIP LOCKED without its LIMIT (locked rows are passed by).
    pub fn addresses_query(&self, def: &TableDef, skip_locked: bool) -> Result<Statement, SqlError> {
        let alias = &self.alias;
        let mut sql =
            format!("SELECT {alias}.\"{ROW_ADDRESS_COLUMN}\" FROM \"{ROWS_SCHEMA}\".\"{}\" AS {alias}", def.id.0);
        if let Some(selection) = &self.selection {
            sql.push_str(&format!(" WHERE {selection}"));
        }
        sql.push_str(&self.order_by);
        if !skip_locked {
            sql.push_str(&self.limit_clause);
        }
        one_statement(&sql)
    }

    /// The query SKIP LOCKED runs instead: the original over just the rows
    /// it locked (`*` spelled out, so that the row address stays hidden).
    pub fn locked_query(&self, def: &TableDef, locked: &[RowAddress]) -> Result<Query, SqlError> {
        let alias = &self.alias;
        let columns = || {
            def.columns
                .iter()
                .map(|c| format!("{alias}.{}", Ident::with_quote('"', c.name.clone())))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let items: Vec<String> = self
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => columns(),
                other => other.to_string(),
            })
            .collect();
        let addresses = match locked {
            [] => "NULL".to_string(),
            some => some.iter().map(|a| a.to_u64().to_string()).collect::<Vec<_>>().join(", "),
        };
        let mut sql = format!(
            "SELECT {} FROM \"{ROWS_SCHEMA}\".\"{}\" AS {alias} WHERE {alias}.\"{ROW_ADDRESS_COLUMN}\" IN ({addresses})",
            items.join(", "),
            def.id.0
        );
        if let Some(selection) = &self.selection {
            sql.push_str(&format!(" AND ({selection})"));
        }
        sql.push_str(&self.order_by);
        sql.push_str(&self.limit_clause);
        match one_statement(&sql)? {
            Statement::Query(query) => Ok(*query),
            _ => Err(SqlError::internal("locked rows' query is not a query")),
        }
    }
}

fn one_statement(sql: &str) -> Result<Statement, SqlError> {
    let mut statements = crate::engine::parse(sql)?;
    match (statements.pop(), statements.is_empty()) {
        (Some(statement), true) => Ok(statement),
        _ => Err(SqlError::internal("rewrite did not produce one statement")),
    }
}

/// Whether a select item calls an aggregate PostgreSQL refuses with FOR UPDATE.
fn has_aggregate(item: &SelectItem) -> bool {
    const AGGREGATES: [&str; 9] =
        ["count", "sum", "avg", "min", "max", "array_agg", "string_agg", "json_agg", "jsonb_agg"];
    let found =
        visit_expressions(item, |expr| match expr {
            Expr::Function(function)
                if function.name.0.last().and_then(|part| part.as_ident()).is_some_and(|name| {
                    AGGREGATES.iter().any(|aggregate| name.value.eq_ignore_ascii_case(aggregate))
                }) =>
            {
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        });
    found.is_break()
}

/// 55P03 for a lock wait longer than `lock_timeout`.
pub fn lock_timeout() -> SqlError {
    SqlError::new(sqlstate::LOCK_NOT_AVAILABLE, "canceling statement due to lock timeout")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sql: &str) -> Query {
        match crate::engine::parse(sql).unwrap().remove(0) {
            datafusion::sql::sqlparser::ast::Statement::Query(query) => *query,
            other => panic!("not a query: {other}"),
        }
    }

    #[test]
    fn locking_clauses_are_taken_off() {
        let mut plain = query("SELECT * FROM t");
        assert_eq!(LockingRead::take(&mut plain), None);
        let mut locking = query("SELECT * FROM t JOIN u ON t.a = u.a WHERE t.a = 1 FOR SHARE NOWAIT");
        let read = LockingRead::take(&mut locking).unwrap();
        assert_eq!((read.clause, read.nowait, read.skip_locked), ("FOR SHARE", true, false));
        assert_eq!(read.tables.iter().map(ToString::to_string).collect::<Vec<_>>(), ["t", "u"]);
        assert!(locking.locks.is_empty());
        let mut of = query("SELECT * FROM t, u FOR UPDATE OF u SKIP LOCKED");
        let read = LockingRead::take(&mut of).unwrap();
        assert_eq!((read.clause, read.skip_locked), ("FOR UPDATE", true));
        assert_eq!(read.not_available().message(), "could not obtain lock on row in relation \"u\"");
        let mut weaker = query("SELECT * FROM t FOR NO KEY UPDATE");
        assert_eq!(LockingRead::take(&mut weaker).unwrap().clause, "FOR UPDATE");
        let mut key_share = query("SELECT * FROM t FOR KEY SHARE");
        assert_eq!(LockingRead::take(&mut key_share).unwrap().clause, "FOR SHARE");
    }

    #[test]
    fn commit_log_answers_what_changed_since_a_snapshot() {
        let mut log = CommitLog::new(Lsn(10));
        log.record(Lsn(12), [PageId(5)], false);
        log.record(Lsn(15), [PageId(6), PageId(7)], true);
        assert_eq!(log.since(Lsn(15)), Changes::Pages { pages: HashSet::new(), data: false });
        assert_eq!(log.since(Lsn(12)), Changes::Pages { pages: HashSet::from([PageId(6), PageId(7)]), data: false });
        assert_eq!(
            log.since(Lsn(10)),
            Changes::Pages { pages: HashSet::from([PageId(5), PageId(6), PageId(7)]), data: true }
        );
        assert_eq!(log.since(Lsn(9)), Changes::Unknown);
        for lsn in 0..COMMIT_LOG_COMMITS_MAX as u64 {
            log.record(Lsn(100 + lsn), [PageId(1)], false);
        }
        assert_eq!(log.since(Lsn(12)), Changes::Unknown);
        assert!(matches!(log.since(Lsn(100)), Changes::Pages { data: true, .. }));
        log.lose();
        assert_eq!(log.since(Lsn(5000)), Changes::Unknown);
        log.record(Lsn(9000), [PageId(2)], false);
        assert_eq!(log.since(Lsn(5000)), Changes::Unknown);
        assert_eq!(log.since(Lsn(8999)), Changes::Pages { pages: HashSet::from([PageId(2)]), data: true });
    }

    #[test]
    fn isolation_levels_by_name() {
        assert_eq!(IsolationLevel::from_setting("x", "Repeatable Read").unwrap(), IsolationLevel::RepeatableRead);
        assert_eq!(IsolationLevel::from_setting("x", "snapshot").unwrap_err().sqlstate(), "22023");
        assert!(IsolationLevel::Serializable.keeps_snapshot() && !IsolationLevel::ReadUncommitted.keeps_snapshot());
    }
}

/// Several sessions of one engine over the in-memory volume.
#[cfg(test)]
mod sessions {
    use crate::testing::MemoryVolume;
    use crate::{Engine, QueryOutput, Session};
    use datafusion::arrow::util::display::array_value_to_string;
    use std::sync::Arc;
    use std::time::Duration;

    async fn engine() -> Arc<Engine> {
        Engine::open(Arc::new(MemoryVolume::new()), false).await.unwrap()
    }

    async fn value(session: &mut Session, sql: &str) -> String {
        let outputs = session.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let Some(QueryOutput::Rows { batches, .. }) = outputs.last() else { panic!("{sql}: no rows") };
        array_value_to_string(batches[0].column(0), 0).unwrap()
    }

    async fn fails(session: &mut Session, sql: &str) -> (&'static str, String) {
        match session.execute(sql).await {
            Ok(_) => panic!("{sql} succeeded"),
            Err(error) => (error.sqlstate(), error.message().to_string()),
        }
    }

    async fn column(session: &mut Session, sql: &str) -> Vec<String> {
        let outputs = session.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let Some(QueryOutput::Rows { batches, .. }) = outputs.last() else { panic!("{sql}: no rows") };
        let mut values = Vec::new();
        for batch in batches {
            for row in 0..batch.num_rows() {
                values.push(array_value_to_string(batch.column(0), row).unwrap());
            }
        }
        values
    }

    #[tokio::test]
    async fn repeatable_read_conflicts_are_per_row_on_heap_pages() {
        let engine = engine().await;
        let (mut a, mut b) = (engine.session(), engine.session());
        b.execute("CREATE TABLE t (id int PRIMARY KEY, x int); INSERT INTO t VALUES (1, 0), (2, 0), (3, 0)")
            .await
            .unwrap();
        b.execute("CREATE TABLE log (n int)").await.unwrap();
        a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
        assert_eq!(value(&mut a, "SELECT count(*) FROM log").await, "0");
        // Others change row 2, delete row 3 and insert into both tables, on the same pages.
        b.execute("UPDATE t SET x = 1 WHERE id = 2; DELETE FROM t WHERE id = 3; INSERT INTO log VALUES (1)")
            .await
            .unwrap();
        // Row 1 and the log's page: the rows a writes are unchanged since its snapshot.
        a.execute("UPDATE t SET x = 5 WHERE id = 1; INSERT INTO log VALUES (2)").await.unwrap();
        assert_eq!(column(&mut a, "SELECT x FROM t ORDER BY id").await, ["5", "0", "0"]);
        assert_eq!(column(&mut a, "SELECT n FROM log").await, ["2"]);
        assert_eq!(fails(&mut a, "UPDATE t SET x = 7 WHERE id = 2").await.0, "40001");
        a.execute("ROLLBACK; BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
        assert_eq!(value(&mut a, "SELECT count(*) FROM t").await, "2");
        b.execute("DELETE FROM t WHERE id = 2").await.unwrap();
        assert_eq!(fails(&mut a, "DELETE FROM t WHERE id = 2").await.0, "40001");
        a.execute("ROLLBACK; BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
        assert_eq!(value(&mut a, "SELECT count(*) FROM log").await, "1");
        b.execute("INSERT INTO log VALUES (3)").await.unwrap();
        a.execute("INSERT INTO log VALUES (4); COMMIT").await.unwrap();
        assert_eq!(column(&mut b, "SELECT n FROM log ORDER BY n").await, ["1", "3", "4"]);
    }

    #[tokio::test]
    async fn repeatable_read_index_pages_conflict_and_ddl_after_the_snapshot_conflicts() {
        let engine = engine().await;
        let (mut a, mut b) = (engine.session(), engine.session());
        b.execute("CREATE TABLE t (id int PRIMARY KEY, x int); INSERT INTO t VALUES (1, 0), (2, 0)").await.unwrap();
        b.execute("CREATE TABLE u (id int)").await.unwrap();
        // An index page changed since the snapshot is refused whole.
        a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
        assert_eq!(value(&mut a, "SELECT count(*) FROM t").await, "2");
        b.execute("INSERT INTO t VALUES (3, 0)").await.unwrap();
        assert_eq!(fails(&mut a, "INSERT INTO t VALUES (4, 0)").await.0, "40001");
        a.execute("ROLLBACK").await.unwrap();
        // DDL after the snapshot: the first write fails.
        a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
        assert_eq!(value(&mut a, "SELECT count(*) FROM u").await, "0");
        b.execute("CREATE INDEX u_id ON u (id)").await.unwrap();
        assert_eq!(fails(&mut a, "INSERT INTO u VALUES (1)").await.0, "40001");
        a.execute("ROLLBACK").await.unwrap();
        // A write as the first statement takes the snapshot after the lock: no conflict.
        a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ; UPDATE t SET x = x + 1 WHERE id = 1").await.unwrap();
        assert_eq!(value(&mut a, "SELECT x FROM t WHERE id = 1").await, "1");
        a.execute("COMMIT").await.unwrap();
        // ROLLBACK TO a savepoint before the first write gives the lock up;
        // the next write checks again against the same snapshot.
        a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SAVEPOINT s; INSERT INTO u VALUES (7); ROLLBACK TO s")
            .await
            .unwrap();
        b.execute("UPDATE t SET x = 9 WHERE id = 2").await.unwrap();
        assert_eq!(fails(&mut a, "DELETE FROM t WHERE id = 2").await.0, "40001");
        a.execute("ROLLBACK").await.unwrap();
        assert_eq!(value(&mut b, "SELECT count(*) FROM u").await, "0");
    }

    #[tokio::test]
    async fn repeatable_read_locking_read_fails_on_a_table_changed_after_the_snapshot() {
        let engine = engine().await;
        let (mut a, mut b) = (engine.session(), engine.session());
        b.execute("CREATE TABLE t (id int, x int); INSERT INTO t VALUES (1, 0); CREATE TABLE u (id int)")
            .await
            .unwrap();
        a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
        assert_eq!(value(&mut a, "SELECT count(*) FROM u").await, "0");
        b.execute("UPDATE t SET x = 1").await.unwrap();
        // u did not change since the snapshot; t did.
        assert_eq!(value(&mut a, "SELECT count(*) FROM u FOR UPDATE").await, "0");
        a.execute("ROLLBACK; BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
        assert_eq!(value(&mut a, "SELECT count(*) FROM u").await, "0");
        b.execute("UPDATE t SET x = 2").await.unwrap();
        let (state, message) = fails(&mut a, "SELECT x FROM t FOR SHARE").await;
        assert_eq!((state, message.as_str()), ("40001", "could not serialize access due to concurrent update"));
        a.execute("ROLLBACK").await.unwrap();
    }

    #[tokio::test]
    async fn serializable_ignores_sequence_marks_and_fails_after_other_commits() {
        let engine = engine().await;
        let (mut a, mut b) = (engine.session(), engine.session());
        b.execute("CREATE SEQUENCE s; CREATE TABLE t (id int)").await.unwrap();
        a.execute("BEGIN ISOLATION LEVEL SERIALIZABLE").await.unwrap();
        assert_eq!(value(&mut a, "SELECT count(*) FROM t").await, "0");
        // nextval commits the sequence's mark on its own: not a conflict.
        assert_eq!(value(&mut b, "SELECT nextval('s')").await, "1");
        assert_eq!(value(&mut a, "SELECT nextval('s')").await, "2");
        a.execute("INSERT INTO t VALUES (1); COMMIT").await.unwrap();
        a.execute("BEGIN ISOLATION LEVEL SERIALIZABLE").await.unwrap();
        assert_eq!(value(&mut a, "SELECT count(*) FROM t").await, "1");
        b.execute("INSERT INTO t VALUES (2)").await.unwrap();
        assert_eq!(value(&mut a, "SELECT count(*) FROM t").await, "1");
        let (state, message) = fails(&mut a, "SELECT * FROM t FOR UPDATE").await;
        assert_eq!(
            (state, message.as_str()),
            ("40001", "could not serialize access due to read/write dependencies among transactions")
        );
        a.execute("ROLLBACK").await.unwrap();
    }

    #[tokio::test]
    async fn nowait_and_lock_timeout_give_55p03_and_a_locking_read_holds_the_lock() {
        let engine = engine().await;
        let (mut a, mut b) = (engine.session(), engine.session());
        a.execute("CREATE TABLE t (id int, x int); INSERT INTO t VALUES (1, 0)").await.unwrap();
        a.execute("BEGIN").await.unwrap();
        assert_eq!(value(&mut a, "SELECT x FROM t FOR UPDATE").await, "0");
        let (state, message) = fails(&mut b, "SELECT x FROM public.t FOR UPDATE NOWAIT").await;
        assert_eq!((state, message.as_str()), ("55P03", "could not obtain lock on row in relation \"t\""));
        b.execute("SET lock_timeout = 20").await.unwrap();
        let (state, message) = fails(&mut b, "UPDATE t SET x = 1").await;
        assert_eq!((state, message.as_str()), ("55P03", "canceling statement due to lock timeout"));
        // The holder's own NOWAIT read does not wait for itself.
        assert_eq!(value(&mut a, "SELECT x FROM t FOR UPDATE NOWAIT").await, "0");
        b.execute("RESET lock_timeout").await.unwrap();
        let waiting = tokio::spawn(async move {
            let result = b.execute("UPDATE t SET x = x + 1").await.map(|_| ());
            (b, result)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the UPDATE did not wait for the locking read's block");
        a.execute("UPDATE t SET x = 10; COMMIT").await.unwrap();
        let (mut b, result) = waiting.await.unwrap();
        result.unwrap();
        assert_eq!(value(&mut b, "SELECT x FROM t").await, "11");
    }
}
