//! TLS for the server port, the HTTPS port and every outgoing call, with rustls.
//!
//! Owns: reading certificates, keys and CAs from PEM files (Consul's `ca_file`, `ca_path`,
//! `cert_file`, `key_file`), the rustls configurations built from them, the checks a peer's
//! certificate must pass, and reloading the files without a restart (SIGHUP).
//!
//! One [`Tls`] serves one role: the server port (`tls.internal_rpc`: mutual TLS, and with
//! `verify_server_hostname` every peer must hold a certificate for
//! `server.<datacenter>.<domain>`, whichever side of the connection it is on), the HTTPS
//! port (`tls.https`), or a command-line client. Its rustls configurations are built once
//! and read the current files through [`Tls::reload`]'s swap, so a reload reaches the
//! listener's next handshake and the pooled client's next connection; connections already
//! open keep the certificates they were made with.
//!
//! Invariant (enforced in `verify.rs`): with `verify_incoming`, no connection without a
//! certificate chaining to the configured CA completes its handshake, so no request byte of
//! it is ever read.

mod verify;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

const TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The oldest TLS version a listener or client accepts (Consul's `tls_min_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinVersion {
    /// `TLSv1_2` (Consul's default).
    #[default]
    Tls12,
    /// `TLSv1_3`.
    Tls13,
}

impl MinVersion {
    /// Consul's spelling (`TLSv1_2`, `TLSv1_3`); `TLSv1_0` and `TLSv1_1` are refused, as
    /// rustls implements neither.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "TLSv1_2" | "tls12" => Ok(MinVersion::Tls12),
            "TLSv1_3" | "tls13" => Ok(MinVersion::Tls13),
            "TLSv1_0" | "TLSv1_1" | "tls10" | "tls11" => Err(format!(
                "{s} is not supported (TLS 1.0 and 1.1 are insecure and not implemented): \
                 use TLSv1_2 or TLSv1_3"
            )),
            other => Err(format!(
                "{other:?} is not a TLS version: use TLSv1_2 or TLSv1_3"
            )),
        }
    }

    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        match self {
            MinVersion::Tls12 => rustls::ALL_VERSIONS,
            MinVersion::Tls13 => TLS13_ONLY,
        }
    }
}

/// Which name a peer's certificate must be valid for, besides chaining to the CA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PeerName {
    /// Any name: the chain is checked, the name is not (the server port without
    /// `verify_server_hostname`, as Consul; clients of a listener without a fixed name).
    #[default]
    Any,
    /// The name the client dialled (a CLI client of `https://host:port`).
    Dialled,
    /// This name, on both sides of a connection: `server.<datacenter>.<domain>` under
    /// `verify_server_hostname` on the server port, `-tls-server-name` for the CLI.
    Fixed(String),
}

/// The files and checks of one TLS role, as the configuration resolved them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// A PEM file of CA certificates.
    pub ca_file: Option<PathBuf>,
    /// A directory of PEM files of CA certificates.
    pub ca_path: Option<PathBuf>,
    /// This side's certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// This side's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Require a certificate from the CA of every connecting client.
    pub verify_incoming: bool,
    /// Check the certificate of every server this side connects to against the CA.
    pub verify_outgoing: bool,
    /// Which name a peer's certificate must be valid for.
    pub peer_name: PeerName,
    /// The oldest TLS version accepted.
    pub min_version: MinVersion,
}

impl TlsSettings {
    /// Whether any CA is configured.
    pub fn has_ca(&self) -> bool {
        self.ca_file.is_some() || self.ca_path.is_some()
    }
}

/// A TLS file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds nothing usable.
    #[error("{key} {path}: {reason}")]
    File {
        /// The configuration key that names it (`tls.internal_rpc.cert_file`, ...).
        key: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The files do not make a usable configuration.
    #[error("{role}: {reason}")]
    Config {
        /// The role (`tls.internal_rpc`, `tls.https`, the CLI).
        role: String,
        /// What is wrong.
        reason: String,
    },
}

/// What the files held when last (re)loaded.
struct Material {
    /// This side's certificate and key, if it has one.
    key: Option<Arc<CertifiedKey>>,
    /// The CA certificates.
    roots: Arc<RootCertStore>,
}

/// One TLS role: its settings, the files' current contents, and rustls configurations that
/// always use the current contents.
pub struct Tls {
    role: String,
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    material: RwLock<Arc<Material>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("role", &self.role)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the files of `settings` for `role` (the configuration stanza, used in errors).
    pub fn load(role: &str, settings: TlsSettings) -> Result<Arc<Tls>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        if let PeerName::Fixed(name) = &settings.peer_name {
            ServerName::try_from(name.clone()).map_err(|e| TlsError::Config {
                role: role.to_string(),
                reason: format!("{name:?} is not a DNS name: {e}"),
            })?;
        }
        let material = read_material(role, &settings, &provider)?;
        Ok(Arc::new(Tls {
            role: role.to_string(),
            settings,
            provider,
            material: RwLock::new(Arc::new(material)),
        }))
    }

    /// Reads the files again. On an error the previous certificates stay in use, and the
    /// error names the file.
    pub fn reload(&self) -> Result<(), TlsError> {
        let material = read_material(&self.role, &self.settings, &self.provider)?;
        *self.material.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(material);
        Ok(())
    }

    /// The role this was loaded for.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The settings this was loaded with.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    fn current(&self) -> Arc<Material> {
        self.material
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The configuration of a listener: this side's certificate, and with
    /// `verify_incoming` a client certificate from the CA (valid for a fixed `peer_name`)
    /// required before any request is read.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(self.settings.min_version.versions())
            .map_err(|e| self.config_error(e.to_string()))?
            .with_client_cert_verifier(Arc::new(verify::Clients(self.clone())))
            .with_cert_resolver(Arc::new(verify::OwnCert(self.clone())));
        Ok(Arc::new(config))
    }

    /// The configuration of a client: the server's certificate checked against the CA and
    /// for `peer_name`, this side's certificate offered when it has one.
    pub fn client_config(self: &Arc<Self>) -> Result<ClientConfig, TlsError> {
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(self.settings.min_version.versions())
            .map_err(|e| self.config_error(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verify::Servers(self.clone())))
            .with_client_cert_resolver(Arc::new(verify::OwnCert(self.clone())));
        Ok(config)
    }

    fn config_error(&self, reason: String) -> TlsError {
        TlsError::Config {
            role: self.role.clone(),
            reason,
        }
    }
}

fn read_material(
    role: &str,
    settings: &TlsSettings,
    provider: &CryptoProvider,
) -> Result<Material, TlsError> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = &settings.ca_file {
        add_roots(&mut roots, &format!("{role}.ca_file"), path)?;
    }
    if let Some(dir) = &settings.ca_path {
        let key = format!("{role}.ca_path");
        let entries = std::fs::read_dir(dir).map_err(|e| file_error(&key, dir, e.to_string()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for path in files {
            add_roots(&mut roots, &key, &path)?;
        }
    }
    let key = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => Some(Arc::new(certified_key(role, cert, key, provider)?)),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(TlsError::Config {
                role: role.to_string(),
                reason: "cert_file and key_file go together: give both or neither".into(),
            });
        }
    };
    Ok(Material {
        key,
        roots: Arc::new(roots),
    })
}

fn file_error(key: &str, path: &Path, reason: String) -> TlsError {
    TlsError::File {
        key: key.to_string(),
        path: path.to_path_buf(),
        reason,
    }
}

/// Adds every certificate of a PEM file to `roots`; a file with none is refused.
fn add_roots(roots: &mut RootCertStore, key: &str, path: &Path) -> Result<(), TlsError> {
    let certs = read_certs(key, path)?;
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| file_error(key, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(())
}

/// Every certificate of a PEM file, in order; a file with none is refused.
fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(key, path, pem_reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(key, path, pem_reason(e)))?;
    if certs.is_empty() {
        return Err(file_error(
            key,
            path,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
        ));
    }
    Ok(certs)
}

fn pem_reason(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        other => format!("not valid PEM: {other:?}"),
    }
}

fn certified_key(
    role: &str,
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let certs = read_certs(&format!("{role}.cert_file"), cert)?;
    let key_name = format!("{role}.key_file");
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        file_error(
            &key_name,
            key,
            match e {
                rustls_pki_types::pem::Error::NoItemsFound => {
                    "no PEM private key (PKCS#8, PKCS#1 or SEC1) in it".into()
                }
                other => pem_reason(other),
            },
        )
    })?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| file_error(&key_name, key, format!("not a usable private key: {e}")))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| TlsError::Config {
        role: role.to_string(),
        reason: format!(
            "{} and {} do not belong together: {e}",
            cert.display(),
            key.display()
        ),
    })?;
    Ok(certified)
}

#[cfg(test)]
mod tests;
