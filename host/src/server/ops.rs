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
//! (a quorum accepted an append it sent less than `RaftTimers::lease` ago, measured when
//! the read arrives: [`lease_holds`]), else after a read-index round; `consistent` always
//! after a read-index round (`ensure_linearizable`).

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::time::{Duration, Instant};

use super::Node;
use crate::fsm::{self, FailureKind};
use crate::protocol::{Applied, ApplyRequest, Consistency, OpError, QueryReply, QueryRequest, Rpc};
use crate::raft::network::CallFailure;

/// How long a request waits for a leader before failing.
pub const HOLD: Duration = Duration::from_secs(7);
/// Refuses a request naming an unknown plugin or command before it reaches the log.
/// Returns the version of the plugin in effect, which the entry records.
fn check_command(node: &Node, plugin: &str, command: &str) -> Result<String, OpError> {
    let plugins = node.fsm.plugins();
    let p = plugins.get(plugin).ok_or_else(|| {
        OpError::failed(
            FailureKind::NotFound,
            format!("no plugin named {plugin} is loaded"),
        )
    })?;
    if !p.description().commands.iter().any(|c| c == command) {
        return Err(OpError::failed(
            FailureKind::NotFound,
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

/// Whether this follower has heard nothing from its leader for longer than the leader's
/// vote lease: past it, the followers may already be electing another.
fn leader_silent(node: &Node) -> bool {
    node.last_contact()
        .is_some_and(|d| d >= node.config.timers.vote_lease())
}

/// Applies a write on this server, which must be the leader (through its proposer, which
/// batches concurrent writes into one log entry).
pub async fn apply_local(node: &Node, req: &ApplyRequest) -> Result<Applied, OpError> {
    let version = check_command(node, &req.plugin, &req.command)?;
    let entry = fsm::Entry {
        plugin: req.plugin.clone(),
        command: req.command.clone(),
        payload: req.payload.clone(),
        timestamp_ms: crate::clock::now_ms(),
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
    let start = Instant::now();
    let deadline = start + HOLD;
    // How long a request waits, rather than being sent to a leader that has gone silent,
    // for the election that replaces it: at most an election's worst case.
    let patience = start + node.config.timers.election_max + node.config.timers.election_min;
    loop {
        match node.leader() {
            Some((id, _)) if id == node.id => match local().await {
                Err(OpError::NotLeader) => {}
                other => return other,
            },
            // A leader silent for longer than its lease is probably gone (killed, paused,
            // cut off): a request sent to it would hang until the caller gives up, and could
            // not be retried (it might be carried out later). Nothing has been sent yet, so
            // wait for a new leader, or for this one to be heard again, within `patience`.
            Some(_) if leader_silent(node) && Instant::now() < patience.min(deadline) => {}
            Some((_, leader)) => {
                let answer: Result<Result<Resp, OpError>, CallFailure> =
                    node.client.call(&leader.rpc_addr, path, req, timeout).await;
                match answer {
                    Ok(Err(OpError::NotLeader)) | Err(CallFailure::Unreachable { .. }) => {}
                    Ok(result) => return result,
                    Err(f) => {
                        return Err(OpError::failed(
                            FailureKind::Unavailable,
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
            return Err(OpError::failed(
                FailureKind::Unavailable,
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
        .map_err(super::batch::write_error)
}

/// Applies a write through the leader, wherever it is.
pub async fn apply(node: &Node, req: &ApplyRequest) -> Result<Applied, OpError> {
    through_leader(node, Rpc::Apply.path(), req, HOLD, || {
        apply_local(node, req)
    })
    .await
}

/// The lowest applied index a leader serves reads from in its term: the last log index it
/// had when its leadership of that term began. Every entry then in its log will be
/// committed by it, and the commit index before it led (or before it restarted) is at
/// most that. openraft's read index is `max(committed, first entry of the term)`, which
/// is not enough for a leader that restarted and resumed its term with the commit index
/// it last recorded (older than the true one): it would serve reads from a state that
/// misses acknowledged writes (found by the nemesis suite after every server was killed).
#[derive(Default)]
pub struct ReadFloor {
    term: std::sync::atomic::AtomicU64,
    index: std::sync::atomic::AtomicU64,
}

impl ReadFloor {
    /// Records the floor of a leadership seen in raft's metrics (`server::raft_watch`
    /// calls this on every change): the first time this server leads `term`.
    pub fn observe(&self, me: u64, m: &openraft::RaftMetrics<u64, crate::raft::NodeInfo>) {
        use std::sync::atomic::Ordering;
        let term = m.vote.leader_id().term;
        if m.current_leader == Some(me) && self.term.load(Ordering::Acquire) != term {
            self.index
                .store(m.last_log_index.unwrap_or(0), Ordering::Release);
            self.term.store(term, Ordering::Release);
        }
    }

    /// The floor for a read in `term`, or `last_log_index` (what it would be) when the
    /// leadership of `term` was not recorded yet.
    fn get(&self, term: u64, last_log_index: u64) -> u64 {
        use std::sync::atomic::Ordering;
        if self.term.load(Ordering::Acquire) == term {
            self.index.load(Ordering::Acquire)
        } else {
            last_log_index
        }
    }
}

/// Waits until this leader has applied its read floor ([`ReadFloor`]).
async fn reach_read_floor(node: &Node) -> Result<(), OpError> {
    let (term, last, applied) = {
        let metrics = node.raft.metrics();
        let m = metrics.borrow();
        (
            m.vote.leader_id().term,
            m.last_log_index.unwrap_or(0),
            m.last_applied.map_or(0, |l| l.index),
        )
    };
    let floor = node.read_floor.get(term, last);
    if applied >= floor {
        return Ok(());
    }
    node.raft
        .wait(Some(HOLD))
        .applied_index_at_least(Some(floor), "the leader's read floor")
        .await
        .map(|_| ())
        .map_err(|e| {
            OpError::failed(
                FailureKind::Unavailable,
                format!("waiting for this leader to apply its log up to {floor}: {e}"),
            )
        })
}

/// Whether the leader's lease covers a local read now, on this server's monotonic clock
/// read here (not a figure computed when raft last published its metrics: a leader
/// paused since then would take the pause for leadership). It holds when
/// - this server leads a term in which it has applied an entry (so every entry earlier
///   leaders committed is applied here), and
/// - a quorum accepted an append of that term sent less than the lease ago
///   ([`crate::config::RaftTimers::lease`]).
///
/// Otherwise a `default` read takes the read-index round a `consistent` one does.
fn lease_holds(node: &Node) -> bool {
    let (term, configs) = {
        let metrics = node.raft.metrics();
        let m = metrics.borrow();
        let term = m.vote.leader_id().term;
        let applied_own_term = m.last_applied.is_some_and(|l| l.leader_id.term == term);
        if m.current_leader != Some(node.id) || !m.vote.is_committed() || !applied_own_term {
            return false;
        }
        let applied = m.last_applied.map_or(0, |l| l.index);
        if applied < node.read_floor.get(term, m.last_log_index.unwrap_or(0)) {
            return false;
        }
        let configs = m.membership_config.membership().get_joint_config().clone();
        (term, configs)
    };
    let now = std::time::Instant::now();
    node.acks
        .quorum_accepted(node.id, term, &configs, now)
        .is_some_and(|since| now.duration_since(since) < node.config.timers.lease())
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
            Err(e) => {
                return Err(OpError::failed(
                    FailureKind::Unavailable,
                    format!("confirming leadership: {e}"),
                ));
            }
        }
        reach_read_floor(node).await?;
    }
    run_query(node, req).await
}

/// Runs a read with the consistency it asks for, forwarding to the leader when needed.
pub async fn query(node: &Node, req: &QueryRequest) -> Result<QueryReply, OpError> {
    if req.consistency == Consistency::Stale {
        return run_query(node, req).await;
    }
    let timeout = Duration::from_millis(req.wait_ms) + HOLD;
    through_leader(node, Rpc::Query.path(), req, timeout, || {
        query_local(node, req)
    })
    .await
}
