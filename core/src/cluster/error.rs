//! Why a map or a staged change is refused.

use crate::error::ErrorKind;
use crate::format::FormatError;

use super::NodeId;

/// A map or a change to it is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    /// A site, node or zone name is not a DNS label.
    #[error("invalid {what} name `{name}`: use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'")]
    InvalidName {
        /// `site`, `node` or `zone`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// A node id does not fit in 48 bits.
    #[error("node id {id:x} does not fit in 48 bits: use the id from the node's node-id file")]
    InvalidNodeId {
        /// The id given.
        id: NodeId,
    },
    /// A decoded map files a node under another id.
    #[error("the map lists node {id} under id {key}: the map is corrupt")]
    IdMismatch {
        /// The map's key, in hex.
        key: String,
        /// The node's own id, in hex.
        id: String,
    },
    /// A node address is not `host:port`.
    #[error("node {node} has address `{address}`: {reason}; use host:port, e.g. 10.0.0.5:7400 or [fd00::5]:7400")]
    InvalidAddress {
        /// The node.
        node: String,
        /// The address given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A node has no role.
    #[error("node {node} has no role: give it chunk, manifest or s3, or remove it")]
    NoRoles {
        /// The node.
        node: String,
    },
    /// Two nodes share a name.
    #[error("nodes {first} and {second} are both named `{name}`: node names must be unique")]
    DuplicateName {
        /// The name.
        name: String,
        /// One node's id, in hex.
        first: String,
        /// The other's.
        second: String,
    },
    /// Two nodes share an address.
    #[error(
        "nodes {first} and {second} both have address `{address}`: give each node its own address"
    )]
    DuplicateAddress {
        /// The address.
        address: String,
        /// One node.
        first: String,
        /// The other.
        second: String,
    },
    /// More nodes than a map may list.
    #[error("the map would list {count} nodes, more than the {max} a site may have")]
    TooManyNodes {
        /// Nodes in the map.
        count: usize,
        /// [`super::MAX_NODES`].
        max: usize,
    },
    /// Replication factor 0.
    #[error("replication factor must be at least 1")]
    ReplicationFactorZero,
    /// Fewer usable chunk nodes than the replication factor.
    #[error("replication factor {rf} needs {rf} nodes with the chunk role and a weight above 0, the map has {available}: add chunk nodes, undrain some, or lower the replication factor")]
    NotEnoughChunkNodes {
        /// Replication factor.
        rf: u8,
        /// Nodes that can take chunks.
        available: usize,
    },
    /// Write quorum 0.
    #[error("write quorum must be at least 1: use majority or a number from 1 to the replication factor")]
    QuorumZero,
    /// Write quorum above the replication factor.
    #[error("write quorum {quorum} is larger than the replication factor {rf}: lower the quorum or raise the replication factor")]
    QuorumTooLarge {
        /// Write quorum.
        quorum: u8,
        /// Replication factor.
        rf: u8,
    },
    /// No node can take manifests.
    #[error("no node has the manifest role and a weight above 0: give the manifest role to at least one node")]
    NoManifestNode,
    /// Fewer usable manifest nodes than the write quorum.
    #[error("write quorum {quorum} needs {quorum} nodes with the manifest role and a weight above 0, the map has {available}: give the manifest role to more nodes or lower the quorum")]
    NotEnoughManifestNodes {
        /// Write quorum.
        quorum: u8,
        /// Nodes that can take manifests.
        available: usize,
    },
    /// A removal names a node the map does not have.
    #[error("cannot remove node {id}: it is not in the map")]
    UnknownNode {
        /// The id, in hex.
        id: String,
    },
    /// One node is staged more than once (twice added, or added and removed).
    #[error("node {id} is staged more than once: stage one change per node")]
    StagedTwice {
        /// The id, in hex.
        id: String,
    },
    /// Applying the changes would give the same map.
    #[error("the staged changes leave the map as it is: nothing to apply")]
    NoChange,
    /// The epoch cannot grow any more.
    #[error("the map's epoch cannot grow past {epoch}")]
    EpochExhausted {
        /// The current epoch.
        epoch: u64,
    },
    /// A map's bytes do not decode.
    #[error(transparent)]
    Format(#[from] FormatError),
}

impl MapError {
    /// The shared error kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MapError::UnknownNode { .. } => ErrorKind::NotFound,
            MapError::NoChange => ErrorKind::Conflict,
            MapError::EpochExhausted { .. } => ErrorKind::LimitExceeded,
            MapError::TooManyNodes { .. } => ErrorKind::LimitExceeded,
            MapError::IdMismatch { .. } | MapError::Format(_) => ErrorKind::Corrupt,
            _ => ErrorKind::InvalidInput,
        }
    }
}
