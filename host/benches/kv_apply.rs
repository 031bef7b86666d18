//! kv `apply` through wasm (the host runtime, a fresh instance per command, fuel metering
//! on, the persistent-map state store) versus the same kv code compiled natively and run
//! through the SDK's in-memory transaction. Both apply pre-encoded CBOR payloads, as the FSM
//! receives them from the log, and commit after each command.
//!
//! `cargo bench -p fsmhost --bench kv_apply`

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use fsmhost::plugin::{PluginSet, Runtime, RuntimeConfig};
use fsmhost::state::Store;
use fsmhost_guest::{Ctx, Harness};
use fsmhost_plugin_kv as kv;
use std::hint::black_box;

/// Distinct keys written; payloads cycle over PAYLOADS so no write is a no-op.
const KEYS: usize = 1000;
const PAYLOADS: usize = 10_000;

fn cbor<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("encode");
    out
}

fn set_payloads() -> Vec<Vec<u8>> {
    (0..PAYLOADS)
        .map(|i| {
            cbor(&kv::SetRequest {
                tenancy: Default::default(),
                key: format!("service/web/config/{:04}", i % KEYS),
                value: format!("value-{i}-{}", "x".repeat(64)).into_bytes(),
                flags: 0,
            })
        })
        .collect()
}

fn get_args() -> Vec<Vec<u8>> {
    (0..KEYS)
        .map(|i| {
            cbor(&kv::GetArgs {
                tenancy: Default::default(),
                key: format!("service/web/config/{i:04}"),
            })
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let payloads = set_payloads();
    let gets = get_args();

    let mut group = c.benchmark_group("kv_set");
    {
        let mut h = Harness::new(kv::plugin()).expect("kv schema");
        let mut i = 0usize;
        group.bench_function("native", |b| {
            b.iter(|| {
                i += 1;
                let ctx = Ctx {
                    index: i as u64,
                    timestamp_ms: 0,
                };
                black_box(
                    h.apply_raw(ctx, "set", &payloads[i % PAYLOADS])
                        .expect("set"),
                )
            })
        });
    }
    {
        let rt = Runtime::new(RuntimeConfig::default()).expect("engine");
        let set: PluginSet = rt.load_bundled().expect("bundled plugins");
        let plugin = set.get("kv").expect("kv").clone();
        let store = Store::new(set.schema().clone());
        let mut i = 0usize;
        group.bench_function("wasm", |b| {
            b.iter(|| {
                i += 1;
                let mut txn = store.write(i as u64);
                let out = plugin
                    .apply(&mut txn, "set", &payloads[i % PAYLOADS], 0)
                    .expect("set");
                txn.commit();
                black_box(out)
            })
        });
    }
    {
        // As the FSM applies a log entry of 64 commands: one instance kept across them.
        let rt = Runtime::new(RuntimeConfig::default()).expect("engine");
        let set: PluginSet = rt.load_bundled().expect("bundled plugins");
        let plugin = set.get("kv").expect("kv").clone();
        let store = Store::new(set.schema().clone());
        let mut i = 0usize;
        let mut kept = None;
        group.bench_function("wasm_kept_64", |b| {
            b.iter(|| {
                i += 1;
                if i.is_multiple_of(64) {
                    kept = None;
                }
                let mut txn = store.write(i as u64);
                let out = plugin
                    .apply_kept(
                        &mut kept,
                        &mut txn,
                        "set",
                        &payloads[i % PAYLOADS],
                        0,
                        &mut Vec::new(),
                    )
                    .expect("set");
                txn.commit();
                black_box(out)
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("kv_get");
    {
        let mut h = Harness::new(kv::plugin()).expect("kv schema");
        for (n, p) in payloads.iter().take(KEYS).enumerate() {
            h.apply_raw(
                Ctx {
                    index: n as u64 + 1,
                    timestamp_ms: 0,
                },
                "set",
                p,
            )
            .expect("set");
        }
        let mut i = 0usize;
        group.bench_function("native", |b| {
            b.iter(|| {
                i += 1;
                let args = &gets[i % KEYS];
                black_box(h.plugin().query_raw(h.store(), "get", args).expect("get"))
            })
        });
    }
    {
        let rt = Runtime::new(RuntimeConfig::default()).expect("engine");
        let set: PluginSet = rt.load_bundled().expect("bundled plugins");
        let plugin = set.get("kv").expect("kv").clone();
        let store = Store::new(set.schema().clone());
        for (n, p) in payloads.iter().take(KEYS).enumerate() {
            let mut txn = store.write(n as u64 + 1);
            plugin.apply(&mut txn, "set", p, 0).expect("set");
            txn.commit();
        }
        let mut i = 0usize;
        let read = store.read();
        group.bench_function("wasm", |b| {
            b.iter(|| {
                i += 1;
                black_box(plugin.query(&read, "get", &gets[i % KEYS]).expect("get"))
            })
        });
    }
    group.finish();

    // The floor under every wasm call: a fresh instance and one export call that does
    // nothing with the state (an unknown-table index-args error from inside the guest).
    let rt = Runtime::new(RuntimeConfig::default()).expect("engine");
    let set: PluginSet = rt.load_bundled().expect("bundled plugins");
    let plugin = set.get("kv").expect("kv").clone();
    c.bench_function("wasm_call_floor", |b| {
        b.iter_batched(
            || (),
            |()| black_box(plugin.index_args("none", "id", &[], false).is_err()),
            BatchSize::SmallInput,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
