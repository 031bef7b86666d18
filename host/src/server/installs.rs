//! Installing a plugin on a running cluster (`PUT /v1/plugins`, `fsmhost plugin install`):
//! the leader loads and checks the component, stores it as a content-addressed blob, copies
//! it to every other server (each checks the hash before it keeps it), and commits one
//! install entry; every server switches to it at that entry's index (see
//! `raft::state_machine`, which fetches the blob from a peer if the copy missed it, and
//! [`crate::upgrade`] for the rules).
//!
//! Owns: the install request and its report, the leader's checks, the dry run.

use serde_bytes::ByteBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Node;
use super::ops;
use crate::fsm::FailureKind;
use crate::protocol::{BlobPush, InstallReport, InstallRequest, OpError, Rpc};
use crate::raft::{InstallEntry, Request, Response};
use crate::upgrade::{self, UpgradeError};

/// The largest component accepted.
pub const MAX_COMPONENT: usize = 32 << 20;

/// How long a forwarded install may take (compiling a large component on 2 cores).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

impl InstallReport {
    /// The report as the HTTP API answers it (Consul-style field names).
    pub fn to_json(&self) -> serde_json::Value {
        let tables: Vec<serde_json::Value> = self
            .plan
            .tables
            .iter()
            .map(|t| {
                serde_json::json!({
                    "Table": t.table,
                    "Change": t.change.as_str(),
                    "FromLayout": t.from_layout,
                    "ToLayout": t.to_layout,
                    "IndexesAdded": t.indexes_added,
                    "IndexesRemoved": t.indexes_removed,
                    "IndexesChanged": t.indexes_changed,
                    "Objects": t.objects,
                    "ObjectsAfter": t.objects_after,
                })
            })
            .collect();
        serde_json::json!({
            "Plugin": self.plan.plugin,
            "FromVersion": self.plan.from_version,
            "ToVersion": self.plan.to_version,
            "SHA256": self.plan.sha256,
            "Index": self.raft_index,
            "DryRun": self.dry_run,
            "CopiedTo": self.copied_to,
            "OtherServers": self.others,
            "Tables": tables,
        })
    }
}

fn upgrade_refusal(e: UpgradeError) -> OpError {
    let kind = match e {
        UpgradeError::BadVersion { .. } => FailureKind::BadRequest,
        _ => FailureKind::Conflict,
    };
    OpError::failed(kind, e.to_string())
}

/// Installs (or dry-runs) on this server, which must lead: loads the component, checks it
/// against the running set and state (the dry run also rebuilds a copy of the store, so a
/// new unique index that existing objects violate is found), stores the blob and commits
/// the install entry. A refusal commits nothing.
pub async fn install_local(
    node: &Arc<Node>,
    req: &InstallRequest,
) -> Result<InstallReport, OpError> {
    if !node.is_leader() {
        return Err(OpError::NotLeader);
    }
    let (fsm, bytes, dry_run) = (node.fsm.clone(), req.component.clone(), req.dry_run);
    let checked = tokio::task::spawn_blocking(move || {
        let runtime = fsm.runtime().ok_or_else(|| {
            OpError::failed(FailureKind::Internal, "this server cannot load plugins")
        })?;
        let plugin = runtime
            .load("the uploaded component", &bytes)
            .map_err(|e| OpError::failed(FailureKind::BadRequest, e.to_string()))?;
        let plan = fsm.plan_install(&plugin).map_err(upgrade_refusal)?;
        // A dry run rebuilds a copy of the store; so does a real install whose tables
        // go through `migrate`, so a migration that fails is refused before the log.
        let migrates = plan.tables.iter().any(|t| t.change.migrates());
        if dry_run || migrates {
            let plugin = Arc::new(plugin);
            let next =
                upgrade::replaced(&fsm.plugins(), plugin.clone()).map_err(upgrade_refusal)?;
            let rebuilt = upgrade::rebuild_store(&fsm.store(), &next, &plan, &plugin)
                .map_err(upgrade_refusal)?;
            return Ok(plan.counted(&rebuilt));
        }
        Ok::<_, OpError>(plan)
    })
    .await
    .map_err(|e| OpError::failed(FailureKind::Internal, e.to_string()))??;
    if dry_run {
        return Ok(InstallReport {
            plan: checked,
            raft_index: 0,
            dry_run: true,
            copied_to: 0,
            others: 0,
        });
    }
    let blobs = &node.snapshots.blobs;
    let tmp = blobs.tmp_path();
    tokio::fs::write(&tmp, &req.component)
        .await
        .map_err(|e| OpError::failed(FailureKind::Internal, format!("{}: {e}", tmp.display())))?;
    blobs
        .adopt(&tmp, Some(&checked.sha256))
        .map_err(|e| OpError::failed(FailureKind::Internal, e.to_string()))?;
    let (copied_to, others) = copy_component(node, &checked.sha256, &req.component).await;
    let entry = Request::Install(InstallEntry {
        name: checked.plugin.clone(),
        version: checked.to_version.clone(),
        sha256: checked.sha256.clone(),
        origin: node.info.rpc_addr.clone(),
    });
    let (raft_index, written) = ops::write_host_entry_at(node, entry).await?;
    let plan = match written {
        Response::Installed(Ok(plan)) => plan,
        // Another install got in first, or the state changed since the check.
        Response::Installed(Err(e)) => return Err(OpError::failed(FailureKind::Conflict, e)),
        other => {
            return Err(OpError::failed(
                FailureKind::Internal,
                format!("the install entry returned {other:?}"),
            ));
        }
    };
    // A snapshot right away: it carries the component, so a new server gets the plugin
    // with the state, and a restart need not replay the install.
    let n = node.clone();
    tokio::spawn(async move {
        if let Err(e) = super::snapshot_jobs::take(&n).await {
            tracing::warn!(target: "agent.server.raft", "snapshot after plugin install: {e}");
        }
    });
    Ok(InstallReport {
        plan,
        raft_index,
        dry_run: false,
        copied_to,
        others,
    })
}

/// How long copying the component to one server may take.
const COPY_TIMEOUT: Duration = Duration::from_secs(30);

/// Copies the component to every other member, at once; returns how many took it and how
/// many there are. Best effort: a server the copy misses (down, slow) fetches the blob
/// from a peer when it applies the entry, so a miss only delays that server.
async fn copy_component(node: &Arc<Node>, sha256: &str, bytes: &[u8]) -> (usize, usize) {
    let push = BlobPush {
        sha256: sha256.to_string(),
        bytes: ByteBuf::from(bytes.to_vec()),
    };
    let body = crate::codec::to_cbor(&push);
    let mut copies = tokio::task::JoinSet::new();
    for (id, info) in node.membership().nodes() {
        if *id == node.id {
            continue;
        }
        let (client, addr, body) = (node.client.clone(), info.rpc_addr.clone(), body.clone());
        copies.spawn(async move {
            let sent = client
                .call_raw(&addr, Rpc::BlobPush.path(), body, COPY_TIMEOUT)
                .await;
            (addr, sent)
        });
    }
    let (mut copied, mut others) = (0, 0);
    while let Some(done) = copies.join_next().await {
        others += 1;
        match done {
            Ok((_, Ok(_))) => copied += 1,
            Ok((addr, Err(e))) => tracing::warn!(target: "agent.server",
                "copying plugin component {sha256} to {addr}: {e}; it will fetch it when it applies the install"),
            Err(e) => tracing::warn!(target: "agent.server", "copying plugin component: {e}"),
        }
    }
    (copied, others)
}

/// Installs through the leader, from any server.
pub async fn install(node: &Arc<Node>, req: &InstallRequest) -> Result<InstallReport, OpError> {
    ops::through_leader(node, Rpc::Install.path(), req, INSTALL_TIMEOUT, || {
        install_local(node, req)
    })
    .await
}
