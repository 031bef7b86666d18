//! The state machine's files: the snapshot directory, the content-addressed blobs that
//! restore and install entries name (and fetching a missing one from a peer), the one
//! snapshot received and checked but not yet installed, and recovery from the newest
//! usable snapshot at start.
//!
//! Owns: [`Depot`], which the state machine adapter and the server share, and the checks a
//! received `state.bin` passes before anything installs it ([`read_received`]).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::network::RpcClient;
use crate::fsm::Fsm;
use crate::plugin::PluginSet;
use crate::protocol::{BlobPush, Rpc};
use crate::snapshot::SnapshotError;
use crate::snapshot::blobs::Blobs;
use crate::snapshot::state_file::{StateHeader, StateReader};
use crate::snapshot::store::{self as disk, CrcReader, SnapshotStore};
use crate::state::Store;

/// A received snapshot already read and checked whole, waiting for openraft to install it.
pub struct Prepared {
    /// The received `state.bin`.
    pub path: PathBuf,
    /// The plugin set it was written under (the configured set with its installed
    /// plugins), which it was read with.
    pub plugins: Arc<PluginSet>,
    /// Its header.
    pub header: StateHeader,
    /// The store it holds.
    pub store: Store,
    /// Its size and CRC.
    pub size: u64,
    /// Its CRC (meta.json's form).
    pub crc: String,
}

/// What the state machine and the server share: the snapshot directory, the blobs restore
/// and install entries name, the client that fetches a missing blob, and the one snapshot
/// received and checked but not yet installed.
pub struct Depot {
    /// The snapshot directory.
    pub store: SnapshotStore,
    /// Restore blobs.
    pub blobs: Blobs,
    client: RpcClient,
    prepared: Mutex<Option<Prepared>>,
}

impl Depot {
    /// Stores a pushed blob under its hash, refusing one whose bytes do not match it.
    pub fn receive_blob(&self, push: &BlobPush) -> Result<(), SnapshotError> {
        if self.blobs.path(&push.sha256)?.exists() {
            return Ok(());
        }
        let tmp = self.blobs.tmp_path();
        if let Err(e) = std::fs::write(&tmp, &push.bytes) {
            let _ = std::fs::remove_file(&tmp); // no half-written file left behind
            return Err(SnapshotError::at(&tmp, e));
        }
        self.blobs.adopt(&tmp, Some(&push.sha256)).map(|_| ())
    }
}

/// How long a server keeps trying to fetch a restore's blob before it stops.
pub(super) const BLOB_FETCH_ATTEMPTS: u32 = 120;

impl Depot {
    /// Over these directories; `client` fetches blobs from peers.
    pub fn new(store: SnapshotStore, blobs: Blobs, client: RpcClient) -> Self {
        Depot {
            store,
            blobs,
            client,
            prepared: Mutex::new(None),
        }
    }

    /// Fetches blob `sha256` from the first of `peers` that has it, checking its hash.
    pub(super) async fn fetch_blob(&self, sha256: &str, peers: &[String]) -> Result<(), String> {
        let mut last = String::from("no peer to ask");
        for addr in peers {
            let tmp = self.blobs.tmp_path();
            let body = crate::http_body::full(crate::codec::to_cbor(&sha256));
            let got = match self
                .client
                .stream(
                    hyper::Method::POST,
                    addr,
                    Rpc::Blob.path(),
                    None,
                    body,
                    Duration::from_secs(10),
                )
                .await
            {
                Ok(response) => crate::http_body::to_file(response.into_body(), &tmp, u64::MAX)
                    .await
                    .map_err(|e| format!("{addr}: {e}"))
                    .and_then(|_| {
                        self.blobs
                            .adopt(&tmp, Some(sha256))
                            .map_err(|e| format!("{addr}: {e}"))
                    }),
                Err(e) => Err(e.to_string()),
            };
            match got {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Reads a received `state.bin` at `path` whole and checks it against `fsm`'s plugins:
    /// the CRC (when the sender gave one), every record, the state hash. Keeps the result
    /// for [`StateMachine::install_snapshot`]. Blocking: run it off the async threads.
    pub fn prepare(
        &self,
        fsm: &Fsm,
        path: &Path,
        expected_crc: Option<&str>,
    ) -> Result<(), SnapshotError> {
        let prepared = read_received(fsm, path)?;
        if let Some(crc) = expected_crc
            && crc != prepared.crc
        {
            return Err(SnapshotError::Corrupt(format!(
                "received state.bin has CRC {}, the sender's meta.json says {crc}",
                prepared.crc
            )));
        }
        *self.prepared.lock().unwrap_or_else(|p| p.into_inner()) = Some(prepared);
        Ok(())
    }

    /// Forgets the snapshot prepared from `path` if raft did not install it (it was older
    /// than this server's state, or the vote was stale), removing the file.
    pub fn discard(&self, path: &Path) {
        if self.take_prepared(path).is_some() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Keeps a state already read and checked (a restore's blob, on the leader that checked
    /// it) for the entry that will apply it, so the leader reads it once.
    pub fn keep(&self, prepared: Prepared) {
        *self.prepared.lock().unwrap_or_else(|p| p.into_inner()) = Some(prepared);
    }

    /// Takes the state prepared from `path`, if it is the one kept.
    pub fn take_prepared(&self, path: &Path) -> Option<Prepared> {
        let mut slot = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|p| p.path == path) {
            slot.take()
        } else {
            None
        }
    }
}

/// Reads `state.bin` at `path` into a new store for `fsm`'s plugins, computing its CRC.
pub fn read_received(fsm: &Fsm, path: &Path) -> Result<Prepared, SnapshotError> {
    let file = std::fs::File::open(path).map_err(|e| SnapshotError::at(path, e))?;
    let mut crc = CrcReader::new(BufReader::with_capacity(1 << 20, file));
    let reader = StateReader::open(&mut crc)?;
    let plugins = fsm
        .plugins_for(&reader.header().system, &reader.header().components)
        .map_err(SnapshotError::Incompatible)?;
    reader.header().check_against(&plugins)?;
    let (header, store) = reader.restore(plugins.schema().clone())?;
    let (size, crc) = crc.finish().map_err(|e| SnapshotError::at(path, e))?;
    Ok(Prepared {
        path: path.to_path_buf(),
        plugins,
        header,
        store,
        size,
        crc,
    })
}

/// Restores `fsm` from the newest usable snapshot in `snapshots`, logging any that is
/// damaged and moving it aside as `<name>.damaged` (an older one is tried). Returns the header of the one restored, or
/// `None` when there is none. A snapshot written under other plugins is an error, not
/// skipped: an older one would not match either, and starting empty would be wrong.
pub fn recover(fsm: &Fsm, snapshots: &SnapshotStore) -> Result<Option<StateHeader>, SnapshotError> {
    for dir in snapshots.list() {
        let started = Instant::now();
        let attempt = disk::verify(&dir.path).and_then(|_| read_received(fsm, &dir.state_path()));
        match attempt {
            Ok(p) => {
                fsm.restore(
                    p.plugins,
                    p.store,
                    p.header.system.clone(),
                    p.header.fsm_index,
                );
                crate::metrics::METRICS.record_snapshot("recover", started.elapsed());
                tracing::info!(target: "agent.server.snapshot",
                    "restored from snapshot: path={} index={} duration={:?}",
                    dir.path.display(), dir.index, started.elapsed());
                return Ok(Some(p.header));
            }
            Err(e @ SnapshotError::Incompatible(_)) => {
                return Err(e.context(dir.path.display()));
            }
            Err(e) => {
                // Set aside (kept for the operator, out of raft's sight): a damaged snapshot
                // must never be offered to openraft or sent to a follower.
                let aside = dir.path.with_extension("damaged");
                tracing::error!(target: "agent.server.snapshot",
                    "snapshot is unusable, trying an older one: path={} error={e} moved_to={}",
                    dir.path.display(), aside.display());
                std::fs::rename(&dir.path, &aside).map_err(|e| SnapshotError::at(&dir.path, e))?;
            }
        }
    }
    Ok(None)
}
