//! Consul's key/value store as an fsmhost plugin.
//!
//! Tables (Consul's `kvs` and `tombstones`, `agent/consul/state/kvs.go`):
//! - `kvs`: [`Entry`] records; `id` is the key (unique, prefix-capable), `session` the lock
//!   holder (allow-missing).
//! - `tombstones`: [`Tombstone`] records left by deletes, keyed like `kvs`, so that the index
//!   of a prefix never goes backwards after a delete (Consul's graveyard).
//!
//! Commands, each a [`Command`](fsmhost_guest::Command) handle: [`SET`], [`CAS`],
//! [`DELETE`], [`DELETE_CAS`], [`DELETE_TREE`], [`REAP_TOMBSTONES`], [`TXN`]. Queries, each a
//! [`Query`](fsmhost_guest::Query) handle: [`GET`], [`LIST`], [`KEYS`], [`TXN_READ`].
//! Sessions and locks come later; their fields are kept.
//!
//! HTTP (module [`http`]): Consul's `/v1/kv/<key>` and `/v1/txn`.

use fsmhost_guest::http::Route;
use fsmhost_guest::{Edition, Plugin};

mod api;
pub mod http;
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

/// The plugin's version. The `v2` feature builds the next release, which adds the
/// `kvs.flags` index (the upgrade tests install it over this one).
pub const VERSION: &str = if cfg!(feature = "v2") {
    "0.2.0"
} else {
    env!("CARGO_PKG_VERSION")
};

/// The kv plugin.
pub fn plugin() -> Plugin {
    Plugin::new("kv", VERSION, EDITION.name())
        .table(&KVS)
        .table(&TOMBSTONES)
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
        .command(&TXN)
        .query(&GET)
        .query(&LIST)
        .query(&KEYS)
        .query(&TXN_READ)
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
mod tests;
