//! The two ends of a transfer: a [`Source`] whose changes are read and whose data is shipped,
//! and a [`Sink`] that says what it lacks, stores what arrives and applies versions. The local
//! site ([`LocalSite`]) and a remote one ([`crate::RemoteSite`], over the link service) are both,
//! so one engine ([`crate::ship`]) sends (local → remote) and receives (remote → local).

use async_trait::async_trait;
use cairn_client::{
    Bucket, Change, ChunkId, ChunkRef, Client, StoredChunk, VersionId, VersionManifest,
    VersionsQuery,
};

use crate::error::LinkResult;
use crate::proto::{BucketDeleted, VersionKey};

/// Where versions and data come from.
#[async_trait]
pub trait Source: Send + Sync {
    /// Where each change log ends now, as (log, last sequence number), held from there for
    /// this link.
    async fn logs(&self) -> LinkResult<Vec<(u64, u64)>>;
    /// Where each change log ends now, holding none.
    async fn log_ends(&self) -> LinkResult<Vec<(u64, u64)>>;
    /// Entries of `log` after `after` (acknowledging `after`), at most `max`.
    async fn changes(&self, log: u64, after: u64, max: usize) -> LinkResult<Vec<Change>>;
    /// Versions as stored, `None` where gone.
    async fn versions(&self, keys: Vec<VersionKey>) -> LinkResult<Vec<Option<VersionManifest>>>;
    /// A page of a bucket's versions after `after`; whether more follow.
    async fn list_versions(
        &self,
        bucket: &str,
        after: Option<(String, Option<VersionId>)>,
        max: usize,
    ) -> LinkResult<(Vec<VersionManifest>, bool)>;
    /// Every bucket's record.
    async fn buckets(&self) -> LinkResult<Vec<Bucket>>;
    /// Chunks in stored form, in order; `None` where gone.
    async fn stored(&self, ids: Vec<ChunkId>) -> LinkResult<Vec<Option<StoredChunk>>>;
}

/// Where versions and data go.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Creates the buckets it lacks and takes the records newer than its own; returns how
    /// many it created or changed.
    async fn ensure_buckets(&self, buckets: Vec<Bucket>) -> LinkResult<u32>;
    /// Which versions it lacks.
    async fn lacks(&self, keys: Vec<VersionKey>) -> LinkResult<Vec<bool>>;
    /// Which chunks (whole subtrees, for nodes) it holds, protecting them from its GC.
    async fn have(&self, refs: Vec<ChunkRef>) -> LinkResult<Vec<bool>>;
    /// Stores chunks durably (each checked against its id; nodes after their children).
    async fn put(&self, chunks: Vec<(ChunkRef, StoredChunk)>) -> LinkResult<()>;
    /// Applies versions whose data it holds, and removals.
    async fn apply(
        &self,
        versions: Vec<VersionManifest>,
        removals: Vec<VersionKey>,
    ) -> LinkResult<Applied>;
    /// Deletes a bucket the other site deleted, if it holds no version.
    async fn delete_bucket(&self, bucket: &str) -> LinkResult<BucketDeleted>;
}

/// What a sink did with an `Apply`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Versions that were new.
    pub applied: u32,
    /// Removals that removed something.
    pub removed: u32,
    /// Versions written over the same version as a write made at the sink.
    pub conflicts: u32,
}

/// This site, as one end of a link to the site whose consumer name is `holder`.
#[derive(Clone)]
pub struct LocalSite {
    client: Client,
    holder: String,
}

impl LocalSite {
    /// This site (through `client`), reading its change logs as consumer `holder`
    /// (`link/<other site's id>`).
    pub fn new(client: Client, holder: String) -> LocalSite {
        LocalSite { client, holder }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The consumer name under which site `site`'s link reads this site's change logs.
pub fn holder_for(site: u16) -> String {
    format!("link/{site:04x}")
}

#[async_trait]
impl Source for LocalSite {
    async fn logs(&self) -> LinkResult<Vec<(u64, u64)>> {
        Ok(self.client.hold_logs(&self.holder).await?)
    }

    async fn log_ends(&self) -> LinkResult<Vec<(u64, u64)>> {
        Ok(self.client.log_ends().await?)
    }

    async fn changes(&self, log: u64, after: u64, max: usize) -> LinkResult<Vec<Change>> {
        Ok(self
            .client
            .log_changes(log, &self.holder, after, max)
            .await?)
    }

    async fn versions(&self, keys: Vec<VersionKey>) -> LinkResult<Vec<Option<VersionManifest>>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(
                self.client
                    .stored_version(&k.bucket, &k.key, k.version)
                    .await?,
            );
        }
        Ok(out)
    }

    async fn list_versions(
        &self,
        bucket: &str,
        after: Option<(String, Option<VersionId>)>,
        max: usize,
    ) -> LinkResult<(Vec<VersionManifest>, bool)> {
        let (key_marker, version_marker) = match after {
            Some((k, v)) => (Some(k), v),
            None => (None, None),
        };
        let q = VersionsQuery {
            key_marker,
            version_marker,
            max_keys: max,
            ..Default::default()
        };
        let page = self.client.list_versions(bucket, &q).await?;
        Ok((page.versions, page.is_truncated))
    }

    async fn buckets(&self) -> LinkResult<Vec<Bucket>> {
        Ok(self.client.bucket_records().await?)
    }

    async fn stored(&self, ids: Vec<ChunkId>) -> LinkResult<Vec<Option<StoredChunk>>> {
        Ok(self.client.stored_chunks(ids).await?)
    }
}

#[async_trait]
impl Sink for LocalSite {
    async fn ensure_buckets(&self, buckets: Vec<Bucket>) -> LinkResult<u32> {
        let mut changed = 0;
        for b in buckets {
            if self.client.receive_bucket(b).await? != cairn_client::BucketReceived::Unchanged {
                changed += 1;
            }
        }
        Ok(changed)
    }

    async fn lacks(&self, keys: Vec<VersionKey>) -> LinkResult<Vec<bool>> {
        Ok(self
            .versions(keys)
            .await?
            .into_iter()
            .map(|v| v.is_none())
            .collect())
    }

    async fn have(&self, refs: Vec<ChunkRef>) -> LinkResult<Vec<bool>> {
        Ok(self.client.have_shipped(refs).await?)
    }

    async fn put(&self, chunks: Vec<(ChunkRef, StoredChunk)>) -> LinkResult<()> {
        Ok(self.client.put_shipped(chunks).await?)
    }

    async fn apply(
        &self,
        versions: Vec<VersionManifest>,
        removals: Vec<VersionKey>,
    ) -> LinkResult<Applied> {
        let mut out = Applied::default();
        for m in versions {
            let r = self.client.apply_shipped(m).await?;
            out.applied += u32::from(r.applied);
            out.conflicts += u32::from(r.conflict);
        }
        for k in removals {
            if self
                .client
                .remove_shipped(&k.bucket, &k.key, k.version)
                .await?
            {
                out.removed += 1;
            }
        }
        Ok(out)
    }

    async fn delete_bucket(&self, bucket: &str) -> LinkResult<BucketDeleted> {
        match self.client.delete_bucket(bucket).await {
            Ok(()) => Ok(BucketDeleted::Deleted),
            Err(cairn_client::ClientError::NoSuchBucket(_)) => Ok(BucketDeleted::Absent),
            Err(cairn_client::ClientError::BucketNotEmpty(_)) => Ok(BucketDeleted::NotEmpty),
            Err(e) => Err(e.into()),
        }
    }
}
