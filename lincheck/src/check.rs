//! Checking a history: splitting it by key, turning each key's events into the search's
//! operations (dropping those that constrain nothing, interning values), running the
//! keys in parallel, and the [`Report`] with a readable account of every failure.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use crate::history::{Call, Event, Ret, Shown};
use crate::search::{self, ABSENT, Kind, Op, Outcome};

/// The default step limit per key. A valid key of 40,000 ops from 12 clients takes 1.5 to
/// 16 million steps (0 to 10% of its ops unanswered), a fraction of a second to a few
/// seconds; a search that needs more than this is reported undecided after ten seconds to
/// a few minutes.
pub const DEFAULT_MAX_STEPS: u64 = 100_000_000;

/// How hard to look.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Candidate evaluations allowed per key before the key is reported undecided
    /// ([`FailureKind::StepLimit`], never a pass); None: no limit.
    pub max_steps: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_steps: Some(DEFAULT_MAX_STEPS),
        }
    }
}

/// The verdict on one key.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyResult {
    /// A linearization exists.
    Linearizable {
        /// Operations checked (failed ops and unanswered reads are dropped).
        ops: usize,
        /// Candidate evaluations the search made.
        steps: u64,
    },
    /// Not linearizable, undecided, or not checkable: see the failure's kind.
    Failed(KeyFailure),
}

/// Why a key did not pass.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureKind {
    /// No linearization exists: the store returned something it could not have.
    NotLinearizable,
    /// The search reached its step limit without deciding.
    StepLimit {
        /// The limit reached.
        steps: u64,
    },
    /// An event of the key contradicts itself (see the explanation).
    Malformed,
}

/// A key that did not pass, with a readable account of where the search got stuck.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyFailure {
    /// The key.
    pub key: String,
    /// What kind of failure.
    pub kind: FailureKind,
    /// The key's ops around where the search got stuck: the end of the longest
    /// linearizable prefix found, the value it leaves, and the pending ops that could not
    /// be placed, with times relative to the key's first op (one op a line).
    pub explanation: String,
}

/// The verdict on a whole history.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Keys checked.
    pub keys: usize,
    /// Events in the history (including failed ops and unanswered reads, which constrain
    /// nothing).
    pub ops: usize,
    /// The keys that did not pass, in key order.
    pub failures: Vec<KeyFailure>,
}

impl Report {
    /// Whether every key is linearizable (a key at its step limit is not).
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_ok() {
            "linearizable"
        } else {
            "NOT shown linearizable"
        };
        writeln!(f, "{} keys, {} ops: {verdict}", self.keys, self.ops)?;
        for failure in &self.failures {
            write!(f, "\n{failure}")?;
        }
        Ok(())
    }
}

impl fmt::Display for KeyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FailureKind::NotLinearizable => writeln!(f, "key {:?}: NOT LINEARIZABLE", self.key)?,
            FailureKind::StepLimit { steps } => writeln!(
                f,
                "key {:?}: UNDECIDED (not a pass): the search reached its limit of {steps} steps; \
                 raise it (lincheck --max-steps, Options::max_steps) or record a shorter history",
                self.key
            )?,
            FailureKind::Malformed => writeln!(f, "key {:?}: CANNOT BE CHECKED", self.key)?,
        }
        f.write_str(&self.explanation)
    }
}

/// Checks every key of `events`, each independently (linearizability is compositional),
/// with the default [`Options`].
pub fn check(events: &[Event]) -> Report {
    check_with(events, &Options::default())
}

/// Checks every key of `events` with `options`, keys in parallel.
pub fn check_with(events: &[Event], options: &Options) -> Report {
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for event in events {
        by_key.entry(&event.key).or_default().push(event);
    }
    let keys: Vec<(&str, Vec<&Event>)> = by_key.into_iter().collect();
    let next = AtomicUsize::new(0);
    let workers = thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, keys.len().max(1));
    let mut results: Vec<Option<KeyResult>> = vec![None; keys.len()];
    thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((key, events)) = keys.get(i) else {
                            return done;
                        };
                        done.push((i, check_key_with(key, events, options)));
                    }
                })
            })
            .collect();
        for handle in handles {
            let done = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (i, result) in done {
                results[i] = Some(result);
            }
        }
    });
    let failures = results
        .into_iter()
        .filter_map(|result| match result {
            Some(KeyResult::Failed(failure)) => Some(failure),
            _ => None,
        })
        .collect();
    Report {
        keys: keys.len(),
        ops: events.len(),
        failures,
    }
}

/// Checks one key's events (all of them must be of `key`) with the default [`Options`].
pub fn check_key(key: &str, events: &[&Event]) -> KeyResult {
    check_key_with(key, events, &Options::default())
}

/// Values interned to ids; id 0 ([`ABSENT`]) is the absent key.
struct Values<'a> {
    ids: HashMap<&'a str, u32>,
    names: Vec<Option<&'a str>>,
}

impl<'a> Values<'a> {
    fn id(&mut self, value: Option<&'a str>) -> u32 {
        let Some(name) = value else { return ABSENT };
        let next = self.names.len() as u32;
        *self.ids.entry(name).or_insert_with(|| {
            self.names.push(Some(name));
            next
        })
    }
}

/// Checks one key's events with `options`.
pub fn check_key_with(key: &str, events: &[&Event], options: &Options) -> KeyResult {
    let failure = |kind, explanation| {
        KeyResult::Failed(KeyFailure {
            key: key.to_string(),
            kind,
            explanation,
        })
    };
    let mut values = Values {
        ids: HashMap::new(),
        names: vec![None],
    };
    let mut ops = Vec::new();
    let mut sources = Vec::new();
    for (index, event) in events.iter().enumerate() {
        if let Some(problem) = event.problem() {
            return failure(
                FailureKind::Malformed,
                format!("  event {index} of the key: {problem}\n"),
            );
        }
        let kind = match (&event.call, &event.ret) {
            (_, Ret::Failed) | (Call::Read, Ret::Unknown) => continue,
            (Call::Write { value }, Ret::Written) => Kind::Write {
                value: values.id(value.as_deref()),
            },
            (Call::Write { value }, _) => Kind::MaybeWrite {
                value: values.id(value.as_deref()),
            },
            (Call::Read, Ret::Read { value }) => Kind::Read {
                value: values.id(value.as_deref()),
            },
            (Call::Cas { expected, new }, Ret::Cas { ok: true }) => Kind::CasOk {
                expected: values.id(expected.as_deref()),
                new: values.id(Some(new)),
            },
            (Call::Cas { expected, .. }, Ret::Cas { ok: false }) => Kind::CasFailed {
                expected: values.id(expected.as_deref()),
            },
            (Call::Cas { expected, new }, _) => Kind::MaybeCas {
                expected: values.id(expected.as_deref()),
                new: values.id(Some(new)),
            },
            (Call::Read, _) => unreachable!("problem() rejects a read answered otherwise"),
        };
        let completed = if kind.known() {
            event.completed.unwrap_or(u64::MAX)
        } else {
            u64::MAX
        };
        ops.push(Op {
            kind,
            invoked: event.invoked,
            completed,
        });
        sources.push(*event);
    }
    if ops.len() >= (u32::MAX / 2) as usize {
        return failure(
            FailureKind::Malformed,
            format!("  {} ops on one key: split the history\n", ops.len()),
        );
    }
    let context = Context {
        ops: &ops,
        sources: &sources,
        values: &values.names,
    };
    match search::run(&ops, values.names.len(), options.max_steps) {
        Outcome::Linearizable { steps } => KeyResult::Linearizable {
            ops: ops.len(),
            steps,
        },
        Outcome::Violation { steps, prefix } => failure(
            FailureKind::NotLinearizable,
            context.explain(&prefix, steps),
        ),
        Outcome::StepLimit { steps, prefix } => failure(
            FailureKind::StepLimit { steps },
            context.explain(&prefix, steps),
        ),
    }
}

/// What an explanation is made from.
struct Context<'a> {
    ops: &'a [Op],
    sources: &'a [&'a Event],
    values: &'a [Option<&'a str>],
}

/// Lines of the prefix's end shown, and pending answered and unanswered ops shown at most.
const PREFIX_SHOWN: usize = 8;
const PENDING_SHOWN: usize = 24;
const UNANSWERED_SHOWN: usize = 8;

impl Context<'_> {
    /// One op: client, call, answer and interval relative to the key's first invocation.
    fn describe(&self, i: usize, origin: u64) -> String {
        let event = self.sources[i];
        let ms = |t: u64| format!("+{:.6} ms", t.saturating_sub(origin) as f64 / 1e6);
        let until = event
            .completed
            .filter(|_| self.ops[i].kind.known())
            .map_or("never answered".to_string(), ms);
        format!(
            "client {:<4} {} => {}  [{} .. {until}]",
            event.client,
            event.call,
            event.ret,
            ms(event.invoked)
        )
    }

    /// The account of a failed search from its longest linearizable prefix.
    fn explain(&self, prefix: &[u32], steps: u64) -> String {
        let origin = self.ops.iter().map(|op| op.invoked).min().unwrap_or(0);
        let mut placed = vec![false; self.ops.len()];
        let mut value = ABSENT;
        for &i in prefix {
            placed[i as usize] = true;
            value = self.ops[i as usize].kind.step(value).unwrap_or(value);
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  at most {} of the key's {} ops could be linearized ({steps} search steps); that prefix ends:",
            prefix.len(),
            self.ops.len()
        );
        if prefix.len() > PREFIX_SHOWN {
            let _ = writeln!(out, "    ... {} earlier ops", prefix.len() - PREFIX_SHOWN);
        }
        for &i in &prefix[prefix.len().saturating_sub(PREFIX_SHOWN)..] {
            let _ = writeln!(out, "    {}", self.describe(i as usize, origin));
        }
        let _ = writeln!(
            out,
            "  leaving the value {}",
            Shown(self.values[value as usize])
        );
        let stuck = (0..self.ops.len())
            .filter(|&i| !placed[i] && self.ops[i].kind.known())
            .min_by_key(|&i| (self.ops[i].completed, self.ops[i].invoked));
        let Some(stuck) = stuck else {
            let _ = writeln!(
                out,
                "  (every answered op was placed when the search stopped)"
            );
            return out;
        };
        let horizon = self.ops[stuck].completed;
        let (mut answered, mut unanswered): (Vec<usize>, Vec<usize>) = (0..self.ops.len())
            .filter(|&i| !placed[i] && self.ops[i].invoked <= horizon)
            .partition(|&i| self.ops[i].kind.known());
        answered.sort_by_key(|&i| (self.ops[i].invoked, i));
        unanswered.sort_by_key(|&i| (self.ops[i].invoked, i));
        let _ = writeln!(
            out,
            "  no order of the pending ops below places them all; the first to return (marked >>) \
             must be placed before it returned:"
        );
        for &i in answered.iter().take(PENDING_SHOWN) {
            let mark = if i == stuck { ">>" } else { "  " };
            let _ = writeln!(out, "  {mark}{}", self.describe(i, origin));
        }
        if answered.len() > PENDING_SHOWN {
            let _ = writeln!(
                out,
                "    ... {} more pending answered ops",
                answered.len() - PENDING_SHOWN
            );
        }
        if !unanswered.is_empty() {
            let _ = writeln!(
                out,
                "  unanswered ops that could take effect there: {}; the latest:",
                unanswered.len()
            );
            for &i in &unanswered[unanswered.len().saturating_sub(UNANSWERED_SHOWN)..] {
                let _ = writeln!(out, "    {}", self.describe(i, origin));
            }
        }
        let wanted = match self.ops[stuck].kind {
            Kind::Read { value }
            | Kind::CasOk {
                expected: value, ..
            } => Some(value),
            _ => None,
        };
        if let Some(value) = wanted.filter(|&v| v != ABSENT) {
            let writer = (0..self.ops.len()).find(|&i| match self.ops[i].kind {
                Kind::Write { value: v } | Kind::MaybeWrite { value: v } => v == value,
                Kind::CasOk { new, .. } | Kind::MaybeCas { new, .. } => new == value,
                _ => false,
            });
            let shown = Shown(self.values[value as usize]);
            let _ = match writer {
                Some(w) => writeln!(
                    out,
                    "  the value {shown} the marked op wants was written by:\n    {}",
                    self.describe(w, origin)
                ),
                None => writeln!(
                    out,
                    "  no op of this key wrote the value {shown} the marked op wants"
                ),
            };
        }
        out
    }
}
