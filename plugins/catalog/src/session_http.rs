//! Consul's session HTTP API (`agent/session_endpoint.go`), served by the catalog plugin:
//! - `PUT /v1/session/create` → `{"ID": "..."}` (the body is optional: every field has
//!   Consul's default, the node being the server that serves the request);
//! - `PUT /v1/session/destroy/<id>` → `true`;
//! - `PUT /v1/session/renew/<id>` → `[session]`, or 404 `Session id '<id>' not found`: a
//!   `session-renew` command, so the renewal (the entry's timestamp) restarts the session's
//!   TTL timer on every server;
//! - `GET /v1/session/info/<id>` → `[session]` or `[]`; `GET /v1/session/node/<node>` and
//!   `GET /v1/session/list` → lists.
//!
//! ACLs: creating needs `session` write on the session's node, as Consul's. Destroying and
//! renewing need `session` write on every node (`session_prefix ""`): Consul looks the
//! session up and needs write on its node, but a route's needs are declared before
//! anything runs, so this is stricter. Reads keep only the sessions whose node the caller
//! may read (`session` read).

use fsmhost_guest::acl::{self, Access, Need, Resource};
use fsmhost_guest::http::{Plan, Request, Response, context, json_body};
use fsmhost_guest::{Error, Tenancy, from_cbor};
use serde::{Deserialize, Serialize};

use crate::http::tenancy;
use crate::{
    DEFAULT_LOCK_DELAY_NS, Indexed, Meta, NODE_SESSIONS, SERF_CHECK, SESSION_CREATE,
    SESSION_DESTROY, SESSION_GET, SESSION_LIST, SESSION_RENEW, ServiceCheck, Session,
    SessionCreateRequest, SessionId, SessionNodeArgs, parse_duration, sessions,
};

/// The prefix of the session reads.
pub const SESSION: &str = "/v1/session/";
/// `PUT /v1/session/destroy/<id>`.
pub const DESTROY: &str = "/v1/session/destroy/";
/// `PUT /v1/session/renew/<id>`.
pub const RENEW: &str = "/v1/session/renew/";

/// Consul's `lockDelayMinThreshold`: a lock-delay below this many nanoseconds is taken as
/// seconds.
const LOCK_DELAY_MIN_THRESHOLD: i64 = 1000;

/// A create body as Consul's clients send it (`api.SessionEntry`): `LockDelay` a duration
/// text or a number, `Checks` and `NodeChecks` told apart from absent (`null` is absent).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CreateBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    lock_delay: Option<serde_json::Value>,
    #[serde(default)]
    behavior: String,
    #[serde(rename = "TTL", default)]
    ttl: String,
    #[serde(default)]
    checks: Option<Vec<String>>,
    #[serde(default)]
    node_checks: Option<Vec<String>>,
    #[serde(default)]
    service_checks: Option<Vec<ServiceCheck>>,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    partition: String,
}

fn decode_failed(e: impl std::fmt::Display) -> Error {
    Error::bad_request(format!("Request decode failed: {e}"))
}

/// Consul's `FixupLockDelay`: a duration text or a number of nanoseconds, either taken as
/// seconds below 1000.
fn lock_delay(v: &serde_json::Value) -> Result<u64, Error> {
    let ns: i64 = match v {
        serde_json::Value::String(s) => parse_duration(s).map_err(decode_failed)?,
        // Go's time.Duration(float64): truncated toward zero (saturating here).
        serde_json::Value::Number(n) => n.as_f64().map_or(0, |f| f as i64),
        other => {
            let kind = match other {
                serde_json::Value::Bool(_) => "bool",
                serde_json::Value::Array(_) => "array",
                _ => "object",
            };
            return Err(decode_failed(format!(
                "json: cannot unmarshal {kind} into Go struct field Session.LockDelay of type \
                 time.Duration"
            )));
        }
    };
    let ns = if ns < LOCK_DELAY_MIN_THRESHOLD {
        ns.saturating_mul(1_000_000_000)
    } else {
        ns
    };
    u64::try_from(ns).map_err(|_| decode_failed(format!("LockDelay {v} is negative")))
}

/// `PUT /v1/session/create`.
pub fn route_create(req: &Request) -> Result<Plan, Error> {
    let body: CreateBody = if req.body.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else {
        json_body(req).map_err(decode_failed)?
    };
    let lock_delay = match &body.lock_delay {
        None => DEFAULT_LOCK_DELAY_NS,
        Some(v) => lock_delay(v)?,
    };
    // Consul's fixupEmptySessionChecks: `serfHealth` unless the body names checks (an
    // empty list takes it out).
    let node_checks = match (body.checks, body.node_checks) {
        (None, None) => vec![SERF_CHECK.to_string()],
        (checks, node_checks) => checks
            .unwrap_or_default()
            .into_iter()
            .chain(node_checks.unwrap_or_default())
            .collect(),
    };
    let meta = Meta {
        partition: body.partition,
        namespace: body.namespace,
    };
    let t = tenancy(req, &meta)?.tenancy();
    let r = SessionCreateRequest {
        name: body.name,
        node: if body.node.is_empty() {
            req.node.clone()
        } else {
            body.node
        },
        lock_delay,
        behavior: body.behavior,
        ttl: body.ttl,
        node_checks,
        service_checks: body.service_checks.unwrap_or_default(),
        tenancy: t.clone(),
    };
    // What Consul refuses before the log is refused here too (the command checks again),
    // with Consul's status: its RPC errors are 500s, which its clients expect.
    if let Err(e) = sessions::check_create(&r) {
        return Ok(Plan::respond(Response::text(500, e.message)));
    }
    let need = Need::write(Resource::Session, &r.node).in_tenancy(&t);
    Ok(Plan::apply(&SESSION_CREATE, &r)?.need(need))
}

/// Renders `{"ID": "..."}`, or the refusal as Consul answers its RPC errors: a 500 with
/// the message (py-consul and Go's client read any other status differently: a 404 is
/// "nothing" to py-consul).
pub fn render_create(_ctx: &[u8], outcome: Result<Vec<u8>, Error>, _index: u64) -> Response {
    match outcome.and_then(|b| from_cbor::<String>(&b, "session-create result")) {
        Ok(id) => Response::json(200, &serde_json::json!({ "ID": id })),
        Err(e) => Response::text(500, e.message),
    }
}

fn missing(what: &str) -> Plan {
    Plan::respond(Response::text(400, format!("Missing {what}")))
}

/// The session ID after `prefix`, and the request's partition and namespace.
fn session_id(req: &Request, prefix: &str) -> Result<Option<SessionId>, Error> {
    let id = req.path_after(prefix);
    if id.is_empty() {
        return Ok(None);
    }
    Ok(Some(SessionId {
        id: id.to_string(),
        tenancy: tenancy(req, &Meta::default())?.tenancy(),
    }))
}

/// `session` write on every node, in the request's partition and namespace: what
/// destroying or renewing a session needs here (stricter than Consul, which needs write on
/// the session's node; its node is not known before the request runs).
fn write_any(t: &Tenancy) -> Need {
    Need::write_prefix(Resource::Session, "").in_tenancy(t)
}

/// `PUT /v1/session/destroy/<id>`.
pub fn route_destroy(req: &Request) -> Result<Plan, Error> {
    let Some(args) = session_id(req, DESTROY)? else {
        return Ok(missing("session"));
    };
    let need = write_any(&args.tenancy);
    Ok(Plan::apply(&SESSION_DESTROY, &args)?.need(need))
}

/// Which answer a session read renders.
#[derive(Serialize, Deserialize)]
enum Read {
    /// `info`: a list of at most one session.
    Info,
    /// `renew` of this ID: the session, or 404.
    Renew(String),
    /// `node`, `list`.
    List,
}

/// `PUT /v1/session/renew/<id>`: the `session-renew` command.
pub fn route_renew(req: &Request) -> Result<Plan, Error> {
    let Some(args) = session_id(req, RENEW)? else {
        return Ok(missing("session"));
    };
    let need = write_any(&args.tenancy);
    Plan::apply(&SESSION_RENEW, &args)?
        .need(need)
        .context(&Read::Renew(args.id.clone()))
}

/// `GET /v1/session/info/<id>`, `/v1/session/node/<node>`, `/v1/session/list`.
pub fn route_read(req: &Request) -> Result<Plan, Error> {
    let rest = req.path_after(SESSION);
    if rest.starts_with("info/") {
        let Some(args) = session_id(req, "/v1/session/info/")? else {
            return Ok(missing("session"));
        };
        return Plan::query(&SESSION_GET, &args)?
            .filtered()
            .context(&Read::Info);
    }
    if rest.starts_with("node/") {
        let node = req.path_after("/v1/session/node/");
        if node.is_empty() {
            return Ok(missing("node name"));
        }
        let args = SessionNodeArgs {
            node: node.to_string(),
            tenancy: tenancy(req, &Meta::default())?.tenancy(),
        };
        return Plan::query(&NODE_SESSIONS, &args)?
            .filtered()
            .context(&Read::List);
    }
    if rest == "list" {
        let t = tenancy(req, &Meta::default())?.tenancy();
        return Plan::query(&SESSION_LIST, &t)?
            .filtered()
            .context(&Read::List);
    }
    Err(Error::not_found(format!(
        "no session endpoint GET {}",
        req.path
    )))
}

/// A session as Consul's API prints it (`structs.Session`; `LockDelay` in nanoseconds,
/// `null` for empty check lists as Go prints nil slices, `Namespace` and `Partition` in the
/// enterprise edition).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SessionOut<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    node: &'a str,
    lock_delay: u64,
    behavior: &'a str,
    #[serde(rename = "TTL")]
    ttl: &'a str,
    node_checks: Option<&'a [String]>,
    service_checks: Option<&'a [ServiceCheck]>,
    create_index: u64,
    modify_index: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    namespace: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    partition: &'a str,
}

impl<'a> From<&'a Session> for SessionOut<'a> {
    fn from(s: &'a Session) -> Self {
        SessionOut {
            id: &s.id,
            name: &s.name,
            node: &s.node,
            lock_delay: s.lock_delay,
            behavior: &s.behavior,
            ttl: &s.ttl,
            node_checks: Some(s.node_checks.as_slice()).filter(|c| !c.is_empty()),
            service_checks: Some(s.service_checks.as_slice()).filter(|c| !c.is_empty()),
            create_index: s.create_index,
            modify_index: s.modify_index,
            namespace: &s.tenancy.namespace,
            partition: &s.tenancy.partition,
        }
    }
}

/// Whether the caller may read sessions of `s`'s node (Consul's ACL filter).
fn readable(s: &Session) -> bool {
    acl::allowed_in(&s.tenancy, Resource::Session, &s.node, Access::Read)
}

fn list(sessions: &[Session]) -> Vec<SessionOut<'_>> {
    sessions.iter().map(SessionOut::from).collect()
}

/// Renders a session read in Consul's JSON, keeping only the sessions the caller may read.
pub fn render_read(ctx: &[u8], outcome: Result<Vec<u8>, Error>, _index: u64) -> Response {
    let rendered = context::<Read>(ctx).and_then(|read| {
        let bytes = outcome?;
        Ok(match read {
            Read::Info => {
                let one = from_cbor::<Indexed<Option<Session>>>(&bytes, "query result")?.items;
                let total = usize::from(one.is_some());
                let kept: Vec<Session> = one.into_iter().filter(readable).collect();
                let f = kept.len() < total;
                Response::json(200, &list(&kept)).filtered_by_acls(f)
            }
            Read::Renew(id) => {
                match from_cbor::<Option<Session>>(&bytes, "session-renew result")? {
                    Some(s) => Response::json(200, &[SessionOut::from(&s)]),
                    None => Response::text(404, format!("Session id '{id}' not found")),
                }
            }
            Read::List => {
                let all = from_cbor::<Indexed<Vec<Session>>>(&bytes, "query result")?.items;
                let total = all.len();
                let kept: Vec<Session> = all.into_iter().filter(readable).collect();
                let f = kept.len() < total;
                Response::json(200, &list(&kept)).filtered_by_acls(f)
            }
        })
    });
    rendered.unwrap_or_else(|e| Response::error(&e))
}
