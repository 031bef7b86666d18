//! Consul's key/value store as an fsmhost plugin.
//!
//! Tables (Consul's `kvs` and `tombstones`, `agent/consul/state/kvs.go`):
//! - `kvs`: [`Entry`] records; `id` is the key (unique, prefix-capable), `session` the lock
//!   holder (allow-missing).
//! - `tombstones`: [`Tombstone`] records left by deletes, keyed like `kvs`, so that the index
//!   of a prefix never goes backwards after a delete (Consul's graveyard).
//! - `lock_delays` (0.2.0): [`LockDelay`] records, the keys that cannot be locked before a
//!   time since the session that held them ended (Consul's lock-delay).
//! - `tombstone_marks` (0.2.0): [`TombstoneMark`] records, when tombstones were made (the
//!   highest index per 30 s of the leader's clock), so that the leader's tick reaps them
//!   after `tombstone_ttl` (module [`gc`], Consul's tombstone GC).
//!
//! It reads the catalog plugin's `sessions` table ([`fsmhost_schema_sessions::SESSIONS`]):
//! a lock is held by a live session (module `locks`).
//!
//! Commands, each a [`Command`](fsmhost_guest::Command) handle: [`SET`], [`CAS`],
//! [`DELETE`], [`DELETE_CAS`], [`DELETE_TREE`], [`REAP_TOMBSTONES`], [`ACQUIRE`],
//! [`RELEASE`], [`TXN`], and [`RELEASE_SESSION`], which the catalog's message
//! [`fsmhost_schema_sessions::RELEASE_SESSION`] runs when a session ends. Queries, each a
//! [`Query`](fsmhost_guest::Query) handle: [`GET`], [`LIST`], [`KEYS`], [`TXN_READ`].
//!
//! HTTP (module [`http`]): Consul's `/v1/kv/<key>` and `/v1/txn`.

use fsmhost_guest::http::Route;
use fsmhost_guest::{Edition, Plugin};

mod api;
pub mod gc;
pub mod http;
mod locks;
mod ops;
mod schema;
pub mod txn;

pub use api::*;
pub(crate) use ops::*;
pub use schema::*;

/// The edition this build is (the `enterprise` cargo feature): the enterprise edition puts
/// every key in a partition and a namespace and reads `?ns=` and `?partition=`.
pub const EDITION: Edition = if cfg!(feature = "enterprise") {
    Edition::Enterprise
} else {
    Edition::Oss
};

/// The plugin's version (0.2.0: locks, and the `lock_delays` table; tombstone GC, and the
/// `tombstone_marks` table). The `v2` feature
/// builds the next release, 0.3.0, which adds the `kvs.flags` index (the upgrade tests
/// install it over this one).
pub const VERSION: &str = if cfg!(feature = "v2") {
    "0.3.0"
} else {
    env!("CARGO_PKG_VERSION")
};

/// The kv plugin.
pub fn plugin() -> Plugin {
    Plugin::new("kv", VERSION, EDITION.name())
        .table(&KVS)
        .table(&TOMBSTONES)
        .table(&LOCK_DELAYS)
        .table(&TOMBSTONE_MARKS)
        .reads(&fsmhost_schema_sessions::SESSIONS)
        .migration(KVS.name(), 1, |e: Entry| Ok(vec![KVS.migrated(&e)?]))
        .migration(TOMBSTONES.name(), 1, |t: Tombstone| {
            Ok(vec![TOMBSTONES.migrated(&t)?])
        })
        .command(&SET)
        .command(&CAS)
        .command(&DELETE)
        .command(&DELETE_CAS)
        .command(&DELETE_TREE)
        .command(&REAP_TOMBSTONES)
        .command(&ACQUIRE)
        .command(&RELEASE)
        .command(&RELEASE_SESSION)
        .command(&TXN)
        .query(&GET)
        .query(&LIST)
        .query(&KEYS)
        .query(&TXN_READ)
        .tick(gc::tick)
        .route(
            Route::get(http::KV_PATH).prefix(),
            http::route_get,
            http::render_get,
        )
        .route(
            Route::put(http::KV_PATH).prefix(),
            http::route_put,
            http::render_bool,
        )
        .route(
            Route::delete(http::KV_PATH).prefix(),
            http::route_delete,
            http::render_bool,
        )
        .route(Route::put("/v1/txn"), http::route_txn, http::render_txn)
}

fsmhost_guest::export_plugin!(plugin);

#[cfg(test)]
mod gc_tests;
#[cfg(test)]
mod lock_tests;
#[cfg(test)]
mod tests;
