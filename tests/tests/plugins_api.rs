//! The loaded plugins as operators see them: `GET /v1/plugins`, `fsmhost plugin list`, and
//! `fsmhost version`, on a real server process.

use fsmhost_tests::cluster::{Cluster, free_port, http};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_fsmhost-node");

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("the CLI runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plugins_endpoint_list_and_version() {
    let mut c = Cluster::start(BIN, 1);
    let leader = c.wait_leader(Duration::from_secs(30));
    let addr = c.servers[leader].http_addr();

    let r = http(&addr, "GET", "/v1/plugins", "", b"", Duration::from_secs(5)).unwrap();
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
    assert_eq!(tables, ["kvs", "tombstones"]);
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
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["kv", kv["Version"].as_str().unwrap(), "oss"]);
    assert_eq!(row[3], &kv["Hash"].as_str().unwrap()[..12]);
    assert_eq!(row[4], "kvs,tombstones");

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
}
