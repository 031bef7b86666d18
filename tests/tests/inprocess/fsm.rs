//! The state machine end to end: log entries applied through the real kv component into the
//! store, queries and blocking queries, and the state hash.

use crate::fsm_with;
use fsmhost::fsm::{Entry, FailureKind, Fsm, FsmError};
use fsmhost::plugin::{CallError, PluginSet};
use fsmhost::upgrade::ChangeKind;
use fsmhost_guest::Command;
use fsmhost_plugin_kv as kv;
use fsmhost_tests::{bundled, cbor, decode, fixture};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// A log entry for kv's `command`.
fn entry<Req: Serialize, Out>(command: &Command<Req, Out>, payload: &Req) -> Entry {
    fsmhost_tests::entry("kv", command.name(), payload)
}

fn set(key: &str, value: &str) -> Entry {
    entry(
        &kv::SET,
        &kv::SetRequest {
            tenancy: Default::default(),
            key: key.into(),
            value: value.into(),
            flags: 0,
        },
    )
}

/// A deterministic log mixing every kv command (some of which fail or are no-ops).
fn log(n: u64) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            let key = format!("svc/{:02}/{}", i % 13, i % 5);
            match i % 9 {
                0..=3 => set(&key, &format!("v{i}")),
                4 => entry(
                    &kv::CAS,
                    &kv::CasRequest {
                        tenancy: Default::default(),
                        key,
                        value: b"c".to_vec(),
                        flags: 1,
                        index: i / 2,
                    },
                ),
                5 => entry(
                    &kv::DELETE,
                    &kv::DeleteRequest {
                        tenancy: Default::default(),
                        key,
                    },
                ),
                6 => entry(
                    &kv::DELETE_CAS,
                    &kv::DeleteCasRequest {
                        tenancy: Default::default(),
                        key,
                        index: i - 2,
                    },
                ),
                7 => entry(
                    &kv::DELETE_TREE,
                    &kv::DeleteTreeRequest {
                        tenancy: Default::default(),
                        prefix: format!("svc/{:02}", i % 7),
                    },
                ),
                _ => fsmhost_tests::entry("kv", kv::SET.name(), &"not a request"), // a failing entry: applied as an error
            }
        })
        .collect()
}

fn apply_all(fsm: &Fsm, entries: &[Entry]) -> Vec<Result<Vec<u8>, FsmError>> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| fsm.apply(i as u64 + 1, e))
        .collect()
}

#[test]
fn the_same_log_gives_the_same_state_hash() {
    let entries = log(400);
    let (a, b) = (fsm_with(&[]), fsm_with(&[]));
    let out_a = apply_all(&a, &entries);
    let out_b = apply_all(&b, &entries);
    assert_eq!(out_a, out_b, "the same results, errors included");
    assert!(
        out_a.iter().any(|r| r.is_err()),
        "the log has failing entries"
    );
    assert_eq!(a.state_hash(), b.state_hash());
    assert_eq!(a.last_applied(), 400);

    // One different entry gives a different hash.
    let mut changed = entries.clone();
    changed[200] = set("svc/other", "x");
    let c = fsm_with(&[]);
    apply_all(&c, &changed);
    assert_ne!(a.state_hash(), c.state_hash());
}

#[test]
fn kv_semantics_through_apply_and_query() {
    let fsm = fsm_with(&[]);
    let get = |key: &str| -> Option<kv::Entry> {
        decode(
            &fsm.query(
                "kv",
                kv::GET.name(),
                &cbor(&kv::GetArgs {
                    tenancy: Default::default(),
                    key: key.into(),
                }),
            )
            .unwrap()
            .bytes,
        )
    };
    let list = |prefix: &str| -> (kv::ListResult, u64) {
        let out = fsm
            .query(
                "kv",
                kv::LIST.name(),
                &cbor(&kv::ListArgs {
                    tenancy: Default::default(),
                    prefix: prefix.into(),
                }),
            )
            .unwrap();
        (decode(&out.bytes), out.index)
    };
    let ok = |r: Result<Vec<u8>, FsmError>| -> bool { decode(&r.unwrap()) };

    assert!(ok(fsm.apply(1, &set("app/a", "1"))));
    assert!(ok(fsm.apply(2, &set("app/b", "2"))));
    // CAS: 0 creates only; a stale index fails; the current one succeeds.
    let cas = |index| {
        entry(
            &kv::CAS,
            &kv::CasRequest {
                tenancy: Default::default(),
                key: "app/a".into(),
                value: b"3".to_vec(),
                flags: 0,
                index,
            },
        )
    };
    assert!(!ok(fsm.apply(3, &cas(0))));
    assert!(!ok(fsm.apply(4, &cas(2))));
    assert!(ok(fsm.apply(5, &cas(1))));
    assert_eq!(get("app/a").unwrap().modify_index, 5);
    // delete-cas with index 0 never deletes.
    let dcas = |index| {
        entry(
            &kv::DELETE_CAS,
            &kv::DeleteCasRequest {
                tenancy: Default::default(),
                key: "app/b".into(),
                index,
            },
        )
    };
    assert!(!ok(fsm.apply(6, &dcas(0))));
    assert!(ok(fsm.apply(7, &dcas(2))));
    assert!(get("app/b").is_none());
    // The tombstone keeps the prefix index at the delete, not at app/a's write.
    let (l, _) = list("app/");
    assert_eq!((l.entries.len(), l.index), (1, 7));
    // delete-tree, then the prefix index stays at the delete.
    assert!(ok(fsm.apply(8, &set("app/sub/x", "1"))));
    assert!(ok(fsm.apply(
        9,
        &entry(
            &kv::DELETE_TREE,
            &kv::DeleteTreeRequest {
                tenancy: Default::default(),
                prefix: "app/".into()
            }
        )
    )));
    let (l, table_index) = list("app/");
    assert_eq!((l.entries.len(), l.index), (0, 9));
    assert_eq!(table_index, 9, "the index of the tables the query read");
}

#[test]
fn a_failed_entry_is_applied_as_its_error_and_changes_nothing() {
    let fsm = fsm_with(&["panicker"]);
    fsm.apply(1, &set("a", "1")).unwrap();
    let hash = fsm.state_hash();
    let boom = Entry {
        version: None,
        plugin: "panicker".into(),
        command: "boom".into(),
        payload: cbor(&()),
        timestamp_ms: 0,
    };
    let err = fsm.apply(2, &boom).unwrap_err();
    assert!(
        matches!(err, FsmError::Call(CallError::Trap { .. })),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(fsm.last_applied(), 2);
    assert_eq!(fsm.state_hash(), hash);

    let err = fsm
        .apply(
            3,
            &Entry {
                plugin: "nope".into(),
                ..set("a", "1")
            },
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "no plugin named nope is loaded");
    let err = fsm.apply(3, &set("a", "2")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "entry at index 3 is out of order: index 3 was already applied"
    );
    assert_eq!(fsm.state_hash(), hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_query_wakes_on_a_change_to_what_it_read() {
    let fsm = Arc::new(fsm_with(&["loop-forever"]));
    fsm.apply(1, &set("web/a", "1")).unwrap();
    let args = cbor(&kv::ListArgs {
        tenancy: Default::default(),
        prefix: "web/".into(),
    });
    let first = fsm.query("kv", kv::LIST.name(), &args).unwrap();
    assert_eq!(first.index, 1);
    assert!(
        first.tables.contains("kvs") && first.tables.contains("tombstones"),
        "{:?}",
        first.tables
    );

    // A write to another plugin's table does not answer the query; a kv write does.
    let writer = {
        let fsm = fsm.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let other = Entry {
                version: None,
                plugin: "loop-forever".into(),
                command: "spin".into(),
                payload: cbor(&()),
                timestamp_ms: 0,
            };
            let _ = fsm.apply(2, &other); // fails (fuel), touches nothing
            tokio::time::sleep(Duration::from_millis(100)).await;
            fsm.apply(3, &set("web/b", "2")).unwrap();
        })
    };
    let started = std::time::Instant::now();
    let out = fsm
        .blocking_query(
            "kv",
            kv::LIST.name(),
            &args,
            first.index,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    writer.await.unwrap();
    assert_eq!(out.index, 3);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "woke before the kv write"
    );
    let l: kv::ListResult = decode(&out.bytes);
    assert_eq!(l.entries.len(), 2);

    // Nothing changes: the wait times out with the same answer.
    let started = std::time::Instant::now();
    let out = fsm
        .blocking_query("kv", kv::LIST.name(), &args, 3, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(out.index, 3);
    assert!(started.elapsed() >= Duration::from_millis(200));

    // Abandoning the store (a restore) answers at once.
    let waiter = {
        let fsm = fsm.clone();
        let args = args.clone();
        tokio::spawn(async move {
            fsm.blocking_query("kv", kv::LIST.name(), &args, 3, Duration::from_secs(30))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    fsm.store().abandon();
    let out = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken")
        .unwrap()
        .unwrap();
    assert_eq!(out.index, 3);
}

#[test]
fn an_entry_written_for_a_newer_plugin_version_is_refused() {
    let f = fsm_with(&[]);
    let mut e = set("a", "1");
    e.version = Some("9.0.0".into());
    let err = f.apply(1, &e).unwrap_err();
    assert!(matches!(err, FsmError::WrittenForNewer { .. }), "{err}");
    assert_eq!(err.kind(), FailureKind::Conflict);
    assert!(err.to_string().contains("kv 9.0.0"), "{err}");
    // Applied (as its error): the index is used, the store unchanged.
    assert_eq!(f.last_applied(), 1);
    e.version = Some("0.2.0".into());
    f.apply(2, &e).expect("written for the version in effect");
    // Written for an older version: the version in effect at its place applies it.
    e.version = Some("0.0.9".into());
    f.apply(3, &set("b", "2")).expect("no version recorded");
    f.apply(4, &e).expect("an older version's command");
}

#[test]
fn installing_kv_v2_rebuilds_its_indexes_and_a_new_plugin_joins() {
    let rt = Arc::new(crate::cached_runtime(Default::default()));
    let set_of = PluginSet::new(vec![rt.load("bundled:kv", bundled("kv")).expect("kv")]);
    let f = Fsm::new(set_of.expect("set")).with_runtime(rt.clone());
    for (i, k) in ["a", "b", "c"].iter().enumerate() {
        f.apply(i as u64 + 1, &set(k, "v")).expect("set");
    }
    let before = f.state_hash();
    let v2 = Arc::new(rt.load("kv-v2", fixture("kv-v2")).expect("kv v2 loads"));
    let plan = f.install(v2.clone(), 10).expect("install");
    assert_eq!(
        (plan.from_version.as_deref(), plan.to_version.as_str()),
        (Some("0.2.0"), "0.3.0")
    );
    let kvs = plan.tables.iter().find(|t| t.table == "kvs").expect("kvs");
    assert_eq!(
        (kvs.change.as_str(), kvs.objects, &kvs.indexes_added[..]),
        ("rebuilt", 3, &["flags".to_string()][..])
    );
    // The objects are kept; the new index has a key for each (the hash covers keys).
    assert_ne!(f.state_hash(), before);
    assert_eq!(f.store().read().len("kvs").expect("kvs"), 3);
    let plugins = f.plugins();
    let kv_now = plugins.get("kv").expect("kv");
    assert_eq!(kv_now.description().version, "0.3.0");
    assert_eq!(f.system().plugins["kv"].raft_index, 10);
    let got = f
        .query(
            "kv",
            kv::GET.name(),
            &cbor(&kv::GetArgs {
                key: "b".into(),
                tenancy: Default::default(),
            }),
        )
        .expect("query under 0.3.0");
    let e: Option<kv::Entry> = decode(&got.bytes);
    assert_eq!(e.map(|e| e.value), Some(b"v".to_vec()));
    f.apply(4, &set("d", "after")).expect("writes under 0.3.0");

    // Refused: the same version again, and the older one.
    let again = f.install(v2, 11).unwrap_err();
    assert!(again.to_string().contains("0.3.0 is not higher"), "{again}");
    let v1 = Arc::new(rt.load("bundled:kv", bundled("kv")).expect("kv"));
    let down = f.install(v1, 12).unwrap_err();
    assert!(down.to_string().contains("0.2.0 is not higher"), "{down}");
    assert_eq!(
        f.plugins().get("kv").expect("kv").description().version,
        "0.3.0"
    );

    // A plugin new to the set joins with its tables, empty.
    let users = Arc::new(
        rt.load("users-plugin", fixture("users-plugin"))
            .expect("users"),
    );
    let plan = f.install(users, 13).expect("a new plugin");
    assert_eq!(plan.from_version, None);
    assert!(
        plan.tables.iter().all(|t| t.change == ChangeKind::Added),
        "{plan:?}"
    );
    assert_eq!(f.store().read().len("kvs").expect("kvs"), 4);
}

/// A panicker command (`count`, `refuse`, `boom`): `count` answers how many commands its
/// instance has run.
fn panicker(command: &str) -> Entry {
    Entry {
        version: None,
        plugin: "panicker".into(),
        command: command.into(),
        payload: cbor(&()),
        timestamp_ms: 0,
    }
}

/// The commands of one log entry share one instance per plugin: a refusal keeps it, a trap
/// retires it, and the next entry starts fresh. Applied again from empty, the same entries
/// give the same answers.
#[test]
fn the_commands_of_one_entry_share_an_instance_until_one_traps() {
    let entries = [
        vec![
            "count", "count", "refuse", "count", "boom", "count", "count",
        ],
        vec!["count"],
    ];
    let answers = |fsm: &Fsm| {
        let mut index = 0;
        let mut out = Vec::new();
        for commands in &entries {
            let applied = fsm.apply_entry(|txn| {
                for c in commands {
                    index += 1;
                    out.push(match txn.apply(index, &panicker(c)) {
                        Ok(bytes) => format!("{c}: {}", decode::<u64>(&bytes)),
                        Err(FsmError::Call(CallError::Plugin { message, .. })) => {
                            format!("{c}: {message}")
                        }
                        Err(e) => format!("{c}: {:?}", e.kind()),
                    });
                }
                Ok::<_, Infallible>(())
            });
            assert!(applied.is_ok());
        }
        out
    };
    let fsm = fsm_with(&["panicker"]);
    let first = answers(&fsm);
    assert_eq!(
        first,
        [
            "count: 1",
            "count: 2",
            "refuse: refused as command 3 of this instance",
            "count: 4",
            "boom: Internal",
            "count: 1",
            "count: 2",
            "count: 1",
        ]
    );
    let again = fsm_with(&["panicker"]);
    assert_eq!(answers(&again), first, "a replay gets the same answers");
    assert_eq!(again.state_hash(), fsm.state_hash());

    // Alone (its own entry, as `Fsm::apply` takes it) every command gets a fresh instance.
    let alone = fsm_with(&["panicker"]);
    for i in 1..=3 {
        assert_eq!(
            decode::<u64>(&alone.apply(i, &panicker("count")).unwrap()),
            1
        );
    }
}

fn get_args(key: &str) -> kv::GetArgs {
    kv::GetArgs {
        tenancy: Default::default(),
        key: key.into(),
    }
}

/// The commands of one log entry run in one write transaction: readers see none of them
/// until the entry ends, a failing command among them leaves no trace while the others
/// stay, every table is stamped with the index of the command that changed it, and the
/// state is the one the same commands give applied one entry each.
#[test]
fn an_entry_of_several_commands_commits_at_once_and_drops_only_its_failed_ones() {
    let commands = [
        set("app/a", "1"),
        fsmhost_tests::entry("kv", kv::SET.name(), &"not a request"),
        set("app/b", "2"),
        entry(
            &kv::DELETE_TREE,
            &kv::DeleteTreeRequest {
                tenancy: Default::default(),
                prefix: "app/a".into(),
            },
        ),
        entry(
            &kv::SET,
            &kv::SetRequest {
                tenancy: Default::default(),
                key: String::new(),
                value: b"x".to_vec(),
                flags: 0,
            },
        ),
    ];
    let batched = fsm_with(&[]);
    let outcomes = batched
        .apply_entry(|txn| {
            let mut outcomes = Vec::new();
            for (i, c) in commands.iter().enumerate() {
                assert_eq!(txn.next_index(), i as u64 + 1);
                outcomes.push(txn.apply(i as u64 + 1, c).is_ok());
                let seen = batched
                    .query("kv", kv::GET.name(), &cbor(&get_args("app/b")))
                    .unwrap();
                assert_eq!(decode::<Option<kv::Entry>>(&seen.bytes), None, "mid-entry");
            }
            assert_eq!(batched.last_applied(), 0, "mid-entry");
            Ok::<_, Infallible>(outcomes)
        })
        .unwrap();
    assert_eq!(outcomes, [true, false, true, true, false]);
    assert_eq!(batched.last_applied(), 5);
    let b = batched
        .query("kv", kv::GET.name(), &cbor(&get_args("app/b")))
        .unwrap();
    let b = decode::<Option<kv::Entry>>(&b.bytes).expect("app/b stays");
    assert_eq!((b.value.as_slice(), b.create_index), (&b"2"[..], 3));
    let a = batched
        .query("kv", kv::GET.name(), &cbor(&get_args("app/a")))
        .unwrap();
    assert_eq!(decode::<Option<kv::Entry>>(&a.bytes), None, "deleted at 4");
    assert_eq!(a.index, 4, "the tables the get read last changed at 4");

    let alone = fsm_with(&[]);
    let one_each: Vec<bool> = apply_all(&alone, &commands)
        .iter()
        .map(Result::is_ok)
        .collect();
    assert_eq!(one_each, outcomes);
    assert_eq!(alone.state_hash(), batched.state_hash());

    // An entry whose application fails as a whole (this server could not apply it)
    // changes nothing, not even the commands before the failure.
    let failed = batched.apply_entry(|txn| {
        txn.apply(6, &set("app/c", "3")).expect("set");
        Err::<(), _>("this server gave up")
    });
    assert_eq!(failed, Err("this server gave up"));
    assert_eq!(batched.last_applied(), 5);
    assert_eq!(batched.state_hash(), alone.state_hash());
}
