//! Where a client's metadata goes: [`ManifestBackend`] is what the client library keeps buckets,
//! versions, uploads and access keys in — this node's [`ManifestStore`] for a single-node site,
//! or the site's manifest servers through a replicating backend
//! ([`crate::ReplicatedManifests`]). Methods block: callers run them on a blocking thread (the
//! client does, on tokio's blocking pool), so a local store pays no hand-off and a remote
//! backend may wait on the network.
//!
//! Checks that must see the record they change (conditional writes, object lock, in-place
//! updates) are part of the call, so a backend runs them where the record is: under the
//! store's write lock locally, on the record's primary replica remotely. In-place updates take
//! a `FnMut` because a remote backend may have to run it again when the record changed between
//! its read and its compare-and-swap.

use cairn_core::manifest::{AccessKey, Bucket, Change, Part, Upload, VersionManifest};
use cairn_core::VersionId;
use serde::{Deserialize, Serialize};

use crate::history::{HistoryState, TrimPolicy, TrimReport};
use crate::{
    ListPage, ListQuery, ManifestError, ManifestStats, ManifestStore, UploadsPage, UploadsQuery,
    VersionsPage, VersionsQuery, WriteCondition,
};

/// An in-place change of a record: it may refuse.
pub type InPlace<'a, T> = &'a mut (dyn FnMut(&mut T) -> Result<(), ManifestError> + Send);

/// Which version of a key [`ManifestBackend::read_object`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WantedVersion {
    /// The newest version, delete markers included: the current object when it is not a
    /// delete marker (S3 names the marker in its NoSuchKey answer when it is).
    Newest,
    /// The key's null version.
    Null,
    /// One version by id.
    Id(VersionId),
}

/// What [`ManifestBackend::read_object`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectLookup {
    /// The bucket's record; `None`: there is no such bucket.
    pub bucket: Option<Bucket>,
    /// The version asked for, if it exists.
    pub version: Option<VersionManifest>,
    /// For the newest version: how many siblings it has (versions of the key written over
    /// the same parent at another site); 0 where the backend does not track them.
    pub siblings: u32,
}

/// What [`ManifestBackend::apply_when`] returns: whether the version was new, and the null
/// versions it replaced.
pub type Applied = (bool, Vec<VersionManifest>);

/// A durability wait of [`ManifestBackend::durable`].
pub type DurableWait =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ManifestError>> + Send>>;

/// A metadata store as the client library sees it (see [`ManifestStore`] for what each
/// operation means).
pub trait ManifestBackend: Send + Sync + 'static {
    // ---- buckets ----
    /// Creates a bucket (`BucketExists` if the name is taken).
    fn create_bucket(&self, bucket: &Bucket) -> Result<(), ManifestError>;
    /// A bucket's record.
    fn get_bucket(&self, name: &str) -> Result<Option<Bucket>, ManifestError>;
    /// A bucket's record if it can be had at once, without I/O or a network round trip, so
    /// the caller may ask on an async task; `None`: ask [`ManifestBackend::get_bucket`] on a
    /// blocking thread. Every request reads its bucket's record (often twice: to authorize,
    /// then to act), so this spares a small request its thread hand-offs.
    fn get_bucket_now(&self, _name: &str) -> Option<Result<Option<Bucket>, ManifestError>> {
        None
    }
    /// Every bucket, by name.
    fn list_buckets(&self) -> Result<Vec<Bucket>, ManifestError>;
    /// Changes a bucket's record in place; returns the new record.
    fn update_bucket(
        &self,
        name: &str,
        change: InPlace<'_, Bucket>,
    ) -> Result<Bucket, ManifestError>;
    /// Deletes an empty bucket.
    fn delete_bucket(&self, name: &str) -> Result<(), ManifestError>;

    // ---- versions ----
    /// Applies a version, if `condition` accepts the key's current object; with `upload_id`,
    /// completes that upload in the same write. Returns whether it was new and the null
    /// versions it replaced.
    fn apply_when(
        &self,
        m: &VersionManifest,
        upload_id: Option<&str>,
        condition: Option<&WriteCondition>,
    ) -> Result<(bool, Vec<VersionManifest>), ManifestError>;
    /// [`ManifestBackend::apply_when`], returning before the write is durable when the backend
    /// can tell when it is: `Some(ticket)` must then be awaited with
    /// [`ManifestBackend::durable`] before anything is acknowledged. The default is
    /// `apply_when` (durable on return) and `None`.
    fn apply_when_deferred(
        &self,
        m: &VersionManifest,
        upload_id: Option<&str>,
        condition: Option<&WriteCondition>,
    ) -> Result<(Applied, Option<u64>), ManifestError> {
        self.apply_when(m, upload_id, condition).map(|r| (r, None))
    }
    /// Returns once the write of `ticket` (from [`ManifestBackend::apply_when_deferred`]) is
    /// durable.
    fn durable(self: std::sync::Arc<Self>, _ticket: u64) -> DurableWait {
        Box::pin(std::future::ready(Ok(())))
    }
    /// The newest version of a key, delete markers included.
    fn head(&self, bucket: &str, key: &str) -> Result<Option<VersionManifest>, ManifestError>;
    /// The current object: the newest version unless it is a delete marker.
    fn current(&self, bucket: &str, key: &str) -> Result<Option<VersionManifest>, ManifestError>;
    /// One version.
    fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
    ) -> Result<Option<VersionManifest>, ManifestError>;
    /// The key's null version.
    fn get_null_version(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<VersionManifest>, ManifestError>;
    /// A bucket's record and one version of one of its keys, read together: what a GET or HEAD
    /// needs. A multi-node backend asks the bucket's replicas once for both (they hold the
    /// record and every version of the bucket), merging each as [`ManifestBackend::get_bucket`]
    /// and [`ManifestBackend::head`], [`ManifestBackend::get_null_version`] or
    /// [`ManifestBackend::get_version`] would.
    fn read_object(
        &self,
        bucket: &str,
        key: &str,
        wanted: WantedVersion,
    ) -> Result<ObjectLookup, ManifestError>;
    /// Removes a version; with `lock_check = Some((now_ms, bypass_governance))` refuses one
    /// that object lock protects. Returns the removed version.
    fn remove_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
        lock_check: Option<(u64, bool)>,
    ) -> Result<Option<VersionManifest>, ManifestError>;
    /// Removes a version another site removed, leaving a tombstone when it is not here yet
    /// (see [`ManifestStore::remove_shipped`]); returns whether a stored version was removed.
    /// The default only removes a stored version.
    fn remove_shipped(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
    ) -> Result<bool, ManifestError> {
        Ok(self.remove_version(bucket, key, version, None)?.is_some())
    }
    /// How many other versions of `m`'s key share its parent (siblings: concurrent writes at
    /// two linked sites). A backend that does not track them answers 0.
    fn count_siblings(&self, m: &VersionManifest) -> Result<u32, ManifestError> {
        let _ = m;
        Ok(0)
    }
    /// Changes a version's metadata in place; `None` if it does not exist.
    fn update_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
        change: InPlace<'_, VersionManifest>,
    ) -> Result<Option<VersionManifest>, ManifestError>;
    /// A page of current objects.
    fn list_objects(&self, bucket: &str, q: &ListQuery) -> Result<ListPage, ManifestError>;
    /// A page of versions.
    fn list_versions(&self, bucket: &str, q: &VersionsQuery)
        -> Result<VersionsPage, ManifestError>;

    // ---- uploads ----
    /// Starts an upload.
    fn create_upload(&self, upload: &Upload) -> Result<(), ManifestError>;
    /// An upload in progress.
    fn get_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<Upload>, ManifestError>;
    /// Stores a part; returns the part it replaced.
    fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: &Part,
    ) -> Result<Option<Part>, ManifestError>;
    /// Parts of an upload numbered above `after`, at most `max`.
    fn list_parts(
        &self,
        bucket: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<Vec<Part>, ManifestError>;
    /// Aborts an upload; returns its parts.
    fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<Part>, ManifestError>;
    /// A page of uploads in progress.
    fn list_uploads(&self, bucket: &str, q: &UploadsQuery) -> Result<UploadsPage, ManifestError>;

    // ---- reads that must not miss a version (garbage collection's mark) ----
    /// [`ManifestBackend::list_versions`] answered by every replica of the bucket rather
    /// than a read quorum (a single store: the same thing): a version a failed write left on
    /// fewer replicas than the write quorum — which a read may still return, and anti-entropy
    /// will copy to the others — is listed too.
    fn list_versions_everywhere(
        &self,
        bucket: &str,
        q: &VersionsQuery,
    ) -> Result<VersionsPage, ManifestError> {
        self.list_versions(bucket, q)
    }
    /// [`ManifestBackend::list_uploads`] answered by every replica of the bucket.
    fn list_uploads_everywhere(
        &self,
        bucket: &str,
        q: &UploadsQuery,
    ) -> Result<UploadsPage, ManifestError> {
        self.list_uploads(bucket, q)
    }
    /// [`ManifestBackend::list_parts`] answered by every replica of the bucket.
    fn list_parts_everywhere(
        &self,
        bucket: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<Vec<Part>, ManifestError> {
        self.list_parts(bucket, upload_id, after, max)
    }

    // ---- change log and totals ----
    /// This store's change log after `after` (a multi-node backend: this node's, or the
    /// nearest manifest node's).
    fn changes_since(&self, after: u64, max: usize) -> Result<Vec<Change>, ManifestError>;
    /// Totals.
    fn stats(&self) -> Result<ManifestStats, ManifestError>;
    /// What a bucket holds, kept with its versions (a multi-node backend: the greatest count
    /// among R of its replicas).
    fn bucket_usage(&self, bucket: &str) -> Result<crate::BucketUsage, ManifestError>;
    /// [`ManifestStore::write_generation`] of a local store; `None` (the default) where no
    /// such cheap check exists (a multi-node backend), and lookups are never reused.
    fn write_generation(&self) -> Option<u64> {
        None
    }
    /// Where each change log of the site ends now, as (log, last sequence number), each held
    /// from there for `holder` (see `crate::history`: a log is not trimmed past what a live
    /// holder still has to read) until [`ManifestBackend::release_change_logs`]: one log per
    /// manifest node (a multi-node backend: every manifest node of the current map must
    /// answer), a single store's one log numbered 0. What a version write lands in is some
    /// of these logs, so a reader that re-reads all of them from these ends sees every
    /// version applied after this call (garbage collection's mark does).
    fn hold_change_logs(&self, holder: &str) -> Result<Vec<(u64, u64)>, ManifestError>;
    /// Where each change log ends now, as [`ManifestBackend::hold_change_logs`] numbers them,
    /// without holding any (to measure how far a reader is behind). The default: one log, 0.
    fn change_log_ends(&self) -> Result<Vec<(u64, u64)>, ManifestError> {
        Ok(vec![(0, self.stats()?.last_seq)])
    }
    /// Changes of log `log` (as [`ManifestBackend::hold_change_logs`] names it) after
    /// `after`, at most `max`, read by `holder` (which acknowledges `after`); an empty answer
    /// means the end. Fails when the log was trimmed past `after` (the holder was silent for
    /// longer than the history retention): the changes in between are lost to the reader.
    fn log_changes_for(
        &self,
        log: u64,
        holder: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<Change>, ManifestError>;
    /// Lets go of every log `holder` holds (best effort: a log that cannot be reached forgets
    /// the holder once it has been silent for the retention).
    fn release_change_logs(&self, holder: &str);
    /// This node's change log extent and consumers (a multi-node backend: this node's store;
    /// fails on a node without one).
    fn history(&self) -> Result<HistoryState, ManifestError>;
    /// Trims this node's change log and tombstones, waiting for the consumers that
    /// acknowledged within `retention_ms` (see `crate::history`; a multi-node backend: this
    /// node's store, waiting for every other manifest node's anti-entropy too).
    fn trim_history(&self, retention_ms: u64) -> Result<TrimReport, ManifestError>;

    // ---- access keys ----
    /// Adds a key (`Invalid` if its id is taken).
    fn put_key(&self, key: &AccessKey) -> Result<(), ManifestError>;
    /// Changes a key in place; `None` if it does not exist.
    fn update_key(
        &self,
        id: &str,
        change: InPlace<'_, AccessKey>,
    ) -> Result<Option<AccessKey>, ManifestError>;
    /// A key by id.
    fn get_key(&self, id: &str) -> Result<Option<AccessKey>, ManifestError>;
    /// Every key.
    fn list_keys(&self) -> Result<Vec<AccessKey>, ManifestError>;
    /// Deletes a key; whether it existed.
    fn delete_key(&self, id: &str) -> Result<bool, ManifestError>;
}

impl ManifestBackend for ManifestStore {
    fn create_bucket(&self, bucket: &Bucket) -> Result<(), ManifestError> {
        ManifestStore::create_bucket(self, bucket)
    }
    fn get_bucket(&self, name: &str) -> Result<Option<Bucket>, ManifestError> {
        ManifestStore::get_bucket(self, name)
    }
    fn get_bucket_now(&self, name: &str) -> Option<Result<Option<Bucket>, ManifestError>> {
        ManifestStore::get_bucket_now(self, name)
    }
    fn list_buckets(&self) -> Result<Vec<Bucket>, ManifestError> {
        ManifestStore::list_buckets(self)
    }
    fn update_bucket(
        &self,
        name: &str,
        change: InPlace<'_, Bucket>,
    ) -> Result<Bucket, ManifestError> {
        ManifestStore::update_bucket(self, name, change)
    }
    fn delete_bucket(&self, name: &str) -> Result<(), ManifestError> {
        ManifestStore::delete_bucket(self, name)
    }
    fn apply_when(
        &self,
        m: &VersionManifest,
        upload_id: Option<&str>,
        condition: Option<&WriteCondition>,
    ) -> Result<(bool, Vec<VersionManifest>), ManifestError> {
        match (condition, upload_id) {
            (Some(c), u) => ManifestStore::apply_when(self, m, u, c),
            (None, Some(u)) => ManifestStore::complete_upload(self, u, m).map(|r| (true, r)),
            (None, None) => ManifestStore::apply(self, m),
        }
    }
    fn apply_when_deferred(
        &self,
        m: &VersionManifest,
        upload_id: Option<&str>,
        condition: Option<&WriteCondition>,
    ) -> Result<(Applied, Option<u64>), ManifestError> {
        let (r, ticket) =
            self.deferring(|| ManifestBackend::apply_when(self, m, upload_id, condition));
        r.map(|r| (r, ticket))
    }
    fn durable(self: std::sync::Arc<Self>, ticket: u64) -> DurableWait {
        Box::pin(ManifestStore::durable(self, ticket))
    }
    fn head(&self, bucket: &str, key: &str) -> Result<Option<VersionManifest>, ManifestError> {
        ManifestStore::head(self, bucket, key)
    }
    fn current(&self, bucket: &str, key: &str) -> Result<Option<VersionManifest>, ManifestError> {
        ManifestStore::current(self, bucket, key)
    }
    fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        ManifestStore::get_version(self, bucket, key, version)
    }
    fn get_null_version(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        ManifestStore::get_null_version(self, bucket, key)
    }
    /// The bucket first (a missing bucket is the whole answer), then the version: the
    /// current index's point lookup, and only when it has nothing the newest version (a
    /// delete marker, or none).
    fn read_object(
        &self,
        bucket: &str,
        key: &str,
        wanted: WantedVersion,
    ) -> Result<ObjectLookup, ManifestError> {
        let Some(b) = ManifestStore::get_bucket(self, bucket)? else {
            return Ok(ObjectLookup::default());
        };
        let version = match wanted {
            WantedVersion::Newest => match ManifestStore::current(self, bucket, key)? {
                Some(m) => Some(m),
                None => ManifestStore::head(self, bucket, key)?,
            },
            WantedVersion::Null => ManifestStore::get_null_version(self, bucket, key)?,
            WantedVersion::Id(v) => ManifestStore::get_version(self, bucket, key, v)?,
        };
        let siblings = match (&version, wanted) {
            (Some(m), WantedVersion::Newest) => ManifestStore::count_siblings(self, m)?,
            _ => 0,
        };
        Ok(ObjectLookup {
            bucket: Some(b),
            version,
            siblings,
        })
    }
    fn remove_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
        lock_check: Option<(u64, bool)>,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        match lock_check {
            Some((now_ms, bypass)) => {
                self.remove_version_unless_locked(bucket, key, version, now_ms, bypass)
            }
            None => ManifestStore::remove_version(self, bucket, key, version),
        }
    }
    fn remove_shipped(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
    ) -> Result<bool, ManifestError> {
        ManifestStore::remove_shipped(self, bucket, key, version)
    }

    fn count_siblings(&self, m: &VersionManifest) -> Result<u32, ManifestError> {
        ManifestStore::count_siblings(self, m)
    }

    fn update_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
        change: InPlace<'_, VersionManifest>,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        ManifestStore::update_version(self, bucket, key, version, change)
    }
    fn list_objects(&self, bucket: &str, q: &ListQuery) -> Result<ListPage, ManifestError> {
        ManifestStore::list_objects(self, bucket, q)
    }
    fn list_versions(
        &self,
        bucket: &str,
        q: &VersionsQuery,
    ) -> Result<VersionsPage, ManifestError> {
        ManifestStore::list_versions(self, bucket, q)
    }
    fn create_upload(&self, upload: &Upload) -> Result<(), ManifestError> {
        ManifestStore::create_upload(self, upload)
    }
    fn get_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<Upload>, ManifestError> {
        ManifestStore::get_upload(self, bucket, key, upload_id)
    }
    fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: &Part,
    ) -> Result<Option<Part>, ManifestError> {
        ManifestStore::put_part(self, bucket, key, upload_id, part)
    }
    fn list_parts(
        &self,
        _bucket: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<Vec<Part>, ManifestError> {
        ManifestStore::list_parts(self, upload_id, after, max)
    }
    fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<Part>, ManifestError> {
        ManifestStore::abort_upload(self, bucket, key, upload_id)
    }
    fn list_uploads(&self, bucket: &str, q: &UploadsQuery) -> Result<UploadsPage, ManifestError> {
        ManifestStore::list_uploads(self, bucket, q)
    }
    fn changes_since(&self, after: u64, max: usize) -> Result<Vec<Change>, ManifestError> {
        ManifestStore::changes_since(self, after, max)
    }
    fn stats(&self) -> Result<ManifestStats, ManifestError> {
        ManifestStore::stats(self)
    }
    fn write_generation(&self) -> Option<u64> {
        Some(ManifestStore::write_generation(self))
    }

    fn bucket_usage(&self, bucket: &str) -> Result<crate::BucketUsage, ManifestError> {
        ManifestStore::bucket_usage(self, bucket)
    }
    fn hold_change_logs(&self, holder: &str) -> Result<Vec<(u64, u64)>, ManifestError> {
        Ok(vec![(0, self.hold_log(holder, crate::history::now_ms())?)])
    }
    fn log_changes_for(
        &self,
        log: u64,
        holder: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<Change>, ManifestError> {
        if log != 0 {
            return Err(ManifestError::Invalid(format!(
                "a single store has one change log (0), not {log}"
            )));
        }
        let (first, changes) = self.changes_for(holder, after, max, crate::history::now_ms())?;
        crate::history::check_not_trimmed("this store's", first, after)?;
        Ok(changes)
    }
    fn release_change_logs(&self, holder: &str) {
        if let Err(e) = self.release_log(holder) {
            tracing::warn!(holder, error = %e, "could not release the change log");
        }
    }
    fn history(&self) -> Result<HistoryState, ManifestError> {
        ManifestStore::history(self)
    }
    fn trim_history(&self, retention_ms: u64) -> Result<TrimReport, ManifestError> {
        self.trim_history_with(&TrimPolicy {
            now_ms: crate::history::now_ms(),
            retention_ms,
            peers: Vec::new(),
        })
    }
    fn put_key(&self, key: &AccessKey) -> Result<(), ManifestError> {
        ManifestStore::put_key(self, key)
    }
    fn update_key(
        &self,
        id: &str,
        change: InPlace<'_, AccessKey>,
    ) -> Result<Option<AccessKey>, ManifestError> {
        ManifestStore::update_key(self, id, change)
    }
    fn get_key(&self, id: &str) -> Result<Option<AccessKey>, ManifestError> {
        ManifestStore::get_key(self, id)
    }
    fn list_keys(&self) -> Result<Vec<AccessKey>, ManifestError> {
        ManifestStore::list_keys(self)
    }
    fn delete_key(&self, id: &str) -> Result<bool, ManifestError> {
        ManifestStore::delete_key(self, id)
    }
}
