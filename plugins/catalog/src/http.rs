//! Consul's catalog and health HTTP API, served by this plugin (`agent/catalog_endpoint.go`,
//! `agent/health_endpoint.go`):
//! - `PUT /v1/catalog/register`, `PUT /v1/catalog/deregister` (Consul's request bodies);
//! - `GET /v1/catalog/nodes` (`?node-meta=key:value`, repeatable), `/v1/catalog/services`,
//!   `/v1/catalog/service/<name>` (`?tag=`), `/v1/catalog/node/<node>`;
//! - `GET /v1/health/node/<node>`, `/v1/health/checks/<service>`,
//!   `/v1/health/service/<service>` (`?passing`, `?tag=`), `/v1/health/state/<state>`;
//! - the Connect reads `GET /v1/catalog/connect/<service>`,
//!   `/v1/catalog/gateway-services/<gateway>`, `/v1/health/connect/<service>`,
//!   `/v1/health/ingress/<service>`: always `[]` (nothing here is Connect-capable);
//! - `GET /v1/operator/usage`: node, service and instance counts, under the datacenter
//!   the host puts in `?dc=`.
//!
//! The host does the rest: the log, forwarding, `?index`/`?wait`, `?stale`/`?consistent`,
//! `X-Consul-Index`.

use fsmhost_guest::acl::{self, Access, Need, Resource};
use fsmhost_guest::http::{Plan, Request, Response, context, json_body};
use fsmhost_guest::{Error, Tenancy, from_cbor};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{
    CHECKS_IN_STATE, Check, DEREGISTER, DeregisterRequest, EDITION, Indexed, MESH_INSTANCES, Meta,
    NODE_CHECKS, NODE_SERVICES, NODES_QUERY, Node, NodeArgs, NodeServices, NodesArgs, REGISTER,
    RegisterRequest, SERVICE_CHECKS, SERVICE_HEALTH, SERVICE_NODES, SERVICES_QUERY, ServiceArgs,
    ServiceHealth, ServiceNode, StateArgs, USAGE, Usage,
};

/// The catalog API's prefix.
pub const CATALOG: &str = "/v1/catalog/";
/// The health API's prefix.
pub const HEALTH: &str = "/v1/health/";

/// Which answer a read renders.
#[derive(Serialize, Deserialize)]
enum Read {
    /// Each of these prints nodes, whose empty `Datacenter` is this one (the request's).
    Nodes(String),
    /// The services of the request's partition and namespace.
    Services(#[serde(default)] Meta),
    ServiceNodes(String),
    Node(String),
    Checks,
    ServiceHealth(String),
    /// An answer that is always an empty list (the Connect reads).
    Empty,
    /// `/v1/operator/usage`, for this datacenter.
    Usage(String),
}

/// A request body, decoded as Consul decodes it (keys in any case, `null` as absent).
fn body<T: DeserializeOwned>(req: &Request) -> Result<T, Error> {
    json_body(req).map_err(|e| Error::bad_request(format!("Failed to decode request body: {e}")))
}

/// The partition and namespace a request names with `?partition=` and `?ns=` (Consul's
/// `parseEntMeta`; the OSS edition refuses them), over what its body gave.
pub(crate) fn tenancy(req: &Request, body: &Meta) -> Result<Meta, Error> {
    Tenancy::from_request(req, EDITION)?;
    let pick = |param: &str, given: &str| {
        req.get(param)
            .filter(|v| !v.is_empty())
            .unwrap_or(given)
            .to_string()
    };
    Ok(Meta {
        partition: pick("partition", &body.partition),
        namespace: pick("ns", &body.namespace),
    })
}

/// Consul's error for a request naming a datacenter it has no route to.
pub const NO_DC_PATH: &str = "No path to datacenter";

/// The datacenter a request is for: its `?dc=`, which the host sets to its own datacenter
/// (`dc1` when there is none, as in tests through the harness).
pub(crate) fn datacenter(req: &Request) -> &str {
    req.get("dc").filter(|d| !d.is_empty()).unwrap_or("dc1")
}

/// The `Datacenter` a deregistration body may name (Consul's `DeregisterRequest` has it;
/// the command does not need it).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DatacenterOf {
    #[serde(default)]
    datacenter: String,
}

/// `PUT /v1/catalog/register` and `/deregister`.
pub fn route_write(req: &Request) -> Result<Plan, Error> {
    match req.path.as_str() {
        "/v1/catalog/register" => {
            let mut r = body::<RegisterRequest>(req)?;
            r.tenancy = tenancy(req, &r.tenancy)?;
            // A client's `Weights` are not kept (Go's client sends zeros): only the
            // leader's `consul` service has them.
            if let Some(s) = r.service.as_mut() {
                s.weights = None;
            }
            // Consul's CatalogRegister: an empty datacenter is the agent's; another one is
            // forwarded there, and this cluster knows no other.
            let dc = datacenter(req);
            if r.datacenter.is_empty() {
                r.datacenter = dc.to_string();
            } else if !r.datacenter.eq_ignore_ascii_case(dc) {
                return Ok(Plan::respond(Response::text(500, NO_DC_PATH)));
            }
            // Consul: node write on the node, service write on the service and on the
            // service of each service check.
            let (partition, tenancy) = (partition_of(&r.tenancy), r.tenancy.tenancy());
            let mut plan = Plan::apply(&REGISTER, &r)?
                .need(Need::write(Resource::Node, &r.node).in_tenancy(&partition));
            if let Some(service) = &r.service {
                let need = Need::write(Resource::Service, &service.service);
                plan = plan.need(need.in_tenancy(&tenancy));
            }
            for check in r.check.iter().chain(r.checks.iter()) {
                if !check.service_name.is_empty() {
                    let need = Need::write(Resource::Service, &check.service_name);
                    plan = plan.need(need.in_tenancy(&tenancy));
                }
            }
            Ok(plan)
        }
        "/v1/catalog/deregister" => {
            let mut r = body::<DeregisterRequest>(req)?;
            r.tenancy = tenancy(req, &r.tenancy)?;
            let named = body::<DatacenterOf>(req)?.datacenter;
            if !named.is_empty() && !named.eq_ignore_ascii_case(datacenter(req)) {
                return Ok(Plan::respond(Response::text(500, NO_DC_PATH)));
            }
            // Node write on the node (stricter than Consul, which also lets a service's
            // writer deregister that service alone).
            let need = Need::write(Resource::Node, &r.node).in_tenancy(&partition_of(&r.tenancy));
            Ok(Plan::apply(&DEREGISTER, &r)?.need(need))
        }
        other => Err(Error::not_found(format!("no catalog endpoint PUT {other}"))),
    }
}

/// Renders `true`, or the error.
pub fn render_write(_ctx: &[u8], outcome: Result<Vec<u8>, Error>, _index: u64) -> Response {
    match outcome.and_then(|b| from_cbor::<bool>(&b, "register result")) {
        Ok(done) => Response::json(200, &done),
        Err(e) => Response::error(&e),
    }
}

fn named(req: &Request, prefix: &str, what: &str) -> Result<String, Error> {
    let name = req.path_after(prefix);
    if name.is_empty() {
        return Err(Error::bad_request(format!("Missing {what} name")));
    }
    Ok(name.to_string())
}

fn service_args(req: &Request, prefix: &str) -> Result<ServiceArgs, Error> {
    Ok(ServiceArgs {
        service: named(req, prefix, "service")?,
        tag: req.get("tag").map(str::to_string),
        passing: req.has("passing"),
        tenancy: tenancy(req, &Meta::default())?,
    })
}

/// `GET /v1/catalog/...`.
pub fn route_catalog(req: &Request) -> Result<Plan, Error> {
    let rest = req.path_after(CATALOG);
    if rest == "nodes" {
        let mut node_meta = BTreeMap::new();
        for (k, v) in &req.query {
            if k == "node-meta" {
                let (key, value) = v.split_once(':').unwrap_or((v.as_str(), ""));
                node_meta.insert(key.to_string(), value.to_string());
            }
        }
        let args = NodesArgs {
            node_meta,
            tenancy: tenancy(req, &Meta::default())?,
        };
        return Plan::query(&NODES_QUERY, &args)?
            .filtered()
            .context(&Read::Nodes(datacenter(req).to_string()));
    }
    if rest == "services" {
        let args = Some(tenancy(req, &Meta::default())?);
        return Plan::query(&SERVICES_QUERY, &args)?
            .filtered()
            .context(&Read::Services(args.clone().unwrap_or_default()));
    }
    if rest.starts_with("service/") {
        let args = service_args(req, "/v1/catalog/service/")?;
        return Plan::query(&SERVICE_NODES, &args)?
            .filtered()
            .context(&Read::ServiceNodes(datacenter(req).to_string()));
    }
    for (sub, what) in [("connect/", "service"), ("gateway-services/", "gateway")] {
        if rest.starts_with(sub) {
            let prefix = format!("{CATALOG}{sub}");
            let args = ServiceArgs {
                service: named(req, &prefix, what)?,
                tenancy: tenancy(req, &Meta::default())?,
                ..ServiceArgs::default()
            };
            return Plan::query(&MESH_INSTANCES, &args)?
                .filtered()
                .context(&Read::Empty);
        }
    }
    if rest.starts_with("node/") {
        let args = NodeArgs {
            node: named(req, "/v1/catalog/node/", "node")?,
            tenancy: tenancy(req, &Meta::default())?,
        };
        return Plan::query(&NODE_SERVICES, &args)?
            .filtered()
            .context(&Read::Node(datacenter(req).to_string()));
    }
    Err(Error::not_found(format!(
        "no catalog endpoint GET {}",
        req.path
    )))
}

/// `GET /v1/health/...`.
pub fn route_health(req: &Request) -> Result<Plan, Error> {
    let rest = req.path_after(HEALTH);
    if rest.starts_with("node/") {
        let args = NodeArgs {
            node: named(req, "/v1/health/node/", "node")?,
            tenancy: tenancy(req, &Meta::default())?,
        };
        return Plan::query(&NODE_CHECKS, &args)?
            .filtered()
            .context(&Read::Checks);
    }
    if rest.starts_with("checks/") {
        let args = service_args(req, "/v1/health/checks/")?;
        return Plan::query(&SERVICE_CHECKS, &args)?
            .filtered()
            .context(&Read::Checks);
    }
    if rest.starts_with("service/") {
        let args = service_args(req, "/v1/health/service/")?;
        return Plan::query(&SERVICE_HEALTH, &args)?
            .filtered()
            .context(&Read::ServiceHealth(datacenter(req).to_string()));
    }
    for sub in ["connect/", "ingress/"] {
        if rest.starts_with(sub) {
            let args = service_args(req, &format!("{HEALTH}{sub}"))?;
            return Plan::query(&MESH_INSTANCES, &args)?
                .filtered()
                .context(&Read::Empty);
        }
    }
    if rest.starts_with("state/") {
        let args = StateArgs {
            state: named(req, "/v1/health/state/", "check state")?,
            tenancy: tenancy(req, &Meta::default())?,
        };
        return Plan::query(&CHECKS_IN_STATE, &args)?
            .filtered()
            .context(&Read::Checks);
    }
    Err(Error::not_found(format!(
        "no health endpoint GET {}",
        req.path
    )))
}

/// `GET /v1/operator/usage`: the counts under the request's datacenter.
pub fn route_usage(req: &Request) -> Result<Plan, Error> {
    tenancy(req, &Meta::default())?;
    Plan::query(&USAGE, &())?.context(&Read::Usage(datacenter(req).to_string()))
}

/// One instance as `/v1/catalog/service/<name>` lists it: Consul's flattened
/// `ServiceNode`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct FlatServiceNode<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    node: &'a str,
    address: &'a str,
    datacenter: &'a str,
    tagged_addresses: &'a BTreeMap<String, String>,
    node_meta: &'a BTreeMap<String, String>,
    service_kind: &'a str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    service_name: &'a str,
    service_tags: &'a [String],
    service_address: &'a str,
    service_meta: &'a BTreeMap<String, String>,
    service_port: u16,
    create_index: u64,
    modify_index: u64,
    #[serde(flatten)]
    tenancy: &'a Meta,
}

impl<'a> From<&'a ServiceNode> for FlatServiceNode<'a> {
    fn from(sn: &'a ServiceNode) -> Self {
        let (n, s) = (&sn.node, &sn.service);
        FlatServiceNode {
            id: &n.id,
            node: &n.node,
            address: &n.address,
            datacenter: &n.datacenter,
            tagged_addresses: &n.tagged_addresses,
            node_meta: &n.meta,
            service_kind: &s.kind,
            service_id: &s.id,
            service_name: &s.service,
            service_tags: &s.tags,
            service_address: &s.address,
            service_meta: &s.meta,
            service_port: s.port,
            create_index: s.create_index,
            modify_index: s.modify_index,
            tenancy: &s.tenancy,
        }
    }
}

/// `/v1/health/service/<name>`'s entry: `{Node, Service, Checks}`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HealthEntry<'a> {
    node: &'a Node,
    service: &'a crate::Service,
    checks: &'a [Check],
}

fn items<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    Ok(from_cbor::<Indexed<T>>(bytes, "query result")?.items)
}

/// The partition of `t` alone: nodes belong to a partition, not a namespace.
fn partition_of(t: &Meta) -> Tenancy {
    Tenancy {
        partition: t.partition.clone(),
        namespace: String::new(),
    }
}

/// Whether the caller may read `node`.
fn node_readable(t: &Meta, node: &str) -> bool {
    acl::allowed_in(&partition_of(t), Resource::Node, node, Access::Read)
}

/// Whether the caller may read `service` in its partition and namespace.
fn service_readable(t: &Meta, service: &str) -> bool {
    acl::allowed_in(&t.tenancy(), Resource::Service, service, Access::Read)
}

/// A check the caller may read: its node's, and its service's if it has one.
fn check_readable(c: &Check) -> bool {
    node_readable(&c.tenancy, &c.node)
        && (c.service_name.is_empty() || service_readable(&c.tenancy, &c.service_name))
}

/// `items` without what `keep` refuses, and whether anything was left out.
fn keep<T>(items: Vec<T>, keep: impl Fn(&T) -> bool) -> (Vec<T>, bool) {
    let total = items.len();
    let kept: Vec<T> = items.into_iter().filter(|i| keep(i)).collect();
    let filtered = kept.len() < total;
    (kept, filtered)
}

/// A node stored without a datacenter (registered through `/v1/apply`, say) is printed in
/// this one: every node of this catalog is.
fn in_dc(node: &mut Node, dc: &str) {
    if node.datacenter.is_empty() {
        node.datacenter = dc.to_string();
    }
}

/// Renders a read in Consul's JSON, with only what the caller may read (node read for
/// nodes, service read for services, both for an instance; Consul's ACL filter).
pub fn render_read(ctx: &[u8], outcome: Result<Vec<u8>, Error>, _index: u64) -> Response {
    let rendered = context::<Read>(ctx).and_then(|read| {
        let bytes = outcome?;
        Ok(match read {
            Read::Nodes(dc) => {
                let mut nodes = items::<Vec<Node>>(&bytes)?;
                nodes.iter_mut().for_each(|n| in_dc(n, &dc));
                let (nodes, f) = keep(nodes, |n| node_readable(&n.tenancy, &n.node));
                Response::json(200, &nodes).filtered_by_acls(f)
            }
            Read::Services(meta) => {
                let all = items::<BTreeMap<String, Vec<String>>>(&bytes)?;
                let total = all.len();
                let services: BTreeMap<String, Vec<String>> = all
                    .into_iter()
                    .filter(|(s, _)| service_readable(&meta, s))
                    .collect();
                let f = services.len() < total;
                Response::json(200, &services).filtered_by_acls(f)
            }
            Read::ServiceNodes(dc) => {
                let mut list = items::<Vec<ServiceNode>>(&bytes)?;
                list.iter_mut().for_each(|sn| in_dc(&mut sn.node, &dc));
                let (list, f) = keep(list, |sn| {
                    node_readable(&sn.node.tenancy, &sn.node.node)
                        && service_readable(&sn.service.tenancy, &sn.service.service)
                });
                let flat: Vec<FlatServiceNode> = list.iter().map(FlatServiceNode::from).collect();
                Response::json(200, &flat).filtered_by_acls(f)
            }
            Read::Node(dc) => {
                let mut node = items::<Option<NodeServices>>(&bytes)?;
                if let Some(n) = node.as_mut() {
                    in_dc(&mut n.node, &dc);
                }
                match node {
                    Some(n) if node_readable(&n.node.tenancy, &n.node.node) => {
                        let total = n.services.len();
                        let services: BTreeMap<&String, &crate::Service> = n
                            .services
                            .iter()
                            .filter(|(_, s)| service_readable(&s.tenancy, &s.service))
                            .collect();
                        let f = services.len() < total;
                        Response::json(
                            200,
                            &serde_json::json!({"Node": n.node, "Services": services}),
                        )
                        .filtered_by_acls(f)
                    }
                    Some(_) => Response::json(200, &serde_json::Value::Null).filtered_by_acls(true),
                    None => Response::json(200, &serde_json::Value::Null),
                }
            }
            Read::Checks => {
                let (checks, f) = keep(items::<Vec<Check>>(&bytes)?, check_readable);
                Response::json(200, &checks).filtered_by_acls(f)
            }
            Read::Empty => Response::json(200, &items::<Vec<ServiceNode>>(&bytes)?),
            Read::Usage(dc) => {
                let usage = items::<Usage>(&bytes)?;
                Response::json(200, &serde_json::json!({ "Usage": { dc: usage } }))
            }
            Read::ServiceHealth(dc) => {
                let mut list = items::<Vec<ServiceHealth>>(&bytes)?;
                list.iter_mut().for_each(|h| in_dc(&mut h.node, &dc));
                let (list, f) = keep(list, |h| {
                    node_readable(&h.node.tenancy, &h.node.node)
                        && service_readable(&h.service.tenancy, &h.service.service)
                });
                let entries: Vec<HealthEntry> = list
                    .iter()
                    .map(|h| HealthEntry {
                        node: &h.node,
                        service: &h.service,
                        checks: &h.checks,
                    })
                    .collect();
                Response::json(200, &entries).filtered_by_acls(f)
            }
        })
    });
    rendered.unwrap_or_else(|e| Response::error(&e))
}
