//! Moving a write transaction onto a newer commit.
//!
//! Write transactions run side by side, each on the committed state at its
//! write set's read point (its base). Before each statement (READ
//! COMMITTED: so that it reads what was committed before it began) and at
//! COMMIT (so that the commit applies to the newest state), the engine
//! moves the transaction onto the newest commit:
//!
//! - If no commit since its base changed a page the transaction changed,
//!   its private pages are the newest pages with its changes on top: only
//!   the read point moves. The meta tuple is the exception both sides may
//!   change (counting allocated pages, which the engine hands out without
//!   overlap): the newest meta tuple is taken, with the larger count.
//! - Otherwise its row changes are replayed on a fresh write set over the
//!   newest commit: for each slot of each heap page it changed, the row at
//!   its base and the row it left there say what it did (inserted, updated,
//!   deleted); index entries are derived again from the rows, so index
//!   pages, page links and allocations are rebuilt rather than merged. The
//!   rows it updated or deleted are locked by it (`crate::locks`), so they
//!   are the same at the newest commit; one that is not fails with 40001,
//!   and a key another commit added meanwhile with 23505.
//!
//! A transaction with DDL is never replayed (it holds the database lock
//! exclusively, so only sequence marks commit beside it, on pages it does
//! not change); asked to, it fails with 40001.

use crate::catalog::{Catalog, META_PAGE, TableDef};
use crate::error::SqlError;
use crate::heap::{RowAddress, WriteSet};
use crate::index;
use crate::isolation::concurrent_update;
use borealis_storage::ids::{Lsn, PageId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What the engine knows of the commits between a write set's base and `newest`.
pub(crate) struct Target {
    pub newest: Lsn,
    /// The pages those commits changed; None if the commit log no longer knows.
    pub changed: Option<HashSet<PageId>>,
    /// REPEATABLE READ and SERIALIZABLE: the snapshot's read point and the
    /// pages commits after it changed (see `crate::heap`'s module docs).
    pub since_snapshot: Option<(Lsn, HashSet<PageId>)>,
}

/// Moves `writes` onto `target.newest` (see the module docs). `catalog` is
/// the transaction's; `ddl` says it holds DDL.
pub(crate) async fn rebase(
    writes: &mut WriteSet,
    target: Target,
    catalog: &Catalog,
    ddl: bool,
) -> Result<(), SqlError> {
    if target.newest == writes.read_point() {
        return Ok(());
    }
    let own = writes.pages();
    let overlap = target
        .changed
        .as_ref()
        .is_none_or(|changed| changed.iter().any(|page| *page != META_PAGE && own.contains_key(page)));
    if !overlap {
        let meta_too = target.changed.as_ref().is_some_and(|changed| changed.contains(&META_PAGE));
        let own_meta = own.contains_key(&META_PAGE);
        writes.advance(target.newest, target.since_snapshot);
        if meta_too && own_meta {
            writes.merge_meta().await?;
        }
        return Ok(());
    }
    if ddl {
        tracing::debug!("a transaction with DDL met a concurrent change of its pages");
        return Err(concurrent_update());
    }
    let replayed = replay(writes, target, catalog).await?;
    *writes = replayed;
    Ok(())
}

/// One row the transaction changed: as its base had it and as it left it.
struct RowChange {
    address: RowAddress,
    before: Option<Vec<u8>>,
    after: Option<Vec<u8>>,
}

async fn replay(writes: &WriteSet, target: Target, catalog: &Catalog) -> Result<WriteSet, SqlError> {
    let base = writes.read_point();
    let mut fresh = writes.fresh(target.newest);
    if let Some((snapshot, pages)) = target.since_snapshot
        && snapshot < target.newest
        && !pages.is_empty()
    {
        fresh.changed_since(snapshot, pages);
    }
    let defs: HashMap<PageId, &Arc<TableDef>> =
        catalog.tables().map(|entry| (entry.def.first_page, &entry.def)).collect();
    let mut by_table: HashMap<PageId, Vec<RowChange>> = HashMap::new();
    let mut pages = writes.heap_pages();
    pages.sort_unstable();
    for (page, first) in pages {
        let Some(own) = writes.pages().get(&page) else { continue };
        let before = writes.committed_page(page, base).await?;
        let slots = own.slot_count().max(before.slot_count());
        for slot in 0..slots {
            let (was, is) = (before.tuple(slot), own.tuple(slot));
            if was != is {
                let address = RowAddress { page, slot };
                let change = RowChange { address, before: was.map(<[u8]>::to_vec), after: is.map(<[u8]>::to_vec) };
                by_table.entry(first).or_default().push(change);
            }
        }
    }
    let mut rows = 0usize;
    for (first, changes) in by_table {
        // A catalog row (or a table the catalog no longer has) is DDL's.
        let def = defs.get(&first).ok_or_else(concurrent_update)?;
        rows += changes.len();
        replay_table(&mut fresh, def, changes).await?;
    }
    tracing::debug!(rows, from = %base, onto = %target.newest, "transaction replayed onto a newer commit");
    Ok(fresh)
}

/// Replays one table's row changes: old index entries out, rows changed,
/// new entries in (set-wise, as an UPDATE does, so keys may swap).
async fn replay_table(fresh: &mut WriteSet, def: &TableDef, changes: Vec<RowChange>) -> Result<(), SqlError> {
    for change in &changes {
        if let Some(before) = &change.before {
            let newest = fresh.page(change.address.page).await?;
            if newest.tuple(change.address.slot) != Some(before.as_slice()) {
                return Err(concurrent_update());
            }
            index::delete_row(fresh, def, before, change.address).await?;
        }
    }
    let mut added = Vec::new();
    for change in changes {
        match (change.before, change.after) {
            (Some(_), Some(after)) => {
                let moved_to = fresh.update(def.first_page, change.address, after.clone()).await?;
                added.push((after, moved_to));
            }
            (Some(_), None) => fresh.delete(def.first_page, change.address).await?,
            (None, Some(after)) => {
                let at = fresh.insert(def.first_page, after.clone()).await?;
                added.push((after, at));
            }
            (None, None) => {}
        }
    }
    for (row, address) in added {
        index::insert_row(fresh, def, &row, address).await?;
    }
    Ok(())
}
