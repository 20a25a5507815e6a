//! Per-bucket usage counters, kept in the same write batch as the versions they count, so they
//! are exact at every commit without a scan: how many objects and versions a bucket holds and
//! their logical bytes. Quotas are checked against them (`cairn bucket quota`).
//!
//! Each mutation collects signed deltas per bucket in its [`Txn`]; the commit adds them to the
//! stored counters (`meta` key `usage/<bucket>`) under the write lock. Which key is current
//! changes with a version's apply or removal; the mutation reads the key's current entry
//! before it changes it (or the change an earlier step of the same mutation made).
//! A store written before the counters existed fills them by one scan at open.

use std::collections::BTreeMap;

use cairn_core::format::Versioned;
use cairn_core::manifest::VersionManifest;
use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::db::{Txn, CF_CURRENT, CF_META, CF_VERSIONS};
use crate::keys;
use crate::{ManifestError, ManifestStore};

/// Prefix of the counters' keys in `meta`.
const USAGE_PREFIX: &[u8] = b"usage/";
/// Marks a store whose counters are kept (filled once at open when missing).
const USAGE_KEPT_KEY: &[u8] = b"usage-kept";

/// What a bucket holds, as counted by the store of one of its replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketUsage {
    /// Keys whose current version is an object (not a delete marker): what a listing shows.
    pub objects: u64,
    /// Sum of the sizes of the current objects.
    pub current_bytes: u64,
    /// Stored versions that are objects, current and noncurrent (each occupies storage; in an
    /// unversioned bucket this equals `objects`). Object quotas count these.
    pub versions: u64,
    /// Stored delete markers.
    pub delete_markers: u64,
    /// Sum of the sizes of every stored version (what the bucket holds before dedup and
    /// compression). Byte quotas count these.
    pub logical_bytes: u64,
}

impl Versioned for BucketUsage {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "bucket usage";
}

impl BucketUsage {
    /// The element-wise greatest of two counts (replicas that disagree while one catches up:
    /// the larger count is the safe one to check a quota against).
    pub fn max(self, o: BucketUsage) -> BucketUsage {
        BucketUsage {
            objects: self.objects.max(o.objects),
            current_bytes: self.current_bytes.max(o.current_bytes),
            versions: self.versions.max(o.versions),
            delete_markers: self.delete_markers.max(o.delete_markers),
            logical_bytes: self.logical_bytes.max(o.logical_bytes),
        }
    }

    fn add(&mut self, d: &UsageDelta) {
        fn add(v: &mut u64, d: i64) {
            *v = v.saturating_add_signed(d);
        }
        add(&mut self.objects, d.objects);
        add(&mut self.current_bytes, d.current_bytes);
        add(&mut self.versions, d.versions);
        add(&mut self.delete_markers, d.delete_markers);
        add(&mut self.logical_bytes, d.logical_bytes);
    }
}

/// A mutation's change to one bucket's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct UsageDelta {
    objects: i64,
    current_bytes: i64,
    versions: i64,
    delete_markers: i64,
    logical_bytes: i64,
}

/// A mutation's changes to usage: deltas per bucket, and the current entries it has already
/// changed (by current-index key: the current object's size, `None` when there is none).
#[derive(Debug, Default)]
pub(crate) struct UsageChanges {
    deltas: BTreeMap<String, UsageDelta>,
    current: BTreeMap<Vec<u8>, Option<u64>>,
}

fn usage_key(bucket: &str) -> Vec<u8> {
    let mut k = USAGE_PREFIX.to_vec();
    k.extend_from_slice(bucket.as_bytes());
    k
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl ManifestStore {
    /// Counts a version stored (`sign` 1) or removed (`sign` -1) by the mutation.
    pub(crate) fn count_version(&self, txn: &mut Txn<'_>, m: &VersionManifest, sign: i64) {
        let d = txn.usage.deltas.entry(m.bucket.clone()).or_default();
        if m.delete_marker {
            d.delete_markers += sign;
        } else {
            d.versions += sign;
            d.logical_bytes += sign * signed(m.size);
        }
    }

    /// Counts the change of a key's current object to `new` (`None`: no current object).
    pub(crate) fn count_current(
        &self,
        txn: &mut Txn<'_>,
        bucket: &str,
        ck: &[u8],
        new: Option<&VersionManifest>,
    ) -> Result<(), ManifestError> {
        let old = match txn.usage.current.get(ck) {
            Some(size) => *size,
            None => match self.db.get_pinned_cf(self.cf(CF_CURRENT), ck)? {
                Some(v) => Some(VersionManifest::decode(&v)?.size),
                None => None,
            },
        };
        let new = new.filter(|n| !n.delete_marker).map(|n| n.size);
        txn.usage.current.insert(ck.to_vec(), new);
        if old == new {
            return Ok(());
        }
        let d = txn.usage.deltas.entry(bucket.to_string()).or_default();
        if let Some(s) = old {
            d.objects -= 1;
            d.current_bytes -= signed(s);
        }
        if let Some(s) = new {
            d.objects += 1;
            d.current_bytes += signed(s);
        }
        Ok(())
    }

    /// Adds the mutation's counter changes to its batch (under the write lock, so the stored
    /// counters read here are the latest).
    pub(crate) fn write_usage(&self, txn: &mut Txn<'_>) -> Result<(), ManifestError> {
        let deltas = std::mem::take(&mut txn.usage.deltas);
        for (bucket, d) in deltas {
            if d == UsageDelta::default() {
                continue;
            }
            let key = usage_key(&bucket);
            let mut u = self
                .get_rec::<BucketUsage>(CF_META, &key)?
                .unwrap_or_default();
            u.add(&d);
            txn.batch.put_cf(self.cf(CF_META), key, u.encode());
        }
        Ok(())
    }

    /// Drops a deleted bucket's counters with the mutation.
    pub(crate) fn forget_usage(&self, txn: &mut Txn<'_>, bucket: &str) {
        txn.batch.delete_cf(self.cf(CF_META), usage_key(bucket));
    }

    /// What `bucket` holds, as this store counts it (zeros for a bucket it has no versions of).
    pub fn bucket_usage(&self, bucket: &str) -> Result<BucketUsage, ManifestError> {
        keys::check_bucket(bucket)?;
        Ok(self
            .get_rec::<BucketUsage>(CF_META, &usage_key(bucket))?
            .unwrap_or_default())
    }

    /// Every bucket's usage, counted by a scan of its versions and current entries.
    fn scan_usage(&self) -> Result<BTreeMap<String, BucketUsage>, ManifestError> {
        let mut usage: BTreeMap<String, BucketUsage> = BTreeMap::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_VERSIONS), IteratorMode::Start)
        {
            let (_, v) = item?;
            let m = VersionManifest::decode(&v)?;
            let u = usage.entry(m.bucket).or_default();
            if m.delete_marker {
                u.delete_markers += 1;
            } else {
                u.versions += 1;
                u.logical_bytes = u.logical_bytes.saturating_add(m.size);
            }
        }
        for item in self
            .db
            .iterator_cf(self.cf(CF_CURRENT), IteratorMode::Start)
        {
            let (_, v) = item?;
            let m = VersionManifest::decode(&v)?;
            if m.delete_marker {
                continue;
            }
            let u = usage.entry(m.bucket).or_default();
            u.objects += 1;
            u.current_bytes = u.current_bytes.saturating_add(m.size);
        }
        Ok(usage)
    }

    /// Removes every counter and the mark that they are kept, as a store an older release
    /// wrote has none: the next open counts them again by a scan.
    pub fn forget_usage_counters(&self) -> Result<(), ManifestError> {
        let meta = self.cf(CF_META);
        let mut batch = WriteBatch::default();
        for item in self
            .db
            .iterator_cf(meta, IteratorMode::From(USAGE_PREFIX, Direction::Forward))
        {
            let (k, _) = item?;
            if !k.starts_with(USAGE_PREFIX) {
                break;
            }
            batch.delete_cf(meta, k);
        }
        batch.delete_cf(meta, USAGE_KEPT_KEY);
        self.db.write_opt(batch, &self.write_opts)?;
        Ok(())
    }

    /// Counts every bucket's usage by one scan when the store has never kept the counters (a
    /// store written by an older release); at open, before any mutation.
    pub(crate) fn fill_usage_once(&self) -> Result<(), ManifestError> {
        let meta = self.cf(CF_META);
        if self.db.get_pinned_cf(meta, USAGE_KEPT_KEY)?.is_some() {
            return Ok(());
        }
        let usage = self.scan_usage()?;
        // Counters left by an earlier, interrupted fill are replaced.
        self.forget_usage_counters()?;
        let mut batch = WriteBatch::default();
        let buckets = usage.len();
        for (bucket, u) in usage {
            batch.put_cf(meta, usage_key(&bucket), u.encode());
        }
        batch.put_cf(meta, USAGE_KEPT_KEY, [1u8]);
        self.db.write_opt(batch, &self.write_opts)?;
        tracing::info!(
            buckets,
            "counted bucket usage once (store written before it was kept)"
        );
        Ok(())
    }
}
