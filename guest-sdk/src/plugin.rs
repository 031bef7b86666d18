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

/// What `describe` returns.
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
    /// Declared migrations: `(table, from_layout)`.
    pub migrations: Vec<(String, u32)>,
}

type CommandFn = Box<dyn Fn(&mut dyn Txn, &Ctx, &[u8]) -> Result<Vec<u8>, Error> + Send + Sync>;
type QueryFn = Box<dyn Fn(&dyn Txn, &[u8]) -> Result<Vec<u8>, Error> + Send + Sync>;
type MigrateFn = Box<dyn Fn(&[u8]) -> Result<Vec<Migrated>, Error> + Send + Sync>;

/// A plugin under construction and, once built, its dispatcher.
///
/// Commands and queries are plain functions over serde types; the SDK decodes their CBOR
/// payloads and encodes their results.
pub struct Plugin {
    name: &'static str,
    version: &'static str,
    edition: &'static str,
    tables: Vec<&'static dyn AnyTable>,
    commands: Vec<(&'static str, CommandFn)>,
    queries: Vec<(&'static str, QueryFn)>,
    routes: Routes,
    migrations: Vec<(&'static str, u32, MigrateFn)>,
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
        }
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

    /// Registers a command: `handler` runs in a write transaction with the decoded request.
    pub fn command<Req, Resp>(
        mut self,
        name: &'static str,
        handler: fn(&mut dyn Txn, &Ctx, Req) -> Result<Resp, Error>,
    ) -> Self
    where
        Req: DeserializeOwned + 'static,
        Resp: Serialize + 'static,
    {
        let f = move |tx: &mut dyn Txn, ctx: &Ctx, payload: &[u8]| {
            let req: Req = decode_cbor(payload, || format!("payload of command {name}"))?;
            to_cbor(&handler(tx, ctx, req)?)
        };
        self.commands.push((name, Box::new(f)));
        self
    }

    /// Registers a query: `handler` runs in a read-only transaction with the decoded args.
    pub fn query<Args, Resp>(
        mut self,
        name: &'static str,
        handler: fn(&dyn Txn, Args) -> Result<Resp, Error>,
    ) -> Self
    where
        Args: DeserializeOwned + 'static,
        Resp: Serialize + 'static,
    {
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
                .map(|(t, l, _)| (t.to_string(), *l))
                .collect(),
        }
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
