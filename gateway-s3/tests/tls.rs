//! HTTPS on the S3 listener: the AWS SDK over TLS trusting a test CA, `aws:SecureTransport` in
//! bucket policies on a TLS and a plain listener over one store, ALPN, and clients that do not
//! finish (or never start) a TLS handshake.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use cairn_s3::{S3Config, S3Tls};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1.
struct TestPki {
    /// The CA certificate, which clients trust.
    ca_pem: String,
    /// The server certificate.
    cert_pem: String,
    /// Its private key (PKCS#8).
    key_pem: String,
}

impl TestPki {
    fn new() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose, SanType,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "cairn test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert_pem = leaf.signed_by(&key, &issuer).unwrap().pem();
        TestPki {
            ca_pem,
            cert_pem,
            key_pem: key.serialize_pem(),
        }
    }

    fn server_tls(&self) -> S3Tls {
        S3Tls::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }
}

/// Starts a gateway with TLS on a new store.
async fn start_tls(pki: &TestPki) -> Server {
    start_with(S3Config {
        tls: Some(pki.server_tls()),
        ..S3Config::default()
    })
    .await
}

/// An SDK client for `https://addr` (path style) that trusts only the test CA, signing with
/// `id`.
fn https_sdk(addr: SocketAddr, ca_pem: &str, id: &str, secret: &str) -> aws_sdk_s3::Client {
    use aws_smithy_http_client::tls::TrustStore;
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider, TlsContext};
    let trust = TrustStore::empty().with_pem_certificate(ca_pem.as_bytes());
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .unwrap(),
        )
        .build_https();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("https://{addr}"))
        .credentials_provider(Credentials::new(id, secret, None, None, "test"))
        .force_path_style(true)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .http_client(http)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A second, plain-HTTP gateway over the same store as `server`.
struct PlainBeside {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl PlainBeside {
    async fn start(server: &Server) -> PlainBeside {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(cairn_s3::serve(
            listener,
            S3Config::default(),
            server.client.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        PlainBeside { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A TLS connection (ring, offering h2 and http/1.1) to `addr` trusting `ca_pem`.
async fn tls_connect(addr: SocketAddr, ca_pem: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

fn deny_insecure_policy(bucket: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Sid":"tls-only","Effect":"Deny","Principal":"*","Action":"s3:*",
              "Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"],
              "Condition":{{"Bool":{{"aws:SecureTransport":"false"}}}}}},
            {{"Sid":"second-reads-over-tls","Effect":"Allow",
              "Principal":{{"AWS":["arn:aws:iam::000000000000:user/{KEY2}"]}},
              "Action":"s3:GetObject","Resource":"arn:aws:s3:::{bucket}/*",
              "Condition":{{"Bool":{{"aws:SecureTransport":"true"}}}}}}]}}"#
    )
}

#[tokio::test]
async fn sdk_round_trips_objects_over_https() {
    let pki = TestPki::new();
    let server = start_tls(&pki).await;
    let s3 = https_sdk(server.addr, &pki.ca_pem, KEY_ID, SECRET);
    s3.create_bucket().bucket("tls").send().await.unwrap();
    // Large enough to take many TLS records each way.
    let body = random_bytes(3 * 1024 * 1024 + 17);
    s3.put_object()
        .bucket("tls")
        .key("big.bin")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(read(&s3, "tls", "big.bin", None).await, body);
    let head = s3
        .head_object()
        .bucket("tls")
        .key("big.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(body.len() as i64));
    let listed = s3.list_objects_v2().bucket("tls").send().await.unwrap();
    assert_eq!(listed.contents().len(), 1);

    // A client that trusts another CA refuses the server's certificate.
    let untrusting = https_sdk(server.addr, &TestPki::new().ca_pem, KEY_ID, SECRET);
    untrusting.list_buckets().send().await.unwrap_err();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn secure_transport_is_true_on_the_tls_listener_and_false_on_the_plain_one() {
    let pki = TestPki::new();
    let server = start_tls(&pki).await;
    let plain = PlainBeside::start(&server).await;
    let tls_owner = https_sdk(server.addr, &pki.ca_pem, KEY_ID, SECRET);
    let plain_owner = server.sdk(
        KEY_ID,
        SECRET,
        "us-east-1",
        &format!("http://{}", plain.addr),
        true,
    );
    second_key(&server).await;
    let tls_second = https_sdk(server.addr, &pki.ca_pem, KEY2, SECRET2);
    let plain_second = server.sdk(
        KEY2,
        SECRET2,
        "us-east-1",
        &format!("http://{}", plain.addr),
        true,
    );

    tls_owner
        .create_bucket()
        .bucket("secure")
        .send()
        .await
        .unwrap();
    // Before the policy both listeners serve the same store.
    put(&plain_owner, "secure", "before", b"plain write").await;
    assert_eq!(
        read(&tls_owner, "secure", "before", None).await,
        b"plain write"
    );
    tls_owner
        .put_bucket_policy()
        .bucket("secure")
        .policy(deny_insecure_policy("secure"))
        .send()
        .await
        .unwrap();

    // Over TLS the Deny does not apply and the conditional Allow does.
    put(&tls_owner, "secure", "k", b"over tls").await;
    assert_eq!(read(&tls_owner, "secure", "k", None).await, b"over tls");
    assert_eq!(read(&tls_second, "secure", "k", None).await, b"over tls");

    // Over plain HTTP the same policy refuses everyone, owner included.
    let e = plain_owner
        .get_object()
        .bucket("secure")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    let e = plain_owner
        .put_object()
        .bucket("secure")
        .key("k2")
        .body(ByteStream::from_static(b"plain"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    let e = plain_owner
        .list_objects_v2()
        .bucket("secure")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    let e = plain_second
        .get_object()
        .bucket("secure")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    // The refused write left nothing behind.
    let listed = tls_owner
        .list_objects_v2()
        .bucket("secure")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["before", "k"]);

    plain.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn tls_listener_negotiates_http1_whatever_the_client_offers() {
    let pki = TestPki::new();
    let server = start_tls(&pki).await;
    let mut conn = tls_connect(server.addr, &pki.ca_pem).await;
    assert_eq!(conn.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    // An unsigned request over it gets an S3 answer.
    conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(text.contains("AccessDenied"), "{text}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_400_and_the_listener_keeps_serving() {
    let pki = TestPki::new();
    let server = start_tls(&pki).await;
    let s3 = https_sdk(server.addr, &pki.ca_pem, KEY_ID, SECRET);
    s3.create_bucket().bucket("mixed").send().await.unwrap();

    let head = format!("GET /mixed HTTP/1.1\nHost: {}", server.addr);
    let resp = raw_request(server.addr, &head, b"").await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(resp.text().contains("https://"), "{}", resp.text());

    // The SDK pointed at http:// by mistake sees that answer too.
    let e = server.s3().list_buckets().send().await.unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidRequest".into()));

    put(&s3, "mixed", "after", b"still served").await;
    assert_eq!(read(&s3, "mixed", "after", None).await, b"still served");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn stalled_and_broken_handshakes_do_not_hold_up_other_clients() {
    let pki = TestPki::new();
    let server = start_tls(&pki).await;
    let s3 = https_sdk(server.addr, &pki.ca_pem, KEY_ID, SECRET);

    // One client connects and sends nothing; another starts a handshake record and stops.
    let silent = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    // Both are still open while others are served.
    s3.create_bucket().bucket("busy").send().await.unwrap();
    put(&s3, "busy", "k", b"served").await;
    assert_eq!(read(&s3, "busy", "k", None).await, b"served");

    // A handshake record that is not a ClientHello ends that connection only.
    let mut broken = TcpStream::connect(server.addr).await.unwrap();
    broken
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o'])
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), broken.read_to_end(&mut answer))
        .await
        .expect("the server closes a broken handshake");
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    assert_eq!(read(&s3, "busy", "k", None).await, b"served");

    drop((silent, half));
    server.stop().await.unwrap();
}

#[test]
fn certificate_files_are_checked_when_loaded() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    std::fs::write(&other_key, &other.key_pem).unwrap();

    S3Tls::from_pem_files(&cert, &key).unwrap();
    let missing = dir.path().join("missing.pem");
    let e = S3Tls::from_pem_files(&missing, &key).unwrap_err();
    assert!(
        e.to_string().contains("certificate") && e.to_string().contains("missing.pem"),
        "{e}"
    );
    let e = S3Tls::from_pem_files(&cert, &other_key).unwrap_err();
    assert!(
        e.to_string().contains("does not belong to the certificate"),
        "{e}"
    );
    let e = S3Tls::from_pem_files(&key, &key).unwrap_err();
    assert!(e.to_string().contains("holds no certificate"), "{e}");
}
