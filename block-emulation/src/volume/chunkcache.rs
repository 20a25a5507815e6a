//! Recently read and written chunk bytes of every volume, decoded and verified: a read that
//! hits costs no store call (no hand-off to a blocking thread, no decompression, no hash). A
//! commit puts in what it stored, so data written a moment ago reads back from memory as it
//! would from a page cache. Chunks are named by their content hash: an entry is never stale,
//! the cache only bounds memory.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use cairn_core::ChunkId;

/// Two generations of at most `cap / 2` bytes each, like the node cache: a hit in the older one
/// moves the chunk to the newer one; a full newer one becomes the older one.
pub(crate) struct ChunkCache {
    gen_bytes: u64,
    gens: Mutex<Gens>,
}

#[derive(Default)]
struct Gens {
    hot: HashMap<ChunkId, Bytes>,
    hot_bytes: u64,
    cold: HashMap<ChunkId, Bytes>,
}

impl ChunkCache {
    /// A cache of at most `cap` bytes (0: off).
    pub(crate) fn new(cap: u64) -> ChunkCache {
        ChunkCache {
            gen_bytes: cap / 2,
            gens: Mutex::new(Gens::default()),
        }
    }

    fn gens(&self) -> std::sync::MutexGuard<'_, Gens> {
        self.gens.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, id: &ChunkId) -> Option<Bytes> {
        if self.gen_bytes == 0 {
            return None;
        }
        let mut g = self.gens();
        if let Some(b) = g.hot.get(id) {
            return Some(b.clone());
        }
        let b = g.cold.remove(id)?;
        self.put(&mut g, *id, b.clone());
        Some(b)
    }

    /// Keeps `bytes`, the content of chunk `id`; chunks over an eighth of a generation are
    /// not kept (one large read would otherwise push out everything else).
    pub(crate) fn insert(&self, id: ChunkId, bytes: Bytes) {
        if bytes.len() as u64 > self.gen_bytes / 8 {
            return;
        }
        let mut g = self.gens();
        if !g.hot.contains_key(&id) {
            self.put(&mut g, id, bytes);
        }
    }

    /// Drops chunks nothing is likely to read again (a commit's overwritten extents), so they
    /// do not push out chunks that are still read.
    pub(crate) fn forget(&self, ids: impl IntoIterator<Item = ChunkId>) {
        if self.gen_bytes == 0 {
            return;
        }
        let mut g = self.gens();
        for id in ids {
            if let Some(b) = g.hot.remove(&id) {
                g.hot_bytes -= b.len() as u64;
            }
            g.cold.remove(&id);
        }
    }

    fn put(&self, g: &mut Gens, id: ChunkId, bytes: Bytes) {
        let len = bytes.len() as u64;
        if g.hot_bytes + len > self.gen_bytes {
            g.cold = std::mem::take(&mut g.hot);
            g.hot_bytes = 0;
        }
        g.hot_bytes += len;
        g.hot.insert(id, bytes);
    }

    /// Bytes held (both generations).
    #[cfg(test)]
    fn held(&self) -> u64 {
        let g = self.gens();
        g.hot
            .values()
            .chain(g.cold.values())
            .map(|b| b.len() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(i: u32, len: usize) -> (ChunkId, Bytes) {
        let b = Bytes::from(vec![i as u8; len]);
        (ChunkId::of(&[&i.to_le_bytes()[..], &b[..]].concat()), b)
    }

    #[test]
    fn recently_used_chunks_stay_and_memory_is_bounded() {
        let c = ChunkCache::new(64 << 10);
        for i in 0..8 {
            let (id, b) = chunk(i, 4096);
            c.insert(id, b);
        }
        let (first, _) = chunk(0, 4096);
        assert!(c.get(&first).is_some());
        // Twenty more chunks turn the generations over several times.
        for i in 8..28 {
            let (id, b) = chunk(i, 4096);
            c.insert(id, b);
            assert!(c.held() <= 64 << 10, "{} bytes held", c.held());
        }
        assert!(c.get(&first).is_none(), "an unused chunk is dropped");
        let (last, b) = chunk(27, 4096);
        assert_eq!(c.get(&last), Some(b));
        // Too large to keep; and a cache of size 0 keeps nothing.
        let (big, b) = chunk(99, 5000);
        c.insert(big, b);
        assert!(c.get(&big).is_none());
        // Forgotten chunks are gone from either generation and free their room.
        let before = c.held();
        c.forget([last, first]);
        assert!(c.get(&last).is_none());
        assert_eq!(c.held(), before - 4096);
        let off = ChunkCache::new(0);
        let (id, b) = chunk(1, 10);
        off.insert(id, b);
        assert!(off.get(&id).is_none());
    }
}
