//! Where a client's chunks go: [`ChunkBackend`] is what the client library stores chunks in and
//! reads them from — this node's [`ChunkStore`] for a single-node site, or the site's chunk
//! servers through a replicating backend. Methods block: callers run them on a blocking
//! thread (the client does, on tokio's blocking pool), so a local store pays no hand-off and a
//! remote backend may wait on the network.

use bytes::Bytes;
use cairn_core::codec::Codec;
use cairn_core::placement::{ReplicaCensus, ReplicaCount};
use cairn_core::ChunkId;

use crate::{ChunkError, ChunkStats, ChunkStore, StoredChunk};

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

    fn put_many(&self, chunks: &[(ChunkId, StoredChunk)]) -> Result<Vec<bool>, ChunkError> {
        ChunkStore::put_many(self, chunks)
    }

    fn groups_puts(&self) -> bool {
        true
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
