//! The guest SDK's native `MemStore`, which plugin unit tests run against, checked against
//! this store: the same random transactions (the operations of the model test) give the
//! same answers, the same errors and the same stamps. A plugin that passes its native tests
//! then meets the same semantics on a server.

use super::*;
use fsmhost_guest::{MemStore, Txn as _};

fn mem() -> MemStore {
    let (_owner, t) = table("t");
    MemStore::new(&[t]).expect("valid schema")
}

fn mem_apply(m: &mut MemStore, ops: &[Op]) -> Result<(), fsmhost_guest::StateError> {
    for op in ops {
        match op {
            Op::Insert(id, o) => {
                m.insert("t", &encode(id, o), keys_of(id, o))?;
            }
            Op::Delete(id) => {
                m.delete("t", id.as_bytes())?;
            }
            Op::DeletePrefix(p) => {
                m.delete_prefix("t", "id", p.as_bytes())?;
            }
        }
    }
    Ok(())
}

fn mem_scan(m: &MemStore, index: &str, range: &KeyRange, limit: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let b = m
            .scan("t", index, range, cursor.as_deref(), limit)
            .expect("scan");
        out.extend(b.objects);
        match b.cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// The reads every comparison makes: (index, range) pairs over every index, with exact,
/// prefix and bounded ranges.
fn ranges() -> Vec<(&'static str, KeyRange)> {
    let mut out = vec![
        ("id", KeyRange::Prefix(Vec::new())),
        ("email", KeyRange::Prefix(Vec::new())),
        ("tag", KeyRange::Prefix(Vec::new())),
        (
            "tag",
            KeyRange::Between(
                Bound::Excluded(b"x".to_vec()),
                Bound::Included(b"z".to_vec()),
            ),
        ),
        (
            "id",
            KeyRange::Between(Bound::Included(b"ab".to_vec()), Bound::Unbounded),
        ),
    ];
    for id in ["a", "ab", "b", "c"] {
        out.push(("id", KeyRange::Prefix(id.as_bytes().to_vec())));
        out.push(("id", KeyRange::Exact(id.as_bytes().to_vec())));
    }
    for key in ["m1", "m2", "x", "y"] {
        let index = if key.starts_with('m') { "email" } else { "tag" };
        out.push((index, KeyRange::Exact(key.as_bytes().to_vec())));
    }
    out
}

/// Every read of [`ranges`], and the table's stamp, answer the same in both stores.
fn same_answers(t: &Tables, m: &MemStore) -> Result<(), TestCaseError> {
    for (index, range) in ranges() {
        for limit in [1, 3] {
            prop_assert_eq!(
                scan_all(t, index, &range, limit),
                mem_scan(m, index, &range, limit),
                "scan of {} over {:?}, {} a batch",
                index,
                &range,
                limit
            );
        }
        let host = |b: Option<Bytes>| b.map(|b| b.to_vec());
        prop_assert_eq!(
            host(t.first("t", index, &range).expect("first")),
            m.first("t", index, &range).expect("first"),
            "first of {} over {:?}",
            index,
            &range
        );
        prop_assert_eq!(
            host(t.last("t", index, &range).expect("last")),
            m.last("t", index, &range).expect("last"),
            "last of {} over {:?}",
            index,
            &range
        );
        if let KeyRange::Exact(key) = &range {
            prop_assert_eq!(
                host(t.get("t", index, key).expect("get")),
                m.get("t", index, key).expect("get")
            );
        }
    }
    prop_assert_eq!(
        t.table_stamp("t").expect("stamp"),
        m.table_index("t").expect("stamp")
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random transactions of inserts, deletes and prefix deletes, committed or rolled back,
    /// through this store and through `MemStore`: the same operation fails in both, with the
    /// same message, and afterwards every read answers the same.
    #[test]
    fn memstore_answers_as_the_store_does(txns in prop::collection::vec(txn(), 1..30)) {
        let s = store(&["t"]);
        let mut m = mem();
        for (i, txn) in txns.iter().enumerate() {
            let stamp = i as u64 + 1;
            let mut w = s.write(stamp);
            m.set_index(stamp);
            let host = store_apply(w.tables_mut(), stamp, &txn.ops);
            let native = mem_apply(&mut m, &txn.ops);
            prop_assert_eq!(
                host.as_ref().err().map(ToString::to_string),
                native.as_ref().err().map(ToString::to_string),
                "ops {:?}",
                &txn.ops
            );
            if host.is_ok() && txn.commit {
                w.commit();
                m.commit();
            } else {
                drop(w);
                m.rollback();
            }
            same_answers(&s.read(), &m)?;
        }
    }
}
