//! A plugin: its identity, tables, typed commands and queries, and the dispatch the exports
//! (and the native test harness) go through.

use serde::{Serialize, de::DeserializeOwned};

use crate::cbor::{decode_cbor, to_cbor};
use crate::compact::Record;
use crate::error::Error;
use crate::http::{Plan, RenderFn, Request, Response, Route, RouteFn, Routes};
use crate::schema::{AnyTable, Migrated, TableSchema};
use crate::txn::{IndexKeys, Txn};

/// What the host tells a command about its log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ctx {
    /// Raft index of the entry; stamp written objects with it.
    pub index: u64,
    /// The leader's clock when it accepted the entry, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

/// What `describe` returns: a plugin's description, one type for both sides of the
/// contract (the host loads it from a component's `describe` export; the
/// [`crate::Harness`] takes it from the [`Plugin`] directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Plugin name.
    pub name: String,
    /// Plugin version (semver).
    pub version: String,
    /// Edition, e.g. `oss`.
    pub edition: String,
    /// Owned tables.
    pub tables: Vec<TableSchema>,
    /// Command names.
    pub commands: Vec<String>,
    /// Query names.
    pub queries: Vec<String>,
    /// HTTP routes.
    pub routes: Vec<Route>,
    /// The migrations its `migrate` export carries out.
    pub migrations: Vec<Migration>,
    /// Other plugins' tables it reads ([`Plugin::reads`]).
    pub reads: Vec<TableRead>,
    /// Other plugins' commands it sends messages to ([`Plugin::sends`]).
    pub sends: Vec<MessageTarget>,
}

/// A table of another plugin that a plugin reads, at the layout it decodes
/// ([`Plugin::reads`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableRead {
    /// The table.
    pub table: String,
    /// The layout of its objects the reader understands.
    pub layout: u32,
}

/// A command of another plugin that a plugin sends messages to ([`Plugin::sends`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct MessageTarget {
    /// The plugin's name.
    pub plugin: String,
    /// Its command.
    pub command: String,
}

/// A migration a plugin declares ([`Plugin::migration`]): it rewrites the objects an older
/// version stored in `table` at layout `from_layout`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Migration {
    /// The table, as the older version named it.
    pub table: String,
    /// The layout the older version declared for it.
    pub from_layout: u32,
}

/// A command of a plugin: its name and its handler, declared once as a `static` and used
/// wherever the command is named: registered with [`Plugin::command`], planned by an HTTP
/// router ([`crate::http::Plan::apply`]) and run by [`crate::Harness::run`]. A misspelt
/// command is then a compile error, and the request and result types come with it.
///
/// ```
/// use fsmhost_guest::{Command, Ctx, Error, Harness, Plugin, Txn};
///
/// fn double(_: &mut dyn Txn, _: &Ctx, n: u64) -> Result<u64, Error> {
///     Ok(n * 2)
/// }
/// /// `double`: twice the number.
/// pub static DOUBLE: Command<u64, u64> = Command::new("double", double);
///
/// let mut h = Harness::new(Plugin::new("math", "0.1.0", "oss").command(&DOUBLE)).unwrap();
/// assert_eq!(h.run(&DOUBLE, &21).unwrap(), 42);
/// ```
pub struct Command<Req, Out> {
    name: &'static str,
    handler: fn(&mut dyn Txn, &Ctx, Req) -> Result<Out, Error>,
}

impl<Req, Out> Command<Req, Out> {
    /// The command `name`, carried out by `handler` in a write transaction.
    pub const fn new(
        name: &'static str,
        handler: fn(&mut dyn Txn, &Ctx, Req) -> Result<Out, Error>,
    ) -> Self {
        Command { name, handler }
    }
    /// The command's name: what `apply` and `/v1/apply/{plugin}/{command}` take.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

/// A query of a plugin: its name and its handler, declared once as a `static` like a
/// [`Command`]: registered with [`Plugin::query`], planned by an HTTP router
/// ([`crate::http::Plan::query`]) and run by [`crate::Harness::ask`].
///
/// ```
/// use fsmhost_guest::{Error, Harness, Plugin, Query, Txn};
///
/// fn echo(_: &dyn Txn, s: String) -> Result<String, Error> {
///     Ok(s)
/// }
/// /// `echo`: its argument.
/// pub static ECHO: Query<String, String> = Query::new("echo", echo);
///
/// let h = Harness::new(Plugin::new("echo", "0.1.0", "oss").query(&ECHO)).unwrap();
/// assert_eq!(h.ask(&ECHO, &"hi".to_string()).unwrap(), "hi");
/// ```
pub struct Query<Args, Out> {
    name: &'static str,
    handler: fn(&dyn Txn, Args) -> Result<Out, Error>,
}

impl<Args, Out> Query<Args, Out> {
    /// The query `name`, answered by `handler` in a read-only transaction.
    pub const fn new(
        name: &'static str,
        handler: fn(&dyn Txn, Args) -> Result<Out, Error>,
    ) -> Self {
        Query { name, handler }
    }
    /// The query's name: what `query` and `/v1/query/{plugin}/{query}` take.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

/// A command of *another* plugin that this plugin sends messages to: a `static` naming
/// the plugin and the command, with the request type this plugin encodes for it (the
/// receiver's request, mirrored: plugins do not link each other). Registered with
/// [`Plugin::sends`], sent from a command with [`Message::send`].
///
/// A message runs after the sending command returns `Ok`, in the same transaction and at
/// the same index, as a command of its plugin (which alone writes its tables): so one log
/// entry changes several plugins' tables atomically. If the message fails, the sending
/// command fails with its error and leaves nothing. A message to a plugin the set does not
/// have is dropped. CosmWasm's sub-messages work the same way.
///
/// ```
/// use fsmhost_guest::{Command, Ctx, Error, Harness, Message, Plugin, Txn};
///
/// /// Tells the `audit` plugin about every greeting.
/// static RECORD: Message<String> = Message::new("audit", "record");
/// fn greet(tx: &mut dyn Txn, _: &Ctx, name: String) -> Result<String, Error> {
///     RECORD.send(tx, &name)?;
///     Ok(format!("hello {name}"))
/// }
/// static GREET: Command<String, String> = Command::new("greet", greet);
///
/// fn record(_: &mut dyn Txn, _: &Ctx, name: String) -> Result<(), Error> {
///     if name.is_empty() { Err(Error::bad_request("no name")) } else { Ok(()) }
/// }
/// static RECORD_CMD: Command<String, ()> = Command::new("record", record);
///
/// let greeter = Plugin::new("greeter", "0.1.0", "oss").command(&GREET).sends(&RECORD);
/// let audit = Plugin::new("audit", "0.1.0", "oss").command(&RECORD_CMD);
/// let mut h = Harness::with_peers(greeter, vec![audit]).unwrap();
/// assert_eq!(h.run(&GREET, &"ann".to_string()).unwrap(), "hello ann");
/// // The message's refusal is the command's.
/// assert!(h.run(&GREET, &String::new()).is_err());
/// ```
pub struct Message<Req> {
    plugin: &'static str,
    command: &'static str,
    _req: std::marker::PhantomData<fn(&Req)>,
}

impl<Req: Serialize> Message<Req> {
    /// Messages to `command` of `plugin`.
    pub const fn new(plugin: &'static str, command: &'static str) -> Self {
        Message {
            plugin,
            command,
            _req: std::marker::PhantomData,
        }
    }

    /// The plugin and command it goes to.
    pub fn target(&self) -> MessageTarget {
        MessageTarget {
            plugin: self.plugin.to_string(),
            command: self.command.to_string(),
        }
    }

    /// Sends `req` (encoded as CBOR) from the running command.
    pub fn send(&self, tx: &mut dyn Txn, req: &Req) -> Result<(), Error> {
        tx.send(self.plugin, self.command, &to_cbor(req)?)?;
        Ok(())
    }
}

type CommandFn = Box<dyn Fn(&mut dyn Txn, &Ctx, &[u8]) -> Result<Vec<u8>, Error> + Send + Sync>;
type QueryFn = Box<dyn Fn(&dyn Txn, &[u8]) -> Result<Vec<u8>, Error> + Send + Sync>;
type MigrateFn = Box<dyn Fn(&[u8]) -> Result<Vec<Migrated>, Error> + Send + Sync>;

/// A plugin under construction and, once built, its dispatcher.
///
/// Commands and queries are plain functions over serde types, declared as [`Command`] and
/// [`Query`] handles; the SDK decodes their CBOR payloads and encodes their results.
pub struct Plugin {
    name: &'static str,
    version: &'static str,
    edition: &'static str,
    tables: Vec<&'static dyn AnyTable>,
    commands: Vec<(&'static str, CommandFn)>,
    queries: Vec<(&'static str, QueryFn)>,
    routes: Routes,
    migrations: Vec<(&'static str, u32, MigrateFn)>,
    reads: Vec<&'static dyn AnyTable>,
    sends: Vec<MessageTarget>,
    tick: Option<crate::tick::TickFn>,
}

impl Plugin {
    /// A plugin named `name` (its name in the HTTP API), at `version`, built for `edition`.
    pub fn new(name: &'static str, version: &'static str, edition: &'static str) -> Self {
        Plugin {
            name,
            version,
            edition,
            tables: Vec::new(),
            commands: Vec::new(),
            queries: Vec::new(),
            routes: Routes::default(),
            migrations: Vec::new(),
            reads: Vec::new(),
            sends: Vec::new(),
            tick: None,
        }
    }

    /// Sets the plugin's leader timer (see [`crate::tick`]): the leader calls `tick` about
    /// once a second on its current state and proposes the commands it returns. A plugin
    /// without one returns nothing.
    ///
    /// ```
    /// use fsmhost_guest::{Command, Ctx, Error, Harness, Plugin, Proposal, TickCtx, Txn};
    ///
    /// fn stamp(_: &mut dyn Txn, ctx: &Ctx, _: ()) -> Result<u64, Error> {
    ///     Ok(ctx.timestamp_ms)
    /// }
    /// static STAMP: Command<(), u64> = Command::new("stamp", stamp);
    /// fn tick(_: &dyn Txn, t: &TickCtx) -> Result<Vec<Proposal>, Error> {
    ///     Ok(if t.now_ms % 2 == 0 { vec![STAMP.proposal(&())?] } else { vec![] })
    /// }
    /// let mut h = Harness::new(Plugin::new("clock", "0.1.0", "oss").command(&STAMP).tick(tick))
    ///     .unwrap();
    /// let t = TickCtx { now_ms: 42, ..TickCtx::default() };
    /// assert_eq!(h.tick(&t).unwrap().len(), 1);
    /// ```
    pub fn tick(mut self, tick: crate::tick::TickFn) -> Self {
        self.tick = Some(tick);
        self
    }

    /// Runs the leader timer (the `tick` export).
    pub fn run_tick(
        &self,
        tx: &dyn Txn,
        ctx: &crate::tick::TickCtx,
    ) -> Result<Vec<crate::tick::Proposal>, Error> {
        match self.tick {
            Some(tick) => tick(tx, ctx),
            None => Ok(Vec::new()),
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Declares a table of another plugin that this plugin reads: `table` mirrors the
    /// owner's declaration (name, the indexes it looks up, and the layout of the objects it
    /// decodes). The host refuses a plugin set in which the table has another layout, and
    /// fails undeclared reads of other plugins' tables; [`crate::Harness`] gives the table
    /// to the plugin's tests (empty, unless a peer owns it).
    pub fn reads(mut self, table: &'static dyn AnyTable) -> Self {
        if let Err(e) = table.check() {
            panic!("plugin {}: {}", self.name, e.message);
        }
        self.reads.push(table);
        self
    }

    /// Declares a command of another plugin that this plugin sends messages to.
    pub fn sends<Req: Serialize>(mut self, message: &Message<Req>) -> Self {
        self.sends.push(message.target());
        self
    }

    /// Declares a table the plugin owns.
    ///
    /// # Panics
    ///
    /// If the table lists an index declared for another table ([`crate::Index::new`] names
    /// the table an index belongs to): a mistake in the plugin's source, so the first test
    /// that builds the plugin finds it (in a component, loading it fails).
    pub fn table(mut self, table: &'static dyn AnyTable) -> Self {
        if let Err(e) = table.check() {
            panic!("plugin {}: {}", self.name, e.message);
        }
        self.tables.push(table);
        self
    }

    /// Registers a command (see [`Command`]): its handler runs in a write transaction with
    /// the decoded request. Two commands of one name are refused by the host at load, and
    /// by [`crate::Harness::new`].
    pub fn command<Req, Out>(mut self, command: &Command<Req, Out>) -> Self
    where
        Req: DeserializeOwned + 'static,
        Out: Serialize + 'static,
    {
        let (name, handler) = (command.name, command.handler);
        let f = move |tx: &mut dyn Txn, ctx: &Ctx, payload: &[u8]| {
            let req: Req = decode_cbor(payload, || format!("payload of command {name}"))?;
            to_cbor(&handler(tx, ctx, req)?)
        };
        self.commands.push((name, Box::new(f)));
        self
    }

    /// Registers a query (see [`Query`]): its handler runs in a read-only transaction with
    /// the decoded arguments. Two queries of one name are refused as two commands are.
    pub fn query<Args, Out>(mut self, query: &Query<Args, Out>) -> Self
    where
        Args: DeserializeOwned + 'static,
        Out: Serialize + 'static,
    {
        let (name, handler) = (query.name, query.handler);
        let f = move |tx: &dyn Txn, args: &[u8]| {
            let args: Args = decode_cbor(args, || format!("arguments of query {name}"))?;
            to_cbor(&handler(tx, args)?)
        };
        self.queries.push((name, Box::new(f)));
        self
    }

    /// Declares a migration: when this version is installed over one that stored `table`
    /// at layout `from_layout`, each of those objects is decoded as `Old` (the old
    /// layout's type, which the plugin keeps for this) and `migrate` returns what to store
    /// in its place: objects made with [`crate::Table::migrated`] for any of this
    /// version's tables (the same table at its new layout, or others), or nothing to drop
    /// it. Declare one for every table whose [`crate::Table::layout`] this version raises
    /// and every table it drops (then name the old table). `migrate` runs on every
    /// server at the install's log entry, so, like a command, it must be deterministic;
    /// an error (or a panic) for any object refuses the install before it is committed.
    ///
    /// ```
    /// use fsmhost_guest::{Error, Index, Key, Plugin, Table};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize)]
    /// struct NoteV1 { id: String, text: String }
    /// #[derive(Serialize, Deserialize)]
    /// struct Note { id: String, title: String, body: String }
    ///
    /// static NOTES: Table<Note> = Table::new("notes", &[&NOTES_ID]).layout(2);
    /// static NOTES_ID: Index<Note, String> = Index::new(
    ///     &NOTES, "id",
    ///     |n: &Note, k| k.push(Key::new().string(&n.id)),
    ///     |id: &String| Key::new().string(id).build(),
    /// ).unique();
    ///
    /// fn from_v1(old: NoteV1) -> Result<Vec<fsmhost_guest::Migrated>, Error> {
    ///     let (title, body) = old.text.split_once('\n').unwrap_or((&old.text, ""));
    ///     let note = Note { id: old.id, title: title.into(), body: body.into() };
    ///     Ok(vec![NOTES.migrated(&note)?])
    /// }
    ///
    /// let p = Plugin::new("notes", "0.2.0", "oss").table(&NOTES).migration("notes", 1, from_v1);
    /// # #[derive(Serialize)] struct V1<'a> { id: &'a str, text: &'a str }
    /// # let old = fsmhost_guest::to_cbor(&V1 { id: "a", text: "Title\nbody" }).unwrap();
    /// let out = p.migrate("notes", 1, &old).unwrap();
    /// let note: Note = fsmhost_guest::from_cbor(&out[0].object, "note").unwrap();
    /// assert_eq!((note.title.as_str(), note.body.as_str()), ("Title", "body"));
    /// ```
    pub fn migration<Old>(
        mut self,
        table: &'static str,
        from_layout: u32,
        migrate: fn(Old) -> Result<Vec<Migrated>, Error>,
    ) -> Self
    where
        Old: DeserializeOwned + 'static,
    {
        let f = move |object: &[u8]| {
            let what = || format!("object of table {table} at layout {from_layout}");
            let old: Record<Old> =
                decode_cbor(object, what).map_err(|e| Error::internal(e.message))?;
            migrate(old.0)
        };
        self.migrations.push((table, from_layout, Box::new(f)));
        self
    }

    /// Serves an HTTP route: `router` maps a request to a command, a query or a response,
    /// and `renderer` turns the outcome into the response (see [`crate::http`]).
    pub fn route(mut self, route: Route, router: RouteFn, renderer: RenderFn) -> Self {
        self.routes.add(route, router, renderer);
        self
    }

    /// The plugin's description (the `describe` export).
    pub fn describe(&self) -> Description {
        Description {
            name: self.name.to_string(),
            version: self.version.to_string(),
            edition: self.edition.to_string(),
            tables: self.tables.iter().map(|t| t.schema()).collect(),
            commands: self.commands.iter().map(|(n, _)| n.to_string()).collect(),
            queries: self.queries.iter().map(|(n, _)| n.to_string()).collect(),
            routes: self.routes.list(),
            migrations: self
                .migrations
                .iter()
                .map(|(t, l, _)| Migration {
                    table: t.to_string(),
                    from_layout: *l,
                })
                .collect(),
            reads: self
                .reads
                .iter()
                .map(|t| TableRead {
                    table: t.name().to_string(),
                    layout: t.schema().layout,
                })
                .collect(),
            sends: self.sends.clone(),
        }
    }

    /// The schemas of the tables it reads ([`Plugin::reads`]), for a store to hold them.
    pub fn read_schemas(&self) -> Vec<TableSchema> {
        self.reads.iter().map(|t| t.schema()).collect()
    }

    /// Refuses what the host refuses at load in the names the plugin registered: a
    /// command, a query or a table registered twice, or a migration declared twice
    /// ([`crate::Harness::new`] checks it, so a plugin's unit tests find it too).
    pub fn check(&self) -> Result<(), Error> {
        fn once(
            plugin: &str,
            what: &str,
            names: impl Iterator<Item = String>,
        ) -> Result<(), Error> {
            let mut seen = std::collections::BTreeSet::new();
            for n in names {
                if !seen.insert(n.clone()) {
                    return Err(Error::internal(format!(
                        "plugin {plugin}: {what} {n} is declared twice"
                    )));
                }
            }
            Ok(())
        }
        once(
            self.name,
            "table",
            self.tables.iter().map(|t| t.name().to_string()),
        )?;
        once(
            self.name,
            "command",
            self.commands.iter().map(|(n, _)| n.to_string()),
        )?;
        once(
            self.name,
            "query",
            self.queries.iter().map(|(n, _)| n.to_string()),
        )?;
        once(
            self.name,
            "migration of",
            self.migrations
                .iter()
                .map(|(t, l, _)| format!("table {t} from layout {l}")),
        )?;
        once(
            self.name,
            "table (owned or read)",
            self.tables
                .iter()
                .chain(&self.reads)
                .map(|t| t.name().to_string()),
        )?;
        once(
            self.name,
            "message to",
            self.sends
                .iter()
                .map(|t| format!("{}/{}", t.plugin, t.command)),
        )
    }

    /// Migrates one encoded object an older version stored in `table` at layout
    /// `from_layout` (the `migrate` export); see [`Plugin::migration`].
    pub fn migrate(
        &self,
        table: &str,
        from_layout: u32,
        object: &[u8],
    ) -> Result<Vec<Migrated>, Error> {
        let (_, _, f) = self
            .migrations
            .iter()
            .find(|(t, l, _)| *t == table && *l == from_layout)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "plugin {} declares no migration of table {table} from layout {from_layout}",
                    self.name
                ))
            })?;
        f(object)
    }

    /// Runs a command on encoded bytes (the `apply` export).
    pub fn apply(
        &self,
        tx: &mut dyn Txn,
        ctx: &Ctx,
        command: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let (_, f) = self
            .commands
            .iter()
            .find(|(n, _)| *n == command)
            .ok_or_else(|| {
                Error::not_found(format!("plugin {} has no command {command}", self.name))
            })?;
        f(tx, ctx, payload)
    }

    /// Runs a query on encoded bytes (the `query` export).
    pub fn query_raw(&self, tx: &dyn Txn, name: &str, args: &[u8]) -> Result<Vec<u8>, Error> {
        let (_, f) = self
            .queries
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::not_found(format!("plugin {} has no query {name}", self.name)))?;
        f(tx, args)
    }

    /// Plans a request on one of the plugin's routes (the `route` export).
    pub fn route_request(&self, req: &Request) -> Plan {
        self.routes.route(req)
    }

    /// Renders the outcome of a plan (the `render` export).
    pub fn render(&self, context: &[u8], outcome: Result<Vec<u8>, Error>, index: u64) -> Response {
        self.routes.render(context, outcome, index)
    }

    /// Every index key of an encoded object of `table` (the `index` export).
    pub fn index(&self, table: &str, object: &[u8]) -> Result<Vec<IndexKeys>, Error> {
        self.find_table(table)?.index_object(object)
    }

    /// The key for encoded arguments of `table.index` (the `index-args` export).
    pub fn index_args(
        &self,
        table: &str,
        index: &str,
        args: &[u8],
        prefix: bool,
    ) -> Result<Vec<u8>, Error> {
        self.find_table(table)?.index_args(index, args, prefix)
    }

    fn find_table(&self, table: &str) -> Result<&'static dyn AnyTable, Error> {
        self.tables
            .iter()
            .copied()
            .find(|t| t.name() == table)
            .ok_or_else(|| Error::not_found(format!("plugin {} has no table {table}", self.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Action, Plan};
    use crate::{Harness, Index, Key, Table};

    #[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
    struct Counter {
        name: String,
        value: u64,
    }

    static COUNTERS: Table<Counter> = Table::new("counters", &[&COUNTERS_ID]);
    static COUNTERS_ID: Index<Counter, String> = Index::new(
        &COUNTERS,
        "id",
        |c: &Counter, k| k.push(Key::new().string(&c.name)),
        |name: &String| Key::new().string(name).build(),
    )
    .unique();

    fn add(tx: &mut dyn Txn, _: &Ctx, (name, by): (String, u64)) -> Result<u64, Error> {
        let value = COUNTERS_ID.get(tx, &name)?.map_or(0, |c| c.value) + by;
        COUNTERS.insert(tx, &Counter { name, value })?;
        Ok(value)
    }
    fn value(tx: &dyn Txn, name: String) -> Result<Option<u64>, Error> {
        Ok(COUNTERS_ID.get(tx, &name)?.map(|c| c.value))
    }
    fn reset(_: &mut dyn Txn, _: &Ctx, _: String) -> Result<bool, Error> {
        Ok(true)
    }

    static ADD: Command<(String, u64), u64> = Command::new("add", add);
    static VALUE: Query<String, Option<u64>> = Query::new("value", value);
    /// Another command under `add`'s name.
    static ADD_AGAIN: Command<String, bool> = Command::new("add", reset);
    /// A command the plugin does not register.
    static RESET: Command<String, bool> = Command::new("reset", reset);
    /// Another query under `value`'s name.
    static VALUE_AGAIN: Query<String, Option<u64>> = Query::new("value", value);

    fn plugin() -> Plugin {
        Plugin::new("counters", "0.1.0", "oss")
            .table(&COUNTERS)
            .command(&ADD)
            .query(&VALUE)
    }

    #[test]
    fn the_harness_runs_commands_and_queries_typed_by_their_handles() {
        let mut h = Harness::new(plugin()).expect("harness");
        assert_eq!(h.run(&ADD, &("a".to_string(), 2)).expect("add"), 2);
        assert_eq!(h.run(&ADD, &("a".to_string(), 3)).expect("add"), 5);
        let ctx = Ctx {
            index: 10,
            timestamp_ms: 7,
        };
        assert_eq!(h.run_at(ctx, &ADD, &("b".to_string(), 1)).expect("add"), 1);
        assert_eq!(h.ask(&VALUE, &"a".to_string()).expect("value"), Some(5));
        assert_eq!(h.ask(&VALUE, &"c".to_string()).expect("value"), None);
        assert_eq!(h.store().table_index("counters"), Ok(10));
        let d = h.plugin().describe();
        assert_eq!(
            (d.commands, d.queries),
            (vec!["add".to_string()], vec!["value".to_string()])
        );
    }

    #[test]
    fn a_handle_the_plugin_did_not_register_is_not_found() {
        let mut h = Harness::new(plugin()).expect("harness");
        let err = h.run(&RESET, &"x".to_string()).expect_err("not registered");
        assert_eq!(err.kind, crate::ErrorKind::NotFound);
        assert_eq!(err.message, "plugin counters has no command reset");
        let h = Harness::new(Plugin::new("empty", "0.1.0", "oss")).expect("harness");
        let err = h.ask(&VALUE, &"a".to_string()).expect_err("no queries");
        assert_eq!(err.message, "plugin empty has no query value");
    }

    #[test]
    fn two_commands_or_queries_of_one_name_are_refused() {
        let err = Harness::new(plugin().command(&ADD_AGAIN))
            .err()
            .expect("two commands named add");
        assert_eq!(
            err.message,
            "plugin counters: command add is declared twice"
        );
        let err = Harness::new(plugin().query(&VALUE_AGAIN))
            .err()
            .expect("two queries named value");
        assert_eq!(
            err.message,
            "plugin counters: query value is declared twice"
        );
        let err = Harness::new(plugin().table(&COUNTERS))
            .err()
            .expect("a table twice");
        assert_eq!(
            err.message,
            "plugin counters: table counters is declared twice"
        );
        let twice = plugin()
            .migration("old", 1, |_: Counter| Ok(vec![]))
            .migration("old", 1, |_: Counter| Ok(vec![]));
        let err = Harness::new(twice).err().expect("a migration twice");
        assert_eq!(
            err.message,
            "plugin counters: migration of table old from layout 1 is declared twice"
        );
    }

    #[test]
    #[should_panic(expected = "plugin counters: table others lists index counters.id")]
    fn a_table_listing_another_tables_index_is_refused() {
        static OTHERS: Table<Counter> = Table::new("others", &[&COUNTERS_ID]);
        let _ = plugin().table(&OTHERS);
    }

    #[test]
    fn a_router_plans_a_handle_by_its_name() {
        let plan = Plan::apply(&ADD, &("a".to_string(), 1)).expect("plan");
        assert_eq!(
            plan.action,
            Action::Apply {
                command: "add".into(),
                payload: to_cbor(&("a", 1u64)).expect("cbor"),
            }
        );
        let plan = Plan::query(&VALUE, &"a".to_string()).expect("plan");
        assert_eq!(
            plan.action,
            Action::Query {
                name: "value".into(),
                args: to_cbor("a").expect("cbor"),
            }
        );
    }
}
