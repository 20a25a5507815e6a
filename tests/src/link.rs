//! Linked sites in one process: each [`LinkedSite`] is a [`TestSite`] with a link listener on a
//! loopback UDP port and the link runner of `cairn serve`, so scenarios link real sites over
//! QUIC with mutual TLS.

use std::net::SocketAddr;
use std::time::Duration;

use cairn_isgw::{DataMode, Direction, LinkConfig, LinkDir, LinkStatus, Links, Mode};
use tokio::sync::watch;

use crate::TestSite;

/// A single-node site that accepts and runs links.
pub struct LinkedSite {
    /// The site.
    pub site: TestSite,
    /// Its link listener's address.
    pub link_addr: SocketAddr,
    /// Its links.
    pub links: Links,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LinkedSite {
    /// Starts a site on a fresh temp dir, with links.
    pub async fn start() -> LinkedSite {
        LinkedSite::on(TestSite::start().await).await
    }

    /// Adds a link listener (on a free loopback port) and the link runner to `site`.
    pub async fn on(site: TestSite) -> LinkedSite {
        LinkedSite::on_addr(site, "127.0.0.1:0".parse().expect("address")).await
    }

    /// Adds a link listener on `addr` and the link runner to `site` (a restarted site takes
    /// its old address again, retrying while the old endpoint lets go of it).
    pub async fn on_addr(site: TestSite, addr: SocketAddr) -> LinkedSite {
        let (data_dir, id) = (site.dir().to_path_buf(), site.client.site_id());
        let identity: cairn_isgw::IdentitySource =
            std::sync::Arc::new(move || cairn_isgw::identity::single_node_identity(&data_dir, id));
        let mut tries = 0;
        let listener = loop {
            match cairn_isgw::LinkListener::bind(addr, identity.clone(), site.client.clone()) {
                Ok(l) => break l,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 50, "link listener: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let link_addr = listener.local_addr();
        let links = Links::new(site.client.clone(), site.dir().to_path_buf(), identity);
        let (stop, rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(listener.run(rx.clone())),
            tokio::spawn(links.clone().run(rx)),
        ];
        LinkedSite {
            site,
            link_addr,
            links,
            stop,
            tasks,
        }
    }

    /// Trusts `other`'s CA (as `cairn link trust` does).
    pub fn trust(&self, other: &LinkedSite) {
        cairn_isgw::identity::trust_ca(self.site.dir(), &other.site.dir().join("ca.pem"))
            .expect("trust");
    }

    /// Adds a link named `name` to `other` carrying `buckets` (all if `None`), both ways,
    /// initial copy and continuous.
    pub fn link_to(&self, name: &str, other: &LinkedSite, buckets: Option<Vec<String>>) {
        self.add_link(LinkConfig {
            name: name.to_string(),
            remote: other.link_addr.to_string(),
            buckets,
            direction: Direction::Both,
            mode: Mode::Both,
            data: DataMode::Full,
            rate_bytes_per_sec: 0,
            paused: false,
        });
    }

    /// Adds a link as `cairn link add` does.
    pub fn add_link(&self, cfg: LinkConfig) {
        let dir = LinkDir::new(self.site.dir());
        let mut file = dir.load().expect("links file");
        file.links.retain(|l| l.name != cfg.name);
        file.links.push(cfg);
        dir.save(&file).expect("save links");
    }

    /// The status of link `name`, once the runner has started it.
    pub fn status(&self, name: &str) -> Option<LinkStatus> {
        self.links
            .status()
            .into_iter()
            .find(|s| s.config.name == name)
    }

    /// Stops the listener and the links, then the site.
    pub async fn stop(self) -> (std::path::PathBuf, Option<tempfile::TempDir>) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.site.stop().await
    }
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `limit` with `what`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates `bucket` with versioning on.
pub async fn versioned_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket");
    enable_versioning(s3, bucket).await;
}

/// Turns versioning on in `bucket`.
pub async fn enable_versioning(s3: &aws_sdk_s3::Client, bucket: &str) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning");
}
