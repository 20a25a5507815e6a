//! The rules every map follows (listed in the module docs of `cluster`).

use std::collections::HashMap;

use super::{node_id_hex, ClusterMap, MapError, NodeId, NodeInfo, Role, MAX_NODES, MAX_NODE_ID};

impl ClusterMap {
    /// Checks every rule a map must follow (see the module docs); the first broken rule is the
    /// error.
    pub fn validate(&self) -> Result<(), MapError> {
        check_label("site", &self.site)?;
        if self.nodes.len() > MAX_NODES {
            return Err(MapError::TooManyNodes {
                count: self.nodes.len(),
                max: MAX_NODES,
            });
        }
        let mut names: HashMap<&str, NodeId> = HashMap::new();
        let mut addresses: HashMap<String, &NodeInfo> = HashMap::new();
        for (&key, node) in &self.nodes {
            if key != node.id {
                return Err(MapError::IdMismatch {
                    key: node_id_hex(key),
                    id: node_id_hex(node.id),
                });
            }
            if node.id > MAX_NODE_ID {
                return Err(MapError::InvalidNodeId { id: node.id });
            }
            check_label("node", &node.name)?;
            check_label("zone", &node.zone)?;
            if node.roles.is_empty() {
                return Err(MapError::NoRoles { node: node.label() });
            }
            if let Some(&other) = names.get(node.name.as_str()) {
                return Err(MapError::DuplicateName {
                    name: node.name.clone(),
                    first: node_id_hex(other),
                    second: node_id_hex(node.id),
                });
            }
            names.insert(&node.name, node.id);
            let address = normalize_address(node)?;
            if let Some(other) = addresses.get(&address) {
                return Err(MapError::DuplicateAddress {
                    address: node.address.clone(),
                    first: other.label(),
                    second: node.label(),
                });
            }
            addresses.insert(address, node);
        }
        let rf = self.replication_factor;
        if rf == 0 {
            return Err(MapError::ReplicationFactorZero);
        }
        let quorum = self.write_quorum();
        if quorum == 0 {
            return Err(MapError::QuorumZero);
        }
        if quorum > rf {
            return Err(MapError::QuorumTooLarge { quorum, rf });
        }
        let chunk_nodes = self.serving(Role::Chunk).count();
        if chunk_nodes < usize::from(rf) {
            return Err(MapError::NotEnoughChunkNodes {
                rf,
                available: chunk_nodes,
            });
        }
        let manifest_nodes = self.serving(Role::Manifest).count();
        if manifest_nodes == 0 {
            return Err(MapError::NoManifestNode);
        }
        if manifest_nodes < usize::from(quorum) {
            return Err(MapError::NotEnoughManifestNodes {
                quorum,
                available: manifest_nodes,
            });
        }
        Ok(())
    }
}

/// True when `name` is a DNS label of a-z, 0-9 and '-' (the rule node certificates use).
fn is_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn check_label(what: &'static str, name: &str) -> Result<(), MapError> {
    if is_label(name) {
        Ok(())
    } else {
        Err(MapError::InvalidName {
            what,
            name: name.to_string(),
        })
    }
}

/// Checks `host:port` and returns the form compared for uniqueness (host lowercased).
fn normalize_address(node: &NodeInfo) -> Result<String, MapError> {
    let bad = |reason| MapError::InvalidAddress {
        node: node.label(),
        address: node.address.clone(),
        reason,
    };
    let a = node.address.as_str();
    if a.is_empty() {
        return Err(bad("it is empty"));
    }
    if a.len() > 255 {
        return Err(bad("it is longer than 255 characters"));
    }
    if a.bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(bad("it contains spaces or control characters"));
    }
    let (host, port) = a.rsplit_once(':').ok_or_else(|| bad("it has no port"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !port.starts_with('+') => {}
        _ => return Err(bad("the port is not a number from 1 to 65535")),
    }
    if host.is_empty() {
        return Err(bad("the host is empty"));
    }
    let inner = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    match inner {
        Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_err() => {
            return Err(bad("the host in brackets is not an IPv6 address"))
        }
        None if host.contains([':', '[', ']']) => {
            return Err(bad("an IPv6 host must be in brackets"))
        }
        _ => {}
    }
    Ok(format!("{}:{port}", host.to_ascii_lowercase()))
}
