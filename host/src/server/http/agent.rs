//! Agent and status endpoints: `GET /v1/status/leader`, `GET /v1/status/peers`,
//! `GET /v1/agent/self`, `GET /v1/agent/members` (`?wan=1`), `GET /v1/agent/metrics`
//! (`?format=prometheus`) and `PUT /v1/agent/leave`.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

use crate::membership::NodeInfo;
use crate::server::web::{self, Refusal, Reply};
use crate::server::{Node, cluster};

/// `GET /v1/status/leader`: the leader's server address, `""` when there is none.
pub fn status_leader(node: &Node) -> Reply {
    let leader = node.leader().map(|(_, i)| i.rpc_addr).unwrap_or_default();
    web::json(StatusCode::OK, &json!(leader))
}

/// `GET /v1/status/peers`: the voters' server addresses.
pub fn status_peers(node: &Node) -> Reply {
    let m = node.membership();
    let peers: Vec<String> = m
        .voter_ids()
        .filter_map(|id| m.get_node(&id).map(|n| n.rpc_addr.clone()))
        .collect();
    web::json(StatusCode::OK, &json!(peers))
}

/// `GET /v1/agent/metrics`: Consul's JSON, or `?format=prometheus`.
pub fn metrics(node: &Node, req: &Request<Incoming>) -> Result<Reply, Refusal> {
    let q = web::query(req);
    let m = agent_metrics(node);
    Ok(match q.get("format").map(String::as_str) {
        Some("prometheus") => web::bytes(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            m.prometheus(),
        ),
        None | Some("json") => web::json(
            StatusCode::OK,
            &m.consul_json(&crate::logging::timestamp(Duration::from_millis(
                crate::clock::now_ms(),
            ))),
        ),
        Some(other) => {
            return Err(Refusal::bad_request(format!(
                "format: {other:?} is not prometheus or json"
            )));
        }
    })
}

/// `PUT /v1/agent/leave`: leaves the cluster, then stops this server.
pub async fn leave(node: &Arc<Node>) -> Result<Reply, Refusal> {
    cluster::leave(node).await.map_err(Refusal::from)?;
    tracing::info!(target: "agent", "graceful leave complete; shutting down");
    node.request_shutdown();
    Ok(web::text(StatusCode::OK, "left the cluster"))
}

/// The metrics, with raft's figures read now.
fn agent_metrics(node: &Node) -> &'static crate::metrics::Metrics {
    let m = node.raft.metrics().borrow().clone();
    let metrics = &crate::metrics::METRICS;
    let as_gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let raft = &metrics.raft;
    raft.applied_index
        .set(as_gauge(m.last_applied.map_or(0, |l| l.index)));
    raft.last_index.set(as_gauge(m.last_log_index.unwrap_or(0)));
    raft.term.set(as_gauge(m.current_term));
    raft.snapshot_last_index
        .set(as_gauge(m.snapshot.map_or(0, |l| l.index)));
    raft.is_leader
        .set(i64::from(m.current_leader == Some(node.id)));
    raft.fsm_index.set(as_gauge(node.fsm.last_applied()));
    let read = node.fsm.store().read();
    for (t, table) in read.schema().tables().iter().enumerate() {
        let (rows, _, _) = read.stats_at(t);
        metrics
            .state_rows
            .with_label_values(&[&table.name])
            .set(rows as f64);
    }
    let none: [&str; 0] = [];
    match node.autopilot.state() {
        Some(s) => {
            let healthy = if s.healthy { 1.0 } else { 0.0 };
            metrics
                .autopilot_healthy
                .with_label_values(&none)
                .set(healthy);
            metrics
                .autopilot_failure_tolerance
                .with_label_values(&none)
                .set(f64::from(s.failure_tolerance));
        }
        None => {
            let _ = metrics.autopilot_healthy.remove_label_values(&none);
            let _ = metrics
                .autopilot_failure_tolerance
                .remove_label_values(&none);
        }
    }
    metrics
}

/// `GET /v1/agent/members` (`?wan=1`: names as the WAN pool shows them,
/// `<name>.<datacenter>`): the servers of the raft configuration in the shape of Consul's
/// members list. Without a gossip layer, `Status` is 1 (alive) for a server that answers a
/// probe on its server port within a second (under its own id), and 4 (failed) for one
/// that does not.
pub async fn members(node: &Arc<Node>, req: &Request<Incoming>) -> Reply {
    let wan = web::query(req)
        .get("wan")
        .is_some_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    let membership = node.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let mut probes = tokio::task::JoinSet::new();
    for (id, info) in membership.nodes() {
        let (id, info, node) = (*id, info.clone(), node.clone());
        probes.spawn(async move {
            let alive = id == node.id
                || node
                    .client
                    .call::<_, crate::protocol::ProbeReply>(
                        &info.rpc_addr,
                        crate::protocol::Rpc::AutopilotProbe.path(),
                        &(),
                        Duration::from_secs(1),
                    )
                    .await
                    .is_ok_and(|reply| reply.id == id);
            (id, info, alive)
        });
    }
    let mut rows = Vec::new();
    while let Some(Ok((id, info, alive))) = probes.join_next().await {
        rows.push(member(node, id, &info, voters.contains(&id), alive, wan));
    }
    rows.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
    web::json(StatusCode::OK, &json!(rows))
}

/// One server as Consul's members list shows it (serf's `Member`).
fn member(node: &Node, id: u64, info: &NodeInfo, voter: bool, alive: bool, wan: bool) -> Value {
    let (host, port) = info
        .rpc_addr
        .rsplit_once(':')
        .unwrap_or((&info.rpc_addr, "0"));
    let dc = &node.config.datacenter;
    let name = if wan {
        format!("{}.{dc}", info.name)
    } else {
        info.name.clone()
    };
    json!({
        "Name": name,
        "Addr": host,
        "Port": port.parse::<u16>().unwrap_or(0),
        "Tags": {
            "role": "consul",
            "dc": dc,
            "id": format!("{id:016x}"),
            "build": env!("CARGO_PKG_VERSION"),
            "vsn": "2",
            "http_addr": info.http_addr,
            "voter": voter.to_string(),
        },
        "Status": if alive { 1 } else { 4 },
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

/// `GET /v1/agent/self`: Consul's sections: `Config` (datacenter, name, id, version),
/// `Member` (this server's `/v1/agent/members` entry), `Stats` (`consul` as Consul's, with
/// `leader_addr` as `/v1/status/leader` answers; `raft` and `fsm` this server's figures)
/// and `Meta`.
pub fn agent_self(node: &Node) -> Reply {
    web::json(StatusCode::OK, &agent_self_json(node))
}

fn agent_self_json(node: &Node) -> Value {
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
    let voter = membership.voter_ids().any(|v| v == node.id);
    let leader_addr = node.leader().map(|(_, i)| i.rpc_addr).unwrap_or_default();
    let dc = &node.config.datacenter;
    json!({
        "Config": {
            "Datacenter": dc,
            "PrimaryDatacenter": dc,
            "NodeName": node.info.name,
            "NodeID": format!("{:016x}", node.id),
            "Server": true,
            "Revision": "",
            "Version": env!("CARGO_PKG_VERSION"),
        },
        "Member": member(node, node.id, &node.info, voter, true, false),
        "Meta": {"consul-network-segment": ""},
        "Stats": {
            "consul": {
                "server": "true",
                "leader": (m.current_leader == Some(node.id)).to_string(),
                "leader_addr": leader_addr,
                "bootstrap": "false",
                "known_datacenters": "1",
            },
            "raft": {
                "state": format!("{:?}", m.state),
                "term": m.current_term,
                "last_log_index": m.last_log_index.unwrap_or(0),
                "applied_index": m.last_applied.map_or(0, |l| l.index),
                "last_snapshot_index": m.snapshot.map_or(0, |l| l.index),
                "last_snapshot_term": m.snapshot.map_or(0, |l| l.leader_id.term),
                "last_purged_index": m.purged.map(|l| l.index),
                "leader": m.current_leader.map(|l| format!("{l:016x}")),
                // Consul's: since this server last heard from a leader ("0" on the leader).
                "last_contact": match node.last_contact() {
                    Some(d) if d.is_zero() => "0".to_string(),
                    Some(d) => crate::duration::format(d),
                    None => "never".to_string(),
                },
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
