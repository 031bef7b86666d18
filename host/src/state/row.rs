//! The layout of one table's data: rows (an object and its index keys in two pointers)
//! and the persistent maps of the `id` index and every other index.
//!
//! Owns: [`Row`]'s layout invariant and [`TableData`], the per-table maps every lookup,
//! insert and delete goes through.

use imbl::{OrdMap, OrdSet};
use std::ops::Bound as StdBound;
use std::sync::Arc;

use super::*;

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
pub(super) struct Row {
    pub(super) object: Bytes,
    pub(super) keys: Option<Arc<[Bytes]>>,
}

/// Keys per index, in schema order, from a row's counts (`keys[0]`, see [`Row`]).
pub(super) fn counts(keys: &[Bytes]) -> impl Iterator<Item = usize> + '_ {
    keys[0]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
}

impl Row {
    /// The keys of index `pos` (`id` is the row's id, at `id_pos`).
    pub(super) fn keys_at<'a>(&'a self, pos: usize, id_pos: usize, id: &'a Bytes) -> &'a [Bytes] {
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
    pub(super) fn index_keys(&self, id_pos: usize) -> impl Iterator<Item = (usize, &Bytes)> + '_ {
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
    pub(super) row: &'a Row,
    pub(super) id: &'a Bytes,
    pub(super) id_pos: usize,
    pub(super) indexes: usize,
}

impl<'a> RowKeys<'a> {
    /// The keys of each index, in schema order.
    pub fn per_index(&self) -> impl Iterator<Item = &'a [Bytes]> + 'a {
        let (row, id, id_pos) = (self.row, self.id, self.id_pos);
        (0..self.indexes).map(move |pos| row.keys_at(pos, id_pos, id))
    }
}

/// Most distinct key-count patterns a table interns; rows past it get their own.
pub(super) const MAX_PATTERNS: usize = 64;

/// (key, id): an index entry. For the `id` index both are the id.
pub(super) type Entry = (Bytes, Bytes);

#[derive(Clone, Default)]
pub(super) struct TableData {
    /// Objects by id. This map is also the `id` index: its entries are (id, id).
    pub(super) rows: OrdMap<Bytes, Row>,
    /// Per index: (key, id) entries; the set at the `id` index's position stays empty.
    pub(super) indexes: Vec<OrdSet<Entry>>,
    /// Position of the `id` index.
    pub(super) id_pos: usize,
    pub(super) bytes: u64,
    /// Key counts per index seen in this table's rows, shared by the rows that have them
    /// (see [`Row`]).
    pub(super) patterns: Vec<Bytes>,
}

/// An index entry as lookups see it: (key, id).
pub(super) type EntryRef<'a> = (&'a Bytes, &'a Bytes);

/// Restricts entries in key order, from the range's start, to the range.
pub(super) fn bounded<'a>(
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
    pub(super) fn new(schema: &TableSchema, id_pos: usize) -> Self {
        TableData {
            rows: OrdMap::new(),
            indexes: vec![OrdSet::new(); schema.indexes.len()],
            id_pos,
            bytes: 0,
            patterns: Vec::new(),
        }
    }

    /// Index entries of `pos` in `range`, in key order, after the entry `after`.
    pub(super) fn range<'a>(
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
    pub(super) fn last_in(
        &self,
        pos: usize,
        start: Bytes,
        end: Option<Bytes>,
    ) -> Option<EntryRef<'_>> {
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
    pub(super) fn remove_row(&mut self, id: &[u8]) -> Option<(Bytes, Row)> {
        let (id, row) = self.rows.remove_with_key(id)?;
        for (pos, k) in row.index_keys(self.id_pos) {
            self.indexes[pos].remove(&(k.clone(), id.clone()));
        }
        self.bytes -= row_bytes(&id, &row);
        Some((id, row))
    }

    /// Stores `row` under `id` in place of the row there, if any, which it returns: one
    /// search of the rows map instead of a removal and an insertion.
    pub(super) fn replace_row(&mut self, id: Bytes, row: Row) -> Option<Row> {
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

    pub(super) fn put_row(&mut self, id: Bytes, row: Row) {
        for (pos, k) in row.index_keys(self.id_pos) {
            self.indexes[pos].insert((k.clone(), id.clone()));
        }
        self.bytes += row_bytes(&id, &row);
        self.rows.insert(id, row);
    }

    /// A row of `object` with its keys per index (schema order, the id's included).
    pub(super) fn make_row(&mut self, object: Bytes, row_keys: Vec<Vec<Bytes>>) -> Row {
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
pub(super) fn row_bytes(id: &Bytes, row: &Row) -> u64 {
    let keys: usize = row
        .keys
        .as_ref()
        .map_or(0, |keys| keys[1..].iter().map(|k| k.len()).sum());
    (row.object.len() + id.len() + keys) as u64
}
