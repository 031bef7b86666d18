//! `nemesis`: the Jepsen-style suite for any duration (`tests/nemesis.sh` builds and runs
//! it): 3 servers (each in its own network namespace when run as root), 12 clients on 8
//! keys through `/v1/kv`, faults one at a time; writes `history.jsonl`, `ops.jsonl`,
//! `report.txt`, `failover.md` and the servers' logs to `--out`, prints the report, and
//! exits 1 when the run found a problem (2 when it could not run).

use clap::Parser;
use fsmhost_tests::nemesis::faults::FaultKind;
use fsmhost_tests::nemesis::{Options, ReadMode};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Nemesis run against a 3-server fsmhost cluster, checked for linearizability")]
struct Cli {
    /// How long the clients run, in seconds.
    #[arg(long, default_value_t = 90)]
    duration: u64,
    /// How reads ask for consistency: consistent, default or mixed.
    #[arg(long, default_value = "consistent")]
    reads: ReadMode,
    /// The faults, comma-separated, injected in this order and cycling: kill-leader,
    /// pause-leader, partition-leader, kill-follower, partition-follower, kill-all, or all.
    #[arg(long, default_value = "all")]
    faults: String,
    /// Where the outputs go.
    #[arg(long)]
    out: PathBuf,
    /// The seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The fsmhost binary (default: `fsmhost-node` beside this program).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Client threads.
    #[arg(long, default_value_t = 12)]
    clients: usize,
    /// Keys.
    #[arg(long, default_value_t = 8)]
    keys: usize,
    /// A request's timeout in milliseconds (then its outcome is unknown).
    #[arg(long, default_value_t = 1500)]
    timeout_ms: u64,
    /// The pause between a client's operations, in milliseconds.
    #[arg(long, default_value_t = 10)]
    think_ms: u64,
    /// The quiet time after each fault, in seconds.
    #[arg(long, default_value_t = 5)]
    quiet: u64,
}

fn main() {
    let cli = Cli::parse();
    let bin = cli.bin.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("fsmhost-node")))
            .unwrap_or_else(|| PathBuf::from("fsmhost-node"))
    });
    let mut o = Options::new(bin, &cli.out, Duration::from_secs(cli.duration));
    o.reads = cli.reads;
    o.faults = match FaultKind::parse_list(&cli.faults) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("nemesis: --faults: {e}");
            std::process::exit(2);
        }
    };
    o.seed = cli.seed;
    o.clients = cli.clients.max(1);
    o.keys = cli.keys.max(1);
    o.timeout = Duration::from_millis(cli.timeout_ms);
    o.think = Duration::from_millis(cli.think_ms);
    o.quiet = Duration::from_secs(cli.quiet);
    match fsmhost_tests::nemesis::run(&o) {
        Ok(outcome) => {
            print!("{}", outcome.report());
            println!("outputs in {}", cli.out.display());
            std::process::exit(if outcome.passed() { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("nemesis: {e}");
            std::process::exit(2);
        }
    }
}
