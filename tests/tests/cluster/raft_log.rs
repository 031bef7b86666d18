//! The raft log's two backends (`[raft_logstore] backend`) through real servers: every
//! server SIGKILLed at once during a write stream, a torn WAL record cut at start, a
//! damaged WAL refused by name, and the backend a data dir keeps (and Consul's procedure
//! to switch it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use fsmhost_tests::cluster::Cluster;

use crate::support::{BIN, agent_refuses, follower_of, kv_keys, kv_set, stream_writes};

const WAIT: Duration = Duration::from_secs(30);
const REDB: &str = "[raft_logstore]\nbackend = \"redb\"";

/// The segment files of server `i`'s WAL, in order.
fn segments(c: &Cluster, i: usize) -> Vec<PathBuf> {
    let dir = c.servers[i].data_dir.join("raft").join("wal");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Four writers stream through the leader; every server is SIGKILLed at once mid-stream;
/// after a restart every acknowledged write is on every server.
fn acknowledged_writes_survive_killing_every_server(extra: &str) {
    let mut c = Cluster::start_with(BIN, 3, extra);
    let leader = c.wait_leader(WAIT);
    let client = c.client(leader).with_timeout(Duration::from_secs(5));
    let acked = stream_writes(&client, (4, 400, "crash"), true, 300, || {
        for i in 0..3 {
            c.signal(i, libc::SIGKILL);
        }
    })
    .acked;
    for i in 0..3 {
        c.kill(i); // reaps
    }
    eprintln!(
        "{} writes acknowledged before every server was killed",
        acked.len()
    );
    assert!(acked.len() >= 250, "{} acknowledged", acked.len());
    for i in 0..3 {
        c.restart(i);
    }
    // A write through the new leader commits everything before it (each server replays
    // its log only up to the commit index it last recorded, which may be older).
    let leader = c.wait_leader(WAIT);
    write_some(&c, leader, "crash-after", 1);
    c.wait_converged(WAIT);
    for i in 0..3 {
        let keys: std::collections::BTreeSet<String> =
            kv_keys(&c, i, "crash/").into_iter().collect();
        for k in &acked {
            assert!(keys.contains(k), "server {i} lost acknowledged write {k}");
        }
    }
}

#[test]
fn wal_every_acknowledged_write_survives_sigkill_of_all_servers() {
    acknowledged_writes_survive_killing_every_server("");
}

#[test]
fn redb_every_acknowledged_write_survives_sigkill_of_all_servers() {
    acknowledged_writes_survive_killing_every_server(REDB);
}

fn write_some(c: &Cluster, leader: usize, prefix: &str, n: usize) {
    for k in 0..n {
        let r = c
            .apply(leader, "kv", "set", &kv_set(&format!("{prefix}/{k}"), "x"))
            .expect("answered");
        assert_eq!(r.status, 200);
    }
}

/// A crash in the middle of a write leaves the last record of the last segment torn: the
/// server cuts it at start, says so, and catches up from the leader.
#[test]
fn a_torn_wal_record_is_cut_at_start_and_the_server_catches_up() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader(WAIT);
    write_some(&c, leader, "torn", 30);
    c.wait_converged(WAIT);
    let f = follower_of(&mut c, leader);
    c.kill(f);
    // A page of the last record never written (segments are zero-filled ahead, so the
    // file's end is not the record's).
    let last = segments(&c, f).pop().expect("a segment");
    let scanned = fsmhost::raft::log_store::wal::segment::scan(&last, true).expect("scan");
    let record = scanned.records.last().expect("a record");
    let mut bytes = std::fs::read(&last).expect("segment");
    let at = record.offset as usize + 26;
    bytes[at..at + 7].fill(0);
    std::fs::write(&last, bytes).expect("segment");
    c.restart(f);
    c.wait_leader(WAIT);
    write_some(&c, leader, "after", 5);
    c.wait_converged(WAIT);
    assert!(
        c.log_text(f).contains("cut a torn record"),
        "{}",
        c.log_tail(f, 30)
    );
    assert_eq!(kv_keys(&c, f, "torn/").len(), 30);
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[offset] ^= 0x20;
    std::fs::write(path, bytes).expect("write");
}

/// Damage that is not a torn tail, another node's WAL and a missing WAL each stop the
/// start with the file named; restored, the server starts with its state.
#[test]
fn a_damaged_wal_is_refused_by_name() {
    let mut c = Cluster::start(BIN, 2);
    let leader = c.wait_leader(WAIT);
    write_some(&c, leader, "d", 10);
    c.wait_converged(WAIT);
    c.kill(0);
    c.kill(1);
    let wal0 = c.servers[0].data_dir.join("raft").join("wal");
    let saved = c.servers[0].data_dir.join("wal.saved");
    copy_dir(&wal0, &saved);

    // A flipped byte in the first record, with intact records after it.
    let first = segments(&c, 0).remove(0);
    flip(&first, 16 + 30);
    let err = agent_refuses(&c.servers[0].config);
    assert!(
        err.contains(&first.display().to_string()) && err.contains("offset 16"),
        "{err}"
    );

    // Another node's WAL.
    copy_dir(&c.servers[1].data_dir.join("raft").join("wal"), &wal0);
    let err = agent_refuses(&c.servers[0].config);
    assert!(err.contains("belongs to node"), "{err}");

    // No WAL at all, with the node id still there.
    std::fs::remove_dir_all(&wal0).expect("remove");
    let err = agent_refuses(&c.servers[0].config);
    assert!(err.contains("is missing"), "{err}");

    copy_dir(&saved, &wal0);
    c.restart(0);
    c.restart(1);
    let leader = c.wait_leader(WAIT);
    write_some(&c, leader, "after", 1);
    c.wait_converged(WAIT);
    assert_eq!(kv_keys(&c, 0, "d/").len(), 10);
}

fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).expect("remove");
    }
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// A data dir keeps the backend it was made with: a config naming the other is refused
/// with the way to switch, and that way (Consul's: stop, move the raft directory aside,
/// start) works: the server rejoins with an empty log in the new backend and catches up.
#[test]
fn a_data_dir_keeps_its_backend_and_switching_is_consuls_procedure() {
    let mut c = Cluster::start_with(BIN, 3, REDB);
    let leader = c.wait_leader(WAIT);
    write_some(&c, leader, "sw", 20);
    c.wait_converged(WAIT);
    let f = follower_of(&mut c, leader);
    c.terminate(f);
    let config = c.servers[f].config.clone();
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace("backend = \"redb\"", "backend = \"wal\""),
    )
    .expect("config");
    let err = agent_refuses(&config);
    assert!(
        err.contains("keeps the backend") && err.contains("raft.db") && err.contains("aside"),
        "{err}"
    );
    let raft = c.servers[f].data_dir.join("raft");
    std::fs::rename(&raft, c.servers[f].data_dir.join("raft.old")).expect("move aside");
    c.restart(f);
    c.wait_leader(WAIT);
    write_some(&c, leader, "later", 5);
    c.wait_converged(WAIT);
    assert!(raft.join("wal").join("meta").exists());
    assert_eq!(kv_keys(&c, f, "sw/").len(), 20);
    assert!(
        c.log_text(f).contains("backend=wal"),
        "{}",
        c.log_tail(f, 20)
    );
}

const VERIFY: &str = "[raft_logstore.verification]\nenabled = true\ninterval = \"1s\"";

/// Server `i`'s count of the log verifier's `counter`, from `/v1/agent/metrics`.
fn verifier_count(c: &Cluster, i: usize, counter: &str) -> u64 {
    let name = format!("consul.raft.logstore.verifier.{counter}");
    c.client(i)
        .try_get("/v1/agent/metrics")
        .ok()
        .and_then(|r| {
            r.json()["Counters"].as_array().and_then(|cs| {
                cs.iter()
                    .find(|e| e["Name"] == name.as_str())
                    .and_then(|e| e["Count"].as_u64())
            })
        })
        .unwrap_or(0)
}

/// Consul's log verification: the leader's checkpoints verify on every server, and a
/// follower whose log was changed under it (an entry rewritten with a valid record
/// checksum, as a store bug would) reports the mismatch when it reads the range again.
#[test]
fn log_verification_reports_a_follower_log_changed_under_it() {
    use fsmhost::raft::log_store::wal::segment;
    let mut c = Cluster::start_with(BIN, 3, VERIFY);
    let leader = c.wait_leader(WAIT);
    write_some(&c, leader, "v", 20);
    crate::support::wait_until("a verified range on every server", WAIT, || {
        (0..3).all(|i| verifier_count(&c, i, "ranges_verified") >= 1)
    });
    assert!(verifier_count(&c, leader, "checkpoints_written") >= 1);
    let f = follower_of(&mut c, leader);
    c.kill(f);
    // Rewrite the first kv command's record with a later timestamp: same size, valid CRC.
    let segs = segments(&c, f);
    let mut tampered = false;
    for (n, seg) in segs.iter().enumerate() {
        let scanned = segment::scan(seg, n + 1 == segs.len()).expect("scan");
        for rec in &scanned.records {
            let mut entry = rec.entry.clone();
            let openraft::EntryPayload::Normal(fsmhost::raft::Request::Plugin(e)) =
                &mut entry.payload
            else {
                continue;
            };
            if e.plugin != "kv" {
                continue;
            }
            e.timestamp_ms += 1;
            let mut record = Vec::new();
            segment::push_record(&mut record, &fsmhost::codec::to_cbor(&entry), rec.offset);
            let mut bytes = std::fs::read(seg).expect("read");
            let at = rec.offset as usize;
            let old =
                segment::record_size(fsmhost::codec::to_cbor(&rec.entry).len() as u64) as usize;
            assert_eq!(record.len(), old, "the rewritten record keeps its size");
            bytes[at..at + old].copy_from_slice(&record);
            std::fs::write(seg, bytes).expect("write");
            tampered = true;
            break;
        }
        if tampered {
            break;
        }
    }
    assert!(tampered, "found a kv command to rewrite");
    c.restart(f);
    let leader = c.wait_leader(WAIT);
    write_some(&c, leader, "v-after", 1);
    crate::support::wait_until("the mismatch reported", WAIT, || {
        verifier_count(&c, f, "read_checksum_failures") >= 1
    });
    assert!(
        c.log_text(f).contains("checksum mismatch"),
        "{}",
        c.log_tail(f, 20)
    );
    // The others read their logs as the leader did.
    for i in (0..3).filter(|&i| i != f) {
        assert_eq!(verifier_count(&c, i, "read_checksum_failures"), 0);
    }
}
