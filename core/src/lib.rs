//! Cairn's data model, with no I/O: chunk and version ids, the hybrid logical clock, manifests,
//! the extent tree, chunkers, the chunk codec, the cluster map and placement, the versioned
//! on-disk/wire format and the shared error vocabulary. Every other crate speaks in these types.

pub mod chunk;
pub mod chunker;
pub mod cluster;
pub mod codec;
pub mod error;
pub mod extent;
pub mod format;
pub mod manifest;
pub mod metrics;
pub mod placement;
pub mod space;
pub mod version;

pub use chunk::{owner_tag, ChunkId, ChunkIdMap, ChunkIdSet, MAX_CHUNK_SIZE};
pub use cluster::{ClusterMap, MapError, NodeInfo, Role, Roles, StagedChanges};
pub use error::ErrorKind;
pub use space::{SpaceGate, SpaceState, SpaceThresholds};
pub use version::{Hlc, NodeId, SiteId, VersionId};
