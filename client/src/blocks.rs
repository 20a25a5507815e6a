//! What block volumes need from the client beyond S3's whole-object writes: storing one fixed
//! extent, reading and mapping a range of a tree they keep in memory, and committing a version
//! whose tree they built themselves (copy-on-write splices of the previous one).

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use cairn_chunkserver::StoredChunk;
use cairn_core::codec::{self, Codec};
use cairn_core::extent::{Child, Leaf, NodeStore, RangeWalker, Target};
use cairn_core::manifest::{Content, ContentHeaders, ObjectLock};
use cairn_core::ChunkId;
use futures::{StreamExt, TryStreamExt};

use crate::client::{now_ms, Client};
use crate::{ClientError, PutResult, VersionManifest, WriteCondition};

/// Pieces of one range read fetched at once.
const READ_PARALLEL: usize = 8;
/// Extents stored at once, one store call each, when the chunk backend does not group puts
/// (a multi-node site: each waits on its replicas).
const STORE_PARALLEL: usize = 16;
/// Most extents, and bytes, of one grouped store call (one durable write on a local store).
const GROUP_EXTENTS: usize = 256;
const GROUP_BYTES: usize = 4 << 20;
/// Most chunks one grouped read call fetches.
const READ_GROUP: usize = 32;
/// Grouped store calls at once: one hashes and compresses while another syncs.
const GROUPS_PARALLEL: usize = 3;

/// A run of a tree's range that is all holes (zeros, never stored) or all data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeRun {
    /// Bytes covered.
    pub len: u64,
    /// The bytes are zeros that take no space.
    pub hole: bool,
}

/// A chunk for [`Client::store_hashed`]: its id (the hash of `bytes`), its bytes, and whether
/// to store it without trying to compress it.
#[derive(Clone, Debug)]
pub struct Hashed {
    /// [`ChunkId::of`] `bytes`.
    pub id: ChunkId,
    /// The chunk.
    pub bytes: Bytes,
    /// Store as is (no compression attempt).
    pub raw: bool,
}

impl Client {
    /// Hashes, compresses and durably stores one extent of a volume (at the write quorum on a
    /// multi-node site); an all-zero extent is not stored. Refused when the site is full.
    pub async fn store_extent(&self, data: Bytes) -> Result<Leaf, ClientError> {
        self.store_extent_for("", data).await
    }

    /// [`Client::store_extent`] for `bucket`: stored first here, the extent counts in that
    /// bucket's bytes after dedup ("" for none).
    pub async fn store_extent_for(&self, bucket: &str, data: Bytes) -> Result<Leaf, ClientError> {
        self.check_space()?;
        self.store_chunk(data, bucket_owner(bucket))
            .await
            .map_err(|e| self.note_error(e))
    }

    /// Durably stores chunks (volume extents, tree nodes) whose ids the caller computed: each
    /// id must be [`ChunkId::of`] its bytes, so nothing is hashed twice. Chunks marked `raw`
    /// are stored without a compression attempt (tree nodes: mostly chunk ids, which do not
    /// compress). On a local store they go in groups, each one durable write, so a commit of
    /// thousands of small extents costs a few syncs rather than one each; on a multi-node site
    /// one quorum put each, several at once. Refused when the site is full.
    pub async fn store_hashed(&self, chunks: Vec<Hashed>) -> Result<(), ClientError> {
        self.store_hashed_for("", chunks).await
    }

    /// [`Client::store_hashed`] for `bucket`: the chunks stored first here count in that
    /// bucket's bytes after dedup ("" for none).
    pub async fn store_hashed_for(
        &self,
        bucket: &str,
        chunks: Vec<Hashed>,
    ) -> Result<(), ClientError> {
        let owner = bucket_owner(bucket);
        self.check_space()?;
        debug_assert!(chunks.iter().all(|c| c.id == ChunkId::of(&c.bytes)));
        if !self.inner.chunks.groups_puts() {
            return futures::stream::iter(chunks)
                .map(|c| {
                    self.blocking(move |i| {
                        let len = c.bytes.len() as u32;
                        if c.raw {
                            i.chunks
                                .put_encoded_owned(&c.id, Codec::Raw, len, &c.bytes, owner)?;
                        } else {
                            codec::encode_with(&c.bytes, |codec, payload| {
                                i.chunks
                                    .put_encoded_owned(&c.id, codec, len, payload, owner)
                            })?;
                        }
                        Ok(())
                    })
                })
                .buffered(STORE_PARALLEL)
                .try_collect::<Vec<()>>()
                .await
                .map(|_| ())
                .map_err(|e| self.note_error(e));
        }
        let mut groups: Vec<Vec<Hashed>> = Vec::new();
        let mut bytes = 0;
        for c in chunks {
            let full = groups
                .last()
                .is_none_or(|g| g.len() >= GROUP_EXTENTS || bytes + c.bytes.len() > GROUP_BYTES);
            if full {
                groups.push(Vec::new());
                bytes = 0;
            }
            bytes += c.bytes.len();
            groups.last_mut().expect("a group").push(c);
        }
        futures::stream::iter(groups)
            .map(|group| {
                self.blocking(move |i| {
                    let puts: Vec<(ChunkId, StoredChunk)> = group
                        .into_iter()
                        .map(|c| {
                            let stored = if c.raw {
                                StoredChunk::raw(c.bytes)
                            } else {
                                StoredChunk::encode(c.bytes)
                            };
                            (c.id, stored)
                        })
                        .collect();
                    i.chunks.put_many_owned(&puts, owner)?;
                    Ok(())
                })
            })
            .buffered(GROUPS_PARALLEL)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
            .map_err(|e| self.note_error(e))
    }

    /// [`Client::read_chunk_bytes`] of many chunks, in order. From a local store they are read
    /// in groups, one blocking-pool hand-off each (a read gathering many small chunks costs a
    /// few hand-offs, not one per chunk); from a multi-node site one call each, several at once.
    pub async fn read_chunks(&self, ids: Vec<ChunkId>) -> Result<Vec<Bytes>, ClientError> {
        if !self.inner.chunks.groups_puts() {
            return futures::stream::iter(ids)
                .map(|id| self.read_chunk(id))
                .buffered(READ_PARALLEL)
                .try_collect()
                .await;
        }
        let groups: Vec<Vec<ChunkId>> = ids.chunks(READ_GROUP).map(|g| g.to_vec()).collect();
        let read: Vec<Vec<Option<Bytes>>> = futures::stream::iter(groups)
            .map(|group| self.blocking(move |i| Ok(i.chunks.get_many(&group)?)))
            .buffered(GROUPS_PARALLEL)
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, b) in ids.iter().zip(read.into_iter().flatten()) {
            out.push(match b {
                Some(b) => b,
                None => self.fetch_missing(*id).await?.0,
            });
        }
        Ok(out)
    }

    /// The bytes of chunk `id`, verified against the id by the store; a missing chunk is an
    /// error (trees that reach it are corrupt). Backups copy chunks with it.
    pub async fn read_chunk_bytes(&self, id: ChunkId) -> Result<Bytes, ClientError> {
        self.read_chunk_queued(id).await
    }

    /// How many of each chunk's placed replicas hold it and how many could not be asked
    /// (volume health); on a single node, whether the store holds it.
    pub async fn replica_census(
        &self,
        ids: Vec<ChunkId>,
    ) -> Result<cairn_core::placement::ReplicaCensus, ClientError> {
        self.blocking(move |i| Ok(i.chunks.replica_census(&ids)?))
            .await
    }

    /// The bytes `[start, end)` of the tree at `root`, read whole.
    pub async fn read_tree(&self, root: Child, start: u64, end: u64) -> Result<Bytes, ClientError> {
        self.read_tree_via(self, root, start, end).await
    }

    /// [`Client::read_tree`] loading tree nodes from `nodes` (a cache over this client).
    pub async fn read_tree_via<S: NodeStore<Error = ClientError>>(
        &self,
        nodes: &S,
        root: Child,
        start: u64,
        end: u64,
    ) -> Result<Bytes, ClientError> {
        let mut walker = RangeWalker::new(root, start, end)?;
        let mut pieces = Vec::new();
        while let Some(p) = walker.next(nodes).await? {
            pieces.push(p);
        }
        let parts: Vec<Bytes> = futures::stream::iter(pieces)
            .map(|p| async move {
                let (off, len) = (p.offset as usize, p.len as usize);
                match p.target {
                    Target::Zeros => Ok(Bytes::from(vec![0u8; len])),
                    Target::Inline(b) => crate::get::slice(&b, off, len),
                    Target::Chunk { id, .. } => {
                        let chunk = self.read_chunk(id).await?;
                        crate::get::slice(&chunk, off, len)
                    }
                }
            })
            .buffered(READ_PARALLEL)
            .try_collect()
            .await?;
        if parts.len() == 1 {
            return Ok(parts.into_iter().next().unwrap_or_default());
        }
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for p in parts {
            out.extend_from_slice(&p);
        }
        Ok(out.freeze())
    }

    /// The allocation map of `[start, end)` of the tree at `root`: runs of holes and data, in
    /// order, adjacent runs of the same kind merged. Reads tree nodes only, no data.
    pub async fn map_tree(
        &self,
        root: Child,
        start: u64,
        end: u64,
    ) -> Result<Vec<TreeRun>, ClientError> {
        self.map_tree_via(self, root, start, end).await
    }

    /// [`Client::map_tree`] loading tree nodes from `nodes` (a cache over this client).
    pub async fn map_tree_via<S: NodeStore<Error = ClientError>>(
        &self,
        nodes: &S,
        root: Child,
        start: u64,
        end: u64,
    ) -> Result<Vec<TreeRun>, ClientError> {
        let mut walker = RangeWalker::new(root, start, end)?;
        let mut runs: Vec<TreeRun> = Vec::new();
        while let Some(p) = walker.next(nodes).await? {
            let hole = matches!(p.target, Target::Zeros);
            match runs.last_mut() {
                Some(last) if last.hole == hole => last.len += p.len,
                _ => runs.push(TreeRun { len: p.len, hole }),
            }
        }
        Ok(runs)
    }

    /// Commits a version of `bucket`/`key` whose content (a tree built with
    /// [`cairn_core::extent::splice`] on this client, every node and chunk already durable) is
    /// `root`, with `user_metadata`, if `condition` holds. Its ETag is the root's id, so a
    /// writer can make the next commit conditional on this one still being current.
    pub async fn put_tree(
        &self,
        bucket: &str,
        key: &str,
        root: Child,
        user_metadata: BTreeMap<String, String>,
        condition: Option<WriteCondition>,
    ) -> Result<PutResult, ClientError> {
        self.put_tree_with(
            bucket,
            key,
            Some(root),
            ContentHeaders::default(),
            user_metadata,
            condition,
        )
        .await
    }

    /// [`Client::put_tree`] with content headers, and of an empty object when `root` is
    /// `None` (its ETag is then the MD5 of no bytes, as S3 gives it).
    pub async fn put_tree_with(
        &self,
        bucket: &str,
        key: &str,
        root: Option<Child>,
        headers: ContentHeaders,
        user_metadata: BTreeMap<String, String>,
        condition: Option<WriteCondition>,
    ) -> Result<PutResult, ClientError> {
        self.check_space()?;
        let b = self.head_bucket(bucket).await?;
        // A tree built in place (NFS) is plaintext: a bucket that encrypts new objects by
        // default does not take it rather than store it unencrypted.
        if b.encryption.is_some() && root.is_some_and(|r| r.len > 0) {
            return Err(ClientError::AccessDenied(format!(
                "bucket `{bucket}` encrypts new objects by default, which writes in place cannot \
                 do: write its objects through S3"
            )));
        }
        let (size, etag, content) = match root {
            Some(root) if root.len > 0 => (root.len, tree_etag(&root), Content::Tree(root)),
            _ => (0, EMPTY_MD5.to_string(), Content::Empty),
        };
        let m = VersionManifest {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version: cairn_core::VersionId::MIN,
            parent: None,
            null_version: false,
            delete_marker: false,
            mtime_ms: now_ms(),
            size,
            etag,
            headers,
            user_metadata,
            tags: BTreeMap::new(),
            checksums: BTreeMap::new(),
            parts: None,
            content,
            owner: b.owner.clone(),
            acl: Vec::new(),
            lock: ObjectLock::default(),
            checksum_type: None,
            owner_grant: true,
            encryption: None,
        };
        self.commit_if(&b, m, condition).await
    }
}

/// The MD5 of no bytes: the ETag of an empty object.
const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// The ETag [`Client::put_tree`] gives a version with tree `root`.
pub fn tree_etag(root: &Child) -> String {
    format!("{}-{}", root.node, root.len)
}

/// The owner tag of `bucket` for chunk attribution; 0 (unattributed) for "".
fn bucket_owner(bucket: &str) -> u64 {
    match bucket {
        "" => 0,
        b => cairn_core::owner_tag(b),
    }
}
