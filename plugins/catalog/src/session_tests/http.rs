//! Sessions through Consul's HTTP API: defaults, bodies as clients send them, every
//! refusal's text, the reads, ACLs, and the enterprise edition's namespaces.

use super::*;

/// A session's JSON with the enterprise edition's `Namespace` and `Partition`.
fn with_home(mut v: Value) -> Value {
    if EDITION == fsmhost_guest::Edition::Enterprise {
        v["Namespace"] = json!("default");
        v["Partition"] = json!("default");
    }
    v
}

#[test]
fn create_over_http_takes_consuls_defaults() {
    let mut h = h();
    register_node(&mut h, "n1");
    let (status, out) = call(&mut h, "PUT", "/v1/session/create", "");
    assert_eq!(status, 200, "{out}");
    let id = out["ID"].as_str().expect("an ID").to_string();
    assert!(is_uuid(&id), "{id}");
    let (status, info) = call(&mut h, "GET", &format!("/v1/session/info/{id}"), "");
    assert_eq!(status, 200);
    assert_eq!(
        info,
        json!([with_home(json!({
            "ID": id, "Name": "", "Node": "n1", "LockDelay": 15_000_000_000u64,
            "Behavior": "release", "TTL": "", "NodeChecks": ["serfHealth"],
            "ServiceChecks": null, "CreateIndex": 2, "ModifyIndex": 2
        }))])
    );
    let rows: Vec<SessionCheck> = SESSION_CHECKS_SESSION
        .iter(h.store(), &(home(), id.clone()))
        .collect::<Result<_, _>>()
        .expect("session_checks");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].node.as_str(), rows[0].check_id.as_str()),
        ("n1", SERF_CHECK)
    );
}

#[test]
fn create_bodies_as_consuls_clients_send_them() {
    let mut h = h();
    register_node(&mut h, "n1");
    register_node(&mut h, "n2");
    for (body, lock_delay, node, node_checks, service_checks) in [
        (
            r#"{"LockDelay": "20s"}"#,
            20_000_000_000u64,
            "n1",
            json!(["serfHealth"]),
            Value::Null,
        ),
        (
            r#"{"LockDelay": 5}"#,
            5_000_000_000,
            "n1",
            json!(["serfHealth"]),
            Value::Null,
        ),
        (
            r#"{"LockDelay": 2000000000}"#,
            2_000_000_000,
            "n1",
            json!(["serfHealth"]),
            Value::Null,
        ),
        (
            r#"{"LockDelay": "10ns"}"#,
            10_000_000_000,
            "n1",
            json!(["serfHealth"]),
            Value::Null,
        ),
        (
            r#"{"Checks": []}"#,
            15_000_000_000,
            "n1",
            Value::Null,
            Value::Null,
        ),
        (
            r#"{"NodeChecks": null, "Checks": null}"#,
            15_000_000_000,
            "n1",
            json!(["serfHealth"]),
            Value::Null,
        ),
        (
            r#"{"Node": "n2", "NodeChecks": [], "ServiceChecks": [{"ID": "web-ok"}]}"#,
            15_000_000_000,
            "n2",
            Value::Null,
            json!([{"ID": "web-ok", "Namespace": home().namespace}]),
        ),
        // py-consul's session.create: lower-case keys.
        (
            r#"{"name": "lock", "node": "n2", "checks": ["serfHealth", "web-ok"],
                "lockdelay": "1s", "behavior": "delete", "ttl": "30s"}"#,
            1_000_000_000,
            "n2",
            json!(["serfHealth", "web-ok"]),
            Value::Null,
        ),
    ] {
        let (status, out) = call(&mut h, "PUT", "/v1/session/create", body);
        assert_eq!(status, 200, "{body}: {out}");
        let id = out["ID"].as_str().expect("an ID");
        let (_, info) = call(&mut h, "GET", &format!("/v1/session/info/{id}"), "");
        let s = &info[0];
        assert_eq!(s["LockDelay"], lock_delay, "{body}");
        assert_eq!(s["Node"], node, "{body}");
        assert_eq!(s["NodeChecks"], node_checks, "{body}");
        assert_eq!(s["ServiceChecks"], service_checks, "{body}");
    }
    let last = sessions(&h)
        .into_iter()
        .find(|s| s.name == "lock")
        .expect("py-consul's session");
    assert_eq!(
        (last.behavior.as_str(), last.ttl.as_str()),
        ("delete", "30s")
    );
}

#[test]
fn every_refusal_has_consuls_text() {
    let mut h = h();
    register_node(&mut h, "n1");
    assert!(set_check(&mut h, "n1", check("down", "", "critical")).expect("critical check"));
    for (body, status, says) in [
        (
            r#"{"Behavior": "bogus"}"#,
            500,
            "Invalid Behavior setting 'bogus'",
        ),
        (
            r#"{"TTL": "5s"}"#,
            500,
            "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]",
        ),
        (
            r#"{"TTL": "25h"}"#,
            500,
            "Invalid Session TTL '90000000000000', must be between [10s=24h0m0s]",
        ),
        (
            r#"{"TTL": "abc"}"#,
            500,
            "Session TTL 'abc' invalid: time: invalid duration \"abc\"",
        ),
        (
            r#"{"LockDelay": "abc"}"#,
            400,
            "Request decode failed: time: invalid duration \"abc\"",
        ),
        (
            r#"{"LockDelay": true}"#,
            400,
            "Request decode failed: json: cannot unmarshal bool",
        ),
        (
            r#"{"LockDelay": -5}"#,
            400,
            "Request decode failed: LockDelay -5 is negative",
        ),
        ("{", 400, "Request decode failed"),
        (r#"{"Node": "nobody"}"#, 500, "Missing node registration"),
        (
            r#"{"Checks": ["nope"]}"#,
            500,
            "Missing check 'nope' registration",
        ),
        (
            r#"{"ServiceChecks": [{"ID": "nope"}]}"#,
            500,
            "Missing check 'nope' registration",
        ),
        (
            r#"{"Checks": ["down"]}"#,
            500,
            "Check 'down' is in critical state",
        ),
    ] {
        let (s, out) = call(&mut h, "PUT", "/v1/session/create", body);
        assert_eq!(s, status, "{body}: {out}");
        let text = out.as_str().unwrap_or_default();
        assert!(text.starts_with(says), "{body}: {text}");
    }
    for ttl in ["", "0s", "10s", "24h"] {
        let body = format!(r#"{{"TTL": "{ttl}"}}"#);
        assert_eq!(
            call(&mut h, "PUT", "/v1/session/create", &body).0,
            200,
            "{ttl}"
        );
    }
    // Without a node in the body or a serving node.
    let r = h.http(Request::new("PUT", "/v1/session/create"));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (500, &b"Must provide Node"[..])
    );
    // The command refuses what the router does (for /v1/apply).
    let e = h
        .run(
            &SESSION_CREATE,
            &SessionCreateRequest {
                behavior: "bogus".into(),
                ..create("n1")
            },
        )
        .expect_err("bad behavior");
    assert_eq!(e.message, "Invalid Behavior setting 'bogus'");
    let e = h
        .run(&SESSION_CREATE, &SessionCreateRequest::default())
        .expect_err("no node");
    assert_eq!(e.message, "Must provide Node");
    assert_eq!(sessions(&h).len(), 4, "only the good TTLs made sessions");
}

#[test]
fn renew_node_and_list_reads() {
    let mut h = h();
    register_node(&mut h, "n1");
    register_node(&mut h, "n2");
    let a = h.run(&SESSION_CREATE, &create("n1")).expect("create");
    let b = h.run(&SESSION_CREATE, &create("n2")).expect("create");
    let (status, renewed) = call(&mut h, "PUT", &format!("/v1/session/renew/{a}"), "");
    assert_eq!(status, 200);
    assert_eq!(renewed[0]["ID"], a.as_str());
    assert_eq!(
        call(&mut h, "PUT", "/v1/session/renew/nope", ""),
        (404, json!("Session id 'nope' not found"))
    );
    let (_, n1) = call(&mut h, "GET", "/v1/session/node/n1", "");
    assert_eq!(n1.as_array().map(Vec::len), Some(1));
    assert_eq!(n1[0]["ID"], a.as_str());
    assert_eq!(call(&mut h, "GET", "/v1/session/node/n3", "").1, json!([]));
    let (_, all) = call(&mut h, "GET", "/v1/session/list", "");
    let mut ids: Vec<&str> = all
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| s["ID"].as_str())
        .collect();
    ids.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(
        call(&mut h, "GET", "/v1/session/node/", ""),
        (400, json!("Missing node name"))
    );
    assert_eq!(
        call(&mut h, "GET", "/v1/session/info/", ""),
        (400, json!("Missing session"))
    );
    assert_eq!(call(&mut h, "GET", "/v1/session/elsewhere", "").0, 404);
}

#[test]
fn acls_need_session_write_and_filter_reads() {
    use fsmhost_guest::acl::{Access, Resource};
    let mut h = h();
    register_node(&mut h, "n1");
    register_node(&mut h, "n2");
    let a = h.run(&SESSION_CREATE, &create("n1")).expect("create");
    h.run(&SESSION_CREATE, &create("n2")).expect("create");
    // session "n1" { policy = "write" }, nothing else.
    let only_n1 = |r: Resource, seg: &str, acc: Access| {
        r == Resource::Session && seg == "n1" && acc <= Access::Write
    };
    let req = |method: &str, path: &str| {
        let mut r = Request::new(method, path);
        r.node = "n1".into();
        r
    };
    let r = h.http_as(req("GET", "/v1/session/list"), only_n1);
    let list: Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["ID"], a.as_str());
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "X-Consul-Results-Filtered-By-ACLs" && v == "true")
    );
    assert_eq!(
        h.http_as(req("PUT", "/v1/session/create"), only_n1).status,
        200
    );
    let other = req("PUT", "/v1/session/create").body(br#"{"Node": "n2"}"#.to_vec());
    assert_eq!(h.http_as(other, only_n1).status, 403);
    // Destroying and renewing need write on every node's sessions.
    let destroy = req("PUT", &format!("/v1/session/destroy/{a}"));
    assert_eq!(h.http_as(destroy, only_n1).status, 403);
    let renew = req("PUT", &format!("/v1/session/renew/{a}"));
    assert_eq!(h.http_as(renew, only_n1).status, 403);
    let all = |r: Resource, _: &str, _: Access| r == Resource::Session;
    let destroy = req("PUT", &format!("/v1/session/destroy/{a}"));
    assert_eq!(h.http_as(destroy, all).status, 200);
}

#[cfg(not(feature = "enterprise"))]
#[test]
fn oss_refuses_namespaces() {
    let mut h = h();
    register_node(&mut h, "n1");
    let r = h.http(Request::new("GET", "/v1/session/list").param("ns", "team"));
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("Namespaces are a Consul Enterprise"));
}

#[cfg(feature = "enterprise")]
#[test]
fn enterprise_sessions_live_in_a_namespace() {
    let mut h = h();
    register_node(&mut h, "n1");
    let mut req = Request::new("PUT", "/v1/session/create")
        .param("ns", "team")
        .body(br#"{"Node": "n1"}"#.to_vec());
    req.node = "n1".into();
    let r = h.http(req);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let out: Value = serde_json::from_slice(&r.body).expect("json");
    let id = out["ID"].as_str().expect("ID").to_string();
    let list = |h: &mut Harness, ns: &str| -> Value {
        let r = h.http(Request::new("GET", "/v1/session/list").param("ns", ns));
        serde_json::from_slice(&r.body).expect("json")
    };
    let team = list(&mut h, "team");
    assert_eq!(team[0]["ID"], id.as_str());
    assert_eq!(team[0]["Namespace"], "team");
    assert_eq!(team[0]["Partition"], "default");
    assert_eq!(list(&mut h, "default"), json!([]));
    // Its node check is found in the default namespace; the node's deregistration ends it.
    let req = DeregisterRequest {
        node: "n1".into(),
        ..Default::default()
    };
    h.run(&DEREGISTER, &req).expect("deregister");
    assert_eq!(list(&mut h, "team"), json!([]));
    let r = released(&h);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].tenancy.namespace, "team");
}
