//! Reservations: RESERVE/RELEASE (6/10) as SPC-2 defines them, and persistent reservations
//! (PERSISTENT RESERVE IN/OUT, SPC-5 5.14 and 6.15-6.16), with the conflict rules of SPC-5
//! table 77 and SBC-4 table 13. The state lives as long as the target process: it survives
//! the loss of every I_T nexus (the transport keeps it while no session uses the device), not a
//! restart, so APTPL is refused.

use bytes::Bytes;

use super::cdb::{be64, Cmd};
use super::sense::{self, ua, Sense};
use super::state::UnitState;
use super::{truncated, CmdResult, Fail, Nexus};

/// Reservation types (SPC-5 table 173).
pub(super) mod kind {
    pub const WRITE_EXCLUSIVE: u8 = 1;
    pub const EXCLUSIVE_ACCESS: u8 = 3;
    pub const WE_REGISTRANTS_ONLY: u8 = 5;
    pub const EA_REGISTRANTS_ONLY: u8 = 6;
    pub const WE_ALL_REGISTRANTS: u8 = 7;
    pub const EA_ALL_REGISTRANTS: u8 = 8;
}

/// PERSISTENT RESERVE OUT service actions.
mod action {
    pub const REGISTER: u8 = 0;
    pub const RESERVE: u8 = 1;
    pub const RELEASE: u8 = 2;
    pub const CLEAR: u8 = 3;
    pub const PREEMPT: u8 = 4;
    pub const PREEMPT_AND_ABORT: u8 = 5;
    pub const REGISTER_AND_IGNORE: u8 = 6;
}

/// The persistent reservation state of one logical unit.
#[derive(Default, Debug)]
pub(super) struct PrState {
    /// PRGENERATION: bumped by every registration change, CLEAR and PREEMPT.
    generation: u32,
    /// Registered nexuses and their keys, in registration order.
    registrations: Vec<(Nexus, u64)>,
    /// The reservation: the nexus that took it, and its type (scope is always LU).
    reservation: Option<(Nexus, u8)>,
}

impl PrState {
    /// No registrations (so no reservation either).
    pub(super) fn is_empty(&self) -> bool {
        self.registrations.is_empty() && self.reservation.is_none()
    }

    fn key_of(&self, nexus: &Nexus) -> Option<u64> {
        self.registrations
            .iter()
            .find(|(n, _)| n == nexus)
            .map(|(_, k)| *k)
    }

    fn all_registrants(t: u8) -> bool {
        t == kind::WE_ALL_REGISTRANTS || t == kind::EA_ALL_REGISTRANTS
    }

    /// Whether `nexus` holds the reservation: the one that took it, or any registrant for
    /// the all-registrants types.
    fn holds(&self, nexus: &Nexus) -> bool {
        match &self.reservation {
            Some((_, t)) if Self::all_registrants(*t) => self.key_of(nexus).is_some(),
            Some((holder, _)) => holder == nexus,
            None => false,
        }
    }

    /// Removes the registration of `nexus`, releasing the reservation as SPC-5 5.14.11.2.3
    /// says; returns the nexuses to tell RESERVATIONS RELEASED.
    fn unregister(&mut self, nexus: &Nexus) -> Vec<Nexus> {
        self.registrations.retain(|(n, _)| n != nexus);
        let mut tell = Vec::new();
        if let Some((holder, t)) = self.reservation.clone() {
            let released = if Self::all_registrants(t) {
                self.registrations.is_empty()
            } else {
                &holder == nexus
            };
            if released {
                self.reservation = None;
                if t == kind::WE_REGISTRANTS_ONLY || t == kind::EA_REGISTRANTS_ONLY {
                    tell = self.registrations.iter().map(|(n, _)| n.clone()).collect();
                }
            }
        }
        tell
    }
}

/// What a command does to the medium, for the conflict tables.
enum Access {
    /// Never conflicts (INQUIRY, REPORT LUNS, REQUEST SENSE, READ CAPACITY, PR IN/OUT...).
    Free,
    /// Reads or reports data (allowed under Write Exclusive for non-holders).
    Read,
    /// Changes data or settings.
    Write,
    /// RESERVE(6/10) and RELEASE(6/10).
    Legacy,
}

fn access(cmd: &Cmd) -> Access {
    match cmd {
        Cmd::TestUnitReady
        | Cmd::RequestSense { .. }
        | Cmd::Inquiry { .. }
        | Cmd::ReportLuns
        | Cmd::ReadCapacity10
        | Cmd::ReadCapacity16 { .. }
        | Cmd::ReportOpcodes { .. }
        | Cmd::PrIn { .. }
        | Cmd::PrOut { .. }
        | Cmd::StartStop
        | Cmd::PreventAllow { prevent: false } => Access::Free,
        Cmd::Read { .. }
        | Cmd::Verify { .. }
        | Cmd::PreFetch { .. }
        | Cmd::GetLbaStatus { .. }
        | Cmd::ReadDefectData { .. }
        | Cmd::ModeSense { .. } => Access::Read,
        Cmd::Write { .. }
        | Cmd::WriteVerify { .. }
        | Cmd::WriteSame { .. }
        | Cmd::Unmap { .. }
        | Cmd::CompareAndWrite { .. }
        | Cmd::OrWrite { .. }
        | Cmd::SyncCache { .. }
        | Cmd::ModeSelect { .. }
        | Cmd::PreventAllow { prevent: true } => Access::Write,
        Cmd::Reserve | Cmd::Release => Access::Legacy,
    }
}

impl UnitState {
    /// Whether `cmd` from `nexus` must end in RESERVATION CONFLICT.
    pub(super) fn conflicts(&self, nexus: &Nexus, cmd: &Cmd) -> bool {
        let access = access(cmd);
        if let Some(holder) = &self.reserved_by {
            // SPC-2 5.5.1: only these get through another nexus's reservation; RELEASE
            // from it is a no-op.
            let allowed = matches!(
                cmd,
                Cmd::Inquiry { .. }
                    | Cmd::RequestSense { .. }
                    | Cmd::ReportLuns
                    | Cmd::Release
                    | Cmd::PreventAllow { prevent: false }
            );
            return holder != nexus && !allowed;
        }
        let pr = &self.pr;
        if let Access::Legacy = access {
            // CRH=1 (SPC-5 5.14.3): RESERVE/RELEASE conflict once anyone is registered.
            return !pr.registrations.is_empty();
        }
        let Some((_, t)) = &pr.reservation else {
            return false;
        };
        if pr.holds(nexus) {
            return false;
        }
        let registered = pr.key_of(nexus).is_some();
        let exclusive_access = match *t {
            kind::WRITE_EXCLUSIVE => false,
            kind::EXCLUSIVE_ACCESS => true,
            // Registrants-only and all-registrants types let every registrant in.
            kind::WE_REGISTRANTS_ONLY | kind::WE_ALL_REGISTRANTS if registered => return false,
            kind::EA_REGISTRANTS_ONLY | kind::EA_ALL_REGISTRANTS if registered => return false,
            kind::WE_REGISTRANTS_ONLY | kind::WE_ALL_REGISTRANTS => false,
            _ => true,
        };
        match access {
            Access::Free | Access::Legacy => false,
            Access::Read => exclusive_access,
            Access::Write => true,
        }
    }

    /// RESERVE(6/10): takes the unit for `nexus` (again, if it holds it already).
    pub(super) fn reserve(&mut self, nexus: &Nexus) -> CmdResult {
        match &self.reserved_by {
            Some(holder) if holder != nexus => Err(Fail::Conflict),
            _ => {
                self.reserved_by = Some(nexus.clone());
                Ok(Vec::new())
            }
        }
    }

    /// RELEASE(6/10): releases the reservation if `nexus` holds it; a no-op otherwise.
    pub(super) fn release(&mut self, nexus: &Nexus) {
        if self.reserved_by.as_ref() == Some(nexus) {
            self.reserved_by = None;
        }
    }

    /// PERSISTENT RESERVE IN.
    pub(super) fn pr_in(&self, action: u8, alloc: u32) -> Vec<Bytes> {
        let pr = &self.pr;
        let mut out = pr.generation.to_be_bytes().to_vec();
        match action {
            // READ KEYS
            0 => {
                out.extend_from_slice(&((pr.registrations.len() * 8) as u32).to_be_bytes());
                for (_, key) in &pr.registrations {
                    out.extend_from_slice(&key.to_be_bytes());
                }
            }
            // READ RESERVATION
            1 => match &pr.reservation {
                None => out.extend_from_slice(&[0; 4]),
                Some((holder, t)) => {
                    out.extend_from_slice(&16u32.to_be_bytes());
                    // All-registrants reservations report key 0 (SPC-5 6.15.3.3).
                    let key = if PrState::all_registrants(*t) {
                        0
                    } else {
                        pr.key_of(holder).unwrap_or(0)
                    };
                    out.extend_from_slice(&key.to_be_bytes());
                    out.extend_from_slice(&[0, 0, 0, 0, 0, *t & 0x0F, 0, 0]);
                }
            },
            // REPORT CAPABILITIES
            2 => {
                out = vec![
                    0x00, 0x08, // length
                    0x10, // CRH; no SIP_C, ATP_C, PTPL_C
                    0x80, // TMV: the type mask is valid; PTPL_A 0
                    0xEA, // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
                    0x01, // EX_AC_AR
                    0x00, 0x00,
                ];
            }
            // READ FULL STATUS
            _ => {
                let mut body = Vec::new();
                for (nexus, key) in &pr.registrations {
                    let holds = pr.holds(nexus);
                    body.extend_from_slice(&key.to_be_bytes());
                    body.extend_from_slice(&[0; 4]);
                    body.push(if holds { 0x01 } else { 0x00 }); // R_HOLDER
                    let t = match &pr.reservation {
                        Some((_, t)) if holds => *t & 0x0F,
                        _ => 0,
                    };
                    body.push(t);
                    body.extend_from_slice(&[0; 4]);
                    body.extend_from_slice(&nexus.target_port.to_be_bytes());
                    let tid = transport_id(nexus);
                    body.extend_from_slice(&(tid.len() as u32).to_be_bytes());
                    body.extend_from_slice(&tid);
                }
                out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                out.extend_from_slice(&body);
            }
        }
        truncated(out, alloc)
    }

    /// PERSISTENT RESERVE OUT with its 24-byte parameter list `param`.
    pub(super) fn pr_out(
        &mut self,
        nexus: &Nexus,
        act: u8,
        scope: u8,
        t: u8,
        param: &[u8],
    ) -> CmdResult {
        let takes_type = matches!(
            act,
            action::RESERVE | action::RELEASE | action::PREEMPT | action::PREEMPT_AND_ABORT
        );
        if takes_type {
            if scope != 0 {
                return Err(Sense::invalid_cdb(2, Some(7)).into());
            }
            if !matches!(t, 1 | 3 | 5 | 6 | 7 | 8) {
                return Err(Sense::invalid_cdb(2, Some(3)).into());
            }
        }
        let key = be64(param, 0);
        let sa_key = be64(param, 8);
        let flags = param[20];
        if flags & 0x08 != 0 {
            return Err(Sense::invalid_param(20, Some(3)).into()); // SPEC_I_PT
        }
        if flags & 0x04 != 0 {
            return Err(Sense::invalid_param(20, Some(2)).into()); // ALL_TG_PT
        }
        if flags & 0x01 != 0 {
            // APTPL: nothing here survives a restart, so it cannot be promised.
            return Err(Sense::invalid_param(20, Some(0)).into());
        }
        let registered = self.pr.key_of(nexus);
        if act == action::REGISTER || act == action::REGISTER_AND_IGNORE {
            return self.register(nexus, act == action::REGISTER_AND_IGNORE, key, sa_key);
        }
        if registered != Some(key) {
            return Err(Fail::Conflict);
        }
        match act {
            action::RESERVE => match &self.pr.reservation {
                None => {
                    self.pr.reservation = Some((nexus.clone(), t));
                    Ok(Vec::new())
                }
                Some((_, held)) if self.pr.holds(nexus) && *held == t => Ok(Vec::new()),
                Some(_) => Err(Fail::Conflict),
            },
            action::RELEASE => {
                let Some((_, held)) = self.pr.reservation.clone() else {
                    return Ok(Vec::new());
                };
                if !self.pr.holds(nexus) {
                    return Ok(Vec::new());
                }
                if held != t {
                    return Err(sense::INVALID_RELEASE.into());
                }
                self.pr.reservation = None;
                if held != kind::WRITE_EXCLUSIVE && held != kind::EXCLUSIVE_ACCESS {
                    for n in self.other_registrants(nexus) {
                        self.queue_ua(&n, ua::RESERVATIONS_RELEASED);
                    }
                }
                Ok(Vec::new())
            }
            action::CLEAR => {
                for n in self.other_registrants(nexus) {
                    self.queue_ua(&n, ua::RESERVATIONS_PREEMPTED);
                }
                self.pr.registrations.clear();
                self.pr.reservation = None;
                self.pr.generation = self.pr.generation.wrapping_add(1);
                Ok(Vec::new())
            }
            _ => self.preempt(nexus, t, sa_key),
        }
    }

    fn other_registrants(&self, nexus: &Nexus) -> Vec<Nexus> {
        self.pr
            .registrations
            .iter()
            .filter(|(n, _)| n != nexus)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// REGISTER and REGISTER AND IGNORE EXISTING KEY (SPC-5 5.14.7).
    fn register(&mut self, nexus: &Nexus, ignore: bool, key: u64, sa_key: u64) -> CmdResult {
        match self.pr.key_of(nexus) {
            None => {
                if !ignore && key != 0 {
                    return Err(Fail::Conflict);
                }
                if sa_key != 0 {
                    self.pr.registrations.push((nexus.clone(), sa_key));
                    self.pr.generation = self.pr.generation.wrapping_add(1);
                }
            }
            Some(current) => {
                if !ignore && key != current {
                    return Err(Fail::Conflict);
                }
                if sa_key == 0 {
                    for n in self.pr.unregister(nexus) {
                        self.queue_ua(&n, ua::RESERVATIONS_RELEASED);
                    }
                } else if let Some(reg) = self.pr.registrations.iter_mut().find(|(n, _)| n == nexus)
                {
                    reg.1 = sa_key;
                }
                self.pr.generation = self.pr.generation.wrapping_add(1);
            }
        }
        Ok(Vec::new())
    }

    /// PREEMPT and PREEMPT AND ABORT (SPC-5 5.14.11.4); the abort part has nothing to abort
    /// here, as commands run to completion.
    fn preempt(&mut self, nexus: &Nexus, t: u8, sa_key: u64) -> CmdResult {
        let reservation = self.pr.reservation.clone();
        let preempt_holder = match &reservation {
            None => false,
            Some((_, held)) if PrState::all_registrants(*held) => sa_key == 0,
            Some((holder, _)) => self.pr.key_of(holder) == Some(sa_key),
        };
        if !preempt_holder {
            // Only registrations go: those with SERVICE ACTION RESERVATION KEY.
            if sa_key == 0 {
                return Err(Sense::invalid_param(8, None).into());
            }
            let removed: Vec<Nexus> = self
                .pr
                .registrations
                .iter()
                .filter(|(_, k)| *k == sa_key)
                .map(|(n, _)| n.clone())
                .collect();
            if removed.is_empty() {
                return Err(Fail::Conflict);
            }
            for n in &removed {
                self.pr.unregister(n);
                self.queue_ua(n, ua::REGISTRATIONS_PREEMPTED);
            }
            self.pr.generation = self.pr.generation.wrapping_add(1);
            return Ok(Vec::new());
        }
        let (_, held) = reservation.unwrap_or((nexus.clone(), t));
        // Every registration with the key goes (all others, for all-registrants with key 0),
        // except the preempting nexus's own.
        let removed: Vec<Nexus> = self
            .pr
            .registrations
            .iter()
            .filter(|(n, k)| n != nexus && (sa_key == 0 || *k == sa_key))
            .map(|(n, _)| n.clone())
            .collect();
        self.pr.registrations.retain(|(n, _)| !removed.contains(n));
        for n in &removed {
            self.queue_ua(n, ua::REGISTRATIONS_PREEMPTED);
        }
        if held != t {
            for n in self.other_registrants(nexus) {
                self.queue_ua(&n, ua::RESERVATIONS_RELEASED);
            }
        }
        self.pr.reservation = Some((nexus.clone(), t));
        self.pr.generation = self.pr.generation.wrapping_add(1);
        Ok(Vec::new())
    }
}

/// The iSCSI TransportID of `nexus`'s initiator port (SPC-5 7.6.4.6, format 01b): the
/// name, ",i,0x" and the ISID, NUL-terminated and padded to a multiple of 4.
fn transport_id(nexus: &Nexus) -> Vec<u8> {
    let mut name = nexus.initiator_port().into_bytes();
    name.push(0);
    while !name.len().is_multiple_of(4) {
        name.push(0);
    }
    let mut out = vec![0x45, 0x00];
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(&name);
    out
}
