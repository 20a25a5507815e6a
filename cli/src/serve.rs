//! `cairn serve`: an embedded single-node site (every role in one process).

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_block::{NbdConfig, NbdServer, VolumeConfig, Volumes};
use cairn_client::Client;
use clap::Args;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::workers::{gc_loop, lifecycle_loop, Workers};
use crate::{
    admin, parse_listen, DEFAULT_ADMIN_LISTEN, DEFAULT_ISCSI_LISTEN, DEFAULT_LINK_LISTEN,
    DEFAULT_NBD_LISTEN, DEFAULT_NFS_LISTEN, DEFAULT_S3_LISTEN,
};

fn parse_target_prefix(s: &str) -> Result<String, String> {
    cairn_block::iscsi::check_target_prefix(s).map(|()| s.to_string())
}

/// Flags of `cairn serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Run one node of a multi-node site, as its configuration file says (roles, addresses,
    /// certificates, the site's first map; see deploy/ for commented examples). The other
    /// flags then do not apply.
    #[arg(long, value_name = "FILE", env = "CAIRN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the site keeps its data (created if missing).
    #[arg(long, default_value = "cairn-data", env = "CAIRN_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the S3 endpoint.
    #[arg(long, default_value = DEFAULT_S3_LISTEN, value_parser = parse_listen, env = "CAIRN_S3_LISTEN")]
    pub s3_listen: SocketAddr,
    /// Address of the admin endpoint (key and bucket management, stats, /metrics, /health).
    #[arg(long, default_value = DEFAULT_ADMIN_LISTEN, value_parser = parse_listen, env = "CAIRN_ADMIN_LISTEN")]
    pub admin_listen: SocketAddr,
    /// Accept only requests signed for this region (default: any region).
    #[arg(long, env = "CAIRN_S3_REGION")]
    pub region: Option<String>,
    /// Domain for virtual-hosted-style requests (bucket.DOMAIN); repeatable.
    #[arg(
        long = "s3-domain",
        default_value = "localhost",
        env = "CAIRN_S3_DOMAIN"
    )]
    pub domains: Vec<String>,
    /// Refuse requests signed with Signature Version 2 (`Authorization: AWS ...` and presigned
    /// URLs with `AWSAccessKeyId`), as S3 regions that take only SigV4 do.
    #[arg(long = "no-sigv2", env = "CAIRN_S3_NO_SIGV2")]
    pub no_sigv2: bool,
    /// Serve S3 over HTTPS with this PEM certificate chain (the server's certificate first,
    /// then any intermediates); needs --s3-tls-key. Clients then use https://ADDR (trusting
    /// the certificate's CA), plain http:// requests get 400, and bucket policies see
    /// aws:SecureTransport "true".
    #[arg(
        long,
        value_name = "PEM",
        env = "CAIRN_S3_TLS_CERT",
        requires = "s3_tls_key"
    )]
    pub s3_tls_cert: Option<PathBuf>,
    /// The unencrypted PEM private key of --s3-tls-cert (PKCS#8, RSA or EC); needs
    /// --s3-tls-cert.
    #[arg(
        long,
        value_name = "PEM",
        env = "CAIRN_S3_TLS_KEY",
        requires = "s3_tls_cert"
    )]
    pub s3_tls_key: Option<PathBuf>,
    /// Seconds between passes of the lifecycle worker (which applies buckets' lifecycle rules).
    #[arg(long, default_value_t = 3600, env = "CAIRN_LIFECYCLE_INTERVAL")]
    pub lifecycle_interval: u64,
    /// Seconds between passes of the garbage collector (which deletes chunks nothing reaches).
    #[arg(long, default_value_t = 3600, env = "CAIRN_GC_INTERVAL")]
    pub gc_interval: u64,
    /// Seconds an unreachable chunk is kept after it was last written or deduplicated against,
    /// so writes whose manifest is not applied yet keep their chunks (at least 1200).
    #[arg(long, default_value_t = 3600, env = "CAIRN_GC_HOLD")]
    pub gc_hold: u64,
    /// Most versions the lifecycle worker looks at per second (0: no limit).
    #[arg(long, default_value_t = 0, env = "CAIRN_LIFECYCLE_RATE")]
    pub lifecycle_rate: u64,
    /// Most versions the garbage collector reads, and chunks it deletes, per second (0: no
    /// limit), so a pass does not compete with requests for the disk.
    #[arg(long, default_value_t = 0, env = "CAIRN_GC_RATE")]
    pub gc_rate: u64,
    /// Seconds between scrub passes, which re-read and re-hash every stored chunk and list the
    /// objects reaching a corrupt one (`cairn workers` shows them).
    #[arg(long, default_value_t = 86_400, env = "CAIRN_SCRUB_INTERVAL")]
    pub scrub_interval: u64,
    /// Most stored bytes a scrub pass reads per second (0: no limit).
    #[arg(long, default_value_t = 64 << 20, env = "CAIRN_SCRUB_RATE")]
    pub scrub_rate: u64,
    /// Seconds between trims of the metadata change log and of the tombstones of removed
    /// versions.
    #[arg(long, default_value_t = 600, env = "CAIRN_HISTORY_TRIM_INTERVAL")]
    pub history_trim_interval: u64,
    /// Seconds the metadata history is kept for a reader that went silent (a garbage
    /// collection pass that died while it held the change log); tombstones of removed
    /// versions are kept at least this long.
    #[arg(long, default_value_t = 7 * 86_400, env = "CAIRN_HISTORY_RETENTION")]
    pub history_retention: u64,
    /// New writes are refused (S3 507) while a data dir has less than this percentage of its
    /// file system free (0: off); reads, deletes and GC go on.
    #[arg(long, default_value_t = 5.0, env = "CAIRN_DISK_MIN_FREE_PERCENT")]
    pub disk_min_free_percent: f64,
    /// New writes are refused while a data dir has fewer than this many bytes free (0: off).
    #[arg(long, default_value_t = 0, env = "CAIRN_DISK_MIN_FREE_BYTES")]
    pub disk_min_free_bytes: u64,
    /// Free space, in percent of the file system, over the threshold needed before writes are
    /// taken again.
    #[arg(long, default_value_t = 1.0, env = "CAIRN_DISK_HYSTERESIS_PERCENT")]
    pub disk_hysteresis_percent: f64,
    /// Seconds between measurements of the data dirs' free space.
    #[arg(long, default_value_t = 10, env = "CAIRN_DISK_CHECK_INTERVAL")]
    pub disk_check_interval: u64,
    /// Bytes of each of the two reserve files kept per file system: one released when a write
    /// runs out of space so deletes and GC can run, one released by a start on a full disk so
    /// the stores can open (default: sized to the file system, 8-128 MiB and 12-192 MiB).
    #[arg(long, env = "CAIRN_DISK_RESERVE_BYTES")]
    pub disk_reserve_bytes: Option<u64>,
    /// Address of the NBD server that serves block volumes (`cairn volume create`), one
    /// export per volume: `nbd://ADDR/VOLUME`.
    #[arg(long, default_value = DEFAULT_NBD_LISTEN, value_parser = parse_listen, env = "CAIRN_NBD_LISTEN")]
    pub nbd_listen: SocketAddr,
    /// Do not serve volumes over NBD.
    #[arg(long, env = "CAIRN_NO_NBD")]
    pub no_nbd: bool,
    /// Address of the NFS server (NFSv3, with MOUNT and a port mapper on the same TCP port)
    /// that serves the buckets exported with `cairn nfs export`: `HOST:/BUCKET`.
    #[arg(long, default_value = DEFAULT_NFS_LISTEN, value_parser = parse_listen, env = "CAIRN_NFS_LISTEN")]
    pub nfs_listen: SocketAddr,
    /// Do not serve NFS.
    #[arg(long, env = "CAIRN_NO_NFS")]
    pub no_nfs: bool,
    /// MiB of file data recently read over NFS kept in memory (0: none), for all exports
    /// together: reads that hit it skip the chunk store. Default: an eighth of the machine's
    /// memory, between 64 MiB and 4 GiB.
    #[arg(long, env = "CAIRN_NFS_CACHE_MIB")]
    pub nfs_cache_mib: Option<u64>,
    /// Address of the iSCSI portal that serves block volumes: each volume is LUN 0 of target
    /// `PREFIX:VOLUME` (`iscsi://ADDR/PREFIX:VOLUME/0`).
    #[arg(long, default_value = DEFAULT_ISCSI_LISTEN, value_parser = parse_listen, env = "CAIRN_ISCSI_LISTEN")]
    pub iscsi_listen: SocketAddr,
    /// Do not serve volumes over iSCSI.
    #[arg(long, env = "CAIRN_NO_ISCSI")]
    pub no_iscsi: bool,
    /// Prefix of the iSCSI target names, an iSCSI qualified name (default
    /// iqn.2026-12.dev.cairn:local).
    #[arg(long, env = "CAIRN_ISCSI_TARGET_PREFIX", value_parser = parse_target_prefix)]
    pub iscsi_target_prefix: Option<String>,
    /// Seconds between commits of a volume's buffered writes when clients do not flush.
    #[arg(long, default_value_t = 1.0, env = "CAIRN_VOLUME_COMMIT_INTERVAL")]
    pub volume_commit_interval: f64,
    /// MiB of recently read and written volume data kept in memory, for all volumes together
    /// (0: none): reads that hit it skip the chunk store. Default: an eighth of the
    /// machine's memory, between 64 MiB and 4 GiB.
    #[arg(long, env = "CAIRN_VOLUME_CACHE_MIB")]
    pub volume_cache_mib: Option<u64>,
    /// MiB of acknowledged writes all volumes together hold in memory before they are
    /// committed (writers wait past it; a flush commits at once). Default: an eighth of the
    /// machine's memory, between 64 MiB and 4 GiB.
    #[arg(long, env = "CAIRN_VOLUME_DIRTY_MIB", value_parser = clap::value_parser!(u64).range(1..))]
    pub volume_dirty_mib: Option<u64>,
    /// Address (UDP, QUIC) where this site accepts links from other sites (`cairn link`):
    /// only sites whose CA was trusted with `cairn link trust` get past the handshake.
    #[arg(long, default_value = DEFAULT_LINK_LISTEN, value_parser = parse_listen, env = "CAIRN_LINK_LISTEN")]
    pub link_listen: SocketAddr,
    /// Neither accept links nor run the configured ones.
    #[arg(long, env = "CAIRN_NO_LINKS")]
    pub no_links: bool,
    /// Most stored bytes kept of data fetched for metadata-only links (e.g. 10G, 500M): the
    /// least recently used is evicted past it; objects pinned with `cairn object pin` are kept
    /// beyond it.
    #[arg(long, default_value = "10G", value_parser = crate::parse_size_arg, env = "CAIRN_LINK_CACHE_SIZE")]
    pub link_cache_size: u64,
    /// Seconds between checks of every volume's health and used bytes (for /metrics).
    #[arg(long, default_value_t = 30, env = "CAIRN_VOLUME_HEALTH_INTERVAL")]
    pub volume_health_interval: u64,
}

impl ServeArgs {
    /// The `[disk]` settings the flags give.
    pub fn disk_config(&self) -> crate::disk::DiskConfig {
        crate::disk::DiskConfig {
            min_free_percent: self.disk_min_free_percent,
            min_free_bytes: self.disk_min_free_bytes,
            hysteresis_percent: self.disk_hysteresis_percent,
            check_interval: self.disk_check_interval,
            reserve_bytes: self.disk_reserve_bytes,
        }
    }
}

/// Writes `contents` to `path` readable by the owner only (0600), atomically.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Makes sure the site has its first access key: from CAIRN_ACCESS_KEY_ID and
/// CAIRN_SECRET_ACCESS_KEY when set, otherwise generated once and kept in DATA_DIR/credentials.
pub(crate) async fn first_key(client: &Client, data_dir: &Path) -> anyhow::Result<()> {
    let env_id = std::env::var("CAIRN_ACCESS_KEY_ID")
        .ok()
        .filter(|s| !s.is_empty());
    let env_secret = std::env::var("CAIRN_SECRET_ACCESS_KEY")
        .ok()
        .filter(|s| !s.is_empty());
    let cred_file = data_dir.join("credentials");
    match (env_id, env_secret) {
        (Some(id), Some(secret)) => match client.get_key(&id).await? {
            Some(k) if k.secret == secret => {}
            Some(_) => anyhow::bail!(
                "access key {id} already exists with another secret: unset CAIRN_SECRET_ACCESS_KEY, \
                 or delete the key with `cairn key delete {id}` first"
            ),
            None => {
                client.import_key(&id, &secret, "from-environment").await?;
                info!(access_key = %id, "imported the access key from the environment");
            }
        },
        (Some(_), None) | (None, Some(_)) => anyhow::bail!(
            "set both CAIRN_ACCESS_KEY_ID and CAIRN_SECRET_ACCESS_KEY, or neither"
        ),
        (None, None) => {
            if client.list_keys().await?.is_empty() {
                let k = client.create_key("default").await?;
                write_private(
                    &cred_file,
                    &format!(
                        "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                        k.id, k.secret
                    ),
                )?;
                println!("Created the first access key (shown once; also saved in {}):", cred_file.display());
                println!("  AWS_ACCESS_KEY_ID={}", k.id);
                println!("  AWS_SECRET_ACCESS_KEY={}", k.secret);
            } else if cred_file.exists() {
                info!("access keys exist; the first one is in {}", cred_file.display());
            }
        }
    }
    Ok(())
}

/// SIGINT and SIGTERM, listened for from creation on: made before the process says it serves,
/// so a signal sent as soon as the endpoints are printed stops it cleanly instead of killing it
/// with the default action.
pub(crate) struct ShutdownSignal {
    term: Option<Signal>,
    int: Option<Signal>,
}

impl ShutdownSignal {
    pub(crate) fn listen() -> Self {
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("cannot listen for {name}: {e}");
                None
            }
        };
        Self {
            term: listen(SignalKind::terminate(), "SIGTERM"),
            int: listen(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Resolves on the first SIGINT or SIGTERM (never, if neither could be listened for).
    pub(crate) async fn wait(mut self) {
        async fn next(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.term) => {}
            _ = next(&mut self.int) => {}
        }
    }
}

/// Runs the site until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,s3s=warn".into()),
        )
        .init();
    let shutdown = ShutdownSignal::listen();
    if let Some(path) = &args.config {
        return crate::node::run_config(path, shutdown).await;
    }
    // Checked before anything starts: a bad certificate stops the site at once.
    let s3_tls = match (&args.s3_tls_cert, &args.s3_tls_key) {
        (Some(cert), Some(key)) => Some(
            cairn_s3::S3Tls::from_pem_files(cert, key).context("--s3-tls-cert and --s3-tls-key")?,
        ),
        _ => None,
    };
    let s3_scheme = if s3_tls.is_some() { "https" } else { "http" };
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let disk_config = args.disk_config();
    disk_config.validate()?;
    let disk = crate::disk::DiskMonitor::for_single_node(disk_config, dir)?;
    let client = Client::open_dir_with_space(dir, Some(disk.gate())).map_err(|e| {
        if e.to_string().to_lowercase().contains("lock") {
            anyhow::anyhow!(
                "data dir {} is in use by another cairn process: stop it or pass another --data-dir",
                dir.display()
            )
        } else {
            anyhow::anyhow!(e)
        }
    })?;
    first_key(&client, dir).await?;

    let s3 = tokio::net::TcpListener::bind(args.s3_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for S3: pass another --s3-listen",
                args.s3_listen
            )
        })?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for admin: pass another --admin-listen",
                args.admin_listen
            )
        })?;
    let volumes = Arc::new(Volumes::new(
        client.clone(),
        VolumeConfig {
            commit_interval: Duration::from_secs_f64(args.volume_commit_interval.max(0.001)),
            chunk_cache_bytes: crate::volume_cache_bytes(args.volume_cache_mib),
            max_dirty_bytes: crate::volume_dirty_bytes(args.volume_dirty_mib),
        },
    ));
    let nbd = if args.no_nbd {
        None
    } else {
        let exports: Arc<dyn cairn_block::Exports> = volumes.clone();
        let server = NbdServer::bind(args.nbd_listen, exports, NbdConfig::default())
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} for NBD: pass another --nbd-listen, or --no-nbd",
                    args.nbd_listen
                )
            })?;
        Some(server)
    };
    let iscsi_prefix = args
        .iscsi_target_prefix
        .clone()
        .unwrap_or_else(|| cairn_block::iscsi::default_target_prefix(""));
    let nfs = if args.no_nfs {
        None
    } else {
        let exports_file = cairn_nfs::ExportsFile::in_data_dir(dir);
        let exports = exports_file.load().map_err(anyhow::Error::msg)?;
        let fs = Arc::new(cairn_nfs::Fs::with_read_cache(
            client.clone(),
            exports,
            crate::volume_dirty_bytes(None),
            crate::nfs_cache_bytes(args.nfs_cache_mib),
        ));
        let config = cairn_nfs::NfsConfig {
            exports_file: Some(exports_file.path().to_path_buf()),
            ..Default::default()
        };
        let server = cairn_nfs::NfsServer::bind(args.nfs_listen, fs, config)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} for NFS: pass another --nfs-listen, or --no-nfs",
                    args.nfs_listen
                )
            })?;
        Some(server)
    };
    let iscsi = if args.no_iscsi {
        None
    } else {
        let exports: Arc<dyn cairn_block::Exports> = volumes.clone();
        let server = cairn_block::iscsi::IscsiServer::bind(
            args.iscsi_listen,
            exports,
            volumes.clone(),
            cairn_block::iscsi::IscsiConfig {
                target_prefix: iscsi_prefix.clone(),
                ..Default::default()
            },
        )
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for iSCSI: pass another --iscsi-listen, or --no-iscsi",
                args.iscsi_listen
            )
        })?;
        Some(server)
    };
    let links = if args.no_links {
        None
    } else {
        let (data_dir, site) = (dir.to_path_buf(), client.site_id());
        let identity: cairn_isgw::IdentitySource =
            Arc::new(move || cairn_isgw::identity::single_node_identity(&data_dir, site));
        // Makes the site CA and link certificate now, so `cairn link ca` can show them.
        identity().map_err(|e| anyhow::anyhow!("links: {e}"))?;
        let listener =
            cairn_isgw::LinkListener::bind(args.link_listen, identity.clone(), client.clone())
                .map_err(|e| anyhow::anyhow!("{e}: pass another --link-listen, or --no-links"))?;
        let runner = cairn_isgw::Links::new(client.clone(), dir.to_path_buf(), identity);
        runner.set_cache_size(args.link_cache_size);
        Some((listener, runner))
    };
    let s3_addr = s3.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let token = admin::load_or_create_token(dir)?;
    admin::write_endpoint_file(dir, admin_addr)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let config = cairn_s3::S3Config {
        region: args.region.clone(),
        domains: args.domains.clone(),
        signature_v2: !args.no_sigv2,
        tls: s3_tls,
        ..Default::default()
    };
    let s3_metrics = config.metrics.clone();
    let s3_task = tokio::spawn(cairn_s3::serve(
        s3,
        config,
        client.clone(),
        stopped(stop_rx.clone()),
    ));
    let workers = Arc::new(Workers::default());
    let lifecycle_task = tokio::spawn(lifecycle_loop(
        client.clone(),
        workers.clone(),
        Duration::from_secs(args.lifecycle_interval.max(1)),
        args.lifecycle_rate,
        None,
        stop_rx.clone(),
    ));
    let gc_task = tokio::spawn(gc_loop(
        client.clone(),
        workers.clone(),
        Duration::from_secs(args.gc_interval.max(1)),
        Duration::from_secs(args.gc_hold),
        args.gc_rate,
        None,
        stop_rx.clone(),
    ));
    let scrub_task = tokio::spawn(scrub_loop(
        client.clone(),
        workers.clone(),
        Duration::from_secs(args.scrub_interval.max(1)),
        args.scrub_rate,
        stop_rx.clone(),
    ));
    let trim_task = tokio::spawn(crate::workers::history_trim_loop(
        client.clone(),
        workers.clone(),
        Duration::from_secs(args.history_trim_interval.max(1)),
        Duration::from_secs(args.history_retention),
        stop_rx.clone(),
    ));
    let disk_task = tokio::spawn(crate::disk::disk_worker(
        disk.clone(),
        workers.clone(),
        stop_rx.clone(),
    ));
    let keys_task = tokio::spawn(crate::sse_cmd::reload_loop(
        client.clone(),
        dir.clone(),
        stop_rx.clone(),
    ));
    let volume_monitor = Arc::new(cairn_block::volume::VolumeMonitor::new(volumes.clone()));
    let monitor_task = tokio::spawn(crate::node::tasks::volume_monitor_loop(
        volume_monitor.clone(),
        workers.clone(),
        Duration::from_secs(args.volume_health_interval.max(1)),
        stop_rx.clone(),
    ));
    let nbd_addr = nbd.as_ref().map(|n| n.local_addr()).transpose()?;
    let nbd_task = nbd.map(|n| tokio::spawn(n.serve(stopped(stop_rx.clone()))));
    let iscsi_addr = iscsi.as_ref().map(|n| n.local_addr()).transpose()?;
    let mut metric_sources: Vec<Arc<dyn cairn_core::metrics::MetricsSource>> =
        vec![s3_metrics, disk.clone(), volumes.clone(), volume_monitor];
    if let Some(i) = &iscsi {
        metric_sources.push(i.stats());
    }
    let iscsi_task = iscsi.map(|n| tokio::spawn(n.serve(stopped(stop_rx.clone()))));
    let nfs_addr = nfs.as_ref().map(|n| n.local_addr()).transpose()?;
    if let Some(n) = &nfs {
        metric_sources.push(n.metrics_source());
    }
    let nfs_task = nfs.map(|n| tokio::spawn(n.run(stopped(stop_rx.clone()))));
    let link_addr = links.as_ref().map(|(l, _)| l.local_addr());
    let link_runner = links.as_ref().map(|(_, r)| r.clone());
    if let Some(r) = &link_runner {
        metric_sources.push(Arc::new(r.clone()));
    }
    let link_tasks = links.map(|(listener, runner)| {
        (
            tokio::spawn(listener.run(stop_rx.clone())),
            tokio::spawn(runner.run(stop_rx.clone())),
        )
    });
    let admin_parts = admin::AdminParts {
        sources: metric_sources,
        cluster: None,
        disk: Some(disk),
        volumes: Some(volumes.clone()),
        links: link_runner,
    };
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        client.clone(),
        token,
        workers.clone(),
        admin_parts,
        stopped(stop_rx.clone()),
    ));
    info!(data_dir = %dir.display(), "cairn is running");
    println!("S3 endpoint:    {s3_scheme}://{s3_addr}");
    if let Some(addr) = nbd_addr {
        println!("NBD endpoint:   nbd://{addr}/VOLUME");
    }
    if let Some(addr) = iscsi_addr {
        println!("iSCSI endpoint: iscsi://{addr}/{iscsi_prefix}:VOLUME/0");
    }
    if let Some(addr) = nfs_addr {
        println!("NFS endpoint:   nfs://{addr}/BUCKET (export one with `cairn nfs export BUCKET`)");
    }
    if let Some(addr) = link_addr {
        println!(
            "Link listener:  quic://{addr} (site CA: {})",
            dir.join("ca.pem").display()
        );
    }
    println!("Admin endpoint: http://{admin_addr}");
    println!("Data dir:       {}", dir.display());
    println!("Site id:        {:04x}", client.site_id());

    shutdown.wait().await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    let (s3_res, admin_res, _, _, _, _, _, _, _) = tokio::join!(
        s3_task,
        admin_task,
        lifecycle_task,
        gc_task,
        scrub_task,
        trim_task,
        disk_task,
        monitor_task,
        keys_task
    );
    if let Some(task) = nbd_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "NBD server stopped with an error"),
            Err(e) => warn!(error = %e, "NBD server task failed"),
        }
    }
    if let Some(task) = iscsi_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "iSCSI target stopped with an error"),
            Err(e) => warn!(error = %e, "iSCSI target task failed"),
        }
    }
    if let Some(task) = nfs_task {
        // It commits every buffered write before it ends.
        if let Err(e) = task.await {
            warn!(error = %e, "NFS server task failed");
        }
    }
    if let Some((listener, runner)) = link_tasks {
        let _ = tokio::join!(listener, runner);
    }
    // Every front end has stopped: commit what the open volumes still buffer.
    volumes.close().await;
    let _ = std::fs::remove_file(dir.join("admin.json"));
    s3_res.context("S3 server task failed")??;
    admin_res.context("admin server task failed")??;
    info!("stopped cleanly");
    Ok(())
}

/// The scrub worker of a single-node site: a pass every `interval` (the first half a minute
/// after start-up), at most `bytes_per_sec`; corrupt chunks and the objects reaching them are
/// the worker's findings.
async fn scrub_loop(
    client: Client,
    workers: Arc<Workers>,
    interval: Duration,
    bytes_per_sec: u64,
    stop: watch::Receiver<bool>,
) {
    let limiter = Arc::new(cairn_chunkserver::RateLimiter::new(bytes_per_sec));
    crate::node::tasks::maintenance_loop(
        "scrub",
        workers,
        Duration::from_secs(30),
        interval,
        Arc::new(crate::node::tasks::Kick::default()),
        stop,
        move || {
            let (client, limiter) = (client.clone(), limiter.clone());
            async move {
                let r = client
                    .run_scrub_limited(&|_| {}, &limiter)
                    .await
                    .map_err(|e| e.to_string())?;
                let counters = [
                    ("chunks_scanned", r.chunks_scanned),
                    ("bytes_scanned", r.bytes_scanned),
                    ("corrupt_found", r.corrupt_found),
                    ("affected_objects", r.affected_count),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
                let last_error = (r.corrupt_found > 0).then(|| {
                    format!(
                        "{} corrupt chunks, reached by {} object versions or parts: restore \
                         them from a backup (listed in the worker's findings)",
                        r.corrupt_found, r.affected_count
                    )
                });
                let findings = r
                    .corrupt
                    .iter()
                    .map(|id| format!("corrupt chunk {id}"))
                    .chain(r.affected.iter().map(|o| format!("affected {o}")))
                    .collect();
                Ok(crate::node::tasks::PassOutcome {
                    counters,
                    last_error,
                    findings,
                })
            }
        },
    )
    .await;
}
