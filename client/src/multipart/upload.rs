//! Starting, feeding, listing and abandoning uploads: each part is ingested into a tree of its
//! own.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_core::manifest::{ChecksumType, Encryption, Part, Upload};
use rand::distributions::{Alphanumeric, DistString};

use super::{upload_algorithm, MAX_PARTS, MAX_PART_SIZE};
use crate::checksum::{self, ChecksumAlgorithm};
use crate::client::{now_ms, Client};
use crate::objects::check_key;
use crate::put::IngestLimits;
use crate::{
    BodyStream, ChecksumRequest, ClientError, ExpectedChecksum, PartOptions, PutOptions,
    UploadsPage, UploadsQuery,
};

impl Client {
    /// Starts an upload. `checksum` is the algorithm every part carries and the final object's
    /// checksum type (S3's default for the algorithm when `None`); a type without an algorithm,
    /// or one the algorithm does not support, is InvalidRequest.
    pub async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        owner: &str,
        opts: PutOptions,
        checksum: (Option<ChecksumAlgorithm>, Option<ChecksumType>),
    ) -> Result<Upload, ClientError> {
        check_key(key)?;
        let checksum_type =
            match checksum {
                (None, None) => None,
                (None, Some(_)) => return Err(ClientError::InvalidRequest(
                    "a checksum type needs a checksum algorithm: send x-amz-checksum-algorithm too"
                        .into(),
                )),
                (Some(a), None) => Some(a.default_type()),
                (Some(a), Some(ChecksumType::FullObject)) if !a.supports_full_object() => {
                    return Err(ClientError::InvalidRequest(format!(
                        "the {a} algorithm supports only the COMPOSITE checksum type: use CRC32, \
                     CRC32C or CRC64NVME for FULL_OBJECT"
                    )))
                }
                (Some(a), Some(ChecksumType::Composite)) if !a.supports_composite() => {
                    return Err(ClientError::InvalidRequest(format!(
                        "the {a} algorithm supports only the FULL_OBJECT checksum type"
                    )))
                }
                (Some(_), t) => t,
            };
        let b = self.head_bucket(bucket).await?;
        let encryption = self
            .seal_for_bucket(&b, opts.encryption.as_ref())
            .await?
            .map(|(_, e)| e);
        let upload = Upload {
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: Alphanumeric.sample_string(&mut rand::thread_rng(), 32),
            initiated_ms: now_ms(),
            owner: owner.to_string(),
            headers: opts.headers,
            user_metadata: opts.user_metadata,
            tags: opts.tags,
            acl: opts.acl,
            lock: opts.lock,
            checksum_algorithm: checksum.0.map(|a| a.name().to_string()),
            checksum_type,
            encryption,
        };
        let u = upload.clone();
        self.blocking(move |i| Ok(i.meta.create_upload(&u)?))
            .await?;
        Ok(upload)
    }

    pub(crate) async fn upload_of(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
    ) -> Result<Upload, ClientError> {
        self.head_bucket(bucket).await?;
        let (b, k, u) = (bucket.to_string(), key.to_string(), id.to_string());
        self.blocking(move |i| {
            i.meta
                .get_upload(&b, &k, &u)?
                .ok_or(ClientError::NoSuchUpload(u))
        })
        .await
    }

    /// Stores a part (1..=10000); returns it (its ETag is the hex of `md5`).
    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: BodyStream,
        opts: PartOptions,
    ) -> Result<Part, ClientError> {
        self.upload_part_sealed(bucket, key, upload_id, part_number, body, opts)
            .await
            .map(|(part, _)| part)
    }

    /// [`Client::upload_part`], also returning how the upload encrypts its parts (what S3's
    /// UploadPart answer says).
    pub async fn upload_part_sealed(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: BodyStream,
        opts: PartOptions,
    ) -> Result<(Part, Option<Encryption>), ClientError> {
        self.check_space()?;
        if !(1..=MAX_PARTS).contains(&part_number) {
            return Err(ClientError::InvalidArgument(format!(
                "part number must be an integer between 1 and {MAX_PARTS}"
            )));
        }
        let upload = self.upload_of(bucket, key, upload_id).await?;
        let b = self.head_bucket(bucket).await?;
        self.precheck_quota(&b, None, opts.content_length).await?;
        // The upload's encryption seals every part (an SSE-C upload's parts send its key).
        let sealer = self
            .open_for(upload.encryption.as_ref(), opts.customer_key.as_ref())
            .await?;
        let algorithm = upload_algorithm(&upload)?;
        // Parts of an upload with an algorithm always carry it (computed if not sent).
        let request = match (algorithm, opts.checksum) {
            (Some(a), Some(c)) if c.algorithm != a => {
                return Err(ClientError::InvalidRequest(format!(
                    "this upload's parts carry {a} checksums, not {}: send x-amz-checksum-{}",
                    c.algorithm,
                    a.name()
                )))
            }
            (Some(a), None) => Some(ChecksumRequest {
                algorithm: a,
                expected: ExpectedChecksum::Compute,
            }),
            (_, c) => c,
        };
        let limits = IngestLimits {
            max_len: MAX_PART_SIZE,
            expected_len: opts.content_length,
            allow_inline: false,
            checksum: request.as_ref().map(|c| c.algorithm),
            sealer: sealer.clone(),
            owner: cairn_core::owner_tag(bucket),
        };
        let data = self
            .ingest(body, Arc::new(self.inner.cdc.clone()), limits)
            .await?;
        if opts.content_md5.is_some_and(|m| m != data.md5) {
            return Err(ClientError::BadDigest);
        }
        let mut checksums = BTreeMap::new();
        if let (Some(req), Some(digest)) = (&request, &data.checksum) {
            checksums.insert(
                req.algorithm.name().to_string(),
                checksum::verify(req, digest)?,
            );
        }
        let part = Part {
            number: part_number,
            md5: crate::crypt::shown_md5(&data.md5, sealer.as_ref(), upload.encryption.as_ref()),
            size: data.size,
            mtime_ms: now_ms(),
            content: data.content,
            checksums,
        };
        let (b, k, u, p) = (
            bucket.to_string(),
            key.to_string(),
            upload_id.to_string(),
            part.clone(),
        );
        self.blocking(move |i| Ok(i.meta.put_part(&b, &k, &u, &p)?))
            .await?;
        Ok((part, upload.encryption))
    }

    /// Abandons an upload and its parts.
    pub async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ClientError> {
        self.head_bucket(bucket).await?;
        let (b, k, u) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        self.blocking(move |i| {
            i.meta.abort_upload(&b, &k, &u)?;
            Ok(())
        })
        .await
    }

    /// The upload, its parts with number > `after` (at most `max`), and whether more follow.
    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Upload, Vec<Part>, bool), ClientError> {
        let upload = self.upload_of(bucket, key, upload_id).await?;
        let (b, u) = (bucket.to_string(), upload_id.to_string());
        let max = max.clamp(1, 1000);
        let parts = self
            .blocking(move |i| {
                let parts = i.meta.list_parts(&b, &u, after, max)?;
                let more = match parts.last() {
                    Some(last) if parts.len() == max => {
                        !i.meta.list_parts(&b, &u, last.number, 1)?.is_empty()
                    }
                    _ => false,
                };
                Ok((parts, more))
            })
            .await?;
        let (parts, more) = parts;
        Ok((upload, parts, more))
    }

    /// A page of uploads in progress.
    pub async fn list_uploads(
        &self,
        bucket: &str,
        q: &UploadsQuery,
    ) -> Result<UploadsPage, ClientError> {
        self.head_bucket(bucket).await?;
        let (b, q) = (bucket.to_string(), q.clone());
        self.blocking(move |i| Ok(i.meta.list_uploads(&b, &q)?))
            .await
    }
}
