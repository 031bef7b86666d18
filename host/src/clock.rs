//! The wall clock, read in one place.
//!
//! Only the leader's clock reaches the state machine, inside a log entry
//! (`fsm::Entry::timestamp_ms`); everything else here uses it for file names, timestamps in
//! answers and timers.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
