//! Versioning (versions, delete markers, version listings) and object listings (v1 and v2,
//! prefixes, delimiters, pagination).

mod common;

use std::collections::BTreeSet;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, EncodingType, VersioningConfiguration};
use common::*;

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) -> Option<String> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap()
        .version_id()
        .map(str::to_string)
}

async fn read(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, version: Option<&str>) -> Vec<u8> {
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

fn versioning(status: BucketVersioningStatus) -> VersioningConfiguration {
    VersioningConfiguration::builder().status(status).build()
}

#[tokio::test]
async fn versions_and_delete_markers() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("ver").send().await.unwrap();

    let got = s3.get_bucket_versioning().bucket("ver").send().await.unwrap();
    assert!(got.status().is_none(), "no status before versioning was enabled");

    // A null version from before versioning.
    assert_eq!(put(&s3, "ver", "k", b"zero").await, None);

    s3.put_bucket_versioning()
        .bucket("ver")
        .versioning_configuration(versioning(BucketVersioningStatus::Enabled))
        .send()
        .await
        .unwrap();
    let got = s3.get_bucket_versioning().bucket("ver").send().await.unwrap();
    assert_eq!(got.status(), Some(&BucketVersioningStatus::Enabled));

    let v1 = put(&s3, "ver", "k", b"one").await.expect("version id");
    let v2 = put(&s3, "ver", "k", b"two").await.expect("version id");
    assert_ne!(v1, v2);
    assert_eq!(read(&s3, "ver", "k", None).await, b"two");
    assert_eq!(read(&s3, "ver", "k", Some(&v1)).await, b"one");
    assert_eq!(read(&s3, "ver", "k", Some("null")).await, b"zero");
    let head = s3.head_object().bucket("ver").key("k").version_id(&v1).send().await.unwrap();
    assert_eq!(head.version_id(), Some(v1.as_str()));

    // Delete adds a marker.
    let del = s3.delete_object().bucket("ver").key("k").send().await.unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    let marker = del.version_id().expect("marker version").to_string();

    let signed = server.signer().sign("GET", &server.addr.to_string(), "/ver/k", "", &[], &sha256_hex(b""));
    let resp = raw_request(server.addr, &signed.head, b"").await;
    assert_eq!(resp.status, 404);
    assert!(resp.text().contains("<Code>NoSuchKey</Code>"), "{}", resp.text());
    assert_eq!(resp.header("x-amz-delete-marker"), Some("true"));
    assert_eq!(resp.header("x-amz-version-id"), Some(marker.as_str()));

    let query = format!("versionId={marker}");
    let signed = server.signer().sign("GET", &server.addr.to_string(), "/ver/k", &query, &[], &sha256_hex(b""));
    let resp = raw_request(server.addr, &signed.head, b"").await;
    assert_eq!(resp.status, 405);
    assert!(resp.text().contains("<Code>MethodNotAllowed</Code>"), "{}", resp.text());
    assert_eq!(resp.header("x-amz-delete-marker"), Some("true"));
    assert_eq!(resp.header("x-amz-version-id"), Some(marker.as_str()));

    let e = s3.head_object().bucket("ver").key("k").send().await.unwrap_err();
    assert_eq!(error_of(&e).0, 404);
    let e = s3.get_object().bucket("ver").key("k").version_id("0123456789abcdef0123456789abcdef").send().await.unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchVersion".into()));
    let e = s3.get_object().bucket("ver").key("k").version_id("garbage").send().await.unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidArgument".into()));

    // Listing versions: marker, v2, v1, null; the marker is latest.
    let listed = s3.list_object_versions().bucket("ver").send().await.unwrap();
    let markers = listed.delete_markers();
    assert_eq!(markers.len(), 1);
    assert_eq!(markers[0].version_id(), Some(marker.as_str()));
    assert_eq!(markers[0].is_latest(), Some(true));
    let versions: Vec<_> = listed
        .versions()
        .iter()
        .map(|v| (v.version_id().unwrap().to_string(), v.is_latest().unwrap()))
        .collect();
    assert_eq!(
        versions,
        [(v2.clone(), false), (v1.clone(), false), ("null".to_string(), false)]
    );

    // Paging one entry at a time visits every version once.
    let mut seen = Vec::new();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let page = s3
            .list_object_versions()
            .bucket("ver")
            .max_keys(1)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .unwrap();
        seen.extend(page.versions().iter().filter_map(|v| v.version_id().map(str::to_string)));
        seen.extend(page.delete_markers().iter().filter_map(|v| v.version_id().map(str::to_string)));
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
        assert!(seen.len() <= 4, "paging must end");
    }
    assert_eq!(seen, [marker.clone(), v2.clone(), v1.clone(), "null".to_string()]);

    // Deleting the marker by id brings v2 back.
    let del = s3.delete_object().bucket("ver").key("k").version_id(&marker).send().await.unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    assert_eq!(del.version_id(), Some(marker.as_str()));
    assert_eq!(read(&s3, "ver", "k", None).await, b"two");

    // Copy from an old version restores it.
    let out = s3
        .copy_object()
        .bucket("ver")
        .key("k")
        .copy_source(format!("ver/k?versionId={v1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.copy_source_version_id(), Some(v1.as_str()));
    assert!(out.version_id().is_some());
    assert_eq!(read(&s3, "ver", "k", None).await, b"one");

    // Suspended: writes replace the null version.
    s3.put_bucket_versioning()
        .bucket("ver")
        .versioning_configuration(versioning(BucketVersioningStatus::Suspended))
        .send()
        .await
        .unwrap();
    let got = s3.get_bucket_versioning().bucket("ver").send().await.unwrap();
    assert_eq!(got.status(), Some(&BucketVersioningStatus::Suspended));
    assert_eq!(put(&s3, "ver", "k", b"suspended").await.as_deref(), Some("null"));
    assert_eq!(read(&s3, "ver", "k", Some("null")).await, b"suspended");
    assert_eq!(read(&s3, "ver", "k", Some(&v2)).await, b"two");

    // Only Enabled and Suspended are valid.
    let signed_body = b"<VersioningConfiguration><Status>Sideways</Status></VersioningConfiguration>";
    let signed = server.signer().sign(
        "PUT",
        &server.addr.to_string(),
        "/ver",
        "versioning=",
        &[("content-length", signed_body.len().to_string())],
        &sha256_hex(signed_body),
    );
    let resp = raw_request(server.addr, &signed.head, signed_body).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(resp.text().contains("<Code>MalformedXML</Code>"), "{}", resp.text());

    server.stop().await.unwrap();
}

async fn fill(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeSet<String> {
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let mut keys = BTreeSet::new();
    for d in ["a", "b", "c"] {
        for i in 0..5 {
            keys.insert(format!("{d}/{i}"));
        }
    }
    for k in ["top1", "top2", "a/deep/x", "a/deep/y", "with space", "b+plus"] {
        keys.insert(k.to_string());
    }
    for k in &keys {
        put(s3, bucket, k, k.as_bytes()).await;
    }
    keys
}

#[tokio::test]
async fn list_v2_pages_visit_every_key_once() {
    let server = start().await;
    let s3 = server.s3();
    let keys = fill(&s3, "list").await;

    // Flat listing, two keys per page.
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("list")
            .max_keys(2)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        assert!(page.key_count().unwrap() <= 2);
        seen.extend(page.contents().iter().map(|o| o.key().unwrap().to_string()));
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_string);
        assert!(token.is_some());
    }
    assert_eq!(seen, keys.iter().cloned().collect::<Vec<_>>());

    // With a delimiter: prefixes roll up, each entry once.
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("list")
            .delimiter("/")
            .max_keys(1)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        objects.extend(page.contents().iter().map(|o| o.key().unwrap().to_string()));
        prefixes.extend(page.common_prefixes().iter().map(|p| p.prefix().unwrap().to_string()));
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_string);
    }
    assert_eq!(prefixes, ["a/", "b/", "c/"]);
    assert_eq!(objects, ["b+plus", "top1", "top2", "with space"]);

    // Prefix + delimiter.
    let page = s3.list_objects_v2().bucket("list").prefix("a/").delimiter("/").send().await.unwrap();
    let keys_a: Vec<_> = page.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys_a, ["a/0", "a/1", "a/2", "a/3", "a/4"]);
    let prefixes: Vec<_> = page.common_prefixes().iter().map(|p| p.prefix().unwrap()).collect();
    assert_eq!(prefixes, ["a/deep/"]);
    assert_eq!(page.key_count(), Some(6));
    let o = &page.contents()[0];
    assert_eq!(o.size(), Some(3));
    assert_eq!(o.e_tag(), Some(format!("\"{}\"", md5_hex(b"a/0")).as_str()));

    // start-after, max-keys default and URL encoding.
    let page = s3.list_objects_v2().bucket("list").start_after("top1").send().await.unwrap();
    let rest: Vec<_> = page.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(rest, ["top2", "with space"]);
    assert_eq!(page.max_keys(), Some(1000));
    let page = s3
        .list_objects_v2()
        .bucket("list")
        .prefix("with")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .unwrap();
    assert_eq!(page.contents()[0].key(), Some("with%20space"));

    let e = s3.list_objects_v2().bucket("list").continuation_token("!!!").send().await.unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidArgument".into()));
    let e = s3.list_objects_v2().bucket("nosuch").send().await.unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchBucket".into()));

    server.stop().await.unwrap();
}

#[tokio::test]
async fn list_v1_markers() {
    let server = start().await;
    let s3 = server.s3();
    let keys = fill(&s3, "list1").await;

    // Without delimiter: resume after the last key.
    let mut seen = Vec::new();
    let mut marker = None::<String>;
    loop {
        let page = s3
            .list_objects()
            .bucket("list1")
            .max_keys(3)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        assert!(page.next_marker().is_none(), "no NextMarker without a delimiter");
        seen.extend(page.contents().iter().map(|o| o.key().unwrap().to_string()));
        if page.is_truncated() != Some(true) {
            break;
        }
        marker = seen.last().cloned();
    }
    assert_eq!(seen, keys.iter().cloned().collect::<Vec<_>>());

    // With a delimiter: NextMarker.
    let mut entries = Vec::new();
    let mut marker = None::<String>;
    loop {
        let page = s3
            .list_objects()
            .bucket("list1")
            .delimiter("/")
            .max_keys(2)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        entries.extend(page.contents().iter().map(|o| o.key().unwrap().to_string()));
        entries.extend(page.common_prefixes().iter().map(|p| p.prefix().unwrap().to_string()));
        if page.is_truncated() != Some(true) {
            break;
        }
        marker = Some(page.next_marker().expect("NextMarker with a delimiter").to_string());
    }
    entries.sort();
    assert_eq!(entries, ["a/", "b+plus", "b/", "c/", "top1", "top2", "with space"]);

    server.stop().await.unwrap();
}
