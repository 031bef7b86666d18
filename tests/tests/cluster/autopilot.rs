//! Autopilot on real processes: a new server joins as a non-voter and is promoted after
//! the stabilization time; dead voters are removed within the failure tolerance and never
//! below `min_quorum`; the health endpoint follows a server down and back; the
//! configuration is replicated and compare-and-set; a rolling restart keeps quorum.

use crate::support::{BIN, cli, kv_keys, kv_set, wait_for};
use fsmhost_tests::cluster::Cluster;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LEADER_WAIT: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(60);

/// Autopilot's intervals shortened for tests (Consul's are 2s and 10s). The contact
/// threshold is raised from 200ms because these shared 2-core machines run several
/// clusters at once and a heartbeat can be late; each test names what else it changes.
fn fast(more: &str) -> String {
    timed("250ms", "500ms", more)
}

fn timed(update: &str, reconcile: &str, more: &str) -> String {
    format!(
        "[autopilot]\nupdate_interval = \"{update}\"\nreconcile_interval = \"{reconcile}\"\n\
         last_contact_threshold = \"1s\"\n{more}\n"
    )
}

/// `GET path` on server `i`: (status, body), or `None` while it does not answer with JSON.
fn get(c: &Cluster, i: usize, path: &str) -> Option<(u16, Value)> {
    let r = c
        .client(i)
        .with_timeout(Duration::from_secs(10))
        .try_get(path)
        .ok()?;
    let v = serde_json::from_slice(&r.body).ok()?;
    Some((r.status, v))
}

/// `/v1/operator/autopilot/health` as asked of server `i`: (status, body).
fn health(c: &Cluster, i: usize) -> Option<(u16, Value)> {
    get(c, i, "/v1/operator/autopilot/health")
}

/// Waits until the health endpoint says healthy with `voters` voters and no other server.
fn wait_healthy(c: &Cluster, i: usize, voters: usize) -> Value {
    wait_for(
        &format!("a healthy cluster of {voters} voters"),
        WAIT,
        || {
            let (status, h) = health(c, i)?;
            let servers = h["Servers"].as_array()?;
            (status == 200
                && servers.len() == voters
                && servers
                    .iter()
                    .all(|s| s["Voter"] == true && s["Healthy"] == true))
            .then_some(h)
        },
    )
}

fn id_of(c: &Cluster, i: usize) -> String {
    wait_for("the server's id", WAIT, || c.state(i).map(|s| s.id))
}

fn server<'a>(h: &'a Value, id: &str) -> Option<&'a Value> {
    h["Servers"].as_array()?.iter().find(|s| s["ID"] == id)
}

/// Server `i`'s metrics in Prometheus' text.
fn metrics(c: &Cluster, i: usize) -> String {
    c.client(i)
        .with_timeout(Duration::from_secs(10))
        .try_get("/v1/agent/metrics?format=prometheus")
        .map(|r| r.text())
        .unwrap_or_default()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses the state document's `StableSince` (`2026-11-22T22:13:12.600Z`) as ms since
/// the epoch.
fn stable_since_ms(v: &Value) -> u64 {
    let t = v.as_str().expect("StableSince is text");
    let (date, time) = t
        .trim_end_matches('Z')
        .split_once('T')
        .expect("a date and a time");
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms: i64 = format!("{frac:0<3}")[..3].parse().unwrap();
    ((days * 86_400 + h[0] * 3600 + h[1] * 60 + h[2]) * 1000 + ms) as u64
}

/// Sets `key` through server `i`: the status (0 when it does not answer).
fn write(c: &Cluster, i: usize, key: &str) -> u16 {
    c.apply(i, "kv", "set", &kv_set(key, "x"))
        .map_or(0, |r| r.status)
}

/// The issue's case: with Consul's default intervals (2 s rounds, 10 s reconcile) and a
/// short stabilization time, a joining server was still a non-voter 7 s later. A new
/// member is now judged at once, rounds come every 250 ms while it waits, and a ready
/// promotion does not wait for the reconcile: it is a voter within about a second.
#[test]
fn a_joining_server_is_promoted_promptly_with_default_intervals() {
    let mut c = Cluster::start_with(BIN, 3, "[autopilot]\nserver_stabilization_time = \"1ms\"");
    let leader = c.wait_leader(LEADER_WAIT);
    wait_healthy(&c, leader, 3);
    let newcomer = c.add_server();
    let id = id_of(&c, newcomer);
    let started = std::time::Instant::now();
    wait_for("the newcomer's promotion", WAIT, || {
        let (_, s) = get(&c, leader, "/v1/operator/autopilot/state")?;
        (s["Servers"][&id]["Status"] == "voter").then_some(())
    });
    let took = started.elapsed();
    // The goal is the stabilization time + 1 s; 3 s leaves room for a loaded machine.
    assert!(took < Duration::from_secs(3), "promoted after {took:?}");
    eprintln!("promoted {took:?} after the newcomer answered");
}

#[test]
fn a_new_server_joins_as_a_non_voter_and_is_promoted_after_stabilization() {
    let stabilization = Duration::from_secs(4);
    let mut c = Cluster::start_with(BIN, 3, &fast("server_stabilization_time = \"4s\""));
    let leader = c.wait_leader(LEADER_WAIT);
    wait_healthy(&c, leader, 3);
    // Autopilot waits out the stabilization time only once it has run that long itself.
    std::thread::sleep(stabilization + Duration::from_millis(500));
    for n in 0..20 {
        assert_eq!(write(&c, leader, &format!("before/{n}")), 200);
    }
    let newcomer = c.add_server();
    let id = id_of(&c, newcomer);

    let mut seen_healthy_non_voter = false;
    let (promoted_at, stable_since) = wait_for("the newcomer's promotion", WAIT, || {
        let (_, s) = get(&c, leader, "/v1/operator/autopilot/state")?;
        let me = &s["Servers"][&id];
        match me["Status"].as_str()? {
            "non-voter" => {
                if me["Healthy"] == true {
                    seen_healthy_non_voter = true;
                }
                None
            }
            "voter" => Some((now_ms(), stable_since_ms(&me["StableSince"]))),
            other => panic!("unexpected status {other}: {s}"),
        }
    });
    assert!(
        seen_healthy_non_voter,
        "the newcomer was seen healthy while still a non-voter"
    );
    let waited = Duration::from_millis(promoted_at.saturating_sub(stable_since));
    assert!(
        waited >= stabilization,
        "promoted {waited:?} after it became healthy, before the stabilization time"
    );
    let h = wait_healthy(&c, leader, 4);
    assert_eq!(h["FailureTolerance"], 1, "4 voters: quorum 3");
    assert!(
        c.log_text(leader).contains("Promoting server: id="),
        "the promotion is logged"
    );
    // Both documents and the CLI agree.
    let (code, out, err) = cli(&[
        "operator",
        "autopilot",
        "state",
        "-http-addr",
        &c.servers[newcomer].http_addr(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("Healthy:                      true\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("   {id}\n      Name:            s4\n")),
        "{out}"
    );
    assert_eq!(out.matches("Status:          voter").count(), 3, "{out}");
    assert_eq!(out.matches("Status:          leader").count(), 1, "{out}");
}

#[test]
fn a_killed_voter_is_removed_once_failed_and_the_failure_tolerance_follows() {
    // Reconciling every 2s leaves time to see the victim failed before it is removed.
    let mut c = Cluster::start_with(BIN, 5, &timed("250ms", "2s", ""));
    let leader = c.wait_leader(LEADER_WAIT);
    let h = wait_healthy(&c, leader, 5);
    assert_eq!(h["FailureTolerance"], 2, "5 voters: quorum 3");
    let victim = (leader + 1) % 5;
    let victim_id = id_of(&c, victim);
    c.kill(victim);

    // First it is failed and the tolerance drops; then it is removed.
    let (status, down) = wait_for("the victim declared failed", WAIT, || {
        let (status, h) = health(&c, leader)?;
        (server(&h, &victim_id)?["SerfStatus"] == "failed").then_some((status, h))
    });
    assert_eq!(status, 429, "{down}");
    assert_eq!(down["Healthy"], false);
    assert_eq!(down["FailureTolerance"], 1, "4 healthy of 5 voters: {down}");
    let after = wait_healthy(&c, leader, 4);
    assert!(server(&after, &victim_id).is_none());
    assert_eq!(after["FailureTolerance"], 1, "4 voters: quorum 3");
    let log = c.log_text(leader);
    assert!(
        log.contains(&format!(
            "Attempting removal of failed server node: id={victim_id}"
        )),
        "{log}"
    );
    assert_eq!(c.state(leader).unwrap().voters.len(), 4);
    assert_eq!(write(&c, leader, "after-removal"), 200);
}

#[test]
fn min_quorum_stops_cleanup_at_that_many_voters() {
    let mut c = Cluster::start_with(BIN, 4, &fast("min_quorum = 3"));
    let leader = c.wait_leader(LEADER_WAIT);
    wait_healthy(&c, leader, 4);
    let first = (leader + 1) % 4;
    c.kill(first);
    // 4 voters, min 3: the first dead one goes.
    wait_healthy(&c, leader, 3);

    let second = (leader + 2) % 4;
    let second_id = id_of(&c, second);
    c.kill(second);
    let (status, h) = wait_for("the second victim declared failed", WAIT, || {
        let (status, h) = health(&c, leader)?;
        (server(&h, &second_id)?["SerfStatus"] == "failed").then_some((status, h))
    });
    assert_eq!(status, 429);
    assert_eq!(h["FailureTolerance"], 0, "2 healthy of 3 voters: {h}");
    // Many reconcile rounds later it is still there: removing it would leave 2 < 3.
    std::thread::sleep(Duration::from_secs(4));
    let (_, h) = health(&c, leader).expect("health answers");
    let kept = server(&h, &second_id).expect("still in the configuration");
    assert_eq!(kept["Voter"], true);
    assert_eq!(c.state(leader).unwrap().voters.len(), 3);
    assert!(
        c.log_text(leader).contains(
            "will not remove server node as it would leave less voters than the minimum number allowed"
        ),
        "the refusal is logged"
    );
    // The two left still make a quorum.
    assert_eq!(write(&c, leader, "with-two"), 200);
}

#[test]
fn health_is_429_while_a_server_is_down_and_200_when_it_is_back() {
    let mut c = Cluster::start_with(BIN, 3, &fast(""));
    let leader = c.wait_leader(LEADER_WAIT);
    let follower = (leader + 1) % 3;
    wait_healthy(&c, follower, 3);

    // The configuration is replicated: set on a follower, read on every server.
    let (status, _) = get(&c, follower, "/v1/operator/autopilot/configuration").unwrap();
    assert_eq!(status, 200);
    let (code, out, err) = cli(&[
        "operator",
        "autopilot",
        "set-config",
        "-cleanup-dead-servers=false",
        "-max-trailing-logs=500",
        "-http-addr",
        &c.servers[follower].http_addr(),
    ]);
    assert!(code == 0 && out == "Configuration updated!\n", "{out}{err}");
    for i in 0..3 {
        let (_, conf) = wait_for("the replicated configuration", WAIT, || {
            let (s, v) = get(&c, i, "/v1/operator/autopilot/configuration?stale")?;
            (v["MaxTrailingLogs"] == 500).then_some((s, v))
        });
        assert_eq!(conf["CleanupDeadServers"], false);
        assert_eq!(conf["LastContactThreshold"], "1s", "kept from the seed");
    }
    let (code, out, _) = cli(&[
        "operator",
        "autopilot",
        "get-config",
        "-http-addr",
        &c.servers[leader].http_addr(),
    ]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(
            "CleanupDeadServers = false\nLastContactThreshold = 1s\nMaxTrailingLogs = 500\n\
             MinQuorum = 0\nServerStabilizationTime = 10s\nRedundancyZoneTag = \"\"\n"
        ),
        "{out}"
    );
    // Compare-and-set: a stale index changes nothing.
    let (_, conf) = get(&c, leader, "/v1/operator/autopilot/configuration").unwrap();
    let index = conf["ModifyIndex"].as_u64().unwrap();
    let body =
        r#"{"CleanupDeadServers": false, "MaxTrailingLogs": 7, "LastContactThreshold": "1s"}"#;
    let stale = c.client(leader).put(
        &format!("/v1/operator/autopilot/configuration?cas={}", index - 1),
        body,
    );
    assert_eq!((stale.status, stale.text().as_str()), (200, "false"));
    let fresh = c.client(follower).put(
        &format!("/v1/operator/autopilot/configuration?cas={index}"),
        body,
    );
    assert_eq!((fresh.status, fresh.text().as_str()), (200, "true"));
    let refused = c.client(leader).put(
        "/v1/operator/autopilot/configuration",
        r#"{"MinQuorum": "3"}"#,
    );
    assert_eq!(refused.status, 400);
    assert!(
        refused
            .text()
            .contains("Error parsing autopilot config: MinQuorum"),
        "{}",
        refused.text()
    );

    // Down: 429 naming it failed. Back: 200.
    let victim = (leader + 2) % 3;
    let victim_id = id_of(&c, victim);
    c.kill(victim);
    let down = wait_for("health to turn 429", WAIT, || {
        let (status, h) = health(&c, follower)?;
        (status == 429).then_some(h)
    });
    assert_eq!(down["Healthy"], false);
    let s = server(&down, &victim_id).expect("the victim is listed");
    assert_eq!(s["Healthy"], false);
    assert_eq!(down["FailureTolerance"], 0, "2 healthy of 3 voters");
    let m = metrics(&c, leader);
    assert!(m.contains("consul_autopilot_healthy 0"), "{m}");
    assert!(m.contains("consul_autopilot_failure_tolerance 0"), "{m}");
    c.restart(victim);
    let back = wait_healthy(&c, follower, 3);
    assert_eq!(back["FailureTolerance"], 1);
    let m = metrics(&c, leader);
    assert!(m.contains("consul_autopilot_healthy 1"), "{m}");
    assert!(
        !metrics(&c, follower).contains("consul_autopilot_healthy "),
        "only the leader reports autopilot"
    );
    assert!(server(&back, &victim_id).is_some(), "the same server, kept");
}

#[test]
fn a_rolling_restart_never_loses_quorum() {
    // min_quorum = 3 keeps a restarting server from being cleaned up as dead (the setting
    // Consul recommends for exactly this).
    let mut c = Cluster::start_with(BIN, 3, &fast("min_quorum = 3"));
    let leader = c.wait_leader(LEADER_WAIT);
    wait_healthy(&c, leader, 3);
    let mut n = 0;
    for round in 0..2 {
        for i in 0..3 {
            assert_eq!(c.terminate(i), Some(0), "graceful stop");
            // The other two commit writes while it is down.
            let other = (i + 1) % 3;
            for _ in 0..5 {
                n += 1;
                assert_eq!(
                    write(&c, other, &format!("rolling/{n}")),
                    200,
                    "round {round} server {i}"
                );
            }
            c.restart(i);
            let h = wait_healthy(&c, other, 3);
            assert_eq!(h["FailureTolerance"], 1);
        }
    }
    let leader = c.wait_leader(LEADER_WAIT);
    c.wait_converged(WAIT);
    assert_eq!(c.state(leader).unwrap().voters.len(), 3);
    for i in 0..3 {
        assert!(
            !c.log_text(i).contains("Attempting removal"),
            "no server was ever removed"
        );
    }
    for i in 0..3 {
        assert_eq!(kv_keys(&c, i, "rolling/").len(), n, "server {i}");
    }
}

#[test]
fn a_wiped_server_comes_back_as_a_new_one_and_its_old_id_is_cleaned_up_as_stale() {
    // Failed only after 2s unheard: the wiped server is back at its address well before.
    let mut c = Cluster::start_with(
        BIN,
        3,
        &timed("1s", "1s", "server_stabilization_time = \"2s\""),
    );
    let leader = c.wait_leader(LEADER_WAIT);
    wait_healthy(&c, leader, 3);
    assert_eq!(write(&c, leader, "before-wipe"), 200);
    let f = (leader + 1) % 3;
    let old_id = id_of(&c, f);
    c.kill(f);
    // Its whole data dir (the compiled plugins are in the tests' shared cache).
    std::fs::remove_dir_all(&c.servers[f].data_dir).expect("data dir removed");
    // Same name and address, empty data dir: a new server id.
    c.restart(f);
    let new_id = wait_for("the new id", WAIT, || {
        c.state(f).map(|s| s.id).filter(|id| *id != old_id)
    });
    // The old id is gone from the configuration (stale: its address answers as another
    // server), and the new server is promoted in its place.
    let h = wait_for(
        "the old id cleaned up and the new one a voter",
        WAIT,
        || {
            let (status, h) = health(&c, leader)?;
            let new = server(&h, &new_id)?;
            (status == 200 && server(&h, &old_id).is_none() && new["Voter"] == true).then_some(h)
        },
    );
    assert_eq!(h["Servers"].as_array().unwrap().len(), 3, "{h}");
    let log = c.log_text(leader);
    assert!(
        log.contains(&format!(
            "server {old_id} is gone: its address now answers as server {new_id}"
        )),
        "{log}"
    );
    // Raft traffic for the old id was refused at the address, not taken as that server's
    // log going backwards (which would stop the leader).
    assert!(
        log.contains(&format!("this is server {new_id}, not {old_id}")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Attempting removal of failed server node: id={old_id} name=s{} address={} reason=StaleVoter",
            f + 1,
            c.servers[f].rpc_addr()
        )),
        "{log}"
    );
    c.wait_converged(WAIT);
}
