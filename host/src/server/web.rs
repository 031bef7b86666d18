//! The HTTP plumbing both listeners share: an accept loop with graceful shutdown, bounded
//! body reading, query-string parsing and response builders.
//!
//! Owns: nothing about routes; `http` (the operators' API) and `rpc` (server-to-server)
//! give it a handler. It is the one place a failure's kind becomes an HTTP status
//! ([`status_of`]).

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::fsm::FailureKind;
use crate::protocol::{Consistency, OpError};
use crate::tls::{Tls, TlsError};

/// The response type of every handler.
pub type Reply = Response<crate::http_body::Body>;

/// The largest request body on the HTTP port (a command's payload or a query's arguments).
pub const MAX_BODY: usize = 4 << 20;
/// Default blocking wait (Consul: 5 minutes).
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Longest blocking wait (Consul: 10 minutes).
const MAX_WAIT: Duration = Duration::from_secs(600);

/// How long a shutdown waits for in-flight requests.
const DRAIN: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's head (on a new connection, or the next
/// request on a kept-alive one) before the connection is closed: a slow or silent client
/// cannot hold a connection forever.
const HEADER_READ: Duration = Duration::from_secs(30);

/// The connections each client address holds open to one listener.
#[derive(Default)]
struct PerClient(std::sync::Mutex<std::collections::HashMap<IpAddr, u32>>);

/// One counted connection; uncounted when dropped (when the connection ends).
struct Counted(Arc<PerClient>, IpAddr);

impl PerClient {
    /// Counts a connection from `ip`, unless it already holds `limit`.
    fn admit(self: &Arc<Self>, ip: IpAddr, limit: Option<u32>) -> Option<Counted> {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(ip).or_insert(0);
        if limit.is_some_and(|l| *n >= l) {
            return None;
        }
        *n += 1;
        Some(Counted(self.clone(), ip))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut held = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.1);
            }
        }
    }
}

/// Which client addresses one listener limits, and to how many connections each.
pub struct ConnLimit {
    /// Most connections one client address may hold at once (Consul's
    /// `limits.*_max_conns_per_client`); `None`: no limit.
    pub per_client: Option<u32>,
    /// Addresses exempt from the limit (on the server port, the servers of the raft
    /// configuration: a busy follower forwards over many pooled connections).
    pub exempt: Box<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

impl ConnLimit {
    /// `per_client` connections for every client address.
    pub fn every_client(per_client: Option<u32>) -> Self {
        ConnLimit {
            per_client,
            exempt: Box::new(|_| false),
        }
    }
}

/// TLS on a listener: the configuration each handshake uses, and how long it may take.
pub struct Handshake {
    /// The listener's rustls configuration (it reads the current certificates).
    acceptor: tokio_rustls::TlsAcceptor,
    /// How long a client has to complete the handshake before it is closed.
    timeout: Duration,
}

impl Handshake {
    /// Handshakes with `tls`'s listener configuration, each bounded by `timeout`.
    pub fn new(tls: &Arc<Tls>, timeout: Duration) -> Result<Self, TlsError> {
        Ok(Handshake {
            acceptor: tokio_rustls::TlsAcceptor::from(tls.server_config()?),
            timeout,
        })
    }
}

/// Serves `listener` with `handler` until `shutdown` turns true, then stops accepting,
/// lets in-flight requests finish (up to 10 s) and returns. A client address may hold at
/// most `limit.per_client` connections at once; one more is closed on accept. With `tls`,
/// a connection is served only once its handshake completes (with the listener's client
/// certificate checks) within the timeout; no byte of a request is read before.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
    limit: ConnLimit,
    tls: Option<Handshake>,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let handler = Arc::new(handler);
    let tls = tls.map(Arc::new);
    let clients = Arc::new(PerClient::default());
    let mut refused: u64 = 0;
    let failed_handshakes = Arc::new(AtomicU64::new(0));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(target: "agent.http", "{what}: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let per_client = if (limit.exempt)(peer.ip()) { None } else { limit.per_client };
                let Some(counted) = clients.admit(peer.ip(), per_client) else {
                    refused += 1;
                    // One line per power of two, so a flood cannot flood the log.
                    if refused.is_power_of_two() {
                        tracing::warn!(target: "agent.http",
                            "{what}: closed a connection from {}: it holds {} already (limit per client); {refused} refused so far",
                            peer.ip(), per_client.unwrap_or(0));
                    }
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (handler, tls, watcher) = (handler.clone(), tls.clone(), graceful.watcher());
                let failed = failed_handshakes.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_connection(TokioIo::new(stream), handler, watcher).await,
                        Some(tls) => {
                            let outcome =
                                tokio::time::timeout(tls.timeout, tls.acceptor.accept(stream)).await;
                            let reason = match outcome {
                                Ok(Ok(stream)) => {
                                    serve_connection(TokioIo::new(stream), handler, watcher).await;
                                    None
                                }
                                Ok(Err(e)) => Some(e.to_string()),
                                Err(_) => Some(format!("no handshake within {:?}", tls.timeout)),
                            };
                            if let Some(reason) = reason {
                                let n = failed.fetch_add(1, Ordering::Relaxed) + 1;
                                if n.is_power_of_two() {
                                    tracing::warn!(target: "agent.http",
                                        "{what}: TLS handshake error from {peer}: {reason} ({n} so far)");
                                }
                            }
                        }
                    }
                    drop(counted);
                });
            }
            _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(target: "agent.http", "{what}: requests still running after {DRAIN:?}; closing them");
    }
}

/// Serves HTTP/1.1 on one accepted (and, on a TLS listener, handshaken) connection until
/// it closes or a graceful shutdown ends it.
async fn serve_connection<I, H, F>(
    io: I,
    handler: Arc<H>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let service = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ)
        .serve_connection(io, service);
    let _ = watcher.watch(conn).await;
}

/// The request's media type: its `Content-Type` without parameters, lower-cased; `None`
/// when the header is missing, empty or not text.
pub fn media_type(req: &Request<Incoming>) -> Option<String> {
    let v = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    let essence = v.split(';').next().unwrap_or("").trim();
    (!essence.is_empty()).then(|| essence.to_ascii_lowercase())
}

/// A refused request: the status and the message naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status.
    pub status: StatusCode,
    /// What is wrong.
    pub message: String,
}

impl Refusal {
    /// A refusal with this status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }

    /// A 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

/// The HTTP status of a failure of `kind`: the one place a [`FailureKind`] becomes a
/// status.
pub fn status_of(kind: FailureKind) -> StatusCode {
    match kind {
        FailureKind::BadRequest => StatusCode::BAD_REQUEST,
        FailureKind::NotFound => StatusCode::NOT_FOUND,
        FailureKind::Conflict => StatusCode::CONFLICT,
        FailureKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        FailureKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        FailureKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl Refusal {
    /// A refusal for a failure of `kind`.
    pub fn of(kind: FailureKind, message: impl Into<String>) -> Self {
        Self::new(status_of(kind), message)
    }
}

impl From<OpError> for Refusal {
    fn from(e: OpError) -> Self {
        match e {
            OpError::NotLeader => Self::of(FailureKind::Unavailable, "no cluster leader"),
            OpError::Failed { kind, message } | OpError::Refused { kind, message, .. } => {
                Self::of(kind, message)
            }
        }
    }
}

impl From<Refusal> for Reply {
    fn from(r: Refusal) -> Reply {
        text(r.status, r.message)
    }
}

/// A streamed response: the file at `path`, removed after it is sent when `remove_after`.
pub fn file(
    status: StatusCode,
    content_type: &str,
    path: std::path::PathBuf,
    remove_after: bool,
) -> Reply {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(crate::http_body::file(path, remove_after, None))
        .unwrap_or_else(|_| Response::new(crate::http_body::full(Bytes::new())))
}

/// Streams a request body into a new file at `path` (at most `limit` bytes); returns its
/// size. The file is flushed and closed; on error it is removed.
pub async fn body_to_file(
    req: Request<Incoming>,
    path: &std::path::Path,
    limit: u64,
) -> Result<u64, Refusal> {
    crate::http_body::to_file(req.into_body(), path, limit)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::FileTooLarge => {
                Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e}"))
            }
            std::io::ErrorKind::Other => Refusal::bad_request(format!("request body: {e}")),
            _ => Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{}: {e}", path.display()),
            ),
        })
}

/// Reads a request body of at most `limit` bytes.
pub async fn body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Refusal> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {limit} bytes"),
            ))
        }
        Err(e) => Err(Refusal::bad_request(format!(
            "reading the request body: {e}"
        ))),
    }
}

/// The query string as a map (a key given without a value maps to "").
pub fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    query_pairs(req).into_iter().collect()
}

/// The query string's parameters in their order (a key given without a value has "").
pub fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// `?index=&wait=`: the blocking index and the wait, capped at 10 minutes, plus up to
/// wait/16 of jitter as Consul adds so that woken clients do not return in lockstep.
pub fn blocking_params(q: &BTreeMap<String, String>) -> Result<(u64, Duration), Refusal> {
    let index = match q.get("index") {
        None => 0,
        Some(s) => s.parse().map_err(|_| {
            Refusal::bad_request(format!("index: {s:?} is not a non-negative integer"))
        })?,
    };
    let wait = match q.get("wait") {
        None => DEFAULT_WAIT,
        Some(s) => crate::duration::parse(s).ok_or_else(|| {
            Refusal::bad_request(format!("wait: {s:?} is not a duration such as 10s or 5m"))
        })?,
    }
    .min(MAX_WAIT);
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    let jitter = wait / 16 * (u32::from_le_bytes(r) % 1000) / 1000;
    Ok((index, wait + jitter))
}

/// The read consistency that `?stale` or `?consistent` asks for (the default without
/// either); both at once is a 400.
pub fn consistency(q: &BTreeMap<String, String>) -> Result<Consistency, Refusal> {
    match (q.contains_key("stale"), q.contains_key("consistent")) {
        (true, true) => Err(Refusal::bad_request(
            "?stale and ?consistent cannot be used together",
        )),
        (true, false) => Ok(Consistency::Stale),
        (false, true) => Ok(Consistency::Consistent),
        (false, false) => Ok(Consistency::Default),
    }
}

/// `reply` with `X-Consul-Index: index`.
pub fn with_index(mut reply: Reply, index: u64) -> Reply {
    if let Ok(v) = hyper::header::HeaderValue::from_str(&index.to_string()) {
        reply.headers_mut().insert("X-Consul-Index", v);
    }
    reply
}

/// A plain-text response.
pub fn text(status: StatusCode, message: impl Into<String>) -> Reply {
    let mut body = message.into();
    body.push('\n');
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(crate::http_body::full(body))
        .unwrap_or_else(|_| Response::new(crate::http_body::full(Bytes::new())))
}

/// A response with a body and content type.
pub fn bytes(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(crate::http_body::full(body))
        .unwrap_or_else(|_| Response::new(crate::http_body::full(Bytes::new())))
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
    bytes(status, "application/json", value.to_string())
}

/// A CBOR response.
pub fn cbor<T: serde::Serialize>(value: &T) -> Reply {
    bytes(
        StatusCode::OK,
        "application/cbor",
        crate::codec::to_cbor(value),
    )
}
