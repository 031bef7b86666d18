//! When raft snapshots are taken and what they leave of the log, on Consul's schedule.
//!
//! Owns: the policy loop (every `raft_snapshot_interval`, randomized between 1x and 2x as
//! hashicorp/raft does, a snapshot is taken if `raft_snapshot_threshold` entries were applied
//! since the last one), [`take`] (one snapshot, then log compaction keeping
//! `raft_trailing_logs` entries, with Consul's log lines), and the operators' [`save`] (a
//! fresh raft snapshot packed as an archive, as Consul's `snapshot save` leaves one in
//! `raft/snapshots`) and [`restore`] (an archive checked whole, stored as a blob, then one
//! log entry that switches every server to it at the same index).
//!
//! Invariants: one snapshot at a time on a server (`Node::snapshot_lock`); the log is only
//! compacted up to a snapshot that is complete on disk; `snapshot complete up to` is logged
//! after the compaction, as Consul does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Node;
use crate::fsm::FailureKind;
use crate::protocol::OpError;
use crate::raft::{LogId, Request, Response, RestoreEntry};
use crate::snapshot::SnapshotError;
use crate::snapshot::archive;
use crate::snapshot::state_file::StateReader;

/// How long [`take`] waits for openraft to build a snapshot.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// How long it waits for the compaction it asked for (replication to a lagging server may
/// hold it back; the next snapshot compacts then).
const PURGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A duration between `d` and `2d`, uniformly.
fn randomized(d: Duration) -> Duration {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    d + d.mul_f64(f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX))
}

/// Runs the snapshot policy until the task is aborted.
pub async fn run_policy(node: Arc<Node>) {
    let policy = node.config.snapshots;
    loop {
        tokio::time::sleep(randomized(policy.interval)).await;
        node.snapshots
            .blobs
            .remove_orphans(crate::snapshot::blobs::ORPHAN_AGE);
        let (applied, snapshot) = {
            let m = node.raft.metrics().borrow().clone();
            (
                m.last_applied.map_or(0, |l| l.index),
                m.snapshot.map_or(0, |l| l.index),
            )
        };
        if applied.saturating_sub(snapshot) < policy.threshold {
            continue;
        }
        if let Err(e) = take(&node).await {
            tracing::error!(target: "agent.server.raft", "failed to take snapshot: {e}");
        }
    }
}

/// Takes a snapshot of everything applied so far (unless the newest snapshot already
/// covers it), then compacts the log, keeping `raft_trailing_logs` entries. Returns the
/// snapshot's log id.
pub async fn take(node: &Node) -> Result<LogId, String> {
    let _one = node.snapshot_lock.lock().await;
    take_locked(node).await
}

/// [`take`], with `Node::snapshot_lock` held by the caller.
async fn take_locked(node: &Node) -> Result<LogId, String> {
    let m = node.raft.metrics().borrow().clone();
    let Some(applied) = m.last_applied else {
        return Err("nothing has been applied yet".to_string());
    };
    let snapshot = match m.snapshot {
        Some(s) if s.index >= applied.index => s,
        _ => {
            node.raft
                .trigger()
                .snapshot()
                .await
                .map_err(|e| format!("raft is not running: {e}"))?;
            let m = node
                .raft
                .wait(Some(BUILD_TIMEOUT))
                .metrics(
                    |m| m.snapshot.is_some_and(|s| s.index >= applied.index),
                    "snapshot built",
                )
                .await
                .map_err(|e| match &node.raft.metrics().borrow().running_state {
                    Err(stopped) => format!("the snapshot was not built: raft stopped: {stopped}"),
                    Ok(()) => format!("the snapshot was not built: {e}"),
                })?;
            m.snapshot.unwrap_or(applied)
        }
    };
    compact(node, snapshot.index).await;
    tracing::info!(target: "agent.server.raft", "snapshot complete up to: index={}", snapshot.index);
    Ok(snapshot)
}

/// Compacts the log up to `min(snapshot index, last log index - trailing logs)`.
async fn compact(node: &Node, snapshot_index: u64) {
    let m = node.raft.metrics().borrow().clone();
    let last = m.last_log_index.unwrap_or(0);
    let upto = snapshot_index.min(last.saturating_sub(node.config.snapshots.trailing_logs));
    let purged = m.purged.map(|l| l.index);
    if purged.is_some_and(|p| p >= upto) || upto == 0 {
        return;
    }
    if let Err(e) = node.raft.trigger().purge_log(upto).await {
        tracing::warn!(target: "agent.server.raft", "log compaction not started: {e}");
        return;
    }
    let done = node
        .raft
        .wait(Some(PURGE_TIMEOUT))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= upto),
            "log compacted",
        )
        .await;
    match done {
        Ok(m) => node.snapshots.blobs.prune(m.purged.map_or(0, |l| l.index)),
        Err(_) => tracing::info!(target: "agent.server.raft",
            "log compaction up to index {upto} is deferred while a server catches up"),
    }
}

fn snapshot_failure(e: SnapshotError) -> OpError {
    match e {
        SnapshotError::Io(m) => OpError::failed(FailureKind::Internal, m),
        e => OpError::failed(FailureKind::BadRequest, e.to_string()),
    }
}

/// A saved archive: a temporary file (the caller sends it, then removes it).
pub struct Saved {
    /// The archive.
    pub path: PathBuf,
    /// The FSM index of the state it holds (its `X-Consul-Index`).
    pub fsm_index: u64,
}

/// Takes a raft snapshot of everything applied on this server and packs it as a user
/// archive in a temporary file.
pub async fn save(node: &Node) -> Result<Saved, OpError> {
    let _one = node.snapshot_lock.lock().await;
    let started = std::time::Instant::now();
    let snap = take_locked(node)
        .await
        .map_err(|e| OpError::failed(FailureKind::Internal, e))?;
    let dir = node
        .snapshots
        .store
        .list()
        .into_iter()
        .find(|d| d.index >= snap.index)
        .ok_or_else(|| {
            OpError::failed(
                FailureKind::Internal,
                "the snapshot just taken is not on disk",
            )
        })?;
    let path = node.snapshots.store.tmp_path("archive");
    let out = path.clone();
    let fsm_index = tokio::task::spawn_blocking(move || {
        let state = dir.state_path();
        let header = std::fs::File::open(&state)
            .map_err(|e| SnapshotError::at(&state, e))
            .and_then(StateReader::open)?
            .header()
            .clone();
        let file = std::fs::File::create(&out).map_err(|e| SnapshotError::at(&out, e))?;
        archive::write(&dir.path, std::io::BufWriter::with_capacity(1 << 20, file))?;
        Ok::<_, SnapshotError>(header.fsm_index)
    })
    .await
    .map_err(|e| OpError::failed(FailureKind::Internal, e.to_string()))?
    .map_err(|e| {
        let _ = std::fs::remove_file(&path);
        snapshot_failure(e)
    })?;
    crate::metrics::METRICS.record_snapshot("save", started.elapsed());
    tracing::info!(target: "agent.server.snapshot",
        "saved a snapshot archive: index={} fsm_index={fsm_index}", snap.index);
    Ok(Saved { path, fsm_index })
}

/// Restores the archive at `archive_path` into the running cluster (leader only): checks
/// it whole (names, SHA256SUMS, size, CRC, every record, the state hash, the plugins)
/// before anything is committed, stores its `state.bin` as a blob, and commits one restore
/// entry that every server applies at the same index. Returns the FSM index the state was
/// restored at. A refused archive changes nothing.
pub async fn restore(node: &Arc<Node>, archive_path: &Path) -> Result<u64, OpError> {
    if !node.is_leader() {
        return Err(OpError::NotLeader);
    }
    let work = node.snapshots.store.tmp_path("restore");
    let (fsm, snapshots, archive_path, at) = (
        node.fsm.clone(),
        node.snapshots.clone(),
        archive_path.to_path_buf(),
        work.clone(),
    );
    let checked = tokio::task::spawn_blocking(move || {
        std::fs::create_dir(&at).map_err(|e| SnapshotError::at(&at, e))?;
        let file =
            std::fs::File::open(&archive_path).map_err(|e| SnapshotError::at(&archive_path, e))?;
        archive::read(file, &at)?;
        let state = at.join("state.bin");
        // An archive from outside: its rows are hashed as they stream by before any is
        // kept, so a forged one cannot make this server hold its whole content first.
        std::fs::File::open(&state)
            .map_err(|e| SnapshotError::at(&state, e))
            .and_then(|f| StateReader::open(std::io::BufReader::with_capacity(1 << 20, f)))?
            .check_hash()?;
        // Read and check every record now, so a bad archive is refused before the log;
        // the store read is kept for this server's own apply of the entry.
        let mut prepared = crate::raft::depot::read_received(&fsm, &state)?;
        let (sha256, size) = snapshots.blobs.adopt(&state, None)?;
        prepared.path = snapshots.blobs.path(&sha256)?;
        snapshots.keep(prepared);
        Ok((sha256, size))
    })
    .await
    .map_err(|e| OpError::failed(FailureKind::Internal, e.to_string()))
    .and_then(|r| r.map_err(snapshot_failure));
    let _ = std::fs::remove_dir_all(&work);
    let (sha256, size) = checked?;
    let blob = node
        .snapshots
        .blobs
        .path(&sha256)
        .map_err(snapshot_failure)?;
    let entry = Request::Restore(RestoreEntry {
        sha256,
        size,
        origin: node.info.rpc_addr.clone(),
    });
    let written = super::ops::write_host_entry(node, entry).await;
    // Applied (the kept store was taken) or not committed: either way, let it go.
    drop(node.snapshots.take_prepared(&blob));
    let Response::Restored(index) = written? else {
        return Err(OpError::failed(
            FailureKind::Internal,
            "the restore entry returned no restore outcome",
        ));
    };
    // A snapshot right away, so that a restart need not replay the restore entry.
    let n = node.clone();
    tokio::spawn(async move {
        if let Err(e) = take(&n).await {
            tracing::warn!(target: "agent.server.raft", "snapshot after restore: {e}");
        }
    });
    Ok(index)
}
