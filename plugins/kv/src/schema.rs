//! The kv tables, after Consul's `agent/consul/state/kvs.go` schema: the records
//! ([`Entry`], [`Tombstone`]), their keys in a tenancy ([`KeyIn`]) and every index.
//!
//! `kvs`: `id` is the key (unique, prefix-capable), `session` the lock holder
//! (allow-missing); `tombstones` are left by deletes, keyed like `kvs`, so that the index
//! of a prefix never goes backwards after a delete (Consul's graveyard); `lock_delays`
//! (0.2.0) the keys whose lock a session held when it ended, which cannot be locked again
//! before a time (Consul's `lockDelay`, kept in the state here so that every server
//! decides alike); `tombstone_marks` (0.2.0) when tombstones were made, for their garbage
//! collection (module `gc`). The enterprise build adds a `namespace` index to each table of
//! keys.

use fsmhost_guest::{Index, Key, Table, Tenancy, serde_bytes};

use crate::EDITION;

use serde::{Deserialize, Serialize};

/// A key/value entry: Consul's `DirEntry`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value, opaque bytes.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Opaque flags for the application.
    pub flags: u64,
    /// Index of the write that created the key.
    pub create_index: u64,
    /// Index of the last write that changed the key.
    pub modify_index: u64,
    /// How many times the key was locked.
    pub lock_index: u64,
    /// The session holding the lock, if any.
    pub session: Option<String>,
    /// The key's partition and namespace (enterprise edition; empty in OSS).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// A deleted key (or deleted prefix) and the index of the delete.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// The deleted key, or the prefix of a delete-tree.
    pub key: String,
    /// Index of the delete.
    pub index: u64,
    /// The key's partition and namespace (enterprise edition; empty in OSS).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// A key in its tenancy: what `kvs.id` and `tombstones.id` are looked up by (a prefix for
/// their prefix lookups).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyIn {
    /// The partition and namespace (empty in OSS).
    pub tenancy: Tenancy,
    /// The key or prefix.
    pub key: String,
}

/// `key` in `tenancy`.
pub fn key_in(tenancy: &Tenancy, key: &str) -> KeyIn {
    KeyIn {
        tenancy: tenancy.clone(),
        key: key.to_string(),
    }
}

fn key_id(k: &KeyIn) -> Vec<u8> {
    k.tenancy.key(EDITION).string(&k.key).build()
}

fn key_prefix(k: &KeyIn) -> Vec<u8> {
    k.tenancy.key(EDITION).raw(k.key.as_bytes()).build()
}

fn tenancy_key(t: &Tenancy) -> Vec<u8> {
    t.key(EDITION).build()
}

/// `kvs.id`: the key (in its partition and namespace, enterprise edition).
pub static KVS_ID: Index<Entry, KeyIn> = Index::new(
    &KVS,
    "id",
    |e: &Entry, k| k.push(key_id(&key_in(&e.tenancy, &e.key))),
    key_id,
)
.unique()
.prefix(key_prefix);

/// `kvs.namespace` (enterprise edition): every key of a partition and namespace.
pub static KVS_NAMESPACE: Index<Entry, Tenancy> = Index::new(
    &KVS,
    "namespace",
    |e: &Entry, k| k.push(tenancy_key(&e.tenancy)),
    tenancy_key,
)
.prefix(tenancy_key);

/// `kvs.flags` (version 2): the keys with given flags.
pub static KVS_FLAGS: Index<Entry, u64> = Index::new(
    &KVS,
    "flags",
    |e: &Entry, k| k.push(Key::new().u64(e.flags)),
    |f: &u64| Key::new().u64(*f).build(),
);

/// `kvs.session`: the lock holder.
pub static KVS_SESSION: Index<Entry, String> = Index::new(
    &KVS,
    "session",
    |e: &Entry, k| {
        if let Some(s) = &e.session {
            k.push(Key::new().string(s))
        }
    },
    |s: &String| Key::new().string(s).build(),
)
.allow_missing();

/// The `kvs` table. Layout 2 (0.1.1): entries stored compact, without field names (layout
/// 1 had them: 61 bytes more an entry); [`crate::plugin`] migrates layout 1.
pub static KVS: Table<Entry> = Table::new(
    "kvs",
    &[
        &KVS_ID,
        &KVS_SESSION,
        #[cfg(feature = "enterprise")]
        &KVS_NAMESPACE,
        #[cfg(feature = "v2")]
        &KVS_FLAGS,
    ],
)
.layout(2)
.compact();

/// `tombstones.id`: the deleted key.
pub static TOMBSTONES_ID: Index<Tombstone, KeyIn> = Index::new(
    &TOMBSTONES,
    "id",
    |t: &Tombstone, k| k.push(key_id(&key_in(&t.tenancy, &t.key))),
    key_id,
)
.unique()
.prefix(key_prefix);

/// `tombstones.index` (0.2.0): the tombstones by the index of their delete, so that a
/// reap visits only those at or below its index, oldest first (module `gc`).
pub static TOMBSTONES_INDEX: Index<Tombstone, u64> = Index::new(
    &TOMBSTONES,
    "index",
    |t: &Tombstone, k| k.push(Key::new().u64(t.index)),
    |i: &u64| Key::new().u64(*i).build(),
);

/// The `tombstones` table. Layout 2 (0.1.1): compact, like [`KVS`]; the `index` index
/// since 0.2.0 (an added index changes no layout).
pub static TOMBSTONES: Table<Tombstone> = Table::new(
    "tombstones",
    &[
        &TOMBSTONES_ID,
        &TOMBSTONES_INDEX,
        #[cfg(feature = "enterprise")]
        &TOMBSTONES_NAMESPACE,
    ],
)
.layout(2)
.compact();

/// `tombstones.namespace` (enterprise edition): every tombstone of a partition and namespace.
pub static TOMBSTONES_NAMESPACE: Index<Tombstone, Tenancy> = Index::new(
    &TOMBSTONES,
    "namespace",
    |t: &Tombstone, k| k.push(tenancy_key(&t.tenancy)),
    tenancy_key,
)
.prefix(tenancy_key);

/// A key that cannot be locked before `until_ms`: Consul's lock-delay (`state.Delay`), set
/// when the session that held the key's lock ends ([`crate::RELEASE_SESSION`]). Consul
/// keeps it in memory on each server and checks it on the leader before the log; here it
/// is state, written by the log entry that ended the session and checked by a lock
/// against the leader's clock its entry carries (`Ctx::timestamp_ms`), so every server
/// gives the same answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LockDelay {
    /// The key.
    pub key: String,
    /// Until when (ms since the Unix epoch, the leader's clock) the key cannot be locked.
    pub until_ms: u64,
    /// The key's partition and namespace (enterprise edition; empty in OSS).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `lock_delays.id`: the key (in its partition and namespace, enterprise edition).
pub static LOCK_DELAYS_ID: Index<LockDelay, KeyIn> = Index::new(
    &LOCK_DELAYS,
    "id",
    |d: &LockDelay, k| k.push(key_id(&key_in(&d.tenancy, &d.key))),
    key_id,
)
.unique();

/// `lock_delays.until`: the delays by their end, so that the ended ones are found (and
/// dropped) without a scan of the table.
pub static LOCK_DELAYS_UNTIL: Index<LockDelay, u64> = Index::new(
    &LOCK_DELAYS,
    "until",
    |d: &LockDelay, k| k.push(Key::new().u64(d.until_ms)),
    |t: &u64| Key::new().u64(*t).build(),
);

/// `lock_delays.namespace` (enterprise edition): the delays of a partition and namespace.
pub static LOCK_DELAYS_NAMESPACE: Index<LockDelay, Tenancy> = Index::new(
    &LOCK_DELAYS,
    "namespace",
    |d: &LockDelay, k| k.push(tenancy_key(&d.tenancy)),
    tenancy_key,
)
.prefix(tenancy_key);

/// The `lock_delays` table (0.2.0), compact like [`KVS`].
pub static LOCK_DELAYS: Table<LockDelay> = Table::new(
    "lock_delays",
    &[
        &LOCK_DELAYS_ID,
        &LOCK_DELAYS_UNTIL,
        #[cfg(feature = "enterprise")]
        &LOCK_DELAYS_NAMESPACE,
    ],
)
.compact();

/// When tombstones were made (0.2.0): the highest FSM index of a tombstone made in a
/// [`crate::MARK_GRANULARITY_MS`] bucket of the leader's clock. Consul's leader keeps these
/// as in-memory hints (`TombstoneGC.Hint`, 30 s granularity); here they are state, written
/// by the command that leaves the tombstone, so that every server (and any future leader)
/// knows when each tombstone becomes due (module `gc`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TombstoneMark {
    /// The bucket: the entry's `timestamp_ms / MARK_GRANULARITY_MS`.
    pub bucket: u64,
    /// The highest index of a tombstone made in it.
    pub index: u64,
}

fn bucket_key(b: &u64) -> Vec<u8> {
    Key::new().u64(*b).build()
}

/// `tombstone_marks.id`: the bucket.
pub static TOMBSTONE_MARKS_ID: Index<TombstoneMark, u64> = Index::new(
    &TOMBSTONE_MARKS,
    "id",
    |m: &TombstoneMark, k| k.push(bucket_key(&m.bucket)),
    bucket_key,
)
.unique();

/// The `tombstone_marks` table (0.2.0), compact like [`KVS`]. Global: one clock for every
/// partition and namespace.
pub static TOMBSTONE_MARKS: Table<TombstoneMark> =
    Table::new("tombstone_marks", &[&TOMBSTONE_MARKS_ID]).compact();
