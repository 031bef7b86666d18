//! What the catalog commands and queries take and answer: Consul's `RegisterRequest`,
//! `DeregisterRequest`, and the query arguments and results; and the handle of every
//! command and query (its name, request and result types).

use fsmhost_guest::{Command, Error, Query, Tenancy};
use fsmhost_schema_sessions::{ServiceCheck, Session};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{Check, Meta, Node, Service, queries, register, sessions, ttl};

/// `register`: a node, optionally a service and checks on it; always `true`.
pub static REGISTER: Command<RegisterRequest, bool> = Command::new("register", register::register);
/// `deregister`: a node with everything on it, one service with its checks, or one check;
/// always `true`.
pub static DEREGISTER: Command<DeregisterRequest, bool> =
    Command::new("deregister", register::deregister);
/// `nodes`: every node (or those with a metadata pair), by name.
pub static NODES_QUERY: Query<NodesArgs, Indexed<Vec<Node>>> = Query::new("nodes", queries::nodes);
/// `services`: every service name with its tags.
pub static SERVICES_QUERY: Query<Option<Meta>, Indexed<BTreeMap<String, Vec<String>>>> =
    Query::new("services", queries::services);
/// `service-nodes`: the instances of a service, each with its node.
pub static SERVICE_NODES: Query<ServiceArgs, Indexed<Vec<ServiceNode>>> =
    Query::new("service-nodes", queries::service_nodes);
/// `service-health`: the instances of a service with their node and checks.
pub static SERVICE_HEALTH: Query<ServiceArgs, Indexed<Vec<ServiceHealth>>> =
    Query::new("service-health", queries::service_health);
/// `node-services`: a node and its services, if the node exists.
pub static NODE_SERVICES: Query<NodeArgs, Indexed<Option<NodeServices>>> =
    Query::new("node-services", queries::node_services);
/// `node-checks`: the checks of a node.
pub static NODE_CHECKS: Query<NodeArgs, Indexed<Vec<Check>>> =
    Query::new("node-checks", queries::node_checks);
/// `service-checks`: the checks of a service's instances.
pub static SERVICE_CHECKS: Query<ServiceArgs, Indexed<Vec<Check>>> =
    Query::new("service-checks", queries::service_checks);
/// `checks-in-state`: the checks in a state (`any` for all).
pub static CHECKS_IN_STATE: Query<StateArgs, Indexed<Vec<Check>>> =
    Query::new("checks-in-state", queries::checks_in_state);

/// `mesh-instances`: the Connect-capable instances of a service, or a gateway's services
/// (none: see [`queries::mesh_instances`]).
pub static MESH_INSTANCES: Query<ServiceArgs, Indexed<Vec<ServiceNode>>> =
    Query::new("mesh-instances", queries::mesh_instances);
/// `usage`: how many nodes, services and instances the catalog holds.
pub static USAGE: Query<(), Indexed<Usage>> = Query::new("usage", queries::usage);

/// `/v1/operator/usage`'s figures for one datacenter (Consul's `ServiceUsage`, with its
/// node count).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Usage {
    /// Distinct service names (per namespace).
    pub services: u64,
    /// Service instances.
    pub service_instances: u64,
    /// Instances of each Connect kind (`connect-proxy`, `mesh-gateway`, ...; and
    /// `connect-native`, always 0 here: Connect-native is not stored).
    pub connect_service_instances: BTreeMap<String, u64>,
    /// Instances of typical services, without Consul's own `consul` service.
    pub billable_service_instances: u64,
    /// Nodes.
    pub nodes: u64,
}

/// The Connect kinds Consul's usage counts, each shown even when 0.
pub const CONNECT_KINDS: [&str; 6] = [
    "api-gateway",
    "connect-native",
    "connect-proxy",
    "ingress-gateway",
    "mesh-gateway",
    "terminating-gateway",
];

/// `register`: Consul's `RegisterRequest`.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "PascalCase", from = "crate::wire::RegisterIn")]
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
#[serde(rename_all = "PascalCase", from = "crate::wire::DeregisterIn")]
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

/// What a query returns: the records and the index of the data they come from (the
/// highest last-change index of the tables read, as Consul's blocking queries report).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Indexed<T> {
    /// The records.
    pub items: T,
    /// The index.
    pub index: u64,
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

/// Arguments naming a check state (`any` for all).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct StateArgs {
    /// `passing`, `warning`, `critical` or `any`.
    pub state: String,
    /// The partition and namespace (enterprise edition).
    #[serde(default)]
    pub tenancy: Meta,
}

/// Refuses a request field that is empty or holds a NUL byte, naming it as Consul does.
pub(crate) fn require(what: &str, value: &str) -> Result<(), Error> {
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

/// `session-create`: a session on a registered node, hanging on some of its checks;
/// answers its ID.
pub static SESSION_CREATE: Command<SessionCreateRequest, String> =
    Command::new("session-create", sessions::create);
/// `session-destroy`: ends a session (its locks released by the kv plugin); always `true`.
pub static SESSION_DESTROY: Command<SessionId, bool> =
    Command::new("session-destroy", sessions::destroy);
/// `session-renew`: restarts a session's TTL timer at the entry's timestamp; answers the
/// session, or `None` if it does not exist.
pub static SESSION_RENEW: Command<SessionId, Option<Session>> =
    Command::new("session-renew", ttl::renew);
/// `session-expire` (proposed by the leader's tick): ends a session whose TTL ran out,
/// unless it was renewed since the tick saw it; whether it ended.
pub static SESSION_EXPIRE: Command<SessionExpire, bool> =
    Command::new("session-expire", ttl::expire);
/// `session-get`: one session, if it exists.
pub static SESSION_GET: Query<SessionId, Indexed<Option<Session>>> =
    Query::new("session-get", sessions::get);
/// `node-sessions`: the sessions of a node.
pub static NODE_SESSIONS: Query<SessionNodeArgs, Indexed<Vec<Session>>> =
    Query::new("node-sessions", sessions::node_sessions);
/// `session-list`: every session (of a partition and namespace).
pub static SESSION_LIST: Query<Tenancy, Indexed<Vec<Session>>> =
    Query::new("session-list", sessions::list);

/// `session-create`: Consul's `Session` as a create request carries it, defaults already
/// applied by the router (the node serving the request, `serfHealth`, 15 s of
/// lock-delay): the command takes the fields as they are.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionCreateRequest {
    /// A name for people.
    #[serde(default)]
    pub name: String,
    /// The node (must be registered).
    pub node: String,
    /// Lock-delay in nanoseconds.
    #[serde(default)]
    pub lock_delay: u64,
    /// `release` (also for `""`) or `delete`.
    #[serde(default)]
    pub behavior: String,
    /// Time to live as Go's duration text (`""`: none; else 0 or between 10 s and 24 h).
    #[serde(default)]
    pub ttl: String,
    /// Node checks to hang on.
    #[serde(default)]
    pub node_checks: Vec<String>,
    /// Service checks to hang on.
    #[serde(default)]
    pub service_checks: Vec<ServiceCheck>,
    /// Its partition and namespace (enterprise edition).
    #[serde(default)]
    pub tenancy: Tenancy,
}

/// A session by ID, in a partition and namespace (`session-destroy`, `session-get`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionId {
    /// The session's ID.
    pub id: String,
    /// Its partition and namespace (enterprise edition).
    #[serde(default)]
    pub tenancy: Tenancy,
}

/// `node-sessions` arguments.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionNodeArgs {
    /// The node.
    pub node: String,
    /// The partition and namespace.
    #[serde(default)]
    pub tenancy: Tenancy,
}

/// `session-expire`: the session the tick found expired, and the renewal time it saw.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionExpire {
    /// The session's ID.
    pub id: String,
    /// Its partition and namespace (enterprise edition).
    #[serde(default)]
    pub tenancy: Tenancy,
    /// Its last renewal as the tick saw it, ms since the epoch.
    pub renewed_ms: u64,
}
