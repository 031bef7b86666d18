//! The fsmhost binary as the cluster tests run it: exactly `fsmhost`'s `main`.

use clap::Parser;

fn main() {
    let cli = fsmhost::cli::Cli::parse();
    std::process::exit(fsmhost::cli::run(cli));
}
