//! The finite state machine: log entries in, plugin commands applied to the store in log
//! order, queries (plain and blocking) out.
//!
//! Owns: the mapping from a log entry to a plugin call and a store transaction, the last
//! applied index, the host's own replicated state beside the plugins' tables
//! ([`SystemState`]: the autopilot configuration), and the state hash servers compare.
//!
//! Invariants:
//! - entries are applied in strictly increasing index order; an entry at or below the last
//!   applied index is refused ([`FsmError::OutOfOrder`]) and changes nothing;
//! - an entry whose command fails (the plugin's error, a trap, fuel, memory or a budget) is
//!   still applied: its outcome is that error, the same on every server, and the store is
//!   unchanged;
//! - a failure of this server's own ([`CallError::Unavailable`]) does not apply the entry:
//!   the caller retries it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::autopilot::{ConfigUpdate, StoredConfig};
use crate::plugin::{CallError, PluginSet};
use crate::state::{Store, Wake};

/// A command as it travels in the raft log: which plugin, which command, its payload, and
/// the leader's clock when it accepted the entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The plugin that owns the command.
    pub plugin: String,
    /// The command name.
    pub command: String,
    /// The command's payload (CBOR, opaque to the host).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The leader's wall clock, ms since the Unix epoch; the plugin's only clock.
    pub timestamp_ms: u64,
}

/// Why an entry or a query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsmError {
    /// No loaded plugin has this name.
    #[error("no plugin named {0} is loaded")]
    UnknownPlugin(String),
    /// The entry's index is not after the last applied one.
    #[error("entry at index {index} is out of order: index {last} was already applied")]
    OutOfOrder {
        /// The entry's index.
        index: u64,
        /// The last applied index.
        last: u64,
    },
    /// The plugin call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The store refused an operation of the host's own.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

impl FsmError {
    /// Whether the entry was not applied and should be retried (this server's own failure).
    pub fn is_retryable(&self) -> bool {
        matches!(self, FsmError::Call(CallError::Unavailable { .. }))
    }

    /// The plugin's own error, when the plugin refused (not a trap, a limit or the host).
    pub fn refusal(&self) -> Option<crate::raft::PluginRefusal> {
        match self {
            FsmError::Call(CallError::Plugin { kind, message, .. }) => {
                Some(crate::raft::PluginRefusal {
                    kind: *kind,
                    message: message.clone(),
                })
            }
            _ => None,
        }
    }

    /// The HTTP status a client gets for this error: the plugin's own kind where it gave
    /// one, 404 for an unknown plugin, command or query, 422 for a command stopped by a
    /// limit, 500 for a trap (a plugin bug) and 503 for this server's own failure.
    pub fn http_status(&self) -> u16 {
        use crate::plugin::ErrorKind;
        match self {
            FsmError::UnknownPlugin(_) => 404,
            FsmError::OutOfOrder { .. } => 500,
            FsmError::State(_) => 500,
            FsmError::Call(c) => match c {
                CallError::UnknownCommand { .. } | CallError::UnknownQuery { .. } => 404,
                CallError::Plugin { kind, .. } => match kind {
                    ErrorKind::BadRequest => 400,
                    ErrorKind::NotFound => 404,
                    ErrorKind::Conflict => 409,
                    ErrorKind::State => 422,
                    ErrorKind::Internal => 500,
                },
                CallError::FuelExhausted { .. }
                | CallError::MemoryExhausted { .. }
                | CallError::BudgetExceeded { .. } => 422,
                CallError::Trap { .. } => 500,
                CallError::Unavailable { .. } => 503,
            },
        }
    }
}

/// A query's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOutput {
    /// The result bytes (CBOR).
    pub bytes: Vec<u8>,
    /// The highest last-change index of the tables the query read (at least 1, as Consul
    /// forces it, so a blocking client never waits on index 0 forever).
    pub index: u64,
    /// The tables the query read.
    pub tables: BTreeSet<String>,
}

/// What the host itself keeps in the replicated state, beside the plugins' tables (Consul
/// keeps these in its state store; here they travel in every snapshot's header).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemState {
    /// The autopilot configuration, once a leader or an operator stored one.
    #[serde(default)]
    pub autopilot: Option<StoredConfig>,
}

/// The state machine of one server: its plugins and its store.
///
/// The store is replaced whole by [`Fsm::restore`] (a snapshot installed or restored); the
/// old one is abandoned, which wakes every blocking query so it re-reads the new one.
pub struct Fsm {
    plugins: PluginSet,
    store: RwLock<Arc<Store>>,
    system: RwLock<SystemState>,
    last_applied: AtomicU64,
}

impl Fsm {
    /// An empty state machine for this plugin set.
    pub fn new(plugins: PluginSet) -> Self {
        let store = Store::new(plugins.schema().clone());
        Fsm {
            plugins,
            store: RwLock::new(Arc::new(store)),
            system: RwLock::new(SystemState::default()),
            last_applied: AtomicU64::new(0),
        }
    }

    /// Replaces the whole state with `store` and `system`, whose last applied entry is
    /// `last_applied`, then abandons the old store (its blocking queries wake and re-read).
    /// The caller serializes this with [`Fsm::apply`] (both run on raft's state machine
    /// worker).
    pub fn restore(&self, store: Store, system: SystemState, last_applied: u64) {
        let old = {
            let mut current = self.store.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *current, Arc::new(store))
        };
        *self.system.write().unwrap_or_else(|p| p.into_inner()) = system;
        self.last_applied.store(last_applied, Ordering::Release);
        old.abandon();
    }

    /// The plugins.
    pub fn plugins(&self) -> &PluginSet {
        &self.plugins
    }

    /// The current store.
    pub fn store(&self) -> Arc<Store> {
        self.store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The host's replicated state.
    pub fn system(&self) -> SystemState {
        self.system
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies an autopilot configuration write at raft index `raft_index`; false when
    /// its compare-and-set fails (nothing changes).
    pub fn set_autopilot(&self, update: &ConfigUpdate, raft_index: u64) -> bool {
        let mut system = self.system.write().unwrap_or_else(|p| p.into_inner());
        match update.apply(system.autopilot.as_ref(), raft_index) {
            Some(stored) => {
                system.autopilot = Some(stored);
                true
            }
            None => false,
        }
    }

    /// The index of the last applied entry (0 before the first).
    pub fn last_applied(&self) -> u64 {
        self.last_applied.load(Ordering::Acquire)
    }

    /// Applies the entry at `index`: opens a write transaction at `index`, runs the plugin's
    /// command in it, and commits on success or aborts on any error. Returns the command's
    /// result bytes, or its error (the entry is applied either way, unless the error is
    /// retryable).
    pub fn apply(&self, index: u64, entry: &Entry) -> Result<Vec<u8>, FsmError> {
        let store = self.store();
        let mut txn = store.write(index);
        let last = self.last_applied();
        if index <= last {
            return Err(FsmError::OutOfOrder { index, last });
        }
        let result = match self.plugins.get(&entry.plugin) {
            None => Err(FsmError::UnknownPlugin(entry.plugin.clone())),
            Some(plugin) => plugin
                .apply(&mut txn, &entry.command, &entry.payload, entry.timestamp_ms)
                .map_err(FsmError::from),
        };
        match &result {
            Ok(_) => txn.commit(),
            Err(e) if e.is_retryable() => return result,
            Err(_) => drop(txn),
        }
        self.last_applied.store(index, Ordering::Release);
        result
    }

    /// Runs query `name` of `plugin` against the current state.
    pub fn query(&self, plugin: &str, name: &str, args: &[u8]) -> Result<QueryOutput, FsmError> {
        self.query_in(&self.store(), plugin, name, args)
    }

    /// Runs a query against `store` (the current one, or one a blocking query watches).
    fn query_in(
        &self,
        store: &Store,
        plugin: &str,
        name: &str,
        args: &[u8],
    ) -> Result<QueryOutput, FsmError> {
        let p = self
            .plugins
            .get(plugin)
            .ok_or_else(|| FsmError::UnknownPlugin(plugin.to_string()))?;
        let read = store.read();
        let (bytes, tables) = p.query_with_reads(&read, name, args)?;
        let index = read.max_index(tables.iter().map(String::as_str))?.max(1);
        Ok(QueryOutput {
            bytes,
            index,
            tables,
        })
    }

    /// A blocking query (Consul's `?index=&wait=`): answers as soon as the index of what the
    /// query read exceeds `min_index`, when the store is abandoned, or when `wait` passes,
    /// whichever is first; then with the current answer. `min_index` 0 answers at once.
    pub async fn blocking_query(
        &self,
        plugin: &str,
        name: &str,
        args: &[u8],
        min_index: u64,
        wait: Duration,
    ) -> Result<QueryOutput, FsmError> {
        let deadline = Instant::now() + wait;
        loop {
            // The watch is on the store the query read: if a restore replaces it meanwhile,
            // the watch wakes at once (abandoned) and the answer comes from the new store.
            let store = self.store();
            let out = self.query_in(&store, plugin, name, args)?;
            if out.index > min_index || min_index == 0 {
                return Ok(out);
            }
            // Watch first, then check again: a commit between the query and the watch would
            // otherwise be missed.
            let watch = store.watch(out.tables.iter().map(String::as_str))?;
            let now = store
                .read()
                .max_index(out.tables.iter().map(String::as_str))?;
            if now > min_index {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match watch.wait(left).await {
                Wake::Changed => continue,
                Wake::Abandoned | Wake::TimedOut => return self.query(plugin, name, args),
            }
        }
    }

    /// A hash of the plugins' tables; servers that applied the same log have the same
    /// hash. The host's own [`SystemState`] is not in it: a leader writes that state on its
    /// own schedule (the autopilot seed), and a restored archive must hash as the state it
    /// was saved from whatever the restoring cluster's autopilot configuration is.
    pub fn state_hash(&self) -> [u8; 32] {
        self.store().read().hash()
    }
}
