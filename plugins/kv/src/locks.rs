//! Locks, as Consul's `agent/consul/state/kvs.go` (`kvsLockTxn`, `kvsUnlockTxn`), the
//! lock-delay of `agent/consul/kvs_endpoint.go` (`kvsPreApply`), and the release of a
//! session's keys of `agent/consul/state/session.go` (`deleteSessionTxn`).
//!
//! A key is locked by a live session: one the catalog plugin's `sessions` table holds
//! ([`fsmhost_schema_sessions::SESSIONS`], read here). Locking sets the entry's session
//! and value, and bumps its LockIndex unless the session already held it; another
//! session's lock refuses it (`false`). Unlocking by the holder clears the session. When a
//! session ends, the catalog sends [`crate::RELEASE_SESSION`] in the same transaction: its
//! keys are released (or deleted, for the `delete` behavior), and each gets the session's
//! lock-delay, a time before which it cannot be locked again ([`crate::LockDelay`]).
//!
//! Session IDs are UUIDs, which Consul's indexes compare without regard to case: a lock
//! stores the session's ID as the `sessions` table has it, and the checks here compare
//! IDs without regard to ASCII case.

use fsmhost_guest::{Bound, Ctx, Error, Key, KeyRange, Tenancy, Txn};
use fsmhost_schema_sessions::ReleaseSession;

use crate::*;

/// Why a lock or an unlock did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The request named no session.
    MissingSession,
    /// No live session has this ID.
    InvalidSession(String),
    /// Another session holds the lock.
    Held,
    /// The key's lock-delay has not ended.
    Delayed,
    /// An unlock by a session that does not hold the lock (or of a key that is gone).
    NotHeld,
}

impl Refused {
    /// Consul's `/v1/txn` message for this refusal of an operation on `key`.
    pub(crate) fn txn_message(&self, key: &str) -> String {
        match self {
            Refused::MissingSession => "missing session".into(),
            Refused::InvalidSession(s) => format!("invalid session {s:?}"),
            Refused::Held => format!("failed to lock key {key:?}, lock is already held"),
            Refused::Delayed => format!("failed to lock key {key:?} due to lock delay"),
            Refused::NotHeld => format!(
                "failed to unlock key {key:?}, lock isn't held, or is held by another session"
            ),
        }
    }

    /// The answer of `PUT /v1/kv/<key>?acquire|release`: `false` for a lock held or
    /// delayed and an unlock by another session (Consul's), an error for a missing or
    /// unknown session (Consul's text; a 400 here, where Consul answers 500).
    fn into_answer(self) -> Result<bool, Error> {
        match self {
            Refused::MissingSession | Refused::InvalidSession(_) => {
                Err(Error::bad_request(self.txn_message("")))
            }
            Refused::Held | Refused::Delayed | Refused::NotHeld => Ok(false),
        }
    }
}

/// Whether two session IDs name the same session (UUIDs, compared without regard to case).
pub(crate) fn same_session(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The session holding `e`'s lock, if any.
fn holder(e: &Entry) -> Option<&str> {
    e.session.as_deref().filter(|s| !s.is_empty())
}

/// Whether `at` is under a lock-delay at the entry's time. A delay that has ended is
/// dropped on the way (Consul's `lockDelay` forgets it too): `until_ms` is the first
/// moment the key may be locked again.
fn delayed(tx: &mut dyn Txn, ctx: &Ctx, at: &KeyIn) -> Result<bool, Error> {
    match LOCK_DELAYS_ID.get(tx, at)? {
        Some(d) if d.until_ms > ctx.timestamp_ms => Ok(true),
        Some(d) => {
            LOCK_DELAYS.delete(tx, &d)?;
            Ok(false)
        }
        None => Ok(false),
    }
}

/// Locks `at` for `session` and writes `value` and `flags` (Consul's `kvsPreApply`
/// lock-delay check, then `kvsLockTxn`): LockIndex goes up by one unless the session
/// already holds the lock, and an entry that changes nothing is not written.
pub(crate) fn lock(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    at: KeyIn,
    value: Vec<u8>,
    flags: u64,
    session: &str,
) -> Result<Result<(), Refused>, Error> {
    check_key(&at.key, "key", false)?;
    if delayed(tx, ctx, &at)? {
        return Ok(Err(Refused::Delayed));
    }
    if session.is_empty() {
        return Ok(Err(Refused::MissingSession));
    }
    let Some(live) = fsmhost_schema_sessions::lookup(tx, &at.tenancy, session)? else {
        return Ok(Err(Refused::InvalidSession(session.to_string())));
    };
    let existing = KVS_ID.get(tx, &at)?;
    let (create_index, lock_index) = match &existing {
        None => (ctx.index, 1),
        Some(e) => match holder(e) {
            Some(h) if same_session(h, &live.id) => (e.create_index, e.lock_index),
            Some(_) => return Ok(Err(Refused::Held)),
            None => (e.create_index, e.lock_index.saturating_add(1)),
        },
    };
    let entry = Entry {
        key: at.key,
        value,
        flags,
        create_index,
        modify_index: ctx.index,
        lock_index,
        session: Some(live.id),
        tenancy: at.tenancy,
    };
    put_entry(tx, existing.as_ref(), &entry)?;
    Ok(Ok(()))
}

/// Unlocks `at` held by `session` and writes `value` and `flags` (Consul's
/// `kvsUnlockTxn`): LockIndex is kept.
pub(crate) fn unlock(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    at: KeyIn,
    value: Vec<u8>,
    flags: u64,
    session: &str,
) -> Result<Result<(), Refused>, Error> {
    check_key(&at.key, "key", false)?;
    if session.is_empty() {
        return Ok(Err(Refused::MissingSession));
    }
    let Some(existing) = KVS_ID.get(tx, &at)? else {
        return Ok(Err(Refused::NotHeld));
    };
    if !holder(&existing).is_some_and(|h| same_session(h, session)) {
        return Ok(Err(Refused::NotHeld));
    }
    let entry = Entry {
        key: at.key,
        value,
        flags,
        create_index: existing.create_index,
        modify_index: ctx.index,
        lock_index: existing.lock_index,
        session: None,
        tenancy: at.tenancy,
    };
    put_entry(tx, Some(&existing), &entry)?;
    Ok(Ok(()))
}

/// `acquire`: `PUT /v1/kv/<key>?acquire=<session>`.
pub(crate) fn acquire(tx: &mut dyn Txn, ctx: &Ctx, req: LockRequest) -> Result<bool, Error> {
    let at = target(&req.tenancy, &req.key, "key", false)?;
    match lock(tx, ctx, at, req.value, req.flags, &req.session)? {
        Ok(()) => Ok(true),
        Err(refused) => refused.into_answer(),
    }
}

/// `release`: `PUT /v1/kv/<key>?release=<session>`.
pub(crate) fn release(tx: &mut dyn Txn, ctx: &Ctx, req: LockRequest) -> Result<bool, Error> {
    let at = target(&req.tenancy, &req.key, "key", false)?;
    match unlock(tx, ctx, at, req.value, req.flags, &req.session)? {
        Ok(()) => Ok(true),
        Err(refused) => refused.into_answer(),
    }
}

/// How long a lock-delay of `ns` nanoseconds lasts in milliseconds, rounded up (a delay
/// is never shorter than the session asked for).
fn delay_ms(ns: u64) -> u64 {
    ns.div_ceil(1_000_000)
}

/// Drops the lock-delays that ended at or before `now_ms`; how many.
fn drop_ended_delays(tx: &mut dyn Txn, now_ms: u64) -> Result<usize, Error> {
    let ended = KeyRange::Between(
        Bound::Unbounded,
        Bound::Included(Key::new().u64(now_ms).build()),
    );
    let rows: Vec<LockDelay> = LOCK_DELAYS_UNTIL
        .iter_range(tx, ended)
        .collect::<Result<_, _>>()?;
    for d in &rows {
        LOCK_DELAYS.delete(tx, d)?;
    }
    Ok(rows.len())
}

/// `release-session`: the catalog ended a session (destroyed, or invalidated with a check
/// or its node), in the same transaction. Every key the session holds (in its tenancy) is
/// released (`release`: Session cleared, ModifyIndex the entry's index, LockIndex and
/// value kept) or deleted (`delete`: as a kv delete, tombstone included), as Consul's
/// `deleteSessionTxn`; each gets the session's lock-delay when it has one. Lock-delays
/// that have ended are dropped. Answers how many keys it released or deleted.
pub(crate) fn release_session(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    req: ReleaseSession,
) -> Result<u64, Error> {
    let delete = match req.behavior.as_str() {
        // Consul's session endpoint fills in `release`; an empty one is that default.
        "" | "release" => false,
        "delete" => true,
        other => {
            return Err(Error::bad_request(format!(
                "unknown session behavior {other:?}"
            )));
        }
    };
    let tenancy: Tenancy = req.tenancy.clone().resolve(EDITION)?;
    drop_ended_delays(tx, ctx.timestamp_ms)?;
    let held: Vec<Entry> = KVS_SESSION
        .iter(tx, &req.id)
        .filter(|e| e.as_ref().map_or(true, |e| e.tenancy == tenancy))
        .collect::<Result<_, _>>()?;
    let until_ms = ctx.timestamp_ms.saturating_add(delay_ms(req.lock_delay));
    for e in &held {
        if delete {
            remove_entry(tx, ctx, e)?;
        } else {
            let mut released = e.clone();
            released.session = None;
            released.modify_index = ctx.index;
            KVS.insert(tx, &released)?;
        }
        if req.lock_delay > 0 {
            let delay = LockDelay {
                key: e.key.clone(),
                until_ms,
                tenancy: e.tenancy.clone(),
            };
            LOCK_DELAYS.insert(tx, &delay)?;
        }
    }
    Ok(held.len() as u64)
}
