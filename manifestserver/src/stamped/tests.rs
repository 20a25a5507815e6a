//! Stamped records on one store: stale writes lose, tombstones stay, checks hold, and an
//! older database gains the new column families.

use std::collections::BTreeMap;

use cairn_core::manifest::{Content, ContentHeaders};

use super::*;
use crate::ManifestConfig;

pub(crate) fn open(dir: &std::path::Path) -> ManifestStore {
    ManifestStore::open(dir, ManifestConfig { sync_writes: false }).unwrap()
}

pub(crate) fn version(key: &str, n: u64) -> VersionManifest {
    VersionManifest {
        bucket: "b".into(),
        key: key.into(),
        version: VersionId::new(1_700_000_000_000 + n, 0, 1, 7),
        parent: None,
        null_version: false,
        delete_marker: false,
        mtime_ms: n,
        size: n,
        etag: format!("e{n}"),
        headers: ContentHeaders::default(),
        user_metadata: BTreeMap::new(),
        tags: BTreeMap::new(),
        checksums: BTreeMap::new(),
        parts: None,
        content: Content::Empty,
        owner: "AK".into(),
        acl: Vec::new(),
        lock: Default::default(),
        checksum_type: None,
        owner_grant: true,
        encryption: None,
    }
}

fn put(id: RecordId, record: Option<Record>, stamp: u128, check: StampCheck) -> StampedWrite {
    StampedWrite {
        id,
        record,
        stamp: VersionId(stamp),
        check,
    }
}

fn bucket_write(tag: &str, stamp: u128) -> StampedWrite {
    let mut b = Bucket::new("b", "AK", 1);
    b.tags.insert("t".into(), tag.into());
    put(
        RecordId::Bucket("b".into()),
        Some(Record::Bucket(b)),
        stamp,
        StampCheck::None,
    )
}

#[test]
fn the_greater_stamp_wins_and_deletions_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let id = RecordId::Bucket("b".into());
    assert!(s.put_stamped(&bucket_write("one", 10)).unwrap().applied);
    assert!(
        !s.put_stamped(&bucket_write("old", 5)).unwrap().applied,
        "stale"
    );
    assert!(
        !s.put_stamped(&bucket_write("same", 10)).unwrap().applied,
        "equal"
    );
    let got = s.get_stamped(&id).unwrap();
    assert_eq!(got.stamp, VersionId(10));
    assert!(matches!(&got.record, Some(Record::Bucket(b)) if b.tags["t"] == "one"));
    assert_eq!(s.stats().unwrap().buckets, 1);

    // A deletion at 20: an older write cannot bring it back, a newer one can.
    let del = put(id.clone(), None, 20, StampCheck::None);
    assert!(s.put_stamped(&del).unwrap().applied);
    assert!(!s.put_stamped(&bucket_write("late", 15)).unwrap().applied);
    let got = s.get_stamped(&id).unwrap();
    assert!(got.deleted && got.record.is_none());
    assert_eq!(got.stamp, VersionId(20));
    assert_eq!(s.stats().unwrap().buckets, 0);
    let (page, more) = s.list_stamped_page(false, None, 10).unwrap();
    assert_eq!((page.len(), more), (1, false));
    assert!(page[0].deleted);
    assert!(s.put_stamped(&bucket_write("again", 30)).unwrap().applied);
    assert!(s.get_bucket("b").unwrap().is_some());

    // Checks: create refuses a live record, CAS needs record and stamp.
    let create = StampedWrite {
        check: StampCheck::Absent,
        ..bucket_write("x", 1)
    };
    assert!(matches!(
        s.put_stamped(&create).unwrap_err(),
        ManifestError::BucketExists { .. }
    ));
    let current = s.get_stamped(&id).unwrap();
    let cas = |stamp: u128| StampedWrite {
        check: StampCheck::Is {
            stamp: VersionId(stamp),
            record: current.record.clone().unwrap(),
        },
        ..bucket_write("cas", 31)
    };
    assert!(s.put_stamped(&cas(29)).unwrap_err().is_conflict());
    let out = s.put_stamped(&cas(30)).unwrap();
    assert!(out.applied);
    assert_eq!(out.stamp, VersionId(31));
}

#[test]
fn a_removed_version_keeps_a_tombstone_and_is_never_applied_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create_bucket(&Bucket::new("b", "AK", 1)).unwrap();
    let (v1, v2) = (version("k", 1), version("k", 2));
    s.apply(&v1).unwrap();
    s.apply(&v2).unwrap();
    s.remove_version("b", "k", v2.version).unwrap().unwrap();
    assert!(s.is_removed("b", "k", v2.version).unwrap());
    assert_eq!(s.apply(&v2).unwrap(), (false, Vec::new()), "plain apply");
    let vid = RecordId::Version {
        bucket: "b".into(),
        key: "k".into(),
        version: v2.version,
    };
    let w = put(
        vid.clone(),
        Some(Record::Version(v2.clone())),
        0,
        StampCheck::None,
    );
    assert!(!s.put_stamped(&w).unwrap().applied, "stamped apply");
    assert!(s.get_version("b", "k", v2.version).unwrap().is_none());
    let got = s.get_stamped(&vid).unwrap();
    assert!(got.deleted && got.stamp == TOMBSTONE);
    let state = s.read_key("b", "k", false).unwrap();
    assert_eq!(state.found, Some(v1.clone()));
    assert_eq!(state.tombstones, vec![v2.version]);

    // An in-place update with a greater stamp replaces the metadata, a stale one does not.
    let v1id = RecordId::Version {
        bucket: "b".into(),
        key: "k".into(),
        version: v1.version,
    };
    let mut tagged = v1.clone();
    tagged.tags.insert("a".into(), "1".into());
    let up = put(
        v1id.clone(),
        Some(Record::Version(tagged.clone())),
        7,
        StampCheck::None,
    );
    assert!(s.put_stamped(&up).unwrap().applied);
    assert_eq!(s.current("b", "k").unwrap(), Some(tagged.clone()));
    let stale = put(
        v1id.clone(),
        Some(Record::Version(v1.clone())),
        3,
        StampCheck::None,
    );
    assert!(!s.put_stamped(&stale).unwrap().applied);
    let mut moved = tagged.clone();
    moved.content = Content::Inline(b"x".to_vec().into());
    let bad = put(
        v1id.clone(),
        Some(Record::Version(moved)),
        9,
        StampCheck::None,
    );
    assert!(matches!(
        s.put_stamped(&bad),
        Err(ManifestError::Invalid(_))
    ));

    // Removal with a lock check refuses a protected version.
    let mut held = version("h", 3);
    held.lock.legal_hold = true;
    s.apply(&held).unwrap();
    let hid = RecordId::Version {
        bucket: "b".into(),
        key: "h".into(),
        version: held.version,
    };
    let rm = put(
        hid,
        None,
        0,
        StampCheck::Unlocked {
            now_ms: 1,
            bypass_governance: true,
        },
    );
    assert!(matches!(s.put_stamped(&rm), Err(ManifestError::Locked(_))));
    assert!(s.get_version("b", "h", held.version).unwrap().is_some());
}

#[test]
fn a_database_without_the_new_column_families_gains_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let old = [
            "buckets",
            "versions",
            "current",
            "uploads",
            "parts",
            "changelog",
            "keys",
            "meta",
        ];
        let db = rocksdb::DB::open_cf(&opts, dir.path(), old).unwrap();
        db.put_cf(
            db.cf_handle("buckets").unwrap(),
            b"b",
            Bucket::new("b", "AK", 1).encode(),
        )
        .unwrap();
    }
    let s = open(dir.path());
    assert!(s.get_bucket("b").unwrap().is_some());
    s.apply(&version("k", 1)).unwrap();
    s.remove_version("b", "k", version("k", 1).version).unwrap();
    assert!(s.is_removed("b", "k", version("k", 1).version).unwrap());
    assert!(s.put_stamped(&bucket_write("new", 5)).unwrap().applied);
    s.set_sync_cursor(3, 7, 42).unwrap();
    assert_eq!(s.sync_cursor(3).unwrap(), Some((7, 42)));
    assert_eq!(s.sync_cursor(4).unwrap(), None);
}
