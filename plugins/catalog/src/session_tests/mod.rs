//! Sessions: creation with Consul's defaults and refusals, destruction, invalidation with
//! checks and nodes, the `release-session` messages to the kv plugin (a fake one here), and
//! the HTTP API (`http.rs`).

use super::*;
use fsmhost_guest::http::Request;
use fsmhost_guest::{
    Command, Ctx, Error, Harness, Index, Key, KeyRange, Plugin, Table, Tenancy, Txn,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What the fake kv plugin received, in order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Released {
    seq: u64,
    msg: ReleaseSession,
}

static RELEASED: Table<Released> = Table::new("released", &[&RELEASED_ID]);
static RELEASED_ID: Index<Released, u64> = Index::new(
    &RELEASED,
    "id",
    |r: &Released, k| k.push(Key::new().u64(r.seq)),
    |n: &u64| Key::new().u64(*n).build(),
)
.unique();

fn record(tx: &mut dyn Txn, _: &Ctx, msg: ReleaseSession) -> Result<(), Error> {
    let seq = RELEASED_ID
        .iter_range(tx, KeyRange::Prefix(Vec::new()))
        .count() as u64;
    RELEASED.insert(tx, &Released { seq, msg })?;
    Ok(())
}

fn refuse(_: &mut dyn Txn, _: &Ctx, msg: ReleaseSession) -> Result<(), Error> {
    Err(Error::internal(format!("kv refuses to release {}", msg.id)))
}

static RECORD: Command<ReleaseSession, ()> = Command::new("release-session", record);
static REFUSE: Command<ReleaseSession, ()> = Command::new("release-session", refuse);

/// The catalog with a kv plugin that records every `release-session` it gets.
fn h() -> Harness {
    let kv = Plugin::new("kv", "0.1.0", "oss")
        .table(&RELEASED)
        .command(&RECORD);
    Harness::with_peers(plugin(), vec![kv]).expect("catalog and fake kv")
}

/// The catalog with a kv plugin that refuses every `release-session`.
fn h_refusing() -> Harness {
    let kv = Plugin::new("kv", "0.1.0", "oss").command(&REFUSE);
    Harness::with_peers(plugin(), vec![kv]).expect("catalog and refusing kv")
}

fn released(h: &Harness) -> Vec<ReleaseSession> {
    RELEASED_ID
        .iter_range(h.store(), KeyRange::Prefix(Vec::new()))
        .map(|r| r.expect("released row").msg)
        .collect()
}

/// The default partition and namespace, as stored (empty in OSS).
fn home() -> Tenancy {
    Tenancy::default()
        .resolve(EDITION)
        .expect("default tenancy")
}

use crate::tests::check;

/// Node `node` with a passing `serfHealth`, service `web` and its passing check `web-ok`.
fn register_node(h: &mut Harness, node: &str) {
    let req = RegisterRequest {
        node: node.into(),
        address: "10.0.0.1".into(),
        service: Some(Service {
            id: "web".into(),
            service: "web".into(),
            ..Default::default()
        }),
        checks: vec![
            check(SERF_CHECK, "", "passing"),
            check("web-ok", "web", "passing"),
        ],
        ..Default::default()
    };
    assert!(h.run(&REGISTER, &req).expect("register"));
}

fn set_check(h: &mut Harness, node: &str, c: Check) -> Result<bool, Error> {
    let req = RegisterRequest {
        node: node.into(),
        address: "10.0.0.1".into(),
        skip_node_update: true,
        check: Some(c),
        ..Default::default()
    };
    h.run(&REGISTER, &req)
}

fn create(node: &str) -> SessionCreateRequest {
    SessionCreateRequest {
        node: node.into(),
        node_checks: vec![SERF_CHECK.into()],
        lock_delay: DEFAULT_LOCK_DELAY_NS,
        ..Default::default()
    }
}

fn sessions(h: &Harness) -> Vec<Session> {
    h.ask(&SESSION_LIST, &Default::default())
        .expect("session-list")
        .items
}

fn get(h: &Harness, id: &str) -> Option<Session> {
    let args = SessionId {
        id: id.into(),
        tenancy: Default::default(),
    };
    h.ask(&SESSION_GET, &args).expect("session-get").items
}

fn call(h: &mut Harness, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut req = Request::new(method, path).body(body.as_bytes().to_vec());
    req.node = "n1".into();
    let r = h.http(req);
    let v = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
    (r.status, v)
}

fn is_uuid(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
}

mod http;
mod ttl;

#[test]
fn destroy_removes_the_session_and_tells_kv() {
    let mut h = h();
    register_node(&mut h, "n1");
    let mut req = create("n1");
    req.service_checks = vec![ServiceCheck {
        id: "web-ok".into(),
        namespace: String::new(),
    }];
    req.behavior = "delete".into();
    req.lock_delay = 90_000_000_000;
    let id = h.run(&SESSION_CREATE, &req).expect("create");
    assert_eq!(get(&h, &id).expect("stored").lock_delay, 90_000_000_000);
    assert_eq!(h.store().len(SESSION_CHECKS.name()), 2);
    let (status, out) = call(&mut h, "PUT", &format!("/v1/session/destroy/{id}"), "");
    assert_eq!((status, out), (200, json!(true)));
    assert_eq!(get(&h, &id), None);
    assert_eq!(h.store().len(SESSION_CHECKS.name()), 0);
    assert_eq!(
        released(&h),
        [ReleaseSession {
            id: id.clone(),
            tenancy: home(),
            behavior: "delete".into(),
            lock_delay: MAX_LOCK_DELAY_NS,
        }],
        "the lock-delay is capped at Consul's 60 s"
    );
    assert_eq!(
        call(&mut h, "GET", &format!("/v1/session/info/{id}"), ""),
        (200, json!([]))
    );
    // Destroying a session that does not exist is not an error, and tells nobody.
    assert_eq!(
        call(&mut h, "PUT", &format!("/v1/session/destroy/{id}"), ""),
        (200, json!(true))
    );
    assert_eq!(released(&h).len(), 1);
    assert_eq!(
        call(&mut h, "PUT", "/v1/session/destroy/", ""),
        (400, json!("Missing session"))
    );
}

#[test]
fn a_check_going_critical_invalidates_its_sessions_only() {
    let mut h = h();
    register_node(&mut h, "n1");
    let on_serf = h.run(&SESSION_CREATE, &create("n1")).expect("create");
    let mut req = create("n1");
    req.node_checks = vec![];
    req.service_checks = vec![ServiceCheck {
        id: "web-ok".into(),
        namespace: String::new(),
    }];
    let on_web = h.run(&SESSION_CREATE, &req).expect("create");
    // Warning is not critical.
    set_check(&mut h, "n1", check("web-ok", "web", "warning")).expect("warning");
    assert_eq!(sessions(&h).len(), 2);
    assert!(released(&h).is_empty());
    set_check(&mut h, "n1", check("web-ok", "web", "critical")).expect("critical");
    assert_eq!(get(&h, &on_web), None);
    assert!(get(&h, &on_serf).is_some());
    let r = released(&h);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].id.as_str(), r[0].behavior.as_str(), r[0].lock_delay),
        (on_web.as_str(), "release", DEFAULT_LOCK_DELAY_NS)
    );
    // A node check of another case of the node's name still finds them.
    let req = RegisterRequest {
        node: "N1".into(),
        address: "10.0.0.1".into(),
        skip_node_update: true,
        check: Some(check(SERF_CHECK, "", "critical")),
        ..Default::default()
    };
    h.run(&REGISTER, &req).expect("serf critical");
    assert!(sessions(&h).is_empty());
    assert_eq!(h.store().len(SESSION_CHECKS.name()), 0);
    assert_eq!(released(&h).len(), 2);
}

#[test]
fn deregistering_a_check_a_service_or_a_node_invalidates_sessions() {
    let mut h = h();
    register_node(&mut h, "n1");
    register_node(&mut h, "n2");
    let dereg = |h: &mut Harness, node: &str, service: &str, check: &str| {
        let req = DeregisterRequest {
            node: node.into(),
            service_id: service.into(),
            check_id: check.into(),
            tenancy: Default::default(),
        };
        assert!(h.run(&DEREGISTER, &req).expect("deregister"));
    };
    let on_web = |h: &mut Harness, node: &str| {
        let mut req = create(node);
        req.node_checks = vec![];
        req.service_checks = vec![ServiceCheck {
            id: "web-ok".into(),
            namespace: String::new(),
        }];
        h.run(&SESSION_CREATE, &req).expect("create")
    };

    // A check.
    let a = on_web(&mut h, "n1");
    let b = h.run(&SESSION_CREATE, &create("n1")).expect("create");
    dereg(&mut h, "n1", "", "web-ok");
    assert_eq!(get(&h, &a), None);
    assert!(get(&h, &b).is_some());
    assert_eq!(released(&h).len(), 1);

    // A service, with its checks.
    let c = on_web(&mut h, "n2");
    dereg(&mut h, "n2", "web", "");
    assert_eq!(get(&h, &c), None);
    assert_eq!(released(&h).len(), 2);

    // A node: every session on it, with checks or without.
    let mut bare = create("n1");
    bare.node_checks = vec![];
    let d = h.run(&SESSION_CREATE, &bare).expect("create");
    let other = h.run(&SESSION_CREATE, &create("n2")).expect("create");
    dereg(&mut h, "n1", "", "");
    assert_eq!(get(&h, &b), None);
    assert_eq!(get(&h, &d), None);
    assert!(get(&h, &other).is_some(), "n2's session stays");
    let ids: Vec<String> = released(&h).into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.contains(&b) && ids.contains(&d));
    let left: Vec<SessionCheck> = SESSION_CHECKS_ID
        .iter_range(h.store(), KeyRange::Prefix(Vec::new()))
        .collect::<Result<_, _>>()
        .expect("session_checks");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].session, other);
}

#[test]
fn a_refused_release_rolls_the_whole_command_back() {
    let mut h = h_refusing();
    register_node(&mut h, "n1");
    let id = h.run(&SESSION_CREATE, &create("n1")).expect("create");
    let e = h
        .run(
            &SESSION_DESTROY,
            &SessionId {
                id: id.clone(),
                tenancy: Default::default(),
            },
        )
        .expect_err("kv refuses");
    assert!(e.message.contains("kv refuses to release"), "{e}");
    assert!(get(&h, &id).is_some(), "the session is still there");
    assert_eq!(h.store().len(SESSION_CHECKS.name()), 1);
    // The check going critical is refused with it, so the check stays passing.
    let e = set_check(&mut h, "n1", check(SERF_CHECK, "", "critical")).expect_err("refused");
    assert!(e.message.contains("message to kv/release-session"), "{e}");
    let c: Indexed<Vec<Check>> = h
        .ask(
            &NODE_CHECKS,
            &NodeArgs {
                node: "n1".into(),
                tenancy: Default::default(),
            },
        )
        .expect("node-checks");
    let serf = c
        .items
        .iter()
        .find(|c| c.check_id == SERF_CHECK)
        .expect("serf");
    assert_eq!(serf.status, "passing");
    assert!(get(&h, &id).is_some());
    // Without a kv plugin in the set the message is dropped.
    let mut alone = Harness::new(plugin()).expect("catalog alone");
    register_node(&mut alone, "n1");
    let id = alone.run(&SESSION_CREATE, &create("n1")).expect("create");
    let args = SessionId {
        id: id.clone(),
        tenancy: Default::default(),
    };
    assert!(alone.run(&SESSION_DESTROY, &args).expect("destroy"));
    assert_eq!(get(&alone, &id), None);
}

#[test]
fn ids_are_deterministic_uuids_that_never_collide() {
    let run = |seed: Option<String>| {
        let mut h = h();
        register_node(&mut h, "n1");
        if let Some(id) = seed {
            let taken = Session {
                id,
                node: "n1".into(),
                behavior: "release".into(),
                tenancy: home(),
                ..Default::default()
            };
            SESSIONS.insert(h.store_mut(), &taken).expect("seed");
            h.store_mut().commit();
        }
        let ids: Vec<String> = (0..3)
            .map(|_| h.run(&SESSION_CREATE, &create("n1")).expect("create"))
            .collect();
        ids
    };
    let a = run(None);
    assert_eq!(a, run(None), "the same log makes the same IDs");
    assert!(a.iter().all(|id| is_uuid(id)), "{a:?}");
    assert!(a[0] != a[1] && a[1] != a[2] && a[0] != a[2]);
    let b = run(Some(a[0].clone()));
    assert_ne!(b[0], a[0], "a taken ID is skipped");
    assert_eq!(b[1..], a[1..]);
}
