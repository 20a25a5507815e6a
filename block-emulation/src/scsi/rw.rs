//! The media commands of SBC-4 that move data: READ CAPACITY, READ, WRITE (and WRITE AND
//! VERIFY), VERIFY, PRE-FETCH, SYNCHRONIZE CACHE and COMPARE AND WRITE.

use bytes::Bytes;

use super::sense::{self, from_block_error, Sense};
use super::{truncated, CmdResult, Fail, LogicalUnit};

impl LogicalUnit {
    /// The device's capacity in logical blocks.
    pub(super) fn blocks(&self) -> u64 {
        self.device.size() / u64::from(self.device.block_size().max(1))
    }

    /// `[lba, lba + blocks)` as a byte range, or LOGICAL BLOCK ADDRESS OUT OF RANGE when it
    /// passes the end (even for 0 blocks, when the LBA itself is past the end).
    pub(super) fn byte_range(&self, lba: u64, blocks: u64) -> Result<(u64, u64), Sense> {
        let bs = u64::from(self.device.block_size());
        match lba.checked_add(blocks) {
            Some(end) if end <= self.blocks() => Ok((lba * bs, blocks * bs)),
            _ => Err(sense::LBA_OUT_OF_RANGE),
        }
    }

    pub(super) fn read_capacity_10(&self) -> Vec<Bytes> {
        let last = self.blocks().saturating_sub(1);
        // Too large for 32 bits: FFFFFFFFh tells the initiator to use READ CAPACITY (16).
        let last = u32::try_from(last).unwrap_or(u32::MAX);
        let mut d = last.to_be_bytes().to_vec();
        d.extend_from_slice(&self.device.block_size().to_be_bytes());
        vec![Bytes::from(d)]
    }

    pub(super) fn read_capacity_16(&self, alloc: u32) -> Vec<Bytes> {
        let mut d = vec![0u8; 32];
        d[0..8].copy_from_slice(&self.blocks().saturating_sub(1).to_be_bytes());
        d[8..12].copy_from_slice(&self.device.block_size().to_be_bytes());
        // No protection; one logical block per physical block; LBPME and LBPRZ: thin, and
        // unmapped blocks read as zeros.
        d[14] = 0xC0;
        truncated(d, alloc)
    }

    pub(super) async fn read(&self, lba: u64, blocks: u32) -> CmdResult {
        let (offset, len) = self.byte_range(lba, u64::from(blocks))?;
        if len == 0 {
            return Ok(Vec::new());
        }
        // `len` is at most the maximum transfer length, checked when the CDB was decoded.
        let len = u32::try_from(len).map_err(|_| sense::LBA_OUT_OF_RANGE)?;
        self.device
            .read_pieces(offset, len)
            .await
            .map_err(|e| from_block_error(&e, false).into())
    }

    pub(super) async fn write(&self, lba: u64, blocks: u32, fua: bool, data: Bytes) -> CmdResult {
        let (offset, len) = self.byte_range(lba, u64::from(blocks))?;
        if len == 0 {
            return Ok(Vec::new());
        }
        if self.device.read_only() {
            return Err(sense::WRITE_PROTECTED.into());
        }
        let fua = fua || self.write_through();
        let _order = self.write_order.read().await;
        self.device
            .write(offset, data, fua)
            .await
            .map_err(|e| from_block_error(&e, true))?;
        Ok(Vec::new())
    }

    /// VERIFY: the store checks its own data, so without BYTCHK only the range is checked;
    /// with it, the medium is compared with the Data-Out.
    pub(super) async fn verify(&self, lba: u64, blocks: u32, bytchk: u8, data: Bytes) -> CmdResult {
        let (offset, len) = self.byte_range(lba, u64::from(blocks))?;
        if len == 0 || bytchk == 0 {
            return Ok(Vec::new());
        }
        let len = u32::try_from(len).map_err(|_| sense::LBA_OUT_OF_RANGE)?;
        let medium = self
            .device
            .read(offset, len)
            .await
            .map_err(|e| from_block_error(&e, false))?;
        let bs = data.len().max(1);
        // BYTCHK 11b: one block of Data-Out against every block of the range.
        let differs = medium.iter().enumerate().position(|(i, b)| {
            let want = if bytchk == 3 {
                data.get(i % bs)
            } else {
                data.get(i)
            };
            want != Some(b)
        });
        match differs {
            Some(at) => Err(sense::MISCOMPARE.with_info(at as u64).into()),
            None => Ok(Vec::new()),
        }
    }

    /// PRE-FETCH: nothing to fetch ahead of time; the range is checked. GOOD rather than
    /// CONDITION MET, as SBC-4 allows when the cache is not used for it.
    pub(super) fn pre_fetch(&self, lba: u64, blocks: u32) -> CmdResult {
        self.byte_range(lba, u64::from(blocks))?;
        Ok(Vec::new())
    }

    /// SYNCHRONIZE CACHE: the device flushes everything, so the range is only checked; 0
    /// blocks means to the end of the medium. IMMED is honoured by flushing anyway before
    /// answering, which SBC-4 allows.
    pub(super) async fn sync_cache(&self, lba: u64, blocks: u32) -> CmdResult {
        let blocks = if blocks == 0 {
            self.blocks().saturating_sub(lba)
        } else {
            u64::from(blocks)
        };
        self.byte_range(lba, blocks)?;
        self.device
            .flush()
            .await
            .map_err(|e| from_block_error(&e, true))?;
        Ok(Vec::new())
    }

    /// The read half of the read-modify-write commands: the unit's write lock (no other write
    /// lands until it is dropped) and what the medium holds in `blocks` blocks at `lba`, with
    /// their byte offset; `None` for no blocks. `field` is the CDB byte of the length.
    async fn read_for_update(
        &self,
        lba: u64,
        blocks: u32,
        field: u16,
    ) -> Result<Option<(tokio::sync::RwLockWriteGuard<'_, ()>, u64, Bytes)>, Fail> {
        let (offset, len) = self.byte_range(lba, u64::from(blocks))?;
        if len == 0 {
            return Ok(None);
        }
        if self.device.read_only() {
            return Err(sense::WRITE_PROTECTED.into());
        }
        let len32 = u32::try_from(len).map_err(|_| Sense::invalid_cdb(field, None))?;
        let order = self.write_order.write().await;
        let medium = self
            .device
            .read(offset, len32)
            .await
            .map_err(|e| from_block_error(&e, false))?;
        Ok(Some((order, offset, medium)))
    }

    /// COMPARE AND WRITE: the first half of the Data-Out is compared with the medium and, if
    /// equal, the second half written, with no other write of this unit in between.
    pub(super) async fn compare_and_write(
        &self,
        lba: u64,
        blocks: u32,
        fua: bool,
        data: Bytes,
    ) -> CmdResult {
        let fua = fua || self.write_through();
        let Some((_order, offset, medium)) = self.read_for_update(lba, blocks, 13).await? else {
            return Ok(Vec::new());
        };
        let half = data.len() / 2;
        let expected = &data[..half];
        if let Some(at) = medium.iter().zip(expected).position(|(a, b)| a != b) {
            // SBC-4 5.3: INFORMATION is the offset of the first differing byte.
            return Err(sense::MISCOMPARE.with_info(at as u64).into());
        }
        self.device
            .write(offset, data.slice(half..), fua)
            .await
            .map_err(|e| from_block_error(&e, true))?;
        Ok(Vec::new())
    }

    /// ORWRITE (16) (SBC-4 5.10): each byte of the Data-Out is ORed into the medium's, under
    /// the unit's write lock like COMPARE AND WRITE, so no other write lands in between.
    pub(super) async fn or_write(
        &self,
        lba: u64,
        blocks: u32,
        fua: bool,
        data: Bytes,
    ) -> CmdResult {
        let fua = fua || self.write_through();
        let Some((_order, offset, medium)) = self.read_for_update(lba, blocks, 10).await? else {
            return Ok(Vec::new());
        };
        let ored: Vec<u8> = medium.iter().zip(&data[..]).map(|(a, b)| a | b).collect();
        self.device
            .write(offset, Bytes::from(ored), fua)
            .await
            .map_err(|e| from_block_error(&e, true))?;
        Ok(Vec::new())
    }
}

/// READ DEFECT DATA (10/12) (SBC-4 5.19-5.20): a volume has no defects, so both lists are
/// valid and empty, in the format asked for.
pub(super) fn read_defect_data(
    twelve: bool,
    plist: bool,
    glist: bool,
    format: u8,
    alloc: u32,
) -> Vec<Bytes> {
    let flags = (u8::from(plist) << 4) | (u8::from(glist) << 3) | format;
    let header = if twelve {
        vec![0, flags, 0, 0, 0, 0, 0, 0]
    } else {
        vec![0, flags, 0, 0]
    };
    truncated(header, alloc)
}
