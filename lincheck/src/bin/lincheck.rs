//! `lincheck [--max-steps N|none] HISTORY.jsonl`: checks a recorded history and prints the
//! report. Exits 0 when every key is linearizable, 1 when a key is not (or is undecided at
//! the step limit), 2 when the arguments or the file are unusable.

use std::fs::File;
use std::io::BufReader;
use std::process::ExitCode;

use fsmhost_lincheck::{DEFAULT_MAX_STEPS, Options, check_with, read_jsonl};

const USAGE: &str = "usage: lincheck [--max-steps N|none] HISTORY.jsonl";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("lincheck: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let mut options = Options {
        max_steps: Some(DEFAULT_MAX_STEPS),
    };
    let mut path = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--max-steps" => {
                let value = args
                    .next()
                    .ok_or_else(|| format!("--max-steps needs a number or `none`\n{USAGE}"))?;
                options.max_steps = match value.as_str() {
                    "none" => None,
                    n => Some(n.parse().map_err(|_| {
                        format!("--max-steps {n:?} is not a number or `none`\n{USAGE}")
                    })?),
                };
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(true);
            }
            _ if path.is_none() && !arg.starts_with('-') => path = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}\n{USAGE}")),
        }
    }
    let path = path.ok_or_else(|| format!("no history file given\n{USAGE}"))?;
    let file = File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
    let events = read_jsonl(BufReader::new(file)).map_err(|e| format!("{path}: {e}"))?;
    let report = check_with(&events, &options);
    print!("{report}");
    Ok(report.is_ok())
}
