//! Redo records: the only thing the writer ships to storage.
//!
//! A record describes one small change to one page (DESIGN.md invariant 4).
//! The writer builds `RedoBody`s while a transaction runs, and at commit the
//! storage client stamps them with consecutive LSNs, each protection group's
//! back link and the epoch, marking the transaction's last record as its
//! commit point (invariant 1: any commit LSN is a consistent state).
//!
//! Encoding: bincode of the record followed by a crc32c of those bytes, so a
//! torn or corrupted record is detected wherever it is read back.

use crate::ids::{Epoch, Lsn, PageId, ProtectionGroupId};
use crate::page::{Page, PageError, PageKind, SlotIndex};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The change a record makes to its page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedoBody {
    /// Formats `page` as an empty page of `kind`.
    InitPage { page: PageId, kind: PageKind },
    /// Puts `data` into the free (or next new) slot `slot`.
    InsertTuple { page: PageId, slot: SlotIndex, data: Vec<u8> },
    /// Replaces the tuple in `slot`.
    UpdateTuple { page: PageId, slot: SlotIndex, data: Vec<u8> },
    /// Frees `slot`.
    DeleteTuple { page: PageId, slot: SlotIndex },
    /// Links `page` to the next page of its chain.
    SetNextPage { page: PageId, next: Option<PageId> },
}

impl RedoBody {
    /// The page this record changes.
    pub fn page(&self) -> PageId {
        match self {
            RedoBody::InitPage { page, .. }
            | RedoBody::InsertTuple { page, .. }
            | RedoBody::UpdateTuple { page, .. }
            | RedoBody::DeleteTuple { page, .. }
            | RedoBody::SetNextPage { page, .. } => *page,
        }
    }

    /// Applies the change to `target` without stamping an LSN (the writer
    /// applies bodies to a transaction's private pages before LSNs exist).
    pub fn apply_body(&self, target: &mut Page) -> Result<(), PageError> {
        match self {
            RedoBody::InitPage { kind, .. } => {
                target.init(*kind);
                Ok(())
            }
            RedoBody::InsertTuple { slot, data, .. } => target.insert(*slot, data),
            RedoBody::UpdateTuple { slot, data, .. } => target.update(*slot, data),
            RedoBody::DeleteTuple { slot, .. } => target.delete(*slot),
            RedoBody::SetNextPage { next, .. } => {
                target.set_next_page(*next);
                Ok(())
            }
        }
    }
}

/// A redo record as it travels and is logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedoRecord {
    /// This record's LSN.
    pub lsn: Lsn,
    /// LSN of the previous record of the same protection group (`Lsn::ZERO`
    /// for the group's first record): lets a segment know which prefix of its
    /// group's log it holds completely.
    pub prev_lsn: Lsn,
    /// The protection group of the record's page.
    pub protection_group: ProtectionGroupId,
    /// Epoch of the writer that produced it.
    pub epoch: Epoch,
    /// LSN of its transaction's commit record, the transaction's last
    /// (its own LSN on the commit record). A transaction's records have
    /// consecutive LSNs and read points are commit LSNs, so two records with
    /// the same commit LSN can share a page version.
    pub commit_lsn: Lsn,
    /// The change.
    pub body: RedoBody,
}

/// Why a record could not be decoded or applied.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RedoError {
    #[error("redo record is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("redo record checksum mismatch")]
    Checksum,
    #[error("redo record does not decode: {0}")]
    Decode(String),
    #[error("record {lsn} cannot apply to page {page} at {page_lsn}: {source}")]
    Apply {
        lsn: Lsn,
        page: PageId,
        page_lsn: Lsn,
        #[source]
        source: PageError,
    },
    #[error("record {lsn} is not newer than page {page} at {page_lsn}")]
    OutOfOrder { lsn: Lsn, page: PageId, page_lsn: Lsn },
}

impl RedoRecord {
    /// True on the last record of a transaction: the volume is consistent at this LSN.
    pub fn is_commit(&self) -> bool {
        self.lsn == self.commit_lsn
    }

    /// Serialises the record followed by its crc32c.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = bincode::serialize(self).expect("redo records always serialise");
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decodes and checks a record written by `encode`.
    pub fn decode(bytes: &[u8]) -> Result<RedoRecord, RedoError> {
        if bytes.len() < 4 {
            return Err(RedoError::Truncated(bytes.len()));
        }
        let (payload, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if crc32c::crc32c(payload) != stored {
            return Err(RedoError::Checksum);
        }
        bincode::deserialize(payload).map_err(|e| RedoError::Decode(e.to_string()))
    }

    /// Applies the record to `target` and stamps the page with its LSN.
    /// Refuses a record that is not newer than the page, so a record can
    /// never be applied twice.
    pub fn apply(&self, target: &mut Page) -> Result<(), RedoError> {
        let page = self.body.page();
        let page_lsn = target.lsn();
        if self.lsn <= page_lsn {
            return Err(RedoError::OutOfOrder { lsn: self.lsn, page, page_lsn });
        }
        self.body.apply_body(target).map_err(|source| RedoError::Apply { lsn: self.lsn, page, page_lsn, source })?;
        target.set_lsn(self.lsn);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(lsn: u64, body: RedoBody) -> RedoRecord {
        RedoRecord {
            lsn: Lsn(lsn),
            prev_lsn: Lsn(lsn - 1),
            protection_group: ProtectionGroupId(0),
            epoch: Epoch(1),
            commit_lsn: Lsn(lsn + 1),
            body,
        }
    }

    #[test]
    fn apply_rebuilds_a_page_and_refuses_replays() {
        let page = PageId(3);
        let records = [
            record(1, RedoBody::InitPage { page, kind: PageKind::Heap }),
            record(2, RedoBody::InsertTuple { page, slot: 0, data: b"one".to_vec() }),
            record(3, RedoBody::InsertTuple { page, slot: 1, data: b"two".to_vec() }),
            record(4, RedoBody::DeleteTuple { page, slot: 0 }),
            record(5, RedoBody::UpdateTuple { page, slot: 1, data: b"deux".to_vec() }),
        ];
        let mut image = Page::empty();
        for r in &records {
            r.apply(&mut image).unwrap();
        }
        assert_eq!(image.lsn(), Lsn(5));
        assert_eq!(image.tuple(0), None);
        assert_eq!(image.tuple(1), Some(&b"deux"[..]));
        assert!(matches!(records[4].apply(&mut image), Err(RedoError::OutOfOrder { .. })));
    }

    #[test]
    fn corrupt_records_are_detected() {
        let r = record(9, RedoBody::DeleteTuple { page: PageId(1), slot: 2 });
        let mut bytes = r.encode();
        assert_eq!(RedoRecord::decode(&bytes).unwrap(), r);
        bytes[3] ^= 0x40;
        assert_eq!(RedoRecord::decode(&bytes), Err(RedoError::Checksum));
        assert!(matches!(RedoRecord::decode(&bytes[..2]), Err(RedoError::Truncated(2))));
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(lsn in 1u64..u64::MAX, page in any::<u64>(), slot in any::<u16>(),
                                    data in proptest::collection::vec(any::<u8>(), 1..300), ahead in 0u64..3) {
            let mut r = record(lsn, RedoBody::InsertTuple { page: PageId(page), slot, data });
            r.commit_lsn = Lsn(lsn.saturating_add(ahead));
            prop_assert_eq!(RedoRecord::decode(&r.encode()).unwrap(), r);
        }
    }
}
