//! What an install costs the server that applies it: the store rebuilt for a new plugin
//! version over 10,000 objects, in process (no raft). Two kinds, measured in the same run:
//!
//! - `reindex`: kv 0.2.0 -> 0.3.0 (`kv-v2` adds the `kvs.flags` index): every object of
//!   `kvs` gets its keys from the new plugin's `index` export;
//! - `migrate`: notes 0.1.0 -> 0.2.0 (`notes-v2` changes the `notes` layout): every object
//!   goes through the new plugin's `migrate` export, then `index`.
//!
//! `cargo bench -p fsmhost-tests --bench install`

use criterion::{Criterion, criterion_group, criterion_main};
use fsmhost::fsm::{Entry, Fsm};
use fsmhost::plugin::{LoadedPlugin, PluginSet, Runtime, RuntimeConfig};
use fsmhost::upgrade;
use fsmhost_tests::{bundled, entry, fixture};
use serde::Serialize;
use std::sync::Arc;

const OBJECTS: u64 = 10_000;

/// An Fsm with `base` loaded and `OBJECTS` objects written by `write(i)`.
fn filled(rt: &Runtime, base: (&str, &[u8]), write: impl Fn(u64) -> Entry) -> Fsm {
    let plugin = rt.load(base.0, base.1).expect("base plugin loads");
    let f = Fsm::new(PluginSet::new(vec![plugin]).expect("set"));
    for i in 1..=OBJECTS {
        f.apply(i, &write(i)).expect("write");
    }
    f
}

/// The rebuild an install of `new` does on `f` (without switching to it).
fn rebuild(f: &Fsm, new: &Arc<LoadedPlugin>) -> u64 {
    let current = f.plugins();
    let store = f.store();
    let plan = upgrade::plan(&current, &store, new).expect("plan");
    let next = upgrade::replaced(&current, new.clone()).expect("set");
    let rebuilt = upgrade::rebuild_store(&store, &next, &plan, new).expect("rebuild");
    plan.counted(&rebuilt).tables[0].objects_after.unwrap_or(0)
}

#[derive(Serialize)]
struct Put {
    id: String,
    text: String,
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new(RuntimeConfig::default()).expect("engine");
    let kv = filled(&rt, ("bundled:kv", bundled("kv")), |i| {
        entry(
            "kv",
            "set",
            &fsmhost_plugin_kv::SetRequest {
                tenancy: Default::default(),
                key: format!("key/{i:08}"),
                value: vec![b'v'; 100],
                flags: i,
            },
        )
    });
    let notes = filled(&rt, ("notes", fixture("notes")), |i| {
        let put = Put {
            id: format!("note-{i:08}"),
            text: format!("Title {i}\n{}", "x".repeat(90)),
        };
        entry("notes", "put", &put)
    });
    let kv_v2 = Arc::new(rt.load("kv-v2", fixture("kv-v2")).expect("kv-v2"));
    let notes_v2 = Arc::new(rt.load("notes-v2", fixture("notes-v2")).expect("notes-v2"));
    assert_eq!(rebuild(&kv, &kv_v2), OBJECTS);
    assert_eq!(rebuild(&notes, &notes_v2), OBJECTS);

    let mut g = c.benchmark_group("install_10k_objects");
    g.sample_size(10);
    g.bench_function("reindex", |b| b.iter(|| rebuild(&kv, &kv_v2)));
    g.bench_function("migrate", |b| b.iter(|| rebuild(&notes, &notes_v2)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
