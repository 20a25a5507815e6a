//! CDB decoding: from the raw bytes to a [`Cmd`] whose fields are checked against what this
//! logical unit supports, so that nothing is read or allocated for a CDB that will be refused.

use super::limits;
pub(super) use super::opcodes::{cdb_len, op, KNOWN};
use super::sense::{self, Sense};

/// One decoded command. Lengths are in logical blocks unless named otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cmd {
    TestUnitReady,
    RequestSense {
        desc: bool,
        alloc: u32,
    },
    Inquiry {
        evpd: bool,
        page: u8,
        alloc: u32,
    },
    ReportLuns,
    ReadCapacity10,
    ReadCapacity16 {
        alloc: u32,
    },
    GetLbaStatus {
        lba: u64,
        alloc: u32,
    },
    Read {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    Write {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    /// WRITE AND VERIFY: the write is verified by the store's own checks; BYTCHK adds nothing.
    WriteVerify {
        lba: u64,
        blocks: u32,
    },
    /// VERIFY; `bytchk` 0: medium only, 1: compare `blocks` blocks, 3: compare one block to each.
    Verify {
        lba: u64,
        blocks: u32,
        bytchk: u8,
    },
    PreFetch {
        lba: u64,
        blocks: u32,
    },
    SyncCache {
        lba: u64,
        blocks: u32,
    },
    /// WRITE SAME; `blocks` 0 means "to the end of the medium".
    WriteSame {
        lba: u64,
        blocks: u32,
        unmap: bool,
        ndob: bool,
    },
    Unmap {
        param_len: u32,
    },
    CompareAndWrite {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    /// ORWRITE (16): the Data-Out is ORed into the blocks on the medium.
    OrWrite {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    /// READ DEFECT DATA (10/12): the lists asked for (primary, grown) and their format.
    ReadDefectData {
        twelve: bool,
        plist: bool,
        glist: bool,
        format: u8,
        alloc: u32,
    },
    ModeSense {
        ten: bool,
        dbd: bool,
        llbaa: bool,
        pc: u8,
        page: u8,
        subpage: u8,
        alloc: u32,
    },
    ModeSelect {
        ten: bool,
        param_len: u32,
    },
    StartStop,
    PreventAllow {
        prevent: bool,
    },
    Reserve,
    Release,
    PrIn {
        action: u8,
        alloc: u32,
    },
    PrOut {
        action: u8,
        scope: u8,
        kind: u8,
    },
    ReportOpcodes {
        rctd: bool,
        options: u8,
        opcode: u8,
        action: u16,
        alloc: u32,
    },
}

impl Cmd {
    /// Whether the command changes the medium (refused on a read-only device).
    pub(super) fn writes(&self) -> bool {
        matches!(
            self,
            Cmd::Write { .. }
                | Cmd::WriteVerify { .. }
                | Cmd::WriteSame { .. }
                | Cmd::Unmap { .. }
                | Cmd::CompareAndWrite { .. }
                | Cmd::OrWrite { .. }
        )
    }

    /// Bytes of Data-Out the command carries.
    pub(super) fn data_out_len(&self, block_size: u32) -> u32 {
        // Every product here was bounded by `parse` (transfer lengths by the block limits).
        match *self {
            Cmd::Write { blocks, .. }
            | Cmd::WriteVerify { blocks, .. }
            | Cmd::OrWrite { blocks, .. } => blocks * block_size,
            Cmd::Verify {
                bytchk: 1, blocks, ..
            } => blocks * block_size,
            Cmd::Verify { bytchk: 3, .. } => block_size,
            Cmd::WriteSame { ndob: false, .. } => block_size,
            Cmd::CompareAndWrite { blocks, .. } => (2 * blocks).saturating_mul(block_size),
            Cmd::Unmap { param_len } | Cmd::ModeSelect { param_len, .. } => param_len,
            Cmd::PrOut { .. } => limits::PR_OUT_PARAM_LEN,
            _ => 0,
        }
    }
}

pub(super) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(super) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(super) fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes([
        b[at],
        b[at + 1],
        b[at + 2],
        b[at + 3],
        b[at + 4],
        b[at + 5],
        b[at + 6],
        b[at + 7],
    ])
}

/// Decodes `cdb` for a logical unit of `block_size`-byte blocks.
pub(super) fn parse(cdb: &[u8], block_size: u32) -> Result<Cmd, Sense> {
    let Some(&opcode) = cdb.first() else {
        return Err(sense::INVALID_OPCODE);
    };
    let Some(len) = cdb_len(opcode) else {
        return Err(sense::INVALID_OPCODE);
    };
    if !KNOWN.contains(&opcode) {
        return Err(sense::INVALID_OPCODE);
    }
    if cdb.len() < len {
        // Only a transport bug gets here (iSCSI pads CDBs to 16 bytes).
        return Err(Sense::invalid_cdb(0, None));
    }
    let c = &cdb[..len];
    if c[len - 1] & 0x04 != 0 {
        return Err(Sense::invalid_cdb((len - 1) as u16, Some(2))); // NACA
    }
    let max_blocks = limits::max_transfer_blocks(block_size);
    let rw10 = |c: &[u8]| (u64::from(be32(c, 2)), u32::from(be16(c, 7)), 7u16);
    let rw12 = |c: &[u8]| (u64::from(be32(c, 2)), be32(c, 6), 6u16);
    let rw16 = |c: &[u8]| (be64(c, 2), be32(c, 10), 10u16);
    let transfer = |(lba, blocks, at): (u64, u32, u16)| -> Result<(u64, u32), Sense> {
        if blocks > max_blocks {
            return Err(Sense::invalid_cdb(at, None));
        }
        Ok((lba, blocks))
    };
    // RDPROTECT / WRPROTECT / VRPROTECT: no protection information is formatted.
    let no_protect = |c: &[u8]| {
        if c[1] & 0xE0 != 0 {
            Err(Sense::invalid_cdb(1, Some(7)))
        } else {
            Ok(())
        }
    };
    let fua = |c: &[u8]| c[1] & 0x08 != 0;

    let cmd = match opcode {
        op::TEST_UNIT_READY => Cmd::TestUnitReady,
        op::REQUEST_SENSE => Cmd::RequestSense {
            desc: c[1] & 0x01 != 0,
            alloc: u32::from(c[4]),
        },
        op::INQUIRY => {
            if c[1] & 0x02 != 0 {
                return Err(Sense::invalid_cdb(1, Some(1))); // CmdDt
            }
            let evpd = c[1] & 0x01 != 0;
            if !evpd && c[2] != 0 {
                return Err(Sense::invalid_cdb(2, None));
            }
            Cmd::Inquiry {
                evpd,
                page: c[2],
                alloc: u32::from(be16(c, 3)),
            }
        }
        op::REPORT_LUNS => Cmd::ReportLuns,
        op::READ_CAPACITY_10 => {
            // PMI is obsolete; an LBA without it was always an error.
            if c[8] & 0x01 == 0 && be32(c, 2) != 0 {
                return Err(Sense::invalid_cdb(2, None));
            }
            Cmd::ReadCapacity10
        }
        op::SERVICE_ACTION_IN_16 => match c[1] & 0x1F {
            op::SA_READ_CAPACITY_16 => Cmd::ReadCapacity16 { alloc: be32(c, 10) },
            op::SA_GET_LBA_STATUS => Cmd::GetLbaStatus {
                lba: be64(c, 2),
                alloc: be32(c, 10),
            },
            _ => return Err(Sense::invalid_cdb(1, Some(4))),
        },
        op::READ_6 | op::WRITE_6 => {
            let lba = (u64::from(c[1] & 0x1F) << 16) | u64::from(be16(c, 2));
            let blocks = if c[4] == 0 { 256 } else { u32::from(c[4]) };
            let (lba, blocks) = transfer((lba, blocks, 4))?;
            if opcode == op::READ_6 {
                Cmd::Read {
                    lba,
                    blocks,
                    fua: false,
                }
            } else {
                Cmd::Write {
                    lba,
                    blocks,
                    fua: false,
                }
            }
        }
        op::READ_10 | op::READ_12 | op::READ_16 => {
            no_protect(c)?;
            let (lba, blocks) = transfer(match opcode {
                op::READ_10 => rw10(c),
                op::READ_12 => rw12(c),
                _ => rw16(c),
            })?;
            Cmd::Read {
                lba,
                blocks,
                fua: fua(c),
            }
        }
        op::WRITE_10 | op::WRITE_12 | op::WRITE_16 => {
            no_protect(c)?;
            let (lba, blocks) = transfer(match opcode {
                op::WRITE_10 => rw10(c),
                op::WRITE_12 => rw12(c),
                _ => rw16(c),
            })?;
            Cmd::Write {
                lba,
                blocks,
                fua: fua(c),
            }
        }
        op::WRITE_VERIFY_10 | op::WRITE_VERIFY_12 | op::WRITE_VERIFY_16 => {
            no_protect(c)?;
            if c[1] & 0x04 != 0 {
                // BYTCHK 10b is reserved and 11b is not defined for WRITE AND VERIFY.
                return Err(Sense::invalid_cdb(1, Some(2)));
            }
            let (lba, blocks) = transfer(match opcode {
                op::WRITE_VERIFY_10 => rw10(c),
                op::WRITE_VERIFY_12 => rw12(c),
                _ => rw16(c),
            })?;
            Cmd::WriteVerify { lba, blocks }
        }
        op::VERIFY_10 | op::VERIFY_12 | op::VERIFY_16 => {
            no_protect(c)?;
            let bytchk = (c[1] >> 1) & 0x03;
            if bytchk == 2 {
                return Err(Sense::invalid_cdb(1, Some(2)));
            }
            let (lba, blocks) = transfer(match opcode {
                op::VERIFY_10 => rw10(c),
                op::VERIFY_12 => rw12(c),
                _ => rw16(c),
            })?;
            Cmd::Verify {
                lba,
                blocks,
                bytchk,
            }
        }
        op::PRE_FETCH_10 | op::PRE_FETCH_16 => {
            // Nothing is read ahead, so the length is only range-checked, never allocated.
            let (lba, blocks, _) = if opcode == op::PRE_FETCH_10 {
                rw10(c)
            } else {
                rw16(c)
            };
            Cmd::PreFetch { lba, blocks }
        }
        op::SYNC_CACHE_10 | op::SYNC_CACHE_16 => {
            let (lba, blocks, _) = if opcode == op::SYNC_CACHE_10 {
                rw10(c)
            } else {
                rw16(c)
            };
            Cmd::SyncCache { lba, blocks }
        }
        op::WRITE_SAME_10 | op::WRITE_SAME_16 => {
            no_protect(c)?;
            if c[1] & 0x10 != 0 {
                return Err(Sense::invalid_cdb(1, Some(4))); // ANCHOR: ANC_SUP is 0
            }
            if c[1] & 0x06 != 0 {
                // PBDATA / LBDATA: obsolete, and they would need protection information.
                return Err(Sense::invalid_cdb(
                    1,
                    Some(if c[1] & 0x04 != 0 { 2 } else { 1 }),
                ));
            }
            let (lba, blocks, at) = if opcode == op::WRITE_SAME_10 {
                rw10(c)
            } else {
                (be64(c, 2), be32(c, 10), 10)
            };
            if blocks > limits::MAX_WRITE_SAME_BLOCKS {
                return Err(Sense::invalid_cdb(at, None));
            }
            let ndob = opcode == op::WRITE_SAME_16 && c[1] & 0x01 != 0;
            Cmd::WriteSame {
                lba,
                blocks,
                unmap: c[1] & 0x08 != 0,
                ndob,
            }
        }
        op::UNMAP => {
            if c[1] & 0x01 != 0 {
                return Err(Sense::invalid_cdb(1, Some(0))); // ANCHOR
            }
            let param_len = u32::from(be16(c, 7));
            if param_len > limits::MAX_UNMAP_PARAM_LEN {
                return Err(Sense::invalid_cdb(7, None));
            }
            Cmd::Unmap { param_len }
        }
        op::COMPARE_AND_WRITE => {
            no_protect(c)?;
            let blocks = u32::from(c[13]);
            if blocks > limits::MAX_COMPARE_AND_WRITE_BLOCKS {
                return Err(Sense::invalid_cdb(13, None));
            }
            Cmd::CompareAndWrite {
                lba: be64(c, 2),
                blocks,
                fua: fua(c),
            }
        }
        op::ORWRITE_16 => {
            no_protect(c)?;
            let (lba, blocks) = transfer(rw16(c))?;
            Cmd::OrWrite {
                lba,
                blocks,
                fua: fua(c),
            }
        }
        op::READ_DEFECT_DATA_10 | op::READ_DEFECT_DATA_12 => {
            let twelve = opcode == op::READ_DEFECT_DATA_12;
            let flags = if twelve { c[1] } else { c[2] };
            Cmd::ReadDefectData {
                twelve,
                plist: flags & 0x10 != 0,
                glist: flags & 0x08 != 0,
                format: flags & 0x07,
                alloc: if twelve {
                    be32(c, 6)
                } else {
                    u32::from(be16(c, 7))
                },
            }
        }
        op::MODE_SENSE_6 | op::MODE_SENSE_10 => {
            let ten = opcode == op::MODE_SENSE_10;
            Cmd::ModeSense {
                ten,
                dbd: c[1] & 0x08 != 0,
                llbaa: ten && c[1] & 0x10 != 0,
                pc: c[2] >> 6,
                page: c[2] & 0x3F,
                subpage: c[3],
                alloc: if ten {
                    u32::from(be16(c, 7))
                } else {
                    u32::from(c[4])
                },
            }
        }
        op::MODE_SELECT_6 | op::MODE_SELECT_10 => {
            let ten = opcode == op::MODE_SELECT_10;
            if c[1] & 0x01 != 0 {
                return Err(sense::SAVING_NOT_SUPPORTED.at_cdb(1, Some(0)));
            }
            if c[1] & 0x10 == 0 {
                // PF=0 would mean vendor-specific pages: only SPC page formats are parsed.
                return Err(Sense::invalid_cdb(1, Some(4)));
            }
            let param_len = if ten {
                u32::from(be16(c, 7))
            } else {
                u32::from(c[4])
            };
            if param_len > limits::MAX_MODE_SELECT_LEN {
                return Err(Sense::invalid_cdb(if ten { 7 } else { 4 }, None));
            }
            Cmd::ModeSelect { ten, param_len }
        }
        op::START_STOP_UNIT => Cmd::StartStop,
        op::PREVENT_ALLOW => Cmd::PreventAllow {
            prevent: c[4] & 0x03 != 0,
        },
        op::RESERVE_6 | op::RESERVE_10 | op::RELEASE_6 | op::RELEASE_10 => {
            let ten = opcode == op::RESERVE_10 || opcode == op::RELEASE_10;
            if ten && c[1] & 0x12 != 0 {
                // Third-party reservations (and their LONGID) are not supported.
                return Err(Sense::invalid_cdb(
                    1,
                    Some(if c[1] & 0x10 != 0 { 4 } else { 1 }),
                ));
            }
            if !ten && c[1] & 0x01 != 0 {
                return Err(Sense::invalid_cdb(1, Some(0))); // extents (SCSI-2)
            }
            if opcode == op::RESERVE_6 || opcode == op::RESERVE_10 {
                Cmd::Reserve
            } else {
                Cmd::Release
            }
        }
        op::PR_IN => {
            let action = c[1] & 0x1F;
            if action > 3 {
                return Err(Sense::invalid_cdb(1, Some(4)));
            }
            Cmd::PrIn {
                action,
                alloc: u32::from(be16(c, 7)),
            }
        }
        op::PR_OUT => {
            let action = c[1] & 0x1F;
            if action > 6 {
                // REGISTER AND MOVE (7) is not supported.
                return Err(Sense::invalid_cdb(1, Some(4)));
            }
            // SPEC_I_PT and REGISTER AND MOVE are not supported, so the list is always 24
            // bytes; checked here so that no other length is ever read.
            if be32(c, 5) != limits::PR_OUT_PARAM_LEN {
                return Err(sense::PARAM_LIST_LENGTH);
            }
            Cmd::PrOut {
                action,
                scope: c[2] >> 4,
                kind: c[2] & 0x0F,
            }
        }
        op::MAINTENANCE_IN => {
            if c[1] & 0x1F != op::SA_REPORT_OPCODES {
                return Err(Sense::invalid_cdb(1, Some(4)));
            }
            let options = c[2] & 0x07;
            if options > 3 {
                return Err(Sense::invalid_cdb(2, Some(2)));
            }
            Cmd::ReportOpcodes {
                rctd: c[2] & 0x80 != 0,
                options,
                opcode: c[3],
                action: be16(c, 4),
                alloc: be32(c, 6),
            }
        }
        _ => return Err(sense::INVALID_OPCODE),
    };
    Ok(cmd)
}
