//! The log's one writer thread: group commit.
//!
//! openraft's core awaits each storage call before it handles the next client write, so a
//! store that fsyncs inside `append` runs one fsync per write. Instead, `append` hands its
//! entries here and returns at once (the entries stay readable from the pending map until
//! they are on disk); this thread takes every operation queued while the previous commit
//! was syncing, applies them in order in one redb transaction, commits it (with
//! `Durability::Immediate` when any of them needs it), and only then fires their
//! callbacks. One fsync covers every write that arrived during the last one.
//!
//! Invariants: operations reach the file in the order they were queued; an append's
//! callback fires only after the commit holding it returned; an entry leaves the pending
//! map only after it is in the file (and only if nothing replaced it meanwhile). A commit
//! that fails (a full disk, a failed fsync) is answered as an error to every operation in
//! it, appends included (openraft then never takes those entries as durable, and its core
//! stops); redb latches the error, so every later commit fails too until the file is
//! opened again (a restart), and no write after a failed fsync is ever acknowledged.

use openraft::storage::LogFlushed;
use redb::{Database, Durability};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

use super::{ENTRIES, META};
use crate::raft::{LogEntry, LogId, TypeConfig};

/// Entries appended but not yet in the file, by index.
pub(super) type Pending = Arc<Mutex<BTreeMap<u64, LogEntry>>>;

/// The answer to an operation that waits for its commit.
pub(super) type Done = oneshot::Sender<Result<(), String>>;

/// One queued change.
pub(super) enum Op {
    /// Entries (index, log id, CBOR) and the callback to fire once they are durable.
    Append {
        entries: Vec<(u64, LogId, Vec<u8>)>,
        callback: LogFlushed<TypeConfig>,
    },
    /// A meta record; `done` is answered after the commit.
    Meta {
        key: &'static str,
        value: Vec<u8>,
        durable: bool,
        done: Option<Done>,
    },
    /// Deletes entries at and after `from`.
    Truncate { from: u64, done: Done },
    /// Writes nothing itself: makes the deferred records durable (at close).
    Barrier,
    /// Deletes entries up to `upto` and records it as the last purged id.
    Purge {
        upto: u64,
        record: Vec<u8>,
        key: &'static str,
        done: Done,
    },
}

impl Op {
    fn durable(&self) -> bool {
        match self {
            Op::Append { .. } | Op::Truncate { .. } | Op::Barrier => true,
            Op::Meta { durable, .. } => *durable,
            Op::Purge { .. } => false,
        }
    }

    /// A record nobody waits for and that may be lost in a crash: written with the next
    /// commit rather than on its own.
    fn deferrable(&self) -> bool {
        matches!(
            self,
            Op::Meta {
                durable: false,
                done: None,
                ..
            }
        )
    }
}

/// The sending side. Dropping it stops the thread and waits for it, so that the file is
/// closed (and can be opened again) once the store is gone.
pub(super) struct Writer {
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Writer {
    /// Starts the thread.
    pub(super) fn spawn(
        db: Arc<Database>,
        pending: Pending,
        path: PathBuf,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run(&db, &pending, &path, rx))?;
        Ok(Writer {
            tx: Mutex::new(Some(tx)),
            thread: Some(thread),
        })
    }

    /// Queues an operation; false if the thread is gone.
    pub(super) fn send(&self, op: Op) -> bool {
        self.tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|tx| tx.send(op).is_ok())
    }
}

/// The most operations committed together.
const MAX_BATCH: usize = 8192;

fn run(db: &Database, pending: &Pending, path: &std::path::Path, rx: mpsc::Receiver<Op>) {
    // Meta records nobody waits for (the committed id) ride along with the next commit
    // instead of costing one of their own; the last ones are written when the store closes.
    let mut deferred: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
    // After a failed commit redb refuses every later one (it latches the I/O error), so
    // nothing is written at close either.
    let mut failed = false;
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let (ops, later): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(|op| !op.deferrable());
        for op in later {
            if let Op::Meta { key, value, .. } = op {
                deferred.insert(key, value);
            }
        }
        if ops.is_empty() {
            continue;
        }
        let result = commit(db, &deferred, &ops).map_err(|e| {
            let msg = format!("raft log {}: {e}", path.display());
            tracing::error!(target: "agent.server.raft", "{msg}");
            msg
        });
        failed |= result.is_err();
        if result.is_ok() {
            deferred.clear();
            let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
            for op in &ops {
                if let Op::Append { entries, .. } = op {
                    for (index, id, _) in entries {
                        if p.get(index).is_some_and(|e| e.log_id == *id) {
                            p.remove(index);
                        }
                    }
                }
            }
        }
        for op in ops {
            let r = result.clone();
            match op {
                Op::Append { callback, .. } => {
                    callback.log_io_completed(r.map_err(std::io::Error::other));
                }
                Op::Meta { done, .. } => {
                    if let Some(done) = done {
                        let _ = done.send(r);
                    }
                }
                Op::Truncate { done, .. } | Op::Purge { done, .. } => {
                    let _ = done.send(r);
                }
                Op::Barrier => {}
            }
        }
    }
    if !deferred.is_empty()
        && !failed
        && let Err(e) = commit(db, &deferred, &[Op::Barrier])
    {
        tracing::warn!(target: "agent.server.raft", "raft log {}: writing the last committed id at close: {e}", path.display());
    }
}

fn commit(
    db: &Database,
    deferred: &BTreeMap<&'static str, Vec<u8>>,
    ops: &[Op],
) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    let durable = ops.iter().any(Op::durable);
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    {
        let mut entries = txn.open_table(ENTRIES)?;
        let mut meta = txn.open_table(META)?;
        for (key, value) in deferred {
            meta.insert(*key, value.as_slice())?;
        }
        for op in ops {
            match op {
                Op::Append { entries: batch, .. } => {
                    for (index, _, bytes) in batch {
                        entries.insert(*index, bytes.as_slice())?;
                    }
                }
                Op::Meta { key, value, .. } => {
                    meta.insert(*key, value.as_slice())?;
                }
                Op::Truncate { from, .. } => {
                    entries.retain_in(*from.., |_, _| false)?;
                }
                Op::Purge {
                    upto, record, key, ..
                } => {
                    entries.retain_in(..=*upto, |_, _| false)?;
                    meta.insert(*key, record.as_slice())?;
                }
                Op::Barrier => {}
            }
        }
    }
    txn.commit()?;
    Ok(())
}
