//! The `fsmhost` binary.

use clap::Parser;

fn main() {
    let cli = fsmhost::cli::Cli::parse_from(fsmhost::cli::normalize_args(std::env::args_os()));
    std::process::exit(fsmhost::cli::run(cli));
}
