//! Listing queries and pages (objects, versions, uploads) with S3's prefix, delimiter and
//! marker semantics.

use cairn_core::manifest::{Upload, VersionManifest};
use cairn_core::VersionId;

/// A ListObjects query.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up to the first delimiter after the prefix into common prefixes.
    pub delimiter: Option<String>,
    /// Start strictly after this key (marker, start-after or a continuation token's key).
    pub start_after: Option<String>,
    /// Most entries (objects plus common prefixes) to return; 0 returns none.
    pub max_keys: usize,
}

/// One page of current objects.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    /// Current (non-delete-marker) versions, by key.
    pub objects: Vec<VersionManifest>,
    /// Common prefixes, sorted, each ending with the delimiter.
    pub common_prefixes: Vec<String>,
    /// More entries follow.
    pub is_truncated: bool,
    /// When truncated: the last key or common prefix returned (resume strictly after it).
    pub next_marker: Option<String>,
}

/// A ListObjectVersions query.
#[derive(Clone, Debug, Default)]
pub struct VersionsQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up into common prefixes.
    pub delimiter: Option<String>,
    /// Start after this key (all of its versions, unless `version_marker` is set).
    pub key_marker: Option<String>,
    /// With `key_marker`: start after this version of that key.
    pub version_marker: Option<VersionId>,
    /// Most entries (versions plus common prefixes).
    pub max_keys: usize,
}

/// One page of versions: by key ascending, then version newest first.
#[derive(Clone, Debug, Default)]
pub struct VersionsPage {
    /// Versions and delete markers.
    pub versions: Vec<VersionManifest>,
    /// Common prefixes.
    pub common_prefixes: Vec<String>,
    /// More entries follow.
    pub is_truncated: bool,
    /// When truncated: key of the last entry.
    pub next_key_marker: Option<String>,
    /// When truncated and the last entry is a version: its id.
    pub next_version_marker: Option<VersionId>,
}

/// A ListMultipartUploads query.
#[derive(Clone, Debug, Default)]
pub struct UploadsQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up into common prefixes.
    pub delimiter: Option<String>,
    /// Start after this key.
    pub key_marker: Option<String>,
    /// With `key_marker`: start after this upload id of that key.
    pub upload_id_marker: Option<String>,
    /// Most entries.
    pub max_uploads: usize,
}

/// One page of uploads, by key then upload id.
#[derive(Clone, Debug, Default)]
pub struct UploadsPage {
    /// Uploads in progress.
    pub uploads: Vec<Upload>,
    /// Common prefixes.
    pub common_prefixes: Vec<String>,
    /// More entries follow.
    pub is_truncated: bool,
    /// When truncated: key of the last upload.
    pub next_key_marker: Option<String>,
    /// When truncated: id of the last upload.
    pub next_upload_id_marker: Option<String>,
}
