//! The openraft state machine: committed entries, in log order, into the [`Fsm`].
//!
//! Owns: the last applied log id and the last membership seen in the log (kept beside the
//! FSM, which is in memory: after a restart openraft replays the log from the start, up
//! to the committed id the log store saved).
//!
//! Invariants: a plugin command's outcome, success or failure, is the entry's response on
//! every server; blank and membership entries only advance the applied id.
//!
//! Indexes: each plugin command is applied at its own FSM index, one more than the last
//! command's, whether it came alone or in a [`Request::Batch`]. The FSM index stamps the
//! store's transaction (Consul's `ModifyIndex`, `X-Consul-Index`) and is derived from the
//! log alone, so every server assigns the same one. It differs from the raft index, which
//! also counts blank and membership entries and gives a batch one index. The adapter
//! makes one call per entry ([`Fsm::apply_log_entry`]), which owns the command loop and
//! its retry; an entry this server cannot apply is a storage error, which stops the node
//! loudly rather than diverge.
//!
//! Snapshots: [`StateMachine::get_snapshot_builder`] captures the store (an O(1) read
//! snapshot) with the applied log id, FSM index and membership while no entry is being
//! applied, so all four agree; the builder then writes `state.bin` in the background
//! (openraft applies entries meanwhile). A snapshot received from the leader is checked
//! whole (size, CRC, every record, the state hash, the plugin set) before it replaces the
//! store; a server starts from its newest usable snapshot ([`recover`]) and replays the log
//! after it.

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::network::RpcClient;
use super::{
    InstallEntry, LogEntry, LogId, NodeInfo, Request, Response, RestoreEntry, StorageError,
    StoredMembership, TypeConfig,
};
use crate::fsm::{self, Fsm};
use crate::plugin::PluginSet;
use crate::protocol::{BlobPush, Rpc};
use crate::snapshot::blobs::Blobs;
use crate::snapshot::state_file::{StateHeader, StateReader};
use crate::snapshot::store::{self as disk, CrcReader, SnapshotDir, SnapshotStore};
use crate::snapshot::{SnapshotError, SnapshotFile};
use crate::state::{ReadTxn, Store};

/// The state machine of one node.
pub struct StateMachine {
    fsm: Arc<Fsm>,
    snapshots: Arc<Snapshots>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
}

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
/// entries name, the client that fetches a missing blob, and the one snapshot received and
/// checked but not yet installed.
pub struct Snapshots {
    /// The snapshot directory.
    pub store: SnapshotStore,
    /// Restore blobs.
    pub blobs: Blobs,
    client: RpcClient,
    prepared: Mutex<Option<Prepared>>,
}

impl Snapshots {
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
const BLOB_FETCH_ATTEMPTS: u32 = 120;

impl Snapshots {
    /// Over these directories; `client` fetches blobs from peers.
    pub fn new(store: SnapshotStore, blobs: Blobs, client: RpcClient) -> Self {
        Snapshots {
            store,
            blobs,
            client,
            prepared: Mutex::new(None),
        }
    }

    /// Fetches blob `sha256` from the first of `peers` that has it, checking its hash.
    async fn fetch_blob(&self, sha256: &str, peers: &[String]) -> Result<(), String> {
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

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl StateMachine {
    /// A state machine over `fsm`: empty, or restored from the snapshot whose header is
    /// `recovered` (see [`recover`]).
    pub fn new(fsm: Arc<Fsm>, snapshots: Arc<Snapshots>, recovered: Option<&StateHeader>) -> Self {
        StateMachine {
            fsm,
            snapshots,
            last_applied: recovered.and_then(|h| h.last_log_id),
            last_membership: recovered.map(|h| h.membership.clone()).unwrap_or_default(),
        }
    }

    /// The FSM.
    pub fn fsm(&self) -> &Arc<Fsm> {
        &self.fsm
    }

    /// Applies the plugin commands of the log entry at `log_id` ([`Fsm::apply_log_entry`]);
    /// one this server cannot apply is a storage error, which stops the node loudly
    /// rather than let it diverge.
    async fn apply_commands(
        &self,
        log_id: LogId,
        commands: &[fsm::Entry],
    ) -> Result<Response, StorageError> {
        self.fsm
            .apply_log_entry(log_id.index, commands)
            .await
            .map(Response::Applied)
            .map_err(|msg| apply_failure(log_id, msg))
    }

    async fn apply_one(&mut self, entry: &LogEntry) -> Result<Response, StorageError> {
        let response = match &entry.payload {
            EntryPayload::Blank => Response::None,
            EntryPayload::Membership(m) => {
                self.last_membership = StoredMembership::new(Some(entry.log_id), m.clone());
                Response::None
            }
            EntryPayload::Normal(Request::Plugin(e)) => {
                self.apply_commands(entry.log_id, std::slice::from_ref(e))
                    .await?
            }
            EntryPayload::Normal(Request::Batch(es)) => {
                self.apply_commands(entry.log_id, es).await?
            }
            EntryPayload::Normal(Request::Autopilot(update)) => {
                Response::AutopilotSet(self.fsm.set_autopilot(update, entry.log_id.index))
            }
            EntryPayload::Normal(Request::Restore(_) | Request::Install(_)) => {
                unreachable!("restore and install entries are applied by their own functions")
            }
        };
        self.last_applied = Some(entry.log_id);
        Ok(response)
    }

    /// Applies a user restore: the blob it names (fetched from a peer if this server lacks
    /// it), checked against its hash and the plugins, replaces the whole state. The FSM
    /// index moves past both the old and the restored state's, so indexes never go back.
    /// The leader checked the blob before proposing the entry; a server that cannot get a
    /// good copy stops loudly rather than diverge.
    async fn apply_restore(
        &mut self,
        log_id: LogId,
        r: &RestoreEntry,
    ) -> Result<Response, StorageError> {
        let fail = |msg: String| apply_failure(log_id, msg);
        let started = Instant::now();
        let path = self.blob(log_id, "restore", &r.sha256, &r.origin).await?;
        let fsm = self.fsm.clone();
        let (at, sha) = (path.clone(), r.sha256.clone());
        let snapshots = self.snapshots.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            if let Some(p) = snapshots.take_prepared(&at) {
                return Ok(p);
            }
            let (actual, _) =
                crate::snapshot::blobs::hash_file(&at).map_err(|e| SnapshotError::at(&at, e))?;
            if actual != sha {
                let _ = std::fs::remove_file(&at);
                return Err(SnapshotError::Corrupt(format!(
                    "{}: SHA-256 is {actual}, not {sha}",
                    at.display()
                )));
            }
            read_received(&fsm, &at)
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(format!("restore entry {}: {e}", log_id.index)))?;
        crate::metrics::METRICS.record_snapshot("restore", started.elapsed());
        let index = self.fsm.last_applied().max(prepared.header.fsm_index) + 1;
        self.fsm.restore(
            prepared.plugins,
            prepared.store,
            prepared.header.system.clone(),
            index,
        );
        self.last_applied = Some(log_id);
        self.snapshots.blobs.mark_applied(&r.sha256, log_id.index);
        tracing::info!(target: "agent.server.fsm",
            "restored a user snapshot: index={} fsm_index={index} sha256={}", log_id.index, r.sha256);
        Ok(Response::Restored(index))
    }

    /// The path of blob `sha256`, which the `what` entry at `log_id` names, fetched from
    /// `origin` or another member when this server lacks it (retrying for a while: a server
    /// that cannot get it stops loudly rather than diverge).
    async fn blob(
        &self,
        log_id: LogId,
        what: &str,
        sha256: &str,
        origin: &str,
    ) -> Result<PathBuf, StorageError> {
        let path =
            self.snapshots.blobs.path(sha256).map_err(|e| {
                apply_failure(log_id, format!("{what} entry {}: {e}", log_id.index))
            })?;
        let mut attempt = 0;
        while !path.exists() {
            let mut peers = vec![origin.to_string()];
            for (_, node) in self.last_membership.membership().nodes() {
                if !peers.contains(&node.rpc_addr) {
                    peers.push(node.rpc_addr.clone());
                }
            }
            match self.snapshots.fetch_blob(sha256, &peers).await {
                Ok(()) => break,
                Err(e) if attempt < BLOB_FETCH_ATTEMPTS => {
                    attempt += 1;
                    tracing::warn!(target: "agent.server.fsm",
                        "fetching the blob of {what} entry {} ({sha256}): {e}; retrying", log_id.index);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    return Err(apply_failure(
                        log_id,
                        format!(
                            "{what} entry {}: no peer could give blob {sha256}: {e}",
                            log_id.index
                        ),
                    ));
                }
            }
        }
        Ok(path)
    }

    /// Applies a plugin install: the component the entry names (fetched from a peer if this
    /// server lacks it), checked against its hash, replaces or joins the plugin set, and
    /// the store is rebuilt for the new set ([`Fsm::install`]). A refusal (the same on
    /// every server: it depends on the log alone) changes nothing and is the entry's
    /// outcome; a component this server cannot load stops it loudly rather than diverge.
    async fn apply_install(
        &mut self,
        log_id: LogId,
        i: &InstallEntry,
    ) -> Result<Response, StorageError> {
        let started = Instant::now();
        let path = self.blob(log_id, "install", &i.sha256, &i.origin).await?;
        let fsm = self.fsm.clone();
        let (name, sha, index) = (i.name.clone(), i.sha256.clone(), log_id.index);
        let outcome = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let plugin = fsm.load_installed(&name, &sha, &bytes)?;
            Ok::<_, String>(fsm.install(Arc::new(plugin), index))
        })
        .await
        .map_err(|e| apply_failure(log_id, e.to_string()))?
        .map_err(|e| apply_failure(log_id, format!("install entry {}: {e}", log_id.index)))?;
        self.last_applied = Some(log_id);
        self.snapshots.blobs.mark_applied(&i.sha256, log_id.index);
        match &outcome {
            Ok(plan) => tracing::info!(target: "agent.server.fsm",
                "installed plugin: name={} from={} to={} sha256={} index={} duration={:?}",
                plan.plugin, plan.from_version.as_deref().unwrap_or("none"), plan.to_version,
                plan.sha256, log_id.index, started.elapsed()),
            Err(e) => tracing::warn!(target: "agent.server.fsm",
                "plugin install refused: index={} error={e}", log_id.index),
        }
        Ok(Response::Installed(outcome.map_err(|e| e.to_string())))
    }
}

/// Writes one snapshot: what [`StateMachine::get_snapshot_builder`] captured.
pub struct SnapshotBuilder {
    snapshots: Arc<Snapshots>,
    read: ReadTxn,
    header: StateHeader,
}

fn snapshot_meta(header: &StateHeader, dir: &SnapshotDir) -> SnapshotMeta<u64, NodeInfo> {
    SnapshotMeta {
        last_log_id: header.last_log_id,
        last_membership: header.membership.clone(),
        snapshot_id: dir
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

async fn open_snapshot(
    header: &StateHeader,
    dir: &SnapshotDir,
) -> Result<Snapshot<TypeConfig>, StorageError> {
    let file = SnapshotFile::open(dir.state_path())
        .await
        .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
    Ok(Snapshot {
        meta: snapshot_meta(header, dir),
        snapshot: Box::new(file),
    })
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let index = self.header.last_log_id.map_or(0, |l| l.index);
        tracing::info!(target: "agent.server.raft", "starting snapshot up to: index={index}");
        let started = Instant::now();
        let (snapshots, read, header) = (
            self.snapshots.clone(),
            self.read.clone(),
            self.header.clone(),
        );
        let dir = tokio::task::spawn_blocking(move || snapshots.store.create(&read, &header))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &io_error(e)))?
            .map_err(|e| {
                tracing::error!(target: "agent.server.snapshot", "failed to write snapshot: {e}");
                StorageIOError::write_snapshot(None, &io_error(e))
            })?;
        crate::metrics::METRICS.record_snapshot("build", started.elapsed());
        open_snapshot(&self.header, &dir).await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for entry in entries {
            out.push(match &entry.payload {
                EntryPayload::Normal(Request::Restore(r)) => {
                    self.apply_restore(entry.log_id, r).await?
                }
                EntryPayload::Normal(Request::Install(i)) => {
                    self.apply_install(entry.log_id, i).await?
                }
                _ => self.apply_one(&entry).await?,
            });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Called between applies: the store, the FSM index and the log id agree.
        let started = Instant::now();
        let read = self.fsm.store().read();
        let header = StateHeader::new(
            &self.fsm.plugins(),
            self.fsm.last_applied(),
            self.last_applied,
            self.last_membership.clone(),
            self.fsm.system(),
        );
        tracing::info!(target: "agent.server.fsm", "snapshot created: duration={:?}", started.elapsed());
        SnapshotBuilder {
            snapshots: self.snapshots.clone(),
            read,
            header,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let path = self.snapshots.store.receiving_path();
        let file = SnapshotFile::create(path)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, NodeInfo>,
        mut snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let fail = |e: SnapshotError| {
            tracing::error!(target: "agent.server.raft", "failed to install snapshot: {e}");
            StorageError::from(StorageIOError::write_snapshot(
                Some(meta.signature()),
                &io_error(e),
            ))
        };
        snapshot
            .finish_writing()
            .await
            .map_err(|e| fail(SnapshotError::at(snapshot.path(), e)))?;
        let started = Instant::now();
        let path = snapshot.path().to_path_buf();
        drop(snapshot);
        let (fsm, snapshots) = (self.fsm.clone(), self.snapshots.clone());
        let announced = meta.last_log_id;
        let prepared = tokio::task::spawn_blocking(move || {
            let p = match snapshots.take_prepared(&path) {
                Some(p) => p,
                None => read_received(&fsm, &path)?,
            };
            if p.header.last_log_id != announced {
                let _ = std::fs::remove_file(&path);
                return Err(SnapshotError::Corrupt(format!(
                    "{}: its header ends at {:?}, raft announced {announced:?}",
                    path.display(),
                    p.header.last_log_id
                )));
            }
            let dir = snapshots
                .store
                .adopt(&p.path, &p.header, p.size, p.crc.clone())?;
            Ok::<_, SnapshotError>((p, dir))
        })
        .await
        .map_err(|e| fail(SnapshotError::Io(e.to_string())))?
        .map_err(fail)?;
        let (p, dir) = prepared;
        self.fsm.restore(
            p.plugins,
            p.store,
            p.header.system.clone(),
            p.header.fsm_index,
        );
        crate::metrics::METRICS.record_snapshot("install", started.elapsed());
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        tracing::info!(target: "agent.server.raft", "installed remote snapshot: index={} term={} path={}",
            dir.index, dir.term, dir.path.display());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(dir) = self.snapshots.store.list().into_iter().next() else {
            return Ok(None);
        };
        let header = {
            let path = dir.state_path();
            tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(&path).map_err(|e| SnapshotError::at(&path, e))?;
                StateReader::open(file).map(|r| r.header().clone())
            })
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &io_error(e)))?
            .map_err(|e| StorageIOError::read_snapshot(None, &io_error(e)))?
        };
        open_snapshot(&header, &dir).await.map(Some)
    }
}

fn apply_failure(log_id: LogId, msg: String) -> StorageError {
    tracing::error!(target: "agent.server.fsm", "{msg}");
    StorageError::from(StorageIOError::apply(log_id, &std::io::Error::other(msg)))
}
