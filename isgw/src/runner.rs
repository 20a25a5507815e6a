//! Running the configured links: one task per link, started, re-configured and stopped as the
//! links file changes, each keeping its progress in its state file after every batch.
//!
//! A link's task dials the remote site's link listener, introduces itself (`Hello`: the two
//! site ids must differ), then loops: bucket records first, then for each direction it
//! carries, the initial copy (bucket by bucket, a page of versions at a time) and then the
//! source's change logs from the persisted cursors. A batch is shipped (`crate::ship`) before
//! its cursor moves, so after a crash or a lost connection the batch is shipped again, which
//! is harmless: shipping is idempotent. Versions made at the site a direction ships to are
//! never shipped back to it. A failed session is retried with backoff (1 s doubling to 10 s).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_client::{Bucket, Client};
use cairn_net::NodeIdentity;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::{DataMode, LinkConfig, LinkDir, Progress};
use crate::error::{LinkError, LinkResult};
use crate::identity::LINK_SERVER_NAME;
use crate::proto::{BucketDeleted, VersionKey, MAX_BUCKETS, MAX_VERSIONS};
use crate::remote::RemoteSite;
use crate::ship::{ship, ship_metadata, Traffic, TrafficSnapshot};
use crate::site::{holder_for, LocalSite, Sink, Source};

/// How often an idle link looks for new changes.
pub const DEFAULT_POLL: Duration = Duration::from_millis(200);
/// How often bucket records are compared.
const BUCKET_SYNC: Duration = Duration::from_secs(5);
/// Longest wait between attempts to reach a remote that cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Makes the identity a link presents (reloaded at every connection, so newly trusted CAs
/// apply).
pub type IdentitySource = Arc<dyn Fn() -> Result<NodeIdentity, String> + Send + Sync>;

/// Where a link is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkPhase {
    /// Not connected yet.
    Connecting,
    /// Connected and moving data, or caught up.
    Connected,
    /// The remote cannot be reached, or a session failed; retried with backoff.
    Offline,
    /// Paused by an operator.
    Paused,
}

/// What `cairn link status`, the admin API and `/metrics` show of a link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The link as configured.
    pub config: LinkConfig,
    /// Where it is.
    pub phase: LinkPhase,
    /// The remote site's id, once known.
    pub remote_site: Option<u16>,
    /// Age (by the clock of the site that made it) of the oldest version read from the
    /// source's change log and not yet applied at the other end, ms (0 when caught up; the
    /// initial copy is not counted), per direction.
    pub send_lag_ms: u64,
    /// The same for the receiving direction.
    pub receive_lag_ms: u64,
    /// Change-log entries of the source past the link's cursors (versions and removals not yet
    /// shipped, entries of buckets the link does not carry included), per direction, as of
    /// the last exchange of bucket records (every few seconds while connected).
    #[serde(default)]
    pub send_behind: u64,
    /// The same for the receiving direction.
    #[serde(default)]
    pub receive_behind: u64,
    /// Buckets whose initial copy is still to do, per direction.
    pub send_initial_left: Vec<String>,
    /// The same for the receiving direction.
    pub receive_initial_left: Vec<String>,
    /// What this site sent.
    pub sent: TrafficSnapshot,
    /// What this site received.
    pub received: TrafficSnapshot,
    /// The last error, if the last session failed.
    pub last_error: Option<String>,
}

/// One link's live state.
struct Run {
    config: Mutex<LinkConfig>,
    phase: Mutex<LinkPhase>,
    remote_site: Mutex<Option<u16>>,
    /// The remote end while a session is connected (asked for chunks missing here).
    remote: Mutex<Option<RemoteSite>>,
    last_error: Mutex<Option<String>>,
    /// Per direction: the make time (unix ms) of the oldest version being shipped.
    pending: (Mutex<Option<u64>>, Mutex<Option<u64>>),
    initial_left: Mutex<(Vec<String>, Vec<String>)>,
    /// Per direction: change-log entries past the cursors, as last measured.
    behind: (AtomicU64, AtomicU64),
    sent: Traffic,
    received: Traffic,
}

impl Run {
    fn status(&self) -> LinkStatus {
        let age = |p: &Mutex<Option<u64>>| {
            p.lock()
                .map_or(0, |ms| cairn_client::now_ms().saturating_sub(ms))
        };
        let lag = (age(&self.pending.0), age(&self.pending.1));
        let initial = self.initial_left.lock().clone();
        LinkStatus {
            config: self.config.lock().clone(),
            phase: *self.phase.lock(),
            remote_site: *self.remote_site.lock(),
            send_lag_ms: lag.0,
            receive_lag_ms: lag.1,
            send_behind: self.behind.0.load(Ordering::Relaxed),
            receive_behind: self.behind.1.load(Ordering::Relaxed),
            send_initial_left: initial.0,
            receive_initial_left: initial.1,
            sent: self.sent.snapshot(),
            received: self.received.snapshot(),
            last_error: self.last_error.lock().clone(),
        }
    }

    fn set_rate(&self, rate: u64) {
        self.sent.limit.set_rate(rate);
        self.received.limit.set_rate(rate);
    }
}

struct Running {
    run: Arc<Run>,
    config: watch::Sender<LinkConfig>,
    task: tokio::task::JoinHandle<()>,
}

/// Checks the links of a node's config file: each as `cairn link add` would, and no name
/// twice.
pub fn check_fixed(links: &[LinkConfig]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for l in links {
        if l.is_s3() {
            return Err(format!(
                "[[links]] {}: a mirror to an S3 endpoint needs credentials: add it with `cairn \
                 link add --data-dir` on this node instead",
                l.name
            ));
        }
        l.validate()
            .map_err(|e| format!("[[links]] {}: {e}", l.name))?;
        if !names.insert(l.name.as_str()) {
            return Err(format!("[[links]]: two links are named {}", l.name));
        }
    }
    Ok(())
}

/// The links of this site: a supervisor that follows the links file, and their status.
#[derive(Clone)]
pub struct Links {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    client: Client,
    dir: LinkDir,
    identity: IdentitySource,
    poll: Duration,
    running: Mutex<BTreeMap<String, Running>>,
    /// Links given by the node's config file: run beside those of the links file, and win
    /// over one of the same name there.
    fixed: Vec<LinkConfig>,
    /// Most stored bytes kept of chunks fetched for metadata-only links.
    cache_bytes: AtomicU64,
}

impl Shared {
    /// Makes the site fetch chunks it lacks through the connected links (done once, by the
    /// first metadata-only link).
    fn ensure_fetch(self: &Arc<Shared>) -> LinkResult<()> {
        if self.client.fetches_remote() {
            return Ok(());
        }
        let fetcher = Arc::new(crate::fetch::LinkFetcher::new(Arc::downgrade(self)));
        self.client
            .set_remote_chunks(fetcher, self.cache_bytes.load(Ordering::Relaxed))
            .map_err(|e| LinkError::Refused(e.to_string()))
    }

    /// The remote ends of the links connected now, metadata-only links first.
    pub(crate) fn connected(&self) -> Vec<RemoteSite> {
        let running = self.running.lock();
        let mut out: Vec<(bool, RemoteSite)> = running
            .values()
            .filter_map(|r| {
                let remote = r.run.remote.lock().clone()?;
                let full = r.run.config.lock().data == DataMode::Full;
                Some((full, remote))
            })
            .collect();
        out.sort_by_key(|(full, _)| *full);
        out.into_iter().map(|(_, r)| r).collect()
    }
}

impl Links {
    /// The links of the site at `data_dir` (through `client`), presenting `identity`.
    pub fn new(client: Client, data_dir: PathBuf, identity: IdentitySource) -> Links {
        Links::with_fixed(client, data_dir, identity, Vec::new())
    }

    /// [`Links::new`], also running `fixed` (the links of a node's config file, checked by
    /// [`check_fixed`]), which win over links of the same name in the links file.
    pub fn with_fixed(
        client: Client,
        data_dir: PathBuf,
        identity: IdentitySource,
        fixed: Vec<LinkConfig>,
    ) -> Links {
        Links {
            shared: Arc::new(Shared {
                client,
                dir: LinkDir::new(&data_dir),
                identity,
                poll: DEFAULT_POLL,
                running: Mutex::new(BTreeMap::new()),
                fixed,
                cache_bytes: AtomicU64::new(cairn_client::DEFAULT_CACHE_BYTES),
            }),
        }
    }

    /// Sets the most stored bytes the site keeps of chunks fetched for metadata-only links
    /// (the least recently used go first; pinned objects stay beyond it). Call before
    /// [`Links::run`].
    pub fn set_cache_size(&self, bytes: u64) {
        self.shared.cache_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The fetch cache of metadata-only links.
    pub fn fetch_stats(&self) -> Option<cairn_client::FetchStats> {
        self.shared.client.fetch_stats().ok()
    }

    /// Every link's status, by name.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.shared
            .running
            .lock()
            .values()
            .map(|r| r.run.status())
            .collect()
    }

    /// Follows the links file (every second) until `stop` is set, then stops every link.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.reconcile(&stop) {
                tracing::warn!("links file: {e}");
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let running = std::mem::take(&mut *self.shared.running.lock());
        for (_, r) in running {
            r.task.abort();
            let _ = r.task.await;
        }
    }

    /// Starts, re-configures and stops link tasks to match the links file.
    fn reconcile(&self, stop: &watch::Receiver<bool>) -> std::io::Result<()> {
        let mut file = self.shared.dir.load()?;
        let fixed = &self.shared.fixed;
        file.links
            .retain(|l| !fixed.iter().any(|f| f.name == l.name));
        file.links.extend(fixed.iter().cloned());
        let mut running = self.shared.running.lock();
        let names: Vec<String> = running.keys().cloned().collect();
        for name in names {
            if !file.links.iter().any(|l| l.name == name) {
                if let Some(r) = running.remove(&name) {
                    r.task.abort();
                    tracing::info!(link = %name, "link removed");
                }
            }
        }
        for cfg in file.links {
            if let Some(r) = running.get(&cfg.name) {
                if *r.config.borrow() != cfg {
                    *r.run.config.lock() = cfg.clone();
                    r.run.set_rate(cfg.rate_bytes_per_sec);
                    let _ = r.config.send(cfg);
                }
                continue;
            }
            let run = Arc::new(Run {
                config: Mutex::new(cfg.clone()),
                phase: Mutex::new(LinkPhase::Connecting),
                remote_site: Mutex::new(None),
                remote: Mutex::new(None),
                last_error: Mutex::new(None),
                pending: (Mutex::new(None), Mutex::new(None)),
                initial_left: Mutex::new((Vec::new(), Vec::new())),
                behind: (AtomicU64::new(0), AtomicU64::new(0)),
                sent: Traffic::default(),
                received: Traffic::default(),
            });
            run.set_rate(cfg.rate_bytes_per_sec);
            let (tx, rx) = watch::channel(cfg.clone());
            let task = tokio::spawn(run_link(self.shared.clone(), run.clone(), rx, stop.clone()));
            tracing::info!(link = %cfg.name, remote = %cfg.remote, "link started");
            running.insert(
                cfg.name.clone(),
                Running {
                    run,
                    config: tx,
                    task,
                },
            );
        }
        Ok(())
    }
}

/// Why a session ended without an error.
enum Ended {
    Stopped,
    Reconfigured,
}

async fn run_link(
    shared: Arc<Shared>,
    run: Arc<Run>,
    mut config: watch::Receiver<LinkConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let cfg = config.borrow_and_update().clone();
        if cfg.paused {
            *run.phase.lock() = LinkPhase::Paused;
            // What piles up while paused is measured here: this site's logs and the cursors.
            loop {
                measure_send_behind(&shared, &run, &cfg).await;
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    r = config.changed() => if r.is_err() { return } else { break },
                    _ = tokio::time::sleep(BUCKET_SYNC) => {}
                }
            }
            continue;
        }
        *run.phase.lock() = LinkPhase::Connecting;
        match session(&shared, &run, &cfg, &mut config, &mut stop).await {
            Ok(Ended::Stopped) => return,
            Ok(Ended::Reconfigured) => backoff = Duration::from_secs(1),
            Err(e) => {
                let e = e.to_string();
                tracing::warn!(link = %cfg.name, remote = %cfg.remote, error = %e,
                    "link session failed; retrying in {} s", backoff.as_secs());
                *run.last_error.lock() = Some(e);
                *run.phase.lock() = LinkPhase::Offline;
                measure_send_behind(&shared, &run, &cfg).await;
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    r = config.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One connection's worth of work: until the link is stopped or re-configured, or fails.
async fn session(
    shared: &Arc<Shared>,
    run: &Run,
    cfg: &LinkConfig,
    config: &mut watch::Receiver<LinkConfig>,
    stop: &mut watch::Receiver<bool>,
) -> LinkResult<Ended> {
    if cfg.is_s3() {
        return mirror_session(shared, run, cfg, config, stop).await;
    }
    if cfg.data == DataMode::MetadataOnly {
        shared.ensure_fetch()?;
    }
    let identity = (shared.identity)().map_err(LinkError::Refused)?;
    let addr = cairn_net::resolve(&cfg.remote, Duration::from_secs(10)).await?;
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().expect("address")
    } else {
        "0.0.0.0:0".parse().expect("address")
    };
    let net_config = crate::listener::link_net_config();
    let net = cairn_net::Client::new(&identity, net_config, bind)
        .map_err(|e| LinkError::Refused(format!("link endpoint: {e}")))?;
    let own_site = shared.client.site_id();
    let remote = RemoteSite::new(net.peer(addr, LINK_SERVER_NAME), own_site);
    let result = async {
        let remote_site = remote.hello(&cfg.name).await.map_err(explain_refusal)?;
        if remote_site == own_site {
            return Err(LinkError::Refused(format!(
                "both sites have site id {own_site:04x}: they cannot be linked (one was probably \
                 copied from the other). Give one a new id: stop it, delete site-id in its data \
                 dir (single-node sites) or set `id` in the [site] section of every node's \
                 config (multi-node sites), and start it again"
            )));
        }
        *run.remote_site.lock() = Some(remote_site);
        *run.remote.lock() = Some(remote.clone());
        *run.phase.lock() = LinkPhase::Connected;
        *run.last_error.lock() = None;
        tracing::info!(link = %cfg.name, remote_site = format!("{remote_site:04x}"), "link connected");
        let local = LocalSite::new(shared.client.clone(), holder_for(remote_site));
        let mut state = shared
            .dir
            .load_state(&cfg.name)
            .map_err(|e| LinkError::Refused(format!("link state: {e}")))?;
        for p in [&mut state.send, &mut state.receive] {
            if p.remote_site.is_some_and(|s| s != remote_site) {
                // The link now reaches another site: start over.
                *p = Progress::default();
            }
        }
        let mut last_buckets: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                return Ok(Ended::Stopped);
            }
            if config.has_changed().unwrap_or(true) {
                return Ok(Ended::Reconfigured);
            }
            if last_buckets.is_none_or(|t| t.elapsed() >= BUCKET_SYNC) {
                let sites = (own_site, remote_site);
                exchange_buckets(&local, &remote, cfg, &mut state, sites).await?;
                save(shared, cfg, &state)?;
                if cfg.direction.sends() {
                    let n = behind(&local, &state.send).await?;
                    run.behind.0.store(n, Ordering::Relaxed);
                }
                if cfg.direction.receives() {
                    let n = behind(&remote, &state.receive).await?;
                    run.behind.1.store(n, Ordering::Relaxed);
                }
                last_buckets = Some(Instant::now());
            }
            let mut worked = false;
            if cfg.direction.sends() {
                let dir = Direction {
                    src: &local,
                    dst: &remote,
                    metadata_only: false,
                    dst_site: remote_site,
                    traffic: &run.sent,
                    pending: &run.pending.0,
                };
                worked = dir.step(cfg, &mut state.send, remote_site).await?;
                save(shared, cfg, &state)?;
            }
            if cfg.direction.receives() {
                let dir = Direction {
                    src: &remote,
                    dst: &local,
                    metadata_only: cfg.data == DataMode::MetadataOnly,
                    dst_site: own_site,
                    traffic: &run.received,
                    pending: &run.pending.1,
                };
                worked |= dir.step(cfg, &mut state.receive, remote_site).await?;
                save(shared, cfg, &state)?;
            }
            *run.initial_left.lock() = (state.send.initial.clone(), state.receive.initial.clone());
            if !worked {
                if let Some(ended) = idle(shared, config, stop).await {
                    return Ok(ended);
                }
            }
        }
    }
    .await;
    *run.remote.lock() = None;
    net.close().await;
    result
}

/// A handshake refused by either side says what to do about it.
fn explain_refusal(e: LinkError) -> LinkError {
    match e {
        LinkError::Remote(r) if r.to_string().contains("handshake") => LinkError::Refused(format!(
            "the two sites do not trust each other ({r}): each must trust the other's CA — run \
             `cairn link ca` at one site and `cairn link trust FILE` at the other, both ways"
        )),
        e => e,
    }
}

/// A session of a link to a plain S3 endpoint (see `crate::mirror`).
async fn mirror_session(
    shared: &Shared,
    run: &Run,
    cfg: &LinkConfig,
    config: &mut watch::Receiver<LinkConfig>,
    stop: &mut watch::Receiver<bool>,
) -> LinkResult<Ended> {
    let target = shared
        .dir
        .load_s3_target(&cfg.name)
        .map_err(|e| LinkError::Refused(format!("the link's S3 credentials: {e}")))?;
    let mut mirror = crate::mirror::Mirror::new(&shared.client, cfg, &target, &run.sent);
    mirror.hello().await?;
    *run.phase.lock() = LinkPhase::Connected;
    *run.last_error.lock() = None;
    let mut state = shared
        .dir
        .load_state(&cfg.name)
        .map_err(|e| LinkError::Refused(format!("link state: {e}")))?;
    loop {
        if *stop.borrow() {
            return Ok(Ended::Stopped);
        }
        if config.has_changed().unwrap_or(true) {
            return Ok(Ended::Reconfigured);
        }
        let worked = mirror.step(cfg, &mut state.send).await?;
        save(shared, cfg, &state)?;
        *run.initial_left.lock() = (state.send.initial.clone(), Vec::new());
        if !worked {
            if let Some(ended) = idle(shared, config, stop).await {
                return Ok(ended);
            }
        }
    }
}

/// Takes a direction's starting point: where the source's change logs end now (held for the
/// link from there) when it follows changes, and the buckets to copy first when it copies what
/// exists.
pub(crate) async fn begin(src: &dyn Source, cfg: &LinkConfig, p: &mut Progress) -> LinkResult<()> {
    if cfg.mode.continuous() {
        p.cursors = src.logs().await?.into_iter().collect();
    }
    if cfg.mode.initial() {
        p.initial = src
            .buckets()
            .await?
            .into_iter()
            .map(|b| b.name)
            .filter(|b| cfg.carries(b))
            .collect();
        p.initial_after = None;
    }
    p.started = true;
    Ok(())
}

/// Waits one polling interval, or until the link is stopped or re-configured.
async fn idle(
    shared: &Shared,
    config: &mut watch::Receiver<LinkConfig>,
    stop: &mut watch::Receiver<bool>,
) -> Option<Ended> {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => Some(Ended::Stopped),
        _ = config.changed() => Some(Ended::Reconfigured),
        _ = tokio::time::sleep(shared.poll) => None,
    }
}

fn save(shared: &Shared, cfg: &LinkConfig, state: &crate::config::LinkState) -> LinkResult<()> {
    shared
        .dir
        .save_state(&cfg.name, state)
        .map_err(|e| LinkError::Refused(format!("cannot keep the link's progress: {e}")))
}

/// The exchange of bucket records, every [`BUCKET_SYNC`]: deletions first, then creations
/// and settings changes (the newest revision wins), in each direction the link carries.
///
/// A bucket both sites held at the last exchange (`state.shared_buckets`) and one of them has
/// lost was deleted there: the other deletes it too, if it holds no version. While it still
/// holds versions made at the deleting site, their removals are on their way (they travel
/// in the change log): the deletion waits. Once it holds only versions made elsewhere —
/// writes the deleting site never saw — those win: the bucket is made again where it was
/// deleted, and the versions follow. A one-way link only deletes in its direction; the other
/// way, the sending site's record makes the bucket again.
async fn exchange_buckets(
    local: &LocalSite,
    remote: &RemoteSite,
    cfg: &LinkConfig,
    state: &mut crate::config::LinkState,
    (own_site, remote_site): (u16, u16),
) -> LinkResult<()> {
    let here = carried(local, cfg).await?;
    let there = carried(remote, cfg).await?;
    let mut pending = std::collections::BTreeSet::new();
    let mut settled = std::collections::BTreeSet::new();
    for name in std::mem::take(&mut state.shared_buckets) {
        let (deleted_here, deleted_there) = (!here.contains_key(&name), !there.contains_key(&name));
        let wait = match (deleted_here, deleted_there) {
            (true, false) if cfg.direction.sends() => {
                let remake = cfg.direction.receives().then_some(&there);
                delete_deleted(local, remote, &name, own_site, remake).await?
            }
            (false, true) if cfg.direction.receives() => {
                let remake = cfg.direction.sends().then_some(&here);
                delete_deleted(remote, local, &name, remote_site, remake).await?
            }
            _ => false,
        };
        if wait {
            pending.insert(name.clone());
        }
        if deleted_here != deleted_there {
            // Settled above (deleted, waiting, or made again): the records read before must
            // not make it again.
            settled.insert(name);
        }
    }
    if cfg.direction.sends() {
        let make: Vec<Bucket> = here
            .values()
            .filter(|b| !settled.contains(&b.name))
            .cloned()
            .collect();
        for part in make.chunks(MAX_BUCKETS) {
            remote.ensure_buckets(part.to_vec()).await?;
        }
    }
    if cfg.direction.receives() {
        let make: Vec<Bucket> = there
            .values()
            .filter(|b| !settled.contains(&b.name))
            .cloned()
            .collect();
        for part in make.chunks(MAX_BUCKETS) {
            local.ensure_buckets(part.to_vec()).await?;
        }
    }
    // What both hold now (creations included), and the deletions still waiting.
    let here = carried(local, cfg).await?;
    let there = carried(remote, cfg).await?;
    state.shared_buckets = here
        .keys()
        .filter(|n| there.contains_key(*n))
        .cloned()
        .chain(pending)
        .collect();
    Ok(())
}

/// The sending direction's backlog, measured without a connection (a paused or offline
/// link): this site's log ends against the saved cursors. Failures leave the last figure.
async fn measure_send_behind(shared: &Shared, run: &Run, cfg: &LinkConfig) {
    if !cfg.direction.sends() || cfg.is_s3() {
        return;
    }
    let Ok(state) = shared.dir.load_state(&cfg.name) else {
        return;
    };
    let local = LocalSite::new(shared.client.clone(), String::new());
    if let Ok(n) = behind(&local, &state.send).await {
        run.behind.0.store(n, Ordering::Relaxed);
    }
}

/// Change-log entries of `src` past the cursors of `p` (0 before the direction started).
async fn behind(src: &dyn Source, p: &Progress) -> LinkResult<u64> {
    if !p.started {
        return Ok(0);
    }
    Ok(src
        .log_ends()
        .await?
        .into_iter()
        .filter_map(|(log, end)| p.cursors.get(&log).map(|c| end.saturating_sub(*c)))
        .sum())
}

/// The bucket records of `site` the link carries, by name.
async fn carried(
    site: &dyn Source,
    cfg: &LinkConfig,
) -> LinkResult<std::collections::BTreeMap<String, Bucket>> {
    Ok(site
        .buckets()
        .await?
        .into_iter()
        .filter(|b| cfg.carries(&b.name))
        .map(|b| (b.name.clone(), b))
        .collect())
}

/// Deletes at `survivor` a bucket `deleter` (site `deleter_site`) deleted; returns whether the
/// deletion waits (the survivor still holds versions made at the deleting site, whose
/// removals are on their way). When the survivor holds only versions made elsewhere, the
/// bucket is made again at the deleting site from the survivor's record (`remake`: the
/// survivor's records, when the link carries its changes to the deleting site; otherwise the
/// survivor keeps the bucket to itself).
async fn delete_deleted(
    deleter: &dyn SiteBoth,
    survivor: &dyn SiteBoth,
    name: &str,
    deleter_site: u16,
    remake: Option<&std::collections::BTreeMap<String, Bucket>>,
) -> LinkResult<bool> {
    match survivor.delete_bucket(name).await? {
        BucketDeleted::Deleted | BucketDeleted::Absent => {
            tracing::info!(
                bucket = name,
                "a bucket deleted at one linked site was deleted at the other"
            );
            Ok(false)
        }
        BucketDeleted::NotEmpty => {
            let (page, _) = survivor.list_versions(name, None, MAX_VERSIONS).await?;
            if page.iter().any(|m| m.version.site() == deleter_site) {
                return Ok(true);
            }
            if let Some(b) = remake.and_then(|r| r.get(name)) {
                tracing::info!(
                    bucket = name,
                    "a bucket deleted at one linked site holds \
                    versions made at the other since: it is made again where it was deleted"
                );
                deleter.ensure_buckets(vec![b.clone()]).await?;
            }
            Ok(false)
        }
    }
}

/// A site that is both ends of a transfer (both [`LocalSite`] and [`RemoteSite`] are).
trait SiteBoth: Source + Sink {}

impl<T: Source + Sink> SiteBoth for T {}

/// One direction of a link.
struct Direction<'a> {
    src: &'a dyn Source,
    dst: &'a dyn Sink,
    /// Only manifests are applied: `dst` fetches data when it is read.
    metadata_only: bool,
    /// The site `dst` is: versions made there are not shipped to it.
    dst_site: u16,
    traffic: &'a Traffic,
    /// The make time of the oldest version of the batch in flight (for the lag).
    pending: &'a Mutex<Option<u64>>,
}

impl Direction<'_> {
    async fn ship(&self, adds: Vec<VersionKey>, removals: Vec<VersionKey>) -> LinkResult<()> {
        if self.metadata_only {
            ship_metadata(self.src, self.dst, adds, removals, self.traffic).await
        } else {
            ship(self.src, self.dst, adds, removals, self.traffic).await
        }
    }

    /// Ships one batch, if there is one; returns whether there was.
    async fn step(&self, cfg: &LinkConfig, p: &mut Progress, remote_site: u16) -> LinkResult<bool> {
        if !p.started {
            begin(self.src, cfg, p).await?;
            p.remote_site = Some(remote_site);
            return Ok(true);
        }
        if let Some(bucket) = p.initial.first().cloned() {
            let listed = self
                .src
                .list_versions(&bucket, p.initial_after.clone(), MAX_VERSIONS)
                .await;
            let (page, truncated) = match listed {
                Ok(r) => r,
                // The bucket went away at the source meanwhile: nothing to copy.
                Err(LinkError::Local(cairn_client::ClientError::NoSuchBucket(_))) => {
                    (Vec::new(), false)
                }
                Err(LinkError::Remote(e)) if e.kind() == cairn_core::ErrorKind::NotFound => {
                    (Vec::new(), false)
                }
                Err(e) => return Err(e),
            };
            let last = page.last().map(|m| (m.key.clone(), Some(m.version)));
            let adds = page
                .iter()
                .filter(|m| m.version.site() != self.dst_site)
                .map(VersionKey::of)
                .collect();
            self.ship(adds, Vec::new()).await?;
            if truncated {
                p.initial_after = last;
            } else {
                p.initial.remove(0);
                p.initial_after = None;
            }
            return Ok(true);
        }
        if !cfg.mode.continuous() {
            return Ok(false);
        }
        let mut worked = false;
        for (log, cursor) in p.cursors.clone() {
            let changes = self.src.changes(log, cursor, MAX_VERSIONS).await?;
            let Some(last) = changes.last() else {
                continue;
            };
            let last_seq = last.seq;
            let (removals, adds): (Vec<_>, Vec<_>) = changes
                .into_iter()
                .filter(|c| cfg.carries(&c.bucket))
                .partition(|c| c.removed);
            let adds: Vec<_> = adds
                .iter()
                .filter(|c| c.version.site() != self.dst_site)
                .collect();
            // A removal's entry names the removed version, whose make time says nothing of
            // when it was removed: the lag counts versions only.
            *self.pending.lock() = adds.iter().map(|c| c.version.millis()).min();
            let adds = adds.into_iter().map(VersionKey::of_change).collect();
            let removals = removals.iter().map(VersionKey::of_change).collect();
            self.ship(adds, removals).await?;
            *self.pending.lock() = None;
            p.cursors.insert(log, last_seq);
            worked = true;
        }
        Ok(worked)
    }
}

impl cairn_core::metrics::MetricsSource for Links {
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let links = self.status();
        if links.is_empty() {
            return;
        }
        if let Ok(f) = self.shared.client.fetch_stats() {
            if f.enabled {
                render_fetch(out, &f);
            }
        }
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        gauge(
            out,
            "cairn_link_connected",
            "Whether the link is connected (1) or not (0).",
            "gauge",
        );
        for l in &links {
            let up = u8::from(l.phase == LinkPhase::Connected);
            let _ = writeln!(
                out,
                "cairn_link_connected{{link=\"{}\"}} {up}",
                l.config.name
            );
        }
        gauge(
            out,
            "cairn_link_lag_seconds",
            "Age of the oldest change read and not yet shipped.",
            "gauge",
        );
        for l in &links {
            for (dir, ms) in [("send", l.send_lag_ms), ("receive", l.receive_lag_ms)] {
                let _ = writeln!(
                    out,
                    "cairn_link_lag_seconds{{link=\"{}\",direction=\"{dir}\"}} {}",
                    l.config.name,
                    ms as f64 / 1000.0
                );
            }
        }
        gauge(
            out,
            "cairn_link_behind",
            "Change-log entries of the source not yet shipped.",
            "gauge",
        );
        for l in &links {
            for (dir, n) in [("send", l.send_behind), ("receive", l.receive_behind)] {
                let _ = writeln!(
                    out,
                    "cairn_link_behind{{link=\"{}\",direction=\"{dir}\"}} {n}",
                    l.config.name
                );
            }
        }
        type Field = fn(&TrafficSnapshot) -> u64;
        let counters: [(&str, &str, Field); 8] = [
            (
                "cairn_link_versions_total",
                "Versions applied at the other end.",
                |t| t.versions,
            ),
            (
                "cairn_link_versions_present_total",
                "Versions offered that the other end had.",
                |t| t.versions_present,
            ),
            (
                "cairn_link_removals_total",
                "Version removals applied at the other end.",
                |t| t.removals,
            ),
            (
                "cairn_link_conflicts_total",
                "Versions written at both ends over the same version.",
                |t| t.conflicts,
            ),
            (
                "cairn_link_nodes_total",
                "Extent-tree nodes shipped.",
                |t| t.nodes,
            ),
            ("cairn_link_chunks_total", "Data chunks shipped.", |t| {
                t.chunks
            }),
            ("cairn_link_bytes_total", "Stored bytes shipped.", |t| {
                t.bytes
            }),
            (
                "cairn_link_bytes_skipped_total",
                "Logical bytes not shipped because the other end had them.",
                |t| t.bytes_skipped,
            ),
        ];
        for (name, help, field) in counters {
            gauge(out, name, help, "counter");
            for l in &links {
                for (dir, t) in [("send", &l.sent), ("receive", &l.received)] {
                    let _ = writeln!(
                        out,
                        "{name}{{link=\"{}\",direction=\"{dir}\"}} {}",
                        l.config.name,
                        field(t)
                    );
                }
            }
        }
    }
}

/// The fetch cache's figures (metadata-only links).
fn render_fetch(out: &mut String, f: &cairn_client::FetchStats) {
    use std::fmt::Write;
    let rows: [(&str, &str, &str, u64); 8] = [
        (
            "cairn_link_cache_bytes",
            "Stored bytes of chunks fetched from linked sites and kept.",
            "gauge",
            f.cache.stored_bytes,
        ),
        (
            "cairn_link_cache_chunks",
            "Chunks fetched from linked sites and kept.",
            "gauge",
            f.cache.chunks,
        ),
        (
            "cairn_link_cache_pinned_bytes",
            "Stored bytes of kept chunks pinned (never evicted).",
            "gauge",
            f.cache.pinned_bytes,
        ),
        (
            "cairn_link_cache_limit_bytes",
            "Most stored bytes the fetch cache keeps (pinned chunks beyond it).",
            "gauge",
            f.limit_bytes,
        ),
        (
            "cairn_link_fetched_chunks_total",
            "Chunks fetched from linked sites.",
            "counter",
            f.fetched_chunks,
        ),
        (
            "cairn_link_fetched_bytes_total",
            "Stored bytes fetched from linked sites.",
            "counter",
            f.fetched_bytes,
        ),
        (
            "cairn_link_fetch_refused_total",
            "Chunks a linked site sent that failed their check (not stored).",
            "counter",
            f.refused_chunks,
        ),
        (
            "cairn_link_cache_evicted_total",
            "Chunks evicted from the fetch cache.",
            "counter",
            f.evicted_chunks,
        ),
    ];
    for (name, help, kind, v) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
}
