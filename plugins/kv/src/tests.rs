//! The kv plugin's unit tests, run natively through the guest SDK's `Harness`.

use super::*;
use fsmhost_guest::{AnyTable, Command, Ctx, Error, Harness, Txn};

fn h() -> Harness {
    Harness::new(plugin()).expect("kv schema is valid")
}

#[test]
fn layout_1_entries_and_tombstones_migrate_to_compact_records() {
    let e = Entry {
        key: "a/b".into(),
        value: b"hello".to_vec(),
        flags: 3,
        create_index: 4,
        modify_index: 5,
        lock_index: 1,
        session: Some("s".into()),
        tenancy: Default::default(),
    };
    // Layout 1 stored the entry with its field names: serde's own form.
    let layout_1 = fsmhost_guest::to_cbor(&e).expect("encode");
    let out = plugin().migrate("kvs", 1, &layout_1).expect("migrate");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].table, "kvs");
    assert_eq!(out[0].object, KVS.encode(&e).expect("encode"));
    assert_eq!(out[0].object[0], 0x87, "an array of the seven fields");
    assert_eq!(
        layout_1.len() - out[0].object.len(),
        61,
        "the names are gone"
    );
    let mut store = fsmhost_guest::MemStore::new(&[KVS.schema()]).expect("schema");
    store
        .insert("kvs", &out[0].object, KVS.index_keys(&e))
        .expect("insert");
    let at = key_in(&Default::default(), "a/b");
    assert_eq!(KVS_ID.get(&store, &at).expect("get"), Some(e));

    let t = Tombstone {
        key: "a/".into(),
        index: 9,
        tenancy: Default::default(),
    };
    let layout_1 = fsmhost_guest::to_cbor(&t).expect("encode");
    let out = plugin()
        .migrate("tombstones", 1, &layout_1)
        .expect("migrate");
    assert_eq!(out[0].object, TOMBSTONES.encode(&t).expect("encode"));
}

fn set_req(key: &str, value: &str) -> SetRequest {
    SetRequest {
        tenancy: Default::default(),
        key: key.into(),
        value: value.into(),
        flags: 0,
    }
}

fn get_entry(h: &Harness, key: &str) -> Option<Entry> {
    h.ask(
        &GET,
        &GetArgs {
            tenancy: Default::default(),
            key: key.into(),
        },
    )
    .unwrap()
}

#[test]
fn set_keeps_create_index_and_bumps_modify_index() {
    let mut h = h();
    assert!(h.run(&SET, &set_req("a", "1")).unwrap());
    assert!(h.run(&SET, &set_req("a", "2")).unwrap());
    let e = get_entry(&h, "a").unwrap();
    assert_eq!(
        (e.create_index, e.modify_index, e.value),
        (1, 2, b"2".to_vec())
    );
}

#[test]
fn set_that_changes_nothing_skips_the_write() {
    let mut h = h();
    h.run(&SET, &set_req("a", "1")).unwrap();
    h.run(&SET, &set_req("a", "1")).unwrap();
    assert_eq!(get_entry(&h, "a").unwrap().modify_index, 1);
}

#[test]
fn cas_zero_creates_only() {
    let mut h = h();
    let req = |index| CasRequest {
        tenancy: Default::default(),
        key: "a".into(),
        value: b"x".to_vec(),
        flags: 0,
        index,
    };
    assert!(h.run(&CAS, &req(0)).unwrap());
    assert!(!h.run(&CAS, &req(0)).unwrap());
    assert!(!h.run(&CAS, &req(7)).unwrap(), "stale index");
    assert!(h.run(&CAS, &req(1)).unwrap());
}

#[test]
fn delete_cas_rules() {
    let mut h = h();
    h.run(&SET, &set_req("a", "1")).unwrap();
    let req = |index| DeleteCasRequest {
        tenancy: Default::default(),
        key: "a".into(),
        index,
    };
    assert!(!h.run(&DELETE_CAS, &req(0)).unwrap(), "0 never deletes");
    assert!(!h.run(&DELETE_CAS, &req(9)).unwrap());
    assert!(get_entry(&h, "a").is_some());
    assert!(h.run(&DELETE_CAS, &req(1)).unwrap());
    assert!(get_entry(&h, "a").is_none());
    assert!(h.run(&DELETE_CAS, &req(1)).unwrap(), "gone is true");
}

#[test]
fn tombstones_keep_the_prefix_index_from_going_backwards() {
    let mut h = h();
    h.run(&SET, &set_req("app/a", "1")).unwrap(); // 1
    h.run(&SET, &set_req("app/b", "2")).unwrap(); // 2
    h.run(
        &DELETE,
        &DeleteRequest {
            tenancy: Default::default(),
            key: "app/b".into(),
        },
    )
    .unwrap(); // 3
    let l: ListResult = h
        .ask(
            &LIST,
            &ListArgs {
                tenancy: Default::default(),
                prefix: "app/".into(),
            },
        )
        .unwrap();
    assert_eq!(l.entries.len(), 1);
    assert_eq!(l.index, 3, "the delete's index, not app/a's");
    let reaped: u64 = h
        .run(
            &REAP_TOMBSTONES,
            &ReapRequest {
                index: 3,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(reaped, 1);
    let l: ListResult = h
        .ask(
            &LIST,
            &ListArgs {
                tenancy: Default::default(),
                prefix: "app/".into(),
            },
        )
        .unwrap();
    // The body's index follows Consul's kvsListTxn, which goes back once the tombstone is
    // reaped (after tombstone_ttl); the index the host answers, the stamps of the tables
    // the query read, does not (gc_tests: a_read_never_answers_a_lower_index_after_a_reap).
    assert_eq!(l.index, 1);
}

#[test]
fn delete_tree_leaves_one_tombstone_for_the_prefix() {
    let mut h = h();
    for k in ["x/1", "x/2", "x/3/4", "y"] {
        h.run(&SET, &set_req(k, k)).unwrap();
    }
    h.run(
        &DELETE_TREE,
        &DeleteTreeRequest {
            tenancy: Default::default(),
            prefix: "x/".into(),
        },
    )
    .unwrap();
    assert_eq!(h.store().len("kvs"), 1);
    assert_eq!(h.store().len("tombstones"), 1);
    let l: ListResult = h
        .ask(
            &LIST,
            &ListArgs {
                tenancy: Default::default(),
                prefix: "x/".into(),
            },
        )
        .unwrap();
    assert_eq!((l.entries.len(), l.index), (0, 5));
    // Deleting everything leaves no tombstone.
    h.run(
        &DELETE_TREE,
        &DeleteTreeRequest {
            tenancy: Default::default(),
            prefix: "".into(),
        },
    )
    .unwrap();
    assert_eq!(h.store().len("kvs"), 0);
    assert_eq!(h.store().len("tombstones"), 1);
}

#[test]
fn keys_with_separator() {
    let mut h = h();
    for k in ["web/a", "web/sub/1", "web/sub/2", "web/z", "db/1"] {
        h.run(&SET, &set_req(k, "v")).unwrap();
    }
    let r: KeysResult = h
        .ask(
            &KEYS,
            &KeysArgs {
                tenancy: Default::default(),
                prefix: "web/".into(),
                separator: Some("/".into()),
            },
        )
        .unwrap();
    assert_eq!(r.keys, vec!["web/a", "web/sub/", "web/z"]);
    assert_eq!(r.index, 4);
}

#[test]
fn list_is_in_key_order_across_scan_batches() {
    let mut h = h();
    let n = fsmhost_guest::SCAN_BATCH as usize * 2 + 7;
    for i in (0..n).rev() {
        h.run(&SET, &set_req(&format!("k/{i:05}"), "v")).unwrap();
    }
    let l: ListResult = h
        .ask(
            &LIST,
            &ListArgs {
                tenancy: Default::default(),
                prefix: "k/".into(),
            },
        )
        .unwrap();
    let keys: Vec<_> = l.entries.iter().map(|e| e.key.clone()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys.len(), n);
    assert_eq!(keys, sorted);
}

#[test]
fn an_index_falls_back_to_the_tables_when_the_prefix_has_nothing() {
    // Consul's kvsListTxn: a prefix with no entry and no tombstone of its own reports the
    // last write to kvs/tombstones, never 0, so a blocking client never goes backwards.
    let mut h = h();
    h.run(&SET, &set_req("x/a/1", "v")).unwrap(); // 1
    let list = |h: &Harness, p: &str| -> u64 {
        h.ask(
            &LIST,
            &ListArgs {
                tenancy: Default::default(),
                prefix: p.into(),
            },
        )
        .unwrap()
        .index
    };
    assert_eq!(list(&h, "x/a/"), 1);
    h.run(
        &DELETE_TREE,
        &DeleteTreeRequest {
            tenancy: Default::default(),
            prefix: "x/".into(),
        },
    )
    .unwrap(); // 2
    assert_eq!(list(&h, "x/a/"), 2);
    h.run(&SET, &set_req("y", "v")).unwrap(); // 3
    h.run(
        &DELETE_TREE,
        &DeleteTreeRequest {
            tenancy: Default::default(),
            prefix: "".into(),
        },
    )
    .unwrap(); // 4
    assert_eq!(list(&h, ""), 4);
    let keys: KeysResult = h
        .ask(
            &KEYS,
            &KeysArgs {
                tenancy: Default::default(),
                prefix: "nothing/".into(),
                separator: None,
            },
        )
        .unwrap();
    assert_eq!(keys.index, 4);
}

#[test]
fn keys_that_the_index_cannot_hold_are_bad_requests() {
    let mut h = h();
    let err = h.run(&SET, &set_req("", "v")).unwrap_err();
    assert_eq!(err.message, "key must not be empty");
    let err = h.run(&SET, &set_req("a\0b", "v")).unwrap_err();
    assert_eq!(err.message, "key \"a\\0b\" contains a NUL byte");
    h.run(&SET, &set_req("a", "v")).unwrap();
    let err = h
        .ask(
            &KEYS,
            &KeysArgs {
                tenancy: Default::default(),
                prefix: "a\0".into(),
                separator: Some("/".into()),
            },
        )
        .unwrap_err();
    assert_eq!(err.kind, fsmhost_guest::ErrorKind::BadRequest);
    assert_eq!(h.store().len("kvs"), 1);
}

#[test]
fn a_panicking_command_leaves_nothing_natively_either() {
    // Harness rolls back on a panic, as a trap does on the host.
    fn boom(tx: &mut dyn Txn, ctx: &Ctx, req: SetRequest) -> Result<bool, Error> {
        set(tx, ctx, req)?;
        panic!("boom");
    }
    static BOOM: Command<SetRequest, bool> = Command::new("boom", boom);
    let mut h = Harness::new(plugin().command(&BOOM)).unwrap();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        h.run(&BOOM, &set_req("a", "1"))
    }));
    assert!(outcome.is_err());
    assert_eq!(h.store().len("kvs"), 0);
    assert_eq!(h.store().table_index("kvs"), Ok(0));
}

#[test]
fn malformed_payload_is_a_bad_request() {
    let mut h = h();
    let payload = fsmhost_guest::to_cbor("not a set request").unwrap();
    let err = h
        .apply_raw(Ctx::default(), SET.name(), &payload)
        .unwrap_err();
    assert_eq!(err.kind, fsmhost_guest::ErrorKind::BadRequest);
    assert!(err.message.contains("payload of command set"), "{err}");
}
