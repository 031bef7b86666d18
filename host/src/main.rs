//! The `fsmhost` binary.

fn main() {
    std::process::exit(fsmhost::cli::main());
}
