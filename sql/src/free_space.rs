//! The free space map: which pages of each heap chain have room for a row,
//! so that an insert reuses the space DELETE and UPDATE freed before it
//! extends the chain.
//!
//! Where it lives: in memory, one [`FreeSpaceMap`] per engine, shared by its
//! write transactions (only the writer writes; a transaction's changes
//! are merged in under the engine's commit lock). Nothing of it is stored. A chain becomes
//! known at the first insert into it after the engine opened, by one walk of
//! the committed chain (which finding the chain's last page needed anyway),
//! or when a transaction creates it (CREATE TABLE, TRUNCATE); VACUUM walks
//! chains again. There is no walk per insert.
//!
//! What it holds: for each known chain, its last page and the insertable
//! bytes ([`Page::insertable_bytes`]) of the pages with at least
//! [`ROOM_BYTES_MIN`], as of the newest submitted commit. It is a hint: an
//! insert reads the page the map names and checks that the row fits, so a
//! stale entry costs a page read, never a wrong row. Readers do not use it:
//! they read page versions at their own read point, so a page whose freed
//! slot a later commit fills still shows them the row they had.
//!
//! When it changes: never during a transaction. A write set keeps its own
//! [`ChainChanges`] per chain it touched (the room it left on each page it
//! changed), and reads the shared map only where it changed nothing. At
//! commit, once the volume has taken the redo, `Engine::commit` merges the
//! changes in ([`FreeSpaceMap::merge`]); a rolled-back transaction's changes
//! go with its write set, and ROLLBACK TO SAVEPOINT puts back the copy the
//! savepoint took of them with the pages. So the shared map never learns of
//! space that an uncommitted or rolled-back change freed. A transaction does
//! reuse the space it freed itself, as its own pages show it: a slot its
//! DELETE freed is empty in every page it reads, and the index entries of
//! the deleted row are gone with it, so a row inserted there is a new row
//! at a new (reused) address. If a commit fails to become durable, the map
//! is cleared: it may describe pages of a commit that will never be.
//!
//! Choosing a page for a row of `len` bytes ([`crate::heap::WriteSet::insert`]),
//! each step O(log pages):
//! 1. of the chain's pages this transaction changed, the one with the most
//!    room, if the row fits there (its pages are private copies already);
//! 2. else of the committed pages it did not change, the one with the most
//!    room, if the row fits. A per-chain cursor walks the committed entries
//!    from the most room down and passes those the transaction took or
//!    changed, so each entry is passed at most once per transaction;
//! 3. else a new page linked at the chain's end.
//!
//! COPY FROM takes no other path: its rows are inserts, one at a time.

use borealis_storage::ids::PageId;
use borealis_storage::page::{HEADER_SIZE, PAGE_SIZE, Page};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Pages with less room than this count as full and stay out of the
/// shared map: a page filled by appends keeps less than one row's room,
/// so the map holds the pages that deletes and shrinking updates opened,
/// not every page of every table (1/64 of a page, a few typical rows).
pub const ROOM_BYTES_MIN: usize = PAGE_SIZE / 64;

const _: () = assert!(ROOM_BYTES_MIN > 0 && ROOM_BYTES_MIN < PAGE_SIZE - HEADER_SIZE);

/// The engine's map, shared by its write transactions.
pub type SharedFreeSpace = Arc<Mutex<FreeSpaceMap>>;

/// Insertable bytes of pages, ordered by room (then page id) for the
/// most-room-first choice.
#[derive(Clone, Debug, Default)]
struct Room {
    by_page: HashMap<PageId, u16>,
    by_room: BTreeSet<(u16, PageId)>,
}

impl Room {
    fn set(&mut self, page: PageId, bytes: u16) {
        if let Some(old) = self.by_page.insert(page, bytes) {
            self.by_room.remove(&(old, page));
        }
        self.by_room.insert((bytes, page));
    }

    fn remove(&mut self, page: PageId) {
        if let Some(old) = self.by_page.remove(&page) {
            self.by_room.remove(&(old, page));
        }
    }

    fn len(&self) -> usize {
        self.by_page.len()
    }
}

/// Page room as a map entry; a page never has more than fits in u16.
fn room_of(page: &Page) -> u16 {
    u16::try_from(page.insertable_bytes()).expect("a page's room is below its size, which fits in u16")
}

/// What the shared map knows of one chain.
#[derive(Clone, Debug)]
pub struct ChainSpace {
    /// The chain's last page (where a new page is linked).
    last: PageId,
    /// Pages with at least [`ROOM_BYTES_MIN`] insertable bytes.
    room: Room,
}

impl ChainSpace {
    /// Starts a walk of the chain at its first page.
    pub fn new(first: PageId) -> ChainSpace {
        ChainSpace { last: first, room: Room::default() }
    }

    /// Records the next page of a walk of the chain, in chain order.
    pub fn observe(&mut self, id: PageId, page: &Page) {
        self.last = id;
        self.set(id, room_of(page));
    }

    /// The chain's last page.
    pub fn last(&self) -> PageId {
        self.last
    }

    /// Pages of the chain with room for a row.
    pub fn pages_with_room(&self) -> usize {
        self.room.len()
    }

    fn set(&mut self, page: PageId, bytes: u16) {
        if usize::from(bytes) >= ROOM_BYTES_MIN {
            self.room.set(page, bytes);
        } else {
            self.room.remove(page);
        }
    }
}

/// Free space of every known heap chain, by the chain's first page, as of
/// the newest submitted commit (see the module documentation).
#[derive(Debug, Default)]
pub struct FreeSpaceMap {
    chains: HashMap<PageId, ChainSpace>,
}

impl FreeSpaceMap {
    /// What is known of the chain starting at `first`.
    pub fn chain(&self, first: PageId) -> Option<&ChainSpace> {
        self.chains.get(&first)
    }

    /// Replaces what is known of the chain `first` with a walk of its
    /// committed pages (a first insert after opening, or VACUUM).
    pub fn install(&mut self, first: PageId, space: ChainSpace) {
        self.chains.insert(first, space);
    }

    /// Forgets every chain not in `firsts` (VACUUM of every table: the
    /// chains of dropped and truncated tables are never inserted into again).
    pub fn retain(&mut self, firsts: &HashSet<PageId>) {
        self.chains.retain(|first, _| firsts.contains(first));
    }

    /// Forgets everything: the chains are walked again as they are used.
    pub fn clear(&mut self) {
        self.chains.clear();
    }

    /// Takes in the changes of a transaction whose commit the volume has
    /// taken. A chain the map does not know keeps unknown (its next walk
    /// sees the committed pages), unless the transaction created it.
    pub fn merge(&mut self, changes: FreeSpaceChanges) {
        for (first, chain) in changes.chains {
            if chain.created {
                let mut space = ChainSpace::new(first);
                space.last = chain.last.unwrap_or(first);
                for (&page, &bytes) in &chain.known.by_page {
                    space.set(page, bytes);
                }
                self.chains.insert(first, space);
                continue;
            }
            let Some(space) = self.chains.get_mut(&first) else { continue };
            for (&page, &bytes) in &chain.known.by_page {
                space.set(page, bytes);
            }
            if let Some(last) = chain.last {
                space.last = last;
            }
        }
    }
}

/// A transaction's knowledge of one chain's free space, beyond the shared
/// map's: private to its write set, cloned with it for savepoints.
#[derive(Clone, Debug, Default)]
pub struct ChainChanges {
    /// Room of the chain's pages the transaction changed, as it left them,
    /// and of committed pages it found fuller than the map said. Every
    /// page here is authoritative over the shared map's entry, whatever its room.
    known: Room,
    /// The chain's last page, if the transaction extended or created the chain.
    last: Option<PageId>,
    /// The transaction created the chain: `known` and `last` cover all of it.
    created: bool,
    /// Where the search of the shared map resumes (see the module documentation).
    cursor: Option<(u16, PageId)>,
}

impl ChainChanges {
    /// A chain this transaction created, of one empty page.
    pub fn created(first: PageId, page: &Page) -> ChainChanges {
        let mut changes = ChainChanges { last: Some(first), created: true, ..ChainChanges::default() };
        changes.known.set(first, room_of(page));
        changes
    }

    /// Whether the transaction created the chain.
    pub fn is_created(&self) -> bool {
        self.created
    }

    /// The chain's last page as the transaction left it, if it extended or created the chain.
    pub fn last(&self) -> Option<PageId> {
        self.last
    }

    /// Records that the transaction linked `page` at the chain's end.
    pub fn extended(&mut self, page: PageId) {
        self.last = Some(page);
    }

    /// Records the room `page` has now.
    pub fn note(&mut self, id: PageId, page: &Page) {
        self.known.set(id, room_of(page));
    }

    /// Of the pages the transaction knows, the one with the most room, if
    /// a row of `len` bytes fits there.
    pub fn own_page_for(&self, len: usize) -> Option<PageId> {
        self.known.by_room.last().filter(|(bytes, _)| usize::from(*bytes) >= len).map(|(_, page)| *page)
    }

    /// The committed page of `space` with the most room that the
    /// transaction has not looked at, if a row of `len` bytes fits there.
    /// Moves the cursor past it and past pages the transaction knows.
    pub fn committed_page_for(&mut self, space: &ChainSpace, len: usize) -> Option<PageId> {
        let below = match self.cursor {
            Some(cursor) => space.room.by_room.range(..cursor),
            None => space.room.by_room.range(..),
        };
        for &(bytes, page) in below.rev() {
            if usize::from(bytes) < len {
                return None;
            }
            self.cursor = Some((bytes, page));
            if !self.known.by_page.contains_key(&page) {
                return Some(page);
            }
        }
        None
    }
}

/// A write set's [`ChainChanges`], by chain (first page).
#[derive(Clone, Debug, Default)]
pub struct FreeSpaceChanges {
    chains: HashMap<PageId, ChainChanges>,
}

impl FreeSpaceChanges {
    /// The changes to the chain `first`, if the transaction touched it.
    pub fn get(&self, first: PageId) -> Option<&ChainChanges> {
        self.chains.get(&first)
    }

    /// (page, first page of its chain) for every page the transaction knows
    /// the room of: each heap page it changed, and some it only looked at.
    pub fn pages(&self) -> impl Iterator<Item = (PageId, PageId)> + '_ {
        self.chains.iter().flat_map(|(first, chain)| chain.known.by_page.keys().map(move |page| (*page, *first)))
    }

    /// The changes to the chain `first`, empty until the transaction touches it.
    pub fn chain(&mut self, first: PageId) -> &mut ChainChanges {
        self.chains.entry(first).or_default()
    }

    /// Records that the transaction created the chain `first`, whose one page is `page`.
    pub fn create(&mut self, first: PageId, page: &Page) {
        self.chains.insert(first, ChainChanges::created(first, page));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use borealis_storage::page::PageKind;

    fn heap_with(rows: &[usize]) -> Page {
        let mut page = Page::empty();
        page.init(PageKind::Heap);
        for (slot, len) in rows.iter().enumerate() {
            page.insert(slot as u16, &vec![1; *len]).unwrap();
        }
        page
    }

    #[test]
    fn committed_pages_come_most_room_first_and_each_once() {
        let mut space = ChainSpace::new(PageId(10));
        space.observe(PageId(10), &heap_with(&[4000]));
        space.observe(PageId(11), &heap_with(&[8100]));
        space.observe(PageId(12), &heap_with(&[1000]));
        space.observe(PageId(13), &heap_with(&[]));
        assert_eq!(space.last, PageId(13));
        // Page 11 keeps less than ROOM_BYTES_MIN: it counts as full.
        assert_eq!(space.pages_with_room(), 3);
        let mut changes = ChainChanges::default();
        assert_eq!(changes.committed_page_for(&space, 100), Some(PageId(13)));
        assert_eq!(changes.committed_page_for(&space, 100), Some(PageId(12)));
        // Too big for what is left: nothing, and the cursor stays for smaller rows.
        assert_eq!(changes.committed_page_for(&space, 5000), None);
        changes.note(PageId(10), &heap_with(&[4000, 4000]));
        // Page 10 is the transaction's now: its own room counts, not the map's.
        assert_eq!(changes.committed_page_for(&space, 100), None);
        assert_eq!(changes.own_page_for(100), Some(PageId(10)));
        assert_eq!(changes.own_page_for(1000), None);
    }

    #[test]
    fn merge_takes_changes_of_known_and_created_chains_only() {
        let mut map = FreeSpaceMap::default();
        let mut space = ChainSpace::new(PageId(1));
        space.observe(PageId(1), &heap_with(&[8100]));
        map.install(PageId(1), space);
        let mut changes = FreeSpaceChanges::default();
        changes.chain(PageId(1)).note(PageId(1), &heap_with(&[]));
        changes.chain(PageId(1)).extended(PageId(7));
        changes.chain(PageId(5)).note(PageId(5), &heap_with(&[]));
        changes.create(PageId(9), &heap_with(&[]));
        map.merge(changes);
        let known = map.chain(PageId(1)).unwrap();
        assert_eq!((known.last, known.pages_with_room()), (PageId(7), 1));
        assert!(map.chain(PageId(5)).is_none(), "an unknown chain is walked, not pieced together");
        assert_eq!(map.chain(PageId(9)).unwrap().pages_with_room(), 1);
        map.retain(&HashSet::from([PageId(9)]));
        assert!(map.chain(PageId(1)).is_none());
    }
}
