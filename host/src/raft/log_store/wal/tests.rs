//! The WAL's own behaviour: segments, a torn last record cut at start, damage refused
//! naming the segment and offset, truncation and purging across segments, and a log that
//! a snapshot skipped ahead.

use super::*;
use crate::raft::log_store::{LogStore, OpenMode};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};

fn entry(term: u64, index: u64) -> LogEntry {
    openraft::Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 7), index),
        payload: EntryPayload::Blank,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Segments of 512 bytes: a few entries each.
const SMALL: u64 = 512;

fn open(dir: &Path, mode: OpenMode) -> Result<LogStore, crate::raft::log_store::OpenError> {
    LogStore::open_wal(dir, 7, mode, SMALL)
}

async fn indexes(log: &mut LogStore) -> Vec<u64> {
    log.try_get_log_entries(0..u64::MAX)
        .await
        .expect("read")
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| segment::parse_name(p).is_some())
        .collect();
    v.sort();
    v
}

async fn append(log: &mut LogStore, range: std::ops::RangeInclusive<u64>) {
    log.blocking_append(range.map(|i| entry(1, i)).collect::<Vec<_>>())
        .await
        .expect("append");
}

/// Zeroes a few payload bytes of the last record of `segment`: a torn write.
pub(crate) fn tear_last_record(segment: &Path) {
    let scanned = segment::scan(segment, true).expect("scan");
    let last = scanned.records.last().expect("a record");
    let mut bytes = std::fs::read(segment).expect("read");
    let at = last.offset as usize + 24 + 2;
    bytes[at..at + 5].fill(0);
    std::fs::write(segment, bytes).expect("write");
}

#[test]
fn entries_span_segments_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("dir");
    rt().block_on(async {
        let mut log = open(dir.path(), OpenMode::Create).expect("create");
        for i in 1..=40 {
            append(&mut log, i..=i).await;
        }
        assert!(segments(dir.path()).len() > 3, "{:?}", segments(dir.path()));
        drop(log);
        let mut log = open(dir.path(), OpenMode::Existing).expect("reopen");
        assert_eq!(indexes(&mut log).await, (1..=40).collect::<Vec<_>>());
        // A range inside the log, from a later segment.
        let got = log.try_get_log_entries(25..28).await.expect("read");
        assert_eq!(
            got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            vec![25, 26, 27]
        );
    });
}

#[test]
fn a_torn_last_record_is_cut_and_the_log_goes_on() {
    let dir = tempfile::tempdir().expect("dir");
    rt().block_on(async {
        let mut log = open(dir.path(), OpenMode::Create).expect("create");
        append(&mut log, 1..=3).await;
        drop(log);
        // A crash in the middle of the last write: a page of its record never written.
        let last = segments(dir.path()).pop().expect("a segment");
        tear_last_record(&last);
        let mut log = open(dir.path(), OpenMode::Existing).expect("reopen cuts the torn record");
        assert_eq!(indexes(&mut log).await, vec![1, 2]);
        append(&mut log, 3..=4).await;
        drop(log);
        let mut log = open(dir.path(), OpenMode::Existing).expect("reopen");
        assert_eq!(indexes(&mut log).await, vec![1, 2, 3, 4]);
    });
}

#[test]
fn damage_before_the_tail_stops_the_start_naming_segment_and_offset() {
    let dir = tempfile::tempdir().expect("dir");
    rt().block_on(async {
        let mut log = open(dir.path(), OpenMode::Create).expect("create");
        for i in 1..=3 {
            append(&mut log, i..=i).await;
        }
        drop(log);
        let seg = segments(dir.path()).pop().expect("a segment");
        let mut bytes = std::fs::read(&seg).expect("read");
        // The first record's payload, followed by two intact records of later batches.
        let at = segment::HEADER as usize + 30;
        bytes[at] ^= 0x40;
        std::fs::write(&seg, &bytes).expect("write");
        let e = open(dir.path(), OpenMode::Existing)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains(&seg.display().to_string())
                && e.contains(&format!("offset {}", segment::HEADER)),
            "{e}"
        );
        assert!(e.contains("followed by an intact record"), "{e}");
    });
}

#[test]
fn truncation_and_purging_cross_segments() {
    let dir = tempfile::tempdir().expect("dir");
    rt().block_on(async {
        let mut log = open(dir.path(), OpenMode::Create).expect("create");
        for i in 1..=30 {
            append(&mut log, i..=i).await;
        }
        let before = segments(dir.path()).len();
        log.truncate(entry(1, 12).log_id).await.expect("truncate");
        assert!(segments(dir.path()).len() < before);
        // A new leader's entries replace the tail.
        log.blocking_append((12..=14).map(|i| entry(2, i)).collect::<Vec<_>>())
            .await
            .expect("append");
        log.purge(entry(1, 9).log_id).await.expect("purge");
        drop(log);
        let mut log = open(dir.path(), OpenMode::Existing).expect("reopen");
        let got = log.try_get_log_entries(0..100).await.expect("read");
        let ids: Vec<(u64, u64)> = got
            .iter()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect();
        assert_eq!(
            ids,
            vec![(1, 10), (1, 11), (2, 12), (2, 13), (2, 14)],
            "purged up to 9, truncated from 12, then term 2"
        );
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(9));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(14));
    });
}

#[test]
fn a_snapshot_that_skips_the_log_ahead_starts_a_new_segment() {
    let dir = tempfile::tempdir().expect("dir");
    rt().block_on(async {
        let mut log = open(dir.path(), OpenMode::Create).expect("create");
        append(&mut log, 1..=5).await;
        // A snapshot up to 100 installed: everything up to it purged, the log goes on at 101.
        log.purge(entry(1, 100).log_id).await.expect("purge");
        append(&mut log, 101..=103).await;
        drop(log);
        let mut log = open(dir.path(), OpenMode::Existing).expect("reopen");
        assert_eq!(indexes(&mut log).await, vec![101, 102, 103]);
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(100));
    });
}

#[test]
fn a_vote_and_the_committed_id_survive_and_a_foreign_wal_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    rt().block_on(async {
        let mut log = open(dir.path(), OpenMode::Create).expect("create");
        log.save_vote(&openraft::Vote::new(3, 7))
            .await
            .expect("vote");
        append(&mut log, 1..=2).await;
        log.save_committed(Some(entry(1, 2).log_id))
            .await
            .expect("committed");
        drop(log);
        let mut log = open(dir.path(), OpenMode::Existing).expect("reopen");
        assert_eq!(
            log.read_vote().await.expect("vote"),
            Some(openraft::Vote::new(3, 7))
        );
        assert_eq!(
            log.read_committed().await.expect("committed"),
            Some(entry(1, 2).log_id)
        );
        drop(log);
        let e = LogStore::open_wal(dir.path(), 8, OpenMode::Existing, SMALL)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("belongs to node 7"), "{e}");
        let e = open(dir.path(), OpenMode::Create)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("already exists"), "{e}");
    });
}

#[test]
fn a_read_racing_a_truncation_returns_the_entries_now_in_the_log() {
    let dir = tempfile::tempdir().expect("dir");
    rt().block_on(async {
        let mut log = open(dir.path(), OpenMode::Create).expect("create");
        append(&mut log, 1..=6).await;
        let backend = log.backend.clone();
        let crate::raft::log_store::Backend::Wal(wal) = &*backend else {
            panic!("opened as a WAL")
        };
        // A reader took the locations of 4..=6, then released the lock ...
        let located = wal.locate(4, 7, |_| true).expect("locate");
        // ... and before it read them, a new leader's entries replaced the tail.
        log.truncate(entry(1, 4).log_id).await.expect("truncate");
        log.blocking_append((4..=6).map(|i| entry(2, i)).collect::<Vec<_>>())
            .await
            .expect("append");
        let stale = read_located(&located).expect_err("the old locations now hold term 2");
        assert!(stale.contains("rewritten while read"), "{stale}");
        // read_range notices and reads again under the lock.
        let terms: Vec<u64> = wal
            .read_range(1, 7)
            .expect("read")
            .iter()
            .map(|e| e.log_id.leader_id.term)
            .collect();
        assert_eq!(terms, vec![1, 1, 1, 2, 2, 2]);
    });
}
