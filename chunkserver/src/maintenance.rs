//! The chunk maintenance workers of a multi-node site: repair, rebalance and scrub.
//!
//! [`ReplicatedChunks`] writes each chunk at a write quorum, so a replica that was down during
//! a put misses it; a map change (a node added, removed or drained) moves placement; and a
//! stored copy can rot on disk. Every chunk node runs [`ChunkMaintenance`] over its own
//! [`ChunkStore`] to bring the site back to "each chunk on exactly the replicas the current
//! map places it on, each copy good". A pass is one walk of the local store in id order
//! ([`ChunkStore::list_ids`], a page of [`MaintenanceConfig::batch_size`] ids at a time); the
//! caller (the node's runtime) runs passes on an interval and calls
//! [`ReplicatedChunks::set_map`] when the map changes. Each pass takes the map the backend
//! holds when it starts, and reaches the other nodes the way the backend does
//! ([`ReplicatedChunks::remote`]).
//!
//! # Repair
//!
//! For each local chunk the map places on this node, the other replicas are asked `have`
//! (batched per node, at most [`MAX_IDS_PER_CALL`] ids per call) and each replica that lacks
//! it gets the stored payload as it is on disk (no re-encoding; the receiver verifies it
//! against the id before storing). Repair only pushes: a chunk this node lacks is pushed to
//! it by the repair of a node that holds it.
//!
//! # Rebalance
//!
//! For each local chunk the map does not place on this node (after a map change), the
//! replicas placement names are asked `touch` (have it? and if so, refresh its reference
//! time, so GC's hold protects the copy that stays as it protected the one moved), those
//! lacking it get the payload, and then all of them are asked `have` again: only when every
//! replica the placement names answers yes is the local copy deleted. A chunk is therefore never deleted while a placement replica cannot
//! be reached, refuses the copy, or does not confirm it, nor when the placement is empty; and
//! only the replicas placement names receive copies. If the backend's map changes during a
//! pass, the pass stops before its next deletion (the next pass works with the new map).
//!
//! # Scrub
//!
//! Every local copy is read and re-hashed. A copy that fails verification (or whose index
//! entry has no payload) is replaced, under the chunk's stripe lock
//! ([`ChunkStore::replace`]), by a copy fetched from another replica — the current placement's
//! first, then the previous map's — that verifies both on the sender and here. When no
//! replica has a good copy the chunk counts as unrepaired and is left as it is: scrub never
//! deletes a copy, except a corrupt *cached* one.
//!
//! # Cached chunks
//!
//! Chunks this node fetched through a metadata-only link ([`ChunkStore::put_cached`]) are an
//! evictable copy of another site's data kept outside placement: repair and rebalance skip
//! them (no replica should hold them, and they stay where the reads that fetched them are);
//! scrub deletes a corrupt one, which the next read fetches again.
//!
//! # Failures and bounds
//!
//! A failed call (unreachable node, timeout, refusal) counts one error, becomes the worker's
//! last error (naming the node), and the pass goes on with other chunks; a node whose call
//! failed on the transport (kind `Io`) is not called again in this pass, so a stopped node
//! costs one call timeout per pass, not one per chunk. A pass fails as a whole only when the
//! local store cannot be listed. Each worker has its own [`RateLimiter`] on payload bytes read
//! and sent per second, pages of at most [`MAX_IDS_PER_CALL`] ids, and at most
//! [`MaintenanceConfig::max_in_flight`] pushes, fetches or `have` calls at once; one pass of
//! each worker runs at a time (a second one fails at once). Progress is readable while a pass
//! runs ([`WorkerProgress`], [`ChunkMaintenance::render_prometheus`]).
//!
//! # Threads
//!
//! Passes are async and run on tokio; local store calls run on the blocking pool.

mod progress;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use cairn_core::cluster::{ClusterMap, NodeId, Role};
use cairn_core::placement::Placer;
use cairn_core::{ChunkId, ErrorKind};
use futures::stream::{self, StreamExt};

pub use cairn_net::RateLimiter;
pub use progress::{render_prometheus, PassReport, WorkerKind, WorkerProgress, WorkerSnapshot};

use crate::rpc::MAX_IDS_PER_CALL;
use crate::{ChunkError, ChunkStore, ReplicatedChunks};
use progress::Pass;

/// Limits of the maintenance workers.
#[derive(Clone, Debug)]
pub struct MaintenanceConfig {
    /// Local ids per page of a pass, and so at most ids per `have` call (capped at
    /// [`MAX_IDS_PER_CALL`]).
    pub batch_size: usize,
    /// Pushes, fetches, reads or `have` calls a pass runs at once.
    pub max_in_flight: usize,
    /// Repair's payload bytes read and sent per second (0 = unlimited).
    pub repair_bytes_per_sec: u64,
    /// Rebalance's payload bytes read and sent per second (0 = unlimited).
    pub rebalance_bytes_per_sec: u64,
    /// Scrub's payload bytes read (and fetched for repairs) per second (0 = unlimited).
    pub scrub_bytes_per_sec: u64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            batch_size: 1000,
            max_in_flight: 4,
            repair_bytes_per_sec: 64 << 20,
            rebalance_bytes_per_sec: 64 << 20,
            scrub_bytes_per_sec: 32 << 20,
        }
    }
}

struct Worker {
    progress: WorkerProgress,
    limiter: RateLimiter,
}

/// The repair, rebalance and scrub workers of one chunk node (see the module docs).
pub struct ChunkMaintenance {
    backend: Arc<ReplicatedChunks>,
    node: NodeId,
    store: Arc<ChunkStore>,
    batch: usize,
    in_flight: usize,
    workers: [Worker; 3],
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ChunkError> + Send + 'static,
) -> Result<T, ChunkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ChunkError::Io(format!("chunk store task failed: {e}")))?
}

/// A chunk a placement pass handles and the replicas it checks (this node excluded).
struct Item {
    id: ChunkId,
    replicas: Vec<NodeId>,
    /// Per replica: holds it (`Some(true)`), lacks it, or unknown (the call failed).
    holds: Vec<Option<bool>>,
}

/// A replica that lacks a chunk: its position among the item's replicas, and its id.
type Lacking = (usize, NodeId);

/// What pushing one chunk did.
struct PushOutcome {
    index: usize,
    /// Payload bytes per successful push.
    pushed: Vec<u64>,
    /// Replicas that took it.
    took: Vec<usize>,
    /// The local copy was gone.
    gone: bool,
    errors: Vec<(Option<NodeId>, ChunkError, String)>,
}

impl ChunkMaintenance {
    /// The workers of the node `backend` stores locally on. Fails when the backend has no
    /// local store (a gateway: it has nothing to maintain).
    pub fn new(
        backend: Arc<ReplicatedChunks>,
        config: MaintenanceConfig,
    ) -> Result<Self, ChunkError> {
        let (node, store) = backend.local().ok_or_else(|| {
            ChunkError::Io("chunk maintenance needs a backend with a local store".into())
        })?;
        let worker = |kind, rate| Worker {
            progress: WorkerProgress::new(kind),
            limiter: RateLimiter::new(rate),
        };
        Ok(ChunkMaintenance {
            backend,
            node,
            store,
            batch: config.batch_size.clamp(1, MAX_IDS_PER_CALL),
            in_flight: config.max_in_flight.max(1),
            workers: [
                worker(WorkerKind::Repair, config.repair_bytes_per_sec),
                worker(WorkerKind::Rebalance, config.rebalance_bytes_per_sec),
                worker(WorkerKind::Scrub, config.scrub_bytes_per_sec),
            ],
        })
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    fn worker(&self, kind: WorkerKind) -> &Worker {
        let i = match kind {
            WorkerKind::Repair => 0,
            WorkerKind::Rebalance => 1,
            WorkerKind::Scrub => 2,
        };
        &self.workers[i]
    }

    /// A worker's progress.
    pub fn progress(&self, kind: WorkerKind) -> &WorkerProgress {
        &self.worker(kind).progress
    }

    /// A worker's rate limiter (its rate can be changed while it runs).
    pub fn limiter(&self, kind: WorkerKind) -> &RateLimiter {
        &self.worker(kind).limiter
    }

    /// Every worker's progress.
    pub fn snapshots(&self) -> Vec<WorkerSnapshot> {
        self.workers.iter().map(|w| w.progress.snapshot()).collect()
    }

    /// Prometheus lines of the three workers (see [`render_prometheus`]).
    pub fn render_prometheus(&self, out: &mut String) {
        let workers: Vec<&WorkerProgress> = self.workers.iter().map(|w| &w.progress).collect();
        render_prometheus(&workers, out);
    }

    /// Runs one pass of `kind`.
    pub async fn run_pass(&self, kind: WorkerKind) -> Result<PassReport, ChunkError> {
        match kind {
            WorkerKind::Repair => self.repair_pass().await,
            WorkerKind::Rebalance => self.rebalance_pass().await,
            WorkerKind::Scrub => self.scrub_pass().await,
        }
    }

    /// One repair pass (see the module docs).
    pub async fn repair_pass(&self) -> Result<PassReport, ChunkError> {
        let mut pass = self.progress(WorkerKind::Repair).begin()?;
        let result = self.placement_pass(WorkerKind::Repair, &mut pass).await;
        pass.end(result)
    }

    /// One rebalance pass (see the module docs).
    pub async fn rebalance_pass(&self) -> Result<PassReport, ChunkError> {
        let mut pass = self.progress(WorkerKind::Rebalance).begin()?;
        let result = self.placement_pass(WorkerKind::Rebalance, &mut pass).await;
        pass.end(result)
    }

    /// One scrub pass (see the module docs).
    pub async fn scrub_pass(&self) -> Result<PassReport, ChunkError> {
        let mut pass = self.progress(WorkerKind::Scrub).begin()?;
        let result = self.scrub(&mut pass).await;
        pass.end(result)
    }

    /// The next page of local ids after `after`.
    async fn page(&self, after: Option<ChunkId>) -> Result<Vec<ChunkId>, ChunkError> {
        let (store, max) = (self.store.clone(), self.batch);
        blocking(move || store.list_ids(after.as_ref(), max)).await
    }

    /// Repair or rebalance: one walk of the local store.
    async fn placement_pass(
        &self,
        kind: WorkerKind,
        pass: &mut Pass<'_>,
    ) -> Result<(), ChunkError> {
        let map = self.backend.map();
        let placer = Placer::new(&map, Role::Chunk);
        let rf = usize::from(map.replication_factor);
        let mut down: HashSet<NodeId> = HashSet::new();
        let mut unplaced = 0u64;
        let mut after = None;
        loop {
            let page = self.page(after).await?;
            let Some(last) = page.last() else { break };
            after = Some(*last);
            pass.scanned(page.len() as u64);
            let mut items = Vec::new();
            for id in page {
                // A cached chunk (fetched through a metadata-only link) is this node's
                // evictable copy of another site's data, outside placement: neither copied
                // to replicas nor moved (see the replicated module's "fetch cache").
                if self.store.is_cached(&id) {
                    continue;
                }
                let placed = placer.place(id.as_bytes(), rf);
                let mine = placed.contains(&self.node);
                let wanted = match kind {
                    WorkerKind::Repair => mine,
                    _ => !mine,
                };
                if !wanted {
                    continue;
                }
                if placed.is_empty() {
                    unplaced += 1;
                    continue;
                }
                let replicas: Vec<NodeId> =
                    placed.into_iter().filter(|n| *n != self.node).collect();
                if replicas.is_empty() {
                    continue;
                }
                items.push(Item {
                    id,
                    holds: vec![None; replicas.len()],
                    replicas,
                });
            }
            if items.is_empty() {
                continue;
            }
            self.ask(kind, &mut items, &mut down, pass).await;
            let gone = self.push(kind, &mut items, &mut down, pass).await;
            if kind == WorkerKind::Rebalance {
                let keep_going = self.drop_moved(&map, items, &gone, &mut down, pass).await?;
                if !keep_going {
                    break;
                }
            }
        }
        if unplaced > 0 {
            pass.error(format!(
                "{} chunks are placed on no node by the map (epoch {}): kept here",
                unplaced, map.epoch
            ));
        }
        Ok(())
    }

    /// Fills each item's `holds` with the replicas' `have` answers (batched per node); a
    /// failed call leaves them unknown.
    async fn ask(
        &self,
        kind: WorkerKind,
        items: &mut [Item],
        down: &mut HashSet<NodeId>,
        pass: &mut Pass<'_>,
    ) {
        let mut by_node: BTreeMap<NodeId, Vec<(usize, usize)>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            for (j, node) in item.replicas.iter().enumerate() {
                if !down.contains(node) {
                    by_node.entry(*node).or_default().push((i, j));
                }
            }
        }
        let calls: Vec<(NodeId, Vec<(usize, usize)>)> = by_node
            .into_iter()
            .flat_map(|(node, pos)| {
                pos.chunks(self.batch)
                    .map(|p| (node, p.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let backend = &self.backend;
        let ids: Vec<ChunkId> = items.iter().map(|i| i.id).collect();
        let ids = &ids;
        let mut answers = stream::iter(calls)
            .map(|(node, pos)| async move {
                let asked: Vec<ChunkId> = pos.iter().map(|&(i, _)| ids[i]).collect();
                let result = async {
                    let remote = backend.remote(node).await?;
                    match kind {
                        // A copy that stays is this node's copy moved: refreshed as a dedup
                        // put would, so a sweep there cannot drop it (unmarked while its
                        // write's manifest is not applied yet) once this copy is deleted.
                        WorkerKind::Rebalance => remote.touch(&asked, None).await,
                        _ => remote.have(&asked).await,
                    }
                }
                .await;
                (node, pos, result)
            })
            .buffer_unordered(self.in_flight);
        while let Some((node, pos, result)) = answers.next().await {
            match result {
                Ok(present) => {
                    for (&(i, j), has) in pos.iter().zip(present) {
                        items[i].holds[j] = Some(has);
                    }
                }
                Err(e) => {
                    pass.error(format!(
                        "{}: have of {} chunks on node {}: {e}",
                        kind.name(),
                        pos.len(),
                        self.backend.node_label(node)
                    ));
                    if e.kind() == ErrorKind::Io {
                        down.insert(node);
                    }
                }
            }
        }
    }

    /// Sends each item's local payload to its replicas that said they lack it; returns the
    /// items whose local copy was gone meanwhile.
    async fn push(
        &self,
        kind: WorkerKind,
        items: &mut [Item],
        down: &mut HashSet<NodeId>,
        pass: &mut Pass<'_>,
    ) -> HashSet<usize> {
        let limiter = &self.worker(kind).limiter;
        let todo: Vec<(usize, ChunkId, Vec<Lacking>)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let lacking: Vec<Lacking> = item
                    .holds
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| **h == Some(false))
                    .map(|(j, _)| (j, item.replicas[j]))
                    .collect();
                (!lacking.is_empty()).then_some((i, item.id, lacking))
            })
            .collect();
        let snapshot_down = down.clone();
        let snapshot_down = &snapshot_down;
        let mut outcomes = stream::iter(todo)
            .map(|(index, id, lacking)| async move {
                let mut out = PushOutcome {
                    index,
                    pushed: Vec::new(),
                    took: Vec::new(),
                    gone: false,
                    errors: Vec::new(),
                };
                let store = self.store.clone();
                // The copy pushed keeps the local copy's owner, so every replica counts the
                // chunk for the bucket that stored it first.
                let (chunk, owner) = match blocking(move || store.get_stored_owned(&id)).await {
                    Ok(Some(c)) => c,
                    Ok(None) => {
                        out.gone = true;
                        return out;
                    }
                    Err(e) => {
                        let msg = format!("{}: reading local chunk {id}: {e}", kind.name());
                        out.errors.push((None, e, msg));
                        return out;
                    }
                };
                let len = chunk.payload.len() as u64;
                for (j, node) in lacking {
                    if snapshot_down.contains(&node) {
                        continue;
                    }
                    limiter.acquire(len).await;
                    let result = async {
                        let remote = self.backend.remote(node).await?;
                        remote.put_owned(&id, &chunk, owner).await
                    };
                    match result.await {
                        Ok(_) => {
                            out.pushed.push(len);
                            out.took.push(j);
                        }
                        Err(e) => {
                            let msg = format!(
                                "{}: push of chunk {id} to node {}: {e}",
                                kind.name(),
                                self.backend.node_label(node)
                            );
                            out.errors.push((Some(node), e, msg));
                        }
                    }
                }
                out
            })
            .buffer_unordered(self.in_flight);
        let mut gone = HashSet::new();
        while let Some(out) = outcomes.next().await {
            for bytes in out.pushed {
                pass.pushed(bytes);
            }
            for j in out.took {
                items[out.index].holds[j] = Some(true);
            }
            if out.gone {
                gone.insert(out.index);
            }
            for (node, e, msg) in out.errors {
                if let Some(node) = node.filter(|_| e.kind() == ErrorKind::Io) {
                    down.insert(node);
                }
                pass.error(msg);
            }
        }
        gone
    }

    /// Rebalance's last step for a page: asks every placement replica again and deletes the
    /// local copies all of them confirm. Returns false when the map changed (the pass stops).
    async fn drop_moved(
        &self,
        map: &ClusterMap,
        items: Vec<Item>,
        gone: &HashSet<usize>,
        down: &mut HashSet<NodeId>,
        pass: &mut Pass<'_>,
    ) -> Result<bool, ChunkError> {
        // Only chunks every replica held or took; ask them all again.
        let mut candidates: Vec<Item> = items
            .into_iter()
            .enumerate()
            .filter(|(i, item)| !gone.contains(i) && item.holds.iter().all(|h| *h == Some(true)))
            .map(|(_, mut item)| {
                item.holds = vec![None; item.replicas.len()];
                item
            })
            .collect();
        if candidates.is_empty() {
            return Ok(true);
        }
        self.ask(WorkerKind::Rebalance, &mut candidates, down, pass)
            .await;
        let confirmed: Vec<ChunkId> = candidates
            .iter()
            .filter(|item| !item.replicas.is_empty() && item.holds.iter().all(|h| *h == Some(true)))
            .map(|item| item.id)
            .collect();
        if confirmed.is_empty() {
            return Ok(true);
        }
        if self.backend.map().epoch != map.epoch {
            tracing::info!(
                epoch = map.epoch,
                "the cluster map changed during a rebalance pass: it stops before deleting"
            );
            return Ok(false);
        }
        let store = self.store.clone();
        let existed = blocking(move || store.delete_many(&confirmed)).await?;
        pass.deleted(existed.iter().filter(|e| **e).count() as u64);
        Ok(true)
    }

    /// Scrub: one walk of the local store, verifying every copy.
    async fn scrub(&self, pass: &mut Pass<'_>) -> Result<(), ChunkError> {
        let map = self.backend.map();
        let placer = Placer::new(&map, Role::Chunk);
        let rf = usize::from(map.replication_factor);
        let limiter = &self.worker(WorkerKind::Scrub).limiter;
        let mut after = None;
        loop {
            let page = self.page(after).await?;
            let Some(last) = page.last() else { break };
            after = Some(*last);
            let mut checks = stream::iter(page)
                .map(|id| async move {
                    let store = self.store.clone();
                    let result = blocking(move || match store.get_stored(&id)? {
                        None => Ok(None),
                        Some(c) => c.decode_verified(&id).map(|_| Some(c.payload.len() as u64)),
                    })
                    .await;
                    if let Ok(Some(len)) = result {
                        limiter.acquire(len).await;
                    }
                    (id, result)
                })
                .buffer_unordered(self.in_flight);
            while let Some((id, result)) = checks.next().await {
                pass.scanned(1);
                match result {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Corrupt && self.store.is_cached(&id) => {
                        // A corrupt cached copy is dropped: the next read fetches it again
                        // from the linked site (no replica here has it).
                        pass.corrupt_found();
                        let store = self.store.clone();
                        match blocking(move || store.delete(&id)).await {
                            Ok(_) => {
                                tracing::warn!(chunk = %id,
                                    "scrub dropped a corrupt cached chunk (it is fetched again)");
                                pass.corrupt_repaired();
                            }
                            Err(d) => pass.error(format!(
                                "scrub: cached chunk {id} is corrupt ({e}) and could not be \
                                 dropped: {d}"
                            )),
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Corrupt => {
                        pass.corrupt_found();
                        self.repair_copy(id, &placer, rf, e, pass).await;
                    }
                    Err(e) => pass.error(format!("scrub: reading local chunk {id}: {e}")),
                }
            }
        }
        Ok(())
    }

    /// Replaces the corrupt local copy of `id` with a good one from another replica.
    async fn repair_copy(
        &self,
        id: ChunkId,
        placer: &Placer,
        rf: usize,
        found: ChunkError,
        pass: &mut Pass<'_>,
    ) {
        let mut sources = placer.place(id.as_bytes(), rf);
        for n in self.backend.previous_replicas(&id) {
            if !sources.contains(&n) {
                sources.push(n);
            }
        }
        sources.retain(|n| *n != self.node);
        let limiter = &self.worker(WorkerKind::Scrub).limiter;
        let mut details = Vec::new();
        for node in sources {
            let label = self.backend.node_label(node);
            let fetched = async { self.backend.remote(node).await?.get(&id).await }.await;
            let chunk = match fetched {
                Ok(Some(c)) => c,
                Ok(None) => {
                    details.push(format!("{label}: does not have it"));
                    continue;
                }
                Err(e) => {
                    details.push(format!("{label}: {e}"));
                    continue;
                }
            };
            limiter.acquire(chunk.payload.len() as u64).await;
            let store = self.store.clone();
            // `replace` checks the copy against the id before writing it.
            match blocking(move || store.replace(&id, &chunk)).await {
                Ok(_) => {
                    tracing::info!(chunk = %id, from = %label, "scrub replaced a corrupt copy");
                    pass.corrupt_repaired();
                    return;
                }
                Err(e) => details.push(format!("{label}: {e}")),
            }
        }
        if details.is_empty() {
            details.push("no other replica to fetch from".into());
        }
        pass.corrupt_unrepaired();
        pass.error(format!(
            "scrub: chunk {id} is corrupt here ({found}) and no replica gave a good copy: {}",
            details.join("; ")
        ));
    }
}
