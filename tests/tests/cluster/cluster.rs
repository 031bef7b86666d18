//! Whole-cluster behaviour on real processes: formation, forwarding, failover, restarts,
//! joins and leaves, and refusals of a damaged data dir.

use crate::support::{
    BIN, Streamed, agent_refuses, cli, follower_of, kv_keys, kv_set, stream_writes,
};
use fsmhost_plugin_kv::GetArgs;
use fsmhost_tests::client::Client;
use fsmhost_tests::cluster::Cluster;
use fsmhost_tests::{cbor, decode};
use std::collections::BTreeSet;
use std::time::Duration;

const LEADER_WAIT: Duration = Duration::from_secs(30);
const CONVERGE_WAIT: Duration = Duration::from_secs(30);

/// The keys under `prefix` on server `i`, read from its own state (`?stale`).
fn keys_on(c: &Cluster, i: usize, prefix: &str) -> BTreeSet<String> {
    kv_keys(c, i, prefix).into_iter().collect()
}

/// How many voters `/v1/status/peers` lists on the server at `http_addr`.
fn peers(http_addr: &str) -> usize {
    let r = Client::new(http_addr).get("/v1/status/peers");
    r.json().as_array().map_or(0, Vec::len)
}

#[test]
fn three_servers_bootstrap_and_take_1000_writes_through_a_follower() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader(LEADER_WAIT);
    let f = follower_of(&mut c, leader);
    let mut last_index = 0;
    for n in 0..1000 {
        let r = c
            .apply(f, "kv", "set", &kv_set(&format!("k/{n:04}"), "v"))
            .expect("write answered");
        assert_eq!(r.status, 200, "write {n}: {}", r.text());
        let index: u64 = r
            .header("X-Consul-Index")
            .expect("index header")
            .parse()
            .unwrap();
        assert!(
            index > last_index,
            "indexes increase: {index} after {last_index}"
        );
        last_index = index;
        assert!(decode::<bool>(&r.body), "a set answers true");
    }
    c.wait_converged(CONVERGE_WAIT);
    for i in 0..3 {
        assert_eq!(keys_on(&c, i, "k/").len(), 1000, "server {i}");
    }
    // Exactly one server bootstrapped the cluster, and said so in Consul's log shape.
    let bootstrapped: Vec<String> = (0..3)
        .flat_map(|i| {
            c.log_tail(i, 10_000)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|l| l.contains("cluster bootstrapped"))
        .collect();
    assert_eq!(bootstrapped.len(), 1, "{bootstrapped:?}");
    let line = &bootstrapped[0];
    assert!(
        line.len() > 24
            && &line[10..11] == "T"
            && line[23..].starts_with("Z [INFO]  agent.server.raft: "),
        "not Consul's shape: {line}"
    );
    // Every server reports the same peers, and the leader's address.
    let leader_addr = c.servers[leader].rpc_addr();
    for i in 0..3 {
        let r = c.client(i).get("/v1/status/leader");
        assert_eq!(r.json(), serde_json::json!(leader_addr));
        assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"));
        assert_eq!(peers(&c.servers[i].http_addr()), 3);
    }
}

#[test]
fn reads_honour_consistency_modes_and_errors_name_the_problem() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader(LEADER_WAIT);
    let f = follower_of(&mut c, leader);
    let r = c.apply(f, "kv", "set", &kv_set("a", "1")).unwrap();
    assert_eq!(r.status, 200);
    let index: u64 = r.header("X-Consul-Index").unwrap().parse().unwrap();
    let get = cbor(&GetArgs {
        tenancy: Default::default(),
        key: "a".into(),
    });
    for qs in ["", "?consistent", "?stale"] {
        let r = c.query(f, "kv", "get", &get, qs).unwrap();
        // A stale read on a follower may lag; default and consistent go through the leader.
        if qs != "?stale" {
            assert_eq!(r.status, 200, "{qs}: {}", r.text());
            assert_eq!(
                r.header("X-Consul-Index").unwrap().parse::<u64>().unwrap(),
                index
            );
        }
    }
    let r = c.apply(f, "kv", "no-such-command", &[]).unwrap();
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("no command no-such-command"),
        "{}",
        r.text()
    );
    let r = c.apply(f, "nope", "set", &[]).unwrap();
    assert_eq!(r.status, 404);
    assert!(r.text().contains("no plugin named nope"), "{}", r.text());
    let r = c.apply(f, "kv", "set", b"\xff\x00 not cbor").unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let r = c.query(f, "kv", "get", &get, "?stale&consistent").unwrap();
    assert_eq!(r.status, 400);
    let r = c.query(f, "kv", "get", &get, "?index=x").unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("index"), "{}", r.text());
    // Garbage on the server port is refused without harm.
    let r = Client::new(c.servers[f].rpc_addr()).request(
        "POST",
        "/v1/internal/raft/append",
        "application/cbor",
        b"junk",
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("malformed"), "{}", r.text());
    assert_eq!(
        c.apply(leader, "kv", "set", &kv_set("b", "2"))
            .unwrap()
            .status,
        200
    );
    c.wait_converged(CONVERGE_WAIT);
}

#[test]
fn acknowledged_writes_survive_a_leader_sigkill_mid_stream() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader(LEADER_WAIT);
    let f = follower_of(&mut c, leader);
    // Four writers stream through a follower while the leader is SIGKILLed, so that some
    // writes are in flight at the leader when it dies.
    let client = c.client(f).with_timeout(Duration::from_secs(15));
    let Streamed { acked, failed } =
        stream_writes(&client, (4, 150, "stream"), false, 200, || c.kill(leader));
    eprintln!(
        "{} writes acknowledged, {failed} failed across the failover",
        acked.len()
    );
    assert!(
        acked.len() >= 400,
        "most writes succeed across a failover ({} acked, {failed} failed)",
        acked.len()
    );
    let new_leader = c.wait_leader(LEADER_WAIT);
    assert_ne!(new_leader, leader);
    c.restart(leader);
    c.wait_leader(LEADER_WAIT);
    c.wait_converged(CONVERGE_WAIT);
    for i in 0..3 {
        let keys = keys_on(&c, i, "stream/");
        for k in &acked {
            assert!(keys.contains(k), "server {i} lost acknowledged write {k}");
        }
    }
}

#[test]
fn all_servers_restart_from_disk_with_everything() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader(LEADER_WAIT);
    for n in 0..100 {
        assert_eq!(
            c.apply(leader, "kv", "set", &kv_set(&format!("d/{n}"), "x"))
                .unwrap()
                .status,
            200
        );
    }
    let (applied, before) = c.wait_converged_past(0, CONVERGE_WAIT);
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    let leader = c.wait_leader(LEADER_WAIT);
    // Each server replays its log up to the commit index; the state is the same. (A
    // restarted leader whose vote was committed may resume its term without a new entry.)
    let (_, after) = c.wait_converged_past(applied, CONVERGE_WAIT);
    assert_eq!(before, after);
    for i in 0..3 {
        assert_eq!(keys_on(&c, i, "d/").len(), 100);
    }
    assert_eq!(
        c.apply(leader, "kv", "set", &kv_set("d/after", "x"))
            .unwrap()
            .status,
        200
    );
    c.wait_converged(CONVERGE_WAIT);
}

#[test]
fn five_servers_keep_serving_with_two_down() {
    let mut c = Cluster::start(BIN, 5);
    let leader = c.wait_leader(LEADER_WAIT);
    // Take down the leader and one follower.
    let other = follower_of(&mut c, leader);
    c.kill(leader);
    c.kill(other);
    let new_leader = c.wait_leader(LEADER_WAIT);
    for n in 0..50 {
        let r = c
            .apply(new_leader, "kv", "set", &kv_set(&format!("five/{n}"), "x"))
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    c.wait_converged(CONVERGE_WAIT);
    for i in c.live() {
        assert_eq!(keys_on(&c, i, "five/").len(), 50);
    }
    c.restart(leader);
    c.restart(other);
    c.wait_leader(LEADER_WAIT);
    c.wait_converged(CONVERGE_WAIT);
    assert_eq!(keys_on(&c, other, "five/").len(), 50);
}

#[test]
fn a_later_server_joins_and_a_leave_removes_only_when_asked() {
    // Autopilot promotes the newcomer; with Consul's defaults (10s stabilization, 10s
    // reconcile) that takes 20s or more, too close to the wait on a loaded 2-core machine.
    // This test is about joining and leaving, not autopilot's timing (the autopilot module).
    let quick = "[autopilot]\nserver_stabilization_time = \"2s\"\nreconcile_interval = \"1s\"\n\
                 update_interval = \"500ms\"";
    let mut c = Cluster::start_with(BIN, 3, quick);
    let leader = c.wait_leader(LEADER_WAIT);
    for n in 0..20 {
        assert_eq!(
            c.apply(leader, "kv", "set", &kv_set(&format!("j/{n}"), "x"))
                .unwrap()
                .status,
            200
        );
    }
    let newcomer = c.add_server();
    let deadline = std::time::Instant::now() + 2 * LEADER_WAIT;
    loop {
        let s = c.state(leader).expect("leader answers");
        let me = c.state(newcomer).map(|s| s.id);
        if me.is_some_and(|me| s.voters.contains(&me)) && s.voters.len() == 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "newcomer never became a voter: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.wait_converged(CONVERGE_WAIT);
    assert_eq!(keys_on(&c, newcomer, "j/").len(), 20);

    // SIGTERM stops a server without leaving: it stays in the configuration.
    let f = follower_of(&mut c, leader);
    assert_eq!(c.terminate(f), Some(0), "graceful stop exits 0");
    assert_eq!(c.state(leader).unwrap().voters.len(), 4);
    c.restart(f);
    c.wait_converged(CONVERGE_WAIT);

    // `fsmhost leave` removes it, and the process exits.
    let (code, _, err) = cli(&["leave", "--http-addr", &c.servers[newcomer].http_addr()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(c.wait_exit(newcomer, Duration::from_secs(20)), Some(0));
    let leader = c.wait_leader(LEADER_WAIT);
    assert_eq!(c.state(leader).unwrap().voters.len(), 3);
    assert_eq!(
        c.apply(leader, "kv", "set", &kv_set("j/after", "x"))
            .unwrap()
            .status,
        200
    );
}

#[test]
fn a_paused_leader_is_replaced_and_catches_up() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader(LEADER_WAIT);
    c.pause(leader);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    // The others elect a new leader among themselves.
    let deadline = std::time::Instant::now() + LEADER_WAIT;
    let new_leader = loop {
        if let Some(i) = others
            .iter()
            .copied()
            .find(|&i| c.state(i).is_some_and(|s| s.role == "Leader"))
        {
            break i;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new leader while the old one is paused"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for n in 0..10 {
        assert_eq!(
            c.apply(new_leader, "kv", "set", &kv_set(&format!("p/{n}"), "x"))
                .unwrap()
                .status,
            200
        );
    }
    c.resume(leader);
    c.wait_leader(LEADER_WAIT);
    c.wait_converged(CONVERGE_WAIT);
    assert_eq!(keys_on(&c, leader, "p/").len(), 10);
}

#[test]
fn a_damaged_data_dir_is_refused_by_name() {
    // The redb backend's file (the WAL's damage is in raft_log.rs).
    let mut c = Cluster::start_with(BIN, 2, "[raft_logstore]\nbackend = \"redb\"");
    c.wait_leader(LEADER_WAIT);
    c.kill(0);
    c.kill(1);
    let log0 = c.servers[0].data_dir.join("raft").join("raft.db");
    let log1 = c.servers[1].data_dir.join("raft").join("raft.db");

    // Another node's log.
    let saved = std::fs::read(&log0).unwrap();
    std::fs::copy(&log1, &log0).unwrap();
    let err = agent_refuses(&c.servers[0].config);
    assert!(
        err.contains("belongs to node") && err.contains("raft.db"),
        "{err}"
    );

    // A corrupt log.
    std::fs::write(&log0, b"this is not a database").unwrap();
    let err = agent_refuses(&c.servers[0].config);
    assert!(
        err.contains("raft.db") && err.contains("cannot be opened"),
        "{err}"
    );

    // A missing log, with the node id still there.
    std::fs::remove_file(&log0).unwrap();
    let err = agent_refuses(&c.servers[0].config);
    assert!(
        err.contains("is missing") && err.contains("raft.db"),
        "{err}"
    );

    // Restored, the server starts again with its state.
    std::fs::write(&log0, saved).unwrap();
    c.restart(0);
    c.restart(1);
    c.wait_leader(LEADER_WAIT);
    c.wait_converged_past(1, CONVERGE_WAIT);
}

#[test]
fn a_bad_config_is_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    for (text, key) in [
        ("server = false\ndata_dir = \"/tmp/x\"", "server:"),
        (
            "bind_addr = \"not-an-ip\"\ndata_dir = \"/tmp/x\"",
            "bind_addr:",
        ),
        ("node_name = 3", "node_name"),
        ("bootstrap_expect = 3", "data_dir:"),
    ] {
        std::fs::write(&f, text).unwrap();
        let err = agent_refuses(&f);
        assert!(err.contains(key), "{text:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn operator_lists_peers_and_removes_a_dead_one() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader(LEADER_WAIT);
    assert_eq!(
        c.apply(leader, "kv", "set", &kv_set("op", "x"))
            .unwrap()
            .status,
        200
    );
    c.wait_converged_past(1, CONVERGE_WAIT);
    let http_addr = c.servers[leader].http_addr();
    let (code, out, err) = cli(&["operator", "raft", "list-peers", "--http-addr", &http_addr]);
    assert_eq!(code, 0, "{err}");
    eprintln!("{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("Node") && lines[0].contains("Trails Leader By"),
        "{out}"
    );
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(
        lines.iter().filter(|l| l.contains("leader")).count(),
        1,
        "{out}"
    );
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains("true") && l.contains(" 0 commits")),
        "{out}"
    );

    // A dead follower is removed by address; an unknown address is refused by name.
    let f = follower_of(&mut c, leader);
    c.kill(f);
    let gone = c.servers[f].rpc_addr();
    let (code, _, err) = cli(&[
        "operator",
        "raft",
        "remove-peer",
        "--address",
        "127.0.0.1:1",
        "--http-addr",
        &http_addr,
    ]);
    assert!(
        code != 0
            && err.contains("address \"127.0.0.1:1\" was not found in the Raft configuration"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, _, err) = cli(&[
        "operator",
        "raft",
        "remove-peer",
        "--address",
        &gone,
        "--http-addr",
        &http_addr,
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = cli(&["operator", "raft", "list-peers", "--http-addr", &http_addr]);
    assert!(
        code == 0 && out.lines().count() == 3 && !out.contains(&gone),
        "{out}"
    );
    assert_eq!(peers(&http_addr), 2);
    // With two voters left, both are needed; writes still commit.
    assert_eq!(
        c.apply(leader, "kv", "set", &kv_set("op2", "x"))
            .unwrap()
            .status,
        200
    );
}
