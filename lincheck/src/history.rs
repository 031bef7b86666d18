//! The recorded history: one [`Event`] per client operation, and its JSON-lines form
//! (one event a line), which the nemesis recorder writes and the `lincheck` binary reads.

use std::fmt;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

/// One client operation as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The client (connection, worker) that issued the operation.
    pub client: u64,
    /// The KV key the operation addressed; keys are checked independently.
    pub key: String,
    /// What the client asked.
    pub call: Call,
    /// What the client was answered.
    pub ret: Ret,
    /// Nanoseconds on the recorder's monotonic clock when the request was sent.
    pub invoked: u64,
    /// When the answer arrived; None when the outcome is unknown (then `ret` is Ret::Unknown).
    pub completed: Option<u64>,
}

/// The operation a client asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Call {
    /// Put `value`, or delete the key when `value` is None.
    Write {
        /// The value written; None deletes.
        value: Option<String>,
    },
    /// Read the key's value.
    Read,
    /// Put `new` if the current value is `expected` (None: only if the key is absent,
    /// Consul's `?cas=0`).
    Cas {
        /// The value the key must hold for the write to happen; None means absent.
        expected: Option<String>,
        /// The value written when it does.
        new: String,
    },
}

/// The answer a client got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ret", rename_all = "snake_case")]
pub enum Ret {
    /// A write or delete was acknowledged.
    Written,
    /// A read returned `value` (None: the key was absent).
    Read {
        /// The value read; None means absent.
        value: Option<String>,
    },
    /// A check-and-set answered `ok`.
    Cas {
        /// Whether the write happened.
        ok: bool,
    },
    /// No answer (timeout, connection reset): the operation may have taken effect at any
    /// time after it was invoked, or never.
    Unknown,
    /// The operation certainly did not take effect (e.g. a 4xx/refusal answered before
    /// anything was applied).
    Failed,
}

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reader failed.
    #[error("cannot read the history: {0} (check the file's path and permissions)")]
    Io(#[from] io::Error),
    /// A line is not JSON of an event.
    #[error(
        "history line {line} is not an event: {source} (each line must be one JSON object as \
         write_jsonl writes it, e.g. {{\"client\":1,\"key\":\"k\",\"call\":{{\"op\":\"read\"}},\
         \"ret\":{{\"ret\":\"read\",\"value\":null}},\"invoked\":10,\"completed\":20}})"
    )]
    Json {
        /// The 1-based line number.
        line: usize,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// A line is an event that contradicts itself.
    #[error("history line {line} is inconsistent: {problem} (fix the recorder that wrote it)")]
    Invalid {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
}

impl Event {
    /// Why this event cannot be checked, if it contradicts itself: an answer of another
    /// operation's kind, an answer without a completion time, or a completion before the
    /// invocation.
    pub(crate) fn problem(&self) -> Option<String> {
        let answered = !matches!(self.ret, Ret::Unknown | Ret::Failed);
        let kinds_match = matches!(
            (&self.call, &self.ret),
            (_, Ret::Unknown | Ret::Failed)
                | (Call::Write { .. }, Ret::Written)
                | (Call::Read, Ret::Read { .. })
                | (Call::Cas { .. }, Ret::Cas { .. })
        );
        if !kinds_match {
            return Some(format!("{} answered with {}", self.call, self.ret));
        }
        match self.completed {
            None if answered => Some(format!(
                "{} answered {} but has no completion time",
                self.call, self.ret
            )),
            Some(done) if done < self.invoked => Some(format!(
                "completed at {done} ns, before it was invoked at {} ns",
                self.invoked
            )),
            _ => None,
        }
    }
}

/// A value as the reports show it: quoted, or `absent`.
pub(crate) struct Shown<'a>(pub Option<&'a str>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => write!(f, "{value:?}"),
            None => f.write_str("absent"),
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Write { value: None } => f.write_str("delete"),
            Call::Write { value: Some(value) } => write!(f, "write {value:?}"),
            Call::Read => f.write_str("read"),
            Call::Cas { expected, new } => {
                write!(f, "cas {} -> {new:?}", Shown(expected.as_deref()))
            }
        }
    }
}

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ret::Written => f.write_str("ok"),
            Ret::Read { value } => write!(f, "{}", Shown(value.as_deref())),
            Ret::Cas { ok } => write!(f, "{ok}"),
            Ret::Unknown => f.write_str("unknown"),
            Ret::Failed => f.write_str("failed"),
        }
    }
}

/// Reads a history written by [`write_jsonl`]: one JSON event a line (blank lines are
/// skipped). Every event is checked for consistency (an answer of the call's kind, a
/// completion time on every answer, no completion before the invocation).
pub fn read_jsonl(reader: impl BufRead) -> Result<Vec<Event>, Error> {
    let mut events = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line_number = index + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(&line).map_err(|source| Error::Json {
            line: line_number,
            source,
        })?;
        if let Some(problem) = event.problem() {
            return Err(Error::Invalid {
                line: line_number,
                problem,
            });
        }
        events.push(event);
    }
    Ok(events)
}

/// Writes `events` one JSON object a line, the form [`read_jsonl`] reads, and flushes.
pub fn write_jsonl(mut writer: impl Write, events: &[Event]) -> io::Result<()> {
    for event in events {
        serde_json::to_writer(&mut writer, event).map_err(io::Error::other)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(call: Call, ret: Ret, completed: Option<u64>) -> Event {
        Event {
            client: 7,
            key: "k".into(),
            call,
            ret,
            invoked: 100,
            completed,
        }
    }

    #[test]
    fn json_form_is_the_agreed_one() {
        let write = event(
            Call::Write {
                value: Some("a".into()),
            },
            Ret::Written,
            Some(150),
        );
        assert_eq!(
            serde_json::to_string(&write).unwrap(),
            r#"{"client":7,"key":"k","call":{"op":"write","value":"a"},"ret":{"ret":"written"},"invoked":100,"completed":150}"#
        );
        let cas = event(
            Call::Cas {
                expected: None,
                new: "b".into(),
            },
            Ret::Unknown,
            None,
        );
        assert_eq!(
            serde_json::to_string(&cas).unwrap(),
            r#"{"client":7,"key":"k","call":{"op":"cas","expected":null,"new":"b"},"ret":{"ret":"unknown"},"invoked":100,"completed":null}"#
        );
        let read = event(Call::Read, Ret::Read { value: None }, Some(120));
        assert_eq!(
            serde_json::to_string(&read).unwrap(),
            r#"{"client":7,"key":"k","call":{"op":"read"},"ret":{"ret":"read","value":null},"invoked":100,"completed":120}"#
        );
    }

    #[test]
    fn jsonl_round_trip() {
        let events = vec![
            event(
                Call::Write {
                    value: Some("a".into()),
                },
                Ret::Written,
                Some(150),
            ),
            event(Call::Write { value: None }, Ret::Failed, Some(101)),
            event(
                Call::Read,
                Ret::Read {
                    value: Some("a\n\"q\"".into()),
                },
                Some(160),
            ),
            event(Call::Read, Ret::Unknown, None),
            event(
                Call::Cas {
                    expected: Some("a".into()),
                    new: "b".into(),
                },
                Ret::Cas { ok: true },
                Some(170),
            ),
            event(
                Call::Cas {
                    expected: None,
                    new: "c".into(),
                },
                Ret::Unknown,
                None,
            ),
        ];
        let mut buffer = Vec::new();
        write_jsonl(&mut buffer, &events).unwrap();
        assert_eq!(buffer.iter().filter(|&&b| b == b'\n').count(), events.len());
        assert_eq!(read_jsonl(&buffer[..]).unwrap(), events);
    }

    #[test]
    fn bad_lines_are_named() {
        let text = "\n{\"client\":1}\n";
        match read_jsonl(text.as_bytes()) {
            Err(Error::Json { line: 2, .. }) => {}
            other => panic!("expected a JSON error on line 2, got {other:?}"),
        }
        let mismatched = event(Call::Read, Ret::Written, Some(150));
        let backwards = event(Call::Read, Ret::Read { value: None }, Some(50));
        let unfinished = event(Call::Read, Ret::Read { value: None }, None);
        for (bad, words) in [
            (mismatched, "answered with"),
            (backwards, "before it was invoked"),
            (unfinished, "no completion"),
        ] {
            let mut buffer = Vec::new();
            write_jsonl(&mut buffer, &[bad]).unwrap();
            let error = read_jsonl(&buffer[..]).unwrap_err();
            assert!(matches!(error, Error::Invalid { line: 1, .. }), "{error}");
            assert!(error.to_string().contains(words), "{error}");
        }
    }
}
