//! The finite state machine: log entries in, plugin commands applied to the store in log
//! order, queries (plain and blocking) out.
//!
//! Owns: the mapping from a log entry to a plugin call and a store transaction, the last
//! applied index, the plugin set in effect (the configured one, with installed upgrades in
//! place: [`Fsm::install`]), the host's own replicated state beside the plugins' tables
//! ([`SystemState`]: the autopilot configuration and the installed plugins), and the
//! state hash servers compare.
//!
//! Submodules: [`apply`] (log entries in: the command loop, instances, retries) and
//! [`outcome`] (what comes out: outcomes, errors and their [`FailureKind`]).
//!
//! Invariants:
//! - entries are applied in strictly increasing index order; an entry at or below the last
//!   applied index is refused ([`FsmError::OutOfOrder`]) and changes nothing;
//! - an entry whose command fails (the plugin's error, a trap, fuel, memory or a budget) is
//!   still applied: its outcome is that error, the same on every server, and the store is
//!   unchanged;
//! - a failure of this server's own ([`crate::plugin::CallError::Unavailable`]) does not
//!   apply the entry: [`Fsm::apply_log_entry`] tries it again;
//! - an entry is applied by the plugin version in effect at its place in the log; one
//!   written for a newer version than that is refused ([`FsmError::WrittenForNewer`]).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::acl::store::{AclAnswer, AclOp, AclState};
use crate::autopilot::{ConfigUpdate, StoredConfig};
use crate::plugin::{LoadedPlugin, PluginSet, Runtime};
use crate::state::{Store, Wake};
use crate::upgrade::{self, UpgradeError};

pub mod apply;
pub mod outcome;

pub use apply::{Entry, EntryTxn};
pub use outcome::{Failure, FailureKind, FsmError, Outcome, PluginRefusal};

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
    /// ACL policies, roles and tokens (shared: every request's token is resolved
    /// against it; a change replaces it whole).
    #[serde(default, skip_serializing_if = "acl_is_empty")]
    pub acl: Arc<AclState>,
}

fn acl_is_empty(acl: &Arc<AclState>) -> bool {
    acl.is_empty()
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
    /// Queries that may run at once (as many as the cores): a query runs on a blocking
    /// thread under one of these, so long plugin reads neither occupy the async workers raft
    /// and the HTTP ports need nor pile up more threads than there are cores.
    query_slots: tokio::sync::Semaphore,
}

/// How many queries run at once: as many as there are cores, on threads of their own
/// (the OS shares the cores between them and the apply path; the async workers stay free).
fn query_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
            query_slots: tokio::sync::Semaphore::new(query_slots()),
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

    /// The ACL state as of the last applied entry.
    pub fn acl(&self) -> Arc<AclState> {
        self.system
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .acl
            .clone()
    }

    /// Applies an ACL change at `raft_index` (see [`AclState::apply`]).
    pub fn apply_acl(&self, op: AclOp, raft_index: u64) -> Result<AclAnswer, String> {
        let mut system = self.system.write().unwrap_or_else(|p| p.into_inner());
        Arc::make_mut(&mut system.acl).apply(op, raft_index)
    }

    /// Applies a start entry (a raft `Request::Start`): takes FSM index 1 when no
    /// command took an index yet; does nothing otherwise.
    pub fn start(&self) {
        let _ = self
            .last_applied
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The index of the last applied entry (0 before the first).
    pub fn last_applied(&self) -> u64 {
        self.last_applied.load(Ordering::Acquire)
    }

    /// Runs query `name` of `plugin` against the current state.
    pub fn query(&self, plugin: &str, name: &str, args: &[u8]) -> Result<QueryOutput, FsmError> {
        let (plugins, store) = self.current();
        Self::query_in(&plugins, &store, plugin, name, args)
    }

    /// Runs `plugin`'s leader timer (its `tick` export) on the current state, on a
    /// blocking thread under one of the query slots, as a query runs: the commands
    /// (name, payload) it asks the leader to propose.
    pub async fn tick(
        &self,
        plugin: &str,
        ctx: fsmhost_guest::TickCtx,
    ) -> Result<Vec<(String, Vec<u8>)>, FsmError> {
        let (plugins, store) = self.current();
        let name = plugin.to_string();
        self.off_thread(plugin, "tick", move || {
            let p = plugins
                .get(&name)
                .ok_or_else(|| FsmError::UnknownPlugin(name.clone()))?;
            Ok(p.tick(&store.read(), &ctx)?)
        })
        .await
    }

    /// Runs a query on a blocking thread once one of the query slots is free (see
    /// `Fsm::query_slots`).
    async fn query_off_thread(
        &self,
        plugins: Arc<PluginSet>,
        store: Arc<Store>,
        plugin: &str,
        name: &str,
        args: &[u8],
    ) -> Result<QueryOutput, FsmError> {
        let (p, n, a) = (plugin.to_string(), name.to_string(), args.to_vec());
        self.off_thread(plugin, &format!("query {name}"), move || {
            Self::query_in(&plugins, &store, &p, &n, &a)
        })
        .await
    }

    /// Runs `f` (a read-only plugin call) on a blocking thread once one of the query slots
    /// is free, so long plugin reads never hold up the async workers.
    async fn off_thread<R: Send + 'static>(
        &self,
        plugin: &str,
        call: &str,
        f: impl FnOnce() -> Result<R, FsmError> + Send + 'static,
    ) -> Result<R, FsmError> {
        let unavailable = |reason: String| {
            FsmError::Call(crate::plugin::CallError::Unavailable {
                plugin: plugin.to_string(),
                call: call.to_string(),
                reason,
            })
        };
        let _slot = self
            .query_slots
            .acquire()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| unavailable(format!("the call's thread ended: {e}")))?
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
        let index = read.max_stamp(tables.iter().map(String::as_str))?.max(1);
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
            let out = self
                .query_off_thread(plugins, store.clone(), plugin, name, args)
                .await?;
            if out.index > min_index || min_index == 0 {
                return Ok(out);
            }
            // Watch first, then check again: a commit between the query and the watch would
            // otherwise be missed.
            let watch = store.watch(out.tables.iter().map(String::as_str))?;
            let now = store
                .read()
                .max_stamp(out.tables.iter().map(String::as_str))?;
            if now > min_index {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match watch.wait(left).await {
                Wake::Changed => continue,
                Wake::Abandoned | Wake::TimedOut => {
                    let (plugins, store) = self.current();
                    return self
                        .query_off_thread(plugins, store, plugin, name, args)
                        .await;
                }
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
