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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::depot::{BLOB_FETCH_ATTEMPTS, Depot, read_received};
use super::{
    InstallEntry, LogEntry, LogId, NodeInfo, Request, Response, RestoreEntry, StorageError,
    StoredMembership, TypeConfig,
};
use crate::fsm::{self, Fsm};
use crate::snapshot::state_file::{StateHeader, StateReader};
use crate::snapshot::store::SnapshotDir;
use crate::snapshot::{SnapshotError, SnapshotFile};
use crate::state::ReadTxn;

/// The state machine of one node.
pub struct StateMachine {
    fsm: Arc<Fsm>,
    depot: Arc<Depot>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// Log verification, when `raft_logstore.verification` is on.
    verifier: Option<Arc<super::verifier::Verifier>>,
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl StateMachine {
    /// A state machine over `fsm`: empty, or restored from the snapshot whose header is
    /// `recovered` (see [`recover`]).
    pub fn new(fsm: Arc<Fsm>, depot: Arc<Depot>, recovered: Option<&StateHeader>) -> Self {
        StateMachine {
            fsm,
            depot,
            last_applied: recovered.and_then(|h| h.last_log_id),
            last_membership: recovered.map(|h| h.membership.clone()).unwrap_or_default(),
            verifier: None,
        }
    }

    /// The same state machine, checksumming every entry it applies and judging log
    /// checkpoints with `verifier` (`raft_logstore.verification`).
    pub fn with_verifier(mut self, verifier: Arc<super::verifier::Verifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Judges a checkpoint entry (see [`super::verifier`]); reports a mismatch loudly.
    fn check_checkpoint(&self, log_id: LogId, cp: &super::verifier::Checkpoint) {
        use super::verifier::Verdict;
        let Some(verifier) = &self.verifier else {
            return;
        };
        let m = &crate::metrics::METRICS.verifier;
        match verifier.check(cp) {
            Verdict::Verified => {
                m.ranges_verified.inc();
                tracing::debug!(target: "agent.server.raft",
                    "log verification: range {}..={} verified at {}", cp.from, cp.to, log_id.index);
            }
            Verdict::Mismatch(mine) => {
                m.read_checksum_failures.inc();
                tracing::error!(target: "agent.server.raft",
                    "log verification: checksum mismatch in range {}..={}: the leader read \
                     {:016x}, this server read {mine:016x}: this server's raft log returns \
                     entries that differ from the leader's (a damaged log). Replace this \
                     server: stop it, move its data_dir aside and start it empty",
                    cp.from, cp.to, cp.crc);
            }
            Verdict::Skipped => {
                m.skipped.inc();
                tracing::debug!(target: "agent.server.raft",
                    "log verification: range {}..={} not verified here (not all applied since start)",
                    cp.from, cp.to);
            }
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
            EntryPayload::Normal(Request::Acl(op)) => {
                Response::Acl(self.fsm.apply_acl(op.clone(), entry.log_id.index))
            }
            EntryPayload::Normal(Request::Start) => {
                self.fsm.start();
                Response::None
            }
            EntryPayload::Normal(Request::Checkpoint(cp)) => {
                self.check_checkpoint(entry.log_id, cp);
                Response::None
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
        let depot = self.depot.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            if let Some(p) = depot.take_prepared(&at) {
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
        self.depot.blobs.mark_applied(&r.sha256, log_id.index);
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
            self.depot.blobs.path(sha256).map_err(|e| {
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
            match self.depot.fetch_blob(sha256, &peers).await {
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
        self.depot.blobs.mark_applied(&i.sha256, log_id.index);
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
    depot: Arc<Depot>,
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
        let (depot, read, header) = (self.depot.clone(), self.read.clone(), self.header.clone());
        let dir = tokio::task::spawn_blocking(move || depot.store.create(&read, &header))
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
            if let Some(v) = &self.verifier {
                v.record(&entry);
            }
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
            depot: self.depot.clone(),
            read,
            header,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let path = self.depot.store.receiving_path();
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
        let (fsm, depot) = (self.fsm.clone(), self.depot.clone());
        let announced = meta.last_log_id;
        let prepared = tokio::task::spawn_blocking(move || {
            let p = match depot.take_prepared(&path) {
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
            let dir = depot
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
        let Some(dir) = self.depot.store.list().into_iter().next() else {
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
