//! The full-feature phase of a connection (RFC 7143 §4.2, §11): one task reads PDUs, the
//! dispatcher orders commands by CmdSN, gathers write data (immediate, unsolicited, and
//! solicited with R2Ts), and runs each command as its own task (bounded per connection in
//! buffered bytes); one writer task sends PDUs in the order they are queued, numbering
//! statuses (StatSN) and announcing the command window (ExpCmdSN, MaxCmdSN) as it goes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::login::LoggedIn;
use super::metrics::{sense_key, LunStats};
use super::pdu::{self, op, reject, Bhs, Digests, OutPdu, Pdu, ReadError, NO_TAG};
use super::server::{target_name, Shared};
use super::text::{self, Params};
use crate::scsi::{self, LogicalUnit, Nexus, ResetKind, Response};
use crate::wire::write_pieces;

/// SCSI status values, as the logical unit's responses carry them.
const GOOD: u8 = scsi::Status::GOOD.0;
const CHECK_CONDITION: u8 = scsi::Status::CHECK_CONDITION.0;

/// Task management functions (RFC 7143 §11.5.1).
mod tmf {
    pub(super) const ABORT_TASK: u8 = 1;
    pub(super) const ABORT_TASK_SET: u8 = 2;
    pub(super) const CLEAR_ACA: u8 = 3;
    pub(super) const CLEAR_TASK_SET: u8 = 4;
    pub(super) const LUN_RESET: u8 = 5;
    pub(super) const TARGET_WARM_RESET: u8 = 6;
    pub(super) const TARGET_COLD_RESET: u8 = 7;
    pub(super) const TASK_REASSIGN: u8 = 8;
    // Responses.
    pub(super) const COMPLETE: u8 = 0;
    pub(super) const NO_TASK: u8 = 1;
    pub(super) const NO_LUN: u8 = 2;
    pub(super) const REASSIGN_UNSUPPORTED: u8 = 4;
    pub(super) const UNSUPPORTED: u8 = 5;
}

/// Largest extended CDB taken from an additional header segment.
const MAX_CDB_LEN: usize = 260;

/// The command window of the session, read by the writer when it stamps a PDU.
///
/// ExpCmdSN and the count of commands in flight are one atomic word (ExpCmdSN in the high
/// half), changed together when a command is taken: read apart, a stamp taken between the
/// two changes would advertise a MaxCmdSN one too far, the initiator (which keeps the
/// largest MaxCmdSN it saw) would send a command the window then refuses, and every later
/// command would wait behind it for ever.
struct Window {
    /// `exp_cmd_sn << 32 | in_flight`.
    word: AtomicU64,
    depth: u32,
}

impl Window {
    fn new(exp_cmd_sn: u32, depth: u32) -> Window {
        Window {
            word: AtomicU64::new(u64::from(exp_cmd_sn) << 32),
            depth,
        }
    }

    /// (ExpCmdSN, commands received and not yet answered), read together.
    fn load(&self) -> (u32, u32) {
        let w = self.word.load(Ordering::Acquire);
        ((w >> 32) as u32, w as u32)
    }

    fn exp(&self) -> u32 {
        self.load().0
    }

    fn max(&self) -> u32 {
        let (exp, in_flight) = self.load();
        let free = self.depth.saturating_sub(in_flight);
        exp.wrapping_add(free).wrapping_sub(1)
    }

    /// Takes the command at ExpCmdSN: advances ExpCmdSN and, for a command that stays in
    /// flight until its answer (`counted`), counts it in the same step.
    fn take(&self, counted: bool) {
        // ExpCmdSN wraps at 2^32: the carry out of the high half is lost, as it should be.
        self.word
            .fetch_add((1 << 32) + u64::from(counted), Ordering::AcqRel);
    }

    /// `n` counted commands are answered (or dropped).
    fn done(&self, n: u32) {
        self.word.fetch_sub(u64::from(n), Ordering::AcqRel);
    }

    /// Whether `sn` is in `[exp, max]` (serial number arithmetic).
    fn admits(&self, sn: u32) -> bool {
        let exp = self.exp();
        sn.wrapping_sub(exp) <= self.max().wrapping_sub(exp)
            && self.max().wrapping_sub(exp) < 1 << 31
    }
}

/// A PDU queued for the writer, with the buffer budget it holds until it is on the socket.
struct Out {
    pdu: OutPdu,
    _permit: Option<OwnedSemaphorePermit>,
}

/// A command running on its own task.
struct Running {
    lun: u64,
    aborted: Arc<AtomicBool>,
    done: watch::Receiver<()>,
}

/// One burst of solicited data.
struct R2tState {
    ttt: u32,
    offset: u32,
    len: u32,
    received: u32,
    next_sn: u32,
}

/// A write command gathering its data.
struct PendingWrite {
    cmd: Command,
    buf: BytesMut,
    received: u32,
    /// Where unsolicited data ends, once known, and where the next unsolicited PDU starts.
    unsolicited_done: bool,
    unsolicited_to: u32,
    unsolicited_end: u32,
    unsolicited_sn: u32,
    next_r2t_offset: u32,
    r2t_sn: u32,
    r2ts: Vec<R2tState>,
    permit: OwnedSemaphorePermit,
}

/// A command waiting for buffer budget, which writes still gathering data and answers still
/// being sent hold. The dispatcher goes on reading PDUs meanwhile, so the Data-Out those
/// writes wait for still arrives and their budget comes back.
struct Parked {
    cmd: Command,
    unit: Arc<LogicalUnit>,
    /// Immediate data.
    data: Bytes,
    /// The command's F bit: no unsolicited Data-Out follows.
    final_bit: bool,
    /// Budget units it needs (0: none).
    need: u32,
    /// Unsolicited Data-Out that came for it meanwhile, and their bytes.
    data_outs: Vec<Pdu>,
    data_out_bytes: u32,
}

/// What a command task needs from its PDU.
#[derive(Clone)]
struct Command {
    itt: u32,
    lun: u64,
    immediate: bool,
    read: bool,
    write: bool,
    edtl: u32,
    cdb: Vec<u8>,
}

/// Why the connection ends.
enum End {
    /// The initiator logged out (the response is queued) or closed the connection.
    Closed,
    /// The initiator broke the protocol: the connection is dropped.
    Protocol(String),
}

struct Conn {
    shared: Shared,
    peer: SocketAddr,
    initiator: String,
    target: Option<String>,
    portal: String,
    unit: Option<Arc<LogicalUnit>>,
    nexus: Nexus,
    params: Params,
    window: Arc<Window>,
    out: mpsc::Sender<Out>,
    running: Arc<Mutex<HashMap<u32, Running>>>,
    pending: HashMap<u32, PendingWrite>,
    /// Commands waiting for budget, in arrival order (at most a window's worth).
    parked: VecDeque<Parked>,
    /// Commands that arrived ahead of ExpCmdSN, by CmdSN.
    ahead: BTreeMap<u32, Pdu>,
    next_ttt: u32,
    budget: Arc<Semaphore>,
    wrote: Arc<AtomicBool>,
    /// The target's LUN 0 statistics (none for a discovery session).
    lun_stats: Option<Arc<LunStats>>,
    /// Text answer still to send in pieces: its target transfer tag and the rest.
    text_rest: Option<(u32, u32, Vec<u8>)>,
}

/// Decodes a LUN field (SAM single-level, peripheral or flat addressing); `None` for formats
/// this target never hands out.
fn lun_number(raw: u64) -> Option<u64> {
    let b = raw.to_be_bytes();
    if b[2..].iter().any(|&x| x != 0) {
        return None;
    }
    match b[0] >> 6 {
        0 if b[0] & 0x3f == 0 => Some(u64::from(b[1])),
        1 => Some((u64::from(b[0] & 0x3f) << 8) | u64::from(b[1])),
        _ => None,
    }
}

/// Serves the full-feature phase until logout, a protocol error, the initiator's close, a
/// reinstating login or the server's stop; then waits for running commands and, if the
/// connection wrote, flushes the volume.
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, mut s: LoggedIn, shared: Shared) {
    let (rd, wr) = stream.into_split();
    let digests = Digests {
        header: s.params.header_digest,
        data: s.params.data_digest,
    };
    let window = Arc::new(Window::new(s.exp_cmd_sn, shared.config.queue_depth));
    let (tx, rx) = mpsc::channel::<Out>(256);
    let writer = tokio::spawn(write_pdus(wr, rx, window.clone(), digests, s.stat_sn));
    let max_recv = s.params.target_max_recv as usize;
    let (pdu_tx, mut pdu_rx) = mpsc::channel::<Result<Pdu, ReadError>>(4);
    let reader = tokio::spawn(async move {
        let mut rd = BufReader::with_capacity(64 << 10, rd);
        loop {
            let r = pdu::read_pdu(&mut rd, digests, max_recv).await;
            let fatal = matches!(
                r,
                Err(ReadError::Closed
                    | ReadError::Io(_)
                    | ReadError::HeaderDigest
                    | ReadError::TooLong { .. })
            );
            if pdu_tx.send(r).await.is_err() || fatal {
                break;
            }
        }
    });
    let nexus = Nexus {
        initiator_name: s.initiator.clone(),
        isid: s.isid,
        target_port: 1,
    };
    let mut conn = Conn {
        budget: Arc::new(Semaphore::new(shared.config.max_buffered_bytes)),
        shared: shared.clone(),
        peer,
        initiator: s.initiator.clone(),
        target: s.target.clone(),
        portal: s.portal.clone(),
        unit: s.unit.take(),
        nexus,
        params: s.params.clone(),
        window,
        out: tx,
        running: Arc::default(),
        pending: HashMap::new(),
        parked: VecDeque::new(),
        ahead: BTreeMap::new(),
        next_ttt: 1,
        wrote: Arc::new(AtomicBool::new(false)),
        lun_stats: s.target.as_ref().map(|t| shared.stats.units.get(t, 0)),
        text_rest: None,
    };
    let mut kill = s.kill.clone();
    let mut stop = shared.stop.clone();
    let nop_interval = shared.config.nop_interval;
    let nop_timeout = shared.config.nop_timeout;
    let mut last_heard = Instant::now();
    let mut ping: Option<Instant> = None;
    let end = loop {
        let wake = match ping {
            Some(sent) => sent + nop_timeout,
            None => last_heard + nop_interval,
        };
        let parked_need = conn.parked.front().map(|p| conn.units(p.need));
        let budget = conn.budget.clone();
        let r = tokio::select! {
            r = pdu_rx.recv() => r,
            permit = budget.acquire_many_owned(parked_need.unwrap_or(0)), if parked_need.is_some() => {
                // The semaphore is never closed.
                if let Ok(permit) = permit {
                    if let Err(e) = conn.unpark(permit).await {
                        break e;
                    }
                }
                continue;
            }
            () = async {
                // A discovery session has no reinstating login: its sender is gone.
                if kill.wait_for(|k| *k).await.is_err() {
                    std::future::pending::<()>().await;
                }
            } => {
                info!(peer = %conn.peer, initiator = %conn.initiator, "session reinstated by a new login; closing the old connection");
                break End::Closed;
            }
            () = async { let _ = stop.wait_for(|s| *s).await; } => break End::Closed,
            () = tokio::time::sleep_until(wake) => {
                if ping.is_some() {
                    warn!(peer = %conn.peer, initiator = %conn.initiator, "initiator did not answer a NOP-In ping; closing the connection");
                    break End::Closed;
                }
                let ttt = conn.ttt();
                let mut b = Bhs::new(op::NOP_IN);
                b.set_itt(NO_TAG);
                b.set_u32(20, ttt);
                conn.send(OutPdu::new(b), None).await;
                ping = Some(Instant::now());
                continue;
            }
        };
        let pdu = match r {
            None | Some(Err(ReadError::Closed)) => break End::Closed,
            Some(Err(ReadError::DataDigest(bhs))) => {
                // The PDU is dropped and rejected; a command whose data was lost cannot
                // complete at error recovery level 0, and the initiator recovers it.
                conn.reject(&bhs, reject::DATA_DIGEST).await;
                continue;
            }
            Some(Err(e)) => break End::Protocol(e.to_string()),
            Some(Ok(p)) => p,
        };
        last_heard = Instant::now();
        ping = None;
        match conn.dispatch(pdu).await {
            Ok(true) => {}
            Ok(false) => break End::Closed,
            Err(e) => break e,
        }
    };
    if let End::Protocol(why) = &end {
        shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
        warn!(peer = %conn.peer, initiator = %conn.initiator, error = %why, "iscsi protocol error; closing the connection");
    }
    reader.abort();
    // Commands that were gathering data never ran; running ones finish (their replies are
    // still sent if the socket is up).
    conn.pending.clear();
    conn.parked.clear();
    conn.wait_running(|_, _| true, false).await;
    let Conn {
        out,
        unit,
        nexus,
        wrote,
        target,
        ..
    } = conn;
    drop(out);
    match writer.await {
        Ok(Err(e)) => debug!(%peer, error = %e, "iscsi connection write failed"),
        Err(e) => warn!(%peer, error = %e, "iscsi writer task failed"),
        Ok(Ok(())) => {}
    }
    if let Some(unit) = unit {
        unit.nexus_lost(&nexus);
        if wrote.load(Ordering::Relaxed) {
            if let Err(e) = unit.device().flush().await {
                warn!(%peer, error = %e, "flushing the volume after the session ended failed: writes not synchronised by the initiator may be lost");
            }
        }
        shared.release_unit(unit);
    }
    if let Some(t) = target {
        let mut sessions = shared.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let key = (s.initiator.to_ascii_lowercase(), s.isid, t);
        if sessions.get(&key).is_some_and(|e| e.tsih == s.tsih) {
            sessions.remove(&key);
        }
    }
}

/// Sends queued PDUs, stamping StatSN, ExpCmdSN and MaxCmdSN, flushing whenever none waits.
async fn write_pdus(
    wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Out>,
    window: Arc<Window>,
    digests: Digests,
    mut stat_sn: u32,
) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(64 << 10, wr);
    while let Some(mut o) = rx.recv().await {
        let b = &mut o.pdu.bhs;
        let (carries, advance) = match b.opcode() {
            op::SCSI_RESP | op::TMF_RESP | op::TEXT_RESP | op::LOGOUT_RESP | op::REJECT => {
                (true, true)
            }
            op::DATA_IN => {
                let status = b.flags() & 0x01 != 0;
                (status, status)
            }
            // A NOP-In answering a NOP-Out takes a StatSN; a ping does not.
            op::NOP_IN => (true, b.itt() != NO_TAG),
            op::R2T => (true, false),
            _ => (false, false),
        };
        if carries {
            b.set_u32(24, stat_sn);
            if advance {
                stat_sn = stat_sn.wrapping_add(1);
            }
        }
        b.set_u32(28, window.exp());
        b.set_u32(32, window.max());
        let (head, hl, tail, tl) = o.pdu.finish(digests);
        write_pieces(&mut w, &[&head[..hl]], &o.pdu.data, &[&tail[..tl]]).await?;
        drop(o);
        if rx.is_empty() {
            w.flush().await?;
        }
    }
    w.flush().await?;
    w.shutdown().await
}

/// Cuts `len` bytes starting at `off` out of `pieces` (without copying).
fn slice_pieces(pieces: &[Bytes], mut off: usize, mut len: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    for p in pieces {
        if len == 0 {
            break;
        }
        if off >= p.len() {
            off -= p.len();
            continue;
        }
        let take = (p.len() - off).min(len);
        out.push(p.slice(off..off + take));
        off = 0;
        len -= take;
    }
    out
}

impl Conn {
    fn ttt(&mut self) -> u32 {
        let t = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == NO_TAG {
            self.next_ttt = 1;
        }
        t
    }

    async fn send(&self, pdu: OutPdu, permit: Option<OwnedSemaphorePermit>) {
        // The writer has gone only if the socket failed; the read side ends soon after.
        let _ = self
            .out
            .send(Out {
                pdu,
                _permit: permit,
            })
            .await;
    }

    async fn reject(&self, bad: &Bhs, reason: u8) {
        self.shared
            .stats
            .protocol_errors
            .fetch_add(1, Ordering::Relaxed);
        let mut b = Bhs::new(op::REJECT);
        b.0[2] = reason;
        b.set_itt(NO_TAG);
        self.send(
            OutPdu::with_data(b, vec![Bytes::copy_from_slice(&bad.0)]),
            None,
        )
        .await;
    }

    /// Takes the CmdSN of a non-immediate request: `Some(true)` in order, `Some(false)` ahead
    /// of ExpCmdSN (held back until the gap fills), `None` outside the window (dropped, as
    /// RFC 7143 §4.2.2.1 says).
    fn order(&self, pdu: &Pdu) -> Option<bool> {
        if pdu.bhs.immediate() {
            return Some(true);
        }
        let sn = pdu.bhs.u32_at(24);
        if !self.window.admits(sn) {
            warn!(peer = %self.peer, cmd_sn = sn, exp = self.window.exp(), max = self.window.max(), "command outside the CmdSN window dropped");
            return None;
        }
        Some(sn == self.window.exp())
    }

    /// Handles one PDU; `Ok(false)` ends the connection cleanly (after logout).
    async fn dispatch(&mut self, pdu: Pdu) -> Result<bool, End> {
        let opcode = pdu.bhs.opcode();
        let ordered = matches!(
            opcode,
            op::SCSI_CMD | op::NOP_OUT | op::TMF_REQ | op::TEXT_REQ | op::LOGOUT_REQ
        );
        if !ordered {
            return self.handle(pdu).await;
        }
        // A NOP-Out answering a ping (no task tag) is not a command.
        if opcode == op::NOP_OUT && pdu.bhs.itt() == NO_TAG {
            return Ok(true);
        }
        match self.order(&pdu) {
            None => return Ok(true),
            Some(false) => {
                if self.ahead.len() < self.window.depth as usize {
                    self.ahead.insert(pdu.bhs.u32_at(24), pdu);
                }
                return Ok(true);
            }
            Some(true) => {}
        }
        if !pdu.bhs.immediate() {
            self.take(&pdu);
        }
        if !self.handle(pdu).await? {
            return Ok(false);
        }
        // Commands that were waiting for this one.
        while let Some(next) = self.ahead.remove(&self.window.exp()) {
            self.take(&next);
            if !self.handle(next).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Takes a non-immediate request at ExpCmdSN; a SCSI command is in flight from here
    /// until its answer (or until [`Conn::command`] refuses it).
    fn take(&self, pdu: &Pdu) {
        self.window.take(pdu.bhs.opcode() == op::SCSI_CMD);
    }

    /// A counted command that ends without a task: it no longer holds a place in the window.
    fn uncount(&self, immediate: bool) {
        if !immediate {
            self.window.done(1);
        }
    }

    async fn handle(&mut self, pdu: Pdu) -> Result<bool, End> {
        match pdu.bhs.opcode() {
            op::SCSI_CMD => self.command(pdu).await?,
            op::DATA_OUT => self.data_out(pdu).await?,
            op::NOP_OUT => {
                let mut b = Bhs::new(op::NOP_IN);
                b.set_itt(pdu.bhs.itt());
                b.set_lun(pdu.bhs.lun());
                b.set_u32(20, NO_TAG);
                let len = pdu.data.len().min(self.params.initiator_max_recv as usize);
                let data = if len > 0 {
                    vec![pdu.data.slice(..len)]
                } else {
                    Vec::new()
                };
                self.send(OutPdu::with_data(b, data), None).await;
            }
            op::TEXT_REQ => self.text(pdu).await?,
            op::TMF_REQ => return self.task_management(pdu).await,
            op::LOGOUT_REQ => {
                self.logout(&pdu).await;
                return Ok(false);
            }
            op::SNACK => self.reject(&pdu.bhs, reject::SNACK).await,
            op::LOGIN_REQ => {
                self.reject(&pdu.bhs, reject::PROTOCOL_ERROR).await;
                return Err(End::Protocol(
                    "login request in the full-feature phase".into(),
                ));
            }
            _ => self.reject(&pdu.bhs, reject::NOT_SUPPORTED).await,
        }
        Ok(true)
    }

    async fn command(&mut self, pdu: Pdu) -> Result<(), End> {
        let b = &pdu.bhs;
        // Taken into the window by `dispatch`; every refusal below gives its place back.
        let immediate = b.immediate();
        let Some(unit) = self.unit.clone() else {
            // A discovery session carries text and logout only.
            self.uncount(immediate);
            self.reject(b, reject::PROTOCOL_ERROR).await;
            return Ok(());
        };
        let mut cdb = b.0[32..48].to_vec();
        let mut ahs = &pdu.ahs[..];
        while ahs.len() >= 4 {
            let len = usize::from(u16::from_be_bytes([ahs[0], ahs[1]]));
            let kind = ahs[2];
            let padded = (len + 3 + 3) & !3;
            if len == 0 || padded > ahs.len() {
                self.uncount(immediate);
                self.reject(b, reject::INVALID_FIELD).await;
                return Ok(());
            }
            if kind == 1 {
                // Extended CDB: the bytes past the first sixteen (the length counts a
                // reserved byte).
                cdb.extend_from_slice(&ahs[4..3 + len]);
                if cdb.len() > MAX_CDB_LEN {
                    self.uncount(immediate);
                    self.reject(b, reject::INVALID_FIELD).await;
                    return Ok(());
                }
            }
            ahs = &ahs[padded..];
        }
        let flags = b.flags();
        let cmd = Command {
            itt: b.itt(),
            lun: b.lun(),
            immediate: b.immediate(),
            read: flags & 0x40 != 0,
            write: flags & 0x20 != 0,
            edtl: b.u32_at(20),
            cdb,
        };
        let immediate_len = pdu.data.len() as u32;
        if immediate_len > 0
            && (!cmd.write
                || !self.params.immediate_data
                || immediate_len > cmd.edtl
                || immediate_len > self.params.first_burst_length)
        {
            self.reject(b, reject::PROTOCOL_ERROR).await;
            return Err(End::Protocol(format!(
                "{immediate_len} bytes of immediate data not allowed here"
            )));
        }
        if self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&cmd.itt)
            || self.pending.contains_key(&cmd.itt)
            || self.parked.iter().any(|p| p.cmd.itt == cmd.itt)
        {
            self.uncount(immediate);
            self.reject(b, 0x07).await;
            return Ok(());
        }
        self.shared
            .stats
            .write_bytes
            .fetch_add(u64::from(immediate_len), Ordering::Relaxed);
        let max = self.shared.config.max_transfer;
        if cmd.write && cmd.edtl > immediate_len && cmd.edtl > max {
            // Not gathered: answered at once; unsolicited data for it is dropped.
            let resp = unit.check(scsi::sense::INVALID_FIELD_IN_IU);
            self.spawn(cmd, Some(unit), Bytes::new(), Some(resp), None);
            return Ok(());
        }
        let need = if cmd.write && cmd.edtl > immediate_len {
            cmd.edtl
        } else if cmd.read {
            cmd.edtl.min(max)
        } else {
            0
        };
        let p = Parked {
            cmd,
            unit,
            data: pdu.data,
            final_bit: flags & 0x80 != 0,
            need,
            data_outs: Vec::new(),
            data_out_bytes: 0,
        };
        // Behind commands already waiting, a command waits too (they keep their order).
        let permit = if self.parked.is_empty() {
            self.budget
                .clone()
                .try_acquire_many_owned(self.units(need))
                .ok()
        } else {
            None
        };
        match permit {
            Some(permit) => self.start(p, permit).await?,
            None => self.parked.push_back(p),
        }
        Ok(())
    }

    /// The budget units of `bytes` (a transfer larger than the whole budget takes all of it).
    fn units(&self, bytes: u32) -> u32 {
        bytes.min(self.shared.config.max_buffered_bytes as u32)
    }

    /// Starts the first parked command with the budget it waited for, and those after it
    /// that the budget left covers.
    async fn unpark(&mut self, permit: OwnedSemaphorePermit) -> Result<(), End> {
        let mut permit = Some(permit);
        while let Some(front) = self.parked.front() {
            let permit = match permit.take() {
                Some(p) => p,
                None => match self
                    .budget
                    .clone()
                    .try_acquire_many_owned(self.units(front.need))
                {
                    Ok(p) => p,
                    Err(_) => return Ok(()),
                },
            };
            let Some(p) = self.parked.pop_front() else {
                return Ok(());
            };
            self.start(p, permit).await?;
        }
        Ok(())
    }

    /// Runs a command that has its budget: a write that needs more data gathers it (R2Ts),
    /// anything else runs now.
    async fn start(&mut self, p: Parked, permit: OwnedSemaphorePermit) -> Result<(), End> {
        let Parked {
            cmd,
            unit,
            data,
            final_bit,
            data_outs,
            ..
        } = p;
        let immediate_len = data.len() as u32;
        if !(cmd.write && cmd.edtl > immediate_len) {
            self.spawn(cmd, Some(unit), data, None, Some(permit));
            return Ok(());
        }
        let mut buf = BytesMut::zeroed(cmd.edtl as usize);
        buf[..data.len()].copy_from_slice(&data);
        let unsolicited_done = final_bit || self.params.initial_r2t;
        let unsolicited_end = if unsolicited_done {
            immediate_len
        } else {
            cmd.edtl.min(self.params.first_burst_length)
        };
        let itt = cmd.itt;
        let mut pw = PendingWrite {
            cmd,
            buf,
            received: immediate_len,
            unsolicited_done: unsolicited_done || immediate_len >= unsolicited_end,
            unsolicited_to: immediate_len,
            unsolicited_end,
            unsolicited_sn: 0,
            next_r2t_offset: unsolicited_end.max(immediate_len),
            r2t_sn: 0,
            r2ts: Vec::new(),
            permit,
        };
        if pw.unsolicited_done {
            pw.next_r2t_offset = pw.unsolicited_to;
            self.issue_r2ts(&mut pw).await;
        }
        self.pending.insert(itt, pw);
        // Unsolicited data that came while it waited.
        for d in data_outs {
            self.data_out(d).await?;
        }
        Ok(())
    }

    async fn issue_r2ts(&mut self, pw: &mut PendingWrite) {
        while pw.r2ts.len() < usize::from(self.params.max_outstanding_r2t)
            && pw.next_r2t_offset < pw.cmd.edtl
        {
            let len = (pw.cmd.edtl - pw.next_r2t_offset).min(self.params.max_burst_length);
            let ttt = self.ttt();
            let mut b = Bhs::new(op::R2T);
            b.set_lun(pw.cmd.lun);
            b.set_itt(pw.cmd.itt);
            b.set_u32(20, ttt);
            b.set_u32(36, pw.r2t_sn);
            b.set_u32(40, pw.next_r2t_offset);
            b.set_u32(44, len);
            pw.r2ts.push(R2tState {
                ttt,
                offset: pw.next_r2t_offset,
                len,
                received: 0,
                next_sn: 0,
            });
            pw.r2t_sn += 1;
            pw.next_r2t_offset += len;
            self.send(OutPdu::new(b), None).await;
        }
    }

    async fn data_out(&mut self, pdu: Pdu) -> Result<(), End> {
        let b = &pdu.bhs;
        let itt = b.itt();
        if !self.pending.contains_key(&itt) {
            let first_burst = self.params.first_burst_length;
            if let Some(p) = self.parked.iter_mut().find(|p| p.cmd.itt == itt) {
                // Kept for when it starts; no more than unsolicited data can be (more is
                // out of sequence anyway, and the command then fails).
                let len = pdu.data.len() as u32;
                if p.data_out_bytes.saturating_add(len) <= first_burst {
                    p.data_out_bytes += len;
                    p.data_outs.push(pdu);
                } else {
                    debug!(peer = %self.peer, itt, "unsolicited Data-Out past FirstBurstLength dropped");
                }
                return Ok(());
            }
        }
        let Some(mut pw) = self.pending.remove(&itt) else {
            // Unsolicited data of a command already answered (or aborted): dropped.
            debug!(peer = %self.peer, itt, "Data-Out for no pending command dropped");
            return Ok(());
        };
        let (ttt, sn, offset) = (b.u32_at(20), b.u32_at(36), b.u32_at(40));
        let len = pdu.data.len() as u32;
        let last = b.final_bit();
        if ttt == NO_TAG {
            if pw.unsolicited_done
                || offset != pw.unsolicited_to
                || sn != pw.unsolicited_sn
                || offset + len > pw.unsolicited_end
            {
                self.data_sequence_error(pw, format!(
                    "unsolicited Data-Out (DataSN {sn}, offset {offset}, {len} bytes) out of sequence"
                ));
                return Ok(());
            }
            pw.unsolicited_sn += 1;
            pw.unsolicited_to += len;
            if last || pw.unsolicited_to == pw.unsolicited_end {
                pw.unsolicited_done = true;
                pw.next_r2t_offset = pw.unsolicited_to;
            }
        } else {
            let Some(i) = pw.r2ts.iter().position(|r| r.ttt == ttt) else {
                self.data_sequence_error(pw, format!("Data-Out for unknown transfer tag {ttt:#x}"));
                return Ok(());
            };
            let r = &mut pw.r2ts[i];
            if offset != r.offset + r.received
                || sn != r.next_sn
                || r.received + len > r.len
                || (last && r.received + len < r.len)
            {
                let why = format!(
                    "Data-Out (DataSN {sn}, offset {offset}, {len} bytes) out of sequence for an R2T of {} bytes at {}",
                    r.len, r.offset
                );
                self.data_sequence_error(pw, why);
                return Ok(());
            }
            r.received += len;
            r.next_sn += 1;
            if r.received == r.len {
                pw.r2ts.remove(i);
            }
        }
        pw.buf[offset as usize..(offset + len) as usize].copy_from_slice(&pdu.data);
        pw.received += len;
        self.shared
            .stats
            .write_bytes
            .fetch_add(u64::from(len), Ordering::Relaxed);
        if pw.received == pw.cmd.edtl {
            let PendingWrite {
                cmd, buf, permit, ..
            } = pw;
            let unit = self.unit.clone();
            self.spawn(cmd, unit, buf.freeze(), None, Some(permit));
            return Ok(());
        }
        if pw.unsolicited_done {
            self.issue_r2ts(&mut pw).await;
        }
        self.pending.insert(itt, pw);
        Ok(())
    }

    /// A write whose data arrived out of sequence (a wrong DataSN or offset, a burst cut
    /// short): nothing of it is written; it ends with ABORTED COMMAND, DATA PHASE ERROR, and
    /// the rest of its data is dropped as it comes. The session goes on.
    fn data_sequence_error(&self, pw: PendingWrite, why: String) {
        self.shared
            .stats
            .protocol_errors
            .fetch_add(1, Ordering::Relaxed);
        warn!(peer = %self.peer, itt = pw.cmd.itt, error = %why, "write data out of sequence; the command fails");
        let PendingWrite { cmd, permit, .. } = pw;
        let answer = self.unit.as_ref().map(|u| {
            u.check(scsi::sense::Sense::new(
                scsi::sense::key::ABORTED_COMMAND,
                0x4b,
                0x00,
            ))
        });
        let unit = self.unit.clone();
        self.spawn(cmd, unit, Bytes::new(), answer, Some(permit));
    }

    /// Runs a command on its own task. `answer`: a response already decided (the command
    /// is not executed).
    fn spawn(
        &self,
        cmd: Command,
        unit: Option<Arc<LogicalUnit>>,
        data: Bytes,
        answer: Option<Response>,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let aborted = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = watch::channel(());
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                cmd.itt,
                Running {
                    lun: cmd.lun,
                    aborted: aborted.clone(),
                    done: done_rx,
                },
            );
        let task = Task {
            out: self.out.clone(),
            running: self.running.clone(),
            window: self.window.clone(),
            shared: self.shared.clone(),
            nexus: self.nexus.clone(),
            params: self.params.clone(),
            wrote: self.wrote.clone(),
            lun_stats: self.lun_stats.clone(),
        };
        tokio::spawn(async move {
            let _done = done_tx;
            task.run(cmd, unit, data, answer, permit, aborted).await;
        });
    }

    /// Marks the running commands `which` selects aborted (when `abort`) and waits for them
    /// to end.
    async fn wait_running(&self, which: impl Fn(u32, &Running) -> bool, abort: bool) {
        let waits: Vec<watch::Receiver<()>> = {
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            running
                .iter()
                .filter(|(itt, r)| which(**itt, r))
                .map(|(_, r)| {
                    if abort {
                        r.aborted.store(true, Ordering::Release);
                    }
                    r.done.clone()
                })
                .collect()
        };
        for mut w in waits {
            // Ends when the task drops its sender.
            while w.changed().await.is_ok() {}
        }
    }

    async fn task_management(&mut self, pdu: Pdu) -> Result<bool, End> {
        self.shared
            .stats
            .task_management
            .fetch_add(1, Ordering::Relaxed);
        let b = &pdu.bhs;
        let function = b.flags() & 0x7f;
        let lun = b.lun();
        let referenced = b.u32_at(20);
        let ref_cmd_sn = b.u32_at(32);
        let lun_ok = self.unit.is_some() && lun_number(lun) == Some(0);
        let mut close = false;
        let response = match function {
            tmf::ABORT_TASK => {
                let parked = self.parked.iter().position(|p| p.cmd.itt == referenced);
                if let Some(p) = self.pending.remove(&referenced) {
                    self.uncount(p.cmd.immediate);
                    tmf::COMPLETE
                } else if let Some(p) = parked.and_then(|i| self.parked.remove(i)) {
                    self.uncount(p.cmd.immediate);
                    tmf::COMPLETE
                } else {
                    let found = self
                        .running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains_key(&referenced);
                    if found {
                        self.wait_running(|itt, _| itt == referenced, true).await;
                        tmf::COMPLETE
                    } else if self.window.admits(ref_cmd_sn) {
                        tmf::COMPLETE
                    } else {
                        tmf::NO_TASK
                    }
                }
            }
            tmf::ABORT_TASK_SET | tmf::CLEAR_TASK_SET | tmf::LUN_RESET if !lun_ok => tmf::NO_LUN,
            tmf::ABORT_TASK_SET | tmf::CLEAR_TASK_SET | tmf::LUN_RESET => {
                self.abort_all(Some(lun)).await;
                if function == tmf::LUN_RESET {
                    if let Some(u) = &self.unit {
                        u.reset(ResetKind::LogicalUnit);
                    }
                }
                tmf::COMPLETE
            }
            tmf::TARGET_WARM_RESET | tmf::TARGET_COLD_RESET => {
                self.abort_all(None).await;
                if let Some(u) = &self.unit {
                    let kind = if function == tmf::TARGET_COLD_RESET {
                        ResetKind::TargetCold
                    } else {
                        ResetKind::TargetWarm
                    };
                    u.reset(kind);
                }
                close = function == tmf::TARGET_COLD_RESET;
                tmf::COMPLETE
            }
            tmf::CLEAR_ACA => tmf::UNSUPPORTED,
            tmf::TASK_REASSIGN => tmf::REASSIGN_UNSUPPORTED,
            _ => tmf::UNSUPPORTED,
        };
        let mut r = Bhs::new(op::TMF_RESP);
        r.0[2] = response;
        r.set_itt(b.itt());
        self.send(OutPdu::new(r), None).await;
        Ok(!close)
    }

    /// Aborts this connection's commands on `lun` (all with `None`): those gathering data
    /// are dropped, running ones end without a reply.
    async fn abort_all(&mut self, lun: Option<u64>) {
        let mut dropped = 0;
        let mut keep = |cmd: &Command| {
            let keep = lun.is_some_and(|l| l != cmd.lun);
            if !keep && !cmd.immediate {
                dropped += 1;
            }
            keep
        };
        self.pending.retain(|_, p| keep(&p.cmd));
        self.parked.retain(|p| keep(&p.cmd));
        self.window.done(dropped);
        self.wait_running(|_, r| lun.is_none_or(|l| l == r.lun), true)
            .await;
    }

    async fn text(&mut self, pdu: Pdu) -> Result<(), End> {
        let b = &pdu.bhs;
        let ttt = b.u32_at(20);
        let mut reply = Bhs::new(op::TEXT_RESP);
        reply.set_itt(b.itt());
        reply.set_lun(b.lun());
        // The next piece of a long answer.
        if ttt != NO_TAG {
            let Some((t, itt, rest)) = self.text_rest.take() else {
                self.reject(b, reject::INVALID_FIELD).await;
                return Ok(());
            };
            if t != ttt || itt != b.itt() {
                self.reject(b, reject::INVALID_FIELD).await;
                return Ok(());
            }
            self.send_text(reply, b.itt(), rest).await;
            return Ok(());
        }
        self.text_rest = None;
        if b.flags() & 0x40 != 0 {
            // Continued requests are not needed by any key this target takes.
            self.reject(b, reject::NOT_SUPPORTED).await;
            return Ok(());
        }
        let pairs = match text::parse(&pdu.data) {
            Ok(p) => p,
            Err(e) => {
                debug!(peer = %self.peer, error = %e, "bad text request");
                self.reject(b, reject::PROTOCOL_ERROR).await;
                return Ok(());
            }
        };
        let mut answers: Vec<(String, String)> = Vec::new();
        for (k, v) in &pairs {
            match k.as_str() {
                "SendTargets" => answers.extend(self.send_targets(v).await),
                "MaxRecvDataSegmentLength" => match v.parse::<u32>() {
                    Ok(n) if (512..1 << 24).contains(&n) => self.params.initiator_max_recv = n,
                    _ => answers.push((k.clone(), "Reject".into())),
                },
                _ => answers.push((k.clone(), "NotUnderstood".into())),
            }
        }
        self.send_text(reply, b.itt(), text::encode(&answers)).await;
        Ok(())
    }

    /// Sends `data` as a text response, in pieces the initiator can take: all but the last
    /// have the C bit and a transfer tag the initiator returns to get the next.
    async fn send_text(&mut self, mut reply: Bhs, itt: u32, mut data: Vec<u8>) {
        let max = self.params.initiator_max_recv as usize;
        if data.len() > max {
            let rest = data.split_off(max);
            let ttt = self.ttt();
            reply.0[1] = 0x40;
            reply.set_u32(20, ttt);
            self.text_rest = Some((ttt, itt, rest));
        } else {
            reply.set_u32(20, NO_TAG);
        }
        self.send(OutPdu::with_data(reply, vec![Bytes::from(data)]), None)
            .await;
    }

    /// The answer to `SendTargets=value`.
    async fn send_targets(&self, value: &str) -> Vec<(String, String)> {
        let prefix = &self.shared.config.target_prefix;
        let wanted: Option<String> = match value {
            "All" => None,
            "" => match &self.target {
                Some(t) => Some(t.clone()),
                None => return vec![("SendTargets".into(), "Reject".into())],
            },
            name if text::valid_iscsi_name(name) => Some(name.to_string()),
            _ => return vec![("SendTargets".into(), "Reject".into())],
        };
        let volumes = match self.shared.exports.list().await {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "listing volumes for SendTargets failed");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (volume, _) in volumes {
            let name = target_name(prefix, &volume);
            if wanted.as_ref().is_some_and(|w| *w != name) {
                continue;
            }
            match self.shared.access.access(&volume).await {
                Ok(a) if a.allows(&self.initiator) => {}
                _ => continue,
            }
            out.push(("TargetName".to_string(), name));
            out.push(("TargetAddress".to_string(), self.portal.clone()));
        }
        out
    }

    async fn logout(&mut self, pdu: &Pdu) {
        let b = &pdu.bhs;
        let reason = b.flags() & 0x7f;
        // Pending writes never ran; running commands are answered before the logout is.
        self.pending.clear();
        self.wait_running(|_, _| true, false).await;
        let mut r = Bhs::new(op::LOGOUT_RESP);
        // 2 ("connection recovery is not supported") for removals for recovery.
        r.0[2] = if reason == 2 { 2 } else { 0 };
        r.set_itt(b.itt());
        self.send(OutPdu::new(r), None).await;
        debug!(peer = %self.peer, reason, "iscsi logout");
    }
}

/// What a command task holds.
struct Task {
    out: mpsc::Sender<Out>,
    running: Arc<Mutex<HashMap<u32, Running>>>,
    window: Arc<Window>,
    shared: Shared,
    nexus: Nexus,
    params: Params,
    wrote: Arc<AtomicBool>,
    lun_stats: Option<Arc<LunStats>>,
}

impl Task {
    async fn run(
        self,
        cmd: Command,
        unit: Option<Arc<LogicalUnit>>,
        data: Bytes,
        answer: Option<Response>,
        permit: Option<OwnedSemaphorePermit>,
        aborted: Arc<AtomicBool>,
    ) {
        // (flag, residual): 0x04 overflow, 0x02 underflow.
        let mut residual: (u8, u32) = (0, 0);
        let started = std::time::Instant::now();
        let written = if cmd.write { data.len() as u64 } else { 0 };
        let resp = if let Some(r) = answer {
            r
        } else {
            self.execute(&cmd, unit, data, &mut residual).await
        };
        if !cmd.immediate {
            self.window.done(1);
        }
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&cmd.itt);
        if aborted.load(Ordering::Acquire) {
            return;
        }
        let stats = &self.shared.stats;
        stats.commands.fetch_add(1, Ordering::Relaxed);
        if resp.status == CHECK_CONDITION {
            stats.check_conditions.fetch_add(1, Ordering::Relaxed);
        }
        let total: usize = resp.data.iter().map(Bytes::len).sum();
        let send = if cmd.read {
            total.min(cmd.edtl as usize)
        } else {
            0
        };
        if !cmd.write {
            if total > send {
                residual = (0x04, (total - send) as u32);
            } else if cmd.read && (send as u32) < cmd.edtl {
                residual = (0x02, cmd.edtl - send as u32);
            }
        }
        stats.read_bytes.fetch_add(send as u64, Ordering::Relaxed);
        if let Some(l) = &self.lun_stats {
            let key = if resp.status == CHECK_CONDITION {
                resp.sense.as_deref().and_then(sense_key)
            } else {
                None
            };
            let opcode = cmd.cdb.first().copied().unwrap_or(0);
            l.record(opcode, key, send as u64, written, started.elapsed());
        }
        // Data-In, in PDUs the initiator can take, sequences of at most MaxBurstLength;
        // a good status rides on the last one.
        let mrdsl = self.params.initiator_max_recv as usize;
        let burst = self.params.max_burst_length as usize;
        let collapse = resp.status == GOOD && resp.sense.is_none() && send > 0;
        let mut off = 0usize;
        let mut data_sn = 0u32;
        let mut permit = permit;
        while off < send {
            let seq_end = ((off / burst) + 1) * burst;
            let len = mrdsl.min(send - off).min(seq_end - off);
            let end = off + len;
            let mut b = Bhs::new(op::DATA_IN);
            let last = end == send;
            b.0[1] = if last || end == seq_end { 0x80 } else { 0 };
            b.set_lun(cmd.lun);
            b.set_itt(cmd.itt);
            b.set_u32(20, NO_TAG);
            b.set_u32(36, data_sn);
            b.set_u32(40, off as u32);
            if last && collapse {
                b.0[1] |= 0x01 | residual.0;
                b.0[3] = resp.status;
                b.set_u32(44, residual.1);
            }
            let pieces = slice_pieces(&resp.data, off, len);
            let p = if last { permit.take() } else { None };
            let _ = self
                .out
                .send(Out {
                    pdu: OutPdu::with_data(b, pieces),
                    _permit: p,
                })
                .await;
            data_sn += 1;
            off = end;
        }
        if collapse {
            return;
        }
        let mut b = Bhs::new(op::SCSI_RESP);
        b.0[1] = 0x80 | residual.0;
        b.0[3] = resp.status;
        b.set_itt(cmd.itt);
        b.set_u32(36, data_sn);
        b.set_u32(44, residual.1);
        let data = match resp.sense {
            Some(sense) if resp.status == CHECK_CONDITION => {
                let len = (sense.len() as u16).to_be_bytes();
                vec![Bytes::copy_from_slice(&len), sense]
            }
            _ => Vec::new(),
        };
        let _ = self
            .out
            .send(Out {
                pdu: OutPdu::with_data(b, data),
                _permit: permit,
            })
            .await;
    }

    async fn execute(
        &self,
        cmd: &Command,
        unit: Option<Arc<LogicalUnit>>,
        data: Bytes,
        residual: &mut (u8, u32),
    ) -> Response {
        // REPORT LUNS answers for the target, whatever LUN it is sent to.
        if cmd.cdb.first() == Some(&0xa0) {
            return scsi::report_luns(&cmd.cdb, &[0]);
        }
        let Some(unit) = unit.filter(|_| lun_number(cmd.lun) == Some(0)) else {
            return scsi::no_such_lun(&cmd.cdb);
        };
        if cmd.write {
            let expected = match unit.data_out_len(&cmd.cdb) {
                Ok(n) => n,
                Err(r) => return r,
            };
            // A transfer length that disagrees with the CDB's: the command runs with what
            // came, and the difference is a residual (FCP-4 9.4.2 a; initiators check both).
            // COMPARE AND WRITE cannot run on part of its data: the CDB's length is the field
            // in error, as tgt and LIO answer.
            if expected != cmd.edtl {
                *residual = if expected > cmd.edtl {
                    (0x04, expected - cmd.edtl)
                } else {
                    (0x02, cmd.edtl - expected)
                };
                if cmd.cdb.first() == Some(&0x89) {
                    return unit.check(scsi::sense::INVALID_FIELD_IN_CDB.at_cdb(13, None));
                }
            }
            self.wrote.store(true, Ordering::Relaxed);
        }
        unit.execute(&self.nexus, &cmd.cdb, data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luns_decode_in_peripheral_and_flat_addressing() {
        assert_eq!(lun_number(0), Some(0));
        assert_eq!(lun_number(0x0001_0000_0000_0000), Some(1));
        assert_eq!(lun_number(0x4101_0000_0000_0000), Some(0x101));
        assert_eq!(lun_number(0x0100_0000_0000_0000), None);
        assert_eq!(lun_number(0x0000_0000_0000_0001), None);
    }

    #[test]
    fn the_window_admits_serial_numbers_between_exp_and_max() {
        let w = Window::new(u32::MAX - 1, 4);
        assert_eq!(w.max(), 1);
        assert!(w.admits(u32::MAX - 1) && w.admits(u32::MAX) && w.admits(0) && w.admits(1));
        assert!(!w.admits(2) && !w.admits(u32::MAX - 2));
        for _ in 0..4 {
            w.take(true);
        }
        assert_eq!(w.exp(), 2);
        // Taking a command moves ExpCmdSN, not MaxCmdSN.
        assert_eq!(w.max(), 1);
        // A full window: nothing is admitted until a command completes.
        assert!(!w.admits(2));
        w.done(1);
        assert_eq!(w.max(), 2);
        assert!(w.admits(2) && !w.admits(3));
    }

    /// The writer stamps MaxCmdSN while the dispatcher takes commands and tasks answer them:
    /// what it reads never goes back (an initiator keeps the largest MaxCmdSN it saw, so one
    /// stamp too far would leave a command the window refuses).
    #[test]
    fn max_cmd_sn_never_goes_back_while_commands_come_and_go() {
        let w = Arc::new(Window::new(7, 8));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (w, stop) = (w.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut last = w.max();
                while !stop.load(Ordering::Relaxed) {
                    let m = w.max();
                    assert!(
                        m.wrapping_sub(last) < 1 << 31,
                        "MaxCmdSN went back: {last} then {m}"
                    );
                    last = m;
                }
            })
        };
        for _ in 0..200_000 {
            // Keep the window about half full, as a busy initiator does.
            w.take(true);
            if w.load().1 > 4 {
                w.done(1);
            }
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
    }

    #[test]
    fn pieces_are_sliced_without_copying() {
        let pieces = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defgh")];
        let s = slice_pieces(&pieces, 2, 4);
        assert_eq!(
            s,
            vec![Bytes::from_static(b"c"), Bytes::from_static(b"def")]
        );
        assert!(slice_pieces(&pieces, 8, 4).is_empty());
    }
}
