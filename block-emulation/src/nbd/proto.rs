//! The NBD wire format as pure functions over byte buffers: the fixed newstyle handshake, the
//! options this server understands, transmission requests and their validation, and simple
//! and structured replies. Nothing here does I/O, so every parser can be fed arbitrary bytes
//! (see `tests/nbd_proto_fuzz.rs`); none of them panics on any input.
//!
//! Reference: <https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md>.

use crate::device::{Allocation, BlockError};

mod transmission;

pub use transmission::*;

/// `NBDMAGIC`: the first 8 bytes the server sends.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: newstyle negotiation magic, also the start of every option request.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic at the start of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic at the start of every transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic at the start of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Magic at the start of a structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Handshake flag: the server speaks fixed newstyle.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Handshake flag: the server can leave out the 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flag: the client speaks fixed newstyle.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag: the client does not want the 124 zero bytes.
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// `NBD_OPT_EXPORT_NAME`.
pub const OPT_EXPORT_NAME: u32 = 1;
/// `NBD_OPT_ABORT`.
pub const OPT_ABORT: u32 = 2;
/// `NBD_OPT_LIST`.
pub const OPT_LIST: u32 = 3;
/// `NBD_OPT_STARTTLS` (refused: this server has no TLS).
pub const OPT_STARTTLS: u32 = 5;
/// `NBD_OPT_INFO`.
pub const OPT_INFO: u32 = 6;
/// `NBD_OPT_GO`.
pub const OPT_GO: u32 = 7;
/// `NBD_OPT_STRUCTURED_REPLY`.
pub const OPT_STRUCTURED_REPLY: u32 = 8;
/// `NBD_OPT_LIST_META_CONTEXT`.
pub const OPT_LIST_META_CONTEXT: u32 = 9;
/// `NBD_OPT_SET_META_CONTEXT`.
pub const OPT_SET_META_CONTEXT: u32 = 10;

/// `NBD_REP_ACK`.
pub const REP_ACK: u32 = 1;
/// `NBD_REP_SERVER`: one export in a `NBD_OPT_LIST` answer.
pub const REP_SERVER: u32 = 2;
/// `NBD_REP_INFO`.
pub const REP_INFO: u32 = 3;
/// `NBD_REP_META_CONTEXT`.
pub const REP_META_CONTEXT: u32 = 4;
/// `NBD_REP_ERR_UNSUP`: unknown option.
pub const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
/// `NBD_REP_ERR_POLICY`.
pub const REP_ERR_POLICY: u32 = (1 << 31) + 2;
/// `NBD_REP_ERR_INVALID`: malformed option.
pub const REP_ERR_INVALID: u32 = (1 << 31) + 3;
/// `NBD_REP_ERR_UNKNOWN`: no such export.
pub const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;
/// `NBD_REP_ERR_SHUTDOWN`: the server is stopping.
pub const REP_ERR_SHUTDOWN: u32 = (1 << 31) + 7;
/// `NBD_REP_ERR_TOO_BIG`: option data larger than the server accepts.
pub const REP_ERR_TOO_BIG: u32 = (1 << 31) + 9;

/// `NBD_INFO_EXPORT`: size and transmission flags.
pub const INFO_EXPORT: u16 = 0;
/// `NBD_INFO_NAME`.
pub const INFO_NAME: u16 = 1;
/// `NBD_INFO_DESCRIPTION`.
pub const INFO_DESCRIPTION: u16 = 2;
/// `NBD_INFO_BLOCK_SIZE`: minimum, preferred and maximum block sizes.
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Transmission flag: always set.
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
/// Transmission flag: the export refuses writes.
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
/// Transmission flag: `NBD_CMD_FLUSH` is supported.
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
/// Transmission flag: `NBD_CMD_FLAG_FUA` is supported.
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
/// Transmission flag: `NBD_CMD_TRIM` is supported.
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
/// Transmission flag: `NBD_CMD_WRITE_ZEROES` is supported.
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// Transmission flag: a flush on one connection covers the writes of every connection.
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;
/// Transmission flag: `NBD_CMD_FLAG_FAST_ZERO` is supported.
pub const TFLAG_SEND_FAST_ZERO: u16 = 1 << 11;

/// `NBD_CMD_READ`.
pub const CMD_READ: u16 = 0;
/// `NBD_CMD_WRITE`.
pub const CMD_WRITE: u16 = 1;
/// `NBD_CMD_DISC`.
pub const CMD_DISC: u16 = 2;
/// `NBD_CMD_FLUSH`.
pub const CMD_FLUSH: u16 = 3;
/// `NBD_CMD_TRIM`.
pub const CMD_TRIM: u16 = 4;
/// `NBD_CMD_WRITE_ZEROES`.
pub const CMD_WRITE_ZEROES: u16 = 6;
/// `NBD_CMD_BLOCK_STATUS`.
pub const CMD_BLOCK_STATUS: u16 = 7;

/// Command flag: force unit access (durable before the reply).
pub const CMD_FLAG_FUA: u16 = 1 << 0;
/// Command flag: `NBD_CMD_WRITE_ZEROES` must allocate (the same thing for us).
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
/// Command flag: do not fragment the read reply (ours are always one chunk).
pub const CMD_FLAG_DF: u16 = 1 << 2;
/// Command flag: `NBD_CMD_BLOCK_STATUS` wants one extent only.
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
/// Command flag: fail `NBD_CMD_WRITE_ZEROES` rather than be slow (we are always fast).
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;

/// Structured reply flag: the last chunk of this reply.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
/// Structured reply chunk with no payload.
pub const REPLY_TYPE_NONE: u16 = 0;
/// Structured reply chunk: an offset and the data read there.
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
/// Structured reply chunk: a metadata context id and extent descriptors.
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
/// Structured reply chunk: an error and its message.
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) + 1;

/// NBD error `EPERM`.
pub const EPERM: u32 = 1;
/// NBD error `EIO`.
pub const EIO: u32 = 5;
/// NBD error `EINVAL`.
pub const EINVAL: u32 = 22;
/// NBD error `ENOSPC`.
pub const ENOSPC: u32 = 28;

/// `base:allocation` extent flag: unallocated.
pub const STATE_HOLE: u32 = 1 << 0;
/// `base:allocation` extent flag: reads as zeros.
pub const STATE_ZERO: u32 = 1 << 1;

/// The one metadata context this server has.
pub const BASE_ALLOCATION: &str = "base:allocation";
/// The id `base:allocation` gets when selected with `NBD_OPT_SET_META_CONTEXT`.
pub const BASE_ALLOCATION_ID: u32 = 1;

/// Largest READ or WRITE payload, advertised as the maximum block size.
pub const MAX_PAYLOAD: u32 = 32 << 20;
/// A WRITE announcing more than this is not read and discarded: the connection is dropped.
pub const MAX_DISCARDED_PAYLOAD: u32 = 128 << 20;
/// Longest string (export name, query) the protocol allows.
pub const MAX_STRING: usize = 4096;
/// Size of a transmission request header.
pub const REQUEST_LEN: usize = 28;
/// Size of an option request header (after which come `len` bytes of data).
pub const OPTION_HEADER_LEN: usize = 16;
/// Most extent descriptors in one block status reply.
pub const MAX_EXTENTS: usize = 128 * 1024;

/// A violation of the protocol that leaves no way to answer: the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    /// A magic number was wrong: the stream is out of step or not NBD.
    #[error("bad magic {found:#x} (expected {expected:#x}): the client is not speaking NBD")]
    BadMagic {
        /// What the peer sent.
        found: u64,
        /// What the protocol requires.
        expected: u64,
    },
    /// The client flags have bits this server did not advertise or does not know.
    #[error("client flags {0:#x} carry unknown bits or lack fixed newstyle")]
    ClientFlags(u32),
    /// A WRITE announced a payload too large to read and discard.
    #[error("write of {0} bytes is far beyond the {MAX_PAYLOAD}-byte maximum")]
    AbsurdWrite(u32),
}

/// The 18 bytes the server sends first: `NBDMAGIC`, `IHAVEOPT` and the handshake flags.
pub fn greeting() -> [u8; 18] {
    let mut b = [0u8; 18];
    b[..8].copy_from_slice(&NBD_MAGIC.to_be_bytes());
    b[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    b[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    b
}

/// The client's answer to the greeting. Returns whether it asked for no zeroes; refuses
/// unknown bits and clients that do not speak fixed newstyle.
pub fn parse_client_flags(b: [u8; 4]) -> Result<bool, Fatal> {
    let flags = u32::from_be_bytes(b);
    if flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0
        || flags & FLAG_C_FIXED_NEWSTYLE == 0
    {
        return Err(Fatal::ClientFlags(flags));
    }
    Ok(flags & FLAG_C_NO_ZEROES != 0)
}

/// An option request header: which option and how many bytes of data follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    /// The option (`NBD_OPT_*`).
    pub option: u32,
    /// Bytes of data after the header.
    pub len: u32,
}

/// Parses an option request header, checking its `IHAVEOPT` magic.
pub fn parse_option_header(b: &[u8; OPTION_HEADER_LEN]) -> Result<OptionHeader, Fatal> {
    let magic = be_u64(&b[..8]);
    if magic != IHAVEOPT {
        return Err(Fatal::BadMagic {
            found: magic,
            expected: IHAVEOPT,
        });
    }
    Ok(OptionHeader {
        option: be_u32(&b[8..12]),
        len: be_u32(&b[12..16]),
    })
}

/// An option the server understands, with its data parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionRequest {
    /// `NBD_OPT_EXPORT_NAME`: go to transmission with this export.
    ExportName(String),
    /// `NBD_OPT_ABORT`.
    Abort,
    /// `NBD_OPT_LIST`.
    List,
    /// `NBD_OPT_INFO` (`go == false`) or `NBD_OPT_GO` (`go == true`).
    Info {
        /// Whether this is `NBD_OPT_GO`.
        go: bool,
        /// The export name.
        name: String,
        /// The `NBD_INFO_*` items asked for.
        requests: Vec<u16>,
    },
    /// `NBD_OPT_STRUCTURED_REPLY`.
    StructuredReply,
    /// `NBD_OPT_LIST_META_CONTEXT` (`set == false`) or `NBD_OPT_SET_META_CONTEXT`.
    MetaContext {
        /// Whether this is `NBD_OPT_SET_META_CONTEXT`.
        set: bool,
        /// The export name.
        name: String,
        /// The queries.
        queries: Vec<String>,
    },
    /// An option this server does not implement (answered with `NBD_REP_ERR_UNSUP`).
    Unsupported(u32),
}

/// Why an option was refused, with the reply type to send and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// `NBD_REP_ERR_*`.
    pub reply: u32,
    /// Human-readable reason, sent as the error reply's data.
    pub message: String,
}

impl OptionError {
    fn invalid(message: impl Into<String>) -> OptionError {
        OptionError {
            reply: REP_ERR_INVALID,
            message: message.into(),
        }
    }
}

/// Parses an option's data. An unknown option is `Ok(Unsupported)`, malformed data is an
/// `NBD_REP_ERR_INVALID` error.
pub fn parse_option(option: u32, data: &[u8]) -> Result<OptionRequest, OptionError> {
    let mut r = Reader(data);
    let req = match option {
        OPT_EXPORT_NAME => return Ok(OptionRequest::ExportName(string(data, "export name")?)),
        OPT_ABORT => return Ok(OptionRequest::Abort),
        OPT_LIST | OPT_STRUCTURED_REPLY => {
            if !data.is_empty() {
                return Err(OptionError::invalid(format!(
                    "option {option} takes no data but carries {} bytes",
                    data.len()
                )));
            }
            return Ok(if option == OPT_LIST {
                OptionRequest::List
            } else {
                OptionRequest::StructuredReply
            });
        }
        OPT_INFO | OPT_GO => {
            let name = r.string("export name")?;
            let n = r.u16()?;
            let mut requests = Vec::with_capacity(usize::from(n).min(data.len() / 2));
            for _ in 0..n {
                requests.push(r.u16()?);
            }
            OptionRequest::Info {
                go: option == OPT_GO,
                name,
                requests,
            }
        }
        OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
            let name = r.string("export name")?;
            let n = r.u32()?;
            let mut queries = Vec::new();
            for _ in 0..n {
                queries.push(r.string("query")?);
            }
            OptionRequest::MetaContext {
                set: option == OPT_SET_META_CONTEXT,
                name,
                queries,
            }
        }
        other => return Ok(OptionRequest::Unsupported(other)),
    };
    if !r.0.is_empty() {
        return Err(OptionError::invalid(format!(
            "option {option} carries {} bytes more than its fields",
            r.0.len()
        )));
    }
    Ok(req)
}

/// The metadata contexts a list of queries selects: `base:allocation` or nothing. With
/// `list`, an empty list of queries and the bare namespace `base:` select every context.
pub fn match_meta_contexts(queries: &[String], list: bool) -> bool {
    if list && queries.is_empty() {
        return true;
    }
    queries
        .iter()
        .any(|q| q == BASE_ALLOCATION || (list && q == "base:"))
}

/// An option reply: header and data.
pub fn option_reply(option: u32, reply: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&reply.to_be_bytes());
    b.extend_from_slice(&len_u32(data.len()).to_be_bytes());
    b.extend_from_slice(data);
    b
}

/// `NBD_REP_SERVER` data: the export's name, then its description.
pub fn rep_server(name: &str, description: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + name.len() + description.len());
    b.extend_from_slice(&len_u32(name.len()).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(description.as_bytes());
    b
}

/// `NBD_REP_META_CONTEXT` data: a context id and its name.
pub fn rep_meta_context(id: u32, name: &str) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend_from_slice(name.as_bytes());
    b
}

/// `NBD_REP_INFO` data for `NBD_INFO_EXPORT`.
pub fn info_export(size: u64, flags: u16) -> Vec<u8> {
    let mut b = INFO_EXPORT.to_be_bytes().to_vec();
    b.extend_from_slice(&size.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    b
}

/// `NBD_REP_INFO` data for `NBD_INFO_NAME` or `NBD_INFO_DESCRIPTION`.
pub fn info_string(info: u16, s: &str) -> Vec<u8> {
    let mut b = info.to_be_bytes().to_vec();
    b.extend_from_slice(s.as_bytes());
    b
}

/// `NBD_REP_INFO` data for `NBD_INFO_BLOCK_SIZE`.
pub fn info_block_size(sizes: BlockSizes) -> Vec<u8> {
    let mut b = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
    b.extend_from_slice(&sizes.min.to_be_bytes());
    b.extend_from_slice(&sizes.preferred.to_be_bytes());
    b.extend_from_slice(&sizes.max.to_be_bytes());
    b
}

/// The reply to `NBD_OPT_EXPORT_NAME`: size, transmission flags and, unless the client asked
/// for none, 124 zero bytes.
pub fn export_name_reply(size: u64, flags: u16, no_zeroes: bool) -> Vec<u8> {
    let mut b = size.to_be_bytes().to_vec();
    b.extend_from_slice(&flags.to_be_bytes());
    if !no_zeroes {
        b.extend_from_slice(&[0u8; 124]);
    }
    b
}

/// The block size constraints advertised for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    /// Every request's offset and length are multiples of this.
    pub min: u32,
    /// Requests of at least this size and alignment avoid read-modify-write.
    pub preferred: u32,
    /// Largest READ or WRITE.
    pub max: u32,
}

impl BlockSizes {
    /// The constraints for a device of logical block size `block_size`: min = the block size
    /// (1 if it is not a power of two up to 64 KiB), preferred = at least 4 KiB, max = 32 MiB.
    pub fn for_block_size(block_size: u32) -> BlockSizes {
        let min = if block_size.is_power_of_two() && block_size <= 65536 {
            block_size
        } else {
            1
        };
        BlockSizes {
            min,
            preferred: min.max(4096),
            max: MAX_PAYLOAD,
        }
    }
}

impl BlockSizes {
    /// The constraints for a device that serves any I/O of `min_io` bytes or more (aligned to
    /// it) and prefers its logical `block_size`: [`BlockSizes::for_block_size`] with the
    /// minimum lowered to `min_io` when that is a power of two below it.
    pub fn for_device(min_io: u32, block_size: u32) -> BlockSizes {
        let base = BlockSizes::for_block_size(block_size);
        let min = if min_io.is_power_of_two() && min_io < base.min {
            min_io
        } else {
            base.min
        };
        BlockSizes { min, ..base }
    }
}

/// The transmission flags for a device.
pub fn transmission_flags(read_only: bool) -> u16 {
    let mut flags = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_CAN_MULTI_CONN;
    if read_only {
        flags |= TFLAG_READ_ONLY;
    } else {
        flags |= TFLAG_SEND_FUA | TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES | TFLAG_SEND_FAST_ZERO;
    }
    flags
}

/// A UTF-8 string of at most [`MAX_STRING`] bytes, or `NBD_REP_ERR_INVALID`.
fn string(b: &[u8], what: &str) -> Result<String, OptionError> {
    if b.len() > MAX_STRING {
        return Err(OptionError::invalid(format!(
            "{what} is {} bytes; the limit is {MAX_STRING}",
            b.len()
        )));
    }
    String::from_utf8(b.to_vec())
        .map_err(|_| OptionError::invalid(format!("{what} is not valid UTF-8")))
}

/// A cursor over option data whose reads fail with `NBD_REP_ERR_INVALID` when data runs out.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], OptionError> {
        if self.0.len() < n {
            return Err(OptionError::invalid("option data ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, OptionError> {
        self.take(2).map(be_u16)
    }

    fn u32(&mut self) -> Result<u32, OptionError> {
        self.take(4).map(be_u32)
    }

    fn string(&mut self, what: &str) -> Result<String, OptionError> {
        let n = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        if n > MAX_STRING {
            return Err(OptionError::invalid(format!(
                "{what} is {n} bytes; the limit is {MAX_STRING}"
            )));
        }
        let b = self.take(n)?;
        string(b, what)
    }
}

fn be_u16(b: &[u8]) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[..2]);
    u16::from_be_bytes(a)
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// A length that fits the protocol's 32-bit fields (every caller's is bounded far below).
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
