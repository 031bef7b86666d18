//! Migrations through the log on a live 3-server cluster, with the `notes` fixture plugin:
//! 0.1.0 (installed into the running set as a new plugin) stores notes at layout 1 and
//! drafts in a table of their own; 0.2.0 moves notes to layout 2 and drops `drafts`, with a
//! `migrate` export for both. An install that changes a layout without a migration is
//! refused, and so is one whose migration writes into another plugin's table; a migration that fails for one object refuses the whole install, dry run or
//! not, before the log; after the fix, the dry run reports per table what the migration
//! does, and the install switches every server to the migrated state (same hash).

use crate::support::{BIN, cli, write_file};
use fsmhost_tests::client::Client;
use fsmhost_tests::cluster::Cluster;
use fsmhost_tests::fixture;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// `notes`' version on server `s` (none when it is not loaded).
fn notes_version(s: &Client) -> Option<String> {
    let r = s.get("/v1/plugins");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
        .as_array()?
        .iter()
        .find(|p| p["Name"] == "notes")
        .and_then(|p| p["Version"].as_str().map(str::to_string))
}

/// `fsmhost plugin install` (`--dry-run` or not) of `file` through `addr`: the exit code,
/// stdout and stderr.
fn install(file: &str, addr: &str, dry_run: bool) -> (i32, String, String) {
    let mut args = vec!["plugin", "install", file, "--http-addr", addr];
    if dry_run {
        args.push("--dry-run");
    }
    cli(&args)
}

#[test]
fn notes_migrate_to_a_new_layout_on_every_server() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let file = |name: &str| write_file(tmp.path(), &format!("{name}.wasm"), fixture(name));
    let (v1, v2) = (file("notes"), file("notes-v2"));
    let (unmigrated, hostile) = (file("notes-unmigrated"), file("notes-hostile"));

    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader(WAIT);
    let f = c.client((leader + 1) % 3);
    let faddr = f.addr();

    // 0.1.0 joins the running set (a plugin new to it), and gets some notes and a draft.
    let (code, out, err) = install(&v1, faddr, false);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Installed plugin notes none -> 0.1.0"),
        "{out}"
    );
    for (command, id, text) in [
        ("put", "a", "First\nbody of a"),
        ("put", "b", ""),
        ("put-draft", "d1", "Idea\nmore"),
    ] {
        let r = f.apply("notes", command, &json!({"id": id, "text": text}));
        assert_eq!((r.status, r.json()), (200, json!(true)), "{command} {id}");
    }

    // A release that changes the layout of `notes` without a migration is refused.
    let (code, out, err) = install(&unmigrated, faddr, false);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("409"), "{err}");
    assert!(
        err.contains("changes the layout of table notes (layout 1) but declares no migration"),
        "{err}"
    );

    // A migration that returns an object for another plugin's table is refused.
    let (code, out, err) = install(&hostile, faddr, true);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains(
            "migrate returned an object for table \"kvs\", which is not a table of plugin notes"
        ),
        "{err}"
    );

    // The migration refuses note b (no title): the dry run and the install both fail,
    // naming the table and the note, and nothing changes.
    for dry_run in [true, false] {
        let (code, out, err) = install(&v2, faddr, dry_run);
        assert_ne!(code, 0, "{out}");
        assert!(err.contains("409"), "{err}");
        assert!(
            err.contains("rebuilding table notes")
                && err.contains("note b: the first line (the title) is empty"),
            "{err}"
        );
    }
    for i in 0..3 {
        assert_eq!(notes_version(&c.client(i)).as_deref(), Some("0.1.0"));
    }

    // Fixed, the dry run says what the migration does, per table.
    let r = f.apply("notes", "delete", &json!({"id": "b"}));
    assert_eq!((r.status, r.json()), (200, json!(true)));
    let (code, out, err) = install(&v2, faddr, true);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Dry run: installing plugin notes 0.1.0 -> 0.2.0"),
        "{out}"
    );
    assert!(
        out.contains("table notes: migrated (1 objects -> 2; layout 1 -> 2; indexes added: title)"),
        "{out}"
    );
    assert!(
        out.contains("table drafts: removed (1 objects -> 0; indexes removed: id)"),
        "{out}"
    );
    assert_eq!(notes_version(&f).as_deref(), Some("0.1.0"));

    // The install, through a follower, with the third server down: the component is
    // copied to the live one before the entry; the third fetches it from a peer when it
    // comes back and applies the entry. Every server migrates at the same entry.
    let down = (leader + 2) % 3;
    c.kill(down);
    let (code, out, err) = install(&v2, faddr, false);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Installed plugin notes 0.1.0 -> 0.2.0"),
        "{out}"
    );
    assert!(out.contains("copied to 1 of 2 other servers"), "{out}");
    c.restart(down);
    c.wait_converged_past(1, WAIT);
    let expected = json!([
        {"id": "a", "title": "First", "body": "body of a", "draft": false},
        {"id": "draft-d1", "title": "Idea", "body": "more", "draft": true},
    ]);
    for i in 0..3 {
        let s = c.client(i);
        assert_eq!(notes_version(&s).as_deref(), Some("0.2.0"), "server {i}");
        let all = s.query("notes", "all", &Value::Null, "?stale");
        assert_eq!(
            (all.status, all.json()),
            (200, expected.clone()),
            "server {i}"
        );
    }

    // 0.2.0's own rules apply to new writes; drafts are gone with their table.
    let r = f.apply("notes", "put", &json!({"id": "c", "text": "C"}));
    assert_eq!(r.status, 200);
    let r = f.apply("notes", "put", &json!({"id": "e", "text": ""}));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = f.apply("notes", "put-draft", &json!({"id": "d2", "text": "x"}));
    assert_eq!(r.status, 404, "{}", r.text());
    c.wait_converged_past(1, WAIT);
}
