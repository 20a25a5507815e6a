//! Test kit for cross-crate scenarios: [`TestSite`] starts a whole single-node site in this
//! process (real RocksDB stores in a temp dir, the S3 gateway on a loopback port) and hands out
//! AWS SDK clients for it. Scenarios can stop it and start it again on the same data.

pub mod gc;
pub mod link;
pub mod multi;
pub mod nbd;
pub mod relay;
pub mod scenario;
pub mod smallfs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use cairn_client::Client;
use tokio::sync::oneshot;

/// Access key every test site accepts.
pub const ACCESS_KEY: &str = "CKTESTACCESSKEY00001";
/// Its secret.
pub const SECRET_KEY: &str = "test-secret-key-0123456789abcdefghijklmn";

/// A running single-node site.
pub struct TestSite {
    /// Data dir (kept across restarts).
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// The store, as the gateway sees it.
    pub client: Client,
    /// S3 endpoint address.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The disk worker, for sites started with [`TestSite::start_with_disk`].
    pub disk: Option<Arc<cairn::disk::DiskMonitor>>,
    disk_config: Option<cairn::disk::DiskConfig>,
    disk_stop: Option<tokio::sync::watch::Sender<bool>>,
    disk_task: Option<tokio::task::JoinHandle<()>>,
}

impl TestSite {
    /// Starts a site on a fresh temp dir.
    pub async fn start() -> TestSite {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut site = TestSite::start_on(&dir).await;
        site._tmp = Some(tmp);
        site
    }

    /// Starts a site on `dir` (existing data is kept).
    pub async fn start_on(dir: &Path) -> TestSite {
        TestSite::start_with(dir, None).await
    }

    /// Starts a site on `dir` whose data dirs are watched by a disk worker with `config`, as
    /// `cairn serve` runs it (its gate refuses new writes when a dir is near full).
    pub async fn start_with_disk(dir: &Path, config: cairn::disk::DiskConfig) -> TestSite {
        TestSite::start_with(dir, Some(config)).await
    }

    async fn start_with(dir: &Path, disk_config: Option<cairn::disk::DiskConfig>) -> TestSite {
        let disk = disk_config
            .clone()
            .map(|c| cairn::disk::DiskMonitor::for_single_node(c, dir).expect("disk monitor"));
        let client =
            Client::open_dir_with_space(dir, disk.as_ref().map(|d| d.gate())).expect("open store");
        let (disk_stop, disk_task) = match &disk {
            Some(d) => {
                let (tx, rx) = tokio::sync::watch::channel(false);
                let task = tokio::spawn(cairn::disk::check_loop(d.clone(), |_| {}, rx));
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        if client.get_key(ACCESS_KEY).await.expect("get key").is_none() {
            client
                .import_key(ACCESS_KEY, SECRET_KEY, "test")
                .await
                .expect("import key");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(cairn_s3::serve(
            listener,
            cairn_s3::S3Config::default(),
            client.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        TestSite {
            dir: dir.to_path_buf(),
            _tmp: None,
            client,
            addr,
            stop: Some(tx),
            server: Some(server),
            disk,
            disk_config,
            disk_stop,
            disk_task,
        }
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An AWS SDK client for the site (path-style, static test credentials).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(format!("http://{}", self.addr))
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Stops the gateway and closes the stores; returns the data dir's owner so it outlives
    /// the site (pass it to [`TestSite::restart`]).
    pub async fn stop(mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.await.expect("server task").expect("server result");
        }
        if let Some(tx) = self.disk_stop.take() {
            let _ = tx.send(true);
        }
        if let Some(h) = self.disk_task.take() {
            h.await.expect("disk task");
        }
        let dir = self.dir.clone();
        let tmp = self._tmp.take();
        drop(self);
        (dir, tmp)
    }

    /// Stops the site and starts a new one on the same data.
    pub async fn restart(self) -> TestSite {
        let disk_config = self.disk_config.clone();
        let (dir, tmp) = self.stop().await;
        // The RocksDB lock is released when the last store handle drops; background tasks
        // (read-ahead producers) may hold a clone for a moment.
        for _ in 0..100 {
            if Client::open_dir(&dir).is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let mut site = TestSite::start_with(&dir, disk_config).await;
        site._tmp = tmp;
        site
    }
}

/// `n` pseudo-random bytes from `seed` (incompressible, reproducible).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = vec![0u8; n];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}
