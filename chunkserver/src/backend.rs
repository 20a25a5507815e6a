//! Where a client's chunks go: [`ChunkBackend`] is what the client library stores chunks in and
//! reads them from — this node's [`ChunkStore`] for a single-node site, or the site's chunk
//! servers through a replicating backend. Methods block: callers run them on a blocking
//! thread (the client does, on tokio's blocking pool), so a local store pays no hand-off and a
//! remote backend may wait on the network.

use bytes::Bytes;
use cairn_core::codec::Codec;
use cairn_core::placement::{ReplicaCensus, ReplicaCount};
use cairn_core::ChunkId;

use serde::{Deserialize, Serialize};

use crate::{CacheStats, ChunkError, ChunkStats, ChunkStore, StoredChunk};

/// The chunks a bucket stored first ("first writer pays", see
/// [`cairn_core::owner_tag`]) and their stored bytes, over every copy the backend holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerUsage {
    /// Chunk copies counted: each replica holding a chunk counts it once.
    pub chunks: u64,
    /// Their stored (compressed) bytes, every copy counted: bytes on disk.
    pub stored_bytes: u64,
    /// Copies a chunk is placed on (the replication factor; 1 for a single store).
    pub copies: u32,
    /// Chunk nodes that could not be asked (their copies are missing from the sums).
    pub nodes_unanswered: u32,
}

impl OwnerUsage {
    /// Stored bytes of one copy of each chunk: [`OwnerUsage::stored_bytes`] divided by the
    /// copies (exact when every chunk has all its copies, as repair makes it).
    pub fn stored_bytes_per_copy(&self) -> u64 {
        self.stored_bytes / u64::from(self.copies.max(1))
    }
}

/// A store of chunks as the client library sees it.
pub trait ChunkBackend: Send + Sync + 'static {
    /// Stores a chunk encoded with `codec` (its uncompressed length is `raw_len`) unless it is
    /// already there, durably before returning; returns whether it was new. The caller vouches
    /// that the payload decodes to bytes hashing to `id`.
    fn put_encoded(
        &self,
        id: &ChunkId,
        codec: Codec,
        raw_len: u32,
        payload: &[u8],
    ) -> Result<bool, ChunkError>;

    /// [`ChunkBackend::put_encoded`] attributed to `owner` ([`cairn_core::owner_tag`] of the
    /// bucket written; 0 for none) when it stores the chunk; a deduplicated put changes no
    /// attribution. The default drops the tag.
    fn put_encoded_owned(
        &self,
        id: &ChunkId,
        codec: Codec,
        raw_len: u32,
        payload: &[u8],
        owner: u64,
    ) -> Result<bool, ChunkError> {
        let _ = owner;
        self.put_encoded(id, codec, raw_len, payload)
    }

    /// [`ChunkBackend::put_many`] attributed to `owner` (see
    /// [`ChunkBackend::put_encoded_owned`]): one by one unless the backend groups them.
    fn put_many_owned(
        &self,
        chunks: &[(ChunkId, StoredChunk)],
        owner: u64,
    ) -> Result<Vec<bool>, ChunkError> {
        chunks
            .iter()
            .map(|(id, c)| self.put_encoded_owned(id, c.codec, c.raw_len, &c.payload, owner))
            .collect()
    }

    /// The chunks each of `owners` stored first and their bytes (see [`OwnerUsage`]), in
    /// order; `None` when the backend does not count them (the default).
    fn owner_usage_many(&self, owners: &[u64]) -> Result<Option<Vec<OwnerUsage>>, ChunkError> {
        let _ = owners;
        Ok(None)
    }

    /// [`ChunkBackend::owner_usage_many`] of one owner.
    fn owner_usage(&self, owner: u64) -> Result<Option<OwnerUsage>, ChunkError> {
        Ok(self
            .owner_usage_many(&[owner])?
            .and_then(|u| u.into_iter().next()))
    }

    /// [`ChunkBackend::put_encoded`] of a chunk in stored form.
    fn put(&self, id: &ChunkId, chunk: &StoredChunk) -> Result<bool, ChunkError> {
        self.put_encoded(id, chunk.codec, chunk.raw_len, &chunk.payload)
    }

    /// [`ChunkBackend::put`] of several chunks, all durable before returning; returns, per
    /// chunk, whether it was new. One by one unless the backend groups them (see
    /// [`ChunkBackend::groups_puts`]).
    fn put_many(&self, chunks: &[(ChunkId, StoredChunk)]) -> Result<Vec<bool>, ChunkError> {
        chunks.iter().map(|(id, c)| self.put(id, c)).collect()
    }

    /// Whether [`ChunkBackend::put_many`] stores its chunks in one durable write (a local
    /// store), so callers send many small chunks in one call rather than one call each.
    fn groups_puts(&self) -> bool {
        false
    }

    /// Stores a chunk fetched from another site (a read through a metadata-only link) as a
    /// cached copy, which [`ChunkBackend::evict_cache`] may delete later unless pinned or
    /// written locally meanwhile; returns whether it was new (a chunk already stored is left
    /// as it is, and not cached). The caller has verified the payload against `id`. The
    /// default stores it as [`ChunkBackend::put`] does: a backend without a fetch cache
    /// keeps it for good.
    fn put_cached(&self, id: &ChunkId, chunk: &StoredChunk) -> Result<bool, ChunkError> {
        self.put(id, chunk)
    }

    /// Whether the backend keeps a bounded fetch cache ([`ChunkBackend::put_cached`] stores
    /// evictable copies); false by default.
    fn caches(&self) -> bool {
        false
    }

    /// Evicts cached chunks, least recently used first and never pinned ones, until the
    /// cache's stored bytes are at most `max_bytes`; returns the chunks evicted and their
    /// stored bytes. The default has no cache: (0, 0).
    fn evict_cache(&self, max_bytes: u64) -> Result<(u64, u64), ChunkError> {
        let _ = max_bytes;
        Ok((0, 0))
    }

    /// Totals of the fetch cache; `None` when the backend has none (the default).
    fn cache_stats(&self) -> Result<Option<CacheStats>, ChunkError> {
        Ok(None)
    }

    /// Pins the cached ones of `ids` under the name `pin` (idempotent per name), so eviction
    /// spares them until [`ChunkBackend::unpin_cached`]; returns how many were newly pinned.
    /// The default has no cache: 0.
    fn pin_cached(&self, pin: &str, ids: &[ChunkId]) -> Result<u64, ChunkError> {
        let _ = (pin, ids);
        Ok(0)
    }

    /// Removes every pin of the name `pin`; returns how many pin records it removed. The
    /// default has no cache: 0.
    fn unpin_cached(&self, pin: &str) -> Result<u64, ChunkError> {
        let _ = pin;
        Ok(0)
    }

    /// Which of `ids` are cached chunks the fetch cache holds (readable here, though
    /// [`ChunkBackend::has_many`] may not count them: on a multi-node site they are outside
    /// placement). The default has no cache: none.
    fn cached_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ChunkError> {
        Ok(vec![false; ids.len()])
    }

    /// A chunk's bytes, verified against `id`; `None` if no copy exists.
    fn get(&self, id: &ChunkId) -> Result<Option<Bytes>, ChunkError>;

    /// A chunk in its stored (possibly compressed) form, to ship as it is (site links); `None`
    /// if no copy exists. A copy read from another node is checked against `id` (so a corrupt
    /// one is skipped for the next replica); this node's own copy may not be, and whoever
    /// receives it checks it ([`StoredChunk::decode_verified`]). The default re-encodes the
    /// verified bytes.
    fn get_stored(&self, id: &ChunkId) -> Result<Option<StoredChunk>, ChunkError> {
        Ok(self.get(id)?.map(StoredChunk::encode))
    }

    /// [`ChunkBackend::get`] of several chunks, in order, in one call (a caller on a blocking
    /// thread makes one hand-off for all of them).
    fn get_many(&self, ids: &[ChunkId]) -> Result<Vec<Option<Bytes>>, ChunkError> {
        ids.iter().map(|id| self.get(id)).collect()
    }

    /// Which of `ids` are stored.
    fn has_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ChunkError>;

    /// Which of `ids` are still stored, refreshing the reference time of every stored copy
    /// as a put deduplicating against it would, so GC's hold protects them from now on. A
    /// writer that references chunks it did not put (a copy by reference whose source may
    /// have been deleted meanwhile) calls this: an id answered `true` is safe for the hold.
    fn touch_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ChunkError>;

    /// Totals.
    fn stats(&self) -> Result<ChunkStats, ChunkError>;

    /// How many of each id's placed replicas hold it, and how many could not be asked (what
    /// volume health reports). A single store is the one replica of everything it holds.
    fn replica_census(&self, ids: &[ChunkId]) -> Result<ReplicaCensus, ChunkError> {
        let counts = self
            .has_many(ids)?
            .into_iter()
            .map(|has| ReplicaCount {
                wanted: 1,
                held: u8::from(has),
                unreachable: 0,
            })
            .collect();
        Ok(ReplicaCensus {
            counts,
            write_quorum: 1,
            nodes_down: Vec::new(),
            chunk_nodes: 1,
        })
    }
}

impl ChunkBackend for ChunkStore {
    fn put_encoded(
        &self,
        id: &ChunkId,
        codec: Codec,
        raw_len: u32,
        payload: &[u8],
    ) -> Result<bool, ChunkError> {
        ChunkStore::put_encoded(self, id, codec, raw_len, payload)
    }

    fn put_encoded_owned(
        &self,
        id: &ChunkId,
        codec: Codec,
        raw_len: u32,
        payload: &[u8],
        owner: u64,
    ) -> Result<bool, ChunkError> {
        ChunkStore::put_encoded_owned(self, id, codec, raw_len, payload, owner)
    }

    fn put_many(&self, chunks: &[(ChunkId, StoredChunk)]) -> Result<Vec<bool>, ChunkError> {
        ChunkStore::put_many(self, chunks)
    }

    fn put_many_owned(
        &self,
        chunks: &[(ChunkId, StoredChunk)],
        owner: u64,
    ) -> Result<Vec<bool>, ChunkError> {
        ChunkStore::put_many_owned(self, chunks, owner)
    }

    fn owner_usage_many(&self, owners: &[u64]) -> Result<Option<Vec<OwnerUsage>>, ChunkError> {
        let usage = owners
            .iter()
            .map(|o| {
                let (chunks, stored_bytes) = ChunkStore::owner_usage(self, *o)?;
                Ok(OwnerUsage {
                    chunks,
                    stored_bytes,
                    copies: 1,
                    nodes_unanswered: 0,
                })
            })
            .collect::<Result<_, ChunkError>>()?;
        Ok(Some(usage))
    }

    fn groups_puts(&self) -> bool {
        true
    }

    fn put_cached(&self, id: &ChunkId, chunk: &StoredChunk) -> Result<bool, ChunkError> {
        ChunkStore::put_cached(self, id, chunk)
    }

    fn caches(&self) -> bool {
        true
    }

    fn evict_cache(&self, max_bytes: u64) -> Result<(u64, u64), ChunkError> {
        ChunkStore::evict_cache(self, max_bytes)
    }

    fn cache_stats(&self) -> Result<Option<CacheStats>, ChunkError> {
        Ok(Some(ChunkStore::cache_stats(self)))
    }

    fn pin_cached(&self, pin: &str, ids: &[ChunkId]) -> Result<u64, ChunkError> {
        ChunkStore::pin_cached(self, pin, ids)
    }

    fn unpin_cached(&self, pin: &str) -> Result<u64, ChunkError> {
        ChunkStore::unpin_cached(self, pin)
    }

    fn cached_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ChunkError> {
        Ok(ids.iter().map(|id| self.is_cached(id)).collect())
    }

    fn get(&self, id: &ChunkId) -> Result<Option<Bytes>, ChunkError> {
        ChunkStore::get(self, id)
    }

    fn get_stored(&self, id: &ChunkId) -> Result<Option<StoredChunk>, ChunkError> {
        ChunkStore::get_stored(self, id)
    }

    fn has_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ChunkError> {
        ChunkStore::has_many(self, ids)
    }

    fn touch_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ChunkError> {
        ChunkStore::touch_many(self, ids, None)
    }

    fn stats(&self) -> Result<ChunkStats, ChunkError> {
        ChunkStore::stats(self)
    }
}
