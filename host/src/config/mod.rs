//! Agent configuration: a TOML file with Consul's option names, overridden by command-line
//! flags of the same names, resolved into one checked [`Config`].
//!
//! Owns: the file format, defaults (Consul's ports 8300 and 8500), and every refusal of a
//! bad value, each naming the key and the reason ([`ConfigError`]). The file's own
//! shape (what TOML may say) is in [`raw`]; this module resolves it.

mod acl;
mod logstore;
mod raw;
mod timers;
mod tls;

pub use acl::AclConfig;
pub use logstore::{Backend as LogBackend, LogStoreConfig};
pub use raw::{
    Addresses, Performance, PluginLimits, Ports, RawAcl, RawAclTokens, RawAutopilot, RawConfig,
    RawLimits, RawLogStore, RawTls, RawTlsStanza, RawVerification, RawWal,
};
pub use timers::RaftTimers;
pub use tls::HandshakeTimeouts;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The default server RPC port (Consul's `ports.server`).
pub const DEFAULT_SERVER_PORT: u16 = 8300;
/// The default HTTP port (Consul's `ports.http`).
pub const DEFAULT_HTTP_PORT: u16 = 8500;
/// Consul's default tombstone TTL.
pub const DEFAULT_TOMBSTONE_TTL: Duration = Duration::from_secs(15 * 60);

/// The default datacenter (Consul's `datacenter`).
pub const DEFAULT_DATACENTER: &str = "dc1";
/// The default domain (Consul's `domain`).
pub const DEFAULT_DOMAIN: &str = "consul";

/// A refused configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not valid TOML, or a key is unknown or of the wrong type.
    #[error("config file {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and line).
        reason: String,
    },
    /// A value is refused.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key (as in the file).
        key: &'static str,
        /// Why.
        reason: String,
    },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The node's name.
    pub node_name: String,
    /// The datacenter (`datacenter`, lower-cased as Consul does; default `dc1`).
    pub datacenter: String,
    /// How long tombstones are kept (`tombstone_ttl`, Consul's default 15m): the leader's
    /// timers tell the plugins, and kv reaps older ones.
    pub tombstone_ttl: Duration,
    /// The domain (`domain`, default `consul`): servers' certificates name
    /// `server.<datacenter>.<domain>`.
    pub domain: String,
    /// The data dir; `None` keeps everything in memory (`-dev`).
    pub data_dir: Option<PathBuf>,
    /// Servers to wait for before bootstrapping (0: never bootstrap, only join).
    pub bootstrap_expect: u32,
    /// Server addresses to join.
    pub retry_join: Vec<String>,
    /// Where the server port listens.
    pub rpc_bind: SocketAddr,
    /// The server address others use.
    pub rpc_advertise: SocketAddr,
    /// Where the plain HTTP API listens (`None`: `ports.http = -1`).
    pub http_bind: Option<SocketAddr>,
    /// Where the HTTPS API listens (`None`: off, the default).
    pub https_bind: Option<SocketAddr>,
    /// TLS of the server port (`tls.internal_rpc`): mutual TLS when set.
    pub tls_rpc: Option<crate::tls::TlsSettings>,
    /// TLS of the HTTPS port (`tls.https`), set when the port is.
    pub tls_https: Option<crate::tls::TlsSettings>,
    /// ACLs (`[acl]`).
    pub acl: AclConfig,
    /// Raft timers.
    pub timers: RaftTimers,
    /// Log level.
    pub log_level: String,
    /// Log JSON lines.
    pub log_json: bool,
    /// When raft snapshots are taken and how many are kept.
    pub snapshots: SnapshotPolicy,
    /// Plugin files to load; empty loads the plugins bundled into the binary.
    pub plugins: Vec<PathBuf>,
    /// Where compiled plugins are cached so a restart does not compile them again:
    /// `plugin_cache_dir`, by default `<data_dir>/plugin-cache`; `None` (dev mode without a
    /// data dir) compiles on every start. Several servers may share one directory: its
    /// files are named by content and engine, and written atomically.
    pub plugin_cache_dir: Option<PathBuf>,
    /// Limits of one plugin call.
    pub plugin_limits: crate::plugin::Limits,
    /// The autopilot configuration a leader stores when none is stored yet.
    pub autopilot: crate::autopilot::AutopilotConfig,
    /// How often this server's autopilot runs, while it leads.
    pub autopilot_timing: AutopilotTiming,
    /// Connection limits of the two ports.
    pub limits: ConnLimits,
    /// The prefix of every metric's name (`[telemetry] metrics_prefix`, default `consul`).
    pub metrics_prefix: String,
    /// The raft log store (`[raft_logstore]`).
    pub raft_logstore: LogStoreConfig,
}

/// Consul's `[limits]` on connections: how many one client address may hold open at
/// once to each port (`None`: no limit). A connection over the limit is closed as soon
/// as it is accepted, so one client cannot take every file descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// `http_max_conns_per_client` (Consul: 200), for the HTTP and HTTPS ports.
    pub http_per_client: Option<u32>,
    /// `rpc_max_conns_per_client` (Consul: 100).
    pub rpc_per_client: Option<u32>,
    /// How long a TLS handshake may take on each port.
    pub handshake: HandshakeTimeouts,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            http_per_client: Some(200),
            rpc_per_client: Some(100),
            handshake: HandshakeTimeouts::default(),
        }
    }
}

/// How often autopilot works (raft-autopilot's `ReconcileInterval` and `UpdateInterval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutopilotTiming {
    /// Promotions and dead-server cleanup (Consul: 10s).
    pub reconcile_interval: Duration,
    /// Gathering server health (Consul: 2s).
    pub update_interval: Duration,
}

impl Default for AutopilotTiming {
    fn default() -> Self {
        AutopilotTiming {
            reconcile_interval: Duration::from_secs(10),
            update_interval: Duration::from_secs(2),
        }
    }
}

/// When raft snapshots are taken, what they leave of the log, and how many are kept
/// (Consul's options and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// `raft_snapshot_threshold`.
    pub threshold: u64,
    /// `raft_snapshot_interval`.
    pub interval: Duration,
    /// `raft_trailing_logs`.
    pub trailing_logs: u64,
    /// `raft_snapshot_retain`.
    pub retain: usize,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            threshold: 16384,
            interval: Duration::from_secs(30),
            trailing_logs: 10240,
            retain: 2,
        }
    }
}

fn parse_ip(key: &'static str, s: &str) -> Result<IpAddr, ConfigError> {
    s.parse()
        .map_err(|_| invalid(key, format!("{s:?} is not an IP address")))
}

impl Config {
    /// Checks a raw configuration and fills in defaults.
    pub fn resolve(raw: RawConfig) -> Result<Config, ConfigError> {
        if raw.server == Some(false) {
            return Err(invalid(
                "server",
                "false is not supported: fsmhost runs servers only; set server = true",
            ));
        }
        let node_name = match raw.node_name {
            Some(n) if n.trim().is_empty() => {
                return Err(invalid("node_name", "must not be empty"));
            }
            Some(n) => n,
            None => hostname(),
        };
        let datacenter = raw
            .datacenter
            .unwrap_or_else(|| DEFAULT_DATACENTER.to_string())
            .to_ascii_lowercase();
        if datacenter.is_empty()
            || !datacenter
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "datacenter",
                format!("{datacenter:?}: can only contain alphanumeric, - or _ characters"),
            ));
        }
        let tombstone_ttl = duration_option(
            "tombstone_ttl",
            raw.tombstone_ttl.as_deref(),
            DEFAULT_TOMBSTONE_TTL,
            Duration::from_millis(100),
        )?;
        let domain = raw
            .domain
            .unwrap_or_else(|| DEFAULT_DOMAIN.to_string())
            .trim_matches('.')
            .to_ascii_lowercase();
        if domain.is_empty()
            || !domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(invalid(
                "domain",
                format!("{domain:?}: not a DNS domain (letters, digits, - and .)"),
            ));
        }
        let data_dir = raw.data_dir;
        if let Some(d) = &data_dir
            && d.as_os_str().is_empty()
        {
            return Err(invalid("data_dir", "must not be empty"));
        }
        let bootstrap_expect = raw.bootstrap_expect.unwrap_or(0);
        let retry_join = raw.retry_join.unwrap_or_default();
        for addr in &retry_join {
            if !addr.contains(':') {
                return Err(invalid(
                    "retry_join",
                    format!(
                        "{addr:?} has no port: write host:port (the other server's ports.server)"
                    ),
                ));
            }
        }
        let ports = raw.ports.unwrap_or_default();
        let server_port = ports.server.unwrap_or(DEFAULT_SERVER_PORT);
        let http_port = optional_port("ports.http", ports.http, Some(DEFAULT_HTTP_PORT))?;
        let https_port = optional_port("ports.https", ports.https, None)?;
        if http_port.is_none() && https_port.is_none() {
            return Err(invalid(
                "ports.http",
                "-1 turns plain HTTP off, and ports.https is not set: the server would have                  no HTTP API; set ports.https (with tls.https) or keep ports.http",
            ));
        }
        let bind = match &raw.bind_addr {
            Some(s) => parse_ip("bind_addr", s)?,
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let advertise = match &raw.advertise_addr {
            Some(s) => parse_ip("advertise_addr", s)?,
            None if bind.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => bind,
        };
        if advertise.is_unspecified() {
            return Err(invalid(
                "advertise_addr",
                format!("{advertise} cannot be reached by other servers; give a routable address"),
            ));
        }
        let addresses = raw.addresses.unwrap_or_default();
        let http_ip = match &addresses.http {
            Some(s) => parse_ip("addresses.http", s)?,
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let https_ip = match &addresses.https {
            Some(s) => parse_ip("addresses.https", s)?,
            None => http_ip,
        };
        let (tls_rpc, tls_https) =
            tls::resolve(raw.tls, &datacenter, &domain, https_port.is_some())?;
        let acl = acl::resolve(raw.acl, tls_rpc.is_some())?;
        let multiplier = raw.performance.and_then(|p| p.raft_multiplier).unwrap_or(1);
        if !(1..=10).contains(&multiplier) {
            return Err(invalid(
                "performance.raft_multiplier",
                format!("{multiplier} is out of range: use 1 to 10"),
            ));
        }
        let log_level = raw.log_level.unwrap_or_else(|| "info".to_string());
        if !["trace", "debug", "info", "warn", "err", "error"].contains(&log_level.as_str()) {
            return Err(invalid(
                "log_level",
                format!("{log_level:?} is not one of trace, debug, info, warn, err"),
            ));
        }
        let defaults = SnapshotPolicy::default();
        let threshold = raw.raft_snapshot_threshold.unwrap_or(defaults.threshold);
        if threshold == 0 {
            return Err(invalid("raft_snapshot_threshold", "must be at least 1"));
        }
        let interval = duration_option(
            "raft_snapshot_interval",
            raw.raft_snapshot_interval.as_deref(),
            defaults.interval,
            Duration::from_millis(10),
        )?;
        let retain = raw.raft_snapshot_retain.unwrap_or(2);
        if !(1..=100).contains(&retain) {
            return Err(invalid(
                "raft_snapshot_retain",
                format!("{retain} is out of range: keep 1 to 100 snapshots"),
            ));
        }
        let snapshots = SnapshotPolicy {
            threshold,
            interval,
            trailing_logs: raw.raft_trailing_logs.unwrap_or(defaults.trailing_logs),
            retain: retain as usize,
        };
        let plugins = raw.plugins.unwrap_or_default();
        if let Some(p) = plugins.iter().find(|p| p.as_os_str().is_empty()) {
            return Err(invalid("plugins", format!("{p:?}: an empty path")));
        }
        if raw
            .plugin_cache_dir
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(invalid("plugin_cache_dir", "must not be empty"));
        }
        let plugin_cache_dir = raw
            .plugin_cache_dir
            .or_else(|| data_dir.as_ref().map(|d| d.join("plugin-cache")));
        let plugin_limits = resolve_limits(raw.plugin_limits.unwrap_or_default())?;
        let timers = RaftTimers::for_multiplier(multiplier);
        let (autopilot, autopilot_timing) =
            resolve_autopilot(raw.autopilot.unwrap_or_default(), &timers)?;
        let raw_limits = raw.limits.unwrap_or_default();
        let limit_defaults = ConnLimits::default();
        let per_client = |v: Option<u32>, default: Option<u32>| match v {
            Some(0) => None,
            Some(n) => Some(n),
            None => default,
        };
        let limits = ConnLimits {
            http_per_client: per_client(
                raw_limits.http_max_conns_per_client,
                limit_defaults.http_per_client,
            ),
            rpc_per_client: per_client(
                raw_limits.rpc_max_conns_per_client,
                limit_defaults.rpc_per_client,
            ),
            handshake: tls::handshake_timeouts(&raw_limits)?,
        };
        let metrics_prefix = raw
            .telemetry
            .and_then(|t| t.metrics_prefix)
            .unwrap_or_else(|| crate::metrics::DEFAULT_PREFIX.to_string());
        if metrics_prefix.is_empty()
            || !metrics_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || metrics_prefix.as_bytes()[0].is_ascii_digit()
        {
            return Err(invalid(
                "telemetry.metrics_prefix",
                format!("{metrics_prefix:?}: use letters, digits and _, not starting with a digit"),
            ));
        }
        let raft_logstore = logstore::resolve(raw.raft_logstore)?;
        Ok(Config {
            limits,
            metrics_prefix,
            raft_logstore,
            autopilot,
            autopilot_timing,
            snapshots,
            plugins,
            plugin_cache_dir,
            plugin_limits,
            node_name,
            datacenter,
            tombstone_ttl,
            domain,
            data_dir,
            bootstrap_expect,
            retry_join,
            rpc_bind: SocketAddr::new(bind, server_port),
            rpc_advertise: SocketAddr::new(advertise, server_port),
            http_bind: http_port.map(|p| SocketAddr::new(http_ip, p)),
            https_bind: https_port.map(|p| SocketAddr::new(https_ip, p)),
            tls_rpc,
            tls_https,
            acl,
            timers,
            log_level,
            log_json: raw.log_json.unwrap_or(false),
        })
    }
}

/// A port that -1 turns off: absent is `default`.
fn optional_port(
    key: &'static str,
    value: Option<i32>,
    default: Option<u16>,
) -> Result<Option<u16>, ConfigError> {
    match value {
        None => Ok(default),
        Some(-1) => Ok(None),
        Some(p) => u16::try_from(p).map(Some).map_err(|_| {
            invalid(
                key,
                format!("{p} is not a port: give 0 to 65535, or -1 for off"),
            )
        }),
    }
}

/// A duration option: absent is `default`; below `min` or not a duration is refused.
fn duration_option(
    key: &'static str,
    value: Option<&str>,
    default: Duration,
    min: Duration,
) -> Result<Duration, ConfigError> {
    let Some(s) = value else {
        return Ok(default);
    };
    match crate::duration::parse(s) {
        Some(d) if d >= min => Ok(d),
        Some(_) => Err(invalid(
            key,
            format!(
                "{s:?} is too short: give at least {}",
                crate::duration::format(min)
            ),
        )),
        None => Err(invalid(
            key,
            format!("{s:?} is not a duration such as 200ms, 10s or 5m"),
        )),
    }
}

/// The `[autopilot]` stanza. `last_contact_threshold` must exceed the raft heartbeat
/// interval, or followers flap between healthy and unhealthy between heartbeats; its
/// default is Consul's 200ms, or two heartbeats when `raft_multiplier` makes those longer.
fn resolve_autopilot(
    raw: RawAutopilot,
    timers: &RaftTimers,
) -> Result<(crate::autopilot::AutopilotConfig, AutopilotTiming), ConfigError> {
    let d = crate::autopilot::AutopilotConfig::default();
    let t = AutopilotTiming::default();
    let ms = Duration::from_millis;
    let key = "autopilot.last_contact_threshold";
    let threshold = duration_option(
        key,
        raw.last_contact_threshold.as_deref(),
        d.last_contact_threshold.max(timers.heartbeat * 2),
        ms(1),
    )?;
    if threshold <= timers.heartbeat {
        return Err(invalid(
            key,
            format!(
                "{} is not above the raft heartbeat interval ({}): followers would flap \
                 between healthy and unhealthy; give more",
                crate::duration::format(threshold),
                crate::duration::format(timers.heartbeat)
            ),
        ));
    }
    let config = crate::autopilot::AutopilotConfig {
        cleanup_dead_servers: raw.cleanup_dead_servers.unwrap_or(d.cleanup_dead_servers),
        last_contact_threshold: threshold,
        max_trailing_logs: raw.max_trailing_logs.unwrap_or(d.max_trailing_logs),
        min_quorum: raw.min_quorum.unwrap_or(d.min_quorum),
        server_stabilization_time: duration_option(
            "autopilot.server_stabilization_time",
            raw.server_stabilization_time.as_deref(),
            d.server_stabilization_time,
            Duration::ZERO,
        )?,
    };
    let timing = AutopilotTiming {
        reconcile_interval: duration_option(
            "autopilot.reconcile_interval",
            raw.reconcile_interval.as_deref(),
            t.reconcile_interval,
            ms(50),
        )?,
        update_interval: duration_option(
            "autopilot.update_interval",
            raw.update_interval.as_deref(),
            t.update_interval,
            ms(50),
        )?,
    };
    Ok((config, timing))
}

fn resolve_limits(raw: PluginLimits) -> Result<crate::plugin::Limits, ConfigError> {
    let d = crate::plugin::Limits::default();
    let fuel = raw.fuel.unwrap_or(d.fuel);
    if fuel < 1_000_000 {
        return Err(invalid(
            "plugin_limits.fuel",
            format!("{fuel} is too little for any call: give at least 1000000"),
        ));
    }
    let memory = raw.memory_bytes.unwrap_or(d.memory_bytes as u64);
    if !(1 << 20..=4 << 30).contains(&memory) {
        return Err(invalid(
            "plugin_limits.memory_bytes",
            format!("{memory} is out of range: use 1 MiB (1048576) to 4 GiB (4294967296)"),
        ));
    }
    let write_bytes = raw.write_bytes.unwrap_or(d.write_bytes);
    if write_bytes < 1024 {
        return Err(invalid(
            "plugin_limits.write_bytes",
            format!("{write_bytes} is too small: give at least 1024"),
        ));
    }
    Ok(crate::plugin::Limits {
        fuel,
        memory_bytes: memory as usize,
        write_bytes,
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "fsmhost".to_string())
}

#[cfg(test)]
mod tests;
