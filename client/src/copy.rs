//! Copies by reference: CopyObject makes a new version over the source's tree, and
//! UploadPartCopy makes a part from a whole source or a byte range of it by referring to the
//! source's chunks. No chunk is written, only the tree nodes a range needs.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use cairn_core::extent::{Leaf, Piece, RangeWalker, Target, TreeBuilder};
use cairn_core::manifest::{Content, Grant, ObjectLock, Part, VersionManifest, Versioning};
use cairn_core::ChunkId;
use futures::StreamExt;
use md5::{Digest, Md5};

use crate::client::{now_ms, Client};
use crate::crypt::{same_domain, shown_md5, CustomerKey, Sealer, Sse};
use crate::multipart::{MAX_PARTS, MAX_PART_SIZE};
use crate::objects::{check_key, shown_version};
use crate::put::IngestLimits;
use crate::{ClientError, CopyResult, MetadataDirective, VersionSel};

/// What a CopyObject sets on the new version besides the source's bytes.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Keep or replace content headers and metadata.
    pub metadata: MetadataDirective,
    /// New tags (`None`: keep the source's).
    pub tags: Option<BTreeMap<String, String>>,
    /// Access key id of the writer.
    pub owner: String,
    /// ACL of the copy (a copy does not inherit the source's ACL).
    pub acl: Vec<Grant>,
    /// Lock of the copy (a copy does not inherit the source's lock; the destination bucket's
    /// default retention applies).
    pub lock: ObjectLock,
    /// Server-side encryption of the copy (a copy does not inherit the source's).
    pub encryption: Option<Sse>,
    /// The source's customer key (SSE-C), when it was stored with one.
    pub source_key: Option<CustomerKey>,
}

/// The customer keys (SSE-C) of an UploadPartCopy: the source's, and the upload's.
#[derive(Clone, Debug, Default)]
pub struct PartCopyKeys {
    /// The source's key, when it was stored with one.
    pub source: Option<CustomerKey>,
    /// The upload's key, when it was started with one.
    pub part: Option<CustomerKey>,
}

/// An UploadPartCopy's outcome.
#[derive(Clone, Debug)]
pub struct PartCopyResult {
    /// The stored part.
    pub part: Part,
    /// Version id of the source (`None` if its bucket is never-versioned).
    pub source_version_id: Option<String>,
}

impl Client {
    /// Copies by reference: the new version shares the source's chunks and tree.
    pub async fn copy_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        src_version: &VersionSel,
        dst_bucket: &str,
        dst_key: &str,
        opts: CopyOptions,
    ) -> Result<CopyResult, ClientError> {
        check_key(dst_key)?;
        self.check_space()?;
        let (sb, src) = self
            .resolve_version(src_bucket, src_key, src_version)
            .await?;
        let db = self.head_bucket(dst_bucket).await?;
        let src_sealer = self
            .open_for(src.encryption.as_ref(), opts.source_key.as_ref())
            .await?;
        let dest = self.seal_for_bucket(&db, opts.encryption.as_ref()).await?;
        let dest_key = match &opts.encryption {
            Some(Sse::Customer(k)) => Some(k),
            _ => None,
        };
        let by_reference = same_domain(
            src.encryption.as_ref(),
            dest.as_ref().map(|d| &d.1),
            opts.source_key.as_ref(),
            dest_key,
        );
        let mut m = src.clone();
        m.bucket = dst_bucket.to_string();
        m.key = dst_key.to_string();
        m.mtime_ms = now_ms();
        m.owner = opts.owner;
        m.acl = opts.acl;
        // A copy's ACL is the request's, whatever the source's was.
        m.owner_grant = true;
        m.lock = opts.lock;
        if let MetadataDirective::Replace {
            headers,
            user_metadata,
        } = opts.metadata
        {
            m.headers = headers;
            m.user_metadata = user_metadata;
        }
        if let Some(t) = opts.tags {
            m.tags = t;
        }
        if !by_reference {
            // Another encryption domain: the bytes are read (opened) and stored again
            // (sealed for the copy), as a new single-part object with the same checksums.
            let (sealer, encryption) = dest.unzip();
            let data = self
                .ingest_range(
                    &src,
                    0..src.size,
                    src_sealer,
                    sealer.clone(),
                    true,
                    cairn_core::owner_tag(dst_bucket),
                )
                .await?;
            m.content = data.content;
            m.etag = hex::encode(shown_md5(&data.md5, sealer.as_ref(), encryption.as_ref()));
            m.parts = None;
            m.encryption = encryption;
            return Ok(CopyResult {
                result: self.commit_version(&db, m).await?,
                source_version_id: shown_version(&sb, &src),
            });
        }
        // The same domain: the copy records what its request asked (a new digest of the same
        // customer key, or the same KMS key with the request's context).
        if let Some((_, enc)) = dest {
            m.encryption = Some(enc);
        }
        let content = m.content.clone();
        // Tests pause here to delete the source and run GC between the read and the apply.
        fail::fail_point!("copy-before-apply");
        // Without versioning the apply replaces the key's null version, and taking back a copy
        // that cannot stand would not bring that version back: there the copy's chunks are
        // protected before the apply instead, and one already collected fails the copy with
        // the destination as it was.
        let replaces = db.versioning != Versioning::Enabled;
        if replaces {
            self.touch_copied_chunks(&src, &content).await?;
        }
        let result = self.commit_version(&db, m).await?;
        if replaces {
            return Ok(CopyResult {
                result,
                source_version_id: shown_version(&sb, &src),
            });
        }
        if let Err(e) = self.keep_copied_chunks(&src, &content).await {
            // The copy cannot stand: take it back (nothing else refers to its version yet
            // that it could not refer to before) and let the client retry.
            let (b, k, v) = (
                dst_bucket.to_string(),
                dst_key.to_string(),
                result.manifest.version,
            );
            self.blocking(move |i| Ok(i.meta.remove_version(&b, &k, v, None)?))
                .await?;
            return Err(e);
        }
        Ok(CopyResult {
            result,
            source_version_id: shown_version(&sb, &src),
        })
    }

    /// UploadPartCopy: part `part_number` of an upload becomes bytes `[first, last]` of the
    /// source (the whole source when `range` is `None`), by reference.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src_bucket: &str,
        src_key: &str,
        src_version: &VersionSel,
        range: Option<(u64, u64)>,
        keys: PartCopyKeys,
    ) -> Result<PartCopyResult, ClientError> {
        self.check_space()?;
        if !(1..=MAX_PARTS).contains(&part_number) {
            return Err(ClientError::InvalidArgument(format!(
                "part number must be an integer between 1 and {MAX_PARTS}"
            )));
        }
        let upload = self.upload_of(bucket, key, upload_id).await?;
        let (sb, src) = self
            .resolve_version(src_bucket, src_key, src_version)
            .await?;
        let src_sealer = self
            .open_for(src.encryption.as_ref(), keys.source.as_ref())
            .await?;
        let part_sealer = self
            .open_for(upload.encryption.as_ref(), keys.part.as_ref())
            .await?;
        let by_reference = same_domain(
            src.encryption.as_ref(),
            upload.encryption.as_ref(),
            keys.source.as_ref(),
            keys.part.as_ref(),
        );
        let (start, end) = match range {
            None => (0, src.size),
            Some((first, last)) if first > last => {
                return Err(ClientError::InvalidArgument(format!(
                    "the range bytes={first}-{last} ends before it starts"
                )))
            }
            // As S3: a range reaching past the source is InvalidRange, not a bad argument.
            Some((_, last)) if last >= src.size => {
                return Err(ClientError::InvalidRange { size: src.size })
            }
            Some((first, last)) => (first, last + 1),
        };
        if end - start > MAX_PART_SIZE {
            return Err(ClientError::EntityTooLarge(format!(
                "a part is limited to {MAX_PART_SIZE} bytes: copy a smaller range"
            )));
        }
        let whole = start == 0 && end == src.size;
        let mut md5 = None;
        let content = match &src.content {
            Content::Tree(root) if by_reference && whole => Content::Tree(*root),
            Content::Tree(root) if by_reference => {
                let mut walker = RangeWalker::new(*root, start, end)?;
                let mut builder = TreeBuilder::new();
                while let Some(piece) = walker.next(self).await? {
                    builder.push_leaf(self, piece_leaf(piece)?).await?;
                }
                match builder.finish(self).await? {
                    Some(root) => Content::Tree(root),
                    None => Content::Empty,
                }
            }
            Content::Empty => Content::Empty,
            // Another encryption domain, or inline bytes (parts are trees): stored again.
            Content::Tree(_) | Content::Inline(_) => {
                let data = self
                    .ingest_range(
                        &src,
                        start..end,
                        src_sealer.clone(),
                        part_sealer.clone(),
                        false,
                        cairn_core::owner_tag(bucket),
                    )
                    .await?;
                md5 = Some(data.md5);
                data.content
            }
        };
        let md5 = match (md5, parse_md5(&src.etag)) {
            (Some(md5), _) => shown_md5(&md5, part_sealer.as_ref(), upload.encryption.as_ref()),
            // The source's ETag is its MD5 (masked under the same key for SSE-C).
            (None, Some(md5)) if whole && src.parts.is_none() => md5,
            _ => {
                let mut hasher = Md5::new();
                let mut body = self.read_range(&src.content, start, end, src_sealer);
                while let Some(piece) = body.next().await {
                    hasher.update(piece?);
                }
                let md5: [u8; 16] = hasher.finalize().into();
                shown_md5(&md5, part_sealer.as_ref(), upload.encryption.as_ref())
            }
        };
        let part = Part {
            number: part_number,
            md5,
            size: end - start,
            mtime_ms: now_ms(),
            content,
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
        // A part that failed this check is replaced when the client retries the copy, and a
        // completion that still names it fails to read, never returns other bytes.
        self.keep_copied_chunks(&src, &part.content).await?;
        Ok(PartCopyResult {
            part,
            source_version_id: shown_version(&sb, &src),
        })
    }
}

impl Client {
    /// Bytes `range` of `src` (opened by `src_sealer`) stored again as new content (sealed by
    /// `sealer`, new chunks counted for `owner`, the destination bucket's tag): a copy across
    /// encryption domains, or of inline bytes into a part.
    async fn ingest_range(
        &self,
        src: &VersionManifest,
        range: std::ops::Range<u64>,
        src_sealer: Option<Sealer>,
        sealer: Option<Sealer>,
        allow_inline: bool,
        owner: u64,
    ) -> Result<crate::put::Ingested, ClientError> {
        let (start, end) = (range.start, range.end);
        // A read error (a chunk that does not open, a missing one) is the copy's error, not
        // the body's.
        let failed = Arc::new(parking_lot::Mutex::new(None));
        let slot = failed.clone();
        let body = self
            .read_range(&src.content, start, end, src_sealer)
            .map(move |r| {
                r.map_err(|e| {
                    let io = std::io::Error::other(e.to_string());
                    slot.lock().get_or_insert(e);
                    io
                })
            })
            .boxed();
        let limits = IngestLimits {
            max_len: if allow_inline {
                crate::objects::MAX_PUT_SIZE.max(src.size)
            } else {
                MAX_PART_SIZE
            },
            expected_len: Some(end - start),
            allow_inline,
            checksum: None,
            sealer,
            owner,
        };
        let ingested = self
            .ingest(body, Arc::new(self.inner.cdc.clone()), limits)
            .await;
        let failed = failed.lock().take();
        match failed {
            Some(e) => Err(e),
            None => ingested,
        }
    }

    /// Called once a copy by reference (`content`, sharing chunks with `src`) is applied:
    /// makes sure garbage collection cannot collect those chunks (invariant I6).
    ///
    /// The copy read `src` while it was live, but its chunks were not written by this request
    /// and so are not young for GC's hold. If `src` still exists now, every GC mark either
    /// scanned it (it existed throughout) or began after the copy was applied and sees the
    /// copy: nothing to do, and this costs one metadata read. If `src` was removed meanwhile
    /// (or replaced by this very copy, as a copy onto itself in an unversioned bucket is), a
    /// mark may have seen neither: every chunk the copy reaches is touched as a dedup put
    /// would, so the hold protects it from now on, and a chunk a sweep already took fails the
    /// copy (`Storage`, retryable) rather than leaving an object that cannot be read.
    async fn keep_copied_chunks(
        &self,
        src: &VersionManifest,
        content: &Content,
    ) -> Result<(), ClientError> {
        if content.tree().is_none() {
            return Ok(());
        }
        let (b, k, v) = (src.bucket.clone(), src.key.clone(), src.version);
        if self
            .blocking(move |i| Ok(i.meta.get_version(&b, &k, v)?))
            .await?
            .is_some()
        {
            return Ok(());
        }
        self.touch_copied_chunks(src, content).await
    }

    /// Touches every chunk `content` reaches, as a dedup put would, so GC's hold protects them
    /// from now on; `Storage` (retryable) if a sweep took one already.
    async fn touch_copied_chunks(
        &self,
        src: &VersionManifest,
        content: &Content,
    ) -> Result<(), ClientError> {
        if content.tree().is_none() {
            return Ok(());
        }
        let mut ids = HashSet::new();
        let missing = match self.collect_tree_ids(content, &mut ids).await {
            Ok(_) => {
                let ids: Vec<ChunkId> = ids.into_iter().collect();
                let mut missing = 0;
                for batch in ids.chunks(TOUCH_BATCH) {
                    let batch = batch.to_vec();
                    let present = self
                        .blocking(move |i| Ok(i.chunks.touch_many(&batch)?))
                        .await?;
                    missing += present.iter().filter(|p| !**p).count();
                }
                missing
            }
            // A tree node is gone already.
            Err(ClientError::Corrupt(_)) => 1,
            Err(e) => return Err(e),
        };
        if missing > 0 {
            return Err(ClientError::Storage(format!(
                "the copy source {}/{} was deleted while it was copied and garbage collection \
                 took {missing} of its chunks: the copy was not made",
                src.bucket, src.key
            )));
        }
        Ok(())
    }
}

/// Chunk ids touched per call when a copy must protect what it shares with its source.
const TOUCH_BATCH: usize = 1000;

/// A leaf referring to exactly the bytes of a range-read piece (whose offset is already inside
/// its target).
pub(crate) fn piece_leaf(piece: Piece) -> Result<Leaf, ClientError> {
    let target = match piece.target {
        Target::Chunk { id, .. } => Target::Chunk {
            id,
            skip: u32::try_from(piece.offset)
                .map_err(|_| ClientError::Corrupt("a chunk offset exceeds 4 GiB".into()))?,
        },
        Target::Zeros => Target::Zeros,
        Target::Inline(b) => {
            let from = usize::try_from(piece.offset).unwrap_or(usize::MAX);
            let to = from.saturating_add(usize::try_from(piece.len).unwrap_or(usize::MAX));
            if to > b.len() {
                return Err(ClientError::Corrupt(
                    "an inline leaf is shorter than its length".into(),
                ));
            }
            Target::Inline(b.slice(from..to))
        }
    };
    Ok(Leaf {
        len: piece.len,
        target,
    })
}

/// The MD5 in a single-part ETag (32 hex digits).
fn parse_md5(etag: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(etag, &mut out).ok()?;
    Some(out)
}
