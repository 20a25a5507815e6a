//! Server-side encryption through the AWS SDK: SSE-S3 (`AES256`) and SSE-C round trips, ranged
//! and part reads, multipart uploads, copies between modes, S3's errors for missing, wrong and
//! inconsistent keys, what is on disk (no plaintext of an encrypted object), and what
//! deduplicates (two customers' identical data share no chunk).

mod common;

use std::collections::HashSet;

use aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use base64::Engine;
use cairn_core::extent::{RangeWalker, Target};
use common::*;
use md5::{Digest, Md5};

/// An SSE-C key and the two header values the SDK sends with it.
struct Key {
    b64: String,
    md5: String,
}

fn key(seed: u8) -> Key {
    let raw = [seed; 32];
    let e = base64::engine::general_purpose::STANDARD;
    Key {
        b64: e.encode(raw),
        md5: e.encode(Md5::digest(raw)),
    }
}

trait WithKey: Sized {
    fn with_key(self, k: &Key) -> Self;
}

/// `with_key` on every request builder that takes the three SSE-C headers.
macro_rules! with_key {
    ($($t:ty),*) => {$(
        impl WithKey for $t {
            fn with_key(self, k: &Key) -> Self {
                self.sse_customer_algorithm("AES256")
                    .sse_customer_key(&k.b64)
                    .sse_customer_key_md5(&k.md5)
            }
        }
    )*};
}

with_key!(
    GetObjectFluentBuilder,
    aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    aws_sdk_s3::operation::head_object::builders::HeadObjectFluentBuilder,
    aws_sdk_s3::operation::upload_part::builders::UploadPartFluentBuilder,
    aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder,
    aws_sdk_s3::operation::copy_object::builders::CopyObjectFluentBuilder,
    aws_sdk_s3::operation::upload_part_copy::builders::UploadPartCopyFluentBuilder
);

/// Random bytes with `marker` written every 64 KiB: incompressible, so stored as is unless
/// encrypted, and findable in the store's files.
fn marked(len: usize, marker: &[u8]) -> Vec<u8> {
    let mut data = random_bytes(len);
    for at in (0..len.saturating_sub(marker.len())).step_by(65536) {
        data[at..at + marker.len()].copy_from_slice(marker);
    }
    data
}

/// Whether any file under `dir` contains `needle`.
fn found_in_files(dir: &std::path::Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
            {
                return true;
            }
        }
    }
    false
}

/// The chunk ids the current version of `key` refers to.
async fn chunks_of(server: &Server, bucket: &str, key: &str) -> HashSet<cairn_client::ChunkId> {
    let (_, m) = server
        .client
        .read_object(bucket, key, &cairn_client::VersionSel::Current)
        .await
        .unwrap()
        .into_version()
        .unwrap();
    let mut ids = HashSet::new();
    if let cairn_client::Content::Tree(root) = m.content {
        let mut w = RangeWalker::new(root, 0, m.size).unwrap();
        while let Some(p) = w.next(&server.client).await.unwrap() {
            if let Target::Chunk { id, .. } = p.target {
                ids.insert(id);
            }
        }
    }
    ids
}

async fn body(out: aws_sdk_s3::operation::get_object::GetObjectOutput) -> Vec<u8> {
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

#[tokio::test]
async fn sse_s3_objects_read_back_and_leave_no_plaintext_on_disk() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("enc").send().await.unwrap();
    let secret = marked(3 << 20, b"SECRET-MARKER-sse-s3-0123456789");
    let plain = marked(1 << 20, b"PLAIN-MARKER-unencrypted-012345");
    let small = b"a small secret kept inline: SMALL-MARKER-9876543210".to_vec();
    let put = s3
        .put_object()
        .bucket("enc")
        .key("big")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .body(ByteStream::from(secret.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    assert_eq!(put.e_tag().unwrap(), format!("\"{}\"", md5_hex(&secret)));
    s3.put_object()
        .bucket("enc")
        .key("small")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .body(ByteStream::from(small.clone()))
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket("enc")
        .key("plain")
        .body(ByteStream::from(plain.clone()))
        .send()
        .await
        .unwrap();

    let got = s3
        .get_object()
        .bucket("enc")
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    assert!(body(got).await == secret);
    let got = s3
        .get_object()
        .bucket("enc")
        .key("big")
        .range("bytes=1000000-2100000")
        .send()
        .await
        .unwrap();
    assert!(body(got).await == secret[1_000_000..=2_100_000]);
    assert_eq!(read(&s3, "enc", "small", None).await, small);
    let head = s3
        .head_object()
        .bucket("enc")
        .key("small")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    let head = s3
        .head_object()
        .bucket("enc")
        .key("plain")
        .send()
        .await
        .unwrap();
    assert_eq!(head.server_side_encryption(), None);

    let (stopped, dir) = server.stop_keeping_store().await;
    stopped.unwrap();
    assert!(
        found_in_files(dir.path(), b"PLAIN-MARKER-unencrypted-012345"),
        "the scan must find an unencrypted object's bytes (or it proves nothing)"
    );
    assert!(!found_in_files(
        dir.path(),
        b"SECRET-MARKER-sse-s3-0123456789"
    ));
    assert!(!found_in_files(dir.path(), b"SMALL-MARKER-9876543210"));
}

#[tokio::test]
async fn sse_c_objects_need_their_key_and_say_so() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("cust").send().await.unwrap();
    let (a, b) = (key(1), key(2));
    let data = random_bytes(2 << 20);
    let stored = s3
        .put_object()
        .bucket("cust")
        .key("obj")
        .with_key(&a)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.sse_customer_algorithm(), Some("AES256"));
    assert_eq!(stored.sse_customer_key_md5(), Some(a.md5.as_str()));
    assert_ne!(
        stored.e_tag().unwrap(),
        format!("\"{}\"", md5_hex(&data)),
        "an SSE-C object's ETag is not the MD5 of its data"
    );

    let e = s3
        .get_object()
        .bucket("cust")
        .key("obj")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidRequest".into()));
    let e = s3
        .get_object()
        .bucket("cust")
        .key("obj")
        .with_key(&b)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    let e = s3
        .head_object()
        .bucket("cust")
        .key("obj")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 400);

    let got = s3
        .get_object()
        .bucket("cust")
        .key("obj")
        .with_key(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(got.sse_customer_algorithm(), Some("AES256"));
    assert_eq!(got.sse_customer_key_md5(), Some(a.md5.as_str()));
    assert!(body(got).await == data);
    let got = s3
        .get_object()
        .bucket("cust")
        .key("obj")
        .range("bytes=-5000")
        .with_key(&a)
        .send()
        .await
        .unwrap();
    assert!(body(got).await == data[data.len() - 5000..]);
    let head = s3
        .head_object()
        .bucket("cust")
        .key("obj")
        .with_key(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(data.len() as i64));

    // A key sent for an object stored without one.
    put(&s3, "cust", "plain", b"no key here").await;
    let e = s3
        .get_object()
        .bucket("cust")
        .key("plain")
        .with_key(&a)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidRequest".into()));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn incomplete_or_inconsistent_encryption_requests_store_nothing() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("refuse").send().await.unwrap();
    let a = key(3);
    let attempts = [
        // The key's MD5 is another key's.
        s3.put_object()
            .bucket("refuse")
            .key("k")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&a.b64)
            .sse_customer_key_md5(key(4).md5),
        // Both kinds at once.
        s3.put_object()
            .bucket("refuse")
            .key("k")
            .server_side_encryption(ServerSideEncryption::Aes256)
            .with_key(&a),
        // Another algorithm.
        s3.put_object()
            .bucket("refuse")
            .key("k")
            .sse_customer_algorithm("AES128")
            .sse_customer_key(&a.b64)
            .sse_customer_key_md5(&a.md5),
        // A key that is not 256 bits.
        s3.put_object()
            .bucket("refuse")
            .key("k")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(base64::engine::general_purpose::STANDARD.encode([1u8; 16]))
            .sse_customer_key_md5(
                base64::engine::general_purpose::STANDARD.encode(Md5::digest([1u8; 16])),
            ),
        // A method S3 does not have.
        s3.put_object()
            .bucket("refuse")
            .key("k")
            .server_side_encryption(ServerSideEncryption::from("rot13")),
    ];
    for (i, req) in attempts.into_iter().enumerate() {
        let e = req
            .body(ByteStream::from_static(b"data"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_of(&e).0, 400, "attempt {i}: {e:?}");
    }
    let e = s3
        .put_object()
        .bucket("refuse")
        .key("k")
        .server_side_encryption(ServerSideEncryption::AwsKmsDsse)
        .body(ByteStream::from_static(b"data"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (501, "NotImplemented".into()));
    // A KMS key that does not exist.
    let e = s3
        .put_object()
        .bucket("refuse")
        .key("k")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id("no-such-key")
        .body(ByteStream::from_static(b"data"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "KMS.NotFoundException".into()));
    let listed = s3.list_objects_v2().bucket("refuse").send().await.unwrap();
    assert_eq!(
        listed.key_count(),
        Some(0),
        "a refused write stores nothing"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn two_customers_identical_data_share_no_chunk() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("dedup").send().await.unwrap();
    let data = random_bytes(3 << 20);
    let put_c = |k: &'static str, key: Key| {
        s3.put_object()
            .bucket("dedup")
            .key(k)
            .sse_customer_algorithm("AES256")
            .sse_customer_key(key.b64)
            .sse_customer_key_md5(key.md5)
            .body(ByteStream::from(data.clone()))
            .send()
    };
    put_c("alice", key(10)).await.unwrap();
    put_c("bob", key(11)).await.unwrap();
    put_c("alice-again", key(10)).await.unwrap();
    for (k, sse) in [("site-1", true), ("site-2", true), ("plain", false)] {
        s3.put_object()
            .bucket("dedup")
            .key(k)
            .set_server_side_encryption(sse.then_some(ServerSideEncryption::Aes256))
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
    }
    let alice = chunks_of(&server, "dedup", "alice").await;
    let bob = chunks_of(&server, "dedup", "bob").await;
    let site = chunks_of(&server, "dedup", "site-1").await;
    let plain = chunks_of(&server, "dedup", "plain").await;
    assert!(alice.len() > 1);
    assert!(alice.is_disjoint(&bob), "two customers' keys share a chunk");
    assert!(alice.is_disjoint(&site) && alice.is_disjoint(&plain));
    assert!(site.is_disjoint(&plain));
    // Within one key's domain the data still deduplicates.
    assert_eq!(chunks_of(&server, "dedup", "alice-again").await, alice);
    assert_eq!(chunks_of(&server, "dedup", "site-2").await, site);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn encrypted_multipart_uploads_parts_and_ranges() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("multi").send().await.unwrap();
    let a = key(5);
    let parts: Vec<Vec<u8>> = (0..3)
        .map(|i| random_bytes(if i < 2 { 5 << 20 } else { 1 << 20 }))
        .collect();
    let whole: Vec<u8> = parts.concat();
    let created = s3
        .create_multipart_upload()
        .bucket("multi")
        .key("obj")
        .with_key(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(created.sse_customer_algorithm(), Some("AES256"));
    let id = created.upload_id().unwrap().to_string();
    // A part without the upload's key is refused.
    let e = s3
        .upload_part()
        .bucket("multi")
        .key("obj")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from(parts[0].clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidRequest".into()));
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = s3
            .upload_part()
            .bucket("multi")
            .key("obj")
            .upload_id(&id)
            .part_number(n)
            .with_key(&a)
            .body(ByteStream::from(p.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(out.sse_customer_key_md5(), Some(a.md5.as_str()));
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket("multi")
        .key("obj")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("multi")
        .key("obj")
        .with_key(&a)
        .send()
        .await
        .unwrap();
    assert!(body(got).await == whole);
    let got = s3
        .get_object()
        .bucket("multi")
        .key("obj")
        .part_number(2)
        .with_key(&a)
        .send()
        .await
        .unwrap();
    assert!(body(got).await == parts[1]);
    let seam = (5 << 20) - 1000;
    let got = s3
        .get_object()
        .bucket("multi")
        .key("obj")
        .range(format!("bytes={seam}-{}", seam + 9999))
        .with_key(&a)
        .send()
        .await
        .unwrap();
    assert!(body(got).await == whole[seam..seam + 10000]);
    let e = s3
        .get_object()
        .bucket("multi")
        .key("obj")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 400);

    // An SSE-S3 upload: the completed object says AES256.
    let created = s3
        .create_multipart_upload()
        .bucket("multi")
        .key("site")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    let id = created.upload_id().unwrap();
    let uploaded = s3
        .upload_part()
        .bucket("multi")
        .key("site")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from(parts[2].clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        uploaded.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256),
        "a part says how its upload encrypts it"
    );
    let etag = uploaded.e_tag().unwrap().to_string();
    let completed = s3
        .complete_multipart_upload()
        .bucket("multi")
        .key("site")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        completed.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    assert_eq!(read(&s3, "multi", "site", None).await, parts[2]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn copies_move_data_between_modes() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("copies").send().await.unwrap();
    let (a, b) = (key(7), key(8));
    let data = random_bytes((2 << 20) + 12345);
    s3.put_object()
        .bucket("copies")
        .key("c-src")
        .with_key(&a)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    // The source's key is needed to read it.
    let e = s3
        .copy_object()
        .bucket("copies")
        .key("nope")
        .copy_source("copies/c-src")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidRequest".into()));
    // SSE-C → SSE-S3.
    let out = s3
        .copy_object()
        .bucket("copies")
        .key("to-site")
        .copy_source("copies/c-src")
        .copy_source_sse_customer_algorithm("AES256")
        .copy_source_sse_customer_key(&a.b64)
        .copy_source_sse_customer_key_md5(&a.md5)
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    assert_eq!(read(&s3, "copies", "to-site", None).await, data);
    // SSE-S3 → SSE-C under another key, and → plaintext.
    s3.copy_object()
        .bucket("copies")
        .key("to-b")
        .copy_source("copies/to-site")
        .with_key(&b)
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("copies")
        .key("to-b")
        .with_key(&b)
        .send()
        .await
        .unwrap();
    assert!(body(got).await == data);
    s3.copy_object()
        .bucket("copies")
        .key("to-plain")
        .copy_source("copies/to-site")
        .send()
        .await
        .unwrap();
    assert_eq!(read(&s3, "copies", "to-plain", None).await, data);
    assert!(chunks_of(&server, "copies", "to-plain")
        .await
        .is_disjoint(&chunks_of(&server, "copies", "to-site").await));
    // Same key on both sides: by reference, no chunk stored again.
    s3.copy_object()
        .bucket("copies")
        .key("a-again")
        .copy_source("copies/c-src")
        .copy_source_sse_customer_algorithm("AES256")
        .copy_source_sse_customer_key(&a.b64)
        .copy_source_sse_customer_key_md5(&a.md5)
        .with_key(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(
        chunks_of(&server, "copies", "a-again").await,
        chunks_of(&server, "copies", "c-src").await
    );

    // UploadPartCopy of a range of an SSE-S3 object into an SSE-C upload.
    let id = s3
        .create_multipart_upload()
        .bucket("copies")
        .key("mp")
        .with_key(&b)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let copied = s3
        .upload_part_copy()
        .bucket("copies")
        .key("mp")
        .upload_id(&id)
        .part_number(1)
        .copy_source("copies/to-site")
        .copy_source_range("bytes=100-1000099")
        .with_key(&b)
        .send()
        .await
        .unwrap();
    let etag = copied
        .copy_part_result()
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    s3.complete_multipart_upload()
        .bucket("copies")
        .key("mp")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("copies")
        .key("mp")
        .with_key(&b)
        .send()
        .await
        .unwrap();
    assert!(body(got).await == data[100..1_000_100]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_bucket_default_encrypts_objects_that_ask_for_nothing() {
    use aws_sdk_s3::types::{
        ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("dflt").send().await.unwrap();
    let e = s3
        .get_bucket_encryption()
        .bucket("dflt")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_of(&e),
        (404, "ServerSideEncryptionConfigurationNotFoundError".into())
    );
    let config = |alg: ServerSideEncryption| {
        ServerSideEncryptionConfiguration::builder()
            .rules(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(
                        ServerSideEncryptionByDefault::builder()
                            .sse_algorithm(alg)
                            .build()
                            .unwrap(),
                    )
                    .bucket_key_enabled(true)
                    .build(),
            )
            .build()
            .unwrap()
    };
    let e = s3
        .put_bucket_encryption()
        .bucket("dflt")
        .server_side_encryption_configuration(config(ServerSideEncryption::AwsKmsDsse))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 501);
    s3.put_bucket_encryption()
        .bucket("dflt")
        .server_side_encryption_configuration(config(ServerSideEncryption::Aes256))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_bucket_encryption()
        .bucket("dflt")
        .send()
        .await
        .unwrap();
    let rule = &got.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm(),
        &ServerSideEncryption::Aes256
    );
    assert_eq!(rule.bucket_key_enabled(), Some(true));

    let data = random_bytes(300_000);
    put(&s3, "dflt", "auto", &data).await;
    let head = s3
        .head_object()
        .bucket("dflt")
        .key("auto")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    assert_eq!(read(&s3, "dflt", "auto", None).await, data);
    // A customer key still wins over the default.
    let k = key(12);
    s3.put_object()
        .bucket("dflt")
        .key("mine")
        .with_key(&k)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let e = s3
        .get_object()
        .bucket("dflt")
        .key("mine")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 400);

    s3.delete_bucket_encryption()
        .bucket("dflt")
        .send()
        .await
        .unwrap();
    put(&s3, "dflt", "plain", &data).await;
    let head = s3
        .head_object()
        .bucket("dflt")
        .key("plain")
        .send()
        .await
        .unwrap();
    assert_eq!(head.server_side_encryption(), None);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sse_kms_objects_use_the_sites_key_manager() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("kms").send().await.unwrap();
    let data = random_bytes(2 << 20);

    // No key named: the site's default key (alias aws/s3) is made and used.
    let put = s3
        .put_object()
        .bucket("kms")
        .key("default")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    let keys = server.client.kms_list().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].alias.as_deref(), Some("aws/s3"));
    assert!(put
        .ssekms_key_id()
        .unwrap()
        .ends_with(&format!("key/{}", keys[0].id)));

    // A key of its own, named by alias, with an encryption context.
    let team = server
        .client
        .kms_create(Some("team"), "the team's key")
        .await
        .unwrap();
    let context = base64::engine::general_purpose::STANDARD.encode(br#"{"project":"x"}"#);
    let put = s3
        .put_object()
        .bucket("kms")
        .key("team")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id("alias/team")
        .ssekms_encryption_context(&context)
        .bucket_key_enabled(true)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(put.ssekms_encryption_context(), Some(context.as_str()));
    assert_eq!(put.bucket_key_enabled(), Some(true));
    let got = s3
        .get_object()
        .bucket("kms")
        .key("team")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert!(got.ssekms_key_id().unwrap().ends_with(&team.id));
    assert!(body(got).await == data);
    // Each key is its own domain: the same bytes under the two keys share no chunk, and
    // deduplicate under one.
    s3.put_object()
        .bucket("kms")
        .key("team-again")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&team.id)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let (d, t) = (
        chunks_of(&server, "kms", "default").await,
        chunks_of(&server, "kms", "team").await,
    );
    assert!(d.is_disjoint(&t));
    assert_eq!(chunks_of(&server, "kms", "team-again").await, t);

    // A disabled key neither opens nor seals; enabled again, its objects read.
    server
        .client
        .kms_set_enabled("alias/team", false)
        .await
        .unwrap();
    let e = s3
        .get_object()
        .bucket("kms")
        .key("team")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "KMS.DisabledException".into()));
    let e = s3
        .put_object()
        .bucket("kms")
        .key("refused")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&team.id)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "KMS.DisabledException".into()));
    assert!(
        read(&s3, "kms", "default", None).await == data,
        "other keys still work"
    );
    server.client.kms_set_enabled(&team.id, true).await.unwrap();
    assert!(read(&s3, "kms", "team", None).await == data);

    // A multipart upload under a KMS key, and a bucket default naming one.
    let id = s3
        .create_multipart_upload()
        .bucket("kms")
        .key("mp")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&team.id)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let uploaded = s3
        .upload_part()
        .bucket("kms")
        .key("mp")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        uploaded.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert!(uploaded.ssekms_key_id().unwrap().ends_with(&team.id));
    let etag = uploaded.e_tag().unwrap().to_string();
    let done = s3
        .complete_multipart_upload()
        .bucket("kms")
        .key("mp")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(chunks_of(&server, "kms", "mp").await, t);
    server.stop().await.unwrap();
}
