//! The leader timer's server reconcile (Consul's `leader.go`), and the datacenter the
//! catalog and health answers print.

use super::*;
use fsmhost_guest::http::Request;
use fsmhost_guest::{Harness, ServerInfo, TickCtx};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn h() -> Harness {
    Harness::new(plugin()).expect("catalog schema is valid")
}

fn server(id: u64, status: &str) -> ServerInfo {
    ServerInfo {
        id,
        name: format!("s{id}"),
        address: format!("10.0.0.{id}:8300"),
        status: status.into(),
        voter: true,
        version: "0.9.0".into(),
    }
}

fn at(now_ms: u64, servers: Vec<ServerInfo>) -> TickCtx {
    TickCtx {
        now_ms,
        leader_since_ms: 0,
        datacenter: "dc7".into(),
        servers,
        tombstone_ttl_ms: 900_000,
    }
}

fn three() -> Vec<ServerInfo> {
    (1..=3).map(|id| server(id, "alive")).collect()
}

/// Ticks and applies; every proposal must succeed. How many there were.
fn settle(h: &mut Harness, ctx: &TickCtx) -> usize {
    let results = h.tick_and_apply(ctx);
    for r in &results {
        assert!(r.is_ok(), "proposal failed: {r:?}");
    }
    results.len()
}

fn node(h: &Harness, name: &str) -> Option<NodeServices> {
    let args = NodeArgs {
        node: name.into(),
        tenancy: Meta::default(),
    };
    h.ask(&NODE_SERVICES, &args).expect("node-services").items
}

fn serf(h: &Harness, name: &str) -> Option<Check> {
    let args = NodeArgs {
        node: name.into(),
        tenancy: Meta::default(),
    };
    let checks = h.ask(&NODE_CHECKS, &args).expect("node-checks").items;
    checks.into_iter().find(|c| c.check_id == SERF_CHECK)
}

fn commands(h: &Harness, ctx: &TickCtx) -> Vec<String> {
    let proposals = h.tick(ctx).expect("tick");
    proposals.into_iter().map(|p| p.command).collect()
}

#[test]
fn alive_servers_get_a_node_serf_health_and_the_consul_service() {
    let mut h = h();
    assert_eq!(settle(&mut h, &at(1000, three())), 3);
    let s1 = node(&h, "s1").expect("s1 registered");
    assert_eq!(s1.node.id, "00000000-0000-0000-0000-000000000001");
    assert_eq!(s1.node.id, node_uuid(1));
    assert_eq!(
        (s1.node.address.as_str(), s1.node.datacenter.as_str()),
        ("10.0.0.1", "dc7")
    );
    let tagged: BTreeMap<String, String> = ["lan", "lan_ipv4", "wan", "wan_ipv4"]
        .iter()
        .map(|k| (k.to_string(), "10.0.0.1".to_string()))
        .collect();
    assert_eq!(s1.node.tagged_addresses, tagged);
    assert_eq!(s1.node.meta["consul-network-segment"], "");
    assert_eq!(s1.node.meta["consul-version"], "0.9.0");
    let consul = &s1.services[CONSUL_SERVICE];
    assert_eq!((consul.service.as_str(), consul.port), ("consul", 8300));
    assert_eq!(
        consul.weights,
        Some(Weights {
            passing: 1,
            warning: 1
        })
    );
    assert_eq!(consul.meta["raft_version"], RAFT_VERSION);
    assert_eq!(consul.meta["version"], "0.9.0");
    assert_eq!(consul.meta["non_voter"], "false");
    let check = serf(&h, "s1").expect("serfHealth");
    assert_eq!(
        (
            check.name.as_str(),
            check.status.as_str(),
            check.output.as_str()
        ),
        (SERF_CHECK_NAME, "passing", SERF_ALIVE_OUTPUT)
    );
    let health = h
        .ask(
            &SERVICE_HEALTH,
            &ServiceArgs {
                service: CONSUL_SERVICE.into(),
                passing: true,
                ..Default::default()
            },
        )
        .expect("service-health");
    assert_eq!(health.items.len(), 3);

    // A steady cluster proposes nothing.
    assert_eq!(commands(&h, &at(2000, three())), Vec::<String>::new());
    // A version not known yet keeps the stored one.
    let mut unknown = three();
    unknown[0].version.clear();
    assert!(commands(&h, &at(3000, unknown)).is_empty());
    // A server that stops voting, or moves, is registered again.
    let mut changed = three();
    changed[1].voter = false;
    changed[2].address = "[fd00::3]:8301".into();
    assert_eq!(settle(&mut h, &at(4000, changed.clone())), 2);
    let s2 = node(&h, "s2").expect("s2");
    assert_eq!(s2.services[CONSUL_SERVICE].meta["non_voter"], "true");
    let s3 = node(&h, "s3").expect("s3");
    assert_eq!(s3.node.address, "fd00::3");
    assert_eq!(s3.node.tagged_addresses["lan_ipv6"], "fd00::3");
    assert_eq!(s3.services[CONSUL_SERVICE].port, 8301);
    assert!(commands(&h, &at(5000, changed)).is_empty());
}

#[test]
fn what_else_is_stored_on_a_server_node_is_kept() {
    let mut h = h();
    settle(&mut h, &at(1000, three()));
    let mut req = RegisterRequest {
        node: "s1".into(),
        address: "10.0.0.1".into(),
        id: node_uuid(1),
        datacenter: "dc7".into(),
        ..Default::default()
    };
    req.node_meta.insert("rack".into(), "r1".into());
    req.tagged_addresses.insert("lan".into(), "10.0.0.1".into());
    assert!(h.run(&REGISTER, &req).expect("register"));
    assert_eq!(settle(&mut h, &at(2000, three())), 1, "ours put back");
    let s1 = node(&h, "s1").expect("s1");
    assert_eq!(s1.node.meta["rack"], "r1");
    assert_eq!(s1.node.meta["consul-version"], "0.9.0");
    assert!(commands(&h, &at(3000, three())).is_empty());
}

#[test]
fn a_failed_server_turns_serf_health_critical_and_ends_its_sessions() {
    let mut h = h();
    settle(&mut h, &at(1000, three()));
    let session = h
        .run(
            &SESSION_CREATE,
            &SessionCreateRequest {
                node: "s2".into(),
                node_checks: vec![SERF_CHECK.into()],
                ..Default::default()
            },
        )
        .expect("session on s2");
    let mut servers = three();
    servers[1].status = "failed".into();
    assert_eq!(commands(&h, &at(2000, servers.clone())), vec!["register"]);
    settle(&mut h, &at(2000, servers.clone()));
    let check = serf(&h, "s2").expect("serfHealth");
    assert_eq!(
        (check.status.as_str(), check.output.as_str()),
        ("critical", SERF_FAILED_OUTPUT)
    );
    let args = SessionId {
        id: session,
        tenancy: Default::default(),
    };
    assert_eq!(h.ask(&SESSION_GET, &args).expect("get").items, None);
    let s2 = node(&h, "s2").expect("the node stays");
    assert!(s2.services.contains_key(CONSUL_SERVICE));
    assert!(commands(&h, &at(3000, servers.clone())).is_empty());
    // Back alive: passing again.
    assert_eq!(settle(&mut h, &at(4000, three())), 1);
    assert_eq!(serf(&h, "s2").map(|c| c.status), Some("passing".into()));

    // A failed server the catalog does not hold is left alone (Consul's too).
    let mut fresh = super::tick_tests::h();
    assert!(commands(&fresh, &at(1000, vec![server(4, "failed")])).is_empty());
    settle(&mut fresh, &at(1000, vec![server(4, "failed")]));
    assert!(node(&fresh, "s4").is_none());
}

#[test]
fn left_and_removed_servers_are_deregistered() {
    let mut h = h();
    settle(&mut h, &at(1000, three()));
    // An ordinary node is never touched; a node with the consul service that is no
    // server is reaped.
    let client = RegisterRequest {
        node: "client".into(),
        address: "10.0.1.1".into(),
        ..Default::default()
    };
    assert!(h.run(&REGISTER, &client).expect("client"));
    let stray = RegisterRequest {
        node: "old-server".into(),
        address: "10.0.1.2".into(),
        service: Some(Service {
            service: CONSUL_SERVICE.into(),
            port: 8300,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(h.run(&REGISTER, &stray).expect("old server"));
    let mut servers = three();
    servers[2].status = "left".into();
    assert_eq!(
        commands(&h, &at(2000, servers.clone())),
        vec!["deregister", "deregister"]
    );
    settle(&mut h, &at(2000, servers.clone()));
    assert!(node(&h, "s3").is_none());
    assert!(node(&h, "old-server").is_none());
    assert!(node(&h, "client").is_some());
    assert!(commands(&h, &at(3000, servers)).is_empty());

    // Removed from the configuration altogether.
    let two: Vec<ServerInfo> = three().into_iter().take(1).collect();
    settle(&mut h, &at(4000, three()));
    assert!(node(&h, "s3").is_some());
    assert_eq!(settle(&mut h, &at(5000, two)), 2);
    assert!(node(&h, "s2").is_none() && node(&h, "s3").is_none());
    assert!(node(&h, "s1").is_some() && node(&h, "client").is_some());
}

#[test]
fn nothing_before_autopilot_judges_or_while_a_server_has_no_name() {
    let mut h = h();
    settle(&mut h, &at(1000, three()));
    assert!(commands(&h, &at(2000, Vec::new())).is_empty());
    let mut unnamed = three();
    unnamed[2].name.clear();
    assert!(
        commands(&h, &at(3000, unnamed)).is_empty(),
        "s3 might be the unnamed server: not reaped"
    );
    let empty = super::tick_tests::h();
    assert!(commands(&empty, &at(1000, Vec::new())).is_empty());
}

fn get(h: &mut Harness, path: &str) -> Value {
    let r = h.http(Request::new("GET", path).param("dc", "east"));
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    serde_json::from_slice(&r.body).expect("json")
}

#[test]
fn answers_print_the_datacenter() {
    let mut h = h();
    // Through the command, without a datacenter (as `/v1/apply` may).
    let req = RegisterRequest {
        node: "n1".into(),
        address: "10.0.0.1".into(),
        service: Some(Service {
            service: "web".into(),
            port: 80,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(h.run(&REGISTER, &req).expect("register"));
    assert_eq!(get(&mut h, "/v1/catalog/nodes")[0]["Datacenter"], "east");
    assert_eq!(
        get(&mut h, "/v1/catalog/service/web")[0]["Datacenter"],
        "east"
    );
    assert_eq!(
        get(&mut h, "/v1/catalog/node/n1")["Node"]["Datacenter"],
        "east"
    );
    let health = get(&mut h, "/v1/health/service/web");
    assert_eq!(health[0]["Node"]["Datacenter"], "east");
    // The leader's registration stores its datacenter, and the consul service's weights
    // are printed; a client's weights are not kept.
    settle(&mut h, &at(1000, vec![server(1, "alive")]));
    let consul = get(&mut h, "/v1/health/service/consul");
    assert_eq!(consul[0]["Node"]["Datacenter"], "dc7");
    assert_eq!(
        consul[0]["Service"]["Weights"],
        json!({"Passing": 1, "Warning": 1})
    );
    let body = r#"{"Node":"n2","Address":"a","Service":{"Service":"db",
        "Weights":{"Passing":3,"Warning":2}}}"#;
    let r = h.http(
        Request::new("PUT", "/v1/catalog/register")
            .param("dc", "east")
            .body(body.as_bytes().to_vec()),
    );
    assert_eq!(r.status, 200);
    let db = get(&mut h, "/v1/health/service/db");
    assert_eq!(db[0]["Node"]["Datacenter"], "east");
    assert_eq!(db[0]["Service"].get("Weights"), None);
    let stored = node(&h, "n2").map(|n| n.node.datacenter);
    assert_eq!(stored, Some("east".into()), "stored as the route set it");
}
