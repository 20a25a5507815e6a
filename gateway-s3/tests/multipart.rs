//! Multipart uploads through the AWS SDK: the happy path, listings and every error S3 defines.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::*;

const MIB: usize = 1024 * 1024;

async fn create(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    s3.create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type("application/x-parts")
        .metadata("origin", "multipart")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string()
}

async fn part(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    id: &str,
    n: i32,
    data: &[u8],
) -> String {
    s3.upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .part_number(n)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string()
}

fn completed(parts: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build())
                .collect(),
        ))
        .build()
}

#[tokio::test]
async fn multipart_happy_path_and_listings() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("mpu").send().await.unwrap();

    let id = create(&s3, "mpu", "big").await;
    let other = create(&s3, "mpu", "dir/other").await;

    let p1 = random_bytes(5 * MIB);
    let p2 = random_bytes(5 * MIB);
    let p3 = random_bytes(1);
    let e1 = part(&s3, "mpu", "big", &id, 1, &p1).await;
    let e2 = part(&s3, "mpu", "big", &id, 2, &p2).await;
    let e3 = part(&s3, "mpu", "big", &id, 3, &p3).await;
    assert_eq!(e1, format!("\"{}\"", md5_hex(&p1)));

    // ListParts, one at a time.
    let page = s3
        .list_parts()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .max_parts(2)
        .send()
        .await
        .unwrap();
    let numbers: Vec<_> = page
        .parts()
        .iter()
        .map(|p| p.part_number().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2]);
    assert_eq!(page.is_truncated(), Some(true));
    assert_eq!(page.next_part_number_marker(), Some("2"));
    assert_eq!(page.parts()[0].size(), Some(5 * MIB as i64));
    assert_eq!(page.parts()[0].e_tag(), Some(e1.as_str()));
    let page = s3
        .list_parts()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .part_number_marker("2")
        .send()
        .await
        .unwrap();
    let numbers: Vec<_> = page
        .parts()
        .iter()
        .map(|p| p.part_number().unwrap())
        .collect();
    assert_eq!(numbers, [3]);
    assert_eq!(page.is_truncated(), Some(false));

    // ListMultipartUploads with prefix, delimiter and markers.
    let all = s3
        .list_multipart_uploads()
        .bucket("mpu")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = all.uploads().iter().map(|u| u.key().unwrap()).collect();
    assert_eq!(keys, ["big", "dir/other"]);
    assert_eq!(all.uploads()[0].upload_id(), Some(id.as_str()));
    let rolled = s3
        .list_multipart_uploads()
        .bucket("mpu")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    assert_eq!(rolled.uploads().len(), 1);
    assert_eq!(rolled.common_prefixes()[0].prefix(), Some("dir/"));
    let first = s3
        .list_multipart_uploads()
        .bucket("mpu")
        .max_uploads(1)
        .send()
        .await
        .unwrap();
    assert_eq!(first.is_truncated(), Some(true));
    let rest = s3
        .list_multipart_uploads()
        .bucket("mpu")
        .set_key_marker(first.next_key_marker().map(str::to_string))
        .set_upload_id_marker(first.next_upload_id_marker().map(str::to_string))
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = rest.uploads().iter().map(|u| u.key().unwrap()).collect();
    assert_eq!(keys, ["dir/other"]);
    let prefixed = s3
        .list_multipart_uploads()
        .bucket("mpu")
        .prefix("dir/")
        .send()
        .await
        .unwrap();
    assert_eq!(prefixed.uploads().len(), 1);

    // Complete.
    let done = s3
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2), (3, &e3)]))
        .send()
        .await
        .unwrap();
    let etag = done.e_tag().unwrap().to_string();
    assert!(etag.ends_with("-3\""), "multipart ETag form: {etag}");
    let got = s3
        .get_object()
        .bucket("mpu")
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(got.e_tag(), Some(etag.as_str()));
    assert_eq!(got.content_type(), Some("application/x-parts"));
    assert_eq!(
        got.metadata().unwrap().get("origin").map(String::as_str),
        Some("multipart")
    );
    assert_eq!(got.content_length(), Some((10 * MIB + 1) as i64));
    let data = got.body.collect().await.unwrap().into_bytes();
    assert!(
        data[..5 * MIB] == p1[..]
            && data[5 * MIB..10 * MIB] == p2[..]
            && data[10 * MIB..] == p3[..]
    );

    // The upload is gone.
    let e = s3
        .list_parts()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchUpload".into()));

    // Abort the other one: 204, then NoSuchUpload.
    s3.abort_multipart_upload()
        .bucket("mpu")
        .key("dir/other")
        .upload_id(&other)
        .send()
        .await
        .unwrap();
    let e = s3
        .abort_multipart_upload()
        .bucket("mpu")
        .key("dir/other")
        .upload_id(&other)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchUpload".into()));
    let all = s3
        .list_multipart_uploads()
        .bucket("mpu")
        .send()
        .await
        .unwrap();
    assert!(all.uploads().is_empty());

    server.stop().await.unwrap();
}

#[tokio::test]
async fn multipart_errors() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("mperr").send().await.unwrap();
    let id = create(&s3, "mperr", "obj").await;
    let small = random_bytes(1000);
    let e1 = part(&s3, "mperr", "obj", &id, 1, &small).await;
    let e2 = part(&s3, "mperr", "obj", &id, 2, &small).await;

    let complete = |parts: CompletedMultipartUpload, upload: &str| {
        s3.complete_multipart_upload()
            .bucket("mperr")
            .key("obj")
            .upload_id(upload)
            .multipart_upload(parts)
            .send()
    };

    let e = complete(completed(&[(1, &e1), (2, &e2)]), &id)
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "EntityTooSmall".into()));
    let e = complete(
        completed(&[(1, "\"00000000000000000000000000000000\"")]),
        &id,
    )
    .await
    .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidPart".into()));
    let e = complete(completed(&[(5, &e1)]), &id).await.unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidPart".into()));
    let e = complete(completed(&[(2, &e2), (1, &e1)]), &id)
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidPartOrder".into()));
    let e = complete(CompletedMultipartUpload::builder().build(), &id)
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "MalformedXML".into()));
    let e = complete(completed(&[(1, &e1)]), "no-such-upload")
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchUpload".into()));

    let e = s3
        .upload_part()
        .bucket("mperr")
        .key("obj")
        .upload_id("no-such-upload")
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchUpload".into()));
    let e = s3
        .upload_part()
        .bucket("mperr")
        .key("obj")
        .upload_id(&id)
        .part_number(10_001)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidArgument".into()));

    // A single small part is a valid object.
    let done = complete(completed(&[(1, &e1)]), &id).await.unwrap();
    assert!(done.e_tag().unwrap().ends_with("-1\""));
    let got = s3
        .get_object()
        .bucket("mperr")
        .key("obj")
        .send()
        .await
        .unwrap();
    assert_eq!(
        &got.body.collect().await.unwrap().into_bytes()[..],
        &small[..]
    );

    server.stop().await.unwrap();
}
