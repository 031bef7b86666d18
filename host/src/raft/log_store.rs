//! The durable raft log, in one of two backends chosen by `[raft_logstore] backend`
//! (Consul's names): `wal` (append-only segment files under `<data_dir>/raft/wal/`, the
//! default for a new data dir; [`wal`]) or `redb` (one B-tree file,
//! `<data_dir>/raft/raft.db`, as Consul's raft-boltdb keeps `raft/raft.db`; [`redb_log`]).
//! A data dir keeps the backend it was created with ([`open_dir`]).
//!
//! Invariants of both backends, enforced in each:
//! - openraft's flush callback fires only after the entries are durable (one fsync for
//!   every append queued while the previous one synced: group commit); until then the
//!   entries are readable from memory;
//! - the vote is durable before `save_vote` returns, so a server never forgets a vote it
//!   cast; `truncate` and `purge` also return only once durable;
//! - the log has no holes: `truncate` removes a suffix and `purge` a prefix; the last
//!   purged id cannot disagree with the entries after a crash;
//! - the log carries an identity (format, version, node id). Opening a log that is missing
//!   when it should exist, unreadable, not an fsmhost log, or another node's log is an
//!   [`OpenError`] naming the path and the problem, never a silent fresh start.
//!
//! The committed id may be lost in a crash (it is written with the next durable change):
//! that only replays more of the log.

use ::redb::TableDefinition;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError, Vote};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{LogEntry, LogId, StorageError, TypeConfig};
use crate::config::{LogBackend, LogStoreConfig};

pub(crate) const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(crate) const KEY_IDENTITY: &str = "identity";
pub(crate) const KEY_VOTE: &str = "vote";
pub(crate) const KEY_COMMITTED: &str = "committed";
pub(crate) const KEY_LAST_PURGED: &str = "last_purged";

/// The format name written into every log file.
pub const FORMAT: &str = "fsmhost-raft-log";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The identity record of a log file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) format: String,
    pub(crate) version: u32,
    pub(crate) node_id: u64,
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
    /// The WAL could not be opened (damaged, foreign, unreadable).
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    /// The configuration names the other backend than the data dir holds.
    #[error(
        "raft_logstore.backend = \"{configured}\", but {path} holds this server's raft log in \
         the \"{found}\" backend, and a data dir keeps the backend it was created with. To \
         switch (Consul's procedure): stop this server, move {raft_dir} aside, start it with \
         the new backend (it rejoins with an empty log and the leader sends it a snapshot), \
         and delete the old directory once it has caught up. Or set backend = \"{found}\""
    )]
    Mismatch {
        /// The configured backend.
        configured: &'static str,
        /// The backend found.
        found: &'static str,
        /// The log found.
        path: PathBuf,
        /// The raft directory.
        raft_dir: PathBuf,
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

/// The log of one node, in its backend. Cheap to clone: clones share the files.
#[derive(Clone)]
pub struct LogStore {
    backend: Arc<Backend>,
}

enum Backend {
    Redb(redb_log::RedbLog),
    Wal(wal::Wal),
}

/// Opens the log in `raft_dir` (`<data_dir>/raft`) for `node_id`. The backend is the one
/// the directory holds (`raft.db`: redb; `wal/`: the WAL); a new log (`mode` is
/// [`OpenMode::Create`]) takes the configured one, `wal` by default. A configuration
/// naming the other backend than the directory holds is [`OpenError::Mismatch`], saying
/// how to switch. A data dir whose whole raft directory was moved aside (that procedure)
/// starts with an empty log.
pub fn open_dir(
    raft_dir: &Path,
    node_id: u64,
    mode: OpenMode,
    config: &LogStoreConfig,
) -> Result<(LogStore, LogBackend), OpenError> {
    let db = raft_dir.join("raft.db");
    let wal_dir = raft_dir.join("wal");
    let found = if wal_dir.join("meta").exists() {
        Some((LogBackend::Wal, wal_dir.clone()))
    } else if db.exists() {
        Some((LogBackend::Redb, db.clone()))
    } else {
        None
    };
    let mode = match (mode, &found) {
        (OpenMode::Existing, None) if !raft_dir.exists() => {
            tracing::warn!(target: "agent.server.raft",
                "{} is gone: starting with an empty raft log; this server catches up from the \
                 leader (the procedure for switching raft_logstore.backend)", raft_dir.display());
            OpenMode::Create
        }
        (mode, _) => mode,
    };
    if mode == OpenMode::Existing && found.is_none() && config.backend.is_none() {
        return Err(OpenError::Missing {
            path: raft_dir.to_path_buf(),
            node_id,
        });
    }
    let backend = match (found, config.backend) {
        (Some((found, path)), Some(configured)) if found != configured => {
            return Err(OpenError::Mismatch {
                configured: configured.name(),
                found: found.name(),
                path,
                raft_dir: raft_dir.to_path_buf(),
            });
        }
        (Some((found, _)), _) => found,
        (None, configured) => configured.unwrap_or(LogBackend::Wal),
    };
    let store = match backend {
        LogBackend::Redb => LogStore::open(&db, node_id, mode)?,
        LogBackend::Wal => {
            if mode == OpenMode::Existing && !wal_dir.join("meta").exists() {
                return Err(OpenError::Missing {
                    path: wal_dir,
                    node_id,
                });
            }
            let wal = wal::Wal::open(
                &wal_dir,
                node_id,
                mode == OpenMode::Create,
                config.segment_size,
            )?;
            LogStore {
                backend: Arc::new(Backend::Wal(wal)),
            }
        }
    };
    Ok((store, backend))
}

fn storage_err(path: &Path, e: impl std::fmt::Display, write: bool) -> StorageError {
    let msg = format!("raft log {}: {e}", path.display());
    tracing::error!(target: "agent.server.raft", "{msg}");
    let e = std::io::Error::other(msg);
    if write {
        StorageIOError::write_logs(&e).into()
    } else {
        StorageIOError::read_logs(&e).into()
    }
}

impl LogStore {
    /// Opens (or creates, per `mode`) a redb log file at `path` for node `node_id`.
    pub fn open(path: &Path, node_id: u64, mode: OpenMode) -> Result<Self, OpenError> {
        Ok(LogStore {
            backend: Arc::new(Backend::Redb(redb_log::RedbLog::open(path, node_id, mode)?)),
        })
    }

    /// Opens (or creates) a WAL in `dir` for node `node_id`, with segments of
    /// `segment_size` bytes.
    pub fn open_wal(
        dir: &Path,
        node_id: u64,
        mode: OpenMode,
        segment_size: u64,
    ) -> Result<Self, OpenError> {
        let wal = wal::Wal::open(dir, node_id, mode == OpenMode::Create, segment_size)?;
        Ok(LogStore {
            backend: Arc::new(Backend::Wal(wal)),
        })
    }

    /// A redb log over an open database (tests give it a faulty storage backend).
    #[cfg(test)]
    fn init(
        db: ::redb::Database,
        path: PathBuf,
        node_id: u64,
        mode: OpenMode,
    ) -> Result<Self, OpenError> {
        Ok(LogStore {
            backend: Arc::new(Backend::Redb(redb_log::RedbLog::init(
                db, path, node_id, mode,
            )?)),
        })
    }

    /// A log held in memory only (`agent --dev` and tests): redb's in-memory backend.
    pub fn in_memory(node_id: u64) -> Result<Self, OpenError> {
        Ok(LogStore {
            backend: Arc::new(Backend::Redb(redb_log::RedbLog::in_memory(node_id)?)),
        })
    }

    /// The file or directory this log lives in.
    pub fn path(&self) -> &Path {
        match &*self.backend {
            Backend::Redb(r) => r.path(),
            Backend::Wal(w) => w.dir(),
        }
    }

    /// Whether this node has ever voted or logged anything: a server with state must not
    /// bootstrap a cluster again.
    pub fn has_state(&self) -> Result<bool, StorageError> {
        match &*self.backend {
            Backend::Redb(r) => r.has_state(),
            Backend::Wal(w) => Ok(w.has_state()),
        }
    }

    /// The last purged (compacted) log id.
    pub fn last_purged(&self) -> Option<LogId> {
        match &*self.backend {
            Backend::Redb(r) => r.last_purged(),
            Backend::Wal(w) => w.last_purged(),
        }
    }

    fn wal_err(&self, e: String, write: bool) -> StorageError {
        storage_err(self.path(), e, write)
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
        match &*self.backend {
            Backend::Redb(r) => r.read_range(start, end),
            Backend::Wal(w) => {
                let start = match start {
                    Bound::Included(s) => s,
                    Bound::Excluded(s) => s.saturating_add(1),
                    Bound::Unbounded => 0,
                };
                let end = match end {
                    Bound::Included(e) => e.saturating_add(1),
                    Bound::Excluded(e) => e,
                    Bound::Unbounded => u64::MAX,
                };
                w.read_range(start, end).map_err(|e| self.wal_err(e, false))
            }
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        match &*self.backend {
            Backend::Redb(r) => r.log_state(),
            Backend::Wal(w) => Ok(LogState {
                last_purged_log_id: w.last_purged(),
                last_log_id: w.last_log_id(),
            }),
        }
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        match &*self.backend {
            Backend::Redb(r) => r.save_vote(vote).await,
            Backend::Wal(w) => w.save_vote(*vote).await.map_err(|e| self.wal_err(e, true)),
        }
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        match &*self.backend {
            Backend::Redb(r) => r.read_vote().await,
            Backend::Wal(w) => Ok(w.vote()),
        }
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        match &*self.backend {
            Backend::Redb(r) => r.save_committed(committed).await,
            Backend::Wal(w) => w
                .save_committed(committed)
                .map_err(|e| self.wal_err(e, true)),
        }
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        match &*self.backend {
            Backend::Redb(r) => r.read_committed().await,
            Backend::Wal(w) => Ok(w.committed()),
        }
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
        match &*self.backend {
            Backend::Redb(r) => r.append(entries, callback).await,
            Backend::Wal(w) => w
                .append(entries.into_iter().collect(), callback)
                .map_err(|e| self.wal_err(e, true)),
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(target: "agent.server.raft", "truncating log: from={}", log_id.index);
        match &*self.backend {
            Backend::Redb(r) => r.truncate(log_id).await,
            Backend::Wal(w) => w
                .truncate(log_id.index)
                .await
                .map_err(|e| self.wal_err(e, true)),
        }
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::info!(target: "agent.server.raft", "compacting logs: from={} to={}",
            self.last_purged().map_or(0, |l| l.index + 1), log_id.index);
        match &*self.backend {
            Backend::Redb(r) => r.purge(log_id).await,
            Backend::Wal(w) => w.purge(log_id).await.map_err(|e| self.wal_err(e, true)),
        }
    }
}

mod redb_log;
pub mod wal;
mod writer;

#[cfg(test)]
mod tests;
