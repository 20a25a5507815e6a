//! The transfer engine: given versions and removals a source has, makes the sink hold them,
//! sending only the tree nodes and chunks it lacks.
//!
//! For each batch: the source's manifests are read (a version gone since it was logged is
//! skipped: its removal follows in the log), the sink says which versions it lacks, then for
//! each lacking version's tree the sink is asked about the root. A node it holds stands for
//! its whole subtree (the sink checks that, and protects it from its GC); a node it lacks is
//! read from the source, its children asked about in one call, the data chunks it lacks
//! shipped (the node with the last of them), the child nodes it lacks handled the same way,
//! and the node itself shipped after them. Subtrees are shipped several at a time
//! ([`PARALLEL_NODES`] per level) so that round trips overlap, and the payload read and not
//! yet stored is bounded ([`IN_FLIGHT_KIB`]). Chunks travel in stored form, as the source
//! keeps them. Only then are the manifests applied, so a version is never visible at the sink
//! before its data is durable there.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use cairn_client::{ChunkId, ChunkRef, Content, StoredChunk, VersionManifest};
use cairn_core::extent::{Target, TreeNode, MAX_DEPTH};

use crate::error::{LinkError, LinkResult};
use crate::proto::{VersionKey, MAX_BODY, MAX_REFS, MAX_VERSIONS};
use crate::site::{Sink, Source};

/// What a link has moved, one set per direction, and how fast it may move it.
#[derive(Default)]
pub struct Traffic {
    /// Bounds the stored bytes shipped per second (0: no bound).
    pub limit: cairn_net::RateLimiter,
    /// Versions applied at the sink.
    pub versions: AtomicU64,
    /// Versions offered that the sink had already.
    pub versions_present: AtomicU64,
    /// Removals applied at the sink.
    pub removals: AtomicU64,
    /// Versions that conflicted with a write made at the sink (same parent).
    pub conflicts: AtomicU64,
    /// Tree nodes shipped.
    pub nodes: AtomicU64,
    /// Data chunks shipped.
    pub chunks: AtomicU64,
    /// Stored (compressed) bytes of the chunks and nodes shipped.
    pub bytes: AtomicU64,
    /// Logical bytes of data the sink already held, so they were not shipped.
    pub bytes_skipped: AtomicU64,
}

impl Traffic {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> TrafficSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TrafficSnapshot {
            versions: l(&self.versions),
            versions_present: l(&self.versions_present),
            removals: l(&self.removals),
            conflicts: l(&self.conflicts),
            nodes: l(&self.nodes),
            chunks: l(&self.chunks),
            bytes: l(&self.bytes),
            bytes_skipped: l(&self.bytes_skipped),
        }
    }
}

/// The counters of [`Traffic`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrafficSnapshot {
    /// Versions applied at the sink.
    pub versions: u64,
    /// Versions the sink had already.
    pub versions_present: u64,
    /// Removals applied.
    pub removals: u64,
    /// Versions that conflicted with a write made at the sink.
    pub conflicts: u64,
    /// Tree nodes shipped.
    pub nodes: u64,
    /// Data chunks shipped.
    pub chunks: u64,
    /// Stored bytes shipped.
    pub bytes: u64,
    /// Logical bytes not shipped because the sink had them.
    pub bytes_skipped: u64,
}

/// Makes `dst` hold the versions `adds` (read from `src`) and apply `removals`. Idempotent:
/// a batch that failed half-way is simply shipped again.
pub async fn ship(
    src: &dyn Source,
    dst: &dyn Sink,
    adds: Vec<VersionKey>,
    removals: Vec<VersionKey>,
    traffic: &Traffic,
) -> LinkResult<()> {
    let wanted = lacking(src, dst, adds, traffic).await?;
    ship_versions(src, dst, wanted, traffic).await?;
    apply_removals(dst, removals, traffic).await
}

/// [`ship`] for a metadata-only link: the versions the sink lacks are applied without their
/// data, which the sink fetches from the source when it is read (see `cairn_client`'s fetch
/// cache); removals as [`ship`] applies them.
pub async fn ship_metadata(
    src: &dyn Source,
    dst: &dyn Sink,
    adds: Vec<VersionKey>,
    removals: Vec<VersionKey>,
    traffic: &Traffic,
) -> LinkResult<()> {
    let wanted = lacking(src, dst, adds, traffic).await?;
    for part in wanted.chunks(MAX_VERSIONS) {
        let a = dst.apply(part.to_vec(), Vec::new()).await?;
        Traffic::add(&traffic.versions, u64::from(a.applied));
        Traffic::add(&traffic.conflicts, u64::from(a.conflicts));
    }
    apply_removals(dst, removals, traffic).await
}

/// The versions of `adds` the source still has and the sink lacks, as the source stores them.
async fn lacking(
    src: &dyn Source,
    dst: &dyn Sink,
    adds: Vec<VersionKey>,
    traffic: &Traffic,
) -> LinkResult<Vec<VersionManifest>> {
    let mut wanted: Vec<VersionManifest> = Vec::new();
    for part in adds.chunks(MAX_VERSIONS) {
        let found = src.versions(part.to_vec()).await?;
        if found.len() != part.len() {
            return Err(LinkError::Protocol(format!(
                "asked for {} versions, got {}",
                part.len(),
                found.len()
            )));
        }
        let found: Vec<VersionManifest> = found.into_iter().flatten().collect();
        let keys = found.iter().map(VersionKey::of).collect();
        let lacks = dst.lacks(keys).await?;
        if lacks.len() != found.len() {
            return Err(LinkError::Protocol(
                "the sink answered for other versions".into(),
            ));
        }
        for (m, lacks) in found.into_iter().zip(lacks) {
            if lacks {
                wanted.push(m);
            } else {
                Traffic::add(&traffic.versions_present, 1);
            }
        }
    }
    Ok(wanted)
}

async fn apply_removals(
    dst: &dyn Sink,
    removals: Vec<VersionKey>,
    traffic: &Traffic,
) -> LinkResult<()> {
    for part in removals.chunks(MAX_VERSIONS) {
        let a = dst.apply(Vec::new(), part.to_vec()).await?;
        Traffic::add(&traffic.removals, u64::from(a.removed));
    }
    Ok(())
}

/// Ships the data of `versions` (which the sink lacks), then applies them there.
pub async fn ship_versions(
    src: &dyn Source,
    dst: &dyn Sink,
    versions: Vec<VersionManifest>,
    traffic: &Traffic,
) -> LinkResult<()> {
    let mover = Mover {
        src,
        dst,
        traffic,
        shipped: Mutex::new(HashSet::new()),
        in_flight: Semaphore::new(IN_FLIGHT_KIB),
    };
    for part in versions.chunks(MAX_REFS) {
        let roots: Vec<(ChunkRef, u64)> = part
            .iter()
            .filter_map(|m| match &m.content {
                Content::Tree(root) => Some((ChunkRef::node(*root), root.len)),
                _ => None,
            })
            .collect();
        mover.ensure(roots, 1).await?;
        let a = dst.apply(part.to_vec(), Vec::new()).await?;
        Traffic::add(&traffic.versions, u64::from(a.applied));
        Traffic::add(&traffic.conflicts, u64::from(a.conflicts));
    }
    Ok(())
}

/// Subtrees shipped at once (per level of a tree), so round trips overlap.
const PARALLEL_NODES: usize = 8;
/// Data chunks read from the source and shipped per call.
const CHUNKS_PER_PUT: usize = 16;
/// Payload held in memory at once by one batch's transfers, in KiB.
const IN_FLIGHT_KIB: usize = 64 << 10;
/// Most bytes one chunk can stand for when its size is estimated.
const MAX_CHUNK_ESTIMATE: u64 = 4 << 20;

/// One batch's descent.
struct Mover<'a> {
    src: &'a dyn Source,
    dst: &'a dyn Sink,
    traffic: &'a Traffic,
    /// Chunks the sink holds (shipped in this batch, or found held): not asked about again.
    /// A chunk is added only once it is stored, so a node shipped by one subtree's task never
    /// relies on a chunk another task is still sending.
    shipped: Mutex<HashSet<ChunkId>>,
    /// Bounds the payload read from the source and not yet stored at the sink.
    in_flight: Semaphore,
}

impl Mover<'_> {
    /// Makes the sink hold every chunk of `refs` (nodes: their whole subtree); `depth` is the
    /// tree level of `refs` (roots are 1). Each ref comes with the logical bytes it stands
    /// for, counted as not shipped when the sink holds it. Nodes the sink lacks are shipped
    /// [`PARALLEL_NODES`] at a time.
    async fn ensure(&self, refs: Vec<(ChunkRef, u64)>, depth: usize) -> LinkResult<()> {
        if depth > MAX_DEPTH {
            return Err(LinkError::Protocol(format!(
                "extent tree deeper than {MAX_DEPTH} levels"
            )));
        }
        let lacking = self.lacking(refs).await?;
        let (nodes, data): (Vec<_>, Vec<_>) =
            lacking.into_iter().partition(|(r, _)| r.node_len.is_some());
        self.send(data, None).await?;
        futures::stream::iter(nodes)
            .map(|(node, _)| self.ensure_node(node, depth))
            .buffer_unordered(PARALLEL_NODES)
            .try_collect::<()>()
            .await
    }

    /// Which of `refs` the sink lacks (asking only about those not known to be there).
    async fn lacking(&self, refs: Vec<(ChunkRef, u64)>) -> LinkResult<Vec<(ChunkRef, u64)>> {
        let refs: Vec<(ChunkRef, u64)> = {
            let shipped = self.shipped.lock();
            let mut seen = HashSet::new();
            refs.into_iter()
                .filter(|(r, _)| !shipped.contains(&r.id) && seen.insert(r.id))
                .collect()
        };
        let mut lacking = Vec::new();
        for part in refs.chunks(MAX_REFS) {
            let have = self
                .dst
                .have(part.iter().map(|(r, _)| *r).collect())
                .await?;
            if have.len() != part.len() {
                return Err(LinkError::Protocol(
                    "the sink answered for other chunks".into(),
                ));
            }
            let mut shipped = self.shipped.lock();
            for ((r, len), have) in part.iter().zip(have) {
                if have {
                    shipped.insert(r.id);
                    Traffic::add(&self.traffic.bytes_skipped, *len);
                } else {
                    lacking.push((*r, *len));
                }
            }
        }
        Ok(lacking)
    }

    /// Ships a node the sink lacks: what is below it first, then the node (with the last of
    /// its data chunks, when its children are data).
    async fn ensure_node(&self, node: ChunkRef, depth: usize) -> LinkResult<()> {
        let len = node.node_len.unwrap_or_default();
        let stored = self.fetch(vec![node.id]).await?.remove(0);
        let raw = stored
            .decode_verified(&node.id)
            .map_err(|e| LinkError::Protocol(format!("tree node from the source: {e}")))?;
        let tree = TreeNode::decode_checked(&raw, len).map_err(|e| {
            LinkError::Protocol(format!("tree node {} from the source: {e}", node.id))
        })?;
        match &tree {
            TreeNode::Children(children) => {
                let below = children
                    .iter()
                    .map(|c| (ChunkRef::node(*c), c.len))
                    .collect();
                Box::pin(self.ensure(below, depth + 1)).await?;
                Traffic::add(&self.traffic.nodes, 1);
                Traffic::add(&self.traffic.bytes, stored.payload.len() as u64);
                self.traffic
                    .limit
                    .acquire(stored.payload.len() as u64)
                    .await;
                self.dst.put(vec![(node, stored)]).await?;
                self.shipped.lock().insert(node.id);
            }
            TreeNode::Leaves(leaves) => {
                let below = leaves
                    .iter()
                    .filter_map(|l| match l.target {
                        Target::Chunk { id, .. } => Some((ChunkRef::data(id), l.len)),
                        _ => None,
                    })
                    .collect();
                let lacking = self.lacking(below).await?;
                self.send(lacking, Some((node, stored))).await?;
            }
        }
        Ok(())
    }

    /// Ships data chunks, [`CHUNKS_PER_PUT`] per call, then `node` (with the last call), all
    /// stored before the call returns.
    async fn send(
        &self,
        data: Vec<(ChunkRef, u64)>,
        mut node: Option<(ChunkRef, StoredChunk)>,
    ) -> LinkResult<()> {
        let node_id = node.as_ref().map(|(r, _)| r.id);
        let parts: Vec<&[(ChunkRef, u64)]> = data.chunks(CHUNKS_PER_PUT).collect();
        let last = parts.len();
        for (n, part) in parts.into_iter().enumerate() {
            let estimate: u64 = part
                .iter()
                .map(|(_, len)| (*len).clamp(1, MAX_CHUNK_ESTIMATE))
                .sum();
            let kib = (estimate.div_ceil(1024) as usize).clamp(1, IN_FLIGHT_KIB);
            let _permit = self
                .in_flight
                .acquire_many(kib as u32)
                .await
                .map_err(|_| LinkError::Protocol("transfer closed".into()))?;
            let ids = part.iter().map(|(r, _)| r.id).collect();
            let stored = self.fetch(ids).await?;
            let mut batch: Vec<(ChunkRef, StoredChunk)> = Vec::with_capacity(part.len() + 1);
            let mut bytes = 0u64;
            for ((r, _), c) in part.iter().zip(stored) {
                let len = c.payload.len() as u64;
                if bytes + len > MAX_BODY && !batch.is_empty() {
                    self.dst.put(std::mem::take(&mut batch)).await?;
                    bytes = 0;
                }
                bytes += len;
                self.traffic.limit.acquire(len).await;
                Traffic::add(&self.traffic.chunks, 1);
                Traffic::add(&self.traffic.bytes, len);
                batch.push((*r, c));
            }
            if n + 1 == last {
                if let Some((r, c)) = node.take() {
                    Traffic::add(&self.traffic.nodes, 1);
                    Traffic::add(&self.traffic.bytes, c.payload.len() as u64);
                    self.traffic.limit.acquire(c.payload.len() as u64).await;
                    batch.push((r, c));
                }
            }
            if !batch.is_empty() {
                self.dst.put(batch).await?;
            }
            self.shipped.lock().extend(part.iter().map(|(r, _)| r.id));
        }
        if let Some((r, c)) = node {
            // Every data chunk was held already: the node goes alone.
            Traffic::add(&self.traffic.nodes, 1);
            Traffic::add(&self.traffic.bytes, c.payload.len() as u64);
            self.traffic.limit.acquire(c.payload.len() as u64).await;
            self.dst.put(vec![(r, c)]).await?;
        }
        if let Some(id) = node_id {
            self.shipped.lock().insert(id);
        }
        Ok(())
    }

    /// Chunks from the source; one it no longer holds fails the batch (the version it
    /// belongs to was removed and collected there meanwhile: the next pass skips it).
    async fn fetch(&self, ids: Vec<ChunkId>) -> LinkResult<Vec<StoredChunk>> {
        let found = self.src.stored(ids.clone()).await?;
        if found.len() != ids.len() {
            return Err(LinkError::Protocol(format!(
                "asked the source for {} chunks, got {}",
                ids.len(),
                found.len()
            )));
        }
        ids.iter()
            .zip(found)
            .map(|(id, c)| {
                c.ok_or_else(|| {
                    LinkError::Local(cairn_client::ClientError::Storage(format!(
                        "chunk {id} is no longer at the source (its version was removed \
                         meanwhile?)"
                    )))
                })
            })
            .collect()
    }
}
