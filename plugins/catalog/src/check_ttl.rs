//! TTL checks, after Consul's `CheckTTL` (`agent/checks/check.go`): a check with a TTL turns
//! critical, with the output `TTL expired`, when the service does not report within its
//! TTL; a report (`/v1/agent/check/pass|warn|fail|update/<id>`) sets the status and output
//! and restarts the timer.
//!
//! Consul's agent keeps the timers in memory. Here time only enters through the log, as for
//! session TTLs (`ttl.rs`): registrations and reports are log entries (the entry's timestamp
//! is the report time), and the catalog's own `check_ttls` table records each TTL check's
//! TTL and last report, with an index ordered by deadline (report + TTL). The leader's tick
//! ([`expired`]) walks that index and proposes [`CHECK_TTL_EXPIRE`] for every check past
//! `max(report, leader_since) + TTL` (a new leader restarts every timer at full length); the
//! command turns the check critical only if no report came since the tick saw it. An expired
//! timer leaves the deadline index (the check stays critical until the next report), and a
//! check going critical ends the sessions hanging on it, as any critical check does.

use fsmhost_guest::{Bound, Ctx, Error, Index, Key, KeyRange, Proposal, Table, Tenancy, TickCtx};
use fsmhost_guest::{Command, Txn};
use serde::{Deserialize, Serialize};

use crate::*;

/// Most `check-ttl-expire` commands one tick proposes.
pub const MAX_CHECK_EXPIRES_PER_TICK: usize = 1000;
/// Most `check_ttls` rows one tick reads.
pub const MAX_CHECK_TTL_ROWS_PER_TICK: usize = 10_000;
/// The output of a check whose TTL ran out (Consul's `CheckTTL.getExpiredOutput` prefix).
pub const TTL_EXPIRED: &str = "TTL expired";

/// `check-ttl-expire` (proposed by the leader's tick): turns a TTL check critical unless it
/// was reported since the tick saw it; whether it did.
pub static CHECK_TTL_EXPIRE: Command<CheckTtlExpire, bool> =
    Command::new("check-ttl-expire", expire);

/// A TTL check's timer: the catalog's `check_ttls` table, one row per check with a TTL.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct CheckTtl {
    /// The check's node.
    pub node: String,
    /// The check's ID on that node.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Its TTL, ms.
    pub ttl_ms: u64,
    /// When it was registered or last reported (the entry's timestamp), ms since the epoch.
    pub updated_ms: u64,
    /// Whether the TTL ran out since (the check is critical; the timer waits for a report).
    #[serde(default)]
    pub expired: bool,
    /// The check's partition and namespace (enterprise edition; empty in OSS).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
}

impl CheckTtl {
    /// When it expires unless reported (ignoring a leader's restart of the timers).
    pub fn deadline_ms(&self) -> u64 {
        self.updated_ms.saturating_add(self.ttl_ms)
    }
}

/// `check-ttl-expire`: the check the tick found expired, and the report time it saw.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckTtlExpire {
    /// The check's node.
    pub node: String,
    /// The check's ID.
    pub check_id: String,
    /// Its partition and namespace (enterprise edition).
    #[serde(default)]
    pub tenancy: Tenancy,
    /// Its last report as the tick saw it, ms since the epoch.
    pub updated_ms: u64,
}

fn deadline_key(ms: &u64) -> Vec<u8> {
    Key::new().u64(*ms).build()
}

/// `check_ttls.id`: node + check ID, as `checks.id` keys the check.
pub static CHECK_TTLS_ID: Index<CheckTtl, Pair> = Index::new(
    &CHECK_TTLS,
    "id",
    |t: &CheckTtl, k| k.push(node_and(&pair(t.tenancy.clone(), &t.node, &t.check_id))),
    node_and,
)
.unique();

/// `check_ttls.deadline`: report + TTL, ms, over every tenancy (the tick's walk); an
/// expired timer has none.
pub static CHECK_TTLS_DEADLINE: Index<CheckTtl, u64> = Index::new(
    &CHECK_TTLS,
    "deadline",
    |t: &CheckTtl, k| {
        if !t.expired {
            k.push(deadline_key(&t.deadline_ms()))
        }
    },
    deadline_key,
)
.allow_missing();

/// `check_ttls.namespace` (enterprise edition): the timers of a partition and namespace.
pub static CHECK_TTLS_NAMESPACE: Index<CheckTtl, Tenancy> = Index::new(
    &CHECK_TTLS,
    "namespace",
    |t: &CheckTtl, k| k.push(tenancy_key(&t.tenancy)),
    tenancy_key,
)
.prefix(tenancy_key);

/// The `check_ttls` table.
pub static CHECK_TTLS: Table<CheckTtl> = Table::new(
    "check_ttls",
    &[
        &CHECK_TTLS_ID,
        &CHECK_TTLS_DEADLINE,
        #[cfg(feature = "enterprise")]
        &CHECK_TTLS_NAMESPACE,
    ],
);

/// The timer of check `check_id` of `node` in `t`, if it has one.
pub(crate) fn timer(
    tx: &dyn Txn,
    t: &Tenancy,
    node: &str,
    check_id: &str,
) -> Result<Option<CheckTtl>, Error> {
    CHECK_TTLS_ID.get(tx, &pair(t.clone(), node, check_id))
}

/// Starts (or restarts: a report) the timer of check `c` at the entry's timestamp.
pub(crate) fn start(tx: &mut dyn Txn, ctx: &Ctx, c: &Check, ttl_ms: u64) -> Result<(), Error> {
    CHECK_TTLS.insert(
        tx,
        &CheckTtl {
            node: c.node.clone(),
            check_id: c.check_id.clone(),
            ttl_ms,
            updated_ms: ctx.timestamp_ms,
            expired: false,
            tenancy: c.tenancy.tenancy(),
        },
    )?;
    Ok(())
}

/// Removes the timer of check `c`, if it has one (it was deregistered, or registered again
/// without a TTL).
pub(crate) fn forget(tx: &mut dyn Txn, c: &Check) -> Result<(), Error> {
    if let Some(row) = timer(tx, &c.tenancy.tenancy(), &c.node, &c.check_id)? {
        CHECK_TTLS.delete(tx, &row)?;
    }
    Ok(())
}

/// What a check's output becomes when its TTL runs out (Consul's `getExpiredOutput`).
pub fn expired_output(last: &str) -> String {
    if last.is_empty() {
        TTL_EXPIRED.to_string()
    } else {
        format!("{TTL_EXPIRED} (last output before timeout follows): {last}")
    }
}

/// `check-ttl-expire`: the check critical with [`expired_output`], unless it was reported
/// after the tick saw it (its report time is no longer `updated_ms`), its timer already
/// expired, or it is gone. Whether it expired.
pub(crate) fn expire(tx: &mut dyn Txn, ctx: &Ctx, req: CheckTtlExpire) -> Result<bool, Error> {
    require("node", &req.node)?;
    let t = req.tenancy.resolve(EDITION)?;
    let Some(mut row) = timer(tx, &t, &req.node, &req.check_id)? else {
        return Ok(false);
    };
    if row.expired || row.updated_ms != req.updated_ms {
        return Ok(false);
    }
    let Some(mut check) = CHECKS_ID.get(tx, &pair(t, &req.node, &req.check_id))? else {
        CHECK_TTLS.delete(tx, &row)?;
        return Ok(false);
    };
    check.output = expired_output(&check.output);
    check.status = "critical".into();
    let (node, meta) = (check.node.clone(), check.tenancy.clone());
    register::ensure_check(tx, ctx, &node, &meta, check)?;
    row.expired = true;
    CHECK_TTLS.insert(tx, &row)?;
    Ok(true)
}

/// The tick's part: `check-ttl-expire` for every TTL check whose `max(report,
/// leader_since) + TTL` is past (at most [`MAX_CHECK_EXPIRES_PER_TICK`], reading at most
/// [`MAX_CHECK_TTL_ROWS_PER_TICK`] rows, earliest deadline first).
pub(crate) fn expired(tx: &dyn Txn, ctx: &TickCtx) -> Result<Vec<Proposal>, Error> {
    let due = KeyRange::Between(Bound::Unbounded, Bound::Included(deadline_key(&ctx.now_ms)));
    let mut out = Vec::new();
    for row in CHECK_TTLS_DEADLINE
        .iter_range(tx, due)
        .take(MAX_CHECK_TTL_ROWS_PER_TICK)
    {
        let row = row?;
        let deadline = row
            .updated_ms
            .max(ctx.leader_since_ms)
            .saturating_add(row.ttl_ms);
        if deadline > ctx.now_ms {
            continue;
        }
        out.push(CHECK_TTL_EXPIRE.proposal(&CheckTtlExpire {
            node: row.node,
            check_id: row.check_id,
            tenancy: row.tenancy,
            updated_ms: row.updated_ms,
        })?);
        if out.len() >= MAX_CHECK_EXPIRES_PER_TICK {
            break;
        }
    }
    Ok(out)
}
