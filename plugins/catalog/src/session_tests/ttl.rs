//! Session TTLs (Consul's `session_ttl.go`): expiry after twice the TTL without renewal,
//! renewals through the log, a renewal racing the tick, a new leader's restart of the
//! timers, and the timer rows going with their sessions.

use super::*;
use crate::tests::{at, tick_at};
use fsmhost_guest::TickCtx;

const T0: u64 = 1_000_000;

/// `n1` registered, and a session on it with a 10 s TTL created at [`T0`].
fn with_session(ttl: &str) -> (Harness, String) {
    let mut h = h();
    register_node(&mut h, "n1");
    let req = SessionCreateRequest {
        ttl: ttl.into(),
        ..create("n1")
    };
    let id = h.run_at(at(10, T0), &SESSION_CREATE, &req).expect("create");
    (h, id)
}

fn timer(h: &Harness, id: &str) -> Option<SessionTtl> {
    SESSION_TTLS_ID
        .get(h.store(), &(home(), id.to_string()))
        .expect("session_ttls")
}

fn renew(h: &mut Harness, index: u64, ts: u64, id: &str) -> Option<Session> {
    let args = SessionId {
        id: id.into(),
        tenancy: Default::default(),
    };
    h.run_at(at(index, ts), &SESSION_RENEW, &args)
        .expect("renew")
}

fn expires(h: &Harness, tick: &TickCtx) -> usize {
    let proposals = h.tick(tick).expect("tick");
    assert!(proposals.iter().all(|p| p.command == "session-expire"));
    proposals.len()
}

#[test]
fn a_session_expires_after_twice_its_ttl() {
    let (mut h, id) = with_session("10s");
    let row = timer(&h, &id).expect("a timer");
    assert_eq!(
        (row.ttl_ms, row.renewed_ms, row.deadline_ms()),
        (10_000, T0, T0 + 20_000)
    );
    assert_eq!(expires(&h, &tick_at(T0 + 19_999, 0)), 0);
    let results = h.tick_and_apply(&tick_at(T0 + 20_000, 0));
    assert_eq!(results.len(), 1);
    let ended: bool = fsmhost_guest::from_cbor(
        results[0].as_ref().expect("expire applies"),
        "expire result",
    )
    .expect("bool");
    assert!(ended);
    assert_eq!(get(&h, &id), None);
    assert_eq!(timer(&h, &id), None);
    assert_eq!(released(&h).len(), 1, "its locks released");
    assert_eq!(released(&h)[0].id, id);
    assert_eq!(expires(&h, &tick_at(T0 + 30_000, 0)), 0);
}

#[test]
fn a_renewal_pushes_the_expiry_out() {
    let (mut h, id) = with_session("10s");
    let renewed = renew(&mut h, 11, T0 + 15_000, &id).expect("exists");
    assert_eq!(renewed.id, id);
    assert_eq!(timer(&h, &id).map(|t| t.renewed_ms), Some(T0 + 15_000));
    assert_eq!(expires(&h, &tick_at(T0 + 20_000, 0)), 0);
    assert_eq!(expires(&h, &tick_at(T0 + 34_999, 0)), 0);
    assert_eq!(expires(&h, &tick_at(T0 + 35_000, 0)), 1);
    // Unknown sessions: None; a session without TTL renews without a timer.
    assert_eq!(renew(&mut h, 12, T0, "nope"), None);
    let plain = h.run(&SESSION_CREATE, &create("n1")).expect("no TTL");
    assert!(renew(&mut h, 20, T0, &plain).is_some());
    assert_eq!(timer(&h, &plain), None);
    let zero = SessionCreateRequest {
        ttl: "0s".into(),
        ..create("n1")
    };
    let zero = h.run(&SESSION_CREATE, &zero).expect("zero TTL");
    assert_eq!(timer(&h, &zero), None);
    assert_eq!(h.store().len(SESSION_TTLS.name()), 1);
}

#[test]
fn a_renewal_between_the_tick_and_the_expiry_wins() {
    let (mut h, id) = with_session("10s");
    let proposals = h.tick(&tick_at(T0 + 25_000, 0)).expect("tick");
    assert_eq!(proposals.len(), 1);
    renew(&mut h, 11, T0 + 25_001, &id).expect("renewed");
    let p = &proposals[0];
    let out = h
        .apply_raw(at(12, T0 + 25_002), &p.command, &p.payload)
        .expect("expire applies");
    let ended: bool = fsmhost_guest::from_cbor(&out, "expire result").expect("bool");
    assert!(!ended, "renewed meanwhile: nothing");
    assert!(get(&h, &id).is_some());
    assert!(released(&h).is_empty());
    assert_eq!(timer(&h, &id).map(|t| t.renewed_ms), Some(T0 + 25_001));
    // Destroyed meanwhile: nothing either.
    let proposals = h.tick(&tick_at(T0 + 50_000, 0)).expect("tick");
    h.run(
        &SESSION_DESTROY,
        &SessionId {
            id: id.clone(),
            tenancy: Default::default(),
        },
    )
    .expect("destroy");
    let p = &proposals[0];
    let out = h
        .apply_raw(at(100, T0 + 50_001), &p.command, &p.payload)
        .expect("expire applies");
    assert!(!fsmhost_guest::from_cbor::<bool>(&out, "expire result").expect("bool"));
    assert_eq!(released(&h).len(), 1, "released once, by the destroy");
}

#[test]
fn a_new_leader_restarts_every_timer() {
    let (h, _) = with_session("10s");
    // The leader took over 15 s after the renewal: the timer runs from then.
    let since = T0 + 15_000;
    assert_eq!(expires(&h, &tick_at(T0 + 20_000, since)), 0);
    assert_eq!(expires(&h, &tick_at(T0 + 34_999, since)), 0);
    assert_eq!(expires(&h, &tick_at(T0 + 35_000, since)), 1);
}

#[test]
fn ended_sessions_take_their_timer_with_them() {
    // Destroyed.
    let (mut h, id) = with_session("10s");
    let args = SessionId {
        id: id.clone(),
        tenancy: Default::default(),
    };
    h.run(&SESSION_DESTROY, &args).expect("destroy");
    assert_eq!(timer(&h, &id), None);
    // Invalidated with its check, or its node.
    let (mut h, id) = with_session("10s");
    set_check(&mut h, "n1", check(SERF_CHECK, "", "critical")).expect("critical");
    assert_eq!(get(&h, &id), None);
    assert_eq!(timer(&h, &id), None);
    let (mut h, id) = with_session("10s");
    let dereg = DeregisterRequest {
        node: "n1".into(),
        ..Default::default()
    };
    h.run(&DEREGISTER, &dereg).expect("deregister");
    assert_eq!(timer(&h, &id), None);
    assert_eq!(h.store().len(SESSION_TTLS.name()), 0);
}

#[test]
fn a_tick_expires_at_most_a_thousand() {
    let (mut h, _) = with_session("10s");
    for i in 0..MAX_EXPIRES_PER_TICK as u64 {
        let req = SessionCreateRequest {
            ttl: "10s".into(),
            name: format!("s{i}"),
            ..create("n1")
        };
        h.run_at(at(11 + i, T0 + i), &SESSION_CREATE, &req)
            .expect("create");
    }
    let tick = tick_at(T0 + 60_000, 0);
    assert_eq!(expires(&h, &tick), MAX_EXPIRES_PER_TICK);
    assert_eq!(h.tick_and_apply(&tick).len(), MAX_EXPIRES_PER_TICK);
    assert_eq!(expires(&h, &tick), 1, "the rest next time");
}

#[test]
fn renew_over_http_is_a_command() {
    let (mut h, id) = with_session("10s");
    let (status, renewed) = call(&mut h, "PUT", &format!("/v1/session/renew/{id}"), "");
    assert_eq!(status, 200);
    assert_eq!(renewed[0]["ID"], id.as_str());
    assert_eq!(renewed[0]["TTL"], "10s");
    // The harness stamps an entry with its index: the renewal is that entry's time.
    let renewed_ms = timer(&h, &id).map(|t| t.renewed_ms);
    assert!(renewed_ms.is_some_and(|ms| ms != T0), "{renewed_ms:?}");
    assert_eq!(
        call(&mut h, "PUT", "/v1/session/renew/nope", ""),
        (404, json!("Session id 'nope' not found"))
    );
}
