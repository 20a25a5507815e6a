//! Streaming reads of a byte range of a version's content, with read-ahead.

use bytes::Bytes;
use cairn_core::extent::{Piece, RangeWalker, Target};
use cairn_core::manifest::Content;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::client::Client;
use crate::crypt::Sealer;
use crate::{ByteStream, ClientError, RangeSpec};

/// Chunks fetched ahead of the one being sent.
const READ_AHEAD: usize = 4;
/// Zeros are served from this buffer in pieces, never allocated per request.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// Resolves an HTTP range against an object size into `[start, end)`.
pub(crate) fn resolve_range(range: RangeSpec, size: u64) -> Result<(u64, u64), ClientError> {
    let bad = ClientError::InvalidRange { size };
    match range {
        RangeSpec::FromTo(first, last) => {
            if first >= size {
                return Err(bad);
            }
            let end = match last {
                Some(l) if l < first => return Err(bad),
                Some(l) => l.saturating_add(1).min(size),
                None => size,
            };
            Ok((first, end))
        }
        RangeSpec::Suffix(n) => {
            if n == 0 || size == 0 {
                return Err(bad);
            }
            Ok((size - n.min(size), size))
        }
    }
}

impl Client {
    /// The bytes `[start, end)` of `content` as a stream; content sealed by `sealer` (an
    /// encrypted object's) has each chunk, or its inline bytes, opened before the range is cut.
    pub(crate) fn read_range(
        &self,
        content: &Content,
        start: u64,
        end: u64,
        sealer: Option<Sealer>,
    ) -> ByteStream {
        match content {
            Content::Empty => Box::pin(futures::stream::empty()),
            Content::Inline(b) => {
                let piece = match &sealer {
                    Some(s) => s
                        .open(b)
                        .and_then(|b| slice(&b, start as usize, (end - start) as usize)),
                    None => Ok(b.slice(start as usize..end as usize)),
                };
                Box::pin(futures::stream::once(async move { piece }))
            }
            Content::Tree(root) => {
                let walker = match RangeWalker::new(*root, start, end) {
                    Ok(w) => w,
                    Err(e) => {
                        let e = ClientError::from(e);
                        return Box::pin(futures::stream::once(async move { Err(e) }));
                    }
                };
                let (tx, rx) = mpsc::channel::<Result<Bytes, ClientError>>(READ_AHEAD);
                let client = self.clone();
                // The producer ends when the range is sent or the receiver (the HTTP response)
                // is dropped; its errors travel in the stream.
                tokio::spawn(async move {
                    let c2 = client.clone();
                    // Pieces that continue one chunk (a chunk over a part seam is referenced
                    // as two slices) are merged, so the chunk is read once.
                    let pieces = futures::stream::unfold(
                        (walker, client, None::<Piece>),
                        |(mut walker, client, mut pending)| async move {
                            loop {
                                match walker.next(&client).await {
                                    Ok(Some(p)) => {
                                        if pending.as_mut().is_some_and(|h| h.try_merge(&p)) {
                                            continue;
                                        }
                                        if let Some(held) = pending.replace(p) {
                                            return Some((Ok(held), (walker, client, pending)));
                                        }
                                    }
                                    Ok(None) => {
                                        let held = pending.take()?;
                                        return Some((Ok(held), (walker, client, None)));
                                    }
                                    Err(e) => return Some((Err(e), (walker, client, None))),
                                }
                            }
                        },
                    );
                    let bytes = pieces
                        .map(|p: Result<Piece, ClientError>| {
                            let c = c2.clone();
                            let sealer = sealer.clone();
                            async move { c.fetch_piece(p?, sealer.as_ref()).await }
                        })
                        .buffered(READ_AHEAD);
                    let mut bytes = std::pin::pin!(bytes);
                    while let Some(item) = bytes.next().await {
                        let failed = item.is_err();
                        match item {
                            Ok(chunks) => {
                                for b in chunks {
                                    if tx.send(Ok(b)).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                            }
                        }
                        if failed {
                            return;
                        }
                    }
                });
                Box::pin(futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                }))
            }
        }
    }

    /// The bytes of one piece (zeros come as several pieces of at most 1 MiB).
    async fn fetch_piece(
        &self,
        p: Piece,
        sealer: Option<&Sealer>,
    ) -> Result<Vec<Bytes>, ClientError> {
        let (off, len) = (p.offset as usize, p.len as usize);
        match p.target {
            Target::Zeros => {
                let mut out = Vec::new();
                let mut left = len;
                while left > 0 {
                    let n = left.min(ZEROS.len());
                    out.push(Bytes::from_static(&ZEROS[..n]));
                    left -= n;
                }
                Ok(out)
            }
            Target::Inline(b) => slice(&b, off, len).map(|b| vec![b]),
            Target::Chunk { id, .. } => {
                let mut chunk = self.read_chunk(id).await?;
                if let Some(s) = sealer {
                    let sealed = chunk;
                    let s = s.clone();
                    chunk = tokio::task::spawn_blocking(move || s.open(&sealed))
                        .await
                        .map_err(|e| {
                            ClientError::Storage(format!("opening a chunk failed: {e}"))
                        })??;
                }
                slice(&chunk, off, len).map(|b| vec![b])
            }
        }
    }
}

/// Bytes `[off, off + len)` of a chunk (or inline bytes) a leaf refers to; outside them is
/// corruption.
pub(crate) fn slice(b: &Bytes, off: usize, len: usize) -> Result<Bytes, ClientError> {
    if off.checked_add(len).is_none_or(|e| e > b.len()) {
        return Err(ClientError::Corrupt(format!(
            "extent reference {off}+{len} is outside a {} byte chunk",
            b.len()
        )));
    }
    Ok(b.slice(off..off + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_http() {
        assert_eq!(
            resolve_range(RangeSpec::FromTo(0, Some(9)), 100).unwrap(),
            (0, 10)
        );
        assert_eq!(
            resolve_range(RangeSpec::FromTo(90, Some(200)), 100).unwrap(),
            (90, 100)
        );
        assert_eq!(
            resolve_range(RangeSpec::FromTo(5, None), 100).unwrap(),
            (5, 100)
        );
        assert_eq!(
            resolve_range(RangeSpec::Suffix(10), 100).unwrap(),
            (90, 100)
        );
        assert_eq!(
            resolve_range(RangeSpec::Suffix(500), 100).unwrap(),
            (0, 100)
        );
        assert!(resolve_range(RangeSpec::FromTo(100, None), 100).is_err());
        assert!(resolve_range(RangeSpec::FromTo(10, Some(5)), 100).is_err());
        assert!(resolve_range(RangeSpec::Suffix(0), 100).is_err());
        assert!(resolve_range(RangeSpec::Suffix(5), 0).is_err());
    }
}
