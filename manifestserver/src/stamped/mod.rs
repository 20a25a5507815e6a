//! Stamped records: what replicas exchange so that they converge.
//!
//! Versions are immutable, so replicas converge by union, except that a removed version leaves a
//! tombstone (column family `removed`, kept for good: they are small) and is never applied
//! again. Everything that changes in place — bucket records, access keys, a version's metadata
//! (tags, ACL, retention, legal hold), uploads and parts — carries a revision stamp (column
//! family `stamps`: kind byte + record key → 16-byte stamp + flags), taken by the writing
//! coordinator from a hybrid logical clock. A replica keeps the write with the greater stamp and
//! ignores a stale one; a deleted bucket, key or upload keeps its stamp with a "deleted" flag so
//! that an older copy elsewhere does not bring it back. Records written by the plain store
//! methods (single-node use) have no stamp entry: their stamp is 0 ([`VersionId::MIN`]).
//!
//! [`ManifestStore::get_stamped`], [`ManifestStore::put_stamped`], [`ManifestStore::read_key`],
//! [`ManifestStore::read_object_stamped`] and the stamped listings are what
//! [`crate::ReplicatedManifests`] calls on each replica (through the manifest service, or
//! directly for this node's store).

use cairn_core::format::Versioned;
use cairn_core::manifest::{AccessKey, Bucket, Part, Upload, VersionManifest};
use cairn_core::VersionId;
use rocksdb::{Direction, IteratorMode, ReadOptions};
use serde::{Deserialize, Serialize};

use crate::db::{
    Txn, CF_BUCKETS, CF_KEYS, CF_META, CF_PARTS, CF_REMOVED, CF_STAMPS, CF_UPLOADS, CF_VERSIONS,
};
use crate::error::Refusal;
use crate::keys;
use crate::{ManifestError, ManifestStore, WantedVersion};

mod store;
#[cfg(test)]
pub(crate) mod tests;

/// Most records one stamped read or write call carries.
pub const MAX_STAMPED: usize = 256;
/// Most tombstone ids one [`KeyState`] carries.
pub const MAX_TOMBSTONES: usize = 1000;
/// The stamp of a removed version: it beats every other stamp (a version id is never reused).
pub const TOMBSTONE: VersionId = VersionId(u128::MAX);

const KIND_BUCKET: u8 = b'b';
const KIND_KEY: u8 = b'k';
const KIND_VERSION: u8 = b'v';
const KIND_UPLOAD: u8 = b'u';
const KIND_PART: u8 = b'p';
const FLAG_DELETED: u8 = 1;
/// Prefix of anti-entropy cursors in `meta`.
const CURSOR_PREFIX: &[u8] = b"ae-cursor/";
/// Key in `meta` of the newest map epoch anti-entropy has caught up under.
const SYNCED_EPOCH: &[u8] = b"ae-synced-epoch";

/// Which record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordId {
    /// A bucket record.
    Bucket(String),
    /// An access key.
    Key(String),
    /// A version (its metadata may change in place; removing it leaves a tombstone).
    Version {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Version.
        version: VersionId,
    },
    /// A multipart upload.
    Upload {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Upload id.
        upload_id: String,
    },
    /// A part of an upload.
    Part {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Upload id.
        upload_id: String,
        /// Part number.
        number: u32,
    },
}

/// A record of any kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A bucket.
    Bucket(Bucket),
    /// An access key.
    Key(AccessKey),
    /// A version.
    Version(VersionManifest),
    /// An upload.
    Upload(Upload),
    /// A part.
    Part(Part),
}

/// A record as one replica holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StampedRecord {
    /// Which record.
    pub id: RecordId,
    /// Its stamp ([`VersionId::MIN`] when it never had one, [`TOMBSTONE`] for a removed
    /// version).
    pub stamp: VersionId,
    /// The record, if the replica holds it.
    pub record: Option<Record>,
    /// The replica knows it was deleted (a tombstone), as opposed to never having seen it.
    pub deleted: bool,
}

impl Versioned for StampedRecord {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "stamped record";
}

impl StampedRecord {
    /// Orders answers: the greater stamp wins, and at equal stamps knowing something beats
    /// knowing nothing.
    pub fn rank(&self) -> (VersionId, bool) {
        (self.stamp, self.record.is_some() || self.deleted)
    }
}

/// What a stamped write requires of the stored record.
// Lives only while one write is encoded or executed: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StampCheck {
    /// Nothing: the write wins if its stamp is greater than the stored one (replication).
    None,
    /// The record must not exist (`BucketExists`, `KeyExists`): create.
    Absent,
    /// The record must exist (`NoSuchBucket`, `NoSuchUpload`); deleting a bucket also needs it
    /// empty (`BucketNotEmpty`); a part needs its upload.
    Exists,
    /// Compare-and-swap: the stored record and stamp must be these ([`Refusal::Conflict`]).
    Is {
        /// The stamp read.
        stamp: VersionId,
        /// The record read.
        record: Record,
    },
    /// Removing a version: refused ([`ManifestError::Locked`]) if object lock protects it at
    /// `now_ms`.
    Unlocked {
        /// The caller's time.
        now_ms: u64,
        /// Governance retention may be bypassed.
        bypass_governance: bool,
    },
}

/// One stamped write: `record` (or its deletion, `None`) at `stamp`, if `check` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StampedWrite {
    /// Which record.
    pub id: RecordId,
    /// The new record; `None` deletes it (a version: removes it and leaves a tombstone).
    pub record: Option<Record>,
    /// The write's stamp.
    pub stamp: VersionId,
    /// What must hold first.
    pub check: StampCheck,
}

/// What a stamped write did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// Something changed (`false`: the write was stale, or a no-op).
    pub applied: bool,
    /// The stamp stored with the record: the write's, or for a checked write whose stamp was
    /// not above the stored one, the stored stamp's successor.
    pub stamp: VersionId,
    /// The record before the write.
    pub previous: Option<Record>,
    /// Null versions a version write replaced.
    pub replaced: Vec<VersionManifest>,
    /// Parts an upload deletion removed.
    pub parts: Vec<Part>,
}

/// One replica's view of a key: its newest version (or its null version) and the versions
/// newer than that it removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// The newest version (delete markers included), or the null version.
    pub found: Option<VersionManifest>,
    /// Its stamp.
    pub stamp: VersionId,
    /// Tombstoned version ids of the key newer than `found` (all of them when `found` is
    /// `None`), newest first, at most [`MAX_TOMBSTONES`].
    pub tombstones: Vec<VersionId>,
}

/// One replica's answer to a read of an object ([`ManifestStore::read_object_stamped`]): the
/// bucket's record and the version asked for, each as the replica holds it, so the reader
/// merges each the way it merges a read of it alone.
///
/// An RPC answer only, never stored. `siblings` came later and is encoded last, so answers
/// keep working across builds both ways: an older reader stops before it (postcard leaves
/// trailing bytes alone) and an answer of an older replica, which ends before it, decodes
/// with a count of 0 (the hand-written `Deserialize` below).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectState {
    /// The bucket's record with its stamp.
    pub bucket: StampedRecord,
    /// The version.
    pub version: VersionState,
    /// With [`crate::WantedVersion::Newest`]: how many siblings the newest version has on
    /// this replica ([`ManifestStore::count_siblings`]); otherwise 0.
    pub siblings: u32,
}

impl<'de> Deserialize<'de> for ObjectState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = ObjectState;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object state")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ObjectState, A::Error> {
                use serde::de::Error;
                let bucket = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let version = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                // An older replica's answer ends here (the read hits the end of the message).
                let siblings = seq.next_element().ok().flatten().unwrap_or(0);
                Ok(ObjectState {
                    bucket,
                    version,
                    siblings,
                })
            }
        }
        d.deserialize_struct("ObjectState", &["bucket", "version", "siblings"], Fields)
    }
}

/// The version part of an [`ObjectState`].
// One per answer, only while it is decoded and merged: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionState {
    /// The newest or the null version, with the key's tombstones
    /// ([`crate::WantedVersion::Newest`], [`crate::WantedVersion::Null`]).
    Key(KeyState),
    /// One version by id, with its stamp ([`crate::WantedVersion::Id`]).
    Record(StampedRecord),
}

impl Default for WriteOutcome {
    fn default() -> Self {
        WriteOutcome {
            applied: false,
            stamp: VersionId::MIN,
            previous: None,
            replaced: Vec::new(),
            parts: Vec::new(),
        }
    }
}

/// The stamp key of a version stored under `vkey`.
pub(crate) fn version_stamp_key(vkey: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(vkey.len() + 1);
    out.push(KIND_VERSION);
    out.extend_from_slice(vkey);
    out
}

fn stamp_key(kind: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(kind);
    out.extend_from_slice(key);
    out
}

fn encode_stamp(stamp: VersionId, deleted: bool) -> Vec<u8> {
    let mut out = stamp.to_be_bytes().to_vec();
    out.push(if deleted { FLAG_DELETED } else { 0 });
    out
}

fn decode_stamp(v: &[u8]) -> Result<(VersionId, bool), ManifestError> {
    if v.len() != 17 {
        return Err(keys::corrupt(
            "record stamp",
            format!("{} bytes, expected 17", v.len()),
        ));
    }
    let mut b = [0u8; 16];
    b.copy_from_slice(&v[..16]);
    Ok((VersionId::from_be_bytes(b), v[16] & FLAG_DELETED != 0))
}

fn mismatch(what: &str) -> ManifestError {
    ManifestError::Invalid(format!(
        "a stamped write's record does not match its id ({what})"
    ))
}

fn conflict(id: &RecordId) -> ManifestError {
    Refusal::Conflict(format!("{id:?} changed since it was read")).into()
}

/// The stamp a checked write stores: its own, or past the stored one.
fn checked_stamp(asked: VersionId, stored: VersionId) -> VersionId {
    if asked > stored {
        asked
    } else {
        VersionId(stored.0.saturating_add(1))
    }
}
