//! Dedup through the S3 API: identical content costs nothing, an insertion costs little.

use aws_sdk_s3::primitives::ByteStream;
use cairn_tests::{random_bytes, TestSite};

async fn put(s3: &aws_sdk_s3::Client, key: &str, data: Vec<u8>) {
    s3.put_object()
        .bucket("dedup")
        .key(key)
        .body(ByteStream::from(data))
        .send()
        .await
        .expect("put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_bytes_under_a_second_key_add_almost_nothing() {
    let site = TestSite::start().await;
    let s3 = site.s3();
    s3.create_bucket().bucket("dedup").send().await.unwrap();
    let data = random_bytes(20 << 20, 1);
    put(&s3, "first", data.clone()).await;
    let before = site.client.stats().await.unwrap();
    assert!(before.physical_bytes >= 20 << 20, "{before:?}");
    put(&s3, "second", data.clone()).await;
    let after = site.client.stats().await.unwrap();
    let added = after.physical_bytes - before.physical_bytes;
    assert!(
        (added as f64) < 0.02 * (20 << 20) as f64,
        "second copy added {added} physical bytes"
    );
    assert_eq!(after.logical_bytes, 2 * (20 << 20));
    let got = s3
        .get_object()
        .bucket("dedup")
        .key("second")
        .send()
        .await
        .unwrap();
    let body = got.body.collect().await.unwrap().into_bytes();
    assert!(body == data, "second copy reads back bit-exact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insertion_in_the_middle_adds_under_ten_percent() {
    let site = TestSite::start().await;
    let s3 = site.s3();
    s3.create_bucket().bucket("dedup").send().await.unwrap();
    let data = random_bytes(20 << 20, 2);
    put(&s3, "v1", data.clone()).await;
    let before = site.client.stats().await.unwrap();
    let mut edited = data.clone();
    let mid = edited.len() / 2;
    edited.splice(mid..mid, random_bytes(100, 3));
    put(&s3, "v2", edited.clone()).await;
    let after = site.client.stats().await.unwrap();
    let added = after.physical_bytes - before.physical_bytes;
    assert!(
        (added as f64) < 0.10 * (20 << 20) as f64,
        "edited copy added {added} physical bytes"
    );
    let got = s3
        .get_object()
        .bucket("dedup")
        .key("v2")
        .send()
        .await
        .unwrap();
    let body = got.body.collect().await.unwrap().into_bytes();
    assert!(body == edited, "edited copy reads back bit-exact");
}
