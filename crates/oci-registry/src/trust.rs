//! The certificates a registry's (or a token server's, or a redirect target's) TLS certificate
//! is checked against: webpki's roots, the system's trust store and the user's CA files.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Verifies certificates the way rustls's own verifier does, against roots gathered at the
/// first TLS handshake instead of when the client is made.
///
/// Why: the system's trust store is hundreds of files (`/etc/ssl/certs` and the bundle made
/// of them), a few milliseconds to read and parse, and most commands that talk to a local
/// registry over plain HTTP never make a TLS connection. The user's CA files are still read,
/// and their errors reported, when the client is made.
pub(crate) struct LazyRoots {
    provider: Arc<CryptoProvider>,
    /// The certificates of the user's CA files, already parsed.
    user_roots: RootCertStore,
    verifier: OnceLock<Result<Arc<WebPkiServerVerifier>, String>>,
}

impl LazyRoots {
    pub(crate) fn new(provider: Arc<CryptoProvider>, user_roots: RootCertStore) -> Self {
        Self {
            provider,
            user_roots,
            verifier: OnceLock::new(),
        }
    }

    /// Whether the roots were gathered (a TLS handshake asked for them).
    #[cfg(test)]
    fn loaded(&self) -> bool {
        self.verifier.get().is_some()
    }

    fn verifier(&self) -> Result<&Arc<WebPkiServerVerifier>, rustls::Error> {
        self.verifier
            .get_or_init(|| {
                let mut roots = self.user_roots.clone();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                add_system_roots(&mut roots);
                WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&self.provider),
                )
                .build()
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|reason| rustls::Error::General(format!("no certificates to trust: {reason}")))
    }
}

/// Adds the system's trust store. Each certificate once: on Debian the bundle
/// (`ca-certificates.crt`) and the directory hold the same ones, and parsing is the cost.
fn add_system_roots(roots: &mut RootCertStore) {
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "cannot read part of the system's trust store");
    }
    let mut seen = HashSet::new();
    let mut rejected = 0usize;
    for certificate in &native.certs {
        if seen.insert(certificate.as_ref()) && roots.add(certificate.clone()).is_err() {
            rejected += 1;
        }
    }
    tracing::debug!(
        certificates = seen.len(),
        rejected,
        "system trust store loaded"
    );
}

impl std::fmt::Debug for LazyRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyRoots")
            .field("user_roots", &self.user_roots.len())
            .field("loaded", &self.verifier.get().is_some())
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for LazyRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    // Signatures are checked after the certificate (in TLS 1.2 and 1.3 alike), so by the
    // verifier the certificate check built.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls13_signature(message, cert, dss)
    }

    // Asked before any certificate arrives (in the first message), so from the provider: the
    // same list the verifier gives.
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A verifier that accepts any certificate, for registries the user named as insecure; the
/// handshake's signatures are still checked, so the connection is at least to the holder of
/// the key the certificate names.
#[derive(Debug)]
pub(crate) struct AcceptAnyCertificate(pub(crate) Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roots_are_gathered_at_the_first_certificate_checked() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = LazyRoots::new(provider, RootCertStore::empty());
        assert!(!roots.loaded(), "nothing read before a handshake");
        let not_a_certificate = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        let name = ServerName::try_from("registry.example").unwrap();
        let error = roots
            .verify_server_cert(&not_a_certificate, &[], &name, &[], UnixTime::now())
            .expect_err("garbage is not a certificate");
        assert!(roots.loaded());
        assert!(
            matches!(error, rustls::Error::InvalidCertificate(_)),
            "{error:?}"
        );
    }
}
