//! A native, in-memory state store with the host's semantics, and a test harness on top.
//!
//! [`MemStore`] implements [`Txn`] with ordered maps, validates inserted keys against the
//! schema the way the host does (an `id` key, one key per single-valued index, unique
//! indexes), and journals every write so a failed command is rolled back. [`Harness`] runs a
//! [`Plugin`]'s commands and queries against it with typed requests, so a plugin's unit tests
//! (and the native side of the wasm-vs-native benchmark) need no wasm at all.

use serde::{Serialize, de::DeserializeOwned};
use std::collections::{BTreeMap, BTreeSet};

use crate::cbor::{from_cbor, to_cbor};
use crate::error::Error;
use crate::key::DisplayKey;
use crate::plugin::{Command, Ctx, Plugin, Query};
use crate::schema::TableSchema;
use crate::txn::{IndexKeys, KeyRange, ScanBatch, StateError, Txn, cursor};

#[derive(Clone)]
struct Row {
    object: Vec<u8>,
    /// Keys per index, in the order of the table's schema.
    keys: Vec<Vec<Vec<u8>>>,
}

struct MemTable {
    schema: TableSchema,
    id_pos: usize,
    rows: BTreeMap<Vec<u8>, Row>,
    /// Per index: (key, id) pairs.
    indexes: Vec<BTreeSet<(Vec<u8>, Vec<u8>)>>,
    /// Raft index of the last write.
    last_change: u64,
}

/// Index entries in key order, as [`MemTable::range`] yields them.
type Entries<'a> = Box<dyn Iterator<Item = &'a (Vec<u8>, Vec<u8>)> + 'a>;

struct Undo {
    table: String,
    id: Vec<u8>,
    old: Option<Row>,
    old_last_change: u64,
}

/// An in-memory store of the tables a plugin declares.
pub struct MemStore {
    tables: BTreeMap<String, MemTable>,
    journal: Vec<Undo>,
    /// The raft index writes are stamped with.
    index: u64,
    /// Messages sent by the running command, not yet delivered.
    outbox: Vec<Sent>,
    /// The tables read since [`MemStore::take_reads`] (what the host answers a query's
    /// index from, and blocks on).
    reads: std::cell::RefCell<BTreeSet<String>>,
}

/// A message a command sent ([`Txn::send`]), waiting for its command to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The plugin it goes to.
    pub plugin: String,
    /// Its command.
    pub command: String,
    /// The encoded request.
    pub payload: Vec<u8>,
}

impl MemStore {
    /// An empty store with these tables. Fails, naming the table, if one has no unique `id`
    /// index.
    pub fn new(schemas: &[TableSchema]) -> Result<Self, Error> {
        let mut tables = BTreeMap::new();
        for schema in schemas {
            if tables.contains_key(&schema.name) {
                return Err(Error::internal(format!(
                    "table {} is declared twice",
                    schema.name
                )));
            }
            let id_pos = schema
                .indexes
                .iter()
                .position(|i| i.name == "id" && i.unique && !i.multi && !i.allow_missing)
                .ok_or_else(|| {
                    Error::internal(format!("table {} has no unique id index", schema.name))
                })?;
            tables.insert(
                schema.name.clone(),
                MemTable {
                    schema: schema.clone(),
                    id_pos,
                    rows: BTreeMap::new(),
                    indexes: vec![BTreeSet::new(); schema.indexes.len()],
                    last_change: 0,
                },
            );
        }
        Ok(MemStore {
            tables,
            journal: Vec::new(),
            index: 0,
            outbox: Vec::new(),
            reads: Default::default(),
        })
    }

    /// Sets the raft index the following writes are stamped with (the host does this per
    /// command; [`Harness`] calls it for you).
    pub fn set_index(&mut self, index: u64) {
        self.index = index;
    }

    /// Number of objects in `table` (0 for an unknown table).
    pub fn len(&self, table: &str) -> usize {
        self.tables.get(table).map_or(0, |t| t.rows.len())
    }

    /// Whether `table` holds no object.
    pub fn is_empty(&self, table: &str) -> bool {
        self.len(table) == 0
    }

    /// Makes every write since the last commit or rollback permanent.
    pub fn commit(&mut self) {
        self.journal.clear();
    }

    /// Takes the messages sent since the last call (the [`Harness`] delivers them).
    pub fn take_sent(&mut self) -> Vec<Sent> {
        std::mem::take(&mut self.outbox)
    }

    /// Undoes every write since the last commit or rollback, and drops unsent messages.
    pub fn rollback(&mut self) {
        self.outbox.clear();
        while let Some(undo) = self.journal.pop() {
            if let Some(t) = self.tables.get_mut(&undo.table) {
                t.put(&undo.id, undo.old);
                t.last_change = undo.old_last_change;
            }
        }
    }

    /// The object of the entry `choose` picks among the entries of `index` in `range`.
    fn pick<'a>(
        &'a self,
        table: &str,
        index: &str,
        range: &'a KeyRange,
        choose: impl FnOnce(Entries<'a>) -> Option<&'a (Vec<u8>, Vec<u8>)>,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let t = self.table(table)?;
        let pos = t.index_pos(index)?;
        Ok(choose(Box::new(t.range(pos, range, None))).map(|(_, id)| t.rows[id].object.clone()))
    }

    fn table(&self, name: &str) -> Result<&MemTable, StateError> {
        let t = self
            .tables
            .get(name)
            .ok_or_else(|| StateError::UnknownTable(format!("table {name}")))?;
        let mut reads = self.reads.borrow_mut();
        if !reads.contains(name) {
            reads.insert(name.to_string());
        }
        Ok(t)
    }

    /// The tables read since the last call, as the host records a query's reads.
    pub fn take_reads(&self) -> BTreeSet<String> {
        std::mem::take(&mut self.reads.borrow_mut())
    }

    /// The index the host answers a query with, having read `tables`: their highest
    /// stamp, at least 1.
    pub fn index_of(&self, tables: &BTreeSet<String>) -> u64 {
        tables
            .iter()
            .filter_map(|t| self.table_index(t).ok())
            .max()
            .unwrap_or(0)
            .max(1)
    }

    fn table_mut(&mut self, name: &str) -> Result<&mut MemTable, StateError> {
        self.tables
            .get_mut(name)
            .ok_or_else(|| StateError::UnknownTable(format!("table {name}")))
    }
}

impl MemTable {
    fn index_pos(&self, index: &str) -> Result<usize, StateError> {
        self.schema
            .indexes
            .iter()
            .position(|i| i.name == index)
            .ok_or_else(|| {
                StateError::UnknownIndex(format!("table {} index {index}", self.schema.name))
            })
    }

    /// Replaces the row stored under `id` (removing its index entries) with `row`.
    fn put(&mut self, id: &[u8], row: Option<Row>) -> Option<Row> {
        let old = self.rows.remove(id);
        if let Some(old) = &old {
            for (pos, keys) in old.keys.iter().enumerate() {
                for k in keys {
                    self.indexes[pos].remove(&(k.clone(), id.to_vec()));
                }
            }
        }
        if let Some(row) = row {
            for (pos, keys) in row.keys.iter().enumerate() {
                for k in keys {
                    self.indexes[pos].insert((k.clone(), id.to_vec()));
                }
            }
            self.rows.insert(id.to_vec(), row);
        }
        old
    }

    /// (key, id) pairs of `index` in `range`, after `cursor`.
    fn range<'a>(
        &'a self,
        pos: usize,
        range: &'a KeyRange,
        after: Option<(Vec<u8>, Vec<u8>)>,
    ) -> impl Iterator<Item = &'a (Vec<u8>, Vec<u8>)> + 'a {
        let start = (range.start(), Vec::new());
        let from = match after {
            Some(c) if c >= start => std::ops::Bound::Excluded(c),
            _ => std::ops::Bound::Included(start),
        };
        self.indexes[pos]
            .range((from, std::ops::Bound::Unbounded))
            .take_while(move |(k, _)| !range.is_past(k))
            .filter(move |(k, _)| range.contains(k))
    }
}

impl Txn for MemStore {
    fn get(&self, table: &str, index: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.first(table, index, &KeyRange::Exact(key.to_vec()))
    }

    fn first(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
    ) -> Result<Option<Vec<u8>>, StateError> {
        self.pick(table, index, range, |mut entries| entries.next())
    }

    fn last(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
    ) -> Result<Option<Vec<u8>>, StateError> {
        self.pick(table, index, range, |entries| entries.last())
    }

    fn scan(
        &self,
        table: &str,
        index: &str,
        range: &KeyRange,
        cursor: Option<&[u8]>,
        limit: u32,
    ) -> Result<ScanBatch, StateError> {
        let t = self.table(table)?;
        let pos = t.index_pos(index)?;
        let after = match cursor {
            Some(c) => Some(
                cursor::decode(c)
                    .map(|(k, id)| (k.to_vec(), id.to_vec()))
                    .ok_or_else(|| StateError::BadCursor(format!("table {table} index {index}")))?,
            ),
            None => None,
        };
        let limit = limit.max(1) as usize;
        let mut batch = ScanBatch::default();
        let mut it = t.range(pos, range, after);
        for (key, id) in it.by_ref().take(limit) {
            batch.objects.push(t.rows[id].object.clone());
            batch.cursor = Some(cursor::encode(key, id));
        }
        if it.next().is_none() {
            batch.cursor = None;
        }
        Ok(batch)
    }

    fn insert(
        &mut self,
        table: &str,
        object: &[u8],
        keys: Vec<IndexKeys>,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let index = self.index;
        let t = self.table_mut(table)?;
        let mut row = Row {
            object: object.to_vec(),
            keys: vec![Vec::new(); t.schema.indexes.len()],
        };
        let mut seen = vec![false; t.schema.indexes.len()];
        for ik in keys {
            let pos = t.index_pos(&ik.index)?;
            if std::mem::replace(&mut seen[pos], true) {
                return Err(StateError::BadKeys(format!(
                    "table {table}: index {} given twice",
                    ik.index
                )));
            }
            row.keys[pos] = ik.keys;
        }
        for (pos, schema) in t.schema.indexes.iter().enumerate() {
            let n = row.keys[pos].len();
            if n == 0 && !schema.allow_missing {
                return Err(StateError::BadKeys(format!(
                    "table {table}: missing value for index {}",
                    schema.name
                )));
            }
            if n > 1 && !schema.multi {
                return Err(StateError::BadKeys(format!(
                    "table {table}: {n} keys for single-valued index {}",
                    schema.name
                )));
            }
        }
        let Some(id) = row.keys[t.id_pos].first().cloned() else {
            return Err(StateError::BadKeys(format!("table {table}: no id key")));
        };
        for (pos, schema) in t.schema.indexes.iter().enumerate() {
            if !schema.unique {
                continue;
            }
            for k in &row.keys[pos] {
                let range = KeyRange::Exact(k.clone());
                if let Some((_, other)) = t.range(pos, &range, None).find(|(_, o)| *o != id) {
                    return Err(StateError::UniqueViolation(format!(
                        "table {table} index {} key {} is held by object {}",
                        schema.name,
                        DisplayKey(k),
                        DisplayKey(other)
                    )));
                }
            }
        }
        let old = t.put(&id, Some(row));
        let old_last_change = std::mem::replace(&mut t.last_change, index);
        let object = old.as_ref().map(|r| r.object.clone());
        self.journal.push(Undo {
            table: table.to_string(),
            id,
            old,
            old_last_change,
        });
        Ok(object)
    }

    fn delete(&mut self, table: &str, id: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let index = self.index;
        let t = self.table_mut(table)?;
        let old = t.put(id, None);
        let object = old.as_ref().map(|r| r.object.clone());
        if old.is_some() {
            let old_last_change = std::mem::replace(&mut t.last_change, index);
            self.journal.push(Undo {
                table: table.to_string(),
                id: id.to_vec(),
                old,
                old_last_change,
            });
        }
        Ok(object)
    }

    fn table_index(&self, table: &str) -> Result<u64, StateError> {
        Ok(self.table(table)?.last_change)
    }

    fn send(&mut self, plugin: &str, command: &str, payload: &[u8]) -> Result<(), StateError> {
        self.outbox.push(Sent {
            plugin: plugin.to_string(),
            command: command.to_string(),
            payload: payload.to_vec(),
        });
        Ok(())
    }

    fn delete_prefix(
        &mut self,
        table: &str,
        index: &str,
        prefix: &[u8],
    ) -> Result<u64, StateError> {
        let t = self.table(table)?;
        let pos = t.index_pos(index)?;
        if !t.schema.indexes[pos].prefix {
            return Err(StateError::NoPrefix(format!("table {table} index {index}")));
        }
        let range = KeyRange::Prefix(prefix.to_vec());
        let ids: BTreeSet<Vec<u8>> = t
            .range(pos, &range, None)
            .map(|(_, id)| id.clone())
            .collect();
        for id in &ids {
            self.delete(table, id)?;
        }
        Ok(ids.len() as u64)
    }
}

/// Runs a plugin natively against a [`MemStore`], with typed requests and responses.
///
/// Each command gets the next raft index (starting at 1) unless given a [`Ctx`]; a command
/// that returns an error leaves the store as it was, as on the host.
///
/// ```
/// # use fsmhost_guest::{Command, Harness, Plugin, Ctx, Error, Txn};
/// fn echo(_: &mut dyn Txn, ctx: &Ctx, s: String) -> Result<String, Error> {
///     Ok(format!("{s}@{}", ctx.index))
/// }
/// static ECHO: Command<String, String> = Command::new("echo", echo);
/// let mut h = Harness::new(Plugin::new("echo", "0.1.0", "oss").command(&ECHO)).unwrap();
/// let out = h.run(&ECHO, &"hi".to_string()).unwrap();
/// assert_eq!(out, "hi@1");
/// ```
pub struct Harness {
    plugin: Plugin,
    /// Other plugins of the set, which receive messages and own tables `plugin` reads.
    peers: Vec<Plugin>,
    store: MemStore,
    next_index: u64,
}

/// Most messages one command and its messages may send, as on the host.
pub const MAX_MESSAGES: usize = 4096;
/// How deep messages sent by messages may go, as on the host.
pub const MAX_MESSAGE_DEPTH: usize = 8;

impl Harness {
    /// A harness with an empty store of the plugin's tables. Refuses what the host refuses
    /// at load in the plugin's names ([`Plugin::check`]) and a table without a unique `id`
    /// index.
    pub fn new(plugin: Plugin) -> Result<Self, Error> {
        Harness::with_peers(plugin, Vec::new())
    }

    /// A harness for `plugin` in a set with `peers`: the store holds every plugin's tables
    /// (and the tables `plugin` reads that no peer owns, empty), and messages go to the
    /// peers as on the host: after the command returns `Ok`, in order, each followed by
    /// the messages it sends; a failure fails the command and rolls everything back; a
    /// message to a plugin not in the set is dropped, one to a command `plugin` did not
    /// declare fails.
    pub fn with_peers(plugin: Plugin, peers: Vec<Plugin>) -> Result<Self, Error> {
        plugin.check()?;
        let mut schemas: Vec<TableSchema> = Vec::new();
        for p in std::iter::once(&plugin).chain(&peers) {
            p.check()?;
            schemas.extend(p.describe().tables);
        }
        for p in std::iter::once(&plugin).chain(&peers) {
            for read in p.read_schemas() {
                match schemas.iter().find(|t| t.name == read.name) {
                    Some(owned) if owned.layout != read.layout => {
                        return Err(Error::internal(format!(
                            "plugin {} reads table {} at layout {}, but it is stored at \
                             layout {}",
                            p.describe().name,
                            read.name,
                            read.layout,
                            owned.layout
                        )));
                    }
                    Some(_) => {}
                    None => schemas.push(read),
                }
            }
        }
        let store = MemStore::new(&schemas)?;
        Ok(Harness {
            plugin,
            peers,
            store,
            next_index: 1,
        })
    }

    /// The plugin of the set named `name`.
    fn member(&self, name: &str) -> Option<&Plugin> {
        std::iter::once(&self.plugin)
            .chain(&self.peers)
            .find(|p| p.name() == name)
    }

    /// Delivers the messages `sender` sent, depth first; the first failure is the
    /// command's. `delivered` counts toward [`MAX_MESSAGES`].
    fn deliver(
        &mut self,
        ctx: &Ctx,
        sender: &str,
        depth: usize,
        delivered: &mut usize,
    ) -> Result<(), Error> {
        let sent = self.store.take_sent();
        if sent.is_empty() {
            return Ok(());
        }
        if depth >= MAX_MESSAGE_DEPTH {
            return Err(Error::internal(format!(
                "messages sent more than {MAX_MESSAGE_DEPTH} deep (plugin {sender})"
            )));
        }
        let declared = self
            .member(sender)
            .map(|p| p.describe().sends)
            .unwrap_or_default();
        for m in sent {
            let target = crate::plugin::MessageTarget {
                plugin: m.plugin.clone(),
                command: m.command.clone(),
            };
            if !declared.contains(&target) {
                return Err(Error::internal(format!(
                    "not declared by the plugin: plugin {sender} sends no message to {}/{}",
                    m.plugin, m.command
                )));
            }
            *delivered += 1;
            if *delivered > MAX_MESSAGES {
                return Err(Error::internal(format!(
                    "a command sent more than {MAX_MESSAGES} messages"
                )));
            }
            let Harness {
                plugin,
                peers,
                store,
                ..
            } = self;
            let Some(receiver) = std::iter::once(&*plugin)
                .chain(peers.iter())
                .find(|p| p.name() == m.plugin)
            else {
                continue;
            };
            receiver
                .apply(store, ctx, &m.command, &m.payload)
                .map_err(|e| Error {
                    kind: e.kind,
                    message: format!("message to {}/{}: {}", m.plugin, m.command, e.message),
                })?;
            self.deliver(ctx, &m.plugin, depth + 1, delivered)?;
        }
        Ok(())
    }

    /// Runs `command` at the next index, with the index as the timestamp: the request
    /// and the result go through CBOR, as on the host.
    pub fn run<Req: Serialize, Out: DeserializeOwned>(
        &mut self,
        command: &Command<Req, Out>,
        req: &Req,
    ) -> Result<Out, Error> {
        let ctx = Ctx {
            index: self.next_index,
            timestamp_ms: self.next_index,
        };
        self.run_at(ctx, command, req)
    }

    /// Runs `command` with an explicit context.
    pub fn run_at<Req: Serialize, Out: DeserializeOwned>(
        &mut self,
        ctx: Ctx,
        command: &Command<Req, Out>,
        req: &Req,
    ) -> Result<Out, Error> {
        let name = command.name();
        let out = self.apply_raw(ctx, name, &to_cbor(req)?)?;
        from_cbor(&out, &format!("result of command {name}"))
    }

    /// Applies `command` to encoded bytes, as the host does; returns encoded bytes.
    pub fn apply_raw(&mut self, ctx: Ctx, command: &str, payload: &[u8]) -> Result<Vec<u8>, Error> {
        self.next_index = self.next_index.max(ctx.index + 1);
        self.store.set_index(ctx.index);
        // A panic leaves nothing behind, as a trap does on the host.
        let run = std::panic::AssertUnwindSafe(|| {
            let out = self.plugin.apply(&mut self.store, &ctx, command, payload)?;
            let sender = self.plugin.name();
            self.deliver(&ctx, sender, 0, &mut 0)?;
            Ok(out)
        });
        let result = match std::panic::catch_unwind(run) {
            Ok(result) => result,
            Err(panic) => {
                self.store.rollback();
                std::panic::resume_unwind(panic);
            }
        };
        match result {
            Ok(_) => self.store.commit(),
            Err(_) => self.store.rollback(),
        }
        result
    }

    /// Runs the plugin's leader timer on the store, as the leader does: returns what it
    /// asks to propose.
    pub fn tick(&self, ctx: &crate::tick::TickCtx) -> Result<Vec<crate::tick::Proposal>, Error> {
        self.plugin.run_tick(&self.store, ctx)
    }

    /// [`Harness::tick`], then applies every proposal at the next index with the tick's
    /// clock as the entry's timestamp, as the leader does; their results in order.
    pub fn tick_and_apply(&mut self, ctx: &crate::tick::TickCtx) -> Vec<Result<Vec<u8>, Error>> {
        let proposals = match self.tick(ctx) {
            Ok(p) => p,
            Err(e) => return vec![Err(e)],
        };
        proposals
            .into_iter()
            .map(|p| {
                let at = Ctx {
                    index: self.next_index,
                    timestamp_ms: ctx.now_ms,
                };
                self.apply_raw(at, &p.command, &p.payload)
            })
            .collect()
    }

    /// Runs `query`: the arguments and the result go through CBOR, as on the host.
    pub fn ask<Args: Serialize, Out: DeserializeOwned>(
        &self,
        query: &Query<Args, Out>,
        args: &Args,
    ) -> Result<Out, Error> {
        let name = query.name();
        let out = self.query_raw(name, &to_cbor(args)?)?;
        from_cbor(&out, &format!("result of query {name}"))
    }

    /// [`Harness::ask`], with the index the host would answer (`X-Consul-Index`: the
    /// highest stamp of the tables the query read) and those tables.
    pub fn ask_indexed<Args: Serialize, Out: DeserializeOwned>(
        &self,
        query: &Query<Args, Out>,
        args: &Args,
    ) -> Result<(Out, u64, BTreeSet<String>), Error> {
        self.store.take_reads();
        let out = self.ask(query, args)?;
        let tables = self.store.take_reads();
        Ok((out, self.store.index_of(&tables), tables))
    }

    /// Runs query `name` on encoded arguments, as the host does; returns encoded bytes.
    pub fn query_raw(&self, name: &str, args: &[u8]) -> Result<Vec<u8>, Error> {
        self.plugin.query_raw(&self.store, name, args)
    }

    /// Serves `req` as [`Harness::http`] does, for a caller whose token allows what `rule`
    /// says: the plan's needs are checked first (a refusal is Consul's 403 text), and
    /// renderers' [`crate::acl::allowed`] answer with `rule`. A plan without needs takes
    /// the host's default (`operator` write for a command, read for a query).
    pub fn http_as(
        &mut self,
        req: crate::http::Request,
        rule: impl Fn(crate::acl::Resource, &str, crate::acl::Access) -> bool + 'static,
    ) -> crate::http::Response {
        use crate::acl::{Access, Need, Resource};
        use crate::http::Action;
        let rule: crate::acl::Rule = std::rc::Rc::new(rule);
        let _guard = crate::acl::set_native_rule(rule.clone());
        let plan = self.plugin.route_request(&req);
        let default = match &plan.action {
            Action::Respond(_) => vec![],
            Action::Apply { .. } => vec![Need::write(Resource::Operator, "")],
            Action::Query { .. } => vec![Need::read(Resource::Operator, "")],
        };
        let needs = plan.needs.clone().unwrap_or(default);
        if let Some(n) = needs
            .iter()
            .find(|n| !rule(n.resource, &n.segment, n.access))
        {
            let access = match n.access {
                Access::Read => "read",
                Access::List => "list",
                Access::Write => "write",
            };
            return crate::http::Response::text(
                403,
                format!(
                    "Permission denied: token lacks permission '{:?}:{access}' on {:?}",
                    n.resource, n.segment
                )
                .to_lowercase(),
            );
        }
        self.http(req)
    }

    /// Serves an HTTP request as the host does: routes it, applies the command (at the next
    /// index) or runs the query, and renders the outcome. A query's index is the highest
    /// stamp of the tables it read, as the host answers it.
    pub fn http(&mut self, req: crate::http::Request) -> crate::http::Response {
        use crate::http::Action;
        let plan = self.plugin.route_request(&req);
        let (outcome, index) = match plan.action {
            Action::Respond(r) => return r,
            Action::Apply { command, payload } => {
                let ctx = Ctx {
                    index: self.next_index,
                    timestamp_ms: self.next_index,
                };
                (self.apply_raw(ctx, &command, &payload), ctx.index)
            }
            Action::Query { name, args } => {
                self.store.take_reads();
                let out = self.query_raw(&name, &args);
                let index = self.store.index_of(&self.store.take_reads());
                (out, index)
            }
        };
        self.plugin.render(&plan.context, outcome, index.max(1))
    }

    /// The store, for assertions.
    pub fn store(&self) -> &MemStore {
        &self.store
    }

    /// The store, to seed tables a test needs (a table the plugin reads, say). End the
    /// seeding with [`MemStore::commit`], or the next failing command rolls it back.
    pub fn store_mut(&mut self) -> &mut MemStore {
        &mut self.store
    }

    /// The plugin.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }
}
