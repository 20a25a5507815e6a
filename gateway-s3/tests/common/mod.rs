//! Test harness: a gateway over a temporary single-node store, AWS SDK clients for it, raw
//! HTTP/1.1 requests and a small SigV4 signer for requests the SDK will not make.

#![allow(dead_code)]

mod post;
mod presign;

#[allow(unused_imports)]
pub use post::*;

use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use cairn_s3::S3Config;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Access key id every test server knows.
pub const KEY_ID: &str = "AKIACAIRNTEST0000001";
/// Its secret.
pub const SECRET: &str = "cairn-test-secret-key/0123456789abcdefghij";

/// A running gateway over a temporary store.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The store behind it.
    pub client: cairn_client::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    dir: tempfile::TempDir,
}

/// Starts a gateway with the default config.
pub async fn start() -> Server {
    start_with(S3Config::default()).await
}

/// Starts a gateway with `config`.
pub async fn start_with(config: S3Config) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = cairn_client::Client::open_dir(dir.path()).expect("open store");
    client
        .import_key(KEY_ID, SECRET, "test")
        .await
        .expect("import test key");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(cairn_s3::serve(
        listener,
        config,
        client.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        client,
        shutdown: Some(tx),
        task: Some(task),
        dir,
    }
}

impl Server {
    /// An SDK client with the test key, path style, region us-east-1.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        self.s3_as(KEY_ID, SECRET, "us-east-1")
    }

    /// An SDK client with any credentials and signing region.
    pub fn s3_as(&self, id: &str, secret: &str, region: &str) -> aws_sdk_s3::Client {
        self.sdk(id, secret, region, &format!("http://{}", self.addr), true)
    }

    /// An SDK client for `endpoint`, path style or virtual-hosted style.
    pub fn sdk(
        &self,
        id: &str,
        secret: &str,
        region: &str,
        endpoint: &str,
        path_style: bool,
    ) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(id, secret, None, None, "test"))
            .force_path_style(path_style)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The store's data dir.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Asks the gateway to stop and waits for `serve` to return.
    pub async fn stop(self) -> std::io::Result<()> {
        self.stop_keeping_store().await.0
    }

    /// Like [`Server::stop`], but hands back the store's directory so the store stays usable.
    pub async fn stop_keeping_store(mut self) -> (std::io::Result<()>, tempfile::TempDir) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = match self.task.take() {
            Some(task) => task.await.expect("serve task panicked"),
            None => Ok(()),
        };
        (result, self.dir)
    }

    /// Signs a request for the test key (see [`Signer`]).
    pub fn signer(&self) -> Signer {
        Signer {
            key_id: KEY_ID.to_string(),
            secret: SECRET.to_string(),
            region: "us-east-1".to_string(),
        }
    }
}

/// The HTTP status and S3 error code of a failed SDK call.
pub fn error_of<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> (u16, String) {
    let status = e.raw_response().map_or(0, |r| r.status().as_u16());
    (status, e.code().unwrap_or("").to_string())
}

/// Puts an object; returns its version id.
pub async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) -> Option<String> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap()
        .version_id()
        .map(str::to_string)
}

/// Turns versioning on for `bucket`.
pub async fn enable_versioning(s3: &aws_sdk_s3::Client, bucket: &str) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    let enabled = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Enabled)
        .build();
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(enabled)
        .send()
        .await
        .unwrap();
}

/// Where a part of [`multipart_upload`] comes from.
pub enum PartFrom<'a> {
    /// UploadPart of these bytes.
    Bytes(&'a [u8]),
    /// UploadPartCopy of `bytes=first-last` of an object (`None`: all of it).
    Copy(&'a str, Option<(usize, usize)>),
}

/// Makes an upload of `key` from `parts` (part numbers from 1) and completes it.
pub async fn multipart_upload(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    parts: &[PartFrom<'_>],
) {
    let id = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let mut done = Vec::new();
    for (i, make) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let etag = match make {
            PartFrom::Bytes(bytes) => s3
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .part_number(n)
                .body(aws_sdk_s3::primitives::ByteStream::from(bytes.to_vec()))
                .send()
                .await
                .unwrap()
                .e_tag()
                .unwrap()
                .to_string(),
            PartFrom::Copy(source, range) => s3
                .upload_part_copy()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .part_number(n)
                .copy_source(format!("{bucket}/{source}"))
                .set_copy_source_range(range.map(|(a, b)| format!("bytes={a}-{b}")))
                .send()
                .await
                .unwrap()
                .copy_part_result()
                .unwrap()
                .e_tag()
                .unwrap()
                .to_string(),
        };
        done.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n)
                .e_tag(etag)
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// Reads an object (a version of it).
pub async fn read(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Vec<u8> {
    let got = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_string))
        .send()
        .await
        .unwrap();
    got.body.collect().await.unwrap().into_bytes().to_vec()
}

/// Random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

/// Hex MD5.
pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(data))
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A raw HTTP response.
#[derive(Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one HTTP/1.1 request (head lines without the final blank line, then `body`) on a
/// new connection and reads the whole response.
pub async fn raw_request(addr: SocketAddr, head: &str, body: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = head
        .trim_end()
        .replace('\n', "\r\n")
        .replace("\r\r\n", "\r\n");
    request.push_str("\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("read response");
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> RawResponse {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete response head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let raw = &buf[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[(size + 2).min(raw.len())..];
    }
    out
}

/// Sends a presigned request from the SDK over a raw connection, optionally with a body and
/// another Host header.
pub async fn send_presigned(
    addr: SocketAddr,
    presigned: &aws_sdk_s3::presigning::PresignedRequest,
    body: &[u8],
) -> RawResponse {
    let uri: http::Uri = presigned.uri().parse().expect("presigned uri");
    let host = uri.authority().expect("authority").to_string();
    let mut head = format!(
        "{} {} HTTP/1.1\nHost: {host}\nContent-Length: {}\n",
        presigned.method(),
        uri.path_and_query().expect("path").as_str(),
        body.len()
    );
    for (name, value) in presigned.headers() {
        if !name.eq_ignore_ascii_case("host") && !name.eq_ignore_ascii_case("content-length") {
            head.push_str(&format!("{name}: {value}\n"));
        }
    }
    raw_request(addr, &head, body).await
}

type HmacSha256 = Hmac<Sha256>;

pub(crate) fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac key");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `x-amz-date` form of a time: `YYYYMMDDTHHMMSSZ`.
pub fn amz_date(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A SigV4 header signer, for hand-made requests.
pub struct Signer {
    /// Access key id.
    pub key_id: String,
    /// Secret.
    pub secret: String,
    /// Region of the credential scope.
    pub region: String,
}

/// A request signed by [`Signer::sign`].
pub struct Signed {
    /// Request head (request line and headers), ready for [`raw_request`].
    pub head: String,
    /// The seed signature (first chunk signatures chain from it).
    pub signature: String,
    /// `x-amz-date`.
    pub amz_date: String,
    /// Credential scope.
    pub scope: String,
}

impl Signer {
    pub(crate) fn key(&self, date: &str) -> Vec<u8> {
        let k = hmac(format!("AWS4{}", self.secret).as_bytes(), date);
        let k = hmac(&k, &self.region);
        let k = hmac(&k, "s3");
        hmac(&k, "aws4_request")
    }

    /// Signs `method host path?query` with the given extra headers and payload hash
    /// (`path` and `query` must already be URI-encoded, query pairs sorted).
    pub fn sign(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: &str,
        extra: &[(&str, String)],
        payload_hash: &str,
    ) -> Signed {
        self.sign_dated(method, host, path, query, extra, payload_hash, false)
    }

    /// Like [`Signer::sign`]; with `date_header`, the time goes in an HTTP `Date` header
    /// instead of `x-amz-date` (SigV4 accepts either).
    #[allow(clippy::too_many_arguments)]
    pub fn sign_dated(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: &str,
        extra: &[(&str, String)],
        payload_hash: &str,
        date_header: bool,
    ) -> Signed {
        let now = time::OffsetDateTime::now_utc();
        let amz_date = amz_date(now);
        let date = amz_date[..8].to_string();
        let when = if date_header {
            let format = time::format_description::well_known::Rfc2822;
            let text = now.format(&format).expect("rfc 2822 date");
            ("date".to_string(), text.replace("+0000", "GMT"))
        } else {
            ("x-amz-date".to_string(), amz_date.clone())
        };
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), host.into()),
            ("x-amz-content-sha256".into(), payload_hash.into()),
            when,
        ];
        headers.extend(
            extra
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone())),
        );
        headers.sort();
        let canonical_headers: String = headers
            .iter()
            .map(|(n, v)| format!("{n}:{}\n", v.trim()))
            .collect();
        let signed_headers = headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical = format!(
            "{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
        );
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let signature = hex::encode(hmac(&self.key(&date), &to_sign));
        let target = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        let mut head = format!("{method} {target} HTTP/1.1\n");
        for (n, v) in &headers {
            head.push_str(&format!("{n}: {v}\n"));
        }
        head.push_str(&format!(
            "authorization: AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}\n",
            self.key_id
        ));
        Signed {
            head,
            signature,
            amz_date,
            scope,
        }
    }

    /// Encodes `data` as a signed aws-chunked body (chunks of `chunk` bytes) after `seed`.
    pub fn chunked_body(&self, seed: &Signed, data: &[u8], chunk: usize) -> Vec<u8> {
        let key = self.key(&seed.amz_date[..8]);
        let mut previous = seed.signature.clone();
        let mut out = Vec::new();
        let empty_hash = sha256_hex(b"");
        let mut pieces: Vec<&[u8]> = data.chunks(chunk).collect();
        pieces.push(b"");
        for piece in pieces {
            let to_sign = format!(
                "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{previous}\n{empty_hash}\n{}",
                seed.amz_date,
                seed.scope,
                sha256_hex(piece)
            );
            let signature = hex::encode(hmac(&key, &to_sign));
            out.extend_from_slice(
                format!("{:x};chunk-signature={signature}\r\n", piece.len()).as_bytes(),
            );
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
            previous = signature;
        }
        out
    }
}

/// A second access key, created by [`second_key`] in every test that needs one.
pub const KEY2: &str = "AKIACAIRNSECOND00002";
/// Its secret.
pub const SECRET2: &str = "second-secret-key-0123456789abcdefghijk";

/// The AllUsers group's URI in ACLs.
pub const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

/// Imports [`KEY2`] and returns an SDK client signing with it.
pub async fn second_key(server: &Server) -> aws_sdk_s3::Client {
    server
        .client
        .import_key(KEY2, SECRET2, "second")
        .await
        .unwrap();
    server.s3_as(KEY2, SECRET2, "us-east-1")
}

/// An anonymous request (no Authorization header at all) with `body`.
pub async fn anonymous(server: &Server, method: &str, target: &str, body: &[u8]) -> RawResponse {
    let head = format!(
        "{method} {target} HTTP/1.1\nHost: {}\nContent-Length: {}",
        server.addr,
        body.len()
    );
    raw_request(server.addr, &head, body).await
}
