//! Keeping a table's indexes in step with its rows, and building an index.
//!
//! Every row change updates every index of the table in the same write set:
//! an inserted row adds one entry per index (after checking unique indexes),
//! a deleted row removes its entries, an updated row replaces the entries
//! whose key or row address changed. A unique index refuses a second row
//! with the same key unless a key column is NULL (NULLs are distinct, as in
//! PostgreSQL).

use crate::btree;
use crate::catalog::{Catalog, IndexDef, TableDef};
use crate::error::{SqlError, sqlstate};
use crate::heap::{RowAddress, WriteSet};
use crate::keys::row_key;
use crate::locks::{LockMode, LockTag};

/// The key of `tuple` in `index`, and whether it has a NULL column.
fn key_of(def: &TableDef, index: &IndexDef, tuple: &[u8]) -> Result<(Vec<u8>, bool), SqlError> {
    row_key(&def.types(), &index.columns, tuple)
}

/// 23505 for `index`.
pub fn unique_violation(index: &IndexDef) -> SqlError {
    SqlError::new(
        sqlstate::UNIQUE_VIOLATION,
        format!("duplicate key value violates unique constraint \"{}\"", index.name),
    )
}

/// Adds the entry of `key` for the row at `address`, refusing a duplicate in a unique index.
async fn add_entry(
    writes: &mut WriteSet,
    (def, index): (&TableDef, &IndexDef),
    key: &[u8],
    has_null: bool,
    address: RowAddress,
) -> Result<(), SqlError> {
    if index.unique && !has_null {
        lock_key(writes, def, index, key)?;
        if btree::contains(writes, index.root, key).await? {
            return Err(unique_violation(index));
        }
    }
    btree::insert(writes, index.root, btree::entry(key, address)).await
}

/// Locks a key of a unique index that the transaction adds or removes, so
/// that another transaction adding or removing it, or referencing it from
/// a foreign key, waits until this one ends (see `crate::locks`).
fn lock_key(writes: &WriteSet, def: &TableDef, index: &IndexDef, key: &[u8]) -> Result<(), SqlError> {
    let tag = LockTag::Key { table: def.first_page, index: index.root, key: key.to_vec() };
    writes.lock(tag, LockMode::Exclusive)
}

/// Adds the entries of a new row (already in the heap at `address`).
pub async fn insert_row(
    writes: &mut WriteSet,
    def: &TableDef,
    tuple: &[u8],
    address: RowAddress,
) -> Result<(), SqlError> {
    for index in &def.indexes {
        let (key, has_null) = key_of(def, index, tuple)?;
        add_entry(writes, (def, index), &key, has_null, address).await?;
    }
    Ok(())
}

/// Removes the entries of a row that is being deleted.
pub async fn delete_row(
    writes: &mut WriteSet,
    def: &TableDef,
    tuple: &[u8],
    address: RowAddress,
) -> Result<(), SqlError> {
    for index in &def.indexes {
        let (key, has_null) = key_of(def, index, tuple)?;
        if index.unique && !has_null {
            lock_key(writes, def, index, &key)?;
        }
        btree::delete(writes, index.root, &btree::entry(&key, address)).await?;
    }
    Ok(())
}

/// An index entry an UPDATE must add once all its rows have moved out of the way.
pub struct PendingEntry {
    index: usize,
    key: Vec<u8>,
    has_null: bool,
    address: RowAddress,
}

/// First half of updating a row from `old` at `old_address` to `new` at
/// `new_address`: removes the entries that change, returns those to add.
/// An UPDATE removes for all its rows before adding any, so that
/// `SET id = id + 1` over consecutive keys does not collide with itself.
pub async fn update_row(
    writes: &mut WriteSet,
    def: &TableDef,
    (old, old_address): (&[u8], RowAddress),
    (new, new_address): (&[u8], RowAddress),
) -> Result<Vec<PendingEntry>, SqlError> {
    let mut pending = Vec::new();
    for (position, index) in def.indexes.iter().enumerate() {
        let (old_key, old_has_null) = key_of(def, index, old)?;
        let (new_key, has_null) = key_of(def, index, new)?;
        if old_key == new_key && old_address == new_address {
            continue;
        }
        if index.unique && old_key != new_key && !old_has_null {
            lock_key(writes, def, index, &old_key)?;
        }
        btree::delete(writes, index.root, &btree::entry(&old_key, old_address)).await?;
        pending.push(PendingEntry { index: position, key: new_key, has_null, address: new_address });
    }
    Ok(pending)
}

/// Second half of an UPDATE: adds the entries [`update_row`] returned.
pub async fn add_pending(writes: &mut WriteSet, def: &TableDef, pending: Vec<PendingEntry>) -> Result<(), SqlError> {
    for entry in pending {
        add_entry(writes, (def, &def.indexes[entry.index]), &entry.key, entry.has_null, entry.address).await?;
    }
    Ok(())
}

/// Fills a freshly created index (root already allocated) from the table's rows.
pub async fn build(writes: &mut WriteSet, def: &TableDef, index: &IndexDef) -> Result<(), SqlError> {
    let mut keys = Vec::new();
    let types = def.types();
    writes
        .snapshot()
        .for_each_tuple(def.first_page, |address, tuple| {
            let (key, has_null) = row_key(&types, &index.columns, tuple)?;
            keys.push((key, has_null, address));
            Ok(())
        })
        .await?;
    // In key order, so a unique violation is found between neighbours and
    // inserts append to the rightmost leaf.
    keys.sort_unstable_by(|a, b| (&a.0, a.2.to_u64()).cmp(&(&b.0, b.2.to_u64())));
    if index.unique && keys.windows(2).any(|pair| !pair[0].1 && pair[0].0 == pair[1].0) {
        return Err(SqlError::new(
            sqlstate::UNIQUE_VIOLATION,
            format!("could not create unique index \"{}\": the table has duplicate keys", index.name),
        ));
    }
    for (key, _, address) in keys {
        btree::insert(writes, index.root, btree::entry(&key, address)).await?;
    }
    Ok(())
}

/// A free relation name: `base`, else `base1`, `base2`... (PostgreSQL's rule).
pub fn choose_name(catalog: &Catalog, schema: &str, taken: &[String], base: &str) -> String {
    let free = |name: &str| !catalog.relation_exists(schema, name) && !taken.iter().any(|t| t == name);
    if free(base) {
        return base.to_string();
    }
    (1..).map(|n| format!("{base}{n}")).find(|name| free(name)).expect("some suffix is free")
}

/// PostgreSQL's name for an index of `table` on `columns` ending in `suffix`
/// (`pkey`, `key` for unique constraints, `idx`).
pub fn default_name(table: &str, columns: &[&str], suffix: &str) -> String {
    if suffix == "pkey" {
        return format!("{table}_pkey");
    }
    format!("{table}_{}_{suffix}", columns.join("_"))
}
