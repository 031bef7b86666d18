//! Server-to-server traffic: CBOR over HTTP/1.1 on the server port, through one pooled
//! hyper client per node (keep-alive connections are reused across RPCs and peers).
//!
//! Owns: openraft's network factory over the wire client ([`RpcClient`], in `client.rs`,
//! re-exported here), and the acknowledgements autopilot reads ([`Acks`]). The paths
//! served by the other side live in `server::rpc`; the two agree through `protocol`.

use openraft::RPCTypes;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Snapshot, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use super::client::{CallFailure, RpcClient};
use super::guard::Terms;
use super::{NodeInfo, TypeConfig};
use crate::codec::{from_cbor, to_cbor};
use crate::http_body;
use crate::protocol::{Rpc, SNAPSHOT_HEAD, SnapshotHead, TARGET_PARAM};

/// How long a streamed snapshot may take, sending and installing.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);

/// What the leader knows of its followers' answers, for autopilot and for its lease.
#[derive(Clone, Default)]
pub struct Acks(Arc<Mutex<AckTable>>);

#[derive(Default)]
struct AckTable {
    /// When each peer last answered replication (an append, a heartbeat or a snapshot).
    answered: HashMap<u64, Instant>,
    /// Per peer, the newest append it accepted the sender's leadership for: the term it
    /// was sent in and when it was sent (never when the answer came: a server paused
    /// between the two must not count the pause as covered).
    accepted: HashMap<u64, (u64, Instant)>,
}

impl Acks {
    fn table(&self) -> std::sync::MutexGuard<'_, AckTable> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, peer: u64) {
        self.table().answered.insert(peer, Instant::now());
    }

    /// Records that `peer` accepted an append sent at `sent` by this server as the leader
    /// of `term`.
    fn record_accepted(&self, peer: u64, term: u64, sent: Instant) {
        let mut table = self.table();
        let newer = match table.accepted.get(&peer) {
            Some(&(t, at)) => (term, sent) > (t, at),
            None => true,
        };
        if newer {
            table.accepted.insert(peer, (term, sent));
        }
    }

    /// When `peer` last answered, if it ever did.
    pub fn last(&self, peer: u64) -> Option<Instant> {
        self.table().answered.get(&peer).copied()
    }

    /// The time from which a quorum of every configuration in `configs` (one, or the two
    /// of a joint configuration) has accepted this server, `me`, as the leader of `term`:
    /// for each configuration, the send time of the append that its quorum-th most recent
    /// acceptor accepted, `me` counting as `now`; the earliest of those. `None` when some
    /// configuration has no quorum of acceptances in `term` at all.
    pub fn quorum_accepted(
        &self,
        me: u64,
        term: u64,
        configs: &[BTreeSet<u64>],
        now: Instant,
    ) -> Option<Instant> {
        let table = self.table();
        let mut since: Option<Instant> = None;
        for voters in configs {
            let mut times: Vec<Instant> = voters
                .iter()
                .filter_map(|v| match table.accepted.get(v) {
                    _ if *v == me => Some(now),
                    Some(&(t, sent)) if t == term => Some(sent),
                    _ => None,
                })
                .collect();
            let quorum = voters.len() / 2 + 1;
            if times.len() < quorum {
                return None;
            }
            times.sort_unstable_by(|a, b| b.cmp(a));
            let at = times[quorum - 1];
            since = Some(since.map_or(at, |s| s.min(at)));
        }
        since
    }
}

/// openraft's view of the network: a client per peer over the shared [`RpcClient`].
#[derive(Clone)]
pub struct Network {
    /// This node's id.
    pub id: u64,
    /// The shared client.
    pub client: RpcClient,
    /// Where answers to replication are recorded.
    pub acks: Acks,
}

/// The connection to one peer.
pub struct Peer {
    id: u64,
    target: u64,
    addr: String,
    client: RpcClient,
    acks: Acks,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> Peer {
        Peer {
            id: self.id,
            target,
            addr: node.rpc_addr.clone(),
            client: self.client.clone(),
            acks: self.acks.clone(),
        }
    }
}

impl Peer {
    /// `path` with the target's id, so that a server at a reused address (a wiped data dir
    /// means a new id) refuses traffic meant for the server that was there: accepting it
    /// would look like that server's log going backwards, which openraft's leader cannot
    /// survive.
    fn addressed(&self, path: &str) -> String {
        format!("{path}?{TARGET_PARAM}={:016x}", self.target)
    }

    async fn rpc<Req, Resp, E>(
        &self,
        action: RPCTypes,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, NodeInfo, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned + Terms,
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        let started = std::time::Instant::now();
        let answer: Result<Resp, RaftError<u64, E>> = self
            .client
            .call(&self.addr, &self.addressed(path), req, timeout)
            .await
            .inspect(|_| {
                tracing::trace!(target: "agent.server.raft", "{action:?} to {}: {:?}", self.addr, started.elapsed());
            })
            .map_err(|f| match f {
                CallFailure::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&f)),
                CallFailure::Timeout { .. } => RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout,
                }),
                CallFailure::Network { .. } | CallFailure::Status { .. } => {
                    RPCError::Network(NetworkError::new(&f))
                }
            })?;
        let answer = answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))?;
        self.checked(answer)
            .map_err(|f| RPCError::Network(NetworkError::new(&f)))
    }

    /// `answer` if its terms are sane ([`Terms::check`]); openraft would store its vote.
    fn checked<T: Terms>(&self, answer: T) -> Result<T, CallFailure> {
        answer.check().map_err(|e| {
            tracing::warn!(target: "agent.server.raft", "refused an answer from {}: {e}", self.addr);
            CallFailure::Network {
                addr: self.addr.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(answer)
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        let sent = Instant::now();
        let answer = self
            .rpc(RPCTypes::AppendEntries, Rpc::Append.path(), &rpc, &option)
            .await;
        if let Ok(reply) = &answer {
            self.acks.record(self.target);
            if !matches!(reply, AppendEntriesResponse::HigherVote(_)) {
                self.acks
                    .record_accepted(self.target, rpc.vote.leader_id().term, sent);
            }
        }
        answer
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        self.rpc(RPCTypes::Vote, Rpc::Vote.path(), &rpc, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, NodeInfo, RaftError<u64, InstallSnapshotError>>,
    > {
        self.rpc(
            RPCTypes::InstallSnapshot,
            Rpc::Snapshot.path(),
            &rpc,
            &option,
        )
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<u64>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        let answer = tokio::select! {
            answer = self.stream_snapshot(vote, snapshot) => answer,
            closed = cancel => Err(StreamingError::Closed(closed)),
        };
        if answer.is_ok() {
            self.acks.record(self.target);
        }
        answer
    }
}

impl Peer {
    fn streaming_error(
        &self,
        f: CallFailure,
        timeout: Duration,
    ) -> StreamingError<TypeConfig, Fatal<u64>> {
        match f {
            CallFailure::Unreachable { .. } => StreamingError::Unreachable(Unreachable::new(&f)),
            CallFailure::Timeout { .. } => StreamingError::Timeout(Timeout {
                action: RPCTypes::InstallSnapshot,
                id: self.id,
                target: self.target,
                timeout,
            }),
            CallFailure::Network { .. } | CallFailure::Status { .. } => {
                StreamingError::Network(NetworkError::new(&f))
            }
        }
    }

    /// Streams a whole snapshot in one request: the head, then `state.bin` read from disk
    /// as the peer takes it. The peer checks it whole before raft installs it.
    async fn stream_snapshot(
        &self,
        vote: Vote<u64>,
        snapshot: Snapshot<TypeConfig>,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        let path = snapshot.snapshot.path().to_path_buf();
        let crc = path
            .parent()
            .and_then(|dir| crate::snapshot::store::read_meta(dir).ok())
            .map(|m| m.crc);
        use base64::Engine as _;
        let head = base64::engine::general_purpose::STANDARD.encode(to_cbor(&SnapshotHead {
            vote,
            meta: snapshot.meta.clone(),
            crc,
        }));
        drop(snapshot);
        tracing::info!(target: "agent.server.raft", "sending snapshot to {}: path={}", self.addr, path.display());
        let body = http_body::file(path, false, None);
        let bytes = self
            .client
            .post_stream(
                &self.addr,
                &self.addressed(Rpc::SnapshotStream.path()),
                Some((SNAPSHOT_HEAD, head)),
                body,
                SNAPSHOT_TIMEOUT,
            )
            .await
            .map_err(|f| {
                tracing::warn!(target: "agent.server.raft", "sending snapshot to {} failed: {f}", self.addr);
                self.streaming_error(f, SNAPSHOT_TIMEOUT)
            })?;
        let answer: Result<SnapshotResponse<u64>, Fatal<u64>> =
            from_cbor(&bytes, Rpc::SnapshotStream.path()).map_err(|reason| {
                StreamingError::Network(NetworkError::new(&CallFailure::Network {
                    addr: self.addr.clone(),
                    reason,
                }))
            })?;
        let answer =
            answer.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))?;
        self.checked(answer)
            .map_err(|f| StreamingError::Network(NetworkError::new(&f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn the_lease_runs_from_the_send_time_a_quorum_accepted() {
        let acks = Acks::default();
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(10);
        let config = [voters(&[1, 2, 3])];
        assert_eq!(acks.quorum_accepted(1, 5, &config, now), None, "no acks");
        acks.record_accepted(2, 5, t0 + Duration::from_secs(3));
        // The leader itself and server 2 make a quorum of three: from 2's send time.
        assert_eq!(
            acks.quorum_accepted(1, 5, &config, now),
            Some(t0 + Duration::from_secs(3))
        );
        acks.record_accepted(3, 5, t0 + Duration::from_secs(7));
        assert_eq!(
            acks.quorum_accepted(1, 5, &config, now),
            Some(t0 + Duration::from_secs(7)),
            "the newest quorum"
        );
        // An older send answered late does not move the time back.
        acks.record_accepted(3, 5, t0 + Duration::from_secs(1));
        assert_eq!(
            acks.quorum_accepted(1, 5, &config, now),
            Some(t0 + Duration::from_secs(7))
        );
        // Acceptances of another term count for nothing.
        assert_eq!(acks.quorum_accepted(1, 6, &config, now), None);
    }

    #[test]
    fn a_joint_configuration_needs_a_quorum_of_each_half() {
        let acks = Acks::default();
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(10);
        acks.record_accepted(2, 1, t0 + Duration::from_secs(4));
        acks.record_accepted(5, 1, t0 + Duration::from_secs(6));
        let joint = [voters(&[1, 2, 3]), voters(&[1, 4, 5])];
        assert_eq!(
            acks.quorum_accepted(1, 1, &joint, now),
            Some(t0 + Duration::from_secs(4)),
            "the older of the two quorums"
        );
        let joint = [voters(&[1, 2, 3]), voters(&[4, 5, 6])];
        assert_eq!(
            acks.quorum_accepted(1, 1, &joint, now),
            None,
            "one of three in the new half"
        );
        assert_eq!(
            acks.quorum_accepted(1, 1, &[voters(&[1])], now),
            Some(now),
            "a single voter leads alone"
        );
    }
}
