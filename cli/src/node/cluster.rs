//! The cluster map as a running node holds it: loaded from (and saved to) the data dir,
//! changed by admins through staged changes, distributed to every node, and kept in step by
//! asking peers for theirs. Also the `cluster` RPC service that carries maps and node status
//! between nodes.
//!
//! A node adopts a map only if its epoch is newer than the one it holds, saves it (atomically)
//! before using it, and then hands it to every part that places data (the `on_change`
//! callbacks: the chunk and manifest backends, the maintenance workers). Every few seconds it
//! asks each peer for its map, so a node that was down or partitioned catches up by itself; a
//! peer that answers again after a failed call is announced (the `on_return` callbacks: repair
//! and anti-entropy start at once).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_core::cluster::{node_id_hex, ClusterMap, MapDiff, NodeId, StagedChanges};
use cairn_core::format::Versioned;
use cairn_core::ErrorKind;
use cairn_net::{PeerInfo, RecvBody, Rpc, RpcError, SendBody, Service};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

/// File of the current map in the data dir.
const MAP_FILE: &str = "cluster.map";
/// File of the staged changes in the data dir.
const STAGED_FILE: &str = "cluster.staged";
/// How often a node asks its peers for their maps.
pub const GOSSIP_EVERY: Duration = Duration::from_secs(3);
/// A peer not heard from for this long is shown as down.
const DOWN_AFTER_MS: u64 = 10_000;
/// Deadline of map and status calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// A call of the `cluster` service.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClusterRequest {
    /// The caller's map's epoch; the answer is the callee's map.
    GetMap {
        /// Epoch the caller holds (so the callee may ask back, later).
        epoch: u64,
    },
    /// Take this map if it is newer.
    PushMap(ClusterMap),
    /// The node's status (JSON of [`NodeStatus`]).
    Status,
    /// The caller's disk state ([`cairn_core::SpaceState::as_str`]): a node whose disk is
    /// near full tells its peers every few seconds, so their puts place chunks around it.
    /// (Appended last: nodes that predate it answer an error, which the caller ignores.)
    Space(String),
}

impl Versioned for ClusterRequest {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "cluster request";
}

impl Rpc for ClusterRequest {
    const SERVICE: &'static str = "cluster";
    type Response = ClusterResponse;
}

/// An answer of the `cluster` service.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClusterResponse {
    /// The callee's map.
    Map(ClusterMap),
    /// Whether a pushed map was adopted, and the callee's epoch after it.
    Pushed {
        /// It was newer and is now the callee's map.
        adopted: bool,
        /// The callee's epoch.
        epoch: u64,
    },
    /// JSON of a [`NodeStatus`] (JSON, as worker details vary by worker).
    Status(String),
}

impl Versioned for ClusterResponse {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "cluster response";
}

/// What `cairn cluster status` shows of one node.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// Node id, hex.
    pub id: String,
    /// Epoch of its map.
    pub epoch: u64,
    /// Roles it runs.
    pub roles: String,
    /// Its workers.
    pub workers: Vec<crate::workers::WorkerStatus>,
    /// Chunks in its store (chunk role).
    pub chunks: Option<u64>,
    /// Stored bytes of its chunks (chunk role).
    pub physical_bytes: Option<u64>,
    /// Free space of its data dirs (absent from nodes that predate it).
    #[serde(default)]
    pub disk: Option<crate::disk::DiskStatus>,
}

/// Produces this node's status on demand.
pub type StatusFn = Arc<dyn Fn() -> NodeStatus + Send + Sync>;

/// Called with every map a node adopts.
type MapListener = Box<dyn Fn(&ClusterMap) + Send + Sync>;

/// Called with a peer that answers again after its calls failed.
type ReturnListener = Box<dyn Fn(NodeId) + Send + Sync>;

/// The map of a running node.
pub struct ClusterState {
    site: String,
    me: NodeId,
    dir: PathBuf,
    map: RwLock<ClusterMap>,
    staged: Mutex<StagedChanges>,
    on_change: RwLock<Vec<MapListener>>,
    on_return: RwLock<Vec<ReturnListener>>,
    /// Called with each peer that reports its disk near full.
    on_full: RwLock<Vec<ReturnListener>>,
    net: cairn_net::Client,
    /// When each peer last answered (unix ms).
    seen: Mutex<BTreeMap<NodeId, u64>>,
    /// Peers whose last map call failed.
    unreachable: Mutex<std::collections::BTreeSet<NodeId>>,
}

impl ClusterState {
    /// The map saved in `dir`, or `first` (saved) when there is none.
    pub fn open(
        dir: &Path,
        me: NodeId,
        first: ClusterMap,
        net: cairn_net::Client,
    ) -> anyhow::Result<ClusterState> {
        let path = dir.join(MAP_FILE);
        let map = match std::fs::read(&path) {
            Ok(bytes) => {
                let map = ClusterMap::decode_checked(&bytes)
                    .with_context(|| format!("{} is not a valid cluster map", path.display()))?;
                if map.site != first.site {
                    anyhow::bail!(
                        "{} is a map of site `{}`, but this node's certificate is for site `{}`",
                        path.display(),
                        map.site,
                        first.site
                    );
                }
                map
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                save(&path, &first.encode())?;
                first
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let staged = match std::fs::read(dir.join(STAGED_FILE)) {
            Ok(bytes) => StagedChanges::decode(&bytes).with_context(|| {
                format!(
                    "{} is not valid: remove it to drop the staged changes",
                    STAGED_FILE
                )
            })?,
            Err(_) => StagedChanges::default(),
        };
        Ok(ClusterState {
            site: map.site.clone(),
            me,
            dir: dir.to_path_buf(),
            map: RwLock::new(map),
            staged: Mutex::new(staged),
            on_change: RwLock::new(Vec::new()),
            on_return: RwLock::new(Vec::new()),
            on_full: RwLock::new(Vec::new()),
            net,
            seen: Mutex::new(BTreeMap::new()),
            unreachable: Mutex::new(std::collections::BTreeSet::new()),
        })
    }

    /// The current map.
    pub fn map(&self) -> ClusterMap {
        self.map.read().clone()
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Calls `f` with every map adopted from now on.
    pub fn on_change(&self, f: impl Fn(&ClusterMap) + Send + Sync + 'static) {
        self.on_change.write().push(Box::new(f));
    }

    /// Calls `f` with every peer that answers the map gossip again after a failed call (a
    /// node back from a crash, a restart or a partition): what it missed meanwhile can be
    /// repaired at once.
    pub fn on_return(&self, f: impl Fn(NodeId) + Send + Sync + 'static) {
        self.on_return.write().push(Box::new(f));
    }

    /// Calls `f` with every peer that reports its disk near full or full (see
    /// [`ClusterRequest::Space`]).
    pub fn on_full(&self, f: impl Fn(NodeId) + Send + Sync + 'static) {
        self.on_full.write().push(Box::new(f));
    }

    /// Tells every peer this node's disk state (sent while it refuses writes).
    pub async fn announce_space(&self, state: cairn_core::SpaceState) {
        let map = self.map();
        let calls = map
            .nodes
            .values()
            .filter(|n| n.id != self.me)
            .map(|n| (n.name.clone(), n.address.clone()))
            .collect::<Vec<_>>();
        let req = ClusterRequest::Space(state.as_str().to_string());
        let calls = calls
            .iter()
            .map(|(name, address)| self.call(name, address, &req));
        for r in futures::future::join_all(calls).await {
            if let Err(e) = r {
                tracing::debug!(error = %e, "disk state not delivered to a peer");
            }
        }
    }

    /// Takes `map` if it is of this site and newer: saves it, then tells the backends.
    pub fn adopt(&self, map: ClusterMap) -> anyhow::Result<bool> {
        if map.site != self.site {
            anyhow::bail!(
                "a map of site `{}` is not for site `{}`",
                map.site,
                self.site
            );
        }
        map.validate().context("the map is not valid")?;
        {
            let mut cur = self.map.write();
            if map.epoch <= cur.epoch {
                return Ok(false);
            }
            save(&self.dir.join(MAP_FILE), &map.encode())?;
            info!(epoch = map.epoch, "adopted a new cluster map");
            *cur = map.clone();
        }
        for f in self.on_change.read().iter() {
            f(&map);
        }
        Ok(true)
    }

    /// The staged changes.
    pub fn staged(&self) -> StagedChanges {
        self.staged.lock().clone()
    }

    /// Changes what is staged with `f` (checked against the current map) and saves it.
    pub fn stage(&self, f: impl FnOnce(&mut StagedChanges)) -> anyhow::Result<StagedChanges> {
        let mut staged = self.staged.lock();
        let mut next = staged.clone();
        f(&mut next);
        self.map()
            .apply(&next)
            .context("with this change the map would not be valid (nothing was staged)")?;
        save(&self.dir.join(STAGED_FILE), &next.encode())?;
        *staged = next.clone();
        Ok(next)
    }

    /// Drops the staged changes.
    pub fn unstage(&self) -> anyhow::Result<()> {
        *self.staged.lock() = StagedChanges::default();
        match std::fs::remove_file(self.dir.join(STAGED_FILE)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies the staged changes as the next epoch, adopts the result and sends it to every
    /// node of the old and the new map. Returns the new map, what changed, and each node's
    /// answer (`Ok(adopted)` or why it could not be reached; nodes that miss it catch up by
    /// asking their peers).
    pub async fn apply_staged(
        &self,
    ) -> anyhow::Result<(ClusterMap, MapDiff, BTreeMap<String, Result<bool, String>>)> {
        let staged = self.staged();
        if staged.is_empty() {
            anyhow::bail!(
                "nothing is staged: stage changes with `cairn cluster add` or `remove` first"
            );
        }
        let old = self.map();
        let next = old.apply(&staged)?;
        let diff = old.diff(&next);
        self.adopt(next.clone())?;
        self.unstage()?;
        let mut targets: BTreeMap<NodeId, (String, String)> = BTreeMap::new();
        for n in old.nodes.values().chain(next.nodes.values()) {
            if n.id != self.me {
                targets.insert(n.id, (n.name.clone(), n.address.clone()));
            }
        }
        let calls = targets.into_values().map(|(name, address)| {
            let map = next.clone();
            async move {
                let r = self
                    .call(&name, &address, &ClusterRequest::PushMap(map))
                    .await
                    .and_then(|resp| match resp {
                        ClusterResponse::Pushed { adopted, .. } => Ok(adopted),
                        _ => Err("unexpected answer".into()),
                    });
                (name, r)
            }
        });
        let mut answers: BTreeMap<String, Result<bool, String>> =
            futures::future::join_all(calls).await.into_iter().collect();
        if let Some(me) = next.node(self.me) {
            answers.insert(me.name.clone(), Ok(true));
        }
        Ok((next, diff, answers))
    }

    /// Calls node `name` at `address` with `req`.
    pub async fn call(
        &self,
        name: &str,
        address: &str,
        req: &ClusterRequest,
    ) -> Result<ClusterResponse, String> {
        let addr = cairn_net::resolve(address, CALL_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        self.net
            .peer(addr, name)
            .with_timeout(CALL_TIMEOUT)
            .call(req)
            .await
            .map_err(|e| e.to_string())
    }

    /// Asks every peer for its map once; adopts the newest; records who answered.
    pub async fn gossip_once(&self) {
        let map = self.map();
        let epoch = map.epoch;
        let peers: Vec<_> = map
            .nodes
            .values()
            .filter(|n| n.id != self.me)
            .map(|n| (n.id, n.name.clone(), n.address.clone()))
            .collect();
        let calls = peers.into_iter().map(|(id, name, address)| async move {
            let r = self
                .call(&name, &address, &ClusterRequest::GetMap { epoch })
                .await;
            (id, name, r)
        });
        for (id, name, r) in futures::future::join_all(calls).await {
            if r.is_err() {
                self.unreachable.lock().insert(id);
            }
            match r {
                Ok(ClusterResponse::Map(m)) => {
                    self.seen.lock().insert(id, cairn_client::now_ms());
                    if self.unreachable.lock().remove(&id) {
                        info!(peer = %name, "peer answers again");
                        for f in self.on_return.read().iter() {
                            f(id);
                        }
                    }
                    if m.epoch > self.map().epoch {
                        if let Err(e) = self.adopt(m) {
                            warn!(peer = %name, error = %format!("{e:#}"), "peer's map refused");
                        }
                    }
                }
                Ok(_) => warn!(peer = %name, "peer answered GetMap with something else"),
                Err(_) => {}
            }
        }
    }

    /// Runs [`ClusterState::gossip_once`] every [`GOSSIP_EVERY`] until `stop`.
    pub async fn gossip_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            self.gossip_once().await;
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(GOSSIP_EVERY) => {}
            }
        }
    }

    /// Whether node `id` answered within the last few seconds (this node always has).
    pub fn is_up(&self, id: NodeId) -> bool {
        id == self.me
            || self
                .seen
                .lock()
                .get(&id)
                .is_some_and(|t| cairn_client::now_ms().saturating_sub(*t) < DOWN_AFTER_MS)
    }

    /// Whether the last map call to node `id` failed (it answers again at the next gossip
    /// round that reaches it, which starts repair: see [`ClusterState::on_return`]).
    pub fn is_unreachable(&self, id: NodeId) -> bool {
        self.unreachable.lock().contains(&id)
    }

    /// When node `id` last answered (unix ms).
    pub fn last_seen_ms(&self, id: NodeId) -> Option<u64> {
        if id == self.me {
            return Some(cairn_client::now_ms());
        }
        self.seen.lock().get(&id).copied()
    }

    /// Every node's status: this one's from `local`, the others' over the network.
    pub async fn statuses(&self, local: &StatusFn) -> Vec<(String, Result<NodeStatus, String>)> {
        let map = self.map();
        let calls = map.nodes.values().map(|n| {
            let (id, name, address) = (n.id, n.name.clone(), n.address.clone());
            async move {
                if id == self.me {
                    return (name, Ok(local()));
                }
                let r = match self.call(&name, &address, &ClusterRequest::Status).await {
                    Ok(ClusterResponse::Status(json)) => {
                        serde_json::from_str(&json).map_err(|e| e.to_string())
                    }
                    Ok(_) => Err("unexpected answer".to_string()),
                    Err(e) => Err(e),
                };
                (name, r)
            }
        });
        futures::future::join_all(calls).await
    }
}

/// Writes `bytes` to `path` atomically and durably.
fn save(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The `cluster` service of a node.
pub struct ClusterService {
    state: Arc<ClusterState>,
    status: StatusFn,
}

impl ClusterService {
    /// A service over `state`, answering status calls with `status`.
    pub fn new(state: Arc<ClusterState>, status: StatusFn) -> Self {
        ClusterService { state, status }
    }
}

impl Service for ClusterService {
    type Request = ClusterRequest;

    async fn handle(
        &self,
        peer: PeerInfo,
        req: ClusterRequest,
        _body: RecvBody,
    ) -> Result<(ClusterResponse, Option<SendBody>), RpcError> {
        let resp = match req {
            ClusterRequest::GetMap { .. } => {
                if let Some(n) = self.state.map().node_by_name(&peer.node) {
                    self.state.seen.lock().insert(n.id, cairn_client::now_ms());
                }
                ClusterResponse::Map(self.state.map())
            }
            ClusterRequest::PushMap(map) => {
                let adopted = self
                    .state
                    .adopt(map)
                    .map_err(|e| RpcError::remote(ErrorKind::InvalidInput, format!("{e:#}")))?;
                if adopted {
                    info!(from = %peer.node, "cluster map pushed by a peer");
                }
                ClusterResponse::Pushed {
                    adopted,
                    epoch: self.state.map().epoch,
                }
            }
            ClusterRequest::Space(state) => {
                let refusing = cairn_core::SpaceState::parse(&state).refuses_writes();
                if let (true, Some(n)) = (refusing, self.state.map().node_by_name(&peer.node)) {
                    for f in self.state.on_full.read().iter() {
                        f(n.id);
                    }
                }
                ClusterResponse::Pushed {
                    adopted: false,
                    epoch: self.state.map().epoch,
                }
            }
            ClusterRequest::Status => {
                let status = self.status.clone();
                let s = tokio::task::spawn_blocking(move || status())
                    .await
                    .map_err(|e| RpcError::remote(ErrorKind::Internal, e.to_string()))?;
                ClusterResponse::Status(
                    serde_json::to_string(&s)
                        .map_err(|e| RpcError::remote(ErrorKind::Internal, e.to_string()))?,
                )
            }
        };
        Ok((resp, None))
    }
}

/// `name (id)` of a node, for messages.
pub fn label(map: &ClusterMap, id: NodeId) -> String {
    match map.node(id) {
        Some(n) => format!("{} ({})", n.name, node_id_hex(id)),
        None => node_id_hex(id),
    }
}
