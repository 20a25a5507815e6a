//! Authentication and the HTTP layer: presigned URLs, bad keys and signatures, anonymous
//! requests, regions, streaming (aws-chunked) bodies, payload hashes, virtual-hosted style,
//! oversized headers, request ids and graceful shutdown.

mod common;

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use cairn_s3::S3Config;
use common::*;

fn presigning() -> PresigningConfig {
    PresigningConfig::expires_in(Duration::from_secs(300)).unwrap()
}

#[tokio::test]
async fn presigned_get_and_put() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("pre").send().await.unwrap();

    let put = s3
        .put_object()
        .bucket("pre")
        .key("up/loaded.txt")
        .presigned(presigning())
        .await
        .unwrap();
    let resp = send_presigned(server.addr, &put, b"presigned body").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("etag"),
        Some(format!("\"{}\"", md5_hex(b"presigned body")).as_str())
    );

    let get = s3
        .get_object()
        .bucket("pre")
        .key("up/loaded.txt")
        .presigned(presigning())
        .await
        .unwrap();
    let resp = send_presigned(server.addr, &get, b"").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.body, b"presigned body");

    // A tampered signature fails.
    let bad = server.s3_as(KEY_ID, "wrong-secret", "us-east-1");
    let get = bad
        .get_object()
        .bucket("pre")
        .key("up/loaded.txt")
        .presigned(presigning())
        .await
        .unwrap();
    let resp = send_presigned(server.addr, &get, b"").await;
    assert_eq!(resp.status, 403);
    assert!(
        resp.text().contains("<Code>SignatureDoesNotMatch</Code>"),
        "{}",
        resp.text()
    );

    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_credentials_and_anonymous_requests() {
    let server = start().await;
    server
        .s3()
        .create_bucket()
        .bucket("auth")
        .send()
        .await
        .unwrap();

    let wrong_secret = server.s3_as(KEY_ID, "not-the-secret", "us-east-1");
    let e = wrong_secret.list_buckets().send().await.unwrap_err();
    assert_eq!(error_of(&e), (403, "SignatureDoesNotMatch".into()));

    let unknown = server.s3_as("AKIAUNKNOWNKEY000000", "whatever", "us-east-1");
    let e = unknown.list_buckets().send().await.unwrap_err();
    assert_eq!(error_of(&e), (403, "InvalidAccessKeyId".into()));

    let resp = raw_request(server.addr, "GET /auth HTTP/1.1\nHost: 127.0.0.1", b"").await;
    assert_eq!(resp.status, 403);
    assert!(
        resp.text().contains("<Code>AccessDenied</Code>"),
        "{}",
        resp.text()
    );

    // Any region is accepted when none is configured.
    let elsewhere = server.s3_as(KEY_ID, SECRET, "ap-south-2");
    elsewhere.head_bucket().bucket("auth").send().await.unwrap();

    server.stop().await.unwrap();
}

#[tokio::test]
async fn configured_region_is_enforced() {
    let server = start_with(S3Config {
        region: Some("eu-central-1".into()),
        ..S3Config::default()
    })
    .await;
    let good = server.s3_as(KEY_ID, SECRET, "eu-central-1");
    good.create_bucket()
        .bucket("regional")
        .send()
        .await
        .unwrap();
    let loc = good
        .get_bucket_location()
        .bucket("regional")
        .send()
        .await
        .unwrap();
    assert_eq!(
        loc.location_constraint().map(|l| l.as_str()),
        Some("eu-central-1")
    );

    let wrong = server.s3_as(KEY_ID, SECRET, "us-east-1");
    let e = wrong
        .head_bucket()
        .bucket("regional")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 400);
    let e = wrong.list_buckets().send().await.unwrap_err();
    assert_eq!(error_of(&e), (400, "AuthorizationHeaderMalformed".into()));

    server.stop().await.unwrap();
}

#[tokio::test]
async fn streaming_bodies_and_payload_hashes() {
    let server = start().await;
    server
        .s3()
        .create_bucket()
        .bucket("chunks")
        .send()
        .await
        .unwrap();
    let signer = server.signer();
    let host = server.addr.to_string();
    let data = random_bytes(200_000);

    // Signed aws-chunked upload, 64 KiB chunks.
    let encoded_len = signer
        .chunked_body(
            &signer.sign("PUT", &host, "/x", "", &[], "x"),
            &data,
            65_536,
        )
        .len();
    let extra = [
        ("content-encoding", "aws-chunked".to_string()),
        ("content-length", encoded_len.to_string()),
        ("x-amz-decoded-content-length", data.len().to_string()),
    ];
    let seed = signer.sign(
        "PUT",
        &host,
        "/chunks/streamed",
        "",
        &extra,
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    );
    let body = signer.chunked_body(&seed, &data, 65_536);
    assert_eq!(body.len(), encoded_len);
    let resp = raw_request(server.addr, &seed.head, &body).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("etag"),
        Some(format!("\"{}\"", md5_hex(&data)).as_str())
    );
    let got = server
        .s3()
        .get_object()
        .bucket("chunks")
        .key("streamed")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_length(), Some(data.len() as i64));
    assert_eq!(
        &got.body.collect().await.unwrap().into_bytes()[..],
        &data[..]
    );

    // A chunk whose signature does not match stores nothing.
    let seed = signer.sign(
        "PUT",
        &host,
        "/chunks/tampered",
        "",
        &extra,
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    );
    let mut body = signer.chunked_body(&seed, &data, 65_536);
    let first_data = body.iter().position(|&b| b == b'\n').unwrap() + 1;
    body[first_data + 10] ^= 0xff;
    let resp = raw_request(server.addr, &seed.head, &body).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert!(
        resp.text().contains("<Code>SignatureDoesNotMatch</Code>"),
        "{}",
        resp.text()
    );
    let e = server
        .s3()
        .head_object()
        .bucket("chunks")
        .key("tampered")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 404);

    // A body that does not match its signed SHA-256 stores nothing.
    let signed = signer.sign(
        "PUT",
        &host,
        "/chunks/hashed",
        "",
        &[("content-length", "5".into())],
        &sha256_hex(b"hello"),
    );
    let resp = raw_request(server.addr, &signed.head, b"HELLO").await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(
        resp.text()
            .contains("<Code>XAmzContentSHA256Mismatch</Code>"),
        "{}",
        resp.text()
    );
    let e = server
        .s3()
        .head_object()
        .bucket("chunks")
        .key("hashed")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 404);

    // Malformed XML in a signed request.
    let garbage = b"<CompleteMultipartUpload><Part>";
    let upload = server
        .s3()
        .create_multipart_upload()
        .bucket("chunks")
        .key("mp")
        .send()
        .await
        .unwrap();
    let query = format!("uploadId={}", upload.upload_id().unwrap());
    let signed = signer.sign(
        "POST",
        &host,
        "/chunks/mp",
        &query,
        &[("content-length", garbage.len().to_string())],
        &sha256_hex(garbage),
    );
    let resp = raw_request(server.addr, &signed.head, garbage).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(
        resp.text().contains("<Code>MalformedXML</Code>"),
        "{}",
        resp.text()
    );

    server.stop().await.unwrap();
}

#[tokio::test]
async fn virtual_hosted_style() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("vhost").send().await.unwrap();
    s3.put_object()
        .bucket("vhost")
        .key("dir/obj")
        .body(ByteStream::from_static(b"virtual"))
        .send()
        .await
        .unwrap();

    let port = server.addr.port();
    let endpoint = format!("http://localhost:{port}");
    let vh = server.sdk(KEY_ID, SECRET, "us-east-1", &endpoint, false);

    let get = vh
        .get_object()
        .bucket("vhost")
        .key("dir/obj")
        .presigned(presigning())
        .await
        .unwrap();
    assert!(
        get.uri()
            .starts_with(&format!("http://vhost.localhost:{port}/dir/obj")),
        "{}",
        get.uri()
    );
    let resp = send_presigned(server.addr, &get, b"").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.body, b"virtual");

    // The bucket really comes from the Host header.
    let get = vh
        .get_object()
        .bucket("nosuchbucket")
        .key("dir/obj")
        .presigned(presigning())
        .await
        .unwrap();
    let resp = send_presigned(server.addr, &get, b"").await;
    assert_eq!(resp.status, 404);
    assert!(
        resp.text().contains("<Code>NoSuchBucket</Code>"),
        "{}",
        resp.text()
    );

    // Signed listing on the bucket host.
    let signed = server.signer().sign(
        "GET",
        &format!("vhost.localhost:{port}"),
        "/",
        "list-type=2",
        &[],
        &sha256_hex(b""),
    );
    let resp = raw_request(server.addr, &signed.head, b"").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        resp.text().contains("<Key>dir/obj</Key>"),
        "{}",
        resp.text()
    );

    // Path style with a host name works too.
    let signed = server.signer().sign(
        "GET",
        &format!("localhost:{port}"),
        "/vhost/dir/obj",
        "",
        &[],
        &sha256_hex(b""),
    );
    let resp = raw_request(server.addr, &signed.head, b"").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.body, b"virtual");

    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_headers_are_refused_and_serving_goes_on() {
    let server = start().await;
    let huge = "a".repeat(100 * 1024);
    let resp = raw_request(
        server.addr,
        &format!("GET / HTTP/1.1\nHost: 127.0.0.1\nX-Huge: {huge}"),
        b"",
    )
    .await;
    assert_eq!(resp.status, 431);

    let listed = server.s3().list_buckets().send().await.unwrap();
    assert!(listed.buckets().is_empty());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn request_ids_are_unique() {
    let server = start().await;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..5 {
        let resp = raw_request(server.addr, "GET / HTTP/1.1\nHost: 127.0.0.1", b"").await;
        let id = resp
            .header("x-amz-request-id")
            .expect("request id")
            .to_string();
        assert!(ids.insert(id), "ids repeat");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("slow").send().await.unwrap();

    // Start an upload whose body arrives slowly, then ask for shutdown mid-body.
    let data = random_bytes(64 * 1024);
    let signed = server.signer().sign(
        "PUT",
        &server.addr.to_string(),
        "/slow/obj",
        "",
        &[("content-length", data.len().to_string())],
        &sha256_hex(&data),
    );
    let addr = server.addr;
    let (first, second) = data.split_at(1000);
    let (first, second) = (first.to_vec(), second.to_vec());
    let upload = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = signed.head.replace('\n', "\r\n") + "\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream.write_all(&second).await.unwrap();
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = server.client.clone();
    let (stopped, _dir) =
        tokio::time::timeout(Duration::from_secs(15), server.stop_keeping_store())
            .await
            .expect("shutdown within the grace period");
    assert!(stopped.is_ok());
    let response = upload.await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let head = client
        .head_object("slow", "obj", &cairn_client::VersionSel::Current)
        .await
        .unwrap();
    assert_eq!(head.manifest.size, data.len() as u64);

    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
