//! Cluster formation, as Consul does it: servers find each other through `retry_join`,
//! exactly one of them bootstraps the cluster once `bootstrap_expect` servers are known,
//! and a server started later joins the running cluster. A server leaves the membership
//! only when asked (`fsmhost leave`), never because it stopped.
//!
//! Owns: the set of servers this node has heard of, the join handshake, bootstrap, and
//! the leader's add/remove of servers.
//!
//! Invariants:
//! - only a server with no raft state (never voted, nothing logged) bootstraps, only when
//!   none of the servers it reached has a cluster already, and only the one with the
//!   lowest node id among the `bootstrap_expect` (or more) servers it knows. Every server
//!   learns the others' lists through the handshake, so all agree on who that is (as in
//!   Consul, `bootstrap_expect` must equal the number of servers started to bootstrap);
//! - a server joins as a non-voter (an openraft learner: it catches up from the log or a
//!   snapshot without counting in quorums); autopilot promotes it once it has been healthy
//!   for `server_stabilization_time` (`server::autopilot`). Adding is idempotent: a join
//!   repeated while one is in progress, or by a member, does nothing more;
//! - a running server that is not in the leader's configuration (removed by autopilot's
//!   dead-server cleanup while it was down, or by `remove-peer`) asks to be added again,
//!   as Consul's leader re-adds a live server; one that is leaving does not. The leader
//!   adds only a server it can reach at the address given, answering with the id given.
//!   A voter removed while it was down comes back believing it still votes; its elections
//!   fail (its log is behind) but raise its term, so the leader's first append after the
//!   re-add meets a higher term and one election follows (openraft 0.9 has no pre-vote).

use openraft::ChangeMembers;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Node;
use crate::fsm::FailureKind;
use crate::protocol::{AddServer, JoinReply, JoinRequest, OpError, ProbeReply, RemoveServer, Rpc};
use crate::raft::NodeInfo;

/// What this node knows of other servers.
pub struct Cluster {
    known: Mutex<BTreeMap<u64, NodeInfo>>,
    joining: Mutex<BTreeSet<u64>>,
    /// Whether this server is leaving. Held by the join loop while it asks to be added,
    /// and by `leave` while it marks this server as leaving: no request to add it can be in
    /// flight once it leaves.
    leaving: tokio::sync::Mutex<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// Knows only itself.
    pub fn new(id: u64, info: NodeInfo) -> Self {
        Cluster {
            known: Mutex::new(BTreeMap::from([(id, info)])),
            joining: Mutex::new(BTreeSet::new()),
            leaving: tokio::sync::Mutex::new(false),
        }
    }

    fn learn(&self, id: u64, info: NodeInfo) {
        let mut known = lock(&self.known);
        if known.insert(id, info.clone()).is_none() {
            tracing::info!(target: "agent.server", "adding server: {} id={id:016x}", info);
        }
    }

    /// Every server this node has heard of.
    pub fn known(&self) -> BTreeMap<u64, NodeInfo> {
        lock(&self.known).clone()
    }
}

fn initialized(node: &Node) -> bool {
    node.membership().nodes().next().is_some()
}

fn is_voter(node: &Node, id: u64) -> bool {
    node.membership().voter_ids().any(|v| v == id)
}

fn is_member(node: &Node, id: u64) -> bool {
    node.membership().nodes().any(|(m, _)| *m == id)
}

/// Answers a join handshake (any server).
pub fn handle_join(node: &Node, req: JoinRequest) -> JoinReply {
    if req.id != node.id {
        node.cluster.learn(req.id, req.info);
    }
    JoinReply {
        id: node.id,
        info: node.info.clone(),
        initialized: initialized(node),
        known: node.cluster.known(),
        leader: node.leader(),
    }
}

/// Adds a server as a non-voter (on the leader), in the background; autopilot promotes it.
pub fn handle_add(node: &Arc<Node>, req: AddServer) -> Result<(), OpError> {
    if !node.is_leader() {
        return Err(OpError::NotLeader);
    }
    node.cluster.learn(req.id, req.info.clone());
    if is_member(node, req.id) || !lock(&node.cluster.joining).insert(req.id) {
        return Ok(());
    }
    let node = node.clone();
    tokio::spawn(async move {
        let id = req.id;
        for attempt in 0..20 {
            // Only a server the leader can reach, and that is who it says: one the leader
            // cannot reach would be judged failed, removed, and ask again, forever.
            if let Err(e) = reachable(&node, &req).await {
                tracing::warn!(target: "agent.server.raft", "not adding server {}: {e}", req.info);
                break;
            }
            match node.raft.add_learner(req.id, req.info.clone(), false).await {
                Ok(_) => {
                    tracing::info!(target: "agent.server.raft", "updating configuration: command=AddNonvoter server-id={id:016x} server-addr={}", req.info.rpc_addr);
                    break;
                }
                Err(e) => {
                    tracing::warn!(target: "agent.server.raft", "adding server {} failed (attempt {}): {e}", req.info, attempt + 1);
                    if !node.is_leader() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        lock(&node.cluster.joining).remove(&id);
    });
    Ok(())
}

/// Removes a server from the membership (on the leader).
pub async fn handle_remove(node: &Node, req: RemoveServer) -> Result<(), OpError> {
    if !node.is_leader() {
        return Err(OpError::NotLeader);
    }
    let members = node.membership();
    let is_member = members.nodes().any(|(id, _)| *id == req.id);
    if !is_member {
        return Err(OpError::failed(
            FailureKind::NotFound,
            format!(
                "no server with id {:016x} in the raft configuration",
                req.id
            ),
        ));
    }
    let change = if is_voter(node, req.id) {
        ChangeMembers::RemoveVoters(BTreeSet::from([req.id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([req.id]))
    };
    node.raft
        .change_membership(change, false)
        .await
        .map_err(|e| {
            OpError::failed(
                FailureKind::Internal,
                format!("removing server {:016x}: {e}", req.id),
            )
        })?;
    tracing::info!(target: "agent.server.raft", "updating configuration: command=RemoveServer server-id={:016x}", req.id);
    Ok(())
}

/// Removes this server from the cluster through the leader (`fsmhost leave`).
pub async fn leave(node: &Arc<Node>) -> Result<(), OpError> {
    *node.cluster.leaving.lock().await = true;
    remove(node, node.id).await
}

/// Checks that the leader reaches `req`'s server address and finds that server there.
async fn reachable(node: &Node, req: &AddServer) -> Result<(), String> {
    let path = Rpc::AutopilotProbe.path();
    let reply: ProbeReply = node
        .client
        .call(&req.info.rpc_addr, path, &(), Duration::from_secs(2))
        .await
        .map_err(|e| format!("the leader cannot reach it: {e}"))?;
    if reply.id != req.id {
        return Err(format!(
            "its address {} answers as server {:016x}, not {:016x}",
            req.info.rpc_addr, reply.id, req.id
        ));
    }
    Ok(())
}

/// Removes server `id` from the cluster through the leader (`operator raft remove-peer`).
pub async fn remove(node: &Node, id: u64) -> Result<(), OpError> {
    let req = RemoveServer { id };
    super::ops::through_leader(
        node,
        Rpc::RemoveServer.path(),
        &req,
        super::ops::HOLD,
        || handle_remove(node, req.clone()),
    )
    .await
}

/// Discovery, bootstrap and joining, until the process stops.
pub async fn run(node: Arc<Node>) {
    let own = node.info.rpc_addr.clone();
    let mut round: u64 = 0;
    loop {
        round += 1;
        let has_state = initialized(&node) || node.log.has_state().unwrap_or(true);
        let mut existing_leader: Option<(u64, NodeInfo)> = None;
        let mut someone_initialized = false;
        for addr in node.config.retry_join.iter().filter(|a| **a != own) {
            let req = JoinRequest {
                id: node.id,
                info: node.info.clone(),
            };
            match node
                .client
                .call::<_, JoinReply>(addr, Rpc::Join.path(), &req, Duration::from_secs(2))
                .await
            {
                Ok(reply) => {
                    for (id, info) in reply.known {
                        if id != node.id {
                            node.cluster.learn(id, info);
                        }
                    }
                    if reply.initialized {
                        someone_initialized = true;
                        existing_leader = existing_leader.or(reply.leader);
                    }
                }
                Err(e) => {
                    if round % 30 == 1 {
                        tracing::warn!(target: "agent", "retry_join: {addr}: {e}");
                    }
                }
            }
        }
        let leader = node.leader().or(existing_leader);
        let leaving = node.cluster.leaving.lock().await;
        // Asked every round, not only when this server thinks it is not a member: a server
        // removed while it was down still holds the old configuration. The leader does
        // nothing for a member.
        if let Some((lid, linfo)) = leader.filter(|(lid, _)| *lid != node.id && !*leaving) {
            let req = AddServer {
                id: node.id,
                info: node.info.clone(),
            };
            let r: Result<Result<(), OpError>, _> = node
                .client
                .call(
                    &linfo.rpc_addr,
                    Rpc::AddServer.path(),
                    &req,
                    Duration::from_secs(5),
                )
                .await;
            if let Err(e) = r {
                tracing::debug!(target: "agent", "asking leader {lid:016x} to add this server: {e}");
            }
        } else if !has_state && !someone_initialized {
            try_bootstrap(&node).await;
        }
        drop(leaving);
        let settled = is_member(&node, node.id) && node.leader().is_some();
        let pause = if settled { 5000 } else { 500 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

async fn try_bootstrap(node: &Node) {
    let expect = node.config.bootstrap_expect as usize;
    if expect == 0 {
        return;
    }
    let known = node.cluster.known();
    if known.len() < expect || known.keys().next() != Some(&node.id) {
        return;
    }
    let names: Vec<String> = known.values().map(|i| i.to_string()).collect();
    tracing::info!(target: "agent.server", "found expected number of peers, attempting bootstrap: {}", names.join(", "));
    match node.raft.initialize(known).await {
        Ok(()) => tracing::info!(target: "agent.server.raft", "cluster bootstrapped"),
        Err(e) => tracing::warn!(target: "agent.server.raft", "bootstrap refused: {e}"),
    }
}
