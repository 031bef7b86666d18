//! Tombstone garbage collection, after Consul's `agent/consul/state/tombstone_gc.go`,
//! `graveyard.go` and the leader's `reapTombstones` (`TombstoneRequest{Op: Reap}`).
//!
//! A delete leaves a tombstone so that the index of a prefix never goes backwards while a
//! blocking query may still be waiting on it; after `tombstone_ttl` it is reaped. Consul's
//! leader remembers when tombstones were made as in-memory hints, bucketed by a 30 s
//! granularity, and reaps each bucket's highest index once the bucket is older than the
//! TTL (a new leader hints its last index, restarting the clock). Here the hints are
//! replicated state: the command that leaves a tombstone ([`leave_tombstone`], the one
//! place tombstones are written) records its index in the `tombstone_marks` row of its
//! bucket of the entry's clock ([`crate::TombstoneMark`]), so every server, and any later
//! leader, knows when each tombstone is due.
//!
//! The leader's tick ([`tick`]) finds the buckets that ended at least a TTL ago and proposes
//! [`crate::REAP_TOMBSTONES`] up to their highest index, in chunks of [`REAP_LIMIT`]
//! ([`MAX_REAPS_PER_TICK`] per tick), so that each apply stays short. A reap deletes
//! tombstones in index order through `tombstones.index`, visiting only those at or below
//! its index; once none is left there it drops the marks it covered. A reap that finds
//! nothing left is harmless.

use fsmhost_guest::{
    Bound, Ctx, Error, Key, KeyRange, Proposal, SCAN_BATCH, Tenancy, TickCtx, Txn,
};

use crate::*;

/// The width of a mark's bucket of the leader's clock (Consul's tombstone GC granularity).
pub const MARK_GRANULARITY_MS: u64 = 30_000;
/// Most tombstones one reap proposed by the tick deletes.
pub const REAP_LIMIT: u64 = 10_000;
/// Most reaps one tick proposes (so 100,000 tombstones a second at most).
pub const MAX_REAPS_PER_TICK: u64 = 10;

/// The bucket of the leader's clock `ms`.
pub fn bucket_of(ms: u64) -> u64 {
    ms / MARK_GRANULARITY_MS
}

/// Leaves the tombstone of `key` at the command's index, and marks its bucket: the one
/// place tombstones are written (delete, delete-cas, delete-tree, their txn verbs, and
/// `release-session` with the `delete` behavior).
pub(crate) fn leave_tombstone(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    key: String,
    tenancy: Tenancy,
) -> Result<(), Error> {
    TOMBSTONES.insert(
        tx,
        &Tombstone {
            key,
            index: ctx.index,
            tenancy,
        },
    )?;
    mark(tx, ctx)
}

/// Records that a tombstone was made at `ctx.index`, in the bucket of the entry's clock. The
/// bucket never goes behind the newest mark (a new leader's clock may be behind the old
/// one's): so marks in bucket order have increasing indexes, and the newest due mark holds
/// the highest due index.
fn mark(tx: &mut dyn Txn, ctx: &Ctx) -> Result<(), Error> {
    let all = KeyRange::Prefix(Vec::new());
    let newest = TOMBSTONE_MARKS_ID.last(tx, &all)?;
    let bucket = bucket_of(ctx.timestamp_ms).max(newest.as_ref().map_or(0, |m| m.bucket));
    match newest {
        // Already marked at this index (a delete-tree or a txn of several deletes).
        Some(m) if m.bucket == bucket && m.index >= ctx.index => Ok(()),
        _ => {
            let m = TombstoneMark {
                bucket,
                index: ctx.index,
            };
            TOMBSTONE_MARKS.insert(tx, &m)?;
            Ok(())
        }
    }
}

/// The key range of an index at or below `index` (of `tombstones.index`).
fn up_to(index: u64) -> KeyRange {
    KeyRange::Between(
        Bound::Unbounded,
        Bound::Included(Key::new().u64(index).build()),
    )
}

/// `reap-tombstones` (Consul's `TombstoneRequest{Op: Reap, ReapIndex}`): deletes up to
/// `limit` tombstones with an index at or below `index`, oldest first; once none is left
/// there, drops the marks at or below it. How many tombstones it deleted.
pub(crate) fn reap_tombstones(
    tx: &mut dyn Txn,
    _ctx: &Ctx,
    req: ReapRequest,
) -> Result<u64, Error> {
    let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
    let stale: Vec<Tombstone> = TOMBSTONES_INDEX
        .iter_range(tx, up_to(req.index))
        .take(limit)
        .collect::<Result<_, _>>()?;
    for t in &stale {
        TOMBSTONES.delete(tx, t)?;
    }
    if TOMBSTONES_INDEX.first(tx, &up_to(req.index))?.is_none() {
        let covered: Vec<TombstoneMark> = TOMBSTONE_MARKS_ID
            .iter_range(tx, KeyRange::Prefix(Vec::new()))
            .take_while(|m| m.as_ref().map_or(true, |m| m.index <= req.index))
            .collect::<Result<_, _>>()?;
        for m in &covered {
            TOMBSTONE_MARKS.delete(tx, m)?;
        }
    }
    Ok(stale.len() as u64)
}

/// How many objects of `index` of `table` fall in `range`, counting no further than `max`
/// (raw scans: nothing is decoded).
fn count_up_to(
    tx: &dyn Txn,
    table: &str,
    index: &str,
    range: &KeyRange,
    max: u64,
) -> Result<u64, Error> {
    let mut n = 0u64;
    let mut cursor: Option<Vec<u8>> = None;
    while n < max {
        let batch = tx.scan(table, index, range, cursor.as_deref(), SCAN_BATCH)?;
        n = n.saturating_add(batch.objects.len() as u64);
        match batch.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(n.min(max))
}

/// The tick's part: the marks whose bucket ended at or before `now - tombstone_ttl` are
/// due; [`crate::REAP_TOMBSTONES`] up to the highest due index, in as many chunks of
/// [`REAP_LIMIT`] as its tombstones need (at least one, which also drops the marks; at most
/// [`MAX_REAPS_PER_TICK`], the next tick goes on). Nothing when nothing is due.
pub fn tick(tx: &dyn Txn, ctx: &TickCtx) -> Result<Vec<Proposal>, Error> {
    let cutoff = ctx.now_ms.saturating_sub(ctx.tombstone_ttl_ms);
    // Bucket b ends at (b + 1) × granularity: due when that is at or before the cutoff.
    let due = KeyRange::Between(
        Bound::Unbounded,
        Bound::Excluded(Key::new().u64(bucket_of(cutoff)).build()),
    );
    let Some(newest_due) = TOMBSTONE_MARKS_ID.last(tx, &due)? else {
        return Ok(Vec::new());
    };
    let index = newest_due.index;
    let stale = count_up_to(
        tx,
        TOMBSTONES.name(),
        TOMBSTONES_INDEX.name(),
        &up_to(index),
        REAP_LIMIT.saturating_mul(MAX_REAPS_PER_TICK),
    )?;
    let chunks = stale.div_ceil(REAP_LIMIT).clamp(1, MAX_REAPS_PER_TICK);
    let reap = ReapRequest {
        index,
        limit: REAP_LIMIT,
    };
    (0..chunks)
        .map(|_| REAP_TOMBSTONES.proposal(&reap))
        .collect()
}
