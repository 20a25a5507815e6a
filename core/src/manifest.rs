//! Metadata records: buckets, version manifests, multipart uploads and parts, change-log
//! entries and access keys. All are [`Versioned`] so their stored form can evolve.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::extent::Child;
use crate::format::Versioned;
use crate::VersionId;

/// Largest object stored inline in its manifest instead of as chunks.
pub const INLINE_MAX: usize = 4096;

/// A bucket's versioning state, as S3 defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versioning {
    /// Never enabled: each key keeps one (`null`) version.
    Unversioned,
    /// Every write adds a version.
    Enabled,
    /// Was enabled; new writes replace the `null` version, older versions stay.
    Suspended,
}

/// A bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Name (S3 rules).
    pub name: String,
    /// Creation time, unix ms.
    pub created_ms: u64,
    /// Access key id of the owner.
    pub owner: String,
    /// Versioning state.
    pub versioning: Versioning,
}

impl Versioned for Bucket {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "bucket";
}

/// Where a version's bytes are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// Zero-length object.
    Empty,
    /// Small object kept in the manifest.
    Inline(Bytes),
    /// Root of an extent tree.
    Tree(Child),
}

impl Content {
    /// The tree root, if the content is a tree.
    pub fn tree(&self) -> Option<Child> {
        match self {
            Content::Tree(c) => Some(*c),
            _ => None,
        }
    }
}

/// Standard HTTP content headers kept with an object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentHeaders {
    /// Content-Type.
    pub content_type: Option<String>,
    /// Cache-Control.
    pub cache_control: Option<String>,
    /// Content-Disposition.
    pub content_disposition: Option<String>,
    /// Content-Encoding.
    pub content_encoding: Option<String>,
    /// Content-Language.
    pub content_language: Option<String>,
    /// Expires (as sent).
    pub expires: Option<String>,
}

/// One version of one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionManifest {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// This version's id.
    pub version: VersionId,
    /// The version this one replaced, if any (two versions with one parent are siblings).
    pub parent: Option<VersionId>,
    /// Written while versioning was off or suspended: S3 calls it the `null` version.
    pub null_version: bool,
    /// A delete marker has no content.
    pub delete_marker: bool,
    /// Wall-clock write time, unix ms (Last-Modified).
    pub mtime_ms: u64,
    /// Content length.
    pub size: u64,
    /// ETag without quotes: MD5 hex, or `md5-of-md5s-N` for multipart.
    pub etag: String,
    /// Content headers.
    pub headers: ContentHeaders,
    /// `x-amz-meta-*` (names lowercased, without the prefix).
    pub user_metadata: BTreeMap<String, String>,
    /// Object tags.
    pub tags: BTreeMap<String, String>,
    /// Checksums by algorithm name (e.g. `crc32c`), base64 as S3 shows them.
    pub checksums: BTreeMap<String, String>,
    /// Number of parts for a multipart object.
    pub parts: Option<u32>,
    /// The bytes.
    pub content: Content,
}

impl Versioned for VersionManifest {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "version manifest";
}

impl VersionManifest {
    /// A delete marker for `bucket/key`.
    pub fn delete_marker(
        bucket: &str,
        key: &str,
        version: VersionId,
        parent: Option<VersionId>,
        null_version: bool,
        mtime_ms: u64,
    ) -> VersionManifest {
        VersionManifest {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version,
            parent,
            null_version,
            delete_marker: true,
            mtime_ms,
            size: 0,
            etag: String::new(),
            headers: ContentHeaders::default(),
            user_metadata: BTreeMap::new(),
            tags: BTreeMap::new(),
            checksums: BTreeMap::new(),
            parts: None,
            content: Content::Empty,
        }
    }
}

/// A multipart upload in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Upload id handed to the client.
    pub upload_id: String,
    /// Start time, unix ms.
    pub initiated_ms: u64,
    /// Access key id of the initiator.
    pub owner: String,
    /// Headers for the final object.
    pub headers: ContentHeaders,
    /// Metadata for the final object.
    pub user_metadata: BTreeMap<String, String>,
    /// Tags for the final object.
    pub tags: BTreeMap<String, String>,
}

impl Versioned for Upload {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "multipart upload";
}

/// One uploaded part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// 1..=10000.
    pub number: u32,
    /// MD5 of the part's bytes.
    pub md5: [u8; 16],
    /// Length.
    pub size: u64,
    /// Upload time, unix ms.
    pub mtime_ms: u64,
    /// The part's bytes (always a tree or empty: parts are concatenated by reference).
    pub content: Content,
}

impl Versioned for Part {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "multipart part";
}

/// An entry of a manifest server's change log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Position in the log (1-based, gap-free).
    pub seq: u64,
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Version applied.
    pub version: VersionId,
    /// Whether that version is a delete marker.
    pub delete_marker: bool,
    /// Whether the version was removed (expunged) rather than added.
    pub removed: bool,
}

impl Versioned for Change {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "change log entry";
}

/// An S3 access key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    /// Access key id (public).
    pub id: String,
    /// Secret key.
    pub secret: String,
    /// Human name.
    pub name: String,
    /// Creation time, unix ms.
    pub created_ms: u64,
}

impl Versioned for AccessKey {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "access key";
}
