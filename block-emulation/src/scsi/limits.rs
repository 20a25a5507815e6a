//! The limits this logical unit advertises in the Block Limits VPD page and enforces before it
//! reads or allocates anything a CDB or parameter list asks for.

/// Largest READ/WRITE/VERIFY transfer, in bytes (Block Limits MAXIMUM TRANSFER LENGTH): bounds
/// what one command can make the target buffer.
pub const MAX_TRANSFER_BYTES: u32 = 32 << 20;

/// Preferred transfer size, in bytes (Block Limits OPTIMAL TRANSFER LENGTH).
pub const OPTIMAL_TRANSFER_BYTES: u32 = 1 << 20;

/// Largest WRITE SAME, in logical blocks. Zeroing and unmapping cost no buffer; a pattern is
/// written from one reused buffer of at most [`WRITE_SAME_CHUNK_BYTES`].
pub const MAX_WRITE_SAME_BLOCKS: u32 = 1 << 20;

/// Largest piece a WRITE SAME pattern is written in.
pub const WRITE_SAME_CHUNK_BYTES: u32 = 1 << 20;

/// Largest UNMAP descriptor, in logical blocks (MAXIMUM UNMAP LBA COUNT).
pub const MAX_UNMAP_BLOCKS: u32 = 1 << 20;

/// Most descriptors in one UNMAP (MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT).
pub const MAX_UNMAP_DESCRIPTORS: u32 = 256;

/// Longest UNMAP parameter list read: the header and every descriptor allowed.
pub const MAX_UNMAP_PARAM_LEN: u32 = 8 + 16 * MAX_UNMAP_DESCRIPTORS;

/// Largest COMPARE AND WRITE, in logical blocks (MAXIMUM COMPARE AND WRITE LENGTH).
pub const MAX_COMPARE_AND_WRITE_BLOCKS: u32 = 128;

/// Longest MODE SELECT parameter list read (every page this unit has fits in far less).
pub const MAX_MODE_SELECT_LEN: u32 = 1024;

/// The PERSISTENT RESERVE OUT parameter list: always 24 bytes without SPEC_I_PT or
/// REGISTER AND MOVE, which are not supported.
pub const PR_OUT_PARAM_LEN: u32 = 24;

/// Largest number of logical blocks one GET LBA STATUS looks at.
pub const MAX_LBA_STATUS_BLOCKS: u64 = 1 << 24;

/// Most UNIT ATTENTION conditions queued for one nexus: older ones are dropped first, as a
/// nexus that never sends a command must not grow the queue without bound.
pub const MAX_PENDING_UA: usize = 16;

/// MAXIMUM TRANSFER LENGTH in logical blocks of `block_size` bytes.
pub fn max_transfer_blocks(block_size: u32) -> u32 {
    MAX_TRANSFER_BYTES / block_size.max(1)
}
