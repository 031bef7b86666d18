//! Rebuilding a store from a snapshot, object by object, with every insert's checks.

use std::sync::{Arc, Mutex, RwLock};

use fsmhost_guest::DisplayKey;

use super::*;

/// A store being rebuilt from a snapshot, object by object. Every object goes through the
/// checks an insert makes (index cardinality, unique keys), and an id may appear only once,
/// so a damaged or hostile snapshot cannot build a store that breaks the module's
/// invariants. Nothing is visible to anyone until [`Restore::finish`].
pub struct Restore {
    pub(super) tables: Tables,
}

impl Restore {
    /// An empty store with this schema, to fill.
    pub fn new(schema: Schema) -> Self {
        Restore {
            tables: Tables::empty(Arc::new(schema)),
        }
    }

    /// The schema being filled.
    pub fn schema(&self) -> &Schema {
        &self.tables.schema
    }

    /// Adds an object to the table at schema position `t` with its keys per index, in
    /// schema order. Refuses an unknown position, keys that break the schema, and an id
    /// already restored.
    pub fn insert(
        &mut self,
        t: usize,
        object: Vec<u8>,
        keys: Vec<Vec<Vec<u8>>>,
    ) -> Result<(), StateError> {
        if t >= self.tables.data.len() {
            return Err(StateError::UnknownTable(format!("table number {t}")));
        }
        let keys: Vec<Vec<Bytes>> = keys
            .into_iter()
            .map(|ks| ks.into_iter().map(Bytes::from).collect())
            .collect();
        let id_pos = self.tables.schema.id_pos[t];
        if let Some(id) = keys.get(id_pos).and_then(|ks| ks.first())
            && self.tables.data[t].rows.contains_key(id)
        {
            let table = &self.tables.schema.tables[t].name;
            return Err(StateError::BadKeys(format!(
                "table {table}: id {} appears twice",
                DisplayKey(id)
            )));
        }
        let index = self.tables.last_change[t];
        self.tables
            .insert_row(t, index, Bytes::from(object), keys)?;
        Ok(())
    }

    /// Sets the last-change index of the table at schema position `t`.
    pub fn set_table_stamp(&mut self, t: usize, index: u64) {
        if let Some(slot) = self.tables.last_change.get_mut(t) {
            *slot = index;
        }
    }

    /// The hash of what was restored so far (see [`Tables::hash`]).
    pub fn hash(&self) -> [u8; 32] {
        self.tables.hash()
    }

    /// The finished store.
    pub fn finish(self) -> Store {
        let notifier = watch::Notifier::new(self.tables.data.len());
        Store {
            current: RwLock::new(Arc::new(self.tables)),
            writer: Mutex::new(()),
            notifier,
        }
    }
}
