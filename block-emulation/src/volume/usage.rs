//! What a volume costs and how safe it is: the unique bytes its head reaches (and what its
//! snapshots add), and its health from a census of the replicas of every chunk it reaches.
//!
//! One walk serves both. It reads tree nodes only (no data), visiting each distinct node once:
//! content addressing means a subtree met again (shared by the head and a snapshot, or by two
//! snapshots) is the same bytes, already counted. The walk keeps one entry per distinct chunk,
//! so its memory is bounded by the volume's written extents (about 40 bytes per 64 KiB
//! extent), not by its size. The census then asks each chunk's placed replicas whether they
//! hold it, in batches (`Client::replica_census`, the same placement repair restores), so it
//! costs one call per node per batch, never a read of data. Nothing here takes a lock the
//! volume's I/O path uses: the head and snapshots are read from the store as committed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use cairn_client::{now_ms, ClientError, ReplicaCount};
use cairn_core::extent::{Child, NodeStore, Target, TreeNode, MAX_DEPTH};
use cairn_core::metrics::{self, MetricsSource};
use cairn_core::{ChunkId, ChunkIdMap, ChunkIdSet};

use super::{tree_root, VolumeError, Volumes};
use cairn_client::nodecache::NodeCache;

/// Ids per census call (each becomes at most one call per replica node and batch limit).
const CENSUS_BATCH: usize = 4096;
/// Tree node entries the periodic monitor keeps decoded between passes, per generation.
const MONITOR_CACHE_ENTRIES: usize = 1 << 20;

/// A volume's health, worst first in [`HealthState::rank`] order.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Every chunk the volume (head and snapshots) reaches has all its replicas.
    Healthy,
    /// Some chunks lack replicas only on nodes that answer: repair (or rebalance, after a
    /// map change) is copying them there.
    Rebuilding,
    /// Some chunks have fewer replicas than the replication factor because nodes holding
    /// them are down; every chunk is still readable and writes still reach the quorum.
    Degraded,
    /// The volume cannot be read (a chunk or tree node has no readable replica, or its head
    /// cannot be read) or cannot take writes (too few chunk nodes answer for the quorum).
    Offline,
}

impl HealthState {
    /// Every state, for metrics.
    pub const ALL: [HealthState; 4] = [
        HealthState::Healthy,
        HealthState::Rebuilding,
        HealthState::Degraded,
        HealthState::Offline,
    ];

    /// The lowercase name used in JSON and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Rebuilding => "rebuilding",
            HealthState::Degraded => "degraded",
            HealthState::Offline => "offline",
        }
    }
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HealthState::Healthy => "Healthy",
            HealthState::Rebuilding => "Rebuilding",
            HealthState::Degraded => "Degraded",
            HealthState::Offline => "Offline",
        })
    }
}

/// A volume's space use and health at one moment (as the admin API's JSON, too).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeUsage {
    /// The volume.
    pub name: String,
    /// Its health.
    pub state: HealthState,
    /// Why it is not healthy (empty when it is).
    pub reason: String,
    /// Distinct chunks the head and the snapshots reach: data chunks and tree nodes.
    pub chunks: u64,
    /// Replicas placement wants for a chunk (the replication factor; 1 on a single node).
    pub replicas_wanted: u8,
    /// The fewest replicas any of those chunks has.
    pub replicas_min: u8,
    /// Chunks with fewer replicas than wanted.
    pub chunks_short: u64,
    /// Chunks no replica could return.
    pub chunks_unreadable: u64,
    /// Chunk nodes that could not be asked, by name.
    pub nodes_down: Vec<String>,
    /// Bytes of the distinct data chunks the head reaches (each counted once, by the bytes
    /// its references reach), plus its inline bytes: what the volume's current content costs
    /// before compression and replication.
    pub used_bytes: u64,
    /// Distinct data chunks the head reaches.
    pub used_chunks: u64,
    /// What the snapshots reach beyond the head, counted the same way.
    pub snapshot_bytes: u64,
    /// Snapshots included.
    pub snapshots: u64,
    /// When it was computed (unix ms).
    pub computed_ms: u64,
}

impl VolumeUsage {
    /// One line for people: state, replica counts and why.
    pub fn summary(&self) -> String {
        let mut s = self.state.to_string();
        if self.chunks_short > 0 {
            s.push_str(&format!(
                ": replicas {}/{} for {} of {} chunks",
                self.replicas_min, self.replicas_wanted, self.chunks_short, self.chunks
            ));
        } else if self.chunks > 0 {
            s.push_str(&format!(
                ": replicas {}/{} for all {} chunks",
                self.replicas_wanted, self.replicas_wanted, self.chunks
            ));
        }
        if !self.reason.is_empty() {
            s.push_str(&format!(" ({})", self.reason));
        }
        s
    }
}

/// What one tree walk found: each data chunk with the furthest byte a reference reaches,
/// the tree nodes, and inline bytes.
#[derive(Default)]
struct Reached {
    data: ChunkIdMap<u64>,
    nodes: ChunkIdSet,
    inline_bytes: u64,
}

impl Reached {
    fn data_bytes(&self) -> u64 {
        self.data.values().sum::<u64>() + self.inline_bytes
    }
}

/// Walks the tree at `root` depth-first, skipping nodes in `seen` (already walked, by this
/// walk or an earlier one) and recording what it reaches in `into`.
async fn walk<S: NodeStore<Error = ClientError>>(
    nodes: &S,
    root: Child,
    seen: &mut ChunkIdSet,
    into: &mut Reached,
) -> Result<(), ClientError> {
    let mut stack: Vec<(Child, usize)> = vec![(root, 0)];
    while let Some((child, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(cairn_core::extent::TreeError::TooDeep.into());
        }
        into.nodes.insert(child.node);
        if !seen.insert(child.node) {
            continue;
        }
        match nodes.load(child.node, child.len).await? {
            TreeNode::Children(children) => {
                stack.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
            }
            TreeNode::Leaves(leaves) => {
                for leaf in leaves {
                    match leaf.target {
                        Target::Chunk { id, skip } => {
                            let end = u64::from(skip) + leaf.len;
                            let e = into.data.entry(id).or_default();
                            *e = (*e).max(end);
                        }
                        Target::Inline(b) => into.inline_bytes += b.len() as u64,
                        Target::Zeros => {}
                    }
                }
            }
        }
    }
    Ok(())
}

/// Folds census counts into the health fields of `u`.
fn judge(u: &mut VolumeUsage, counts: &[ReplicaCount], write_quorum: u8, nodes_down: Vec<String>) {
    let wanted = counts.iter().map(|c| c.wanted).max().unwrap_or(1);
    u.replicas_wanted = wanted;
    u.replicas_min = counts.iter().map(|c| c.held).min().unwrap_or(wanted);
    u.chunks_short = counts.iter().filter(|c| c.held < c.wanted).count() as u64;
    u.chunks_unreadable = counts.iter().filter(|c| c.held == 0).count() as u64;
    let on_down_nodes = counts
        .iter()
        .filter(|c| c.held < c.wanted && c.unreachable > 0)
        .count();
    // A write needs the quorum among each new chunk's replicas: with more nodes down than
    // the replicas a chunk can spare, some writes fail.
    let spare = usize::from(wanted.saturating_sub(write_quorum));
    let writable = nodes_down.len() <= spare;
    let down = nodes_down.join(", ");
    u.nodes_down = nodes_down;
    (u.state, u.reason) = if u.chunks_unreadable > 0 {
        (
            HealthState::Offline,
            format!(
                "{} chunks have no readable replica{}",
                u.chunks_unreadable,
                if down.is_empty() {
                    String::new()
                } else {
                    format!("; down: {down}")
                }
            ),
        )
    } else if !writable {
        (
            HealthState::Offline,
            format!(
                "writes cannot reach the write quorum ({write_quorum} of {wanted}): down: {down}"
            ),
        )
    } else if on_down_nodes > 0 {
        (HealthState::Degraded, format!("down: {down}"))
    } else if u.chunks_short > 0 {
        (
            HealthState::Rebuilding,
            "repair is copying the missing replicas".to_string(),
        )
    } else if !down.is_empty() {
        // Nothing of this volume is on them, but new writes may be placed there.
        (HealthState::Degraded, format!("down: {down}"))
    } else {
        (HealthState::Healthy, String::new())
    };
}

impl Volumes {
    /// Space use and health of volume `name` (see the module docs). A volume whose head or
    /// tree cannot be read is reported `Offline` with the reason, not as an error; an error
    /// means there is no such volume.
    pub async fn usage(&self, name: &str) -> Result<VolumeUsage, VolumeError> {
        self.usage_via(name, &self.client).await
    }

    async fn usage_via<S: NodeStore<Error = ClientError>>(
        &self,
        name: &str,
        nodes: &S,
    ) -> Result<VolumeUsage, VolumeError> {
        let mut u = VolumeUsage {
            name: name.to_string(),
            state: HealthState::Healthy,
            reason: String::new(),
            chunks: 0,
            replicas_wanted: 1,
            replicas_min: 1,
            chunks_short: 0,
            chunks_unreadable: 0,
            nodes_down: Vec::new(),
            used_bytes: 0,
            used_chunks: 0,
            snapshot_bytes: 0,
            snapshots: 0,
            computed_ms: now_ms(),
        };
        let offline = |mut u: VolumeUsage, why: String| {
            u.state = HealthState::Offline;
            u.reason = why;
            Ok(u)
        };
        let head = match self.head(name).await {
            Ok(h) => h.manifest,
            Err(VolumeError::NotFound(n)) => return Err(VolumeError::NotFound(n)),
            Err(e) => return offline(u, format!("its head cannot be read: {e}")),
        };
        let snaps = match self.list_under(&super::snap_prefix(name)).await {
            Ok(s) => s,
            Err(e) => return offline(u, format!("its snapshots cannot be listed: {e}")),
        };
        let mut seen = ChunkIdSet::default();
        let mut head_reached = Reached::default();
        if let Err(e) = walk(nodes, tree_root(&head)?, &mut seen, &mut head_reached).await {
            return offline(u, format!("its tree cannot be read: {e}"));
        }
        let mut snap_reached = Reached::default();
        for s in &snaps {
            let root = tree_root(s)?;
            if let Err(e) = walk(nodes, root, &mut seen, &mut snap_reached).await {
                return offline(u, format!("snapshot {} cannot be read: {e}", s.key));
            }
        }
        u.used_bytes = head_reached.data_bytes();
        u.used_chunks = head_reached.data.len() as u64;
        u.snapshots = snaps.len() as u64;
        // What snapshots reach beyond the head: their chunks the head does not reach.
        u.snapshot_bytes = snap_reached
            .data
            .iter()
            .filter(|(id, _)| !head_reached.data.contains_key(*id))
            .map(|(_, len)| *len)
            .sum::<u64>()
            + snap_reached.inline_bytes;
        let ids: Vec<ChunkId> = head_reached
            .data
            .keys()
            .chain(head_reached.nodes.iter())
            .chain(snap_reached.data.keys())
            .chain(snap_reached.nodes.iter())
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        u.chunks = ids.len() as u64;
        let mut counts = Vec::with_capacity(ids.len());
        let mut write_quorum = 1;
        let mut down = std::collections::BTreeSet::new();
        for batch in ids.chunks(CENSUS_BATCH) {
            match self.client.replica_census(batch.to_vec()).await {
                Ok(c) => {
                    counts.extend(c.counts);
                    write_quorum = c.write_quorum;
                    down.extend(c.nodes_down);
                }
                Err(e) => return offline(u, format!("no chunk node answers: {e}")),
            }
        }
        judge(&mut u, &counts, write_quorum, down.into_iter().collect());
        Ok(u)
    }
}

/// The usage of every volume, recomputed by [`VolumeMonitor::pass`] (a periodic worker), and
/// its lines in `/metrics`.
pub struct VolumeMonitor {
    volumes: Arc<Volumes>,
    cache: NodeCache,
    last: std::sync::Mutex<BTreeMap<String, VolumeUsage>>,
}

/// What one monitor pass found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorReport {
    /// Volumes looked at.
    pub volumes: u64,
    /// Of them, by state.
    pub by_state: BTreeMap<HealthState, u64>,
    /// The volumes that are not healthy, with their summary.
    pub unhealthy: Vec<String>,
}

impl VolumeMonitor {
    /// A monitor of `volumes`, with nothing computed yet.
    pub fn new(volumes: Arc<Volumes>) -> VolumeMonitor {
        VolumeMonitor {
            volumes,
            cache: NodeCache::new(MONITOR_CACHE_ENTRIES),
            last: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Recomputes every volume's usage (volumes gone since are dropped).
    pub async fn pass(&self) -> Result<MonitorReport, VolumeError> {
        let list = self.volumes.list().await?;
        let nodes = self.cache.over(&self.volumes.client);
        let mut fresh = BTreeMap::new();
        let mut report = MonitorReport::default();
        for v in list {
            match self.volumes.usage_via(&v.name, &nodes).await {
                Ok(u) => {
                    report.volumes += 1;
                    *report.by_state.entry(u.state).or_default() += 1;
                    if u.state != HealthState::Healthy {
                        report
                            .unhealthy
                            .push(format!("{}: {}", u.name, u.summary()));
                    }
                    fresh.insert(v.name, u);
                }
                // Deleted since the listing.
                Err(VolumeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(report)
    }

    /// The usage of each volume as the last pass found it.
    pub fn last(&self) -> BTreeMap<String, VolumeUsage> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One gauge of a volume's usage: its name, its help, and its value.
type UsageGauge = (&'static str, &'static str, fn(&VolumeUsage) -> u64);

impl MetricsSource for VolumeMonitor {
    fn render(&self, out: &mut String) {
        let all = self.last();
        let name = "cairn_volume_health";
        metrics::header(
            out,
            name,
            "gauge",
            "1 for the volume's health state (healthy, rebuilding, degraded, offline) at the last check.",
        );
        for (vol, u) in &all {
            for s in HealthState::ALL {
                let l = metrics::labels(&[("volume", vol), ("state", s.name())]);
                metrics::sample(out, name, &l, u8::from(u.state == s));
            }
        }
        let gauges: [UsageGauge; 7] = [
            (
                "cairn_volume_used_bytes",
                "Bytes of the distinct chunks the volume's head reaches, before compression and replication.",
                |u| u.used_bytes,
            ),
            (
                "cairn_volume_snapshot_bytes",
                "Bytes the volume's snapshots reach beyond its head.",
                |u| u.snapshot_bytes,
            ),
            (
                "cairn_volume_chunks",
                "Distinct chunks (data and tree nodes) the volume and its snapshots reach.",
                |u| u.chunks,
            ),
            (
                "cairn_volume_chunks_short",
                "Of them, chunks with fewer replicas than the replication factor.",
                |u| u.chunks_short,
            ),
            (
                "cairn_volume_chunks_unreadable",
                "Of them, chunks no replica could return.",
                |u| u.chunks_unreadable,
            ),
            (
                "cairn_volume_replicas_min",
                "Fewest replicas any chunk of the volume has.",
                |u| u64::from(u.replicas_min),
            ),
            (
                "cairn_volume_replicas_wanted",
                "Replicas each chunk should have.",
                |u| u64::from(u.replicas_wanted),
            ),
        ];
        for (name, help, get) in gauges {
            metrics::header(out, name, "gauge", help);
            for (vol, u) in &all {
                metrics::sample(out, name, &metrics::labels(&[("volume", vol)]), get(u));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(wanted: u8, held: u8, unreachable: u8) -> ReplicaCount {
        ReplicaCount {
            wanted,
            held,
            unreachable,
        }
    }

    fn judged(counts: &[ReplicaCount], down: &[&str]) -> VolumeUsage {
        let mut u = VolumeUsage {
            name: "v".into(),
            state: HealthState::Healthy,
            reason: String::new(),
            chunks: counts.len() as u64,
            replicas_wanted: 1,
            replicas_min: 1,
            chunks_short: 0,
            chunks_unreadable: 0,
            nodes_down: Vec::new(),
            used_bytes: 0,
            used_chunks: 0,
            snapshot_bytes: 0,
            snapshots: 0,
            computed_ms: 0,
        };
        judge(
            &mut u,
            counts,
            2,
            down.iter().map(|s| s.to_string()).collect(),
        );
        u
    }

    #[test]
    fn states_follow_the_census() {
        let all = judged(&[count(3, 3, 0); 4], &[]);
        assert_eq!((all.state, all.replicas_min), (HealthState::Healthy, 3));

        let one_down = judged(&[count(3, 3, 0), count(3, 2, 1), count(3, 2, 1)], &["n3"]);
        assert_eq!(one_down.state, HealthState::Degraded);
        assert_eq!((one_down.replicas_min, one_down.chunks_short), (2, 2));
        assert!(one_down
            .summary()
            .contains("replicas 2/3 for 2 of 3 chunks"));

        let back = judged(&[count(3, 3, 0), count(3, 2, 0)], &[]);
        assert_eq!(back.state, HealthState::Rebuilding);

        let two_down = judged(&[count(3, 1, 2)], &["n2", "n3"]);
        assert_eq!(two_down.state, HealthState::Offline);
        assert!(
            two_down.reason.contains("write quorum"),
            "{}",
            two_down.reason
        );

        let lost = judged(&[count(3, 3, 0), count(3, 0, 0)], &[]);
        assert_eq!(
            (lost.state, lost.chunks_unreadable),
            (HealthState::Offline, 1)
        );
    }
}
