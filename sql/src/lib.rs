//! Borealis SQL: types and row encoding, the catalog, page-backed tables for
//! DataFusion, DML and transactions.
//!
//! The server opens an [`Engine`] over a [`Volume`] (its buffer cache and
//! storage client), gets a [`Session`] per connection and calls
//! [`Session::execute`] (simple protocol), [`Session::describe`] and
//! [`Session::execute_with_params`] (extended protocol). Every error is a
//! [`SqlError`] with its SQLSTATE.
//!
//! A write, end to end: `INSERT INTO t VALUES (1)` is parsed, planned by
//! DataFusion (`engine::Planner`), its rows are encoded (`row`) and inserted
//! into private copies of the table's pages (`heap::WriteSet`) as redo
//! bodies; at commit the bodies go to [`Volume::commit`] in one call.
//! A read: `SELECT * FROM t` takes the volume's read point, loads the catalog
//! if its version changed (`catalog`), and DataFusion scans the table's page
//! chain at that read point (`provider::ScanExec`).
//!
//! Module map: `volume` (the seam), `engine` (sessions, transactions,
//! dispatch), `isolation` (isolation levels, locking reads), `locks` (row, key and table locks), `ddl`, `dml`, `copy` (COPY FROM STDIN),
//! `catalog`, `heap`, `free_space` (which heap pages have room), `btree` (B+tree indexes in
//! pages), `access` (choosing an index for a scan), `keys` (order-preserving key encoding), `index` (keeping indexes
//! in step with rows), `row`, `types`, `provider`, `error`, `testing`
//! (in-memory volume); `pg_catalog` (PostgreSQL's system catalogs computed
//! from the catalog), `pg_functions` (catalog functions such as
//! `pg_get_indexdef`), `pg_rewrite` (catalog-query syntax DataFusion lacks).

pub mod access;
pub mod alter;
pub mod btree;
pub mod catalog;
pub mod constraint;
pub mod copy;
pub mod datetime;
pub mod ddl;
pub mod dml;
pub mod engine;
pub mod error;
pub mod free_space;
pub mod functions;
pub mod heap;
pub mod index;
pub mod input;
pub mod integers;
pub mod isolation;
pub mod json;
pub mod keys;
pub mod locks;
pub mod names;
pub mod notice;
pub mod pg_catalog;
pub mod pg_functions;
pub mod pg_rewrite;
pub mod provider;
pub mod rebase;
pub mod roles;
pub mod row;
pub mod sequence;
pub mod settings;
pub mod testing;
pub mod text_output;
pub mod types;
pub mod views;
pub mod volume;

pub use engine::{CopyOutStream, Described, Engine, QueryOutput, Session, TransactionStatus};
pub use error::{SqlError, sqlstate};
pub use volume::{Volume, VolumeError};

#[cfg(test)]
mod tests;
