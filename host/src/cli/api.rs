//! How a command reaches a server's HTTP API: the address, TLS and token flags every
//! client command takes, with Consul's names, and their environment variables
//! (`FSMHOST_*`, or Consul's `CONSUL_*` of the same meaning, so a Consul operator's shell
//! works unchanged).

use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

use crate::raft::network::RpcClient;
use crate::tls::{MinVersion, PeerName, Tls, TlsSettings};

/// The default address: Consul's HTTP port on this host.
const DEFAULT_ADDR: &str = "127.0.0.1:8500";

/// Where and how to reach a server's HTTP API.
#[derive(Debug, Clone, Default, Args)]
pub struct Api {
    /// The HTTP address of any server: `host:port`, `http://host:port` or
    /// `https://host:port` [env: FSMHOST_HTTP_ADDR, CONSUL_HTTP_ADDR] [default:
    /// 127.0.0.1:8500].
    #[arg(long = "http-addr", value_name = "ADDR")]
    http_addr: Option<String>,
    /// A PEM file of CA certificates to check the server's certificate against; a bare
    /// `host:port` is then reached over HTTPS [env: FSMHOST_CACERT, CONSUL_CACERT].
    #[arg(long = "ca-file", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// A directory of PEM CA certificates [env: FSMHOST_CAPATH, CONSUL_CAPATH].
    #[arg(long = "ca-path", value_name = "DIR")]
    ca_path: Option<PathBuf>,
    /// A client certificate (PEM), for a server with `tls.https.verify_incoming`
    /// [env: FSMHOST_CLIENT_CERT, CONSUL_CLIENT_CERT].
    #[arg(long = "client-cert", value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM) [env: FSMHOST_CLIENT_KEY, CONSUL_CLIENT_KEY].
    #[arg(long = "client-key", value_name = "FILE")]
    client_key: Option<PathBuf>,
    /// The name the server's certificate must be valid for, when it is not the address's
    /// host [env: FSMHOST_TLS_SERVER_NAME, CONSUL_TLS_SERVER_NAME].
    #[arg(long = "tls-server-name", value_name = "NAME")]
    tls_server_name: Option<String>,
    /// The ACL token sent with every request (`X-Consul-Token`)
    /// [env: FSMHOST_HTTP_TOKEN, CONSUL_HTTP_TOKEN].
    #[arg(long = "token", value_name = "SECRET")]
    token: Option<String>,
}

/// A flag's value, else the first set of its environment variables.
fn or_env(flag: &Option<String>, names: [&str; 2]) -> Option<String> {
    flag.clone().or_else(|| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
    })
}

fn path_or_env(flag: &Option<PathBuf>, names: [&str; 2]) -> Option<PathBuf> {
    flag.clone()
        .or_else(|| or_env(&None, names).map(PathBuf::from))
}

impl Api {
    /// The server's address as given (flag, environment or default).
    pub fn addr(&self) -> String {
        or_env(&self.http_addr, ["FSMHOST_HTTP_ADDR", "CONSUL_HTTP_ADDR"])
            .unwrap_or_else(|| DEFAULT_ADDR.to_string())
    }

    /// The ACL token to send, if any.
    pub fn token(&self) -> Option<String> {
        or_env(&self.token, ["FSMHOST_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"])
    }

    /// The TLS settings the flags and environment give (`None`: plain HTTP).
    fn tls_settings(&self) -> Option<TlsSettings> {
        let settings = TlsSettings {
            ca_file: path_or_env(&self.ca_file, ["FSMHOST_CACERT", "CONSUL_CACERT"]),
            ca_path: path_or_env(&self.ca_path, ["FSMHOST_CAPATH", "CONSUL_CAPATH"]),
            cert_file: path_or_env(
                &self.client_cert,
                ["FSMHOST_CLIENT_CERT", "CONSUL_CLIENT_CERT"],
            ),
            key_file: path_or_env(
                &self.client_key,
                ["FSMHOST_CLIENT_KEY", "CONSUL_CLIENT_KEY"],
            ),
            verify_incoming: false,
            verify_outgoing: true,
            peer_name: match or_env(
                &self.tls_server_name,
                ["FSMHOST_TLS_SERVER_NAME", "CONSUL_TLS_SERVER_NAME"],
            ) {
                Some(name) => PeerName::Fixed(name),
                None => PeerName::Dialled,
            },
            min_version: MinVersion::default(),
        };
        let wanted = settings.has_ca() || settings.cert_file.is_some();
        wanted.then_some(settings)
    }

    /// A client for the server: with TLS when a CA or client certificate is given
    /// (their files read now, errors naming the flag), with the token on every request.
    pub fn client(&self) -> Result<RpcClient, String> {
        let client = match self.tls_settings() {
            Some(settings) => {
                let tls: Arc<Tls> =
                    Tls::load("-ca-file/-client-cert", settings).map_err(|e| e.to_string())?;
                RpcClient::with_tls(&tls).map_err(|e| e.to_string())?
            }
            None => RpcClient::new(),
        };
        Ok(client.with_token(self.token()))
    }
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.addr())
    }
}
