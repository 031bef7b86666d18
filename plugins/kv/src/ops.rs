//! The kv operations, one function per command or query, as Consul's
//! `agent/consul/state/kvs.go` has one per operation: writes keep the tombstones and
//! index rules, reads report the index Consul's blocking queries use.

use fsmhost_guest::{Ctx, Error, Tenancy, Txn};

use crate::gc;
use crate::*;

/// Refuses a key the `kvs.id` index cannot hold: empty (for a write), or with a NUL byte
/// (the index's terminator, which would let one key match another's prefix).
pub(crate) fn check_key(key: &str, what: &str, allow_empty: bool) -> Result<(), Error> {
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
pub(crate) fn write_entry(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    existing: Option<Entry>,
    at: KeyIn,
    value: Vec<u8>,
    flags: u64,
) -> Result<bool, Error> {
    let entry = Entry {
        key: at.key,
        value,
        flags,
        create_index: existing.as_ref().map_or(ctx.index, |e| e.create_index),
        modify_index: ctx.index,
        lock_index: 0,
        session: existing.as_ref().and_then(|e| e.session.clone()),
        tenancy: at.tenancy,
    };
    put_entry(tx, existing.as_ref(), &entry)?;
    Ok(true)
}

/// Stores `entry` over `existing` unless it changes nothing Consul compares (`DirEntry.Equal`:
/// value, flags, session, lock index), as the end of `kvsSetTxn`.
pub(crate) fn put_entry(
    tx: &mut dyn Txn,
    existing: Option<&Entry>,
    entry: &Entry,
) -> Result<(), Error> {
    if let Some(old) = existing {
        let unchanged = old.value == entry.value
            && old.flags == entry.flags
            && old.session == entry.session
            && old.lock_index == entry.lock_index;
        if unchanged {
            return Ok(());
        }
    }
    KVS.insert(tx, entry)?;
    Ok(())
}

/// The key a request names, checked, in the request's resolved tenancy.
pub(crate) fn target(
    tenancy: &Tenancy,
    key: &str,
    what: &str,
    allow_empty: bool,
) -> Result<KeyIn, Error> {
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
pub(crate) fn remove_entry(tx: &mut dyn Txn, ctx: &Ctx, entry: &Entry) -> Result<(), Error> {
    KVS.delete(tx, entry)?;
    gc::leave_tombstone(tx, ctx, entry.key.clone(), entry.tenancy.clone())
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
        gc::leave_tombstone(tx, ctx, at.key, at.tenancy)?;
    }
    Ok(true)
}

pub(crate) fn get(tx: &dyn Txn, args: GetArgs) -> Result<Option<Entry>, Error> {
    let at = target(&args.tenancy, &args.key, "key", true)?;
    KVS_ID.get(tx, &at)
}

/// Consul's `kvsMaxIndex`: the last write to `kvs` or `tombstones`.
pub(crate) fn kvs_max_index(tx: &dyn Txn) -> Result<u64, Error> {
    Ok(tx
        .table_index(KVS.name())?
        .max(tx.table_index(TOMBSTONES.name())?))
}

/// The index of a list or keys result, as Consul computes it (`kvsListTxn`, `KVSKeys`): the
/// highest index among the entries and the tombstones under the prefix; when the prefix is
/// empty, or that is 0 (no entry, no tombstone), the last write to either table. So the
/// index a client sees for a prefix never goes backwards after a delete.
pub(crate) fn list_index(tx: &dyn Txn, prefix: &KeyIn, entries_max: u64) -> Result<u64, Error> {
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

pub(crate) fn list(tx: &dyn Txn, args: ListArgs) -> Result<ListResult, Error> {
    let at = target(&args.tenancy, &args.prefix, "prefix", true)?;
    let entries: Vec<Entry> = KVS_ID.iter_prefix(tx, &at)?.collect::<Result<_, _>>()?;
    let live = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
    let index = list_index(tx, &at, live)?;
    Ok(ListResult { entries, index })
}

pub(crate) fn keys(tx: &dyn Txn, args: KeysArgs) -> Result<KeysResult, Error> {
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
