//! The state transaction a plugin runs in, as an object-safe trait.
//!
//! Two implementations exist: inside wasm the calls go to the host's `state` import
//! (`crate::wasm`); natively, [`crate::MemStore`] is an in-memory store with the same
//! semantics, so a plugin's unit tests and benchmarks run with plain `cargo test`.
//! Plugin code is written against `dyn Txn` and does not know which one it has.

use std::fmt;

/// One end of a key range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// No bound.
    Unbounded,
    /// The key itself is in range.
    Included(Vec<u8>),
    /// The key itself is not in range.
    Excluded(Vec<u8>),
}

/// Which keys of an index a lookup visits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// Keys equal to this one.
    Exact(Vec<u8>),
    /// Keys starting with these bytes.
    Prefix(Vec<u8>),
    /// Keys between two bounds.
    Between(Bound, Bound),
}

impl KeyRange {
    /// Whether `key` falls in this range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Exact(k) => key == k.as_slice(),
            KeyRange::Prefix(p) => key.starts_with(p),
            KeyRange::Between(start, end) => {
                let above = match start {
                    Bound::Unbounded => true,
                    Bound::Included(s) => key >= s.as_slice(),
                    Bound::Excluded(s) => key > s.as_slice(),
                };
                let below = match end {
                    Bound::Unbounded => true,
                    Bound::Included(e) => key <= e.as_slice(),
                    Bound::Excluded(e) => key < e.as_slice(),
                };
                above && below
            }
        }
    }

    /// The first key after every key in this range, if there is one (an exclusive upper
    /// bound for a reverse lookup).
    pub fn end(&self) -> Option<Vec<u8>> {
        let after = |k: &[u8]| {
            let mut e = k.to_vec();
            e.push(0);
            e
        };
        match self {
            KeyRange::Exact(k) => Some(after(k)),
            KeyRange::Prefix(p) => crate::key::prefix_successor(p),
            KeyRange::Between(_, Bound::Included(e)) => Some(after(e)),
            KeyRange::Between(_, Bound::Excluded(e)) => Some(e.clone()),
            KeyRange::Between(_, Bound::Unbounded) => None,
        }
    }

    /// Whether no key after `key` (in byte order) can be in this range, so a scan in key
    /// order can stop.
    pub fn is_past(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Exact(k) => key > k.as_slice(),
            KeyRange::Prefix(p) => !key.starts_with(p) && key > p.as_slice(),
            KeyRange::Between(_, Bound::Unbounded) => false,
            KeyRange::Between(_, Bound::Included(e)) => key > e.as_slice(),
            KeyRange::Between(_, Bound::Excluded(e)) => key >= e.as_slice(),
        }
    }

    /// The smallest key that can be in this range: for an excluded start `s`, `s` followed
    /// by a zero byte, so a scan never walks the keys equal to `s`.
    pub fn start(&self) -> Vec<u8> {
        match self {
            KeyRange::Exact(k) | KeyRange::Prefix(k) => k.clone(),
            KeyRange::Between(Bound::Included(k), _) => k.clone(),
            KeyRange::Between(Bound::Excluded(k), _) => {
                let mut s = k.clone();
                s.push(0);
                s
            }
            KeyRange::Between(Bound::Unbounded, _) => Vec::new(),
        }
    }
}

/// The keys of one object in one index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexKeys {
    /// Index name.
    pub index: String,
    /// The object's keys in that index.
    pub keys: Vec<Vec<u8>>,
}

/// One batch of a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanBatch {
    /// Encoded objects, in key order.
    pub objects: Vec<Vec<u8>>,
    /// Where the next batch starts; `None` once the scan is complete.
    pub cursor: Option<Vec<u8>>,
}

/// Why a state call failed; mirrors the WIT `state-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// No such table.
    UnknownTable(String),
    /// No such index on the table.
    UnknownIndex(String),
    /// The table belongs to another plugin.
    NotOwner(String),
    /// A unique index already holds the key for another object.
    UniqueViolation(String),
    /// The index keys given with an insert break the schema.
    BadKeys(String),
    /// A write during a read-only query.
    ReadOnly(String),
    /// A cursor not produced by `scan` for this table and index.
    BadCursor(String),
    /// The index does not answer prefix lookups.
    NoPrefix(String),
    /// A read of another plugin's table, or a message to another plugin's command, that
    /// the plugin does not declare ([`crate::Plugin::reads`], [`crate::Plugin::sends`]).
    NotDeclared(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, msg) = match self {
            StateError::UnknownTable(m) => ("unknown table", m),
            StateError::UnknownIndex(m) => ("unknown index", m),
            StateError::NotOwner(m) => ("table owned by another plugin", m),
            StateError::UniqueViolation(m) => ("unique index violation", m),
            StateError::BadKeys(m) => ("index keys break the schema", m),
            StateError::ReadOnly(m) => ("write in a read-only transaction", m),
            StateError::BadCursor(m) => ("bad scan cursor", m),
            StateError::NoPrefix(m) => ("index does not support prefix lookups", m),
            StateError::NotDeclared(m) => ("not declared by the plugin", m),
        };
        write!(f, "{what}: {msg}")
    }
}

impl std::error::Error for StateError {}

/// A state transaction: lookups by index and, during `apply`, writes.
///
/// Keys are the bytes the table's indexers produce (see [`crate::Index`]); objects are the
/// encoded records. Most plugin code uses the typed helpers on [`crate::Table`] and
/// [`crate::Index`] instead of calling these directly.
pub trait Txn {
    /// The object whose key in the unique `index` equals `key`.
    fn get(&self, table: &str, index: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// The first object whose key in `index` falls in `range`.
    fn first(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
    ) -> Result<Option<Vec<u8>>, StateError>;
    /// The last object whose key in `index` falls in `range`.
    fn last(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
    ) -> Result<Option<Vec<u8>>, StateError>;
    /// Up to `limit` objects in `range`, after `cursor`.
    fn scan(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
        cursor: Option<&[u8]>,
        limit: u32,
    ) -> Result<ScanBatch, StateError>;
    /// Inserts or replaces (by `id`) an object with its keys per index; returns the
    /// replaced one. The keys are moved, as they go to the host.
    fn insert(
        &mut self,
        table: &str,
        object: &[u8],
        keys: Vec<IndexKeys>,
    ) -> Result<Option<Vec<u8>>, StateError>;
    /// Deletes the object with this `id` key; returns it.
    fn delete(&mut self, table: &str, id: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Deletes every object whose key in `index` starts with `prefix`; returns the count.
    fn delete_prefix(&mut self, table: &str, index: &str, prefix: &[u8])
    -> Result<u64, StateError>;
    /// The raft index of the last write to `table` (0 if never written).
    fn table_index(&self, table: &str) -> Result<u64, StateError>;
    /// Sends a message: `command` of `plugin` runs with `payload` once the current command
    /// returns `Ok`, in the same transaction (see [`crate::Message`], the typed way).
    fn send(&mut self, plugin: &str, command: &str, payload: &[u8]) -> Result<(), StateError>;
}

/// The layout of a scan cursor: the position (index key, id) of the last object returned.
/// Opaque to plugins; shared by the host's store and [`crate::MemStore`] so both page alike.
pub mod cursor {
    /// Encodes a position as `u32 key length (big-endian) ++ key ++ id`.
    pub fn encode(key: &[u8], id: &[u8]) -> Vec<u8> {
        let mut c = Vec::with_capacity(4 + key.len() + id.len());
        c.extend_from_slice(&(key.len() as u32).to_be_bytes());
        c.extend_from_slice(key);
        c.extend_from_slice(id);
        c
    }

    /// Decodes a cursor; `None` if it is malformed.
    pub fn decode(c: &[u8]) -> Option<(&[u8], &[u8])> {
        let len = usize::try_from(u32::from_be_bytes(c.get(..4)?.try_into().ok()?)).ok()?;
        let end = len.checked_add(4)?;
        Some((c.get(4..end)?, c.get(end..)?))
    }
}
