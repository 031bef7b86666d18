//! The `fsmhost` binary.

/// mimalloc instead of the system allocator: a server allocates and frees small buffers
/// on every request, log entry and command, across threads (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(fsmhost::cli::main());
}
