//! What a plugin instance sees of the host: the `state` and `log` imports, backed by the
//! transaction of the current call, and the memory limiter of its store.

use wasmtime::ResourceLimiter;

use super::bindings::fsmhost::plugin::{log, state, types};
use crate::state::{self as st, ReadTxn, Tables};

/// The transaction a call runs in.
pub(crate) enum Access {
    /// `describe`, `index`, `index-args`: no state at all.
    None,
    /// `query`: a read snapshot.
    Read(ReadTxn),
    /// `apply`: a private copy of the write transaction's tables, adopted on success.
    Write { tables: Tables, index: u64 },
}

/// Caps linear memory and table growth; remembers a refusal so the trap that follows is
/// reported as memory exhaustion.
pub(crate) struct Limiter {
    pub(crate) memory_limit: usize,
    pub(crate) denied: Option<usize>,
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

/// The data of one call's wasmtime store.
pub(crate) struct HostState {
    pub(crate) plugin: String,
    pub(crate) access: Access,
    pub(crate) limiter: Limiter,
    log_lines: u32,
}

impl HostState {
    pub(crate) fn new(plugin: &str, access: Access, memory_limit: usize) -> Self {
        HostState {
            plugin: plugin.to_string(),
            access,
            limiter: Limiter {
                memory_limit,
                denied: None,
            },
            log_lines: 0,
        }
    }

    fn read(&self) -> Result<&Tables, types::StateError> {
        match &self.access {
            Access::Read(r) => Ok(r),
            Access::Write { tables, .. } => Ok(tables),
            Access::None => Err(types::StateError::ReadOnly(
                "no transaction outside apply and query".into(),
            )),
        }
    }

    fn write(&mut self) -> Result<(&mut Tables, u64), types::StateError> {
        match &mut self.access {
            Access::Write { tables, index } => Ok((tables, *index)),
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

impl state::Host for HostState {
    fn get(
        &mut self,
        table: String,
        index: String,
        key: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, types::StateError> {
        let found = self
            .read()?
            .get(&table, &index, &key)
            .map_err(to_wit_error)?;
        Ok(found.map(|b| b.to_vec()))
    }

    fn first(
        &mut self,
        table: String,
        index: String,
        range: types::KeyRange,
    ) -> Result<Option<Vec<u8>>, types::StateError> {
        let range = from_wit_range(range);
        let found = self
            .read()?
            .first(&table, &index, &range)
            .map_err(to_wit_error)?;
        Ok(found.map(|b| b.to_vec()))
    }

    fn scan(
        &mut self,
        table: String,
        index: String,
        range: types::KeyRange,
        cursor: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<types::ScanBatch, types::StateError> {
        let range = from_wit_range(range);
        let batch = self
            .read()?
            .scan(&table, &index, &range, cursor.as_deref(), limit)
            .map_err(to_wit_error)?;
        Ok(types::ScanBatch {
            objects: batch.objects.iter().map(|o| o.to_vec()).collect(),
            cursor: batch.cursor,
        })
    }

    fn insert(
        &mut self,
        table: String,
        object: Vec<u8>,
        keys: Vec<types::IndexKeys>,
    ) -> Result<Option<Vec<u8>>, types::StateError> {
        let keys: Vec<st::IndexKeys> = keys
            .into_iter()
            .map(|k| st::IndexKeys {
                index: k.index,
                keys: k.keys,
            })
            .collect();
        let owner = self.plugin.clone();
        let (tables, index) = self.write()?;
        let old = tables
            .insert(&owner, index, &table, &object, &keys)
            .map_err(to_wit_error)?;
        Ok(old.map(|b| b.to_vec()))
    }

    fn delete(&mut self, table: String, id: Vec<u8>) -> Result<Option<Vec<u8>>, types::StateError> {
        let owner = self.plugin.clone();
        let (tables, index) = self.write()?;
        let old = tables
            .delete(&owner, index, &table, &id)
            .map_err(to_wit_error)?;
        Ok(old.map(|b| b.to_vec()))
    }

    fn delete_prefix(
        &mut self,
        table: String,
        index: String,
        prefix: Vec<u8>,
    ) -> Result<u64, types::StateError> {
        let owner = self.plugin.clone();
        let (tables, at) = self.write()?;
        tables
            .delete_prefix(&owner, at, &table, &index, &prefix)
            .map_err(to_wit_error)
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, mut message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            return;
        }
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let plugin = self.plugin.as_str();
        match level {
            log::Level::Trace => tracing::trace!(target: "agent.plugin", plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "agent.plugin", plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "agent.plugin", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "agent.plugin", plugin, "{message}"),
            log::Level::Error => tracing::error!(target: "agent.plugin", plugin, "{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Schema, Store};
    use state::Host as _;

    #[test]
    fn writes_outside_apply_are_refused() {
        let store = Store::new(Schema::default());
        for access in [Access::None, Access::Read(store.read())] {
            let mut h = HostState::new("p", access, 1 << 20);
            let err = h.delete("t".into(), b"k".to_vec()).unwrap_err();
            assert!(matches!(err, types::StateError::ReadOnly(_)), "{err:?}");
        }
    }
}
