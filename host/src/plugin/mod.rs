//! The plugin runtime: a wasmtime engine configured for determinism, loading and validating
//! components, per-call limits, the compiled-artifact cache, and calls into plugins.
//!
//! Owns: everything that touches wasmtime. Nothing outside this module sees a wasmtime type.
//!
//! Determinism (the same log must give byte-identical state on every server):
//! - fuel, never epochs, bounds a call; the same call runs out at the same instruction on
//!   every server;
//! - NaN canonicalization on; threads and relaxed SIMD off;
//! - a per-store memory cap; a refused `memory.grow` is reported as memory exhaustion;
//! - the component imports nothing but `fsmhost:plugin` (checked at load, before anything
//!   runs), so it has no clock, randomness or I/O.
//!
//! Isolation: a query, or a call that computes index keys, gets a fresh instance from one
//! [`wasmtime::component::InstancePre`] (about 20 microseconds, most of it resetting the
//! memory slot). The commands of one log entry share one instance per plugin
//! ([`LoadedPlugin::apply_kept`]): every server applies the same entries in the same order,
//! so a command's fuel use, which depends on the heap and statics the earlier commands of
//! its entry left, is still a function of the log. A trap or a used-up budget retires the
//! instance, and the next entry starts on a fresh one, so a trap never reaches past its
//! own command. An `apply` runs on the write transaction's tables, lent to the instance
//! for the call, under a savepoint that is rolled back unless the command returns `ok`
//! (the store's undo journal: a failed command costs what it wrote). The HTTP
//! pair `route` and `render` are pure functions of their arguments that run outside any
//! transaction and outside the log (a route's command is fixed before it is proposed), so
//! they run on a few kept-warm instances: a trap, an exhausted budget or a grown memory
//! retires the instance.
//!
//! Index keys: instances are not re-entrant, so the host never calls `index` while `apply`
//! runs. The guest SDK computes keys inside the guest and passes them with `insert`; the
//! same indexer code serves the `index` export used for restores and index rebuilds.

mod cache;
mod error;
mod host;
mod routes;
mod validate;

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

pub use error::{CallError, ErrorKind, LoadError};
pub use routes::{HttpAction, HttpPlan, HttpRequest, HttpResponse, HttpRoute};

use crate::state::{IndexKeys, ReadTxn, Schema, TableSchema, WriteTxn};
use cache::ArtifactCache;
use host::{Access, HostState};

/// The version of the `fsmhost:plugin` WIT package this host serves.
pub const CONTRACT_VERSION: &str = "0.3.0";

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
                world: "plugin",
        // Imports may trap: an exhausted host-work or write budget ends the call at once.
        imports: { default: trappable },
    });
}

use bindings::exports::fsmhost::plugin::guest as wit_guest;
use bindings::fsmhost::plugin::types as wit;

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The plugins built into the binary (the default plugin set): `(name, component bytes)`.
pub fn bundled() -> &'static [(&'static str, &'static [u8])] {
    BUNDLED
}

/// Per-call limits. They decide whether a command fails, so every server of a cluster must
/// run with the same ones (a later issue replicates them through the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per call (about one unit per wasm instruction). Host work done for the plugin
    /// (state calls: entries visited, bytes copied) draws on a second budget of the same size.
    pub fuel: u64,
    /// Most bytes of linear memory an instance may grow to.
    pub memory_bytes: usize,
    /// Most bytes (objects and keys) one call may insert, bounding the host memory a single
    /// command can make the store allocate.
    pub write_bytes: u64,
}

impl Default for Limits {
    /// 1e9 fuel (about half a second of wasm), 256 MiB of memory, 64 MiB of writes.
    fn default() -> Self {
        Limits {
            fuel: 1_000_000_000,
            memory_bytes: 256 << 20,
            write_bytes: 64 << 20,
        }
    }
}

/// Instances kept warm per plugin for `route` and `render`.
const WARM_INSTANCES: usize = 4;

/// A warm instance whose memory grew past this is retired rather than kept.
const WARM_MAX_MEMORY: usize = 8 << 20;

/// An instance kept for `route` and `render`, with the gate slot it holds while it lives.
struct Warm {
    inst: Instance,
    _slot: GateSlot,
}

/// A live instance of a plugin, in its own wasmtime store.
///
/// Outside this module it is the instance kept for the commands of one log entry
/// ([`LoadedPlugin::apply_kept`]); it cannot be used with another plugin than the one that
/// made it.
pub struct Instance {
    store: Store<HostState>,
    instance: bindings::Plugin,
    /// The pre-instance it came from: which plugin it belongs to.
    pre: Arc<bindings::PluginPre<HostState>>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("plugin", &self.store.data().plugin)
            .finish()
    }
}

/// Instance slots kept free of reads, so the serial write path always finds one.
const RESERVED_FOR_APPLY: u32 = 8;

/// Counts calls other than `apply` in flight; refuses one beyond the pool's share for them.
#[derive(Clone, Default)]
struct CallGate(Arc<AtomicU32>);

/// A slot taken from a [`CallGate`]; released on drop.
struct GateSlot(Arc<AtomicU32>);

impl CallGate {
    fn enter(&self) -> Option<GateSlot> {
        let max = INSTANCE_POOL - RESERVED_FOR_APPLY;
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| GateSlot(self.0.clone()))
    }
}

impl Drop for GateSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How to build a [`Runtime`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Per-call limits.
    pub limits: Limits,
    /// Directory of compiled artifacts; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
}

/// A plugin's description, as it declared it at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Plugin name, unique in a set.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// Edition, e.g. `oss`.
    pub edition: String,
    /// Owned tables (owner filled in with the plugin's name).
    pub tables: Vec<TableSchema>,
    /// Command names.
    pub commands: Vec<String>,
    /// Query names.
    pub queries: Vec<String>,
    /// HTTP routes the plugin serves.
    pub routes: Vec<HttpRoute>,
    /// The migrations its `migrate` export carries out.
    pub migrations: Vec<Migration>,
}

/// A migration a plugin declares: it rewrites the objects an older version stored in
/// `table` at layout `from_layout` (see [`LoadedPlugin::migrate`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Migration {
    /// The table, as the older version named it.
    pub table: String,
    /// The layout the older version declared for it.
    pub from_layout: u32,
}

/// The wasm engine and linker shared by every plugin.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<ArtifactCache>,
    limits: Limits,
    gate: CallGate,
}

/// How many plugin instances may be alive at once (one per in-flight call). A call beyond
/// this waits for nothing: it fails, so the pool is sized well above the number of threads
/// that call into plugins.
const INSTANCE_POOL: u32 = 256;

/// Bytes at the start of each pooled linear memory kept mapped between instances.
const KEEP_RESIDENT: usize = 512 << 10;

/// The engine configuration. Threads need wasmtime's `threads` feature, which this build
/// does not enable, so shared memories and atomics waits cannot be used at all.
///
/// Instances come from a pooling allocator: a fresh instance per call reuses a memory slot
/// reset copy-on-write instead of mapping and unmapping a new one (measured in
/// BENCHMARKS.md: this is most of the cost of a call).
fn engine_config(limits: &Limits) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(INSTANCE_POOL)
        .total_core_instances(INSTANCE_POOL * 8)
        .total_memories(INSTANCE_POOL)
        .total_tables(INSTANCE_POOL * 4)
        .max_memories_per_component(1)
        .max_memory_size(limits.memory_bytes)
        // A Rust guest's working set (1 MiB stack, data, the start of the heap) lies in the
        // first few MiB. Keeping it resident lets a slot be reset by restoring only its
        // dirty pages, instead of unmapping them and faulting them back in on every call.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10);
    let mut c = Config::new();
    c.wasm_component_model(true)
        .consume_fuel(true)
        .cranelift_nan_canonicalization(true)
        .wasm_relaxed_simd(false)
        .memory_init_cow(true)
        .max_wasm_stack(512 << 10)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // For profiling plugins: `perf` then names the guest's functions (README).
    if std::env::var_os("FSMHOST_WASM_PERFMAP").is_some() {
        c.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    c
}

impl Runtime {
    /// A runtime with a deterministic engine.
    pub fn new(config: RuntimeConfig) -> Result<Self, LoadError> {
        let engine = Engine::new(&engine_config(&config.limits))
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        bindings::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(ArtifactCache::new(dir, &engine)?),
            None => None,
        };
        Ok(Runtime {
            engine,
            linker,
            cache,
            limits: config.limits,
            gate: CallGate::default(),
        })
    }

    /// The per-call limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn compile(
        &self,
        origin: &str,
        bytes: &[u8],
        hash: &[u8; 32],
    ) -> Result<(Component, bool), LoadError> {
        if let Some(c) = self.cache.as_ref().and_then(|c| c.get(&self.engine, hash)) {
            return Ok((c, false));
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile {
            plugin: origin.to_string(),
            reason: format!("{e:#}"),
        })?;
        if let Some(cache) = &self.cache {
            cache.put(hash, &component);
        }
        Ok((component, true))
    }

    /// Compiles (or fetches from the cache) and validates one component. `origin` names it
    /// in errors until its description is known (a file path or a bundled name).
    pub fn load(&self, origin: &str, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        let (component, compiled) = self.compile(origin, bytes, &hash)?;
        let ty = component.component_type();
        let mut imports = Vec::new();
        for (name, _) in ty.imports(&self.engine) {
            validate::import(origin, name)?;
            imports.push(name.to_string());
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(bindings::PluginPre::new)
            .map_err(|e| LoadError::Describe {
                plugin: origin.to_string(),
                reason: format!("the component does not implement the fsmhost:plugin world: {e:#}"),
            })?;
        let mut plugin = LoadedPlugin {
            origin: origin.to_string(),
            gate: self.gate.clone(),
            description: Description {
                name: origin.to_string(),
                version: String::new(),
                edition: String::new(),
                tables: Vec::new(),
                commands: Vec::new(),
                queries: Vec::new(),
                routes: Vec::new(),
                migrations: Vec::new(),
            },
            hash,
            component: Arc::from(bytes),
            imports,
            warm: std::sync::Mutex::new(Vec::new()),
            compiled,
            pre: Arc::new(pre),
            engine: self.engine.clone(),
            limits: self.limits,
            commands: Vec::new(),
        };
        let d = plugin
            .call("describe", Access::None, |g, s| g.call_describe(s))
            .map_err(|e| LoadError::Describe {
                plugin: origin.to_string(),
                reason: e.to_string(),
            })?;
        let name = d.name.clone();
        plugin.description = Description {
            tables: d
                .tables
                .into_iter()
                .map(|t| TableSchema {
                    name: t.name,
                    owner: name.clone(),
                    indexes: t
                        .indexes
                        .into_iter()
                        .map(|i| crate::state::IndexSchema {
                            name: i.name,
                            unique: i.unique,
                            multi: i.multi,
                            allow_missing: i.allow_missing,
                            prefix: i.prefix,
                        })
                        .collect(),
                    layout: t.layout,
                })
                .collect(),
            name: d.name,
            version: d.version,
            edition: d.edition,
            commands: d.commands,
            queries: d.queries,
            routes: d
                .routes
                .into_iter()
                .map(|r| HttpRoute {
                    method: r.method,
                    path: r.path,
                    prefix: r.prefix,
                })
                .collect(),
            migrations: d
                .migrations
                .into_iter()
                .map(|m| Migration {
                    table: m.table,
                    from_layout: m.from_layout,
                })
                .collect(),
        };
        validate::description(origin, &plugin.description)?;
        routes::check(&plugin.description.name, &plugin.description.routes)?;
        plugin.commands = (plugin.description.commands.iter())
            .map(|c| Command {
                call: format!("command {c}"),
                metrics: std::sync::OnceLock::new(),
            })
            .collect();
        Ok(plugin)
    }

    /// Loads the bundled plugins as a set.
    pub fn load_bundled(&self) -> Result<PluginSet, LoadError> {
        let plugins = bundled()
            .iter()
            .map(|(name, bytes)| self.load(&format!("bundled:{name}"), bytes))
            .collect::<Result<Vec<_>, _>>()?;
        PluginSet::new(plugins)
    }
}

/// A validated plugin, ready to run.
pub struct LoadedPlugin {
    /// Where it was loaded from (a file, `bundled:<name>`), for messages.
    origin: String,
    gate: CallGate,
    description: Description,
    hash: [u8; 32],
    /// The component's bytes: an installed plugin travels in raft snapshots.
    component: Arc<[u8]>,
    imports: Vec<String>,
    warm: std::sync::Mutex<Vec<Warm>>,
    compiled: bool,
    pre: Arc<bindings::PluginPre<HostState>>,
    engine: Engine,
    limits: Limits,
    /// Per command of the description, in its order.
    commands: Vec<Command>,
}

/// What `apply` needs of one command, prepared once: its call name for messages, and its
/// metrics, looked up at its first apply.
struct Command {
    call: String,
    metrics: std::sync::OnceLock<crate::metrics::CommandMetrics>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.description.name)
            .field("version", &self.description.version)
            .field("hash", &self.hash_hex())
            .finish()
    }
}

impl LoadedPlugin {
    /// What the plugin declared.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.description.name
    }

    /// SHA-256 of the component bytes: the plugin's identity.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// The component's bytes.
    pub fn component(&self) -> &Arc<[u8]> {
        &self.component
    }

    /// The hash as hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }

    /// The interfaces the component imports (all within the contract, or it would not have
    /// loaded).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Whether loading compiled the component (false: it came from the artifact cache).
    pub fn was_compiled(&self) -> bool {
        self.compiled
    }

    /// A fresh instance, in a store of its own with fuel and memory limits, whose calls
    /// see `access`.
    fn instantiate(&self, call: &str, access: Access) -> Result<Instance, CallError> {
        self.instantiate_or_return(call, access)
            .map_err(|refused| refused.0)
    }

    /// [`LoadedPlugin::instantiate`], which hands `access` back when it fails (the tables a
    /// write transaction lent).
    fn instantiate_or_return(
        &self,
        call: &str,
        access: Access,
    ) -> Result<Instance, Box<(CallError, Access)>> {
        let state = HostState::new(&self.description.name, access, &self.limits);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Instantiation (the component's start code) burns the call's fuel too.
        match store
            .set_fuel(self.limits.fuel)
            .and_then(|()| self.pre.instantiate(&mut store))
        {
            Ok(instance) => Ok(Instance {
                store,
                instance,
                pre: self.pre.clone(),
            }),
            Err(e) => {
                let error = self.instantiate_error(call, store.data(), e);
                Err(Box::new((error, store.into_data().access)))
            }
        }
    }

    /// Readies a kept instance for its next call: full budgets (fuel, host work, writes),
    /// no error or reads left from the last one. (A fresh instance starts so.)
    fn refill(&self, inst: &mut Instance) {
        inst.store.data_mut().reset(&self.limits);
        // Fuel is on in every engine this runtime builds, so this cannot fail.
        let _ = inst.store.set_fuel(self.limits.fuel);
    }

    /// Runs one export on `inst` (fresh, or refilled); returns the fuel it used with the
    /// result. A used-up budget fails the call whatever the plugin did with the error it
    /// got.
    fn run<R>(
        &self,
        call: &str,
        inst: &mut Instance,
        f: impl FnOnce(&wit_guest::Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> (u64, Result<R, CallError>) {
        let result = f(inst.instance.fsmhost_plugin_guest(), &mut inst.store)
            .map_err(|e| self.classify(call, inst.store.data(), e));
        let result = match inst.store.data().exceeded {
            Some(which) => Err(self.budget_error(call, which)),
            None => result,
        };
        let fuel_used = self
            .limits
            .fuel
            .saturating_sub(inst.store.get_fuel().unwrap_or(0));
        (fuel_used, result)
    }

    /// Runs one export in a fresh instance; returns its result with the store's final host
    /// state (what the call read).
    fn call_fresh<R>(
        &self,
        call: &str,
        access: Access,
        f: impl FnOnce(&wit_guest::Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<(R, HostState), CallError> {
        let mut inst = self.instantiate(call, access)?;
        let (_, result) = self.run(call, &mut inst, f);
        result.map(|r| (r, inst.store.into_data()))
    }

    fn budget_error(&self, call: &str, which: host::Exceeded) -> CallError {
        let budget = match which {
            host::Exceeded::HostWork => {
                format!("host-work budget of {} fuel units", self.limits.fuel)
            }
            host::Exceeded::Writes => format!("write budget of {} bytes", self.limits.write_bytes),
        };
        CallError::BudgetExceeded {
            plugin: self.description.name.clone(),
            call: call.to_string(),
            budget,
        }
    }

    /// Instantiation failures: a trap or an oversized initial memory is the component's own
    /// (deterministic); anything else (an exhausted pool) is this server's problem.
    fn instantiate_error(&self, call: &str, state: &HostState, e: wasmtime::Error) -> CallError {
        if state.limiter.denied.is_some() || e.downcast_ref::<Trap>().is_some() {
            return self.classify(call, state, e);
        }
        CallError::Unavailable {
            plugin: self.description.name.clone(),
            call: call.to_string(),
            reason: format!("{e:#}"),
        }
    }

    /// Runs a call that is not `apply` through the gate that keeps slots for writes; returns
    /// its result and the tables it read.
    fn gated_call<R>(
        &self,
        call: &str,
        access: Access,
        f: impl FnOnce(&wit_guest::Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<(R, BTreeSet<String>), CallError> {
        let _slot = self.enter_gate(call)?;
        self.call_fresh(call, access, f)
            .map(|(r, state)| (r, state.read_set))
    }

    /// A slot for a call other than `apply`, or `Unavailable` when every such slot is taken.
    fn enter_gate(&self, call: &str) -> Result<GateSlot, CallError> {
        self.gate.enter().ok_or_else(|| CallError::Unavailable {
            plugin: self.description.name.clone(),
            call: call.to_string(),
            reason: format!(
                "{} plugin calls are already running",
                INSTANCE_POOL - RESERVED_FOR_APPLY
            ),
        })
    }

    /// Runs a pure call (`route`, `render`) on a warm instance, or a new one that is kept
    /// afterwards if there is room; an instance that trapped, ran out of a budget or grew its
    /// memory past [`WARM_MAX_MEMORY`] is dropped.
    fn warm_call<R>(
        &self,
        call: &str,
        f: impl FnOnce(&wit_guest::Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let kept = self.warm.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut warm = match kept {
            Some(mut w) => {
                self.refill(&mut w.inst);
                w
            }
            None => {
                let slot = self.enter_gate(call)?;
                Warm {
                    inst: self.instantiate(call, Access::None)?,
                    _slot: slot,
                }
            }
        };
        let (_, result) = self.run(call, &mut warm.inst, f);
        if result.is_ok() && warm.inst.store.data().limiter.memory_size <= WARM_MAX_MEMORY {
            let mut pool = self.warm.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < WARM_INSTANCES {
                pool.push(warm);
            }
        }
        result
    }

    fn call<R>(
        &self,
        call: &str,
        access: Access,
        f: impl FnOnce(&wit_guest::Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.call_fresh(call, access, f).map(|(r, _)| r)
    }

    fn classify(&self, call: &str, state: &HostState, e: wasmtime::Error) -> CallError {
        let plugin = self.description.name.clone();
        let call = call.to_string();
        if let Some(requested) = state.limiter.denied {
            return CallError::MemoryExhausted {
                plugin,
                call,
                limit: self.limits.memory_bytes,
                requested,
            };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => CallError::FuelExhausted {
                plugin,
                call,
                limit: self.limits.fuel,
            },
            Some(Trap::UnreachableCodeReached) => CallError::Trap {
                plugin,
                call,
                trap: match &state.panic_message {
                    Some(m) => format!("the plugin {m}"),
                    None => "the plugin panicked (wasm `unreachable` instruction executed)".into(),
                },
            },
            Some(t) => CallError::Trap {
                plugin,
                call,
                trap: t.to_string().trim_start_matches("wasm trap: ").to_string(),
            },
            None => CallError::Trap {
                plugin,
                call,
                trap: format!("{e:#}"),
            },
        }
    }

    fn plugin_error(&self, call: &str, e: wit::PluginError) -> CallError {
        let kind = match e.kind {
            wit::ErrorKind::BadRequest => ErrorKind::BadRequest,
            wit::ErrorKind::NotFound => ErrorKind::NotFound,
            wit::ErrorKind::Conflict => ErrorKind::Conflict,
            wit::ErrorKind::State => ErrorKind::State,
            wit::ErrorKind::Internal => ErrorKind::Internal,
        };
        CallError::Plugin {
            plugin: self.description.name.clone(),
            call: call.to_string(),
            kind,
            message: e.message,
        }
    }

    /// Runs `command` in `txn` in a fresh instance. On `Ok` the command's writes are in
    /// `txn`; on any error (the plugin's own, a trap, fuel or memory exhaustion) `txn` is
    /// exactly as it was.
    pub fn apply(
        &self,
        txn: &mut WriteTxn<'_>,
        command: &str,
        payload: &[u8],
        timestamp_ms: u64,
    ) -> Result<Vec<u8>, CallError> {
        self.apply_kept(&mut None, txn, command, payload, timestamp_ms)
    }

    /// [`LoadedPlugin::apply`] on the instance in `kept` (a fresh one when it is empty or
    /// belongs to another plugin), which is left in `kept` for the next command unless the
    /// call trapped or used up a budget (a refusal by the plugin keeps it).
    ///
    /// Determinism: a kept instance carries the guest's heap and statics from one command
    /// to the next, and so changes the fuel the next one burns. The caller keeps one only
    /// across the commands of one log entry, in log order, starting empty: every server,
    /// and a server replaying its log, then runs each command on the same instance history.
    pub fn apply_kept(
        &self,
        kept: &mut Option<Instance>,
        txn: &mut WriteTxn<'_>,
        command: &str,
        payload: &[u8],
        timestamp_ms: u64,
    ) -> Result<Vec<u8>, CallError> {
        let Some(at) = self.description.commands.iter().position(|c| c == command) else {
            return Err(CallError::UnknownCommand {
                plugin: self.description.name.clone(),
                command: command.to_string(),
            });
        };
        let Command { call, metrics } = &self.commands[at];
        let index = txn.index();
        let savepoint = txn.savepoint();
        let access = Access::Write {
            tables: txn.lend(),
            index,
        };
        let ctx = wit::ApplyContext {
            index,
            timestamp_ms,
        };
        let started = std::time::Instant::now();
        let mut inst = match kept.take() {
            Some(mut inst) if Arc::ptr_eq(&inst.pre, &self.pre) => {
                self.refill(&mut inst);
                inst.store.data_mut().access = access;
                inst
            }
            _ => match self.instantiate_or_return(call, access) {
                Ok(inst) => inst,
                Err(refused) => {
                    let (e, access) = *refused;
                    give_back(txn, access);
                    txn.rollback_to(savepoint);
                    return Err(e);
                }
            },
        };
        let (fuel, result) = self.run(call, &mut inst, |g, s| {
            g.call_apply(s, command, payload, ctx)
        });
        give_back(
            txn,
            std::mem::replace(&mut inst.store.data_mut().access, Access::None),
        );
        let outcome = match result {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(self.plugin_error(call, e)),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(_) => txn.release(savepoint),
            Err(_) => txn.rollback_to(savepoint),
        }
        if matches!(outcome, Ok(_) | Err(CallError::Plugin { .. })) {
            *kept = Some(inst);
        }
        metrics
            .get_or_init(|| crate::metrics::METRICS.command(&self.description.name, command))
            .record(started.elapsed(), fuel, outcome.is_ok());
        outcome
    }

    /// Runs the read-only query `name` against `txn`; returns its result bytes.
    pub fn query(&self, txn: &ReadTxn, name: &str, args: &[u8]) -> Result<Vec<u8>, CallError> {
        self.query_with_reads(txn, name, args).map(|(out, _)| out)
    }

    /// Runs the read-only query `name` against `txn`; returns its result bytes and the tables
    /// it read (what a blocking query must watch).
    pub fn query_with_reads(
        &self,
        txn: &ReadTxn,
        name: &str,
        args: &[u8],
    ) -> Result<(Vec<u8>, BTreeSet<String>), CallError> {
        if !self.description.queries.iter().any(|q| q == name) {
            return Err(CallError::UnknownQuery {
                plugin: self.description.name.clone(),
                query: name.to_string(),
            });
        }
        let call = format!("query {name}");
        let (out, reads) = self.gated_call(&call, Access::Read(txn.clone()), |g, s| {
            g.call_query(s, name, args)
        })?;
        out.map(|bytes| (bytes, reads))
            .map_err(|e| self.plugin_error(&call, e))
    }

    /// Every index key of an encoded object of `table` (restores, index rebuilds).
    pub fn index(&self, table: &str, object: &[u8]) -> Result<Vec<IndexKeys>, CallError> {
        let call = format!("index of table {table}");
        let keys = self
            .gated_call(&call, Access::None, |g, s| g.call_index(s, table, object))?
            .0
            .map_err(|e| self.plugin_error(&call, e))?;
        Ok(keys
            .into_iter()
            .map(|k| IndexKeys {
                index: k.index,
                keys: k.keys,
            })
            .collect())
    }

    /// Rewrites one object an older version stored in `table` at layout `from_layout` (the
    /// `migrate` export): the `(table, object)` pairs to store in its place, none to drop
    /// it. Runs outside any transaction with the per-call limits of a command.
    pub fn migrate(
        &self,
        table: &str,
        from_layout: u32,
        object: &[u8],
    ) -> Result<Vec<(String, Vec<u8>)>, CallError> {
        let call = format!("migrate of table {table} from layout {from_layout}");
        let out = self
            .gated_call(&call, Access::None, |g, s| {
                g.call_migrate(s, table, from_layout, object)
            })?
            .0
            .map_err(|e| self.plugin_error(&call, e))?;
        Ok(out.into_iter().map(|o| (o.table, o.object)).collect())
    }

    /// The key (or key prefix) for encoded query arguments of `table.index`.
    pub fn index_args(
        &self,
        table: &str,
        index: &str,
        args: &[u8],
        prefix: bool,
    ) -> Result<Vec<u8>, CallError> {
        let call = format!("index-args of {table}.{index}");
        self.gated_call(&call, Access::None, |g, s| {
            g.call_index_args(s, table, index, args, prefix)
        })?
        .0
        .map_err(|e| self.plugin_error(&call, e))
    }
}

impl LoadedPlugin {
    /// Plans a request on one of the plugin's routes (the `route` export), outside any
    /// transaction.
    pub fn route(&self, req: &HttpRequest) -> Result<HttpPlan, CallError> {
        let call = format!("route {} {}", req.method, req.path);
        let wreq = wit::HttpRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            body: req.body.clone(),
        };
        let plan = self.warm_call(&call, |g, s| g.call_route(s, &wreq))?;
        let action = match plan.action {
            wit::HttpAction::Apply(c) => HttpAction::Apply {
                command: c.name,
                payload: c.input,
            },
            wit::HttpAction::Query(c) => HttpAction::Query {
                name: c.name,
                args: c.input,
            },
            wit::HttpAction::Respond(r) => HttpAction::Respond(response(r)),
        };
        Ok(HttpPlan {
            action,
            context: plan.context,
        })
    }

    /// Renders the outcome of a plan (the `render` export): the result bytes, or the
    /// plugin's own error; `index` is the outcome's index.
    pub fn render(
        &self,
        context: &[u8],
        outcome: Result<&[u8], (ErrorKind, &str)>,
        index: u64,
    ) -> Result<HttpResponse, CallError> {
        let outcome = outcome
            .map(<[u8]>::to_vec)
            .map_err(|(kind, message)| wit::PluginError {
                kind: match kind {
                    ErrorKind::BadRequest => wit::ErrorKind::BadRequest,
                    ErrorKind::NotFound => wit::ErrorKind::NotFound,
                    ErrorKind::Conflict => wit::ErrorKind::Conflict,
                    ErrorKind::State => wit::ErrorKind::State,
                    ErrorKind::Internal => wit::ErrorKind::Internal,
                },
                message: message.to_string(),
            });
        let r = self.warm_call("render", |g, s| {
            g.call_render(s, context, outcome.as_deref(), index)
        })?;
        Ok(response(r))
    }
}

/// Hands the tables of a write call's `access` back to `txn`.
fn give_back(txn: &mut WriteTxn<'_>, access: Access) {
    if let Access::Write { tables, .. } = access {
        txn.give_back(tables);
    }
}

fn response(r: wit::HttpResponse) -> HttpResponse {
    HttpResponse {
        status: r.status,
        content_type: r.content_type,
        body: r.body,
    }
}

/// The plugins a server runs, checked together: unique plugin names, and every table owned by
/// exactly one plugin.
pub struct PluginSet {
    plugins: Vec<Arc<LoadedPlugin>>,
    schema: Schema,
}

impl PluginSet {
    /// Checks the set and builds the store schema from it.
    pub fn new(plugins: Vec<LoadedPlugin>) -> Result<Self, LoadError> {
        Self::from_shared(plugins.into_iter().map(Arc::new).collect())
    }

    /// [`PluginSet::new`] over plugins already shared (another set's, with one replaced).
    pub fn from_shared(plugins: Vec<Arc<LoadedPlugin>>) -> Result<Self, LoadError> {
        let mut tables: Vec<TableSchema> = Vec::new();
        for (i, p) in plugins.iter().enumerate() {
            if let Some(other) = plugins[..i].iter().find(|o| o.name() == p.name()) {
                return Err(LoadError::Conflict {
                    first: other.origin.clone(),
                    second: p.origin.clone(),
                    what: format!("the plugin name {}", p.name()),
                });
            }
            for t in &p.description.tables {
                if let Some(prev) = tables.iter().find(|x| x.name == t.name) {
                    return Err(LoadError::Conflict {
                        first: format!(
                            "{} ({})",
                            prev.owner,
                            owner_origin(&plugins[..i], &prev.owner)
                        ),
                        second: format!("{} ({})", p.name(), p.origin),
                        what: format!("table {}", t.name),
                    });
                }
                tables.push(t.clone());
            }
        }
        let routes: Vec<(String, &[HttpRoute])> = plugins
            .iter()
            .map(|p| {
                (
                    format!("{} ({})", p.name(), p.origin),
                    &p.description.routes[..],
                )
            })
            .collect();
        routes::check_set(&routes)?;
        Ok(PluginSet {
            plugins,
            schema: Schema::new(tables).map_err(|problem| LoadError::InvalidDescription {
                plugin: "the plugin set".into(),
                problem,
            })?,
        })
    }

    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.iter().find(|p| p.name() == name)
    }

    /// The plugin serving `method path` on one of its routes (at most one does).
    pub fn route_for(&self, method: &str, path: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins
            .iter()
            .find(|p| p.description.routes.iter().any(|r| r.matches(method, path)))
    }

    /// Every plugin, in load order.
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// The store schema: every table of every plugin.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }
}

fn owner_origin(plugins: &[Arc<LoadedPlugin>], owner: &str) -> String {
    plugins
        .iter()
        .find(|p| p.name() == owner)
        .map_or_else(String::new, |p| p.origin.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_keeps_slots_for_apply() {
        let gate = CallGate::default();
        let held: Vec<GateSlot> = (0..INSTANCE_POOL - RESERVED_FOR_APPLY)
            .map(|_| gate.enter().expect("a free slot"))
            .collect();
        assert!(
            gate.enter().is_none(),
            "reads cannot take the reserved slots"
        );
        drop(held);
        assert!(gate.enter().is_some(), "slots come back when calls end");
    }
}
