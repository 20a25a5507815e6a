//! [`MultiSite`]: a whole multi-node site in this test process — N nodes, each a full
//! `cairn serve --config` node (chunk, manifest and S3 roles) with its own temp data dir, real
//! QUIC with mutual TLS on loopback, real RocksDB — that scenarios can kill, restart and
//! partition node by node.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use cairn::node::{self, NodeConfig, NodeHandle};
use cairn_core::ChunkId;
use cairn_net::{Fence, SiteCa};
use std::sync::Arc;

use crate::{ACCESS_KEY, SECRET_KEY};

/// The site name of every test site.
pub const SITE: &str = "test";

/// One node slot: its config (kept across restarts) and, while it runs, its handle.
pub struct Slot {
    /// The node's configuration (ports fixed after the first start).
    pub config: NodeConfig,
    /// The running node.
    pub node: Option<NodeHandle>,
    /// The peers it is partitioned from (shared with its transport, across restarts).
    pub fence: Arc<Fence>,
}

/// A running multi-node site.
pub struct MultiSite {
    /// The temp dir holding every node's data and certificates.
    pub dir: tempfile::TempDir,
    /// The site CA.
    pub ca: SiteCa,
    /// Nodes, index 0 = `n1`.
    pub slots: Vec<Slot>,
}

/// A free UDP port on loopback (for a node transport address known before the node starts).
///
/// It is in the map before the node binds it, so it must not be taken meanwhile. A port the
/// kernel hands out for `bind(0)` could be: every QUIC client endpoint of every node and site
/// of the process binds one. So these come from below the kernel's ephemeral range (which
/// starts at 32768 by default), each handed out once per process, from an offset that differs
/// between processes, and each checked free when handed out.
fn free_udp_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 12_000;
    const SPAN: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = (std::process::id().wrapping_mul(7919)) % SPAN;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    s.local_addr().expect("addr").port()
}

/// The config of node `name` for a site whose nodes are `site_nodes` (name, rpc port, zone).
/// A node of a test site's first map: name, transport port, zone, roles.
type SiteNode = (String, u16, String, String);

fn config_for(
    dir: &std::path::Path,
    name: &str,
    rpc: u16,
    rf: u8,
    site_nodes: &[SiteNode],
    extra: &str,
) -> NodeConfig {
    let roles = site_nodes
        .iter()
        .find(|n| n.0 == name)
        .map_or("all", |n| n.3.as_str());
    let mut text = format!(
        "[node]\nname = \"{name}\"\ndata_dir = \"{data}\"\ncerts_dir = \"{certs}\"\n\
         roles = [\"{roles}\"]\n[listen]\nrpc = \"127.0.0.1:{rpc}\"\ns3 = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nnbd = \"127.0.0.1:0\"\niscsi = \"127.0.0.1:0\"\nlink = \"127.0.0.1:0\"\nnfs = \"127.0.0.1:0\"\n\
         [site]\nreplication_factor = {rf}\n",
        data = dir.join(name).join("data").display(),
        certs = dir.join(name).join("certs").display(),
    );
    for (n, port, zone, roles) in site_nodes {
        text.push_str(&format!(
            "[[site.nodes]]\nname = \"{n}\"\naddress = \"127.0.0.1:{port}\"\nzone = \"{zone}\"\n\
             roles = [\"{roles}\"]\n"
        ));
    }
    text.push_str(extra);
    toml::from_str(&text).expect("test config")
}

impl MultiSite {
    /// Starts `n` nodes in `zones` zones (node k in zone k mod zones) with replication factor
    /// `rf`, and imports the test access key once the metadata quorum answers. `extra` is
    /// appended to every node's config (e.g. a `[workers]` section).
    pub async fn start(n: usize, rf: u8, zones: usize, extra: &str) -> MultiSite {
        MultiSite::start_with_roles(&vec!["all"; n], rf, zones, extra).await
    }

    /// [`MultiSite::start`] with node k's roles (`"all"`, `"s3"`, `"chunk,manifest"`, ...) in
    /// `roles[k]`. Node 1 must run the manifest role or reach nodes that do (it imports the key).
    pub async fn start_with_roles(roles: &[&str], rf: u8, zones: usize, extra: &str) -> MultiSite {
        let n = roles.len();
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = SiteCa::generate(SITE).expect("site CA");
        let site_nodes: Vec<SiteNode> = (1..=n)
            .map(|k| {
                (
                    format!("n{k}"),
                    free_udp_port(),
                    format!("z{}", (k - 1) % zones + 1),
                    roles[k - 1].to_string(),
                )
            })
            .collect();
        let mut slots = Vec::new();
        for (name, port, _, _) in &site_nodes {
            ca.issue_node(name, &[])
                .expect("node cert")
                .save(&dir.path().join(name).join("certs"), false)
                .expect("save cert");
            site_keys(dir.path(), &dir.path().join(name).join("certs"));
            let fence = Arc::new(Fence::new());
            let mut config = config_for(dir.path(), name, *port, rf, &site_nodes, extra);
            config.fence = Some(fence.clone());
            slots.push(Slot {
                config,
                node: None,
                fence,
            });
        }
        let mut site = MultiSite { dir, ca, slots };
        for k in 0..n {
            site.start_node(k).await;
        }
        site.import_key().await;
        site
    }

    /// Imports the test key through node 1, retrying while the metadata quorum forms.
    async fn import_key(&self) {
        let client = self.node(0).client.clone();
        for _ in 0..200 {
            match client.get_key(ACCESS_KEY).await {
                Ok(Some(_)) => return,
                Ok(None) => {
                    if client
                        .import_key(ACCESS_KEY, SECRET_KEY, "test")
                        .await
                        .is_ok()
                    {
                        return;
                    }
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the test key could not be imported within 20 s");
    }

    /// Starts (or restarts) node `k` (0-based) on its data; its S3 and admin ports stay those
    /// of its first start.
    pub async fn start_node(&mut self, k: usize) {
        let config = self.slots[k].config.clone();
        let mut last = None;
        // The previous incarnation's RocksDB lock may take a moment to go.
        for _ in 0..100 {
            match node::start(config.clone()).await {
                Ok(h) => {
                    let slot = &mut self.slots[k];
                    if let Some(s3) = h.s3_addr {
                        slot.config.listen.s3 = s3;
                    }
                    slot.config.listen.admin = h.admin_addr;
                    if let Some(nbd) = h.nbd_addr {
                        slot.config.listen.nbd = nbd;
                    }
                    if let Some(nfs) = h.nfs_addr {
                        slot.config.listen.nfs = nfs;
                    }
                    if let Some((iscsi, _)) = &h.iscsi {
                        slot.config.listen.iscsi = *iscsi;
                    }
                    if h.link_addr.is_some() {
                        slot.config.listen.link = h.link_addr;
                    }
                    slot.node = Some(h);
                    return;
                }
                Err(e) => last = Some(format!("{e:#}")),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node {} did not start: {}", k + 1, last.unwrap_or_default());
    }

    /// Starts node `n{len+1}` with the site's first map in its config: it joins the live map
    /// once the caller stages it (`cairn cluster add`) and applies. Returns its index.
    pub async fn add_node(&mut self) -> usize {
        let k = self.slots.len();
        let name = format!("n{}", k + 1);
        self.ca
            .issue_node(&name, &[])
            .expect("node cert")
            .save(&self.dir.path().join(&name).join("certs"), false)
            .expect("save cert");
        site_keys(self.dir.path(), &self.dir.path().join(&name).join("certs"));
        let first = &self.slots[0].config;
        let site_nodes: Vec<SiteNode> = first
            .site
            .nodes
            .iter()
            .map(|n| {
                let port = n.address.rsplit(':').next().unwrap().parse().unwrap();
                (n.name.clone(), port, n.zone.clone(), n.roles.join(","))
            })
            .collect();
        let mut config = config_for(
            self.dir.path(),
            &name,
            free_udp_port(),
            first.site.replication_factor,
            &site_nodes,
            "",
        );
        config.workers = first.workers.clone();
        let fence = Arc::new(Fence::new());
        config.fence = Some(fence.clone());
        self.slots.push(Slot {
            config,
            node: None,
            fence,
        });
        self.start_node(k).await;
        k
    }

    /// Starts a new node ([`MultiSite::add_node`]) in its own zone `z{n}` and adds it to the
    /// map through node 1 (stage, apply): its index, the new map, and each node's answer to
    /// the map's distribution.
    pub async fn join_new_node(
        &mut self,
    ) -> (
        usize,
        cairn_core::cluster::ClusterMap,
        std::collections::BTreeMap<String, Result<bool, String>>,
    ) {
        let k = self.add_node().await;
        let name = format!("n{}", k + 1);
        let cluster = self.node(0).cluster.clone();
        let addr = self.slots[k].config.listen.rpc.to_string();
        let id = node::config::node_id(SITE, &name);
        let zone = format!("z{}", k + 1);
        cluster
            .stage(|s| {
                s.upsert
                    .push(cairn_core::cluster::NodeInfo::new(id, &name, addr, &zone))
            })
            .expect("stage the new node");
        let (map, _, answers) = cluster.apply_staged().await.expect("apply the new map");
        (k, map, answers)
    }

    /// Node `k` (0-based), which must be running.
    pub fn node(&self, k: usize) -> &NodeHandle {
        self.slots[k].node.as_ref().expect("node is running")
    }

    /// Cuts every node of `a` off from every node of `b` (both ways): their calls fail at
    /// once, as to an unreachable peer.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        for &i in a {
            for &j in b {
                self.slots[i].fence.block(&format!("n{}", j + 1));
                self.slots[j].fence.block(&format!("n{}", i + 1));
            }
        }
    }

    /// Ends every partition.
    pub fn heal(&self) {
        for s in &self.slots {
            s.fence.heal();
        }
    }

    /// Stops node `k` gracefully.
    pub async fn stop_node(&mut self, k: usize) {
        if let Some(h) = self.slots[k].node.take() {
            h.stop().await;
        }
    }

    /// Stops node `k` at once, as a crash would.
    pub async fn kill_node(&mut self, k: usize) {
        if let Some(h) = self.slots[k].node.take() {
            h.kill().await;
        }
    }

    /// The data dir of node `k`.
    pub fn data_dir(&self, k: usize) -> PathBuf {
        self.slots[k].config.node.data_dir.clone()
    }

    /// The S3 endpoint of node `k`.
    pub fn s3_addr(&self, k: usize) -> SocketAddr {
        self.slots[k].config.listen.s3
    }

    /// The NBD endpoint of node `k` (kept across restarts).
    pub fn nbd_addr(&self, k: usize) -> SocketAddr {
        self.slots[k].config.listen.nbd
    }

    /// An AWS SDK client for node `k`'s gateway.
    pub fn s3(&self, k: usize) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(format!("http://{}", self.s3_addr(k)))
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// How many running nodes hold chunk `id` in their store.
    pub fn copies(&self, id: &ChunkId) -> usize {
        self.slots
            .iter()
            .filter_map(|s| s.node.as_ref())
            .filter_map(|n| n.chunks.as_ref())
            .filter(|store| store.meta(id).ok().flatten().is_some())
            .count()
    }

    /// Every chunk id stored on any running node.
    pub fn all_chunks(&self) -> std::collections::BTreeSet<ChunkId> {
        let mut out = std::collections::BTreeSet::new();
        for store in self
            .slots
            .iter()
            .filter_map(|s| s.node.as_ref())
            .filter_map(|n| n.chunks.as_ref())
        {
            let mut after = None;
            loop {
                let page = store.list_ids(after.as_ref(), 10_000).expect("list ids");
                let Some(last) = page.last().copied() else {
                    break;
                };
                out.extend(page);
                after = Some(last);
            }
        }
        out
    }

    /// Node `k`'s Prometheus `/metrics` text (a plain HTTP/1.1 GET on its admin endpoint).
    pub async fn metrics(&self, k: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.slots[k].config.listen.admin;
        let mut conn = tokio::net::TcpStream::connect(addr)
            .await
            .expect("admin endpoint");
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("send");
        let mut out = String::new();
        conn.read_to_string(&mut out).await.expect("read");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        out
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for k in 0..self.slots.len() {
            self.stop_node(k).await;
        }
    }
}

/// Gives a node (its certs dir) the site's encryption keys, made once in the site's `dir`, as
/// `cairn init` does.
fn site_keys(dir: &std::path::Path, certs: &std::path::Path) {
    cairn_client::crypt::SiteKeys::load_or_create(dir)
        .and_then(|k| k.save_to(certs))
        .expect("site encryption keys");
}
