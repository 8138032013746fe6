//! Borealis storage: pages, redo records, and (behind features) the storage
//! daemon and the client compute uses to reach it over QUIC.
//!
//! Without features this crate is only the page format, redo records, the
//! wire types and the sans-IO protocol cores, so that `borealis-sql` can
//! build and apply redo without knowing QUIC.
//!
//! A commit travels: `client::VolumeWriter::commit` stamps redo bodies with
//! LSNs and back links, the per-daemon senders ship them (`proto::Request::Append`),
//! `daemon` logs and syncs them (`log`) and chains them into segments
//! (`segment`, `store`), and the writer's `quorum::QuorumTracker` acknowledges
//! the commit once 4 of 6 segments of every group are complete past it. A
//! page read names a read point and is served by one complete segment, whose
//! applicator (`versions`) rebuilt the page from redo.
//!
//! The protocol decisions are sans-IO cores driven by messages: the daemon's
//! request handling and epoch fence (`daemon_core` over `store`), the
//! writer's LSN assignment, sends and durability (`writer_core` over
//! `quorum`), and recovery (`recovery_core`). The QUIC shells (`daemon`,
//! `writer`, `recovery`, `gossip`) only move their messages, and the
//! deterministic simulation (`tests/sim`) drives the same cores.

pub mod daemon_core;
pub mod error;
pub mod hedge;
pub mod ids;
pub mod page;
pub mod placement;
pub mod proto;
pub mod quorum;
pub mod recovery_core;
pub mod redo;
pub mod segment;
pub mod store;
pub mod versions;
pub mod writer_core;

pub mod log;
pub mod pagefile;

#[cfg(feature = "net")]
pub mod tls;

#[cfg(feature = "daemon")]
pub mod daemon;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "client")]
pub mod writer;

#[cfg(feature = "client")]
mod recovery;

#[cfg(feature = "daemon")]
mod gossip;
