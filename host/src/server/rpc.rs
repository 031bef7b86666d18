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
use super::cluster::{self, AddServer, JoinRequest, RemoveServer};
use super::ops::{self, ApplyRequest, OpError, QueryRequest};
use super::web::{self, Refusal, Reply};
use crate::raft::from_cbor;
use crate::raft::network::{PATH_APPEND, PATH_SNAPSHOT, PATH_VOTE};

/// The largest body accepted on the server port (raft batches, snapshot chunks).
const MAX_BODY: usize = 64 << 20;

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
        cluster::PATH_REMOVE => {
            let r: RemoveServer = decode(req, cluster::PATH_REMOVE).await?;
            let answer: Result<(), OpError> = cluster::handle_remove(&node, r).await;
            web::cbor(&answer)
        }
        other => web::text(StatusCode::NOT_FOUND, format!("no server route {other}")),
    })
}
