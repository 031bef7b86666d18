//! The nemesis suite's checks beyond linearizability, and the report of a run.
//!
//! Owns: the index check (every read of a value reports the `ModifyIndex` its write was
//! acknowledged with, two acknowledged writes never share an index), the failover measure
//! (per fault, the longest gap between acknowledged writes from its start to the end of its
//! window; median and max per kind) and `report.txt`'s text.

use super::faults::{FaultKind, FaultRecord};
use super::workload::{Acked, ValueRead};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

/// Checks the indexes: each read of a value names the index its write was acknowledged
/// with (or, for a value whose write's outcome is unknown, all its reads agree), and no two
/// acknowledged writes share an index. Returns the violations, readable.
pub fn check_indexes(acked: &[Acked], reads: &[ValueRead]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_index: HashMap<u64, &Acked> = HashMap::new();
    let mut by_value: HashMap<(&str, &str), u64> = HashMap::new();
    for a in acked {
        if let Some(other) = by_index.insert(a.index, a) {
            problems.push(format!(
                "two acknowledged writes at X-Consul-Index {}: {}={:?} and {}={:?}",
                a.index, other.key, other.value, a.key, a.value
            ));
        }
        if let Some(v) = &a.value {
            by_value.insert((&a.key, v), a.index);
        }
    }
    // Values whose write was not acknowledged: the index their first read gave.
    let mut first_seen: HashMap<(&str, &str), &ValueRead> = HashMap::new();
    for r in reads {
        let id = (r.key.as_str(), r.value.as_str());
        match by_value.get(&id) {
            Some(&index) if index != r.modify_index => problems.push(format!(
                "{}={} read from {} at {:.3}s with ModifyIndex {}, its write was acknowledged \
                 with X-Consul-Index {index}",
                r.key,
                r.value,
                r.server,
                r.at as f64 / 1e9,
                r.modify_index
            )),
            Some(_) => {}
            None => {
                let first = *first_seen.entry(id).or_insert(r);
                if first.modify_index != r.modify_index {
                    problems.push(format!(
                        "{}={} read with ModifyIndex {} from {} at {:.3}s and {} from {} at {:.3}s",
                        r.key,
                        r.value,
                        first.modify_index,
                        first.server,
                        first.at as f64 / 1e9,
                        r.modify_index,
                        r.server,
                        r.at as f64 / 1e9
                    ));
                }
            }
        }
        if let Some(index) = r.index
            && index < r.modify_index
        {
            problems.push(format!(
                "{}={} read from {} with X-Consul-Index {index} below its ModifyIndex {}",
                r.key, r.value, r.server, r.modify_index
            ));
        }
    }
    problems
}

/// Sets each fault's `gap`: the longest time without an acknowledged write from its start
/// to its window's end (the window's edges count as points, so a window without any
/// acknowledged write has its whole length as gap). `acked_at` are the completion times of
/// acknowledged writes, in ns since the run's start.
pub fn measure_gaps(faults: &mut [FaultRecord], acked_at: &[u64]) {
    let mut times = acked_at.to_vec();
    times.sort_unstable();
    for f in faults {
        let lo = times.partition_point(|&t| t < f.started);
        let hi = times.partition_point(|&t| t <= f.window_end);
        let mut prev = f.started;
        let mut longest = 0;
        for &t in &times[lo..hi] {
            longest = longest.max(t - prev);
            prev = t;
        }
        longest = longest.max(f.window_end.saturating_sub(prev));
        f.gap = Some(Duration::from_nanos(longest));
    }
}

/// One row of the failover table.
#[derive(Debug, Clone)]
pub struct GapRow {
    /// The fault kind.
    pub kind: FaultKind,
    /// How many faults of it.
    pub count: usize,
    /// The median of their gaps (the mean of the middle two for an even count).
    pub median: Duration,
    /// The longest of their gaps.
    pub max: Duration,
    /// For faults on the leader: the median and longest time until another server led
    /// (`None` inside: some fault saw no new leader while it lasted).
    pub new_leader: Option<(Option<Duration>, Option<Duration>)>,
    /// How many of them began on a cluster that was not whole.
    pub degraded: usize,
}

/// The median of sorted values (the mean of the middle two for an even count).
fn median(sorted: &[Duration]) -> Duration {
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2
    }
}

/// The failover table: per kind, in the cycle's order, the median and max gap.
pub fn gap_table(faults: &[FaultRecord]) -> Vec<GapRow> {
    let mut by_kind: BTreeMap<FaultKind, Vec<&FaultRecord>> = BTreeMap::new();
    for f in faults.iter().filter(|f| f.gap.is_some()) {
        by_kind.entry(f.kind).or_default().push(f);
    }
    FaultKind::ALL
        .iter()
        .filter_map(|k| {
            let of_kind = by_kind.remove(k)?;
            let mut gaps: Vec<Duration> = of_kind.iter().filter_map(|f| f.gap).collect();
            gaps.sort_unstable();
            let on_leader = matches!(
                k,
                FaultKind::KillLeader | FaultKind::PauseLeader | FaultKind::PartitionLeader
            );
            let new_leader = on_leader.then(|| {
                // A fault that saw no new leader sorts last: it is the slowest.
                let mut times: Vec<Option<Duration>> =
                    of_kind.iter().map(|f| f.new_leader).collect();
                times.sort_unstable_by_key(|t| t.unwrap_or(Duration::MAX));
                (times[times.len() / 2], times[times.len() - 1])
            });
            Some(GapRow {
                kind: *k,
                count: gaps.len(),
                median: median(&gaps),
                max: gaps[gaps.len() - 1],
                new_leader,
                degraded: of_kind.iter().filter(|f| !f.whole_at_start).count(),
            })
        })
        .collect()
}

/// The failover table as Markdown: `| fault | count | median gap | max gap | new leader
/// after: median, max | began degraded |`.
pub fn render_gap_table(rows: &[GapRow]) -> String {
    let mut s = String::from(
        "| fault | count | median gap | max gap | new leader after (median, max) | began degraded |\n\
         |---|---|---|---|---|---|\n",
    );
    let secs =
        |d: Option<Duration>| d.map_or("none".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
    for r in rows {
        let leader = r.new_leader.map_or("-".to_string(), |(m, x)| {
            format!("{}, {}", secs(m), secs(x))
        });
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} s | {:.2} s | {leader} | {} |",
            r.kind,
            r.count,
            r.median.as_secs_f64(),
            r.max.as_secs_f64(),
            r.degraded
        );
    }
    s
}

/// The faults one per line: kind, targets, start, length, gap, note.
pub fn render_faults(faults: &[FaultRecord]) -> String {
    let mut s = String::new();
    for f in faults {
        let _ = writeln!(
            s,
            "  {:>7.1}s  {:<18} {:<10} undone after {:4.1}s  gap {}{}{}{}",
            f.started as f64 / 1e9,
            f.kind.name(),
            f.targets.join(","),
            (f.healed - f.started) as f64 / 1e9,
            f.gap
                .map_or("-".to_string(), |g| format!("{:.2}s", g.as_secs_f64())),
            f.new_leader.map_or(String::new(), |d| format!(
                "  new leader after {:.2}s",
                d.as_secs_f64()
            )),
            if f.whole_at_start {
                ""
            } else {
                "  (began degraded)"
            },
            f.note
                .as_ref()
                .map_or(String::new(), |n| format!("  ({n})"))
        );
    }
    s
}
