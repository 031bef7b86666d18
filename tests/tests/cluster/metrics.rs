//! `GET /v1/agent/metrics` on a real server: Consul's JSON shape and the Prometheus text
//! format, with raft, fsm (time and fuel per plugin and command), snapshot and HTTP figures.

use crate::support::{BIN, kv_set};
use fsmhost_tests::cbor;
use fsmhost_tests::cluster::Cluster;
use serde_json::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// The entry of `kind` (Gauges, Counters, Samples) named `name` whose labels include
/// `labels`.
fn find<'a>(m: &'a Value, kind: &str, name: &str, labels: &[(&str, &str)]) -> &'a Value {
    m[kind]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Name"] == name && labels.iter().all(|(k, v)| e["Labels"][k] == *v))
        .unwrap_or_else(|| panic!("no {kind} {name} {labels:?} in {m}"))
}

#[test]
fn metrics_in_consuls_json_and_prometheus_text() {
    let mut c = Cluster::start(BIN, 1);
    let leader = c.wait_leader(T);
    let a = c.client(leader);
    for i in 0..20 {
        let req = kv_set(&format!("m/{i}"), [1; 10]);
        assert_eq!(c.apply(leader, "kv", "set", &req).unwrap().status, 200);
    }
    // A command whose payload the plugin refuses: applied as its error, and counted.
    let r = c
        .apply(leader, "kv", "set", &cbor(&"not a request"))
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let r = a.get("/v1/snapshot");
    assert_eq!(r.status, 200);

    let r = a.get("/v1/agent/metrics");
    assert_eq!(r.status, 200);
    let m = r.json();
    assert!(m["Timestamp"].as_str().unwrap().ends_with('Z'));
    let applied = find(&m, "Counters", "fsmhost_raft_apply", &[])["Count"]
        .as_f64()
        .unwrap();
    assert!(applied >= 21.0, "{applied}");
    let set = [("plugin", "kv"), ("command", "set")];
    let time = find(&m, "Samples", "fsmhost_fsm_apply_seconds", &set);
    assert!(time["Count"].as_u64().unwrap() >= 21);
    assert!(time["Mean"].as_f64().unwrap() > 0.0);
    let fuel = find(&m, "Samples", "fsmhost_fsm_apply_fuel", &set);
    assert!(fuel["Mean"].as_f64().unwrap() > 1000.0, "{fuel}");
    assert_eq!(
        find(&m, "Counters", "fsmhost_fsm_apply_errors", &set)["Count"],
        1.0
    );
    assert!(
        find(&m, "Samples", "fsmhost_raft_commit_time_seconds", &[])["Count"].as_u64() >= Some(21)
    );
    assert_eq!(
        find(
            &m,
            "Gauges",
            "fsmhost_raft_state",
            &[("field", "is_leader")]
        )["Value"],
        1.0
    );
    assert!(
        find(&m, "Gauges", "fsmhost_raft_state", &[("field", "term")])["Value"]
            .as_f64()
            .unwrap()
            >= 1.0
    );
    assert!(
        find(
            &m,
            "Gauges",
            "fsmhost_raft_state",
            &[("field", "fsm_index")]
        )["Value"]
            .as_f64()
            .unwrap()
            >= 21.0
    );
    assert!(
        find(&m, "Counters", "fsmhost_raft_leader_changes", &[])["Count"].as_f64() >= Some(1.0)
    );
    for kind in ["build", "save"] {
        assert!(
            find(&m, "Samples", "fsmhost_snapshot_seconds", &[("kind", kind)])["Count"].as_u64()
                >= Some(1),
            "{kind}"
        );
    }
    let posts = find(
        &m,
        "Samples",
        "fsmhost_http_request_seconds",
        &[("method", "POST"), ("path", "/v1/apply")],
    );
    assert!(posts["Count"].as_u64() >= Some(21));

    let r = a.get("/v1/agent/metrics?format=prometheus");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    assert!(
        text.contains("# TYPE fsmhost_fsm_apply_seconds histogram"),
        "{text}"
    );
    let count_line = text
        .lines()
        .find(|l| {
            l.starts_with("fsmhost_fsm_apply_seconds_count{")
                && l.contains("command=\"set\"")
                && l.contains("plugin=\"kv\"")
        })
        .unwrap_or_else(|| panic!("{text}"));
    let n: f64 = count_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 21.0);
    assert!(text.contains("# TYPE fsmhost_raft_apply counter"));

    let r = a.get("/v1/agent/metrics?format=xml");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("xml"), "{}", r.text());
}
