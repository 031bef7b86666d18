//! Plugin endpoints: `GET /v1/plugins` (what this server loaded) and `PUT /v1/plugins`
//! (`?dry-run`: an install through the log on every server).

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;
use std::sync::Arc;

use crate::protocol::InstallRequest;
use crate::server::web::{self, Refusal, Reply};
use crate::server::{Node, installs};

/// `GET /v1/plugins`: the loaded plugins with their schemas, commands and queries.
pub fn list(node: &Node) -> Reply {
    web::with_index(
        web::json(StatusCode::OK, &plugins_json(node)),
        node.fsm.last_applied().max(1),
    )
}

/// `PUT /v1/plugins` (`?dry-run`): installs the component in the body on every server
/// through the log, or with `?dry-run` only reports what it would change. 200 with the
/// report (and `X-Consul-Index`, the raft index every server switched at); a refused
/// component is a 400 or 409 naming the problem, and nothing changes.
pub async fn install(node: &Arc<Node>, req: Request<Incoming>) -> Result<Reply, Refusal> {
    let q = web::query(&req);
    let dry_run = q.contains_key("dry-run") || q.contains_key("dry_run");
    let component = web::body(req, installs::MAX_COMPONENT).await?;
    let request = InstallRequest {
        component: serde_bytes::ByteBuf::from(component.to_vec()),
        dry_run,
    };
    let report = installs::install(node, &request).await?;
    Ok(web::with_index(
        web::json(StatusCode::OK, &report.to_json()),
        report.raft_index.max(1),
    ))
}

fn plugins_json(node: &Node) -> serde_json::Value {
    let plugins: Vec<serde_json::Value> = node
        .fsm
        .plugins()
        .plugins()
        .iter()
        .map(|p| {
            let d = p.description();
            let tables: Vec<serde_json::Value> = d
                .tables
                .iter()
                .map(|t| {
                    let indexes: Vec<serde_json::Value> = t
                        .indexes
                        .iter()
                        .map(|i| {
                            json!({
                                "Name": i.name,
                                "Unique": i.unique,
                                "Multi": i.multi,
                                "AllowMissing": i.allow_missing,
                                "Prefix": i.prefix,
                            })
                        })
                        .collect();
                    json!({ "Name": t.name, "Indexes": indexes })
                })
                .collect();
            json!({
                "Name": d.name,
                "Version": d.version,
                "Edition": d.edition,
                "Hash": p.hash_hex(),
                "Tables": tables,
                "Commands": d.commands,
                "Queries": d.queries,
                "Routes": d.routes.iter().map(|r| json!({
                    "Method": r.method,
                    "Path": r.path,
                    "Prefix": r.prefix,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!(plugins)
}
