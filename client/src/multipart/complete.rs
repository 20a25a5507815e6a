//! Completing an upload: the listed parts are checked, the object's ETag and checksum are
//! computed from the parts' own, and its tree is joined from the parts' trees with the seams
//! re-cut (`seams.rs`); then the version is applied and the upload removed in one batch.

use std::collections::BTreeMap;

use cairn_core::manifest::{Bucket, ChecksumType, Content, Part, VersionManifest};
use md5::{Digest, Md5};

use super::seams::PartSpan;
use super::{upload_algorithm, MAX_PARTS, MIN_PART_SIZE};
use crate::checksum;
use crate::client::{now_ms, Client};
use crate::objects::shown_version;
use crate::{ClientError, CompleteOptions, CompletedPart, PutResult};

impl Client {
    /// Completes an upload from the client's part list: each listed part must exist with that
    /// ETag (and checksum, when listed). With a checksum algorithm, the object gets the
    /// composite (checksum of the parts' checksums) or full-object (the parts' CRCs combined;
    /// no data is read) checksum, checked against `opts.checksum` when sent.
    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: impl IntoIterator<Item = impl Into<CompletedPart>>,
        opts: CompleteOptions,
    ) -> Result<PutResult, ClientError> {
        self.check_space()?;
        let parts: Vec<CompletedPart> = parts.into_iter().map(Into::into).collect();
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
        if parts.windows(2).any(|w| w[0].number >= w[1].number) {
            return Err(ClientError::InvalidPartOrder);
        }
        let bucket_rec = self.head_bucket(bucket).await?;
        let upload = match self.upload_of(bucket, key, upload_id).await {
            Err(ClientError::NoSuchUpload(u)) => {
                return match self.completed_from(&bucket_rec, key, &parts).await? {
                    Some(done) => Ok(done),
                    None => Err(ClientError::NoSuchUpload(u)),
                }
            }
            other => other?,
        };
        let algorithm = upload_algorithm(&upload)?;
        let (b, u) = (bucket.to_string(), upload_id.to_string());
        let stored: BTreeMap<u32, Part> = self
            .blocking(move |i| {
                let mut all = BTreeMap::new();
                let mut after = 0;
                loop {
                    let page = i.meta.list_parts(&b, &u, after, 1000)?;
                    let Some(last) = page.last() else { break };
                    after = last.number;
                    all.extend(page.into_iter().map(|p| (p.number, p)));
                }
                Ok(all)
            })
            .await?;
        let mut md5s = Md5::new();
        let mut spans = Vec::with_capacity(parts.len());
        let mut size = 0u64;
        let mut digests: Vec<(Vec<u8>, u64)> = Vec::new();
        for (idx, listed) in parts.iter().enumerate() {
            let number = &listed.number;
            let etag = listed.etag.trim_matches('"');
            let part = stored
                .get(number)
                .filter(|p| hex::encode(p.md5).eq_ignore_ascii_case(etag))
                .ok_or_else(|| {
                    ClientError::InvalidPart(format!(
                        "part {number} with ETag {etag} was not uploaded, or its ETag differs"
                    ))
                })?;
            if let Some(a) = algorithm {
                let value = part.checksums.get(a.name());
                if let Some(sent) = &listed.checksum {
                    if value.is_none_or(|v| v != sent.trim()) {
                        return Err(ClientError::InvalidPart(format!(
                            "the {a} checksum listed for part {number} does not match the \
                             uploaded part's"
                        )));
                    }
                }
                let digest = value.and_then(|v| checksum::decode(a, v)).ok_or_else(|| {
                    ClientError::InvalidPart(format!(
                        "part {number} has no {a} checksum: upload it again"
                    ))
                })?;
                digests.push((digest, part.size));
            }
            if idx + 1 < parts.len() && part.size < MIN_PART_SIZE {
                return Err(ClientError::EntityTooSmall {
                    part: *number,
                    size: part.size,
                });
            }
            md5s.update(part.md5);
            match &part.content {
                Content::Tree(root) if root.len == part.size => spans.push(PartSpan {
                    start: size,
                    root: *root,
                }),
                Content::Empty if part.size == 0 => {}
                _ => {
                    return Err(ClientError::Corrupt(format!(
                        "part {number} of upload {upload_id} is not a tree of its {} bytes",
                        part.size
                    )))
                }
            }
            size += part.size;
        }
        let etag = format!("{}-{}", hex::encode(md5s.finalize()), parts.len());
        let mut checksums = BTreeMap::new();
        if let Some(a) = algorithm {
            let value = match upload.checksum_type.unwrap_or(a.default_type()) {
                ChecksumType::Composite => {
                    let raw: Vec<Vec<u8>> = digests.into_iter().map(|(d, _)| d).collect();
                    checksum::composite(a, &raw)
                }
                ChecksumType::FullObject => {
                    checksum::combine_parts(a, &digests).ok_or_else(|| {
                        ClientError::InvalidRequest(format!("{a} has no full-object checksum"))
                    })?
                }
            };
            if let Some(sent) = &opts.checksum {
                // A composite value may be sent with or without its `-N` suffix.
                let bare = |v: &str| v.trim().split('-').next().unwrap_or("").to_string();
                if bare(sent) != bare(&value) {
                    return Err(ClientError::BadDigest);
                }
            }
            checksums.insert(a.name().to_string(), value);
        }
        // Nothing is read or written before every listed part and checksum checked out.
        // Seams are re-cut only in plaintext content (a re-cut would read and store chunks,
        // which an encrypted upload's are not).
        let owner = cairn_core::owner_tag(bucket);
        let content = match self
            .join_parts(&spans, upload.encryption.is_none(), owner)
            .await?
        {
            Some(root) => Content::Tree(root),
            None => Content::Empty,
        };
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
            checksums,
            parts: Some(parts.len() as u32),
            content,
            owner: upload.owner,
            acl: upload.acl,
            lock: upload.lock,
            checksum_type: upload.checksum_type,
            owner_grant: true,
            encryption: upload.encryption,
        };
        self.commit_upload(&bucket_rec, upload_id, m, opts.condition)
            .await
    }

    /// A completion sent again (a retry whose first answer was lost): the key's current object
    /// when it is still the one those parts made, as S3 answers the repeat with the same
    /// result. The object's multipart ETag (MD5 of the parts' MD5s, and their count) names it.
    async fn completed_from(
        &self,
        bucket: &Bucket,
        key: &str,
        parts: &[CompletedPart],
    ) -> Result<Option<PutResult>, ClientError> {
        let mut md5s = Md5::new();
        for p in parts {
            match hex::decode(p.etag.trim_matches('"')) {
                Ok(md5) if md5.len() == 16 => md5s.update(md5),
                _ => return Ok(None),
            }
        }
        let etag = format!("{}-{}", hex::encode(md5s.finalize()), parts.len());
        let (b, k) = (bucket.name.clone(), key.to_string());
        let current = self.blocking(move |i| Ok(i.meta.current(&b, &k)?)).await?;
        Ok(current.filter(|m| m.etag == etag).map(|m| PutResult {
            version_id: shown_version(bucket, &m),
            manifest: m,
        }))
    }
}
