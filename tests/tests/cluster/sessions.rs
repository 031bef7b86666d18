//! Sessions, locks and leader timers on real processes (issue "Sessions"): the servers in
//! the catalog with `serfHealth` following autopilot, TTL expiry and its timing, a lock
//! held across a leader failover, and `fsmhost lock` handing a lock and a semaphore
//! between processes. (py-consul's view of sessions and locks, lock-delay, `delete`
//! behaviour and invalidation, is `wire_compat::py_consul_sessions_and_locks`.)

use crate::support::{BIN, wait_for, wait_until};
use fsmhost_tests::client::Client;
use fsmhost_tests::cluster::Cluster;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// The `serfHealth` status of node `name`, as server `c` answers it.
fn serf_health(c: &Client, name: &str) -> Option<String> {
    let r = c.get(&format!("/v1/health/node/{name}"));
    let checks = r.json();
    checks
        .as_array()?
        .iter()
        .find(|ch| ch["CheckID"] == "serfHealth")
        .and_then(|ch| ch["Status"].as_str().map(String::from))
}

fn create_session(c: &Client, body: Value) -> String {
    let r = c.put("/v1/session/create", body.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["ID"].as_str().expect("an ID").to_string()
}

fn session_exists(c: &Client, id: &str) -> bool {
    let r = c.get(&format!("/v1/session/info/{id}"));
    r.status == 200 && r.json().as_array().is_some_and(|a| !a.is_empty())
}

#[test]
fn servers_are_catalog_nodes_whose_serf_health_follows_autopilot() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_servers_registered(WAIT);
    let l = c.client(leader);
    let nodes = l.get("/v1/catalog/service/consul").json();
    let mut names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["s1", "s2", "s3"]);
    for n in nodes.as_array().unwrap() {
        assert_eq!(n["Datacenter"], "dc1", "{n}");
        assert_eq!(n["Address"], "127.0.0.1", "{n}");
        assert_eq!(n["TaggedAddresses"]["lan"], "127.0.0.1", "{n}");
        let port = c.servers[n["Node"].as_str().unwrap()[1..].parse::<usize>().unwrap() - 1]
            .rpc_addr()
            .rsplit_once(':')
            .unwrap()
            .1
            .parse::<u64>()
            .unwrap();
        assert_eq!(n["ServicePort"], port, "{n}");
    }
    // A steady cluster writes nothing more for it.
    let applied = c.state(leader).unwrap().applied;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        c.state(leader).unwrap().applied,
        applied,
        "the reconcile re-registers"
    );

    // A killed server turns critical; back, it passes again.
    let victim = (leader + 1) % 3;
    let name = format!("s{}", victim + 1);
    c.kill(victim);
    wait_until("serfHealth critical", WAIT, || {
        serf_health(&l, &name).as_deref() == Some("critical")
    });
    c.restart(victim);
    wait_until("serfHealth passing", WAIT, || {
        serf_health(&l, &name).as_deref() == Some("passing")
    });
}

#[test]
fn a_ttl_session_expires_after_twice_its_ttl_unless_renewed() {
    let mut c = Cluster::start(BIN, 1);
    let leader = c.wait_servers_registered(WAIT);
    let s = c.client(leader);
    let kept = create_session(&s, json!({"TTL": "10s", "LockDelay": "0s"}));
    let lapsed = create_session(&s, json!({"TTL": "10s", "LockDelay": "0s"}));
    let created = Instant::now();
    assert_eq!(
        s.put(&format!("/v1/kv/held?acquire={lapsed}"), "x").text(),
        "true"
    );
    // Renew one every 5 s; leave the other. Consul keeps a session up to twice its TTL.
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let r = s.put(&format!("/v1/session/renew/{kept}"), "");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()[0]["ID"], kept.as_str());
        let exists = session_exists(&s, &lapsed);
        if created.elapsed() >= Duration::from_secs(19) {
            break;
        }
        assert!(exists, "expired before 2 x TTL, at {:?}", created.elapsed());
    }
    wait_until(
        "the unrenewed session expires",
        Duration::from_secs(15),
        || !session_exists(&s, &lapsed),
    );
    let expired_after = created.elapsed();
    assert!(
        (Duration::from_secs(19)..Duration::from_secs(26)).contains(&expired_after),
        "expired after {expired_after:?}"
    );
    assert!(session_exists(&s, &kept), "the renewed one lives on");
    // Its lock was released with it.
    let e = s.get("/v1/kv/held").json();
    assert!(e[0].get("Session").is_none(), "{e}");
}

#[test]
fn a_lock_held_across_a_leader_failover_lasts_until_its_ttl_on_the_new_leader() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_servers_registered(WAIT);
    let follower = (leader + 1) % 3;
    let f = c.client(follower);
    // A session on a node of its own without checks: the killed leader's serfHealth going
    // critical must not be what ends it.
    let r = f.put(
        "/v1/catalog/register",
        r#"{"Node":"app","Address":"10.0.0.9"}"#,
    );
    assert_eq!(r.status, 200);
    let session = create_session(
        &f,
        json!({"Node": "app", "Checks": [], "TTL": "10s", "LockDelay": "0s"}),
    );
    assert_eq!(
        f.put(&format!("/v1/kv/leader?acquire={session}"), "me")
            .text(),
        "true"
    );
    c.kill(leader);
    let new_leader = wait_for("a new leader", WAIT, || {
        let l = c.wait_leader(WAIT);
        (l != leader).then_some(l)
    });
    let failed_over = Instant::now();
    let n = c.client(new_leader);
    // Renewed on the new leader: it stays.
    let r = n.put(&format!("/v1/session/renew/{session}"), "");
    assert_eq!(r.status, 200, "{}", r.text());
    let renewed = Instant::now();
    assert_eq!(
        n.get("/v1/kv/leader").json()[0]["Session"],
        session.as_str()
    );
    // Not renewed any more: valid until twice the TTL after the renewal, then gone with
    // the lock.
    std::thread::sleep(Duration::from_secs(15));
    assert!(
        session_exists(&n, &session),
        "expired early after the failover"
    );
    wait_until("the session expires", Duration::from_secs(20), || {
        !session_exists(&n, &session)
    });
    assert!(renewed.elapsed() >= Duration::from_secs(20));
    assert!(failed_over.elapsed() < Duration::from_secs(40));
    let e = n.get("/v1/kv/leader").json();
    assert!(e[0].get("Session").is_none(), "{e}");
}

/// Whether a session holds `key`.
fn held(c: &Client, key: &str) -> bool {
    let r = c.get(&format!("/v1/kv/{key}"));
    r.status == 200 && r.json()[0].get("Session").is_some_and(|s| s.is_string())
}

/// Starts `fsmhost lock` against `addr` with `args`, its output piped.
fn lock(addr: &str, args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args(["lock", "-http-addr", addr])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fsmhost lock starts")
}

fn finish(child: std::process::Child) -> (i32, String, String) {
    let out = child.wait_with_output().expect("fsmhost lock ends");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fsmhost_lock_hands_a_lock_and_a_semaphore_between_processes() {
    let mut c = Cluster::start(BIN, 1);
    let leader = c.wait_servers_registered(WAIT);
    let addr = c.servers[leader].http_addr();
    let log = tempfile::tempdir().unwrap();
    let file = log.path().join("log");
    let f = file.display();
    // Two holders of one lock: the second starts its child only after the first ended.
    let a = lock(
        &addr,
        &[
            "svc/job",
            &format!("echo a-start >> {f}; sleep 2; echo a-end >> {f}"),
        ],
    );
    let s = c.client(leader);
    wait_until("the first holder has the lock", WAIT, || {
        held(&s, "svc/job/.lock")
    });
    let b = lock(
        &addr,
        &[
            "svc/job",
            &format!("echo b-start >> {f}; echo b-end >> {f}; exit 7"),
        ],
    );
    let (code_a, _, err_a) = finish(a);
    let (code_b, _, err_b) = finish(b);
    assert_eq!(code_a, 0, "{err_a}");
    assert_eq!(code_b, 7, "the child's exit code passes through: {err_b}");
    let lines = std::fs::read_to_string(&file).unwrap();
    assert_eq!(lines, "a-start\na-end\nb-start\nb-end\n");
    // Released: the key has no holder, and no session is left.
    let e = s.get("/v1/kv/svc/job/.lock").json();
    assert!(e[0].get("Session").is_none(), "{e}");
    assert_eq!(s.get("/v1/session/list").json(), json!([]));

    // A semaphore of 2: three holders, never more than two at once.
    std::fs::write(&file, "").unwrap();
    let holders: Vec<_> = ["x", "y", "z"]
        .iter()
        .map(|h| {
            lock(
                &addr,
                &[
                    "-n",
                    "2",
                    "svc/pool",
                    &format!("echo +{h} >> {f}; sleep 2; echo -{h} >> {f}"),
                ],
            )
        })
        .collect();
    for h in holders {
        let (code, _, err) = finish(h);
        assert_eq!(code, 0, "{err}");
    }
    let events = std::fs::read_to_string(&file).unwrap();
    let (mut inside, mut most) = (0, 0);
    for e in events.lines() {
        inside += if e.starts_with('+') { 1 } else { -1 };
        most = most.max(inside);
    }
    assert_eq!((events.lines().count(), most), (6, 2), "{events}");

    // A timeout while the lock is held elsewhere: exit 1, the child never runs.
    let holder = lock(&addr, &["svc/busy", "sleep 3"]);
    wait_until("the holder has the lock", WAIT, || {
        held(&s, "svc/busy/.lock")
    });
    let (code, out, err) = finish(lock(&addr, &["-timeout", "1s", "svc/busy", "echo ran"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("Lock acquisition failed: timeout"), "{err}");
    assert!(!out.contains("ran"));
    assert_eq!(finish(holder).0, 0);
}

/// The `tombstones` row count a server reports (`consul.state.rows`).
fn tombstones(c: &Client) -> f64 {
    let m = c.get("/v1/agent/metrics").json();
    m["Gauges"]
        .as_array()
        .and_then(|g| {
            g.iter()
                .find(|x| x["Name"] == "consul.state.rows" && x["Labels"]["table"] == "tombstones")
        })
        .and_then(|x| x["Value"].as_f64())
        .expect("a tombstones gauge")
}

#[test]
fn tombstones_are_reaped_after_a_short_tombstone_ttl() {
    let mut c = Cluster::start_with(BIN, 3, "tombstone_ttl = \"2s\"");
    let leader = c.wait_leader(WAIT);
    let s = c.client(leader);
    for k in 0..50 {
        assert_eq!(s.put(&format!("/v1/kv/gone/{k}"), "x").text(), "true");
    }
    assert_eq!(s.delete("/v1/kv/gone/?recurse").status, 200);
    for k in 0..10 {
        assert_eq!(s.put(&format!("/v1/kv/one/{k}"), "x").text(), "true");
        assert_eq!(s.delete(&format!("/v1/kv/one/{k}")).status, 200);
    }
    let deleted = Instant::now();
    let before = s.get("/v1/kv/one/?keys");
    assert_eq!(before.status, 404);
    let index_before = before.index();
    assert!(tombstones(&s) > 0.0);
    // Consul's granularity: a tombstone's 30 s bucket must end, then the TTL pass.
    wait_until("the tombstones are reaped", Duration::from_secs(60), || {
        tombstones(&s) == 0.0
    });
    assert!(
        deleted.elapsed() >= Duration::from_secs(2),
        "reaped before the TTL"
    );
    // Every server reaped them (the reap is a log entry).
    c.wait_converged(WAIT);
    for i in 0..3 {
        assert_eq!(tombstones(&c.client(i)), 0.0, "server {i}");
    }
    // The index of a read of the emptied prefix does not go backwards.
    let after = s.get("/v1/kv/one/?keys");
    assert_eq!(after.status, 404);
    assert!(
        after.index() >= index_before,
        "{} < {index_before}",
        after.index()
    );
}

#[test]
fn session_reads_block_until_a_session_changes() {
    let mut c = Cluster::start(BIN, 1);
    let leader = c.wait_servers_registered(WAIT);
    let s = c.client(leader);
    let r = s.get("/v1/session/list");
    assert_eq!(r.json(), json!([]));
    let index = r.index();
    let blocked = {
        let s = s.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let r = s.get(&format!("/v1/session/list?index={index}&wait=30s"));
            (started.elapsed(), r.index(), r.json())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let id = create_session(&s, json!({"LockDelay": "0s"}));
    let (waited, new_index, list) = blocked.join().unwrap();
    assert!(waited < Duration::from_secs(10), "woke after {waited:?}");
    assert!(new_index > index);
    assert_eq!(list[0]["ID"], id.as_str());
    // A blocking read with nothing changing returns after its wait, same index.
    let started = Instant::now();
    let r = s.get(&format!("/v1/session/info/{id}?index={new_index}&wait=1s"));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(r.index(), new_index);
}
