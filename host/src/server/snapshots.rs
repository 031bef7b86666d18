//! When raft snapshots are taken and what they leave of the log, on Consul's schedule.
//!
//! Owns: the policy loop (every `raft_snapshot_interval`, randomized between 1x and 2x as
//! hashicorp/raft does, a snapshot is taken if `raft_snapshot_threshold` entries were applied
//! since the last one), [`take`] (one snapshot, then log compaction keeping
//! `raft_trailing_logs` entries, with Consul's log lines), shared with operators' saves.
//!
//! Invariants: one snapshot at a time on a server (`Node::snapshot_lock`); the log is only
//! compacted up to a snapshot that is complete on disk; `snapshot complete up to` is logged
//! after the compaction, as Consul does.

use std::sync::Arc;
use std::time::Duration;

use super::Node;
use crate::raft::LogId;

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
                .map_err(|e| format!("the snapshot was not built: {e}"))?;
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
    if done.is_err() {
        tracing::info!(target: "agent.server.raft",
            "log compaction up to index {upto} is deferred while a server catches up");
    }
}
