//! Snapshots, at both layers Consul has them.
//!
//! - Raft snapshots, which bound the log and catch up new or lagging servers:
//!   [`state_file`] writes and reads `state.bin` (a consistent read snapshot of the state
//!   store, streamed, compressed, never whole in memory) and [`store`] keeps them on disk as
//!   `<data_dir>/raft/snapshots/TERM-INDEX-TIMESTAMPMS/{meta.json,state.bin}`.
//! - User archives, which operators save and restore: [`archive`] (Consul's gzip-compressed
//!   tar of `meta.json`, `state.bin` and `SHA256SUMS`).
//!
//! Owns: the formats and the files. Boundaries: it reads and writes the state store only
//! through [`crate::state::Tables`] (rows out) and [`crate::state::Restore`] (rows in);
//! when snapshots are taken and how they travel is `raft::state_machine` and
//! `server::snapshot_jobs`.

pub mod archive;
pub mod blobs;
pub mod state_check;
pub mod state_file;
pub mod store;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// Why a snapshot could not be written, read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The data is damaged or not a snapshot: the message says where and how.
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
    /// The snapshot was written under another plugin set or schema.
    #[error("snapshot does not match the loaded plugins: {0}")]
    Incompatible(String),
}

impl SnapshotError {
    /// An I/O error on `path`.
    pub fn at(path: &Path, e: impl std::fmt::Display) -> Self {
        SnapshotError::Io(format!("{}: {e}", path.display()))
    }

    fn io(e: std::io::Error) -> Self {
        SnapshotError::Io(e.to_string())
    }

    /// The same error with `context` (a file name) in front of its message.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        match self {
            SnapshotError::Io(m) => SnapshotError::Io(format!("{context}: {m}")),
            SnapshotError::Corrupt(m) => SnapshotError::Corrupt(format!("{context}: {m}")),
            SnapshotError::Incompatible(m) => {
                SnapshotError::Incompatible(format!("{context}: {m}"))
            }
        }
    }
}

/// Snapshot data as openraft moves it: a `state.bin` file and its path (so an installed
/// snapshot can be moved into place rather than copied).
pub struct SnapshotFile {
    file: tokio::fs::File,
    path: PathBuf,
}

impl SnapshotFile {
    /// Opens `path` for reading (a snapshot to send).
    pub async fn open(path: PathBuf) -> std::io::Result<Self> {
        let file = tokio::fs::File::open(&path).await?;
        Ok(SnapshotFile { file, path })
    }

    /// Creates `path` for writing (a snapshot being received).
    pub async fn create(path: PathBuf) -> std::io::Result<Self> {
        let file = tokio::fs::File::create(&path).await?;
        Ok(SnapshotFile { file, path })
    }

    /// Where the data is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes what was written to the OS (the reader then opens the path again).
    pub async fn finish_writing(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.file.flush().await
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }
    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}
