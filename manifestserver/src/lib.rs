//! The manifest server: buckets, version manifests, multipart uploads, access keys and the
//! change log, in one RocksDB database.
//!
//! Every mutation is one synced write batch, so an acknowledged change survives kill -9 and a
//! crash never leaves half of one. Listing current objects is one range scan over the `current`
//! index; listing versions is one range scan over `versions`, where a key's versions sort newest
//! first.
//!
//! Other nodes reach a node's store through the manifest service over cairn-net ([`rpc`]:
//! [`ManifestService`] serves it, [`RemoteManifest`] calls it).

mod backend;
mod db;
mod error;
mod history;
mod keys;
mod list;
mod replicated;
pub mod rpc;
mod scan;
mod stamped;
mod store;
mod uploads;
mod usage;
mod versions;

pub use backend::{InPlace, ManifestBackend, ObjectLookup, WantedVersion};
pub use error::{ManifestError, Refusal};
pub use history::{Consumer, HistoryState, TrimPolicy, TrimReport, MAX_CONSUMER_NAME};
pub use list::{ListPage, ListQuery, UploadsPage, UploadsQuery, VersionsPage, VersionsQuery};
pub use replicated::{
    AntiEntropyReport, ManifestReplicationConfig, ManifestReplicationCounters, ReplicatedManifests,
};
pub use rpc::{ManifestRequest, ManifestResponse, ManifestService, RemoteManifest, WriteCondition};
pub use stamped::{
    KeyState, ObjectState, Record, RecordId, StampCheck, StampedRecord, StampedWrite, VersionState,
    WriteOutcome, MAX_STAMPED, MAX_TOMBSTONES, TOMBSTONE,
};
pub use store::{ManifestConfig, ManifestStats, ManifestStore};
pub use usage::BucketUsage;
