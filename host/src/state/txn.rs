//! The store and its transactions: one writer at a time, any number of readers on O(1)
//! snapshots, savepoints inside a write, and the watches blocking reads wait on.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::tables::{Journal, Undo};
use super::*;

/// The store: the last committed [`Tables`], the single-writer lock, and the watches.
pub struct Store {
    pub(super) current: RwLock<Arc<Tables>>,
    pub(super) writer: Mutex<()>,
    pub(super) notifier: watch::Notifier,
}

impl Store {
    /// An empty store with this schema.
    pub fn new(schema: Schema) -> Self {
        Restore::new(schema).finish()
    }

    /// A watch on `tables`: it wakes when a commit changes one of them, or the store is
    /// abandoned. Take it before reading, so no change between the read and the wait is
    /// missed.
    pub fn watch<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a str>,
    ) -> Result<WatchSet, StateError> {
        let schema = &self.read().tables.schema;
        let positions = tables
            .into_iter()
            .map(|t| schema.lookup(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.notifier.watch(positions))
    }

    /// Marks the store as replaced (by a restore) or shut down: every watch, present and
    /// future, wakes with [`Wake::Abandoned`].
    pub fn abandon(&self) {
        self.notifier.abandon();
    }

    /// Whether [`Store::abandon`] was called.
    pub fn is_abandoned(&self) -> bool {
        self.notifier.is_abandoned()
    }

    /// A read transaction over the last committed state. O(1).
    pub fn read(&self) -> ReadTxn {
        let tables = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        ReadTxn { tables }
    }

    /// The write transaction whose writes are stamped `stamp` (the FSM index of the
    /// entry's first command). Blocks while another is open.
    pub fn write(&self, stamp: u64) -> WriteTxn<'_> {
        let guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tables = Tables::clone(&self.read().tables);
        let base = tables.last_change.clone();
        WriteTxn {
            store: self,
            _guard: guard,
            tables,
            base,
            stamp,
        }
    }
}

/// A consistent, read-only view of the store.
#[derive(Clone)]
pub struct ReadTxn {
    pub(super) tables: Arc<Tables>,
}

impl std::ops::Deref for ReadTxn {
    type Target = Tables;
    fn deref(&self) -> &Tables {
        &self.tables
    }
}

/// The one open write transaction. Dropping it without [`WriteTxn::commit`] aborts it.
pub struct WriteTxn<'s> {
    pub(super) store: &'s Store,
    pub(super) _guard: MutexGuard<'s, ()>,
    pub(super) tables: Tables,
    /// Per table, its stamp when the transaction began.
    pub(super) base: Vec<u64>,
    /// The stamp writes get now: the FSM index of the command being applied.
    pub(super) stamp: u64,
}

/// A point a [`WriteTxn`] can roll back to ([`WriteTxn::rollback_to`]) or keep the writes
/// made since ([`WriteTxn::release`]). O(1) to take; while one is open every row a write
/// replaces is kept in the transaction's undo journal. Savepoints nest; end
/// them newest first. One neither rolled back nor released keeps its writes, and the
/// journal is kept until the commit.
#[must_use = "a savepoint is ended with rollback_to or release"]
pub struct Savepoint {
    /// Length of the undo journal when it was taken.
    pub(super) at: usize,
}

impl WriteTxn<'_> {
    /// The stamp this transaction's writes get now: the FSM index of the command being
    /// applied.
    pub fn stamp(&self) -> u64 {
        self.stamp
    }

    /// The transaction's tables (reads see its own writes).
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The tables, for writes.
    pub fn tables_mut(&mut self) -> &mut Tables {
        &mut self.tables
    }

    /// Moves the transaction on to the FSM index of the next command of its log entry:
    /// later writes stamp their tables with it.
    pub fn set_stamp(&mut self, stamp: u64) {
        self.stamp = stamp;
    }

    /// Marks the current state so [`WriteTxn::rollback_to`] can return to it.
    pub fn savepoint(&mut self) -> Savepoint {
        let journal = &mut self.tables.journal;
        journal.open += 1;
        Savepoint {
            at: journal.undo.len(),
        }
    }

    /// Undoes every write made since `savepoint`, newest first: the tables hold again
    /// exactly the rows, index entries, byte counts and stamps they held.
    pub fn rollback_to(&mut self, savepoint: Savepoint) {
        let tables = &mut self.tables;
        let undo = tables
            .journal
            .undo
            .split_off(savepoint.at.min(tables.journal.undo.len()));
        for Undo { t, id, old, stamp } in undo.into_iter().rev() {
            let data = &mut tables.data[t];
            data.remove_row(&id);
            if let Some(row) = old {
                data.put_row(id, row);
            }
            tables.last_change[t] = stamp;
        }
        tables.journal.close();
    }

    /// Keeps the writes made since `savepoint` and ends it.
    pub fn release(&mut self, savepoint: Savepoint) {
        drop(savepoint);
        self.tables.journal.close();
    }

    /// Moves the tables out, for a plugin call that runs where the transaction cannot go (a
    /// wasmtime store's data must be `'static`), savepoints and journal included; hand them
    /// back with [`WriteTxn::give_back`]. Meanwhile the transaction holds tables of no
    /// schema: reads find no table, and a commit would publish them.
    pub(crate) fn lend(&mut self) -> Tables {
        std::mem::replace(&mut self.tables, Tables::none())
    }

    /// Takes back the tables [`WriteTxn::lend`] lent.
    pub(crate) fn give_back(&mut self, tables: Tables) {
        self.tables = tables;
    }

    /// Publishes every write atomically to new readers, then wakes the watchers of exactly
    /// the tables this transaction changed.
    pub fn commit(mut self) {
        self.tables.journal = Journal::default();
        let changed: Vec<(usize, u64)> = self
            .tables
            .last_change
            .iter()
            .zip(&self.base)
            .enumerate()
            .filter(|(_, (now, before))| now != before)
            .map(|(t, (now, _))| (t, *now))
            .collect();
        {
            let mut current = self
                .store
                .current
                .write()
                .unwrap_or_else(|p| p.into_inner());
            *current = Arc::new(self.tables);
        }
        for (t, index) in changed {
            self.store.notifier.changed(t, index);
        }
    }
}
