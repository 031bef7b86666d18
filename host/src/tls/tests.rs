//! Reading TLS files: every refusal names the key and the file. Handshakes with real
//! certificates are tested in `tests/tests/inprocess/tls.rs`, with a PKI made there.

use super::*;

fn settings(dir: &Path, ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> TlsSettings {
    TlsSettings {
        ca_file: ca.map(|f| dir.join(f)),
        cert_file: cert.map(|f| dir.join(f)),
        key_file: key.map(|f| dir.join(f)),
        ..TlsSettings::default()
    }
}

#[test]
fn unreadable_or_empty_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "no pem here\n").unwrap();
    let e = Tls::load(
        "tls.https",
        settings(dir.path(), Some("missing.pem"), None, None),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("tls.https.ca_file ") && e.contains("missing.pem"),
        "{e}"
    );
    let e = Tls::load(
        "tls.https",
        settings(dir.path(), Some("empty.pem"), None, None),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("empty.pem") && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = Tls::load(
        "tls.https",
        settings(dir.path(), None, Some("empty.pem"), None),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cert_file and key_file go together"), "{e}");
    let e = Tls::load(
        "tls.https",
        TlsSettings {
            ca_path: Some(dir.path().join("nowhere")),
            ..TlsSettings::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("tls.https.ca_path ") && e.contains("nowhere"),
        "{e}"
    );
}

#[test]
fn min_versions_in_consuls_spelling() {
    assert_eq!(MinVersion::parse("TLSv1_2"), Ok(MinVersion::Tls12));
    assert_eq!(MinVersion::parse("TLSv1_3"), Ok(MinVersion::Tls13));
    assert!(
        MinVersion::parse("TLSv1_1")
            .unwrap_err()
            .contains("not supported")
    );
    assert!(
        MinVersion::parse("ssl3")
            .unwrap_err()
            .contains("not a TLS version")
    );
}
