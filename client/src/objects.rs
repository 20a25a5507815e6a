//! Object operations: put, in-place version updates, delete, list, storage totals and the
//! change-log history (GET and HEAD are in `read.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_core::manifest::{Bucket, ObjectLockConfig, VersionManifest, Versioning};
use cairn_manifestserver::{HistoryState, ManifestError, TrimReport};

use crate::client::{now_ms, Client};
use crate::put::IngestLimits;
use crate::{
    version_label, BodyStream, ClientError, DeleteResult, ListPage, ListQuery, PutOptions,
    PutResult, Stats, VersionSel, VersionsPage, VersionsQuery, WriteCondition,
};

/// Largest single PUT (S3's limit).
pub const MAX_PUT_SIZE: u64 = 5 << 30;
/// Longest object key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Adapts a one-shot in-place change to the metadata backend's `FnMut`. A replicating backend
/// runs the change again only when the record changed between its read and its
/// compare-and-swap; a change already spent then reports that conflict (try again).
pub(crate) fn once<T>(
    change: impl FnOnce(&mut T) -> Result<(), ClientError> + Send,
) -> impl FnMut(&mut T) -> Result<(), ManifestError> + Send {
    let mut change = Some(change);
    move |record| match change.take() {
        Some(f) => f(record).map_err(ManifestError::refused),
        None => Err(cairn_manifestserver::Refusal::Conflict(
            "the record changed while it was being updated: try again".into(),
        )
        .into()),
    }
}

pub(crate) fn check_key(key: &str) -> Result<(), ClientError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(ClientError::KeyTooLong);
    }
    Ok(())
}

/// The version id S3 shows for `m` in `bucket` (none in never-versioned buckets).
pub fn shown_version(bucket: &Bucket, m: &VersionManifest) -> Option<String> {
    (bucket.versioning != Versioning::Unversioned).then(|| version_label(m))
}

/// How long a removal waits for a store that ran out of space to take writes again (RocksDB
/// retries its recovery every 5 s once space is free).
pub const REMOVAL_SPACE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Client {
    /// Stores an object from a streaming body. The version becomes visible only once all of its
    /// chunks are durable.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: BodyStream,
        opts: PutOptions,
    ) -> Result<PutResult, ClientError> {
        check_key(key)?;
        self.check_space()?;
        let b = self.head_bucket(bucket).await?;
        if opts.content_length.is_some_and(|l| l > MAX_PUT_SIZE) {
            return Err(ClientError::EntityTooLarge(format!(
                "a single PUT is limited to {MAX_PUT_SIZE} bytes: use a multipart upload"
            )));
        }
        self.precheck_quota(&b, Some(key), opts.content_length)
            .await?;
        let cdc = Arc::new(self.inner.cdc.clone());
        let (sealer, encryption) = self
            .seal_for_bucket(&b, opts.encryption.as_ref())
            .await?
            .unzip();
        let limits = IngestLimits {
            max_len: MAX_PUT_SIZE,
            expected_len: opts.content_length,
            allow_inline: true,
            checksum: opts.checksum.as_ref().map(|c| c.algorithm),
            sealer: sealer.clone(),
            owner: cairn_core::owner_tag(bucket),
        };
        let data = self.ingest(body, cdc, limits).await?;
        if opts.content_md5.is_some_and(|m| m != data.md5) {
            return Err(ClientError::BadDigest);
        }
        let mut checksums = BTreeMap::new();
        if let (Some(req), Some(digest)) = (&opts.checksum, &data.checksum) {
            let value = crate::checksum::verify(req, digest)?;
            checksums.insert(req.algorithm.name().to_string(), value);
        }
        let m = VersionManifest {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version: cairn_core::VersionId::MIN,
            parent: None,
            null_version: false,
            delete_marker: false,
            mtime_ms: now_ms(),
            size: data.size,
            etag: hex::encode(crate::crypt::shown_md5(
                &data.md5,
                sealer.as_ref(),
                encryption.as_ref(),
            )),
            headers: opts.headers,
            user_metadata: opts.user_metadata,
            tags: opts.tags,
            checksums,
            parts: None,
            content: data.content,
            owner: opts.owner,
            acl: opts.acl,
            lock: opts.lock,
            checksum_type: None,
            owner_grant: true,
            encryption,
        };
        self.commit(&b, m, None, opts.condition).await
    }

    /// Names `m` as the next version of its key (after everything this node saw for the key) and
    /// applies it.
    pub(crate) async fn commit_version(
        &self,
        bucket: &Bucket,
        m: VersionManifest,
    ) -> Result<PutResult, ClientError> {
        self.commit(bucket, m, None, None).await
    }

    /// Like [`Client::commit_version`], if `condition` holds.
    pub(crate) async fn commit_if(
        &self,
        bucket: &Bucket,
        m: VersionManifest,
        condition: Option<WriteCondition>,
    ) -> Result<PutResult, ClientError> {
        self.commit(bucket, m, None, condition).await
    }

    /// Like [`Client::commit_version`], also removing upload `upload_id` in the same batch, if
    /// `condition` holds.
    pub(crate) async fn commit_upload(
        &self,
        bucket: &Bucket,
        upload_id: &str,
        m: VersionManifest,
        condition: Option<WriteCondition>,
    ) -> Result<PutResult, ClientError> {
        self.commit(bucket, m, Some(upload_id.to_string()), condition)
            .await
    }

    /// Names and applies `m` (removing `upload_id` with it); `condition`, if any, is checked
    /// against the key's current object under the store's write lock.
    async fn commit(
        &self,
        bucket: &Bucket,
        mut m: VersionManifest,
        upload_id: Option<String>,
        condition: Option<WriteCondition>,
    ) -> Result<PutResult, ClientError> {
        if !m.delete_marker {
            m.lock = ObjectLockConfig::lock_new_version(
                bucket.object_lock.as_ref(),
                std::mem::take(&mut m.lock),
                m.mtime_ms,
            )
            .map_err(|e| ClientError::InvalidRequest(e.into()))?;
        }
        m.null_version = bucket.versioning != Versioning::Enabled;
        let quota_of = bucket.quota.is_some().then(|| bucket.clone());
        // Reading the key's newest version, naming this one after it and applying it in one
        // trip to the blocking pool: a small PUT is mostly thread hand-offs otherwise.
        // The WAL sync it waits for is waited on here, not on the pool thread.
        let (m, ticket) = self
            .blocking(move |i| {
                let prev = i.meta.head(&m.bucket, &m.key)?;
                if let Some(b) = quota_of.as_ref().filter(|_| !m.delete_marker) {
                    crate::quota::check_quota(&*i.meta, b, m.size, prev.as_ref())?;
                }
                m.parent = prev.as_ref().map(|p| p.version);
                m.version = i.hlc.tick_after(m.parent);
                let (_, ticket) =
                    i.meta
                        .apply_when_deferred(&m, upload_id.as_deref(), condition.as_ref())?;
                Ok((m, ticket))
            })
            .await
            .map_err(|e| self.note_error(e))?;
        if let Some(t) = ticket {
            self.inner
                .meta
                .clone()
                .durable(t)
                .await
                .map_err(|e| self.note_error(e.into()))?;
        }
        Ok(PutResult {
            version_id: shown_version(bucket, &m),
            manifest: m,
        })
    }

    /// Changes a version's metadata in place (tags, ACL, retention, legal hold), as S3 does
    /// without making a new version. `change` sees the stored version under the store's write
    /// lock and may refuse with an error. Returns the bucket and the updated version.
    pub async fn update_version(
        &self,
        bucket: &str,
        key: &str,
        version: &VersionSel,
        change: impl FnOnce(&mut VersionManifest) -> Result<(), ClientError> + Send + 'static,
    ) -> Result<(Bucket, VersionManifest), ClientError> {
        let (b, m) = self.resolve_version(bucket, key, version).await?;
        let (bk, kk, v) = (bucket.to_string(), key.to_string(), m.version);
        let updated = self
            .blocking(move |i| Ok(i.meta.update_version(&bk, &kk, v, &mut once(change))?))
            .await?;
        match updated {
            Some(m) => Ok((b, m)),
            None => Err(ClientError::NoSuchVersion {
                key: key.to_string(),
                version: version_label(&m),
            }),
        }
    }

    /// Current: adds a delete marker (versioned or suspended bucket) or removes the object
    /// (never-versioned). By version: removes that version. Deleting what does not exist
    /// succeeds, as in S3.
    pub async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        version: &VersionSel,
    ) -> Result<DeleteResult, ClientError> {
        self.delete_object_with(bucket, key, version, false).await
    }

    /// [`Client::delete_object`]; a version protected by object lock is refused (AccessDenied),
    /// unless its protection is a governance retention and `bypass_governance` is set.
    ///
    /// Removals are never refused for lack of space: the space gate is not consulted, and a
    /// removal that meets a store which ran out of space (it refuses writes until it has
    /// recovered, which it does once the node released its reserve) is retried for up to
    /// [`REMOVAL_SPACE_WAIT`].
    pub async fn delete_object_with(
        &self,
        bucket: &str,
        key: &str,
        version: &VersionSel,
        bypass_governance: bool,
    ) -> Result<DeleteResult, ClientError> {
        let deadline = tokio::time::Instant::now() + REMOVAL_SPACE_WAIT;
        loop {
            match self
                .delete_object_once(bucket, key, version, bypass_governance)
                .await
            {
                Err(e @ ClientError::NoSpace(_)) if tokio::time::Instant::now() < deadline => {
                    let _ = self.note_error(e);
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                r => return r,
            }
        }
    }

    async fn delete_object_once(
        &self,
        bucket: &str,
        key: &str,
        version: &VersionSel,
        bypass_governance: bool,
    ) -> Result<DeleteResult, ClientError> {
        check_key(key)?;
        let b = self.head_bucket(bucket).await?;
        let (bk, kk) = (bucket.to_string(), key.to_string());
        match (version, b.versioning) {
            (VersionSel::Current, Versioning::Unversioned) => {
                self.blocking(move |i| {
                    if let Some(m) = i.meta.get_null_version(&bk, &kk)? {
                        i.meta.remove_version(&bk, &kk, m.version, None)?;
                    }
                    Ok(())
                })
                .await?;
                Ok(DeleteResult::default())
            }
            (VersionSel::Current, _) => {
                let marker = VersionManifest::delete_marker(
                    bucket,
                    key,
                    cairn_core::VersionId::MIN,
                    None,
                    false,
                    now_ms(),
                );
                let r = self.commit_version(&b, marker).await?;
                Ok(DeleteResult {
                    version_id: r.version_id,
                    delete_marker: true,
                })
            }
            (sel, _) => {
                let sel = sel.clone();
                let label = sel.label();
                let removed = self
                    .blocking(move |i| {
                        let v = match sel {
                            VersionSel::Id(v) => Some(v),
                            _ => i.meta.get_null_version(&bk, &kk)?.map(|m| m.version),
                        };
                        let Some(v) = v else { return Ok(None) };
                        Ok(i.meta.remove_version(
                            &bk,
                            &kk,
                            v,
                            Some((now_ms(), bypass_governance)),
                        )?)
                    })
                    .await?;
                Ok(DeleteResult {
                    version_id: label,
                    delete_marker: removed.is_some_and(|m| m.delete_marker),
                })
            }
        }
    }

    /// A page of current objects.
    pub async fn list_objects(&self, bucket: &str, q: &ListQuery) -> Result<ListPage, ClientError> {
        self.head_bucket(bucket).await?;
        let (b, q) = (bucket.to_string(), q.clone());
        self.blocking(move |i| Ok(i.meta.list_objects(&b, &q)?))
            .await
    }

    /// A page of versions and delete markers.
    pub async fn list_versions(
        &self,
        bucket: &str,
        q: &VersionsQuery,
    ) -> Result<VersionsPage, ClientError> {
        self.head_bucket(bucket).await?;
        let (b, q) = (bucket.to_string(), q.clone());
        self.blocking(move |i| Ok(i.meta.list_versions(&b, &q)?))
            .await
    }

    /// Storage totals.
    pub async fn stats(&self) -> Result<Stats, ClientError> {
        self.blocking(|i| {
            let m = i.meta.stats()?;
            let c = i.chunks.stats()?;
            Ok(Stats {
                buckets: m.buckets,
                versions: m.versions,
                logical_bytes: m.logical_bytes,
                chunks: c.chunks,
                unique_bytes: c.raw_bytes,
                physical_bytes: c.stored_bytes,
            })
        })
        .await
    }

    /// This node's metadata change log: its extent and the consumers it is kept for.
    pub async fn history(&self) -> Result<HistoryState, ClientError> {
        self.blocking(|i| Ok(i.meta.history()?)).await
    }

    /// Trims this node's metadata change log and tombstones up to what every consumer that
    /// acknowledged within `retention_ms` has read (see the manifest server's `history`
    /// module).
    pub async fn trim_history(&self, retention_ms: u64) -> Result<TrimReport, ClientError> {
        self.blocking(move |i| Ok(i.meta.trim_history(retention_ms)?))
            .await
    }
}
