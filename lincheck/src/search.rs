//! The WGL search for one key: the register model over interned values, the doubly linked
//! call/return list, the memo of configurations (linearized answered set, value, linearized
//! unanswered set) with its dominance check, and the register-specific prunings (forced
//! reads and failed cas', unanswered ops only as chains a pending op needs, one value for
//! all values no op requires). It sees values only as `u32` ids (0 is absent) and
//! operations only as [`Op`]s; reports are made by the `check` module.
//!
//! Every pruning keeps the verdict exact: a history passes only if a linearization was
//! built, and is failed only when no linearization exists (the tests compare it with an
//! exhaustive search on thousands of small random histories).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The value id of "the key is absent", every key's initial value.
pub(crate) const ABSENT: u32 = 0;

const NIL: u32 = u32::MAX;

/// Whether a node of the answered list is a call (`2i`) rather than a return (`2i+1`);
/// NIL is neither, and odd.
fn is_call(node: u32) -> bool {
    node.is_multiple_of(2)
}

/// One operation as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    /// An acknowledged write (or delete, value [`ABSENT`]).
    Write { value: u32 },
    /// A read answered `value`.
    Read { value: u32 },
    /// A check-and-set answered true.
    CasOk { expected: u32, new: u32 },
    /// A check-and-set answered false.
    CasFailed { expected: u32 },
    /// A write with no answer: it took effect once after its invocation, or never.
    MaybeWrite { value: u32 },
    /// A check-and-set with no answer: either outcome, at any time after its invocation.
    MaybeCas { expected: u32, new: u32 },
}

impl Kind {
    /// Whether the operation was answered (and so must be linearized before it returned).
    pub(crate) fn known(self) -> bool {
        !matches!(self, Kind::MaybeWrite { .. } | Kind::MaybeCas { .. })
    }

    /// The value after this operation takes effect on `value`, or None when the model
    /// forbids it there. An unanswered cas takes its true branch when it can: its false
    /// branch changes nothing and is the same as placing it later, or never.
    pub(crate) fn step(self, value: u32) -> Option<u32> {
        match self {
            Kind::Write { value: new } | Kind::MaybeWrite { value: new } => Some(new),
            Kind::Read { value: read } => (read == value).then_some(value),
            Kind::CasOk { expected, new } => (expected == value).then_some(new),
            Kind::CasFailed { expected } => (expected != value).then_some(value),
            Kind::MaybeCas { expected, new } => Some(if expected == value { new } else { value }),
        }
    }
}

/// One operation of the key: what it is and its real-time interval.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op {
    pub(crate) kind: Kind,
    pub(crate) invoked: u64,
    /// `u64::MAX` for an unanswered operation: it may take effect at any time after
    /// `invoked`.
    pub(crate) completed: u64,
}

/// What the search found.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A linearization of every answered operation exists.
    Linearizable { steps: u64 },
    /// None exists; `prefix` is the longest linearizable prefix the search built (op
    /// indices, in order).
    Violation { steps: u64, prefix: Vec<u32> },
    /// The step limit was reached first: undecided.
    StepLimit { steps: u64, prefix: Vec<u32> },
}

/// A doubly linked list over node indices with a head sentinel, whose nodes can be
/// unlinked and relinked in LIFO order (dancing links).
struct Links {
    next: Vec<u32>,
    prev: Vec<u32>,
    head: u32,
}

impl Links {
    fn new(nodes: usize, order: impl Iterator<Item = u32>) -> Self {
        let head = nodes as u32;
        let mut links = Links {
            next: vec![NIL; nodes + 1],
            prev: vec![NIL; nodes + 1],
            head,
        };
        let mut last = head;
        for node in order {
            links.next[last as usize] = node;
            links.prev[node as usize] = last;
            last = node;
        }
        links
    }

    fn first(&self) -> u32 {
        self.next[self.head as usize]
    }

    fn next(&self, node: u32) -> u32 {
        self.next[node as usize]
    }

    fn unlink(&mut self, node: u32) {
        let (prev, next) = (self.prev[node as usize], self.next[node as usize]);
        self.next[prev as usize] = next;
        if next != NIL {
            self.prev[next as usize] = prev;
        }
    }

    fn relink(&mut self, node: u32) {
        let (prev, next) = (self.prev[node as usize], self.next[node as usize]);
        self.next[prev as usize] = node;
        if next != NIL {
            self.prev[next as usize] = node;
        }
    }
}

/// What a choice point's enumeration of unanswered operations has tried.
#[derive(Debug, Clone, Copy, Default)]
struct Scan {
    /// An unanswered write of the merged value no op requires was tried here already.
    blind_tried: bool,
    /// An unanswered delete was tried here already.
    delete_tried: bool,
}

/// What the search does next.
enum Cursor {
    /// A configuration just entered: place a read or failed cas the value allows, if any.
    Fresh,
    /// A node of the answered ops' list (`2i` call, `2i+1` return, NIL at its end): try
    /// the writes and successful cas' among the pending calls.
    Answered(u32),
    /// The next unanswered op of a choice point: an index into `Search::candidates`, or,
    /// when a failed cas needs the value changed, a node of the unanswered list.
    Unanswered(u32, Scan),
}

/// How a linearized op was chosen, so the search knows how to go on when it is taken back.
#[derive(Clone, Copy)]
enum Choice {
    /// A read or failed cas the value allowed: the only move tried from its configuration.
    Forced,
    /// A write or successful cas from the answered list.
    Answered,
    /// An unanswered op from a scan.
    Unanswered(Scan),
}

/// One linearized op.
struct Frame {
    op: u32,
    value_before: u32,
    /// The set of unanswered ops linearized before it (a node of `Search::sets`).
    set_before: u32,
    choice: Choice,
}

/// FxHash-like mixing; the cache's keys are already random (Zobrist hashes).
#[derive(Default)]
struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.write_u64(u64::from(b)));
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
    }
}

/// SplitMix64: the per-op random keys of the linearized set's Zobrist hash.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Search<'a> {
    ops: &'a [Op],
    /// Answered ops' call and return nodes, sorted by time (calls first on ties).
    answered: Links,
    /// Unanswered ops, sorted by invocation.
    unanswered: Links,
    /// The Zobrist key of each answered op: the linearized set's hash is the XOR of its
    /// members' keys.
    keys: Vec<u128>,
    /// The one value standing for all values no op requires (see `merge_unobserved`).
    blind: u32,
    /// The unanswered ops producing each value (writes of it, cas' to it), by invocation.
    producers: Vec<Vec<u32>>,
    /// The sets of unanswered ops linearized, as a tree of (op, parent) nodes: a set is
    /// a node and its ancestors; node 0 is the empty set. `on_path` marks the nodes of the
    /// current set, `consumed` its ops.
    sets: Vec<(u32, u32)>,
    on_path: Vec<bool>,
    consumed: Vec<bool>,
    set: u32,
    /// Every configuration entered: (answered set's hash, value, whether entered by an
    /// unanswered op) to the unanswered sets it was entered with, as a list in `seen`. A
    /// configuration fails if the same one failed with fewer unanswered ops linearized (they
    /// could only have been placed later, or never).
    cache: HashMap<(u128, u32, bool), u32, BuildHasherDefault<Mix>>,
    seen: Vec<(u32, u32)>,
    stack: Vec<Frame>,
    value: u32,
    hash: u128,
    /// At the current choice point: the completion of the first pending answered op
    /// (nothing invoked later may go next) ...
    bound: u64,
    /// ... whether a pending failed cas needs the value to change first (then every
    /// unanswered op is a candidate) ...
    change_needed: bool,
    /// ... else the values worth making: those pending answered calls need (reads'
    /// answers, successful cas' expected values), and those an unanswered cas can take to
    /// one of them ...
    targets: Vec<u32>,
    /// ... and the unanswered ops making them, by index.
    candidates: Vec<u32>,
    /// The deepest stack seen (as of its last backtrack), and how much of it the current
    /// stack still shares.
    best: Vec<u32>,
    shared: usize,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [Op], values: usize, blind: u32) -> Self {
        let n = ops.len();
        let mut entries: Vec<(u64, bool, u32)> = Vec::with_capacity(2 * n);
        let mut pending: Vec<(u64, u32)> = Vec::new();
        let mut producers = vec![Vec::new(); values];
        for (i, op) in ops.iter().enumerate() {
            let i = i as u32;
            if op.kind.known() {
                entries.push((op.invoked, false, 2 * i));
                entries.push((op.completed, true, 2 * i + 1));
            } else {
                pending.push((op.invoked, i));
            }
            if let Kind::MaybeWrite { value: made } | Kind::MaybeCas { new: made, .. } = op.kind {
                producers[made as usize].push(i);
            }
        }
        entries.sort_unstable();
        pending.sort_unstable();
        for list in &mut producers {
            list.sort_unstable_by_key(|&i| (ops[i as usize].invoked, i));
        }
        let mut seed = 0x6c69_6e63_6865_636b;
        let keys = (0..n)
            .map(|_| u128::from(splitmix64(&mut seed)) << 64 | u128::from(splitmix64(&mut seed)))
            .collect();
        Search {
            ops,
            answered: Links::new(2 * n, entries.into_iter().map(|(_, _, node)| node)),
            unanswered: Links::new(n, pending.into_iter().map(|(_, i)| i)),
            keys,
            blind,
            producers,
            sets: vec![(NIL, NIL)],
            on_path: vec![true],
            consumed: vec![false; n],
            set: 0,
            cache: HashMap::default(),
            seen: Vec::new(),
            stack: Vec::new(),
            value: ABSENT,
            hash: 0,
            bound: 0,
            change_needed: false,
            targets: Vec::new(),
            candidates: Vec::new(),
            best: Vec::new(),
            shared: 0,
        }
    }

    fn op(&self, i: u32) -> Op {
        self.ops[i as usize]
    }

    fn lift(&mut self, i: u32) {
        if self.op(i).kind.known() {
            self.answered.unlink(2 * i);
            self.answered.unlink(2 * i + 1);
        } else {
            self.unanswered.unlink(i);
        }
    }

    fn unlift(&mut self, i: u32) {
        if self.op(i).kind.known() {
            self.answered.relink(2 * i + 1);
            self.answered.relink(2 * i);
        } else {
            self.unanswered.relink(i);
        }
    }

    /// Whether the unanswered set `set` is within the current one plus `extra`.
    fn within(&self, mut set: u32, extra: u32) -> bool {
        while !self.on_path[set as usize] {
            let (op, parent) = self.sets[set as usize];
            if op != extra && !self.consumed[op as usize] {
                return false;
            }
            set = parent;
        }
        true
    }

    /// Whether the configuration (`hash`, `value`, `by_unanswered`), with the current
    /// unanswered set plus `extra`, was entered before with no more unanswered ops.
    fn dominated(&self, hash: u128, value: u32, by_unanswered: bool, extra: u32) -> bool {
        // After an unanswered op fewer moves are tried (see `acceptable`), so such a
        // configuration is also covered by the same one reached after an answered op.
        let flags: &[bool] = if by_unanswered {
            &[true, false]
        } else {
            &[false]
        };
        flags.iter().any(|&flag| {
            let mut entry = self.cache.get(&(hash, value, flag)).copied().unwrap_or(NIL);
            while entry != NIL {
                let (set, next) = self.seen[entry as usize];
                if self.within(set, extra) {
                    return true;
                }
                entry = next;
            }
            false
        })
    }

    /// Linearizes op `i` next, making the value `value`, unless that configuration is
    /// dominated by one entered before.
    fn enter(&mut self, i: u32, value: u32, choice: Choice) -> bool {
        let known = self.op(i).kind.known();
        let hash = if known {
            self.hash ^ self.keys[i as usize]
        } else {
            self.hash
        };
        if self.dominated(hash, value, !known, if known { NIL } else { i }) {
            return false;
        }
        let set_before = self.set;
        if !known {
            self.sets.push((i, self.set));
            self.on_path.push(true);
            self.consumed[i as usize] = true;
            self.set = (self.sets.len() - 1) as u32;
        }
        let head = self.cache.entry((hash, value, !known)).or_insert(NIL);
        self.seen.push((self.set, *head));
        *head = (self.seen.len() - 1) as u32;
        self.stack.push(Frame {
            op: i,
            value_before: self.value,
            set_before,
            choice,
        });
        self.value = value;
        self.hash = hash;
        self.lift(i);
        true
    }

    /// Takes back linearized ops up to the last choice with alternatives left; None when
    /// there is none.
    fn backtrack(&mut self) -> Option<Cursor> {
        self.note_depth();
        loop {
            let frame = self.stack.pop()?;
            self.shared = self.shared.min(self.stack.len());
            self.value = frame.value_before;
            if self.op(frame.op).kind.known() {
                self.hash ^= self.keys[frame.op as usize];
            } else {
                self.on_path[self.set as usize] = false;
                self.consumed[frame.op as usize] = false;
            }
            self.set = frame.set_before;
            self.unlift(frame.op);
            match frame.choice {
                Choice::Forced => continue,
                Choice::Answered => {
                    return Some(Cursor::Answered(self.answered.next(2 * frame.op)));
                }
                Choice::Unanswered(scan) => {
                    self.survey();
                    let next = if self.change_needed {
                        self.unanswered.next(frame.op)
                    } else {
                        let at = self.candidates.iter().position(|&c| c == frame.op);
                        at.map_or(NIL, |at| at as u32 + 1)
                    };
                    return Some(Cursor::Unanswered(next, scan));
                }
            }
        }
    }

    /// Keeps `best` the deepest stack seen, copying only what changed since it was taken.
    fn note_depth(&mut self) {
        if self.stack.len() > self.best.len() {
            self.best.truncate(self.shared);
            self.best
                .extend(self.stack[self.shared..].iter().map(|f| f.op));
            self.shared = self.stack.len();
        }
    }

    /// The first pending read or failed cas the current value allows, and the nodes
    /// looked at. Placing it next loses nothing: it changes nothing, and any linearization
    /// that places it later stays one when it is moved here.
    fn forced(&self) -> (Option<u32>, u64) {
        let (mut node, mut looked) = (self.answered.first(), 0);
        while is_call(node) {
            looked += 1;
            let kind = self.op(node / 2).kind;
            if matches!(kind, Kind::Read { .. } | Kind::CasFailed { .. })
                && kind.step(self.value).is_some()
            {
                return (Some(node / 2), looked);
            }
            node = self.answered.next(node);
        }
        (None, looked)
    }

    /// Records what the pending answered calls need from the value at this choice point,
    /// and which unanswered ops could provide it (`bound`, `change_needed`, `targets`,
    /// `candidates`). Called with a pending return in the list.
    fn survey(&mut self) {
        self.targets.clear();
        self.change_needed = false;
        let mut node = self.answered.first();
        while is_call(node) {
            match self.op(node / 2).kind {
                Kind::Read { value } => self.targets.push(value),
                Kind::CasOk { expected, .. } => self.targets.push(expected),
                Kind::CasFailed { expected } if expected == self.value => self.change_needed = true,
                _ => {}
            }
            node = self.answered.next(node);
        }
        self.bound = self.op(node / 2).completed;
        self.candidates.clear();
        if self.change_needed {
            return;
        }
        let eligible = |s: &Self, u: u32| !s.consumed[u as usize] && s.op(u).invoked <= s.bound;
        let mut k = 0;
        while k < self.targets.len() {
            let target = self.targets[k] as usize;
            for &u in &self.producers[target] {
                if let Kind::MaybeCas { expected, .. } = self.op(u).kind
                    && eligible(self, u)
                    && !self.targets.contains(&expected)
                {
                    self.targets.push(expected);
                }
            }
            k += 1;
        }
        let mut candidates = std::mem::take(&mut self.candidates);
        for &target in &self.targets {
            let producers = self.producers[target as usize]
                .iter()
                .filter(|&&u| eligible(self, u));
            if target == ABSENT {
                // Unanswered deletes are interchangeable: see `acceptable`.
                candidates.extend(producers.take(1));
            } else {
                candidates.extend(producers);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        self.candidates = candidates;
    }

    /// Whether unanswered op `i` is worth linearizing next, and the value it makes.
    ///
    /// A linearization that exists can be rearranged so that unanswered ops that change
    /// nothing, or whose effect no one sees, come after every answered op (where they are
    /// harmless), and every remaining run of unanswered ops is a chain (a write or a cas
    /// from the current value, then cas' each expecting the value before) that ends right
    /// before an answered op needing its result: a read of it, a cas expecting it, or a
    /// failed cas expecting the value the chain started from. Only such chains are tried.
    /// Unanswered writes of the same value (deletes, or the merged values no op requires)
    /// are interchangeable: only the earliest invoked one not yet linearized is tried. The
    /// bound only grows along a path, so whichever of them a linearization uses, the
    /// earliest could stand in; and the linearized ones of each such class stay a prefix of
    /// it, so the sets the memo compares stay comparable.
    fn acceptable(&self, i: u32, scan: &mut Scan) -> Option<u32> {
        let kind = self.op(i).kind;
        let value = kind.step(self.value).filter(|&v| v != self.value)?;
        let is_cas = matches!(kind, Kind::MaybeCas { .. });
        let chained = self
            .stack
            .last()
            .is_some_and(|f| !self.op(f.op).kind.known());
        if chained && !is_cas {
            return None; // the write would hide the chain before it: try it alone instead
        }
        let useful = self.change_needed || self.targets.contains(&value);
        if !useful {
            return None;
        }
        if !is_cas {
            let tried = if value == ABSENT {
                &mut scan.delete_tried
            } else if value == self.blind {
                &mut scan.blind_tried
            } else {
                return Some(value);
            };
            if std::mem::replace(tried, true) {
                return None;
            }
        }
        Some(value)
    }
}

/// Values no op requires the key to hold (no read answers them, no cas expects them) are
/// indistinguishable to every op: they become one value, `values` (returned), so the memo
/// sees configurations that differ only in which unread write came last as one. The
/// operations keep their indices.
fn merge_unobserved(ops: &[Op], values: usize) -> (Vec<Op>, u32) {
    let mut observed = vec![false; values];
    observed[ABSENT as usize] = true;
    for op in ops {
        match op.kind {
            Kind::Read { value: v } | Kind::CasOk { expected: v, .. } => {
                observed[v as usize] = true
            }
            Kind::CasFailed { expected: v } | Kind::MaybeCas { expected: v, .. } => {
                observed[v as usize] = true
            }
            Kind::Write { .. } | Kind::MaybeWrite { .. } => {}
        }
    }
    let blind = values as u32;
    let merge = |v: u32| if observed[v as usize] { v } else { blind };
    let merged = ops
        .iter()
        .map(|&op| {
            let kind = match op.kind {
                Kind::Write { value } => Kind::Write {
                    value: merge(value),
                },
                Kind::MaybeWrite { value } => Kind::MaybeWrite {
                    value: merge(value),
                },
                Kind::CasOk { expected, new } => Kind::CasOk {
                    expected,
                    new: merge(new),
                },
                Kind::MaybeCas { expected, new } => Kind::MaybeCas {
                    expected,
                    new: merge(new),
                },
                kind @ (Kind::Read { .. } | Kind::CasFailed { .. }) => kind,
            };
            Op { kind, ..op }
        })
        .collect();
    (merged, blind)
}

/// Searches for a linearization of `ops` (values are ids below `values`), giving up after
/// about `max_steps` candidate evaluations.
pub(crate) fn run(ops: &[Op], values: usize, max_steps: Option<u64>) -> Outcome {
    let (ops, blind) = merge_unobserved(ops, values);
    let mut s = Search::new(&ops, values + 1, blind);
    let limit = max_steps.unwrap_or(u64::MAX);
    let mut steps = 0u64;
    let mut cursor = Cursor::Fresh;
    loop {
        if steps >= limit {
            s.note_depth();
            return Outcome::StepLimit {
                steps: limit,
                prefix: s.best,
            };
        }
        steps += 1;
        let next = match cursor {
            // Every answered op is placed; the unanswered left over take effect after all
            // of them (or never), where nothing observes them.
            Cursor::Fresh if s.answered.first() == NIL => return Outcome::Linearizable { steps },
            Cursor::Fresh => match s.forced() {
                (Some(i), looked) => {
                    steps += looked;
                    // If that configuration failed before, so does this one.
                    s.enter(i, s.value, Choice::Forced).then_some(Cursor::Fresh)
                }
                (None, looked) => {
                    steps += looked;
                    Some(Cursor::Answered(s.answered.first()))
                }
            },
            Cursor::Answered(node) if !is_call(node) => {
                // The first pending return: no answered call after it may go next.
                s.survey();
                let first = if s.change_needed {
                    s.unanswered.first()
                } else {
                    0
                };
                Some(Cursor::Unanswered(first, Scan::default()))
            }
            Cursor::Answered(node) => {
                let i = node / 2;
                let kind = s.op(i).kind;
                let mutates = matches!(kind, Kind::Write { .. } | Kind::CasOk { .. });
                match kind.step(s.value) {
                    Some(value) if mutates && s.enter(i, value, Choice::Answered) => {
                        Some(Cursor::Fresh)
                    }
                    _ => Some(Cursor::Answered(s.answered.next(node))),
                }
            }
            Cursor::Unanswered(slot, mut scan) => {
                let (i, next) = if s.change_needed {
                    (
                        slot,
                        if slot == NIL {
                            NIL
                        } else {
                            s.unanswered.next(slot)
                        },
                    )
                } else {
                    (
                        s.candidates.get(slot as usize).copied().unwrap_or(NIL),
                        slot.saturating_add(1),
                    )
                };
                if i == NIL || s.op(i).invoked > s.bound {
                    None
                } else {
                    match s.acceptable(i, &mut scan) {
                        Some(value) if s.enter(i, value, Choice::Unanswered(scan)) => {
                            Some(Cursor::Fresh)
                        }
                        _ => Some(Cursor::Unanswered(next, scan)),
                    }
                }
            }
        };
        cursor = match next {
            Some(cursor) => cursor,
            None => match s.backtrack() {
                Some(cursor) => cursor,
                None => {
                    return Outcome::Violation {
                        steps,
                        prefix: s.best,
                    };
                }
            },
        };
    }
}
