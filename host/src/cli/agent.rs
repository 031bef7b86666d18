//! `fsmhost agent` and `fsmhost leave`: run a server; ask a running one to leave.

use super::Api;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Addresses, Config, Ports, RawConfig};

/// `fsmhost agent` flags: the config file's keys, which they override.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// A TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Development mode: one in-memory server with the bundled plugins, HTTP on
    /// 127.0.0.1:8500; nothing is written to disk.
    #[arg(long)]
    pub dev: bool,
    /// `node_name`.
    #[arg(long, visible_alias = "node")]
    pub node_name: Option<String>,
    /// `datacenter`.
    #[arg(long)]
    pub datacenter: Option<String>,
    /// `domain`.
    #[arg(long)]
    pub domain: Option<String>,
    /// `data_dir`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// `server` (must be true).
    #[arg(long)]
    pub server: Option<bool>,
    /// `bootstrap_expect`.
    #[arg(long)]
    pub bootstrap_expect: Option<u32>,
    /// `retry_join` (repeatable).
    #[arg(long, value_name = "HOST:PORT")]
    pub retry_join: Vec<String>,
    /// `bind_addr`.
    #[arg(long, visible_alias = "bind")]
    pub bind_addr: Option<String>,
    /// `advertise_addr`.
    #[arg(long, visible_alias = "advertise")]
    pub advertise_addr: Option<String>,
    /// `ports.server`.
    #[arg(long = "ports-server", visible_alias = "server-port")]
    pub server_port: Option<u16>,
    /// `ports.http` (-1: off).
    #[arg(
        long = "ports-http",
        visible_alias = "http-port",
        allow_hyphen_values = true
    )]
    pub http_port: Option<i32>,
    /// `ports.https` (-1: off, the default).
    #[arg(
        long = "ports-https",
        visible_alias = "https-port",
        allow_hyphen_values = true
    )]
    pub https_port: Option<i32>,
    /// `addresses.http`.
    #[arg(long = "addresses-http", visible_alias = "client")]
    pub http_addr: Option<String>,
    /// `log_level`.
    #[arg(long)]
    pub log_level: Option<String>,
    /// `log_json`.
    #[arg(long)]
    pub log_json: Option<bool>,
    /// `raft_snapshot_threshold`.
    #[arg(long)]
    pub raft_snapshot_threshold: Option<u64>,
    /// `raft_snapshot_interval` (a duration: 30s, 5m).
    #[arg(long)]
    pub raft_snapshot_interval: Option<String>,
    /// `raft_trailing_logs`.
    #[arg(long)]
    pub raft_trailing_logs: Option<u64>,
    /// `plugins` (repeatable): a plugin component to load instead of the bundled set.
    #[arg(long, value_name = "FILE.wasm")]
    pub plugin: Vec<PathBuf>,
}

impl AgentArgs {
    fn flags(&self) -> RawConfig {
        let ports =
            (self.server_port.is_some() || self.http_port.is_some() || self.https_port.is_some())
                .then_some(Ports {
                    server: self.server_port,
                    http: self.http_port,
                    https: self.https_port,
                });
        RawConfig {
            node_name: self.node_name.clone(),
            datacenter: self.datacenter.clone(),
            domain: self.domain.clone(),
            data_dir: self.data_dir.clone(),
            server: self.server,
            bootstrap_expect: self.bootstrap_expect,
            retry_join: (!self.retry_join.is_empty()).then(|| self.retry_join.clone()),
            bind_addr: self.bind_addr.clone(),
            advertise_addr: self.advertise_addr.clone(),
            ports,
            addresses: self.http_addr.clone().map(|h| Addresses {
                http: Some(h),
                https: None,
            }),
            performance: None,
            log_level: self.log_level.clone(),
            log_json: self.log_json,
            raft_snapshot_threshold: self.raft_snapshot_threshold,
            raft_snapshot_interval: self.raft_snapshot_interval.clone(),
            raft_trailing_logs: self.raft_trailing_logs,
            raft_snapshot_retain: None,
            tombstone_ttl: None,
            plugins: (!self.plugin.is_empty()).then(|| self.plugin.clone()),
            plugin_cache_dir: None,
            plugin_limits: None,
            autopilot: None,
            limits: None,
            tls: None,
            acl: None,
            telemetry: None,
            raft_logstore: None,
        }
    }

    /// The checked configuration: dev defaults or the file, then the flags.
    pub fn config(&self) -> Result<Config, String> {
        let base = if self.dev {
            if self.config_file.is_some() || self.data_dir.is_some() {
                return Err(
                    "-dev keeps everything in memory: drop --config-file and --data-dir".into(),
                );
            }
            RawConfig {
                node_name: Some("dev".into()),
                bootstrap_expect: Some(1),
                bind_addr: Some("127.0.0.1".into()),
                ..RawConfig::default()
            }
        } else {
            let Some(file) = &self.config_file else {
                return Err("give --config-file FILE (or --dev for a development server)".into());
            };
            RawConfig::from_file(file).map_err(|e| e.to_string())?
        };
        let config = Config::resolve(base.merge(self.flags())).map_err(|e| e.to_string())?;
        if !self.dev && config.data_dir.is_none() {
            return Err("data_dir: required (where the raft log and node id live)".into());
        }
        Ok(config)
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still stops on the default action.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Runs a server until SIGINT/SIGTERM or a leave.
pub fn run(args: &AgentArgs) -> Result<(), String> {
    let config = args.config()?;
    crate::logging::init(&config.log_level, config.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fsmhost")
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime
        .block_on(crate::server::run(config, stop_signal()))
        .map_err(|e| e.to_string())?;
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

/// `fsmhost leave`: asks the server at `http_addr` to leave the cluster and stop.
pub fn leave(http_addr: &Api) -> Result<(), String> {
    super::operator::http(hyper::Method::PUT, http_addr, "/v1/agent/leave")?;
    println!("Graceful leave complete");
    Ok(())
}
