//! One node of a multi-node site, in-process: what `cairn serve --config FILE` runs, and what
//! tests start several of (each with its own data dir and loopback ports).
//!
//! A node opens the stores of its roles (chunk: `DATA_DIR/chunks`; manifest: `DATA_DIR/meta`),
//! serves them to its peers over the node transport (QUIC with mutual TLS under the site CA),
//! and — with the s3 role — runs an S3 gateway whose client stores chunks through
//! `ReplicatedChunks` and metadata through `ReplicatedManifests`, both placing data with the
//! cluster map. The map lives in `DATA_DIR/cluster.map` (the config's `[site]` section gives the
//! first one); `cairn cluster` changes it and it spreads to every node (see [`cluster`]).
//!
//! Workers: lifecycle runs on one node (the lowest id among the manifest nodes that answer);
//! garbage collection runs on every chunk node over its own store, marking from the site's
//! metadata, and only while every manifest node answers; repair, rebalance and scrub run on
//! every chunk node over its own store; anti-entropy on every manifest node.

pub mod admin;
pub mod cluster;
pub mod config;
mod status;
pub(crate) mod tasks;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_chunkserver::{
    ChunkConfig, ChunkMaintenance, ChunkService, ChunkStore, MaintenanceConfig, PassReport,
    ReplicatedChunks, ReplicationConfig, WorkerKind,
};
use cairn_client::Client;
use cairn_core::cluster::Role;
use cairn_core::metrics::MetricsSource;
use cairn_manifestserver::{
    ManifestConfig, ManifestReplicationConfig, ManifestService, ManifestStore, ReplicatedManifests,
};
use cairn_net::{NetConfig, NodeIdentity, Server};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::workers::Workers;
use cluster::{ClusterService, ClusterState, StatusFn};
pub use config::NodeConfig;

/// Deadline of a chunk call to a peer (a put carries up to 4 MiB).
const CHUNK_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of a metadata call to a peer.
const MANIFEST_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a node checks whether it can stop reading from the previous map's placement (no
/// call is made while there is none).
const PREVIOUS_MAP_CHECK: Duration = Duration::from_secs(10);

/// A running node.
pub struct NodeHandle {
    /// The node's name.
    pub name: String,
    /// Where its node transport listens.
    pub rpc_addr: SocketAddr,
    /// Its S3 endpoint (s3 role).
    pub s3_addr: Option<SocketAddr>,
    /// Its admin endpoint.
    pub admin_addr: SocketAddr,
    /// Its NBD server for block volumes (s3 role, unless `[volumes] nbd = false`).
    pub nbd_addr: Option<SocketAddr>,
    /// Its iSCSI portal, and the prefix of its target names (s3 role, unless `[volumes]
    /// iscsi = false`).
    pub iscsi: Option<(SocketAddr, String)>,
    /// The site's block volumes as this node serves them (NBD and `/v1/volumes`).
    pub volumes: Arc<cairn_block::Volumes>,
    /// Where it accepts links from other sites (`[listen] link`).
    pub link_addr: Option<SocketAddr>,
    /// Its NFS server (s3 role, unless `[nfs] enabled = false`).
    pub nfs_addr: Option<SocketAddr>,
    /// Its map and peers.
    pub cluster: Arc<ClusterState>,
    /// Its chunk store (chunk role).
    pub chunks: Option<Arc<ChunkStore>>,
    /// Its manifest store (manifest role).
    pub manifests: Option<Arc<ManifestStore>>,
    /// The client its gateway uses.
    pub client: Client,
    /// Its workers' status.
    pub workers: Arc<Workers>,
    /// Its repair, rebalance and scrub workers (chunk role).
    pub maintenance: Option<Arc<ChunkMaintenance>>,
    /// Its replicating chunk backend.
    pub chunk_backend: Arc<ReplicatedChunks>,
    /// Its replicating metadata backend.
    pub manifest_backend: Arc<ReplicatedManifests>,
    /// The links to other sites it runs.
    pub links: cairn_isgw::Links,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    net: cairn_net::Client,
}

impl NodeHandle {
    /// Stops the node: servers finish what they are doing (S3 gives requests a grace period),
    /// workers stop between steps, and the stores close.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        // Every front end has stopped: commit what the open volumes still buffer.
        self.volumes.close().await;
        self.net.close().await;
    }

    /// Stops the node at once, as a crash would (tasks are aborted mid-way; what was
    /// acknowledged is durable, anything else may be lost).
    pub async fn kill(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.net.close().await;
    }
}

/// The unspecified address of `addr`'s family, port 0: where the node's client side binds.
fn any_of(addr: &SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// Runs `cairn serve --config FILE` until SIGINT or SIGTERM.
pub(crate) async fn run_config(
    path: &Path,
    shutdown: crate::serve::ShutdownSignal,
) -> anyhow::Result<()> {
    let config = NodeConfig::load(path)?;
    let s3_scheme = if config.s3.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let node = start(config).await?;
    println!("Node:           {}", node.name);
    if let Some(s3) = node.s3_addr {
        println!("S3 endpoint:    {s3_scheme}://{s3}");
    }
    if let Some(nbd) = node.nbd_addr {
        println!("NBD endpoint:   nbd://{nbd}/VOLUME");
    }
    if let Some((addr, prefix)) = &node.iscsi {
        println!("iSCSI endpoint: iscsi://{addr}/{prefix}:VOLUME/0");
    }
    if let Some(addr) = node.nfs_addr {
        println!("NFS endpoint:   nfs://{addr}/BUCKET");
    }
    if let Some(addr) = node.link_addr {
        println!("Link listener:  quic://{addr}");
    }
    println!("Admin endpoint: http://{}", node.admin_addr);
    println!("Node transport: {} (QUIC)", node.rpc_addr);
    shutdown.wait().await;
    info!("shutting down");
    node.stop().await;
    info!("stopped cleanly");
    Ok(())
}

/// Starts a node as `config` says and returns once it serves.
pub async fn start(config: NodeConfig) -> anyhow::Result<NodeHandle> {
    let roles = config.roles()?;
    config.volumes.validate()?;
    // Loaded before anything starts: a bad S3 certificate stops the node at once.
    let s3_tls = if roles.has(Role::S3) {
        config.s3.tls()?
    } else {
        None
    };
    let identity = NodeIdentity::load(&config.node.certs_dir).with_context(|| {
        format!(
            "loading the node certificate from {} (create it with `cairn init`)",
            config.node.certs_dir.display()
        )
    })?;
    if identity.node() != config.node.name {
        anyhow::bail!(
            "the certificate in {} is for node `{}`, not `{}`",
            config.node.certs_dir.display(),
            identity.node(),
            config.node.name
        );
    }
    let site = identity.site().to_string();
    let me = config::node_id(&site, &config.node.name);
    let site_id = config
        .site
        .id
        .unwrap_or_else(|| config::site_id(identity.ca_pem()));
    // Checked before anything is created on disk.
    let first_map = config.first_map(&site)?;
    let dir = config.node.data_dir.clone();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;

    let in_use = |e: String| {
        if e.to_lowercase().contains("lock") {
            anyhow::anyhow!(
                "data dir {} is in use by another cairn process: stop it or use another data_dir",
                dir.display()
            )
        } else {
            anyhow::anyhow!(e)
        }
    };
    config.disk.validate()?;
    let mut data_dirs = Vec::new();
    for (role, name) in [(Role::Chunk, "chunks"), (Role::Manifest, "meta")] {
        if roles.has(role) {
            let path = dir.join(name);
            std::fs::create_dir_all(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            data_dirs.push((name.to_string(), path));
        }
    }
    let disk = crate::disk::DiskMonitor::new(config.disk.clone(), data_dirs);
    let chunk_config = ChunkConfig {
        space: Some(disk.gate()),
        ..ChunkConfig::default()
    };
    let chunk_store = if roles.has(Role::Chunk) {
        Some(Arc::new(
            ChunkStore::open(&dir.join("chunks"), chunk_config)
                .map_err(|e| in_use(e.to_string()))?,
        ))
    } else {
        None
    };
    let manifest_store = if roles.has(Role::Manifest) {
        Some(Arc::new(
            ManifestStore::open(&dir.join("meta"), ManifestConfig::default())
                .map_err(|e| in_use(e.to_string()))?,
        ))
    } else {
        None
    };

    let net_config = NetConfig {
        fence: config.fence.clone(),
        ..NetConfig::default()
    };
    let net = cairn_net::Client::new(&identity, net_config.clone(), any_of(&config.listen.rpc))?;
    let cluster = Arc::new(ClusterState::open(&dir, me, first_map, net.clone())?);
    let map = cluster.map();
    if map.node(me).is_none() {
        warn!(
            node = %config.node.name,
            "this node is not in the cluster map: add it with `cairn cluster add` on a node of the site"
        );
    }

    let handle = tokio::runtime::Handle::current();
    let chunks = Arc::new(ReplicatedChunks::with_config(
        map.clone(),
        chunk_store.clone().map(|s| (me, s)),
        net.clone(),
        handle.clone(),
        ReplicationConfig {
            call_timeout: CHUNK_CALL_TIMEOUT,
            ..ReplicationConfig::default()
        },
    ));
    let manifests = Arc::new(ReplicatedManifests::with_config(
        map.clone(),
        manifest_store.clone().map(|s| (me, s)),
        net.clone(),
        handle.clone(),
        ManifestReplicationConfig {
            call_timeout: MANIFEST_CALL_TIMEOUT,
            clock_node: Some(me),
            clock_site: site_id,
            anti_entropy_records_per_sec: config.workers.anti_entropy_records_per_sec,
            map_settle: Duration::from_secs(config.workers.map_settle),
            ..ManifestReplicationConfig::default()
        },
    ));
    {
        let (c, m) = (chunks.clone(), manifests.clone());
        cluster.on_change(move |map| {
            c.set_map(map.clone());
            m.set_map(map.clone());
        });
    }
    let client = Client::from_backends_with_local(
        chunks.clone(),
        chunk_store.clone(),
        manifests.clone(),
        site_id,
        me,
    );
    // Chunks no replica holds are asked of the node that runs a metadata-only link, if one
    // does (it keeps the site's fetch cache and answers `Fetch`).
    client.set_peer_fetch(chunks.clone());
    // The site's encryption keys, from `cairn init` beside the certificates (or the
    // environment); without them SSE-S3 requests are refused with a message saying so.
    match cairn_client::crypt::SiteKeys::load(&config.node.certs_dir)? {
        Some(keys) => client.set_site_keys(&keys),
        None => tracing::warn!(
            dir = %config.node.certs_dir.display(),
            "no site encryption keys ({}): server-side encryption with the site's keys is \
             refused on this node; copy the file `cairn init` wrote for the site",
            cairn_client::crypt::KEYS_FILE
        ),
    }

    let workers = Arc::new(Workers::default());
    let status: StatusFn = {
        let (cluster, workers, store) = (cluster.clone(), workers.clone(), chunk_store.clone());
        let roles = roles.to_string();
        let name = config.node.name.clone();
        let disk = disk.clone();
        Arc::new(move || {
            let mut s = status::node_status(&name, &roles, &cluster, &workers, store.as_deref());
            s.disk = Some(disk.status());
            s
        })
    };

    // Node transport.
    let mut builder = Server::builder(&identity, net_config)
        .service(ClusterService::new(cluster.clone(), status.clone()));
    if let Some(s) = &chunk_store {
        builder = builder
            .service(ChunkService::new(s.clone()).with_fetch_source(Arc::new(client.clone())));
    }
    if let Some(s) = &manifest_store {
        builder = builder.service(ManifestService::new(s.clone()));
    }
    let server = builder.bind(config.listen.rpc).with_context(|| {
        format!(
            "cannot listen on {} for the node transport: change [listen] rpc",
            config.listen.rpc
        )
    })?;
    let rpc_addr = server.local_addr()?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn({
        let stop = stopped(stop_rx.clone());
        async move {
            if let Err(e) = server.run(stop).await {
                warn!(error = %e, "node transport stopped");
            }
        }
    }));
    tasks.push(tokio::spawn(cluster.clone().gossip_loop(stop_rx.clone())));
    tasks.push(tokio::spawn(crate::disk::disk_worker(
        disk.clone(),
        workers.clone(),
        stop_rx.clone(),
    )));
    {
        let (c, m) = (chunks.clone(), manifests.clone());
        cluster.on_full(move |id| {
            c.set_node_full(id);
            m.set_node_full(id);
        });
    }
    if chunk_store.is_some() || manifest_store.is_some() {
        // While this node's disk is near full, its own puts place around its store, metadata
        // writes need a quorum of other replicas, and its peers are told (every 5 s; they
        // forget it 30 s after the last report).
        let (gate, chunks, cluster) = (disk.gate(), chunks.clone(), cluster.clone());
        let manifests = manifests.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let state = gate.state();
                if state.refuses_writes() {
                    chunks.set_node_full(me);
                    manifests.set_node_full(me);
                    cluster.announce_space(state).await;
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }));
    }

    let w = &config.workers;

    // S3 gateway.
    let s3_metrics = Arc::new(cairn_s3::S3Metrics::new());
    let s3_addr = if roles.has(Role::S3) {
        let listener = tokio::net::TcpListener::bind(config.listen.s3)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} for S3: change [listen] s3",
                    config.listen.s3
                )
            })?;
        let addr = listener.local_addr()?;
        let s3_config = cairn_s3::S3Config {
            region: config.s3.region.clone(),
            domains: config.s3.domains.clone(),
            metrics: s3_metrics.clone(),
            signature_v2: config.s3.signature_v2,
            tls: s3_tls,
        };
        let (client, stop) = (client.clone(), stopped(stop_rx.clone()));
        tasks.push(tokio::spawn(async move {
            if let Err(e) = cairn_s3::serve(listener, s3_config, client, stop).await {
                warn!(error = %e, "S3 server stopped");
            }
        }));
        Some(addr)
    } else {
        None
    };

    // Block volumes: one set of controllers for NBD and `/v1/volumes`, so no volume is
    // written by two controllers of this process.
    let volumes = Arc::new(cairn_block::Volumes::new(
        client.clone(),
        cairn_block::VolumeConfig {
            commit_interval: Duration::from_secs_f64(config.volumes.commit_interval),
            chunk_cache_bytes: crate::volume_cache_bytes(config.volumes.cache_mib),
            max_dirty_bytes: crate::volume_dirty_bytes(config.volumes.dirty_mib),
        },
    ));
    let nbd_addr = if roles.has(Role::S3) && config.volumes.nbd {
        let exports: Arc<dyn cairn_block::Exports> = volumes.clone();
        let server = cairn_block::NbdServer::bind(
            config.listen.nbd,
            exports,
            cairn_block::NbdConfig::default(),
        )
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for NBD: change [listen] nbd, or set [volumes] nbd = false",
                config.listen.nbd
            )
        })?;
        let addr = server.local_addr()?;
        let stop = stopped(stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = server.serve(stop).await {
                warn!(error = %e, "NBD server stopped");
            }
        }));
        Some(addr)
    } else {
        None
    };
    let mut iscsi_stats = None;
    let iscsi = if roles.has(Role::S3) && config.volumes.iscsi {
        let exports: Arc<dyn cairn_block::Exports> = volumes.clone();
        let prefix = config
            .volumes
            .iscsi_target_prefix
            .clone()
            .unwrap_or_else(|| cairn_block::iscsi::default_target_prefix(&site));
        let server = cairn_block::iscsi::IscsiServer::bind(
            config.listen.iscsi,
            exports,
            volumes.clone(),
            cairn_block::iscsi::IscsiConfig {
                target_prefix: prefix.clone(),
                ..Default::default()
            },
        )
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for iSCSI: change [listen] iscsi, or set [volumes] iscsi = false",
                config.listen.iscsi
            )
        })?;
        let addr = server.local_addr()?;
        iscsi_stats = Some(server.stats());
        let stop = stopped(stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = server.serve(stop).await {
                warn!(error = %e, "iSCSI target stopped");
            }
        }));
        Some((addr, prefix))
    } else {
        None
    };
    let mut nfs_metrics = None;
    let nfs_addr = if roles.has(Role::S3) && config.nfs.enabled {
        let exports_file = cairn_nfs::ExportsFile::in_data_dir(&dir);
        let fs = Arc::new(cairn_nfs::Fs::with_read_cache(
            client.clone(),
            config.nfs.exports.clone(),
            crate::volume_dirty_bytes(config.volumes.dirty_mib),
            crate::nfs_cache_bytes(config.nfs.cache_mib),
        ));
        let nfs_config = cairn_nfs::NfsConfig {
            exports_file: Some(exports_file.path().to_path_buf()),
            fixed_exports: config.nfs.exports.clone(),
            ..Default::default()
        };
        let server = cairn_nfs::NfsServer::bind(config.listen.nfs, fs, nfs_config)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} for NFS: change [listen] nfs, or set [nfs] enabled = false",
                    config.listen.nfs
                )
            })?;
        let addr = server.local_addr()?;
        nfs_metrics = Some(server.metrics_source());
        tasks.push(tokio::spawn(server.run(stopped(stop_rx.clone()))));
        Some(addr)
    } else {
        None
    };
    let volume_monitor = Arc::new(cairn_block::volume::VolumeMonitor::new(volumes.clone()));
    tasks.push(tokio::spawn(tasks::volume_monitor_loop(
        volume_monitor.clone(),
        workers.clone(),
        Duration::from_secs(config.volumes.health_interval.max(1)),
        stop_rx.clone(),
    )));

    // Repair, rebalance and anti-entropy react to map changes and to nodes coming back.
    let kicks = Kicks::default();
    if w.react_to_changes {
        let k = kicks.clone();
        cluster.on_change(move |_| {
            k.repair.kick("map change");
            k.rebalance.kick("map change");
            k.anti_entropy.kick("map change");
        });
        let k = kicks.clone();
        cluster.on_return(move |_| {
            k.repair.kick("node back");
            k.anti_entropy.kick("node back");
        });
    }

    let maintenance = match &chunk_store {
        Some(_) => {
            let m = Arc::new(ChunkMaintenance::new(
                chunks.clone(),
                MaintenanceConfig {
                    repair_bytes_per_sec: w.rate_bytes_per_sec,
                    rebalance_bytes_per_sec: w.rate_bytes_per_sec,
                    scrub_bytes_per_sec: w.rate_bytes_per_sec,
                    ..MaintenanceConfig::default()
                },
            )?);
            for kind in WorkerKind::ALL {
                let interval = match kind {
                    WorkerKind::Scrub => w.scrub_interval,
                    _ => w.repair_interval,
                };
                let m = m.clone();
                let kick = match kind {
                    WorkerKind::Repair => kicks.repair.clone(),
                    WorkerKind::Rebalance => kicks.rebalance.clone(),
                    WorkerKind::Scrub => Arc::new(tasks::Kick::default()),
                };
                tasks.push(tokio::spawn(tasks::maintenance_loop(
                    kind.name(),
                    workers.clone(),
                    Duration::from_secs(30),
                    Duration::from_secs(interval.max(1)),
                    kick,
                    stop_rx.clone(),
                    move || {
                        let m = m.clone();
                        async move {
                            m.run_pass(kind)
                                .await
                                .map(chunk_outcome)
                                .map_err(|e| e.to_string())
                        }
                    },
                )));
            }
            Some(m)
        }
        None => None,
    };

    if manifest_store.is_some() {
        let m = manifests.clone();
        tasks.push(tokio::spawn(tasks::maintenance_loop(
            "anti-entropy",
            workers.clone(),
            Duration::from_secs(20),
            Duration::from_secs(w.anti_entropy_interval.max(1)),
            kicks.anti_entropy.clone(),
            stop_rx.clone(),
            move || {
                let m = m.clone();
                async move {
                    let r = m.anti_entropy_pass().await.map_err(|e| e.to_string())?;
                    let counters = [
                        ("peers", r.peers),
                        ("changes_read", r.changes_read),
                        ("versions_fetched", r.versions_fetched),
                        ("removals_applied", r.removals_applied),
                        ("records_updated", r.records_updated),
                        ("errors", r.errors),
                        ("caught_up", u64::from(r.synced)),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                    Ok(tasks::PassOutcome {
                        counters,
                        last_error: r.last_error,
                        findings: Vec::new(),
                    })
                }
            },
        )));
    }

    if manifest_store.is_some() {
        tasks.push(tokio::spawn(crate::workers::history_trim_loop(
            client.clone(),
            workers.clone(),
            Duration::from_secs(w.history_trim_interval.max(1)),
            Duration::from_secs(w.history_retention),
            stop_rx.clone(),
        )));
    }

    // Every node reads metadata: each stops asking the old placement once every manifest
    // node has caught up under the new map.
    {
        let m = manifests.clone();
        let forgotten = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tasks.push(tokio::spawn(tasks::maintenance_loop(
            "map-handover",
            workers.clone(),
            PREVIOUS_MAP_CHECK,
            PREVIOUS_MAP_CHECK,
            Arc::new(tasks::Kick::default()),
            stop_rx.clone(),
            move || {
                let (m, forgotten) = (m.clone(), forgotten.clone());
                async move {
                    // A node that cannot be asked keeps the previous map: not a failure.
                    let last_error = match m.forget_previous_map_when_synced().await {
                        Ok(forgot) => {
                            if forgot {
                                forgotten.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            None
                        }
                        Err(e) => Some(format!("previous map kept: {e}")),
                    };
                    let counters = [
                        ("previous_map", u64::from(m.has_previous_map())),
                        (
                            "forgotten",
                            forgotten.load(std::sync::atomic::Ordering::Relaxed),
                        ),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                    Ok(tasks::PassOutcome {
                        counters,
                        last_error,
                        findings: Vec::new(),
                    })
                }
            },
        )));
    }

    // Site links: this node accepts them where `[listen] link` says, and runs the links of
    // its config file (`[[links]]`) and those configured in its data dir.
    let link_identity: cairn_isgw::IdentitySource = {
        let (certs, data) = (config.node.certs_dir.clone(), dir.clone());
        Arc::new(move || cairn_isgw::identity::node_identity(&certs, &data))
    };
    let link_addr = match config.listen.link {
        Some(addr) => {
            let listener =
                cairn_isgw::LinkListener::bind(addr, link_identity.clone(), client.clone())
                    .map_err(|e| anyhow::anyhow!("{e}: change [listen] link"))?;
            let addr = listener.local_addr();
            tasks.push(tokio::spawn(listener.run(stop_rx.clone())));
            Some(addr)
        }
        None => None,
    };
    let links = cairn_isgw::Links::with_fixed(
        client.clone(),
        dir.clone(),
        link_identity,
        config.links.clone(),
    );
    links.set_cache_size(config.link_cache.size_mib.saturating_mul(1 << 20));
    tasks.push(tokio::spawn(links.clone().run(stop_rx.clone())));

    // Admin endpoint.
    let admin_listener = tokio::net::TcpListener::bind(config.listen.admin)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for admin: change [listen] admin",
                config.listen.admin
            )
        })?;
    let admin_addr = admin_listener.local_addr()?;
    let token = crate::admin::load_or_create_token(&dir)?;
    crate::admin::write_endpoint_file(&dir, admin_addr)?;
    {
        let (client, workers, stop) = (client.clone(), workers.clone(), stopped(stop_rx.clone()));
        let volumes = volumes.clone();
        let mut sources: Vec<Arc<dyn MetricsSource>> =
            vec![net.metrics(), Arc::new(ManifestMetrics(manifests.clone()))];
        if roles.has(Role::S3) {
            sources.push(s3_metrics.clone());
        }
        if let Some(m) = &maintenance {
            sources.push(Arc::new(MaintenanceMetrics(m.clone())));
        }
        if let Some(store) = &chunk_store {
            sources.push(Arc::new(NodeStoreMetrics(store.clone())));
        }
        sources.push(disk.clone());
        sources.push(Arc::new(links.clone()));
        sources.push(volumes.clone());
        sources.push(volume_monitor.clone());
        if let Some(n) = &nfs_metrics {
            sources.push(n.clone());
        }
        if let Some(i) = &iscsi_stats {
            sources.push(i.clone());
        }
        let cluster_admin = admin::ClusterAdmin {
            site_id,
            cluster: cluster.clone(),
            status: status.clone(),
        };
        let links = links.clone();
        tasks.push(tokio::spawn(async move {
            let parts = crate::admin::AdminParts {
                sources,
                cluster: Some(cluster_admin),
                disk: Some(disk),
                volumes: Some(volumes),
                links: Some(links),
            };
            if let Err(e) =
                crate::admin::serve(admin_listener, client, token, workers, parts, stop).await
            {
                warn!(error = %e, "admin server stopped");
            }
        }));
    }

    // The first access key, once the site's metadata can take writes.
    tasks.push(tokio::spawn(first_key_when_ready(
        client.clone(),
        dir.clone(),
        stop_rx.clone(),
    )));

    // Workers.
    let leader = {
        let cluster = cluster.clone();
        Arc::new(move || is_leader(&cluster)) as crate::workers::Gate
    };
    let all_manifests_up = {
        let cluster = cluster.clone();
        Arc::new(move || {
            let map = cluster.map();
            map.nodes
                .values()
                .filter(|n| n.roles.has(Role::Manifest))
                .all(|n| cluster.is_up(n.id))
        }) as crate::workers::Gate
    };
    tasks.push(tokio::spawn(crate::workers::lifecycle_loop(
        client.clone(),
        workers.clone(),
        Duration::from_secs(w.lifecycle_interval.max(1)),
        w.lifecycle_versions_per_sec,
        Some(leader),
        stop_rx.clone(),
    )));
    if chunk_store.is_some() {
        tasks.push(tokio::spawn(crate::workers::gc_loop(
            client.clone(),
            workers.clone(),
            Duration::from_secs(w.gc_interval.max(1)),
            Duration::from_secs(w.gc_hold),
            w.gc_items_per_sec,
            Some(all_manifests_up),
            stop_rx.clone(),
        )));
    }

    info!(node = %config.node.name, site = %site, roles = %roles, "node is running");
    Ok(NodeHandle {
        name: config.node.name.clone(),
        rpc_addr,
        s3_addr,
        admin_addr,
        nbd_addr,
        iscsi,
        volumes,
        link_addr,
        nfs_addr,
        cluster,
        chunks: chunk_store,
        manifests: manifest_store,
        client,
        workers,
        maintenance,
        chunk_backend: chunks,
        manifest_backend: manifests,
        links,
        stop: stop_tx,
        tasks,
        net,
    })
}

/// The metadata backend's lines in /metrics (read repairs, replica write failures,
/// anti-entropy).
struct ManifestMetrics(Arc<ReplicatedManifests>);

impl MetricsSource for ManifestMetrics {
    fn render(&self, out: &mut String) {
        self.0.render_prometheus(out);
    }
}

/// This node's own chunk store in /metrics (the `cairn_chunks`-style gauges above them are
/// the site's totals as this node sees them).
struct NodeStoreMetrics(Arc<ChunkStore>);

impl MetricsSource for NodeStoreMetrics {
    fn render(&self, out: &mut String) {
        let Ok(s) = self.0.stats() else { return };
        for (name, help, v) in [
            (
                "cairn_node_chunks",
                "Chunks in this node's store.",
                s.chunks,
            ),
            (
                "cairn_node_chunk_raw_bytes",
                "Uncompressed bytes of the chunks in this node's store.",
                s.raw_bytes,
            ),
            (
                "cairn_node_chunk_stored_bytes",
                "Payload bytes of the chunks in this node's store, on disk.",
                s.stored_bytes,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
            ));
        }
    }
}

/// The chunk maintenance workers' lines in /metrics.
struct MaintenanceMetrics(Arc<ChunkMaintenance>);

impl MetricsSource for MaintenanceMetrics {
    fn render(&self, out: &mut String) {
        self.0.render_prometheus(out);
    }
}

/// A chunk maintenance pass's counters, as the worker status shows them.
/// What starts a worker's next pass at once.
#[derive(Clone, Default)]
struct Kicks {
    repair: Arc<tasks::Kick>,
    rebalance: Arc<tasks::Kick>,
    anti_entropy: Arc<tasks::Kick>,
}

fn chunk_outcome(r: PassReport) -> tasks::PassOutcome {
    let counters = [
        ("chunks_scanned", r.chunks_scanned),
        ("chunks_pushed", r.chunks_pushed),
        ("bytes_pushed", r.bytes_pushed),
        ("local_copies_deleted", r.local_copies_deleted),
        ("corrupt_found", r.corrupt_found),
        ("corrupt_repaired", r.corrupt_repaired),
        ("corrupt_unrepaired", r.corrupt_unrepaired),
        ("errors", r.errors),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    tasks::PassOutcome {
        counters,
        last_error: r.last_error,
        findings: Vec::new(),
    }
}

/// Whether this node runs the site-wide workers (lifecycle): it is the manifest node with the
/// lowest id among those that answer.
fn is_leader(cluster: &ClusterState) -> bool {
    let map = cluster.map();
    map.nodes
        .values()
        .filter(|n| n.roles.has(Role::Manifest) && cluster.is_up(n.id))
        .map(|n| n.id)
        .min()
        == Some(cluster.me())
}

/// Imports the access key given in CAIRN_ACCESS_KEY_ID / CAIRN_SECRET_ACCESS_KEY, retrying
/// until the site's metadata takes writes (the other nodes may still be starting). Without
/// them, nothing is created: keys come from `cairn key create` against any node.
async fn first_key_when_ready(
    client: Client,
    dir: std::path::PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let has_env = std::env::var("CAIRN_ACCESS_KEY_ID").is_ok_and(|s| !s.is_empty());
    if !has_env {
        info!("no CAIRN_ACCESS_KEY_ID given: create access keys with `cairn key create`");
        return;
    }
    let mut wait = Duration::from_millis(200);
    loop {
        match crate::serve::first_key(&client, &dir).await {
            Ok(()) => return,
            Err(e) => {
                let msg = format!("{e:#}");
                if msg.contains("another secret") {
                    warn!(error = %msg, "cannot import the access key");
                    return;
                }
                info!(error = %msg, "access key not imported yet; retrying");
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
