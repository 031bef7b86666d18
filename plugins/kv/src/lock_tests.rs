//! Locks: `?acquire`/`?release`, LockIndex, the lock-delay (against the entry's clock),
//! `release-session` (both behaviors, by itself and as the catalog's message) and the txn
//! verbs `lock`, `unlock`, `check-session`, with Consul's answers and messages.

use super::*;
use fsmhost_guest::http::{Request, Response};
use fsmhost_guest::{Command, Ctx, Error, ErrorKind, Harness, Plugin, Tenancy, Txn};
use fsmhost_schema_sessions::{ReleaseSession, SESSIONS, Session};

fn h() -> Harness {
    Harness::new(plugin()).expect("kv schema is valid")
}

/// The tenancy keys and sessions live in by default (empty in OSS).
fn default_tenancy() -> Tenancy {
    Tenancy::default()
        .resolve(EDITION)
        .expect("the default tenancy")
}

fn session_in(tenancy: Tenancy, id: &str) -> Session {
    Session {
        id: id.into(),
        node: "node-1".into(),
        behavior: "release".into(),
        create_index: 1,
        modify_index: 1,
        tenancy,
        ..Default::default()
    }
}

/// Seeds live sessions, as the catalog would have created them.
fn sessions(h: &mut Harness, ids: &[&str]) {
    for id in ids {
        SESSIONS
            .insert(h.store_mut(), &session_in(default_tenancy(), id))
            .expect("seed a session");
    }
    h.store_mut().commit();
}

fn lock_req(key: &str, value: &str, session: &str) -> LockRequest {
    LockRequest {
        key: key.into(),
        value: value.into(),
        flags: 0,
        session: session.into(),
        tenancy: Default::default(),
    }
}

fn entry(h: &Harness, key: &str) -> Option<Entry> {
    h.ask(
        &GET,
        &GetArgs {
            key: key.into(),
            tenancy: Default::default(),
        },
    )
    .expect("get")
}

/// The context of a log entry at `index`, accepted by the leader at `timestamp_ms`.
fn at(index: u64, timestamp_ms: u64) -> Ctx {
    Ctx {
        index,
        timestamp_ms,
    }
}

fn ended(id: &str, behavior: &str, lock_delay_ns: u64) -> ReleaseSession {
    ReleaseSession {
        id: id.into(),
        tenancy: Default::default(),
        behavior: behavior.into(),
        lock_delay: lock_delay_ns,
    }
}

const SECOND_NS: u64 = 1_000_000_000;

#[test]
fn acquire_release_and_reacquire_keep_consuls_lock_index() {
    let mut h = h();
    sessions(&mut h, &["s1", "s2"]);
    assert!(h.run(&ACQUIRE, &lock_req("k", "v", "s1")).unwrap()); // 1
    let e = entry(&h, "k").unwrap();
    assert_eq!(
        (
            e.session.as_deref(),
            e.lock_index,
            e.create_index,
            e.modify_index
        ),
        (Some("s1"), 1, 1, 1)
    );
    assert_eq!(e.value, b"v");
    // The holder again, same value: nothing changes, not even ModifyIndex.
    assert!(h.run(&ACQUIRE, &lock_req("k", "v", "s1")).unwrap()); // 2
    assert_eq!(entry(&h, "k").unwrap(), e);
    // The holder again, another value: written, LockIndex kept.
    assert!(h.run(&ACQUIRE, &lock_req("k", "w", "S1")).unwrap()); // 3
    let e = entry(&h, "k").unwrap();
    assert_eq!((e.lock_index, e.modify_index), (1, 3));
    assert_eq!(e.session.as_deref(), Some("s1"), "the session's own ID");
    // Another session: refused, nothing written.
    assert!(!h.run(&ACQUIRE, &lock_req("k", "x", "s2")).unwrap()); // 4
    assert!(!h.run(&RELEASE, &lock_req("k", "x", "s2")).unwrap()); // 5
    assert_eq!(entry(&h, "k").unwrap(), e);
    // The holder releases: the value is written, the session cleared, LockIndex kept.
    assert!(h.run(&RELEASE, &lock_req("k", "r", "s1")).unwrap()); // 6
    let e = entry(&h, "k").unwrap();
    assert_eq!(
        (e.session, e.lock_index, e.modify_index, e.value),
        (None, 1, 6, b"r".to_vec())
    );
    assert!(
        !h.run(&RELEASE, &lock_req("k", "r", "s1")).unwrap(),
        "not held"
    );
    // A new holder bumps LockIndex.
    assert!(h.run(&ACQUIRE, &lock_req("k", "t", "s2")).unwrap()); // 8
    let e = entry(&h, "k").unwrap();
    assert_eq!((e.session.as_deref(), e.lock_index), (Some("s2"), 2));
    // A plain write keeps the lock (kvsSetTxn keeps the session).
    h.run(&SET, &set("k")).unwrap();
    assert_eq!(entry(&h, "k").unwrap().session.as_deref(), Some("s2"));
    // Release of a key that does not exist: false.
    assert!(!h.run(&RELEASE, &lock_req("nothing", "", "s1")).unwrap());
}

#[test]
fn an_unknown_or_missing_session_is_refused_with_consuls_text() {
    let mut h = h();
    sessions(&mut h, &["s1"]);
    let err = h.run(&ACQUIRE, &lock_req("k", "v", "nope")).unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::BadRequest, "invalid session \"nope\"")
    );
    let err = h.run(&ACQUIRE, &lock_req("k", "v", "")).unwrap_err();
    assert_eq!(err.message, "missing session");
    let err = h.run(&RELEASE, &lock_req("k", "v", "")).unwrap_err();
    assert_eq!(err.message, "missing session");
    assert_eq!(h.store().len("kvs"), 0, "refusals write nothing");
    // A session of another node is still a session; one that ended is not.
    h.run(&ACQUIRE, &lock_req("k", "v", "s1")).unwrap();
    SESSIONS
        .delete(h.store_mut(), &session_in(default_tenancy(), "s1"))
        .unwrap();
    h.store_mut().commit();
    let err = h.run(&ACQUIRE, &lock_req("k2", "v", "s1")).unwrap_err();
    assert_eq!(err.message, "invalid session \"s1\"");
}

fn put(h: &mut Harness, key: &str, flag: &str, session: &str, body: &str) -> Response {
    h.http(
        Request::new("PUT", &format!("/v1/kv/{key}"))
            .param(flag, session)
            .body(body),
    )
}

fn text(r: &Response) -> (u16, String) {
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

fn json(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).expect("a JSON body")
}

#[test]
fn http_acquire_and_release_answer_as_consul() {
    let mut h = h();
    sessions(&mut h, &["s1", "s2"]);
    assert_eq!(
        text(&put(&mut h, "lock", "acquire", "s1", "me")),
        (200, "true".into())
    );
    let got = json(&h.http(Request::new("GET", "/v1/kv/lock")));
    assert_eq!(got[0]["Session"], "s1");
    assert_eq!(got[0]["LockIndex"], 1);
    assert_eq!(got[0]["Value"], "bWU=");
    assert_eq!(
        text(&put(&mut h, "lock", "acquire", "s2", "you")),
        (200, "false".into())
    );
    assert_eq!(
        text(&put(&mut h, "lock", "release", "s2", "")),
        (200, "false".into())
    );
    assert_eq!(
        text(&put(&mut h, "lock", "release", "s1", "")),
        (200, "true".into())
    );
    let got = json(&h.http(Request::new("GET", "/v1/kv/lock")));
    assert_eq!(got[0].get("Session"), None, "no holder, no Session");
    assert_eq!(got[0]["LockIndex"], 1);
    assert_eq!(
        got[0]["Value"],
        serde_json::Value::Null,
        "released with no body"
    );
    // Consul's refusals (500 in Consul, 400 here), with its texts.
    assert_eq!(
        text(&put(&mut h, "lock", "acquire", "nope", "")),
        (400, "invalid session \"nope\"".into())
    );
    assert_eq!(
        text(&put(&mut h, "lock", "acquire", "", "")),
        (400, "missing session".into())
    );
    let both = h.http(
        Request::new("PUT", "/v1/kv/lock")
            .param("acquire", "s1")
            .param("release", "s1"),
    );
    assert_eq!(
        text(&both),
        (400, "Conflicting flags: acquire=s1&release=s1".into())
    );
    // ?flags goes with the lock.
    let r = h.http(
        Request::new("PUT", "/v1/kv/flagged")
            .param("acquire", "s1")
            .param("flags", "7"),
    );
    assert_eq!(text(&r), (200, "true".into()));
    assert_eq!(entry(&h, "flagged").unwrap().flags, 7);
}

#[test]
fn a_lock_delay_holds_until_the_entrys_clock_passes_it() {
    let mut h = h();
    sessions(&mut h, &["s1", "s2"]);
    h.run_at(at(2, 1_000), &ACQUIRE, &lock_req("k", "v", "s1"))
        .unwrap();
    let released: u64 = h
        .run_at(
            at(3, 2_000),
            &RELEASE_SESSION,
            &ended("s1", "release", 5 * SECOND_NS),
        )
        .unwrap();
    assert_eq!(released, 1);
    let e = entry(&h, "k").unwrap();
    assert_eq!(
        (e.session, e.lock_index, e.modify_index, e.value),
        (None, 1, 3, b"v".to_vec())
    );
    let delay = LOCK_DELAYS_ID
        .get(h.store(), &key_in(&default_tenancy(), "k"))
        .unwrap()
        .expect("a lock-delay");
    assert_eq!(delay.until_ms, 7_000);
    // Before the delay ends: false, and the delay stays.
    let early = h.run_at(at(4, 6_999), &ACQUIRE, &lock_req("k", "w", "s2"));
    assert_eq!(early, Ok(false));
    assert_eq!(entry(&h, "k").unwrap().session, None);
    assert_eq!(h.store().len("lock_delays"), 1);
    // Another key is not delayed.
    assert_eq!(
        h.run_at(at(5, 6_999), &ACQUIRE, &lock_req("other", "", "s2")),
        Ok(true)
    );
    // At its end: taken, LockIndex bumped, the ended delay dropped.
    assert_eq!(
        h.run_at(at(6, 7_000), &ACQUIRE, &lock_req("k", "w", "s2")),
        Ok(true)
    );
    let e = entry(&h, "k").unwrap();
    assert_eq!((e.session.as_deref(), e.lock_index), (Some("s2"), 2));
    assert_eq!(h.store().len("lock_delays"), 0);
    // A lock-delay below a millisecond still lasts one.
    h.run_at(at(7, 8_000), &RELEASE_SESSION, &ended("s2", "release", 1))
        .unwrap();
    assert_eq!(
        h.run_at(at(8, 8_000), &ACQUIRE, &lock_req("k", "", "s1")),
        Ok(false)
    );
}

#[test]
fn release_session_releases_or_deletes_only_that_sessions_keys() {
    let mut h = h();
    sessions(&mut h, &["s1", "s2"]);
    for k in ["a/1", "a/2"] {
        h.run(&ACQUIRE, &lock_req(k, "v", "s1")).unwrap();
    }
    h.run(&ACQUIRE, &lock_req("b", "v", "s2")).unwrap(); // 3
    h.run(&SET, &set("c")).unwrap(); // 4
    // `delete`: s1's keys go, with tombstones, as a kv delete; no lock-delay asked.
    let n: u64 = h
        .run_at(at(5, 50), &RELEASE_SESSION, &ended("s1", "delete", 0))
        .unwrap();
    assert_eq!(n, 2);
    assert!(entry(&h, "a/1").is_none() && entry(&h, "a/2").is_none());
    assert_eq!(h.store().len("tombstones"), 2);
    assert_eq!(h.store().len("lock_delays"), 0);
    let list: ListResult = h
        .ask(
            &LIST,
            &ListArgs {
                prefix: "a/".into(),
                tenancy: Default::default(),
            },
        )
        .unwrap();
    assert_eq!((list.entries.len(), list.index), (0, 5));
    assert_eq!(entry(&h, "b").unwrap().session.as_deref(), Some("s2"));
    assert_eq!(entry(&h, "c").unwrap().modify_index, 4);
    // A session that holds nothing: nothing happens.
    let n: u64 = h
        .run_at(
            at(6, 60),
            &RELEASE_SESSION,
            &ended("s1", "release", SECOND_NS),
        )
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(h.store().len("lock_delays"), 0);
    // An unknown behavior fails (and so would the catalog's command that sent it).
    let err = h
        .run(&RELEASE_SESSION, &ended("s2", "explode", 0))
        .unwrap_err();
    assert_eq!(err.message, "unknown session behavior \"explode\"");
    assert_eq!(entry(&h, "b").unwrap().session.as_deref(), Some("s2"));
}

fn set(key: &str) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: b"v".to_vec(),
        flags: 0,
        tenancy: Default::default(),
    }
}

#[test]
fn ended_lock_delays_do_not_pile_up() {
    let mut h = h();
    sessions(&mut h, &["s1", "s2"]);
    for k in ["x", "y"] {
        h.run(&ACQUIRE, &lock_req(k, "", "s1")).unwrap();
    }
    h.run(&ACQUIRE, &lock_req("z", "", "s2")).unwrap();
    h.run_at(
        at(4, 1_000),
        &RELEASE_SESSION,
        &ended("s1", "release", SECOND_NS),
    )
    .unwrap();
    assert_eq!(h.store().len("lock_delays"), 2);
    // The next release, after they ended, drops them and adds its own.
    h.run_at(
        at(5, 2_000),
        &RELEASE_SESSION,
        &ended("s2", "delete", SECOND_NS),
    )
    .unwrap();
    let left: Vec<String> = LOCK_DELAYS_UNTIL
        .iter_range(h.store(), fsmhost_guest::KeyRange::Prefix(Vec::new()))
        .map(|d| d.map(|d| d.key))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(left, ["z"], "a deleted key keeps its lock-delay too");
    // An ended delay no longer refuses (and the lock drops it), the new one does.
    assert_eq!(
        h.run_at(at(6, 2_500), &ACQUIRE, &lock_req("z", "", "s1")),
        Ok(false)
    );
    assert_eq!(
        h.run_at(at(7, 3_000), &ACQUIRE, &lock_req("z", "", "s1")),
        Ok(true)
    );
    assert_eq!(h.store().len("lock_delays"), 0);
}

/// A stand-in for the catalog: destroying a session deletes it and tells kv, in one
/// transaction, as the catalog plugin does.
fn destroy(tx: &mut dyn Txn, _ctx: &Ctx, id: String) -> Result<(), Error> {
    let tenancy = Tenancy::default()
        .resolve(fsmhost_schema_sessions::EDITION)
        .expect("default tenancy");
    let Some(s) = fsmhost_schema_sessions::lookup(tx, &tenancy, &id)? else {
        return Err(Error::not_found("no session"));
    };
    SESSIONS.delete(tx, &s)?;
    fsmhost_schema_sessions::RELEASE_SESSION.send(
        tx,
        &ReleaseSession {
            id: s.id,
            tenancy: s.tenancy,
            behavior: s.behavior,
            lock_delay: s.lock_delay,
        },
    )
}
static DESTROY: Command<String, ()> = Command::new("destroy", destroy);

fn create(tx: &mut dyn Txn, _ctx: &Ctx, s: Session) -> Result<(), Error> {
    SESSIONS.insert(tx, &s)?;
    Ok(())
}
static CREATE: Command<Session, ()> = Command::new("create", create);

fn fake_catalog() -> Plugin {
    Plugin::new("catalog", "0.1.0", fsmhost_schema_sessions::EDITION.name())
        .table(&SESSIONS)
        .command(&CREATE)
        .command(&DESTROY)
        .sends(&fsmhost_schema_sessions::RELEASE_SESSION)
}

#[test]
fn the_catalogs_message_releases_a_destroyed_sessions_locks_in_its_transaction() {
    // The catalog runs the commands; kv is its peer, which the message reaches.
    let mut h = Harness::with_peers(fake_catalog(), vec![plugin()]).expect("the set is valid");
    let mut s = session_in(default_tenancy(), "s1");
    s.lock_delay = 15 * SECOND_NS;
    h.run(&CREATE, &s).unwrap(); // 1
    let mut bad = session_in(default_tenancy(), "s2");
    bad.behavior = "explode".into();
    h.run(&CREATE, &bad).unwrap(); // 2
    // kv's commands run against the same store (the host runs them in the same set).
    let kv = plugin();
    for (key, session) in [("k", "s1"), ("j", "s2")] {
        let payload = fsmhost_guest::to_cbor(&lock_req(key, "v", session)).unwrap();
        let ctx = at(3, 3);
        h.store_mut().set_index(ctx.index);
        let out = kv
            .apply(h.store_mut(), &ctx, ACQUIRE.name(), &payload)
            .unwrap();
        assert_eq!(out, fsmhost_guest::to_cbor(&true).unwrap());
        h.store_mut().commit();
    }
    let k = key_in(&default_tenancy(), "k");
    h.run_at(at(4, 10_000), &DESTROY, &"s1".to_string())
        .unwrap();
    let e = KVS_ID.get(h.store(), &k).unwrap().unwrap();
    assert_eq!((e.session, e.modify_index), (None, 4));
    let delay = LOCK_DELAYS_ID.get(h.store(), &k).unwrap().unwrap();
    assert_eq!(delay.until_ms, 25_000);
    assert_eq!(h.store().len("sessions"), 1);
    // kv's refusal is the catalog's: the session stays, its lock too.
    let err = h
        .run_at(at(5, 11_000), &DESTROY, &"s2".to_string())
        .unwrap_err();
    assert!(err.message.contains("unknown session behavior"), "{err}");
    assert_eq!(h.store().len("sessions"), 1);
    let j = KVS_ID
        .get(h.store(), &key_in(&default_tenancy(), "j"))
        .unwrap()
        .unwrap();
    assert_eq!(j.session.as_deref(), Some("s2"));
}

fn txn(h: &mut Harness, ops: serde_json::Value) -> Response {
    h.http(Request::new("PUT", "/v1/txn").body(ops.to_string()))
}

fn kv(verb: &str, key: &str, session: &str) -> serde_json::Value {
    serde_json::json!({"KV": {"Verb": verb, "Key": key, "Session": session, "Value": "dg=="}})
}

/// The errors of a rolled-back txn, `(OpIndex, What)` in order.
fn errors(r: &Response) -> serde_json::Value {
    assert_eq!(r.status, 409, "{}", text(r).1);
    let e = json(r)["Errors"].clone();
    let pairs: Vec<_> = e
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| serde_json::json!([e["OpIndex"], e["What"]]))
        .collect();
    serde_json::json!(pairs)
}

#[test]
fn txn_lock_unlock_and_check_session_with_consuls_messages() {
    let mut h = h();
    sessions(&mut h, &["s1", "s2"]);
    let r = txn(
        &mut h,
        serde_json::json!([kv("lock", "k", "s1"), kv("check-session", "k", "s1")]),
    );
    assert_eq!(r.status, 200, "{}", text(&r).1);
    let v = json(&r);
    assert_eq!(v["Results"][0]["KV"]["Session"], "s1");
    assert_eq!(v["Results"][0]["KV"]["LockIndex"], 1);
    assert_eq!(v["Results"][0]["KV"]["Value"], serde_json::Value::Null);
    assert_eq!(v["Results"][1]["KV"]["Session"], "s1");
    let r = txn(
        &mut h,
        serde_json::json!([
            kv("lock", "k", "s2"),
            kv("unlock", "k", "s2"),
            kv("check-session", "k", "s2"),
            kv("lock", "k", "nope"),
            kv("lock", "k", ""),
            kv("unlock", "k", ""),
            kv("unlock", "gone", "s1"),
            kv("set", "new", ""),
        ]),
    );
    let not_held = |k: &str| {
        format!("failed to unlock key {k:?}, lock isn't held, or is held by another session")
    };
    let want = serde_json::json!([
        [0, "failed to lock key \"k\", lock is already held"],
        [1, not_held("k")],
        [
            2,
            "failed session check for key \"k\", current session \"s1\" != \"s2\""
        ],
        [3, "invalid session \"nope\""],
        [4, "missing session"],
        [5, "missing session"],
        [6, not_held("gone")],
    ]);
    assert_eq!(errors(&r), want);
    assert!(entry(&h, "new").is_none(), "the failed txn wrote nothing");
    // The holder unlocks; an unheld key checks against no session.
    let r = txn(
        &mut h,
        serde_json::json!([kv("unlock", "k", "s1"), kv("check-session", "k", "")]),
    );
    assert_eq!(r.status, 200, "{}", text(&r).1);
    let v = json(&r);
    assert_eq!(v["Results"][0]["KV"].get("Session"), None);
    assert_eq!(v["Results"][0]["KV"]["LockIndex"], 1);
    // check-not-exists, and a lock under a lock-delay (the harness's clock is the index).
    h.run(&ACQUIRE, &lock_req("d", "", "s1")).unwrap(); // 4
    h.run_at(
        at(5, 5),
        &RELEASE_SESSION,
        &ended("s1", "release", SECOND_NS),
    )
    .unwrap();
    let r = txn(
        &mut h,
        serde_json::json!([
            kv("lock", "d", "s2"),
            kv("check-not-exists", "d", ""),
            kv("check-not-exists", "nothing", ""),
        ]),
    );
    let want = serde_json::json!([
        [0, "failed to lock key \"d\" due to lock delay"],
        [1, "key \"d\" exists"],
    ]);
    assert_eq!(errors(&r), want);
}

#[test]
fn the_release_adds_the_lock_delays_table_and_reads_the_sessions() {
    let d = plugin().describe();
    assert_eq!(d.version, VERSION);
    assert!(d.tables.iter().any(|t| t.name == "lock_delays"));
    assert_eq!(
        d.reads,
        [fsmhost_guest::TableRead {
            table: "sessions".into(),
            layout: 1,
        }]
    );
    assert!(d.commands.iter().any(|c| c == "release-session"));
    let v = |s: &str| -> Vec<u64> { s.split('.').map(|n| n.parse().unwrap_or(0)).collect() };
    assert!(v(VERSION) >= v("0.2.0"), "0.2.0 added lock_delays");
    assert!(
        v(env!("CARGO_PKG_VERSION")) < v("0.3.0"),
        "v2 stays the next one"
    );
}

#[cfg(feature = "enterprise")]
#[test]
fn enterprise_locks_live_in_the_sessions_namespace() {
    let mut h = h();
    let team = Tenancy {
        partition: "default".into(),
        namespace: "team".into(),
    };
    SESSIONS
        .insert(h.store_mut(), &session_in(team.clone(), "s1"))
        .unwrap();
    h.store_mut().commit();
    // A key of the default namespace cannot be locked by a session of another.
    let err = h.run(&ACQUIRE, &lock_req("k", "", "s1")).unwrap_err();
    assert_eq!(err.message, "invalid session \"s1\"");
    let mut req = lock_req("k", "", "s1");
    req.tenancy = team.clone();
    assert!(h.run(&ACQUIRE, &req).unwrap());
    let r = h.http(Request::new("GET", "/v1/kv/k").param("ns", "team"));
    assert_eq!(json(&r)[0]["Session"], "s1");
    assert_eq!(json(&r)[0]["Namespace"], "team");
    // The release names the session's namespace; another namespace's release is no-op.
    let mut other = ended("s1", "release", SECOND_NS);
    assert_eq!(h.run(&RELEASE_SESSION, &other), Ok(0));
    other.tenancy = team.clone();
    assert_eq!(h.run(&RELEASE_SESSION, &other), Ok(1));
    let d = LOCK_DELAYS_ID.get(h.store(), &key_in(&team, "k")).unwrap();
    assert_eq!(d.map(|d| d.tenancy), Some(team));
}
