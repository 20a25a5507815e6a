//! A [`ChunkBackend`] that keeps every chunk on the replica nodes placement gives it.
//!
//! [`ReplicatedChunks`] is what a node (a gateway, or a chunk server itself) stores chunks in
//! when the site has several nodes. It holds the site's [`ClusterMap`] and places each chunk by
//! its id (weighted rendezvous hashing, distinct zones first, primary first: see
//! `cairn_core::placement`) on the map's replication factor (RF) of chunk nodes. The replicas
//! are reached through their chunk service ([`RemoteChunks`]); a replica that is this node is
//! written and read in its own [`ChunkStore`], without a call.
//!
//! # Writes
//!
//! A put goes to every replica at once. Each remote replica is asked "have it?" first and gets
//! the payload only if it lacks it (the payload is copied once per put and shared by the
//! replicas' sends). The put returns when the map's write quorum W of replicas hold the chunk
//! durably — each replica acknowledges only after its synced write — and fails, naming every
//! replica that failed and why, as soon as fewer than W can still succeed. Replicas still
//! outstanding when the quorum is reached finish in the background (each bounded by the call
//! timeouts); one that fails then is logged, and repair copies the chunk to it later.
//!
//! A replica that refuses the put for lack of disk space (`NoSpace`: its node is near full)
//! is remembered for [`FULL_FOR`], renewed by each refusal: puts meanwhile write, in its
//! place, the next node of the chunk's placement ranking that is not full (zones are not
//! re-balanced for the substitute), and fail with `NoSpace` when fewer than W nodes with space
//! remain. Gets also try those next nodes, after the replicas; rebalance moves such chunks to
//! their placement once the full node takes writes again.
//!
//! # Reads
//!
//! A get tries the replicas one at a time in placement order, this node first when it is one
//! of them, then the replicas of the previous map (the map before the last [`set_map`]) that
//! the current placement does not name, so chunks not yet moved after a map change are still
//! found. A replica that does not have the chunk, holds a copy that fails verification, or
//! cannot be reached is skipped; the first copy that decodes to bytes hashing to the id is
//! returned. The answer is `None` only when every replica said it does not have the chunk, and
//! an error (naming the replicas and their failures) when some failed and none had it. A node
//! whose read failed on the transport (unreachable, timed out) is tried last by every get for
//! the next ten seconds, so a stopped node costs one call timeout, not one per chunk it leads.
//!
//! # The fetch cache
//!
//! On a site that receives a link's versions as metadata only, the node that runs the link
//! keeps the chunks it fetched from the linked site in its own store as *cached* chunks
//! ([`ChunkStore::put_cached`]), outside placement: they are a bounded, evictable copy of data
//! the other site holds, not one of this site's replicas (repair and rebalance leave them
//! where they are, see the maintenance module). Gets on that node try its cached copy first;
//! the other nodes reach it with [`ReplicatedChunks::fetch_from_peers`] (the chunk service's
//! `Fetch`), which that node answers from its store or by fetching.
//!
//! # Bounds
//!
//! - every call has the configured deadline ([`ReplicationConfig::call_timeout`]), and a get's
//!   payload must arrive within [`ReplicationConfig::body_timeout`] of its response head;
//! - puts in flight, background replica writes included, are at most
//!   [`ReplicationConfig::max_puts_in_flight`], so at most that many payloads are held: a put
//!   beyond it waits for one to finish;
//! - batch calls (`has_many`, `stats`) make at most [`ReplicationConfig::max_calls_in_flight`]
//!   calls at once, each of at most [`MAX_IDS_PER_CALL`] ids.
//!
//! # Threads
//!
//! The [`ChunkBackend`] methods block: they run the network calls on the runtime given to
//! [`ReplicatedChunks::new`] and wait with `Handle::block_on`. Call them from a blocking
//! thread (`tokio::task::spawn_blocking`, as the client library does) or a thread outside the
//! runtime, never from async code: `block_on` inside a runtime's async context panics.
//!
//! [`set_map`]: ReplicatedChunks::set_map

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_core::cluster::{node_id_hex, ClusterMap, NodeId, Role};
use cairn_core::codec::Codec;
use cairn_core::placement::{Placer, ReplicaCensus, ReplicaCount};
use cairn_core::{ChunkId, ErrorKind, MAX_CHUNK_SIZE};
use cairn_net::{Client, RpcError};
use futures::stream::{self, StreamExt};
use parking_lot::RwLock;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Semaphore};

use crate::rpc::{DEFAULT_BODY_TIMEOUT, MAX_IDS_PER_CALL};
use crate::store::MAX_STORED_LEN;
use crate::{
    CacheStats, ChunkBackend, ChunkError, ChunkStats, ChunkStore, OwnerUsage, RemoteChunks,
    StoredChunk,
};

/// Limits and timers of a [`ReplicatedChunks`].
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// Deadline of each call to a replica (connecting, sending, receiving the answer's head);
    /// also bounds resolving a replica's host name.
    pub call_timeout: Duration,
    /// How long a get waits for a replica's payload after its answer's head.
    pub body_timeout: Duration,
    /// Puts in flight at once, their background replica writes included; more wait.
    pub max_puts_in_flight: usize,
    /// Calls one batch operation (`has_many`, `stats`) makes at once.
    pub max_calls_in_flight: usize,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            call_timeout: Duration::from_secs(30),
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_puts_in_flight: 64,
            max_calls_in_flight: 16,
        }
    }
}

/// Running totals of a [`ReplicatedChunks`], for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicationCounters {
    /// Payloads sent to remote replicas (each replica that lacked a chunk).
    pub payloads_sent: u64,
    /// Remote replica writes that sent no payload: the replica had the chunk.
    pub payloads_skipped: u64,
    /// Replica writes (local or remote) that failed, background ones included.
    pub replica_write_failures: u64,
    /// Replicas a get skipped (not found, corrupt, unreachable) before a good copy.
    pub read_fallbacks: u64,
}

#[derive(Default)]
struct Counters {
    payloads_sent: AtomicU64,
    payloads_skipped: AtomicU64,
    replica_write_failures: AtomicU64,
    read_fallbacks: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// How a replica is reached.
type Reach = cairn_net::Reach<Arc<ChunkStore>, RemoteChunks>;

/// One node of the map, as this backend reaches it.
type Node = cairn_net::MapNode<Arc<ChunkStore>, RemoteChunks>;

/// What does not change with the map.
struct Shared {
    client: Client,
    config: ReplicationConfig,
    local: Option<(NodeId, Arc<ChunkStore>)>,
    put_slots: Arc<Semaphore>,
    counters: Counters,
    /// Nodes whose last read failed on the transport (unreachable, timed out), until when
    /// gets try them last: a stopped node then costs one timeout, not one per read.
    suspects: parking_lot::Mutex<std::collections::HashMap<NodeId, std::time::Instant>>,
    /// Nodes that refuse new chunks for lack of disk space (their answer to a put, or their
    /// disk state as the cluster gossip reports it), until when puts place around them.
    full: parking_lot::Mutex<std::collections::HashMap<NodeId, std::time::Instant>>,
}

/// How long a node that refused a put for lack of space is placed around (each refusal or
/// report renews it; the node's disk worker reports it has space again by no longer refusing).
const FULL_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// One map's placement and nodes.
struct State {
    map: ClusterMap,
    placer: Placer,
    rf: usize,
    quorum: usize,
    /// The previous map's placement, tried by gets after the current one.
    previous: Option<(Placer, usize)>,
    /// Every node of the map and of the previous map, by id.
    nodes: HashMap<NodeId, Arc<Node>>,
}

impl State {
    /// The calls that ask each node about its ids (positions into the caller's list), at most
    /// `MAX_IDS_PER_CALL` ids each; nodes not in the map are left out.
    fn calls_by_node(&self, by_node: HashMap<NodeId, Vec<usize>>) -> Vec<(Arc<Node>, Vec<usize>)> {
        by_node
            .into_iter()
            .filter_map(|(n, positions)| self.nodes.get(&n).map(|node| (node.clone(), positions)))
            .flat_map(|(node, positions)| {
                positions
                    .chunks(MAX_IDS_PER_CALL)
                    .map(|p| (node.clone(), p.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The replica nodes of `id`, primary first.
    fn replicas(&self, id: &ChunkId) -> Vec<Arc<Node>> {
        self.placer
            .place(id.as_bytes(), self.rf)
            .into_iter()
            .filter_map(|n| self.nodes.get(&n).cloned())
            .collect()
    }

    /// The nodes a put writes: the replicas, except that each one in `full` is replaced by
    /// the next node of the chunk's ranking that is not full (so a full node's share of new
    /// chunks goes to the nodes placement would pick after it; rebalance moves them back once
    /// it takes writes again).
    fn write_replicas(&self, id: &ChunkId, full: &dyn Fn(NodeId) -> bool) -> Vec<Arc<Node>> {
        let ranked = self.placer.place(id.as_bytes(), self.placer.candidates());
        let (placed, rest) = ranked.split_at(self.rf.min(ranked.len()));
        let mut out: Vec<NodeId> = placed.iter().copied().filter(|n| !full(*n)).collect();
        let missing = placed.len() - out.len();
        out.extend(rest.iter().copied().filter(|n| !full(*n)).take(missing));
        out.into_iter()
            .filter_map(|n| self.nodes.get(&n).cloned())
            .collect()
    }

    /// The nodes a get tries, in order: the replicas (a local one first), then the previous
    /// map's replicas not among them, then the nodes a put places a chunk on when replicas
    /// are full (the next `rf` of the chunk's ranking).
    fn read_order(&self, id: &ChunkId) -> Vec<Arc<Node>> {
        let mut ids = self.placer.place(id.as_bytes(), self.rf);
        if let Some(pos) = ids
            .iter()
            .position(|n| matches!(self.nodes.get(n).map(|n| &n.reach), Some(Reach::Local(_))))
        {
            let local = ids.remove(pos);
            ids.insert(0, local);
        }
        if let Some((placer, rf)) = &self.previous {
            for n in placer.place(id.as_bytes(), *rf) {
                if !ids.contains(&n) {
                    ids.push(n);
                }
            }
        }
        for n in self
            .placer
            .place(id.as_bytes(), 2 * self.rf)
            .into_iter()
            .skip(self.rf)
        {
            if !ids.contains(&n) {
                ids.push(n);
            }
        }
        ids.into_iter()
            .filter_map(|n| self.nodes.get(&n).cloned())
            .collect()
    }
}

/// How long [`ReplicatedChunks::peers_that_fetch`] waits for each node's answer.
const FETCHES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a node whose read failed on the transport is tried last by gets.
const SUSPECT_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Chunks replicated over the chunk nodes of a site's cluster map (see the module docs).
pub struct ReplicatedChunks {
    handle: Handle,
    shared: Arc<Shared>,
    state: RwLock<Arc<State>>,
}

impl ReplicatedChunks {
    /// A backend placing chunks with `map`, calling other nodes through `client` on the runtime
    /// of `handle`. `local` is this node's id and store when this node holds chunks (its
    /// replicas are written and read there, without a call); `None` for a node that holds
    /// none, such as a gateway.
    pub fn new(
        map: ClusterMap,
        local: Option<(NodeId, Arc<ChunkStore>)>,
        client: Client,
        handle: Handle,
    ) -> Self {
        Self::with_config(map, local, client, handle, ReplicationConfig::default())
    }

    /// [`ReplicatedChunks::new`] with other limits and timers.
    pub fn with_config(
        map: ClusterMap,
        local: Option<(NodeId, Arc<ChunkStore>)>,
        client: Client,
        handle: Handle,
        config: ReplicationConfig,
    ) -> Self {
        let shared = Arc::new(Shared {
            client,
            put_slots: Arc::new(Semaphore::new(config.max_puts_in_flight.max(1))),
            config,
            local,
            counters: Counters::default(),
            suspects: parking_lot::Mutex::new(std::collections::HashMap::new()),
            full: parking_lot::Mutex::new(std::collections::HashMap::new()),
        });
        let state = build_state(&shared, map, None);
        ReplicatedChunks {
            handle,
            shared,
            state: RwLock::new(Arc::new(state)),
        }
    }

    /// Takes `map` as the current map if its epoch is newer than the current one's (returns
    /// whether it did). Operations already running finish with the map they started with;
    /// gets keep trying the replaced map's replicas after the new ones until the next change.
    pub fn set_map(&self, map: ClusterMap) -> bool {
        let mut state = self.state.write();
        if map.epoch <= state.map.epoch {
            return false;
        }
        let next = build_state(&self.shared, map, Some(&state));
        *state = Arc::new(next);
        true
    }

    /// Records that node `node` refuses new chunks for lack of space (its disk state, as the
    /// cluster reports it): puts place around it for a while (see [`ReplicatedChunks`]'s
    /// module docs). A node that took writes again is simply not reported any more.
    pub fn set_node_full(&self, node: NodeId) {
        self.shared
            .full
            .lock()
            .insert(node, std::time::Instant::now() + FULL_FOR);
    }

    /// Nodes puts place around now (they refused a put, or were reported, for lack of space).
    pub fn full_nodes(&self) -> Vec<NodeId> {
        let now = std::time::Instant::now();
        let mut full = self.shared.full.lock();
        full.retain(|_, until| *until > now);
        full.keys().copied().collect()
    }

    /// The current map.
    pub fn map(&self) -> ClusterMap {
        self.state().map.clone()
    }

    /// The replica nodes of chunk `id` under the current map, primary first.
    pub fn replicas(&self, id: &ChunkId) -> Vec<NodeId> {
        self.state().replicas(id).iter().map(|n| n.id).collect()
    }

    /// The replica nodes of chunk `id` under the previous map (the one before the last
    /// [`set_map`](ReplicatedChunks::set_map)), primary first; empty when the map never changed.
    pub fn previous_replicas(&self, id: &ChunkId) -> Vec<NodeId> {
        match &self.state().previous {
            Some((placer, rf)) => placer.place(id.as_bytes(), *rf),
            None => Vec::new(),
        }
    }

    /// This node's id and store, when it holds chunks (as given to [`ReplicatedChunks::new`]).
    pub fn local(&self) -> Option<(NodeId, Arc<ChunkStore>)> {
        self.shared.local.clone()
    }

    /// The chunk service of node `node` of the current or previous map, reached as this
    /// backend reaches its replicas (same client, call deadline and body timeout; a host name
    /// is resolved now). Fails for this node itself and for a node neither map names.
    pub async fn remote(&self, node: NodeId) -> Result<RemoteChunks, ChunkError> {
        let found = self.state().nodes.get(&node).cloned();
        match found {
            Some(n) => self.shared.connect(&n).await,
            None => Err(ChunkError::Io(format!(
                "node {} is not in the cluster map",
                node_id_hex(node)
            ))),
        }
    }

    /// `name (id)` of a node of the current or previous map (the id alone for another node),
    /// for messages.
    pub fn node_label(&self, node: NodeId) -> String {
        match self.state().nodes.get(&node) {
            Some(n) => n.label(),
            None => node_id_hex(node),
        }
    }

    /// The running totals.
    pub fn counters(&self) -> ReplicationCounters {
        let c = &self.shared.counters;
        ReplicationCounters {
            payloads_sent: c.payloads_sent.load(Ordering::Relaxed),
            payloads_skipped: c.payloads_skipped.load(Ordering::Relaxed),
            replica_write_failures: c.replica_write_failures.load(Ordering::Relaxed),
            read_fallbacks: c.read_fallbacks.load(Ordering::Relaxed),
        }
    }

    fn state(&self) -> Arc<State> {
        self.state.read().clone()
    }

    /// How many replicas of each id answered that they hold it (with `touch`, refreshing
    /// each copy found). A replica that cannot be asked counts as not holding it; fails only
    /// when ids were asked about and no replica could be asked at all.
    fn holders(
        &self,
        state: &State,
        ids: &[ChunkId],
        touch: bool,
    ) -> Result<Vec<usize>, ChunkError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut by_node: HashMap<NodeId, Vec<usize>> = HashMap::new();
        for (pos, id) in ids.iter().enumerate() {
            for node in state.placer.place(id.as_bytes(), state.rf) {
                by_node.entry(node).or_default().push(pos);
            }
        }
        let batches = state.calls_by_node(by_node);
        let mut yes = vec![0usize; ids.len()];
        let mut answered = false;
        let mut last_error = None;
        let shared = &self.shared;
        self.handle.block_on(async {
            let mut calls = stream::iter(batches)
                .map(|(node, positions)| async move {
                    let asked: Vec<ChunkId> = positions.iter().map(|&p| ids[p]).collect();
                    let result = shared.have(&node, &asked, touch).await;
                    (node, positions, result)
                })
                .buffer_unordered(shared.config.max_calls_in_flight.max(1));
            while let Some((node, positions, result)) = calls.next().await {
                match result {
                    Ok(present) => {
                        answered = true;
                        for (&p, &has) in positions.iter().zip(&present) {
                            if has {
                                yes[p] += 1;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(node = %node.label(), error = %e,
                            "have call failed; its chunks count as missing there");
                        last_error = Some(e);
                    }
                }
            }
        });
        match last_error {
            Some(e) if !answered => Err(e),
            _ => Ok(yes),
        }
    }
}

impl ReplicatedChunks {
    /// Whether `node` counts as down for a census: its last call failed on the transport
    /// (the map gossip renews that every few seconds while it stays down).
    fn seems_down(&self, node: &Node) -> bool {
        if matches!(node.reach, Reach::Local(_)) {
            return false;
        }
        let now = std::time::Instant::now();
        let suspected = self
            .shared
            .suspects
            .lock()
            .get(&node.id)
            .is_some_and(|until| *until > now);
        suspected || self.shared.client.is_suspect(&node.name)
    }

    /// See [`ChunkBackend::replica_census`]: each id's replicas under the current placement
    /// (the one repair restores) are asked whether they hold it, batched per node as
    /// `has_many` does; a node that seems down is not called (its replicas count as
    /// unreachable, so a census costs no call timeout per stopped node), and one whose call
    /// fails counts as unreachable for the ids it was asked about.
    fn census(&self, ids: &[ChunkId]) -> Result<ReplicaCensus, ChunkError> {
        let state = self.state();
        let chunk_nodes: Vec<&cairn_core::NodeInfo> = state
            .map
            .nodes
            .values()
            .filter(|n| n.roles.has(Role::Chunk))
            .collect();
        let mut down: std::collections::BTreeSet<NodeId> = chunk_nodes
            .iter()
            .filter_map(|n| state.nodes.get(&n.id))
            .filter(|n| self.seems_down(n))
            .map(|n| n.id)
            .collect();
        let mut counts = vec![ReplicaCount::default(); ids.len()];
        let mut by_node: HashMap<NodeId, Vec<usize>> = HashMap::new();
        for (pos, id) in ids.iter().enumerate() {
            let placed = state.placer.place(id.as_bytes(), state.rf);
            counts[pos].wanted = u8::try_from(placed.len()).unwrap_or(u8::MAX);
            for node in placed {
                if down.contains(&node) || !state.nodes.contains_key(&node) {
                    counts[pos].unreachable += 1;
                } else {
                    by_node.entry(node).or_default().push(pos);
                }
            }
        }
        let batches = state.calls_by_node(by_node);
        let shared = &self.shared;
        self.handle.block_on(async {
            let mut calls = stream::iter(batches)
                .map(|(node, positions)| async move {
                    let asked: Vec<ChunkId> = positions.iter().map(|&p| ids[p]).collect();
                    let result = shared.have(&node, &asked, false).await;
                    (node, positions, result)
                })
                .buffer_unordered(shared.config.max_calls_in_flight.max(1));
            while let Some((node, positions, result)) = calls.next().await {
                match result {
                    Ok(present) => {
                        for (&p, &has) in positions.iter().zip(&present) {
                            counts[p].held += u8::from(has);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(node = %node.label(), error = %e,
                            "census call failed; its replicas count as unreachable");
                        down.insert(node.id);
                        for &p in &positions {
                            counts[p].unreachable += 1;
                        }
                    }
                }
            }
        });
        let nodes_down = down.iter().map(|id| self.node_label(*id)).collect();
        Ok(ReplicaCensus {
            counts,
            write_quorum: u8::try_from(state.quorum).unwrap_or(u8::MAX),
            nodes_down,
            chunk_nodes: chunk_nodes.len(),
        })
    }
}

/// The placement and nodes of `map`; the nodes of `previous` that `map` lacks are kept for
/// gets of chunks not yet moved.
fn build_state(shared: &Shared, map: ClusterMap, previous: Option<&State>) -> State {
    let mut nodes: HashMap<NodeId, Arc<Node>> = map
        .nodes
        .values()
        .map(|info| {
            let local = shared.local.as_ref().map(|(id, store)| (*id, store));
            let node = Node::new(info, local, |addr, name| shared.remote(addr, name));
            (info.id, Arc::new(node))
        })
        .collect();
    let previous = previous.map(|prev| {
        for (id, node) in &prev.nodes {
            nodes.entry(*id).or_insert_with(|| node.clone());
        }
        (prev.placer.clone(), prev.rf)
    });
    State {
        placer: Placer::new(&map, Role::Chunk),
        rf: usize::from(map.replication_factor),
        quorum: usize::from(map.write_quorum()).max(1),
        map,
        previous,
        nodes,
    }
}

/// A failure of several replicas, as one error: the kind the failures share (`Io` when they
/// differ), the failed nodes' names, and every failure in the message.
fn replicas_error(names: Vec<String>, kinds: &[ErrorKind], message: String) -> ChunkError {
    let kind = match kinds.split_first() {
        Some((first, rest)) if rest.iter().all(|k| k == first) => *first,
        _ => ErrorKind::Io,
    };
    ChunkError::Replicas {
        nodes: names.join(", "),
        kind,
        message,
    }
}

impl Shared {
    fn remote(&self, addr: SocketAddr, name: &str) -> RemoteChunks {
        RemoteChunks::new(
            self.client
                .peer(addr, name)
                .with_timeout(self.config.call_timeout),
        )
        .with_body_timeout(self.config.body_timeout)
    }

    /// The chunk service of a remote node (resolving its host name if needed).
    async fn connect(&self, node: &Node) -> Result<RemoteChunks, ChunkError> {
        match node
            .connect(self.config.call_timeout, |addr, name| {
                self.remote(addr, name)
            })
            .await
        {
            Some(remote) => remote.map_err(|e| ChunkError::Rpc {
                node: node.name.clone(),
                source: e,
            }),
            None => Err(ChunkError::Io(format!(
                "node {} is this node, not a remote one",
                node.label()
            ))),
        }
    }

    /// Makes `chunk` durable on a remote replica: "have it?" (refreshing the copy's reference
    /// time if so, as a local dedup put does: GC's hold on that node counts from it), then the
    /// payload if not.
    async fn replicate(
        &self,
        node: &Node,
        id: ChunkId,
        chunk: &StoredChunk,
        owner: u64,
    ) -> Result<bool, ChunkError> {
        let remote = self.connect(node).await?;
        if matches!(remote.touch(&[id], None).await?.as_slice(), [true]) {
            bump(&self.counters.payloads_skipped);
            return Ok(false);
        }
        bump(&self.counters.payloads_sent);
        remote.put_owned(&id, chunk, owner).await
    }

    /// A node's counters of the chunks each of `owners` stored first: (chunks, stored bytes)
    /// per owner, in order, asked [`MAX_IDS_PER_CALL`] owners a call.
    async fn owner_usage(
        &self,
        node: &Node,
        owners: &[u64],
    ) -> Result<Vec<(u64, u64)>, ChunkError> {
        match &node.reach {
            Reach::Local(store) => {
                let (store, owners) = (store.clone(), owners.to_vec());
                tokio::task::spawn_blocking(move || {
                    owners.iter().map(|o| store.owner_usage(*o)).collect()
                })
                .await
                .map_err(|e| ChunkError::Io(format!("chunk store task failed: {e}")))?
            }
            _ => {
                let remote = self.connect(node).await?;
                let mut out = Vec::with_capacity(owners.len());
                for page in owners.chunks(MAX_IDS_PER_CALL) {
                    out.extend(remote.owner_usage(page).await?);
                }
                Ok(out)
            }
        }
    }

    /// Which of `ids` a node stores; with `touch`, each stored one's reference time is
    /// refreshed as a dedup put would ([`ChunkStore::touch_many`]).
    async fn have(
        &self,
        node: &Node,
        ids: &[ChunkId],
        touch: bool,
    ) -> Result<Vec<bool>, ChunkError> {
        match &node.reach {
            Reach::Local(store) => {
                let (store, ids) = (store.clone(), ids.to_vec());
                tokio::task::spawn_blocking(move || match touch {
                    true => store.touch_many(&ids, None),
                    false => store.has_many(&ids),
                })
                .await
                .map_err(|e| ChunkError::Io(format!("chunk store task failed: {e}")))?
            }
            _ if touch => self.connect(node).await?.touch(ids, None).await,
            _ => self.connect(node).await?.have(ids).await,
        }
    }

    /// A node's store totals.
    async fn stats(&self, node: &Node) -> Result<ChunkStats, ChunkError> {
        match &node.reach {
            Reach::Local(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.stats())
                    .await
                    .map_err(|e| ChunkError::Io(format!("chunk store task failed: {e}")))?
            }
            _ => self.connect(node).await?.stats().await,
        }
    }
}

impl ReplicatedChunks {
    /// One put of a chunk to its replicas, placed around the nodes in `full`.
    fn put_placed(
        &self,
        id: &ChunkId,
        codec: Codec,
        raw_len: u32,
        payload: &[u8],
        owner: u64,
        full: &[NodeId],
    ) -> Result<bool, ChunkError> {
        let id = *id;
        let state = self.state();
        let replicas = state.write_replicas(&id, &|n| full.contains(&n));
        let quorum = state.quorum;
        if replicas.len() < quorum && !full.is_empty() {
            return Err(ChunkError::NoSpace(cairn_core::space::no_space_message(
                cairn_core::SpaceState::NearFull,
                &format!(
                    "{} of the site's chunk nodes refuse new chunks for lack of space, \
                     leaving {} for a write quorum of {quorum}",
                    full.len(),
                    replicas.len()
                ),
            )));
        }
        if replicas.len() < quorum {
            return Err(ChunkError::Io(format!(
                "put of chunk {id}: the cluster map (epoch {}) places it on {} nodes, fewer \
                 than its write quorum of {quorum}",
                state.map.epoch,
                replicas.len()
            )));
        }
        // Held until the last replica write of this put ends, background ones included.
        let permit = self
            .handle
            .block_on(self.shared.put_slots.clone().acquire_owned())
            .map_err(|_| ChunkError::Io("replicated chunk backend is closed".into()))?;
        let permit = Arc::new(permit);

        let (tx, mut rx) = mpsc::channel(replicas.len());
        let mut chunk: Option<StoredChunk> = None;
        let mut local = None;
        // Replicas suspected down (a call to them just failed on the transport) are not
        // waited on when the others can make the quorum: repair copies the chunk later.
        let suspected = |n: &Node| {
            !matches!(n.reach, Reach::Local(_)) && self.shared.client.is_suspect(&n.name)
        };
        let skip_suspects = replicas.iter().filter(|n| !suspected(n)).count() >= quorum;
        for (i, node) in replicas.iter().enumerate() {
            if let Reach::Local(store) = &node.reach {
                local = Some((i, store.clone()));
                continue;
            }
            if skip_suspects && suspected(node) {
                bump(&self.shared.counters.replica_write_failures);
                let _ = tx.try_send((
                    i,
                    Err(ChunkError::Rpc {
                        node: node.name.clone(),
                        source: RpcError::Io(
                            "suspected down: not written, repair copies it later".into(),
                        ),
                    }),
                ));
                continue;
            }
            let chunk = chunk
                .get_or_insert_with(|| StoredChunk {
                    codec,
                    raw_len,
                    payload: Bytes::copy_from_slice(payload),
                })
                .clone();
            let (tx, permit, node, shared) = (
                tx.clone(),
                permit.clone(),
                node.clone(),
                self.shared.clone(),
            );
            self.handle.spawn(async move {
                let result = shared.replicate(&node, id, &chunk, owner).await;
                if let Err(e) = &result {
                    if e.kind() == ErrorKind::NoSpace {
                        shared
                            .full
                            .lock()
                            .insert(node.id, std::time::Instant::now() + FULL_FOR);
                    }
                    bump(&shared.counters.replica_write_failures);
                    tracing::debug!(chunk = %id, node = %node.label(), error = %e,
                        "replica write failed");
                }
                // The channel holds one answer per replica, so this never waits; after the
                // put has returned nobody listens, and the answer is dropped.
                let _ = tx.send((i, result)).await;
                drop(permit);
            });
        }
        drop((tx, permit));

        let mut outcomes: Vec<Option<Result<bool, ChunkError>>> =
            replicas.iter().map(|_| None).collect();
        if let Some((i, store)) = local {
            // This thread is a blocking one: write here while the remote writes run.
            let result = store.put_encoded_owned(&id, codec, raw_len, payload, owner);
            if result.is_err() {
                bump(&self.shared.counters.replica_write_failures);
            }
            outcomes[i] = Some(result);
        }
        let tally = |outcomes: &[Option<Result<bool, ChunkError>>]| {
            let acks = outcomes.iter().filter(|o| matches!(o, Some(Ok(_)))).count();
            let failed = outcomes
                .iter()
                .filter(|o| matches!(o, Some(Err(_))))
                .count();
            (acks, failed)
        };
        self.handle.block_on(async {
            loop {
                let (acks, failed) = tally(&outcomes);
                if acks >= quorum || replicas.len() - failed < quorum {
                    break;
                }
                match rx.recv().await {
                    Some((i, result)) => outcomes[i] = Some(result),
                    None => break,
                }
            }
        });

        for (node, outcome) in replicas.iter().zip(&outcomes) {
            if matches!(outcome, Some(Err(e)) if e.kind() == ErrorKind::NoSpace) {
                self.set_node_full(node.id);
            }
        }
        let (acks, _) = tally(&outcomes);
        if acks >= quorum {
            return Ok(outcomes.iter().any(|o| matches!(o, Some(Ok(true)))));
        }
        let mut names = Vec::new();
        let mut kinds = Vec::new();
        let mut details = Vec::new();
        for (node, outcome) in replicas.iter().zip(&outcomes) {
            match outcome {
                Some(Err(e)) => {
                    names.push(node.name.clone());
                    kinds.push(e.kind());
                    details.push(format!("{}: {e}", node.label()));
                }
                None => details.push(format!("{}: no answer yet", node.label())),
                Some(Ok(_)) => {}
            }
        }
        Err(replicas_error(
            names,
            &kinds,
            format!(
                "put of chunk {id}: {acks} of {} replicas stored it, the write quorum is \
                 {quorum}; {}",
                replicas.len(),
                details.join("; ")
            ),
        ))
    }

    /// The first replica's answer that `local` (this node's store) or `remote` (a stored copy
    /// fetched from another node) turns into a good copy; corrupt, missing or unreachable
    /// copies are skipped.
    fn first_good<T>(
        &self,
        id: &ChunkId,
        local: impl Fn(&ChunkStore) -> Result<Option<T>, ChunkError>,
        remote: impl Fn(StoredChunk) -> Result<T, ChunkError>,
    ) -> Result<Option<T>, ChunkError> {
        let state = self.state();
        let mut names = Vec::new();
        let mut kinds = Vec::new();
        let mut details = Vec::new();
        let mut skipped = 0u64;
        let mut order = state.read_order(id);
        {
            // Suspected nodes go last (a stable sort keeps placement order otherwise).
            let now = std::time::Instant::now();
            let mut suspects = self.shared.suspects.lock();
            suspects.retain(|_, until| *until > now);
            order.sort_by_key(|n| {
                suspects.contains_key(&n.id)
                    || (!matches!(n.reach, Reach::Local(_))
                        && self.shared.client.is_suspect(&n.name))
            });
        }
        for node in order {
            let result = match &node.reach {
                Reach::Local(store) => local(store),
                _ => self
                    .handle
                    .block_on(async {
                        let remote = self.shared.connect(&node).await?;
                        remote.get(id).await
                    })
                    // Decoded and checked here, on this blocking thread.
                    .and_then(|c| c.map(&remote).transpose()),
            };
            match result {
                Ok(Some(found)) => {
                    self.shared
                        .counters
                        .read_fallbacks
                        .fetch_add(skipped, Ordering::Relaxed);
                    return Ok(Some(found));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(chunk = %id, node = %node.label(), error = %e,
                        "replica read failed, trying the next one");
                    if e.kind() == ErrorKind::Io {
                        self.shared
                            .suspects
                            .lock()
                            .insert(node.id, std::time::Instant::now() + SUSPECT_FOR);
                    }
                    names.push(node.name.clone());
                    kinds.push(e.kind());
                    details.push(format!("{}: {e}", node.label()));
                }
            }
            skipped += 1;
        }
        self.shared
            .counters
            .read_fallbacks
            .fetch_add(skipped, Ordering::Relaxed);
        if names.is_empty() {
            return Ok(None);
        }
        Err(replicas_error(
            names,
            &kinds,
            format!(
                "get of chunk {id}: no replica returned a good copy; {}",
                details.join("; ")
            ),
        ))
    }
}

impl ChunkBackend for ReplicatedChunks {
    /// Stores the chunk on its replicas (see the module docs); returns once the write quorum
    /// holds it. True when one of the replicas that acknowledged before the return stored it
    /// by this call, false when those all had it already (a background replica may still
    /// store it).
    fn put_encoded(
        &self,
        id: &ChunkId,
        codec: Codec,
        raw_len: u32,
        payload: &[u8],
    ) -> Result<bool, ChunkError> {
        self.put_encoded_owned(id, codec, raw_len, payload, 0)
    }

    /// [`ReplicatedChunks::put_encoded`] with `owner` recorded by every replica that stores
    /// the chunk (locally, or in a `PutOwned` call).
    fn put_encoded_owned(
        &self,
        id: &ChunkId,
        codec: Codec,
        raw_len: u32,
        payload: &[u8],
        owner: u64,
    ) -> Result<bool, ChunkError> {
        if raw_len as usize > MAX_CHUNK_SIZE || payload.len() > MAX_STORED_LEN {
            return Err(ChunkError::TooLarge((raw_len as usize).max(payload.len())));
        }
        let full = self.full_nodes();
        let first = self.put_placed(id, codec, raw_len, payload, owner, &full);
        let now_full = self.full_nodes();
        if !now_full.iter().any(|n| !full.contains(n)) {
            return first;
        }
        // A replica refused for lack of space before this put returned: put again, placed
        // around it, so the chunk gets its copies (the replicas that hold it already are only
        // touched) or, if the first put missed its quorum, a second chance at it.
        match (
            first,
            self.put_placed(id, codec, raw_len, payload, owner, &now_full),
        ) {
            (Ok(a), Ok(b)) => Ok(a || b),
            (Ok(a), Err(_)) => Ok(a),
            (Err(_), second) => second,
        }
    }

    /// The first good copy among the replicas (see the module docs); this node's cached copy
    /// first, if it has one.
    fn get(&self, id: &ChunkId) -> Result<Option<Bytes>, ChunkError> {
        if let Some(store) = self.cached_here(id) {
            if let Some(b) = store.get(id)? {
                return Ok(Some(b));
            }
        }
        self.first_good(id, |store| store.get(id), |c| c.decode_verified(id))
    }

    /// The first good copy among the replicas in stored form, checked against `id` (a site
    /// link ships it as it is); this node's cached copy first, if it has one.
    fn get_stored(&self, id: &ChunkId) -> Result<Option<StoredChunk>, ChunkError> {
        let check = |c: StoredChunk| c.decode_verified(id).map(|_| c);
        if let Some(store) = self.cached_here(id) {
            if let Some(c) = store.get_stored(id)? {
                return check(c).map(Some);
            }
        }
        self.first_good(
            id,
            |store| store.get_stored(id)?.map(check).transpose(),
            check,
        )
    }

    /// True for an id when at least the write quorum of its replicas answered that they hold
    /// it. A replica that cannot be asked counts as not holding it: false is the safe answer,
    /// since the caller then puts the chunk, and the put reports replicas it cannot reach.
    /// Fails only when ids were asked about and no replica could be asked at all. Ids are
    /// batched per replica, at most [`MAX_IDS_PER_CALL`] per call.
    fn has_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ChunkError> {
        let state = self.state();
        let holders = self.holders(&state, ids, false)?;
        Ok(holders.into_iter().map(|n| n >= state.quorum).collect())
    }

    /// Asks every replica of each id (batched as [`ReplicatedChunks::has_many`] does) and
    /// refreshes the reference time of every copy found; true for an id when at least one
    /// replica holds it (now protected by GC's hold there; repair restores the other copies).
    /// Fails only when no replica could be asked at all.
    fn touch_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ChunkError> {
        let holders = self.holders(&self.state(), ids, true)?;
        Ok(holders.into_iter().map(|n| n > 0).collect())
    }

    fn replica_census(&self, ids: &[ChunkId]) -> Result<ReplicaCensus, ChunkError> {
        self.census(ids)
    }

    /// Stores a fetched chunk in this node's store as cached, outside placement (see the
    /// module docs); fails on a node without the chunk role.
    fn put_cached(&self, id: &ChunkId, chunk: &StoredChunk) -> Result<bool, ChunkError> {
        self.local_cache()?.put_cached(id, chunk)
    }

    /// True on a node with the chunk role: its store keeps the site's fetch cache.
    fn caches(&self) -> bool {
        self.shared.local.is_some()
    }

    fn evict_cache(&self, max_bytes: u64) -> Result<(u64, u64), ChunkError> {
        match &self.shared.local {
            Some((_, store)) => store.evict_cache(max_bytes),
            None => Ok((0, 0)),
        }
    }

    fn cache_stats(&self) -> Result<Option<CacheStats>, ChunkError> {
        Ok(self.shared.local.as_ref().map(|(_, s)| s.cache_stats()))
    }

    fn pin_cached(&self, pin: &str, ids: &[ChunkId]) -> Result<u64, ChunkError> {
        match &self.shared.local {
            Some((_, store)) => store.pin_cached(pin, ids),
            None => Ok(0),
        }
    }

    fn unpin_cached(&self, pin: &str) -> Result<u64, ChunkError> {
        match &self.shared.local {
            Some((_, store)) => store.unpin_cached(pin),
            None => Ok(0),
        }
    }

    fn cached_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ChunkError> {
        Ok(ids
            .iter()
            .map(|id| self.cached_here(id).is_some())
            .collect())
    }

    /// Physical totals: the sum of the stats of every chunk node of the map (drained ones
    /// included, they still hold data) that answers, so each chunk counts once per replica.
    /// Nodes that cannot be reached are left out (and logged); fails only when none answers.
    fn stats(&self) -> Result<ChunkStats, ChunkError> {
        let nodes = self.answering_chunk_nodes();
        let shared = &self.shared;
        let (total, answered, last_error) = self.handle.block_on(async {
            let mut calls = stream::iter(nodes)
                .map(|node| async move {
                    let result = shared.stats(&node).await;
                    (node, result)
                })
                .buffer_unordered(shared.config.max_calls_in_flight.max(1));
            let mut total = ChunkStats::default();
            let mut answered = 0usize;
            let mut last_error = None;
            while let Some((node, result)) = calls.next().await {
                match result {
                    Ok(s) => {
                        answered += 1;
                        total.chunks += s.chunks;
                        total.raw_bytes += s.raw_bytes;
                        total.stored_bytes += s.stored_bytes;
                    }
                    Err(e) => {
                        tracing::warn!(node = %node.label(), error = %e, "stats call failed");
                        last_error = Some(e);
                    }
                }
            }
            (total, answered, last_error)
        });
        match last_error {
            Some(e) if answered == 0 => Err(e),
            _ => Ok(total),
        }
    }

    /// The sums of every chunk node's counters of each owner (asked as [`ChunkBackend::stats`]
    /// asks: drained nodes included, suspected ones left out and counted unanswered), so
    /// each chunk counts once per copy; `copies` is the replication factor. Fails only when
    /// no node answers.
    fn owner_usage_many(&self, owners: &[u64]) -> Result<Option<Vec<OwnerUsage>>, ChunkError> {
        let state = self.state();
        let all = state
            .map
            .nodes
            .values()
            .filter(|n| n.roles.has(Role::Chunk))
            .count();
        let nodes = self.answering_chunk_nodes();
        let shared = &self.shared;
        let (mut usage, answered, last_error) = self.handle.block_on(async {
            let mut calls = stream::iter(nodes)
                .map(|node| async move {
                    let result = shared.owner_usage(&node, owners).await;
                    (node, result)
                })
                .buffer_unordered(shared.config.max_calls_in_flight.max(1));
            let mut usage = vec![OwnerUsage::default(); owners.len()];
            let mut answered = 0usize;
            let mut last_error = None;
            while let Some((node, result)) = calls.next().await {
                match result {
                    Ok(counts) => {
                        answered += 1;
                        for (u, (chunks, bytes)) in usage.iter_mut().zip(counts) {
                            u.chunks += chunks;
                            u.stored_bytes += bytes;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(node = %node.label(), error = %e, "owner usage call failed");
                        last_error = Some(e);
                    }
                }
            }
            (usage, answered, last_error)
        });
        if let Some(e) = last_error.filter(|_| answered == 0) {
            return Err(e);
        }
        let copies = u32::try_from(state.rf).unwrap_or(u32::MAX);
        let unanswered = u32::try_from(all.saturating_sub(answered)).unwrap_or(u32::MAX);
        for u in &mut usage {
            u.copies = copies;
            u.nodes_unanswered = unanswered;
        }
        Ok(Some(usage))
    }
}

impl ReplicatedChunks {
    /// This node's store when it holds `id` as a cached chunk.
    fn cached_here(&self, id: &ChunkId) -> Option<&ChunkStore> {
        self.shared
            .local
            .as_ref()
            .map(|(_, s)| s.as_ref())
            .filter(|s| s.is_cached(id))
    }

    /// This node's store, which keeps the fetch cache.
    fn local_cache(&self) -> Result<&ChunkStore, ChunkError> {
        self.shared
            .local
            .as_ref()
            .map(|(_, s)| s.as_ref())
            .ok_or_else(|| {
                ChunkError::Io(
                    "this node holds no chunks, so it keeps no fetch cache: run metadata-only \
                     links on a node with the chunk role"
                        .into(),
                )
            })
    }

    /// The other chunk nodes that answer `Fetch` (they run a metadata-only link), asked now;
    /// nodes that cannot be asked within [`FETCHES_TIMEOUT`], or run a release without
    /// `Fetches`, are left out.
    pub async fn peers_that_fetch(&self) -> Vec<NodeId> {
        let nodes: Vec<Arc<Node>> = self
            .answering_chunk_nodes()
            .into_iter()
            .filter(|n| !matches!(n.reach, Reach::Local(_)))
            .collect();
        let shared = &self.shared;
        let answers = futures::future::join_all(nodes.into_iter().map(|node| async move {
            let asked = tokio::time::timeout(FETCHES_TIMEOUT, async {
                shared.connect(&node).await?.fetches().await
            })
            .await;
            (node.id, asked)
        }))
        .await;
        answers
            .into_iter()
            .filter_map(|(id, asked)| matches!(asked, Ok(Ok(true))).then_some(id))
            .collect()
    }

    /// A chunk in stored form from the first of `nodes` (see
    /// [`ReplicatedChunks::peers_that_fetch`]) that holds it or fetches it from its linked
    /// site; `None` when every one answered it has none. Fails, naming each node's failure,
    /// when none gave a copy and some failed. The answering node checked the copy (as it
    /// checks every copy it reads or fetches); the caller checks it again as it decodes it.
    pub async fn fetch_from_peers(
        &self,
        nodes: &[NodeId],
        id: ChunkId,
    ) -> Result<Option<StoredChunk>, ChunkError> {
        let mut failures = Vec::new();
        for node in nodes {
            let found = self.state().nodes.get(node).cloned();
            let Some(node) = found else { continue };
            let got = async { self.shared.connect(&node).await?.fetch(&id).await }.await;
            match got {
                Ok(Some(c)) => return Ok(Some(c)),
                Ok(None) => {}
                Err(e) => failures.push(format!("{}: {e}", node.label())),
            }
        }
        if failures.is_empty() {
            return Ok(None);
        }
        Err(ChunkError::Io(format!(
            "fetch of chunk {id} through the nodes that run metadata-only links failed: {}",
            failures.join("; ")
        )))
    }

    /// The chunk nodes of the map (drained ones included, they still hold data) that are not
    /// suspected down: totals are for metrics and `cairn stats`/`cairn bucket info`, which
    /// should answer while a node is away rather than wait on it.
    fn answering_chunk_nodes(&self) -> Vec<Arc<Node>> {
        let state = self.state();
        state
            .map
            .nodes
            .values()
            .filter(|n| n.roles.has(Role::Chunk))
            .filter_map(|n| state.nodes.get(&n.id).cloned())
            .filter(|n| {
                matches!(n.reach, Reach::Local(_)) || !self.shared.client.is_suspect(&n.name)
            })
            .collect()
    }
}
