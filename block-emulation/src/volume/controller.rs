//! One task per open volume: it owns the volume's write-back buffer, its committed tree and
//! its commits. Front ends talk to it through a [`Volume`] handle; a failure inside one
//! controller (a store error, a refused commit) is reported to that volume's requests only.
//!
//! Writes are acknowledged once buffered. A commit takes the whole buffer, stores its extents
//! (all-zero ones are not stored), splices them into the tree copy-on-write and applies the
//! new version on the condition that the previous one is still current; flushes wait for the
//! commit that covers every write acknowledged before them. While a commit runs, new writes
//! go to a fresh buffer, and reads see the committed tree under the committing buffer under
//! the fresh one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cairn_client::{tree_etag, Client, ClientError, Hashed, WriteCondition};
use cairn_core::extent::{
    overwrite, splice, Child, Leaf, NodeStore, Overwrite, Target, TreeError, TreeNode,
};
use cairn_core::metrics::Histogram;
use cairn_core::{ChunkId, ChunkIdMap, ChunkIdSet};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::budget::DirtyBudget;
use super::chunkcache::ChunkCache;
use super::overlay::{Overlay, Seg};
use super::VOLUME_BUCKET;
use crate::device::{Allocation, BlockDevice, BlockError};
use cairn_client::nodecache::NodeCache;

/// Largest single read or write a front end may ask for.
pub const MAX_IO: u64 = 32 << 20;
/// Entries of the tree nodes a commit writes. A commit rewrites every node its writes land in,
/// so small nodes keep a flush of a few scattered 4 KiB writes cheap; 64 was the best of 32,
/// 64, 128 and 512 for flushed random writes, with reads unchanged (BENCHMARKS.md). Trees
/// built otherwise (a restore, a clone) keep their nodes until a commit rewrites them.
const VOLUME_NODE_FANOUT: usize = 64;
/// Decoded tree node entries a volume keeps per generation (about 48 bytes each: two
/// generations bound the cache near 48 MiB; a 1 GiB volume cut into 4 KiB pieces everywhere
/// has 262,144 leaf entries).
const NODE_CACHE_ENTRIES: usize = 512 << 10;
/// Default bound of the chunk cache shared by a site's volumes when the machine's memory is
/// not known (see [`chunk_cache_for_memory`]).
pub const DEFAULT_CHUNK_CACHE_BYTES: u64 = 256 << 20;

/// Default write-back budget of a site's volumes when the machine's memory is not known (see
/// [`dirty_for_memory`]).
pub const DEFAULT_DIRTY_BYTES: u64 = 64 << 20;

/// The write-back budget a machine with `mem_total` bytes of memory gets by default: an
/// eighth of it, between 64 MiB and 4 GiB, shared by every volume (a page cache lets dirty
/// pages take a fifth of memory by default). A volume rewritten faster than it commits
/// absorbs the rewrites there, as a file does in the page cache.
pub fn dirty_for_memory(mem_total: u64) -> u64 {
    (mem_total / 8).clamp(64 << 20, 4 << 30)
}

/// Most a volume buffers before it commits in the background (less when the budget is small).
const COMMIT_AFTER_BYTES: u64 = 64 << 20;

/// The chunk cache a machine with `mem_total` bytes of memory gets by default: an eighth of
/// it, between 64 MiB and 4 GiB (a storage node's caches usually take a share of its memory,
/// as a page cache would; the rest stays for the stores and the requests). An eighth, because
/// a volume's reads are only as fast as memory when its live data fits: a 1 GiB volume after
/// random 4 KiB writes holds about 1.5 GiB of live pieces (BENCHMARKS.md).
pub fn chunk_cache_for_memory(mem_total: u64) -> u64 {
    (mem_total / 8).clamp(64 << 20, 4 << 30)
}

type Reply<T> = oneshot::Sender<Result<T, BlockError>>;

/// Requests to a volume's controller (reads and buffered writes do not go through it).
enum Cmd {
    /// The buffer passed half its bound: commit now if no commit runs.
    Kick,
    Flush {
        reply: Reply<()>,
    },
    Resize {
        size: u64,
        reply: Reply<()>,
    },
}

/// How a controller buffers and commits.
#[derive(Clone, Debug)]
pub struct VolumeConfig {
    /// A volume with buffered writes commits at least this often.
    pub commit_interval: Duration,
    /// Most written bytes all volumes together buffer; writers wait (their acknowledgement
    /// is held) while they are over it. A volume commits in the background once it buffers
    /// half of it or 64 MiB, whichever is less, and every volume does past half of it.
    pub max_dirty_bytes: u64,
    /// Bytes of recently read and written chunks kept in memory for all volumes together
    /// (0: none).
    pub chunk_cache_bytes: u64,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            commit_interval: Duration::from_secs(1),
            max_dirty_bytes: DEFAULT_DIRTY_BYTES,
            chunk_cache_bytes: DEFAULT_CHUNK_CACHE_BYTES,
        }
    }
}

/// Counters of one volume since the process started, shared by its handles and its
/// controller (and kept when the volume is closed and opened again).
#[derive(Debug)]
pub struct VolumeStats {
    /// Read latency (seconds, from the request to the data).
    pub read_latency: Histogram,
    /// Write latency (seconds, until acknowledged: buffered, or durable with FUA).
    pub write_latency: Histogram,
    /// Flush latency (seconds, until everything acknowledged before is durable).
    pub flush_latency: Histogram,
    /// Commit duration (seconds: extents stored, tree spliced, version applied).
    pub commit_latency: Histogram,
    /// Current size in bytes.
    pub size: AtomicU64,
    /// Read requests.
    pub reads: AtomicU64,
    /// Bytes read.
    pub read_bytes: AtomicU64,
    /// Write requests (data writes).
    pub writes: AtomicU64,
    /// Bytes written.
    pub write_bytes: AtomicU64,
    /// Flush requests.
    pub flushes: AtomicU64,
    /// Trim and write-zeroes requests.
    pub discards: AtomicU64,
    /// Versions committed.
    pub commits: AtomicU64,
    /// Commits that failed (their writes stayed buffered).
    pub commit_errors: AtomicU64,
    /// Commits started on the tree of the commit before them while that one was still being
    /// stored and applied.
    pub commits_overlapped: AtomicU64,
    /// Written bytes buffered and not yet committed.
    pub dirty_bytes: AtomicU64,
}

impl Default for VolumeStats {
    fn default() -> Self {
        VolumeStats {
            read_latency: Histogram::latency(),
            write_latency: Histogram::latency(),
            flush_latency: Histogram::latency(),
            commit_latency: Histogram::latency(),
            size: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            read_bytes: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            write_bytes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            discards: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commit_errors: AtomicU64::new(0),
            commits_overlapped: AtomicU64::new(0),
            dirty_bytes: AtomicU64::new(0),
        }
    }
}

/// What reads, buffered writes and the controller share, changed under one short lock: the
/// committed tree and the buffered writes laid over it. A write is in `dirty` before it is
/// acknowledged, and a commit moves the tree and drops its `flushing` entry in one step, so a read
/// taken under the lock sees every acknowledged write exactly once.
struct State {
    /// The tree of the newest committed version.
    root: Child,
    /// Writes since the newest running commit began.
    dirty: Overlay,
    /// The writes of the running commits, oldest first (each commit builds on the tree of
    /// the one before it).
    flushing: Vec<Arc<Overlay>>,
    /// Another writer committed this volume: writes are refused from now on.
    fenced: Option<String>,
}

impl State {
    fn buffered(&self) -> u64 {
        self.dirty.data_bytes() + self.flushing.iter().map(|f| f.data_bytes()).sum::<u64>()
    }

    /// The buffered pieces of `[start, end)` to lay over the committed tree, oldest first.
    fn layers(&self, start: u64, end: u64) -> Overlay {
        let mut o = Overlay::default();
        for f in &self.flushing {
            for (s, seg) in f.pieces(start, end) {
                o.insert(s, seg);
            }
        }
        for (s, seg) in self.dirty.pieces(start, end) {
            o.insert(s, seg);
        }
        o
    }
}

/// A volume's state and what serves it, shared by its handles and its controller.
struct Core {
    client: Client,
    state: Mutex<State>,
    /// Decoded tree nodes, shared by reads, maps and commits.
    nodes: NodeCache,
    /// Chunk bytes, shared with the site's other volumes.
    chunks: Arc<ChunkCache>,
    stats: Arc<VolumeStats>,
    /// The write-back budget shared with the site's other volumes.
    budget: Arc<DirtyBudget>,
    /// This volume commits in the background once it buffers this much.
    commit_after: u64,
}

impl Core {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this volume, buffering `dirty` bytes not yet committing, should commit now.
    fn should_commit(&self, dirty: u64) -> bool {
        dirty > 0 && (dirty > self.commit_after || self.budget.pressing())
    }
}

/// An open volume: a handle on its controller task. Cloned handles share the controller; the
/// controller commits what is buffered and ends when the last handle is dropped.
pub struct Volume {
    name: String,
    block_size: u32,
    core: Arc<Core>,
    tx: mpsc::Sender<Cmd>,
}

/// What a controller starts from.
pub(crate) struct Start {
    pub name: String,
    pub key: String,
    pub block_size: u32,
    pub extent_size: u32,
    pub root: Child,
    pub etag: String,
    pub meta: BTreeMap<String, String>,
}

/// Starts the controller of a volume; `exited` turns true once it has committed what it held
/// and ended.
pub(crate) fn spawn(
    client: Client,
    start: Start,
    config: VolumeConfig,
    stats: Arc<VolumeStats>,
    chunks: Arc<ChunkCache>,
    budget: Arc<DirtyBudget>,
) -> (Arc<Volume>, watch::Receiver<bool>) {
    let (tx, rx) = mpsc::channel(1024);
    stats.size.store(start.root.len, Ordering::Relaxed);
    let (exit_tx, exit_rx) = watch::channel(false);
    let core = Arc::new(Core {
        client,
        state: Mutex::new(State {
            root: start.root,
            dirty: Overlay::default(),
            flushing: Vec::new(),
            fenced: None,
        }),
        nodes: NodeCache::new(NODE_CACHE_ENTRIES),
        chunks,
        stats,
        commit_after: (config.max_dirty_bytes / 2).min(COMMIT_AFTER_BYTES),
        budget,
    });
    let volume = Arc::new(Volume {
        name: start.name.clone(),
        block_size: start.block_size,
        core: core.clone(),
        tx,
    });
    let ctl = Controller {
        core,
        key: start.key,
        name: start.name,
        meta: start.meta,
        extent: u64::from(start.extent_size),
        config,
        etag: start.etag,
        running: VecDeque::new(),
        on_next: Vec::new(),
    };
    tokio::spawn(async move {
        ctl.run(rx).await;
        let _ = exit_tx.send(true);
    });
    (volume, exit_rx)
}

type CommitResult = Result<(Child, String), ClientError>;

/// Commits under way at once at most: the next one builds its tree on the running one's and
/// stores its chunks while that one's version is applied, so a stream of flushes does not
/// wait for each commit's two durable writes in turn.
const MAX_RUNNING: usize = 2;

/// The tree a commit built, and its new nodes (not stored yet when the next commit starts
/// from them).
type Built = (Child, Arc<ChunkIdMap<TreeNode>>);

/// A commit under way.
struct Running {
    task: JoinHandle<CommitResult>,
    /// The tree it builds: known once built (the next commit starts from it).
    root: Option<Built>,
    built: Option<oneshot::Receiver<Built>>,
    /// Its new ETag once applied (the next commit's condition), for the next commit to take.
    etag: Option<oneshot::Receiver<String>>,
    /// Flushes answered when it ends.
    replies: Vec<Reply<()>>,
}

impl Running {
    /// The tree this commit builds, waiting for it if needed; `None` if it failed first.
    async fn root(&mut self) -> Option<Built> {
        if self.root.is_none() {
            self.root = self.built.take()?.await.ok();
        }
        self.root.clone()
    }
}

/// The version a commit's apply is conditioned on.
enum Prev {
    /// The newest committed version's ETag.
    Committed(String),
    /// The ETag the running commit before this one will apply (the sender is dropped if it
    /// fails, and this commit then fails without applying anything).
    After(oneshot::Receiver<String>),
}

struct Controller {
    core: Arc<Core>,
    key: String,
    name: String,
    meta: BTreeMap<String, String>,
    extent: u64,
    config: VolumeConfig,
    /// The ETag of the newest committed version.
    etag: String,
    /// Running commits, oldest first.
    running: VecDeque<Running>,
    /// Flushes (and FUA writes) that need the next commit.
    on_next: Vec<Reply<()>>,
}

async fn wait_oldest(running: &mut VecDeque<Running>) -> CommitResult {
    match running.front_mut() {
        Some(r) => match (&mut r.task).await {
            Ok(res) => res,
            Err(e) => Err(ClientError::Storage(format!(
                "volume commit task failed: {e}"
            ))),
        },
        None => std::future::pending().await,
    }
}

fn block_error(e: ClientError) -> BlockError {
    match e {
        // A bucket quota is out of space for the volume's writes as well.
        ClientError::NoSpace(m) | ClientError::QuotaExceeded(m) => BlockError::NoSpace(m),
        e => BlockError::Io(e.to_string()),
    }
}

impl Controller {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut tick = tokio::time::interval(self.config.commit_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let committing = !self.running.is_empty();
            tokio::select! {
                res = wait_oldest(&mut self.running), if committing => self.commit_done(res, true).await,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => break,
                },
                _ = tick.tick() => {
                    if !committing && !self.dirty_is_empty() {
                        self.start_commit().await;
                    }
                }
            }
        }
        // Every handle is gone: commit what is buffered before ending.
        self.settle().await;
        if !self.dirty_is_empty() {
            self.start_commit().await;
            self.settle().await;
        }
        let left = {
            let st = self.core.state();
            self.core.budget.change(st.buffered(), 0);
            st.dirty.data_bytes()
        };
        if left > 0 {
            tracing::error!(volume = %self.name, bytes = left,
                "volume closed with writes that could not be committed");
        }
    }

    fn dirty_is_empty(&self) -> bool {
        self.core.state().dirty.is_empty()
    }

    /// Waits for every running commit.
    async fn settle(&mut self) {
        while !self.running.is_empty() {
            let res = wait_oldest(&mut self.running).await;
            self.commit_done(res, false).await;
        }
    }

    async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Kick => {
                if self.running.is_empty() {
                    self.start_commit().await;
                }
            }
            Cmd::Flush { reply } => {
                if self.dirty_is_empty() {
                    match self.running.back_mut() {
                        Some(last) => last.replies.push(reply),
                        None => {
                            let _ = reply.send(Ok(()));
                        }
                    }
                } else {
                    self.on_next.push(reply);
                    if self.running.len() < MAX_RUNNING {
                        self.start_commit().await;
                    }
                }
            }
            Cmd::Resize { size, reply } => {
                let _ = reply.send(self.resize(size).await);
            }
        }
    }

    /// Starts a commit of what is buffered, on the newest running commit's tree if one runs
    /// (at most [`MAX_RUNNING`] at once; the caller checks).
    async fn start_commit(&mut self) {
        debug_assert!(self.running.len() < MAX_RUNNING);
        let prev = match self.running.back_mut() {
            Some(last) => match (last.root().await, last.etag.take()) {
                (Some((root, nodes)), Some(etag)) => Some((root, Some(nodes), Prev::After(etag))),
                // It failed before building its tree (its end says so), or a commit already
                // builds on it: the next one starts after it ends.
                _ => return,
            },
            None => None,
        };
        let (snap, root, parent, prev) = {
            let mut st = self.core.state();
            if st.dirty.is_empty() {
                drop(st);
                match self.running.back_mut() {
                    Some(last) => last.replies.append(&mut self.on_next),
                    None => {
                        for r in self.on_next.drain(..) {
                            let _ = r.send(Ok(()));
                        }
                    }
                }
                return;
            }
            let snap = Arc::new(std::mem::take(&mut st.dirty));
            st.flushing.push(snap.clone());
            let (root, parent, prev) =
                prev.unwrap_or((st.root, None, Prev::Committed(self.etag.clone())));
            (snap, root, parent, prev)
        };
        if parent.is_some() {
            self.core
                .stats
                .commits_overlapped
                .fetch_add(1, Ordering::Relaxed);
        }
        let (built_tx, built_rx) = oneshot::channel();
        let (etag_tx, etag_rx) = oneshot::channel();
        let job = CommitJob {
            core: self.core.clone(),
            key: self.key.clone(),
            meta: self.meta.clone(),
            extent: self.extent,
            root,
            parent,
            prev,
            built: Some(built_tx),
            applied: Some(etag_tx),
        };
        let stats = self.core.stats.clone();
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = job.run(snap).await;
            stats.commit_latency.observe_duration(started.elapsed());
            r
        });
        self.running.push_back(Running {
            task,
            root: None,
            built: Some(built_rx),
            etag: Some(etag_rx),
            replies: std::mem::take(&mut self.on_next),
        });
    }

    /// The oldest running commit ended with `res`. A failed one fails every commit started
    /// on its tree too; their writes go back into the buffer under the newer ones.
    async fn commit_done(&mut self, res: CommitResult, go_on: bool) {
        let Some(done) = self.running.pop_front() else {
            return;
        };
        let stats = &self.core.stats;
        let mut failed = vec![done];
        let (outcome, pressing) = {
            let mut st = self.core.state();
            let before = st.buffered();
            let outcome = match res {
                Ok((root, etag)) => {
                    st.root = root;
                    st.flushing.remove(0);
                    self.etag = etag;
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => {
                    stats.commit_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(volume = %self.name, error = %e, "volume commit failed; its writes stay buffered");
                    let mut back = Overlay::default();
                    for f in st.flushing.drain(..) {
                        let newer = Arc::try_unwrap(f).unwrap_or_else(|a| (*a).clone());
                        back = newer.over(back);
                    }
                    st.dirty = std::mem::take(&mut st.dirty).over(back);
                    failed.extend(self.running.drain(..));
                    if matches!(e, ClientError::PreconditionFailed) {
                        st.fenced = Some(format!(
                            "volume {} was changed by another writer; reopen it",
                            self.name
                        ));
                    }
                    Err(block_error(e))
                }
            };
            let after = st.buffered();
            stats.dirty_bytes.store(after, Ordering::Relaxed);
            self.core.budget.change(before, after);
            (outcome, self.core.should_commit(st.dirty.data_bytes()))
        };
        for (i, r) in failed.into_iter().enumerate() {
            if i > 0 {
                // Built on the failed one: it cannot apply (its condition never comes), and
                // its writes are back in the buffer.
                r.task.abort();
            }
            for reply in r.replies {
                let _ = reply.send(outcome.clone());
            }
        }
        // After a failure the next tick retries, so a store that keeps failing is not spun on.
        if go_on
            && outcome.is_ok()
            && self.running.len() < MAX_RUNNING
            && (!self.on_next.is_empty() || (pressing && self.running.is_empty()))
        {
            self.start_commit().await;
        }
    }

    /// Commits what is buffered, then grows or shrinks the tree to `size`.
    async fn resize(&mut self, size: u64) -> Result<(), BlockError> {
        if let Some(why) = &self.core.state().fenced {
            return Err(BlockError::Io(why.clone()));
        }
        self.settle().await;
        if !self.dirty_is_empty() {
            self.start_commit().await;
            self.settle().await;
            if !self.dirty_is_empty() {
                return Err(BlockError::Io(
                    "the volume's buffered writes could not be committed; resize not done".into(),
                ));
            }
        }
        let root = self.core.state().root;
        let len = root.len;
        let c = &self.core.client;
        let new = if size > len {
            splice(c, Some(root), len, len, vec![Leaf::zeros(size - len)]).await
        } else {
            splice(c, Some(root), size, len, Vec::new()).await
        }
        .map_err(block_error)?
        .ok_or_else(|| BlockError::Invalid("a volume cannot shrink to nothing".into()))?;
        let put = c
            .put_tree(
                VOLUME_BUCKET,
                &self.key,
                new,
                self.meta.clone(),
                Some(WriteCondition::IfMatch(self.etag.clone())),
            )
            .await
            .map_err(block_error)?;
        self.etag = put.manifest.etag;
        let mut st = self.core.state();
        st.root = new;
        if size < len {
            // Writes buffered while the tree shrank (they passed the old size check) are cut
            // at the new end.
            let before = st.buffered();
            let kept = st.dirty.pieces(0, size);
            st.dirty = Overlay::default();
            for (s, seg) in kept {
                st.dirty.insert(s, seg);
            }
            self.core.budget.change(before, st.buffered());
        }
        self.core.stats.size.store(size, Ordering::Relaxed);
        Ok(())
    }
}

/// One commit: the buffered writes become a new version.
struct CommitJob {
    core: Arc<Core>,
    key: String,
    meta: BTreeMap<String, String>,
    extent: u64,
    /// The tree the writes go onto.
    root: Child,
    /// That tree's nodes still being stored by the running commit that built it.
    parent: Option<Arc<ChunkIdMap<TreeNode>>>,
    prev: Prev,
    /// Told the new tree once built.
    built: Option<oneshot::Sender<Built>>,
    /// Told the new ETag once applied.
    applied: Option<oneshot::Sender<String>>,
}

/// A contiguous run of buffered writes: start, end and its segments.
type Run = (u64, u64, Vec<(u64, Seg)>);

/// The tree nodes a commit's splices write, kept in memory until [`Staged::persist`] stores
/// the ones the final root reaches; loads see staged nodes first, then the store.
struct Staged<'a> {
    client: &'a Client,
    cache: &'a NodeCache,
    /// Nodes of the tree this commit starts from that the commit before it is storing.
    parent: Option<&'a ChunkIdMap<TreeNode>>,
    nodes: Mutex<ChunkIdMap<Vec<u8>>>,
    /// Chunks the stored leaf nodes this commit rewrites refer to.
    old_chunks: Mutex<ChunkIdSet>,
}

impl Staged<'_> {
    fn staged(&self, id: &ChunkId) -> Option<Vec<u8>> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.get(id).cloned()
    }

    /// The bytes of every staged node reachable from `root` (a staged node's children are
    /// staged or already stored), with the node decoded.
    fn reachable(&self, root: Child) -> Result<Vec<(ChunkId, Bytes, TreeNode)>, ClientError> {
        let mut todo = vec![root];
        let mut out = Vec::new();
        while let Some(c) = todo.pop() {
            let Some(bytes) = self.staged(&c.node) else {
                continue;
            };
            let node = TreeNode::decode_checked(&bytes, c.len)?;
            if let TreeNode::Children(kids) = &node {
                todo.extend(kids.iter().copied());
            }
            out.push((c.node, Bytes::from(bytes), node));
        }
        Ok(out)
    }
}

impl NodeStore for Staged<'_> {
    type Error = ClientError;

    async fn load(&self, id: ChunkId, len: u64) -> Result<TreeNode, ClientError> {
        match self.staged(&id) {
            Some(bytes) => Ok(TreeNode::decode_checked(&bytes, len)?),
            None => {
                let node = match self.parent.and_then(|p| p.get(&id)) {
                    Some(n) if n.len() == len => n.clone(),
                    Some(_) => {
                        return Err(TreeError::Corrupt(format!(
                            "node {id} does not cover the {len} bytes its parent says"
                        ))
                        .into())
                    }
                    None => self.cache.load(self.client, id, len).await?,
                };
                if let TreeNode::Leaves(_) = &node {
                    let mut old = self.old_chunks.lock().unwrap_or_else(|e| e.into_inner());
                    old.extend(node.referenced_chunks());
                }
                Ok(node)
            }
        }
    }

    async fn store(&self, id: ChunkId, bytes: Vec<u8>) -> Result<(), ClientError> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.insert(id, bytes);
        Ok(())
    }

    fn fanout(&self) -> usize {
        VOLUME_NODE_FANOUT
    }
}

/// What one extent-aligned window of a commit becomes.
enum Window {
    Zeros(u64),
    Data(Bytes),
}

impl CommitJob {
    async fn run(mut self, writes: Arc<Overlay>) -> CommitResult {
        // Contiguous runs of buffered writes, each cut at extent boundaries into windows.
        let mut runs: Vec<(u64, u64, Vec<Window>)> = Vec::new();
        let mut cur: Option<Run> = None;
        for (s, seg) in writes.iter() {
            match &mut cur {
                Some((_, e, segs)) if *e == s => {
                    *e = s + seg.len();
                    segs.push((s, seg.clone()));
                }
                _ => {
                    if let Some((rs, re, segs)) = cur.take() {
                        runs.push((rs, re, self.windows(rs, re, &segs)));
                    }
                    cur = Some((s, s + seg.len(), vec![(s, seg.clone())]));
                }
            }
        }
        if let Some((rs, re, segs)) = cur.take() {
            runs.push((rs, re, self.windows(rs, re, &segs)));
        }
        // The data windows' leaves come first, from their hashes alone, so the new tree can be
        // built before anything is stored; then extents and the new tree nodes are stored
        // together (in groups, one durable write each on a local store: a small commit costs
        // one sync there, and one more for the version).
        let client = &self.core.client;
        let counts: Vec<usize> = runs.iter().map(|(_, _, w)| w.len()).collect();
        let windows: Vec<Window> = runs
            .iter_mut()
            .flat_map(|(_, _, w)| std::mem::take(w))
            .collect();
        let data: Vec<Bytes> = windows
            .iter()
            .filter_map(|w| match w {
                Window::Data(b) => Some(b.clone()),
                Window::Zeros(_) => None,
            })
            .collect();
        let to_hash = data.clone();
        let hashed = tokio::task::spawn_blocking(move || {
            to_hash
                .iter()
                .map(|b| {
                    let len = b.len() as u64;
                    if b.iter().all(|&x| x == 0) {
                        Leaf::zeros(len)
                    } else {
                        Leaf::chunk(ChunkId::of(b), len)
                    }
                })
                .collect::<Vec<Leaf>>()
        })
        .await
        .map_err(|e| ClientError::Storage(format!("hashing a volume's extents failed: {e}")))?;
        let mut data_leaves = hashed.iter().cloned();
        let mut leaves = Vec::with_capacity(windows.len());
        for w in windows {
            leaves.push(match w {
                Window::Zeros(n) => Leaf::zeros(n),
                Window::Data(_) => data_leaves
                    .next()
                    .ok_or_else(|| ClientError::Storage("an extent was not hashed".into()))?,
            });
        }
        let mut leaves = leaves.into_iter();
        let staged = Staged {
            client,
            cache: &self.core.nodes,
            parent: self.parent.as_deref(),
            nodes: Mutex::new(ChunkIdMap::default()),
            old_chunks: Mutex::new(ChunkIdSet::default()),
        };
        // One pass over the tree for all runs: each node on their paths is rewritten once.
        let edits: Vec<Overwrite> = runs
            .into_iter()
            .zip(counts)
            .map(|((at, _, _), n)| Overwrite {
                at,
                leaves: leaves.by_ref().take(n).collect(),
            })
            .collect();
        let spliced = overwrite(&staged, self.root, edits).await?;
        // Only the staged nodes the new root reaches are stored; they and the extents are
        // durable before the version is applied (I2). A node is a chunk named by the hash of
        // its bytes, like an extent, so both go through the same call, with the ids already
        // computed (nothing is hashed twice).
        let nodes = staged.reachable(spliced)?;
        // The next commit may start from this tree now, while this one stores it.
        if let Some(tx) = self.built.take() {
            let new: ChunkIdMap<TreeNode> =
                nodes.iter().map(|(id, _, n)| (*id, n.clone())).collect();
            let _ = tx.send((spliced, Arc::new(new)));
        }
        let written: Vec<(ChunkId, Bytes)> = hashed
            .iter()
            .zip(data)
            .filter_map(|(leaf, b)| match leaf.target {
                Target::Chunk { id, .. } => Some((id, b)),
                _ => None,
            })
            .collect();
        let extents = written.iter().map(|(id, b)| Hashed {
            id: *id,
            bytes: b.clone(),
            raw: false,
        });
        // Tree nodes are mostly chunk ids: compressing them costs a commit more than it saves.
        let tree = nodes.iter().map(|(id, b, _)| Hashed {
            id: *id,
            bytes: b.clone(),
            raw: true,
        });
        client
            .store_hashed_for(VOLUME_BUCKET, extents.chain(tree).collect())
            .await?;
        // The next commit and reads start from these nodes: keep them decoded; and what was
        // just written is what is likely read next. (Copied: a window may be a slice of a
        // much larger write buffer, which the cache must not keep alive.)
        // Extents the rewritten leaves referred to and the new ones do not were overwritten:
        // they leave the chunk cache at once instead of pushing out data still read (a
        // snapshot or another node of the tree may still hold one: it is read from the store).
        let mut gone = staged
            .old_chunks
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        for (id, _, node) in nodes {
            if let TreeNode::Leaves(_) = &node {
                for kept in node.referenced_chunks() {
                    gone.remove(&kept);
                }
            }
            self.core.nodes.insert_node(id, node);
        }
        self.core.chunks.forget(gone);
        for (id, b) in written {
            self.core.chunks.insert(id, Bytes::copy_from_slice(&b));
        }
        // The version goes after the one it builds on, and only if that one was applied.
        let etag = match self.prev {
            Prev::Committed(etag) => etag,
            Prev::After(rx) => rx.await.map_err(|_| {
                ClientError::Storage("the volume commit this one builds on failed".into())
            })?,
        };
        let etag = if spliced == self.root {
            etag
        } else {
            let put = client
                .put_tree(
                    VOLUME_BUCKET,
                    &self.key,
                    spliced,
                    self.meta,
                    Some(WriteCondition::IfMatch(etag)),
                )
                .await?;
            debug_assert_eq!(put.manifest.etag, tree_etag(&spliced));
            put.manifest.etag
        };
        if let Some(tx) = self.applied.take() {
            let _ = tx.send(etag.clone());
        }
        Ok((spliced, etag))
    }

    /// `[start, end)` (covered by `segs`, in order) cut at extent boundaries.
    fn windows(&self, start: u64, end: u64, segs: &[(u64, Seg)]) -> Vec<Window> {
        let mut out = Vec::new();
        let mut at = start;
        let mut i = 0;
        while at < end {
            let w_end = ((at / self.extent + 1) * self.extent).min(end);
            let mut pieces: Vec<(u64, Seg)> = Vec::new();
            while i < segs.len() {
                let (s, seg) = &segs[i];
                let se = s + seg.len();
                let (ps, pe) = ((*s).max(at), se.min(w_end));
                if ps < pe {
                    pieces.push((ps, seg.slice(ps - s, pe - ps)));
                }
                if se <= w_end {
                    i += 1;
                } else {
                    break;
                }
            }
            out.push(window(at, w_end, pieces));
            at = w_end;
        }
        out
    }
}

fn window(start: u64, end: u64, pieces: Vec<(u64, Seg)>) -> Window {
    if pieces.iter().all(|(_, s)| matches!(s, Seg::Zeros(_))) {
        return Window::Zeros(end - start);
    }
    if let [(_, Seg::Data(b))] = pieces.as_slice() {
        return Window::Data(b.clone());
    }
    let mut buf = BytesMut::zeroed((end - start) as usize);
    for (s, seg) in pieces {
        if let Seg::Data(b) = seg {
            let o = (s - start) as usize;
            buf[o..o + b.len()].copy_from_slice(&b);
        }
    }
    Window::Data(buf.freeze())
}

/// Zero bytes handed out for holes without allocating.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

fn zeros(len: usize) -> Bytes {
    if len <= ZEROS.len() {
        Bytes::from_static(&ZEROS[..len])
    } else {
        Bytes::from(vec![0u8; len])
    }
}

/// `[start, end)` of the committed tree at `root` as the pieces it is made of, in order (slices
/// of cached or fetched chunks, shared zeros; nothing copied), several chunks fetched at once.
async fn committed_pieces(
    core: &Core,
    root: Child,
    start: u64,
    end: u64,
) -> Result<Vec<Bytes>, ClientError> {
    let client = &core.client;
    let pieces = core.nodes.pieces(client, root, start, end).await?;
    let cut = |whole: &Bytes, off: usize, len: usize| match off.checked_add(len) {
        Some(e) if e <= whole.len() => Ok(whole.slice(off..e)),
        _ => Err(ClientError::Corrupt(format!(
            "a volume's tree reaches past the end of a {}-byte piece",
            whole.len()
        ))),
    };
    if let [p] = pieces.as_slice() {
        let (off, len) = (p.offset as usize, p.len as usize);
        let whole = match &p.target {
            Target::Zeros => return Ok(vec![zeros(len)]),
            Target::Inline(b) => b.clone(),
            Target::Chunk { id, .. } => match core.chunks.get(id) {
                Some(b) => b,
                None => {
                    let b = client.read_chunk_bytes(*id).await?;
                    core.chunks.insert(*id, b.clone());
                    b
                }
            },
        };
        return Ok(vec![cut(&whole, off, len)?]);
    }
    // Many pieces (a large read over small writes): the chunks the cache lacks are fetched
    // together, then every piece is cut from the cache's or the fetched bytes.
    let mut wanted = ChunkIdSet::default();
    let ids: Vec<ChunkId> = pieces
        .iter()
        .filter_map(|p| match p.target {
            Target::Chunk { id, .. } if wanted.insert(id) => Some(id),
            _ => None,
        })
        .collect();
    let mut fetched = ChunkIdMap::default();
    let mut missing: Vec<ChunkId> = Vec::new();
    for (id, hit) in ids.iter().zip(core.chunks.get_many(&ids)) {
        match hit {
            Some(b) => {
                fetched.insert(*id, b);
            }
            None => missing.push(*id),
        }
    }
    if !missing.is_empty() {
        let got = client.read_chunks(missing.clone()).await?;
        for (id, b) in missing.into_iter().zip(got) {
            core.chunks.insert(id, b.clone());
            fetched.insert(id, b);
        }
    }
    let mut out = Vec::with_capacity(pieces.len());
    for p in pieces {
        let (off, len) = (p.offset as usize, p.len as usize);
        out.push(match &p.target {
            Target::Zeros => zeros(len),
            Target::Inline(b) => cut(b, off, len)?,
            Target::Chunk { id, .. } => {
                let whole = fetched
                    .get(id)
                    .ok_or_else(|| ClientError::Storage(format!("chunk {id} was not read")))?;
                cut(whole, off, len)?
            }
        });
    }
    Ok(out)
}

/// The pieces of a read as one buffer (copied only when there are several).
fn joined(pieces: Vec<Bytes>) -> Bytes {
    if pieces.len() == 1 {
        return pieces.into_iter().next().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
    for p in &pieces {
        out.extend_from_slice(p);
    }
    out.freeze()
}

/// `[start, end)`: the committed tree with the buffered writes (`layers`) laid over it.
async fn read(
    core: &Core,
    root: Child,
    start: u64,
    end: u64,
    layers: Overlay,
) -> Result<Bytes, BlockError> {
    let mut buf = if layers.covers(start, end) {
        BytesMut::zeroed((end - start) as usize)
    } else {
        let pieces = committed_pieces(core, root, start, end)
            .await
            .map_err(block_error)?;
        let mut buf = BytesMut::with_capacity((end - start) as usize);
        for p in &pieces {
            buf.extend_from_slice(p);
        }
        buf
    };
    for (s, seg) in layers.iter() {
        let o = (s - start) as usize;
        let n = seg.len() as usize;
        match seg {
            Seg::Data(b) => buf[o..o + n].copy_from_slice(b),
            Seg::Zeros(_) => buf[o..o + n].fill(0),
        }
    }
    Ok(buf.freeze())
}

/// The allocation map of `[start, end)`: the committed tree's, with buffered data as data and
/// buffered zeros as holes.
async fn map(
    client: &Client,
    nodes: &NodeCache,
    root: Child,
    start: u64,
    end: u64,
    layers: Overlay,
) -> Result<Vec<Allocation>, BlockError> {
    let mut runs: Vec<(u64, u64, bool)> = Vec::new();
    let mut at = start;
    for r in client
        .map_tree_via(&nodes.over(client), root, start, end)
        .await
        .map_err(block_error)?
    {
        runs.push((at, at + r.len, r.hole));
        at += r.len;
    }
    for (s, seg) in layers.iter() {
        paint(&mut runs, s, s + seg.len(), matches!(seg, Seg::Zeros(_)));
    }
    let mut out: Vec<Allocation> = Vec::new();
    for (s, e, hole) in runs {
        match out.last_mut() {
            Some(last) if last.hole == hole => last.len += e - s,
            _ => out.push(Allocation { len: e - s, hole }),
        }
    }
    Ok(out)
}

/// Marks `[s, e)` of `runs` (ordered, contiguous) as `hole`.
fn paint(runs: &mut Vec<(u64, u64, bool)>, s: u64, e: u64, hole: bool) {
    let mut out = Vec::with_capacity(runs.len() + 2);
    let mut placed = false;
    for &(rs, re, h) in runs.iter() {
        if re <= s || rs >= e {
            if rs >= e && !placed {
                out.push((s, e, hole));
                placed = true;
            }
            out.push((rs, re, h));
            continue;
        }
        if rs < s {
            out.push((rs, s, h));
        }
        if !placed {
            out.push((s, e, hole));
            placed = true;
        }
        if re > e {
            out.push((e, re, h));
        }
    }
    if !placed {
        out.push((s, e, hole));
    }
    *runs = out;
}

impl Volume {
    /// The volume's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<VolumeStats> {
        &self.core.stats
    }

    fn gone(&self) -> BlockError {
        BlockError::Io(format!("volume {}'s controller has stopped", self.name))
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, BlockError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Checks that `[offset, offset + len)` is inside the volume. Any byte range is served
    /// (the buffer and the tree are byte-granular; NBD clients that did not ask for the block
    /// size may send unaligned requests), block-aligned ones without any copying.
    fn check(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        let size = self.size();
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(BlockError::OutOfRange { offset, len, size });
        }
        Ok(())
    }

    /// Grows (or, when the caller allowed it, shrinks) the volume to `size` bytes, committing
    /// what is buffered first; clients see the new size on their next connection.
    pub async fn resize(&self, size: u64) -> Result<(), BlockError> {
        self.call(|reply| Cmd::Resize { size, reply }).await
    }

    /// Buffers a write and acknowledges it: at once, after the buffer is back under its bound
    /// when it is over, or once durable with `fua`.
    async fn buffer(&self, at: u64, seg: Seg, fua: bool) -> Result<(), BlockError> {
        let core = &self.core;
        let (over, pressing) = {
            let mut st = core.state();
            if let Some(why) = &st.fenced {
                return Err(BlockError::Io(why.clone()));
            }
            // Checked again under the lock: a shrink may have happened since `check`.
            let (len, size) = (seg.len(), st.root.len);
            if at + len > size {
                return Err(BlockError::OutOfRange {
                    offset: at,
                    len,
                    size,
                });
            }
            let before = st.buffered();
            st.dirty.insert(at, seg);
            let buffered = st.buffered();
            core.stats.dirty_bytes.store(buffered, Ordering::Relaxed);
            core.budget.change(before, buffered);
            (
                core.budget.over(),
                core.should_commit(st.dirty.data_bytes()),
            )
        };
        if fua {
            return self.call(|reply| Cmd::Flush { reply }).await;
        }
        if pressing {
            // A full channel holds requests that commit anyway.
            let _ = self.tx.try_send(Cmd::Kick);
        }
        if over {
            // Held until the site's volumes together are back under the budget.
            let mut released = core.budget.subscribe();
            while core.budget.over() {
                if self.tx.is_closed() {
                    return Err(self.gone());
                }
                if released.changed().await.is_err() {
                    return Err(self.gone());
                }
            }
        }
        Ok(())
    }

    async fn discard(&self, offset: u64, len: u64, fua: bool) -> Result<(), BlockError> {
        self.check(offset, len)?;
        self.core.stats.discards.fetch_add(1, Ordering::Relaxed);
        if len == 0 {
            return Ok(());
        }
        self.buffer(offset, Seg::Zeros(len), fua).await
    }

    /// The committed tree and the buffered pieces of `[start, end)` over it, taken together.
    fn view(&self, start: u64, end: u64) -> (Child, Overlay) {
        let st = self.core.state();
        (st.root, st.layers(start, end))
    }
}

#[async_trait]
impl BlockDevice for Volume {
    fn size(&self) -> u64 {
        self.core.stats.size.load(Ordering::Relaxed)
    }

    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn min_io_size(&self) -> u32 {
        // The buffer and the tree are byte-granular: unaligned I/O needs no read-modify-write.
        1
    }

    fn read_only(&self) -> bool {
        false
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, BlockError> {
        self.read_pieces(offset, len).await.map(joined)
    }

    async fn read_pieces(&self, offset: u64, len: u32) -> Result<Vec<Bytes>, BlockError> {
        let len = u64::from(len);
        self.check(offset, len)?;
        if len > MAX_IO {
            return Err(BlockError::Invalid(format!(
                "reads are at most {MAX_IO} bytes"
            )));
        }
        let stats = &self.core.stats;
        stats.reads.fetch_add(1, Ordering::Relaxed);
        stats.read_bytes.fetch_add(len, Ordering::Relaxed);
        if len == 0 {
            return Ok(Vec::new());
        }
        let started = std::time::Instant::now();
        let (root, layers) = self.view(offset, offset + len);
        let (start, end) = (offset, offset + len);
        let r = if layers.is_empty() {
            // Nothing buffered here: the tree's pieces go out as they are.
            committed_pieces(&self.core, root, start, end)
                .await
                .map_err(block_error)
        } else {
            read(&self.core, root, start, end, layers)
                .await
                .map(|b| vec![b])
        };
        stats.read_latency.observe_duration(started.elapsed());
        r
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), BlockError> {
        let len = data.len() as u64;
        self.check(offset, len)?;
        if len > MAX_IO {
            return Err(BlockError::Invalid(format!(
                "writes are at most {MAX_IO} bytes"
            )));
        }
        let stats = &self.core.stats;
        stats.writes.fetch_add(1, Ordering::Relaxed);
        stats.write_bytes.fetch_add(len, Ordering::Relaxed);
        if len == 0 {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let r = self.buffer(offset, Seg::Data(data), fua).await;
        stats.write_latency.observe_duration(started.elapsed());
        r
    }

    async fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> Result<(), BlockError> {
        self.discard(offset, len, fua).await
    }

    async fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), BlockError> {
        self.discard(offset, len, fua).await
    }

    async fn flush(&self) -> Result<(), BlockError> {
        let stats = &self.core.stats;
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let r = self.call(|reply| Cmd::Flush { reply }).await;
        stats.flush_latency.observe_duration(started.elapsed());
        r
    }

    async fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Allocation>, BlockError> {
        self.check(offset, len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let (root, layers) = self.view(offset, offset + len);
        let core = &self.core;
        map(
            &core.client,
            &core.nodes,
            root,
            offset,
            offset + len,
            layers,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Volumes, DEFAULT_EXTENT_SIZE};

    /// 64 KiB of bytes unique to `tag`.
    fn extent(tag: u32) -> Bytes {
        let mut b = Vec::with_capacity(64 << 10);
        while b.len() < 64 << 10 {
            b.extend_from_slice(&tag.to_le_bytes());
            b.extend_from_slice(&(b.len() as u32).to_le_bytes());
        }
        Bytes::from(b)
    }

    /// Commits write nodes of at most [`VOLUME_NODE_FANOUT`] entries, and an extent a commit
    /// overwrites leaves the chunk cache while one still partly live stays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_write_small_nodes_and_forget_overwritten_extents() {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::open_dir(dir.path()).unwrap();
        let config = VolumeConfig {
            commit_interval: Duration::from_secs(3600),
            ..VolumeConfig::default()
        };
        let vols = Volumes::new(client.clone(), config);
        vols.create("v", 64 << 20, 4096, DEFAULT_EXTENT_SIZE)
            .await
            .unwrap();
        let v = vols.open("v").await.unwrap();
        let ext = u64::from(DEFAULT_EXTENT_SIZE);
        for i in 0..1024u32 {
            v.write(u64::from(i) * ext, extent(i), false).await.unwrap();
        }
        v.flush().await.unwrap();
        let cached = |i: u32| v.core.chunks.get(&ChunkId::of(&extent(i))).is_some();
        assert!(cached(3) && cached(5));
        v.write(3 * ext, extent(5000), false).await.unwrap();
        v.write(5 * ext, Bytes::from(vec![7u8; 4096]), false)
            .await
            .unwrap();
        v.flush().await.unwrap();
        assert!(!cached(3), "the overwritten extent left the cache");
        assert!(cached(5) && cached(5000), "live extents stay");
        assert_eq!(
            v.read(5 * ext + 4096, 4096).await.unwrap(),
            extent(5).slice(4096..8192)
        );

        // Every node of the committed tree (all of it rewritten by the first commit) holds at
        // most the volume fan-out, over more than one level.
        let root = v.core.state().root;
        let (mut todo, mut nodes) = (vec![root], 0);
        while let Some(c) = todo.pop() {
            let node = client.load(c.node, c.len).await.unwrap();
            let n = match &node {
                TreeNode::Leaves(l) => l.len(),
                TreeNode::Children(k) => {
                    todo.extend(k.iter().copied());
                    k.len()
                }
            };
            assert!(n <= VOLUME_NODE_FANOUT, "a node of {n} entries");
            nodes += 1;
        }
        assert!(nodes > 1024 / VOLUME_NODE_FANOUT, "{nodes} nodes");
    }

    #[test]
    fn the_chunk_cache_takes_a_bounded_share_of_memory() {
        assert_eq!(chunk_cache_for_memory(24 << 30), 3 << 30);
        assert_eq!(chunk_cache_for_memory(512 << 20), 64 << 20);
        assert_eq!(chunk_cache_for_memory(256 << 30), 4 << 30);
    }

    #[test]
    fn painting_a_range_keeps_runs_ordered_and_contiguous() {
        let mut runs = vec![(0, 10, false), (10, 20, true), (20, 30, false)];
        paint(&mut runs, 5, 25, true);
        assert_eq!(runs, vec![(0, 5, false), (5, 25, true), (25, 30, false)]);
        paint(&mut runs, 0, 1, false);
        assert_eq!(runs[0], (0, 1, false));
        paint(&mut runs, 29, 30, true);
        assert_eq!(runs.last(), Some(&(29, 30, true)));
        let mut at = 0;
        for (s, e, _) in &runs {
            assert_eq!(*s, at);
            at = *e;
        }
        assert_eq!(at, 30);
    }
}
