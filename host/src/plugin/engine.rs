//! The wasmtime engine every plugin runs on: configured for determinism, with a pooling
//! allocator, the linker of the contract's imports and the compiled-artifact cache.
//!
//! Owns: [`Runtime`] (engine, linker, cache, limits) and its configuration; what a
//! [`Runtime`] does with a component is in `load` (checking it) and `call` (running it).

use std::path::PathBuf;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::cache::ArtifactCache;
use super::call::CallGate;
use super::host::HostState;
use super::{Limits, LoadError, bindings};

/// How to build a [`Runtime`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Per-call limits.
    pub limits: Limits,
    /// Directory of compiled artifacts; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
}

/// The wasm engine and linker shared by every plugin.
pub struct Runtime {
    pub(super) engine: Engine,
    pub(super) linker: Linker<HostState>,
    pub(super) cache: Option<ArtifactCache>,
    pub(super) limits: Limits,
    pub(super) gate: CallGate,
}

/// How many plugin instances may be alive at once (one per in-flight call). A call beyond
/// this waits for nothing: it fails, so the pool is sized well above the number of threads
/// that call into plugins.
pub(super) const INSTANCE_POOL: u32 = 256;

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

    pub(super) fn compile(
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
}
