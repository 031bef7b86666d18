//! Contract 0.5.0 end to end, through real components: declared reads of another plugin's
//! table, and messages that change another plugin's tables in the same transaction
//! (the `messenger` fixture and the `notes` fixture). Sessions and kv locks build on this.

use crate::{cached_runtime, kv_and};
use fsmhost::fsm::{Entry, Fsm, FsmError};
use fsmhost::plugin::{CallError, Limits, PluginSet};
use fsmhost_tests::{cbor, decode, fixture};
use serde::Serialize;

fn messenger(command: &str, payload: &impl Serialize) -> Entry {
    fsmhost_tests::entry("messenger", command, payload)
}

#[derive(Serialize)]
struct Note<'a> {
    id: &'a str,
    text: &'a str,
}

fn count(fsm: &Fsm, table: &str) -> usize {
    fsm.store().read().len(table).expect("a table")
}

fn notes_and_messenger() -> Fsm {
    Fsm::new(kv_and(
        &cached_runtime(Limits::default()),
        &["notes", "messenger"],
    ))
}

#[test]
fn a_message_writes_the_receivers_table_in_the_same_entry() {
    let fsm = notes_and_messenger();
    let out = fsm
        .apply(
            1,
            &messenger(
                "put",
                &Note {
                    id: "a",
                    text: "hello",
                },
            ),
        )
        .expect("applied");
    assert!(decode::<bool>(&out));
    assert_eq!((count(&fsm, "sent"), count(&fsm, "notes")), (1, 1));
    // Both tables carry the command's index.
    let read = fsm.store().read();
    assert_eq!(read.table_stamp("sent").unwrap(), 1);
    assert_eq!(read.table_stamp("notes").unwrap(), 1);
    // The declared read sees it.
    let q = fsm.query("messenger", "count-notes", &cbor(&())).unwrap();
    assert_eq!(decode::<u64>(&q.bytes), 1);
    assert!(q.tables.contains("notes"));
}

#[test]
fn a_failing_message_fails_the_whole_command() {
    let fsm = notes_and_messenger();
    let hash = fsm.state_hash();
    let err = fsm
        .apply(1, &messenger("put-garbled", &Note { id: "a", text: "x" }))
        .unwrap_err();
    // The receiver's refusal is the command's; the sender's own write is gone too.
    assert!(
        matches!(&err, FsmError::Call(CallError::Plugin { plugin, .. }) if plugin == "notes"),
        "{err}"
    );
    assert_eq!((count(&fsm, "sent"), count(&fsm, "notes")), (0, 0));
    assert_eq!(fsm.state_hash(), hash);
    assert_eq!(fsm.last_applied(), 1, "applied as its error");
}

#[test]
fn undeclared_reads_and_messages_are_refused_and_a_missing_receiver_is_skipped() {
    let fsm = notes_and_messenger();
    let err = fsm
        .apply(1, &messenger("put-draft", &Note { id: "a", text: "x" }))
        .unwrap_err();
    assert!(err.to_string().contains("not declared"), "{err}");
    assert!(err.to_string().contains("notes/put-draft"), "{err}");
    assert_eq!(count(&fsm, "drafts"), 0);

    let err = fsm
        .query("messenger", "count-drafts", &cbor(&()))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("reads table drafts of plugin notes without declaring it"),
        "{err}"
    );

    // No plugin `ghost` in the set: the message is dropped, the command stands.
    let out = fsm.apply(2, &messenger("to-ghost", &())).expect("applied");
    assert!(decode::<bool>(&out));
}

#[test]
fn a_flood_of_messages_fails_the_same_way_everywhere() {
    let fsm = notes_and_messenger();
    let err = fsm.apply(1, &messenger("flood", &())).unwrap_err();
    assert!(
        err.to_string().contains("sent more than 4096 messages"),
        "{err}"
    );
    assert_eq!(count(&fsm, "notes"), 0);
}

#[test]
fn a_set_where_a_read_tables_layout_differs_is_refused() {
    let rt = cached_runtime(Limits::default());
    let plugins = vec![
        rt.load("notes-v2", fixture("notes-v2")).expect("loads"),
        rt.load("messenger", fixture("messenger")).expect("loads"),
    ];
    let err = PluginSet::new(plugins).err().expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("reads table notes at layout 1") && text.contains("stores it at layout 2"),
        "{text}"
    );
}
