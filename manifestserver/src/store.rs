//! The store's public face: configuration, opening, and every operation (the version write
//! path, multipart uploads and listings delegate to their own modules).

use std::path::Path;

use cairn_core::format::Versioned;
use cairn_core::manifest::{AccessKey, Bucket, Change, Part, Upload, VersionManifest};
use cairn_core::VersionId;
use parking_lot::Mutex;
use rocksdb::{DBWithThreadMode, Direction, IteratorMode, Options, SingleThreaded, WriteOptions};

use crate::db::{
    GroupSync, WriteState, ALL_CFS, CF_BUCKETS, CF_CHANGELOG, CF_CURRENT, CF_KEYS, CF_PARTS,
    CF_UPLOADS, CF_VERSIONS,
};
use crate::keys;
use crate::list::{ListPage, ListQuery, UploadsPage, UploadsQuery, VersionsPage, VersionsQuery};
use crate::ManifestError;

/// Manifest-store settings.
#[derive(Clone, Debug)]
pub struct ManifestConfig {
    /// Sync the WAL on every write (on by default; only benchmarks turn it off).
    pub sync_writes: bool,
}

impl Default for ManifestConfig {
    fn default() -> Self {
        ManifestConfig { sync_writes: true }
    }
}

/// Totals kept with the metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ManifestStats {
    /// Buckets.
    pub buckets: u64,
    /// Versions stored, delete markers included.
    pub versions: u64,
    /// Sum of the sizes of all stored versions (logical bytes).
    pub logical_bytes: u64,
    /// Last change-log sequence number.
    pub last_seq: u64,
}

/// The manifest store of one node.
pub struct ManifestStore {
    /// The database, opened with every column family in `ALL_CFS`.
    pub(crate) db: DBWithThreadMode<SingleThreaded>,
    /// Options for writes outside mutations (cursors, marks): synced unless the config turned
    /// it off.
    pub(crate) write_opts: WriteOptions,
    /// Options for mutations' batches, which are made durable by [`GroupSync`] instead.
    pub(crate) unsynced: WriteOptions,
    /// Group commit: which mutations are durable.
    pub(crate) group: GroupSync,
    /// Serializes read-check-write mutations so checks hold and change-log seqs are gap-free.
    pub(crate) state: Mutex<WriteState>,
    /// One history trim at a time (see `history.rs`).
    pub(crate) trim: Mutex<()>,
    /// Counts committed mutations (see [`ManifestStore::write_generation`]).
    pub(crate) generation: std::sync::atomic::AtomicU64,
}

impl ManifestStore {
    /// A number that grows with every mutation once it is visible to reads, and only then:
    /// a reader that takes it before reading something, and finds it unchanged later, knows
    /// no mutation became visible between (what gateways check before reusing a lookup).
    /// Starts at 0 when the store opens.
    pub fn write_generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path, config: ManifestConfig) -> Result<ManifestStore, ManifestError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_open_files(512);
        opts.set_keep_log_file_num(4);
        opts.increase_parallelism(2);
        // Memtables, WAL preallocation and compaction outputs sized to the disk (unchanged
        // from 2 GiB up), so a small disk is not taken by preallocated files.
        std::fs::create_dir_all(dir)
            .map_err(|e| ManifestError::Invalid(format!("cannot create {}: {e}", dir.display())))?;
        let write_buffer = rustix::fs::statvfs(dir)
            .map_or(cairn_core::space::MAX_WRITE_BUFFER, |st| {
                cairn_core::space::write_buffer_for(st.f_blocks.saturating_mul(st.f_frsize))
            });
        opts.set_write_buffer_size(write_buffer as usize);
        opts.set_target_file_size_base(write_buffer);
        // A WAL file is deleted only once every column family flushed what it logged; the
        // small ones rarely fill a write buffer, so without a cap they would keep gigabytes of
        // WAL (RocksDB's default: 4 × the sum of all write buffers) on disk.
        opts.set_max_total_wal_size(cairn_core::space::WAL_WRITE_BUFFERS * write_buffer);
        opts.set_manifest_preallocation_size(cairn_core::space::MANIFEST_PREALLOCATION);
        // Each column family gets the same sizes (`open_cf` would give them the defaults),
        // with memtables that hold the whole WAL at open, so that replaying it after a crash
        // never flushes (see `avoid_flush_during_recovery` below); set back once open.
        let mut cf_opts = opts.clone();
        cf_opts
            .set_write_buffer_size((cairn_core::space::WAL_WRITE_BUFFERS * write_buffer) as usize);
        let cfs = std::iter::once(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .chain(ALL_CFS)
            .map(|name| rocksdb::ColumnFamilyDescriptor::new(name, cf_opts.clone()))
            .collect::<Vec<_>>();
        // A store killed on a full disk must open again: replaying the WAL into memtables is
        // enough, while flushing them at open would need free space that is not there (the
        // WAL stays until the next flush).
        let opts = opts.get_options_from_string(cairn_core::space::ROCKSDB_OPEN_OPTIONS)?;
        let db = DBWithThreadMode::<SingleThreaded>::open_cf_descriptors(&opts, dir, cfs)?;
        let size = write_buffer.to_string();
        let all = || std::iter::once(rocksdb::DEFAULT_COLUMN_FAMILY_NAME).chain(ALL_CFS);
        for name in all() {
            let cf = db.cf_handle(name).expect("opened with the database");
            // In effect at once; only writing the OPTIONS file can fail (a full disk), which
            // costs nothing but the file.
            if let Err(e) = db.set_options_cf(cf, &[("write_buffer_size", size.as_str())]) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot record the metadata store's options");
            }
        }
        // What the WAL replayed is flushed now when there is room, as a plain open would have;
        // on a full disk it stays in memory (and in the WAL) until space is freed.
        for name in all() {
            let cf = db.cf_handle(name).expect("opened with the database");
            let pending = db
                .property_int_value_cf(cf, "rocksdb.cur-size-all-mem-tables")
                .ok()
                .flatten()
                .unwrap_or(0);
            let free = cairn_core::space::free_bytes(dir).unwrap_or(u64::MAX);
            if !cairn_core::space::room_to_flush(free, pending, write_buffer) {
                tracing::warn!(dir = %dir.display(), pending_bytes = pending, free_bytes = free,
                    "the metadata store keeps what it recovered in its WAL until space is freed");
                continue;
            }
            if let Err(e) = db.flush_cf(cf) {
                tracing::warn!(dir = %dir.display(), error = %e,
                    "the metadata store could not flush what it recovered: it stays in the WAL until space is freed");
            }
        }
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(config.sync_writes);
        let mut store = ManifestStore {
            db,
            write_opts,
            unsynced: WriteOptions::default(),
            group: GroupSync::new(config.sync_writes, 0),
            state: Mutex::new(WriteState::default()),
            trim: Mutex::new(()),
            generation: std::sync::atomic::AtomicU64::new(0),
        };
        store.fill_usage_once()?;
        let state = store.load_state()?;
        *store.state.get_mut() = state;
        store.group = GroupSync::new(config.sync_writes, state.last_seq);
        tracing::debug!(dir = %dir.display(), last_seq = state.last_seq, "manifest store open");
        Ok(store)
    }

    // ---- buckets ----
    /// Creates a bucket; `BucketExists` (with the current owner) if the name is taken.
    pub fn create_bucket(&self, bucket: &Bucket) -> Result<(), ManifestError> {
        keys::check_bucket(&bucket.name)?;
        let mut txn = self.begin();
        if let Some(old) = self.get_rec::<Bucket>(CF_BUCKETS, bucket.name.as_bytes())? {
            return Err(ManifestError::BucketExists {
                name: old.name,
                owner: old.owner,
            });
        }
        txn.batch
            .put_cf(self.cf(CF_BUCKETS), bucket.name.as_bytes(), bucket.encode());
        txn.state.stats.buckets += 1;
        self.commit(txn)
    }
    /// A bucket by name.
    pub fn get_bucket(&self, name: &str) -> Result<Option<Bucket>, ManifestError> {
        keys::check_bucket(name)?;
        self.get_rec(CF_BUCKETS, name.as_bytes())
    }
    /// [`ManifestStore::get_bucket`] when it needs no I/O (see
    /// [`ManifestBackend::get_bucket_now`](crate::ManifestBackend::get_bucket_now)).
    pub fn get_bucket_now(&self, name: &str) -> Option<Result<Option<Bucket>, ManifestError>> {
        if let Err(e) = keys::check_bucket(name) {
            return Some(Err(e));
        }
        self.get_rec_now(CF_BUCKETS, name.as_bytes())
    }
    /// Every bucket, by name.
    pub fn list_buckets(&self) -> Result<Vec<Bucket>, ManifestError> {
        self.all_recs(CF_BUCKETS)
    }
    /// Buckets with names strictly after `after` (all if `None`), by name: at most `max`, and
    /// whether more follow. For callers that must bound what they hold (remote listings).
    pub fn list_buckets_page(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<Bucket>, bool), ManifestError> {
        self.recs_page(CF_BUCKETS, after, max)
    }
    /// Changes a bucket's record (versioning, ACL, policy, CORS, lifecycle, tags, object
    /// lock): `change` runs on the stored record under the write lock, so concurrent changes of
    /// different settings do not overwrite each other, and may refuse. `NoSuchBucket` if absent.
    /// Returns the new record.
    pub fn update_bucket(
        &self,
        name: &str,
        change: impl FnOnce(&mut Bucket) -> Result<(), ManifestError>,
    ) -> Result<Bucket, ManifestError> {
        keys::check_bucket(name)?;
        let mut txn = self.begin();
        let mut bucket = self
            .get_rec::<Bucket>(CF_BUCKETS, name.as_bytes())?
            .ok_or_else(|| ManifestError::NoSuchBucket(name.to_string()))?;
        change(&mut bucket)?;
        if bucket.name != name {
            return Err(ManifestError::Invalid("a bucket cannot be renamed".into()));
        }
        txn.batch
            .put_cf(self.cf(CF_BUCKETS), name.as_bytes(), bucket.encode());
        self.commit(txn)?;
        Ok(bucket)
    }
    /// Deletes an empty bucket; `BucketNotEmpty` if any version or upload remains.
    pub fn delete_bucket(&self, name: &str) -> Result<(), ManifestError> {
        keys::check_bucket(name)?;
        let mut txn = self.begin();
        if self
            .get_rec::<Bucket>(CF_BUCKETS, name.as_bytes())?
            .is_none()
        {
            return Err(ManifestError::NoSuchBucket(name.to_string()));
        }
        let prefix = keys::bucket_prefix(name);
        if self.any_with_prefix(CF_VERSIONS, &prefix)?
            || self.any_with_prefix(CF_UPLOADS, &prefix)?
        {
            return Err(ManifestError::BucketNotEmpty(name.to_string()));
        }
        txn.batch.delete_cf(self.cf(CF_BUCKETS), name.as_bytes());
        self.forget_usage(&mut txn, name);
        txn.state.stats.buckets = txn.state.stats.buckets.saturating_sub(1);
        self.commit(txn)
    }

    // ---- versions ----
    /// Applies a version (idempotent: applying it again changes nothing and returns `false`).
    /// A `null_version` replaces the key's older null version (returned in the Vec so its data
    /// can be collected later); if a newer null version exists, `m` is not stored.
    /// Updates the current index and appends to the change log, in one synced batch.
    pub fn apply(
        &self,
        m: &VersionManifest,
    ) -> Result<(bool, Vec<VersionManifest>), ManifestError> {
        keys::check_bucket(&m.bucket)?;
        keys::check_key(&m.key)?;
        let mut txn = self.begin();
        let out = self.apply_in(&mut txn, m)?;
        if out.0 {
            self.commit(txn)?;
        }
        Ok(out)
    }
    /// Like [`ManifestStore::apply`], if `check` accepts the key's current object (`None` when
    /// the key has none or its newest version is a delete marker): the check runs under the
    /// write lock, so no other write to the key lands between the check and this one
    /// (conditional writes: If-None-Match, If-Match). With `upload_id`, the upload must exist
    /// (`NoSuchUpload` otherwise) and is removed with its parts in the same batch, as in
    /// [`ManifestStore::complete_upload`].
    pub fn apply_if(
        &self,
        m: &VersionManifest,
        upload_id: Option<&str>,
        check: impl FnOnce(Option<&VersionManifest>) -> Result<(), ManifestError>,
    ) -> Result<(bool, Vec<VersionManifest>), ManifestError> {
        keys::check_bucket(&m.bucket)?;
        keys::check_key(&m.key)?;
        let mut txn = self.begin();
        let upload_key = match upload_id {
            Some(u) => {
                keys::check_upload_id(u)?;
                let ukey = keys::upload_key(&m.bucket, &m.key, u);
                if self.db.get_pinned_cf(self.cf(CF_UPLOADS), &ukey)?.is_none() {
                    return Err(ManifestError::NoSuchUpload(u.to_string()));
                }
                Some((ukey, u))
            }
            None => None,
        };
        let current =
            self.get_rec::<VersionManifest>(CF_CURRENT, &keys::current_key(&m.bucket, &m.key))?;
        check(current.as_ref())?;
        let out = self.apply_in(&mut txn, m)?;
        if let Some((ukey, u)) = &upload_key {
            txn.batch.delete_cf(self.cf(CF_UPLOADS), ukey);
            let prefix = keys::parts_prefix(u);
            let mut ro = rocksdb::ReadOptions::default();
            ro.set_iterate_lower_bound(prefix.clone());
            if let Some(end) = keys::prefix_end(&prefix) {
                ro.set_iterate_upper_bound(end);
            }
            let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_PARTS), ro);
            it.seek(&prefix);
            while let Some(k) = it.key() {
                txn.batch.delete_cf(self.cf(CF_PARTS), k);
                it.next();
            }
            it.status()?;
        }
        if out.0 || upload_key.is_some() {
            self.commit(txn)?;
        }
        Ok(out)
    }
    /// The newest version of a key, delete markers included.
    pub fn head(&self, bucket: &str, key: &str) -> Result<Option<VersionManifest>, ManifestError> {
        keys::check_bucket(bucket)?;
        keys::check_key(key)?;
        self.newest_except(bucket, key, None)
    }
    /// The current object (newest version, if it is not a delete marker): one point lookup.
    pub fn current(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        keys::check_bucket(bucket)?;
        keys::check_key(key)?;
        self.get_rec(CF_CURRENT, &keys::current_key(bucket, key))
    }
    /// A specific version.
    pub fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        keys::check_bucket(bucket)?;
        keys::check_key(key)?;
        self.get_rec(CF_VERSIONS, &keys::version_key(bucket, key, version))
    }
    /// The key's null version, if any.
    pub fn get_null_version(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        keys::check_bucket(bucket)?;
        keys::check_key(key)?;
        Ok(self
            .versions_of(bucket, key)?
            .into_iter()
            .find(|v| v.null_version))
    }
    /// Removes a version physically (S3 DELETE with versionId); updates the current index and
    /// logs a `removed` change. Returns the removed manifest, `None` if it did not exist.
    pub fn remove_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        self.remove_version_if(bucket, key, version, |_| Ok(()))
    }
    /// Removes a version that another site removed; when the version is not here (the removal
    /// overtook it on its way), leaves a tombstone instead, so that it is never applied when it
    /// arrives later (over another link). Returns whether a stored version was removed.
    pub fn remove_shipped(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
    ) -> Result<bool, ManifestError> {
        keys::check_bucket(bucket)?;
        keys::check_key(key)?;
        let mut txn = self.begin();
        self.require_bucket(bucket)?;
        if self.remove_in(&mut txn, bucket, key, version)?.is_some() {
            self.commit(txn)?;
            return Ok(true);
        }
        let vkey = keys::version_key(bucket, key, version);
        if self
            .db
            .get_pinned_cf(self.cf(crate::db::CF_REMOVED), &vkey)?
            .is_none()
        {
            self.tombstone_in(&mut txn, &vkey);
            self.commit(txn)?;
        }
        Ok(false)
    }
    /// Like [`ManifestStore::remove_version`], if `allow` accepts the stored version; it runs
    /// under the write lock, so nothing changes the version between the check and the removal
    /// (object lock uses this).
    pub fn remove_version_if(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
        allow: impl FnOnce(&VersionManifest) -> Result<(), ManifestError>,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        keys::check_bucket(bucket)?;
        keys::check_key(key)?;
        let mut txn = self.begin();
        match self
            .get_rec::<VersionManifest>(CF_VERSIONS, &keys::version_key(bucket, key, version))?
        {
            Some(m) => allow(&m)?,
            None => return Ok(None),
        }
        let removed = self.remove_in(&mut txn, bucket, key, version)?;
        if removed.is_some() {
            self.commit(txn)?;
        }
        Ok(removed)
    }
    /// Changes a stored version's metadata in place (tags, ACL, retention, legal hold: what S3
    /// changes without making a new version). `change` runs under the write lock and may refuse;
    /// it must not change the version's identity or content. Keeps the current index in step and
    /// logs the version again so that replicas fetch the new record. Returns the updated
    /// manifest, `None` if the version does not exist.
    pub fn update_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
        change: impl FnOnce(&mut VersionManifest) -> Result<(), ManifestError>,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        keys::check_bucket(bucket)?;
        keys::check_key(key)?;
        let mut txn = self.begin();
        let vkey = keys::version_key(bucket, key, version);
        let Some(mut m) = self.get_rec::<VersionManifest>(CF_VERSIONS, &vkey)? else {
            return Ok(None);
        };
        let (id, content, marker) = (m.version, m.content.clone(), m.delete_marker);
        change(&mut m)?;
        if m.version != id || m.content != content || m.delete_marker != marker {
            return Err(ManifestError::Invalid(
                "an in-place update cannot change a version's identity or content".into(),
            ));
        }
        txn.batch.put_cf(self.cf(CF_VERSIONS), &vkey, m.encode());
        let ck = keys::current_key(bucket, key);
        let is_current = self
            .get_rec::<VersionManifest>(CF_CURRENT, &ck)?
            .is_some_and(|c| c.version == version);
        if is_current {
            txn.batch.put_cf(self.cf(CF_CURRENT), ck, m.encode());
        }
        self.log_change(&mut txn, &m, false);
        self.commit(txn)?;
        Ok(Some(m))
    }
    /// A page of current objects.
    pub fn list_objects(&self, bucket: &str, q: &ListQuery) -> Result<ListPage, ManifestError> {
        keys::check_bucket(bucket)?;
        self.list_objects_impl(bucket, q)
    }
    /// A page of versions.
    pub fn list_versions(
        &self,
        bucket: &str,
        q: &VersionsQuery,
    ) -> Result<VersionsPage, ManifestError> {
        keys::check_bucket(bucket)?;
        self.list_versions_impl(bucket, q)
    }

    // ---- multipart ----
    /// Records a new upload.
    pub fn create_upload(&self, upload: &Upload) -> Result<(), ManifestError> {
        self.create_upload_impl(upload)
    }
    /// An upload by bucket, key and id.
    pub fn get_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<Upload>, ManifestError> {
        keys::check_bucket(bucket)?;
        keys::check_key(key)?;
        self.get_rec(CF_UPLOADS, &keys::upload_key(bucket, key, upload_id))
    }
    /// Stores a part (replacing one of the same number, returned); `NoSuchUpload` if the
    /// upload is gone.
    pub fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: &Part,
    ) -> Result<Option<Part>, ManifestError> {
        self.put_part_impl(bucket, key, upload_id, part)
    }
    /// Parts with number > `after`, ascending, at most `max`.
    pub fn list_parts(
        &self,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<Vec<Part>, ManifestError> {
        self.list_parts_impl(upload_id, after, max)
    }
    /// Removes an upload and its parts (abort); returns the parts. `NoSuchUpload` if absent.
    pub fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<Part>, ManifestError> {
        self.abort_upload_impl(bucket, key, upload_id)
    }
    /// Applies the completed object and removes the upload and its parts in one batch.
    /// `NoSuchUpload` if the upload is gone (a racing complete or abort won).
    pub fn complete_upload(
        &self,
        upload_id: &str,
        m: &VersionManifest,
    ) -> Result<Vec<VersionManifest>, ManifestError> {
        self.complete_upload_impl(upload_id, m)
    }
    /// A page of uploads in a bucket.
    pub fn list_uploads(
        &self,
        bucket: &str,
        q: &UploadsQuery,
    ) -> Result<UploadsPage, ManifestError> {
        keys::check_bucket(bucket)?;
        self.list_uploads_impl(bucket, q)
    }

    // ---- change log ----
    /// Durable changes with seq > `after`, at most `max`. An entry whose batch is written but
    /// not yet synced (see `commit`) is not returned: a crash could still lose it and give its
    /// seq to another change, which a reader that had moved past it would then miss.
    pub fn changes_since(&self, after: u64, max: usize) -> Result<Vec<Change>, ManifestError> {
        let durable = self.durable_seq();
        if after >= durable {
            return Ok(Vec::new());
        }
        let start = (after + 1).to_be_bytes();
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_upper_bound((durable + 1).to_be_bytes());
        let mode = IteratorMode::From(&start[..], Direction::Forward);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(self.cf(CF_CHANGELOG), ro, mode)
            .take(max)
        {
            let (_, v) = item?;
            out.push(Change::decode(&v)?);
        }
        Ok(out)
    }

    // ---- access keys ----
    /// Stores a new key; `KeyExists` if the id is taken.
    pub fn put_key(&self, key: &AccessKey) -> Result<(), ManifestError> {
        if key.id.is_empty() {
            return Err(ManifestError::Invalid(
                "access key id must not be empty".to_string(),
            ));
        }
        let mut txn = self.begin();
        if self
            .db
            .get_pinned_cf(self.cf(CF_KEYS), key.id.as_bytes())?
            .is_some()
        {
            return Err(ManifestError::KeyExists(key.id.clone()));
        }
        txn.batch
            .put_cf(self.cf(CF_KEYS), key.id.as_bytes(), key.encode());
        self.commit(txn)
    }
    /// Changes a stored access key under the write lock (its id cannot change); `None` if no
    /// key has that id.
    pub fn update_key(
        &self,
        id: &str,
        change: impl FnOnce(&mut AccessKey) -> Result<(), ManifestError>,
    ) -> Result<Option<AccessKey>, ManifestError> {
        let mut txn = self.begin();
        let Some(mut key) = self.get_rec::<AccessKey>(CF_KEYS, id.as_bytes())? else {
            return Ok(None);
        };
        change(&mut key)?;
        if key.id != id {
            return Err(ManifestError::Invalid(
                "an access key id cannot change".into(),
            ));
        }
        txn.batch
            .put_cf(self.cf(CF_KEYS), id.as_bytes(), key.encode());
        self.commit(txn)?;
        Ok(Some(key))
    }

    /// A key by id.
    pub fn get_key(&self, id: &str) -> Result<Option<AccessKey>, ManifestError> {
        self.get_rec(CF_KEYS, id.as_bytes())
    }
    /// Every key, by id.
    pub fn list_keys(&self) -> Result<Vec<AccessKey>, ManifestError> {
        self.all_recs(CF_KEYS)
    }
    /// Keys with ids strictly after `after` (all if `None`), by id: at most `max`, and whether
    /// more follow.
    pub fn list_keys_page(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<AccessKey>, bool), ManifestError> {
        self.recs_page(CF_KEYS, after, max)
    }
    /// Deletes a key; `false` if it did not exist.
    pub fn delete_key(&self, id: &str) -> Result<bool, ManifestError> {
        let mut txn = self.begin();
        if self
            .db
            .get_pinned_cf(self.cf(CF_KEYS), id.as_bytes())?
            .is_none()
        {
            return Ok(false);
        }
        txn.batch.delete_cf(self.cf(CF_KEYS), id.as_bytes());
        self.commit(txn)?;
        Ok(true)
    }

    /// Records of a small table (buckets, keys) with keys strictly after `after`: at most
    /// `max`, and whether another follows them.
    fn recs_page<T: Versioned>(
        &self,
        cf: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<T>, bool), ManifestError> {
        let start = after.map(|a| keys::after(a.as_bytes()));
        let mode = match &start {
            Some(k) => IteratorMode::From(k, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(cf), mode) {
            let (_, v) = item?;
            if out.len() == max {
                return Ok((out, true));
            }
            out.push(T::decode(&v)?);
        }
        Ok((out, false))
    }

    // ---- stats ----
    /// Totals.
    pub fn stats(&self) -> Result<ManifestStats, ManifestError> {
        let st = *self.state.lock();
        Ok(ManifestStats {
            buckets: st.stats.buckets,
            versions: st.stats.versions,
            logical_bytes: st.stats.logical_bytes,
            last_seq: st.last_seq,
        })
    }
}
