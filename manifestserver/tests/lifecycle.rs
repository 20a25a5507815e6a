//! Buckets, multipart uploads, access keys, the change log and persistence across reopen.

mod common;

use cairn_core::manifest::{AccessKey, Content, Part, Versioning};
use cairn_manifestserver::{ManifestError, UploadsQuery};
use common::*;

fn part(number: u32, size: u64) -> Part {
    Part {
        number,
        md5: [number as u8; 16],
        size,
        mtime_ms: 9,
        content: Content::Empty,
        checksums: Default::default(),
    }
}

fn access_key(id: &str) -> AccessKey {
    AccessKey {
        id: id.to_string(),
        secret: format!("secret-{id}"),
        name: format!("name {id}"),
        created_ms: 3,
        grants: Default::default(),
        limits: Default::default(),
    }
}

#[test]
fn bucket_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_bare(dir.path());
    s.create_bucket(&bucket("photos", "alice")).unwrap();
    s.create_bucket(&bucket("docs", "bob")).unwrap();
    match s.create_bucket(&bucket("photos", "mallory")) {
        Err(ManifestError::BucketExists { name, owner }) => {
            assert_eq!((name.as_str(), owner.as_str()), ("photos", "alice"));
        }
        other => panic!("expected BucketExists, got {other:?}"),
    }
    let names: Vec<_> = s
        .list_buckets()
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, vec!["docs", "photos"]);
    assert_eq!(s.stats().unwrap().buckets, 2);

    let b = s.get_bucket("photos").unwrap().unwrap();
    assert_eq!(b.owner, "alice");
    s.update_bucket("photos", |b| {
        b.versioning = Versioning::Suspended;
        Ok(())
    })
    .unwrap();
    assert_eq!(
        s.get_bucket("photos").unwrap().unwrap().versioning,
        Versioning::Suspended
    );
    assert!(matches!(
        s.update_bucket("nope", |_| Ok(())),
        Err(ManifestError::NoSuchBucket(n)) if n == "nope"
    ));
    assert!(s.get_bucket("nope").unwrap().is_none());

    // A version (even a delete marker) keeps the bucket; so does an upload.
    s.apply(&marker("photos", "k", 1)).unwrap();
    assert!(matches!(
        s.delete_bucket("photos"),
        Err(ManifestError::BucketNotEmpty(_))
    ));
    s.remove_version("photos", "k", vid(1)).unwrap().unwrap();
    s.create_upload(&upload("photos", "big", "u1")).unwrap();
    assert!(matches!(
        s.delete_bucket("photos"),
        Err(ManifestError::BucketNotEmpty(_))
    ));
    s.abort_upload("photos", "big", "u1").unwrap();
    // Records of a bucket whose name extends this one do not count.
    s.create_bucket(&bucket("photos2", "alice")).unwrap();
    s.apply(&version("photos2", "k", 1, 1)).unwrap();
    s.delete_bucket("photos").unwrap();
    assert!(s.get_bucket("photos").unwrap().is_none());
    assert!(matches!(
        s.delete_bucket("photos"),
        Err(ManifestError::NoSuchBucket(_))
    ));
    assert_eq!(s.stats().unwrap().buckets, 2);
    // Nothing lands in a bucket that does not exist (or is being deleted).
    assert!(matches!(
        s.apply(&version("photos", "k", 5, 1)),
        Err(ManifestError::NoSuchBucket(_))
    ));
    assert!(matches!(
        s.create_upload(&upload("photos", "big", "u9")),
        Err(ManifestError::NoSuchBucket(_))
    ));
    // The name can be taken again, and it comes back empty.
    s.create_bucket(&bucket("photos", "carol")).unwrap();
    assert_eq!(s.get_bucket("photos").unwrap().unwrap().owner, "carol");
    assert!(s.head("photos", "k").unwrap().is_none());
}

#[test]
fn uploads_and_parts() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create_upload(&upload("b", "big", "u1")).unwrap();
    s.create_upload(&upload("b", "big", "u2")).unwrap();
    s.create_upload(&upload("b", "dir/x", "u3")).unwrap();
    s.create_upload(&upload("other", "big", "u4")).unwrap();
    assert_eq!(
        s.get_upload("b", "big", "u1").unwrap(),
        Some(upload("b", "big", "u1"))
    );
    assert_eq!(s.get_upload("b", "big", "u4").unwrap(), None);

    assert_eq!(s.put_part("b", "big", "u1", &part(2, 20)).unwrap(), None);
    assert_eq!(s.put_part("b", "big", "u1", &part(1, 10)).unwrap(), None);
    assert_eq!(s.put_part("b", "big", "u1", &part(3, 30)).unwrap(), None);
    assert_eq!(
        s.put_part("b", "big", "u1", &part(2, 21)).unwrap(),
        Some(part(2, 20))
    );
    s.put_part("b", "big", "u2", &part(1, 99)).unwrap();
    assert!(matches!(
        s.put_part("b", "big", "u1", &part(0, 1)),
        Err(ManifestError::Invalid(_))
    ));
    assert!(matches!(
        s.put_part("b", "wrong-key", "u1", &part(1, 1)),
        Err(ManifestError::NoSuchUpload(_))
    ));
    let nums = |v: Vec<Part>| {
        v.into_iter()
            .map(|p| (p.number, p.size))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        nums(s.list_parts("u1", 0, 100).unwrap()),
        vec![(1, 10), (2, 21), (3, 30)]
    );
    assert_eq!(nums(s.list_parts("u1", 1, 1).unwrap()), vec![(2, 21)]);
    assert_eq!(nums(s.list_parts("u1", 3, 100).unwrap()), vec![]);
    assert_eq!(nums(s.list_parts("u1", u32::MAX, 100).unwrap()), vec![]);

    // Listing uploads, with markers and a delimiter.
    let all = s
        .list_uploads(
            "b",
            &UploadsQuery {
                max_uploads: 100,
                ..Default::default()
            },
        )
        .unwrap();
    let ids: Vec<_> = all.uploads.iter().map(|u| u.upload_id.as_str()).collect();
    assert_eq!(ids, vec!["u1", "u2", "u3"]);
    assert!(!all.is_truncated);
    let p = s
        .list_uploads(
            "b",
            &UploadsQuery {
                max_uploads: 1,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(p.is_truncated);
    assert_eq!(
        (
            p.next_key_marker.as_deref(),
            p.next_upload_id_marker.as_deref()
        ),
        (Some("big"), Some("u1"))
    );
    let q = UploadsQuery {
        key_marker: p.next_key_marker,
        upload_id_marker: p.next_upload_id_marker,
        max_uploads: 100,
        ..Default::default()
    };
    let ids: Vec<_> = s
        .list_uploads("b", &q)
        .unwrap()
        .uploads
        .into_iter()
        .map(|u| u.upload_id)
        .collect();
    assert_eq!(ids, vec!["u2", "u3"]);
    let q = UploadsQuery {
        key_marker: Some("big".into()),
        max_uploads: 100,
        ..Default::default()
    };
    let ids: Vec<_> = s
        .list_uploads("b", &q)
        .unwrap()
        .uploads
        .into_iter()
        .map(|u| u.upload_id)
        .collect();
    assert_eq!(ids, vec!["u3"]);
    let q = UploadsQuery {
        delimiter: Some("/".into()),
        max_uploads: 100,
        ..Default::default()
    };
    let p = s.list_uploads("b", &q).unwrap();
    assert_eq!(p.uploads.len(), 2);
    assert_eq!(p.common_prefixes, vec!["dir/".to_string()]);

    // Abort returns the parts and forgets the upload.
    let parts = s.abort_upload("b", "big", "u2").unwrap();
    assert_eq!(nums(parts), vec![(1, 99)]);
    assert!(s.list_parts("u2", 0, 100).unwrap().is_empty());
    assert!(matches!(
        s.put_part("b", "big", "u2", &part(1, 1)),
        Err(ManifestError::NoSuchUpload(id)) if id == "u2"
    ));
    assert!(matches!(
        s.abort_upload("b", "big", "u2"),
        Err(ManifestError::NoSuchUpload(_))
    ));

    // Complete: applies the object, replaces the old null version, drops upload and parts.
    let old = null_version("b", "big", 1, 5);
    s.apply(&old).unwrap();
    let mut done = null_version("b", "big", 2, 61);
    done.parts = Some(3);
    assert_eq!(s.complete_upload("u1", &done).unwrap(), vec![old]);
    assert_eq!(s.current("b", "big").unwrap(), Some(done.clone()));
    assert!(s.get_upload("b", "big", "u1").unwrap().is_none());
    assert!(s.list_parts("u1", 0, 100).unwrap().is_empty());
    assert!(matches!(
        s.complete_upload("u1", &done),
        Err(ManifestError::NoSuchUpload(_))
    ));
    // An upload of another key does not complete this one.
    let wrong = version("b", "big", 3, 1);
    assert!(matches!(
        s.complete_upload("u3", &wrong),
        Err(ManifestError::NoSuchUpload(_))
    ));
    assert_eq!(s.get_version("b", "big", vid(3)).unwrap(), None);
    let st = s.stats().unwrap();
    assert_eq!((st.versions, st.logical_bytes), (1, 61));
}

#[test]
fn access_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.put_key(&access_key("AKB")).unwrap();
    s.put_key(&access_key("AKA")).unwrap();
    assert!(matches!(
        s.put_key(&access_key("AKA")),
        Err(ManifestError::KeyExists(id)) if id == "AKA"
    ));
    assert_eq!(s.get_key("AKA").unwrap(), Some(access_key("AKA")));
    assert_eq!(s.get_key("nope").unwrap(), None);
    let ids: Vec<_> = s.list_keys().unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(ids, vec!["AKA", "AKB"]);
    assert!(s.delete_key("AKA").unwrap());
    assert!(!s.delete_key("AKA").unwrap());
    assert_eq!(s.list_keys().unwrap(), vec![access_key("AKB")]);
}

#[test]
fn change_log_is_gap_free_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        assert_eq!(s.stats().unwrap().last_seq, 0);
        assert!(s.changes_since(0, 10).unwrap().is_empty());
        s.apply(&version("b", "k1", 1, 1)).unwrap();
        s.apply(&version("b", "k1", 1, 1)).unwrap(); // duplicate: no entry
        s.apply(&marker("b", "k2", 2)).unwrap();
        s.remove_version("b", "k1", vid(9)).unwrap(); // absent: no entry
        s.remove_version("b", "k1", vid(1)).unwrap();
        s.create_bucket(&bucket("c", "o")).unwrap(); // buckets are not logged
        s.create_upload(&upload("b", "k3", "u")).unwrap();
        s.complete_upload("u", &version("b", "k3", 3, 3)).unwrap();
        let log = s.changes_since(0, 100).unwrap();
        let got: Vec<_> = log
            .iter()
            .map(|c| (c.seq, c.key.as_str(), c.version, c.delete_marker, c.removed))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "k1", vid(1), false, false),
                (2, "k2", vid(2), true, false),
                (3, "k1", vid(1), false, true),
                (4, "k3", vid(3), false, false),
            ]
        );
        let tail = s.changes_since(1, 2).unwrap();
        assert_eq!(tail.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert!(s.changes_since(4, 10).unwrap().is_empty());
        assert!(s.changes_since(u64::MAX, 10).unwrap().is_empty());
    }
    let s = open(dir.path());
    assert_eq!(s.stats().unwrap().last_seq, 4);
    s.apply(&version("b", "k4", 4, 1)).unwrap();
    let log = s.changes_since(3, 10).unwrap();
    assert_eq!(log.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![4, 5]);
    assert_eq!(log[1].key, "k4");
}

#[test]
fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (versions, stats) = {
        let s = open_bare(dir.path());
        s.create_bucket(&bucket("b", "alice")).unwrap();
        s.apply(&version("b", "a", 1, 10)).unwrap();
        s.apply(&version("b", "a", 2, 20)).unwrap();
        s.apply(&marker("b", "gone", 3)).unwrap();
        s.apply(&null_version("b", "n\0", 4, 40)).unwrap();
        s.create_upload(&upload("b", "up", "u1")).unwrap();
        s.put_part("b", "up", "u1", &part(1, 7)).unwrap();
        s.put_key(&access_key("AK")).unwrap();
        (all_versions(&s, "b", 2), s.stats().unwrap())
    };
    assert_eq!(versions.len(), 4);
    let s = open_bare(dir.path());
    assert_eq!(s.stats().unwrap(), stats);
    assert_eq!(
        (
            stats.buckets,
            stats.versions,
            stats.logical_bytes,
            stats.last_seq
        ),
        (1, 4, 70, 4)
    );
    assert_eq!(s.get_bucket("b").unwrap().unwrap().owner, "alice");
    assert_eq!(all_versions(&s, "b", 3), versions);
    assert_eq!(s.current("b", "a").unwrap().unwrap().version, vid(2));
    assert_eq!(s.current("b", "gone").unwrap(), None);
    assert_eq!(
        s.get_null_version("b", "n\0").unwrap().unwrap().version,
        vid(4)
    );
    assert_eq!(
        s.get_upload("b", "up", "u1").unwrap(),
        Some(upload("b", "up", "u1"))
    );
    assert_eq!(s.list_parts("u1", 0, 10).unwrap(), vec![part(1, 7)]);
    assert_eq!(s.get_key("AK").unwrap(), Some(access_key("AK")));
    let p = s
        .list_objects(
            "b",
            &cairn_manifestserver::ListQuery {
                max_keys: 10,
                ..Default::default()
            },
        )
        .unwrap();
    let keys: Vec<_> = p.objects.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, vec!["a", "n\0"]);
}

/// The child half of `acknowledged_writes_survive_abort` runs when this variable names a dir.
const CRASH_DIR_VAR: &str = "CAIRN_MANIFEST_CRASH_DIR";

#[test]
fn acknowledged_writes_survive_abort() {
    if let Ok(dir) = std::env::var(CRASH_DIR_VAR) {
        // Child: write, then die without dropping (or flushing) the database.
        let s = open_bare(std::path::Path::new(&dir));
        s.create_bucket(&bucket("b", "o")).unwrap();
        for n in 0..20 {
            s.apply(&version("b", &format!("k{}", n % 3), n, 2))
                .unwrap();
        }
        s.put_key(&access_key("AK")).unwrap();
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "acknowledged_writes_survive_abort",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_VAR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must have aborted");
    let s = open_bare(dir.path());
    let st = s.stats().unwrap();
    assert_eq!(
        (st.buckets, st.versions, st.logical_bytes, st.last_seq),
        (1, 20, 40, 20)
    );
    assert_eq!(all_versions(&s, "b", 7).len(), 20);
    assert_eq!(s.current("b", "k1").unwrap().unwrap().version, vid(19));
    assert_eq!(s.changes_since(0, 100).unwrap().len(), 20);
    assert!(s.get_key("AK").unwrap().is_some());
}
