//! Plugin upgrades: what installing a new component changes, whether it may, and the store
//! rebuilt for the new plugin set.
//!
//! Owns: the rules an install obeys ([`plan`]) and the store rebuild ([`rebuild_store`]).
//! Both are pure functions of the current plugin set, the store and the new component, so
//! every server that applies the same install entry gets the same plugins and the same
//! state; the leader runs the same checks before it proposes the entry, so a refused
//! install never reaches the log.
//!
//! Rules (SpacetimeDB's automatic migrations are the model):
//! - a plugin replaces the loaded one of the same name only with a higher semantic version
//!   and the same edition (another edition changes every record's key layout);
//! - a table added is created empty;
//! - a table whose indexes changed (added, removed, declared differently) keeps its
//!   objects, and every index is rebuilt with the new plugin's indexers (its `index`
//!   export);
//! - a table removed would lose data: that needs a migration, and this host has no
//!   `migrate` export yet, so such an install is refused naming the table;
//! - a plugin new to the set is added with its (empty) tables.
//!
//! Boundaries: nothing here touches raft or the network; loading the component is the
//! caller's (the `plugin` module's).

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::plugin::{LoadError, LoadedPlugin, PluginSet};
use crate::state::{Restore, Store, TableSchema};

/// Why an install is refused. The message names the plugin and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// The new version is not higher than the loaded one.
    #[error(
        "plugin {plugin}: version {new} is not higher than the loaded version {old}; \
         downgrades and reinstalls of the same version are refused"
    )]
    NotNewer {
        /// The plugin.
        plugin: String,
        /// Loaded version.
        old: String,
        /// Offered version.
        new: String,
    },
    /// A version that is not semantic versioning.
    #[error("plugin {plugin}: version {version:?} is not a semantic version (x.y.z): {reason}")]
    BadVersion {
        /// The plugin.
        plugin: String,
        /// The version text.
        version: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The edition differs.
    #[error(
        "plugin {plugin}: the loaded edition is {old}, the new component's is {new}; \
         switching editions changes every key and needs a migration, which is not supported"
    )]
    Edition {
        /// The plugin.
        plugin: String,
        /// Loaded edition.
        old: String,
        /// Offered edition.
        new: String,
    },
    /// A table would disappear with its data.
    #[error(
        "plugin {plugin}: table {table} is not in version {version}; removing a table loses \
         its data and needs a migrate export, which this host does not support yet"
    )]
    TableRemoved {
        /// The plugin.
        plugin: String,
        /// The table.
        table: String,
        /// The new version.
        version: String,
    },
    /// The new set does not hold together (a table or route another plugin owns).
    #[error("plugin {plugin}: {reason}")]
    Set {
        /// The plugin.
        plugin: String,
        /// What conflicts.
        reason: String,
    },
    /// An index rebuild failed (the new plugin's indexer refused an existing object, or
    /// its keys broke the schema, e.g. a unique index with two objects on one key).
    #[error("plugin {plugin}: rebuilding table {table}: {reason}")]
    Rebuild {
        /// The plugin.
        plugin: String,
        /// The table.
        table: String,
        /// What went wrong.
        reason: String,
    },
}

/// What one table goes through in an install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableChange {
    /// The table.
    pub table: String,
    /// `added`, `rebuilt` or `unchanged`.
    pub change: String,
    /// Indexes the new version adds.
    pub indexes_added: Vec<String>,
    /// Indexes the new version drops.
    pub indexes_removed: Vec<String>,
    /// Indexes declared differently.
    pub indexes_changed: Vec<String>,
    /// Objects in the table now (re-indexed when `rebuilt`).
    pub objects: u64,
}

/// What an install does: the plugin, the versions and every table's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The plugin.
    pub plugin: String,
    /// The loaded version (none for a plugin new to the set).
    pub from_version: Option<String>,
    /// The new version.
    pub to_version: String,
    /// The new component's SHA-256, hex.
    pub sha256: String,
    /// Per table of the new version.
    pub tables: Vec<TableChange>,
}

fn version(plugin: &str, v: &str) -> Result<semver::Version, UpgradeError> {
    semver::Version::parse(v).map_err(|e| UpgradeError::BadVersion {
        plugin: plugin.to_string(),
        version: v.to_string(),
        reason: e.to_string(),
    })
}

/// Checks installing `new` into `current` (whose store is `store`) and says what would
/// change; refuses, naming the problem, what the rules above forbid.
pub fn plan(current: &PluginSet, store: &Store, new: &LoadedPlugin) -> Result<Plan, UpgradeError> {
    let d = new.description();
    let name = d.name.clone();
    let to = version(&name, &d.version)?;
    let old = current.get(&name);
    if let Some(old) = old {
        let od = old.description();
        let from = version(&name, &od.version)?;
        if to <= from {
            return Err(UpgradeError::NotNewer {
                plugin: name,
                old: od.version.clone(),
                new: d.version.clone(),
            });
        }
        if od.edition != d.edition {
            return Err(UpgradeError::Edition {
                plugin: name,
                old: od.edition.clone(),
                new: d.edition.clone(),
            });
        }
        if let Some(gone) = od
            .tables
            .iter()
            .find(|t| !d.tables.iter().any(|n| n.name == t.name))
        {
            return Err(UpgradeError::TableRemoved {
                plugin: name,
                table: gone.name.clone(),
                version: d.version.clone(),
            });
        }
    }
    let read = store.read();
    let tables = d
        .tables
        .iter()
        .map(|t| {
            let before = old.and_then(|o| o.description().tables.iter().find(|x| x.name == t.name));
            table_change(t, before, read.len(&t.name).unwrap_or(0) as u64)
        })
        .collect();
    Ok(Plan {
        plugin: name,
        from_version: old.map(|o| o.description().version.clone()),
        to_version: d.version.clone(),
        sha256: new.hash_hex(),
        tables,
    })
}

fn table_change(new: &TableSchema, old: Option<&TableSchema>, objects: u64) -> TableChange {
    let mut c = TableChange {
        table: new.name.clone(),
        change: "added".into(),
        indexes_added: Vec::new(),
        indexes_removed: Vec::new(),
        indexes_changed: Vec::new(),
        objects: 0,
    };
    let Some(old) = old else {
        return c;
    };
    c.objects = objects;
    for ix in &new.indexes {
        match old.indexes.iter().find(|o| o.name == ix.name) {
            None => c.indexes_added.push(ix.name.clone()),
            Some(o) if o != ix => c.indexes_changed.push(ix.name.clone()),
            Some(_) => {}
        }
    }
    for o in &old.indexes {
        if !new.indexes.iter().any(|ix| ix.name == o.name) {
            c.indexes_removed.push(o.name.clone());
        }
    }
    c.change = if old.indexes == new.indexes {
        "unchanged"
    } else {
        "rebuilt"
    }
    .into();
    c
}

/// The plugin set with `new` in place of the plugin of its name (or added at the end).
pub fn replaced(current: &PluginSet, new: Arc<LoadedPlugin>) -> Result<PluginSet, UpgradeError> {
    let mut plugins: Vec<Arc<LoadedPlugin>> = current.plugins().to_vec();
    match plugins.iter().position(|p| p.name() == new.name()) {
        Some(i) => plugins[i] = new.clone(),
        None => plugins.push(new.clone()),
    }
    PluginSet::from_shared(plugins).map_err(|e: LoadError| UpgradeError::Set {
        plugin: new.name().to_string(),
        reason: e.to_string(),
    })
}

/// The store for `next` (the set after installing `plan`'s plugin), built from `store`:
/// unchanged tables keep their objects and keys, rebuilt tables get every object's keys
/// from the new plugin's indexers, added tables start empty. Every table keeps its
/// last-change index. Checks every object as a restore does (unique keys, cardinality).
pub fn rebuild_store(
    store: &Store,
    next: &PluginSet,
    plan: &Plan,
    plugin: &LoadedPlugin,
) -> Result<Store, UpgradeError> {
    let read = store.read();
    let old_schema = read.schema();
    let mut out = Restore::new(next.schema().clone());
    let fail = |table: &str, reason: String| UpgradeError::Rebuild {
        plugin: plan.plugin.clone(),
        table: table.to_string(),
        reason,
    };
    for (t, schema) in next.schema().tables().iter().enumerate() {
        let Some(old_t) = old_schema
            .tables()
            .iter()
            .position(|x| x.name == schema.name)
        else {
            continue; // added: empty
        };
        let rebuild = plan
            .tables
            .iter()
            .any(|c| c.table == schema.name && c.change == "rebuilt");
        for (object, keys) in read.rows_at(old_t) {
            let keys: Vec<Vec<Vec<u8>>> = if rebuild {
                let computed = plugin
                    .index(&schema.name, object)
                    .map_err(|e| fail(&schema.name, e.to_string()))?;
                schema
                    .indexes
                    .iter()
                    .map(|ix| {
                        computed
                            .iter()
                            .find(|k| k.index == ix.name)
                            .map(|k| k.keys.clone())
                            .unwrap_or_default()
                    })
                    .collect()
            } else {
                keys.iter()
                    .map(|ks| ks.iter().map(|k| k.to_vec()).collect())
                    .collect()
            };
            out.insert(t, object.to_vec(), keys)
                .map_err(|e| fail(&schema.name, e.to_string()))?;
        }
        out.set_table_index(t, read.table_index(&schema.name).unwrap_or(0));
    }
    Ok(out.finish())
}
