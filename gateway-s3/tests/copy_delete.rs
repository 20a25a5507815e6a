//! Deletes, copies, streamed uploads and conditional reads through the AWS SDK.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, MetadataDirective, ObjectIdentifier};
use common::*;

#[tokio::test]
async fn delete_objects_reports_each_key() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("del").send().await.unwrap();
    for k in ["a", "b", "c"] {
        s3.put_object()
            .bucket("del")
            .key(k)
            .body(ByteStream::from_static(b"1"))
            .send()
            .await
            .unwrap();
    }
    let ids = |keys: &[&str]| {
        Delete::builder().set_objects(Some(
            keys.iter()
                .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
                .collect(),
        ))
    };

    let out = s3
        .delete_objects()
        .bucket("del")
        .delete(ids(&["a", "missing"]).build().unwrap())
        .send()
        .await
        .unwrap();
    let mut deleted: Vec<_> = out.deleted().iter().filter_map(|d| d.key()).collect();
    deleted.sort();
    assert_eq!(deleted, ["a", "missing"]);
    assert!(out.errors().is_empty());

    // Quiet: successes are not reported; a malformed version id is a per-key error.
    let delete = Delete::builder()
        .objects(ObjectIdentifier::builder().key("b").build().unwrap())
        .objects(
            ObjectIdentifier::builder()
                .key("c")
                .version_id("bogus")
                .build()
                .unwrap(),
        )
        .quiet(true)
        .build()
        .unwrap();
    let out = s3
        .delete_objects()
        .bucket("del")
        .delete(delete)
        .send()
        .await
        .unwrap();
    assert!(out.deleted().is_empty());
    assert_eq!(out.errors().len(), 1);
    assert_eq!(out.errors()[0].key(), Some("c"));
    assert_eq!(out.errors()[0].code(), Some("InvalidArgument"));

    let listed = s3.list_objects_v2().bucket("del").send().await.unwrap();
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["c"]);

    let too_many: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let e = s3
        .delete_objects()
        .bucket("del")
        .delete(ids(&refs).build().unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "MalformedXML".into()));

    // Deleting a missing key is a success.
    s3.delete_object()
        .bucket("del")
        .key("never-there")
        .send()
        .await
        .unwrap();

    server.stop().await.unwrap();
}

#[tokio::test]
async fn copy_object_copy_and_replace() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("src").send().await.unwrap();
    s3.create_bucket().bucket("dst").send().await.unwrap();
    let body = random_bytes(20_000);
    s3.put_object()
        .bucket("src")
        .key("a file+name")
        .content_type("text/plain")
        .metadata("m", "1")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();

    let out = s3
        .copy_object()
        .bucket("dst")
        .key("copy")
        .copy_source("src/a%20file%2Bname")
        .send()
        .await
        .unwrap();
    let result = out.copy_object_result().unwrap();
    assert_eq!(
        result.e_tag(),
        Some(format!("\"{}\"", md5_hex(&body)).as_str())
    );
    assert!(result.last_modified().is_some());
    let got = s3
        .get_object()
        .bucket("dst")
        .key("copy")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(
        got.metadata().unwrap().get("m").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        &got.body.collect().await.unwrap().into_bytes()[..],
        &body[..]
    );

    s3.copy_object()
        .bucket("dst")
        .key("replaced")
        .copy_source("src/a%20file%2Bname")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/json")
        .metadata("n", "2")
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("dst")
        .key("replaced")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/json"));
    let meta = head.metadata().unwrap();
    assert_eq!(meta.get("n").map(String::as_str), Some("2"));
    assert!(!meta.contains_key("m"));

    // Onto itself: illegal unless something changes.
    let e = s3
        .copy_object()
        .bucket("dst")
        .key("copy")
        .copy_source("dst/copy")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidRequest".into()));
    s3.copy_object()
        .bucket("dst")
        .key("copy")
        .copy_source("dst/copy")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("text/csv")
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("dst")
        .key("copy")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/csv"));

    let e = s3
        .copy_object()
        .bucket("dst")
        .key("x")
        .copy_source("src/none")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchKey".into()));

    server.stop().await.unwrap();
}

#[tokio::test]
async fn sdk_streaming_upload_and_conditional_reads() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("stream").send().await.unwrap();

    // A file body is streamed by the SDK (aws-chunked with a checksum trailer).
    let data = random_bytes(3 * 1024 * 1024 + 17);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.bin");
    std::fs::write(&path, &data).unwrap();
    let put = s3
        .put_object()
        .bucket("stream")
        .key("file")
        .body(ByteStream::from_path(&path).await.unwrap())
        .send()
        .await
        .unwrap();
    let etag = format!("\"{}\"", md5_hex(&data));
    assert_eq!(put.e_tag(), Some(etag.as_str()));
    let got = s3
        .get_object()
        .bucket("stream")
        .key("file")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_length(), Some(data.len() as i64));
    assert_eq!(
        &got.body.collect().await.unwrap().into_bytes()[..],
        &data[..]
    );

    // If-None-Match / If-Match.
    let e = s3
        .get_object()
        .bucket("stream")
        .key("file")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 304);
    let e = s3
        .get_object()
        .bucket("stream")
        .key("file")
        .if_match("\"0123\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (412, "PreconditionFailed".into()));
    let got = s3
        .get_object()
        .bucket("stream")
        .key("file")
        .if_match(&etag)
        .send()
        .await
        .unwrap();
    assert_eq!(got.e_tag(), Some(etag.as_str()));
    let e = s3
        .head_object()
        .bucket("stream")
        .key("file")
        .if_none_match("*")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 304);

    server.stop().await.unwrap();
}
