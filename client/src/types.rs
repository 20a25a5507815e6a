//! The types of the client API: selectors, options and results.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

use crate::{
    ChecksumAlgorithm, ClientError, ContentHeaders, VersionId, VersionManifest, WriteCondition,
};
use cairn_core::manifest::{Grant, ObjectLock};

/// A request body: chunks of bytes, or an I/O error when the connection fails.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static>>;
/// A response body.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, ClientError>> + Send + 'static>>;

/// Which version a request names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionSel {
    /// The current version.
    Current,
    /// S3's `null` version.
    Null,
    /// A version by id.
    Id(VersionId),
}

impl VersionSel {
    /// Parses an S3 `versionId` parameter (`None` = current, `"null"`, or an id);
    /// a malformed id is `InvalidArgument`.
    pub fn parse(s: Option<&str>) -> Result<VersionSel, ClientError> {
        match s {
            None => Ok(VersionSel::Current),
            Some("null") => Ok(VersionSel::Null),
            Some(v) => v
                .parse::<VersionId>()
                .map(VersionSel::Id)
                .map_err(|_| ClientError::InvalidArgument(format!("invalid version id `{v}`"))),
        }
    }

    /// The label of the version this selects, for error messages (`None` for current).
    pub fn label(&self) -> Option<String> {
        match self {
            VersionSel::Current => None,
            VersionSel::Null => Some("null".into()),
            VersionSel::Id(v) => Some(v.to_string()),
        }
    }
}

/// A byte range as HTTP `Range: bytes=` expresses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-[last]` (inclusive).
    FromTo(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// Options of a PUT (and of a multipart upload's final object).
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// Content headers to keep.
    pub headers: ContentHeaders,
    /// `x-amz-meta-*` metadata.
    pub user_metadata: BTreeMap<String, String>,
    /// Object tags.
    pub tags: BTreeMap<String, String>,
    /// Content-MD5, checked against the body: mismatch is BadDigest and stores nothing.
    pub content_md5: Option<[u8; 16]>,
    /// Content-Length (decoded length for aws-chunked): mismatch is IncompleteBody.
    pub content_length: Option<u64>,
    /// Access key id of the writer (the object's owner).
    pub owner: String,
    /// ACL grants besides the owner's.
    pub acl: Vec<Grant>,
    /// Retention and legal hold (the bucket's default retention applies when unset).
    pub lock: ObjectLock,
    /// An additional checksum to compute, store and (when a value is given) verify.
    pub checksum: Option<ChecksumRequest>,
    /// A condition on the key's current object, checked atomically with the write.
    pub condition: Option<WriteCondition>,
    /// Server-side encryption of the content.
    pub encryption: Option<crate::crypt::Sse>,
}

/// A checksum a PUT or UploadPart computes over the body while it streams in, and the value to
/// verify it against: a mismatch is BadDigest and stores nothing.
#[derive(Clone, Debug)]
pub struct ChecksumRequest {
    /// The algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// What the computed value must equal.
    pub expected: ExpectedChecksum,
}

/// The value a computed checksum is checked against.
#[derive(Clone)]
pub enum ExpectedChecksum {
    /// None: the checksum is only computed and stored.
    Compute,
    /// Base64 of the digest, known before the body (a request header).
    Value(String),
    /// Base64 of the digest, known once the body has been read (a trailer after the body);
    /// the function returns `None` if it never arrived.
    AfterBody(Arc<dyn Fn() -> Option<String> + Send + Sync>),
}

impl std::fmt::Debug for ExpectedChecksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedChecksum::Compute => f.write_str("Compute"),
            ExpectedChecksum::Value(v) => f.debug_tuple("Value").field(v).finish(),
            ExpectedChecksum::AfterBody(_) => f.write_str("AfterBody(..)"),
        }
    }
}

/// A stored version and the version id to show for it (`None` in never-versioned buckets).
#[derive(Clone, Debug)]
pub struct PutResult {
    /// The version.
    pub manifest: VersionManifest,
    /// Its id as S3 shows it, `None` in never-versioned buckets.
    pub version_id: Option<String>,
}

/// A GET: the version, the byte range served (start, end exclusive) when a range was asked, and
/// the body.
pub struct GetResult {
    /// The version served.
    pub manifest: VersionManifest,
    /// Its id as S3 shows it, `None` in never-versioned buckets.
    pub version_id: Option<String>,
    /// The range served, `[start, end)`, when one was asked.
    pub range: Option<(u64, u64)>,
    /// The bytes.
    pub body: ByteStream,
}

/// A DELETE's outcome.
#[derive(Clone, Debug, Default)]
pub struct DeleteResult {
    /// Version removed or delete marker created (`None` in never-versioned buckets).
    pub version_id: Option<String>,
    /// A delete marker was created, or the removed version was one.
    pub delete_marker: bool,
}

/// What CopyObject does with metadata.
#[derive(Clone, Debug)]
pub enum MetadataDirective {
    /// Keep the source's headers and metadata.
    Copy,
    /// Use these instead.
    Replace {
        /// New content headers.
        headers: ContentHeaders,
        /// New metadata.
        user_metadata: BTreeMap<String, String>,
    },
}

/// A CopyObject's outcome.
#[derive(Clone, Debug)]
pub struct CopyResult {
    /// The new version.
    pub result: PutResult,
    /// Version id of the source that was copied (`None` if its bucket is never-versioned).
    pub source_version_id: Option<String>,
}

/// Options of UploadPart.
#[derive(Clone, Debug, Default)]
pub struct PartOptions {
    /// Content-MD5 to check.
    pub content_md5: Option<[u8; 16]>,
    /// Announced length to check.
    pub content_length: Option<u64>,
    /// An additional checksum to compute, store and verify; it must be the upload's algorithm
    /// when the upload named one.
    pub checksum: Option<ChecksumRequest>,
    /// The customer key (SSE-C) of an upload started with one: every part must send it.
    pub customer_key: Option<crate::crypt::CustomerKey>,
}

/// One part as CompleteMultipartUpload lists it.
#[derive(Clone, Debug, Default)]
pub struct CompletedPart {
    /// Part number.
    pub number: u32,
    /// Its ETag (quotes allowed).
    pub etag: String,
    /// Its checksum in the upload's algorithm (base64) if the request listed one: it must match
    /// the stored part's.
    pub checksum: Option<String>,
}

impl From<(u32, String)> for CompletedPart {
    /// A part listed by number and ETag only.
    fn from((number, etag): (u32, String)) -> CompletedPart {
        CompletedPart {
            number,
            etag,
            checksum: None,
        }
    }
}

/// Options of CompleteMultipartUpload.
#[derive(Clone, Debug, Default)]
pub struct CompleteOptions {
    /// A condition on the key's current object, checked atomically with the completion.
    pub condition: Option<WriteCondition>,
    /// The whole object's checksum in the upload's algorithm and type, if the request sent one
    /// (`base64` for full-object, `base64-N` for composite): it must match what is computed.
    pub checksum: Option<String>,
}

/// Storage totals.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Buckets.
    pub buckets: u64,
    /// Versions stored (all buckets, delete markers included).
    pub versions: u64,
    /// Sum of object sizes over all stored versions.
    pub logical_bytes: u64,
    /// Distinct chunks stored.
    pub chunks: u64,
    /// Uncompressed bytes of the distinct chunks.
    pub unique_bytes: u64,
    /// Bytes on disk for chunk payloads after compression.
    pub physical_bytes: u64,
}

/// The label S3 shows for a version: `null` for null versions, else the id string.
pub fn version_label(m: &VersionManifest) -> String {
    if m.null_version {
        "null".to_string()
    } else {
        m.version.to_string()
    }
}
