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
    // Consul's Go client decodes the counts as integers, every entry with its fields.
    for kind in ["Counters", "Samples"] {
        for e in m[kind].as_array().unwrap() {
            assert!(e["Count"].is_u64(), "{kind}: {e}");
            for f in ["Rate", "Sum", "Min", "Max", "Mean", "Stddev"] {
                assert!(e[f].is_number(), "{kind} {f}: {e}");
            }
        }
    }
    let applied = find(&m, "Counters", "consul.raft.apply", &[])["Count"]
        .as_u64()
        .unwrap();
    assert!(applied >= 21, "{applied}");
    let set = [("plugin", "kv"), ("command", "set")];
    let time = find(&m, "Samples", "consul.fsm.apply", &set);
    assert!(time["Count"].as_u64().unwrap() >= 21);
    assert!(time["Mean"].as_f64().unwrap() > 0.0);
    // Timers in milliseconds, as Consul's: an apply takes well under a second.
    assert!(time["Mean"].as_f64().unwrap() < 1000.0, "{time}");
    assert!(time["Max"].as_f64().unwrap() >= time["Min"].as_f64().unwrap());
    let fuel = find(&m, "Samples", "consul.fsm.apply.fuel", &set);
    assert!(fuel["Mean"].as_f64().unwrap() > 1000.0, "{fuel}");
    assert_eq!(
        find(&m, "Counters", "consul.fsm.apply.errors", &set)["Count"],
        1
    );
    assert!(find(&m, "Samples", "consul.raft.commitTime", &[])["Count"].as_u64() >= Some(21));
    let gauge = |name: &str| find(&m, "Gauges", name, &[])["Value"].as_f64().unwrap();
    assert_eq!(gauge("consul.server.isLeader"), 1.0);
    assert!(gauge("consul.raft.term") >= 1.0);
    assert!(gauge("consul.fsm.index") >= 21.0);
    assert!(gauge("consul.raft.applied_index") >= 21.0);
    assert!(gauge("consul.raft.last_index") >= gauge("consul.raft.applied_index"));
    assert!(find(&m, "Counters", "consul.raft.leader.changes", &[])["Count"].as_u64() >= Some(1));
    for kind in ["build", "save"] {
        assert!(
            find(&m, "Samples", "consul.raft.snapshot", &[("kind", kind)])["Count"].as_u64()
                >= Some(1),
            "{kind}"
        );
    }
    let posts = find(
        &m,
        "Samples",
        "consul.api.http",
        &[("method", "POST"), ("path", "/v1/apply")],
    );
    assert!(posts["Count"].as_u64() >= Some(21));
    assert!(
        find(&m, "Gauges", "consul.state.rows", &[("table", "kvs")])["Value"]
            .as_f64()
            .unwrap()
            >= 20.0
    );

    let r = a.get("/v1/agent/metrics?format=prometheus");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    assert!(text.contains("# TYPE consul_fsm_apply histogram"), "{text}");
    let count_line = text
        .lines()
        .find(|l| {
            l.starts_with("consul_fsm_apply_count{")
                && l.contains("command=\"set\"")
                && l.contains("plugin=\"kv\"")
        })
        .unwrap_or_else(|| panic!("{text}"));
    let n: f64 = count_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 21.0);
    assert!(text.contains("# TYPE consul_raft_apply counter"));
    assert!(text.contains("consul_raft_commitTime_bucket"));

    let r = a.get("/v1/agent/metrics?format=xml");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("xml"), "{}", r.text());
}

#[test]
fn telemetry_metrics_prefix_renames_every_metric() {
    let mut c = Cluster::start_with(BIN, 1, "[telemetry]\nmetrics_prefix = \"fsmhost\"");
    let leader = c.wait_leader(T);
    let a = c.client(leader);
    let m = a.get("/v1/agent/metrics").json();
    let names: Vec<&str> = ["Gauges", "Counters", "Samples"]
        .iter()
        .flat_map(|k| m[*k].as_array().unwrap())
        .map(|e| e["Name"].as_str().unwrap())
        .collect();
    assert!(!names.is_empty());
    assert!(names.iter().all(|n| n.starts_with("fsmhost.")), "{names:?}");
    assert!(names.contains(&"fsmhost.raft.apply"), "{names:?}");
    let text = a.get("/v1/agent/metrics?format=prometheus").text();
    assert!(text.contains("# TYPE fsmhost_raft_apply counter"), "{text}");
    assert!(!text.contains("consul_"), "{text}");
}
