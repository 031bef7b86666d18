//! The fsmhost binary as the cluster tests run it: exactly `fsmhost`'s `main`.

fn main() {
    std::process::exit(fsmhost::cli::main());
}
