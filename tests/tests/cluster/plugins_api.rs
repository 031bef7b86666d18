//! The loaded plugins as operators see them: `GET /v1/plugins`, `fsmhost plugin list`, and
//! `fsmhost version`, on a real server process.

use crate::support::{BIN, agent_refuses, cli, write_file};
use fsmhost_tests::cluster::{Cluster, free_port};
use serde_json::json;
use std::time::Duration;

#[test]
fn plugins_endpoint_list_and_version() {
    let mut c = Cluster::start(BIN, 1);
    let leader = c.wait_leader(Duration::from_secs(30));
    let addr = c.servers[leader].http_addr();

    let r = c.client(leader).get("/v1/plugins");
    assert_eq!(r.status, 200);
    assert!(r.header("x-consul-index").is_some());
    let v = r.json();
    let kv = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["Name"] == "kv")
        .unwrap();
    assert_eq!(kv["Edition"], "oss");
    assert_eq!(kv["Hash"].as_str().unwrap().len(), 64);
    let tables: Vec<&str> = kv["Tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tables,
        ["kvs", "tombstones", "lock_delays", "tombstone_marks"]
    );
    let id = &kv["Tables"][0]["Indexes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["Name"] == "id")
        .unwrap()
        .clone();
    assert_eq!(id["Unique"], true);
    assert_eq!(id["Prefix"], true);
    for cmd in ["set", "cas", "delete", "delete-tree"] {
        assert!(
            kv["Commands"].as_array().unwrap().iter().any(|c| c == cmd),
            "{cmd}"
        );
    }
    assert!(kv["Queries"].as_array().unwrap().iter().any(|q| q == "get"));

    let (code, out, err) = cli(&["plugin", "list", "--http-addr", &addr]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        head,
        [
            "Name", "Version", "Edition", "Hash", "Tables", "Commands", "Queries"
        ]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let catalog = rows
        .iter()
        .find(|r| r[0] == "catalog")
        .expect("a catalog row");
    assert_eq!(
        catalog[4],
        "nodes,services,checks,sessions,session_checks,session_ttls,check_ttls"
    );
    let row = rows.iter().find(|r| r[0] == "kv").expect("a kv row");
    assert_eq!(&row[..3], ["kv", kv["Version"].as_str().unwrap(), "oss"]);
    assert_eq!(row[3], &kv["Hash"].as_str().unwrap()[..12]);
    assert_eq!(row[4], "kvs,tombstones,lock_delays,tombstone_marks");

    // A server that does not answer: one line, exit 1.
    let dead = format!("127.0.0.1:{}", free_port());
    let (code, out, err) = cli(&["plugin", "list", "--http-addr", &dead]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&dead), "{err}");

    let (code, out, _) = cli(&["version"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!(
            "fsmhost v{}\nPlugin contract: fsmhost:plugin@{}\n",
            env!("CARGO_PKG_VERSION"),
            fsmhost::plugin::CONTRACT_VERSION
        )
    );
    // Into a pipe closed after the first line: ends quietly, no panic on the write.
    let (code, out, err) = crate::support::run(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{BIN} plugin bundled | head -1")),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("plugin "), "{out}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Runs an agent with `extra` in its config that must refuse to start; returns its stderr.
fn refused_with(dir: &std::path::Path, extra: &str) -> String {
    let config = dir.join("refused.toml");
    std::fs::write(
        &config,
        format!(
            "node_name = \"x\"\ndata_dir = {:?}\nbootstrap_expect = 1\nbind_addr = \"127.0.0.1\"\n{extra}\n[ports]\nserver = {}\nhttp = {}\n",
            dir.join("refused-data").display().to_string(),
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    agent_refuses(&config)
}

#[test]
fn plugins_from_files_replace_the_bundled_set() {
    let files = tempfile::tempdir().unwrap();
    let kv = write_file(files.path(), "kv.wasm", fsmhost_tests::bundled("kv"));
    let users = write_file(
        files.path(),
        "users.wasm",
        fsmhost_tests::fixture("users-plugin"),
    );
    // Its own compiled-plugin cache, to see what a server puts there.
    let cache = files.path().join("cache");
    let mut c = Cluster::start_with(
        BIN,
        1,
        &format!(
            "plugins = [{kv:?}, {users:?}]\nplugin_cache_dir = {:?}\n\
             [plugin_limits]\nfuel = 50000000",
            cache.display().to_string()
        ),
    );
    let leader = c.wait_leader(Duration::from_secs(30));
    let a = c.client(leader);
    let v = a.get("/v1/plugins").json();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kv", "users"]);

    // The user's plugin serves its commands and queries through the generic API.
    let r = a.apply(
        "users",
        "register",
        &json!({"name": "ann", "email": "Ann@Example.com", "groups": ["ops"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!(true));
    let r = a.query("users", "by-group", &json!("ops"), "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()[0]["name"], "ann");

    // Compiled artifacts are cached in `plugin_cache_dir`, so a restart does not compile
    // again.
    let cached = std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    assert!(cached >= 2, "{} holds {cached} artifacts", cache.display());
    c.kill(leader);
    c.restart(leader);
    c.wait_leader(Duration::from_secs(30));
    c.wait_converged_past(1, Duration::from_secs(30));
    let log = c.log_text(leader);
    assert!(
        log.contains("loaded plugin: name=users version=0.1.0"),
        "{log}"
    );
    // A plugin's own log lines are tagged with its name, in Consul's shape.
    assert!(
        log.contains("[INFO]  agent.plugin.users: registered user ann"),
        "{log}"
    );

    // Files that cannot be plugins are refused at start, by name.
    let err = refused_with(files.path(), "plugins = [\"/nonexistent/x.wasm\"]");
    assert!(err.contains("/nonexistent/x.wasm"), "{err}");
    let wasi = write_file(
        files.path(),
        "wasi.wasm",
        fsmhost_tests::fixture("wasi-import"),
    );
    let err = refused_with(files.path(), &format!("plugins = [{wasi:?}]"));
    assert!(err.contains("wasi:cli/environment"), "{err}");
    let err = refused_with(files.path(), "[plugin_limits]\nfuel = 1");
    assert!(err.contains("plugin_limits.fuel"), "{err}");

    // `plugin inspect FILE`: the description, routes and imports, with no server.
    let (code, out, err) = cli(&["plugin", "inspect", &kv]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("plugin kv "), "{out}");
    assert!(
        out.contains("  routes: GET /v1/kv/*, PUT /v1/kv/*, DELETE /v1/kv/*, PUT /v1/txn"),
        "{out}"
    );
    assert!(
        out.contains(
            format!("fsmhost:plugin/state@{}", fsmhost::plugin::CONTRACT_VERSION).as_str()
        ),
        "{out}"
    );
    let (code, _, err) = cli(&["plugin", "inspect", &wasi]);
    assert_eq!(code, 1);
    assert!(err.contains("wasi:cli/environment"), "{err}");
}
