//! The server's metrics, served by `GET /v1/agent/metrics` in Consul's JSON shape
//! (`Timestamp`, `Gauges`, `Points`, `Counters`, `Samples`, with integer counts, so Consul's
//! Go client decodes it) or, with `?format=prometheus`, in the Prometheus text format.
//!
//! Names are Consul's where a metric means the same thing (`consul.raft.apply`,
//! `consul.raft.commitTime`, `consul.raft.applied_index`, `consul.raft.last_index`,
//! `consul.server.isLeader`, `consul.autopilot.healthy`, `consul.autopilot.failure_tolerance`,
//! `consul.api.http`), under `[telemetry] metrics_prefix` (Consul's key, default `consul`);
//! Prometheus gets the same names with Consul's translation of `.` to `_`. Consul's
//! per-message FSM timers (`consul.fsm.kvs`, `consul.fsm.register`...) are here one timer,
//! `consul.fsm.apply`, labelled with the plugin and command, since the FSM's messages are
//! the plugins' commands. Timers are in milliseconds in the JSON (as Consul's), in seconds
//! in Prometheus histograms.
//!
//! Owns: the one registry of the process and every metric in it. Recording is a function
//! call from the module where the event happens (raft commits in `server::batch`, plugin
//! applies in `plugin`, snapshots in `raft::state_machine` and `server::snapshot_jobs`, HTTP in
//! `server::http`); raft's own figures are gauges read from openraft when scraped.
//!
//! Labels are bounded: plugin and command names come from loaded plugins' descriptions
//! (unknown ones are refused before any call), HTTP paths are cut to their route prefix.

use prometheus::IntGauge;
use prometheus::{
    CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, Opts,
    Registry, TextEncoder,
};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

/// The prefix of every metric's name (`[telemetry] metrics_prefix`), set once at start.
static PREFIX: OnceLock<String> = OnceLock::new();

/// Consul's default `metrics_prefix`.
pub const DEFAULT_PREFIX: &str = "consul";

/// Sets the prefix of every metric's name; the first call wins (one per process).
pub fn set_prefix(prefix: &str) {
    let _ = PREFIX.set(prefix.to_string());
}

fn prefix() -> &'static str {
    PREFIX.get().map_or(DEFAULT_PREFIX, String::as_str)
}

/// Each registry name (no prefix, Prometheus' alphabet) with its Consul name (dotted), and
/// whether it is a timer (seconds in the registry, milliseconds in Consul's JSON).
const NAMES: &[(&str, &str, bool)] = &[
    ("raft_apply", "raft.apply", false),
    ("raft_commitTime", "raft.commitTime", true),
    ("raft_leader_changes", "raft.leader.changes", false),
    ("raft_applied_index", "raft.applied_index", false),
    ("raft_last_index", "raft.last_index", false),
    ("raft_term", "raft.term", false),
    (
        "raft_snapshot_last_index",
        "raft.snapshot.last_index",
        false,
    ),
    ("server_isLeader", "server.isLeader", false),
    ("fsm_index", "fsm.index", false),
    ("fsm_apply", "fsm.apply", true),
    ("fsm_apply_fuel", "fsm.apply.fuel", false),
    ("fsm_apply_errors", "fsm.apply.errors", false),
    ("raft_snapshot", "raft.snapshot", true),
    ("api_http", "api.http", true),
    ("autopilot_healthy", "autopilot.healthy", false),
    (
        "autopilot_failure_tolerance",
        "autopilot.failure_tolerance",
        false,
    ),
    ("state_rows", "state.rows", false),
    (
        "raft_logstore_verifier_checkpoints_written",
        "raft.logstore.verifier.checkpoints_written",
        false,
    ),
    (
        "raft_logstore_verifier_ranges_verified",
        "raft.logstore.verifier.ranges_verified",
        false,
    ),
    (
        "raft_logstore_verifier_read_checksum_failures",
        "raft.logstore.verifier.read_checksum_failures",
        false,
    ),
    (
        "raft_logstore_verifier_skipped",
        "raft.logstore.verifier.skipped",
        false,
    ),
];

/// A registry name's Consul name and whether it is a timer.
fn consul_name(name: &str) -> (&str, bool) {
    NAMES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or((name, false), |(_, dotted, timer)| (*dotted, *timer))
}

/// The apply metrics of one plugin command ([`Metrics::command`]).
pub struct CommandMetrics {
    time: Histogram,
    fuel: Histogram,
    plugin: String,
    command: String,
}

impl CommandMetrics {
    /// Records one apply of the command: how long it took, the fuel it used, and whether
    /// it failed.
    pub fn record(&self, took: Duration, fuel: u64, ok: bool) {
        self.time.observe(took.as_secs_f64());
        self.fuel.observe(fuel as f64);
        if !ok {
            METRICS
                .fsm_apply_errors
                .with_label_values(&[&self.plugin, &self.command])
                .inc();
        }
    }
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Plugin commands committed through this server while it led.
    pub raft_apply: IntCounter,
    /// Proposal to commit and apply, on the leader, per log entry.
    pub raft_commit_time: HistogramVec,
    /// Times this server saw the leader change (including to none).
    pub raft_leader_changes: IntCounter,
    /// Raft's figures, read when scraped: the applied index, the last log index, the term,
    /// the last snapshot's index, whether this server leads (Consul's
    /// `server.isLeader`), and the FSM index.
    pub raft: RaftGauges,
    /// One plugin command's apply, by plugin and command.
    pub fsm_apply_time: HistogramVec,
    /// Fuel one plugin command used, by plugin and command.
    pub fsm_apply_fuel: HistogramVec,
    /// Plugin commands that failed (their error is their outcome), by plugin and command.
    pub fsm_apply_errors: CounterVec,
    /// Snapshot work, by kind: build, install, recover, save, restore.
    pub snapshot_time: HistogramVec,
    /// HTTP API requests, by method and route prefix.
    pub http_request_time: HistogramVec,
    /// Autopilot's judgement, on the leader only (Consul's `autopilot.healthy`, 1 or 0):
    /// no labels; absent on a follower.
    pub autopilot_healthy: GaugeVec,
    /// Consul's `autopilot.failure_tolerance`, on the leader only.
    pub autopilot_failure_tolerance: GaugeVec,
    /// Objects per table of the store, read when scraped (labels: the plugin set's tables,
    /// so bounded).
    pub state_rows: GaugeVec,
    /// Log verification (Consul's `raft.logstore.verifier.*`).
    pub verifier: VerifierCounters,
}

/// Log verification's counters ([`Metrics::verifier`]).
pub struct VerifierCounters {
    /// Checkpoints this server proposed while leading.
    pub checkpoints_written: IntCounter,
    /// Checkpoint ranges this server read back as the leader did.
    pub ranges_verified: IntCounter,
    /// Checkpoint ranges this server read back differently.
    pub read_checksum_failures: IntCounter,
    /// Checkpoint ranges this server had not wholly applied since it started.
    pub skipped: IntCounter,
}

/// Raft's figures as gauges (see [`Metrics::raft`]).
pub struct RaftGauges {
    /// `raft.applied_index`.
    pub applied_index: IntGauge,
    /// `raft.last_index`.
    pub last_index: IntGauge,
    /// `raft.term`.
    pub term: IntGauge,
    /// `raft.snapshot.last_index`.
    pub snapshot_last_index: IntGauge,
    /// `server.isLeader`: 1 on the leader.
    pub is_leader: IntGauge,
    /// `fsm.index`: the FSM index (plugin commands applied).
    pub fsm_index: IntGauge,
}

/// Latency buckets, in seconds: 50 µs to 60 s.
const SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Fuel buckets: 1e3 to 1e9 units.
const FUEL: &[f64] = &[1e3, 1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 1e8, 1e9];

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("a valid histogram definition");
    registry
        .register(Box::new(h.clone()))
        .expect("each metric is registered once");
    h
}

impl Metrics {
    fn new() -> Self {
        // The definitions below are constants: a failure here is a bug caught by any test.
        let registry = Registry::new();
        let register = |m: Box<dyn prometheus::core::Collector>| {
            registry
                .register(m)
                .expect("each metric is registered once");
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("a valid counter definition");
            register(Box::new(c.clone()));
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("a valid gauge definition");
            register(Box::new(g.clone()));
            g
        };
        let gauges = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("a valid gauge definition");
            register(Box::new(g.clone()));
            g
        };
        let fsm_apply_errors = CounterVec::new(
            Opts::new(
                "fsm_apply_errors",
                "Plugin commands whose outcome was an error.",
            ),
            &["plugin", "command"],
        )
        .expect("a valid counter definition");
        register(Box::new(fsm_apply_errors.clone()));
        Metrics {
            raft_apply: counter(
                "raft_apply",
                "Plugin commands committed through this server while it led.",
            ),
            raft_leader_changes: counter(
                "raft_leader_changes",
                "Times this server saw the raft leader change.",
            ),
            raft: RaftGauges {
                applied_index: gauge("raft_applied_index", "The raft applied index."),
                last_index: gauge("raft_last_index", "The raft last log index."),
                term: gauge("raft_term", "The raft term."),
                snapshot_last_index: gauge(
                    "raft_snapshot_last_index",
                    "The last raft snapshot's index.",
                ),
                is_leader: gauge("server_isLeader", "1 on the raft leader, else 0."),
                fsm_index: gauge("fsm_index", "Plugin commands applied (the FSM index)."),
            },
            autopilot_healthy: gauges(
                "autopilot_healthy",
                "Autopilot's judgement on the leader: every server healthy (1 or 0).",
                &[],
            ),
            autopilot_failure_tolerance: gauges(
                "autopilot_failure_tolerance",
                "Autopilot's judgement on the leader: voters that may fail.",
                &[],
            ),
            state_rows: gauges(
                "state_rows",
                "Objects in each table of the state store.",
                &["table"],
            ),
            fsm_apply_errors,
            verifier: VerifierCounters {
                checkpoints_written: counter(
                    "raft_logstore_verifier_checkpoints_written",
                    "Log verification checkpoints proposed by this server.",
                ),
                ranges_verified: counter(
                    "raft_logstore_verifier_ranges_verified",
                    "Log ranges this server read back as the leader did.",
                ),
                read_checksum_failures: counter(
                    "raft_logstore_verifier_read_checksum_failures",
                    "Log ranges this server read back differently from the leader.",
                ),
                skipped: counter(
                    "raft_logstore_verifier_skipped",
                    "Log ranges this server could not verify (not applied since start).",
                ),
            },
            raft_commit_time: histogram(
                &registry,
                "raft_commitTime",
                "Proposal to commit and apply of a log entry, on the leader.",
                &[],
                SECONDS,
            ),
            fsm_apply_time: histogram(
                &registry,
                "fsm_apply",
                "One plugin command's apply.",
                &["plugin", "command"],
                SECONDS,
            ),
            fsm_apply_fuel: histogram(
                &registry,
                "fsm_apply_fuel",
                "Fuel one plugin command used.",
                &["plugin", "command"],
                FUEL,
            ),
            snapshot_time: histogram(
                &registry,
                "raft_snapshot",
                "Snapshot work: build, install, recover, save, restore.",
                &["kind"],
                SECONDS,
            ),
            http_request_time: histogram(
                &registry,
                "api_http",
                "HTTP API requests, by method and route prefix.",
                &["method", "path"],
                SECONDS,
            ),
            registry,
        }
    }

    /// The apply metrics of plugin `plugin`'s command `command`, to keep and record with
    /// ([`CommandMetrics::record`]): a label lookup hashes the labels and takes a lock,
    /// a measurable part of a command's apply.
    pub fn command(&self, plugin: &str, command: &str) -> CommandMetrics {
        let labels = [plugin, command];
        CommandMetrics {
            time: self.fsm_apply_time.with_label_values(&labels),
            fuel: self.fsm_apply_fuel.with_label_values(&labels),
            plugin: plugin.to_string(),
            command: command.to_string(),
        }
    }

    /// Records snapshot work of `kind`.
    pub fn record_snapshot(&self, kind: &str, took: Duration) {
        self.snapshot_time
            .with_label_values(&[kind])
            .observe(took.as_secs_f64());
    }

    /// Every family, named with the prefix as Prometheus spells it (`consul_raft_apply`).
    fn gathered(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.registry.gather();
        for f in &mut families {
            let name = format!("{}_{}", prefix(), f.name());
            f.set_name(name);
        }
        families
    }

    /// The Prometheus text format.
    pub fn prometheus(&self) -> String {
        let mut out = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.gathered(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Consul's `/v1/agent/metrics` JSON (`agent/metrics.MetricsSummary`): gauges, counters,
    /// and histograms as samples, with integer counts and Consul's dotted names. A
    /// counter's `Count` and `Sum` are its total; a sample's `Min` and `Max` are the edges
    /// of its lowest and highest non-empty histogram buckets (what a histogram keeps).
    pub fn consul_json(&self, timestamp: &str) -> serde_json::Value {
        use prometheus::proto::MetricType;
        let (mut gauges, mut counters, mut samples) = (Vec::new(), Vec::new(), Vec::new());
        for family in self.registry.gather() {
            let (dotted, timer) = consul_name(family.name());
            let name = format!("{}.{dotted}", prefix());
            // Timers are kept in seconds and shown in milliseconds, as Consul's.
            let scale = if timer { 1000.0 } else { 1.0 };
            for m in family.get_metric() {
                let labels: serde_json::Map<String, serde_json::Value> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name().to_string(), l.value().into()))
                    .collect();
                match family.get_field_type() {
                    MetricType::GAUGE => gauges.push(serde_json::json!({
                        "Name": name, "Value": m.get_gauge().get_value(), "Labels": labels,
                    })),
                    MetricType::COUNTER => {
                        let total = m.get_counter().get_value();
                        counters.push(serde_json::json!({
                            "Name": name, "Count": total as u64, "Rate": 0.0, "Sum": total,
                            "Min": 1.0, "Max": 1.0, "Mean": 1.0, "Stddev": 0.0,
                            "Labels": labels,
                        }));
                    }
                    MetricType::HISTOGRAM => {
                        let h = m.get_histogram();
                        let count = h.get_sample_count();
                        let sum = h.get_sample_sum() * scale;
                        let (min, max) = bucket_edges(h);
                        samples.push(serde_json::json!({
                            "Name": name,
                            "Count": count,
                            "Rate": 0.0,
                            "Sum": sum,
                            "Min": min * scale,
                            "Max": max * scale,
                            "Mean": if count == 0 { 0.0 } else { sum / count as f64 },
                            "Stddev": 0.0,
                            "Labels": labels,
                        }));
                    }
                    _ => {}
                }
            }
        }
        serde_json::json!({
            "Timestamp": timestamp,
            "Gauges": gauges,
            "Points": [],
            "Counters": counters,
            "Samples": samples,
        })
    }
}

/// The lower edge of a histogram's lowest non-empty bucket and the upper edge of its
/// highest (the last finite bound for observations past every bucket).
fn bucket_edges(h: &prometheus::proto::Histogram) -> (f64, f64) {
    let (mut min, mut max, mut below, mut lower) = (None, 0.0, 0, 0.0);
    for b in h.get_bucket() {
        let upper = b.upper_bound();
        if b.cumulative_count() > below {
            min.get_or_insert(lower);
            max = upper;
        }
        below = b.cumulative_count();
        lower = upper;
    }
    if h.get_sample_count() > below {
        min.get_or_insert(lower);
        max = lower;
    }
    (min.unwrap_or(0.0), max)
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
