//! The checks a peer's certificate must pass, and this side's certificate, read from the
//! current files of a [`Tls`] at every handshake (so a reload needs no new configuration).
//!
//! Chains are checked by rustls' WebPKI verifiers, built over the current CA at each
//! handshake; the name as the settings' [`PeerName`] says: a fixed name on both sides, the
//! dialled name, or (the server port without `verify_server_hostname`, as Consul) none.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

use super::{PeerName, Tls};

/// The handshake-signature checks of both verifiers: the role's crypto provider's.
macro_rules! signatures_by_the_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0
                .provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// This side's current certificate, for both listeners and clients.
#[derive(Debug)]
pub(super) struct OwnCert(pub(super) Arc<Tls>);

impl ResolvesServerCert for OwnCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current().key.clone()
    }
}

impl ResolvesClientCert for OwnCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.current().key.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.current().key.is_some()
    }
}

/// Whether `cert` is valid for `name` (its subject alternative names).
fn valid_for(cert: &CertificateDer<'_>, name: &str) -> Result<(), Error> {
    let not_valid = || Error::InvalidCertificate(CertificateError::NotValidForName);
    let name = ServerName::try_from(name).map_err(|_| not_valid())?;
    let cert = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|_| not_valid())
}

fn is_name_error(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

/// Clients of a listener: with `verify_incoming`, a certificate chaining to the CA is
/// required (and valid for `peer_name`, when set); without, none is asked for.
#[derive(Debug)]
pub(super) struct Clients(pub(super) Arc<Tls>);

impl Clients {
    fn webpki(&self) -> Result<Arc<dyn ClientCertVerifier>, Error> {
        let roots = self.0.current().roots.clone();
        WebPkiClientVerifier::builder_with_provider(roots, self.0.provider.clone())
            .build()
            .map_err(|e| Error::General(format!("{}: no usable CA: {e}", self.0.role)))
    }
}

impl ClientCertVerifier for Clients {
    fn offer_client_auth(&self) -> bool {
        self.0.settings.verify_incoming
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.settings.verify_incoming
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .webpki()?
            .verify_client_cert(end_entity, intermediates, now)?;
        if let PeerName::Fixed(name) = &self.0.settings.peer_name {
            valid_for(end_entity, name)?;
        }
        Ok(verified)
    }

    signatures_by_the_provider!();
}

/// Servers this side connects to: the chain against the CA, then the name.
#[derive(Debug)]
pub(super) struct Servers(pub(super) Arc<Tls>);

impl ServerCertVerifier for Servers {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let roots = self.0.current().roots.clone();
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, self.0.provider.clone())
            .build()
            .map_err(|e| Error::General(format!("{}: no usable CA: {e}", self.0.role)))?;
        match &self.0.settings.peer_name {
            PeerName::Fixed(name) => {
                let name = ServerName::try_from(name.as_str())
                    .map_err(|_| Error::InvalidCertificate(CertificateError::NotValidForName))?;
                webpki.verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
            }
            PeerName::Dialled => webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            PeerName::Any => {
                match webpki.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                ) {
                    Err(e) if is_name_error(&e) => Ok(ServerCertVerified::assertion()),
                    other => other,
                }
            }
        }
    }

    signatures_by_the_provider!();
}
