//! Decoded extent-tree nodes of a volume, kept between requests: a 4 KiB read otherwise loads,
//! decompresses, verifies and decodes every node on its path from the root. Nodes are named by
//! their content hash, so a cached node can never be stale; the cache only bounds memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cairn_client::{Client, ClientError};
use cairn_core::extent::{NodeStore, TreeError, TreeNode};
use cairn_core::ChunkId;

/// Two generations of at most `cap` nodes each: a lookup that hits the older one moves the
/// node to the newer one, and when the newer one is full it becomes the older one. Nodes used
/// since the last turn stay; memory stays below `2 × cap` nodes (a node is at most 512 entries).
pub(crate) struct NodeCache {
    cap: usize,
    gens: Mutex<Gens>,
}

#[derive(Default)]
struct Gens {
    hot: HashMap<ChunkId, Arc<TreeNode>>,
    cold: HashMap<ChunkId, Arc<TreeNode>>,
}

impl NodeCache {
    pub(crate) fn new(cap: usize) -> NodeCache {
        NodeCache {
            cap: cap.max(1),
            gens: Mutex::new(Gens::default()),
        }
    }

    fn get(&self, id: &ChunkId) -> Option<Arc<TreeNode>> {
        let mut g = self.gens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = g.hot.get(id) {
            return Some(n.clone());
        }
        let n = g.cold.remove(id)?;
        self.put(&mut g, *id, n.clone());
        Some(n)
    }

    fn insert(&self, id: ChunkId, node: Arc<TreeNode>) {
        let mut g = self.gens.lock().unwrap_or_else(|e| e.into_inner());
        self.put(&mut g, id, node);
    }

    fn put(&self, g: &mut Gens, id: ChunkId, node: Arc<TreeNode>) {
        if g.hot.len() >= self.cap {
            g.cold = std::mem::take(&mut g.hot);
        }
        g.hot.insert(id, node);
    }

    /// The node store that reads through this cache from `client`.
    pub(crate) fn over<'a>(&'a self, client: &'a Client) -> Cached<'a> {
        Cached {
            client,
            cache: self,
        }
    }

    /// Loads node `id` (of `len` bytes) from the cache, or from `client` into the cache.
    pub(crate) async fn load(
        &self,
        client: &Client,
        id: ChunkId,
        len: u64,
    ) -> Result<TreeNode, ClientError> {
        if let Some(n) = self.get(&id) {
            if n.len() != len {
                return Err(TreeError::Corrupt(format!(
                    "node {id} covers {} bytes, its parent says {len}",
                    n.len()
                ))
                .into());
            }
            return Ok((*n).clone());
        }
        let node = client.load(id, len).await?;
        self.insert(id, Arc::new(node.clone()));
        Ok(node)
    }
}

/// A [`NodeStore`] reading through a [`NodeCache`]; stores go straight to the client.
pub(crate) struct Cached<'a> {
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

    fn node(n: u64) -> (ChunkId, Arc<TreeNode>) {
        let node = TreeNode::Leaves(vec![Leaf::zeros(n)]);
        (ChunkId::of(&n.to_le_bytes()), Arc::new(node))
    }

    #[test]
    fn recently_used_nodes_stay_and_memory_is_bounded() {
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
    }
}
