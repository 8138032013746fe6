//! The page format: fixed-size slotted pages.
//!
//! A page is `PAGE_SIZE` bytes: a header, then an array of slots growing up,
//! then free space, then tuple bytes growing down from the end. A slot is
//! (offset, length); length 0 marks a free slot that a later insert may reuse,
//! so a row's (page, slot) address is stable while the row lives.
//!
//! Every mutation here is deterministic: the writer and every storage daemon
//! apply the same redo to the same page bytes and obtain identical pages
//! (compaction included), which is what lets daemons rebuild pages from redo
//! alone (DESIGN.md invariant 4).
//!
//! Header layout (little endian):
//! | bytes  | field |
//! | 0..8   | page LSN: LSN of the last record applied |
//! | 8..12  | checksum (crc32c of bytes 12..), set by `seal`, checked by `verify` |
//! | 12     | kind |
//! | 13     | reserved |
//! | 14..16 | slot count |
//! | 16..18 | data start: offset of the lowest tuple byte |
//! | 18..20 | live bytes: total length of the live tuples |
//! | 20..22 | free slots: slots whose tuple was deleted |
//! | 22..24 | reserved |
//! | 24..32 | next page in the chain (0 = none) |

use crate::ids::{Lsn, PageId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Page size in bytes. 8 KiB as PostgreSQL: small enough that a point update
/// ships and rebuilds one small page, large enough for wide rows.
pub const PAGE_SIZE: usize = 8192;
/// Bytes of the page header.
pub const HEADER_SIZE: usize = 32;
/// Bytes of one slot entry.
pub const SLOT_SIZE: usize = 4;
/// Largest tuple a page can hold.
pub const TUPLE_SIZE_MAX: usize = PAGE_SIZE - HEADER_SIZE - SLOT_SIZE;

const _: () = assert!(PAGE_SIZE.is_power_of_two());
const _: () = assert!(PAGE_SIZE <= u16::MAX as usize + 1);
const _: () = assert!(HEADER_SIZE + SLOT_SIZE < PAGE_SIZE);

const OFFSET_LSN: usize = 0;
const OFFSET_CHECKSUM: usize = 8;
const OFFSET_KIND: usize = 12;
const OFFSET_SLOT_COUNT: usize = 14;
const OFFSET_DATA_START: usize = 16;
const OFFSET_LIVE_BYTES: usize = 18;
const OFFSET_FREE_SLOTS: usize = 20;
const OFFSET_NEXT: usize = 24;

/// What a page holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum PageKind {
    /// Never initialised: all zeroes.
    Empty = 0,
    /// The volume's meta page (page 0).
    Meta = 1,
    /// Rows of a table, or of a system table.
    Heap = 2,
    /// A B+tree leaf: index entries, linked to the next leaf in key order.
    IndexLeaf = 3,
    /// A B+tree inner node: (child, lowest key) entries.
    IndexInner = 4,
}

impl PageKind {
    fn from_u8(value: u8) -> Option<PageKind> {
        match value {
            0 => Some(PageKind::Empty),
            1 => Some(PageKind::Meta),
            2 => Some(PageKind::Heap),
            3 => Some(PageKind::IndexLeaf),
            4 => Some(PageKind::IndexInner),
            _ => None,
        }
    }
}

/// A slot number inside a page.
pub type SlotIndex = u16;

/// Why a page operation was refused. Each is a deterministic function of the
/// page and the operation: applying the same redo to the same page fails the
/// same way everywhere.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PageError {
    #[error("page is full: {need} bytes needed, {free} free")]
    Full { need: usize, free: usize },
    #[error("tuple of {0} bytes exceeds the page's maximum")]
    TupleTooLarge(usize),
    #[error("slot {slot} is not usable for this operation (slot count {count})")]
    BadSlot { slot: SlotIndex, count: u16 },
    #[error("page has unknown kind {0}")]
    BadKind(u8),
    #[error("page checksum mismatch: stored {stored:#x}, computed {computed:#x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("page image has {0} bytes, expected {PAGE_SIZE}")]
    BadLength(usize),
}

/// One page image.
#[derive(Clone, PartialEq, Eq)]
pub struct Page {
    bytes: Box<[u8]>,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("lsn", &self.lsn())
            .field("kind", &self.kind())
            .field("slot_count", &self.slot_count())
            .finish()
    }
}

impl Default for Page {
    fn default() -> Self {
        Page::empty()
    }
}

impl Page {
    /// An all-zero page: what a never-written page reads as.
    pub fn empty() -> Page {
        Page { bytes: vec![0u8; PAGE_SIZE].into_boxed_slice() }
    }

    /// A page from its bytes (as read from disk or the network).
    pub fn from_bytes(bytes: &[u8]) -> Result<Page, PageError> {
        if bytes.len() != PAGE_SIZE {
            return Err(PageError::BadLength(bytes.len()));
        }
        let page = Page { bytes: bytes.to_vec().into_boxed_slice() };
        PageKind::from_u8(page.bytes[OFFSET_KIND]).ok_or(PageError::BadKind(page.bytes[OFFSET_KIND]))?;
        Ok(page)
    }

    /// The raw page image.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Resets the page to an empty page of `kind`.
    pub fn init(&mut self, kind: PageKind) {
        self.bytes.fill(0);
        self.bytes[OFFSET_KIND] = kind as u8;
        self.set_data_start(PAGE_SIZE);
    }

    /// LSN of the last redo record applied to this page.
    pub fn lsn(&self) -> Lsn {
        Lsn(self.u64_at(OFFSET_LSN))
    }

    /// Stamps the page with the LSN of the record just applied.
    pub fn set_lsn(&mut self, lsn: Lsn) {
        self.bytes[OFFSET_LSN..OFFSET_LSN + 8].copy_from_slice(&lsn.0.to_le_bytes());
    }

    /// What the page holds.
    pub fn kind(&self) -> PageKind {
        PageKind::from_u8(self.bytes[OFFSET_KIND]).unwrap_or(PageKind::Empty)
    }

    /// Next page of the chain this page belongs to, if any.
    pub fn next_page(&self) -> Option<PageId> {
        match self.u64_at(OFFSET_NEXT) {
            0 => None,
            next => Some(PageId(next)),
        }
    }

    /// Links this page to the next page of its chain.
    pub fn set_next_page(&mut self, next: Option<PageId>) {
        let value = next.map_or(0, |page| page.0);
        self.bytes[OFFSET_NEXT..OFFSET_NEXT + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// Number of slots, live and free.
    pub fn slot_count(&self) -> u16 {
        self.u16_at(OFFSET_SLOT_COUNT)
    }

    /// The tuple in `slot`, or None for a free or nonexistent slot.
    pub fn tuple(&self, slot: SlotIndex) -> Option<&[u8]> {
        if slot >= self.slot_count() {
            return None;
        }
        let (offset, len) = self.slot(slot);
        if len == 0 {
            return None;
        }
        Some(&self.bytes[offset..offset + len])
    }

    /// Live tuples with their slots, in slot order.
    pub fn tuples(&self) -> impl Iterator<Item = (SlotIndex, &[u8])> {
        (0..self.slot_count()).filter_map(move |slot| self.tuple(slot).map(|t| (slot, t)))
    }

    /// Bytes a new tuple of `len` bytes needs, counting a new slot if no free
    /// slot can be reused.
    fn space_needed(&self, len: usize) -> usize {
        if self.free_slot().is_some() { len } else { len + SLOT_SIZE }
    }

    /// Whether a tuple of `len` bytes fits (after compaction if needed).
    pub fn fits(&self, len: usize) -> bool {
        len <= TUPLE_SIZE_MAX && self.space_needed(len) <= self.free_space_total()
    }

    /// Length of the largest tuple that fits (after compaction if needed):
    /// what a free space map records, so that `len <= insertable_bytes()`
    /// answers `fits(len)` without the page. O(1): the header counts the
    /// free slots.
    pub fn insertable_bytes(&self) -> usize {
        let new_slot = if self.u16_at(OFFSET_FREE_SLOTS) > 0 { 0 } else { SLOT_SIZE };
        self.free_space_total().saturating_sub(new_slot).min(TUPLE_SIZE_MAX)
    }

    /// The slot an insert will use: the first free slot, else a new one.
    pub fn next_slot(&self) -> SlotIndex {
        self.free_slot().unwrap_or(self.slot_count())
    }

    /// Inserts `data` into `slot`, which must be free or the next new slot.
    pub fn insert(&mut self, slot: SlotIndex, data: &[u8]) -> Result<(), PageError> {
        let count = self.slot_count();
        let reusing = slot < count;
        if slot > count || (reusing && self.slot(slot).1 != 0) {
            return Err(PageError::BadSlot { slot, count });
        }
        if data.is_empty() || data.len() > TUPLE_SIZE_MAX {
            return Err(PageError::TupleTooLarge(data.len()));
        }
        let need = data.len() + if reusing { 0 } else { SLOT_SIZE };
        let free = self.free_space_total();
        if need > free {
            return Err(PageError::Full { need, free });
        }
        if need > self.free_space_contiguous() {
            self.compact();
        }
        if reusing {
            self.add_u16(OFFSET_FREE_SLOTS, -1);
        } else {
            self.set_u16(OFFSET_SLOT_COUNT, count + 1);
        }
        let offset = self.data_start() - data.len();
        self.bytes[offset..offset + data.len()].copy_from_slice(data);
        self.set_data_start(offset);
        self.set_slot(slot, offset, data.len());
        self.add_u16(OFFSET_LIVE_BYTES, data.len() as i32);
        Ok(())
    }

    /// Frees `slot`; its bytes are reclaimed by a later compaction.
    pub fn delete(&mut self, slot: SlotIndex) -> Result<(), PageError> {
        let count = self.slot_count();
        let len = self.slot(slot).1;
        if slot >= count || len == 0 {
            return Err(PageError::BadSlot { slot, count });
        }
        self.free_slot_bytes(slot, len);
        Ok(())
    }

    /// Marks `slot` (holding `len` bytes) free, keeping the header's counts.
    fn free_slot_bytes(&mut self, slot: SlotIndex, len: usize) {
        self.set_slot(slot, 0, 0);
        self.add_u16(OFFSET_LIVE_BYTES, -(len as i32));
        self.add_u16(OFFSET_FREE_SLOTS, 1);
    }

    /// Replaces the tuple in `slot` with `data`.
    pub fn update(&mut self, slot: SlotIndex, data: &[u8]) -> Result<(), PageError> {
        let count = self.slot_count();
        if slot >= count || self.slot(slot).1 == 0 {
            return Err(PageError::BadSlot { slot, count });
        }
        let (offset, len) = self.slot(slot);
        if data.len() <= len && !data.is_empty() {
            // Shrinking in place leaves a gap that compaction reclaims.
            self.bytes[offset..offset + data.len()].copy_from_slice(data);
            self.set_slot(slot, offset, data.len());
            self.add_u16(OFFSET_LIVE_BYTES, data.len() as i32 - len as i32);
            return Ok(());
        }
        let free = self.free_space_total() + len;
        if data.len() > free {
            return Err(PageError::Full { need: data.len(), free });
        }
        self.free_slot_bytes(slot, len);
        self.insert(slot, data)
    }

    /// Stores the checksum of the page image, before it leaves for disk or network.
    pub fn seal(&mut self) {
        let checksum = self.checksum();
        self.bytes[OFFSET_CHECKSUM..OFFSET_CHECKSUM + 4].copy_from_slice(&checksum.to_le_bytes());
    }

    /// Checks the checksum written by `seal`.
    pub fn verify(&self) -> Result<(), PageError> {
        let stored = u32::from_le_bytes(self.bytes[OFFSET_CHECKSUM..OFFSET_CHECKSUM + 4].try_into().expect("4 bytes"));
        let computed = self.checksum();
        if stored != computed {
            return Err(PageError::Checksum { stored, computed });
        }
        Ok(())
    }

    /// crc32c of the whole image except the checksum field itself (the LSN
    /// is covered too: a page served at the wrong LSN is corrupt).
    fn checksum(&self) -> u32 {
        let head = crc32c::crc32c(&self.bytes[..OFFSET_CHECKSUM]);
        crc32c::crc32c_append(head, &self.bytes[OFFSET_KIND..])
    }

    fn free_slot(&self) -> Option<SlotIndex> {
        if self.u16_at(OFFSET_FREE_SLOTS) == 0 {
            return None;
        }
        (0..self.slot_count()).find(|&slot| self.slot(slot).1 == 0)
    }

    fn slots_end(&self) -> usize {
        HEADER_SIZE + self.slot_count() as usize * SLOT_SIZE
    }

    fn free_space_contiguous(&self) -> usize {
        self.data_start() - self.slots_end()
    }

    fn free_space_total(&self) -> usize {
        PAGE_SIZE - self.slots_end() - self.u16_at(OFFSET_LIVE_BYTES) as usize
    }

    /// Moves live tuples to the end of the page in slot order, so that all
    /// free bytes are contiguous. Deterministic by construction.
    fn compact(&mut self) {
        let tuples: Vec<(SlotIndex, Vec<u8>)> = self.tuples().map(|(slot, t)| (slot, t.to_vec())).collect();
        let mut end = PAGE_SIZE;
        for (slot, data) in tuples {
            end -= data.len();
            self.bytes[end..end + data.len()].copy_from_slice(&data);
            self.set_slot(slot, end, data.len());
        }
        let slots_end = self.slots_end();
        self.bytes[slots_end..end].fill(0);
        self.set_data_start(end);
    }

    fn data_start(&self) -> usize {
        match self.u16_at(OFFSET_DATA_START) {
            // 0 encodes PAGE_SIZE (an empty data area), so a zeroed page is valid.
            0 => PAGE_SIZE,
            start => start as usize,
        }
    }

    fn set_data_start(&mut self, start: usize) {
        let encoded = if start == PAGE_SIZE { 0 } else { start as u16 };
        self.set_u16(OFFSET_DATA_START, encoded);
    }

    fn slot(&self, slot: SlotIndex) -> (usize, usize) {
        let at = HEADER_SIZE + slot as usize * SLOT_SIZE;
        (self.u16_at(at) as usize, self.u16_at(at + 2) as usize)
    }

    fn set_slot(&mut self, slot: SlotIndex, offset: usize, len: usize) {
        let at = HEADER_SIZE + slot as usize * SLOT_SIZE;
        self.set_u16(at, offset as u16);
        self.set_u16(at + 2, len as u16);
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    fn add_u16(&mut self, at: usize, delta: i32) {
        let value = i32::from(self.u16_at(at)) + delta;
        debug_assert!((0..=i32::from(u16::MAX)).contains(&value), "page header count out of range");
        self.set_u16(at, value as u16);
    }

    fn set_u16(&mut self, at: usize, value: u16) {
        self.bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }

    fn u64_at(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.bytes[at..at + 8].try_into().expect("8 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap() -> Page {
        let mut page = Page::empty();
        page.init(PageKind::Heap);
        page
    }

    #[test]
    fn insert_read_delete_reuse() {
        let mut page = heap();
        page.insert(0, b"alpha").unwrap();
        page.insert(1, b"beta").unwrap();
        assert_eq!(page.tuple(0), Some(&b"alpha"[..]));
        page.delete(0).unwrap();
        assert_eq!(page.tuple(0), None);
        assert_eq!(page.next_slot(), 0);
        page.insert(0, b"gamma").unwrap();
        let live: Vec<_> = page.tuples().map(|(s, t)| (s, t.to_vec())).collect();
        assert_eq!(live, vec![(0, b"gamma".to_vec()), (1, b"beta".to_vec())]);
    }

    #[test]
    fn fills_then_compacts_after_delete() {
        let mut page = heap();
        let row = [7u8; 100];
        let mut slot = 0;
        while page.fits(row.len()) {
            page.insert(slot, &row).unwrap();
            slot += 1;
        }
        assert!(slot > 70, "only {slot} rows of 100 bytes fit");
        assert!(matches!(page.insert(slot, &row), Err(PageError::Full { .. })));
        for s in (0..slot).step_by(2) {
            page.delete(s).unwrap();
        }
        // Reuse needs compaction: the freed bytes are scattered.
        page.insert(0, &[9u8; 150]).unwrap();
        assert_eq!(page.tuple(0), Some(&[9u8; 150][..]));
        assert_eq!(page.tuple(1), Some(&row[..]));
    }

    #[test]
    fn header_counts_match_the_slots_after_any_mix_of_changes() {
        let mut page = heap();
        let mut state = 7u64;
        for step in 0..3000u64 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = 1 + (state >> 33) as usize % 300;
            let live: Vec<SlotIndex> = page.tuples().map(|(slot, _)| slot).collect();
            match step % 3 {
                0 | 1 if page.fits(len) => page.insert(page.next_slot(), &vec![step as u8; len]).unwrap(),
                1 if !live.is_empty() => {
                    let slot = live[(state >> 20) as usize % live.len()];
                    let _ = page.update(slot, &vec![1; len]);
                }
                _ if !live.is_empty() => page.delete(live[(state >> 40) as usize % live.len()]).unwrap(),
                _ => {}
            }
            let live_bytes: usize = page.tuples().map(|(_, t)| t.len()).sum();
            let free = (0..page.slot_count()).filter(|&s| page.tuple(s).is_none()).count();
            assert_eq!(page.u16_at(OFFSET_LIVE_BYTES) as usize, live_bytes, "step {step}");
            assert_eq!(page.u16_at(OFFSET_FREE_SLOTS) as usize, free, "step {step}");
            let insertable = page.insertable_bytes();
            assert!(page.fits(insertable.max(1)) || insertable == 0, "step {step}: {insertable} bytes do not fit");
            assert!(!page.fits(insertable + 1), "step {step}: more than {insertable} bytes fit");
        }
    }

    #[test]
    fn update_grows_and_shrinks() {
        let mut page = heap();
        page.insert(0, b"short").unwrap();
        page.insert(1, b"other").unwrap();
        page.update(0, b"a much longer tuple").unwrap();
        assert_eq!(page.tuple(0), Some(&b"a much longer tuple"[..]));
        page.update(0, b"s").unwrap();
        assert_eq!(page.tuple(0), Some(&b"s"[..]));
        assert_eq!(page.tuple(1), Some(&b"other"[..]));
    }

    #[test]
    fn bad_slots_are_refused() {
        let mut page = heap();
        assert!(matches!(page.insert(3, b"x"), Err(PageError::BadSlot { .. })));
        page.insert(0, b"x").unwrap();
        assert!(matches!(page.insert(0, b"y"), Err(PageError::BadSlot { .. })));
        assert!(matches!(page.delete(5), Err(PageError::BadSlot { .. })));
    }

    #[test]
    fn checksum_detects_corruption() {
        let mut page = heap();
        page.insert(0, b"payload").unwrap();
        page.seal();
        page.verify().unwrap();
        let mut bytes = page.as_bytes().to_vec();
        bytes[PAGE_SIZE - 1] ^= 1;
        let corrupt = Page::from_bytes(&bytes).unwrap();
        assert!(matches!(corrupt.verify(), Err(PageError::Checksum { .. })));
        let mut wrong_lsn = page.clone();
        wrong_lsn.set_lsn(Lsn(77));
        assert!(matches!(wrong_lsn.verify(), Err(PageError::Checksum { .. })));
    }
}
