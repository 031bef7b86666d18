//! Leader timers: how time becomes log entries for plugins.
//!
//! About once a second the leader calls every plugin's `tick` export (read-only, on its
//! current state, under a query slot) with its clock, when it became leader, the servers
//! as autopilot judged them and the tombstone TTL, and proposes every command a tick
//! returns through the log, each as an ordinary command entry stamped with the leader's
//! clock. Time never enters `apply` any other way, so every server applies the same
//! thing. The next round waits until the last round's commands are applied. Followers do
//! nothing here.
//!
//! What the bundled plugins do with it: the catalog registers the servers (Consul's
//! leader reconcile: node, `serfHealth`, `consul` service) and expires sessions past
//! twice their TTL (counted from their last renewal, or from when this leader took over,
//! whichever is later: a new leader restarts every TTL at full length, as Consul's does);
//! kv reaps tombstones older than `tombstone_ttl`.
//!
//! Owns: the round loop, the tick context, proposing what ticks return; and the leader's
//! log verification checkpoints ([`run_checkpoints`], `raft_logstore.verification`).

use std::sync::Arc;
use std::time::Duration;

use fsmhost_guest::{ServerInfo, TickCtx};

use crate::autopilot::RaftStatus;
use crate::protocol::ApplyRequest;
use crate::server::{Node, ops};

/// How often the leader runs the plugins' timers.
pub const TICK_INTERVAL: Duration = Duration::from_secs(1);

/// Runs the plugins' timers while this server leads, until the task is aborted.
pub async fn run(node: Arc<Node>) {
    // (term, ms since the epoch) of the leadership the timers count from.
    let mut leading: Option<(u64, u64)> = None;
    loop {
        tokio::time::sleep(TICK_INTERVAL).await;
        let m = node.raft.metrics().borrow().clone();
        if m.current_leader != Some(node.id) {
            leading = None;
            continue;
        }
        let since = match leading {
            Some((term, since)) if term == m.current_term => since,
            _ => {
                let now = crate::clock::now_ms();
                leading = Some((m.current_term, now));
                now
            }
        };
        round(&node, context(&node, since)).await;
    }
}

/// What the ticks are told this round.
fn context(node: &Node, leader_since_ms: u64) -> TickCtx {
    let servers = node
        .autopilot
        .state()
        .map(|state| {
            state
                .servers
                .iter()
                .map(|s| ServerInfo {
                    id: s.seen.id,
                    name: s.seen.name.clone(),
                    address: s.seen.address.clone(),
                    status: s.seen.node_status.as_str().to_string(),
                    voter: s.seen.status != RaftStatus::NonVoter,
                    version: s.seen.version.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    TickCtx {
        now_ms: crate::clock::now_ms(),
        leader_since_ms,
        datacenter: node.config.datacenter.clone(),
        servers,
        tombstone_ttl_ms: u64::try_from(node.config.tombstone_ttl.as_millis()).unwrap_or(u64::MAX),
    }
}

/// One round: every plugin's tick, then its commands, proposed together (so the batcher
/// can carry them in few entries) and awaited.
async fn round(node: &Arc<Node>, ctx: TickCtx) {
    let plugins = node.fsm.plugins();
    for plugin in plugins.plugins() {
        let name = plugin.name();
        let calls = match node.fsm.tick(name, ctx.clone()).await {
            Ok(calls) => calls,
            Err(e) => {
                tracing::warn!(target: "agent.server.timers", plugin = name, "tick failed: {e}");
                continue;
            }
        };
        let mut proposals = tokio::task::JoinSet::new();
        for (command, payload) in calls {
            let req = ApplyRequest {
                plugin: name.to_string(),
                command,
                payload,
            };
            let node = node.clone();
            proposals.spawn(async move { (ops::apply_local(&node, &req).await, req) });
        }
        while let Some(done) = proposals.join_next().await {
            let Ok((applied, req)) = done else { continue };
            let plugin = req.plugin.as_str();
            match applied {
                Ok(applied) => {
                    if let Err(f) = applied.result {
                        tracing::debug!(target: "agent.server.timers", plugin,
                            "{} from the tick did nothing: {}", req.command, f.message);
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "agent.server.timers", plugin,
                        "proposing {} from the tick failed: {e}", req.command);
                }
            }
        }
    }
}

/// Proposes a log verification checkpoint every `raft_logstore.verification.interval`
/// while this server leads (see `raft::verifier`), until the task is aborted.
pub async fn run_checkpoints(node: Arc<Node>, verifier: Arc<crate::raft::verifier::Verifier>) {
    let interval = node.config.raft_logstore.verification_interval;
    loop {
        tokio::time::sleep(interval).await;
        if !node.is_leader() {
            continue;
        }
        let Some(cp) = verifier.propose() else {
            continue;
        };
        match ops::write_host_entry(&node, crate::raft::Request::Checkpoint(cp)).await {
            Ok(_) => {
                crate::metrics::METRICS.verifier.checkpoints_written.inc();
                tracing::debug!(target: "agent.server.raft",
                    "log verification: checkpoint of {}..={} written", cp.from, cp.to);
            }
            Err(e) => tracing::warn!(target: "agent.server.raft",
                "log verification: writing a checkpoint failed: {e}"),
        }
    }
}
