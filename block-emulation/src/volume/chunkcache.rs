//! Recently read and written chunk bytes of every volume, decoded and verified: a read that
//! hits costs no store call (no hand-off to a blocking thread, no decompression, no hash). A
//! commit puts in what it stored, so data written a moment ago reads back from memory as it
//! would from a page cache, and drops the extents it overwrote. Chunks are named by their
//! content hash: an entry is never stale, the cache only bounds memory.

use std::sync::Mutex;

use bytes::Bytes;
use cairn_core::{ChunkId, ChunkIdMap};

/// Two generations holding at most `cap` bytes together: hits and inserts go to the newer
/// one; when they would pass the bound, the older one (what nothing used since the last turn)
/// is dropped, and a newer one past the bound alone becomes the older one. A working set up
/// to the whole bound stays, however often it is read in turn.
pub(crate) struct ChunkCache {
    cap: u64,
    gens: Mutex<Gens>,
}

#[derive(Default)]
struct Gens {
    hot: ChunkIdMap<Bytes>,
    hot_bytes: u64,
    cold: ChunkIdMap<Bytes>,
    cold_bytes: u64,
}

impl ChunkCache {
    /// A cache of at most `cap` bytes (0: off).
    pub(crate) fn new(cap: u64) -> ChunkCache {
        ChunkCache {
            cap,
            gens: Mutex::new(Gens::default()),
        }
    }

    fn gens(&self) -> std::sync::MutexGuard<'_, Gens> {
        self.gens.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, id: &ChunkId) -> Option<Bytes> {
        if self.cap == 0 {
            return None;
        }
        let mut g = self.gens();
        self.lookup(&mut g, id)
    }

    /// [`ChunkCache::get`] of many ids under one lock, in order.
    pub(crate) fn get_many<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a ChunkId>,
    ) -> Vec<Option<Bytes>> {
        let ids = ids.into_iter();
        if self.cap == 0 {
            return ids.map(|_| None).collect();
        }
        let mut g = self.gens();
        ids.map(|id| self.lookup(&mut g, id)).collect()
    }

    fn lookup(&self, g: &mut Gens, id: &ChunkId) -> Option<Bytes> {
        if let Some(b) = g.hot.get(id) {
            return Some(b.clone());
        }
        let b = g.cold.remove(id)?;
        g.cold_bytes -= b.len() as u64;
        self.put(g, *id, b.clone());
        Some(b)
    }

    /// Keeps `bytes`, the content of chunk `id`; chunks over a sixteenth of the bound are not
    /// kept (one large read would otherwise push out everything else).
    pub(crate) fn insert(&self, id: ChunkId, bytes: Bytes) {
        if bytes.len() as u64 > self.cap / 16 {
            return;
        }
        let mut g = self.gens();
        if !g.hot.contains_key(&id) {
            if let Some(old) = g.cold.remove(&id) {
                g.cold_bytes -= old.len() as u64;
            }
            self.put(&mut g, id, bytes);
        }
    }

    /// Drops chunks nothing is likely to read again (a commit's overwritten extents), so they
    /// do not push out chunks that are still read.
    pub(crate) fn forget(&self, ids: impl IntoIterator<Item = ChunkId>) {
        if self.cap == 0 {
            return;
        }
        let mut g = self.gens();
        for id in ids {
            if let Some(b) = g.hot.remove(&id) {
                g.hot_bytes -= b.len() as u64;
            }
            if let Some(b) = g.cold.remove(&id) {
                g.cold_bytes -= b.len() as u64;
            }
        }
    }

    fn put(&self, g: &mut Gens, id: ChunkId, bytes: Bytes) {
        let len = bytes.len() as u64;
        if g.hot_bytes + g.cold_bytes + len > self.cap {
            // What nothing used since the last turn goes first.
            g.cold = ChunkIdMap::default();
            g.cold_bytes = 0;
            if g.hot_bytes + len > self.cap {
                // The newer one is full: it becomes the older one, less room for this chunk.
                g.cold = std::mem::take(&mut g.hot);
                g.cold_bytes = std::mem::take(&mut g.hot_bytes);
                let need = (g.cold_bytes + len).saturating_sub(self.cap);
                let mut freed = 0;
                g.cold.retain(|_, b| {
                    if freed >= need {
                        return true;
                    }
                    freed += b.len() as u64;
                    false
                });
                g.cold_bytes -= freed;
            }
        }
        g.hot_bytes += len;
        g.hot.insert(id, bytes);
    }

    /// Bytes held (both generations).
    #[cfg(test)]
    fn held(&self) -> u64 {
        let g = self.gens();
        let counted: u64 = g
            .hot
            .values()
            .chain(g.cold.values())
            .map(|b| b.len() as u64)
            .sum();
        assert_eq!(counted, g.hot_bytes + g.cold_bytes);
        counted
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

    #[test]
    fn a_working_set_up_to_the_bound_stays_when_read_in_turn() {
        let c = ChunkCache::new(64 << 10);
        // 60 KiB, more than half the bound.
        let set: Vec<(ChunkId, Bytes)> = (0..15).map(|i| chunk(i, 4096)).collect();
        for (id, b) in &set {
            c.insert(*id, b.clone());
        }
        for round in 0..5 {
            // Other chunks come and are overwritten (forgotten) meanwhile.
            let (id, b) = chunk(100 + round, 4096);
            c.insert(id, b);
            c.forget([id]);
            let hits = c.get_many(set.iter().map(|(id, _)| id));
            assert!(hits.iter().all(Option::is_some), "round {round}");
            assert_eq!(hits[3].as_ref(), Some(&set[3].1));
            assert!(c.held() <= 64 << 10);
        }
    }
}
