//! `[tls]`, `ports.https` and the handshake timeouts, resolved.
//!
//! The rules: a listener's stanza takes every key it leaves out from `tls.defaults`. The
//! server port is mutual TLS as soon as `tls.internal_rpc` (or `tls.defaults`) names a
//! certificate: it needs a CA, and `verify_incoming` / `verify_outgoing` may be left out
//! (they are on) but not set to false, because the server port carries raft and any
//! process that could connect without a certificate could join or disrupt the cluster.
//! The HTTPS port runs when `ports.https` is set, and needs a certificate; with
//! `verify_incoming` it needs a CA too.

use std::time::Duration;

use super::raw::{RawLimits, RawTls, RawTlsStanza};
use super::{ConfigError, duration_option, invalid};
use crate::tls::{MinVersion, PeerName, TlsSettings};

/// Consul's default for both handshake timeouts.
const HANDSHAKE_DEFAULT: Duration = Duration::from_secs(5);

/// How long a connection may take to complete its TLS handshake, per port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeTimeouts {
    /// `limits.rpc_handshake_timeout` (default 5s).
    pub rpc: Duration,
    /// `limits.https_handshake_timeout` (default 5s).
    pub https: Duration,
}

impl Default for HandshakeTimeouts {
    fn default() -> Self {
        HandshakeTimeouts {
            rpc: HANDSHAKE_DEFAULT,
            https: HANDSHAKE_DEFAULT,
        }
    }
}

/// The handshake timeouts of `[limits]`.
pub(super) fn handshake_timeouts(raw: &RawLimits) -> Result<HandshakeTimeouts, ConfigError> {
    let min = Duration::from_millis(10);
    Ok(HandshakeTimeouts {
        rpc: duration_option(
            "limits.rpc_handshake_timeout",
            raw.rpc_handshake_timeout.as_deref(),
            HANDSHAKE_DEFAULT,
            min,
        )?,
        https: duration_option(
            "limits.https_handshake_timeout",
            raw.https_handshake_timeout.as_deref(),
            HANDSHAKE_DEFAULT,
            min,
        )?,
    })
}

/// A stanza with the keys it leaves out taken from `defaults`.
fn inherit(own: Option<RawTlsStanza>, defaults: &RawTlsStanza) -> RawTlsStanza {
    let own = own.unwrap_or_default();
    RawTlsStanza {
        ca_file: own.ca_file.or_else(|| defaults.ca_file.clone()),
        ca_path: own.ca_path.or_else(|| defaults.ca_path.clone()),
        cert_file: own.cert_file.or_else(|| defaults.cert_file.clone()),
        key_file: own.key_file.or_else(|| defaults.key_file.clone()),
        verify_incoming: own.verify_incoming.or(defaults.verify_incoming),
        verify_outgoing: own.verify_outgoing.or(defaults.verify_outgoing),
        verify_server_hostname: own.verify_server_hostname,
        tls_min_version: own
            .tls_min_version
            .or_else(|| defaults.tls_min_version.clone()),
    }
}

/// `tls_min_version`, whose full key is `key`.
fn min_version(key: &'static str, raw: &RawTlsStanza) -> Result<MinVersion, ConfigError> {
    match &raw.tls_min_version {
        None => Ok(MinVersion::default()),
        Some(v) => MinVersion::parse(v).map_err(|e| invalid(key, e)),
    }
}

/// The TLS of the server port and of the HTTPS port (`https_port`: whether `ports.https`
/// is set), each `None` when off.
pub(super) fn resolve(
    raw: Option<RawTls>,
    datacenter: &str,
    domain: &str,
    https_port: bool,
) -> Result<(Option<TlsSettings>, Option<TlsSettings>), ConfigError> {
    let raw = raw.unwrap_or_default();
    let defaults = raw.defaults.unwrap_or_default();
    if defaults.verify_server_hostname.is_some() {
        return Err(invalid(
            "tls.defaults.verify_server_hostname",
            "only tls.internal_rpc takes it (it is about servers' names)",
        ));
    }
    if raw
        .https
        .as_ref()
        .is_some_and(|h| h.verify_server_hostname.is_some())
    {
        return Err(invalid(
            "tls.https.verify_server_hostname",
            "only tls.internal_rpc takes it (it is about servers' names)",
        ));
    }
    let rpc = internal_rpc(inherit(raw.internal_rpc, &defaults), datacenter, domain)?;
    let https = if https_port {
        Some(https_stanza(inherit(raw.https, &defaults))?)
    } else {
        None
    };
    Ok((rpc, https))
}

fn internal_rpc(
    raw: RawTlsStanza,
    datacenter: &str,
    domain: &str,
) -> Result<Option<TlsSettings>, ConfigError> {
    let asked = raw.cert_file.is_some()
        || raw.key_file.is_some()
        || raw.verify_incoming == Some(true)
        || raw.verify_outgoing == Some(true)
        || raw.verify_server_hostname == Some(true);
    if !asked {
        return Ok(None);
    }
    if raw.cert_file.is_none() || raw.key_file.is_none() {
        return Err(invalid(
            "tls.internal_rpc.cert_file",
            "the server port is mutual TLS once configured: give cert_file and key_file \
             (in tls.internal_rpc or tls.defaults)",
        ));
    }
    if raw.ca_file.is_none() && raw.ca_path.is_none() {
        return Err(invalid(
            "tls.internal_rpc.ca_file",
            "the server port checks every peer's certificate: give ca_file or ca_path \
             (in tls.internal_rpc or tls.defaults)",
        ));
    }
    for (key, value) in [
        ("tls.internal_rpc.verify_incoming", raw.verify_incoming),
        ("tls.internal_rpc.verify_outgoing", raw.verify_outgoing),
    ] {
        if value == Some(false) {
            return Err(invalid(
                key,
                "false is not supported: the server port carries raft, and a peer without a \
                 certificate from the CA could join or disrupt the cluster; leave it out or \
                 set it to true",
            ));
        }
    }
    let peer_name = if raw.verify_server_hostname == Some(true) {
        PeerName::Fixed(format!("server.{datacenter}.{domain}"))
    } else {
        PeerName::Any
    };
    Ok(Some(TlsSettings {
        min_version: min_version("tls.internal_rpc.tls_min_version", &raw)?,
        ca_file: raw.ca_file,
        ca_path: raw.ca_path,
        cert_file: raw.cert_file,
        key_file: raw.key_file,
        verify_incoming: true,
        verify_outgoing: true,
        peer_name,
    }))
}

fn https_stanza(raw: RawTlsStanza) -> Result<TlsSettings, ConfigError> {
    if raw.cert_file.is_none() || raw.key_file.is_none() {
        return Err(invalid(
            "tls.https.cert_file",
            "ports.https is set: give cert_file and key_file (in tls.https or tls.defaults)",
        ));
    }
    let verify_incoming = raw.verify_incoming.unwrap_or(false);
    if verify_incoming && raw.ca_file.is_none() && raw.ca_path.is_none() {
        return Err(invalid(
            "tls.https.ca_file",
            "verify_incoming checks clients' certificates: give ca_file or ca_path",
        ));
    }
    Ok(TlsSettings {
        min_version: min_version("tls.https.tls_min_version", &raw)?,
        ca_file: raw.ca_file,
        ca_path: raw.ca_path,
        cert_file: raw.cert_file,
        key_file: raw.key_file,
        verify_incoming,
        verify_outgoing: raw.verify_outgoing.unwrap_or(false),
        peer_name: PeerName::Any,
    })
}
