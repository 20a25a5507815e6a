//! The extent tree: an object version's bytes as a Merkle tree of references.
//!
//! A leaf reference covers `len` bytes with a slice of a chunk, zeros, or inline bytes. Interior
//! nodes list children with their lengths. Every node is serialized (versioned) and stored as a
//! chunk, so its id is the hash of its content and a root id names the whole content. Offsets are
//! implicit (prefix sums of lengths), so any subtree can be reused at any position: multipart
//! completion and copies reference existing subtrees instead of copying data.
//!
//! Writes are copy-on-write: [`splice`] rewrites only the nodes on the path to the changed range.
//! Fan-out is bounded by [`FANOUT`] and reads refuse trees deeper than [`MAX_DEPTH`].

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::format::{FormatError, Versioned};
use crate::ChunkId;

/// Most entries in one node.
pub const FANOUT: usize = 512;
/// Deepest tree a reader will walk.
pub const MAX_DEPTH: usize = 16;

/// What a leaf reference points at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Bytes `[skip, skip + len)` of a stored chunk.
    Chunk {
        /// The chunk.
        id: ChunkId,
        /// Offset inside the chunk.
        skip: u32,
    },
    /// `len` zero bytes; never stored.
    Zeros,
    /// The bytes themselves (small writes).
    Inline(Bytes),
}

/// A leaf entry: `len` bytes of `target`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaf {
    /// Length covered.
    pub len: u64,
    /// Where the bytes are.
    pub target: Target,
}

impl Leaf {
    /// A reference to a whole chunk of `len` bytes.
    pub fn chunk(id: ChunkId, len: u64) -> Leaf {
        Leaf {
            len,
            target: Target::Chunk { id, skip: 0 },
        }
    }

    /// `len` zero bytes.
    pub fn zeros(len: u64) -> Leaf {
        Leaf {
            len,
            target: Target::Zeros,
        }
    }

    /// The sub-range `[from, from + len)` of this leaf.
    pub fn slice(&self, from: u64, len: u64) -> Leaf {
        debug_assert!(from + len <= self.len);
        let target = match &self.target {
            Target::Chunk { id, skip } => Target::Chunk {
                id: *id,
                skip: skip + from as u32,
            },
            Target::Zeros => Target::Zeros,
            Target::Inline(b) => Target::Inline(b.slice(from as usize..(from + len) as usize)),
        };
        Leaf { len, target }
    }

    /// Appends `next` to `self` when they are contiguous pieces of the same thing.
    fn try_merge(&mut self, next: &Leaf) -> bool {
        match (&self.target, &next.target) {
            (Target::Zeros, Target::Zeros) => {}
            (Target::Chunk { id: a, skip: sa }, Target::Chunk { id: b, skip: sb })
                if a == b && *sa as u64 + self.len == *sb as u64 => {}
            _ => return false,
        }
        self.len += next.len;
        true
    }
}

/// An interior entry: a subtree of `len` bytes rooted at node `node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    /// Bytes covered by the subtree.
    pub len: u64,
    /// Id of the subtree's root node.
    pub node: ChunkId,
}

/// A tree node as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeNode {
    /// References to data.
    Leaves(Vec<Leaf>),
    /// References to subtrees.
    Children(Vec<Child>),
}

impl Versioned for TreeNode {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "extent tree node";
}

impl TreeNode {
    /// Total bytes covered.
    pub fn len(&self) -> u64 {
        match self {
            TreeNode::Leaves(l) => l.iter().map(|l| l.len).sum(),
            TreeNode::Children(c) => c.iter().map(|c| c.len).sum(),
        }
    }

    /// True when the node covers nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids of the chunks this node references directly (data chunks or child nodes).
    pub fn referenced_chunks(&self) -> Vec<ChunkId> {
        match self {
            TreeNode::Leaves(l) => l
                .iter()
                .filter_map(|l| match l.target {
                    Target::Chunk { id, .. } => Some(id),
                    _ => None,
                })
                .collect(),
            TreeNode::Children(c) => c.iter().map(|c| c.node).collect(),
        }
    }

    /// Decodes and checks a stored node: bounded fan-out, no empty entries, and a total
    /// length equal to what its parent says.
    pub fn decode_checked(bytes: &[u8], expect_len: u64) -> Result<TreeNode, TreeError> {
        let node = TreeNode::decode(bytes)?;
        let (n, has_empty) = match &node {
            TreeNode::Leaves(l) => (l.len(), l.iter().any(|l| l.len == 0)),
            TreeNode::Children(c) => (c.len(), c.iter().any(|c| c.len == 0)),
        };
        if n == 0 || n > FANOUT || has_empty {
            return Err(TreeError::Corrupt(format!(
                "node has {n} entries (or an empty one)"
            )));
        }
        let mut total: u64 = 0;
        let lens: Box<dyn Iterator<Item = u64>> = match &node {
            TreeNode::Leaves(l) => Box::new(l.iter().map(|l| l.len)),
            TreeNode::Children(c) => Box::new(c.iter().map(|c| c.len)),
        };
        for l in lens {
            total = total
                .checked_add(l)
                .ok_or_else(|| TreeError::Corrupt("node length overflows".into()))?;
        }
        if total != expect_len {
            return Err(TreeError::Corrupt(format!(
                "node covers {total} bytes, its parent says {expect_len}"
            )));
        }
        Ok(node)
    }
}

/// A tree could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A node failed to decode.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A node is inconsistent.
    #[error("corrupt extent tree: {0}")]
    Corrupt(String),
    /// The tree is deeper than [`MAX_DEPTH`].
    #[error("extent tree deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A range outside the content.
    #[error("range {start}..{end} is outside the content of {len} bytes")]
    OutOfRange {
        /// Range start.
        start: u64,
        /// Range end.
        end: u64,
        /// Content length.
        len: u64,
    },
}

impl TreeError {
    /// `OutOfRange` unless `[start, end)` lies within content of `len` bytes.
    pub fn check_range(start: u64, end: u64, len: u64) -> Result<(), TreeError> {
        if start > end || end > len {
            return Err(TreeError::OutOfRange { start, end, len });
        }
        Ok(())
    }
}

/// Where tree nodes are loaded from and stored to (the chunk store, through the client).
pub trait NodeStore: Sync {
    /// The store's error; tree errors convert into it.
    type Error: From<TreeError> + Send;
    /// Loads and decodes node `id`, which must cover `len` bytes.
    fn load(
        &self,
        id: ChunkId,
        len: u64,
    ) -> impl Future<Output = Result<TreeNode, Self::Error>> + Send;
    /// Stores encoded node bytes under `id` (the hash of `bytes`) durably.
    fn store(
        &self,
        id: ChunkId,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Most entries a node this store's edits write may hold (at most [`FANOUT`]). Trees
    /// edited in place often (volumes) want smaller nodes: an edit rewrites whole nodes.
    fn fanout(&self) -> usize {
        FANOUT
    }
}

/// `items` cut into the fewest groups of at most `fanout` (clamped to `2..=FANOUT`), of
/// nearly equal sizes: a node that overflows by one entry splits in halves, not into a full
/// node (which the next edit would split again) and a node of one entry.
fn even_groups<T>(items: &[T], fanout: usize) -> impl Iterator<Item = &[T]> {
    let fanout = fanout.clamp(2, FANOUT);
    let groups = items.len().div_ceil(fanout);
    let (base, extra) = match groups {
        0 => (0, 0),
        g => (items.len() / g, items.len() % g),
    };
    let mut rest = items;
    (0..groups).map(move |g| {
        let (head, tail) = rest.split_at(base + usize::from(g < extra));
        rest = tail;
        head
    })
}

async fn store_node<S: NodeStore>(s: &S, node: TreeNode) -> Result<Child, S::Error> {
    let len = node.len();
    let bytes = node.encode();
    let id = ChunkId::of(&bytes);
    s.store(id, bytes).await?;
    Ok(Child { len, node: id })
}

/// Builds a tree from leaves (and whole subtrees) pushed in order, storing each node as it
/// fills, so memory is bounded by `FANOUT × depth` entries whatever the content size.
#[derive(Default)]
pub struct TreeBuilder {
    leaves: Vec<Leaf>,
    levels: Vec<Vec<Child>>,
}

impl TreeBuilder {
    /// An empty builder.
    pub fn new() -> TreeBuilder {
        TreeBuilder::default()
    }

    /// Appends a leaf (zero-length leaves are ignored; contiguous ones merge).
    pub async fn push_leaf<S: NodeStore>(&mut self, s: &S, leaf: Leaf) -> Result<(), S::Error> {
        if leaf.len == 0 {
            return Ok(());
        }
        if let Some(last) = self.leaves.last_mut() {
            if last.try_merge(&leaf) {
                return Ok(());
            }
        }
        if self.leaves.len() == FANOUT {
            self.flush_leaves(s).await?;
        }
        self.leaves.push(leaf);
        Ok(())
    }

    /// Appends a whole existing subtree.
    pub async fn push_subtree<S: NodeStore>(
        &mut self,
        s: &S,
        child: Child,
    ) -> Result<(), S::Error> {
        if child.len == 0 {
            return Ok(());
        }
        self.flush_leaves(s).await?;
        self.add_child(s, 0, child).await
    }

    async fn flush_leaves<S: NodeStore>(&mut self, s: &S) -> Result<(), S::Error> {
        if self.leaves.is_empty() {
            return Ok(());
        }
        let node = TreeNode::Leaves(std::mem::take(&mut self.leaves));
        let child = store_node(s, node).await?;
        self.add_child(s, 0, child).await
    }

    async fn add_child<S: NodeStore>(
        &mut self,
        s: &S,
        mut level: usize,
        mut child: Child,
    ) -> Result<(), S::Error> {
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            if self.levels[level].len() < FANOUT {
                self.levels[level].push(child);
                return Ok(());
            }
            let full = std::mem::take(&mut self.levels[level]);
            self.levels[level].push(child);
            child = store_node(s, TreeNode::Children(full)).await?;
            level += 1;
        }
    }

    /// Stores what is pending and returns the root (`None` for empty content).
    pub async fn finish<S: NodeStore>(mut self, s: &S) -> Result<Option<Child>, S::Error> {
        if self.levels.is_empty() {
            if self.leaves.is_empty() {
                return Ok(None);
            }
            let node = TreeNode::Leaves(std::mem::take(&mut self.leaves));
            return store_node(s, node).await.map(Some);
        }
        self.flush_leaves(s).await?;
        let mut level = 0;
        while level < self.levels.len() {
            let children = std::mem::take(&mut self.levels[level]);
            let top = level + 1 == self.levels.len();
            if top && children.len() == 1 {
                return Ok(Some(children[0]));
            }
            if !children.is_empty() {
                let child = store_node(s, TreeNode::Children(children)).await?;
                if top {
                    self.levels.push(Vec::new());
                }
                self.levels[level + 1].push(child);
            }
            level += 1;
        }
        Ok(None)
    }
}

/// A piece of a range read: `len` bytes of `target` starting `offset` bytes into it (for a
/// chunk, `offset` already includes the leaf's skip).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Source of the bytes.
    pub target: Target,
    /// Offset inside the target.
    pub offset: u64,
    /// Bytes to take.
    pub len: u64,
}

struct Frame {
    node: TreeNode,
    idx: usize,
    /// Logical offset of entry `idx`.
    pos: u64,
}

/// Walks the leaves that overlap a range, in order, loading only the nodes on the way.
pub struct RangeWalker {
    root: Option<Child>,
    stack: Vec<Frame>,
    start: u64,
    end: u64,
}

impl RangeWalker {
    /// A walker over `[start, end)` of the tree at `root`.
    pub fn new(root: Child, start: u64, end: u64) -> Result<RangeWalker, TreeError> {
        TreeError::check_range(start, end, root.len)?;
        Ok(RangeWalker {
            root: Some(root),
            stack: Vec::new(),
            start,
            end,
        })
    }

    /// The next piece, or `None` at the end of the range.
    pub async fn next<S: NodeStore>(&mut self, s: &S) -> Result<Option<Piece>, S::Error> {
        if self.start >= self.end {
            return Ok(None);
        }
        if let Some(root) = self.root.take() {
            let node = s.load(root.node, root.len).await?;
            self.stack.push(Frame {
                node,
                idx: 0,
                pos: 0,
            });
        }
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            let (len, entry) = match &frame.node {
                TreeNode::Leaves(l) => match l.get(frame.idx) {
                    Some(leaf) => (leaf.len, Ok(leaf.clone())),
                    None => {
                        self.stack.pop();
                        continue;
                    }
                },
                TreeNode::Children(c) => match c.get(frame.idx) {
                    Some(child) => (child.len, Err(*child)),
                    None => {
                        self.stack.pop();
                        continue;
                    }
                },
            };
            let entry_start = frame.pos;
            let entry_end = entry_start + len;
            frame.idx += 1;
            frame.pos = entry_end;
            if entry_end <= self.start {
                continue;
            }
            if entry_start >= self.end {
                self.start = self.end;
                return Ok(None);
            }
            match entry {
                Ok(leaf) => {
                    let from = self.start - entry_start;
                    let to = self.end.min(entry_end) - entry_start;
                    self.start = entry_start + to;
                    let offset = match leaf.target {
                        Target::Chunk { skip, .. } => skip as u64 + from,
                        _ => from,
                    };
                    return Ok(Some(Piece {
                        target: leaf.target,
                        offset,
                        len: to - from,
                    }));
                }
                Err(child) => {
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(TreeError::TooDeep.into());
                    }
                    let node = s.load(child.node, child.len).await?;
                    self.stack.push(Frame {
                        node,
                        idx: 0,
                        pos: entry_start,
                    });
                }
            }
        }
    }
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Appends `l` to `out`, merged into the last leaf when they are contiguous pieces of the same
/// thing; empty leaves are dropped.
fn push_merged(out: &mut Vec<Leaf>, l: Leaf) {
    if l.len == 0 {
        return;
    }
    if let Some(last) = out.last_mut() {
        if last.try_merge(&l) {
            return;
        }
    }
    out.push(l);
}

/// Copy-on-write splice: replaces bytes `[start, end)` of the tree at `root` with `insert` and
/// returns the new root. Nodes off the path are shared with the old tree. `root` may be `None`
/// (empty content); `end` must not pass the content's end (append zeros first to grow).
pub async fn splice<S: NodeStore>(
    s: &S,
    root: Option<Child>,
    start: u64,
    end: u64,
    insert: Vec<Leaf>,
) -> Result<Option<Child>, S::Error> {
    TreeError::check_range(start, end, root.map_or(0, |r| r.len))?;
    let Some(r) = root else {
        let mut b = TreeBuilder::new();
        for l in insert {
            b.push_leaf(s, l).await?;
        }
        return b.finish(s).await;
    };
    let mut children = splice_node(s, r, start, end, Some(insert), 0).await?;
    while children.len() > 1 {
        children = pack_children(s, children).await?;
    }
    Ok(children.pop())
}

async fn pack_children<S: NodeStore>(s: &S, children: Vec<Child>) -> Result<Vec<Child>, S::Error> {
    let mut out = Vec::with_capacity(children.len().div_ceil(s.fanout()));
    for group in even_groups(&children, s.fanout()) {
        out.push(store_node(s, TreeNode::Children(group.to_vec())).await?);
    }
    Ok(out)
}

/// Splices inside the subtree `at`; returns the children that replace it (zero or more).
/// `insert` is `Some` for the one subtree that receives the new leaves.
fn splice_node<'a, S: NodeStore>(
    s: &'a S,
    at: Child,
    start: u64,
    end: u64,
    insert: Option<Vec<Leaf>>,
    depth: usize,
) -> BoxFut<'a, Result<Vec<Child>, S::Error>> {
    Box::pin(async move {
        if depth >= MAX_DEPTH {
            return Err(TreeError::TooDeep.into());
        }
        let insert_len: u64 = insert.iter().flatten().map(|l| l.len).sum();
        if start == 0 && end == at.len && insert_len == 0 {
            return Ok(Vec::new());
        }
        match s.load(at.node, at.len).await? {
            TreeNode::Leaves(leaves) => {
                let mut out: Vec<Leaf> = Vec::with_capacity(leaves.len() + 2);
                let mut pos = 0;
                let mut pending = insert;
                for leaf in leaves {
                    let (ls, le) = (pos, pos + leaf.len);
                    pos = le;
                    if ls < start {
                        push_merged(&mut out, leaf.slice(0, start.min(le) - ls));
                    }
                    if le >= start {
                        if let Some(new) = pending.take() {
                            new.into_iter().for_each(|l| push_merged(&mut out, l));
                        }
                    }
                    if le > end {
                        let from = end.max(ls) - ls;
                        push_merged(&mut out, leaf.slice(from, leaf.len - from));
                    }
                }
                if let Some(new) = pending.take() {
                    new.into_iter().for_each(|l| push_merged(&mut out, l));
                }
                let mut children = Vec::with_capacity(out.len().div_ceil(s.fanout()));
                for group in even_groups(&out, s.fanout()) {
                    children.push(store_node(s, TreeNode::Leaves(group.to_vec())).await?);
                }
                Ok(children)
            }
            TreeNode::Children(kids) => {
                let count = kids.len();
                let mut out = Vec::with_capacity(count + 2);
                let mut pos = 0;
                let mut pending = insert;
                for (i, kid) in kids.into_iter().enumerate() {
                    let (cs, ce) = (pos, pos + kid.len);
                    pos = ce;
                    // The insertion lands in the first child that reaches past `start`, or the
                    // last child when inserting at the very end.
                    let gets_insert = pending.is_some() && (ce > start || i + 1 == count);
                    let overlaps = cs < end && ce > start;
                    if !overlaps && !gets_insert {
                        out.push(kid);
                        continue;
                    }
                    let ins = if gets_insert { pending.take() } else { None };
                    let (ls, le) = (start.max(cs).min(ce) - cs, end.min(ce).max(cs) - cs);
                    out.extend(splice_node(s, kid, ls, le, ins, depth + 1).await?);
                }
                if out.len() > s.fanout().clamp(2, FANOUT) {
                    return pack_children(s, out).await;
                }
                if out.is_empty() {
                    return Ok(out);
                }
                Ok(vec![store_node(s, TreeNode::Children(out)).await?])
            }
        }
    })
}

/// One edit of [`overwrite`]: the bytes from `at` on become `leaves` (as many bytes as they
/// cover).
#[derive(Clone, Debug)]
pub struct Overwrite {
    /// Where the edit starts.
    pub at: u64,
    /// What replaces the bytes there.
    pub leaves: Vec<Leaf>,
}

impl Overwrite {
    fn len(&self) -> u64 {
        self.leaves.iter().map(|l| l.len).sum()
    }
}

/// `[from, from + len)` of the bytes `leaves` cover, as leaves.
fn slice_leaves(leaves: &[Leaf], from: u64, len: u64) -> Vec<Leaf> {
    let mut out = Vec::new();
    let (end, mut pos) = (from + len, 0);
    for l in leaves {
        let (ls, le) = (pos, pos + l.len);
        pos = le;
        if le <= from || ls >= end {
            continue;
        }
        let (a, b) = (from.max(ls), end.min(le));
        out.push(l.slice(a - ls, b - a));
    }
    out
}

/// Copy-on-write overwrite of many ranges at once: each edit replaces as many bytes as its
/// leaves cover, so the content keeps its length. Every node is loaded and rewritten at most
/// once whatever the number of edits (a splice per edit would rewrite the path to the root
/// once per edit); nodes no edit reaches are shared with the old tree. Edits must be in
/// order, not overlap, and end inside the content.
pub async fn overwrite<S: NodeStore>(
    s: &S,
    root: Child,
    edits: Vec<Overwrite>,
) -> Result<Child, S::Error> {
    let mut end = 0;
    let mut kept = Vec::with_capacity(edits.len());
    for e in edits {
        let len = e.len();
        if e.at < end || e.at.checked_add(len).is_none_or(|x| x > root.len) {
            return Err(TreeError::OutOfRange {
                start: e.at,
                end: e.at.saturating_add(len),
                len: root.len,
            }
            .into());
        }
        if len > 0 {
            end = e.at + len;
            kept.push(e);
        }
    }
    if kept.is_empty() {
        return Ok(root);
    }
    let mut children = overwrite_node(s, root, kept, 0).await?;
    while children.len() > 1 {
        children = pack_children(s, children).await?;
    }
    children
        .pop()
        .ok_or_else(|| TreeError::Corrupt("an overwrite emptied the tree".into()).into())
}

/// Applies `edits` (offsets relative to the subtree `at`, in order, inside it) to the subtree;
/// returns the children that replace it.
fn overwrite_node<'a, S: NodeStore>(
    s: &'a S,
    at: Child,
    edits: Vec<Overwrite>,
    depth: usize,
) -> BoxFut<'a, Result<Vec<Child>, S::Error>> {
    Box::pin(async move {
        if depth >= MAX_DEPTH {
            return Err(TreeError::TooDeep.into());
        }
        match s.load(at.node, at.len).await? {
            TreeNode::Leaves(leaves) => {
                let mut out: Vec<Leaf> = Vec::with_capacity(leaves.len() + 2 * edits.len());
                // Old leaves and edits both cover [0, at.len) in order: walk the old leaves,
                // keeping what lies outside the edits and putting each edit in at its start.
                let mut edits = edits.into_iter().peekable();
                let (mut pos, mut covered_to) = (0, 0);
                for leaf in leaves {
                    let (ls, le) = (pos, pos + leaf.len);
                    pos = le;
                    let mut cur = ls.max(covered_to);
                    while cur < le {
                        match edits.next_if(|e| e.at < le) {
                            Some(e) => {
                                if e.at > cur {
                                    push_merged(&mut out, leaf.slice(cur - ls, e.at - cur));
                                }
                                covered_to = e.at + e.len();
                                cur = covered_to;
                                e.leaves.into_iter().for_each(|l| push_merged(&mut out, l));
                            }
                            None => {
                                push_merged(&mut out, leaf.slice(cur - ls, le - cur));
                                cur = le;
                            }
                        }
                    }
                }
                let mut children = Vec::with_capacity(out.len().div_ceil(s.fanout()));
                for group in even_groups(&out, s.fanout()) {
                    children.push(store_node(s, TreeNode::Leaves(group.to_vec())).await?);
                }
                Ok(children)
            }
            TreeNode::Children(kids) => {
                let mut out = Vec::with_capacity(kids.len() + 2);
                let mut edits = edits.into_iter().peekable();
                // The part of an edit that runs past the child it started in.
                let mut carry: Option<Overwrite> = None;
                let mut pos = 0;
                for kid in kids {
                    let (cs, ce) = (pos, pos + kid.len);
                    pos = ce;
                    let mut mine: Vec<Overwrite> = Vec::new();
                    loop {
                        let e = match carry.take() {
                            Some(e) => e,
                            None => match edits.peek() {
                                Some(e) if e.at < ce => edits.next().expect("peeked"),
                                _ => break,
                            },
                        };
                        let len = e.len();
                        if e.at + len <= ce {
                            mine.push(Overwrite {
                                at: e.at - cs,
                                leaves: e.leaves,
                            });
                        } else {
                            let head = ce - e.at;
                            mine.push(Overwrite {
                                at: e.at - cs,
                                leaves: slice_leaves(&e.leaves, 0, head),
                            });
                            carry = Some(Overwrite {
                                at: ce,
                                leaves: slice_leaves(&e.leaves, head, len - head),
                            });
                            break;
                        }
                    }
                    if mine.is_empty() {
                        out.push(kid);
                    } else {
                        out.extend(overwrite_node(s, kid, mine, depth + 1).await?);
                    }
                }
                if out.len() > s.fanout().clamp(2, FANOUT) {
                    return pack_children(s, out).await;
                }
                Ok(vec![store_node(s, TreeNode::Children(out)).await?])
            }
        }
    })
}

mod reuse;
pub use reuse::last_leaf;

#[cfg(test)]
mod tests;
