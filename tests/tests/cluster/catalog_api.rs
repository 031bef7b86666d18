//! Consul's catalog and health API, served by the bundled catalog plugin through a real
//! 3-server cluster: registrations through a follower, reads on every server, a blocking
//! read woken by a registration, and deregistration.

use fsmhost_tests::cluster::{Cluster, http};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fsmhost-node");
const WAIT: Duration = Duration::from_secs(30);

fn call(c: &Cluster, i: usize, method: &str, path: &str, body: &str) -> (u16, Value, Option<u64>) {
    let r = http(
        &c.servers[i].http_addr(),
        method,
        path,
        "application/json",
        body.as_bytes(),
        Duration::from_secs(30),
    )
    .expect("server answers");
    let index = r.header("X-Consul-Index").and_then(|v| v.parse().ok());
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v, index)
}

fn register(node: &str, id: &str, status: &str) -> String {
    json!({
        "Node": node,
        "Address": "10.0.0.1",
        "Service": {"ID": id, "Service": "web", "Tags": ["v1"], "Port": 80},
        "Check": {"CheckID": format!("service:{id}"), "Name": "http", "Status": status, "ServiceID": id}
    })
    .to_string()
}

#[test]
fn register_through_a_follower_and_read_everywhere() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader(WAIT);
    let follower = (leader + 1) % 3;
    for (n, status) in [(1, "passing"), (2, "passing"), (3, "critical")] {
        let (s, v, _) = call(
            &c,
            follower,
            "PUT",
            "/v1/catalog/register",
            &register(&format!("node{n}"), &format!("web{n}"), status),
        );
        assert_eq!((s, v), (200, json!(true)));
    }
    c.wait_converged(WAIT);
    for i in 0..3 {
        let (s, v, index) = call(&c, i, "GET", "/v1/health/service/web?passing&stale", "");
        assert_eq!(s, 200);
        let nodes: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Node"]["Node"].as_str().unwrap())
            .collect();
        assert_eq!(nodes, ["node1", "node2"], "server {i}");
        assert!(index.unwrap() >= 3);
    }
    let (_, services, index) = call(&c, leader, "GET", "/v1/catalog/services", "");
    assert_eq!(services, json!({"web": ["v1"]}));
    let index = index.unwrap();

    // A blocking read on a follower wakes when another node registers.
    let addr = c.servers[follower].http_addr();
    let blocked = std::thread::spawn(move || {
        let started = Instant::now();
        let r = http(
            &addr,
            "GET",
            &format!("/v1/catalog/service/api?index={index}&wait=20s"),
            "application/json",
            b"",
            Duration::from_secs(30),
        )
        .unwrap();
        (started.elapsed(), r.status, r.json())
    });
    std::thread::sleep(Duration::from_millis(300));
    let body =
        json!({"Node": "node4", "Address": "10.0.0.4", "Service": {"Service": "api", "Port": 9}});
    assert_eq!(
        call(&c, leader, "PUT", "/v1/catalog/register", &body.to_string()).0,
        200
    );
    let (waited, status, instances) = blocked.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        waited < Duration::from_secs(10),
        "woken by the write: {waited:?}"
    );
    assert_eq!(
        instances[0]["ServiceID"], "api",
        "the ID defaults to the name"
    );

    // Deregistering the node takes its service and checks with it.
    let (s, _, _) = call(
        &c,
        follower,
        "PUT",
        "/v1/catalog/deregister",
        r#"{"Node": "node3"}"#,
    );
    assert_eq!(s, 200);
    let (_, checks, _) = call(&c, leader, "GET", "/v1/health/state/critical", "");
    assert_eq!(checks, json!([]));
    let (s, v, _) = call(
        &c,
        leader,
        "PUT",
        "/v1/catalog/register",
        r#"{"Node": "x"}"#,
    );
    assert_eq!(s, 400, "{v}");
}
