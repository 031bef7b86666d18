//! `[raft_logstore]`, resolved: Consul's `raft_logstore` block in TOML.
//!
//! `backend` is `"wal"` (segment files, the default for a new data dir) or `"redb"` (one
//! B-tree file, Consul's `boltdb`); a data dir keeps the backend it was created with
//! (`raft::log_store::open_dir` refuses the other). `[raft_logstore.wal] segment_size_mb`
//! is Consul's (default 64, 1 to 1024). `[raft_logstore.verification]` takes Consul's
//! `enabled` (default false) and `interval` (default 60s): the leader's log checkpoints
//! (`raft::verifier`).

use std::time::Duration;

use super::raw::RawLogStore;
use super::{ConfigError, duration_option, invalid};

/// Which log store a server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Append-only segment files under `data_dir/raft/wal/`.
    Wal,
    /// One redb file, `data_dir/raft/raft.db`.
    Redb,
}

impl Backend {
    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Wal => "wal",
            Backend::Redb => "redb",
        }
    }
}

/// The log store settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStoreConfig {
    /// The backend named in the configuration (`None`: the data dir's, or `wal` for a new
    /// one).
    pub backend: Option<Backend>,
    /// The WAL's segment size in bytes.
    pub segment_size: u64,
    /// Whether the leader writes verification checkpoints.
    pub verification: bool,
    /// How often it writes them.
    pub verification_interval: Duration,
}

impl Default for LogStoreConfig {
    fn default() -> Self {
        LogStoreConfig {
            backend: None,
            segment_size: 64 << 20,
            verification: false,
            verification_interval: Duration::from_secs(60),
        }
    }
}

/// Resolves `[raft_logstore]`.
pub fn resolve(raw: Option<RawLogStore>) -> Result<LogStoreConfig, ConfigError> {
    let defaults = LogStoreConfig::default();
    let Some(raw) = raw else {
        return Ok(defaults);
    };
    let backend = match raw.backend.as_deref() {
        None => None,
        Some("wal") => Some(Backend::Wal),
        Some("redb") => Some(Backend::Redb),
        Some("boltdb") => {
            return Err(invalid(
                "raft_logstore.backend",
                "\"boltdb\" is Consul's B-tree store; fsmhost's is \"redb\" (or use \"wal\")",
            ));
        }
        Some(other) => {
            return Err(invalid(
                "raft_logstore.backend",
                format!("{other:?} is not a backend: use \"wal\" or \"redb\""),
            ));
        }
    };
    let segment_size = match raw.wal.and_then(|w| w.segment_size_mb) {
        None => defaults.segment_size,
        Some(mb @ 1..=1024) => mb << 20,
        Some(mb) => {
            return Err(invalid(
                "raft_logstore.wal.segment_size_mb",
                format!("{mb} is out of range: use 1 to 1024"),
            ));
        }
    };
    let verification = raw.verification.unwrap_or_default();
    let verification_interval = duration_option(
        "raft_logstore.verification.interval",
        verification.interval.as_deref(),
        defaults.verification_interval,
        Duration::from_secs(1),
    )?;
    Ok(LogStoreConfig {
        backend,
        segment_size,
        verification: verification.enabled.unwrap_or(false),
        verification_interval,
    })
}
