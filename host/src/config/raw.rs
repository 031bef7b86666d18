//! The configuration file as TOML says it: Consul's option names, every key optional,
//! unknown keys refused. [`RawConfig::merge`] lays flags over the file; resolving the
//! result into a checked `Config` is the parent module's job.

use serde::Deserialize;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// `[ports]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    /// Server RPC port: raft and forwarding (default 8300).
    pub server: Option<u16>,
    /// HTTP API port (default 8500; -1 turns plain HTTP off).
    pub http: Option<i32>,
    /// HTTPS API port (default -1: off; Consul's usual choice is 8501). Needs
    /// `tls.https.cert_file` and `key_file` (or in `tls.defaults`).
    pub https: Option<i32>,
}

/// `[telemetry]`: Consul's telemetry stanza (the part that applies: metric names).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// The prefix of every metric's name (default `consul`).
    pub metrics_prefix: Option<String>,
}

/// `[raft_logstore]`: Consul's `raft_logstore` block.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogStore {
    /// `"wal"` or `"redb"`.
    pub backend: Option<String>,
    /// `[raft_logstore.wal]`.
    pub wal: Option<RawWal>,
    /// `[raft_logstore.verification]`.
    pub verification: Option<RawVerification>,
}

/// `[raft_logstore.wal]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWal {
    /// Segment size in MiB (default 64).
    pub segment_size_mb: Option<u64>,
}

/// `[raft_logstore.verification]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerification {
    /// Whether the leader writes checkpoints (default false).
    pub enabled: Option<bool>,
    /// How often (default "60s").
    pub interval: Option<String>,
}

/// `[limits]`: Consul's connection limits.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Most concurrent connections one client address may hold to the HTTP port
    /// (default 200; 0: no limit).
    pub http_max_conns_per_client: Option<u32>,
    /// Most concurrent connections one client address may hold to the server port
    /// (default 100; 0: no limit).
    pub rpc_max_conns_per_client: Option<u32>,
    /// How long a client has to complete the TLS handshake on the HTTPS port (default "5s").
    pub https_handshake_timeout: Option<String>,
    /// How long a peer has to complete the TLS handshake on the server port (default "5s").
    pub rpc_handshake_timeout: Option<String>,
}

/// One stanza of `[tls]`: `[tls.defaults]`, `[tls.internal_rpc]` or `[tls.https]`, with
/// Consul's keys. A key left out of `internal_rpc` or `https` takes the value in
/// `defaults`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsStanza {
    /// A PEM file of CA certificates.
    pub ca_file: Option<PathBuf>,
    /// A directory of PEM files of CA certificates.
    pub ca_path: Option<PathBuf>,
    /// This server's certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// This server's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Require a certificate signed by the CA from every client.
    pub verify_incoming: Option<bool>,
    /// Check other servers' certificates against the CA.
    pub verify_outgoing: Option<bool>,
    /// `internal_rpc` only: every server's certificate must be valid for
    /// `server.<datacenter>.<domain>`.
    pub verify_server_hostname: Option<bool>,
    /// `TLSv1_2` (default) or `TLSv1_3`.
    pub tls_min_version: Option<String>,
}

/// `[acl.tokens]`: tokens the agent is configured with.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAclTokens {
    /// A management token's secret a leader creates if no token has it (Consul's
    /// `initial_management`).
    pub initial_management: Option<String>,
    /// The token this agent uses for its own requests (accepted, for Consul's configs;
    /// servers authenticate to each other by TLS).
    pub agent: Option<String>,
    /// The token a request without one is served with (instead of anonymous).
    pub default: Option<String>,
}

/// `[acl]`: Consul's ACL stanza.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcl {
    /// Turns ACLs on (default false).
    pub enabled: Option<bool>,
    /// `allow` (default) or `deny`: what a token may do that no rule decides.
    pub default_policy: Option<String>,
    /// `extend-cache` (default), `async-cache`, `allow` or `deny` (accepted for Consul's
    /// configs; servers always resolve tokens from their own replicated state).
    pub down_policy: Option<String>,
    /// Accepted for Consul's configs (tokens set through the agent API are not kept).
    pub enable_token_persistence: Option<bool>,
    /// Configured tokens.
    pub tokens: Option<RawAclTokens>,
}

/// `[tls]`: Consul's TLS stanza.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Values every listener takes unless its own stanza sets them.
    pub defaults: Option<RawTlsStanza>,
    /// The server port (raft, forwarding): mutual TLS.
    pub internal_rpc: Option<RawTlsStanza>,
    /// The HTTPS port.
    pub https: Option<RawTlsStanza>,
}

/// `[addresses]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Addresses {
    /// Address the HTTP API listens on (default 127.0.0.1).
    pub http: Option<String>,
    /// Address the HTTPS API listens on (default: `addresses.http`'s).
    pub https: Option<String>,
}

/// `[performance]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Performance {
    /// Consul's `raft_multiplier`: scales raft's timers (1 = fastest, the default here;
    /// Consul's own default is 5 for slow machines).
    pub raft_multiplier: Option<u32>,
}

/// `[plugin_limits]`: what one plugin call may use. Every server must run the same limits:
/// whether a command runs out of fuel or memory decides its outcome, on every server alike.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLimits {
    /// Fuel per call (about one unit per wasm instruction; default 1e9).
    pub fuel: Option<u64>,
    /// Most bytes of linear memory an instance may grow to (default 256 MiB).
    pub memory_bytes: Option<u64>,
    /// Most bytes one call may insert into the store (default 64 MiB).
    pub write_bytes: Option<u64>,
}

/// `[autopilot]`: Consul's `autopilot` stanza. These seed the replicated configuration the
/// first time a leader finds none stored; after that `PUT /v1/operator/autopilot/configuration`
/// (or `operator autopilot set-config`) changes it for every server. The two intervals are
/// this server's own (Consul fixes them at 10s and 2s).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAutopilot {
    /// Remove dead servers (default true).
    pub cleanup_dead_servers: Option<bool>,
    /// Longest time since a server's last contact with the leader for it to be healthy
    /// (default "200ms").
    pub last_contact_threshold: Option<String>,
    /// Most log entries a healthy server trails the leader by (default 250).
    pub max_trailing_logs: Option<u64>,
    /// Fewest voters dead-server cleanup leaves (default 0: no minimum).
    pub min_quorum: Option<u32>,
    /// How long a new server must be healthy before it becomes a voter (default "10s").
    pub server_stabilization_time: Option<String>,
    /// How often autopilot promotes and cleans up (default "10s").
    pub reconcile_interval: Option<String>,
    /// How often the leader gathers server health (default "2s").
    pub update_interval: Option<String>,
}

/// The configuration as written in a file, or given as flags: every key optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The node's name (default: the host name).
    pub node_name: Option<String>,
    /// Consul's `datacenter`: this cluster's datacenter (default `dc1`).
    pub datacenter: Option<String>,
    /// Consul's `domain`: the DNS domain servers' certificate names end in (default
    /// `consul`).
    pub domain: Option<String>,
    /// Where the raft log and the node id live.
    pub data_dir: Option<PathBuf>,
    /// Must be true: this build runs servers only.
    pub server: Option<bool>,
    /// How many servers to wait for before bootstrapping a new cluster.
    pub bootstrap_expect: Option<u32>,
    /// Server addresses (`host:port` of their server port) to join.
    pub retry_join: Option<Vec<String>>,
    /// Address to listen on for server traffic.
    pub bind_addr: Option<String>,
    /// Address other servers use to reach this one (default: `bind_addr`).
    pub advertise_addr: Option<String>,
    /// Ports.
    pub ports: Option<Ports>,
    /// Listen addresses.
    pub addresses: Option<Addresses>,
    /// Timers.
    pub performance: Option<Performance>,
    /// Log level: trace, debug, info, warn, err.
    pub log_level: Option<String>,
    /// Log JSON lines instead of text.
    pub log_json: Option<bool>,
    /// Consul's `raft_snapshot_threshold`: log entries since the last snapshot that make
    /// the next check take one (default 16384).
    pub raft_snapshot_threshold: Option<u64>,
    /// Consul's `raft_snapshot_interval`: how often the threshold is checked, randomized
    /// between 1x and 2x (default "30s").
    pub raft_snapshot_interval: Option<String>,
    /// Consul's `raft_trailing_logs`: log entries kept after a snapshot compacts the log,
    /// so slightly lagging servers catch up from the log (default 10240).
    pub raft_trailing_logs: Option<u64>,
    /// How many raft snapshots to keep on disk (default 2, as Consul).
    pub raft_snapshot_retain: Option<u32>,
    /// Consul's tombstone TTL: how long a deleted key's tombstone is kept before the
    /// leader reaps it (default "15m").
    pub tombstone_ttl: Option<String>,
    /// Plugin component files (`.wasm`) to load instead of the bundled set.
    pub plugins: Option<Vec<PathBuf>>,
    /// Where compiled plugins are cached (default `<data_dir>/plugin-cache`).
    pub plugin_cache_dir: Option<PathBuf>,
    /// Limits of one plugin call.
    pub plugin_limits: Option<PluginLimits>,
    /// Autopilot.
    pub autopilot: Option<RawAutopilot>,
    /// Connection limits.
    pub limits: Option<RawLimits>,
    /// TLS.
    pub tls: Option<RawTls>,
    /// ACLs.
    pub acl: Option<RawAcl>,
    /// Telemetry.
    pub telemetry: Option<RawTelemetry>,
    /// The raft log store.
    pub raft_logstore: Option<RawLogStore>,
}

impl RawConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string().trim().replace('\n', " "),
        })
    }

    /// `self` with every key `over` sets replaced by its value.
    pub fn merge(self, over: RawConfig) -> RawConfig {
        let ports = match (self.ports, over.ports) {
            (Some(a), Some(b)) => Some(Ports {
                server: b.server.or(a.server),
                http: b.http.or(a.http),
                https: b.https.or(a.https),
            }),
            (a, b) => b.or(a),
        };
        let addresses = match (self.addresses, over.addresses) {
            (Some(a), Some(b)) => Some(Addresses {
                http: b.http.or(a.http),
                https: b.https.or(a.https),
            }),
            (a, b) => b.or(a),
        };
        RawConfig {
            node_name: over.node_name.or(self.node_name),
            datacenter: over.datacenter.or(self.datacenter),
            domain: over.domain.or(self.domain),
            data_dir: over.data_dir.or(self.data_dir),
            server: over.server.or(self.server),
            bootstrap_expect: over.bootstrap_expect.or(self.bootstrap_expect),
            retry_join: over.retry_join.or(self.retry_join),
            bind_addr: over.bind_addr.or(self.bind_addr),
            advertise_addr: over.advertise_addr.or(self.advertise_addr),
            ports,
            addresses,
            performance: over.performance.or(self.performance),
            log_level: over.log_level.or(self.log_level),
            log_json: over.log_json.or(self.log_json),
            raft_snapshot_threshold: over
                .raft_snapshot_threshold
                .or(self.raft_snapshot_threshold),
            raft_snapshot_interval: over.raft_snapshot_interval.or(self.raft_snapshot_interval),
            raft_trailing_logs: over.raft_trailing_logs.or(self.raft_trailing_logs),
            raft_snapshot_retain: over.raft_snapshot_retain.or(self.raft_snapshot_retain),
            tombstone_ttl: over.tombstone_ttl.or(self.tombstone_ttl),
            plugins: over.plugins.or(self.plugins),
            plugin_cache_dir: over.plugin_cache_dir.or(self.plugin_cache_dir),
            plugin_limits: over.plugin_limits.or(self.plugin_limits),
            autopilot: over.autopilot.or(self.autopilot),
            limits: over.limits.or(self.limits),
            telemetry: over.telemetry.or(self.telemetry),
            raft_logstore: over.raft_logstore.or(self.raft_logstore),
            tls: over.tls.or(self.tls),
            acl: over.acl.or(self.acl),
        }
    }
}
