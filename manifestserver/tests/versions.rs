//! The version write path: idempotency, order independence, null versions, the current index.

mod common;

use cairn_manifestserver::{ManifestError, ManifestStats};
use common::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

#[test]
fn apply_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let m = version("b", "k", 1, 10);
    assert_eq!(s.apply(&m).unwrap(), (true, vec![]));
    assert_eq!(s.apply(&m).unwrap(), (false, vec![]));
    assert_eq!(s.get_version("b", "k", m.version).unwrap(), Some(m.clone()));
    assert_eq!(s.current("b", "k").unwrap(), Some(m.clone()));
    assert_eq!(s.head("b", "k").unwrap(), Some(m));
    assert_eq!(
        s.stats().unwrap(),
        ManifestStats {
            buckets: TEST_BUCKETS.len() as u64,
            versions: 1,
            logical_bytes: 10,
            last_seq: 1
        }
    );
    assert_eq!(s.changes_since(0, 100).unwrap().len(), 1);
}

/// Applies `ms` in order and returns what the store shows for every key.
fn snapshot(
    dir: &std::path::Path,
    ms: &[cairn_core::manifest::VersionManifest],
    keys: &[&str],
) -> (Vec<cairn_core::manifest::VersionManifest>, Vec<String>) {
    let s = open_fast(dir);
    for m in ms {
        s.apply(m).unwrap();
    }
    let versions = all_versions(&s, "b", 3);
    let mut cur = Vec::new();
    for k in keys {
        cur.push(format!(
            "{k}: current={:?} head={:?} null={:?}",
            s.current("b", k).unwrap().map(|m| m.version),
            s.head("b", k).unwrap().map(|m| m.version),
            s.get_null_version("b", k).unwrap().map(|m| m.version),
        ));
    }
    let st = s.stats().unwrap();
    cur.push(format!(
        "versions={} bytes={}",
        st.versions, st.logical_bytes
    ));
    (versions, cur)
}

#[test]
fn apply_order_does_not_matter() {
    let keys = ["a", "a/b", "a\0", "z", "ü"];
    let mut rng = StdRng::seed_from_u64(42);
    let mut all = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        for n in 0..12u64 {
            let id = n * 10 + i as u64;
            let m = match rng.gen_range(0..4) {
                0 => marker("b", k, id),
                1 => null_version("b", k, id, id),
                _ => version("b", k, id, id),
            };
            all.push(m);
        }
    }
    // Make sure the newest version of one key is a delete marker and of another a null.
    all.push(marker("b", "a", 1000));
    all.push(null_version("b", "z", 1001, 5));

    let base = tempfile::tempdir().unwrap();
    let (first_versions, first_cur) = snapshot(&base.path().join("0"), &all, &keys);
    for round in 1..4 {
        let mut shuffled = all.clone();
        shuffled.shuffle(&mut rng);
        // Duplicates must not matter either.
        shuffled.extend(shuffled.clone().into_iter().take(10));
        let (v, c) = snapshot(&base.path().join(round.to_string()), &shuffled, &keys);
        assert_eq!(v, first_versions, "round {round}");
        assert_eq!(c, first_cur, "round {round}");
    }

    // And the state is the one S3 defines: only the newest null version survives per key,
    // versions by key then newest first, current = newest unless it is a delete marker.
    let mut expected: Vec<_> = Vec::new();
    for k in keys {
        let mut of_key: Vec<_> = all.iter().filter(|m| m.key == k).cloned().collect();
        of_key.sort_by_key(|m| std::cmp::Reverse(m.version));
        let newest_null = of_key.iter().find(|m| m.null_version).map(|m| m.version);
        of_key.retain(|m| !m.null_version || Some(m.version) == newest_null);
        expected.push((k, of_key));
    }
    expected.sort_by(|a, b| a.0.cmp(b.0));
    let flat: Vec<_> = expected.iter().flat_map(|(_, v)| v.clone()).collect();
    assert_eq!(first_versions, flat);
    let s = open(&base.path().join("0"));
    for (k, vs) in &expected {
        let want = vs.first().filter(|m| !m.delete_marker).cloned();
        assert_eq!(s.current("b", k).unwrap(), want, "key {k:?}");
    }
    assert_eq!(s.current("b", "a").unwrap(), None);
    assert_eq!(s.current("b", "z").unwrap().unwrap().version, vid(1001));
}

#[test]
fn null_version_replaces_older_and_yields_to_newer() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let n1 = null_version("b", "k", 1, 100);
    let v2 = version("b", "k", 2, 20);
    let n3 = null_version("b", "k", 3, 30);
    let n_old = null_version("b", "k", 0, 7);
    assert_eq!(s.apply(&n1).unwrap(), (true, vec![]));
    assert_eq!(s.apply(&v2).unwrap(), (true, vec![]));
    assert_eq!(s.apply(&n3).unwrap(), (true, vec![n1.clone()]));
    assert_eq!(s.get_version("b", "k", n1.version).unwrap(), None);
    assert_eq!(s.get_null_version("b", "k").unwrap(), Some(n3.clone()));
    // An older null version arriving late is not stored.
    assert_eq!(s.apply(&n_old).unwrap(), (false, vec![]));
    assert_eq!(s.get_version("b", "k", n_old.version).unwrap(), None);
    assert_eq!(s.current("b", "k").unwrap(), Some(n3.clone()));
    let st = s.stats().unwrap();
    assert_eq!((st.versions, st.logical_bytes), (2, 50));
    assert_eq!(all_versions(&s, "b", 10), vec![n3.clone(), v2.clone()]);
    // The log shows the replaced null version leaving, then the new one arriving.
    let log: Vec<_> = s
        .changes_since(0, 10)
        .unwrap()
        .into_iter()
        .map(|c| (c.seq, c.version, c.removed))
        .collect();
    assert_eq!(
        log,
        vec![
            (1, n1.version, false),
            (2, v2.version, false),
            (3, n1.version, true),
            (4, n3.version, false)
        ]
    );

    // Replacing the current null version with a null delete marker hides the object.
    let mut dm = marker("b", "k", 4);
    dm.null_version = true;
    assert_eq!(s.apply(&dm).unwrap(), (true, vec![n3]));
    assert_eq!(s.current("b", "k").unwrap(), None);
    assert_eq!(s.head("b", "k").unwrap(), Some(dm));
    // Removing the marker brings back the next newest version.
    s.remove_version("b", "k", vid(4)).unwrap().unwrap();
    assert_eq!(s.current("b", "k").unwrap(), Some(v2));
}

#[test]
fn current_follows_delete_markers_and_removals() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let v1 = version("b", "k", 1, 10);
    let v2 = version("b", "k", 2, 20);
    let d3 = marker("b", "k", 3);
    for m in [&v1, &v2, &d3] {
        s.apply(m).unwrap();
    }
    assert_eq!(s.current("b", "k").unwrap(), None);
    assert_eq!(s.head("b", "k").unwrap(), Some(d3.clone()));

    // Removing an older version leaves the delete marker in charge.
    assert_eq!(s.remove_version("b", "k", vid(1)).unwrap(), Some(v1));
    assert_eq!(s.current("b", "k").unwrap(), None);
    assert_eq!(s.remove_version("b", "k", vid(1)).unwrap(), None);

    assert_eq!(s.remove_version("b", "k", vid(3)).unwrap(), Some(d3));
    assert_eq!(s.current("b", "k").unwrap(), Some(v2.clone()));
    assert_eq!(s.head("b", "k").unwrap(), Some(v2.clone()));

    // An older delete marker arriving late does not hide the newer version.
    s.apply(&marker("b", "k", 0)).unwrap();
    assert_eq!(s.current("b", "k").unwrap(), Some(v2.clone()));

    assert_eq!(s.remove_version("b", "k", vid(2)).unwrap(), Some(v2));
    assert_eq!(s.current("b", "k").unwrap(), None);
    assert_eq!(s.head("b", "k").unwrap().unwrap().version, vid(0));
    s.remove_version("b", "k", vid(0)).unwrap().unwrap();
    assert_eq!(s.head("b", "k").unwrap(), None);

    let st = s.stats().unwrap();
    assert_eq!((st.versions, st.logical_bytes), (0, 0));
    let log = s.changes_since(0, 100).unwrap();
    let removed: Vec<_> = log
        .iter()
        .filter(|c| c.removed)
        .map(|c| c.version)
        .collect();
    assert_eq!(removed, vec![vid(1), vid(3), vid(2), vid(0)]);
    assert!(log
        .iter()
        .any(|c| c.removed && c.delete_marker && c.version == vid(3)));
}

#[test]
fn keys_differing_only_after_nul_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.apply(&version("b", "a", 1, 1)).unwrap();
    s.apply(&version("b", "a\0", 2, 2)).unwrap();
    s.apply(&version("b", "a\0\0", 3, 3)).unwrap();
    s.apply(&marker("b", "a\0", 4)).unwrap();
    assert_eq!(s.head("b", "a").unwrap().unwrap().version, vid(1));
    assert_eq!(s.current("b", "a\0").unwrap(), None);
    assert_eq!(s.current("b", "a\0\0").unwrap().unwrap().version, vid(3));
    let keys: Vec<_> = all_versions(&s, "b", 2)
        .into_iter()
        .map(|m| (m.key, m.version))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("a".to_string(), vid(1)),
            ("a\0".to_string(), vid(4)),
            ("a\0".to_string(), vid(2)),
            ("a\0\0".to_string(), vid(3)),
        ]
    );
}

#[test]
fn rejects_oversized_names() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let long_bucket = "b".repeat(64);
    let long_key = "k".repeat(1025);
    assert!(matches!(
        s.apply(&version(&long_bucket, "k", 1, 1)),
        Err(ManifestError::Invalid(_))
    ));
    assert!(matches!(
        s.apply(&version("b", &long_key, 1, 1)),
        Err(ManifestError::Invalid(_))
    ));
    assert!(matches!(
        s.current("b", &long_key),
        Err(ManifestError::Invalid(_))
    ));
    assert!(matches!(
        s.create_bucket(&bucket(&long_bucket, "o")),
        Err(ManifestError::Invalid(_))
    ));
    // The limits themselves are fine.
    s.create_bucket(&bucket(&"b".repeat(63), "o")).unwrap();
    assert!(
        s.apply(&version(&"b".repeat(63), &"k".repeat(1024), 1, 1))
            .unwrap()
            .0
    );
    assert_eq!(s.stats().unwrap().last_seq, 1);
}

#[test]
fn concurrent_applies_keep_the_log_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_fast(dir.path());
    std::thread::scope(|sc| {
        for t in 0..4u64 {
            let s = &s;
            sc.spawn(move || {
                for i in 0..50u64 {
                    let key = format!("k{}", i % 5);
                    s.apply(&version("b", &key, t * 1000 + i, 1)).unwrap();
                }
            });
        }
    });
    let log = s.changes_since(0, 1000).unwrap();
    let seqs: Vec<u64> = log.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    let st = s.stats().unwrap();
    assert_eq!(
        (st.versions, st.logical_bytes, st.last_seq),
        (200, 200, 200)
    );
    for i in 0..5 {
        let key = format!("k{i}");
        let newest = (0..4u64)
            .flat_map(|t| {
                (0..50u64)
                    .filter(move |n| n % 5 == i)
                    .map(move |n| t * 1000 + n)
            })
            .max()
            .unwrap();
        assert_eq!(s.current("b", &key).unwrap().unwrap().version, vid(newest));
    }
}

#[test]
fn siblings_are_versions_of_other_sites_over_the_same_parent() {
    use cairn_core::VersionId;
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let at = |n: u64, site: u16, parent: Option<VersionId>| {
        let mut m = version("b", "k", n, 1);
        m.version = VersionId::new(1_700_000_000_000 + n, 0, site, 7);
        m.parent = parent;
        m
    };
    let v1 = at(1, 1, None);
    s.apply(&v1).unwrap();
    let local = at(2, 1, Some(v1.version));
    s.apply(&local).unwrap();
    assert_eq!(
        s.count_siblings(&local).unwrap(),
        0,
        "a plain chain of writes"
    );
    // Another write at the same site over v1 (two writers racing here): not a sibling.
    let racing = at(3, 1, Some(v1.version));
    s.apply(&racing).unwrap();
    assert_eq!(s.count_siblings(&racing).unwrap(), 0);
    // A write at site 2 over v1: a sibling of both site 1's writes over v1.
    let remote = at(4, 2, Some(v1.version));
    s.apply(&remote).unwrap();
    assert_eq!(s.count_siblings(&remote).unwrap(), 2);
    assert_eq!(s.count_siblings(&local).unwrap(), 1);
    // A later write over the newest has none; nor has v1.
    let next = at(5, 1, Some(remote.version));
    s.apply(&next).unwrap();
    assert_eq!(s.count_siblings(&next).unwrap(), 0);
    assert_eq!(s.count_siblings(&v1).unwrap(), 0);
}

#[test]
fn a_removal_that_overtakes_its_version_keeps_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let v = version("b", "k", 1, 10);
    // The removal arrives first (over one link), the version later (over another).
    assert!(!s.remove_shipped("b", "k", v.version).unwrap());
    assert_eq!(
        s.apply(&v).unwrap(),
        (false, vec![]),
        "the tombstone keeps it out"
    );
    assert_eq!(s.get_version("b", "k", v.version).unwrap(), None);
    // A stored version is removed as usual.
    let w = version("b", "k", 2, 10);
    s.apply(&w).unwrap();
    assert!(s.remove_shipped("b", "k", w.version).unwrap());
    assert_eq!(s.current("b", "k").unwrap(), None);
    assert!(
        !s.remove_shipped("b", "k", w.version).unwrap(),
        "twice is harmless"
    );
}

/// A bucket's record read without I/O agrees with the full read: from the memtable after a
/// write and after a change, from a table file once its block is cached, and absent when the
/// bucket is gone.
#[test]
fn bucket_records_read_without_io_agree_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.create_bucket(&bucket("photos", "o")).unwrap();
        let now = s.get_bucket_now("photos").unwrap().unwrap();
        assert_eq!(now, s.get_bucket("photos").unwrap());
        s.update_bucket("photos", |b| {
            b.owner = "p".into();
            Ok(())
        })
        .unwrap();
        let changed = s.get_bucket_now("photos").unwrap().unwrap().unwrap();
        assert_eq!(changed.owner, "p");
        assert!(s.get_bucket_now(&"b".repeat(64)).unwrap().is_err());
    }
    // Reopened: what the WAL held is in a table file now; the block holding it may not be
    // cached yet (then the answer is to read it on a thread), and is once it was read.
    let s = open(dir.path());
    if let Some(now) = s.get_bucket_now("photos") {
        assert_eq!(now.unwrap().unwrap().owner, "p");
    }
    let read = s.get_bucket("photos").unwrap().unwrap();
    assert_eq!(read.owner, "p");
    // The full read brought its block into the cache.
    assert_eq!(s.get_bucket_now("photos").unwrap().unwrap(), Some(read));
    s.delete_bucket("photos").unwrap();
    assert_eq!(s.get_bucket_now("photos").unwrap().unwrap(), None);
}
