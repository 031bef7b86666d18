//! Consul's catalog and health API, served by the bundled catalog plugin through a real
//! 3-server cluster: registrations through a follower, reads on every server, a blocking
//! read woken by a registration, and deregistration.

use crate::support::BIN;
use fsmhost_tests::cluster::Cluster;
use serde_json::json;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

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
    let (l, f) = (c.client(leader), c.client(follower));
    for (n, status) in [(1, "passing"), (2, "passing"), (3, "critical")] {
        let r = f.put(
            "/v1/catalog/register",
            register(&format!("node{n}"), &format!("web{n}"), status),
        );
        assert_eq!((r.status, r.json()), (200, json!(true)));
    }
    c.wait_converged(WAIT);
    for i in 0..3 {
        let r = c.client(i).get("/v1/health/service/web?passing&stale");
        assert_eq!(r.status, 200);
        let v = r.json();
        let nodes: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Node"]["Node"].as_str().unwrap())
            .collect();
        assert_eq!(nodes, ["node1", "node2"], "server {i}");
        assert!(r.index() >= 3);
    }
    c.wait_servers_registered(WAIT);
    let r = l.get("/v1/catalog/services");
    assert_eq!(r.json(), json!({"consul": [], "web": ["v1"]}));
    let index = r.index();

    // A blocking read on a follower wakes when another node registers.
    let blocked = {
        let f = f.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let r = f.get(&format!("/v1/catalog/service/api?index={index}&wait=20s"));
            (started.elapsed(), r.status, r.json())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let body =
        json!({"Node": "node4", "Address": "10.0.0.4", "Service": {"Service": "api", "Port": 9}});
    assert_eq!(l.put("/v1/catalog/register", body.to_string()).status, 200);
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
    let r = f.put("/v1/catalog/deregister", r#"{"Node": "node3"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(l.get("/v1/health/state/critical").json(), json!([]));
    let r = l.put("/v1/catalog/register", r#"{"Node": "x"}"#);
    assert_eq!(r.status, 400, "{}", r.text());
}
