//! Memory held by the state store for 1,000,000 kv entries, as a multiple of the raw bytes
//! (key + value). Counts every byte the allocator hands out while the store is built, minus
//! what is freed, so it includes objects, index entries and the persistent maps' nodes.
//!
//! `cargo bench -p fsmhost --bench state_memory`

use fsmhost::plugin::{Runtime, RuntimeConfig};
use fsmhost::state::Store;
use fsmhost_plugin_kv as kv;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: delegates to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    const N: usize = 1_000_000;
    const VALUE: usize = 100;
    let rt = Runtime::new(RuntimeConfig::default()).expect("engine");
    let set = rt.load_bundled().expect("bundled plugins");
    let store = Store::new(set.schema().clone());
    let before = LIVE.load(Ordering::Relaxed);
    let mut raw = 0usize;
    let mut w = store.write(1);
    for i in 0..N {
        let e = kv::Entry {
            key: format!("service/{:04}/config/{:03}", i / 1000, i % 1000),
            value: vec![b'v'; VALUE],
            create_index: 1,
            modify_index: 1,
            ..Default::default()
        };
        raw += e.key.len() + e.value.len();
        let keys = kv::KVS.index_keys(&e);
        let mut obj = Vec::new();
        ciborium::into_writer(&e, &mut obj).expect("encode");
        w.tables_mut()
            .insert("kv", 1, "kvs", &obj, &keys)
            .expect("insert");
    }
    w.commit();
    let held = (LIVE.load(Ordering::Relaxed) - before) as f64;
    let read = store.read();
    println!("entries: {N}, value bytes: {VALUE}");
    println!(
        "raw key+value bytes: {raw} ({:.1} MiB)",
        raw as f64 / 1048576.0
    );
    println!(
        "store's own count (objects + index keys): {} bytes",
        read.bytes("kvs").expect("kvs")
    );
    println!(
        "allocated and held: {held:.0} bytes ({:.1} MiB)",
        held / 1048576.0
    );
    println!("multiple of raw: {:.2}x", held / raw as f64);
}
