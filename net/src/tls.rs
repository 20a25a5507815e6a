//! rustls and quinn configurations for mutual TLS under a site CA.
//!
//! Both sides use the ring provider explicitly (never the process default, which another crate
//! in the same binary may have set to something else), TLS 1.3 only, and the site CA as their
//! only root: a server requires a client certificate signed by it, and a client checks the
//! server's certificate against it and the node name it meant to reach.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::NetError;
use crate::identity::NodeIdentity;

/// The ALPN protocol name of Cairn's RPC; a peer offering anything else is refused.
pub const ALPN: &[u8] = b"cairn-rpc/1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(e: impl std::fmt::Display) -> NetError {
    NetError::Cert(e.to_string())
}

fn roots(identity: &NodeIdentity) -> Result<Arc<RootCertStore>, NetError> {
    let mut roots = RootCertStore::empty();
    for ca in identity.roots()? {
        roots.add(ca).map_err(tls_err)?;
    }
    Ok(Arc::new(roots))
}

/// Whether `cert` (a peer's end-entity certificate, DER) chains to the CA `ca_pem` alone: which
/// of several trusted sites a caller belongs to.
pub fn signed_by(cert: &CertificateDer<'_>, ca_pem: &str) -> bool {
    let Ok(ca) = CertificateDer::from_pem_slice(ca_pem.as_bytes()) else {
        return false;
    };
    let mut roots = RootCertStore::empty();
    if roots.add(ca).is_err() {
        return false;
    }
    let Ok(verifier) =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()
    else {
        return false;
    };
    verifier
        .verify_client_cert(cert, &[], UnixTime::now())
        .is_ok()
}

fn client_verifier(identity: &NodeIdentity) -> Result<Arc<dyn ClientCertVerifier>, NetError> {
    // The builder's default requires a certificate: anonymous clients are refused.
    WebPkiClientVerifier::builder_with_provider(roots(identity)?, provider())
        .build()
        .map_err(tls_err)
}

/// The rustls server configuration of a node: presents its certificate, requires a client
/// certificate from the site CA.
pub fn rustls_server_config(identity: &NodeIdentity) -> Result<rustls::ServerConfig, NetError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(client_verifier(identity)?)
        .with_single_cert(identity.cert_chain()?, identity.key()?)
        .map_err(tls_err)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// The rustls client configuration of a node: presents its certificate, accepts only servers
/// with a certificate from the site CA (the name is checked per connection) or, for an
/// identity trusting other sites, from one of their CAs; such an identity accepts a server of
/// another site under any node name (a site link dials an address, and the CA it trusts for
/// that site is what authenticates the server).
pub fn rustls_client_config(identity: &NodeIdentity) -> Result<rustls::ClientConfig, NetError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?;
    let builder = if identity.trusted().is_empty() {
        builder.with_root_certificates(roots(identity)?)
    } else {
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots(identity)?,
            provider(),
        )
        .build()
        .map_err(tls_err)?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyNodeName(verifier)))
    };
    let mut cfg = builder
        .with_client_auth_cert(identity.cert_chain()?, identity.key()?)
        .map_err(tls_err)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// A server verifier that checks the chain to the trusted roots as WebPKI does but accepts
/// any name in a certificate that chains: the name check comes after the chain check, so a
/// name mismatch means the chain was good.
#[derive(Debug)]
struct AnyNodeName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyNodeName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The quinn server configuration for `identity` with `transport`.
pub fn quic_server_config(
    identity: &NodeIdentity,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ServerConfig, NetError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(rustls_server_config(identity)?)
        .map_err(tls_err)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport);
    Ok(cfg)
}

/// The quinn client configuration for `identity` with `transport`.
pub fn quic_client_config(
    identity: &NodeIdentity,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, NetError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(rustls_client_config(identity)?)
        .map_err(tls_err)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport);
    Ok(cfg)
}

/// Checks that `identity`'s certificate chains to its CA both as a client and as the server
/// named after the node, and that its key matches: what every peer will check at handshake.
pub(crate) fn check_chains(identity: &NodeIdentity) -> Result<(), NetError> {
    let chain = identity.cert_chain()?;
    let (end, rest) = chain
        .split_first()
        .ok_or_else(|| NetError::Cert("node certificate: no certificate".into()))?;
    let now = UnixTime::now();
    client_verifier(identity)?
        .verify_client_cert(end, rest, now)
        .map_err(|e| NetError::Cert(format!("node certificate is not valid under ca.pem: {e}")))?;
    let name = ServerName::try_from(identity.node().to_string()).map_err(tls_err)?;
    rustls::client::WebPkiServerVerifier::builder_with_provider(roots(identity)?, provider())
        .build()
        .map_err(tls_err)?
        .verify_server_cert(end, rest, &name, &[], now)
        .map_err(|e| NetError::Cert(format!("node certificate does not name its node: {e}")))?;
    // Building a server configuration checks that the key belongs to the certificate.
    rustls_server_config(identity).map(|_| ())
}
