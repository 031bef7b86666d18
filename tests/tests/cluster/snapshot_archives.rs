//! User snapshot archives on real processes, through the CLI and the HTTP API: save from a
//! cluster (through a follower, and `-stale`), inspect, restore into a fresh cluster with an
//! identical state hash, blocked reads woken by a restore, and refused archives that change
//! nothing.

use crate::support::{BIN, cli, kv_keys};
use fsmhost_plugin_kv::{GetArgs, SetRequest};
use fsmhost_tests::cluster::Cluster;
use fsmhost_tests::{cbor, decode};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// Clusters without the leader's server reconcile (autopilot never judges a round, so the
/// catalog's timer has no servers to register), for tests that compare whole state
/// hashes: a restored state must stay the saved one byte for byte, and a refused archive
/// must change nothing, which the leader registering its servers meanwhile would.
const NO_RECONCILE: &str = "[autopilot]\nupdate_interval = \"1h\"";

fn write_keys(c: &Cluster, i: usize, prefix: &str, n: u32) {
    for k in 0..n {
        let req = cbor(&SetRequest {
            tenancy: Default::default(),
            key: format!("{prefix}{k:04}"),
            value: format!("value {k}").into_bytes(),
            flags: u64::from(k),
        });
        let r = c.apply(i, "kv", "set", &req).expect("write answered");
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

/// Every kv key on server `i`, read from its own state.
fn keys(c: &Cluster, i: usize) -> Vec<String> {
    kv_keys(c, i, "")
}

/// Unpacks an archive into `dir` with the system's tar (not the host's archive code).
fn untar(archive: &Path, dir: &Path) {
    let ok = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Packs `names` from `dir` into a gzip-compressed tar at `archive`, in that order.
fn tar(archive: &Path, dir: &Path, names: &[&str]) {
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .args(names)
        .status()
        .unwrap();
    assert!(ok.success());
}

const FILES: [&str; 3] = ["meta.json", "state.bin", "SHA256SUMS"];

/// Rewrites the archive at `src` into `dst` with `edit` applied to each (name, bytes).
fn rewrite_archive(src: &Path, dst: &Path, edit: impl Fn(&str, Vec<u8>) -> Vec<u8>) {
    let work = tempfile::tempdir().unwrap();
    untar(src, work.path());
    for name in FILES {
        let p = work.path().join(name);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, edit(name, bytes)).unwrap();
    }
    tar(dst, work.path(), &FILES);
}

/// Restores `archive` through the CLI, expecting a refusal: exit code 1 and one line on
/// stderr, which it returns.
fn refused(archive: &Path, addr: &str) -> String {
    let (code, out, err) = cli(&[
        "snapshot",
        "restore",
        archive.to_str().unwrap(),
        "--http-addr",
        addr,
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn save_inspect_and_restore_into_a_fresh_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("backup.snap");
    let archive_s = archive.to_str().unwrap();

    // The source cluster: saved through a follower (forwarded to the leader).
    let (hash, key_list) = {
        let mut src = Cluster::start_with(BIN, 3, NO_RECONCILE);
        let leader = src.wait_leader(WAIT);
        write_keys(&src, leader, "app/", 300);
        let (_, hash) = src.wait_converged_past(300, WAIT);
        let follower = (0..3).find(|&i| i != leader).unwrap();
        let addr = src.servers[follower].http_addr();
        let (code, out, err) = cli(&["snapshot", "save", archive_s, "--http-addr", &addr]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.starts_with("Saved and verified snapshot to index "),
            "{out}"
        );
        // The save left a raft snapshot in the leader's data dir, as Consul's does.
        let snaps = src.servers[leader].data_dir.join("raft").join("snapshots");
        let raw = std::fs::read_dir(&snaps)
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path();

        // inspect: the archive and the raw snapshot directory agree.
        let (code, out, err) = cli(&["snapshot", "inspect", archive_s]);
        assert_eq!(code, 0, "{err}");
        for field in ["ID", "Size", "Index", "Term", "Version"] {
            assert!(out.contains(&format!(" {field} ")), "{field} in:\n{out}");
        }
        let row = out
            .lines()
            .find(|l| l.trim_start().starts_with("kvs"))
            .unwrap();
        assert!(row.split_whitespace().any(|w| w == "300"), "{row}");
        let (code, json, err) = cli(&["snapshot", "inspect", "--format", "json", archive_s]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let kvs = v["Stats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["Name"] == "kvs")
            .unwrap();
        assert_eq!(kvs["Count"], 300);
        let (code, raw_json, err) = cli(&[
            "snapshot",
            "inspect",
            "--format",
            "json",
            raw.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        let r: serde_json::Value = serde_json::from_str(&raw_json).unwrap();
        assert_eq!(r["Stats"], v["Stats"]);

        // -stale on a follower answers from its own state, with X-Consul-Index.
        let r = src.client(follower).get("/v1/snapshot?stale");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/x-gzip"));
        assert!(r.header("x-consul-index").unwrap().parse::<u64>().unwrap() >= 300);
        (hash, keys(&src, leader))
    };
    assert_eq!(key_list.len(), 300);

    // A fresh cluster, with its own data, receives the archive through a follower.
    let mut dst = Cluster::start_with(BIN, 3, NO_RECONCILE);
    let leader = dst.wait_leader(WAIT);
    write_keys(&dst, leader, "other/", 20);
    dst.wait_converged_past(20, WAIT);
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let addr = dst.servers[follower].http_addr();

    // A blocking read on a follower waits on the current index; the restore wakes it.
    let get = cbor(&GetArgs {
        tenancy: Default::default(),
        key: "other/0000".into(),
    });
    let r = dst.query(follower, "kv", "get", &get, "?stale").unwrap();
    let index = r.header("x-consul-index").unwrap().to_string();
    let blocked = {
        let f = dst.client(follower).with_timeout(Duration::from_secs(90));
        std::thread::spawn(move || {
            let started = Instant::now();
            let r = f.request(
                "POST",
                &format!("/v1/query/kv/get?stale&index={index}&wait=60s"),
                "application/cbor",
                &get,
            );
            (started.elapsed(), r.status, r.body)
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    let (code, out, err) = cli(&["snapshot", "restore", archive_s, "--http-addr", &addr]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("Restored snapshot at index "), "{out}");
    let (woke_after, status, body) = blocked.join().unwrap();
    assert!(
        woke_after > Duration::from_millis(400) && woke_after < Duration::from_secs(30),
        "blocked until the restore woke it: {woke_after:?}"
    );
    assert_eq!(status, 200);
    assert_eq!(
        decode::<Option<serde_json::Value>>(&body),
        None,
        "the key is gone after the restore"
    );

    let (_, restored) = dst.wait_converged_past(0, WAIT);
    assert_eq!(restored, hash, "every server holds exactly the saved state");
    for i in 0..3 {
        assert_eq!(keys(&dst, i), key_list, "{}", dst.servers[i].name);
    }

    // Writes go on after the restore, at higher indexes than before it.
    write_keys(&dst, follower, "after/", 5);
    dst.wait_converged_past(0, WAIT);
    assert_eq!(keys(&dst, leader).len(), 305);

    // A server restarted after the restore comes back with the restored state.
    dst.kill(follower);
    dst.restart(follower);
    dst.wait_leader(WAIT);
    let (_, h1) = dst.wait_converged_past(0, WAIT);
    std::thread::sleep(Duration::from_secs(1));
    let (_, h2) = dst.wait_converged_past(0, WAIT);
    assert_eq!(h1, h2);
    assert_eq!(keys(&dst, follower).len(), 305);
}

#[test]
fn damaged_archives_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.snap");
    let mut c = Cluster::start_with(BIN, 1, NO_RECONCILE);
    let leader = c.wait_leader(WAIT);
    write_keys(&c, leader, "k/", 10);
    let addr = c.servers[leader].http_addr();
    let (code, _, err) = cli(&[
        "snapshot",
        "save",
        good.to_str().unwrap(),
        "--http-addr",
        &addr,
    ]);
    assert_eq!(code, 0, "{err}");
    write_keys(&c, leader, "later/", 3);
    let (_, before) = c.wait_converged_past(13, WAIT);

    // A wrong SHA256SUMS line.
    let bad_sum = dir.path().join("bad-sum.snap");
    rewrite_archive(&good, &bad_sum, |name, bytes| {
        if name != "SHA256SUMS" {
            return bytes;
        }
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<String> = text
            .lines()
            .map(|l| match l.strip_suffix("  state.bin") {
                Some(sum) => format!("{}  state.bin", "0".repeat(sum.len())),
                None => l.to_string(),
            })
            .collect();
        lines.join("\n").into_bytes()
    });
    let err = refused(&bad_sum, &addr);
    assert!(
        err.contains("SHA-256 of state.bin") && err.contains("SHA256SUMS says 0000"),
        "{err}"
    );

    // A flipped byte in state.bin with sums made to match: meta.json's CRC catches it.
    let flipped = dir.path().join("flipped.snap");
    let work = tempfile::tempdir().unwrap();
    untar(&good, work.path());
    let state = work.path().join("state.bin");
    let mut bytes = std::fs::read(&state).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&state, &bytes).unwrap();
    let sums = Command::new("sha256sum")
        .args(["meta.json", "state.bin"])
        .current_dir(work.path())
        .output()
        .unwrap();
    std::fs::write(work.path().join("SHA256SUMS"), sums.stdout).unwrap();
    tar(&flipped, work.path(), &FILES);
    let err = refused(&flipped, &addr);
    assert!(err.contains("CRC"), "{err}");

    // A decompression bomb: state.bin grown by 64 MiB of zeros (a few KiB compressed)
    // past what meta.json declares is refused before it is written out; so is a state.bin
    // that comes before meta.json.
    let bomb = dir.path().join("bomb.snap");
    let work = tempfile::tempdir().unwrap();
    untar(&good, work.path());
    let state = work.path().join("state.bin");
    let mut bytes = std::fs::read(&state).unwrap();
    bytes.resize(bytes.len() + (64 << 20), 0);
    std::fs::write(&state, &bytes).unwrap();
    tar(&bomb, work.path(), &FILES);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 1 << 20);
    let err = refused(&bomb, &addr);
    assert!(err.contains("meta.json says"), "{err}");
    let reordered = dir.path().join("reordered.snap");
    let work = tempfile::tempdir().unwrap();
    untar(&good, work.path());
    tar(
        &reordered,
        work.path(),
        &["state.bin", "meta.json", "SHA256SUMS"],
    );
    let err = refused(&reordered, &addr);
    assert!(
        err.contains("state.bin comes before a valid meta.json"),
        "{err}"
    );

    // An unexpected file, and bytes after the gzip stream.
    let extra = dir.path().join("extra.snap");
    let work = tempfile::tempdir().unwrap();
    untar(&good, work.path());
    std::fs::write(work.path().join("notes.txt"), b"hello").unwrap();
    tar(
        &extra,
        work.path(),
        &["meta.json", "state.bin", "SHA256SUMS", "notes.txt"],
    );
    let err = refused(&extra, &addr);
    assert!(err.contains("unexpected file \"notes.txt\""), "{err}");
    let trailing = dir.path().join("trailing.snap");
    let mut bytes = std::fs::read(&good).unwrap();
    bytes.extend_from_slice(b"trailing");
    std::fs::write(&trailing, bytes).unwrap();
    let err = refused(&trailing, &addr);
    assert!(err.contains("bytes follow the gzip stream"), "{err}");

    // ?stale is refused for a restore, as Consul refuses it.
    let r = c.client(leader).put("/v1/snapshot?stale", "x");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("stale not allowed for restore"));

    // Nothing changed, and the server still serves.
    let (_, after) = c.wait_converged_past(13, WAIT);
    assert_eq!(after, before);
    assert_eq!(keys(&c, leader).len(), 13);
    // The good archive still restores.
    let (code, _, err) = cli(&[
        "snapshot",
        "restore",
        good.to_str().unwrap(),
        "--http-addr",
        &addr,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(keys(&c, leader).len(), 10);

    // On a terminal (script(1) gives it one), save and restore show their progress.
    let on_tty = |args: &str| {
        let out = Command::new("script")
            .args([
                "-qec",
                &format!("{BIN} {args} --http-addr {addr}"),
                "/dev/null",
            ])
            .output()
            .expect("script(1) runs");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let again = dir.path().join("again.snap");
    let shown = on_tty(&format!("snapshot save {}", again.display()));
    assert!(
        shown.contains("\rSaved ") && shown.contains(" in "),
        "{shown:?}"
    );
    let shown = on_tty(&format!("snapshot restore {}", again.display()));
    assert!(
        shown.contains("\rSent ") && shown.contains("Restored snapshot"),
        "{shown:?}"
    );
    // Not on a terminal (the cli() calls above): no progress line.
    let (_, _, err) = cli(&[
        "snapshot",
        "save",
        again.to_str().unwrap(),
        "--http-addr",
        &addr,
    ]);
    assert!(!err.contains("Saved"), "{err:?}");
}
