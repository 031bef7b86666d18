//! The nemesis suite's short run (`fsmhost_tests::nemesis`): 3 servers, 12 clients on 8
//! keys through `/v1/kv` with reads both `?consistent` and in the default mode (the
//! leader's lease, judged when the read arrives), every fault kind once (partitions only
//! as root, where each server runs in its own network namespace), and the checks: the
//! history is linearizable, every read of a value names its write's index, the servers
//! agree on the state hash after healing, no server panicked. Failover gaps are printed,
//! not asserted. `tests/nemesis.sh` runs the same suite for any duration.
//!
//! Also: servers started in namespaces are the harness's children themselves (`ip netns
//! exec` execs them, so signals reach the server) and the namespaces go with the cluster.

use crate::support::BIN;
use fsmhost_tests::cluster::Cluster;
use fsmhost_tests::nemesis::{self, Options, ReadMode};
use fsmhost_tests::netns::Netns;
use std::time::Duration;

#[test]
fn a_short_nemesis_run_is_linearizable() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("nemesis-{}", std::process::id()));
    let mut o = Options::new(BIN, &out, Duration::from_secs(80));
    o.reads = ReadMode::Mixed;
    o.quiet = Duration::from_secs(4);
    o.seed = std::env::var("NEMESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let outcome = nemesis::run(&o).unwrap_or_else(|e| panic!("the nemesis run: {e}"));
    let report = outcome.report();
    eprintln!("{report}outputs in {}", out.display());
    assert!(
        outcome.passed(),
        "the nemesis run found problems (outputs in {}):\n{}\n{report}",
        out.display(),
        outcome.problems().join("\n")
    );
    assert!(
        outcome.counts.ok > 1000,
        "too few operations completed: {:?}",
        outcome.counts
    );
    assert!(!outcome.faults.is_empty(), "no fault was injected");
}

#[test]
fn servers_in_namespaces_are_the_harness_children_and_the_namespaces_go_with_them() {
    if !Netns::available() {
        eprintln!("not root: network namespaces NOT tested");
        return;
    }
    let net = Netns::create(3).expect("namespaces");
    let names: Vec<String> = (0..3).map(|i| net.node(i).ns.clone()).collect();
    let bridge = net.bridge().to_string();
    let mut c = Cluster::start_in_namespaces(BIN, net, "");
    let leader = c.wait_leader(Duration::from_secs(60));
    let ours = std::fs::read_link("/proc/self/ns/net").expect("our namespace");
    for s in &c.servers {
        let pid = s.pid().expect("running");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("its exe");
        assert_eq!(exe, std::path::Path::new(BIN).canonicalize().expect("bin"));
        let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("its namespace");
        assert_ne!(ns, ours, "{} runs in the test's namespace", s.name);
    }
    // Cut the leader off: the other two elect one of themselves; heal, and all agree.
    c.netns()
        .expect("namespaces")
        .isolate(leader)
        .expect("isolated");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    loop {
        let states: Vec<_> = others.iter().map(|&i| c.state(i)).collect();
        let new_leader = states.iter().flatten().find(|s| s.role == "Leader");
        if new_leader.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new leader on the majority side: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.netns().expect("namespaces").heal(leader).expect("healed");
    c.wait_leader(Duration::from_secs(30));
    c.wait_converged(Duration::from_secs(30));
    drop(c);
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout);
    for n in &names {
        assert!(!list.contains(n.as_str()), "{n} is still there: {list}");
    }
    let link = std::process::Command::new("ip")
        .args(["link", "show", &bridge])
        .output()
        .expect("ip link show");
    assert!(!link.status.success(), "the bridge {bridge} is still there");
}

#[test]
fn the_index_check_and_the_failover_measure() {
    use fsmhost_tests::nemesis::faults::{FaultKind, FaultRecord};
    use fsmhost_tests::nemesis::report::{
        check_indexes, gap_table, measure_gaps, render_gap_table,
    };
    use fsmhost_tests::nemesis::workload::{Acked, ValueRead};
    let acked = |key: &str, value: &str, index| Acked {
        key: key.into(),
        value: Some(value.into()),
        index,
        at: 0,
    };
    let read = |key: &str, value: &str, modify_index| ValueRead {
        key: key.into(),
        value: value.into(),
        modify_index,
        index: Some(modify_index + 1),
        server: "s1".into(),
        at: 0,
    };
    let writes = [acked("k0", "c1-1", 10), acked("k1", "c2-1", 11)];
    assert!(check_indexes(&writes, &[read("k0", "c1-1", 10), read("k1", "c2-1", 11)]).is_empty());
    // A read naming another index than the write's answer.
    assert_eq!(check_indexes(&writes, &[read("k0", "c1-1", 12)]).len(), 1);
    // A value whose write's outcome is unknown, read with two indexes.
    assert_eq!(
        check_indexes(&writes, &[read("k0", "c9-1", 20), read("k0", "c9-1", 21)]).len(),
        1
    );
    // Two acknowledged writes at one index.
    assert_eq!(
        check_indexes(&[acked("k0", "a", 5), acked("k1", "b", 5)], &[]).len(),
        1
    );

    let s = 1_000_000_000u64;
    let fault = |kind, started, window_end, new_leader: Option<u64>| FaultRecord {
        kind,
        targets: vec!["s1".into()],
        started,
        healed: started,
        window_end,
        gap: None,
        new_leader: new_leader.map(Duration::from_millis),
        whole_at_start: new_leader.is_some(),
        note: None,
    };
    let mut faults = vec![
        fault(FaultKind::KillLeader, 10 * s, 20 * s, Some(1200)),
        fault(FaultKind::KillLeader, 20 * s, 30 * s, Some(1400)),
        fault(FaultKind::PauseLeader, 30 * s, 40 * s, None),
    ];
    // Acks before the first fault, a 4 s hole after it, a 1 s one after the second, none
    // in the third's window.
    let acks = [
        9 * s,
        10 * s + s / 2,
        14 * s + s / 2,
        18 * s,
        20 * s,
        21 * s,
        29 * s,
    ];
    measure_gaps(&mut faults, &acks);
    let gaps: Vec<u64> = faults
        .iter()
        .map(|f| f.gap.expect("gap").as_millis() as u64)
        .collect();
    assert_eq!(gaps, [4000, 8000, 10_000]);
    let table = gap_table(&faults);
    assert_eq!(table.len(), 2);
    assert_eq!((table[0].kind, table[0].count), (FaultKind::KillLeader, 2));
    assert_eq!(table[0].max.as_millis(), 8000);
    assert_eq!(table[0].median.as_millis(), 6000);
    // The new leader's times: median of two is the later one here (the upper middle), the
    // max the later; a fault that saw no new leader is "none", the slowest.
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
    let (median, max) = table[0].new_leader.expect("a fault on the leader");
    assert_eq!((ms(median), ms(max)), (Some(1400), Some(1400)));
    assert_eq!(
        table[1].new_leader.map(|(m, x)| (ms(m), ms(x))),
        Some((None, None))
    );
    assert_eq!((table[0].degraded, table[1].degraded), (0, 1));
    let rendered = render_gap_table(&table);
    assert!(
        rendered.contains("| kill-leader | 2 | 6.00 s | 8.00 s | 1.40 s, 1.40 s | 0 |"),
        "{rendered}"
    );
    assert!(
        rendered.contains("| pause-leader | 1 | 10.00 s | 10.00 s | none, none | 1 |"),
        "{rendered}"
    );
}
