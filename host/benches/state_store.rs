//! The state store and the FSM: point gets, prefix scans and snapshots in process, and kv
//! set through wasm into the store with 100-byte values.
//!
//! `cargo bench -p fsmhost --bench state_store`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fsmhost::fsm::{Entry, Fsm};
use fsmhost::plugin::{Runtime, RuntimeConfig};
use fsmhost::state::{KeyRange, Store};
use fsmhost_plugin_kv as kv;
use std::hint::black_box;

fn cbor<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("encode");
    out
}

fn key(i: usize) -> String {
    format!("service/{:04}/config/{:03}", i / 1000, i % 1000)
}

/// A kv store of `n` entries with 100-byte values, built as kv's own code builds them.
fn kv_store(n: usize) -> Store {
    let rt = Runtime::new(RuntimeConfig::default()).expect("engine");
    let set = rt.load_bundled().expect("bundled plugins");
    let store = Store::new(set.schema().clone());
    let mut w = store.write(1);
    for i in 0..n {
        let e = kv::Entry {
            key: key(i),
            value: vec![b'v'; 100],
            create_index: 1,
            modify_index: 1,
            ..Default::default()
        };
        let keys = kv::KVS.index_keys(&e);
        w.tables_mut()
            .insert("kv", 1, "kvs", &kv::KVS.encode(&e).expect("encode"), &keys)
            .expect("insert");
    }
    w.commit();
    store
}

fn bench(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let big = kv_store(N);
    let small = kv_store(10);
    let read = big.read();
    let ids: Vec<Vec<u8>> = (0..N)
        .step_by(7)
        .map(|i| kv::KVS_ID.key(&kv::key_in(&Default::default(), &key(i))))
        .collect();

    let mut g = c.benchmark_group("state");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("point_get_1M", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            black_box(read.get("kvs", "id", &ids[i]).expect("get"))
        })
    });
    // Readers never block one another: two threads, each on its own snapshot, share the
    // gets (the machine has two cores); the time is wall time for all of them.
    g.bench_function("point_get_1M_2_readers", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            std::thread::scope(|s| {
                for t in 0..2 {
                    let (read, ids) = (big.read(), &ids);
                    s.spawn(move || {
                        let mut i = t * ids.len() / 2;
                        for _ in 0..iters / 2 {
                            i = (i + 1) % ids.len();
                            black_box(read.get("kvs", "id", &ids[i]).expect("get"));
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    // 1,000 rows under one prefix, fetched in the guest SDK's batch size.
    let prefix = KeyRange::Prefix(b"service/0500/".to_vec());
    g.throughput(Throughput::Elements(1000));
    g.bench_function("prefix_scan_1000_rows", |b| {
        b.iter(|| {
            let mut cursor: Option<Vec<u8>> = None;
            let mut rows = 0;
            loop {
                let batch = read
                    .scan("kvs", "id", &prefix, cursor.as_deref(), 256)
                    .expect("scan");
                rows += batch.objects.len();
                match batch.cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(rows, 1000);
            black_box(rows)
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("snapshot_10_keys", |b| b.iter(|| black_box(small.read())));
    g.bench_function("snapshot_1M_keys", |b| b.iter(|| black_box(big.read())));
    g.finish();

    let rt = Runtime::new(RuntimeConfig::default()).expect("engine");
    let fsm = Fsm::new(rt.load_bundled().expect("bundled plugins"));
    let entries: Vec<Entry> = (0..10_000)
        .map(|i| Entry {
            version: None,
            plugin: "kv".into(),
            command: "set".into(),
            payload: cbor(&kv::SetRequest {
                tenancy: Default::default(),
                key: key(i % 1000),
                value: format!("{i:0100}").into_bytes(),
                flags: 0,
            }),
            timestamp_ms: 0,
        })
        .collect();
    let mut index = 0u64;
    let mut g = c.benchmark_group("fsm");
    g.throughput(Throughput::Elements(1));
    g.bench_function("kv_set_100B_through_wasm", |b| {
        b.iter(|| {
            index += 1;
            black_box(
                fsm.apply(index, &entries[index as usize % entries.len()])
                    .expect("set"),
            )
        })
    });
    g.finish();

    // The same commands in log entries of `n` commands each, as the leader batches
    // concurrent writes: one write transaction and one instance per entry.
    let mut g = c.benchmark_group("fsm_batched");
    for n in [16u64, 64, 512] {
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("kv_set_100B_through_wasm_{n}_per_entry"), |b| {
            b.iter(|| {
                fsm.apply_entry(|txn| {
                    for _ in 0..n {
                        index += 1;
                        let entry = &entries[index as usize % entries.len()];
                        black_box(txn.apply(index, entry).expect("set"));
                    }
                    Ok::<_, std::convert::Infallible>(())
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
