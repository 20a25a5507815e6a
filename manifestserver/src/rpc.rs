//! The manifest service: one node's [`ManifestStore`] reached by other nodes over cairn-net.
//!
//! - [`ManifestRequest`] (service `manifest`) has one variant per store operation and
//!   [`ManifestResponse`] one per kind of answer. Both are versioned messages (format 1): the
//!   records they carry (buckets, manifests, uploads, parts, keys) travel in their current
//!   in-memory shape, so a change to any of those types needs a new format here too.
//! - [`ManifestService`] serves them from an `Arc<ManifestStore>`; every store call runs on
//!   tokio's blocking pool.
//! - [`RemoteManifest`] is the typed caller: async methods that mirror the store's, returning
//!   [`ManifestError`] as the local store would.
//!
//! # Checks as data
//!
//! The store's closure-taking operations cannot cross the network. Their checks travel as
//! data and run on the serving node inside the store's write lock, so they see the record they
//! change exactly as the local closures do:
//!
//! - [`ManifestRequest::ApplyIf`] carries a [`WriteCondition`] (If-None-Match: `*`, If-Match);
//! - [`ManifestRequest::RemoveVersionUnlessLocked`] checks object lock
//!   ([`ObjectLock::protects`](cairn_core::manifest::ObjectLock::protects));
//! - [`ManifestRequest::UpdateBucket`], [`ManifestRequest::UpdateVersion`] and
//!   [`ManifestRequest::UpdateKey`] are compare-and-swap: the new record replaces the stored one
//!   only if that is still the `expected` one, else [`Refusal::Conflict`]. A caller reads,
//!   changes its copy and retries on conflict.
//!
//! The same checks are available locally as [`ManifestStore::apply_when`],
//! [`ManifestStore::remove_version_unless_locked`] and the `*_cas` methods.
//!
//! # Errors
//!
//! A store error travels as a [`WireError`] inside the response (not only as an error kind), so
//! the caller gets back the same [`ManifestError`] variant: `NoSuchBucket`, `BucketExists` (with
//! its owner), `BucketNotEmpty`, `NoSuchUpload`, `KeyExists`, `Invalid` and `Locked` keep their
//! variant; conflicts, failed conditions and bounds come back as the same [`Refusal`]; database
//! and format failures of the remote store come back as [`Refusal::Remote`] with their kind;
//! failures of the call itself as [`Refusal::Transport`].
//!
//! # Bounds
//!
//! Listings (objects, versions, uploads, parts) and pages of buckets and keys ask for at most
//! [`MAX_LIST`] entries, change-log reads for at most [`MAX_CHANGES`]; larger requests are
//! refused ([`Refusal::LimitExceeded`]) by the caller before sending and by the server. The
//! server also keeps each answer under [`RESPONSE_BUDGET`] encoded bytes, well inside the
//! transport's head limit: a change-log read or a page of buckets or keys then returns fewer
//! entries (callers resume after the last one), a listing is redone with a smaller page (its
//! markers stay exact).
//!
//! A call that times out may still complete on the server (store calls are not interrupted
//! once started): applies are idempotent, and compare-and-swap retries see the new record.

use std::sync::Arc;

use cairn_core::format::Versioned;
use cairn_core::manifest::{AccessKey, Bucket, Change, Part, Upload, VersionManifest};
use cairn_core::{ErrorKind, VersionId};
use cairn_net::{Peer, PeerInfo, RecvBody, Rpc, RpcError, SendBody, Service};
use serde::{Deserialize, Serialize};

use crate::error::Refusal;
use crate::history::{now_ms, HistoryState};
use crate::list::{ListPage, ListQuery, UploadsPage, UploadsQuery, VersionsPage, VersionsQuery};
use crate::stamped::{
    KeyState, ObjectState, RecordId, StampedRecord, StampedWrite, WriteOutcome, MAX_STAMPED,
};
use crate::{ManifestError, ManifestStats, ManifestStore, WantedVersion};

/// The service's name on the wire.
pub const SERVICE: &str = "manifest";
/// Most entries a listing or a page of buckets or keys may ask for.
pub const MAX_LIST: usize = 1000;
/// Most change-log entries one call may ask for.
pub const MAX_CHANGES: usize = 10_000;
/// Most buckets or keys [`RemoteManifest::list_buckets`] and [`RemoteManifest::list_keys`]
/// collect across pages.
pub const MAX_COLLECTED: usize = 100_000;
/// Encoded bytes of records the server puts in one answer (the transport allows 16 MiB).
pub const RESPONSE_BUDGET: usize = 8 << 20;

// ---- checks as data ----

/// A conditional write (`If-None-Match: *` or `If-Match: "etag"` on PutObject and
/// CompleteMultipartUpload), checked against the key's current object under the store's write
/// lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteCondition {
    /// Only if the key has no current object ([`Refusal::PreconditionFailed`] otherwise).
    IfNoneMatchAny,
    /// Unless the current object's ETag is this one ([`Refusal::PreconditionFailed`] if it is).
    IfNoneMatch(String),
    /// Only if the key has a current object ([`Refusal::NoSuchKey`] otherwise, as S3).
    IfMatchAny,
    /// Only if the current object's ETag is this one (`*`: any): [`Refusal::PreconditionFailed`]
    /// if it differs, [`Refusal::NoSuchKey`] if the key has no current object. (ETags compare
    /// without quotes and a `W/` prefix.)
    IfMatch(String),
}

impl WriteCondition {
    /// Whether a write to `key` may replace `current` (its current object: `None` when it has
    /// none or its newest version is a delete marker).
    pub fn check(&self, key: &str, current: Option<&VersionManifest>) -> Result<(), ManifestError> {
        let bare = |etag: &str| {
            etag.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_string()
        };
        let failed = |why: String| Err(Refusal::PreconditionFailed(why).into());
        match (self, current) {
            (WriteCondition::IfNoneMatchAny, Some(_)) => {
                failed(format!("`{key}` exists (If-None-Match: *)"))
            }
            (WriteCondition::IfNoneMatch(etag), Some(m)) if bare(etag) == m.etag => failed(
                format!("the ETag of `{key}` is \"{}\" (If-None-Match)", m.etag),
            ),
            // As S3: If-Match (an ETag or `*`) on a key with no object is 404 NoSuchKey.
            (WriteCondition::IfMatchAny | WriteCondition::IfMatch(_), None) => {
                Err(Refusal::NoSuchKey(key.to_string()).into())
            }
            (WriteCondition::IfMatch(etag), Some(m))
                if ![m.etag.as_str(), "*"].contains(&bare(etag).as_str()) =>
            {
                failed(format!(
                    "the ETag of `{key}` is not \"{}\" (If-Match)",
                    bare(etag)
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The message of an object-lock refusal (what S3 answers).
pub(crate) const LOCKED: &str = "Access Denied because object protected by object lock";

impl ManifestStore {
    /// [`ManifestStore::apply_if`] with a [`WriteCondition`]: the data form of its check.
    pub fn apply_when(
        &self,
        m: &VersionManifest,
        upload_id: Option<&str>,
        condition: &WriteCondition,
    ) -> Result<(bool, Vec<VersionManifest>), ManifestError> {
        self.apply_if(m, upload_id, |current| condition.check(&m.key, current))
    }

    /// [`ManifestStore::remove_version_if`] refusing ([`ManifestError::Locked`]) a version
    /// that object lock protects at `now_ms`: a legal hold, or a retention not yet passed
    /// unless it is governance and `bypass_governance` is set.
    pub fn remove_version_unless_locked(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
        now_ms: u64,
        bypass_governance: bool,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        self.remove_version_if(bucket, key, version, |m| {
            if m.lock.protects(now_ms, bypass_governance) {
                Err(ManifestError::Locked(LOCKED.into()))
            } else {
                Ok(())
            }
        })
    }

    /// Replaces the bucket record `expected` with `new` if the stored record is still
    /// `expected` ([`Refusal::Conflict`] otherwise; `NoSuchBucket` if it is gone). Returns the
    /// new record.
    pub fn update_bucket_cas(
        &self,
        expected: &Bucket,
        new: &Bucket,
    ) -> Result<Bucket, ManifestError> {
        if new.name != expected.name {
            return Err(ManifestError::Invalid("a bucket cannot be renamed".into()));
        }
        self.update_bucket(&expected.name, |b| {
            if b != expected {
                return Err(Refusal::Conflict(format!(
                    "bucket `{}` changed since it was read",
                    expected.name
                ))
                .into());
            }
            *b = new.clone();
            Ok(())
        })
    }

    /// Replaces the version record `expected` with `new` in place if the stored record is still
    /// `expected` ([`Refusal::Conflict`] otherwise). Only metadata may change (as in
    /// [`ManifestStore::update_version`]). Returns the new record, `None` if the version does not
    /// exist.
    pub fn update_version_cas(
        &self,
        expected: &VersionManifest,
        new: &VersionManifest,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        if new.bucket != expected.bucket || new.key != expected.key {
            return Err(ManifestError::Invalid(
                "an in-place update cannot move a version to another bucket or key".into(),
            ));
        }
        self.update_version(&expected.bucket, &expected.key, expected.version, |m| {
            if m != expected {
                return Err(Refusal::Conflict(format!(
                    "version {} of `{}` changed since it was read",
                    expected.version, expected.key
                ))
                .into());
            }
            *m = new.clone();
            Ok(())
        })
    }

    /// Replaces the access key `expected` with `new` if the stored key is still `expected`
    /// ([`Refusal::Conflict`] otherwise). Returns the new key, `None` if no key has that id.
    pub fn update_key_cas(
        &self,
        expected: &AccessKey,
        new: &AccessKey,
    ) -> Result<Option<AccessKey>, ManifestError> {
        self.update_key(&expected.id, |k| {
            if k != expected {
                return Err(Refusal::Conflict(format!(
                    "access key `{}` changed since it was read",
                    expected.id
                ))
                .into());
            }
            *k = new.clone();
            Ok(())
        })
    }
}

// ---- messages ----

/// A call to a node's manifest store: one variant per store operation.
// A request lives only while it is encoded or executed, one per call: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ManifestRequest {
    /// [`ManifestStore::create_bucket`] → `Done`.
    CreateBucket(Bucket),
    /// [`ManifestStore::get_bucket`] → `Bucket`.
    GetBucket(String),
    /// [`ManifestStore::list_buckets_page`] (`max` ≤ [`MAX_LIST`]) → `Buckets`.
    ListBuckets {
        /// Names strictly after this one.
        after: Option<String>,
        /// Most buckets.
        max: u32,
    },
    /// [`ManifestStore::update_bucket_cas`] → `UpdatedBucket`.
    UpdateBucket {
        /// The record the caller read.
        expected: Bucket,
        /// What replaces it.
        new: Bucket,
    },
    /// [`ManifestStore::delete_bucket`] → `Done`.
    DeleteBucket(String),
    /// [`ManifestStore::apply`] → `Applied`.
    Apply(VersionManifest),
    /// [`ManifestStore::apply_when`] → `Applied`.
    ApplyIf {
        /// The version to apply.
        manifest: VersionManifest,
        /// A multipart upload completed by this version (removed with its parts).
        upload_id: Option<String>,
        /// What the key's current object must satisfy.
        condition: WriteCondition,
    },
    /// [`ManifestStore::head`] → `Version`.
    Head {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// [`ManifestStore::current`] → `Version`.
    Current {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// [`ManifestStore::get_version`] → `Version`.
    GetVersion {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Version.
        version: VersionId,
    },
    /// [`ManifestStore::get_null_version`] → `Version`.
    GetNullVersion {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// [`ManifestStore::remove_version`] (no object-lock check) → `Version`.
    RemoveVersion {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Version.
        version: VersionId,
    },
    /// [`ManifestStore::remove_version_unless_locked`] → `Version`.
    RemoveVersionUnlessLocked {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Version.
        version: VersionId,
        /// The caller's time (unix ms), against which retention is checked.
        now_ms: u64,
        /// Governance retention may be bypassed.
        bypass_governance: bool,
    },
    /// [`ManifestStore::update_version_cas`] → `Version`.
    UpdateVersion {
        /// The record the caller read.
        expected: VersionManifest,
        /// What replaces it.
        new: VersionManifest,
    },
    /// [`ManifestStore::list_objects`] (`max_keys` ≤ [`MAX_LIST`]) → `Objects`.
    ListObjects {
        /// Bucket.
        bucket: String,
        /// The query.
        #[serde(with = "ListQueryDef")]
        query: ListQuery,
    },
    /// [`ManifestStore::list_versions`] (`max_keys` ≤ [`MAX_LIST`]) → `Versions`.
    ListVersions {
        /// Bucket.
        bucket: String,
        /// The query.
        #[serde(with = "VersionsQueryDef")]
        query: VersionsQuery,
    },
    /// [`ManifestStore::create_upload`] → `Done`.
    CreateUpload(Upload),
    /// [`ManifestStore::get_upload`] → `Upload`.
    GetUpload {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Upload id.
        upload_id: String,
    },
    /// [`ManifestStore::put_part`] → `Part`.
    PutPart {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Upload id.
        upload_id: String,
        /// The part.
        part: Part,
    },
    /// [`ManifestStore::list_parts`] (`max` ≤ [`MAX_LIST`]) → `Parts`.
    ListParts {
        /// Upload id.
        upload_id: String,
        /// Parts numbered after this one.
        after: u32,
        /// Most parts.
        max: u32,
    },
    /// [`ManifestStore::abort_upload`] → `Parts`.
    AbortUpload {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Upload id.
        upload_id: String,
    },
    /// [`ManifestStore::complete_upload`] → `Replaced`.
    CompleteUpload {
        /// Upload id.
        upload_id: String,
        /// The completed object.
        manifest: VersionManifest,
    },
    /// [`ManifestStore::list_uploads`] (`max_uploads` ≤ [`MAX_LIST`]) → `Uploads`.
    ListUploads {
        /// Bucket.
        bucket: String,
        /// The query.
        #[serde(with = "UploadsQueryDef")]
        query: UploadsQuery,
    },
    /// [`ManifestStore::changes_since`] (`max` ≤ [`MAX_CHANGES`]; fewer may come back, see
    /// [`RESPONSE_BUDGET`]) → `Changes`.
    ChangesSince {
        /// Changes with a larger sequence number.
        after: u64,
        /// Most changes.
        max: u32,
    },
    /// [`ManifestStore::put_key`] → `Done`.
    PutKey(AccessKey),
    /// [`ManifestStore::update_key_cas`] → `Key`.
    UpdateKey {
        /// The key the caller read.
        expected: AccessKey,
        /// What replaces it.
        new: AccessKey,
    },
    /// [`ManifestStore::get_key`] → `Key`.
    GetKey(String),
    /// [`ManifestStore::list_keys_page`] (`max` ≤ [`MAX_LIST`]) → `Keys`.
    ListKeys {
        /// Ids strictly after this one.
        after: Option<String>,
        /// Most keys.
        max: u32,
    },
    /// [`ManifestStore::delete_key`] → `Deleted`.
    DeleteKey(String),
    /// [`ManifestStore::stats`] → `Stats`.
    Stats,
    // ---- replication (see `crate::stamped`) ----
    /// [`ManifestStore::get_stamped`] of each (at most [`MAX_STAMPED`]) → `Stamped`.
    GetStamped(Vec<RecordId>),
    /// [`ManifestStore::put_stamped`] of each, in order (at most [`MAX_STAMPED`]) → `Written`,
    /// one result per write.
    PutStamped(Vec<StampedWrite>),
    /// [`ManifestStore::read_key`] → `KeyState`.
    ReadKey {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// The null version instead of the newest.
        null: bool,
    },
    /// [`ManifestStore::list_stamped_page`] (`max` ≤ [`MAX_LIST`]) → `StampedPage`.
    ListStamped {
        /// Access keys (`true`) or buckets.
        keys: bool,
        /// Names strictly after this one.
        after: Option<String>,
        /// Most records.
        max: u32,
    },
    /// [`ManifestStore::list_parts_stamped`] (`max` ≤ [`MAX_LIST`]) → `StampedParts`.
    ListPartsStamped {
        /// Upload id.
        upload_id: String,
        /// Parts numbered after this one.
        after: u32,
        /// Most parts.
        max: u32,
    },
    /// [`ManifestStore::synced_epoch`] → `SyncedEpoch`.
    SyncedEpoch,
    // ---- bounded history (see `crate::history`) ----
    /// [`ManifestStore::changes_for`] (`max` ≤ [`MAX_CHANGES`]; fewer may come back) →
    /// `ChangesFrom`.
    ChangesFor {
        /// The consumer reading (it acknowledges `after`).
        consumer: String,
        /// Changes with a larger sequence number.
        after: u64,
        /// Most changes.
        max: u32,
    },
    /// [`ManifestStore::hold_log`] → `LogHeld`.
    HoldLog(String),
    /// [`ManifestStore::release_log`] → `Done`.
    ReleaseLog(String),
    /// [`ManifestStore::history`] → `History`.
    History,
    /// [`ManifestStore::list_versions_stamped`] (`max` ≤ [`MAX_LIST`]) → `StampedPage`.
    ListVersionsStamped {
        /// Bucket.
        bucket: String,
        /// Versions and tombstones strictly after this key and version.
        after: Option<(String, VersionId)>,
        /// Most records.
        max: u32,
    },
    // ---- object reads (one round trip for a GET, see `ManifestBackend::read_object`) ----
    /// [`ManifestStore::read_object_stamped`] → `ObjectState`.
    ReadObject {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Which version.
        version: WantedVersion,
    },
    // ---- accounting ----
    /// [`ManifestStore::bucket_usage`] → `Usage`.
    BucketUsage(String),
    // ---- site links ----
    /// [`ManifestStore::count_siblings_of`] → `Siblings`.
    CountSiblings {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// The version whose siblings are counted (it need not be stored there).
        version: VersionId,
        /// The version it was made over.
        parent: Option<VersionId>,
    },
}

impl Versioned for ManifestRequest {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "manifest request";
}

impl Rpc for ManifestRequest {
    const SERVICE: &'static str = SERVICE;
    type Response = ManifestResponse;
}

/// The answer to a [`ManifestRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ManifestResponse {
    /// The operation succeeded and returns nothing.
    Done,
    /// A bucket, if it exists.
    Bucket(Option<Bucket>),
    /// A page of buckets, and whether more follow.
    Buckets {
        /// Buckets by name.
        buckets: Vec<Bucket>,
        /// More follow (resume after the last name).
        truncated: bool,
    },
    /// The bucket record after an update.
    UpdatedBucket(Bucket),
    /// What an apply did.
    Applied {
        /// The version was stored (`false`: it already was, or a newer null version exists).
        stored: bool,
        /// Null versions it replaced.
        replaced: Vec<VersionManifest>,
    },
    /// A version, if there is one.
    Version(Option<VersionManifest>),
    /// A page of current objects.
    Objects(#[serde(with = "ListPageDef")] ListPage),
    /// A page of versions.
    Versions(#[serde(with = "VersionsPageDef")] VersionsPage),
    /// A page of uploads.
    Uploads(#[serde(with = "UploadsPageDef")] UploadsPage),
    /// An upload, if it exists.
    Upload(Option<Upload>),
    /// The part a put replaced, if any.
    Part(Option<Part>),
    /// Parts, ascending.
    Parts(Vec<Part>),
    /// Null versions a completed upload replaced.
    Replaced(Vec<VersionManifest>),
    /// Change-log entries, ascending.
    Changes(Vec<Change>),
    /// An access key, if it exists.
    Key(Option<AccessKey>),
    /// A page of access keys, and whether more follow.
    Keys {
        /// Keys by id.
        keys: Vec<AccessKey>,
        /// More follow (resume after the last id).
        truncated: bool,
    },
    /// Whether something was deleted.
    Deleted(bool),
    /// The store's totals.
    Stats(#[serde(with = "ManifestStatsDef")] ManifestStats),
    /// The operation failed.
    Failed(WireError),
    /// Stamped records, one per id asked.
    Stamped(Vec<StampedRecord>),
    /// One result per stamped write.
    Written(Vec<Result<WriteOutcome, WireError>>),
    /// A replica's view of a key.
    KeyState(KeyState),
    /// A page of stamped buckets or keys.
    StampedPage {
        /// Records by name.
        records: Vec<StampedRecord>,
        /// More follow.
        truncated: bool,
    },
    /// Parts with their stamps.
    StampedParts(Vec<(VersionId, Part)>),
    /// The newest map epoch the store caught up under (0: none).
    SyncedEpoch(u64),
    /// Change-log entries, ascending, and the first sequence number the log still holds.
    ChangesFrom {
        /// The first sequence number held (the entries before it were trimmed).
        first: u64,
        /// The entries.
        changes: Vec<Change>,
    },
    /// Where a held log ended.
    LogHeld(u64),
    /// The change log's extent and consumers.
    History(HistoryState),
    /// A replica's view of a bucket's record and one of its versions (boxed: the largest
    /// answer by far; a box encodes as what it holds).
    ObjectState(Box<ObjectState>),
    /// A bucket's usage counters.
    Usage(crate::BucketUsage),
    /// How many siblings a version has.
    Siblings(u32),
}

impl Versioned for ManifestResponse {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "manifest response";
}

/// A store error as it travels: enough to rebuild the same [`ManifestError`] variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireError {
    /// [`ManifestError::NoSuchBucket`].
    NoSuchBucket(String),
    /// [`ManifestError::BucketExists`].
    BucketExists {
        /// Bucket name.
        name: String,
        /// Owner access key id.
        owner: String,
    },
    /// [`ManifestError::BucketNotEmpty`].
    BucketNotEmpty(String),
    /// [`ManifestError::NoSuchUpload`].
    NoSuchUpload(String),
    /// [`ManifestError::KeyExists`].
    KeyExists(String),
    /// [`ManifestError::Invalid`].
    Invalid(String),
    /// [`ManifestError::Locked`].
    Locked(String),
    /// [`Refusal::Conflict`].
    Conflict(String),
    /// [`Refusal::PreconditionFailed`].
    PreconditionFailed(String),
    /// [`Refusal::NoSuchKey`].
    NoSuchKey(String),
    /// [`Refusal::LimitExceeded`].
    LimitExceeded(String),
    /// Anything else (database, corrupt record, a failed handler), with its kind's wire code.
    Other {
        /// The error kind, as [`ErrorKind::code`] numbers it.
        kind: u8,
        /// The error's message.
        message: String,
    },
}

impl From<&ManifestError> for WireError {
    fn from(e: &ManifestError) -> Self {
        match e {
            ManifestError::NoSuchBucket(b) => WireError::NoSuchBucket(b.clone()),
            ManifestError::BucketExists { name, owner } => WireError::BucketExists {
                name: name.clone(),
                owner: owner.clone(),
            },
            ManifestError::BucketNotEmpty(b) => WireError::BucketNotEmpty(b.clone()),
            ManifestError::NoSuchUpload(u) => WireError::NoSuchUpload(u.clone()),
            ManifestError::KeyExists(k) => WireError::KeyExists(k.clone()),
            ManifestError::Invalid(m) => WireError::Invalid(m.clone()),
            ManifestError::Locked(m) => WireError::Locked(m.clone()),
            other => match other.refusal() {
                Some(Refusal::Conflict(m)) => WireError::Conflict(m.clone()),
                Some(Refusal::PreconditionFailed(m)) => WireError::PreconditionFailed(m.clone()),
                Some(Refusal::NoSuchKey(k)) => WireError::NoSuchKey(k.clone()),
                Some(Refusal::LimitExceeded(m)) => WireError::LimitExceeded(m.clone()),
                Some(Refusal::Remote { kind, message }) => WireError::Other {
                    kind: kind.code(),
                    message: message.clone(),
                },
                _ => WireError::Other {
                    kind: other.kind().code(),
                    message: other.to_string(),
                },
            },
        }
    }
}

impl From<WireError> for ManifestError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::NoSuchBucket(b) => ManifestError::NoSuchBucket(b),
            WireError::BucketExists { name, owner } => ManifestError::BucketExists { name, owner },
            WireError::BucketNotEmpty(b) => ManifestError::BucketNotEmpty(b),
            WireError::NoSuchUpload(u) => ManifestError::NoSuchUpload(u),
            WireError::KeyExists(k) => ManifestError::KeyExists(k),
            WireError::Invalid(m) => ManifestError::Invalid(m),
            WireError::Locked(m) => ManifestError::Locked(m),
            WireError::Conflict(m) => Refusal::Conflict(m).into(),
            WireError::PreconditionFailed(m) => Refusal::PreconditionFailed(m).into(),
            WireError::NoSuchKey(k) => Refusal::NoSuchKey(k).into(),
            WireError::LimitExceeded(m) => Refusal::LimitExceeded(m).into(),
            WireError::Other { kind, message } => Refusal::Remote {
                kind: ErrorKind::from_code(kind),
                message,
            }
            .into(),
        }
    }
}

// Wire shapes of the listing types (serde's remote derive: a field added to one of them fails
// to compile here until the format is revisited).

#[derive(Serialize, Deserialize)]
#[serde(remote = "ListQuery")]
struct ListQueryDef {
    prefix: String,
    delimiter: Option<String>,
    start_after: Option<String>,
    max_keys: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "ListPage")]
struct ListPageDef {
    objects: Vec<VersionManifest>,
    common_prefixes: Vec<String>,
    is_truncated: bool,
    next_marker: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "VersionsQuery")]
struct VersionsQueryDef {
    prefix: String,
    delimiter: Option<String>,
    key_marker: Option<String>,
    version_marker: Option<VersionId>,
    max_keys: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "VersionsPage")]
struct VersionsPageDef {
    versions: Vec<VersionManifest>,
    common_prefixes: Vec<String>,
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_version_marker: Option<VersionId>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "UploadsQuery")]
struct UploadsQueryDef {
    prefix: String,
    delimiter: Option<String>,
    key_marker: Option<String>,
    upload_id_marker: Option<String>,
    max_uploads: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "UploadsPage")]
struct UploadsPageDef {
    uploads: Vec<Upload>,
    common_prefixes: Vec<String>,
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "ManifestStats")]
struct ManifestStatsDef {
    buckets: u64,
    versions: u64,
    logical_bytes: u64,
    last_seq: u64,
}

// ---- bounds ----

/// Refuses a count over `limit` ([`Refusal::LimitExceeded`]).
fn bounded(what: &str, n: usize, limit: usize) -> Result<(), ManifestError> {
    if n > limit {
        return Err(Refusal::LimitExceeded(format!(
            "{what} of {n} entries asked: at most {limit} per call"
        ))
        .into());
    }
    Ok(())
}

/// Checks the counts a request asks for. Run by the caller before sending and by the server.
pub fn check_bounds(req: &ManifestRequest) -> Result<(), ManifestError> {
    let wide = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
    match req {
        ManifestRequest::ListBuckets { max, .. } => bounded("a bucket page", wide(*max), MAX_LIST),
        ManifestRequest::ListKeys { max, .. } => bounded("a key page", wide(*max), MAX_LIST),
        ManifestRequest::ListParts { max, .. } => bounded("a part listing", wide(*max), MAX_LIST),
        ManifestRequest::ChangesSince { max, .. } => {
            bounded("a change-log read", wide(*max), MAX_CHANGES)
        }
        ManifestRequest::ChangesFor { consumer, max, .. } => {
            crate::history::check_consumer(consumer)?;
            bounded("a change-log read", wide(*max), MAX_CHANGES)
        }
        ManifestRequest::HoldLog(consumer) | ManifestRequest::ReleaseLog(consumer) => {
            crate::history::check_consumer(consumer)
        }
        ManifestRequest::ListVersionsStamped { max, .. } => {
            bounded("a stamped version page", wide(*max), MAX_LIST)
        }
        ManifestRequest::ListObjects { query, .. } => {
            bounded("an object listing", query.max_keys, MAX_LIST)
        }
        ManifestRequest::ListVersions { query, .. } => {
            bounded("a version listing", query.max_keys, MAX_LIST)
        }
        ManifestRequest::ListUploads { query, .. } => {
            bounded("an upload listing", query.max_uploads, MAX_LIST)
        }
        ManifestRequest::GetStamped(ids) => bounded("a stamped read", ids.len(), MAX_STAMPED),
        ManifestRequest::PutStamped(ws) => bounded("a stamped write", ws.len(), MAX_STAMPED),
        ManifestRequest::ListStamped { max, .. } => bounded("a stamped page", wide(*max), MAX_LIST),
        ManifestRequest::ListPartsStamped { max, .. } => {
            bounded("a part listing", wide(*max), MAX_LIST)
        }
        _ => Ok(()),
    }
}

/// Keeps the leading records of `items` whose encodings fit in [`RESPONSE_BUDGET`] (at least
/// one); returns whether any were dropped.
fn fit<T: Versioned>(items: &mut Vec<T>) -> bool {
    let mut used = 0usize;
    let keep = items
        .iter()
        .position(|item| {
            used = used.saturating_add(item.encode().len());
            used > RESPONSE_BUDGET
        })
        .map_or(items.len(), |i| i.max(1));
    let dropped = keep < items.len();
    items.truncate(keep);
    dropped
}

/// Encoded bytes of a listing's records.
fn listed_bytes<T: Versioned>(items: &[T], prefixes: &[String]) -> usize {
    items
        .iter()
        .map(|i| i.encode().len())
        .chain(prefixes.iter().map(String::len))
        .fold(0, usize::saturating_add)
}

/// Runs a listing, halving its page until its records fit in [`RESPONSE_BUDGET`].
fn fitted_listing<P>(
    mut max: usize,
    mut list: impl FnMut(usize) -> Result<P, ManifestError>,
    size: impl Fn(&P) -> usize,
) -> Result<P, ManifestError> {
    loop {
        let page = list(max)?;
        if max <= 1 || size(&page) <= RESPONSE_BUDGET {
            return Ok(page);
        }
        max /= 2;
    }
}

// ---- serving ----

/// Serves a node's [`ManifestStore`] to the other nodes of its site.
pub struct ManifestService {
    store: Arc<ManifestStore>,
}

impl ManifestService {
    /// A service over `store`.
    pub fn new(store: Arc<ManifestStore>) -> Self {
        ManifestService { store }
    }
}

impl Service for ManifestService {
    type Request = ManifestRequest;

    async fn handle(
        &self,
        _peer: PeerInfo,
        req: ManifestRequest,
        _body: RecvBody,
    ) -> Result<(ManifestResponse, Option<SendBody>), RpcError> {
        let store = self.store.clone();
        let resp = match tokio::task::spawn_blocking(move || execute(&store, req)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => ManifestResponse::Failed(WireError::from(&e)),
            Err(e) => {
                return Err(RpcError::remote(
                    ErrorKind::Internal,
                    format!("manifest handler failed: {e}"),
                ))
            }
        };
        Ok((resp, None))
    }
}

/// Runs one request against the store (on a blocking thread).
pub fn execute(
    store: &ManifestStore,
    req: ManifestRequest,
) -> Result<ManifestResponse, ManifestError> {
    use ManifestRequest as Q;
    use ManifestResponse as A;
    check_bounds(&req)?;
    Ok(match req {
        Q::CreateBucket(b) => {
            store.create_bucket(&b)?;
            A::Done
        }
        Q::GetBucket(name) => A::Bucket(store.get_bucket(&name)?),
        Q::ListBuckets { after, max } => {
            let (mut buckets, mut truncated) =
                store.list_buckets_page(after.as_deref(), max as usize)?;
            truncated |= fit(&mut buckets);
            A::Buckets { buckets, truncated }
        }
        Q::UpdateBucket { expected, new } => {
            A::UpdatedBucket(store.update_bucket_cas(&expected, &new)?)
        }
        Q::DeleteBucket(name) => {
            store.delete_bucket(&name)?;
            A::Done
        }
        Q::Apply(m) => {
            let (stored, replaced) = store.apply(&m)?;
            A::Applied { stored, replaced }
        }
        Q::ApplyIf {
            manifest,
            upload_id,
            condition,
        } => {
            let (stored, replaced) =
                store.apply_when(&manifest, upload_id.as_deref(), &condition)?;
            A::Applied { stored, replaced }
        }
        Q::Head { bucket, key } => A::Version(store.head(&bucket, &key)?),
        Q::Current { bucket, key } => A::Version(store.current(&bucket, &key)?),
        Q::GetVersion {
            bucket,
            key,
            version,
        } => A::Version(store.get_version(&bucket, &key, version)?),
        Q::GetNullVersion { bucket, key } => A::Version(store.get_null_version(&bucket, &key)?),
        Q::RemoveVersion {
            bucket,
            key,
            version,
        } => A::Version(store.remove_version(&bucket, &key, version)?),
        Q::RemoveVersionUnlessLocked {
            bucket,
            key,
            version,
            now_ms,
            bypass_governance,
        } => A::Version(store.remove_version_unless_locked(
            &bucket,
            &key,
            version,
            now_ms,
            bypass_governance,
        )?),
        Q::UpdateVersion { expected, new } => {
            A::Version(store.update_version_cas(&expected, &new)?)
        }
        Q::ListObjects { bucket, query } => A::Objects(fitted_listing(
            query.max_keys,
            |max_keys| {
                store.list_objects(
                    &bucket,
                    &ListQuery {
                        max_keys,
                        ..query.clone()
                    },
                )
            },
            |p| listed_bytes(&p.objects, &p.common_prefixes),
        )?),
        Q::ListVersions { bucket, query } => A::Versions(fitted_listing(
            query.max_keys,
            |max_keys| {
                store.list_versions(
                    &bucket,
                    &VersionsQuery {
                        max_keys,
                        ..query.clone()
                    },
                )
            },
            |p| listed_bytes(&p.versions, &p.common_prefixes),
        )?),
        Q::CreateUpload(u) => {
            store.create_upload(&u)?;
            A::Done
        }
        Q::GetUpload {
            bucket,
            key,
            upload_id,
        } => A::Upload(store.get_upload(&bucket, &key, &upload_id)?),
        Q::PutPart {
            bucket,
            key,
            upload_id,
            part,
        } => A::Part(store.put_part(&bucket, &key, &upload_id, &part)?),
        Q::ListParts {
            upload_id,
            after,
            max,
        } => A::Parts(store.list_parts(&upload_id, after, max as usize)?),
        Q::AbortUpload {
            bucket,
            key,
            upload_id,
        } => A::Parts(store.abort_upload(&bucket, &key, &upload_id)?),
        Q::CompleteUpload {
            upload_id,
            manifest,
        } => A::Replaced(store.complete_upload(&upload_id, &manifest)?),
        Q::ListUploads { bucket, query } => A::Uploads(fitted_listing(
            query.max_uploads,
            |max_uploads| {
                store.list_uploads(
                    &bucket,
                    &UploadsQuery {
                        max_uploads,
                        ..query.clone()
                    },
                )
            },
            |p| listed_bytes(&p.uploads, &p.common_prefixes),
        )?),
        Q::ChangesSince { after, max } => {
            let mut changes = store.changes_since(after, max as usize)?;
            fit(&mut changes);
            A::Changes(changes)
        }
        Q::PutKey(k) => {
            store.put_key(&k)?;
            A::Done
        }
        Q::UpdateKey { expected, new } => A::Key(store.update_key_cas(&expected, &new)?),
        Q::GetKey(id) => A::Key(store.get_key(&id)?),
        Q::ListKeys { after, max } => {
            let (mut keys, mut truncated) = store.list_keys_page(after.as_deref(), max as usize)?;
            truncated |= fit(&mut keys);
            A::Keys { keys, truncated }
        }
        Q::DeleteKey(id) => A::Deleted(store.delete_key(&id)?),
        Q::Stats => A::Stats(store.stats()?),
        Q::BucketUsage(bucket) => A::Usage(store.bucket_usage(&bucket)?),
        Q::SyncedEpoch => A::SyncedEpoch(store.synced_epoch()?),
        Q::GetStamped(ids) => A::Stamped(
            ids.iter()
                .map(|id| store.get_stamped(id))
                .collect::<Result<_, _>>()?,
        ),
        Q::PutStamped(writes) => A::Written(
            writes
                .iter()
                .map(|w| store.put_stamped(w).map_err(|e| WireError::from(&e)))
                .collect(),
        ),
        Q::ReadKey { bucket, key, null } => A::KeyState(store.read_key(&bucket, &key, null)?),
        Q::ListStamped { keys, after, max } => {
            let (mut records, mut truncated) =
                store.list_stamped_page(keys, after.as_deref(), max as usize)?;
            truncated |= fit(&mut records);
            A::StampedPage { records, truncated }
        }
        Q::ListPartsStamped {
            upload_id,
            after,
            max,
        } => A::StampedParts(store.list_parts_stamped(&upload_id, after, max as usize)?),
        Q::ChangesFor {
            consumer,
            after,
            max,
        } => {
            let (first, mut changes) =
                store.changes_for(&consumer, after, max as usize, now_ms())?;
            fit(&mut changes);
            A::ChangesFrom { first, changes }
        }
        Q::HoldLog(consumer) => A::LogHeld(store.hold_log(&consumer, now_ms())?),
        Q::ReleaseLog(consumer) => {
            store.release_log(&consumer)?;
            A::Done
        }
        Q::History => A::History(store.history()?),
        Q::ListVersionsStamped { bucket, after, max } => {
            let after = after.as_ref().map(|(k, v)| (k.as_str(), *v));
            let (mut records, mut truncated) =
                store.list_versions_stamped(&bucket, after, max as usize)?;
            truncated |= fit(&mut records);
            A::StampedPage { records, truncated }
        }
        Q::ReadObject {
            bucket,
            key,
            version,
        } => A::ObjectState(Box::new(store.read_object_stamped(&bucket, &key, version)?)),
        Q::CountSiblings {
            bucket,
            key,
            version,
            parent,
        } => A::Siblings(store.count_siblings_of(&bucket, &key, version, parent)?),
    })
}

// ---- calling ----

/// A node's manifest store, reached over cairn-net: the store's operations as async calls.
/// Cheap to clone (it shares the client's connections).
#[derive(Clone)]
pub struct RemoteManifest {
    peer: Peer,
}

/// Unwraps the expected response variant, or fails with a protocol error naming the call.
macro_rules! expect {
    ($call:expr, $what:literal, $pat:pat => $out:expr) => {
        match $call {
            $pat => Ok($out),
            other => Err(unexpected($what, &other)),
        }
    };
}

/// A response of the wrong variant for its request: the peer does not speak this protocol.
fn unexpected(what: &str, resp: &ManifestResponse) -> ManifestError {
    Refusal::Transport(RpcError::Protocol(format!(
        "unexpected `{}` response to {what}",
        resp.variant()
    )))
    .into()
}

impl ManifestResponse {
    /// The variant's name, for messages.
    fn variant(&self) -> &'static str {
        match self {
            ManifestResponse::Done => "Done",
            ManifestResponse::Bucket(_) => "Bucket",
            ManifestResponse::Buckets { .. } => "Buckets",
            ManifestResponse::UpdatedBucket(_) => "UpdatedBucket",
            ManifestResponse::Applied { .. } => "Applied",
            ManifestResponse::Version(_) => "Version",
            ManifestResponse::Objects(_) => "Objects",
            ManifestResponse::Versions(_) => "Versions",
            ManifestResponse::Uploads(_) => "Uploads",
            ManifestResponse::Upload(_) => "Upload",
            ManifestResponse::Part(_) => "Part",
            ManifestResponse::Parts(_) => "Parts",
            ManifestResponse::Replaced(_) => "Replaced",
            ManifestResponse::Changes(_) => "Changes",
            ManifestResponse::Key(_) => "Key",
            ManifestResponse::Keys { .. } => "Keys",
            ManifestResponse::Deleted(_) => "Deleted",
            ManifestResponse::Stats(_) => "Stats",
            ManifestResponse::Failed(_) => "Failed",
            ManifestResponse::Stamped(_) => "Stamped",
            ManifestResponse::Written(_) => "Written",
            ManifestResponse::KeyState(_) => "KeyState",
            ManifestResponse::StampedPage { .. } => "StampedPage",
            ManifestResponse::StampedParts(_) => "StampedParts",
            ManifestResponse::SyncedEpoch(_) => "SyncedEpoch",
            ManifestResponse::ChangesFrom { .. } => "ChangesFrom",
            ManifestResponse::LogHeld(_) => "LogHeld",
            ManifestResponse::History(_) => "History",
            ManifestResponse::ObjectState(_) => "ObjectState",
            ManifestResponse::Usage(_) => "Usage",
            ManifestResponse::Siblings(_) => "Siblings",
        }
    }
}

impl RemoteManifest {
    /// The manifest store of the node `peer` calls.
    pub fn new(peer: Peer) -> Self {
        RemoteManifest { peer }
    }

    /// The peer this calls.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Sends `req` (checking its bounds first) and returns the store's answer; a store error
    /// comes back as its [`ManifestError`], a failed call as [`Refusal::Transport`].
    pub async fn call(&self, req: &ManifestRequest) -> Result<ManifestResponse, ManifestError> {
        check_bounds(req)?;
        match self.peer.call(req).await {
            Ok(ManifestResponse::Failed(e)) => Err(e.into()),
            Ok(resp) => Ok(resp),
            Err(e) => Err(Refusal::Transport(e).into()),
        }
    }

    // ---- buckets ----

    /// [`ManifestStore::create_bucket`].
    pub async fn create_bucket(&self, bucket: &Bucket) -> Result<(), ManifestError> {
        let resp = self
            .call(&ManifestRequest::CreateBucket(bucket.clone()))
            .await?;
        expect!(resp, "create_bucket", ManifestResponse::Done => ())
    }

    /// [`ManifestStore::get_bucket`].
    pub async fn get_bucket(&self, name: &str) -> Result<Option<Bucket>, ManifestError> {
        let resp = self
            .call(&ManifestRequest::GetBucket(name.to_string()))
            .await?;
        expect!(resp, "get_bucket", ManifestResponse::Bucket(b) => b)
    }

    /// [`ManifestStore::list_buckets_page`]: at most `max` (≤ [`MAX_LIST`]) buckets named after
    /// `after`, and whether more follow (the server may return fewer than `max`).
    pub async fn list_buckets_page(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<Bucket>, bool), ManifestError> {
        bounded("a bucket page", max, MAX_LIST)?;
        let req = ManifestRequest::ListBuckets {
            after: after.map(str::to_string),
            max: max as u32,
        };
        let resp = self.call(&req).await?;
        expect!(resp, "list_buckets", ManifestResponse::Buckets { buckets, truncated } => (buckets, truncated))
    }

    /// [`ManifestStore::list_buckets`]: every bucket, page by page; refused
    /// ([`Refusal::LimitExceeded`]) past [`MAX_COLLECTED`].
    pub async fn list_buckets(&self) -> Result<Vec<Bucket>, ManifestError> {
        let mut out: Vec<Bucket> = Vec::new();
        loop {
            let after = out.last().map(|b| b.name.as_str());
            let (page, more) = self.list_buckets_page(after, MAX_LIST).await?;
            let progressed = !page.is_empty();
            out.extend(page);
            bounded("a bucket listing", out.len(), MAX_COLLECTED)?;
            if !more || !progressed {
                return Ok(out);
            }
        }
    }

    /// [`ManifestStore::update_bucket`] as compare-and-swap: `new` replaces the stored record
    /// if it is still `expected` ([`Refusal::Conflict`] otherwise). Returns the new record.
    pub async fn update_bucket(
        &self,
        expected: &Bucket,
        new: &Bucket,
    ) -> Result<Bucket, ManifestError> {
        let req = ManifestRequest::UpdateBucket {
            expected: expected.clone(),
            new: new.clone(),
        };
        let resp = self.call(&req).await?;
        expect!(resp, "update_bucket", ManifestResponse::UpdatedBucket(b) => b)
    }

    /// [`ManifestStore::delete_bucket`].
    pub async fn delete_bucket(&self, name: &str) -> Result<(), ManifestError> {
        let resp = self
            .call(&ManifestRequest::DeleteBucket(name.to_string()))
            .await?;
        expect!(resp, "delete_bucket", ManifestResponse::Done => ())
    }

    // ---- versions ----

    /// [`ManifestStore::apply`].
    pub async fn apply(
        &self,
        m: &VersionManifest,
    ) -> Result<(bool, Vec<VersionManifest>), ManifestError> {
        let resp = self.call(&ManifestRequest::Apply(m.clone())).await?;
        expect!(resp, "apply", ManifestResponse::Applied { stored, replaced } => (stored, replaced))
    }

    /// [`ManifestStore::apply_if`] with its check as a [`WriteCondition`], run on the serving
    /// node under its write lock.
    pub async fn apply_if(
        &self,
        m: &VersionManifest,
        upload_id: Option<&str>,
        condition: &WriteCondition,
    ) -> Result<(bool, Vec<VersionManifest>), ManifestError> {
        let req = ManifestRequest::ApplyIf {
            manifest: m.clone(),
            upload_id: upload_id.map(str::to_string),
            condition: condition.clone(),
        };
        let resp = self.call(&req).await?;
        expect!(resp, "apply_if", ManifestResponse::Applied { stored, replaced } => (stored, replaced))
    }

    /// [`ManifestStore::head`].
    pub async fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let req = ManifestRequest::Head {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        let resp = self.call(&req).await?;
        expect!(resp, "head", ManifestResponse::Version(v) => v)
    }

    /// [`ManifestStore::current`].
    pub async fn current(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let req = ManifestRequest::Current {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        let resp = self.call(&req).await?;
        expect!(resp, "current", ManifestResponse::Version(v) => v)
    }

    /// [`ManifestStore::get_version`].
    pub async fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let req = ManifestRequest::GetVersion {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version,
        };
        let resp = self.call(&req).await?;
        expect!(resp, "get_version", ManifestResponse::Version(v) => v)
    }

    /// [`ManifestStore::get_null_version`].
    pub async fn get_null_version(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let req = ManifestRequest::GetNullVersion {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        let resp = self.call(&req).await?;
        expect!(resp, "get_null_version", ManifestResponse::Version(v) => v)
    }

    /// [`ManifestStore::remove_version`] (no object-lock check: clients use
    /// [`RemoteManifest::remove_version_unless_locked`]).
    pub async fn remove_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let req = ManifestRequest::RemoveVersion {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version,
        };
        let resp = self.call(&req).await?;
        expect!(resp, "remove_version", ManifestResponse::Version(v) => v)
    }

    /// [`ManifestStore::remove_version_unless_locked`]: object lock is checked on the serving
    /// node, under its write lock, against `now_ms`.
    pub async fn remove_version_unless_locked(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
        now_ms: u64,
        bypass_governance: bool,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let req = ManifestRequest::RemoveVersionUnlessLocked {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version,
            now_ms,
            bypass_governance,
        };
        let resp = self.call(&req).await?;
        expect!(resp, "remove_version_unless_locked", ManifestResponse::Version(v) => v)
    }

    /// [`ManifestStore::update_version`] as compare-and-swap: `new` replaces the stored record
    /// if it is still `expected` ([`Refusal::Conflict`] otherwise). `None` if the version does
    /// not exist.
    pub async fn update_version(
        &self,
        expected: &VersionManifest,
        new: &VersionManifest,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let req = ManifestRequest::UpdateVersion {
            expected: expected.clone(),
            new: new.clone(),
        };
        let resp = self.call(&req).await?;
        expect!(resp, "update_version", ManifestResponse::Version(v) => v)
    }

    /// [`ManifestStore::list_objects`] (`max_keys` ≤ [`MAX_LIST`]).
    pub async fn list_objects(
        &self,
        bucket: &str,
        q: &ListQuery,
    ) -> Result<ListPage, ManifestError> {
        let req = ManifestRequest::ListObjects {
            bucket: bucket.to_string(),
            query: q.clone(),
        };
        let resp = self.call(&req).await?;
        expect!(resp, "list_objects", ManifestResponse::Objects(p) => p)
    }

    /// [`ManifestStore::list_versions`] (`max_keys` ≤ [`MAX_LIST`]).
    pub async fn list_versions(
        &self,
        bucket: &str,
        q: &VersionsQuery,
    ) -> Result<VersionsPage, ManifestError> {
        let req = ManifestRequest::ListVersions {
            bucket: bucket.to_string(),
            query: q.clone(),
        };
        let resp = self.call(&req).await?;
        expect!(resp, "list_versions", ManifestResponse::Versions(p) => p)
    }

    // ---- multipart ----

    /// [`ManifestStore::create_upload`].
    pub async fn create_upload(&self, upload: &Upload) -> Result<(), ManifestError> {
        let resp = self
            .call(&ManifestRequest::CreateUpload(upload.clone()))
            .await?;
        expect!(resp, "create_upload", ManifestResponse::Done => ())
    }

    /// [`ManifestStore::get_upload`].
    pub async fn get_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<Upload>, ManifestError> {
        let req = ManifestRequest::GetUpload {
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
        };
        let resp = self.call(&req).await?;
        expect!(resp, "get_upload", ManifestResponse::Upload(u) => u)
    }

    /// [`ManifestStore::put_part`].
    pub async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: &Part,
    ) -> Result<Option<Part>, ManifestError> {
        let req = ManifestRequest::PutPart {
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            part: part.clone(),
        };
        let resp = self.call(&req).await?;
        expect!(resp, "put_part", ManifestResponse::Part(p) => p)
    }

    /// [`ManifestStore::list_parts`] (`max` ≤ [`MAX_LIST`]).
    pub async fn list_parts(
        &self,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<Vec<Part>, ManifestError> {
        bounded("a part listing", max, MAX_LIST)?;
        let req = ManifestRequest::ListParts {
            upload_id: upload_id.to_string(),
            after,
            max: max as u32,
        };
        let resp = self.call(&req).await?;
        expect!(resp, "list_parts", ManifestResponse::Parts(p) => p)
    }

    /// [`ManifestStore::abort_upload`].
    pub async fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<Part>, ManifestError> {
        let req = ManifestRequest::AbortUpload {
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
        };
        let resp = self.call(&req).await?;
        expect!(resp, "abort_upload", ManifestResponse::Parts(p) => p)
    }

    /// [`ManifestStore::complete_upload`].
    pub async fn complete_upload(
        &self,
        upload_id: &str,
        m: &VersionManifest,
    ) -> Result<Vec<VersionManifest>, ManifestError> {
        let req = ManifestRequest::CompleteUpload {
            upload_id: upload_id.to_string(),
            manifest: m.clone(),
        };
        let resp = self.call(&req).await?;
        expect!(resp, "complete_upload", ManifestResponse::Replaced(r) => r)
    }

    /// [`ManifestStore::list_uploads`] (`max_uploads` ≤ [`MAX_LIST`]).
    pub async fn list_uploads(
        &self,
        bucket: &str,
        q: &UploadsQuery,
    ) -> Result<UploadsPage, ManifestError> {
        let req = ManifestRequest::ListUploads {
            bucket: bucket.to_string(),
            query: q.clone(),
        };
        let resp = self.call(&req).await?;
        expect!(resp, "list_uploads", ManifestResponse::Uploads(p) => p)
    }

    // ---- change log ----

    /// [`ManifestStore::changes_since`] (`max` ≤ [`MAX_CHANGES`]). Fewer than `max` may come
    /// back even when more exist (the answer is kept under [`RESPONSE_BUDGET`]); only an empty
    /// answer means the caller is up to date.
    pub async fn changes_since(
        &self,
        after: u64,
        max: usize,
    ) -> Result<Vec<Change>, ManifestError> {
        bounded("a change-log read", max, MAX_CHANGES)?;
        let req = ManifestRequest::ChangesSince {
            after,
            max: max as u32,
        };
        let resp = self.call(&req).await?;
        expect!(resp, "changes_since", ManifestResponse::Changes(c) => c)
    }

    /// [`ManifestStore::changes_for`] (`max` ≤ [`MAX_CHANGES`]): the first sequence number the
    /// log holds and the changes after `after` (fewer than `max` may come back; only an empty
    /// answer means the caller is up to date).
    pub async fn changes_for(
        &self,
        consumer: &str,
        after: u64,
        max: usize,
    ) -> Result<(u64, Vec<Change>), ManifestError> {
        bounded("a change-log read", max, MAX_CHANGES)?;
        let req = ManifestRequest::ChangesFor {
            consumer: consumer.to_string(),
            after,
            max: max as u32,
        };
        let resp = self.call(&req).await?;
        expect!(resp, "changes_for", ManifestResponse::ChangesFrom { first, changes } => (first, changes))
    }

    /// [`ManifestStore::hold_log`].
    pub async fn hold_log(&self, consumer: &str) -> Result<u64, ManifestError> {
        let resp = self
            .call(&ManifestRequest::HoldLog(consumer.to_string()))
            .await?;
        expect!(resp, "hold_log", ManifestResponse::LogHeld(seq) => seq)
    }

    /// [`ManifestStore::release_log`].
    pub async fn release_log(&self, consumer: &str) -> Result<(), ManifestError> {
        let resp = self
            .call(&ManifestRequest::ReleaseLog(consumer.to_string()))
            .await?;
        expect!(resp, "release_log", ManifestResponse::Done => ())
    }

    /// [`ManifestStore::history`].
    pub async fn history(&self) -> Result<HistoryState, ManifestError> {
        let resp = self.call(&ManifestRequest::History).await?;
        expect!(resp, "history", ManifestResponse::History(h) => h)
    }

    // ---- access keys ----

    /// [`ManifestStore::put_key`].
    pub async fn put_key(&self, key: &AccessKey) -> Result<(), ManifestError> {
        let resp = self.call(&ManifestRequest::PutKey(key.clone())).await?;
        expect!(resp, "put_key", ManifestResponse::Done => ())
    }

    /// [`ManifestStore::update_key`] as compare-and-swap: `new` replaces the stored key if it
    /// is still `expected` ([`Refusal::Conflict`] otherwise). `None` if no key has that id.
    pub async fn update_key(
        &self,
        expected: &AccessKey,
        new: &AccessKey,
    ) -> Result<Option<AccessKey>, ManifestError> {
        let req = ManifestRequest::UpdateKey {
            expected: expected.clone(),
            new: new.clone(),
        };
        let resp = self.call(&req).await?;
        expect!(resp, "update_key", ManifestResponse::Key(k) => k)
    }

    /// [`ManifestStore::get_key`].
    pub async fn get_key(&self, id: &str) -> Result<Option<AccessKey>, ManifestError> {
        let resp = self.call(&ManifestRequest::GetKey(id.to_string())).await?;
        expect!(resp, "get_key", ManifestResponse::Key(k) => k)
    }

    /// [`ManifestStore::list_keys_page`]: at most `max` (≤ [`MAX_LIST`]) keys with ids after
    /// `after`, and whether more follow.
    pub async fn list_keys_page(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<AccessKey>, bool), ManifestError> {
        bounded("a key page", max, MAX_LIST)?;
        let req = ManifestRequest::ListKeys {
            after: after.map(str::to_string),
            max: max as u32,
        };
        let resp = self.call(&req).await?;
        expect!(resp, "list_keys", ManifestResponse::Keys { keys, truncated } => (keys, truncated))
    }

    /// [`ManifestStore::list_keys`]: every key, page by page; refused
    /// ([`Refusal::LimitExceeded`]) past [`MAX_COLLECTED`].
    pub async fn list_keys(&self) -> Result<Vec<AccessKey>, ManifestError> {
        let mut out: Vec<AccessKey> = Vec::new();
        loop {
            let after = out.last().map(|k| k.id.as_str());
            let (page, more) = self.list_keys_page(after, MAX_LIST).await?;
            let progressed = !page.is_empty();
            out.extend(page);
            bounded("a key listing", out.len(), MAX_COLLECTED)?;
            if !more || !progressed {
                return Ok(out);
            }
        }
    }

    /// [`ManifestStore::delete_key`].
    pub async fn delete_key(&self, id: &str) -> Result<bool, ManifestError> {
        let resp = self
            .call(&ManifestRequest::DeleteKey(id.to_string()))
            .await?;
        expect!(resp, "delete_key", ManifestResponse::Deleted(d) => d)
    }

    // ---- stats ----

    /// [`ManifestStore::stats`].
    pub async fn stats(&self) -> Result<ManifestStats, ManifestError> {
        let resp = self.call(&ManifestRequest::Stats).await?;
        expect!(resp, "stats", ManifestResponse::Stats(s) => s)
    }

    /// [`ManifestStore::bucket_usage`].
    pub async fn bucket_usage(&self, bucket: &str) -> Result<crate::BucketUsage, ManifestError> {
        let resp = self
            .call(&ManifestRequest::BucketUsage(bucket.to_string()))
            .await?;
        expect!(resp, "bucket_usage", ManifestResponse::Usage(u) => u)
    }

    // ---- site links ----

    /// [`ManifestStore::count_siblings`].
    pub async fn count_siblings(&self, m: &VersionManifest) -> Result<u32, ManifestError> {
        let resp = self
            .call(&ManifestRequest::CountSiblings {
                bucket: m.bucket.clone(),
                key: m.key.clone(),
                version: m.version,
                parent: m.parent,
            })
            .await?;
        expect!(resp, "count_siblings", ManifestResponse::Siblings(n) => n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_errors_keep_their_variant() {
        let cases = [
            ManifestError::NoSuchBucket("b".into()),
            ManifestError::BucketExists {
                name: "b".into(),
                owner: "o".into(),
            },
            ManifestError::BucketNotEmpty("b".into()),
            ManifestError::NoSuchUpload("u".into()),
            ManifestError::KeyExists("k".into()),
            ManifestError::Invalid("bad".into()),
            ManifestError::Locked("held".into()),
            Refusal::Conflict("c".into()).into(),
            Refusal::PreconditionFailed("p".into()).into(),
            Refusal::NoSuchKey("k".into()).into(),
            Refusal::LimitExceeded("l".into()).into(),
        ];
        for e in cases {
            let wire = WireError::from(&e);
            let back = ManifestError::from(
                ManifestResponse::decode(&ManifestResponse::Failed(wire).encode())
                    .map(|r| match r {
                        ManifestResponse::Failed(w) => w,
                        other => panic!("{other:?}"),
                    })
                    .unwrap(),
            );
            assert_eq!(format!("{e:?}"), format!("{back:?}"));
            assert_eq!(e.kind(), back.kind());
        }
        // A failure with no variant of its own keeps its kind and message.
        let e = ManifestError::Format(cairn_core::format::FormatError::Empty { what: "bucket" });
        let back = ManifestError::from(WireError::from(&e));
        assert_eq!(back.kind(), ErrorKind::Corrupt);
        assert!(back.to_string().contains("empty record"), "{back}");
    }

    #[test]
    fn conditions_follow_s3() {
        let m = VersionManifest {
            etag: "abc".into(),
            ..VersionManifest::delete_marker("b", "k", VersionId::new(1, 0, 1, 1), None, false, 1)
        };
        let none = WriteCondition::IfNoneMatchAny;
        assert!(none.check("k", None).is_ok());
        let e = none.check("k", Some(&m)).unwrap_err();
        assert!(
            matches!(e.refusal(), Some(Refusal::PreconditionFailed(_))),
            "{e:?}"
        );
        assert_eq!(e.kind(), ErrorKind::Conflict);
        for ok in ["abc", "\"abc\"", "W/\"abc\"", " * "] {
            assert!(
                WriteCondition::IfMatch(ok.into())
                    .check("k", Some(&m))
                    .is_ok(),
                "{ok}"
            );
        }
        let e = WriteCondition::IfMatch("abd".into())
            .check("k", Some(&m))
            .unwrap_err();
        assert!(
            matches!(e.refusal(), Some(Refusal::PreconditionFailed(_))),
            "{e:?}"
        );
        let e = WriteCondition::IfMatch("abc".into())
            .check("k", None)
            .unwrap_err();
        assert_eq!(e.refusal(), Some(&Refusal::NoSuchKey("k".into())));
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn a_response_of_the_wrong_kind_is_a_protocol_error() {
        let e = unexpected("stats", &ManifestResponse::Deleted(true));
        match e.refusal() {
            Some(Refusal::Transport(RpcError::Protocol(m))) => {
                assert_eq!(m, "unexpected `Deleted` response to stats")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.kind(), ErrorKind::Internal);
    }

    /// The object read on the wire: a request of each kind and a full answer go through
    /// unchanged; random bytes, every truncation and thousands of byte flips of valid
    /// encodings decode without panicking, and whatever decodes passes the server's bounds
    /// check; keys and bucket names the store refuses are refused before it reads anything.
    #[test]
    fn object_reads_survive_garbage_on_the_wire() {
        use rand::{Rng, SeedableRng};

        let version = VersionId::new(1, 0, 1, 1);
        let valid: Vec<ManifestRequest> = [
            WantedVersion::Newest,
            WantedVersion::Null,
            WantedVersion::Id(version),
        ]
        .into_iter()
        .map(|wanted| ManifestRequest::ReadObject {
            bucket: "b".into(),
            key: "some/key".into(),
            version: wanted,
        })
        .collect();
        let m = VersionManifest::delete_marker("b", "k", version, None, false, 1);
        let bucket = StampedRecord {
            id: RecordId::Bucket("b".into()),
            stamp: VersionId::new(2, 0, 1, 1),
            record: None,
            deleted: true,
        };
        let answers = [
            ObjectState {
                bucket: bucket.clone(),
                version: crate::VersionState::Key(KeyState {
                    found: Some(m.clone()),
                    stamp: version,
                    tombstones: vec![VersionId::new(3, 0, 1, 1)],
                }),
                siblings: 3,
            },
            ObjectState {
                bucket,
                version: crate::VersionState::Record(StampedRecord {
                    id: RecordId::Version {
                        bucket: "b".into(),
                        key: "k".into(),
                        version,
                    },
                    stamp: version,
                    record: Some(crate::Record::Version(m)),
                    deleted: false,
                }),
                siblings: 0,
            },
        ];
        for a in answers {
            let encoded = ManifestResponse::ObjectState(Box::new(a.clone())).encode();
            match ManifestResponse::decode(&encoded) {
                Ok(ManifestResponse::ObjectState(back)) => assert_eq!(*back, a),
                other => panic!("{other:?}"),
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for req in &valid {
            let bytes = req.encode();
            let back = ManifestRequest::decode(&bytes).unwrap();
            assert_eq!(format!("{back:?}"), format!("{req:?}"));
            assert!(check_bounds(&back).is_ok());
            inputs.extend((0..bytes.len()).map(|n| bytes[..n].to_vec()));
            for _ in 0..2_000 {
                let mut b = bytes.clone();
                let i = rng.gen_range(0..b.len());
                b[i] = rng.gen();
                inputs.push(b);
            }
        }
        for _ in 0..2_000 {
            let n = rng.gen_range(0..64);
            inputs.push((0..n).map(|_| rng.gen()).collect());
        }
        for bytes in inputs {
            if let Ok(req) = ManifestRequest::decode(&bytes) {
                let _ = check_bounds(&req);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = ManifestStore::open(dir.path(), crate::ManifestConfig::default()).unwrap();
        for (bucket, key) in [
            ("b".to_string(), "k".repeat(1025)),
            (String::new(), "k".to_string()),
            ("b\0".to_string(), "k".to_string()),
            ("b".repeat(64), "k".to_string()),
        ] {
            let req = ManifestRequest::ReadObject {
                bucket: bucket.clone(),
                key,
                version: WantedVersion::Newest,
            };
            assert!(execute(&store, req).is_err(), "{bucket:?}");
        }
    }

    /// The sibling count was added to `ObjectState` after it was first sent: an older build's
    /// answer (the same encoding without the count at its end) decodes with a count of 0,
    /// and an older build reads a newer answer (it stops before the count).
    #[test]
    fn an_object_state_decodes_across_the_sibling_count_both_ways() {
        use cairn_core::format::decode_body;

        /// `ObjectState` as builds before the sibling count encoded it.
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Before {
            bucket: StampedRecord,
            version: crate::VersionState,
        }
        impl Versioned for Before {
            const FORMAT: u8 = 1;
            const WHAT: &'static str = "object state before sibling counts";
        }
        /// `ObjectState` as this build encodes it, on its own.
        #[derive(Serialize, Deserialize)]
        struct Now(ObjectState);
        impl Versioned for Now {
            const FORMAT: u8 = 1;
            const WHAT: &'static str = "object state";
        }

        let version = VersionId::new(1, 0, 1, 1);
        let m = VersionManifest::delete_marker("b", "k", version, None, false, 1);
        let before = Before {
            bucket: StampedRecord {
                id: RecordId::Bucket("b".into()),
                stamp: VersionId::new(2, 0, 1, 1),
                record: None,
                deleted: false,
            },
            version: crate::VersionState::Key(KeyState {
                found: Some(m),
                stamp: version,
                tombstones: Vec::new(),
            }),
        };
        let now = ObjectState {
            bucket: before.bucket.clone(),
            version: before.version.clone(),
            siblings: 1,
        };
        let old_body = before.encode()[1..].to_vec();
        let new_body = Now(now.clone()).encode()[1..].to_vec();
        assert_eq!(
            new_body[..new_body.len() - 1],
            old_body[..],
            "the count is appended"
        );
        // This build reads an older replica's answer, alone and as the whole message.
        let read: ObjectState = decode_body("object state", &old_body).unwrap();
        assert_eq!(
            read,
            ObjectState {
                siblings: 0,
                ..now.clone()
            }
        );
        let mut message = ManifestResponse::ObjectState(Box::new(now.clone())).encode();
        message.pop();
        match ManifestResponse::decode(&message) {
            Ok(ManifestResponse::ObjectState(back)) => assert_eq!(back.siblings, 0),
            other => panic!("{other:?}"),
        }
        // An older build reads this build's answer.
        let read: Before = decode_body("object state", &new_body).unwrap();
        assert_eq!(read, before);
        // A message cut inside the fields before the count still fails.
        let cut = &old_body[..old_body.len() - 1];
        assert!(decode_body::<ObjectState>("object state", cut).is_err());
    }

    #[test]
    fn fit_keeps_at_least_one_and_stops_at_the_budget() {
        let big = Change {
            seq: 1,
            bucket: "b".into(),
            key: "k".repeat(RESPONSE_BUDGET / 3),
            version: VersionId::new(1, 0, 1, 1),
            delete_marker: false,
            removed: false,
        };
        let mut items = vec![big.clone(); 5];
        assert!(fit(&mut items));
        assert_eq!(items.len(), 2);
        let mut one = vec![Change {
            key: "k".repeat(RESPONSE_BUDGET + 1),
            ..big
        }];
        assert!(!fit(&mut one));
        assert_eq!(one.len(), 1);
        let mut none: Vec<Change> = Vec::new();
        assert!(!fit(&mut none));
    }
}
