//! The client library every gateway uses (libccow's role in EdgeFS): buckets, streaming object
//! put and get, listings, copies, multipart uploads and access keys, over the chunk and manifest
//! stores. Gateways depend on this crate only; they never open a store.
//!
//! Put streams the body through content-defined chunking, hashes and compresses chunks in
//! parallel off the async executor, stores every chunk (and tree node) durably, and only then
//! applies the manifest: a visible version is always fully readable (invariant I2).

mod blocks;
mod buckets;
mod checksum;
mod client;
mod copy;
pub mod crypt;
mod error;
mod fetch;
mod gc;
mod get;
mod keys;
pub mod kms;
mod lifecycle;
mod link;
mod multipart;
pub mod nodecache;
mod nodes;
mod objects;
mod put;
mod quota;
mod read;
mod scrub;
mod types;

pub use blocks::{tree_etag, Hashed, TreeRun};
pub use checksum::{checksum_of, decode as decode_checksum, ChecksumAlgorithm};
pub use client::{now_ms, Client};
pub use copy::{CopyOptions, PartCopyKeys, PartCopyResult};
pub use error::ClientError;
pub use fetch::{FetchStats, PeerFetch, PinReport, RemoteChunks, DEFAULT_CACHE_BYTES};
pub use gc::{GcPhase, GcReport, DEFAULT_GC_HOLD_MS};
pub use lifecycle::LifecycleReport;
pub use link::{BucketReceived, ChunkRef, ShippedApply};
pub use objects::shown_version;
pub use read::ObjectRead;
pub use scrub::ScrubReport;
pub use types::*;

pub use cairn_chunkserver::{CacheStats, OwnerUsage, StoredChunk};
pub use cairn_core::manifest::Change;
pub use cairn_core::manifest::{
    AccessKey, Bucket, BucketQuota, ChecksumType, Content, ContentHeaders, DefaultEncryption,
    Encryption, KeyGrant, KeyLimits, Part, Upload, VersionManifest, Versioning,
};
pub use cairn_core::placement::{ReplicaCensus, ReplicaCount};
pub use cairn_core::{ChunkId, VersionId};
pub use cairn_manifestserver::{
    BucketUsage, Consumer, HistoryState, ListPage, ListQuery, TrimReport, UploadsPage,
    UploadsQuery, VersionsPage, VersionsQuery, WriteCondition,
};
