//! The durable raft log: one `append` of a single ~300-byte entry through the redb log store
//! (committed with `Durability::Immediate`, acknowledged by the flush callback), next to the
//! floor under any durable write: a 256-byte append plus `fdatasync` on the same disk,
//! measured in the same run.
//!
//! `cargo bench -p fsmhost --bench raft_log`

use criterion::{Criterion, criterion_group, criterion_main};
use fsmhost::fsm;
use fsmhost::raft::log_store::{LogStore, OpenMode};
use fsmhost::raft::{LogEntry, Request};
use openraft::storage::RaftLogStorageExt;
use std::io::Write;

fn entry(index: u64) -> LogEntry {
    openraft::Entry {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: openraft::EntryPayload::Normal(Request::Plugin(fsm::Entry {
            version: None,
            plugin: "kv".into(),
            command: "set".into(),
            payload: vec![7; 256],
            timestamp_ms: 0,
        })),
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/tmp".into()))
        .expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut log = LogStore::open(&dir.path().join("raft.db"), 1, OpenMode::Create).expect("log");
    let mut g = c.benchmark_group("durable_append");
    let mut next = 1;
    g.bench_function("redb log store append (1 entry)", |b| {
        b.iter(|| {
            rt.block_on(log.blocking_append([entry(next)]))
                .expect("append");
            next += 1;
        })
    });
    let mut f = std::fs::File::create(dir.path().join("fsync")).expect("file");
    let block = [b'x'; 256];
    g.bench_function("write 256 B + fdatasync", |b| {
        b.iter(|| {
            f.write_all(&block).expect("write");
            f.sync_data().expect("fdatasync");
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
