//! The dispatcher of the server port (`ports.server`): one arm per route of
//! [`crate::protocol::Rpc`], which says what each takes and answers (bodies are CBOR both
//! ways; an answer is the CBOR of a `Result` whose error the caller understands).
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
use super::acl;
use super::autopilot_runner as autopilot;
use super::cluster;
use super::installs;
use super::ops;
use super::raft_gate::{self, Ask};
use super::snapshot_jobs;
use super::web::{self, Refusal, Reply};
use crate::autopilot::ConfigUpdate;
use crate::codec::from_cbor;
use crate::protocol::{
    AddServer, ApplyRequest, BlobPush, JoinRequest, OpError, QueryRequest, RemoveServer, Rpc,
    SNAPSHOT_HEAD, SnapshotHead, TARGET_PARAM,
};
use crate::snapshot::SnapshotFile;

/// The largest archive a restore accepts (it goes to disk, not memory).
pub const MAX_ARCHIVE: u64 = 1 << 40;

/// The largest body accepted on the server port (raft batches, snapshot chunks).
const MAX_BODY: usize = 64 << 20;
/// The largest streamed snapshot accepted (it goes to disk, not memory).
const MAX_SNAPSHOT: u64 = 1 << 40;

/// Receives a snapshot streamed by the leader ([`Rpc::SnapshotStream`]): the body to a file,
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
    raft_gate::admit(node, Ask::Follow, head.vote.leader_id().node_id, &head)?;
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
    let Some(rpc) = Rpc::from_path(req.uri().path()) else {
        return Ok(web::text(
            StatusCode::NOT_FOUND,
            format!("no server route {}", req.uri().path()),
        ));
    };
    if rpc.is_raft() {
        refuse_misdirected(&node, &req)?;
    }
    let path = rpc.path();
    Ok(match rpc {
        Rpc::Append => {
            let rpc: openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig> =
                decode(req, path).await?;
            raft_gate::admit(&node, Ask::Follow, rpc.vote.leader_id().node_id, &rpc)?;
            let started = std::time::Instant::now();
            let entries = rpc.entries.len();
            let answer = node.raft.append_entries(rpc).await;
            tracing::trace!(target: "agent.server.raft", "append_entries of {entries} entries handled in {:?}", started.elapsed());
            // A stale leader's append (answered with this server's higher vote) is no
            // contact with a leader: it must not hold back this server's elections.
            if let Ok(reply) = &answer
                && !matches!(reply, openraft::raft::AppendEntriesResponse::HigherVote(_))
            {
                node.touch_leader_contact();
            }
            web::cbor(&answer)
        }
        Rpc::Vote => {
            let rpc: openraft::raft::VoteRequest<u64> = decode(req, path).await?;
            raft_gate::admit(&node, Ask::Vote, rpc.vote.leader_id().node_id, &rpc)?;
            web::cbor(&node.raft.vote(rpc).await)
        }
        Rpc::PreVote => {
            let rpc: crate::protocol::PreVoteRequest = decode(req, path).await?;
            web::cbor(&super::election::answer(&node, &rpc))
        }
        Rpc::SnapshotStream => receive_snapshot(&node, req).await?,
        Rpc::Blob => {
            let sha: String = decode(req, path).await?;
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
        Rpc::BlobPush => {
            let push: BlobPush = decode(req, path).await?;
            let node = node.clone();
            tokio::task::spawn_blocking(move || node.snapshots.receive_blob(&push))
                .await
                .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                .map_err(|e| Refusal::bad_request(e.to_string()))?;
            web::text(StatusCode::OK, "stored")
        }
        Rpc::SnapshotSave => match snapshot_jobs::save(&node).await {
            Ok(saved) => web::with_index(
                web::file(StatusCode::OK, "application/x-gzip", saved.path, true),
                saved.fsm_index,
            ),
            Err(e) => Reply::from(Refusal::from(e)),
        },
        Rpc::SnapshotRestore => {
            let path = node.snapshots.store.tmp_path("upload");
            web::body_to_file(req, &path, MAX_ARCHIVE).await?;
            let answer = snapshot_jobs::restore(&node, &path).await;
            let _ = tokio::fs::remove_file(&path).await;
            web::cbor(&answer)
        }
        Rpc::Snapshot => {
            let rpc: openraft::raft::InstallSnapshotRequest<crate::raft::TypeConfig> =
                decode(req, path).await?;
            raft_gate::admit(&node, Ask::Follow, rpc.vote.leader_id().node_id, &rpc)?;
            web::cbor(&node.raft.install_snapshot(rpc).await)
        }
        Rpc::Apply => {
            let r: ApplyRequest = decode(req, path).await?;
            web::cbor(&ops::apply_local(&node, &r).await)
        }
        Rpc::Query => {
            let r: QueryRequest = decode(req, path).await?;
            web::cbor(&ops::query_local(&node, &r).await)
        }
        Rpc::Join => {
            let r: JoinRequest = decode(req, path).await?;
            web::cbor(&cluster::handle_join(&node, r))
        }
        Rpc::AddServer => {
            let r: AddServer = decode(req, path).await?;
            web::cbor(&cluster::handle_add(&node, r))
        }
        Rpc::AutopilotProbe => web::cbor(&autopilot::probe_reply(&node)),
        Rpc::AutopilotState => web::cbor(&autopilot::state_local(&node)),
        Rpc::AutopilotConfigGet => web::cbor(&autopilot::config_local(&node)),
        Rpc::AutopilotConfigSet => {
            let update: ConfigUpdate = decode(req, path).await?;
            web::cbor(&autopilot::set_config_local(&node, update).await)
        }
        Rpc::AclWrite => {
            let op: crate::acl::store::AclOp = decode(req, path).await?;
            web::cbor(&acl::write_local(&node, op).await)
        }
        Rpc::Install => {
            let body = web::body(req, installs::MAX_COMPONENT + 4096).await?;
            let r: crate::protocol::InstallRequest =
                from_cbor(&body, Rpc::Install.path()).map_err(Refusal::bad_request)?;
            web::cbor(&installs::install_local(&node, &r).await)
        }
        Rpc::RemoveServer => {
            let r: RemoveServer = decode(req, path).await?;
            let answer: Result<(), OpError> = cluster::handle_remove(&node, r).await;
            web::cbor(&answer)
        }
    })
}
