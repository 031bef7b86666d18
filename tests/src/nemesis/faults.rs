//! The nemesis suite's faults: what each kind does to the cluster's processes and network,
//! for how long, and the record of each one injected.
//!
//! Owns: [`FaultKind`] (names, parsing, whether it needs namespaces), the choice of its
//! target (the leader all servers agree on, or a follower) and its timing, and putting the
//! cluster back (restart, SIGCONT, heal) when the fault ends. One fault at a time: the
//! runner ([`super::run`]) calls [`inject`] between quiet periods, and a fault first waits
//! (up to 30 s) for the cluster to be whole again, so that each one is measured from a
//! healthy cluster and not from the tail of the previous one (autopilot removes a server
//! down for a few seconds and promotes it back only after `server_stabilization_time`).
//! While a fault on the leader lasts, the other servers are watched for a new leader.

use super::workload::Rng;
use crate::cluster::Cluster;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// SIGKILL the leader, restart it a few seconds later.
    KillLeader,
    /// SIGKILL a follower, restart it a few seconds later.
    KillFollower,
    /// SIGKILL every server, restart them all.
    KillAll,
    /// SIGSTOP the leader for 4.5 to 8 s, then SIGCONT.
    PauseLeader,
    /// Cut the leader off from the other servers for a few seconds (clients still reach
    /// it).
    PartitionLeader,
    /// Cut a follower off from the other servers for a few seconds.
    PartitionFollower,
}

impl FaultKind {
    /// Every kind, in the cycle's order.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::KillLeader,
        FaultKind::PauseLeader,
        FaultKind::PartitionLeader,
        FaultKind::KillFollower,
        FaultKind::PartitionFollower,
        FaultKind::KillAll,
    ];

    /// Its name on the command line and in reports (`kill-leader`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillLeader => "kill-leader",
            FaultKind::KillFollower => "kill-follower",
            FaultKind::KillAll => "kill-all",
            FaultKind::PauseLeader => "pause-leader",
            FaultKind::PartitionLeader => "partition-leader",
            FaultKind::PartitionFollower => "partition-follower",
        }
    }

    /// Whether it needs the servers in network namespaces (root).
    pub fn needs_netns(self) -> bool {
        matches!(
            self,
            FaultKind::PartitionLeader | FaultKind::PartitionFollower
        )
    }

    /// Parses a comma-separated list (`all` for every kind).
    pub fn parse_list(s: &str) -> Result<Vec<FaultKind>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                out.extend(FaultKind::ALL);
            } else {
                out.push(part.parse()?);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault {s:?}: use {} or all", names.join(", "))
            })
    }
}

/// One fault as it happened.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    /// Its kind.
    pub kind: FaultKind,
    /// The servers it hit (names).
    pub targets: Vec<String>,
    /// When it began (ns since the run's start).
    pub started: u64,
    /// When it was undone: restart, SIGCONT or heal (ns since the run's start).
    pub healed: u64,
    /// The end of its window for the failover measure: the next fault's start, or the
    /// clients' stop (set by the runner).
    pub window_end: u64,
    /// The longest gap between acknowledged writes in its window (set by the report).
    pub gap: Option<Duration>,
    /// For a fault on the leader: how long after its start another server reported itself
    /// the leader (`None`: none did while the fault lasted).
    pub new_leader: Option<Duration>,
    /// Whether the cluster was whole when it began: every server running and a voter,
    /// under one leader. Not so when the previous fault's repair (autopilot removing a
    /// server it judged failed, then promoting it back) outlasted the wait for it.
    pub whole_at_start: bool,
    /// What went differently than planned (no agreed leader to aim at, a failed heal).
    pub note: Option<String>,
}

/// The leader every running server agrees on, if there is one within `timeout`.
fn agreed_leader(c: &mut Cluster, timeout: Duration) -> Option<usize> {
    c.try_wait_leader(timeout).ok()
}

/// Injects one fault of `kind` and undoes it; returns its record. `t0` is the run's start.
pub fn inject(c: &mut Cluster, kind: FaultKind, rng: &mut Rng, t0: Instant) -> FaultRecord {
    let now = || t0.elapsed().as_nanos() as u64;
    let n = c.servers.len();
    let mut note = None;
    let whole_at_start = wait_whole(c, WHOLE_WAIT);
    let leader = match agreed_leader(c, Duration::from_secs(10)) {
        Some(l) => l,
        None => {
            note = Some("no agreed leader at the start; hit a random server".to_string());
            rng.below(n as u64) as usize
        }
    };
    let follower = {
        let others: Vec<usize> = (0..n).filter(|&i| i != leader).collect();
        others[rng.below(others.len() as u64) as usize]
    };
    let one = match kind {
        FaultKind::KillLeader | FaultKind::PauseLeader | FaultKind::PartitionLeader => leader,
        _ => follower,
    };
    let targets = match kind {
        FaultKind::KillAll => c.servers.iter().map(|s| s.name.clone()).collect(),
        _ => vec![c.servers[one].name.clone()],
    };
    let started = now();
    let mut new_leader = None;
    eprintln!(
        "nemesis [{:6.1}s] {kind} {}",
        started as f64 / 1e9,
        targets.join(",")
    );
    match kind {
        FaultKind::KillLeader | FaultKind::KillFollower => {
            c.kill(one);
            let hold = rng.between(Duration::from_secs(2), Duration::from_secs(4));
            new_leader = watch_for_leader(c, kind, one, hold, t0_started(t0, started));
            c.restart(one);
        }
        FaultKind::KillAll => {
            for i in 0..n {
                c.kill(i);
            }
            std::thread::sleep(rng.between(Duration::from_secs(1), Duration::from_secs(3)));
            for i in 0..n {
                c.restart(i);
            }
        }
        FaultKind::PauseLeader => {
            c.pause(one);
            let hold = rng.between(Duration::from_millis(4500), Duration::from_millis(8000));
            new_leader = watch_for_leader(c, kind, one, hold, t0_started(t0, started));
            c.resume(one);
        }
        FaultKind::PartitionLeader | FaultKind::PartitionFollower => match c.netns() {
            Some(net) => {
                if let Err(e) = net.isolate(one) {
                    note = Some(format!("partition failed: {e}"));
                }
                let hold = rng.between(Duration::from_secs(5), Duration::from_secs(8));
                new_leader = watch_for_leader(c, kind, one, hold, t0_started(t0, started));
                if let Err(e) = net.heal(one) {
                    note = Some(format!("heal failed: {e}"));
                }
            }
            None => note = Some("not run: the servers are not in namespaces".to_string()),
        },
    }
    let healed = now();
    eprintln!(
        "nemesis [{:6.1}s] {kind} undone after {:.1}s",
        healed as f64 / 1e9,
        (healed - started) as f64 / 1e9
    );
    FaultRecord {
        kind,
        targets,
        started,
        healed,
        window_end: healed,
        gap: None,
        new_leader,
        whole_at_start,
        note,
    }
}

/// How long a fault waits for the cluster to be whole again after the previous one.
const WHOLE_WAIT: Duration = Duration::from_secs(30);

/// The instant a fault began, from its offset since the run's start.
fn t0_started(t0: Instant, started: u64) -> Instant {
    t0 + Duration::from_nanos(started)
}

/// Waits up to `timeout` until every server runs, they agree on a leader, and each
/// counts every server as a voter; whether that happened.
fn wait_whole(c: &mut Cluster, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let n = c.servers.len();
    loop {
        let whole = c.live().len() == n
            && c.try_wait_leader(Duration::ZERO).is_ok()
            && (0..n).all(|i| c.state(i).is_some_and(|s| s.voters.len() == n));
        if whole || Instant::now() >= deadline {
            return whole;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Holds a fault for `hold` from `started`. For a fault on the leader (`target`), also
/// watches the other servers meanwhile: the time from `started` until one of them
/// reported itself the leader.
fn watch_for_leader(
    c: &Cluster,
    kind: FaultKind,
    target: usize,
    hold: Duration,
    started: Instant,
) -> Option<Duration> {
    let end = started + hold;
    let on_leader = matches!(
        kind,
        FaultKind::KillLeader | FaultKind::PauseLeader | FaultKind::PartitionLeader
    );
    let mut found = None;
    while Instant::now() < end {
        if on_leader && found.is_none() {
            let others = (0..c.servers.len()).filter(|&i| i != target);
            if others
                .into_iter()
                .any(|i| c.state(i).is_some_and(|s| s.role == "Leader"))
            {
                found = Some(started.elapsed());
            }
        }
        std::thread::sleep(
            Duration::from_millis(25).min(end.saturating_duration_since(Instant::now())),
        );
    }
    found
}

/// Puts everything back: heals every cut, resumes every server, restarts any that is not
/// running.
pub fn heal_all(c: &mut Cluster) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(net) = c.netns()
        && let Err(e) = net.heal_all()
    {
        problems.push(format!("healing the network: {e}"));
    }
    for i in 0..c.servers.len() {
        c.resume(i);
        if !c.servers[i].is_running() {
            // It was killed by a fault and not restarted, or exited: the log says why.
            if c.servers[i].pid().is_some() {
                problems.push(format!("{} had exited on its own", c.servers[i].name));
                c.kill(i);
            }
            c.restart(i);
        }
    }
    problems
}
