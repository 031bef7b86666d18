//! `state.bin`: a consistent read snapshot of the state store as one gzip stream, written and
//! read record by record so that neither side ever holds it whole in memory.
//!
//! Layout, inside the gzip stream (integers big-endian):
//!
//! ```text
//! "FSMHOST-STATE\n"                       magic, 14 bytes
//! u32 len, CBOR StateHeader               format, FSM index, raft log id and membership,
//!                                         the plugin set with its table schemas
//! per table, in the header's order:
//!   b'T' u32 table number, u64 last-change index, u64 rows
//!   rows x (b'R' u32 len, object, per index of the table: u32 n, n x (u32 len, key))
//! b'E' u64 total rows, [32] state hash     the end: nothing may follow
//! ```
//!
//! Invariants, checked on read: the magic and format; every length under a cap (a hostile
//! file cannot make the reader allocate without bound); tables in order, each with exactly
//! the rows it announced; the keys obey the schema ([`crate::state::Restore`] checks what an
//! insert checks); the hash of the rebuilt store equals the hash the writer recorded, so a
//! restored store is the saved one; the gzip trailer's CRC-32 and length match; nothing
//! follows the end record.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use super::SnapshotError;
use crate::fsm::SystemState;
use crate::membership::{LogId, StoredMembership};
use crate::plugin::PluginSet;
use crate::state::{IndexSchema, Restore, Schema, Store, TableSchema, Tables};

const MAGIC: &[u8; 14] = b"FSMHOST-STATE\n";
/// The format version this build writes and reads.
pub const FORMAT: u32 = 1;
/// Largest header, object or key accepted on read.
const MAX_FIELD: u32 = 64 << 20;
/// Most keys one object may have in one index, on read.
const MAX_KEYS: u32 = 1 << 20;

/// An index as a snapshot records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRecord {
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

/// A table as a snapshot records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRecord {
    /// Table name.
    pub name: String,
    /// Its indexes, in schema order (the order of each row's keys).
    pub indexes: Vec<IndexRecord>,
    /// The layout of its objects (absent in snapshots written before layouts: 1).
    #[serde(default = "first_layout")]
    pub layout: u32,
}

fn first_layout() -> u32 {
    1
}

/// A plugin as a snapshot records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// Plugin name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its edition.
    pub edition: String,
    /// SHA-256 of its component, hex.
    pub hash: String,
    /// The tables it owns.
    pub tables: Vec<TableRecord>,
}

/// What a `state.bin` says about itself before its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHeader {
    /// [`FORMAT`].
    pub format: u32,
    /// The FSM index of the last applied command (Consul's `LastIndex`).
    pub fsm_index: u64,
    /// The last raft log entry applied.
    pub last_log_id: Option<LogId>,
    /// The raft membership as of that entry.
    pub membership: StoredMembership,
    /// The plugin set the state was written under.
    pub plugins: Vec<PluginRecord>,
    /// The host's own replicated state (absent in snapshots written before it existed).
    #[serde(default)]
    pub system: SystemState,
    /// The components of the plugins installed through the log (`system.plugins`), by
    /// SHA-256 hex, so that a server that gets this snapshot gets them too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ByteBuf>,
}

impl StateHeader {
    /// The header of a snapshot of state applied under `plugins`.
    pub fn new(
        plugins: &PluginSet,
        fsm_index: u64,
        last_log_id: Option<LogId>,
        membership: StoredMembership,
        system: SystemState,
    ) -> Self {
        let set = plugins;
        let plugins = set
            .plugins()
            .iter()
            .map(|p| {
                let d = p.description();
                PluginRecord {
                    name: d.name.clone(),
                    version: d.version.clone(),
                    edition: d.edition.clone(),
                    hash: p.hash_hex(),
                    tables: d.tables.iter().map(table_record).collect(),
                }
            })
            .collect();
        let components = system
            .plugins
            .iter()
            .filter_map(|(name, installed)| {
                let p = set.get(name)?;
                (p.hash_hex() == installed.sha256).then(|| {
                    (
                        installed.sha256.clone(),
                        ByteBuf::from(p.component().to_vec()),
                    )
                })
            })
            .collect();
        StateHeader {
            format: FORMAT,
            fsm_index,
            last_log_id,
            membership,
            plugins,
            system,
            components,
        }
    }

    /// Every table in the order the rows are written: the plugins' order, then each
    /// plugin's declaration order (the store schema's order).
    pub fn tables(&self) -> impl Iterator<Item = (&PluginRecord, &TableRecord)> {
        self.plugins
            .iter()
            .flat_map(|p| p.tables.iter().map(move |t| (p, t)))
    }

    /// Refuses a snapshot whose plugin set differs from the loaded one, naming the first
    /// difference: a plugin missing on either side, another version or edition, a table or
    /// an index added, removed or declared differently. The component hash may differ (a
    /// rebuild of the same version).
    pub fn check_against(&self, loaded: &PluginSet) -> Result<(), SnapshotError> {
        let ours = StateHeader::new(
            loaded,
            0,
            None,
            StoredMembership::default(),
            SystemState::default(),
        );
        let incompatible = |m: String| Err(SnapshotError::Incompatible(m));
        for p in &self.plugins {
            let Some(q) = ours.plugins.iter().find(|q| q.name == p.name) else {
                return incompatible(format!(
                    "the snapshot has plugin {} {} ({}), which is not loaded",
                    p.name, p.version, p.edition
                ));
            };
            if p.edition != q.edition {
                // Name the first table and index the editions differ in, when they do.
                let detail = match diff_tables(&p.name, &p.tables, &q.tables) {
                    Err(SnapshotError::Incompatible(m)) => format!(" ({m})"),
                    _ => String::new(),
                };
                return incompatible(format!(
                    "plugin {}: the snapshot's edition is {}, the loaded plugin's is {}{detail}",
                    p.name, p.edition, q.edition
                ));
            }
            if p.version != q.version {
                return incompatible(format!(
                    "plugin {}: the snapshot was written by version {}, the loaded one is {}",
                    p.name, p.version, q.version
                ));
            }
            diff_tables(&p.name, &p.tables, &q.tables)?;
        }
        if let Some(q) = ours
            .plugins
            .iter()
            .find(|q| !self.plugins.iter().any(|p| p.name == q.name))
        {
            return incompatible(format!(
                "plugin {} {} is loaded but the snapshot has no state for it",
                q.name, q.version
            ));
        }
        Ok(())
    }
}

fn table_record(t: &TableSchema) -> TableRecord {
    TableRecord {
        name: t.name.clone(),
        indexes: t
            .indexes
            .iter()
            .map(|ix: &IndexSchema| IndexRecord {
                name: ix.name.clone(),
                unique: ix.unique,
                multi: ix.multi,
                allow_missing: ix.allow_missing,
                prefix: ix.prefix,
            })
            .collect(),
        layout: t.layout,
    }
}

fn diff_tables(
    plugin: &str,
    snap: &[TableRecord],
    loaded: &[TableRecord],
) -> Result<(), SnapshotError> {
    let incompatible =
        |m: String| Err(SnapshotError::Incompatible(format!("plugin {plugin}: {m}")));
    for (a, b) in snap.iter().zip(loaded) {
        if a.name != b.name {
            return incompatible(format!(
                "the snapshot has table {} where the loaded plugin has table {}",
                a.name, b.name
            ));
        }
        if a.layout != b.layout {
            return incompatible(format!(
                "table {} has layout {} in the snapshot and {} in the loaded plugin",
                a.name, a.layout, b.layout
            ));
        }
        for ix in &a.indexes {
            match b.indexes.iter().find(|j| j.name == ix.name) {
                None => {
                    return incompatible(format!(
                        "table {} index {} is in the snapshot but not in the loaded plugin",
                        a.name, ix.name
                    ));
                }
                Some(j) if j != ix => {
                    return incompatible(format!(
                        "table {} index {} is declared differently (snapshot: {}; loaded: {})",
                        a.name,
                        ix.name,
                        describe_index(ix),
                        describe_index(j)
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(j) = b
            .indexes
            .iter()
            .find(|j| !a.indexes.iter().any(|ix| ix.name == j.name))
        {
            return incompatible(format!(
                "table {} index {} is in the loaded plugin but not in the snapshot",
                a.name, j.name
            ));
        }
        if a.indexes != b.indexes {
            return incompatible(format!(
                "table {}: the indexes are in another order",
                a.name
            ));
        }
    }
    match snap.len().cmp(&loaded.len()) {
        std::cmp::Ordering::Greater => incompatible(format!(
            "table {} is in the snapshot but not in the loaded plugin",
            snap[loaded.len()].name
        )),
        std::cmp::Ordering::Less => incompatible(format!(
            "table {} is in the loaded plugin but not in the snapshot",
            loaded[snap.len()].name
        )),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

fn describe_index(ix: &IndexRecord) -> String {
    let flags: Vec<&str> = [
        (ix.unique, "unique"),
        (ix.multi, "multi"),
        (ix.allow_missing, "allow-missing"),
        (ix.prefix, "prefix"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| *name)
    .collect();
    if flags.is_empty() {
        "plain".to_string()
    } else {
        flags.join(", ")
    }
}

/// What a `state.bin` holds per table, for `snapshot inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableStats {
    /// Table name.
    pub name: String,
    /// The plugin that owns it.
    pub plugin: String,
    /// Objects.
    pub records: u64,
    /// Bytes of objects and index keys (the store's own measure of a table's size).
    pub bytes: u64,
}

/// Writes `tables` (a read snapshot) as `state.bin` into `out`, with `header`. Returns `out`
/// after the gzip stream is finished (not synced: the caller syncs files).
pub fn write<W: Write>(tables: &Tables, header: &StateHeader, out: W) -> io::Result<W> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut w = BufWriter::with_capacity(256 << 10, gz);
    w.write_all(MAGIC)?;
    let head = crate::codec::to_cbor(header);
    w.write_all(&(head.len() as u32).to_be_bytes())?;
    w.write_all(&head)?;
    let mut total = 0u64;
    for t in 0..tables.schema().tables().len() {
        let (rows, _, last_change) = tables.stats_at(t);
        w.write_all(b"T")?;
        w.write_all(&(t as u32).to_be_bytes())?;
        w.write_all(&last_change.to_be_bytes())?;
        w.write_all(&(rows as u64).to_be_bytes())?;
        for (object, keys) in tables.rows_at(t) {
            w.write_all(b"R")?;
            put_bytes(&mut w, object)?;
            for ks in keys.per_index() {
                w.write_all(&(ks.len() as u32).to_be_bytes())?;
                for k in ks {
                    put_bytes(&mut w, k)?;
                }
            }
        }
        total += rows as u64;
    }
    w.write_all(b"E")?;
    w.write_all(&total.to_be_bytes())?;
    w.write_all(&tables.hash())?;
    let gz = w.into_inner().map_err(|e| e.into_error())?;
    gz.finish()
}

fn put_bytes(w: &mut impl Write, b: &[u8]) -> io::Result<()> {
    w.write_all(&(b.len() as u32).to_be_bytes())?;
    w.write_all(b)
}

/// A `state.bin` being read: the header is known, the rows follow.
pub struct StateReader<R: Read> {
    r: BufReader<flate2::bufread::GzDecoder<BufReader<R>>>,
    header: StateHeader,
}

fn corrupt(m: impl Into<String>) -> SnapshotError {
    SnapshotError::Corrupt(m.into())
}

impl<R: Read> StateReader<R> {
    /// Reads the magic and the header.
    pub fn open(inner: R) -> Result<Self, SnapshotError> {
        let gz = flate2::bufread::GzDecoder::new(BufReader::with_capacity(256 << 10, inner));
        let mut r = BufReader::with_capacity(256 << 10, gz);
        let mut magic = [0u8; 14];
        read_exact(&mut r, &mut magic, "the magic")?;
        if &magic != MAGIC {
            return Err(corrupt("not an fsmhost state.bin (wrong magic)"));
        }
        let head = read_field(&mut r, "the header")?;
        let header: StateHeader =
            crate::codec::from_cbor(&head, "state.bin header").map_err(SnapshotError::Corrupt)?;
        if header.format != FORMAT {
            return Err(corrupt(format!(
                "state.bin format {} is not the format {FORMAT} this build reads",
                header.format
            )));
        }
        Ok(StateReader { r, header })
    }

    /// The header.
    pub fn header(&self) -> &StateHeader {
        &self.header
    }

    /// Reads every row, calling `row(table number, object, keys per index)`; checks the
    /// table order, the row counts, the end record and that nothing follows it. Returns
    /// the recorded state hash.
    pub(super) fn for_each_row(
        &mut self,
        mut table: impl FnMut(usize, u64) -> Result<(), SnapshotError>,
        mut row: impl FnMut(usize, Vec<u8>, Vec<Vec<Vec<u8>>>) -> Result<(), SnapshotError>,
    ) -> Result<[u8; 32], SnapshotError> {
        let index_counts: Vec<usize> = self.header.tables().map(|(_, t)| t.indexes.len()).collect();
        let r = &mut self.r;
        let mut total = 0u64;
        for (t, &n_indexes) in index_counts.iter().enumerate() {
            expect_tag(r, b'T', || format!("the start of table number {t}"))?;
            let number = read_u32(r, "a table number")?;
            if number as usize != t {
                return Err(corrupt(format!(
                    "table number {number} where table number {t} was expected"
                )));
            }
            let last_change = read_u64(r, "a table index")?;
            table(t, last_change)?;
            let rows = read_u64(r, "a row count")?;
            for i in 0..rows {
                let at = || format!("row {i} of table number {t}");
                expect_tag(r, b'R', at)?;
                let object = read_field(r, "an object")?;
                let mut keys = Vec::with_capacity(n_indexes);
                for _ in 0..n_indexes {
                    let n = read_u32(r, "a key count")?;
                    if n > MAX_KEYS {
                        return Err(corrupt(format!("{}: {n} keys in one index", at())));
                    }
                    let mut ks = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        ks.push(read_field(r, "a key")?);
                    }
                    keys.push(ks);
                }
                row(t, object, keys)?;
            }
            total += rows;
        }
        expect_tag(r, b'E', || "the end record".to_string())?;
        let recorded_total = read_u64(r, "the row total")?;
        if recorded_total != total {
            return Err(corrupt(format!(
                "the end record counts {recorded_total} rows, the tables hold {total}"
            )));
        }
        let mut hash = [0u8; 32];
        read_exact(r, &mut hash, "the state hash")?;
        // Reading past the end makes the decoder check the gzip trailer (CRC-32, length).
        let mut rest = [0u8; 1];
        match r.read(&mut rest) {
            Ok(0) => {}
            Ok(_) => return Err(corrupt("bytes follow the end record")),
            Err(e) => return Err(corrupt(format!("after the end record: {e}"))),
        }
        if !r
            .get_mut()
            .get_mut()
            .fill_buf()
            .map_err(SnapshotError::io)?
            .is_empty()
        {
            return Err(corrupt("bytes follow the compressed stream"));
        }
        Ok(hash)
    }

    /// Rebuilds the store: every object checked as an insert would check it, and the hash
    /// of the result compared with the hash the writer recorded. `schema` must be the
    /// loaded plugins' (see [`StateHeader::check_against`]).
    pub fn restore(mut self, schema: Schema) -> Result<(StateHeader, Store), SnapshotError> {
        if schema.tables().len() != self.header.tables().count() {
            return Err(SnapshotError::Incompatible(format!(
                "the snapshot has {} tables, the loaded plugins {}",
                self.header.tables().count(),
                schema.tables().len()
            )));
        }
        let mut restore = Restore::new(schema);
        let names: Vec<String> = self.header.tables().map(|(_, t)| t.name.clone()).collect();
        let recorded = {
            let restore = std::cell::RefCell::new(&mut restore);
            self.for_each_row(
                |t, last_change| {
                    restore.borrow_mut().set_table_stamp(t, last_change);
                    Ok(())
                },
                |t, object, keys| {
                    restore
                        .borrow_mut()
                        .insert(t, object, keys)
                        .map_err(|e| corrupt(format!("table {}: {e}", names[t])))
                },
            )?
        };
        if restore.hash() != recorded {
            return Err(corrupt(
                "the restored state's hash differs from the hash recorded when it was written",
            ));
        }
        Ok((self.header, restore.finish()))
    }

    /// Reads every row without building a store: records and bytes per table, for
    /// `snapshot inspect`. Checks the structure (not the schema rules, nor the hash).
    pub fn stats(mut self) -> Result<(StateHeader, Vec<TableStats>), SnapshotError> {
        let mut stats: Vec<TableStats> = self
            .header
            .tables()
            .map(|(p, t)| TableStats {
                name: t.name.clone(),
                plugin: p.name.clone(),
                records: 0,
                bytes: 0,
            })
            .collect();
        self.for_each_row(
            |_, _| Ok(()),
            |t, object, keys| {
                let s = &mut stats[t];
                s.records += 1;
                s.bytes +=
                    (object.len() + keys.iter().flatten().map(Vec::len).sum::<usize>()) as u64;
                Ok(())
            },
        )?;
        Ok((self.header, stats))
    }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), SnapshotError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupt(format!("the file ends inside {what}")),
        _ => corrupt(format!("reading {what}: {e}")),
    })
}

fn expect_tag(
    r: &mut impl Read,
    tag: u8,
    what: impl FnOnce() -> String,
) -> Result<(), SnapshotError> {
    let mut b = [0u8; 1];
    let what = what();
    read_exact(r, &mut b, &what)?;
    if b[0] != tag {
        return Err(corrupt(format!(
            "{what}: record tag {:#04x}, expected {:?}",
            b[0], tag as char
        )));
    }
    Ok(())
}

fn read_u32(r: &mut impl Read, what: &str) -> Result<u32, SnapshotError> {
    let mut b = [0u8; 4];
    read_exact(r, &mut b, what)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read, what: &str) -> Result<u64, SnapshotError> {
    let mut b = [0u8; 8];
    read_exact(r, &mut b, what)?;
    Ok(u64::from_be_bytes(b))
}

fn read_field(r: &mut impl Read, what: &str) -> Result<Vec<u8>, SnapshotError> {
    let len = read_u32(r, what)?;
    if len > MAX_FIELD {
        return Err(corrupt(format!(
            "{what} of {len} bytes is larger than the {MAX_FIELD} bytes allowed"
        )));
    }
    let mut buf = vec![0u8; len as usize];
    read_exact(r, &mut buf, what)?;
    Ok(buf)
}
