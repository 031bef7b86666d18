//! Connection limits (issue "Security", item 5): one client address cannot hold more
//! connections than `limits.http_max_conns_per_client` / `rpc_max_conns_per_client`, and
//! the server keeps serving everyone else, and that client once it lets go. On the server
//! port, the servers of the raft configuration are exempt (they forward over many pooled
//! connections).

use fsmhost_tests::cluster::Cluster;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::BIN;

/// A connection to `addr` from the local address `src` (any 127.0.0.0/8 address works on
/// Linux's loopback), so that a test can be a client other than the servers.
fn connect_from(src: &str, addr: &str) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime");
    let stream = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().expect("a socket");
        sock.bind(format!("{src}:0").parse().expect("an address"))
            .expect("bound");
        sock.connect(addr.parse().expect("an address"))
            .await
            .expect("connects")
    });
    let stream = stream.into_std().expect("a std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream
}

/// Whether the server answered a request sent on `s` (else it closed it unanswered).
fn answered(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if n > 0)
}

#[test]
fn a_client_over_its_connection_limit_is_closed_and_others_are_served() {
    let mut c = Cluster::start_with(
        BIN,
        1,
        "[limits]\nhttp_max_conns_per_client = 4\nrpc_max_conns_per_client = 3",
    );
    let leader = c.wait_leader(Duration::from_secs(30));
    let (http, rpc) = (c.servers[leader].http_addr(), c.servers[leader].rpc_addr());
    for (addr, limit) in [(&http, 4), (&rpc, 3)] {
        let held: Vec<TcpStream> = (0..limit)
            .map(|_| connect_from("127.0.0.2", addr))
            .collect();
        // Give the server a moment to accept and count them.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !answered(connect_from("127.0.0.2", addr)),
            "{addr}: connection {} is closed",
            limit + 1
        );
        // Another client is served meanwhile.
        assert!(
            answered(connect_from("127.0.0.3", addr)),
            "{addr}: another client"
        );
        drop(held);
        std::thread::sleep(Duration::from_millis(300));
        // And the first one again, once it let go.
        assert!(
            answered(connect_from("127.0.0.2", addr)),
            "{addr}: after letting go"
        );
    }
    // A server of the raft configuration (this one's address) is not limited on the
    // server port.
    let held: Vec<TcpStream> = (0..5).map(|_| connect_from("127.0.0.1", &rpc)).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        answered(connect_from("127.0.0.1", &rpc)),
        "a member's address"
    );
    drop(held);
    assert!(
        c.log_text(leader)
            .contains("closed a connection from 127.0.0.2")
    );
}

/// The attack: ten concurrent calls of a plugin's slow query held an unrelated kv
/// write up for 12.9 s. Queries now run on blocking threads under as many query slots as
/// cores: the write is answered while the slow queries are still running.
#[test]
fn slow_plugin_queries_do_not_hold_up_writes() {
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = files.path().join(format!("{name}.wasm"));
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let kv = write("kv", fsmhost_tests::bundled("kv"));
    let slow = write("loop-forever", fsmhost_tests::fixture("loop-forever"));
    // Ten times the default fuel: each slow query computes for a good part of a second, so
    // the ten of them take seconds whatever the machine.
    let mut c = Cluster::start_with(
        BIN,
        1,
        &format!("plugins = [{kv:?}, {slow:?}]\n[plugin_limits]\nfuel = 10000000000"),
    );
    let leader = c.wait_leader(Duration::from_secs(30));
    let addr = c.servers[leader].http_addr();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let queries: Vec<_> = (0..10)
        .map(|_| {
            let (addr, done) = (addr.clone(), done_tx.clone());
            std::thread::spawn(move || {
                let r = fsmhost_tests::client::Client::new(addr).request(
                    "POST",
                    "/v1/query/loop-forever/busy",
                    "application/cbor",
                    [0xf6],
                );
                let _ = done.send(r.status);
            })
        })
        .collect();
    // Once the queries are running, a write: it is answered before even the first of them
    // has burnt its fuel. (With the queries on the async workers, the write took 1.76 s here
    // and came back after several of them; with them on their own threads, 3.8 ms.)
    std::thread::sleep(Duration::from_millis(100));
    let put = c.client(leader).put("/v1/kv/unrelated", "x");
    assert_eq!(put.text(), "true");
    let finished_before_the_write = done_rx.try_iter().count();
    assert_eq!(
        finished_before_the_write, 0,
        "the write was answered only after slow queries finished"
    );
    for q in queries {
        q.join().unwrap();
    }
    let statuses: Vec<u16> = done_rx.try_iter().collect();
    assert!(
        statuses.iter().all(|s| *s == 422),
        "{statuses:?}: each slow query runs out of fuel"
    );
}

/// The replays of clients that never read: 30 `GET /v1/snapshot` whose archives
/// nobody reads (each left its temporary archive behind for good: 1.3 GB in all), and a
/// connection that sends half a request line and waits. Every archive is bigger than what
/// the sockets buffer, so each download stalls; after `http_body::STALL` (60 s) without
/// progress the server drops it and removes its file, and after 30 s the half-sent request
/// is closed. Meanwhile the server keeps serving.
#[test]
fn unread_snapshot_downloads_and_half_sent_requests_are_cut_off() {
    let mut c = Cluster::start(BIN, 1);
    let leader = c.wait_leader(Duration::from_secs(30));
    let addr = c.servers[leader].http_addr();
    // 64 values of 256 KiB that do not compress: a 16 MiB archive.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for k in 0..64 {
        let value: Vec<u8> = (0..256 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let put = c.client(leader).put(&format!("/v1/kv/blob/{k:02}"), value);
        assert_eq!(put.text(), "true");
    }
    let snapshots = c.servers[leader].data_dir.join("raft").join("snapshots");
    let archives = || {
        std::fs::read_dir(&snapshots)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("archive-"))
                    .count()
            })
            .unwrap_or(0)
    };
    let mut half_sent = TcpStream::connect(&addr).expect("connects");
    half_sent
        .write_all(b"GET /v1/status/leader HTTP/1.1\r\nHo")
        .unwrap();
    let half_sent = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        half_sent
            .set_read_timeout(Some(Duration::from_secs(50)))
            .unwrap();
        let mut buf = [0u8; 256];
        let answer = match half_sent.read(&mut buf) {
            Ok(n) => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => Err(e.kind()),
        };
        (started.elapsed(), answer)
    });
    let unread: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).expect("connects");
            s.write_all(b"GET /v1/snapshot HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    // The archives are written, then wait for readers that never come.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while archives() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(archives() > 0, "the downloads were started");
    assert_eq!(c.client(leader).put("/v1/kv/during", "x").text(), "true");

    // The half-sent request is closed after the 30 s header timeout: no answer, or a
    // refusal, never the leader.
    let (held, answer) = half_sent.join().unwrap();
    assert!(
        (Duration::from_secs(29)..Duration::from_secs(45)).contains(&held),
        "a half-sent request was held for {held:?}"
    );
    if let Ok(text) = &answer {
        assert!(!text.starts_with("HTTP/1.1 200"), "{text}");
    }

    // Every stalled download is dropped and its archive removed, within the stall time.
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    while archives() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(archives(), 0, "temporary archives left after the stall");
    assert!(c.log_text(leader).contains("read nothing for"));
    assert_eq!(c.client(leader).put("/v1/kv/after", "x").text(), "true");
    drop(unread);
}
