//! Reusing parts of stored trees: a byte range of a tree pushed into a builder as whole
//! subtrees where it can be (multipart completion keeps what lies between two part seams this
//! way), the last leaf of a tree, and adjacent pieces of one chunk read as one.

use super::{
    BoxFut, Child, Leaf, NodeStore, Piece, Target, TreeBuilder, TreeError, TreeNode, MAX_DEPTH,
};

impl TreeBuilder {
    /// Appends bytes `[start, end)` of the tree at `root`: every subtree inside the range by
    /// reference, and slices of the leaves at its two ends. Only the nodes on the paths to
    /// `start` and `end` are read.
    pub async fn push_range<S: NodeStore>(
        &mut self,
        s: &S,
        root: Child,
        start: u64,
        end: u64,
    ) -> Result<(), S::Error> {
        TreeError::check_range(start, end, root.len)?;
        self.push_range_at(s, root, start, end, 0).await
    }

    fn push_range_at<'a, S: NodeStore>(
        &'a mut self,
        s: &'a S,
        at: Child,
        start: u64,
        end: u64,
        depth: usize,
    ) -> BoxFut<'a, Result<(), S::Error>> {
        Box::pin(async move {
            if start >= end {
                return Ok(());
            }
            if start == 0 && end == at.len {
                return self.push_subtree(s, at).await;
            }
            if depth >= MAX_DEPTH {
                return Err(TreeError::TooDeep.into());
            }
            let mut pos = 0;
            match s.load(at.node, at.len).await? {
                TreeNode::Leaves(leaves) => {
                    for leaf in leaves {
                        let (ls, le) = (pos, pos + leaf.len);
                        pos = le;
                        if le > start && ls < end {
                            let from = start.max(ls) - ls;
                            let to = end.min(le) - ls;
                            self.push_leaf(s, leaf.slice(from, to - from)).await?;
                        }
                    }
                }
                TreeNode::Children(kids) => {
                    for kid in kids {
                        let (cs, ce) = (pos, pos + kid.len);
                        pos = ce;
                        if ce > start && cs < end {
                            let (from, to) = (start.max(cs) - cs, end.min(ce) - cs);
                            self.push_range_at(s, kid, from, to, depth + 1).await?;
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

/// The last leaf of the tree at `root` and where it starts; reads one node per level.
pub async fn last_leaf<S: NodeStore>(s: &S, root: Child) -> Result<(u64, Leaf), S::Error> {
    let mut at = root;
    let mut offset = 0;
    for _ in 0..MAX_DEPTH {
        match s.load(at.node, at.len).await? {
            TreeNode::Leaves(mut leaves) => {
                // A checked node has at least one entry.
                let leaf = leaves
                    .pop()
                    .ok_or_else(|| TreeError::Corrupt("empty leaf node".into()))?;
                return Ok((offset + at.len - leaf.len, leaf));
            }
            TreeNode::Children(kids) => {
                let last = *kids
                    .last()
                    .ok_or_else(|| TreeError::Corrupt("empty interior node".into()))?;
                offset += at.len - last.len;
                at = last;
            }
        }
    }
    Err(TreeError::TooDeep.into())
}

impl Piece {
    /// Appends `next` to `self` when it continues the same chunk (or both are zeros), so a
    /// chunk referenced as two slices side by side — as a re-cut chunk over a part seam is —
    /// is read once.
    pub fn try_merge(&mut self, next: &Piece) -> bool {
        match (&self.target, &next.target) {
            (Target::Zeros, Target::Zeros) => {}
            (Target::Chunk { id: a, .. }, Target::Chunk { id: b, .. })
                if a == b && self.offset + self.len == next.offset => {}
            _ => return false,
        }
        self.len += next.len;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{block_on, random_leaves, Mem};
    use super::super::FANOUT;
    use super::*;
    use rand::{Rng, SeedableRng};

    fn build(mem: &Mem, leaves: Vec<Leaf>) -> Child {
        block_on(async {
            let mut b = TreeBuilder::new();
            for l in leaves {
                b.push_leaf(mem, l).await.unwrap();
            }
            b.finish(mem).await.unwrap().unwrap()
        })
    }

    #[test]
    fn ranges_pushed_by_reference_read_back_and_share_inner_nodes() {
        let mem = Mem::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (leaves, model) = random_leaves(&mem, &mut rng, FANOUT * 3 + 40);
        let root = build(&mem, leaves);
        for round in 0..60 {
            let a = rng.gen_range(0..model.len());
            let b = rng.gen_range(a..=model.len());
            let before = *mem.stores.lock().unwrap();
            let got = block_on(async {
                let mut builder = TreeBuilder::new();
                builder
                    .push_range(&mem, root, a as u64, b as u64)
                    .await
                    .unwrap();
                builder.finish(&mem).await.unwrap()
            });
            // Whole leaf nodes inside the range are shared, not rewritten.
            let stored = *mem.stores.lock().unwrap() - before;
            assert!(stored <= 4, "round {round}: {stored} nodes for one range");
            assert_eq!(
                block_on(mem.read(got, 0, (b - a) as u64)),
                &model[a..b],
                "round {round}"
            );
        }
        let whole = block_on(async {
            let mut builder = TreeBuilder::new();
            builder.push_range(&mem, root, 0, root.len).await.unwrap();
            builder.finish(&mem).await.unwrap()
        });
        assert_eq!(whole, Some(root));
        assert!(block_on(TreeBuilder::new().push_range(&mem, root, 0, root.len + 1)).is_err());
    }

    #[test]
    fn last_leaf_is_found_at_its_offset() {
        let mem = Mem::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let (leaves, _) = random_leaves(&mem, &mut rng, FANOUT * 2 + 3);
        let last = leaves.last().unwrap().clone();
        let total: u64 = leaves.iter().map(|l| l.len).sum();
        let root = build(&mem, leaves);
        let (at, leaf) = block_on(last_leaf(&mem, root)).unwrap();
        // The builder may have merged the last leaf with its neighbour.
        assert_eq!(at + leaf.len, total);
        assert!(leaf.len >= last.len);
    }

    #[test]
    fn pieces_of_one_chunk_side_by_side_merge() {
        let id = crate::ChunkId::of(b"x");
        let piece = |offset, len| Piece {
            target: Target::Chunk { id, skip: 0 },
            offset,
            len,
        };
        let mut a = piece(10, 5);
        assert!(a.try_merge(&piece(15, 7)));
        assert_eq!((a.offset, a.len), (10, 12));
        assert!(!a.try_merge(&piece(30, 1)));
        let other = Piece {
            target: Target::Chunk {
                id: crate::ChunkId::of(b"y"),
                skip: 0,
            },
            offset: 22,
            len: 1,
        };
        assert!(!a.try_merge(&other));
    }
}
