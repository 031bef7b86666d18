//! Consul's catalog as an fsmhost plugin: nodes, the services they run, and the health
//! checks on both (`agent/consul/state/catalog.go`, `catalog_schema.go`).
//!
//! Tables and indexes:
//! - `nodes`: [`Node`]; `id` the node name (case-insensitive, as Consul's), `uuid` its ID
//!   (unique, allow-missing), `meta` every `key\0value` pair of its metadata (multi-valued).
//! - `services`: [`Service`]; `id` node + service ID, `node`, `service` the service name
//!   (case-insensitive), `kind`.
//! - `checks`: [`Check`]; `id` node + check ID, `node`, `service` the service name
//!   (allow-missing: node checks have none), `status`.
//!
//! Commands: `register` (a node, optionally a service and checks: Consul's
//! `RegisterRequest`), `deregister` (a node with everything on it, one service with its
//! checks, or one check). Queries: `nodes`, `services`, `service-nodes`, `node-services`,
//! `node-checks`, `service-checks`, `checks-in-state`, `service-health`.
//!
//! Record field names are Consul's, so the HTTP module renders records as they are stored.
//!
//! HTTP (module [`http`]): Consul's `/v1/catalog/*` and `/v1/health/*`.

use fsmhost_guest::http::Route;
use fsmhost_guest::{Ctx, Edition, Error, Index, KeyRange, Plugin, Table, Tenancy, Txn};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod http;

/// The edition this build is (the `enterprise` cargo feature): the enterprise edition puts
/// nodes in a partition and services and checks in a partition and a namespace, and reads
/// `?ns=` and `?partition=`.
pub const EDITION: Edition = if cfg!(feature = "enterprise") {
    Edition::Enterprise
} else {
    Edition::Oss
};

/// Where a record lives (enterprise edition): Consul's `Partition` and `Namespace` fields,
/// omitted when empty (always, in OSS).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Meta {
    /// The admin partition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    /// The namespace (nodes have none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

impl Meta {
    fn tenancy(&self) -> Tenancy {
        Tenancy {
            partition: self.partition.clone(),
            namespace: self.namespace.clone(),
        }
    }

    /// The partition alone (what nodes, and a node's services and checks, are keyed by).
    fn partition(&self) -> Tenancy {
        Tenancy {
            partition: self.partition.clone(),
            namespace: String::new(),
        }
    }

    /// Checks what a request gave and fills in the defaults (see [`Tenancy::resolve`]).
    fn resolve(&self) -> Result<Meta, Error> {
        let t = self.tenancy().resolve(EDITION)?;
        Ok(Meta {
            partition: t.partition,
            namespace: t.namespace,
        })
    }
}

/// A node: Consul's `Node`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    /// Its UUID (may be empty).
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Its name.
    pub node: String,
    /// Its address.
    #[serde(default)]
    pub address: String,
    /// Its datacenter.
    #[serde(default)]
    pub datacenter: String,
    /// Other addresses by kind (`lan`, `wan`, ...).
    #[serde(default)]
    pub tagged_addresses: BTreeMap<String, String>,
    /// Metadata.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Index of the write that created it.
    #[serde(default)]
    pub create_index: u64,
    /// Index of the last write that changed it.
    #[serde(default)]
    pub modify_index: u64,
    /// Its partition (enterprise edition; empty in OSS).
    #[serde(flatten)]
    pub tenancy: Meta,
}

/// A service instance on a node: Consul's `NodeService`, with its node's name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    /// The node it runs on (not in a registration body: the request names the node).
    #[serde(default)]
    pub node: String,
    /// `""` for a typical service, or `connect-proxy`, `mesh-gateway`, ...
    #[serde(default)]
    pub kind: String,
    /// Its ID, unique on its node (defaults to the name).
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Its name.
    pub service: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Its address (empty: the node's).
    #[serde(default)]
    pub address: String,
    /// Metadata.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Its port.
    #[serde(default)]
    pub port: u16,
    /// Index of the write that created it.
    #[serde(default)]
    pub create_index: u64,
    /// Index of the last write that changed it.
    #[serde(default)]
    pub modify_index: u64,
    /// Its partition and namespace (enterprise edition; empty in OSS).
    #[serde(flatten)]
    pub tenancy: Meta,
}

/// A health check on a node or on one of its services: Consul's `HealthCheck`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Check {
    /// The node.
    #[serde(default)]
    pub node: String,
    /// Its ID, unique on its node (defaults to the name).
    #[serde(rename = "CheckID", default)]
    pub check_id: String,
    /// Its name.
    pub name: String,
    /// `passing`, `warning` or `critical` (a new check without one is `critical`).
    #[serde(default)]
    pub status: String,
    /// Notes for people.
    #[serde(default)]
    pub notes: String,
    /// The check's last output.
    #[serde(default)]
    pub output: String,
    /// The service it checks (empty: the node).
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    /// That service's name (filled in from the service).
    #[serde(default)]
    pub service_name: String,
    /// That service's tags (filled in from the service).
    #[serde(default)]
    pub service_tags: Vec<String>,
    /// Index of the write that created it.
    #[serde(default)]
    pub create_index: u64,
    /// Index of the last write that changed it.
    #[serde(default)]
    pub modify_index: u64,
    /// Its partition and namespace (enterprise edition; empty in OSS).
    #[serde(flatten)]
    pub tenancy: Meta,
}

/// The check states Consul knows.
pub const STATES: [&str; 3] = ["passing", "warning", "critical"];

/// A name in a tenancy: what most indexes are looked up by.
pub type Named = (Tenancy, String);
/// Two names in a tenancy (node + service ID, node + check ID, meta key + value).
pub type Pair = (Tenancy, String, String);

fn lower(a: &Named) -> Vec<u8> {
    a.0.key(EDITION).string_lower(&a.1).build()
}

fn exact(a: &Named) -> Vec<u8> {
    a.0.key(EDITION).string(&a.1).build()
}

fn node_and(a: &Pair) -> Vec<u8> {
    a.0.key(EDITION).string_lower(&a.1).string(&a.2).build()
}

fn meta_key(a: &Pair) -> Vec<u8> {
    a.0.key(EDITION).string(&a.1).string(&a.2).build()
}

fn tenancy_key(t: &Tenancy) -> Vec<u8> {
    t.key(EDITION).build()
}

fn named(t: Tenancy, name: &str) -> Named {
    (t, name.to_string())
}

fn pair(t: Tenancy, a: &str, b: &str) -> Pair {
    (t, a.to_string(), b.to_string())
}

/// `nodes.id`: the node name, case-insensitive (in its partition).
pub static NODES_ID: Index<Node, Named> = Index::new(
    "nodes",
    "id",
    |n: &Node, k| k.push(lower(&named(n.tenancy.partition(), &n.node))),
    lower,
)
.unique();

/// `nodes.uuid`: the node's ID, when it has one.
pub static NODES_UUID: Index<Node, Named> = Index::new(
    "nodes",
    "uuid",
    |n: &Node, k| {
        if !n.id.is_empty() {
            k.push(lower(&named(n.tenancy.partition(), &n.id)))
        }
    },
    lower,
)
.unique()
.allow_missing();

/// `nodes.meta`: one key per metadata pair (`(key, value)`).
pub static NODES_META: Index<Node, Pair> = Index::new(
    "nodes",
    "meta",
    |n: &Node, k| {
        for (key, value) in &n.meta {
            k.push(meta_key(&pair(n.tenancy.partition(), key, value)))
        }
    },
    meta_key,
)
.multi()
.allow_missing();

/// `nodes.namespace` (enterprise edition): the nodes of a partition.
pub static NODES_NAMESPACE: Index<Node, Tenancy> = Index::new(
    "nodes",
    "namespace",
    |n: &Node, k| k.push(tenancy_key(&n.tenancy.partition())),
    tenancy_key,
)
.prefix(tenancy_key);

/// The `nodes` table.
pub static NODES: Table<Node> = Table::new(
    "nodes",
    &[
        &NODES_ID,
        &NODES_UUID,
        &NODES_META,
        #[cfg(feature = "enterprise")]
        &NODES_NAMESPACE,
    ],
);

/// `services.id`: node + service ID (in the service's partition and namespace).
pub static SERVICES_ID: Index<Service, Pair> = Index::new(
    "services",
    "id",
    |s: &Service, k| k.push(node_and(&pair(s.tenancy.tenancy(), &s.node, &s.id))),
    node_and,
)
.unique();

/// `services.node`: the node's services, in every namespace of its partition.
pub static SERVICES_NODE: Index<Service, Named> = Index::new(
    "services",
    "node",
    |s: &Service, k| k.push(lower(&named(s.tenancy.partition(), &s.node))),
    lower,
);

/// `services.service`: the instances of a service name, case-insensitive.
pub static SERVICES_SERVICE: Index<Service, Named> = Index::new(
    "services",
    "service",
    |s: &Service, k| k.push(lower(&named(s.tenancy.tenancy(), &s.service))),
    lower,
);

/// `services.kind`: the services of one kind (`""` for typical ones).
pub static SERVICES_KIND: Index<Service, Named> = Index::new(
    "services",
    "kind",
    |s: &Service, k| k.push(exact(&named(s.tenancy.tenancy(), &s.kind))),
    exact,
);

/// `services.namespace` (enterprise edition): the services of a partition and namespace.
pub static SERVICES_NAMESPACE: Index<Service, Tenancy> = Index::new(
    "services",
    "namespace",
    |s: &Service, k| k.push(tenancy_key(&s.tenancy.tenancy())),
    tenancy_key,
)
.prefix(tenancy_key);

/// The `services` table.
pub static SERVICES: Table<Service> = Table::new(
    "services",
    &[
        &SERVICES_ID,
        &SERVICES_NODE,
        &SERVICES_SERVICE,
        &SERVICES_KIND,
        #[cfg(feature = "enterprise")]
        &SERVICES_NAMESPACE,
    ],
);

/// `checks.id`: node + check ID (in the check's partition and namespace).
pub static CHECKS_ID: Index<Check, Pair> = Index::new(
    "checks",
    "id",
    |c: &Check, k| k.push(node_and(&pair(c.tenancy.tenancy(), &c.node, &c.check_id))),
    node_and,
)
.unique();

/// `checks.node`: the node's checks, in every namespace of its partition.
pub static CHECKS_NODE: Index<Check, Named> = Index::new(
    "checks",
    "node",
    |c: &Check, k| k.push(lower(&named(c.tenancy.partition(), &c.node))),
    lower,
);

/// `checks.service`: the checks of a service name (node checks have none).
pub static CHECKS_SERVICE: Index<Check, Named> = Index::new(
    "checks",
    "service",
    |c: &Check, k| {
        if !c.service_name.is_empty() {
            k.push(lower(&named(c.tenancy.tenancy(), &c.service_name)))
        }
    },
    lower,
)
.allow_missing();

/// `checks.status`: the checks in one state.
pub static CHECKS_STATUS: Index<Check, Named> = Index::new(
    "checks",
    "status",
    |c: &Check, k| k.push(lower(&named(c.tenancy.tenancy(), &c.status))),
    lower,
);

/// `checks.namespace` (enterprise edition): the checks of a partition and namespace.
pub static CHECKS_NAMESPACE: Index<Check, Tenancy> = Index::new(
    "checks",
    "namespace",
    |c: &Check, k| k.push(tenancy_key(&c.tenancy.tenancy())),
    tenancy_key,
)
.prefix(tenancy_key);

/// The `checks` table.
pub static CHECKS: Table<Check> = Table::new(
    "checks",
    &[
        &CHECKS_ID,
        &CHECKS_NODE,
        &CHECKS_SERVICE,
        &CHECKS_STATUS,
        #[cfg(feature = "enterprise")]
        &CHECKS_NAMESPACE,
    ],
);

/// `register`: Consul's `RegisterRequest`.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterRequest {
    /// The node's UUID.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// The node's name.
    pub node: String,
    /// Its address.
    #[serde(default)]
    pub address: String,
    /// Its datacenter.
    #[serde(default)]
    pub datacenter: String,
    /// Other addresses.
    #[serde(default)]
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    #[serde(default)]
    pub node_meta: BTreeMap<String, String>,
    /// A service to register on the node.
    #[serde(default)]
    pub service: Option<Service>,
    /// One check.
    #[serde(default)]
    pub check: Option<Check>,
    /// More checks.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Leave an existing node's fields as they are.
    #[serde(default)]
    pub skip_node_update: bool,
    /// The node's partition, and the namespace of its service and checks (enterprise edition; empty in OSS).
    #[serde(flatten)]
    pub tenancy: Meta,
}

/// `deregister`: Consul's `DeregisterRequest`. With neither `ServiceID` nor `CheckID` the
/// whole node goes, with its services and checks.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "PascalCase")]
pub struct DeregisterRequest {
    /// The node.
    pub node: String,
    /// One service (and its checks).
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    /// One check.
    #[serde(rename = "CheckID", default)]
    pub check_id: String,
    /// The node's partition, and the namespace of the service or check (enterprise edition; empty in OSS).
    #[serde(flatten)]
    pub tenancy: Meta,
}

fn require(what: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::bad_request(format!("Must provide {what}")));
    }
    if value.contains('\0') {
        return Err(Error::bad_request(format!(
            "{what} {value:?} contains a NUL byte"
        )));
    }
    Ok(())
}

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
fn register(tx: &mut dyn Txn, ctx: &Ctx, req: RegisterRequest) -> Result<bool, Error> {
    require("node", &req.node)?;
    let meta = req.tenancy.resolve()?;
    let part = meta.partition();
    let node_meta = Meta {
        partition: meta.partition.clone(),
        namespace: String::new(),
    };
    let existing = NODES_ID.get(tx, &named(part.clone(), &req.node))?;
    let node_name = existing
        .as_ref()
        .map_or(req.node.clone(), |n| n.node.clone());
    if !(req.skip_node_update && existing.is_some()) {
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
    }
    let t = meta.tenancy();
    if let Some(mut s) = req.service {
        require("service name", &s.service)?;
        if s.id.is_empty() {
            s.id = s.service.clone();
        }
        s.node = node_name.clone();
        s.tenancy = meta.clone();
        let old = SERVICES_ID.get(tx, &pair(t.clone(), &node_name, &s.id))?;
        upsert(tx, &SERVICES, ctx, old, s, service_indexes)?;
    }
    for mut c in req.check.into_iter().chain(req.checks) {
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
        c.node = node_name.clone();
        c.tenancy = meta.clone();
        if !c.service_id.is_empty() {
            let Some(s) = SERVICES_ID.get(tx, &pair(t.clone(), &node_name, &c.service_id))? else {
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
        let old = CHECKS_ID.get(tx, &pair(t.clone(), &node_name, &c.check_id))?;
        upsert(tx, &CHECKS, ctx, old, c, check_indexes)?;
    }
    Ok(true)
}

/// Deregisters a node with everything on it (in every namespace of its partition), one
/// service with its checks, or one check (in the request's namespace).
fn deregister(tx: &mut dyn Txn, _ctx: &Ctx, req: DeregisterRequest) -> Result<bool, Error> {
    require("node", &req.node)?;
    let meta = req.tenancy.resolve()?;
    let (t, part) = (meta.tenancy(), meta.partition());
    if !req.check_id.is_empty() {
        if let Some(c) = CHECKS_ID.get(tx, &pair(t, &req.node, &req.check_id))? {
            CHECKS.delete(tx, &c)?;
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
                CHECKS.delete(tx, c)?;
            }
            SERVICES.delete(tx, &s)?;
        }
        return Ok(true);
    }
    for c in &checks {
        CHECKS.delete(tx, c)?;
    }
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

/// What a query returns: the records and the index of the data they come from (the
/// highest last-change index of the tables read, as Consul's blocking queries report).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Indexed<T> {
    /// The records.
    pub items: T,
    /// The index.
    pub index: u64,
}

fn max_index(tx: &dyn Txn, tables: &[&str]) -> Result<u64, Error> {
    let mut max = 0;
    for t in tables {
        max = max.max(tx.table_index(t)?);
    }
    Ok(max)
}

/// Every record of `index` in tenancy `t` (everything, in OSS), in the index's order.
fn all_in<T: serde::de::DeserializeOwned, A>(
    tx: &dyn Txn,
    index: &Index<T, A>,
    t: &Tenancy,
) -> Result<Vec<T>, Error> {
    index
        .iter_range(tx, KeyRange::Prefix(tenancy_key(t)))
        .collect()
}

/// `nodes` arguments: only nodes with all of this metadata.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct NodesArgs {
    /// `key → value` pairs a node must have.
    #[serde(default)]
    pub node_meta: BTreeMap<String, String>,
    /// The partition (enterprise edition).
    #[serde(default)]
    pub tenancy: Meta,
}

fn nodes(tx: &dyn Txn, args: NodesArgs) -> Result<Indexed<Vec<Node>>, Error> {
    let part = args.tenancy.resolve()?.partition();
    let mut items: Vec<Node> = match args.node_meta.iter().next() {
        None => all_in(tx, &NODES_ID, &part)?,
        Some((k, v)) => NODES_META
            .iter(tx, &pair(part, k, v))
            .collect::<Result<_, _>>()?,
    };
    items.retain(|n| args.node_meta.iter().all(|(k, v)| n.meta.get(k) == Some(v)));
    items.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(Indexed {
        items,
        index: max_index(tx, &["nodes"])?,
    })
}

/// `services`: every service name in the namespace (the default one without arguments)
/// with the union of its instances' tags.
fn services(
    tx: &dyn Txn,
    args: Option<Meta>,
) -> Result<Indexed<BTreeMap<String, Vec<String>>>, Error> {
    let t = args.unwrap_or_default().resolve()?.tenancy();
    let mut items: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in all_in(tx, &SERVICES_SERVICE, &t)? {
        let tags = items.entry(s.service).or_default();
        for t in s.tags {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
    }
    for tags in items.values_mut() {
        tags.sort();
    }
    Ok(Indexed {
        items,
        index: max_index(tx, &["services"])?,
    })
}

/// Arguments naming a service, optionally one of its tags, and (for health) whether only
/// instances whose every check passes are wanted.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ServiceArgs {
    /// The service name.
    pub service: String,
    /// Only instances with this tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Only instances whose checks (node and service) all pass.
    #[serde(default)]
    pub passing: bool,
    /// The partition and namespace (enterprise edition).
    #[serde(default)]
    pub tenancy: Meta,
}

/// One instance as `/v1/catalog/service` lists it: the service and its node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServiceNode {
    /// The node.
    pub node: Node,
    /// The service instance.
    pub service: Service,
}

fn instances(tx: &dyn Txn, args: &ServiceArgs) -> Result<Vec<ServiceNode>, Error> {
    require("service name", &args.service)?;
    let meta = args.tenancy.resolve()?;
    let mut out = Vec::new();
    for s in SERVICES_SERVICE.iter(tx, &named(meta.tenancy(), &args.service)) {
        let s = s?;
        if args
            .tag
            .as_ref()
            .is_some_and(|t| !s.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
        {
            continue;
        }
        let node = NODES_ID
            .get(tx, &named(meta.partition(), &s.node))?
            .ok_or_else(|| {
                Error::internal(format!(
                    "service {:?} names missing node {:?}",
                    s.id, s.node
                ))
            })?;
        out.push(ServiceNode { node, service: s });
    }
    out.sort_by(|a, b| (&a.node.node, &a.service.id).cmp(&(&b.node.node, &b.service.id)));
    Ok(out)
}

fn service_nodes(tx: &dyn Txn, args: ServiceArgs) -> Result<Indexed<Vec<ServiceNode>>, Error> {
    Ok(Indexed {
        items: instances(tx, &args)?,
        index: max_index(tx, &["nodes", "services"])?,
    })
}

/// One instance as `/v1/health/service` lists it: node, service and their checks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServiceHealth {
    /// The node.
    pub node: Node,
    /// The service instance.
    pub service: Service,
    /// The node's checks and the instance's.
    pub checks: Vec<Check>,
}

fn service_health(tx: &dyn Txn, args: ServiceArgs) -> Result<Indexed<Vec<ServiceHealth>>, Error> {
    let mut items = Vec::new();
    for sn in instances(tx, &args)? {
        let checks: Vec<Check> = CHECKS_NODE
            .iter(tx, &named(sn.node.tenancy.partition(), &sn.node.node))
            .filter(|c| {
                c.as_ref().map_or(true, |c| {
                    c.service_id.is_empty()
                        || (c.service_id == sn.service.id && c.tenancy == sn.service.tenancy)
                })
            })
            .collect::<Result<_, _>>()?;
        if args.passing && checks.iter().any(|c| c.status != "passing") {
            continue;
        }
        items.push(ServiceHealth {
            node: sn.node,
            service: sn.service,
            checks: sorted(checks),
        });
    }
    Ok(Indexed {
        items,
        index: max_index(tx, &["nodes", "services", "checks"])?,
    })
}

/// Arguments naming a node.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct NodeArgs {
    /// The node's name.
    pub node: String,
    /// The node's partition, and the namespace whose services and checks are wanted
    /// (enterprise edition).
    #[serde(default)]
    pub tenancy: Meta,
}

/// A node and its services (`/v1/catalog/node/<node>`); `None` for an unknown node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NodeServices {
    /// The node.
    pub node: Node,
    /// Its services by ID.
    pub services: BTreeMap<String, Service>,
}

fn node_services(tx: &dyn Txn, args: NodeArgs) -> Result<Indexed<Option<NodeServices>>, Error> {
    require("node", &args.node)?;
    let meta = args.tenancy.resolve()?;
    let items = match NODES_ID.get(tx, &named(meta.partition(), &args.node))? {
        None => None,
        Some(node) => {
            let mut services = BTreeMap::new();
            for s in SERVICES_NODE.iter(tx, &named(meta.partition(), &args.node)) {
                let s = s?;
                if s.tenancy == meta {
                    services.insert(s.id.clone(), s);
                }
            }
            Some(NodeServices { node, services })
        }
    };
    Ok(Indexed {
        items,
        index: max_index(tx, &["nodes", "services"])?,
    })
}

fn sorted(mut checks: Vec<Check>) -> Vec<Check> {
    checks.sort_by(|a, b| (&a.node, &a.check_id).cmp(&(&b.node, &b.check_id)));
    checks
}

fn node_checks(tx: &dyn Txn, args: NodeArgs) -> Result<Indexed<Vec<Check>>, Error> {
    require("node", &args.node)?;
    let meta = args.tenancy.resolve()?;
    let mut items = Vec::new();
    for c in CHECKS_NODE.iter(tx, &named(meta.partition(), &args.node)) {
        let c = c?;
        if c.tenancy == meta {
            items.push(c);
        }
    }
    Ok(Indexed {
        items: sorted(items),
        index: max_index(tx, &["checks"])?,
    })
}

fn service_checks(tx: &dyn Txn, args: ServiceArgs) -> Result<Indexed<Vec<Check>>, Error> {
    require("service name", &args.service)?;
    let t = args.tenancy.resolve()?.tenancy();
    Ok(Indexed {
        items: sorted(
            CHECKS_SERVICE
                .iter(tx, &named(t, &args.service))
                .collect::<Result<_, _>>()?,
        ),
        index: max_index(tx, &["checks"])?,
    })
}

/// Arguments naming a check state (`any` for all).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct StateArgs {
    /// `passing`, `warning`, `critical` or `any`.
    pub state: String,
    /// The partition and namespace (enterprise edition).
    #[serde(default)]
    pub tenancy: Meta,
}

fn checks_in_state(tx: &dyn Txn, args: StateArgs) -> Result<Indexed<Vec<Check>>, Error> {
    let t = args.tenancy.resolve()?.tenancy();
    let items = match args.state.as_str() {
        "any" => all_in(tx, &CHECKS_STATUS, &t)?,
        s if STATES.contains(&s) => CHECKS_STATUS
            .iter(tx, &named(t, &args.state))
            .collect::<Result<_, _>>()?,
        other => {
            return Err(Error::bad_request(format!(
                "Invalid check state {other:?}: use passing, warning, critical or any"
            )));
        }
    };
    Ok(Indexed {
        items: sorted(items),
        index: max_index(tx, &["checks"])?,
    })
}

/// The plugin.
pub fn plugin() -> Plugin {
    Plugin::new("catalog", env!("CARGO_PKG_VERSION"), EDITION.name())
        .table(&NODES)
        .table(&SERVICES)
        .table(&CHECKS)
        .command("register", register)
        .command("deregister", deregister)
        .query("nodes", nodes)
        .query("services", services)
        .query("service-nodes", service_nodes)
        .query("service-health", service_health)
        .query("node-services", node_services)
        .query("node-checks", node_checks)
        .query("service-checks", service_checks)
        .query("checks-in-state", checks_in_state)
        .route(
            Route::put("/v1/catalog/register"),
            http::route_write,
            http::render_write,
        )
        .route(
            Route::put("/v1/catalog/deregister"),
            http::route_write,
            http::render_write,
        )
        .route(
            Route::get(http::CATALOG).prefix(),
            http::route_catalog,
            http::render_read,
        )
        .route(
            Route::get(http::HEALTH).prefix(),
            http::route_health,
            http::render_read,
        )
}

fsmhost_guest::export_plugin!(plugin);

#[cfg(test)]
mod tests;
