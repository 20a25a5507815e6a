//! Multipart uploads: parts are stored as trees of their own, and completion builds the
//! object's tree over the parts' roots, so no part data is copied.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_core::extent::TreeBuilder;
use cairn_core::manifest::{Content, Part, Upload, VersionManifest};
use md5::{Digest, Md5};
use rand::distributions::{Alphanumeric, DistString};

use crate::client::{now_ms, Client};
use crate::objects::check_key;
use crate::put::IngestLimits;
use crate::{
    BodyStream, ClientError, PartOptions, PutOptions, PutResult, UploadsPage, UploadsQuery,
};

/// Smallest part but the last (S3's limit).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Largest part.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// Highest part number.
pub const MAX_PARTS: u32 = 10_000;

impl Client {
    /// Starts an upload.
    pub async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        owner: &str,
        opts: PutOptions,
    ) -> Result<Upload, ClientError> {
        check_key(key)?;
        self.head_bucket(bucket).await?;
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
            checksum_algorithm: None,
            checksum_type: None,
        };
        let u = upload.clone();
        self.blocking(move |i| Ok(i.meta.create_upload(&u)?))
            .await?;
        Ok(upload)
    }

    async fn upload_of(&self, bucket: &str, key: &str, id: &str) -> Result<Upload, ClientError> {
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
        if !(1..=MAX_PARTS).contains(&part_number) {
            return Err(ClientError::InvalidArgument(format!(
                "part number must be an integer between 1 and {MAX_PARTS}"
            )));
        }
        self.upload_of(bucket, key, upload_id).await?;
        let limits = IngestLimits {
            max_len: MAX_PART_SIZE,
            expected_len: opts.content_length,
            allow_inline: false,
        };
        let data = self
            .ingest(body, Arc::new(self.inner.cdc.clone()), limits)
            .await?;
        if opts.content_md5.is_some_and(|m| m != data.md5) {
            return Err(ClientError::BadDigest);
        }
        let part = Part {
            number: part_number,
            md5: data.md5,
            size: data.size,
            mtime_ms: now_ms(),
            content: data.content,
            checksums: BTreeMap::new(),
        };
        let (b, k, u, p) = (
            bucket.to_string(),
            key.to_string(),
            upload_id.to_string(),
            part.clone(),
        );
        self.blocking(move |i| Ok(i.meta.put_part(&b, &k, &u, &p)?))
            .await?;
        Ok(part)
    }

    /// Completes an upload from the client's (part number, ETag) list.
    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(u32, String)>,
    ) -> Result<PutResult, ClientError> {
        if parts.is_empty() {
            return Err(ClientError::InvalidArgument(
                "you must specify at least one part".into(),
            ));
        }
        if parts.len() > MAX_PARTS as usize {
            return Err(ClientError::InvalidArgument(format!(
                "at most {MAX_PARTS} parts"
            )));
        }
        if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(ClientError::InvalidPartOrder);
        }
        let bucket_rec = self.head_bucket(bucket).await?;
        let upload = self.upload_of(bucket, key, upload_id).await?;
        let u = upload_id.to_string();
        let stored: BTreeMap<u32, Part> = self
            .blocking(move |i| {
                let mut all = BTreeMap::new();
                let mut after = 0;
                loop {
                    let page = i.meta.list_parts(&u, after, 1000)?;
                    let Some(last) = page.last() else { break };
                    after = last.number;
                    all.extend(page.into_iter().map(|p| (p.number, p)));
                }
                Ok(all)
            })
            .await?;
        let mut md5s = Md5::new();
        let mut builder = TreeBuilder::new();
        let mut size = 0u64;
        for (idx, (number, etag)) in parts.iter().enumerate() {
            let etag = etag.trim_matches('"');
            let part = stored
                .get(number)
                .filter(|p| hex::encode(p.md5).eq_ignore_ascii_case(etag))
                .ok_or_else(|| {
                    ClientError::InvalidPart(format!(
                        "part {number} with ETag {etag} was not uploaded, or its ETag differs"
                    ))
                })?;
            if idx + 1 < parts.len() && part.size < MIN_PART_SIZE {
                return Err(ClientError::EntityTooSmall {
                    part: *number,
                    size: part.size,
                });
            }
            md5s.update(part.md5);
            size += part.size;
            if let Content::Tree(root) = &part.content {
                builder.push_subtree(self, *root).await?;
            }
        }
        let content = match builder.finish(self).await? {
            Some(root) => Content::Tree(root),
            None => Content::Empty,
        };
        let etag = format!("{}-{}", hex::encode(md5s.finalize()), parts.len());
        let m = VersionManifest {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version: cairn_core::VersionId::MIN,
            parent: None,
            null_version: false,
            delete_marker: false,
            mtime_ms: now_ms(),
            size,
            etag,
            headers: upload.headers,
            user_metadata: upload.user_metadata,
            tags: upload.tags,
            checksums: BTreeMap::new(),
            parts: Some(parts.len() as u32),
            content,
            owner: upload.owner,
            acl: upload.acl,
            lock: upload.lock,
            checksum_type: upload.checksum_type,
        };
        self.commit_upload(&bucket_rec, upload_id, m).await
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
        let u = upload_id.to_string();
        let max = max.clamp(1, 1000);
        let parts = self
            .blocking(move |i| {
                let parts = i.meta.list_parts(&u, after, max)?;
                let more = match parts.last() {
                    Some(last) if parts.len() == max => {
                        !i.meta.list_parts(&u, last.number, 1)?.is_empty()
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
