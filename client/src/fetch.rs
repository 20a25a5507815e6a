//! Chunks this site does not hold, fetched from the sites it is linked to.
//!
//! A site that receives a link's versions as metadata only (`--data metadata-only`) holds
//! their manifests but not their trees or chunks. When a read reaches a chunk that is not
//! here, the client asks the linked sites ([`RemoteChunks`], installed by the link worker),
//! checks the bytes against the chunk's id, and keeps the chunk in the store's bounded fetch
//! cache ([`ChunkBackend::put_cached`]): the least recently used cached chunks are evicted past
//! the cache size, unless pinned ([`Client::pin_object`]). A chunk that fails its check is
//! refused: nothing is stored and the read fails.
//!
//! **Multi-node sites.** The node that runs the metadata-only link keeps the site's fetch
//! cache in its own chunk store, outside placement (see `cairn_chunkserver::replicated`). The
//! other nodes' clients get a [`PeerFetch`] ([`Client::set_peer_fetch`]): a chunk that no
//! replica holds is asked of the nodes that run such a link (the chunk service's `Fetch`),
//! which answer from their store or fetch it; these nodes check it and serve it without
//! keeping it, so the site keeps one cached copy. Pins are kept by the node that runs the link
//! (pin through that node).
//!
//! **GC.** On such a site a tree node missing here stands for a subtree the linked site holds:
//! the mark walks what is here and skips the rest (see [`Client::skips_absent_nodes`]). Cached
//! chunks under a node that is here are marked like any other; those under an evicted node
//! may be collected, and are fetched again on the next read.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_chunkserver::ChunkError;
use cairn_chunkserver::{CacheStats, FetchSource, ReplicatedChunks, StoredChunk};
use cairn_core::extent::{Target, TreeNode, MAX_DEPTH};
use cairn_core::{ChunkId, NodeId};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::ClientError;

/// Where chunks missing here come from: the sites this one is linked to.
pub trait RemoteChunks: Send + Sync {
    /// Chunks in stored form, in order, `None` where no linked site holds one; an error when
    /// no linked site could be asked.
    fn fetch(&self, ids: Vec<ChunkId>) -> BoxFuture<'_, Result<Vec<Option<StoredChunk>>, String>>;

    /// True when the chunks come through other nodes of this site, which keep them in their
    /// fetch cache: this node checks and serves them without storing them. False (the
    /// default) for a link's fetcher.
    fn via_peers(&self) -> bool {
        false
    }

    /// Whether a linked site stands behind this source now (true by default; a
    /// [`PeerFetch`] asks whether some node of the site runs a metadata-only link).
    fn active(&self) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}

/// How long [`PeerFetch`] trusts its last answer to "which nodes fetch?".
const PEERS_FOR: Duration = Duration::from_secs(5);

/// Chunks missing at every replica, asked of the nodes of this multi-node site that run a
/// metadata-only link (see the module docs).
pub struct PeerFetch {
    chunks: Arc<ReplicatedChunks>,
    /// The nodes that answered they fetch, and when they were asked.
    peers: tokio::sync::Mutex<Option<(Instant, Vec<NodeId>)>>,
}

impl PeerFetch {
    /// Asks through `chunks`, the site's replicated backend.
    pub fn new(chunks: Arc<ReplicatedChunks>) -> Self {
        PeerFetch {
            chunks,
            peers: tokio::sync::Mutex::new(None),
        }
    }

    /// The nodes that fetch, asked at most every [`PEERS_FOR`].
    async fn peers(&self) -> Vec<NodeId> {
        let mut last = self.peers.lock().await;
        if let Some((at, peers)) = &*last {
            if at.elapsed() < PEERS_FOR {
                return peers.clone();
            }
        }
        let peers = self.chunks.peers_that_fetch().await;
        *last = Some((Instant::now(), peers.clone()));
        peers
    }
}

impl RemoteChunks for PeerFetch {
    fn fetch(&self, ids: Vec<ChunkId>) -> BoxFuture<'_, Result<Vec<Option<StoredChunk>>, String>> {
        Box::pin(async move {
            let peers = self.peers().await;
            if peers.is_empty() {
                return Err("no node of this site runs a metadata-only link now".into());
            }
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push(
                    self.chunks
                        .fetch_from_peers(&peers, id)
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            Ok(out)
        })
    }

    fn via_peers(&self) -> bool {
        true
    }

    fn active(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move { !self.peers().await.is_empty() })
    }
}

/// Default size of the fetch cache: 10 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 10 << 30;

/// What fetching has done since the client started.
#[derive(Default)]
pub(crate) struct FetchCounters {
    pub chunks: AtomicU64,
    pub bytes: AtomicU64,
    pub refused: AtomicU64,
    pub missing: AtomicU64,
    pub evicted: AtomicU64,
}

/// The fetch cache's state, for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchStats {
    /// Whether linked sites are asked for chunks missing here.
    pub enabled: bool,
    /// Most stored bytes the cache keeps (pinned chunks beyond it).
    pub limit_bytes: u64,
    /// The cache now.
    pub cache: CacheStats,
    /// Chunks fetched and stored.
    pub fetched_chunks: u64,
    /// Their stored bytes.
    pub fetched_bytes: u64,
    /// Chunks a linked site sent that failed their check (refused, not stored).
    pub refused_chunks: u64,
    /// Chunks no linked site held.
    pub missing_chunks: u64,
    /// Chunks evicted from the cache.
    pub evicted_chunks: u64,
}

/// What [`Client::pin_object`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinReport {
    /// Chunks (tree nodes included) of the version's tree.
    pub chunks: u64,
    /// Of them, fetched from a linked site now.
    pub fetched: u64,
    /// Newly pinned cached chunks (those stored here for good were never evictable).
    pub pinned: u64,
}

/// Chunks fetched per call to the linked sites while pinning.
const PIN_BATCH: usize = 64;

/// The error of a chunk no linked site holds.
fn missing_everywhere(id: ChunkId) -> ClientError {
    ClientError::Corrupt(format!(
        "chunk {id} is missing here and at every linked site"
    ))
}

/// The pin name of an object's key.
fn pin_name(bucket: &str, key: &str) -> String {
    format!("obj/{bucket}\0{key}")
}

impl Client {
    /// Makes reads of chunks missing here ask `remote` (the link worker), keeping what it
    /// sends in the fetch cache, bounded to `limit_bytes`. Only a node that holds chunks (a
    /// single-node site, or a node with the chunk role) keeps a fetch cache.
    pub fn set_remote_chunks(
        &self,
        remote: Arc<dyn RemoteChunks>,
        limit_bytes: u64,
    ) -> Result<(), ClientError> {
        if !self.inner.chunks.caches() {
            return Err(ClientError::InvalidArgument(
                "this node holds no chunks, so it cannot keep the fetch cache of a metadata-only \
                 link: run the link on a node with the chunk role, or use --data full"
                    .into(),
            ));
        }
        self.inner.cache_limit.store(limit_bytes, Ordering::Relaxed);
        *self.inner.remote.write() = Some(remote);
        Ok(())
    }

    /// Makes a node of a multi-node site ask the nodes that run a metadata-only link for
    /// chunks no replica holds (see the module docs); a link's own fetcher, installed later
    /// by [`Client::set_remote_chunks`], replaces it.
    pub fn set_peer_fetch(&self, chunks: Arc<ReplicatedChunks>) {
        let mut remote = self.inner.remote.write();
        if remote.is_none() {
            *remote = Some(Arc::new(PeerFetch::new(chunks)));
        }
    }

    /// Whether this node fetches chunks missing here through its own link to another site
    /// (and keeps them in its fetch cache).
    pub fn fetches_remote(&self) -> bool {
        self.inner
            .remote
            .read()
            .as_ref()
            .is_some_and(|r| !r.via_peers())
    }

    /// Whether a tree node that no replica holds stands for a subtree a linked site holds,
    /// so that walks of the site's own data (GC's mark) skip it instead of failing: true when
    /// this node fetches through a link, or a node of its site does now.
    pub async fn skips_absent_nodes(&self) -> bool {
        let remote = self.inner.remote.read().clone();
        match remote {
            Some(r) => r.active().await,
            None => false,
        }
    }

    /// The fetch cache's state (kept in memory by the store: cheap).
    pub fn fetch_stats(&self) -> Result<FetchStats, ClientError> {
        let cache = self.inner.chunks.cache_stats()?.unwrap_or_default();
        let c = &self.inner.fetched;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Ok(FetchStats {
            enabled: self.fetches_remote(),
            limit_bytes: l(&self.inner.cache_limit),
            cache,
            fetched_chunks: l(&c.chunks),
            fetched_bytes: l(&c.bytes),
            refused_chunks: l(&c.refused),
            missing_chunks: l(&c.missing),
            evicted_chunks: l(&c.evicted),
        })
    }

    /// A chunk that is not here, fetched from the linked sites, checked against its id and
    /// kept in the fetch cache; its verified bytes and stored form.
    pub(crate) async fn fetch_missing(
        &self,
        id: ChunkId,
    ) -> Result<(Bytes, StoredChunk), ClientError> {
        self.fetch_missing_pinned(id, None)
            .await?
            .ok_or_else(|| missing_everywhere(id))
    }

    /// [`Client::fetch_missing`], pinning the chunk under `pin` (if given) before the cache
    /// evicts anything.
    /// `None` when no linked site holds the chunk.
    async fn fetch_missing_pinned(
        &self,
        id: ChunkId,
        pin: Option<String>,
    ) -> Result<Option<(Bytes, StoredChunk)>, ClientError> {
        let remote = self.inner.remote.read().clone();
        let Some(remote) = remote else {
            return Err(ClientError::Corrupt(format!("chunk {id} is missing")));
        };
        if remote.via_peers() && !remote.active().await {
            // A multi-node site without a metadata-only link: the chunk is simply missing.
            return Err(ClientError::Corrupt(format!("chunk {id} is missing")));
        }
        let got = remote.fetch(vec![id]).await.map_err(|e| {
            ClientError::Storage(format!(
                "chunk {id} is not at this site and no linked site could be asked for it: {e}"
            ))
        })?;
        let Some(stored) = got.into_iter().next().flatten() else {
            self.inner.fetched.missing.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        let raw = match stored.decode_verified(&id) {
            Ok(raw) => raw,
            Err(e) => {
                self.inner.fetched.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(chunk = %id, error = %e,
                    "a linked site sent a chunk that fails its check: refused");
                return Err(ClientError::Corrupt(format!(
                    "chunk {id} as a linked site sent it fails its check ({e}); it was refused \
                     and not stored: scrub the other site"
                )));
            }
        };
        let c = &self.inner.fetched;
        if remote.via_peers() {
            // The node that fetched it keeps it in the site's cache.
            c.chunks.fetch_add(1, Ordering::Relaxed);
            c.bytes
                .fetch_add(stored.payload.len() as u64, Ordering::Relaxed);
            return Ok(Some((raw, stored)));
        }
        let keep = stored.clone();
        let limit = self.inner.cache_limit.load(Ordering::Relaxed);
        let evicted = self
            .blocking(move |i| {
                i.chunks.put_cached(&id, &keep)?;
                if let Some(pin) = pin {
                    i.chunks.pin_cached(&pin, &[id])?;
                }
                let over = i
                    .chunks
                    .cache_stats()?
                    .is_some_and(|s| s.stored_bytes > limit);
                Ok(if over {
                    i.chunks.evict_cache(limit)?.0
                } else {
                    0
                })
            })
            .await?;
        c.chunks.fetch_add(1, Ordering::Relaxed);
        c.bytes
            .fetch_add(stored.payload.len() as u64, Ordering::Relaxed);
        c.evicted.fetch_add(evicted, Ordering::Relaxed);
        Ok(Some((raw, stored)))
    }

    /// Pins the chunks of `ids` cached here under `name`, then fetches and pins those
    /// missing (one evicted before its pin is missing then, and fetched again); returns how
    /// many were fetched and how many newly pinned.
    async fn fetch_and_pin(
        &self,
        name: &str,
        ids: Vec<ChunkId>,
    ) -> Result<(u64, u64), ClientError> {
        let mut pinned = self.pin_ids(name, ids.clone()).await?;
        let present = self
            .blocking({
                let ids = ids.clone();
                move |i| {
                    let held = i.chunks.has_many(&ids)?;
                    let cached = i.chunks.cached_many(&ids)?;
                    Ok(held
                        .into_iter()
                        .zip(cached)
                        .map(|(h, c)| h || c)
                        .collect::<Vec<_>>())
                }
            })
            .await?;
        let mut fetched = 0;
        for (id, present) in ids.into_iter().zip(present) {
            if !present {
                self.fetch_missing_pinned(id, Some(name.to_string()))
                    .await?
                    .ok_or_else(|| missing_everywhere(id))?;
                fetched += 1;
                pinned += 1;
            }
        }
        Ok((fetched, pinned))
    }

    /// Makes the current version of `bucket/key` wholly local and keeps it: every tree node
    /// and chunk missing here is fetched from the linked sites, and the cached ones are pinned
    /// so the cache never evicts them (they stay until [`Client::unpin_object`], or until GC
    /// collects them once no version reaches them). Pinning again adds what a newer version
    /// needs.
    pub async fn pin_object(&self, bucket: &str, key: &str) -> Result<PinReport, ClientError> {
        self.check_keeps_cache()?;
        let m = self.stored_current(bucket, key).await?;
        let name = pin_name(bucket, key);
        let mut report = PinReport::default();
        let Some(root) = m.content.tree() else {
            return Ok(report);
        };
        // Level by level: each level's nodes are pinned (fetched and pinned, if missing)
        // before they are read, so the cache cannot evict one between; a fetched chunk is
        // pinned before anything is evicted.
        let mut level = vec![root];
        let mut seen: HashSet<ChunkId> = HashSet::new();
        let mut depth = 1;
        while !level.is_empty() {
            if depth > MAX_DEPTH {
                return Err(ClientError::Corrupt(format!(
                    "extent tree of {bucket}/{key} is deeper than {MAX_DEPTH} levels"
                )));
            }
            level.retain(|c| seen.insert(c.node));
            let mut next = Vec::new();
            for part in level.chunks(PIN_BATCH) {
                let ids: Vec<ChunkId> = part.iter().map(|c| c.node).collect();
                let (fetched, pinned) = self.fetch_and_pin(&name, ids).await?;
                report.fetched += fetched;
                report.pinned += pinned;
                report.chunks += part.len() as u64;
                let mut data = Vec::new();
                for c in part {
                    match self.tree_node(c.node, c.len).await? {
                        TreeNode::Children(children) => next.extend(children),
                        TreeNode::Leaves(leaves) => {
                            for l in leaves {
                                if let Target::Chunk { id, .. } = l.target {
                                    if seen.insert(id) {
                                        data.push(id);
                                    }
                                }
                            }
                        }
                    }
                }
                for ids in data.chunks(PIN_BATCH) {
                    let (fetched, pinned) = self.fetch_and_pin(&name, ids.to_vec()).await?;
                    report.fetched += fetched;
                    report.pinned += pinned;
                    report.chunks += ids.len() as u64;
                }
            }
            level = next;
            depth += 1;
        }
        Ok(report)
    }

    /// Lets the cache evict what [`Client::pin_object`] pinned for `bucket/key` (and evicts
    /// down to the cache size now); returns how many chunks were unpinned.
    pub async fn unpin_object(&self, bucket: &str, key: &str) -> Result<u64, ClientError> {
        self.check_keeps_cache()?;
        self.head_bucket(bucket).await?;
        let name = pin_name(bucket, key);
        let limit = self.inner.cache_limit.load(Ordering::Relaxed);
        let (unpinned, evicted) = self
            .blocking(move |i| {
                let n = i.chunks.unpin_cached(&name)?;
                Ok((n, i.chunks.evict_cache(limit)?.0))
            })
            .await?;
        self.inner
            .fetched
            .evicted
            .fetch_add(evicted, Ordering::Relaxed);
        Ok(unpinned)
    }

    /// Refuses pins on a node whose site's fetch cache is another node's.
    fn check_keeps_cache(&self) -> Result<(), ClientError> {
        let via_peers = self
            .inner
            .remote
            .read()
            .as_ref()
            .is_some_and(|r| r.via_peers());
        if via_peers {
            return Err(ClientError::InvalidRequest(
                "this node keeps no fetch cache: pin and unpin on the node of this site that \
                 runs the metadata-only link (its admin endpoint)"
                    .into(),
            ));
        }
        Ok(())
    }

    async fn pin_ids(&self, name: &str, ids: Vec<ChunkId>) -> Result<u64, ClientError> {
        let name = name.to_string();
        self.blocking(move |i| Ok(i.chunks.pin_cached(&name, &ids)?))
            .await
    }

    /// The current version of `bucket/key` as stored (no delete marker).
    async fn stored_current(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<cairn_core::manifest::VersionManifest, ClientError> {
        self.head_bucket(bucket).await?;
        let (b, k) = (bucket.to_string(), key.to_string());
        let m = self.blocking(move |i| Ok(i.meta.current(&b, &k)?)).await?;
        match m {
            Some(m) if !m.delete_marker => Ok(m),
            _ => Err(ClientError::NoSuchKey {
                key: key.to_string(),
                delete_marker: None,
            }),
        }
    }
}

/// A node's answers to the other nodes' `Fetch` (see the module docs): only a node that
/// fetches through its own link answers, from this site's chunks or by fetching (checked and
/// kept in its cache); a fetch is never passed on to other nodes.
impl FetchSource for Client {
    fn fetches(&self) -> bool {
        self.fetches_remote()
    }

    fn fetch(&self, id: ChunkId) -> BoxFuture<'_, Result<Option<StoredChunk>, ChunkError>> {
        Box::pin(async move {
            if !self.fetches_remote() {
                return Err(ChunkError::Io(
                    "this node runs no metadata-only link: it fetches nothing from other sites"
                        .into(),
                ));
            }
            let here = self
                .local_stored_chunks(vec![id])
                .await
                .map_err(|e| ChunkError::Io(e.to_string()))?;
            if let Some(found) = here.into_iter().next().flatten() {
                return Ok(Some(found));
            }
            match self.fetch_missing_pinned(id, None).await {
                Ok(found) => Ok(found.map(|(_, stored)| stored)),
                Err(e) => Err(ChunkError::Io(e.to_string())),
            }
        })
    }
}
