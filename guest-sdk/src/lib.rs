//! # fsmhost-guest: write FSM plugins for fsmhost
//!
//! An fsmhost plugin is a WebAssembly component that owns some tables of the replicated state
//! store and the commands that change them. The host runs every command on every server in
//! raft log order; the plugin declares its tables and indexes, computes index keys with its
//! own indexer functions, and handles typed commands and queries. This crate is everything a
//! plugin author depends on:
//!
//! - [`Table`] and [`Index`]: tables of serde records with indexes declared in Consul's
//!   `indexer.go` style (from-object, from-args, prefix-from-args; unique or not,
//!   multi-valued, allow-missing, compound keys via [`Key`], prefix-capable);
//! - [`Plugin`]: the plugin's identity and its typed commands and queries (CBOR on the wire),
//!   each declared once as a [`Command`] or [`Query`] handle: a `static` holding the name and
//!   the handler, which registration, HTTP routers and tests name instead of a string;
//! - [`export_plugin!`]: exports the plugin as the component's `fsmhost:plugin/guest`;
//! - [`json`]: JSON request bodies decoded as Consul decodes them (field names in any
//!   case, `null` as absent); routers use [`http::json_body`];
//! - [`Harness`] and [`MemStore`]: a native, in-memory transaction with the host's semantics,
//!   so a plugin's unit tests run with plain `cargo test`, without wasm.
//!
//! ## Rules a plugin lives by
//!
//! - **Determinism.** The only inputs are the payload, [`Ctx`] (raft index and the leader's
//!   timestamp) and what the transaction returns. No clock, randomness or I/O: the component
//!   is built for `wasm32-unknown-unknown` and imports nothing but `fsmhost:plugin`.
//! - **All or nothing.** A command returning `Err`, trapping (a panic) or running out of
//!   fuel or memory leaves no write behind.
//! - **No state between calls.** Keep statics out of your logic. Every query runs in a fresh
//!   instance. The commands of one log entry (the leader batches concurrent writes into
//!   one entry) run one after another on one instance, so a static a command changes is
//!   seen by the next command of the same entry. That is deterministic, since every server
//!   applies the same entries, but it is not the state: only the tables survive an entry.
//!   HTTP routers and renderers ([`http`]) run on instances the host keeps warm, so their
//!   statics may or may not survive: keep them pure.
//! - **Index keys are computed in the guest.** [`Table::insert`] sends the keys with the
//!   object; the `index` export computes the same keys for the host (restores, rebuilds).
//!
//! ## A worked example
//!
//! A `users` table with a unique, prefix-capable `id`, a unique `email` that may be missing,
//! and a multi-valued `group` index; a `register` command and a `by-group` query.
//!
//! ```
//! use fsmhost_guest::{Command, Ctx, Error, Harness, Index, Key, Plugin, Query, Table, Txn};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
//! pub struct User {
//!     pub name: String,
//!     pub email: Option<String>,
//!     pub groups: Vec<String>,
//!     pub create_index: u64,
//! }
//!
//! // The table's name is written once: each index refers to its table.
//! static USERS: Table<User> = Table::new("users", &[&USERS_ID, &USERS_EMAIL, &USERS_GROUP]);
//!
//! static USERS_ID: Index<User, String> = Index::new(
//!     &USERS, "id",
//!     |u: &User, keys| keys.push(Key::new().string(&u.name)),
//!     |name: &String| Key::new().string(name).build(),
//! )
//! .unique()
//! .prefix(|p: &String| Key::new().raw(p.as_bytes()).build());
//!
//! static USERS_EMAIL: Index<User, String> = Index::new(
//!     &USERS, "email",
//!     |u: &User, keys| if let Some(e) = &u.email { keys.push(Key::new().string_lower(e)) },
//!     |email: &String| Key::new().string_lower(email).build(),
//! )
//! .unique()
//! .allow_missing();
//!
//! static USERS_GROUP: Index<User, String> = Index::new(
//!     &USERS, "group",
//!     |u: &User, keys| for g in &u.groups { keys.push(Key::new().string(g)) },
//!     |g: &String| Key::new().string(g).build(),
//! )
//! .multi()
//! .allow_missing();
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct Register { pub name: String, pub email: Option<String>, pub groups: Vec<String> }
//!
//! /// Creates a user; `false` if the name is taken.
//! fn register(tx: &mut dyn Txn, ctx: &Ctx, req: Register) -> Result<bool, Error> {
//!     if USERS_ID.get(tx, &req.name)?.is_some() {
//!         return Ok(false);
//!     }
//!     let user = User { name: req.name, email: req.email, groups: req.groups, create_index: ctx.index };
//!     USERS.insert(tx, &user)?; // a duplicate email fails here and the command writes nothing
//!     Ok(true)
//! }
//!
//! fn by_group(tx: &dyn Txn, group: String) -> Result<Vec<User>, Error> {
//!     USERS_GROUP.iter(tx, &group).collect()
//! }
//!
//! // Each command and query is named once; everything else uses the handle.
//! pub static REGISTER: Command<Register, bool> = Command::new("register", register);
//! pub static BY_GROUP: Query<String, Vec<User>> = Query::new("by-group", by_group);
//!
//! pub fn plugin() -> Plugin {
//!     Plugin::new("users", "0.1.0", "oss")
//!         .table(&USERS)
//!         .command(&REGISTER)
//!         .query(&BY_GROUP)
//! }
//!
//! // In the plugin crate (crate-type = ["cdylib", "rlib"]); emits the exports on wasm32 only.
//! fsmhost_guest::export_plugin!(plugin);
//!
//! // A unit test, natively:
//! let mut h = Harness::new(plugin()).unwrap();
//! let ok = h.run(&REGISTER, &Register {
//!     name: "ada".into(), email: Some("ada@example.com".into()), groups: vec!["ops".into()],
//! }).unwrap();
//! assert!(ok);
//! let err = h.run(&REGISTER, &Register {
//!     name: "bob".into(), email: Some("ADA@example.com".into()), groups: vec![],
//! }).unwrap_err();
//! assert!(err.message.contains("unique index violation"), "{err}");
//! let ops = h.ask(&BY_GROUP, &"ops".to_string()).unwrap();
//! assert_eq!(ops.len(), 1);
//! assert_eq!(h.store().len("users"), 1); // bob's failed command left nothing behind
//! ```
//!
//! ## Releases and migrations
//!
//! A new release of a plugin is installed on a running cluster through the log
//! (`fsmhost plugin install`). New indexes and new tables need nothing: the host rebuilds
//! indexes with the new indexers. A release that stores a table's objects differently
//! raises the table's [`Table::layout`] and declares a migration from the old layout with
//! [`Plugin::migration`]: a function from the old type to the objects to store instead
//! ([`Table::migrated`]), possibly in other tables. Dropping a table also takes a
//! migration (of the dropped table). The host refuses an install that changes a layout or
//! drops a table without one, and any install whose migration fails for an object.
//!
//! ## Compact tables
//!
//! Objects are CBOR with their field names unless the table is declared
//! [`Table::compact`]: then each object is an array of its fields' values in declaration
//! order, a third smaller for small records and cheaper to decode (the kv plugin's entries
//! went from 194 to 133 bytes). The field order is then part of the layout. Reading accepts
//! both forms, so switching a table to compact is a new layout whose migration only
//! re-stores each object (see the kv plugin's `kvs` migration).
//!
//! ## Building the component
//!
//! Inside the fsmhost workspace, `cargo build` does it: the host's build script compiles every
//! crate under `plugins/` for `wasm32-unknown-unknown` and wraps it as a component. Outside,
//! build the crate for `wasm32-unknown-unknown` and wrap the `.wasm` with the `wit-component`
//! crate (or `wasm-tools component new`).
#![warn(missing_docs)]

extern crate self as fsmhost_guest;

pub mod acl;
mod cbor;
mod compact;
mod error;
pub mod http;
pub mod json;
mod key;
mod mem;
mod plugin;
mod schema;
pub mod tenancy;
pub mod tick;
mod txn;
mod wasm;

pub use cbor::{from_cbor, to_cbor};
pub use error::{Error, ErrorKind};
pub use key::{DisplayKey, Key, prefix_successor};
pub use mem::{Harness, MAX_MESSAGE_DEPTH, MAX_MESSAGES, MemStore, Sent};
pub use plugin::{
    Command, Ctx, Description, Message, MessageTarget, Migration, Plugin, Query, TableRead,
};
pub use schema::{
    AnyIndex, AnyTable, Index, IndexSchema, Iter, Keys, Migrated, SCAN_BATCH, Stored, Table,
    TableSchema,
};
/// Re-exported so plugins can mark byte fields `#[serde(with = "fsmhost_guest::serde_bytes")]`.
pub use serde_bytes;
pub use tenancy::{Edition, Tenancy};
pub use tick::{Proposal, ServerInfo, TickCtx};
pub use txn::{Bound, IndexKeys, KeyRange, ScanBatch, StateError, Txn, cursor};

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Detailed.
    Debug,
    /// Normal.
    Info,
    /// Something odd.
    Warn,
    /// Something failed.
    Error,
}

/// Writes a line to the host's log, tagged with the plugin's name.
pub fn log(level: LogLevel, message: &str) {
    wasm::log(level, message)
}

/// Used by [`export_plugin!`]; not part of the public API.
#[doc(hidden)]
pub mod __rt {
    pub use crate::wasm::*;
}
