//! Writes a test PKI into a directory, for benchmarks and manual runs: `cluster-ca.pem`,
//! and `cluster-server.pem` / `cluster-server-key.pem` valid for `server.<dc>.consul`,
//! `localhost` and 127.0.0.1 (made with rcgen, as the TLS tests make theirs).
//!
//! `pki DIR [DATACENTER]`

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: pki DIR [DATACENTER]");
        std::process::exit(2);
    };
    let dc = args.next().unwrap_or_else(|| "dc1".to_string());
    let dir = std::path::PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("creating {}: {e}", dir.display());
        std::process::exit(1);
    }
    let pki = fsmhost_tests::pki::Pki::new(&dir, "cluster");
    let name = format!("server.{dc}.consul");
    let issued = pki.issue("server", &[&name, "localhost", "127.0.0.1"]);
    println!("{}", pki.ca_file().display());
    println!("{}", issued.cert.display());
    println!("{}", issued.key.display());
}
