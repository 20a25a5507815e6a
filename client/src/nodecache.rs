//! Decoded extent-tree nodes kept between requests (volumes, NFS reads): a 4 KiB read
//! otherwise loads, decompresses, verifies and decodes every node on its path from the root. Nodes are named by
//! their content hash, so a cached node can never be stale; the cache only bounds memory.

use std::sync::{Arc, Mutex};

use crate::{Client, ClientError};
use cairn_core::extent::{Child, NodeStore, Piece, Target, TreeError, TreeNode, MAX_DEPTH};
use cairn_core::{ChunkId, ChunkIdMap};

/// A decoded node with the end offset of each entry, for binary search.
struct CachedNode {
    node: TreeNode,
    ends: Vec<u64>,
}

impl CachedNode {
    fn new(node: TreeNode) -> CachedNode {
        let mut at = 0;
        let lens: Vec<u64> = match &node {
            TreeNode::Leaves(l) => l.iter().map(|l| l.len).collect(),
            TreeNode::Children(c) => c.iter().map(|c| c.len).collect(),
        };
        let ends = lens
            .into_iter()
            .map(|l| {
                at += l;
                at
            })
            .collect();
        CachedNode { node, ends }
    }

    fn len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// Index of the first entry that ends after `offset`.
    fn first_after(&self, offset: u64) -> usize {
        self.ends.partition_point(|&e| e <= offset)
    }

    /// Start offset of entry `i`.
    fn start_of(&self, i: usize) -> u64 {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }
}

/// Two generations of at most `cap` node entries each (leaves or children: what a node's
/// memory grows with, whatever the tree's node size): a lookup that hits the older one moves
/// the node to the newer one, and when the newer one is full it becomes the older one. Nodes
/// used since the last turn stay; memory stays below `2 × cap` entries.
pub struct NodeCache {
    cap: usize,
    gens: Mutex<Gens>,
}

#[derive(Default)]
struct Gens {
    hot: ChunkIdMap<Arc<CachedNode>>,
    hot_entries: usize,
    cold: ChunkIdMap<Arc<CachedNode>>,
}

impl NodeCache {
    /// A cache of at most `cap` entries per generation.
    pub fn new(cap: usize) -> NodeCache {
        NodeCache {
            cap: cap.max(1),
            gens: Mutex::new(Gens::default()),
        }
    }

    fn get(&self, id: &ChunkId) -> Option<Arc<CachedNode>> {
        let mut g = self.gens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = g.hot.get(id) {
            return Some(n.clone());
        }
        let n = g.cold.remove(id)?;
        self.put(&mut g, *id, n.clone());
        Some(n)
    }

    fn insert(&self, id: ChunkId, node: Arc<CachedNode>) {
        let mut g = self.gens.lock().unwrap_or_else(|e| e.into_inner());
        self.put(&mut g, id, node);
    }

    /// Caches a node this process just built (a commit's), decoded already.
    pub fn insert_node(&self, id: ChunkId, node: TreeNode) {
        self.insert(id, Arc::new(CachedNode::new(node)));
    }

    fn put(&self, g: &mut Gens, id: ChunkId, node: Arc<CachedNode>) {
        let entries = node.ends.len();
        if g.hot_entries + entries > self.cap && !g.hot.is_empty() {
            g.cold = std::mem::take(&mut g.hot);
            g.hot_entries = 0;
        }
        if let Some(old) = g.hot.insert(id, node) {
            g.hot_entries -= old.ends.len();
        }
        g.hot_entries += entries;
    }

    /// The node store that reads through this cache from `client`.
    pub fn over<'a>(&'a self, client: &'a Client) -> Cached<'a> {
        Cached {
            client,
            cache: self,
        }
    }

    /// Node `id` (of `len` bytes) from the cache, or from `client` into the cache.
    async fn cached(
        &self,
        client: &Client,
        id: ChunkId,
        len: u64,
    ) -> Result<Arc<CachedNode>, ClientError> {
        if let Some(n) = self.get(&id) {
            if n.len() != len {
                return Err(TreeError::Corrupt(format!(
                    "node {id} covers {} bytes, its parent says {len}",
                    n.len()
                ))
                .into());
            }
            return Ok(n);
        }
        let node = Arc::new(CachedNode::new(client.load(id, len).await?));
        self.insert(id, node.clone());
        Ok(node)
    }

    /// Loads node `id` (of `len` bytes) from the cache, or from `client` into the cache.
    pub async fn load(
        &self,
        client: &Client,
        id: ChunkId,
        len: u64,
    ) -> Result<TreeNode, ClientError> {
        Ok(self.cached(client, id, len).await?.node.clone())
    }

    /// The pieces of `[start, end)` of the tree at `root`, in order: nodes are searched, not
    /// scanned or copied, so a small read costs a few comparisons per level.
    pub async fn pieces(
        &self,
        client: &Client,
        root: Child,
        start: u64,
        end: u64,
    ) -> Result<Vec<Piece>, ClientError> {
        TreeError::check_range(start, end, root.len)?;
        let mut out = Vec::new();
        if start == end {
            return Ok(out);
        }
        // Frames: a node, the offset it starts at, the next entry to visit.
        let top = self.cached(client, root.node, root.len).await?;
        let first = top.first_after(start);
        let mut frames: Vec<(Arc<CachedNode>, u64, usize)> = vec![(top, 0, first)];
        let mut depth = 1;
        while let Some((node, base, idx)) = frames.last_mut() {
            let (i, base) = (*idx, *base);
            if i >= node.ends.len() || base + node.start_of(i) >= end {
                frames.pop();
                depth -= 1;
                continue;
            }
            *idx += 1;
            let (es, ee) = (base + node.start_of(i), base + node.ends[i]);
            match &node.node {
                TreeNode::Leaves(leaves) => {
                    let leaf = &leaves[i];
                    let (from, to) = (start.max(es) - es, end.min(ee) - es);
                    let offset = match leaf.target {
                        Target::Chunk { skip, .. } => u64::from(skip) + from,
                        _ => from,
                    };
                    out.push(Piece {
                        target: leaf.target.clone(),
                        offset,
                        len: to - from,
                    });
                }
                TreeNode::Children(kids) => {
                    if depth >= MAX_DEPTH {
                        return Err(TreeError::TooDeep.into());
                    }
                    let kid = kids[i];
                    let n = self.cached(client, kid.node, kid.len).await?;
                    let first = n.first_after(start.max(es) - es);
                    frames.push((n, es, first));
                    depth += 1;
                }
            }
        }
        Ok(out)
    }
}

/// A [`NodeStore`] reading through a [`NodeCache`]; stores go straight to the client.
pub struct Cached<'a> {
    client: &'a Client,
    cache: &'a NodeCache,
}

impl NodeStore for Cached<'_> {
    type Error = ClientError;

    async fn load(&self, id: ChunkId, len: u64) -> Result<TreeNode, ClientError> {
        self.cache.load(self.client, id, len).await
    }

    async fn store(&self, id: ChunkId, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.client.store(id, bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::extent::Leaf;

    fn node(n: u64) -> (ChunkId, Arc<CachedNode>) {
        let node = TreeNode::Leaves(vec![Leaf::zeros(n)]);
        (
            ChunkId::of(&n.to_le_bytes()),
            Arc::new(CachedNode::new(node)),
        )
    }

    /// The cache's searched walk gives exactly the pieces the tree's own walker gives, over a
    /// tree of several levels built by random splices.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn searched_pieces_equal_the_walkers() {
        use cairn_core::extent::{splice, RangeWalker};
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let client = Client::open_dir(dir.path()).unwrap();
        let size: u64 = 64 << 20;
        let mut root = splice(&client, None, 0, 0, vec![Leaf::zeros(size)])
            .await
            .unwrap()
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for i in 0..2000u64 {
            let len = rng.gen_range(1..=20_000u64);
            let at = rng.gen_range(0..size - len);
            let leaf = if rng.gen_bool(0.2) {
                Leaf::zeros(len)
            } else {
                Leaf::chunk(ChunkId::of(&i.to_le_bytes()), len)
            };
            root = splice(&client, Some(root), at, at + len, vec![leaf])
                .await
                .unwrap()
                .unwrap();
        }
        let cache = NodeCache::new(8);
        let mut deep = false;
        for _ in 0..300 {
            let a = rng.gen_range(0..size);
            let b = (a + rng.gen_range(0..16_000_000u64)).min(size);
            let mut w = RangeWalker::new(root, a, b).unwrap();
            let mut expect = Vec::new();
            while let Some(p) = w.next(&client).await.unwrap() {
                expect.push(p);
            }
            let got = cache.pieces(&client, root, a, b).await.unwrap();
            assert_eq!(got, expect, "range {a}..{b}");
            deep |= expect.len() > cairn_core::extent::FANOUT;
        }
        assert!(deep, "some range spans more than one leaf node");
        assert!(cache.pieces(&client, root, 0, size + 1).await.is_err());
    }

    #[test]
    fn recently_used_nodes_stay_and_memory_is_bounded() {
        // Four one-entry nodes per generation.
        let c = NodeCache::new(4);
        for i in 1..=4 {
            let (id, n) = node(i);
            c.insert(id, n);
        }
        // Node 1 is used again, then four new nodes turn the generations twice over.
        assert!(c.get(&node(1).0).is_some());
        for i in 5..=7 {
            let (id, n) = node(i);
            c.insert(id, n);
        }
        assert!(
            c.get(&node(1).0).is_some(),
            "a node used since the turn stays"
        );
        let g = c.gens.lock().unwrap();
        assert!(g.hot.len() + g.cold.len() <= 8);
        assert_eq!(g.hot_entries, g.hot.len());
    }
}
