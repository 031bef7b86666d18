//! The agent service and check API on the serving server's node: services (here), checks
//! and maintenance (`checks.rs`), TTL checks and their expiry (`ttl.rs`).

use super::*;
use fsmhost_guest::http::{Request, Response};
use fsmhost_guest::{Harness, ServerInfo, TickCtx};
use serde_json::{Value, json};

mod checks;
mod ttl;

/// The serving server's node name.
const NODE: &str = "s1";

/// A harness whose catalog holds server `s1`, registered as the leader's reconcile does
/// (its node, `serfHealth` and the `consul` service).
fn h() -> Harness {
    let mut h = bare();
    let results = h.tick_and_apply(&TickCtx {
        now_ms: 1000,
        datacenter: "dc1".into(),
        servers: vec![ServerInfo {
            id: 1,
            name: NODE.into(),
            address: "10.0.0.1:8300".into(),
            status: "alive".into(),
            voter: true,
            version: "0.9.0".into(),
        }],
        ..TickCtx::default()
    });
    assert_eq!(results.len(), 1, "s1 registered");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    h
}

/// A harness whose catalog holds no node yet.
fn bare() -> Harness {
    Harness::new(plugin()).expect("catalog schema is valid")
}

/// A request served by `s1`, `?k=v` parameters split off the path.
fn request(method: &str, path_and_query: &str, body: &str) -> Request {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut req = Request::new(method, path).body(body.as_bytes().to_vec());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        req = req.param(k, v);
    }
    req.node = NODE.into();
    req
}

/// The status and the body (JSON, or the text as a JSON string).
fn decoded(r: Response) -> (u16, Value) {
    let v = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
    (r.status, v)
}

fn call(h: &mut Harness, method: &str, path: &str, body: &str) -> (u16, Value) {
    decoded(h.http(request(method, path, body)))
}

fn get(h: &mut Harness, path: &str) -> Value {
    let (status, v) = call(h, "GET", path, "");
    assert_eq!(status, 200, "{path}: {v}");
    v
}

/// Asserts a 200 with an empty body (Consul's agent writes answer nothing).
fn ok(h: &mut Harness, path: &str, body: &str) {
    let r = h.http(request("PUT", path, body));
    assert_eq!(
        (r.status, String::from_utf8_lossy(&r.body).as_ref()),
        (200, ""),
        "PUT {path} {body}"
    );
}

/// Asserts a refusal: its status and that its text contains `says`.
fn refused(h: &mut Harness, path: &str, body: &str, status: u16, says: &str) {
    let r = h.http(request("PUT", path, body));
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, status, "PUT {path} {body}: {text}");
    assert!(text.contains(says), "PUT {path} {body}: {text}");
}

#[test]
fn a_service_goes_on_the_serving_servers_node_with_consuls_defaults() {
    let mut h = h();
    ok(
        &mut h,
        "/v1/agent/service/register",
        r#"{"Name": "web", "Port": 80, "Check": {"TTL": "10s"}}"#,
    );
    let services = get(&mut h, "/v1/agent/services");
    assert_eq!(
        services.as_object().map(|m| m.keys().collect::<Vec<_>>()),
        Some(vec![&"web".to_string()]),
        "the leader's consul service is not the agent's: {services}"
    );
    let web = &services["web"];
    assert_eq!(
        (web["ID"].as_str(), web["Service"].as_str()),
        (Some("web"), Some("web"))
    );
    assert_eq!(
        (web["Port"].as_u64(), web["Tags"].clone()),
        (Some(80), json!([]))
    );
    assert_eq!(web["Meta"], json!({}));
    assert_eq!(web["Weights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(web["Datacenter"], "dc1");
    assert_eq!(get(&mut h, "/v1/agent/service/web")["ID"], "web");

    let checks = get(&mut h, "/v1/agent/checks");
    assert_eq!(
        checks.as_object().map(|m| m.len()),
        Some(1),
        "serfHealth is not the agent's: {checks}"
    );
    let c = &checks["service:web"];
    assert_eq!(c["Node"], NODE);
    assert_eq!(c["Name"], "Service 'web' check");
    assert_eq!(c["Status"], "critical", "a TTL check starts critical");
    assert_eq!(
        (c["ServiceID"].as_str(), c["ServiceName"].as_str()),
        (Some("web"), Some("web"))
    );
    assert_eq!(
        (c["Type"].as_str(), c["ServiceTags"].clone()),
        (Some("ttl"), json!([]))
    );

    // In the catalog, on s1, beside what the leader registered.
    let node = get(&mut h, "/v1/catalog/node/s1");
    assert!(node["Services"]["web"].is_object() && node["Services"]["consul"].is_object());
    let health = get(&mut h, "/v1/health/service/web");
    assert_eq!(health[0]["Node"]["Node"], NODE);
    assert_eq!(
        health[0]["Checks"].as_array().map(Vec::len),
        Some(2),
        "serfHealth too"
    );
}

#[test]
fn several_checks_are_numbered_and_bodies_come_as_clients_send_them() {
    let mut h = h();
    // py-consul's agent.service.register: lower-case keys, `checks`.
    let py = r#"{"name": "api", "id": "api1", "port": 8080, "tags": ["a"],
        "meta": {"Version": "2"}, "checks": [{"ttl": "15s", "status": "passing"},
        {"name": "manual", "notes": "set by hand"}]}"#;
    ok(&mut h, "/v1/agent/service/register", py);
    let checks = get(&mut h, "/v1/agent/checks");
    assert_eq!(checks["service:api1:1"]["Status"], "passing");
    assert_eq!(checks["service:api1:1"]["Type"], "ttl");
    assert_eq!(checks["service:api1:2"]["Name"], "manual");
    assert_eq!(checks["service:api1:2"]["Notes"], "set by hand");
    assert_eq!(checks["service:api1:2"]["Status"], "critical");
    assert_eq!(
        checks["service:api1:2"]["Type"], "",
        "no kind: kept as registered"
    );
    let api = get(&mut h, "/v1/agent/service/api1");
    assert_eq!(
        (api["Service"].as_str(), api["Tags"].clone()),
        (Some("api"), json!(["a"]))
    );
    assert_eq!(
        api["Meta"],
        json!({"Version": "2"}),
        "map keys keep their case"
    );

    // Go's api.AgentServiceRegistration: omitempty fields, a check with its own ID.
    let go = r#"{"ID":"db1","Name":"db","Tags":["primary"],"Port":5432,
        "Weights":{"Passing":3,"Warning":1},"Check":{"CheckID":"db-ttl","TTL":"30s",
        "Notes":"heartbeat"}}"#;
    ok(&mut h, "/v1/agent/service/register", go);
    let db = get(&mut h, "/v1/agent/service/db1");
    assert_eq!(db["Weights"], json!({"Passing": 3, "Warning": 1}));
    assert_eq!(
        get(&mut h, "/v1/agent/checks")["db-ttl"]["ServiceID"],
        "db1"
    );
}

#[test]
fn replace_existing_checks_drops_the_others() {
    let mut h = h();
    let two =
        r#"{"Name":"web","Checks":[{"CheckID":"a","TTL":"10s"},{"CheckID":"b","TTL":"10s"}]}"#;
    ok(&mut h, "/v1/agent/service/register", two);
    let one = r#"{"Name":"web","Checks":[{"CheckID":"a","TTL":"10s"}]}"#;
    ok(&mut h, "/v1/agent/service/register", one);
    let ids = |h: &mut Harness| -> Vec<String> {
        let checks = get(h, "/v1/agent/checks");
        checks
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(ids(&mut h), ["a", "b"], "kept without the parameter");
    ok(
        &mut h,
        "/v1/agent/service/register?replace-existing-checks",
        one,
    );
    assert_eq!(ids(&mut h), ["a"]);
    assert_eq!(
        h.store().len(CHECK_TTLS.name()),
        1,
        "b's timer went with it"
    );
}

#[test]
fn deregister_takes_the_service_and_its_checks() {
    let mut h = h();
    let body = r#"{"Name":"web","Checks":[{"TTL":"10s"},{"Name":"plain"}]}"#;
    ok(&mut h, "/v1/agent/service/register", body);
    assert_eq!(h.store().len(CHECK_TTLS.name()), 1);
    refused(
        &mut h,
        "/v1/agent/service/deregister/nope",
        "",
        404,
        "Unknown service ID \"nope\". Ensure that the service ID is passed, not the service name.",
    );
    ok(&mut h, "/v1/agent/service/deregister/web", "");
    assert_eq!(get(&mut h, "/v1/agent/services"), json!({}));
    assert_eq!(get(&mut h, "/v1/agent/checks"), json!({}));
    assert_eq!(h.store().len(CHECK_TTLS.name()), 0);
    let (status, text) = call(&mut h, "GET", "/v1/agent/service/web", "");
    assert_eq!((status, text), (404, json!("unknown service ID: web")));
    // The leader's own registration is not the agent's to change.
    refused(
        &mut h,
        "/v1/agent/service/deregister/consul",
        "",
        404,
        "Unknown service ID",
    );
    refused(
        &mut h,
        "/v1/agent/service/register",
        r#"{"Name":"consul"}"#,
        400,
        "leader's own registration",
    );
    assert!(get(&mut h, "/v1/catalog/node/s1")["Services"]["consul"].is_object());
}

#[test]
fn before_the_leader_registered_the_server_a_registration_is_a_500() {
    let mut h = bare();
    refused(
        &mut h,
        "/v1/agent/service/register",
        r#"{"Name":"web"}"#,
        500,
        "Node \"s1\" (this server) is not registered in the catalog yet",
    );
    refused(
        &mut h,
        "/v1/agent/check/register",
        r#"{"Name":"c"}"#,
        500,
        "not registered",
    );
    refused(
        &mut h,
        "/v1/agent/service/deregister/web",
        "",
        404,
        "Unknown service ID",
    );
    assert_eq!(get(&mut h, "/v1/agent/services"), json!({}));
}

#[test]
fn bad_registrations_get_consuls_answers() {
    let mut h = h();
    let reg = "/v1/agent/service/register";
    refused(&mut h, reg, "{", 400, "Request decode failed");
    refused(&mut h, reg, r#"{"Port": 80}"#, 400, "Missing service name");
    refused(
        &mut h,
        reg,
        r#"{"Name":"w","Address":"0.0.0.0"}"#,
        400,
        "Invalid service address",
    );
    refused(
        &mut h,
        reg,
        r#"{"Name":"w","Weights":{"Passing":0}}"#,
        400,
        "Invalid Weights: Passing must be greater than 0",
    );
    refused(
        &mut h,
        reg,
        r#"{"Name":"w","Check":{"TTL":"10s","Status":"sad"}}"#,
        400,
        "Status for checks must 'passing', 'warning', 'critical'",
    );
    refused(
        &mut h,
        reg,
        r#"{"Name":"w","Check":{"TTL":"soon"}}"#,
        400,
        "invalid duration",
    );
    // A service ID keeps its name.
    ok(&mut h, reg, r#"{"ID":"x","Name":"web"}"#);
    refused(
        &mut h,
        reg,
        r#"{"ID":"x","Name":"db"}"#,
        400,
        "is registered as service \"web\"",
    );
}

#[test]
fn probes_are_refused_with_what_to_do_instead() {
    let mut h = h();
    for check in [
        r#"{"HTTP": "http://localhost/health", "Interval": "10s"}"#,
        r#"{"args": ["/bin/true"], "interval": "10s"}"#,
        r#"{"tcp": "localhost:22", "interval": "10s"}"#,
        r#"{"docker_container_id": "abc", "shell": "/bin/sh", "script": "true"}"#,
        r#"{"GRPC": "localhost:9090"}"#,
        r#"{"H2PING": "localhost:443"}"#,
        r#"{"UDP": "localhost:53"}"#,
        r#"{"OSService": "sshd"}"#,
        r#"{"AliasService": "db"}"#,
    ] {
        for (path, body) in [
            (
                "/v1/agent/service/register",
                format!(r#"{{"Name":"w","Check":{check}}}"#),
            ),
            (
                "/v1/agent/service/register",
                format!(r#"{{"Name":"w","checks":[{check}]}}"#),
            ),
            ("/v1/agent/check/register", {
                let mut v: Value = serde_json::from_str(check).expect("json");
                v["Name"] = json!("probe");
                v.to_string()
            }),
        ] {
            refused(&mut h, path, &body, 400, "fsmhost runs no health probes");
            refused(&mut h, path, &body, 400, "register a TTL check");
        }
    }
    // Empty probe fields, as some clients send them, are no probe.
    let body = r#"{"Name":"w","Check":{"HTTP":"","Args":[],"TTL":"10s"}}"#;
    ok(&mut h, "/v1/agent/service/register", body);
}

#[test]
fn reads_keep_what_the_caller_may_read_and_writes_declare_their_needs() {
    use fsmhost_guest::acl::{Access, Resource};
    let mut h = h();
    ok(
        &mut h,
        "/v1/agent/service/register",
        r#"{"Name":"web","Check":{"TTL":"10s"}}"#,
    );
    ok(&mut h, "/v1/agent/service/register", r#"{"Name":"db"}"#);
    ok(&mut h, "/v1/agent/check/register", r#"{"Name":"disk"}"#);
    let web_only = |r: Resource, s: &str, a: Access| match r {
        Resource::Service => s == "web" && a == Access::Read,
        _ => false,
    };
    let r = h.http_as(request("GET", "/v1/agent/services", ""), web_only);
    assert_eq!(
        r.headers,
        [(
            "X-Consul-Results-Filtered-By-ACLs".to_string(),
            "true".to_string()
        )]
    );
    let (_, v) = decoded(r);
    assert_eq!(v.as_object().map(|m| m.len()), Some(1));
    assert!(v["web"].is_object());
    let (_, v) = decoded(h.http_as(request("GET", "/v1/agent/checks", ""), web_only));
    assert_eq!(
        v.as_object().map(|m| m.len()),
        Some(1),
        "disk is a node check: {v}"
    );
    let (status, _) = decoded(h.http_as(request("GET", "/v1/agent/service/db", ""), web_only));
    assert_eq!(status, 403);

    // Registering needs service write on the name and node read.
    let writer = |r: Resource, s: &str, a: Access| match r {
        Resource::Service => s == "web",
        Resource::Node => a == Access::Read,
        _ => false,
    };
    let reg = |body: &str| request("PUT", "/v1/agent/service/register", body);
    assert_eq!(h.http_as(reg(r#"{"Name":"web"}"#), writer).status, 200);
    assert_eq!(h.http_as(reg(r#"{"Name":"db"}"#), writer).status, 403);
    // What is named by ID needs write on every service (and the node, for a check).
    let dereg = request("PUT", "/v1/agent/service/deregister/web", "");
    assert_eq!(h.http_as(dereg.clone(), writer).status, 403);
    let all = |r: Resource, _: &str, a: Access| r != Resource::Node || a == Access::Read;
    let pass = request("PUT", "/v1/agent/check/pass/service:web", "");
    assert_eq!(h.http_as(pass.clone(), all).status, 403, "node write too");
    assert_eq!(h.http_as(pass, |_, _, _| true).status, 200);
    assert_eq!(h.http_as(dereg, all).status, 200);
}
