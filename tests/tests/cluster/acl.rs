//! Consul's ACL system on real processes (issue "Security", item 3): with
//! `default_policy = "deny"` every endpoint family refuses an anonymous request and serves
//! a token whose rules allow it; lists are filtered; tokens come from the header, a bearer
//! token or `?token=`; ACL state goes through the log to every server; a secret never
//! reaches a log. The server port is mutual TLS, as ACLs require.

use fsmhost_tests::client::Client;
use fsmhost_tests::cluster::Cluster;
use fsmhost_tests::pki::Pki;
use serde_json::{Value, json};
use std::time::Duration;

use crate::support::{BIN, cli, wait_until};

const ROOT: &str = "8d2a7e1c-0000-4000-8000-00000000r00t";

/// Mutual TLS on the server port and ACLs denying by default, with `ROOT` as the
/// initial management token.
fn secure(dir: &std::path::Path) -> String {
    let pki = Pki::new(dir, "cluster");
    let server = pki.issue("server", &["server.dc1.consul", "localhost", "127.0.0.1"]);
    format!(
        "[tls.defaults]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n\
         [tls.internal_rpc]\nverify_server_hostname = true\n\
         [acl]\nenabled = true\ndefault_policy = \"deny\"\n\
         [acl.tokens]\ninitial_management = {ROOT:?}\n",
        pki.ca_file().display().to_string(),
        server.cert.display().to_string(),
        server.key.display().to_string(),
    )
}

/// Waits until the leader has stored the initial management token (`ROOT`).
fn wait_for_root(c: &Cluster, leader: usize) {
    wait_until(
        "the initial management token is stored",
        Duration::from_secs(20),
        || c.client(leader).get("/v1/acl/token/self").status == 200,
    );
}

/// The anonymous client of server `i` (the harness's own clients send `ROOT`).
fn anonymous(c: &Cluster, i: usize) -> Client {
    Client::new(c.servers[i].http_addr())
}

#[test]
fn acls_deny_anonymous_requests_and_serve_what_a_token_allows() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start_with(BIN, 3, &secure(dir.path()));
    c.token = Some(ROOT.to_string());
    let leader = c.wait_leader(Duration::from_secs(60));
    let root = c.client(leader);
    wait_for_root(&c, leader);
    assert_eq!(root.put("/v1/kv/app/a", "1").text(), "true");
    assert_eq!(root.put("/v1/kv/secret/b", "2").text(), "true");
    let reg = json!({"Node": "n1", "Address": "10.0.0.1",
        "Service": {"Service": "web", "Port": 80}})
    .to_string();
    assert_eq!(root.put("/v1/catalog/register", &reg).status, 200);
    let reg2 = json!({"Node": "n2", "Address": "10.0.0.2",
        "Service": {"Service": "db", "Port": 5432}})
    .to_string();
    assert_eq!(root.put("/v1/catalog/register", &reg2).status, 200);

    // Anonymous: refused on every endpoint family (lists come back filtered to nothing);
    // the status endpoints stay open, as in Consul.
    let anon = anonymous(&c, leader);
    let refused: &[(&str, &str, &str)] = &[
        ("GET", "/v1/kv/app/a", ""),
        ("PUT", "/v1/kv/app/a", "x"),
        ("DELETE", "/v1/kv/app/a", ""),
        ("PUT", "/v1/catalog/register", &reg),
        ("GET", "/v1/snapshot", ""),
        ("PUT", "/v1/snapshot", "x"),
        ("GET", "/v1/operator/raft/configuration", ""),
        ("GET", "/v1/operator/autopilot/configuration", ""),
        ("PUT", "/v1/operator/autopilot/configuration", "{}"),
        ("DELETE", "/v1/operator/raft/peer?id=0000000000000001", ""),
        ("GET", "/v1/plugins", ""),
        ("PUT", "/v1/plugins", "x"),
        ("GET", "/v1/agent/self", ""),
        ("GET", "/v1/agent/members", ""),
        ("GET", "/v1/agent/metrics", ""),
        ("PUT", "/v1/agent/leave", ""),
        ("GET", "/v1/acl/tokens", ""),
        ("PUT", "/v1/acl/policy", "{\"Name\":\"x\"}"),
        ("GET", "/v1/query/kv/get", ""),
    ];
    for (method, path, body) in refused {
        let r = anon.request(method, path, "application/json", body);
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
        assert!(
            r.text().contains("Permission denied"),
            "{method} {path}: {}",
            r.text()
        );
    }
    let r = anon.request("POST", "/v1/apply/kv/set", "application/json", "{}");
    assert_eq!(r.status, 403, "{}", r.text());
    let list = anon.get("/v1/kv/?recurse");
    assert_eq!(list.status, 404, "{}", list.text());
    assert_eq!(
        list.header("X-Consul-Results-Filtered-By-ACLs"),
        Some("true")
    );
    let nodes = anon.get("/v1/catalog/nodes");
    assert_eq!((nodes.status, nodes.json()), (200, json!([])));
    assert_eq!(
        nodes.header("X-Consul-Results-Filtered-By-ACLs"),
        Some("true")
    );
    let txn = r#"[{"KV":{"Verb":"get","Key":"app/a"}}]"#;
    let r = anon.put("/v1/txn", txn);
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["Errors"][0]["What"], "Permission denied");
    assert_eq!(anon.get("/v1/status/leader").status, 200);
    // A secret no token has: Consul's "ACL not found".
    let bogus = anonymous(&c, leader).with_token(Some("not-a-token"));
    let r = bogus.get("/v1/kv/app/a");
    assert_eq!((r.status, r.text().trim()), (403, "ACL not found"));

    // A policy and a token made with the CLI (Consul's commands), used from a follower.
    let http = c.servers[leader].http_addr();
    let rules = "key_prefix \"app/\" { policy = \"write\" }\n\
                 node \"n1\" { policy = \"write\" }\nnode_prefix \"\" { policy = \"read\" }\n\
                 service \"web\" { policy = \"write\" }\nagent_prefix \"\" { policy = \"read\" }\n\
                 operator = \"read\"";
    let (code, out, err) = cli(&[
        "acl",
        "policy",
        "create",
        "-http-addr",
        &http,
        "-token",
        ROOT,
        "-name",
        "app",
        "-rules",
        rules,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(&[
        "acl",
        "token",
        "create",
        "-http-addr",
        &http,
        "-token",
        ROOT,
        "-policy-name",
        "app",
        "-description",
        "app token",
        "-format",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let token: Value = serde_json::from_str(&out).expect("the token as JSON");
    let secret = token["SecretID"].as_str().expect("a SecretID").to_string();
    assert_eq!(token["Policies"][0]["Name"], "app");
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let app = anonymous(&c, follower).with_token(Some(&secret));
    wait_until(
        "the token reaches the follower",
        Duration::from_secs(10),
        || app.get("/v1/acl/token/self").status == 200,
    );
    assert_eq!(app.put("/v1/kv/app/c", "3").text(), "true");
    let denied = app.put("/v1/kv/secret/c", "3");
    assert_eq!(denied.status, 403);
    let accessor = token["AccessorID"].as_str().unwrap();
    assert!(
        denied.text().contains(accessor) && denied.text().contains("key:write"),
        "{}",
        denied.text()
    );
    let list = app.get("/v1/kv/?recurse");
    let keys: Vec<Value> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].clone())
        .collect();
    assert_eq!(keys, [json!("app/a"), json!("app/c")]);
    assert_eq!(
        list.header("X-Consul-Results-Filtered-By-ACLs"),
        Some("true")
    );
    assert_eq!(app.get("/v1/kv/app/a?raw").text(), "1");
    assert_eq!(app.get("/v1/kv/secret/b").status, 403);
    // Catalog: node read everywhere, service read only where granted (write implies it).
    let services = app.get("/v1/catalog/services").json();
    assert_eq!(services, json!({"web": []}), "db is filtered out");
    assert_eq!(app.put("/v1/catalog/register", &reg).status, 200);
    assert_eq!(app.put("/v1/catalog/register", &reg2).status, 403);
    assert_eq!(app.get("/v1/operator/raft/configuration").status, 200);
    assert_eq!(
        app.put("/v1/operator/autopilot/configuration", "{}").status,
        403
    );
    assert_eq!(app.get("/v1/agent/self").status, 200);
    assert_eq!(app.get("/v1/snapshot").status, 403);
    assert_eq!(app.get("/v1/acl/tokens").status, 403);
    // The same token as a bearer token and as ?token=.
    let bearer = anonymous(&c, follower).with_header("Authorization", &format!("Bearer {secret}"));
    assert_eq!(bearer.get("/v1/kv/app/a?raw").text(), "1");
    assert_eq!(
        anonymous(&c, follower)
            .get(&format!("/v1/kv/app/a?raw&token={secret}"))
            .text(),
        "1"
    );

    // The management token lists tokens with secrets; deleting the token ends its access.
    let tokens = root.get("/v1/acl/tokens").json();
    assert!(
        tokens
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["SecretID"] == secret)
    );
    assert_eq!(
        root.delete(&format!("/v1/acl/token/{accessor}")).status,
        200
    );
    wait_until(
        "the deleted token stops working",
        Duration::from_secs(10),
        || app.get("/v1/kv/app/a").status == 403,
    );
    // Bootstrap works once (the initial management token does not count), then never.
    let first = anon.put("/v1/acl/bootstrap", "");
    assert_eq!(first.status, 200, "{}", first.text());
    let again = anon.put("/v1/acl/bootstrap", "");
    assert_eq!(again.status, 403, "{}", again.text());
    assert!(
        again.text().contains("ACL bootstrap no longer allowed"),
        "{}",
        again.text()
    );

    // No secret in any server's log.
    c.wait_converged(Duration::from_secs(30));
    for i in 0..3 {
        let log = c.log_text(i);
        assert!(
            !log.contains(&secret) && !log.contains(ROOT),
            "a secret in s{}'s log",
            i + 1
        );
    }
}

#[test]
fn acls_need_mutual_tls_on_the_server_port() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("acl.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nserver = true\nbootstrap_expect = 1\n[acl]\nenabled = true\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let err = crate::support::agent_refuses(&config);
    assert!(
        err.contains("acl.enabled") && err.contains("tls.internal_rpc"),
        "{err}"
    );
}

#[test]
fn py_consul_over_https_with_a_ca_file_and_tokens() {
    let py = fsmhost_tests::py_consul::PyConsul::install(std::path::Path::new(env!(
        "CARGO_TARGET_TMPDIR"
    )))
    .unwrap_or_else(|e| panic!("installing py-consul: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let extra = secure(dir.path());
    let mut c = Cluster::start_https(BIN, 1, &extra);
    c.token = Some(ROOT.to_string());
    let leader = c.wait_leader(Duration::from_secs(60));
    wait_for_root(&c, leader);
    let https = format!("127.0.0.1:{}", c.servers[leader].https_port);
    let ca = dir.path().join("cluster-ca.pem");
    let out = py
        .run_script_with("secure.py", &[&https, ca.to_str().unwrap(), ROOT])
        .unwrap_or_else(|e| panic!("{e}\n--- server log\n{}", c.log_tail(leader, 40)));
    assert_eq!(out.trim(), "ok");
}

/// The enterprise editions: a policy's `namespace` block grants in that namespace only,
/// for the routes' checks and for the lists' filters alike.
#[test]
fn enterprise_namespace_rules_scope_what_a_token_may_do() {
    let dir = tempfile::tempdir().unwrap();
    let kv = crate::support::write_file(
        dir.path(),
        "kv.wasm",
        fsmhost_tests::fixture("kv-enterprise"),
    );
    let extra = format!("plugins = [{kv:?}]\n{}", secure(dir.path()));
    let mut c = Cluster::start_with(BIN, 1, &extra);
    c.token = Some(ROOT.to_string());
    let leader = c.wait_leader(Duration::from_secs(60));
    let root = c.client(leader);
    wait_for_root(&c, leader);
    let rules = "namespace \"team\" {\n  key_prefix \"\" { policy = \"write\" }\n}";
    let policy = json!({"Name": "team", "Rules": rules}).to_string();
    assert_eq!(root.put("/v1/acl/policy", &policy).status, 200);
    let token = json!({"Policies": [{"Name": "team"}]}).to_string();
    let made = root.put("/v1/acl/token", &token);
    assert_eq!(made.status, 200, "{}", made.text());
    let secret = made.json()["SecretID"].as_str().unwrap().to_string();
    assert_eq!(root.put("/v1/kv/shared?ns=default", "d").status, 200);

    let team = anonymous(&c, leader).with_token(Some(&secret));
    assert_eq!(team.put("/v1/kv/a?ns=team", "1").text(), "true");
    assert_eq!(team.get("/v1/kv/a?ns=team&raw").text(), "1");
    let denied = team.put("/v1/kv/a?ns=default", "1");
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_eq!(team.get("/v1/kv/shared?ns=default").status, 403);
    // A list in the default namespace shows nothing of it; in its own, everything.
    let other = team.get("/v1/kv/?recurse&ns=default");
    assert_eq!(other.status, 404, "{}", other.text());
    assert_eq!(
        other.header("X-Consul-Results-Filtered-By-ACLs"),
        Some("true")
    );
    let own = team.get("/v1/kv/?recurse&ns=team");
    assert_eq!(own.status, 200, "{}", own.text());
    assert_eq!(own.json().as_array().map(Vec::len), Some(1));
}
