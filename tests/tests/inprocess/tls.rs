//! TLS handshakes through the host's own listener (`server::web::serve`) and client
//! (`RpcClient`), with a PKI made here: who is let in, who is refused, and a reload.

use fsmhost::raft::network::RpcClient;
use fsmhost::server::web::{self, ConnLimit, Handshake};
use fsmhost::tls::{PeerName, Tls, TlsSettings};
use fsmhost_tests::pki::{Issued, Pki};
use hyper::StatusCode;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const SERVER_NAME: &str = "server.dc1.consul";

fn settings(ca: &Path, own: Option<&Issued>, peer_name: PeerName) -> TlsSettings {
    TlsSettings {
        ca_file: Some(ca.to_path_buf()),
        cert_file: own.map(|i| i.cert.clone()),
        key_file: own.map(|i| i.key.clone()),
        verify_incoming: true,
        verify_outgoing: true,
        peer_name,
        ..TlsSettings::default()
    }
}

/// A TLS listener answering 200 "ok" to everything; its address and its shutdown switch.
async fn listener(tls: &Arc<Tls>) -> (String, tokio::sync::watch::Sender<bool>) {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let handshake = Handshake::new(tls, Duration::from_secs(2)).unwrap();
    tokio::spawn(web::serve(
        socket,
        |_req| async { web::text(StatusCode::OK, "ok") },
        stopped,
        "test",
        ConnLimit::every_client(None),
        Some(handshake),
    ));
    (addr, stop)
}

/// What a client with `tls` gets from `addr`: the body, or the failure as text.
async fn ask(tls: Option<&Arc<Tls>>, addr: &str) -> Result<String, String> {
    let client = match tls {
        Some(tls) => RpcClient::with_tls(tls).unwrap(),
        None => RpcClient::new(),
    };
    client
        .request(
            hyper::Method::GET,
            addr,
            "/",
            Vec::new(),
            Duration::from_secs(3),
        )
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_port_lets_in_only_the_clusters_servers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let foreign = Pki::new(dir.path(), "foreign");
    let names = [SERVER_NAME, "localhost", "127.0.0.1"];
    let server = pki.issue("server", &names);
    let peer = pki.issue("peer", &names);
    let other_dc = pki.issue("other-dc", &["server.dc2.consul", "127.0.0.1"]);
    let stranger = foreign.issue("stranger", &names);
    let fixed = || PeerName::Fixed(SERVER_NAME.into());

    let tls = Tls::load(
        "tls.internal_rpc",
        settings(&pki.ca_file(), Some(&server), fixed()),
    )
    .unwrap();
    let (addr, _stop) = listener(&tls).await;
    let client = |ca: &Path, own: Option<&Issued>, name| {
        Tls::load("client", settings(ca, own, name)).unwrap()
    };

    // A server of the cluster is let in (the positive control of every refusal below).
    let ok = client(&pki.ca_file(), Some(&peer), fixed());
    assert_eq!(ask(Some(&ok), &addr).await, Ok("ok".into()));
    // Plain HTTP, no certificate, a foreign CA's certificate, another datacenter's name.
    let plain = ask(None, &format!("http://{addr}")).await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    let no_cert = client(&pki.ca_file(), None, fixed());
    let e = ask(Some(&no_cert), &addr).await.unwrap_err();
    assert!(!e.is_empty(), "a client without a certificate got in");
    let e = ask(
        Some(&client(&pki.ca_file(), Some(&stranger), fixed())),
        &addr,
    )
    .await;
    assert!(e.is_err(), "a foreign CA's certificate got in: {e:?}");
    let e = ask(
        Some(&client(&pki.ca_file(), Some(&other_dc), fixed())),
        &addr,
    )
    .await;
    assert!(
        e.is_err(),
        "a certificate for server.dc2.consul got in: {e:?}"
    );
    // The client side checks the server too: a listener whose certificate is for another
    // name is refused under a fixed name, accepted when only the chain is checked.
    let wrong = Tls::load(
        "wrong",
        settings(&pki.ca_file(), Some(&other_dc), PeerName::Any),
    )
    .unwrap();
    let (wrong_addr, _stop2) = listener(&wrong).await;
    let e = ask(Some(&ok), &wrong_addr).await.unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    let chain_only = client(&pki.ca_file(), Some(&peer), PeerName::Any);
    assert_eq!(ask(Some(&chain_only), &wrong_addr).await, Ok("ok".into()));
    // A client that trusts another CA refuses the listener.
    let e = ask(
        Some(&client(&foreign.ca_file(), Some(&stranger), PeerName::Any)),
        &addr,
    )
    .await;
    assert!(
        e.is_err(),
        "a client trusting another CA accepted the server: {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_certificates_and_a_bad_one_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let old = Pki::new(dir.path(), "old");
    let new = Pki::new(dir.path(), "new");
    let names = [SERVER_NAME, "127.0.0.1"];
    let served = old.issue("server", &names);
    let tls = Tls::load(
        "tls.https",
        TlsSettings {
            verify_incoming: false,
            ..settings(&old.ca_file(), Some(&served), PeerName::Any)
        },
    )
    .unwrap();
    let (addr, _stop) = listener(&tls).await;
    let trusts =
        |pki: &Pki| Tls::load("client", settings(&pki.ca_file(), None, PeerName::Any)).unwrap();
    assert_eq!(ask(Some(&trusts(&old)), &addr).await, Ok("ok".into()));
    assert!(ask(Some(&trusts(&new)), &addr).await.is_err());

    // The same file names now hold a certificate of the new CA.
    let replacement = new.issue("server", &names);
    std::fs::copy(&replacement.cert, &served.cert).unwrap();
    std::fs::copy(&replacement.key, &served.key).unwrap();
    tls.reload().unwrap();
    assert_eq!(ask(Some(&trusts(&new)), &addr).await, Ok("ok".into()));
    assert!(ask(Some(&trusts(&old)), &addr).await.is_err());

    // A broken key: the reload is refused, naming the file, and the listener goes on.
    std::fs::write(&served.key, "not a key").unwrap();
    let e = tls.reload().unwrap_err().to_string();
    assert!(
        e.contains("key_file") && e.contains(&*served.key.to_string_lossy()),
        "{e}"
    );
    assert_eq!(ask(Some(&trusts(&new)), &addr).await, Ok("ok".into()));
}

#[test]
fn a_certificate_and_another_key_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let a = pki.issue("a", &[SERVER_NAME]);
    let b = pki.issue("b", &[SERVER_NAME]);
    let mixed = Issued {
        cert: a.cert,
        key: b.key,
    };
    let e = Tls::load(
        "tls.https",
        settings(&pki.ca_file(), Some(&mixed), PeerName::Any),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("do not belong together"), "{e}");
}
