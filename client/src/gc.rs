//! Garbage collection of a single-node site: mark and sweep with a speculative hold.
//!
//! **Mark** collects the id of every chunk reachable from a stored version (every version of
//! every bucket; delete markers reach nothing) or from a part of an upload in progress: each
//! extent tree is walked from its root, marking interior nodes (which are chunks) and the
//! chunks their leaves point at. A subtree already marked is not walked again, so trees shared
//! by copies and multipart completions cost one walk. The marks are a set of 32-byte ids:
//! about 40 to 75 bytes each in a hash set (depending on where it is in its growth), so a GiB
//! of memory marks some 15 to 25 million chunks — at FastCDC's average chunk size, tens of
//! TiB of distinct data.
//!
//! What the mark sees while writes go on: uploads are listed before versions (a multipart
//! completion moves parts into a version, so its parts are seen in one or the other), again
//! after them (parts added during the pass, e.g. copies of a version deleted before the
//! version scan reached it), and finally every version the change logs show was applied since
//! the pass began (a copy written to a key the scan had passed) — every manifest node's log,
//! since each logs only the buckets placed on it. On a multi-node site the listings ask every
//! replica of a bucket, not a read quorum: a version a failed write left on one replica is
//! readable there and anti-entropy spreads it, so it must be marked. Anything live when the
//! mark ends is therefore marked, and what is written later references either marked trees or
//! chunks it has just written or deduplicated against (a put that finds its chunk on a
//! replica refreshes that copy's time there, as a local put does), or it is a copy by
//! reference, which checks after its apply that its source still exists and otherwise
//! touches every chunk it shares with it (`copy.rs`).
//!
//! **Sweep** pages through the chunk store's ids and deletes, in batches, each chunk that is not
//! marked and was last referenced (written, or deduplicated against by a put: its
//! `touched_ms`) before `pass start - hold`. The hold protects chunks of writes whose manifest
//! is not applied yet (chunks are durable before the manifest, invariant I2): a put refreshes
//! a stored chunk's time when it is older than the store's touch interval, so a write is
//! protected as long as it takes less than `hold - touch interval` from its chunks to its
//! manifest. The time is checked again under the store's per-chunk lock as the chunk is
//! deleted, so a put racing the sweep either refreshes it first or stores it anew.
//!
//! A pass that cannot complete its mark (an unreadable or corrupt tree node, a listing error)
//! fails before deleting anything.

use std::collections::HashSet;
use std::sync::Arc;

use cairn_chunkserver::{ChunkStore, RateLimiter};
use cairn_core::extent::{Child, NodeStore, Target, TreeNode, MAX_DEPTH};
use cairn_core::manifest::Content;
use cairn_core::ChunkId;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::{ClientError, UploadsQuery, VersionsQuery};

/// Versions, uploads, parts, changes or chunk ids read per call.
const PAGE: usize = 1000;
/// Chunks deleted per write batch.
const DELETE_BATCH: usize = 256;
/// The default speculative hold: an hour.
pub const DEFAULT_GC_HOLD_MS: u64 = 3_600_000;

/// Where a GC pass is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GcPhase {
    /// Collecting reachable chunks.
    #[default]
    Mark,
    /// Deleting unreachable chunks past the hold (the mark is complete).
    Sweep,
    /// The pass is over.
    Done,
}

/// What a GC pass did (also its progress while it runs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Where the pass is.
    pub phase: GcPhase,
    /// Start of the pass, unix ms (as given).
    pub started_ms: u64,
    /// Chunks last referenced before this time (pass start - hold) may be deleted.
    pub cutoff_ms: u64,
    /// Versions and delete markers looked at (change-log re-reads included).
    pub versions_scanned: u64,
    /// Uploads in progress looked at (each listing pass counts).
    pub uploads_scanned: u64,
    /// Parts of those uploads looked at.
    pub parts_scanned: u64,
    /// Distinct chunks (data and tree nodes) marked reachable.
    pub chunks_marked: u64,
    /// Stored chunk ids looked at by the sweep.
    pub chunks_scanned: u64,
    /// Chunks deleted.
    pub chunks_deleted: u64,
    /// Stored (on-disk payload) bytes of the deleted chunks.
    pub bytes_freed: u64,
}

/// The chunks marked reachable.
struct Marks {
    set: HashSet<ChunkId>,
}

impl Client {
    /// One GC pass starting at `now_ms`, deleting unreachable chunks last referenced more than
    /// `hold_ms` before it; `progress` sees the report after every page (and once with
    /// [`GcPhase::Sweep`] when the mark is complete, before anything is deleted).
    ///
    /// Needs this node's chunk store (a single-node site); `hold_ms` must be at least twice
    /// the store's touch interval. Any error during the mark ends the pass with nothing
    /// deleted.
    pub async fn run_gc(
        &self,
        now_ms: u64,
        hold_ms: u64,
        progress: &(dyn Fn(&GcReport) + Sync),
    ) -> Result<GcReport, ClientError> {
        self.run_gc_limited(now_ms, hold_ms, progress, &RateLimiter::new(0))
            .await
    }

    /// [`Client::run_gc`] at most as fast as `limiter` allows, counting one token per version
    /// or part the mark reads and per chunk the sweep deletes.
    pub async fn run_gc_limited(
        &self,
        now_ms: u64,
        hold_ms: u64,
        progress: &(dyn Fn(&GcReport) + Sync),
        limiter: &RateLimiter,
    ) -> Result<GcReport, ClientError> {
        let store = self.inner.local.clone().ok_or_else(|| {
            ClientError::InvalidRequest(
                "garbage collection needs this node's chunk store: run it on a node with the chunk role".into(),
            )
        })?;
        let touch = store.touch_interval_ms();
        if hold_ms < touch.saturating_mul(2) {
            return Err(ClientError::InvalidArgument(format!(
                "the GC hold ({} s) must be at least twice the chunk store's touch interval \
                 ({} s)",
                hold_ms / 1000,
                touch / 1000
            )));
        }
        let mut report = GcReport {
            started_ms: now_ms,
            cutoff_ms: now_ms.saturating_sub(hold_ms),
            ..Default::default()
        };
        let mut marks = Marks {
            set: HashSet::new(),
        };
        self.gc_mark(&mut marks, &mut report, progress, limiter)
            .await?;
        report.phase = GcPhase::Sweep;
        progress(&report);
        self.gc_sweep(store, &marks, &mut report, progress, limiter)
            .await?;
        report.phase = GcPhase::Done;
        progress(&report);
        Ok(report)
    }

    /// The mark phase (see the module docs for the order of its scans).
    async fn gc_mark(
        &self,
        marks: &mut Marks,
        report: &mut GcReport,
        progress: &(dyn Fn(&GcReport) + Sync),
        limiter: &RateLimiter,
    ) -> Result<(), ClientError> {
        // The logs are held from here for this pass (so trimming cannot take what the last
        // step re-reads) and let go when the mark ends, whatever its outcome.
        let holder = self.gc_holder();
        let h = holder.clone();
        let log_ends = self
            .blocking(move |i| Ok(i.meta.hold_change_logs(&h)?))
            .await?;
        let marked = self
            .gc_mark_held(marks, report, progress, limiter, &holder, log_ends)
            .await;
        let h = holder.clone();
        let _ = self
            .blocking(move |i| {
                i.meta.release_change_logs(&h);
                Ok(())
            })
            .await;
        marked
    }

    /// The name a pass of this client holds change logs under: one per node, so a pass that
    /// died holding them is replaced by the next one.
    fn gc_holder(&self) -> String {
        format!(
            "gc/{}",
            cairn_core::cluster::node_id_hex(self.inner.hlc.node())
        )
    }

    /// The mark's scans, with the change logs held from `log_ends`.
    async fn gc_mark_held(
        &self,
        marks: &mut Marks,
        report: &mut GcReport,
        progress: &(dyn Fn(&GcReport) + Sync),
        limiter: &RateLimiter,
        holder: &str,
        log_ends: Vec<(u64, u64)>,
    ) -> Result<(), ClientError> {
        self.gc_mark_uploads(marks, report, progress).await?;
        for bucket in self.list_buckets().await? {
            let mut q = VersionsQuery {
                max_keys: PAGE,
                ..Default::default()
            };
            loop {
                let (b, query) = (bucket.name.clone(), q.clone());
                let page = match self
                    .blocking(move |i| Ok(i.meta.list_versions_everywhere(&b, &query)?))
                    .await
                {
                    Ok(p) => p,
                    // Deleted during the pass: a bucket is deleted only when empty.
                    Err(ClientError::NoSuchBucket(_)) => break,
                    Err(e) => return Err(e),
                };
                limiter.acquire(page.versions.len() as u64).await;
                for m in page.versions {
                    report.versions_scanned += 1;
                    self.gc_mark_content(&m.content, marks, report).await?;
                }
                progress(report);
                if !page.is_truncated {
                    break;
                }
                q.key_marker = page.next_key_marker;
                q.version_marker = page.next_version_marker;
            }
        }
        self.gc_mark_uploads(marks, report, progress).await?;
        // Versions applied while the scans ran (a copy to a key already scanned), from every
        // change log: on a multi-node site each manifest node logs only the buckets placed on
        // it, so one node's log would miss a copy into a bucket placed elsewhere.
        for (log, first_seq) in log_ends {
            let mut after = first_seq;
            loop {
                let h = holder.to_string();
                let changes = self
                    .blocking(move |i| Ok(i.meta.log_changes_for(log, &h, after, PAGE)?))
                    .await?;
                let Some(last) = changes.last() else { break };
                after = last.seq;
                limiter.acquire(changes.len() as u64).await;
                for c in changes {
                    if c.removed || c.delete_marker {
                        continue;
                    }
                    let (b, k, v) = (c.bucket, c.key, c.version);
                    let m = self
                        .blocking(move |i| Ok(i.meta.get_version(&b, &k, v)?))
                        .await?;
                    if let Some(m) = m {
                        report.versions_scanned += 1;
                        self.gc_mark_content(&m.content, marks, report).await?;
                    }
                }
                progress(report);
            }
        }
        Ok(())
    }

    /// Marks what every part of every upload in progress reaches.
    async fn gc_mark_uploads(
        &self,
        marks: &mut Marks,
        report: &mut GcReport,
        progress: &(dyn Fn(&GcReport) + Sync),
    ) -> Result<(), ClientError> {
        for bucket in self.list_buckets().await? {
            let mut q = UploadsQuery {
                max_uploads: PAGE,
                ..Default::default()
            };
            loop {
                let (b, query) = (bucket.name.clone(), q.clone());
                let page = match self
                    .blocking(move |i| Ok(i.meta.list_uploads_everywhere(&b, &query)?))
                    .await
                {
                    Ok(p) => p,
                    Err(ClientError::NoSuchBucket(_)) => break,
                    Err(e) => return Err(e),
                };
                for u in page.uploads {
                    report.uploads_scanned += 1;
                    let mut after = 0u32;
                    loop {
                        let (b, id) = (bucket.name.clone(), u.upload_id.clone());
                        let parts = self
                            .blocking(move |i| {
                                Ok(i.meta.list_parts_everywhere(&b, &id, after, PAGE)?)
                            })
                            .await?;
                        let Some(last) = parts.last() else { break };
                        after = last.number;
                        let full = parts.len() == PAGE;
                        for p in parts {
                            report.parts_scanned += 1;
                            self.gc_mark_content(&p.content, marks, report).await?;
                        }
                        if !full {
                            break;
                        }
                    }
                }
                progress(report);
                if !page.is_truncated {
                    break;
                }
                q.key_marker = page.next_key_marker;
                q.upload_id_marker = page.next_upload_id_marker;
            }
        }
        Ok(())
    }

    /// Marks every chunk `content`'s extent tree reaches (inline and empty content reach
    /// none). A node that cannot be read or decoded is an error.
    async fn gc_mark_content(
        &self,
        content: &Content,
        marks: &mut Marks,
        report: &mut GcReport,
    ) -> Result<(), ClientError> {
        report.chunks_marked += self.collect_tree_ids(content, &mut marks.set).await?;
        Ok(())
    }

    /// Adds to `ids` every chunk `content`'s extent tree reaches — its interior nodes and the
    /// chunks their leaves name — without walking again into a subtree whose node is already
    /// in `ids`; returns how many ids were new. Inline and empty content reach none; a node
    /// that cannot be read or decoded, or a tree deeper than the limit, is an error.
    pub(crate) async fn collect_tree_ids(
        &self,
        content: &Content,
        ids: &mut HashSet<ChunkId>,
    ) -> Result<u64, ClientError> {
        let Some(root) = content.tree() else {
            return Ok(0);
        };
        let mut added = 0;
        let skip_absent = self.skips_absent_nodes().await;
        // Depth-first with an explicit stack: at most FANOUT entries per level.
        let mut stack: Vec<(Child, usize)> = vec![(root, 1)];
        while let Some((child, depth)) = stack.pop() {
            if !ids.insert(child.node) {
                continue;
            }
            added += 1;
            if depth > MAX_DEPTH {
                return Err(ClientError::Corrupt(format!(
                    "extent tree deeper than {MAX_DEPTH} levels at node {}",
                    child.node
                )));
            }
            let node = if skip_absent {
                // A node not here stands for a subtree a linked site holds (see
                // `crate::fetch`): what is here is marked, the rest is not this site's.
                match self.load_local(child.node, child.len).await {
                    Ok(Some(node)) => node,
                    Ok(None) => continue,
                    Err(e) => {
                        return Err(ClientError::Corrupt(format!(
                            "cannot read extent tree node {}: {e}",
                            child.node
                        )))
                    }
                }
            } else {
                self.load(child.node, child.len).await.map_err(|e| {
                    ClientError::Corrupt(format!(
                        "cannot read extent tree node {}: {e}",
                        child.node
                    ))
                })?
            };
            match node {
                TreeNode::Children(children) => {
                    stack.extend(children.into_iter().map(|c| (c, depth + 1)));
                }
                TreeNode::Leaves(leaves) => {
                    for leaf in leaves {
                        if let Target::Chunk { id, .. } = leaf.target {
                            if ids.insert(id) {
                                added += 1;
                            }
                        }
                    }
                }
            }
        }
        Ok(added)
    }

    /// The sweep: deletes unmarked chunks last referenced before the cutoff.
    async fn gc_sweep(
        &self,
        store: Arc<ChunkStore>,
        marks: &Marks,
        report: &mut GcReport,
        progress: &(dyn Fn(&GcReport) + Sync),
        limiter: &RateLimiter,
    ) -> Result<(), ClientError> {
        let cutoff = report.cutoff_ms;
        let mut after: Option<ChunkId> = None;
        loop {
            let s = store.clone();
            let ids = self
                .blocking(move |_| Ok(s.list_ids(after.as_ref(), PAGE)?))
                .await?;
            let Some(last) = ids.last().copied() else {
                break;
            };
            after = Some(last);
            report.chunks_scanned += ids.len() as u64;
            let candidates: Vec<ChunkId> = ids
                .into_iter()
                .filter(|id| !marks.set.contains(id))
                .collect();
            for batch in candidates.chunks(DELETE_BATCH) {
                limiter.acquire(batch.len() as u64).await;
                let batch = batch.to_vec();
                let s = store.clone();
                let (deleted, freed) = self
                    .blocking(move |_| {
                        // Sizes first (for the report); the time check that decides is the
                        // one under the stripe locks inside the delete.
                        let mut sizes = Vec::with_capacity(batch.len());
                        let mut old = Vec::with_capacity(batch.len());
                        for id in batch {
                            if let Some(m) = s.meta(&id)? {
                                if m.last_referenced_ms() < cutoff {
                                    sizes.push(u64::from(m.stored_len));
                                    old.push(id);
                                }
                            }
                        }
                        if old.is_empty() {
                            return Ok((0u64, 0u64));
                        }
                        let done = s.delete_unreferenced_before(&old, cutoff)?;
                        let mut n = 0;
                        let mut bytes = 0;
                        for (gone, size) in done.into_iter().zip(sizes) {
                            if gone {
                                n += 1;
                                bytes += size;
                            }
                        }
                        Ok((n, bytes))
                    })
                    .await?;
                report.chunks_deleted += deleted;
                report.bytes_freed += freed;
            }
            progress(report);
        }
        if report.chunks_deleted > 0 {
            // Deleted chunks free their disk space only once compaction drops them; on a full
            // disk that is what GC is run for, so do it now rather than when RocksDB would.
            let s = store.clone();
            self.blocking(move |_| {
                s.reclaim_space();
                Ok(())
            })
            .await?;
        }
        Ok(())
    }
}
