//! Reading the parts' leaves from one position on, for a seam's re-cut: chunk bytes (a chunk
//! read once for two slices of it side by side), inline bytes, and runs of zeros as lengths.

use bytes::Bytes;
use cairn_core::extent::{RangeWalker, Target};
use cairn_core::ChunkId;

use super::seams::PartSpan;
use crate::client::Client;
use crate::get::slice;
use crate::ClientError;

/// The parts' bytes from one position on, leaf by leaf.
pub(super) struct Feed<'a> {
    parts: &'a [PartSpan],
    /// The part being read.
    idx: usize,
    /// Offset in the object of the next byte.
    pub pos: u64,
    /// Where reading stops.
    pub limit: u64,
    walker: Option<RangeWalker>,
    /// Whether the walker's next piece starts a leaf.
    at_leaf_start: bool,
    /// The chunk read last (two slices of one chunk are read once).
    last: Option<(ChunkId, Bytes)>,
}

/// One leaf's bytes, from a [`Feed`].
pub(super) struct FedLeaf {
    /// Offset in the object of its first byte.
    pub start: u64,
    /// The part it is in.
    pub part: usize,
    pub bytes: Fed,
    /// `start` is a cut of the part's own chunking (a leaf's start).
    pub cut: bool,
}

/// What a [`FedLeaf`] holds.
pub(super) enum Fed {
    /// Bytes read from a chunk or inline.
    Data(Bytes),
    /// This many zeros (not materialized).
    Zeros(u64),
}

impl<'a> Feed<'a> {
    pub fn new(parts: &'a [PartSpan], idx: usize, pos: u64, limit: u64) -> Feed<'a> {
        Feed {
            parts,
            idx,
            pos,
            limit,
            walker: None,
            at_leaf_start: false,
            last: None,
        }
    }

    /// Reads on to `limit`, from where the last limit stopped it.
    pub fn extend(&mut self, limit: u64) {
        debug_assert_eq!(self.pos, self.limit);
        self.limit = limit;
        self.walker = None;
    }

    /// The next leaf (or the part of it before `limit`). Call only while `pos < limit`.
    pub async fn next(&mut self, c: &Client) -> Result<FedLeaf, ClientError> {
        let start = self.pos;
        loop {
            let part = *self.parts.get(self.idx).ok_or_else(|| {
                ClientError::Corrupt("a part seam re-cut ran past the last part".into())
            })?;
            let walker = match &mut self.walker {
                Some(w) => w,
                None => {
                    let to = self.limit.min(part.end()) - part.start;
                    self.at_leaf_start = start == part.start;
                    self.walker
                        .insert(RangeWalker::new(part.root, start - part.start, to)?)
                }
            };
            let Some(piece) = walker.next(c).await? else {
                self.walker = None;
                self.idx += 1;
                continue;
            };
            let cut = std::mem::replace(&mut self.at_leaf_start, true);
            self.pos += piece.len;
            let (off, len) = (piece.offset as usize, piece.len as usize);
            let bytes = match piece.target {
                Target::Zeros => Fed::Zeros(piece.len),
                Target::Inline(b) => Fed::Data(slice(&b, off, len)?),
                Target::Chunk { id, .. } => {
                    let chunk = match &self.last {
                        Some((last, bytes)) if *last == id => bytes.clone(),
                        _ => {
                            let bytes = c.read_chunk(id).await?;
                            self.last = Some((id, bytes.clone()));
                            bytes
                        }
                    };
                    Fed::Data(slice(&chunk, off, len)?)
                }
            };
            return Ok(FedLeaf {
                start,
                part: self.idx,
                bytes,
                cut,
            });
        }
    }
}
