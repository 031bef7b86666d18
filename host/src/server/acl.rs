//! ACLs on a running server: changes go through the leader as log entries, the leader
//! makes the configured initial management token, and every HTTP request's token is
//! resolved to what it may do ([`Authz`]).
//!
//! Owns: where a request's token comes from (`X-Consul-Token`, `Authorization: Bearer`,
//! `?token=`; else `acl.tokens.default`, else anonymous), the cache of resolved tokens
//! (dropped whenever the ACL state changes), and Consul's refusal texts. A secret is never
//! logged or echoed: refusals name the token's accessor.

use hyper::Request;
use hyper::StatusCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::web::Refusal;
use super::{Node, ops};
use crate::acl::store::{
    ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET, AclAnswer, AclOp, AclState, MANAGEMENT_POLICY_ID, Token,
};
use crate::acl::{Access, Authorizer, Bare, Resource, Rules};
use crate::fsm::FailureKind;
use crate::protocol::{OpError, Rpc};
use crate::raft::{Request as Entry, Response};

/// Applies an ACL change through the leader, from any server (the caller checked the
/// token that asked for it).
pub async fn write(node: &Node, op: AclOp) -> Result<AclAnswer, OpError> {
    ops::through_leader(node, Rpc::AclWrite.path(), &op, ops::HOLD, || {
        write_local(node, op.clone())
    })
    .await
}

/// Applies an ACL change on this server, which must lead.
pub async fn write_local(node: &Node, op: AclOp) -> Result<AclAnswer, OpError> {
    match ops::write_host_entry(node, Entry::Acl(op)).await? {
        Response::Acl(Ok(answer)) => Ok(answer),
        Response::Acl(Err(message)) => Err(OpError::failed(refusal_kind(&message), message)),
        other => Err(OpError::failed(
            FailureKind::Internal,
            format!("the ACL entry returned {other:?}"),
        )),
    }
}

/// The kind of a refused ACL change, from Consul's message.
fn refusal_kind(message: &str) -> FailureKind {
    if message.starts_with("Cannot find") || message.starts_with("cannot find") {
        FailureKind::NotFound
    } else if message.contains("no longer allowed") {
        FailureKind::Conflict
    } else {
        FailureKind::BadRequest
    }
}

/// While this server leads, makes sure the configured `acl.tokens.initial_management`
/// token exists (as Consul's leader does on taking office); checks every second.
pub async fn keep_initial_management(node: Arc<Node>) {
    let Some(secret) = node.config.acl.initial_management.clone() else {
        return;
    };
    if !node.config.acl.enabled {
        return;
    }
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !node.is_leader() || node.fsm.acl().token_by_secret(&secret).is_some() {
            continue;
        }
        let accessor_id = match new_id() {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(target: "agent.server.acl",
                    "creating the initial management token: {}", e.message);
                continue;
            }
        };
        let token = Token {
            accessor_id,
            secret_id: secret.clone(),
            description: "Initial Management Token".into(),
            policies: vec![crate::acl::store::Link {
                id: MANAGEMENT_POLICY_ID.into(),
                name: String::new(),
            }],
            create_time: now_text(),
            ..Token::default()
        };
        match write_local(&node, AclOp::InitialManagement(token)).await {
            Ok(_) => {
                tracing::info!(target: "agent.server.acl", "created the initial management token")
            }
            Err(e) => tracing::warn!(target: "agent.server.acl",
                "creating the initial management token: {e}"),
        }
    }
}

/// The wall clock as RFC 3339 text (a token's `CreateTime`).
pub fn now_text() -> String {
    crate::logging::timestamp(Duration::from_millis(crate::clock::now_ms()))
}

/// A fresh random UUID (version 4), as Consul's IDs and secrets are. Without the
/// system's randomness there is none: a secret must never be guessable, so the request
/// fails (500) rather than fall back on anything predictable.
pub fn new_id() -> Result<String, Refusal> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| {
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("no system randomness for a new ID or secret: {e}"),
        )
    })?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// The secret a request presents, if any: `X-Consul-Token`, then `Authorization:
/// Bearer`, then `?token=` (Consul's order).
pub fn presented_secret<B>(req: &Request<B>) -> Option<String> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    header("X-Consul-Token")
        .or_else(|| {
            header("Authorization").and_then(|v| {
                v.strip_prefix("Bearer ")
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            })
        })
        .or_else(|| {
            req.uri().query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v.into_owned())
                    .filter(|v| !v.is_empty())
            })
        })
}

/// Where a check applies: an enterprise edition's admin partition and namespace (empty:
/// `default`, all of OSS).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The partition.
    pub partition: &'a str,
    /// The namespace.
    pub namespace: &'a str,
}

impl Scope<'static> {
    /// The default partition's default namespace.
    pub const DEFAULT: Scope<'static> = Scope {
        partition: "",
        namespace: "",
    };
}

/// What one request may do: its token's accessor (for messages) and its authorizer.
pub struct Authz {
    accessor: Option<String>,
    anonymous: bool,
    authorizer: Arc<Authorizer>,
}

impl Authz {
    /// Everything allowed (ACLs off).
    pub fn allow_all() -> Arc<Authz> {
        Arc::new(Authz {
            accessor: None,
            anonymous: false,
            authorizer: Arc::new(Authorizer::management()),
        })
    }

    /// The authorizer.
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// The accessor of the token, if ACLs are on and it has one.
    pub fn accessor(&self) -> Option<&str> {
        self.accessor.as_deref()
    }

    /// Whether `access` on `segment` of `resource` is allowed (default partition and
    /// namespace).
    pub fn allows(&self, resource: Resource, segment: &str, access: Access) -> bool {
        self.allows_in(&Scope::DEFAULT, resource, segment, access)
    }

    /// Whether `access` on `segment` of `resource` is allowed in `scope`.
    pub fn allows_in(
        &self,
        scope: &Scope,
        resource: Resource,
        segment: &str,
        access: Access,
    ) -> bool {
        self.authorizer
            .allows_in(scope.partition, scope.namespace, resource, segment, access)
    }

    /// `access` on `segment` of `resource`, or Consul's 403.
    pub fn require(
        &self,
        resource: Resource,
        segment: &str,
        access: Access,
    ) -> Result<(), Refusal> {
        self.require_in(&Scope::DEFAULT, resource, segment, access)
    }

    /// [`Authz::require`] in `scope`.
    pub fn require_in(
        &self,
        scope: &Scope,
        resource: Resource,
        segment: &str,
        access: Access,
    ) -> Result<(), Refusal> {
        if self.allows_in(scope, resource, segment, access) {
            return Ok(());
        }
        Err(self.denied(
            &format!("{}:{}", resource.name(), access.as_str()),
            Some(segment),
        ))
    }

    /// Consul's `KeyWritePrefix` on `prefix` (a recursive delete) in `scope`, or Consul's
    /// 403.
    pub fn require_key_write_prefix_in(&self, scope: &Scope, prefix: &str) -> Result<(), Refusal> {
        if self
            .authorizer
            .allows_key_write_prefix_in(scope.partition, scope.namespace, prefix)
        {
            return Ok(());
        }
        Err(self.denied("key:write", Some(prefix)))
    }

    /// `access` on `bare` (`operator`, `acl`, ...), or Consul's 403.
    pub fn require_bare(&self, bare: Bare, access: Access) -> Result<(), Refusal> {
        self.require_bare_in(&Scope::DEFAULT, bare, access)
    }

    /// [`Authz::require_bare`] in `scope`.
    pub fn require_bare_in(
        &self,
        scope: &Scope,
        bare: Bare,
        access: Access,
    ) -> Result<(), Refusal> {
        if self
            .authorizer
            .allows_bare_in(scope.partition, scope.namespace, bare, access)
        {
            return Ok(());
        }
        Err(self.denied(&format!("{}:{}", bare.name(), access.as_str()), None))
    }

    /// Consul's 403: `Permission denied: token with AccessorID '…' lacks permission
    /// 'key:read' on "foo"` (the anonymous token's variant says so).
    fn denied(&self, permission: &str, segment: Option<&str>) -> Refusal {
        let on = segment.map_or(String::new(), |s| format!(" on {s:?}"));
        let who = if self.anonymous {
            "anonymous token".to_string()
        } else {
            format!(
                "token with AccessorID '{}'",
                self.accessor.as_deref().unwrap_or("")
            )
        };
        let hint = if self.anonymous {
            ". The anonymous token is used implicitly when a request does not specify a token."
        } else {
            ""
        };
        Refusal::new(
            StatusCode::FORBIDDEN,
            format!("Permission denied: {who} lacks permission '{permission}'{on}{hint}"),
        )
    }
}

/// Resolved tokens by secret, valid for one ACL state (its `modify_index`).
#[derive(Default)]
pub struct Cache(Mutex<(u64, HashMap<String, Arc<Authz>>)>);

/// Most tokens kept resolved; past it the cache starts over (a flood of made-up
/// secrets cannot grow it without bound).
const CACHE_MAX: usize = 10_000;

/// Who a request is and what it may do. With ACLs off, everything is allowed. A secret
/// no token has, or an expired token's, is Consul's `403 ACL not found`.
pub fn resolve<B>(node: &Node, req: &Request<B>) -> Result<Arc<Authz>, Refusal> {
    let acl = &node.config.acl;
    if !acl.enabled {
        return Ok(Authz::allow_all());
    }
    let secret = presented_secret(req)
        .or_else(|| acl.default_token.clone())
        .unwrap_or_else(|| ANONYMOUS_SECRET.to_string());
    let state = node.fsm.acl();
    {
        let cache = node.acl_cache.0.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 == state.modify_index
            && let Some(hit) = cache.1.get(&secret)
        {
            return Ok(hit.clone());
        }
    }
    let authz = Arc::new(build(node, &state, &secret)?);
    let mut cache = node.acl_cache.0.lock().unwrap_or_else(|p| p.into_inner());
    if cache.0 != state.modify_index || cache.1.len() >= CACHE_MAX {
        *cache = (state.modify_index, HashMap::new());
    }
    cache.1.insert(secret, authz.clone());
    Ok(authz)
}

/// Resolves `secret` against `state` (not cached).
fn build(node: &Node, state: &AclState, secret: &str) -> Result<Authz, Refusal> {
    let acl = &node.config.acl;
    let default = if acl.default_allow {
        Access::Write
    } else {
        Access::Deny
    };
    if secret == ANONYMOUS_SECRET {
        let policies = state
            .tokens
            .get(ANONYMOUS_ACCESSOR)
            .map_or(Some(Vec::new()), |t| policy_rules(state, t));
        return Ok(Authz {
            accessor: Some(ANONYMOUS_ACCESSOR.into()),
            anonymous: true,
            authorizer: Arc::new(authorizer(policies, default)),
        });
    }
    let token = match state.token_by_secret(secret) {
        Some(t) if !t.expired(crate::clock::now_ms()) => t,
        // The configured initial management secret works before its token replicates.
        _ if acl.initial_management.as_deref() == Some(secret) => {
            return Ok(Authz {
                accessor: None,
                anonymous: false,
                authorizer: Arc::new(Authorizer::management()),
            });
        }
        _ => return Err(Refusal::new(StatusCode::FORBIDDEN, "ACL not found")),
    };
    Ok(Authz {
        accessor: Some(token.accessor_id.clone()),
        anonymous: false,
        authorizer: Arc::new(authorizer(policy_rules(state, token), default)),
    })
}

/// The policies a token holds, directly and through its roles: `None` for management,
/// else their parsed rules (a stored policy whose rules no longer parse grants nothing).
fn policy_rules(state: &AclState, token: &Token) -> Option<Vec<Rules>> {
    let mut ids: Vec<&str> = token.policies.iter().map(|l| l.id.as_str()).collect();
    for role in token.roles.iter().filter_map(|l| state.roles.get(&l.id)) {
        ids.extend(role.policies.iter().map(|l| l.id.as_str()));
    }
    if ids.contains(&MANAGEMENT_POLICY_ID) {
        return None;
    }
    let mut rules = Vec::new();
    for policy in ids.iter().filter_map(|id| state.policies.get(*id)) {
        match Rules::parse(&policy.rules) {
            Ok(r) => rules.push(r),
            Err(e) => tracing::error!(target: "agent.server.acl",
                "policy {} ({}) has rules that do not parse, so it grants nothing: {e}",
                policy.name, policy.id),
        }
    }
    Some(rules)
}

fn authorizer(policies: Option<Vec<Rules>>, default: Access) -> Authorizer {
    match policies {
        None => Authorizer::management(),
        Some(rules) => Authorizer::new(&rules, default),
    }
}
