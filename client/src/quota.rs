//! Per-bucket usage and quotas: what a bucket holds (counted by the manifest store with every
//! write, see the manifest server's `usage` module) and the limits a write is checked against
//! before its version is applied.

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
