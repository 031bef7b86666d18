//! The server-to-server protocol: every route of the server port (`ports.server`), with
//! what it takes and what it answers, in one table ([`Rpc`]).
//!
//! Owns: the paths, the body types, and the rule that every body is CBOR both ways and
//! every answer the CBOR of a `Result` whose error the caller understands (openraft's own
//! errors for raft RPCs, [`OpError`] for the others). `raft::network` (the client) and
//! `server::rpc` (the dispatcher, one arm per [`Rpc`]) both name routes only through it.
//!
//! Only servers talk to this port. A request is a `POST` to [`Rpc::path`]; the raft RPCs
//! carry `?target=<hex id>` ([`TARGET_PARAM`]) and are refused (421) by a server with
//! another id.

use openraft::{LogId, SnapshotMeta, Vote};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;

use crate::fsm::{Failure, FailureKind, FsmError, PluginRefusal};
use crate::membership::NodeInfo;
use crate::upgrade::Plan;

/// A route of the server port: its path, and (in its doc) its body and answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rpc {
    /// openraft's AppendEntries: body `AppendEntriesRequest`, answer its `Result`.
    Append,
    /// openraft's RequestVote: body `VoteRequest`, answer its `Result`.
    Vote,
    /// A pre-vote: body [`PreVoteRequest`], answer [`PreVoteReply`]; nothing is stored.
    PreVote,
    /// openraft's InstallSnapshot, one chunk per call (kept for openraft's chunked
    /// transport, which fsmhost's own senders do not use).
    Snapshot,
    /// A whole snapshot streamed in one request: the body is `state.bin`, the
    /// [`SNAPSHOT_HEAD`] header its [`SnapshotHead`]; answer openraft's `Result`, or 422
    /// when the snapshot is refused before raft sees it.
    SnapshotStream,
    /// A blob by hash: body the SHA-256 (CBOR text); answer the blob's bytes, raw.
    Blob,
    /// A blob sent ahead of the entry that names it: body [`BlobPush`].
    BlobPush,
    /// A write forwarded to the leader: body [`ApplyRequest`], answer
    /// `Result<Applied, OpError>`.
    Apply,
    /// A read forwarded to the leader: body [`QueryRequest`], answer
    /// `Result<QueryReply, OpError>`.
    Query,
    /// The join handshake: body [`JoinRequest`], answer [`JoinReply`].
    Join,
    /// A request to the leader to add a server: body [`AddServer`], answer
    /// `Result<(), OpError>`.
    AddServer,
    /// A request to the leader to remove a server: body [`RemoveServer`], answer
    /// `Result<(), OpError>`.
    RemoveServer,
    /// The leader's autopilot probe: no body, answer [`ProbeReply`].
    AutopilotProbe,
    /// The autopilot state, asked of the leader: answer
    /// `Result<autopilot::State, OpError>`.
    AutopilotState,
    /// The autopilot configuration, read on the leader: answer
    /// `Result<Option<autopilot::StoredConfig>, OpError>`.
    AutopilotConfigGet,
    /// An autopilot configuration write on the leader: body `autopilot::ConfigUpdate`,
    /// answer `Result<bool, OpError>` (false: the compare-and-set failed).
    AutopilotConfigSet,
    /// A plugin install forwarded to the leader: body [`InstallRequest`], answer
    /// `Result<InstallReport, OpError>`.
    Install,
    /// A user snapshot taken by the leader for another server: answer the archive, raw,
    /// with `X-Consul-Index`.
    SnapshotSave,
    /// A user restore forwarded to the leader: body the archive, raw; answer
    /// `Result<u64, OpError>` (the FSM index restored at).
    SnapshotRestore,
    /// An ACL change forwarded to the leader (the forwarding server checked the caller's
    /// token): body `acl::store::AclOp`, answer `Result<AclAnswer, OpError>`.
    AclWrite,
}

impl Rpc {
    /// Every route.
    pub const ALL: [Rpc; 20] = [
        Rpc::Append,
        Rpc::Vote,
        Rpc::PreVote,
        Rpc::Snapshot,
        Rpc::SnapshotStream,
        Rpc::Blob,
        Rpc::BlobPush,
        Rpc::Apply,
        Rpc::Query,
        Rpc::Join,
        Rpc::AddServer,
        Rpc::RemoveServer,
        Rpc::AutopilotProbe,
        Rpc::AutopilotState,
        Rpc::AutopilotConfigGet,
        Rpc::AutopilotConfigSet,
        Rpc::Install,
        Rpc::SnapshotSave,
        Rpc::SnapshotRestore,
        Rpc::AclWrite,
    ];

    /// The route's path.
    pub const fn path(self) -> &'static str {
        match self {
            Rpc::Append => "/v1/internal/raft/append",
            Rpc::Vote => "/v1/internal/raft/vote",
            Rpc::PreVote => "/v1/internal/raft/pre-vote",
            Rpc::Snapshot => "/v1/internal/raft/snapshot",
            Rpc::SnapshotStream => "/v1/internal/raft/snapshot-stream",
            Rpc::Blob => "/v1/internal/blob",
            Rpc::BlobPush => "/v1/internal/blob/push",
            Rpc::Apply => "/v1/internal/apply",
            Rpc::Query => "/v1/internal/query",
            Rpc::Join => "/v1/internal/join",
            Rpc::AddServer => "/v1/internal/add-server",
            Rpc::RemoveServer => "/v1/internal/remove-server",
            Rpc::AutopilotProbe => "/v1/internal/autopilot/probe",
            Rpc::AutopilotState => "/v1/internal/autopilot/state",
            Rpc::AutopilotConfigGet => "/v1/internal/autopilot/config/get",
            Rpc::AutopilotConfigSet => "/v1/internal/autopilot/config/set",
            Rpc::Install => "/v1/internal/plugins/install",
            Rpc::SnapshotSave => "/v1/internal/snapshot/save",
            Rpc::SnapshotRestore => "/v1/internal/snapshot/restore",
            Rpc::AclWrite => "/v1/internal/acl/write",
        }
    }

    /// The route at `path`, if any.
    pub fn from_path(path: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|r| r.path() == path)
    }

    /// Whether the route is a raft RPC, addressed to one server id ([`TARGET_PARAM`]).
    pub const fn is_raft(self) -> bool {
        matches!(
            self,
            Rpc::Append | Rpc::Vote | Rpc::PreVote | Rpc::Snapshot | Rpc::SnapshotStream
        )
    }
}

/// The header carrying a streamed snapshot's [`SnapshotHead`] (base64 of its CBOR).
pub const SNAPSHOT_HEAD: &str = "x-fsmhost-snapshot-head";

/// What precedes a streamed snapshot's bytes ([`Rpc::SnapshotStream`]), in the
/// [`SNAPSHOT_HEAD`] header.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotHead {
    /// The leader's vote.
    pub vote: Vote<u64>,
    /// The snapshot's raft meta.
    pub meta: SnapshotMeta<u64, NodeInfo>,
    /// The CRC of `state.bin` from the sender's `meta.json`, checked by the receiver.
    pub crc: Option<String>,
}

/// A server's question before it starts an election ([`Rpc::PreVote`], etcd's PreVote):
/// would the receiver vote for it now? Asking changes nothing on either side, so a server
/// that cannot reach a quorum never raises its term and cannot disrupt a healthy leader
/// when it returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreVoteRequest {
    /// The asking server.
    pub candidate: u64,
    /// The term it would campaign in (its current term plus one).
    pub term: u64,
    /// Its last log id.
    pub last_log_id: Option<LogId<u64>>,
}

/// The answer to a [`PreVoteRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreVoteReply {
    /// Whether the receiver would vote for the candidate now.
    pub granted: bool,
    /// The receiver's current term.
    pub term: u64,
    /// Why it would not (empty when granted).
    pub reason: String,
}

/// The query parameter naming the server a raft RPC is for (hex id).
pub const TARGET_PARAM: &str = "target";

/// A blob sent ahead of its entry; the receiver stores it only if its SHA-256 matches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobPush {
    /// The blob's SHA-256, hex.
    pub sha256: String,
    /// Its bytes.
    pub bytes: ByteBuf,
}

/// A write: a plugin command with its payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// The plugin.
    pub plugin: String,
    /// The command.
    pub command: String,
    /// The payload (CBOR).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// A committed write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Applied {
    /// The FSM index the command was applied at (`X-Consul-Index`).
    pub index: u64,
    /// The raft log index of the entry that carried it.
    pub raft_index: u64,
    /// The result bytes (CBOR), or the command's failure.
    pub result: Result<ByteBuf, Failure>,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// The leader's state, under its lease.
    Default,
    /// The leader's state after a read-index round.
    Consistent,
    /// This server's state, however old.
    Stale,
}

/// A read: a plugin query, its arguments, and blocking parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryRequest {
    /// The plugin.
    pub plugin: String,
    /// The query.
    pub query: String,
    /// The arguments (CBOR).
    #[serde(with = "serde_bytes")]
    pub args: Vec<u8>,
    /// Freshness.
    pub consistency: Consistency,
    /// Block until the result's index exceeds this (0: answer at once).
    pub min_index: u64,
    /// How long to block at most, in ms.
    pub wait_ms: u64,
}

/// A read's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryReply {
    /// The result (CBOR).
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// The index of the data read.
    pub index: u64,
}

/// Why a write or read failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum OpError {
    /// This server is not the leader (used between servers; clients never see it).
    #[error("this server is not the leader")]
    NotLeader,
    /// The request failed: what kind of failure, and a message naming the problem.
    #[error("{message}")]
    Failed {
        /// What kind of failure.
        kind: FailureKind,
        /// The message.
        message: String,
    },
    /// The plugin refused a query: the kind and message a client gets, and the plugin's
    /// own error for its `render`.
    #[error("{message}")]
    Refused {
        /// What kind of failure.
        kind: FailureKind,
        /// The message.
        message: String,
        /// The plugin's error.
        refusal: PluginRefusal,
    },
}

impl OpError {
    /// A failure of `kind` with `message`.
    pub fn failed(kind: FailureKind, message: impl Into<String>) -> OpError {
        OpError::Failed {
            kind,
            message: message.into(),
        }
    }
}

impl From<Failure> for OpError {
    /// A command's failure as the client's error (the plugin's own error stays with the
    /// outcome, for its `render`).
    fn from(f: Failure) -> Self {
        OpError::failed(f.kind, f.message)
    }
}

impl From<FsmError> for OpError {
    fn from(e: FsmError) -> Self {
        match e.refusal() {
            Some(refusal) => OpError::Refused {
                kind: e.kind(),
                message: e.to_string(),
                refusal,
            },
            None => OpError::failed(e.kind(), e.to_string()),
        }
    }
}

/// A server introducing itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// Its raft id.
    pub id: u64,
    /// Its addresses.
    pub info: NodeInfo,
}

/// The answer: what the other server knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinReply {
    /// The answering server's id.
    pub id: u64,
    /// Its addresses.
    pub info: NodeInfo,
    /// Whether it is part of a cluster (has a membership).
    pub initialized: bool,
    /// Every server it has heard of.
    pub known: BTreeMap<u64, NodeInfo>,
    /// The leader it follows, if any.
    pub leader: Option<(u64, NodeInfo)>,
}

/// A request to the leader to make a server a voter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddServer {
    /// Its raft id.
    pub id: u64,
    /// Its addresses.
    pub info: NodeInfo,
}

/// A request to the leader to remove a server from the membership.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveServer {
    /// Its raft id.
    pub id: u64,
}

/// What a probed server says of itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeReply {
    /// Its raft id (another id at a configured server's address means that server is gone).
    pub id: u64,
    /// The fsmhost version it runs.
    pub version: String,
}

/// An install request: the component and whether to only report what it would do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstallRequest {
    /// The component's bytes.
    pub component: ByteBuf,
    /// Check and report only; commit nothing.
    pub dry_run: bool,
}

/// What an install did (or, for a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallReport {
    /// The plan: plugin, versions, hash, every table's change.
    pub plan: Plan,
    /// The raft index every server switched at (0 for a dry run).
    pub raft_index: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The other servers that had the component before the install entry was committed
    /// (those that did not fetch it when they apply the entry).
    pub copied_to: usize,
    /// How many other servers the cluster has.
    pub others: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_its_own_path_and_is_found_by_it() {
        let mut paths: Vec<&str> = Rpc::ALL.iter().map(|r| r.path()).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), Rpc::ALL.len(), "two routes share a path");
        for r in Rpc::ALL {
            assert_eq!(Rpc::from_path(r.path()), Some(r));
            assert!(r.path().starts_with("/v1/internal/"), "{r:?}");
        }
        assert_eq!(Rpc::from_path("/v1/internal/nothing"), None);
    }
}
