//! The durable raft log: entries, vote, committed and last-purged log ids in one redb file,
//! `<data_dir>/raft/raft.db` (Consul keeps raft-boltdb's `raft/raft.db`; redb is our bbolt).
//!
//! Invariants, enforced here:
//! - every `append` batch is one redb write transaction committed with
//!   `Durability::Immediate`, and openraft's flush callback fires only after that commit
//!   returned; the vote is saved the same way, so a server never forgets a vote it cast;
//! - the log has no holes: entries are keyed by index, `truncate` removes a suffix and
//!   `purge` a prefix, each in one transaction; `last_purged` is written in the same
//!   transaction as the purge, so the two cannot disagree after a crash;
//! - the file carries an identity record (format, version, node id). Opening a file that is
//!   missing when it should exist, unreadable, not an fsmhost log, or another node's log is
//!   an [`OpenError`] naming the path and the problem, never a silent fresh start.
//!
//! Purges and the committed id are written with `Durability::None`: losing them in a crash
//! only brings back entries that were already safe to drop (or a slightly older committed
//! id), and the next immediate commit makes them durable. openraft batches purges
//! (`purge_batch_size`), because deleting is redb's slowest operation.

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{LogEntry, LogId, StorageError, TypeConfig, from_cbor, to_cbor};

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const KEY_IDENTITY: &str = "identity";
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// The format name written into every log file.
pub const FORMAT: &str = "fsmhost-raft-log";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The identity record of a log file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    format: String,
    version: u32,
    node_id: u64,
}

/// Why a log file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data dir says this server has state, but the log file is gone.
    #[error(
        "raft log {path} is missing, but this data dir belongs to node {node_id} (its node-id \
         file exists); refusing to start with an empty log. Restore the file, or remove the \
         whole data dir to start this server afresh"
    )]
    Missing {
        /// The file.
        path: PathBuf,
        /// The node id from the data dir.
        node_id: u64,
    },
    /// A fresh log was asked for, but a file is already there.
    #[error(
        "raft log {path} already exists, but this data dir has no node-id file; refusing to reuse a log of unknown origin"
    )]
    Unexpected {
        /// The file.
        path: PathBuf,
    },
    /// redb could not open or create the file (corruption, permissions, a lock).
    #[error("raft log {path} cannot be opened: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// redb's error.
        reason: String,
    },
    /// The file is a redb database but not an fsmhost raft log, or of another version.
    #[error(
        "raft log {path} is not an fsmhost raft log of format version {FORMAT_VERSION}: {reason}"
    )]
    NotALog {
        /// The file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The file belongs to another node.
    #[error(
        "raft log {path} belongs to node {found}, not to this node {expected}; was a data dir \
         copied between servers?"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// This node's id.
        expected: u64,
        /// The id in the file.
        found: u64,
    },
}

/// Where the log lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist (a restart).
    Existing,
    /// The file must not exist yet (the first start of this data dir).
    Create,
}

struct Inner {
    db: Database,
    /// The file (or `:memory:`), for error messages.
    path: PathBuf,
    /// The last purged log id, mirrored from the file.
    last_purged: Mutex<Option<LogId>>,
}

/// The redb raft log of one node. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

impl LogStore {
    /// Opens (or creates, per `mode`) the log at `path` for node `node_id`.
    pub fn open(path: &Path, node_id: u64, mode: OpenMode) -> Result<Self, OpenError> {
        let unreadable = |e: &dyn std::fmt::Display| OpenError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let exists = path.exists();
        let db = match (mode, exists) {
            (OpenMode::Existing, false) => {
                return Err(OpenError::Missing {
                    path: path.to_path_buf(),
                    node_id,
                });
            }
            (OpenMode::Create, true) => {
                return Err(OpenError::Unexpected {
                    path: path.to_path_buf(),
                });
            }
            (OpenMode::Existing, true) => Database::open(path).map_err(|e| unreadable(&e))?,
            (OpenMode::Create, false) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| unreadable(&e))?;
                }
                Database::create(path).map_err(|e| unreadable(&e))?
            }
        };
        Self::init(db, path.to_path_buf(), node_id, mode)
    }

    /// A log held in memory only (`agent --dev` and tests): the same code, no file.
    pub fn in_memory(node_id: u64) -> Result<Self, OpenError> {
        let path = PathBuf::from(":memory:");
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| OpenError::Unreadable {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Self::init(db, path, node_id, OpenMode::Create)
    }

    fn init(db: Database, path: PathBuf, node_id: u64, mode: OpenMode) -> Result<Self, OpenError> {
        let not_a_log = |reason: String| OpenError::NotALog {
            path: path.clone(),
            reason,
        };
        let unreadable = |e: &dyn std::fmt::Display| OpenError::Unreadable {
            path: path.clone(),
            reason: e.to_string(),
        };
        let mine = Identity {
            format: FORMAT.to_string(),
            version: FORMAT_VERSION,
            node_id,
        };
        if mode == OpenMode::Create {
            let mut txn = db.begin_write().map_err(|e| unreadable(&e))?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| unreadable(&e))?;
            {
                let mut meta = txn.open_table(META).map_err(|e| unreadable(&e))?;
                meta.insert(KEY_IDENTITY, to_cbor(&mine).as_slice())
                    .map_err(|e| unreadable(&e))?;
                txn.open_table(ENTRIES).map_err(|e| unreadable(&e))?;
            }
            txn.commit().map_err(|e| unreadable(&e))?;
        }
        let txn = db.begin_read().map_err(|e| unreadable(&e))?;
        let meta = txn
            .open_table(META)
            .map_err(|e| not_a_log(format!("no meta table ({e})")))?;
        txn.open_table(ENTRIES)
            .map_err(|e| not_a_log(format!("no entries table ({e})")))?;
        let found: Identity = match meta.get(KEY_IDENTITY).map_err(|e| unreadable(&e))? {
            None => return Err(not_a_log("no identity record".into())),
            Some(v) => from_cbor(v.value(), "identity record").map_err(not_a_log)?,
        };
        if found.format != FORMAT || found.version != FORMAT_VERSION {
            return Err(not_a_log(format!(
                "found format {} version {}",
                found.format, found.version
            )));
        }
        if found.node_id != node_id {
            return Err(OpenError::Foreign {
                path,
                expected: node_id,
                found: found.node_id,
            });
        }
        let last_purged = match meta.get(KEY_LAST_PURGED).map_err(|e| unreadable(&e))? {
            None => None,
            Some(v) => Some(from_cbor(v.value(), "last purged log id").map_err(not_a_log)?),
        };
        drop(meta);
        drop(txn);
        Ok(LogStore {
            inner: Arc::new(Inner {
                db,
                path,
                last_purged: Mutex::new(last_purged),
            }),
        })
    }

    /// The file this log lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether this node has ever voted or logged anything: a server with state must not
    /// bootstrap a cluster again.
    pub fn has_state(&self) -> Result<bool, StorageError> {
        let txn = self.inner.db.begin_read().map_err(|e| self.read_err(e))?;
        let meta = txn.open_table(META).map_err(|e| self.read_err(e))?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.read_err(e))?;
        let voted = meta.get(KEY_VOTE).map_err(|e| self.read_err(e))?.is_some();
        let logged = entries.last().map_err(|e| self.read_err(e))?.is_some();
        Ok(voted || logged || self.last_purged().is_some())
    }

    fn last_purged(&self) -> Option<LogId> {
        *self
            .inner
            .last_purged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn read_err(&self, e: impl std::fmt::Display) -> StorageError {
        let msg = format!("raft log {}: {e}", self.inner.path.display());
        tracing::error!(target: "agent.server.raft", "{msg}");
        StorageIOError::read_logs(&std::io::Error::other(msg)).into()
    }

    fn write_err(&self, e: impl std::fmt::Display) -> StorageError {
        let msg = format!("raft log {}: {e}", self.inner.path.display());
        tracing::error!(target: "agent.server.raft", "{msg}");
        StorageIOError::write_logs(&std::io::Error::other(msg)).into()
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let txn = self.inner.db.begin_read().map_err(|e| self.read_err(e))?;
        let meta = txn.open_table(META).map_err(|e| self.read_err(e))?;
        match meta.get(key).map_err(|e| self.read_err(e))? {
            None => Ok(None),
            Some(v) => from_cbor(v.value(), key)
                .map(Some)
                .map_err(|e| self.read_err(e)),
        }
    }

    /// Runs `f` in one write transaction of the given durability, on a blocking thread
    /// (an immediate commit waits for fsync).
    async fn write<F>(&self, durability: Durability, f: F) -> Result<(), StorageError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send + 'static,
    {
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let mut txn = this.inner.db.begin_write().map_err(|e| e.to_string())?;
            txn.set_durability(durability).map_err(|e| e.to_string())?;
            f(&txn).map_err(|e| e.to_string())?;
            txn.commit().map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        result.map_err(|e| self.write_err(e))
    }

    fn read_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let txn = self.inner.db.begin_read().map_err(|e| self.read_err(e))?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.read_err(e))?;
        let mut out = Vec::new();
        for item in entries
            .range::<u64>((start, end))
            .map_err(|e| self.read_err(e))?
        {
            let (k, v) = item.map_err(|e| self.read_err(e))?;
            let entry: LogEntry = from_cbor(v.value(), "log entry")
                .map_err(|e| self.read_err(format!("index {}: {e}", k.value())))?;
            out.push(entry);
        }
        Ok(out)
    }
}

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let (start, end) = bounds(&range);
        self.read_range(start, end)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.last_purged();
        let txn = self.inner.db.begin_read().map_err(|e| self.read_err(e))?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.read_err(e))?;
        let last = match entries.last().map_err(|e| self.read_err(e))? {
            None => None,
            Some((k, v)) => {
                let entry: LogEntry = from_cbor(v.value(), "log entry")
                    .map_err(|e| self.read_err(format!("index {}: {e}", k.value())))?;
                Some(entry.log_id)
            }
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let bytes = to_cbor(vote);
        self.write(Durability::Immediate, move |txn| {
            txn.open_table(META)?.insert(KEY_VOTE, bytes.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = to_cbor(&committed);
        self.write(Durability::None, move |txn| {
            txn.open_table(META)?
                .insert(KEY_COMMITTED, bytes.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        let batch: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, to_cbor(&e)))
            .collect();
        let result = self
            .write(Durability::Immediate, move |txn| {
                let mut table = txn.open_table(ENTRIES)?;
                for (index, bytes) in &batch {
                    table.insert(*index, bytes.as_slice())?;
                }
                Ok(())
            })
            .await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(target: "agent.server.raft", "truncating log: from={}", log_id.index);
        self.write(Durability::Immediate, move |txn| {
            txn.open_table(ENTRIES)?
                .retain_in(log_id.index.., |_, _| false)?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::info!(target: "agent.server.raft", "compacting logs: from={} to={}",
            self.last_purged().map_or(0, |l| l.index + 1), log_id.index);
        let bytes = to_cbor(&log_id);
        self.write(Durability::None, move |txn| {
            txn.open_table(ENTRIES)?
                .retain_in(..=log_id.index, |_, _| false)?;
            txn.open_table(META)?
                .insert(KEY_LAST_PURGED, bytes.as_slice())?;
            Ok(())
        })
        .await?;
        *self
            .inner
            .last_purged
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(log_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
