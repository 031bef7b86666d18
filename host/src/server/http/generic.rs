//! The generic plugin API: `POST|PUT /v1/apply/{plugin}/{command}` (the body is the
//! command's payload; the answer its result, with `X-Consul-Index` set to the command's
//! FSM index) and `GET|POST /v1/query/{plugin}/{query}` (the body is the query's
//! arguments; `?stale`, `?consistent`, and blocking `?index=N&wait=D`). Every plugin
//! command and query is reachable here, in CBOR or JSON.

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use std::sync::Arc;

use crate::protocol::{ApplyRequest, QueryRequest};
use crate::server::Node;
use crate::server::ops;
use crate::server::web::{self, MAX_BODY, Refusal, Reply, blocking_params, consistency};

/// `POST|PUT /v1/apply/{plugin}/{command}`.
pub async fn apply(
    node: &Arc<Node>,
    req: Request<Incoming>,
    plugin: String,
    command: String,
) -> Result<Reply, Refusal> {
    let json = body_format(&req)?;
    let payload = to_plugin_bytes(web::body(req, MAX_BODY).await?, json)?;
    let applied = ops::apply(
        node,
        &ApplyRequest {
            plugin,
            command,
            payload,
        },
    )
    .await
    .map_err(Refusal::from)?;
    let mut reply = match applied.result {
        Ok(bytes) => plugin_answer(bytes.into_vec(), json),
        Err(f) => Reply::from(Refusal::of(f.kind, f.message)),
    };
    if let Ok(v) = HeaderValue::from_str(&applied.raft_index.to_string()) {
        reply.headers_mut().insert("X-Fsmhost-Raft-Index", v);
    }
    Ok(web::with_index(reply, applied.index))
}

/// `GET|POST /v1/query/{plugin}/{query}`.
pub async fn query(
    node: &Arc<Node>,
    req: Request<Incoming>,
    plugin: String,
    query: String,
) -> Result<Reply, Refusal> {
    let json = is_json(&req);
    let q = web::query(&req);
    let consistency = consistency(&q)?;
    let (min_index, wait) = blocking_params(&q)?;
    let args = to_plugin_bytes(web::body(req, MAX_BODY).await?, json)?;
    let r = QueryRequest {
        plugin,
        query,
        args,
        consistency,
        min_index,
        wait_ms: wait.as_millis() as u64,
    };
    let reply = ops::query(node, &r).await.map_err(Refusal::from)?;
    Ok(web::with_index(
        plugin_answer(reply.bytes, json),
        reply.index,
    ))
}

/// Whether the request's body is JSON (else CBOR), when the query's body has no
/// `Content-Type`.
fn is_json(req: &Request<Incoming>) -> bool {
    web::media_type(req).as_deref() == Some("application/json")
}

/// Whether a command's body is JSON (true) or CBOR (false): a write names its format,
/// so that no page can send one through a browser without a CORS preflight (which this
/// server never grants).
fn body_format(req: &Request<Incoming>) -> Result<bool, Refusal> {
    match web::media_type(req).as_deref() {
        Some("application/json") => Ok(true),
        Some("application/cbor") => Ok(false),
        other => Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "a command's body needs Content-Type application/json or application/cbor \
                 (got {})",
                other.unwrap_or("none")
            ),
        )),
    }
}

/// The request body as CBOR (converted from JSON when it is JSON).
fn to_plugin_bytes(body: Bytes, json: bool) -> Result<Vec<u8>, Refusal> {
    if !json {
        return Ok(body.to_vec());
    }
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Refusal::bad_request(format!("request body is not JSON: {e}")))?;
    Ok(crate::codec::to_cbor(&value))
}

/// A plugin's answer in the client's format.
fn plugin_answer(bytes: Vec<u8>, json: bool) -> Reply {
    if !json {
        return web::bytes(StatusCode::OK, "application/cbor", bytes);
    }
    match ciborium::from_reader::<ciborium::Value, _>(bytes.as_slice())
        .map_err(|e| e.to_string())
        .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
    {
        Ok(v) => web::json(StatusCode::OK, &v),
        Err(e) => web::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the plugin's answer is not valid CBOR: {e}"),
        ),
    }
}
