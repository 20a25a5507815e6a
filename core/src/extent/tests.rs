use std::collections::HashMap;
use std::sync::Mutex;

use rand::{Rng, SeedableRng};

use super::*;

/// Nodes and data chunks in memory; counts stores so tests can see what a write rewrote.
#[derive(Default)]
pub(super) struct Mem {
    chunks: Mutex<HashMap<ChunkId, Vec<u8>>>,
    pub(super) stores: Mutex<usize>,
    /// Node size edits write (`None`: the default, [`FANOUT`]).
    fanout: Option<usize>,
    /// Most entries of a node stored since the last reset.
    widest_stored: Mutex<usize>,
}

impl NodeStore for Mem {
    type Error = TreeError;
    async fn load(&self, id: ChunkId, len: u64) -> Result<TreeNode, TreeError> {
        let bytes = self.chunks.lock().unwrap().get(&id).cloned();
        let bytes = bytes.ok_or_else(|| TreeError::Corrupt(format!("missing {id:?}")))?;
        TreeNode::decode_checked(&bytes, len)
    }
    async fn store(&self, id: ChunkId, bytes: Vec<u8>) -> Result<(), TreeError> {
        assert_eq!(ChunkId::of(&bytes), id);
        *self.stores.lock().unwrap() += 1;
        let entries = match TreeNode::decode(&bytes) {
            Ok(TreeNode::Leaves(l)) => l.len(),
            Ok(TreeNode::Children(c)) => c.len(),
            Err(_) => 0,
        };
        let mut widest = self.widest_stored.lock().unwrap();
        *widest = (*widest).max(entries);
        drop(widest);
        self.chunks.lock().unwrap().insert(id, bytes);
        Ok(())
    }
    fn fanout(&self) -> usize {
        self.fanout.unwrap_or(FANOUT)
    }
}

impl Mem {
    fn data_leaf(&self, bytes: &[u8]) -> Leaf {
        let id = ChunkId::of(bytes);
        self.chunks.lock().unwrap().insert(id, bytes.to_vec());
        Leaf::chunk(id, bytes.len() as u64)
    }

    pub(super) async fn read(&self, root: Option<Child>, start: u64, end: u64) -> Vec<u8> {
        let Some(root) = root else {
            assert_eq!((start, end), (0, 0));
            return Vec::new();
        };
        let mut w = RangeWalker::new(root, start, end).unwrap();
        let mut out = Vec::new();
        while let Some(p) = w.next(self).await.unwrap() {
            match p.target {
                Target::Zeros => out.extend(std::iter::repeat_n(0u8, p.len as usize)),
                Target::Inline(b) => {
                    out.extend_from_slice(&b[p.offset as usize..(p.offset + p.len) as usize])
                }
                Target::Chunk { id, .. } => {
                    let c = self.chunks.lock().unwrap()[&id].clone();
                    out.extend_from_slice(&c[p.offset as usize..(p.offset + p.len) as usize]);
                }
            }
        }
        out
    }
}

pub(super) fn block_on<F: Future>(f: F) -> F::Output {
    // The in-memory store never waits, so polling once per step is enough.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Leaves of random kinds and sizes, and the bytes they stand for.
pub(super) fn random_leaves(mem: &Mem, rng: &mut impl Rng, n: usize) -> (Vec<Leaf>, Vec<u8>) {
    let mut leaves = Vec::new();
    let mut model = Vec::new();
    for _ in 0..n {
        let len = rng.gen_range(1..300usize);
        match rng.gen_range(0..3) {
            0 => {
                leaves.push(Leaf::zeros(len as u64));
                model.extend(std::iter::repeat_n(0u8, len));
            }
            1 => {
                let b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                leaves.push(Leaf {
                    len: len as u64,
                    target: Target::Inline(Bytes::from(b.clone())),
                });
                model.extend(b);
            }
            _ => {
                let b: Vec<u8> = (0..len + 10).map(|_| rng.gen()).collect();
                let full = mem.data_leaf(&b);
                leaves.push(full.slice(5, len as u64));
                model.extend_from_slice(&b[5..5 + len]);
            }
        }
    }
    (leaves, model)
}

#[test]
fn build_and_read_ranges_of_a_multi_level_tree() {
    let mem = Mem::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (leaves, model) = random_leaves(&mem, &mut rng, FANOUT * 3 + 17);
    let root = block_on(async {
        let mut b = TreeBuilder::new();
        for l in leaves {
            b.push_leaf(&mem, l).await.unwrap();
        }
        b.finish(&mem).await.unwrap()
    });
    let root = root.unwrap();
    assert_eq!(root.len, model.len() as u64);
    for _ in 0..50 {
        let a = rng.gen_range(0..model.len());
        let b = rng.gen_range(a..=model.len());
        assert_eq!(
            block_on(mem.read(Some(root), a as u64, b as u64)),
            &model[a..b]
        );
    }
    assert_eq!(block_on(mem.read(Some(root), 0, root.len)), model);
    assert!(RangeWalker::new(root, 0, root.len + 1).is_err());
}

#[test]
fn same_content_gives_same_root() {
    let mem = Mem::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let (leaves, _) = random_leaves(&mem, &mut rng, 1000);
    let build = |ls: Vec<Leaf>| {
        block_on(async {
            let mut b = TreeBuilder::new();
            for l in ls {
                b.push_leaf(&mem, l).await.unwrap();
            }
            b.finish(&mem).await.unwrap()
        })
    };
    assert_eq!(build(leaves.clone()), build(leaves));
    assert_eq!(build(Vec::new()), None);
}

#[test]
fn splices_match_a_byte_model_and_share_untouched_nodes() {
    let mem = Mem::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let (leaves, mut model) = random_leaves(&mem, &mut rng, FANOUT * 4);
    let mut root = block_on(splice(&mem, None, 0, 0, leaves)).unwrap();
    for round in 0..200 {
        let len = model.len();
        let a = rng.gen_range(0..=len);
        let b = rng.gen_range(a..=len.min(a + 2000));
        let n = rng.gen_range(0..4);
        let (ins, bytes) = random_leaves(&mem, &mut rng, n);
        let before = *mem.stores.lock().unwrap();
        root = block_on(splice(&mem, root, a as u64, b as u64, ins)).unwrap();
        let stored = *mem.stores.lock().unwrap() - before;
        assert!(
            stored <= 2 * MAX_DEPTH,
            "round {round}: rewrote {stored} nodes"
        );
        model.splice(a..b, bytes);
        assert_eq!(root.map_or(0, |r| r.len), model.len() as u64);
        if round % 20 == 0 {
            assert_eq!(block_on(mem.read(root, 0, model.len() as u64)), model);
        }
    }
    assert_eq!(block_on(mem.read(root, 0, model.len() as u64)), model);
    // Removing everything leaves empty content.
    let len = model.len() as u64;
    assert_eq!(
        block_on(splice(&mem, root, 0, len, Vec::new())).unwrap(),
        None
    );
    assert!(block_on(splice(&mem, root, 0, len + 1, Vec::new())).is_err());
}

#[test]
fn subtrees_concatenate_without_copying() {
    let mem = Mem::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    let mut parts = Vec::new();
    let mut model = Vec::new();
    for _ in 0..5 {
        let (leaves, bytes) = random_leaves(&mem, &mut rng, 700);
        let root = block_on(splice(&mem, None, 0, 0, leaves)).unwrap().unwrap();
        parts.push(root);
        model.extend(bytes);
    }
    let before = *mem.stores.lock().unwrap();
    let root = block_on(async {
        let mut b = TreeBuilder::new();
        for p in &parts {
            b.push_subtree(&mem, *p).await.unwrap();
        }
        b.finish(&mem).await.unwrap()
    });
    assert_eq!(*mem.stores.lock().unwrap() - before, 1);
    assert_eq!(block_on(mem.read(root, 0, model.len() as u64)), model);
}

#[test]
fn corrupt_nodes_are_rejected() {
    let node = TreeNode::Leaves(vec![Leaf::zeros(10)]);
    let bytes = node.encode();
    assert!(TreeNode::decode_checked(&bytes, 10).is_ok());
    assert!(TreeNode::decode_checked(&bytes, 11).is_err());
    let empty = TreeNode::Leaves(vec![Leaf::zeros(0)]).encode();
    assert!(TreeNode::decode_checked(&empty, 0).is_err());
    assert!(TreeNode::decode_checked(&[1, 2, 3], 0).is_err());
}

/// Nodes of the tree at `root`, counted by walking it.
fn count_nodes(mem: &Mem, root: Child) -> usize {
    let mut todo = vec![root];
    let mut n = 0;
    while let Some(c) = todo.pop() {
        n += 1;
        if let TreeNode::Children(kids) = block_on(mem.load(c.node, c.len)).unwrap() {
            todo.extend(kids);
        }
    }
    n
}

#[test]
fn overwrites_match_a_byte_model_and_store_each_new_node_once() {
    overwrites_with_fanout(None);
}

#[test]
fn overwrites_with_small_nodes_keep_every_node_within_the_fanout() {
    overwrites_with_fanout(Some(8));
}

fn overwrites_with_fanout(fanout: Option<usize>) {
    let mem = Mem {
        fanout,
        ..Mem::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let (leaves, mut model) = random_leaves(&mem, &mut rng, FANOUT * 6);
    let mut root = block_on(splice(&mem, None, 0, 0, leaves)).unwrap().unwrap();
    let len = model.len() as u64;
    for round in 0..40 {
        // Random edits in order, some adjacent, some spanning several leaf nodes.
        let mut edits = Vec::new();
        let mut at = 0;
        loop {
            at += rng.gen_range(0..len / 40);
            let n = if rng.gen_bool(0.05) {
                rng.gen_range(500..1500)
            } else {
                rng.gen_range(1..4)
            };
            let (ins, bytes) = random_leaves(&mem, &mut rng, n);
            let end = at + bytes.len() as u64;
            if end > len {
                break;
            }
            model[at as usize..end as usize].copy_from_slice(&bytes);
            edits.push(Overwrite { at, leaves: ins });
            at = end;
        }
        let before = *mem.stores.lock().unwrap();
        *mem.widest_stored.lock().unwrap() = 0;
        root = block_on(overwrite(&mem, root, edits)).unwrap();
        let stored = *mem.stores.lock().unwrap() - before;
        let nodes = count_nodes(&mem, root);
        assert!(
            stored <= nodes,
            "round {round}: {stored} nodes stored for a tree of {nodes}"
        );
        // Nodes an edit writes hold at most the store's fan-out (the first tree was built at
        // the default one).
        let wrote = *mem.widest_stored.lock().unwrap();
        assert!(
            wrote <= fanout.unwrap_or(FANOUT),
            "round {round}: a node of {wrote}"
        );
        assert_eq!(root.len, len);
        assert_eq!(
            block_on(mem.read(Some(root), 0, len)),
            model,
            "round {round}"
        );
    }
    // Edits out of order, overlapping or past the end are refused; none is a no-op.
    let one = |at: u64| Overwrite {
        at,
        leaves: vec![Leaf::zeros(10)],
    };
    assert!(block_on(overwrite(&mem, root, vec![one(100), one(50)])).is_err());
    assert!(block_on(overwrite(&mem, root, vec![one(100), one(105)])).is_err());
    assert!(block_on(overwrite(&mem, root, vec![one(len - 5)])).is_err());
    assert_eq!(block_on(overwrite(&mem, root, Vec::new())).unwrap(), root);
}

#[test]
fn overflowing_nodes_split_into_nearly_equal_groups() {
    let sizes = |n: usize, f: usize| -> Vec<usize> {
        let items: Vec<usize> = (0..n).collect();
        let groups: Vec<&[usize]> = even_groups(&items, f).collect();
        assert_eq!(groups.concat(), items, "order and content kept");
        groups.iter().map(|g| g.len()).collect()
    };
    assert_eq!(sizes(0, 8), Vec::<usize>::new());
    assert_eq!(sizes(8, 8), vec![8]);
    assert_eq!(sizes(9, 8), vec![5, 4]);
    assert_eq!(sizes(17, 8), vec![6, 6, 5]);
    assert_eq!(sizes(513, FANOUT), vec![257, 256]);
    // A fan-out below 2 could not make progress; above FANOUT readers would refuse the node.
    assert_eq!(sizes(3, 0), vec![2, 1]);
    assert_eq!(sizes(FANOUT + 1, 10_000), vec![257, 256]);
}
