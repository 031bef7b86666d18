//! Consul's ACL endpoints: `PUT /v1/acl/bootstrap`; tokens (`PUT /v1/acl/token`,
//! `GET|PUT|DELETE /v1/acl/token/<accessor>`, `GET /v1/acl/token/self`,
//! `GET /v1/acl/tokens`); policies (`PUT /v1/acl/policy`, `GET|PUT|DELETE
//! /v1/acl/policy/<id>`, `GET /v1/acl/policy/name/<name>`, `GET /v1/acl/policies`); and
//! roles in the same shapes. Bodies and answers are Consul's JSON.
//!
//! Reads need `acl = "read"`, changes `acl = "write"`, `token/self` only a valid token,
//! and bootstrap nothing (it works once). A token's `SecretID` is shown only to a caller
//! with `acl = "write"`.

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::acl::store::{
    AclAnswer, AclOp, AclState, Link, MANAGEMENT_POLICY_ID, Policy, Role, Token,
};
use crate::acl::{Access, Bare, Rules};
use crate::server::Node;
use crate::server::acl::{self as acls, Authz};
use crate::server::web::{self, Refusal, Reply};

/// Serves `/v1/acl/<rest...>` for a caller resolved to `authz`.
pub async fn serve(
    node: &Arc<Node>,
    req: Request<Incoming>,
    authz: &Authz,
    rest: &[String],
) -> Result<Reply, Refusal> {
    if !node.config.acl.enabled {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "ACL support disabled",
        ));
    }
    let method = req.method().clone();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let state = node.fsm.acl();
    let show_secrets = authz.authorizer().allows_bare(Bare::Acl, Access::Write);
    match (&method, rest.as_slice()) {
        (&Method::PUT, ["bootstrap"]) => {
            let token = Token {
                accessor_id: acls::new_id()?,
                secret_id: acls::new_id()?,
                description: "Bootstrap Token (Global Management)".into(),
                policies: vec![link(MANAGEMENT_POLICY_ID)],
                create_time: acls::now_text(),
                ..Token::default()
            };
            let answer = acls::write(node, AclOp::Bootstrap(token))
                .await
                .map_err(|e| match e {
                    crate::protocol::OpError::Failed { message, .. }
                        if message.contains("no longer allowed") =>
                    {
                        Refusal::new(
                            StatusCode::FORBIDDEN,
                            format!("Permission denied: {message}"),
                        )
                    }
                    e => Refusal::from(e),
                })?;
            answered(node, answer, true).await
        }
        (&Method::GET, ["token", "self"]) => {
            let token = authz
                .accessor()
                .and_then(|a| state.tokens.get(a))
                .ok_or_else(|| Refusal::new(StatusCode::FORBIDDEN, "ACL not found"))?;
            Ok(json_ok(token_json(&state, token, true)))
        }
        (&Method::GET, ["tokens"]) => {
            authz.require_bare(Bare::Acl, Access::Read)?;
            let all: Vec<Value> = state
                .tokens
                .values()
                .map(|t| token_json(&state, t, show_secrets))
                .collect();
            Ok(json_ok(Value::Array(all)))
        }
        (&Method::GET, ["token", accessor]) => {
            authz.require_bare(Bare::Acl, Access::Read)?;
            let token = state.tokens.get(*accessor).ok_or_else(not_found)?;
            Ok(json_ok(token_json(&state, token, show_secrets)))
        }
        (&Method::PUT, ["token"]) | (&Method::PUT, ["token", _]) => {
            authz.require_bare(Bare::Acl, Access::Write)?;
            let body = json_body(req).await?;
            let existing = match rest.get(1) {
                Some(accessor) => Some(state.tokens.get(*accessor).ok_or_else(not_found)?),
                None => None,
            };
            let token = token_from(&state, &body, existing)?;
            answered(node, acls::write(node, AclOp::SetToken(token)).await?, true).await
        }
        (&Method::DELETE, ["token", accessor]) => {
            authz.require_bare(Bare::Acl, Access::Write)?;
            acls::write(node, AclOp::DeleteToken(accessor.to_string())).await?;
            Ok(json_ok(json!(true)))
        }
        (&Method::GET, ["policies"]) => {
            authz.require_bare(Bare::Acl, Access::Read)?;
            Ok(json_ok(json!(state.policies.values().collect::<Vec<_>>())))
        }
        (&Method::GET, ["policy", "name", name]) => {
            authz.require_bare(Bare::Acl, Access::Read)?;
            let p = state.policy_by_name(name).ok_or_else(not_found)?;
            Ok(json_ok(json!(p)))
        }
        (&Method::GET, ["policy", id]) => {
            authz.require_bare(Bare::Acl, Access::Read)?;
            Ok(json_ok(json!(
                state.policies.get(*id).ok_or_else(not_found)?
            )))
        }
        (&Method::PUT, ["policy"]) | (&Method::PUT, ["policy", _]) => {
            authz.require_bare(Bare::Acl, Access::Write)?;
            let body = json_body(req).await?;
            let policy = policy_from(&state, &body, rest.get(1).copied())?;
            answered(
                node,
                acls::write(node, AclOp::SetPolicy(policy)).await?,
                true,
            )
            .await
        }
        (&Method::DELETE, ["policy", id]) => {
            authz.require_bare(Bare::Acl, Access::Write)?;
            acls::write(node, AclOp::DeletePolicy(id.to_string())).await?;
            Ok(json_ok(json!(true)))
        }
        (&Method::GET, ["roles"]) => {
            authz.require_bare(Bare::Acl, Access::Read)?;
            let all: Vec<Value> = state.roles.values().map(|r| role_json(&state, r)).collect();
            Ok(json_ok(Value::Array(all)))
        }
        (&Method::GET, ["role", "name", name]) => {
            authz.require_bare(Bare::Acl, Access::Read)?;
            let r = state.role_by_name(name).ok_or_else(not_found)?;
            Ok(json_ok(role_json(&state, r)))
        }
        (&Method::GET, ["role", id]) => {
            authz.require_bare(Bare::Acl, Access::Read)?;
            let r = state.roles.get(*id).ok_or_else(not_found)?;
            Ok(json_ok(role_json(&state, r)))
        }
        (&Method::PUT, ["role"]) | (&Method::PUT, ["role", _]) => {
            authz.require_bare(Bare::Acl, Access::Write)?;
            let body = json_body(req).await?;
            let role = role_from(&state, &body, rest.get(1).copied())?;
            answered(node, acls::write(node, AclOp::SetRole(role)).await?, true).await
        }
        (&Method::DELETE, ["role", id]) => {
            authz.require_bare(Bare::Acl, Access::Write)?;
            acls::write(node, AclOp::DeleteRole(id.to_string())).await?;
            Ok(json_ok(json!(true)))
        }
        _ => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("no route {method} /v1/acl/{}", rest.join("/")),
        )),
    }
}

fn not_found() -> Refusal {
    Refusal::new(StatusCode::NOT_FOUND, "ACL not found")
}

fn link(id: &str) -> Link {
    Link {
        id: id.to_string(),
        name: String::new(),
    }
}

fn json_ok(v: Value) -> Reply {
    web::json(StatusCode::OK, &v)
}

/// The stored item as Consul answers it (after the write, with links named as this
/// server now knows them).
async fn answered(node: &Node, answer: AclAnswer, show_secret: bool) -> Result<Reply, Refusal> {
    let state = node.fsm.acl();
    Ok(json_ok(match answer {
        AclAnswer::Policy(p) => json!(p),
        AclAnswer::Role(r) => role_json(&state, &r),
        AclAnswer::Token(t) => token_json(&state, &t, show_secret),
        AclAnswer::Done => json!(true),
    }))
}

fn token_json(state: &AclState, t: &Token, show_secret: bool) -> Value {
    let mut v = json!({
        "AccessorID": t.accessor_id,
        "SecretID": if show_secret { t.secret_id.as_str() } else { "<hidden>" },
        "Description": t.description,
        "Policies": state.named_policies(&t.policies),
        "Roles": state.named_roles(&t.roles),
        "Local": t.local,
        "CreateTime": t.create_time,
        "CreateIndex": t.create_index,
        "ModifyIndex": t.modify_index,
    });
    if let (Some(e), Some(o)) = (&t.expiration_time, v.as_object_mut()) {
        o.insert("ExpirationTime".into(), json!(e));
    }
    v
}

fn role_json(state: &AclState, r: &Role) -> Value {
    json!({
        "ID": r.id,
        "Name": r.name,
        "Description": r.description,
        "Policies": state.named_policies(&r.policies),
        "CreateIndex": r.create_index,
        "ModifyIndex": r.modify_index,
    })
}

async fn json_body(req: Request<Incoming>) -> Result<Value, Refusal> {
    let body = web::body(req, web::MAX_BODY).await?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| Refusal::bad_request(format!("Failed to decode request body: {e}")))?;
    if !v.is_object() {
        return Err(Refusal::bad_request(
            "Failed to decode request body: not a JSON object",
        ));
    }
    Ok(v)
}

/// A field, its name matched case-insensitively (an exact match first), as Go's JSON
/// decoding matches Consul's; `null` is absent.
fn field<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    let o = body.as_object()?;
    o.get(name)
        .or_else(|| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

/// A string field; `null` and absent are `None` (Go's zero value).
fn text(body: &Value, name: &str) -> Option<String> {
    field(body, name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `[{ID}|{Name}]` links, resolved to IDs with `find` (a name to its ID).
fn links(
    body: &Value,
    list: &str,
    what: &str,
    find: impl Fn(&str) -> Option<String>,
    exists: impl Fn(&str) -> bool,
) -> Result<Vec<Link>, Refusal> {
    let mut out = Vec::new();
    for item in field(body, list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = match (text(item, "ID"), text(item, "Name")) {
            (Some(id), _) if exists(&id) => id,
            (Some(id), _) => {
                return Err(Refusal::bad_request(format!("{what} not found: {id}")));
            }
            (None, Some(name)) => find(&name)
                .ok_or_else(|| Refusal::bad_request(format!("cannot find {what} {name}")))?,
            (None, None) => {
                return Err(Refusal::bad_request(format!(
                    "{list}: each link needs an ID or a Name"
                )));
            }
        };
        if !out.iter().any(|l: &Link| l.id == id) {
            out.push(link(&id));
        }
    }
    Ok(out)
}

fn token_from(state: &AclState, body: &Value, existing: Option<&Token>) -> Result<Token, Refusal> {
    let mut token = match existing {
        Some(t) => t.clone(),
        None => Token {
            accessor_id: text(body, "AccessorID").map_or_else(acls::new_id, Ok)?,
            secret_id: text(body, "SecretID").map_or_else(acls::new_id, Ok)?,
            create_time: acls::now_text(),
            ..Token::default()
        },
    };
    if let Some(secret) = text(body, "SecretID")
        && secret != token.secret_id
    {
        return Err(Refusal::bad_request(
            "Changing a token's SecretID is not permitted",
        ));
    }
    token.description = text(body, "Description").unwrap_or_default();
    token.local = body
        .get("Local")
        .and_then(Value::as_bool)
        .unwrap_or(token.local);
    token.policies = links(
        body,
        "Policies",
        "policy",
        |n| state.policy_by_name(n).map(|p| p.id.clone()),
        |id| state.policies.contains_key(id),
    )?;
    token.roles = links(
        body,
        "Roles",
        "role",
        |n| state.role_by_name(n).map(|r| r.id.clone()),
        |id| state.roles.contains_key(id),
    )?;
    if let Some(ttl) = text(body, "ExpirationTTL") {
        let d = crate::duration::parse(&ttl).ok_or_else(|| {
            Refusal::bad_request(format!("ExpirationTTL: {ttl:?} is not a duration"))
        })?;
        let at = crate::clock::now_ms() + d.as_millis() as u64;
        token.expires_ms = Some(at);
        token.expiration_time = Some(crate::logging::timestamp(std::time::Duration::from_millis(
            at,
        )));
    } else if let Some(time) = text(body, "ExpirationTime") {
        let at = humantime::parse_rfc3339_weak(&time).map_err(|e| {
            Refusal::bad_request(format!(
                "ExpirationTime: {time:?} is not an RFC 3339 time: {e}"
            ))
        })?;
        let ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        token.expires_ms = Some(ms);
        token.expiration_time = Some(time);
    }
    Ok(token)
}

/// Consul's policy and role names: letters, digits, `-` and `_`, at most 128.
fn check_name(what: &str, name: &str) -> Result<(), Refusal> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Refusal::bad_request(format!(
            "Invalid {what}: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"
        )))
    }
}

fn policy_from(state: &AclState, body: &Value, id: Option<&str>) -> Result<Policy, Refusal> {
    let name = text(body, "Name").unwrap_or_default();
    check_name("Policy", &name)?;
    let rules = text(body, "Rules").unwrap_or_default();
    Rules::parse(&rules).map_err(|e| Refusal::bad_request(format!("Invalid Policy: {e}")))?;
    let id = match id {
        Some(id) => {
            if id == MANAGEMENT_POLICY_ID {
                return Err(Refusal::bad_request(
                    "Changing the builtin global-management policy is not permitted",
                ));
            }
            state.policies.get(id).ok_or_else(not_found)?.id.clone()
        }
        None => acls::new_id()?,
    };
    let datacenters = field(body, "Datacenters")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Policy {
        id,
        name,
        description: text(body, "Description").unwrap_or_default(),
        rules,
        datacenters,
        create_index: 0,
        modify_index: 0,
    })
}

fn role_from(state: &AclState, body: &Value, id: Option<&str>) -> Result<Role, Refusal> {
    let name = text(body, "Name").unwrap_or_default();
    check_name("Role", &name)?;
    let id = match id {
        Some(id) => state.roles.get(id).ok_or_else(not_found)?.id.clone(),
        None => acls::new_id()?,
    };
    Ok(Role {
        id,
        name,
        description: text(body, "Description").unwrap_or_default(),
        policies: links(
            body,
            "Policies",
            "policy",
            |n| state.policy_by_name(n).map(|p| p.id.clone()),
            |id| state.policies.contains_key(id),
        )?,
        create_index: 0,
        modify_index: 0,
    })
}
