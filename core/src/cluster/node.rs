//! A node's entry in the map: id, name, address, zone, weight and roles; and the write quorum.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{node_id_hex, NodeId};

/// Something a node serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Stores chunks (a chunk server).
    Chunk,
    /// Stores version manifests and buckets (a manifest server).
    Manifest,
    /// Serves the S3 API (a gateway).
    S3,
}

impl Role {
    /// Every role, in display order.
    pub const ALL: [Role; 3] = [Role::Chunk, Role::Manifest, Role::S3];

    /// The role's name as written in maps and commands.
    pub fn name(self) -> &'static str {
        match self {
            Role::Chunk => "chunk",
            Role::Manifest => "manifest",
            Role::S3 => "s3",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The set of roles a node has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Roles {
    /// Stores chunks.
    pub chunk: bool,
    /// Stores manifests.
    pub manifest: bool,
    /// Serves S3.
    pub s3: bool,
}

impl Roles {
    /// Every role.
    pub const ALL: Roles = Roles {
        chunk: true,
        manifest: true,
        s3: true,
    };
    /// No role.
    pub const NONE: Roles = Roles {
        chunk: false,
        manifest: false,
        s3: false,
    };

    /// True when `role` is in the set.
    pub fn has(self, role: Role) -> bool {
        match role {
            Role::Chunk => self.chunk,
            Role::Manifest => self.manifest,
            Role::S3 => self.s3,
        }
    }

    /// The set with `role` added.
    pub fn with(mut self, role: Role) -> Roles {
        match role {
            Role::Chunk => self.chunk = true,
            Role::Manifest => self.manifest = true,
            Role::S3 => self.s3 = true,
        }
        self
    }

    /// True when the set is empty.
    pub fn is_empty(self) -> bool {
        self == Roles::NONE
    }
}

impl fmt::Display for Roles {
    /// `chunk,manifest,s3`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Role::ALL
            .iter()
            .filter(|r| self.has(**r))
            .map(|r| r.name())
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

impl FromStr for Roles {
    type Err = String;

    /// Parses a comma-separated list of `chunk`, `manifest`, `s3`, or `all`.
    fn from_str(s: &str) -> Result<Roles, String> {
        let mut roles = Roles::NONE;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            roles = match part {
                "all" => Roles::ALL,
                "chunk" => roles.with(Role::Chunk),
                "manifest" => roles.with(Role::Manifest),
                "s3" => roles.with(Role::S3),
                other => {
                    return Err(format!(
                    "unknown role `{other}`: use chunk, manifest, s3 or all, separated by commas"
                ))
                }
            };
        }
        if roles.is_empty() {
            return Err("no role given: use chunk, manifest, s3 or all".to_string());
        }
        Ok(roles)
    }
}

/// One node of the site as the map knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's 48-bit id.
    pub id: NodeId,
    /// Its name (a DNS label, as in its certificate).
    pub name: String,
    /// Where its node transport listens: `host:port`, IPv6 hosts in brackets.
    pub address: String,
    /// Its failure domain (rack, room, building): replicas go to distinct zones first.
    pub zone: String,
    /// Capacity weight: data shares are proportional to it; 0 means drained.
    pub weight: u32,
    /// What it serves.
    pub roles: Roles,
}

impl NodeInfo {
    /// A node with weight 1 and every role.
    pub fn new(
        id: NodeId,
        name: impl Into<String>,
        address: impl Into<String>,
        zone: impl Into<String>,
    ) -> NodeInfo {
        NodeInfo {
            id,
            name: name.into(),
            address: address.into(),
            zone: zone.into(),
            weight: 1,
            roles: Roles::ALL,
        }
    }

    /// True when new data of `role` may be placed here: the node has the role and a weight.
    pub fn serves(&self, role: Role) -> bool {
        self.roles.has(role) && self.weight > 0
    }

    /// True when the node is drained (weight 0).
    pub fn is_drained(&self) -> bool {
        self.weight == 0
    }

    pub(crate) fn label(&self) -> String {
        format!("`{}` ({})", self.name, node_id_hex(self.id))
    }
}

/// How many replicas must acknowledge a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteQuorum {
    /// A majority of the replication factor: RF / 2 + 1.
    #[default]
    Majority,
    /// A fixed number of replicas.
    Fixed(u8),
}

impl WriteQuorum {
    /// The number of acknowledgements needed with replication factor `rf`.
    pub fn resolve(self, rf: u8) -> u8 {
        match self {
            WriteQuorum::Majority => rf / 2 + 1,
            WriteQuorum::Fixed(w) => w,
        }
    }
}

impl fmt::Display for WriteQuorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteQuorum::Majority => f.write_str("majority"),
            WriteQuorum::Fixed(w) => write!(f, "{w}"),
        }
    }
}
