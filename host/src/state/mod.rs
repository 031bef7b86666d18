//! The in-memory state store: tables and indexes whose schema comes from the loaded plugins.
//!
//! Owns: the table data, index maintenance on insert and delete, lookups (exact, prefix,
//! range, first) and transactions. Every table lives in persistent ordered maps (`imbl`), so a
//! read snapshot is an `Arc`/root clone: O(1) at any size, by structural sharing.
//!
//! Invariants, enforced in [`Tables::insert`]:
//! - every object has exactly one key in the table's `id` index, and is stored under it;
//! - a single-valued index holds one key per object, or none if it allows missing values;
//! - a unique index maps a key to at most one object; a violation fails the insert with an
//!   error naming table, index and key, and changes nothing;
//! - an object's index entries are exactly the keys it was inserted with: replacing or
//!   deleting it removes its old entries first.
//!
//! Only the plugin that declares a table may write it ([`StateError::NotOwner`]).
//!
//! Words: a table's *stamp* is the FSM index of its last change (what Consul's `index`
//! table holds, and what `X-Consul-Index` reports); an *index* is one of a table's indexes,
//! by name. The raft index never reaches the store.
//!
//! Transactions: [`Store::write`] hands out one [`WriteTxn`] at a time (a mutex), stamped
//! with the FSM index of the command being applied; [`WriteTxn::commit`] publishes it atomically, then wakes the
//! watchers of the tables it changed; dropping it aborts. [`Store::read`] returns a
//! [`ReadTxn`] over the last committed snapshot; readers never block the writer and never
//! see a partial transaction. Inside a transaction, [`WriteTxn::savepoint`] starts an undo
//! journal (the row each write replaced), so rolling back one command of a log entry costs
//! what the command wrote, and writes after the first one to a tree node change it in place
//! instead of copying its path again. [`Store::watch`] and [`Store::abandon`] serve blocking reads
//! (see `watch`).

mod hasher;
mod restore;
mod row;
mod schema;
mod tables;
mod txn;
mod watch;

pub use hasher::StateHasher;
pub use restore::Restore;
pub use row::RowKeys;
pub use schema::Schema;
pub use tables::Tables;
pub use txn::{ReadTxn, Savepoint, Store, WriteTxn};
pub use watch::{Wake, WatchSet};

use std::sync::Arc;

/// Immutable, cheaply cloned bytes (keys and objects).
pub type Bytes = Arc<[u8]>;

/// Why a state operation failed: the SDK's own type (the WIT `state-error`), so the host
/// and the native `MemStore` plugin tests run against report the same errors; each
/// message names the table, index or key involved.
pub use fsmhost_guest::StateError;

/// Key ranges are the SDK's types, so the host store and the SDK's native `MemStore` (which
/// plugin tests run against) interpret every range, and page every scan, identically.
pub use fsmhost_guest::{Bound, IndexKeys, KeyRange, cursor};

/// A table's and an index's declared shape are the SDK's types, as a plugin's `describe`
/// reports them; [`Schema`] adds each table's owner.
pub use fsmhost_guest::{IndexSchema, TableSchema};

/// A batch of objects from [`Tables::scan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanBatch {
    /// Objects in key order.
    pub objects: Vec<Bytes>,
    /// Where the next batch starts; `None` when the scan is complete.
    pub cursor: Option<Vec<u8>>,
}

/// Most bytes of objects one scan batch returns (at least one object is always returned).
pub const MAX_BATCH_BYTES: usize = 1 << 20;

#[cfg(test)]
mod tests;
