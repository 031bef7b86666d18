//! Operator endpoints: `GET /v1/operator/raft/configuration`,
//! `DELETE /v1/operator/raft/peer?id=|address=`, and
//! `GET|PUT /v1/operator/autopilot/configuration` (`?cas=`, `?stale`),
//! `GET /v1/operator/autopilot/health` (429 when unhealthy or not judged yet) and
//! `GET .../state`, and `/v1/operator/keyring` (no gossip, so no keyring), in Consul's
//! bodies and statuses.

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::autopilot::{ConfigUpdate, api, config as conf};
use crate::fsm::FailureKind;
use crate::protocol::OpError;
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
/// (its server address). As in Consul, a server that is not in the raft configuration is
/// a 500 naming what was given, and exactly one of the two must be given (400).
fn peer_id(node: &Node, q: &BTreeMap<String, String>) -> Result<u64, Refusal> {
    let m = node.membership();
    let not_found = |what: &str, value: &str| {
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what} {value:?} was not found in the Raft configuration"),
        )
    };
    match (q.get("id"), q.get("address")) {
        (Some(_), Some(_)) => Err(Refusal::bad_request(
            "Must specify only one of ?id or ?address",
        )),
        (Some(id), None) => u64::from_str_radix(id.trim(), 16)
            .ok()
            .filter(|id| m.get_node(id).is_some())
            .ok_or_else(|| not_found("id", id)),
        (None, Some(addr)) => m
            .nodes()
            .find(|(_, n)| n.rpc_addr == *addr)
            .map(|(id, _)| *id)
            .ok_or_else(|| not_found("address", addr)),
        (None, None) => Err(Refusal::bad_request(
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to \
             remove",
        )),
    }
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
        (Method::GET, "health") => match autopilot::state(node).await {
            Ok(state) => {
                let status = if state.healthy {
                    StatusCode::OK
                } else {
                    StatusCode::TOO_MANY_REQUESTS
                };
                Ok(web::json(status, &api::health(&state)))
            }
            // Not judged yet (a new leader's first interval) or no leader: Consul answers
            // an empty reply, which is unhealthy.
            Err(OpError::Failed {
                kind: FailureKind::Unavailable,
                ..
            }) => Ok(web::json(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({"Healthy": false, "FailureTolerance": 0, "Servers": null}),
            )),
            Err(e) => Err(e.into()),
        },
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

/// `/v1/operator/keyring` (every method): Consul with gossip encryption off answers 500
/// with serf's error from every member (fsmhost has no gossip layer, so no keyring). The
/// message is Consul's multi-error: the LAN pool's count, then each member's answer.
pub fn keyring(node: &Node, method: &Method) -> Reply {
    let answer = if method == Method::GET {
        "Keyring is empty (encryption not enabled)"
    } else {
        "No keyring to modify (encryption not enabled)"
    };
    let mut names: Vec<String> = node
        .membership()
        .nodes()
        .map(|(_, n)| n.name.clone())
        .collect();
    names.sort();
    web::text(
        StatusCode::INTERNAL_SERVER_ERROR,
        keyring_errors(&node.config.datacenter, &names, answer),
    )
}

/// Consul's `keyringErrorsOrNil` text for one pool in which every member answered
/// `answer` (hashicorp/go-multierror's format).
fn keyring_errors(datacenter: &str, members: &[String], answer: &str) -> String {
    let n = members.len();
    let mut errors = vec![format!(
        "{datacenter} (LAN) error: {n}/{n} nodes reported failure"
    )];
    errors.extend(members.iter().map(|m| format!("{m}: {answer}")));
    let mut text = format!("{} errors occurred:\n", errors.len());
    for e in errors {
        text.push_str(&format!("\t* {e}\n"));
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_errors_are_consuls_multi_error() {
        let text = keyring_errors(
            "dc1",
            &["a".to_string(), "b".to_string()],
            "Keyring is empty (encryption not enabled)",
        );
        assert_eq!(
            text,
            "3 errors occurred:\n\t* dc1 (LAN) error: 2/2 nodes reported failure\n\
             \t* a: Keyring is empty (encryption not enabled)\n\
             \t* b: Keyring is empty (encryption not enabled)\n\n"
        );
    }
}
