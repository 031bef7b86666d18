//! Watches raft's metrics for the server: counts leader changes, and notices a raft that
//! stopped on its own.
//!
//! openraft's core quits for good on a storage error: a log write or fsync that failed (a
//! full disk: `No space left on device`), a snapshot it could not write, an entry this
//! server cannot apply. A process that kept running after that would look alive (its HTTP
//! port answers, its stale reads work) while every write and consistent read failed and
//! the cluster counted it as a member. [`stopped_on_its_own`] resolves when that happens;
//! `server::run` then stops the server gracefully and exits non-zero, and
//! [`storage_failure`] is the ERROR line that says why and what the operator should do.
//!
//! Why stop rather than recover in place: redb latches the log's first I/O error (every
//! later read and write of the file fails until it is opened again, so nothing is written
//! over a file whose state is unknown after a failed fsync), and openraft's core cannot be
//! started again inside the process. A restart opens the log again, replays it and
//! catches up from the other servers. Nothing acknowledged is lost: an entry is
//! acknowledged only after the commit holding it (fsync included) returned, and a write's
//! client gets its answer only once a quorum has it so.

use openraft::error::Fatal;

use crate::raft::Raft;

/// Counts leader changes and records each leadership's read floor (`ops::ReadFloor`) from
/// raft's metrics, until raft stops.
pub async fn count_leader_changes(node: std::sync::Arc<super::Node>) {
    let mut rx = node.raft.metrics();
    let mut last = rx.borrow().current_leader;
    node.read_floor.observe(node.id, &rx.borrow());
    while rx.changed().await.is_ok() {
        let m = rx.borrow_and_update();
        node.read_floor.observe(node.id, &m);
        if m.current_leader != last {
            crate::metrics::METRICS.raft_leader_changes.inc();
            last = m.current_leader;
        }
    }
}

/// Resolves when raft's core has stopped without being asked to ([`Raft::shutdown`] was
/// not called): its reason, openraft's error (the storage error that stopped it), or that
/// its task ended without one (a panic). Pending forever while raft runs, and after a
/// requested stop.
pub async fn stopped_on_its_own(raft: Raft) -> String {
    let mut rx = raft.metrics();
    let mut ended = false;
    loop {
        match &rx.borrow_and_update().running_state {
            Err(Fatal::Stopped) => break,
            Err(e) => return e.to_string(),
            Ok(()) if ended => return "raft's core ended without a reason (a panic?)".into(),
            Ok(()) => {}
        }
        // The sender is dropped when the core's task ends: after its last report, or in
        // a panic, without one.
        ended = rx.changed().await.is_err();
    }
    std::future::pending().await
}

/// The ERROR line for a raft that stopped on `reason`: what failed, where the data is, and
/// what to do.
pub fn storage_failure(reason: &str, data_dir: Option<&std::path::Path>) -> String {
    let dir = data_dir.map_or_else(|| "(in memory)".to_string(), |d| d.display().to_string());
    format!(
        "raft stopped: {reason}. This server cannot take part in the cluster any more and is \
         shutting down (data_dir {dir}). Every write it acknowledged is in its log. Free space \
         on the data_dir's filesystem (or fix the disk), then start the server again: it \
         replays its log and catches up from the other servers"
    )
}
