//! The checker's tests: histories generated from a simulated register (valid by
//! construction), the same histories doctored with one anomaly each, small histories
//! compared against an exhaustive search, and hand-made cases for unanswered ops.

use std::collections::HashMap;
use std::time::Instant;

use crate::search::splitmix64;
use crate::{Call, Event, FailureKind, KeyResult, Options, Ret, check, check_key, check_with};

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        splitmix64(&mut self.0) % n
    }
    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// The shape of a generated history.
#[derive(Clone, Copy)]
struct Shape {
    clients: u64,
    ops: usize,
    /// Percent of ops left unanswered (half of those take effect, up to 4 durations late).
    unknown: u64,
    /// Percent of ops refused.
    failed: u64,
    max_gap: u64,
    max_len: u64,
}

const SHAPE: Shape = Shape {
    clients: 8,
    ops: 300,
    unknown: 5,
    failed: 3,
    max_gap: 20,
    max_len: 60,
};

/// A generated history and what really happened: for each event that took effect, the
/// value before and after it.
struct History {
    events: Vec<Event>,
    effects: Vec<Option<(Option<String>, Option<String>)>>,
}

/// Simulates clients on one register: each op takes effect at a random instant in its
/// interval (unanswered ones: later still, or never), and answers are computed by applying
/// the ops in that order.
fn generate(seed: u64, key: &str, shape: Shape) -> History {
    let mut rng = Rng(seed);
    let mut clocks: Vec<u64> = (0..shape.clients)
        .map(|_| rng.below(shape.max_gap))
        .collect();
    let mut issued: Vec<String> = Vec::new();
    let mut events = Vec::new();
    let mut effect_at = Vec::new();
    for n in 0..shape.ops {
        let client = rng.below(shape.clients);
        let invoked = clocks[client as usize] + 1 + rng.below(shape.max_gap);
        let len = 1 + rng.below(shape.max_len);
        clocks[client as usize] = invoked + len;
        let fresh = format!("{key}-v{n}");
        let call = match rng.below(10) {
            0 => Call::Write { value: None },
            1..=3 => Call::Write { value: Some(fresh) },
            4..=6 => Call::Read,
            _ => {
                let expected = match issued.len() {
                    0 => None,
                    _ if rng.percent(20) => None,
                    len => Some(issued[len - 1 - rng.below(3.min(len as u64)) as usize].clone()),
                };
                Call::Cas {
                    expected,
                    new: fresh,
                }
            }
        };
        if let Call::Write { value: Some(v) } | Call::Cas { new: v, .. } = &call {
            issued.push(v.clone());
        }
        let fate = rng.below(100);
        let (ret, completed, at) = if fate < shape.failed {
            (Ret::Failed, Some(invoked + len), None)
        } else if fate < shape.failed + shape.unknown {
            let at = rng.percent(50).then(|| invoked + rng.below(4 * len + 1));
            (Ret::Unknown, None, at)
        } else {
            (
                Ret::Written,
                Some(invoked + len),
                Some(invoked + rng.below(len + 1)),
            )
        };
        events.push(Event {
            client,
            key: key.to_string(),
            call,
            ret,
            invoked,
            completed,
        });
        effect_at.push(at);
    }
    let mut order: Vec<usize> = (0..events.len())
        .filter(|&i| effect_at[i].is_some())
        .collect();
    order.sort_by_key(|&i| (effect_at[i], i));
    let mut value: Option<String> = None;
    let mut effects = vec![None; events.len()];
    for i in order {
        let before = value.clone();
        let event = &mut events[i];
        let answer = match &event.call {
            Call::Write { value: new } => {
                value = new.clone();
                Ret::Written
            }
            Call::Read => Ret::Read {
                value: value.clone(),
            },
            Call::Cas { expected, new } => {
                let ok = *expected == value;
                if ok {
                    value = Some(new.clone());
                }
                Ret::Cas { ok }
            }
        };
        if event.ret != Ret::Unknown {
            event.ret = answer;
        }
        effects[i] = Some((before, value.clone()));
    }
    History { events, effects }
}

impl History {
    fn answered(&self, i: usize) -> bool {
        !matches!(self.events[i].ret, Ret::Unknown | Ret::Failed)
    }

    /// Answered ops that changed the value, each with the value before it and the
    /// answered op that produced that value, finished before this one was invoked.
    fn overwrites(&self) -> Vec<(usize, String, usize)> {
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, effect) in self.effects.iter().enumerate() {
            if let Some((before, Some(after))) = effect
                && before.as_deref() != Some(after)
            {
                producer.insert(after, i);
            }
        }
        let mut found = Vec::new();
        for (i, effect) in self.effects.iter().enumerate() {
            let Some((Some(before), after)) = effect else {
                continue;
            };
            let Some(&p) = producer.get(before.as_str()) else {
                continue;
            };
            if after.as_ref() != Some(before)
                && self.answered(i)
                && self.answered(p)
                && self.events[p].completed < Some(self.events[i].invoked)
            {
                found.push((i, before.clone(), p));
            }
        }
        found
    }

    fn reads(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.events.len()).filter(|&i| matches!(self.events[i].ret, Ret::Read { .. }))
    }

    fn finished_before(&self, a: usize, b: usize) -> bool {
        self.events[a]
            .completed
            .is_some_and(|done| done < self.events[b].invoked)
    }
}

/// A read answering a value that was overwritten, by an acknowledged op, before the read
/// was invoked.
fn stale_read(h: &History) -> Option<Vec<Event>> {
    let (_, old, r) = h
        .overwrites()
        .into_iter()
        .flat_map(|(w2, old, _)| h.reads().map(move |r| (w2, old.clone(), r)))
        .find(|&(w2, _, r)| h.finished_before(w2, r))?;
    let mut events = h.events.clone();
    events[r].ret = Ret::Read { value: Some(old) };
    Some(events)
}

/// A read after an acknowledged write, with no other write in between, answering the
/// value before that write.
fn lost_write(h: &History) -> Option<Vec<Event>> {
    let (_, old, r) = h
        .overwrites()
        .into_iter()
        .filter(|&(w, _, _)| matches!(h.events[w].call, Call::Write { value: Some(_) }))
        .flat_map(|(w, old, _)| h.reads().map(move |r| (w, old.clone(), r)))
        .find(|&(w, _, r)| {
            h.finished_before(w, r)
                && h.effects[r].as_ref().map(|e| &e.0) == h.effects[w].as_ref().map(|e| &e.1)
        })?;
    let mut events = h.events.clone();
    events[r].ret = Ret::Read { value: Some(old) };
    Some(events)
}

/// A cas that answered false turned into one that answered true, expecting a value that
/// was overwritten before it was invoked.
fn impossible_cas(h: &History) -> Option<Vec<Event>> {
    let (old, c) = h
        .overwrites()
        .into_iter()
        .flat_map(|(q, old, _)| (0..h.events.len()).map(move |c| (q, old.clone(), c)))
        .find(|&(q, _, c)| h.events[c].ret == (Ret::Cas { ok: false }) && h.finished_before(q, c))
        .map(|(_, old, c)| (old, c))?;
    let mut events = h.events.clone();
    events[c].call = Call::Cas {
        expected: Some(old),
        new: "cas-new-never-read".into(),
    };
    events[c].ret = Ret::Cas { ok: true };
    Some(events)
}

/// A read answering a value no one wrote.
fn phantom_read(h: &History) -> Option<Vec<Event>> {
    let r = h.reads().nth(h.reads().count() / 2)?;
    let mut events = h.events.clone();
    events[r].ret = Ret::Read {
        value: Some("never-written".into()),
    };
    Some(events)
}

fn assert_caught(name: &str, doctor: fn(&History) -> Option<Vec<Event>>) {
    let mut caught = 0;
    for seed in 0..30 {
        let history = generate(seed, "k", SHAPE);
        assert!(
            check(&history.events).is_ok(),
            "{name}: seed {seed} fails before doctoring"
        );
        let Some(doctored) = doctor(&history) else {
            continue;
        };
        let report = check(&doctored);
        assert_eq!(
            report.failures.len(),
            1,
            "{name}: seed {seed} passed:\n{report}"
        );
        assert_eq!(report.failures[0].key, "k");
        assert_eq!(
            report.failures[0].kind,
            FailureKind::NotLinearizable,
            "{report}"
        );
        assert!(
            report.to_string().contains("key \"k\": NOT LINEARIZABLE"),
            "{report}"
        );
        caught += 1;
    }
    assert!(
        caught >= 20,
        "{name}: only {caught} of 30 histories could be doctored"
    );
}

#[test]
fn generated_histories_are_linearizable() {
    for seed in 0..200 {
        let shape = Shape {
            unknown: seed % 20,
            ..SHAPE
        };
        let history = generate(seed, "k", shape);
        let report = check(&history.events);
        assert!(report.is_ok(), "seed {seed}:\n{report}");
    }
}

#[test]
fn catches_a_stale_read() {
    assert_caught("stale read", stale_read);
}

#[test]
fn catches_a_lost_acknowledged_write() {
    assert_caught("lost write", lost_write);
}

#[test]
fn catches_a_cas_that_could_not_succeed() {
    assert_caught("impossible cas", impossible_cas);
}

#[test]
fn catches_a_read_of_a_value_never_written() {
    assert_caught("phantom read", phantom_read);
    let doctored = phantom_read(&generate(1, "k", SHAPE)).unwrap();
    let report = check(&doctored);
    assert!(
        report.to_string().contains(">>client"),
        "the stuck op is marked:\n{report}"
    );
    assert!(
        report.to_string().contains("\"never-written\""),
        "the bad answer is shown:\n{report}"
    );
}

#[test]
fn names_only_the_failing_key() {
    let mut events = Vec::new();
    for (seed, key) in ["a", "b", "c", "d"].iter().enumerate() {
        let history = generate(seed as u64, key, SHAPE);
        events.extend(if *key == "c" {
            stale_read(&history).unwrap()
        } else {
            history.events
        });
    }
    let report = check(&events);
    assert_eq!((report.keys, report.ops), (4, 4 * SHAPE.ops));
    let failed: Vec<&str> = report.failures.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(failed, ["c"], "{report}");
}

/// Whether a linearization exists, by trying every order (small histories only).
fn brute_force(events: &[Event]) -> bool {
    fn place(ops: &[&Event], placed: &mut [bool], value: Option<String>) -> bool {
        if (0..ops.len()).all(|i| placed[i] || ops[i].completed.is_none()) {
            return true;
        }
        for i in 0..ops.len() {
            let blocked = (0..ops.len())
                .any(|j| !placed[j] && ops[j].completed.is_some_and(|done| done < ops[i].invoked));
            if placed[i] || blocked {
                continue;
            }
            let after = match (&ops[i].call, &ops[i].ret) {
                (Call::Write { value: new }, _) => Some(new.clone()),
                (Call::Read, Ret::Read { value: read }) => (*read == value).then(|| value.clone()),
                (Call::Cas { expected, new }, Ret::Cas { ok }) => match (*expected == value, ok) {
                    (true, true) => Some(Some(new.clone())),
                    (false, false) => Some(value.clone()),
                    _ => None,
                },
                (Call::Cas { expected, new }, _) => Some(if *expected == value {
                    Some(new.clone())
                } else {
                    value.clone()
                }),
                (Call::Read, _) => unreachable!("unanswered reads are dropped"),
            };
            if let Some(after) = after {
                placed[i] = true;
                if place(ops, placed, after) {
                    return true;
                }
                placed[i] = false;
            }
        }
        false
    }
    let ops: Vec<&Event> = events
        .iter()
        .filter(|e| e.ret != Ret::Failed && !(e.call == Call::Read && e.ret == Ret::Unknown))
        .collect();
    place(&ops, &mut vec![false; ops.len()], None)
}

#[test]
fn agrees_with_exhaustive_search_on_small_histories() {
    let shape = Shape {
        clients: 3,
        ops: 7,
        unknown: 25,
        failed: 5,
        max_gap: 3,
        max_len: 8,
    };
    let (mut valid, mut invalid) = (0, 0);
    for seed in 0..4000 {
        let mut history = generate(seed, "k", shape);
        let mut rng = Rng(seed ^ 0xdead_beef);
        if rng.percent(60) {
            let i = rng.below(history.events.len() as u64) as usize;
            let pool: Vec<Option<String>> = history
                .events
                .iter()
                .filter_map(|e| match &e.call {
                    Call::Write { value } => Some(value.clone()),
                    Call::Cas { new, .. } => Some(Some(new.clone())),
                    Call::Read => None,
                })
                .collect();
            let event = &mut history.events[i];
            match &mut event.ret {
                Ret::Read { value } if !pool.is_empty() => {
                    *value = pool[rng.below(pool.len() as u64) as usize].clone()
                }
                Ret::Cas { ok } => *ok = !*ok,
                Ret::Written | Ret::Read { .. } => {
                    event.ret = Ret::Unknown;
                    event.completed = None;
                }
                Ret::Unknown | Ret::Failed => {}
            }
        }
        let events: Vec<&Event> = history.events.iter().collect();
        let expected = brute_force(&history.events);
        let got = matches!(check_key("k", &events), KeyResult::Linearizable { .. });
        assert_eq!(
            got, expected,
            "seed {seed}: checker says {got}, exhaustive search {expected}: {:#?}",
            history.events
        );
        if expected { valid += 1 } else { invalid += 1 }
    }
    assert!(
        valid > 1000 && invalid > 500,
        "too one-sided a sample: {valid} valid, {invalid} invalid"
    );
}

fn ev(client: u64, call: Call, ret: Ret, invoked: u64, completed: Option<u64>) -> Event {
    Event {
        client,
        key: "k".into(),
        call,
        ret,
        invoked,
        completed,
    }
}

fn write(v: &str) -> Call {
    Call::Write {
        value: Some(v.into()),
    }
}

fn read(v: Option<&str>) -> Ret {
    Ret::Read {
        value: v.map(str::to_string),
    }
}

fn cas(expected: Option<&str>, new: &str) -> Call {
    Call::Cas {
        expected: expected.map(str::to_string),
        new: new.into(),
    }
}

#[test]
fn unanswered_ops() {
    let ok = |events: &[Event]| check(events).is_ok();
    // A write that never took effect and is never seen.
    assert!(ok(&[
        ev(1, write("a"), Ret::Written, 0, Some(10)),
        ev(2, write("b"), Ret::Unknown, 20, None),
        ev(3, Call::Read, read(Some("a")), 30, Some(40)),
    ]));
    // A write that took effect long after its client gave up, and is seen.
    assert!(ok(&[
        ev(2, write("b"), Ret::Unknown, 20, None),
        ev(3, Call::Read, read(None), 30, Some(40)),
        ev(3, Call::Read, read(Some("b")), 1000, Some(1010)),
    ]));
    // ... but not before it was sent.
    assert!(!ok(&[
        ev(3, Call::Read, read(Some("b")), 0, Some(10)),
        ev(2, write("b"), Ret::Unknown, 20, None)
    ]));
    // A chain: an unanswered write, an unanswered cas from it, a read of the cas' value.
    assert!(ok(&[
        ev(1, write("x"), Ret::Unknown, 0, None),
        ev(2, cas(Some("x"), "y"), Ret::Unknown, 5, None),
        ev(3, Call::Read, read(Some("y")), 30, Some(40)),
    ]));
    // A failed cas explained only by an unanswered write no one reads.
    let failed_cas = [
        ev(1, write("a"), Ret::Written, 0, Some(10)),
        ev(2, write("blind"), Ret::Unknown, 20, None),
        ev(3, cas(Some("a"), "c"), Ret::Cas { ok: false }, 30, Some(40)),
    ];
    assert!(ok(&failed_cas));
    assert!(!ok(&[failed_cas[0].clone(), failed_cas[2].clone()]));
    // An unanswered cas either way; a refused op never.
    assert!(ok(&[
        ev(1, cas(None, "a"), Ret::Unknown, 0, None),
        ev(2, Call::Read, read(None), 10, Some(20)),
        ev(2, Call::Read, read(Some("a")), 30, Some(40)),
    ]));
    assert!(!ok(&[
        ev(1, write("a"), Ret::Failed, 0, Some(5)),
        ev(2, Call::Read, read(Some("a")), 10, Some(20))
    ]));
}

#[test]
fn cas_create_only_if_absent_and_touching_intervals() {
    let ok = |events: &[Event]| check(events).is_ok();
    assert!(ok(&[ev(
        1,
        cas(None, "a"),
        Ret::Cas { ok: true },
        0,
        Some(10)
    )]));
    assert!(!ok(&[
        ev(1, write("a"), Ret::Written, 0, Some(10)),
        ev(2, cas(None, "b"), Ret::Cas { ok: true }, 20, Some(30))
    ]));
    // Touching intervals overlap: the read may precede the write that returned at 10.
    assert!(ok(&[
        ev(1, write("a"), Ret::Written, 0, Some(10)),
        ev(2, Call::Read, read(None), 10, Some(20))
    ]));
    assert!(!ok(&[
        ev(1, write("a"), Ret::Written, 0, Some(10)),
        ev(2, Call::Read, read(None), 11, Some(20))
    ]));
}

#[test]
fn step_limit_is_reported_not_passed() {
    let history = generate(3, "k", SHAPE);
    let report = check_with(
        &history.events,
        &Options {
            max_steps: Some(50),
        },
    );
    assert!(!report.is_ok());
    assert_eq!(
        report.failures[0].kind,
        FailureKind::StepLimit { steps: 50 }
    );
    assert!(
        report.to_string().contains("UNDECIDED (not a pass)"),
        "{report}"
    );
    assert!(check_with(&history.events, &Options { max_steps: None }).is_ok());
}

#[test]
fn malformed_events_are_reported() {
    let report = check(&[ev(1, Call::Read, Ret::Written, 0, Some(10))]);
    assert_eq!(report.failures[0].kind, FailureKind::Malformed);
    assert!(
        report.to_string().contains("read answered with ok"),
        "{report}"
    );
}

#[test]
fn large_history_completes() {
    let shape = Shape {
        clients: 12,
        ops: 50_000,
        unknown: 1,
        failed: 1,
        max_gap: 20,
        max_len: 60,
    };
    let history = generate(42, "big", shape);
    let started = Instant::now();
    let events: Vec<&Event> = history.events.iter().collect();
    let result = check_key("big", &events);
    eprintln!(
        "50,000 ops, 12 clients: {result:?} in {:?}",
        started.elapsed()
    );
    assert!(
        matches!(result, KeyResult::Linearizable { .. }),
        "{result:?}"
    );
}
