//! Everything written before a clean restart is there after it.

use aws_sdk_s3::primitives::ByteStream;
use cairn_tests::{random_bytes, TestSite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_buckets_versions_and_keys_survive_a_restart() {
    let site = TestSite::start().await;
    let s3 = site.s3();
    s3.create_bucket().bucket("keep").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("keep")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let sizes = [0usize, 10, 4096, 4097, 300_000, 3 << 20];
    let mut versions = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let data = random_bytes(*n, i as u64);
        let r = s3
            .put_object()
            .bucket("keep")
            .key(format!("obj/{i}"))
            .content_type("application/x-test")
            .metadata("color", "blue")
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        versions.push((
            format!("obj/{i}"),
            r.version_id().unwrap().to_string(),
            data,
        ));
    }
    // A second version of one key.
    s3.put_object()
        .bucket("keep")
        .key("obj/1")
        .body(ByteStream::from_static(b"newer"))
        .send()
        .await
        .unwrap();

    let site = site.restart().await;
    let s3 = site.s3();
    let buckets = s3.list_buckets().send().await.unwrap();
    assert_eq!(buckets.buckets().len(), 1);
    for (key, version, data) in &versions {
        let got = s3
            .get_object()
            .bucket("keep")
            .key(key)
            .version_id(version)
            .send()
            .await
            .unwrap();
        assert_eq!(got.content_type(), Some("application/x-test"));
        assert_eq!(
            got.metadata().unwrap().get("color").map(String::as_str),
            Some("blue")
        );
        let body = got.body.collect().await.unwrap().into_bytes();
        assert!(body == data.as_slice(), "{key} reads back bit-exact");
    }
    let current = s3
        .get_object()
        .bucket("keep")
        .key("obj/1")
        .send()
        .await
        .unwrap();
    let body = current.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], b"newer");
    let listed = s3
        .list_object_versions()
        .bucket("keep")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.versions().len(), sizes.len() + 1);
}
