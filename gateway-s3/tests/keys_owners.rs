//! Key names S3 allows that trip naive gateways (unicode, spaces, `//`, 1024 bytes) through
//! every path (PUT, GET, HEAD, copy, list, delete), and the owners listings show.

mod common;

use aws_sdk_s3::types::EncodingType;
use common::*;

#[tokio::test]
async fn odd_keys_round_trip_everywhere() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("oddkeys").send().await.unwrap();
    let longest = "k".repeat(1024);
    let keys = [
        "ünïcødé/文件/ファイル.txt",
        "with space/and+plus & amp.txt",
        "double//slash///x",
        "/leading-slash",
        "percent%20literal?query#hash",
        longest.as_str(),
    ];
    for (i, key) in keys.iter().enumerate() {
        let body = format!("body {i}");
        put(&s3, "oddkeys", key, body.as_bytes()).await;
        assert_eq!(
            read(&s3, "oddkeys", key, None).await,
            body.as_bytes(),
            "{key}"
        );
        let head = s3
            .head_object()
            .bucket("oddkeys")
            .key(*key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(body.len() as i64), "{key}");
        s3.copy_object()
            .bucket("oddkeys")
            .key(format!("copy/{i}"))
            .copy_source(format!("oddkeys/{}", aws_smithy_percent_encode(key)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("copy of {key}: {e:?}"));
        assert_eq!(
            read(&s3, "oddkeys", &format!("copy/{i}"), None).await,
            body.as_bytes()
        );
    }
    // A 1025-byte key is refused.
    let err = s3
        .put_object()
        .bucket("oddkeys")
        .key("k".repeat(1025))
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (400, "KeyTooLongError".into()));

    // Listed exactly, plain and URL-encoded.
    let listed = s3.list_objects_v2().bucket("oddkeys").send().await.unwrap();
    let mut got: Vec<_> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .filter(|k| !k.starts_with("copy/"))
        .map(str::to_string)
        .collect();
    let mut want: Vec<_> = keys.iter().map(|k| k.to_string()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let encoded = s3
        .list_objects_v2()
        .bucket("oddkeys")
        .encoding_type(EncodingType::Url)
        .prefix("with space")
        .send()
        .await
        .unwrap();
    assert_eq!(
        encoded.contents()[0].key(),
        Some("with%20space/and%2Bplus%20%26%20amp.txt")
    );
    for key in keys {
        s3.delete_object()
            .bucket("oddkeys")
            .key(key)
            .send()
            .await
            .unwrap();
        let err = s3
            .head_object()
            .bucket("oddkeys")
            .key(key)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_of(&err).0, 404, "{key}");
    }
}

/// Percent-encodes a key for `x-amz-copy-source` (everything but unreserved characters and
/// `/`).
fn aws_smithy_percent_encode(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[tokio::test]
async fn listings_show_owners() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("owners").send().await.unwrap();
    put(&s3, "owners", "a", b"1").await;
    let v1 = s3.list_objects().bucket("owners").send().await.unwrap();
    assert_eq!(
        v1.contents()[0].owner().and_then(|o| o.id()),
        Some(KEY_ID),
        "v1 listings show owners"
    );
    let v2 = s3.list_objects_v2().bucket("owners").send().await.unwrap();
    assert!(
        v2.contents()[0].owner().is_none(),
        "v2 only with fetch-owner"
    );
    let v2 = s3
        .list_objects_v2()
        .bucket("owners")
        .fetch_owner(true)
        .send()
        .await
        .unwrap();
    assert_eq!(v2.contents()[0].owner().and_then(|o| o.id()), Some(KEY_ID));
    let versions = s3
        .list_object_versions()
        .bucket("owners")
        .send()
        .await
        .unwrap();
    assert_eq!(
        versions.versions()[0].owner().and_then(|o| o.id()),
        Some(KEY_ID)
    );
}

#[tokio::test]
async fn head_of_a_range_is_partial_content() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("headrange").send().await.unwrap();
    put(&s3, "headrange", "obj", &[7u8; 1000]).await;
    let host = server.addr.to_string();
    let head = |range: Option<&str>| {
        let extra: Vec<(&str, String)> = range
            .map(|r| ("range", r.to_string()))
            .into_iter()
            .collect();
        server.signer().sign(
            "HEAD",
            &host,
            "/headrange/obj",
            "",
            &extra,
            &sha256_hex(b""),
        )
    };
    let r = raw_request(server.addr, &head(Some("bytes=10-19")).head, b"").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(r.header("content-length"), Some("10"));
    let r = raw_request(server.addr, &head(None).head, b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1000"));
}

/// The gateway keeps a secret it looked up for a second (each lookup is a quorum read on a
/// multi-node site): a deleted key still signs requests for at most that long, then is
/// refused; a key that never existed is refused at once.
#[tokio::test]
async fn a_deleted_key_is_refused_within_a_second() {
    let server = start().await;
    let k = server.client.create_key("short-lived").await.unwrap();
    let s3 = server.s3_as(&k.id, &k.secret, "us-east-1");
    s3.list_buckets().send().await.expect("a live key");
    assert!(server.client.delete_key(&k.id).await.unwrap());
    let deleted = std::time::Instant::now();
    let code = loop {
        match s3.list_buckets().send().await {
            Ok(_) => {
                assert!(
                    deleted.elapsed() < std::time::Duration::from_secs(5),
                    "a deleted key still works after 5 s"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => break error_of(&e).1,
        }
    };
    assert_eq!(code, "InvalidAccessKeyId");
    let unknown = server.s3_as("CKNEVERISSUED0000000", "nothing", "us-east-1");
    let e = unknown.list_buckets().send().await.unwrap_err();
    assert_eq!(error_of(&e).1, "InvalidAccessKeyId");
    server.stop().await.unwrap();
}
