//! What changed between two maps, for people.

use std::fmt;

use super::{ClusterMap, NodeInfo, WriteQuorum};

impl ClusterMap {
    /// What changed from this map to `newer`.
    pub fn diff(&self, newer: &ClusterMap) -> MapDiff {
        let mut changes = Vec::new();
        if self.site != newer.site {
            changes.push(MapChange::Site {
                from: self.site.clone(),
                to: newer.site.clone(),
            });
        }
        if self.replication_factor != newer.replication_factor {
            changes.push(MapChange::ReplicationFactor {
                from: self.replication_factor,
                to: newer.replication_factor,
            });
        }
        if self.write_quorum() != newer.write_quorum() || self.write_quorum != newer.write_quorum {
            changes.push(MapChange::WriteQuorum {
                from: (self.write_quorum, self.write_quorum()),
                to: (newer.write_quorum, newer.write_quorum()),
            });
        }
        for (id, before) in &self.nodes {
            match newer.nodes.get(id) {
                None => changes.push(MapChange::Removed(before.clone())),
                Some(after) if after != before => changes.push(MapChange::Changed {
                    before: before.clone(),
                    after: after.clone(),
                }),
                Some(_) => {}
            }
        }
        for (id, after) in &newer.nodes {
            if !self.nodes.contains_key(id) {
                changes.push(MapChange::Added(after.clone()));
            }
        }
        MapDiff {
            from_epoch: self.epoch,
            to_epoch: newer.epoch,
            changes,
        }
    }
}

/// One difference between two maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapChange {
    /// The site name changed (maps of two different sites were compared).
    Site {
        /// Old name.
        from: String,
        /// New name.
        to: String,
    },
    /// The replication factor changed.
    ReplicationFactor {
        /// Old factor.
        from: u8,
        /// New factor.
        to: u8,
    },
    /// The write quorum changed (as configured, and the number it resolves to).
    WriteQuorum {
        /// Old setting and value.
        from: (WriteQuorum, u8),
        /// New setting and value.
        to: (WriteQuorum, u8),
    },
    /// A node joined.
    Added(NodeInfo),
    /// A node left.
    Removed(NodeInfo),
    /// A node's entry changed.
    Changed {
        /// As it was.
        before: NodeInfo,
        /// As it is.
        after: NodeInfo,
    },
}

/// The differences between two maps, printable for people (one line per change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapDiff {
    /// The older map's epoch.
    pub from_epoch: u64,
    /// The newer map's epoch.
    pub to_epoch: u64,
    /// Settings first, then removed and changed nodes by id, then added nodes by id.
    pub changes: Vec<MapChange>,
}

impl MapDiff {
    /// True when the maps list the same nodes and settings (epochs aside).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

fn describe_node(n: &NodeInfo) -> String {
    format!(
        "{} at {}, zone {}, weight {}{}, roles {}",
        n.label(),
        n.address,
        n.zone,
        n.weight,
        if n.is_drained() { " (drained)" } else { "" },
        n.roles
    )
}

impl fmt::Display for MapDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "epoch {} -> {}", self.from_epoch, self.to_epoch)?;
        if self.changes.is_empty() {
            return writeln!(f, "  no changes");
        }
        for change in &self.changes {
            match change {
                MapChange::Site { from, to } => writeln!(f, "  ~ site {from} -> {to}")?,
                MapChange::ReplicationFactor { from, to } => {
                    writeln!(f, "  ~ replication factor {from} -> {to}")?
                }
                MapChange::WriteQuorum { from, to } => writeln!(
                    f,
                    "  ~ write quorum {} ({}) -> {} ({})",
                    from.0, from.1, to.0, to.1
                )?,
                MapChange::Added(n) => writeln!(f, "  + node {}", describe_node(n))?,
                MapChange::Removed(n) => writeln!(f, "  - node {}", describe_node(n))?,
                MapChange::Changed { before, after } => {
                    let mut parts = Vec::new();
                    if before.name != after.name {
                        parts.push(format!("name {} -> {}", before.name, after.name));
                    }
                    if before.address != after.address {
                        parts.push(format!("address {} -> {}", before.address, after.address));
                    }
                    if before.zone != after.zone {
                        parts.push(format!("zone {} -> {}", before.zone, after.zone));
                    }
                    if before.weight != after.weight {
                        let note = match (before.is_drained(), after.is_drained()) {
                            (false, true) => " (drained)",
                            (true, false) => " (undrained)",
                            _ => "",
                        };
                        parts.push(format!(
                            "weight {} -> {}{note}",
                            before.weight, after.weight
                        ));
                    }
                    if before.roles != after.roles {
                        parts.push(format!("roles {} -> {}", before.roles, after.roles));
                    }
                    writeln!(f, "  ~ node {}: {}", before.label(), parts.join("; "))?
                }
            }
        }
        Ok(())
    }
}
