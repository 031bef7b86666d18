//! The operators' HTTP API (`ports.http`): the route table, and what every response
//! carries. Each family of endpoints is a module of its own, as Consul's
//! `agent/http_register.go` maps paths to `*_endpoint.go` handlers:
//! - [`generic`]: `POST|PUT /v1/apply/{plugin}/{command}` and
//!   `GET|POST /v1/query/{plugin}/{query}` (`?stale`, `?consistent`, `?index=&wait=`);
//! - [`agent`]: `GET /v1/status/leader|peers`, `GET /v1/agent/self|members|metrics`,
//!   `PUT /v1/agent/leave`;
//! - [`dc`]: `GET /v1/catalog/datacenters`, and `?dc=` on every endpoint (another
//!   datacenter is Consul's 500 `No path to datacenter`);
//! - [`operator`]: `GET /v1/operator/raft/configuration`,
//!   `DELETE /v1/operator/raft/peer?id=|address=`, and
//!   `/v1/operator/autopilot/{configuration,health,state}`, `/v1/operator/keyring`;
//! - [`snapshot`]: `GET /v1/snapshot` (`?stale`), `PUT /v1/snapshot`;
//! - [`plugins`]: `GET|PUT /v1/plugins` (`?dry-run`);
//! - [`plugin_routes`]: any other path a plugin's routes serve (the kv plugin's `/v1/kv/`
//!   and `/v1/txn`).
//!
//! Every response carries `X-Consul-Index` (the data's index, or the last applied FSM index),
//! `X-Consul-KnownLeader` and `X-Consul-LastContact`.
//!
//! Bodies are CBOR (`application/cbor`) or JSON (`application/json`, converted to CBOR for
//! the plugin and the answer back to JSON). Errors are plain text naming the problem, with
//! the status of the failure's kind (`web::status_of`).

pub mod acl;
pub mod agent;
pub mod dc;
pub mod generic;
pub mod operator;
pub mod plugin_routes;
pub mod plugins;
pub mod snapshot;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::Node;
use super::acl::{self as acls, Authz};
use super::web::{self, Refusal, Reply};
use crate::acl::{Access, Bare, Resource};

/// The handler of the HTTP port.
pub fn handler(
    node: Arc<Node>,
) -> impl Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync + 'static
{
    move |req| {
        let node = node.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let method = req.method().to_string();
            let prefix = route_prefix(req.uri().path());
            let refused = refuse_simple_post(&req)
                .and_then(|()| dc::check(&node.config.datacenter, &web::query(&req)));
            let mut reply = match refused {
                Ok(()) => route(&node, req).await.unwrap_or_else(Reply::from),
                Err(refusal) => Reply::from(refusal),
            };
            add_leader_headers(&node, &mut reply);
            if !reply.headers().contains_key("X-Consul-Index") {
                reply = web::with_index(reply, node.fsm.last_applied().max(1));
            }
            crate::metrics::METRICS
                .http_request_time
                .with_label_values(&[method.as_str(), prefix])
                .observe(started.elapsed().as_secs_f64());
            reply
        })
    }
}

/// A path's route prefix, as metrics label it (`/v1/kv/a/b` is `/v1/kv`): a bounded set.
fn route_prefix(path: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "/v1/apply",
        "/v1/query",
        "/v1/status",
        "/v1/agent",
        "/v1/operator",
        "/v1/snapshot",
        "/v1/plugins",
        "/v1/acl",
    ];
    KNOWN
        .iter()
        .find(|p| path == **p || path.starts_with(&format!("{p}/")))
        .copied()
        .unwrap_or("other")
}

fn add_leader_headers(node: &Node, reply: &mut Reply) {
    let h = reply.headers_mut();
    let known = node.leader().is_some();
    h.insert(
        "X-Consul-KnownLeader",
        HeaderValue::from_static(if known { "true" } else { "false" }),
    );
    let contact = node.last_contact().map_or(0, |d| d.as_millis() as u64);
    if let Ok(v) = HeaderValue::from_str(&contact.to_string()) {
        h.insert("X-Consul-LastContact", v);
    }
}

/// The content types a browser sends cross-site without asking the server first (CORS
/// "simple requests"); none is a type this API reads.
const SIMPLE_TYPES: [&str; 3] = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
];

/// Refuses a `POST` that any web page could have sent: one without a `Content-Type` or
/// with one a browser sends cross-site without a preflight. Every other way to change
/// state (`PUT`, `DELETE`, a `POST` of JSON or CBOR) makes a browser ask first, and this
/// server grants no cross-origin access (it sends no CORS headers), so a page cannot
/// write, leave or restore through a visitor's browser.
fn refuse_simple_post(req: &Request<Incoming>) -> Result<(), Refusal> {
    if req.method() != Method::POST {
        return Ok(());
    }
    let media = web::media_type(req);
    match media.as_deref() {
        Some(t) if !SIMPLE_TYPES.contains(&t) => Ok(()),
        _ => Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "POST needs a Content-Type of application/json or application/cbor (got {}): \
                 browsers send other types cross-site unasked, so they are refused",
                media.as_deref().unwrap_or("none")
            ),
        )),
    }
}

/// What a host route needs the request's token to allow (Consul's rules for the same
/// endpoints). Plugin routes declare theirs in their plans (`plugin_routes`); the ACL
/// endpoints check their own.
enum Need {
    /// Nothing (`/v1/status/*`, ACL bootstrap).
    Nothing,
    /// A valid token; the endpoint decides.
    Token,
    /// `operator`, `acl`, ... at this level.
    Bare(Bare, Access),
    /// `agent` on this server's node name at this level.
    Agent(Access),
}

fn need_of(method: &Method, segments: &[&str]) -> Need {
    let write = if method == Method::GET {
        Access::Read
    } else {
        Access::Write
    };
    match segments {
        ["v1", "status", ..] | ["v1", "acl", "bootstrap"] => Need::Nothing,
        // The generic API runs any plugin's commands and queries: an operator's tool.
        ["v1", "apply", ..] => Need::Bare(Bare::Operator, Access::Write),
        ["v1", "query", ..] => Need::Bare(Bare::Operator, Access::Read),
        ["v1", "agent", "leave"] => Need::Agent(Access::Write),
        // The agent's services and checks are the catalog plugin's routes, which declare
        // what they need (service or node write) in their plans.
        [
            "v1",
            "agent",
            "service" | "services" | "check" | "checks" | "health",
            ..,
        ] => Need::Token,
        ["v1", "agent", ..] => Need::Agent(write),
        ["v1", "operator", "keyring", ..] => Need::Bare(Bare::Keyring, write),
        ["v1", "plugins", ..] | ["v1", "operator", ..] => Need::Bare(Bare::Operator, write),
        // Consul: a snapshot holds every secret, so saving and restoring take acl = "write".
        ["v1", "snapshot", ..] => Need::Bare(Bare::Acl, Access::Write),
        _ => Need::Token,
    }
}

/// The request's token, checked against what the route needs.
fn authorize(
    node: &Node,
    req: &Request<Incoming>,
    segments: &[&str],
) -> Result<Arc<Authz>, Refusal> {
    let need = need_of(req.method(), segments);
    if matches!(need, Need::Nothing) {
        return Ok(Authz::allow_all());
    }
    let authz = acls::resolve(node, req)?;
    match need {
        Need::Bare(bare, access) => authz.require_bare(bare, access)?,
        Need::Agent(access) => authz.require(Resource::Agent, &node.info.name, access)?,
        Need::Nothing | Need::Token => {}
    }
    Ok(authz)
}

/// The route table: the endpoint serving each method and path, once the request's token
/// allows it.
async fn route(node: &Arc<Node>, req: Request<Incoming>) -> Result<Reply, Refusal> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    let authz = authorize(node, &req, &segments)?;
    match (&method, segments.as_slice()) {
        (&Method::POST | &Method::PUT, ["v1", "apply", plugin, command]) => {
            let (plugin, command) = (plugin.to_string(), command.to_string());
            generic::apply(node, req, plugin, command).await
        }
        (&Method::GET | &Method::POST, ["v1", "query", plugin, query]) => {
            let (plugin, query) = (plugin.to_string(), query.to_string());
            generic::query(node, req, plugin, query).await
        }
        (&Method::GET, ["v1", "status", "leader"]) => Ok(agent::status_leader(node)),
        (&Method::GET, ["v1", "status", "peers"]) => Ok(agent::status_peers(node)),
        (&Method::GET, ["v1", "agent", "metrics"]) => agent::metrics(node, &req),
        (&Method::GET, ["v1", "agent", "self"]) => Ok(agent::agent_self(node)),
        (&Method::GET, ["v1", "agent", "members"]) => Ok(agent::members(node, &req).await),
        (&Method::GET, ["v1", "catalog", "datacenters"]) => Ok(dc::datacenters(node)),
        (
            &Method::GET | &Method::POST | &Method::PUT | &Method::DELETE,
            ["v1", "operator", "keyring"],
        ) => Ok(operator::keyring(node, &method)),
        (&Method::PUT, ["v1", "agent", "leave"]) => agent::leave(node).await,
        (&Method::GET, ["v1", "plugins"]) => Ok(plugins::list(node)),
        (&Method::PUT, ["v1", "plugins"]) => plugins::install(node, req).await,
        (&Method::GET, ["v1", "snapshot"]) => snapshot::save(node, &web::query(&req)).await,
        (&Method::PUT, ["v1", "snapshot"]) => snapshot::restore(node, req).await,
        (&Method::GET, ["v1", "operator", "raft", "configuration"]) => {
            Ok(operator::raft_configuration(node))
        }
        (&Method::DELETE, ["v1", "operator", "raft", "peer"]) => {
            operator::remove_peer(node, &req).await
        }
        (
            _,
            [
                "v1",
                "operator",
                "autopilot",
                leaf @ ("configuration" | "health" | "state"),
            ],
        ) => {
            let leaf = leaf.to_string();
            operator::autopilot(node, req, &leaf).await
        }
        (_, ["v1", "acl", rest @ ..]) => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            acl::serve(node, req, &authz, &rest).await
        }
        _ => match node.fsm.plugins().route_for(method.as_str(), &path) {
            Some(plugin) => plugin_routes::serve(node, plugin.clone(), req, &authz).await,
            None => Err(Refusal::new(
                StatusCode::NOT_FOUND,
                format!("no route {method} {path}"),
            )),
        },
    }
}
