//! What a site link (`cairn-isgw`) needs of a site: its change logs read under a consumer name,
//! versions as stored, chunks in stored form, and the receiving side — which chunks and whole
//! subtrees are already here, storing shipped chunks bottom-up, and applying versions made at
//! another site under their own ids.
//!
//! **Bottom-up storage.** A link asks the receiver about an interior tree node before
//! descending into it, and does not descend where the answer is yes. That is only sound if a
//! stored node implies its whole subtree is stored, so [`Client::put_shipped`] stores a node
//! only once every chunk it references is here, and [`Client::have_shipped`] answers yes for a
//! node only after walking its subtree here.
//!
//! **GC.** Everything [`Client::have_shipped`] answers yes for is touched (every chunk of a
//! node's subtree, not only the node), and shipped chunks are new writes, so GC's hold
//! protects all of a version's data from the question until its manifest is applied, as it
//! protects a PUT's chunks until its manifest (invariant I6).

use std::collections::HashSet;

use bytes::Bytes;
use cairn_chunkserver::StoredChunk;
use cairn_core::extent::{Child, TreeNode};
use cairn_core::manifest::{Bucket, Change, Content, VersionManifest};
use cairn_core::{ChunkId, VersionId};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::ClientError;
use cairn_manifestserver::ManifestError;

/// A chunk a link asks about or ships: data, or an interior tree node covering `node_len`
/// bytes (which the receiver checks as a node and whose subtree it must hold).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkRef {
    /// The chunk.
    pub id: ChunkId,
    /// `Some(len)`: an extent-tree node covering `len` bytes.
    pub node_len: Option<u64>,
}

impl ChunkRef {
    /// The root node of a tree.
    pub fn node(child: Child) -> ChunkRef {
        ChunkRef {
            id: child.node,
            node_len: Some(child.len),
        }
    }

    /// A data chunk.
    pub fn data(id: ChunkId) -> ChunkRef {
        ChunkRef { id, node_len: None }
    }
}

/// What applying a shipped version did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShippedApply {
    /// It was new here.
    pub applied: bool,
    /// It was written over the same version as a write made here (see
    /// [`Client::apply_shipped`]).
    pub conflict: bool,
}

/// What [`Client::receive_bucket`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketReceived {
    /// The bucket was not here: created with the other site's record.
    Created,
    /// This site's record was older: replaced.
    Updated,
    /// This site's record is as new or newer: kept.
    Unchanged,
}

/// Chunk ids touched per store call.
const TOUCH_BATCH: usize = 1000;

impl Client {
    /// Where each change log of the site ends now, as (log, last sequence number), each held
    /// for `holder` from there (see `ManifestBackend::hold_change_logs`).
    pub async fn hold_logs(&self, holder: &str) -> Result<Vec<(u64, u64)>, ClientError> {
        let holder = holder.to_string();
        self.blocking(move |i| Ok(i.meta.hold_change_logs(&holder)?))
            .await
    }

    /// Where each change log of the site ends now, without holding any: how far a reader at
    /// given cursors is behind.
    pub async fn log_ends(&self) -> Result<Vec<(u64, u64)>, ClientError> {
        self.blocking(|i| Ok(i.meta.change_log_ends()?)).await
    }

    /// Changes of log `log` after `after` (at most `max`), read by `holder`, which thereby
    /// acknowledges `after`; empty at the end. Fails if the log was trimmed past `after`.
    pub async fn log_changes(
        &self,
        log: u64,
        holder: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<Change>, ClientError> {
        let holder = holder.to_string();
        self.blocking(move |i| Ok(i.meta.log_changes_for(log, &holder, after, max)?))
            .await
    }

    /// One version as stored (delete markers included), `None` if absent.
    pub async fn stored_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
    ) -> Result<Option<VersionManifest>, ClientError> {
        let (b, k) = (bucket.to_string(), key.to_string());
        self.blocking(move |i| Ok(i.meta.get_version(&b, &k, version)?))
            .await
    }

    /// Chunks in stored form as this site holds them, never fetched from a linked site (what
    /// a link's `Fetch` answers: a fetch is never passed on, so two sites fetching from each
    /// other cannot ask each other in a loop).
    pub async fn local_stored_chunks(
        &self,
        ids: Vec<ChunkId>,
    ) -> Result<Vec<Option<StoredChunk>>, ClientError> {
        self.blocking(move |i| {
            ids.iter()
                .map(|id| i.chunks.get_stored(id).map_err(ClientError::from))
                .collect()
        })
        .await
    }

    /// Chunks in stored form, to ship as they are (`None` where no copy exists). On a site
    /// that fetches from its linked sites, one missing here is fetched (and cached) first
    /// (through the node that runs the link, on a multi-node site).
    pub async fn stored_chunks(
        &self,
        ids: Vec<ChunkId>,
    ) -> Result<Vec<Option<StoredChunk>>, ClientError> {
        let mut found = self.local_stored_chunks(ids.clone()).await?;
        if self.inner.remote.read().is_some() {
            for (id, c) in ids.iter().zip(found.iter_mut()) {
                if c.is_none() {
                    match self.fetch_missing(*id).await {
                        Ok((_, stored)) => *c = Some(stored),
                        Err(ClientError::Corrupt(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(found)
    }

    /// A tree node read and checked here (`len`: the bytes its parent says it covers).
    pub async fn tree_node(&self, id: ChunkId, len: u64) -> Result<TreeNode, ClientError> {
        cairn_core::extent::NodeStore::load(self, id, len).await
    }

    /// Which of `refs` this site holds, for a link deciding what to ship: a data chunk when it
    /// is stored, a node when its whole subtree is (walked here). Everything answered yes is
    /// touched, so GC's hold protects it until the version that needs it is applied.
    pub async fn have_shipped(&self, refs: Vec<ChunkRef>) -> Result<Vec<bool>, ClientError> {
        let mut out = vec![false; refs.len()];
        let data: Vec<(usize, ChunkId)> = refs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.node_len.is_none())
            .map(|(n, r)| (n, r.id))
            .collect();
        for batch in data.chunks(TOUCH_BATCH) {
            let ids: Vec<ChunkId> = batch.iter().map(|(_, id)| *id).collect();
            let found = self
                .blocking(move |i| Ok(i.chunks.touch_many(&ids)?))
                .await?;
            for ((n, _), f) in batch.iter().zip(found) {
                out[*n] = f;
            }
        }
        for (n, r) in refs.iter().enumerate() {
            if let Some(len) = r.node_len {
                out[n] = self.have_subtree(Child { len, node: r.id }).await?;
            }
        }
        Ok(out)
    }

    /// Whether every chunk of the subtree under `root` is here, touching them all.
    async fn have_subtree(&self, root: Child) -> Result<bool, ClientError> {
        if !self
            .blocking(move |i| Ok(i.chunks.has_many(&[root.node])?))
            .await?[0]
        {
            return Ok(false);
        }
        let mut ids = HashSet::new();
        match self.collect_tree_ids(&Content::Tree(root), &mut ids).await {
            Ok(_) => {}
            // A node of the subtree is missing or bad here: ship it again.
            Err(ClientError::Corrupt(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        let ids: Vec<ChunkId> = ids.into_iter().collect();
        for batch in ids.chunks(TOUCH_BATCH) {
            let batch = batch.to_vec();
            let found = self
                .blocking(move |i| Ok(i.chunks.touch_many(&batch)?))
                .await?;
            if found.iter().any(|f| !f) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Stores chunks shipped by another site, each checked against its id first (`Corrupt`
    /// otherwise, and nothing of the call is stored after it). A node must decode as one
    /// covering its `node_len` and is stored only when everything it references is here
    /// (`InvalidRequest` otherwise: ship children before their parents). Durable on return.
    pub async fn put_shipped(
        &self,
        chunks: Vec<(ChunkRef, StoredChunk)>,
    ) -> Result<(), ClientError> {
        self.check_space()?;
        let checked = tokio::task::spawn_blocking(move || -> Result<_, ClientError> {
            let mut out = Vec::with_capacity(chunks.len());
            for (r, c) in chunks {
                let raw: Bytes = c.decode_verified(&r.id)?;
                let refs = match r.node_len {
                    Some(len) => TreeNode::decode_checked(&raw, len)?.referenced_chunks(),
                    None => Vec::new(),
                };
                out.push((r, c, refs));
            }
            Ok(out)
        })
        .await
        .map_err(|e| ClientError::Storage(format!("checking shipped chunks failed: {e}")))??;
        let mut stored: HashSet<ChunkId> = HashSet::new();
        for (r, c, refs) in checked {
            let wanted: Vec<ChunkId> = refs.into_iter().filter(|id| !stored.contains(id)).collect();
            if !wanted.is_empty() {
                let found = self
                    .blocking({
                        let wanted = wanted.clone();
                        move |i| Ok(i.chunks.touch_many(&wanted)?)
                    })
                    .await?;
                if let Some((missing, _)) = wanted.iter().zip(found).find(|(_, f)| !f) {
                    return Err(ClientError::InvalidRequest(format!(
                        "tree node {} references chunk {missing}, which is not stored here: \
                         a node is stored only after everything below it",
                        r.id
                    )));
                }
            }
            let id = r.id;
            self.blocking(move |i| Ok(i.chunks.put(&id, &c)?))
                .await
                .map_err(|e| self.note_error(e))?;
            stored.insert(id);
        }
        Ok(())
    }

    /// Applies a version made at another site under its own id, after its data was made
    /// durable here: idempotent (not applied if it was here already, was removed here, or a
    /// newer null version supersedes it). The clock moves past it, so later writes here sort
    /// after. Says whether it conflicts with a write made here: a version of the key with the
    /// same parent (both sites wrote over the same version), kept as a sibling in a versioned
    /// bucket; in an unversioned one the greater of the two null versions is kept everywhere.
    pub async fn apply_shipped(&self, m: VersionManifest) -> Result<ShippedApply, ClientError> {
        self.inner.hlc.observe(m.version);
        self.blocking(move |i| {
            let (applied, replaced) = i.meta.apply_when(&m, None, None)?;
            let conflict = if m.null_version {
                if applied {
                    replaced.iter().any(|r| r.parent == m.parent)
                } else {
                    i.meta
                        .get_null_version(&m.bucket, &m.key)?
                        .is_some_and(|n| n.version > m.version && n.parent == m.parent)
                }
            } else {
                applied && i.meta.count_siblings(&m)? > 0
            };
            Ok(ShippedApply { applied, conflict })
        })
        .await
        .map_err(|e| self.note_error(e))
    }

    /// How many siblings the version `m` has here (see [`Client::apply_shipped`]).
    pub async fn count_siblings(&self, m: &VersionManifest) -> Result<u32, ClientError> {
        let m = m.clone();
        self.blocking(move |i| Ok(i.meta.count_siblings(&m)?)).await
    }

    /// The key's current version and its siblings (versions written over the same parent at
    /// another site), newest first; empty if the key has no version.
    pub async fn siblings(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<VersionManifest>, ClientError> {
        let (b, k) = (bucket.to_string(), key.to_string());
        self.blocking(move |i| {
            let Some(head) = i.meta.head(&b, &k)? else {
                return Ok(Vec::new());
            };
            let q = crate::VersionsQuery {
                prefix: k.clone(),
                max_keys: 1000,
                ..Default::default()
            };
            let page = i.meta.list_versions(&b, &q)?;
            Ok(page
                .versions
                .into_iter()
                .filter(|v| {
                    v.key == k
                        && (v.version == head.version
                            || (v.parent == head.parent && v.version.site() != head.version.site()))
                })
                .collect())
        })
        .await
    }

    /// Removes a version another site removed; `false` if it was not here, in which case a
    /// tombstone keeps it from being applied if it arrives later (single-node sites; see
    /// `ManifestBackend::remove_shipped`).
    pub async fn remove_shipped(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
    ) -> Result<bool, ClientError> {
        let (b, k) = (bucket.to_string(), key.to_string());
        self.blocking(move |i| Ok(i.meta.remove_shipped(&b, &k, version)?))
            .await
    }

    /// Takes a bucket record another site has: creates the bucket if it is not here, or
    /// replaces this site's record when the other's revision is greater (the newest change
    /// of its settings wins at every site). Says which it did.
    pub async fn receive_bucket(&self, bucket: Bucket) -> Result<BucketReceived, ClientError> {
        if let Some(r) = bucket.revision {
            self.inner.hlc.observe(r);
        }
        self.blocking(move |i| {
            match i.meta.get_bucket(&bucket.name)? {
                None => {}
                Some(here) if here.revision >= bucket.revision => {
                    return Ok(BucketReceived::Unchanged)
                }
                Some(_) => {
                    let mut replace = |b: &mut Bucket| {
                        if b.revision >= bucket.revision {
                            return Err(ManifestError::refused(
                                cairn_manifestserver::Refusal::Conflict("newer here".into()),
                            ));
                        }
                        *b = bucket.clone();
                        Ok(())
                    };
                    return match i.meta.update_bucket(&bucket.name, &mut replace) {
                        Ok(_) => Ok(BucketReceived::Updated),
                        Err(e) if e.is_conflict() => Ok(BucketReceived::Unchanged),
                        Err(e) => Err(e.into()),
                    };
                }
            }
            match i.meta.create_bucket(&bucket) {
                Ok(()) => Ok(BucketReceived::Created),
                // Created here meanwhile: the next exchange compares revisions.
                Err(ManifestError::BucketExists { .. }) => Ok(BucketReceived::Unchanged),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Every bucket's record.
    pub async fn bucket_records(&self) -> Result<Vec<Bucket>, ClientError> {
        self.blocking(|i| Ok(i.meta.list_buckets()?)).await
    }
}
