//! Errors of the storage client and of the writer's protocol cores. They
//! live outside the network code so that the sans-IO cores (and the
//! simulation that drives them) report the same variants as the QUIC client.

use crate::ids::Lsn;
use crate::proto::Response;
use thiserror::Error;

/// Errors of the storage client. Branch on variants, or on `is_retryable`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// A daemon holds a newer epoch: a newer writer exists.
    #[error("a newer writer holds the volume (epoch {current})")]
    StaleEpoch { current: crate::ids::Epoch },
    /// This writer was fenced earlier by a newer epoch; it must stop writing.
    #[error("this writer has been fenced by a newer writer")]
    Fenced,
    /// The commit was not acknowledged: no write quorum progress for the
    /// commit timeout. Its outcome is unknown: it may still become durable.
    #[error("commit not acknowledged: no write quorum progress for {timeout_ms} ms")]
    QuorumTimeout { timeout_ms: u64 },
    /// Too few daemons answered for a quorum operation.
    #[error("quorum lost: {needed} storage daemons needed, {answered} answered ({what})")]
    QuorumLost { what: &'static str, needed: usize, answered: usize },
    /// No replica is complete up to the read point (yet).
    #[error("no replica is complete to {want} (best {have})")]
    NotComplete { have: Lsn, want: Lsn },
    /// The read point is below the history storage keeps.
    #[error("read point {want} is older than the oldest kept ({oldest})")]
    TooOld { oldest: Lsn, want: Lsn },
    /// Data failed a checksum or did not decode.
    #[error("corrupt data from storage: {0}")]
    Corrupt(String),
    /// Network or daemon failure.
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// TLS material or configuration is unusable.
    #[error("storage TLS setup failed: {0}")]
    Tls(String),
    /// The request was bad or the configuration does not fit.
    #[error("invalid storage request: {0}")]
    Invalid(String),
    /// The operation was abandoned (writer shutting down).
    #[error("storage operation cancelled")]
    Cancelled,
}

impl StorageError {
    /// Whether trying again (later, or on another replica) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::NotComplete { .. } | StorageError::Io(_) | StorageError::QuorumLost { .. })
    }

    /// Whether this writer must stop (SQLSTATE 57P01 for its sessions).
    pub fn is_fenced(&self) -> bool {
        matches!(self, StorageError::Fenced | StorageError::StaleEpoch { .. })
    }

    /// Whether the operation was cancelled.
    pub fn is_cancel(&self) -> bool {
        matches!(self, StorageError::Cancelled)
    }
}

/// A response that does not answer the request.
pub(crate) fn unexpected(response: Response) -> StorageError {
    match response {
        Response::StaleEpoch { current } => StorageError::StaleEpoch { current },
        Response::Failed { message } => StorageError::Io(message),
        other => StorageError::Io(format!("unexpected response {other:?}")),
    }
}
