//! HTTP-level behaviours that must match S3: presigned URL expiry, SigV4 with a `Date` header,
//! aws-chunked bodies without Content-Length, request ids in error bodies and browser POST
//! uploads (`${filename}`, tagging, checksums, signatures, policy expiration, redirects).

mod common;

use common::*;

/// A raw GET of `target` on the test server.
async fn raw_get(server: &Server, target: &str) -> RawResponse {
    let head = format!("GET {target} HTTP/1.1\nHost: {}", server.addr);
    raw_request(server.addr, &head, b"").await
}

#[tokio::test]
async fn presigned_urls_longer_than_a_week_are_refused() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("pre").send().await.unwrap();
    put(&s3, "pre", "k", b"data").await;
    let host = server.addr.to_string();
    let now = time::OffsetDateTime::now_utc();
    let ok = server
        .signer()
        .presign("GET", &host, "/pre/k", now, 604_800);
    let resp = raw_get(&server, &ok).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let too_long = server
        .signer()
        .presign("GET", &host, "/pre/k", now, 604_801);
    let resp = raw_get(&server, &too_long).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(code_of(&resp), "AuthorizationQueryParametersError");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn expired_presigned_urls_are_access_denied() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("pre").send().await.unwrap();
    put(&s3, "pre", "k", b"data").await;
    let host = server.addr.to_string();
    let then = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let url = server.signer().presign("GET", &host, "/pre/k", then, 60);
    let resp = raw_get(&server, &url).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(code_of(&resp), "AccessDenied");
    assert!(
        resp.text().contains("Request has expired"),
        "{}",
        resp.text()
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sigv4_accepts_a_date_header_instead_of_x_amz_date() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("dated").send().await.unwrap();
    put(&s3, "dated", "k", b"dated body").await;
    let host = server.addr.to_string();
    let empty = sha256_hex(b"");
    let signed = server
        .signer()
        .sign_dated("GET", &host, "/dated/k", "", &[], &empty, true);
    assert!(!signed.head.contains("x-amz-date"));
    let resp = raw_request(server.addr, &signed.head, b"").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.body, b"dated body");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn aws_chunked_bodies_need_no_content_length() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("chunks").send().await.unwrap();
    let data = random_bytes(3000);
    let host = server.addr.to_string();
    let signer = server.signer();
    let seed = signer.sign(
        "PUT",
        &host,
        "/chunks/k",
        "",
        &[
            ("content-encoding", "aws-chunked".to_string()),
            ("x-amz-decoded-content-length", data.len().to_string()),
        ],
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    );
    let body = signer.chunked_body(&seed, &data, 1024);
    // Sent with Transfer-Encoding: chunked around the aws-chunked body, no Content-Length.
    let mut wire = format!("{:x}\r\n", body.len()).into_bytes();
    wire.extend_from_slice(&body);
    wire.extend_from_slice(b"\r\n0\r\n\r\n");
    let head = format!("{}transfer-encoding: chunked\n", seed.head);
    let resp = raw_request(server.addr, &head, &wire).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(read(&s3, "chunks", "k", None).await, data);
    // aws-chunked is how the body was sent, not how the object is encoded.
    let head = s3
        .head_object()
        .bucket("chunks")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_encoding(), None);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn error_bodies_carry_the_request_id() {
    let server = start().await;
    let resp = server
        .s3()
        .get_object()
        .bucket("nope")
        .key("k")
        .send()
        .await;
    let err = resp.unwrap_err();
    let raw = err.raw_response().expect("an http response");
    let header = raw
        .headers()
        .get("x-amz-request-id")
        .expect("request id header")
        .to_string();
    let body = std::str::from_utf8(raw.body().bytes().unwrap_or_default())
        .unwrap()
        .to_string();
    assert!(
        body.contains(&format!("<RequestId>{header}</RequestId>")),
        "{body}"
    );
    server.stop().await.unwrap();
}

/// Policy conditions for uploads under `uploads/` of the `forms` bucket, plus `extra`.
fn conditions(extra: &[&str]) -> Vec<String> {
    let mut all = vec![
        r#"{"bucket":"forms"}"#.to_string(),
        r#"["starts-with","$key","uploads/"]"#.to_string(),
    ];
    all.extend(extra.iter().map(|c| c.to_string()));
    all
}

const LATER: &str = "2099-12-31T23:59:59.000Z";

#[tokio::test]
async fn post_uploads_substitute_filename_and_apply_tagging() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("forms").send().await.unwrap();
    let tagging =
        "<Tagging><TagSet><Tag><Key>team</Key><Value>blue</Value></Tag></TagSet></Tagging>";
    let form = post_form(
        &conditions(&[&format!(r#"{{"tagging":"{tagging}"}}"#)]),
        &[("key", "uploads/${filename}"), ("tagging", tagging)],
        LATER,
    );
    let resp = post_upload_named(&server, "forms", &form, "photo.jpg", b"jpeg").await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert_eq!(read(&s3, "forms", "uploads/photo.jpg", None).await, b"jpeg");
    let tags = s3
        .get_object_tagging()
        .bucket("forms")
        .key("uploads/photo.jpg")
        .send()
        .await
        .unwrap();
    let tags: Vec<_> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    assert_eq!(tags, vec![("team", "blue")]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn post_uploads_accept_a_checksum_field() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("forms").send().await.unwrap();
    // CRC32 of "hello", base64.
    let crc = "NhCmhg==";
    let form = post_form(
        &conditions(&[&format!(r#"{{"x-amz-checksum-crc32":"{crc}"}}"#)]),
        &[("key", "uploads/sum"), ("x-amz-checksum-crc32", crc)],
        LATER,
    );
    let resp = post_upload(&server, "forms", &form, b"hello").await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    let head = s3
        .head_object()
        .bucket("forms")
        .key("uploads/sum")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_crc32(), Some(crc));
    // A checksum that does not match the file is BadDigest, and nothing is stored.
    let form = post_form(
        &conditions(&[r#"{"x-amz-checksum-crc32":"AAAAAA=="}"#]),
        &[("key", "uploads/bad"), ("x-amz-checksum-crc32", "AAAAAA==")],
        LATER,
    );
    let resp = post_upload(&server, "forms", &form, b"hello").await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(code_of(&resp), "BadDigest");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn post_uploads_with_a_policy_but_no_signature_are_bad_requests() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("forms").send().await.unwrap();
    let mut form = post_form(&conditions(&[]), &[("key", "uploads/x")], LATER);
    form.retain(|(n, _)| n != "x-amz-signature");
    let resp = post_upload(&server, "forms", &form, b"x").await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(code_of(&resp), "InvalidArgument");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn post_policies_with_a_bad_expiration_are_refused() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("forms").send().await.unwrap();
    for bad in ["2099-12-31", "not a date", "2099-12-31T23:59:59+02:00"] {
        let form = post_form(&conditions(&[]), &[("key", "uploads/x")], bad);
        let resp = post_upload(&server, "forms", &form, b"x").await;
        assert_eq!(resp.status, 400, "{bad}: {}", resp.text());
        assert_eq!(code_of(&resp), "InvalidPolicyDocument", "{bad}");
    }
    let e = s3
        .head_object()
        .bucket("forms")
        .key("uploads/x")
        .send()
        .await;
    assert!(e.is_err());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn post_redirects_carry_the_quoted_etag() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("forms").send().await.unwrap();
    let form = post_form(
        &conditions(&[r#"{"success_action_redirect":"http://example.com/done"}"#]),
        &[
            ("key", "uploads/r"),
            ("success_action_redirect", "http://example.com/done"),
        ],
        LATER,
    );
    let resp = post_upload(&server, "forms", &form, b"r").await;
    assert_eq!(resp.status, 303, "{}", resp.text());
    let location = resp.header("location").unwrap_or("");
    let etag = format!("etag=%22{}%22", md5_hex(b"r"));
    assert!(location.contains(&etag), "{location}");
    server.stop().await.unwrap();
}
