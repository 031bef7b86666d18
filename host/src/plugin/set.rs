//! The plugins a server runs, checked together.
//!
//! Owns: [`PluginSet`]: unique plugin names, every table owned by exactly one plugin, no
//! two plugins on the same route, and the store schema built from all their tables.

use std::sync::Arc;

use super::{HttpRoute, LoadError, LoadedPlugin, routes};
use crate::state::{Schema, TableSchema};

/// The plugins a server runs, checked together: unique plugin names, and every table owned by
/// exactly one plugin.
pub struct PluginSet {
    plugins: Vec<Arc<LoadedPlugin>>,
    schema: Schema,
}

impl PluginSet {
    /// Checks the set and builds the store schema from it.
    pub fn new(plugins: Vec<LoadedPlugin>) -> Result<Self, LoadError> {
        Self::from_shared(plugins.into_iter().map(Arc::new).collect())
    }

    /// [`PluginSet::new`] over plugins already shared (another set's, with one replaced).
    pub fn from_shared(plugins: Vec<Arc<LoadedPlugin>>) -> Result<Self, LoadError> {
        // Each table with the plugin that declared it.
        let mut tables: Vec<(String, TableSchema)> = Vec::new();
        for (i, p) in plugins.iter().enumerate() {
            if let Some(other) = plugins[..i].iter().find(|o| o.name() == p.name()) {
                return Err(LoadError::Conflict {
                    first: other.origin.clone(),
                    second: p.origin.clone(),
                    what: format!("the plugin name {}", p.name()),
                });
            }
            for t in &p.description.tables {
                if let Some((owner, _)) = tables.iter().find(|(_, x)| x.name == t.name) {
                    return Err(LoadError::Conflict {
                        first: format!("{owner} ({})", owner_origin(&plugins[..i], owner)),
                        second: format!("{} ({})", p.name(), p.origin),
                        what: format!("table {}", t.name),
                    });
                }
                tables.push((p.name().to_string(), t.clone()));
            }
        }
        let routes: Vec<(String, &[HttpRoute])> = plugins
            .iter()
            .map(|p| {
                (
                    format!("{} ({})", p.name(), p.origin),
                    &p.description.routes[..],
                )
            })
            .collect();
        routes::check_set(&routes)?;
        Ok(PluginSet {
            plugins,
            schema: Schema::new(tables).map_err(|problem| LoadError::InvalidDescription {
                plugin: "the plugin set".into(),
                problem,
            })?,
        })
    }

    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.iter().find(|p| p.name() == name)
    }

    /// The plugin serving `method path` on one of its routes (at most one does).
    pub fn route_for(&self, method: &str, path: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins
            .iter()
            .find(|p| p.description.routes.iter().any(|r| r.matches(method, path)))
    }

    /// Every plugin, in load order.
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// The store schema: every table of every plugin.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }
}

fn owner_origin(plugins: &[Arc<LoadedPlugin>], owner: &str) -> String {
    plugins
        .iter()
        .find(|p| p.name() == owner)
        .map_or_else(String::new, |p| p.origin.clone())
}
