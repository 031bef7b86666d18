//! The wasm side: bindings generated from `wit/plugin.wit`, the [`Txn`] backed by the host's
//! `state` import, and the glue [`crate::export_plugin!`] expands to; `convert` maps the
//! WIT types to the SDK's.
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
use bindings::fsmhost::plugin::{acl as wit_acl, log as wit_log, state as wit_state, types as wit};

use crate::error::Error;
use crate::plugin::Plugin;
use crate::txn::{IndexKeys, KeyRange, ScanBatch, StateError, Txn};

mod convert;

pub use wit_bindgen;
pub use wit_guest::Guest;

/// The host's answer to [`crate::acl::allowed`] (called only in wasm).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn allowed(
    tenancy: &crate::Tenancy,
    resource: crate::acl::Resource,
    segment: &str,
    access: crate::acl::Access,
) -> bool {
    wit_acl::allowed(
        resource.into(),
        segment,
        access.into(),
        &tenancy.partition,
        &tenancy.namespace,
    )
}

/// The transaction of the current `apply` or `query`, reached through the host's imports.
pub struct HostTxn;

impl Txn for HostTxn {
    fn get(&self, table: &str, index: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(wit_state::get(table, index, key)?)
    }
    fn first(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
    ) -> Result<Option<Vec<u8>>, StateError> {
        Ok(wit_state::first(table, index, &range.into())?)
    }
    fn last(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
    ) -> Result<Option<Vec<u8>>, StateError> {
        Ok(wit_state::last(table, index, &range.into())?)
    }
    fn scan(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
        cursor: Option<&[u8]>,
        limit: u32,
    ) -> Result<ScanBatch, StateError> {
        Ok(wit_state::scan(table, index, &range.into(), cursor, limit)?.into())
    }
    fn insert(
        &mut self,
        table: &str,
        object: &[u8],
        keys: Vec<IndexKeys>,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let keys: Vec<wit::IndexKeys> = keys.into_iter().map(Into::into).collect();
        Ok(wit_state::insert(table, object, &keys)?)
    }
    fn delete(&mut self, table: &str, id: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(wit_state::delete(table, id)?)
    }
    fn delete_prefix(
        &mut self,
        table: &str,
        index: &str,
        prefix: &[u8],
    ) -> Result<u64, StateError> {
        Ok(wit_state::delete_prefix(table, index, prefix)?)
    }
    fn table_index(&self, table: &str) -> Result<u64, StateError> {
        Ok(wit_state::table_index(table)?)
    }
    fn send(&mut self, plugin: &str, command: &str, payload: &[u8]) -> Result<(), StateError> {
        Ok(wit_state::send(plugin, command, payload)?)
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

/// `describe` export. A table that lists another table's index cannot get here: building
/// the plugin panicked ([`Plugin::table`]), which fails the load.
pub fn describe(p: &Plugin) -> wit::PluginDescription {
    p.describe().into()
}

/// `migrate` export.
pub fn migrate(
    p: &Plugin,
    table: String,
    from_layout: u32,
    object: Vec<u8>,
) -> Result<Vec<wit::MigratedObject>, wit::PluginError> {
    let out = p.migrate(&table, from_layout, &object)?;
    Ok(out.into_iter().map(Into::into).collect())
}

/// `apply` export.
pub fn apply(
    p: &Plugin,
    command: String,
    payload: Vec<u8>,
    ctx: wit::ApplyContext,
) -> Result<Vec<u8>, wit::PluginError> {
    Ok(p.apply(&mut HostTxn, &ctx.into(), &command, &payload)?)
}

/// `tick` export.
pub fn tick(p: &Plugin, ctx: wit::TickContext) -> Result<Vec<wit::Call>, wit::PluginError> {
    let proposals = p.run_tick(&HostTxn, &ctx.into())?;
    Ok(proposals.into_iter().map(Into::into).collect())
}

/// `query` export.
pub fn query(p: &Plugin, name: String, args: Vec<u8>) -> Result<Vec<u8>, wit::PluginError> {
    Ok(p.query_raw(&HostTxn, &name, &args)?)
}

/// `index` export.
pub fn index(
    p: &Plugin,
    table: String,
    object: Vec<u8>,
) -> Result<Vec<wit::IndexKeys>, wit::PluginError> {
    let keys = p.index(&table, &object)?;
    Ok(keys.into_iter().map(Into::into).collect())
}

/// `index-args` export.
pub fn index_args(
    p: &Plugin,
    table: String,
    index: String,
    args: Vec<u8>,
    prefix: bool,
) -> Result<Vec<u8>, wit::PluginError> {
    Ok(p.index_args(&table, &index, &args, prefix)?)
}

/// `route` export.
pub fn route(p: &Plugin, req: wit::HttpRequest) -> wit::HttpPlan {
    p.route_request(&req.into()).into()
}

/// `render` export.
pub fn render(
    p: &Plugin,
    context: Vec<u8>,
    outcome: Result<Vec<u8>, wit::PluginError>,
    index: u64,
) -> wit::HttpResponse {
    let outcome = outcome.map_err(Error::from);
    p.render(&context, outcome, index).into()
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
                fn tick(ctx: t::TickContext) -> Result<Vec<t::Call>, t::PluginError> {
                    $crate::__rt::tick(&PLUGIN, ctx)
                }
            }
            $crate::__rt::bindings::__export_plugin_world!(FsmhostPlugin with_types_in $crate::__rt::bindings);
        };
    };
}
