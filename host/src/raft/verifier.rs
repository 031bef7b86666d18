//! Log verification (Consul's `raft_logstore.verification`): the leader periodically
//! appends a checkpoint entry carrying the checksum of the log range since the previous
//! checkpoint, as its state machine read that range back from its log; every server's
//! state machine checksums the same range as it reads and applies it, and reports a
//! mismatch (an ERROR naming the range and both checksums, and the metric
//! `raft.logstore.verifier.read_checksum_failures`).
//!
//! Owns: the per-entry digests of the entries applied since the last checkpoint, the
//! range checksum, and the verdict on a checkpoint. What it catches: an entry that a
//! server's log store returns differently from what the leader's returned (a store bug, or
//! bytes changed on disk that still pass the store's own CRC). Who proposes checkpoints:
//! `server::timers` (the leader, every `interval`).
//!
//! A server that restarted has digests only from its restart on: a checkpoint whose range
//! starts before them cannot be verified there, and is counted as skipped, not failed.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::LogEntry;
use crate::codec::to_cbor;

/// The most digests kept (entries applied between two checkpoints); beyond it the oldest
/// are dropped and their range is skipped.
const MAX_DIGESTS: usize = 1 << 20;

const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);

/// What a checkpoint entry carries: the checksum of the entries `from..=to` (raft
/// indexes) as the proposing leader's state machine read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The first index of the range.
    pub from: u64,
    /// The last index of the range.
    pub to: u64,
    /// The checksum of the range ([`Verifier::range`]).
    pub crc: u64,
}

/// The verdict on one checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// This server read the same range.
    Verified,
    /// It read something else: its checksum of the range.
    Mismatch(u64),
    /// It did not apply the whole range since it started (a restart, a snapshot).
    Skipped,
}

#[derive(Default)]
struct Digests {
    /// (raft index, digest of the entry as read), in apply order.
    entries: VecDeque<(u64, u64)>,
    /// The `to` of the last checkpoint applied.
    last_checkpoint: u64,
}

/// The digests of one server's applied entries (see the module doc).
#[derive(Default)]
pub struct Verifier {
    digests: Mutex<Digests>,
}

impl Verifier {
    fn lock(&self) -> std::sync::MutexGuard<'_, Digests> {
        self.digests.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the digest of an entry as the state machine read it.
    pub fn record(&self, entry: &LogEntry) {
        let digest = CRC64.checksum(&to_cbor(entry));
        let mut d = self.lock();
        if d.entries.len() >= MAX_DIGESTS {
            d.entries.pop_front();
        }
        d.entries.push_back((entry.log_id.index, digest));
    }

    /// The checksum of the entries `from..=to`, if every one of them was recorded.
    fn range_of(d: &Digests, from: u64, to: u64) -> Option<u64> {
        let mut crc = CRC64.digest();
        let mut next = from;
        for &(index, digest) in d.entries.iter().filter(|(i, _)| (from..=to).contains(i)) {
            if index != next {
                return None;
            }
            crc.update(&digest.to_le_bytes());
            next += 1;
        }
        (next == to + 1 && from <= to).then(|| crc.finalize())
    }

    /// The checkpoint a leader would propose now: from the last checkpoint to the last
    /// entry it applied. `None` when nothing was applied since, or the range is not whole.
    pub fn propose(&self) -> Option<Checkpoint> {
        let d = self.lock();
        let to = d.entries.back()?.0;
        // A leader that restarted since the last checkpoint starts at what it has seen.
        let first = d.entries.front()?.0;
        let from = (d.last_checkpoint + 1).max(first);
        let crc = Self::range_of(&d, from, to)?;
        Some(Checkpoint { from, to, crc })
    }

    /// Judges a checkpoint being applied, then forgets the digests it covers.
    pub fn check(&self, cp: &Checkpoint) -> Verdict {
        let mut d = self.lock();
        let verdict = match Self::range_of(&d, cp.from, cp.to) {
            Some(crc) if crc == cp.crc => Verdict::Verified,
            Some(crc) => Verdict::Mismatch(crc),
            None => Verdict::Skipped,
        };
        while d.entries.front().is_some_and(|(i, _)| *i <= cp.to) {
            d.entries.pop_front();
        }
        d.last_checkpoint = d.last_checkpoint.max(cp.to);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entry(index: u64, term: u64) -> LogEntry {
        openraft::Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn the_same_entries_verify_and_a_different_one_does_not() {
        let (leader, follower) = (Verifier::default(), Verifier::default());
        for i in 1..=5 {
            leader.record(&entry(i, 1));
            follower.record(&entry(i, if i == 3 { 2 } else { 1 }));
        }
        let cp = leader.propose().expect("a range");
        assert_eq!((cp.from, cp.to), (1, 5));
        assert_eq!(leader.check(&cp), Verdict::Verified);
        assert!(matches!(follower.check(&cp), Verdict::Mismatch(_)));
        // The next range starts after this one.
        leader.record(&entry(6, 1));
        assert_eq!(leader.propose().map(|c| (c.from, c.to)), Some((6, 6)));
    }

    #[test]
    fn a_range_not_wholly_seen_is_skipped() {
        let v = Verifier::default();
        for i in 4..=6 {
            v.record(&entry(i, 1));
        }
        let cp = Checkpoint {
            from: 1,
            to: 6,
            crc: 0,
        };
        assert_eq!(v.check(&cp), Verdict::Skipped);
    }
}
