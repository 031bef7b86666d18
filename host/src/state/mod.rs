//! The in-memory state store: tables and indexes whose schema comes from the loaded plugins.
//!
//! Owns: the table data, index maintenance on insert and delete, lookups (exact, prefix,
//! range, first) and transactions. Every table lives in persistent ordered maps (`imbl`), so a
//! read snapshot is an `Arc`/root clone: O(1) at any size, by structural sharing.
//!
//! Invariants, enforced in [`Tables::insert`]:
//! - every object has exactly one key in the table's `id` index, and is stored under it;
//! - a single-valued index holds one key per object, or none if it allows missing values;
//! - a unique index maps a key to at most one object; a violation fails the insert with an
//!   error naming table, index and key, and changes nothing;
//! - an object's index entries are exactly the keys it was inserted with: replacing or
//!   deleting it removes its old entries first.
//!
//! Only the plugin that declares a table may write it ([`StateError::NotOwner`]).
//!
//! Transactions: [`Store::write`] hands out one [`WriteTxn`] at a time (a mutex), stamped
//! with the raft index; [`WriteTxn::commit`] publishes it atomically, then wakes the
//! watchers of the tables it changed; dropping it aborts. [`Store::read`] returns a
//! [`ReadTxn`] over the last committed snapshot; readers never block the writer and never
//! see a partial transaction. Inside a transaction, [`WriteTxn::savepoint`] starts an undo
//! journal (the row each write replaced), so rolling back one command of a log entry costs
//! what the command wrote, and writes after the first one to a tree node change it in place
//! instead of copying its path again. [`Store::watch`] and [`Store::abandon`] serve blocking reads
//! (see `watch`).

mod watch;

pub use watch::{Wake, WatchSet};

use imbl::{OrdMap, OrdSet};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ops::Bound as StdBound;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Immutable, cheaply cloned bytes (keys and objects).
pub type Bytes = Arc<[u8]>;

/// Why a state operation failed. Mirrors the WIT `state-error`; each message names the table,
/// index or key involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// No such table in the loaded plugin set.
    #[error("unknown table: {0}")]
    UnknownTable(String),
    /// No such index on the table.
    #[error("unknown index: {0}")]
    UnknownIndex(String),
    /// The table belongs to another plugin.
    #[error("table owned by another plugin: {0}")]
    NotOwner(String),
    /// A unique index already holds the key for another object.
    #[error("unique index violation: {0}")]
    UniqueViolation(String),
    /// The keys given with an insert break the table's schema.
    #[error("index keys break the schema: {0}")]
    BadKeys(String),
    /// A write in a read-only transaction.
    #[error("write in a read-only transaction: {0}")]
    ReadOnly(String),
    /// A cursor not produced by `scan` for this table and index.
    #[error("bad scan cursor: {0}")]
    BadCursor(String),
    /// The index does not answer prefix lookups.
    #[error("index does not support prefix lookups: {0}")]
    NoPrefix(String),
}

/// A table, its indexes and the plugin that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// Table name.
    pub name: String,
    /// The plugin that declared the table; only it writes the table.
    pub owner: String,
    /// Indexes; exactly one is the unique `id` index.
    pub indexes: Vec<IndexSchema>,
    /// The version of the layout of the table's objects (the plugin's `layout`, from 1).
    /// The store never reads objects; upgrades compare layouts to decide whether the
    /// objects need the new plugin's `migrate`.
    pub layout: u32,
}

/// The schema of the whole store: every table of every loaded plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    tables: Vec<TableSchema>,
    /// Per table, the position of its `id` index.
    id_pos: Vec<usize>,
    by_name: BTreeMap<String, usize>,
}

impl Schema {
    /// A schema of these tables. Refuses, naming the table, a duplicate table name or a table
    /// without a unique, single-valued, never-missing `id` index: the invariants every
    /// insert relies on.
    pub fn new(tables: Vec<TableSchema>) -> Result<Self, String> {
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
            id_pos,
            by_name,
        })
    }

    /// The tables, in declaration order.
    pub fn tables(&self) -> &[TableSchema] {
        &self.tables
    }

    /// The schema position of `table`, if the schema has it.
    pub fn position(&self, table: &str) -> Option<usize> {
        self.by_name.get(table).copied()
    }

    fn lookup(&self, table: &str) -> Result<usize, StateError> {
        self.by_name
            .get(table)
            .copied()
            .ok_or_else(|| StateError::UnknownTable(format!("table {table}")))
    }

    fn index_pos(&self, t: usize, index: &str) -> Result<usize, StateError> {
        let schema = &self.tables[t];
        schema
            .indexes
            .iter()
            .position(|i| i.name == index)
            .ok_or_else(|| StateError::UnknownIndex(format!("table {} index {index}", schema.name)))
    }
}

use fsmhost_guest::DisplayKey;
/// Key ranges are the SDK's types, so the host store and the SDK's native `MemStore` (which
/// plugin tests run against) interpret every range, and page every scan, identically.
pub use fsmhost_guest::{Bound, IndexKeys, IndexSchema, KeyRange, cursor};

/// A batch of objects from [`Tables::scan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanBatch {
    /// Objects in key order.
    pub objects: Vec<Bytes>,
    /// Where the next batch starts; `None` when the scan is complete.
    pub cursor: Option<Vec<u8>>,
}

/// Most bytes of objects one scan batch returns (at least one object is always returned).
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// An object and its index keys, laid out for a million rows (two pointers, as small as
/// the rows map's entries can be): one allocation holds the keys of every index but `id`
/// (the rows map's key is the id), after the count of keys per index; a row with no key
/// but its id (a kv entry without a lock session) has no such allocation.
///
/// Invariant: `keys` is `None` exactly when every index but `id` has no key for this row.
/// Otherwise `keys[0]` is the counts, a big-endian `u32` per index in schema order (the
/// `id` index's is 1), interned per table ([`TableData::make_row`]) so rows with the same
/// counts share them; `keys[1..]` are the keys of the other indexes in schema order, as
/// many per index as the counts say.
#[derive(Clone)]
struct Row {
    object: Bytes,
    keys: Option<Arc<[Bytes]>>,
}

/// Keys per index, in schema order, from a row's counts (`keys[0]`, see [`Row`]).
fn counts(keys: &[Bytes]) -> impl Iterator<Item = usize> + '_ {
    keys[0]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
}

impl Row {
    /// The keys of index `pos` (`id` is the row's id, at `id_pos`).
    fn keys_at<'a>(&'a self, pos: usize, id_pos: usize, id: &'a Bytes) -> &'a [Bytes] {
        if pos == id_pos {
            return std::slice::from_ref(id);
        }
        let Some(keys) = &self.keys else {
            return &[];
        };
        let (mut start, mut n) = (1, 0);
        for (p, count) in counts(keys).enumerate().take(pos + 1) {
            if p == pos {
                n = count;
            } else if p != id_pos {
                start += count;
            }
        }
        &keys[start..start + n]
    }

    /// The keys of every index but `id`, with their index position.
    fn index_keys(&self, id_pos: usize) -> impl Iterator<Item = (usize, &Bytes)> + '_ {
        self.keys.iter().flat_map(move |keys| {
            let mut start = 1;
            counts(keys)
                .enumerate()
                .filter(move |(p, _)| *p != id_pos)
                .flat_map(move |(p, n)| {
                    let of_index = &keys[start..start + n];
                    start += n;
                    of_index.iter().map(move |k| (p, k))
                })
        })
    }
}

/// The index keys of one row as [`Tables::rows_at`] gives them.
pub struct RowKeys<'a> {
    row: &'a Row,
    id: &'a Bytes,
    id_pos: usize,
    indexes: usize,
}

impl<'a> RowKeys<'a> {
    /// The keys of each index, in schema order.
    pub fn per_index(&self) -> impl Iterator<Item = &'a [Bytes]> + 'a {
        let (row, id, id_pos) = (self.row, self.id, self.id_pos);
        (0..self.indexes).map(move |pos| row.keys_at(pos, id_pos, id))
    }
}

/// Most distinct key-count patterns a table interns; rows past it get their own.
const MAX_PATTERNS: usize = 64;

/// (key, id): an index entry. For the `id` index both are the id.
type Entry = (Bytes, Bytes);

#[derive(Clone, Default)]
struct TableData {
    /// Objects by id. This map is also the `id` index: its entries are (id, id).
    rows: OrdMap<Bytes, Row>,
    /// Per index: (key, id) entries; the set at the `id` index's position stays empty.
    indexes: Vec<OrdSet<Entry>>,
    /// Position of the `id` index.
    id_pos: usize,
    bytes: u64,
    /// Key counts per index seen in this table's rows, shared by the rows that have them
    /// (see [`Row`]).
    patterns: Vec<Bytes>,
}

/// An index entry as lookups see it: (key, id).
type EntryRef<'a> = (&'a Bytes, &'a Bytes);

/// Restricts entries in key order, from the range's start, to the range.
fn bounded<'a>(
    entries: impl Iterator<Item = EntryRef<'a>> + 'a,
    range: &'a KeyRange,
) -> Box<dyn Iterator<Item = EntryRef<'a>> + 'a> {
    Box::new(
        entries
            .take_while(move |(k, _)| !range.is_past(k))
            .filter(move |(k, _)| range.contains(k)),
    )
}

impl TableData {
    fn new(schema: &TableSchema, id_pos: usize) -> Self {
        TableData {
            rows: OrdMap::new(),
            indexes: vec![OrdSet::new(); schema.indexes.len()],
            id_pos,
            bytes: 0,
            patterns: Vec::new(),
        }
    }

    /// Index entries of `pos` in `range`, in key order, after the entry `after`.
    fn range<'a>(
        &'a self,
        pos: usize,
        range: &'a KeyRange,
        after: Option<Entry>,
    ) -> Box<dyn Iterator<Item = EntryRef<'a>> + 'a> {
        let start = Bytes::from(range.start());
        if pos == self.id_pos {
            let from = match after {
                Some((_, id)) if id >= start => StdBound::Excluded(id),
                _ => StdBound::Included(start),
            };
            let rows = self.rows.range((from, StdBound::Unbounded));
            return bounded(rows.map(|(id, _)| (id, id)), range);
        }
        let start: Entry = (start, Bytes::from(&[][..]));
        let from = match after {
            Some(a) if a >= start => StdBound::Excluded(a),
            _ => StdBound::Included(start),
        };
        let entries = self.indexes[pos].range((from, StdBound::Unbounded));
        bounded(entries.map(|(k, id)| (k, id)), range)
    }

    /// The last entry of index `pos` with a key in [start, end).
    fn last_in(&self, pos: usize, start: Bytes, end: Option<Bytes>) -> Option<EntryRef<'_>> {
        if pos == self.id_pos {
            let hi = end.map_or(StdBound::Unbounded, StdBound::Excluded);
            let mut rows = self.rows.range((StdBound::Included(start), hi));
            return rows.next_back().map(|(id, _)| (id, id));
        }
        let empty = || Bytes::from(&[][..]);
        let hi = end.map_or(StdBound::Unbounded, |e| StdBound::Excluded((e, empty())));
        let mut entries = self.indexes[pos].range((StdBound::Included((start, empty())), hi));
        entries.next_back().map(|(k, id)| (k, id))
    }

    /// Removes the row under `id` with its index entries; returns its stored id and the row.
    fn remove_row(&mut self, id: &[u8]) -> Option<(Bytes, Row)> {
        let (id, row) = self.rows.remove_with_key(id)?;
        for (pos, k) in row.index_keys(self.id_pos) {
            self.indexes[pos].remove(&(k.clone(), id.clone()));
        }
        self.bytes -= row_bytes(&id, &row);
        Some((id, row))
    }

    /// Stores `row` under `id` in place of the row there, if any, which it returns: one
    /// search of the rows map instead of a removal and an insertion.
    fn replace_row(&mut self, id: Bytes, row: Row) -> Option<Row> {
        self.bytes += row_bytes(&id, &row);
        let old = self.rows.insert(id.clone(), row.clone());
        if let Some(old) = &old {
            // The old entries go before the new ones come: a key in both stays.
            for (pos, k) in old.index_keys(self.id_pos) {
                self.indexes[pos].remove(&(k.clone(), id.clone()));
            }
            self.bytes -= row_bytes(&id, old);
        }
        for (pos, k) in row.index_keys(self.id_pos) {
            self.indexes[pos].insert((k.clone(), id.clone()));
        }
        old
    }

    fn put_row(&mut self, id: Bytes, row: Row) {
        for (pos, k) in row.index_keys(self.id_pos) {
            self.indexes[pos].insert((k.clone(), id.clone()));
        }
        self.bytes += row_bytes(&id, &row);
        self.rows.insert(id, row);
    }

    /// A row of `object` with its keys per index (schema order, the id's included).
    fn make_row(&mut self, object: Bytes, row_keys: Vec<Vec<Bytes>>) -> Row {
        let id_pos = self.id_pos;
        let only_id = |(p, ks): (usize, &Vec<Bytes>)| p == id_pos || ks.is_empty();
        if row_keys.iter().enumerate().all(only_id) {
            return Row { object, keys: None };
        }
        let counts: Vec<u8> = row_keys
            .iter()
            .flat_map(|ks| (ks.len() as u32).to_be_bytes())
            .collect();
        let counts = match self.patterns.iter().find(|p| p[..] == counts[..]) {
            Some(p) => p.clone(),
            None => {
                let p = Bytes::from(counts);
                if self.patterns.len() < MAX_PATTERNS {
                    self.patterns.push(p.clone());
                }
                p
            }
        };
        let keys: Arc<[Bytes]> = std::iter::once(counts)
            .chain(
                row_keys
                    .into_iter()
                    .enumerate()
                    .filter(|(p, _)| *p != id_pos)
                    .flat_map(|(_, ks)| ks),
            )
            .collect();
        Row {
            object,
            keys: Some(keys),
        }
    }
}

/// What a row adds to [`Tables::bytes`]: its object and every index key, the id's included.
fn row_bytes(id: &Bytes, row: &Row) -> u64 {
    let keys: usize = row
        .keys
        .as_ref()
        .map_or(0, |keys| keys[1..].iter().map(|k| k.len()).sum());
    (row.object.len() + id.len() + keys) as u64
}

/// The data of every table at one point: what a transaction reads and writes. Cloning it is
/// O(number of tables).
#[derive(Clone)]
pub struct Tables {
    schema: Arc<Schema>,
    data: Vec<TableData>,
    /// Per table: raft index of its last change (Consul's `index` table).
    last_change: Vec<u64>,
    journal: Journal,
}

/// The undo journal of a write transaction's open savepoints.
///
/// Invariant: while `open > 0`, `undo` holds, oldest first, every row change made since the
/// outermost open savepoint was taken (each write records the row it replaced), so undoing
/// them newest first restores every table's rows and index entries exactly. With no
/// savepoint open nothing is recorded (readers, restores and commits carry an empty one).
#[derive(Clone, Default)]
struct Journal {
    undo: Vec<Undo>,
    open: usize,
}

impl Journal {
    /// Ends the newest open savepoint; after the outermost, nothing needs undoing.
    fn close(&mut self) {
        self.open = self.open.saturating_sub(1);
        if self.open == 0 {
            self.undo.clear();
        }
    }
}

/// One row change: in table `t`, the row under `id` was `old` (`None`: there was none),
/// and the table's last-change index was `stamp`.
#[derive(Clone)]
struct Undo {
    t: usize,
    id: Bytes,
    old: Option<Row>,
    stamp: u64,
}

impl Tables {
    fn empty(schema: Arc<Schema>) -> Self {
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
    fn none() -> Self {
        static NONE: std::sync::LazyLock<Arc<Schema>> = std::sync::LazyLock::new(Arc::default);
        Tables {
            schema: NONE.clone(),
            data: Vec::new(),
            last_change: Vec::new(),
            journal: Journal::default(),
        }
    }

    /// Records, while a savepoint is open, that table `t`'s row under `id` was `old`.
    fn note(&mut self, t: usize, id: &Bytes, old: Option<&Row>) {
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

    fn locate(&self, table: &str, index: &str) -> Result<(usize, usize), StateError> {
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
    fn pick<'a>(
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

    /// The highest last-change index over `tables` (for blocking reads).
    pub fn max_index<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a str>,
    ) -> Result<u64, StateError> {
        let mut max = 0;
        for table in tables {
            max = max.max(self.table_index(table)?);
        }
        Ok(max)
    }

    /// A hash of every table's objects, index keys and last-change index, in schema order
    /// and key order: two servers with the same hash hold the same state.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        for (t, schema) in self.schema.tables.iter().enumerate() {
            field(schema.name.as_bytes());
            field(&self.last_change[t].to_be_bytes());
            let id_pos = self.data[t].id_pos;
            for (id, row) in self.data[t].rows.iter() {
                field(id);
                field(&row.object);
                for pos in 0..schema.indexes.len() {
                    let keys = row.keys_at(pos, id_pos, id);
                    field(&(keys.len() as u64).to_be_bytes());
                    for k in keys {
                        field(k);
                    }
                }
            }
        }
        h.finalize().into()
    }

    /// Number of objects in `table`.
    pub fn len(&self, table: &str) -> Result<usize, StateError> {
        Ok(self.data[self.schema.lookup(table)?].rows.len())
    }

    /// Bytes held by `table` (objects and index keys).
    pub fn bytes(&self, table: &str) -> Result<u64, StateError> {
        Ok(self.data[self.schema.lookup(table)?].bytes)
    }

    /// Raft index of the last change to `table` (0 if never changed).
    pub fn table_index(&self, table: &str) -> Result<u64, StateError> {
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

    fn writable(&self, owner: &str, table: &str) -> Result<usize, StateError> {
        let t = self.schema.lookup(table)?;
        let schema = &self.schema.tables[t];
        if schema.owner != owner {
            return Err(StateError::NotOwner(format!(
                "table {table} belongs to plugin {}, not {owner}",
                schema.owner
            )));
        }
        Ok(t)
    }

    /// Inserts `object` with its index `keys` on behalf of plugin `owner`, replacing the
    /// object with the same id; returns the replaced object. Stamps the table with `index`.
    pub fn insert(
        &mut self,
        owner: &str,
        index: u64,
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
        self.insert_row(t, index, Bytes::from(object), row_keys)
    }

    /// Inserts `object` into table `t` with its keys per index (schema order), checking every
    /// invariant of the module doc; replaces the object with the same id and returns it.
    fn insert_row(
        &mut self,
        t: usize,
        index: u64,
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
        self.last_change[t] = index;
        Ok(old.map(|r| r.object))
    }

    /// Deletes the object with this `id` key on behalf of `owner`; returns it.
    pub fn delete(
        &mut self,
        owner: &str,
        index: u64,
        table: &str,
        id: &[u8],
    ) -> Result<Option<Bytes>, StateError> {
        let t = self.writable(owner, table)?;
        let Some((id, old)) = self.data[t].remove_row(id) else {
            return Ok(None);
        };
        self.note(t, &id, Some(&old));
        self.last_change[t] = index;
        Ok(Some(old.object))
    }

    /// Deletes every object whose key in the prefix-capable `index` starts with `prefix`.
    pub fn delete_prefix(
        &mut self,
        owner: &str,
        index: u64,
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
            self.last_change[t] = index;
        }
        Ok(n)
    }
}

/// A store being rebuilt from a snapshot, object by object. Every object goes through the
/// checks an insert makes (index cardinality, unique keys), and an id may appear only once,
/// so a damaged or hostile snapshot cannot build a store that breaks the module's
/// invariants. Nothing is visible to anyone until [`Restore::finish`].
pub struct Restore {
    tables: Tables,
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
    pub fn set_table_index(&mut self, t: usize, index: u64) {
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

/// The store: the last committed [`Tables`], the single-writer lock, and the watches.
pub struct Store {
    current: RwLock<Arc<Tables>>,
    writer: Mutex<()>,
    notifier: watch::Notifier,
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

    /// The write transaction for the entry at raft `index`. Blocks while another is open.
    pub fn write(&self, index: u64) -> WriteTxn<'_> {
        let guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tables = Tables::clone(&self.read().tables);
        let base = tables.last_change.clone();
        WriteTxn {
            store: self,
            _guard: guard,
            tables,
            base,
            index,
        }
    }
}

/// A consistent, read-only view of the store.
#[derive(Clone)]
pub struct ReadTxn {
    tables: Arc<Tables>,
}

impl std::ops::Deref for ReadTxn {
    type Target = Tables;
    fn deref(&self) -> &Tables {
        &self.tables
    }
}

/// The one open write transaction. Dropping it without [`WriteTxn::commit`] aborts it.
pub struct WriteTxn<'s> {
    store: &'s Store,
    _guard: MutexGuard<'s, ()>,
    tables: Tables,
    /// Per table, the last-change index when the transaction began.
    base: Vec<u64>,
    index: u64,
}

/// A point a [`WriteTxn`] can roll back to ([`WriteTxn::rollback_to`]) or keep the writes
/// made since ([`WriteTxn::release`]). O(1) to take; while one is open every row a write
/// replaces is kept in the transaction's undo journal. Savepoints nest; end
/// them newest first. One neither rolled back nor released keeps its writes, and the
/// journal is kept until the commit.
#[must_use = "a savepoint is ended with rollback_to or release"]
pub struct Savepoint {
    /// Length of the undo journal when it was taken.
    at: usize,
}

impl WriteTxn<'_> {
    /// The raft index this transaction writes at.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The transaction's tables (reads see its own writes).
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The tables, for writes.
    pub fn tables_mut(&mut self) -> &mut Tables {
        &mut self.tables
    }

    /// Moves the transaction on to the raft `index` of the next command of its log entry:
    /// later writes stamp their tables with it.
    pub fn set_index(&mut self, index: u64) {
        self.index = index;
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
    /// exactly the rows, index entries, byte counts and last-change indexes they held.
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

#[cfg(test)]
mod tests;
