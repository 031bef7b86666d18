//! fsmhost-lincheck: the nemesis suite's linearizability checker. It decides whether a
//! recorded history of Consul KV operations could have come from one register per key
//! applying each operation atomically at some instant between its request and its answer.
//!
//! # Model
//! Every key is an independent register whose initial value is absent. Its operations are
//! a write (a put, or a delete that writes "absent"), a read (answering a value or
//! absent), and a check-and-set `cas(expected, new)` answering whether it wrote (`expected`
//! None: only if absent, Consul's `?cas=0`; the workload makes every written value unique,
//! so Consul's index-based cas is this value-based one). Linearizability is compositional,
//! so each key is checked alone, keys in parallel.
//!
//! An operation without an answer ([`Ret::Unknown`]: timeout, reset connection) may have
//! taken effect at any time after its request, or never: a read of that kind constrains
//! nothing and is dropped; a write or cas may be placed anywhere after its invocation, or
//! nowhere (a cas then takes either branch). [`Ret::Failed`] operations certainly did not
//! take effect and are dropped.
//!
//! # Algorithm
//! The Wing & Gong search with Lowe's memoization, as porcupine runs it (its design was
//! read; no code is taken): the answered ops' calls and returns sorted by time (calls first
//! on ties: touching intervals overlap) in a doubly linked list; a depth-first search
//! linearizes a pending call the model allows, unlinking its call and return, backtracks
//! when it reaches a return whose call could not be placed, and skips any configuration it
//! entered before. Values are interned to `u32` ids; the linearized set is kept as a
//! 128-bit Zobrist hash (the XOR of a random key per op) instead of a bitset per cache
//! entry (a false hit needs a 128-bit collision).
//!
//! On top of that, prunings particular to a register, each keeping the verdict exact:
//! - a read or failed cas the current value allows is placed at once, as the only move:
//!   it changes nothing, and any linearization placing it later stays one when it is moved
//!   there. Only writes and successful cas' are real choices.
//! - values no op requires (no read answers them, no cas expects them) are merged into one,
//!   so the orders of unread writes are one configuration.
//! - unanswered ops sit outside the list, their return at +infinity. One never placed
//!   counts as taking effect after every answered op, where nothing observes it: sound
//!   here, since a write there, or a cas on either branch, changes nothing seen. At a choice
//!   point they are tried after the answered calls, and only as short chains (a write, or a
//!   cas from the current value, then unanswered cas' from each result) making a value a
//!   pending answered op needs, or any change a pending failed cas needs. Unanswered writes
//!   of one value (deletes, or the merged value) are tried earliest first. Plain porcupine,
//!   with returns at +infinity, would try every subset of them at every backtrack.
//! - the memo also prunes a configuration reached with more unanswered ops linearized than
//!   a failed one with the same answered set and value: those ops could have waited.
//!
//! A step limit per key ([`Options::max_steps`]) turns a search that blows up into an
//! explicit undecided result ([`FailureKind::StepLimit`]), never a pass.
//!
//! # Performance and limits
//! Measured with generated histories (release build): a valid key of 40,000 ops from 12
//! clients (about 9 ops in flight) checks in 0.1 s on one core with every op answered,
//! 0.25 to 0.4 s with 1 to 5% of them unanswered, 1 to 2.5 s with 10 to 20%; a history of
//! 300,000 ops over 8 such keys (3% unanswered) in 3.9 s on two cores. A violation is
//! found in milliseconds when it is early; one 20,000 ops deep takes 0.4 s when every op
//! was answered, but with unanswered ops the search must also rule out every way they
//! could have been applied before it: with 1% unanswered, one 5,000 ops deep took 39
//! million steps (5 s) and one 20,000 deep exceeded 200 million (such a key is reported
//! undecided, not passed). The search is exponential in the number of concurrent writes:
//! 20 clients take ten times longer than 12, and at 30 clients a history of only reads and
//! writes can exceed the limit. A step costs 0.1 to 1.5 µs (more as the memo grows), so the
//! default limit is reached after ten seconds to a few minutes.
//!
//! # Why not stateright
//! stateright's `semantics::LinearizabilityTester` was evaluated: it is fed a history as
//! per-thread `on_invoke`/`on_return` calls, allows one in-flight op per thread (a client
//! that timed out and moved on cannot be expressed: its next `on_invoke` is an error), and
//! `serialized_history` is an unmemoized recursive search that clones the remaining
//! history at every step, recursing once per op: exponential on concurrent histories and
//! stack-deep on 40,000 ops. It also brings a model checker's dependencies for one
//! function. This crate implements the memoized search instead, with the register-specific
//! prunings above, in about a thousand lines with its report.
//!
//! # Usage
//! The recorder writes one JSON [`Event`] a line ([`write_jsonl`]), e.g.
//!
//! ```text
//! {"client":3,"key":"k1","call":{"op":"cas","expected":"v7","new":"v9"},"ret":{"ret":"cas","ok":true},"invoked":1200,"completed":1850}
//! {"client":4,"key":"k1","call":{"op":"write","value":null},"ret":{"ret":"unknown"},"invoked":1300,"completed":null}
//! ```
//!
//! and `lincheck [--max-steps N|none] HISTORY.jsonl` prints the [`Report`], exiting 0 when
//! every key is linearizable, 1 when one is not or is undecided, 2 on unusable input. From
//! Rust:
//!
//! ```
//! use fsmhost_lincheck::{Call, Event, Ret, check};
//!
//! let write = Event { client: 1, key: "k".into(), call: Call::Write { value: Some("a".into()) },
//!     ret: Ret::Written, invoked: 0, completed: Some(10) };
//! let stale = Event { client: 2, key: "k".into(), call: Call::Read,
//!     ret: Ret::Read { value: None }, invoked: 20, completed: Some(30) };
//! let report = check(&[write, stale]);
//! assert!(!report.is_ok());
//! println!("{report}"); // names key "k", the write and the read that missed it
//! ```
#![warn(missing_docs)]

mod check;
mod history;
mod search;
#[cfg(test)]
mod tests;

pub use check::{
    DEFAULT_MAX_STEPS, FailureKind, KeyFailure, KeyResult, Options, Report, check, check_key,
    check_key_with, check_with,
};
pub use history::{Call, Error, Event, Ret, read_jsonl, write_jsonl};
