//! The version write path: applying a version (with S3's null-version replacement), removing
//! one, and keeping the `current` index equal to "newest version unless it is a delete marker".

use cairn_core::format::Versioned;
use cairn_core::manifest::VersionManifest;
use cairn_core::VersionId;
use rocksdb::ReadOptions;

use crate::db::{Txn, CF_CURRENT, CF_REMOVED, CF_STAMPS, CF_VERSIONS};
use crate::keys;
use crate::{ManifestError, ManifestStore};

/// Most versions [`ManifestStore::count_siblings`] reads.
pub const MAX_SIBLING_SCAN: usize = 1000;

impl ManifestStore {
    /// Adds `m` to the mutation; `(false, [])` (and nothing added) if `m` is already stored,
    /// was removed (it has a tombstone), or a newer null version supersedes it. Otherwise
    /// returns the null versions it replaces (each gets a tombstone).
    pub(crate) fn apply_in(
        &self,
        txn: &mut Txn<'_>,
        m: &VersionManifest,
    ) -> Result<(bool, Vec<VersionManifest>), ManifestError> {
        // Under the write lock, so a version cannot land in a bucket being deleted (it would
        // reappear if the name were created again).
        self.require_bucket(&m.bucket)?;
        let vkey = keys::version_key(&m.bucket, &m.key, m.version);
        if self
            .db
            .get_pinned_cf(self.cf(CF_VERSIONS), &vkey)?
            .is_some()
        {
            return Ok((false, Vec::new()));
        }
        if self.db.get_pinned_cf(self.cf(CF_REMOVED), &vkey)?.is_some() {
            return Ok((false, Vec::new()));
        }
        let (removed, newest_other) = if m.null_version {
            let all = self.versions_of(&m.bucket, &m.key)?;
            if all.iter().any(|v| v.null_version && v.version > m.version) {
                return Ok((false, Vec::new()));
            }
            let (nulls, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|v| v.null_version);
            (nulls, others.into_iter().next())
        } else {
            (Vec::new(), self.newest_except(&m.bucket, &m.key, None)?)
        };

        let versions = self.cf(CF_VERSIONS);
        txn.batch.put_cf(versions, &vkey, m.encode());
        for r in &removed {
            let rkey = keys::version_key(&r.bucket, &r.key, r.version);
            self.tombstone_in(txn, &rkey);
            txn.batch.delete_cf(versions, rkey);
            // Readers of the log (site links, anti-entropy) must see the replaced version go.
            self.log_change(txn, r, true);
            self.log_stats_removed(txn, r);
        }
        let newest = match &newest_other {
            Some(n) if n.version > m.version => n,
            _ => m,
        };
        self.set_current(txn, &m.bucket, &m.key, Some(newest))?;
        self.log_change(txn, m, false);
        self.count_version(txn, m, 1);
        let stats = &mut txn.state.stats;
        stats.versions += 1;
        stats.logical_bytes = stats.logical_bytes.saturating_add(m.size);
        Ok((true, removed))
    }

    /// `NoSuchBucket` unless the bucket exists.
    pub(crate) fn require_bucket(&self, bucket: &str) -> Result<(), ManifestError> {
        match self
            .get_rec::<cairn_core::manifest::Bucket>(crate::db::CF_BUCKETS, bucket.as_bytes())?
        {
            Some(_) => Ok(()),
            None => Err(ManifestError::NoSuchBucket(bucket.to_string())),
        }
    }

    /// Adds the removal of one version to the mutation; `None` (nothing added) if absent.
    pub(crate) fn remove_in(
        &self,
        txn: &mut Txn<'_>,
        bucket: &str,
        key: &str,
        version: VersionId,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let vkey = keys::version_key(bucket, key, version);
        let Some(r) = self.get_rec::<VersionManifest>(CF_VERSIONS, &vkey)? else {
            return Ok(None);
        };
        txn.batch.delete_cf(self.cf(CF_VERSIONS), &vkey);
        self.tombstone_in(txn, &vkey);
        let next = self.newest_except(bucket, key, Some(version))?;
        // Only the newest version's removal changes what is current.
        if next.as_ref().is_none_or(|n| n.version < version) {
            self.set_current(txn, bucket, key, next.as_ref())?;
        }
        self.log_change(txn, &r, true);
        self.log_stats_removed(txn, &r);
        Ok(Some(r))
    }

    /// Adds a tombstone for the version stored under `vkey` (and drops its stamp): replicas
    /// and anti-entropy then never bring it back (for as long as it is kept: see
    /// `history.rs`). Call it before logging the removal: the tombstone names the entry the
    /// removal is logged as (the next one).
    pub(crate) fn tombstone_in(&self, txn: &mut Txn<'_>, vkey: &[u8]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        txn.batch.put_cf(
            self.cf(CF_REMOVED),
            vkey,
            crate::history::tombstone_value(now, txn.state.last_seq + 1),
        );
        txn.batch
            .delete_cf(self.cf(CF_STAMPS), crate::stamped::version_stamp_key(vkey));
    }

    fn log_stats_removed(&self, txn: &mut Txn<'_>, r: &VersionManifest) {
        self.count_version(txn, r, -1);
        let stats = &mut txn.state.stats;
        stats.versions = stats.versions.saturating_sub(1);
        stats.logical_bytes = stats.logical_bytes.saturating_sub(r.size);
    }

    /// Points `current` at `newest` (the key's newest version after the mutation), or removes
    /// the entry if there is none or it is a delete marker.
    fn set_current(
        &self,
        txn: &mut Txn<'_>,
        bucket: &str,
        key: &str,
        newest: Option<&VersionManifest>,
    ) -> Result<(), ManifestError> {
        let ck = keys::current_key(bucket, key);
        self.count_current(txn, bucket, &ck, newest)?;
        let cf = self.cf(CF_CURRENT);
        match newest {
            Some(n) if !n.delete_marker => txn.batch.put_cf(cf, ck, n.encode()),
            _ => txn.batch.delete_cf(cf, ck),
        }
        Ok(())
    }

    /// Read options bounding a scan to one key's versions.
    pub(crate) fn key_versions_opts(bucket: &str, key: &str) -> (Vec<u8>, ReadOptions) {
        let start = keys::terminated_key(bucket, key);
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(start.clone());
        if let Some(end) = keys::prefix_end(&start) {
            ro.set_iterate_upper_bound(end);
        }
        (start, ro)
    }

    /// The key's newest stored version other than `except`.
    pub(crate) fn newest_except(
        &self,
        bucket: &str,
        key: &str,
        except: Option<VersionId>,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let (start, ro) = Self::key_versions_opts(bucket, key);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_VERSIONS), ro);
        it.seek(&start);
        while let Some((k, v)) = it.item() {
            let id = keys::parse_inverted_version(&k[start.len()..])?;
            if Some(id) != except {
                return Ok(Some(VersionManifest::decode(v)?));
            }
            it.next();
        }
        it.status()?;
        Ok(None)
    }

    /// How many versions of `m`'s key made at another site share its parent (its *siblings*:
    /// versions written at two sites at once, each over the same version; two writes at one
    /// site are ordered by its clock, the later one wins as in S3). Reads the key's versions
    /// newer than that parent, newest first, at most [`MAX_SIBLING_SCAN`]; in the usual case
    /// (no concurrent write) that is `m` and its parent alone. `m` itself need not be stored
    /// here.
    pub fn count_siblings(&self, m: &VersionManifest) -> Result<u32, ManifestError> {
        self.count_siblings_of(&m.bucket, &m.key, m.version, m.parent)
    }

    /// [`ManifestStore::count_siblings`] of version `version` of `bucket/key`, made over
    /// `parent` (what the manifest service is asked).
    pub fn count_siblings_of(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
        parent: Option<VersionId>,
    ) -> Result<u32, ManifestError> {
        keys::check_bucket(bucket)?;
        keys::check_key(key)?;
        let (start, ro) = Self::key_versions_opts(bucket, key);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_VERSIONS), ro);
        it.seek(&start);
        let mut n = 0;
        let mut read = 0;
        while let Some(v) = it.value() {
            read += 1;
            if read > MAX_SIBLING_SCAN {
                break;
            }
            let other = VersionManifest::decode(v)?;
            if parent.is_some_and(|p| other.version <= p) {
                break;
            }
            if other.version.site() != version.site() && other.parent == parent {
                n += 1;
            }
            it.next();
        }
        it.status()?;
        Ok(n)
    }

    /// Every stored version of a key, newest first.
    pub(crate) fn versions_of(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<VersionManifest>, ManifestError> {
        let (start, ro) = Self::key_versions_opts(bucket, key);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_VERSIONS), ro);
        it.seek(&start);
        let mut out = Vec::new();
        while let Some(v) = it.value() {
            out.push(VersionManifest::decode(v)?);
            it.next();
        }
        it.status()?;
        Ok(out)
    }
}
