//! Editions: the same built binary runs the OSS plugin set and the enterprise one (kv and
//! catalog built from the same source with the `enterprise` feature), given as files. The
//! schemas differ in `GET /v1/plugins`, enterprise namespaces isolate keys and services,
//! OSS refuses `?ns=` as Consul CE does, and an enterprise snapshot restored onto OSS
//! plugins is refused naming the table and index that differ.

use crate::support::{BIN, cli, write_file};
use fsmhost_tests::cluster::Cluster;
use fsmhost_tests::{bundled, fixture};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Writes the components to `dir` and returns the `plugins = [...]` config line.
fn plugin_files(dir: &Path, components: &[(&str, &[u8])]) -> String {
    std::fs::create_dir_all(dir).expect("plugin directory");
    let paths: Vec<String> = components
        .iter()
        .map(|(name, bytes)| format!("{:?}", write_file(dir, &format!("{name}.wasm"), bytes)))
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
    let (o, e) = (oss.client(0), ent.client(0));

    // Different schemas from the same binary.
    let r = o.get("/v1/plugins");
    assert_eq!(r.status, 200);
    let oss_plugins = r.json();
    let r = e.get("/v1/plugins");
    assert_eq!(r.status, 200);
    let ent_plugins = r.json();
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
    let r = o.put("/v1/kv/shared?ns=team-a", "x");
    let text = r.text();
    assert_eq!(r.status, 400, "{text}");
    assert!(
        text.contains("Namespaces are a Consul Enterprise feature"),
        "{text}"
    );
    let r = o.get("/v1/catalog/services?partition=p1");
    let text = r.text();
    assert_eq!(r.status, 400, "{text}");
    assert!(
        text.contains("Partitions are a Consul Enterprise feature"),
        "{text}"
    );
    assert_eq!(o.put("/v1/kv/shared?ns=default", "d").status, 200);

    // Enterprise: the same key in three namespaces holds three values.
    for (ns, value) in [("team-a", "A"), ("team-b", "B"), ("default", "D")] {
        let r = e.put(&format!("/v1/kv/shared?ns={ns}"), value);
        assert_eq!((r.status, r.json()), (200, json!(true)), "{}", r.text());
    }
    for (query, value) in [("?ns=team-a", "A"), ("?ns=team-b", "B"), ("", "D")] {
        let path = format!("/v1/kv/shared?raw{}", query.replace('?', "&"));
        let r = e.get(&path);
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, value),
            "GET shared{query}"
        );
    }
    assert_eq!(e.get("/v1/kv/shared?ns=team-c").status, 404);
    let r = e.get("/v1/kv/?recurse&ns=team-a");
    assert_eq!(r.status, 200);
    let list = r.json().as_array().expect("entries").clone();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (&list[0]["Namespace"], &list[0]["Partition"]),
        (&json!("team-a"), &json!("default"))
    );
    // Deleting a tree in one namespace leaves the others.
    assert_eq!(e.delete("/v1/kv/?recurse&ns=team-b").status, 200);
    assert_eq!(e.get("/v1/kv/shared?ns=team-b").status, 404);
    assert_eq!(e.get("/v1/kv/shared?ns=team-a&raw").text(), "A");

    // The catalog: a service registered in team-a is not seen from team-b.
    let reg = json!({
        "Node": "n1", "Address": "10.0.0.1",
        "Service": {"ID": "web1", "Service": "web", "Port": 80}
    })
    .to_string();
    let r = e.put("/v1/catalog/register?ns=team-a", reg);
    assert_eq!(r.status, 200, "{}", r.text());
    let a = e.get("/v1/catalog/services?ns=team-a").json();
    assert_eq!(a, json!({"web": []}));
    let b = e.get("/v1/catalog/services?ns=team-b").json();
    assert_eq!(b, json!({}));
    let nodes = e.get("/v1/catalog/service/web?ns=team-a").json();
    assert_eq!(nodes[0]["Namespace"], "team-a", "{nodes}");
    // A node lives in its partition: it is there for every namespace.
    let n = e.get("/v1/catalog/nodes?ns=team-b").json();
    assert_eq!(n[0]["Node"], "n1", "{n}");
    assert_eq!(n[0]["Partition"], "default", "{n}");

    // Sessions and locks in a namespace: team-a's session locks team-a's key; team-b
    // does not see the session and cannot lock with it.
    let r = e.put(
        "/v1/session/create?ns=team-a",
        r#"{"Node":"n1","Checks":[],"LockDelay":"0s"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["ID"].as_str().expect("an ID").to_string();
    let r = e.put(&format!("/v1/kv/lock?ns=team-a&acquire={id}"), "x");
    assert_eq!(r.text(), "true");
    let r = e.put(&format!("/v1/kv/lock?ns=team-b&acquire={id}"), "x");
    assert_ne!(
        r.status,
        200,
        "a session of team-a locked in team-b: {}",
        r.text()
    );
    assert_eq!(e.get("/v1/session/list?ns=team-b").json(), json!([]));
    let listed = e.get("/v1/session/list?ns=team-a").json();
    assert_eq!(listed[0]["ID"], id.as_str(), "{listed}");
    assert_eq!(listed[0]["Namespace"], "team-a", "{listed}");
    assert_eq!(
        e.get("/v1/kv/lock?ns=team-a").json()[0]["Session"],
        id.as_str()
    );

    // An enterprise snapshot onto OSS plugins is refused, naming the table and index.
    let archive = tmp.path().join("ent.snap").display().to_string();
    let (code, out, err) = cli(&["snapshot", "save", &archive, "--http-addr", e.addr()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(&["snapshot", "restore", &archive, "--http-addr", o.addr()]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("edition is enterprise"), "{err}");
    assert!(err.contains("table kvs index namespace"), "{err}");
    // ... and the OSS server still serves what it had.
    assert_eq!(o.get("/v1/kv/shared?raw").text(), "d");
}
