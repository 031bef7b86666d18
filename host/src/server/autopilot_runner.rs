//! Autopilot on a running server: the leader's loop that observes every server, judges
//! health with [`crate::autopilot`], and carries out promotions and dead-server removals
//! through raft; the probe it sends; and the operator endpoints' work (configuration reads
//! and writes, health and state), forwarded to the leader from any server.
//!
//! Owns: what this leader has heard from each server during its leadership, and the latest
//! judged [`State`].
//!
//! Invariants:
//! - only the leader judges or changes anything; a server that stops leading forgets what
//!   it heard, and its successor starts over (so `StableSince` restarts with a new leader,
//!   as in raft-autopilot);
//! - the configuration used is the replicated one; a leader that finds none stored (a new
//!   cluster, or one restored from an archive without one) writes its own `[autopilot]`
//!   settings, with compare-and-set, so two leaders in a row cannot overwrite an
//!   operator's change;
//! - membership changes go through openraft's `change_membership` (joint consensus) and
//!   never touch the leader: promotions add voters, removals remove failed servers only.

use openraft::ChangeMembers;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Node;
use super::ops;

use crate::autopilot::{
    AutopilotConfig, ConfigUpdate, NodeStatus, Observation, RaftStatus, State, StoredConfig, plan,
};
use crate::fsm::FailureKind;
use crate::protocol::{OpError, ProbeReply, Rpc};
use crate::raft::{Request, Response};

/// This server's answer to a probe.
pub fn probe_reply(node: &Node) -> ProbeReply {
    ProbeReply {
        id: node.id,
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// The latest judgement, kept while this server leads.
#[derive(Default)]
pub struct Autopilot {
    state: Mutex<Option<State>>,
}

impl Autopilot {
    fn set(&self, state: Option<State>) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// The latest judged state, if this server leads and has judged a round.
    pub fn state(&self) -> Option<State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What this leader heard during its leadership.
struct Heard {
    term: u64,
    /// When each server of the configuration was first seen in it during this leadership.
    first_seen: HashMap<u64, Instant>,
    /// Last answer to a probe, per server.
    probed: HashMap<u64, Instant>,
    /// The version each server last reported.
    versions: HashMap<u64, String>,
    /// Servers whose address answered with another id.
    gone: BTreeSet<u64>,
    last_reconcile: Instant,
}

impl Heard {
    fn new(term: u64) -> Self {
        let now = Instant::now();
        Heard {
            term,
            first_seen: HashMap::new(),
            probed: HashMap::new(),
            versions: HashMap::new(),
            gone: BTreeSet::new(),
            last_reconcile: now,
        }
    }
}

/// The configuration in force: the replicated one, else this server's seed.
pub fn config_in_force(node: &Node) -> AutopilotConfig {
    node.fsm
        .system()
        .autopilot
        .map_or_else(|| node.config.autopilot.clone(), |s| s.config)
}

/// Runs autopilot until the process stops; it works only while this server leads.
pub async fn run(node: Arc<Node>) {
    let timing = node.config.autopilot_timing;
    let mut heard: Option<Heard> = None;
    let mut interval = timing.update_interval;
    loop {
        next_round(&node, interval).await;
        let m = node.raft.metrics().borrow().clone();
        if m.current_leader != Some(node.id) {
            if heard.take().is_some() {
                node.autopilot.set(None);
            }
            continue;
        }
        let h = match &mut heard {
            Some(h) if h.term == m.current_term => h,
            _ => {
                node.autopilot.set(None);
                heard.insert(Heard::new(m.current_term))
            }
        };
        let config = config_in_force(&node);
        let seen = observe(&node, h, &m).await;
        let previous = node.autopilot.state();
        let state = State::next(
            &config,
            node.id,
            (m.current_term, m.last_log_index.unwrap_or(0)),
            seen,
            previous.as_ref(),
            crate::clock::now_ms(),
        );
        log_changes(previous.as_ref(), &state);
        node.autopilot.set(Some(state.clone()));
        // Every round, not once: a restored archive may carry no configuration.
        seed_config(&node, &state).await;
        // A non-voter ready for promotion is promoted at once rather than at the next
        // reconcile (a joining server is a voter within its stabilization time and a
        // round), and while one waits the rounds come faster.
        let promotable = !plan::promotions(&config, &state, crate::clock::now_ms()).is_empty();
        if promotable || h.last_reconcile.elapsed() >= timing.reconcile_interval {
            h.last_reconcile = Instant::now();
            reconcile(&node, &config, &state).await;
        }
        let waiting = state
            .servers
            .iter()
            .any(|s| s.seen.status == RaftStatus::NonVoter);
        interval = if waiting {
            timing.update_interval.min(FAST_ROUND)
        } else {
            timing.update_interval
        };
    }
}

/// How often autopilot judges while a non-voter waits for promotion.
const FAST_ROUND: Duration = Duration::from_millis(250);

/// Waits `interval`, or less when the raft configuration changes while this server leads
/// (a server joined or left: judge it now). A server that does not lead yet waits the
/// whole interval: its first judgement comes a round after it took over, as Consul's.
async fn next_round(node: &Node, interval: Duration) {
    let mut metrics = node.raft.metrics();
    let (membership, leading) = {
        let m = metrics.borrow();
        (
            *m.membership_config.log_id(),
            m.current_leader == Some(node.id),
        )
    };
    if !leading {
        tokio::time::sleep(interval).await;
        return;
    }
    let sleep = tokio::time::sleep(interval);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return,
            changed = metrics.changed() => {
                if changed.is_err() {
                    sleep.await;
                    return;
                }
                if metrics.borrow().membership_config.log_id() != &membership {
                    return;
                }
            }
        }
    }
}

/// Longest wait for one raft change (a seed, a promotion, a removal): without a quorum
/// openraft answers only once the entry commits, and the loop must go on judging.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes this server's `[autopilot]` settings when none are stored (as Consul's leader
/// does whenever it finds none), once every server has answered the probe: a server too
/// old to have autopilot could not read the entry (Consul gates its autopilot entry on
/// the servers' versions the same way).
async fn seed_config(node: &Node, state: &State) {
    if node.fsm.system().autopilot.is_some()
        || state.servers.iter().any(|s| s.seen.version.is_empty())
    {
        return;
    }
    let update = ConfigUpdate {
        config: node.config.autopilot.clone(),
        cas: Some(0),
    };
    let write = ops::write_host_entry(node, Request::Autopilot(update));
    match tokio::time::timeout(CHANGE_TIMEOUT, write).await {
        Ok(Ok(_)) => {
            tracing::info!(target: "agent.server.autopilot", "stored this server's autopilot configuration: the cluster had none");
        }
        Ok(Err(e)) => {
            tracing::warn!(target: "agent.server.autopilot", "storing the autopilot configuration: {e}");
        }
        Err(_) => {
            tracing::warn!(target: "agent.server.autopilot", "storing the autopilot configuration: not committed within {CHANGE_TIMEOUT:?}");
        }
    }
}

/// Proposes a membership change, waiting at most [`CHANGE_TIMEOUT`].
async fn change(
    node: &Node,
    what: ChangeMembers<u64, crate::raft::NodeInfo>,
) -> Result<(), String> {
    match tokio::time::timeout(CHANGE_TIMEOUT, node.raft.change_membership(what, false)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("not committed within {CHANGE_TIMEOUT:?}")),
    }
}

/// One round of observations: each server of the configuration, probed in parallel, with
/// the leader's replication view of it.
async fn observe(
    node: &Node,
    heard: &mut Heard,
    m: &openraft::RaftMetrics<u64, crate::raft::NodeInfo>,
) -> Vec<Observation> {
    let timing = node.config.autopilot_timing;
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let servers: Vec<(u64, crate::raft::NodeInfo)> = membership
        .nodes()
        .map(|(id, info)| (*id, info.clone()))
        .collect();
    let timeout = timing.update_interval.min(Duration::from_secs(1));
    let mut probes = tokio::task::JoinSet::new();
    for (id, info) in servers.iter().filter(|(id, _)| *id != node.id) {
        let (id, addr, client) = (*id, info.rpc_addr.clone(), node.client.clone());
        probes.spawn(async move {
            let answer: Result<ProbeReply, _> = client
                .call(&addr, Rpc::AutopilotProbe.path(), &(), timeout)
                .await;
            (id, answer)
        });
    }
    while let Some(joined) = probes.join_next().await {
        let Ok((id, answer)) = joined else { continue };
        match answer {
            Ok(reply) if reply.id == id => {
                heard.probed.insert(id, Instant::now());
                heard.versions.insert(id, reply.version);
                heard.gone.remove(&id);
            }
            Ok(reply) => {
                if heard.gone.insert(id) {
                    tracing::warn!(target: "agent.server.autopilot",
                        "server {id:016x} is gone: its address now answers as server {:016x}", reply.id);
                }
            }
            Err(_) => {}
        }
    }
    let now = Instant::now();
    let failed_after = timing.update_interval * 2;
    // A server is judged from when it joined the configuration, or from when this
    // leadership began, whichever is later: never from before it could have answered.
    let members: BTreeSet<u64> = servers.iter().map(|(id, _)| *id).collect();
    heard.first_seen.retain(|id, _| members.contains(id));
    for id in &members {
        heard.first_seen.entry(*id).or_insert(now);
    }
    servers
        .into_iter()
        .map(|(id, info)| {
            let status = if id == node.id {
                RaftStatus::Leader
            } else if voters.contains(&id) {
                RaftStatus::Voter
            } else {
                RaftStatus::NonVoter
            };
            let floor = heard.first_seen.get(&id).copied().unwrap_or(now);
            let ack = node.acks.last(id).map_or(floor, |a| a.max(floor));
            let last_heard = heard.probed.get(&id).map_or(ack, |p| ack.max(*p));
            let node_status = if id == node.id {
                NodeStatus::Alive
            } else if heard.gone.contains(&id) {
                NodeStatus::Left
            } else if now.duration_since(last_heard) <= failed_after {
                NodeStatus::Alive
            } else {
                NodeStatus::Failed
            };
            let (last_contact, (last_term, last_index)) = if id == node.id {
                (
                    Duration::ZERO,
                    (m.current_term, m.last_log_index.unwrap_or(0)),
                )
            } else {
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten());
                (
                    now.duration_since(ack),
                    matched.map_or((0, 0), |l| (l.leader_id.term, l.index)),
                )
            };
            let version = if id == node.id {
                env!("CARGO_PKG_VERSION").to_string()
            } else {
                heard.versions.get(&id).cloned().unwrap_or_default()
            };
            Observation {
                id,
                name: info.name,
                address: info.rpc_addr,
                version,
                status,
                node_status,
                last_contact,
                last_term,
                last_index,
            }
        })
        .collect()
}

/// Logs servers whose health or node status changed.
fn log_changes(previous: Option<&State>, state: &State) {
    for s in &state.servers {
        let before = previous.and_then(|p| p.server(s.seen.id));
        let o = &s.seen;
        if before.is_none_or(|b| b.healthy != s.healthy || b.seen.node_status != o.node_status) {
            tracing::info!(target: "agent.server.autopilot",
                "server health: id={:016x} name={} address={} status={} healthy={} last_contact={} last_index={}",
                o.id, o.name, o.address, o.node_status.as_str(), s.healthy,
                crate::duration::format(o.last_contact), o.last_index);
        }
    }
}

/// Promotes stable non-voters; if none, removes dead servers (raft-autopilot's order).
/// Nothing while the voters in touch are fewer than a quorum.
async fn reconcile(node: &Node, config: &AutopilotConfig, state: &State) {
    if !plan::has_quorum(config, state) {
        tracing::warn!(target: "agent.server.autopilot",
            "no quorum of voters in touch with the leader: not changing the raft configuration");
        return;
    }
    let promote: BTreeSet<u64> = plan::promotions(config, state, crate::clock::now_ms())
        .into_iter()
        .collect();
    if !promote.is_empty() {
        for id in &promote {
            if let Some(s) = state.server(*id) {
                tracing::info!(target: "agent.server.autopilot", "Promoting server: id={id:016x} address={} name={}", s.seen.address, s.seen.name);
            }
        }
        if let Err(e) = change(node, ChangeMembers::AddVoterIds(promote)).await {
            tracing::warn!(target: "agent.server.autopilot", "failed promoting servers: {e}");
        }
        return;
    }
    let mut voters = BTreeSet::new();
    let mut non_voters = BTreeSet::new();
    for r in plan::removals(config, state) {
        let Some(s) = state.server(r.id) else {
            continue;
        };
        match r.decision {
            Err(kept) => tracing::info!(target: "agent.server.autopilot",
                "{}: id={:016x} min={}", kept.reason(), r.id, config.min_quorum),
            Ok(()) => {
                tracing::info!(target: "agent.server.autopilot",
                    "Attempting removal of failed server node: id={:016x} name={} address={} reason={:?}",
                    r.id, s.seen.name, s.seen.address, r.category);
                if s.seen.status.is_voter() {
                    voters.insert(r.id);
                } else {
                    non_voters.insert(r.id);
                }
            }
        }
    }
    for (ids, what) in [
        (non_voters.clone(), ChangeMembers::RemoveNodes(non_voters)),
        (voters.clone(), ChangeMembers::RemoveVoters(voters)),
    ] {
        if ids.is_empty() {
            continue;
        }
        match change(node, what).await {
            Ok(()) => {
                for id in ids {
                    tracing::info!(target: "agent.server.autopilot", "removed server: id={id:016x}");
                }
            }
            Err(e) => {
                tracing::error!(target: "agent.server.autopilot", "failed to remove raft servers {ids:016x?}: {e}")
            }
        }
    }
}

/// The leader's state (on the leader).
pub fn state_local(node: &Node) -> Result<State, OpError> {
    if !node.is_leader() {
        return Err(OpError::NotLeader);
    }
    node.autopilot.state().ok_or_else(|| {
        OpError::failed(
            FailureKind::Unavailable,
            "autopilot has not judged the servers yet: it does once per update interval \
                  after a leader is elected; try again shortly",
        )
    })
}

/// The leader's state, from any server.
pub async fn state(node: &Node) -> Result<State, OpError> {
    ops::through_leader(node, Rpc::AutopilotState.path(), &(), ops::HOLD, || async {
        state_local(node)
    })
    .await
}

/// The stored configuration (on the leader); this server's seed, with indexes 0, while
/// none is stored.
pub fn config_local(node: &Node) -> Result<StoredConfig, OpError> {
    if !node.is_leader() {
        return Err(OpError::NotLeader);
    }
    Ok(stored_or_seed(node))
}

fn stored_or_seed(node: &Node) -> StoredConfig {
    node.fsm.system().autopilot.unwrap_or_else(|| StoredConfig {
        config: node.config.autopilot.clone(),
        create_index: 0,
        modify_index: 0,
    })
}

/// The configuration: the leader's, or this server's copy when `stale`.
pub async fn config(node: &Node, stale: bool) -> Result<StoredConfig, OpError> {
    if stale {
        return Ok(stored_or_seed(node));
    }
    ops::through_leader(
        node,
        Rpc::AutopilotConfigGet.path(),
        &(),
        ops::HOLD,
        || async { config_local(node) },
    )
    .await
}

/// Writes the configuration (on the leader); false when the compare-and-set failed.
pub async fn set_config_local(node: &Node, update: ConfigUpdate) -> Result<bool, OpError> {
    match ops::write_host_entry(node, Request::Autopilot(update)).await? {
        Response::AutopilotSet(stored) => Ok(stored),
        other => Err(OpError::failed(
            FailureKind::Internal,
            format!("the autopilot entry returned {other:?}"),
        )),
    }
}

/// Writes the configuration through the leader, from any server.
pub async fn set_config(node: &Node, update: ConfigUpdate) -> Result<bool, OpError> {
    ops::through_leader(
        node,
        Rpc::AutopilotConfigSet.path(),
        &update,
        ops::HOLD,
        || set_config_local(node, update.clone()),
    )
    .await
}
