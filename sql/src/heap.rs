//! Heap access: reading pages at a statement's read point, and a write
//! transaction's private page changes.
//!
//! A table is a chain of heap pages linked by `Page::next_page`, starting at
//! the table's first page (fixed at CREATE TABLE, new at TRUNCATE). A row's
//! address is (page, slot) and is stable while the row lives, except that an
//! UPDATE whose new row no longer fits its page moves it (delete + insert).
//! A freed slot is reused by a later insert: the new row there is a new row
//! at that address (its index entries are its own; the old row's went with
//! its DELETE).
//!
//! Writes: a [`WriteSet`] holds private copies of the pages a transaction
//! changed (the overlay) and the [`RedoBody`]s that made them, in order.
//! Statements of the same transaction read through the overlay ([`Snapshot`]);
//! at COMMIT the bodies go to `Volume::commit` in one call, at ROLLBACK they
//! are dropped (invariant 1: only committed changes reach storage).
//!
//! A REPEATABLE READ transaction may read an older snapshot S than the
//! newest commit W its write set is built on: its statements then read S
//! with the write set's pages on top ([`Snapshot::with_writes`]). The write
//! set is told which pages commits after S changed
//! ([`WriteSet::changed_since`]); a page it changes that is not one of them
//! is the same at S and W before its changes, so it can be read as is. Of
//! the others, heap pages are kept row by row: a row (slot) may be changed
//! only if it is the same at S and W (else 40001, "could not serialize
//! access due to concurrent update"), and the transaction reads the page as
//! S had it plus its own rows (a merged view, `Merge`); any other page
//! (index, a page allocated after S) is refused whole (40001).
//!
//! Inserts go to a page of the chain with room, as the free space map
//! (`crate::free_space`) and the transaction's own changes know them, and
//! only when none has room to a new page linked at the chain's end.

use crate::catalog::{META_PAGE, Meta};
use crate::error::SqlError;
use crate::free_space::{ChainSpace, FreeSpaceChanges, SharedFreeSpace};
use crate::locks::{LockMode, LockTag, TxnLocks};
use crate::row::too_big;
use crate::volume::Volume;
use borealis_storage::ids::{Lsn, PageId};
use borealis_storage::page::{Page, PageKind, SlotIndex, TUPLE_SIZE_MAX};
use borealis_storage::redo::RedoBody;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Where a row lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowAddress {
    pub page: PageId,
    pub slot: SlotIndex,
}

/// Bits of the slot in the u64 form of a row address.
const SLOT_BITS: u32 = 16;

impl RowAddress {
    /// The u64 form used in the hidden row-address column: page << 16 | slot.
    pub fn to_u64(self) -> u64 {
        assert!(self.page.0 < 1 << (64 - SLOT_BITS), "page id {} too large for a row address", self.page);
        (self.page.0 << SLOT_BITS) | u64::from(self.slot)
    }

    /// Inverse of [`RowAddress::to_u64`].
    pub fn from_u64(value: u64) -> RowAddress {
        RowAddress { page: PageId(value >> SLOT_BITS), slot: (value & 0xFFFF) as SlotIndex }
    }
}

/// Pages private to a transaction, by page id.
pub type Overlay = HashMap<PageId, Arc<Page>>;

/// What one statement reads: the volume at a read point, with the current
/// transaction's private pages on top. Passed to scans as a DataFusion
/// `SessionConfig` extension (see `crate::provider`).
#[derive(Clone)]
pub struct Snapshot {
    volume: Arc<dyn Volume>,
    read_point: Lsn,
    overlay: Arc<Overlay>,
    /// Keeps the read point's history in storage while the statement runs.
    _hold: Option<crate::volume::ReadPointHold>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("read_point", &self.read_point)
            .field("overlay_pages", &self.overlay.len())
            .finish()
    }
}

impl Snapshot {
    /// The committed state at `read_point`, no private pages.
    pub fn committed(volume: Arc<dyn Volume>, read_point: Lsn) -> Snapshot {
        let hold = volume.hold_read_point(read_point);
        Snapshot { volume, read_point, overlay: Arc::new(Overlay::new()), _hold: hold }
    }

    /// The statement's read point.
    pub fn read_point(&self) -> Lsn {
        self.read_point
    }

    /// The committed state of this snapshot with `writes`' private pages on
    /// top: what a REPEATABLE READ transaction reads once it has written
    /// (see the module docs for why this is exact).
    pub fn with_writes(&self, writes: &WriteSet) -> Snapshot {
        Snapshot { overlay: Arc::new(writes.view_pages()), ..self.clone() }
    }

    /// Whether the snapshot sees private (uncommitted) pages.
    pub fn has_private_pages(&self) -> bool {
        !self.overlay.is_empty()
    }

    /// Page `id` as this statement sees it.
    pub async fn page(&self, id: PageId) -> Result<Arc<Page>, SqlError> {
        if let Some(page) = self.overlay.get(&id) {
            return Ok(Arc::clone(page));
        }
        Ok(self.volume.read_page(id, self.read_point).await?)
    }

    /// Pages `ids` as this statement sees them, in order: private pages from
    /// the overlay, the rest in one batched volume read.
    pub async fn pages(&self, ids: &[PageId]) -> Result<Vec<Arc<Page>>, SqlError> {
        let private: Vec<Option<Arc<Page>>> = ids.iter().map(|id| self.overlay.get(id).cloned()).collect();
        let shared: Vec<PageId> = ids.iter().zip(&private).filter(|(_, p)| p.is_none()).map(|(id, _)| *id).collect();
        let mut read = if shared.is_empty() {
            Vec::new().into_iter()
        } else {
            self.volume.read_pages(&shared, self.read_point).await?.into_iter()
        };
        Ok(private.into_iter().map(|page| page.or_else(|| read.next()).expect("one page read per id")).collect())
    }

    /// Starts reading pages `ids` in the background (a scan's read-ahead).
    pub fn read_ahead(&self, ids: Vec<PageId>) -> PagesRead {
        let snapshot = self.clone();
        tokio::spawn(async move { snapshot.pages(&ids).await })
    }

    /// Number of pages in the chain starting at `first` (a relation's size).
    pub async fn chain_pages(&self, first: PageId) -> Result<u64, SqlError> {
        let mut pages = 0;
        let mut next = Some(first);
        while let Some(id) = next {
            pages += 1;
            next = self.page(id).await?.next_page();
        }
        Ok(pages)
    }

    /// Calls `visit` on every live tuple of the chain starting at `first`.
    pub async fn for_each_tuple(
        &self,
        first: PageId,
        mut visit: impl FnMut(RowAddress, &[u8]) -> Result<(), SqlError>,
    ) -> Result<(), SqlError> {
        let mut next = Some(first);
        while let Some(id) = next {
            let page = self.page(id).await?;
            for (slot, tuple) in page.tuples() {
                visit(RowAddress { page: id, slot }, tuple)?;
            }
            next = page.next_page();
        }
        Ok(())
    }
}

/// Page reads running in the background.
pub type PagesRead = tokio::task::JoinHandle<Result<Vec<Arc<Page>>, SqlError>>;

/// A write transaction's private page changes and the redo that made them.
/// A clone is a savepoint: pages are shared until changed (`Arc::make_mut`).
#[derive(Clone)]
pub struct WriteSet {
    volume: Arc<dyn Volume>,
    read_point: Lsn,
    pages: Overlay,
    bodies: Vec<RedoBody>,
    /// The engine's free space map: committed state, read but never changed here.
    free_space: SharedFreeSpace,
    /// This transaction's free space knowledge beyond the map's, merged
    /// into it at commit (see `crate::free_space`).
    changes: FreeSpaceChanges,
    /// What changed since the older snapshot the transaction reads (see
    /// the module docs). Boxed: rare, and every session holds a write set's room.
    changed: Option<Box<Changed>>,
    /// The transaction's locks (None: a write set of the engine's own, such
    /// as sequence marks, that locks nothing).
    locks: Option<Arc<TxnLocks>>,
}

/// What commits after a transaction's snapshot changed, and how the write set deals with it.
#[derive(Clone)]
struct Changed {
    /// The snapshot's read point.
    snapshot: Lsn,
    /// The pages commits after the snapshot changed.
    pages: Arc<HashSet<PageId>>,
    /// Those of them that are heap pages this write set changed, with what
    /// their merged views are made of.
    merges: HashMap<PageId, Merge>,
}

/// A heap page changed both by commits after the transaction's snapshot and
/// by the transaction: the view its statements read is the page at the
/// snapshot with the transaction's own slots (and link) on top.
#[derive(Clone)]
struct Merge {
    /// The page at the snapshot.
    at_snapshot: Arc<Page>,
    /// The page at the newest commit, before the transaction changed it.
    committed: Arc<Page>,
    /// Slots the transaction changed.
    slots: HashSet<SlotIndex>,
    /// The transaction linked a next page.
    linked: bool,
    /// The merged page.
    view: Arc<Page>,
}

impl WriteSet {
    /// An empty write set over the committed state at `read_point` (a
    /// submitted commit), choosing pages for inserts with the engine's
    /// `free_space` map.
    pub fn new(volume: Arc<dyn Volume>, read_point: Lsn, free_space: SharedFreeSpace) -> WriteSet {
        WriteSet {
            volume,
            read_point,
            pages: Overlay::new(),
            bodies: Vec::new(),
            free_space,
            changes: FreeSpaceChanges::default(),
            changed: None,
            locks: None,
        }
    }

    /// The write set of the transaction holding `locks`: its row changes take row locks.
    pub fn with_locks(mut self, locks: Arc<TxnLocks>) -> WriteSet {
        self.locks = Some(locks);
        self
    }

    /// The transaction's locks, if it takes any.
    pub fn locks(&self) -> Option<&Arc<TxnLocks>> {
        self.locks.as_ref()
    }

    /// Takes `mode` on `tag` for the transaction (see `crate::locks`): a
    /// lock another transaction holds, or one a newer commit than this
    /// write set's read point released (READ COMMITTED), ends the statement
    /// attempt with [`crate::locks::restart`], for the engine to wait or
    /// rebase and run it again; a stale row under REPEATABLE READ is 40001.
    pub fn lock(&self, tag: LockTag, mode: LockMode) -> Result<(), SqlError> {
        let Some(locks) = &self.locks else { return Ok(()) };
        locks.acquire(tag, mode)
    }

    /// An empty write set of the same transaction over the newer commit `newest`.
    pub(crate) fn fresh(&self, newest: Lsn) -> WriteSet {
        let fresh = WriteSet::new(Arc::clone(&self.volume), newest, Arc::clone(&self.free_space));
        match &self.locks {
            Some(locks) => fresh.with_locks(Arc::clone(locks)),
            None => fresh,
        }
    }

    /// Page `id` as the committed state at `read_point` has it.
    pub(crate) async fn committed_page(&self, id: PageId, read_point: Lsn) -> Result<Arc<Page>, SqlError> {
        Ok(self.volume.read_page(id, read_point).await?)
    }

    /// The heap pages whose rows the transaction changed, with their
    /// chains' first pages: what `crate::rebase` replays.
    pub(crate) fn heap_pages(&self) -> Vec<(PageId, PageId)> {
        self.changes.pages().filter(|(page, _)| self.pages.contains_key(page)).collect()
    }

    /// The pages the transaction changed.
    pub(crate) fn pages(&self) -> &Overlay {
        &self.pages
    }

    /// Moves the write set onto the newer commit `newest`, which changed
    /// none of its pages (`crate::rebase` checked); `since_snapshot` lists,
    /// under REPEATABLE READ, the pages commits after the snapshot changed.
    pub(crate) fn advance(&mut self, newest: Lsn, since_snapshot: Option<(Lsn, HashSet<PageId>)>) {
        assert!(newest >= self.read_point, "write set moved back from {} to {newest}", self.read_point);
        self.read_point = newest;
        if let Some((snapshot, mut pages)) = since_snapshot {
            pages.retain(|page| !self.pages.contains_key(page));
            match &mut self.changed {
                Some(changed) => Arc::make_mut(&mut changed.pages).extend(pages),
                None if pages.is_empty() => {}
                None => self.changed_since(snapshot, pages),
            }
        }
    }

    /// Replaces the meta tuple's image with the newest commit's, keeping
    /// the pages this transaction allocated counted (the only meta field a
    /// transaction without DDL changes).
    pub(crate) async fn merge_meta(&mut self) -> Result<(), SqlError> {
        let Some(own) = self.pages.get(&META_PAGE) else { return Ok(()) };
        let own = Meta::from_page(own)?.ok_or_else(|| SqlError::corrupt("volume has no meta page"))?;
        let committed = self.volume.read_page(META_PAGE, self.read_point).await?;
        let mut meta = Meta::from_page(&committed)?.ok_or_else(|| SqlError::corrupt("volume has no meta page"))?;
        meta.next_free_page = meta.next_free_page.max(own.next_free_page);
        self.pages.insert(META_PAGE, committed);
        self.set_meta(&meta).await
    }

    /// The transaction reads the snapshot at `snapshot`, older than this
    /// write set's read point, and commits since changed `pages`: from now
    /// on they are changed row by row or refused (see the module docs).
    pub fn changed_since(&mut self, snapshot: Lsn, pages: HashSet<PageId>) {
        assert!(snapshot < self.read_point, "snapshot {snapshot} is not older than {}", self.read_point);
        debug_assert!(pages.iter().all(|page| !self.pages.contains_key(page)), "a changed page is already written");
        self.changed = Some(Box::new(Changed { snapshot, pages: Arc::new(pages), merges: HashMap::new() }));
    }

    /// The snapshot's read point if commits since it changed page `id`.
    fn changed_at(&self, id: PageId) -> Option<Lsn> {
        self.changed.as_ref().filter(|changed| changed.pages.contains(&id)).map(|changed| changed.snapshot)
    }

    fn merge(&self, id: PageId) -> Option<&Merge> {
        self.changed.as_ref().and_then(|changed| changed.merges.get(&id))
    }

    /// 40001 unless page `id`, changed since the snapshot, is a heap page
    /// at the snapshot and at the newest commit; returns both.
    async fn heap_at_both(&self, id: PageId, snapshot: Lsn) -> Result<(Arc<Page>, Arc<Page>), SqlError> {
        let at_snapshot = self.volume.read_page(id, snapshot).await?;
        let committed = self.volume.read_page(id, self.read_point).await?;
        if at_snapshot.kind() != PageKind::Heap || committed.kind() != PageKind::Heap {
            return Err(crate::isolation::concurrent_update());
        }
        Ok((at_snapshot, committed))
    }

    /// 40001 if the row at `address` changed (or came or went) since the
    /// transaction's snapshot, unless the transaction itself changed it since.
    pub async fn check_row(&self, address: RowAddress) -> Result<(), SqlError> {
        let Some(snapshot) = self.changed_at(address.page) else { return Ok(()) };
        if let Some(merge) = self.merge(address.page) {
            if merge.slots.contains(&address.slot)
                || merge.at_snapshot.tuple(address.slot) == merge.committed.tuple(address.slot)
            {
                return Ok(());
            }
            return Err(crate::isolation::concurrent_update());
        }
        let (at_snapshot, committed) = self.heap_at_both(address.page, snapshot).await?;
        if at_snapshot.tuple(address.slot) != committed.tuple(address.slot) {
            return Err(crate::isolation::concurrent_update());
        }
        Ok(())
    }

    /// 40001 if a page of the chain starting at `first` changed since the
    /// transaction's snapshot (a locking read's check, by page).
    pub async fn check_chain_unchanged(&self, first: PageId) -> Result<(), SqlError> {
        let mut next = Some(first);
        while let Some(id) = next {
            if self.changed_at(id).is_some() {
                return Err(crate::isolation::concurrent_update());
            }
            next = self.page(id).await?.next_page();
        }
        Ok(())
    }

    /// Whether commits since the transaction's snapshot changed pages it may touch.
    pub fn has_changes_since_snapshot(&self) -> bool {
        self.changed.is_some()
    }

    /// The pages the transaction's statements read over its snapshot: its
    /// own, merged views for the heap pages also changed since the snapshot.
    fn view_pages(&self) -> Overlay {
        let mut pages = self.pages.clone();
        for (id, merge) in self.changed.iter().flat_map(|changed| &changed.merges) {
            pages.insert(*id, Arc::clone(&merge.view));
        }
        pages
    }

    /// Recomputes the merged view of page `id` after a change: the write
    /// set's page with every slot it did not change put back as the
    /// snapshot had it, and the snapshot's link unless it linked a page
    /// itself. 40001 if the snapshot's rows no longer fit beside its own.
    fn remerge(&mut self, id: PageId) -> Result<(), SqlError> {
        let merge = self.changed.as_mut().and_then(|changed| changed.merges.get_mut(&id));
        let (Some(merge), Some(own)) = (merge, self.pages.get(&id)) else {
            return Err(SqlError::internal(format_args!("no merge for page {id}")));
        };
        let mut view = Page::clone(own);
        if merge.at_snapshot.slot_count() > view.slot_count() {
            return Err(crate::isolation::concurrent_update());
        }
        for slot in 0..view.slot_count() {
            if merge.slots.contains(&slot) {
                continue;
            }
            let (want, have) = (merge.at_snapshot.tuple(slot), view.tuple(slot).map(<[u8]>::to_vec));
            let restored = match (want, have) {
                (Some(want), Some(have)) if want != have.as_slice() => view.update(slot, want),
                (Some(want), None) => view.insert(slot, want),
                (None, Some(_)) => view.delete(slot),
                _ => Ok(()),
            };
            restored.map_err(|_| crate::isolation::concurrent_update())?;
        }
        if !merge.linked {
            view.set_next_page(merge.at_snapshot.next_page());
        }
        merge.view = Arc::new(view);
        Ok(())
    }

    /// What the transaction's next statement reads.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            volume: Arc::clone(&self.volume),
            read_point: self.read_point,
            overlay: Arc::new(self.pages.clone()),
            // The writer's own read points are kept by its retention window.
            _hold: None,
        }
    }

    /// Whether the transaction changed page `id`.
    pub fn holds(&self, id: PageId) -> bool {
        self.pages.contains_key(&id)
    }

    /// Whether anything was written.
    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }

    /// The committed state this write set is based on.
    pub fn read_point(&self) -> Lsn {
        self.read_point
    }

    /// The redo to commit, the page images it produces, and the free space
    /// changes to merge into the engine's map once it is committed.
    pub fn into_parts(self) -> (Vec<RedoBody>, Overlay, FreeSpaceChanges) {
        (self.bodies, self.pages, self.changes)
    }

    /// Page `id` as the transaction sees it.
    pub async fn page(&self, id: PageId) -> Result<Arc<Page>, SqlError> {
        if let Some(page) = self.pages.get(&id) {
            return Ok(Arc::clone(page));
        }
        if let Some(snapshot) = self.changed_at(id) {
            // Rows are checked where they are changed; only heap pages qualify.
            return Ok(self.heap_at_both(id, snapshot).await?.1);
        }
        Ok(self.volume.read_page(id, self.read_point).await?)
    }

    /// Applies `body` to the private copy of its page and records it.
    ///
    /// The private copy is made on the page's first change while a snapshot
    /// still shares it (`Arc::make_mut`); later changes are in place. Callers
    /// check that a change fits before applying it, so a refusal is a bug or
    /// corruption: the write set is then unusable, and the error fails the
    /// transaction that owns it.
    pub async fn apply(&mut self, body: RedoBody) -> Result<(), SqlError> {
        let id = body.page();
        let merged = match self.changed_at(id) {
            Some(snapshot) => Some(self.merge_slot(id, snapshot, &body).await?),
            None => None,
        };
        if !self.pages.contains_key(&id) {
            let committed = self.volume.read_page(id, self.read_point).await?;
            self.pages.insert(id, committed);
        }
        let page = self.pages.get_mut(&id).expect("inserted above");
        body.apply_body(Arc::make_mut(page))
            .map_err(|e| SqlError::internal(format_args!("redo refused on page {id}: {e}")))?;
        self.bodies.push(body);
        if merged.is_some() {
            self.remerge(id)?;
        }
        Ok(())
    }

    /// Before `body` changes page `id`, changed since the snapshot: 40001
    /// unless it is a heap page, the change is to a row (or the link) and
    /// that row is the same at the snapshot and the newest commit; records
    /// the slot as the transaction's.
    async fn merge_slot(&mut self, id: PageId, snapshot: Lsn, body: &RedoBody) -> Result<(), SqlError> {
        let fresh = match self.merge(id) {
            Some(_) => None,
            None => Some(self.heap_at_both(id, snapshot).await?),
        };
        let changed = self.changed.as_mut().ok_or_else(|| SqlError::internal("merge without a snapshot"))?;
        if let Some((at_snapshot, committed)) = fresh {
            let view = Arc::clone(&at_snapshot);
            let merge = Merge { at_snapshot, committed, slots: HashSet::new(), linked: false, view };
            changed.merges.insert(id, merge);
        }
        let merge = changed.merges.get_mut(&id).expect("inserted above");
        match body {
            RedoBody::InsertTuple { slot, .. }
            | RedoBody::UpdateTuple { slot, .. }
            | RedoBody::DeleteTuple { slot, .. } => {
                let unchanged = merge.at_snapshot.tuple(*slot) == merge.committed.tuple(*slot);
                if !merge.slots.contains(slot) && !unchanged {
                    return Err(crate::isolation::concurrent_update());
                }
                merge.slots.insert(*slot);
            }
            RedoBody::SetNextPage { .. } => merge.linked = true,
            _ => return Err(crate::isolation::concurrent_update()),
        }
        Ok(())
    }

    /// The volume's meta tuple as the transaction sees it.
    pub async fn meta(&self) -> Result<Meta, SqlError> {
        Meta::from_page(&*self.page(META_PAGE).await?)?.ok_or_else(|| SqlError::corrupt("volume has no meta page"))
    }

    /// Replaces the meta tuple.
    pub async fn set_meta(&mut self, meta: &Meta) -> Result<(), SqlError> {
        self.apply(RedoBody::UpdateTuple { page: META_PAGE, slot: 0, data: meta.encode() }).await
    }

    /// Takes the next free page from the meta tuple and formats it as a `kind` page.
    pub async fn allocate_page(&mut self, kind: PageKind) -> Result<PageId, SqlError> {
        let mut meta = self.meta().await?;
        let page = match &self.locks {
            // Transactions running side by side take distinct pages.
            Some(locks) => PageId(locks.allocate_page(meta.next_free_page.0)),
            None => meta.next_free_page,
        };
        meta.next_free_page = PageId(page.0 + 1).max(meta.next_free_page);
        self.set_meta(&meta).await?;
        self.apply(RedoBody::InitPage { page, kind }).await?;
        Ok(page)
    }

    /// Inserts `data` into the chain starting at `first`: into a page with
    /// room (see `crate::free_space` for the choice), else into a new page
    /// linked at the chain's end.
    pub async fn insert(&mut self, first: PageId, data: Vec<u8>) -> Result<RowAddress, SqlError> {
        if data.len() > TUPLE_SIZE_MAX {
            return Err(too_big(data.len()));
        }
        let (target, slot) = match self.page_with_room(first, data.len()).await? {
            Some(found) => found,
            None => {
                let last = self.last_page(first).await?;
                let fresh = self.allocate_page(PageKind::Heap).await?;
                self.apply(RedoBody::SetNextPage { page: last, next: Some(fresh) }).await?;
                self.changes.chain(first).extended(fresh);
                (fresh, 0)
            }
        };
        self.apply(RedoBody::InsertTuple { page: target, slot, data }).await?;
        self.note_room(first, target);
        Ok(RowAddress { page: target, slot })
    }

    /// Replaces the row at `address` in the chain `first`; moves it to a
    /// page with room if it no longer fits its own. Returns its new address.
    pub async fn update(&mut self, first: PageId, address: RowAddress, data: Vec<u8>) -> Result<RowAddress, SqlError> {
        if data.len() > TUPLE_SIZE_MAX {
            return Err(too_big(data.len()));
        }
        self.lock(LockTag::Row(first, address), LockMode::Exclusive)?;
        self.check_row(address).await?;
        let page = self.page(address.page).await?;
        let old_len = page.tuple(address.slot).map(<[u8]>::len).ok_or_else(|| {
            SqlError::internal(format_args!("update of free slot {} on page {}", address.slot, address.page))
        })?;
        // Conservative (`fits` may count a new slot): at worst the row moves.
        let fits = data.len() <= old_len || page.fits(data.len() - old_len);
        drop(page);
        if fits {
            self.apply(RedoBody::UpdateTuple { page: address.page, slot: address.slot, data }).await?;
            self.note_room(first, address.page);
            return Ok(address);
        }
        self.delete(first, address).await?;
        self.insert(first, data).await
    }

    /// Frees the row at `address` of the chain `first`.
    pub async fn delete(&mut self, first: PageId, address: RowAddress) -> Result<(), SqlError> {
        self.lock(LockTag::Row(first, address), LockMode::Exclusive)?;
        self.check_row(address).await?;
        self.apply(RedoBody::DeleteTuple { page: address.page, slot: address.slot }).await?;
        self.note_room(first, address.page);
        Ok(())
    }

    /// Records that `first`, just allocated, starts a new chain of one page.
    pub fn new_chain(&mut self, first: PageId) {
        let page = self.pages.get(&first).expect("a new chain's first page was allocated by this write set");
        self.changes.create(first, page);
    }

    /// Records the room the private copy of `page` (of the chain `first`) has now.
    fn note_room(&mut self, first: PageId, page: PageId) {
        let image = self.pages.get(&page).expect("a changed page has a private copy");
        self.changes.chain(first).note(page, image);
    }

    /// A page of the chain `first` where a row of `len` bytes fits, and the
    /// slot it takes there; None if the chain must grow.
    async fn page_with_room(&mut self, first: PageId, len: usize) -> Result<Option<(PageId, u16)>, SqlError> {
        if let Some(own) = self.changes.get(first).and_then(|chain| chain.own_page_for(len)) {
            let page = self.page(own).await?;
            if page.fits(len) {
                return Ok(Some((own, page.next_slot())));
            }
        }
        self.know_chain(first).await?;
        loop {
            let candidate = {
                let map = self.free_space.lock().expect("free space map lock poisoned");
                match map.chain(first) {
                    Some(space) => self.changes.chain(first).committed_page_for(space, len),
                    None => None,
                }
            };
            let Some(id) = candidate else { return Ok(None) };
            let page = self.page(id).await?;
            if page.fits(len) {
                return Ok(Some((id, page.next_slot())));
            }
            // The map was behind: the transaction now knows the page's room.
            self.changes.chain(first).note(id, &page);
        }
    }

    /// Makes sure the shared map knows the chain `first` (unless this
    /// transaction created it): walks the committed chain once.
    async fn know_chain(&mut self, first: PageId) -> Result<(), SqlError> {
        if self.changes.get(first).is_some_and(|chain| chain.is_created()) {
            return Ok(());
        }
        if self.free_space.lock().expect("free space map lock poisoned").chain(first).is_some() {
            return Ok(());
        }
        self.refresh_free_space(first).await
    }

    /// Replaces what the engine's free space map knows of the chain `first`
    /// with a walk of its committed pages (committed: the map never holds
    /// this transaction's changes before its commit).
    pub async fn refresh_free_space(&self, first: PageId) -> Result<(), SqlError> {
        let mut space = ChainSpace::new(first);
        let mut next = Some(first);
        while let Some(id) = next {
            let page = self.volume.read_page(id, self.read_point).await?;
            space.observe(id, &page);
            next = page.next_page();
        }
        tracing::debug!(first_page = %first, pages_with_room = space.pages_with_room(), "heap chain walked for its free space");
        self.free_space.lock().expect("free space map lock poisoned").install(first, space);
        Ok(())
    }

    /// The chain's last page as the transaction sees it.
    async fn last_page(&mut self, first: PageId) -> Result<PageId, SqlError> {
        let own = self.changes.get(first).and_then(|chain| chain.last());
        let known = || self.free_space.lock().expect("free space map lock poisoned").chain(first).map(ChainSpace::last);
        let mut last = own.or_else(known).unwrap_or(first);
        // The hint never points outside the chain (pages are never reused
        // by another chain); if it lags, the chain is followed from it.
        while let Some(next) = self.page(last).await?.next_page() {
            last = next;
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_address_round_trips() {
        let address = RowAddress { page: PageId(123_456), slot: 789 };
        assert_eq!(RowAddress::from_u64(address.to_u64()), address);
    }
}
