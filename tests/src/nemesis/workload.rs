//! The nemesis suite's clients: concurrent put, get, check-and-set and delete on a few keys
//! through Consul's `/v1/kv` API, each operation recorded as a [`Event`] of the history.
//!
//! Owns: the client threads and their operations, what an HTTP answer means for the
//! history (a written value, a value read, a check-and-set's verdict, a certain failure or
//! an unknown outcome), and the indexes the servers report with them ([`Acked`],
//! [`ValueRead`]) for the index check.
//!
//! Every written value is unique (`c<thread>-<n>`), so the checker can model a
//! check-and-set on a `ModifyIndex` as one on the value read with that index. A request
//! that never connected certainly did nothing; one answered 4xx, a 404 with a body (no such
//! route) or a 503 "no cluster leader" (the server gave up before any leader took it) did
//! nothing either. Anything else that is not an answer (a timeout, a reset, another 5xx) is
//! an unknown outcome, after which the thread goes on as a new client (a fresh
//! [`Event::client`]), since the old operation may still be in flight.

use super::ReadMode;
use base64::Engine as _;
use fsmhost_lincheck::{Call, Event, Ret};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A small deterministic generator (splitmix64), so a seed replays a run's choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A duration between `lo` and `hi`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis() as u64;
        lo + Duration::from_millis(self.below(span + 1))
    }
}

/// What the clients do.
#[derive(Debug, Clone)]
pub struct Workload {
    /// How many client threads.
    pub clients: usize,
    /// How many keys (`nemesis/k0` ...).
    pub keys: usize,
    /// How reads ask for consistency.
    pub reads: ReadMode,
    /// How long one request may take before its outcome is unknown.
    pub timeout: Duration,
    /// The pause between a thread's operations.
    pub think: Duration,
    /// The seed of the threads' choices.
    pub seed: u64,
}

/// The name of key `k`.
pub fn key_name(k: usize) -> String {
    format!("nemesis/k{k}")
}

/// A write (put, delete or successful check-and-set) the cluster acknowledged, with the
/// `X-Consul-Index` of its answer.
#[derive(Debug, Clone)]
pub struct Acked {
    /// The key.
    pub key: String,
    /// The value written (`None`: a delete).
    pub value: Option<String>,
    /// The index the answer gave.
    pub index: u64,
    /// When the answer came (ns since the run's start).
    pub at: u64,
}

/// A value a read returned, with the `ModifyIndex` it came with.
#[derive(Debug, Clone)]
pub struct ValueRead {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// Its `ModifyIndex`.
    pub modify_index: u64,
    /// The answer's `X-Consul-Index`, if it had one.
    pub index: Option<u64>,
    /// The server asked (its HTTP address).
    pub server: String,
    /// When the answer came (ns since the run's start).
    pub at: u64,
}

/// Where an operation went and what came back, beside its [`Event`] (which has no room
/// for them): for reading a failing key's report against the servers' logs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpNote {
    /// The event's client.
    pub client: u64,
    /// The event's invocation time.
    pub invoked: u64,
    /// The server asked (its HTTP address).
    pub server: String,
    /// The answer's status and the start of its body, or why there was none.
    pub answer: String,
}

/// What a client thread saw.
#[derive(Debug, Default)]
pub struct Record {
    /// Its operations.
    pub events: Vec<Event>,
    /// Where each went and what came back.
    pub notes: Vec<OpNote>,
    /// Its acknowledged writes.
    pub acked: Vec<Acked>,
    /// The values its reads returned.
    pub reads: Vec<ValueRead>,
    /// Answers that fit no expectation (a put answered `false`, an undecodable body).
    pub oddities: Vec<String>,
}

impl Record {
    /// Adds `other`'s observations to this one's.
    pub fn merge(&mut self, other: Record) {
        self.events.extend(other.events);
        self.notes.extend(other.notes);
        self.acked.extend(other.acked);
        self.reads.extend(other.reads);
        self.oddities.extend(other.oddities);
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No connection was made: the request was never sent.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The server.
        addr: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The request may have been sent; no whole answer came (timeout, reset).
    #[error("exchange with {addr}: {source}")]
    Exchange {
        /// The server.
        addr: String,
        /// The failure.
        source: std::io::Error,
    },
    /// Something came back that is not an HTTP answer.
    #[error("malformed answer from {addr}: {what}")]
    Malformed {
        /// The server.
        addr: String,
        /// What was wrong.
        what: String,
    },
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: u16,
    /// Its `X-Consul-Index`, when it has a numeric one.
    pub index: Option<u64>,
    /// Its body.
    pub body: Vec<u8>,
}

/// One request on a fresh connection, with `timeout` for the whole exchange.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, HttpError> {
    let deadline = Instant::now() + timeout;
    let sock: SocketAddr = addr.parse().map_err(|e| HttpError::Malformed {
        addr: addr.to_string(),
        what: format!("address: {e}"),
    })?;
    let mut s =
        TcpStream::connect_timeout(&sock, timeout).map_err(|source| HttpError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let exchange = |source| HttpError::Exchange {
        addr: addr.to_string(),
        source,
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline"))
    };
    s.set_write_timeout(Some(remaining().map_err(exchange)?))
        .map_err(exchange)?;
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(exchange)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        s.set_read_timeout(Some(remaining().map_err(exchange)?))
            .map_err(exchange)?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(exchange(e)),
        }
    }
    let malformed = |what: &str| HttpError::Malformed {
        addr: addr.to_string(),
        what: what.to_string(),
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| malformed("no status line"))?;
    let index = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("x-consul-index"))
        .and_then(|(_, v)| v.trim().parse().ok());
    Ok(Answer {
        status,
        index,
        body: raw[split + 4..].to_vec(),
    })
}

/// What a request's failure means for the history: `Failed` when it certainly did
/// nothing, `Unknown` otherwise.
fn no_answer(e: &HttpError) -> Ret {
    match e {
        HttpError::Connect { .. } => Ret::Failed,
        HttpError::Exchange { .. } | HttpError::Malformed { .. } => Ret::Unknown,
    }
}

/// What an answer that is not a success means for a write: 4xx and a 503 "no cluster
/// leader" certainly did nothing; any other status may have.
fn refused(a: &Answer) -> Ret {
    let body = String::from_utf8_lossy(&a.body);
    match a.status {
        400..=499 => Ret::Failed,
        503 if body.starts_with("no cluster leader") => Ret::Failed,
        _ => Ret::Unknown,
    }
}

/// The value and `ModifyIndex` of the first entry of a `GET /v1/kv/<key>` answer.
fn parse_entry(body: &[u8]) -> Result<(Option<String>, u64), String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("JSON: {e}"))?;
    let entry = v
        .as_array()
        .and_then(|a| a.first())
        .ok_or("not a non-empty list")?;
    let index = entry["ModifyIndex"]
        .as_u64()
        .ok_or("no numeric ModifyIndex")?;
    let value = match &entry["Value"] {
        serde_json::Value::Null => None,
        serde_json::Value::String(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("Value is not base64: {e}"))?;
            Some(String::from_utf8(bytes).map_err(|_| "Value is not UTF-8")?)
        }
        other => return Err(format!("Value is {other}")),
    };
    Ok((value, index))
}

/// What the clients share: the servers' addresses, the clock and the stop flag.
#[derive(Debug)]
pub struct Shared {
    /// The servers' HTTP addresses.
    pub servers: Vec<String>,
    /// The run's start: every event's times are ns since it.
    pub t0: Instant,
    /// Set to stop the clients after their current operation.
    pub stop: AtomicBool,
}

impl Shared {
    /// Nanoseconds since the run's start.
    pub fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }
}

/// One client thread's state.
struct Client {
    thread: usize,
    /// Its current process id in the history (a new one after an unknown outcome).
    process: u64,
    generation: u64,
    seq: u64,
    rng: Rng,
    /// Per key, what it last knew: the value and its `ModifyIndex` (`None`: absent).
    known: HashMap<String, Option<(String, u64)>>,
    record: Record,
}

/// One operation's request, for [`Client::exec`].
enum Op {
    Read {
        consistent: bool,
    },
    Write {
        value: String,
    },
    Delete,
    Cas {
        expected: Option<(String, u64)>,
        new: String,
    },
}

impl Client {
    fn new_value(&mut self) -> String {
        self.seq += 1;
        format!("c{}-{}", self.thread, self.seq)
    }

    /// Runs `op` on `key` against `server`; records it; returns whether its outcome was
    /// unknown or a failure (to back off).
    fn exec(&mut self, w: &Workload, shared: &Shared, server: &str, key: &str, op: Op) -> bool {
        let path = format!("/v1/kv/{key}");
        let invoked = shared.now();
        let (call, result) = match &op {
            Op::Read { consistent } => {
                let p = if *consistent {
                    format!("{path}?consistent")
                } else {
                    path.clone()
                };
                (Call::Read, request(server, "GET", &p, b"", w.timeout))
            }
            Op::Write { value } => (
                Call::Write {
                    value: Some(value.clone()),
                },
                request(server, "PUT", &path, value.as_bytes(), w.timeout),
            ),
            Op::Delete => (
                Call::Write { value: None },
                request(server, "DELETE", &path, b"", w.timeout),
            ),
            Op::Cas { expected, new } => {
                let index = expected.as_ref().map_or(0, |(_, i)| *i);
                (
                    Call::Cas {
                        expected: expected.as_ref().map(|(v, _)| v.clone()),
                        new: new.clone(),
                    },
                    request(
                        server,
                        "PUT",
                        &format!("{path}?cas={index}"),
                        new.as_bytes(),
                        w.timeout,
                    ),
                )
            }
        };
        let at = shared.now();
        let (ret, answer) = match result {
            Err(e) => (no_answer(&e), e.to_string()),
            Ok(a) => {
                let body = String::from_utf8_lossy(&a.body);
                let answer = format!(
                    "{} {}",
                    a.status,
                    body.chars().take(120).collect::<String>().trim()
                );
                (self.interpret(server, key, &op, &a, at), answer)
            }
        };
        self.record.notes.push(OpNote {
            client: self.process,
            invoked,
            server: server.to_string(),
            answer,
        });
        let definite = !matches!(ret, Ret::Unknown);
        let trouble = matches!(ret, Ret::Unknown | Ret::Failed);
        self.record.events.push(Event {
            client: self.process,
            key: key.to_string(),
            call,
            ret,
            invoked,
            completed: definite.then_some(at),
        });
        if !definite {
            self.generation += 1;
            self.process = self.thread as u64 + w.clients as u64 * self.generation;
        }
        trouble
    }

    /// What answer `a` to `op` means; records the indexes it carries.
    fn interpret(&mut self, server: &str, key: &str, op: &Op, a: &Answer, at: u64) -> Ret {
        let body = String::from_utf8_lossy(&a.body).trim().to_string();
        match op {
            Op::Read { .. } => match a.status {
                200 => match parse_entry(&a.body) {
                    Ok((value, modify_index)) => {
                        if let Some(v) = &value {
                            self.record.reads.push(ValueRead {
                                key: key.to_string(),
                                value: v.clone(),
                                modify_index,
                                index: a.index,
                                server: server.to_string(),
                                at,
                            });
                        }
                        self.known
                            .insert(key.to_string(), value.clone().map(|v| (v, modify_index)));
                        Ret::Read { value }
                    }
                    Err(e) => {
                        self.record
                            .oddities
                            .push(format!("GET {key} on {server}: 200 with {e}: {body}"));
                        Ret::Failed
                    }
                },
                404 if a.body.is_empty() => {
                    self.known.insert(key.to_string(), None);
                    Ret::Read { value: None }
                }
                // A read changes nothing: whatever went wrong, it did nothing.
                _ => Ret::Failed,
            },
            Op::Write { .. } | Op::Delete | Op::Cas { .. } => {
                if a.status != 200 {
                    return refused(a);
                }
                let value = match op {
                    Op::Write { value } => Some(value.clone()),
                    Op::Cas { new, .. } => Some(new.clone()),
                    _ => None,
                };
                let ok = match body.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        self.record
                            .oddities
                            .push(format!("write of {key} on {server}: 200 with {body:?}"));
                        return Ret::Unknown;
                    }
                };
                if ok {
                    match a.index {
                        Some(index) => {
                            self.record.acked.push(Acked {
                                key: key.to_string(),
                                value: value.clone(),
                                index,
                                at,
                            });
                            self.known
                                .insert(key.to_string(), value.map(|v| (v, index)));
                        }
                        None => self.record.oddities.push(format!(
                            "write of {key} on {server} acknowledged without X-Consul-Index"
                        )),
                    }
                }
                match op {
                    Op::Cas { .. } => Ret::Cas { ok },
                    _ if ok => Ret::Written,
                    _ => {
                        self.record
                            .oddities
                            .push(format!("put/delete of {key} on {server} answered false"));
                        Ret::Unknown
                    }
                }
            }
        }
    }

    /// Picks and runs one operation; returns whether to back off.
    fn step(&mut self, w: &Workload, shared: &Shared) -> bool {
        let key = key_name(self.rng.below(w.keys as u64) as usize);
        let server = shared.servers[self.rng.below(shared.servers.len() as u64) as usize].clone();
        let roll = self.rng.below(100);
        let op = if roll < 40 || (roll >= 75 && !self.known.contains_key(&key)) {
            let consistent = match w.reads {
                ReadMode::Consistent => true,
                ReadMode::Default => false,
                ReadMode::Mixed => self.rng.below(2) == 0,
            };
            Op::Read { consistent }
        } else if roll < 70 {
            Op::Write {
                value: self.new_value(),
            }
        } else if roll < 75 {
            Op::Delete
        } else {
            let expected = self.known.get(&key).cloned().flatten();
            Op::Cas {
                expected,
                new: self.new_value(),
            }
        };
        self.exec(w, shared, &server, &key, op)
    }
}

/// Starts `w.clients` threads running operations until `shared.stop` is set; each returns
/// its [`Record`].
pub fn start(w: &Workload, shared: &Arc<Shared>) -> Vec<JoinHandle<Record>> {
    (0..w.clients)
        .map(|thread| {
            let w = w.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("nemesis-c{thread}"))
                .spawn(move || {
                    let mut c = Client {
                        thread,
                        process: thread as u64,
                        generation: 0,
                        seq: 0,
                        rng: Rng::new(w.seed ^ (thread as u64 + 1).wrapping_mul(0x2545_f491)),
                        known: HashMap::new(),
                        record: Record::default(),
                    };
                    while !shared.stop.load(Ordering::Relaxed) {
                        let trouble = c.step(&w, &shared);
                        let pause = if trouble {
                            w.think + Duration::from_millis(50)
                        } else {
                            w.think
                        };
                        std::thread::sleep(pause);
                    }
                    c.record
                })
                .expect("a client thread starts")
        })
        .collect()
}

/// Reads every key with `?consistent` until each read succeeds (or `timeout` passes),
/// recording every attempt as client `process`; the final reads of a run, after healing.
pub fn final_reads(
    w: &Workload,
    shared: &Shared,
    process: u64,
    timeout: Duration,
) -> (Record, Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut c = Client {
        thread: 0,
        process,
        generation: 0,
        seq: 0,
        rng: Rng::new(w.seed ^ 0xf1a1),
        known: HashMap::new(),
        record: Record::default(),
    };
    let w = Workload {
        timeout: Duration::from_secs(5),
        ..w.clone()
    };
    let mut unread = Vec::new();
    // Each read is a process of its own, numbered from `process` up.
    let mut next = process;
    for k in 0..w.keys {
        let key = key_name(k);
        let mut n = 0;
        loop {
            let server = shared.servers[n % shared.servers.len()].clone();
            n += 1;
            c.process = next;
            next += 1;
            c.exec(&w, shared, &server, &key, Op::Read { consistent: true });
            let done = c
                .record
                .events
                .last()
                .is_some_and(|e| matches!(e.ret, Ret::Read { .. }));
            if done {
                break;
            }
            if Instant::now() > deadline {
                unread.push(key);
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    (c.record, unread)
}
