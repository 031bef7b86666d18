//! Consul's key/value store as an fsmhost plugin.
//!
//! Tables (Consul's `kvs` and `tombstones`, `agent/consul/state/kvs.go`):
//! - `kvs`: [`Entry`] records; `id` is the key (unique, prefix-capable), `session` the lock
//!   holder (allow-missing).
//! - `tombstones`: [`Tombstone`] records left by deletes, keyed like `kvs`, so that the index
//!   of a prefix never goes backwards after a delete (Consul's graveyard).
//!
//! Commands: `set`, `cas`, `delete`, `delete-cas`, `delete-tree`, `reap-tombstones`, `txn`.
//! Queries: `get`, `list`, `keys`, `txn-read`. Sessions and locks come later; their fields
//! are kept.
//!
//! HTTP (module [`http`]): Consul's `/v1/kv/<key>` and `/v1/txn`.

use fsmhost_guest::http::Route;
use fsmhost_guest::{
    Ctx, Edition, Error, Index, Key, KeyRange, Plugin, Table, Tenancy, Txn, serde_bytes,
};
use serde::{Deserialize, Serialize};

pub mod http;
pub mod txn;

/// The edition this build is (the `enterprise` cargo feature): the enterprise edition puts
/// every key in a partition and a namespace and reads `?ns=` and `?partition=`.
pub const EDITION: Edition = if cfg!(feature = "enterprise") {
    Edition::Enterprise
} else {
    Edition::Oss
};

/// The plugin's version. The `v2` feature builds the next release, which adds the
/// `kvs.flags` index (the upgrade tests install it over this one).
pub const VERSION: &str = if cfg!(feature = "v2") {
    "0.2.0"
} else {
    env!("CARGO_PKG_VERSION")
};

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
    "kvs",
    "id",
    |e: &Entry, k| k.push(key_id(&key_in(&e.tenancy, &e.key))),
    key_id,
)
.unique()
.prefix(key_prefix);

/// `kvs.namespace` (enterprise edition): every key of a partition and namespace.
pub static KVS_NAMESPACE: Index<Entry, Tenancy> = Index::new(
    "kvs",
    "namespace",
    |e: &Entry, k| k.push(tenancy_key(&e.tenancy)),
    tenancy_key,
)
.prefix(tenancy_key);

/// `kvs.flags` (version 2): the keys with given flags.
pub static KVS_FLAGS: Index<Entry, u64> = Index::new(
    "kvs",
    "flags",
    |e: &Entry, k| k.push(Key::new().u64(e.flags)),
    |f: &u64| Key::new().u64(*f).build(),
);

/// `kvs.session`: the lock holder.
pub static KVS_SESSION: Index<Entry, String> = Index::new(
    "kvs",
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
/// 1 had them: 61 bytes more an entry); [`plugin`] migrates layout 1.
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
    "tombstones",
    "id",
    |t: &Tombstone, k| k.push(key_id(&key_in(&t.tenancy, &t.key))),
    key_id,
)
.unique()
.prefix(key_prefix);

/// The `tombstones` table. Layout 2 (0.1.1): compact, like [`KVS`].
pub static TOMBSTONES: Table<Tombstone> = Table::new(
    "tombstones",
    &[
        &TOMBSTONES_ID,
        #[cfg(feature = "enterprise")]
        &TOMBSTONES_NAMESPACE,
    ],
)
.layout(2)
.compact();

/// `tombstones.namespace` (enterprise edition): every tombstone of a partition and namespace.
pub static TOMBSTONES_NAMESPACE: Index<Tombstone, Tenancy> = Index::new(
    "tombstones",
    "namespace",
    |t: &Tombstone, k| k.push(tenancy_key(&t.tenancy)),
    tenancy_key,
)
.prefix(tenancy_key);

/// `set`: writes a key (Consul's `KVSSet`).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct SetRequest {
    /// The key.
    pub key: String,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Flags.
    #[serde(default)]
    pub flags: u64,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `cas`: writes a key if its ModifyIndex matches (0: only if it does not exist).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct CasRequest {
    /// The key.
    pub key: String,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Flags.
    #[serde(default)]
    pub flags: u64,
    /// The ModifyIndex the key must have; 0 means the key must not exist.
    pub index: u64,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `delete`: removes a key.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct DeleteRequest {
    /// The key.
    pub key: String,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `delete-cas`: removes a key if its ModifyIndex matches.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct DeleteCasRequest {
    /// The key.
    pub key: String,
    /// The ModifyIndex the key must have; 0 never deletes.
    pub index: u64,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `delete-tree`: removes every key under a prefix.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct DeleteTreeRequest {
    /// The prefix; empty deletes everything.
    pub prefix: String,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `reap-tombstones`: drops tombstones at or below an index (Consul's `TombstoneReap`).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ReapRequest {
    /// Tombstones with an index up to this one are dropped.
    pub index: u64,
}

/// `get` arguments.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct GetArgs {
    /// The key.
    pub key: String,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `list` arguments.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ListArgs {
    /// The prefix.
    pub prefix: String,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `list` result.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ListResult {
    /// Entries under the prefix, in key order.
    pub entries: Vec<Entry>,
    /// Consul's index for the prefix: it never goes backwards after a delete.
    pub index: u64,
}

/// `keys` arguments.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct KeysArgs {
    /// The prefix.
    pub prefix: String,
    /// Keys are cut after the first separator following the prefix, and deduplicated.
    #[serde(default)]
    pub separator: Option<String>,
    /// Partition and namespace (enterprise edition; OSS refuses any but the default).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

/// `keys` result.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct KeysResult {
    /// The keys (or key prefixes up to the separator), in order.
    pub keys: Vec<String>,
    /// Consul's index for the prefix, as for `list`.
    pub index: u64,
}

/// Refuses a key the `kvs.id` index cannot hold: empty (for a write), or with a NUL byte
/// (the index's terminator, which would let one key match another's prefix).
fn check_key(key: &str, what: &str, allow_empty: bool) -> Result<(), Error> {
    if key.is_empty() && !allow_empty {
        return Err(Error::bad_request(format!("{what} must not be empty")));
    }
    if key.contains('\0') {
        return Err(Error::bad_request(format!(
            "{what} {key:?} contains a NUL byte"
        )));
    }
    Ok(())
}

/// Writes a key as Consul's `kvsSetTxn` does: CreateIndex and Session are kept from an
/// existing entry, LockIndex comes from the request (0), and an entry equal to the stored one
/// (value, flags, session, lock index) is not written at all.
fn write_entry(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    existing: Option<Entry>,
    at: KeyIn,
    value: Vec<u8>,
    flags: u64,
) -> Result<bool, Error> {
    let mut entry = Entry {
        key: at.key,
        value,
        flags,
        create_index: ctx.index,
        modify_index: ctx.index,
        lock_index: 0,
        session: None,
        tenancy: at.tenancy,
    };
    if let Some(old) = existing {
        entry.create_index = old.create_index;
        entry.session = old.session.clone();
        let unchanged = old.value == entry.value
            && old.flags == entry.flags
            && old.session == entry.session
            && old.lock_index == entry.lock_index;
        if unchanged {
            return Ok(true);
        }
    }
    KVS.insert(tx, &entry)?;
    Ok(true)
}

/// The key a request names, checked, in the request's resolved tenancy.
fn target(tenancy: &Tenancy, key: &str, what: &str, allow_empty: bool) -> Result<KeyIn, Error> {
    check_key(key, what, allow_empty)?;
    Ok(key_in(&tenancy.clone().resolve(EDITION)?, key))
}

pub(crate) fn set(tx: &mut dyn Txn, ctx: &Ctx, req: SetRequest) -> Result<bool, Error> {
    let at = target(&req.tenancy, &req.key, "key", false)?;
    let existing = KVS_ID.get(tx, &at)?;
    write_entry(tx, ctx, existing, at, req.value, req.flags)
}

pub(crate) fn cas(tx: &mut dyn Txn, ctx: &Ctx, req: CasRequest) -> Result<bool, Error> {
    let at = target(&req.tenancy, &req.key, "key", false)?;
    let existing = KVS_ID.get(tx, &at)?;
    let matches = match &existing {
        None => req.index == 0,
        Some(e) => req.index != 0 && e.modify_index == req.index,
    };
    if !matches {
        return Ok(false);
    }
    write_entry(tx, ctx, existing, at, req.value, req.flags)
}

/// Deletes `entry` and leaves a tombstone at the delete's index.
fn remove_entry(tx: &mut dyn Txn, ctx: &Ctx, entry: &Entry) -> Result<(), Error> {
    KVS.delete(tx, entry)?;
    TOMBSTONES.insert(
        tx,
        &Tombstone {
            key: entry.key.clone(),
            index: ctx.index,
            tenancy: entry.tenancy.clone(),
        },
    )?;
    Ok(())
}

pub(crate) fn delete(tx: &mut dyn Txn, ctx: &Ctx, req: DeleteRequest) -> Result<bool, Error> {
    let at = target(&req.tenancy, &req.key, "key", false)?;
    if let Some(e) = KVS_ID.get(tx, &at)? {
        remove_entry(tx, ctx, &e)?;
    }
    Ok(true)
}

pub(crate) fn delete_cas(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    req: DeleteCasRequest,
) -> Result<bool, Error> {
    let at = target(&req.tenancy, &req.key, "key", false)?;
    match KVS_ID.get(tx, &at)? {
        // Consul answers true for a key that is already gone.
        None => Ok(true),
        Some(e) if req.index != 0 && e.modify_index == req.index => {
            remove_entry(tx, ctx, &e)?;
            Ok(true)
        }
        Some(_) => Ok(false),
    }
}

pub(crate) fn delete_tree(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    req: DeleteTreeRequest,
) -> Result<bool, Error> {
    let at = target(&req.tenancy, &req.prefix, "prefix", true)?;
    let deleted = KVS_ID.delete_prefix(tx, &at)?;
    // One tombstone for the whole prefix; none for "" (every watcher sees the table index).
    if deleted > 0 && !at.key.is_empty() {
        TOMBSTONES.insert(
            tx,
            &Tombstone {
                key: at.key,
                index: ctx.index,
                tenancy: at.tenancy,
            },
        )?;
    }
    Ok(true)
}

fn reap_tombstones(tx: &mut dyn Txn, _ctx: &Ctx, req: ReapRequest) -> Result<u64, Error> {
    let all = KeyRange::Prefix(Vec::new());
    let stale: Vec<Tombstone> = TOMBSTONES_ID
        .iter_range(tx, all)
        .filter(|t| t.as_ref().map_or(true, |t| t.index <= req.index))
        .collect::<Result<_, _>>()?;
    for t in &stale {
        TOMBSTONES.delete(tx, t)?;
    }
    Ok(stale.len() as u64)
}

fn get(tx: &dyn Txn, args: GetArgs) -> Result<Option<Entry>, Error> {
    let at = target(&args.tenancy, &args.key, "key", true)?;
    KVS_ID.get(tx, &at)
}

/// Consul's `kvsMaxIndex`: the last write to `kvs` or `tombstones`.
fn kvs_max_index(tx: &dyn Txn) -> Result<u64, Error> {
    Ok(tx
        .table_index(KVS.name())?
        .max(tx.table_index(TOMBSTONES.name())?))
}

/// The index of a list or keys result, as Consul computes it (`kvsListTxn`, `KVSKeys`): the
/// highest index among the entries and the tombstones under the prefix; when the prefix is
/// empty, or that is 0 (no entry, no tombstone), the last write to either table. So the
/// index a client sees for a prefix never goes backwards after a delete.
fn list_index(tx: &dyn Txn, prefix: &KeyIn, entries_max: u64) -> Result<u64, Error> {
    if prefix.key.is_empty() {
        return kvs_max_index(tx);
    }
    let mut max = entries_max;
    for t in TOMBSTONES_ID.iter_prefix(tx, prefix)? {
        max = max.max(t?.index);
    }
    if max == 0 {
        return kvs_max_index(tx);
    }
    Ok(max)
}

fn list(tx: &dyn Txn, args: ListArgs) -> Result<ListResult, Error> {
    let at = target(&args.tenancy, &args.prefix, "prefix", true)?;
    let entries: Vec<Entry> = KVS_ID.iter_prefix(tx, &at)?.collect::<Result<_, _>>()?;
    let live = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
    let index = list_index(tx, &at, live)?;
    Ok(ListResult { entries, index })
}

fn keys(tx: &dyn Txn, args: KeysArgs) -> Result<KeysResult, Error> {
    let at = target(&args.tenancy, &args.prefix, "prefix", true)?;
    let mut out: Vec<String> = Vec::new();
    let mut live = 0;
    for e in KVS_ID.iter_prefix(tx, &at)? {
        let e = e?;
        live = live.max(e.modify_index);
        let key = match args.separator.as_deref().filter(|s| !s.is_empty()) {
            Some(sep) => match e.key[at.key.len()..].find(sep) {
                Some(i) => e.key[..at.key.len() + i + sep.len()].to_string(),
                None => e.key,
            },
            None => e.key,
        };
        if out.last() != Some(&key) {
            out.push(key);
        }
    }
    let index = list_index(tx, &at, live)?;
    Ok(KeysResult { keys: out, index })
}

/// The kv plugin.
pub fn plugin() -> Plugin {
    Plugin::new("kv", VERSION, EDITION.name())
        .table(&KVS)
        .table(&TOMBSTONES)
        .migration("kvs", 1, |e: Entry| Ok(vec![KVS.migrated(&e)?]))
        .migration("tombstones", 1, |t: Tombstone| {
            Ok(vec![TOMBSTONES.migrated(&t)?])
        })
        .command("set", set)
        .command("cas", cas)
        .command("delete", delete)
        .command("delete-cas", delete_cas)
        .command("delete-tree", delete_tree)
        .command("reap-tombstones", reap_tombstones)
        .command("txn", txn::txn)
        .query("get", get)
        .query("list", list)
        .query("keys", keys)
        .query("txn-read", txn::txn_read)
        .route(
            Route::get(http::KV_PATH).prefix(),
            http::route_get,
            http::render_get,
        )
        .route(
            Route::put(http::KV_PATH).prefix(),
            http::route_put,
            http::render_bool,
        )
        .route(
            Route::delete(http::KV_PATH).prefix(),
            http::route_delete,
            http::render_bool,
        )
        .route(Route::put("/v1/txn"), http::route_txn, http::render_txn)
}

fsmhost_guest::export_plugin!(plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use fsmhost_guest::{AnyTable, Harness, Txn};

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
        h.query(
            "get",
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
        assert!(h.apply::<_, bool>("set", &set_req("a", "1")).unwrap());
        assert!(h.apply::<_, bool>("set", &set_req("a", "2")).unwrap());
        let e = get_entry(&h, "a").unwrap();
        assert_eq!(
            (e.create_index, e.modify_index, e.value),
            (1, 2, b"2".to_vec())
        );
    }

    #[test]
    fn set_that_changes_nothing_skips_the_write() {
        let mut h = h();
        h.apply::<_, bool>("set", &set_req("a", "1")).unwrap();
        h.apply::<_, bool>("set", &set_req("a", "1")).unwrap();
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
        assert!(h.apply::<_, bool>("cas", &req(0)).unwrap());
        assert!(!h.apply::<_, bool>("cas", &req(0)).unwrap());
        assert!(!h.apply::<_, bool>("cas", &req(7)).unwrap(), "stale index");
        assert!(h.apply::<_, bool>("cas", &req(1)).unwrap());
    }

    #[test]
    fn delete_cas_rules() {
        let mut h = h();
        h.apply::<_, bool>("set", &set_req("a", "1")).unwrap();
        let req = |index| DeleteCasRequest {
            tenancy: Default::default(),
            key: "a".into(),
            index,
        };
        assert!(
            !h.apply::<_, bool>("delete-cas", &req(0)).unwrap(),
            "0 never deletes"
        );
        assert!(!h.apply::<_, bool>("delete-cas", &req(9)).unwrap());
        assert!(get_entry(&h, "a").is_some());
        assert!(h.apply::<_, bool>("delete-cas", &req(1)).unwrap());
        assert!(get_entry(&h, "a").is_none());
        assert!(
            h.apply::<_, bool>("delete-cas", &req(1)).unwrap(),
            "gone is true"
        );
    }

    #[test]
    fn tombstones_keep_the_prefix_index_from_going_backwards() {
        let mut h = h();
        h.apply::<_, bool>("set", &set_req("app/a", "1")).unwrap(); // 1
        h.apply::<_, bool>("set", &set_req("app/b", "2")).unwrap(); // 2
        h.apply::<_, bool>(
            "delete",
            &DeleteRequest {
                tenancy: Default::default(),
                key: "app/b".into(),
            },
        )
        .unwrap(); // 3
        let l: ListResult = h
            .query(
                "list",
                &ListArgs {
                    tenancy: Default::default(),
                    prefix: "app/".into(),
                },
            )
            .unwrap();
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.index, 3, "the delete's index, not app/a's");
        let reaped: u64 = h
            .apply("reap-tombstones", &ReapRequest { index: 3 })
            .unwrap();
        assert_eq!(reaped, 1);
        let l: ListResult = h
            .query(
                "list",
                &ListArgs {
                    tenancy: Default::default(),
                    prefix: "app/".into(),
                },
            )
            .unwrap();
        assert_eq!(l.index, 1);
    }

    #[test]
    fn delete_tree_leaves_one_tombstone_for_the_prefix() {
        let mut h = h();
        for k in ["x/1", "x/2", "x/3/4", "y"] {
            h.apply::<_, bool>("set", &set_req(k, k)).unwrap();
        }
        h.apply::<_, bool>(
            "delete-tree",
            &DeleteTreeRequest {
                tenancy: Default::default(),
                prefix: "x/".into(),
            },
        )
        .unwrap();
        assert_eq!(h.store().len("kvs"), 1);
        assert_eq!(h.store().len("tombstones"), 1);
        let l: ListResult = h
            .query(
                "list",
                &ListArgs {
                    tenancy: Default::default(),
                    prefix: "x/".into(),
                },
            )
            .unwrap();
        assert_eq!((l.entries.len(), l.index), (0, 5));
        // Deleting everything leaves no tombstone.
        h.apply::<_, bool>(
            "delete-tree",
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
            h.apply::<_, bool>("set", &set_req(k, "v")).unwrap();
        }
        let r: KeysResult = h
            .query(
                "keys",
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
            h.apply::<_, bool>("set", &set_req(&format!("k/{i:05}"), "v"))
                .unwrap();
        }
        let l: ListResult = h
            .query(
                "list",
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
        h.apply::<_, bool>("set", &set_req("x/a/1", "v")).unwrap(); // 1
        let list = |h: &Harness, p: &str| -> u64 {
            h.query::<_, ListResult>(
                "list",
                &ListArgs {
                    tenancy: Default::default(),
                    prefix: p.into(),
                },
            )
            .unwrap()
            .index
        };
        assert_eq!(list(&h, "x/a/"), 1);
        h.apply::<_, bool>(
            "delete-tree",
            &DeleteTreeRequest {
                tenancy: Default::default(),
                prefix: "x/".into(),
            },
        )
        .unwrap(); // 2
        assert_eq!(list(&h, "x/a/"), 2);
        h.apply::<_, bool>("set", &set_req("y", "v")).unwrap(); // 3
        h.apply::<_, bool>(
            "delete-tree",
            &DeleteTreeRequest {
                tenancy: Default::default(),
                prefix: "".into(),
            },
        )
        .unwrap(); // 4
        assert_eq!(list(&h, ""), 4);
        let keys: KeysResult = h
            .query(
                "keys",
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
        let err = h.apply::<_, bool>("set", &set_req("", "v")).unwrap_err();
        assert_eq!(err.message, "key must not be empty");
        let err = h
            .apply::<_, bool>("set", &set_req("a\0b", "v"))
            .unwrap_err();
        assert_eq!(err.message, "key \"a\\0b\" contains a NUL byte");
        h.apply::<_, bool>("set", &set_req("a", "v")).unwrap();
        let err = h
            .query::<_, KeysResult>(
                "keys",
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
        let mut h = Harness::new(plugin().command("boom", boom)).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            h.apply::<_, bool>("boom", &set_req("a", "1"))
        }));
        assert!(outcome.is_err());
        assert_eq!(h.store().len("kvs"), 0);
        assert_eq!(h.store().table_index("kvs"), Ok(0));
    }

    #[test]
    fn malformed_payload_is_a_bad_request() {
        let mut h = h();
        let err = h.apply::<_, bool>("set", &"not a set request").unwrap_err();
        assert_eq!(err.kind, fsmhost_guest::ErrorKind::BadRequest);
        assert!(err.message.contains("payload of command set"), "{err}");
    }
}
