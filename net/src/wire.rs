//! The frame format of one call on one QUIC bidirectional stream (see the crate docs for the
//! layout). Every length is checked against its limit before anything of that size is
//! allocated or read.

use serde::{Deserialize, Serialize};

use crate::error::RpcError;
use cairn_core::ErrorKind;

/// The RPC protocol version this build speaks: the first byte of every head frame.
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes before each frame's payload: a big-endian u32 length and a kind byte.
pub const FRAME_HEADER_LEN: usize = 5;
/// The largest data frame; longer bodies are split into several.
pub const MAX_DATA_FRAME: usize = 1 << 20;
/// The largest abort frame (an error kind and message).
pub const MAX_ABORT_FRAME: usize = 64 << 10;
/// The default limit on a head frame (a request or response message).
pub const DEFAULT_MAX_HEAD: usize = 16 << 20;
/// Longest service name.
const MAX_SERVICE_NAME: usize = 64;
/// Error messages sent to a peer are cut to this many bytes.
const MAX_ERROR_MESSAGE: usize = 4096;

/// The kind of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A request or response head: protocol version, envelope, the typed message.
    Head = 1,
    /// A piece of the body (1 byte to [`MAX_DATA_FRAME`]).
    Data = 2,
    /// The body is complete (empty payload).
    End = 3,
    /// The sender failed while producing the body: an error kind and message.
    Abort = 4,
}

impl FrameKind {
    fn from_byte(b: u8) -> Option<FrameKind> {
        Some(match b {
            1 => FrameKind::Head,
            2 => FrameKind::Data,
            3 => FrameKind::End,
            4 => FrameKind::Abort,
            _ => return None,
        })
    }
}

/// The header of a frame of `kind` with `len` payload bytes.
pub fn frame_header(kind: FrameKind, len: u32) -> [u8; FRAME_HEADER_LEN] {
    let l = len.to_be_bytes();
    [l[0], l[1], l[2], l[3], kind as u8]
}

/// The envelope of a request, between the protocol byte and the typed message.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RequestEnvelope {
    /// Which service on the node handles it.
    pub service: String,
    /// The caller's deadline in milliseconds (0: none); the server stops the handler then.
    pub timeout_ms: u64,
    /// Whether a body follows the head.
    pub body: bool,
}

/// The envelope of a response.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseEnvelope {
    /// The typed response follows; then a body if `body`.
    Ok {
        /// Whether a body follows the head.
        body: bool,
    },
    /// The call failed.
    Err {
        /// Wire code of the error's `ErrorKind`.
        kind: u8,
        /// What went wrong.
        message: String,
    },
}

/// An error as an abort frame or error response carries it.
#[derive(Debug, Serialize, Deserialize)]
struct WireError {
    kind: u8,
    message: String,
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR_MESSAGE {
        let mut end = MAX_ERROR_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn encode_with<T: Serialize>(envelope: &T, message: &[u8]) -> Vec<u8> {
    let mut out = vec![PROTOCOL_VERSION];
    // postcard cannot fail on these plain structs when writing to a Vec.
    out.extend(postcard::to_allocvec(envelope).unwrap_or_default());
    out.extend_from_slice(message);
    out
}

fn split_envelope<'a, T: for<'de> Deserialize<'de>>(
    what: &str,
    bytes: &'a [u8],
) -> Result<(T, &'a [u8]), RpcError> {
    match bytes.split_first() {
        None => Err(RpcError::Protocol(format!("empty {what} head"))),
        Some((&PROTOCOL_VERSION, rest)) => postcard::take_from_bytes::<T>(rest)
            .map_err(|e| RpcError::Protocol(format!("bad {what} envelope: {e}"))),
        Some((&v, _)) => Err(RpcError::Protocol(format!(
            "peer speaks rpc protocol version {v}, this build speaks {PROTOCOL_VERSION}: upgrade the older node"
        ))),
    }
}

/// A request head: protocol byte, envelope, then `message` (the request's versioned encoding).
pub(crate) fn encode_request(env: &RequestEnvelope, message: &[u8]) -> Vec<u8> {
    encode_with(env, message)
}

/// Splits a request head into its envelope and the typed message's bytes.
pub(crate) fn decode_request(bytes: &[u8]) -> Result<(RequestEnvelope, &[u8]), RpcError> {
    let (env, rest): (RequestEnvelope, _) = split_envelope("request", bytes)?;
    if env.service.len() > MAX_SERVICE_NAME {
        return Err(RpcError::Protocol("service name too long".into()));
    }
    Ok((env, rest))
}

/// A successful response head: envelope then the response's versioned encoding.
pub(crate) fn encode_response_ok(body: bool, message: &[u8]) -> Vec<u8> {
    encode_with(&ResponseEnvelope::Ok { body }, message)
}

/// A failed response head.
pub(crate) fn encode_response_err(err: &RpcError) -> Vec<u8> {
    let env = ResponseEnvelope::Err {
        kind: err.kind().code(),
        message: truncate(err.wire_message()),
    };
    encode_with(&env, &[])
}

/// Splits a response head into its envelope and the typed message's bytes.
pub fn decode_response(bytes: &[u8]) -> Result<(ResponseEnvelope, &[u8]), RpcError> {
    split_envelope("response", bytes)
}

/// The error kind of a wire code (as in [`ResponseEnvelope::Err`]).
pub fn error_kind(code: u8) -> ErrorKind {
    ErrorKind::from_code(code)
}

/// The error a failed response envelope carries.
pub(crate) fn envelope_error(kind: u8, message: String) -> RpcError {
    RpcError::Remote {
        kind: ErrorKind::from_code(kind),
        message,
    }
}

/// The payload of an abort frame for `err`.
pub(crate) fn encode_abort(err: &RpcError) -> Vec<u8> {
    let w = WireError {
        kind: err.kind().code(),
        message: truncate(err.wire_message()),
    };
    postcard::to_allocvec(&w).unwrap_or_default()
}

/// The error an abort frame's payload carries.
pub(crate) fn decode_abort(bytes: &[u8]) -> RpcError {
    match postcard::from_bytes::<WireError>(bytes) {
        Ok(w) => envelope_error(w.kind, w.message),
        Err(_) => RpcError::remote(ErrorKind::Internal, "peer aborted its body"),
    }
}

/// Reads exactly `buf.len()` bytes. `Ok(false)` if the stream ended before the first byte.
async fn read_exact_or_eof(recv: &mut quinn::RecvStream, buf: &mut [u8]) -> Result<bool, RpcError> {
    let mut filled = 0;
    while filled < buf.len() {
        match recv.read(&mut buf[filled..]).await? {
            Some(n) => filled += n,
            None if filled == 0 => return Ok(false),
            None => return Err(RpcError::Protocol("stream ended inside a frame".into())),
        }
    }
    Ok(true)
}

/// Reads a frame header; `None` if the stream ended cleanly at a frame boundary.
pub(crate) async fn read_frame_header(
    recv: &mut quinn::RecvStream,
) -> Result<Option<(FrameKind, usize)>, RpcError> {
    let mut h = [0u8; FRAME_HEADER_LEN];
    if !read_exact_or_eof(recv, &mut h).await? {
        return Ok(None);
    }
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let kind = FrameKind::from_byte(h[4])
        .ok_or_else(|| RpcError::Protocol(format!("unknown frame kind {}", h[4])))?;
    Ok(Some((kind, len)))
}

/// Reads a payload of `len` bytes, which the caller has checked against its limit.
pub(crate) async fn read_payload(
    recv: &mut quinn::RecvStream,
    len: usize,
) -> Result<Vec<u8>, RpcError> {
    let mut buf = vec![0u8; len];
    if len > 0 && !read_exact_or_eof(recv, &mut buf).await? {
        return Err(RpcError::Protocol("stream ended inside a frame".into()));
    }
    Ok(buf)
}

/// Reads a head frame of at most `limit` bytes. A longer one is refused from its header alone.
pub(crate) async fn read_head(
    recv: &mut quinn::RecvStream,
    what: &'static str,
    limit: usize,
) -> Result<Vec<u8>, RpcError> {
    match read_frame_header(recv).await? {
        None => Err(RpcError::Io(format!("stream ended before the {what}"))),
        Some((FrameKind::Head, len)) if len > limit => Err(RpcError::TooLarge {
            what,
            len: len as u64,
            limit: limit as u64,
        }),
        Some((FrameKind::Head, len)) => read_payload(recv, len).await,
        Some((kind, _)) => Err(RpcError::Protocol(format!(
            "expected a {what} head, got a {kind:?} frame"
        ))),
    }
}

/// Writes one frame.
pub(crate) async fn write_frame(
    send: &mut quinn::SendStream,
    kind: FrameKind,
    payload: &[u8],
) -> Result<(), RpcError> {
    let len = u32::try_from(payload.len()).map_err(|_| RpcError::TooLarge {
        what: "frame",
        len: payload.len() as u64,
        limit: u64::from(u32::MAX),
    })?;
    send.write_all(&frame_header(kind, len)).await?;
    send.write_all(payload).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_reject_other_protocols() {
        let env = RequestEnvelope {
            service: "chunk".into(),
            timeout_ms: 1500,
            body: true,
        };
        let head = encode_request(&env, b"msg");
        let (back, msg) = decode_request(&head).unwrap();
        assert_eq!(
            (back.service.as_str(), back.timeout_ms, back.body),
            ("chunk", 1500, true)
        );
        assert_eq!(msg, b"msg");

        let err = RpcError::remote(ErrorKind::NotFound, "x".repeat(10_000));
        let head = encode_response_err(&err);
        match decode_response(&head).unwrap() {
            (ResponseEnvelope::Err { kind, message }, rest) => {
                assert_eq!(ErrorKind::from_code(kind), ErrorKind::NotFound);
                assert_eq!(message.len(), MAX_ERROR_MESSAGE);
                assert!(rest.is_empty());
            }
            other => panic!("{other:?}"),
        }

        let mut future = encode_response_ok(false, b"r");
        future[0] = PROTOCOL_VERSION + 1;
        assert!(
            matches!(decode_response(&future), Err(RpcError::Protocol(m)) if m.contains("upgrade"))
        );
        assert!(decode_response(&[]).is_err());
    }

    #[test]
    fn abort_frames_carry_kind_and_message() {
        let e = decode_abort(&encode_abort(&RpcError::remote(ErrorKind::Corrupt, "bad")));
        assert_eq!(e, RpcError::remote(ErrorKind::Corrupt, "bad"));
        assert_eq!(decode_abort(&[0xff, 0xff]).kind(), ErrorKind::Internal);
    }

    #[test]
    fn frame_header_is_length_then_kind() {
        assert_eq!(frame_header(FrameKind::Data, 0x0102_0304), [1, 2, 3, 4, 2]);
    }
}
