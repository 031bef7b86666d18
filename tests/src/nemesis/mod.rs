//! The nemesis suite: a Jepsen-style run against a real 3-server cluster, as a library
//! that the cluster test (`tests/cluster/nemesis.rs`) and the `nemesis` binary
//! (`tests/nemesis.sh`) both call.
//!
//! Owns: the run ([`run`]): a cluster with `raft_multiplier = 1`, each server in its own
//! network namespace when the process is root ([`crate::netns`]); the clients
//! ([`workload`]) recording a history while faults ([`faults`]) hit the cluster one at a
//! time with a quiet period between them; then healing, a `?consistent` read of every key
//! (part of the history), and the checks ([`Outcome::problems`]): linearizability of the
//! history (`fsmhost-lincheck`), the index check ([`report::check_indexes`]), every server
//! at the same applied index and state hash, no `panicked` in any server's log, and no
//! answer that fits no expectation. The failover measure ([`report::measure_gaps`]) is
//! reported, never asserted.
//!
//! Outputs in [`Options::out`]: `history.jsonl` (one event per line, the checker's
//! format), `ops.jsonl` (per operation, by client and invocation time: the server asked
//! and its answer), `report.txt` (everything [`Outcome::report`] says, with a failing
//! key's report), `failover.md` (the gap table) and `logs/` (every server's log).
//!
//! Without root the servers run on loopback and partition faults are skipped; the report
//! says so ([`Outcome::partitions_skipped`]).

pub mod faults;
pub mod report;
pub mod workload;

use crate::cluster::Cluster;
use crate::netns::{Netns, NetnsError};
use faults::{FaultKind, FaultRecord};
use fsmhost_lincheck::{Call, Event, Ret};
use std::fmt;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use workload::{Rng, Shared, Workload};

/// The servers' config beyond the harness's: the fastest raft timers.
const SERVER_CONFIG: &str = "[performance]\nraft_multiplier = 1\n";

/// The longest a fault takes (a pause or partition of up to 8 s, with the leader lookup
/// before it): no fault starts later than this before the run's end.
const FAULT_BUDGET: Duration = Duration::from_secs(10);

/// How reads ask for consistency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// `?consistent`: the leader confirms its leadership with a quorum first.
    Consistent,
    /// No parameter: Consul's default mode (the leader answers, under its lease).
    Default,
    /// Each read picks one of the two at random.
    Mixed,
}

impl fmt::Display for ReadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadMode::Consistent => "consistent",
            ReadMode::Default => "default",
            ReadMode::Mixed => "mixed",
        })
    }
}

impl FromStr for ReadMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "consistent" => Ok(ReadMode::Consistent),
            "default" => Ok(ReadMode::Default),
            "mixed" => Ok(ReadMode::Mixed),
            _ => Err(format!(
                "unknown read mode {s:?}: use consistent, default or mixed"
            )),
        }
    }
}

/// What a run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// The fsmhost binary.
    pub bin: PathBuf,
    /// How long the clients run.
    pub duration: Duration,
    /// How reads ask for consistency.
    pub reads: ReadMode,
    /// The faults, injected in this order, cycling.
    pub faults: Vec<FaultKind>,
    /// Where the outputs go (made if missing).
    pub out: PathBuf,
    /// The seed of every random choice (clients, targets, durations).
    pub seed: u64,
    /// How many client threads.
    pub clients: usize,
    /// How many keys.
    pub keys: usize,
    /// How long one request may take before its outcome is unknown.
    pub timeout: Duration,
    /// The pause between a client's operations.
    pub think: Duration,
    /// The quiet time after each fault (and before the first).
    pub quiet: Duration,
}

impl Options {
    /// The suite's defaults: 12 clients on 8 keys, 1.5 s timeouts, 10 ms between a
    /// client's operations, 5 s of quiet after each fault, every fault kind.
    pub fn new(bin: impl Into<PathBuf>, out: impl Into<PathBuf>, duration: Duration) -> Self {
        Options {
            bin: bin.into(),
            duration,
            reads: ReadMode::Consistent,
            faults: FaultKind::ALL.to_vec(),
            out: out.into(),
            seed: 1,
            clients: 12,
            keys: 8,
            timeout: Duration::from_millis(1500),
            think: Duration::from_millis(10),
            quiet: Duration::from_secs(5),
        }
    }
}

/// Why a run could not be carried out (as opposed to a run that found problems).
#[derive(Debug, thiserror::Error)]
pub enum NemesisError {
    /// The namespaces could not be made although the process is root.
    #[error("network namespaces: {0}")]
    Netns(#[from] NetnsError),
    /// The cluster never elected a leader before the clients started.
    #[error("the cluster did not start: {0}")]
    Start(String),
    /// Writing the outputs failed.
    #[error("writing {path}: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// Counts of the history's operations.
#[derive(Debug, Clone, Default)]
pub struct OpCounts {
    /// Reads.
    pub reads: usize,
    /// Puts.
    pub writes: usize,
    /// Deletes.
    pub deletes: usize,
    /// Check-and-sets.
    pub cas: usize,
    /// Operations with a definite outcome (read, written, a check-and-set's verdict).
    pub ok: usize,
    /// Operations that certainly did nothing.
    pub failed: usize,
    /// Operations whose outcome is unknown.
    pub unknown: usize,
}

impl OpCounts {
    fn of(events: &[Event]) -> OpCounts {
        let mut c = OpCounts::default();
        for e in events {
            match &e.call {
                Call::Read => c.reads += 1,
                Call::Write { value: Some(_) } => c.writes += 1,
                Call::Write { value: None } => c.deletes += 1,
                Call::Cas { .. } => c.cas += 1,
            }
            match e.ret {
                Ret::Unknown => c.unknown += 1,
                Ret::Failed => c.failed += 1,
                _ => c.ok += 1,
            }
        }
        c
    }

    /// All operations.
    pub fn total(&self) -> usize {
        self.reads + self.writes + self.deletes + self.cas
    }
}

/// What a run found.
#[derive(Debug)]
pub struct Outcome {
    /// The options it ran with.
    pub options: Options,
    /// The history, final reads included, by invocation time.
    pub events: Vec<Event>,
    /// Its counts.
    pub counts: OpCounts,
    /// The linearizability checker's verdict.
    pub check: fsmhost_lincheck::Report,
    /// The faults, in order, with their gaps.
    pub faults: Vec<FaultRecord>,
    /// The failover table.
    pub gaps: Vec<report::GapRow>,
    /// Violations of the index check.
    pub index_problems: Vec<String>,
    /// The servers' agreement after healing: the applied index and state hash, or what
    /// they said instead.
    pub converged: Result<(u64, String), String>,
    /// Log lines with `panicked`, prefixed with the server's name.
    pub panics: Vec<String>,
    /// Anything else that went wrong: unexpected answers, a server that exited on its
    /// own, keys the final reads could not read, a failed heal.
    pub anomalies: Vec<String>,
    /// Why partition faults were not run, if they were asked for and were not.
    pub partitions_skipped: Option<String>,
}

impl Outcome {
    /// Every problem the run found, readable; empty when it passed.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for f in &self.check.failures {
            p.push(format!("not linearizable: {f}"));
        }
        p.extend(self.index_problems.iter().map(|s| format!("index: {s}")));
        if let Err(e) = &self.converged {
            p.push(format!("state hashes: {e}"));
        }
        p.extend(self.panics.iter().map(|s| format!("panic: {s}")));
        p.extend(self.anomalies.iter().map(|s| format!("anomaly: {s}")));
        p
    }

    /// Whether the run found nothing wrong.
    pub fn passed(&self) -> bool {
        self.problems().is_empty()
    }

    /// The report: settings, verdict, counts, checks, the failover table and the faults.
    pub fn report(&self) -> String {
        let o = &self.options;
        let c = &self.counts;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "nemesis run: {:.0} s, reads {}, {} clients on {} keys, seed {}, timeout {} ms",
            o.duration.as_secs_f64(),
            o.reads,
            o.clients,
            o.keys,
            o.seed,
            o.timeout.as_millis()
        );
        let _ = writeln!(s, "result: {}", if self.passed() { "PASS" } else { "FAIL" });
        match &self.partitions_skipped {
            Some(why) => {
                let _ = writeln!(s, "partitions: NOT EXERCISED ({why})");
            }
            None => {
                let _ = writeln!(
                    s,
                    "partitions: {}",
                    if o.faults.iter().any(|f| f.needs_netns()) {
                        "exercised (servers in network namespaces)"
                    } else {
                        "not asked for"
                    }
                );
            }
        }
        let _ = writeln!(
            s,
            "ops: {} (reads {}, puts {}, deletes {}, cas {}; definite {}, failed {}, unknown {})",
            c.total(),
            c.reads,
            c.writes,
            c.deletes,
            c.cas,
            c.ok,
            c.failed,
            c.unknown
        );
        let _ = writeln!(s, "faults: {}", self.faults.len());
        if self.check.is_ok() {
            let _ = writeln!(
                s,
                "linearizability: ok ({} keys, {} ops)",
                self.check.keys, self.check.ops
            );
        } else {
            let _ = writeln!(
                s,
                "linearizability: {} of {} keys FAIL",
                self.check.failures.len(),
                self.check.keys
            );
        }
        section(&mut s, "index check", &self.index_problems);
        match &self.converged {
            Ok((index, hash)) => {
                let _ = writeln!(
                    s,
                    "state hashes: all servers agree at applied index {index} ({hash})"
                );
            }
            Err(e) => {
                let _ = writeln!(s, "state hashes: FAIL: {e}");
            }
        }
        section(&mut s, "panics in server logs", &self.panics);
        section(&mut s, "anomalies", &self.anomalies);
        let _ = writeln!(
            s,
            "\nfailover (longest gap between acknowledged writes from a fault's start to \
             the next fault, an upper bound: it includes clients' timeouts against the \
             faulty server; for faults on the leader, when another server first reported \
             itself leader; a fault waits up to 30 s for the cluster to be whole, every \
             server a voter, and says when it began without):\n{}",
            report::render_gap_table(&self.gaps)
        );
        let _ = writeln!(s, "faults:\n{}", report::render_faults(&self.faults));
        for f in &self.check.failures {
            // The checker's times are relative to the key's first operation; ops.jsonl's
            // are the run's.
            let first = self
                .events
                .iter()
                .filter(|e| e.key == f.key)
                .map(|e| e.invoked)
                .min()
                .unwrap_or(0);
            let _ = writeln!(
                s,
                "----- failing key (its first operation at {:.6} s of the run) -----\n{f}",
                first as f64 / 1e9
            );
        }
        s
    }
}

/// `title: none`, or the title and the lines indented.
fn section(s: &mut String, title: &str, lines: &[String]) {
    if lines.is_empty() {
        let _ = writeln!(s, "{title}: none");
    } else {
        let _ = writeln!(s, "{title}: {}", lines.len());
        for l in lines.iter().take(50) {
            let _ = writeln!(s, "  {l}");
        }
        if lines.len() > 50 {
            let _ = writeln!(s, "  ... and {} more", lines.len() - 50);
        }
    }
}

/// Stops the clients when dropped, so that a panicking run does not leave them running.
struct StopClients(Arc<Shared>);

impl Drop for StopClients {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// Sleeps until `t0 + at`, or not at all if that has passed.
fn sleep_until(t0: Instant, at: Duration) {
    if let Some(d) = at.checked_sub(t0.elapsed()) {
        std::thread::sleep(d);
    }
}

/// Waits until a put through server `leader` is acknowledged.
fn first_write(c: &Cluster, leader: usize, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let addr = c.servers[leader].http_addr();
    loop {
        match workload::request(
            &addr,
            "PUT",
            "/v1/kv/nemesis/warmup",
            b"1",
            Duration::from_secs(5),
        ) {
            Ok(a) if a.status == 200 => return Ok(()),
            other if Instant::now() > deadline => {
                return Err(format!("the first write never succeeded: {other:?}"));
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Runs the suite as `o` says; the outputs are written whatever it finds.
pub fn run(o: &Options) -> Result<Outcome, NemesisError> {
    let out_err = |path: PathBuf| move |source| NemesisError::Output { path, source };
    std::fs::create_dir_all(&o.out).map_err(out_err(o.out.clone()))?;
    let bin = o.bin.display().to_string();
    let wants_partitions = o.faults.iter().any(|f| f.needs_netns());
    let (mut cluster, partitions_skipped) = if Netns::available() {
        let net = Netns::create(3)?;
        (Cluster::start_in_namespaces(&bin, net, SERVER_CONFIG), None)
    } else {
        let why = "not root: network namespaces cannot be made; kill and pause faults only";
        if wants_partitions {
            eprintln!("nemesis: PARTITIONS NOT EXERCISED ({why})");
        }
        (
            Cluster::start_with(&bin, 3, SERVER_CONFIG),
            wants_partitions.then(|| why.to_string()),
        )
    };
    let kinds: Vec<FaultKind> = o
        .faults
        .iter()
        .copied()
        .filter(|f| !f.needs_netns() || cluster.netns().is_some())
        .collect();
    let leader = cluster
        .try_wait_leader(Duration::from_secs(60))
        .map_err(NemesisError::Start)?;
    first_write(&cluster, leader, Duration::from_secs(30)).map_err(NemesisError::Start)?;

    let w = Workload {
        clients: o.clients,
        keys: o.keys,
        reads: o.reads,
        timeout: o.timeout,
        think: o.think,
        seed: o.seed,
    };
    let shared = Arc::new(Shared {
        servers: cluster.servers.iter().map(|s| s.http_addr()).collect(),
        t0: Instant::now(),
        stop: Default::default(),
    });
    let t0 = shared.t0;
    let stopper = StopClients(shared.clone());
    let handles = workload::start(&w, &shared);
    let mut rng = Rng::new(o.seed ^ 0x6e656d65);
    let mut faults: Vec<FaultRecord> = Vec::new();
    let mut anomalies = Vec::new();
    sleep_until(t0, o.quiet.min(o.duration));
    let mut next = 0;
    while !kinds.is_empty() && t0.elapsed() + FAULT_BUDGET + o.quiet / 2 <= o.duration {
        for i in 0..cluster.servers.len() {
            if !cluster.servers[i].is_running() {
                anomalies.push(format!(
                    "{} exited on its own before fault {}",
                    cluster.servers[i].name,
                    faults.len() + 1
                ));
                cluster.kill(i);
                cluster.restart(i);
            }
        }
        let kind = kinds[next % kinds.len()];
        next += 1;
        faults.push(faults::inject(&mut cluster, kind, &mut rng, t0));
        let quiet_end = t0.elapsed() + o.quiet;
        sleep_until(t0, quiet_end.min(o.duration));
    }
    sleep_until(t0, o.duration);
    drop(stopper);
    let mut record = workload::Record::default();
    for h in handles {
        match h.join() {
            Ok(r) => record.merge(r),
            Err(_) => anomalies.push("a client thread panicked".to_string()),
        }
    }
    let stopped = shared.now();
    for i in 0..faults.len() {
        faults[i].window_end = faults.get(i + 1).map_or(stopped, |f| f.started);
    }
    eprintln!(
        "nemesis [{:6.1}s] clients stopped; healing",
        stopped as f64 / 1e9
    );

    anomalies.extend(faults::heal_all(&mut cluster));
    if let Err(e) = cluster.try_wait_leader(Duration::from_secs(60)) {
        anomalies.push(format!("after healing: {e}"));
    }
    let final_process = 1 << 40;
    let (finals, unread) =
        workload::final_reads(&w, &shared, final_process, Duration::from_secs(60));
    record.merge(finals);
    anomalies.extend(
        unread
            .iter()
            .map(|k| format!("the final ?consistent read of {k} never succeeded")),
    );
    anomalies.extend(record.oddities.iter().cloned());
    // Every server must reach what the furthest one applied by now (raft's applied index,
    // not the FSM's X-Consul-Index): a restarted server that has not replayed its log yet
    // agrees with nobody.
    let furthest = (0..cluster.servers.len())
        .filter_map(|i| cluster.state(i).map(|s| s.applied))
        .max()
        .unwrap_or(1);
    let converged = cluster.try_wait_converged_past(furthest, Duration::from_secs(60));

    let mut panics = Vec::new();
    let logs = o.out.join("logs");
    std::fs::create_dir_all(&logs).map_err(out_err(logs.clone()))?;
    for (i, s) in cluster.servers.iter().enumerate() {
        let text = cluster.log_text(i);
        panics.extend(
            text.lines()
                .filter(|l| l.contains("panicked"))
                .map(|l| format!("{}: {l}", s.name)),
        );
        let path = logs.join(format!("{}.log", s.name));
        std::fs::write(&path, text).map_err(out_err(path))?;
    }
    drop(cluster);

    let mut events = record.events;
    events.sort_by_key(|e| (e.invoked, e.client));
    let mut notes = record.notes;
    notes.sort_by_key(|n| (n.invoked, n.client));
    let path = o.out.join("ops.jsonl");
    let mut text = String::new();
    for n in &notes {
        if let Ok(line) = serde_json::to_string(n) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    std::fs::write(&path, text).map_err(out_err(path))?;
    eprintln!("nemesis: checking {} operations", events.len());
    let check = fsmhost_lincheck::check(&events);
    let index_problems = report::check_indexes(&record.acked, &record.reads);
    let acked_at: Vec<u64> = record.acked.iter().map(|a| a.at).collect();
    report::measure_gaps(&mut faults, &acked_at);
    let gaps = report::gap_table(&faults);
    let outcome = Outcome {
        options: o.clone(),
        counts: OpCounts::of(&events),
        events,
        check,
        faults,
        gaps,
        index_problems,
        converged,
        panics,
        anomalies,
        partitions_skipped,
    };

    let history = o.out.join("history.jsonl");
    let file = std::fs::File::create(&history).map_err(out_err(history.clone()))?;
    fsmhost_lincheck::write_jsonl(std::io::BufWriter::new(file), &outcome.events)
        .map_err(out_err(history))?;
    let path = o.out.join("report.txt");
    std::fs::write(&path, outcome.report()).map_err(out_err(path))?;
    let path = o.out.join("failover.md");
    std::fs::write(&path, report::render_gap_table(&outcome.gaps)).map_err(out_err(path))?;
    Ok(outcome)
}
