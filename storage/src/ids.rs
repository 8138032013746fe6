//! Identifiers and positions. Every id is a newtype so that no bare integer
//! crosses a module boundary (an LSN can never be passed where a page id is
//! expected).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Log sequence number: one space per volume, assigned by the writer,
/// strictly increasing. `Lsn::ZERO` means "before any record".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The position before the first record of a volume.
    pub const ZERO: Lsn = Lsn(0);

    /// The next LSN after this one.
    pub fn next(self) -> Lsn {
        Lsn(self.0.checked_add(1).expect("LSN space exhausted"))
    }
}

impl fmt::Display for Lsn {
    /// Shown to people as PostgreSQL does: high and low 32 bits in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Volume epoch. A writer raises it on a write quorum before it writes;
/// storage daemons refuse requests that carry a lower epoch than they have seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A page of the volume. Page 0 is the volume's meta page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PageId(pub u64);

impl fmt::Display for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A protection group: a contiguous range of pages replicated on six segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProtectionGroupId(pub u32);

impl fmt::Display for ProtectionGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A storage daemon, by its index in the cluster file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storage-{}", self.0)
    }
}

/// Maps pages to protection groups: group `g` holds pages
/// `[g * pages_per_group, (g + 1) * pages_per_group)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeLayout {
    /// Pages in one protection group; at least 1.
    pub pages_per_group: u64,
}

impl VolumeLayout {
    /// A layout from a protection group size in bytes.
    pub fn from_group_size_bytes(group_size_bytes: u64) -> VolumeLayout {
        let pages_per_group = (group_size_bytes / crate::page::PAGE_SIZE as u64).max(1);
        VolumeLayout { pages_per_group }
    }

    /// The protection group that holds `page`.
    pub fn group_of(&self, page: PageId) -> ProtectionGroupId {
        let group = page.0 / self.pages_per_group;
        ProtectionGroupId(u32::try_from(group).expect("volume larger than 2^32 protection groups"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_shows_like_postgres() {
        assert_eq!(Lsn(0x1_0000_00A0).to_string(), "1/A0");
        assert_eq!(Lsn(16).to_string(), "0/10");
    }

    #[test]
    fn layout_maps_pages_to_groups() {
        let layout = VolumeLayout::from_group_size_bytes(4 * crate::page::PAGE_SIZE as u64);
        assert_eq!(layout.group_of(PageId(0)), ProtectionGroupId(0));
        assert_eq!(layout.group_of(PageId(3)), ProtectionGroupId(0));
        assert_eq!(layout.group_of(PageId(4)), ProtectionGroupId(1));
    }
}
