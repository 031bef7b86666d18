//! Sessions, as Consul's `agent/consul/state/session.go` keeps them: created on a
//! registered node and hanging on some of its checks (none of them critical), destroyed on
//! request or invalidated in the transaction in which a check they hang on goes critical or
//! is deregistered, or their node is deregistered. Every session that ends tells the kv
//! plugin ([`RELEASE_SESSION`]) so it releases (or deletes) the keys the session locked, in
//! the same transaction.
//!
//! Plugins have no randomness, so a session's ID is derived in apply from the entry's index
//! (and the request), formatted as a UUID (version 8: custom), and never one a session of
//! the same tenancy already has.

use fsmhost_guest::{Ctx, Error, KeyRange, Tenancy, Txn};
use fsmhost_schema_sessions::{
    RELEASE_SESSION, ReleaseSession, SESSIONS, SESSIONS_ID, SESSIONS_NODE, Session,
};

use crate::*;

/// Consul's `structs.MaxLockDelay`: the longest lock-delay a session's end imposes.
pub const MAX_LOCK_DELAY_NS: u64 = 60 * NS_PER_SECOND;
/// The lock-delay of a session created without one over HTTP (Consul's 15 s).
pub const DEFAULT_LOCK_DELAY_NS: u64 = 15 * NS_PER_SECOND;
/// Consul's `SessionTTLMin` (its default configuration): 10 s.
pub const SESSION_TTL_MIN_NS: i64 = 10 * NS_PER_SECOND as i64;
/// Consul's `structs.SessionTTLMax`: 24 h.
pub const SESSION_TTL_MAX_NS: i64 = 24 * 3600 * NS_PER_SECOND as i64;
/// The check a session created over HTTP hangs on by default (Consul's `SerfCheckID`).
pub const SERF_CHECK: &str = "serfHealth";

const NS_PER_SECOND: u64 = 1_000_000_000;

/// Checks what a create request says, as Consul's `Session.Apply` does before the log:
/// the node, the behavior (`""` is `release`), the TTL. Returns the behavior to store.
pub(crate) fn check_create(req: &SessionCreateRequest) -> Result<String, Error> {
    if req.node.is_empty() {
        return Err(Error::bad_request("Must provide Node"));
    }
    if req.node.contains('\0') {
        return Err(Error::bad_request(format!(
            "Node {:?} contains a NUL byte",
            req.node
        )));
    }
    let behavior = match req.behavior.as_str() {
        "" => "release".to_string(),
        b if fsmhost_schema_sessions::BEHAVIORS.contains(&b) => b.to_string(),
        other => {
            return Err(Error::bad_request(format!(
                "Invalid Behavior setting '{other}'"
            )));
        }
    };
    if !req.ttl.is_empty() {
        let ttl = parse_duration(&req.ttl)
            .map_err(|e| Error::bad_request(format!("Session TTL '{}' invalid: {e}", req.ttl)))?;
        if ttl != 0 && !(SESSION_TTL_MIN_NS..=SESSION_TTL_MAX_NS).contains(&ttl) {
            return Err(Error::bad_request(format!(
                "Invalid Session TTL '{ttl}', must be between [10s=24h0m0s]"
            )));
        }
    }
    Ok(behavior)
}

/// `session-create` (Consul's `Session.Apply` with `SessionCreate`, then
/// `sessionCreateTxn`): the node must be registered, and every check the session hangs on
/// registered and not critical. Returns the new session's ID.
pub(crate) fn create(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    req: SessionCreateRequest,
) -> Result<String, Error> {
    let behavior = check_create(&req)?;
    let t = req.tenancy.clone().resolve(EDITION)?;
    let part = Tenancy {
        partition: t.partition.clone(),
        namespace: String::new(),
    };
    let Some(node) = NODES_ID.get(tx, &named(part.clone(), &req.node))? else {
        return Err(Error::not_found("Missing node registration"));
    };
    // Node checks live in the default namespace of the session's partition; a service
    // check in the namespace it names (the session's when it names none).
    let node_ns = Tenancy {
        partition: t.partition.clone(),
        namespace: String::new(),
    }
    .resolve(EDITION)?;
    let mut checks: Vec<(Tenancy, String)> = Vec::new();
    for id in &req.node_checks {
        checks.push((node_ns.clone(), id.clone()));
    }
    let mut service_checks = Vec::new();
    for sc in &req.service_checks {
        let ns = if sc.namespace.is_empty() {
            t.namespace.clone()
        } else {
            sc.namespace.clone()
        };
        let ct = Tenancy {
            partition: t.partition.clone(),
            namespace: ns,
        }
        .resolve(EDITION)?;
        service_checks.push(fsmhost_schema_sessions::ServiceCheck {
            id: sc.id.clone(),
            namespace: ct.namespace.clone(),
        });
        checks.push((ct, sc.id.clone()));
    }
    let mut unique: Vec<(Tenancy, String)> = Vec::with_capacity(checks.len());
    for c in checks {
        if !unique.contains(&c) {
            unique.push(c);
        }
    }
    let checks = unique;
    for (ct, id) in &checks {
        let Some(check) = CHECKS_ID.get(tx, &pair(ct.clone(), &node.node, id))? else {
            return Err(Error::not_found(format!(
                "Missing check '{id}' registration"
            )));
        };
        if check.status == "critical" {
            return Err(Error::conflict(format!(
                "Check '{id}' is in {} state",
                check.status
            )));
        }
    }
    let id = new_id(tx, ctx, &req, &t)?;
    let session = Session {
        id: id.clone(),
        name: req.name,
        node: node.node.clone(),
        lock_delay: req.lock_delay,
        behavior,
        ttl: req.ttl,
        node_checks: dedup(req.node_checks),
        service_checks,
        create_index: ctx.index,
        modify_index: ctx.index,
        tenancy: t.clone(),
    };
    SESSIONS.insert(tx, &session)?;
    ttl::start(tx, ctx, &session)?;
    for (ct, check_id) in checks {
        let row = SessionCheck {
            node: node.node.clone(),
            check_id,
            session: id.clone(),
            tenancy: ct,
            session_namespace: session.tenancy.namespace.clone(),
        };
        SESSION_CHECKS.insert(tx, &row)?;
    }
    Ok(id)
}

fn dedup(list: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for s in list {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// `session-destroy` (Consul's `SessionDestroy`): ends the session if it exists; always
/// `true`.
pub(crate) fn destroy(tx: &mut dyn Txn, _ctx: &Ctx, req: SessionId) -> Result<bool, Error> {
    if req.id.is_empty() {
        return Err(Error::bad_request("Must provide ID"));
    }
    let t = req.tenancy.resolve(EDITION)?;
    if let Some(s) = SESSIONS_ID.get(tx, &(t, req.id))? {
        end(tx, &s)?;
    }
    Ok(true)
}

/// Ends a session (Consul's `deleteSessionTxn`): removes it, its check mappings and its TTL
/// timer, and tells the kv plugin to release its locks, with its lock-delay capped at
/// [`MAX_LOCK_DELAY_NS`].
pub(crate) fn end(tx: &mut dyn Txn, s: &Session) -> Result<(), Error> {
    let rows: Vec<SessionCheck> = SESSION_CHECKS_SESSION
        .iter(tx, &named(s.tenancy.clone(), &s.id))
        .collect::<Result<_, _>>()?;
    for row in &rows {
        SESSION_CHECKS.delete(tx, row)?;
    }
    SESSIONS.delete(tx, s)?;
    ttl::forget(tx, s)?;
    RELEASE_SESSION.send(
        tx,
        &ReleaseSession {
            id: s.id.clone(),
            tenancy: s.tenancy.clone(),
            behavior: s.behavior.clone(),
            lock_delay: s.lock_delay.min(MAX_LOCK_DELAY_NS),
        },
    )
}

/// Ends every session hanging on the check `check_id` of `node` (in the check's partition
/// and namespace `t`): the check went critical or was deregistered.
pub(crate) fn invalidate_check(
    tx: &mut dyn Txn,
    t: &Tenancy,
    node: &str,
    check_id: &str,
) -> Result<(), Error> {
    let rows: Vec<SessionCheck> = SESSION_CHECKS_NODE_CHECK
        .iter(tx, &pair(t.clone(), node, check_id))
        .collect::<Result<_, _>>()?;
    for row in rows {
        if let Some(s) = SESSIONS_ID.get(tx, &(row.session_tenancy(), row.session.clone()))? {
            end(tx, &s)?;
        }
    }
    Ok(())
}

/// Ends every session of `node` (in partition `part`, every namespace): the node was
/// deregistered.
pub(crate) fn invalidate_node(tx: &mut dyn Txn, part: &Tenancy, node: &str) -> Result<(), Error> {
    let sessions: Vec<Session> = SESSIONS_NODE
        .iter(tx, &(part.clone(), node.to_string()))
        .collect::<Result<_, _>>()?;
    for s in &sessions {
        end(tx, s)?;
    }
    Ok(())
}

/// A new session's ID: a UUID derived from the entry (index, leader's time), the request
/// and an attempt counter, the first no session of the tenancy has.
fn new_id(
    tx: &dyn Txn,
    ctx: &Ctx,
    req: &SessionCreateRequest,
    t: &Tenancy,
) -> Result<String, Error> {
    let mut seed = Fnv::new();
    for part in [&t.partition, &t.namespace, &req.node, &req.name] {
        seed.write(part.as_bytes());
        seed.write(&[0]);
    }
    let seed = seed.0;
    for attempt in 0u64..1024 {
        let hi = mix(ctx.index ^ mix(seed ^ attempt.rotate_left(32)));
        let lo = mix(hi ^ ctx.timestamp_ms ^ mix(attempt));
        let id = format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            (hi & 0x0fff) | 0x8000,
            ((lo >> 48) & 0x3fff) | 0x8000,
            lo & 0xffff_ffff_ffff
        );
        if SESSIONS_ID.get(tx, &(t.clone(), id.clone()))?.is_none() {
            return Ok(id);
        }
    }
    Err(Error::internal("no free session ID after 1024 attempts"))
}

/// FNV-1a, 64 bits.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// SplitMix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Go's `time.ParseDuration`, in nanoseconds, with its error texts (`time: invalid
/// duration "x"`, `time: missing unit in duration "1"`, `time: unknown unit "d" in
/// duration "1d"`).
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let mut s = text;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, rest) = s.split_at(digits);
        let mut rest = rest;
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..n];
            rest = &r[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .bytes()
            .take_while(|b| *b != b'.' && !b.is_ascii_digit())
            .count();
        let (unit, after) = rest.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {text:?}"));
        }
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = int.checked_mul(scale).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            // Go keeps the fraction's leading digits that fit; so do we (up to 18).
            let kept = &frac_part[..frac_part.len().min(18)];
            let f: u128 = kept.parse().map_err(|_| invalid())?;
            value += f * scale / 10u128.pow(kept.len() as u32);
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > i64::MAX as u128 + u128::from(negative) {
            return Err(invalid());
        }
        s = after;
    }
    let total = total as i128;
    let signed = if negative { -total } else { total };
    i64::try_from(signed).map_err(|_| invalid())
}

fn max_index(tx: &dyn Txn) -> Result<u64, Error> {
    Ok(tx.table_index(SESSIONS.name())?)
}

/// `session-get`: the session, if it exists.
pub(crate) fn get(tx: &dyn Txn, args: SessionId) -> Result<Indexed<Option<Session>>, Error> {
    let t = args.tenancy.resolve(EDITION)?;
    let items = if args.id.is_empty() {
        None
    } else {
        SESSIONS_ID.get(tx, &(t, args.id))?
    };
    Ok(Indexed {
        items,
        index: max_index(tx)?,
    })
}

/// `node-sessions`: the sessions of a node, in the request's namespace.
pub(crate) fn node_sessions(
    tx: &dyn Txn,
    args: SessionNodeArgs,
) -> Result<Indexed<Vec<Session>>, Error> {
    require("node", &args.node)?;
    let t = args.tenancy.resolve(EDITION)?;
    let part = Tenancy {
        partition: t.partition.clone(),
        namespace: String::new(),
    };
    let mut items = Vec::new();
    for s in SESSIONS_NODE.iter(tx, &(part, args.node)) {
        let s = s?;
        if s.tenancy == t {
            items.push(s);
        }
    }
    items.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Indexed {
        items,
        index: max_index(tx)?,
    })
}

/// `session-list`: every session of the partition and namespace.
pub(crate) fn list(tx: &dyn Txn, t: Tenancy) -> Result<Indexed<Vec<Session>>, Error> {
    let t = t.resolve(EDITION)?;
    let items = SESSIONS_ID
        .iter_range(tx, KeyRange::Prefix(tenancy_key(&t)))
        .collect::<Result<_, _>>()?;
    Ok(Indexed {
        items,
        index: max_index(tx)?,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("15s"), Ok(15_000_000_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration(".5ms"), Ok(500_000));
        assert_eq!(parse_duration("-2us"), Ok(-2_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("10µs"), Ok(10_000));
        assert_eq!(
            parse_duration("1"),
            Err("time: missing unit in duration \"1\"".into())
        );
        assert_eq!(
            parse_duration("1d"),
            Err("time: unknown unit \"d\" in duration \"1d\"".into())
        );
        assert_eq!(
            parse_duration(""),
            Err("time: invalid duration \"\"".into())
        );
        assert_eq!(
            parse_duration("s"),
            Err("time: invalid duration \"s\"".into())
        );
        assert_eq!(
            parse_duration("9999999999h"),
            Err("time: invalid duration \"9999999999h\"".into())
        );
    }
}
