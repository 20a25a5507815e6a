//! What a block front end (NBD, iSCSI) needs from a volume: a size, a block size, reads,
//! writes, flushes, discards and an allocation map. Front ends depend on these traits only, so
//! a protocol is tested and served the same way whatever is behind it.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

/// Why a block request failed. Front ends map each kind to their protocol's error (NBD:
/// `EINVAL`, `ENOSPC`, `EPERM`, `EIO`; SCSI: sense keys).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// No export or volume of that name.
    #[error("no volume named {0:?}")]
    NotFound(String),
    /// The range `[offset, offset + len)` passes the device's end.
    #[error("range {offset}+{len} passes the end of the device ({size} bytes)")]
    OutOfRange {
        /// Start of the request.
        offset: u64,
        /// Length of the request.
        len: u64,
        /// The device's size.
        size: u64,
    },
    /// A request the device cannot take as asked (misaligned, too large, bad flags).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The site refuses new writes: its disks are (nearly) full.
    #[error("no space left on the site: {0}")]
    NoSpace(String),
    /// The device is read-only (a snapshot, or a volume opened read-only).
    #[error("the device is read-only")]
    ReadOnly,
    /// The store failed; the request had no effect that a later flush would make durable.
    #[error("storage error: {0}")]
    Io(String),
}

/// One run of the allocation map: `len` bytes that are all holes (never written, trimmed: they
/// read as zeros and cost nothing) or all data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// Bytes covered.
    pub len: u64,
    /// Unallocated: the bytes read as zeros and take no space.
    pub hole: bool,
}

/// A block device as front ends serve it. Every method may be called concurrently from many
/// connections; writes are acknowledged once buffered, and [`BlockDevice::flush`] returns once
/// every write acknowledged before it is durable.
#[async_trait]
pub trait BlockDevice: Send + Sync {
    /// Size in bytes (a multiple of the block size).
    fn size(&self) -> u64;
    /// Logical block size in bytes (512 or 4096): the smallest unit of I/O.
    fn block_size(&self) -> u32;
    /// The smallest I/O the device serves, and the alignment it needs (1: any byte range).
    /// Front ends advertise it as the minimum and the block size as the preferred size.
    fn min_io_size(&self) -> u32 {
        self.block_size()
    }
    /// The device refuses writes.
    fn read_only(&self) -> bool;
    /// `len` bytes from `offset`.
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, BlockError>;
    /// The same bytes as [`BlockDevice::read`], as consecutive pieces a front end can send
    /// without joining them first (a volume's read over many extents copies nothing).
    async fn read_pieces(&self, offset: u64, len: u32) -> Result<Vec<Bytes>, BlockError> {
        Ok(vec![self.read(offset, len).await?])
    }
    /// Writes `data` at `offset`; with `fua`, returns once this write is durable.
    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), BlockError>;
    /// Makes `[offset, offset + len)` read as zeros, storing nothing for it.
    async fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> Result<(), BlockError>;
    /// Discards `[offset, offset + len)`: it reads as zeros afterwards and takes no space.
    async fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), BlockError>;
    /// Returns once every write acknowledged before the call is durable.
    async fn flush(&self) -> Result<(), BlockError>;
    /// The allocation map of `[offset, offset + len)`, in order, covering at least the first
    /// byte and at most the whole range.
    async fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Allocation>, BlockError>;
}

/// The devices a front end can serve, by name.
#[async_trait]
pub trait Exports: Send + Sync {
    /// Opens the device `name` (the NBD export name, the iSCSI LUN's volume).
    async fn open(&self, name: &str) -> Result<Arc<dyn BlockDevice>, BlockError>;
    /// The names of every device, with a one-line description each.
    async fn list(&self) -> Result<Vec<(String, String)>, BlockError>;
}
