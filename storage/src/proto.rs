//! The storage wire protocol: one request and one response per QUIC
//! bidirectional stream, each a bincode document.
//!
//! A client opens a stream, writes the encoded `Request` and finishes its
//! side; the daemon reads to the end (at most `MESSAGE_BYTES_MAX`), answers
//! with one encoded `Response` and finishes. Streams are independent, so a
//! slow page read never holds up an append on the same connection.
//!
//! Write path: the writer sends `Append` with the records of each protection
//! group the daemon holds plus `complete_to`, its promise that a group has no
//! records between the last one sent and `complete_to`. The daemon logs and
//! syncs the records, then answers with each segment's complete LSN (SCL).
//!
//! Read path: `GetPages` (pages of one protection group) names the read
//! point; the daemon answers only when the pages'
//! segment is complete up to it.

use crate::ids::{Epoch, Lsn, NodeId, PageId, ProtectionGroupId};
use crate::redo::RedoRecord;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// ALPN of the storage protocol; bumped on any incompatible change.
pub const ALPN: &[u8] = b"borealis-storage/2";

/// The largest request or response: bounds what one stream may make a peer
/// buffer. Large enough for a boxcar of thousands of 8 KiB records.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Records of one protection group in an `Append`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupAppend {
    /// The group; every record below belongs to it.
    pub protection_group: ProtectionGroupId,
    /// Records in LSN order, chained by `prev_lsn` (may be empty).
    pub records: Vec<RedoRecord>,
    /// The writer's last record of this group at or below `complete_to`
    /// (`Lsn::ZERO` if the group has none): the segment extends its SCL to
    /// `complete_to` only when its chain ends exactly here.
    pub tail_lsn: Lsn,
}

/// Per-segment progress reported by a daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentProgress {
    /// The protection group.
    pub protection_group: ProtectionGroupId,
    /// Segment complete LSN: the segment has every record of its group at or
    /// below it.
    pub segment_complete_lsn: Lsn,
    /// The last record of the complete chain (`<= segment_complete_lsn`).
    pub tail_lsn: Lsn,
    /// The last commit record at or below `tail_lsn` (`Lsn::ZERO` if none).
    pub commit_lsn: Lsn,
}

/// What a daemon reports about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The daemon.
    pub node: NodeId,
    /// The highest epoch it has accepted (persisted).
    pub epoch: Epoch,
    /// The highest volume durable LSN it has learnt; always a read point.
    pub durable_lsn: Lsn,
    /// Every segment it holds.
    pub segments: Vec<SegmentProgress>,
    /// Every truncation range it has accepted.
    pub truncations: Vec<Truncation>,
}

/// A truncation range, decided by a new writer at recovery: records of
/// epochs below `epoch` with LSNs in `(above, up_to]` are annulled, in every
/// protection group. `above` is the recovered durable LSN and `up_to` is past
/// anything the old writer could have assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Truncation {
    pub epoch: Epoch,
    pub above: Lsn,
    pub up_to: Lsn,
}

impl Truncation {
    /// Whether `record` is annulled by this range.
    pub fn annuls(&self, record: &RedoRecord) -> bool {
        record.epoch < self.epoch && record.lsn > self.above && record.lsn <= self.up_to
    }
}

/// A request to a storage daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Log and sync records of one or more segments.
    Append {
        /// The writer's epoch; refused if below the daemon's.
        epoch: Epoch,
        /// Per-group records.
        groups: Vec<GroupAppend>,
        /// No group listed has records in `(tail_lsn, complete_to]`, and
        /// groups of this daemon that are not listed have no records at or
        /// below it.
        complete_to: Lsn,
        /// The writer's volume durable LSN (a read point).
        durable_lsn: Lsn,
        /// History below this may be dropped (as far as the writer knows).
        min_read_point: Lsn,
        /// True when `groups` lists every group of this daemon that has
        /// records, so that the others are complete up to `complete_to`.
        all_groups: bool,
    },
    /// Pages of one protection group as of `read_point`, answered in the
    /// order asked (at most [`PAGES_PER_REQUEST_MAX`]): a scan's read-ahead
    /// is one round trip, not one per page.
    GetPages { pages: Vec<PageId>, read_point: Lsn },
    /// The daemon's epoch and segment progress.
    Status,
    /// Tells the daemon the volume durable LSN and the writer's min read point.
    AdvanceDurable { epoch: Epoch, durable_lsn: Lsn, min_read_point: Lsn },
    /// A new writer claims `epoch`; refused (`StaleEpoch`) unless it is
    /// above the daemon's, so that each epoch belongs to one writer.
    RaiseEpoch { epoch: Epoch },
    /// Persists a truncation range; `epoch` is the requester's.
    Truncate { epoch: Epoch, truncation: Truncation },
    /// Records of the complete chain in `(after, up_to]`, at most `bytes_max`
    /// of them (at least one record is returned if any).
    GetRecords { protection_group: ProtectionGroupId, after: Lsn, up_to: Lsn, bytes_max: u32 },
    /// The last commit and the last record at or below `at_or_below` in the
    /// group's chain.
    ChainPoint { protection_group: ProtectionGroupId, at_or_below: Lsn },
    /// A checksum of every page of the group as of `lsn` (a read point: at
    /// most the segment's SCL and the volume durable LSN), so that tests and
    /// operators can check that segments hold identical pages.
    Digest { protection_group: ProtectionGroupId, lsn: Lsn },
    /// A reader's statement still reads at `read_point`: keep the history
    /// it needs (for `store::READER_READ_POINT_HOLD` after the last request).
    HoldReadPoint { read_point: Lsn },
}

/// The most pages one `GetPages` may ask for (4 MiB of images at most).
pub const PAGES_PER_REQUEST_MAX: usize = 512;

/// One page of a `Digest` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PageDigest {
    /// The page.
    pub page: PageId,
    /// CRC32C of the sealed page image as of the digest's LSN.
    pub crc: u32,
}

/// A daemon's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Records are synced; progress of every segment named in the append.
    Appended { segments: Vec<SegmentProgress> },
    /// The request's epoch is below the daemon's.
    StaleEpoch { current: Epoch },
    /// Answer to `GetPages`: sealed images (`Page::verify` must pass) in
    /// the order asked.
    Pages { images: Vec<Vec<u8>> },
    /// The segment is not complete up to the read point.
    NotComplete { segment_complete_lsn: Lsn },
    /// The read point is below the history the daemon keeps.
    TooOld { oldest: Lsn },
    /// Answer to `Status`.
    Status(NodeStatus),
    /// The epoch is now (at least) `epoch`, persisted.
    EpochRaised { epoch: Epoch },
    /// Answer to `AdvanceDurable`.
    Advanced,
    /// The truncation is persisted; every segment's progress after it.
    Truncated { segments: Vec<SegmentProgress> },
    /// Answer to `GetRecords`; `more` when `up_to` was not reached.
    Records { records: Vec<RedoRecord>, more: bool },
    /// Answer to `ChainPoint` (`Lsn::ZERO` where there is none).
    ChainPoint { commit_lsn: Lsn, record_lsn: Lsn },
    /// Answer to `Digest`: every page of the group that has a version at or
    /// below the LSN, in page order (pages never written are left out).
    Digest { segment_complete_lsn: Lsn, pages: Vec<PageDigest> },
    /// The daemon could not serve the request (I/O failure, bad request).
    Failed { message: String },
    /// Answer to `HoldReadPoint`: the history is kept (false: it was
    /// already collected, and reads there get `TooOld`).
    Held { kept: bool },
}

/// A message that does not decode.
#[derive(Debug, Error)]
#[error("malformed storage message: {0}")]
pub struct ProtoError(pub String);

/// Encodes a request or response.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    bincode::serialize(message).expect("protocol messages always serialise")
}

/// Decodes a request or response received from a peer.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ProtoError> {
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(ProtoError(format!("{} bytes is over the limit", bytes.len())));
    }
    bincode::deserialize(bytes).map_err(|e| ProtoError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let truncation = Truncation { epoch: Epoch(3), above: Lsn(10), up_to: Lsn(99) };
        let request = Request::Truncate { epoch: Epoch(3), truncation };
        assert_eq!(decode::<Request>(&encode(&request)).unwrap(), request);
        assert!(decode::<Response>(&[0xff, 0xff, 0xff, 0xff, 1]).is_err());
        let request = Request::Digest { protection_group: ProtectionGroupId(2), lsn: Lsn(7) };
        assert_eq!(decode::<Request>(&encode(&request)).unwrap(), request);
        let response =
            Response::Digest { segment_complete_lsn: Lsn(9), pages: vec![PageDigest { page: PageId(3), crc: 42 }] };
        assert_eq!(decode::<Response>(&encode(&response)).unwrap(), response);
    }
}
