//! Object listings through the AWS SDK: v1 and v2, prefixes, delimiters, pagination and URL
//! encoding.

mod common;

use std::collections::BTreeSet;

use aws_sdk_s3::types::EncodingType;
use common::*;

async fn fill(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeSet<String> {
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let mut keys = BTreeSet::new();
    for d in ["a", "b", "c"] {
        for i in 0..5 {
            keys.insert(format!("{d}/{i}"));
        }
    }
    for k in [
        "top1",
        "top2",
        "a/deep/x",
        "a/deep/y",
        "with space",
        "b+plus",
    ] {
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
        prefixes.extend(
            page.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_string()),
        );
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_string);
    }
    assert_eq!(prefixes, ["a/", "b/", "c/"]);
    assert_eq!(objects, ["b+plus", "top1", "top2", "with space"]);

    // Prefix + delimiter.
    let page = s3
        .list_objects_v2()
        .bucket("list")
        .prefix("a/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys_a: Vec<_> = page.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys_a, ["a/0", "a/1", "a/2", "a/3", "a/4"]);
    let prefixes: Vec<_> = page
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    assert_eq!(prefixes, ["a/deep/"]);
    assert_eq!(page.key_count(), Some(6));
    let o = &page.contents()[0];
    assert_eq!(o.size(), Some(3));
    assert_eq!(o.e_tag(), Some(format!("\"{}\"", md5_hex(b"a/0")).as_str()));

    // start-after, max-keys default and URL encoding.
    let page = s3
        .list_objects_v2()
        .bucket("list")
        .start_after("top1")
        .send()
        .await
        .unwrap();
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

    let e = s3
        .list_objects_v2()
        .bucket("list")
        .continuation_token("!!!")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidArgument".into()));
    let e = s3
        .list_objects_v2()
        .bucket("nosuch")
        .send()
        .await
        .unwrap_err();
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
        assert!(
            page.next_marker().is_none(),
            "no NextMarker without a delimiter"
        );
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
        entries.extend(
            page.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_string()),
        );
        if page.is_truncated() != Some(true) {
            break;
        }
        marker = Some(
            page.next_marker()
                .expect("NextMarker with a delimiter")
                .to_string(),
        );
    }
    entries.sort();
    assert_eq!(
        entries,
        ["a/", "b+plus", "b/", "c/", "top1", "top2", "with space"]
    );

    server.stop().await.unwrap();
}
