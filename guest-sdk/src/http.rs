//! HTTP routes a plugin serves: its own API beside the host's generic `/v1/apply` and
//! `/v1/query` (Consul's `/v1/kv/` is one).
//!
//! A route is two plain functions. The *router* turns a [`Request`] into a [`Plan`]: a
//! command to apply through the log, a query to run (the host handles `?index`, `?wait`,
//! `?stale` and `?consistent` for it, as for any query), or a response at once; plus a
//! *context*, bytes the router chooses. The *renderer* gets that context back with the
//! outcome (result bytes or the plugin's error) and the outcome's index, and builds the
//! [`Response`]. Neither runs in a transaction: routing is a pure function of the request,
//! so the host can call it on any server, and the command itself still runs in log order.
//!
//! ```
//! use fsmhost_guest::http::{Plan, Request, Response, Route};
//! use fsmhost_guest::{Command, Ctx, Error, Harness, Plugin, Txn};
//!
//! fn echo(_: &mut dyn Txn, _: &Ctx, s: String) -> Result<String, Error> { Ok(s) }
//! static ECHO: Command<String, String> = Command::new("echo", echo);
//!
//! fn route_echo(req: &Request) -> Result<Plan, Error> {
//!     let word = req.path_after("/v1/echo/").to_string();
//!     Plan::apply(&ECHO, &word)
//! }
//!
//! fn render_echo(_ctx: &[u8], out: Result<Vec<u8>, Error>, _index: u64) -> Response {
//!     match out.and_then(|b| fsmhost_guest::from_cbor::<String>(&b, "echo result")) {
//!         Ok(s) => Response::text(200, s),
//!         Err(e) => Response::error(&e),
//!     }
//! }
//!
//! let plugin = Plugin::new("echo", "0.1.0", "oss")
//!     .command(&ECHO)
//!     .route(Route::put("/v1/echo/").prefix(), route_echo, render_echo);
//! let mut h = Harness::new(plugin).unwrap();
//! let resp = h.http(Request::new("PUT", "/v1/echo/hello"));
//! assert_eq!((resp.status, resp.body.as_slice()), (200, &b"hello"[..]));
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;

use crate::acl::Need;
use crate::cbor::{from_cbor, to_cbor};
use crate::error::{Error, ErrorKind};
use crate::plugin::{Command, Query};

/// A route: a method and a path, or a path prefix. A plugin declares its routes with
/// constant strings; the host holds the ones a component described (hence `Cow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `PUT`, `POST` or `DELETE`.
    pub method: Cow<'static, str>,
    /// The path, starting with `/v1/`.
    pub path: Cow<'static, str>,
    /// Serves every path starting with `path` (which then ends with `/`).
    pub prefix: bool,
}

impl Route {
    /// A route for `method` on exactly `path`.
    pub const fn new(method: &'static str, path: &'static str) -> Self {
        Route {
            method: Cow::Borrowed(method),
            path: Cow::Borrowed(path),
            prefix: false,
        }
    }
    /// `GET path`.
    pub const fn get(path: &'static str) -> Self {
        Route::new("GET", path)
    }
    /// `PUT path`.
    pub const fn put(path: &'static str) -> Self {
        Route::new("PUT", path)
    }
    /// `POST path`.
    pub const fn post(path: &'static str) -> Self {
        Route::new("POST", path)
    }
    /// `DELETE path`.
    pub const fn delete(path: &'static str) -> Self {
        Route::new("DELETE", path)
    }
    /// Serves every path below this one too.
    pub const fn prefix(mut self) -> Self {
        self.prefix = true;
        self
    }

    /// Whether a request with this method and path is the route's.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method == method
            && if self.prefix {
                path.starts_with(&*self.path)
            } else {
                path == self.path
            }
    }
}

impl std::fmt::Display for Route {
    /// `METHOD path`, with `*` after a prefix route's path.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let star = if self.prefix { "*" } else { "" };
        write!(f, "{} {}{star}", self.method, self.path)
    }
}

/// A request on one of the plugin's routes (the host builds it from the HTTP request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: String,
    /// The path, percent-decoded.
    pub path: String,
    /// Query parameters in order, percent-decoded (`""` for a parameter without `=`). The
    /// host always includes `dc`, the server's datacenter (Consul's `parseDC`; a request
    /// naming another datacenter never reaches a plugin).
    pub query: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The name of the server serving the request (Consul's agent node).
    pub node: String,
}

impl Request {
    /// A request without parameters or body.
    pub fn new(method: &str, path: &str) -> Self {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            ..Request::default()
        }
    }
    /// With a query parameter added.
    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_string(), value.to_string()));
        self
    }
    /// With this body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The first value of query parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// Whether query parameter `name` is present (Consul's flags: `?recurse`, `?raw`).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    /// Query parameter `name` as an unsigned integer; a bad request naming it when malformed.
    pub fn get_u64(&self, name: &str) -> Result<Option<u64>, Error> {
        self.get(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    Error::bad_request(format!("{name}: {v:?} is not a non-negative integer"))
                })
            })
            .transpose()
    }
    /// The path after `prefix` (the whole path when it does not start with it).
    pub fn path_after(&self, prefix: &str) -> &str {
        self.path.strip_prefix(prefix).unwrap_or(&self.path)
    }
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// Other headers (the host sets `Content-Type`, `Content-Length` and `X-Consul-Index`
    /// itself).
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// A response with these bytes.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type: content_type.to_string(),
            body,
            headers: Vec::new(),
        }
    }
    /// With the header `name: value` too.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    /// With Consul's `X-Consul-Results-Filtered-By-ACLs: true` when `filtered` (a list the
    /// renderer shortened with [`crate::acl::allowed`]).
    pub fn filtered_by_acls(self, filtered: bool) -> Self {
        if filtered {
            self.header("X-Consul-Results-Filtered-By-ACLs", "true")
        } else {
            self
        }
    }
    /// A plain-text response.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Response::bytes(
            status,
            "text/plain; charset=utf-8",
            text.into().into_bytes(),
        )
    }
    /// A JSON response. A value serde cannot encode as JSON is a 500 naming the problem.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response::bytes(status, "application/json", body),
            Err(e) => Response::text(500, format!("encoding the response as JSON: {e}")),
        }
    }
    /// The status an error kind maps to, as the host maps it for `/v1/apply`.
    pub fn status_of(kind: ErrorKind) -> u16 {
        match kind {
            ErrorKind::BadRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::State | ErrorKind::Internal => 500,
        }
    }
    /// A plain-text error with the status of its kind.
    pub fn error(e: &Error) -> Self {
        Response::text(Response::status_of(e.kind), e.message.clone())
    }
}

/// What the host does for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Apply `command` with `payload` through the log.
    Apply {
        /// The command.
        command: String,
        /// Its CBOR payload.
        payload: Vec<u8>,
    },
    /// Run query `name` with `args`.
    Query {
        /// The query.
        name: String,
        /// Its CBOR arguments.
        args: Vec<u8>,
    },
    /// Answer at once.
    Respond(Response),
}

/// What a router returns: the action, the context its renderer gets back, and what the
/// caller's token must allow (see [`crate::acl`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What to do.
    pub action: Action,
    /// Bytes handed back to the renderer.
    pub context: Vec<u8>,
    /// What the caller's token must allow first; `None`: the host's default (`operator`
    /// write for a command, read for a query).
    pub needs: Option<Vec<Need>>,
}

impl Plan {
    /// Apply `command` with `payload` (encoded as CBOR).
    pub fn apply<Req: Serialize, Out>(
        command: &Command<Req, Out>,
        payload: &Req,
    ) -> Result<Plan, Error> {
        Ok(Plan {
            action: Action::Apply {
                command: command.name().to_string(),
                payload: to_cbor(payload)?,
            },
            context: Vec::new(),
            needs: None,
        })
    }
    /// Run `query` with `args` (encoded as CBOR).
    pub fn query<Args: Serialize, Out>(
        query: &Query<Args, Out>,
        args: &Args,
    ) -> Result<Plan, Error> {
        Ok(Plan {
            action: Action::Query {
                name: query.name().to_string(),
                args: to_cbor(args)?,
            },
            context: Vec::new(),
            needs: None,
        })
    }
    /// Answer with `response`.
    pub fn respond(response: Response) -> Plan {
        Plan {
            action: Action::Respond(response),
            context: Vec::new(),
            needs: None,
        }
    }
    /// Needing `need` of the caller's token too.
    pub fn need(mut self, need: Need) -> Plan {
        self.needs.get_or_insert_with(Vec::new).push(need);
        self
    }
    /// Needing nothing up front: the renderer keeps only what [`crate::acl::allowed`]
    /// lets the caller read (a list).
    pub fn filtered(mut self) -> Plan {
        self.needs.get_or_insert_with(Vec::new);
        self
    }
    /// With `context` (encoded as CBOR) for the renderer; read it back with [`context`].
    pub fn context<T: Serialize + ?Sized>(mut self, context: &T) -> Result<Plan, Error> {
        self.context = to_cbor(context)?;
        Ok(self)
    }
}

/// The request's JSON body, decoded as Consul (Go's `encoding/json`) decodes it: keys
/// match field names without regard to case, and `null` means absent, so
/// `#[serde(default)]` applies (see [`crate::json`]). Routers use this rather than
/// `serde_json::from_slice`, so every plugin reads what Consul's clients send.
///
/// ```
/// use fsmhost_guest::http::{Request, json_body};
/// use serde::Deserialize;
///
/// #[derive(Deserialize, Debug)]
/// #[serde(rename_all = "PascalCase")]
/// struct Put { key: String, #[serde(default)] flags: u64 }
///
/// let req = Request::new("PUT", "/v1/thing").body(r#"{"key": "a", "FLAGS": null}"#);
/// let put: Put = json_body(&req).unwrap();
/// assert_eq!((put.key.as_str(), put.flags), ("a", 0));
/// let bad = Request::new("PUT", "/v1/thing").body("{");
/// assert!(json_body::<Put>(&bad).unwrap_err().to_string().contains("EOF"));
/// ```
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, crate::json::JsonError> {
    crate::json::from_slice(&req.body)
}

/// Decodes a context a router set with [`Plan::context`].
pub fn context<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    from_cbor(bytes, "the route's context")
}

/// A router: a request to a plan. An error becomes its plain-text response.
pub type RouteFn = fn(&Request) -> Result<Plan, Error>;
/// A renderer: the context, the outcome and its index, to a response.
pub type RenderFn = fn(&[u8], Result<Vec<u8>, Error>, u64) -> Response;

/// The routes of a plugin, and dispatch over them.
#[derive(Default)]
pub(crate) struct Routes {
    routes: Vec<(Route, RouteFn, RenderFn)>,
}

impl Routes {
    pub(crate) fn add(&mut self, route: Route, router: RouteFn, renderer: RenderFn) {
        self.routes.push((route, router, renderer));
    }

    pub(crate) fn list(&self) -> Vec<Route> {
        self.routes.iter().map(|(r, _, _)| r.clone()).collect()
    }

    /// Routes a request: the longest matching route's plan, with the route's position put
    /// before the context so that [`Routes::render`] finds its renderer.
    pub(crate) fn route(&self, req: &Request) -> Plan {
        let found = self
            .routes
            .iter()
            .enumerate()
            .filter(|(_, (r, _, _))| r.matches(&req.method, &req.path))
            .max_by_key(|(_, (r, _, _))| r.path.len());
        let Some((at, (_, router, _))) = found else {
            return Plan::respond(Response::text(
                404,
                format!("no route {} {}", req.method, req.path),
            ));
        };
        match router(req) {
            Ok(mut plan) => {
                let mut context = (at as u32).to_le_bytes().to_vec();
                context.extend_from_slice(&plan.context);
                plan.context = context;
                plan
            }
            Err(e) => Plan::respond(Response::error(&e)),
        }
    }

    /// Renders an outcome with the renderer of the route that planned it.
    pub(crate) fn render(
        &self,
        context: &[u8],
        outcome: Result<Vec<u8>, Error>,
        index: u64,
    ) -> Response {
        let renderer = context
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .and_then(|at| self.routes.get(at as usize));
        match renderer {
            Some((_, _, render)) => render(&context[4..], outcome, index),
            None => Response::text(500, "render called with a context no route made"),
        }
    }
}
