//! MODE SENSE (6/10) and MODE SELECT (6/10): the caching page (WCE), the control page
//! (D_SENSE) and the informational exceptions page, with one block descriptor. Saving is not
//! supported: PC=11b and SP=1 answer SAVING PARAMETERS NOT SUPPORTED.
//!
//! WCE=1 by default: writes are acknowledged once buffered and SYNCHRONIZE CACHE (or FUA) makes
//! them durable, which is what a volume does. MODE SELECT may clear WCE; every write is then
//! sent with FUA, so an initiator that wants a write-through unit gets one.

use bytes::Bytes;

use super::sense::{self, ua, Sense};
use super::{truncated, CmdResult, LogicalUnit, Nexus};

/// The mode settings an initiator can change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ModeState {
    /// Write cache enabled (caching page).
    pub(super) wce: bool,
    /// Sense data in descriptor format (control page).
    pub(super) d_sense: bool,
}

impl Default for ModeState {
    fn default() -> ModeState {
        ModeState {
            wce: true,
            d_sense: false,
        }
    }
}

const CACHING: u8 = 0x08;
const CONTROL: u8 = 0x0A;
const INFO_EXCEPTIONS: u8 = 0x1C;
const ALL_PAGES: u8 = 0x3F;

/// Page control values.
const PC_CURRENT: u8 = 0;
const PC_CHANGEABLE: u8 = 1;
const PC_SAVED: u8 = 3;

/// A page as MODE SENSE returns it: current values, or (for `pc` 1) the changeable mask.
fn page(code: u8, pc: u8, mode: ModeState) -> Vec<u8> {
    let current = pc != PC_CHANGEABLE;
    // Defaults and current values differ only in what MODE SELECT changed.
    let mode = if pc == 2 { ModeState::default() } else { mode };
    match code {
        CACHING => {
            let mut p = vec![0u8; 20];
            p[0] = CACHING;
            p[1] = 0x12;
            p[2] = if current {
                u8::from(mode.wce) << 2
            } else {
                0x04
            };
            p
        }
        CONTROL => {
            let mut p = vec![0u8; 12];
            p[0] = CONTROL;
            p[1] = 0x0A;
            if current {
                p[2] = u8::from(mode.d_sense) << 2;
                p[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
                p[8] = 0xFF; // BUSY TIMEOUT PERIOD: unlimited
                p[9] = 0xFF;
            } else {
                p[2] = 0x04; // D_SENSE
            }
            p
        }
        _ => {
            let mut p = vec![0u8; 12];
            p[0] = INFO_EXCEPTIONS;
            p[1] = 0x0A;
            if current {
                p[2] = 0x08; // DEXCPT: no informational exceptions are reported
            }
            p
        }
    }
}

impl LogicalUnit {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mode_sense(
        &self,
        ten: bool,
        dbd: bool,
        llbaa: bool,
        pc: u8,
        code: u8,
        subpage: u8,
        alloc: u32,
    ) -> CmdResult {
        if pc == PC_SAVED {
            return Err(sense::SAVING_NOT_SUPPORTED.at_cdb(2, Some(7)).into());
        }
        let codes: &[u8] = match code {
            CACHING => &[CACHING],
            CONTROL => &[CONTROL],
            INFO_EXCEPTIONS => &[INFO_EXCEPTIONS],
            ALL_PAGES => &[CACHING, CONTROL, INFO_EXCEPTIONS],
            _ => return Err(Sense::invalid_cdb(2, Some(5)).into()),
        };
        // No page has subpages: only subpage 0, or FFh (all subpages) with them.
        if subpage != 0 && !(subpage == 0xFF && code == ALL_PAGES) {
            return Err(Sense::invalid_cdb(3, None).into());
        }
        let mode = self.state().mode;
        let bs = self.device.block_size();
        let blocks = self.device.size() / u64::from(bs.max(1));
        let mut desc = Vec::new();
        if !dbd {
            if llbaa {
                desc.extend_from_slice(&blocks.to_be_bytes());
                desc.extend_from_slice(&[0; 4]);
                desc.extend_from_slice(&bs.to_be_bytes());
            } else {
                let n = u32::try_from(blocks).unwrap_or(u32::MAX);
                desc.extend_from_slice(&n.to_be_bytes());
                desc.push(0);
                desc.extend_from_slice(&bs.to_be_bytes()[1..]);
            }
        }
        // DEVICE-SPECIFIC PARAMETER: WP, DPOFUA.
        let dsp = (u8::from(self.device.read_only()) << 7) | 0x10;
        let mut out = if ten {
            let mut h = vec![0, 0, 0, dsp, u8::from(llbaa && !dbd), 0, 0, 0];
            h[6..8].copy_from_slice(&(desc.len() as u16).to_be_bytes());
            h
        } else {
            vec![0, 0, dsp, desc.len() as u8]
        };
        out.extend_from_slice(&desc);
        for &c in codes {
            out.extend(page(c, pc, mode));
        }
        if ten {
            let len = (out.len() - 2) as u16;
            out[0..2].copy_from_slice(&len.to_be_bytes());
        } else {
            out[0] = (out.len() - 1) as u8;
        }
        Ok(truncated(out, alloc))
    }

    /// MODE SELECT: checks the whole list, then applies it; only changeable bits may differ
    /// from the current values.
    pub(super) fn mode_select(&self, nexus: &Nexus, ten: bool, list: &[u8]) -> CmdResult {
        if list.is_empty() {
            return Ok(Vec::new());
        }
        let header = if ten { 8 } else { 4 };
        if list.len() < header {
            return Err(sense::PARAM_LIST_LENGTH.into());
        }
        let (desc_len, long) = if ten {
            (
                usize::from(u16::from_be_bytes([list[6], list[7]])),
                list[4] & 0x01 != 0,
            )
        } else {
            (usize::from(list[3]), false)
        };
        let desc_at = if ten { 6 } else { 3 };
        let want_desc = if long { 16 } else { 8 };
        if desc_len != 0 && desc_len != want_desc {
            return Err(Sense::invalid_param(desc_at, None).into());
        }
        if list.len() < header + desc_len {
            return Err(sense::PARAM_LIST_LENGTH.into());
        }
        if desc_len != 0 {
            // The block length cannot change; NUMBER OF BLOCKS 0 or the capacity is accepted.
            let d = &list[header..header + desc_len];
            let bs = self.device.block_size();
            let (len_at, got) = if long {
                (12, u32::from_be_bytes([d[12], d[13], d[14], d[15]]))
            } else {
                (5, u32::from_be_bytes([0, d[5], d[6], d[7]]))
            };
            if got != bs {
                return Err(Sense::invalid_param((header + len_at) as u16, None).into());
            }
        }
        let mut mode = self.state().mode;
        let mut at = header + desc_len;
        while at < list.len() {
            let rest = &list[at..];
            if rest.len() < 2 {
                return Err(sense::PARAM_LIST_LENGTH.into());
            }
            let code = rest[0] & 0x3F;
            if rest[0] & 0x80 != 0 {
                return Err(Sense::invalid_param(at as u16, Some(7)).into()); // PS is reserved
            }
            if rest[0] & 0x40 != 0 {
                return Err(Sense::invalid_param(at as u16, Some(6)).into()); // no subpages
            }
            if !matches!(code, CACHING | CONTROL | INFO_EXCEPTIONS) {
                return Err(Sense::invalid_param(at as u16, Some(5)).into());
            }
            let current = page(code, PC_CURRENT, mode);
            let changeable = page(code, PC_CHANGEABLE, mode);
            if usize::from(rest[1]) != current.len() - 2 {
                return Err(Sense::invalid_param(at as u16 + 1, None).into());
            }
            if rest.len() < current.len() {
                return Err(sense::PARAM_LIST_LENGTH.into());
            }
            for i in 2..current.len() {
                if (rest[i] ^ current[i]) & !changeable[i] != 0 {
                    return Err(Sense::invalid_param((at + i) as u16, None).into());
                }
            }
            match code {
                CACHING => mode.wce = rest[2] & 0x04 != 0,
                CONTROL => mode.d_sense = rest[2] & 0x04 != 0,
                _ => {}
            }
            at += current.len();
        }
        let mut st = self.state();
        if st.mode != mode {
            st.mode = mode;
            // SPC-5 5.14: other nexuses learn that shared mode parameters changed.
            st.queue_ua_all(Some(nexus), ua::MODE_CHANGED);
        }
        Ok(Vec::<Bytes>::new())
    }
}
