//! What a node reports of itself to `cairn cluster status` (through its peers' `Status` calls
//! or its own admin endpoint).

use cairn_chunkserver::ChunkStore;
use cairn_core::cluster::node_id_hex;

use super::cluster::{ClusterState, NodeStatus};
use crate::workers::Workers;

/// This node's status now.
pub fn node_status(
    name: &str,
    roles: &str,
    cluster: &ClusterState,
    workers: &Workers,
    store: Option<&ChunkStore>,
) -> NodeStatus {
    let stats = store.and_then(|s| s.stats().ok());
    NodeStatus {
        name: name.to_string(),
        id: node_id_hex(cluster.me()),
        epoch: cluster.map().epoch,
        roles: roles.to_string(),
        workers: workers.statuses(),
        chunks: stats.as_ref().map(|s| s.chunks),
        physical_bytes: stats.as_ref().map(|s| s.stored_bytes),
        disk: None,
    }
}
