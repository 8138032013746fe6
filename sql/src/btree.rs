//! B+tree indexes in pages.
//!
//! An index maps keys (see `crate::keys`) to row addresses. Each entry is
//! the key followed by the row's address (8 bytes, big endian), so entries
//! are unique even in a non-unique index, and entries compare as byte
//! strings in (key, address) order.
//!
//! Pages:
//! - a leaf ([`PageKind::IndexLeaf`]) holds entries, one per slot, in no
//!   particular slot order (an insert is one small `InsertTuple` redo, a
//!   delete one `DeleteTuple`); leaves are linked by `next_page` in key order;
//! - an inner node ([`PageKind::IndexInner`]) holds (child page, low key)
//!   tuples: every entry under `child` is >= its low key, and the leftmost
//!   child has the empty low key. A search follows the child with the
//!   greatest low key <= the target.
//!
//! The root's page id never changes (it is in the catalog): when the root
//! splits, its entries move to two new pages and the root becomes an inner
//! node over them. A full non-root node splits in two by bytes, the upper
//! half moving to a new page whose low key goes up to the parent. Nodes are
//! not merged when entries are deleted; an empty leaf stays in the chain.
//!
//! Every change goes through the transaction's [`WriteSet`], so an index
//! changes atomically with its table at commit, and readers see both at one
//! read point.

use crate::error::{SqlError, sqlstate};
use crate::heap::{RowAddress, Snapshot, WriteSet};
use borealis_storage::ids::PageId;
use borealis_storage::page::{Page, PageKind};
use borealis_storage::redo::RedoBody;
use std::future::Future;
use std::sync::Arc;

/// Largest index entry (key and address), about a quarter of a page so that a
/// split always leaves both halves room (PostgreSQL's limit is a third).
pub const ENTRY_SIZE_MAX: usize = 2000;
/// Bytes of the row address at the end of an entry.
const ADDRESS_BYTES: usize = 8;
/// Bytes of the child page id at the start of an inner tuple.
const CHILD_BYTES: usize = 8;
/// Deeper than any tree of a volume's size: a guard against cycles in a corrupt tree.
const DEPTH_MAX: usize = 32;

/// Pages as some reader sees them: a statement's snapshot, or a transaction's write set.
pub trait Pages {
    fn page(&self, id: PageId) -> impl Future<Output = Result<Arc<Page>, SqlError>> + Send;
}

impl Pages for Snapshot {
    fn page(&self, id: PageId) -> impl Future<Output = Result<Arc<Page>, SqlError>> + Send {
        Snapshot::page(self, id)
    }
}

impl Pages for WriteSet {
    fn page(&self, id: PageId) -> impl Future<Output = Result<Arc<Page>, SqlError>> + Send {
        WriteSet::page(self, id)
    }
}

/// The entry of `key` for the row at `address`.
pub fn entry(key: &[u8], address: RowAddress) -> Vec<u8> {
    let mut entry = Vec::with_capacity(key.len() + ADDRESS_BYTES);
    entry.extend_from_slice(key);
    entry.extend_from_slice(&address.to_u64().to_be_bytes());
    entry
}

/// The row address of an entry.
pub fn entry_address(entry: &[u8]) -> Result<RowAddress, SqlError> {
    let split = entry.len().checked_sub(ADDRESS_BYTES).ok_or_else(|| SqlError::corrupt("index entry too short"))?;
    let bytes: [u8; ADDRESS_BYTES] = entry[split..].try_into().expect("8 bytes");
    Ok(RowAddress::from_u64(u64::from_be_bytes(bytes)))
}

/// Entries whose key lies between two inclusive bounds on key prefixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// Entries >= this (bytewise); empty: from the first entry.
    pub low: Vec<u8>,
    /// Entries whose first `high.len()` bytes are <= this; None: to the last entry.
    pub high: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every entry whose key starts with `prefix` (for a whole key: its entries).
    pub fn prefix(prefix: Vec<u8>) -> KeyRange {
        KeyRange { high: Some(prefix.clone()), low: prefix }
    }

    fn beyond_high(&self, entry: &[u8]) -> bool {
        self.high.as_ref().is_some_and(|high| &entry[..entry.len().min(high.len())] > high.as_slice())
    }
}

/// Creates an empty index: one leaf, its root.
pub async fn create(writes: &mut WriteSet) -> Result<PageId, SqlError> {
    writes.allocate_page(PageKind::IndexLeaf).await
}

/// Adds `entry` (from [`entry`]) to the index rooted at `root`.
pub async fn insert(writes: &mut WriteSet, root: PageId, entry: Vec<u8>) -> Result<(), SqlError> {
    if entry.len() > ENTRY_SIZE_MAX {
        return Err(SqlError::new(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!("index row size {} exceeds btree maximum, {ENTRY_SIZE_MAX}", entry.len()),
        ));
    }
    let (mut path, leaf) = descend(writes, root, &entry).await?;
    let mut pending = add_to_node(writes, root, leaf, PageKind::IndexLeaf, entry).await?;
    while let Some((low, child)) = pending {
        let parent = path.pop().ok_or_else(|| SqlError::corrupt("index split below a missing parent"))?;
        pending = add_to_node(writes, root, parent, PageKind::IndexInner, inner_tuple(child, &low)).await?;
    }
    Ok(())
}

/// Removes `entry` from the index rooted at `root`; it must be present.
pub async fn delete(writes: &mut WriteSet, root: PageId, entry: &[u8]) -> Result<(), SqlError> {
    let (_, leaf) = descend(writes, root, entry).await?;
    let page = writes.page(leaf).await?;
    let slot = page
        .tuples()
        .find(|(_, tuple)| *tuple == entry)
        .map(|(slot, _)| slot)
        .ok_or_else(|| SqlError::corrupt("index entry missing for a row being changed"))?;
    drop(page);
    writes.apply(RedoBody::DeleteTuple { page: leaf, slot }).await
}

/// Whether any entry's key starts with `key`.
pub async fn contains(pages: &impl Pages, root: PageId, key: &[u8]) -> Result<bool, SqlError> {
    let mut found = false;
    scan(pages, root, &KeyRange::prefix(key.to_vec()), |_| {
        found = true;
        Ok(false)
    })
    .await?;
    Ok(found)
}

/// Calls `visit` on the entries of `range` in order until it returns false.
pub async fn scan(
    pages: &impl Pages,
    root: PageId,
    range: &KeyRange,
    mut visit: impl FnMut(&[u8]) -> Result<bool, SqlError>,
) -> Result<(), SqlError> {
    let (_, mut leaf) = descend(pages, root, &range.low).await?;
    loop {
        let page = pages.page(leaf).await?;
        // One pass over the leaf's unsorted entries; only the matches are sorted.
        let mut past_high = false;
        let mut matches: Vec<&[u8]> = Vec::new();
        for (_, entry) in page.tuples() {
            if range.beyond_high(entry) {
                past_high = true;
            } else if entry >= range.low.as_slice() {
                matches.push(entry);
            }
        }
        matches.sort_unstable();
        for entry in matches {
            if !visit(entry)? {
                return Ok(());
            }
        }
        // Leaves are in key order: one holding an entry past the range ends it.
        match page.next_page() {
            Some(next) if !past_high => leaf = next,
            _ => return Ok(()),
        }
    }
}

/// Number of pages in the tree under `root` (an index's size): level by
/// level from the root, each inner node's children making the next level.
pub async fn page_count(pages: &impl Pages, root: PageId) -> Result<u64, SqlError> {
    let mut count = 0;
    let mut level = vec![root];
    for _ in 0..DEPTH_MAX {
        let mut below = Vec::new();
        for id in level {
            count += 1;
            let page = pages.page(id).await?;
            match page.kind() {
                PageKind::IndexLeaf => {}
                PageKind::IndexInner => {
                    for (_, tuple) in page.tuples() {
                        below.push(split_inner(tuple)?.0);
                    }
                }
                other => return Err(SqlError::corrupt(format_args!("index page of kind {other:?}"))),
            }
        }
        if below.is_empty() {
            return Ok(count);
        }
        level = below;
    }
    Err(SqlError::corrupt("index deeper than any volume allows"))
}

/// The inner pages from the root down, and the leaf whose key range holds `target`.
async fn descend(pages: &impl Pages, root: PageId, target: &[u8]) -> Result<(Vec<PageId>, PageId), SqlError> {
    let mut path = Vec::new();
    let mut id = root;
    for _ in 0..DEPTH_MAX {
        let page = pages.page(id).await?;
        match page.kind() {
            PageKind::IndexLeaf => return Ok((path, id)),
            PageKind::IndexInner => {
                path.push(id);
                id = child_for(&page, target)?;
            }
            other => return Err(SqlError::corrupt(format_args!("index page of kind {other:?}"))),
        }
    }
    Err(SqlError::corrupt("index deeper than any volume allows"))
}

/// The child of an inner node with the greatest low key <= `target`.
fn child_for(page: &Page, target: &[u8]) -> Result<PageId, SqlError> {
    let mut best: Option<(&[u8], PageId)> = None;
    for (_, tuple) in page.tuples() {
        let (child, low) = split_inner(tuple)?;
        if low <= target && best.is_none_or(|(best_low, _)| low > best_low) {
            best = Some((low, child));
        }
    }
    best.map(|(_, child)| child).ok_or_else(|| SqlError::corrupt("index inner node without a child for a key"))
}

fn inner_tuple(child: PageId, low: &[u8]) -> Vec<u8> {
    let mut tuple = Vec::with_capacity(CHILD_BYTES + low.len());
    tuple.extend_from_slice(&child.0.to_be_bytes());
    tuple.extend_from_slice(low);
    tuple
}

fn split_inner(tuple: &[u8]) -> Result<(PageId, &[u8]), SqlError> {
    if tuple.len() < CHILD_BYTES {
        return Err(SqlError::corrupt("index inner tuple too short"));
    }
    let (child, low) = tuple.split_at(CHILD_BYTES);
    Ok((PageId(u64::from_be_bytes(child.try_into().expect("8 bytes"))), low))
}

/// The key a tuple of a node of `kind` sorts by.
fn sort_key(kind: PageKind, tuple: &[u8]) -> &[u8] {
    match kind {
        PageKind::IndexInner => &tuple[CHILD_BYTES.min(tuple.len())..],
        _ => tuple,
    }
}

/// Adds `tuple` to node `id`, splitting it if full. Returns the (low key,
/// page) its parent must now point to, if a non-root node split.
async fn add_to_node(
    writes: &mut WriteSet,
    root: PageId,
    id: PageId,
    kind: PageKind,
    tuple: Vec<u8>,
) -> Result<Option<(Vec<u8>, PageId)>, SqlError> {
    let page = writes.page(id).await?;
    if page.fits(tuple.len()) {
        let slot = page.next_slot();
        // Release our reference so `apply` can change the page in place.
        drop(page);
        writes.apply(RedoBody::InsertTuple { page: id, slot, data: tuple }).await?;
        return Ok(None);
    }
    let mut tuples: Vec<Vec<u8>> = page.tuples().map(|(_, t)| t.to_vec()).collect();
    let next = page.next_page();
    drop(page);
    tuples.push(tuple);
    tuples.sort_unstable_by(|a, b| sort_key(kind, a).cmp(sort_key(kind, b)));
    let upper = tuples.split_off(split_point(&tuples));
    let upper_low = sort_key(kind, &upper[0]).to_vec();
    if id == root {
        // The root keeps its page id: both halves move to new pages.
        let left = writes.allocate_page(kind).await?;
        let right = writes.allocate_page(kind).await?;
        fill(writes, left, tuples).await?;
        fill(writes, right, upper).await?;
        if kind == PageKind::IndexLeaf {
            writes.apply(RedoBody::SetNextPage { page: left, next: Some(right) }).await?;
        }
        writes.apply(RedoBody::InitPage { page: root, kind: PageKind::IndexInner }).await?;
        fill(writes, root, vec![inner_tuple(left, &[]), inner_tuple(right, &upper_low)]).await?;
        return Ok(None);
    }
    let right = writes.allocate_page(kind).await?;
    fill(writes, right, upper).await?;
    writes.apply(RedoBody::InitPage { page: id, kind }).await?;
    fill(writes, id, tuples).await?;
    if kind == PageKind::IndexLeaf {
        writes.apply(RedoBody::SetNextPage { page: right, next }).await?;
        writes.apply(RedoBody::SetNextPage { page: id, next: Some(right) }).await?;
    }
    Ok(Some((upper_low, right)))
}

/// Where to split sorted tuples: the first index past half of their bytes,
/// leaving at least one tuple on each side.
fn split_point(tuples: &[Vec<u8>]) -> usize {
    let total: usize = tuples.iter().map(Vec::len).sum();
    let mut bytes = 0;
    for (index, tuple) in tuples.iter().enumerate() {
        bytes += tuple.len();
        if bytes * 2 >= total {
            return (index + 1).clamp(1, tuples.len() - 1);
        }
    }
    tuples.len() - 1
}

/// Inserts `tuples` into the empty page `id`, in order.
async fn fill(writes: &mut WriteSet, id: PageId, tuples: Vec<Vec<u8>>) -> Result<(), SqlError> {
    for (slot, data) in tuples.into_iter().enumerate() {
        let slot = u16::try_from(slot).map_err(|_| SqlError::corrupt("index node with too many entries"))?;
        writes.apply(RedoBody::InsertTuple { page: id, slot, data }).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Meta;
    use crate::testing::MemoryVolume;
    use crate::volume::Volume;
    use std::collections::BTreeSet;

    async fn fresh() -> (Arc<MemoryVolume>, WriteSet) {
        let volume = Arc::new(MemoryVolume::new());
        let lsn = volume.commit(Meta::bootstrap_bodies()).await.unwrap();
        let writes = WriteSet::new(volume.clone(), lsn, Default::default());
        (volume, writes)
    }

    fn key(n: u64) -> Vec<u8> {
        // Variable-length keys exercise byte-based splits.
        let mut key = format!("k{n:08}").into_bytes();
        key.resize(10 + (n % 7) as usize * 40, b'.');
        key
    }

    fn address(n: u64) -> RowAddress {
        RowAddress { page: PageId(1000 + n / 100), slot: (n % 100) as u16 }
    }

    async fn all(pages: &impl Pages, root: PageId, range: &KeyRange) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        scan(pages, root, range, |entry| {
            out.push(entry.to_vec());
            Ok(true)
        })
        .await
        .unwrap();
        out
    }

    #[tokio::test]
    async fn many_inserts_and_deletes_match_a_model_and_survive_commit() {
        let (volume, mut writes) = fresh().await;
        let root = create(&mut writes).await.unwrap();
        let mut model = BTreeSet::new();
        // A permutation of 0..=3000 (3001 is prime): splits at every level.
        for i in 0..3001u64 {
            let n = (i * 1237) % 3001;
            let entry = entry(&key(n), address(n));
            insert(&mut writes, root, entry.clone()).await.unwrap();
            model.insert(entry);
        }
        for n in (0..3001u64).filter(|n| n % 3 == 0) {
            let entry = entry(&key(n), address(n));
            delete(&mut writes, root, &entry).await.unwrap();
            model.remove(&entry);
        }
        let everything = KeyRange { low: Vec::new(), high: None };
        assert_eq!(all(&writes, root, &everything).await, model.iter().cloned().collect::<Vec<_>>());
        assert!(writes.page(root).await.unwrap().kind() == PageKind::IndexInner, "the root split");

        let (bodies, pages, _) = writes.into_parts();
        let lsn = volume.commit(bodies).await.unwrap();
        let snapshot = Snapshot::committed(volume.clone(), lsn);
        assert_eq!(all(&snapshot, root, &everything).await.len(), model.len());
        // Every node the tree allocated is counted once.
        let nodes = pages.values().filter(|p| matches!(p.kind(), PageKind::IndexLeaf | PageKind::IndexInner)).count();
        assert_eq!(page_count(&snapshot, root).await.unwrap(), nodes as u64);
        // A range of whole keys, and a prefix that is one key.
        let range = KeyRange { low: key(100), high: Some(key(200)) };
        let expected: Vec<Vec<u8>> = model
            .iter()
            .filter(|e| e.as_slice() >= key(100).as_slice() && &e[..key(200).len().min(e.len())] <= key(200).as_slice())
            .cloned()
            .collect();
        assert_eq!(all(&snapshot, root, &range).await, expected);
        assert!(contains(&snapshot, root, &key(1)).await.unwrap());
        assert!(!contains(&snapshot, root, &key(3)).await.unwrap(), "deleted");
        assert!(!contains(&snapshot, root, &key(5000)).await.unwrap());
        assert_eq!(entry_address(&all(&snapshot, root, &KeyRange::prefix(key(7))).await[0]).unwrap(), address(7));
    }

    #[tokio::test]
    async fn oversized_entries_are_refused_and_missing_ones_reported() {
        let (_, mut writes) = fresh().await;
        let root = create(&mut writes).await.unwrap();
        let error = insert(&mut writes, root, vec![1; ENTRY_SIZE_MAX + 1]).await.unwrap_err();
        assert_eq!(error.sqlstate(), sqlstate::PROGRAM_LIMIT_EXCEEDED);
        assert!(delete(&mut writes, root, &entry(&key(1), address(1))).await.is_err());
    }

    #[test]
    fn split_point_balances_bytes_and_leaves_both_sides_nonempty() {
        let tuples: Vec<Vec<u8>> = vec![vec![0; 10], vec![0; 10], vec![0; 10], vec![0; 10]];
        assert_eq!(split_point(&tuples), 2);
        let skewed: Vec<Vec<u8>> = vec![vec![0; 1000], vec![0; 1], vec![0; 1]];
        assert_eq!(split_point(&skewed), 1);
        let last_heavy: Vec<Vec<u8>> = vec![vec![0; 1], vec![0; 1], vec![0; 1000]];
        assert_eq!(split_point(&last_heavy), 2);
    }
}
