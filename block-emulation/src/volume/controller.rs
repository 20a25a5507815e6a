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

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cairn_client::{tree_etag, Client, ClientError, WriteCondition};
use cairn_core::extent::{splice, Child, Leaf, NodeStore, TreeNode};
use cairn_core::metrics::Histogram;
use cairn_core::ChunkId;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::nodecache::NodeCache;
use super::overlay::{Overlay, Seg};
use super::VOLUME_BUCKET;
use crate::device::{Allocation, BlockDevice, BlockError};

/// Largest single read or write a front end may ask for.
pub const MAX_IO: u64 = 32 << 20;
/// Decoded tree nodes a volume keeps per generation (a node holds at most 512 entries, about
/// 24 KiB decoded; two generations of 1024 bound the cache near 48 MiB).
const NODE_CACHE_NODES: usize = 1024;
/// Extents (and tree nodes) stored at once by one commit.
const STORE_PARALLEL: usize = 16;

type Reply<T> = oneshot::Sender<Result<T, BlockError>>;

/// Requests to a volume's controller.
enum Cmd {
    Write {
        at: u64,
        seg: Seg,
        fua: bool,
        reply: Reply<()>,
    },
    Read {
        at: u64,
        len: u64,
        reply: Reply<Bytes>,
    },
    Map {
        at: u64,
        len: u64,
        reply: Reply<Vec<Allocation>>,
    },
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
    /// Most written bytes a volume buffers; writers wait (their acknowledgement is held) while
    /// the buffer is over it. A commit starts in the background at half of it.
    pub max_dirty_bytes: u64,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            commit_interval: Duration::from_secs(1),
            max_dirty_bytes: 64 << 20,
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
            dirty_bytes: AtomicU64::new(0),
        }
    }
}

/// An open volume: a handle on its controller task. Cloned handles share the controller; the
/// controller commits what is buffered and ends when the last handle is dropped.
pub struct Volume {
    name: String,
    block_size: u32,
    stats: Arc<VolumeStats>,
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
) -> (Arc<Volume>, watch::Receiver<bool>) {
    let (tx, rx) = mpsc::channel(1024);
    stats.size.store(start.root.len, Ordering::Relaxed);
    let (exit_tx, exit_rx) = watch::channel(false);
    let volume = Arc::new(Volume {
        name: start.name.clone(),
        block_size: start.block_size,
        stats: stats.clone(),
        tx,
    });
    let ctl = Controller {
        client,
        key: start.key,
        name: start.name,
        meta: start.meta,
        extent: u64::from(start.extent_size),
        config,
        stats,
        root: start.root,
        etag: start.etag,
        dirty: Overlay::default(),
        flushing: None,
        commit: None,
        on_current: Vec::new(),
        on_next: Vec::new(),
        held_acks: Vec::new(),
        fenced: None,
        nodes: Arc::new(NodeCache::new(NODE_CACHE_NODES)),
    };
    tokio::spawn(async move {
        ctl.run(rx).await;
        let _ = exit_tx.send(true);
    });
    (volume, exit_rx)
}

type CommitResult = Result<(Child, String), ClientError>;

struct Controller {
    client: Client,
    key: String,
    name: String,
    meta: BTreeMap<String, String>,
    extent: u64,
    config: VolumeConfig,
    stats: Arc<VolumeStats>,
    /// The tree of the newest committed version.
    root: Child,
    /// Its ETag, the condition of the next commit.
    etag: String,
    /// Writes since the running commit began.
    dirty: Overlay,
    /// The writes the running commit is storing.
    flushing: Option<Arc<Overlay>>,
    commit: Option<JoinHandle<CommitResult>>,
    /// Flushes answered when the running commit ends.
    on_current: Vec<Reply<()>>,
    /// Flushes (and FUA writes) that need the next commit.
    on_next: Vec<Reply<()>>,
    /// Writes acknowledged once the buffer is below its bound again.
    held_acks: Vec<Reply<()>>,
    /// Another writer committed this volume: this controller refuses writes from now on.
    fenced: Option<String>,
    /// Decoded tree nodes, shared by reads, maps and commits.
    nodes: Arc<NodeCache>,
}

async fn wait_commit(h: &mut Option<JoinHandle<CommitResult>>) -> CommitResult {
    match h {
        Some(h) => match h.await {
            Ok(r) => r,
            Err(e) => Err(ClientError::Storage(format!(
                "volume commit task failed: {e}"
            ))),
        },
        None => std::future::pending().await,
    }
}

fn block_error(e: ClientError) -> BlockError {
    match e {
        ClientError::NoSpace(m) => BlockError::NoSpace(m),
        e => BlockError::Io(e.to_string()),
    }
}

impl Controller {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut tick = tokio::time::interval(self.config.commit_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let committing = self.commit.is_some();
            tokio::select! {
                res = wait_commit(&mut self.commit), if committing => self.commit_done(res, true),
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => break,
                },
                _ = tick.tick() => {
                    if !committing && !self.dirty.is_empty() {
                        self.start_commit();
                    }
                }
            }
        }
        // Every handle is gone: commit what is buffered before ending.
        self.settle().await;
        if !self.dirty.is_empty() {
            self.start_commit();
            self.settle().await;
        }
        if !self.dirty.is_empty() {
            tracing::error!(volume = %self.name, bytes = self.dirty.data_bytes(),
                "volume closed with writes that could not be committed");
        }
    }

    /// Waits for the running commit, if any.
    async fn settle(&mut self) {
        if self.commit.is_some() {
            let res = wait_commit(&mut self.commit).await;
            self.commit_done(res, false);
        }
    }

    fn buffered(&self) -> u64 {
        self.dirty.data_bytes() + self.flushing.as_ref().map_or(0, |f| f.data_bytes())
    }

    async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Write {
                at,
                seg,
                fua,
                reply,
            } => {
                if let Some(why) = &self.fenced {
                    let _ = reply.send(Err(BlockError::Io(why.clone())));
                    return;
                }
                self.dirty.insert(at, seg);
                self.stats
                    .dirty_bytes
                    .store(self.buffered(), Ordering::Relaxed);
                if fua {
                    self.on_next.push(reply);
                } else if self.buffered() > self.config.max_dirty_bytes {
                    self.held_acks.push(reply);
                } else {
                    let _ = reply.send(Ok(()));
                }
                let pressing = fua || self.dirty.data_bytes() > self.config.max_dirty_bytes / 2;
                if pressing && self.commit.is_none() {
                    self.start_commit();
                }
            }
            Cmd::Flush { reply } => {
                if self.dirty.is_empty() {
                    if self.commit.is_some() {
                        self.on_current.push(reply);
                    } else {
                        let _ = reply.send(Ok(()));
                    }
                } else {
                    self.on_next.push(reply);
                    if self.commit.is_none() {
                        self.start_commit();
                    }
                }
            }
            Cmd::Read { at, len, reply } => {
                let layers = self.layers(at, at + len);
                let (client, root, nodes) = (self.client.clone(), self.root, self.nodes.clone());
                tokio::spawn(async move {
                    let r = read(&client, &nodes, root, at, at + len, layers).await;
                    let _ = reply.send(r);
                });
            }
            Cmd::Map { at, len, reply } => {
                let layers = self.layers(at, at + len);
                let (client, root, nodes) = (self.client.clone(), self.root, self.nodes.clone());
                tokio::spawn(async move {
                    let r = map(&client, &nodes, root, at, at + len, layers).await;
                    let _ = reply.send(r);
                });
            }
            Cmd::Resize { size, reply } => {
                let _ = reply.send(self.resize(size).await);
            }
        }
    }

    /// The buffered pieces of `[start, end)` to lay over the committed tree, oldest first.
    fn layers(&self, start: u64, end: u64) -> Overlay {
        let mut o = Overlay::default();
        if let Some(f) = &self.flushing {
            for (s, seg) in f.pieces(start, end) {
                o.insert(s, seg);
            }
        }
        for (s, seg) in self.dirty.pieces(start, end) {
            o.insert(s, seg);
        }
        o
    }

    fn start_commit(&mut self) {
        debug_assert!(self.commit.is_none());
        if self.dirty.is_empty() {
            for r in self.on_next.drain(..).chain(self.held_acks.drain(..)) {
                let _ = r.send(Ok(()));
            }
            return;
        }
        let snap = Arc::new(std::mem::take(&mut self.dirty));
        self.flushing = Some(snap.clone());
        self.on_current = std::mem::take(&mut self.on_next);
        let job = CommitJob {
            client: self.client.clone(),
            nodes: self.nodes.clone(),
            key: self.key.clone(),
            meta: self.meta.clone(),
            extent: self.extent,
            root: self.root,
            etag: self.etag.clone(),
        };
        let stats = self.stats.clone();
        self.commit = Some(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = job.run(snap).await;
            stats.commit_latency.observe_duration(started.elapsed());
            r
        }));
    }

    fn commit_done(&mut self, res: CommitResult, go_on: bool) {
        self.commit = None;
        let flushed = self.flushing.take();
        let outcome = match res {
            Ok((root, etag)) => {
                self.root = root;
                self.etag = etag;
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.stats.commit_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(volume = %self.name, error = %e, "volume commit failed; its writes stay buffered");
                if let Some(f) = flushed {
                    let older = Arc::try_unwrap(f).unwrap_or_else(|a| (*a).clone());
                    self.dirty = std::mem::take(&mut self.dirty).over(older);
                }
                if matches!(e, ClientError::PreconditionFailed) {
                    self.fenced = Some(format!(
                        "volume {} was changed by another writer; reopen it",
                        self.name
                    ));
                }
                Err(block_error(e))
            }
        };
        for r in self.on_current.drain(..) {
            let _ = r.send(outcome.clone());
        }
        self.stats
            .dirty_bytes
            .store(self.buffered(), Ordering::Relaxed);
        if self.buffered() <= self.config.max_dirty_bytes {
            for r in self.held_acks.drain(..) {
                let _ = r.send(Ok(()));
            }
        }
        // After a failure the next tick retries, so a store that keeps failing is not spun on.
        let waiting = !self.on_next.is_empty() || !self.held_acks.is_empty();
        if go_on && outcome.is_ok() && waiting {
            self.start_commit();
        }
    }

    /// Commits what is buffered, then grows or shrinks the tree to `size`.
    async fn resize(&mut self, size: u64) -> Result<(), BlockError> {
        if let Some(why) = &self.fenced {
            return Err(BlockError::Io(why.clone()));
        }
        self.settle().await;
        if !self.dirty.is_empty() {
            self.start_commit();
            self.settle().await;
            if !self.dirty.is_empty() {
                return Err(BlockError::Io(
                    "the volume's buffered writes could not be committed; resize not done".into(),
                ));
            }
        }
        let len = self.root.len;
        let c = &self.client;
        let new = if size > len {
            splice(c, Some(self.root), len, len, vec![Leaf::zeros(size - len)]).await
        } else {
            splice(c, Some(self.root), size, len, Vec::new()).await
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
        self.root = new;
        self.etag = put.manifest.etag;
        self.stats.size.store(size, Ordering::Relaxed);
        Ok(())
    }
}

/// One commit: the buffered writes become a new version.
struct CommitJob {
    client: Client,
    nodes: Arc<NodeCache>,
    key: String,
    meta: BTreeMap<String, String>,
    extent: u64,
    root: Child,
    etag: String,
}

/// A contiguous run of buffered writes: start, end and its segments.
type Run = (u64, u64, Vec<(u64, Seg)>);

/// The tree nodes a commit's splices write, kept in memory until [`Staged::persist`] stores
/// the ones the final root reaches; loads see staged nodes first, then the store.
struct Staged<'a> {
    client: &'a Client,
    cache: &'a NodeCache,
    nodes: std::sync::Mutex<HashMap<ChunkId, Vec<u8>>>,
}

impl Staged<'_> {
    fn staged(&self, id: &ChunkId) -> Option<Vec<u8>> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.get(id).cloned()
    }

    /// Durably stores every staged node reachable from `root` (a staged node's children are
    /// staged or already stored).
    async fn persist(&self, root: Child) -> Result<(), ClientError> {
        let mut todo = vec![root];
        let mut out: Vec<(ChunkId, Vec<u8>)> = Vec::new();
        while let Some(c) = todo.pop() {
            let Some(bytes) = self.staged(&c.node) else {
                continue;
            };
            if let TreeNode::Children(kids) = TreeNode::decode_checked(&bytes, c.len)? {
                todo.extend(kids);
            }
            out.push((c.node, bytes));
        }
        let mut pending = futures::stream::FuturesUnordered::new();
        for (id, bytes) in out {
            if pending.len() >= STORE_PARALLEL {
                if let Some(r) = pending.next().await {
                    r?;
                }
            }
            pending.push(self.client.store(id, bytes));
        }
        while let Some(r) = pending.next().await {
            r?;
        }
        Ok(())
    }
}

impl NodeStore for Staged<'_> {
    type Error = ClientError;

    async fn load(&self, id: ChunkId, len: u64) -> Result<TreeNode, ClientError> {
        match self.staged(&id) {
            Some(bytes) => Ok(TreeNode::decode_checked(&bytes, len)?),
            None => self.cache.load(self.client, id, len).await,
        }
    }

    async fn store(&self, id: ChunkId, bytes: Vec<u8>) -> Result<(), ClientError> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.insert(id, bytes);
        Ok(())
    }
}

/// What one extent-aligned window of a commit becomes.
enum Window {
    Zeros(u64),
    Data(Bytes),
}

impl CommitJob {
    async fn run(self, writes: Arc<Overlay>) -> CommitResult {
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
        // Store every data window of every run (in order, several at once: the store groups
        // their synced writes), then splice run by run into a staged tree whose nodes stay in
        // memory: a node that a later splice of this commit replaces is never stored.
        let client = &self.client;
        let counts: Vec<usize> = runs.iter().map(|(_, _, w)| w.len()).collect();
        let windows: Vec<Window> = runs
            .iter_mut()
            .flat_map(|(_, _, w)| std::mem::take(w))
            .collect();
        let mut leaves: std::vec::IntoIter<Leaf> = futures::stream::iter(windows)
            .map(|w| async move {
                match w {
                    Window::Zeros(n) => Ok(Leaf::zeros(n)),
                    Window::Data(b) => client.store_extent(b).await,
                }
            })
            .buffered(STORE_PARALLEL)
            .try_collect::<Vec<Leaf>>()
            .await?
            .into_iter();
        let staged = Staged {
            client,
            cache: &self.nodes,
            nodes: std::sync::Mutex::new(HashMap::new()),
        };
        let mut spliced = self.root;
        for ((start, end, _), n) in runs.into_iter().zip(counts) {
            let run_leaves: Vec<Leaf> = leaves.by_ref().take(n).collect();
            spliced = splice(&staged, Some(spliced), start, end, run_leaves)
                .await?
                .ok_or_else(|| ClientError::Corrupt("a volume's tree became empty".into()))?;
        }
        // Only the staged nodes the new root reaches are stored, all before the version is
        // applied (I2).
        staged.persist(spliced).await?;
        if spliced == self.root {
            return Ok((self.root, self.etag));
        }
        let put = client
            .put_tree(
                VOLUME_BUCKET,
                &self.key,
                spliced,
                self.meta,
                Some(WriteCondition::IfMatch(self.etag)),
            )
            .await?;
        debug_assert_eq!(put.manifest.etag, tree_etag(&spliced));
        Ok((spliced, put.manifest.etag))
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

/// `[start, end)`: the committed tree with the buffered writes laid over it.
async fn read(
    client: &Client,
    nodes: &NodeCache,
    root: Child,
    start: u64,
    end: u64,
    layers: Overlay,
) -> Result<Bytes, BlockError> {
    let cached = nodes.over(client);
    if layers.is_empty() {
        return client
            .read_tree_via(&cached, root, start, end)
            .await
            .map_err(block_error);
    }
    let mut buf = if layers.covers(start, end) {
        BytesMut::zeroed((end - start) as usize)
    } else {
        let b = client
            .read_tree_via(&cached, root, start, end)
            .await
            .map_err(block_error)?;
        BytesMut::from(&b[..])
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
        &self.stats
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, BlockError> {
        let (tx, rx) = oneshot::channel();
        let gone = || BlockError::Io(format!("volume {}'s controller has stopped", self.name));
        self.tx.send(make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
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

    async fn discard(&self, offset: u64, len: u64, fua: bool) -> Result<(), BlockError> {
        self.check(offset, len)?;
        self.stats.discards.fetch_add(1, Ordering::Relaxed);
        if len == 0 {
            return Ok(());
        }
        let seg = Seg::Zeros(len);
        self.call(|reply| Cmd::Write {
            at: offset,
            seg,
            fua,
            reply,
        })
        .await
    }
}

#[async_trait]
impl BlockDevice for Volume {
    fn size(&self) -> u64 {
        self.stats.size.load(Ordering::Relaxed)
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
        let len = u64::from(len);
        self.check(offset, len)?;
        if len > MAX_IO {
            return Err(BlockError::Invalid(format!(
                "reads are at most {MAX_IO} bytes"
            )));
        }
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        self.stats.read_bytes.fetch_add(len, Ordering::Relaxed);
        if len == 0 {
            return Ok(Bytes::new());
        }
        let started = std::time::Instant::now();
        let r = self
            .call(|reply| Cmd::Read {
                at: offset,
                len,
                reply,
            })
            .await;
        self.stats.read_latency.observe_duration(started.elapsed());
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
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.stats.write_bytes.fetch_add(len, Ordering::Relaxed);
        if len == 0 {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let r = self
            .call(|reply| Cmd::Write {
                at: offset,
                seg: Seg::Data(data),
                fua,
                reply,
            })
            .await;
        self.stats.write_latency.observe_duration(started.elapsed());
        r
    }

    async fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> Result<(), BlockError> {
        self.discard(offset, len, fua).await
    }

    async fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), BlockError> {
        self.discard(offset, len, fua).await
    }

    async fn flush(&self) -> Result<(), BlockError> {
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let r = self.call(|reply| Cmd::Flush { reply }).await;
        self.stats.flush_latency.observe_duration(started.elapsed());
        r
    }

    async fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Allocation>, BlockError> {
        self.check(offset, len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        self.call(|reply| Cmd::Map {
            at: offset,
            len,
            reply,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::paint;

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
