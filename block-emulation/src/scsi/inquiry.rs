//! INQUIRY: the standard data (SPC-5 6.7.2) and the vital product data pages a thin block
//! device reports (supported pages, unit serial number, device identification, block
//! limits, block device characteristics, logical block provisioning).

use bytes::Bytes;

use super::limits;
use super::sense::Sense;
use super::{truncated, CmdResult, LogicalUnit, Nexus};

/// T10 vendor identification, 8 bytes.
pub(super) const VENDOR: &[u8; 8] = b"CAIRN   ";
/// Product identification, 16 bytes.
const PRODUCT: &[u8; 16] = b"Volume          ";

/// VPD pages, in the ascending order page 00h lists them.
const VPD_PAGES: &[u8] = &[0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2];

/// Version descriptors: SAM-5, SPC-4, SBC-3, iSCSI (SPC-5 table 148).
const VERSION_DESCRIPTORS: [u16; 4] = [0x00A0, 0x0460, 0x04C0, 0x0960];

/// Standard INQUIRY data with `peripheral` as byte 0 (qualifier and device type).
pub(super) fn standard(peripheral: u8) -> Vec<u8> {
    let mut d = vec![0u8; 58];
    d[0] = peripheral;
    d[2] = 0x06; // SPC-4
    d[3] = 0x12; // HISUP, RESPONSE DATA FORMAT 2
    d[7] = 0x02; // CMDQUE
    d[8..16].copy_from_slice(VENDOR);
    d[16..32].copy_from_slice(PRODUCT);
    d[32..36].copy_from_slice(&revision());
    for v in VERSION_DESCRIPTORS {
        d.extend_from_slice(&v.to_be_bytes());
    }
    d[4] = (d.len() - 5) as u8;
    d
}

/// The product revision: the crate's version, as 4 ASCII characters.
fn revision() -> [u8; 4] {
    let mut rev = [b' '; 4];
    for (slot, c) in rev.iter_mut().zip(env!("CARGO_PKG_VERSION").bytes()) {
        *slot = c;
    }
    rev
}

/// `s` as printable ASCII (SPC-5 4.3.1), at most `max` bytes.
fn ascii(s: &str, max: usize) -> Vec<u8> {
    s.bytes()
        .filter(|b| (0x20..=0x7E).contains(b))
        .take(max)
        .collect()
}

/// A VPD page: header and `body`.
fn vpd(page: u8, body: &[u8]) -> Vec<u8> {
    let mut d = vec![0x00, page];
    d.extend_from_slice(&(body.len() as u16).to_be_bytes());
    d.extend_from_slice(body);
    d
}

/// One designation descriptor of page 83h.
fn designator(proto_codeset: u8, piv_assoc_type: u8, id: &[u8]) -> Vec<u8> {
    let mut d = vec![proto_codeset, piv_assoc_type, 0, id.len() as u8];
    d.extend_from_slice(id);
    d
}

/// A SCSI name string: UTF-8, NUL-terminated, padded to a multiple of 4 (SPC-5 7.7.6.11).
fn name_string(name: &str) -> Vec<u8> {
    let mut s = ascii(name, 251);
    s.push(0);
    while !s.len().is_multiple_of(4) {
        s.push(0);
    }
    s
}

impl LogicalUnit {
    pub(super) fn inquiry(&self, nexus: &Nexus, evpd: bool, page: u8, alloc: u32) -> CmdResult {
        if !evpd {
            return Ok(truncated(standard(0x00), alloc));
        }
        let bs = self.device.block_size().max(1);
        let data = match page {
            0x00 => vpd(0x00, VPD_PAGES),
            0x80 => vpd(0x80, &ascii(&self.identity.serial, 252)),
            0x83 => vpd(0x83, &self.device_identification(nexus)),
            0xB0 => {
                let mut b = vec![0u8; 0x3C];
                // b[0]: WSNZ 0: WRITE SAME with 0 blocks runs to the end of the medium.
                b[1] = limits::MAX_COMPARE_AND_WRITE_BLOCKS as u8;
                let granularity = (self.device.min_io_size() / bs).max(1);
                b[2..4].copy_from_slice(&(granularity.min(0xFFFF) as u16).to_be_bytes());
                b[4..8].copy_from_slice(&limits::max_transfer_blocks(bs).to_be_bytes());
                let optimal = (limits::OPTIMAL_TRANSFER_BYTES / bs).max(1);
                b[8..12].copy_from_slice(&optimal.to_be_bytes());
                b[16..20].copy_from_slice(&limits::MAX_UNMAP_BLOCKS.to_be_bytes());
                b[20..24].copy_from_slice(&limits::MAX_UNMAP_DESCRIPTORS.to_be_bytes());
                b[24..28].copy_from_slice(&granularity.to_be_bytes());
                let ws = u64::from(limits::MAX_WRITE_SAME_BLOCKS);
                b[32..40].copy_from_slice(&ws.to_be_bytes());
                vpd(0xB0, &b)
            }
            0xB1 => {
                let mut b = vec![0u8; 0x3C];
                b[1] = 0x01; // MEDIUM ROTATION RATE 1: non-rotating
                vpd(0xB1, &b)
            }
            // LBPU, LBPWS, LBPWS10, LBPRZ 001b (unmapped blocks read zero); thin provisioned.
            0xB2 => vpd(0xB2, &[0x00, 0xE4, 0x02, 0x00]),
            _ => return Err(Sense::invalid_cdb(2, None).into()),
        };
        Ok(truncated(data, alloc))
    }

    /// The designation descriptors of page 83h: the logical unit's NAA and T10 vendor ids,
    /// then the target port (relative port, port group, SCSI name) and the target device.
    fn device_identification(&self, nexus: &Nexus) -> Vec<u8> {
        let id = &self.identity;
        let mut d = designator(0x01, 0x03, &id.naa.to_be_bytes());
        let mut t10 = VENDOR.to_vec();
        t10.extend_from_slice(&ascii(&id.serial, 247));
        d.extend(designator(0x02, 0x01, &t10));
        let port = nexus.target_port.to_be_bytes();
        d.extend(designator(0x51, 0x94, &[0, 0, port[0], port[1]]));
        d.extend(designator(0x51, 0x95, &[0, 0, 0, 1]));
        let port_name = format!("{},t,0x{:04x}", id.target_name, nexus.target_port);
        d.extend(designator(0x53, 0x98, &name_string(&port_name)));
        d.extend(designator(0x53, 0xA8, &name_string(&id.target_name)));
        d
    }
}

/// Standard INQUIRY data as a response body, for [`super::luns::no_such_lun`].
pub(super) fn standard_bytes(peripheral: u8, alloc: u32) -> Vec<Bytes> {
    truncated(standard(peripheral), alloc)
}
