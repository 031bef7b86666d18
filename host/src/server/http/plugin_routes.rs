//! Requests on the routes plugins serve (Consul's `/v1/kv/` and `/v1/txn` are the kv
//! plugin's): the host side of the `route` and `render` exports.
//!
//! Owns: the sequence route → command or query → render. The plugin decides what a request
//! means and what its response looks like; the host does what it does for every write and
//! read: forwarding to the leader, the raft log, consistency modes, blocking
//! (`?index=&wait=`), and `X-Consul-Index`. The host holds no plugin-specific code.
//! Every request reaches the plugin with `?dc=` set to this server's datacenter.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use std::sync::Arc;

use crate::fsm::FsmError;
use crate::plugin::{CallError, ErrorKind, HttpAction, HttpRequest, HttpResponse, LoadedPlugin};
use crate::protocol::{ApplyRequest, OpError, QueryRequest};
use crate::server::Node;
use crate::server::ops;
use crate::server::web::{self, MAX_BODY, Refusal, Reply, blocking_params, consistency};

/// A failed call into the plugin, as the client's refusal.
fn call_refusal(e: CallError) -> Refusal {
    let e = FsmError::from(e);
    Refusal::of(e.kind(), e.to_string())
}

fn reply(r: HttpResponse, index: u64) -> Reply {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    web::with_index(web::bytes(status, &r.content_type, r.body), index)
}

/// Renders an outcome with the plugin's `render`.
fn render(
    plugin: &LoadedPlugin,
    context: &[u8],
    outcome: Result<&[u8], (ErrorKind, &str)>,
    index: u64,
) -> Result<Reply, Refusal> {
    let r = plugin
        .render(context, outcome, index)
        .map_err(call_refusal)?;
    Ok(reply(r, index))
}

/// Serves `req` on a route of `plugin`.
pub async fn serve(
    node: &Arc<Node>,
    plugin: Arc<LoadedPlugin>,
    req: Request<Incoming>,
) -> Result<Reply, Refusal> {
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
    };
    let plan = plugin.route(&request).map_err(call_refusal)?;
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
            render(&plugin, &plan.context, outcome, applied.index)
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
                Ok(answer) => render(&plugin, &plan.context, Ok(&answer.bytes), answer.index),
                Err(OpError::Refused { refusal, .. }) => {
                    let index = node.fsm.last_applied().max(1);
                    let outcome = Err((refusal.kind, refusal.message.as_str()));
                    render(&plugin, &plan.context, outcome, index)
                }
                Err(e) => Err(Refusal::from(e)),
            }
        }
    }
}
