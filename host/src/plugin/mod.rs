//! The plugin runtime: a wasmtime engine configured for determinism, loading and validating
//! components, per-call limits, the compiled-artifact cache, and calls into plugins.
//!
//! Owns: everything that touches wasmtime. Nothing outside this module sees a wasmtime type.
//!
//! Determinism (the same log must give byte-identical state on every server):
//! - fuel, never epochs, bounds a call; the same call runs out at the same instruction on
//!   every server;
//! - NaN canonicalization on; threads and relaxed SIMD off;
//! - a per-store memory cap; a refused `memory.grow` is reported as memory exhaustion;
//! - the component imports nothing but `fsmhost:plugin` (checked at load, before anything
//!   runs), so it has no clock, randomness or I/O.
//!
//! Isolation: a query, or a call that computes index keys, gets a fresh instance from one
//! [`wasmtime::component::InstancePre`] (about 20 microseconds, most of it resetting the
//! memory slot). The commands of one log entry share one instance per plugin
//! ([`LoadedPlugin::apply_kept`]): every server applies the same entries in the same order,
//! so a command's fuel use, which depends on the heap and statics the earlier commands of
//! its entry left, is still a function of the log. A trap or a used-up budget retires the
//! instance, and the next entry starts on a fresh one, so a trap never reaches past its
//! own command. An `apply` runs on the write transaction's tables, lent to the instance
//! for the call, under a savepoint that is rolled back unless the command returns `ok`
//! (the store's undo journal: a failed command costs what it wrote). The HTTP
//! pair `route` and `render` are pure functions of their arguments that run outside any
//! transaction and outside the log (a route's command is fixed before it is proposed), so
//! they run on a few kept-warm instances: a trap, an exhausted budget or a grown memory
//! retires the instance.
//!
//! Index keys: instances are not re-entrant, so the host never calls `index` while `apply`
//! runs. The guest SDK computes keys inside the guest and passes them with `insert`; the
//! same indexer code serves the `index` export used for restores and index rebuilds.

mod cache;
mod call;
mod convert;
mod engine;
mod error;
mod host;
mod load;
mod routes;
mod set;
mod validate;

pub use call::Instance;
pub use engine::{Runtime, RuntimeConfig};
pub use error::{CallError, ErrorKind, LoadError};
pub use host::Sent;
pub use load::{Description, LoadedPlugin, Migration};
pub use routes::{
    AclAccess, AclNeed, AclResource, HttpAction, HttpPlan, HttpRequest, HttpResponse, HttpRoute,
    Permits,
};
pub use set::PluginSet;

/// The version of the `fsmhost:plugin` WIT package this host serves.
pub const CONTRACT_VERSION: &str = "0.5.0";

/// Most messages one command and the messages it causes may send (`state.send`).
pub const MAX_MESSAGES: usize = fsmhost_guest::MAX_MESSAGES;
/// How deep messages sent by messages may go.
pub const MAX_MESSAGE_DEPTH: usize = fsmhost_guest::MAX_MESSAGE_DEPTH;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
                world: "plugin",
        // Imports may trap: an exhausted host-work or write budget ends the call at once.
        imports: { default: trappable },
    });
}

use bindings::exports::fsmhost::plugin::guest as wit_guest;
use bindings::fsmhost::plugin::types as wit;

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The plugins built into the binary (the default plugin set): `(name, component bytes)`.
pub fn bundled() -> &'static [(&'static str, &'static [u8])] {
    BUNDLED
}

/// Per-call limits. They decide whether a command fails, so every server of a cluster must
/// run with the same ones (a later issue replicates them through the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per call (about one unit per wasm instruction). Host work done for the plugin
    /// (state calls: entries visited, bytes copied) draws on a second budget of the same size.
    pub fuel: u64,
    /// Most bytes of linear memory an instance may grow to.
    pub memory_bytes: usize,
    /// Most bytes (objects and keys) one call may insert, bounding the host memory a single
    /// command can make the store allocate.
    pub write_bytes: u64,
}

impl Default for Limits {
    /// 1e9 fuel (about half a second of wasm), 256 MiB of memory, 64 MiB of writes.
    fn default() -> Self {
        Limits {
            fuel: 1_000_000_000,
            memory_bytes: 256 << 20,
            write_bytes: 64 << 20,
        }
    }
}
