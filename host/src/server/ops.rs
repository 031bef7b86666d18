//! Writes and reads, done the way the leader does them, or forwarded to it.
//!
//! Owns: the forwarding rules. A write is applied through the leader's raft log; a server
//! that is not the leader forwards it over the server port and retries while the outcome
//! is certain to be "not applied" (no leader yet, the leader moved, the leader could not be
//! reached), for up to [`HOLD`] (Consul's `rpc_hold_timeout`). Once a request may have
//! reached a leader, a lost answer is reported as such, never retried behind the client's
//! back.
//!
//! Reads: `stale` runs on this server; `default` runs on the leader while its lease holds
//! (a quorum acknowledged it within 90% of the election timeout), else after a read-index
//! round; `consistent` always after a read-index round (`ensure_linearizable`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::{Duration, Instant};

use super::Node;
use crate::fsm::{self, FsmError};
use crate::raft::Failure;
use crate::raft::network::CallFailure;
use serde_bytes::ByteBuf;

/// How long a request waits for a leader before failing.
pub const HOLD: Duration = Duration::from_secs(7);
/// Path of a forwarded write.
pub const PATH_APPLY: &str = "/v1/internal/apply";
/// Path of a forwarded read.
pub const PATH_QUERY: &str = "/v1/internal/query";

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
    /// The request failed: an HTTP status and a message.
    #[error("{message}")]
    Failed {
        /// The status.
        status: u16,
        /// The message.
        message: String,
    },
    /// The plugin refused a query: the status and message a client gets, and the plugin's
    /// own error for its `render`.
    #[error("{message}")]
    Refused {
        /// The status.
        status: u16,
        /// The message.
        message: String,
        /// The plugin's error.
        refusal: crate::raft::PluginRefusal,
    },
}

impl From<OpError> for super::web::Refusal {
    fn from(e: OpError) -> Self {
        use hyper::StatusCode;
        match e {
            OpError::NotLeader => Self::new(StatusCode::SERVICE_UNAVAILABLE, "no cluster leader"),
            OpError::Failed { status, message }
            | OpError::Refused {
                status, message, ..
            } => Self::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                message,
            ),
        }
    }
}

fn failed(status: u16, message: impl Into<String>) -> OpError {
    OpError::Failed {
        status,
        message: message.into(),
    }
}

impl From<FsmError> for OpError {
    fn from(e: FsmError) -> Self {
        match e.refusal() {
            Some(refusal) => OpError::Refused {
                status: e.http_status(),
                message: e.to_string(),
                refusal,
            },
            None => failed(e.http_status(), e.to_string()),
        }
    }
}

/// Refuses a request naming an unknown plugin or command before it reaches the log.
/// Returns the version of the plugin in effect, which the entry records.
fn check_command(node: &Node, plugin: &str, command: &str) -> Result<String, OpError> {
    let plugins = node.fsm.plugins();
    let p = plugins
        .get(plugin)
        .ok_or_else(|| failed(404, format!("no plugin named {plugin} is loaded")))?;
    if !p.description().commands.iter().any(|c| c == command) {
        return Err(failed(
            404,
            format!("plugin {plugin} has no command {command}"),
        ));
    }
    Ok(p.description().version.clone())
}

async fn wait_for_change(node: &Node, deadline: Instant) {
    let mut metrics = node.raft.metrics();
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), metrics.changed()).await;
}

/// Applies a write on this server, which must be the leader (through its proposer, which
/// batches concurrent writes into one log entry).
pub async fn apply_local(node: &Node, req: &ApplyRequest) -> Result<Applied, OpError> {
    let version = check_command(node, &req.plugin, &req.command)?;
    let entry = fsm::Entry {
        plugin: req.plugin.clone(),
        command: req.command.clone(),
        payload: req.payload.clone(),
        timestamp_ms: super::now_ms(),
        version: Some(version),
    };
    node.batcher.propose(entry).await
}

/// Runs `local` if this server is the leader, or sends `req` to the leader's `path`;
/// waits for a leader and retries while the request surely was not carried out, up to
/// [`HOLD`]. `timeout` bounds one forwarded call.
pub async fn through_leader<Req, Resp, F, Fut>(
    node: &Node,
    path: &str,
    req: &Req,
    timeout: Duration,
    local: F,
) -> Result<Resp, OpError>
where
    Req: Serialize,
    Resp: DeserializeOwned,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Resp, OpError>>,
{
    let deadline = Instant::now() + HOLD;
    loop {
        match node.leader() {
            Some((id, _)) if id == node.id => match local().await {
                Err(OpError::NotLeader) => {}
                other => return other,
            },
            Some((_, leader)) => {
                let answer: Result<Result<Resp, OpError>, CallFailure> =
                    node.client.call(&leader.rpc_addr, path, req, timeout).await;
                match answer {
                    Ok(Err(OpError::NotLeader)) | Err(CallFailure::Unreachable { .. }) => {}
                    Ok(result) => return result,
                    Err(f) => {
                        return Err(failed(
                            503,
                            format!(
                                "forwarding to the leader {}: {f}; the request may or may not \
                                 have been carried out",
                                leader.name
                            ),
                        ));
                    }
                }
            }
            None => {}
        }
        if Instant::now() >= deadline {
            return Err(failed(
                503,
                format!("no cluster leader after {HOLD:?}; is a quorum of servers up?"),
            ));
        }
        wait_for_change(node, deadline).await;
    }
}

/// Writes a host entry (not a plugin command) on this server, which must lead; the
/// entry's response. Not leading is [`OpError::NotLeader`], so that a caller going
/// [`through_leader`] retries on the new leader.
pub async fn write_host_entry(
    node: &Node,
    entry: crate::raft::Request,
) -> Result<crate::raft::Response, OpError> {
    write_host_entry_at(node, entry).await.map(|(_, r)| r)
}

/// [`write_host_entry`], with the raft index the entry was committed at.
pub async fn write_host_entry_at(
    node: &Node,
    entry: crate::raft::Request,
) -> Result<(u64, crate::raft::Response), OpError> {
    node.raft
        .client_write(entry)
        .await
        .map(|written| (written.log_id.index, written.data))
        .map_err(|e| match e {
            openraft::error::RaftError::APIError(
                openraft::error::ClientWriteError::ForwardToLeader(_),
            ) => OpError::NotLeader,
            e => failed(500, format!("raft: {e}")),
        })
}

/// Applies a write through the leader, wherever it is.
pub async fn apply(node: &Node, req: &ApplyRequest) -> Result<Applied, OpError> {
    through_leader(node, PATH_APPLY, req, HOLD, || apply_local(node, req)).await
}

/// Whether the leader's lease covers a local read now.
fn lease_holds(node: &Node) -> bool {
    let m = node.raft.metrics().borrow().clone();
    m.current_leader == Some(node.id)
        && m.millis_since_quorum_ack
            .is_some_and(|ms| Duration::from_millis(ms) < node.config.timers.lease())
}

async fn run_query(node: &Node, req: &QueryRequest) -> Result<QueryReply, OpError> {
    let out = node
        .fsm
        .blocking_query(
            &req.plugin,
            &req.query,
            &req.args,
            req.min_index,
            Duration::from_millis(req.wait_ms),
        )
        .await?;
    Ok(QueryReply {
        bytes: out.bytes,
        index: out.index,
    })
}

/// Runs a read on this server as the leader would: under the lease, or after a read-index
/// round. Fails with `NotLeader` elsewhere.
pub async fn query_local(node: &Node, req: &QueryRequest) -> Result<QueryReply, OpError> {
    let fast = req.consistency == Consistency::Default && lease_holds(node);
    if !fast {
        match node.raft.ensure_linearizable().await {
            Ok(_) => {}
            Err(openraft::error::RaftError::APIError(
                openraft::error::CheckIsLeaderError::ForwardToLeader(_),
            )) => return Err(OpError::NotLeader),
            Err(e) => return Err(failed(503, format!("confirming leadership: {e}"))),
        }
    }
    run_query(node, req).await
}

/// Runs a read with the consistency it asks for, forwarding to the leader when needed.
pub async fn query(node: &Node, req: &QueryRequest) -> Result<QueryReply, OpError> {
    if req.consistency == Consistency::Stale {
        return run_query(node, req).await;
    }
    let timeout = Duration::from_millis(req.wait_ms) + HOLD;
    through_leader(node, PATH_QUERY, req, timeout, || query_local(node, req)).await
}
