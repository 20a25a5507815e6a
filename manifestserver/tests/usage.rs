//! Per-bucket usage counters: kept by every mutation, equal at every step to what a listing
//! counts, and filled by a scan at the first open of a store written before they were kept.

mod common;

use std::collections::BTreeMap;

use cairn_core::manifest::{VersionManifest, Versioning};
use cairn_manifestserver::{BucketUsage, ListQuery, ManifestStore};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What the bucket holds, counted from its listings (the oracle the counters must match).
fn counted(s: &ManifestStore, bucket: &str) -> BucketUsage {
    let mut u = BucketUsage::default();
    for m in all_versions(s, bucket, 7) {
        if m.delete_marker {
            u.delete_markers += 1;
        } else {
            u.versions += 1;
            u.logical_bytes += m.size;
        }
    }
    let mut q = ListQuery {
        max_keys: 5,
        ..ListQuery::default()
    };
    loop {
        let page = s.list_objects(bucket, &q).unwrap();
        for m in &page.objects {
            u.objects += 1;
            u.current_bytes += m.size;
        }
        if !page.is_truncated {
            break;
        }
        q.start_after = page.next_marker.clone();
    }
    u
}

/// Random applies (versions, null versions, delete markers, in any order, some twice) and
/// removals in two buckets, one versioned and one not: after each step the counters equal the
/// listings' count, and the other bucket's counters do not move.
#[test]
fn counters_equal_the_listings_after_every_mutation() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_fast(dir.path());
    s.create_bucket(&bucket("vers", "AK")).unwrap();
    let mut plain = bucket("plain", "AK");
    plain.versioning = Versioning::Unversioned;
    s.create_bucket(&plain).unwrap();
    let mut rng = StdRng::seed_from_u64(14);
    let mut applied: Vec<VersionManifest> = Vec::new();
    for step in 0..400u64 {
        let b = if rng.gen_bool(0.5) { "vers" } else { "plain" };
        let key = format!("k{}", rng.gen_range(0..8));
        // Version numbers out of order, so older versions land after newer ones.
        let n = rng.gen_range(1..10_000);
        let before_other = s
            .bucket_usage(if b == "vers" { "plain" } else { "vers" })
            .unwrap();
        match rng.gen_range(0..10) {
            0..=3 => {
                let m = if b == "plain" {
                    null_version(b, &key, n, rng.gen_range(0..1000))
                } else {
                    version(b, &key, n, rng.gen_range(0..1000))
                };
                s.apply(&m).unwrap();
                applied.push(m);
            }
            4 => {
                let m = marker(b, &key, n);
                s.apply(&m).unwrap();
                applied.push(m);
            }
            5 if !applied.is_empty() => {
                // Applying again changes nothing.
                let m = applied[rng.gen_range(0..applied.len())].clone();
                s.apply(&m).unwrap();
            }
            _ => {
                let vs = all_versions(&s, b, 50);
                if !vs.is_empty() {
                    let m = &vs[rng.gen_range(0..vs.len())];
                    s.remove_version(&m.bucket, &m.key, m.version).unwrap();
                }
            }
        }
        assert_eq!(s.bucket_usage(b).unwrap(), counted(&s, b), "step {step}");
        let other = if b == "vers" { "plain" } else { "vers" };
        assert_eq!(s.bucket_usage(other).unwrap(), before_other, "step {step}");
    }
    let u = s.bucket_usage("vers").unwrap();
    assert!(
        u.versions > 0 && u.delete_markers > 0 && u.objects > 0,
        "{u:?}"
    );
}

/// A store whose counters are missing (as an older release wrote it) counts them by a scan at
/// open, arriving where the mutations had; later mutations go on from there.
#[test]
fn a_store_without_counters_counts_them_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let before: BTreeMap<&str, BucketUsage>;
    {
        let s = open(dir.path());
        s.create_bucket(&bucket("b1", "AK")).unwrap();
        s.create_bucket(&bucket("b2", "AK")).unwrap();
        for n in 1..=20 {
            s.apply(&version(
                if n % 3 == 0 { "b2" } else { "b1" },
                &format!("k{}", n % 7),
                n,
                n * 100,
            ))
            .unwrap();
        }
        s.apply(&marker("b1", "k1", 30)).unwrap();
        s.remove_version("b1", "k2", vid(2)).unwrap();
        before = [
            ("b1", s.bucket_usage("b1").unwrap()),
            ("b2", s.bucket_usage("b2").unwrap()),
        ]
        .into();
        assert_eq!(before["b1"], counted(&s, "b1"));
        assert_eq!(before["b2"], counted(&s, "b2"));
        s.forget_usage_counters().unwrap();
        assert_eq!(s.bucket_usage("b1").unwrap(), BucketUsage::default());
    }
    let s = open(dir.path());
    assert_eq!(s.bucket_usage("b1").unwrap(), before["b1"]);
    assert_eq!(s.bucket_usage("b2").unwrap(), before["b2"]);
    s.apply(&version("b2", "new", 40, 5)).unwrap();
    assert_eq!(s.bucket_usage("b2").unwrap(), counted(&s, "b2"));
}
