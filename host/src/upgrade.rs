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
//! - a table whose layout changed (the version of its objects' bytes), or that the new
//!   version drops, needs a migration the new version declares for it (table and old
//!   layout); without one the install is refused naming the table. With one, every
//!   object of the table goes through the new plugin's `migrate` export, and what it
//!   returns (any number of objects, into any of the plugin's tables) is indexed with the
//!   new indexers. A migration that fails for any object refuses the whole install;
//! - a plugin new to the set is added with its (empty) tables.
//!
//! Invariant: [`rebuild_store`] is a pure function of the old store, the new plugin set
//! and the plan, and visits objects in schema then id order, so every server (and a dry
//! run) builds the same store, or fails with the same error.
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
    /// A table would disappear, or change layout, without a migration.
    #[error(
        "plugin {plugin}: version {version} {what} table {table} (layout {layout}) but \
         declares no migration from it; declare one (the SDK's `Plugin::migration`) and \
         implement it in the `migrate` export, or keep the table's layout"
    )]
    NeedsMigration {
        /// The plugin.
        plugin: String,
        /// The table.
        table: String,
        /// The table's current layout.
        layout: u32,
        /// `drops` or `changes the layout of`.
        what: &'static str,
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
    /// An index rebuild or a migration failed (the new plugin's indexer or `migrate`
    /// refused an existing object, or the result broke the schema, e.g. a unique index
    /// with two objects on one key).
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

/// What an install does to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A table the new version adds: it starts empty.
    Added,
    /// Its indexes changed: every object is re-indexed with the new plugin's indexers.
    Rebuilt,
    /// Nothing changes: objects and keys are copied.
    Unchanged,
    /// Its layout changed: every object goes through the new plugin's `migrate`.
    Migrated,
    /// The new version drops it: every object goes through the new plugin's `migrate`.
    Removed,
}

impl ChangeKind {
    /// The change as operators read it (`added`, `rebuilt`, `unchanged`, `migrated`,
    /// `removed`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Rebuilt => "rebuilt",
            ChangeKind::Unchanged => "unchanged",
            ChangeKind::Migrated => "migrated",
            ChangeKind::Removed => "removed",
        }
    }

    /// Whether the table's objects go through the new plugin's `migrate`.
    pub fn migrates(self) -> bool {
        matches!(self, ChangeKind::Migrated | ChangeKind::Removed)
    }
}

/// What one table goes through in an install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableChange {
    /// The table.
    pub table: String,
    /// What happens to it.
    pub change: ChangeKind,
    /// The table's layout before (none for an added table).
    pub from_layout: Option<u32>,
    /// The table's layout after (none for a removed table).
    pub to_layout: Option<u32>,
    /// Indexes the new version adds.
    pub indexes_added: Vec<String>,
    /// Indexes the new version drops.
    pub indexes_removed: Vec<String>,
    /// Indexes declared differently.
    pub indexes_changed: Vec<String>,
    /// Objects in the table now (re-indexed when `rebuilt`).
    pub objects: u64,
    /// Objects in the table after the rebuild; none until it ran (see [`Plan::counted`]).
    pub objects_after: Option<u64>,
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
    /// Per table of the new version, then the tables it drops.
    pub tables: Vec<TableChange>,
}

impl Plan {
    /// The plan with every table's `objects_after` read from `rebuilt`.
    pub fn counted(mut self, rebuilt: &Store) -> Plan {
        let read = rebuilt.read();
        for t in &mut self.tables {
            t.objects_after = Some(read.len(&t.table).unwrap_or(0) as u64);
        }
        self
    }

    fn change(&self, table: &str) -> Option<ChangeKind> {
        self.tables
            .iter()
            .find(|c| c.table == table)
            .map(|c| c.change)
    }
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
        for t in &od.tables {
            let what = match d.tables.iter().find(|n| n.name == t.name) {
                None => "drops",
                Some(n) if n.layout != t.layout => "changes the layout of",
                Some(_) => continue,
            };
            let declared = d
                .migrations
                .iter()
                .any(|m| m.table == t.name && m.from_layout == t.layout);
            if !declared {
                return Err(UpgradeError::NeedsMigration {
                    plugin: name,
                    table: t.name.clone(),
                    layout: t.layout,
                    what,
                    version: d.version.clone(),
                });
            }
        }
    }
    let read = store.read();
    let objects = |table: &str| read.len(table).unwrap_or(0) as u64;
    let mut tables: Vec<TableChange> = d
        .tables
        .iter()
        .map(|t| {
            let before = old.and_then(|o| o.description().tables.iter().find(|x| x.name == t.name));
            table_change(t, before, objects(&t.name))
        })
        .collect();
    if let Some(old) = old {
        let dropped = old
            .description()
            .tables
            .iter()
            .filter(|t| !d.tables.iter().any(|n| n.name == t.name));
        tables.extend(dropped.map(|t| TableChange {
            table: t.name.clone(),
            change: ChangeKind::Removed,
            from_layout: Some(t.layout),
            to_layout: None,
            indexes_added: Vec::new(),
            indexes_removed: t.indexes.iter().map(|ix| ix.name.clone()).collect(),
            indexes_changed: Vec::new(),
            objects: objects(&t.name),
            objects_after: None,
        }));
    }
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
        change: ChangeKind::Added,
        from_layout: None,
        to_layout: Some(new.layout),
        indexes_added: Vec::new(),
        indexes_removed: Vec::new(),
        indexes_changed: Vec::new(),
        objects: 0,
        objects_after: None,
    };
    let Some(old) = old else {
        return c;
    };
    c.objects = objects;
    c.from_layout = Some(old.layout);
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
    c.change = if old.layout != new.layout {
        ChangeKind::Migrated
    } else if old.indexes == new.indexes {
        ChangeKind::Unchanged
    } else {
        ChangeKind::Rebuilt
    };
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
/// from the new plugin's indexers, added tables start empty, and the objects of migrated
/// and removed tables go through the new plugin's `migrate`, into the tables it names.
/// Every table keeps its last-change index (a migration's target takes the highest of its
/// own and its sources'). Checks every object as a restore does (unique keys,
/// cardinality, an id only once).
pub fn rebuild_store(
    store: &Store,
    next: &PluginSet,
    plan: &Plan,
    plugin: &LoadedPlugin,
) -> Result<Store, UpgradeError> {
    let read = store.read();
    let old_schema = read.schema();
    let new_schema = next.schema();
    let mut out = Restore::new(new_schema.clone());
    let fail = |table: &str, reason: String| UpgradeError::Rebuild {
        plugin: plan.plugin.clone(),
        table: table.to_string(),
        reason,
    };
    // Keys of `object` in every index of the new table at `t`, from the new plugin.
    let computed_keys = |t: usize, object: &[u8]| -> Result<Vec<Vec<Vec<u8>>>, UpgradeError> {
        let schema = &new_schema.tables()[t];
        let computed = plugin
            .index(&schema.name, object)
            .map_err(|e| fail(&schema.name, e.to_string()))?;
        Ok(schema
            .indexes
            .iter()
            .map(|ix| {
                computed
                    .iter()
                    .find(|k| k.index == ix.name)
                    .map(|k| k.keys.clone())
                    .unwrap_or_default()
            })
            .collect())
    };
    let mut table_index: Vec<u64> = vec![0; new_schema.tables().len()];
    for (t, schema) in new_schema.tables().iter().enumerate() {
        let Some(old_t) = old_schema.position(&schema.name) else {
            continue; // added: empty
        };
        table_index[t] = read.table_stamp(&schema.name).unwrap_or(0);
        let owned = new_schema.owner(t) == plan.plugin;
        match plan.change(&schema.name).filter(|_| owned) {
            Some(ChangeKind::Migrated) => continue, // below, with the removed tables
            Some(ChangeKind::Rebuilt) => {
                for (object, _) in read.rows_at(old_t) {
                    let keys = computed_keys(t, object)?;
                    out.insert(t, object.to_vec(), keys)
                        .map_err(|e| fail(&schema.name, e.to_string()))?;
                }
            }
            _ => {
                for (object, keys) in read.rows_at(old_t) {
                    let keys = keys
                        .per_index()
                        .map(|ks| ks.iter().map(|k| k.to_vec()).collect())
                        .collect();
                    out.insert(t, object.to_vec(), keys)
                        .map_err(|e| fail(&schema.name, e.to_string()))?;
                }
            }
        }
    }
    for (old_t, old) in old_schema.tables().iter().enumerate() {
        let Some(from) = plan
            .tables
            .iter()
            .find(|c| c.table == old.name && c.change.migrates())
            .and_then(|c| c.from_layout)
        else {
            continue;
        };
        let source_index = read.table_stamp(&old.name).unwrap_or(0);
        for (object, _) in read.rows_at(old_t) {
            let migrated = plugin
                .migrate(&old.name, from, object)
                .map_err(|e| fail(&old.name, e.to_string()))?;
            for (target, bytes) in migrated {
                let t = new_schema
                    .position(&target)
                    .filter(|&t| new_schema.owner(t) == plan.plugin)
                    .ok_or_else(|| {
                        fail(
                            &old.name,
                            format!(
                                "migrate returned an object for table {target:?}, which is \
                                 not a table of plugin {} {}",
                                plan.plugin, plan.to_version
                            ),
                        )
                    })?;
                let keys = computed_keys(t, &bytes)?;
                out.insert(t, bytes, keys)
                    .map_err(|e| fail(&old.name, format!("migrated into table {target}: {e}")))?;
                table_index[t] = table_index[t].max(source_index);
            }
        }
    }
    for (t, index) in table_index.into_iter().enumerate() {
        out.set_table_stamp(t, index);
    }
    Ok(out.finish())
}
