//! Editions: the same built binary runs the OSS plugin set and the enterprise one (kv and
//! catalog built from the same source with the `enterprise` feature), given as files. The
//! schemas differ in `GET /v1/plugins`, enterprise namespaces isolate keys and services,
//! OSS refuses `?ns=` as Consul CE does, and an enterprise snapshot restored onto OSS
//! plugins is refused naming the table and index that differ.

use fsmhost_tests::cluster::Cluster;
use fsmhost_tests::{bundled, call, fixture, run_cli};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_fsmhost-node");
const WAIT: Duration = Duration::from_secs(30);

/// Writes the components to `dir` and returns the `plugins = [...]` config line.
fn plugin_files(dir: &Path, components: &[(&str, &[u8])]) -> String {
    std::fs::create_dir_all(dir).expect("plugin directory");
    let paths: Vec<String> = components
        .iter()
        .map(|(name, bytes)| {
            let p: PathBuf = dir.join(format!("{name}.wasm"));
            std::fs::write(&p, bytes).expect("component written");
            format!("{:?}", p.display().to_string())
        })
        .collect();
    format!("plugins = [{}]", paths.join(", "))
}

fn start(line: &str) -> Cluster {
    let mut c = Cluster::start_with(BIN, 1, line);
    c.wait_leader(WAIT);
    c
}

/// The index names of table `table` in `GET /v1/plugins`.
fn indexes(plugins: &Value, table: &str) -> Vec<String> {
    plugins
        .as_array()
        .expect("a list of plugins")
        .iter()
        .flat_map(|p| p["Tables"].as_array().cloned().unwrap_or_default())
        .find(|t| t["Name"] == table)
        .unwrap_or_else(|| panic!("no table {table} in {plugins}"))["Indexes"]
        .as_array()
        .expect("indexes")
        .iter()
        .map(|i| i["Name"].as_str().expect("a name").to_string())
        .collect()
}

fn editions(plugins: &Value) -> Vec<(String, String)> {
    plugins
        .as_array()
        .expect("a list of plugins")
        .iter()
        .map(|p| {
            (
                p["Name"].as_str().unwrap_or("?").to_string(),
                p["Edition"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

#[test]
fn one_binary_runs_either_edition_and_enterprise_namespaces_isolate() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let oss_line = plugin_files(
        &tmp.path().join("oss"),
        &[("kv", bundled("kv")), ("catalog", bundled("catalog"))],
    );
    let ent_line = plugin_files(
        &tmp.path().join("ent"),
        &[
            ("kv", fixture("kv-enterprise")),
            ("catalog", fixture("catalog-enterprise")),
        ],
    );
    let oss = start(&oss_line);
    let ent = start(&ent_line);
    let (o, e) = (oss.servers[0].http_addr(), ent.servers[0].http_addr());

    // Different schemas from the same binary.
    let (s, oss_plugins, _) = call(&o, "GET", "/v1/plugins", b"");
    assert_eq!(s, 200);
    let (s, ent_plugins, _) = call(&e, "GET", "/v1/plugins", b"");
    assert_eq!(s, 200);
    assert_eq!(
        editions(&oss_plugins),
        [
            ("kv".into(), "oss".into()),
            ("catalog".into(), "oss".into())
        ]
    );
    assert_eq!(
        editions(&ent_plugins),
        [
            ("kv".into(), "enterprise".into()),
            ("catalog".into(), "enterprise".into())
        ]
    );
    assert_eq!(indexes(&oss_plugins, "kvs"), ["id", "session"]);
    assert_eq!(indexes(&ent_plugins, "kvs"), ["id", "session", "namespace"]);
    assert!(indexes(&ent_plugins, "services").contains(&"namespace".to_string()));
    assert!(!indexes(&oss_plugins, "services").contains(&"namespace".to_string()));

    // OSS refuses namespaces as Consul CE does, and serves the default one.
    let (s, _, text) = call(&o, "PUT", "/v1/kv/shared?ns=team-a", b"x");
    assert_eq!(s, 400, "{text}");
    assert!(
        text.contains("Namespaces are a Consul Enterprise feature"),
        "{text}"
    );
    let (s, _, text) = call(&o, "GET", "/v1/catalog/services?partition=p1", b"");
    assert_eq!(s, 400, "{text}");
    assert!(
        text.contains("Partitions are a Consul Enterprise feature"),
        "{text}"
    );
    assert_eq!(call(&o, "PUT", "/v1/kv/shared?ns=default", b"d").0, 200);

    // Enterprise: the same key in three namespaces holds three values.
    for (ns, value) in [("team-a", "A"), ("team-b", "B"), ("default", "D")] {
        let (s, v, text) = call(
            &e,
            "PUT",
            &format!("/v1/kv/shared?ns={ns}"),
            value.as_bytes(),
        );
        assert_eq!((s, v), (200, json!(true)), "{text}");
    }
    for (query, value) in [("?ns=team-a", "A"), ("?ns=team-b", "B"), ("", "D")] {
        let path = format!("/v1/kv/shared?raw{}", query.replace('?', "&"));
        let (s, _, text) = call(&e, "GET", &path, b"");
        assert_eq!((s, text.as_str()), (200, value), "GET shared{query}");
    }
    assert_eq!(call(&e, "GET", "/v1/kv/shared?ns=team-c", b"").0, 404);
    let (s, list, _) = call(&e, "GET", "/v1/kv/?recurse&ns=team-a", b"");
    assert_eq!(s, 200);
    let list = list.as_array().expect("entries").clone();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (&list[0]["Namespace"], &list[0]["Partition"]),
        (&json!("team-a"), &json!("default"))
    );
    // Deleting a tree in one namespace leaves the others.
    assert_eq!(call(&e, "DELETE", "/v1/kv/?recurse&ns=team-b", b"").0, 200);
    assert_eq!(call(&e, "GET", "/v1/kv/shared?ns=team-b", b"").0, 404);
    assert_eq!(call(&e, "GET", "/v1/kv/shared?ns=team-a&raw", b"").2, "A");

    // The catalog: a service registered in team-a is not seen from team-b.
    let reg = json!({
        "Node": "n1", "Address": "10.0.0.1",
        "Service": {"ID": "web1", "Service": "web", "Port": 80}
    })
    .to_string();
    let (s, _, text) = call(&e, "PUT", "/v1/catalog/register?ns=team-a", reg.as_bytes());
    assert_eq!(s, 200, "{text}");
    let (_, a, _) = call(&e, "GET", "/v1/catalog/services?ns=team-a", b"");
    assert_eq!(a, json!({"web": []}));
    let (_, b, _) = call(&e, "GET", "/v1/catalog/services?ns=team-b", b"");
    assert_eq!(b, json!({}));
    let (_, nodes, _) = call(&e, "GET", "/v1/catalog/service/web?ns=team-a", b"");
    assert_eq!(nodes[0]["Namespace"], "team-a", "{nodes}");
    // A node lives in its partition: it is there for every namespace.
    let (_, n, _) = call(&e, "GET", "/v1/catalog/nodes?ns=team-b", b"");
    assert_eq!(n[0]["Node"], "n1", "{n}");
    assert_eq!(n[0]["Partition"], "default", "{n}");

    // An enterprise snapshot onto OSS plugins is refused, naming the table and index.
    let archive = tmp.path().join("ent.snap").display().to_string();
    let (ok, out, err) = run_cli(BIN, &["snapshot", "save", &archive, "--http-addr", &e]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run_cli(BIN, &["snapshot", "restore", &archive, "--http-addr", &o]);
    assert!(!ok, "{out}");
    assert!(err.contains("edition is enterprise"), "{err}");
    assert!(err.contains("table kvs index namespace"), "{err}");
    // ... and the OSS server still serves what it had.
    assert_eq!(call(&o, "GET", "/v1/kv/shared?raw", b"").2, "d");
}
