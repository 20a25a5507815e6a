//! The `link` service's messages. A link's dialing site calls them on the remote site's link
//! listener; the same calls serve both directions: to send, the dialer asks the remote what it
//! lacks and ships it (`Lacks`, `Have`, `Put`, `Apply`); to receive, it reads the remote's
//! change log and data (`Logs`, `Changes`, `Versions`, `ListVersions`, `Fetch`) and does the
//! same against its own site.
//!
//! Variants are part of the wire format: never reorder them, only add new ones at the end.

use cairn_client::{Bucket, Change, ChunkId, ChunkRef, VersionId, VersionManifest};
use cairn_core::codec::Codec;
use cairn_core::format::Versioned;
use cairn_net::Rpc;
use serde::{Deserialize, Serialize};

/// The link protocol's version; a peer speaking another is refused at `Hello`.
pub const PROTOCOL: u32 = 1;
/// Most versions, removals or changes one call carries.
pub const MAX_VERSIONS: usize = 1000;
/// Most chunk ids or references one call carries.
pub const MAX_REFS: usize = 1000;
/// Most bytes of chunk payloads one `Put` or `Fetch` body carries.
pub const MAX_BODY: u64 = 64 << 20;
/// Most buckets one `Buckets` call carries.
pub const MAX_BUCKETS: usize = 1000;

/// One version of one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionKey {
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Version id.
    pub version: VersionId,
}

impl VersionKey {
    /// The key of a change-log entry.
    pub fn of_change(c: &Change) -> VersionKey {
        VersionKey {
            bucket: c.bucket.clone(),
            key: c.key.clone(),
            version: c.version,
        }
    }

    /// The key of a version.
    pub fn of(m: &VersionManifest) -> VersionKey {
        VersionKey {
            bucket: m.bucket.clone(),
            key: m.key.clone(),
            version: m.version,
        }
    }
}

/// A chunk in a `Put` or `Fetch` body: which it is and how its payload is encoded; the
/// payloads follow one after the other in the body, `len` bytes each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipped {
    /// The chunk, and whether it is a tree node.
    pub chunk: ChunkRef,
    /// Encoding of the payload.
    pub codec: Codec,
    /// Uncompressed length.
    pub raw_len: u32,
    /// Payload length in the body.
    pub len: u32,
}

/// A call of the link service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LinkRequest {
    /// First call of a connection: who calls, for which link.
    Hello {
        /// The caller's protocol version.
        protocol: u32,
        /// The caller's site id (refused if it equals the callee's).
        site: u16,
        /// The link's name at the caller.
        link: String,
    },
    /// Bucket records the caller has: the callee creates those it lacks and takes those with
    /// a greater revision than its own.
    Buckets {
        /// At most [`MAX_BUCKETS`].
        buckets: Vec<Bucket>,
    },
    /// Which of these versions the callee lacks (neither stored nor removed).
    Lacks {
        /// At most [`MAX_VERSIONS`].
        versions: Vec<VersionKey>,
    },
    /// Which of these chunks (or whole subtrees, for nodes) the callee holds; those it holds
    /// are protected from its GC from now on.
    Have {
        /// At most [`MAX_REFS`].
        refs: Vec<ChunkRef>,
    },
    /// Store these chunks (payloads in the body, in order), durably; nodes after their
    /// children.
    Put {
        /// At most [`MAX_REFS`], payloads at most [`MAX_BODY`] in total.
        chunks: Vec<Shipped>,
    },
    /// Apply these versions (their data is stored) and removals.
    Apply {
        /// Versions, at most [`MAX_VERSIONS`].
        versions: Vec<VersionManifest>,
        /// Removed versions, at most [`MAX_VERSIONS`].
        removals: Vec<VersionKey>,
    },
    /// Where each of the callee's change logs ends, held from there for the caller.
    Logs {
        /// The caller's site id (the callee holds its logs for it).
        reader: u16,
    },
    /// Entries of one of the callee's change logs after `after`, read for the caller.
    Changes {
        /// The caller's site id.
        reader: u16,
        /// The log.
        log: u64,
        /// Read after this sequence number (acknowledging it).
        after: u64,
        /// At most this many (and at most [`MAX_VERSIONS`]).
        max: u32,
    },
    /// Versions as stored (`None` where gone).
    Versions {
        /// At most [`MAX_VERSIONS`].
        keys: Vec<VersionKey>,
    },
    /// A page of a bucket's versions, by key then newest first (initial sync).
    ListVersions {
        /// The bucket.
        bucket: String,
        /// Start after this key (and version, if given).
        after: Option<(String, Option<VersionId>)>,
        /// At most this many (and at most [`MAX_VERSIONS`]).
        max: u32,
    },
    /// Chunks in stored form; the answer lists them and the body carries their payloads.
    Fetch {
        /// At most [`MAX_REFS`].
        ids: Vec<ChunkId>,
    },
    /// The callee's bucket records.
    BucketList,
    /// Where each of the callee's change logs ends now, held for no one (how far the caller
    /// is behind).
    LogEnds,
    /// Delete this bucket, which the caller's site deleted, if it holds no version (uploads in
    /// progress are aborted with it, as a DeleteBucket does).
    DeleteBucket {
        /// The bucket.
        bucket: String,
    },
}

impl Versioned for LinkRequest {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "link request";
}

impl Rpc for LinkRequest {
    const SERVICE: &'static str = "link";
    type Response = LinkResponse;
}

/// The link service's answers, one per request variant (same order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LinkResponse {
    /// Answer to `Hello`.
    Hello {
        /// The callee's protocol version.
        protocol: u32,
        /// The callee's site id.
        site: u16,
    },
    /// Answer to `Buckets`: how many were created or changed.
    Buckets {
        /// Buckets created or changed.
        created: u32,
    },
    /// Answer to `Lacks`: one flag per version.
    Lacks {
        /// True where the callee lacks the version.
        lacks: Vec<bool>,
    },
    /// Answer to `Have`: one flag per reference.
    Have {
        /// True where the callee holds it.
        have: Vec<bool>,
    },
    /// Answer to `Put`, once everything is durable.
    Put,
    /// Answer to `Apply`.
    Apply {
        /// Versions that were new.
        applied: u32,
        /// Removals that removed something.
        removed: u32,
        /// Versions that conflicted with a write made at the callee (same parent).
        conflicts: u32,
    },
    /// Answer to `Logs`: (log, last sequence number).
    Logs {
        /// Every log of the callee's site.
        logs: Vec<(u64, u64)>,
    },
    /// Answer to `Changes`; empty at the end of the log.
    Changes {
        /// The entries.
        changes: Vec<Change>,
    },
    /// Answer to `Versions`, in order.
    Versions {
        /// The versions, `None` where gone.
        versions: Vec<Option<VersionManifest>>,
    },
    /// Answer to `ListVersions`.
    ListVersions {
        /// The page.
        versions: Vec<VersionManifest>,
        /// More follow.
        truncated: bool,
    },
    /// Answer to `Fetch`, for the first ids asked (as many as fit in [`MAX_BODY`]; at least
    /// one): per id its encoding, raw length and payload length, `None` where the callee does
    /// not hold it; the payloads follow in the body in this order.
    Fetch {
        /// One entry per id answered.
        chunks: Vec<Option<(Codec, u32, u32)>>,
    },
    /// Answer to `BucketList`.
    BucketList {
        /// Every bucket's record.
        buckets: Vec<Bucket>,
    },
    /// Answer to `LogEnds`: (log, last sequence number).
    LogEnds {
        /// Every log of the callee's site.
        logs: Vec<(u64, u64)>,
    },
    /// Answer to `DeleteBucket`.
    DeleteBucket {
        /// What became of it.
        outcome: BucketDeleted,
    },
}

/// What a `DeleteBucket` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BucketDeleted {
    /// Deleted.
    Deleted,
    /// There was no such bucket.
    Absent,
    /// It still holds versions: not deleted.
    NotEmpty,
}

impl Versioned for LinkResponse {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "link response";
}
