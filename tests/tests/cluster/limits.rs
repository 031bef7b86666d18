//! Connection limits (issue "Security", item 5): one client address cannot hold more
//! connections than `limits.http_max_conns_per_client` / `rpc_max_conns_per_client`, and
//! the server keeps serving everyone else, and that client once it lets go.

use fsmhost_tests::cluster::Cluster;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::BIN;

/// Whether the server closed `s` without answering a request sent on it.
fn closed_unanswered(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn a_client_over_its_connection_limit_is_closed_and_others_are_served() {
    let mut c = Cluster::start_with(
        BIN,
        1,
        "[limits]\nhttp_max_conns_per_client = 4\nrpc_max_conns_per_client = 3",
    );
    let leader = c.wait_leader(Duration::from_secs(30));
    for (addr, limit) in [
        (c.servers[leader].http_addr(), 4),
        (c.servers[leader].rpc_addr(), 3),
    ] {
        let held: Vec<TcpStream> = (0..limit)
            .map(|_| TcpStream::connect(&addr).expect("connects"))
            .collect();
        // Accepted in order: give the server a moment to count them.
        std::thread::sleep(Duration::from_millis(300));
        let extra = TcpStream::connect(&addr).expect("the kernel accepts");
        assert!(
            closed_unanswered(extra),
            "{addr}: connection {} closed",
            limit + 1
        );
        drop(held);
        std::thread::sleep(Duration::from_millis(300));
    }
    // Once the held connections are gone, the same client is served again.
    let r = c.client(leader).get("/v1/status/leader");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        c.log_text(leader)
            .contains("closed a connection from 127.0.0.1")
    );
}
