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

/// `?filter=` (Consul's filter expressions) on catalog and health lists, evaluated by the
/// host over the JSON answer: each element kept or not, a bad expression refused with
/// Consul's 400 text, percent-encoded as clients send it.
#[test]
fn filter_expressions_on_catalog_and_health_lists() {
    let mut c = Cluster::start(BIN, 1);
    let leader = c.wait_leader(WAIT);
    let s = c.client(leader);
    for (node, id, env, tags) in [
        ("n1", "web1", "prod", json!(["v1", "primary"])),
        ("n2", "web2", "qa", json!(["v1"])),
        ("n3", "web3", "prod", json!(["v2"])),
    ] {
        let body = json!({
            "Node": node,
            "Address": "10.0.0.1",
            "NodeMeta": {"rack": if node == "n3" { "b" } else { "a" }},
            "Service": {"ID": id, "Service": "web", "Tags": tags, "Port": 80,
                        "Meta": {"env": env}},
            "Check": {"CheckID": format!("service:{id}"), "Name": "http",
                      "Status": if node == "n2" { "critical" } else { "passing" },
                      "ServiceID": id}
        });
        assert_eq!(s.put("/v1/catalog/register", body.to_string()).status, 200);
    }
    let ids = |path: &str, field: &str| -> Vec<String> {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let mut v: Vec<String> = r
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e.pointer(field)
                    .and_then(|x| x.as_str())
                    .unwrap()
                    .to_string()
            })
            .collect();
        v.sort();
        v
    };
    let enc = |f: &str| -> String {
        f.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    assert_eq!(
        ids(
            &format!(
                "/v1/catalog/service/web?filter={}",
                enc("ServiceMeta.env == prod")
            ),
            "/ServiceID"
        ),
        ["web1", "web3"]
    );
    assert_eq!(
        ids(
            &format!(
                "/v1/catalog/service/web?filter={}",
                enc(r#"ServiceTags contains "v1" and not (ServiceMeta.env == qa)"#)
            ),
            "/ServiceID"
        ),
        ["web1"]
    );
    assert_eq!(
        ids(
            &format!(
                "/v1/health/service/web?filter={}",
                enc("Service.Tags contains primary or Node.Meta.rack == b")
            ),
            "/Service/ID"
        ),
        ["web1", "web3"]
    );
    assert_eq!(
        ids(
            &format!(
                "/v1/catalog/nodes?filter={}",
                enc(r#"Node matches "^n[12]$""#)
            ),
            "/Node"
        ),
        ["n1", "n2"]
    );
    // The filter applies after a blocking read as to any other.
    let r = s.get(&format!(
        "/v1/health/state/critical?filter={}",
        enc("ServiceID == web2")
    ));
    assert_eq!(r.json().as_array().unwrap().len(), 1, "{}", r.text());
    // A bad expression: Consul's 400.
    let r = s.get(&format!(
        "/v1/catalog/service/web?filter={}",
        enc("ServiceMeta.env ==")
    ));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text()
            .starts_with("Failed to create boolean expression evaluator"),
        "{}",
        r.text()
    );
}
