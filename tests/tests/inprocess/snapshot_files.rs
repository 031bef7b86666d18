//! Snapshot files through the host's public API, with real wasm plugins: a state.bin
//! round trip (unique, multi-valued and allow-missing indexes), damage anywhere in the
//! file refused without a panic, `.tmp` leftovers removed, and snapshots written under
//! another plugin set or schema refused by name.

use crate::fsm_with;
use example_users_plugin::{self as users, Register};
use fsmhost::fsm::{Entry, Fsm};
use fsmhost::raft::StoredMembership;
use fsmhost::raft::depot::read_received;
use fsmhost::snapshot::SnapshotError;
use fsmhost::snapshot::state_file::{StateHeader, StateReader};
use fsmhost::snapshot::store::{self, SnapshotStore};
use fsmhost_plugin_kv as kv;
use fsmhost_tests::{cbor, entry};
use std::path::Path;

/// A state machine of kv, and of the example users plugin if `with_users`.
fn fsm(with_users: bool) -> Fsm {
    fsm_with(if with_users { &["users-plugin"] } else { &[] })
}

/// Applies a mix of kv writes (sets and a delete-tree, so tombstones too) and users with
/// zero, one or several groups, with and without an email.
fn fill(f: &Fsm, with_users: bool) {
    let mut index = f.last_applied();
    let mut apply = |e: Entry| {
        index += 1;
        f.apply(index, &e).expect("applied");
    };
    for i in 0..200 {
        apply(entry(
            "kv",
            kv::SET.name(),
            &kv::SetRequest {
                tenancy: Default::default(),
                key: format!("app/{:02}/{i}", i % 17),
                value: vec![i as u8; i % 50],
                flags: i as u64,
            },
        ));
    }
    apply(entry(
        "kv",
        kv::DELETE_TREE.name(),
        &kv::DeleteTreeRequest {
            tenancy: Default::default(),
            prefix: "app/03".into(),
        },
    ));
    if with_users {
        for i in 0..50 {
            let groups = (0..i % 4).map(|g| format!("g{g}")).collect();
            apply(entry(
                "users",
                users::REGISTER.name(),
                &Register {
                    name: format!("user{i}"),
                    email: (i % 3 != 0).then(|| format!("User{i}@Example.com")),
                    groups,
                },
            ));
        }
    }
}

fn header(f: &Fsm) -> StateHeader {
    StateHeader::new(
        &f.plugins(),
        f.last_applied(),
        None,
        StoredMembership::default(),
        f.system(),
    )
}

/// Writes a snapshot of `f` into a new store under `dir`; returns its state.bin path.
fn snapshot(f: &Fsm, dir: &Path) -> std::path::PathBuf {
    let store = SnapshotStore::open(dir.join("snapshots"), 2).expect("snapshot dir");
    let snap = store
        .create(&f.store().read(), &header(f))
        .expect("written");
    store::verify(&snap.path).expect("meta.json describes state.bin");
    snap.state_path()
}

#[test]
fn state_bin_round_trips_every_index_kind() {
    let a = fsm(true);
    fill(&a, true);
    // The host's own replicated state travels in the header.
    let autopilot = fsmhost::autopilot::ConfigUpdate {
        config: fsmhost::autopilot::AutopilotConfig {
            min_quorum: 3,
            ..Default::default()
        },
        cas: Some(0),
    };
    assert!(a.set_autopilot(&autopilot, 7));
    let dir = tempfile::tempdir().unwrap();
    let state = snapshot(&a, dir.path());

    let b = fsm(true);
    let p = read_received(&b, &state).expect("restores");
    assert_eq!(p.header.fsm_index, a.last_applied());
    b.restore(
        p.plugins,
        p.store,
        p.header.system.clone(),
        p.header.fsm_index,
    );
    assert_eq!(b.system(), a.system());
    assert_eq!(b.state_hash(), a.state_hash());
    assert_eq!(b.last_applied(), a.last_applied());
    // The restored indexes answer queries as the originals do.
    for (plugin, query, args) in [
        ("users", users::BY_GROUP.name(), cbor(&"g2")),
        ("users", users::BY_PREFIX.name(), cbor(&"user1")),
        (
            "kv",
            kv::KEYS.name(),
            cbor(&kv::KeysArgs {
                tenancy: Default::default(),
                prefix: "app/".into(),
                separator: Some("/".into()),
            }),
        ),
    ] {
        assert_eq!(
            a.query(plugin, query, &args).unwrap(),
            b.query(plugin, query, &args).unwrap(),
            "{plugin} {query}"
        );
    }
    // Both stores go on identically.
    let more = entry(
        "users",
        users::REGISTER.name(),
        &Register {
            name: "late".into(),
            email: Some("user1@example.com".into()), // taken: fails the same way on both
            groups: vec![],
        },
    );
    let next = a.last_applied() + 1;
    assert_eq!(a.apply(next, &more), b.apply(next, &more));
    assert_eq!(a.state_hash(), b.state_hash());

    // stats() counts what restore restored.
    let file = std::fs::File::open(&state).unwrap();
    let (_, stats) = StateReader::open(file)
        .and_then(StateReader::stats)
        .unwrap();
    let users = stats.iter().find(|t| t.name == "users").unwrap();
    assert_eq!(users.records, 50);
    assert_eq!(users.plugin, "users");
    assert_eq!(
        users.bytes,
        a.store().read().bytes("users").unwrap(),
        "the same measure as the store's"
    );
}

#[test]
fn damage_anywhere_is_refused_without_a_panic() {
    let a = fsm(true);
    fill(&a, true);
    let dir = tempfile::tempdir().unwrap();
    let state = snapshot(&a, dir.path());
    let good = std::fs::read(&state).unwrap();
    let b = fsm(true);
    let damaged = dir.path().join("damaged.bin");
    let step = (good.len() / 97).max(1);
    for pos in (0..good.len()).step_by(step) {
        let mut bytes = good.clone();
        bytes[pos] ^= 0x5a;
        std::fs::write(&damaged, &bytes).unwrap();
        match read_received(&b, &damaged) {
            Err(SnapshotError::Corrupt(_)) => {}
            other => panic!(
                "a flipped byte at {pos} of {}: {:?}",
                good.len(),
                other.err()
            ),
        }
    }
    for len in [0, 5, 14, 20, good.len() / 2, good.len() - 1] {
        std::fs::write(&damaged, &good[..len]).unwrap();
        assert!(
            matches!(read_received(&b, &damaged), Err(SnapshotError::Corrupt(_))),
            "truncated to {len}"
        );
    }
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"x");
    std::fs::write(&damaged, &trailing).unwrap();
    let e = read_received(&b, &damaged).err().unwrap().to_string();
    assert!(e.contains("follow"), "{e}");
    // The store's CRC check names the file.
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    std::fs::write(&state, &flipped).unwrap();
    let e = store::verify(state.parent().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("state.bin") && e.contains("CRC"), "{e}");
}

/// A state.bin valid in every other way whose recorded state hash is wrong (the issue's
/// hostile archive) is refused by the streaming check, which keeps no row; the good one
/// passes it.
#[test]
fn a_wrong_state_hash_is_refused_before_any_row_is_kept() {
    use std::io::{Read, Write};
    let a = fsm(true);
    fill(&a, true);
    let dir = tempfile::tempdir().unwrap();
    let state = snapshot(&a, dir.path());
    let check = |path: &Path| {
        let file = std::fs::File::open(path).unwrap();
        fsmhost::snapshot::state_file::StateReader::open(file).and_then(|r| r.check_hash())
    };
    check(&state).expect("the genuine state.bin passes");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&state).unwrap())
        .read_to_end(&mut plain)
        .unwrap();
    let last = plain.len() - 1;
    plain[last] ^= 1;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&plain).unwrap();
    let forged = dir.path().join("forged.bin");
    std::fs::write(&forged, gz.finish().unwrap()).unwrap();
    let e = check(&forged).unwrap_err().to_string();
    assert!(e.contains("checked before restoring any row"), "{e}");
}

#[test]
fn leftovers_of_an_interrupted_write_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snapshots");
    std::fs::create_dir_all(snaps.join("3-100-1700000000000.tmp")).unwrap();
    std::fs::write(snaps.join("receiving-1-2.tmp"), b"partial").unwrap();
    std::fs::create_dir_all(snaps.join("3-90-1699999999999")).unwrap();
    let store = SnapshotStore::open(snaps.clone(), 2).unwrap();
    let left: Vec<String> = std::fs::read_dir(&snaps)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["3-90-1699999999999".to_string()]);
    assert_eq!(store.list().len(), 1);
}

#[test]
fn another_plugin_set_or_schema_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let with_users = fsm(true);
    fill(&with_users, true);
    let state = snapshot(&with_users, &dir.path().join("a"));

    let kv_only = fsm(false);
    let e = read_received(&kv_only, &state).err().unwrap();
    assert!(
        matches!(&e, SnapshotError::Incompatible(m) if m.contains("plugin users 0.1.0 (oss), which is not loaded")),
        "{e}"
    );

    let small = fsm(false);
    fill(&small, false);
    let state = snapshot(&small, &dir.path().join("b"));
    let e = read_received(&with_users, &state)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("plugin users 0.1.0 is loaded but the snapshot has no state for it"),
        "{e}"
    );

    // The same plugins with one index declared differently in the snapshot.
    let mut h = header(&with_users);
    let users = h.plugins.iter_mut().find(|p| p.name == "users").unwrap();
    let group = users.tables[0]
        .indexes
        .iter_mut()
        .find(|ix| ix.name == "group")
        .unwrap();
    group.unique = true;
    let path = dir.path().join("other-schema.bin");
    let out = std::fs::File::create(&path).unwrap();
    fsmhost::snapshot::state_file::write(&with_users.store().read(), &h, out).unwrap();
    let e = read_received(&with_users, &path).err().unwrap().to_string();
    assert!(
        e.contains("plugin users: table users index group is declared differently")
            && e.contains("snapshot: unique, multi, allow-missing")
            && e.contains("loaded: multi, allow-missing"),
        "{e}"
    );

    // Another version of the same plugin.
    let mut h = header(&with_users);
    h.plugins[0].version = "0.0.9".into();
    let out = std::fs::File::create(&path).unwrap();
    fsmhost::snapshot::state_file::write(&with_users.store().read(), &h, out).unwrap();
    let e = read_received(&with_users, &path).err().unwrap().to_string();
    assert!(
        e.contains("plugin kv: the snapshot was written by version 0.0.9, the loaded one is 0.2.0"),
        "{e}"
    );
}
