//! What reads keep in memory: decoded tree nodes and chunk bytes (both named by their content
//! hash, so never stale), each in two bounded generations: entries used since the last turn
//! stay, the others go when the current generation fills.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use cairn_client::nodecache::NodeCache;
use cairn_client::{Client, ClientError};
use cairn_core::extent::{Child, Target};
use cairn_core::ChunkId;
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;

/// Chunks one READ fetches at once.
const FETCH_AHEAD: usize = 8;

/// Two generations of entries with a cost each, within `budget`.
struct Generations<V> {
    current: HashMap<ChunkId, (V, usize)>,
    previous: HashMap<ChunkId, (V, usize)>,
    used: usize,
    budget: usize,
}

impl<V: Clone> Generations<V> {
    fn new(budget: usize) -> Self {
        Generations {
            current: HashMap::new(),
            previous: HashMap::new(),
            used: 0,
            budget,
        }
    }

    fn get(&mut self, id: &ChunkId) -> Option<V> {
        if let Some((v, _)) = self.current.get(id) {
            return Some(v.clone());
        }
        let (v, cost) = self.previous.remove(id)?;
        self.insert(*id, v.clone(), cost);
        Some(v)
    }

    fn insert(&mut self, id: ChunkId, v: V, cost: usize) {
        if cost > self.budget / 2 {
            return;
        }
        if self.used + cost > self.budget / 2 {
            self.previous = std::mem::take(&mut self.current);
            self.used = 0;
        }
        self.used += cost;
        self.current.insert(id, (v, cost));
    }
}

/// Tree nodes and chunks recently read through NFS.
pub struct ReadCache {
    client: Client,
    /// Decoded nodes, shared (not copied) by the reads that search them.
    nodes: NodeCache,
    chunks: Mutex<Generations<Bytes>>,
}

/// What a cached node entry costs, in bytes, to size the node cache from a byte budget.
const NODE_ENTRY_BYTES: usize = 48;

impl ReadCache {
    /// A cache over `client` holding about `budget` bytes of chunks (and an eighth of that
    /// of tree nodes).
    pub fn new(client: Client, budget: usize) -> ReadCache {
        ReadCache {
            client,
            nodes: NodeCache::new(budget / 8 / NODE_ENTRY_BYTES),
            chunks: Mutex::new(Generations::new(budget)),
        }
    }

    async fn chunk(&self, id: ChunkId) -> Result<Bytes, ClientError> {
        if let Some(b) = self.chunks.lock().get(&id) {
            return Ok(b);
        }
        let b = self.client.read_chunk_bytes(id).await?;
        self.chunks.lock().insert(id, b.clone(), b.len() + 64);
        Ok(b)
    }

    /// Keeps chunks just stored (their verified raw bytes) for the reads that follow.
    pub fn insert_chunks(&self, chunks: Vec<(ChunkId, Bytes)>) {
        let mut cache = self.chunks.lock();
        for (id, b) in chunks {
            let cost = b.len() + 64;
            cache.insert(id, b, cost);
        }
    }

    /// Bytes `[start, end)` of the tree at `root`.
    pub async fn read(&self, root: Child, start: u64, end: u64) -> Result<Bytes, ClientError> {
        let pieces = self.nodes.pieces(&self.client, root, start, end).await?;
        // The pieces' chunks are fetched FETCH_AHEAD at a time: a 1 MiB READ of a file written
        // in 64 KiB extents spans sixteen of them, and one at a time they queued behind each
        // other's store reads.
        let mut parts: Vec<Bytes> = futures::stream::iter(pieces)
            .map(|p| async move {
                let (off, len) = (p.offset as usize, p.len as usize);
                match p.target {
                    Target::Zeros => Ok(Bytes::from(vec![0u8; len])),
                    Target::Inline(b) => slice(&b, off, len),
                    Target::Chunk { id, .. } => slice(&self.chunk(id).await?, off, len),
                }
            })
            .buffered(FETCH_AHEAD)
            .try_collect()
            .await?;
        if parts.len() == 1 {
            return Ok(parts.pop().unwrap_or_default());
        }
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for p in parts {
            out.extend_from_slice(&p);
        }
        Ok(out.freeze())
    }
}

fn slice(b: &Bytes, off: usize, len: usize) -> Result<Bytes, ClientError> {
    if off.checked_add(len).is_none_or(|e| e > b.len()) {
        return Err(ClientError::Corrupt(format!(
            "a tree piece [{off}, +{len}) passes the end of its {}-byte chunk",
            b.len()
        )));
    }
    Ok(b.slice(off..off + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_keep_what_is_used_and_stay_within_budget() {
        let mut g: Generations<u32> = Generations::new(100);
        let id = |n: u8| ChunkId::of(&[n]);
        for n in 0..15u8 {
            g.insert(id(n), n as u32, 10);
        }
        // Half the budget per generation: the oldest generation is gone, the previous one
        // is still found (and moves to the current one), the newest stays.
        assert!(g.current.len() + g.previous.len() <= 10);
        assert_eq!(g.get(&id(14)), Some(14));
        assert_eq!(g.get(&id(0)), None);
        assert_eq!(g.get(&id(5)), Some(5));
        assert!(g.current.contains_key(&id(5)));
        // Too large for the cache at all: not kept.
        g.insert(id(42), 42, 60);
        assert_eq!(g.get(&id(42)), None);
    }
}
