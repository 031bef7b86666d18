//! Consul's KV and Txn HTTP API, served by the kv plugin's routes, on real server processes:
//! the request and response examples of Consul's KV and Txn API documentation, errors,
//! blocking reads, consistency modes, and the `fsmhost kv` and `fsmhost members` commands.

use crate::support::{BIN, run};
use fsmhost_tests::client::{Client, HttpReply};
use fsmhost_tests::cluster::Cluster;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

fn one_server() -> (Cluster, Client) {
    let mut c = Cluster::start(BIN, 1);
    let leader = c.wait_leader(Duration::from_secs(30));
    let client = c.client(leader);
    (c, client)
}

#[test]
fn the_kv_documentation_examples() {
    let (_c, a) = one_server();
    // Create/Update Key: `curl --request PUT --data @contents .../v1/kv/my-key` answers true.
    let r = a.put("/v1/kv/my-key", "test");
    assert_eq!((r.status, r.text().as_str()), (200, "true"));
    let written = r.index();
    // Read Key: an array of one DirEntry, the value in base64; X-Consul-Index is its index.
    let r = a.get("/v1/kv/my-key");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!([{"LockIndex": 0, "Key": "my-key", "Flags": 0, "Value": "dGVzdA==",
            "CreateIndex": written, "ModifyIndex": written}])
    );
    assert_eq!(r.index(), written);
    assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"));
    assert!(r.header("X-Consul-LastContact").is_some());
    // Raw Response: not JSON, text/plain, the bytes themselves.
    let r = a.get("/v1/kv/my-key?raw");
    assert_eq!(
        (r.header("Content-Type"), r.body.as_slice()),
        (Some("text/plain"), &b"test"[..])
    );
    // Keys Response: listing /web/ with a / separator.
    for k in ["/web/bar", "/web/foo", "/web/subdir/a", "/web/subdir/b"] {
        assert_eq!(a.put(&format!("/v1/kv/{k}"), "x").status, 200);
    }
    let r = a.get("/v1/kv//web/?keys&separator=/");
    assert_eq!(r.json(), json!(["/web/bar", "/web/foo", "/web/subdir/"]));
    let r = a.get("/v1/kv//web/?recurse");
    let keys: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        ["/web/bar", "/web/foo", "/web/subdir/a", "/web/subdir/b"]
    );
    // Delete Key: true; then a 404 with an empty body and the index header.
    let r = a.delete("/v1/kv/my-key");
    assert_eq!(r.text(), "true");
    let deleted = r.index();
    let r = a.get("/v1/kv/my-key");
    assert_eq!((r.status, r.body.len()), (404, 0));
    assert!(r.index() >= deleted, "the 404 carries the index header");
    // Keys with characters that need encoding round-trip.
    assert_eq!(a.put("/v1/kv/sp%20ace%3F", "q").status, 200);
    let r = a.get("/v1/kv/sp%20ace%3F");
    assert_eq!(r.json()[0]["Key"], "sp ace?");
}

#[test]
fn kv_flags_cas_recurse_and_errors() {
    let (_c, a) = one_server();
    let r = a.put("/v1/kv/app/k?flags=42", "v1");
    assert_eq!(r.text(), "true");
    let created = r.index();
    let e = &a.get("/v1/kv/app/k").json()[0];
    assert_eq!(
        (e["Flags"].as_u64(), e["ModifyIndex"].as_u64()),
        (Some(42), Some(created))
    );
    // cas=0 writes only a new key; cas=<ModifyIndex> only over that version.
    assert_eq!(a.put("/v1/kv/app/k?cas=0", "x").text(), "false");
    assert_eq!(a.put("/v1/kv/app/k?cas=999", "x").text(), "false");
    assert_eq!(
        a.put(&format!("/v1/kv/app/k?cas={created}"), "v2").text(),
        "true"
    );
    assert_eq!(a.put("/v1/kv/app/new?cas=0", "n").text(), "true");
    // DELETE ?cas: 0 never deletes, a stale index does not, the current one does.
    assert_eq!(a.delete("/v1/kv/app/new?cas=0").text(), "false");
    let m = a.get("/v1/kv/app/new").json()[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    assert_eq!(a.delete(&format!("/v1/kv/app/new?cas={m}")).text(), "true");
    // Refusals name the problem and change nothing.
    for (method, path, body, status, text) in [
        ("GET", "/v1/kv/", &b""[..], 400, "Missing key name"),
        ("PUT", "/v1/kv/", b"v", 400, "Missing key name"),
        ("DELETE", "/v1/kv/", b"", 400, "Missing key name"),
        ("PUT", "/v1/kv/app/k?flags=abc", b"v", 400, "flags: \"abc\""),
        ("PUT", "/v1/kv/app/k?cas=-1", b"v", 400, "cas: \"-1\""),
        (
            "DELETE",
            "/v1/kv/app/?recurse&cas=3",
            b"",
            400,
            "Conflicting flags: cas=3&recurse=",
        ),
        (
            "PUT",
            "/v1/kv/app/k?acquire=abc",
            b"v",
            400,
            "invalid session \"abc\"",
        ),
        ("PUT", "/v1/kv/app/k?index=x", b"v", 400, "index: \"x\""),
        (
            "GET",
            "/v1/kv/app/k?stale&consistent",
            b"",
            400,
            "cannot be used together",
        ),
        (
            "PATCH",
            "/v1/kv/app/k",
            b"",
            404,
            "no route PATCH /v1/kv/app/k",
        ),
    ] {
        let r = a.request(method, path, "", body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert!(r.text().contains(text), "{method} {path}: {}", r.text());
    }
    let big = vec![b'x'; 512 * 1024 + 1];
    let r = a.put("/v1/kv/app/big", &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.text().contains("too large, max size: 524288 bytes"),
        "{}",
        r.text()
    );
    let r = a.get("/v1/kv/app/k");
    assert_eq!(r.json()[0]["Value"], "djI=", "still v2");
    // ?recurse deletes a prefix; ?stale and ?consistent reads agree on one server.
    assert_eq!(a.put("/v1/kv/app/sub/x", "1").status, 200);
    assert_eq!(a.delete("/v1/kv/app/?recurse").text(), "true");
    for mode in ["", "&stale", "&consistent"] {
        let r = a.get(&format!("/v1/kv/app/?recurse{mode}"));
        assert_eq!(r.status, 404, "{mode}");
    }
}

fn txn(a: &Client, ops: Value) -> HttpReply {
    a.put("/v1/txn", ops.to_string())
}

#[test]
fn the_txn_documentation_shapes() {
    let (_c, a) = one_server();
    // A write transaction: Results in order, Value null except for reads; Errors null.
    let r = txn(
        &a,
        json!([
            {"KV": {"Verb": "set", "Key": "t/a", "Value": "aGVsbG8gd29ybGQ=", "Flags": 23}},
            {"KV": {"Verb": "get", "Key": "t/a"}},
            {"KV": {"Verb": "set", "Key": "t/b", "Value": "Yg=="}},
            {"KV": {"Verb": "delete", "Key": "t/b"}},
        ]),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let i = r.index();
    assert_eq!(v["Errors"], Value::Null);
    let results = v["Results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "delete verbs add no result: {v}");
    assert_eq!(
        results[0],
        json!({"KV": {"LockIndex": 0, "Key": "t/a", "Flags": 23, "Value": null,
            "CreateIndex": i, "ModifyIndex": i}})
    );
    assert_eq!(results[1]["KV"]["Value"], "aGVsbG8gd29ybGQ=");
    // A failed transaction: 409, Results null, every failure with its OpIndex; nothing
    // written, not even the operations before the failure.
    let r = txn(
        &a,
        json!([
            {"KV": {"Verb": "set", "Key": "t/c", "Value": "Yw=="}},
            {"KV": {"Verb": "check-index", "Key": "t/a", "Index": 999}},
            {"KV": {"Verb": "get", "Key": "t/missing"}},
            {"KV": {"Verb": "delete-cas", "Key": "t/a", "Index": 999}},
        ]),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"Results": null, "Errors": [
            {"OpIndex": 1, "What": format!("failed index check for key \"t/a\", current modify index {i} != 999")},
            {"OpIndex": 2, "What": "key \"t/missing\" doesn't exist"},
            {"OpIndex": 3, "What": "failed to delete key \"t/a\", index is stale"},
        ]})
    );
    assert_eq!(a.get("/v1/kv/t/c").status, 404, "rolled back");
    // Reads only: served as a query (with ?stale too), the body carries Index.
    let r = txn(
        &a,
        json!([{"KV": {"Verb": "get-tree", "Key": "t/"}}, {"KV": {"Verb": "check-not-exists", "Key": "t/zz"}}]),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Index"].as_u64(), Some(i));
    assert_eq!(r.json()["Results"].as_array().map(Vec::len), Some(1));
    let r = a.put(
        "/v1/txn?stale",
        json!([{"KV": {"Verb": "get", "Key": "t/a"}}]).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Malformed requests: 400 or 413 with Consul's wording, before anything runs.
    let r = a.put("/v1/txn", "{not json");
    assert_eq!(r.status, 400);
    assert!(
        r.text().starts_with("Failed to parse body: "),
        "{}",
        r.text()
    );
    let r = txn(
        &a,
        json!([{"KV": {"Verb": "set", "Key": "k", "Value": "%%%"}}]),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = txn(&a, json!([{"KV": {"Verb": "set", "Key": "k", "Bogus": 1}}]));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("unknown field"), "{}", r.text());
    let ops: Vec<Value> = (0..65)
        .map(|i| json!({"KV": {"Verb": "set", "Key": format!("k{i}")}}))
        .collect();
    let r = txn(&a, json!(ops));
    assert_eq!(
        (r.status, r.text().as_str()),
        (413, "Transaction contains too many operations (65 > 64)")
    );
    let r = txn(
        &a,
        json!([{"KV": {"Verb": "frob", "Key": "k"}}, {"KV": {"Verb": "set", "Key": ""}}]),
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["Errors"],
        json!([{"OpIndex": 0, "What": "unknown KV verb \"frob\""}, {"OpIndex": 1, "What": "Must provide key"}])
    );
    let r = txn(
        &a,
        json!([{"Node": {"Verb": "set", "Node": {"Node": "n"}}}]),
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("KV operations only"), "{}", r.text());
    let r = txn(
        &a,
        json!([{"KV": {"Verb": "lock", "Key": "t/a", "Session": "s1"}}]),
    );
    assert_eq!(r.json()["Errors"][0]["What"], "invalid session \"s1\"");
}

#[test]
fn a_blocking_read_wakes_on_a_write_and_returns_at_its_wait() {
    let (_c, a) = one_server();
    let r = a.put("/v1/kv/watched", "1");
    let index = r.index();
    // Woken by a write: the answer follows the write within 50 ms.
    let reader = {
        let a = a.clone();
        std::thread::spawn(move || {
            let r = a.get(&format!("/v1/kv/watched?index={index}&wait=30s"));
            (Instant::now(), r)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let r = a.put("/v1/kv/watched", "2");
    let written = Instant::now();
    let new_index = r.index();
    let (answered, r) = reader.join().unwrap();
    let late = answered.saturating_duration_since(written);
    assert!(
        late < Duration::from_millis(50),
        "woken {late:?} after the write"
    );
    assert_eq!(r.index(), new_index);
    assert_eq!(r.json()[0]["Value"], "Mg==");
    // Nothing changes: the read returns at its wait (plus at most wait/16 of jitter) with
    // the same index.
    let started = Instant::now();
    let r = a.get(&format!("/v1/kv/watched?index={new_index}&wait=1s"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert_eq!(r.index(), new_index);
    // The generic query endpoint and keys listings block the same way.
    let r = a.get(&format!("/v1/kv/?keys&index={new_index}&wait=100ms"));
    assert_eq!((r.status, r.index()), (200, new_index));
}

#[test]
fn writes_and_reads_through_a_follower() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader(Duration::from_secs(30));
    let f = (0..3).find(|i| *i != leader).unwrap();
    let fa = c.client(f);
    let r = fa.put("/v1/kv/through/follower", "yes");
    assert_eq!(r.text(), "true");
    let index = r.index();
    let r = fa.get("/v1/kv/through/follower");
    assert_eq!((r.status, r.index()), (200, index));
    let r = txn(
        &fa,
        json!([{"KV": {"Verb": "cas", "Key": "through/follower", "Value": "bm8=", "Index": index}}]),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    c.wait_converged(Duration::from_secs(30));
}

/// Runs the CLI with `FSMHOST_HTTP_ADDR` set to `addr`: its exit code, stdout and stderr.
fn cli(addr: &str, args: &[&str]) -> (i32, String, String) {
    run(Command::new(BIN).args(args).env("FSMHOST_HTTP_ADDR", addr))
}

#[test]
fn the_kv_and_members_commands() {
    let (_c, a) = one_server();
    let ok = |args: &[&str]| {
        let (code, out, err) = cli(a.addr(), args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    assert_eq!(
        ok(&["kv", "put", "redis/config/connections", "5"]),
        "Success! Data written to: redis/config/connections\n"
    );
    assert_eq!(
        ok(&["kv", "put", "-flags=42", "redis/config/users/admin", "abc"]),
        "Success! Data written to: redis/config/users/admin\n"
    );
    let file = std::env::temp_dir().join(format!("fsmhost-kv-{}.txt", std::process::id()));
    std::fs::write(&file, "from a file").unwrap();
    ok(&["kv", "put", "redis/file", &format!("@{}", file.display())]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(ok(&["kv", "get", "redis/config/connections"]), "5\n");
    assert_eq!(ok(&["kv", "get", "redis/file"]), "from a file\n");
    assert_eq!(
        ok(&["kv", "get", "-recurse", "redis/config"]),
        "redis/config/connections:5\nredis/config/users/admin:abc\n"
    );
    assert_eq!(
        ok(&["kv", "get", "-keys", "redis/"]),
        "redis/config/\nredis/file\n"
    );
    let detailed = ok(&["kv", "get", "-detailed", "redis/config/users/admin"]);
    assert!(detailed.contains("Flags            42\n"), "{detailed}");
    let modify: u64 = detailed
        .lines()
        .find_map(|l| l.strip_prefix("ModifyIndex"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    // -cas with a stale index fails with a non-zero exit; with the current one it writes.
    let (code, _, err) = cli(
        a.addr(),
        &[
            "kv",
            "put",
            "-cas",
            "-modify-index=1",
            "redis/config/users/admin",
            "x",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("CAS failed"), "{err}");
    ok(&[
        "kv",
        "put",
        "-cas",
        &format!("-modify-index={modify}"),
        "redis/config/users/admin",
        "y",
    ]);
    let (code, _, err) = cli(a.addr(), &["kv", "get", "redis/nope"]);
    assert_eq!(
        (code, err.trim()),
        (1, "error: No key exists at: redis/nope")
    );
    let (code, _, err) = cli(a.addr(), &["kv", "delete", "-cas", "-recurse", "redis/"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Cannot specify both -cas and -recurse!"),
        "{err}"
    );
    assert_eq!(
        ok(&["kv", "delete", "redis/file"]),
        "Success! Deleted key: redis/file\n"
    );
    assert_eq!(
        ok(&["kv", "delete", "-recurse", "redis/"]),
        "Success! Deleted keys with prefix: redis/\n"
    );
    assert_eq!(ok(&["kv", "get", "-recurse", "redis/"]), "");
    // Errors from the server are one readable line and a non-zero exit.
    let big = std::env::temp_dir().join(format!("fsmhost-kv-big-{}.bin", std::process::id()));
    std::fs::write(&big, vec![b'x'; 600 * 1024]).unwrap();
    let (code, _, err) = cli(
        a.addr(),
        &["kv", "put", "big", &format!("@{}", big.display())],
    );
    let _ = std::fs::remove_file(&big);
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("413") && err.contains("too large"), "{err}");
    let (code, _, err) = cli("127.0.0.1:1", &["kv", "get", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("127.0.0.1:1"), "{err}");

    let out = ok(&["members"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("Node") && lines[0].contains("Status"),
        "{out}"
    );
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[1].contains("alive") && lines[1].contains("server"),
        "{out}"
    );
}

/// Consul's rule that a write's index is above every index read before it, on a fresh
/// server whose only plugin is kv (no leader reconcile writing first): an empty store
/// answers index 1, so the first write takes index 2, a check-and-set against index 1
/// fails, and a blocking read from index 1 wakes for it.
#[test]
fn the_first_write_is_above_the_index_an_empty_store_reports() {
    let files = tempfile::tempdir().unwrap();
    let kv = files.path().join("kv.wasm");
    std::fs::write(&kv, fsmhost_tests::bundled("kv")).unwrap();
    let mut c = fsmhost_tests::cluster::Cluster::start_with(
        crate::support::BIN,
        1,
        &format!("plugins = [{:?}]", kv.display().to_string()),
    );
    let leader = c.wait_leader(std::time::Duration::from_secs(30));
    let s = c.client(leader);
    let empty = s.get("/v1/kv/?recurse");
    assert_eq!((empty.status, empty.index()), (404, 1));
    let blocked = {
        let s = s.clone();
        std::thread::spawn(move || s.get("/v1/kv/?recurse&index=1&wait=30s"))
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let put = s.put("/v1/kv/a", "x");
    assert_eq!(put.text(), "true");
    assert!(
        put.index() >= 2,
        "the first write took index {}",
        put.index()
    );
    let woke = blocked.join().unwrap();
    assert_eq!(woke.status, 200);
    assert!(woke.index() > 1, "{}", woke.index());
    let entry = s.get("/v1/kv/a").json();
    assert!(entry[0]["ModifyIndex"].as_u64().unwrap() >= 2, "{entry}");
    // A check-and-set against the index an empty read reported must fail.
    assert_eq!(s.put("/v1/kv/a?cas=1", "y").text(), "false");
}
