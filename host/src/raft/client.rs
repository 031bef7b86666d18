//! The HTTP client of server-to-server calls (raft RPCs, forwarding, blobs) and of the
//! CLI: one pooled hyper client over TLS (hyper-rustls) or plain TCP, with a deadline on
//! every call.
//!
//! A refused connection is `Unreachable` (openraft backs off before trying that peer
//! again); a timeout is `Timeout`; an answer that is not 2xx is `Status`; any other failure
//! is `Network`.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::{from_cbor, to_cbor};
use crate::http_body::{self, Body};
use crate::tls::{Tls, TlsError};

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
