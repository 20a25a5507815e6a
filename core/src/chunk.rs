//! Chunk identity: a chunk is named by the BLAKE3-256 hash of its uncompressed bytes, so the same
//! bytes dedup whatever codec or settings stored them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The largest chunk any chunker, tree node or RPC may produce (4 MiB).
pub const MAX_CHUNK_SIZE: usize = 4 << 20;

/// The owner tag of `bucket` for chunk attribution ("first writer pays"): the first 8 bytes of
/// BLAKE3 of its name, little-endian, never 0 (0 marks a chunk written without a bucket: tree
/// nodes, link imports, chunks stored before attribution existed). A chunk store counts the
/// chunks and bytes each tag stored first; two bucket names sharing a tag (odds 2^-64 per
/// pair) would share a figure.
pub fn owner_tag(bucket: &str) -> u64 {
    let h = blake3::hash(bucket.as_bytes());
    let tag = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
    tag.max(1)
}

/// BLAKE3-256 of a chunk's uncompressed bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Hashes `data` and returns its id.
    pub fn of(data: &[u8]) -> ChunkId {
        ChunkId(*blake3::hash(data).as_bytes())
    }

    /// True when `data` hashes to this id.
    pub fn verify(&self, data: &[u8]) -> bool {
        ChunkId::of(data) == *self
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds an id from a 32-byte slice, if it has that length.
    pub fn from_slice(b: &[u8]) -> Option<ChunkId> {
        <[u8; 32]>::try_from(b).ok().map(ChunkId)
    }
}

/// Hasher for in-memory maps and sets keyed by chunk ids: an id is already a uniform hash, so
/// folding its words is enough (SipHash over 32 bytes costs more than the lookup it serves
/// in caches searched many times per request). Ids come from content hashes, so keys cannot
/// be steered into one bucket without grinding BLAKE3.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChunkIdHasher(u64);

impl std::hash::Hasher for ChunkIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for word in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..word.len()].copy_from_slice(word);
            self.0 = self.0.rotate_left(23) ^ u64::from_le_bytes(w);
        }
    }
}

/// Builds [`ChunkIdHasher`]s.
pub type ChunkIdBuildHasher = std::hash::BuildHasherDefault<ChunkIdHasher>;
/// A map keyed by chunk ids, hashed with [`ChunkIdHasher`].
pub type ChunkIdMap<V> = std::collections::HashMap<ChunkId, V, ChunkIdBuildHasher>;
/// A set of chunk ids, hashed with [`ChunkIdHasher`].
pub type ChunkIdSet = std::collections::HashSet<ChunkId, ChunkIdBuildHasher>;

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &hex::encode(self.0)[..16])
    }
}

impl FromStr for ChunkId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = hex::decode(s).map_err(|e| format!("chunk id `{s}` is not hex: {e}"))?;
        ChunkId::from_slice(&v).ok_or_else(|| format!("chunk id `{s}` must be 64 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_tags_are_stable_distinct_and_never_zero() {
        let a = owner_tag("photos");
        assert_eq!(a, owner_tag("photos"));
        assert_ne!(a, owner_tag("photos2"));
        assert_ne!(a, 0);
        let h = blake3::hash(b"photos");
        assert_eq!(a, u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap()));
    }

    #[test]
    fn id_is_blake3_of_bytes_and_round_trips() {
        let id = ChunkId::of(b"hello");
        assert_eq!(id.0, *blake3::hash(b"hello").as_bytes());
        assert!(id.verify(b"hello"));
        assert!(!id.verify(b"hellp"));
        let s = id.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<ChunkId>().unwrap(), id);
        assert!("zz".parse::<ChunkId>().is_err());
    }

    #[test]
    fn id_maps_find_what_they_hold_and_spread_ids_over_buckets() {
        use std::hash::BuildHasher;
        let ids: Vec<ChunkId> = (0u32..2000)
            .map(|i| ChunkId::of(&i.to_le_bytes()))
            .collect();
        let mut m = ChunkIdMap::default();
        for (i, id) in ids.iter().enumerate() {
            m.insert(*id, i);
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(m.get(id), Some(&i));
        }
        // Low bits (bucket choice) and high bits (hashbrown's tags) both vary.
        let hashes: Vec<u64> = ids
            .iter()
            .map(|id| ChunkIdBuildHasher::default().hash_one(id))
            .collect();
        let low: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 0xff).collect();
        let high: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(
            low.len() > 200 && high.len() > 100,
            "{} {}",
            low.len(),
            high.len()
        );
    }

    #[test]
    fn large_input_hash_matches_plain_blake3() {
        let data = vec![7u8; 1 << 20];
        assert_eq!(ChunkId::of(&data).0, *blake3::hash(&data).as_bytes());
    }
}
