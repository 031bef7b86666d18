//! The operators' HTTP API endpoint by endpoint on a real server: answers, errors, and the
//! headers every response carries (`X-Consul-Index`, `X-Consul-KnownLeader`,
//! `X-Consul-LastContact`).

use crate::support::BIN;
use fsmhost_tests::client::{Client, HttpReply};
use fsmhost_tests::cluster::Cluster;
use serde_json::json;
use std::time::{Duration, Instant};

/// One request, whose answer must carry Consul's headers.
fn call(a: &Client, method: &str, path: &str, content_type: &str, body: &[u8]) -> HttpReply {
    let r = a.request(method, path, content_type, body);
    for h in [
        "X-Consul-Index",
        "X-Consul-KnownLeader",
        "X-Consul-LastContact",
    ] {
        assert!(r.header(h).is_some(), "{method} {path}: no {h}: {r:?}");
    }
    assert!(
        r.header("X-Consul-Index")
            .and_then(|v| v.parse::<u64>().ok())
            >= Some(1),
        "{method} {path}: the index is at least 1"
    );
    r
}

#[test]
fn every_endpoint_answers_with_the_consul_headers_and_errors_name_the_problem() {
    let mut c = Cluster::start(BIN, 1);
    let leader = c.wait_leader(Duration::from_secs(30));
    let a = c.client(leader);
    let rpc = c.servers[leader].rpc_addr();
    let get = |path: &str| call(&a, "GET", path, "", b"");

    let r = get("/v1/status/leader");
    assert_eq!(r.json(), json!(rpc));
    assert_eq!(get("/v1/status/peers").json(), json!([rpc]));
    let me = get("/v1/agent/self").json();
    assert_eq!(me["Config"]["Server"], true);
    assert_eq!(me["Stats"]["raft"]["state"], "Leader");
    let members = get("/v1/agent/members").json();
    assert_eq!(members[0]["Status"], 1);
    assert_eq!(members[0]["Tags"]["role"], "consul");
    let conf = get("/v1/operator/raft/configuration").json();
    assert_eq!(conf["Servers"][0]["Leader"], true);
    assert_eq!(conf["Servers"][0]["Voter"], true);
    let plugins = get("/v1/plugins").json();
    let kv = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["Name"] == "kv")
        .unwrap()
        .clone();
    assert!(
        kv["Routes"]
            .as_array()
            .unwrap()
            .contains(&json!({"Method": "PUT", "Path": "/v1/txn", "Prefix": false})),
        "{kv}"
    );
    assert_eq!(get("/v1/agent/metrics").status, 200);
    assert_eq!(get("/v1/agent/metrics?format=prometheus").status, 200);

    // The generic plugin API: JSON in, JSON out, the index of the write.
    let r = call(
        &a,
        "POST",
        "/v1/apply/kv/set",
        "application/json",
        br#"{"key":"j","value":[104,105]}"#,
    );
    assert_eq!((r.status, r.text().as_str()), (200, "true"));
    let index: u64 = r.header("X-Consul-Index").unwrap().parse().unwrap();
    let r = call(
        &a,
        "GET",
        "/v1/query/kv/get",
        "application/json",
        br#"{"key":"j"}"#,
    );
    assert_eq!(r.json()["key"], "j");
    assert_eq!(r.header("X-Consul-Index"), Some(index.to_string().as_str()));
    // A blocking generic query returns at its wait when nothing changes.
    let started = Instant::now();
    let r = call(
        &a,
        "GET",
        &format!("/v1/query/kv/get?index={index}&wait=200ms"),
        "application/json",
        br#"{"key":"j"}"#,
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(r.status, 200);

    // Errors: a status and one message naming what is wrong.
    for (method, path, ctype, body, status, text) in [
        (
            "POST",
            "/v1/apply/nope/set",
            "application/cbor",
            &b""[..],
            404,
            "no plugin named nope",
        ),
        (
            "POST",
            "/v1/apply/kv/nope",
            "application/cbor",
            b"",
            404,
            "no command nope",
        ),
        ("GET", "/v1/query/kv/nope", "", b"", 404, "no query nope"),
        (
            "POST",
            "/v1/apply/kv/set",
            "application/json",
            b"{",
            400,
            "not JSON",
        ),
        (
            "POST",
            "/v1/apply/kv/set",
            "application/json",
            br#"{"key":"","value":[]}"#,
            400,
            "key must not be empty",
        ),
        ("GET", "/v1/query/kv/get?wait=forever", "", b"", 400, "wait"),
        (
            "GET",
            "/v1/agent/metrics?format=xml",
            "",
            b"",
            400,
            "format",
        ),
        (
            "DELETE",
            "/v1/operator/raft/peer",
            "",
            b"",
            400,
            "Must specify either ?id with the server's ID or ?address",
        ),
        (
            "DELETE",
            "/v1/operator/raft/peer?address=10.0.0.1:1",
            "",
            b"",
            500,
            "address \"10.0.0.1:1\" was not found in the Raft configuration",
        ),
        (
            "GET",
            "/v1/nothing/here",
            "",
            b"",
            404,
            "no route GET /v1/nothing/here",
        ),
        (
            "PUT",
            "/v1/snapshot?stale",
            "",
            b"",
            400,
            "stale not allowed",
        ),
        ("PUT", "/v1/snapshot", "", b"not an archive", 400, "archive"),
        // What a web page can send cross-site without a preflight is refused (Security,
        // item 4): a POST of a simple content type anywhere, a command of no declared
        // format, and a POST to leave.
        (
            "POST",
            "/v1/apply/kv/set",
            "text/plain",
            br#"{"key":"x","value":[]}"#,
            415,
            "POST needs a Content-Type of application/json or application/cbor (got text/plain)",
        ),
        (
            "POST",
            "/v1/agent/leave",
            "text/plain",
            b"",
            415,
            "got text/plain",
        ),
        ("POST", "/v1/agent/leave", "", b"", 415, "got none"),
        (
            "POST",
            "/v1/apply/kv/set",
            "application/x-www-form-urlencoded; charset=utf-8",
            b"key=x",
            415,
            "got application/x-www-form-urlencoded",
        ),
        (
            "PUT",
            "/v1/apply/kv/set",
            "",
            b"",
            415,
            "a command's body needs Content-Type application/json or application/cbor (got none)",
        ),
        (
            "POST",
            "/v1/agent/leave",
            "application/json",
            b"",
            404,
            "no route POST /v1/agent/leave",
        ),
    ] {
        let r = call(&a, method, path, ctype, body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert!(r.text().contains(text), "{method} {path}: {}", r.text());
    }
    // The server still serves after all of that, with nothing written and no CORS grant.
    let r = get("/v1/kv/j");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    assert_eq!(get("/v1/kv/x").status, 404);
}

#[test]
fn json_logs_and_sigint_lets_in_flight_requests_finish() {
    let mut c = Cluster::start_with(BIN, 1, "log_json = true");
    let leader = c.wait_leader(Duration::from_secs(30));
    let a = c.client(leader);
    let r = call(&a, "PUT", "/v1/kv/k", "", b"v");
    let index = r.header("X-Consul-Index").unwrap().to_string();
    // A blocking read is in flight when SIGINT arrives: it still gets its answer.
    let reader = {
        let a = a.clone();
        std::thread::spawn(move || a.try_get(&format!("/v1/kv/k?index={index}&wait=2s")))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.stop_with(leader, libc::SIGINT), Some(0), "SIGINT exits 0");
    let r = reader
        .join()
        .unwrap()
        .expect("the in-flight read is answered");
    assert_eq!(r.status, 200, "{}", r.text());
    // Every log line is one JSON object with Consul's keys.
    let log = c.log_text(leader);
    let mut modules = std::collections::BTreeSet::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["@timestamp", "@level", "@module", "@message"] {
            assert!(v.get(key).is_some(), "no {key}: {line}");
        }
        modules.insert(v["@module"].as_str().unwrap_or("").to_string());
    }
    assert!(modules.contains("agent.server.raft"), "{modules:?}");
}
