//! Ingest: a body stream becomes stored chunks and an extent tree, with bounded memory.
//!
//! Three stages run at once: the async reader pulls body frames; one blocking thread computes
//! the running MD5, the additional checksum when one is asked for, and the content-defined cut
//! points (all inherently sequential, done in one pass over each batch); each cut
//! chunk is hashed, compressed and stored on the blocking pool, up to [`IN_FLIGHT`] at a time, so
//! all cores work and concurrent synced writes share WAL syncs. Leaves come back in order and
//! go into the tree builder. Memory is bounded by the channel depths times the 1 MiB max chunk.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cairn_core::chunker::Chunker;
use cairn_core::codec;
use cairn_core::extent::{Leaf, TreeBuilder};
use cairn_core::manifest::{Content, INLINE_MAX};
use cairn_core::ChunkId;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use tokio::sync::mpsc;

use crate::checksum::{ChecksumAlgorithm, Hasher};
use crate::client::Client;
use crate::crypt::Sealer;
use crate::{BodyStream, ClientError};

/// Chunks being hashed, compressed and stored at once per upload.
const IN_FLIGHT: usize = 8;
/// Body bytes handed to the sequential stage at once.
const BATCH: usize = 1 << 20;

/// What a body became.
pub(crate) struct Ingested {
    /// Bytes received.
    pub size: u64,
    /// MD5 of the bytes.
    pub md5: [u8; 16],
    /// Digest of the additional checksum, when one was asked for.
    pub checksum: Option<Vec<u8>>,
    /// Where they are.
    pub content: Content,
}

/// Limits and checks of one ingest.
pub(crate) struct IngestLimits {
    /// Largest body accepted.
    pub max_len: u64,
    /// Announced length, checked at the end.
    pub expected_len: Option<u64>,
    /// Small bodies may be kept inline (not for multipart parts, which are concatenated).
    pub allow_inline: bool,
    /// Additional checksum to compute in the sequential pass.
    pub checksum: Option<ChecksumAlgorithm>,
    /// Seals chunks and inline bytes when the object is encrypted at rest.
    pub sealer: Option<Sealer>,
    /// The owner tag ([`cairn_core::owner_tag`]) of the bucket written: a chunk this ingest
    /// stores first counts in that bucket's bytes after dedup (0: none).
    pub owner: u64,
}

/// Output of the sequential stage.
enum Cut {
    Chunk(Bytes),
    Done {
        md5: [u8; 16],
        checksum: Option<Vec<u8>>,
        inline: Option<Bytes>,
    },
}

/// A body announced to fit in a manifest (most small PUTs): read, summed and kept on this task,
/// with none of the stages of a large body (their thread hand-offs were a quarter of the CPU
/// of a 4 KiB PUT). A body longer than announced is refused as soon as it is.
async fn ingest_inline(
    mut body: BodyStream,
    limits: IngestLimits,
) -> Result<Ingested, ClientError> {
    let expected = limits.expected_len.unwrap_or(0);
    let mut buf = BytesMut::with_capacity(expected as usize);
    while let Some(frame) = body.next().await {
        let frame = frame.map_err(|e| ClientError::IncompleteBody(e.to_string()))?;
        let total = (buf.len() + frame.len()) as u64;
        if total > limits.max_len {
            return Err(ClientError::EntityTooLarge(format!(
                "the body is over the {} byte limit for this request",
                limits.max_len
            )));
        }
        if total > expected {
            return Err(ClientError::IncompleteBody(format!(
                "received more than the {expected} bytes Content-Length said"
            )));
        }
        buf.extend_from_slice(&frame);
    }
    if buf.len() as u64 != expected {
        return Err(ClientError::IncompleteBody(format!(
            "received {} bytes, Content-Length said {expected}",
            buf.len()
        )));
    }
    let md5: [u8; 16] = Md5::digest(&buf).into();
    let checksum = limits.checksum.map(|a| {
        let mut h = Hasher::new(a);
        h.update(&buf);
        h.finish(a)
    });
    let content = if buf.is_empty() {
        Content::Empty
    } else {
        inline_content(buf.freeze(), limits.sealer.as_ref())
    };
    Ok(Ingested {
        size: expected,
        md5,
        checksum,
        content,
    })
}

impl Client {
    /// Stores `body` and returns its size, MD5 and content. Nothing is applied here: the caller
    /// applies a manifest only after this returns, when every chunk is durable.
    pub(crate) async fn ingest(
        &self,
        mut body: BodyStream,
        chunker: Arc<dyn Chunker + Sync>,
        limits: IngestLimits,
    ) -> Result<Ingested, ClientError> {
        if limits.allow_inline && limits.expected_len.is_some_and(|n| n <= INLINE_MAX as u64) {
            return ingest_inline(body, limits).await;
        }
        // Batches of frames to the sequential stage (one hand-off per ~1 MiB rather than per
        // network read keeps thread wake-ups off the profile); `None` marks a clean end of body.
        let (frame_tx, mut frame_rx) = mpsc::channel::<Option<Vec<Bytes>>>(4);
        let (cut_tx, cut_rx) = mpsc::channel::<Cut>(IN_FLIGHT);
        let allow_inline = limits.allow_inline;
        let algorithm = limits.checksum;
        let cutter = tokio::task::spawn_blocking(move || {
            let mut md5 = Md5::new();
            let mut hasher = algorithm.map(Hasher::new);
            let mut buf = BytesMut::new();
            let max = chunker.max_size();
            let mut emitted = false;
            loop {
                match frame_rx.blocking_recv() {
                    Some(Some(frames)) => {
                        for frame in &frames {
                            md5.update(frame);
                            if let Some(h) = hasher.as_mut() {
                                h.update(frame);
                            }
                            buf.extend_from_slice(frame);
                        }
                        // Only look for a cut once a whole max-size window is buffered, so each
                        // byte is scanned once.
                        while buf.len() >= max {
                            let n = chunker.cut(&buf, false).unwrap_or(max);
                            emitted = true;
                            if cut_tx
                                .blocking_send(Cut::Chunk(buf.split_to(n).freeze()))
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                    Some(None) => break,
                    // The reader gave up (error or limit): send nothing more.
                    None => return,
                }
            }
            let md5: [u8; 16] = md5.finalize().into();
            let checksum = hasher.zip(algorithm).map(|(h, a)| h.finish(a));
            if !emitted && allow_inline && buf.len() <= INLINE_MAX {
                let _ = cut_tx.blocking_send(Cut::Done {
                    md5,
                    checksum,
                    inline: Some(buf.freeze()),
                });
                return;
            }
            while let Some(n) = chunker.cut(&buf, true) {
                if cut_tx
                    .blocking_send(Cut::Chunk(buf.split_to(n).freeze()))
                    .is_err()
                {
                    return;
                }
            }
            let _ = cut_tx.blocking_send(Cut::Done {
                md5,
                checksum,
                inline: None,
            });
        });

        let read = async move {
            let mut total: u64 = 0;
            let mut batch = Vec::new();
            let mut batch_len = 0;
            while let Some(frame) = body.next().await {
                let frame = frame.map_err(|e| ClientError::IncompleteBody(e.to_string()))?;
                total += frame.len() as u64;
                if total > limits.max_len {
                    return Err(ClientError::EntityTooLarge(format!(
                        "the body is over the {} byte limit for this request",
                        limits.max_len
                    )));
                }
                batch_len += frame.len();
                batch.push(frame);
                if batch_len >= BATCH
                    && frame_tx
                        .send(Some(std::mem::take(&mut batch)))
                        .await
                        .is_err()
                {
                    // The other stages failed; their error is reported.
                    return Ok(total);
                }
                if batch.is_empty() {
                    batch_len = 0;
                }
            }
            if let Some(expected) = limits.expected_len {
                if expected != total {
                    return Err(ClientError::IncompleteBody(format!(
                        "received {total} bytes, Content-Length said {expected}"
                    )));
                }
            }
            if !batch.is_empty() && frame_tx.send(Some(batch)).await.is_err() {
                return Ok(total);
            }
            let _ = frame_tx.send(None).await;
            Ok(total)
        };

        let store = self.store_cuts(cut_rx, limits.sealer, limits.owner);
        let (total, stored) = tokio::join!(read, store);
        let _ = cutter.await;
        let total = total?;
        let (md5, checksum, content) = stored?;
        Ok(Ingested {
            size: total,
            md5,
            checksum,
            content,
        })
    }

    /// Stores the chunks coming from the sequential stage and builds the tree.
    async fn store_cuts(
        &self,
        cut_rx: mpsc::Receiver<Cut>,
        sealer: Option<Sealer>,
        owner: u64,
    ) -> Result<([u8; 16], Option<Vec<u8>>, Content), ClientError> {
        let mut done = None;
        let cuts =
            futures::stream::unfold(
                cut_rx,
                |mut rx| async move { rx.recv().await.map(|c| (c, rx)) },
            );
        let mut builder = TreeBuilder::new();
        let mut any = false;
        {
            let leaves = cuts
                .filter_map(|cut| {
                    let r = match cut {
                        Cut::Chunk(b) => Some(b),
                        Cut::Done {
                            md5,
                            checksum,
                            inline,
                        } => {
                            done = Some((md5, checksum, inline));
                            None
                        }
                    };
                    async move { r }
                })
                .map(|chunk| self.store_chunk_sealed(chunk, sealer.clone(), owner))
                .buffered(IN_FLIGHT);
            let mut leaves = std::pin::pin!(leaves);
            while let Some(leaf) = leaves.try_next().await? {
                builder.push_leaf(self, leaf).await?;
                any = true;
            }
        }
        let Some((md5, checksum, inline)) = done else {
            return Err(ClientError::IncompleteBody(
                "the request body was not received completely".into(),
            ));
        };
        let content = match inline {
            Some(b) if b.is_empty() => Content::Empty,
            Some(b) => inline_content(b, sealer.as_ref()),
            None if !any => Content::Empty,
            None => match builder.finish(self).await? {
                Some(root) => Content::Tree(root),
                None => Content::Empty,
            },
        };
        Ok((md5, checksum, content))
    }

    /// Hashes, compresses and durably stores one chunk; all-zero chunks are not stored. A
    /// chunk stored first here counts for `owner` (a bucket's [`cairn_core::owner_tag`], 0 for
    /// none).
    pub(crate) async fn store_chunk(&self, chunk: Bytes, owner: u64) -> Result<Leaf, ClientError> {
        self.store_chunk_sealed(chunk, None, owner).await
    }

    /// [`Client::store_chunk`], sealed by `sealer` when there is one: the sealed bytes are
    /// the stored chunk (named by their hash), the leaf keeps the plaintext's length, and zeros
    /// are sealed too (a hole would tell where the plaintext is zero).
    pub(crate) async fn store_chunk_sealed(
        &self,
        chunk: Bytes,
        sealer: Option<Sealer>,
        owner: u64,
    ) -> Result<Leaf, ClientError> {
        self.blocking(move |i| {
            if let Some(sealer) = &sealer {
                let sealed = sealer.seal(&chunk);
                let id = ChunkId::of(&sealed);
                i.chunks.put_encoded_owned(
                    &id,
                    codec::Codec::Raw,
                    sealed.len() as u32,
                    &sealed,
                    owner,
                )?;
                return Ok(Leaf::chunk(id, chunk.len() as u64));
            }
            let len = chunk.len() as u64;
            if chunk.iter().all(|&b| b == 0) {
                return Ok(Leaf::zeros(len));
            }
            let id = ChunkId::of(&chunk);
            codec::encode_with(&chunk, |codec, payload| {
                i.chunks
                    .put_encoded_owned(&id, codec, len as u32, payload, owner)
            })?;
            Ok(Leaf::chunk(id, len))
        })
        .await
    }
}

/// The inline content of a small body: its bytes, sealed when the object is encrypted.
fn inline_content(body: Bytes, sealer: Option<&Sealer>) -> Content {
    match sealer {
        Some(s) => Content::Inline(Bytes::from(s.seal(&body))),
        None => Content::Inline(body),
    }
}
