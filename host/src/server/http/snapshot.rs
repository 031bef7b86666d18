//! User snapshot endpoints: `GET /v1/snapshot` (`?stale`: this server's state, else the
//! leader's, streamed through this server) and `PUT /v1/snapshot` (a restore, through the
//! leader).

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::http_body;
use crate::protocol::{OpError, Rpc};
use crate::raft::network::CallFailure;
use crate::server::rpc::MAX_ARCHIVE;
use crate::server::web::{self, Refusal, Reply};
use crate::server::{Node, snapshot_jobs};

/// `GET /v1/snapshot`: an archive of the leader's state (this server's with `?stale`),
/// streamed, with `X-Consul-Index` set to the FSM index of the state it holds.
pub async fn save(node: &Arc<Node>, q: &BTreeMap<String, String>) -> Result<Reply, Refusal> {
    if q.contains_key("stale") || node.is_leader() {
        let saved = snapshot_jobs::save(node).await?;
        let reply = web::file(StatusCode::OK, "application/x-gzip", saved.path, true);
        return Ok(web::with_index(reply, saved.fsm_index));
    }
    let leader = leader_rpc_addr(node)?;
    let response = node
        .client
        .stream(
            Method::POST,
            &leader,
            Rpc::SnapshotSave.path(),
            None,
            http_body::full(Bytes::new()),
            Duration::from_secs(600),
        )
        .await
        .map_err(|e| leader_refusal("asking the leader for a snapshot", e))?;
    let index = response.headers().get("X-Consul-Index").cloned();
    let body = http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(
        response.into_body(),
        std::io::Error::other,
    ));
    let mut reply = hyper::Response::new(body);
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-gzip"));
    if let Some(i) = index {
        reply.headers_mut().insert("X-Consul-Index", i);
    }
    Ok(reply)
}

/// `PUT /v1/snapshot`: restores an archive into the running cluster (through the leader).
/// An empty 200 with `X-Consul-Index` once every server switches at the restore's index
/// (the leader's commit); a refused archive is a 400 naming the problem, and nothing changes.
pub async fn restore(node: &Arc<Node>, req: Request<Incoming>) -> Result<Reply, Refusal> {
    if web::query(&req).contains_key("stale") {
        return Err(Refusal::bad_request("stale not allowed for restore"));
    }
    let path = node.snapshots.store.tmp_path("upload");
    web::body_to_file(req, &path, MAX_ARCHIVE).await?;
    let restored = if node.is_leader() {
        snapshot_jobs::restore(node, &path)
            .await
            .map_err(Refusal::from)
    } else {
        match leader_rpc_addr(node) {
            Err(e) => Err(e),
            Ok(leader) => node
                .client
                .post_stream(
                    &leader,
                    Rpc::SnapshotRestore.path(),
                    None,
                    http_body::file(path.clone(), false, None),
                    Duration::from_secs(600),
                )
                .await
                .map_err(|e| leader_refusal("sending the archive to the leader", e))
                .and_then(|bytes| {
                    crate::codec::from_cbor::<Result<u64, OpError>>(
                        &bytes,
                        Rpc::SnapshotRestore.path(),
                    )
                    .map_err(|e| Refusal::new(StatusCode::BAD_GATEWAY, e))
                })
                .and_then(|answer| answer.map_err(Refusal::from)),
        }
    };
    let _ = tokio::fs::remove_file(&path).await;
    Ok(web::with_index(
        web::bytes(StatusCode::OK, "text/plain; charset=utf-8", Bytes::new()),
        restored?,
    ))
}

/// A failed call to the leader, as the client's refusal: the leader's own status and
/// message when it answered, else 503 naming the failure.
fn leader_refusal(what: &str, e: CallFailure) -> Refusal {
    match e {
        CallFailure::Status {
            status, message, ..
        } => Refusal::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message,
        ),
        e => Refusal::new(StatusCode::SERVICE_UNAVAILABLE, format!("{what}: {e}")),
    }
}

fn leader_rpc_addr(node: &Node) -> Result<String, Refusal> {
    node.leader()
        .map(|(_, l)| l.rpc_addr)
        .ok_or_else(|| Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "no cluster leader"))
}
