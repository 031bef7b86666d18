//! TTL checks (Consul's `CheckTTL`): critical with `TTL expired` after their TTL without a
//! report, a report racing the tick, a new leader's restart of the timers, and the
//! sessions on a check that expires.

use super::*;
use crate::tests::{at, tick_at};

const T0: u64 = 1_000_000;

/// `s1` with service `web` and its 10 s TTL check `web-ttl`, registered at [`T0`] passing.
fn with_ttl_check() -> Harness {
    let mut h = h();
    let req = AgentServiceRegister {
        node: NODE.into(),
        service: Service {
            service: "web".into(),
            ..Service::default()
        },
        checks: vec![AgentCheckDef {
            check: Check {
                check_id: "web-ttl".into(),
                name: "heartbeat".into(),
                status: "passing".into(),
                ..Check::default()
            },
            ttl_ms: 10_000,
        }],
        ..AgentServiceRegister::default()
    };
    assert!(
        h.run_at(at(10, T0), &AGENT_SERVICE_REGISTER, &req)
            .expect("register")
    );
    h
}

fn report(h: &mut Harness, index: u64, ts: u64, status: &str, output: &str) {
    let u = AgentCheckUpdate {
        node: NODE.into(),
        check_id: "web-ttl".into(),
        status: status.into(),
        output: output.into(),
        tenancy: Meta::default(),
    };
    assert!(
        h.run_at(at(index, ts), &AGENT_CHECK_UPDATE, &u)
            .expect("report")
    );
}

fn the_check(h: &Harness) -> Check {
    let args = NodeArgs {
        node: NODE.into(),
        tenancy: Meta::default(),
    };
    let state = h.ask(&AGENT_STATE, &args).expect("agent-state").items;
    let found = state
        .checks
        .into_iter()
        .find(|c| c.check.check_id == "web-ttl");
    found.expect("web-ttl").check
}

fn expires(h: &Harness, tick: &TickCtx) -> usize {
    let proposals = h.tick(tick).expect("tick");
    assert!(
        proposals.iter().all(|p| p.command == "check-ttl-expire"),
        "{proposals:?}"
    );
    proposals.len()
}

fn timer(h: &Harness) -> Option<CheckTtl> {
    let t = Meta::default().resolve().expect("home").tenancy();
    CHECK_TTLS_ID
        .get(h.store(), &(t, NODE.to_string(), "web-ttl".to_string()))
        .expect("check_ttls")
}

#[test]
fn a_check_not_reported_within_its_ttl_turns_critical() {
    let mut h = with_ttl_check();
    report(&mut h, 11, T0 + 1000, "passing", "ok");
    assert_eq!(
        timer(&h).map(|t| (t.updated_ms, t.deadline_ms())),
        Some((T0 + 1000, T0 + 11_000))
    );
    assert_eq!(expires(&h, &tick_at(T0 + 10_999, 0)), 0);
    let results = h.tick_and_apply(&tick_at(T0 + 11_000, 0));
    assert_eq!(results.len(), 1);
    let expired: bool =
        fsmhost_guest::from_cbor(results[0].as_ref().expect("applies"), "result").expect("bool");
    assert!(expired);
    let c = the_check(&h);
    assert_eq!(c.status, "critical");
    assert_eq!(
        c.output,
        "TTL expired (last output before timeout follows): ok"
    );
    assert_eq!(expires(&h, &tick_at(T0 + 60_000, 0)), 0, "expired once");
    assert_eq!(timer(&h).map(|t| t.expired), Some(true));
    // A report brings it back and restarts the timer.
    report(&mut h, 100, T0 + 70_000, "passing", "");
    assert_eq!(the_check(&h).status, "passing");
    assert_eq!(expires(&h, &tick_at(T0 + 79_999, 0)), 0);
    h.tick_and_apply(&tick_at(T0 + 80_000, 0));
    assert_eq!(the_check(&h).output, TTL_EXPIRED, "no last output");
}

#[test]
fn a_report_between_the_tick_and_the_expiry_wins() {
    let mut h = with_ttl_check();
    let proposals = h.tick(&tick_at(T0 + 15_000, 0)).expect("tick");
    assert_eq!(proposals.len(), 1);
    report(&mut h, 11, T0 + 15_001, "warning", "slow");
    let p = &proposals[0];
    let out = h
        .apply_raw(at(12, T0 + 15_002), &p.command, &p.payload)
        .expect("expire applies");
    assert!(!fsmhost_guest::from_cbor::<bool>(&out, "result").expect("bool"));
    let c = the_check(&h);
    assert_eq!((c.status.as_str(), c.output.as_str()), ("warning", "slow"));
    // Deregistered meanwhile: nothing either.
    let proposals = h.tick(&tick_at(T0 + 30_000, 0)).expect("tick");
    let dereg = AgentTarget {
        node: NODE.into(),
        id: "web-ttl".into(),
        tenancy: Meta::default(),
    };
    h.run_at(at(13, T0 + 30_001), &AGENT_CHECK_DEREGISTER, &dereg)
        .expect("deregister");
    let out = h
        .apply_raw(
            at(14, T0 + 30_002),
            &proposals[0].command,
            &proposals[0].payload,
        )
        .expect("expire applies");
    assert!(!fsmhost_guest::from_cbor::<bool>(&out, "result").expect("bool"));
}

#[test]
fn a_new_leader_restarts_every_timer() {
    let h = with_ttl_check();
    let since = T0 + 8_000;
    assert_eq!(expires(&h, &tick_at(T0 + 10_000, since)), 0);
    assert_eq!(expires(&h, &tick_at(T0 + 17_999, since)), 0);
    assert_eq!(expires(&h, &tick_at(T0 + 18_000, since)), 1);
}

#[test]
fn a_check_that_expires_ends_the_sessions_on_it() {
    let mut h = with_ttl_check();
    let create = SessionCreateRequest {
        node: NODE.into(),
        node_checks: vec![SERF_CHECK.into()],
        service_checks: vec![ServiceCheck {
            id: "web-ttl".into(),
            namespace: String::new(),
        }],
        ..SessionCreateRequest::default()
    };
    let id = h
        .run_at(at(11, T0 + 1), &SESSION_CREATE, &create)
        .expect("a session on the passing TTL check");
    let other = SessionCreateRequest {
        node: NODE.into(),
        node_checks: vec![SERF_CHECK.into()],
        name: "other".into(),
        ..SessionCreateRequest::default()
    };
    let kept = h
        .run_at(at(12, T0 + 2), &SESSION_CREATE, &other)
        .expect("other");
    h.tick_and_apply(&tick_at(T0 + 10_000, 0));
    assert_eq!(the_check(&h).status, "critical");
    let get = |h: &Harness, id: &str| {
        let args = SessionId {
            id: id.into(),
            tenancy: Default::default(),
        };
        h.ask(&SESSION_GET, &args).expect("session-get").items
    };
    assert_eq!(get(&h, &id), None, "ended with its check");
    assert!(get(&h, &kept).is_some());
}

#[test]
fn timers_go_with_their_service_and_node() {
    let mut h = with_ttl_check();
    let dereg = AgentTarget {
        node: NODE.into(),
        id: "web".into(),
        tenancy: Meta::default(),
    };
    h.run_at(at(11, T0), &AGENT_SERVICE_DEREGISTER, &dereg)
        .expect("deregister");
    assert_eq!(h.store().len(CHECK_TTLS.name()), 0);
    let mut h = with_ttl_check();
    let node = DeregisterRequest {
        node: NODE.into(),
        ..DeregisterRequest::default()
    };
    h.run_at(at(11, T0), &DEREGISTER, &node).expect("node gone");
    assert_eq!(h.store().len(CHECK_TTLS.name()), 0);
    assert_eq!(expires(&h, &tick_at(T0 + 60_000, 0)), 0);
}
