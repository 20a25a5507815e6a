//! Per-bucket usage and quotas through the SDK: the counters equal what the listings show
//! after concurrent writes and deletes, and a write that would pass a quota is refused with
//! 403 QuotaExceeded leaving nothing behind (PUT, CopyObject, UploadPart,
//! CompleteMultipartUpload), while overwrites that free what they replace, deletes and delete
//! markers still go through.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, VersioningConfiguration,
};
use cairn_client::{BucketQuota, BucketUsage};
use common::*;

async fn try_put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    len: usize,
) -> Result<(), (u16, String)> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(vec![7u8; len]))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| error_of(&e))
}

fn quota(max_bytes: Option<u64>, max_objects: Option<u64>) -> Option<BucketQuota> {
    Some(BucketQuota {
        max_bytes,
        max_objects,
    })
}

async fn enable_versioning(s3: &aws_sdk_s3::Client, bucket: &str) {
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// What the bucket holds, counted from ListObjectVersions and ListObjectsV2.
async fn listed_usage(s3: &aws_sdk_s3::Client, bucket: &str) -> BucketUsage {
    let mut u = BucketUsage::default();
    let mut key_marker: Option<String> = None;
    let mut version_marker: Option<String> = None;
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .max_keys(50)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .unwrap();
        for v in page.versions() {
            u.versions += 1;
            u.logical_bytes += v.size().unwrap_or(0) as u64;
        }
        u.delete_markers += page.delete_markers().len() as u64;
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
    let mut token: Option<String> = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .max_keys(50)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        for o in page.contents() {
            u.objects += 1;
            u.current_bytes += o.size().unwrap_or(0) as u64;
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_string);
    }
    u
}

#[tokio::test]
async fn a_byte_quota_refuses_the_write_that_would_pass_it_and_nothing_is_left() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("quota-q").send().await.unwrap();
    server
        .client
        .set_bucket_quota("quota-q", quota(Some(10_000), None))
        .await
        .unwrap();
    try_put(&s3, "quota-q", "a", 6_000).await.unwrap();
    let refused = try_put(&s3, "quota-q", "b", 5_000).await.unwrap_err();
    assert_eq!(refused, (403, "QuotaExceeded".to_string()));
    let e = s3
        .head_object()
        .bucket("quota-q")
        .key("b")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 404, "a refused write leaves no object");
    let u = server.client.bucket_usage("quota-q").await.unwrap();
    assert_eq!((u.objects, u.logical_bytes), (1, 6_000));

    // In a bucket that does not keep versions an overwrite frees what it replaces.
    try_put(&s3, "quota-q", "a", 9_000).await.unwrap();
    // Up to the limit exactly, then not a byte more.
    try_put(&s3, "quota-q", "c", 1_000).await.unwrap();
    assert_eq!(
        server
            .client
            .bucket_usage("quota-q")
            .await
            .unwrap()
            .logical_bytes,
        10_000
    );
    assert_eq!(
        try_put(&s3, "quota-q", "d", 1).await.unwrap_err(),
        (403, "QuotaExceeded".to_string())
    );
    // A copy adds its size too.
    let e = s3
        .copy_object()
        .bucket("quota-q")
        .key("copy")
        .copy_source("quota-q/c")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "QuotaExceeded".to_string()));
    // A part that does not fit is refused before its data is stored.
    let up = s3
        .create_multipart_upload()
        .bucket("quota-q")
        .key("mp")
        .send()
        .await
        .unwrap();
    let e = s3
        .upload_part()
        .bucket("quota-q")
        .key("mp")
        .upload_id(up.upload_id().unwrap())
        .part_number(1)
        .body(ByteStream::from(vec![1u8; 20_000]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "QuotaExceeded".to_string()));
    let parts = s3
        .list_parts()
        .bucket("quota-q")
        .key("mp")
        .upload_id(up.upload_id().unwrap())
        .send()
        .await
        .unwrap();
    assert!(parts.parts().is_empty(), "the refused part is not kept");

    // Deleting makes room.
    s3.delete_object()
        .bucket("quota-q")
        .key("a")
        .send()
        .await
        .unwrap();
    try_put(&s3, "quota-q", "d", 1).await.unwrap();
    assert_eq!(
        server.client.bucket_usage("quota-q").await.unwrap(),
        listed_usage(&s3, "quota-q").await
    );
    // No quota, no limit.
    server
        .client
        .set_bucket_quota("quota-q", None)
        .await
        .unwrap();
    try_put(&s3, "quota-q", "big", 50_000).await.unwrap();
    assert!(server
        .client
        .head_bucket("quota-q")
        .await
        .unwrap()
        .quota
        .is_none());
}

#[tokio::test]
async fn an_object_quota_counts_noncurrent_versions_but_not_delete_markers() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("quota-v").send().await.unwrap();
    enable_versioning(&s3, "quota-v").await;
    server
        .client
        .set_bucket_quota("quota-v", quota(None, Some(2)))
        .await
        .unwrap();
    let first = s3
        .put_object()
        .bucket("quota-v")
        .key("k")
        .body(ByteStream::from_static(b"one"))
        .send()
        .await
        .unwrap();
    try_put(&s3, "quota-v", "k", 3).await.unwrap();
    assert_eq!(
        try_put(&s3, "quota-v", "other", 3).await.unwrap_err(),
        (403, "QuotaExceeded".to_string()),
        "two versions stored: the quota is reached"
    );
    // A delete marker is not an object version: it goes through.
    s3.delete_object()
        .bucket("quota-v")
        .key("k")
        .send()
        .await
        .unwrap();
    let u = server.client.bucket_usage("quota-v").await.unwrap();
    assert_eq!(
        (u.objects, u.versions, u.delete_markers, u.logical_bytes),
        (0, 2, 1, 6)
    );
    // Removing a noncurrent version makes room for one more.
    s3.delete_object()
        .bucket("quota-v")
        .key("k")
        .version_id(first.version_id().unwrap())
        .send()
        .await
        .unwrap();
    try_put(&s3, "quota-v", "other", 3).await.unwrap();
    assert_eq!(
        server.client.bucket_usage("quota-v").await.unwrap(),
        listed_usage(&s3, "quota-v").await
    );
}

#[tokio::test]
async fn completing_an_upload_past_the_quota_is_refused_and_the_upload_stays() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("quota-m").send().await.unwrap();
    let up = s3
        .create_multipart_upload()
        .bucket("quota-m")
        .key("big")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let mut done = Vec::new();
    for (n, len) in [(1, 5 << 20), (2, 1000)] {
        let p = s3
            .upload_part()
            .bucket("quota-m")
            .key("big")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(vec![n as u8; len]))
            .send()
            .await
            .unwrap();
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(p.e_tag().unwrap())
                .build(),
        );
    }
    // The quota comes after the parts: the completion is where it is checked.
    server
        .client
        .set_bucket_quota("quota-m", quota(Some(5 << 20), None))
        .await
        .unwrap();
    let complete = || {
        s3.complete_multipart_upload()
            .bucket("quota-m")
            .key("big")
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done.clone()))
                    .build(),
            )
            .send()
    };
    let e = complete().await.unwrap_err();
    assert_eq!(error_of(&e), (403, "QuotaExceeded".to_string()));
    let e = s3
        .head_object()
        .bucket("quota-m")
        .key("big")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 404);
    // The upload is still there: raise the quota and complete it.
    server
        .client
        .set_bucket_quota("quota-m", quota(Some(6 << 20), None))
        .await
        .unwrap();
    complete().await.unwrap();
    let u = server.client.bucket_usage("quota-m").await.unwrap();
    assert_eq!((u.objects, u.logical_bytes), (1, (5 << 20) + 1000));
}

/// Eight writers at once PUT, overwrite, delete and remove versions in a versioned and an
/// unversioned bucket; afterwards each bucket's counters equal what its listings count.
#[tokio::test]
async fn counts_are_exact_after_concurrent_writes_and_deletes() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("count-v").send().await.unwrap();
    enable_versioning(&s3, "count-v").await;
    s3.create_bucket().bucket("count-u").send().await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8u64 {
        let s3 = s3.clone();
        tasks.spawn(async move {
            let mut state = w * 7919 + 1;
            let mut next = move |n: u64| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) % n
            };
            for _ in 0..40 {
                let bucket = if next(2) == 0 { "count-v" } else { "count-u" };
                // Few keys, so writers collide on them.
                let key = format!("k{}", next(6));
                match next(5) {
                    0..=2 => {
                        let len = next(3000) as usize;
                        try_put(&s3, bucket, &key, len).await.unwrap();
                    }
                    3 => {
                        s3.delete_object()
                            .bucket(bucket)
                            .key(&key)
                            .send()
                            .await
                            .unwrap();
                    }
                    _ => {
                        let vs = s3
                            .list_object_versions()
                            .bucket(bucket)
                            .prefix(&key)
                            .send()
                            .await
                            .unwrap();
                        if let Some(v) = vs.versions().first() {
                            // Another writer may have removed it first: either is fine.
                            let _ = s3
                                .delete_object()
                                .bucket(bucket)
                                .key(v.key().unwrap())
                                .version_id(v.version_id().unwrap())
                                .send()
                                .await;
                        }
                    }
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    for bucket in ["count-v", "count-u"] {
        let counted = server.client.bucket_usage(bucket).await.unwrap();
        assert_eq!(counted, listed_usage(&s3, bucket).await, "{bucket}");
    }
    let cv = server.client.bucket_usage("count-v").await.unwrap();
    assert!(
        cv.versions > cv.objects,
        "noncurrent versions were kept: {cv:?}"
    );
}
