//! Session TTLs, after Consul's `agent/consul/session_ttl.go`: a session with a TTL is
//! destroyed when it is not renewed within twice its TTL (`SessionTTLMultiplier`), and a
//! new leader restarts every timer at full length.
//!
//! Consul keeps the timers in the leader's memory and renews them there; here time only
//! enters through the log, so renewals are log entries ([`SESSION_RENEW`], whose entry's
//! timestamp is the renewal time) and the catalog's own `session_ttls` table records each
//! TTL session's TTL and last renewal, with an index ordered by deadline (renewal + 2×TTL).
//! The leader's tick ([`expired`]) walks that index and proposes [`SESSION_EXPIRE`] for
//! every session past `max(renewal, leader_since) + 2×TTL`; the command ends the session
//! only if it was not renewed since the tick saw it.

use fsmhost_guest::Txn;
use fsmhost_guest::{Bound, Ctx, Error, Index, Key, KeyRange, Proposal, Table, Tenancy, TickCtx};
use fsmhost_schema_sessions::{SESSIONS_ID, Session};
use serde::{Deserialize, Serialize};

use crate::*;

/// Consul's `SessionTTLMultiplier`: a session expires after twice its TTL without renewal.
pub const SESSION_TTL_MULTIPLIER: u64 = 2;
/// Most `session-expire` commands one tick proposes.
pub const MAX_EXPIRES_PER_TICK: usize = 1000;
/// Most `session_ttls` rows one tick reads (rows past their deadline whose timer a new
/// leader restarted are read and skipped).
pub const MAX_TTL_ROWS_PER_TICK: usize = 10_000;

/// A session's timer: the catalog's `session_ttls` table, one row per session with a
/// non-zero TTL.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct SessionTtl {
    /// The session's ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its TTL, ms.
    pub ttl_ms: u64,
    /// When it was created or last renewed (the entry's timestamp), ms since the epoch.
    pub renewed_ms: u64,
    /// The session's partition and namespace (enterprise edition; empty in OSS).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

impl SessionTtl {
    /// When it expires unless renewed (ignoring a leader's restart of the timers).
    pub fn deadline_ms(&self) -> u64 {
        self.renewed_ms
            .saturating_add(self.ttl_ms.saturating_mul(SESSION_TTL_MULTIPLIER))
    }
}

fn ttl_id_key(a: &(Tenancy, String)) -> Vec<u8> {
    a.0.key(EDITION).string_lower(&a.1).build()
}

fn deadline_key(ms: &u64) -> Vec<u8> {
    Key::new().u64(*ms).build()
}

/// `session_ttls.id`: the session's ID, case-insensitive (in its partition and namespace).
pub static SESSION_TTLS_ID: Index<SessionTtl, (Tenancy, String)> = Index::new(
    &SESSION_TTLS,
    "id",
    |t: &SessionTtl, k| k.push(ttl_id_key(&(t.tenancy.clone(), t.id.clone()))),
    ttl_id_key,
)
.unique();

/// `session_ttls.deadline`: renewal + 2×TTL, ms, over every tenancy (the tick's walk).
pub static SESSION_TTLS_DEADLINE: Index<SessionTtl, u64> = Index::new(
    &SESSION_TTLS,
    "deadline",
    |t: &SessionTtl, k| k.push(deadline_key(&t.deadline_ms())),
    deadline_key,
);

/// `session_ttls.namespace` (enterprise edition): the timers of a partition and namespace.
pub static SESSION_TTLS_NAMESPACE: Index<SessionTtl, Tenancy> = Index::new(
    &SESSION_TTLS,
    "namespace",
    |t: &SessionTtl, k| k.push(tenancy_key(&t.tenancy)),
    tenancy_key,
)
.prefix(tenancy_key);

/// The `session_ttls` table.
pub static SESSION_TTLS: Table<SessionTtl> = Table::new(
    "session_ttls",
    &[
        &SESSION_TTLS_ID,
        &SESSION_TTLS_DEADLINE,
        #[cfg(feature = "enterprise")]
        &SESSION_TTLS_NAMESPACE,
    ],
);

/// Starts (or restarts: a renewal) the timer of `s` at the entry's timestamp, if it has a
/// TTL (`""` and `0` have none).
pub(crate) fn start(tx: &mut dyn Txn, ctx: &Ctx, s: &Session) -> Result<(), Error> {
    if s.ttl.is_empty() {
        return Ok(());
    }
    let ns = parse_duration(&s.ttl)
        .map_err(|e| Error::bad_request(format!("Session TTL '{}' invalid: {e}", s.ttl)))?;
    let ttl_ms = u64::try_from(ns).unwrap_or(0) / 1_000_000;
    if ttl_ms == 0 {
        return Ok(());
    }
    SESSION_TTLS.insert(
        tx,
        &SessionTtl {
            id: s.id.clone(),
            ttl_ms,
            renewed_ms: ctx.timestamp_ms,
            tenancy: s.tenancy.clone(),
        },
    )?;
    Ok(())
}

/// Removes the timer of `s` (it ended).
pub(crate) fn forget(tx: &mut dyn Txn, s: &Session) -> Result<(), Error> {
    if let Some(row) = SESSION_TTLS_ID.get(tx, &(s.tenancy.clone(), s.id.clone()))? {
        SESSION_TTLS.delete(tx, &row)?;
    }
    Ok(())
}

/// `session-renew` (Consul's `Session.Renew`): the session, its timer restarted at the
/// entry's timestamp; `None` if it does not exist.
pub(crate) fn renew(tx: &mut dyn Txn, ctx: &Ctx, req: SessionId) -> Result<Option<Session>, Error> {
    if req.id.is_empty() {
        return Err(Error::bad_request("Must provide ID"));
    }
    let t = req.tenancy.resolve(EDITION)?;
    let Some(s) = SESSIONS_ID.get(tx, &(t, req.id))? else {
        return Ok(None);
    };
    start(tx, ctx, &s)?;
    Ok(Some(s))
}

/// `session-expire` (from the leader's tick): ends the session as `session-destroy` does,
/// unless it was renewed after the tick saw it (its renewal time is no longer
/// `renewed_ms`). Whether it ended.
pub(crate) fn expire(tx: &mut dyn Txn, _ctx: &Ctx, req: SessionExpire) -> Result<bool, Error> {
    if req.id.is_empty() {
        return Err(Error::bad_request("Must provide ID"));
    }
    let t = req.tenancy.resolve(EDITION)?;
    let key = (t, req.id);
    let Some(row) = SESSION_TTLS_ID.get(tx, &key)? else {
        return Ok(false);
    };
    if row.renewed_ms != req.renewed_ms {
        return Ok(false);
    }
    match SESSIONS_ID.get(tx, &key)? {
        Some(s) => sessions::end(tx, &s)?,
        None => {
            SESSION_TTLS.delete(tx, &row)?;
        }
    }
    Ok(true)
}

/// The tick's part: `session-expire` for every session whose `max(renewal, leader_since)
/// + 2×TTL` is past (at most [`MAX_EXPIRES_PER_TICK`], reading at most
/// [`MAX_TTL_ROWS_PER_TICK`] rows, earliest deadline first).
pub(crate) fn expired(tx: &dyn Txn, ctx: &TickCtx) -> Result<Vec<Proposal>, Error> {
    let due = KeyRange::Between(Bound::Unbounded, Bound::Included(deadline_key(&ctx.now_ms)));
    let mut out = Vec::new();
    for row in SESSION_TTLS_DEADLINE
        .iter_range(tx, due)
        .take(MAX_TTL_ROWS_PER_TICK)
    {
        let row = row?;
        let from = row.renewed_ms.max(ctx.leader_since_ms);
        let deadline = from.saturating_add(row.ttl_ms.saturating_mul(SESSION_TTL_MULTIPLIER));
        if deadline > ctx.now_ms {
            continue;
        }
        out.push(SESSION_EXPIRE.proposal(&SessionExpire {
            id: row.id,
            tenancy: row.tenancy,
            renewed_ms: row.renewed_ms,
        })?);
        if out.len() >= MAX_EXPIRES_PER_TICK {
            break;
        }
    }
    Ok(out)
}
