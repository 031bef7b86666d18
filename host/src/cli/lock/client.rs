//! The API calls `fsmhost lock` makes, on one server: sessions, KV reads (blocking on an
//! index) and `true`/`false` KV writes.

use std::time::Duration;

use hyper::Method;
use serde::Deserialize;

use super::{SESSION_TTL, WAIT};
use crate::raft::network::{CallFailure, RpcClient};

/// One server's HTTP API.
pub(super) struct Http {
    pub(super) client: RpcClient,
    pub(super) addr: String,
}

/// A KV entry as the API returns it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Entry {
    pub(super) key: String,
    #[serde(default)]
    pub(super) value: Option<String>,
    #[serde(default)]
    pub(super) session: Option<String>,
    pub(super) modify_index: u64,
}

impl Http {
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        self.client
            .request(method, &self.addr, path, body, Duration::from_secs(30))
            .await
            .map(|b| b.to_vec())
            .map_err(|e| failure(&e))
    }

    /// A GET, blocking while the index stays `index` (0: at once) for at most `wait`; the
    /// answer (`None` for a 404) and its `X-Consul-Index`.
    async fn read(
        &self,
        path: &str,
        index: u64,
        wait: Duration,
    ) -> Result<(Option<Vec<u8>>, u64), String> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let wait = wait.min(WAIT).max(Duration::from_millis(1));
        let path = format!("{path}{sep}index={index}&wait={}ms", wait.as_millis());
        let call = self.client.stream(
            Method::GET,
            &self.addr,
            &path,
            None,
            crate::http_body::full(Vec::new()),
            Duration::from_secs(60),
        );
        match call.await {
            Ok(response) => {
                let index = response
                    .headers()
                    .get("x-consul-index")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let body = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .map_err(|e| format!("reading {path}: {e}"))?
                    .to_bytes();
                Ok((Some(body.to_vec()), index))
            }
            Err(CallFailure::Status { status: 404, .. }) => Ok((None, index)),
            Err(e) => Err(failure(&e)),
        }
    }

    /// Creates a session for the lock (`release` behavior, Consul's lock TTL).
    pub(super) async fn create_session(&self, name: &str) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "ID")]
            id: String,
        }
        let body = serde_json::json!({
            "Name": name,
            "TTL": format!("{}s", SESSION_TTL.as_secs()),
            "Behavior": "release",
        });
        let out = self
            .call(
                Method::PUT,
                "/v1/session/create",
                body.to_string().into_bytes(),
            )
            .await?;
        let created: Created = serde_json::from_slice(&out)
            .map_err(|e| format!("the answer to a session create is not JSON: {e}"))?;
        Ok(created.id)
    }

    /// Renews the session; false when it is gone.
    pub(super) async fn renew(&self, session: &str) -> Result<bool, String> {
        let path = format!("/v1/session/renew/{session}");
        match self
            .client
            .request(
                Method::PUT,
                &self.addr,
                &path,
                Vec::new(),
                Duration::from_secs(30),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(CallFailure::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(failure(&e)),
        }
    }

    /// Destroys the session (which releases whatever it still holds); errors ignored.
    pub(super) async fn destroy(&self, session: &str) {
        let path = format!("/v1/session/destroy/{session}");
        let _ = self.call(Method::PUT, &path, Vec::new()).await;
    }

    /// A KV write that answers `true` or `false`.
    pub(super) async fn kv_write(&self, path: &str, body: Vec<u8>) -> Result<bool, String> {
        let out = self.call(Method::PUT, path, body).await?;
        Ok(String::from_utf8_lossy(&out).trim() == "true")
    }

    /// The entries at `path` (none for a 404), blocking from `index` for at most Consul's
    /// lock wait time, and the next index.
    pub(super) async fn entries(
        &self,
        path: &str,
        index: u64,
    ) -> Result<(Vec<Entry>, u64), String> {
        self.entries_within(path, index, WAIT).await
    }

    /// [`Http::entries`], blocking for at most `wait`.
    pub(super) async fn entries_within(
        &self,
        path: &str,
        index: u64,
        wait: Duration,
    ) -> Result<(Vec<Entry>, u64), String> {
        let (body, index) = self.read(path, index, wait).await?;
        let entries = match body {
            None => Vec::new(),
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("the server's answer is not KV JSON: {e}"))?,
        };
        Ok((entries, index))
    }
}

/// One line for a failed call, in Consul's words for a refusal.
fn failure(e: &CallFailure) -> String {
    match e {
        CallFailure::Status {
            status, message, ..
        } => format!("Unexpected response code: {status} ({message})"),
        other => other.to_string(),
    }
}

/// A key's path in the KV API, percent-encoded (keeping `/`).
pub(super) fn kv_path(key: &str) -> String {
    crate::cli::kv::key_path(key)
}
