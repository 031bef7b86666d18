//! The leader's proposer: plugin commands that arrive together go into one raft entry.
//!
//! openraft 0.9 appends (and fsyncs) each `client_write` before it handles the next, so one
//! command per entry caps a leader at one fsync per write. Here commands queue; a proposer
//! takes everything queued (up to [`MAX_BATCH`] commands or [`MAX_BATCH_BYTES`]) into one
//! [`Request::Batch`] whenever one of its [`IN_FLIGHT`] slots is free. Under load a slot
//! frees as a commit completes, so batches grow with concurrency; a lone write goes out at
//! once as a single command. Each command keeps its own FSM index and outcome.
//!
//! One entry in flight measured as fast as two or four (BENCHMARKS.md) and keeps commands
//! in the order they reached the leader.

use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::fsm::{self, FailureKind, Fsm};
use crate::protocol::{Applied, OpError};
use crate::raft::{Raft, Request, Response};

/// The most commands in one entry.
pub const MAX_BATCH: usize = 512;
/// The most payload bytes in one entry.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// How many entries the proposer keeps in flight (see the module doc).
pub const IN_FLIGHT: usize = 1;

type Waiter = oneshot::Sender<Result<Applied, OpError>>;

/// The handle that queues commands.
pub struct Batcher {
    tx: mpsc::UnboundedSender<(fsm::Entry, Waiter)>,
}

impl Batcher {
    /// Starts the proposer task for `raft`, whose state machine is `fsm`.
    pub fn spawn(raft: Raft, fsm: Arc<Fsm>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, fsm, rx));
        Batcher { tx }
    }

    /// Proposes a command and waits for its outcome.
    pub async fn propose(&self, entry: fsm::Entry) -> Result<Applied, OpError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || OpError::failed(FailureKind::Unavailable, "this server is shutting down");
        self.tx.send((entry, tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn run(raft: Raft, fsm: Arc<Fsm>, mut rx: mpsc::UnboundedReceiver<(fsm::Entry, Waiter)>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut bytes = first.0.payload.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(item) => {
                    bytes += item.0.payload.len();
                    batch.push(item);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        let fresh = fsm.last_applied() == 0;
        tokio::spawn(async move {
            // A fresh cluster's first command: FSM index 1 goes to the start entry first.
            if fresh && let Err(e) = raft.client_write(Request::Start).await {
                let err = write_error(e);
                for (_, w) in batch {
                    let _ = w.send(Err(err.clone()));
                }
                return;
            }
            propose(&raft, batch).await;
            drop(permit);
        });
    }
}

async fn propose(raft: &Raft, batch: Vec<(fsm::Entry, Waiter)>) {
    let (mut entries, waiters): (Vec<fsm::Entry>, Vec<Waiter>) = batch.into_iter().unzip();
    let request = if entries.len() == 1 {
        Request::Plugin(entries.remove(0))
    } else {
        Request::Batch(entries)
    };
    let started = std::time::Instant::now();
    let commands = waiters.len() as u64;
    match raft.client_write(request).await {
        Ok(r) => {
            let m = &crate::metrics::METRICS;
            m.raft_commit_time
                .with_label_values(&[] as &[&str])
                .observe(started.elapsed().as_secs_f64());
            m.raft_apply.inc_by(commands);
            let raft_index = r.log_id.index;
            let outcomes = match r.data {
                Response::Applied(o) => o,
                Response::None
                | Response::Restored(_)
                | Response::AutopilotSet(_)
                | Response::Installed(_)
                | Response::Acl(_) => Vec::new(),
            };
            let mut outcomes = outcomes.into_iter();
            for w in waiters {
                let answer = match outcomes.next() {
                    Some(o) => Ok(Applied {
                        index: o.index,
                        raft_index,
                        result: o.result,
                    }),
                    None => Err(OpError::failed(
                        FailureKind::Internal,
                        format!("log entry {raft_index} returned fewer outcomes than commands"),
                    )),
                };
                let _ = w.send(answer);
            }
        }
        Err(e) => {
            let err = write_error(e);
            for w in waiters {
                let _ = w.send(Err(err.clone()));
            }
        }
    }
}

/// The error a failed raft write gives its waiters: not the leader (retried on the
/// leader), or a 500 naming why. A raft that stopped (a storage error such as a full
/// disk) says so: this server is stopping, and the entry may or may not be in its log (a
/// failed commit's outcome is unknown), so the write may still be applied.
pub fn write_error(
    e: openraft::error::RaftError<
        u64,
        openraft::error::ClientWriteError<u64, crate::raft::NodeInfo>,
    >,
) -> OpError {
    match e {
        openraft::error::RaftError::APIError(
            openraft::error::ClientWriteError::ForwardToLeader(_),
        ) => OpError::NotLeader,
        openraft::error::RaftError::Fatal(e) => OpError::failed(
            FailureKind::Internal,
            format!(
                "raft stopped: {e}; this server is stopping, and the write may or may not \
                 have been stored"
            ),
        ),
        e => OpError::failed(FailureKind::Internal, format!("raft: {e}")),
    }
}
