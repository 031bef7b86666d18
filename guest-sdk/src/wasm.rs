//! The wasm side: bindings generated from `wit/plugin.wit`, the [`Txn`] backed by the host's
//! `state` import, and the glue [`crate::export_plugin!`] expands to.
//!
//! The bindings compile on every target (on a native target the imports are stubs that are
//! never called, because native code uses [`crate::MemStore`]); the exports are only emitted
//! for `wasm32`, so several plugins can be linked into one native test binary.

#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "fsmhost_guest::__rt::bindings",
        runtime_path: "fsmhost_guest::__rt::wit_bindgen::rt",
    });
}

use bindings::exports::fsmhost::plugin::guest as wit_guest;
use bindings::fsmhost::plugin::{log as wit_log, state as wit_state, types as wit};

use crate::error::{Error, ErrorKind};
use crate::plugin::{Ctx, Plugin};
use crate::txn::{Bound, IndexKeys, KeyRange, ScanBatch, StateError, Txn};

pub use wit_bindgen;
pub use wit_guest::Guest;

/// The transaction of the current `apply` or `query`, reached through the host's imports.
pub struct HostTxn;

fn bound_to_wit(b: &Bound) -> wit::Bound {
    match b {
        Bound::Unbounded => wit::Bound::Unbounded,
        Bound::Included(k) => wit::Bound::Included(k.clone()),
        Bound::Excluded(k) => wit::Bound::Excluded(k.clone()),
    }
}

fn range_to_wit(r: &KeyRange) -> wit::KeyRange {
    match r {
        KeyRange::Exact(k) => wit::KeyRange::Exact(k.clone()),
        KeyRange::Prefix(k) => wit::KeyRange::Prefix(k.clone()),
        KeyRange::Between(s, e) => wit::KeyRange::Between((bound_to_wit(s), bound_to_wit(e))),
    }
}

fn state_error(e: wit::StateError) -> StateError {
    match e {
        wit::StateError::UnknownTable(m) => StateError::UnknownTable(m),
        wit::StateError::UnknownIndex(m) => StateError::UnknownIndex(m),
        wit::StateError::NotOwner(m) => StateError::NotOwner(m),
        wit::StateError::UniqueViolation(m) => StateError::UniqueViolation(m),
        wit::StateError::BadKeys(m) => StateError::BadKeys(m),
        wit::StateError::ReadOnly(m) => StateError::ReadOnly(m),
        wit::StateError::BadCursor(m) => StateError::BadCursor(m),
        wit::StateError::NoPrefix(m) => StateError::NoPrefix(m),
    }
}

fn keys_to_wit(keys: Vec<IndexKeys>) -> Vec<wit::IndexKeys> {
    keys.into_iter()
        .map(|k| wit::IndexKeys {
            index: k.index,
            keys: k.keys,
        })
        .collect()
}

impl Txn for HostTxn {
    fn get(&self, table: &str, index: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        wit_state::get(table, index, key).map_err(state_error)
    }
    fn first(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
    ) -> Result<Option<Vec<u8>>, StateError> {
        wit_state::first(table, index, &range_to_wit(range)).map_err(state_error)
    }
    fn last(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
    ) -> Result<Option<Vec<u8>>, StateError> {
        wit_state::last(table, index, &range_to_wit(range)).map_err(state_error)
    }
    fn scan(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
        cursor: Option<&[u8]>,
        limit: u32,
    ) -> Result<ScanBatch, StateError> {
        let b = wit_state::scan(table, index, &range_to_wit(range), cursor, limit)
            .map_err(state_error)?;
        Ok(ScanBatch {
            objects: b.objects,
            cursor: b.cursor,
        })
    }
    fn insert(
        &mut self,
        table: &str,
        object: &[u8],
        keys: Vec<IndexKeys>,
    ) -> Result<Option<Vec<u8>>, StateError> {
        wit_state::insert(table, object, &keys_to_wit(keys)).map_err(state_error)
    }
    fn delete(&mut self, table: &str, id: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        wit_state::delete(table, id).map_err(state_error)
    }
    fn delete_prefix(
        &mut self,
        table: &str,
        index: &str,
        prefix: &[u8],
    ) -> Result<u64, StateError> {
        wit_state::delete_prefix(table, index, prefix).map_err(state_error)
    }
    fn table_index(&self, table: &str) -> Result<u64, StateError> {
        wit_state::table_index(table).map_err(state_error)
    }
}

/// Installs a panic hook that sends the panic's message and location to the host log
/// (`panicked at ...`), where the host picks it up for the trap it reports. Called once per
/// instance by [`crate::export_plugin!`].
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string panic payload".to_string());
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        log(
            crate::LogLevel::Error,
            &format!("panicked at {at}: {message}"),
        );
    }));
}

/// Writes a line to the host log, tagged with the plugin's name. Natively, to stderr.
pub fn log(level: crate::LogLevel, message: &str) {
    if cfg!(target_arch = "wasm32") {
        let level = match level {
            crate::LogLevel::Trace => wit_log::Level::Trace,
            crate::LogLevel::Debug => wit_log::Level::Debug,
            crate::LogLevel::Info => wit_log::Level::Info,
            crate::LogLevel::Warn => wit_log::Level::Warn,
            crate::LogLevel::Error => wit_log::Level::Error,
        };
        wit_log::log(level, message);
    } else {
        eprintln!("[{level:?}] {message}");
    }
}

fn error_to_wit(e: Error) -> wit::PluginError {
    let kind = match e.kind {
        ErrorKind::BadRequest => wit::ErrorKind::BadRequest,
        ErrorKind::NotFound => wit::ErrorKind::NotFound,
        ErrorKind::Conflict => wit::ErrorKind::Conflict,
        ErrorKind::State => wit::ErrorKind::State,
        ErrorKind::Internal => wit::ErrorKind::Internal,
    };
    wit::PluginError {
        kind,
        message: e.message,
    }
}

/// `describe` export.
pub fn describe(p: &Plugin) -> wit::PluginDescription {
    let d = p.describe();
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
                method: r.method.to_string(),
                path: r.path.to_string(),
                prefix: r.prefix,
            })
            .collect(),
        migrations: d
            .migrations
            .into_iter()
            .map(|(table, from_layout)| wit::Migration { table, from_layout })
            .collect(),
    }
}

/// `migrate` export.
pub fn migrate(
    p: &Plugin,
    table: String,
    from_layout: u32,
    object: Vec<u8>,
) -> Result<Vec<wit::MigratedObject>, wit::PluginError> {
    let out = p
        .migrate(&table, from_layout, &object)
        .map_err(error_to_wit)?;
    Ok(out
        .into_iter()
        .map(|m| wit::MigratedObject {
            table: m.table,
            object: m.object,
        })
        .collect())
}

/// `apply` export.
pub fn apply(
    p: &Plugin,
    command: String,
    payload: Vec<u8>,
    ctx: wit::ApplyContext,
) -> Result<Vec<u8>, wit::PluginError> {
    let ctx = Ctx {
        index: ctx.index,
        timestamp_ms: ctx.timestamp_ms,
    };
    p.apply(&mut HostTxn, &ctx, &command, &payload)
        .map_err(error_to_wit)
}

/// `query` export.
pub fn query(p: &Plugin, name: String, args: Vec<u8>) -> Result<Vec<u8>, wit::PluginError> {
    p.query_raw(&HostTxn, &name, &args).map_err(error_to_wit)
}

/// `index` export.
pub fn index(
    p: &Plugin,
    table: String,
    object: Vec<u8>,
) -> Result<Vec<wit::IndexKeys>, wit::PluginError> {
    p.index(&table, &object)
        .map(keys_to_wit)
        .map_err(error_to_wit)
}

/// `index-args` export.
pub fn index_args(
    p: &Plugin,
    table: String,
    index: String,
    args: Vec<u8>,
    prefix: bool,
) -> Result<Vec<u8>, wit::PluginError> {
    p.index_args(&table, &index, &args, prefix)
        .map_err(error_to_wit)
}

fn response_to_wit(r: crate::http::Response) -> wit::HttpResponse {
    wit::HttpResponse {
        status: r.status,
        content_type: r.content_type,
        body: r.body,
    }
}

/// `route` export.
pub fn route(p: &Plugin, req: wit::HttpRequest) -> wit::HttpPlan {
    use crate::http::{Action, Request};
    let plan = p.route_request(&Request {
        method: req.method,
        path: req.path,
        query: req.query,
        body: req.body,
    });
    let action = match plan.action {
        Action::Apply { command, payload } => wit::HttpAction::Apply(wit::Call {
            name: command,
            input: payload,
        }),
        Action::Query { name, args } => wit::HttpAction::Query(wit::Call { name, input: args }),
        Action::Respond(r) => wit::HttpAction::Respond(response_to_wit(r)),
    };
    wit::HttpPlan {
        action,
        context: plan.context,
    }
}

/// `render` export.
pub fn render(
    p: &Plugin,
    context: Vec<u8>,
    outcome: Result<Vec<u8>, wit::PluginError>,
    index: u64,
) -> wit::HttpResponse {
    let outcome = outcome.map_err(|e| {
        let kind = match e.kind {
            wit::ErrorKind::BadRequest => ErrorKind::BadRequest,
            wit::ErrorKind::NotFound => ErrorKind::NotFound,
            wit::ErrorKind::Conflict => ErrorKind::Conflict,
            wit::ErrorKind::State => ErrorKind::State,
            wit::ErrorKind::Internal => ErrorKind::Internal,
        };
        Error::new(kind, e.message)
    });
    response_to_wit(p.render(&context, outcome, index))
}

/// Exports a plugin as the component's `guest` interface.
///
/// The argument is a function returning the [`Plugin`]; it runs once per instance, on the
/// first call. Only emits code on `wasm32`, so the crate still links natively for tests.
#[macro_export]
macro_rules! export_plugin {
    ($build:path) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__rt::bindings::exports::fsmhost::plugin::guest as g;
            use $crate::__rt::bindings::fsmhost::plugin::types as t;
            static PLUGIN: ::std::sync::LazyLock<$crate::Plugin> =
                ::std::sync::LazyLock::new(|| {
                    $crate::__rt::install_panic_hook();
                    $build()
                });
            struct FsmhostPlugin;
            impl g::Guest for FsmhostPlugin {
                fn describe() -> t::PluginDescription {
                    $crate::__rt::describe(&PLUGIN)
                }
                fn apply(
                    command: String,
                    payload: Vec<u8>,
                    ctx: t::ApplyContext,
                ) -> Result<Vec<u8>, t::PluginError> {
                    $crate::__rt::apply(&PLUGIN, command, payload, ctx)
                }
                fn query(name: String, args: Vec<u8>) -> Result<Vec<u8>, t::PluginError> {
                    $crate::__rt::query(&PLUGIN, name, args)
                }
                fn index(
                    table: String,
                    object: Vec<u8>,
                ) -> Result<Vec<t::IndexKeys>, t::PluginError> {
                    $crate::__rt::index(&PLUGIN, table, object)
                }
                fn index_args(
                    table: String,
                    index: String,
                    args: Vec<u8>,
                    prefix: bool,
                ) -> Result<Vec<u8>, t::PluginError> {
                    $crate::__rt::index_args(&PLUGIN, table, index, args, prefix)
                }
                fn route(request: t::HttpRequest) -> t::HttpPlan {
                    $crate::__rt::route(&PLUGIN, request)
                }
                fn render(
                    context: Vec<u8>,
                    outcome: Result<Vec<u8>, t::PluginError>,
                    index: u64,
                ) -> t::HttpResponse {
                    $crate::__rt::render(&PLUGIN, context, outcome, index)
                }
                fn migrate(
                    table: String,
                    from_layout: u32,
                    object: Vec<u8>,
                ) -> Result<Vec<t::MigratedObject>, t::PluginError> {
                    $crate::__rt::migrate(&PLUGIN, table, from_layout, object)
                }
            }
            $crate::__rt::bindings::__export_plugin_world!(FsmhostPlugin with_types_in $crate::__rt::bindings);
        };
    };
}
