//! Catalog writes, as Consul's `agent/consul/state/catalog.go` does them: a registration
//! is a node, then its service, then its checks (`ensureNodeTxn`, `ensureServiceTxn`,
//! `ensureCheckTxn`); a deregistration removes a node with everything on it, a service
//! with its checks, or a check. A check that goes critical or is deregistered ends the
//! sessions hanging on it, and a deregistered node all of its sessions (`sessions.rs`).

use fsmhost_guest::{Ctx, Error, Table, Txn};
use serde::Serialize;

use crate::*;

/// Inserts `new` unless it equals `old` but for the indexes (Consul skips such writes, so
/// watchers do not wake); keeps `old`'s create index.
fn upsert<T: Clone + PartialEq + Serialize + serde::de::DeserializeOwned>(
    tx: &mut dyn Txn,
    table: &Table<T>,
    ctx: &Ctx,
    old: Option<T>,
    mut new: T,
    indexes: fn(&mut T) -> (&mut u64, &mut u64),
) -> Result<(), Error> {
    let (create, modify) = match old.clone() {
        Some(mut o) => {
            let (c, m) = indexes(&mut o);
            (*c, *m)
        }
        None => (ctx.index, ctx.index),
    };
    let (c, m) = indexes(&mut new);
    (*c, *m) = (create, modify);
    if old.as_ref() == Some(&new) {
        return Ok(());
    }
    *indexes(&mut new).1 = ctx.index;
    table.insert(tx, &new)?;
    Ok(())
}

fn node_indexes(n: &mut Node) -> (&mut u64, &mut u64) {
    (&mut n.create_index, &mut n.modify_index)
}

fn service_indexes(s: &mut Service) -> (&mut u64, &mut u64) {
    (&mut s.create_index, &mut s.modify_index)
}

fn check_indexes(c: &mut Check) -> (&mut u64, &mut u64) {
    (&mut c.create_index, &mut c.modify_index)
}

/// Registers a node, and optionally a service and checks on it (Consul's
/// `ensureRegistrationTxn`). The node goes in the request's partition; the service and the
/// checks in its partition and namespace.
pub(crate) fn register(tx: &mut dyn Txn, ctx: &Ctx, req: RegisterRequest) -> Result<bool, Error> {
    require("node", &req.node)?;
    let meta = req.tenancy.resolve()?;
    let node_name = ensure_node(tx, ctx, &req, &meta)?;
    if let Some(service) = req.service {
        ensure_service(tx, ctx, &node_name, &meta, service)?;
    }
    for check in req.check.into_iter().chain(req.checks) {
        ensure_check(tx, ctx, &node_name, &meta, check)?;
    }
    Ok(true)
}

/// The node of a registration (Consul's `ensureNodeTxn`): written unless the request says
/// to leave an existing node as it is; refused when its ID belongs to another node.
/// Returns the node's name as stored (an existing node keeps its case).
fn ensure_node(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    req: &RegisterRequest,
    meta: &Meta,
) -> Result<String, Error> {
    let part = meta.partition();
    let node_meta = Meta {
        partition: meta.partition.clone(),
        namespace: String::new(),
    };
    let existing = NODES_ID.get(tx, &named(part.clone(), &req.node))?;
    let node_name = existing
        .as_ref()
        .map_or(req.node.clone(), |n| n.node.clone());
    if req.skip_node_update && existing.is_some() {
        return Ok(node_name);
    }
    require("address", &req.address)?;
    if !req.id.is_empty()
        && let Some(other) = NODES_UUID.get(tx, &named(part.clone(), &req.id))?
        && other.node.to_lowercase() != req.node.to_lowercase()
    {
        return Err(Error::conflict(format!(
            "Error registering node {:?}: node ID {:?} is already registered by node {:?}",
            req.node, req.id, other.node
        )));
    }
    let node = Node {
        id: req.id.clone(),
        node: req.node.clone(),
        address: req.address.clone(),
        datacenter: req.datacenter.clone(),
        tagged_addresses: req.tagged_addresses.clone(),
        meta: req.node_meta.clone(),
        create_index: 0,
        modify_index: 0,
        tenancy: node_meta,
    };
    upsert(tx, &NODES, ctx, existing, node, node_indexes)?;
    Ok(node_name)
}

/// A service of a registration on node `node_name` (Consul's `ensureServiceTxn`): its ID
/// defaults to its name.
pub(crate) fn ensure_service(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    node_name: &str,
    meta: &Meta,
    mut s: Service,
) -> Result<(), Error> {
    require("service name", &s.service)?;
    if s.id.is_empty() {
        s.id = s.service.clone();
    }
    s.node = node_name.to_string();
    s.tenancy = meta.clone();
    let old = SERVICES_ID.get(tx, &pair(meta.tenancy(), node_name, &s.id))?;
    upsert(tx, &SERVICES, ctx, old, s, service_indexes)
}

/// A check of a registration on node `node_name` (Consul's `ensureCheckTxn`): its ID
/// defaults to its name and its status to critical; a service check takes its service's
/// name and tags, and the service must be registered on the node.
pub(crate) fn ensure_check(
    tx: &mut dyn Txn,
    ctx: &Ctx,
    node_name: &str,
    meta: &Meta,
    mut c: Check,
) -> Result<(), Error> {
    require("check name", &c.name)?;
    if c.check_id.is_empty() {
        c.check_id = c.name.clone();
    }
    if c.status.is_empty() {
        c.status = "critical".into();
    }
    if !STATES.contains(&c.status.as_str()) {
        return Err(Error::bad_request(format!(
            "Check {:?}: status {:?} is not one of passing, warning, critical",
            c.check_id, c.status
        )));
    }
    c.node = node_name.to_string();
    c.tenancy = meta.clone();
    let t = meta.tenancy();
    if !c.service_id.is_empty() {
        let Some(s) = SERVICES_ID.get(tx, &pair(t.clone(), node_name, &c.service_id))? else {
            return Err(Error::not_found(format!(
                "Error registering check {:?}: service {:?} is not registered on node {:?}",
                c.check_id, c.service_id, node_name
            )));
        };
        c.service_name = s.service;
        c.service_tags = s.tags;
    } else {
        c.service_name.clear();
        c.service_tags.clear();
    }
    let old = CHECKS_ID.get(tx, &pair(t.clone(), node_name, &c.check_id))?;
    let (critical, check_id) = (c.status == "critical", c.check_id.clone());
    upsert(tx, &CHECKS, ctx, old, c, check_indexes)?;
    // Consul's ensureCheckTxn: a critical check invalidates the sessions hanging on it.
    if critical {
        sessions::invalidate_check(tx, &t, node_name, &check_id)?;
    }
    Ok(())
}

/// Deletes a check (and its TTL timer) and ends the sessions hanging on it (Consul's
/// `deleteCheckTxn`).
pub(crate) fn delete_check(tx: &mut dyn Txn, c: &Check) -> Result<(), Error> {
    CHECKS.delete(tx, c)?;
    check_ttl::forget(tx, c)?;
    sessions::invalidate_check(tx, &c.tenancy.tenancy(), &c.node, &c.check_id)
}

/// Deregisters a node with everything on it (in every namespace of its partition), one
/// service with its checks, or one check (in the request's namespace).
pub(crate) fn deregister(
    tx: &mut dyn Txn,
    _ctx: &Ctx,
    req: DeregisterRequest,
) -> Result<bool, Error> {
    require("node", &req.node)?;
    let meta = req.tenancy.resolve()?;
    let (t, part) = (meta.tenancy(), meta.partition());
    if !req.check_id.is_empty() {
        if let Some(c) = CHECKS_ID.get(tx, &pair(t, &req.node, &req.check_id))? {
            delete_check(tx, &c)?;
        }
        return Ok(true);
    }
    let checks: Vec<Check> = CHECKS_NODE
        .iter(tx, &named(part.clone(), &req.node))
        .collect::<Result<_, _>>()?;
    if !req.service_id.is_empty() {
        if let Some(s) = SERVICES_ID.get(tx, &pair(t, &req.node, &req.service_id))? {
            for c in checks
                .iter()
                .filter(|c| c.service_id == s.id && c.tenancy == s.tenancy)
            {
                delete_check(tx, c)?;
            }
            SERVICES.delete(tx, &s)?;
        }
        return Ok(true);
    }
    for c in &checks {
        CHECKS.delete(tx, c)?;
        check_ttl::forget(tx, c)?;
    }
    // Consul's deleteNodeTxn: every session of the node ends (those hanging on its checks
    // are among them).
    sessions::invalidate_node(tx, &part, &req.node)?;
    let services: Vec<Service> = SERVICES_NODE
        .iter(tx, &named(part.clone(), &req.node))
        .collect::<Result<_, _>>()?;
    for s in &services {
        SERVICES.delete(tx, s)?;
    }
    if let Some(n) = NODES_ID.get(tx, &named(part, &req.node))? {
        NODES.delete(tx, &n)?;
    }
    Ok(true)
}
