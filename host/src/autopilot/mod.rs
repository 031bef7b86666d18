//! Autopilot, as Consul runs hashicorp/raft-autopilot: each server's health, the cluster's
//! failure tolerance, promotion of stable non-voters, and removal of dead servers.
//!
//! Owns: the judgement, as pure functions of what the leader observed, so every rule is
//! tested without a cluster:
//! - [`State::next`]: observations of one round → per-server health, `StableSince`,
//!   failure tolerance;
//! - [`plan`]: which non-voters to promote and which dead servers to remove;
//! - [`config`]: the replicated configuration and its JSON;
//! - [`api`]: the health and state documents of the HTTP API.
//!
//! The leader's loop that gathers observations and carries decisions out through raft is
//! `server::autopilot`; nothing here touches raft or the network.
//!
//! What "alive" means without Serf (Consul's gossip): the leader counts a server alive
//! while it has heard from it recently, either a replication acknowledgement (raft's
//! heartbeats and appends, every 100 ms or so) or an answer to autopilot's own light probe
//! (one small request per update interval, which also reports the server's id and
//! version). A server not heard from for two update intervals is `failed`. A server whose
//! address now answers with another server's id no longer exists (its data dir was wiped,
//! or another server took its address): it is `left`, and cleanup treats it as stale.

pub mod api;
pub mod config;
pub mod plan;

use serde::{Deserialize, Serialize};
use std::time::Duration;

pub use config::{AutopilotConfig, ConfigUpdate, StoredConfig};

/// Whether a server is up, as far as the leader can tell (Consul's `NodeStatus`, Serf's
/// member status there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeStatus {
    /// Heard from recently.
    Alive,
    /// Not heard from for two update intervals.
    Failed,
    /// Its address answers as another server: this one is gone.
    Left,
}

impl NodeStatus {
    /// Consul's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Alive => "alive",
            NodeStatus::Failed => "failed",
            NodeStatus::Left => "left",
        }
    }
}

/// A server's place in the raft configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftStatus {
    /// The leader (a voter).
    Leader,
    /// A voter.
    Voter,
    /// A non-voter (an openraft learner): replicated to, not counted in quorums.
    NonVoter,
}

impl RaftStatus {
    /// Consul's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            RaftStatus::Leader => "leader",
            RaftStatus::Voter => "voter",
            RaftStatus::NonVoter => "non-voter",
        }
    }

    /// Whether it votes.
    pub fn is_voter(self) -> bool {
        !matches!(self, RaftStatus::NonVoter)
    }
}

/// What the leader observed of one server in one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// Raft id.
    pub id: u64,
    /// Node name.
    pub name: String,
    /// Server address.
    pub address: String,
    /// The fsmhost version it runs (empty until it answered a probe).
    pub version: String,
    /// Its place in the configuration.
    pub status: RaftStatus,
    /// Up or not.
    pub node_status: NodeStatus,
    /// Since the leader last heard from it (for the leader itself: zero). A server never
    /// heard from counts from when this leader began observing.
    pub last_contact: Duration,
    /// Term of the last log entry it has (as the leader's replication knows it).
    pub last_term: u64,
    /// Index of the last log entry it has.
    pub last_index: u64,
}

/// One server's state: what was observed, and the judgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerState {
    /// The observation.
    pub seen: Observation,
    /// Healthy by the configuration's rules.
    pub healthy: bool,
    /// When `healthy` last changed (ms since the Unix epoch).
    pub stable_since_ms: u64,
}

/// The whole cluster as the leader judged it in one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Every server is healthy.
    pub healthy: bool,
    /// How many voters may fail with a quorum left: healthy voters beyond the quorum.
    pub failure_tolerance: u32,
    /// The leader's id.
    pub leader: u64,
    /// Term of the leader's last log entry.
    pub leader_term: u64,
    /// Index of the leader's last log entry.
    pub leader_index: u64,
    /// Every server of the configuration, by id.
    pub servers: Vec<ServerState>,
    /// When this leader's autopilot judged its first round (ms since the epoch).
    pub first_state_ms: u64,
}

/// The quorum of `voters` voters.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// raft-autopilot's rule: alive, heard from within the threshold, on the leader's term,
/// and within `max_trailing_logs` of its log.
fn is_healthy(
    config: &AutopilotConfig,
    o: &Observation,
    leader_term: u64,
    leader_index: u64,
) -> bool {
    leader_index > 0
        && leader_term > 0
        && o.node_status == NodeStatus::Alive
        && o.last_contact <= config.last_contact_threshold
        && o.last_term == leader_term
        && o.last_index.saturating_add(config.max_trailing_logs) >= leader_index
}

impl State {
    /// Judges one round: each server's health, `StableSince` (kept from `previous` unless
    /// health flipped or the server is new), the cluster's health and failure tolerance.
    pub fn next(
        config: &AutopilotConfig,
        leader: u64,
        (leader_term, leader_index): (u64, u64),
        mut seen: Vec<Observation>,
        previous: Option<&State>,
        now_ms: u64,
    ) -> State {
        seen.sort_by_key(|o| o.id);
        let servers: Vec<ServerState> = seen
            .into_iter()
            .map(|o| {
                let healthy = is_healthy(config, &o, leader_term, leader_index);
                let before = previous.and_then(|p| p.server(o.id));
                let stable_since_ms = match before {
                    Some(b) if b.healthy == healthy => b.stable_since_ms,
                    _ => now_ms,
                };
                ServerState {
                    seen: o,
                    healthy,
                    stable_since_ms,
                }
            })
            .collect();
        let voters = servers.iter().filter(|s| s.seen.status.is_voter()).count();
        let healthy_voters = servers
            .iter()
            .filter(|s| s.seen.status.is_voter() && s.healthy)
            .count();
        State {
            healthy: servers.iter().all(|s| s.healthy),
            failure_tolerance: healthy_voters.saturating_sub(quorum(voters)) as u32,
            leader,
            leader_term,
            leader_index,
            servers,
            first_state_ms: previous.map_or(now_ms, |p| p.first_state_ms),
        }
    }

    /// One server's state.
    pub fn server(&self, id: u64) -> Option<&ServerState> {
        self.servers.iter().find(|s| s.seen.id == id)
    }

    /// The voters' ids, in id order.
    pub fn voters(&self) -> Vec<u64> {
        self.servers
            .iter()
            .filter(|s| s.seen.status.is_voter())
            .map(|s| s.seen.id)
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A healthy voter at the leader's log.
    pub(crate) fn seen(id: u64, status: RaftStatus) -> Observation {
        Observation {
            id,
            name: format!("s{id}"),
            address: format!("127.0.0.1:{}", 8300 + id),
            version: "0.1.0".into(),
            status,
            node_status: NodeStatus::Alive,
            last_contact: Duration::from_millis(20),
            last_term: 3,
            last_index: 100,
        }
    }

    pub(crate) fn cluster(voters: u64, non_voters: u64) -> Vec<Observation> {
        (1..=voters + non_voters)
            .map(|id| {
                let status = match id {
                    1 => RaftStatus::Leader,
                    _ if id <= voters => RaftStatus::Voter,
                    _ => RaftStatus::NonVoter,
                };
                seen(id, status)
            })
            .collect()
    }

    pub(crate) fn judge(seen: Vec<Observation>, previous: Option<&State>, now_ms: u64) -> State {
        State::next(
            &AutopilotConfig::default(),
            1,
            (3, 100),
            seen,
            previous,
            now_ms,
        )
    }

    #[test]
    fn each_rule_of_health() {
        let c = AutopilotConfig::default();
        let ok = seen(2, RaftStatus::Voter);
        assert!(is_healthy(&c, &ok, 3, 100));
        assert!(
            is_healthy(
                &c,
                &Observation {
                    last_index: 0,
                    ..ok.clone()
                },
                3,
                250
            ),
            "at the trailing limit"
        );
        let sick = [
            Observation {
                node_status: NodeStatus::Failed,
                ..ok.clone()
            },
            Observation {
                node_status: NodeStatus::Left,
                ..ok.clone()
            },
            Observation {
                last_contact: Duration::from_millis(201),
                ..ok.clone()
            },
            Observation {
                last_term: 2,
                ..ok.clone()
            },
            Observation {
                last_index: 100,
                ..ok.clone()
            },
        ];
        for (i, o) in sick.iter().enumerate() {
            let leader_index = if i == 4 { 351 } else { 100 };
            assert!(!is_healthy(&c, o, 3, leader_index), "{o:?}");
        }
        assert!(!is_healthy(&c, &ok, 0, 100), "no leader term yet");
        assert!(!is_healthy(&c, &ok, 3, 0), "no leader log yet");
    }

    #[test]
    fn failure_tolerance_is_healthy_voters_beyond_the_quorum() {
        let five = judge(cluster(5, 0), None, 1000);
        assert!(five.healthy);
        assert_eq!(five.failure_tolerance, 2);
        let mut one_down = cluster(5, 0);
        one_down[4].node_status = NodeStatus::Failed;
        let s = judge(one_down.clone(), Some(&five), 2000);
        assert!(!s.healthy);
        assert_eq!(s.failure_tolerance, 1);
        one_down[3].node_status = NodeStatus::Failed;
        one_down[2].node_status = NodeStatus::Failed;
        assert_eq!(
            judge(one_down, None, 0).failure_tolerance,
            0,
            "never negative"
        );
        let with_learner = judge(cluster(3, 1), None, 0);
        assert_eq!(with_learner.failure_tolerance, 1, "non-voters do not count");
        assert_eq!(with_learner.voters(), vec![1, 2, 3]);
    }

    #[test]
    fn stable_since_moves_only_when_health_flips() {
        let first = judge(cluster(3, 0), None, 1000);
        assert!(first.servers.iter().all(|s| s.stable_since_ms == 1000));
        let second = judge(cluster(3, 0), Some(&first), 2000);
        assert!(second.servers.iter().all(|s| s.stable_since_ms == 1000));
        assert_eq!(second.first_state_ms, 1000);
        let mut obs = cluster(3, 0);
        obs[2].last_contact = Duration::from_secs(1);
        let third = judge(obs, Some(&second), 3000);
        assert_eq!(third.server(3).unwrap().stable_since_ms, 3000);
        assert_eq!(third.server(2).unwrap().stable_since_ms, 1000);
        let fourth = judge(cluster(4, 0), Some(&third), 4000);
        assert_eq!(
            fourth.server(3).unwrap().stable_since_ms,
            4000,
            "healthy again"
        );
        assert_eq!(
            fourth.server(4).unwrap().stable_since_ms,
            4000,
            "new server"
        );
    }
}
