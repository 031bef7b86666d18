//! The redb backend (`raft_logstore.backend = "redb"`): entries, vote, committed and
//! last-purged log ids in one redb file, `<data_dir>/raft/raft.db` (Consul's raft-boltdb
//! keeps `raft/raft.db`; redb is our bbolt). Invariants: see the parent module.

use openraft::storage::LogFlushed;
use openraft::{LogState, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::writer::{self, Op};
use super::{
    ENTRIES, FORMAT, FORMAT_VERSION, Identity, KEY_COMMITTED, KEY_IDENTITY, KEY_LAST_PURGED,
    KEY_VOTE, META, OpenError, OpenMode,
};
use crate::codec::{from_cbor, to_cbor};
use crate::raft::{LogEntry, LogId, StorageError, TypeConfig};

struct Inner {
    db: Arc<Database>,
    /// The file (or `:memory:`), for error messages.
    path: PathBuf,
    /// The last purged log id, mirrored from the file.
    last_purged: Mutex<Option<LogId>>,
    /// Entries appended but not yet committed to the file.
    pending: writer::Pending,
    /// The writer thread.
    writer: writer::Writer,
}

/// The redb raft log of one node. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct RedbLog {
    inner: Arc<Inner>,
}

impl RedbLog {
    /// Opens (or creates, per `mode`) the log at `path` for node `node_id`.
    pub(super) fn open(path: &Path, node_id: u64, mode: OpenMode) -> Result<Self, OpenError> {
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
    pub(super) fn in_memory(node_id: u64) -> Result<Self, OpenError> {
        let path = PathBuf::from(":memory:");
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| OpenError::Unreadable {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Self::init(db, path, node_id, OpenMode::Create)
    }

    pub(super) fn init(
        db: Database,
        path: PathBuf,
        node_id: u64,
        mode: OpenMode,
    ) -> Result<Self, OpenError> {
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
        let db = Arc::new(db);
        let pending = writer::Pending::default();
        let writer = writer::Writer::spawn(db.clone(), pending.clone(), path.clone())
            .map_err(|e| unreadable(&e))?;
        Ok(RedbLog {
            inner: Arc::new(Inner {
                db,
                path,
                last_purged: Mutex::new(last_purged),
                pending,
                writer,
            }),
        })
    }

    /// The file this log lives in.
    pub(super) fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether this node has ever voted or logged anything: a server with state must not
    /// bootstrap a cluster again.
    pub(super) fn has_state(&self) -> Result<bool, StorageError> {
        let txn = self.inner.db.begin_read().map_err(|e| self.read_err(e))?;
        let meta = txn.open_table(META).map_err(|e| self.read_err(e))?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.read_err(e))?;
        let voted = meta.get(KEY_VOTE).map_err(|e| self.read_err(e))?.is_some();
        let logged = entries.last().map_err(|e| self.read_err(e))?.is_some();
        Ok(voted || logged || self.last_purged().is_some() || !self.pending().is_empty())
    }

    /// The last purged (compacted) log id.
    pub(super) fn last_purged(&self) -> Option<LogId> {
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

    /// Queues an operation that answers once committed, and waits for that answer.
    async fn queue_and_wait(
        &self,
        op: impl FnOnce(writer::Done) -> Op,
    ) -> Result<(), StorageError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.inner.writer.send(op(tx)) {
            return Err(self.write_err("the log writer thread has stopped"));
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.write_err(e)),
            Err(_) => Err(self.write_err("the log writer thread has stopped")),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, LogEntry>> {
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries in the range: from the file, overlaid with pending ones. The pending map is
    /// read first: the writer commits before it removes, so an entry is always in one or
    /// the other of the two reads.
    pub(super) fn read_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let pending: Vec<LogEntry> = self
            .pending()
            .range((start, end))
            .map(|(_, e)| e.clone())
            .collect();
        let txn = self.inner.db.begin_read().map_err(|e| self.read_err(e))?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.read_err(e))?;
        let mut out = BTreeMap::new();
        for item in entries
            .range::<u64>((start, end))
            .map_err(|e| self.read_err(e))?
        {
            let (k, v) = item.map_err(|e| self.read_err(e))?;
            let entry: LogEntry = from_cbor(v.value(), "log entry")
                .map_err(|e| self.read_err(format!("index {}: {e}", k.value())))?;
            out.insert(k.value(), entry);
        }
        for e in pending {
            out.insert(e.log_id.index, e);
        }
        Ok(out.into_values().collect())
    }
}

impl RedbLog {
    pub(super) fn log_state(&self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.last_purged();
        let last_pending = self.pending().last_key_value().map(|(_, e)| e.log_id);
        let txn = self.inner.db.begin_read().map_err(|e| self.read_err(e))?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.read_err(e))?;
        let last_stored = match entries.last().map_err(|e| self.read_err(e))? {
            None => None,
            Some((k, v)) => {
                let entry: LogEntry = from_cbor(v.value(), "log entry")
                    .map_err(|e| self.read_err(format!("index {}: {e}", k.value())))?;
                Some(entry.log_id)
            }
        };
        let last = match (last_pending, last_stored) {
            (Some(p), Some(s)) => Some(if p.index >= s.index { p } else { s }),
            (p, s) => p.or(s),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    pub(super) async fn save_vote(&self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let value = to_cbor(vote);
        self.queue_and_wait(|done| Op::Meta {
            key: KEY_VOTE,
            value,
            durable: true,
            done: Some(done),
        })
        .await
    }

    pub(super) async fn read_vote(&self) -> Result<Option<Vote<u64>>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    pub(super) async fn save_committed(
        &self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError> {
        // Not waited for: a committed id lost in a crash only means replaying from an
        // older one (the log still holds every entry after it).
        let op = Op::Meta {
            key: KEY_COMMITTED,
            value: to_cbor(&committed),
            durable: false,
            done: None,
        };
        if self.inner.writer.send(op) {
            Ok(())
        } else {
            Err(self.write_err("the log writer thread has stopped"))
        }
    }

    pub(super) async fn read_committed(&self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    pub(super) async fn append<I>(
        &self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = Vec::new();
        {
            let mut pending = self.pending();
            for e in entries {
                batch.push((e.log_id.index, e.log_id, to_cbor(&e)));
                pending.insert(e.log_id.index, e);
            }
        }
        if self.inner.writer.send(Op::Append {
            entries: batch,
            callback,
        }) {
            Ok(())
        } else {
            Err(self.write_err("the log writer thread has stopped"))
        }
    }

    pub(super) async fn truncate(&self, log_id: LogId) -> Result<(), StorageError> {
        self.pending().retain(|index, _| *index < log_id.index);
        self.queue_and_wait(|done| Op::Truncate {
            from: log_id.index,
            done,
        })
        .await
    }

    pub(super) async fn purge(&self, log_id: LogId) -> Result<(), StorageError> {
        self.pending().retain(|index, _| *index > log_id.index);
        let record = to_cbor(&log_id);
        self.queue_and_wait(|done| Op::Purge {
            upto: log_id.index,
            record,
            key: KEY_LAST_PURGED,
            done,
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
