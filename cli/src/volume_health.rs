//! Volume health and used bytes as the admin API and `cairn volume info|list` show them.

use cairn_block::volume::{VolumeInfo, VolumeUsage};
use cairn_block::{VolumeError, Volumes};
use serde::{Deserialize, Serialize};

use crate::ops::human;
use crate::volume_cmd::VolumeJson;

/// A volume's health and space use (`GET /v1/volumes/NAME/usage`, and in volume answers): the
/// usage's fields (`state` is `healthy`, `rebuilding`, `degraded` or `offline`) and a one-line
/// summary.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UsageJson {
    /// One line: state, replica counts and why.
    pub summary: String,
    #[serde(flatten)]
    pub usage: VolumeUsage,
}

impl From<VolumeUsage> for UsageJson {
    fn from(usage: VolumeUsage) -> Self {
        UsageJson {
            summary: usage.summary(),
            usage,
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
pub fn print_usage(json: &UsageJson) {
    println!("Health:      {}", json.summary);
    let u = &json.usage;
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
