//! A [`ManifestBackend`] that keeps every bucket's metadata on the manifest replicas placement
//! gives it.
//!
//! [`ReplicatedManifests`] is what a node (a gateway, or a manifest server itself) keeps
//! metadata in when the site has several nodes. It holds the site's [`ClusterMap`]; the replicas
//! are reached through their manifest service ([`RemoteManifest`]); a replica that is this node
//! is its own [`ManifestStore`], called directly (on the blocking pool), not over the network.
//!
//! # Placement
//!
//! A bucket's record and all its data (versions, the current index, uploads, parts) live on
//! `place_manifest(map, bucket, b"", map.manifest_replicas())`, primary first. Access keys live
//! on `place_manifest(map, "", key_id, n)` (`""` is never a bucket name, so the two never
//! clash). n = [`ClusterMap::manifest_replicas`].
//!
//! # Quorums
//!
//! W = the map's write quorum clamped to n, R = n − W + 1, so every read quorum meets every
//! write quorum. A write goes to all n replicas at once and succeeds once W acknowledged
//! durably (each replica answers after its synced write); it fails, naming each failed replica
//! and why, as soon as fewer than W can. Replicas still outstanding finish in the background,
//! bounded by [`ManifestReplicationConfig::max_background`]. A read asks R replicas (this node
//! first when it is one, then placement order), asks the next replica for each that fails, and
//! fails when fewer than R answer; after a map change it also asks the previous map's replicas
//! (below). A store error every answering replica agrees on (say `NoSuchBucket`) comes back as
//! itself.
//!
//! A GET needs the bucket's record and a version, which live on the same replicas:
//! `read_object` asks each of the R replicas for both in one call
//! ([`ManifestRequest::ReadObject`]) and settles the record as `get_bucket` does and the version
//! as `head`, `get_null_version` or `get_version` do (read repair included): one call per
//! replica asked instead of two. For the newest version each replica also counts its siblings
//! (versions of other sites over the same parent, see `ManifestStore::count_siblings`); the
//! read takes the greatest count among the replicas whose newest version is the winner.
//! `count_siblings` asks R replicas (and the previous-only ones) and takes the greatest.
//!
//! # Convergence (see also `crate::stamped`)
//!
//! - **Versions are immutable** and totally ordered by [`VersionId`]: applying one is
//!   idempotent and replicas converge by union. `head`/`current` take the greatest version id
//!   among the R answers; `get_version` the copy with the greatest stamp.
//! - **Removals leave tombstones** (kept until every live reader of the log has seen the
//!   removal and for the history retention, see `crate::history`): a tombstoned version is
//!   never applied again. Each replica's answer for a key carries the tombstones newer than the
//!   version it returns (at most [`crate::MAX_TOMBSTONES`]); a read never returns a version an
//!   answering replica has tombstoned, and pushes the removal to replicas that still hold it
//!   (then asks them again, up to three rounds).
//! - **Mutable records** (bucket records, access keys, a version's metadata changed in place,
//!   uploads, parts) carry a revision stamp from this backend's hybrid logical clock; a replica
//!   keeps the write with the greater stamp and ignores a stale one; reads take the answer with
//!   the greatest stamp. Deleted buckets, keys and uploads keep their stamp as a tombstone.
//!   Two coordinators with the same clock node id may (practically never) take equal stamps:
//!   give each its own ([`ManifestReplicationConfig::clock_node`]).
//! - **Read repair**: a replica whose answer lacked the winner (or held an older stamp, or a
//!   removed version) is sent it in the background (bounded: when the background budget is
//!   used up the repair is dropped and counted; anti-entropy catches up later).
//!
//! # Checked operations run on the primary
//!
//! The primary is the first replica in placement order that answers. Conditional applies and
//! multipart completion run there as the existing `ApplyIf` / `CompleteUpload` requests;
//! removal with an object-lock check, `create_bucket` (name taken?), `delete_bucket`
//! (empty?), `put_key` (id taken?), `put_part` and `abort_upload` (upload there?) as one
//! checked, stamped write ([`crate::StampCheck`]). Each runs under the primary's write lock;
//! its result is then replicated unconditionally to the other replicas (stamped writes, the
//! primary included, so it gets the stamp too), acknowledged at W counting the primary. A
//! replica (or primary) that lacks the bucket because its creation has not reached it yet gets
//! the bucket record copied from another replica first. In-place updates (`update_bucket`,
//! `update_version`, `update_key`) read the record from R replicas in placement order, bring the
//! primary up to the winner if it lagged, run the caller's closure on a copy, compare-and-swap
//! it (record and stamp) on the primary, retry on conflict (at most
//! [`ManifestReplicationConfig::update_retries`] times) and replicate the stamped result.
//! A checked operation whose replication then fails (fewer than W acknowledged) reports
//! the failure, but the change stays on the primary and spreads by read repair and
//! anti-entropy; retrying it may then meet its own result (`BucketExists`, `KeyExists`).
//! When the primary is unreachable, the next replica decides from what it holds: a replica
//! that missed writes (it was down) may then decide from stale state until read repair or
//! anti-entropy catches it up. A removal with an object-lock check first reads the version from
//! R replicas and refuses if the newest copy is protected, so a primary that lacks the version
//! cannot let a protected one go.
//!
//! # Listings
//!
//! `list_objects`, `list_versions` and `list_uploads` merge the pages of R replicas (and of the
//! previous map's, below), so a replica that missed writes does not make a listing incomplete
//! (garbage collection marks live chunks from these listings). In short (details in
//! `replicated/listing.rs`): entries are compared only up to the smallest last entry of a
//! truncated page (the cut); common prefixes are united; an entry every page holds identically
//! is taken as is; a disputed one (missing from some page, or different) is resolved — an
//! object by a newest-version read of its key (the same read as `head`: greatest version id,
//! never one a replica removed; a delete marker drops the key), a version or an upload by its
//! stamped record on every answering replica (greatest stamp: a removed version's tombstone or
//! a deleted upload drops it) — and the winner is sent to current replicas that lacked it. The
//! page is then cut at max-keys with the store's markers (its last entry); a page left short
//! by dropped entries goes on after the cut (at most 4 rounds, then it is returned short and
//! truncated, marked at the cut). Cost: R (+ previous) listing calls per round, plus, only
//! for disputed entries, one quorum key read per object (16 at once) or one stamped read per
//! answering replica per 256 versions or uploads.
//!
//! A common prefix is listed if any answering page has it: one that only a stale replica
//! still has (every key under it deleted since) may be listed until that replica is repaired.
//!
//! `list_parts` merges R replicas (greatest stamp per part number). `list_buckets` and
//! `list_keys` take the union over every manifest node of the map, greatest stamp per name;
//! they fail when more than n − R nodes cannot be asked.
//!
//! # Map changes
//!
//! [`ReplicatedManifests::set_map`] keeps the replaced map's placement (as `ReplicatedChunks`
//! does for chunks): a bucket's (or access key's) new replicas may hold nothing yet. Until
//! [`ReplicatedManifests::forget_previous_map`] (or the next map change), every read — single
//! records (`get_bucket`, `get_version`, `get_upload`, `get_key`), newest-version reads
//! (`head`, `current`, `get_null_version`), `read_object`, `list_parts` and the three listings
//! above — asks R of the current replicas as before and, at the same time, every replica of the
//! previous map that is not a current one; their answers are merged the same way, and those
//! that fail are left out (they do not count towards R). Read repair goes to current replicas
//! only. The cost is up to n more calls per read, and, in listings, keys written since the
//! change are disputed (the previous replicas lack them) and resolved one key read each.
//! Writes, checked operations, in-place updates and anti-entropy use the current map only.
//!
//! The previous map is forgotten once every manifest node of the current map has caught up
//! under it: an anti-entropy pass that read every peer's bucket records and access keys, filled
//! the buckets newly placed on it from every peer's stamped listing, and read every peer's
//! change log to its end, without an error, and that started at
//! least [`ManifestReplicationConfig::map_settle`] after the node took the map, records the
//! epoch in the node's store ([`ManifestStore::synced_epoch`]);
//! [`ReplicatedManifests::forget_previous_map_when_synced`] asks every node for it and drops the
//! previous map when all of them reached the current epoch. Every write acknowledged before the
//! change is on W replicas of the old placement, so on at least one node of the new map (unless
//! more than n − W of them left at once) whose listing the new replicas have then read. A write
//! through a node that took the new map after the settle time (one cut off from the map's
//! distribution for that long) reaches only the old placement; the next anti-entropy pass
//! copies it, and reads before that may miss it.
//!
//! `changes_since` and `stats` are this node's store when it holds one, else the first manifest
//! node that answers.
//!
//! # Anti-entropy
//!
//! [`ReplicatedManifests::anti_entropy_pass`] (in `replicated/antientropy.rs`) runs on a node
//! with a local store: per peer, it pulls bucket records and access keys (greatest stamp wins), then
//! the peer's change log since a cursor kept in the local store, fetching the versions (and
//! in-place updates) this node lacks and applying removals as tombstones; buckets the log cannot
//! tell it about are filled from the peer's listings.
//! [`ReplicatedManifests::trim_history_pass`] (in `replicated/trim.rs`) trims this node's log
//! up to what every other manifest node's anti-entropy has read.
//!
//! # Not done
//!
//! - nothing moves metadata when placement changes: reads fall back to the previous map's
//!   replicas (above) and anti-entropy fills the new ones; only one previous map is kept (a
//!   second change before the new replicas caught up loses the fallback to the first map's),
//!   and replicas outside the new placement keep their copies;
//! - a listing does not merge the answers of replicas beyond R (plus the previous map's):
//!   entries a write acknowledged at W put on none of the R answering replicas cannot occur,
//!   but a replica that fails its stamped read while a version is disputed is left out of
//!   that decision (the version is then listed if another replica holds it);
//! - uploads and parts are repaired by reads only, not by anti-entropy;
//! - a conditional write or a bucket's emptiness check is decided by the primary alone, from
//!   what it holds;
//! - a key's tombstones travel with reads only up to [`crate::MAX_TOMBSTONES`] per answer
//!   (the newest ones): a version removed behind more than that many newer removals could be
//!   returned by a read until anti-entropy applies the removal.
//!
//! # Threads
//!
//! The [`ManifestBackend`] methods block on the runtime handle given to
//! [`ReplicatedManifests::new`]: call them from a blocking thread, never from async code.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_core::cluster::{ClusterMap, NodeId, Role};
use cairn_core::manifest::{AccessKey, Bucket, Change, Part, Upload, VersionManifest};
use cairn_core::placement::{manifest_key, Placer};
use cairn_core::{ErrorKind, Hlc, SiteId, VersionId};
use cairn_net::{Client, RpcError};
use parking_lot::RwLock;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::error::Refusal;
use crate::history::{HistoryState, TrimReport};
use crate::rpc::{self, MAX_LIST};
use crate::stamped::{
    KeyState, ObjectState, Record, RecordId, StampCheck, StampedRecord, StampedWrite, VersionState,
    WriteOutcome, TOMBSTONE,
};
use crate::{
    InPlace, ListPage, ListQuery, ManifestBackend, ManifestError, ManifestRequest,
    ManifestResponse, ManifestStats, ManifestStore, ObjectLookup, RemoteManifest, UploadsPage,
    UploadsQuery, VersionsPage, VersionsQuery, WantedVersion, WriteCondition,
};

mod ae_uploads;
mod antientropy;
mod backend;
mod calls;
mod listing;
mod ops;
mod trim;

/// Limits and timers of a [`ReplicatedManifests`].
#[derive(Clone, Debug)]
pub struct ManifestReplicationConfig {
    /// Deadline of each call to a replica (also bounds resolving its host name).
    pub call_timeout: Duration,
    /// Replica writes and read repairs running at once, background ones included: a write
    /// beyond it waits; a read repair beyond it is dropped (and counted).
    pub max_background: usize,
    /// Compare-and-swap attempts of an in-place update before it gives up with the conflict.
    pub update_retries: usize,
    /// Pages of a peer's change log one anti-entropy pass reads (each ≤ 1000 changes).
    pub anti_entropy_pages: usize,
    /// Records (bucket records, keys, change-log entries) anti-entropy reads from peers per
    /// second (0 = no limit).
    pub anti_entropy_records_per_sec: u64,
    /// The node id in this backend's revision stamps: this node's id by default (0 on a node
    /// without a local store). Coordinators should not share one.
    pub clock_node: Option<NodeId>,
    /// The site id in this backend's revision stamps (see [`cairn_core::SiteId`]).
    pub clock_site: SiteId,
    /// How long after this node takes a new map an anti-entropy pass must start to count as
    /// caught up under it: nodes that take the map later write to the old placement until
    /// they do (the map reaches every node within a few seconds of being applied).
    pub map_settle: Duration,
}

impl Default for ManifestReplicationConfig {
    fn default() -> Self {
        ManifestReplicationConfig {
            call_timeout: Duration::from_secs(10),
            max_background: 256,
            update_retries: 5,
            anti_entropy_pages: 16,
            anti_entropy_records_per_sec: 0,
            clock_node: None,
            clock_site: 0,
            map_settle: Duration::from_secs(15),
        }
    }
}

/// Running totals of a [`ReplicatedManifests`], for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ManifestReplicationCounters {
    /// Records sent to replicas whose answer lacked the winner (read repair).
    pub read_repairs: u64,
    /// Read repairs dropped because the background budget was used up.
    pub repairs_dropped: u64,
    /// Replica writes that failed, background ones included.
    pub replica_write_failures: u64,
    /// Checked operations that moved on to the next replica because the primary was
    /// unreachable.
    pub primary_failovers: u64,
    /// Anti-entropy passes run.
    pub ae_passes: u64,
    /// Change-log entries anti-entropy read.
    pub ae_changes_read: u64,
    /// Versions (or in-place updates of them) anti-entropy applied.
    pub ae_versions_fetched: u64,
    /// Removals anti-entropy applied as tombstones.
    pub ae_removals_applied: u64,
    /// Bucket records and access keys anti-entropy updated.
    pub ae_records_updated: u64,
    /// Errors anti-entropy met.
    pub ae_errors: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) read_repairs: AtomicU64,
    pub(crate) repairs_dropped: AtomicU64,
    pub(crate) replica_write_failures: AtomicU64,
    pub(crate) primary_failovers: AtomicU64,
    pub(crate) ae_passes: AtomicU64,
    pub(crate) ae_changes_read: AtomicU64,
    pub(crate) ae_versions_fetched: AtomicU64,
    pub(crate) ae_removals_applied: AtomicU64,
    pub(crate) ae_records_updated: AtomicU64,
    pub(crate) ae_errors: AtomicU64,
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// What one anti-entropy pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AntiEntropyReport {
    /// Peers visited.
    pub peers: u64,
    /// Change-log entries read.
    pub changes_read: u64,
    /// Versions (or in-place updates) fetched and applied.
    pub versions_fetched: u64,
    /// Removals applied as tombstones.
    pub removals_applied: u64,
    /// Bucket records and access keys updated.
    pub records_updated: u64,
    /// Errors met (the pass goes on with the next peer).
    pub errors: u64,
    /// The last error, with the peer it came from.
    pub last_error: Option<String>,
    /// The pass caught up with every peer under the current map (see "Map changes" in the
    /// module docs), and the store now says so.
    pub synced: bool,
    /// Buckets filled from a peer's listing (newly placed here, or history missed).
    pub buckets_filled: u64,
    /// Peers whose log had been trimmed past this node's cursor (it was away longer than the
    /// history retention): filled from listings instead.
    pub history_gaps: u64,
}

/// How a replica is reached.
pub(crate) type Reach = cairn_net::Reach<Arc<ManifestStore>, RemoteManifest>;

/// One manifest node of the map, as this backend reaches it.
pub(crate) type Node = cairn_net::MapNode<Arc<ManifestStore>, RemoteManifest>;

/// What does not change with the map.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) config: ManifestReplicationConfig,
    pub(crate) local: Option<(NodeId, Arc<ManifestStore>)>,
    pub(crate) background: Arc<Semaphore>,
    pub(crate) counters: Counters,
    pub(crate) hlc: Hlc,
    /// Bounds how fast anti-entropy reads records from peers.
    pub(crate) anti_entropy_limiter: cairn_net::RateLimiter,
    /// Nodes whose disks are near full, until when (renewed by each report).
    pub(crate) full: parking_lot::Mutex<HashMap<NodeId, Instant>>,
}

/// How long a node reported near full counts as full (its disk worker reports it every few
/// seconds while it is).
const FULL_FOR: Duration = Duration::from_secs(30);

/// One map's placement and nodes.
pub(crate) struct State {
    pub(crate) map: ClusterMap,
    placer: Placer,
    pub(crate) n: usize,
    pub(crate) w: usize,
    pub(crate) r: usize,
    /// Every manifest node of the map (drained ones included), by id.
    pub(crate) manifest_nodes: Vec<Arc<Node>>,
    /// The manifest nodes of the map and of the previous map, by id.
    nodes: HashMap<NodeId, Arc<Node>>,
    /// The previous map's placement and n (the map before the last [`ReplicatedManifests::set_map`],
    /// until [`ReplicatedManifests::forget_previous_map`]): reads also ask its replicas.
    previous: Option<(Placer, usize)>,
    /// The previous map's epoch.
    previous_epoch: Option<u64>,
    /// When this node took `map`.
    pub(crate) taken: Instant,
}

/// The replicas a read asks: `order[..current]` are the current map's replicas in read order
/// (this node first, then placement order), `order[current..]` the previous map's replicas
/// that are not among them (placement order).
pub(crate) struct ReadSet {
    pub(crate) order: Vec<Arc<Node>>,
    pub(crate) current: usize,
}

impl ReadSet {
    /// A read set of the current replicas only.
    pub(crate) fn current_only(replicas: &[Arc<Node>]) -> ReadSet {
        ReadSet {
            order: read_order(replicas),
            current: replicas.len(),
        }
    }
}

impl State {
    /// The replicas of a placement key, primary first.
    fn place(&self, bucket: &str, key: &[u8]) -> Result<Vec<Arc<Node>>, ManifestError> {
        let out: Vec<Arc<Node>> = self
            .placer
            .place(&manifest_key(bucket, key), self.n)
            .into_iter()
            .filter_map(|id| self.nodes.get(&id).cloned())
            .collect();
        if out.is_empty() {
            return Err(Refusal::Transport(RpcError::Io(format!(
                "the cluster map (epoch {}) has no manifest node",
                self.map.epoch
            )))
            .into());
        }
        Ok(out)
    }

    /// A bucket's replicas, primary first.
    pub(crate) fn bucket_replicas(&self, bucket: &str) -> Result<Vec<Arc<Node>>, ManifestError> {
        self.place(bucket, b"")
    }

    /// An access key's replicas, primary first.
    pub(crate) fn key_replicas(&self, id: &str) -> Result<Vec<Arc<Node>>, ManifestError> {
        self.place("", id.as_bytes())
    }

    /// The replicas of a placement key under the previous map, primary first (none when there
    /// is no previous map).
    fn place_previous(&self, bucket: &str, key: &[u8]) -> Vec<Arc<Node>> {
        match &self.previous {
            Some((placer, n)) => placer
                .place(&manifest_key(bucket, key), *n)
                .into_iter()
                .filter_map(|id| self.nodes.get(&id).cloned())
                .collect(),
            None => Vec::new(),
        }
    }

    /// Whether node `node` held `bucket` under the map of `epoch`: known for the current map
    /// and the previous one only.
    pub(crate) fn held_bucket_under(&self, bucket: &str, node: NodeId, epoch: u64) -> Option<bool> {
        if epoch == self.map.epoch {
            return Some(
                self.bucket_replicas(bucket)
                    .is_ok_and(|v| v.iter().any(|n| n.id == node)),
            );
        }
        (Some(epoch) == self.previous_epoch).then(|| {
            self.place_previous(bucket, b"")
                .iter()
                .any(|n| n.id == node)
        })
    }

    /// What a read of a placement key asks: the current replicas, then the previous map's
    /// replicas not among them.
    fn read_set(&self, bucket: &str, key: &[u8]) -> Result<ReadSet, ManifestError> {
        let current = self.place(bucket, key)?;
        let mut set = ReadSet::current_only(&current);
        for node in self.place_previous(bucket, key) {
            if !set.order.iter().any(|n| n.id == node.id) {
                set.order.push(node);
            }
        }
        Ok(set)
    }

    /// What a read of a bucket's data asks (see [`ReadSet`]).
    pub(crate) fn bucket_read_set(&self, bucket: &str) -> Result<ReadSet, ManifestError> {
        self.read_set(bucket, b"")
    }

    /// What a read of an access key asks (see [`ReadSet`]).
    pub(crate) fn key_read_set(&self, id: &str) -> Result<ReadSet, ManifestError> {
        self.read_set("", id.as_bytes())
    }
}

/// Replicas in read order: this node first, then placement order.
fn read_order(replicas: &[Arc<Node>]) -> Vec<Arc<Node>> {
    let mut out = replicas.to_vec();
    if let Some(pos) = out.iter().position(|n| matches!(n.reach, Reach::Local(_))) {
        let local = out.remove(pos);
        out.insert(0, local);
    }
    out
}

/// Whether an error is a failed call (the replica could not be asked) rather than an answer.
pub(crate) fn is_transport(e: &ManifestError) -> bool {
    matches!(e.refusal(), Some(Refusal::Transport(_)))
}

/// A response of the wrong kind.
fn unexpected(what: &str, resp: &ManifestResponse) -> ManifestError {
    Refusal::Transport(RpcError::Protocol(format!(
        "unexpected response to {what}: {resp:?}"
    )))
    .into()
}

/// The failure of an operation that needed `needed` replicas and got `got`: a store error the
/// answering replicas agree on comes back as itself, anything else as one error naming every
/// replica and its failure.
fn replicas_error(
    what: &str,
    needed: usize,
    got: usize,
    mut failures: Vec<(String, ManifestError)>,
) -> ManifestError {
    // Answers of the store itself (not a failed call, nor a remote database failure).
    let answered: Vec<usize> = (0..failures.len())
        .filter(|&i| {
            !matches!(
                failures[i].1.refusal(),
                Some(Refusal::Transport(_) | Refusal::Remote { .. })
            ) && !matches!(
                failures[i].1,
                ManifestError::Db(_) | ManifestError::Format(_)
            )
        })
        .collect();
    if let Some(&first) = answered.first() {
        let kind = failures[first].1.kind();
        if answered.iter().all(|&i| failures[i].1.kind() == kind) {
            return failures.swap_remove(first).1;
        }
    }
    let kinds: Vec<ErrorKind> = failures.iter().map(|(_, e)| e.kind()).collect();
    let kind = match kinds.split_first() {
        Some((first, rest)) if rest.iter().all(|k| k == first) => *first,
        _ => ErrorKind::Io,
    };
    let details: Vec<String> = failures
        .iter()
        .map(|(label, e)| format!("{label}: {e}"))
        .collect();
    Refusal::Remote {
        kind,
        message: format!(
            "{what}: {got} of the {needed} replicas needed succeeded; {}",
            details.join("; ")
        ),
    }
    .into()
}

/// The unconditional write that brings a replica to `winner`.
pub(crate) fn repair_write(winner: &StampedRecord) -> StampedWrite {
    StampedWrite {
        id: winner.id.clone(),
        record: winner.record.clone(),
        stamp: winner.stamp,
        check: StampCheck::None,
    }
}

/// The bucket a record belongs to (none for buckets and keys).
fn bucket_of(id: &RecordId) -> Option<&str> {
    match id {
        RecordId::Version { bucket, .. }
        | RecordId::Upload { bucket, .. }
        | RecordId::Part { bucket, .. } => Some(bucket),
        RecordId::Bucket(_) | RecordId::Key(_) => None,
    }
}

fn version_id(bucket: &str, key: &str, version: VersionId) -> RecordId {
    RecordId::Version {
        bucket: bucket.to_string(),
        key: key.to_string(),
        version,
    }
}

/// Metadata replicated over the manifest nodes of a site's cluster map (see the module docs).
pub struct ReplicatedManifests {
    pub(crate) handle: Handle,
    pub(crate) shared: Arc<Shared>,
    state: RwLock<Arc<State>>,
}

impl ReplicatedManifests {
    /// A backend placing metadata with `map`, calling other nodes through `client` on the
    /// runtime of `handle`. `local` is this node's id and store when it is a manifest node
    /// (its replicas are read and written there, without a call).
    pub fn new(
        map: ClusterMap,
        local: Option<(NodeId, Arc<ManifestStore>)>,
        client: Client,
        handle: Handle,
    ) -> Self {
        Self::with_config(
            map,
            local,
            client,
            handle,
            ManifestReplicationConfig::default(),
        )
    }

    /// [`ReplicatedManifests::new`] with other limits and timers.
    pub fn with_config(
        map: ClusterMap,
        local: Option<(NodeId, Arc<ManifestStore>)>,
        client: Client,
        handle: Handle,
        config: ManifestReplicationConfig,
    ) -> Self {
        let clock_node = config
            .clock_node
            .or(local.as_ref().map(|(id, _)| *id))
            .unwrap_or(0);
        let clock_site = config.clock_site;
        let shared = Arc::new(Shared {
            client,
            background: Arc::new(Semaphore::new(config.max_background.max(1))),
            anti_entropy_limiter: cairn_net::RateLimiter::new(config.anti_entropy_records_per_sec),
            config,
            local,
            counters: Counters::default(),
            hlc: Hlc::new(clock_site, clock_node),
            full: parking_lot::Mutex::default(),
        });
        let state = build_state(&shared, map, None, Instant::now());
        ReplicatedManifests {
            handle,
            shared,
            state: RwLock::new(Arc::new(state)),
        }
    }

    /// Notes that `node`'s disk is near full (it reported so, or this is that node): writes
    /// that add records are refused while fewer than a write quorum of their replicas have
    /// space, so metadata never fills a disk to the end.
    pub fn set_node_full(&self, node: NodeId) {
        self.shared
            .full
            .lock()
            .insert(node, Instant::now() + FULL_FOR);
    }

    /// The nodes counted as near full now.
    pub fn full_nodes(&self) -> Vec<NodeId> {
        let now = Instant::now();
        let mut full = self.shared.full.lock();
        full.retain(|_, until| *until > now);
        full.keys().copied().collect()
    }

    /// Takes `map` as the current map if its epoch is newer than the current one's (returns
    /// whether it did). Operations already running finish with the map they started with.
    pub fn set_map(&self, map: ClusterMap) -> bool {
        let mut state = self.state.write();
        if map.epoch <= state.map.epoch {
            return false;
        }
        let next = build_state(&self.shared, map, Some(&state), Instant::now());
        *state = Arc::new(next);
        true
    }

    /// Stops asking the previous map's replicas (see "Map changes" in the module docs): call
    /// it once every replica placed by the current map has caught up (an anti-entropy pass on
    /// each of them after the change). Returns whether there was a previous map.
    pub fn forget_previous_map(&self) -> bool {
        self.drop_previous(None)
    }

    /// Drops the previous map if there is one (and the current map is still `epoch`, if given).
    fn drop_previous(&self, epoch: Option<u64>) -> bool {
        let mut state = self.state.write();
        if state.previous.is_none() || epoch.is_some_and(|e| e != state.map.epoch) {
            return false;
        }
        let next = build_state(&self.shared, state.map.clone(), None, state.taken);
        *state = Arc::new(next);
        true
    }

    /// Whether reads still ask the previous map's replicas.
    pub fn has_previous_map(&self) -> bool {
        self.state().previous.is_some()
    }

    /// Forgets the previous map once every manifest node of the current map says it caught up
    /// under it (see "Map changes" in the module docs). Returns whether it forgot it now:
    /// false (and no call) when there is no previous map or when a node has not caught up; the
    /// call's error when a node cannot be asked (the map is kept). Run it from async code on the
    /// backend's runtime, periodically.
    pub async fn forget_previous_map_when_synced(&self) -> Result<bool, ManifestError> {
        let state = self.state();
        if state.previous.is_none() {
            return Ok(false);
        }
        let epoch = state.map.epoch;
        for node in &state.manifest_nodes {
            let synced = match &node.reach {
                Reach::Local(store) => {
                    let store = store.clone();
                    tokio::task::spawn_blocking(move || store.synced_epoch())
                        .await
                        .map_err(|e| ManifestError::Invalid(format!("store task failed: {e}")))??
                }
                _ => match self.shared.call(node, ManifestRequest::SyncedEpoch).await? {
                    ManifestResponse::SyncedEpoch(e) => e,
                    other => return Err(unexpected("a synced-epoch read", &other)),
                },
            };
            if synced < epoch {
                return Ok(false);
            }
        }
        let forgot = self.drop_previous(Some(epoch));
        if forgot {
            tracing::info!(
                epoch,
                "every manifest node caught up under the current map: reads stop asking the previous one"
            );
        }
        Ok(forgot)
    }

    /// The replica nodes of `bucket` under the previous map (the one before the last
    /// [`set_map`](ReplicatedManifests::set_map)), primary first; empty when there is none.
    pub fn previous_bucket_replicas(&self, bucket: &str) -> Vec<NodeId> {
        self.state()
            .place_previous(bucket, b"")
            .iter()
            .map(|n| n.id)
            .collect()
    }

    /// The current map.
    pub fn map(&self) -> ClusterMap {
        self.state().map.clone()
    }

    /// The replica nodes of `bucket` under the current map, primary first.
    pub fn bucket_replicas(&self, bucket: &str) -> Vec<NodeId> {
        self.state()
            .bucket_replicas(bucket)
            .map(|v| v.iter().map(|n| n.id).collect())
            .unwrap_or_default()
    }

    /// The replica nodes of access key `id` under the current map, primary first.
    pub fn key_replicas(&self, id: &str) -> Vec<NodeId> {
        self.state()
            .key_replicas(id)
            .map(|v| v.iter().map(|n| n.id).collect())
            .unwrap_or_default()
    }

    /// (n, W, R) under the current map.
    pub fn quorums(&self) -> (usize, usize, usize) {
        let s = self.state();
        (s.n, s.w, s.r)
    }

    /// The running totals.
    pub fn counters(&self) -> ManifestReplicationCounters {
        let c = &self.shared.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ManifestReplicationCounters {
            read_repairs: l(&c.read_repairs),
            repairs_dropped: l(&c.repairs_dropped),
            replica_write_failures: l(&c.replica_write_failures),
            primary_failovers: l(&c.primary_failovers),
            ae_passes: l(&c.ae_passes),
            ae_changes_read: l(&c.ae_changes_read),
            ae_versions_fetched: l(&c.ae_versions_fetched),
            ae_removals_applied: l(&c.ae_removals_applied),
            ae_records_updated: l(&c.ae_records_updated),
            ae_errors: l(&c.ae_errors),
        }
    }

    /// Appends the counters in Prometheus text format (`cairn_manifest_*`).
    pub fn render_prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let c = self.counters();
        let rows: [(&str, &str, u64); 10] = [
            (
                "read_repairs_total",
                "Records sent to stale replicas by reads.",
                c.read_repairs,
            ),
            (
                "read_repairs_dropped_total",
                "Read repairs dropped (background budget full).",
                c.repairs_dropped,
            ),
            (
                "replica_write_failures_total",
                "Replica writes that failed.",
                c.replica_write_failures,
            ),
            (
                "primary_failovers_total",
                "Checked operations that skipped an unreachable primary.",
                c.primary_failovers,
            ),
            (
                "anti_entropy_passes_total",
                "Anti-entropy passes run.",
                c.ae_passes,
            ),
            (
                "anti_entropy_changes_read_total",
                "Peer change-log entries read by anti-entropy.",
                c.ae_changes_read,
            ),
            (
                "anti_entropy_versions_fetched_total",
                "Versions applied by anti-entropy.",
                c.ae_versions_fetched,
            ),
            (
                "anti_entropy_removals_applied_total",
                "Removals applied by anti-entropy.",
                c.ae_removals_applied,
            ),
            (
                "anti_entropy_records_updated_total",
                "Bucket records and keys updated by anti-entropy.",
                c.ae_records_updated,
            ),
            (
                "anti_entropy_errors_total",
                "Errors met by anti-entropy.",
                c.ae_errors,
            ),
        ];
        for (name, help, value) in rows {
            let _ = writeln!(out, "# HELP cairn_manifest_{name} {help}");
            let _ = writeln!(out, "# TYPE cairn_manifest_{name} counter");
            let _ = writeln!(out, "cairn_manifest_{name} {value}");
        }
    }

    pub(crate) fn state(&self) -> Arc<State> {
        self.state.read().clone()
    }

    pub(super) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }

    /// A stamp for a write that replaces a record stamped `seen`.
    pub(super) fn stamp_after(&self, seen: VersionId) -> VersionId {
        if seen == TOMBSTONE || seen == VersionId::MIN {
            self.shared.hlc.tick()
        } else {
            self.shared.hlc.tick_after(Some(seen))
        }
    }
}

/// The placement and nodes of `map`; with `previous`, the map it replaces, whose placement
/// and nodes reads keep asking (see "Map changes" in the module docs).
fn build_state(
    shared: &Shared,
    map: ClusterMap,
    previous: Option<&State>,
    taken: Instant,
) -> State {
    let mut nodes: HashMap<NodeId, Arc<Node>> = map
        .nodes
        .values()
        .filter(|info| info.roles.has(Role::Manifest))
        .map(|info| {
            let local = shared.local.as_ref().map(|(id, store)| (*id, store));
            let node = Node::new(info, local, |addr, name| shared.remote(addr, name));
            (info.id, Arc::new(node))
        })
        .collect();
    let mut manifest_nodes: Vec<Arc<Node>> = nodes.values().cloned().collect();
    manifest_nodes.sort_by_key(|n| n.id);
    let previous_epoch = previous.map(|prev| prev.map.epoch);
    let previous = previous.map(|prev| {
        // The previous map's own nodes only (not those of the map before it).
        for node in &prev.manifest_nodes {
            nodes.entry(node.id).or_insert_with(|| node.clone());
        }
        (prev.placer.clone(), prev.n)
    });
    let n = map.manifest_replicas();
    let w = usize::from(map.write_quorum()).clamp(1, n.max(1));
    State {
        placer: Placer::new(&map, Role::Manifest),
        n,
        w,
        r: (n + 1).saturating_sub(w).max(1),
        map,
        manifest_nodes,
        nodes,
        previous,
        previous_epoch,
        taken,
    }
}

fn as_bucket(r: Record) -> Result<Bucket, ManifestError> {
    match r {
        Record::Bucket(b) => Ok(b),
        other => Err(ManifestError::Invalid(format!(
            "expected a bucket, got {other:?}"
        ))),
    }
}

fn as_version(r: Record) -> Result<VersionManifest, ManifestError> {
    match r {
        Record::Version(v) => Ok(v),
        other => Err(ManifestError::Invalid(format!(
            "expected a version, got {other:?}"
        ))),
    }
}

fn as_key(r: Record) -> Result<AccessKey, ManifestError> {
    match r {
        Record::Key(k) => Ok(k),
        other => Err(ManifestError::Invalid(format!(
            "expected a key, got {other:?}"
        ))),
    }
}
