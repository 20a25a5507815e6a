//! Additional checksums (CRC32, CRC32C, CRC64NVME, SHA-1, SHA-256) through the AWS SDK: sent as
//! aws-chunked trailers or headers, verified, stored and returned with checksum mode; multipart
//! composite and full-object checksums; GetObjectAttributes; partNumber reads and HEAD ranges.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
    ObjectAttributes,
};
use cairn_client::{checksum_of, decode_checksum, ChecksumAlgorithm as Alg};
use common::*;

const MIB: usize = 1024 * 1024;

/// The SDK's algorithm and ours.
fn algorithms() -> [(ChecksumAlgorithm, Alg); 5] {
    [
        (ChecksumAlgorithm::Crc32, Alg::Crc32),
        (ChecksumAlgorithm::Crc32C, Alg::Crc32c),
        (ChecksumAlgorithm::Crc64Nvme, Alg::Crc64Nvme),
        (ChecksumAlgorithm::Sha1, Alg::Sha1),
        (ChecksumAlgorithm::Sha256, Alg::Sha256),
    ]
}

/// The value of `alg` among a response's five checksum fields.
fn pick(alg: Alg, fields: [Option<&str>; 5]) -> Option<String> {
    let i = Alg::ALL.iter().position(|a| *a == alg).unwrap();
    fields[i].map(str::to_string)
}

macro_rules! sums {
    ($o:expr) => {
        [
            $o.checksum_crc32(),
            $o.checksum_crc32_c(),
            $o.checksum_crc64_nvme(),
            $o.checksum_sha1(),
            $o.checksum_sha256(),
        ]
    };
}

#[tokio::test]
async fn sdk_trailer_checksums_of_every_algorithm_are_verified_stored_and_returned() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("sums").send().await.unwrap();
    let data = random_bytes(300_000);
    for (sdk, alg) in algorithms() {
        let key = format!("obj-{}", alg.name());
        let want = checksum_of(alg, &data);
        // The SDK computes the checksum while it sends and appends it as a trailer.
        let put = s3
            .put_object()
            .bucket("sums")
            .key(&key)
            .checksum_algorithm(sdk.clone())
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(pick(alg, sums!(put)), Some(want.clone()), "{alg} put echo");

        let head = s3
            .head_object()
            .bucket("sums")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(pick(alg, sums!(head)), Some(want.clone()), "{alg} head");
        assert_eq!(head.checksum_type(), Some(&ChecksumType::FullObject));

        let plain = s3
            .head_object()
            .bucket("sums")
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(pick(alg, sums!(plain)), None, "{alg} needs checksum mode");

        let got = s3
            .get_object()
            .bucket("sums")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(pick(alg, sums!(got)), Some(want.clone()), "{alg} get");
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes().as_ref(),
            &data[..]
        );

        let ranged = s3
            .get_object()
            .bucket("sums")
            .key(&key)
            .range("bytes=10-99")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(
            pick(alg, sums!(ranged)),
            None,
            "{alg}: no checksum for a range"
        );
        assert_eq!(
            ranged.body.collect().await.unwrap().into_bytes().as_ref(),
            &data[10..100]
        );
    }
}

#[tokio::test]
async fn header_checksums_are_checked_and_a_mismatch_stores_nothing() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("sums").send().await.unwrap();
    let data = random_bytes(50_000);
    let other = checksum_of(Alg::Crc32c, b"something else");

    let err = s3
        .put_object()
        .bucket("sums")
        .key("bad")
        .checksum_crc32_c(&other)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (400, "BadDigest".to_string()));
    let missing = s3
        .head_object()
        .bucket("sums")
        .key("bad")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&missing).0, 404);

    // The right value, sent as a header, is accepted and stored.
    let sha = checksum_of(Alg::Sha256, &data);
    let put = s3
        .put_object()
        .bucket("sums")
        .key("good")
        .checksum_sha256(&sha)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(put.checksum_sha256(), Some(sha.as_str()));
}

#[tokio::test]
async fn malformed_or_unknown_checksums_are_refused_before_the_body() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("sums").send().await.unwrap();
    let signer = server.signer();
    let host = server.addr.to_string();
    let body = b"hello";
    let cases = [
        ("x-amz-checksum-crc32", "not base64!"),
        ("x-amz-checksum-crc32", "AAAAAAAA"),
        ("x-amz-sdk-checksum-algorithm", "MD4"),
    ];
    for (name, value) in cases {
        let signed = signer.sign(
            "PUT",
            &host,
            "/sums/k",
            "",
            &[
                ("content-length", body.len().to_string()),
                (name, value.to_string()),
            ],
            &sha256_hex(body),
        );
        let resp = raw_request(server.addr, &signed.head, body).await;
        assert_eq!(resp.status, 400, "{name}: {value}: {}", resp.text());
        assert!(resp.text().contains("InvalidRequest"), "{}", resp.text());
    }
    // Only an algorithm: the store computes the checksum.
    let signed = signer.sign(
        "PUT",
        &host,
        "/sums/computed",
        "",
        &[
            ("content-length", body.len().to_string()),
            ("x-amz-checksum-algorithm", "CRC64NVME".to_string()),
        ],
        &sha256_hex(body),
    );
    let resp = raw_request(server.addr, &signed.head, body).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("x-amz-checksum-crc64nvme"),
        Some(checksum_of(Alg::Crc64Nvme, body).as_str())
    );
}

async fn upload_two_parts(
    s3: &aws_sdk_s3::Client,
    key: &str,
    sdk: ChecksumAlgorithm,
    kind: Option<ChecksumType>,
    data: &[u8],
) -> (String, Vec<CompletedPart>) {
    let id = s3
        .create_multipart_upload()
        .bucket("parts")
        .key(key)
        .checksum_algorithm(sdk.clone())
        .set_checksum_type(kind)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let mut parts = Vec::new();
    for (n, piece) in [(1, &data[..5 * MIB]), (2, &data[5 * MIB..])] {
        let out = s3
            .upload_part()
            .bucket("parts")
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .checksum_algorithm(sdk.clone())
            .body(ByteStream::from(piece.to_vec()))
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap())
                .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                .set_checksum_crc32_c(out.checksum_crc32_c().map(str::to_string))
                .set_checksum_crc64_nvme(out.checksum_crc64_nvme().map(str::to_string))
                .set_checksum_sha1(out.checksum_sha1().map(str::to_string))
                .set_checksum_sha256(out.checksum_sha256().map(str::to_string))
                .build(),
        );
    }
    (id, parts)
}

#[tokio::test]
async fn multipart_composite_and_full_object_checksums() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("parts").send().await.unwrap();
    let data = random_bytes(5 * MIB + 123_457);
    let (p1, p2) = data.split_at(5 * MIB);

    // Composite (the default for CRC32C): checksum of the parts' checksums, `-2`.
    let (id, parts) =
        upload_two_parts(&s3, "composite", ChecksumAlgorithm::Crc32C, None, &data).await;
    let listed = s3
        .list_parts()
        .bucket("parts")
        .key("composite")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.parts()[1].checksum_crc32_c(),
        Some(checksum_of(Alg::Crc32c, p2).as_str())
    );
    assert_eq!(
        listed.checksum_algorithm(),
        Some(&ChecksumAlgorithm::Crc32C)
    );
    let done = s3
        .complete_multipart_upload()
        .bucket("parts")
        .key("composite")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let raw = [
        decode_checksum(Alg::Crc32c, &checksum_of(Alg::Crc32c, p1)).unwrap(),
        decode_checksum(Alg::Crc32c, &checksum_of(Alg::Crc32c, p2)).unwrap(),
    ]
    .concat();
    let composite = format!("{}-2", checksum_of(Alg::Crc32c, &raw));
    assert_eq!(done.checksum_crc32_c(), Some(composite.as_str()));
    assert_eq!(done.checksum_type(), Some(&ChecksumType::Composite));
    let head = s3
        .head_object()
        .bucket("parts")
        .key("composite")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_crc32_c(), Some(composite.as_str()));
    assert_eq!(head.checksum_type(), Some(&ChecksumType::Composite));

    // Full object: the parts' CRCs combined equal the CRC of the whole object.
    for (sdk, alg, kind) in [
        (ChecksumAlgorithm::Crc64Nvme, Alg::Crc64Nvme, None),
        (
            ChecksumAlgorithm::Crc32,
            Alg::Crc32,
            Some(ChecksumType::FullObject),
        ),
    ] {
        let key = format!("full-{}", alg.name());
        let (id, parts) = upload_two_parts(&s3, &key, sdk, kind, &data).await;
        let done = s3
            .complete_multipart_upload()
            .bucket("parts")
            .key(&key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let whole = checksum_of(alg, &data);
        assert_eq!(pick(alg, sums!(done)), Some(whole.clone()), "{alg}");
        assert_eq!(done.checksum_type(), Some(&ChecksumType::FullObject));
        // GET validates a full-object checksum in the SDK as it reads.
        let got = s3
            .get_object()
            .bucket("parts")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(pick(alg, sums!(got)), Some(whole));
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes().len(),
            data.len()
        );
    }

    // SHA-256 cannot be full-object; a listed part checksum must match.
    let err = s3
        .create_multipart_upload()
        .bucket("parts")
        .key("bad")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_type(ChecksumType::FullObject)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (400, "InvalidRequest".to_string()));
    let (id, mut parts) =
        upload_two_parts(&s3, "wrong-part", ChecksumAlgorithm::Sha1, None, &data).await;
    parts[0] = CompletedPart::builder()
        .part_number(1)
        .e_tag(parts[0].e_tag().unwrap())
        .checksum_sha1(checksum_of(Alg::Sha1, b"not the part"))
        .build();
    let err = s3
        .complete_multipart_upload()
        .bucket("parts")
        .key("wrong-part")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (400, "InvalidPart".to_string()));
}

#[tokio::test]
async fn object_attributes_parts_and_part_reads() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("parts").send().await.unwrap();
    let data = random_bytes(5 * MIB + 1000);
    let (id, parts) = upload_two_parts(&s3, "obj", ChecksumAlgorithm::Sha256, None, &data).await;
    let done = s3
        .complete_multipart_upload()
        .bucket("parts")
        .key("obj")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();

    let attrs = s3
        .get_object_attributes()
        .bucket("parts")
        .key("obj")
        .object_attributes(ObjectAttributes::Etag)
        .object_attributes(ObjectAttributes::Checksum)
        .object_attributes(ObjectAttributes::ObjectParts)
        .object_attributes(ObjectAttributes::ObjectSize)
        .object_attributes(ObjectAttributes::StorageClass)
        .send()
        .await
        .unwrap();
    assert_eq!(
        attrs.e_tag().map(|e| e.trim_matches('"')),
        done.e_tag().map(|e| e.trim_matches('"'))
    );
    assert_eq!(attrs.object_size(), Some(data.len() as i64));
    assert_eq!(attrs.storage_class().map(|s| s.as_str()), Some("STANDARD"));
    assert_eq!(
        attrs.checksum().and_then(|c| c.checksum_sha256()),
        done.checksum_sha256()
    );
    let op = attrs.object_parts().unwrap();
    assert_eq!(op.total_parts_count(), Some(2));
    let sizes: Vec<_> = op
        .parts()
        .iter()
        .map(|p| (p.part_number(), p.size()))
        .collect();
    assert_eq!(
        sizes,
        [(Some(1), Some(5 * MIB as i64)), (Some(2), Some(1000))]
    );

    // Paging through the parts.
    let page = s3
        .get_object_attributes()
        .bucket("parts")
        .key("obj")
        .object_attributes(ObjectAttributes::ObjectParts)
        .max_parts(1)
        .send()
        .await
        .unwrap();
    let op = page.object_parts().unwrap();
    assert_eq!(op.parts().len(), 1);
    assert_eq!(op.is_truncated(), Some(true));
    assert_eq!(op.next_part_number_marker(), Some("1"));
    let page = s3
        .get_object_attributes()
        .bucket("parts")
        .key("obj")
        .object_attributes(ObjectAttributes::ObjectParts)
        .part_number_marker("1")
        .send()
        .await
        .unwrap();
    let op = page.object_parts().unwrap();
    assert_eq!(op.parts()[0].part_number(), Some(2));
    assert_eq!(op.is_truncated(), Some(false));

    // GET and HEAD with partNumber: that part's bytes, 206, the part count.
    let got = s3
        .get_object()
        .bucket("parts")
        .key("obj")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(got.parts_count(), Some(2));
    let range = format!("bytes {}-{}/{}", 5 * MIB, data.len() - 1, data.len());
    assert_eq!(got.content_range(), Some(range.as_str()));
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        &data[5 * MIB..]
    );
    let head = s3
        .head_object()
        .bucket("parts")
        .key("obj")
        .part_number(1)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(5 * MIB as i64));
    assert_eq!(head.parts_count(), Some(2));
    let err = s3
        .get_object()
        .bucket("parts")
        .key("obj")
        .part_number(3)
        .send()
        .await
        .unwrap_err();
    // S3 answers a part number past the last part with 400 InvalidPartNumber.
    assert_eq!(error_of(&err), (400, "InvalidPartNumber".to_string()));

    // A delete marker: 404 with the marker's header.
    s3.put_bucket_versioning()
        .bucket("parts")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    s3.delete_object()
        .bucket("parts")
        .key("obj")
        .send()
        .await
        .unwrap();
    let err = s3
        .get_object_attributes()
        .bucket("parts")
        .key("obj")
        .object_attributes(ObjectAttributes::Etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (404, "NoSuchKey".to_string()));
}

#[tokio::test]
async fn head_ranges_part_one_of_a_simple_object_and_stored_headers() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("heads").send().await.unwrap();
    let data = random_bytes(10_000);
    s3.put_object()
        .bucket("heads")
        .key("k")
        .cache_control("max-age=60")
        .content_disposition("attachment; filename=\"k.bin\"")
        .content_encoding("identity")
        .content_language("en-GB")
        .content_type("application/x-test")
        .expires(aws_smithy_types::DateTime::from_secs(2_000_000_000))
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();

    let head = s3
        .head_object()
        .bucket("heads")
        .key("k")
        .range("bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(100));
    assert_eq!(head.content_range(), Some("bytes 100-199/10000"));
    assert_eq!(head.cache_control(), Some("max-age=60"));
    assert_eq!(
        head.content_disposition(),
        Some("attachment; filename=\"k.bin\"")
    );
    assert_eq!(head.content_encoding(), Some("identity"));
    assert_eq!(head.content_language(), Some("en-GB"));
    assert_eq!(head.content_type(), Some("application/x-test"));
    assert_eq!(head.expires_string(), Some("Wed, 18 May 2033 03:33:20 GMT"));
    let suffix = s3
        .head_object()
        .bucket("heads")
        .key("k")
        .range("bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(suffix.content_range(), Some("bytes 9990-9999/10000"));
    let err = s3
        .head_object()
        .bucket("heads")
        .key("k")
        .range("bytes=20000-")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err).0, 416);

    // A simple object is its own part 1.
    let part = s3
        .get_object()
        .bucket("heads")
        .key("k")
        .part_number(1)
        .send()
        .await
        .unwrap();
    assert_eq!(part.content_length(), Some(10_000));
    assert_eq!(part.parts_count(), None);

    // Response overrides win over the stored headers on GET.
    let got = s3
        .get_object()
        .bucket("heads")
        .key("k")
        .response_cache_control("no-store")
        .response_content_disposition("inline")
        .response_content_encoding("gzip")
        .response_content_language("fr")
        .response_content_type("text/plain")
        .response_expires(aws_smithy_types::DateTime::from_secs(1_000_000_000))
        .send()
        .await
        .unwrap();
    assert_eq!(got.cache_control(), Some("no-store"));
    assert_eq!(got.content_disposition(), Some("inline"));
    assert_eq!(got.content_encoding(), Some("gzip"));
    assert_eq!(got.content_language(), Some("fr"));
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(got.expires_string(), Some("Sun, 09 Sep 2001 01:46:40 GMT"));
    let plain = s3
        .get_object()
        .bucket("heads")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.cache_control(), Some("max-age=60"));
    assert_eq!(plain.content_language(), Some("en-GB"));
    assert_eq!(
        plain.expires_string(),
        Some("Wed, 18 May 2033 03:33:20 GMT")
    );
}
