//! Whole-store tests: a property test against a BTreeMap model, readers racing a writer, and
//! watches; the SDK's `MemStore` checked against this store with the same operations is in
//! `memstore`, the unit tests of single operations in `unit`.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn ix(name: &str, unique: bool, multi: bool, allow_missing: bool) -> IndexSchema {
    IndexSchema {
        name: name.into(),
        unique,
        multi,
        allow_missing,
        prefix: true,
    }
}

fn table(name: &str) -> (String, TableSchema) {
    let table = TableSchema {
        name: name.into(),
        indexes: vec![
            ix("id", true, false, false),
            ix("email", true, false, true),
            ix("tag", false, true, true),
        ],
        layout: 1,
    };
    ("p".into(), table)
}

fn store(tables: &[&str]) -> Store {
    Store::new(Schema::new(tables.iter().map(|t| table(t)).collect()).expect("valid schema"))
}

/// An object of the test table, as the model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Obj {
    email: Option<String>,
    tags: BTreeSet<String>,
}

fn encode(id: &str, o: &Obj) -> Vec<u8> {
    let tags: Vec<&str> = o.tags.iter().map(String::as_str).collect();
    format!(
        "{id}|{}|{}",
        o.email.as_deref().unwrap_or("-"),
        tags.join(",")
    )
    .into_bytes()
}

fn keys_of(id: &str, o: &Obj) -> Vec<IndexKeys> {
    vec![
        IndexKeys {
            index: "id".into(),
            keys: vec![id.as_bytes().to_vec()],
        },
        IndexKeys {
            index: "email".into(),
            keys: o.email.iter().map(|e| e.as_bytes().to_vec()).collect(),
        },
        IndexKeys {
            index: "tag".into(),
            keys: o.tags.iter().map(|t| t.as_bytes().to_vec()).collect(),
        },
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Insert(String, Obj),
    Delete(String),
    DeletePrefix(String),
}

#[derive(Debug, Clone)]
struct Txn {
    ops: Vec<Op>,
    commit: bool,
}

fn op() -> impl Strategy<Value = Op> {
    let id = prop::sample::select(vec!["a", "ab", "abc", "b", "ba", "c", "d", "e"])
        .prop_map(String::from);
    let email =
        prop::option::of(prop::sample::select(vec!["m1", "m2", "m3"]).prop_map(String::from));
    let tags = prop::collection::btree_set(
        prop::sample::select(vec!["x", "y", "z"]).prop_map(String::from),
        0..3,
    );
    prop_oneof![
        4 => (id.clone(), email, tags).prop_map(|(id, email, tags)| Op::Insert(id, Obj { email, tags })),
        2 => id.clone().prop_map(Op::Delete),
        1 => prop::sample::select(vec!["a", "b", "", "z"]).prop_map(|p| Op::DeletePrefix(p.to_string())),
    ]
}

fn txn() -> impl Strategy<Value = Txn> {
    (prop::collection::vec(op(), 1..5), prop::bool::weighted(0.8))
        .prop_map(|(ops, commit)| Txn { ops, commit })
}

/// Applies `ops` to the model; `Err` where the store must refuse (a unique violation).
fn model_apply(model: &mut BTreeMap<String, Obj>, ops: &[Op]) -> Result<(), ()> {
    for op in ops {
        match op {
            Op::Insert(id, o) => {
                let taken = o.email.is_some()
                    && model
                        .iter()
                        .any(|(other, x)| other != id && x.email == o.email);
                if taken {
                    return Err(());
                }
                model.insert(id.clone(), o.clone());
            }
            Op::Delete(id) => {
                model.remove(id);
            }
            Op::DeletePrefix(p) => model.retain(|id, _| !id.starts_with(p.as_str())),
        }
    }
    Ok(())
}

fn store_apply(t: &mut Tables, index: u64, ops: &[Op]) -> Result<(), StateError> {
    for op in ops {
        match op {
            Op::Insert(id, o) => {
                t.insert("p", index, "t", &encode(id, o), &keys_of(id, o))?;
            }
            Op::Delete(id) => {
                t.delete("p", index, "t", id.as_bytes())?;
            }
            Op::DeletePrefix(p) => {
                t.delete_prefix("p", index, "t", "id", p.as_bytes())?;
            }
        }
    }
    Ok(())
}

fn scan_all(t: &Tables, index: &str, range: &KeyRange, limit: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let b = t
            .scan("t", index, range, cursor.as_deref(), limit)
            .expect("scan");
        out.extend(b.objects.iter().map(|o| o.to_vec()));
        match b.cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// Every answer the store gives must be the model's.
fn check(t: &Tables, model: &BTreeMap<String, Obj>) {
    let all: Vec<Vec<u8>> = model.iter().map(|(id, o)| encode(id, o)).collect();
    assert_eq!(scan_all(t, "id", &KeyRange::Prefix(vec![]), 3), all);
    assert_eq!(t.len("t").unwrap(), model.len());
    for id in ["a", "ab", "abc", "b", "ba", "c", "d", "e"] {
        let want = model.get(id).map(|o| encode(id, o));
        assert_eq!(
            t.get("t", "id", id.as_bytes()).unwrap().map(|b| b.to_vec()),
            want
        );
        let prefix: Vec<Vec<u8>> = model
            .iter()
            .filter(|(k, _)| k.starts_with(id))
            .map(|(k, o)| encode(k, o))
            .collect();
        assert_eq!(
            scan_all(t, "id", &KeyRange::Prefix(id.as_bytes().to_vec()), 2),
            prefix
        );
    }
    for email in ["m1", "m2", "m3"] {
        let want = model
            .iter()
            .find(|(_, o)| o.email.as_deref() == Some(email))
            .map(|(id, o)| encode(id, o));
        assert_eq!(
            t.get("t", "email", email.as_bytes())
                .unwrap()
                .map(|b| b.to_vec()),
            want
        );
    }
    for tag in ["x", "y", "z"] {
        let want: Vec<Vec<u8>> = model
            .iter()
            .filter(|(_, o)| o.tags.contains(tag))
            .map(|(id, o)| encode(id, o))
            .collect();
        let exact = KeyRange::Exact(tag.as_bytes().to_vec());
        assert_eq!(scan_all(t, "tag", &exact, 1), want);
        assert_eq!(
            t.first("t", "tag", &exact).unwrap().map(|b| b.to_vec()),
            want.first().cloned()
        );
        assert_eq!(
            t.last("t", "tag", &exact).unwrap().map(|b| b.to_vec()),
            want.last().cloned()
        );
    }
    // A range over the multi index: tags after "x" (y and z), in (tag, id) order.
    let range = KeyRange::Between(
        Bound::Excluded(b"x".to_vec()),
        Bound::Included(b"z".to_vec()),
    );
    let mut want: Vec<(String, Vec<u8>)> = Vec::new();
    for (id, o) in model {
        for tag in o.tags.iter().filter(|t| t.as_str() > "x") {
            want.push((format!("{tag}\0{id}"), encode(id, o)));
        }
    }
    want.sort();
    let want: Vec<Vec<u8>> = want.into_iter().map(|(_, o)| o).collect();
    assert_eq!(scan_all(t, "tag", &range, 2), want);
    assert_eq!(
        t.last("t", "tag", &range).unwrap().map(|b| b.to_vec()),
        want.last().cloned()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random transactions of inserts, deletes and prefix deletes, committed or aborted, give
    /// the answers of a BTreeMap model: a failing operation or an abort leaves no trace.
    #[test]
    fn the_store_matches_a_btreemap_model(txns in prop::collection::vec(txn(), 1..30)) {
        let s = store(&["t"]);
        let mut model: BTreeMap<String, Obj> = BTreeMap::new();
        for (i, txn) in txns.iter().enumerate() {
            let index = i as u64 + 1;
            let mut w = s.write(index);
            let mut next = model.clone();
            let expected = model_apply(&mut next, &txn.ops);
            let got = store_apply(w.tables_mut(), index, &txn.ops);
            prop_assert_eq!(expected.is_err(), got.is_err(), "ops {:?}: {:?}", &txn.ops, got);
            if let Err(StateError::UniqueViolation(m)) = &got {
                prop_assert!(m.starts_with("table t index email key "), "{}", m);
            }
            if got.is_ok() && txn.commit {
                w.commit();
                model = next;
            } else {
                drop(w);
            }
            check(&s.read(), &model);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The commands of one log entry in one transaction, each under a savepoint inside an
    /// outer one: a command that fails or is aborted is rolled back, the others released.
    /// After every command the transaction answers as the model of the kept commands, and
    /// at the end it has the hash and byte count of a store that only ever applied those;
    /// rolling back the outer savepoint returns to the empty store.
    #[test]
    fn savepoints_undo_exactly_the_writes_after_them(
        txns in prop::collection::vec(txn(), 1..20),
        abort_all in any::<bool>(),
    ) {
        let (s, kept) = (store(&["t"]), store(&["t"]));
        let empty = s.read().hash();
        let mut model: BTreeMap<String, Obj> = BTreeMap::new();
        let mut w = s.write(1);
        let outer = w.savepoint();
        for (i, txn) in txns.iter().enumerate() {
            let index = i as u64 + 1;
            w.set_stamp(index);
            let savepoint = w.savepoint();
            let got = store_apply(w.tables_mut(), index, &txn.ops);
            if got.is_ok() && txn.commit {
                w.release(savepoint);
                prop_assert!(model_apply(&mut model, &txn.ops).is_ok());
                let mut k = kept.write(index);
                prop_assert!(store_apply(k.tables_mut(), index, &txn.ops).is_ok());
                k.commit();
            } else {
                w.rollback_to(savepoint);
            }
            check(w.tables(), &model);
        }
        prop_assert_eq!(w.tables().hash(), kept.read().hash());
        prop_assert_eq!(w.tables().bytes("t"), kept.read().bytes("t"));
        if abort_all {
            w.rollback_to(outer);
            model.clear();
            prop_assert_eq!(w.tables().hash(), empty);
            prop_assert_eq!(w.tables().bytes("t").unwrap(), 0);
        } else {
            w.release(outer);
        }
        w.commit();
        check(&s.read(), &model);
    }
}

fn any_range() -> impl Strategy<Value = KeyRange> {
    let key = prop::collection::vec(any::<u8>(), 0..6);
    let bound = prop_oneof![
        Just(Bound::Unbounded),
        key.clone().prop_map(Bound::Included),
        key.clone().prop_map(Bound::Excluded),
    ];
    prop_oneof![
        key.clone().prop_map(KeyRange::Exact),
        key.prop_map(KeyRange::Prefix),
        (bound.clone(), bound).prop_map(|(s, e)| KeyRange::Between(s, e)),
    ]
}

proptest! {
    /// Cursors and ranges come from plugins: arbitrary bytes must give an answer or a
    /// `BadCursor`, never a panic, on every index kind.
    #[test]
    fn arbitrary_cursors_and_ranges_never_panic(
        cursor in prop::option::of(prop::collection::vec(any::<u8>(), 0..24)),
        range in any_range(),
        limit in 0u32..4,
    ) {
        let s = store(&["t"]);
        let mut w = s.write(1);
        for (id, email, tag) in [("a", "m1", "x"), ("ab", "m2", "y"), ("b\0", "m3", "x")] {
            let o = Obj { email: Some(email.into()), tags: BTreeSet::from([tag.to_string()]) };
            w.tables_mut().insert("p", 1, "t", &encode(id, &o), &keys_of(id, &o)).unwrap();
        }
        w.commit();
        let r = s.read();
        for index in ["id", "email", "tag"] {
            match r.scan("t", index, &range, cursor.as_deref(), limit) {
                Ok(_) | Err(StateError::BadCursor(_)) => {}
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
            prop_assert!(r.first("t", index, &range).is_ok());
            prop_assert!(r.last("t", index, &range).is_ok());
        }
    }
}

#[test]
fn readers_only_ever_see_whole_transactions() {
    // Each transaction writes a pair of rows; a reader that saw half a pair, or a table index
    // that does not match the rows it saw, would have seen a partial transaction.
    let s = std::sync::Arc::new(store(&["t"]));
    const TXNS: u64 = 400;
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for n in 1..=TXNS {
                let mut w = s.write(n);
                for half in ["a", "b"] {
                    let id = format!("{n:04}{half}");
                    let o = Obj {
                        email: None,
                        tags: BTreeSet::from([format!("{n:04}")]),
                    };
                    w.tables_mut()
                        .insert("p", n, "t", &encode(&id, &o), &keys_of(&id, &o))
                        .unwrap();
                }
                // Every other transaction also removes the previous pair.
                if n % 2 == 0 {
                    w.tables_mut()
                        .delete_prefix("p", n, "t", "id", format!("{:04}", n - 1).as_bytes())
                        .unwrap();
                }
                w.commit();
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        for _ in 0..3 {
            scope.spawn(|| {
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::Acquire) || reads < 50 {
                    let r = s.read();
                    let index = r.table_stamp("t").unwrap();
                    let rows = scan_all(&r, "id", &KeyRange::Prefix(vec![]), 7);
                    assert_eq!(rows.len() % 2, 0, "half a pair at index {index}");
                    for pair in rows.chunks(2) {
                        assert_eq!(pair[0][..4], pair[1][..4], "a pair split at index {index}");
                    }
                    if index > 0 {
                        let newest = format!("{index:04}a|");
                        assert!(
                            rows.iter().any(|r| r.starts_with(newest.as_bytes())),
                            "index {index} without its rows"
                        );
                    }
                    reads += 1;
                }
            });
        }
    });
    assert_eq!(s.read().table_stamp("t").unwrap(), TXNS);
}

fn insert_one(s: &Store, table: &str, index: u64) {
    let mut w = s.write(index);
    let id = format!("k{index}");
    let o = Obj {
        email: None,
        tags: BTreeSet::new(),
    };
    w.tables_mut()
        .insert("p", index, table, &encode(&id, &o), &keys_of(&id, &o))
        .unwrap();
    w.commit();
}

#[tokio::test]
async fn a_commit_wakes_exactly_the_watchers_of_what_it_changed() {
    let s = store(&["t", "u"]);
    let on_t = s.watch(["t"]).unwrap();
    let on_u = s.watch(["u"]).unwrap();
    insert_one(&s, "u", 1);
    assert_eq!(
        on_t.wait(Duration::from_millis(50)).await,
        Wake::TimedOut,
        "t did not change"
    );
    assert_eq!(on_u.wait(Duration::from_secs(5)).await, Wake::Changed);

    // A waiter is woken by a commit that happens while it waits.
    let on_t = s.watch(["t", "u"]).unwrap();
    let waiter = tokio::spawn(on_t.wait(Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(20)).await;
    insert_one(&s, "t", 2);
    assert_eq!(waiter.await.unwrap(), Wake::Changed);

    // An aborted transaction wakes nobody.
    let on_t = s.watch(["t"]).unwrap();
    {
        let mut w = s.write(3);
        let o = Obj {
            email: None,
            tags: BTreeSet::new(),
        };
        w.tables_mut()
            .insert("p", 3, "t", &encode("z", &o), &keys_of("z", &o))
            .unwrap();
    }
    assert_eq!(on_t.wait(Duration::from_millis(50)).await, Wake::TimedOut);
}

#[tokio::test]
async fn abandon_wakes_every_watcher() {
    let s = store(&["t", "u"]);
    let waiters: Vec<_> = [["t"], ["u"]]
        .into_iter()
        .map(|tables| tokio::spawn(s.watch(tables).unwrap().wait(Duration::from_secs(5))))
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.abandon();
    for w in waiters {
        assert_eq!(w.await.unwrap(), Wake::Abandoned);
    }
    // A watch taken after the abandon returns at once.
    assert_eq!(
        s.watch(["t"]).unwrap().wait(Duration::from_secs(5)).await,
        Wake::Abandoned
    );
}

#[test]
fn a_snapshot_is_o1_and_unchanged_by_later_writes() {
    let s = store(&["t"]);
    let mut w = s.write(1);
    for i in 0..10_000 {
        let id = format!("k{i:05}");
        let o = Obj {
            email: None,
            tags: BTreeSet::new(),
        };
        w.tables_mut()
            .insert("p", 1, "t", &encode(&id, &o), &keys_of(&id, &o))
            .unwrap();
    }
    w.commit();
    let before = s.read();
    let hash = before.hash();
    let mut w = s.write(2);
    w.tables_mut()
        .delete_prefix("p", 2, "t", "id", b"k")
        .unwrap();
    w.commit();
    assert_eq!(before.len("t").unwrap(), 10_000);
    assert_eq!(before.hash(), hash);
    assert_eq!(s.read().len("t").unwrap(), 0);
    assert_ne!(s.read().hash(), hash);
}

/// The SDK's `MemStore` against this store.
mod memstore;
/// Single operations of the store, one behaviour each.
mod unit;
