//! Consul's catalog as an fsmhost plugin: nodes, the services they run, and the health
//! checks on both (`agent/consul/state/catalog.go`, `catalog_schema.go`).
//!
//! Tables and indexes:
//! - `nodes`: [`Node`]; `id` the node name (case-insensitive, as Consul's), `uuid` its ID
//!   (unique, allow-missing), `meta` every `key\0value` pair of its metadata (multi-valued).
//! - `services`: [`Service`]; `id` node + service ID, `node`, `service` the service name
//!   (case-insensitive), `kind`.
//! - `checks`: [`Check`]; `id` node + check ID, `node`, `service` the service name
//!   (allow-missing: node checks have none), `status`.
//! - `sessions`: [`Session`] (declared in `fsmhost-schema-sessions`, which the kv plugin
//!   reads); `id`, `node`.
//! - `session_checks`: [`SessionCheck`], which sessions hang on which check; `id`,
//!   `node_check` (node + check ID), `session`.
//! - `session_ttls`: [`SessionTtl`], the TTL timer of each session that has one (its TTL
//!   and last renewal); `id`, `deadline` (renewal + 2×TTL, over every tenancy).
//! - `check_ttls`: [`CheckTtl`], the TTL timer of each agent TTL check (its TTL, last
//!   report, whether it expired); `id` (node + check ID, as `checks.id`), `deadline`
//!   (report + TTL, over every tenancy; none once expired).
//!
//! Commands, each a [`Command`](fsmhost_guest::Command) handle: [`REGISTER`] (a node,
//! optionally a service and checks: Consul's `RegisterRequest`), [`DEREGISTER`] (a node with
//! everything on it, one service with its checks, or one check), [`SESSION_CREATE`],
//! [`SESSION_DESTROY`] (every session that ends, destroyed, expired or invalidated with a
//! check or its node, sends [`RELEASE_SESSION`] to the kv plugin), [`SESSION_RENEW`],
//! [`SESSION_EXPIRE`]; the agent's (module `agent`): [`AGENT_SERVICE_REGISTER`],
//! [`AGENT_SERVICE_DEREGISTER`], [`AGENT_SERVICE_MAINTENANCE`], [`AGENT_CHECK_REGISTER`],
//! [`AGENT_CHECK_DEREGISTER`], [`AGENT_CHECK_UPDATE`] (a TTL check's report) and
//! [`CHECK_TTL_EXPIRE`]. Queries, each a
//! [`Query`](fsmhost_guest::Query) handle: `nodes` ([`NODES_QUERY`]), `services`
//! ([`SERVICES_QUERY`]; the tables own the names `NODES` and `SERVICES`), [`SERVICE_NODES`],
//! [`NODE_SERVICES`], [`NODE_CHECKS`], [`SERVICE_CHECKS`], [`CHECKS_IN_STATE`],
//! [`SERVICE_HEALTH`], [`MESH_INSTANCES`] (always empty), [`USAGE`], [`SESSION_GET`],
//! [`NODE_SESSIONS`], [`SESSION_LIST`], [`AGENT_STATE`].
//!
//! Record field names are Consul's, so the HTTP module renders records as they are stored.
//!
//! Leader timer ([`tick`]): the raft servers in the catalog (module `reconcile`, Consul's
//! leader reconcile), session TTLs (module `ttl`, Consul's `session_ttl.go`) and TTL checks
//! (module `check_ttl`, Consul's `CheckTTL`).
//!
//! HTTP (module [`http`]): Consul's `/v1/catalog/*`, `/v1/health/*` and
//! `/v1/operator/usage`; module [`session_http`]: `/v1/session/*`; modules [`agent_http`]
//! and [`agent_read`]: the agent's services and checks (`/v1/agent/service/*`,
//! `/v1/agent/check/*`, `/v1/agent/services`, `/v1/agent/checks`,
//! `/v1/agent/health/service/*`) on the serving server's own node, as Consul's
//! anti-entropy would put them there (fsmhost runs no client agents and no probes: TTL
//! checks only).

use fsmhost_guest::http::Route;
use fsmhost_guest::{Edition, Error, Plugin, Proposal, TickCtx, Txn};

mod agent;
pub mod agent_http;
pub mod agent_read;
mod api;
mod check_ttl;
pub mod http;
mod queries;
mod reconcile;
mod register;
mod schema;
pub mod session_http;
mod sessions;
mod ttl;
mod wire;

pub use agent::*;
pub use api::*;
pub use check_ttl::{
    CHECK_TTL_EXPIRE, CHECK_TTLS, CHECK_TTLS_DEADLINE, CHECK_TTLS_ID, CHECK_TTLS_NAMESPACE,
    CheckTtl, CheckTtlExpire, MAX_CHECK_EXPIRES_PER_TICK, MAX_CHECK_TTL_ROWS_PER_TICK, TTL_EXPIRED,
    expired_output,
};
pub use fsmhost_schema_sessions::{
    RELEASE_SESSION, ReleaseSession, SESSIONS, SESSIONS_ID, SESSIONS_NODE, ServiceCheck, Session,
};
pub use reconcile::{
    CONSUL_SERVICE, RAFT_VERSION, SERF_ALIVE_OUTPUT, SERF_CHECK_NAME, SERF_FAILED_OUTPUT, node_uuid,
};
pub use schema::*;
pub use sessions::{
    DEFAULT_LOCK_DELAY_NS, MAX_LOCK_DELAY_NS, SERF_CHECK, SESSION_TTL_MAX_NS, SESSION_TTL_MIN_NS,
    parse_duration,
};
pub use ttl::{
    MAX_EXPIRES_PER_TICK, MAX_TTL_ROWS_PER_TICK, SESSION_TTL_MULTIPLIER, SESSION_TTLS,
    SESSION_TTLS_DEADLINE, SESSION_TTLS_ID, SESSION_TTLS_NAMESPACE, SessionTtl,
};

/// The edition this build is (the `enterprise` cargo feature): the enterprise edition puts
/// nodes in a partition and services and checks in a partition and a namespace, and reads
/// `?ns=` and `?partition=`.
pub const EDITION: Edition = if cfg!(feature = "enterprise") {
    Edition::Enterprise
} else {
    Edition::Oss
};

/// The leader timer: the servers' registrations that differ from what is stored, then the
/// sessions whose TTL ran out, then the TTL checks whose TTL ran out.
pub fn tick(tx: &dyn Txn, ctx: &TickCtx) -> Result<Vec<Proposal>, Error> {
    let mut out = reconcile::servers(tx, ctx)?;
    out.extend(ttl::expired(tx, ctx)?);
    out.extend(check_ttl::expired(tx, ctx)?);
    Ok(out)
}

/// The plugin.
pub fn plugin() -> Plugin {
    Plugin::new("catalog", env!("CARGO_PKG_VERSION"), EDITION.name())
        .table(&NODES)
        .table(&SERVICES)
        .table(&CHECKS)
        .table(&SESSIONS)
        .table(&SESSION_CHECKS)
        .table(&SESSION_TTLS)
        .table(&CHECK_TTLS)
        .command(&REGISTER)
        .command(&DEREGISTER)
        .command(&SESSION_CREATE)
        .command(&SESSION_DESTROY)
        .command(&SESSION_RENEW)
        .command(&SESSION_EXPIRE)
        .command(&AGENT_SERVICE_REGISTER)
        .command(&AGENT_SERVICE_DEREGISTER)
        .command(&AGENT_SERVICE_MAINTENANCE)
        .command(&AGENT_CHECK_REGISTER)
        .command(&AGENT_CHECK_DEREGISTER)
        .command(&AGENT_CHECK_UPDATE)
        .command(&CHECK_TTL_EXPIRE)
        .sends(&RELEASE_SESSION)
        .query(&NODES_QUERY)
        .query(&SERVICES_QUERY)
        .query(&SERVICE_NODES)
        .query(&SERVICE_HEALTH)
        .query(&NODE_SERVICES)
        .query(&NODE_CHECKS)
        .query(&SERVICE_CHECKS)
        .query(&CHECKS_IN_STATE)
        .query(&MESH_INSTANCES)
        .query(&USAGE)
        .query(&SESSION_GET)
        .query(&NODE_SESSIONS)
        .query(&SESSION_LIST)
        .query(&AGENT_STATE)
        .tick(tick)
        .route(
            Route::put("/v1/catalog/register"),
            http::route_write,
            http::render_write,
        )
        .route(
            Route::put("/v1/catalog/deregister"),
            http::route_write,
            http::render_write,
        )
        .route(
            Route::get(http::CATALOG).prefix(),
            http::route_catalog,
            http::render_read,
        )
        .route(
            Route::get(http::HEALTH).prefix(),
            http::route_health,
            http::render_read,
        )
        .route(
            Route::get("/v1/operator/usage"),
            http::route_usage,
            http::render_read,
        )
        .route(
            Route::put("/v1/session/create"),
            session_http::route_create,
            session_http::render_create,
        )
        .route(
            Route::put(session_http::DESTROY).prefix(),
            session_http::route_destroy,
            http::render_write,
        )
        .route(
            Route::put(session_http::RENEW).prefix(),
            session_http::route_renew,
            session_http::render_read,
        )
        .route(
            Route::get(session_http::SESSION).prefix(),
            session_http::route_read,
            session_http::render_read,
        )
        .route(
            Route::put("/v1/agent/service/register"),
            agent_http::route_service_register,
            agent_http::render_write,
        )
        .route(
            Route::put(agent_http::SERVICE_DEREGISTER).prefix(),
            agent_http::route_service_deregister,
            agent_http::render_write,
        )
        .route(
            Route::put(agent_http::SERVICE_MAINTENANCE).prefix(),
            agent_http::route_service_maintenance,
            agent_http::render_write,
        )
        .route(
            Route::put("/v1/agent/check/register"),
            agent_http::route_check_register,
            agent_http::render_write,
        )
        .route(
            Route::put(agent_http::CHECK_DEREGISTER).prefix(),
            agent_http::route_check_deregister,
            agent_http::render_write,
        )
        .route(
            Route::put(agent_http::CHECK_PASS).prefix(),
            agent_http::route_check_update,
            agent_http::render_write,
        )
        .route(
            Route::put(agent_http::CHECK_WARN).prefix(),
            agent_http::route_check_update,
            agent_http::render_write,
        )
        .route(
            Route::put(agent_http::CHECK_FAIL).prefix(),
            agent_http::route_check_update,
            agent_http::render_write,
        )
        .route(
            Route::put(agent_http::CHECK_UPDATE).prefix(),
            agent_http::route_check_update,
            agent_http::render_write,
        )
        .route(
            Route::get("/v1/agent/services"),
            agent_read::route_read,
            agent_read::render_read,
        )
        .route(
            Route::get("/v1/agent/checks"),
            agent_read::route_read,
            agent_read::render_read,
        )
        .route(
            Route::get(agent_http::SERVICE).prefix(),
            agent_read::route_read,
            agent_read::render_read,
        )
        .route(
            Route::get(agent_http::HEALTH_SERVICE).prefix(),
            agent_read::route_read,
            agent_read::render_read,
        )
}

fsmhost_guest::export_plugin!(plugin);

#[cfg(test)]
mod agent_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tick_tests;
