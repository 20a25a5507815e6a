//! Where data lives in a site: weighted rendezvous hashing (highest random weight) over a
//! [`ClusterMap`].
//!
//! Every node that serves the role (the role held, weight above 0) gets a score for a key:
//!
//! ```text
//! digest = BLAKE3-keyed(PLACEMENT_KEY, role byte ‖ key)            (once per key)
//! h      = first 8 bytes, little-endian, of BLAKE3-keyed(PLACEMENT_KEY, digest ‖ node id as u64 LE)
//! u      = ((h >> 12) + 0.5) / 2^52                                 in (0, 1), never 0 or 1
//! score  = weight / -ln(u)
//! ```
//!
//! `-ln(u)` is exponentially distributed, so `weight / -ln(u)` is the inverse of an exponential
//! variable of rate `weight`, and the highest score belongs to a node with probability
//! `weight / Σ weights`: shares follow weights. Ties (practically never) go to the smaller id.
//!
//! Replicas are picked in score order, distinct zones first: one pass takes the best node of
//! each zone not yet used, and when there are fewer zones than replicas a second pass fills up
//! with the best remaining nodes, whatever their zone. The first node is the primary: it is
//! always the node with the highest score.
//!
//! Guarantees:
//! - deterministic: the result depends only on the key and the nodes' ids, zones, weights and
//!   roles, not on the map's epoch, names or the order nodes were added in;
//! - minimal movement: adding a node (or raising its weight) only moves replicas *to* that node,
//!   and removing or draining a node only moves the replicas it held; no replica moves between
//!   two nodes that stay; the primary changes only when the added or removed node is involved;
//! - when the zones cover the replication factor, every replica is in its own zone.
//!
//! The scoring is part of the storage format: changing the key, the hash input or the formula
//! moves nearly all data. Chunks are placed by their [`ChunkId`] (role chunk), manifests by
//! bucket and key (role manifest).

use std::cmp::Ordering;

use crate::chunk::ChunkId;
use crate::cluster::{ClusterMap, NodeId, Role};

/// The BLAKE3 key of every placement hash. Never change it: all data would move.
const PLACEMENT_KEY: &[u8; 32] = b"cairn placement v1 rendezvous hw";

/// The per-key digest every node's score derives from: keyed BLAKE3 of the role and the key,
/// so a chunk and a manifest with the same key bytes are placed independently.
pub fn key_digest(role: Role, key: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(PLACEMENT_KEY);
    h.update(&[role_byte(role)]);
    h.update(key);
    *h.finalize().as_bytes()
}

fn role_byte(role: Role) -> u8 {
    match role {
        Role::Chunk => b'c',
        Role::Manifest => b'm',
        Role::S3 => b's',
    }
}

/// The 64-bit hash of (key digest, node).
fn node_hash(digest: &[u8; 32], node: NodeId) -> u64 {
    let mut input = [0u8; 40];
    input[..32].copy_from_slice(digest);
    input[32..].copy_from_slice(&node.to_le_bytes());
    let out = blake3::keyed_hash(PLACEMENT_KEY, &input);
    let mut first = [0u8; 8];
    first.copy_from_slice(&out.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// Maps a 64-bit hash into the open interval (0, 1): the top 52 bits, offset by half a step.
/// Both ends are excluded, so `ln(u)` is finite and strictly negative.
pub fn unit_interval(h: u64) -> f64 {
    ((h >> 12) as f64 + 0.5) / (1u64 << 52) as f64
}

/// The weighted rendezvous score `weight / -ln(u)` of a node whose hash for the key is `h`.
pub fn score(weight: u32, h: u64) -> f64 {
    f64::from(weight) / -unit_interval(h).ln()
}

/// A node placement may choose, with its zone as a small index.
#[derive(Clone, Debug)]
struct Candidate {
    id: NodeId,
    weight: u32,
    zone: usize,
}

/// The candidates of one role in one map, prepared once for placing many keys.
#[derive(Clone, Debug)]
pub struct Placer {
    role: Role,
    candidates: Vec<Candidate>,
    zones: usize,
}

impl Placer {
    /// Prepares placement of `role` data over the nodes of `map` that serve it.
    pub fn new(map: &ClusterMap, role: Role) -> Placer {
        let mut zone_names: Vec<&str> = Vec::new();
        let mut candidates = Vec::new();
        for node in map.serving(role) {
            let zone = match zone_names.iter().position(|z| *z == node.zone) {
                Some(i) => i,
                None => {
                    zone_names.push(&node.zone);
                    zone_names.len() - 1
                }
            };
            candidates.push(Candidate {
                id: node.id,
                weight: node.weight,
                zone,
            });
        }
        Placer {
            role,
            candidates,
            zones: zone_names.len(),
        }
    }

    /// How many nodes placement chooses from.
    pub fn candidates(&self) -> usize {
        self.candidates.len()
    }

    /// How many zones those nodes are in.
    pub fn zones(&self) -> usize {
        self.zones
    }

    /// Up to `n` distinct nodes for `key`, primary first (fewer when fewer nodes serve the
    /// role; none for `n` = 0 or no candidates).
    pub fn place(&self, key: &[u8], n: usize) -> Vec<NodeId> {
        let n = n.min(self.candidates.len());
        if n == 0 {
            return Vec::new();
        }
        let digest = key_digest(self.role, key);
        let mut ranked: Vec<(f64, &Candidate)> = self
            .candidates
            .iter()
            .map(|c| (score(c.weight, node_hash(&digest, c.id)), c))
            .collect();
        ranked.sort_unstable_by(|a, b| match b.0.total_cmp(&a.0) {
            Ordering::Equal => a.1.id.cmp(&b.1.id),
            other => other,
        });
        let mut out = Vec::with_capacity(n);
        let mut zone_used = vec![false; self.zones];
        let mut taken = vec![false; ranked.len()];
        for (i, (_, c)) in ranked.iter().enumerate() {
            if out.len() == n {
                return out;
            }
            if !zone_used[c.zone] {
                zone_used[c.zone] = true;
                taken[i] = true;
                out.push(c.id);
            }
        }
        for (i, (_, c)) in ranked.iter().enumerate() {
            if out.len() == n {
                break;
            }
            if !taken[i] {
                out.push(c.id);
            }
        }
        out
    }
}

/// Up to `n` chunk nodes for `key` (usually a chunk id's bytes), primary first.
pub fn place(map: &ClusterMap, key: &[u8], n: usize) -> Vec<NodeId> {
    Placer::new(map, Role::Chunk).place(key, n)
}

/// The chunk nodes of `id`: the map's replication factor of them, primary first.
pub fn place_chunk(map: &ClusterMap, id: &ChunkId) -> Vec<NodeId> {
    place(map, id.as_bytes(), usize::from(map.replication_factor))
}

/// What a census of one chunk's placement found: how many of the replicas placement names
/// hold it, and how many could not be asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaCount {
    /// Replicas placement names for it (the replication factor, or fewer chunk nodes).
    pub wanted: u8,
    /// Replicas that answered that they hold it.
    pub held: u8,
    /// Replicas that could not be asked (down, unreachable, or suspected so).
    pub unreachable: u8,
}

impl ReplicaCount {
    /// Replicas that answered but lack the chunk: what repair (or rebalance, after a map
    /// change) has to copy there.
    pub fn missing_on_reachable(&self) -> u8 {
        self.wanted
            .saturating_sub(self.held)
            .saturating_sub(self.unreachable)
    }
}

/// A census of several chunks' replicas (see `ChunkBackend::replica_census`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaCensus {
    /// One count per id asked about, in order.
    pub counts: Vec<ReplicaCount>,
    /// Acknowledgements a write waits for.
    pub write_quorum: u8,
    /// Chunk nodes of the map that could not be asked, by name.
    pub nodes_down: Vec<String>,
    /// Chunk nodes of the map.
    pub chunk_nodes: usize,
}

/// The bytes manifest placement hashes for an object: the bucket's length (u32 little-endian),
/// the bucket, then the key, so no two (bucket, key) pairs give the same bytes.
pub fn manifest_key(bucket: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + bucket.len() + key.len());
    // Bucket names are at most 63 bytes; saturating keeps this total for any input.
    out.extend(
        u32::try_from(bucket.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend(bucket.as_bytes());
    out.extend(key);
    out
}

/// Up to `n` manifest nodes for object `key` of `bucket`, primary first. Callers pass
/// [`ClusterMap::manifest_replicas`] for the normal replica count.
pub fn place_manifest(map: &ClusterMap, bucket: &str, key: &[u8], n: usize) -> Vec<NodeId> {
    Placer::new(map, Role::Manifest).place(&manifest_key(bucket, key), n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{NodeInfo, StagedChanges};

    #[test]
    fn unit_interval_excludes_both_ends() {
        for h in [0, 1, 4095, 4096, u64::MAX - 4096, u64::MAX] {
            let u = unit_interval(h);
            assert!(u > 0.0 && u < 1.0, "{h:x} -> {u}");
            let s = score(1, h);
            assert!(s.is_finite() && s > 0.0, "{h:x} -> {s}");
        }
        assert!(score(1, u64::MAX) > score(1, 1 << 63));
        assert!(score(2, 1 << 63) > score(1, 1 << 63));
        assert_eq!(score(0, 1 << 63), 0.0);
    }

    #[test]
    fn digest_separates_roles_and_manifest_keys_are_unambiguous() {
        assert_ne!(
            key_digest(Role::Chunk, b"k"),
            key_digest(Role::Manifest, b"k")
        );
        assert_ne!(manifest_key("ab", b"c"), manifest_key("a", b"bc"));
    }

    #[test]
    fn empty_or_zero_gives_nothing() {
        let map = ClusterMap::new("s");
        assert!(place(&map, b"k", 3).is_empty());
        let map = ClusterMap::single_node("s", NodeInfo::new(1, "a", "h:1", "z")).unwrap();
        assert!(place(&map, b"k", 0).is_empty());
        assert_eq!(place(&map, b"k", 5), vec![1]);
        let map = map
            .apply(&StagedChanges {
                upsert: vec![NodeInfo::new(2, "b", "h:2", "z")],
                ..StagedChanges::default()
            })
            .unwrap();
        let p = Placer::new(&map, Role::Chunk);
        assert_eq!((p.candidates(), p.zones()), (2, 1));
        assert_eq!(place(&map, b"k", 9).len(), 2);
    }
}
