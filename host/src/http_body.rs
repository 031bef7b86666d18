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

/// How long a peer may leave a streamed file body unread before the transfer is aborted
/// (and a temporary file removed): a client that asks for a snapshot and never reads it
/// cannot pin the archive on disk.
pub const STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Called with the bytes sent so far, after each chunk (a progress display).
pub type Progress = Box<dyn Fn(u64) + Send + Sync + 'static>;

/// A body of the file at `path`, read chunk by chunk as the peer takes them.
/// `remove_after` deletes the file once it is sent or the transfer stops (a temporary
/// archive). A read error, or a peer that takes no chunk for [`STALL`], aborts the body,
/// so the peer sees a broken transfer, never a short one.
pub fn file(path: PathBuf, remove_after: bool, progress: Option<Progress>) -> Body {
    file_with_stall(path, remove_after, progress, STALL)
}

/// [`file`], aborting when the peer takes no chunk for `stall`.
pub fn file_with_stall(
    path: PathBuf,
    remove_after: bool,
    progress: Option<Progress>,
    stall: std::time::Duration,
) -> Body {
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
    tokio::spawn(async move {
        let sent: std::io::Result<()> = async {
            let mut file = tokio::fs::File::open(&path).await?;
            let mut total = 0u64;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                match tokio::time::timeout(stall, tx.send_data(Bytes::from(buf))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Ok(()), // the peer went away
                    Err(_) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("the peer read nothing for {stall:?}"),
                        ));
                    }
                }
                total += n as u64;
                if let Some(p) = &progress {
                    p(total);
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

/// Writes a body (a request's or a response's) into a new file at `path`, at most `limit`
/// bytes; returns its size. A body over the limit is `ErrorKind::FileTooLarge`; a broken
/// transfer is `ErrorKind::Other` naming the cause. On any error the file is removed.
pub async fn to_file<B>(body: B, path: &std::path::Path, limit: u64) -> std::io::Result<u64>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    use tokio::io::AsyncWriteExt;
    let result = async {
        let mut file = tokio::fs::File::create(path).await?;
        let mut body = std::pin::pin!(body);
        let mut total = 0u64;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| std::io::Error::other(format!("the transfer broke: {e}")))?;
            if let Ok(data) = frame.into_data() {
                total += data.len() as u64;
                if total > limit {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::FileTooLarge,
                        format!("the body is larger than {limit} bytes"),
                    ));
                }
                file.write_all(&data).await?;
            }
        }
        file.flush().await?;
        file.sync_all().await?;
        Ok(total)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unread_temporary_file_is_removed_after_the_stall() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.tgz");
        std::fs::write(&path, vec![7u8; 8 * CHUNK]).unwrap();
        let body = file_with_stall(
            path.clone(),
            true,
            None,
            std::time::Duration::from_millis(50),
        );
        // Nobody reads: the channel fills, the sender stalls, the file goes.
        for _ in 0..100 {
            if !path.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(!path.exists(), "the unread archive is still on disk");
        drop(body);
    }
}
