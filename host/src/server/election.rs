//! Elections: when a follower campaigns (after a pre-vote), and when a leader that no
//! quorum answers steps down (check-quorum).
//!
//! Owns: the election timer (openraft's own is off: `enable_elect = false` in
//! `server::raft_config`), the pre-vote round and the answers to it ([`Rpc::PreVote`]),
//! and the step-down.
//!
//! Why: openraft 0.9 has neither etcd's PreVote nor its CheckQuorum. Its own timer made a
//! follower that lost contact raise its term and campaign, so a partitioned follower
//! returning with a higher term made the healthy leader step down; and it waited the
//! leader lease plus the election timeout, plus twice the longest timeout more when it had
//! seen a longer log: 3 to 8 s before a dead leader was replaced at multiplier 1.
//!
//! The rules (timers from [`crate::config::RaftTimers`]):
//! 1. A voter that has heard from no leader for its election timeout (random in
//!    `[election_min, election_max)`, drawn again after each attempt) asks every other
//!    voter whether it would vote for it. Only when a quorum of every configuration would
//!    (itself included) does it start an election ([`openraft::raft::Trigger::elect`]),
//!    which openraft's vote rules decide as before. The only voter of a configuration
//!    campaigns without asking.
//! 2. A server says yes ([`answer`]) only when it is not leading, no leader has contacted
//!    it (and it has not started) within `vote_lease`, it has neither started an election
//!    nor granted a pre-vote within `vote_lease` (one pre-vote granted at a time, as one
//!    vote per term: two servers whose pre-votes crossed would otherwise both campaign,
//!    and the second's higher term unseat the first as it wins, a split vote costing
//!    another timeout, seen in the nemesis runs), the candidate is a voter, the term
//!    it would campaign in is above the server's own, and its log is at least as up to
//!    date.
//!    A refusal that reports a term at or above the one asked for makes the asker raise its
//!    own term to it first ([`catch_up_term`], as etcd's candidate adopts the term of a
//!    refusal), so servers whose terms diverged in a lost election still elect.
//! 3. A leader that no quorum has accepted an append from for `step_down_after` steps
//!    down: through [`openraft::Raft::vote`] it grants its vote in the next term to server
//!    id 0, which no server ever has (`server::random_node_id`). openraft leaves leadership
//!    as for any higher vote, and follows no one until an election.
//! 4. A server that refuses a pre-vote only because the candidate's log is behind its own
//!    (so it is past its leader's lease too) starts its own pre-vote at once instead of
//!    at its timeout: with writes in flight when a leader dies, the follower whose timer
//!    fires first often has the shorter log, and without this the election waited for
//!    the other's timer (BENCHMARKS.md, "Reliability"). At most once per heartbeat, and
//!    only past the lease.
//!
//! Why this is safe: pre-vote only decides whether to call `elect`; which candidate wins,
//! and that at most one wins a term, is still openraft's vote handling, unchanged. A
//! server refuses every candidate for `vote_lease` after its leader's last append
//! (openraft's leader lease), which is what lets a leader serve `default` reads for the
//! shorter `lease` (`ops::lease_holds`); the timeouts of rule 1 start at `election_min`,
//! above `vote_lease`, so a follower whose leader died grants the first candidate. The
//! step-down's vote is uncommitted and names no server, so it cannot make a leader; it
//! raises this server's term by one, and any leader the others elect meanwhile has a
//! committed vote, which openraft prefers over it when the two meet. Rule 4 only moves a
//! pre-vote earlier, and only on a server already past its lease (the refusal's lease
//! check comes before its log check).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::raft::VoteRequest;
use openraft::{CommittedLeaderId, LogId, ServerState, Vote};

use super::Node;
use crate::protocol::{PreVoteReply, PreVoteRequest, Rpc, TARGET_PARAM};
use crate::raft::guard::MAX_TERM;

/// The server id a stepping-down leader votes for: ids are never 0.
const NOBODY: u64 = 0;

/// What one round of the driver needs from raft's metrics.
struct View {
    term: u64,
    leading: bool,
    configs: Vec<BTreeSet<u64>>,
}

impl View {
    fn read(node: &Node) -> View {
        let metrics = node.raft.metrics();
        let m = metrics.borrow();
        View {
            term: m.vote.leader_id().term,
            leading: m.current_leader == Some(node.id) && m.state == ServerState::Leader,
            configs: m.membership_config.membership().get_joint_config().clone(),
        }
    }

    fn is_voter(&self, id: u64) -> bool {
        self.configs.iter().any(|c| c.contains(&id))
    }

    /// Whether `id` is every configuration's only voter.
    fn sole_voter(&self, id: u64) -> bool {
        !self.configs.is_empty() && self.configs.iter().all(|c| c.len() == 1 && c.contains(&id))
    }

    /// Whether `granted` holds a quorum of every configuration.
    fn quorum(&self, granted: &BTreeSet<u64>) -> bool {
        !self.configs.is_empty()
            && self
                .configs
                .iter()
                .all(|c| c.intersection(granted).count() > c.len() / 2)
    }
}

/// A fresh election timeout, random in `[election_min, election_max)`.
fn election_timeout(node: &Node) -> Duration {
    let t = node.config.timers;
    let span = t.election_max.saturating_sub(t.election_min).as_millis() as u64;
    let mut buf = [0u8; 8];
    let r = match getrandom::fill(&mut buf) {
        Ok(()) => u64::from_le_bytes(buf),
        // No randomness: spread the servers by their ids instead.
        Err(_) => node.id,
    };
    t.election_min + Duration::from_millis(r % span.max(1))
}

/// Runs elections and step-downs until the task is aborted (rules in the module doc).
pub async fn run(node: Arc<Node>) {
    // Fine-grained, so a timeout is acted on within a hundredth of a heartbeat or so of
    // when it ends (a round only reads raft's metrics and the contact clock).
    let mut tick = tokio::time::interval(node.config.timers.heartbeat / 10);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut timeout = election_timeout(&node);
    let mut attempt = Instant::now();
    let mut leading: Option<Leading> = None;
    let mut term = 0;
    loop {
        let nudged = tokio::select! {
            _ = tick.tick() => false,
            () = node.campaign_now.notified() => true,
        };
        let view = View::read(&node);
        // A new term (a leader elected, or a vote cast) draws a new timeout, as etcd does
        // when a server becomes a follower: otherwise a server that has not campaigned for
        // a while keeps one draw across many leaders.
        if view.term != term {
            term = view.term;
            timeout = election_timeout(&node);
        }
        if view.leading {
            let state = leading.get_or_insert_with(|| Leading::new(view.term));
            if state.term != view.term {
                *state = Leading::new(view.term);
            }
            state.check_quorum(&node, &view).await;
            attempt = Instant::now();
            continue;
        }
        leading = None;
        // A candidate whose election did not end (a split vote) tries again after its
        // timeout, as a follower would.
        if !view.is_voter(node.id) {
            continue;
        }
        let sole = view.sole_voter(node.id);
        // A server that granted a pre-vote lets that candidate campaign first (rule 2).
        if !sole
            && node
                .last_campaign()
                .is_some_and(|d| d < node.config.timers.vote_lease())
        {
            continue;
        }
        let silent = node.last_contact().is_none_or(|d| d >= timeout);
        // Rule 4: a nudge stands for the timeout once the leader's lease is over here,
        // at most once per heartbeat.
        let early = nudged
            && node.last_contact_or_start() >= node.config.timers.vote_lease()
            && attempt.elapsed() >= node.config.timers.heartbeat;
        if !sole && !early && (!silent || attempt.elapsed() < timeout) {
            continue;
        }
        if sole && attempt.elapsed() < node.config.timers.heartbeat {
            continue;
        }
        attempt = Instant::now();
        timeout = election_timeout(&node);
        let granted = sole || {
            let (granted, higher) = pre_vote(&node, &view).await;
            if let Some(term) = higher {
                catch_up_term(&node, term).await;
            }
            granted
        };
        if granted {
            node.note_campaign();
            tracing::info!(target: "agent.server.raft",
                "starting an election for term {}", view.term + 1);
            if let Err(e) = node.raft.trigger().elect().await {
                tracing::warn!(target: "agent.server.raft", "starting an election: {e}");
            }
        }
    }
}

/// A leadership this server holds, watched for a quorum's acknowledgement.
struct Leading {
    term: u64,
    since: Instant,
    /// Whether this leadership already tried to step down (logged once).
    stepping_down: bool,
    /// Whether raft refused the step-down with an error (logged once).
    failed: bool,
}

impl Leading {
    fn new(term: u64) -> Self {
        Leading {
            term,
            since: Instant::now(),
            stepping_down: false,
            failed: false,
        }
    }

    /// Steps down when no quorum has accepted an append for `step_down_after` (rule 3).
    async fn check_quorum(&mut self, node: &Node, view: &View) {
        let limit = node.config.timers.step_down_after();
        let now = Instant::now();
        if !view.is_voter(node.id) || now.duration_since(self.since) < limit {
            return;
        }
        let last = node
            .acks
            .quorum_accepted(node.id, self.term, &view.configs, now)
            .unwrap_or(self.since);
        let silent = now.duration_since(last);
        if silent < limit {
            return;
        }
        if !self.stepping_down {
            tracing::warn!(target: "agent.server.raft",
                "no quorum has acknowledged this leader for {} ms (limit {} ms): stepping down",
                silent.as_millis(), limit.as_millis());
            self.stepping_down = true;
        }
        // A log id no log of this term can be ahead of, so the vote is not refused for the
        // entries this leader appended meanwhile.
        let beyond = LogId::new(CommittedLeaderId::new(self.term, node.id), u64::MAX);
        let req = VoteRequest::new(Vote::new(self.term + 1, NOBODY), Some(beyond));
        match node.raft.vote(req).await {
            Ok(reply) if reply.vote_granted => {
                tracing::warn!(target: "agent.server.raft",
                    "stepped down: no longer the leader (term {})", self.term + 1);
            }
            Ok(reply) => {
                tracing::debug!(target: "agent.server.raft",
                    "step-down not taken yet (vote {}), retrying", reply.vote);
            }
            // Raft itself has stopped (a storage error, say): said once, not every tick.
            Err(e) if !self.failed => {
                tracing::warn!(target: "agent.server.raft", "stepping down: {e}");
                self.failed = true;
            }
            Err(_) => {}
        }
    }
}

/// Raises this server's term to `term` without campaigning (etcd's candidate adopting
/// the higher term of a pre-vote refusal): it grants its vote in `term` to id 0, as the
/// step-down does. Without it, a server whose term rose in an election it lost (its log
/// was behind) refuses every pre-vote of a peer with a longer log but a lower term, while
/// that peer refuses its pre-votes for its log: neither ever campaigns again (seen in the
/// nemesis runs until the old leader came back).
async fn catch_up_term(node: &Node, term: u64) {
    let beyond = LogId::new(CommittedLeaderId::new(term, NOBODY), u64::MAX);
    match node
        .raft
        .vote(VoteRequest::new(Vote::new(term, NOBODY), Some(beyond)))
        .await
    {
        Ok(reply) if reply.vote_granted => tracing::info!(target: "agent.server.raft",
            "raised this server's term to {term}, a peer's, before its next pre-vote"),
        Ok(_) => {}
        Err(e) => tracing::debug!(target: "agent.server.raft", "raising the term to {term}: {e}"),
    }
}

/// Asks every other voter whether it would vote for this server (rule 1); true when a
/// quorum of every configuration would. Stops asking as soon as that is known. Also the
/// highest term a refusal reported, when it is at or above the term asked for.
async fn pre_vote(node: &Arc<Node>, view: &View) -> (bool, Option<u64>) {
    let req = PreVoteRequest {
        candidate: node.id,
        term: view.term + 1,
        last_log_id: node.raft.data_metrics().borrow().last_log,
    };
    let membership = node.membership();
    let wait = node.config.timers.election_min / 2;
    let mut asks = tokio::task::JoinSet::new();
    let peers: BTreeSet<u64> = view.configs.iter().flatten().copied().collect();
    for peer in peers.into_iter().filter(|p| *p != node.id) {
        let Some(info) = membership.get_node(&peer) else {
            continue;
        };
        let (client, addr, req) = (node.client.clone(), info.rpc_addr.clone(), req.clone());
        let path = format!("{}?{TARGET_PARAM}={peer:016x}", Rpc::PreVote.path());
        asks.spawn(async move {
            let reply = client
                .call::<_, PreVoteReply>(&addr, &path, &req, wait)
                .await;
            (peer, reply)
        });
    }
    let mut granted = BTreeSet::from([node.id]);
    let mut refusals = Vec::new();
    let mut higher: Option<u64> = None;
    while let Some(done) = asks.join_next().await {
        let Ok((peer, reply)) = done else { continue };
        match reply {
            Ok(r) if r.granted => {
                granted.insert(peer);
                if view.quorum(&granted) {
                    return (true, None);
                }
            }
            Ok(r) => {
                if r.term >= req.term && r.term < MAX_TERM {
                    higher = Some(higher.map_or(r.term, |h| h.max(r.term)));
                }
                refusals.push(format!("{peer:016x}: {}", r.reason));
            }
            Err(e) => refusals.push(format!("{peer:016x}: {e}")),
        }
    }
    if view.quorum(&granted) {
        return (true, None);
    }
    tracing::info!(target: "agent.server.raft",
        "pre-vote for term {} not granted by a quorum: {}", req.term, refusals.join("; "));
    (false, higher)
}

/// This server's answer to a pre-vote (rule 2).
pub fn answer(node: &Node, req: &PreVoteRequest) -> PreVoteReply {
    let view = View::read(node);
    let refuse = |reason: String| PreVoteReply {
        granted: false,
        term: view.term,
        reason,
    };
    if !view.is_voter(req.candidate) {
        return refuse("the candidate is not a voter in this server's configuration".into());
    }
    if view.leading {
        return refuse(format!("this server leads term {}", view.term));
    }
    let lease = node.config.timers.vote_lease();
    let since = node.last_contact_or_start();
    if since < lease {
        return refuse(format!(
            "a leader contacted this server (or it started) {} ms ago (lease {} ms)",
            since.as_millis(),
            lease.as_millis()
        ));
    }
    if let Some(since) = node.last_campaign().filter(|d| *d < lease) {
        return refuse(format!(
            "this server started an election, or granted a pre-vote, {} ms ago",
            since.as_millis()
        ));
    }
    if req.term >= MAX_TERM || req.term <= view.term {
        return refuse(format!(
            "term {} is not above this server's term {}",
            req.term, view.term
        ));
    }
    let mine = node.raft.data_metrics().borrow().last_log;
    if matches!(
        req.last_log_id.partial_cmp(&mine),
        None | Some(std::cmp::Ordering::Less)
    ) {
        // Rule 4: this server would have granted but for its longer log, so it is the
        // better candidate; it asks now instead of at its own timeout.
        node.campaign_now.notify_one();
        return refuse(format!(
            "the candidate's log ends at {:?}, before this server's {mine:?}",
            req.last_log_id
        ));
    }
    node.note_campaign();
    PreVoteReply {
        granted: true,
        term: view.term,
        reason: String::new(),
    }
}
