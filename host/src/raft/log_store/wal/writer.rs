//! The WAL's one writer thread: every change, in the order it was queued; appends queued
//! together written as one batch with one `fdatasync` (group commit), and answered only
//! after it. Invariants: see the parent module.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use openraft::storage::LogFlushed;

use super::{Loc, Op, SegmentFile, State, lock, segment, sync_dir, write_meta};
use crate::codec::to_cbor;
use crate::raft::{LogEntry, LogId, TypeConfig};

/// How far ahead of the records a segment is zero-filled: a sync that overwrites blocks in
/// place costs the filesystem no journal commit, a sync that grows the file does. Never
/// beyond the segment size.
const PREALLOCATE: u64 = 4 << 20;

/// The writer thread's side.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) segment_size: u64,
    pub(super) state: Arc<Mutex<State>>,
    pub(super) pending: Arc<Mutex<BTreeMap<u64, LogEntry>>>,
    /// Set once a write failed: the files may hold a partial record, so nothing more is
    /// written until a restart cuts it. (Never locked while `state` is held by this thread
    /// for longer than the call.)
    pub(super) failed: Mutex<Option<String>>,
}

impl Writer {
    pub(super) fn run(self, rx: mpsc::Receiver<Op>) {
        let mut committed_dirty = false;
        while let Ok(first) = rx.recv() {
            let mut ops = vec![first];
            while let Ok(op) = rx.try_recv() {
                ops.push(op);
            }
            let mut appends: Vec<(Vec<LogEntry>, LogFlushed<TypeConfig>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Append { entries, callback } => appends.push((entries, callback)),
                    other => {
                        self.flush_appends(std::mem::take(&mut appends));
                        if let Op::Committed(c) = other {
                            lock(&self.state).meta.committed = c;
                            committed_dirty = true;
                            continue;
                        }
                        self.apply(other);
                        committed_dirty = false;
                    }
                }
            }
            self.flush_appends(appends);
        }
        if committed_dirty {
            let meta = lock(&self.state).meta.clone();
            if let Err(e) = write_meta(&self.dir, &meta) {
                tracing::warn!(target: "agent.server.raft", "raft WAL: writing the last committed id at close: {e}");
            }
        }
    }

    fn fail(&self, what: String) -> String {
        let msg = format!("raft WAL {}: {what}", self.dir.display());
        tracing::error!(target: "agent.server.raft", "{msg}");
        lock(&self.failed).get_or_insert(msg.clone());
        msg
    }

    fn check_failed(&self) -> Result<(), String> {
        match &*lock(&self.failed) {
            Some(f) => Err(format!("an earlier write failed ({f}); restart the server")),
            None => Ok(()),
        }
    }

    /// Writes every queued batch as one record, syncs once, then answers them all.
    fn flush_appends(&self, appends: Vec<(Vec<LogEntry>, LogFlushed<TypeConfig>)>) {
        if appends.is_empty() {
            return;
        }
        let mut batch: Vec<LogEntry> = Vec::new();
        let mut callbacks = Vec::with_capacity(appends.len());
        for (entries, cb) in appends {
            batch.extend(entries);
            callbacks.push(cb);
        }
        let result = self.check_failed().and_then(|()| self.write_batch(batch));
        for cb in callbacks {
            cb.log_io_completed(result.clone().map_err(std::io::Error::other));
        }
    }

    fn write_batch(&self, mut batch: Vec<LogEntry>) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        {
            // Entries at or below the last purged id are purged already: not stored.
            let s = lock(&self.state);
            if let Some(p) = s.meta.last_purged {
                let dropped: Vec<LogEntry> = batch
                    .iter()
                    .filter(|e| e.log_id.index <= p.index)
                    .cloned()
                    .collect();
                drop(s);
                if !dropped.is_empty() {
                    self.forget_pending(&dropped);
                    batch.retain(|e| e.log_id.index > p.index);
                }
            }
        }
        let Some(first) = batch.first().map(|e| e.log_id.index) else {
            return Ok(());
        };
        {
            let mut s = lock(&self.state);
            if s.index.is_empty() && first >= s.first_index {
                // An empty log starts at the first entry it is given.
                s.first_index = first;
            }
            let expected = s.first_index + s.index.len() as u64;
            if first != expected {
                drop(s);
                return Err(self.fail(format!(
                    "an append starting at index {first}, where {expected} was expected"
                )));
            }
        }
        let (seg_first, file, offset) = self.segment_for(first)?;
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(batch.len());
        for e in &batch {
            offsets.push(offset + bytes.len() as u64);
            segment::push_record(&mut bytes, &to_cbor(e), offset);
        }
        self.zero_ahead(seg_first, &file, offset + bytes.len() as u64)?;
        file.write_all_at(&bytes, offset)
            .and_then(|()| file.sync_data())
            .map_err(|e| {
                self.fail(format!(
                    "appending to {}: {e}",
                    segment::file_name(seg_first)
                ))
            })?;
        let mut s = lock(&self.state);
        if let Some(seg) = s.segments.get_mut(&seg_first) {
            seg.len = offset + bytes.len() as u64;
            seg.next = first + batch.len() as u64;
        }
        for (e, at) in batch.iter().zip(offsets) {
            s.index.push_back(Loc {
                segment: seg_first,
                offset: at,
                log_id: e.log_id,
            });
        }
        drop(s);
        self.forget_pending(&batch);
        Ok(())
    }

    /// Makes sure segment `seg` is zero-filled up to at least `end` (and [`PREALLOCATE`]
    /// beyond, within the segment size).
    fn zero_ahead(&self, seg: u64, file: &File, end: u64) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        let zeroed = lock(&self.state)
            .segments
            .get(&seg)
            .map_or(end, |s| s.zeroed);
        if end <= zeroed {
            return Ok(());
        }
        let to = end.max((zeroed + PREALLOCATE).min(self.segment_size));
        let chunk = vec![0u8; 1 << 20];
        let mut at = zeroed;
        while at < to {
            let n = (to - at).min(chunk.len() as u64) as usize;
            file.write_all_at(&chunk[..n], at)
                .map_err(|e| self.fail(format!("zero-filling {}: {e}", segment::file_name(seg))))?;
            at += n as u64;
        }
        if let Some(s) = lock(&self.state).segments.get_mut(&seg) {
            s.zeroed = to;
        }
        Ok(())
    }

    /// Removes `entries` from the pending map, unless a later append replaced them.
    fn forget_pending(&self, entries: &[LogEntry]) {
        let mut p = lock(&self.pending);
        for e in entries {
            if p.get(&e.log_id.index).is_some_and(|x| x.log_id == e.log_id) {
                p.remove(&e.log_id.index);
            }
        }
    }

    /// The segment the records starting at entry `first` go to: the last one, unless there
    /// is none, it is full, or it does not end just before `first` (after a snapshot
    /// skipped the log ahead); then a new one.
    fn segment_for(&self, first: u64) -> Result<(u64, Arc<File>, u64), String> {
        {
            let s = lock(&self.state);
            if let Some((&f, seg)) = s.segments.iter().next_back()
                && seg.next == first
                && (seg.len < self.segment_size || seg.len <= segment::HEADER)
            {
                return Ok((f, seg.file.clone(), seg.len));
            }
        }
        let path = self.dir.join(segment::file_name(first));
        let created = (|| -> std::io::Result<File> {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            f.write_all(&segment::header(first))?;
            f.sync_all()?;
            Ok(f)
        })()
        .map_err(|e| self.fail(format!("creating {}: {e}", path.display())))?;
        sync_dir(&self.dir).map_err(|e| self.fail(e.to_string()))?;
        let file = Arc::new(created);
        lock(&self.state).segments.insert(
            first,
            SegmentFile {
                path,
                file: file.clone(),
                len: segment::HEADER,
                zeroed: segment::HEADER,
                next: first,
            },
        );
        Ok((first, file, segment::HEADER))
    }

    fn apply(&self, op: Op) {
        match op {
            Op::Vote { vote, done } => {
                let r = self.check_failed().and_then(|()| {
                    let mut meta = lock(&self.state).meta.clone();
                    meta.vote = Some(vote);
                    write_meta(&self.dir, &meta).map_err(|e| self.fail(e.to_string()))?;
                    lock(&self.state).meta = meta;
                    Ok(())
                });
                let _ = done.send(r);
            }
            Op::Truncate { from, done } => {
                let r = self.check_failed().and_then(|()| self.truncate(from));
                let _ = done.send(r);
            }
            Op::Purge { upto, done } => {
                let r = self.check_failed().and_then(|()| self.purge(upto));
                let _ = done.send(r);
            }
            Op::Append { .. } | Op::Committed(_) => {}
        }
    }

    fn truncate(&self, from: u64) -> Result<(), String> {
        let mut s = lock(&self.state);
        let Some(loc) = s.loc(from) else {
            return Ok(()); // nothing at or after `from` on disk
        };
        let later: Vec<u64> = s
            .segments
            .range(loc.segment + 1..)
            .map(|(f, _)| *f)
            .collect();
        for f in later {
            if let Some(seg) = s.segments.remove(&f) {
                std::fs::remove_file(&seg.path)
                    .map_err(|e| self.fail(format!("removing {}: {e}", seg.path.display())))?;
            }
        }
        let seg = s
            .segments
            .get_mut(&loc.segment)
            .ok_or_else(|| format!("no segment {}", loc.segment))?;
        OpenOptions::new()
            .write(true)
            .open(&seg.path)
            .and_then(|f| f.set_len(loc.offset).and_then(|()| f.sync_all()))
            .map_err(|e| self.fail(format!("truncating {}: {e}", seg.path.display())))?;
        seg.len = loc.offset;
        seg.zeroed = loc.offset;
        seg.next = from;
        let keep = from.saturating_sub(s.first_index) as usize;
        s.index.truncate(keep);
        drop(s);
        sync_dir(&self.dir).map_err(|e| self.fail(e.to_string()))
    }

    fn purge(&self, upto: LogId) -> Result<(), String> {
        let mut meta = lock(&self.state).meta.clone();
        if meta.last_purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        meta.last_purged = Some(upto);
        write_meta(&self.dir, &meta).map_err(|e| self.fail(e.to_string()))?;
        let mut s = lock(&self.state);
        s.meta = meta;
        let drop_n = (upto.index + 1).saturating_sub(s.first_index) as usize;
        let drop_n = drop_n.min(s.index.len());
        s.index.drain(..drop_n);
        s.first_index = s.first_index.max(upto.index + 1);
        // Whole segments whose entries are all purged: every one before the segment that
        // holds the first kept entry (or, with none kept, before the last segment).
        let keep_from = match s.index.front() {
            Some(l) => l.segment,
            None => s.segments.keys().next_back().copied().unwrap_or(0),
        };
        let gone: Vec<u64> = s.segments.range(..keep_from).map(|(f, _)| *f).collect();
        for f in gone {
            if let Some(seg) = s.segments.remove(&f)
                && let Err(e) = std::fs::remove_file(&seg.path)
            {
                tracing::warn!(target: "agent.server.raft",
                    "raft WAL: removing purged segment {}: {e}", seg.path.display());
            }
        }
        Ok(())
    }
}
