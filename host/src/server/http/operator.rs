//! Operator endpoints: `GET /v1/operator/raft/configuration`,
//! `DELETE /v1/operator/raft/peer?id=|address=`, and
//! `GET|PUT /v1/operator/autopilot/configuration` (`?cas=`, `?stale`),
//! `GET /v1/operator/autopilot/health` (429 when unhealthy) and `GET .../state`, in
//! Consul's bodies and statuses.

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::autopilot::{ConfigUpdate, api, config as conf};
use crate::server::web::{self, Refusal, Reply};
use crate::server::{Node, autopilot_runner as autopilot, cluster};

/// `GET /v1/operator/raft/configuration`: Consul's shape, plus each server's last log
/// index as the leader knows it (`null` when this server is not the leader).
pub fn raft_configuration(node: &Node) -> Reply {
    web::json(StatusCode::OK, &raft_configuration_json(node))
}

/// `DELETE /v1/operator/raft/peer?id=|address=`: removes a server from the cluster.
pub async fn remove_peer(node: &Arc<Node>, req: &Request<Incoming>) -> Result<Reply, Refusal> {
    let id = peer_id(node, &web::query(req))?;
    cluster::remove(node, id).await.map_err(Refusal::from)?;
    Ok(web::text(
        StatusCode::OK,
        format!("removed server {id:016x}"),
    ))
}

/// The server a remove-peer names: `?id=` (hex, as `list-peers` prints it) or `?address=`
/// (its server address).
fn peer_id(node: &Node, q: &BTreeMap<String, String>) -> Result<u64, Refusal> {
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

fn raft_configuration_json(node: &Node) -> serde_json::Value {
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

/// `/v1/operator/autopilot/{configuration,health,state}` (`leaf` is the last segment):
/// Consul's bodies and statuses (health is 429 while any server is unhealthy).
pub async fn autopilot(node: &Node, req: Request<Incoming>, leaf: &str) -> Result<Reply, Refusal> {
    let q = web::query(&req);
    match (req.method().clone(), leaf) {
        (Method::GET, "configuration") => {
            let stored = autopilot::config(node, q.contains_key("stale")).await?;
            let body = conf::to_json(&stored.config, stored.create_index, stored.modify_index);
            Ok(web::json(StatusCode::OK, &body))
        }
        (Method::PUT, "configuration") => {
            let cas = q
                .get("cas")
                .map(|v| v.trim().parse::<u64>())
                .transpose()
                .map_err(|e| Refusal::bad_request(format!("Error parsing cas value: {e}")))?;
            let body = web::body(req, web::MAX_BODY).await?;
            let config = conf::from_json(&body).map_err(|e| {
                Refusal::bad_request(format!("Error parsing autopilot config: {e}"))
            })?;
            let stored = autopilot::set_config(node, ConfigUpdate { config, cas }).await?;
            Ok(web::json(StatusCode::OK, &serde_json::json!(stored)))
        }
        (Method::GET, "health") => {
            let state = autopilot::state(node).await?;
            let status = if state.healthy {
                StatusCode::OK
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            Ok(web::json(status, &api::health(&state)))
        }
        (Method::GET, "state") => Ok(web::json(
            StatusCode::OK,
            &api::state(&autopilot::state(node).await?),
        )),
        (method, _) => Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on /v1/operator/autopilot/{leaf}"),
        )),
    }
}
