//! Unit tests of the store's operations, one behaviour each: index maintenance on
//! replace, unique violations, ownership, commit and abort, scans and cursors, the schema's
//! `id` rule, delete-prefix.

use super::*;

fn store() -> Store {
    super::store(&["t"])
}

fn keys(id: &str, email: Option<&str>, tags: &[&str]) -> Vec<IndexKeys> {
    let o = Obj {
        email: email.map(String::from),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    };
    keys_of(id, &o)
}

#[test]
fn replace_drops_stale_index_entries() {
    let s = store();
    let mut w = s.write(1);
    w.tables_mut()
        .insert("p", 1, "t", b"a1", &keys("a", None, &["x", "y"]))
        .unwrap();
    w.tables_mut()
        .insert("p", 1, "t", b"a2", &keys("a", None, &["y"]))
        .unwrap();
    w.commit();
    let r = s.read();
    assert_eq!(r.get("t", "tag", b"x").unwrap(), None);
    assert_eq!(
        r.get("t", "tag", b"y").unwrap().as_deref(),
        Some(&b"a2"[..])
    );
    assert_eq!(r.table_stamp("t").unwrap(), 1);
}

#[test]
fn unique_violation_names_table_index_and_key() {
    let s = store();
    let mut w = s.write(1);
    w.tables_mut()
        .insert("p", 1, "t", b"a", &keys("a", Some("m"), &[]))
        .unwrap();
    let err = w
        .tables_mut()
        .insert("p", 1, "t", b"b", &keys("b", Some("m"), &[]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unique index violation: table t index email key \"m\" is held by object \"a\""
    );
    assert_eq!(w.tables().len("t").unwrap(), 1);
}

#[test]
fn only_the_owner_writes() {
    let s = store();
    let mut w = s.write(1);
    let err = w
        .tables_mut()
        .insert("other", 1, "t", b"a", &keys("a", None, &[]))
        .unwrap_err();
    assert!(matches!(err, StateError::NotOwner(_)), "{err}");
}

#[test]
fn readers_see_only_committed_state_and_aborts_leave_nothing() {
    let s = store();
    let before = s.read();
    let mut w = s.write(1);
    w.tables_mut()
        .insert("p", 1, "t", b"a", &keys("a", None, &[]))
        .unwrap();
    assert_eq!(s.read().len("t").unwrap(), 0);
    drop(w);
    assert_eq!(s.read().len("t").unwrap(), 0);
    let mut w = s.write(2);
    w.tables_mut()
        .insert("p", 2, "t", b"a", &keys("a", None, &[]))
        .unwrap();
    w.commit();
    assert_eq!(before.len("t").unwrap(), 0, "an old snapshot is unchanged");
    assert_eq!(s.read().len("t").unwrap(), 1);
}

#[test]
fn scan_in_batches_visits_every_object_once_in_order() {
    let s = store();
    let mut w = s.write(1);
    for i in (0..1000u32).rev() {
        let id = format!("k{i:04}");
        w.tables_mut()
            .insert("p", 1, "t", id.as_bytes(), &keys(&id, None, &["all"]))
            .unwrap();
    }
    w.commit();
    let r = s.read();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let b = r
            .scan(
                "t",
                "tag",
                &KeyRange::Exact(b"all".to_vec()),
                cursor.as_deref(),
                64,
            )
            .unwrap();
        seen.extend(
            b.objects
                .iter()
                .map(|o| String::from_utf8(o.to_vec()).unwrap()),
        );
        match b.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (0..1000).map(|i| format!("k{i:04}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn bad_cursor_is_refused() {
    let s = store();
    let err = s
        .read()
        .scan(
            "t",
            "id",
            &KeyRange::Prefix(vec![]),
            Some(&[0, 0, 0, 9, 1]),
            10,
        )
        .unwrap_err();
    assert!(matches!(err, StateError::BadCursor(_)));
}

#[test]
fn an_excluded_start_skips_equal_keys_without_walking_them() {
    let s = store();
    let mut w = s.write(1);
    for i in 0..50 {
        let id = format!("a{i:02}");
        w.tables_mut()
            .insert("p", 1, "t", id.as_bytes(), &keys(&id, None, &["same"]))
            .unwrap();
    }
    w.tables_mut()
        .insert("p", 1, "t", b"z", &keys("z", None, &["samf"]))
        .unwrap();
    let range = KeyRange::Between(Bound::Excluded(b"same".to_vec()), Bound::Unbounded);
    let t = w.tables();
    assert_eq!(
        t.first("t", "tag", &range).unwrap().as_deref(),
        Some(&b"z"[..])
    );
    // The walk starts past every "same" entry: the first entry visited is "samf".
    let pos = t.schema.index_pos(0, "tag").unwrap();
    let visited: Vec<_> = t.data[0].range(pos, &range, None).collect();
    assert_eq!(visited.len(), 1);
}

#[test]
fn a_schema_without_a_proper_id_index_is_refused() {
    let bad = TableSchema {
        name: "t".into(),
        indexes: vec![ix("id", true, false, true)],
        layout: 1,
    };
    assert_eq!(
        Schema::new(vec![("p".into(), bad)]).unwrap_err(),
        "table t has no unique, single-valued, never-missing id index"
    );
    let ok = TableSchema {
        name: "t".into(),
        indexes: vec![ix("id", true, false, false)],
        layout: 1,
    };
    let p = |t: &TableSchema| ("p".to_string(), t.clone());
    assert_eq!(
        Schema::new(vec![p(&ok), p(&ok)]).unwrap_err(),
        "table t is declared twice"
    );
}

#[test]
fn delete_prefix_counts_and_stamps() {
    let s = store();
    let mut w = s.write(3);
    for id in ["a/1", "a/2", "b/1"] {
        w.tables_mut()
            .insert("p", 3, "t", id.as_bytes(), &keys(id, None, &[]))
            .unwrap();
    }
    assert_eq!(
        w.tables_mut()
            .delete_prefix("p", 4, "t", "id", b"a/")
            .unwrap(),
        2
    );
    assert_eq!(w.tables().table_stamp("t").unwrap(), 4);
    assert_eq!(w.tables().len("t").unwrap(), 1);
}
