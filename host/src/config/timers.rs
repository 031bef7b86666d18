//! Raft's timers, from `performance.raft_multiplier` (Consul's scaling: 1 is the fastest),
//! and the leases derived from them; the table in the README lists them per multiplier.

use std::time::Duration;

/// Raft timers, derived from `performance.raft_multiplier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTimers {
    /// How often the leader sends heartbeats.
    pub heartbeat: Duration,
    /// Election timeout range: a follower that hears nothing for a random time in it
    /// starts an election.
    pub election_min: Duration,
    /// Upper end of the election timeout range.
    pub election_max: Duration,
}

impl RaftTimers {
    /// Timers for a multiplier (Consul's scaling: 1 is the fastest).
    pub fn for_multiplier(m: u32) -> Self {
        let m = m.max(1);
        RaftTimers {
            heartbeat: Duration::from_millis(100 * u64::from(m)),
            election_min: Duration::from_millis(1000 * u64::from(m)),
            election_max: Duration::from_millis(2000 * u64::from(m)),
        }
    }

    /// How long a server refuses to vote for anyone after a leader last contacted it
    /// (openraft's leader lease, given to it as `election_timeout_max`): below
    /// [`RaftTimers::election_min`], so a follower whose leader died grants the first
    /// candidate's vote, and above [`RaftTimers::lease`], which relies on it.
    pub fn vote_lease(&self) -> Duration {
        self.election_min * 4 / 5
    }

    /// How long a leader may serve a `default` read locally after the send time of the
    /// heartbeat a quorum last acknowledged: each of those servers refuses every other
    /// candidate for [`RaftTimers::vote_lease`] after receiving it, so no other leader can
    /// exist yet. A tenth is kept back for clock-rate differences between servers.
    pub fn lease(&self) -> Duration {
        self.vote_lease() * 9 / 10
    }

    /// How long a leader keeps leading without a quorum acknowledging it before it steps
    /// down (check-quorum): a leader cut off from the others stops taking writes it could
    /// never commit, and its clients are sent elsewhere.
    pub fn step_down_after(&self) -> Duration {
        self.election_max
    }
}
