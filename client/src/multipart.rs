//! Multipart uploads: parts are stored as trees of their own, and completion builds the
//! object's tree over the parts' roots, so no part data is copied.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_core::extent::{NodeStore, TreeBuilder, TreeNode};
use cairn_core::manifest::{Bucket, ChecksumType, Content, Part, Upload, VersionManifest};
use md5::{Digest, Md5};
use rand::distributions::{Alphanumeric, DistString};

use crate::checksum::{self, ChecksumAlgorithm};
use crate::client::{now_ms, Client};
use crate::objects::{check_key, shown_version};
use crate::put::IngestLimits;
use crate::{
    BodyStream, ChecksumRequest, ClientError, CompleteOptions, CompletedPart, ExpectedChecksum,
    GetResult, PartOptions, PutOptions, PutResult, UploadsPage, UploadsQuery, VersionSel,
};

/// Smallest part but the last (S3's limit).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Largest part.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// Highest part number.
pub const MAX_PARTS: u32 = 10_000;

/// The checksum algorithm an upload's parts carry, if it named one.
fn upload_algorithm(upload: &Upload) -> Result<Option<ChecksumAlgorithm>, ClientError> {
    match upload.checksum_algorithm.as_deref() {
        None => Ok(None),
        Some(name) => ChecksumAlgorithm::parse(name).map(Some).ok_or_else(|| {
            ClientError::Corrupt(format!(
                "upload names an unknown checksum algorithm `{name}`"
            ))
        }),
    }
}

/// Reads the lengths of the `count` subtrees at `depth` below `root`, in order; `None` if the
/// tree does not have exactly that shape.
async fn subtree_lengths(
    c: &Client,
    root: cairn_core::extent::Child,
    depth: usize,
    count: usize,
) -> Result<Option<Vec<u64>>, ClientError> {
    let mut level = vec![root];
    for _ in 0..depth {
        let mut next = Vec::new();
        for node in level {
            match c.load(node.node, node.len).await? {
                TreeNode::Children(children) => next.extend(children),
                TreeNode::Leaves(_) => return Ok(None),
            }
            if next.len() > count {
                return Ok(None);
            }
        }
        level = next;
    }
    Ok((level.len() == count).then(|| level.iter().map(|c| c.len).collect()))
}

impl Client {
    /// The lengths of a completed multipart object's parts, in part-number order, read from
    /// the shape completion gives its tree (each part's root is a subtree of the object's tree,
    /// [`FANOUT`](cairn_core::extent) per node); `None` for an object that is not multipart.
    ///
    /// Only the last part can be empty, and an empty part has no subtree. The one shape this
    /// cannot tell apart is an object whose last part is empty and whose only other part's own
    /// tree has exactly as many top-level subtrees as the object has parts; the first reading
    /// (no empty part) is taken then.
    pub async fn part_lengths(&self, m: &VersionManifest) -> Result<Option<Vec<u64>>, ClientError> {
        let Some(n) = m.parts.map(|n| n as usize).filter(|&n| n > 0) else {
            return Ok(None);
        };
        let root = match &m.content {
            Content::Tree(root) => *root,
            // Inline content never comes from multipart; empty content means empty parts.
            _ => {
                let mut lens = vec![0; n];
                lens[0] = m.size;
                return Ok(Some(lens));
            }
        };
        const FANOUT: usize = 512;
        for nonempty in [n, n - 1] {
            if nonempty == 0 {
                continue;
            }
            // Completion's builder puts the part roots at the bottom of `depth` levels.
            let mut depth = 0;
            let mut span = 1usize;
            while span < nonempty {
                span = span.saturating_mul(FANOUT);
                depth += 1;
            }
            if let Some(mut lens) = subtree_lengths(self, root, depth, nonempty).await? {
                lens.resize(n, 0);
                return Ok(Some(lens));
            }
        }
        Err(ClientError::Corrupt(format!(
            "the tree of {}/{} does not have the shape of {n} parts",
            m.bucket, m.key
        )))
    }

    /// One part of an object (GET with `partNumber`): the bytes of part `number` of a
    /// multipart object, or the whole object as its part 1 if it is not multipart. Returns the
    /// read (its range set) and the object's part count (`None` if not multipart). A part
    /// number beyond the last is InvalidRange.
    pub async fn get_object_part(
        &self,
        bucket: &str,
        key: &str,
        version: &VersionSel,
        number: u32,
    ) -> Result<(GetResult, Option<u32>), ClientError> {
        let (b, m) = self.resolve_version(bucket, key, version).await?;
        let lens = self.part_lengths(&m).await?;
        let (start, end) = match (&lens, number) {
            (None, 1) => (0, m.size),
            (Some(lens), n) if (1..=lens.len()).contains(&(n as usize)) => {
                let i = n as usize - 1;
                let start: u64 = lens[..i].iter().sum();
                (start, start + lens[i])
            }
            _ => return Err(ClientError::InvalidRange { size: m.size }),
        };
        let body = self.read_range(&m.content, start, end);
        Ok((
            GetResult {
                version_id: shown_version(&b, &m),
                range: Some((start, end)),
                manifest: m,
                body,
            },
            lens.map(|l| l.len() as u32),
        ))
    }

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
            checksum_algorithm: checksum.0.map(|a| a.name().to_string()),
            checksum_type,
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
        if !(1..=MAX_PARTS).contains(&part_number) {
            return Err(ClientError::InvalidArgument(format!(
                "part number must be an integer between 1 and {MAX_PARTS}"
            )));
        }
        let upload = self.upload_of(bucket, key, upload_id).await?;
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
            md5: data.md5,
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
        Ok(part)
    }

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
        let mut builder = TreeBuilder::new();
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
