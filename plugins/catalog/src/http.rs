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
    Nodes,
    Services,
    ServiceNodes,
    Node,
    Checks,
    ServiceHealth,
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
fn tenancy(req: &Request, body: &Meta) -> Result<Meta, Error> {
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
fn datacenter(req: &Request) -> &str {
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
            // Consul's CatalogRegister: an empty datacenter is the agent's; another one is
            // forwarded there, and this cluster knows no other.
            let dc = datacenter(req);
            if r.datacenter.is_empty() {
                r.datacenter = dc.to_string();
            } else if !r.datacenter.eq_ignore_ascii_case(dc) {
                return Ok(Plan::respond(Response::text(500, NO_DC_PATH)));
            }
            Plan::apply(&REGISTER, &r)
        }
        "/v1/catalog/deregister" => {
            let mut r = body::<DeregisterRequest>(req)?;
            r.tenancy = tenancy(req, &r.tenancy)?;
            let named = body::<DatacenterOf>(req)?.datacenter;
            if !named.is_empty() && !named.eq_ignore_ascii_case(datacenter(req)) {
                return Ok(Plan::respond(Response::text(500, NO_DC_PATH)));
            }
            Plan::apply(&DEREGISTER, &r)
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
        return Plan::query(&NODES_QUERY, &args)?.context(&Read::Nodes);
    }
    if rest == "services" {
        let args = Some(tenancy(req, &Meta::default())?);
        return Plan::query(&SERVICES_QUERY, &args)?.context(&Read::Services);
    }
    if rest.starts_with("service/") {
        let args = service_args(req, "/v1/catalog/service/")?;
        return Plan::query(&SERVICE_NODES, &args)?.context(&Read::ServiceNodes);
    }
    for (sub, what) in [("connect/", "service"), ("gateway-services/", "gateway")] {
        if rest.starts_with(sub) {
            let prefix = format!("{CATALOG}{sub}");
            let args = ServiceArgs {
                service: named(req, &prefix, what)?,
                tenancy: tenancy(req, &Meta::default())?,
                ..ServiceArgs::default()
            };
            return Plan::query(&MESH_INSTANCES, &args)?.context(&Read::Empty);
        }
    }
    if rest.starts_with("node/") {
        let args = NodeArgs {
            node: named(req, "/v1/catalog/node/", "node")?,
            tenancy: tenancy(req, &Meta::default())?,
        };
        return Plan::query(&NODE_SERVICES, &args)?.context(&Read::Node);
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
        return Plan::query(&NODE_CHECKS, &args)?.context(&Read::Checks);
    }
    if rest.starts_with("checks/") {
        let args = service_args(req, "/v1/health/checks/")?;
        return Plan::query(&SERVICE_CHECKS, &args)?.context(&Read::Checks);
    }
    if rest.starts_with("service/") {
        let args = service_args(req, "/v1/health/service/")?;
        return Plan::query(&SERVICE_HEALTH, &args)?.context(&Read::ServiceHealth);
    }
    for sub in ["connect/", "ingress/"] {
        if rest.starts_with(sub) {
            let args = service_args(req, &format!("{HEALTH}{sub}"))?;
            return Plan::query(&MESH_INSTANCES, &args)?.context(&Read::Empty);
        }
    }
    if rest.starts_with("state/") {
        let args = StateArgs {
            state: named(req, "/v1/health/state/", "check state")?,
            tenancy: tenancy(req, &Meta::default())?,
        };
        return Plan::query(&CHECKS_IN_STATE, &args)?.context(&Read::Checks);
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

/// Renders a read in Consul's JSON.
pub fn render_read(ctx: &[u8], outcome: Result<Vec<u8>, Error>, _index: u64) -> Response {
    let rendered = context::<Read>(ctx).and_then(|read| {
        let bytes = outcome?;
        Ok(match read {
            Read::Nodes => Response::json(200, &items::<Vec<Node>>(&bytes)?),
            Read::Services => Response::json(200, &items::<BTreeMap<String, Vec<String>>>(&bytes)?),
            Read::ServiceNodes => {
                let list = items::<Vec<ServiceNode>>(&bytes)?;
                let flat: Vec<FlatServiceNode> = list.iter().map(FlatServiceNode::from).collect();
                Response::json(200, &flat)
            }
            Read::Node => {
                let node = items::<Option<NodeServices>>(&bytes)?;
                Response::json(
                    200,
                    &node.map(|n| serde_json::json!({"Node": n.node, "Services": n.services})),
                )
            }
            Read::Checks => Response::json(200, &items::<Vec<Check>>(&bytes)?),
            Read::Empty => Response::json(200, &items::<Vec<ServiceNode>>(&bytes)?),
            Read::Usage(dc) => {
                let usage = items::<Usage>(&bytes)?;
                Response::json(200, &serde_json::json!({ "Usage": { dc: usage } }))
            }
            Read::ServiceHealth => {
                let list = items::<Vec<ServiceHealth>>(&bytes)?;
                let entries: Vec<HealthEntry> = list
                    .iter()
                    .map(|h| HealthEntry {
                        node: &h.node,
                        service: &h.service,
                        checks: &h.checks,
                    })
                    .collect();
                Response::json(200, &entries)
            }
        })
    });
    rendered.unwrap_or_else(|e| Response::error(&e))
}
