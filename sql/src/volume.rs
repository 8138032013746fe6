//! The page source seam: what the SQL layer needs from pages and redo.
//!
//! The SQL layer owns this trait (STYLE: the consumer owns the seam); the
//! server implements it with its buffer cache and the storage client, tests
//! with [`crate::testing::MemoryVolume`].
//!
//! Contract:
//! - `read_page(p, l)` returns page `p` exactly as of LSN `l` (every redo
//!   record with LSN <= `l` applied), or an all-zero page if `p` was never
//!   written at `l`. The same (p, l) always returns the same bytes.
//! - `read_point()` returns a commit LSN (a transaction-consistent state,
//!   invariant 1) that a new statement may read at. On the writer, once
//!   `commit` has returned `Ok(lsn)`, `read_point()` returns at least `lsn`:
//!   the engine relies on this to base the next write transaction on every
//!   earlier commit.
//! - `commit(bodies)` makes the records durable as one transaction, applied in
//!   order at consecutive LSNs, the last being the commit record; it returns
//!   that LSN. Only the holder of the engine's commit lock calls it, so
//!   commits never interleave. Readers return [`VolumeError::ReadOnly`].

use crate::error::{SqlError, sqlstate};
use crate::heap::Overlay;
use async_trait::async_trait;
use borealis_storage::ids::{Lsn, PageId};
use borealis_storage::page::Page;
use borealis_storage::redo::RedoBody;
use std::sync::Arc;
use thiserror::Error;

/// Why a volume operation failed. Messages may hold internal detail (node
/// names, LSNs): they go to logs; the client sees only [`SqlError`]s.
///
/// SQLSTATE mapping (see [`VolumeError::to_sql_error`]):
/// | variant | read | commit |
/// | `ReadOnly` | 25006 | 25006 |
/// | `Fenced` | 57P01 | 57P01 |
/// | `Unavailable`, `Timeout` | 57P03 (retry later) | 08007 (outcome unknown) |
/// | `NotCommitted` | 57P03 | 57P03 (known not committed) |
/// | `Conflict` | 40001 | 40001 (known not committed; retry) |
/// | `Internal` | XX000 | XX000 |
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VolumeError {
    /// This instance may not write (a reader).
    #[error("volume is read-only on this instance")]
    ReadOnly,
    /// A newer writer raised the volume epoch; this instance must stop writing.
    #[error("writer fenced by a newer epoch: {0}")]
    Fenced(String),
    /// Storage could not be reached or has no quorum.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Storage did not answer in time.
    #[error("storage timed out: {0}")]
    Timeout(String),
    /// The commit was refused before any of it was sent: storage cannot
    /// take writes now.
    #[error("commit not sent: {0}")]
    NotCommitted(String),
    /// The commit was refused before any of it was sent because the state it
    /// was built on is no longer the newest; retrying the transaction works.
    #[error("commit conflicts with a newer state: {0}")]
    Conflict(String),
    /// Anything else (corruption, bugs).
    #[error("volume internal error: {0}")]
    Internal(String),
}

impl VolumeError {
    /// The client error. `during_commit` matters for Unavailable and Timeout:
    /// a commit that could not be confirmed may or may not be durable (08007).
    pub fn to_sql_error(&self, during_commit: bool) -> SqlError {
        tracing::warn!(error = %self, during_commit, "volume operation failed");
        match self {
            VolumeError::ReadOnly => {
                SqlError::new(sqlstate::READ_ONLY_SQL_TRANSACTION, "cannot write on a read-only instance")
            }
            VolumeError::Fenced(_) => SqlError::new(
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection because this instance is no longer the writer",
            ),
            VolumeError::Unavailable(_) | VolumeError::Timeout(_) if during_commit => SqlError::new(
                sqlstate::TRANSACTION_RESOLUTION_UNKNOWN,
                "storage did not confirm the commit; the transaction may or may not be committed",
            ),
            VolumeError::Unavailable(_) | VolumeError::Timeout(_) => {
                SqlError::new(sqlstate::CANNOT_CONNECT_NOW, "storage is temporarily unavailable")
            }
            VolumeError::NotCommitted(_) => SqlError::new(
                sqlstate::CANNOT_CONNECT_NOW,
                "storage cannot take writes now; the transaction was not committed",
            ),
            VolumeError::Conflict(_) => SqlError::new(
                sqlstate::SERIALIZATION_FAILURE,
                "could not serialize access: an earlier commit's outcome was settled meanwhile; retry the transaction",
            ),
            VolumeError::Internal(detail) => SqlError::internal(detail),
        }
    }
}

/// Held by a statement's snapshot; the read point is released when the last
/// clone is dropped.
pub type ReadPointHold = Arc<dyn std::any::Any + Send + Sync>;

/// What an instance's buffer cache has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Pages dropped to make room (not invalidations).
    pub evictions: u64,
    pub bytes: u64,
    pub capacity_bytes: u64,
}

impl CacheStats {
    /// Hits over lookups (0 before the first lookup).
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 { 0.0 } else { self.hits as f64 / lookups as f64 }
    }
}

/// Pages at read points, and commits of redo. See the module docs for the contract.
#[async_trait]
pub trait Volume: Send + Sync + 'static {
    /// Page as of `read_point` (an all-zero Page if never written).
    async fn read_page(&self, page: PageId, read_point: Lsn) -> Result<Arc<Page>, VolumeError>;
    /// Pages as of `read_point`, in the order asked: what a scan reads
    /// ahead, in as few round trips as the volume can. By default one
    /// `read_page` each.
    async fn read_pages(&self, pages: &[PageId], read_point: Lsn) -> Result<Vec<Arc<Page>>, VolumeError> {
        let mut read = Vec::with_capacity(pages.len());
        for page in pages {
            read.push(self.read_page(*page, read_point).await?);
        }
        Ok(read)
    }
    /// The newest consistent read point a new statement may use.
    async fn read_point(&self) -> Result<Lsn, VolumeError>;
    /// Writer only: make these page changes durable as one transaction;
    /// returns the LSN of its commit record. Readers return
    /// [`VolumeError::ReadOnly`]. Records are applied in order; the volume
    /// assigns consecutive LSNs.
    async fn commit(&self, bodies: Vec<RedoBody>) -> Result<Lsn, VolumeError>;

    /// Writer only: the first half of a pipelined commit. The volume assigns
    /// the transaction's LSNs and keeps `pages` (the transaction's page
    /// images after `bodies`) for the next write transactions, which read at
    /// [`Volume::write_read_point`]; statements reading at
    /// [`Volume::read_point`] see the commit only once it is durable. Returns
    /// the commit LSN for [`Volume::wait_durable`]. By default, a whole commit.
    async fn submit(&self, bodies: Vec<RedoBody>, pages: Overlay) -> Result<Lsn, VolumeError> {
        drop(pages);
        self.commit(bodies).await
    }

    /// Writer only: waits until the submitted commit `commit` is durable.
    async fn wait_durable(&self, commit: Lsn) -> Result<(), VolumeError> {
        let _ = commit;
        Ok(())
    }

    /// Where a new write transaction reads: the newest submitted commit.
    async fn write_read_point(&self) -> Result<Lsn, VolumeError> {
        self.read_point().await
    }

    /// Keeps the history of `read_point` in storage for as long as the
    /// returned value lives (a statement reads there). None when the volume
    /// has nothing to keep.
    fn hold_read_point(&self, read_point: Lsn) -> Option<ReadPointHold> {
        let _ = read_point;
        None
    }

    /// The instance's buffer cache counters, if it has one.
    fn cache_stats(&self) -> Option<CacheStats> {
        None
    }

    /// Readers: how long the newest commit they follow took to reach their
    /// read point after the writer acknowledged it. None on a writer, or on
    /// a reader that follows no commit stream.
    fn replica_lag(&self) -> Option<std::time::Duration> {
        None
    }
}
