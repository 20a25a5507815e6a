//! The client API against real stores in a temp dir: streaming put/get, ranges, versioning
//! rules, copies, multipart and bad input.

use std::collections::BTreeMap;

use bytes::Bytes;
use cairn_client::*;
use futures::StreamExt;
use rand::{RngCore, SeedableRng};

fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// A body delivered in frames of `frame` bytes, as a network stream would.
fn body(data: &[u8], frame: usize) -> BodyStream {
    let frames: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(frame.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(frames))
}

async fn read_all(mut s: ByteStream) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b?);
    }
    Ok(out)
}

async fn setup() -> (tempfile::TempDir, Client) {
    let dir = tempfile::tempdir().unwrap();
    let c = Client::open_dir(dir.path()).unwrap();
    c.create_bucket("bkt", "owner").await.unwrap();
    (dir, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_round_trips_every_size_and_range() {
    let (_d, c) = setup().await;
    for (i, n) in [0usize, 1, 4096, 4097, 65_536, 1 << 20, (3 << 20) + 12345]
        .into_iter()
        .enumerate()
    {
        let data = random(n, i as u64);
        let key = format!("k{n}");
        let r = c
            .put_object("bkt", &key, body(&data, 10_000), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(r.manifest.size, n as u64);
        assert_eq!(
            r.version_id, None,
            "never-versioned buckets show no version id"
        );
        let md5 = {
            use md5::Digest;
            hex::encode(md5::Md5::digest(&data))
        };
        assert_eq!(r.manifest.etag, md5);
        let g = c
            .get_object("bkt", &key, &VersionSel::Current, None)
            .await
            .unwrap();
        assert_eq!(read_all(g.body).await.unwrap(), data, "size {n}");
        if n > 10 {
            for range in [
                RangeSpec::FromTo(1, Some(n as u64 / 2)),
                RangeSpec::FromTo(n as u64 - 3, None),
                RangeSpec::Suffix(7),
            ] {
                let g = c
                    .get_object("bkt", &key, &VersionSel::Current, Some(range))
                    .await
                    .unwrap();
                let (s, e) = g.range.unwrap();
                assert_eq!(
                    read_all(g.body).await.unwrap(),
                    &data[s as usize..e as usize]
                );
            }
            let err = c
                .get_object(
                    "bkt",
                    &key,
                    &VersionSel::Current,
                    Some(RangeSpec::FromTo(n as u64, None)),
                )
                .await
                .err()
                .unwrap();
            assert!(matches!(err, ClientError::InvalidRange { .. }));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_ranges_cost_no_chunks() {
    let (_d, c) = setup().await;
    let mut data = vec![0u8; 8 << 20];
    data[..1000].copy_from_slice(&random(1000, 1));
    c.put_object("bkt", "sparse", body(&data, 65_536), PutOptions::default())
        .await
        .unwrap();
    let s = c.stats().await.unwrap();
    assert!(s.unique_bytes < 2 << 20, "zeros were stored: {s:?}");
    let g = c
        .get_object("bkt", "sparse", &VersionSel::Current, None)
        .await
        .unwrap();
    assert_eq!(read_all(g.body).await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_digest_length_and_keys_store_nothing() {
    let (_d, c) = setup().await;
    let data = random(100_000, 3);
    let opts = PutOptions {
        content_md5: Some([0; 16]),
        ..Default::default()
    };
    let e = c
        .put_object("bkt", "x", body(&data, 1000), opts)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ClientError::BadDigest));
    let opts = PutOptions {
        content_length: Some(100_001),
        ..Default::default()
    };
    let e = c
        .put_object("bkt", "x", body(&data, 1000), opts)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ClientError::IncompleteBody(_)));
    // A body that fails mid-way.
    let failing: BodyStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from(random(2 << 20, 4))),
        Err(std::io::Error::other("connection reset")),
    ]));
    let e = c
        .put_object("bkt", "x", failing, PutOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ClientError::IncompleteBody(_)));
    assert!(matches!(
        c.head_object("bkt", "x", &VersionSel::Current)
            .await
            .err()
            .unwrap(),
        ClientError::NoSuchKey { .. }
    ));
    let long = "k".repeat(1025);
    let e = c
        .put_object("bkt", &long, body(b"x", 1), PutOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ClientError::KeyTooLong));
    let e = c
        .put_object("nope", "x", body(b"x", 1), PutOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ClientError::NoSuchBucket(_)));
    assert!(matches!(
        c.create_bucket("Bad_Name", "o").await.err().unwrap(),
        ClientError::InvalidBucketName(_)
    ));
    assert!(matches!(
        c.create_bucket("bkt", "owner").await.err().unwrap(),
        ClientError::BucketAlreadyOwnedByYou(_)
    ));
    assert!(matches!(
        c.create_bucket("bkt", "someone-else").await.err().unwrap(),
        ClientError::BucketAlreadyExists(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioning_rules_follow_s3() {
    let (_d, c) = setup().await;
    // Never versioned: one version per key, deletes remove it.
    c.put_object("bkt", "k", body(b"one", 3), PutOptions::default())
        .await
        .unwrap();
    c.put_object("bkt", "k", body(b"two", 3), PutOptions::default())
        .await
        .unwrap();
    let page = c
        .list_versions(
            "bkt",
            &VersionsQuery {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.versions.len(), 1);
    assert_eq!(version_label(&page.versions[0]), "null");
    let d = c
        .delete_object("bkt", "k", &VersionSel::Current)
        .await
        .unwrap();
    assert!(!d.delete_marker);
    let page = c
        .list_versions(
            "bkt",
            &VersionsQuery {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(page.versions.is_empty());

    // Enabled: every write is a version; delete adds a marker.
    c.set_versioning("bkt", Versioning::Enabled).await.unwrap();
    let v1 = c
        .put_object("bkt", "k", body(b"v1", 2), PutOptions::default())
        .await
        .unwrap();
    let v2 = c
        .put_object("bkt", "k", body(b"v2", 2), PutOptions::default())
        .await
        .unwrap();
    assert!(v2.manifest.version > v1.manifest.version);
    assert_eq!(v2.manifest.parent, Some(v1.manifest.version));
    let d = c
        .delete_object("bkt", "k", &VersionSel::Current)
        .await
        .unwrap();
    assert!(d.delete_marker);
    let marker = d.version_id.clone().unwrap();
    match c
        .get_object("bkt", "k", &VersionSel::Current, None)
        .await
        .err()
        .unwrap()
    {
        ClientError::NoSuchKey { delete_marker, .. } => {
            assert_eq!(delete_marker, Some(marker.clone()))
        }
        e => panic!("{e:?}"),
    }
    let by_marker = VersionSel::parse(Some(&marker)).unwrap();
    assert!(matches!(
        c.head_object("bkt", "k", &by_marker).await.err().unwrap(),
        ClientError::MethodNotAllowed { .. }
    ));
    // One read finds the bucket and leaves the S3 answer for the version to the caller (the
    // gateway decides access first); a missing bucket is the answer whatever the key.
    let read = c
        .read_object("bkt", "k", &VersionSel::Current)
        .await
        .unwrap();
    assert_eq!(read.bucket.name, "bkt");
    assert!(read.is_for("bkt", "k", &VersionSel::Current));
    assert!(!read.is_for("bkt", "k", &by_marker) && !read.is_for("bkt", "j", &VersionSel::Current));
    match read.manifest().err().unwrap() {
        ClientError::NoSuchKey { delete_marker, .. } => {
            assert_eq!(delete_marker, Some(marker.clone()))
        }
        e => panic!("{e:?}"),
    }
    let read = c.read_object("bkt", "k", &by_marker).await.unwrap();
    assert!(matches!(
        c.head_object_from(read).await.err().unwrap(),
        ClientError::MethodNotAllowed { .. }
    ));
    let read = c
        .read_object("bkt", "never", &VersionSel::Current)
        .await
        .unwrap();
    assert!(matches!(
        read.manifest().err().unwrap(),
        ClientError::NoSuchKey {
            delete_marker: None,
            ..
        }
    ));
    assert!(matches!(
        c.read_object("nobkt", "k", &VersionSel::Current)
            .await
            .err()
            .unwrap(),
        ClientError::NoSuchBucket(_)
    ));
    let old = VersionSel::parse(v1.version_id.as_deref()).unwrap();
    let g = c.get_object("bkt", "k", &old, None).await.unwrap();
    assert_eq!(read_all(g.body).await.unwrap(), b"v1");
    let read = c.read_object("bkt", "k", &old).await.unwrap();
    assert_eq!(read.manifest().unwrap().version, v1.manifest.version);
    let g = c
        .get_object_from(read, Some(RangeSpec::FromTo(1, None)))
        .await
        .unwrap();
    assert_eq!(read_all(g.body).await.unwrap(), b"1");
    // Removing the marker brings v2 back.
    c.delete_object("bkt", "k", &by_marker).await.unwrap();
    let g = c
        .get_object("bkt", "k", &VersionSel::Current, None)
        .await
        .unwrap();
    assert_eq!(read_all(g.body).await.unwrap(), b"v2");
    assert!(matches!(
        VersionSel::parse(Some("garbage")).err().unwrap(),
        ClientError::InvalidArgument(_)
    ));
    let missing = VersionSel::Id(cairn_client::VersionId(12345));
    assert!(matches!(
        c.head_object("bkt", "k", &missing).await.err().unwrap(),
        ClientError::NoSuchVersion { .. }
    ));

    // Suspended: writes replace the null version, older versions stay.
    c.set_versioning("bkt", Versioning::Suspended)
        .await
        .unwrap();
    let n1 = c
        .put_object("bkt", "k", body(b"n1", 2), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(n1.version_id.as_deref(), Some("null"));
    c.put_object("bkt", "k", body(b"n2", 2), PutOptions::default())
        .await
        .unwrap();
    let page = c
        .list_versions(
            "bkt",
            &VersionsQuery {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let labels: Vec<String> = page.versions.iter().map(version_label).collect();
    assert_eq!(
        labels.iter().filter(|l| *l == "null").count(),
        1,
        "{labels:?}"
    );
    assert_eq!(page.versions.len(), 3, "{labels:?}");
    let g = c
        .get_object("bkt", "k", &VersionSel::Null, None)
        .await
        .unwrap();
    assert_eq!(read_all(g.body).await.unwrap(), b"n2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_shares_chunks_and_applies_directives() {
    let (_d, c) = setup().await;
    let data = random(3 << 20, 5);
    let mut meta = BTreeMap::new();
    meta.insert("a".to_string(), "1".to_string());
    let opts = PutOptions {
        user_metadata: meta,
        ..Default::default()
    };
    c.put_object("bkt", "src", body(&data, 65_536), opts)
        .await
        .unwrap();
    let before = c.stats().await.unwrap();
    c.create_bucket("other", "owner").await.unwrap();
    let r = c
        .copy_object(
            "bkt",
            "src",
            &VersionSel::Current,
            "other",
            "dst",
            copy_opts(MetadataDirective::Copy),
        )
        .await
        .unwrap();
    assert_eq!(
        r.result.manifest.user_metadata.get("a").map(String::as_str),
        Some("1")
    );
    let after = c.stats().await.unwrap();
    assert_eq!(
        after.physical_bytes, before.physical_bytes,
        "copy stored data"
    );
    let g = c
        .get_object("other", "dst", &VersionSel::Current, None)
        .await
        .unwrap();
    assert_eq!(read_all(g.body).await.unwrap(), data);
    let r = c
        .copy_object(
            "bkt",
            "src",
            &VersionSel::Current,
            "bkt",
            "src",
            copy_opts(MetadataDirective::Replace {
                headers: ContentHeaders {
                    content_type: Some("text/plain".into()),
                    ..Default::default()
                },
                user_metadata: BTreeMap::new(),
            }),
        )
        .await
        .unwrap();
    assert!(r.result.manifest.user_metadata.is_empty());
    assert_eq!(
        r.result.manifest.headers.content_type.as_deref(),
        Some("text/plain")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_concatenates_parts_by_reference() {
    let (_d, c) = setup().await;
    let up = c
        .create_multipart("bkt", "mp", "owner", PutOptions::default(), (None, None))
        .await
        .unwrap();
    let p1 = random(5 << 20, 6);
    let p2 = random(5 << 20, 7);
    let p3 = random(1000, 8);
    let mut etags = Vec::new();
    for (n, data) in [(1u32, &p1), (2, &p2), (3, &p3)] {
        let part = c
            .upload_part(
                "bkt",
                "mp",
                &up.upload_id,
                n,
                body(data, 100_000),
                PartOptions::default(),
            )
            .await
            .unwrap();
        etags.push((n, format!("\"{}\"", hex::encode(part.md5))));
    }
    let (_, parts, more) = c
        .list_parts("bkt", "mp", &up.upload_id, 0, 2)
        .await
        .unwrap();
    assert_eq!(parts.len(), 2);
    assert!(more);
    let before = c.stats().await.unwrap();
    // Errors first: wrong order, wrong ETag, small middle part.
    let mut rev = etags.clone();
    rev.reverse();
    assert!(matches!(
        c.complete_multipart("bkt", "mp", &up.upload_id, rev, Default::default())
            .await
            .err()
            .unwrap(),
        ClientError::InvalidPartOrder
    ));
    let mut wrong = etags.clone();
    wrong[1].1 = "\"00\"".into();
    assert!(matches!(
        c.complete_multipart("bkt", "mp", &up.upload_id, wrong, Default::default())
            .await
            .err()
            .unwrap(),
        ClientError::InvalidPart(_)
    ));
    let small = vec![etags[2].clone(), (4, etags[0].1.clone())];
    assert!(c
        .complete_multipart("bkt", "mp", &up.upload_id, small, Default::default())
        .await
        .is_err());
    let r = c
        .complete_multipart(
            "bkt",
            "mp",
            &up.upload_id,
            etags.clone(),
            Default::default(),
        )
        .await
        .unwrap();
    assert!(r.manifest.etag.ends_with("-3"), "{}", r.manifest.etag);
    assert_eq!(r.manifest.size, (10 << 20) + 1000);
    // Completion stores only the chunks it cuts again around the two seams (each part's
    // chunks but its last are reused)...
    let after = c.stats().await.unwrap();
    let added = after.physical_bytes - before.physical_bytes;
    assert!(added < 2 * (3 << 20), "completion stored {added} bytes");
    let g = c
        .get_object("bkt", "mp", &VersionSel::Current, None)
        .await
        .unwrap();
    let got = read_all(g.body).await.unwrap();
    let whole = [p1.clone(), p2, p3].concat();
    assert!(got == whole, "multipart content differs");
    // ...and then holds the chunks a single PUT of the same bytes makes: that PUT stores only
    // its tree node.
    c.put_object(
        "bkt",
        "single",
        body(&whole, 1 << 20),
        PutOptions::default(),
    )
    .await
    .unwrap();
    let single = c.stats().await.unwrap().physical_bytes - after.physical_bytes;
    assert!(
        single < 4096,
        "a single PUT of the same bytes stored {single} bytes"
    );
    // A completion sent again answers with the object those parts made, as S3 does.
    let again = c
        .complete_multipart("bkt", "mp", &up.upload_id, etags, Default::default())
        .await
        .unwrap();
    assert_eq!(again.manifest.version, r.manifest.version);
    // Abort.
    let up2 = c
        .create_multipart("bkt", "mp2", "owner", PutOptions::default(), (None, None))
        .await
        .unwrap();
    c.upload_part(
        "bkt",
        "mp2",
        &up2.upload_id,
        1,
        body(&p1, 1 << 20),
        PartOptions::default(),
    )
    .await
    .unwrap();
    c.abort_multipart("bkt", "mp2", &up2.upload_id)
        .await
        .unwrap();
    assert!(matches!(
        c.upload_part(
            "bkt",
            "mp2",
            &up2.upload_id,
            2,
            body(b"x", 1),
            PartOptions::default()
        )
        .await
        .err()
        .unwrap(),
        ClientError::NoSuchUpload(_)
    ));
    assert!(matches!(
        c.upload_part(
            "bkt",
            "mp2",
            "nope",
            0,
            body(b"x", 1),
            PartOptions::default()
        )
        .await
        .err()
        .unwrap(),
        ClientError::InvalidArgument(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_chunk_fails_the_read_instead_of_returning_bad_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = random(50_000, 9); // one chunk: under the 64 KiB CDC minimum
    {
        let c = Client::open_dir(dir.path()).unwrap();
        c.create_bucket("bkt", "o").await.unwrap();
        c.put_object("bkt", "k", body(&data, 4096), PutOptions::default())
            .await
            .unwrap();
    }
    // Flip the stored payload of the data chunk through the store's test hook.
    let chunks = cairn_chunkserver::ChunkStore::open(
        &dir.path().join("chunks"),
        cairn_chunkserver::ChunkConfig::default(),
    )
    .unwrap();
    let id = cairn_core::ChunkId::of(&data);
    let mut bad = data.clone();
    bad[1000] ^= 1;
    chunks.corrupt_for_test(&id, &bad).unwrap();
    drop(chunks);
    let c = Client::open_dir(dir.path()).unwrap();
    let g = c
        .get_object("bkt", "k", &VersionSel::Current, None)
        .await
        .unwrap();
    assert!(matches!(
        read_all(g.body).await.err().unwrap(),
        ClientError::Corrupt(_)
    ));
}

fn copy_opts(metadata: MetadataDirective) -> cairn_client::CopyOptions {
    cairn_client::CopyOptions {
        metadata,
        tags: None,
        owner: "owner".into(),
        acl: Vec::new(),
        lock: Default::default(),
        encryption: None,
        source_key: None,
    }
}
