//! A plugin: its identity, tables, typed commands and queries, and the dispatch the exports
//! (and the native test harness) go through.

use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, from_cbor, to_cbor};
use crate::http::{Plan, RenderFn, Request, Response, Route, RouteFn, Routes};
use crate::schema::{AnyTable, TableSchema};
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
}

type CommandFn = Box<dyn Fn(&mut dyn Txn, &Ctx, &[u8]) -> Result<Vec<u8>, Error> + Send + Sync>;
type QueryFn = Box<dyn Fn(&dyn Txn, &[u8]) -> Result<Vec<u8>, Error> + Send + Sync>;

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
        }
    }

    /// Declares a table the plugin owns.
    pub fn table(mut self, table: &'static dyn AnyTable) -> Self {
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
            let req: Req = from_cbor(payload, &format!("payload of command {name}"))?;
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
            let args: Args = from_cbor(args, &format!("arguments of query {name}"))?;
            to_cbor(&handler(tx, args)?)
        };
        self.queries.push((name, Box::new(f)));
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
        }
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
