//! Snapshots of 1,000,000 kv entries with 100-byte values: the time to build a raft
//! snapshot (`state.bin` + `meta.json` written and fsynced), to pack it as a user archive,
//! and to restore that archive; and the peak memory of a restore as a multiple of the
//! in-memory state size.
//!
//! The restore runs in a fresh child process (`restore-phase ARCHIVE`), as the leader that
//! receives `PUT /v1/snapshot` does its work: unpack and verify the archive, read every
//! record into a new store (which checks it before anything is committed), then swap that
//! store in for the empty one. Its peak RSS (VmHWM) over its RSS before the
//! restore is compared with the RSS the same state takes in the parent.
//!
//! `cargo bench -p fsmhost --bench snapshot` (set `SNAPSHOT_BENCH_N` for another count, and
//! `SNAPSHOT_BENCH_KEEP=FILE` to keep the archive: `tests/bench-snapshot.sh` restores it into
//! a real server)

use fsmhost::fsm::Fsm;
use fsmhost::plugin::{Runtime, RuntimeConfig};
use fsmhost::raft::StoredMembership;
use fsmhost::raft::depot::read_received;
use fsmhost::snapshot::archive;
use fsmhost::snapshot::state_file::StateHeader;
use fsmhost::snapshot::store::SnapshotStore;
use std::time::Instant;

mod support;

#[global_allocator]
static ALLOC: support::Counting = support::Counting;

const VALUE: usize = 100;

/// A field of /proc/self/status, in bytes.
fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / 1048576.0)
}

fn fsm() -> Fsm {
    let rt = Runtime::new(RuntimeConfig::default()).expect("engine");
    Fsm::new(rt.load_bundled().expect("bundled plugins"))
}

fn restore_phase(archive_path: &str) {
    let fsm = fsm();
    let rss_before = proc_status("VmRSS:");
    let live_before = support::reset_peak();
    let work = tempfile::tempdir().expect("temp dir");
    let t = Instant::now();
    let file = std::fs::File::open(archive_path).expect("archive");
    archive::read(std::io::BufReader::new(file), work.path()).expect("archive reads");
    let unpack = t.elapsed();
    let state = work.path().join("state.bin");
    let t = Instant::now();
    let p = read_received(&fsm, &state).expect("state.bin checks and restores");
    let check = t.elapsed();
    let t = Instant::now();
    fsm.restore(
        p.plugins,
        p.store,
        p.header.system.clone(),
        p.header.fsm_index,
    );
    let apply = t.elapsed();
    let rows = fsm.store().read().len("kvs").expect("kvs");
    println!(
        "{}",
        serde_json::json!({
            "rows": rows,
            "unpack_s": unpack.as_secs_f64(),
            "check_s": check.as_secs_f64(),
            "apply_s": apply.as_secs_f64(),
            "rss_before": rss_before,
            "rss_after": proc_status("VmRSS:"),
            "rss_peak": proc_status("VmHWM:"),
            "live_before": live_before,
            "live_after": support::live(),
            "live_peak": support::peak(),
        })
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "restore-phase") {
        restore_phase(&args[i + 1]);
        return;
    }
    let n: usize = std::env::var("SNAPSHOT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let fsm = fsm();
    let rss_empty = proc_status("VmRSS:");
    let live_empty = support::live();
    let raw = support::fill_kv(&fsm.store(), n, VALUE);
    let state_rss = proc_status("VmRSS:").saturating_sub(rss_empty) as f64;
    let state_live = (support::live() - live_empty) as f64;

    let dir = tempfile::tempdir().expect("temp dir");
    let snapshots = SnapshotStore::open(dir.path().join("snapshots"), 2).expect("snapshot dir");
    let header = StateHeader::new(
        &fsm.plugins(),
        n as u64,
        None,
        StoredMembership::default(),
        fsm.system(),
    );
    let read = fsm.store().read();
    let t = Instant::now();
    let snap = snapshots.create(&read, &header).expect("snapshot written");
    let build = t.elapsed();
    let state_bin = std::fs::metadata(snap.state_path())
        .expect("state.bin")
        .len();

    let archive_path = dir.path().join("backup.snap");
    let t = Instant::now();
    let out = std::fs::File::create(&archive_path).expect("archive file");
    archive::write(&snap.path, std::io::BufWriter::with_capacity(1 << 20, out))
        .expect("archive written");
    let save = t.elapsed();
    let archive_len = std::fs::metadata(&archive_path).expect("archive").len();
    if let Ok(keep) = std::env::var("SNAPSHOT_BENCH_KEEP") {
        std::fs::copy(&archive_path, &keep).expect("archive kept");
    }

    let child = std::process::Command::new(std::env::current_exe().expect("this bench"))
        .arg("restore-phase")
        .arg(&archive_path)
        .output()
        .expect("restore phase runs");
    assert!(
        child.status.success(),
        "{}",
        String::from_utf8_lossy(&child.stderr)
    );
    let line = String::from_utf8_lossy(&child.stdout);
    let r: serde_json::Value = serde_json::from_str(line.trim()).expect("restore phase JSON");
    assert_eq!(r["rows"].as_u64(), Some(n as u64), "every row restored");
    let f = |k: &str| r[k].as_f64().unwrap_or(0.0);

    println!(
        "entries: {n}, value bytes: {VALUE}, raw key+value: {}",
        mib(raw as f64)
    );
    println!(
        "in-memory state: {} (RSS growth), {} (allocator)",
        mib(state_rss),
        mib(state_live)
    );
    println!(
        "snapshot build (state.bin + meta.json, fsynced): {:.2} s; state.bin {}",
        build.as_secs_f64(),
        mib(state_bin as f64)
    );
    println!(
        "archive save (tar.gz of the snapshot): {:.2} s; archive {}",
        save.as_secs_f64(),
        mib(archive_len as f64)
    );
    println!(
        "archive restore: {:.2} s (unpack and verify the archive {:.2} s, read and check every record into a new store {:.2} s, swap it in {:.2} s)",
        f("unpack_s") + f("check_s") + f("apply_s"),
        f("unpack_s"),
        f("check_s"),
        f("apply_s")
    );
    let peak_rss = f("rss_peak") - f("rss_before");
    let peak_live = f("live_peak") - f("live_before");
    println!(
        "restore peak RSS over the process before it: {} = {:.2}x the in-memory state",
        mib(peak_rss),
        peak_rss / state_rss
    );
    println!(
        "restore peak allocated: {} = {:.2}x the in-memory state (allocator)",
        mib(peak_live),
        peak_live / state_live
    );
}
