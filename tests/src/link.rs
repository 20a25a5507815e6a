//! Linked sites in one process: each [`LinkedSite`] is a [`TestSite`] with a link listener on a
//! loopback UDP port and the link runner of `cairn serve`, so scenarios link real sites over
//! QUIC with mutual TLS.

use std::net::SocketAddr;
use std::time::Duration;

use cairn_isgw::{DataMode, Direction, LinkConfig, LinkDir, LinkStatus, Links, Mode};
use tokio::sync::watch;

use crate::multi::MultiSite;
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

    /// Adds a link named `name` to node `k` of the multi-node site `multi` (every bucket, both
    /// ways, initial copy and continuous), after making each site trust the other's CA: the
    /// multi-node site's CA in this site's trust, and this site's on node `k`'s data dir.
    pub fn link_to_node(&self, name: &str, multi: &MultiSite, k: usize) {
        let multi_ca = self.site.dir().join(format!("{name}-ca.pem"));
        std::fs::write(&multi_ca, multi.ca.cert_pem()).expect("write CA");
        cairn_isgw::identity::trust_ca(self.site.dir(), &multi_ca).expect("trust multi");
        cairn_isgw::identity::trust_ca(&multi.data_dir(k), &self.site.dir().join("ca.pem"))
            .expect("trust single");
        let remote = multi.node(k).link_addr.expect("the node accepts links");
        self.add_link(LinkConfig {
            name: name.to_string(),
            remote: remote.to_string(),
            buckets: None,
            direction: Direction::Both,
            mode: Mode::Both,
            data: DataMode::Full,
            rate_bytes_per_sec: 0,
            paused: false,
        });
    }

    /// Pauses or resumes link `name`, as `cairn link pause|resume` does.
    pub fn set_paused(&self, name: &str, paused: bool) {
        let dir = LinkDir::new(self.site.dir());
        let mut file = dir.load().expect("links file");
        for l in &mut file.links {
            if l.name == name {
                l.paused = paused;
            }
        }
        dir.save(&file).expect("save links");
    }

    /// Adds a link as `cairn link add` does.
    pub fn add_link(&self, cfg: LinkConfig) {
        let dir = LinkDir::new(self.site.dir());
        let mut file = dir.load().expect("links file");
        file.links.retain(|l| l.name != cfg.name);
        file.links.push(cfg);
        dir.save(&file).expect("save links");
    }

    /// [`wait_for`], and on a timeout the failure names link `name`'s status (phase, remote
    /// site, last error), so a link that never connected says why.
    pub async fn wait_on_link<T, F, Fut>(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        mut check: F,
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if tokio::time::Instant::now() >= deadline {
                let s = self.status(name);
                panic!(
                    "timed out after {limit:?} waiting for {what}; link {name}: {:?}",
                    s.map(|s| (s.phase, s.remote_site, s.last_error, s.sent, s.received))
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

/// The `x-cairn-siblings` header of a GET (`head` false) or HEAD of `bucket/key`'s current
/// version at the S3 endpoint `s3` calls, sent over a raw connection from a presigned URL (the
/// SDK does not show headers it does not model). Fails unless the answer is 200.
pub async fn siblings_header(
    s3: &aws_sdk_s3::Client,
    head: bool,
    bucket: &str,
    key: &str,
) -> Option<String> {
    use aws_sdk_s3::presigning::PresigningConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = PresigningConfig::expires_in(Duration::from_secs(300)).expect("presigning");
    let presigned = if head {
        let r = s3.head_object().bucket(bucket).key(key);
        r.presigned(config).await.expect("presign")
    } else {
        let r = s3.get_object().bucket(bucket).key(key);
        r.presigned(config).await.expect("presign")
    };
    let rest = presigned
        .uri()
        .strip_prefix("http://")
        .expect("a plain http endpoint");
    let (authority, path) = rest.split_at(rest.find('/').expect("a path"));
    let method = if head { "HEAD" } else { "GET" };
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in presigned.headers() {
        if !name.eq_ignore_ascii_case("host") {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    req.push_str("\r\n");
    let mut conn = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect");
    conn.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let headers = text.split("\r\n\r\n").next().unwrap_or_default();
    assert!(headers.starts_with("HTTP/1.1 200"), "{method}: {headers}");
    headers.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-cairn-siblings")
            .then(|| value.trim().to_string())
    })
}

/// PUTs `data` as `bucket/key`; panics on failure; returns the version id (empty when the
/// bucket does not keep versions).
pub async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    data: impl AsRef<[u8]>,
) -> String {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(
            data.as_ref().to_vec(),
        ))
        .send()
        .await
        .expect("put")
        .version_id
        .unwrap_or_default()
}

/// The object's bytes and version id, if it exists.
pub async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<(Vec<u8>, String)> {
    let out = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    let version = out.version_id.clone().unwrap_or_default();
    Some((
        out.body.collect().await.ok()?.into_bytes().to_vec(),
        version,
    ))
}
