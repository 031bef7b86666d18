//! What a raft message from the network must satisfy before openraft sees it.
//!
//! Owns: the term bound ([`MAX_TERM`]), the consistency of the terms one message carries
//! ([`Terms::check`]), for requests the server port receives and answers this server's
//! requests get back.
//!
//! Why it exists: openraft trusts its peers. It computes the next term as `term + 1` and
//! unwraps the vote it then stores for itself (`Engine::elect`), so one message carrying
//! the term `u64::MAX` made every server that saw it panic on its next election, and again
//! on every restart (the term is on disk). A term this module refuses never reaches
//! openraft, so it is never stored.
//!
//! Architecture invariant: every vote a server-port request or a raft answer carries goes
//! through [`Terms::check`] before it is handed to openraft (`server/rpc.rs` for
//! requests, `raft/network.rs` for answers). Who may send raft messages at all (membership,
//! leases) is decided by the server (`server/raft_gate.rs`), which knows the cluster.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{LogId, Vote};

use super::TypeConfig;

/// Terms at or above this are refused. No real cluster gets near it: an election every
/// millisecond would take 292 million years. It keeps openraft's `term + 1` far from
/// overflow, however many elections follow.
pub const MAX_TERM: u64 = 1 << 63;

/// Why a raft message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermError {
    /// A vote's term is at or above [`MAX_TERM`].
    #[error(
        "term {term} is refused: terms at or above 2^63 cannot come from a real cluster \
         (the sender is broken or hostile)"
    )]
    Unreal {
        /// The term.
        term: u64,
    },
    /// A log id in the message has a term above the message's vote: no leader writes
    /// entries of a later term than its own.
    #[error(
        "the message's {what} has term {log_term}, above its vote's term {vote_term}: \
         no leader writes entries of a later term (the sender is broken or hostile)"
    )]
    LogAheadOfVote {
        /// Which log id.
        what: &'static str,
        /// Its term.
        log_term: u64,
        /// The vote's term.
        vote_term: u64,
    },
}

/// A message's vote, and the log ids it names with what each is.
pub type VoteAndLogs<'a> = (Option<&'a Vote<u64>>, Vec<(&'static str, LogId<u64>)>);

/// A raft message whose terms can be checked.
pub trait Terms {
    /// The vote the message carries, and the log ids it names.
    fn vote_and_logs(&self) -> VoteAndLogs<'_>;

    /// Refuses the message if its vote's term is at or above [`MAX_TERM`], or if it names
    /// a log id of a later term than its vote.
    fn check(&self) -> Result<(), TermError> {
        let (vote, logs) = self.vote_and_logs();
        let Some(vote) = vote else { return Ok(()) };
        let vote_term = vote.leader_id().term;
        if vote_term >= MAX_TERM {
            return Err(TermError::Unreal { term: vote_term });
        }
        match logs
            .into_iter()
            .find(|(_, id)| id.leader_id.term > vote_term)
        {
            Some((what, id)) => Err(TermError::LogAheadOfVote {
                what,
                log_term: id.leader_id.term,
                vote_term,
            }),
            None => Ok(()),
        }
    }
}

/// A vote with at most one log id, named `what`.
fn with_log<'a>(
    vote: &'a Vote<u64>,
    what: &'static str,
    id: Option<LogId<u64>>,
) -> VoteAndLogs<'a> {
    (Some(vote), id.map(|id| (what, id)).into_iter().collect())
}

impl Terms for AppendEntriesRequest<TypeConfig> {
    fn vote_and_logs(&self) -> VoteAndLogs<'_> {
        let mut logs: Vec<(&'static str, LogId<u64>)> = Vec::with_capacity(2);
        logs.extend(self.prev_log_id.map(|id| ("prev_log_id", id)));
        logs.extend(self.leader_commit.map(|id| ("leader_commit", id)));
        // Entries are in order: the last has the highest term.
        logs.extend(self.entries.last().map(|e| ("last entry", e.log_id)));
        (Some(&self.vote), logs)
    }
}

impl Terms for VoteRequest<u64> {
    fn vote_and_logs(&self) -> VoteAndLogs<'_> {
        with_log(&self.vote, "last_log_id", self.last_log_id)
    }
}

impl Terms for InstallSnapshotRequest<TypeConfig> {
    fn vote_and_logs(&self) -> VoteAndLogs<'_> {
        with_log(&self.vote, "snapshot's last_log_id", self.meta.last_log_id)
    }
}

impl Terms for AppendEntriesResponse<u64> {
    fn vote_and_logs(&self) -> VoteAndLogs<'_> {
        match self {
            AppendEntriesResponse::HigherVote(v) => (Some(v), Vec::new()),
            _ => (None, Vec::new()),
        }
    }
}

impl Terms for VoteResponse<u64> {
    fn vote_and_logs(&self) -> VoteAndLogs<'_> {
        // The voter's last log id may be of any term up to its own vote's.
        with_log(&self.vote, "last_log_id", self.last_log_id)
    }
}

impl Terms for InstallSnapshotResponse<u64> {
    fn vote_and_logs(&self) -> VoteAndLogs<'_> {
        with_log(&self.vote, "", None)
    }
}

impl Terms for SnapshotResponse<u64> {
    fn vote_and_logs(&self) -> VoteAndLogs<'_> {
        with_log(&self.vote, "", None)
    }
}

/// A vote and a snapshot's metadata: what a streamed snapshot's head carries.
impl Terms for crate::protocol::SnapshotHead {
    fn vote_and_logs(&self) -> VoteAndLogs<'_> {
        with_log(&self.vote, "snapshot's last_log_id", self.meta.last_log_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn log_id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn append(term: u64, entry_term: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(term, 1),
            prev_log_id: Some(log_id(1, 1)),
            entries: vec![openraft::Entry {
                log_id: log_id(entry_term, 2),
                payload: EntryPayload::Blank,
            }],
            leader_commit: Some(log_id(1, 1)),
        }
    }

    #[test]
    fn real_terms_pass() {
        assert_eq!(append(5, 5).check(), Ok(()));
        assert_eq!(append(MAX_TERM - 1, 3).check(), Ok(()));
        let v = VoteRequest::new(Vote::new(7, 2), Some(log_id(6, 10)));
        assert_eq!(v.check(), Ok(()));
        assert_eq!(AppendEntriesResponse::<u64>::Success.check(), Ok(()));
    }

    #[test]
    fn a_term_that_cannot_be_incremented_is_refused() {
        for term in [u64::MAX, u64::MAX - 1, MAX_TERM] {
            assert_eq!(append(term, 1).check(), Err(TermError::Unreal { term }));
            let v = VoteRequest::new(Vote::new(term, 0xBAD), None);
            assert_eq!(v.check(), Err(TermError::Unreal { term }));
            let r = AppendEntriesResponse::HigherVote(Vote::new(term, 3));
            assert_eq!(r.check(), Err(TermError::Unreal { term }));
            let r = SnapshotResponse::new(Vote::new(term, 3));
            assert!(r.check().is_err());
        }
        let e = append(u64::MAX, 1).check().unwrap_err().to_string();
        assert!(e.contains("18446744073709551615"), "{e}");
    }

    #[test]
    fn a_log_id_of_a_later_term_than_the_vote_is_refused() {
        assert_eq!(
            append(5, 6).check(),
            Err(TermError::LogAheadOfVote {
                what: "last entry",
                log_term: 6,
                vote_term: 5
            })
        );
        let v = VoteRequest::new(Vote::new(7, 2), Some(log_id(u64::MAX, 10)));
        assert!(matches!(
            v.check(),
            Err(TermError::LogAheadOfVote {
                what: "last_log_id",
                ..
            })
        ));
    }
}
