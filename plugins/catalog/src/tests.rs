//! The catalog's semantics through the plugin's own commands and queries (natively, with
//! the SDK's harness).

use super::*;
use fsmhost_guest::Harness;
use std::collections::BTreeMap;

fn h() -> Harness {
    Harness::new(plugin()).expect("catalog schema is valid")
}

fn node_req(node: &str, address: &str) -> RegisterRequest {
    RegisterRequest {
        node: node.into(),
        address: address.into(),
        ..Default::default()
    }
}

fn with_service(node: &str, id: &str, name: &str, tags: &[&str]) -> RegisterRequest {
    RegisterRequest {
        service: Some(Service {
            id: id.into(),
            service: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            port: 8080,
            ..Default::default()
        }),
        ..node_req(node, "10.0.0.1")
    }
}

/// The context of the command at `index` whose entry the leader stamped `timestamp_ms`.
pub(crate) fn at(index: u64, timestamp_ms: u64) -> fsmhost_guest::Ctx {
    fsmhost_guest::Ctx {
        index,
        timestamp_ms,
    }
}

/// A leader's tick at `now_ms`, leading since `leader_since_ms`, in dc1, no servers.
pub(crate) fn tick_at(now_ms: u64, leader_since_ms: u64) -> fsmhost_guest::TickCtx {
    fsmhost_guest::TickCtx {
        now_ms,
        leader_since_ms,
        datacenter: "dc1".into(),
        ..fsmhost_guest::TickCtx::default()
    }
}

/// A check of `service_id` (empty: a node check) in `status`, named by its ID.
pub(crate) fn check(id: &str, service_id: &str, status: &str) -> Check {
    Check {
        check_id: id.into(),
        name: id.into(),
        service_id: service_id.into(),
        status: status.into(),
        ..Default::default()
    }
}

fn register(h: &mut Harness, req: &RegisterRequest) {
    assert!(h.run(&REGISTER, req).unwrap());
}

fn health(h: &Harness, service: &str, passing: bool) -> Vec<ServiceHealth> {
    let args = ServiceArgs {
        tenancy: Default::default(),
        service: service.into(),
        tag: None,
        passing,
    };
    h.ask(&SERVICE_HEALTH, &args).unwrap().items
}

#[test]
fn register_upserts_and_skips_unchanged_writes() {
    let mut h = h();
    register(&mut h, &node_req("web1", "10.0.0.1")); // 1
    register(&mut h, &node_req("web1", "10.0.0.1")); // 2: unchanged
    let n: Indexed<Vec<Node>> = h.ask(&NODES_QUERY, &NodesArgs::default()).unwrap();
    assert_eq!(n.items.len(), 1);
    assert_eq!((n.items[0].create_index, n.items[0].modify_index), (1, 1));
    register(&mut h, &node_req("WEB1", "10.0.0.2")); // 3: same node, any case
    let n: Indexed<Vec<Node>> = h.ask(&NODES_QUERY, &NodesArgs::default()).unwrap();
    assert_eq!(n.items.len(), 1);
    assert_eq!((n.items[0].create_index, n.items[0].modify_index), (1, 3));
    assert_eq!(n.index, 3);
}

#[test]
fn services_and_checks_need_their_node_and_service() {
    let mut h = h();
    register(&mut h, &with_service("web1", "web-a", "web", &["v1"]));
    let mut req = node_req("web1", "10.0.0.1");
    req.check = Some(check("c1", "nope", "passing"));
    let e = h.run(&REGISTER, &req).unwrap_err();
    assert!(
        e.to_string().contains("service \"nope\" is not registered"),
        "{e}"
    );
    let mut req = node_req("", "10.0.0.1");
    req.node = " ".into();
    let e = h.run(&REGISTER, &req).unwrap_err();
    assert!(e.to_string().contains("Must provide node"), "{e}");
    let mut req = node_req("web1", "10.0.0.1");
    req.check = Some(check("c1", "", "bogus"));
    let e = h.run(&REGISTER, &req).unwrap_err();
    assert!(e.to_string().contains("is not one of passing"), "{e}");
}

#[test]
fn a_node_id_belongs_to_one_node() {
    let mut h = h();
    let mut a = node_req("a", "10.0.0.1");
    a.id = "0c4a8f7e-0000-0000-0000-000000000001".into();
    register(&mut h, &a);
    let mut b = node_req("b", "10.0.0.2");
    b.id = a.id.clone();
    let e = h.run(&REGISTER, &b).unwrap_err();
    assert!(
        e.to_string()
            .contains("is already registered by node \"a\""),
        "{e}"
    );
}

#[test]
fn health_joins_node_and_service_checks_and_filters_passing() {
    let mut h = h();
    for (node, status) in [("web1", "passing"), ("web2", "critical")] {
        let mut req = with_service(node, "web", "web", &["v1"]);
        req.checks = vec![
            check("serfHealth", "", "passing"),
            check("http", "web", status),
        ];
        register(&mut h, &req);
    }
    let all = health(&h, "web", false);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].checks.len(), 2, "node check and service check");
    let http = all[0].checks.iter().find(|c| c.check_id == "http").unwrap();
    assert_eq!(http.service_name, "web", "filled in from the service");
    assert_eq!(http.service_tags, ["v1"]);
    let passing = health(&h, "web", true);
    assert_eq!(passing.len(), 1);
    assert_eq!(passing[0].node.node, "web1");
    let critical: Indexed<Vec<Check>> = h
        .ask(
            &CHECKS_IN_STATE,
            &StateArgs {
                tenancy: Default::default(),
                state: "critical".into(),
            },
        )
        .unwrap();
    assert_eq!(critical.items.len(), 1);
    assert_eq!(critical.items[0].node, "web2");
    let e = h
        .ask(
            &CHECKS_IN_STATE,
            &StateArgs {
                tenancy: Default::default(),
                state: "sad".into(),
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("Invalid check state"), "{e}");
}

#[test]
fn services_list_names_with_their_tags_and_tag_filters() {
    let mut h = h();
    register(&mut h, &with_service("n1", "web-1", "web", &["v1", "blue"]));
    register(&mut h, &with_service("n2", "web-2", "web", &["v2"]));
    register(&mut h, &with_service("n2", "db", "db", &[]));
    let s: Indexed<BTreeMap<String, Vec<String>>> = h.ask(&SERVICES_QUERY, &None).unwrap();
    assert_eq!(s.items["web"], ["blue", "v1", "v2"]);
    assert_eq!(s.items["db"], Vec::<String>::new());
    let tagged: Indexed<Vec<ServiceNode>> = h
        .ask(
            &SERVICE_NODES,
            &ServiceArgs {
                tenancy: Default::default(),
                service: "WEB".into(),
                tag: Some("v2".into()),
                passing: false,
            },
        )
        .unwrap();
    assert_eq!(tagged.items.len(), 1);
    assert_eq!(tagged.items[0].node.node, "n2");
}

#[test]
fn deregister_a_check_a_service_or_the_whole_node() {
    let mut h = h();
    let mut req = with_service("n1", "web", "web", &[]);
    req.checks = vec![
        check("node-ok", "", "passing"),
        check("web-ok", "web", "passing"),
    ];
    register(&mut h, &req);
    register(&mut h, &with_service("n1", "db", "db", &[]));
    let checks = |h: &Harness| -> Vec<String> {
        let c: Indexed<Vec<Check>> = h
            .ask(
                &NODE_CHECKS,
                &NodeArgs {
                    tenancy: Default::default(),
                    node: "n1".into(),
                },
            )
            .unwrap();
        c.items.into_iter().map(|c| c.check_id).collect()
    };
    let dereg = |h: &mut Harness, service: &str, check: &str| {
        let req = DeregisterRequest {
            tenancy: Default::default(),
            node: "n1".into(),
            service_id: service.into(),
            check_id: check.into(),
        };
        assert!(h.run(&DEREGISTER, &req).unwrap());
    };
    dereg(&mut h, "web", "");
    assert_eq!(checks(&h), ["node-ok"], "the service's checks went with it");
    let ns: Indexed<Option<NodeServices>> = h
        .ask(
            &NODE_SERVICES,
            &NodeArgs {
                tenancy: Default::default(),
                node: "n1".into(),
            },
        )
        .unwrap();
    assert_eq!(
        ns.items.unwrap().services.keys().collect::<Vec<_>>(),
        ["db"]
    );
    dereg(&mut h, "", "node-ok");
    assert!(checks(&h).is_empty());
    dereg(&mut h, "", "");
    let ns: Indexed<Option<NodeServices>> = h
        .ask(
            &NODE_SERVICES,
            &NodeArgs {
                tenancy: Default::default(),
                node: "n1".into(),
            },
        )
        .unwrap();
    assert_eq!(ns.items, None);
    let s: Indexed<BTreeMap<String, Vec<String>>> = h.ask(&SERVICES_QUERY, &None).unwrap();
    assert!(s.items.is_empty(), "the node's services went with it");
}

#[test]
fn nodes_filter_by_meta() {
    let mut h = h();
    for (name, rack) in [("a", "r1"), ("b", "r2"), ("c", "r1")] {
        let mut req = node_req(name, "10.0.0.1");
        req.node_meta =
            BTreeMap::from([("rack".into(), rack.into()), ("os".into(), "linux".into())]);
        register(&mut h, &req);
    }
    let args = NodesArgs {
        tenancy: Default::default(),
        node_meta: BTreeMap::from([("rack".into(), "r1".into()), ("os".into(), "linux".into())]),
    };
    let n: Indexed<Vec<Node>> = h.ask(&NODES_QUERY, &args).unwrap();
    assert_eq!(
        n.items.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
}

mod http_api {
    use super::*;
    use fsmhost_guest::http::Request;
    use serde_json::{Value, json};

    fn call(h: &mut Harness, method: &str, path: &str, body: &str) -> (u16, Value) {
        let r = h.http(Request::new(method, path).body(body.as_bytes().to_vec()));
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    }

    fn get(h: &mut Harness, path_and_query: &str) -> (u16, Value) {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut req = Request::new("GET", path);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            req = req.param(k, v);
        }
        let r = h.http(req);
        (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        )
    }

    /// The register example of Consul's catalog API documentation, trimmed.
    const REGISTER: &str = r#"{
        "Datacenter": "dc1",
        "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
        "Node": "foobar",
        "Address": "192.168.10.10",
        "TaggedAddresses": {"lan": "192.168.10.10", "wan": "10.0.10.10"},
        "NodeMeta": {"somekey": "somevalue"},
        "Service": {
            "ID": "redis1",
            "Service": "redis",
            "Tags": ["primary", "v1"],
            "Address": "127.0.0.1",
            "Meta": {"redis_version": "4.0"},
            "Port": 8000
        },
        "Check": {
            "Node": "foobar",
            "CheckID": "service:redis1",
            "Name": "Redis health check",
            "Notes": "Script based health check",
            "Status": "passing",
            "ServiceID": "redis1"
        },
        "SkipNodeUpdate": false
    }"#;

    #[test]
    fn the_documentations_register_example_then_every_read() {
        let mut h = h();
        assert_eq!(
            call(&mut h, "PUT", "/v1/catalog/register", REGISTER),
            (200, json!(true))
        );

        let (s, nodes) = get(&mut h, "/v1/catalog/nodes");
        assert_eq!(s, 200);
        assert_eq!(nodes[0]["Node"], "foobar");
        assert_eq!(nodes[0]["ID"], "40e4a748-2192-161a-0510-9bf59fe950b5");
        assert_eq!(nodes[0]["TaggedAddresses"]["wan"], "10.0.10.10");
        assert_eq!(
            get(&mut h, "/v1/catalog/nodes?node-meta=somekey:other").1,
            json!([])
        );
        assert_eq!(
            get(&mut h, "/v1/catalog/nodes?node-meta=somekey:somevalue").1[0]["Node"],
            "foobar"
        );

        assert_eq!(
            get(&mut h, "/v1/catalog/services").1,
            json!({"redis": ["primary", "v1"]})
        );

        let (_, instances) = get(&mut h, "/v1/catalog/service/redis?tag=v1");
        let i = &instances[0];
        assert_eq!(
            (
                i["Node"].as_str(),
                i["ServiceID"].as_str(),
                i["ServicePort"].as_u64()
            ),
            (Some("foobar"), Some("redis1"), Some(8000))
        );
        assert_eq!(i["NodeMeta"]["somekey"], "somevalue");
        assert_eq!(get(&mut h, "/v1/catalog/service/redis?tag=v9").1, json!([]));

        let (_, node) = get(&mut h, "/v1/catalog/node/foobar");
        assert_eq!(node["Services"]["redis1"]["Port"], 8000);
        assert_eq!(get(&mut h, "/v1/catalog/node/nobody"), (200, Value::Null));

        let (_, checks) = get(&mut h, "/v1/health/node/foobar");
        assert_eq!(checks[0]["CheckID"], "service:redis1");
        assert_eq!(checks[0]["ServiceName"], "redis");
        assert_eq!(
            get(&mut h, "/v1/health/checks/redis").1[0]["Status"],
            "passing"
        );
        assert_eq!(
            get(&mut h, "/v1/health/state/passing")
                .1
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(get(&mut h, "/v1/health/state/critical").1, json!([]));
        assert_eq!(get(&mut h, "/v1/health/state/bogus").0, 400);

        let (_, entries) = get(&mut h, "/v1/health/service/redis?passing");
        assert_eq!(entries[0]["Service"]["ID"], "redis1");
        assert_eq!(entries[0]["Checks"][0]["Name"], "Redis health check");

        let dereg = r#"{"Node": "foobar", "ServiceID": "redis1"}"#;
        assert_eq!(
            call(&mut h, "PUT", "/v1/catalog/deregister", dereg),
            (200, json!(true))
        );
        assert_eq!(get(&mut h, "/v1/catalog/services").1, json!({}));
        assert_eq!(
            get(&mut h, "/v1/health/node/foobar").1,
            json!([]),
            "its check went too"
        );
    }

    #[test]
    fn bad_requests_are_named() {
        let mut h = h();
        let r = h.http(Request::new("PUT", "/v1/catalog/register").body(b"{".to_vec()));
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("Failed to decode request body"));
        let (s, _) = call(&mut h, "PUT", "/v1/catalog/register", r#"{"Node": "n"}"#);
        assert_eq!(s, 400, "no address");
        let r = h.http(Request::new("GET", "/v1/catalog/service/"));
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("Missing service name"));
        let r = h.http(Request::new("GET", "/v1/catalog/elsewhere"));
        assert_eq!(r.status, 404);
    }

    /// What Consul's Go client (`api.CatalogRegistration`, marshalled by `encoding/json`)
    /// sends: every field, `null` for unset maps, lists and pointers, zero values.
    const GO_REGISTER: &str = r#"{"ID":"","Node":"n1","Address":"10.0.0.1","Datacenter":"",
        "TaggedAddresses":null,"NodeMeta":null,"Service":{"Kind":"","ID":"web1",
        "Service":"web","Tags":null,"Meta":null,"Port":80,"Address":"","SocketPath":"",
        "TaggedAddresses":null,"Weights":{"Passing":0,"Warning":0},"EnableTagOverride":false,
        "CreateIndex":0,"ModifyIndex":0,"Namespace":"","Partition":"","Proxy":null,
        "Connect":null,"Locality":null},"Check":{"Node":"n1","CheckID":"","Name":"web alive",
        "Status":"passing","Notes":"","Output":"","ServiceID":"web1","ServiceName":"",
        "ServiceTags":null,"Type":"","ExposedPort":0,"Definition":{"Interval":0,"Timeout":0,
        "HTTP":"","Header":null,"Method":"","TCP":"","GRPC":""},"Namespace":"",
        "Partition":"","CreateIndex":0,"ModifyIndex":0},"Checks":null,
        "SkipNodeUpdate":false,"Partition":"","Locality":null}"#;

    /// What py-consul's `catalog.register` sends: lower-case top-level keys, the service
    /// and check dictionaries as the caller wrote them.
    const PY_REGISTER: &str = r#"{"node":"n1","address":"10.0.0.1",
        "service":{"service":"web","id":"web1","port":80,"tags":["a"]},
        "check":{"name":"web alive","status":"passing","serviceid":"web1"},
        "nodemeta":{"Rack":"r1"}}"#;

    #[test]
    fn go_clients_and_py_consuls_bodies_register_alike() {
        for (body, tags, meta) in [
            (GO_REGISTER, json!([]), json!({})),
            (PY_REGISTER, json!(["a"]), json!({"Rack": "r1"})),
        ] {
            let mut h = h();
            assert_eq!(
                call(&mut h, "PUT", "/v1/catalog/register", body),
                (200, json!(true))
            );
            let (_, nodes) = get(&mut h, "/v1/catalog/nodes");
            assert_eq!(nodes[0]["Node"], "n1");
            assert_eq!(nodes[0]["Address"], "10.0.0.1");
            assert_eq!(nodes[0]["Meta"], meta, "map keys keep their case");
            let (_, entries) = get(&mut h, "/v1/health/service/web");
            let e = &entries[0];
            assert_eq!(e["Service"]["ID"], "web1");
            assert_eq!(e["Service"]["Port"], 80);
            assert_eq!(e["Service"]["Tags"], tags);
            assert_eq!(
                e["Checks"][0]["CheckID"], "web alive",
                "the ID defaults to the name"
            );
            assert_eq!(e["Checks"][0]["Status"], "passing");
            assert_eq!(e["Checks"][0]["ServiceName"], "web");
            let dereg =
                r#"{"Node":"n1","ServiceID":"","CheckID":"","Partition":"","Namespace":""}"#;
            assert_eq!(
                call(&mut h, "PUT", "/v1/catalog/deregister", dereg),
                (200, json!(true))
            );
            assert_eq!(get(&mut h, "/v1/catalog/nodes").1, json!([]));
        }
    }

    #[test]
    fn empty_required_fields_get_consuls_messages() {
        let mut h = h();
        for (body, says) in [
            (r#"{"Node":null,"Address":"a"}"#, "Must provide node"),
            (
                r#"{"node":"n","Service":{"Service":""}}"#,
                "Must provide address",
            ),
            (
                r#"{"node":"n","address":"a","Service":{"Service":""}}"#,
                "Must provide service name",
            ),
            (
                r#"{"node":"n","address":"a","Check":{"Name":null}}"#,
                "Must provide check name",
            ),
        ] {
            let r =
                h.http(Request::new("PUT", "/v1/catalog/register").body(body.as_bytes().to_vec()));
            let text = String::from_utf8_lossy(&r.body).to_string();
            assert_eq!(r.status, 400, "{body}: {text}");
            assert!(text.contains(says), "{body}: {text}");
        }
    }

    #[test]
    fn connect_reads_are_empty_and_usage_counts_the_catalog() {
        let mut h = h();
        assert_eq!(call(&mut h, "PUT", "/v1/catalog/register", REGISTER).0, 200);
        let gw = r#"{"Node":"gw1","Address":"10.0.0.9",
            "Service":{"Kind":"mesh-gateway","Service":"gw","Port":443}}"#;
        assert_eq!(call(&mut h, "PUT", "/v1/catalog/register", gw).0, 200);
        for path in [
            "/v1/catalog/connect/redis",
            "/v1/catalog/gateway-services/gw",
            "/v1/health/connect/redis",
            "/v1/health/ingress/redis",
        ] {
            assert_eq!(get(&mut h, path), (200, json!([])), "{path}");
        }
        let (s, v) = get(&mut h, "/v1/catalog/gateway-services/");
        assert_eq!((s, v), (400, Value::Null), "Missing gateway name");

        let (s, usage) = get(&mut h, "/v1/operator/usage?dc=east");
        assert_eq!(s, 200);
        assert_eq!(
            usage,
            json!({"Usage": {"east": {
                "Services": 2,
                "ServiceInstances": 2,
                "ConnectServiceInstances": {
                    "api-gateway": 0, "connect-native": 0, "connect-proxy": 0,
                    "ingress-gateway": 0, "mesh-gateway": 1, "terminating-gateway": 0
                },
                "BillableServiceInstances": 1,
                "Nodes": 2
            }}})
        );
    }

    #[test]
    fn the_registration_datacenter_defaults_to_the_servers_and_must_be_it() {
        let mut h = h();
        let body =
            |dc: &str| format!(r#"{{"Node":"n","Address":"a","Datacenter":"{dc}"}}"#).into_bytes();
        let put = |h: &mut Harness, dc: &str, param: &str| {
            h.http(
                Request::new("PUT", "/v1/catalog/register")
                    .param("dc", param)
                    .body(body(dc)),
            )
        };
        assert_eq!(put(&mut h, "", "east").status, 200);
        assert_eq!(get(&mut h, "/v1/catalog/nodes").1[0]["Datacenter"], "east");
        assert_eq!(put(&mut h, "EAST", "east").status, 200);
        let r = put(&mut h, "west", "east");
        assert_eq!(
            (r.status, r.body.as_slice()),
            (500, &b"No path to datacenter"[..])
        );
        let dereg = |dc: &str| {
            Request::new("PUT", "/v1/catalog/deregister")
                .param("dc", "east")
                .body(format!(r#"{{"node":"n","datacenter":"{dc}"}}"#).into_bytes())
        };
        let r = h.http(dereg("west"));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (500, &b"No path to datacenter"[..])
        );
        assert_eq!(
            get(&mut h, "/v1/catalog/nodes").1[0]["Node"],
            "n",
            "still there"
        );
        assert_eq!(h.http(dereg("East")).status, 200);
        assert_eq!(get(&mut h, "/v1/catalog/nodes").1, json!([]));
    }
}
