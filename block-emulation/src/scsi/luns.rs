//! Answers that do not need a logical unit: REPORT LUNS (SPC-5 6.33) for the target's LUN
//! inventory, and every command addressed to a LUN the target does not have.

use bytes::Bytes;

use super::cdb::{be32, cdb_len, op};
use super::inquiry;
use super::sense::{self, Sense};
use super::{truncated, Response};

/// The 8-byte single-level LUN for `lun` (SAM-5 4.7): peripheral device addressing below
/// 256, flat space addressing below 16384; larger values are taken as already encoded.
fn encode_lun(lun: u64) -> [u8; 8] {
    match lun {
        0..=0xFF => [0, lun as u8, 0, 0, 0, 0, 0, 0],
        0x100..=0x3FFF => [0x40 | (lun >> 8) as u8, lun as u8, 0, 0, 0, 0, 0, 0],
        _ => lun.to_be_bytes(),
    }
}

/// The CDB's CONTROL byte has NACA set, or the CDB is shorter than its operation code says.
fn malformed(cdb: &[u8]) -> Option<Sense> {
    let len = cdb_len(*cdb.first()?)?;
    if cdb.len() < len {
        return Some(Sense::invalid_cdb(0, None));
    }
    (cdb[len - 1] & 0x04 != 0).then(|| Sense::invalid_cdb((len - 1) as u16, Some(2)))
}

/// REPORT LUNS for a target whose LUNs are `luns` (single-level LUN format), honouring
/// SELECT REPORT and ALLOCATION LENGTH; an allocation length under 16 is refused with
/// INVALID FIELD IN CDB, as SPC-5 permits. Sense data is in fixed format.
pub fn report_luns(cdb: &[u8], luns: &[u64]) -> Response {
    match report_luns_data(cdb, luns) {
        Ok(data) => Response::good(data),
        Err(s) => Response::check(s, false),
    }
}

/// The REPORT LUNS parameter data, or why the CDB is refused.
pub(super) fn report_luns_data(cdb: &[u8], luns: &[u64]) -> Result<Vec<Bytes>, Sense> {
    if cdb.first() != Some(&op::REPORT_LUNS) {
        return Err(sense::INVALID_OPCODE);
    }
    if let Some(s) = malformed(cdb) {
        return Err(s);
    }
    let alloc = be32(cdb, 6);
    if alloc < 16 {
        return Err(Sense::invalid_cdb(6, None));
    }
    let listed: &[u64] = match cdb[2] {
        // All logical units (02h adds well-known ones, of which there are none).
        0x00 | 0x02 => luns,
        // Well-known, administrative or subsidiary logical units: none here.
        0x01 | 0x10 | 0x11 | 0x12 => &[],
        _ => return Err(Sense::invalid_cdb(2, None)),
    };
    let mut out = Vec::with_capacity(8 + 8 * listed.len());
    let len = u32::try_from(8 * listed.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    for &lun in listed {
        out.extend_from_slice(&encode_lun(lun));
    }
    Ok(truncated(out, alloc))
}

/// Responses for a LUN that does not exist on the target (the transport calls this for
/// commands to unknown LUNs): INQUIRY answers with peripheral qualifier 011b / device type
/// 1Fh; REQUEST SENSE returns LOGICAL UNIT NOT SUPPORTED as its sense data (SPC-5 6.39);
/// REPORT LUNS reports no LUN (the transport should answer it with [`report_luns`] and the
/// target's inventory instead); everything else is CHECK CONDITION, ILLEGAL REQUEST, LOGICAL
/// UNIT NOT SUPPORTED (25h/00h).
pub fn no_such_lun(cdb: &[u8]) -> Response {
    const NOT_CONNECTED: u8 = 0x7F;
    if let Some(s) = malformed(cdb) {
        return Response::check(s, false);
    }
    match cdb.first() {
        Some(&op::INQUIRY) => {
            let alloc = u32::from(u16::from_be_bytes([cdb[3], cdb[4]]));
            if cdb[1] & 0x02 != 0 {
                return Response::check(Sense::invalid_cdb(1, Some(1)), false);
            }
            match (cdb[1] & 0x01 != 0, cdb[2]) {
                (false, 0) => Response::good(inquiry::standard_bytes(NOT_CONNECTED, alloc)),
                (true, 0) => Response::good(truncated(vec![NOT_CONNECTED, 0, 0, 1, 0x00], alloc)),
                _ => Response::check(Sense::invalid_cdb(2, None), false),
            }
        }
        Some(&op::REPORT_LUNS) => report_luns(cdb, &[]),
        Some(&op::REQUEST_SENSE) => {
            let data = sense::LUN_NOT_SUPPORTED.encode(cdb[1] & 0x01 != 0);
            Response::good(truncated(data.to_vec(), u32::from(cdb[4])))
        }
        _ => Response::check(sense::LUN_NOT_SUPPORTED, false),
    }
}
