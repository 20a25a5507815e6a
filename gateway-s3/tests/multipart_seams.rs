//! Multipart uploads whose seams completion cuts again, through the AWS SDK: they dedup like
//! single PUTs (versions of a large file, each with a small insertion, uploaded in 8 MiB parts
//! as a backup tool does), and read back as their parts whatever the part sizes and however
//! the parts were made (uploads, copies of ranges or of whole multipart objects).

mod common;

use common::*;
use rand::{Rng, RngCore, SeedableRng};

/// The part size the aws cli uses by default.
const PART: usize = 8 << 20;
const MIB: usize = 1 << 20;
const HOUR_MS: u64 = 3_600_000;

/// Uploads `data` as `key` in `PART`-sized parts, as the aws cli does for large files.
async fn upload(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, data: &[u8]) {
    let parts: Vec<PartFrom> = data.chunks(PART).map(PartFrom::Bytes).collect();
    multipart_upload(s3, bucket, key, &parts).await;
}

/// Bytes of `key`: all of them, part `part`, or a `range` (`bytes=first-last`).
async fn get(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    part: Option<i32>,
    range: Option<(usize, usize)>,
) -> Vec<u8> {
    let got = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_part_number(part)
        .set_range(range.map(|(a, b)| format!("bytes={a}-{b}")))
        .send()
        .await
        .unwrap();
    got.body.collect().await.unwrap().into_bytes().to_vec()
}

/// Random bytes, sometimes with a run of zeros.
fn bytes(rng: &mut impl Rng, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    rng.fill_bytes(&mut out);
    if len > 0 && rng.gen_bool(0.3) {
        let a = rng.gen_range(0..len);
        let b = rng.gen_range(a..=len.min(a + 3 * MIB));
        out[a..b].fill(0);
    }
    out
}

/// Stores ten versions of a 32 MB file, each the previous one with 100 bytes inserted at a
/// random place, in a versioned bucket of a new site: in 8 MiB parts, or each as one PUT.
/// Returns the site's stored bytes before and after a GC pass, checking every version reads
/// back as written.
async fn ten_edited_versions(size: usize, in_parts: bool) -> (u64, u64) {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("backups").send().await.unwrap();
    enable_versioning(&s3, "backups").await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let mut data = vec![0u8; size];
    rng.fill_bytes(&mut data);
    let mut versions = Vec::new();
    for v in 0..10 {
        if v > 0 {
            let at = rng.gen_range(0..=data.len());
            let mut insert = [0u8; 100];
            rng.fill_bytes(&mut insert);
            data.splice(at..at, insert);
        }
        match in_parts {
            true => upload(&s3, "backups", "disk.img", &data).await,
            false => {
                put(&s3, "backups", "disk.img", &data).await;
            }
        }
        versions.push(md5_hex(&data));
    }
    let uncollected = server.client.stats().await.unwrap().physical_bytes;
    // The parts' own seam chunks are garbage once completion cut the seams again.
    server
        .client
        .run_gc(cairn_client::now_ms() + HOUR_MS + 60_000, HOUR_MS, &|_| {})
        .await
        .unwrap();
    let collected = server.client.stats().await.unwrap().physical_bytes;
    let listed = s3
        .list_object_versions()
        .bucket("backups")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.versions().len(), 10);
    for (listed, md5) in listed.versions().iter().rev().zip(&versions) {
        let body = read(&s3, "backups", "disk.img", listed.version_id()).await;
        assert_eq!(&md5_hex(&body), md5);
    }
    server.stop().await.unwrap();
    (uncollected, collected)
}

/// The versions of [`ten_edited_versions`] uploaded in 8 MiB parts cost at most 1.1 times one
/// copy once the parts' own seam chunks are collected, and no more than the same versions
/// stored by single PUTs (each part is cut on its own, so without re-cutting the seams at
/// completion every shifted seam stored new chunks for good: 1.35 times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_edited_versions_uploaded_in_parts_cost_under_1_1_copies() {
    const SIZE: usize = 32_000_000;
    let (uncollected, in_parts) = ten_edited_versions(SIZE, true).await;
    let (_, single) = ten_edited_versions(SIZE, false).await;
    let ratio = |bytes: u64| bytes as f64 / SIZE as f64;
    println!(
        "10 versions of {SIZE} bytes in {PART}-byte parts: {in_parts} stored bytes, {:.3} x \
         one copy ({uncollected} before GC, {:.3} x); as single PUTs: {single}, {:.3} x",
        ratio(in_parts),
        ratio(uncollected),
        ratio(single),
    );
    assert!(ratio(in_parts) <= 1.1, "{:.3} x one copy", ratio(in_parts));
    // Tree nodes differ (a multipart object's tree has a subtree per part); chunks do not.
    assert!(
        in_parts <= single + (64 << 10),
        "in parts {in_parts} bytes, as single PUTs {single}"
    );
}

/// Random uploads (5 MiB parts and a bit more, last parts from empty to a few MiB, below the
/// CDC minimum included), some parts copied from ranges of a multipart object or from all of
/// it: every completed object reads back as its parts, whole, by part number and in ranges
/// across each seam.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_objects_read_as_their_parts_whatever_the_sizes_and_copies() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("seams").send().await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    // The copy source: a multipart object whose own seams were re-cut.
    let source = bytes(&mut rng, 12 * MIB + 12_345);
    let parts: Vec<PartFrom> = source.chunks(5 * MIB).map(PartFrom::Bytes).collect();
    multipart_upload(&s3, "seams", "source", &parts).await;
    assert!(get(&s3, "seams", "source", None, None).await == source);
    let lasts = [0, 1, 100, (64 << 10) - 1, (64 << 10) + 1];
    for round in 0..8 {
        let n = rng.gen_range(2..=4);
        let mut made: Vec<Vec<u8>> = Vec::new();
        let mut copies = Vec::new();
        for i in 0..n {
            let len = match (i + 1 == n, rng.gen_range(0..4)) {
                (true, 0) => rng.gen_range(1..3 * MIB),
                (true, _) => lasts[rng.gen_range(0..lasts.len())],
                (false, 0) => 5 * MIB,
                (false, _) => 5 * MIB + rng.gen_range(1..MIB),
            };
            let copy = match rng.gen_range(0..4) {
                0 => Some(None),
                1 if len > 0 => {
                    let a = rng.gen_range(0..=source.len() - len);
                    Some(Some((a, a + len - 1)))
                }
                _ => None,
            };
            match copy {
                Some(range) => {
                    let (a, b) = range.unwrap_or((0, source.len() - 1));
                    made.push(source[a..=b].to_vec());
                }
                None => made.push(bytes(&mut rng, len)),
            }
            copies.push(copy);
        }
        let parts: Vec<PartFrom> = made
            .iter()
            .zip(&copies)
            .map(|(bytes, copy)| match copy {
                Some(range) => PartFrom::Copy("source", *range),
                None => PartFrom::Bytes(bytes),
            })
            .collect();
        let key = format!("object-{round}");
        multipart_upload(&s3, "seams", &key, &parts).await;
        let whole = made.concat();
        let sizes: Vec<usize> = made.iter().map(Vec::len).collect();
        assert!(
            get(&s3, "seams", &key, None, None).await == whole,
            "round {round}: parts of {sizes:?} bytes"
        );
        let mut at = 0;
        for (i, part) in made.iter().enumerate() {
            let number = i as i32 + 1;
            if !part.is_empty() || i == 0 {
                let got = get(&s3, "seams", &key, Some(number), None).await;
                assert!(got == *part, "round {round}: part {number} of {sizes:?}");
            }
            at += part.len();
            if at > 0 && at < whole.len() {
                let (a, b) = (
                    at.saturating_sub(300_000),
                    (at + 300_000).min(whole.len()) - 1,
                );
                let got = get(&s3, "seams", &key, None, Some((a, b))).await;
                assert!(
                    got == whole[a..=b],
                    "round {round}: bytes {a}-{b} of {sizes:?}"
                );
            }
        }
    }
    server.stop().await.unwrap();
}
