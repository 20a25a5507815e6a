//! Streamed bodies: the bytes that may follow a request or response head, sent as data frames
//! of at most 1 MiB, so a chunk or object flows through without being buffered whole.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::error::RpcError;
use crate::wire::{self, FrameKind, MAX_ABORT_FRAME, MAX_DATA_FRAME};

/// QUIC error code for a stream this side gave up on (deadline, cancellation, shutdown).
pub(crate) const CANCELLED: quinn::VarInt = quinn::VarInt::from_u32(1);

/// A body to send: a stream of byte pieces. An `Err` item aborts the body; the receiver gets
/// it as [`RpcError::Remote`] with the same kind.
pub struct SendBody(Pin<Box<dyn Stream<Item = Result<Bytes, RpcError>> + Send>>);

impl fmt::Debug for SendBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendBody")
    }
}

impl SendBody {
    /// A body produced by `stream` as the transport pulls it (with back-pressure).
    pub fn from_stream(
        stream: impl Stream<Item = Result<Bytes, RpcError>> + Send + 'static,
    ) -> Self {
        SendBody(Box::pin(stream))
    }

    /// A body that is already in memory.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let b: Bytes = bytes.into();
        SendBody::from_stream(futures::stream::iter([Ok(b)]))
    }
}

/// A send stream that is reset, not finished, if it is dropped before [`SendGuard::finish`]:
/// a call cancelled half-way must not look like a complete message to the peer.
pub(crate) struct SendGuard {
    stream: quinn::SendStream,
    finished: bool,
}

impl SendGuard {
    pub(crate) fn new(stream: quinn::SendStream) -> Self {
        SendGuard {
            stream,
            finished: false,
        }
    }

    pub(crate) fn stream(&mut self) -> &mut quinn::SendStream {
        &mut self.stream
    }

    /// Ends the stream cleanly.
    pub(crate) fn finish(&mut self) -> Result<(), RpcError> {
        self.finished = true;
        self.stream.finish()?;
        Ok(())
    }
}

impl Drop for SendGuard {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.stream.reset(CANCELLED);
        }
    }
}

/// Sends `body` as data frames and an end frame. `Ok(Some(e))`: the body itself failed with `e`
/// and an abort frame told the receiver; `Err`: the stream failed.
pub(crate) async fn send_body(
    send: &mut quinn::SendStream,
    body: SendBody,
) -> Result<Option<RpcError>, RpcError> {
    let mut body = body.0;
    while let Some(item) = body.next().await {
        match item {
            Ok(mut bytes) => {
                while !bytes.is_empty() {
                    let piece = bytes.split_to(bytes.len().min(MAX_DATA_FRAME));
                    // A piece is at most MAX_DATA_FRAME (1 MiB), so its length fits in a u32.
                    let len = piece.len() as u32;
                    send.write_all(&wire::frame_header(FrameKind::Data, len))
                        .await?;
                    send.write_chunk(piece).await?;
                }
            }
            Err(e) => {
                wire::write_frame(send, FrameKind::Abort, &wire::encode_abort(&e)).await?;
                return Ok(Some(e));
            }
        }
    }
    wire::write_frame(send, FrameKind::End, &[]).await?;
    Ok(None)
}

/// A body being received. Read it with [`RecvBody::chunk`]; dropping it early tells the sender
/// to stop.
pub struct RecvBody {
    stream: Option<quinn::RecvStream>,
    /// Bytes left in the current data frame.
    remaining: usize,
}

impl fmt::Debug for RecvBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBody")
            .field("open", &self.stream.is_some())
            .finish()
    }
}

impl RecvBody {
    /// A body with no bytes.
    pub fn empty() -> Self {
        RecvBody {
            stream: None,
            remaining: 0,
        }
    }

    pub(crate) fn new(stream: quinn::RecvStream, has_body: bool) -> Self {
        if has_body {
            RecvBody {
                stream: Some(stream),
                remaining: 0,
            }
        } else {
            RecvBody::empty()
        }
    }

    /// True once the body has been read to its end (or there was none).
    pub fn is_done(&self) -> bool {
        self.stream.is_none()
    }

    /// The next piece of the body (at most 1 MiB), or `None` at its end. Pieces are handed
    /// over as the network delivers them, without copying.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, RpcError> {
        let result = self.next_piece().await;
        if !matches!(result, Ok(Some(_))) {
            // Done or failed: nothing more will be read.
            self.stream = None;
        }
        result
    }

    async fn next_piece(&mut self) -> Result<Option<Bytes>, RpcError> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        loop {
            if self.remaining > 0 {
                return match stream.read_chunk(self.remaining, true).await? {
                    Some(c) => {
                        self.remaining -= c.bytes.len();
                        Ok(Some(c.bytes))
                    }
                    None => Err(RpcError::Protocol("body ended inside a data frame".into())),
                };
            }
            match wire::read_frame_header(stream).await? {
                None => {
                    return Err(RpcError::Protocol(
                        "body ended without its end frame".into(),
                    ))
                }
                Some((FrameKind::Data, len)) if len == 0 || len > MAX_DATA_FRAME => {
                    return Err(RpcError::TooLarge {
                        what: "data frame",
                        len: len as u64,
                        limit: MAX_DATA_FRAME as u64,
                    })
                }
                Some((FrameKind::Data, len)) => self.remaining = len,
                Some((FrameKind::End, 0)) => return Ok(None),
                Some((FrameKind::Abort, len)) if len <= MAX_ABORT_FRAME => {
                    let payload = wire::read_payload(stream, len).await?;
                    return Err(wire::decode_abort(&payload));
                }
                Some((kind, len)) => {
                    return Err(RpcError::Protocol(format!(
                        "unexpected {kind:?} frame of {len} bytes in a body"
                    )))
                }
            }
        }
    }

    /// Reads the whole body into memory, refusing one longer than `limit` bytes.
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, RpcError> {
        let mut out = Vec::new();
        while let Some(piece) = self.chunk().await? {
            if out.len() + piece.len() > limit {
                self.stream = None;
                return Err(RpcError::TooLarge {
                    what: "body",
                    len: (out.len() + piece.len()) as u64,
                    limit: limit as u64,
                });
            }
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }

    /// Turns the rest of this body into a body to send on, e.g. to forward it to another node.
    pub fn into_send_body(self) -> SendBody {
        SendBody::from_stream(futures::stream::unfold(Some(self), |state| async move {
            let mut body = state?;
            match body.chunk().await {
                Ok(Some(b)) => Some((Ok(b), Some(body))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        }))
    }
}
