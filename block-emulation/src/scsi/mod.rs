//! SCSI block commands (SBC-4 / SPC-5) over a [`BlockDevice`]: what a logical unit answers to
//! each CDB, with the sense data the standard prescribes. Transport-independent: the iSCSI
//! target hands each command's CDB and Data-Out buffer here and sends back what it returns.
//!
//! A [`LogicalUnit`] is shared by every session that reaches it, because what SPC makes
//! per-logical-unit state lives here: unit attentions queued per I_T nexus ([`Nexus`]),
//! RESERVE(6/10) and persistent reservations, and the mode pages an initiator can change.
//!
//! Code map:
//! - `cdb`: decodes and bounds-checks a CDB into a command, before any data is read;
//! - [`sense`]: sense keys and codes, fixed and descriptor formats;
//! - `state`: unit attentions and the per-unit state behind one mutex;
//! - `inquiry`: standard INQUIRY data and the VPD pages;
//! - `mode`: MODE SENSE / MODE SELECT (caching, control, informational exceptions);
//! - `rw`: READ CAPACITY, READ, WRITE, VERIFY, COMPARE AND WRITE, SYNCHRONIZE CACHE;
//! - `provisioning`: UNMAP, WRITE SAME, GET LBA STATUS;
//! - `pr`: RESERVE/RELEASE and PERSISTENT RESERVE IN/OUT, and which commands conflict;
//! - `luns`: REPORT LUNS and the answers for a LUN that does not exist;
//! - `opcodes`: the operation codes known, their CDB lengths, REPORT SUPPORTED OPERATION CODES;
//! - [`limits`]: what the unit advertises and enforces.
//!
//! REPORT LUNS is the transport's ([`report_luns`] with the target's inventory); a unit
//! that gets it answers as LUN 0 of a one-LUN target.
//!
//! Choices (see each module for details): a new I_T nexus gets a POWER ON UNIT ATTENTION
//! (as tgt and LIO do; initiators clear it with TEST UNIT READY); WCE can be cleared by MODE
//! SELECT, and then every write is sent with FUA; APTPL is refused (persistent reservations
//! live in memory, per logical unit, and do not survive a restart of the target).

mod cdb;
mod inquiry;
pub mod limits;
mod luns;
mod mode;
mod opcodes;
mod pr;
mod provisioning;
mod rw;
pub mod sense;
mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tracing::debug;

use crate::device::BlockDevice;
use cdb::{op, Cmd};
pub use luns::{no_such_lun, report_luns};
use pr::PrState;
use sense::Sense;
use state::UnitState;

/// One I_T nexus: an initiator port talking to a target port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Nexus {
    /// The iSCSI initiator name (iqn... / eui... / naa...), as the initiator logged in with.
    pub initiator_name: String,
    /// The session's ISID (6 bytes, as sent at login): with the name it makes the initiator
    /// port ("iqn...,i,0x<12 hex digits>").
    pub isid: [u8; 6],
    /// Relative target port identifier (1 for the one portal group).
    pub target_port: u16,
}

impl Nexus {
    /// The initiator port's name as SPC writes it for iSCSI: `name,i,0x<ISID in hex>`.
    pub fn initiator_port(&self) -> String {
        let isid: String = self.isid.iter().map(|b| format!("{b:02x}")).collect();
        format!("{},i,0x{isid}", self.initiator_name)
    }
}

/// A SCSI status byte (SAM-5 table 43).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status(pub u8);

impl Status {
    /// The command completed.
    pub const GOOD: Status = Status(0x00);
    /// The command failed: the sense data says why.
    pub const CHECK_CONDITION: Status = Status(0x02);
    /// PRE-FETCH found room for every block.
    pub const CONDITION_MET: Status = Status(0x04);
    /// The logical unit is busy: retry later.
    pub const BUSY: Status = Status(0x08);
    /// Another I_T nexus holds a reservation that excludes this command.
    pub const RESERVATION_CONFLICT: Status = Status(0x18);
    /// The task set is full.
    pub const TASK_SET_FULL: Status = Status(0x28);
    /// An ACA condition is active.
    pub const ACA_ACTIVE: Status = Status(0x30);
    /// The command was aborted by another I_T nexus.
    pub const TASK_ABORTED: Status = Status(0x40);
}

/// What the transport sends back for one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The SCSI status byte ([`Status`]).
    pub status: u8,
    /// Sense data as it goes on the wire (fixed format 70h, or descriptor format 72h when the
    /// control mode page's D_SENSE bit is set); `None` unless CHECK CONDITION.
    pub sense: Option<Bytes>,
    /// Data-In, as pieces (a read's pieces straight from [`BlockDevice::read_pieces`]). Already
    /// cut to the CDB's ALLOCATION LENGTH; the transport cuts it to the expected transfer
    /// length and computes residuals.
    pub data: Vec<Bytes>,
}

impl Response {
    /// GOOD with `data`.
    pub fn good(data: Vec<Bytes>) -> Response {
        Response {
            status: Status::GOOD.0,
            sense: None,
            data,
        }
    }

    /// CHECK CONDITION with `sense`, in descriptor format when `descriptor`.
    pub fn check(sense: Sense, descriptor: bool) -> Response {
        Response {
            status: Status::CHECK_CONDITION.0,
            sense: Some(sense.encode(descriptor)),
            data: Vec::new(),
        }
    }

    /// RESERVATION CONFLICT.
    pub fn conflict() -> Response {
        Response {
            status: Status::RESERVATION_CONFLICT.0,
            sense: None,
            data: Vec::new(),
        }
    }
}

/// Static identity of a logical unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LunIdentity {
    /// The volume's name.
    pub volume: String,
    /// The target's iSCSI name (VPD page 83h's SCSI name string designator).
    pub target_name: String,
    /// The unit serial number (VPD page 80h); printable ASCII.
    pub serial: String,
    /// The NAA designator of the logical unit (VPD page 83h), as its 8 bytes: NAA 6 (IEEE
    /// Registered Extended) or NAA 5, derived by the caller.
    pub naa: u64,
}

/// Which reset a task management function asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetKind {
    /// LOGICAL UNIT RESET.
    LogicalUnit,
    /// TARGET WARM RESET.
    TargetWarm,
    /// TARGET COLD RESET (the transport also drops the connections).
    TargetCold,
}

/// Why a command did not complete with GOOD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fail {
    Check(Sense),
    Conflict,
}

impl From<Sense> for Fail {
    fn from(s: Sense) -> Fail {
        Fail::Check(s)
    }
}

/// The outcome of one command's own work.
type CmdResult = Result<Vec<Bytes>, Fail>;

/// `data` cut to `alloc` bytes, as one piece (none when empty).
fn truncated(mut data: Vec<u8>, alloc: u32) -> Vec<Bytes> {
    data.truncate(alloc as usize);
    if data.is_empty() {
        Vec::new()
    } else {
        vec![Bytes::from(data)]
    }
}

/// The persistent reservations of a device no logical unit serves now (see
/// [`LogicalUnit::take_reservations`]).
#[derive(Debug)]
pub struct Reservations(PrState);

/// A logical unit over a block device, shared by every session and connection that reaches it
/// (persistent reservations, unit attentions and mode page settings are per logical unit).
pub struct LogicalUnit {
    /// What the commands read and write.
    device: Arc<dyn BlockDevice>,
    /// Names and designators the VPD pages report.
    identity: LunIdentity,
    /// Unit attentions, reservations and mode settings; never held across an await.
    state: Mutex<UnitState>,
    /// Taken shared by every command that writes and exclusively by COMPARE AND WRITE, so
    /// that no write lands between its read and its write.
    write_order: tokio::sync::RwLock<()>,
}

impl LogicalUnit {
    /// A logical unit serving `device`.
    pub fn new(device: Arc<dyn BlockDevice>, identity: LunIdentity) -> LogicalUnit {
        let size = device.size();
        LogicalUnit {
            device,
            identity,
            state: Mutex::new(UnitState::new(size)),
            write_order: tokio::sync::RwLock::new(()),
        }
    }

    /// The device the unit serves.
    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.device
    }

    /// The identity the unit reports.
    pub fn identity(&self) -> &LunIdentity {
        &self.identity
    }

    /// How many bytes of Data-Out the command in `cdb` carries, from its CDB (0 for commands
    /// without data out). `Err(response)` for a CDB refused before any data is read (unknown
    /// opcode, invalid field, a length over the unit's limits): the transport sends that
    /// A CHECK CONDITION with `sense`, in this unit's sense format (descriptor when the
    /// control mode page's D_SENSE is set): for refusals the transport decides.
    pub fn check(&self, sense: Sense) -> Response {
        Response::check(sense, self.state().mode.d_sense)
    }

    /// response after discarding any unsolicited data.
    pub fn data_out_len(&self, cdb: &[u8]) -> Result<u32, Response> {
        let bs = self.device.block_size();
        match cdb::parse(cdb, bs) {
            Ok(cmd) => Ok(cmd.data_out_len(bs)),
            Err(s) => Err(Response::check(s, self.state().mode.d_sense)),
        }
    }

    /// Runs one command. `data_out` holds the Data-Out the transport received: less than the
    /// CDB says is answered with ILLEGAL REQUEST, INVALID FIELD IN COMMAND INFORMATION UNIT
    /// (0Eh/03h) and nothing written (as LIO does); bytes past what the CDB says are ignored.
    /// Never panics, whatever the CDB.
    pub async fn execute(&self, nexus: &Nexus, cdb: &[u8], data_out: Bytes) -> Response {
        let bs = self.device.block_size();
        let opcode = cdb.first().copied();
        {
            let mut st = self.state();
            st.see(nexus);
            st.refresh_capacity(self.device.size());
            // SPC-5 5.14: these three never report, nor clear, a unit attention.
            let exempt = matches!(
                opcode,
                Some(op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE)
            );
            if !exempt {
                if let Some((asc, ascq)) = st.take_ua(nexus) {
                    let sense = Sense::new(sense::key::UNIT_ATTENTION, asc, ascq);
                    return Response::check(sense, st.mode.d_sense);
                }
            }
        }
        let cmd = match cdb::parse(cdb, bs) {
            Ok(cmd) => cmd,
            Err(s) => return self.failed(cdb, Fail::Check(s)),
        };
        if self.state().conflicts(nexus, &cmd) {
            return self.failed(cdb, Fail::Conflict);
        }
        if cmd.writes() && self.device.read_only() {
            // Before the Data-Out is looked at: whatever it holds, nothing will be written.
            return self.failed(cdb, Fail::Check(sense::WRITE_PROTECTED));
        }
        let mut cmd = cmd;
        let mut want = cmd.data_out_len(bs) as usize;
        let unit = self.device.min_io_size().max(1) as usize;
        if data_out.len() < want && data_out.len().is_multiple_of(unit) {
            // The initiator sent less than the CDB names (its expected transfer length was
            // shorter): a plain write writes what came, from its first block, and nothing
            // past it (FCP-4 9.4.2 a); the transport reports the rest as a residual overflow.
            // A device that takes byte ranges (volumes do) takes a part of a block too.
            let got = data_out.len().div_ceil(bs as usize) as u32;
            if let Cmd::Write { blocks, .. } | Cmd::WriteVerify { blocks, .. } = &mut cmd {
                *blocks = got;
                want = data_out.len();
            }
        }
        if let Cmd::WriteSame { ndob: false, .. } = cmd {
            // One block exactly: anything else means the initiator built the wrong command.
            if data_out.len() != want {
                return self.failed(cdb, Fail::Check(sense::INVALID_FIELD_IN_CDB));
            }
        }
        if data_out.len() < want {
            return self.failed(cdb, Fail::Check(sense::INVALID_FIELD_IN_IU));
        }
        let data = data_out.slice(..want);
        match self.run(nexus, cmd, cdb, data).await {
            Ok(data) => Response::good(data),
            Err(fail) => self.failed(cdb, fail),
        }
    }

    /// LOGICAL UNIT RESET / TARGET WARM RESET / TARGET COLD RESET from task management:
    /// releases the RESERVE(6/10) reservation and queues a unit attention for every nexus, the one that asked included (SAM-5 7.7; initiators on every path expect it)
    /// (BUS DEVICE RESET FUNCTION OCCURRED for a logical unit reset, POWER ON, RESET, OR BUS
    /// DEVICE RESET OCCURRED for a target reset). Persistent reservations survive resets,
    /// and mode settings too (they are not saveable, so current values simply stay).
    pub fn reset(&self, kind: ResetKind) {
        let ua = match kind {
            ResetKind::LogicalUnit => sense::ua::LU_RESET,
            ResetKind::TargetWarm | ResetKind::TargetCold => sense::ua::POWER_ON,
        };
        let mut st = self.state();
        st.reserved_by = None;
        st.queue_ua_all(None, ua);
    }

    /// Takes the persistent reservation state out of the unit (which is being closed), if
    /// there is any: registrations survive the loss of every nexus (SPC-5 5.14.7), so the
    /// transport keeps them for the next unit of the same device.
    pub fn take_reservations(&self) -> Option<Reservations> {
        let pr = std::mem::take(&mut self.state().pr);
        (!pr.is_empty()).then_some(Reservations(pr))
    }

    /// Puts back what [`LogicalUnit::take_reservations`] took from the device's last unit.
    pub fn restore_reservations(&self, reservations: Reservations) {
        self.state().pr = reservations.0;
    }

    /// The nexus is gone (session closed, connection lost): releases its RESERVE(6/10)
    /// reservation and forgets its pending unit attentions (it gets a POWER ON unit attention
    /// when it comes back). Persistent reservation registrations stay.
    pub fn nexus_lost(&self, nexus: &Nexus) {
        let mut st = self.state();
        if st.reserved_by.as_ref() == Some(nexus) {
            st.reserved_by = None;
        }
        st.forget(nexus);
    }

    fn state(&self) -> MutexGuard<'_, UnitState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether writes must be durable before they are acknowledged (WCE cleared).
    fn write_through(&self) -> bool {
        !self.state().mode.wce
    }

    fn failed(&self, cdb: &[u8], fail: Fail) -> Response {
        match fail {
            Fail::Conflict => {
                debug!(
                    opcode = cdb.first().copied(),
                    "scsi command: reservation conflict"
                );
                Response::conflict()
            }
            Fail::Check(s) => {
                debug!(
                    opcode = cdb.first().copied(),
                    key = s.key,
                    asc = s.asc,
                    ascq = s.ascq,
                    "scsi command: check condition"
                );
                Response::check(s, self.state().mode.d_sense)
            }
        }
    }

    async fn run(&self, nexus: &Nexus, cmd: Cmd, cdb: &[u8], data: Bytes) -> CmdResult {
        match cmd {
            Cmd::TestUnitReady | Cmd::StartStop => Ok(Vec::new()),
            Cmd::PreventAllow { .. } => Ok(Vec::new()),
            Cmd::RequestSense { desc, alloc } => {
                let pending = self.state().take_ua(nexus);
                let s = match pending {
                    Some((asc, ascq)) => Sense::new(sense::key::UNIT_ATTENTION, asc, ascq),
                    None => sense::NO_SENSE,
                };
                Ok(truncated(s.encode(desc).to_vec(), alloc))
            }
            Cmd::Inquiry { evpd, page, alloc } => self.inquiry(nexus, evpd, page, alloc),
            // Only LUN 0 can answer for the target; the transport answers REPORT LUNS itself.
            Cmd::ReportLuns => Ok(luns::report_luns_data(cdb, &[0])?),
            Cmd::ReadCapacity10 => Ok(self.read_capacity_10()),
            Cmd::ReadCapacity16 { alloc } => Ok(self.read_capacity_16(alloc)),
            Cmd::GetLbaStatus { lba, alloc } => self.get_lba_status(lba, alloc).await,
            Cmd::Read { lba, blocks, .. } => self.read(lba, blocks).await,
            Cmd::Write { lba, blocks, fua } => self.write(lba, blocks, fua, data).await,
            Cmd::WriteVerify { lba, blocks } => self.write(lba, blocks, true, data).await,
            Cmd::Verify {
                lba,
                blocks,
                bytchk,
            } => self.verify(lba, blocks, bytchk, data).await,
            Cmd::PreFetch { lba, blocks } => self.pre_fetch(lba, blocks),
            Cmd::SyncCache { lba, blocks } => self.sync_cache(lba, blocks).await,
            Cmd::CompareAndWrite { lba, blocks, fua } => {
                self.compare_and_write(lba, blocks, fua, data).await
            }
            Cmd::OrWrite { lba, blocks, fua } => self.or_write(lba, blocks, fua, data).await,
            Cmd::ReadDefectData {
                twelve,
                plist,
                glist,
                format,
                alloc,
            } => Ok(rw::read_defect_data(twelve, plist, glist, format, alloc)),
            Cmd::WriteSame {
                lba,
                blocks,
                unmap,
                ndob,
            } => self.write_same(cdb, lba, blocks, unmap, ndob, data).await,
            Cmd::Unmap { .. } => self.unmap(data).await,
            Cmd::ModeSense {
                ten,
                dbd,
                llbaa,
                pc,
                page,
                subpage,
                alloc,
            } => self.mode_sense(ten, dbd, llbaa, pc, page, subpage, alloc),
            Cmd::ModeSelect { ten, .. } => self.mode_select(nexus, ten, &data),
            Cmd::Reserve => self.state().reserve(nexus),
            Cmd::Release => {
                self.state().release(nexus);
                Ok(Vec::new())
            }
            Cmd::PrIn { action, alloc } => Ok(self.state().pr_in(action, alloc)),
            Cmd::PrOut {
                action,
                scope,
                kind,
            } => self.state().pr_out(nexus, action, scope, kind, &data),
            Cmd::ReportOpcodes {
                rctd,
                options,
                opcode,
                action,
                alloc,
            } => opcodes::report(rctd, options, opcode, action, alloc),
        }
    }
}
