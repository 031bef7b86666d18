//! What the benchmarks share: a counting allocator (bytes held and the peak) and a store
//! filled with kv entries laid out exactly as the kv plugin lays them out (its own indexer
//! functions, natively, so that filling 1,000,000 entries takes seconds).

#![allow(dead_code)] // each bench uses part of it

use fsmhost::state::Store;
use fsmhost_plugin_kv as kv;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// The system allocator, counting the bytes it hands out and the peak.
pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grew(by: isize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: delegates to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Bytes allocated and not yet freed.
pub fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Resets the peak to the current live count; returns it.
pub fn reset_peak() -> isize {
    let now = live();
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// The highest live count since the last [`reset_peak`].
pub fn peak() -> isize {
    PEAK.load(Ordering::Relaxed)
}

/// Inserts `n` kv entries with `value` pseudo-random bytes each into `store` in one transaction at index
/// 1; returns the raw key + value bytes.
pub fn fill_kv(store: &Store, n: usize, value: usize) -> usize {
    let mut raw = 0usize;
    let mut w = store.write(1);
    // Values are pseudo-random bytes (xorshift), so that compressed sizes are honest.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut bytes = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    for i in 0..n {
        let e = kv::Entry {
            key: format!("service/{:04}/config/{:03}", i / 1000, i % 1000),
            value: bytes(value),
            create_index: 1,
            modify_index: 1,
            ..Default::default()
        };
        raw += e.key.len() + e.value.len();
        let keys = kv::KVS.index_keys(&e);
        let obj = kv::KVS.encode(&e).expect("encode");
        w.tables_mut()
            .insert("kv", 1, "kvs", &obj, &keys)
            .expect("insert");
    }
    w.commit();
    raw
}
