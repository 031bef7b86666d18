//! The agent's reads (`agent/agent_endpoint.go`): `GET /v1/agent/services`,
//! `/v1/agent/service/<id>`, `/v1/agent/checks`, `/v1/agent/health/service/name/<name>`
//! and `/v1/agent/health/service/id/<id>` (`?format=text`), over the serving server's node,
//! in Consul's shapes (`api.AgentService`, `structs.HealthCheck`,
//! `api.AgentServiceChecksInfo`). One query (`agent-state`) answers them all.

use fsmhost_guest::acl::{self, Access, Need, Resource};
use fsmhost_guest::http::{Plan, Request, Response, context};
use fsmhost_guest::{Error, from_cbor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::agent_http::{HEALTH_SERVICE, SERVICE};
use crate::http::{datacenter, tenancy};
use crate::*;

/// Which answer a read renders; each names the datacenter the services are printed in.
#[derive(Serialize, Deserialize)]
enum Read {
    Services(String),
    Service(String, String),
    Checks,
    /// By name: the name, the datacenter, `?format=text`.
    HealthByName(String, String, bool),
    /// By ID: the ID, the datacenter, `?format=text`.
    HealthById(String, String, bool),
}

/// `GET /v1/agent/services`, `/v1/agent/checks`, `/v1/agent/service/<id>`,
/// `/v1/agent/health/service/name/<name>` and `/id/<id>`.
pub fn route_read(req: &Request) -> Result<Plan, Error> {
    let meta = tenancy(req, &Meta::default())?;
    let args = NodeArgs {
        node: req.node.clone(),
        tenancy: meta.clone(),
    };
    let dc = datacenter(req).to_string();
    let text = req.get("format") == Some("text");
    let plan = Plan::query(&AGENT_STATE, &args)?.filtered();
    let read = match req.path.as_str() {
        "/v1/agent/services" => Read::Services(dc),
        "/v1/agent/checks" => Read::Checks,
        p if p.starts_with(HEALTH_SERVICE) => {
            let rest = req.path_after(HEALTH_SERVICE);
            if let Some(name) = rest.strip_prefix("name/") {
                if name.is_empty() {
                    return Err(Error::bad_request("Missing service Name"));
                }
                let need = Need::read(Resource::Service, name).in_tenancy(&meta.tenancy());
                return plan
                    .need(need)
                    .context(&Read::HealthByName(name.to_string(), dc, text));
            }
            match rest.strip_prefix("id/") {
                Some("") => return Err(Error::bad_request("Missing serviceID")),
                Some(id) => Read::HealthById(id.to_string(), dc, text),
                None => return Err(Error::not_found(format!("no route GET {}", req.path))),
            }
        }
        p if p.starts_with(SERVICE) => Read::Service(req.path_after(SERVICE).to_string(), dc),
        other => return Err(Error::not_found(format!("no route GET {other}"))),
    };
    plan.context(&read)
}

/// A service as the agent prints it (`api.AgentService`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AgentServiceOut<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(rename = "ID")]
    id: &'a str,
    service: &'a str,
    tags: &'a [String],
    meta: &'a BTreeMap<String, String>,
    port: u16,
    address: &'a str,
    weights: Weights,
    enable_tag_override: bool,
    create_index: u64,
    modify_index: u64,
    datacenter: &'a str,
    #[serde(flatten)]
    tenancy: &'a Meta,
}

fn service_out<'a>(s: &'a Service, dc: &'a str) -> AgentServiceOut<'a> {
    let mut weights = s.weights.unwrap_or(Weights {
        passing: 1,
        warning: 1,
    });
    if weights.passing < 1 {
        weights.passing = 1;
    }
    AgentServiceOut {
        kind: &s.kind,
        id: &s.id,
        service: &s.service,
        tags: &s.tags,
        meta: &s.meta,
        port: s.port,
        address: &s.address,
        weights,
        enable_tag_override: false,
        create_index: s.create_index,
        modify_index: s.modify_index,
        datacenter: dc,
        tenancy: &s.tenancy,
    }
}

/// A check as the agent prints it (`structs.HealthCheck`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AgentCheckOut<'a> {
    node: &'a str,
    #[serde(rename = "CheckID")]
    check_id: &'a str,
    name: &'a str,
    status: &'a str,
    notes: &'a str,
    output: &'a str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    service_name: &'a str,
    service_tags: &'a [String],
    #[serde(rename = "Type")]
    kind: &'a str,
    interval: &'a str,
    timeout: &'a str,
    exposed_port: u16,
    definition: serde_json::Value,
    create_index: u64,
    modify_index: u64,
    #[serde(flatten)]
    tenancy: &'a Meta,
}

fn check_out(c: &AgentCheck) -> AgentCheckOut<'_> {
    let k = &c.check;
    AgentCheckOut {
        node: &k.node,
        check_id: &k.check_id,
        name: &k.name,
        status: &k.status,
        notes: &k.notes,
        output: &k.output,
        service_id: &k.service_id,
        service_name: &k.service_name,
        service_tags: &k.service_tags,
        kind: &c.kind,
        interval: "",
        timeout: "",
        exposed_port: 0,
        definition: serde_json::json!({}),
        create_index: k.create_index,
        modify_index: k.modify_index,
        tenancy: &k.tenancy,
    }
}

fn service_readable(s: &Service) -> bool {
    acl::allowed_in(
        &s.tenancy.tenancy(),
        Resource::Service,
        &s.service,
        Access::Read,
    )
}

/// Consul's `filterChecksWithAuthorizer`: a service check by its service, a node check by
/// the node.
fn check_readable(c: &Check) -> bool {
    if c.service_name.is_empty() {
        acl::allowed_in(
            &c.tenancy.partition(),
            Resource::Node,
            &c.node,
            Access::Read,
        )
    } else {
        acl::allowed_in(
            &c.tenancy.tenancy(),
            Resource::Service,
            &c.service_name,
            Access::Read,
        )
    }
}

/// Consul's `HealthChecks.AggregatedStatus`: `maintenance` if a maintenance check is
/// among them, else the worst status (`passing` without checks).
fn aggregated(checks: &[&AgentCheck]) -> &'static str {
    let has = |s: &str| checks.iter().any(|c| c.check.status == s);
    if checks
        .iter()
        .any(|c| c.check.check_id.starts_with(SERVICE_MAINT_PREFIX))
    {
        "maintenance"
    } else if has("critical") {
        "critical"
    } else if has("warning") {
        "warning"
    } else {
        "passing"
    }
}

/// Consul's `agentHealthService` status code.
fn health_code(status: &str) -> u16 {
    match status {
        "passing" => 200,
        "warning" => 429,
        _ => 503,
    }
}

/// One instance's health: `(code, status, {AggregatedStatus, Service, Checks})`.
fn instance_health(
    state: &AgentState,
    s: &Service,
    dc: &str,
) -> (u16, &'static str, serde_json::Value) {
    let checks: Vec<&AgentCheck> = state
        .checks
        .iter()
        .filter(|c| c.check.service_id.is_empty() || c.check.service_id == s.id)
        .collect();
    let status = aggregated(&checks);
    let out: Vec<AgentCheckOut> = checks.into_iter().map(check_out).collect();
    let body = serde_json::json!({
        "AggregatedStatus": status,
        "Service": service_out(s, dc),
        "Checks": out,
    });
    (health_code(status), status, body)
}

fn denied(service: &str) -> Response {
    Response::text(
        403,
        format!("Permission denied: token lacks permission 'service:read' on {service:?}"),
    )
}

/// Renders an agent read, keeping only what the caller may read.
pub fn render_read(ctx: &[u8], outcome: Result<Vec<u8>, Error>, _index: u64) -> Response {
    let rendered = context::<Read>(ctx).and_then(|read| {
        let state = from_cbor::<Indexed<AgentState>>(&outcome?, "agent-state result")?.items;
        Ok(match read {
            Read::Services(dc) => {
                let total = state.services.len();
                let out: BTreeMap<&str, AgentServiceOut> = state
                    .services
                    .iter()
                    .filter(|s| service_readable(s))
                    .map(|s| (s.id.as_str(), service_out(s, &dc)))
                    .collect();
                let f = out.len() < total;
                Response::json(200, &out).filtered_by_acls(f)
            }
            Read::Service(id, dc) => match state.services.iter().find(|s| s.id == id) {
                None => Response::text(404, format!("unknown service ID: {id}")),
                Some(s) if !service_readable(s) => denied(&s.service),
                Some(s) => Response::json(200, &service_out(s, &dc)),
            },
            Read::Checks => {
                let total = state.checks.len();
                let out: BTreeMap<&str, AgentCheckOut> = state
                    .checks
                    .iter()
                    .filter(|c| check_readable(&c.check))
                    .map(|c| (c.check.check_id.as_str(), check_out(c)))
                    .collect();
                let f = out.len() < total;
                Response::json(200, &out).filtered_by_acls(f)
            }
            Read::HealthById(id, dc, text) => match state.services.iter().find(|s| s.id == id) {
                Some(s) if !service_readable(s) => denied(&s.service),
                Some(s) => {
                    let (code, status, body) = instance_health(&state, s, &dc);
                    if text {
                        Response::text(code, status)
                    } else {
                        Response::json(code, &body)
                    }
                }
                None if text => Response::text(404, format!("ServiceId {id} not found")),
                None => Response::json(
                    404,
                    &serde_json::json!({
                        "AggregatedStatus": "critical", "Service": null, "Checks": null
                    }),
                ),
            },
            Read::HealthByName(name, dc, text) => {
                let mut code = 404;
                let mut status = format!("ServiceName {name} Not Found");
                let mut list = Vec::new();
                for s in state.services.iter().filter(|s| s.service == name) {
                    let (c, st, body) = instance_health(&state, s, &dc);
                    if code == 404 || code < c {
                        (code, status) = (c, st.to_string());
                    }
                    list.push(body);
                }
                if text {
                    Response::text(code, status)
                } else {
                    Response::json(code, &list)
                }
            }
        })
    });
    rendered.unwrap_or_else(|e| Response::error(&e))
}
