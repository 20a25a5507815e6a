//! The chunk server: a durable, deduplicating store of immutable chunks on RocksDB.
//!
//! A chunk is stored once under its [`ChunkId`](cairn_core::ChunkId) whatever how many objects
//! reference it; payloads live in RocksDB blob files (large values stay out of the LSM tree's
//! compactions) and a small index entry per chunk answers "have it?" without touching a payload.
//! Every put is a synced write batch (RocksDB groups concurrent writers into one WAL sync), so an
//! acknowledged put survives kill -9; every get re-hashes the bytes before returning them.
//!
//! Other nodes reach a node's store through the chunk service ([`rpc`]): [`ChunkService`]
//! serves it over cairn-net, [`RemoteChunks`] calls it. [`ReplicatedChunks`] ([`replicated`]) is
//! the backend of a multi-node site: it keeps each chunk on the replicas placement gives it.
//! [`ChunkMaintenance`] ([`maintenance`]) runs a chunk node's repair, rebalance and scrub
//! workers over its own store.

mod backend;
mod error;
pub mod maintenance;
pub mod replicated;
pub mod rpc;
mod store;

pub use backend::{ChunkBackend, OwnerUsage};
pub use error::ChunkError;
pub use maintenance::{
    ChunkMaintenance, MaintenanceConfig, PassReport, RateLimiter, WorkerKind, WorkerProgress,
    WorkerSnapshot,
};
pub use replicated::{ReplicatedChunks, ReplicationConfig, ReplicationCounters};
pub use rpc::{ChunkService, FetchSource, RemoteChunks};
pub use store::{
    CacheStats, ChunkConfig, ChunkMeta, ChunkStats, ChunkStore, StoredChunk, MAX_STORED_LEN,
};
