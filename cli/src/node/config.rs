//! The node configuration file of `cairn serve --config FILE` (TOML): who this node is, what it
//! serves, where it listens, and the site's first cluster map.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use cairn_core::cluster::{ClusterMap, NodeId, NodeInfo, Role, Roles, StagedChanges, WriteQuorum};
use cairn_core::SiteId;
use serde::Deserialize;

/// A node's configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Who this node is.
    pub node: NodeSection,
    /// Where it listens.
    pub listen: ListenSection,
    /// The site's first map (used when the data dir holds no map yet).
    pub site: SiteSection,
    /// Background workers.
    #[serde(default)]
    pub workers: WorkersSection,
    /// The S3 gateway role.
    #[serde(default)]
    pub s3: S3Section,
    /// Free space of the data dirs: when new writes are refused.
    #[serde(default)]
    pub disk: crate::disk::DiskConfig,
    /// Block volumes and their NBD server (with the s3 role).
    #[serde(default)]
    pub volumes: VolumesSection,
    /// Buckets exported over NFS (with the s3 role).
    #[serde(default)]
    pub nfs: NfsSection,
    /// `[[links]]`: links to other sites this node runs (`name`, `remote` HOST:PORT,
    /// `buckets` (absent: all), `direction`, `mode`, `data`, `rate_bytes_per_sec`, `paused`),
    /// beside those added with `cairn link add --data-dir` on this node; one of the config
    /// wins over a link of the same name added that way.
    #[serde(default)]
    pub links: Vec<cairn_isgw::LinkConfig>,
    /// `[link_cache]`: the fetch cache of the metadata-only links this node runs.
    #[serde(default)]
    pub link_cache: LinkCacheSection,
    /// Peers this node must not talk to (set by test harnesses to partition a site; not read
    /// from the file).
    #[serde(skip)]
    pub fence: Option<std::sync::Arc<cairn_net::Fence>>,
}

/// `[link_cache]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkCacheSection {
    /// Most MiB kept in this node's store of data fetched for metadata-only links (the least
    /// recently used is evicted past it; objects pinned with `cairn object pin` are kept
    /// beyond it). Default 10240 (10 GiB).
    #[serde(default = "default_link_cache_mib")]
    pub size_mib: u64,
}

impl Default for LinkCacheSection {
    fn default() -> Self {
        LinkCacheSection {
            size_mib: default_link_cache_mib(),
        }
    }
}

fn default_link_cache_mib() -> u64 {
    cairn_client::DEFAULT_CACHE_BYTES >> 20
}

/// `[node]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The node's name: a DNS label, as in its certificate and in the map.
    pub name: String,
    /// Where the node keeps its stores, the map and its admin token.
    pub data_dir: PathBuf,
    /// Directory with node.pem, node.key and ca.pem (from `cairn init`).
    pub certs_dir: PathBuf,
    /// What the node runs: any of "chunk", "manifest", "s3", or "all".
    #[serde(default = "all_roles")]
    pub roles: Vec<String>,
}

fn all_roles() -> Vec<String> {
    vec!["all".into()]
}

/// `[listen]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// Node transport (QUIC, UDP): where peers reach this node.
    pub rpc: SocketAddr,
    /// S3 endpoint (with the s3 role).
    #[serde(default = "default_s3")]
    pub s3: SocketAddr,
    /// Admin endpoint (/health, /metrics, /v1 with a token).
    #[serde(default = "default_admin")]
    pub admin: SocketAddr,
    /// NBD server for block volumes (with the s3 role, unless `[volumes] nbd = false`):
    /// `nbd://ADDR/VOLUME`.
    #[serde(default = "default_nbd")]
    pub nbd: SocketAddr,
    /// iSCSI portal for block volumes (with the s3 role, unless `[volumes] iscsi = false`):
    /// each volume is LUN 0 of target `PREFIX:VOLUME`.
    #[serde(default = "default_iscsi")]
    pub iscsi: SocketAddr,
    /// NFS server (NFSv3, MOUNT and a port mapper on one TCP port) for exported buckets
    /// (with the s3 role, unless `[nfs] enabled = false`): `HOST:/BUCKET`.
    #[serde(default = "default_nfs")]
    pub nfs: SocketAddr,
    /// Where this node accepts links from other sites (QUIC, UDP), if it does: sites whose
    /// CA was trusted with `cairn link trust --data-dir DATA_DIR` on this node. Links
    /// configured in this node's data dir (`cairn link add`) run on this node either way.
    #[serde(default)]
    pub link: Option<SocketAddr>,
}

fn default_nfs() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 2049))
}

fn default_iscsi() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3260))
}

fn default_nbd() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10809))
}

fn default_s3() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3900))
}

fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3903))
}

/// `[site]`: the first map.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    /// Copies of each chunk (and of each bucket's metadata, up to the manifest nodes).
    #[serde(default = "default_rf")]
    pub replication_factor: u8,
    /// Acknowledgements a write waits for: "majority" or a number.
    #[serde(default)]
    pub write_quorum: Option<toml::Value>,
    /// The nodes.
    pub nodes: Vec<SiteNode>,
    /// The site's id (1-65535), carried in every version id it makes. By default it is
    /// derived from the site's CA; set it (the same in every node's config) when a site to
    /// link with has the same id. Versions made before keep the id they were made with.
    #[serde(default)]
    pub id: Option<u16>,
}

fn default_rf() -> u8 {
    cairn_core::cluster::DEFAULT_REPLICATION_FACTOR
}

/// One `[[site.nodes]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteNode {
    /// Its name (as in its certificate).
    pub name: String,
    /// Its node transport address, `host:port`.
    pub address: String,
    /// Its failure domain.
    #[serde(default = "default_zone")]
    pub zone: String,
    /// Capacity weight (0: drained).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Its roles.
    #[serde(default = "all_roles")]
    pub roles: Vec<String>,
}

fn default_zone() -> String {
    "default".into()
}

fn default_weight() -> u32 {
    1
}

/// `[workers]`: seconds between passes, the GC hold and the maintenance rate limit.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersSection {
    /// Lifecycle rules.
    pub lifecycle_interval: u64,
    /// Garbage collection.
    pub gc_interval: u64,
    /// Seconds an unreachable chunk is kept after it was last written or deduplicated against.
    pub gc_hold: u64,
    /// Repair and rebalance of chunk replicas.
    pub repair_interval: u64,
    /// Re-hashing stored chunks.
    pub scrub_interval: u64,
    /// Manifest anti-entropy between replicas.
    pub anti_entropy_interval: u64,
    /// Versions the garbage collector reads, and chunks it deletes, per second (0: no limit).
    pub gc_items_per_sec: u64,
    /// Versions the lifecycle worker looks at per second (0: no limit).
    pub lifecycle_versions_per_sec: u64,
    /// Records anti-entropy reads from peers per second (0: no limit).
    pub anti_entropy_records_per_sec: u64,
    /// Bytes per second each maintenance worker may read or send (0: unlimited).
    pub rate_bytes_per_sec: u64,
    /// Seconds after a map change before an anti-entropy pass counts as caught up under the
    /// new map (nodes that take the map later write to the old placement until they do); once
    /// every manifest node has caught up, reads stop asking the old placement.
    pub map_settle: u64,
    /// Start repair, rebalance and anti-entropy at once when the map changes or a node answers
    /// again after it was unreachable, rather than waiting for their next timed pass.
    pub react_to_changes: bool,
    /// Trimming the metadata change log and tombstones.
    pub history_trim_interval: u64,
    /// Seconds the metadata history is kept for a reader that has gone silent (a node down or
    /// cut off): past it, the change log is trimmed without waiting for it, and tombstones of
    /// removed versions older than it go. A node away for longer catches up from listings,
    /// and versions removed while it was away may come back from it: mark such a node lost.
    pub history_retention: u64,
}

impl Default for WorkersSection {
    fn default() -> Self {
        WorkersSection {
            lifecycle_interval: 3600,
            gc_interval: 3600,
            gc_hold: 3600,
            repair_interval: 600,
            scrub_interval: 86_400,
            anti_entropy_interval: 300,
            gc_items_per_sec: 20_000,
            lifecycle_versions_per_sec: 20_000,
            anti_entropy_records_per_sec: 5_000,
            rate_bytes_per_sec: 64 << 20,
            map_settle: 15,
            react_to_changes: true,
            history_trim_interval: 600,
            history_retention: 7 * 86_400,
        }
    }
}

/// `[nfs]`: buckets a gateway node exports over NFS. Exports added with `cairn nfs export
/// --data-dir DATA_DIR` on this node are served too (those of the config win for a bucket in
/// both).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NfsSection {
    /// Serve NFS on `[listen] nfs`.
    pub enabled: bool,
    /// `[[nfs.exports]]`: `bucket`, `read_only`, `clients` (addresses or networks; empty:
    /// any), `root_squash`.
    pub exports: Vec<cairn_nfs::ExportConfig>,
    /// MiB of file data recently read kept in memory (default: an eighth of the machine's
    /// memory, between 64 MiB and 4 GiB).
    pub cache_mib: Option<u64>,
}

impl Default for NfsSection {
    fn default() -> Self {
        NfsSection {
            enabled: true,
            exports: Vec::new(),
            cache_mib: None,
        }
    }
}

impl NfsSection {
    /// Checks every export.
    pub fn validate(&self) -> anyhow::Result<()> {
        for e in &self.exports {
            e.validate()
                .map_err(|m| anyhow::anyhow!("[[nfs.exports]] {}: {m}", e.bucket))?;
        }
        Ok(())
    }
}

/// `[volumes]`: block volumes as a gateway node serves them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VolumesSection {
    /// Serve volumes over NBD on `[listen] nbd` (nodes with the s3 role only).
    pub nbd: bool,
    /// Serve volumes over iSCSI on `[listen] iscsi` (nodes with the s3 role only).
    pub iscsi: bool,
    /// iSCSI target names are `PREFIX:VOLUME` (default `iqn.2026-12.dev.cairn:SITE`).
    pub iscsi_target_prefix: Option<String>,
    /// Seconds between commits of a volume's buffered writes when clients do not flush.
    pub commit_interval: f64,
    /// Seconds between checks of every volume's health and space use (for /metrics).
    pub health_interval: u64,
    /// MiB of recently read and written volume data kept in memory, for all volumes (0: none;
    /// default: an eighth of the machine's memory, between 64 MiB and 4 GiB).
    pub cache_mib: Option<u64>,
    /// MiB of acknowledged writes all volumes hold in memory before they are committed
    /// (writers wait past it; default: an eighth of the machine's memory, 64 MiB to 4 GiB).
    pub dirty_mib: Option<u64>,
}

impl Default for VolumesSection {
    fn default() -> Self {
        VolumesSection {
            nbd: true,
            iscsi: true,
            iscsi_target_prefix: None,
            commit_interval: 1.0,
            health_interval: 30,
            cache_mib: None,
            dirty_mib: None,
        }
    }
}

impl VolumesSection {
    /// Checks the values.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.commit_interval.is_finite() && self.commit_interval > 0.0) {
            bail!("[volumes] commit_interval must be a positive number of seconds");
        }
        if self.health_interval == 0 {
            bail!("[volumes] health_interval must be at least 1 second");
        }
        if self.dirty_mib == Some(0) {
            bail!("[volumes] dirty_mib must be at least 1: writes wait for room in it");
        }
        if let Some(p) = &self.iscsi_target_prefix {
            cairn_block::iscsi::check_target_prefix(p)
                .map_err(|e| anyhow::anyhow!("[volumes] iscsi_target_prefix: {e}"))?;
        }
        Ok(())
    }
}

/// `[s3]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Section {
    /// Accept only requests signed for this region.
    pub region: Option<String>,
    /// Domains for virtual-hosted-style requests.
    pub domains: Vec<String>,
    /// Take requests signed with Signature Version 2 (older clients and appliances); `false`
    /// answers them as S3 regions that take only SigV4 do.
    pub signature_v2: bool,
    /// PEM certificate chain (the server's certificate first) for HTTPS on `[listen] s3`,
    /// with `tls_key`: clients then use https://, and bucket policies see
    /// aws:SecureTransport "true". Neither: plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// The unencrypted PEM private key of `tls_cert` (PKCS#8, RSA or EC).
    pub tls_key: Option<PathBuf>,
}

impl S3Section {
    /// Checks that `tls_cert` and `tls_key` are given together.
    pub fn validate(&self) -> anyhow::Result<()> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => bail!("[s3] tls_cert needs tls_key: give both, or neither"),
            (None, Some(_)) => bail!("[s3] tls_key needs tls_cert: give both, or neither"),
            _ => Ok(()),
        }
    }

    /// The HTTPS certificate and key, loaded and checked to match; `None` for plain HTTP.
    pub fn tls(&self) -> anyhow::Result<Option<cairn_s3::S3Tls>> {
        self.validate()?;
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => cairn_s3::S3Tls::from_pem_files(cert, key)
                .map(Some)
                .context("[s3] tls_cert and tls_key"),
            _ => Ok(None),
        }
    }
}

impl Default for S3Section {
    fn default() -> Self {
        S3Section {
            region: None,
            domains: vec!["localhost".into()],
            signature_v2: true,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// A node's id: 48 bits of BLAKE3 over the site and node names, so every node derives the same
/// id for a name without a registry.
pub fn node_id(site: &str, name: &str) -> NodeId {
    let h = blake3::hash(format!("cairn-node:{site}/{name}").as_bytes());
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(&h.as_bytes()[..6]);
    u64::from_be_bytes(b).max(1)
}

/// A multi-node site's id: 16 bits of BLAKE3 over its CA certificate, which every node of the
/// site holds (so they agree without a registry) and which `cairn init` makes anew for each
/// site (so two sites rarely share an id; linking two that do is refused). Never 0, the id of
/// versions written before sites had ids.
pub fn site_id(ca_pem: &str) -> SiteId {
    // The certificate's base64 body: line breaks and the armour do not change the id.
    let body: String = ca_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.trim().chars())
        .collect();
    let h = blake3::hash(format!("cairn-site:{body}").as_bytes());
    u16::from_be_bytes([h.as_bytes()[0], h.as_bytes()[1]]).max(1)
}

/// Parses roles as the map writes them ("chunk", "manifest", "s3", "all").
pub fn parse_roles(list: &[String]) -> anyhow::Result<Roles> {
    list.join(",")
        .parse::<Roles>()
        .map_err(|e| anyhow::anyhow!(e))
}

/// Parses a write quorum: "majority" or a number.
pub fn parse_quorum(raw: &str) -> anyhow::Result<WriteQuorum> {
    if raw.eq_ignore_ascii_case("majority") {
        return Ok(WriteQuorum::Majority);
    }
    raw.parse::<u8>()
        .map(WriteQuorum::Fixed)
        .map_err(|_| anyhow::anyhow!("write quorum `{raw}`: use \"majority\" or a number"))
}

impl NodeConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<NodeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let config: NodeConfig = toml::from_str(&text)
            .with_context(|| format!("config file {} is not valid", path.display()))?;
        config.roles()?;
        config.volumes.validate()?;
        config.nfs.validate()?;
        config.s3.validate()?;
        if config.site.id == Some(0) {
            bail!("[site] id must be between 1 and 65535 (0 is the id of versions made before sites had ids)");
        }
        cairn_isgw::check_fixed(&config.links).map_err(|e| anyhow::anyhow!(e))?;
        Ok(config)
    }

    /// This node's roles.
    pub fn roles(&self) -> anyhow::Result<Roles> {
        parse_roles(&self.node.roles)
            .with_context(|| format!("[node] roles of `{}`", self.node.name))
    }

    /// The site's first map, epoch 1, from `[site]`.
    pub fn first_map(&self, site: &str) -> anyhow::Result<ClusterMap> {
        let mut upsert = Vec::new();
        for n in &self.site.nodes {
            let mut info = NodeInfo::new(node_id(site, &n.name), &n.name, &n.address, &n.zone);
            info.weight = n.weight;
            info.roles = parse_roles(&n.roles)
                .with_context(|| format!("[[site.nodes]] roles of `{}`", n.name))?;
            upsert.push(info);
        }
        let write_quorum = match &self.site.write_quorum {
            None => None,
            Some(toml::Value::String(s)) => Some(parse_quorum(s)?),
            Some(toml::Value::Integer(n)) => Some(WriteQuorum::Fixed(
                u8::try_from(*n).context("[site] write_quorum is too large")?,
            )),
            Some(other) => bail!(
                "[site] write_quorum `{:?}`: use \"majority\" or a number",
                other
            ),
        };
        ClusterMap::new(site)
            .apply(&StagedChanges {
                upsert,
                remove: Vec::new(),
                set_rf: Some(self.site.replication_factor),
                set_write_quorum: write_quorum,
            })
            .context("the [site] section does not make a valid cluster map")
    }

    /// Whether this node runs `role`.
    pub fn runs(&self, role: Role) -> bool {
        self.roles().is_ok_and(|r| r.has(role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[node]
name = "n1"
data_dir = "/tmp/x"
certs_dir = "/tmp/c"
roles = ["chunk", "manifest", "s3"]

[listen]
rpc = "127.0.0.1:7101"

[site]
replication_factor = 3
write_quorum = "majority"
[[site.nodes]]
name = "n1"
address = "127.0.0.1:7101"
zone = "a"
[[site.nodes]]
name = "n2"
address = "127.0.0.1:7102"
zone = "b"
[[site.nodes]]
name = "n3"
address = "127.0.0.1:7103"
zone = "c"
weight = 2
roles = ["chunk"]
"#;

    #[test]
    fn example_makes_a_valid_map() {
        let c: NodeConfig = toml::from_str(EXAMPLE).unwrap();
        let map = c.first_map("site").unwrap();
        assert_eq!(map.epoch, 1);
        assert_eq!(map.nodes.len(), 3);
        let n3 = map.node_by_name("n3").unwrap();
        assert_eq!((n3.weight, n3.roles.has(Role::Manifest)), (2, false));
        assert_eq!(n3.id, node_id("site", "n3"));
        assert_ne!(node_id("site", "n1"), node_id("other", "n1"));
        let ca = "-----BEGIN CERTIFICATE-----\nMIIBabc\ndef==\n-----END CERTIFICATE-----\n";
        let rewrapped = "-----BEGIN CERTIFICATE-----\r\nMIIBabcdef==\r\n-----END CERTIFICATE-----";
        assert_eq!(site_id(ca), site_id(rewrapped));
        assert_ne!(site_id(ca), site_id(&ca.replace("abc", "abd")));
        assert_ne!(site_id(ca), 0);
        assert!(c.runs(Role::S3));
    }

    #[test]
    fn the_deploy_examples_are_valid() {
        for text in [
            include_str!("../../../deploy/three-node/n1.toml"),
            include_str!("../../../deploy/three-node/n2.toml"),
            include_str!("../../../deploy/three-node/n3.toml"),
        ] {
            let c: NodeConfig = toml::from_str(text).unwrap();
            let map = c.first_map("paris").unwrap();
            assert_eq!((map.nodes.len(), map.replication_factor), (3, 3));
            assert_eq!(map.zones().len(), 3);
            let me = map.node_by_name(&c.node.name).unwrap();
            assert_eq!(me.address, c.listen.rpc.to_string());
            assert_eq!(c.disk, crate::disk::DiskConfig::default());
            assert_eq!(c.volumes, VolumesSection::default());
            assert_eq!(c.listen.nbd.port(), 10809);
            assert_eq!(c.listen.nfs.port(), 2049);
            assert_eq!(c.nfs, NfsSection::default());
        }
    }

    #[test]
    fn nfs_exports_in_the_config_are_read_and_checked() {
        let text = format!(
            "{EXAMPLE}\n[nfs]\n[[nfs.exports]]\nbucket = \"shared\"\nclients = [\"10.0.0.0/24\"]\n\
             root_squash = true\n[[nfs.exports]]\nbucket = \"ro\"\nread_only = true\n"
        );
        let c: NodeConfig = toml::from_str(&text).unwrap();
        c.nfs.validate().unwrap();
        assert!(c.nfs.enabled);
        assert_eq!(c.nfs.exports.len(), 2);
        assert!(c.nfs.exports[0].root_squash && !c.nfs.exports[0].read_only);
        assert!(c.nfs.exports[1].read_only && c.nfs.exports[1].clients.is_empty());
        let bad: NodeConfig = toml::from_str(&text.replace("10.0.0.0/24", "10.0.0.0/99")).unwrap();
        let e = bad.nfs.validate().unwrap_err();
        assert!(format!("{e:#}").contains("shared"), "{e:#}");
    }

    #[test]
    fn links_in_the_config_are_read_with_defaults_and_checked() {
        let text = format!(
            "{EXAMPLE}\n[[links]]\nname = \"paris\"\nremote = \"paris.example:3905\"\n\
             [[links]]\nname = \"edge\"\nremote = \"10.0.0.9:3905\"\nbuckets = [\"logs\"]\n\
             direction = \"receive\"\nmode = \"continuous\"\nrate_bytes_per_sec = 1000\n"
        );
        let c: NodeConfig = toml::from_str(&text).unwrap();
        cairn_isgw::check_fixed(&c.links).unwrap();
        let (paris, edge) = (&c.links[0], &c.links[1]);
        assert_eq!(paris.direction, cairn_isgw::Direction::Both);
        assert_eq!(paris.mode, cairn_isgw::Mode::Both);
        assert_eq!(paris.data, cairn_isgw::DataMode::Full);
        assert!(paris.buckets.is_none() && !paris.paused);
        assert_eq!(edge.buckets.as_deref(), Some(&["logs".to_string()][..]));
        assert_eq!(edge.direction, cairn_isgw::Direction::Receive);
        assert_eq!(edge.rate_bytes_per_sec, 1000);
        let twice: NodeConfig = toml::from_str(&text.replace("\"edge\"", "\"paris\"")).unwrap();
        let e = cairn_isgw::check_fixed(&twice.links).unwrap_err();
        assert!(e.contains("two links are named paris"), "{e}");
        let no_port: NodeConfig =
            toml::from_str(&text.replace("paris.example:3905", "paris.example")).unwrap();
        assert!(cairn_isgw::check_fixed(&no_port.links).is_err());
        let mirror: NodeConfig =
            toml::from_str(&text.replace("paris.example:3905", "https://s3.example")).unwrap();
        let e = cairn_isgw::check_fixed(&mirror.links).unwrap_err();
        assert!(e.contains("cairn link add"), "{e}");
        let metadata_only: NodeConfig = toml::from_str(&text.replace(
            "direction = \"receive\"",
            "direction = \"receive\"\ndata = \"metadata-only\"",
        ))
        .unwrap();
        cairn_isgw::check_fixed(&metadata_only.links).unwrap();
        assert!(metadata_only
            .links
            .iter()
            .any(|l| l.data == cairn_isgw::DataMode::MetadataOnly));
    }

    #[test]
    fn unknown_fields_and_bad_quorum_are_refused() {
        let bad = EXAMPLE.replace("replication_factor = 3", "replication_factr = 3");
        assert!(toml::from_str::<NodeConfig>(&bad).is_err());
        let c: NodeConfig = toml::from_str(&EXAMPLE.replace("\"majority\"", "\"most\"")).unwrap();
        let e = c.first_map("site").unwrap_err();
        assert!(format!("{e:#}").contains("majority"), "{e:#}");
        let c: NodeConfig =
            toml::from_str(&EXAMPLE.replace("replication_factor = 3", "replication_factor = 4"))
                .unwrap();
        assert!(c.first_map("site").is_err());
    }
}
