//! Block durability across a crash: a `cairn serve` process killed with SIGKILL under an NBD
//! write load loses no block acknowledged before the last completed FLUSH, and never shows a
//! block content that was not written there.
//!
//! Each run starts a site on a fresh data dir, creates a 64 MiB volume with 4 KiB blocks and
//! drives it through a small raw NBD client (fixed newstyle, `NBD_OPT_GO`, simple replies) from
//! a writer thread. The load is a sequence of rounds with increasing generations; a round
//! writes a random set of non-overlapping runs of 1-16 blocks (mostly in a small hot region,
//! so blocks are overwritten from round to round, and often across the volume's 64 KiB
//! extents), keeping up to eight writes in flight, and most rounds end with a FLUSH. Every
//! block written carries a pattern derived from (block number, generation) only: its first 16
//! bytes are both numbers, the rest a PRNG stream seeded by them. So nothing is kept but, per
//! block, the generations sent and the last generation a completed FLUSH covered.
//!
//! The process is killed at a point chosen from the run's seed and reached by watching the
//! writer's progress (never after a fixed sleep), once at least three flushes completed. The
//! three tests cover:
//!
//! - a kill in the middle of a round that follows a round without FLUSH: acknowledged,
//!   unflushed writes of a whole round, and of the current round writes acknowledged, in
//!   flight and not yet sent;
//! - a kill just after a FLUSH was sent, its reply not yet received: its commit may or may
//!   not have happened;
//! - a paced load (2 ms between writes) with few flushes on a server committing on a 50 ms
//!   timer (`--volume-commit-interval 0.05`), killed in the middle of a round after two
//!   without FLUSH: timer commits made some unflushed writes durable and one may be running
//!   when the kill comes.
//!
//! After a restart on the same data dir every block of the volume is read back. A block must
//! hold exactly the pattern of itself and a generation it was sent, no older than the last one
//! a completed FLUSH covered; or zeros, only if no completed FLUSH covered it. Anything else (a
//! lost or rolled back write, a torn or misplaced block, stray data) fails the test, naming the
//! block and what it holds.
//!
//! `CAIRN_NBD_CRASH_SEED=N` mixes `N` into the seeds, to explore other plans and kill points.

#[allow(dead_code)] // this binary uses only the site and CLI helpers
mod common;

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cairn_block::nbd::proto;
use common::{cairn, start_site};

/// Logical block size of the volume.
const BLOCK: usize = 4096;
/// Volume size.
const VOLUME_SIZE: u64 = 64 << 20;
/// Blocks in the volume.
const BLOCKS: u64 = VOLUME_SIZE / BLOCK as u64;
/// Most blocks written by one request.
const MAX_RUN: u64 = 16;
/// Blocks most writes go to, so that rounds overwrite each other's blocks.
const HOT_BLOCKS: u64 = 512;
/// Writes the writer keeps in flight.
const IN_FLIGHT: usize = 8;
/// Rounds in a run's plan (the kill comes before the last one).
const ROUNDS: usize = 40;
/// Flushes that complete before any kill point.
const FIRST_FLUSHES: usize = 3;
/// Bound on every socket operation.
const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on reaching the kill point.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Volume name.
const VOLUME: &str = "crash";

/// splitmix64: the test's only randomness, seeded per run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi]`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `pct` percent.
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

/// The content of `block` written in generation `gen`: both numbers, then a PRNG stream
/// seeded by both.
fn pattern(block: u64, gen: u64, out: &mut [u8]) {
    out[..8].copy_from_slice(&block.to_le_bytes());
    out[8..16].copy_from_slice(&gen.to_le_bytes());
    let mut rng = Rng(block.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ gen.rotate_left(32) ^ 0xb10c);
    for word in out[16..].chunks_exact_mut(8) {
        word.copy_from_slice(&rng.next().to_le_bytes());
    }
}

/// One round of the write load.
struct Round {
    gen: u64,
    /// Runs of blocks: (first block, blocks), no two overlapping.
    writes: Vec<(u64, u64)>,
    /// Whether a FLUSH ends the round.
    flush: bool,
}

/// One run's shape.
struct Scenario {
    seed: u64,
    /// Least and most write requests in a round.
    writes: (u64, u64),
    /// Chance, in percent, that a round after the first ones ends with a FLUSH.
    flush_pct: u64,
    /// Kill while a FLUSH is in flight, rather than in the middle of a round.
    during_flush: bool,
    /// When killing in the middle of a round: rounds without a FLUSH right before it.
    unflushed_before: usize,
    /// Think time before each write request (a paced load rather than a flat-out one).
    pace: Option<Duration>,
    /// Extra `cairn serve` flags.
    serve: &'static [&'static str],
}

/// The rounds of a run, drawn from its seed: the first [`FIRST_FLUSHES`] rounds flush, each
/// later one with probability `flush_pct` percent.
fn plan(rng: &mut Rng, sc: &Scenario) -> Vec<Round> {
    (0..ROUNDS)
        .map(|i| {
            let n = rng.range(sc.writes.0, sc.writes.1);
            let mut used = HashSet::new();
            let mut writes = Vec::new();
            while (writes.len() as u64) < n {
                let start = if rng.chance(70) {
                    rng.range(0, HOT_BLOCKS - 1)
                } else {
                    rng.range(0, BLOCKS - 1)
                };
                let len = if rng.chance(60) {
                    1
                } else {
                    rng.range(2, MAX_RUN)
                };
                let len = len.min(BLOCKS - start);
                if (start..start + len).any(|b| used.contains(&b)) {
                    continue;
                }
                used.extend(start..start + len);
                writes.push((start, len));
            }
            Round {
                gen: i as u64 + 1,
                writes,
                flush: i < FIRST_FLUSHES || rng.chance(sc.flush_pct),
            }
        })
        .collect()
}

/// Where the kill comes.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// Once this many writes were acknowledged (in the middle of a round).
    AckedWrites(usize),
    /// Once this many FLUSH requests were sent (the last one in flight).
    FlushSent(usize),
}

/// Picks a kill point after the first flushes and before the last round, so the load is
/// still running when it is reached: while the FLUSH ending a round is in flight, or in the
/// middle of a round that follows `unflushed_before` rounds without a FLUSH (so acknowledged,
/// unflushed writes of whole rounds, and writes in flight, meet the kill).
fn kill_point(rng: &mut Rng, rounds: &[Round], sc: &Scenario) -> KillAt {
    let first = FIRST_FLUSHES + sc.unflushed_before;
    let mut candidates: Vec<usize> = (first..ROUNDS - 1)
        .filter(|&k| {
            if sc.during_flush {
                rounds[k].flush
            } else {
                rounds[k - sc.unflushed_before..k].iter().all(|r| !r.flush)
            }
        })
        .collect();
    if candidates.is_empty() {
        candidates = (first..ROUNDS - 1).collect();
    }
    let k = candidates[rng.next() as usize % candidates.len()];
    if sc.during_flush && rounds[k].flush {
        KillAt::FlushSent(rounds[..=k].iter().filter(|r| r.flush).count())
    } else {
        let before: usize = rounds[..k].iter().map(|r| r.writes.len()).sum();
        let len = rounds[k].writes.len() as u64;
        KillAt::AckedWrites(before + rng.range(1, len - 1) as usize)
    }
}

/// The writer's progress, watched by the test to decide when to kill.
#[derive(Default)]
struct Progress {
    acked: usize,
    flushes_sent: usize,
    flushes_done: usize,
    /// Set when the writer stopped (its error, or that it ran out of rounds).
    ended: Option<String>,
}

#[derive(Default)]
struct Shared {
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.progress.lock().unwrap());
        self.changed.notify_all();
    }
}

/// What the writer knows once it stopped: per block, the generations sent (acknowledged or
/// not) and the newest generation a completed FLUSH covered.
#[derive(Default)]
struct Ledger {
    sent: HashMap<u64, Vec<u64>>,
    durable: HashMap<u64, u64>,
    /// Acknowledged since the last FLUSH was sent: block → generation.
    unflushed: HashMap<u64, u64>,
    flushes_done: usize,
    last_flush: Option<Instant>,
    acked: usize,
}

/// A minimal blocking NBD client: fixed newstyle handshake with `NBD_OPT_GO`, simple replies.
struct Nbd {
    s: TcpStream,
    size: u64,
    cookie: u64,
}

impl Nbd {
    fn connect(addr: &str, export: &str) -> io::Result<Nbd> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        s.set_nodelay(true)?;
        let mut nbd = Nbd {
            s,
            size: 0,
            cookie: 0,
        };
        let mut greeting = [0u8; 18];
        nbd.s.read_exact(&mut greeting)?;
        if greeting[..8] != proto::NBD_MAGIC.to_be_bytes()
            || greeting[8..16] != proto::IHAVEOPT.to_be_bytes()
        {
            return Err(bad(format!(
                "not an NBD newstyle greeting: {greeting:02x?}"
            )));
        }
        let flags = proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES;
        nbd.s.write_all(&flags.to_be_bytes())?;

        let mut opt = proto::IHAVEOPT.to_be_bytes().to_vec();
        opt.extend_from_slice(&proto::OPT_GO.to_be_bytes());
        opt.extend_from_slice(&(4 + export.len() as u32 + 2).to_be_bytes());
        opt.extend_from_slice(&(export.len() as u32).to_be_bytes());
        opt.extend_from_slice(export.as_bytes());
        opt.extend_from_slice(&0u16.to_be_bytes());
        nbd.s.write_all(&opt)?;
        loop {
            let mut h = [0u8; 20];
            nbd.s.read_exact(&mut h)?;
            if h[..8] != proto::OPTION_REPLY_MAGIC.to_be_bytes() {
                return Err(bad(format!("bad option reply magic: {h:02x?}")));
            }
            let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
            let mut data = vec![0u8; len as usize];
            nbd.s.read_exact(&mut data)?;
            match kind {
                proto::REP_ACK => break,
                proto::REP_INFO if data.len() >= 12 && data[..2] == [0, 0] => {
                    nbd.size = u64::from_be_bytes(data[2..10].try_into().unwrap());
                    let tflags = u16::from_be_bytes(data[10..12].try_into().unwrap());
                    if tflags & proto::TFLAG_SEND_FLUSH == 0 {
                        return Err(bad("the export does not take FLUSH".into()));
                    }
                }
                proto::REP_INFO => {}
                _ => {
                    return Err(bad(format!(
                        "NBD_OPT_GO {export:?} refused: reply {kind:#x} {:?}",
                        String::from_utf8_lossy(&data)
                    )))
                }
            }
        }
        Ok(nbd)
    }

    /// Sends a request (and its payload); returns its cookie.
    fn send(&mut self, kind: u16, offset: u64, len: u32, payload: &[u8]) -> io::Result<u64> {
        self.cookie += 1;
        let req = proto::Request {
            flags: 0,
            kind,
            cookie: self.cookie,
            offset,
            len,
        };
        let mut b = proto::encode_request(&req).to_vec();
        b.extend_from_slice(payload);
        self.s.write_all(&b)?;
        Ok(self.cookie)
    }

    /// Reads one simple reply header: its cookie, or the error it carries.
    fn reply(&mut self) -> io::Result<u64> {
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h)?;
        if h[..4] != proto::SIMPLE_REPLY_MAGIC.to_be_bytes() {
            return Err(bad(format!("bad simple reply magic: {h:02x?}")));
        }
        let error = u32::from_be_bytes(h[4..8].try_into().unwrap());
        let cookie = u64::from_be_bytes(h[8..16].try_into().unwrap());
        if error != 0 {
            return Err(bad(format!(
                "request {cookie} failed with NBD error {error}"
            )));
        }
        Ok(cookie)
    }

    /// One request at a time: the reply must be the request's.
    fn call(&mut self, kind: u16, offset: u64, len: u32) -> io::Result<()> {
        let cookie = self.send(kind, offset, len, &[])?;
        let got = self.reply()?;
        if got != cookie {
            return Err(bad(format!("reply for cookie {got}, expected {cookie}")));
        }
        Ok(())
    }

    fn read(&mut self, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        self.call(proto::CMD_READ, offset, len)?;
        let mut data = vec![0u8; len as usize];
        self.s.read_exact(&mut data)?;
        Ok(data)
    }

    fn disconnect(mut self) {
        let _ = self.send(proto::CMD_DISC, 0, 0, &[]);
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Runs `rounds` against the volume until the connection breaks (the kill) or the rounds run
/// out, recording what was sent and what completed flushes covered in `ledger`.
fn write_load(
    nbd: &mut Nbd,
    rounds: &[Round],
    pace: Option<Duration>,
    shared: &Shared,
    ledger: &mut Ledger,
) -> io::Result<()> {
    let mut buf = Vec::new();
    for round in rounds {
        let mut in_flight: HashMap<u64, (u64, u64)> = HashMap::new();
        let mut next = round.writes.iter();
        loop {
            if in_flight.len() < IN_FLIGHT {
                if let Some(&(start, len)) = next.next() {
                    if let Some(pace) = pace {
                        std::thread::sleep(pace);
                    }
                    buf.resize(len as usize * BLOCK, 0);
                    for (i, block) in buf.chunks_exact_mut(BLOCK).enumerate() {
                        pattern(start + i as u64, round.gen, block);
                        ledger
                            .sent
                            .entry(start + i as u64)
                            .or_default()
                            .push(round.gen);
                    }
                    let cookie = nbd.send(
                        proto::CMD_WRITE,
                        start * BLOCK as u64,
                        buf.len() as u32,
                        &buf,
                    )?;
                    in_flight.insert(cookie, (start, len));
                    continue;
                }
            }
            if in_flight.is_empty() {
                break;
            }
            let cookie = nbd.reply()?;
            let Some((start, len)) = in_flight.remove(&cookie) else {
                return Err(bad(format!("reply for unknown cookie {cookie}")));
            };
            for b in start..start + len {
                ledger.unflushed.insert(b, round.gen);
            }
            ledger.acked += 1;
            shared.update(|p| p.acked += 1);
        }
        if round.flush {
            let covered = std::mem::take(&mut ledger.unflushed);
            let cookie = nbd.send(proto::CMD_FLUSH, 0, 0, &[])?;
            shared.update(|p| p.flushes_sent += 1);
            let got = nbd.reply()?;
            if got != cookie {
                return Err(bad(format!(
                    "reply for cookie {got}, expected the FLUSH's {cookie}"
                )));
            }
            ledger.durable.extend(covered);
            ledger.flushes_done += 1;
            ledger.last_flush = Some(Instant::now());
            shared.update(|p| p.flushes_done += 1);
        }
    }
    Ok(())
}

/// A running `cairn serve`, killed when dropped (so a failing test leaves no process).
struct Site {
    child: Child,
    nbd: String,
}

impl Site {
    fn start(dir: &std::path::Path, extra: &[&str]) -> Site {
        let (child, ep) = start_site(dir, extra);
        let nbd = ep.nbd.expect("cairn serve printed its NBD endpoint");
        Site { child, nbd }
    }

    fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL cairn serve");
        self.child.wait().unwrap();
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks one block read back: how it is correct, or what is wrong with it.
fn check_block(
    block: u64,
    data: &[u8],
    ledger: &Ledger,
    scratch: &mut [u8],
) -> Result<Kind, String> {
    let durable = ledger.durable.get(&block).copied();
    let sent = ledger.sent.get(&block).map_or(&[][..], |v| &v[..]);
    if data.iter().all(|&b| b == 0) {
        return match durable {
            Some(d) => Err(format!(
                "block {block} reads as zeros, but generation {d} of it was flushed (sent: {sent:?})"
            )),
            None => Ok(Kind::Zeros),
        };
    }
    let hb = u64::from_le_bytes(data[..8].try_into().unwrap());
    let hg = u64::from_le_bytes(data[8..16].try_into().unwrap());
    pattern(hb, hg, scratch);
    if scratch != data {
        return Err(format!(
            "block {block} holds neither zeros nor a whole written block (its header says block \
             {hb} generation {hg}; first bytes {:02x?}); sent: {sent:?}, flushed: {durable:?}",
            &data[..32]
        ));
    }
    if hb != block {
        return Err(format!(
            "block {block} holds block {hb}'s generation {hg} (sent here: {sent:?})"
        ));
    }
    if !sent.contains(&hg) {
        return Err(format!(
            "block {block} holds generation {hg}, which was never written to it (sent: {sent:?})"
        ));
    }
    match durable {
        Some(d) if hg < d => Err(format!(
            "block {block} holds generation {hg}, but generation {d} was flushed: a lost write \
             (sent: {sent:?})"
        )),
        Some(d) if hg == d => Ok(Kind::Flushed),
        _ => Ok(Kind::Newer),
    }
}

/// How a correct block read back.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// Zeros, never covered by a completed FLUSH.
    Zeros,
    /// The generation the last completed FLUSH covered.
    Flushed,
    /// A generation sent after the last completed FLUSH that covered the block (or sent to a
    /// block no completed FLUSH covered).
    Newer,
}

/// One crash scenario: load, kill, restart, read back.
fn crash_and_check(sc: Scenario) {
    let began = Instant::now();
    let seed = match std::env::var("CAIRN_NBD_CRASH_SEED") {
        Ok(v) if !v.is_empty() => {
            sc.seed ^ Rng(v.parse().expect("CAIRN_NBD_CRASH_SEED is a number")).next()
        }
        _ => sc.seed,
    };
    let mut rng = Rng(seed);
    let rounds = plan(&mut rng, &sc);
    let kill_at = kill_point(&mut rng, &rounds, &sc);
    let what = format!(
        "seed {seed:#x}, kill at {kill_at:?}, serve flags {:?}",
        sc.serve
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let site = Site::start(dir.path(), sc.serve);
    let size = format!("{}MiB", VOLUME_SIZE >> 20);
    let (ok, out, err) = cairn(&[
        "volume",
        "create",
        VOLUME,
        "--size",
        &size,
        "--block-size",
        "4096",
        "--data-dir",
        d,
    ]);
    assert!(ok, "cairn volume create failed: {out}{err}");

    let mut nbd = Nbd::connect(&site.nbd, VOLUME).expect("connecting over NBD");
    assert_eq!(nbd.size, VOLUME_SIZE, "export size");
    let shared = Arc::new(Shared::default());
    let writer = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let mut ledger = Ledger::default();
            let r = write_load(&mut nbd, &rounds, sc.pace, &shared, &mut ledger);
            let why = match r {
                Ok(()) => "the write load ran out of rounds before the kill point".to_string(),
                Err(e) => format!("the write load stopped: {e}"),
            };
            shared.update(|p| p.ended = Some(why));
            ledger
        })
    };

    // Wait until the kill point (or the writer's end, or the bound), then kill.
    let deadline = Instant::now() + LOAD_TIMEOUT;
    let mut p = shared.progress.lock().unwrap();
    loop {
        let reached = match kill_at {
            KillAt::AckedWrites(n) => p.acked >= n,
            KillAt::FlushSent(n) => p.flushes_sent >= n,
        };
        if let Some(why) = &p.ended {
            panic!(
                "{what}: {why} (acked {}, flushes {})",
                p.acked, p.flushes_done
            );
        }
        if reached {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{what}: kill point not reached in {LOAD_TIMEOUT:?} (acked {}, flushes {})",
            p.acked,
            p.flushes_done
        );
        p = shared.changed.wait_timeout(p, left).unwrap().0;
    }
    drop(p);
    let killed = Instant::now();
    site.sigkill();
    let ledger = writer.join().expect("the writer thread panicked");
    let killed_after = killed - began;
    let since_flush = ledger
        .last_flush
        .map(|t| killed.saturating_duration_since(t));
    assert!(
        ledger.flushes_done >= FIRST_FLUSHES,
        "{what}: only {} flushes completed before the kill",
        ledger.flushes_done
    );

    // Restart on the same data dir and read every block.
    let site = Site::start(dir.path(), sc.serve);
    let mut nbd = Nbd::connect(&site.nbd, VOLUME).expect("connecting over NBD after the restart");
    assert_eq!(
        nbd.size, VOLUME_SIZE,
        "{what}: export size after the restart"
    );
    const READ: u32 = 1 << 20;
    let mut scratch = vec![0u8; BLOCK];
    let mut failures = Vec::new();
    let mut counts = HashMap::new();
    for offset in (0..VOLUME_SIZE).step_by(READ as usize) {
        let data = nbd
            .read(offset, READ)
            .unwrap_or_else(|e| panic!("{what}: reading {offset}+{READ} after the restart: {e}"));
        for (i, block) in data.chunks_exact(BLOCK).enumerate() {
            let b = offset / BLOCK as u64 + i as u64;
            match check_block(b, block, &ledger, &mut scratch) {
                Ok(kind) => *counts.entry(kind).or_insert(0usize) += 1,
                Err(e) => failures.push(e),
            }
        }
    }
    nbd.disconnect();
    drop(site);
    let n = |k| counts.get(&k).copied().unwrap_or(0);
    eprintln!(
        "{what}: killed after {killed_after:?} ({} writes acknowledged, {} flushes done, the \
         last {since_flush:?} before; {} blocks acknowledged since the last FLUSH); after the \
         restart {} blocks hold their flushed generation, {} a newer one, {} zeros; \
         {} blocks wrong; {:?} in all",
        ledger.acked,
        ledger.flushes_done,
        ledger.unflushed.len(),
        n(Kind::Flushed),
        n(Kind::Newer),
        n(Kind::Zeros),
        failures.len(),
        began.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{what}: {} of {BLOCKS} blocks are wrong after the crash:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn flushed_blocks_survive_sigkill_in_the_middle_of_writes() {
    crash_and_check(Scenario {
        seed: 0x5eed_0001,
        writes: (16, 48),
        flush_pct: 70,
        during_flush: false,
        unflushed_before: 1,
        pace: None,
        serve: &[],
    });
}

#[test]
fn flushed_blocks_survive_sigkill_during_a_flush() {
    crash_and_check(Scenario {
        seed: 0x5eed_0002,
        writes: (16, 48),
        flush_pct: 70,
        during_flush: true,
        unflushed_before: 0,
        pace: None,
        serve: &[],
    });
}

/// A paced load with few flushes: the server's timer commits make unflushed writes durable
/// between flushes, and one may be running when the kill comes.
#[test]
fn flushed_blocks_survive_sigkill_racing_timer_commits() {
    crash_and_check(Scenario {
        seed: 0x5eed_0003,
        writes: (16, 48),
        flush_pct: 30,
        during_flush: false,
        unflushed_before: 2,
        pace: Some(Duration::from_millis(2)),
        serve: &["--volume-commit-interval", "0.05"],
    });
}
