//! The cluster map of a site: which nodes exist, where they are (address, zone), how much data
//! each should hold (capacity weight), what each serves (roles), and the replication settings.
//!
//! A map carries an epoch. It never changes in place: an admin stages changes
//! ([`StagedChanges`]) and [`ClusterMap::apply`] turns them into the next map, epoch + 1, after
//! checking the result ([`ClusterMap::validate`]). Every node places data with the map of the
//! newest epoch it knows (see the placement module), and [`ClusterMap::diff`] says in words what
//! changed between two maps.
//!
//! What a valid map guarantees:
//! - site, node and zone names are DNS labels (1-63 characters of a-z, 0-9 and '-'), the same
//!   rule node certificates use; node names and addresses are unique; node ids fit in 48 bits;
//! - every node has at least one role; a weight of 0 means drained: the node stays in the map
//!   but no new data is placed on it;
//! - replication factor RF ≥ 1, and at least RF nodes hold the chunk role with a weight above 0;
//! - write quorum 1 ≤ W ≤ RF (default: a majority of RF);
//! - at least one node holds the manifest role with a weight above 0, and at least W of them, so
//!   a manifest write can reach its quorum. Manifests go to min(RF, manifest nodes) replicas
//!   ([`ClusterMap::manifest_replicas`]).
//!
//! Files: `node.rs` (nodes, roles, write quorum), `validate.rs` (the rules), `diff.rs` (what
//! changed between two maps), `error.rs` (`MapError`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::format::Versioned;
pub use crate::version::NodeId;

mod diff;
mod error;
mod node;
mod validate;

pub use diff::{MapChange, MapDiff};
pub use error::MapError;
pub use node::{NodeInfo, Role, Roles, WriteQuorum};

/// The largest node id: ids are 48 bits, as in a `VersionId`.
pub const MAX_NODE_ID: NodeId = (1 << 48) - 1;
/// A map lists at most this many nodes (placement scores every eligible node per key).
pub const MAX_NODES: usize = 4096;
/// The replication factor of a new map.
pub const DEFAULT_REPLICATION_FACTOR: u8 = 3;

/// The nodes of a site and its replication settings, at one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    /// The site's name.
    pub site: String,
    /// Bumped by every applied change; the greater epoch is the current map.
    pub epoch: u64,
    /// The nodes, by id.
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// How many replicas of each chunk (and, up to the manifest nodes, of each manifest).
    pub replication_factor: u8,
    /// How many replicas acknowledge a write.
    pub write_quorum: WriteQuorum,
}

impl Versioned for ClusterMap {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "cluster map";
}

/// Changes to a map, staged by an admin and applied together as the next epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedChanges {
    /// Nodes to add, or to replace whole when their id is in the map already.
    pub upsert: Vec<NodeInfo>,
    /// Ids of nodes to remove.
    pub remove: Vec<NodeId>,
    /// A new replication factor.
    pub set_rf: Option<u8>,
    /// A new write quorum.
    pub set_write_quorum: Option<WriteQuorum>,
}

impl Versioned for StagedChanges {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "staged cluster changes";
}

impl StagedChanges {
    /// True when nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty()
            && self.remove.is_empty()
            && self.set_rf.is_none()
            && self.set_write_quorum.is_none()
    }
}

/// A node id as written in messages: 12 hex digits, as in the node-id file.
pub fn node_id_hex(id: NodeId) -> String {
    format!("{id:012x}")
}

impl ClusterMap {
    /// An empty map at epoch 0, not yet valid: the base the first staged changes apply to.
    pub fn new(site: impl Into<String>) -> ClusterMap {
        ClusterMap {
            site: site.into(),
            epoch: 0,
            nodes: BTreeMap::new(),
            replication_factor: DEFAULT_REPLICATION_FACTOR,
            write_quorum: WriteQuorum::Majority,
        }
    }

    /// The map of a one-node site (replication factor 1) at epoch 1.
    pub fn single_node(site: impl Into<String>, node: NodeInfo) -> Result<ClusterMap, MapError> {
        ClusterMap::new(site).apply(&StagedChanges {
            upsert: vec![node],
            set_rf: Some(1),
            ..StagedChanges::default()
        })
    }

    /// Decodes a map and checks it is valid.
    pub fn decode_checked(bytes: &[u8]) -> Result<ClusterMap, MapError> {
        let map = ClusterMap::decode(bytes)?;
        map.validate()?;
        Ok(map)
    }

    /// How many replicas must acknowledge a write.
    pub fn write_quorum(&self) -> u8 {
        self.write_quorum.resolve(self.replication_factor)
    }

    /// The node with id `id`.
    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.get(&id)
    }

    /// The node named `name`.
    pub fn node_by_name(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.values().find(|n| n.name == name)
    }

    /// Nodes that new data of `role` may be placed on (role held, weight above 0), by id.
    pub fn serving(&self, role: Role) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().filter(move |n| n.serves(role))
    }

    /// The zones named by the map's nodes.
    pub fn zones(&self) -> BTreeSet<&str> {
        self.nodes.values().map(|n| n.zone.as_str()).collect()
    }

    /// How many replicas each manifest gets: the replication factor, or fewer when fewer nodes
    /// serve manifests.
    pub fn manifest_replicas(&self) -> usize {
        usize::from(self.replication_factor).min(self.serving(Role::Manifest).count())
    }

    /// The next map: `changes` applied, epoch + 1, validated. Removals must name nodes in the
    /// map, each node may be staged once, and a change set that changes nothing is refused.
    pub fn apply(&self, changes: &StagedChanges) -> Result<ClusterMap, MapError> {
        let mut staged = BTreeSet::new();
        for id in changes
            .upsert
            .iter()
            .map(|n| n.id)
            .chain(changes.remove.iter().copied())
        {
            if !staged.insert(id) {
                return Err(MapError::StagedTwice {
                    id: node_id_hex(id),
                });
            }
        }
        let mut next = self.clone();
        for id in &changes.remove {
            if next.nodes.remove(id).is_none() {
                return Err(MapError::UnknownNode {
                    id: node_id_hex(*id),
                });
            }
        }
        for node in &changes.upsert {
            next.nodes.insert(node.id, node.clone());
        }
        if let Some(rf) = changes.set_rf {
            next.replication_factor = rf;
        }
        if let Some(w) = changes.set_write_quorum {
            next.write_quorum = w;
        }
        if next == *self {
            return Err(MapError::NoChange);
        }
        next.epoch = self
            .epoch
            .checked_add(1)
            .ok_or(MapError::EpochExhausted { epoch: self.epoch })?;
        next.validate()?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests;
