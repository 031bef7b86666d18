//! Requests on the routes plugins serve (Consul's `/v1/kv/` and `/v1/txn` are the kv
//! plugin's): the host side of the `route` and `render` exports.
//!
//! Owns: the sequence route → command or query → render. The plugin decides what a request
//! means and what its response looks like; the host does what it does for every write and
//! read: forwarding to the leader, the raft log, consistency modes, blocking
//! (`?index=&wait=`), and `X-Consul-Index`. The host holds no plugin-specific code.
//! Every request reaches the plugin with `?dc=` set to this server's datacenter.

use fsmhost_filter::Filter;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use std::sync::Arc;

use crate::acl::{Access, Bare, Resource};
use crate::fsm::FsmError;
use crate::plugin::{
    AclAccess, AclResource, CallError, ErrorKind, HttpAction, HttpPlan, HttpRequest, HttpResponse,
    LoadedPlugin, Permits,
};
use crate::protocol::{ApplyRequest, OpError, QueryRequest};
use crate::server::Node;
use crate::server::acl::{Authz, Scope};
use crate::server::ops;
use crate::server::web::{self, MAX_BODY, Refusal, Reply, blocking_params, consistency};

/// A failed call into the plugin, as the client's refusal.
fn call_refusal(e: CallError) -> Refusal {
    let e = FsmError::from(e);
    Refusal::of(e.kind(), e.to_string())
}

/// Headers a plugin's response may not set: the host's own and HTTP's framing.
const HOST_HEADERS: [&str; 6] = [
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "x-consul-index",
    "x-consul-knownleader",
];

fn reply(r: HttpResponse, index: u64) -> Reply {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut reply = web::bytes(status, &r.content_type, r.body);
    for (name, value) in &r.headers {
        let lower = name.to_ascii_lowercase();
        if HOST_HEADERS.contains(&lower.as_str()) || lower == "x-consul-lastcontact" {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            reply.headers_mut().append(n, v);
        }
    }
    web::with_index(reply, index)
}

/// Renders an outcome with the plugin's `render`, then keeps the elements of a JSON list
/// answer that `filter` (Consul's `?filter=`) matches.
fn render(
    plugin: &LoadedPlugin,
    context: &[u8],
    outcome: Result<&[u8], (ErrorKind, &str)>,
    index: u64,
    permits: &Permits,
    filter: Option<&Filter>,
) -> Result<Reply, Refusal> {
    let mut r = plugin
        .render(context, outcome, index, permits)
        .map_err(call_refusal)?;
    if let Some(f) = filter {
        apply_filter(f, &mut r)?;
    }
    Ok(reply(r, index))
}

/// The request's `?filter=` expression, parsed; Consul's 400 text when it does not parse.
fn filter_of(
    params: &std::collections::BTreeMap<String, String>,
) -> Result<Option<Filter>, Refusal> {
    match params.get("filter").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(expr) => Filter::parse(expr)
            .map(Some)
            .map_err(|e| Refusal::bad_request(e.to_string())),
    }
}

/// Filters a successful JSON answer: a list keeps its matching elements, an object of
/// objects (`/v1/agent/services`) its matching entries; anything else is left as it is.
/// An element the expression cannot be evaluated on fails the request, as in Consul.
fn apply_filter(f: &Filter, r: &mut HttpResponse) -> Result<(), Refusal> {
    if r.status != 200 || !r.content_type.starts_with("application/json") {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&r.body) else {
        return Ok(());
    };
    let kept = fsmhost_filter::try_filter_list(f, value)
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    r.body = serde_json::to_vec(&kept)
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(())
}

/// The caller's permissions as the plugin's `acl.allowed` import answers them.
fn permits(authz: &Arc<Authz>) -> Permits {
    let authz = authz.clone();
    Arc::new(move |resource, segment, access, partition, namespace| {
        let scope = Scope {
            partition,
            namespace,
        };
        allows(&authz, &scope, resource, segment, access)
    })
}

/// The host's access level for the contract's.
fn access_of(a: AclAccess) -> Access {
    match a {
        AclAccess::Read => Access::Read,
        AclAccess::List => Access::List,
        AclAccess::Write => Access::Write,
    }
}

/// A resource of the contract: one with segments, or a bare one.
fn target(r: AclResource) -> Result<Resource, Bare> {
    match r {
        AclResource::Agent => Ok(Resource::Agent),
        AclResource::Event => Ok(Resource::Event),
        AclResource::Key => Ok(Resource::Key),
        AclResource::Node => Ok(Resource::Node),
        AclResource::Query => Ok(Resource::Query),
        AclResource::Service => Ok(Resource::Service),
        AclResource::Session => Ok(Resource::Session),
        AclResource::Acl => Err(Bare::Acl),
        AclResource::Keyring => Err(Bare::Keyring),
        AclResource::Mesh => Err(Bare::Mesh),
        AclResource::Operator => Err(Bare::Operator),
        AclResource::Peering => Err(Bare::Peering),
    }
}

fn allows(
    authz: &Authz,
    scope: &Scope,
    resource: AclResource,
    segment: &str,
    access: AclAccess,
) -> bool {
    match target(resource) {
        Ok(r) => authz.allows_in(scope, r, segment, access_of(access)),
        Err(b) => authz.require_bare_in(scope, b, access_of(access)).is_ok(),
    }
}

/// Checks the plan against the caller's token: its declared needs, or without any the
/// default (`operator` write for a command, read for a query); an immediate response needs
/// nothing. The plugin can ask for more than the default, never grant anything.
fn authorize_plan(plan: &HttpPlan, authz: &Authz) -> Result<(), Refusal> {
    let Some(needs) = &plan.needs else {
        return match plan.action {
            HttpAction::Respond(_) => Ok(()),
            HttpAction::Apply { .. } => authz.require_bare(Bare::Operator, Access::Write),
            HttpAction::Query { .. } => authz.require_bare(Bare::Operator, Access::Read),
        };
    };
    for need in needs {
        let scope = Scope {
            partition: &need.tenancy.partition,
            namespace: &need.tenancy.namespace,
        };
        match target(need.resource) {
            Ok(Resource::Key) if need.prefix => {
                authz.require_key_write_prefix_in(&scope, &need.segment)?
            }
            Ok(r) => authz.require_in(&scope, r, &need.segment, access_of(need.access))?,
            Err(b) => authz.require_bare_in(&scope, b, access_of(need.access))?,
        }
    }
    Ok(())
}

/// Serves `req` on a route of `plugin`, for a caller resolved to `authz`.
pub async fn serve(
    node: &Arc<Node>,
    plugin: Arc<LoadedPlugin>,
    req: Request<Incoming>,
    authz: &Arc<Authz>,
) -> Result<Reply, Refusal> {
    let permits = permits(authz);
    let mut query = web::query_pairs(&req);
    // Consul's `parseDC`: the datacenter a request is for (the route table refused any
    // other than this one), so a plugin can name it: a given `?dc=` is written as the
    // configuration spells it, and one is added when there is none.
    let dc = node.config.datacenter.clone();
    query.retain(|(k, v)| k != "dc" || !v.is_empty());
    match query.iter_mut().find(|(k, _)| k == "dc") {
        Some((_, v)) => *v = dc,
        None => query.push(("dc".to_string(), dc)),
    }
    let params = query.iter().cloned().collect();
    let filter = filter_of(&params)?;
    let consistency = consistency(&params)?;
    let (min_index, wait) = blocking_params(&params)?;
    let path = percent_encoding::percent_decode_str(req.uri().path())
        .decode_utf8()
        .map_err(|_| Refusal::bad_request("the path is not UTF-8 once percent-decoded"))?
        .into_owned();
    let method = req.method().to_string();
    let body = web::body(req, MAX_BODY).await?.to_vec();
    let request = HttpRequest {
        method,
        path,
        query,
        body,
        node: node.config.node_name.clone(),
    };
    let plan = plugin.route(&request, &permits).map_err(call_refusal)?;
    authorize_plan(&plan, authz)?;
    match plan.action {
        HttpAction::Respond(r) => Ok(reply(r, node.fsm.last_applied().max(1))),
        HttpAction::Apply { command, payload } => {
            let applied = ops::apply(
                node,
                &ApplyRequest {
                    plugin: plugin.name().to_string(),
                    command,
                    payload,
                },
            )
            .await
            .map_err(Refusal::from)?;
            let outcome = match &applied.result {
                Ok(bytes) => Ok(bytes.as_slice()),
                Err(f) => match &f.refusal {
                    Some(r) => Err((r.kind, r.message.as_str())),
                    None => {
                        let refused = Refusal::of(f.kind, f.message.clone());
                        return Ok(web::with_index(Reply::from(refused), applied.index));
                    }
                },
            };
            render(
                &plugin,
                &plan.context,
                outcome,
                applied.index,
                &permits,
                filter.as_ref(),
            )
        }
        HttpAction::Query { name, args } => {
            let r = QueryRequest {
                plugin: plugin.name().to_string(),
                query: name,
                args,
                consistency,
                min_index,
                wait_ms: wait.as_millis() as u64,
            };
            match ops::query(node, &r).await {
                Ok(answer) => render(
                    &plugin,
                    &plan.context,
                    Ok(&answer.bytes),
                    answer.index,
                    &permits,
                    filter.as_ref(),
                ),
                Err(OpError::Refused { refusal, .. }) => {
                    let index = node.fsm.last_applied().max(1);
                    let outcome = Err((refusal.kind, refusal.message.as_str()));
                    render(&plugin, &plan.context, outcome, index, &permits, None)
                }
                Err(e) => Err(Refusal::from(e)),
            }
        }
    }
}
