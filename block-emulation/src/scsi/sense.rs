//! Sense data: the key, additional sense code and qualifier a failed command reports, and
//! their two wire forms (fixed 70h and descriptor 72h, SPC-5 4.4).

use bytes::Bytes;

use crate::device::BlockError;

/// Sense keys used here (SPC-5 table 49).
pub mod key {
    /// No error to report (REQUEST SENSE with nothing pending).
    pub const NO_SENSE: u8 = 0x00;
    /// The logical unit cannot be accessed right now.
    pub const NOT_READY: u8 = 0x02;
    /// The medium failed.
    pub const MEDIUM_ERROR: u8 = 0x03;
    /// The device failed in a way that is not the medium's.
    pub const HARDWARE_ERROR: u8 = 0x04;
    /// The CDB or its parameter list is wrong.
    pub const ILLEGAL_REQUEST: u8 = 0x05;
    /// Something changed that the initiator must hear about.
    pub const UNIT_ATTENTION: u8 = 0x06;
    /// The medium refuses the write.
    pub const DATA_PROTECT: u8 = 0x07;
    /// The command was aborted.
    pub const ABORTED_COMMAND: u8 = 0x0B;
    /// VERIFY / COMPARE AND WRITE found data that differs.
    pub const MISCOMPARE: u8 = 0x0E;
}

/// One sense condition, before it is encoded for the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sense {
    /// Sense key.
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// The INFORMATION field (first failing LBA, miscompare offset), when it is valid.
    pub info: Option<u64>,
    /// The three sense-key-specific bytes, SKSV included, when they are valid.
    pub sks: Option<[u8; 3]>,
}

impl Sense {
    /// A condition with no information and no sense-key-specific field.
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Sense {
        Sense {
            key,
            asc,
            ascq,
            info: None,
            sks: None,
        }
    }

    /// INVALID FIELD IN CDB (24h/00h), pointing at `byte` (and `bit`, when one bit is wrong).
    pub const fn invalid_cdb(byte: u16, bit: Option<u8>) -> Sense {
        Sense::field_pointer(0x24, true, byte, bit)
    }

    /// INVALID FIELD IN PARAMETER LIST (26h/00h), pointing at `byte` of the parameter list.
    pub const fn invalid_param(byte: u16, bit: Option<u8>) -> Sense {
        Sense::field_pointer(0x26, false, byte, bit)
    }

    const fn field_pointer(asc: u8, in_cdb: bool, byte: u16, bit: Option<u8>) -> Sense {
        let mut b0 = 0x80; // SKSV
        if in_cdb {
            b0 |= 0x40; // C/D: the error is in the CDB
        }
        if let Some(bit) = bit {
            b0 |= 0x08 | (bit & 0x07); // BPV and the bit
        }
        let [hi, lo] = byte.to_be_bytes();
        Sense {
            key: key::ILLEGAL_REQUEST,
            asc,
            ascq: 0,
            info: None,
            sks: Some([b0, hi, lo]),
        }
    }

    /// The same condition, pointing at `byte` (and `bit`) of the CDB.
    pub const fn at_cdb(mut self, byte: u16, bit: Option<u8>) -> Sense {
        self.sks = Sense::invalid_cdb(byte, bit).sks;
        self
    }

    /// The same condition with its INFORMATION field set.
    pub const fn with_info(mut self, info: u64) -> Sense {
        self.info = Some(info);
        self
    }

    /// Encodes the condition: descriptor format (72h) when `descriptor`, else fixed (70h).
    pub fn encode(&self, descriptor: bool) -> Bytes {
        if descriptor {
            let mut out = vec![0x72, self.key & 0x0F, self.asc, self.ascq, 0, 0, 0, 0];
            if let Some(info) = self.info {
                // Information descriptor (type 00h): VALID, then the 8-byte field.
                out.extend_from_slice(&[0x00, 0x0A, 0x80, 0x00]);
                out.extend_from_slice(&info.to_be_bytes());
            }
            if let Some(sks) = self.sks {
                // Sense key specific descriptor (type 02h).
                out.extend_from_slice(&[0x02, 0x06, 0x00, 0x00, sks[0], sks[1], sks[2], 0x00]);
            }
            out[7] = (out.len() - 8) as u8;
            Bytes::from(out)
        } else {
            let mut out = vec![0u8; 18];
            out[0] = 0x70;
            out[2] = self.key & 0x0F;
            // The fixed format holds 4 bytes of INFORMATION: larger values are not VALID.
            if let Some(info) = self.info.and_then(|i| u32::try_from(i).ok()) {
                out[0] |= 0x80;
                out[3..7].copy_from_slice(&info.to_be_bytes());
            }
            out[7] = 10;
            out[12] = self.asc;
            out[13] = self.ascq;
            if let Some(sks) = self.sks {
                out[15..18].copy_from_slice(&sks);
            }
            Bytes::from(out)
        }
    }
}

/// INVALID COMMAND OPERATION CODE (20h/00h).
pub const INVALID_OPCODE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x20, 0x00);
/// INVALID FIELD IN CDB (24h/00h) without a field pointer.
pub const INVALID_FIELD_IN_CDB: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x24, 0x00);
/// LOGICAL BLOCK ADDRESS OUT OF RANGE (21h/00h).
pub const LBA_OUT_OF_RANGE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x21, 0x00);
/// PARAMETER LIST LENGTH ERROR (1Ah/00h).
pub const PARAM_LIST_LENGTH: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x1A, 0x00);
/// INVALID FIELD IN COMMAND INFORMATION UNIT (0Eh/03h): less Data-Out came than the CDB says.
pub const INVALID_FIELD_IN_IU: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x0E, 0x03);
/// LOGICAL UNIT NOT SUPPORTED (25h/00h).
pub const LUN_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x25, 0x00);
/// SAVING PARAMETERS NOT SUPPORTED (39h/00h).
pub const SAVING_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x39, 0x00);
/// INVALID RELEASE OF PERSISTENT RESERVATION (26h/04h).
pub const INVALID_RELEASE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x04);
/// WRITE PROTECTED (27h/00h).
pub const WRITE_PROTECTED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x00);
/// SPACE ALLOCATION FAILED WRITE PROTECT (27h/07h).
pub const SPACE_ALLOCATION_FAILED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x07);
/// MISCOMPARE DURING VERIFY OPERATION (1Dh/00h); give it the offset with [`Sense::with_info`].
pub const MISCOMPARE: Sense = Sense::new(key::MISCOMPARE, 0x1D, 0x00);
/// WRITE ERROR (0Ch/00h).
pub const WRITE_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x0C, 0x00);
/// UNRECOVERED READ ERROR (11h/00h).
pub const READ_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x11, 0x00);
/// NO ADDITIONAL SENSE INFORMATION: what REQUEST SENSE says when nothing is pending.
pub const NO_SENSE: Sense = Sense::new(key::NO_SENSE, 0x00, 0x00);

/// Unit attention conditions (additional sense code and qualifier).
pub mod ua {
    /// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED: a new I_T nexus, a target reset.
    pub const POWER_ON: (u8, u8) = (0x29, 0x00);
    /// BUS DEVICE RESET FUNCTION OCCURRED: a logical unit reset.
    pub const LU_RESET: (u8, u8) = (0x29, 0x03);
    /// MODE PARAMETERS CHANGED: another nexus changed a mode page.
    pub const MODE_CHANGED: (u8, u8) = (0x2A, 0x01);
    /// RESERVATIONS PREEMPTED.
    pub const RESERVATIONS_PREEMPTED: (u8, u8) = (0x2A, 0x03);
    /// RESERVATIONS RELEASED.
    pub const RESERVATIONS_RELEASED: (u8, u8) = (0x2A, 0x04);
    /// REGISTRATIONS PREEMPTED.
    pub const REGISTRATIONS_PREEMPTED: (u8, u8) = (0x2A, 0x05);
    /// CAPACITY DATA HAS CHANGED.
    pub const CAPACITY_CHANGED: (u8, u8) = (0x2A, 0x09);
}

/// The sense for a block device error; `writing` picks the medium error's code for
/// [`BlockError::Io`] (WRITE ERROR or UNRECOVERED READ ERROR).
pub fn from_block_error(e: &BlockError, writing: bool) -> Sense {
    match e {
        BlockError::OutOfRange { .. } => LBA_OUT_OF_RANGE,
        BlockError::NoSpace(_) => SPACE_ALLOCATION_FAILED,
        BlockError::ReadOnly => WRITE_PROTECTED,
        // The CDB was range-checked and aligned before the device saw it: what the device
        // still refuses is a field of the request it cannot serve.
        BlockError::Invalid(_) => INVALID_FIELD_IN_CDB,
        BlockError::Io(_) if writing => WRITE_ERROR,
        BlockError::Io(_) => READ_ERROR,
        BlockError::NotFound(_) => LUN_NOT_SUPPORTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_carries_field_pointer_and_info() {
        let s = Sense::invalid_cdb(2, Some(5)).encode(false);
        assert_eq!(
            &s[..],
            &[0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0xCD, 0, 2]
        );
        let s = MISCOMPARE.with_info(0x1234).encode(false);
        assert_eq!(s[0], 0xF0);
        assert_eq!(&s[3..7], &[0, 0, 0x12, 0x34]);
        assert_eq!((s[2], s[12], s[13]), (0x0E, 0x1D, 0));
        // Too large for the fixed format's 4 bytes: not VALID.
        let s = MISCOMPARE.with_info(1 << 40).encode(false);
        assert_eq!(s[0], 0x70);
    }

    #[test]
    fn descriptor_format_carries_descriptors() {
        let s = Sense::invalid_param(1, None).with_info(7).encode(true);
        assert_eq!(&s[..8], &[0x72, 5, 0x26, 0, 0, 0, 0, 20]);
        assert_eq!(&s[8..20], &[0, 0x0A, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(&s[20..28], &[2, 6, 0, 0, 0x80, 0, 1, 0]);
        assert_eq!(
            &LBA_OUT_OF_RANGE.encode(true)[..],
            &[0x72, 5, 0x21, 0, 0, 0, 0, 0]
        );
    }
}
