//! Who the servers of a cluster are, as the raft log records them: each server's
//! [`NodeInfo`], the membership stored with the log, and the log position ([`LogId`]) it
//! is recorded at.
//!
//! Owns: these plain types, below both `raft` (which replicates them) and `snapshot`
//! (whose headers record them), so that neither reaches into the other for them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A log id (term, leader, index).
pub type LogId = openraft::LogId<u64>;
/// Membership as stored with the log.
pub type StoredMembership = openraft::StoredMembership<u64, NodeInfo>;

/// What servers know about each other: stored in the raft membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name (`node_name`).
    pub name: String,
    /// Server RPC address, `host:port` (`ports.server`): raft traffic and forwarding.
    pub rpc_addr: String,
    /// HTTP API address, `host:port` (`ports.http`).
    pub http_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.rpc_addr)
    }
}
