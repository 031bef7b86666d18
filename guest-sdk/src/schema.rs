//! Tables and indexes, declared by the plugin author with indexer functions.
//!
//! This is Consul's `indexer.go` style: an index has a *from-object* function (the keys an
//! object has in the index), a *from-args* function (the key a query's arguments look up)
//! and optionally a *prefix-from-args* function (the key prefix for a prefix lookup). Index
//! keys are computed inside the plugin, both when a command inserts an object (they travel
//! with `insert`) and when the host asks through the `index` / `index-args` exports (restores,
//! index rebuilds, host-side lookups). One function serves both, so they cannot disagree.
//!
//! Invariants checked by the host at load (and by [`crate::MemStore`] natively): every table
//! has a unique, single-valued, non-missing index named `id`; index and table names are
//! unique; an object has exactly one key in a non-multi index unless the index allows
//! missing values.

use serde::{Serialize, de::DeserializeOwned};
use std::marker::PhantomData;

use crate::cbor::{decode_cbor, to_cbor};
use crate::compact::{Compact, Record};
use crate::error::Error;
use crate::txn::{IndexKeys, KeyRange, Txn};

/// The keys an object has in one index, filled by a from-object function.
#[derive(Debug, Default)]
pub struct Keys(pub(crate) Vec<Vec<u8>>);

impl Keys {
    /// Adds one key. A single-valued index takes exactly one; a multi index any number; an
    /// allow-missing index may take none.
    pub fn push(&mut self, key: impl Into<Vec<u8>>) {
        self.0.push(key.into());
    }
}

/// The declared shape of an index, as `describe` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSchema {
    /// Index name.
    pub name: String,
    /// At most one object per key.
    pub unique: bool,
    /// Several keys per object.
    pub multi: bool,
    /// An object may have no key.
    pub allow_missing: bool,
    /// Answers prefix lookups.
    pub prefix: bool,
}

/// The declared shape of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// Table name.
    pub name: String,
    /// Its indexes.
    pub indexes: Vec<IndexSchema>,
    /// The layout of its objects (see [`Table::layout`]).
    pub layout: u32,
}

/// An index of a table of `T`, looked up with arguments of type `A`.
///
/// Declare indexes as `static` items that name their [`Table`] (a reference to its
/// `static`, so the table's name is written once, in the table), and list them in it:
///
/// ```
/// use fsmhost_guest::{Index, Key, Keys, Table};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Node { name: String, tags: Vec<String> }
///
/// static NODES: Table<Node> = Table::new("nodes", &[&NODES_ID, &NODES_TAG]);
/// static NODES_ID: Index<Node, String> = Index::new(
///     &NODES, "id",
///     |n: &Node, keys| keys.push(Key::new().string_lower(&n.name)),
///     |name: &String| Key::new().string_lower(name).build(),
/// ).unique();
/// static NODES_TAG: Index<Node, String> = Index::new(
///     &NODES, "tag",
///     |n: &Node, keys| for t in &n.tags { keys.push(Key::new().string(t)) },
///     |tag: &String| Key::new().string(tag).build(),
/// ).multi().allow_missing();
/// ```
///
/// Listing an index in a table other than the one it names is refused when the plugin is
/// built ([`crate::Plugin::table`]).
pub struct Index<T: 'static, A: 'static> {
    table: &'static Table<T>,
    name: &'static str,
    unique: bool,
    multi: bool,
    allow_missing: bool,
    from_object: fn(&T, &mut Keys),
    from_args: fn(&A) -> Vec<u8>,
    prefix_from_args: Option<fn(&A) -> Vec<u8>>,
    _marker: PhantomData<fn(&T, &A)>,
}

impl<T, A> Index<T, A> {
    /// A non-unique, single-valued index of `table` named `name`.
    pub const fn new(
        table: &'static Table<T>,
        name: &'static str,
        from_object: fn(&T, &mut Keys),
        from_args: fn(&A) -> Vec<u8>,
    ) -> Self {
        Index {
            table,
            name,
            unique: false,
            multi: false,
            allow_missing: false,
            from_object,
            from_args,
            prefix_from_args: None,
            _marker: PhantomData,
        }
    }
    /// At most one object per key.
    pub const fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
    /// An object may have several keys.
    pub const fn multi(mut self) -> Self {
        self.multi = true;
        self
    }
    /// An object may have no key; it is then absent from the index.
    pub const fn allow_missing(mut self) -> Self {
        self.allow_missing = true;
        self
    }
    /// Enables prefix lookups, with `prefix_from_args` turning arguments into a key prefix.
    pub const fn prefix(mut self, prefix_from_args: fn(&A) -> Vec<u8>) -> Self {
        self.prefix_from_args = Some(prefix_from_args);
        self
    }
    /// The index name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
    /// The table the index belongs to.
    pub const fn table(&self) -> &'static Table<T> {
        self.table
    }
    /// The key `args` look up.
    pub fn key(&self, args: &A) -> Vec<u8> {
        (self.from_args)(args)
    }
    /// The key prefix `args` look up, if the index supports prefixes.
    pub fn prefix_key(&self, args: &A) -> Result<Vec<u8>, Error> {
        match self.prefix_from_args {
            Some(f) => Ok(f(args)),
            None => Err(Error::internal(format!(
                "index {}.{} does not support prefix lookups",
                self.table.name, self.name
            ))),
        }
    }
}

impl<T: DeserializeOwned, A> Index<T, A> {
    /// The object whose key equals `args`' key (a unique index).
    pub fn get(&self, tx: &dyn Txn, args: &A) -> Result<Option<T>, Error> {
        tx.get(self.table.name, self.name, &self.key(args))?
            .map(|b| decode_object(self.table.name, &b))
            .transpose()
    }
    /// The first object in key order whose key falls in `range`.
    pub fn first(&self, tx: &dyn Txn, range: &KeyRange) -> Result<Option<T>, Error> {
        tx.first(self.table.name, self.name, range)?
            .map(|b| decode_object(self.table.name, &b))
            .transpose()
    }
    /// The last object in key order whose key falls in `range`.
    pub fn last(&self, tx: &dyn Txn, range: &KeyRange) -> Result<Option<T>, Error> {
        tx.last(self.table.name, self.name, range)?
            .map(|b| decode_object(self.table.name, &b))
            .transpose()
    }
    /// Every object whose key equals `args`' key, in `id` order.
    pub fn iter<'t>(&self, tx: &'t dyn Txn, args: &A) -> Iter<'t, T> {
        self.iter_range(tx, KeyRange::Exact(self.key(args)))
    }
    /// Every object whose key starts with `args`' prefix, in key order.
    pub fn iter_prefix<'t>(&self, tx: &'t dyn Txn, args: &A) -> Result<Iter<'t, T>, Error> {
        Ok(self.iter_range(tx, KeyRange::Prefix(self.prefix_key(args)?)))
    }
    /// Every object whose key falls in `range`, in key order.
    pub fn iter_range<'t>(&self, tx: &'t dyn Txn, range: KeyRange) -> Iter<'t, T> {
        Iter {
            tx,
            table: self.table.name,
            index: self.name,
            range,
            cursor: None,
            buffer: Vec::new().into_iter(),
            done: false,
            _marker: PhantomData,
        }
    }
    /// Deletes every object whose key starts with `args`' prefix; returns how many.
    pub fn delete_prefix(&self, tx: &mut dyn Txn, args: &A) -> Result<u64, Error> {
        Ok(tx.delete_prefix(self.table.name, self.name, &self.prefix_key(args)?)?)
    }
}

/// What a [`Table`] needs from each of its indexes, independent of the argument type.
pub trait AnyIndex<T>: Sync {
    /// The index name.
    fn name(&self) -> &'static str;
    /// The name of the table the index was declared for ([`Index::new`]).
    fn table_name(&self) -> &'static str;
    /// The declared shape.
    fn schema(&self) -> IndexSchema;
    /// The object's keys in this index.
    fn object_keys(&self, object: &T) -> Vec<Vec<u8>>;
    /// The key (or prefix) for CBOR-encoded arguments.
    fn args_key(&self, args: &[u8], prefix: bool) -> Result<Vec<u8>, Error>;
}

impl<T, A: DeserializeOwned> AnyIndex<T> for Index<T, A> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn table_name(&self) -> &'static str {
        self.table.name
    }
    fn schema(&self) -> IndexSchema {
        IndexSchema {
            name: self.name.to_string(),
            unique: self.unique,
            multi: self.multi,
            allow_missing: self.allow_missing,
            prefix: self.prefix_from_args.is_some(),
        }
    }
    fn object_keys(&self, object: &T) -> Vec<Vec<u8>> {
        let mut keys = Keys::default();
        (self.from_object)(object, &mut keys);
        keys.0
    }
    fn args_key(&self, args: &[u8], prefix: bool) -> Result<Vec<u8>, Error> {
        let what = || format!("arguments of index {}.{}", self.table.name, self.name);
        let args: A = decode_cbor(args, what)?;
        if prefix {
            self.prefix_key(&args)
        } else {
            Ok(self.key(&args))
        }
    }
}

/// A table of objects of type `T` (stored as CBOR), with its indexes. One of them must be a
/// unique index named `id`. The table's name is written here only: each of its indexes
/// refers to the table ([`Index::new`]).
pub struct Table<T: 'static> {
    name: &'static str,
    indexes: &'static [&'static dyn AnyIndex<T>],
    layout: u32,
    compact: bool,
}

impl<T> Table<T> {
    /// Declares a table, at layout 1.
    pub const fn new(name: &'static str, indexes: &'static [&'static dyn AnyIndex<T>]) -> Self {
        Table {
            name,
            indexes,
            layout: 1,
            compact: false,
        }
    }
    /// Sets the version of the layout of the table's objects (1 unless set; 0 is refused
    /// at load). Raise it in a release that stores the objects differently (a field
    /// renamed, retyped, or added without a serde default), and declare a migration from
    /// the old layout with [`crate::Plugin::migration`]: the host refuses to install a
    /// release that changes a layout without one. Adding or changing indexes needs no
    /// new layout; the host rebuilds them.
    pub const fn layout(mut self, layout: u32) -> Self {
        self.layout = layout;
        self
    }
    /// Stores the objects compact: a CBOR array of the top-level struct's field values in
    /// declaration order, without the field names (SpacetimeDB's and most databases' row
    /// form). Small records shrink by a third or more and decode faster; kv's entries went
    /// from 194 to 133 bytes. Reading accepts either form, so the objects an earlier
    /// layout stored with names still read (in a migration, for example).
    ///
    /// The field order becomes part of the layout: reordering, inserting or removing a
    /// field needs a new [`Table::layout`] and a migration; only trailing fields may be
    /// added (with `#[serde(default)]`) or skipped when empty (`skip_serializing_if`), and
    /// writing an object that skips a field before one it writes is an error.
    pub const fn compact(mut self) -> Self {
        self.compact = true;
        self
    }
    /// The table name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
    /// Refuses an index listed here that was declared for another table (its
    /// [`Index::new`] names a different table).
    fn check(&self) -> Result<(), Error> {
        match self.indexes.iter().find(|ix| ix.table_name() != self.name) {
            Some(ix) => Err(Error::internal(format!(
                "table {} lists index {}.{}, an index of another table",
                self.name,
                ix.table_name(),
                ix.name()
            ))),
            None => Ok(()),
        }
    }
    /// Every index key of `object`, as `insert` wants them.
    pub fn index_keys(&self, object: &T) -> Vec<IndexKeys> {
        self.indexes
            .iter()
            .map(|ix| IndexKeys {
                index: ix.name().to_string(),
                keys: ix.object_keys(object),
            })
            .collect()
    }
    fn id_key(&self, object: &T) -> Result<Vec<u8>, Error> {
        let id = self
            .indexes
            .iter()
            .find(|ix| ix.name() == "id")
            .ok_or_else(|| Error::internal(format!("table {} has no id index", self.name)))?;
        id.object_keys(object)
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal(format!("object of table {} has no id key", self.name)))
    }
}

impl<T: Serialize + DeserializeOwned> Table<T> {
    /// `object` as this table stores it (compact or with field names, see
    /// [`Table::compact`]).
    pub fn encode(&self, object: &T) -> Result<Vec<u8>, Error> {
        if self.compact {
            to_cbor(&Compact(object))
        } else {
            to_cbor(object)
        }
    }
    /// `object`, to be stored in this table by a migration (see
    /// [`crate::Plugin::migration`]).
    pub fn migrated(&self, object: &T) -> Result<Migrated, Error> {
        Ok(Migrated {
            table: self.name.to_string(),
            object: self.encode(object)?,
        })
    }
    /// Inserts `object`, replacing the object with the same id; returns the replaced one,
    /// decoded only if asked ([`Stored::decode`]).
    pub fn insert(&self, tx: &mut dyn Txn, object: &T) -> Result<Option<Stored<T>>, Error> {
        let bytes = self.encode(object)?;
        let old = tx.insert(self.name, &bytes, self.index_keys(object))?;
        Ok(old.map(|bytes| self.stored(bytes)))
    }
    /// Deletes the object with `object`'s id; returns the deleted one, decoded only if
    /// asked ([`Stored::decode`]).
    pub fn delete(&self, tx: &mut dyn Txn, object: &T) -> Result<Option<Stored<T>>, Error> {
        let old = tx.delete(self.name, &self.id_key(object)?)?;
        Ok(old.map(|bytes| self.stored(bytes)))
    }
    fn stored(&self, bytes: Vec<u8>) -> Stored<T> {
        Stored {
            table: self.name,
            bytes,
            _marker: PhantomData,
        }
    }
}

/// An object of a table as the store handed it back (the one an insert replaced, or a
/// delete removed), still encoded: most callers drop it, and decoding is a large share of
/// a small command, so it is decoded only by [`Stored::decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored<T> {
    table: &'static str,
    bytes: Vec<u8>,
    _marker: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Stored<T> {
    /// The object, decoded.
    pub fn decode(&self) -> Result<T, Error> {
        decode_object(self.table, &self.bytes)
    }
    /// The object's bytes as stored (CBOR).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// An object a migration stores: a table of the plugin and the object's bytes in that
/// table's current layout. Made by [`Table::migrated`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The table.
    pub table: String,
    /// The encoded object.
    pub object: Vec<u8>,
}

/// A table whose object type is hidden: what `describe` and the `index` export need.
pub trait AnyTable: Sync {
    /// The table name.
    fn name(&self) -> &'static str;
    /// Refuses an index listed in the table that was declared for another one.
    fn check(&self) -> Result<(), Error>;
    /// The declared shape.
    fn schema(&self) -> TableSchema;
    /// Every index key of an encoded object.
    fn index_object(&self, object: &[u8]) -> Result<Vec<IndexKeys>, Error>;
    /// The key (or prefix) for encoded arguments of `index`.
    fn index_args(&self, index: &str, args: &[u8], prefix: bool) -> Result<Vec<u8>, Error>;
}

impl<T: Serialize + DeserializeOwned> AnyTable for Table<T> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn check(&self) -> Result<(), Error> {
        Table::check(self)
    }
    fn schema(&self) -> TableSchema {
        TableSchema {
            name: self.name.to_string(),
            indexes: self.indexes.iter().map(|ix| ix.schema()).collect(),
            layout: self.layout,
        }
    }
    fn index_object(&self, object: &[u8]) -> Result<Vec<IndexKeys>, Error> {
        let object: T = decode_object(self.name, object)?;
        Ok(self.index_keys(&object))
    }
    fn index_args(&self, index: &str, args: &[u8], prefix: bool) -> Result<Vec<u8>, Error> {
        let ix = self
            .indexes
            .iter()
            .find(|ix| ix.name() == index)
            .ok_or_else(|| Error::not_found(format!("table {} has no index {index}", self.name)))?;
        ix.args_key(args, prefix)
    }
}

fn decode_object<T: DeserializeOwned>(table: &str, bytes: &[u8]) -> Result<T, Error> {
    decode_cbor(bytes, || format!("object of table {table}"))
        .map(|r: Record<T>| r.0)
        .map_err(|e| Error::internal(e.message))
}

/// How many objects a scan asks the host for at a time.
pub const SCAN_BATCH: u32 = 256;

/// Objects of an index lookup, fetched from the host in batches of [`SCAN_BATCH`].
pub struct Iter<'t, T> {
    tx: &'t dyn Txn,
    table: &'static str,
    index: &'static str,
    range: KeyRange,
    cursor: Option<Vec<u8>>,
    buffer: std::vec::IntoIter<Vec<u8>>,
    done: bool,
    _marker: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Iterator for Iter<'_, T> {
    type Item = Result<T, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(bytes) = self.buffer.next() {
                return Some(decode_object(self.table, &bytes));
            }
            if self.done {
                return None;
            }
            let batch = match self.tx.scan(
                self.table,
                self.index,
                &self.range,
                self.cursor.as_deref(),
                SCAN_BATCH,
            ) {
                Ok(b) => b,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            };
            self.done = batch.cursor.is_none();
            self.cursor = batch.cursor;
            self.buffer = batch.objects.into_iter();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Note {
        id: String,
        text: String,
    }

    static NOTES_ID: Index<Note, String> = Index::new(
        &NOTES,
        "id",
        |n: &Note, k| k.push(n.id.as_bytes().to_vec()),
        |id: &String| id.as_bytes().to_vec(),
    )
    .unique();
    static NOTES: Table<Note> = Table::new("notes", &[&NOTES_ID]);

    fn note(id: &str, text: &str) -> Note {
        Note {
            id: id.into(),
            text: text.into(),
        }
    }

    #[test]
    fn insert_and_delete_hand_back_the_old_object_decoded_on_demand() {
        let mut tx = MemStore::new(&[NOTES.schema()]).expect("schema");
        assert_eq!(
            NOTES.insert(&mut tx, &note("a", "one")).expect("insert"),
            None
        );
        let replaced = NOTES.insert(&mut tx, &note("a", "two")).expect("insert");
        let replaced = replaced.expect("the first note was replaced");
        assert_eq!(replaced.decode().expect("decode"), note("a", "one"));
        assert_eq!(
            replaced.bytes(),
            to_cbor(&note("a", "one")).expect("encode")
        );
        let deleted = NOTES.delete(&mut tx, &note("a", "")).expect("delete");
        assert_eq!(
            deleted.expect("deleted").decode().expect("decode"),
            note("a", "two")
        );
        assert_eq!(NOTES.delete(&mut tx, &note("a", "")).expect("delete"), None);
    }

    static DRAFTS: Table<Note> = Table::new("drafts", &[&NOTES_ID]);

    #[test]
    fn an_index_names_its_table_once_and_a_foreign_index_is_refused() {
        assert_eq!(NOTES_ID.table().name(), "notes");
        assert_eq!(AnyIndex::table_name(&NOTES_ID), "notes");
        assert!(NOTES.check().is_ok());
        let err = DRAFTS.check().expect_err("notes.id listed in drafts");
        assert_eq!(
            err.message,
            "table drafts lists index notes.id, an index of another table"
        );
    }

    #[test]
    fn a_stored_object_that_does_not_decode_names_its_table() {
        let bad = NOTES.stored(vec![0xff]);
        let err = bad.decode().expect_err("not CBOR");
        assert!(
            err.message.contains("object of table notes"),
            "{}",
            err.message
        );
    }
}
