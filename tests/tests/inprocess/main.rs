//! The whole-system tests that run the host in-process, with no server processes: the
//! plugin runtime, the state machine and the snapshot files, through real wasm components.
//! One test binary; `tests/cluster/` is the other. The helpers they share are below.

mod fsm;
mod messages;
mod plugin_runtime;
mod snapshot_files;
mod tls;

use fsmhost::fsm::Fsm;
use fsmhost::plugin::{Limits, PluginSet, Runtime, RuntimeConfig};
use fsmhost_tests::{bundled, fixture};

/// A runtime with `limits` whose compiled plugins are cached in one directory under the
/// target dir (the cache is keyed by component and engine configuration), so the tests
/// compile each plugin once per build rather than once per test.
fn cached_runtime(limits: Limits) -> Runtime {
    Runtime::new(RuntimeConfig {
        limits,
        cache_dir: Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")),
    })
    .expect("engine")
}

/// The bundled kv and the fixtures `extra` (by name), loaded by `rt` as one set.
fn kv_and(rt: &Runtime, extra: &[&str]) -> PluginSet {
    let mut plugins = vec![rt.load("bundled:kv", bundled("kv")).expect("kv loads")];
    for name in extra {
        plugins.push(rt.load(name, fixture(name)).expect("fixture loads"));
    }
    PluginSet::new(plugins).expect("a consistent set")
}

/// A state machine of the bundled kv and the fixtures `extra`, with the default limits.
fn fsm_with(extra: &[&str]) -> Fsm {
    let rt = cached_runtime(Limits::default());
    Fsm::new(kv_and(&rt, extra))
}
