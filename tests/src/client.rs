//! A small HTTP client for one server's API, as the tests use it.
//!
//! [`Client`] sends each request on a fresh connection ([`http`]) and gives back the whole
//! answer as an [`HttpReply`]: status, headers and body, with [`HttpReply::json`],
//! [`HttpReply::text`] and [`HttpReply::index`] to read it. The methods without `try_`
//! panic (a test failure) when the server does not answer; the `try_` ones return the
//! connection failure or timeout, for tests that expect one or poll until a server is up.
//!
//! ```no_run
//! use fsmhost_tests::client::Client;
//! use serde_json::json;
//!
//! let c = Client::new("127.0.0.1:8500");
//! assert_eq!(c.put("/v1/kv/greeting", "hello").text(), "true");
//! assert_eq!(c.get("/v1/kv/greeting?raw").text(), "hello");
//! let r = c.apply("kv", "set", &json!({"key": "k", "value": [118]}));
//! assert_eq!((r.status, r.json()), (200, json!(true)));
//! ```
//!
//! [`Cluster::client`](crate::cluster::Cluster::client) gives the client of one server of
//! a cluster.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpReply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (a test failure) when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The `X-Consul-Index` header as a number; panics (a test failure) when there is none.
    pub fn index(&self) -> u64 {
        self.header("X-Consul-Index")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no X-Consul-Index: {self:?}"))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`). Errors are connection
/// failures and timeouts, as text.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<HttpReply, String> {
    http_with(addr, method, path, content_type, &[], body, timeout)
}

/// [`http`] with extra request headers (`X-Consul-Token`, say).
pub fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<HttpReply, String> {
    let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body))
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{addr}: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{addr}: malformed response"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{addr}: no status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpReply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// How long a [`Client`] waits for an answer unless told otherwise: longer than the
/// blocking reads the tests make.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The raw bodies' content type (`get`, `put`, `delete`): neither JSON nor CBOR to the
/// server, which reads its routes' bodies as bytes.
const RAW: &str = "application/octet-stream";

/// A client for the HTTP API of the server at one address.
#[derive(Debug, Clone)]
pub struct Client {
    addr: String,
    timeout: Duration,
    headers: Vec<(String, String)>,
}

impl Client {
    /// A client for `addr` (`host:port`), waiting up to [`DEFAULT_TIMEOUT`] per request.
    pub fn new(addr: impl Into<String>) -> Client {
        Client {
            addr: addr.into(),
            timeout: DEFAULT_TIMEOUT,
            headers: Vec::new(),
        }
    }

    /// The same client, sending `name: value` with every request.
    pub fn with_header(mut self, name: &str, value: &str) -> Client {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The same client, sending the ACL token `secret` (`X-Consul-Token`), or none.
    pub fn with_token(self, secret: Option<&str>) -> Client {
        match secret {
            Some(s) => self.with_header("X-Consul-Token", s),
            None => self,
        }
    }

    /// The same client, waiting up to `timeout` per request.
    pub fn with_timeout(self, timeout: Duration) -> Client {
        Client { timeout, ..self }
    }

    /// The server's address (`host:port`), e.g. for the CLI's `--http-addr`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// One request; the connection failure or timeout as text when there is no answer.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: impl AsRef<[u8]>,
    ) -> Result<HttpReply, String> {
        http_with(
            &self.addr,
            method,
            path,
            content_type,
            &self.headers,
            body.as_ref(),
            self.timeout,
        )
    }

    /// One request; panics (a test failure) when there is no answer.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: impl AsRef<[u8]>,
    ) -> HttpReply {
        self.try_request(method, path, content_type, body)
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.addr))
    }

    /// `GET path`, or the connection failure or timeout.
    pub fn try_get(&self, path: &str) -> Result<HttpReply, String> {
        self.try_request("GET", path, RAW, b"")
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> HttpReply {
        self.request("GET", path, RAW, b"")
    }

    /// `PUT path` with `body` as it is.
    pub fn put(&self, path: &str, body: impl AsRef<[u8]>) -> HttpReply {
        self.request("PUT", path, RAW, body)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> HttpReply {
        self.request("DELETE", path, RAW, b"")
    }

    /// `plugin`'s `command` through the generic API (`POST /v1/apply/{plugin}/{command}`),
    /// with a JSON payload: the answer is JSON too. ([`Cluster::apply`] sends CBOR.)
    ///
    /// [`Cluster::apply`]: crate::cluster::Cluster::apply
    pub fn apply(&self, plugin: &str, command: &str, payload: &serde_json::Value) -> HttpReply {
        self.request(
            "POST",
            &format!("/v1/apply/{plugin}/{command}"),
            "application/json",
            payload.to_string(),
        )
    }

    /// `plugin`'s `query` through the generic API (`POST /v1/query/{plugin}/{query}`, with
    /// `query_string` such as `?stale` or empty), with JSON arguments: the answer is JSON
    /// too. ([`Cluster::query`] sends CBOR.)
    ///
    /// [`Cluster::query`]: crate::cluster::Cluster::query
    pub fn query(
        &self,
        plugin: &str,
        query: &str,
        args: &serde_json::Value,
        query_string: &str,
    ) -> HttpReply {
        self.request(
            "POST",
            &format!("/v1/query/{plugin}/{query}{query_string}"),
            "application/json",
            args.to_string(),
        )
    }
}
