//! Which raft messages from the server port reach openraft: the gate in front of
//! `Raft::vote`, `append_entries` and the snapshot installs.
//!
//! Owns: the admission rules below, and their refusals (403 naming the sender).
//!
//! 1. Every message's terms pass [`crate::raft::guard::Terms::check`] (no term that
//!    openraft cannot increment; no log of a later term than the sender's vote).
//! 2. A vote request is admitted only from a server in this server's raft configuration
//!    (voters and learners). A stranger, or a server removed from the cluster whose
//!    election timer still fires, cannot make the leader step down with a higher term.
//! 3. An append or snapshot from a server outside the configuration is refused while this
//!    server leads or a leader has contacted it within the longest election timeout: a
//!    live cluster takes no orders from strangers. Otherwise it is admitted, with a
//!    warning. That is the joining path (a new server has no configuration until the
//!    leader's first append brings it one) and the recovery of a server that was down
//!    while the configuration changed and the leader became a server it has never heard
//!    of; refusing those would leave it behind for good.
//! 4. A server with no configuration at all (it has not joined or bootstrapped yet)
//!    admits everything that passes rule 1: that is how a cluster forms.
//!
//! What this cannot stop, and what does: a sender that claims to be the current leader
//! (its id, its term) is indistinguishable from it here. Only the transport can tell
//! them apart, so the server port must be behind mutual TLS wherever anything else can
//! reach it. A member that is itself broken can still send vote requests with higher
//! terms (well-behaved servers ask first: `server::election`'s pre-vote), which costs at
//! most an election each time, never data.

use hyper::StatusCode;

use super::Node;
use super::web::Refusal;
use crate::raft::guard::Terms;

/// What a raft message asks of this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// A candidate's vote request.
    Vote,
    /// A leader's append or snapshot.
    Follow,
}

/// Admits `msg` from server `sender`, or refuses it (rules in the module doc).
pub fn admit(node: &Node, ask: Ask, sender: u64, msg: &impl Terms) -> Result<(), Refusal> {
    msg.check().map_err(|e| {
        tracing::warn!(target: "agent.server.raft", "refused a raft message from server {sender:016x}: {e}");
        Refusal::bad_request(e.to_string())
    })?;
    // Read in place: this runs for every append a follower receives.
    let known = {
        let metrics = node.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        membership.nodes().next().is_none() || membership.get_node(&sender).is_some()
    };
    if known {
        return Ok(());
    }
    let refuse = |why: String| {
        tracing::warn!(target: "agent.server.raft", "refused a raft {ask:?} message from server {sender:016x}: {why}");
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("server {sender:016x} is not in this server's raft configuration: {why}"),
        ))
    };
    if ask == Ask::Vote {
        return refuse("only members may ask for votes".into());
    }
    if node.is_leader() {
        return refuse("this server leads".into());
    }
    let lease = node.config.timers.election_max;
    match node.last_contact() {
        Some(d) if d < lease => refuse(format!(
            "a leader contacted this server {} ms ago (lease {} ms)",
            d.as_millis(),
            lease.as_millis()
        )),
        since => {
            tracing::warn!(target: "agent.server.raft",
                "following server {sender:016x}, which is not in this server's raft configuration: \
                 no leader has contacted this server for {}; it may have missed a configuration change",
                since.map_or("ever".to_string(), |d| format!("{} ms", d.as_millis())));
            Ok(())
        }
    }
}
