//! `cairn`: the one binary. `cairn serve` runs a site (an embedded single-node site by default,
//! or one node of a multi-node site with `--config`); the other commands administer a site
//! through its data dir or its admin endpoint, and `cairn bench` measures any S3 endpoint.
//!
//! The library exposes [`run`] (the command line) and [`node`], which starts a node of a
//! multi-node site in-process (what `cairn serve --config` runs, and what tests start).

mod admin;
mod bench;
mod bucket_cmd;
mod cluster_cmd;
pub mod disk;
mod init;
mod kms_cmd;
mod link_cmd;
mod nfs_cmd;
pub mod node;
mod object_cmd;
mod ops;
mod serve;
mod sse_cmd;
mod volume_backup;
mod volume_cmd;
mod volume_health;
mod volume_jobs;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Cairn: a content-addressed, versioned object store with an S3 API.
#[derive(Parser)]
#[command(name = "cairn", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of `serve`'s arguments costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a site. With no flags: a single-node site with data in ./cairn-data and S3 on
    /// http://127.0.0.1:3900.
    Serve(serve::ServeArgs),
    /// Manage S3 access keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage buckets.
    #[command(subcommand)]
    Bucket(BucketCommand),
    /// Show storage totals: logical bytes, bytes after dedup, bytes on disk, and the ratios.
    Stats(Target),
    /// Show the background workers of a running site (lifecycle): state, passes, progress of
    /// the current or last pass and the last error.
    Workers(Target),
    /// Measure PUT and GET throughput of an S3 endpoint (an in-process site by default) and the
    /// in-process bound of the write pipeline (BLAKE3 + zstd + MD5).
    Bench(bench::BenchArgs),
    /// Create a site CA and certificates for the site's nodes (mutual TLS between nodes).
    Init(init::InitArgs),
    /// Show and change the cluster map of a multi-node site: nodes, zones, weights, roles.
    #[command(subcommand)]
    Cluster(cluster_cmd::ClusterCommand),
    /// Manage block volumes: thin volumes served over NBD, their snapshots and clones.
    #[command(subcommand)]
    Volume(volume_cmd::VolumeCommand),
    /// Link this site with other sites: buckets that sync both ways, shipping only what the
    /// other side lacks.
    #[command(subcommand)]
    Link(link_cmd::LinkCommand),
    /// Look at one object's versions: siblings written at two linked sites at once.
    #[command(subcommand)]
    Object(object_cmd::ObjectCommand),
    /// Export buckets over NFS (NFSv3): files are objects, directories key prefixes.
    #[command(subcommand)]
    Nfs(nfs_cmd::NfsCommand),
    /// The site's master keys for server-side encryption (AES256): list them, rotate them.
    #[command(subcommand)]
    Sse(sse_cmd::SseCommand),
    /// The site's key manager for SSE-KMS (aws:kms): create, list, disable and enable keys.
    #[command(subcommand)]
    Kms(kms_cmd::KmsCommand),
}

/// Where an admin command acts: a data dir (directly, or through the site running on it), or a
/// site's admin endpoint.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// Data dir of the site. If a site is running on it, the command goes through that site's
    /// admin endpoint (found in DIR/admin.json).
    #[arg(long, default_value = "cairn-data", env = "CAIRN_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Admin endpoint of a running site, e.g. http://127.0.0.1:3903 (overrides --data-dir).
    #[arg(long, env = "CAIRN_ADMIN_ENDPOINT")]
    pub admin: Option<String>,
    /// Admin token for --admin (the site writes it to DATA_DIR/admin.token).
    #[arg(long, env = "CAIRN_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an access key and print its id and secret (the secret is shown only once).
    Create {
        /// A name to remember the key by.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List access keys (ids and names, not secrets).
    List(Target),
    /// Delete an access key.
    Delete {
        /// Access key id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Show an access key, its bucket grants and its limits.
    Info {
        /// Access key id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Let a key use a bucket it does not own. Sets the key's grant on the bucket to exactly
    /// the permissions given.
    Allow {
        /// Access key id.
        id: String,
        /// The bucket.
        #[arg(long)]
        bucket: String,
        /// List and read objects.
        #[arg(long)]
        read: bool,
        /// Write and delete objects (including multipart uploads).
        #[arg(long)]
        write: bool,
        /// Everything the bucket owner may do, bucket configuration included.
        #[arg(long)]
        owner: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a key's grant on a bucket.
    Deny {
        /// Access key id.
        id: String,
        /// The bucket.
        #[arg(long)]
        bucket: String,
        #[command(flatten)]
        target: Target,
    },
    /// Limit the S3 requests signed with a key: requests per second and body bytes per
    /// second. Sets the key's limits to exactly those given.
    ///
    /// A limit not given is lifted: `--requests-per-sec 100` alone removes a bandwidth limit.
    /// Each limit allows a burst of one second's worth. A request over a limit is refused
    /// with 503 SlowDown, which S3 SDKs and tools retry with backoff. Bytes are counted in
    /// and out together as they stream: after a transfer larger than the allowance, the key's
    /// next requests are refused until the time the transfer should have taken has passed.
    /// Running gateways apply a change within a few seconds, without a restart. Each S3
    /// gateway enforces the limits on the requests it serves: on a site with several, a key
    /// may use the allowance at each one. Anonymous requests are not limited.
    ///
    /// Examples: `cairn key limit CK... --requests-per-sec 100 --bandwidth 10MiB`,
    /// `cairn key limit CK... --clear`.
    Limit {
        /// Access key id.
        id: String,
        /// Requests per second (at least 1).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        requests_per_sec: Option<u64>,
        /// Body bytes per second, uploads and downloads together: bytes, or a size such as
        /// 500KiB, 10MiB or 1GiB.
        #[arg(
            long,
            visible_alias = "bandwidth",
            value_name = "SIZE",
            value_parser = bench::numbers::parse_size
        )]
        bytes_per_sec: Option<u64>,
        /// Lift both limits.
        #[arg(long, conflicts_with_all = ["requests_per_sec", "bytes_per_sec"])]
        clear: bool,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum BucketCommand {
    /// Create a bucket.
    Create {
        /// Bucket name (3-63 characters of a-z, 0-9, '.', '-').
        name: String,
        /// Owner access key id (default: the oldest key).
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List buckets.
    List(Target),
    /// Show what a bucket holds — objects, versions, delete markers, logical bytes, all kept
    /// current with every write — and its quota.
    Info {
        /// Bucket name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Limit what a bucket may hold. Writes (PUT, copies, multipart parts and completions,
    /// NFS writes) that would take it past a limit are refused (S3: 403 QuotaExceeded) and
    /// leave nothing behind; what it holds already stays. Limits count every stored version,
    /// noncurrent ones included. Sets exactly the limits given.
    Quota {
        /// Bucket name.
        name: String,
        /// Most bytes, over every stored version: e.g. 500GiB, 10TiB, 1.5GB.
        #[arg(long, value_parser = parse_size_arg)]
        max_bytes: Option<u64>,
        /// Most stored object versions (delete markers do not count).
        #[arg(long)]
        max_objects: Option<u64>,
        /// Remove the bucket's quota.
        #[arg(long, conflicts_with_all = ["max_bytes", "max_objects"])]
        clear: bool,
        #[command(flatten)]
        target: Target,
    },
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    bench::numbers::parse_size(s)
}

/// The default S3 listen address.
pub const DEFAULT_S3_LISTEN: &str = "127.0.0.1:3900";
/// The default admin listen address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:3903";
/// The default NBD listen address (NBD's registered port).
pub const DEFAULT_NBD_LISTEN: &str = "127.0.0.1:10809";
/// The default iSCSI portal address (iSCSI's registered port).
pub const DEFAULT_ISCSI_LISTEN: &str = "127.0.0.1:3260";
/// The default NFS listen address (NFS's registered port; MOUNT and the port mapper answer
/// there too).
pub const DEFAULT_NFS_LISTEN: &str = "127.0.0.1:2049";
/// Default address (UDP) of the link listener, where other sites connect.
pub const DEFAULT_LINK_LISTEN: &str = "127.0.0.1:3905";

/// Runs the command line of `cairn`.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Key(KeyCommand::Create { name, target }) => {
                ops::key_create(&target, &name).await
            }
            Command::Key(KeyCommand::List(target)) => ops::key_list(&target).await,
            Command::Key(KeyCommand::Delete { id, target }) => ops::key_delete(&target, &id).await,
            Command::Key(KeyCommand::Info { id, target }) => ops::key_info(&target, &id).await,
            Command::Key(KeyCommand::Allow {
                id,
                bucket,
                read,
                write,
                owner,
                target,
            }) => {
                let grant = admin::GrantInfo { read, write, owner };
                ops::key_grant(&target, &id, &bucket, Some(grant)).await
            }
            Command::Key(KeyCommand::Deny { id, bucket, target }) => {
                ops::key_grant(&target, &id, &bucket, None).await
            }
            Command::Key(KeyCommand::Limit {
                id,
                requests_per_sec,
                bytes_per_sec,
                clear,
                target,
            }) => {
                if !clear && requests_per_sec.is_none() && bytes_per_sec.is_none() {
                    anyhow::bail!(
                        "give --requests-per-sec, --bytes-per-sec (or --bandwidth), or --clear \
                         to lift the key's limits; `cairn key info {id}` shows them"
                    );
                }
                let limits = admin::LimitsInfo {
                    requests_per_sec,
                    bytes_per_sec,
                };
                ops::key_limit(&target, &id, limits).await
            }
            Command::Bucket(BucketCommand::Create {
                name,
                owner,
                target,
            }) => ops::bucket_create(&target, &name, owner.as_deref()).await,
            Command::Bucket(BucketCommand::List(target)) => ops::bucket_list(&target).await,
            Command::Bucket(BucketCommand::Info { name, target }) => {
                bucket_cmd::info(&target, &name).await
            }
            Command::Bucket(BucketCommand::Quota {
                name,
                max_bytes,
                max_objects,
                clear,
                target,
            }) => {
                let quota = if clear {
                    None
                } else if max_bytes.is_none() && max_objects.is_none() {
                    anyhow::bail!(
                        "say which limit to set (--max-bytes SIZE, --max-objects N), or --clear \
                         to remove the bucket's quota"
                    )
                } else {
                    Some(bucket_cmd::QuotaInfo {
                        max_bytes,
                        max_objects,
                    })
                };
                bucket_cmd::quota(&target, &name, quota).await
            }
            Command::Stats(target) => ops::stats(&target).await,
            Command::Workers(target) => ops::workers(&target).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Init(args) => init::run(args),
            Command::Cluster(cmd) => cluster_cmd::run(cmd).await,
            Command::Volume(cmd) => volume_cmd::run(cmd).await,
            Command::Link(cmd) => link_cmd::run(cmd).await,
            Command::Nfs(cmd) => nfs_cmd::run(cmd).await,
            Command::Sse(cmd) => sse_cmd::run(cmd),
            Command::Kms(cmd) => kms_cmd::run(cmd).await,
            Command::Object(cmd) => object_cmd::run(cmd).await,
        }
    })
}

/// Parses a listen address, with a message that says what is expected.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not an address: use IP:PORT, e.g. 127.0.0.1:3900"))
}

/// The volume chunk cache's bound: `mib` when given, else a share of this machine's memory
/// (`/proc/meminfo`), else the library's default.
pub fn volume_cache_bytes(mib: Option<u64>) -> u64 {
    memory_share(
        mib,
        cairn_block::volume::chunk_cache_for_memory,
        cairn_block::volume::DEFAULT_CHUNK_CACHE_BYTES,
    )
}

/// The NFS gateway's read cache: `mib` when given, else a share of this machine's memory (as
/// the volumes' chunk cache), else the gateway's default.
pub fn nfs_cache_bytes(mib: Option<u64>) -> u64 {
    memory_share(
        mib,
        cairn_block::volume::chunk_cache_for_memory,
        cairn_nfs::DEFAULT_READ_CACHE_BYTES,
    )
}

/// The volumes' write-back budget: `mib` when given, else a share of this machine's memory,
/// else the library's default.
pub fn volume_dirty_bytes(mib: Option<u64>) -> u64 {
    memory_share(
        mib,
        cairn_block::volume::dirty_for_memory,
        cairn_block::volume::DEFAULT_DIRTY_BYTES,
    )
}

fn memory_share(mib: Option<u64>, share: fn(u64) -> u64, unknown: u64) -> u64 {
    if let Some(mib) = mib {
        return mib.saturating_mul(1 << 20);
    }
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    total_kib.map_or(unknown, |kib| share(kib.saturating_mul(1024)))
}
