//! fsmhost: a replicated state machine host whose finite state machine is a set of
//! WebAssembly components.
//!
//! Modules, one concern each (see ARCHITECTURE.md for the map and its boundaries):
//! - [`cli`]: the command line;
//! - [`clock`]: the wall clock, read in one place;
//! - [`codec`]: CBOR in and out;
//! - [`config`]: the agent's configuration file and flags;
//! - [`logging`]: log lines in Consul's shape (text or JSON);
//! - [`metrics`]: the process's metrics, in Consul's JSON or Prometheus' text;
//! - [`server`]: a running server: listeners, forwarding, cluster formation;
//! - [`raft`]: openraft's types, the redb log store, the state machine adapter, the peer client;
//! - [`protocol`]: the server-to-server protocol: every server-port route and its bodies;
//! - [`plugin`]: the wasm runtime: loading, validation, limits, artifact cache, calls;
//! - [`fsm`]: log entries applied in order, queries, blocking queries, state hash;
//! - [`snapshot`]: `state.bin`, raft's snapshot directory, user archives, restore blobs;
//! - [`http_body`]: HTTP bodies, whole or streamed from and to files;
//! - [`membership`]: who the servers are, as the log records them (`NodeInfo`, `LogId`);
//! - [`state`]: the in-memory store of tables and indexes the plugins declare;
//! - [`autopilot`]: server health, failure tolerance, promotion and dead-server cleanup;
//! - [`duration`]: durations in Consul's (Go's) text form;
//! - [`tls`]: TLS on both ports and for outgoing calls (rustls), reloadable;
//! - [`upgrade`]: plugin installs: the rules, the plan, the store rebuilt for the new set.
#![warn(missing_docs)]

pub mod acl;
pub mod autopilot;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod duration;
pub mod fsm;
pub mod http_body;
pub mod logging;
pub mod membership;
pub mod metrics;
pub mod plugin;
pub mod protocol;
pub mod raft;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod tls;
pub mod upgrade;

#[cfg(test)]
mod tidy;
