//! TLS on the S3 listener: the certificate and key from PEM, and the per-connection handshake.
//!
//! The handshake runs in each connection's own task, bounded by [`HANDSHAKE_TIMEOUT`], so a
//! slow or broken client never holds up the accept loop. A plain HTTP request sent to the TLS
//! port gets a short 400 telling the client to use `https://` instead of a TLS alert it would
//! show as garbage.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// How long a client may take from connecting to the end of its TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of every TLS connection: the content type of a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// Most bytes of a plain HTTP request read (and dropped) after answering it, so closing the
/// socket with unread data does not reset the connection before the client reads the answer.
const PLAIN_DRAIN_LIMIT: usize = 64 * 1024;

/// The S3 listener's TLS settings: a certificate chain and the private key it was issued for,
/// checked to belong together when loaded. Clients then use `https://`; requests over it see
/// `aws:SecureTransport` "true" in bucket policies. Clones share one configuration.
#[derive(Clone)]
pub struct S3Tls {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for S3Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Tls").finish_non_exhaustive()
    }
}

/// Why a certificate and key cannot serve TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} file {}: {error}", path.display())]
    Read {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a separate cause).
        error: std::io::Error,
    },
    /// PEM that does not parse.
    #[error("{origin} is not valid PEM: {detail}")]
    BadPem {
        /// Where the PEM came from.
        origin: String,
        /// What is wrong with it.
        detail: String,
    },
    /// No `CERTIFICATE` section.
    #[error("{origin} holds no certificate: give a PEM file with the server certificate first (-----BEGIN CERTIFICATE-----), then its intermediates")]
    NoCertificate {
        /// Where the PEM came from.
        origin: String,
    },
    /// No unencrypted private key section.
    #[error("{origin} holds no private key: give an unencrypted PEM key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)")]
    NoKey {
        /// Where the PEM came from.
        origin: String,
    },
    /// The key is not the one the certificate was issued for.
    #[error("the private key in {key} does not belong to the certificate in {cert}: give the key the certificate was issued for")]
    Mismatch {
        /// Where the certificate came from.
        cert: String,
        /// Where the key came from.
        key: String,
    },
    /// rustls refused the certificate or key (an unsupported key type, ...).
    #[error("the certificate in {cert} and key in {key} cannot serve TLS: {error}")]
    Refused {
        /// Where the certificate came from.
        cert: String,
        /// Where the key came from.
        key: String,
        /// What rustls said.
        error: rustls::Error,
    },
}

impl S3Tls {
    /// Loads a PEM certificate chain (the server's certificate first) and its PEM private key
    /// (PKCS#8, RSA or SEC1), and checks that they belong together.
    pub fn from_pem_files(cert_path: &Path, key_path: &Path) -> Result<S3Tls, TlsError> {
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|error| TlsError::Read {
                what,
                path: path.to_path_buf(),
                error,
            })
        };
        let cert = read("certificate", cert_path)?;
        let key = read("key", key_path)?;
        build(
            &cert,
            &cert_path.display().to_string(),
            &key,
            &key_path.display().to_string(),
        )
    }

    /// Like [`S3Tls::from_pem_files`], from PEM text already in memory.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<S3Tls, TlsError> {
        build(cert_pem, "the certificate PEM", key_pem, "the key PEM")
    }

    /// Completes the server side of a TLS handshake on `stream` within [`HANDSHAKE_TIMEOUT`];
    /// a plain HTTP request gets a 400 pointing at `https://` and an error.
    pub(crate) async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        let handshake = async {
            let mut first = [0u8; 1];
            if stream.peek(&mut first).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if first[0] != TLS_HANDSHAKE_RECORD {
                answer_plain_http(stream).await;
                return Err(std::io::Error::other(
                    "plain HTTP on the TLS port: answered 400",
                ));
            }
            acceptor.accept(stream).await
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "TLS handshake not finished in time",
                )
            })?
    }
}

/// Parses the PEM and makes the server configuration; the origins name the PEM in errors.
fn build(
    cert_pem: &[u8],
    cert_origin: &str,
    key_pem: &[u8],
    key_origin: &str,
) -> Result<S3Tls, TlsError> {
    let bad_pem = |origin: &str, e: rustls::pki_types::pem::Error| TlsError::BadPem {
        origin: origin.to_string(),
        detail: e.to_string(),
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(cert_origin, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            origin: cert_origin.to_string(),
        });
    }
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(key) => key,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                origin: key_origin.to_string(),
            })
        }
        Err(e) => return Err(bad_pem(key_origin, e)),
    };
    // ring explicitly (not the process default): the workspace's rustls also has aws-lc
    // compiled in for the SDK, and with two providers there is no default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|error| match error {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::Mismatch {
                    cert: cert_origin.to_string(),
                    key: key_origin.to_string(),
                }
            }
            error => TlsError::Refused {
                cert: cert_origin.to_string(),
                key: key_origin.to_string(),
                error,
            },
        })?;
    // The gateway speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(S3Tls {
        config: Arc::new(config),
    })
}

/// Answers a plain HTTP request on the TLS port with 400 and closes the connection.
async fn answer_plain_http(mut stream: TcpStream) {
    let body = concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "<Error><Code>InvalidRequest</Code>",
        "<Message>this S3 endpoint takes HTTPS only: use https:// in the endpoint URL</Message>",
        "</Error>"
    );
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(response.as_bytes()).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    // Read what the client still sends until it closes: closing with unread bytes would
    // reset the connection, and the client might lose the answer.
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < PLAIN_DRAIN_LIMIT {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn loads_a_matching_certificate_and_key() {
        let (cert, key) = self_signed("localhost");
        let tls = S3Tls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(tls.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn refuses_a_key_of_another_certificate() {
        let (cert, _) = self_signed("localhost");
        let (_, other_key) = self_signed("localhost");
        let err = S3Tls::from_pem(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn names_what_is_missing() {
        let (cert, key) = self_signed("localhost");
        let err = S3Tls::from_pem(key.as_bytes(), key.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let err = S3Tls::from_pem(cert.as_bytes(), cert.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
        let err = S3Tls::from_pem_files(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
