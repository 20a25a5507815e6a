//! `cairn serve --s3-tls-cert/--s3-tls-key` (and `[s3] tls_cert/tls_key`): the S3 endpoint is
//! printed and served as https://; one file without the other, or a key of another
//! certificate, stops the start with a message saying what to give.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use common::{run_tool, start_with, KEY, SECRET};

/// A test CA's certificate, and files of a server certificate it signed for 127.0.0.1 and
/// `localhost` and of its key.
struct Pki {
    ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path, name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let cert_pem = leaf.signed_by(&key, &issuer).unwrap().pem();
    let (cert, key_file) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    Pki {
        ca_pem,
        cert,
        key: key_file,
    }
}

/// An SDK client for `endpoint` with the test key that trusts only `ca_pem`.
fn https_s3(endpoint: &str, ca_pem: &str) -> aws_sdk_s3::Client {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    use aws_smithy_http_client::tls::{TlsContext, TrustStore};
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
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(KEY, SECRET, None, None, "test"))
        .force_path_style(true)
        .http_client(http)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Runs `cairn ARGS`, which must fail within a minute; returns its stderr.
fn cairn_fails(args: &[&str]) -> String {
    let out = run_tool(env!("CARGO_BIN_EXE_cairn"), args, 60);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "cairn {args:?} succeeded: {stderr}");
    stderr
}

#[tokio::test]
async fn serve_answers_s3_over_https_with_the_given_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = make_pki(tmp.path(), "s3");
    let data = tmp.path().join("data");
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let (mut child, endpoint) = start_with(&data, &["--s3-tls-cert", cert, "--s3-tls-key", key]);
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");

    let s3 = https_s3(&endpoint, &pki.ca_pem);
    s3.create_bucket().bucket("tls").send().await.unwrap();
    s3.put_object()
        .bucket("tls")
        .key("k")
        .body(ByteStream::from_static(b"over https"))
        .send()
        .await
        .unwrap();
    let got = s3.get_object().bucket("tls").key("k").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), b"over https");

    // The same endpoint over plain HTTP is told to use https://.
    let plain = common::s3(&endpoint.replacen("https://", "http://", 1));
    let e = plain.list_buckets().send().await.unwrap_err();
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(400));

    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn serve_refuses_half_a_tls_setup_and_a_key_of_another_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = make_pki(tmp.path(), "s3");
    let other = make_pki(tmp.path(), "other");
    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());

    let err = cairn_fails(&["serve", "--data-dir", data, "--s3-tls-cert", cert]);
    assert!(err.contains("--s3-tls-key"), "{err}");
    let err = cairn_fails(&["serve", "--data-dir", data, "--s3-tls-key", key]);
    assert!(err.contains("--s3-tls-cert"), "{err}");

    let other_key = other.key.to_str().unwrap();
    let err = cairn_fails(&[
        "serve",
        "--data-dir",
        data,
        "--s3-listen",
        "127.0.0.1:0",
        "--s3-tls-cert",
        cert,
        "--s3-tls-key",
        other_key,
    ]);
    assert!(err.contains("does not belong to the certificate"), "{err}");
    let missing = tmp.path().join("missing.pem");
    let err = cairn_fails(&[
        "serve",
        "--data-dir",
        data,
        "--s3-listen",
        "127.0.0.1:0",
        "--s3-tls-cert",
        missing.to_str().unwrap(),
        "--s3-tls-key",
        key,
    ]);
    assert!(err.contains("missing.pem"), "{err}");
    // Nothing was started: the data dir was not even made.
    assert!(!Path::new(data).exists());
}

#[test]
fn node_config_refuses_half_a_tls_setup_and_unreadable_files() {
    let tmp = tempfile::tempdir().unwrap();
    let base = format!(
        "[node]\nname = \"n1\"\ndata_dir = \"{dir}/data\"\ncerts_dir = \"{dir}/certs\"\n\
         [listen]\nrpc = \"127.0.0.1:0\"\n[site]\nreplication_factor = 1\n\
         [[site.nodes]]\nname = \"n1\"\naddress = \"127.0.0.1:7101\"\n",
        dir = tmp.path().display()
    );
    let config = tmp.path().join("n1.toml");
    let config_arg = config.to_str().unwrap();

    std::fs::write(&config, format!("{base}[s3]\ntls_cert = \"/x/s3.pem\"\n")).unwrap();
    let err = cairn_fails(&["serve", "--config", config_arg]);
    assert!(err.contains("[s3] tls_cert needs tls_key"), "{err}");

    let missing = tmp.path().join("missing.pem");
    std::fs::write(
        &config,
        format!(
            "{base}[s3]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            missing.display(),
            missing.display()
        ),
    )
    .unwrap();
    let err = cairn_fails(&["serve", "--config", config_arg]);
    assert!(
        err.contains("[s3] tls_cert and tls_key") && err.contains("missing.pem"),
        "{err}"
    );
}
