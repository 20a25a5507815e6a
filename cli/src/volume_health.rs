//! Volume health and used bytes as the admin API and `cairn volume info|list` show them.

use cairn_block::volume::{VolumeInfo, VolumeUsage};
use cairn_block::{VolumeError, Volumes};
use serde::{Deserialize, Serialize};

use crate::ops::human;
use crate::volume_cmd::VolumeJson;

/// A volume's health and space use (`GET /v1/volumes/NAME/usage`, and in volume answers).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UsageJson {
    /// `healthy`, `rebuilding`, `degraded` or `offline`.
    pub state: String,
    /// One line: state, replica counts and why.
    pub summary: String,
    /// Why it is not healthy (empty when it is).
    pub reason: String,
    /// Distinct chunks (data and tree nodes) the head and the snapshots reach.
    pub chunks: u64,
    /// Replicas each chunk should have.
    pub replicas_wanted: u8,
    /// Fewest replicas a chunk has.
    pub replicas_min: u8,
    /// Chunks with fewer replicas than wanted.
    pub chunks_short: u64,
    /// Chunks no replica could return.
    pub chunks_unreadable: u64,
    /// Chunk nodes that could not be asked.
    pub nodes_down: Vec<String>,
    /// Bytes of the distinct chunks the head reaches (before compression and replication).
    pub used_bytes: u64,
    /// Distinct data chunks the head reaches.
    pub used_chunks: u64,
    /// Bytes the snapshots reach beyond the head.
    pub snapshot_bytes: u64,
    /// Snapshots counted.
    pub snapshots: u64,
    /// When it was computed, unix ms.
    pub computed_ms: u64,
}

impl From<VolumeUsage> for UsageJson {
    fn from(u: VolumeUsage) -> Self {
        UsageJson {
            state: u.state.name().to_string(),
            summary: u.summary(),
            reason: u.reason,
            chunks: u.chunks,
            replicas_wanted: u.replicas_wanted,
            replicas_min: u.replicas_min,
            chunks_short: u.chunks_short,
            chunks_unreadable: u.chunks_unreadable,
            nodes_down: u.nodes_down,
            used_bytes: u.used_bytes,
            used_chunks: u.used_chunks,
            snapshot_bytes: u.snapshot_bytes,
            snapshots: u.snapshots,
            computed_ms: u.computed_ms,
        }
    }
}

/// `info` with its health and used bytes computed now (a walk of its trees and a census of
/// their chunks' replicas).
pub async fn with_usage(vols: &Volumes, info: VolumeInfo) -> Result<VolumeJson, VolumeError> {
    let usage = vols.usage(&info.name).await?;
    let mut v = VolumeJson::from(info);
    v.usage = Some(usage.into());
    Ok(v)
}

/// Every volume with its health and used bytes (volumes deleted meanwhile are left out).
pub async fn list_with_usage(vols: &Volumes) -> Result<Vec<VolumeJson>, VolumeError> {
    let mut out = Vec::new();
    for info in vols.list().await? {
        match with_usage(vols, info).await {
            Ok(v) => out.push(v),
            Err(VolumeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The lines `cairn volume info` prints about health and space.
pub fn print_usage(u: &UsageJson) {
    println!("Health:      {}", u.summary);
    if !u.nodes_down.is_empty() {
        println!("Nodes down:  {}", u.nodes_down.join(", "));
    }
    println!(
        "Used:        {} ({} bytes in {} chunks; before compression and replication)",
        human(u.used_bytes),
        u.used_bytes,
        u.used_chunks
    );
    println!(
        "Snapshots add: {} ({} bytes, {} snapshots)",
        human(u.snapshot_bytes),
        u.snapshot_bytes,
        u.snapshots
    );
}
