//! The WAL backend (`raft_logstore.backend = "wal"`, Consul's raft-wal): the log in
//! append-only segment files under `<data_dir>/raft/wal/`, the vote and markers in a small
//! `meta` file replaced atomically.
//!
//! Invariants, enforced here and in [`segment`]:
//! - an entry is one record (length and CRC-32C); the entries of every append queued
//!   while the previous batch synced are written with one `write` and made durable with
//!   one `fdatasync` (group commit); openraft's flush callback fires only after it, and
//!   the next batch is written only after it, so only the last batch can be torn;
//! - a segment is sealed once it reaches `segment_size`; the next batch starts a new file
//!   (created with its header, synced, its directory synced);
//! - `truncate` cuts the file holding its first entry at that entry's record and deletes
//!   the later segments, durably, before it returns;
//! - `purge` records the last purged id in `meta` durably, then deletes the segments
//!   holding only purged entries; the entries left in the first segment are skipped;
//! - the vote is durable before `save_vote` returns; the committed id is written with the
//!   next `meta` change or at close (losing it only replays more of the log);
//! - at start a torn last record is cut (and logged with its segment and offset); damage
//!   anywhere else stops the start naming the segment and offset.
//!
//! Reads go to memory for entries not yet on disk, else to the file by an in-memory index
//! of where each entry's record is (a `pread`, from the page cache when recent).

pub mod segment;
mod writer;

use writer::Writer;

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use openraft::Vote;
use openraft::storage::LogFlushed;
use serde::{Deserialize, Serialize};

use crate::codec::{from_cbor, to_cbor};
use crate::raft::{LogEntry, LogId, TypeConfig};

/// The format name in the meta file.
pub const FORMAT: &str = "fsmhost-raft-wal";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The metadata file's name.
const META: &str = "meta";

/// The metadata file: identity, vote and markers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    format: String,
    version: u32,
    node_id: u64,
    vote: Option<Vote<u64>>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

/// Where an entry is: its segment and the offset of its record.
#[derive(Debug, Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    log_id: LogId,
}

struct SegmentFile {
    path: PathBuf,
    file: Arc<File>,
    /// Where the next record goes.
    len: u64,
    /// The file's size: zeros from `len` to it.
    zeroed: u64,
    /// The index the next record must hold to continue this segment.
    next: u64,
}

/// The state readers and the writer share.
struct State {
    /// Segments by first index.
    segments: BTreeMap<u64, SegmentFile>,
    /// The location of every unpurged entry on disk, from `first_index` on.
    index: VecDeque<Loc>,
    first_index: u64,
    meta: Meta,
}

impl State {
    fn loc(&self, index: u64) -> Option<Loc> {
        let i = index.checked_sub(self.first_index)?;
        self.index.get(usize::try_from(i).ok()?).copied()
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.index.back().map(|l| l.log_id)
    }
}

/// Why the WAL could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O error on a file.
    #[error("raft WAL {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A damaged segment.
    #[error(transparent)]
    Scan(#[from] segment::ScanError),
    /// The metadata file is not this build's, or not this node's.
    #[error("raft WAL {path}: {reason}")]
    Meta {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The WAL of one node. Cheap to clone.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    segment_size: u64,
    state: Arc<Mutex<State>>,
    pending: Arc<Mutex<BTreeMap<u64, LogEntry>>>,
    writer: Mutex<Option<mpsc::Sender<Op>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// The answer to an operation that waits for its sync.
pub type Done = tokio::sync::oneshot::Sender<Result<(), String>>;

/// One queued change, applied by the writer thread in order.
enum Op {
    Append {
        entries: Vec<LogEntry>,
        callback: LogFlushed<TypeConfig>,
    },
    Vote {
        vote: Vote<u64>,
        done: Done,
    },
    Committed(Option<LogId>),
    Truncate {
        from: u64,
        done: Done,
    },
    Purge {
        upto: LogId,
        done: Done,
    },
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One entry to read: its index, the log id the index held when located, and its record.
struct Located {
    index: u64,
    log_id: LogId,
    file: Arc<File>,
    path: PathBuf,
    offset: u64,
}

/// The locations of the entries in `[start, end)` that `wanted` keeps, from `s`.
fn locate_in(
    s: &State,
    start: u64,
    end: u64,
    wanted: impl Fn(&u64) -> bool,
) -> Result<Vec<Located>, String> {
    let to = end.min(s.first_index + s.index.len() as u64);
    let mut out = Vec::new();
    for index in (start.max(s.first_index)..to).filter(|i| wanted(i)) {
        let Some(loc) = s.loc(index) else { break };
        let seg = s
            .segments
            .get(&loc.segment)
            .ok_or_else(|| format!("no segment {} for index {index}", loc.segment))?;
        out.push(Located {
            index,
            log_id: loc.log_id,
            file: seg.file.clone(),
            path: seg.path.clone(),
            offset: loc.offset,
        });
    }
    Ok(out)
}

/// Reads and decodes the located records; an entry whose log id is not the one located
/// (truncated and rewritten since) is an error.
fn read_located(located: &[Located]) -> Result<Vec<(u64, LogEntry)>, String> {
    located
        .iter()
        .map(|l| {
            let payload = segment::read_record(&l.file, l.offset)
                .map_err(|e| format!("{} at offset {}: {e}", l.path.display(), l.offset))?;
            let entry: LogEntry = from_cbor(&payload, "WAL record")?;
            if entry.log_id != l.log_id {
                return Err(format!(
                    "{} at offset {}: holds {} where {} was (rewritten while read)",
                    l.path.display(),
                    l.offset,
                    entry.log_id,
                    l.log_id
                ));
            }
            Ok((l.index, entry))
        })
        .collect()
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes `meta` atomically and durably: a temporary file, synced, renamed over the old
/// one, and the directory synced.
fn write_meta(dir: &Path, meta: &Meta) -> Result<(), WalError> {
    let path = dir.join(META);
    let tmp = dir.join("meta.tmp");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&to_cbor(meta)).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir)
}

impl Wal {
    /// Opens the WAL in `dir` for `node_id`, creating it when `create` (the directory must
    /// then hold no WAL yet). Reads every segment, cutting a torn last record.
    pub fn open(
        dir: &Path,
        node_id: u64,
        create: bool,
        segment_size: u64,
    ) -> Result<Wal, WalError> {
        let meta_path = dir.join(META);
        let meta = if create {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            if meta_path.exists() {
                return Err(WalError::Meta {
                    path: meta_path,
                    reason: "a WAL already exists here, but this data dir has no node-id file; \
                             refusing to reuse a log of unknown origin"
                        .into(),
                });
            }
            let meta = Meta {
                format: FORMAT.into(),
                version: FORMAT_VERSION,
                node_id,
                ..Meta::default()
            };
            write_meta(dir, &meta)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
            meta
        } else {
            let bytes = std::fs::read(&meta_path).map_err(io_err(&meta_path))?;
            let meta: Meta = from_cbor(&bytes, "WAL meta").map_err(|reason| WalError::Meta {
                path: meta_path.clone(),
                reason,
            })?;
            if meta.format != FORMAT || meta.version != FORMAT_VERSION {
                return Err(WalError::Meta {
                    path: meta_path,
                    reason: format!(
                        "not an fsmhost WAL of format version {FORMAT_VERSION} (found {} {})",
                        meta.format, meta.version
                    ),
                });
            }
            if meta.node_id != node_id {
                return Err(WalError::Meta {
                    path: meta_path,
                    reason: format!(
                        "it belongs to node {}, not to this node {node_id}; was a data dir \
                         copied between servers?",
                        meta.node_id
                    ),
                });
            }
            meta
        };
        let state = recover(dir, meta)?;
        let state = Arc::new(Mutex::new(state));
        let pending = Arc::new(Mutex::new(BTreeMap::new()));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let (dir_buf, state, pending) = (dir.to_path_buf(), state.clone(), pending.clone());
            std::thread::Builder::new()
                .name("raft-wal-writer".into())
                .spawn(move || {
                    Writer {
                        dir: dir_buf,
                        segment_size,
                        state,
                        pending,
                        failed: Mutex::new(None),
                    }
                    .run(rx)
                })
                .map_err(io_err(dir))?
        };
        Ok(Wal {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                segment_size,
                state,
                pending,
                writer: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The WAL's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configured segment size, in bytes.
    pub fn segment_size(&self) -> u64 {
        self.inner.segment_size
    }

    fn send(&self, op: Op) -> Result<(), String> {
        let sent = lock(&self.inner.writer)
            .as_ref()
            .is_some_and(|tx| tx.send(op).is_ok());
        if sent {
            Ok(())
        } else {
            Err("the WAL writer thread has stopped".into())
        }
    }

    async fn send_and_wait(&self, op: impl FnOnce(Done) -> Op) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(op(tx))?;
        rx.await
            .unwrap_or_else(|_| Err("the WAL writer thread has stopped".into()))
    }

    /// Whether anything was ever voted or logged here.
    pub fn has_state(&self) -> bool {
        let s = lock(&self.inner.state);
        s.meta.vote.is_some()
            || s.meta.last_purged.is_some()
            || !s.index.is_empty()
            || !lock(&self.inner.pending).is_empty()
    }

    /// The last purged log id.
    pub fn last_purged(&self) -> Option<LogId> {
        lock(&self.inner.state).meta.last_purged
    }

    /// The last log id (pending entries included), or the last purged one.
    pub fn last_log_id(&self) -> Option<LogId> {
        let pending = lock(&self.inner.pending)
            .last_key_value()
            .map(|(_, e)| e.log_id);
        let s = lock(&self.inner.state);
        let stored = s.last_log_id();
        let last = match (pending, stored) {
            (Some(p), Some(d)) => Some(if p.index >= d.index { p } else { d }),
            (p, d) => p.or(d),
        };
        last.or(s.meta.last_purged)
    }

    /// The stored vote.
    pub fn vote(&self) -> Option<Vote<u64>> {
        lock(&self.inner.state).meta.vote
    }

    /// The stored committed id.
    pub fn committed(&self) -> Option<LogId> {
        lock(&self.inner.state).meta.committed
    }

    /// Entries in `[start, end)`: pending ones from memory, the rest from the segments.
    ///
    /// The state lock is held only to copy out where each entry is; the records are read
    /// after it is released, so appends and other readers do not wait on this one's disk
    /// reads. A segment file stays readable through its `Arc` even if it is purged
    /// meanwhile; an entry truncated and rewritten meanwhile no longer holds the log id
    /// the location was taken for, and the read is then done again under the lock.
    pub fn read_range(&self, start: u64, end: u64) -> Result<Vec<LogEntry>, String> {
        let pending: BTreeMap<u64, LogEntry> = lock(&self.inner.pending)
            .range(start..end)
            .map(|(i, e)| (*i, e.clone()))
            .collect();
        let wanted = |index: &u64| !pending.contains_key(index);
        let located = self.locate(start, end, wanted)?;
        let mut out = BTreeMap::new();
        match read_located(&located) {
            Ok(entries) => out.extend(entries),
            Err(_) => {
                let s = lock(&self.inner.state);
                let again = locate_in(&s, start, end, wanted)?;
                out.extend(read_located(&again)?);
            }
        }
        out.extend(pending);
        Ok(out.into_values().collect())
    }

    /// Where the entries of `[start, end)` that `wanted` keeps are on disk.
    fn locate(
        &self,
        start: u64,
        end: u64,
        wanted: impl Fn(&u64) -> bool,
    ) -> Result<Vec<Located>, String> {
        locate_in(&lock(&self.inner.state), start, end, wanted)
    }

    /// Queues entries; `callback` fires once they are durable.
    pub fn append(
        &self,
        entries: Vec<LogEntry>,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), String> {
        {
            let mut pending = lock(&self.inner.pending);
            for e in &entries {
                pending.insert(e.log_id.index, e.clone());
            }
        }
        self.send(Op::Append { entries, callback })
    }

    /// Saves the vote durably.
    pub async fn save_vote(&self, vote: Vote<u64>) -> Result<(), String> {
        self.send_and_wait(|done| Op::Vote { vote, done }).await
    }

    /// Records the committed id (written with the next meta change).
    pub fn save_committed(&self, committed: Option<LogId>) -> Result<(), String> {
        self.send(Op::Committed(committed))
    }

    /// Deletes entries at and after `from`, durably.
    pub async fn truncate(&self, from: u64) -> Result<(), String> {
        lock(&self.inner.pending).retain(|i, _| *i < from);
        self.send_and_wait(|done| Op::Truncate { from, done }).await
    }

    /// Deletes entries up to `upto`, durably recording it as the last purged id.
    pub async fn purge(&self, upto: LogId) -> Result<(), String> {
        lock(&self.inner.pending).retain(|i, _| *i > upto.index);
        self.send_and_wait(|done| Op::Purge { upto, done }).await
    }
}

/// Reads every segment in `dir` into a [`State`].
fn recover(dir: &Path, meta: Meta) -> Result<State, WalError> {
    let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| segment::parse_name(&p).map(|first| (first, p)))
        .collect();
    names.sort();
    let purged = meta.last_purged.map(|l| l.index);
    let mut state = State {
        segments: BTreeMap::new(),
        index: VecDeque::new(),
        first_index: purged.map_or(0, |p| p + 1),
        meta,
    };
    let count = names.len();
    for (n, (first, path)) in names.into_iter().enumerate() {
        let last = n + 1 == count;
        let scanned = segment::scan(&path, last)?;
        if scanned.torn {
            tracing::warn!(target: "agent.server.raft",
                "raft WAL: cut a torn record at the end of {} (offset {}, {} bytes): it was \
                 never acknowledged", path.display(), scanned.end, scanned.len - scanned.end);
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            f.set_len(scanned.end).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
        }
        let zeroed = if scanned.torn {
            scanned.end
        } else {
            scanned.len
        };
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?,
        );
        for rec in &scanned.records {
            let i = rec.entry.log_id.index;
            if purged.is_some_and(|p| i <= p) {
                continue;
            }
            if state.index.is_empty() {
                // The first entry kept: the log starts here (a fresh log may start anywhere).
                state.first_index = i;
            }
            let expected = state.first_index + state.index.len() as u64;
            if i != expected {
                return Err(segment::ScanError::Corrupt {
                    path: path.clone(),
                    offset: rec.offset,
                    what: format!("entry {i} where {expected} was expected (a hole in the log)"),
                }
                .into());
            }
            state.index.push_back(Loc {
                segment: first,
                offset: rec.offset,
                log_id: rec.entry.log_id,
            });
        }
        let next = scanned
            .records
            .last()
            .map_or(first, |r| r.entry.log_id.index + 1);
        let len = if scanned.end == 0 && scanned.records.is_empty() && scanned.len < segment::HEADER
        {
            // A last segment whose header never reached the disk: write it again.
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            f.set_len(0).map_err(io_err(&path))?;
            use std::os::unix::fs::FileExt;
            f.write_all_at(&segment::header(first), 0)
                .map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
            segment::HEADER
        } else {
            scanned.end
        };
        let zeroed = zeroed.max(len);
        state.segments.insert(
            first,
            SegmentFile {
                path,
                file,
                len,
                zeroed,
                next,
            },
        );
    }
    Ok(state)
}

#[cfg(test)]
mod tests;
