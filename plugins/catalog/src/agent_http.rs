//! Consul's agent service and check API (`agent/agent_endpoint.go`), served by the
//! catalog plugin on the serving server's own node (`Request::node`; see `agent.rs`):
//! - `PUT /v1/agent/service/register` (`?replace-existing-checks`),
//!   `PUT /v1/agent/service/deregister/<id>`,
//!   `PUT /v1/agent/service/maintenance/<id>?enable=&reason=`;
//! - `PUT /v1/agent/check/register`, `PUT /v1/agent/check/deregister/<id>`,
//!   `PUT /v1/agent/check/pass|warn|fail/<id>?note=`, `PUT /v1/agent/check/update/<id>`;
//! - `GET /v1/agent/services`, `GET /v1/agent/service/<id>`, `GET /v1/agent/checks`,
//!   `GET /v1/agent/health/service/name/<name>` and `/id/<id>` (`?format=text`).
//!
//! fsmhost runs no health probes: a check is a TTL check, which the service keeps passing,
//! or a check without a kind, which keeps the status it was registered with. A check with
//! a probe (`Args`/`Script`, `HTTP`, `TCP`, `UDP`, `GRPC`, `H2PING`, `DockerContainerID`,
//! `OSService`, `AliasService`, `AliasNode`) is refused with a 400 saying so.
//!
//! ACLs: registering a service needs `service` write on its name and `node` read on the
//! node; a node check needs `node` write on the node. What is named only by an ID
//! (deregistering or putting a service in maintenance, registering a check on a service,
//! deregistering or reporting a check) needs write on every service (`service_prefix ""`),
//! and a check report or deregistration `node` write on the node too: Consul looks the
//! service or check up and needs write on its service (or the node), but a route's needs
//! are declared before anything runs, so this is stricter. Reads keep what the caller may
//! read (`service` read for services and service checks, `node` read for node checks).

use fsmhost_guest::acl::{Need, Resource};
use fsmhost_guest::http::{Plan, Request, Response};
use fsmhost_guest::{Error, ErrorKind, from_cbor, json};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

use crate::http::tenancy;
use crate::*;

/// `PUT /v1/agent/service/deregister/<id>`.
pub const SERVICE_DEREGISTER: &str = "/v1/agent/service/deregister/";
/// `PUT /v1/agent/service/maintenance/<id>`.
pub const SERVICE_MAINTENANCE: &str = "/v1/agent/service/maintenance/";
/// `GET /v1/agent/service/<id>`.
pub const SERVICE: &str = "/v1/agent/service/";
/// `PUT /v1/agent/check/deregister/<id>`.
pub const CHECK_DEREGISTER: &str = "/v1/agent/check/deregister/";
/// `PUT /v1/agent/check/pass/<id>`.
pub const CHECK_PASS: &str = "/v1/agent/check/pass/";
/// `PUT /v1/agent/check/warn/<id>`.
pub const CHECK_WARN: &str = "/v1/agent/check/warn/";
/// `PUT /v1/agent/check/fail/<id>`.
pub const CHECK_FAIL: &str = "/v1/agent/check/fail/";
/// `PUT /v1/agent/check/update/<id>`.
pub const CHECK_UPDATE: &str = "/v1/agent/check/update/";
/// `GET /v1/agent/health/service/name/<name>` and `/id/<id>`.
pub const HEALTH_SERVICE: &str = "/v1/agent/health/service/";

/// Consul's `CheckBufSize`: the most output a check keeps.
pub const CHECK_BUF_SIZE: usize = 4 * 1024;

/// The check fields that ask for a probe, as Consul's `CheckType` names them (keys are
/// compared lower-cased without `_`, so py-consul's `docker_container_id` is one).
const PROBES: [&str; 12] = [
    "Script",
    "Args",
    "ScriptArgs",
    "HTTP",
    "TCP",
    "UDP",
    "GRPC",
    "H2PING",
    "DockerContainerID",
    "OSService",
    "AliasService",
    "AliasNode",
];

fn decode_failed(e: impl std::fmt::Display) -> Error {
    Error::bad_request(format!("Request decode failed: {e}"))
}

/// A check definition as clients send it (`api.AgentServiceCheck`, `AgentCheckRegistration`).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CheckBody {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "CheckID", alias = "check_id", default)]
    check_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    status: String,
    #[serde(rename = "ServiceID", alias = "service_id", default)]
    service_id: String,
    #[serde(rename = "TTL", default)]
    ttl: Option<Value>,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    partition: String,
}

/// `Weights` as a body gives them (either may be left out).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct WeightsBody {
    #[serde(default)]
    passing: i64,
    #[serde(default)]
    warning: i64,
}

/// A service registration (`api.AgentServiceRegistration`).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ServiceBody {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    address: String,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    #[serde(default)]
    weights: Option<WeightsBody>,
    #[serde(default)]
    check: Option<CheckBody>,
    #[serde(default)]
    checks: Vec<CheckBody>,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    partition: String,
}

/// The probe a raw check definition asks for, if any (a field given a value other than
/// `null`, `""`, `[]`, `false`).
fn probe_of(check: &Value) -> Option<&'static str> {
    let Value::Object(map) = check else {
        return None;
    };
    map.iter().find_map(|(key, value)| {
        let set = match value {
            Value::Null | Value::Bool(false) => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => true,
        };
        let key = key.replace('_', "");
        PROBES
            .iter()
            .find(|p| set && p.eq_ignore_ascii_case(&key))
            .copied()
    })
}

/// Refuses a definition asking for a probe.
fn refuse_probe(check: &Value) -> Result<(), Error> {
    match probe_of(check) {
        None => Ok(()),
        Some(field) => Err(Error::bad_request(format!(
            "Invalid check: fsmhost runs no health probes, so a check with {field} cannot be \
             registered; register a TTL check (\"TTL\": \"30s\") and have the service report \
             with PUT /v1/agent/check/pass/<check id> (or warn, fail, update) within its TTL"
        ))),
    }
}

/// The values of `object`'s keys that are `name` in any case.
fn fields<'a>(object: &'a Value, name: &str) -> Vec<&'a Value> {
    match object {
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect(),
        _ => Vec::new(),
    }
}

/// A TTL as Consul decodes it: Go's duration text, or nanoseconds. In ms, rounded up.
fn ttl_ms(ttl: &Option<Value>) -> Result<u64, Error> {
    let ns: i64 = match ttl {
        None => 0,
        Some(Value::String(s)) if s.is_empty() => 0,
        Some(Value::String(s)) => parse_duration(s).map_err(decode_failed)?,
        Some(Value::Number(n)) => n.as_f64().map_or(0, |f| f as i64),
        Some(other) => return Err(decode_failed(format!("TTL {other} is not a duration"))),
    };
    if ns < 0 {
        return Err(Error::bad_request(
            "Invalid check: TTL must be > 0 for TTL checks",
        ));
    }
    Ok((ns as u64).div_ceil(1_000_000))
}

fn valid_status(status: &str) -> bool {
    status.is_empty() || STATES.contains(&status)
}

/// A check body as an [`AgentCheckDef`]: its ID (`ID`, else `CheckID`), the rest as given.
fn check_def(b: CheckBody) -> Result<AgentCheckDef, Error> {
    Ok(AgentCheckDef {
        ttl_ms: ttl_ms(&b.ttl)?,
        check: Check {
            check_id: if b.id.is_empty() { b.check_id } else { b.id },
            name: b.name,
            notes: b.notes,
            status: b.status,
            service_id: b.service_id,
            ..Check::default()
        },
    })
}

/// Consul's `ipaddr.IsAny`.
fn is_any(address: &str) -> bool {
    matches!(address, "0.0.0.0" | "::" | "[::]")
}

fn raw_body(req: &Request) -> Result<Value, Error> {
    serde_json::from_slice(&req.body).map_err(decode_failed)
}

/// `PUT /v1/agent/service/register`.
pub fn route_service_register(req: &Request) -> Result<Plan, Error> {
    let raw = raw_body(req)?;
    let body: ServiceBody = json::from_value(raw.clone()).map_err(decode_failed)?;
    if body.name.is_empty() {
        return Err(Error::bad_request("Missing service name"));
    }
    if is_any(&body.address) {
        return Err(Error::bad_request("Invalid service address"));
    }
    let weights = match body.weights {
        None => Weights {
            passing: 1,
            warning: 1,
        },
        Some(w) if w.passing < 1 => {
            return Err(Error::bad_request(
                "Invalid Weights: Passing must be greater than 0",
            ));
        }
        Some(w) if w.warning < 0 => {
            return Err(Error::bad_request(
                "Invalid Weights: Warning must be greater or equal than 0",
            ));
        }
        Some(w) => Weights {
            passing: w.passing,
            warning: w.warning,
        },
    };
    for check in fields(&raw, "Check").into_iter().chain(
        fields(&raw, "Checks")
            .into_iter()
            .filter_map(Value::as_array)
            .flatten(),
    ) {
        refuse_probe(check)?;
    }
    let id = if body.id.is_empty() {
        body.name.clone()
    } else {
        body.id
    };
    let given: Vec<CheckBody> = body.check.into_iter().chain(body.checks).collect();
    let several = given.len() > 1;
    let mut checks = Vec::with_capacity(given.len());
    for (i, b) in given.into_iter().enumerate() {
        if !valid_status(&b.status) {
            return Err(Error::bad_request(
                "Status for checks must 'passing', 'warning', 'critical'",
            ));
        }
        let mut def = check_def(b)?;
        let c = &mut def.check;
        if c.check_id.is_empty() {
            c.check_id = format!("service:{id}");
            if several {
                c.check_id.push_str(&format!(":{}", i + 1));
            }
        }
        if c.name.is_empty() {
            c.name = format!("Service '{}' check", body.name);
        }
        c.service_id = id.clone();
        checks.push(def);
    }
    let meta = tenancy(
        req,
        &Meta {
            partition: body.partition,
            namespace: body.namespace,
        },
    )?;
    let replace = req
        .get("replace-existing-checks")
        .is_some_and(|v| v.is_empty() || v == "true");
    let r = AgentServiceRegister {
        node: req.node.clone(),
        service: Service {
            kind: body.kind,
            id,
            service: body.name,
            tags: body.tags,
            address: body.address,
            meta: body.meta,
            port: body.port,
            weights: Some(weights),
            ..Service::default()
        },
        checks,
        replace_existing_checks: replace,
        tenancy: meta.clone(),
    };
    let service = Need::write(Resource::Service, &r.service.service).in_tenancy(&meta.tenancy());
    let node = Need::read(Resource::Node, &r.node).in_tenancy(&meta.partition());
    Ok(Plan::apply(&AGENT_SERVICE_REGISTER, &r)?
        .need(service)
        .need(node))
}

/// `service` write on every service of the request's namespace: what an operation on a
/// service or check named only by ID needs here.
fn any_service(meta: &Meta) -> Need {
    Need::write_prefix(Resource::Service, "").in_tenancy(&meta.tenancy())
}

fn target(req: &Request, prefix: &str) -> Result<AgentTarget, Error> {
    Ok(AgentTarget {
        node: req.node.clone(),
        id: req.path_after(prefix).to_string(),
        tenancy: tenancy(req, &Meta::default())?,
    })
}

/// `PUT /v1/agent/service/deregister/<id>`.
pub fn route_service_deregister(req: &Request) -> Result<Plan, Error> {
    let t = target(req, SERVICE_DEREGISTER)?;
    let need = any_service(&t.tenancy);
    Ok(Plan::apply(&AGENT_SERVICE_DEREGISTER, &t)?.need(need))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `PUT /v1/agent/service/maintenance/<id>?enable=&reason=`.
pub fn route_service_maintenance(req: &Request) -> Result<Plan, Error> {
    let id = req.path_after(SERVICE_MAINTENANCE);
    if id.is_empty() {
        return Err(Error::bad_request("Missing service ID"));
    }
    let Some(raw) = req.get("enable") else {
        return Err(Error::bad_request("Missing value for enable"));
    };
    let Some(enable) = parse_bool(raw) else {
        return Err(Error::bad_request(format!(
            "Invalid value for enable: {raw:?}"
        )));
    };
    let m = AgentMaintenance {
        node: req.node.clone(),
        service_id: id.to_string(),
        enable,
        reason: req.get("reason").unwrap_or_default().to_string(),
        tenancy: tenancy(req, &Meta::default())?,
    };
    let need = any_service(&m.tenancy);
    Ok(Plan::apply(&AGENT_SERVICE_MAINTENANCE, &m)?.need(need))
}

/// `PUT /v1/agent/check/register`.
pub fn route_check_register(req: &Request) -> Result<Plan, Error> {
    let raw = raw_body(req)?;
    let body: CheckBody = json::from_value(raw.clone()).map_err(decode_failed)?;
    if body.name.is_empty() {
        return Err(Error::bad_request("Missing check name"));
    }
    if !valid_status(&body.status) {
        return Err(Error::bad_request("Bad check status"));
    }
    refuse_probe(&raw)?;
    let meta = tenancy(
        req,
        &Meta {
            partition: body.partition.clone(),
            namespace: body.namespace.clone(),
        },
    )?;
    let mut def = check_def(body)?;
    if def.check.check_id.is_empty() {
        def.check.check_id = def.check.name.clone();
    }
    let need = if def.check.service_id.is_empty() {
        Need::write(Resource::Node, &req.node).in_tenancy(&meta.partition())
    } else {
        any_service(&meta)
    };
    let r = AgentCheckRegister {
        node: req.node.clone(),
        check: def,
        tenancy: meta,
    };
    Ok(Plan::apply(&AGENT_CHECK_REGISTER, &r)?.need(need))
}

/// What changing a check named by ID needs: `node` write on the node and write on every
/// service (the check may be a node check or any service's).
fn check_needs(plan: Plan, node: &str, meta: &Meta) -> Plan {
    plan.need(Need::write(Resource::Node, node).in_tenancy(&meta.partition()))
        .need(any_service(meta))
}

/// `PUT /v1/agent/check/deregister/<id>`.
pub fn route_check_deregister(req: &Request) -> Result<Plan, Error> {
    let t = target(req, CHECK_DEREGISTER)?;
    let (node, meta) = (t.node.clone(), t.tenancy.clone());
    Ok(check_needs(
        Plan::apply(&AGENT_CHECK_DEREGISTER, &t)?,
        &node,
        &meta,
    ))
}

/// Consul's truncation of a check's output to [`CHECK_BUF_SIZE`] bytes.
fn truncated(output: String) -> String {
    let total = output.len();
    if total <= CHECK_BUF_SIZE {
        return output;
    }
    let mut end = CHECK_BUF_SIZE;
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{} ... (captured {CHECK_BUF_SIZE} of {total} bytes)",
        &output[..end]
    )
}

/// `{Status, Output}` of `PUT /v1/agent/check/update/<id>`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct UpdateBody {
    #[serde(default)]
    status: String,
    #[serde(default)]
    output: String,
}

/// `PUT /v1/agent/check/pass|warn|fail/<id>?note=` and `PUT /v1/agent/check/update/<id>`.
pub fn route_check_update(req: &Request) -> Result<Plan, Error> {
    let (prefix, status, output) = if req.path.starts_with(CHECK_UPDATE) {
        let b: UpdateBody = json::from_slice(&req.body).map_err(decode_failed)?;
        if !STATES.contains(&b.status.as_str()) {
            return Err(Error::bad_request(format!(
                "Invalid check status: '{}'",
                b.status
            )));
        }
        (CHECK_UPDATE, b.status, b.output)
    } else {
        let note = req.get("note").unwrap_or_default().to_string();
        match [CHECK_PASS, CHECK_WARN, CHECK_FAIL]
            .into_iter()
            .zip(STATES)
            .find(|(p, _)| req.path.starts_with(p))
        {
            Some((p, status)) => (p, status.to_string(), note),
            None => return Err(Error::not_found(format!("no route PUT {}", req.path))),
        }
    };
    let u = AgentCheckUpdate {
        node: req.node.clone(),
        check_id: req.path_after(prefix).to_string(),
        status,
        output: truncated(output),
        tenancy: tenancy(req, &Meta::default())?,
    };
    let (node, meta) = (u.node.clone(), u.tenancy.clone());
    Ok(check_needs(
        Plan::apply(&AGENT_CHECK_UPDATE, &u)?,
        &node,
        &meta,
    ))
}

/// Renders an agent write: 200 with no body, or the error as Consul's agent answers it (a
/// bad request 400, an unknown ID 404, anything else 500).
pub fn render_write(_ctx: &[u8], outcome: Result<Vec<u8>, Error>, _index: u64) -> Response {
    match outcome.and_then(|b| from_cbor::<bool>(&b, "agent write result")) {
        Ok(_) => Response::text(200, ""),
        Err(e) => {
            let status = match e.kind {
                ErrorKind::BadRequest => 400,
                ErrorKind::NotFound => 404,
                _ => 500,
            };
            Response::text(status, e.message)
        }
    }
}
