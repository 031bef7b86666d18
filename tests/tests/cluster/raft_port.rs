//! Hostile raft messages on the server port (issue "Security", item 2): each attack that
//! once stopped or disturbed a cluster is replayed and must fail with a clear refusal, no
//! panic, no change of leader and no divergence.

use fsmhost::raft::TypeConfig;
use fsmhost_tests::cbor;
use fsmhost_tests::client::Client;
use fsmhost_tests::cluster::Cluster;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{CommittedLeaderId, LogId, Vote};
use std::time::Duration;

use crate::support::{BIN, kv_set};

const WAIT: Duration = Duration::from_secs(30);
/// A node id no server of the test has.
const STRANGER: u64 = 0xBAD;

fn post(c: &Cluster, i: usize, path: &str, body: Vec<u8>) -> (u16, String) {
    let r = Client::new(c.servers[i].rpc_addr()).request("POST", path, "application/cbor", body);
    (r.status, r.text())
}

fn append(term: u64, from: u64) -> Vec<u8> {
    cbor(&AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, from),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    })
}

fn vote(term: u64, from: u64, last_log_term: u64) -> Vec<u8> {
    let last = LogId::new(CommittedLeaderId::new(last_log_term, from), 1_000_000);
    cbor(&VoteRequest::new(Vote::new(term, from), Some(last)))
}

fn id_of(c: &Cluster, i: usize) -> u64 {
    let id = c.state(i).expect("server answers").id;
    u64::from_str_radix(&id, 16).unwrap_or_else(|e| panic!("node id {id}: {e}"))
}

fn term_of(c: &Cluster, i: usize) -> u64 {
    let t = &c.raft_stats(i).expect("server answers")["term"];
    t.as_u64()
        .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("term {t}"))
}

#[test]
fn hostile_terms_and_strangers_are_refused_and_the_cluster_keeps_its_leader() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader(WAIT);
    let f = (leader + 1) % 3;
    let leader_id = id_of(&c, leader);
    assert_eq!(
        c.apply(leader, "kv", "set", &kv_set("a", "1"))
            .unwrap()
            .status,
        200
    );
    let term = term_of(&c, leader);
    let append_path = "/v1/internal/raft/append";
    let vote_path = "/v1/internal/raft/vote";

    // A term that cannot be incremented, from a stranger and under the real leader's id,
    // to the leader and to a follower: refused before openraft sees it.
    for (to, from) in [
        (leader, STRANGER),
        (f, STRANGER),
        (f, leader_id),
        (leader, leader_id),
    ] {
        let (status, text) = post(&c, to, append_path, append(u64::MAX, from));
        assert_eq!(status, 400, "{text}");
        assert!(
            text.contains("term 18446744073709551615 is refused"),
            "{text}"
        );
        let (status, text) = post(&c, to, vote_path, vote(u64::MAX, from, 1));
        assert_eq!(status, 400, "{text}");
    }
    // A vote request whose log is of a later term than its vote.
    let (status, text) = post(&c, f, vote_path, vote(term + 1, leader_id, u64::MAX));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("above its vote's term"), "{text}");

    // A stranger asking for votes with a high term: the leader does not step down and
    // the followers do not vote.
    for to in [leader, f] {
        let (status, text) = post(&c, to, vote_path, vote(6000, STRANGER, 6000));
        assert_eq!(status, 403, "{text}");
        assert!(
            text.contains("0000000000000bad is not in this server's raft configuration"),
            "{text}"
        );
    }
    // A stranger's appends with a higher term, while the leader is alive.
    for to in [leader, f] {
        for _ in 0..5 {
            let (status, text) = post(&c, to, append_path, append(1001, STRANGER));
            assert_eq!(status, 403, "{text}");
        }
    }

    // Nothing moved: the same leader at the same term, every server up, writes go through
    // and every state hash is the same.
    assert_eq!(c.wait_leader(WAIT), leader);
    assert_eq!(term_of(&c, leader), term, "no election happened");
    for i in 0..3 {
        assert!(c.servers[i].is_running(), "server {i} is running");
    }
    assert_eq!(
        c.apply(f, "kv", "set", &kv_set("b", "2")).unwrap().status,
        200
    );
    c.wait_converged(WAIT);
    let log = c.log_text(leader);
    assert!(
        log.contains("refused a raft Vote message from server 0000000000000bad"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_single_server_survives_a_term_that_cannot_be_incremented() {
    let mut c = Cluster::start(BIN, 1);
    let leader = c.wait_leader(WAIT);
    let (status, text) = post(
        &c,
        leader,
        "/v1/internal/raft/append",
        append(u64::MAX, STRANGER),
    );
    assert_eq!(status, 400, "{text}");
    // Past the election timeout: an accepted term would have made the next election
    // overflow; the server keeps leading and taking writes.
    std::thread::sleep(Duration::from_secs(3));
    assert!(c.servers[leader].is_running());
    assert_eq!(c.wait_leader(WAIT), leader);
    assert_eq!(
        c.apply(leader, "kv", "set", &kv_set("a", "1"))
            .unwrap()
            .status,
        200
    );
}
