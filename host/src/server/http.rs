//! The operators' HTTP API (`ports.http`): plugin writes and reads, status, leave.
//!
//! Routes:
//! - `POST|PUT /v1/apply/{plugin}/{command}`: the body is the command's payload; the answer
//!   is the command's result, with `X-Consul-Index` set to the entry's log index;
//! - `GET|POST /v1/query/{plugin}/{query}`: the body is the query's arguments;
//!   `?stale`, `?consistent`, and blocking `?index=N&wait=D`;
//! - `GET /v1/status/leader`, `GET /v1/status/peers`, `GET /v1/agent/self`,
//!   `GET /v1/agent/members`;
//! - `GET /v1/operator/raft/configuration`, `DELETE /v1/operator/raft/peer?id=|address=`;
//! - `GET|PUT /v1/operator/autopilot/configuration` (`?cas=`, `?stale`),
//!   `GET /v1/operator/autopilot/health` (429 when unhealthy), `GET .../state`
//!   (`server::autopilot`);
//! - `PUT|POST /v1/agent/leave`: leave the cluster, then stop;
//! - `GET /v1/plugins`: the loaded plugins (version, edition, hash, tables and indexes,
//!   commands, queries);
//! - `GET /v1/snapshot` (`?stale`): a user snapshot archive; `PUT /v1/snapshot`: restore one;
//! - any other path: the plugin whose routes serve it (`plugin_http`), e.g. the kv plugin's
//!   `/v1/kv/` and `/v1/txn`.
//!
//! Every response carries `X-Consul-Index` (the data's index, or the last applied FSM index),
//! `X-Consul-KnownLeader` and `X-Consul-LastContact`.
//!
//! Bodies are CBOR (`application/cbor`) or JSON (`application/json`, converted to CBOR for
//! the plugin and the answer back to JSON). Errors are plain text naming the problem, with
//! the plugin's status (404 for an unknown plugin, command or query).

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::Node;
use super::cluster;
use super::ops;
use super::plugins;
use super::rpc::MAX_ARCHIVE;
use super::snapshots;
use super::web::{self, MAX_BODY, Refusal, Reply, blocking_params, consistency};
use crate::http_body;
use crate::protocol::{ApplyRequest, InstallRequest, OpError, QueryRequest, Rpc};
use crate::raft::network::CallFailure;

/// The handler of the HTTP port.
pub fn handler(
    node: Arc<Node>,
) -> impl Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync + 'static
{
    move |req| {
        let node = node.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let method = req.method().to_string();
            let prefix = route_prefix(req.uri().path());
            let mut reply = route(&node, req).await.unwrap_or_else(Reply::from);
            add_leader_headers(&node, &mut reply);
            if !reply.headers().contains_key("X-Consul-Index") {
                reply = web::with_index(reply, node.fsm.last_applied().max(1));
            }
            crate::metrics::METRICS
                .http_request_time
                .with_label_values(&[method.as_str(), prefix])
                .observe(started.elapsed().as_secs_f64());
            reply
        })
    }
}

/// A path's route prefix, as metrics label it (`/v1/kv/a/b` is `/v1/kv`): a bounded set.
fn route_prefix(path: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "/v1/apply",
        "/v1/query",
        "/v1/status",
        "/v1/agent",
        "/v1/operator",
        "/v1/snapshot",
        "/v1/plugins",
    ];
    KNOWN
        .iter()
        .find(|p| path == **p || path.starts_with(&format!("{p}/")))
        .copied()
        .unwrap_or("other")
}

fn add_leader_headers(node: &Node, reply: &mut Reply) {
    let h = reply.headers_mut();
    let known = node.leader().is_some();
    h.insert(
        "X-Consul-KnownLeader",
        HeaderValue::from_static(if known { "true" } else { "false" }),
    );
    let contact = node.last_contact().map_or(0, |d| d.as_millis() as u64);
    if let Ok(v) = HeaderValue::from_str(&contact.to_string()) {
        h.insert("X-Consul-LastContact", v);
    }
}

/// Whether the request's body is JSON.
fn is_json(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
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

async fn route(node: &Arc<Node>, req: Request<Incoming>) -> Result<Reply, Refusal> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::POST | &Method::PUT, ["v1", "apply", plugin, command]) => {
            let json = is_json(&req);
            let (plugin, command) = (plugin.to_string(), command.to_string());
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
        (&Method::GET | &Method::POST, ["v1", "query", plugin, query]) => {
            let json = is_json(&req);
            let q = web::query(&req);
            let consistency = consistency(&q)?;
            let (min_index, wait) = blocking_params(&q)?;
            let (plugin, query) = (plugin.to_string(), query.to_string());
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
        (&Method::GET, ["v1", "status", "leader"]) => {
            let leader = node.leader().map(|(_, i)| i.rpc_addr).unwrap_or_default();
            Ok(web::json(StatusCode::OK, &json!(leader)))
        }
        (&Method::GET, ["v1", "status", "peers"]) => {
            let m = node.membership();
            let peers: Vec<String> = m
                .voter_ids()
                .filter_map(|id| m.get_node(&id).map(|n| n.rpc_addr.clone()))
                .collect();
            Ok(web::json(StatusCode::OK, &json!(peers)))
        }
        (&Method::GET, ["v1", "agent", "metrics"]) => {
            let q = web::query(&req);
            let m = agent_metrics(node);
            Ok(match q.get("format").map(String::as_str) {
                Some("prometheus") => web::bytes(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    m.prometheus(),
                ),
                None | Some("json") => web::json(
                    StatusCode::OK,
                    &m.consul_json(&crate::logging::timestamp(
                        std::time::Duration::from_millis(crate::clock::now_ms()),
                    )),
                ),
                Some(other) => {
                    return Err(Refusal::bad_request(format!(
                        "format: {other:?} is not prometheus or json"
                    )));
                }
            })
        }
        (&Method::GET, ["v1", "plugins"]) => Ok(web::with_index(
            web::json(StatusCode::OK, &plugins_json(node)),
            node.fsm.last_applied().max(1),
        )),
        (&Method::PUT, ["v1", "plugins"]) => plugin_install(node, req).await,
        (&Method::GET, ["v1", "snapshot"]) => snapshot_save(node, &web::query(&req)).await,
        (&Method::PUT, ["v1", "snapshot"]) => snapshot_restore(node, req).await,
        (&Method::GET, ["v1", "agent", "self"]) => Ok(web::json(StatusCode::OK, &agent_self(node))),
        (&Method::GET, ["v1", "agent", "members"]) => {
            Ok(web::json(StatusCode::OK, &members(node).await))
        }
        (&Method::GET, ["v1", "operator", "raft", "configuration"]) => {
            Ok(web::json(StatusCode::OK, &raft_configuration(node)))
        }
        (
            _,
            [
                "v1",
                "operator",
                "autopilot",
                leaf @ ("configuration" | "health" | "state"),
            ],
        ) => {
            let leaf = leaf.to_string();
            super::autopilot::serve_http(node, req, &leaf).await
        }
        (&Method::DELETE, ["v1", "operator", "raft", "peer"]) => {
            let id = peer_id(node, &web::query(&req))?;
            cluster::remove(node, id).await.map_err(Refusal::from)?;
            Ok(web::text(
                StatusCode::OK,
                format!("removed server {id:016x}"),
            ))
        }
        (&Method::PUT | &Method::POST, ["v1", "agent", "leave"]) => {
            cluster::leave(node).await.map_err(Refusal::from)?;
            tracing::info!(target: "agent", "graceful leave complete; shutting down");
            node.request_shutdown();
            Ok(web::text(StatusCode::OK, "left the cluster"))
        }
        _ => match node.fsm.plugins().route_for(method.as_str(), &path) {
            Some(plugin) => super::plugin_http::serve(node, plugin.clone(), req).await,
            None => Err(Refusal::new(
                StatusCode::NOT_FOUND,
                format!("no route {method} {path}"),
            )),
        },
    }
}

/// The server a remove-peer names: `?id=` (hex, as `list-peers` prints it) or `?address=`
/// (its server address).
fn peer_id(node: &Node, q: &std::collections::BTreeMap<String, String>) -> Result<u64, Refusal> {
    let m = node.membership();
    if let Some(id) = q.get("id") {
        return u64::from_str_radix(id.trim(), 16).map_err(|_| {
            Refusal::bad_request(format!(
                "id: {id:?} is not a server id (16 hex digits, as list-peers shows)"
            ))
        });
    }
    if let Some(addr) = q.get("address") {
        return m
            .nodes()
            .find(|(_, n)| n.rpc_addr == *addr)
            .map(|(id, _)| *id)
            .ok_or_else(|| {
                Refusal::new(
                    StatusCode::NOT_FOUND,
                    format!("no server with address {addr} in the raft configuration"),
                )
            });
    }
    Err(Refusal::bad_request(
        "give ?id= or ?address= of the server to remove",
    ))
}

/// `GET /v1/operator/raft/configuration`: Consul's shape, plus each server's last log index
/// as the leader knows it (`null` when this server is not the leader).
fn raft_configuration(node: &Node) -> serde_json::Value {
    let m = node.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let servers: Vec<serde_json::Value> = membership
        .nodes()
        .map(|(id, info)| {
            let last_index = if m.current_leader == Some(node.id) {
                if *id == node.id {
                    m.last_log_index
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .map(|l| l.index)
                }
            } else {
                None
            };
            json!({
                "ID": format!("{id:016x}"),
                "Node": info.name,
                "Address": info.rpc_addr,
                "Leader": m.current_leader == Some(*id),
                "Voter": voters.contains(id),
                "ProtocolVersion": "3",
                "LastIndex": last_index,
            })
        })
        .collect();
    json!({
        "Servers": servers,
        "Index": m.membership_config.log_id().as_ref().map_or(0, |l| l.index),
    })
}

/// `GET /v1/agent/self`: this node's configuration and raft and FSM state.
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

/// `GET /v1/snapshot`: an archive of the leader's state (this server's with `?stale`),
/// streamed, with `X-Consul-Index` set to the FSM index of the state it holds.
async fn snapshot_save(
    node: &Arc<Node>,
    q: &std::collections::BTreeMap<String, String>,
) -> Result<Reply, Refusal> {
    if q.contains_key("stale") || node.is_leader() {
        let saved = snapshots::save(node).await?;
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
async fn snapshot_restore(node: &Arc<Node>, req: Request<Incoming>) -> Result<Reply, Refusal> {
    if web::query(&req).contains_key("stale") {
        return Err(Refusal::bad_request("stale not allowed for restore"));
    }
    let path = node.snapshots.store.tmp_path("upload");
    web::body_to_file(req, &path, MAX_ARCHIVE).await?;
    let restored = if node.is_leader() {
        snapshots::restore(node, &path).await.map_err(Refusal::from)
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

/// `PUT /v1/plugins` (`?dry-run`): installs the component in the body on every server
/// through the log, or with `?dry-run` only reports what it would change. 200 with the
/// report (and `X-Consul-Index`, the raft index every server switched at); a refused
/// component is a 400 or 409 naming the problem, and nothing changes.
async fn plugin_install(node: &Arc<Node>, req: Request<Incoming>) -> Result<Reply, Refusal> {
    let q = web::query(&req);
    let dry_run = q.contains_key("dry-run") || q.contains_key("dry_run");
    let component = web::body(req, plugins::MAX_COMPONENT).await?;
    let request = InstallRequest {
        component: serde_bytes::ByteBuf::from(component.to_vec()),
        dry_run,
    };
    let report = plugins::install(node, &request).await?;
    Ok(web::with_index(
        web::json(StatusCode::OK, &report.to_json()),
        report.raft_index.max(1),
    ))
}

/// The metrics, with raft's figures read now.
fn agent_metrics(node: &Node) -> &'static crate::metrics::Metrics {
    let m = node.raft.metrics().borrow().clone();
    let metrics = &crate::metrics::METRICS;
    for (field, value) in [
        ("last_log_index", m.last_log_index.unwrap_or(0)),
        ("applied_index", m.last_applied.map_or(0, |l| l.index)),
        ("term", m.current_term),
        ("last_snapshot_index", m.snapshot.map_or(0, |l| l.index)),
        ("is_leader", u64::from(m.current_leader == Some(node.id))),
        ("fsm_index", node.fsm.last_applied()),
    ] {
        metrics
            .raft_state
            .with_label_values(&[field])
            .set(value as f64);
    }
    match node.autopilot.state() {
        Some(s) => {
            let healthy = if s.healthy { 1.0 } else { 0.0 };
            metrics
                .autopilot
                .with_label_values(&["healthy"])
                .set(healthy);
            metrics
                .autopilot
                .with_label_values(&["failure_tolerance"])
                .set(f64::from(s.failure_tolerance));
        }
        None => {
            for field in ["healthy", "failure_tolerance"] {
                let _ = metrics.autopilot.remove_label_values(&[field]);
            }
        }
    }
    metrics
}

/// `GET /v1/plugins`: the loaded plugins with their schemas, commands and queries.
fn plugins_json(node: &Node) -> serde_json::Value {
    let plugins: Vec<serde_json::Value> = node
        .fsm
        .plugins()
        .plugins()
        .iter()
        .map(|p| {
            let d = p.description();
            let tables: Vec<serde_json::Value> = d
                .tables
                .iter()
                .map(|t| {
                    let indexes: Vec<serde_json::Value> = t
                        .indexes
                        .iter()
                        .map(|i| {
                            json!({
                                "Name": i.name,
                                "Unique": i.unique,
                                "Multi": i.multi,
                                "AllowMissing": i.allow_missing,
                                "Prefix": i.prefix,
                            })
                        })
                        .collect();
                    json!({ "Name": t.name, "Indexes": indexes })
                })
                .collect();
            json!({
                "Name": d.name,
                "Version": d.version,
                "Edition": d.edition,
                "Hash": p.hash_hex(),
                "Tables": tables,
                "Commands": d.commands,
                "Queries": d.queries,
                "Routes": d.routes.iter().map(|r| json!({
                    "Method": r.method,
                    "Path": r.path,
                    "Prefix": r.prefix,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!(plugins)
}

/// `GET /v1/agent/members`: the servers of the raft configuration in the shape of Consul's
/// members list. Without a gossip layer, `Status` is 1 (alive) for a server whose HTTP API
/// answers within a second, and 4 (failed) for one that does not.
async fn members(node: &Arc<Node>) -> serde_json::Value {
    let membership = node.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let mut probes = tokio::task::JoinSet::new();
    for (id, info) in membership.nodes() {
        let (id, info, node) = (*id, info.clone(), node.clone());
        probes.spawn(async move {
            let alive = id == node.id
                || node
                    .client
                    .request(
                        Method::GET,
                        &info.http_addr,
                        "/v1/status/leader",
                        Vec::new(),
                        Duration::from_secs(1),
                    )
                    .await
                    .is_ok();
            (id, info, alive)
        });
    }
    let mut rows = Vec::new();
    while let Some(Ok((id, info, alive))) = probes.join_next().await {
        let (host, port) = info
            .rpc_addr
            .rsplit_once(':')
            .unwrap_or((&info.rpc_addr, "0"));
        rows.push(json!({
            "Name": info.name,
            "Addr": host,
            "Port": port.parse::<u16>().unwrap_or(0),
            "Tags": {
                "role": "consul",
                "dc": "dc1",
                "id": format!("{id:016x}"),
                "build": env!("CARGO_PKG_VERSION"),
                "vsn": "2",
                "http_addr": info.http_addr,
                "voter": voters.contains(&id).to_string(),
            },
            "Status": if alive { 1 } else { 4 },
        }));
    }
    rows.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
    json!(rows)
}

fn agent_self(node: &Node) -> serde_json::Value {
    let m = node.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: Vec<String> = membership
        .voter_ids()
        .map(|v| format!("{v:016x}"))
        .collect();
    let learners: Vec<String> = membership
        .learner_ids()
        .map(|v| format!("{v:016x}"))
        .collect();
    json!({
        "Config": {
            "NodeName": node.info.name,
            "NodeID": format!("{:016x}", node.id),
            "Server": true,
            "Version": env!("CARGO_PKG_VERSION"),
        },
        "Member": {
            "Name": node.info.name,
            "Addr": node.info.rpc_addr,
            "HTTPAddr": node.info.http_addr,
        },
        "Stats": {
            "raft": {
                "state": format!("{:?}", m.state),
                "term": m.current_term,
                "last_log_index": m.last_log_index.unwrap_or(0),
                "applied_index": m.last_applied.map_or(0, |l| l.index),
                "last_snapshot_index": m.snapshot.map_or(0, |l| l.index),
                "last_snapshot_term": m.snapshot.map_or(0, |l| l.leader_id.term),
                "last_purged_index": m.purged.map(|l| l.index),
                "leader": m.current_leader.map(|l| format!("{l:016x}")),
                "voters": voters,
                "learners": learners,
            },
            "fsm": {
                "last_applied": node.fsm.last_applied(),
                "state_hash": hex::encode(node.fsm.state_hash()),
            },
        },
    })
}
