//! Object behaviours that must match S3: GetObjectAttributes with several attributes, parts
//! by number, tagging counts, conditional and repeated requests, delete markers, digests and
//! checksums, content headers, metadata and listings.

mod common;

use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
    ObjectAttributes,
};
use common::*;

/// An upload of two parts (5 MiB and 1 KiB) with CRC32 checksums; returns its id and parts.
async fn two_part_upload(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> (String, CompletedMultipartUpload) {
    let id = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let mut done = CompletedMultipartUpload::builder();
    for (n, len) in [(1, 5 << 20), (2, 1024)] {
        let out = s3
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(vec![n as u8; len].into())
            .send()
            .await
            .unwrap();
        done = done.parts(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap())
                .checksum_crc32(out.checksum_crc32().unwrap())
                .build(),
        );
    }
    (id, done.build())
}

/// A signed raw PUT of `body` to `path` with `extra` headers (for headers the SDK will not
/// send as given).
async fn signed_put(
    server: &Server,
    path: &str,
    extra: &[(&str, String)],
    body: &[u8],
) -> RawResponse {
    let mut headers = extra.to_vec();
    headers.push(("content-length", body.len().to_string()));
    let host = server.addr.to_string();
    let signed = server
        .signer()
        .sign("PUT", &host, path, "", &headers, &sha256_hex(body));
    raw_request(server.addr, &signed.head, body).await
}

#[tokio::test]
async fn object_attributes_accept_a_comma_separated_list() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("attrs").send().await.unwrap();
    put(&s3, "attrs", "k", b"12345").await;
    let out = s3
        .get_object_attributes()
        .bucket("attrs")
        .key("k")
        .object_attributes(ObjectAttributes::Etag)
        .object_attributes(ObjectAttributes::ObjectSize)
        .object_attributes(ObjectAttributes::StorageClass)
        .send()
        .await
        .unwrap();
    assert_eq!(out.object_size(), Some(5));
    assert_eq!(
        out.e_tag().map(|e| e.trim_matches('"')),
        Some(md5_hex(b"12345").as_str())
    );
    assert!(out.storage_class().is_some());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn parts_by_number_follow_s3() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("parts").send().await.unwrap();
    let (id, done) = two_part_upload(&s3, "parts", "mp").await;
    s3.complete_multipart_upload()
        .bucket("parts")
        .key("mp")
        .upload_id(&id)
        .multipart_upload(done)
        .send()
        .await
        .unwrap();
    let e = s3
        .get_object()
        .bucket("parts")
        .key("mp")
        .part_number(3)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidPartNumber".to_string()));
    let e = s3
        .head_object()
        .bucket("parts")
        .key("mp")
        .part_number(3)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 400);
    let got = s3
        .get_object()
        .bucket("parts")
        .key("mp")
        .part_number(2)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.checksum_type(), Some(&ChecksumType::Composite));
    assert_eq!(got.parts_count(), Some(2));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn head_reports_the_tag_count() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("tags").send().await.unwrap();
    s3.put_object()
        .bucket("tags")
        .key("k")
        .tagging("a=1&b=2")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    let signed = server.signer().sign(
        "HEAD",
        &server.addr.to_string(),
        "/tags/k",
        "",
        &[],
        &sha256_hex(b""),
    );
    let resp = raw_request(server.addr, &signed.head, b"").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-amz-tagging-count"), Some("2"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn if_match_on_a_missing_key_is_no_such_key() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("cond").send().await.unwrap();
    let e = s3
        .get_object()
        .bucket("cond")
        .key("missing")
        .if_match("\"abc\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchKey".to_string()));
    for condition in ["\"abc\"", "*"] {
        let e = s3
            .put_object()
            .bucket("cond")
            .key("missing")
            .if_match(condition)
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_of(&e), (404, "NoSuchKey".to_string()), "{condition}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn completing_an_upload_twice_answers_the_same() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("twice").send().await.unwrap();
    let (id, done) = two_part_upload(&s3, "twice", "mp").await;
    let complete = || {
        s3.complete_multipart_upload()
            .bucket("twice")
            .key("mp")
            .upload_id(&id)
            .multipart_upload(done.clone())
            .send()
    };
    let first = complete().await.unwrap();
    let second = complete().await.unwrap();
    assert_eq!(second.e_tag(), first.e_tag());
    assert_eq!(second.checksum_crc32(), first.checksum_crc32());
    // Once the key holds another object, the upload is gone.
    put(&s3, "twice", "mp", b"other").await;
    let e = complete().await.unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchUpload".to_string()));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_part_listed_twice_is_invalid_part_order() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("dup").send().await.unwrap();
    let (id, done) = two_part_upload(&s3, "dup", "mp").await;
    let first = done.parts()[0].clone();
    let dup = CompletedMultipartUpload::builder()
        .parts(first.clone())
        .parts(first)
        .build();
    let e = s3
        .complete_multipart_upload()
        .bucket("dup")
        .key("mp")
        .upload_id(&id)
        .multipart_upload(dup)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidPartOrder".to_string()));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_key_after_delete_in_an_unversioned_bucket_has_no_marker() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("plain").send().await.unwrap();
    put(&s3, "plain", "k", b"x").await;
    s3.delete_object()
        .bucket("plain")
        .key("k")
        .send()
        .await
        .unwrap();
    let e = s3
        .head_object()
        .bucket("plain")
        .key("k")
        .send()
        .await
        .unwrap_err();
    let raw = e.raw_response().unwrap();
    assert_eq!(raw.status().as_u16(), 404);
    assert!(raw.headers().get("x-amz-delete-marker").is_none());
    assert!(raw.headers().get("x-amz-version-id").is_none());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn digests_and_checksums_are_checked_as_s3_does() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("sums").send().await.unwrap();
    // An empty Content-MD5.
    let resp = signed_put(
        &server,
        "/sums/md5",
        &[("content-md5", String::new())],
        b"abc",
    )
    .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(code_of(&resp), "InvalidDigest");
    // A well-formed additional checksum that does not match the body.
    let e = s3
        .put_object()
        .bucket("sums")
        .key("crc")
        .checksum_crc32("AAAAAA==")
        .body(b"abc".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "BadDigest".to_string()));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn content_headers_and_metadata_read_back_as_s3_serves_them() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("heads").send().await.unwrap();
    // Stored without a Content-Type: served as binary/octet-stream.
    let resp = signed_put(&server, "/heads/plain", &[], b"raw").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = s3
        .get_object()
        .bucket("heads")
        .key("plain")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("binary/octet-stream"));
    // Non-ASCII metadata comes back RFC 2047-encoded, as S3 documents.
    s3.put_object()
        .bucket("heads")
        .key("meta")
        .metadata("city", "=?UTF-8?B?WsO8cmljaA==?=")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("heads")
        .key("meta")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("city"))
            .map(String::as_str),
        Some("=?UTF-8?B?WsO8cmljaA==?=")
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn list_objects_v1_echoes_the_prefix_as_given() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("echo").send().await.unwrap();
    put(&s3, "echo", "a b/ü+c", b"x").await;
    let out = s3
        .list_objects()
        .bucket("echo")
        .prefix("a b/ü")
        .send()
        .await
        .unwrap();
    assert_eq!(out.prefix(), Some("a b/ü"));
    assert_eq!(out.contents()[0].key(), Some("a b/ü+c"));
    server.stop().await.unwrap();
}
