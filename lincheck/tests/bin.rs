//! The `lincheck` binary's exit codes on a valid and a doctored history file.

use std::process::Command;

use fsmhost_lincheck::{Call, Event, Ret, write_jsonl};

fn run(name: &str, events: &[Event]) -> (Option<i32>, String) {
    let path = std::env::temp_dir().join(format!("lincheck-{}-{name}.jsonl", std::process::id()));
    write_jsonl(std::fs::File::create(&path).unwrap(), events).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lincheck"))
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn exit_codes() {
    let write = Event {
        client: 1,
        key: "k".into(),
        call: Call::Write {
            value: Some("a".into()),
        },
        ret: Ret::Written,
        invoked: 0,
        completed: Some(10),
    };
    let read = |value: Option<&str>| Event {
        client: 2,
        key: "k".into(),
        call: Call::Read,
        ret: Ret::Read {
            value: value.map(str::to_string),
        },
        invoked: 20,
        completed: Some(30),
    };
    let (code, out) = run("ok", &[write.clone(), read(Some("a"))]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run("stale", &[write, read(None)]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("key \"k\": NOT LINEARIZABLE"), "{out}");
    let missing = Command::new(env!("CARGO_BIN_EXE_lincheck"))
        .arg("/nonexistent/history.jsonl")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}
