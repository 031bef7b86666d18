//! Plugin upgrades through the log on a live 3-server cluster: kv 0.1.1 → 0.2.0 (which adds
//! the `kvs.flags` index) under write load switches every server at the same index with
//! equal state hashes and no lost write; a dry run changes nothing; a downgrade and a
//! reinstall are refused; a server added afterwards gets 0.2.0 through the raft snapshot.

use fsmhost_tests::cluster::Cluster;
use fsmhost_tests::{bundled, call, fixture, run_cli};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fsmhost-node");
const WAIT: Duration = Duration::from_secs(60);

/// Frequent snapshots and a short log tail, so the install entry is compacted away and a
/// new server can only get the plugin through a snapshot.
const EXTRA: &str =
    "raft_snapshot_threshold = 50\nraft_snapshot_interval = \"200ms\"\nraft_trailing_logs = 5";

/// `kv`'s version, hash and `kvs` index names in server `addr`'s `GET /v1/plugins`.
fn kv_on(addr: &str) -> (String, String, Vec<String>) {
    let (s, v, text) = call(addr, "GET", "/v1/plugins", b"");
    assert_eq!(s, 200, "{text}");
    let kv = v
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

/// The raft index in server `i`'s "installed plugin" log line for kv 0.2.0, if any.
fn install_index_in_log(c: &Cluster, i: usize) -> Option<u64> {
    c.log_text(i)
        .lines()
        .find(|l| l.contains("installed plugin: name=kv from=0.1.1 to=0.2.0"))
        .and_then(|l| l.split("index=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Writes `load/<n>` through every server in turn until `stop`; returns the keys whose
/// write was acknowledged (200 and `true`).
fn spawn_writer(
    addrs: Vec<String>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<BTreeSet<String>> {
    std::thread::spawn(move || {
        let mut acked = BTreeSet::new();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let addr = &addrs[n as usize % addrs.len()];
            let key = format!("load/{n:06}");
            let r = fsmhost_tests::cluster::http(
                addr,
                "PUT",
                &format!("/v1/kv/{key}"),
                "application/octet-stream",
                key.as_bytes(),
                Duration::from_secs(20),
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
    let v2 = tmp.path().join("kv-v2.wasm");
    std::fs::write(&v2, fixture("kv-v2")).expect("component written");
    let v1 = tmp.path().join("kv-v1.wasm");
    std::fs::write(&v1, bundled("kv")).expect("component written");
    let (v2, v1) = (v2.display().to_string(), v1.display().to_string());

    let mut c = Cluster::start_with(BIN, 3, EXTRA);
    let leader = c.wait_leader(WAIT);
    let follower = (leader + 1) % 3;
    let faddr = c.servers[follower].http_addr();
    for i in 0..3 {
        let (version, _, indexes) = kv_on(&c.servers[i].http_addr());
        assert_eq!((version.as_str(), indexes.len()), ("0.1.1", 2));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let addrs: Vec<String> = c.servers.iter().map(|s| s.http_addr()).collect();
    let writer = spawn_writer(addrs, stop.clone());
    std::thread::sleep(Duration::from_secs(1));

    // A dry run reports the rebuild and changes nothing.
    let (ok, out, err) = run_cli(
        BIN,
        &["plugin", "install", "--dry-run", &v2, "--http-addr", &faddr],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("Dry run: installing plugin kv 0.1.1 -> 0.2.0"),
        "{out}"
    );
    assert!(out.contains("table kvs: rebuilt"), "{out}");
    assert!(out.contains("indexes added: flags"), "{out}");
    assert!(out.contains("table tombstones: unchanged"), "{out}");
    assert_eq!(kv_on(&faddr).0, "0.1.1");

    // The install, through a follower, while writes go on.
    let (ok, out, err) = run_cli(BIN, &["plugin", "install", &v2, "--http-addr", &faddr]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("Installed plugin kv 0.1.1 -> 0.2.0"), "{out}");
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
    let installed = kv_on(&c.servers[leader].http_addr());
    for i in 0..3 {
        let addr = c.servers[i].http_addr();
        let (version, sha, indexes) = kv_on(&addr);
        assert_eq!(version, "0.2.0", "server {i}");
        assert_eq!(sha, installed.1, "server {i}: the same component");
        assert_eq!(indexes, ["id", "session", "flags"], "server {i}");
        assert_eq!(
            install_index_in_log(&c, i),
            Some(index),
            "server {i} switched at the install entry's index"
        );
        // No acknowledged write lost, on any server.
        let (s, keys, _) = call(&addr, "GET", "/v1/kv/load/?keys&stale", b"");
        assert_eq!(s, 200);
        let have: BTreeSet<String> = keys
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect();
        let missing: Vec<&String> = acked.difference(&have).collect();
        assert!(missing.is_empty(), "server {i} lost {missing:?}");
    }

    // Writes go on under 0.2.0, recorded with its version.
    let (s, _, text) = call(&faddr, "PUT", "/v1/kv/after", b"v2");
    assert_eq!(s, 200, "{text}");

    // A downgrade, and the same version again, are refused before the log.
    for (file, what) in [(&v1, "0.1.1 is not higher"), (&v2, "0.2.0 is not higher")] {
        let (ok, out, err) = run_cli(BIN, &["plugin", "install", file, "--http-addr", &faddr]);
        assert!(!ok, "{out}");
        assert!(err.contains("409") && err.contains(what), "{err}");
    }
    let (s, _, text) = call(&faddr, "PUT", "/v1/plugins", b"not a component");
    assert_eq!(s, 400, "{text}");
    assert_eq!(kv_on(&faddr).0, "0.2.0");

    // A new server gets 0.2.0 through the raft snapshot (the install entry is compacted).
    let converged = c.wait_converged_past(1, WAIT).0;
    assert_ne!(hash, "", "state hash");
    let newcomer = c.add_server();
    let deadline = Instant::now() + WAIT;
    loop {
        let got = c
            .agent_self(newcomer)
            .map(|_| kv_on(&c.servers[newcomer].http_addr()));
        if got.as_ref().is_some_and(|(v, _, _)| v == "0.2.0") {
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
