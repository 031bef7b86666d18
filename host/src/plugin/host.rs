//! What a plugin instance sees of the host: the `state` and `log` imports, backed by the
//! transaction of the current call, and the memory limiter of its store.

use std::collections::BTreeSet;
use std::sync::Arc;
use wasmtime::ResourceLimiter;

use super::bindings::fsmhost::plugin::{acl, log, state, types};
use crate::state::{self as st, ReadTxn, Tables};
pub use fsmhost_guest::Sent;

/// The transaction a call runs in.
pub(crate) enum Access {
    /// `describe`, `index`, `index-args`: no state at all.
    None,
    /// `query`: a read snapshot.
    Read(ReadTxn),
    /// `apply`: the write transaction's tables, lent for the call (under a savepoint).
    Write { tables: Tables, index: u64 },
}

/// Caps linear memory and table growth; remembers a refusal so the trap that follows is
/// reported as memory exhaustion.
pub(crate) struct Limiter {
    pub(crate) memory_limit: usize,
    pub(crate) denied: Option<usize>,
    /// The largest linear memory the instance has grown to, in bytes.
    pub(crate) memory_size: usize,
}

/// Most table elements an instance may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Most log lines one call may write; later ones are dropped.
const MAX_LOG_LINES: u32 = 1000;
/// Longest log line kept, in bytes.
const MAX_LOG_LINE: usize = 4096;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.denied = Some(desired);
            return Ok(false);
        }
        self.memory_size = self.memory_size.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Which per-call budget a call used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exceeded {
    /// Host work (entries visited, bytes copied), counted in fuel units.
    HostWork,
    /// Bytes written with `insert`.
    Writes,
}

/// Host work charged per state call, in fuel units, before what the call moves.
const CALL_COST: u64 = 100;
/// Host work charged per object visited, returned or written.
const OBJECT_COST: u64 = 10;
/// Bytes copied per unit of host work.
const BYTES_PER_UNIT: u64 = 16;

/// The data of one call's wasmtime store.
pub(crate) struct HostState {
    pub(crate) plugin: String,
    /// The other plugins' tables and commands its description names.
    declared: Arc<Declared>,
    /// Messages the running `apply` sent, delivered once it returns `ok`.
    pub(crate) outbox: Vec<Sent>,
    pub(crate) access: Access,
    pub(crate) limiter: Limiter,
    /// Host work left, in fuel units: the same budget size as the wasm fuel, drawn on by the
    /// state calls (wasm fuel does not count time spent in the host).
    work_left: u64,
    /// Bytes `insert` may still write in this call.
    write_left: u64,
    /// Set once a budget is used up; the call then fails whatever the plugin returns.
    pub(crate) exceeded: Option<Exceeded>,
    /// The first `panicked at ...` line the guest's panic hook logged.
    pub(crate) panic_message: Option<String>,
    /// Tables the call read: what a blocking query waits on.
    pub(crate) read_set: BTreeSet<String>,
    log_lines: u32,
    /// The caller's permissions, during a `route` or `render` call only.
    pub(crate) permits: Option<super::Permits>,
}

/// What a plugin's description lets it do beyond its own tables: read the other plugins'
/// tables it names (`reads`) and send messages to the commands it names (`sends`).
#[derive(Debug, Default)]
pub(crate) struct Declared {
    reads: BTreeSet<String>,
    sends: BTreeSet<(String, String)>,
}

impl Declared {
    pub(crate) fn of(d: &super::Description) -> Arc<Declared> {
        Arc::new(Declared {
            reads: d.reads.iter().map(|r| r.table.clone()).collect(),
            sends: d
                .sends
                .iter()
                .map(|t| (t.plugin.clone(), t.command.clone()))
                .collect(),
        })
    }
}

impl HostState {
    pub(crate) fn new(
        plugin: &str,
        declared: Arc<Declared>,
        access: Access,
        limits: &super::Limits,
    ) -> Self {
        HostState {
            plugin: plugin.to_string(),
            declared,
            outbox: Vec::new(),
            access,
            limiter: Limiter {
                memory_limit: limits.memory_bytes,
                denied: None,
                memory_size: 0,
            },
            work_left: limits.fuel,
            write_left: limits.write_bytes,
            exceeded: None,
            panic_message: None,
            read_set: BTreeSet::new(),
            log_lines: 0,
            permits: None,
        }
    }

    /// Readies a kept instance's state for its next call: full budgets, no error, no
    /// panic message, no reads. (Memory already grown stays grown.)
    pub(crate) fn reset(&mut self, limits: &super::Limits) {
        self.work_left = limits.fuel;
        self.write_left = limits.write_bytes;
        self.exceeded = None;
        self.panic_message = None;
        self.read_set.clear();
        self.outbox.clear();
        self.log_lines = 0;
        self.limiter.denied = None;
        self.permits = None;
    }

    /// Draws `objects` and `bytes` of host work (plus the per-call cost) from the budget;
    /// traps the call once it is used up.
    fn charge(&mut self, objects: u64, bytes: u64) -> Outcome<()> {
        let cost = CALL_COST
            .saturating_add(objects.saturating_mul(OBJECT_COST))
            .saturating_add(bytes / BYTES_PER_UNIT);
        match self.work_left.checked_sub(cost) {
            Some(left) if self.exceeded.is_none() => {
                self.work_left = left;
                Ok(())
            }
            _ => Err(self.budget_trap(Exceeded::HostWork)),
        }
    }

    /// Draws `bytes` from the write budget; traps the call once it is used up.
    fn charge_write(&mut self, bytes: u64) -> Outcome<()> {
        match self.write_left.checked_sub(bytes) {
            Some(left) if self.exceeded.is_none() => {
                self.write_left = left;
                Ok(())
            }
            _ => Err(self.budget_trap(Exceeded::Writes)),
        }
    }

    fn budget_trap(&mut self, which: Exceeded) -> Fail {
        let which = *self.exceeded.get_or_insert(which);
        Fail::Trap(wasmtime::format_err!(
            "plugin {} used up its {which:?} budget",
            self.plugin
        ))
    }

    /// Notes a successful read of `table` in the read set.
    fn note_read(&mut self, table: &str) {
        if !self.read_set.contains(table) {
            self.read_set.insert(table.to_string());
        }
    }

    fn tables(&self) -> Result<&Tables, types::StateError> {
        match &self.access {
            Access::Read(r) => Ok(r),
            Access::Write { tables, .. } => Ok(tables),
            Access::None => Err(types::StateError::ReadOnly(
                "no transaction outside apply and query".into(),
            )),
        }
    }

    /// The tables, for a read of `table`: its own, or another plugin's that it declares
    /// (an unknown table is left to the lookup, which names it).
    fn read(&self, table: &str) -> Result<&Tables, types::StateError> {
        let tables = self.tables()?;
        if let Some(t) = tables.schema().position(table) {
            let owner = tables.schema().owner(t);
            if owner != self.plugin && !self.declared.reads.contains(table) {
                return Err(types::StateError::NotDeclared(format!(
                    "plugin {} reads table {table} of plugin {owner} without declaring it \
                     (its description's `reads`)",
                    self.plugin
                )));
            }
        }
        Ok(tables)
    }

    /// Queues a message (see `state.send` in the WIT).
    fn send(&mut self, plugin: &str, command: &str, payload: Vec<u8>) -> Outcome<()> {
        self.charge(1, (plugin.len() + command.len() + payload.len()) as u64)?;
        self.charge_write(payload.len() as u64)?;
        if !matches!(self.access, Access::Write { .. }) {
            return Err(Fail::State(types::StateError::ReadOnly(format!(
                "plugin {} sent a message outside apply",
                self.plugin
            ))));
        }
        if !self
            .declared
            .sends
            .contains(&(plugin.to_string(), command.to_string()))
        {
            return Err(Fail::State(types::StateError::NotDeclared(format!(
                "plugin {} sends a message to {plugin}/{command} without declaring it \
                 (its description's `sends`)",
                self.plugin
            ))));
        }
        if self.outbox.len() >= super::MAX_MESSAGES {
            return Err(Fail::Trap(wasmtime::format_err!(
                "plugin {} sent more than {} messages",
                self.plugin,
                super::MAX_MESSAGES
            )));
        }
        self.outbox.push(Sent {
            plugin: plugin.to_string(),
            command: command.to_string(),
            payload,
        });
        Ok(())
    }

    /// The tables a write changes, the index it stamps, and the plugin writing.
    fn write(&mut self) -> Result<(&mut Tables, u64, &str), types::StateError> {
        match &mut self.access {
            Access::Write { tables, index } => Ok((tables, *index, &self.plugin)),
            _ => Err(types::StateError::ReadOnly(format!(
                "plugin {} wrote during a query",
                self.plugin
            ))),
        }
    }
}

fn to_wit_error(e: st::StateError) -> types::StateError {
    use st::StateError as S;
    use types::StateError as W;
    match e {
        S::UnknownTable(m) => W::UnknownTable(m),
        S::UnknownIndex(m) => W::UnknownIndex(m),
        S::NotOwner(m) => W::NotOwner(m),
        S::UniqueViolation(m) => W::UniqueViolation(m),
        S::BadKeys(m) => W::BadKeys(m),
        S::ReadOnly(m) => W::ReadOnly(m),
        S::BadCursor(m) => W::BadCursor(m),
        S::NoPrefix(m) => W::NoPrefix(m),
        S::NotDeclared(m) => W::NotDeclared(m),
    }
}

fn from_wit_bound(b: types::Bound) -> st::Bound {
    match b {
        types::Bound::Unbounded => st::Bound::Unbounded,
        types::Bound::Included(k) => st::Bound::Included(k),
        types::Bound::Excluded(k) => st::Bound::Excluded(k),
    }
}

fn from_wit_range(r: types::KeyRange) -> st::KeyRange {
    match r {
        types::KeyRange::Exact(k) => st::KeyRange::Exact(k),
        types::KeyRange::Prefix(k) => st::KeyRange::Prefix(k),
        types::KeyRange::Between((s, e)) => {
            st::KeyRange::Between(from_wit_bound(s), from_wit_bound(e))
        }
    }
}

impl types::Host for HostState {}

/// How a state call ends badly: a trap ends the whole call (a used-up budget); a state error
/// goes back to the plugin, which decides what to do with it.
pub(crate) enum Fail {
    Trap(wasmtime::Error),
    State(types::StateError),
}

impl From<types::StateError> for Fail {
    fn from(e: types::StateError) -> Self {
        Fail::State(e)
    }
}

impl From<st::StateError> for Fail {
    fn from(e: st::StateError) -> Self {
        Fail::State(to_wit_error(e))
    }
}

type Outcome<T> = Result<T, Fail>;

/// The shape `bindgen!` wants for a trappable import returning `result<T, state-error>`.
fn finish<T>(outcome: Outcome<T>) -> wasmtime::Result<Result<T, types::StateError>> {
    match outcome {
        Ok(v) => Ok(Ok(v)),
        Err(Fail::State(e)) => Ok(Err(e)),
        Err(Fail::Trap(e)) => Err(e),
    }
}

impl HostState {
    /// A lookup of at most one object of `table`, metered and noted in the read set.
    fn lookup(
        &mut self,
        table: &str,
        key_bytes: u64,
        find: impl FnOnce(&Tables) -> Result<Option<st::Bytes>, st::StateError>,
    ) -> Outcome<Option<Vec<u8>>> {
        self.charge(1, key_bytes)?;
        let found = find(self.read(table)?)?;
        self.note_read(table);
        self.charge(0, found.as_ref().map_or(0, |b| b.len() as u64))?;
        Ok(found.map(|b| b.to_vec()))
    }

    fn scan(
        &mut self,
        table: &str,
        index: &str,
        range: types::KeyRange,
        cursor: Option<&[u8]>,
        limit: u32,
    ) -> Outcome<types::ScanBatch> {
        let range = from_wit_range(range);
        self.charge(0, 0)?;
        let batch = self
            .read(table)?
            .scan(table, index, &range, cursor, limit)?;
        self.note_read(table);
        let bytes: u64 = batch.objects.iter().map(|o| o.len() as u64).sum();
        self.charge(batch.objects.len() as u64 + 1, bytes)?;
        Ok(types::ScanBatch {
            objects: batch.objects.iter().map(|o| o.to_vec()).collect(),
            cursor: batch.cursor,
        })
    }

    fn insert(
        &mut self,
        table: &str,
        object: &[u8],
        keys: Vec<types::IndexKeys>,
    ) -> Outcome<Option<Vec<u8>>> {
        let key_bytes: u64 = keys
            .iter()
            .flat_map(|k| &k.keys)
            .map(|k| k.len() as u64)
            .sum();
        let key_count: u64 = keys.iter().map(|k| k.keys.len() as u64).sum();
        let bytes = object.len() as u64 + key_bytes;
        self.charge(key_count + 1, bytes)?;
        self.charge_write(bytes)?;
        let keys: Vec<st::IndexKeys> = keys
            .into_iter()
            .map(|k| st::IndexKeys {
                index: k.index,
                keys: k.keys,
            })
            .collect();
        let (tables, index, owner) = self.write()?;
        let old = tables.insert(owner, index, table, object, &keys)?;
        Ok(old.map(|b| b.to_vec()))
    }

    fn delete(&mut self, table: &str, id: &[u8]) -> Outcome<Option<Vec<u8>>> {
        self.charge(1, id.len() as u64)?;
        let (tables, index, owner) = self.write()?;
        let old = tables.delete(owner, index, table, id)?;
        Ok(old.map(|b| b.to_vec()))
    }

    fn delete_prefix(&mut self, table: &str, index: &str, prefix: &[u8]) -> Outcome<u64> {
        self.charge(0, prefix.len() as u64)?;
        let (tables, at, owner) = self.write()?;
        let n = tables.delete_prefix(owner, at, table, index, prefix)?;
        self.charge(n, 0)?;
        Ok(n)
    }

    fn table_index(&mut self, table: &str) -> Outcome<u64> {
        self.charge(0, 0)?;
        let index = self.read(table)?.table_stamp(table)?;
        self.note_read(table);
        Ok(index)
    }
}

type Ret<T> = wasmtime::Result<Result<T, types::StateError>>;

impl state::Host for HostState {
    fn get(&mut self, table: String, index: String, key: Vec<u8>) -> Ret<Option<Vec<u8>>> {
        finish(self.lookup(&table, key.len() as u64, |t| t.get(&table, &index, &key)))
    }

    fn first(
        &mut self,
        table: String,
        index: String,
        range: types::KeyRange,
    ) -> Ret<Option<Vec<u8>>> {
        let range = from_wit_range(range);
        finish(self.lookup(&table, 0, |t| t.first(&table, &index, &range)))
    }

    fn last(
        &mut self,
        table: String,
        index: String,
        range: types::KeyRange,
    ) -> Ret<Option<Vec<u8>>> {
        let range = from_wit_range(range);
        finish(self.lookup(&table, 0, |t| t.last(&table, &index, &range)))
    }

    fn scan(
        &mut self,
        table: String,
        index: String,
        range: types::KeyRange,
        cursor: Option<Vec<u8>>,
        limit: u32,
    ) -> Ret<types::ScanBatch> {
        finish(HostState::scan(
            self,
            &table,
            &index,
            range,
            cursor.as_deref(),
            limit,
        ))
    }

    fn insert(
        &mut self,
        table: String,
        object: Vec<u8>,
        keys: Vec<types::IndexKeys>,
    ) -> Ret<Option<Vec<u8>>> {
        finish(HostState::insert(self, &table, &object, keys))
    }

    fn delete(&mut self, table: String, id: Vec<u8>) -> Ret<Option<Vec<u8>>> {
        finish(HostState::delete(self, &table, &id))
    }

    fn delete_prefix(&mut self, table: String, index: String, prefix: Vec<u8>) -> Ret<u64> {
        finish(HostState::delete_prefix(self, &table, &index, &prefix))
    }

    fn table_index(&mut self, table: String) -> Ret<u64> {
        finish(HostState::table_index(self, &table))
    }

    fn send(&mut self, plugin: String, command: String, payload: Vec<u8>) -> Ret<()> {
        finish(HostState::send(self, &plugin, &command, payload))
    }
}

impl acl::Host for HostState {
    /// The caller's permissions: only during `route` and `render`, else false.
    fn allowed(
        &mut self,
        resource: types::AclResource,
        segment: String,
        access: types::AclAccess,
        partition: String,
        namespace: String,
    ) -> wasmtime::Result<bool> {
        let bytes = segment.len() + partition.len() + namespace.len();
        match self.charge(1, bytes as u64) {
            Err(Fail::Trap(e)) => return Err(e),
            Err(Fail::State(_)) | Ok(()) => {}
        }
        Ok(self.permits.as_ref().is_some_and(|p| {
            p(
                resource.into(),
                &segment,
                access.into(),
                &partition,
                &namespace,
            )
        }))
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, mut message: String) -> wasmtime::Result<()> {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            return Ok(());
        }
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        if level == log::Level::Error
            && self.panic_message.is_none()
            && message.starts_with("panicked at ")
        {
            self.panic_message = Some(message.clone());
        }
        let plugin = self.plugin.as_str();
        match level {
            log::Level::Trace => tracing::trace!(target: "agent.plugin", plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "agent.plugin", plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "agent.plugin", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "agent.plugin", plugin, "{message}"),
            log::Level::Error => tracing::error!(target: "agent.plugin", plugin, "{message}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Schema, Store};

    #[test]
    fn writes_outside_apply_are_refused() {
        let store = Store::new(Schema::default());
        for access in [Access::None, Access::Read(store.read())] {
            let mut h = HostState::new(
                "p",
                Default::default(),
                access,
                &crate::plugin::Limits::default(),
            );
            let err = state::Host::delete(&mut h, "t".into(), b"k".to_vec())
                .expect("not a trap")
                .unwrap_err();
            assert!(matches!(err, types::StateError::ReadOnly(_)), "{err:?}");
        }
    }
}
