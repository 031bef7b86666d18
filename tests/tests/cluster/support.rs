//! What the cluster tests share beyond the library's harness and client: the binary under
//! test and its CLI, kv payloads and listings, files for `plugins = [...]`, and polling.

use fsmhost_plugin_kv::{KeysArgs, KeysResult, SetRequest};
use fsmhost_tests::cluster::Cluster;
use fsmhost_tests::{cbor, decode};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The fsmhost binary under test (the `fsmhost-node` bin of this package).
pub const BIN: &str = env!("CARGO_BIN_EXE_fsmhost-node");

/// Runs `cmd` to its end: its exit code (-1 when a signal ended it), stdout and stderr.
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the CLI with `args`: its exit code, stdout and stderr.
pub fn cli(args: &[&str]) -> (i32, String, String) {
    run(Command::new(BIN).args(args))
}

/// Starts an agent with the config file `config` that must refuse to start (exit code 1);
/// returns its stderr.
pub fn agent_refuses(config: &Path) -> String {
    let (code, _, err) = run(Command::new(BIN)
        .args(["agent", "--config-file"])
        .arg(config));
    assert_eq!(code, 1, "the agent must refuse to start");
    err
}

/// Writes `bytes` (a component) to `dir/file`; returns the path as text, for a config.
pub fn write_file(dir: &Path, file: &str, bytes: &[u8]) -> String {
    let path = dir.join(file);
    std::fs::write(&path, bytes).expect("file written");
    path.display().to_string()
}

/// The CBOR payload of kv's `set` of `key` to `value`, flags 0.
pub fn kv_set(key: &str, value: impl AsRef<[u8]>) -> Vec<u8> {
    cbor(&SetRequest {
        tenancy: Default::default(),
        key: key.into(),
        value: value.as_ref().to_vec(),
        flags: 0,
    })
}

/// The kv keys under `prefix` on server `i`, in order, read from its own state (`?stale`).
pub fn kv_keys(c: &Cluster, i: usize, prefix: &str) -> Vec<String> {
    let args = cbor(&KeysArgs {
        tenancy: Default::default(),
        prefix: prefix.into(),
        separator: None,
    });
    let r = c
        .query(i, "kv", "keys", &args, "?stale")
        .expect("query answered");
    assert_eq!(r.status, 200, "{}", r.text());
    decode::<KeysResult>(&r.body).keys
}

/// Polls `f` every 100 ms until it gives a value; panics naming `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` every 100 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    wait_for(what, timeout, || f().then_some(()))
}

/// A server other than `leader` that is running.
pub fn follower_of(c: &mut Cluster, leader: usize) -> usize {
    c.live()
        .into_iter()
        .find(|&i| i != leader)
        .expect("a follower")
}

/// What [`stream_writes`] saw: the keys acknowledged, and how many writes failed.
pub struct Streamed {
    /// Keys whose write was answered 200.
    pub acked: Vec<String>,
    /// Writes answered otherwise, or not answered.
    pub failed: usize,
}

/// `writers` threads each write `per_writer` kv keys `PREFIX/W/NNNN` through `client`;
/// once `after` writes have been tried, `fault` runs (on this thread) while they go on.
/// A writer whose write fails stops when `stop_on_failure` (the servers are all gone),
/// else goes on to its next key.
pub fn stream_writes(
    client: &fsmhost_tests::client::Client,
    (writers, per_writer, prefix): (usize, usize, &str),
    stop_on_failure: bool,
    after: usize,
    fault: impl FnOnce(),
) -> Streamed {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let acked = Mutex::new(Vec::new());
    let (failed, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for w in 0..writers {
            let (acked, failed, done) = (&acked, &failed, &done);
            scope.spawn(move || {
                for n in 0..per_writer {
                    let key = format!("{prefix}/{w}/{n:04}");
                    let body = kv_set(&key, "v");
                    let r =
                        client.try_request("POST", "/v1/apply/kv/set", "application/cbor", body);
                    done.fetch_add(1, Ordering::Relaxed);
                    match r {
                        Ok(r) if r.status == 200 => acked.lock().expect("lock").push(key),
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            if stop_on_failure {
                                return;
                            }
                        }
                    }
                }
            });
        }
        while done.load(Ordering::Relaxed) < after {
            std::thread::sleep(Duration::from_millis(2));
        }
        fault();
    });
    Streamed {
        acked: acked.into_inner().expect("lock"),
        failed: failed.into_inner(),
    }
}
