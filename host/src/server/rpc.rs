//! Routes of the server port (`ports.server`): raft RPCs, forwarded writes and reads, and
//! the cluster handshake. Bodies are CBOR both ways; an answer is the CBOR of a `Result`
//! whose error the caller understands (raft's own errors, or [`OpError`]).
//!
//! Only other servers talk to this port; a malformed body is a 400 naming the path, and
//! the server keeps serving.

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::Node;
use super::autopilot;
use super::cluster::{self, AddServer, JoinRequest, RemoveServer};
use super::ops::{self, ApplyRequest, OpError, QueryRequest};
use super::plugins;
use super::snapshots;
use super::web::{self, Refusal, Reply};
use crate::autopilot::ConfigUpdate;
use crate::raft::from_cbor;
use crate::raft::network::{
    PATH_APPEND, PATH_SNAPSHOT, PATH_SNAPSHOT_STREAM, PATH_VOTE, SNAPSHOT_HEAD, SnapshotHead,
    TARGET_PARAM,
};
use crate::raft::state_machine::{BlobPush, PATH_BLOB, PATH_BLOB_PUSH};
use crate::snapshot::SnapshotFile;

/// Path of a user snapshot save done by the leader for another server (answer: the archive).
pub const PATH_SNAPSHOT_SAVE: &str = "/v1/internal/snapshot/save";
/// Path of a user restore forwarded to the leader (body: the archive; answer: CBOR of
/// `Result<u64, OpError>`, the FSM index restored at).
pub const PATH_SNAPSHOT_RESTORE: &str = "/v1/internal/snapshot/restore";
/// The largest archive a restore accepts (it goes to disk, not memory).
pub const MAX_ARCHIVE: u64 = 1 << 40;

/// The largest body accepted on the server port (raft batches, snapshot chunks).
const MAX_BODY: usize = 64 << 20;
/// The largest streamed snapshot accepted (it goes to disk, not memory).
const MAX_SNAPSHOT: u64 = 1 << 40;

/// Receives a snapshot streamed by the leader (`PATH_SNAPSHOT_STREAM`): the body to a file,
/// then checked whole (CRC, every record, the state hash, the plugins) before raft is asked
/// to install it. A damaged or mismatched snapshot is refused here with a 422 naming the
/// problem (the leader retries later); raft never sees it, so it cannot stop this server.
async fn receive_snapshot(node: &Arc<Node>, req: Request<Incoming>) -> Result<Reply, Refusal> {
    use base64::Engine as _;
    let head = req
        .headers()
        .get(SNAPSHOT_HEAD)
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_bytes())
                .ok()
        })
        .ok_or_else(|| Refusal::bad_request(format!("no valid {SNAPSHOT_HEAD} header")))?;
    let head: SnapshotHead = from_cbor(&head, SNAPSHOT_HEAD).map_err(Refusal::bad_request)?;
    let path = node.snapshots.store.receiving_path();
    web::body_to_file(req, &path, MAX_SNAPSHOT).await?;
    let (fsm, snapshots, at) = (node.fsm.clone(), node.snapshots.clone(), path.clone());
    let crc = head.crc.clone();
    let checked = tokio::task::spawn_blocking(move || snapshots.prepare(&fsm, &at, crc.as_deref()))
        .await
        .map_err(|e| crate::snapshot::SnapshotError::Io(e.to_string()))
        .and_then(|r| r);
    if let Err(e) = checked {
        let _ = tokio::fs::remove_file(&path).await;
        tracing::error!(target: "agent.server.raft", "refused a snapshot from the leader: {e}");
        return Err(Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("snapshot refused: {e}"),
        ));
    }
    let file = SnapshotFile::open(path.clone()).await.map_err(|e| {
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", path.display()),
        )
    })?;
    let snapshot = openraft::Snapshot {
        meta: head.meta,
        snapshot: Box::new(file),
    };
    let answer = node.raft.install_full_snapshot(head.vote, snapshot).await;
    node.snapshots.discard(&path);
    if answer.is_ok() {
        node.touch_leader_contact();
    }
    Ok(web::cbor(&answer))
}

/// Refuses a raft RPC addressed to another server id (421): this address used to be that
/// server's, and the leader has not yet dropped it from the configuration.
fn refuse_misdirected(node: &Node, req: &Request<Incoming>) -> Result<(), Refusal> {
    let q = web::query(req);
    match q.get(TARGET_PARAM) {
        Some(target) if u64::from_str_radix(target, 16).ok() != Some(node.id) => Err(Refusal::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this is server {:016x}, not {target}: that server no longer exists at \
                     this address",
                node.id
            ),
        )),
        _ => Ok(()),
    }
}

async fn decode<T: DeserializeOwned>(req: Request<Incoming>, path: &str) -> Result<T, Refusal> {
    let body = web::body(req, MAX_BODY).await?;
    from_cbor(&body, path).map_err(Refusal::bad_request)
}

/// The handler of the server port.
pub fn handler(
    node: Arc<Node>,
) -> impl Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync + 'static
{
    move |req| {
        let node = node.clone();
        Box::pin(async move { route(node, req).await.unwrap_or_else(Reply::from) })
    }
}

async fn route(node: Arc<Node>, req: Request<Incoming>) -> Result<Reply, Refusal> {
    if req.method() != Method::POST {
        return Ok(web::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the server port takes POST only",
        ));
    }
    let path = req.uri().path().to_string();
    if [PATH_APPEND, PATH_VOTE, PATH_SNAPSHOT, PATH_SNAPSHOT_STREAM].contains(&path.as_str()) {
        refuse_misdirected(&node, &req)?;
    }
    Ok(match path.as_str() {
        PATH_APPEND => {
            let rpc: openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig> =
                decode(req, PATH_APPEND).await?;
            let started = std::time::Instant::now();
            let entries = rpc.entries.len();
            let answer = node.raft.append_entries(rpc).await;
            tracing::trace!(target: "agent.server.raft", "append_entries of {entries} entries handled in {:?}", started.elapsed());
            if answer.is_ok() {
                node.touch_leader_contact();
            }
            web::cbor(&answer)
        }
        PATH_VOTE => web::cbor(&node.raft.vote(decode(req, PATH_VOTE).await?).await),
        PATH_SNAPSHOT_STREAM => receive_snapshot(&node, req).await?,
        PATH_BLOB => {
            let sha: String = decode(req, PATH_BLOB).await?;
            let path = node
                .snapshots
                .blobs
                .path(&sha)
                .map_err(|e| Refusal::bad_request(e.to_string()))?;
            if !path.exists() {
                return Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    format!("no blob {sha}"),
                ));
            }
            web::file(StatusCode::OK, "application/octet-stream", path, false)
        }
        PATH_BLOB_PUSH => {
            let push: BlobPush = decode(req, PATH_BLOB_PUSH).await?;
            let node = node.clone();
            tokio::task::spawn_blocking(move || node.snapshots.receive_blob(&push))
                .await
                .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                .map_err(|e| Refusal::bad_request(e.to_string()))?;
            web::text(StatusCode::OK, "stored")
        }
        PATH_SNAPSHOT_SAVE => match snapshots::save(&node).await {
            Ok(saved) => web::with_index(
                web::file(StatusCode::OK, "application/x-gzip", saved.path, true),
                saved.fsm_index,
            ),
            Err(e) => Reply::from(Refusal::from(e)),
        },
        PATH_SNAPSHOT_RESTORE => {
            let path = node.snapshots.store.tmp_path("upload");
            web::body_to_file(req, &path, MAX_ARCHIVE).await?;
            let answer = snapshots::restore(&node, &path).await;
            let _ = tokio::fs::remove_file(&path).await;
            web::cbor(&answer)
        }
        PATH_SNAPSHOT => {
            let rpc = decode(req, PATH_SNAPSHOT).await?;
            web::cbor(&node.raft.install_snapshot(rpc).await)
        }
        ops::PATH_APPLY => {
            let r: ApplyRequest = decode(req, ops::PATH_APPLY).await?;
            web::cbor(&ops::apply_local(&node, &r).await)
        }
        ops::PATH_QUERY => {
            let r: QueryRequest = decode(req, ops::PATH_QUERY).await?;
            web::cbor(&ops::query_local(&node, &r).await)
        }
        cluster::PATH_JOIN => {
            let r: JoinRequest = decode(req, cluster::PATH_JOIN).await?;
            web::cbor(&cluster::handle_join(&node, r))
        }
        cluster::PATH_ADD => {
            let r: AddServer = decode(req, cluster::PATH_ADD).await?;
            web::cbor(&cluster::handle_add(&node, r))
        }
        autopilot::PATH_PROBE => web::cbor(&autopilot::probe_reply(&node)),
        autopilot::PATH_STATE => web::cbor(&autopilot::state_local(&node)),
        autopilot::PATH_CONFIG_GET => web::cbor(&autopilot::config_local(&node)),
        autopilot::PATH_CONFIG_SET => {
            let update: ConfigUpdate = decode(req, autopilot::PATH_CONFIG_SET).await?;
            web::cbor(&autopilot::set_config_local(&node, update).await)
        }
        plugins::PATH_INSTALL => {
            let body = web::body(req, plugins::MAX_COMPONENT + 4096).await?;
            let r: plugins::InstallRequest =
                from_cbor(&body, plugins::PATH_INSTALL).map_err(Refusal::bad_request)?;
            web::cbor(&plugins::install_local(&node, &r).await)
        }
        cluster::PATH_REMOVE => {
            let r: RemoveServer = decode(req, cluster::PATH_REMOVE).await?;
            let answer: Result<(), OpError> = cluster::handle_remove(&node, r).await;
            web::cbor(&answer)
        }
        other => web::text(StatusCode::NOT_FOUND, format!("no server route {other}")),
    })
}
