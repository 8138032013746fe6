//! Locks of write transactions: the database, tables, rows and unique keys,
//! with waits, deadlock detection and the staleness rule that lets write
//! transactions run side by side (see "Concurrency" in `crate::engine`).
//!
//! - [`LockTag::Database`]: every write transaction holds it in
//!   [`LockMode::IntentExclusive`]; DDL (and VACUUM) takes it
//!   [`LockMode::Exclusive`], so schema changes run alone.
//! - [`LockTag::Table`]: row and key locks take it `IntentExclusive` (or
//!   `IntentShare`) first; `SELECT ... FOR UPDATE` takes it `Exclusive`,
//!   `FOR SHARE` `Share`. A transaction holding more than
//!   [`ESCALATE_AFTER`] row and key locks on one table takes the table
//!   `Exclusive` when no one else uses it, and stops counting rows there
//!   (a ten-million-row UPDATE or COPY does not hold ten million locks).
//! - [`LockTag::Row`]: UPDATE and DELETE lock the rows they change.
//! - [`LockTag::Key`]: a key of a unique index, locked `Exclusive` by
//!   whoever adds or removes it and `Share` by a FOREIGN KEY check of a
//!   row that references it, so that two inserts of one key, or an insert
//!   of a child and the delete of its parent, wait for each other.
//!
//! Staleness: a transaction reads the committed state at its base LSN.
//! When a transaction that held a `Share` or `Exclusive` lock commits at
//! LSN `c`, the lock keeps `c` as its stamp. A lock granted to a
//! transaction whose base is below the stamp is granted *stale*: what the
//! transaction read of that row or key is older than a commit that changed
//! (or relied on) it, and the statement must run again on the newest state
//! (READ COMMITTED) or fail (40001, a row under REPEATABLE READ). Stamps
//! nobody can be stale against (at or below every
//! live transaction's base) are dropped.
//!
//! Waits never happen inside a statement's page changes: a lock that is
//! not free fails the statement attempt ([`Acquired::Blocked`]), the engine
//! puts the transaction back as it was before the statement, waits here
//! ([`LockManager::wait`]) and runs the statement again. A wait that would
//! close a cycle of waiting transactions fails at once with 40P01.

use crate::error::{SqlError, sqlstate};
use crate::heap::RowAddress;
use borealis_storage::ids::{Lsn, PageId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A write transaction, as the lock manager knows it.
pub type TxnId = u64;

/// Row and key locks one transaction takes on one table before it tries
/// to lock the whole table instead.
pub const ESCALATE_AFTER: usize = 8192;

/// What is locked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LockTag {
    Database,
    /// A table, by the first page of its heap chain.
    Table(PageId),
    /// A row of the table whose chain starts at `.0`.
    Row(PageId, RowAddress),
    /// A key of a unique index (by its root page) of the table `table`.
    Key {
        table: PageId,
        index: PageId,
        key: Vec<u8>,
    },
}

impl LockTag {
    /// The table a row or key lock belongs to.
    fn table(&self) -> Option<PageId> {
        match self {
            LockTag::Row(table, _) | LockTag::Key { table, .. } => Some(*table),
            LockTag::Database | LockTag::Table(_) => None,
        }
    }
}

/// Lock modes, from weakest to strongest (the usual multi-granularity set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    IntentShare,
    IntentExclusive,
    Share,
    Exclusive,
}

impl LockMode {
    fn conflicts(self, other: LockMode) -> bool {
        use LockMode::*;
        match (self, other) {
            (Exclusive, _) | (_, Exclusive) => true,
            (IntentShare, _) | (_, IntentShare) => false,
            (IntentExclusive, IntentExclusive) | (Share, Share) => false,
            (IntentExclusive, Share) | (Share, IntentExclusive) => true,
        }
    }

    /// Whether holding `self` grants `want` too.
    fn covers(self, want: LockMode) -> bool {
        use LockMode::*;
        match self {
            Exclusive => true,
            Share => matches!(want, Share | IntentShare),
            IntentExclusive => matches!(want, IntentExclusive | IntentShare),
            IntentShare => want == IntentShare,
        }
    }

    /// Whether a commit holding this mode stamps the lock: `Exclusive`
    /// (it changed what it locks) and `Share` (it relied on it: a parent
    /// key a committed child references must be seen by the next deleter).
    fn stamps(self) -> bool {
        matches!(self, LockMode::Share | LockMode::Exclusive)
    }

    /// The intention lock a row or key lock of this mode needs on its table.
    fn intention(self) -> LockMode {
        match self {
            LockMode::Share | LockMode::IntentShare => LockMode::IntentShare,
            LockMode::Exclusive | LockMode::IntentExclusive => LockMode::IntentExclusive,
        }
    }
}

/// The outcome of [`LockManager::try_acquire`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    Granted,
    /// Granted, but a commit above the transaction's base changed what it locks.
    Stale,
    /// Another transaction holds a conflicting lock on this tag.
    Blocked(LockTag, LockMode),
}

#[derive(Default)]
struct Entry {
    holders: Vec<(TxnId, LockMode)>,
    /// The newest commit that held the tag `Share` or `Exclusive` (see the module docs).
    stamp: Lsn,
}

struct Txn {
    base: Lsn,
    /// Tags it holds (each once).
    held: Vec<LockTag>,
    waiting: Option<(LockTag, LockMode)>,
    /// Row and key locks per table, until the table is escalated.
    per_table: HashMap<PageId, usize>,
    /// Tables it holds `Exclusive`: row and key locks there are implied.
    exclusive_tables: HashSet<PageId>,
}

#[derive(Default)]
struct State {
    entries: HashMap<LockTag, Entry>,
    txns: HashMap<TxnId, Txn>,
    next_txn: TxnId,
    /// Entries kept for their stamp alone.
    stamped: usize,
    /// Stamps are pruned when `stamped` reaches this (see [`State::prune_stamps`]).
    prune_at: usize,
}

/// Prune stamps when this many entries are kept for them alone.
const STAMPS_PRUNE_AT: usize = 16_384;

/// The lock table of one engine.
#[derive(Default)]
pub struct LockManager {
    state: Mutex<State>,
    /// Woken on every release: waiters look again.
    released: tokio::sync::Notify,
}

impl LockManager {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new transaction reading the committed state at `base`.
    pub fn register(&self, base: Lsn) -> TxnId {
        let mut state = self.lock();
        state.next_txn += 1;
        let id = state.next_txn;
        let txn =
            Txn { base, held: Vec::new(), waiting: None, per_table: HashMap::new(), exclusive_tables: HashSet::new() };
        state.txns.insert(id, txn);
        id
    }

    /// The transaction now reads the committed state at `base` (newer).
    pub fn rebase(&self, txn: TxnId, base: Lsn) {
        if let Some(txn) = self.lock().txns.get_mut(&txn) {
            txn.base = txn.base.max(base);
        }
    }

    /// Takes `mode` on `tag` for `txn` if no other transaction holds a
    /// conflicting lock (a row or key lock takes its table's intention lock
    /// first); never waits.
    pub fn try_acquire(&self, txn: TxnId, tag: &LockTag, mode: LockMode) -> Acquired {
        let mut state = self.lock();
        let Some(table) = tag.table() else { return state.grant(txn, tag, mode) };
        if state.txns.get(&txn).is_some_and(|t| t.exclusive_tables.contains(&table)) {
            return Acquired::Granted;
        }
        let on_table = state.grant(txn, &LockTag::Table(table), mode.intention());
        if matches!(on_table, Acquired::Blocked(..)) {
            return on_table;
        }
        let on_tag = state.grant(txn, tag, mode);
        if matches!(on_tag, Acquired::Blocked(..)) {
            return on_tag;
        }
        state.count_for_escalation(txn, table);
        if on_table == Acquired::Stale { on_table } else { on_tag }
    }

    /// Waits until `txn` can take `mode` on `tag`, then takes it (the
    /// caller then runs its statement again, so staleness does not
    /// matter here). 40P01 if waiting would close a cycle of waits.
    /// Cancel-safe: a dropped wait leaves no trace.
    pub async fn wait(&self, txn: TxnId, tag: &LockTag, mode: LockMode) -> Result<(), SqlError> {
        struct Waiting<'a>(&'a LockManager, TxnId);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                if let Some(txn) = self.0.lock().txns.get_mut(&self.1) {
                    txn.waiting = None;
                }
            }
        }
        let _waiting = Waiting(self, txn);
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if !matches!(self.try_acquire_locked(&mut state, txn, tag, mode), Acquired::Blocked(..)) {
                    return Ok(());
                }
                if let Some(entry) = state.txns.get_mut(&txn) {
                    entry.waiting = Some((tag.clone(), mode));
                }
                if state.closes_cycle(txn) {
                    tracing::info!(txn, ?tag, "deadlock detected; the transaction that closed the cycle fails");
                    return Err(deadlock());
                }
            }
            notified.await;
        }
    }

    fn try_acquire_locked(&self, state: &mut State, txn: TxnId, tag: &LockTag, mode: LockMode) -> Acquired {
        match tag.table() {
            Some(table) if !state.txns.get(&txn).is_some_and(|t| t.exclusive_tables.contains(&table)) => {
                let on_table = state.grant(txn, &LockTag::Table(table), mode.intention());
                if matches!(on_table, Acquired::Blocked(..)) {
                    return on_table;
                }
                state.grant(txn, tag, mode)
            }
            Some(_) => Acquired::Granted,
            None => state.grant(txn, tag, mode),
        }
    }

    /// Releases every lock of `txn` and forgets it; `committed` is its
    /// commit LSN (None: rolled back), stamped on its `Share` and `Exclusive` locks.
    pub fn release_all(&self, txn: TxnId, committed: Option<Lsn>) {
        let mut state = self.lock();
        let Some(gone) = state.txns.remove(&txn) else { return };
        for tag in gone.held {
            let Some(entry) = state.entries.get_mut(&tag) else { continue };
            let stamps = entry.holders.iter().any(|(holder, mode)| *holder == txn && mode.stamps());
            entry.holders.retain(|(holder, _)| *holder != txn);
            if let (Some(lsn), true) = (committed, stamps) {
                entry.stamp = entry.stamp.max(lsn);
            }
            if entry.holders.is_empty() {
                if entry.stamp == Lsn::ZERO {
                    state.entries.remove(&tag);
                } else {
                    state.stamped += 1;
                }
            }
        }
        if state.stamped >= state.prune_at.max(STAMPS_PRUNE_AT) {
            state.prune_stamps();
        }
        drop(state);
        self.released.notify_waiters();
    }

    /// Locks held (entries with holders), for tests.
    #[cfg(test)]
    fn held_count(&self) -> usize {
        self.lock().entries.values().filter(|entry| !entry.holders.is_empty()).count()
    }
}

impl Entry {
    fn blockers(&self, txn: TxnId, mode: LockMode) -> impl Iterator<Item = TxnId> + '_ {
        self.holders.iter().filter(move |(holder, held)| *holder != txn && held.conflicts(mode)).map(|(h, _)| *h)
    }
}

impl State {
    fn grant(&mut self, txn: TxnId, tag: &LockTag, mode: LockMode) -> Acquired {
        let base = match self.txns.get(&txn) {
            Some(state) => state.base,
            None => return Acquired::Granted,
        };
        let entry = self.entries.entry(tag.clone()).or_default();
        if entry.holders.iter().any(|(holder, held)| *holder == txn && held.covers(mode)) {
            return Acquired::Granted;
        }
        if entry.blockers(txn, mode).next().is_some() {
            if entry.holders.is_empty() && entry.stamp == Lsn::ZERO {
                self.entries.remove(tag);
            }
            return Acquired::Blocked(tag.clone(), mode);
        }
        let first_of_txn = !entry.holders.iter().any(|(holder, _)| *holder == txn);
        if entry.holders.is_empty() && entry.stamp != Lsn::ZERO {
            self.stamped = self.stamped.saturating_sub(1);
        }
        entry.holders.push((txn, mode));
        let stale = entry.stamp > base;
        if first_of_txn && let Some(state) = self.txns.get_mut(&txn) {
            state.held.push(tag.clone());
        }
        if stale { Acquired::Stale } else { Acquired::Granted }
    }

    /// Counts a row or key lock on `table`; past [`ESCALATE_AFTER`], takes
    /// the table `Exclusive` if that is free.
    fn count_for_escalation(&mut self, txn: TxnId, table: PageId) {
        let Some(state) = self.txns.get_mut(&txn) else { return };
        let count = state.per_table.entry(table).or_default();
        *count += 1;
        if *count < ESCALATE_AFTER || !(*count).is_multiple_of(ESCALATE_AFTER) {
            return;
        }
        let tag = LockTag::Table(table);
        let free = self.entries.get(&tag).is_none_or(|entry| entry.blockers(txn, LockMode::Exclusive).next().is_none());
        if free && self.grant(txn, &tag, LockMode::Exclusive) != Acquired::Blocked(tag, LockMode::Exclusive) {
            if let Some(state) = self.txns.get_mut(&txn) {
                state.exclusive_tables.insert(table);
                state.per_table.remove(&table);
            }
            tracing::debug!(txn, table = %table, "row locks escalated to a table lock");
        }
    }

    /// Whether `txn`, waiting, waits (through other waiting transactions) for itself.
    fn closes_cycle(&self, txn: TxnId) -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![txn];
        while let Some(at) = stack.pop() {
            let Some((tag, mode)) = self.txns.get(&at).and_then(|t| t.waiting.as_ref()) else { continue };
            let Some(entry) = self.entries.get(tag) else { continue };
            for blocker in entry.blockers(at, *mode) {
                if blocker == txn {
                    return true;
                }
                if seen.insert(blocker) {
                    stack.push(blocker);
                }
            }
        }
        false
    }

    /// Drops stamps no live transaction can be stale against. An old
    /// transaction keeps newer stamps alive: the next prune then waits for
    /// twice as many, so pruning stays linear in the stamps made.
    fn prune_stamps(&mut self) {
        let oldest = self.txns.values().map(|txn| txn.base).min();
        self.entries.retain(|_, entry| !entry.holders.is_empty() || oldest.is_some_and(|base| entry.stamp > base));
        self.stamped = self.entries.values().filter(|entry| entry.holders.is_empty()).count();
        self.prune_at = self.stamped * 2;
        if self.stamped > STAMPS_PRUNE_AT {
            tracing::info!(stamps = self.stamped, "an old write transaction keeps lock stamps alive");
        }
    }
}

/// One write transaction's handle on the engine's locks, shared by its
/// write set and the write set's savepoint copies; dropping the last one
/// releases its locks (rollback). A commit releases them first, with its LSN.
pub struct TxnLocks {
    manager: Arc<LockManager>,
    id: TxnId,
    /// REPEATABLE READ or SERIALIZABLE: a stale row lock is a serialization failure.
    keeps_snapshot: bool,
    /// The lock the last statement attempt could not take.
    blocked: Mutex<Option<(LockTag, LockMode)>>,
    /// The engine's page allocator (see [`TxnLocks::allocate_page`]).
    pages: Arc<AtomicU64>,
}

impl TxnLocks {
    /// Registers a transaction reading the committed state at `base`.
    pub fn new(manager: Arc<LockManager>, base: Lsn, keeps_snapshot: bool, pages: Arc<AtomicU64>) -> TxnLocks {
        let id = manager.register(base);
        TxnLocks { manager, id, keeps_snapshot, blocked: Mutex::new(None), pages }
    }

    pub fn id(&self) -> TxnId {
        self.id
    }

    pub fn manager(&self) -> &Arc<LockManager> {
        &self.manager
    }

    /// See [`crate::heap::WriteSet::lock`].
    pub fn acquire(&self, tag: LockTag, mode: LockMode) -> Result<(), SqlError> {
        match self.manager.try_acquire(self.id, &tag, mode) {
            Acquired::Granted => Ok(()),
            Acquired::Stale if self.keeps_snapshot && matches!(tag, LockTag::Row(..)) => {
                Err(crate::isolation::concurrent_update())
            }
            Acquired::Stale => Err(restart()),
            Acquired::Blocked(tag, mode) => {
                *self.blocked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((tag, mode));
                Err(restart())
            }
        }
    }

    /// The lock the last statement attempt waits for, taken off the handle.
    pub fn take_blocked(&self) -> Option<(LockTag, LockMode)> {
        self.blocked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }

    /// A page id no other transaction takes: at least `floor` (the meta
    /// tuple's next free page as the transaction sees it). Ids taken by
    /// transactions that roll back stay unused until the engine restarts.
    pub fn allocate_page(&self, floor: u64) -> u64 {
        self.pages.fetch_max(floor, Ordering::SeqCst);
        self.pages.fetch_add(1, Ordering::SeqCst)
    }

    /// The transaction committed at `lsn`: its locks go, stamped.
    pub fn release_committed(&self, lsn: Lsn) {
        self.manager.release_all(self.id, Some(lsn));
    }
}

impl Drop for TxnLocks {
    fn drop(&mut self) {
        self.manager.release_all(self.id, None);
    }
}

/// The marker error of a statement attempt that must run again (after a
/// lock wait, or on a newer state); the engine never lets it reach a client.
pub fn restart() -> SqlError {
    SqlError::new(sqlstate::STATEMENT_RESTART, "the statement must run again on a newer state")
}

/// Whether `error` is [`restart`]'s marker.
pub fn is_restart(error: &SqlError) -> bool {
    error.sqlstate() == sqlstate::STATEMENT_RESTART
}

/// 40P01.
pub fn deadlock() -> SqlError {
    SqlError::new(sqlstate::DEADLOCK_DETECTED, "deadlock detected").with_detail(
        "The transaction waited for a lock held by a transaction that waits, directly or not, for this one.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(slot: u16) -> LockTag {
        LockTag::Row(PageId(10), RowAddress { page: PageId(11), slot })
    }

    #[test]
    fn modes_conflict_as_multi_granularity_locking_says() {
        use LockMode::*;
        assert!(!IntentExclusive.conflicts(IntentExclusive));
        assert!(IntentExclusive.conflicts(Share));
        assert!(!Share.conflicts(Share));
        assert!(!IntentShare.conflicts(Share));
        assert!(Exclusive.conflicts(IntentShare));
    }

    #[test]
    fn row_locks_conflict_only_on_the_same_row() {
        let locks = LockManager::default();
        let (a, b) = (locks.register(Lsn(1)), locks.register(Lsn(1)));
        assert_eq!(locks.try_acquire(a, &row(1), LockMode::Exclusive), Acquired::Granted);
        assert_eq!(locks.try_acquire(b, &row(2), LockMode::Exclusive), Acquired::Granted);
        assert_eq!(locks.try_acquire(b, &row(1), LockMode::Exclusive), Acquired::Blocked(row(1), LockMode::Exclusive));
        locks.release_all(a, None);
        assert_eq!(locks.try_acquire(b, &row(1), LockMode::Exclusive), Acquired::Granted);
        locks.release_all(b, None);
        assert_eq!(locks.held_count(), 0);
    }

    #[test]
    fn a_lock_released_by_a_newer_commit_is_granted_stale() {
        let locks = LockManager::default();
        let (a, b) = (locks.register(Lsn(5)), locks.register(Lsn(5)));
        assert_eq!(locks.try_acquire(a, &row(1), LockMode::Exclusive), Acquired::Granted);
        locks.release_all(a, Some(Lsn(9)));
        assert_eq!(locks.try_acquire(b, &row(1), LockMode::Exclusive), Acquired::Stale);
        let c = locks.register(Lsn(9));
        assert_eq!(locks.try_acquire(c, &row(2), LockMode::Share), Acquired::Granted);
        locks.release_all(b, None);
        assert_eq!(locks.try_acquire(c, &row(1), LockMode::Exclusive), Acquired::Granted);
    }

    #[test]
    fn a_table_lock_excludes_row_locks_of_others() {
        let locks = LockManager::default();
        let (a, b) = (locks.register(Lsn(1)), locks.register(Lsn(1)));
        assert_eq!(locks.try_acquire(a, &LockTag::Table(PageId(10)), LockMode::Share), Acquired::Granted);
        let blocked = locks.try_acquire(b, &row(1), LockMode::Exclusive);
        assert_eq!(blocked, Acquired::Blocked(LockTag::Table(PageId(10)), LockMode::IntentExclusive));
        assert_eq!(locks.try_acquire(b, &row(1), LockMode::Share), Acquired::Granted);
    }

    #[test]
    fn many_row_locks_escalate_to_the_table_when_it_is_free() {
        let locks = LockManager::default();
        let a = locks.register(Lsn(1));
        for slot in 0..(ESCALATE_AFTER as u16 + 100) {
            assert_eq!(locks.try_acquire(a, &row(slot), LockMode::Exclusive), Acquired::Granted);
        }
        assert!(locks.held_count() <= ESCALATE_AFTER + 1, "{} locks held", locks.held_count());
        let b = locks.register(Lsn(1));
        assert!(matches!(locks.try_acquire(b, &row(60_000), LockMode::Share), Acquired::Blocked(..)));
    }

    #[test]
    fn stamps_are_pruned_once_no_transaction_is_older() {
        let locks = LockManager::default();
        let old = locks.register(Lsn(1));
        for slot in 0..(STAMPS_PRUNE_AT as u16 + 10) {
            let writer = locks.register(Lsn(2));
            assert_eq!(locks.try_acquire(writer, &row(slot), LockMode::Exclusive), Acquired::Granted);
            locks.release_all(writer, Some(Lsn(3)));
        }
        // The old transaction may still be stale against every one of them.
        assert_eq!(locks.try_acquire(old, &row(0), LockMode::Exclusive), Acquired::Stale);
        locks.release_all(old, None);
        // Once it is gone, the next prune (after as many stamps again) drops them.
        for n in 0..(STAMPS_PRUNE_AT as u64 + 100) {
            let writer = locks.register(Lsn(4));
            let tag = LockTag::Row(PageId(10), RowAddress { page: PageId(100 + n / 1000), slot: (n % 1000) as u16 });
            assert_eq!(locks.try_acquire(writer, &tag, LockMode::Exclusive), Acquired::Granted);
            locks.release_all(writer, Some(Lsn(5)));
        }
        let kept = locks.lock().entries.len();
        assert!(kept < STAMPS_PRUNE_AT, "{kept} entries kept");
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_holder_releases_and_a_cycle_is_a_deadlock() {
        let locks = std::sync::Arc::new(LockManager::default());
        let (a, b) = (locks.register(Lsn(1)), locks.register(Lsn(1)));
        assert_eq!(locks.try_acquire(a, &row(1), LockMode::Exclusive), Acquired::Granted);
        assert_eq!(locks.try_acquire(b, &row(2), LockMode::Exclusive), Acquired::Granted);
        let waiter = {
            let locks = std::sync::Arc::clone(&locks);
            tokio::spawn(async move { locks.wait(a, &row(2), LockMode::Exclusive).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        let error = locks.wait(b, &row(1), LockMode::Exclusive).await.unwrap_err();
        assert_eq!(error.sqlstate(), "40P01");
        locks.release_all(b, None);
        waiter.await.unwrap().unwrap();
        assert_eq!(locks.try_acquire(a, &row(2), LockMode::Exclusive), Acquired::Granted);
    }
}
