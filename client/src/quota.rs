//! Per-bucket usage and quotas: what a bucket holds (counted by the manifest store with every
//! write, see the manifest server's `usage` module) and the limits a write is checked against
//! before its version is applied. A bucket's bytes after dedup are counted by the chunk
//! stores instead ([`Client::bucket_stored`]): each chunk counts for the bucket whose write
//! stored it first.

use cairn_chunkserver::OwnerUsage;
use cairn_core::manifest::{Bucket, BucketQuota, VersionManifest, Versioning};
use cairn_core::space::human_bytes;
use cairn_manifestserver::{BucketUsage, ManifestBackend};

use crate::{Client, ClientError};

impl Client {
    /// What a bucket holds: objects, versions, delete markers and their logical bytes, kept
    /// current by every write (no scan).
    pub async fn bucket_usage(&self, bucket: &str) -> Result<BucketUsage, ClientError> {
        self.head_bucket(bucket).await?;
        let b = bucket.to_string();
        self.blocking(move |i| Ok(i.meta.bucket_usage(&b)?)).await
    }

    /// The bytes after dedup a bucket stored: the chunks its writes stored first ("first
    /// writer pays": a chunk another bucket then wrote again counts here only, and stays
    /// counted here while any bucket references it) and their stored, compressed bytes, as
    /// the chunk stores count them with every write and delete (no scan). On a multi-node site
    /// every copy counts ([`OwnerUsage::stored_bytes_per_copy`] is one copy's). `None` when the
    /// chunk backend does not count them. Chunks written before attribution existed, tree
    /// nodes of objects and chunks received over site links are counted for no bucket.
    pub async fn bucket_stored(&self, bucket: &str) -> Result<Option<OwnerUsage>, ClientError> {
        self.head_bucket(bucket).await?;
        let owner = cairn_core::owner_tag(bucket);
        self.blocking(move |i| Ok(i.chunks.owner_usage(owner)?))
            .await
    }

    /// [`Client::bucket_stored`] of several buckets in one round of calls (one call per chunk
    /// node, not one per bucket), in order; the buckets are not looked up.
    pub async fn buckets_stored(
        &self,
        buckets: &[String],
    ) -> Result<Option<Vec<OwnerUsage>>, ClientError> {
        let owners: Vec<u64> = buckets.iter().map(|b| cairn_core::owner_tag(b)).collect();
        self.blocking(move |i| Ok(i.chunks.owner_usage_many(&owners)?))
            .await
    }

    /// Sets (or with `None` removes) a bucket's quota. Writes that would take the bucket past
    /// it are refused from then on; what it already holds stays.
    pub async fn set_bucket_quota(
        &self,
        bucket: &str,
        quota: Option<BucketQuota>,
    ) -> Result<Bucket, ClientError> {
        let quota = quota.filter(|q| !q.is_empty());
        self.update_bucket(bucket, move |b| {
            b.quota = quota;
            Ok(())
        })
        .await
    }

    /// Refuses early a write whose size is known before its data is read (a PUT with a
    /// length, a part): [`check_quota`] with the key's newest version when `key` is given.
    /// The write is checked again when its version is applied.
    pub(crate) async fn precheck_quota(
        &self,
        bucket: &Bucket,
        key: Option<&str>,
        size: Option<u64>,
    ) -> Result<(), ClientError> {
        let Some(size) = size.filter(|_| bucket.quota.is_some_and(|q| !q.is_empty())) else {
            return Ok(());
        };
        let (b, key) = (bucket.clone(), key.map(str::to_string));
        self.blocking(move |i| {
            let prev = match &key {
                Some(k) => i.meta.head(&b.name, k)?,
                None => None,
            };
            check_quota(&*i.meta, &b, size, prev.as_ref())
        })
        .await
    }
}

/// Refuses a write of `size` bytes when storing it would take `bucket` past its quota. `prev`
/// is the key's newest version: in a bucket that is not versioning, a write replaces it, so
/// what it holds is not counted twice. Writers at once may each pass the check with the room left for one of
/// them (the check reads the counters, the apply comes after): a quota can be passed by the
/// writes in flight when it is reached, never by a write that starts after.
pub(crate) fn check_quota(
    meta: &dyn ManifestBackend,
    bucket: &Bucket,
    size: u64,
    prev: Option<&VersionManifest>,
) -> Result<(), ClientError> {
    let Some(q) = bucket.quota.filter(|q| !q.is_empty()) else {
        return Ok(());
    };
    let u = meta.bucket_usage(&bucket.name)?;
    let (freed_bytes, freed_versions) = match prev {
        Some(p) if bucket.versioning != Versioning::Enabled && p.null_version => {
            if p.delete_marker {
                (0, 0)
            } else {
                (p.size, 1)
            }
        }
        _ => (0, 0),
    };
    let held_bytes = u.logical_bytes.saturating_sub(freed_bytes);
    if let Some(max) = q.max_bytes {
        if held_bytes.saturating_add(size) > max {
            return Err(ClientError::QuotaExceeded(format!(
                "bucket `{}` holds {} of its {} byte quota; this write of {} would pass it: \
                 delete objects (and noncurrent versions) or raise the quota with `cairn bucket \
                 quota {} --max-bytes SIZE`",
                bucket.name,
                human_bytes(u.logical_bytes),
                human_bytes(max),
                human_bytes(size),
                bucket.name,
            )));
        }
    }
    if let Some(max) = q.max_objects {
        if u.versions.saturating_sub(freed_versions) >= max {
            return Err(ClientError::QuotaExceeded(format!(
                "bucket `{}` holds {} objects (versions included), its quota: delete objects \
                 (and noncurrent versions) or raise the quota with `cairn bucket quota {} \
                 --max-objects N`",
                bucket.name, u.versions, bucket.name,
            )));
        }
    }
    Ok(())
}
