//! Raft snapshots on real processes: Consul's schedule and directory layout, meta.json,
//! log compaction, catching up a new server by snapshot, restarts from a snapshot, and a
//! damaged snapshot on disk.

use crate::support::{BIN, kv_keys, kv_set, wait_until};
use fsmhost_tests::cluster::Cluster;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Small numbers so that a test crosses the threshold many times in a few seconds.
const POLICY: &str =
    "raft_snapshot_threshold = 100\nraft_snapshot_interval = \"200ms\"\nraft_trailing_logs = 50";

fn write_keys(c: &Cluster, i: usize, range: std::ops::Range<u32>) {
    for n in range {
        let r = c
            .apply(
                i,
                "kv",
                "set",
                &kv_set(&format!("k/{n:05}"), format!("v{n}")),
            )
            .expect("write answered");
        assert_eq!(r.status, 200, "write {n}: {}", r.text());
    }
}

/// The keys `write_keys` wrote that server `i` holds.
fn keys_on(c: &Cluster, i: usize) -> Vec<String> {
    kv_keys(c, i, "k/")
}

/// The snapshot directories of server `i`, sorted by name.
fn snapshot_dirs(c: &Cluster, i: usize) -> Vec<PathBuf> {
    let dir = c.servers[i].data_dir.join("raft").join("snapshots");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// Go's crc64.Checksum(data, crc64.MakeTable(crc64.ECMA)), as hashicorp/raft computes
/// meta.json's CRC, written out here rather than taken from the host.
fn go_crc64_ecma(data: &[u8]) -> u64 {
    const POLY: u64 = 0xC96C_5795_D787_0F42; // ECMA-182, reversed
    let mut crc = !0u64;
    for &b in data {
        crc ^= u64::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(A[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Checks one snapshot directory against the article: the name, meta.json's fields, and
/// that Size and CRC describe state.bin.
fn check_snapshot_dir(dir: &Path, rpc_addrs: &BTreeSet<String>) -> u64 {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let parts: Vec<u64> = name
        .split('-')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("{name} is not TERM-INDEX-TIMESTAMP"))
        })
        .collect();
    assert_eq!(parts.len(), 3, "{name}");
    let (term, index, ts) = (parts[0], parts[1], parts[2]);
    assert!(ts > 1_600_000_000_000, "{name}: timestamp in ms");
    let files: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        BTreeSet::from(["meta.json".into(), "state.bin".into()]),
        "{name}"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let state = std::fs::read(dir.join("state.bin")).unwrap();
    assert_eq!(meta["Version"], 1);
    assert_eq!(meta["ID"], name.as_str());
    assert_eq!(meta["Index"], index);
    assert_eq!(meta["Term"], term);
    assert_eq!(meta["Size"], state.len() as u64);
    assert_eq!(
        meta["CRC"].as_str().unwrap(),
        base64(&go_crc64_ecma(&state).to_be_bytes())
    );
    assert!(meta["ConfigurationIndex"].as_u64().unwrap() <= index);
    let servers = meta["Configuration"]["Servers"].as_array().unwrap();
    let addrs: BTreeSet<String> = servers
        .iter()
        .map(|s| s["Address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(&addrs, rpc_addrs, "{name}: Configuration.Servers");
    for s in servers {
        assert_eq!(s["Suffrage"], 0, "voters");
        assert_eq!(s["ID"].as_str().unwrap().len(), 16);
    }
    assert!(!meta["Peers"].as_str().unwrap().is_empty());
    index
}

/// Whether the article's six lines of one snapshot appear in its order.
fn snapshot_lines_in_order(log: &str) -> bool {
    let lines: Vec<&str> = log.lines().collect();
    let find = |from: usize, needle: &str| {
        lines[from..]
            .iter()
            .position(|l| l.contains(needle))
            .map(|p| p + from)
    };
    // Any snapshot whose six lines appear in order (a reap and a compaction need older
    // snapshots and a long enough log, so look at every snapshot taken).
    let mut start = 0;
    while let Some(a) = find(
        start,
        "[INFO]  agent.server.fsm: snapshot created: duration=",
    ) {
        let seq = find(a, "agent.server.raft: starting snapshot up to: index=").and_then(|b| {
            let index = lines[b].rsplit("index=").next()?.trim().to_string();
            let c = find(b, "agent.server.snapshot: creating new snapshot: path=")?;
            if !lines[c].ends_with(".tmp") {
                return None;
            }
            let d = find(c, "agent.server.snapshot: reaping snapshot: path=")?;
            let e = find(d, "agent.server.raft: compacting logs: from=")?;
            let f = find(
                e,
                &format!("agent.server.raft: snapshot complete up to: index={index}"),
            )?;
            // Nothing of the next snapshot in between.
            let next = find(a + 1, "agent.server.fsm: snapshot created").unwrap_or(usize::MAX);
            (f < next && lines[c].contains(&format!("-{index}-"))).then_some(())
        });
        if seq.is_some() {
            return true;
        }
        start = a + 1;
    }
    false
}

#[test]
fn threshold_snapshots_keep_two_compact_the_log_and_catch_up_a_new_server() {
    let mut c = Cluster::start_with(BIN, 3, POLICY);
    let leader = c.wait_leader(WAIT);
    write_keys(&c, leader, 0..700);
    c.wait_converged_past(700, WAIT);

    // Several snapshots were taken on the leader; two are kept.
    wait_until("three snapshots and a reap on the leader", WAIT, || {
        c.log_text(leader)
            .matches("snapshot complete up to")
            .count()
            >= 3
            && c.log_text(leader).contains("reaping snapshot")
    });
    let rpc_addrs: BTreeSet<String> = c.servers.iter().map(|s| s.rpc_addr()).collect();
    for i in 0..3 {
        wait_until("a snapshot on every server", WAIT, || {
            snapshot_dirs(&c, i).len() == 2
        });
        let dirs = snapshot_dirs(&c, i);
        assert_eq!(dirs.len(), 2, "{}: {dirs:?}", c.servers[i].name);
        for d in &dirs {
            check_snapshot_dir(d, &rpc_addrs);
        }
    }
    assert!(
        snapshot_lines_in_order(&c.log_text(leader)),
        "the article's log lines, in order, for one snapshot:\n{}",
        c.log_tail(leader, 60)
    );

    // The log was compacted, keeping the trailing logs after the snapshot. The policy may
    // still be one interval from its snapshot after the last writes: wait for it.
    wait_until(
        "a snapshot past index 600 and the compaction after it",
        WAIT,
        || {
            c.raft_stats(leader).is_some_and(|s| {
                let snap = s["last_snapshot_index"].as_u64().unwrap_or(0);
                let purged = s["last_purged_index"].as_u64().unwrap_or(0);
                let last = s["last_log_index"].as_u64().unwrap_or(u64::MAX);
                snap >= 600 && purged + 50 + 100 >= last
            })
        },
    );
    let stats = c.raft_stats(leader).unwrap();
    let snap = stats["last_snapshot_index"].as_u64().unwrap();
    let purged = stats["last_purged_index"]
        .as_u64()
        .expect("the log was compacted");
    let last = stats["last_log_index"].as_u64().unwrap();
    assert!(snap >= 600, "{stats}");
    assert!(
        purged <= snap && last - purged >= 50,
        "trailing logs kept: {stats}"
    );
    assert!(
        purged + 50 + 100 >= last,
        "compacted up to last - trailing: {stats}"
    );

    // A server added now cannot catch up from the log: it gets a snapshot.
    let new = c.add_server();
    wait_until("the new server to install a snapshot", WAIT, || {
        c.log_text(new).contains("installed remote snapshot")
    });
    let (_, hash) = c.wait_converged_past(700, WAIT);
    assert_eq!(keys_on(&c, new).len(), 700);
    assert!(c.log_text(leader).contains("sending snapshot to"));

    // Restarted, it starts from its own snapshot and replays the rest of its log.
    c.kill(new);
    c.restart(new);
    wait_until("the restart to restore a snapshot", WAIT, || {
        c.log_text(new).contains("restored from snapshot")
    });
    write_keys(&c, leader, 700..720);
    let (_, hash2) = c.wait_converged_past(720, WAIT);
    assert_ne!(hash, hash2);
    assert_eq!(keys_on(&c, new).len(), 720);
}

#[test]
fn a_flipped_byte_in_the_newest_snapshot_is_caught_and_the_older_one_used() {
    // Keep the whole log, so the older snapshot plus the log still give the full state.
    let mut c = Cluster::start_with(
        BIN,
        1,
        "raft_snapshot_threshold = 50\nraft_snapshot_interval = \"100ms\"\nraft_trailing_logs = 100000",
    );
    let leader = c.wait_leader(WAIT);
    for (round, keys) in [(1, 0..60), (2, 60..120)] {
        write_keys(&c, leader, keys);
        wait_until("a snapshot per round", WAIT, || {
            c.log_text(leader)
                .matches("snapshot complete up to")
                .count()
                >= round
        });
    }
    assert_eq!(snapshot_dirs(&c, leader).len(), 2);
    write_keys(&c, leader, 120..130);
    let (_, hash) = c.wait_converged_past(130, WAIT);
    assert_eq!(c.terminate(leader), Some(0));

    let dirs = snapshot_dirs(&c, leader);
    let newest = dirs
        .iter()
        .max_by_key(|d| {
            d.file_name()
                .unwrap()
                .to_string_lossy()
                .split('-')
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .unwrap()
        .clone();
    let state = newest.join("state.bin");
    let mut bytes = std::fs::read(&state).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&state, &bytes).unwrap();

    c.restart(leader);
    c.wait_leader(WAIT);
    let log = c.log_text(leader);
    let complaint = log
        .lines()
        .find(|l| l.contains("snapshot is unusable, trying an older one"))
        .unwrap_or_else(|| panic!("no complaint about the damaged snapshot:\n{log}"));
    assert!(
        complaint.contains(&newest.display().to_string()) && complaint.contains("CRC"),
        "{complaint}"
    );
    assert!(log.contains("restored from snapshot"), "{log}");
    // The damaged snapshot is set aside for the operator, out of raft's sight.
    assert!(!newest.exists());
    assert!(newest.with_extension("damaged").join("state.bin").exists());
    let (_, after) = c.wait_converged_past(130, WAIT);
    assert_eq!(
        after, hash,
        "the older snapshot and the log give the same state"
    );
    assert_eq!(keys_on(&c, leader).len(), 130);
}
