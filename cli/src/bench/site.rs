//! The in-process single-node site measured when no `--endpoint` is given: a data dir, a random
//! access key and the S3 gateway on a free loopback port, stopped at the end of the run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rand::distributions::{Alphanumeric, DistString};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long the gateway may take to finish in-flight requests on stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running in-process site.
pub struct Site {
    /// S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Access key id the site accepts.
    pub access_key: String,
    /// Its secret.
    pub secret_key: String,
    /// The data dir, removed on drop when the run created it.
    pub dir: DataDir,
    /// Completes the gateway's shutdown future.
    shutdown: oneshot::Sender<()>,
    /// The gateway's accept loop.
    task: JoinHandle<std::io::Result<()>>,
}

/// The site's data dir; a dir this run created is removed when this is dropped, unless kept.
pub struct DataDir {
    /// Where it is.
    pub path: PathBuf,
    /// Remove it on drop.
    remove: bool,
}

impl DataDir {
    /// Keeps the dir after the run.
    pub fn keep(&mut self) {
        self.remove = false;
    }

    /// Whether this run created the dir (and removes it).
    pub fn is_temporary(&self) -> bool {
        self.remove
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.remove {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                eprintln!("warning: cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

/// Starts a site with data in `dir`, or in a new dir under the system temp dir.
pub async fn start(dir: Option<&Path>) -> anyhow::Result<Site> {
    let dir = match dir {
        Some(d) => DataDir {
            path: d.to_path_buf(),
            remove: false,
        },
        None => {
            let name = format!(
                "cairn-bench-{}-{}",
                std::process::id(),
                Alphanumeric.sample_string(&mut rand::thread_rng(), 8)
            );
            let path = std::env::temp_dir().join(name);
            std::fs::create_dir(&path)
                .with_context(|| format!("cannot create a data dir {}", path.display()))?;
            DataDir { path, remove: true }
        }
    };

    let path = dir.path.clone();
    let client = tokio::task::spawn_blocking(move || cairn_client::Client::open_dir(&path))
        .await?
        .with_context(|| format!("cannot open a site in {}", dir.path.display()))?;
    let (access_key, secret_key) = {
        let mut rng = rand::thread_rng();
        let id = format!("BENCH{}", Alphanumeric.sample_string(&mut rng, 15)).to_uppercase();
        (id, Alphanumeric.sample_string(&mut rng, 40))
    };
    client
        .import_key(&access_key, &secret_key, "bench")
        .await
        .context("cannot create the bench access key")?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on 127.0.0.1")?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(cairn_s3::serve(
        listener,
        cairn_s3::S3Config::default(),
        client,
        async move {
            let _ = stopped.await;
        },
    ));
    Ok(Site {
        endpoint,
        access_key,
        secret_key,
        dir,
        shutdown,
        task,
    })
}

impl Site {
    /// Stops the gateway, waits for it, and closes the store. The data dir goes with the
    /// returned [`DataDir`] (dropping it removes a temporary dir).
    pub async fn stop(self) -> anyhow::Result<DataDir> {
        let _ = self.shutdown.send(());
        match tokio::time::timeout(STOP_TIMEOUT, self.task).await {
            Ok(Ok(Ok(()))) => Ok(self.dir),
            Ok(Ok(Err(e))) => Err(anyhow::anyhow!("the bench site's gateway failed: {e}")),
            Ok(Err(e)) => Err(anyhow::anyhow!("the bench site's gateway panicked: {e}")),
            Err(_) => Err(anyhow::anyhow!(
                "the bench site's gateway did not stop within {STOP_TIMEOUT:?}"
            )),
        }
    }
}
