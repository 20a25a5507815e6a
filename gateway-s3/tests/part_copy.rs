//! UploadPartCopy through the AWS SDK: whole sources and byte ranges become parts by reference,
//! and the completed object has exactly the source's bytes.

mod common;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::*;

#[tokio::test]
async fn parts_copied_from_ranges_and_whole_objects() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("pcopy").send().await.unwrap();
    let big = random_bytes(12 << 20);
    put(&s3, "pcopy", "big", &big).await;
    put(&s3, "pcopy", "small", b"tail bytes").await;
    let before = server.client.stats().await.unwrap();

    let up = s3
        .create_multipart_upload()
        .bucket("pcopy")
        .key("joined")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let first_end = (5 << 20) + 123;
    let ranges = [
        (1, "big", Some(format!("bytes=0-{}", first_end - 1))),
        (
            2,
            "big",
            Some(format!("bytes={first_end}-{}", big.len() - 1)),
        ),
        (3, "small", None),
    ];
    let mut completed = CompletedMultipartUpload::builder();
    for (n, src, range) in &ranges {
        let mut req = s3
            .upload_part_copy()
            .bucket("pcopy")
            .key("joined")
            .upload_id(id)
            .part_number(*n)
            .copy_source(format!("pcopy/{src}"));
        if let Some(r) = range {
            req = req.copy_source_range(r);
        }
        let out = req.send().await.unwrap();
        let etag = out.copy_part_result().and_then(|r| r.e_tag()).unwrap();
        completed = completed.parts(CompletedPart::builder().part_number(*n).e_tag(etag).build());
    }
    // The first part's ETag is the MD5 of its bytes.
    let parts = s3
        .list_parts()
        .bucket("pcopy")
        .key("joined")
        .upload_id(id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        parts.parts()[0].e_tag(),
        Some(format!("\"{}\"", md5_hex(&big[..first_end])).as_str())
    );
    assert_eq!(parts.parts()[0].size(), Some(first_end as i64));
    s3.complete_multipart_upload()
        .bucket("pcopy")
        .key("joined")
        .upload_id(id)
        .multipart_upload(completed.build())
        .send()
        .await
        .unwrap();
    let mut expected = big.clone();
    expected.extend_from_slice(b"tail bytes");
    assert_eq!(read(&s3, "pcopy", "joined", None).await, expected);
    // In a never-versioned bucket the object is the null version (clients such as rclone
    // check a multipart upload with HEAD ?versionId=null).
    let head = s3
        .head_object()
        .bucket("pcopy")
        .key("joined")
        .version_id("null")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(expected.len() as i64));

    // Copies share chunks: at most the few chunks cut at the range boundary and the small
    // source stored as a part of its own are new, not another 12 MiB.
    let after = server.client.stats().await.unwrap();
    assert!(
        after.physical_bytes < before.physical_bytes + (2 << 20),
        "copied parts must not duplicate data: {} -> {}",
        before.physical_bytes,
        after.physical_bytes
    );
}

#[tokio::test]
async fn bad_copy_ranges_and_sources_are_refused() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("pbad").send().await.unwrap();
    put(&s3, "pbad", "src", b"0123456789").await;
    let up = s3
        .create_multipart_upload()
        .bucket("pbad")
        .key("dst")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let copy = |range: &str| {
        s3.upload_part_copy()
            .bucket("pbad")
            .key("dst")
            .upload_id(id)
            .part_number(1)
            .copy_source("pbad/src")
            .copy_source_range(range)
            .send()
    };
    for bad in ["bytes=5-2", "bytes=-3", "items=0-1"] {
        let err = copy(bad).await.unwrap_err();
        assert_eq!(error_of(&err), (400, "InvalidArgument".into()), "{bad}");
    }
    // Past the source's end: InvalidRange, as S3 answers.
    let err = copy("bytes=0-10").await.unwrap_err();
    assert_eq!(error_of(&err), (416, "InvalidRange".into()));
    let out = copy("bytes=2-5").await.unwrap();
    assert_eq!(
        out.copy_part_result().and_then(|r| r.e_tag()),
        Some(format!("\"{}\"", md5_hex(b"2345")).as_str())
    );
    let err = s3
        .upload_part_copy()
        .bucket("pbad")
        .key("dst")
        .upload_id(id)
        .part_number(2)
        .copy_source("pbad/missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (404, "NoSuchKey".into()));
    let err = s3
        .upload_part_copy()
        .bucket("pbad")
        .key("dst")
        .upload_id("no-such-upload")
        .part_number(1)
        .copy_source("pbad/src")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (404, "NoSuchUpload".into()));
    // Source conditions apply.
    let err = s3
        .upload_part_copy()
        .bucket("pbad")
        .key("dst")
        .upload_id(id)
        .part_number(3)
        .copy_source("pbad/src")
        .copy_source_if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (412, "PreconditionFailed".into()));
}
