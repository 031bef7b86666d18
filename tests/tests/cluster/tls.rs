//! TLS on real processes (issue "Security", item 1), with a PKI made in the test: a
//! mutual-TLS cluster forms, replicates and serves HTTPS; both ports refuse plaintext; a
//! server with a foreign CA's certificate or another datacenter's name cannot join; the
//! CLI speaks HTTPS with Consul's flags and environment; SIGHUP reloads certificates.

use fsmhost_tests::cluster::Cluster;
use fsmhost_tests::pki::{Issued, Pki};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{BIN, cli, run, wait_until};

const NAMES: [&str; 3] = ["server.dc1.consul", "localhost", "127.0.0.1"];

/// `[tls.defaults]` with these files, and `verify_server_hostname` on the server port.
fn mutual(ca: &Path, own: &Issued) -> String {
    format!(
        "[tls.defaults]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n\
         [tls.internal_rpc]\nverify_server_hostname = true\n",
        ca.display().to_string(),
        own.cert.display().to_string(),
        own.key.display().to_string(),
    )
}

/// What a plain-HTTP request to `addr` gets back: the first bytes of the answer, if any.
fn plain_answer(addr: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(_) => String::new(),
    }
}

/// The ids of the servers in the leader's raft configuration.
fn members(c: &Cluster, leader: usize) -> usize {
    let stats = c.raft_stats(leader).expect("the leader answers");
    stats["voters"].as_array().map_or(0, Vec::len)
        + stats["learners"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_mutual_tls_cluster_forms_serves_https_and_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let foreign = Pki::new(dir.path(), "foreign");
    let server = pki.issue("server", &NAMES);
    let other_dc = pki.issue("other-dc", &["server.dc2.consul", "localhost", "127.0.0.1"]);
    let stranger = foreign.issue("stranger", &NAMES);
    let ca = pki.ca_file();

    let mut c = Cluster::start_https(BIN, 3, &mutual(&ca, &server));
    let leader = c.wait_leader(Duration::from_secs(60));
    assert_eq!(c.client(leader).put("/v1/kv/secure", "yes").text(), "true");
    c.wait_converged(Duration::from_secs(30));
    assert_eq!(members(&c, leader), 3);

    // Neither the server port nor the HTTPS port answers plain HTTP (rustls may send an
    // alert record before it closes; never an HTTP answer).
    for addr in [
        c.servers[leader].rpc_addr(),
        format!("127.0.0.1:{}", c.servers[leader].https_port),
    ] {
        let answer = plain_answer(&addr);
        assert!(
            !answer.starts_with("HTTP/"),
            "{addr} answered plain HTTP: {answer:?}"
        );
    }

    // The CLI over HTTPS: with the CA (flag, or Consul's environment names) it reads the
    // key; without, it refuses the server's certificate.
    let url = c.servers[leader].https_url();
    let ca_text = ca.display().to_string();
    let (code, out, err) = cli(&[
        "kv",
        "get",
        "-http-addr",
        &url,
        "-ca-file",
        &ca_text,
        "secure",
    ]);
    assert_eq!((code, out.trim()), (0, "yes"), "{err}");
    let (code, out, err) = run(Command::new(BIN)
        .args(["kv", "get", "secure"])
        .env("CONSUL_HTTP_ADDR", &url)
        .env("CONSUL_CACERT", &ca_text));
    assert_eq!((code, out.trim()), (0, "yes"), "{err}");
    let (code, _, err) = cli(&["kv", "get", "-http-addr", &url, "secure"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );

    // Servers with a foreign CA's certificate, or one for another datacenter, retry_join
    // the cluster and are never let in; the leader keeps leading the same three.
    let a = c.add_server_with(&mutual(&foreign.ca_file(), &stranger));
    let b = c.add_server_with(&mutual(&ca, &other_dc));
    std::thread::sleep(Duration::from_secs(6));
    for i in [a, b] {
        assert!(c.servers[i].is_running(), "{} exited", c.servers[i].name);
    }
    let state = c.state(leader).expect("the leader answers");
    assert_eq!(state.role, "Leader", "leadership moved: {state:?}");
    assert_eq!(members(&c, leader), 3, "a stranger joined");
    let log = c.log_text(leader);
    assert!(
        log.contains("TLS handshake error"),
        "no refusal logged:\n{log}"
    );
    assert_eq!(c.client(leader).get("/v1/kv/secure?raw").text(), "yes");
}

#[test]
fn https_requires_client_certificates_and_sighup_reloads_them() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "first");
    let served = pki.issue("server", &NAMES);
    let client = pki.issue("client", &["client.dc1.consul"]);
    let ca = dir.path().join("ca.pem");
    std::fs::copy(pki.ca_file(), &ca).unwrap();
    let extra = format!(
        "[limits]\nhttps_handshake_timeout = \"300ms\"\n\
         [tls.https]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\nverify_incoming = true\n",
        ca.display().to_string(),
        served.cert.display().to_string(),
        served.key.display().to_string(),
    );
    let mut c = Cluster::start_https(BIN, 1, &extra);
    let leader = c.wait_leader(Duration::from_secs(60));
    assert_eq!(c.client(leader).put("/v1/kv/k", "v").text(), "true");
    let url = c.servers[leader].https_url();
    let get = |ca: &Path, client: Option<&Issued>, extra: &[&str]| {
        let ca = ca.display().to_string();
        let mut args = vec!["kv", "get", "-http-addr", &url, "-ca-file", &ca];
        let (cert, key);
        if let Some(i) = client {
            (cert, key) = (i.cert.display().to_string(), i.key.display().to_string());
            args.extend(["-client-cert", &cert, "-client-key", &key]);
        }
        args.extend(extra);
        args.push("k");
        cli(&args)
    };

    // A connection that never starts its handshake is closed after
    // limits.https_handshake_timeout (300ms here), not held.
    let mut idle =
        TcpStream::connect(format!("127.0.0.1:{}", c.servers[leader].https_port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    assert!(
        matches!(idle.read(&mut buf), Ok(0)),
        "the silent connection was not closed"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        started.elapsed()
    );

    // verify_incoming: no client certificate, no answer; with one, the key.
    let (code, _, err) = get(&ca, None, &[]);
    assert_eq!(code, 1, "answered without a client certificate");
    assert!(!err.is_empty());
    let (code, out, err) = get(&ca, Some(&client), &[]);
    assert_eq!((code, out.trim()), (0, "v"), "{err}");
    // A client certificate from another CA is refused as no certificate is.
    let foreign = Pki::new(dir.path(), "foreign");
    let stranger = foreign.issue("client", &["client.dc1.consul"]);
    let (code, _, _) = get(&ca, Some(&stranger), &[]);
    assert_eq!(code, 1, "answered a client certificate from a foreign CA");
    // -tls-server-name: the certificate must be valid for that name.
    let (code, out, err) = get(
        &ca,
        Some(&client),
        &["-tls-server-name", "server.dc1.consul"],
    );
    assert_eq!((code, out.trim()), (0, "v"), "{err}");
    let (code, _, err) = get(
        &ca,
        Some(&client),
        &["-tls-server-name", "vault.example.com"],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("certificate") || err.contains("NotValidForName"),
        "{err}"
    );

    // Rotate to a new CA: same file names, then SIGHUP. The old CA and client
    // certificate stop working, the new ones work, without a restart.
    let next = Pki::new(dir.path(), "second");
    let next_served = next.issue("server", &NAMES);
    let next_client = next.issue("client", &["client.dc1.consul"]);
    std::fs::copy(next.ca_file(), &ca).unwrap();
    std::fs::copy(&next_served.cert, &served.cert).unwrap();
    std::fs::copy(&next_served.key, &served.key).unwrap();
    c.signal(leader, libc::SIGHUP);
    wait_until("the reload is logged", Duration::from_secs(10), || {
        c.log_text(leader).contains("reloaded tls.https")
    });
    assert!(c.servers[leader].is_running(), "SIGHUP stopped the server");
    let (code, out, err) = get(&next.ca_file(), Some(&next_client), &[]);
    assert_eq!((code, out.trim()), (0, "v"), "{err}");
    let (code, _, _) = get(&pki.ca_file(), Some(&client), &[]);
    assert_eq!(code, 1, "the old CA still works after the reload");
}
