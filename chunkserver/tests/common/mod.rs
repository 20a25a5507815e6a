//! Helpers shared by the chunk integration tests over real QUIC on loopback: a site of nodes
//! each serving a chunk store, and backends that reach them through `ReplicatedChunks`.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_chunkserver::{
    ChunkBackend, ChunkConfig, ChunkError, ChunkService, ChunkStats, ChunkStore, ReplicatedChunks,
    ReplicationConfig, StoredChunk,
};
use cairn_core::cluster::{ClusterMap, NodeId, NodeInfo, StagedChanges};
use cairn_core::ChunkId;
use cairn_net::{Client, NetConfig, NodeIdentity, Server, ServerStats, SiteCa};

/// Every test body runs under this bound.
pub const TEST_BOUND: Duration = Duration::from_secs(120);
/// The backends' call deadline: short, so calls to stopped nodes fail quickly.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(1500);

pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_BOUND, f)
        .await
        .expect("test did not finish in time")
}

/// Waits until `cond` holds, for at most 10 s.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not reached within 10 s");
}

/// A node serving its chunk store; it can stop and serve the same store again.
pub struct Node {
    pub id: NodeId,
    pub name: String,
    pub zone: String,
    pub identity: NodeIdentity,
    pub store: Arc<ChunkStore>,
    pub addr: SocketAddr,
    /// The current server's counters (a new server, so new counters, on each [`Node::serve`]).
    pub stats: Arc<ServerStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Node `n{id}` in `zone`, with an empty store, serving.
    pub fn start(ca: &SiteCa, id: NodeId, zone: &str) -> Node {
        let name = format!("n{id}");
        let identity = ca.issue_node(&name, &["127.0.0.1".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ChunkStore::open(dir.path(), ChunkConfig::default()).unwrap());
        let mut node = Node {
            id,
            name,
            zone: zone.into(),
            identity,
            store,
            addr: "127.0.0.1:1".parse().unwrap(),
            stats: Arc::default(),
            stop: None,
            task: None,
            _dir: dir,
        };
        node.serve();
        node
    }

    /// Serves the store on a new port.
    pub fn serve(&mut self) {
        let server = Server::builder(&self.identity, NetConfig::default())
            .service(ChunkService::new(self.store.clone()))
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap();
        self.addr = server.local_addr().unwrap();
        self.stats = server.stats();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.task = Some(tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        }));
        self.stop = Some(tx);
    }

    /// Stops serving (the store stays readable by the test).
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    pub fn has(&self, id: &ChunkId) -> bool {
        self.store.meta(id).unwrap().is_some()
    }

    pub fn info(&self) -> NodeInfo {
        NodeInfo::new(self.id, &self.name, self.addr.to_string(), &self.zone)
    }

    /// A client with this node's identity.
    pub fn client(&self) -> Client {
        Client::new(
            &self.identity,
            NetConfig::default(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap()
    }
}

/// A site: its CA and serving nodes `n1`, `n2`, ... with ids 1, 2, ...
pub struct Site {
    pub ca: SiteCa,
    pub nodes: Vec<Node>,
}

impl Site {
    /// Nodes `n1`, `n2`, ... with ids 1, 2, ..., in the given zones.
    pub fn start(zones: &[&str]) -> Site {
        let ca = SiteCa::generate("lyon").unwrap();
        let nodes = zones
            .iter()
            .enumerate()
            .map(|(i, zone)| Node::start(&ca, i as NodeId + 1, zone))
            .collect();
        Site { ca, nodes }
    }

    /// Adds node `n{k}` in `zone`, serving.
    pub fn add(&mut self, zone: &str) -> &mut Node {
        let id = self.nodes.len() as NodeId + 1;
        self.nodes.push(Node::start(&self.ca, id, zone));
        self.nodes.last_mut().unwrap()
    }

    /// The map of every node, with replication factor `rf` (majority quorum).
    pub fn map(&self, rf: u8) -> ClusterMap {
        ClusterMap::new("lyon")
            .apply(&StagedChanges {
                upsert: self.nodes.iter().map(Node::info).collect(),
                set_rf: Some(rf),
                ..StagedChanges::default()
            })
            .unwrap()
    }

    /// A client with a new identity `name` issued by the site's CA.
    pub fn client(&self, name: &str) -> Client {
        let identity = self.ca.issue_node(name, &["127.0.0.1".into()]).unwrap();
        Client::new(
            &identity,
            NetConfig::default(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap()
    }

    /// A backend on a gateway `gw` that holds no chunks.
    pub fn gateway(&self, map: ClusterMap) -> Arc<ReplicatedChunks> {
        Arc::new(ReplicatedChunks::with_config(
            map,
            None,
            self.client("gw"),
            tokio::runtime::Handle::current(),
            config(),
        ))
    }

    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes.iter().find(|n| n.id == id).unwrap()
    }

    /// The nodes whose stores hold `id`, by id.
    pub fn holders(&self, id: &ChunkId) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.has(id))
            .map(|n| n.id)
            .collect()
    }

    /// The calls each node's current server has answered.
    pub fn calls(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.stats.calls()).collect()
    }

    pub fn store_stats(&self) -> Vec<ChunkStats> {
        self.nodes
            .iter()
            .map(|n| n.store.stats().unwrap())
            .collect()
    }

    pub async fn stop(mut self) {
        for n in &mut self.nodes {
            n.stop().await;
        }
    }
}

/// The replication settings of every backend in these tests (short deadlines).
pub fn config() -> ReplicationConfig {
    ReplicationConfig {
        call_timeout: CALL_TIMEOUT,
        body_timeout: CALL_TIMEOUT,
        ..ReplicationConfig::default()
    }
}

/// `len` pseudo-random (incompressible) bytes from `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

pub fn chunk(raw: Bytes) -> (ChunkId, StoredChunk) {
    (ChunkId::of(&raw), StoredChunk::encode(raw))
}

/// `n` chunks of 4 to 10 kB from `seed`.
pub fn chunks(n: u64, seed: u64) -> Vec<(ChunkId, StoredChunk)> {
    (0..n)
        .map(|i| chunk(random_bytes(4_000 + (i as usize % 7) * 1_000, seed + i)))
        .collect()
}

/// Runs a blocking backend call on the blocking pool, as the client library does.
pub async fn blocking<T: Send + 'static>(
    backend: &Arc<ReplicatedChunks>,
    f: impl FnOnce(&ReplicatedChunks) -> T + Send + 'static,
) -> T {
    let backend = backend.clone();
    tokio::task::spawn_blocking(move || f(&backend))
        .await
        .unwrap()
}

pub async fn put(
    backend: &Arc<ReplicatedChunks>,
    id: ChunkId,
    c: &StoredChunk,
) -> Result<bool, ChunkError> {
    let c = c.clone();
    blocking(backend, move |b| b.put(&id, &c)).await
}

pub async fn get(
    backend: &Arc<ReplicatedChunks>,
    id: ChunkId,
) -> Result<Option<Bytes>, ChunkError> {
    blocking(backend, move |b| b.get(&id)).await
}
