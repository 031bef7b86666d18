//! Disk faults (issue 23, item 5): a server whose data dir's filesystem fills up.
//!
//! Each server's data dir is a small tmpfs of its own (so the tests need root; they say so
//! and pass without it), and a filler file leaves little room on the one under test. What
//! must hold: a write that fails on storage is answered 5xx naming the storage error, never
//! 200; the server stops loudly (an ERROR naming the error and the data dir, exit code 1)
//! instead of running on with a dead raft; every write answered 200 is still there, read
//! `?consistent` from a healthy server and, once space is freed and the server started
//! again, from it after it caught up.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fsmhost_tests::cluster::Cluster;

use super::support::{BIN, run};

/// The size of each server's filesystem: room for the healthy servers' logs.
const FS_SIZE: &str = "size=32m";
/// One value: half of Consul's largest (512 KiB).
const VALUE: usize = 256 << 10;
/// What the filler leaves free: room for a few values, not for many.
const HEADROOM: u64 = 1 << 20;
/// Writes before the filler.
const BEFORE: usize = 4;
/// Writes before giving up on filling the disk.
const MAX_WRITES: usize = 40;

/// A tmpfs mounted on a directory, unmounted when dropped (lazily: the servers may still
/// hold files open there; the memory goes when they are gone), even if the test panics.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("a mount point");
        let (code, _, err) = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", FS_SIZE, "tmpfs"])
            .arg(dir));
        assert_eq!(code, 0, "mounting a tmpfs on {}: {err}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    /// Bytes free.
    fn free(&self) -> u64 {
        let path = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).expect("a path");
        // SAFETY: statvfs(3) fills the struct it is given; the path is NUL-terminated.
        unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(path.as_ptr(), &mut st), 0, "statvfs");
            st.f_bavail as u64 * st.f_frsize as u64
        }
    }

    /// Writes a filler file that leaves [`HEADROOM`] bytes free; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let size = self.free().saturating_sub(HEADROOM) as usize;
        std::fs::write(&filler, vec![0x5a; size]).expect("the filler written");
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Whether the tests can mount (root); if not, says so.
fn can_mount(test: &str) -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIPPED {test}: it mounts a tmpfs and needs root (it runs as root in CI)");
    }
    root
}

/// A tmpfs on each data dir of a prepared cluster. Declared after the cluster, they are
/// dropped before it: unmounted, then the servers killed and their directory removed.
fn mount_data_dirs(c: &Cluster) -> Vec<Tmpfs> {
    c.servers
        .iter()
        .map(|s| Tmpfs::mount(&s.data_dir))
        .collect()
}

/// Writes key `i` through server `on`, which must answer 200.
fn put_ok(c: &Cluster, on: usize, i: usize) {
    let r = c
        .client(on)
        .with_timeout(Duration::from_secs(15))
        .put(&key(i), value(i));
    assert_eq!(
        r.status,
        200,
        "{} on {}: {}",
        key(i),
        c.servers[on].name,
        r.text()
    );
}

/// The value written at key `i`: distinct for every key, [`VALUE`] bytes.
fn value(i: usize) -> Vec<u8> {
    format!("{i:08}|").into_bytes().repeat(VALUE / 9 + 1)[..VALUE].to_vec()
}

fn key(i: usize) -> String {
    format!("/v1/kv/disk/{i}")
}

/// Asserts that server `i` holds every key of `acked` with its value, read with `query`
/// (`consistent`, `stale`).
fn assert_all_present(c: &Cluster, i: usize, acked: &[usize], query: &str) {
    let client = c.client(i).with_timeout(Duration::from_secs(10));
    for &k in acked {
        let r = client.get(&format!("{}?raw&{query}", key(k)));
        assert_eq!(
            r.status,
            200,
            "{} on {}: {}",
            key(k),
            c.servers[i].name,
            r.text()
        );
        assert!(
            r.body == value(k),
            "{} on {}: an acknowledged write came back different",
            key(k),
            c.servers[i].name
        );
    }
}

/// Asserts that server `i` stopped on its own with exit code 1 and the loud log line.
fn assert_stopped_loudly(c: &mut Cluster, i: usize) {
    let code = c.wait_exit(i, Duration::from_secs(20));
    let log = c.log_text(i);
    assert_eq!(
        code,
        Some(1),
        "{} must exit 1 once raft stopped on the full disk; log:\n{}",
        c.servers[i].name,
        c.log_tail(i, 30)
    );
    let data_dir = c.servers[i].data_dir.display().to_string();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("raft stopped")
            && l.contains("No space left on device")
            && l.contains(&data_dir)
            && l.contains("Free space")),
        "no ERROR line naming the storage error, the data dir and what to do:\n{}",
        c.log_tail(i, 30)
    );
}

/// The leader's disk fills: a write gets Consul's 500 naming the error (never a 200 for a write that
/// was not stored), the leader stops loudly, the others elect a new one and hold every
/// acknowledged write; freed and restarted, the old leader catches up and has them all.
#[test]
fn a_leader_whose_disk_fills_refuses_writes_stops_loudly_and_loses_nothing() {
    if !can_mount("a_leader_whose_disk_fills") {
        return;
    }
    let mut c = Cluster::prepare(BIN, 3, "");
    let mounts = mount_data_dirs(&c);
    c.start_prepared();
    let leader = c.wait_leader(Duration::from_secs(30));
    let mut acked: Vec<usize> = (0..BEFORE).inspect(|&i| put_ok(&c, leader, i)).collect();
    let filler = mounts[leader].fill();
    let client = c.client(leader).with_timeout(Duration::from_secs(15));
    let mut refusal = None;
    for i in BEFORE..MAX_WRITES {
        match client.try_request("PUT", &key(i), "application/octet-stream", value(i)) {
            Ok(r) if r.status == 200 => acked.push(i),
            Ok(r) => {
                refusal = Some((r.status, r.text()));
                break;
            }
            Err(e) => panic!("PUT {} got no answer: {e}", key(i)),
        }
    }
    let (status, message) = refusal.unwrap_or_else(|| {
        panic!("{MAX_WRITES} writes of {VALUE} bytes fitted in {HEADROOM} bytes")
    });
    assert!(
        status == 500 && message.contains("No space left on device"),
        "a write the full disk refused: {status} {message}"
    );
    eprintln!(
        "{} writes acknowledged, then {status} {message}",
        acked.len()
    );
    assert_stopped_loudly(&mut c, leader);

    let new = c.wait_leader(Duration::from_secs(30));
    assert_ne!(new, leader);
    assert_all_present(&c, new, &acked, "consistent");

    std::fs::remove_file(&filler).expect("the filler removed");
    c.restart(leader);
    c.wait_converged(Duration::from_secs(30));
    assert_all_present(&c, leader, &acked, "stale");
    put_ok(&c, leader, MAX_WRITES);
}

/// A follower's disk fills: the cluster keeps accepting writes (a quorum remains), the
/// follower stops loudly; freed and restarted, it catches up to the same state.
#[test]
fn a_follower_whose_disk_fills_stops_loudly_and_catches_up() {
    if !can_mount("a_follower_whose_disk_fills") {
        return;
    }
    let mut c = Cluster::prepare(BIN, 3, "");
    let mounts = mount_data_dirs(&c);
    c.start_prepared();
    let leader = c.wait_leader(Duration::from_secs(30));
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    let mut acked: Vec<usize> = (0..BEFORE).inspect(|&i| put_ok(&c, leader, i)).collect();
    let filler = mounts[follower].fill();
    // A quorum remains: every write is acknowledged, before the follower stops and after.
    for i in BEFORE..MAX_WRITES {
        put_ok(&c, leader, i);
        acked.push(i);
        if !c.servers[follower].is_running() && acked.len() >= 2 * BEFORE {
            break;
        }
    }
    eprintln!(
        "{} writes acknowledged while the follower stopped",
        acked.len()
    );
    assert_stopped_loudly(&mut c, follower);
    assert_all_present(&c, leader, &acked, "consistent");

    std::fs::remove_file(&filler).expect("the filler removed");
    c.restart(follower);
    c.wait_converged(Duration::from_secs(30));
    assert_all_present(&c, follower, &acked, "stale");
}
