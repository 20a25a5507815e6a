//! Operation codes: the ones this logical unit knows, the CDB length each implies, and REPORT
//! SUPPORTED OPERATION CODES (SPC-5 6.35), which lists them with their service actions.

use super::sense::Sense;
use super::{truncated, CmdResult};

/// Operation codes this logical unit knows.
pub(super) mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0A;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const MODE_SENSE_6: u8 = 0x1A;
    pub const START_STOP_UNIT: u8 = 0x1B;
    pub const PREVENT_ALLOW: u8 = 0x1E;
    pub const READ_DEFECT_DATA_10: u8 = 0x37;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2A;
    pub const WRITE_VERIFY_10: u8 = 0x2E;
    pub const VERIFY_10: u8 = 0x2F;
    pub const PRE_FETCH_10: u8 = 0x34;
    pub const SYNC_CACHE_10: u8 = 0x35;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const RESERVE_10: u8 = 0x56;
    pub const RELEASE_10: u8 = 0x57;
    pub const MODE_SENSE_10: u8 = 0x5A;
    pub const PR_IN: u8 = 0x5E;
    pub const PR_OUT: u8 = 0x5F;
    pub const READ_16: u8 = 0x88;
    pub const ORWRITE_16: u8 = 0x8B;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const WRITE_16: u8 = 0x8A;
    pub const WRITE_VERIFY_16: u8 = 0x8E;
    pub const VERIFY_16: u8 = 0x8F;
    pub const PRE_FETCH_16: u8 = 0x90;
    pub const SYNC_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    pub const REPORT_LUNS: u8 = 0xA0;
    pub const MAINTENANCE_IN: u8 = 0xA3;
    pub const READ_12: u8 = 0xA8;
    pub const WRITE_12: u8 = 0xAA;
    pub const WRITE_VERIFY_12: u8 = 0xAE;
    pub const VERIFY_12: u8 = 0xAF;
    pub const READ_DEFECT_DATA_12: u8 = 0xB7;

    /// SERVICE ACTION IN (16) service actions.
    pub const SA_READ_CAPACITY_16: u8 = 0x10;
    pub const SA_GET_LBA_STATUS: u8 = 0x12;
    /// MAINTENANCE IN service action.
    pub const SA_REPORT_OPCODES: u8 = 0x0C;
}

/// The CDB length an operation code's group implies (SAM-5 5.2), for codes of known groups.
pub(super) fn cdb_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

/// Every operation code [`super::cdb::parse`] decodes, in order (REPORT SUPPORTED OPERATION
/// CODES lists them in this order).
pub(super) const KNOWN: &[u8] = &[
    op::TEST_UNIT_READY,
    op::REQUEST_SENSE,
    op::READ_6,
    op::WRITE_6,
    op::INQUIRY,
    op::MODE_SELECT_6,
    op::RESERVE_6,
    op::RELEASE_6,
    op::MODE_SENSE_6,
    op::START_STOP_UNIT,
    op::PREVENT_ALLOW,
    op::READ_CAPACITY_10,
    op::READ_10,
    op::WRITE_10,
    op::WRITE_VERIFY_10,
    op::VERIFY_10,
    op::PRE_FETCH_10,
    op::SYNC_CACHE_10,
    op::READ_DEFECT_DATA_10,
    op::WRITE_SAME_10,
    op::UNMAP,
    op::MODE_SELECT_10,
    op::RESERVE_10,
    op::RELEASE_10,
    op::MODE_SENSE_10,
    op::PR_IN,
    op::PR_OUT,
    op::READ_16,
    op::COMPARE_AND_WRITE,
    op::WRITE_16,
    op::ORWRITE_16,
    op::WRITE_VERIFY_16,
    op::VERIFY_16,
    op::PRE_FETCH_16,
    op::SYNC_CACHE_16,
    op::WRITE_SAME_16,
    op::SERVICE_ACTION_IN_16,
    op::REPORT_LUNS,
    op::MAINTENANCE_IN,
    op::READ_12,
    op::WRITE_12,
    op::WRITE_VERIFY_12,
    op::VERIFY_12,
    op::READ_DEFECT_DATA_12,
];

/// The service actions an operation code has, if it has them.
fn service_actions(opcode: u8) -> Option<&'static [u16]> {
    match opcode {
        op::SERVICE_ACTION_IN_16 => Some(&[0x10, 0x12]),
        op::MAINTENANCE_IN => Some(&[0x0C]),
        op::PR_IN => Some(&[0, 1, 2, 3]),
        op::PR_OUT => Some(&[0, 1, 2, 3, 4, 5, 6]),
        _ => None,
    }
}

/// A command timeouts descriptor (SPC-5 6.35.4): no nominal or recommended timeout.
const TIMEOUTS: [u8; 12] = [0x00, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// The CDB usage data of `opcode` with `action`: which bits the device server looks at.
/// Every bit of every byte is reported as used except the CONTROL byte's NACA, which is
/// refused, so initiators may set whatever the standard defines.
fn usage(opcode: u8, action: Option<u16>, len: usize) -> Vec<u8> {
    let mut u = vec![0xFF; len];
    u[0] = opcode;
    if let Some(sa) = action {
        // The service action field: byte 1, bits 4-0.
        u[1] = 0xE0 | (sa as u8 & 0x1F);
    }
    u[len - 1] = 0x03;
    u
}

/// REPORT SUPPORTED OPERATION CODES with REPORTING OPTIONS `options`.
pub(super) fn report(rctd: bool, options: u8, opcode: u8, action: u16, alloc: u32) -> CmdResult {
    let mut out = Vec::new();
    if options == 0 {
        let mut list = Vec::new();
        for &code in KNOWN {
            let len = cdb_len(code).unwrap_or(16) as u16;
            let actions: Vec<Option<u16>> = match service_actions(code) {
                Some(sas) => sas.iter().map(|s| Some(*s)).collect(),
                None => vec![None],
            };
            for sa in actions {
                list.push(code);
                list.push(0);
                list.extend_from_slice(&sa.unwrap_or(0).to_be_bytes());
                list.push(0);
                list.push((u8::from(rctd) << 1) | u8::from(sa.is_some()));
                list.extend_from_slice(&len.to_be_bytes());
                if rctd {
                    list.extend_from_slice(&TIMEOUTS);
                }
            }
        }
        out.extend_from_slice(&(list.len() as u32).to_be_bytes());
        out.extend_from_slice(&list);
        return Ok(truncated(out, alloc));
    }
    let sas = service_actions(opcode);
    let action = match (options, sas) {
        (1, Some(_)) => return Err(Sense::invalid_cdb(2, Some(2)).into()),
        (1, None) | (3, None) => None,
        (2, None) => return Err(Sense::invalid_cdb(2, Some(2)).into()),
        _ => Some(action),
    };
    let known = KNOWN.contains(&opcode)
        && match (action, sas) {
            (Some(a), Some(list)) => list.contains(&a),
            (None, None) => true,
            _ => false,
        };
    out.push(0);
    if known {
        let len = cdb_len(opcode).unwrap_or(16);
        out.push((u8::from(rctd) << 7) | 0x03); // CTDP, SUPPORT 011b
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend(usage(opcode, action, len));
        if rctd {
            out.extend_from_slice(&TIMEOUTS);
        }
    } else {
        out.push(0x01); // SUPPORT 001b: not supported
        out.extend_from_slice(&[0, 0]);
    }
    Ok(truncated(out, alloc))
}
