//! Conditional writes (If-None-Match: *, If-Match on PutObject and CompleteMultipartUpload,
//! atomic with the write) and conditional reads (HEAD and GET with If-* headers).

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::*;

async fn put_if(
    s3: &aws_sdk_s3::Client,
    key: &str,
    body: &[u8],
    if_none_match: Option<&str>,
    if_match: Option<&str>,
) -> Result<String, (u16, String)> {
    s3.put_object()
        .bucket("conds")
        .key(key)
        .set_if_none_match(if_none_match.map(str::to_string))
        .set_if_match(if_match.map(str::to_string))
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .map(|o| o.e_tag().unwrap_or("").to_string())
        .map_err(|e| error_of(&e))
}

#[tokio::test]
async fn if_none_match_star_writes_only_new_keys() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("conds").send().await.unwrap();
    put_if(&s3, "k", b"first", Some("*"), None).await.unwrap();
    let err = put_if(&s3, "k", b"second", Some("*"), None)
        .await
        .unwrap_err();
    assert_eq!(err, (412, "PreconditionFailed".to_string()));
    assert_eq!(read(&s3, "conds", "k", None).await, b"first");
    // After a delete, the key has no object again.
    s3.delete_object()
        .bucket("conds")
        .key("k")
        .send()
        .await
        .unwrap();
    put_if(&s3, "k", b"third", Some("*"), None).await.unwrap();
    assert_eq!(read(&s3, "conds", "k", None).await, b"third");
}

#[tokio::test]
async fn if_match_writes_only_over_that_etag() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("conds").send().await.unwrap();
    let etag = put_if(&s3, "k", b"one", None, None).await.unwrap();
    let err = put_if(
        &s3,
        "k",
        b"two",
        None,
        Some("\"0123456789abcdef0123456789abcdef\""),
    )
    .await
    .unwrap_err();
    assert_eq!(err, (412, "PreconditionFailed".to_string()));
    assert_eq!(read(&s3, "conds", "k", None).await, b"one");
    put_if(&s3, "k", b"two", None, Some(&etag)).await.unwrap();
    assert_eq!(read(&s3, "conds", "k", None).await, b"two");
    // The old ETag no longer matches.
    let err = put_if(&s3, "k", b"three", None, Some(&etag))
        .await
        .unwrap_err();
    assert_eq!(err.0, 412);
    let err = put_if(&s3, "absent", b"x", None, Some(&etag))
        .await
        .unwrap_err();
    assert_eq!(err, (404, "NoSuchKey".to_string()));
}

#[tokio::test]
async fn if_match_any_and_if_none_match_etag() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("conds").send().await.unwrap();
    // If-Match: * needs an object: without one, S3 answers 404 NoSuchKey.
    let err = put_if(&s3, "k", b"x", None, Some("*")).await.unwrap_err();
    assert_eq!(err, (404, "NoSuchKey".to_string()));
    let err = s3
        .get_object()
        .bucket("conds")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err).0, 404, "nothing was written");
    let etag = put_if(&s3, "k", b"one", None, None).await.unwrap();
    put_if(&s3, "k", b"two", None, Some("*")).await.unwrap();
    assert_eq!(read(&s3, "conds", "k", None).await, b"two");
    // If-None-Match with an ETag: refused while the object has that ETag.
    let current = format!("\"{}\"", md5_hex(b"two"));
    let err = put_if(&s3, "k", b"three", Some(&current), None)
        .await
        .unwrap_err();
    assert_eq!(err, (412, "PreconditionFailed".to_string()));
    put_if(&s3, "k", b"three", Some(&etag), None).await.unwrap();
    assert_eq!(read(&s3, "conds", "k", None).await, b"three");
}

#[tokio::test]
async fn concurrent_if_none_match_puts_let_exactly_one_win() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("conds").send().await.unwrap();
    for round in 0..5 {
        let key = format!("race-{round}");
        let tasks: Vec<_> = (0..4u8)
            .map(|i| {
                let s3 = s3.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    let body = vec![i; 100_000];
                    (i, put_if(&s3, &key, &body, Some("*"), None).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (i, r) = t.await.unwrap();
            match r {
                Ok(_) => winners.push(i),
                Err(e) => assert_eq!(e, (412, "PreconditionFailed".to_string())),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert_eq!(
            read(&s3, "conds", &key, None).await,
            vec![winners[0]; 100_000]
        );
    }
}

#[tokio::test]
async fn conditional_complete_multipart_upload() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("conds").send().await.unwrap();
    put_if(&s3, "k", b"existing", None, None).await.unwrap();
    let id = s3
        .create_multipart_upload()
        .bucket("conds")
        .key("k")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let part = s3
        .upload_part()
        .bucket("conds")
        .key("k")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from_static(b"part"))
        .send()
        .await
        .unwrap();
    let parts = CompletedMultipartUpload::builder()
        .parts(
            CompletedPart::builder()
                .part_number(1)
                .e_tag(part.e_tag().unwrap())
                .build(),
        )
        .build();
    let err = s3
        .complete_multipart_upload()
        .bucket("conds")
        .key("k")
        .upload_id(&id)
        .if_none_match("*")
        .multipart_upload(parts.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (412, "PreconditionFailed".to_string()));
    // The upload is still there and completes unconditionally.
    s3.complete_multipart_upload()
        .bucket("conds")
        .key("k")
        .upload_id(&id)
        .multipart_upload(parts)
        .send()
        .await
        .unwrap();
    assert_eq!(read(&s3, "conds", "k", None).await, b"part");
}

#[tokio::test]
async fn conditional_head_and_get() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("conds").send().await.unwrap();
    let etag = put_if(&s3, "k", b"data", None, None).await.unwrap();
    let later = aws_smithy_types::DateTime::from_secs(4_000_000_000);
    let earlier = aws_smithy_types::DateTime::from_secs(1_000_000_000);

    let head = |s3: aws_sdk_s3::Client| s3.head_object().bucket("conds").key("k");
    head(s3.clone()).if_match(&etag).send().await.unwrap();
    let e = head(s3.clone())
        .if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 412);
    let e = head(s3.clone())
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 304);
    head(s3.clone())
        .if_none_match("\"other\"")
        .send()
        .await
        .unwrap();
    let e = head(s3.clone())
        .if_modified_since(later)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 304);
    head(s3.clone())
        .if_modified_since(earlier)
        .send()
        .await
        .unwrap();
    let e = head(s3.clone())
        .if_unmodified_since(earlier)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 412);
    head(s3.clone())
        .if_unmodified_since(later)
        .send()
        .await
        .unwrap();
    // If-Match wins over If-Unmodified-Since (RFC 9110).
    head(s3.clone())
        .if_match(&etag)
        .if_unmodified_since(earlier)
        .send()
        .await
        .unwrap();

    let e = s3
        .get_object()
        .bucket("conds")
        .key("k")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 304);
    let e = s3
        .get_object()
        .bucket("conds")
        .key("k")
        .if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (412, "PreconditionFailed".to_string()));
}
