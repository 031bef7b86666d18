//! The schema of the store: each table, its indexes and the plugin that owns it, as the
//! loaded plugins declare them.
//!
//! Owns: [`Schema`] (each table's [`TableSchema`], the SDK's type, with its owner), and the
//! checks a plugin set's tables must pass (an `id` index on every table, unique names).
//! A table's `layout` (from 1) is the version of what its objects' bytes mean: the store
//! never reads objects; upgrades compare layouts to decide whether the objects need the new
//! plugin's `migrate`.

use std::collections::BTreeMap;

use super::*;

/// The schema of the whole store: every table of every loaded plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    pub(super) tables: Vec<TableSchema>,
    /// Per table, the plugin that declared it; only that plugin writes the table.
    pub(super) owners: Vec<String>,
    /// Per table, the position of its `id` index.
    pub(super) id_pos: Vec<usize>,
    pub(super) by_name: BTreeMap<String, usize>,
}

impl Schema {
    /// A schema of these tables, each with the plugin that owns it. Refuses, naming the
    /// table, a duplicate table name or a table without a unique, single-valued,
    /// never-missing `id` index: the invariants every insert relies on.
    pub fn new(owned: Vec<(String, TableSchema)>) -> Result<Self, String> {
        let (owners, tables): (Vec<String>, Vec<TableSchema>) = owned.into_iter().unzip();
        let mut by_name = BTreeMap::new();
        let mut id_pos = Vec::with_capacity(tables.len());
        for (i, t) in tables.iter().enumerate() {
            if by_name.insert(t.name.clone(), i).is_some() {
                return Err(format!("table {} is declared twice", t.name));
            }
            let pos = t
                .indexes
                .iter()
                .position(|ix| ix.name == "id" && ix.unique && !ix.multi && !ix.allow_missing)
                .ok_or_else(|| {
                    format!(
                        "table {} has no unique, single-valued, never-missing id index",
                        t.name
                    )
                })?;
            id_pos.push(pos);
        }
        Ok(Schema {
            tables,
            owners,
            id_pos,
            by_name,
        })
    }

    /// The tables, in declaration order.
    pub fn tables(&self) -> &[TableSchema] {
        &self.tables
    }

    /// The plugin that owns the table at schema position `t`.
    pub fn owner(&self, t: usize) -> &str {
        &self.owners[t]
    }

    /// The schema position of `table`, if the schema has it.
    pub fn position(&self, table: &str) -> Option<usize> {
        self.by_name.get(table).copied()
    }

    pub(super) fn lookup(&self, table: &str) -> Result<usize, StateError> {
        self.by_name
            .get(table)
            .copied()
            .ok_or_else(|| StateError::UnknownTable(format!("table {table}")))
    }

    pub(super) fn index_pos(&self, t: usize, index: &str) -> Result<usize, StateError> {
        let schema = &self.tables[t];
        schema
            .indexes
            .iter()
            .position(|i| i.name == index)
            .ok_or_else(|| StateError::UnknownIndex(format!("table {} index {index}", schema.name)))
    }
}
