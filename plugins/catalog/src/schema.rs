//! The catalog tables, after Consul's `agent/consul/state/catalog_schema.go`: the records
//! ([`Node`], [`Service`], [`Check`]), where they live ([`Meta`]), and every index.

use fsmhost_guest::{Error, Index, Table, Tenancy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::EDITION;

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
    pub(crate) fn tenancy(&self) -> Tenancy {
        Tenancy {
            partition: self.partition.clone(),
            namespace: self.namespace.clone(),
        }
    }

    /// The partition alone (what nodes, and a node's services and checks, are keyed by).
    pub(crate) fn partition(&self) -> Tenancy {
        Tenancy {
            partition: self.partition.clone(),
            namespace: String::new(),
        }
    }

    /// Checks what a request gave and fills in the defaults (see [`Tenancy::resolve`]).
    pub(crate) fn resolve(&self) -> Result<Meta, Error> {
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
#[serde(rename_all = "PascalCase", from = "crate::wire::ServiceIn")]
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
    /// How DNS weighs it by the state of its checks (only the leader's own `consul`
    /// service has them: client bodies' `Weights` are not kept, and a service without them
    /// is stored and printed as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Weights>,
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

/// Consul's `Weights` of a service: its DNS weight while its checks pass, and while one
/// warns.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    /// Weight while passing.
    pub passing: i64,
    /// Weight while warning.
    pub warning: i64,
}

/// A health check on a node or on one of its services: Consul's `HealthCheck`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase", from = "crate::wire::CheckIn")]
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

pub(crate) fn lower(a: &Named) -> Vec<u8> {
    a.0.key(EDITION).string_lower(&a.1).build()
}

pub(crate) fn exact(a: &Named) -> Vec<u8> {
    a.0.key(EDITION).string(&a.1).build()
}

pub(crate) fn node_and(a: &Pair) -> Vec<u8> {
    a.0.key(EDITION).string_lower(&a.1).string(&a.2).build()
}

pub(crate) fn meta_key(a: &Pair) -> Vec<u8> {
    a.0.key(EDITION).string(&a.1).string(&a.2).build()
}

pub(crate) fn tenancy_key(t: &Tenancy) -> Vec<u8> {
    t.key(EDITION).build()
}

pub(crate) fn named(t: Tenancy, name: &str) -> Named {
    (t, name.to_string())
}

pub(crate) fn pair(t: Tenancy, a: &str, b: &str) -> Pair {
    (t, a.to_string(), b.to_string())
}

/// `nodes.id`: the node name, case-insensitive (in its partition).
pub static NODES_ID: Index<Node, Named> = Index::new(
    &NODES,
    "id",
    |n: &Node, k| k.push(lower(&named(n.tenancy.partition(), &n.node))),
    lower,
)
.unique();

/// `nodes.uuid`: the node's ID, when it has one.
pub static NODES_UUID: Index<Node, Named> = Index::new(
    &NODES,
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
    &NODES,
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
    &NODES,
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
    &SERVICES,
    "id",
    |s: &Service, k| k.push(node_and(&pair(s.tenancy.tenancy(), &s.node, &s.id))),
    node_and,
)
.unique();

/// `services.node`: the node's services, in every namespace of its partition.
pub static SERVICES_NODE: Index<Service, Named> = Index::new(
    &SERVICES,
    "node",
    |s: &Service, k| k.push(lower(&named(s.tenancy.partition(), &s.node))),
    lower,
);

/// `services.service`: the instances of a service name, case-insensitive.
pub static SERVICES_SERVICE: Index<Service, Named> = Index::new(
    &SERVICES,
    "service",
    |s: &Service, k| k.push(lower(&named(s.tenancy.tenancy(), &s.service))),
    lower,
);

/// `services.kind`: the services of one kind (`""` for typical ones).
pub static SERVICES_KIND: Index<Service, Named> = Index::new(
    &SERVICES,
    "kind",
    |s: &Service, k| k.push(exact(&named(s.tenancy.tenancy(), &s.kind))),
    exact,
);

/// `services.namespace` (enterprise edition): the services of a partition and namespace.
pub static SERVICES_NAMESPACE: Index<Service, Tenancy> = Index::new(
    &SERVICES,
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
    &CHECKS,
    "id",
    |c: &Check, k| k.push(node_and(&pair(c.tenancy.tenancy(), &c.node, &c.check_id))),
    node_and,
)
.unique();

/// `checks.node`: the node's checks, in every namespace of its partition.
pub static CHECKS_NODE: Index<Check, Named> = Index::new(
    &CHECKS,
    "node",
    |c: &Check, k| k.push(lower(&named(c.tenancy.partition(), &c.node))),
    lower,
);

/// `checks.service`: the checks of a service name (node checks have none).
pub static CHECKS_SERVICE: Index<Check, Named> = Index::new(
    &CHECKS,
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
    &CHECKS,
    "status",
    |c: &Check, k| k.push(lower(&named(c.tenancy.tenancy(), &c.status))),
    lower,
);

/// `checks.namespace` (enterprise edition): the checks of a partition and namespace.
pub static CHECKS_NAMESPACE: Index<Check, Tenancy> = Index::new(
    &CHECKS,
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

/// A session hanging on a check: Consul's `sessionCheck` (`session_checks` table), the
/// catalog's own record of which sessions a check's critical state or deregistration
/// invalidates. One row per check of a session (its node checks and its service checks).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct SessionCheck {
    /// The node of the check (and of the session).
    pub node: String,
    /// The check's ID on that node.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// The session's ID.
    pub session: String,
    /// The check's partition and namespace (enterprise edition; empty in OSS).
    #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
    pub tenancy: Tenancy,
    /// The session's namespace, in the check's partition (enterprise edition; empty in OSS).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_namespace: String,
}

impl SessionCheck {
    /// The partition and namespace of the session.
    pub fn session_tenancy(&self) -> Tenancy {
        Tenancy {
            partition: self.tenancy.partition.clone(),
            namespace: self.session_namespace.clone(),
        }
    }
}

fn session_check_id(c: &SessionCheck) -> Vec<u8> {
    c.tenancy
        .key(EDITION)
        .string_lower(&c.node)
        .string(&c.check_id)
        .string(&c.session_namespace)
        .string_lower(&c.session)
        .build()
}

/// `session_checks.id`: check (partition, namespace, node, check ID) + session (namespace,
/// ID).
pub static SESSION_CHECKS_ID: Index<SessionCheck, SessionCheck> = Index::new(
    &SESSION_CHECKS,
    "id",
    |c: &SessionCheck, k| k.push(session_check_id(c)),
    session_check_id,
)
.unique();

/// `session_checks.node_check`: the sessions hanging on a check (node + check ID, in the
/// check's partition and namespace; the check ID as `checks.id` has it).
pub static SESSION_CHECKS_NODE_CHECK: Index<SessionCheck, Pair> = Index::new(
    &SESSION_CHECKS,
    "node_check",
    |c: &SessionCheck, k| k.push(node_and(&pair(c.tenancy.clone(), &c.node, &c.check_id))),
    node_and,
);

/// `session_checks.session`: the checks of a session (in the session's partition and
/// namespace).
pub static SESSION_CHECKS_SESSION: Index<SessionCheck, Named> = Index::new(
    &SESSION_CHECKS,
    "session",
    |c: &SessionCheck, k| k.push(lower(&named(c.session_tenancy(), &c.session))),
    lower,
);

/// `session_checks.namespace` (enterprise edition): the rows of the sessions of a
/// partition and namespace.
pub static SESSION_CHECKS_NAMESPACE: Index<SessionCheck, Tenancy> = Index::new(
    &SESSION_CHECKS,
    "namespace",
    |c: &SessionCheck, k| k.push(tenancy_key(&c.session_tenancy())),
    tenancy_key,
)
.prefix(tenancy_key);

/// The `session_checks` table.
pub static SESSION_CHECKS: Table<SessionCheck> = Table::new(
    "session_checks",
    &[
        &SESSION_CHECKS_ID,
        &SESSION_CHECKS_NODE_CHECK,
        &SESSION_CHECKS_SESSION,
        #[cfg(feature = "enterprise")]
        &SESSION_CHECKS_NAMESPACE,
    ],
);
