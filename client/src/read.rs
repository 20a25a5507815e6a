//! Object reads: the one metadata read a GET or HEAD makes — the bucket's record and the
//! version the request names, together (on a multi-node site one quorum call to the bucket's
//! replicas, which hold both) — and what S3 answers from it.

use cairn_core::manifest::{Bucket, VersionManifest};
use cairn_manifestserver::WantedVersion;

use crate::client::Client;
use crate::crypt::CustomerKey;
use crate::get::resolve_range;
use crate::objects::{check_key, shown_version};
use crate::{version_label, ClientError, GetResult, PutResult, RangeSpec, VersionSel};

/// A bucket's record and the version a request names, read together
/// ([`Client::read_object`]): what GET and HEAD serve, and what the S3 gateway's access check
/// decides with before the operation runs (which then serves it without reading again).
#[derive(Clone, Debug)]
pub struct ObjectRead {
    /// The bucket's record.
    pub bucket: Bucket,
    key: String,
    version: VersionSel,
    /// [`VersionSel::Current`]: the key's newest version, delete markers included; otherwise
    /// the version named, if it exists.
    found: Option<VersionManifest>,
    /// [`VersionSel::Current`]: how many siblings the newest version has (written over the
    /// same parent at another site; the S3 gateway shows it as `x-cairn-siblings`).
    pub siblings: u32,
    /// The customer key the request sent (SSE-C), checked against the version's.
    pub(crate) customer_key: Option<CustomerKey>,
}

impl ObjectRead {
    /// Whether this read answers a request for `version` of `key` in `bucket`.
    pub fn is_for(&self, bucket: &str, key: &str, version: &VersionSel) -> bool {
        self.bucket.name == bucket && self.key == key && &self.version == version
    }

    /// The version to serve, or S3's answer for its absence: `NoSuchKey` (naming the delete
    /// marker that hides the key, if one does), `NoSuchVersion`, or `MethodNotAllowed` for a
    /// version named by id (or `null`) that is a delete marker.
    pub fn manifest(&self) -> Result<&VersionManifest, ClientError> {
        match (&self.found, &self.version) {
            (Some(m), VersionSel::Current) if !m.delete_marker => Ok(m),
            (found, VersionSel::Current) => Err(ClientError::NoSuchKey {
                key: self.key.clone(),
                delete_marker: found.as_ref().map(version_label),
            }),
            (Some(m), _) if m.delete_marker => Err(ClientError::MethodNotAllowed {
                version: version_label(m),
            }),
            (Some(m), _) => Ok(m),
            (None, sel) => Err(ClientError::NoSuchVersion {
                key: self.key.clone(),
                version: sel.label().unwrap_or_default(),
            }),
        }
    }

    /// The customer-provided key (SSE-C) the request sent with the read, if any: needed to
    /// read (or head) an object stored with one, refused for any other.
    pub fn with_customer_key(mut self, key: Option<CustomerKey>) -> ObjectRead {
        self.customer_key = key;
        self
    }

    /// The bucket's record and the version to serve ([`ObjectRead::manifest`]).
    pub fn into_version(self) -> Result<(Bucket, VersionManifest), ClientError> {
        self.manifest()?;
        let m = self.found.expect("manifest() found a version");
        Ok((self.bucket, m))
    }
}

impl Client {
    /// Reads a bucket's record and the version of `key` a request names at once: one call
    /// to the metadata backend (on a multi-node site, one quorum read). `NoSuchBucket` when
    /// the bucket does not exist, whatever the key holds; a missing version is not an error
    /// here but [`ObjectRead::manifest`]'s answer, so a caller can decide access first.
    pub async fn read_object(
        &self,
        bucket: &str,
        key: &str,
        version: &VersionSel,
    ) -> Result<ObjectRead, ClientError> {
        check_key(key)?;
        let wanted = match version {
            VersionSel::Current => WantedVersion::Newest,
            VersionSel::Null => WantedVersion::Null,
            VersionSel::Id(v) => WantedVersion::Id(*v),
        };
        let (b, k) = (bucket.to_string(), key.to_string());
        let found = self
            .blocking(move |i| Ok(i.meta.read_object(&b, &k, wanted)?))
            .await?;
        let Some(record) = found.bucket else {
            return Err(ClientError::NoSuchBucket(bucket.to_string()));
        };
        Ok(ObjectRead {
            bucket: record,
            key: key.to_string(),
            version: version.clone(),
            found: found.version,
            siblings: found.siblings,
            customer_key: None,
        })
    }

    /// The version a request names, with its bucket's record, or the S3 error for its
    /// absence.
    pub(crate) async fn resolve_version(
        &self,
        bucket: &str,
        key: &str,
        version: &VersionSel,
    ) -> Result<(Bucket, VersionManifest), ClientError> {
        self.read_object(bucket, key, version).await?.into_version()
    }

    /// Streams an object (or a range of it).
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version: &VersionSel,
        range: Option<RangeSpec>,
    ) -> Result<GetResult, ClientError> {
        let read = self.read_object(bucket, key, version).await?;
        self.get_object_from(read, range).await
    }

    /// [`Client::get_object`] of what `read` found: no metadata is read again.
    pub async fn get_object_from(
        &self,
        read: ObjectRead,
        range: Option<RangeSpec>,
    ) -> Result<GetResult, ClientError> {
        let key = read.customer_key.clone();
        let (b, m) = read.into_version()?;
        let sealer = self.open_for(m.encryption.as_ref(), key.as_ref()).await?;
        let (start, end) = match range {
            Some(r) => resolve_range(r, m.size)?,
            None => (0, m.size),
        };
        let body = self.read_range(&m.content, start, end, sealer);
        Ok(GetResult {
            version_id: shown_version(&b, &m),
            range: range.map(|_| (start, end)),
            manifest: m,
            body,
        })
    }

    /// The version a GET would serve, without its body (its metadata only: no customer key
    /// is asked for, unlike [`Client::head_object_from`], which answers S3's HEAD).
    pub async fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version: &VersionSel,
    ) -> Result<PutResult, ClientError> {
        let (b, m) = self
            .read_object(bucket, key, version)
            .await?
            .into_version()?;
        Ok(PutResult {
            version_id: shown_version(&b, &m),
            manifest: m,
        })
    }

    /// [`Client::head_object`] of what `read` found: no metadata is read again. An object
    /// stored with a customer key needs that key, as its GET does.
    pub async fn head_object_from(&self, read: ObjectRead) -> Result<PutResult, ClientError> {
        let key = read.customer_key.clone();
        let (b, m) = read.into_version()?;
        self.open_for(m.encryption.as_ref(), key.as_ref()).await?;
        Ok(PutResult {
            version_id: shown_version(&b, &m),
            manifest: m,
        })
    }
}
