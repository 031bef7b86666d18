//! Consul wire compatibility (issue 25): the bodies Consul's clients really send (Go's
//! `api` package: every field, `null` for unset maps and lists; py-consul: lower-case
//! keys), py-consul itself from PyPI, the datacenter (`?dc=`, `/v1/catalog/datacenters`),
//! and the agent and operator answers in Consul's shapes and statuses.

use crate::support::{BIN, wait_for};
use fsmhost_tests::cluster::Cluster;
use fsmhost_tests::py_consul::PyConsul;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// `api.CatalogRegistration` as Go's `encoding/json` marshals it: every field present,
/// `null` for nil maps, slices and pointers, `""` and `0` for unset strings and numbers.
const GO_REGISTER: &str = r#"{"ID":"","Node":"n1","Address":"10.0.0.1","Datacenter":"",
    "TaggedAddresses":null,"NodeMeta":null,"Service":{"Kind":"","ID":"web1","Service":"web",
    "Tags":null,"Meta":null,"Port":80,"Address":"","SocketPath":"","TaggedAddresses":null,
    "Weights":{"Passing":0,"Warning":0},"EnableTagOverride":false,"CreateIndex":0,
    "ModifyIndex":0,"Namespace":"","Partition":"","Proxy":null,"Connect":null,
    "Locality":null},"Check":{"Node":"n1","CheckID":"service:web1","Name":"web alive",
    "Status":"passing","Notes":"","Output":"","ServiceID":"web1","ServiceName":"",
    "ServiceTags":null,"Type":"","Namespace":"","Partition":"","ExposedPort":0,
    "Definition":{"Interval":0,"Timeout":0,"DeregisterCriticalServiceAfter":0,"HTTP":"",
    "Header":null,"Method":"","Body":"","TLSServerName":"","TLSSkipVerify":false,"TCP":"",
    "TCPUseTLS":false,"UDP":"","GRPC":"","OSService":"","GRPCUseTLS":false},
    "CreateIndex":0,"ModifyIndex":0},"Checks":null,"SkipNodeUpdate":false,"Partition":"",
    "Locality":null}"#;

/// `api.AutopilotConfiguration` from Go with only two fields set: the durations are nil
/// `*ReadableDuration`s, so `null`.
const GO_AUTOPILOT: &str = r#"{"CleanupDeadServers":false,"LastContactThreshold":null,
    "MaxTrailingLogs":40,"MinQuorum":0,"ServerStabilizationTime":null,
    "RedundancyZoneTag":"","DisableUpgradeMigration":false,"UpgradeVersionTag":"",
    "CreateIndex":0,"ModifyIndex":0}"#;

fn one_server() -> Cluster {
    let mut c = Cluster::start(BIN, 1);
    c.wait_leader(WAIT);
    c
}

#[test]
fn go_clients_bodies_register_and_configure_autopilot() {
    let c = one_server();
    let s = c.client(0);
    let r = s.put("/v1/catalog/register", GO_REGISTER);
    assert_eq!((r.status, r.text()), (200, "true".to_string()));
    let entries = s.get("/v1/health/service/web?passing").json();
    let e = &entries[0];
    assert_eq!(e["Node"]["Node"], "n1");
    assert_eq!(e["Node"]["TaggedAddresses"], json!({}));
    assert_eq!(e["Service"]["ID"], "web1");
    assert_eq!(e["Service"]["Tags"], json!([]));
    assert_eq!(e["Service"]["Port"], 80);
    assert_eq!(e["Checks"][0]["ServiceName"], "web");

    let r = s.put("/v1/operator/autopilot/configuration", GO_AUTOPILOT);
    assert_eq!((r.status, r.text()), (200, "true".to_string()));
    let conf = s.get("/v1/operator/autopilot/configuration").json();
    assert_eq!(conf["CleanupDeadServers"], false);
    assert_eq!(conf["MaxTrailingLogs"], 40);
    assert_eq!(
        conf["LastContactThreshold"], "200ms",
        "null leaves the default"
    );
    assert_eq!(conf["ServerStabilizationTime"], "10s");
    let lower = r#"{"cleanupdeadservers":true,"maxtrailinglogs":41,"lastcontactthreshold":null}"#;
    assert_eq!(
        s.put("/v1/operator/autopilot/configuration", lower).status,
        200
    );
    let conf = s.get("/v1/operator/autopilot/configuration").json();
    assert_eq!(
        (&conf["CleanupDeadServers"], &conf["MaxTrailingLogs"]),
        (&json!(true), &json!(41))
    );

    // The Go client's KV transaction: nulls for the other operation kinds.
    let txn = r#"[{"KV":{"Verb":"set","Key":"k","Value":"dg==","Flags":0,"Index":0,
        "Session":"","Namespace":"","Partition":""},"Node":null,"Service":null,"Check":null}]"#;
    let r = s.put("/v1/txn", txn);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/v1/kv/k?raw").text(), "v");
}

/// Runs `tests/py/<script>` with py-consul against a new 1-server cluster.
fn py_consul(script: &str) {
    let py = PyConsul::install(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .unwrap_or_else(|e| panic!("installing py-consul: {e}"));
    let mut c = one_server();
    // As Consul's own test server does: ready once the leader registered the servers.
    c.wait_servers_registered(WAIT);
    let out = py
        .run_script(script, &c.servers[0].http_addr())
        .unwrap_or_else(|e| panic!("{e}\n--- server log\n{}", c.log_tail(0, 40)));
    assert_eq!(out.trim(), "ok");
}

#[test]
fn py_consul_from_pypi_registers_reads_and_writes() {
    py_consul("catalog_kv_health.py");
}

#[test]
fn py_consul_agent_status_and_operator_calls() {
    py_consul("agent_operator.py");
}

#[test]
fn py_consul_sessions_and_locks() {
    py_consul("sessions_locks.py");
}

#[test]
fn py_consul_agent_services_and_ttl_checks() {
    py_consul("agent_services.py");
}

#[test]
fn the_configured_datacenter_is_the_only_one() {
    let mut c = Cluster::start_with(BIN, 1, "datacenter = \"east\"");
    c.wait_leader(WAIT);
    let s = c.client(0);
    assert_eq!(s.get("/v1/catalog/datacenters").json(), json!(["east"]));
    for path in [
        "/v1/catalog/nodes?dc=east",
        "/v1/catalog/nodes?dc=EAST",
        "/v1/catalog/nodes?dc=",
        "/v1/kv/a?dc=east",
        "/v1/status/leader?dc=east",
    ] {
        let r = s.get(path);
        assert!(r.status == 200 || r.status == 404, "{path}: {}", r.status);
    }
    for path in [
        "/v1/catalog/nodes?dc=dc1",
        "/v1/kv/a?dc=west",
        "/v1/status/leader?dc=dc1",
        "/v1/operator/raft/configuration?dc=west",
        "/v1/agent/members?dc=west",
    ] {
        let r = s.get(path);
        assert_eq!(
            (r.status, r.text().trim()),
            (500, "No path to datacenter"),
            "{path}"
        );
    }
    let r = s.put("/v1/kv/a?dc=west", "x");
    assert_eq!(
        r.status, 500,
        "a write to another datacenter is not carried out"
    );
    assert_eq!(s.get("/v1/kv/a").status, 404);

    let members = s.get("/v1/agent/members").json();
    assert_eq!(members[0]["Tags"]["dc"], "east");
    assert_eq!(members[0]["Name"], "s1");
    let wan = s.get("/v1/agent/members?wan=1").json();
    assert_eq!(wan[0]["Name"], "s1.east");
    let me = s.get("/v1/agent/self").json();
    assert_eq!(me["Config"]["Datacenter"], "east");
    assert_eq!(me["Member"]["Tags"]["dc"], "east");
    // The one node is the server itself, which the leader registers.
    c.wait_servers_registered(WAIT);
    let usage = s.get("/v1/operator/usage").json();
    assert_eq!(usage["Usage"]["east"]["Nodes"], 1, "{usage}");
}

#[test]
fn agent_and_operator_answers_in_consuls_shapes() {
    let c = one_server();
    let s = c.client(0);

    // Autopilot health: 429 with Consul's body until judged (never a 500), then 200.
    wait_for("autopilot to judge the server healthy", WAIT, || {
        let r = s.get("/v1/operator/autopilot/health");
        let v = r.json();
        assert!(
            r.status == 200 || r.status == 429,
            "{} {}",
            r.status,
            r.text()
        );
        assert_eq!(v["Healthy"], r.status == 200, "{v}");
        (r.status == 200).then_some(())
    });

    let me = s.get("/v1/agent/self").json();
    let members = s.get("/v1/agent/members").json();
    assert_eq!(
        me["Member"], members[0],
        "Member is this server's members entry"
    );
    let leader = s.get("/v1/status/leader").json();
    assert_eq!(me["Stats"]["consul"]["leader_addr"], leader);
    assert_eq!(me["Stats"]["consul"]["leader"], "true");
    for (field, want) in [
        ("Datacenter", json!("dc1")),
        ("NodeName", json!("s1")),
        ("Server", json!(true)),
    ] {
        assert_eq!(me["Config"][field], want, "Config.{field}");
    }
    for field in ["NodeID", "Revision", "Version"] {
        assert!(me["Config"][field].is_string(), "Config.{field}: {me}");
    }
    assert!(me["Stats"]["raft"]["applied_index"].is_u64(), "{me}");
    assert!(me["Meta"].is_object(), "{me}");

    let r = s.delete("/v1/operator/raft/peer?address=10.9.9.9:8300");
    assert_eq!(
        (r.status, r.text().trim()),
        (
            500,
            "address \"10.9.9.9:8300\" was not found in the Raft configuration"
        )
    );
    assert_eq!(s.delete("/v1/operator/raft/peer").status, 400);

    for method in ["GET", "POST", "PUT", "DELETE"] {
        let r = s.request(
            method,
            "/v1/operator/keyring",
            "application/json",
            br#"{"Key":"x"}"#,
        );
        let want = if method == "GET" {
            "s1: Keyring is empty (encryption not enabled)"
        } else {
            "s1: No keyring to modify (encryption not enabled)"
        };
        assert_eq!(r.status, 500, "{method}");
        assert!(r.text().contains(want), "{method}: {}", r.text());
        assert!(
            r.text()
                .contains("dc1 (LAN) error: 1/1 nodes reported failure")
        );
    }

    assert_eq!(s.put("/v1/catalog/register", GO_REGISTER).status, 200);
    let gw = r#"{"Node":"n2","Address":"10.0.0.2","Service":{"Kind":"mesh-gateway","Service":"gw","Port":443}}"#;
    assert_eq!(s.put("/v1/catalog/register", gw).status, 200);
    for path in [
        "/v1/catalog/connect/web",
        "/v1/catalog/gateway-services/gw",
        "/v1/health/connect/web",
        "/v1/health/ingress/web",
    ] {
        let r = s.get(path);
        assert_eq!((r.status, r.json()), (200, json!([])), "{path}");
        assert!(r.index() >= 2, "{path}: X-Consul-Index {}", r.index());
    }
    let r = s.get("/v1/catalog/connect/");
    assert_eq!(r.status, 400, "{}", r.text());

    // With the server's own node and `consul` service, which are not billable.
    let mut c = c;
    c.wait_servers_registered(WAIT);
    let usage = s.get("/v1/operator/usage").json();
    let dc1 = &usage["Usage"]["dc1"];
    assert_eq!(dc1["Nodes"], 3, "{usage}");
    assert_eq!(dc1["Services"], 3, "{usage}");
    assert_eq!(dc1["ServiceInstances"], 3, "{usage}");
    assert_eq!(dc1["BillableServiceInstances"], 1, "{usage}");
    assert_eq!(dc1["ConnectServiceInstances"]["mesh-gateway"], 1, "{usage}");
    assert_eq!(
        dc1["ConnectServiceInstances"]["connect-proxy"], 0,
        "{usage}"
    );
}

#[test]
fn autopilot_health_is_consuls_429_until_autopilot_has_judged() {
    // With an update interval of an hour autopilot does not judge the servers in this
    // test's lifetime: Consul's answer then is its empty reply, unhealthy, with 429.
    let mut c = Cluster::start_with(BIN, 1, "[autopilot]\nupdate_interval = \"1h\"");
    c.wait_leader(WAIT);
    let s = c.client(0);
    let r = s.get("/v1/operator/autopilot/health");
    assert_eq!(
        (r.status, r.json()),
        (
            429,
            json!({"Healthy": false, "FailureTolerance": 0, "Servers": null})
        ),
        "{}",
        r.text()
    );
    // The state document has nothing to show yet: that is a 503 naming why.
    let r = s.get("/v1/operator/autopilot/state");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("has not judged the servers yet"),
        "{}",
        r.text()
    );
}
