//! The sessions and locks benchmark of BENCHMARKS.md (tests/bench-sessions.sh runs it
//! against a 3-server cluster):
//!
//! - `cycles`: N clients, each repeating session create → `?acquire` → `?release` →
//!   session destroy on a key of its own, for a fixed time; cycles per second.
//! - `handoff`: two clients pass one lock back and forth: the holder releases, the waiter
//!   (blocked on the key with `?index=`) wakes and acquires; the time from the release's
//!   answer to the acquire's answer, p50 and p99.
//! - `fill`: makes COUNT tombstones under PREFIX (transactions of 32 sets and 32
//!   deletes, on 8 connections in parallel), for `reap`.
//! - `reap`: the time to reap every tombstone (watching `/v1/kv/` of a prefix until its
//!   index moves past the reap and the table is empty), with the latency of a probe write
//!   every 20 ms meanwhile (how long applies stall).
//!
//! Usage: `lockbench ADDR cycles CLIENTS SECONDS | handoff COUNT | fill PREFIX COUNT | reap
//! PREFIX`
//!
//! Every request is one HTTP/1.1 exchange on a fresh loopback connection (the tests'
//! client), as py-consul without keep-alive makes them.

use fsmhost_tests::client::Client;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn session(c: &Client) -> String {
    let r = c.put("/v1/session/create", r#"{"LockDelay":"0s","Checks":[]}"#);
    assert_eq!(r.status, 200, "session create: {}", r.text());
    r.json()["ID"].as_str().expect("an ID").to_string()
}

fn must(ok: bool, what: &str) {
    if !ok {
        eprintln!("lockbench: {what} answered false");
        std::process::exit(1);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn cycles(addr: &str, clients: usize, seconds: u64) {
    let until = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|n| {
            let c = Client::new(addr);
            std::thread::spawn(move || {
                let mut done = 0u64;
                let key = format!("/v1/kv/bench/cycle/{n}");
                while Instant::now() < until {
                    let s = session(&c);
                    must(
                        c.put(&format!("{key}?acquire={s}"), "x").text() == "true",
                        "acquire",
                    );
                    must(
                        c.put(&format!("{key}?release={s}"), "x").text() == "true",
                        "release",
                    );
                    assert_eq!(c.put(&format!("/v1/session/destroy/{s}"), "").status, 200);
                    done += 1;
                }
                done
            })
        })
        .collect();
    let started = Instant::now();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "cycles: {clients} clients, {total} cycles in {secs:.1} s: {:.0} cycles/s ({:.0} writes/s)",
        total as f64 / secs,
        4.0 * total as f64 / secs
    );
}

fn handoff(addr: &str, count: usize) {
    let key = "/v1/kv/bench/handoff";
    let (a, b) = (Client::new(addr), Client::new(addr));
    let (sa, sb) = (session(&a), session(&b));
    must(
        a.put(&format!("{key}?acquire={sa}"), "a").text() == "true",
        "first acquire",
    );
    let (released_tx, released_rx) = mpsc::channel::<Instant>();
    let (held_tx, held_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (turn_tx, turn_rx) = mpsc::channel::<()>();
    // The waiter: once the holder has the lock, blocks on the key, acquires it as soon as
    // it is released, then gives it back.
    let waiter = {
        let key = key.to_string();
        std::thread::spawn(move || {
            let mut latencies = Vec::with_capacity(count);
            for _ in 0..count {
                held_rx.recv().expect("the holder has the lock");
                let index = b.get(&key).index();
                ready_tx.send(()).expect("ready");
                let r = b.get(&format!("{key}?index={index}&wait=30s"));
                assert_eq!(r.status, 200);
                must(
                    b.put(&format!("{key}?acquire={sb}"), "b").text() == "true",
                    "acquire",
                );
                let took = released_rx.recv().expect("release time").elapsed();
                latencies.push(took);
                must(
                    b.put(&format!("{key}?release={sb}"), "b").text() == "true",
                    "release",
                );
                turn_tx.send(()).expect("turn");
            }
            latencies
        })
    };
    for round in 0..count {
        if round > 0 {
            must(
                a.put(&format!("{key}?acquire={sa}"), "a").text() == "true",
                "re-acquire",
            );
        }
        held_tx.send(()).expect("held");
        ready_rx.recv().expect("waiter ready");
        // Give the waiter's blocking read time to reach the server.
        std::thread::sleep(Duration::from_millis(5));
        must(
            a.put(&format!("{key}?release={sa}"), "a").text() == "true",
            "release",
        );
        released_tx.send(Instant::now()).expect("release time");
        turn_rx.recv().expect("waiter done");
    }
    let mut latencies = waiter.join().expect("waiter");
    latencies.sort();
    println!(
        "handoff: {count} hand-offs: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

/// Makes `count` tombstones under `prefix`: each transaction sets 32 keys and deletes
/// them (Consul's transactions take at most 64 operations).
fn fill(addr: &str, prefix: &str, count: u64) {
    let started = Instant::now();
    let txns = count.div_ceil(32);
    let workers: Vec<_> = (0..8u64)
        .map(|w| {
            let c = Client::new(addr);
            let prefix = prefix.to_string();
            std::thread::spawn(move || {
                let mut t = w;
                while t < txns {
                    let keys =
                        (t * 32..((t + 1) * 32).min(count)).map(|k| format!("{prefix}{k:08}"));
                    let mut ops = Vec::new();
                    for k in keys {
                        ops.push(format!(
                            r#"{{"KV":{{"Verb":"set","Key":"{k}","Value":"dg=="}}}}"#
                        ));
                        ops.push(format!(r#"{{"KV":{{"Verb":"delete","Key":"{k}"}}}}"#));
                    }
                    let r = c.put("/v1/txn", format!("[{}]", ops.join(",")));
                    if r.status != 200 {
                        eprintln!("lockbench: txn answered {}: {}", r.status, r.text());
                        std::process::exit(1);
                    }
                    t += 8;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a fill worker");
    }
    println!(
        "fill: {count} tombstones under {prefix} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Waits for the tombstones under `prefix` to be reaped while timing probe writes.
fn reap(addr: &str, prefix: &str) {
    let c = Client::new(addr);
    let probe = Client::new(addr);
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let prober = std::thread::spawn(move || {
        let mut lat = Vec::new();
        let mut n = 0u64;
        while stop_rx.try_recv().is_err() {
            let t = Instant::now();
            assert_eq!(probe.put("/v1/kv/bench/probe", n.to_string()).status, 200);
            lat.push((Instant::now(), t.elapsed()));
            n += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        lat
    });
    // Reaping has started once the tombstones table shrinks (its row count in the
    // metrics, `consul.state.rows`), and is done once none is left.
    let started = Instant::now();
    let mut first_reap = None;
    let mut initial = None;
    loop {
        let m = c.get("/v1/agent/metrics").json();
        let rows = m["Gauges"]
            .as_array()
            .and_then(|g| {
                g.iter().find(|x| {
                    x["Name"] == "consul.state.rows" && x["Labels"]["table"] == "tombstones"
                })
            })
            .and_then(|x| x["Value"].as_f64())
            .unwrap_or(-1.0);
        let at_start = *initial.get_or_insert(rows);
        if first_reap.is_none() && rows < at_start {
            first_reap = Some(Instant::now());
        }
        if rows == 0.0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            eprintln!("lockbench: tombstones not reaped within an hour");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = Instant::now();
    stop_tx.send(()).ok();
    let lat = prober.join().expect("prober");
    let from = first_reap.unwrap_or(done);
    let mut during: Vec<Duration> = lat
        .iter()
        .filter(|(at, _)| *at >= from && *at <= done)
        .map(|(_, l)| *l)
        .collect();
    let mut before: Vec<Duration> = lat
        .iter()
        .filter(|(at, _)| *at < from)
        .map(|(_, l)| *l)
        .collect();
    during.sort();
    before.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "reap of {prefix}: {:.1} s from the first reap to none left; probe writes before: p50 {:.2} ms ({} samples), during: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
        done.duration_since(from).as_secs_f64(),
        before.get(before.len() / 2).map_or(0.0, |d| ms(*d)),
        before.len(),
        during.get(during.len() / 2).map_or(0.0, |d| ms(*d)),
        if during.is_empty() {
            0.0
        } else {
            ms(percentile(&during, 0.99))
        },
        during.last().map_or(0.0, |d| ms(*d)),
        during.len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!(
            "usage: lockbench ADDR cycles CLIENTS SECONDS | handoff COUNT | fill PREFIX COUNT | reap PREFIX"
        );
        std::process::exit(2)
    };
    let num = |i: usize| -> u64 {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| usage())
    };
    match args.get(1).map(String::as_str) {
        Some("cycles") => cycles(&args[0], num(2) as usize, num(3)),
        Some("handoff") => handoff(&args[0], num(2) as usize),
        Some("fill") => fill(&args[0], args.get(2).map_or("", String::as_str), num(3)),
        Some("reap") => reap(&args[0], args.get(2).map_or("", String::as_str)),
        _ => usage(),
    }
}
