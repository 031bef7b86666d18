//! Agent checks: registration (node and service checks, defaults, refusals), the TTL
//! reports and their refusals, deregistration, service maintenance, and the agent's health
//! reads.

use super::*;

fn with_web(h: &mut Harness) {
    let body = r#"{"Name":"web","Port":80,"Check":{"CheckID":"web-ttl","TTL":"10s"}}"#;
    ok(h, "/v1/agent/service/register", body);
}

fn check(h: &mut Harness, id: &str) -> Value {
    get(h, "/v1/agent/checks")[id].clone()
}

#[test]
fn checks_register_on_the_node_or_a_service() {
    let mut h = h();
    with_web(&mut h);
    // A node check without a kind: its ID is its name, and it keeps its status.
    ok(
        &mut h,
        "/v1/agent/check/register",
        r#"{"Name":"disk","Status":"passing"}"#,
    );
    let disk = check(&mut h, "disk");
    assert_eq!(
        (disk["Status"].as_str(), disk["Type"].as_str()),
        (Some("passing"), Some(""))
    );
    assert_eq!(disk["ServiceID"], "");
    // py-consul's agent.check.register(name, Check.ttl("5s"), check_id, notes, service_id).
    let py = r#"{"name":"hb","ttl":"5s","id":"web-hb","notes":"beat","serviceid":"web"}"#;
    ok(&mut h, "/v1/agent/check/register", py);
    let hb = check(&mut h, "web-hb");
    assert_eq!(
        (hb["Status"].as_str(), hb["Type"].as_str()),
        (Some("critical"), Some("ttl"))
    );
    assert_eq!(
        (hb["ServiceName"].as_str(), hb["Notes"].as_str()),
        (Some("web"), Some("beat"))
    );
    // In the catalog's health view too.
    let health = get(&mut h, "/v1/health/checks/web");
    assert_eq!(health.as_array().map(Vec::len), Some(2));

    refused(
        &mut h,
        "/v1/agent/check/register",
        r#"{"TTL":"5s"}"#,
        400,
        "Missing check name",
    );
    refused(
        &mut h,
        "/v1/agent/check/register",
        r#"{"Name":"x","Status":"fine"}"#,
        400,
        "Bad check status",
    );
    refused(
        &mut h,
        "/v1/agent/check/register",
        r#"{"Name":"x","ServiceID":"nope","TTL":"5s"}"#,
        404,
        "ServiceID \"nope\" does not exist",
    );
    refused(
        &mut h,
        "/v1/agent/check/register",
        r#"{"Name":"x","ID":"serfHealth"}"#,
        400,
        "leader's own registration",
    );
}

#[test]
fn reports_set_status_and_output_of_ttl_checks_only() {
    let mut h = h();
    with_web(&mut h);
    ok(&mut h, "/v1/agent/check/pass/web-ttl?note=all+good", "");
    let c = check(&mut h, "web-ttl");
    assert_eq!(
        (c["Status"].as_str(), c["Output"].as_str()),
        (Some("passing"), Some("all+good"))
    );
    ok(&mut h, "/v1/agent/check/warn/web-ttl", "");
    let c = check(&mut h, "web-ttl");
    assert_eq!(
        (c["Status"].as_str(), c["Output"].as_str()),
        (Some("warning"), Some(""))
    );
    ok(&mut h, "/v1/agent/check/fail/web-ttl?note=down", "");
    assert_eq!(check(&mut h, "web-ttl")["Status"], "critical");
    ok(
        &mut h,
        "/v1/agent/check/update/web-ttl",
        r#"{"status":"passing","output":"fine"}"#,
    );
    let c = check(&mut h, "web-ttl");
    assert_eq!(
        (c["Status"].as_str(), c["Output"].as_str()),
        (Some("passing"), Some("fine"))
    );
    // Output is capped as Consul's is.
    let long = "x".repeat(CHECK_BUF_SIZE_FOR_TESTS + 10);
    let body = json!({"Status": "passing", "Output": long}).to_string();
    ok(&mut h, "/v1/agent/check/update/web-ttl", &body);
    let out = check(&mut h, "web-ttl")["Output"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        out.ends_with(" ... (captured 4096 of 4106 bytes)"),
        "{}",
        &out[4000..]
    );

    refused(
        &mut h,
        "/v1/agent/check/update/web-ttl",
        r#"{"Status":"bogus"}"#,
        400,
        "Invalid check status: 'bogus'",
    );
    refused(
        &mut h,
        "/v1/agent/check/pass/nope",
        "",
        404,
        "Unknown check ID \"nope\". Ensure that the check ID is passed, not the check name.",
    );
    ok(&mut h, "/v1/agent/check/register", r#"{"Name":"disk"}"#);
    refused(
        &mut h,
        "/v1/agent/check/pass/disk",
        "",
        500,
        "CheckID \"disk\" does not have associated TTL",
    );
    refused(
        &mut h,
        "/v1/agent/check/pass/serfHealth",
        "",
        404,
        "Unknown check ID",
    );
}

const CHECK_BUF_SIZE_FOR_TESTS: usize = agent_http::CHECK_BUF_SIZE;

#[test]
fn deregistering_a_check_takes_its_timer() {
    let mut h = h();
    with_web(&mut h);
    assert_eq!(h.store().len(CHECK_TTLS.name()), 1);
    refused(
        &mut h,
        "/v1/agent/check/deregister/nope",
        "",
        404,
        "Unknown check ID",
    );
    ok(&mut h, "/v1/agent/check/deregister/web-ttl", "");
    assert_eq!(check(&mut h, "web-ttl"), Value::Null);
    assert_eq!(h.store().len(CHECK_TTLS.name()), 0);
    assert!(
        get(&mut h, "/v1/agent/services")["web"].is_object(),
        "the service stays"
    );
    // Registered again without a TTL: no timer.
    let body = r#"{"Name":"again","ID":"web-ttl","ServiceID":"web","TTL":"5s"}"#;
    ok(&mut h, "/v1/agent/check/register", body);
    assert_eq!(h.store().len(CHECK_TTLS.name()), 1);
    ok(
        &mut h,
        "/v1/agent/check/register",
        r#"{"Name":"again","ID":"web-ttl","ServiceID":"web"}"#,
    );
    assert_eq!(h.store().len(CHECK_TTLS.name()), 0);
    assert_eq!(check(&mut h, "web-ttl")["Type"], "");
}

#[test]
fn maintenance_adds_and_removes_consuls_critical_check() {
    let mut h = h();
    with_web(&mut h);
    ok(&mut h, "/v1/agent/check/pass/web-ttl", "");
    ok(&mut h, "/v1/agent/service/maintenance/web?enable=true", "");
    let m = check(&mut h, "_service_maintenance:web");
    assert_eq!(m["Name"], "Service Maintenance Mode");
    assert_eq!(m["Notes"], DEFAULT_SERVICE_MAINT_REASON);
    assert_eq!(
        (m["Status"].as_str(), m["Type"].as_str()),
        (Some("critical"), Some("maintenance"))
    );
    assert_eq!(m["ServiceID"], "web");
    let (status, health) = call(&mut h, "GET", "/v1/agent/health/service/name/web", "");
    assert_eq!(status, 503);
    assert_eq!(health[0]["AggregatedStatus"], "maintenance");
    assert_eq!(get(&mut h, "/v1/health/service/web?passing"), json!([]));
    // Enabling again keeps the first reason; disabling removes it.
    ok(
        &mut h,
        "/v1/agent/service/maintenance/web?enable=1&reason=upgrade",
        "",
    );
    assert_eq!(
        check(&mut h, "_service_maintenance:web")["Notes"],
        DEFAULT_SERVICE_MAINT_REASON
    );
    ok(&mut h, "/v1/agent/service/maintenance/web?enable=false", "");
    assert_eq!(check(&mut h, "_service_maintenance:web"), Value::Null);
    ok(
        &mut h,
        "/v1/agent/service/maintenance/web?enable=true&reason=upgrade",
        "",
    );
    assert_eq!(
        check(&mut h, "_service_maintenance:web")["Notes"],
        "upgrade"
    );

    let m = "/v1/agent/service/maintenance/";
    refused(&mut h, m, "", 400, "Missing service ID");
    refused(
        &mut h,
        &format!("{m}web"),
        "",
        400,
        "Missing value for enable",
    );
    refused(
        &mut h,
        &format!("{m}web?enable=yes"),
        "",
        400,
        "Invalid value for enable: \"yes\"",
    );
    refused(
        &mut h,
        &format!("{m}nope?enable=true"),
        "",
        404,
        "Unknown service ID \"nope\"",
    );
}

#[test]
fn agent_health_reads_take_the_worst_status() {
    let mut h = h();
    with_web(&mut h);
    ok(
        &mut h,
        "/v1/agent/service/register",
        r#"{"ID":"web2","Name":"web","Check":{"TTL":"9s"}}"#,
    );
    ok(&mut h, "/v1/agent/check/pass/web-ttl", "");
    ok(&mut h, "/v1/agent/check/pass/service:web2", "");
    let by_name = "/v1/agent/health/service/name/web";
    let (status, v) = call(&mut h, "GET", by_name, "");
    assert_eq!(status, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    assert_eq!(v[0]["AggregatedStatus"], "passing");
    assert_eq!(v[0]["Service"]["ID"], "web");
    assert_eq!(v[0]["Checks"][0]["CheckID"], "web-ttl");
    ok(&mut h, "/v1/agent/check/warn/service:web2", "");
    assert_eq!(call(&mut h, "GET", by_name, "").0, 429);
    assert_eq!(
        call(&mut h, "GET", "/v1/agent/health/service/id/web", "").0,
        200
    );
    let (status, text) = call(
        &mut h,
        "GET",
        "/v1/agent/health/service/id/web2?format=text",
        "",
    );
    assert_eq!((status, text), (429, json!("warning")));
    let (status, v) = call(&mut h, "GET", "/v1/agent/health/service/name/nope", "");
    assert_eq!((status, v), (404, json!([])));
    let (status, text) = call(
        &mut h,
        "GET",
        "/v1/agent/health/service/name/nope?format=text",
        "",
    );
    assert_eq!((status, text), (404, json!("ServiceName nope Not Found")));
    let (status, v) = call(&mut h, "GET", "/v1/agent/health/service/id/nope", "");
    assert_eq!(status, 404);
    assert_eq!(v["AggregatedStatus"], "critical");
}
