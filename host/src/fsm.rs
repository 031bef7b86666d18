//! The finite state machine: log entries in, plugin commands applied to the store in log
//! order, queries (plain and blocking) out.
//!
//! Owns: the mapping from a log entry to a plugin call and a store transaction, the last
//! applied index, the plugin set in effect (the configured one, with installed upgrades in
//! place: [`Fsm::install`]), the host's own replicated state beside the plugins' tables
//! ([`SystemState`]: the autopilot configuration and the installed plugins), and the
//! state hash servers compare.
//!
//! Invariants:
//! - entries are applied in strictly increasing index order; an entry at or below the last
//!   applied index is refused ([`FsmError::OutOfOrder`]) and changes nothing;
//! - an entry whose command fails (the plugin's error, a trap, fuel, memory or a budget) is
//!   still applied: its outcome is that error, the same on every server, and the store is
//!   unchanged;
//! - a failure of this server's own ([`CallError::Unavailable`]) does not apply the entry:
//!   the caller retries it;
//! - an entry is applied by the plugin version in effect at its place in the log; one
//!   written for a newer version than that is refused ([`FsmError::WrittenForNewer`]).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::autopilot::{ConfigUpdate, StoredConfig};
use crate::plugin::{CallError, Instance, LoadedPlugin, PluginSet, Runtime};
use crate::state::{Store, Wake, WriteTxn};
use crate::upgrade::{self, UpgradeError};

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
    /// The plugin version the command was written for (the one in effect on the leader
    /// when it accepted the command); absent in entries written before versions were
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
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
    /// The command was written for a newer plugin version than the one in effect at its
    /// place in the log.
    #[error(
        "the command was written for plugin {plugin} {written}, but {running} is in effect \
         at this point of the log; send it again"
    )]
    WrittenForNewer {
        /// The plugin.
        plugin: String,
        /// The version the entry names.
        written: String,
        /// The version in effect.
        running: String,
    },
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
            FsmError::WrittenForNewer { .. } => 409,
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
    /// The plugins installed through the log, by name (they replace or join the
    /// configured set); their components travel in the snapshot header.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, Installed>,
}

/// A plugin installed through the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// Its version.
    pub version: String,
    /// SHA-256 of its component, hex.
    pub sha256: String,
    /// The raft index of the entry that installed it.
    pub raft_index: u64,
}

/// The plugin instances kept across the commands of one log entry, one per plugin.
///
/// A kept instance changes the fuel the next command burns (the guest's heap and statics
/// carry over), so the scope must be one every server shares: the commands of one log
/// entry, applied in order, with new instances for every entry. A server that replays its
/// log then gives every command the same instance history as the leader did.
#[derive(Debug, Default)]
struct EntryInstances {
    kept: Vec<(String, Option<Instance>)>,
}

/// One log entry being applied ([`Fsm::apply_entry`]): its write transaction, the plugin
/// set in effect, the instances kept from one command to the next, and the FSM index of
/// the last command applied so far.
pub struct EntryTxn<'a> {
    plugins: &'a PluginSet,
    txn: WriteTxn<'a>,
    instances: EntryInstances,
    last: u64,
}

impl EntryTxn<'_> {
    /// The FSM index the next command takes.
    pub fn next_index(&self) -> u64 {
        self.last + 1
    }

    /// Applies the command `entry` at FSM `index`, above every index applied before: runs
    /// its plugin's command in the entry's transaction; a failed command leaves no trace.
    /// Returns its result bytes or its error (the command counts as applied either way,
    /// unless the error is retryable: then it may be tried again at the same index).
    pub fn apply(&mut self, index: u64, entry: &Entry) -> Result<Vec<u8>, FsmError> {
        if index <= self.last {
            return Err(FsmError::OutOfOrder {
                index,
                last: self.last,
            });
        }
        self.txn.set_index(index);
        let result = match self.plugins.get(&entry.plugin) {
            None => Err(FsmError::UnknownPlugin(entry.plugin.clone())),
            Some(plugin) => match written_for_newer(entry, &plugin.description().version) {
                Some(e) => Err(e),
                None => plugin
                    .apply_kept(
                        self.instances.for_plugin(plugin.name()),
                        &mut self.txn,
                        &entry.command,
                        &entry.payload,
                        entry.timestamp_ms,
                    )
                    .map_err(FsmError::from),
            },
        };
        if !matches!(&result, Err(e) if e.is_retryable()) {
            self.last = index;
        }
        result
    }
}

impl EntryInstances {
    fn for_plugin(&mut self, name: &str) -> &mut Option<Instance> {
        let at = match self.kept.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.kept.push((name.to_string(), None));
                self.kept.len() - 1
            }
        };
        &mut self.kept[at].1
    }
}

/// The state machine of one server: its plugins and its store.
///
/// The store is replaced whole by [`Fsm::restore`] (a snapshot installed or restored); the
/// old one is abandoned, which wakes every blocking query so it re-reads the new one.
pub struct Fsm {
    /// The configured plugin set (what a snapshot's installed plugins are applied over).
    base: Arc<PluginSet>,
    plugins: RwLock<Arc<PluginSet>>,
    runtime: Option<Arc<Runtime>>,
    store: RwLock<Arc<Store>>,
    system: RwLock<SystemState>,
    last_applied: AtomicU64,
}

impl Fsm {
    /// An empty state machine for this plugin set. Without a runtime it cannot load
    /// installed plugins ([`Fsm::with_runtime`]).
    pub fn new(plugins: PluginSet) -> Self {
        let store = Store::new(plugins.schema().clone());
        let plugins = Arc::new(plugins);
        Fsm {
            base: plugins.clone(),
            plugins: RwLock::new(plugins),
            runtime: None,
            store: RwLock::new(Arc::new(store)),
            system: RwLock::new(SystemState::default()),
            last_applied: AtomicU64::new(0),
        }
    }

    /// With the runtime that loads installed plugins (from install entries and snapshots).
    pub fn with_runtime(mut self, runtime: Arc<Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The runtime, if any.
    pub fn runtime(&self) -> Option<&Arc<Runtime>> {
        self.runtime.as_ref()
    }

    /// Replaces the whole state with `store`, read under `plugins`, and `system`, whose
    /// last applied entry is `last_applied`, then abandons the old store (its blocking
    /// queries wake and re-read). The caller serializes this with [`Fsm::apply`] (both run
    /// on raft's state machine worker).
    pub fn restore(
        &self,
        plugins: Arc<PluginSet>,
        store: Store,
        system: SystemState,
        last_applied: u64,
    ) {
        // Both locks at once (plugins first, as `current` takes them), so no reader pairs
        // the new plugins with the old store or the other way round.
        let old = {
            let mut set = self.plugins.write().unwrap_or_else(|p| p.into_inner());
            let mut current = self.store.write().unwrap_or_else(|p| p.into_inner());
            *set = plugins;
            std::mem::replace(&mut *current, Arc::new(store))
        };
        *self.system.write().unwrap_or_else(|p| p.into_inner()) = system;
        self.last_applied.store(last_applied, Ordering::Release);
        old.abandon();
    }

    /// The plugins in effect.
    pub fn plugins(&self) -> Arc<PluginSet> {
        self.plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The plugin set a snapshot whose host state is `system` was written under: the
    /// configured set with the snapshot's installed plugins in place, each loaded from
    /// `components` (SHA-256 hex → bytes) unless it is already loaded here.
    pub fn plugins_for(
        &self,
        system: &SystemState,
        components: &BTreeMap<String, serde_bytes::ByteBuf>,
    ) -> Result<Arc<PluginSet>, String> {
        let current = self.plugins();
        if system.plugins.is_empty() {
            return Ok(self.base.clone());
        }
        let mut set = self.base.clone();
        for (name, installed) in &system.plugins {
            let loaded = current
                .plugins()
                .iter()
                .find(|p| p.name() == name && p.hash_hex() == installed.sha256)
                .cloned();
            let plugin = match loaded {
                Some(p) => p,
                None => {
                    let bytes = components.get(&installed.sha256).ok_or_else(|| {
                        format!(
                            "plugin {name} {} (sha256 {}) is installed in the snapshot but \
                             its component is not in it",
                            installed.version, installed.sha256
                        )
                    })?;
                    Arc::new(self.load_installed(name, &installed.sha256, bytes)?)
                }
            };
            set = Arc::new(upgrade::replaced(&set, plugin).map_err(|e| e.to_string())?);
        }
        Ok(set)
    }

    /// Loads an installed component, checking its hash and its name.
    pub fn load_installed(
        &self,
        name: &str,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<LoadedPlugin, String> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| format!("plugin {name}: this state machine cannot load plugins"))?;
        let plugin = runtime
            .load(&format!("installed:{name}@{sha256}"), bytes)
            .map_err(|e| e.to_string())?;
        if plugin.hash_hex() != sha256 {
            return Err(format!(
                "plugin {name}: the component's SHA-256 is {}, not {sha256}",
                plugin.hash_hex()
            ));
        }
        if plugin.name() != name {
            return Err(format!(
                "installed plugin {name}: the component describes itself as {}",
                plugin.name()
            ));
        }
        Ok(plugin)
    }

    /// Checks installing `plugin` now and says what it would change (the dry run).
    pub fn plan_install(&self, plugin: &LoadedPlugin) -> Result<upgrade::Plan, UpgradeError> {
        upgrade::plan(&self.plugins(), &self.store(), plugin)
    }

    /// Installs `plugin` (the install entry at raft index `raft_index`): checks it as
    /// [`Fsm::plan_install`] does, rebuilds the store for the new set, and switches both at
    /// once. A refusal changes nothing and is the same on every server.
    pub fn install(
        &self,
        plugin: Arc<LoadedPlugin>,
        raft_index: u64,
    ) -> Result<upgrade::Plan, UpgradeError> {
        let current = self.plugins();
        let store = self.store();
        let plan = upgrade::plan(&current, &store, &plugin)?;
        let next = Arc::new(upgrade::replaced(&current, plugin.clone())?);
        let rebuilt = upgrade::rebuild_store(&store, &next, &plan, &plugin)?;
        let plan = plan.counted(&rebuilt);
        let mut system = self.system();
        system.plugins.insert(
            plan.plugin.clone(),
            Installed {
                version: plan.to_version.clone(),
                sha256: plan.sha256.clone(),
                raft_index,
            },
        );
        self.restore(next, rebuilt, system, self.last_applied());
        Ok(plan)
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

    /// Applies the command at `index` as a log entry of its own (see [`Fsm::apply_entry`]).
    /// Returns the command's result bytes, or its error (the command is applied either way,
    /// unless the error is retryable).
    pub fn apply(&self, index: u64, entry: &Entry) -> Result<Vec<u8>, FsmError> {
        let applied: Result<_, std::convert::Infallible> =
            self.apply_entry(|txn| Ok(txn.apply(index, entry)));
        match applied {
            Ok(result) => result,
        }
    }

    /// Applies the commands of one log entry in one write transaction: `f` applies each
    /// with [`EntryTxn::apply`], in order. When `f` returns `Ok`, the commands it applied
    /// are committed at once (readers and watchers see the whole entry or none of it) and
    /// the last applied index moves to the last of them; when it returns `Err`, nothing
    /// changes. Commands share one plugin instance per plugin, kept from one command to the
    /// next.
    pub fn apply_entry<R, E>(
        &self,
        f: impl FnOnce(&mut EntryTxn<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let store = self.store();
        let plugins = self.plugins();
        let first = self.last_applied();
        let mut entry = EntryTxn {
            plugins: &plugins,
            txn: store.write(first + 1),
            instances: EntryInstances::default(),
            last: first,
        };
        let result = f(&mut entry)?;
        let last = entry.last;
        if last > first {
            entry.txn.commit();
            self.last_applied.store(last, Ordering::Release);
        }
        Ok(result)
    }

    /// Runs query `name` of `plugin` against the current state.
    pub fn query(&self, plugin: &str, name: &str, args: &[u8]) -> Result<QueryOutput, FsmError> {
        let (plugins, store) = self.current();
        self.query_in(&plugins, &store, plugin, name, args)
    }

    /// The plugins and the store that belong together (an install switches both).
    fn current(&self) -> (Arc<PluginSet>, Arc<Store>) {
        let set = self.plugins.read().unwrap_or_else(|p| p.into_inner());
        let store = self.store.read().unwrap_or_else(|p| p.into_inner());
        (set.clone(), store.clone())
    }

    /// Runs a query of `plugins` against `store`, their matching store (the current one, or
    /// one a blocking query watches).
    fn query_in(
        &self,
        plugins: &PluginSet,
        store: &Store,
        plugin: &str,
        name: &str,
        args: &[u8],
    ) -> Result<QueryOutput, FsmError> {
        let p = plugins
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
            let (plugins, store) = self.current();
            let out = self.query_in(&plugins, &store, plugin, name, args)?;
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

/// The refusal of an entry written for a newer version of its plugin than `running`.
/// Versions that do not parse as semantic versions are compared as equal only when equal
/// text, and never refused.
fn written_for_newer(entry: &Entry, running: &str) -> Option<FsmError> {
    let written = entry.version.as_deref()?;
    let (w, r) = (
        semver::Version::parse(written).ok()?,
        semver::Version::parse(running).ok()?,
    );
    (w > r).then(|| FsmError::WrittenForNewer {
        plugin: entry.plugin.clone(),
        written: written.to_string(),
        running: running.to_string(),
    })
}
