//! Volumes: named, thin block devices stored as objects.
//!
//! Volume `NAME` is the object `volumes/NAME` in the reserved bucket [`VOLUME_BUCKET`] (owned
//! by no access key, so S3 users neither list nor reach it). The object's content is the
//! volume's extent tree: a new volume is one zeros leaf of its size (nothing stored), and
//! every commit splices the written extents in copy-on-write, so a version shares every
//! untouched node with the one before. The bucket is unversioned: each commit replaces the
//! previous version, whose unshared nodes and chunks GC then collects, so a volume that
//! commits every millisecond does not grow a version list. Its block size and extent size are
//! the object's metadata.

mod backup;
mod budget;
mod chunkcache;
mod controller;
mod exports;
mod overlay;
mod usage;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use cairn_client::{
    Client, ClientError, ListQuery, PutResult, VersionManifest, VersionSel, WriteCondition,
};
use cairn_core::extent::{Child, Leaf, TreeBuilder};
use cairn_core::metrics::{self, Histogram, MetricsSource};
use tokio::sync::{watch, Mutex};

pub use backup::{LayoutPiece, Restore, SnapshotLayout};
pub use controller::{
    chunk_cache_for_memory, dirty_for_memory, Volume, VolumeConfig, VolumeStats,
    DEFAULT_CHUNK_CACHE_BYTES, DEFAULT_DIRTY_BYTES, MAX_IO,
};
pub use usage::{HealthState, MonitorReport, VolumeMonitor, VolumeUsage};

use crate::device::{BlockDevice, BlockError, Exports};

/// The bucket that holds every volume.
pub const VOLUME_BUCKET: &str = "cairn-volumes";
/// Its owner: no access key has this id.
const VOLUME_OWNER: &str = "cairn-system";
/// Key prefix of volume heads.
const HEAD_PREFIX: &str = "volumes/";
/// Key prefix of snapshots: `snapshots/VOLUME/SNAPSHOT`.
const SNAP_PREFIX: &str = "snapshots/";
/// Default extent size: the unit a volume's writes are stored in.
pub const DEFAULT_EXTENT_SIZE: u32 = 64 << 10;
/// Largest volume (8 EiB would overflow offsets; S3's object limit is not a block limit).
pub const MAX_VOLUME_SIZE: u64 = 1 << 60;
const META_BLOCK_SIZE: &str = "cairn-volume-block-size";
const META_EXTENT_SIZE: &str = "cairn-volume-extent-size";

/// A volume management request failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// No volume (or snapshot, `VOLUME@SNAPSHOT`) of that name.
    #[error("no volume or snapshot named {0:?}: `cairn volume list` and `cairn volume snapshot list VOLUME` show them")]
    NotFound(String),
    /// The name is taken.
    #[error("a volume named {0:?} exists already")]
    Exists(String),
    /// A bad name, size or setting.
    #[error("{0}")]
    Invalid(String),
    /// The volume is open (served to a client) and the request needs it closed.
    #[error("volume {0:?} is in use; disconnect its clients first")]
    InUse(String),
    /// The volume's controller refused or failed the request.
    #[error(transparent)]
    Device(#[from] BlockError),
    /// The store failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// What `cairn volume info` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Logical block size (512 or 4096).
    pub block_size: u32,
    /// Extent size: writes are stored in aligned pieces of this size.
    pub extent_size: u32,
    /// When the newest version was committed (unix ms).
    pub committed_ms: u64,
}

/// A valid volume name: 1-64 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
pub fn valid_volume_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn head_key(name: &str) -> String {
    format!("{HEAD_PREFIX}{name}")
}

fn snap_prefix(volume: &str) -> String {
    format!("{SNAP_PREFIX}{volume}/")
}

fn snap_key(volume: &str, snap: &str) -> String {
    format!("{SNAP_PREFIX}{volume}/{snap}")
}

fn check_name(what: &str, name: &str) -> Result<(), VolumeError> {
    if valid_volume_name(name) {
        return Ok(());
    }
    Err(VolumeError::Invalid(format!(
        "invalid {what} name {name:?}: use 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
    )))
}

/// A snapshot: a named, read-only copy of a volume's content at one moment, sharing every
/// chunk and tree node with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The volume it was taken of.
    pub volume: String,
    /// Its name.
    pub name: String,
    /// The volume's size then.
    pub size: u64,
    /// When it was taken (unix ms).
    pub created_ms: u64,
}

/// A live controller, or one still committing after its last handle went.
struct Open {
    volume: Weak<Volume>,
    exited: watch::Receiver<bool>,
}

/// Every volume of a site, and the controllers of the open ones.
pub struct Volumes {
    client: Client,
    config: VolumeConfig,
    open: Mutex<HashMap<String, Open>>,
    /// Chunk bytes recently read or written, for every volume.
    chunks: Arc<chunkcache::ChunkCache>,
    /// The write-back budget every open volume shares.
    budget: Arc<budget::DirtyBudget>,
    /// Counters of every volume opened since start, by name (for `/metrics`).
    stats: std::sync::Mutex<BTreeMap<String, Arc<VolumeStats>>>,
}

impl Volumes {
    /// Volumes on the site `client` reaches.
    pub fn new(client: Client, config: VolumeConfig) -> Volumes {
        Volumes {
            client,
            chunks: Arc::new(chunkcache::ChunkCache::new(config.chunk_cache_bytes)),
            budget: Arc::new(budget::DirtyBudget::new(config.max_dirty_bytes)),
            config,
            open: Mutex::new(HashMap::new()),
            stats: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Written bytes the open volumes buffer together (what the write-back budget bounds).
    pub fn dirty_bytes(&self) -> u64 {
        self.budget.used()
    }

    async fn ensure_bucket(&self) -> Result<(), VolumeError> {
        match self.client.head_bucket(VOLUME_BUCKET).await {
            Ok(_) => Ok(()),
            Err(ClientError::NoSuchBucket(_)) => {
                match self.client.create_bucket(VOLUME_BUCKET, VOLUME_OWNER).await {
                    Ok(_) | Err(ClientError::BucketAlreadyOwnedByYou(_)) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates an empty (all zeros, nothing stored) volume.
    pub async fn create(
        &self,
        name: &str,
        size: u64,
        block_size: u32,
        extent_size: u32,
    ) -> Result<VolumeInfo, VolumeError> {
        check_name("volume", name)?;
        if !matches!(block_size, 512 | 4096) {
            return Err(VolumeError::Invalid(format!(
                "block size {block_size} is not supported: use 512 or 4096"
            )));
        }
        if !extent_size.is_power_of_two()
            || extent_size < block_size.max(4096)
            || extent_size > (4 << 20)
        {
            return Err(VolumeError::Invalid(format!(
                "extent size {extent_size} must be a power of two from the block size (at least 4 KiB) to 4 MiB"
            )));
        }
        check_size(size, block_size)?;
        self.ensure_bucket().await?;
        let mut b = TreeBuilder::new();
        b.push_leaf(&self.client, Leaf::zeros(size)).await?;
        let root = b
            .finish(&self.client)
            .await?
            .ok_or_else(|| VolumeError::Invalid("a volume needs a size".into()))?;
        let meta = BTreeMap::from([
            (META_BLOCK_SIZE.to_string(), block_size.to_string()),
            (META_EXTENT_SIZE.to_string(), extent_size.to_string()),
        ]);
        let put = self
            .client
            .put_tree(
                VOLUME_BUCKET,
                &head_key(name),
                root,
                meta,
                Some(WriteCondition::IfNoneMatchAny),
            )
            .await
            .map_err(|e| match e {
                ClientError::PreconditionFailed => VolumeError::Exists(name.to_string()),
                e => e.into(),
            })?;
        info_of(name, &put.manifest)
    }

    async fn head(&self, name: &str) -> Result<PutResult, VolumeError> {
        if !valid_volume_name(name) {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        match self
            .client
            .head_object(VOLUME_BUCKET, &head_key(name), &VersionSel::Current)
            .await
        {
            Ok(p) => Ok(p),
            Err(ClientError::NoSuchKey { .. } | ClientError::NoSuchBucket(_)) => {
                Err(VolumeError::NotFound(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A volume's settings and size as last committed.
    pub async fn info(&self, name: &str) -> Result<VolumeInfo, VolumeError> {
        info_of(name, &self.head(name).await?.manifest)
    }

    /// Every object under `prefix` in the volume bucket, in key order.
    async fn list_under(&self, prefix: &str) -> Result<Vec<VersionManifest>, VolumeError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let q = ListQuery {
                prefix: prefix.to_string(),
                delimiter: None,
                start_after: after.take(),
                max_keys: 1000,
            };
            let page = match self.client.list_objects(VOLUME_BUCKET, &q).await {
                Ok(p) => p,
                Err(ClientError::NoSuchBucket(_)) => return Ok(out),
                Err(e) => return Err(e.into()),
            };
            out.extend(page.objects);
            if !page.is_truncated {
                return Ok(out);
            }
            after = page.next_marker;
        }
    }

    /// Every volume, by name.
    pub async fn list(&self) -> Result<Vec<VolumeInfo>, VolumeError> {
        self.list_under(HEAD_PREFIX)
            .await?
            .iter()
            .map(|m| info_of(m.key.trim_start_matches(HEAD_PREFIX), m))
            .collect()
    }

    /// Opens a volume for I/O: the running controller if the volume is open already, else a
    /// new one (after a previous one has finished its last commit).
    pub async fn open(&self, name: &str) -> Result<Arc<Volume>, VolumeError> {
        let mut open = self.open.lock().await;
        if let Some(o) = open.get_mut(name) {
            if let Some(v) = o.volume.upgrade() {
                return Ok(v);
            }
            // The last handle went; wait for that controller to commit and end, so two never
            // write the same volume.
            let mut exited = o.exited.clone();
            let _ = exited.wait_for(|done| *done).await;
            open.remove(name);
        }
        let head = self.head(name).await?.manifest;
        let info = info_of(name, &head)?;
        let root = tree_root(&head)?;
        let start = controller::Start {
            name: name.to_string(),
            key: head_key(name),
            block_size: info.block_size,
            extent_size: info.extent_size,
            root,
            etag: head.etag.clone(),
            meta: head.user_metadata.clone(),
        };
        let stats = {
            let mut all = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            all.entry(name.to_string()).or_default().clone()
        };
        let (volume, exited) = controller::spawn(
            self.client.clone(),
            start,
            self.config.clone(),
            stats,
            self.chunks.clone(),
            self.budget.clone(),
        );
        open.insert(
            name.to_string(),
            Open {
                volume: Arc::downgrade(&volume),
                exited,
            },
        );
        Ok(volume)
    }

    /// Commits what every open volume buffers and waits until every controller whose
    /// handles are gone has ended. Called at shutdown, after the front ends stopped.
    pub async fn close(&self) {
        let entries: Vec<(String, Option<Arc<Volume>>, watch::Receiver<bool>)> = {
            let open = self.open.lock().await;
            open.iter()
                .map(|(n, o)| (n.clone(), o.volume.upgrade(), o.exited.clone()))
                .collect()
        };
        for (name, volume, mut exited) in entries {
            match volume {
                Some(v) => {
                    if let Err(e) = v.flush().await {
                        tracing::error!(volume = %name, error = %e, "volume could not commit at shutdown");
                    }
                }
                None => {
                    let _ = exited.wait_for(|done| *done).await;
                }
            }
        }
    }

    /// Whether the volume has a live controller.
    async fn is_open(&self, name: &str) -> bool {
        let open = self.open.lock().await;
        open.get(name)
            .is_some_and(|o| o.volume.strong_count() > 0 || !*o.exited.borrow())
    }

    /// Grows a volume to `size` bytes; shrinking (which drops the data past the new end) needs
    /// `force`. An open volume is resized through its controller.
    pub async fn resize(
        &self,
        name: &str,
        size: u64,
        force: bool,
    ) -> Result<VolumeInfo, VolumeError> {
        let info = self.info(name).await?;
        check_size(size, info.block_size)?;
        if size < info.size && !force {
            return Err(VolumeError::Invalid(format!(
                "shrinking {name} from {} to {size} bytes drops the data past the new end; pass --force to do it",
                info.size
            )));
        }
        if size == info.size {
            return Ok(info);
        }
        let volume = self.open(name).await?;
        volume.resize(size).await?;
        drop(volume);
        self.info(name).await
    }

    /// Deletes a volume that no client has open, and with `snapshots` its snapshots (a volume
    /// that has snapshots is refused otherwise). Clones are volumes of their own and stay. The
    /// chunks nothing reaches any more go at the next GC pass.
    pub async fn delete(&self, name: &str, snapshots: bool) -> Result<(), VolumeError> {
        self.head(name).await?;
        if self.is_open(name).await {
            return Err(VolumeError::InUse(name.to_string()));
        }
        let snaps = self.snapshots(name).await?;
        if !snaps.is_empty() && !snapshots {
            return Err(VolumeError::Invalid(format!(
                "volume {name} has {} snapshot(s): delete them first, or delete them with the volume (--snapshots)",
                snaps.len()
            )));
        }
        for s in snaps {
            self.delete_snapshot(name, &s.name).await?;
        }
        self.client
            .delete_object(VOLUME_BUCKET, &head_key(name), &VersionSel::Current)
            .await?;
        self.delete_export(name).await
    }

    /// Takes snapshot `snap` of volume `name`: what every write acknowledged before the call
    /// wrote (an open volume commits its buffer first). Instant: the snapshot shares the
    /// volume's tree; nothing is copied.
    pub async fn snapshot(&self, name: &str, snap: &str) -> Result<SnapshotInfo, VolumeError> {
        check_name("snapshot", snap)?;
        let open = {
            let open = self.open.lock().await;
            open.get(name).and_then(|o| o.volume.upgrade())
        };
        if let Some(v) = open {
            v.flush().await?;
        }
        let head = self.head(name).await?.manifest;
        let root = tree_root(&head)?;
        let put = self
            .client
            .put_tree(
                VOLUME_BUCKET,
                &snap_key(name, snap),
                root,
                head.user_metadata.clone(),
                Some(WriteCondition::IfNoneMatchAny),
            )
            .await
            .map_err(|e| match e {
                ClientError::PreconditionFailed => VolumeError::Exists(format!("{name}@{snap}")),
                e => e.into(),
            })?;
        Ok(snap_info(name, &put.manifest))
    }

    /// The snapshots of volume `name`, by name.
    pub async fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, VolumeError> {
        check_name("volume", name)?;
        Ok(self
            .list_under(&snap_prefix(name))
            .await?
            .iter()
            .map(|m| snap_info(name, m))
            .collect())
    }

    async fn snapshot_head(&self, name: &str, snap: &str) -> Result<VersionManifest, VolumeError> {
        let missing = || VolumeError::NotFound(format!("{name}@{snap}"));
        if !valid_volume_name(name) || !valid_volume_name(snap) {
            return Err(missing());
        }
        match self
            .client
            .head_object(VOLUME_BUCKET, &snap_key(name, snap), &VersionSel::Current)
            .await
        {
            Ok(p) => Ok(p.manifest),
            Err(ClientError::NoSuchKey { .. } | ClientError::NoSuchBucket(_)) => Err(missing()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a snapshot; the volume and its clones keep what they share with it.
    pub async fn delete_snapshot(&self, name: &str, snap: &str) -> Result<(), VolumeError> {
        self.snapshot_head(name, snap).await?;
        self.client
            .delete_object(VOLUME_BUCKET, &snap_key(name, snap), &VersionSel::Current)
            .await?;
        Ok(())
    }

    /// Creates volume `new` whose content is snapshot `name@snap`: instant, nothing copied
    /// (the clone's writes diverge copy-on-write).
    pub async fn clone_snapshot(
        &self,
        name: &str,
        snap: &str,
        new: &str,
    ) -> Result<VolumeInfo, VolumeError> {
        check_name("volume", new)?;
        let s = self.snapshot_head(name, snap).await?;
        let put = self
            .client
            .put_tree(
                VOLUME_BUCKET,
                &head_key(new),
                tree_root(&s)?,
                s.user_metadata.clone(),
                Some(WriteCondition::IfNoneMatchAny),
            )
            .await
            .map_err(|e| match e {
                ClientError::PreconditionFailed => VolumeError::Exists(new.to_string()),
                e => e.into(),
            })?;
        info_of(new, &put.manifest)
    }

    /// Makes snapshot `name@snap` the content of volume `name` again (a new version equal to
    /// the snapshot; the snapshot stays). The volume must not be open.
    pub async fn rollback(&self, name: &str, snap: &str) -> Result<VolumeInfo, VolumeError> {
        let s = self.snapshot_head(name, snap).await?;
        let head = self.head(name).await?.manifest;
        if self.is_open(name).await {
            return Err(VolumeError::InUse(name.to_string()));
        }
        let put = self
            .client
            .put_tree(
                VOLUME_BUCKET,
                &head_key(name),
                tree_root(&s)?,
                s.user_metadata.clone(),
                Some(WriteCondition::IfMatch(head.etag)),
            )
            .await?;
        info_of(name, &put.manifest)
    }
}

fn snap_info(volume: &str, m: &VersionManifest) -> SnapshotInfo {
    SnapshotInfo {
        volume: volume.to_string(),
        name: m.key.rsplit('/').next().unwrap_or_default().to_string(),
        size: m.size,
        created_ms: m.mtime_ms,
    }
}

fn check_size(size: u64, block_size: u32) -> Result<(), VolumeError> {
    if size == 0 || !size.is_multiple_of(u64::from(block_size)) || size > MAX_VOLUME_SIZE {
        return Err(VolumeError::Invalid(format!(
            "size {size} must be a non-zero multiple of the block size ({block_size}) up to {MAX_VOLUME_SIZE} bytes"
        )));
    }
    Ok(())
}

fn tree_root(m: &VersionManifest) -> Result<Child, VolumeError> {
    m.content.tree().ok_or_else(|| {
        VolumeError::Client(ClientError::Corrupt(format!(
            "volume object {} has no extent tree",
            m.key
        )))
    })
}

fn info_of(name: &str, m: &VersionManifest) -> Result<VolumeInfo, VolumeError> {
    let num = |k: &str| -> Result<u32, VolumeError> {
        m.user_metadata
            .get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                VolumeError::Client(ClientError::Corrupt(format!(
                    "volume {name} lacks a valid {k}"
                )))
            })
    };
    Ok(VolumeInfo {
        name: name.to_string(),
        size: m.size,
        block_size: num(META_BLOCK_SIZE)?,
        extent_size: num(META_EXTENT_SIZE)?,
        committed_ms: m.mtime_ms,
    })
}

fn device_error(e: VolumeError) -> BlockError {
    match e {
        VolumeError::NotFound(n) => BlockError::NotFound(n),
        VolumeError::Device(d) => d,
        e => BlockError::Io(e.to_string()),
    }
}

/// One metric: its name, its help, and where a volume's value is.
type Series<T> = (&'static str, &'static str, fn(&VolumeStats) -> &T);

impl MetricsSource for Volumes {
    fn render(&self, out: &mut String) {
        let all: Vec<(String, Arc<VolumeStats>)> = {
            let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.iter().map(|(n, s)| (n.clone(), s.clone())).collect()
        };
        let counters: [Series<AtomicU64>; 9] = [
            ("cairn_volume_reads_total", "Read requests served.", |s| {
                &s.reads
            }),
            ("cairn_volume_read_bytes_total", "Bytes read.", |s| {
                &s.read_bytes
            }),
            ("cairn_volume_writes_total", "Write requests.", |s| {
                &s.writes
            }),
            ("cairn_volume_write_bytes_total", "Bytes written.", |s| {
                &s.write_bytes
            }),
            ("cairn_volume_flushes_total", "Flush requests.", |s| {
                &s.flushes
            }),
            (
                "cairn_volume_discards_total",
                "Trim and write-zeroes requests.",
                |s| &s.discards,
            ),
            ("cairn_volume_commits_total", "Versions committed.", |s| {
                &s.commits
            }),
            (
                "cairn_volume_commit_errors_total",
                "Commits that failed; their writes stayed buffered.",
                |s| &s.commit_errors,
            ),
            (
                "cairn_volume_commits_overlapped_total",
                "Commits started on the tree of a commit still being stored.",
                |s| &s.commits_overlapped,
            ),
        ];
        for (name, help, get) in counters {
            metrics::header(out, name, "counter", help);
            for (vol, s) in &all {
                let l = metrics::labels(&[("volume", vol)]);
                metrics::sample(out, name, &l, get(s).load(Ordering::Relaxed));
            }
        }
        let gauges: [Series<AtomicU64>; 2] = [
            (
                "cairn_volume_size_bytes",
                "Logical size of the volume.",
                |s| &s.size,
            ),
            (
                "cairn_volume_dirty_bytes",
                "Written bytes buffered and not yet committed.",
                |s| &s.dirty_bytes,
            ),
        ];
        for (name, help, get) in gauges {
            metrics::header(out, name, "gauge", help);
            for (vol, s) in &all {
                let l = metrics::labels(&[("volume", vol)]);
                metrics::sample(out, name, &l, get(s).load(Ordering::Relaxed));
            }
        }
        let histograms: [Series<Histogram>; 4] = [
            ("cairn_volume_read_seconds", "Read latency.", |s| {
                &s.read_latency
            }),
            (
                "cairn_volume_write_seconds",
                "Write latency until acknowledged.",
                |s| &s.write_latency,
            ),
            (
                "cairn_volume_flush_seconds",
                "Flush latency until durable.",
                |s| &s.flush_latency,
            ),
            ("cairn_volume_commit_seconds", "Duration of commits.", |s| {
                &s.commit_latency
            }),
        ];
        for (name, help, get) in histograms {
            metrics::header(out, name, "histogram", help);
            for (vol, s) in &all {
                get(s).render(out, name, &metrics::labels(&[("volume", vol)]));
            }
        }
    }
}

#[async_trait]
impl Exports for Volumes {
    async fn open(&self, name: &str) -> Result<Arc<dyn BlockDevice>, BlockError> {
        let v: Arc<dyn BlockDevice> = Volumes::open(self, name).await.map_err(device_error)?;
        Ok(v)
    }

    async fn list(&self) -> Result<Vec<(String, String)>, BlockError> {
        Ok(Volumes::list(self)
            .await
            .map_err(device_error)?
            .into_iter()
            .map(|v| {
                let desc = format!("{} bytes, {}-byte blocks", v.size, v.block_size);
                (v.name, desc)
            })
            .collect())
    }
}
