//! Conversions between the WIT contract's types (as `bindgen!` generates them) and the
//! host's own, in one place: a plugin's description, its errors both ways, index keys, and
//! the HTTP pair.
//!
//! Owns: nothing but the mapping; no other module of the host names a `wit::` type.

use super::routes::{
    AclAccess, AclNeed, AclResource, HttpAction, HttpPlan, HttpRequest, HttpResponse, HttpRoute,
};
use super::{Description, ErrorKind, Migration, wit};
use crate::state::{IndexKeys, IndexSchema, TableSchema};

impl From<wit::PluginDescription> for Description {
    /// The description a plugin gave.
    fn from(d: wit::PluginDescription) -> Self {
        Description {
            name: d.name,
            version: d.version,
            edition: d.edition,
            tables: d
                .tables
                .into_iter()
                .map(|t| TableSchema {
                    name: t.name,
                    indexes: t
                        .indexes
                        .into_iter()
                        .map(|i| IndexSchema {
                            name: i.name,
                            unique: i.unique,
                            multi: i.multi,
                            allow_missing: i.allow_missing,
                            prefix: i.prefix,
                        })
                        .collect(),
                    layout: t.layout,
                })
                .collect(),
            commands: d.commands,
            queries: d.queries,
            reads: d
                .reads
                .into_iter()
                .map(|r| fsmhost_guest::TableRead {
                    table: r.table,
                    layout: r.layout,
                })
                .collect(),
            sends: d
                .sends
                .into_iter()
                .map(|t| fsmhost_guest::MessageTarget {
                    plugin: t.plugin,
                    command: t.command,
                })
                .collect(),
            routes: d
                .routes
                .into_iter()
                .map(|r| HttpRoute {
                    method: r.method.into(),
                    path: r.path.into(),
                    prefix: r.prefix,
                })
                .collect(),
            migrations: d
                .migrations
                .into_iter()
                .map(|m| Migration {
                    table: m.table,
                    from_layout: m.from_layout,
                })
                .collect(),
        }
    }
}

impl From<wit::ErrorKind> for ErrorKind {
    fn from(kind: wit::ErrorKind) -> Self {
        match kind {
            wit::ErrorKind::BadRequest => ErrorKind::BadRequest,
            wit::ErrorKind::NotFound => ErrorKind::NotFound,
            wit::ErrorKind::Conflict => ErrorKind::Conflict,
            wit::ErrorKind::State => ErrorKind::State,
            wit::ErrorKind::Internal => ErrorKind::Internal,
        }
    }
}

impl From<ErrorKind> for wit::ErrorKind {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::BadRequest => wit::ErrorKind::BadRequest,
            ErrorKind::NotFound => wit::ErrorKind::NotFound,
            ErrorKind::Conflict => wit::ErrorKind::Conflict,
            ErrorKind::State => wit::ErrorKind::State,
            ErrorKind::Internal => wit::ErrorKind::Internal,
        }
    }
}

impl From<wit::IndexKeys> for IndexKeys {
    fn from(k: wit::IndexKeys) -> Self {
        IndexKeys {
            index: k.index,
            keys: k.keys,
        }
    }
}

impl From<&HttpRequest> for wit::HttpRequest {
    fn from(req: &HttpRequest) -> Self {
        wit::HttpRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            body: req.body.clone(),
            node: req.node.clone(),
        }
    }
}

impl From<wit::HttpResponse> for HttpResponse {
    fn from(r: wit::HttpResponse) -> Self {
        HttpResponse {
            status: r.status,
            content_type: r.content_type,
            body: r.body,
            headers: r.headers,
        }
    }
}

impl From<wit::HttpPlan> for HttpPlan {
    fn from(plan: wit::HttpPlan) -> Self {
        let action = match plan.action {
            wit::HttpAction::Apply(c) => HttpAction::Apply {
                command: c.name,
                payload: c.input,
            },
            wit::HttpAction::Query(c) => HttpAction::Query {
                name: c.name,
                args: c.input,
            },
            wit::HttpAction::Respond(r) => HttpAction::Respond(r.into()),
        };
        HttpPlan {
            action,
            context: plan.context,
            needs: plan
                .needs
                .map(|needs| needs.into_iter().map(AclNeed::from).collect()),
        }
    }
}

impl From<wit::AclResource> for AclResource {
    fn from(r: wit::AclResource) -> Self {
        match r {
            wit::AclResource::Acl => AclResource::Acl,
            wit::AclResource::Agent => AclResource::Agent,
            wit::AclResource::Event => AclResource::Event,
            wit::AclResource::Key => AclResource::Key,
            wit::AclResource::Keyring => AclResource::Keyring,
            wit::AclResource::Mesh => AclResource::Mesh,
            wit::AclResource::Node => AclResource::Node,
            wit::AclResource::Operator => AclResource::Operator,
            wit::AclResource::Peering => AclResource::Peering,
            wit::AclResource::Query => AclResource::Query,
            wit::AclResource::Service => AclResource::Service,
            wit::AclResource::Session => AclResource::Session,
        }
    }
}

impl From<wit::AclAccess> for AclAccess {
    fn from(a: wit::AclAccess) -> Self {
        match a {
            wit::AclAccess::Read => AclAccess::Read,
            wit::AclAccess::List => AclAccess::List,
            wit::AclAccess::Write => AclAccess::Write,
        }
    }
}

impl From<wit::AclNeed> for AclNeed {
    fn from(n: wit::AclNeed) -> Self {
        AclNeed {
            resource: n.resource.into(),
            segment: n.segment,
            access: n.access.into(),
            prefix: n.prefix,
            tenancy: fsmhost_guest::Tenancy {
                partition: n.partition,
                namespace: n.namespace,
            },
        }
    }
}

impl From<&fsmhost_guest::TickCtx> for wit::TickContext {
    fn from(ctx: &fsmhost_guest::TickCtx) -> Self {
        wit::TickContext {
            now_ms: ctx.now_ms,
            leader_since_ms: ctx.leader_since_ms,
            datacenter: ctx.datacenter.clone(),
            servers: ctx
                .servers
                .iter()
                .map(|s| wit::ServerInfo {
                    id: s.id,
                    name: s.name.clone(),
                    address: s.address.clone(),
                    status: s.status.clone(),
                    voter: s.voter,
                    version: s.version.clone(),
                })
                .collect(),
            tombstone_ttl_ms: ctx.tombstone_ttl_ms,
        }
    }
}
