//! Consul's agent services and checks (`agent/agent.go` `AddService`, `RemoveService`,
//! `AddCheck`, `RemoveCheck`, `updateTTLCheck`, `EnableServiceMaintenance`), served by the
//! servers themselves: fsmhost runs no client agents, so what a client registers with "its
//! agent" goes on the catalog node of the server that serves the request, as Consul's
//! anti-entropy would put it there. The node must exist (the leader registers every server
//! as a catalog node within seconds, `reconcile.rs`).
//!
//! The agent's state is the catalog's: its services are the node's services, its checks
//! the node's checks; which checks have a TTL is the catalog's own `check_ttls` table
//! (`check_ttl.rs`). The HTTP side is `agent_http.rs`.

use fsmhost_guest::{Command, Ctx, Error, Query, Tenancy, Txn};
use serde::{Deserialize, Serialize};

use crate::*;

/// `agent-service-register`: a service with its checks on the serving server's node.
pub static AGENT_SERVICE_REGISTER: Command<AgentServiceRegister, bool> =
    Command::new("agent-service-register", service_register);
/// `agent-service-deregister`: a service of the node with its checks.
pub static AGENT_SERVICE_DEREGISTER: Command<AgentTarget, bool> =
    Command::new("agent-service-deregister", service_deregister);
/// `agent-service-maintenance`: a service's maintenance check on or off.
pub static AGENT_SERVICE_MAINTENANCE: Command<AgentMaintenance, bool> =
    Command::new("agent-service-maintenance", service_maintenance);
/// `agent-check-register`: a check on the node or one of its services.
pub static AGENT_CHECK_REGISTER: Command<AgentCheckRegister, bool> =
    Command::new("agent-check-register", check_register);
/// `agent-check-deregister`: a check of the node.
pub static AGENT_CHECK_DEREGISTER: Command<AgentTarget, bool> =
    Command::new("agent-check-deregister", check_deregister);
/// `agent-check-update`: a TTL check's report (status and output), restarting its timer.
pub static AGENT_CHECK_UPDATE: Command<AgentCheckUpdate, bool> =
    Command::new("agent-check-update", check_update);
/// `agent-state`: the node's services and checks, each check with its kind.
pub static AGENT_STATE: Query<NodeArgs, Indexed<AgentState>> =
    Query::new("agent-state", agent_state);

/// Consul's `structs.ServiceMaintPrefix`: a service's maintenance check is this + its ID.
pub const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";
/// The name of a service's maintenance check.
pub const SERVICE_MAINT_NAME: &str = "Service Maintenance Mode";
/// Consul's `defaultServiceMaintReason`.
pub const DEFAULT_SERVICE_MAINT_REASON: &str = "Maintenance mode is enabled for this service, but no reason was provided. This is a \
     default message.";

/// A check as an agent registers it: the catalog record and its TTL.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentCheckDef {
    /// The check (defaults already applied by the router).
    pub check: Check,
    /// Its TTL, ms (0: none; the check keeps the status it was registered with).
    #[serde(default)]
    pub ttl_ms: u64,
}

/// `agent-service-register`: Consul's `AddServiceRequest`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentServiceRegister {
    /// The serving server's node.
    pub node: String,
    /// The service (its ID defaulted to its name).
    pub service: Service,
    /// Its checks (each with `ServiceID` set).
    #[serde(default)]
    pub checks: Vec<AgentCheckDef>,
    /// Remove the service's checks that are not in `checks` (`?replace-existing-checks`).
    #[serde(default)]
    pub replace_existing_checks: bool,
    /// The node's partition and the service's namespace (enterprise edition).
    #[serde(default)]
    pub tenancy: Meta,
}

/// `agent-check-register`: Consul's `CheckDefinition` on the node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentCheckRegister {
    /// The serving server's node.
    pub node: String,
    /// The check.
    pub check: AgentCheckDef,
    /// The node's partition and the check's namespace (enterprise edition).
    #[serde(default)]
    pub tenancy: Meta,
}

/// A service or check of the node, by ID.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentTarget {
    /// The serving server's node.
    pub node: String,
    /// The service's or check's ID.
    pub id: String,
    /// The node's partition and the namespace (enterprise edition).
    #[serde(default)]
    pub tenancy: Meta,
}

/// `agent-check-update`: a TTL check's report.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentCheckUpdate {
    /// The serving server's node.
    pub node: String,
    /// The check's ID.
    pub check_id: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    /// The new output (the note of `pass|warn|fail`).
    #[serde(default)]
    pub output: String,
    /// The node's partition and the check's namespace (enterprise edition).
    #[serde(default)]
    pub tenancy: Meta,
}

/// `agent-service-maintenance`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentMaintenance {
    /// The serving server's node.
    pub node: String,
    /// The service's ID.
    pub service_id: String,
    /// On or off.
    pub enable: bool,
    /// The maintenance check's notes (empty: Consul's default text).
    #[serde(default)]
    pub reason: String,
    /// The node's partition and the service's namespace (enterprise edition).
    #[serde(default)]
    pub tenancy: Meta,
}

/// A check as the agent shows it: the record and its `Type`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AgentCheck {
    /// The check.
    pub check: Check,
    /// `ttl` for a TTL check, `maintenance` for a maintenance check, else empty.
    pub kind: String,
}

/// What `agent-state` answers: the node's services and checks (in the request's namespace).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct AgentState {
    /// The services, by ID.
    pub services: Vec<Service>,
    /// The checks, by ID.
    pub checks: Vec<AgentCheck>,
}

/// Consul's 404 for a service ID the agent does not have.
pub fn unknown_service(id: &str) -> Error {
    Error::not_found(format!(
        "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
    ))
}

/// Consul's 404 for a check ID the agent does not have.
pub fn unknown_check(id: &str) -> Error {
    Error::not_found(format!(
        "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
    ))
}

/// Whether a service ID is the leader's own registration (`consul`): not the agent's, as
/// Consul's anti-entropy leaves it alone.
fn reserved_service(id: &str) -> bool {
    id == CONSUL_SERVICE
}

/// Whether a check ID is the leader's own registration (`serfHealth`).
fn reserved_check(id: &str) -> bool {
    id == SERF_CHECK
}

fn refuse_reserved(what: &str, id: &str) -> Error {
    Error::bad_request(format!(
        "{what} ID {id:?} is the leader's own registration of this server and cannot be \
         changed through the agent API"
    ))
}

/// The serving server's catalog node as stored (an existing node keeps its case); a
/// conflict (Consul's 500) until the leader registered it.
fn agent_node(tx: &dyn Txn, node: &str, meta: &Meta) -> Result<String, Error> {
    require("node", node)?;
    match NODES_ID.get(tx, &named(meta.partition(), node))? {
        Some(n) => Ok(n.node),
        None => Err(Error::conflict(format!(
            "Node {node:?} (this server) is not registered in the catalog yet: the leader \
             registers every server within seconds of it joining; try again"
        ))),
    }
}

/// Registers `def` on `node` (its status defaults to critical) and starts, restarts or
/// drops its TTL timer.
fn put_check(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    node: &str,
    meta: &Meta,
    def: AgentCheckDef,
) -> Result<(), Error> {
    let (id, ttl_ms) = (def.check.check_id.clone(), def.ttl_ms);
    register::ensure_check(tx, ctx, node, meta, def.check)?;
    let Some(stored) = CHECKS_ID.get(tx, &pair(meta.tenancy(), node, &id))? else {
        return Err(Error::internal(format!("check {id:?} vanished")));
    };
    if ttl_ms > 0 {
        check_ttl::start(tx, ctx, &stored, ttl_ms)
    } else {
        check_ttl::forget(tx, &stored)
    }
}

/// `agent-service-register` (Consul's `Agent.AddService`): the service on the node, then
/// its checks; with `replace_existing_checks`, the service's other checks go. A service ID
/// already registered under another name is refused (renaming would need write on both
/// names, and the route declares only the new one).
pub(crate) fn service_register(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    req: AgentServiceRegister,
) -> Result<bool, Error> {
    let meta = req.tenancy.resolve()?;
    let node = agent_node(tx, &req.node, &meta)?;
    let mut s = req.service;
    require("service name", &s.service)?;
    if s.id.is_empty() {
        s.id = s.service.clone();
    }
    if reserved_service(&s.id) {
        return Err(refuse_reserved("Service", &s.id));
    }
    if let Some(c) = req
        .checks
        .iter()
        .find(|c| reserved_check(&c.check.check_id))
    {
        return Err(refuse_reserved("Check", &c.check.check_id));
    }
    if let Some(old) = SERVICES_ID.get(tx, &pair(meta.tenancy(), &node, &s.id))?
        && old.service != s.service
    {
        return Err(Error::bad_request(format!(
            "Service ID {:?} is registered as service {:?}: deregister it before registering \
             it as {:?}",
            s.id, old.service, s.service
        )));
    }
    let id = s.id.clone();
    register::ensure_service(tx, ctx, &node, &meta, s)?;
    let mut kept = Vec::new();
    for mut def in req.checks {
        def.check.service_id = id.clone();
        kept.push(def.check.check_id.clone());
        put_check(tx, ctx, &node, &meta, def)?;
    }
    if req.replace_existing_checks {
        for c in service_checks(tx, &node, &meta, &id)? {
            if !kept.contains(&c.check_id) {
                register::delete_check(tx, &c)?;
            }
        }
    }
    Ok(true)
}

/// The checks of service `id` on `node`.
fn service_checks(tx: &dyn Txn, node: &str, meta: &Meta, id: &str) -> Result<Vec<Check>, Error> {
    let mut out = Vec::new();
    for c in CHECKS_NODE.iter(tx, &named(meta.partition(), node)) {
        let c = c?;
        if c.service_id == id && c.tenancy == *meta {
            out.push(c);
        }
    }
    Ok(out)
}

/// `unknown` in place of `e` when `e` says the node is not registered (then nothing is on
/// it).
fn missing(e: Error, unknown: Error) -> Error {
    if e.kind == fsmhost_guest::ErrorKind::Conflict {
        unknown
    } else {
        e
    }
}

/// The service `id` of the node, or Consul's 404.
fn existing_service(
    tx: &dyn Txn,
    node: &str,
    meta: &Meta,
    id: &str,
) -> Result<(String, Service), Error> {
    if reserved_service(id) {
        return Err(unknown_service(id));
    }
    let node = agent_node(tx, node, meta).map_err(|e| missing(e, unknown_service(id)))?;
    match SERVICES_ID.get(tx, &pair(meta.tenancy(), &node, id))? {
        Some(s) => Ok((node, s)),
        None => Err(unknown_service(id)),
    }
}

/// `agent-service-deregister` (Consul's `Agent.RemoveService`): the service and its checks.
pub(crate) fn service_deregister(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    req: AgentTarget,
) -> Result<bool, Error> {
    let meta = req.tenancy.resolve()?;
    let (node, s) = existing_service(tx, &req.node, &meta, &req.id)?;
    let dereg = DeregisterRequest {
        node,
        service_id: s.id,
        check_id: String::new(),
        tenancy: meta,
    };
    register::deregister(tx, ctx, dereg)
}

/// `agent-service-maintenance` (Consul's `EnableServiceMaintenance` and
/// `DisableServiceMaintenance`): a critical check `_service_maintenance:<id>` on the
/// service, or none.
pub(crate) fn service_maintenance(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    req: AgentMaintenance,
) -> Result<bool, Error> {
    let meta = req.tenancy.resolve()?;
    let (node, s) = existing_service(tx, &req.node, &meta, &req.service_id)?;
    let check_id = format!("{SERVICE_MAINT_PREFIX}{}", s.id);
    let existing = CHECKS_ID.get(tx, &pair(meta.tenancy(), &node, &check_id))?;
    match (req.enable, existing) {
        (true, Some(_)) => {}
        (true, None) => {
            let notes = if req.reason.is_empty() {
                DEFAULT_SERVICE_MAINT_REASON.to_string()
            } else {
                req.reason
            };
            let check = Check {
                check_id,
                name: SERVICE_MAINT_NAME.into(),
                notes,
                service_id: s.id,
                status: "critical".into(),
                ..Check::default()
            };
            register::ensure_check(tx, ctx, &node, &meta, check)?;
        }
        (false, Some(c)) => register::delete_check(tx, &c)?,
        (false, None) => {}
    }
    Ok(true)
}

/// `agent-check-register` (Consul's `Agent.AddCheck`): a service check's service must be on
/// the node (Consul's 404 `ServiceID "<id>" does not exist`).
pub(crate) fn check_register(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    req: AgentCheckRegister,
) -> Result<bool, Error> {
    let meta = req.tenancy.resolve()?;
    let node = agent_node(tx, &req.node, &meta)?;
    require("check name", &req.check.check.name)?;
    if reserved_check(&req.check.check.check_id) {
        return Err(refuse_reserved("Check", &req.check.check.check_id));
    }
    let sid = &req.check.check.service_id;
    if !sid.is_empty()
        && SERVICES_ID
            .get(tx, &pair(meta.tenancy(), &node, sid))?
            .is_none()
    {
        return Err(Error::not_found(format!(
            "ServiceID {sid:?} does not exist"
        )));
    }
    put_check(tx, ctx, &node, &meta, req.check)?;
    Ok(true)
}

/// The check `id` of the node, or Consul's 404.
fn existing_check(tx: &dyn Txn, node: &str, meta: &Meta, id: &str) -> Result<Check, Error> {
    if reserved_check(id) {
        return Err(unknown_check(id));
    }
    let node = agent_node(tx, node, meta).map_err(|e| missing(e, unknown_check(id)))?;
    CHECKS_ID
        .get(tx, &pair(meta.tenancy(), &node, id))?
        .ok_or_else(|| unknown_check(id))
}

/// `agent-check-deregister` (Consul's `Agent.RemoveCheck`).
pub(crate) fn check_deregister(
    tx: &mut dyn Txn,
    _ctx: &Ctx,
    req: AgentTarget,
) -> Result<bool, Error> {
    let meta = req.tenancy.resolve()?;
    let c = existing_check(tx, &req.node, &meta, &req.id)?;
    register::delete_check(tx, &c)?;
    Ok(true)
}

/// `agent-check-update` (Consul's `updateTTLCheck`): the status and output of a TTL check,
/// its timer restarted at the entry's timestamp; a check without a TTL is refused with
/// Consul's error.
pub(crate) fn check_update(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    req: AgentCheckUpdate,
) -> Result<bool, Error> {
    let meta = req.tenancy.resolve()?;
    let mut c = existing_check(tx, &req.node, &meta, &req.check_id)?;
    if !STATES.contains(&req.status.as_str()) {
        return Err(Error::bad_request(format!(
            "Invalid check status: '{}'",
            req.status
        )));
    }
    let Some(row) = check_ttl::timer(tx, &meta.tenancy(), &c.node, &c.check_id)? else {
        return Err(Error::conflict(format!(
            "CheckID {:?} does not have associated TTL",
            req.check_id
        )));
    };
    (c.status, c.output) = (req.status, req.output);
    let node = c.node.clone();
    register::ensure_check(tx, ctx, &node, &meta, c.clone())?;
    check_ttl::start(tx, ctx, &c, row.ttl_ms)?;
    Ok(true)
}

/// `agent-state`: the node's services and checks in the request's namespace (none for a
/// node not registered yet).
pub(crate) fn agent_state(tx: &dyn Txn, args: NodeArgs) -> Result<Indexed<AgentState>, Error> {
    require("node", &args.node)?;
    let meta = args.tenancy.resolve()?;
    let mut state = AgentState::default();
    for s in SERVICES_NODE.iter(tx, &named(meta.partition(), &args.node)) {
        let s = s?;
        if s.tenancy == meta && !reserved_service(&s.id) {
            state.services.push(s);
        }
    }
    state.services.sort_by(|a, b| a.id.cmp(&b.id));
    let t: Tenancy = meta.tenancy();
    for c in CHECKS_NODE.iter(tx, &named(meta.partition(), &args.node)) {
        let c = c?;
        if c.tenancy != meta || reserved_check(&c.check_id) || reserved_service(&c.service_id) {
            continue;
        }
        let kind = if check_ttl::timer(tx, &t, &c.node, &c.check_id)?.is_some() {
            "ttl"
        } else if c.check_id.starts_with(SERVICE_MAINT_PREFIX) {
            "maintenance"
        } else {
            ""
        };
        state.checks.push(AgentCheck {
            check: c,
            kind: kind.to_string(),
        });
    }
    state
        .checks
        .sort_by(|a, b| a.check.check_id.cmp(&b.check.check_id));
    let mut index = 0;
    for table in [SERVICES.name(), CHECKS.name(), check_ttl::CHECK_TTLS.name()] {
        index = index.max(tx.table_index(table)?);
    }
    Ok(Indexed {
        items: state,
        index,
    })
}
