//! Memory held by the state store for 1,000,000 kv entries, as a multiple of the raw bytes
//! (key + value). Counts every byte the allocator hands out while the store is built, minus
//! what is freed, so it includes objects, index entries and the persistent maps' nodes.
//!
//! `cargo bench -p fsmhost --bench state_memory`

use fsmhost::plugin::{Runtime, RuntimeConfig};
use fsmhost::state::Store;

mod support;

#[global_allocator]
static ALLOC: support::Counting = support::Counting;

fn main() {
    const N: usize = 1_000_000;
    const VALUE: usize = 100;
    let rt = Runtime::new(RuntimeConfig::default()).expect("engine");
    let set = rt.load_bundled().expect("bundled plugins");
    let store = Store::new(set.schema().clone());
    let before = support::live();
    let raw = support::fill_kv(&store, N, VALUE);
    let held = (support::live() - before) as f64;
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
