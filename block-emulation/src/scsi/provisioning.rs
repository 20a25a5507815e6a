//! Logical block provisioning (SBC-4 4.7): UNMAP, WRITE SAME (which unmaps or zeroes when it
//! can) and GET LBA STATUS, over the device's trim, write_zeroes and allocation map. Unmapped
//! blocks read as zeros (LBPRZ), so unmapping a zero pattern is exact.

use bytes::{Bytes, BytesMut};

use super::cdb::{be16, be32, be64, op};
use super::limits;
use super::sense::{self, from_block_error, Sense};
use super::{truncated, CmdResult, LogicalUnit};

impl LogicalUnit {
    /// WRITE SAME (10/16). `blocks` 0 means up to the end of the medium (WSNZ is 0).
    pub(super) async fn write_same(
        &self,
        cdb: &[u8],
        lba: u64,
        blocks: u32,
        unmap: bool,
        ndob: bool,
        data: Bytes,
    ) -> CmdResult {
        let blocks = if blocks == 0 {
            let total = self.blocks();
            let rest = total.checked_sub(lba).ok_or(sense::LBA_OUT_OF_RANGE)?;
            if rest > u64::from(limits::MAX_WRITE_SAME_BLOCKS) {
                let at = if cdb.first() == Some(&op::WRITE_SAME_10) {
                    7
                } else {
                    10
                };
                return Err(Sense::invalid_cdb(at, None).into());
            }
            rest
        } else {
            u64::from(blocks)
        };
        let (offset, len) = self.byte_range(lba, blocks)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let fua = self.write_through();
        let zeros = ndob || data.iter().all(|b| *b == 0);
        let _order = self.write_order.read().await;
        // With UNMAP the blocks are unmapped whatever the pattern (SBC-4 5.49: the data is
        // written only where a device server does not unmap), and read as zeros after.
        let done = if unmap {
            self.device.trim(offset, len, fua).await
        } else if zeros {
            self.device.write_zeroes(offset, len, fua).await
        } else {
            // One buffer of the pattern repeated, written as many times as needed: its
            // size is bounded whatever the number of blocks.
            let bs = data.len().max(1);
            let per_chunk = (limits::WRITE_SAME_CHUNK_BYTES as usize / bs).max(1);
            let reps = per_chunk.min(usize::try_from(blocks).unwrap_or(per_chunk));
            let mut buf = BytesMut::with_capacity(reps * bs);
            for _ in 0..reps {
                buf.extend_from_slice(&data);
            }
            let buf = buf.freeze();
            let end = offset + len;
            let mut at = offset;
            let mut done = Ok(());
            while at < end && done.is_ok() {
                let n = (buf.len() as u64).min(end - at);
                done = self.device.write(at, buf.slice(..n as usize), fua).await;
                at += n;
            }
            done
        };
        done.map_err(|e| from_block_error(&e, true))?;
        Ok(Vec::new())
    }

    /// UNMAP: every descriptor is checked before any is trimmed.
    pub(super) async fn unmap(&self, list: Bytes) -> CmdResult {
        if list.is_empty() {
            return Ok(Vec::new());
        }
        if list.len() < 8 {
            return Err(sense::PARAM_LIST_LENGTH.into());
        }
        // A BLOCK DESCRIPTOR DATA LENGTH past the list is ignored and the list used (as LIO
        // does); a partial last descriptor is ignored (SBC-4 5.32.2).
        let size = usize::from(be16(&list, 2)).min(list.len() - 8);
        let count = size / 16;
        if count > limits::MAX_UNMAP_DESCRIPTORS as usize {
            return Err(Sense::invalid_param(2, None).into());
        }
        let mut ranges = Vec::with_capacity(count);
        for i in 0..count {
            let at = 8 + 16 * i;
            let lba = be64(&list, at);
            let blocks = be32(&list, at + 8);
            if blocks > limits::MAX_UNMAP_BLOCKS {
                return Err(Sense::invalid_param((at + 8) as u16, None).into());
            }
            let (offset, len) = self.byte_range(lba, u64::from(blocks))?;
            if len > 0 {
                ranges.push((offset, len));
            }
        }
        let fua = self.write_through();
        let _order = self.write_order.read().await;
        for (offset, len) in ranges {
            self.device
                .trim(offset, len, fua)
                .await
                .map_err(|e| from_block_error(&e, true))?;
        }
        Ok(Vec::new())
    }

    /// GET LBA STATUS: mapped and deallocated runs from the starting LBA, as many as the
    /// allocation length holds (at least one).
    pub(super) async fn get_lba_status(&self, lba: u64, alloc: u32) -> CmdResult {
        let total = self.blocks();
        if lba >= total {
            return Err(sense::LBA_OUT_OF_RANGE.into());
        }
        let bs = u64::from(self.device.block_size().max(1));
        let span = (total - lba).min(limits::MAX_LBA_STATUS_BLOCKS);
        let start = lba * bs;
        let end = start + span * bs;
        let runs = self
            .device
            .allocation(start, span * bs)
            .await
            .map_err(|e| from_block_error(&e, false))?;
        let max_descs = (alloc.saturating_sub(8) / 16).clamp(1, 1024) as usize;
        // (first block, end block, deallocated), merged; a block partly mapped is mapped.
        let mut descs: Vec<(u64, u64, bool)> = Vec::new();
        let mut push = |s: u64, e: u64, hole: bool| {
            let s = descs.last().map_or(s, |l| s.max(l.1));
            if e <= s {
                return;
            }
            match descs.last_mut() {
                Some(l) if l.2 == hole && l.1 == s => l.1 = e,
                _ => descs.push((s, e, hole)),
            }
        };
        let mut pos = start;
        for run in runs {
            if pos >= end {
                break;
            }
            let (s, e) = (pos, pos.saturating_add(run.len).min(end));
            pos = e;
            if run.hole {
                let (hs, he) = (s.div_ceil(bs), e / bs);
                push(s / bs, hs, false);
                push(hs, he, true);
                push(he.max(hs), e.div_ceil(bs), false);
            } else {
                push(s / bs, e.div_ceil(bs), false);
            }
        }
        if descs.is_empty() {
            descs.push((lba, lba + 1, false));
        }
        descs.truncate(max_descs);
        let mut out = Vec::with_capacity(8 + 16 * descs.len());
        out.extend_from_slice(&((4 + 16 * descs.len()) as u32).to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        for (s, e, hole) in descs {
            out.extend_from_slice(&s.to_be_bytes());
            let n = u32::try_from(e - s).unwrap_or(u32::MAX);
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(&[u8::from(hole), 0, 0, 0]);
        }
        Ok(truncated(out, alloc))
    }
}
