//! The openraft state machine: committed entries, in log order, into the [`Fsm`].
//!
//! Owns: the last applied log id and the last membership seen in the log (kept beside the
//! FSM, which is in memory: after a restart openraft replays the log from the start, up
//! to the committed id the log store saved).
//!
//! Invariants: a plugin command's outcome, success or failure, is the entry's response on
//! every server; blank and membership entries only advance the applied id.
//!
//! Indexes: each plugin command is applied at its own FSM index, one more than the last
//! command's, whether it came alone or in a [`Request::Batch`]. The FSM index stamps the
//! store's transaction (Consul's `ModifyIndex`, `X-Consul-Index`) and is derived from the
//! log alone, so every server assigns the same one. It differs from the raft index, which
//! also counts blank and membership entries and gives a batch one index. A failure of
//! this server's own (no instance slot) is retried, never recorded as the outcome; if it
//! persists it is a storage error, which stops the node loudly rather than diverge.
//!
//! Snapshots of the state store are the "Snapshots" issue: until then the raft config
//! never builds one (`SnapshotPolicy::Never`) and logs are never purged, so a new or
//! lagging server catches up from the log.

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError};
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use super::{
    LogEntry, LogId, NodeInfo, Outcome, Request, Response, StorageError, StoredMembership,
    TypeConfig,
};
use crate::fsm::{self, Fsm};

/// How often a command that found no free instance slot is retried before the node stops.
const UNAVAILABLE_RETRIES: u32 = 50;

/// The state machine of one node.
pub struct StateMachine {
    fsm: Arc<Fsm>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
}

impl StateMachine {
    /// A state machine over `fsm`, which must be empty (nothing applied yet).
    pub fn new(fsm: Arc<Fsm>) -> Self {
        StateMachine {
            fsm,
            last_applied: None,
            last_membership: StoredMembership::default(),
        }
    }

    /// The FSM.
    pub fn fsm(&self) -> &Arc<Fsm> {
        &self.fsm
    }

    fn apply_one(&mut self, entry: &LogEntry) -> Result<Response, StorageError> {
        let response = match &entry.payload {
            EntryPayload::Blank => Response::None,
            EntryPayload::Membership(m) => {
                self.last_membership = StoredMembership::new(Some(entry.log_id), m.clone());
                Response::None
            }
            EntryPayload::Normal(Request::Plugin(e)) => {
                Response::Applied(vec![self.apply_command(entry.log_id, e)?])
            }
            EntryPayload::Normal(Request::Batch(es)) => Response::Applied(
                es.iter()
                    .map(|e| self.apply_command(entry.log_id, e))
                    .collect::<Result<_, _>>()?,
            ),
        };
        self.last_applied = Some(entry.log_id);
        Ok(response)
    }

    /// Applies one plugin command at the next FSM index.
    fn apply_command(&self, log_id: LogId, e: &fsm::Entry) -> Result<Outcome, StorageError> {
        let index = self.fsm.last_applied() + 1;
        let mut attempt = 0;
        loop {
            match self.fsm.apply(index, e) {
                Err(err) if err.is_retryable() && attempt < UNAVAILABLE_RETRIES => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(err) if err.is_retryable() => {
                    let msg = format!(
                        "log entry {} (FSM index {index}) could not be applied on this server: {err}",
                        log_id.index
                    );
                    tracing::error!(target: "agent.server.fsm", "{msg}");
                    return Err(StorageIOError::apply(log_id, &std::io::Error::other(msg)).into());
                }
                other => return Ok(Outcome::new(index, other)),
            }
        }
    }
}

/// Builds snapshots (not yet: see the module doc).
pub struct SnapshotBuilder;

fn no_snapshots() -> StorageError {
    let msg = "state store snapshots are not implemented in this build (raft is configured never to take one)";
    tracing::error!(target: "agent.server.snapshot", "{msg}");
    StorageIOError::write_snapshot(None, &std::io::Error::other(msg)).into()
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        Err(no_snapshots())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for entry in entries {
            out.push(self.apply_one(&entry)?);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Err(no_snapshots())
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<u64, NodeInfo>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        Err(no_snapshots())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(None)
    }
}
