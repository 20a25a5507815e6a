//! Buckets and single objects through the AWS SDK: lifecycle, errors, metadata, digests and
//! ranges.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use common::*;

#[tokio::test]
async fn bucket_lifecycle_and_errors() {
    let server = start().await;
    let s3 = server.s3();

    s3.create_bucket().bucket("alpha").send().await.unwrap();
    s3.create_bucket()
        .bucket("beta")
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let listed = s3.list_buckets().send().await.unwrap();
    let names: Vec<_> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert!(listed.buckets()[0].creation_date().is_some());
    assert_eq!(listed.owner().and_then(|o| o.id()), Some(KEY_ID));

    // Same owner again (200 in us-east-1, as S3 answers there), then another key.
    s3.create_bucket().bucket("alpha").send().await.unwrap();
    let other = server
        .client
        .create_key("other")
        .await
        .expect("create a second key");
    let s3_other = server.s3_as(&other.id, &other.secret, "us-east-1");
    let e = s3_other
        .create_bucket()
        .bucket("alpha")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (409, "BucketAlreadyExists".into()));

    let e = s3
        .create_bucket()
        .bucket("Bad_Name")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidBucketName".into()));

    s3.head_bucket().bucket("alpha").send().await.unwrap();
    let e = s3.head_bucket().bucket("missing").send().await.unwrap_err();
    assert_eq!(error_of(&e).0, 404);

    let loc = s3
        .get_bucket_location()
        .bucket("alpha")
        .send()
        .await
        .unwrap();
    assert!(loc
        .location_constraint()
        .is_none_or(|l| l.as_str().is_empty()));
    let e = s3
        .get_bucket_location()
        .bucket("missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchBucket".into()));

    s3.put_object()
        .bucket("alpha")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let e = s3.delete_bucket().bucket("alpha").send().await.unwrap_err();
    assert_eq!(error_of(&e), (409, "BucketNotEmpty".into()));
    s3.delete_object()
        .bucket("alpha")
        .key("k")
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket("alpha").send().await.unwrap();
    let e = s3.delete_bucket().bucket("alpha").send().await.unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchBucket".into()));
    let listed = s3.list_buckets().send().await.unwrap();
    assert_eq!(listed.buckets().len(), 1);

    server.stop().await.unwrap();
}

#[tokio::test]
async fn put_get_head_keep_headers_and_metadata() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("data").send().await.unwrap();

    let body = random_bytes(300_000);
    let put = s3
        .put_object()
        .bucket("data")
        .key("dir/file.bin")
        .body(ByteStream::from(body.clone()))
        .content_type("application/x-test")
        .cache_control("max-age=60")
        .content_disposition("attachment; filename=\"f.bin\"")
        .content_encoding("identity")
        .content_language("en")
        .metadata("Color", "blue")
        .metadata("shape", "round")
        .send()
        .await
        .unwrap();
    let expected_etag = format!("\"{}\"", md5_hex(&body));
    assert_eq!(put.e_tag(), Some(expected_etag.as_str()));
    assert!(
        put.version_id().is_none(),
        "never-versioned buckets show no version id"
    );

    let got = s3
        .get_object()
        .bucket("data")
        .key("dir/file.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(got.e_tag(), Some(expected_etag.as_str()));
    assert_eq!(got.content_length(), Some(body.len() as i64));
    assert_eq!(got.content_type(), Some("application/x-test"));
    assert_eq!(got.cache_control(), Some("max-age=60"));
    assert_eq!(
        got.content_disposition(),
        Some("attachment; filename=\"f.bin\"")
    );
    assert_eq!(got.content_encoding(), Some("identity"));
    assert_eq!(got.content_language(), Some("en"));
    assert_eq!(got.accept_ranges(), Some("bytes"));
    assert!(got.last_modified().is_some());
    let meta = got.metadata().unwrap();
    assert_eq!(meta.get("color").map(String::as_str), Some("blue"));
    assert_eq!(meta.get("shape").map(String::as_str), Some("round"));
    let data = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(&data[..], &body[..]);

    let head = s3
        .head_object()
        .bucket("data")
        .key("dir/file.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(head.e_tag(), Some(expected_etag.as_str()));
    assert_eq!(head.content_length(), Some(body.len() as i64));
    assert_eq!(head.content_type(), Some("application/x-test"));
    assert_eq!(
        head.metadata().unwrap().get("color").map(String::as_str),
        Some("blue")
    );

    // Expires is kept as sent.
    let raw = server.signer().sign(
        "PUT",
        &server.addr.to_string(),
        "/data/expiring",
        "",
        &[
            ("expires", "Thu, 01 Dec 2094 16:00:00 GMT".to_string()),
            ("content-length", "2".into()),
        ],
        &sha256_hex(b"hi"),
    );
    let resp = raw_request(server.addr, &raw.head, b"hi").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let raw = server.signer().sign(
        "GET",
        &server.addr.to_string(),
        "/data/expiring",
        "",
        &[],
        &sha256_hex(b""),
    );
    let resp = raw_request(server.addr, &raw.head, b"").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("expires"),
        Some("Thu, 01 Dec 2094 16:00:00 GMT")
    );
    assert!(resp
        .header("x-amz-request-id")
        .is_some_and(|id| !id.is_empty()));
    assert_eq!(resp.body, b"hi");

    // Missing keys and buckets.
    let e = s3
        .get_object()
        .bucket("data")
        .key("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchKey".into()));
    let e = s3
        .get_object()
        .bucket("nobucket")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchBucket".into()));
    let e = s3
        .head_object()
        .bucket("data")
        .key("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 404);
    let e = s3
        .put_object()
        .bucket("nobucket")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchBucket".into()));

    // Empty object.
    s3.put_object()
        .bucket("data")
        .key("empty")
        .body(ByteStream::from_static(b""))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("data")
        .key("empty")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_length(), Some(0));
    assert_eq!(got.e_tag(), Some("\"d41d8cd98f00b204e9800998ecf8427e\""));

    server.stop().await.unwrap();
}

#[tokio::test]
async fn content_md5_is_checked() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("md5").send().await.unwrap();
    use base64::Engine as _;
    let b64 = |d: &[u8]| {
        use md5::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(d))
    };

    s3.put_object()
        .bucket("md5")
        .key("good")
        .content_md5(b64(b"hello"))
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();

    let e = s3
        .put_object()
        .bucket("md5")
        .key("bad")
        .content_md5(b64(b"other"))
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "BadDigest".into()));
    let e = s3
        .head_object()
        .bucket("md5")
        .key("bad")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 404, "a bad digest stores nothing");

    let e = s3
        .put_object()
        .bucket("md5")
        .key("bad")
        .content_md5("not-an-md5")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidDigest".into()));

    server.stop().await.unwrap();
}

#[tokio::test]
async fn ranges() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("ranges").send().await.unwrap();
    let body = random_bytes(100_000);
    s3.put_object()
        .bucket("ranges")
        .key("obj")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();

    let cases: [(&str, usize, usize); 4] = [
        ("bytes=0-9", 0, 10),
        ("bytes=99990-", 99_990, 100_000),
        ("bytes=-25", 99_975, 100_000),
        ("bytes=50000-200000", 50_000, 100_000),
    ];
    for (range, start, end) in cases {
        let got = s3
            .get_object()
            .bucket("ranges")
            .key("obj")
            .range(range)
            .send()
            .await
            .unwrap();
        assert_eq!(got.content_length(), Some((end - start) as i64), "{range}");
        let expected_range = format!("bytes {start}-{}/100000", end - 1);
        assert_eq!(
            got.content_range(),
            Some(expected_range.as_str()),
            "{range}"
        );
        let data = got.body.collect().await.unwrap().into_bytes();
        assert_eq!(&data[..], &body[start..end], "{range}");
    }

    // 206 on the wire.
    let signed = server.signer().sign(
        "GET",
        &server.addr.to_string(),
        "/ranges/obj",
        "",
        &[("range", "bytes=1-2".into())],
        &sha256_hex(b""),
    );
    let resp = raw_request(server.addr, &signed.head, b"").await;
    assert_eq!(resp.status, 206);
    assert_eq!(resp.body, &body[1..3]);

    let e = s3
        .get_object()
        .bucket("ranges")
        .key("obj")
        .range("bytes=100000-")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (416, "InvalidRange".into()));

    server.stop().await.unwrap();
}
