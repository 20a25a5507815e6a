//! Transmission: request headers, their validation against the negotiated export, and
//! simple and structured replies.

use super::*;

/// A transmission request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// `NBD_CMD_FLAG_*`.
    pub flags: u16,
    /// `NBD_CMD_*`.
    pub kind: u16,
    /// The client's handle, echoed in the reply.
    pub cookie: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length (for WRITE, the payload that follows).
    pub len: u32,
}

/// Parses a request header, checking its magic.
pub fn parse_request(b: &[u8; REQUEST_LEN]) -> Result<Request, Fatal> {
    let magic = be_u32(&b[..4]);
    if magic != REQUEST_MAGIC {
        return Err(Fatal::BadMagic {
            found: u64::from(magic),
            expected: u64::from(REQUEST_MAGIC),
        });
    }
    Ok(Request {
        flags: be_u16(&b[4..6]),
        kind: be_u16(&b[6..8]),
        cookie: be_u64(&b[8..16]),
        offset: be_u64(&b[16..24]),
        len: be_u32(&b[24..28]),
    })
}

/// Encodes a request header (for clients and tests).
pub fn encode_request(req: &Request) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&req.flags.to_be_bytes());
    b[6..8].copy_from_slice(&req.kind.to_be_bytes());
    b[8..16].copy_from_slice(&req.cookie.to_be_bytes());
    b[16..24].copy_from_slice(&req.offset.to_be_bytes());
    b[24..28].copy_from_slice(&req.len.to_be_bytes());
    b
}

/// What the connection negotiated about its export, as request validation needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportState {
    /// Device size in bytes.
    pub size: u64,
    /// Minimum block size: offsets and lengths must be multiples of it.
    pub min_block: u32,
    /// The device refuses writes.
    pub read_only: bool,
    /// Structured replies were negotiated.
    pub structured: bool,
    /// `base:allocation` was selected.
    pub base_allocation: bool,
}

/// A request that passed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Read `len` bytes at `offset`.
    Read {
        /// Start.
        offset: u64,
        /// Length, at most [`MAX_PAYLOAD`].
        len: u32,
    },
    /// Write the `len`-byte payload that follows at `offset`.
    Write {
        /// Start.
        offset: u64,
        /// Payload length, at most [`MAX_PAYLOAD`].
        len: u32,
        /// Durable before the reply.
        fua: bool,
    },
    /// Soft disconnect.
    Disc,
    /// Make every acknowledged write durable.
    Flush,
    /// Discard a range.
    Trim {
        /// Start.
        offset: u64,
        /// Length.
        len: u32,
        /// Durable before the reply.
        fua: bool,
    },
    /// Zero a range.
    WriteZeroes {
        /// Start.
        offset: u64,
        /// Length.
        len: u32,
        /// Durable before the reply.
        fua: bool,
    },
    /// The allocation map of a range.
    BlockStatus {
        /// Start.
        offset: u64,
        /// Length.
        len: u32,
        /// Only one extent wanted.
        req_one: bool,
    },
}

/// A request refused by validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The NBD error to reply with.
    pub errno: u32,
    /// Why, for the structured error reply and the log.
    pub message: String,
    /// Payload bytes the server must still read and drop before the next request (a WRITE's).
    pub discard: u32,
}

/// Validates a request against the negotiated export before anything of it is trusted.
/// `Err(Fatal)` means the connection must be dropped (a WRITE too large to even discard).
pub fn check_request(req: &Request, st: &ExportState) -> Result<Result<Command, Rejection>, Fatal> {
    let discard = if req.kind == CMD_WRITE {
        if req.len > MAX_DISCARDED_PAYLOAD {
            return Err(Fatal::AbsurdWrite(req.len));
        }
        req.len
    } else {
        0
    };
    let reject = |errno: u32, message: String| {
        Ok(Err(Rejection {
            errno,
            message,
            discard,
        }))
    };
    let (allowed, writes) = match req.kind {
        CMD_READ => (CMD_FLAG_FUA | CMD_FLAG_DF, false),
        CMD_WRITE | CMD_TRIM => (CMD_FLAG_FUA, true),
        CMD_WRITE_ZEROES => (CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO, true),
        CMD_BLOCK_STATUS => (CMD_FLAG_FUA | CMD_FLAG_REQ_ONE, false),
        CMD_DISC | CMD_FLUSH => (CMD_FLAG_FUA, false),
        other => return reject(EINVAL, format!("unknown command {other}")),
    };
    if req.flags & !allowed != 0 {
        return reject(
            EINVAL,
            format!(
                "flags {:#x} are not valid for command {}",
                req.flags, req.kind
            ),
        );
    }
    match req.kind {
        CMD_DISC => return Ok(Ok(Command::Disc)),
        CMD_FLUSH => return Ok(Ok(Command::Flush)),
        _ => {}
    }
    if writes && st.read_only {
        return reject(EPERM, "the export is read-only".into());
    }
    if (req.kind == CMD_READ || req.kind == CMD_WRITE) && req.len > MAX_PAYLOAD {
        return reject(
            EINVAL,
            format!("length {} exceeds the {MAX_PAYLOAD}-byte maximum", req.len),
        );
    }
    let min = u64::from(st.min_block.max(1));
    if !req.offset.is_multiple_of(min) || !u64::from(req.len).is_multiple_of(min) {
        return reject(
            EINVAL,
            format!(
                "offset {} or length {} is not a multiple of the {min}-byte block size",
                req.offset, req.len
            ),
        );
    }
    let past_end = req
        .offset
        .checked_add(u64::from(req.len))
        .is_none_or(|end| end > st.size);
    if past_end {
        let errno = if req.kind == CMD_WRITE || req.kind == CMD_WRITE_ZEROES {
            ENOSPC
        } else {
            EINVAL
        };
        return reject(
            errno,
            format!(
                "range {}+{} passes the end of the export ({} bytes)",
                req.offset, req.len, st.size
            ),
        );
    }
    let (offset, len, fua) = (req.offset, req.len, req.flags & CMD_FLAG_FUA != 0);
    Ok(Ok(match req.kind {
        CMD_READ => Command::Read { offset, len },
        CMD_WRITE => Command::Write { offset, len, fua },
        CMD_TRIM => Command::Trim { offset, len, fua },
        CMD_WRITE_ZEROES => Command::WriteZeroes { offset, len, fua },
        _ => {
            if !st.structured || !st.base_allocation {
                return reject(
                    EINVAL,
                    "block status needs structured replies and base:allocation".into(),
                );
            }
            if len == 0 {
                return reject(EINVAL, "block status of zero bytes".into());
            }
            Command::BlockStatus {
                offset,
                len,
                req_one: req.flags & CMD_FLAG_REQ_ONE != 0,
            }
        }
    }))
}

/// The NBD error for a device error.
pub fn errno_for(e: &BlockError) -> u32 {
    match e {
        BlockError::NotFound(_) | BlockError::Invalid(_) | BlockError::OutOfRange { .. } => EINVAL,
        BlockError::NoSpace(_) => ENOSPC,
        BlockError::ReadOnly => EPERM,
        BlockError::Io(_) => EIO,
    }
}

/// A simple reply header (followed by the data of a successful READ).
pub fn simple_reply(cookie: u64, error: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..].copy_from_slice(&cookie.to_be_bytes());
    b
}

/// A structured reply chunk header for a payload of `len` bytes.
pub fn chunk_header(flags: u16, kind: u16, cookie: u64, len: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&kind.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b[16..].copy_from_slice(&len.to_be_bytes());
    b
}

/// The header of a final `NBD_REPLY_TYPE_OFFSET_DATA` chunk, up to (not including) the data.
pub fn offset_data_header(cookie: u64, offset: u64, data_len: u32) -> Vec<u8> {
    let mut b = chunk_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_OFFSET_DATA,
        cookie,
        data_len.saturating_add(8),
    )
    .to_vec();
    b.extend_from_slice(&offset.to_be_bytes());
    b
}

/// A final `NBD_REPLY_TYPE_ERROR` chunk.
pub fn error_chunk(cookie: u64, errno: u32, message: &str) -> Vec<u8> {
    let msg = truncate_utf8(message, MAX_STRING);
    let len = u16::try_from(msg.len()).unwrap_or(0);
    let mut b = chunk_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_ERROR,
        cookie,
        6 + u32::from(len),
    )
    .to_vec();
    b.extend_from_slice(&errno.to_be_bytes());
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(&msg.as_bytes()[..usize::from(len)]);
    b
}

/// A final `NBD_REPLY_TYPE_BLOCK_STATUS` chunk for `base:allocation`, built from the device's
/// allocation map of a request of `len` bytes: clipped to `len`, adjacent runs merged, at most
/// one extent with `req_one`. An empty map reports the whole range as data ("unknown").
pub fn block_status_chunk(cookie: u64, map: &[Allocation], len: u32, req_one: bool) -> Vec<u8> {
    let mut extents: Vec<(u32, u32)> = Vec::new();
    let mut left = u64::from(len);
    for a in map {
        if left == 0 || extents.len() >= MAX_EXTENTS {
            break;
        }
        let n = a.len.min(left);
        if n == 0 {
            continue;
        }
        left -= n;
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let flags = if a.hole { STATE_HOLE | STATE_ZERO } else { 0 };
        match extents.last_mut() {
            Some(last) if last.1 == flags => last.0 = last.0.saturating_add(n),
            _ => extents.push((n, flags)),
        }
    }
    if extents.is_empty() {
        extents.push((len, 0));
    }
    if req_one {
        extents.truncate(1);
    }
    let payload = 4 + 8 * extents.len();
    let mut b = chunk_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_BLOCK_STATUS,
        cookie,
        len_u32(payload),
    )
    .to_vec();
    b.reserve(payload);
    b.extend_from_slice(&BASE_ALLOCATION_ID.to_be_bytes());
    for (n, flags) in extents {
        b.extend_from_slice(&n.to_be_bytes());
        b.extend_from_slice(&flags.to_be_bytes());
    }
    b
}
