//! The `fsmhost` binary.

use clap::Parser;

fn main() {
    let cli = fsmhost::cli::Cli::parse();
    std::process::exit(fsmhost::cli::run(cli));
}
