//! Writes plugin components to a directory, so an operator can load or install them:
//! the bundled plugins (`kv`, `catalog`) and every other build the workspace makes, among
//! them the enterprise edition (`kv-enterprise`, `catalog-enterprise`) and the next
//! releases the upgrade tests install (`kv-v2`, `notes-v2`).
//!
//! ```sh
//! cargo run -p fsmhost-tests --bin components -- plugins/ kv-enterprise catalog-enterprise
//! cargo run -p fsmhost-tests --bin components -- --list
//! ```

use std::path::Path;
use std::process::ExitCode;

fn every() -> Vec<(&'static str, &'static [u8])> {
    let mut all: Vec<(&str, &[u8])> = fsmhost::plugin::bundled().to_vec();
    all.extend(fsmhost_tests::FIXTURES.iter().copied());
    all
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all = every();
    let Some(dir) = args.first() else {
        eprintln!("usage: components DIR [NAME...]   (every component when no NAME)");
        eprintln!("       components --list");
        return ExitCode::from(2);
    };
    if dir == "--list" {
        for (name, bytes) in &all {
            println!("{name} ({} bytes)", bytes.len());
        }
        return ExitCode::SUCCESS;
    }
    let wanted: Vec<&str> = if args.len() > 1 {
        args[1..].iter().map(String::as_str).collect()
    } else {
        all.iter().map(|(n, _)| *n).collect()
    };
    if let Some(unknown) = wanted.iter().find(|w| !all.iter().any(|(n, _)| n == *w)) {
        let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
        eprintln!(
            "no component named {unknown}; there are: {}",
            names.join(", ")
        );
        return ExitCode::FAILURE;
    }
    let dir = Path::new(dir);
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("creating {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for (name, bytes) in all.iter().filter(|(n, _)| wanted.contains(n)) {
        let path = dir.join(format!("{name}.wasm"));
        if let Err(e) = std::fs::write(&path, bytes) {
            eprintln!("writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("{}", path.display());
    }
    ExitCode::SUCCESS
}
