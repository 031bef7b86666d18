//! The servers in the catalog, as Consul's leader reconciles its Serf members
//! (`agent/consul/leader.go` `reconcileMember`, `handleAliveMember`, `handleFailedMember`,
//! `handleLeftMember`, `reconcileReaped`), from the raft servers autopilot judged
//! ([`TickCtx::servers`]) instead of Serf:
//! - an `alive` server has a node (its name, an ID derived from its raft id, the host of
//!   its server-port address in `Address` and the tagged addresses, this datacenter, the
//!   node metadata Consul's agent sets), the check `serfHealth` passing, and the service
//!   `consul` (its server port, Consul's weights and metadata);
//! - a `failed` server that has a node gets `serfHealth` critical, its node left as it is
//!   (so the sessions hanging on the check end, as in Consul);
//! - a `left` server's node is deregistered, and so is any node that carries the `consul`
//!   service but is no raft server any more (reaped).
//!
//! The tick compares what it wants with what is stored and proposes `register` or
//! `deregister` only for what differs, so a steady cluster proposes nothing; before
//! autopilot's first judgement (no servers) it does nothing.

use fsmhost_guest::{Error, Proposal, ServerInfo, TickCtx, Txn};
use std::collections::{BTreeMap, BTreeSet};

use crate::*;

/// Consul's `ConsulServiceID` and `ConsulServiceName`.
pub const CONSUL_SERVICE: &str = "consul";
/// Consul's `SerfCheckName`.
pub const SERF_CHECK_NAME: &str = "Serf Health Status";
/// Consul's `SerfCheckAliveOutput`.
pub const SERF_ALIVE_OUTPUT: &str = "Agent alive and reachable";
/// Consul's `SerfCheckFailedOutput`.
pub const SERF_FAILED_OUTPUT: &str = "Agent not live or unreachable";
/// The raft protocol version the `consul` service's metadata reports (Consul's 3).
pub const RAFT_VERSION: &str = "3";

/// The node ID of the server with raft id `id`: a UUID whose last 16 hex digits are the
/// raft id as `/v1/agent/self` prints it (`NodeID`).
pub fn node_uuid(id: u64) -> String {
    format!(
        "00000000-0000-0000-{:04x}-{:012x}",
        id >> 48,
        id & 0xffff_ffff_ffff
    )
}

/// The host and port of a `host:port` address (`[v6]:port` too); port 0 when missing.
fn split_address(address: &str) -> (String, u16) {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => {
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            (host.to_string(), port.parse().unwrap_or(0))
        }
        _ => (address.to_string(), 0),
    }
}

/// The tick's part: the proposals that bring the catalog's servers in line.
pub(crate) fn servers(tx: &dyn Txn, ctx: &TickCtx) -> Result<Vec<Proposal>, Error> {
    if ctx.servers.is_empty() {
        return Ok(Vec::new());
    }
    let home = Meta::default().resolve()?;
    let mut out = Vec::new();
    // Servers still in the configuration (any status but `left`), lower-cased.
    let mut kept = BTreeSet::new();
    let mut gone = BTreeSet::new();
    let mut all_named = true;
    for s in &ctx.servers {
        if s.name.is_empty() {
            all_named = false;
            continue;
        }
        let lower = s.name.to_lowercase();
        match s.status.as_str() {
            "left" => {
                if NODES_ID
                    .get(tx, &named(home.partition(), &s.name))?
                    .is_some()
                    && gone.insert(lower)
                {
                    out.push(DEREGISTER.proposal(&deregistration(&s.name))?);
                }
                continue;
            }
            "alive" => {
                if let Some(r) = alive(tx, ctx, s, &home)? {
                    out.push(REGISTER.proposal(&r)?);
                }
            }
            "failed" => {
                if let Some(r) = failed(tx, ctx, s, &home)? {
                    out.push(REGISTER.proposal(&r)?);
                }
            }
            _ => {}
        }
        kept.insert(lower);
    }
    // Consul's reconcileReaped: a node with the `consul` service that is no server any
    // more. Not while a server has no name yet (it might be one of those nodes).
    if all_named {
        for svc in SERVICES_SERVICE.iter(tx, &named(home.tenancy(), CONSUL_SERVICE)) {
            let svc = svc?;
            let lower = svc.node.to_lowercase();
            if svc.id != CONSUL_SERVICE || kept.contains(&lower) || !gone.insert(lower) {
                continue;
            }
            out.push(DEREGISTER.proposal(&deregistration(&svc.node))?);
        }
    }
    Ok(out)
}

fn deregistration(node: &str) -> DeregisterRequest {
    DeregisterRequest {
        node: node.to_string(),
        ..DeregisterRequest::default()
    }
}

fn serf_check(status: &str, output: &str) -> Check {
    Check {
        check_id: SERF_CHECK.to_string(),
        name: SERF_CHECK_NAME.to_string(),
        status: status.to_string(),
        output: output.to_string(),
        ..Check::default()
    }
}

/// Whether stored check `c` says what `want` says.
fn same_check(c: &Check, want: &Check) -> bool {
    c.name == want.name
        && c.status == want.status
        && c.output == want.output
        && c.service_id.is_empty()
}

/// Consul's `handleAliveMember`: the registration an alive server needs, if any.
fn alive(
    tx: &dyn Txn,
    ctx: &TickCtx,
    s: &ServerInfo,
    home: &Meta,
) -> Result<Option<RegisterRequest>, Error> {
    let (host, port) = split_address(&s.address);
    let node = NODES_ID.get(tx, &named(home.partition(), &s.name))?;
    let stored_name = node.as_ref().map_or(s.name.as_str(), |n| n.node.as_str());
    let service = SERVICES_ID.get(tx, &pair(home.tenancy(), stored_name, CONSUL_SERVICE))?;
    let check = CHECKS_ID.get(tx, &pair(home.tenancy(), stored_name, SERF_CHECK))?;
    // A version not known yet (autopilot has not probed the server since this leader
    // took over) keeps the one stored.
    let version = if s.version.is_empty() {
        service
            .as_ref()
            .and_then(|svc| svc.meta.get("version").cloned())
            .unwrap_or_default()
    } else {
        s.version.clone()
    };
    // What is stored beyond what a server's agent sets is kept, as Consul's leader keeps
    // the node's tagged addresses and metadata.
    let mut tagged = node
        .as_ref()
        .map(|n| n.tagged_addresses.clone())
        .unwrap_or_default();
    let family = if host.contains(':') { "ipv6" } else { "ipv4" };
    for kind in ["lan", "wan"] {
        tagged.insert(kind.to_string(), host.clone());
        tagged.insert(format!("{kind}_{family}"), host.clone());
    }
    let mut node_meta = node.as_ref().map(|n| n.meta.clone()).unwrap_or_default();
    node_meta.insert("consul-network-segment".into(), String::new());
    node_meta.insert("consul-version".into(), version.clone());
    let want_service = Service {
        id: CONSUL_SERVICE.into(),
        service: CONSUL_SERVICE.into(),
        port,
        weights: Some(Weights {
            passing: 1,
            warning: 1,
        }),
        meta: BTreeMap::from([
            ("non_voter".to_string(), (!s.voter).to_string()),
            ("read_replica".to_string(), "false".to_string()),
            ("raft_version".to_string(), RAFT_VERSION.to_string()),
            ("version".to_string(), version),
        ]),
        ..Service::default()
    };
    let want_check = serf_check("passing", SERF_ALIVE_OUTPUT);
    let id = node_uuid(s.id);
    let node_ok = node.as_ref().is_some_and(|n| {
        n.id == id
            && n.address == host
            && n.datacenter == ctx.datacenter
            && n.tagged_addresses == tagged
            && n.meta == node_meta
    });
    let service_ok = service.as_ref().is_some_and(|svc| {
        svc.service == want_service.service
            && svc.port == want_service.port
            && svc.weights == want_service.weights
            && svc.meta == want_service.meta
            && svc.kind.is_empty()
            && svc.address.is_empty()
            && svc.tags.is_empty()
    });
    let check_ok = check.as_ref().is_some_and(|c| same_check(c, &want_check));
    if node_ok && service_ok && check_ok {
        return Ok(None);
    }
    Ok(Some(RegisterRequest {
        id,
        node: s.name.clone(),
        address: host,
        datacenter: ctx.datacenter.clone(),
        tagged_addresses: tagged,
        node_meta,
        service: Some(want_service),
        check: Some(want_check),
        ..RegisterRequest::default()
    }))
}

/// Consul's `handleFailedMember`: `serfHealth` critical on a failed server's node (left as
/// it is), if the node exists and the check is not critical already.
fn failed(
    tx: &dyn Txn,
    ctx: &TickCtx,
    s: &ServerInfo,
    home: &Meta,
) -> Result<Option<RegisterRequest>, Error> {
    let Some(node) = NODES_ID.get(tx, &named(home.partition(), &s.name))? else {
        return Ok(None);
    };
    let (host, _) = split_address(&s.address);
    let want_check = serf_check("critical", SERF_FAILED_OUTPUT);
    let check = CHECKS_ID.get(tx, &pair(home.tenancy(), &node.node, SERF_CHECK))?;
    if check.as_ref().is_some_and(|c| same_check(c, &want_check)) {
        return Ok(None);
    }
    Ok(Some(RegisterRequest {
        id: node_uuid(s.id),
        node: node.node,
        address: host,
        datacenter: ctx.datacenter.clone(),
        check: Some(want_check),
        skip_node_update: true,
        ..RegisterRequest::default()
    }))
}
