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
        check_contracts(&plugins, &tables)?;
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

/// What plugins declare of each other holds in this set: every table a plugin reads that the
/// set has is stored at the layout the reader decodes (an upgrade of its owner must not
/// change the bytes under a reader), and every command a plugin sends messages to exists
/// when its plugin is in the set. A missing table or plugin is allowed: the reads fail as
/// unknown tables, the messages are dropped.
fn check_contracts(
    plugins: &[Arc<LoadedPlugin>],
    tables: &[(String, TableSchema)],
) -> Result<(), LoadError> {
    let invalid = |p: &LoadedPlugin, problem: String| LoadError::InvalidDescription {
        plugin: format!("{} {} ({})", p.name(), p.description.version, p.origin),
        problem,
    };
    for p in plugins {
        for read in &p.description.reads {
            if let Some((owner, t)) = tables.iter().find(|(_, t)| t.name == read.table)
                && t.layout != read.layout
            {
                return Err(invalid(
                    p,
                    format!(
                        "it reads table {} at layout {}, but plugin {owner} ({}) stores it at \
                         layout {}: use releases of the two plugins that agree on it",
                        read.table,
                        read.layout,
                        owner_origin(plugins, owner),
                        t.layout
                    ),
                ));
            }
        }
        for target in &p.description.sends {
            if let Some(receiver) = plugins.iter().find(|r| r.name() == target.plugin)
                && !receiver.description.commands.contains(&target.command)
            {
                return Err(invalid(
                    p,
                    format!(
                        "it sends messages to {}/{}, but plugin {} {} ({}) has no command {}",
                        target.plugin,
                        target.command,
                        receiver.name(),
                        receiver.description.version,
                        receiver.origin,
                        target.command
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn owner_origin(plugins: &[Arc<LoadedPlugin>], owner: &str) -> String {
    plugins
        .iter()
        .find(|p| p.name() == owner)
        .map_or_else(String::new, |p| p.origin.clone())
}
