//! What autopilot changes in the raft configuration: promotions of stable non-voters and
//! removals of dead servers, decided from one round's [`State`].
//!
//! Invariants (raft-autopilot's, enforced here):
//! - promotion only: a voter is never demoted and the leader never moved;
//! - a non-voter is promoted once healthy for `server_stabilization_time`, a wait that
//!   applies only once this leader's autopilot has been running that long (before that it
//!   cannot know how long anyone has been healthy);
//! - removals come in the order stale non-voters, stale voters, failed non-voters, failed
//!   voters, by id within each; in one round at most (servers − 1) / 2 go, no voter once
//!   that is used up, and none that would leave fewer than `min_quorum`; the leader is
//!   never removed (it is alive);
//! - nothing changes while the voters heard from (the leader included) are fewer than a
//!   quorum: openraft keeps a leader that lost its quorum in place, and a membership change
//!   it proposed then could only commit once servers it wanted removed came back.

use std::time::Duration;

use super::{AutopilotConfig, NodeStatus, State};

/// The non-voters to promote now.
pub fn promotions(config: &AutopilotConfig, state: &State, now_ms: u64) -> Vec<u64> {
    let running = Duration::from_millis(now_ms.saturating_sub(state.first_state_ms));
    let wait = if running > config.server_stabilization_time {
        config.server_stabilization_time
    } else {
        Duration::ZERO
    };
    state
        .servers
        .iter()
        .filter(|s| !s.seen.status.is_voter() && s.healthy)
        .filter(|s| Duration::from_millis(now_ms.saturating_sub(s.stable_since_ms)) >= wait)
        .map(|s| s.seen.id)
        .collect()
}

/// Why a dead server is a candidate for removal, in the order candidates are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    /// A non-voter that no longer exists (`left`).
    StaleNonVoter,
    /// A voter that no longer exists.
    StaleVoter,
    /// A non-voter not heard from (`failed`).
    FailedNonVoter,
    /// A voter not heard from.
    FailedVoter,
}

/// Why a candidate was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Removing it would leave fewer than `min_quorum` voters.
    MinQuorum,
    /// Removing it would remove a majority of the voters at once.
    Majority,
}

impl Kept {
    /// The log line's reason.
    pub fn reason(self) -> &'static str {
        match self {
            Kept::MinQuorum => {
                "will not remove server node as it would leave less voters than the minimum number allowed"
            }
            Kept::Majority => {
                "will not remove server node as removal of a majority of voting servers is not safe"
            }
        }
    }
}

/// One candidate and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The server.
    pub id: u64,
    /// Why it is a candidate.
    pub category: Category,
    /// `Ok`: remove it; `Err`: keep it, and why.
    pub decision: Result<(), Kept>,
}

/// The dead servers to remove now, and the ones kept, in the order they are handled.
/// Nothing when `cleanup_dead_servers` is off. Every server of the configuration is a
/// potential voter (non-voters are promoted once stable), so non-voters count toward the
/// limits as raft-autopilot counts potential voters.
pub fn removals(config: &AutopilotConfig, state: &State) -> Vec<Removal> {
    if !config.cleanup_dead_servers {
        return Vec::new();
    }
    let mut candidates: Vec<(Category, u64, bool)> = state
        .servers
        .iter()
        .filter(|s| s.seen.id != state.leader)
        .filter_map(|s| {
            let voter = s.seen.status.is_voter();
            let category = match (s.seen.node_status, voter) {
                (NodeStatus::Alive, _) => return None,
                (NodeStatus::Left, false) => Category::StaleNonVoter,
                (NodeStatus::Left, true) => Category::StaleVoter,
                (NodeStatus::Failed, false) => Category::FailedNonVoter,
                (NodeStatus::Failed, true) => Category::FailedVoter,
            };
            Some((category, s.seen.id, voter))
        })
        .collect();
    candidates.sort();
    let potential = state.servers.len() as i64;
    let mut max_removal = (potential - 1) / 2;
    let mut removed = 0i64;
    let mut out = Vec::new();
    for (category, id, voter) in candidates {
        let decision = if potential - removed - 1 < i64::from(config.min_quorum) {
            Err(Kept::MinQuorum)
        } else if voter && max_removal < 1 {
            Err(Kept::Majority)
        } else {
            max_removal -= 1;
            removed += 1;
            Ok(())
        };
        out.push(Removal {
            id,
            category,
            decision,
        });
    }
    out
}

/// Whether the voters heard from within the contact threshold, the leader included, make
/// a quorum: the condition for any membership change.
pub fn has_quorum(config: &AutopilotConfig, state: &State) -> bool {
    let voters: Vec<_> = state
        .servers
        .iter()
        .filter(|s| s.seen.status.is_voter())
        .collect();
    let in_touch = voters
        .iter()
        .filter(|s| {
            s.seen.node_status == NodeStatus::Alive
                && s.seen.last_contact <= config.last_contact_threshold
        })
        .count();
    in_touch >= super::quorum(voters.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autopilot::tests::{cluster, judge};
    use crate::autopilot::{NodeStatus, RaftStatus};

    fn removed(r: &[Removal]) -> Vec<u64> {
        r.iter()
            .filter(|r| r.decision.is_ok())
            .map(|r| r.id)
            .collect()
    }

    #[test]
    fn promotes_stable_non_voters_only() {
        let config = AutopilotConfig::default(); // 10 s
        let first = judge(cluster(3, 2), None, 0);
        // Autopilot has not run for the stabilization time yet: no wait.
        assert_eq!(promotions(&config, &first, 5_000), vec![4, 5]);
        let mut obs = cluster(3, 2);
        obs[4].last_contact = Duration::from_secs(5);
        let later = judge(obs, Some(&first), 20_000);
        // Running for 20 s: 4 has been healthy since 0; 5 turned unhealthy at 20 s.
        assert_eq!(promotions(&config, &later, 20_000), vec![4]);
        let recovered = judge(cluster(3, 2), Some(&later), 25_000);
        assert_eq!(
            promotions(&config, &recovered, 25_000),
            vec![4],
            "5 stable for 0 s"
        );
        assert_eq!(promotions(&config, &recovered, 34_999), vec![4], "9.999 s");
        assert_eq!(promotions(&config, &recovered, 35_000), vec![4, 5]);
        assert!(promotions(&config, &judge(cluster(5, 0), None, 0), 0).is_empty());
    }

    fn with_status(voters: u64, non_voters: u64, dead: &[(u64, NodeStatus)]) -> State {
        let mut obs = cluster(voters, non_voters);
        for (id, status) in dead {
            obs[*id as usize - 1].node_status = *status;
        }
        judge(obs, None, 0)
    }

    #[test]
    fn removes_in_raft_autopilots_order_within_its_limits() {
        let config = AutopilotConfig::default();
        let s = with_status(
            5,
            2,
            &[
                (5, NodeStatus::Failed),
                (3, NodeStatus::Left),
                (7, NodeStatus::Failed),
                (6, NodeStatus::Left),
            ],
        );
        let r = removals(&config, &s);
        let order: Vec<(u64, Category)> = r.iter().map(|r| (r.id, r.category)).collect();
        assert_eq!(
            order,
            vec![
                (6, Category::StaleNonVoter),
                (3, Category::StaleVoter),
                (7, Category::FailedNonVoter),
                (5, Category::FailedVoter),
            ]
        );
        // 7 servers: at most 3 in one round, and the last voter is kept.
        assert_eq!(removed(&r), vec![6, 3, 7]);
        assert_eq!(r[3].decision, Err(Kept::Majority));
    }

    #[test]
    fn no_change_without_a_quorum_in_touch() {
        let config = AutopilotConfig::default();
        assert!(has_quorum(
            &config,
            &with_status(3, 0, &[(3, NodeStatus::Failed)])
        ));
        let lost = with_status(3, 2, &[(2, NodeStatus::Failed), (3, NodeStatus::Failed)]);
        assert!(
            !has_quorum(&config, &lost),
            "1 of 3 voters; non-voters do not count"
        );
        let mut obs = cluster(3, 0);
        obs[1].last_contact = Duration::from_secs(2);
        obs[2].last_contact = Duration::from_secs(2);
        assert!(
            !has_quorum(&config, &judge(obs, None, 0)),
            "alive but out of touch"
        );
    }

    #[test]
    fn never_a_majority_at_once() {
        let config = AutopilotConfig::default();
        // 5 voters, 3 failed: at most (5-1)/2 = 2 go.
        let s = with_status(
            5,
            0,
            &[
                (2, NodeStatus::Failed),
                (3, NodeStatus::Failed),
                (4, NodeStatus::Failed),
            ],
        );
        let r = removals(&config, &s);
        assert_eq!(removed(&r), vec![2, 3]);
        assert_eq!(r[2].decision, Err(Kept::Majority));
        // 2 voters, 1 failed: (2-1)/2 = 0.
        let r = removals(&config, &with_status(2, 0, &[(2, NodeStatus::Failed)]));
        assert_eq!(r[0].decision, Err(Kept::Majority));
        // One of 5 failed: removed.
        assert_eq!(
            removed(&removals(
                &config,
                &with_status(5, 0, &[(5, NodeStatus::Failed)])
            )),
            vec![5]
        );
    }

    #[test]
    fn never_below_min_quorum() {
        let config = AutopilotConfig {
            min_quorum: 3,
            ..AutopilotConfig::default()
        };
        assert_eq!(
            removed(&removals(
                &config,
                &with_status(4, 0, &[(4, NodeStatus::Failed)])
            )),
            vec![4]
        );
        let r = removals(&config, &with_status(3, 0, &[(3, NodeStatus::Failed)]));
        assert_eq!(r[0].decision, Err(Kept::MinQuorum));
        // 5 voters, 3 failed, min 3: only two may go; 3 is also a majority cap.
        let r = removals(
            &config,
            &with_status(
                5,
                0,
                &[
                    (3, NodeStatus::Failed),
                    (4, NodeStatus::Failed),
                    (5, NodeStatus::Failed),
                ],
            ),
        );
        assert_eq!(removed(&r), vec![3, 4]);
        assert_eq!(r[2].decision, Err(Kept::MinQuorum));
    }

    #[test]
    fn nothing_when_cleanup_is_off_and_never_the_leader() {
        let off = AutopilotConfig {
            cleanup_dead_servers: false,
            ..AutopilotConfig::default()
        };
        assert!(removals(&off, &with_status(5, 0, &[(5, NodeStatus::Failed)])).is_empty());
        let mut obs = cluster(3, 0);
        obs[0].node_status = NodeStatus::Failed;
        assert_eq!(obs[0].status, RaftStatus::Leader);
        assert!(removals(&AutopilotConfig::default(), &judge(obs, None, 0)).is_empty());
    }
}
