//! Tombstone GC: the marks every deleting operation writes, their buckets, the tick's
//! reaps (due only after the TTL, in chunks), the marks dropped once reaped, the payload
//! without `limit`, and the index a blocking query sees across a reap.

use super::*;
use crate::gc::{MARK_GRANULARITY_MS, MAX_REAPS_PER_TICK, REAP_LIMIT, bucket_of};
use crate::txn::{Op, TxnRequest, Verb};
use fsmhost_guest::{Ctx, Harness, KeyRange, Tenancy, TickCtx, from_cbor, to_cbor};
use fsmhost_schema_sessions::{ReleaseSession, SESSIONS, Session};

const TTL_MS: u64 = 15 * 60_000;

fn h() -> Harness {
    Harness::new(plugin()).expect("kv schema is valid")
}

/// The context of a log entry at `index`, accepted by the leader at `timestamp_ms`.
fn at(index: u64, timestamp_ms: u64) -> Ctx {
    Ctx {
        index,
        timestamp_ms,
    }
}

/// What the leader tells the tick at `now_ms`.
fn tick_at(now_ms: u64) -> TickCtx {
    TickCtx {
        now_ms,
        tombstone_ttl_ms: TTL_MS,
        ..Default::default()
    }
}

fn set(h: &mut Harness, ctx: Ctx, key: &str) {
    let req = SetRequest {
        key: key.into(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    assert_eq!(h.run_at(ctx, &SET, &req), Ok(true));
}

fn delete(h: &mut Harness, ctx: Ctx, key: &str) {
    let req = DeleteRequest {
        key: key.into(),
        ..Default::default()
    };
    assert_eq!(h.run_at(ctx, &DELETE, &req), Ok(true));
}

fn marks(h: &Harness) -> Vec<(u64, u64)> {
    TOMBSTONE_MARKS_ID
        .iter_range(h.store(), KeyRange::Prefix(Vec::new()))
        .map(|m| m.map(|m| (m.bucket, m.index)))
        .collect::<Result<_, _>>()
        .expect("marks")
}

fn tombstones(h: &Harness) -> Vec<(String, u64)> {
    TOMBSTONES_INDEX
        .iter_range(h.store(), KeyRange::Prefix(Vec::new()))
        .map(|t| t.map(|t| (t.key, t.index)))
        .collect::<Result<_, _>>()
        .expect("tombstones")
}

fn reap(h: &mut Harness, index: u64, limit: u64) -> u64 {
    let req = ReapRequest { index, limit };
    h.run(&REAP_TOMBSTONES, &req).expect("reap")
}

fn op(verb: Verb, key: &str, index: u64) -> Op {
    Op {
        verb,
        key: key.into(),
        value: Vec::new(),
        flags: 0,
        index,
        session: String::new(),
        tenancy: Default::default(),
    }
}

#[test]
fn every_deleting_operation_marks_its_bucket() {
    let mut h = h();
    let bucket = |n: u64| n * MARK_GRANULARITY_MS;
    for (i, k) in ["a", "b", "c/1", "c/2", "d", "e", "f/1", "g"]
        .iter()
        .enumerate()
    {
        set(&mut h, at(i as u64 + 1, 0), k); // 1..=8
    }
    delete(&mut h, at(10, bucket(1)), "a");
    let cas = DeleteCasRequest {
        key: "b".into(),
        index: 2,
        ..Default::default()
    };
    assert_eq!(h.run_at(at(11, bucket(2)), &DELETE_CAS, &cas), Ok(true));
    let tree = DeleteTreeRequest {
        prefix: "c/".into(),
        ..Default::default()
    };
    assert_eq!(h.run_at(at(12, bucket(3)), &DELETE_TREE, &tree), Ok(true));
    let txn = TxnRequest {
        ops: vec![
            op(Verb::Delete, "d", 0),
            op(Verb::DeleteCas, "e", 6),
            op(Verb::DeleteTree, "f/", 0),
        ],
    };
    h.run_at(at(13, bucket(4)), &TXN, &txn).expect("txn");
    // release-session with the delete behavior (the catalog's message when a session ends).
    let tenancy = Tenancy::default()
        .resolve(EDITION)
        .expect("default tenancy");
    let session = Session {
        id: "s1".into(),
        node: "n1".into(),
        behavior: "delete".into(),
        tenancy,
        ..Default::default()
    };
    SESSIONS.insert(h.store_mut(), &session).expect("seed");
    h.store_mut().commit();
    let lock = LockRequest {
        key: "g".into(),
        session: "s1".into(),
        ..Default::default()
    };
    assert_eq!(h.run_at(at(14, 0), &ACQUIRE, &lock), Ok(true));
    let ended = ReleaseSession {
        id: "s1".into(),
        tenancy: Default::default(),
        behavior: "delete".into(),
        lock_delay: 0,
    };
    assert_eq!(h.run_at(at(15, bucket(5)), &RELEASE_SESSION, &ended), Ok(1));
    assert_eq!(
        marks(&h),
        [(1, 10), (2, 11), (3, 12), (4, 13), (5, 15)],
        "one mark per bucket, at the index of its last tombstone"
    );
    assert_eq!(tombstones(&h).len(), 7, "a, b, c/, d, e, f/, g");
}

#[test]
fn writes_that_leave_no_tombstone_leave_no_mark() {
    let mut h = h();
    set(&mut h, at(1, 0), "a");
    delete(&mut h, at(2, 5 * MARK_GRANULARITY_MS), "missing");
    let cas = DeleteCasRequest {
        key: "a".into(),
        index: 9,
        ..Default::default()
    };
    assert_eq!(h.run_at(at(3, 0), &DELETE_CAS, &cas), Ok(false));
    let all = DeleteTreeRequest::default();
    assert_eq!(h.run_at(at(4, 0), &DELETE_TREE, &all), Ok(true));
    assert_eq!(h.store().len("kvs"), 0, "deleting everything...");
    assert!(marks(&h).is_empty(), "...leaves no tombstone, and no mark");
    assert!(tombstones(&h).is_empty());
}

#[test]
fn buckets_are_30_seconds_of_the_entrys_clock_and_never_go_back() {
    let mut h = h();
    for (i, k) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        set(&mut h, at(i as u64 + 1, 0), k);
    }
    assert_eq!(bucket_of(29_999), 0);
    assert_eq!(bucket_of(30_000), 1);
    delete(&mut h, at(6, 0), "a");
    delete(&mut h, at(7, 29_999), "b");
    assert_eq!(marks(&h), [(0, 7)], "the same bucket: its highest index");
    delete(&mut h, at(8, 30_000), "c");
    assert_eq!(marks(&h), [(0, 7), (1, 8)]);
    // A new leader whose clock is behind: the tombstone goes to the newest bucket, so the
    // marks' indexes rise with their buckets.
    delete(&mut h, at(9, 1_000), "d");
    assert_eq!(marks(&h), [(0, 7), (1, 9)]);
    // A delete-tree's or a txn's many tombstones at one index: one write of the mark.
    set(&mut h, at(10, 0), "t/1");
    set(&mut h, at(11, 0), "t/2");
    let txn = TxnRequest {
        ops: vec![op(Verb::Delete, "t/1", 0), op(Verb::Delete, "t/2", 0)],
    };
    h.run_at(at(12, 61_000), &TXN, &txn).expect("txn");
    assert_eq!(marks(&h), [(0, 7), (1, 9), (2, 12)]);
}

#[test]
fn the_tick_reaps_a_bucket_only_a_ttl_after_it_ended() {
    let mut h = h();
    for (i, k) in ["a", "b", "c"].iter().enumerate() {
        set(&mut h, at(i as u64 + 1, 0), k);
    }
    delete(&mut h, at(4, 1_000), "a"); // bucket 0, ends at 30 s
    delete(&mut h, at(5, 29_000), "b"); // bucket 0
    delete(&mut h, at(6, 45_000), "c"); // bucket 1, ends at 60 s
    assert!(h.tick(&tick_at(0)).expect("tick").is_empty());
    let before = 30_000 + TTL_MS - 1;
    assert!(
        h.tick(&tick_at(before)).expect("tick").is_empty(),
        "not yet"
    );
    let due = h.tick(&tick_at(30_000 + TTL_MS)).expect("tick");
    let want = ReapRequest {
        index: 5,
        limit: REAP_LIMIT,
    };
    assert_eq!(due, [REAP_TOMBSTONES.proposal(&want).expect("proposal")]);
    let both = h.tick(&tick_at(60_000 + TTL_MS)).expect("tick");
    let want = ReapRequest {
        index: 6,
        limit: REAP_LIMIT,
    };
    assert_eq!(both, [REAP_TOMBSTONES.proposal(&want).expect("proposal")]);
}

#[test]
fn tick_and_apply_reaps_due_tombstones_and_their_marks() {
    let mut h = h();
    for (i, k) in ["a", "b", "c"].iter().enumerate() {
        set(&mut h, at(i as u64 + 1, 0), k);
    }
    delete(&mut h, at(4, 1_000), "a");
    delete(&mut h, at(5, 45_000), "b");
    assert!(h.tick_and_apply(&tick_at(30_000 + TTL_MS - 1)).is_empty());
    let results = h.tick_and_apply(&tick_at(30_000 + TTL_MS));
    let reaped: Vec<u64> = results
        .iter()
        .map(|r| from_cbor(r.as_ref().expect("applied"), "reaped").expect("u64"))
        .collect();
    assert_eq!(reaped, [1]);
    assert_eq!(tombstones(&h), [("b".to_string(), 5)]);
    assert_eq!(
        marks(&h),
        [(1, 5)],
        "bucket 0's mark is gone, bucket 1's is not due"
    );
    assert!(h.tick_and_apply(&tick_at(30_000 + TTL_MS)).is_empty());
    assert_eq!(h.tick_and_apply(&tick_at(60_000 + TTL_MS)).len(), 1);
    assert!(tombstones(&h).is_empty());
    assert!(marks(&h).is_empty());
    assert!(h.tick(&tick_at(u64::MAX)).expect("tick").is_empty());
    assert_eq!(h.store().len("kvs"), 1, "c lives");
}

/// Seeds `n` tombstones at indexes `1..=n` (as deletes would have left them) and a mark
/// of bucket 0 at index `n`.
fn seed_tombstones(h: &mut Harness, n: u64) {
    for i in 1..=n {
        let t = Tombstone {
            key: format!("k/{i:07}"),
            index: i,
            tenancy: Default::default(),
        };
        TOMBSTONES.insert(h.store_mut(), &t).expect("seed");
    }
    let m = TombstoneMark {
        bucket: 0,
        index: n,
    };
    TOMBSTONE_MARKS.insert(h.store_mut(), &m).expect("seed");
    h.store_mut().commit();
}

#[test]
fn a_reap_deletes_at_most_its_limit_oldest_first_and_the_marks_last() {
    let mut h = h();
    seed_tombstones(&mut h, 5);
    let m = TombstoneMark {
        bucket: 3,
        index: 9,
    };
    TOMBSTONE_MARKS.insert(h.store_mut(), &m).expect("seed");
    h.store_mut().commit();
    assert_eq!(reap(&mut h, 4, 2), 2);
    assert_eq!(tombstones(&h)[0], ("k/0000003".to_string(), 3));
    assert_eq!(marks(&h), [(0, 5), (3, 9)]);
    assert_eq!(reap(&mut h, 4, 2), 2);
    assert_eq!(reap(&mut h, 4, 2), 0, "nothing left at or below 4");
    assert_eq!(tombstones(&h), [("k/0000005".to_string(), 5)]);
    assert_eq!(marks(&h), [(0, 5), (3, 9)], "no mark is at or below 4");
    assert_eq!(reap(&mut h, 5, 2), 1);
    assert_eq!(
        marks(&h),
        [(3, 9)],
        "the mark at 5 goes with its last tombstone"
    );
    assert_eq!(reap(&mut h, 5, 0), 0);
    assert_eq!(
        reap(&mut h, 9, 10),
        0,
        "a mark without tombstones (keys deleted again)"
    );
    assert!(marks(&h).is_empty());
}

#[test]
fn the_tick_proposes_one_chunk_per_limit_and_at_most_ten() {
    let mut h = h();
    let n = REAP_LIMIT * MAX_REAPS_PER_TICK + REAP_LIMIT / 2;
    seed_tombstones(&mut h, n);
    let due = tick_at(MARK_GRANULARITY_MS + TTL_MS);
    let proposals = h.tick(&due).expect("tick");
    assert_eq!(proposals.len() as u64, MAX_REAPS_PER_TICK);
    let reaped: Vec<u64> = h
        .tick_and_apply(&due)
        .into_iter()
        .map(|r| from_cbor(&r.expect("applied"), "reaped").expect("u64"))
        .collect();
    assert_eq!(reaped, vec![REAP_LIMIT; MAX_REAPS_PER_TICK as usize]);
    assert_eq!(h.store().len("tombstones") as u64, REAP_LIMIT / 2);
    assert_eq!(marks(&h), [(0, n)], "kept until its last tombstone goes");
    let rest: Vec<u64> = h
        .tick_and_apply(&due)
        .into_iter()
        .map(|r| from_cbor(&r.expect("applied"), "reaped").expect("u64"))
        .collect();
    assert_eq!(rest, [REAP_LIMIT / 2]);
    assert_eq!(h.store().len("tombstones"), 0);
    assert!(marks(&h).is_empty());
    assert!(h.tick(&due).expect("tick").is_empty());
}

#[test]
fn a_payload_without_limit_reaps_everything_at_or_below_its_index() {
    #[derive(serde::Serialize)]
    struct Before020 {
        index: u64,
    }
    let mut h = h();
    seed_tombstones(&mut h, 30);
    let payload = to_cbor(&Before020 { index: 20 }).expect("encode");
    let out = h
        .apply_raw(at(100, 0), REAP_TOMBSTONES.name(), &payload)
        .expect("applied");
    assert_eq!(from_cbor::<u64>(&out, "reaped"), Ok(20));
    assert_eq!(h.store().len("tombstones"), 10);
    assert_eq!(ReapRequest::default().limit, u64::MAX);
}

/// The index the host answers `query` with: the highest stamp of the tables it read.
fn host_index<A: serde::Serialize, O: serde::de::DeserializeOwned>(
    h: &Harness,
    query: &fsmhost_guest::Query<A, O>,
    args: &A,
) -> u64 {
    let (_, index, tables) = h.ask_indexed(query, args).expect("query");
    assert!(
        !tables.contains("tombstone_marks"),
        "queries never read the marks"
    );
    index
}

#[test]
fn a_read_never_answers_a_lower_index_after_a_reap() {
    let mut h = h();
    set(&mut h, at(1, 0), "app/a");
    set(&mut h, at(2, 0), "app/b");
    set(&mut h, at(3, 0), "gone/x");
    delete(&mut h, at(4, 0), "app/b");
    let tree = DeleteTreeRequest {
        prefix: "gone/".into(),
        ..Default::default()
    };
    assert_eq!(h.run_at(at(5, 0), &DELETE_TREE, &tree), Ok(true));
    let list = |p: &str| ListArgs {
        prefix: p.into(),
        ..Default::default()
    };
    let keys = |p: &str| KeysArgs {
        prefix: p.into(),
        ..Default::default()
    };
    let get = |k: &str| GetArgs {
        key: k.into(),
        ..Default::default()
    };
    let before = [
        host_index(&h, &LIST, &list("app/")),
        host_index(&h, &LIST, &list("gone/")),
        host_index(&h, &KEYS, &keys("gone/")),
        host_index(&h, &GET, &get("app/b")),
        host_index(&h, &GET, &get("gone/x")),
    ];
    assert_eq!(before, [5, 5, 5, 5, 5]);
    assert_eq!(h.ask(&LIST, &list("gone/")).expect("list").index, 5);
    let results = h.tick_and_apply(&tick_at(MARK_GRANULARITY_MS + TTL_MS));
    assert_eq!(results.len(), 1);
    assert!(tombstones(&h).is_empty());
    let after = [
        host_index(&h, &LIST, &list("app/")),
        host_index(&h, &LIST, &list("gone/")),
        host_index(&h, &KEYS, &keys("gone/")),
        host_index(&h, &GET, &get("app/b")),
        host_index(&h, &GET, &get("gone/x")),
    ];
    for (b, a) in before.iter().zip(&after) {
        assert!(a >= b, "before the reap {before:?}, after {after:?}");
    }
    assert_eq!(
        after[..3],
        [6, 6, 6],
        "lists read the tombstones, which the reap changed"
    );
    // A prefix with no key and no tombstone left answers the tables' index (Consul's
    // kvsListTxn), which the reap raised.
    let gone = h.ask(&LIST, &list("gone/")).expect("list");
    assert_eq!((gone.entries.len(), gone.index), (0, 6));
    let gone = h.ask(&KEYS, &keys("gone/")).expect("keys");
    assert_eq!((gone.keys.len(), gone.index), (0, 6));
}

#[cfg(feature = "enterprise")]
#[test]
fn enterprise_one_tick_reaps_every_namespace() {
    let mut h = h();
    let team = Tenancy {
        partition: "default".into(),
        namespace: "team".into(),
    };
    for (i, t) in [Tenancy::default(), team.clone()].into_iter().enumerate() {
        let set = SetRequest {
            key: "k".into(),
            value: b"v".to_vec(),
            tenancy: t.clone(),
            ..Default::default()
        };
        assert_eq!(h.run_at(at(i as u64 * 2 + 1, 0), &SET, &set), Ok(true));
        let del = DeleteRequest {
            key: "k".into(),
            tenancy: t,
        };
        assert_eq!(h.run_at(at(i as u64 * 2 + 2, 0), &DELETE, &del), Ok(true));
    }
    assert_eq!(tombstones(&h).len(), 2);
    assert_eq!(marks(&h), [(0, 4)]);
    assert_eq!(
        h.tick_and_apply(&tick_at(MARK_GRANULARITY_MS + TTL_MS))
            .len(),
        1
    );
    assert!(tombstones(&h).is_empty());
    assert!(marks(&h).is_empty());
}
