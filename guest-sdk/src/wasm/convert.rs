//! Conversions between the WIT contract's types (as `wit-bindgen` generates them) and the
//! SDK's own, in one place: state calls (ranges, keys, errors), a plugin's description,
//! errors both ways, migrated objects and the HTTP pair. The host's `plugin/convert.rs` is
//! the other side of the same contract.
//!
//! Owns: nothing but the mapping; no other module of the SDK names a `wit::` type's fields.

use super::bindings::fsmhost::plugin::types as wit;
use crate::acl::{Access, Need, Resource};
use crate::error::{Error, ErrorKind};
use crate::http::{Action, Plan, Request, Response};
use crate::plugin::{Ctx, Description};
use crate::schema::Migrated;
use crate::tick::{Proposal, ServerInfo, TickCtx};
use crate::txn::{Bound, IndexKeys, KeyRange, ScanBatch, StateError};

impl From<&Bound> for wit::Bound {
    fn from(b: &Bound) -> Self {
        match b {
            Bound::Unbounded => wit::Bound::Unbounded,
            Bound::Included(k) => wit::Bound::Included(k.clone()),
            Bound::Excluded(k) => wit::Bound::Excluded(k.clone()),
        }
    }
}

impl From<&KeyRange> for wit::KeyRange {
    fn from(r: &KeyRange) -> Self {
        match r {
            KeyRange::Exact(k) => wit::KeyRange::Exact(k.clone()),
            KeyRange::Prefix(k) => wit::KeyRange::Prefix(k.clone()),
            KeyRange::Between(s, e) => wit::KeyRange::Between((s.into(), e.into())),
        }
    }
}

impl From<wit::StateError> for StateError {
    fn from(e: wit::StateError) -> Self {
        match e {
            wit::StateError::UnknownTable(m) => StateError::UnknownTable(m),
            wit::StateError::UnknownIndex(m) => StateError::UnknownIndex(m),
            wit::StateError::NotOwner(m) => StateError::NotOwner(m),
            wit::StateError::UniqueViolation(m) => StateError::UniqueViolation(m),
            wit::StateError::BadKeys(m) => StateError::BadKeys(m),
            wit::StateError::ReadOnly(m) => StateError::ReadOnly(m),
            wit::StateError::BadCursor(m) => StateError::BadCursor(m),
            wit::StateError::NoPrefix(m) => StateError::NoPrefix(m),
            wit::StateError::NotDeclared(m) => StateError::NotDeclared(m),
        }
    }
}

impl From<wit::ScanBatch> for ScanBatch {
    fn from(b: wit::ScanBatch) -> Self {
        ScanBatch {
            objects: b.objects,
            cursor: b.cursor,
        }
    }
}

impl From<IndexKeys> for wit::IndexKeys {
    fn from(k: IndexKeys) -> Self {
        wit::IndexKeys {
            index: k.index,
            keys: k.keys,
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

impl From<Error> for wit::PluginError {
    fn from(e: Error) -> Self {
        wit::PluginError {
            kind: e.kind.into(),
            message: e.message,
        }
    }
}

impl From<wit::PluginError> for Error {
    fn from(e: wit::PluginError) -> Self {
        Error::new(e.kind.into(), e.message)
    }
}

impl From<wit::TickContext> for TickCtx {
    fn from(ctx: wit::TickContext) -> Self {
        TickCtx {
            now_ms: ctx.now_ms,
            leader_since_ms: ctx.leader_since_ms,
            datacenter: ctx.datacenter,
            servers: ctx
                .servers
                .into_iter()
                .map(|s| ServerInfo {
                    id: s.id,
                    name: s.name,
                    address: s.address,
                    status: s.status,
                    voter: s.voter,
                    version: s.version,
                })
                .collect(),
            tombstone_ttl_ms: ctx.tombstone_ttl_ms,
        }
    }
}

impl From<Proposal> for wit::Call {
    fn from(p: Proposal) -> Self {
        wit::Call {
            name: p.command,
            input: p.payload,
        }
    }
}

impl From<wit::ApplyContext> for Ctx {
    fn from(ctx: wit::ApplyContext) -> Self {
        Ctx {
            index: ctx.index,
            timestamp_ms: ctx.timestamp_ms,
        }
    }
}

impl From<Description> for wit::PluginDescription {
    fn from(d: Description) -> Self {
        wit::PluginDescription {
            name: d.name,
            version: d.version,
            edition: d.edition,
            tables: d
                .tables
                .into_iter()
                .map(|t| wit::TableSchema {
                    name: t.name,
                    indexes: t
                        .indexes
                        .into_iter()
                        .map(|i| wit::IndexSchema {
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
            routes: d
                .routes
                .into_iter()
                .map(|r| wit::HttpRoute {
                    method: r.method.into_owned(),
                    path: r.path.into_owned(),
                    prefix: r.prefix,
                })
                .collect(),
            migrations: d
                .migrations
                .into_iter()
                .map(|m| wit::Migration {
                    table: m.table,
                    from_layout: m.from_layout,
                })
                .collect(),
            reads: d
                .reads
                .into_iter()
                .map(|r| wit::TableRead {
                    table: r.table,
                    layout: r.layout,
                })
                .collect(),
            sends: d
                .sends
                .into_iter()
                .map(|t| wit::MessageTarget {
                    plugin: t.plugin,
                    command: t.command,
                })
                .collect(),
        }
    }
}

impl From<Migrated> for wit::MigratedObject {
    fn from(m: Migrated) -> Self {
        wit::MigratedObject {
            table: m.table,
            object: m.object,
        }
    }
}

impl From<wit::HttpRequest> for Request {
    fn from(req: wit::HttpRequest) -> Self {
        Request {
            method: req.method,
            path: req.path,
            query: req.query,
            body: req.body,
            node: req.node,
        }
    }
}

impl From<Response> for wit::HttpResponse {
    fn from(r: Response) -> Self {
        wit::HttpResponse {
            status: r.status,
            content_type: r.content_type,
            body: r.body,
            headers: r.headers,
        }
    }
}

impl From<Plan> for wit::HttpPlan {
    fn from(plan: Plan) -> Self {
        let action = match plan.action {
            Action::Apply { command, payload } => wit::HttpAction::Apply(wit::Call {
                name: command,
                input: payload,
            }),
            Action::Query { name, args } => wit::HttpAction::Query(wit::Call { name, input: args }),
            Action::Respond(r) => wit::HttpAction::Respond(r.into()),
        };
        wit::HttpPlan {
            action,
            context: plan.context,
            needs: plan
                .needs
                .map(|needs| needs.into_iter().map(wit::AclNeed::from).collect()),
        }
    }
}

impl From<Resource> for wit::AclResource {
    fn from(r: Resource) -> Self {
        match r {
            Resource::Acl => wit::AclResource::Acl,
            Resource::Agent => wit::AclResource::Agent,
            Resource::Event => wit::AclResource::Event,
            Resource::Key => wit::AclResource::Key,
            Resource::Keyring => wit::AclResource::Keyring,
            Resource::Mesh => wit::AclResource::Mesh,
            Resource::Node => wit::AclResource::Node,
            Resource::Operator => wit::AclResource::Operator,
            Resource::Peering => wit::AclResource::Peering,
            Resource::Query => wit::AclResource::Query,
            Resource::Service => wit::AclResource::Service,
            Resource::Session => wit::AclResource::Session,
        }
    }
}

impl From<Access> for wit::AclAccess {
    fn from(a: Access) -> Self {
        match a {
            Access::Read => wit::AclAccess::Read,
            Access::List => wit::AclAccess::List,
            Access::Write => wit::AclAccess::Write,
        }
    }
}

impl From<Need> for wit::AclNeed {
    fn from(n: Need) -> Self {
        wit::AclNeed {
            resource: n.resource.into(),
            segment: n.segment,
            access: n.access.into(),
            prefix: n.prefix,
            partition: n.tenancy.partition,
            namespace: n.tenancy.namespace,
        }
    }
}
