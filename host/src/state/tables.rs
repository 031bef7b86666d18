//! The data of every table at one point ([`Tables`]): lookups, scans, inserts and deletes
//! with the schema's invariants (see the module doc of `state`), the state hash, and the
//! undo journal of a write transaction's savepoints.

use std::sync::Arc;

use fsmhost_guest::DisplayKey;

use super::row::{Entry, EntryRef, Row, TableData};
use super::*;

/// The data of every table at one point: what a transaction reads and writes. Cloning it is
/// O(number of tables).
#[derive(Clone)]
pub struct Tables {
    pub(super) schema: Arc<Schema>,
    pub(super) data: Vec<TableData>,
    /// Per table: its stamp, the FSM index of its last change (Consul's `index` table).
    pub(super) last_change: Vec<u64>,
    pub(super) journal: Journal,
}

/// The undo journal of a write transaction's open savepoints.
///
/// Invariant: while `open > 0`, `undo` holds, oldest first, every row change made since the
/// outermost open savepoint was taken (each write records the row it replaced), so undoing
/// them newest first restores every table's rows and index entries exactly. With no
/// savepoint open nothing is recorded (readers, restores and commits carry an empty one).
#[derive(Clone, Default)]
pub(super) struct Journal {
    pub(super) undo: Vec<Undo>,
    pub(super) open: usize,
}

impl Journal {
    /// Ends the newest open savepoint; after the outermost, nothing needs undoing.
    pub(super) fn close(&mut self) {
        self.open = self.open.saturating_sub(1);
        if self.open == 0 {
            self.undo.clear();
        }
    }
}

/// One row change: in table `t`, the row under `id` was `old` (`None`: there was none),
/// and the table's last-change index was `stamp`.
#[derive(Clone)]
pub(super) struct Undo {
    pub(super) t: usize,
    pub(super) id: Bytes,
    pub(super) old: Option<Row>,
    pub(super) stamp: u64,
}

impl Tables {
    pub(super) fn empty(schema: Arc<Schema>) -> Self {
        let data = schema
            .tables
            .iter()
            .zip(&schema.id_pos)
            .map(|(t, id_pos)| TableData::new(t, *id_pos))
            .collect();
        let last_change = vec![0; schema.tables.len()];
        Tables {
            schema,
            data,
            last_change,
            journal: Journal::default(),
        }
    }

    /// Tables of no schema at all: what a [`WriteTxn`] holds while its tables are lent.
    pub(super) fn none() -> Self {
        static NONE: std::sync::LazyLock<Arc<Schema>> = std::sync::LazyLock::new(Arc::default);
        Tables {
            schema: NONE.clone(),
            data: Vec::new(),
            last_change: Vec::new(),
            journal: Journal::default(),
        }
    }

    /// Records, while a savepoint is open, that table `t`'s row under `id` was `old`.
    pub(super) fn note(&mut self, t: usize, id: &Bytes, old: Option<&Row>) {
        if self.journal.open > 0 {
            self.journal.undo.push(Undo {
                t,
                id: id.clone(),
                old: old.cloned(),
                stamp: self.last_change[t],
            });
        }
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub(super) fn locate(&self, table: &str, index: &str) -> Result<(usize, usize), StateError> {
        let t = self.schema.lookup(table)?;
        Ok((t, self.schema.index_pos(t, index)?))
    }

    /// The first object whose key in `index` equals `key` (in `id` order).
    pub fn get(&self, table: &str, index: &str, key: &[u8]) -> Result<Option<Bytes>, StateError> {
        let (t, pos) = self.locate(table, index)?;
        let data = &self.data[t];
        if pos == data.id_pos {
            // The rows map is the id index: one lookup, no range.
            return Ok(data.rows.get(key).map(|r| r.object.clone()));
        }
        self.first(table, index, &KeyRange::Exact(key.to_vec()))
    }

    /// The first object whose key in `index` falls in `range`.
    pub fn first(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
    ) -> Result<Option<Bytes>, StateError> {
        self.pick(table, index, |data, pos| {
            data.range(pos, range, None).next()
        })
    }

    /// The object of the index entry `choose` picks from `index` of `table`.
    pub(super) fn pick<'a>(
        &'a self,
        table: &str,
        index: &str,
        choose: impl FnOnce(&'a TableData, usize) -> Option<EntryRef<'a>>,
    ) -> Result<Option<Bytes>, StateError> {
        let (t, pos) = self.locate(table, index)?;
        let data = &self.data[t];
        Ok(choose(data, pos)
            .and_then(|(_, id)| data.rows.get(id))
            .map(|r| r.object.clone()))
    }

    /// Up to `limit` objects (and at most [`MAX_BATCH_BYTES`]) in `range`, after `cursor`.
    pub fn scan(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
        cursor: Option<&[u8]>,
        limit: u32,
    ) -> Result<ScanBatch, StateError> {
        let (t, pos) = self.locate(table, index)?;
        let after = match cursor {
            None => None,
            Some(c) => Some(
                cursor::decode(c)
                    .map(|(k, id)| (Bytes::from(k), Bytes::from(id)))
                    .ok_or_else(|| StateError::BadCursor(format!("table {table} index {index}")))?,
            ),
        };
        let data = &self.data[t];
        let mut batch = ScanBatch::default();
        let (mut bytes, mut last) = (0usize, None);
        let mut it = data.range(pos, range, after).peekable();
        while let Some(entry) = it.peek() {
            let full = batch.objects.len() >= limit.max(1) as usize || bytes >= MAX_BATCH_BYTES;
            if full {
                batch.cursor = last.as_ref().map(|(k, id): &Entry| cursor::encode(k, id));
                return Ok(batch);
            }
            if let Some(row) = data.rows.get(entry.1) {
                bytes += row.object.len();
                batch.objects.push(row.object.clone());
            }
            last = it.next().map(|(k, id)| (k.clone(), id.clone()));
        }
        Ok(batch)
    }

    /// The last object whose key in `index` falls in `range`.
    pub fn last(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
    ) -> Result<Option<Bytes>, StateError> {
        let start = Bytes::from(range.start());
        let end = range.end().map(Bytes::from);
        // Between the start and the end every entry is in range, so the last one is the answer.
        self.pick(table, index, |data, pos| data.last_in(pos, start, end))
    }

    /// The highest stamp over `tables` (the index a blocking read reports and waits past).
    pub fn max_stamp<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a str>,
    ) -> Result<u64, StateError> {
        let mut max = 0;
        for table in tables {
            max = max.max(self.table_stamp(table)?);
        }
        Ok(max)
    }

    /// A hash of every table's objects, index keys and last-change index, in schema order
    /// and key order: two servers with the same hash hold the same state.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = super::StateHasher::default();
        for (t, schema) in self.schema.tables.iter().enumerate() {
            h.table(&schema.name, self.last_change[t]);
            let id_pos = self.data[t].id_pos;
            for (id, row) in self.data[t].rows.iter() {
                let keys = (0..schema.indexes.len())
                    .map(|pos| row.keys_at(pos, id_pos, id).iter().map(|k| &k[..]));
                h.row(id, &row.object, keys);
            }
        }
        h.finish()
    }

    /// Number of objects in `table`.
    pub fn len(&self, table: &str) -> Result<usize, StateError> {
        Ok(self.data[self.schema.lookup(table)?].rows.len())
    }

    /// Bytes held by `table` (objects and index keys).
    pub fn bytes(&self, table: &str) -> Result<u64, StateError> {
        Ok(self.data[self.schema.lookup(table)?].bytes)
    }

    /// The stamp of `table`: the FSM index of its last change (0 if never changed).
    pub fn table_stamp(&self, table: &str) -> Result<u64, StateError> {
        Ok(self.last_change[self.schema.lookup(table)?])
    }

    /// The objects of the table at schema position `t`, in id order, each with its index
    /// keys in schema order: what a snapshot writes. Panics if `t` is not a position of this
    /// schema (callers iterate [`Schema::tables`]).
    pub fn rows_at(&self, t: usize) -> impl Iterator<Item = (&Bytes, RowKeys<'_>)> + '_ {
        let (id_pos, indexes) = (self.data[t].id_pos, self.data[t].indexes.len());
        self.data[t].rows.iter().map(move |(id, row)| {
            let keys = RowKeys {
                row,
                id,
                id_pos,
                indexes,
            };
            (&row.object, keys)
        })
    }

    /// Number of objects, bytes held and last-change index of the table at schema position
    /// `t` (see [`Tables::rows_at`]).
    pub fn stats_at(&self, t: usize) -> (usize, u64, u64) {
        let d = &self.data[t];
        (d.rows.len(), d.bytes, self.last_change[t])
    }

    pub(super) fn writable(&self, owner: &str, table: &str) -> Result<usize, StateError> {
        let t = self.schema.lookup(table)?;
        let table_owner = self.schema.owner(t);
        if table_owner != owner {
            return Err(StateError::NotOwner(format!(
                "table {table} belongs to plugin {table_owner}, not {owner}"
            )));
        }
        Ok(t)
    }

    /// Inserts `object` with its index `keys` on behalf of plugin `owner`, replacing the
    /// object with the same id; returns the replaced object. Stamps the table with `index`.
    pub fn insert(
        &mut self,
        owner: &str,
        stamp: u64,
        table: &str,
        object: &[u8],
        keys: &[IndexKeys],
    ) -> Result<Option<Bytes>, StateError> {
        let t = self.writable(owner, table)?;
        let schema = &self.schema.tables[t];
        let mut row_keys: Vec<Option<Vec<Bytes>>> = vec![None; schema.indexes.len()];
        for ik in keys {
            let pos = self.schema.index_pos(t, &ik.index)?;
            if row_keys[pos].is_some() {
                return Err(StateError::BadKeys(format!(
                    "table {table}: index {} given twice",
                    ik.index
                )));
            }
            row_keys[pos] = Some(ik.keys.iter().map(|k| Bytes::from(k.as_slice())).collect());
        }
        let row_keys: Vec<Vec<Bytes>> = row_keys
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        self.insert_row(t, stamp, Bytes::from(object), row_keys)
    }

    /// Inserts `object` into table `t` with its keys per index (schema order), checking every
    /// invariant of the module doc; replaces the object with the same id and returns it.
    pub(super) fn insert_row(
        &mut self,
        t: usize,
        stamp: u64,
        object: Bytes,
        row_keys: Vec<Vec<Bytes>>,
    ) -> Result<Option<Bytes>, StateError> {
        let schema = &self.schema.tables[t];
        let table = &schema.name;
        if row_keys.len() != schema.indexes.len() {
            return Err(StateError::BadKeys(format!(
                "table {table}: keys for {} indexes, the table has {}",
                row_keys.len(),
                schema.indexes.len()
            )));
        }
        for (ix, ks) in schema.indexes.iter().zip(&row_keys) {
            if ks.is_empty() && !ix.allow_missing {
                return Err(StateError::BadKeys(format!(
                    "table {table}: missing value for index {}",
                    ix.name
                )));
            }
            if ks.len() > 1 && !ix.multi {
                return Err(StateError::BadKeys(format!(
                    "table {table}: {} keys for single-valued index {}",
                    ks.len(),
                    ix.name
                )));
            }
        }
        let Some(id) = row_keys[self.schema.id_pos[t]].first().cloned() else {
            return Err(StateError::BadKeys(format!("table {table}: no id key")));
        };
        let data = &self.data[t];
        for (pos, (ix, ks)) in schema.indexes.iter().zip(&row_keys).enumerate() {
            // The id index is the rows map: only the object itself holds its id there.
            if !ix.unique || pos == data.id_pos {
                continue;
            }
            for k in ks {
                let range = KeyRange::Exact(k.to_vec());
                if let Some((_, other)) = data.range(pos, &range, None).find(|(_, o)| **o != id) {
                    return Err(StateError::UniqueViolation(format!(
                        "table {table} index {} key {} is held by object {}",
                        ix.name,
                        DisplayKey(k),
                        DisplayKey(other)
                    )));
                }
            }
        }
        let data = &mut self.data[t];
        let row = data.make_row(object, row_keys);
        let old = data.replace_row(id.clone(), row);
        self.note(t, &id, old.as_ref());
        self.last_change[t] = stamp;
        Ok(old.map(|r| r.object))
    }

    /// Deletes the object with this `id` key on behalf of `owner`; returns it.
    pub fn delete(
        &mut self,
        owner: &str,
        stamp: u64,
        table: &str,
        id: &[u8],
    ) -> Result<Option<Bytes>, StateError> {
        let t = self.writable(owner, table)?;
        let Some((id, old)) = self.data[t].remove_row(id) else {
            return Ok(None);
        };
        self.note(t, &id, Some(&old));
        self.last_change[t] = stamp;
        Ok(Some(old.object))
    }

    /// Deletes every object whose key in the prefix-capable `index` starts with `prefix`.
    pub fn delete_prefix(
        &mut self,
        owner: &str,
        stamp: u64,
        table: &str,
        index_name: &str,
        prefix: &[u8],
    ) -> Result<u64, StateError> {
        let t = self.writable(owner, table)?;
        let pos = self.schema.index_pos(t, index_name)?;
        if !self.schema.tables[t].indexes[pos].prefix {
            return Err(StateError::NoPrefix(format!(
                "table {table} index {index_name}"
            )));
        }
        let range = KeyRange::Prefix(prefix.to_vec());
        let mut ids: Vec<Bytes> = self.data[t]
            .range(pos, &range, None)
            .map(|(_, id)| id.clone())
            .collect();
        ids.dedup();
        let mut n = 0;
        for id in ids {
            if let Some((id, old)) = self.data[t].remove_row(&id) {
                self.note(t, &id, Some(&old));
                n += 1;
            }
        }
        if n > 0 {
            self.last_change[t] = stamp;
        }
        Ok(n)
    }
}
