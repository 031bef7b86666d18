//! Server-to-server traffic: CBOR over HTTP/1.1 on the server port, through one pooled
//! hyper client per node (keep-alive connections are reused across RPCs and peers).
//!
//! Owns: the wire client ([`RpcClient`]) used for raft RPCs and for forwarding, and
//! openraft's network factory over it. The paths served by the other side live in
//! `server::rpc`; the two agree through the constants here.
//!
//! Every call has a deadline. A refused connection is `Unreachable` (openraft backs off
//! before trying that peer again); a timeout is `Timeout`; any other failure is `Network`.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openraft::RPCTypes;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Snapshot, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::guard::Terms;
use super::{NodeInfo, TypeConfig};
use crate::codec::{from_cbor, to_cbor};
use crate::http_body::{self, Body};
use crate::protocol::{Rpc, SNAPSHOT_HEAD, SnapshotHead, TARGET_PARAM};
use crate::tls::{Tls, TlsError};

/// How long a streamed snapshot may take, sending and installing.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The largest response body accepted from a peer.
const MAX_RESPONSE: usize = 64 << 20;

/// Why a call to a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallFailure {
    /// No connection could be made.
    #[error("{addr} is unreachable: {reason}")]
    Unreachable {
        /// The peer.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The deadline passed; the peer may or may not have acted on the request.
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout {
        /// The peer.
        addr: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The request was sent but the exchange failed; the peer may have acted on it.
    #[error("call to {addr} failed: {reason}")]
    Network {
        /// The peer.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The peer answered with an error status.
    #[error("{addr} answered {status}: {message}")]
    Status {
        /// The peer.
        addr: String,
        /// The HTTP status.
        status: u16,
        /// The body, as text.
        message: String,
    },
}

/// A pooled HTTP client for CBOR calls to other servers (and the CLI's calls to a
/// server's HTTP API). An address may carry its scheme (`https://host:port`); a bare
/// `host:port` takes the client's: `https` when it was made with TLS.
#[derive(Clone)]
pub struct RpcClient {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    scheme: &'static str,
    token: Option<Arc<str>>,
}

impl Default for RpcClient {
    fn default() -> Self {
        Self::new()
    }
}

impl RpcClient {
    /// A plain-HTTP client with keep-alive connection pooling (an `https://` address is
    /// refused: no CA is known to check its certificate against).
    pub fn new() -> Self {
        Self::build(None)
    }

    /// A client that speaks TLS with `tls` (a server's `tls.internal_rpc`, or the CLI's
    /// `-ca-file` and client certificate) to bare addresses and `https://` ones.
    pub fn with_tls(tls: &Arc<Tls>) -> Result<Self, TlsError> {
        Ok(Self::build(Some(tls.client_config()?)))
    }

    fn build(tls: Option<rustls::ClientConfig>) -> Self {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let tls = tls.unwrap_or_else(|| {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            })
            .unwrap_or_else(|_| unreachable!("ring supports the default TLS versions"))
        });
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .build(connector);
        RpcClient {
            client,
            scheme,
            token: None,
        }
    }

    /// This client, sending `token` as `X-Consul-Token` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.map(Arc::from);
        self
    }

    /// A request builder for `path` on `addr`, with the token if any.
    fn builder(
        &self,
        method: hyper::Method,
        addr: &str,
        path: &str,
    ) -> hyper::http::request::Builder {
        let builder = hyper::Request::builder()
            .method(method)
            .uri(self.uri(addr, path));
        match &self.token {
            Some(token) => builder.header("X-Consul-Token", token.as_ref()),
            None => builder,
        }
    }

    /// The URI of `path` on `addr`, which may carry its scheme.
    fn uri(&self, addr: &str, path: &str) -> String {
        if addr.starts_with("http://") || addr.starts_with("https://") {
            format!("{}{path}", addr.trim_end_matches('/'))
        } else {
            format!("{}://{addr}{path}", self.scheme)
        }
    }

    /// POSTs `body` (CBOR) to `http://{addr}{path}` and decodes the CBOR answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallFailure> {
        let bytes = self.call_raw(addr, path, to_cbor(body), timeout).await?;
        from_cbor(&bytes, path).map_err(|reason| CallFailure::Network {
            addr: addr.to_string(),
            reason,
        })
    }

    /// POSTs raw bytes and returns the raw answer of a 2xx.
    pub async fn call_raw(
        &self,
        addr: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, CallFailure> {
        self.request(hyper::Method::POST, addr, path, body, timeout)
            .await
    }

    /// Sends a request with any method and returns the raw answer of a 2xx.
    pub async fn request(
        &self,
        method: hyper::Method,
        addr: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, CallFailure> {
        let network = |reason: String| CallFailure::Network {
            addr: addr.to_string(),
            reason,
        };
        let request = self
            .builder(method, addr, path)
            .header(hyper::header::CONTENT_TYPE, "application/cbor")
            .body(http_body::full(body))
            .map_err(|e| network(e.to_string()))?;
        self.send(addr, request, timeout).await
    }

    /// POSTs a streamed body (`application/octet-stream`), with an extra header if given,
    /// and returns the raw answer of a 2xx.
    pub async fn post_stream(
        &self,
        addr: &str,
        path: &str,
        header: Option<(&str, String)>,
        body: Body,
        timeout: Duration,
    ) -> Result<Bytes, CallFailure> {
        let request = self.stream_request(hyper::Method::POST, addr, path, header, body)?;
        self.send(addr, request, timeout).await
    }

    /// Sends a request with a streamed body and returns the response of a 2xx with its
    /// body still streaming (a non-2xx answer is read whole into the error). Only the
    /// connection and the response head are bounded by `timeout`: the body may take as
    /// long as it needs.
    pub async fn stream(
        &self,
        method: hyper::Method,
        addr: &str,
        path: &str,
        header: Option<(&str, String)>,
        body: Body,
        timeout: Duration,
    ) -> Result<hyper::Response<hyper::body::Incoming>, CallFailure> {
        let request = self.stream_request(method, addr, path, header, body)?;
        match tokio::time::timeout(timeout, self.exchange(addr, request)).await {
            Ok(result) => result,
            Err(_) => Err(CallFailure::Timeout {
                addr: addr.to_string(),
                timeout,
            }),
        }
    }

    /// Sends `request`; the response of a 2xx, else its status and body as the error.
    async fn exchange(
        &self,
        addr: &str,
        request: hyper::Request<Body>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, CallFailure> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| connect_failure(addr, &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(CallFailure::Status {
            addr: addr.to_string(),
            status,
            message: String::from_utf8_lossy(&body).trim().to_string(),
        })
    }

    fn stream_request(
        &self,
        method: hyper::Method,
        addr: &str,
        path: &str,
        header: Option<(&str, String)>,
        body: Body,
    ) -> Result<hyper::Request<Body>, CallFailure> {
        let mut builder = self
            .builder(method, addr, path)
            .header(hyper::header::CONTENT_TYPE, "application/octet-stream");
        if let Some((name, value)) = header {
            builder = builder.header(name, value);
        }
        builder.body(body).map_err(|e| CallFailure::Network {
            addr: addr.to_string(),
            reason: e.to_string(),
        })
    }

    async fn send(
        &self,
        addr: &str,
        request: hyper::Request<Body>,
        timeout: Duration,
    ) -> Result<Bytes, CallFailure> {
        let exchange = async {
            let response = self.exchange(addr, request).await?;
            Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| CallFailure::Network {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(CallFailure::Timeout {
                addr: addr.to_string(),
                timeout,
            }),
        }
    }
}

/// A failed request: `Unreachable` when no connection was made, else `Network`.
fn connect_failure(addr: &str, e: &hyper_util::client::legacy::Error) -> CallFailure {
    if e.is_connect() {
        CallFailure::Unreachable {
            addr: addr.to_string(),
            reason: source_chain(e),
        }
    } else {
        CallFailure::Network {
            addr: addr.to_string(),
            reason: source_chain(e),
        }
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// When each peer last answered this node's replication (an append, a heartbeat or a
/// snapshot): the leader's evidence that a server is alive, for autopilot.
#[derive(Clone, Default)]
pub struct Acks(Arc<Mutex<HashMap<u64, Instant>>>);

impl Acks {
    fn record(&self, peer: u64) {
        let mut acks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        acks.insert(peer, Instant::now());
    }

    /// When `peer` last answered, if it ever did.
    pub fn last(&self, peer: u64) -> Option<Instant> {
        let acks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        acks.get(&peer).copied()
    }
}

/// openraft's view of the network: a client per peer over the shared [`RpcClient`].
#[derive(Clone)]
pub struct Network {
    /// This node's id.
    pub id: u64,
    /// The shared client.
    pub client: RpcClient,
    /// Where answers to replication are recorded.
    pub acks: Acks,
}

/// The connection to one peer.
pub struct Peer {
    id: u64,
    target: u64,
    addr: String,
    client: RpcClient,
    acks: Acks,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> Peer {
        Peer {
            id: self.id,
            target,
            addr: node.rpc_addr.clone(),
            client: self.client.clone(),
            acks: self.acks.clone(),
        }
    }
}

impl Peer {
    /// `path` with the target's id, so that a server at a reused address (a wiped data dir
    /// means a new id) refuses traffic meant for the server that was there: accepting it
    /// would look like that server's log going backwards, which openraft's leader cannot
    /// survive.
    fn addressed(&self, path: &str) -> String {
        format!("{path}?{TARGET_PARAM}={:016x}", self.target)
    }

    async fn rpc<Req, Resp, E>(
        &self,
        action: RPCTypes,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, NodeInfo, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned + Terms,
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        let started = std::time::Instant::now();
        let answer: Result<Resp, RaftError<u64, E>> = self
            .client
            .call(&self.addr, &self.addressed(path), req, timeout)
            .await
            .inspect(|_| {
                tracing::trace!(target: "agent.server.raft", "{action:?} to {}: {:?}", self.addr, started.elapsed());
            })
            .map_err(|f| match f {
                CallFailure::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&f)),
                CallFailure::Timeout { .. } => RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout,
                }),
                CallFailure::Network { .. } | CallFailure::Status { .. } => {
                    RPCError::Network(NetworkError::new(&f))
                }
            })?;
        let answer = answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))?;
        self.checked(answer)
            .map_err(|f| RPCError::Network(NetworkError::new(&f)))
    }

    /// `answer` if its terms are sane ([`Terms::check`]); openraft would store its vote.
    fn checked<T: Terms>(&self, answer: T) -> Result<T, CallFailure> {
        answer.check().map_err(|e| {
            tracing::warn!(target: "agent.server.raft", "refused an answer from {}: {e}", self.addr);
            CallFailure::Network {
                addr: self.addr.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(answer)
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        let answer = self
            .rpc(RPCTypes::AppendEntries, Rpc::Append.path(), &rpc, &option)
            .await;
        if answer.is_ok() {
            self.acks.record(self.target);
        }
        answer
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        self.rpc(RPCTypes::Vote, Rpc::Vote.path(), &rpc, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, NodeInfo, RaftError<u64, InstallSnapshotError>>,
    > {
        self.rpc(
            RPCTypes::InstallSnapshot,
            Rpc::Snapshot.path(),
            &rpc,
            &option,
        )
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<u64>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        let answer = tokio::select! {
            answer = self.stream_snapshot(vote, snapshot) => answer,
            closed = cancel => Err(StreamingError::Closed(closed)),
        };
        if answer.is_ok() {
            self.acks.record(self.target);
        }
        answer
    }
}

impl Peer {
    fn streaming_error(
        &self,
        f: CallFailure,
        timeout: Duration,
    ) -> StreamingError<TypeConfig, Fatal<u64>> {
        match f {
            CallFailure::Unreachable { .. } => StreamingError::Unreachable(Unreachable::new(&f)),
            CallFailure::Timeout { .. } => StreamingError::Timeout(Timeout {
                action: RPCTypes::InstallSnapshot,
                id: self.id,
                target: self.target,
                timeout,
            }),
            CallFailure::Network { .. } | CallFailure::Status { .. } => {
                StreamingError::Network(NetworkError::new(&f))
            }
        }
    }

    /// Streams a whole snapshot in one request: the head, then `state.bin` read from disk
    /// as the peer takes it. The peer checks it whole before raft installs it.
    async fn stream_snapshot(
        &self,
        vote: Vote<u64>,
        snapshot: Snapshot<TypeConfig>,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        let path = snapshot.snapshot.path().to_path_buf();
        let crc = path
            .parent()
            .and_then(|dir| crate::snapshot::store::read_meta(dir).ok())
            .map(|m| m.crc);
        use base64::Engine as _;
        let head = base64::engine::general_purpose::STANDARD.encode(to_cbor(&SnapshotHead {
            vote,
            meta: snapshot.meta.clone(),
            crc,
        }));
        drop(snapshot);
        tracing::info!(target: "agent.server.raft", "sending snapshot to {}: path={}", self.addr, path.display());
        let body = http_body::file(path, false, None);
        let bytes = self
            .client
            .post_stream(
                &self.addr,
                &self.addressed(Rpc::SnapshotStream.path()),
                Some((SNAPSHOT_HEAD, head)),
                body,
                SNAPSHOT_TIMEOUT,
            )
            .await
            .map_err(|f| {
                tracing::warn!(target: "agent.server.raft", "sending snapshot to {} failed: {f}", self.addr);
                self.streaming_error(f, SNAPSHOT_TIMEOUT)
            })?;
        let answer: Result<SnapshotResponse<u64>, Fatal<u64>> =
            from_cbor(&bytes, Rpc::SnapshotStream.path()).map_err(|reason| {
                StreamingError::Network(NetworkError::new(&CallFailure::Network {
                    addr: self.addr.clone(),
                    reason,
                }))
            })?;
        let answer =
            answer.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))?;
        self.checked(answer)
            .map_err(|f| StreamingError::Network(NetworkError::new(&f)))
    }
}
