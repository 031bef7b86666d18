//! HTTP bodies for both directions (the operators' API and server-to-server calls): whole
//! bodies, and bodies streamed from a file in fixed-size chunks so that a snapshot or an
//! archive is never held whole in memory.
//!
//! Owns: the one body type every response and every outgoing request uses ([`Body`]).

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use std::path::PathBuf;
use tokio::io::AsyncReadExt;

/// A request or response body: whole or streamed; a streaming error aborts the exchange.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// How much of a file one chunk carries.
const CHUNK: usize = 256 << 10;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body of `prefix` (may be empty) followed by the file at `path`, read chunk by chunk as
/// the peer takes them. `remove_after` deletes the file once it is sent or the transfer stops (a temporary
/// archive). A read error aborts the body, so the peer sees a broken transfer, never a
/// short one.
pub fn file(path: PathBuf, prefix: Bytes, remove_after: bool) -> Body {
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
    tokio::spawn(async move {
        let sent: std::io::Result<()> = async {
            if !prefix.is_empty() && tx.send_data(prefix).await.is_err() {
                return Ok(());
            }
            let mut file = tokio::fs::File::open(&path).await?;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                if tx.send_data(Bytes::from(buf)).await.is_err() {
                    return Ok(()); // the peer went away
                }
            }
        }
        .await;
        if remove_after {
            let _ = tokio::fs::remove_file(&path).await;
        }
        if let Err(e) = sent {
            tracing::warn!(target: "agent.http", "streaming {} failed: {e}", path.display());
            tx.abort(e);
        }
    });
    body.boxed()
}
