//! The server's metrics, served by `GET /v1/agent/metrics` in Consul's JSON shape
//! (`Timestamp`, `Gauges`, `Counters`, `Samples`) or, with `?format=prometheus`, in the
//! Prometheus text format.
//!
//! Owns: the one registry of the process and every metric in it. Recording is a function
//! call from the module where the event happens (raft commits in `server::batch`, plugin
//! applies in `plugin`, snapshots in `raft::state_machine` and `server::snapshot_jobs`, HTTP in
//! `server::http`); raft's own figures are gauges read from openraft when scraped.
//!
//! Labels are bounded: plugin and command names come from loaded plugins' descriptions
//! (unknown ones are refused before any call), HTTP paths are cut to their route prefix.

use prometheus::{
    CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, Opts,
    Registry, TextEncoder,
};
use std::sync::LazyLock;
use std::time::Duration;

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
    /// Raft figures read when scraped: last log index, applied index, term, last snapshot
    /// index, leader (1 on the leader).
    pub raft_state: GaugeVec,
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
    /// Autopilot's judgement, on the leader only (Consul's `autopilot.healthy` and
    /// `autopilot.failure_tolerance`): `healthy` (1 or 0), `failure_tolerance`.
    pub autopilot: GaugeVec,
    /// Objects per table of the store, read when scraped (labels: the plugin set's tables,
    /// so bounded).
    pub state_rows: GaugeVec,
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
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("a valid counter definition");
            registry
                .register(Box::new(c.clone()))
                .expect("each metric is registered once");
            c
        };
        let raft_apply = counter(
            "fsmhost_raft_apply",
            "Plugin commands committed through this server while it led.",
        );
        let raft_leader_changes = counter(
            "fsmhost_raft_leader_changes",
            "Times this server saw the raft leader change.",
        );
        let raft_state = GaugeVec::new(
            Opts::new(
                "fsmhost_raft_state",
                "Raft figures of this server, by field.",
            ),
            &["field"],
        )
        .expect("a valid gauge definition");
        registry
            .register(Box::new(raft_state.clone()))
            .expect("each metric is registered once");
        let autopilot = GaugeVec::new(
            Opts::new(
                "fsmhost_autopilot",
                "Autopilot's judgement on the leader: healthy (1 or 0), failure_tolerance.",
            ),
            &["field"],
        )
        .expect("a valid gauge definition");
        registry
            .register(Box::new(autopilot.clone()))
            .expect("each metric is registered once");
        let state_rows = GaugeVec::new(
            Opts::new(
                "fsmhost_state_rows",
                "Objects in each table of the state store.",
            ),
            &["table"],
        )
        .expect("a valid gauge definition");
        registry
            .register(Box::new(state_rows.clone()))
            .expect("each metric is registered once");
        let fsm_apply_errors = CounterVec::new(
            Opts::new(
                "fsmhost_fsm_apply_errors",
                "Plugin commands whose outcome was an error.",
            ),
            &["plugin", "command"],
        )
        .expect("a valid counter definition");
        registry
            .register(Box::new(fsm_apply_errors.clone()))
            .expect("each metric is registered once");
        Metrics {
            autopilot,
            state_rows,
            raft_apply,
            raft_leader_changes,
            raft_state,
            fsm_apply_errors,
            raft_commit_time: histogram(
                &registry,
                "fsmhost_raft_commit_time_seconds",
                "Proposal to commit and apply of a log entry, on the leader.",
                &[],
                SECONDS,
            ),
            fsm_apply_time: histogram(
                &registry,
                "fsmhost_fsm_apply_seconds",
                "One plugin command's apply.",
                &["plugin", "command"],
                SECONDS,
            ),
            fsm_apply_fuel: histogram(
                &registry,
                "fsmhost_fsm_apply_fuel",
                "Fuel one plugin command used.",
                &["plugin", "command"],
                FUEL,
            ),
            snapshot_time: histogram(
                &registry,
                "fsmhost_snapshot_seconds",
                "Snapshot work: build, install, recover, save, restore.",
                &["kind"],
                SECONDS,
            ),
            http_request_time: histogram(
                &registry,
                "fsmhost_http_request_seconds",
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

    /// The Prometheus text format.
    pub fn prometheus(&self) -> String {
        let mut out = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Consul's `/v1/agent/metrics` JSON: gauges, counters, and histograms as samples.
    pub fn consul_json(&self, timestamp: &str) -> serde_json::Value {
        use prometheus::proto::MetricType;
        let (mut gauges, mut counters, mut samples) = (Vec::new(), Vec::new(), Vec::new());
        for family in self.registry.gather() {
            for m in family.get_metric() {
                let labels: serde_json::Map<String, serde_json::Value> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name().to_string(), l.value().into()))
                    .collect();
                let name = family.name();
                match family.get_field_type() {
                    MetricType::GAUGE => gauges.push(serde_json::json!({
                        "Name": name, "Value": m.get_gauge().get_value(), "Labels": labels,
                    })),
                    MetricType::COUNTER => counters.push(serde_json::json!({
                        "Name": name, "Count": m.get_counter().get_value(), "Labels": labels,
                    })),
                    MetricType::HISTOGRAM => {
                        let h = m.get_histogram();
                        let count = h.get_sample_count();
                        samples.push(serde_json::json!({
                            "Name": name,
                            "Count": count,
                            "Sum": h.get_sample_sum(),
                            "Mean": if count == 0 { 0.0 } else { h.get_sample_sum() / count as f64 },
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

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
