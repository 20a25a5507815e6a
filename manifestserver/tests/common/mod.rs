//! Helpers shared by the manifest-store integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use cairn_core::manifest::{Bucket, Content, ContentHeaders, Upload, VersionManifest, Versioning};
use cairn_core::VersionId;
use cairn_manifestserver::{ManifestConfig, ManifestStore, VersionsQuery};

/// Buckets that [`open`] and [`open_fast`] make sure exist (versions are applied only into
/// existing buckets).
pub const TEST_BUCKETS: &[&str] = &["a", "b", "bb", "other", "u", "u1", "u3"];

/// Opens a store with synced writes (the production setting), with [`TEST_BUCKETS`].
pub fn open(dir: &Path) -> ManifestStore {
    with_buckets(open_bare(dir))
}

/// Opens a store with no bucket created.
pub fn open_bare(dir: &Path) -> ManifestStore {
    ManifestStore::open(dir, ManifestConfig::default()).unwrap()
}

/// Opens a store without fsync, for tests that write thousands of records.
pub fn open_fast(dir: &Path) -> ManifestStore {
    with_buckets(ManifestStore::open(dir, ManifestConfig { sync_writes: false }).unwrap())
}

fn with_buckets(s: ManifestStore) -> ManifestStore {
    for name in TEST_BUCKETS {
        if s.get_bucket(name).unwrap().is_none() {
            s.create_bucket(&bucket(name, "tester")).unwrap();
        }
    }
    s
}

/// A version id whose order follows `n`.
pub fn vid(n: u64) -> VersionId {
    VersionId::new(1_700_000_000_000 + n, 0, 1, 7)
}

pub fn bucket(name: &str, owner: &str) -> Bucket {
    Bucket {
        versioning: Versioning::Enabled,
        ..Bucket::new(name, owner, 1)
    }
}

/// An object version of `size` bytes (content is not inspected by the store).
pub fn version(bucket: &str, key: &str, n: u64, size: u64) -> VersionManifest {
    VersionManifest {
        bucket: bucket.to_string(),
        key: key.to_string(),
        version: vid(n),
        parent: None,
        null_version: false,
        delete_marker: false,
        mtime_ms: n,
        size,
        etag: format!("etag-{n}"),
        headers: ContentHeaders::default(),
        user_metadata: BTreeMap::new(),
        tags: BTreeMap::new(),
        checksums: BTreeMap::new(),
        parts: None,
        content: Content::Empty,
        owner: "AK".to_string(),
        acl: Vec::new(),
        lock: Default::default(),
        checksum_type: None,
        owner_grant: true,
        encryption: None,
    }
}

pub fn null_version(bucket: &str, key: &str, n: u64, size: u64) -> VersionManifest {
    VersionManifest {
        null_version: true,
        ..version(bucket, key, n, size)
    }
}

pub fn marker(bucket: &str, key: &str, n: u64) -> VersionManifest {
    VersionManifest::delete_marker(bucket, key, vid(n), None, false, n)
}

pub fn upload(bucket: &str, key: &str, id: &str) -> Upload {
    Upload {
        bucket: bucket.to_string(),
        key: key.to_string(),
        upload_id: id.to_string(),
        initiated_ms: 5,
        owner: "AK".to_string(),
        headers: ContentHeaders::default(),
        user_metadata: BTreeMap::new(),
        tags: BTreeMap::new(),
        acl: Vec::new(),
        lock: Default::default(),
        checksum_algorithm: None,
        checksum_type: None,
        encryption: None,
    }
}

/// Every version in the bucket, paging through `list_versions` `page` entries at a time.
pub fn all_versions(store: &ManifestStore, bucket: &str, page: usize) -> Vec<VersionManifest> {
    let mut q = VersionsQuery {
        max_keys: page,
        ..Default::default()
    };
    let mut out = Vec::new();
    for round in 0.. {
        assert!(round < 100_000, "listing does not end");
        let p = store.list_versions(bucket, &q).unwrap();
        out.extend(p.versions);
        if !p.is_truncated {
            assert!(p.next_key_marker.is_none());
            return out;
        }
        q.key_marker = p.next_key_marker;
        q.version_marker = p.next_version_marker;
    }
    unreachable!()
}
