//! Raft: the replicated log that feeds the FSM on every server in the same order.
//!
//! Owns: the openraft type configuration (declared once, here), what a log entry carries
//! ([`Request`]) and what applying it returns ([`Response`]), the redb log store
//! ([`log_store`]), the state machine adapter ([`state_machine`]), its files ([`depot`]:
//! snapshots and blobs) and the server-to-server client ([`network`]).
//!
//! Boundaries: nothing here knows HTTP routes for operators or plugins' meaning; the
//! `server` module drives this one. openraft treats any storage error as fatal to the node,
//! so the log store reports few, loud errors that name the file.

// openraft's storage traits fix the error type (`StorageError`, 224 bytes); helpers that
// build it return it as the traits do.
#![allow(clippy::result_large_err)]

pub mod client;
pub mod depot;
pub mod guard;
pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod verifier;

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::fsm::{self, Outcome};
pub use crate::membership::{LogId, NodeInfo, StoredMembership};

openraft::declare_raft_types!(
    /// The raft types of fsmhost.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::snapshot::SnapshotFile,
);

/// The raft handle of one server.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry as stored.
pub type LogEntry = openraft::Entry<TypeConfig>;
/// A storage error as openraft wants it.
pub type StorageError = openraft::StorageError<u64>;

/// What a log entry asks the state machine to do (serialized in CBOR).
///
/// An enum so that later host entries (a restore, a plugin install) fit beside plugin
/// commands without a format change; unknown variants fail to decode loudly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A plugin command: `{plugin, command, payload, leader timestamp}`.
    Plugin(fsm::Entry),
    /// Plugin commands the leader received at the same time, applied in this order, each as
    /// its own transaction at its own FSM index (see [`state_machine`]). One log entry, so
    /// one fsync and one replication round for all of them.
    Batch(Vec<fsm::Entry>),
    /// A user restore: every server replaces its whole state with the `state.bin` whose
    /// SHA-256 this names, at this entry's index (see `state_machine`).
    Restore(RestoreEntry),
    /// A write of the autopilot configuration (compare-and-set when it says so); takes
    /// no FSM index: its `ModifyIndex` is the entry's raft index.
    Autopilot(crate::autopilot::ConfigUpdate),
    /// A plugin install: every server switches to the component whose SHA-256 this names
    /// at this entry's index (see `state_machine`); takes no FSM index.
    Install(InstallEntry),
    /// A change to the ACL state; takes no FSM index (its items' indexes are the entry's
    /// raft index).
    Acl(crate::acl::store::AclOp),
    /// The start of a fresh cluster's history: takes FSM index 1 when nothing took it yet
    /// (a no-op otherwise). The leader proposes it before the first plugin command, so that
    /// command's index (2) is above the 1 any read of the empty store reported (Consul's
    /// minimum), and a write's index is always above every index read before it.
    Start,
    /// A log verification checkpoint ([`verifier`]): the checksum of a range of the log as
    /// the leader read it; every server compares its own. Takes no FSM index.
    Checkpoint(verifier::Checkpoint),
}

/// What an install entry carries: the component, and who has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallEntry {
    /// The plugin's name.
    pub name: String,
    /// Its new version.
    pub version: String,
    /// SHA-256 (hex) of the component.
    pub sha256: String,
    /// Server address of the server that proposed it (it holds the blob).
    pub origin: String,
}

/// What a restore entry carries: the blob to restore, and who has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreEntry {
    /// SHA-256 (hex) of the `state.bin` to restore.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Server address of the server that proposed it (it holds the blob).
    pub origin: String,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Start => write!(f, "start"),
            Request::Plugin(e) => {
                write!(f, "{}/{} ({} bytes)", e.plugin, e.command, e.payload.len())
            }
            Request::Batch(es) => write!(f, "batch of {} commands", es.len()),
            Request::Restore(r) => write!(f, "restore of {} ({} bytes)", r.sha256, r.size),
            Request::Autopilot(_) => write!(f, "autopilot configuration"),
            Request::Install(i) => write!(f, "install of plugin {} {}", i.name, i.version),
            Request::Acl(_) => write!(f, "ACL change"),
            Request::Checkpoint(c) => write!(f, "log checkpoint of {}..={}", c.from, c.to),
        }
    }
}

/// What applying one log entry returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Membership changes and blank entries: nothing to report.
    None,
    /// One outcome per plugin command, in the entry's order.
    Applied(Vec<Outcome>),
    /// A restore replaced the state; the FSM index it was applied at.
    Restored(u64),
    /// An autopilot configuration write: whether it was stored (false: its
    /// compare-and-set failed).
    AutopilotSet(bool),
    /// A plugin install: what it changed, or why it was refused.
    Installed(Result<crate::upgrade::Plan, String>),
    /// An ACL change: what was stored, or why it was refused.
    Acl(Result<crate::acl::store::AclAnswer, String>),
}
