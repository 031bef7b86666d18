//! Tests of both log store backends: openraft's storage conformance suite (with the state
//! machine and its snapshots), reopening, and the refusals at open. The WAL's own format
//! tests (torn records, damage, segments) are in `wal/tests.rs`.

use super::*;
use crate::fsm::Fsm;
use crate::plugin::PluginSet;
use crate::raft::depot::Depot;
use crate::raft::network::RpcClient;
use crate::raft::state_machine::StateMachine;
use crate::snapshot::blobs::Blobs;
use crate::snapshot::store::SnapshotStore;
use ::redb::Database;
use openraft::storage::RaftLogStorageExt;
use openraft::testing::{StoreBuilder, Suite};
use std::sync::Mutex;

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Redb,
    Wal,
}

const KINDS: [Kind; 2] = [Kind::Redb, Kind::Wal];

/// A log of `kind` in `dir` (segments of 4 KiB for the WAL, so tests cross segments).
fn open(kind: Kind, dir: &Path, node: u64, mode: OpenMode) -> Result<LogStore, OpenError> {
    match kind {
        Kind::Redb => LogStore::open(&dir.join("raft.db"), node, mode),
        Kind::Wal => LogStore::open_wal(&dir.join("wal"), node, mode, 4096),
    }
}

struct Builder(Kind);

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = open(self.0, dir.path(), 7, OpenMode::Create).expect("log opens");
        let fsm = Fsm::new(PluginSet::new(Vec::new()).expect("empty plugin set"));
        let snapshots = SnapshotStore::open(dir.path().join("snapshots"), 2).expect("snapshot dir");
        let blobs = Blobs::open(dir.path().join("blobs")).expect("blob dir");
        let snapshots = Arc::new(Depot::new(snapshots, blobs, RpcClient::new()));
        Ok((dir, log, StateMachine::new(Arc::new(fsm), snapshots, None)))
    }
}

type S = Suite<TypeConfig, LogStore, StateMachine, Builder, tempfile::TempDir>;

fn run<F, Fut>(kind: Kind, name: &str, test: F)
where
    F: Fn(LogStore, StateMachine) -> Fut,
    Fut: std::future::Future<Output = Result<(), StorageError>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (_dir, log, sm) = Builder(kind).build().await.unwrap();
        test(log, sm)
            .await
            .unwrap_or_else(|e| panic!("{kind:?} {name}: {e}"));
    });
}

/// openraft's whole storage suite, its snapshot and start-up-from-snapshot tests included,
/// against each backend and the state machine with its snapshot store.
#[test]
fn openraft_conformance_suite_redb() {
    conformance(Kind::Redb);
}

/// The same suite against the WAL.
#[test]
fn openraft_conformance_suite_wal() {
    conformance(Kind::Wal);
}

fn conformance(kind: Kind) {
    macro_rules! suite {
        ($($name:ident),* $(,)?) => {
            $( run(kind, stringify!($name), S::$name); )*
        };
    }
    suite!(
        last_membership_in_log_initial,
        last_membership_in_log,
        last_membership_in_log_multi_step,
        get_membership_initial,
        get_membership_from_log_and_empty_sm,
        get_membership_from_empty_log_and_sm,
        get_membership_from_log_le_sm_last_applied,
        get_membership_from_log_gt_sm_last_applied_1,
        get_membership_from_log_gt_sm_last_applied_2,
        get_initial_state_without_init,
        get_initial_state_with_state,
        get_initial_state_last_log_gt_sm,
        save_vote,
        get_log_entries,
        limited_get_log_entries,
        try_get_log_entry,
        initial_logs,
        get_log_state,
        get_log_id,
        last_id_in_log,
        last_applied_state,
        purge_logs_upto_0,
        purge_logs_upto_5,
        purge_logs_upto_20,
        delete_logs_since_11,
        delete_logs_since_0,
        append_to_log,
        apply_single,
        apply_multiple,
        snapshot_meta,
        get_initial_state_last_log_lt_sm,
        get_initial_state_log_ids,
        get_initial_state_membership_from_log_and_sm,
        get_initial_state_re_apply_committed,
    );
}

fn entry(index: u64) -> LogEntry {
    openraft::Entry {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 7), index),
        payload: openraft::EntryPayload::Blank,
    }
}

#[test]
fn everything_survives_a_reopen() {
    for kind in KINDS {
        survives_a_reopen(kind);
    }
}

fn survives_a_reopen(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut log = open(kind, dir.path(), 9, OpenMode::Create).unwrap();
        assert!(!log.has_state().unwrap());
        let entries: Vec<LogEntry> = (1..=10).map(entry).collect();
        log.blocking_append(entries).await.unwrap();
        log.save_vote(&Vote::new(1, 7)).await.unwrap();
        log.purge(entry(3).log_id).await.unwrap();
        log.truncate(entry(9).log_id).await.unwrap();
        // The committed id rides with the next commit, or is written when the store closes.
        log.save_committed(Some(entry(8).log_id)).await.unwrap();
        drop(log);
        let mut log = open(kind, dir.path(), 9, OpenMode::Existing).unwrap();
        assert!(log.has_state().unwrap(), "{kind:?}");
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 7)));
        assert_eq!(log.read_committed().await.unwrap(), Some(entry(8).log_id));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(3));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(8));
        let got: Vec<u64> = log
            .try_get_log_entries(0..100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(got, vec![4, 5, 6, 7, 8], "{kind:?}");
    });
}

#[test]
fn refusals_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.db");
    let e = LogStore::open(&path, 1, OpenMode::Existing)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("is missing") && e.contains("raft.db"), "{e}");
    drop(LogStore::open(&path, 1, OpenMode::Create).unwrap());
    let e = LogStore::open(&path, 1, OpenMode::Create)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("already exists"), "{e}");
    let e = LogStore::open(&path, 2, OpenMode::Existing)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("belongs to node 1") && e.contains("not to this node 2"),
        "{e}"
    );
    // A redb file that is not a raft log.
    let other = dir.path().join("other.db");
    {
        let db = Database::create(&other).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TableDefinition::<u64, u64>::new("x"))
            .unwrap();
        txn.commit().unwrap();
    }
    let e = LogStore::open(&other, 1, OpenMode::Existing)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("is not an fsmhost raft log"), "{e}");
    // Garbage.
    std::fs::write(&other, vec![0x5a; 8192]).unwrap();
    let e = LogStore::open(&other, 1, OpenMode::Existing)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("cannot be opened") && e.contains("other.db"),
        "{e}"
    );
}

/// What a [`Disk`] does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Every write and growth fails with ENOSPC, as on a full filesystem.
    Full,
    /// fsync fails with EIO.
    Sync,
}

/// A redb backend in memory, shared by its clones (so a database can be opened again over
/// the same bytes), that fails as told.
#[derive(Debug, Clone, Default)]
struct Disk {
    bytes: Arc<Mutex<Vec<u8>>>,
    fault: Arc<Mutex<Option<Fault>>>,
}

impl Disk {
    fn set_fault(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap() = fault;
    }

    fn fails(&self, fault: Fault) -> bool {
        *self.fault.lock().unwrap() == Some(fault)
    }

    fn open(&self) -> Database {
        Database::builder()
            .create_with_backend(self.clone())
            .expect("the database opens")
    }
}

/// ENOSPC and EIO, as the kernel reports them on Linux.
const ENOSPC: i32 = 28;
const EIO: i32 = 5;

impl ::redb::StorageBackend for Disk {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.bytes.lock().unwrap().len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let bytes = self.bytes.lock().unwrap();
        let start = offset as usize;
        let slice = bytes
            .get(start..start + out.len())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(slice);
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let mut bytes = self.bytes.lock().unwrap();
        if len as usize > bytes.len() && self.fails(Fault::Full) {
            return Err(std::io::Error::from_raw_os_error(ENOSPC));
        }
        bytes.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        if self.fails(Fault::Sync) {
            return Err(std::io::Error::from_raw_os_error(EIO));
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        if self.fails(Fault::Full) {
            return Err(std::io::Error::from_raw_os_error(ENOSPC));
        }
        let mut bytes = self.bytes.lock().unwrap();
        let start = offset as usize;
        if bytes.len() < start + data.len() {
            bytes.resize(start + data.len(), 0);
        }
        bytes[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }
}

/// A commit that fails (a full disk, a failed fsync) reaches openraft's flush callback as
/// an error naming the cause, so the entries are never taken as durable; the vote and
/// every later operation fail too (redb latches the first I/O error: nothing is retried
/// over a file whose state is unknown), even once the fault is gone; and a reopen finds
/// everything acknowledged before the fault.
#[test]
fn a_failed_commit_is_never_acknowledged() {
    for (fault, cause) in [
        (Fault::Full, "No space left on device"),
        (Fault::Sync, "Input/output error"),
    ] {
        let disk = Disk::default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let path = PathBuf::from("faulty/raft.db");
            let mut log = LogStore::init(disk.open(), path.clone(), 7, OpenMode::Create).unwrap();
            log.blocking_append((1..=3).map(entry)).await.unwrap();
            disk.set_fault(Some(fault));
            let e = log
                .blocking_append([entry(4)])
                .await
                .expect_err("an append whose commit failed must not be acknowledged")
                .to_string();
            assert!(
                e.contains(cause) && e.contains("faulty/raft.db"),
                "{fault:?}: {e}"
            );
            assert!(log.save_vote(&Vote::new(2, 7)).await.is_err(), "{fault:?}");
            disk.set_fault(None);
            assert!(
                log.blocking_append([entry(4)]).await.is_err(),
                "{fault:?}: an append after a failed commit was acknowledged"
            );
            drop(log);
            let mut log = LogStore::init(disk.open(), path, 7, OpenMode::Existing).unwrap();
            let got: Vec<u64> = log
                .try_get_log_entries(1..4)
                .await
                .unwrap()
                .iter()
                .map(|e| e.log_id.index)
                .collect();
            assert_eq!(got, vec![1, 2, 3], "{fault:?}");
            assert_eq!(log.read_vote().await.unwrap(), None, "{fault:?}");
        });
    }
}
