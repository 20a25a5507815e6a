//! Metadata records: buckets, version manifests, multipart uploads and parts, change-log
//! entries and access keys. All are [`Versioned`] so their stored form can evolve.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::extent::Child;
use crate::format::{decode_body, FormatError, Versioned};
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
    /// Grants besides the owner's full control (S3 ACL).
    pub acl: Vec<Grant>,
    /// Bucket policy, the JSON document as accepted.
    pub policy: Option<String>,
    /// CORS rules; `None` when no configuration is set.
    pub cors: Option<Vec<CorsRule>>,
    /// Lifecycle rules; `None` when no configuration is set.
    pub lifecycle: Option<Vec<LifecycleRule>>,
    /// Bucket tags (empty: none set).
    pub tags: BTreeMap<String, String>,
    /// Object lock configuration; `None` when the bucket was created without object lock.
    pub object_lock: Option<ObjectLockConfig>,
    /// The ACL lists the owner's FULL_CONTROL first (always, unless an ACL was put whose
    /// grants leave it out: S3 then shows only the grants given).
    pub owner_grant: bool,
    /// When the record was last created or changed, by the writing site's clock: linked
    /// sites keep the record with the greatest revision (`None`: written before revisions).
    pub revision: Option<VersionId>,
    /// Default encryption of new objects that ask for none (PutBucketEncryption).
    pub encryption: Option<DefaultEncryption>,
    /// PublicAccessBlock settings (`None`: none put, nothing blocked).
    pub public_access_block: Option<PublicAccessBlock>,
    /// Object Ownership (`None`: none set, which behaves as [`ObjectOwnership::ObjectWriter`]).
    pub ownership: Option<ObjectOwnership>,
    /// Limits on what the bucket may hold (`cairn bucket quota`); `None`: no limits.
    pub quota: Option<BucketQuota>,
}

/// Limits on what a bucket holds, counted over every stored version (noncurrent versions
/// occupy storage too); delete markers count for neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketQuota {
    /// Most logical bytes (the sum of the stored versions' sizes).
    pub max_bytes: Option<u64>,
    /// Most stored object versions.
    pub max_objects: Option<u64>,
}

impl BucketQuota {
    /// Whether it limits anything.
    pub fn is_empty(&self) -> bool {
        self.max_bytes.is_none() && self.max_objects.is_none()
    }
}

/// A bucket's PublicAccessBlock configuration (PutPublicAccessBlock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    /// Refuse ACLs that grant to everyone or to any signed request.
    pub block_public_acls: bool,
    /// Decide access as if stored ACLs had no public grants.
    pub ignore_public_acls: bool,
    /// Refuse bucket policies that are public.
    pub block_public_policy: bool,
    /// While the policy is public, it gives access only to the owner's account.
    pub restrict_public_buckets: bool,
}

/// Who owns the objects written to a bucket and whether ACLs apply (Object Ownership).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectOwnership {
    /// ACLs are disabled; the bucket owner owns every object.
    BucketOwnerEnforced,
    /// Objects written with the `bucket-owner-full-control` canned ACL go to the bucket owner.
    BucketOwnerPreferred,
    /// The writer owns what it writes.
    ObjectWriter,
}

impl ObjectOwnership {
    /// The S3 name of the setting.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectOwnership::BucketOwnerEnforced => "BucketOwnerEnforced",
            ObjectOwnership::BucketOwnerPreferred => "BucketOwnerPreferred",
            ObjectOwnership::ObjectWriter => "ObjectWriter",
        }
    }

    /// Parses an S3 name; `None` for anything else.
    pub fn parse(s: &str) -> Option<ObjectOwnership> {
        match s {
            "BucketOwnerEnforced" => Some(ObjectOwnership::BucketOwnerEnforced),
            "BucketOwnerPreferred" => Some(ObjectOwnership::BucketOwnerPreferred),
            "ObjectWriter" => Some(ObjectOwnership::ObjectWriter),
            _ => None,
        }
    }
}

/// A bucket's default server-side encryption.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DefaultEncryption {
    /// SSE-S3 (`AES256`).
    Site {
        /// `BucketKeyEnabled` as it was put (kept and shown; it changes nothing here).
        bucket_key: bool,
    },
    /// SSE-KMS under a key of the site's key manager (`None`: its default key).
    Kms {
        /// The KMS key's id, alias or ARN, as put.
        key_id: Option<String>,
        /// `BucketKeyEnabled` as it was put.
        bucket_key: bool,
    },
}

impl Bucket {
    /// A new bucket with no configuration beyond its owner.
    pub fn new(name: &str, owner: &str, created_ms: u64) -> Bucket {
        Bucket {
            name: name.to_string(),
            created_ms,
            owner: owner.to_string(),
            versioning: Versioning::Unversioned,
            acl: Vec::new(),
            policy: None,
            cors: None,
            lifecycle: None,
            tags: BTreeMap::new(),
            object_lock: None,
            owner_grant: true,
            revision: None,
            encryption: None,
            public_access_block: None,
            ownership: None,
            quota: None,
        }
    }

    /// Whether ACLs are disabled (Object Ownership is BucketOwnerEnforced).
    pub fn acls_disabled(&self) -> bool {
        self.ownership == Some(ObjectOwnership::BucketOwnerEnforced)
    }
}

impl Versioned for Bucket {
    const FORMAT: u8 = 7;
    const WHAT: &'static str = "bucket";

    fn decode_older(version: u8, body: &[u8]) -> Option<Result<Self, FormatError>> {
        match version {
            1 => Some(decode_body::<v1::Bucket>(Self::WHAT, body).map(|b| Bucket {
                versioning: b.versioning,
                ..Bucket::new(&b.name, &b.owner, b.created_ms)
            })),
            2 => Some(decode_body::<v2::Bucket>(Self::WHAT, body).map(Into::into)),
            // Format 4 added `revision`, unknown for older records, format 5 `encryption`
            // (none before), format 6 `public_access_block` and `ownership` (none) and format
            // 7 `quota` (none): all last, each `None` one zero byte.
            3..=6 => {
                let mut full = body.to_vec();
                if version == 3 {
                    full.push(0);
                }
                if version <= 4 {
                    full.push(0);
                }
                if version <= 5 {
                    full.extend([0, 0]);
                }
                full.push(0);
                Some(decode_body::<Bucket>(Self::WHAT, &full))
            }
            _ => None,
        }
    }
}

/// Who an ACL grant is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grantee {
    /// One access key (S3's canonical user id is the access key id).
    Key(String),
    /// Everyone, signed or not.
    AllUsers,
    /// Any request signed with a valid key.
    AuthenticatedUsers,
}

/// What an ACL grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    /// List a bucket / read an object.
    Read,
    /// Write objects into a bucket.
    Write,
    /// Read the ACL.
    ReadAcp,
    /// Write the ACL.
    WriteAcp,
    /// All of the above.
    FullControl,
}

/// One ACL grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Who.
    pub grantee: Grantee,
    /// What.
    pub permission: Permission,
}

/// One CORS rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    /// Rule id.
    pub id: Option<String>,
    /// Origins (`*` wildcards allowed, at most one per origin).
    pub allowed_origins: Vec<String>,
    /// Methods (GET, PUT, POST, DELETE, HEAD).
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for (`*` wildcards allowed).
    pub allowed_headers: Vec<String>,
    /// Response headers the browser may expose.
    pub expose_headers: Vec<String>,
    /// Preflight cache time.
    pub max_age_seconds: Option<i32>,
}

/// Which objects a lifecycle rule applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleFilter {
    /// Key prefix (empty: all keys).
    pub prefix: String,
    /// Tags the object must all have.
    pub tags: BTreeMap<String, String>,
    /// Only objects larger than this.
    pub size_greater_than: Option<u64>,
    /// Only objects smaller than this.
    pub size_less_than: Option<u64>,
}

/// One lifecycle rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRule {
    /// Rule id.
    pub id: Option<String>,
    /// `Status` is Enabled.
    pub enabled: bool,
    /// Which objects.
    pub filter: LifecycleFilter,
    /// Expire current versions this many days after creation.
    pub expiration_days: Option<u32>,
    /// Expire current versions from this date (unix ms, midnight UTC).
    pub expiration_date_ms: Option<u64>,
    /// Remove delete markers that have no older versions left.
    pub expired_object_delete_marker: bool,
    /// Remove noncurrent versions this many days after they became noncurrent.
    pub noncurrent_days: Option<u32>,
    /// Keep this many newest noncurrent versions regardless of age.
    pub newer_noncurrent_versions: Option<u32>,
    /// Abort multipart uploads this many days after they were started.
    pub abort_incomplete_multipart_days: Option<u32>,
    /// The rule named its prefix the older way (a `Prefix` beside `Status`, not in a
    /// `Filter`), and is shown back that way.
    pub legacy_prefix: bool,
}

/// Object lock retention mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockMode {
    /// Holders of the bypass permission may shorten or remove the retention.
    Governance,
    /// Nobody can shorten or remove it until it passes.
    Compliance,
}

/// A bucket's object lock configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLockConfig {
    /// Default retention for new versions: mode and period.
    pub default_retention: Option<DefaultRetention>,
}

/// A bucket's default retention period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRetention {
    /// Mode.
    pub mode: LockMode,
    /// Period in days (S3 also allows years: stored as given).
    pub days: Option<u32>,
    /// Period in years.
    pub years: Option<u32>,
}

impl ObjectLockConfig {
    /// The lock state of a new version in a bucket with this configuration (`None`: a bucket
    /// without object lock): what the request asked for, else the default retention from
    /// `now_ms`. A bucket without object lock refuses any lock.
    pub fn lock_new_version(
        config: Option<&ObjectLockConfig>,
        asked: ObjectLock,
        now_ms: u64,
    ) -> Result<ObjectLock, &'static str> {
        let Some(config) = config else {
            if asked != ObjectLock::default() {
                return Err(
                    "Bucket is missing Object Lock Configuration: create the bucket \
                            with object lock enabled to lock objects",
                );
            }
            return Ok(asked);
        };
        if asked.retention.is_some() {
            return Ok(asked);
        }
        let retention = config.default_retention.as_ref().map(|d| Retention {
            mode: d.mode,
            until_ms: now_ms.saturating_add(d.period_ms()),
        });
        Ok(ObjectLock { retention, ..asked })
    }
}

impl DefaultRetention {
    /// The period in milliseconds (a year counts 365 days).
    pub fn period_ms(&self) -> u64 {
        let days = u64::from(self.days.unwrap_or(0)) + 365 * u64::from(self.years.unwrap_or(0));
        days.saturating_mul(86_400_000)
    }
}

/// A version's retention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Mode.
    pub mode: LockMode,
    /// Retain until (unix ms).
    pub until_ms: u64,
}

/// A version's object lock state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLock {
    /// Retention, if set.
    pub retention: Option<Retention>,
    /// Legal hold on.
    pub legal_hold: bool,
}

impl ObjectLock {
    /// Whether the version cannot be deleted at `now_ms` (`bypass`: governance retention may be
    /// bypassed by the caller).
    pub fn protects(&self, now_ms: u64, bypass: bool) -> bool {
        self.legal_hold
            || self
                .retention
                .as_ref()
                .is_some_and(|r| r.until_ms > now_ms && !(bypass && r.mode == LockMode::Governance))
    }
}

/// How a multipart object's checksum was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumType {
    /// Checksum of the whole object's bytes.
    FullObject,
    /// Checksum of the parts' checksums, shown with a `-N` suffix.
    Composite,
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
    /// Access key id of the writer.
    pub owner: String,
    /// Grants besides the owner's full control (S3 ACL).
    pub acl: Vec<Grant>,
    /// Retention and legal hold.
    pub lock: ObjectLock,
    /// How `checksums` were computed, for multipart objects.
    pub checksum_type: Option<ChecksumType>,
    /// The ACL lists the owner's FULL_CONTROL first (see [`Bucket::owner_grant`]).
    pub owner_grant: bool,
    /// How the content is encrypted at rest (server-side encryption), if it is.
    pub encryption: Option<Encryption>,
}

/// How an object's content is encrypted at rest: its chunks (and inline bytes) are sealed
/// under the key of a domain (see the client's `crypt` module); the tree is not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encryption {
    /// SSE-S3 (`AES256`): sealed under the site's master keys.
    Site,
    /// SSE-C: sealed under a key the customer sends with every request; only a salted digest
    /// of it is kept, to check the key of a read.
    Customer {
        /// Random salt of the digest.
        salt: [u8; 16],
        /// Keyed BLAKE3 of the key under the salt.
        digest: [u8; 32],
    },
    /// SSE-KMS (`aws:kms`): sealed under a key of the site's key manager.
    Kms {
        /// The KMS key's id.
        key_id: String,
        /// The encryption context the write gave (base64 of a JSON object), if any.
        context: Option<String>,
        /// `BucketKeyEnabled` as the write asked (kept and shown).
        bucket_key: bool,
    },
}

impl Versioned for VersionManifest {
    const FORMAT: u8 = 4;
    const WHAT: &'static str = "version manifest";

    fn decode_older(version: u8, body: &[u8]) -> Option<Result<Self, FormatError>> {
        match version {
            1 => Some(decode_body::<v1::VersionManifest>(Self::WHAT, body).map(Into::into)),
            // Format 3 added `owner_grant`, which every older record had on, and format 4
            // `encryption` (none before): both last.
            2 | 3 => {
                let mut full = body.to_vec();
                if version == 2 {
                    full.push(1);
                }
                full.push(0);
                Some(decode_body::<VersionManifest>(Self::WHAT, &full))
            }
            _ => None,
        }
    }
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
            owner: String::new(),
            acl: Vec::new(),
            lock: ObjectLock::default(),
            checksum_type: None,
            owner_grant: true,
            encryption: None,
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
    /// ACL for the final object.
    pub acl: Vec<Grant>,
    /// Object lock state for the final object.
    pub lock: ObjectLock,
    /// Checksum algorithm the parts carry (e.g. `crc32c`), if one was asked for.
    pub checksum_algorithm: Option<String>,
    /// Full-object or composite checksum for the final object.
    pub checksum_type: Option<ChecksumType>,
    /// How the parts and the final object are encrypted at rest, if they are.
    pub encryption: Option<Encryption>,
}

impl Versioned for Upload {
    const FORMAT: u8 = 3;
    const WHAT: &'static str = "multipart upload";

    fn decode_older(version: u8, body: &[u8]) -> Option<Result<Self, FormatError>> {
        // Format 3 added one last field, `encryption`.
        if version == 2 {
            let mut full = body.to_vec();
            full.push(0);
            return Some(decode_body::<Upload>(Self::WHAT, &full));
        }
        (version == 1).then(|| {
            decode_body::<v1::Upload>(Self::WHAT, body).map(|u| Upload {
                bucket: u.bucket,
                key: u.key,
                upload_id: u.upload_id,
                initiated_ms: u.initiated_ms,
                owner: u.owner,
                headers: u.headers,
                user_metadata: u.user_metadata,
                tags: u.tags,
                acl: Vec::new(),
                lock: ObjectLock::default(),
                checksum_algorithm: None,
                checksum_type: None,
                encryption: None,
            })
        })
    }
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
    /// Checksums of the part's bytes by algorithm name, base64.
    pub checksums: BTreeMap<String, String>,
}

impl Versioned for Part {
    const FORMAT: u8 = 2;
    const WHAT: &'static str = "multipart part";

    fn decode_older(version: u8, body: &[u8]) -> Option<Result<Self, FormatError>> {
        (version == 1).then(|| {
            decode_body::<v1::Part>(Self::WHAT, body).map(|p| Part {
                number: p.number,
                md5: p.md5,
                size: p.size,
                mtime_ms: p.mtime_ms,
                content: p.content,
                checksums: BTreeMap::new(),
            })
        })
    }
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
    /// Permissions on buckets this key does not own, by bucket name.
    pub grants: BTreeMap<String, KeyGrant>,
    /// Request and bandwidth limits of S3 requests signed with this key (`cairn key limit`).
    #[serde(default)]
    pub limits: KeyLimits,
}

/// How much an access key may ask of the S3 gateway (`cairn key limit`); `None` is no limit.
/// Each gateway enforces them on its own requests: a site with several gateways lets a key
/// use each one's allowance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimits {
    /// Requests per second, with a burst of one second's worth.
    #[serde(default)]
    pub requests_per_sec: Option<u64>,
    /// Body bytes per second, in and out together, with a burst of one second's worth.
    #[serde(default)]
    pub bytes_per_sec: Option<u64>,
}

impl KeyLimits {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        self.requests_per_sec.is_none() && self.bytes_per_sec.is_none()
    }
}

/// What a key may do in a bucket it does not own (`cairn key allow`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrant {
    /// List and read objects.
    pub read: bool,
    /// Write and delete objects.
    pub write: bool,
    /// Everything the owner may do, bucket configuration included.
    pub owner: bool,
}

impl Versioned for AccessKey {
    const FORMAT: u8 = 3;
    const WHAT: &'static str = "access key";

    fn decode_older(version: u8, body: &[u8]) -> Option<Result<Self, FormatError>> {
        match version {
            1 => Some(
                decode_body::<v1::AccessKey>(Self::WHAT, body).map(|k| AccessKey {
                    id: k.id,
                    secret: k.secret,
                    name: k.name,
                    created_ms: k.created_ms,
                    grants: BTreeMap::new(),
                    limits: KeyLimits::default(),
                }),
            ),
            // Format 3 added `limits` (none before).
            2 => Some(decode_body::<v2::AccessKey>(Self::WHAT, body).map(Into::into)),
            _ => None,
        }
    }
}

/// Format 1 of the records whose format changed, read so that data written by earlier builds
/// stays readable.
mod v1 {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Bucket {
        pub name: String,
        pub created_ms: u64,
        pub owner: String,
        pub versioning: Versioning,
    }

    #[derive(Deserialize)]
    pub(super) struct VersionManifest {
        pub bucket: String,
        pub key: String,
        pub version: VersionId,
        pub parent: Option<VersionId>,
        pub null_version: bool,
        pub delete_marker: bool,
        pub mtime_ms: u64,
        pub size: u64,
        pub etag: String,
        pub headers: ContentHeaders,
        pub user_metadata: BTreeMap<String, String>,
        pub tags: BTreeMap<String, String>,
        pub checksums: BTreeMap<String, String>,
        pub parts: Option<u32>,
        pub content: Content,
    }

    impl From<VersionManifest> for super::VersionManifest {
        fn from(m: VersionManifest) -> Self {
            super::VersionManifest {
                bucket: m.bucket,
                key: m.key,
                version: m.version,
                parent: m.parent,
                null_version: m.null_version,
                delete_marker: m.delete_marker,
                mtime_ms: m.mtime_ms,
                size: m.size,
                etag: m.etag,
                headers: m.headers,
                user_metadata: m.user_metadata,
                tags: m.tags,
                checksums: m.checksums,
                parts: m.parts,
                content: m.content,
                owner: String::new(),
                acl: Vec::new(),
                lock: ObjectLock::default(),
                checksum_type: None,
                owner_grant: true,
                encryption: None,
            }
        }
    }

    #[derive(Deserialize)]
    pub(super) struct Upload {
        pub bucket: String,
        pub key: String,
        pub upload_id: String,
        pub initiated_ms: u64,
        pub owner: String,
        pub headers: ContentHeaders,
        pub user_metadata: BTreeMap<String, String>,
        pub tags: BTreeMap<String, String>,
    }

    #[derive(Deserialize)]
    pub(super) struct Part {
        pub number: u32,
        pub md5: [u8; 16],
        pub size: u64,
        pub mtime_ms: u64,
        pub content: Content,
    }

    #[derive(Deserialize)]
    pub(super) struct AccessKey {
        pub id: String,
        pub secret: String,
        pub name: String,
        pub created_ms: u64,
    }
}

/// Format 2 of the bucket record (before `owner_grant` and the lifecycle rules'
/// `legacy_prefix`) and of the access key (before `limits`).
mod v2 {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub(super) struct AccessKey {
        pub id: String,
        pub secret: String,
        pub name: String,
        pub created_ms: u64,
        pub grants: BTreeMap<String, KeyGrant>,
    }

    impl From<AccessKey> for super::AccessKey {
        fn from(k: AccessKey) -> Self {
            super::AccessKey {
                id: k.id,
                secret: k.secret,
                name: k.name,
                created_ms: k.created_ms,
                grants: k.grants,
                limits: KeyLimits::default(),
            }
        }
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Bucket {
        pub name: String,
        pub created_ms: u64,
        pub owner: String,
        pub versioning: Versioning,
        pub acl: Vec<Grant>,
        pub policy: Option<String>,
        pub cors: Option<Vec<CorsRule>>,
        pub lifecycle: Option<Vec<LifecycleRule>>,
        pub tags: BTreeMap<String, String>,
        pub object_lock: Option<ObjectLockConfig>,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct LifecycleRule {
        pub id: Option<String>,
        pub enabled: bool,
        pub filter: LifecycleFilter,
        pub expiration_days: Option<u32>,
        pub expiration_date_ms: Option<u64>,
        pub expired_object_delete_marker: bool,
        pub noncurrent_days: Option<u32>,
        pub newer_noncurrent_versions: Option<u32>,
        pub abort_incomplete_multipart_days: Option<u32>,
    }

    impl From<Bucket> for super::Bucket {
        fn from(b: Bucket) -> Self {
            super::Bucket {
                name: b.name,
                created_ms: b.created_ms,
                owner: b.owner,
                versioning: b.versioning,
                acl: b.acl,
                policy: b.policy,
                cors: b.cors,
                lifecycle: b.lifecycle.map(|rules| {
                    rules
                        .into_iter()
                        .map(|r| super::LifecycleRule {
                            id: r.id,
                            enabled: r.enabled,
                            filter: r.filter,
                            expiration_days: r.expiration_days,
                            expiration_date_ms: r.expiration_date_ms,
                            expired_object_delete_marker: r.expired_object_delete_marker,
                            noncurrent_days: r.noncurrent_days,
                            newer_noncurrent_versions: r.newer_noncurrent_versions,
                            abort_incomplete_multipart_days: r.abort_incomplete_multipart_days,
                            legacy_prefix: false,
                        })
                        .collect()
                }),
                tags: b.tags,
                object_lock: b.object_lock,
                owner_grant: true,
                revision: None,
                encryption: None,
                public_access_block: None,
                ownership: None,
                quota: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_records_still_decode() {
        #[derive(Serialize)]
        struct OldBucket<'a> {
            name: &'a str,
            created_ms: u64,
            owner: &'a str,
            versioning: Versioning,
        }
        let mut old = vec![1u8];
        old.extend(
            postcard::to_allocvec(&OldBucket {
                name: "b1",
                created_ms: 5,
                owner: "K",
                versioning: Versioning::Enabled,
            })
            .unwrap(),
        );
        let b = Bucket::decode(&old).unwrap();
        assert_eq!(b.name, "b1");
        assert_eq!(b.versioning, Versioning::Enabled);
        assert!(b.acl.is_empty() && b.cors.is_none() && b.object_lock.is_none());
        let now = Bucket::new("b2", "K", 9);
        assert_eq!(Bucket::decode(&now.encode()).unwrap(), now);
        assert!(Bucket::decode(&[3, 0]).is_err());
    }

    #[test]
    fn format_2_records_still_decode() {
        let old = v2::Bucket {
            name: "b1".into(),
            created_ms: 5,
            owner: "K".into(),
            versioning: Versioning::Enabled,
            acl: vec![Grant {
                grantee: Grantee::AllUsers,
                permission: Permission::Read,
            }],
            policy: Some("{}".into()),
            cors: None,
            lifecycle: Some(vec![v2::LifecycleRule {
                id: Some("r".into()),
                enabled: true,
                filter: LifecycleFilter {
                    prefix: "logs/".into(),
                    ..Default::default()
                },
                expiration_days: Some(3),
                expiration_date_ms: None,
                expired_object_delete_marker: false,
                noncurrent_days: None,
                newer_noncurrent_versions: None,
                abort_incomplete_multipart_days: Some(1),
            }]),
            tags: BTreeMap::new(),
            object_lock: None,
        };
        let mut bytes = vec![2u8];
        bytes.extend(postcard::to_allocvec(&old).unwrap());
        let b = Bucket::decode(&bytes).unwrap();
        assert!(b.owner_grant);
        assert_eq!(b.acl.len(), 1);
        let rule = &b.lifecycle.as_ref().unwrap()[0];
        assert_eq!(rule.filter.prefix, "logs/");
        assert_eq!(rule.abort_incomplete_multipart_days, Some(1));
        assert!(!rule.legacy_prefix);
        let now = Bucket {
            owner_grant: false,
            ..b.clone()
        };
        assert_eq!(Bucket::decode(&now.encode()).unwrap(), now);
        // A format-3 bucket is a format-7 one without its last five fields (no revision, no
        // encryption, no public access block, no ownership, no quota), a format-4 one without
        // the last four, a format-5 one without the last three, a format-6 one without the last.
        let mut bytes = now.encode();
        bytes[0] = 6;
        assert_eq!(bytes.pop(), Some(0), "quota is last");
        assert_eq!(Bucket::decode(&bytes).unwrap(), now);
        bytes[0] = 5;
        assert_eq!(bytes.pop(), Some(0), "ownership is last");
        assert_eq!(bytes.pop(), Some(0), "public_access_block is before it");
        assert_eq!(Bucket::decode(&bytes).unwrap(), now);
        bytes[0] = 4;
        assert_eq!(bytes.pop(), Some(0), "encryption is last");
        assert_eq!(Bucket::decode(&bytes).unwrap(), now);
        bytes[0] = 3;
        assert_eq!(bytes.pop(), Some(0), "revision is before it");
        assert_eq!(Bucket::decode(&bytes).unwrap(), now);
        let encrypted = Bucket {
            encryption: Some(DefaultEncryption::Site { bucket_key: true }),
            ..now.clone()
        };
        assert_eq!(Bucket::decode(&encrypted.encode()).unwrap(), encrypted);
        let revised = Bucket {
            revision: Some(VersionId(9)),
            ..now
        };
        assert_eq!(Bucket::decode(&revised.encode()).unwrap(), revised);
        let blocked = Bucket {
            public_access_block: Some(PublicAccessBlock {
                block_public_acls: true,
                restrict_public_buckets: true,
                ..Default::default()
            }),
            ownership: Some(ObjectOwnership::BucketOwnerEnforced),
            ..revised
        };
        assert_eq!(Bucket::decode(&blocked.encode()).unwrap(), blocked);
        assert!(blocked.acls_disabled());
        let limited = Bucket {
            quota: Some(BucketQuota {
                max_bytes: Some(1 << 30),
                max_objects: None,
            }),
            ..blocked
        };
        assert_eq!(Bucket::decode(&limited.encode()).unwrap(), limited);

        // A format-2 version manifest is a format-3 one without its last field.
        let mut m = VersionManifest::delete_marker("b1", "k", VersionId(7), None, false, 9);
        m.owner = "K".into();
        let mut bytes = m.encode();
        bytes[0] = 2;
        assert_eq!(bytes.pop(), Some(0), "encryption is last");
        assert_eq!(bytes.pop(), Some(1), "owner_grant is before it");
        assert_eq!(VersionManifest::decode(&bytes).unwrap(), m);
        m.owner_grant = false;
        assert_eq!(VersionManifest::decode(&m.encode()).unwrap(), m);
        // A format-3 one lacks only `encryption`.
        let mut bytes = m.encode();
        bytes[0] = 3;
        assert_eq!(bytes.pop(), Some(0));
        assert_eq!(VersionManifest::decode(&bytes).unwrap(), m);
        m.encryption = Some(Encryption::Customer {
            salt: [1; 16],
            digest: [2; 32],
        });
        assert_eq!(VersionManifest::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn format_2_access_keys_still_decode_without_limits() {
        let mut grants = BTreeMap::new();
        grants.insert(
            "photos".to_string(),
            KeyGrant {
                read: true,
                ..KeyGrant::default()
            },
        );
        let old = v2::AccessKey {
            id: "CK1".into(),
            secret: "s3cr3t-s3cr3t".into(),
            name: "app".into(),
            created_ms: 5,
            grants: grants.clone(),
        };
        let mut bytes = vec![2u8];
        bytes.extend(postcard::to_allocvec(&old).unwrap());
        let k = AccessKey::decode(&bytes).unwrap();
        assert_eq!(
            (k.id.as_str(), k.name.as_str(), k.created_ms),
            ("CK1", "app", 5)
        );
        assert_eq!(k.grants, grants);
        assert!(k.limits.is_empty());

        let mut bytes = vec![1u8];
        bytes.extend(postcard::to_allocvec(&("CK2", "s3cr3t-s3cr3t", "old", 7u64)).unwrap());
        let k = AccessKey::decode(&bytes).unwrap();
        assert_eq!(k.id, "CK2");
        assert!(k.grants.is_empty() && k.limits.is_empty());

        let limited = AccessKey {
            limits: KeyLimits {
                requests_per_sec: Some(100),
                bytes_per_sec: Some(1 << 20),
            },
            ..k
        };
        assert_eq!(AccessKey::decode(&limited.encode()).unwrap(), limited);
    }

    #[test]
    fn lock_protects_until_it_passes() {
        let mut l = ObjectLock {
            retention: Some(Retention {
                mode: LockMode::Governance,
                until_ms: 100,
            }),
            legal_hold: false,
        };
        assert!(l.protects(99, false));
        assert!(!l.protects(99, true), "governance can be bypassed");
        assert!(!l.protects(100, false));
        l.retention.as_mut().unwrap().mode = LockMode::Compliance;
        assert!(l.protects(99, true), "compliance cannot be bypassed");
        l.legal_hold = true;
        assert!(l.protects(1000, true));
    }
}
