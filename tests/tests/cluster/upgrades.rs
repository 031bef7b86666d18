//! Plugin upgrades through the log on a live 3-server cluster: kv 0.2.0 → 0.3.0 (which adds
//! the `kvs.flags` index) under write load switches every server at the same index with
//! equal state hashes and no lost write; a dry run changes nothing; a downgrade and a
//! reinstall are refused; a server added afterwards gets 0.3.0 through the raft snapshot.

use crate::support::{BIN, cli, write_file};
use fsmhost_tests::client::Client;
use fsmhost_tests::cluster::Cluster;
use fsmhost_tests::{bundled, fixture};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// Frequent snapshots and a short log tail, so the install entry is compacted away and a
/// new server can only get the plugin through a snapshot.
const EXTRA: &str =
    "raft_snapshot_threshold = 50\nraft_snapshot_interval = \"200ms\"\nraft_trailing_logs = 5";

/// `kv`'s version, hash and `kvs` index names in server `s`'s `GET /v1/plugins`.
fn kv_on(s: &Client) -> (String, String, Vec<String>) {
    let r = s.get("/v1/plugins");
    assert_eq!(r.status, 200, "{}", r.text());
    let kv = r
        .json()
        .as_array()
        .and_then(|a| a.iter().find(|p| p["Name"] == "kv"))
        .cloned()
        .unwrap_or(Value::Null);
    let indexes = kv["Tables"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["Name"] == "kvs"))
        .and_then(|t| t["Indexes"].as_array())
        .map(|ix| {
            ix.iter()
                .filter_map(|i| i["Name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (
        kv["Version"].as_str().unwrap_or("?").to_string(),
        kv["Hash"].as_str().unwrap_or("?").to_string(),
        indexes,
    )
}

/// The raft index in server `i`'s "installed plugin" log line for kv 0.3.0, if any.
fn install_index_in_log(c: &Cluster, i: usize) -> Option<u64> {
    c.log_text(i)
        .lines()
        .find(|l| l.contains("installed plugin: name=kv from=0.2.0 to=0.3.0"))
        .and_then(|l| l.split("index=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Writes `load/<n>` through every server in turn until `stop`; returns the keys whose
/// write was acknowledged (200 and `true`).
fn spawn_writer(
    servers: Vec<Client>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<BTreeSet<String>> {
    std::thread::spawn(move || {
        let mut acked = BTreeSet::new();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let s = &servers[n as usize % servers.len()];
            let key = format!("load/{n:06}");
            let r = s.try_request(
                "PUT",
                &format!("/v1/kv/{key}"),
                "application/octet-stream",
                &key,
            );
            if let Ok(r) = r
                && r.status == 200
                && r.text() == "true"
            {
                acked.insert(key);
            }
            n += 1;
        }
        acked
    })
}

#[test]
fn kv_v2_installs_on_a_live_cluster_under_write_load() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let v2 = write_file(tmp.path(), "kv-v2.wasm", fixture("kv-v2"));
    let v1 = write_file(tmp.path(), "kv-v1.wasm", bundled("kv"));

    let mut c = Cluster::start_with(BIN, 3, EXTRA);
    let leader = c.wait_leader(WAIT);
    let follower = (leader + 1) % 3;
    let f = c.client(follower);
    let faddr = f.addr();
    for i in 0..3 {
        let (version, _, indexes) = kv_on(&c.client(i));
        assert_eq!((version.as_str(), indexes.len()), ("0.2.0", 2));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let servers = (0..3)
        .map(|i| c.client(i).with_timeout(Duration::from_secs(20)))
        .collect();
    let writer = spawn_writer(servers, stop.clone());
    std::thread::sleep(Duration::from_secs(1));

    // A dry run reports the rebuild and changes nothing.
    let (code, out, err) = cli(&["plugin", "install", "--dry-run", &v2, "--http-addr", faddr]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Dry run: installing plugin kv 0.2.0 -> 0.3.0"),
        "{out}"
    );
    assert!(out.contains("table kvs: rebuilt"), "{out}");
    assert!(out.contains("indexes added: flags"), "{out}");
    assert!(out.contains("table tombstones: unchanged"), "{out}");
    assert_eq!(kv_on(&f).0, "0.2.0");

    // The install, through a follower, while writes go on.
    let (code, out, err) = cli(&["plugin", "install", &v2, "--http-addr", faddr]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Installed plugin kv 0.2.0 -> 0.3.0"), "{out}");
    // The component was on every server before the entry switched them.
    assert!(
        out.contains("component copied to 2 of 2 other servers before the entry"),
        "{out}"
    );
    let index: u64 = out
        .split("at index ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no index in {out}"));
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let acked = writer.join().expect("writer thread");
    assert!(
        acked.len() > 20,
        "only {} writes were acknowledged",
        acked.len()
    );

    let (_, hash) = c.wait_converged_past(1, WAIT);
    let installed = kv_on(&c.client(leader));
    for i in 0..3 {
        let s = c.client(i);
        let (version, sha, indexes) = kv_on(&s);
        assert_eq!(version, "0.3.0", "server {i}");
        assert_eq!(sha, installed.1, "server {i}: the same component");
        assert_eq!(indexes, ["id", "session", "flags"], "server {i}");
        assert_eq!(
            install_index_in_log(&c, i),
            Some(index),
            "server {i} switched at the install entry's index"
        );
        // No acknowledged write lost, on any server.
        let r = s.get("/v1/kv/load/?keys&stale");
        assert_eq!(r.status, 200);
        let have: BTreeSet<String> = r
            .json()
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect();
        let missing: Vec<&String> = acked.difference(&have).collect();
        assert!(missing.is_empty(), "server {i} lost {missing:?}");
    }

    // Writes go on under 0.3.0, recorded with its version.
    let r = f.put("/v1/kv/after", "v2");
    assert_eq!(r.status, 200, "{}", r.text());

    // A downgrade, and the same version again, are refused before the log.
    for (file, what) in [(&v1, "0.2.0 is not higher"), (&v2, "0.3.0 is not higher")] {
        let (code, out, err) = cli(&["plugin", "install", file, "--http-addr", faddr]);
        assert_ne!(code, 0, "{out}");
        assert!(err.contains("409") && err.contains(what), "{err}");
    }
    let r = f.put("/v1/plugins", "not a component");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(kv_on(&f).0, "0.3.0");

    // A new server gets 0.3.0 through the raft snapshot (the install entry is compacted).
    let converged = c.wait_converged_past(1, WAIT).0;
    assert_ne!(hash, "", "state hash");
    let newcomer = c.add_server();
    let deadline = Instant::now() + WAIT;
    loop {
        let got = c.agent_self(newcomer).map(|_| kv_on(&c.client(newcomer)));
        if got.as_ref().is_some_and(|(v, _, _)| v == "0.3.0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new server still runs {got:?}:\n{}",
            c.log_tail(newcomer, 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.wait_converged_past(converged, WAIT);
    let log = c.log_text(newcomer);
    assert!(log.contains("installed remote snapshot"), "{log}");
    assert!(
        install_index_in_log(&c, newcomer).is_none(),
        "the new server replayed the install entry instead of getting the snapshot:\n{log}"
    );
}
