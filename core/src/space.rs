//! Free space of a node's data dirs: the thresholds that say when a node is near full, and the
//! gate through which the stores and the client refuse new writes while it is. No I/O here: the
//! node's disk worker measures the file systems and sets the gate; the stores report a write
//! that failed for lack of space to it.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

/// A node's (or one data dir's) space state. Ordered: the worst of several dirs is the max.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum SpaceState {
    /// Enough free space: writes are taken.
    #[default]
    Ok,
    /// Free space under the near-full threshold: new writes are refused, removals run.
    NearFull,
    /// A write failed with "no space left on device": new writes are refused until free space
    /// is back over the threshold and the hysteresis.
    Full,
}

impl SpaceState {
    /// The state's name in status output and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SpaceState::Ok => "ok",
            SpaceState::NearFull => "near-full",
            SpaceState::Full => "full",
        }
    }

    /// Parses [`SpaceState::as_str`]; anything else is `Ok` (a newer peer's state we do not
    /// know refuses nothing here).
    pub fn parse(s: &str) -> SpaceState {
        match s {
            "near-full" => SpaceState::NearFull,
            "full" => SpaceState::Full,
            _ => SpaceState::Ok,
        }
    }

    /// Whether new writes are refused in this state.
    pub fn refuses_writes(self) -> bool {
        self != SpaceState::Ok
    }

    fn from_u8(v: u8) -> SpaceState {
        match v {
            1 => SpaceState::NearFull,
            2 => SpaceState::Full,
            _ => SpaceState::Ok,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            SpaceState::Ok => 0,
            SpaceState::NearFull => 1,
            SpaceState::Full => 2,
        }
    }
}

/// When a data dir counts as near full. A dir is near full when its free space is under
/// `min_free_percent` of its size or under `min_free_bytes` (0 disables either); it leaves the
/// state only once free space is `hysteresis_percent` of its size over that, so a node at the
/// edge does not flap between taking and refusing writes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpaceThresholds {
    /// Near full under this percentage of the file system free.
    pub min_free_percent: f64,
    /// Near full under this many bytes free.
    pub min_free_bytes: u64,
    /// Free space over the threshold, in percent of the file system, needed to leave the state.
    pub hysteresis_percent: f64,
}

impl Default for SpaceThresholds {
    fn default() -> Self {
        SpaceThresholds {
            min_free_percent: 5.0,
            min_free_bytes: 0,
            hysteresis_percent: 1.0,
        }
    }
}

impl SpaceThresholds {
    /// Free bytes under which a file system of `total` bytes is near full.
    pub fn near_full_under(&self, total: u64) -> u64 {
        let pct = (total as f64 * self.min_free_percent.clamp(0.0, 100.0) / 100.0) as u64;
        pct.max(self.min_free_bytes)
    }

    /// Free bytes a dir in a refusing state needs to take writes again.
    pub fn leave_at(&self, total: u64) -> u64 {
        let hyst = (total as f64 * self.hysteresis_percent.clamp(0.0, 100.0) / 100.0) as u64;
        self.near_full_under(total).saturating_add(hyst)
    }

    /// The state after a measurement of `free` of `total` bytes, coming from `current`.
    /// `Full` (a write failed for lack of space) and `NearFull` are both left only at
    /// [`SpaceThresholds::leave_at`]; from `Ok` a dir becomes `NearFull` under the threshold.
    pub fn next(&self, current: SpaceState, free: u64, total: u64) -> SpaceState {
        match current {
            SpaceState::Ok if free < self.near_full_under(total) => SpaceState::NearFull,
            SpaceState::Ok => SpaceState::Ok,
            _ if free >= self.leave_at(total) => SpaceState::Ok,
            refusing => refusing,
        }
    }
}

/// The space state every write path of a node consults: new writes are refused while it is
/// not `Ok`, removals never are. Set by the node's disk worker from measurements, and by any
/// store whose write failed with "no space left on device" ([`SpaceGate::note_no_space`]).
#[derive(Default)]
pub struct SpaceGate {
    state: AtomicU8,
    /// What the disk worker last said about the worst data dir (for error messages).
    detail: Mutex<String>,
    /// Run when a write fails for lack of space (the node frees its reserve file there, so
    /// removals have room to run).
    on_no_space: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for SpaceGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceGate")
            .field("state", &self.state())
            .finish()
    }
}

impl SpaceGate {
    /// A gate that takes writes.
    pub fn new() -> SpaceGate {
        SpaceGate::default()
    }

    /// The current state.
    pub fn state(&self) -> SpaceState {
        SpaceState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Sets the state and what to tell a refused writer about it.
    pub fn set(&self, state: SpaceState, detail: String) {
        *self.detail.lock().unwrap_or_else(|e| e.into_inner()) = detail;
        self.state.store(state.to_u8(), Ordering::Release);
    }

    /// `Err` with a message for the user when new writes are refused.
    pub fn check_write(&self) -> Result<(), String> {
        let state = self.state();
        if !state.refuses_writes() {
            return Ok(());
        }
        let detail = self
            .detail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Err(no_space_message(state, &detail))
    }

    /// Records that a write failed with "no space left on device": the state becomes `Full`
    /// (the disk worker clears it once space is back) and the node's hook runs.
    pub fn note_no_space(&self, what: &str) {
        let was = self.state.swap(SpaceState::Full.to_u8(), Ordering::AcqRel);
        if was != SpaceState::Full.to_u8() {
            *self.detail.lock().unwrap_or_else(|e| e.into_inner()) =
                format!("{what} ran out of space");
        }
        if let Some(hook) = &*self.on_no_space.lock().unwrap_or_else(|e| e.into_inner()) {
            hook();
        }
    }

    /// Sets what [`SpaceGate::note_no_space`] runs besides changing the state.
    pub fn set_on_no_space(&self, hook: Box<dyn Fn() + Send + Sync>) {
        *self.on_no_space.lock().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }
}

/// The largest RocksDB write buffer (memtable) the stores use: RocksDB's default.
pub const MAX_WRITE_BUFFER: u64 = 64 << 20;

/// A store's WAL is capped at this many write buffers, and the store opens with memtables that
/// large, so that replaying a WAL after a crash needs no flush (and no free disk space).
pub const WAL_WRITE_BUFFERS: u64 = 4;

/// The write buffer (memtable) size, and target SST file size, of a store on a file system of
/// `total` bytes: 64 MiB, but at most 1/32 of the file system (at least 4 MiB). RocksDB
/// preallocates 1.1 × the write buffer for each WAL and the target size for each compaction
/// output, and a full disk must keep room for one memtable flush to recover, so a small disk
/// gets small ones; from 2 GiB up this is RocksDB's default.
pub fn write_buffer_for(total: u64) -> u64 {
    (total / 32).clamp(4 << 20, MAX_WRITE_BUFFER)
}

/// Whether a store may flush `pending` bytes of memtables (what it replayed at open) with
/// `free` bytes left on its file system: the flush writes about that much (payloads into blob
/// files, keys into SSTs) before the WAL it empties is deleted, and a flush that fails for want
/// of space has taken the room first (the stores' OPTIONS and MANIFEST writes, and the other
/// store's open, would then fail). A write buffer is kept spare.
pub fn room_to_flush(free: u64, pending: u64, write_buffer: u64) -> bool {
    free >= pending
        .saturating_add(pending / 4)
        .saturating_add(write_buffer)
}

/// Bytes free for an unprivileged writer on the file system of `dir` (`None` if unknown).
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// RocksDB options both stores open with, beside their own: a store killed on a full disk
/// must open again, and replaying its WAL into memtables needs no space where flushing them
/// would (`avoid_flush_during_recovery`); and no file is preallocated (`allow_fallocate`):
/// RocksDB preallocates each new WAL at 1.1 × the memtables it may log (four write buffers
/// while a store opens) and each compaction output at a whole target file, and on ext4 a
/// preallocation that runs out of space keeps what it got, so the start on a full disk that
/// had a few write buffers given back for it found them gone before its first MANIFEST write.
pub const ROCKSDB_OPEN_OPTIONS: &str = "avoid_flush_during_recovery=true;allow_fallocate=false";

/// RocksDB's MANIFEST preallocation (its default, 4 MiB, is a whole write buffer of a small
/// disk, taken again at each open, from the room a start on a full disk has).
pub const MANIFEST_PREALLOCATION: usize = 1 << 20;

/// The message a refused write gets: what happened and what to do.
pub fn no_space_message(state: SpaceState, detail: &str) -> String {
    let what = match state {
        SpaceState::Full => "out of disk space",
        _ => "near full",
    };
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    format!(
        "the storage is {what}{detail}: new writes are refused while reads and deletes go on; \
         free space by deleting objects (garbage collection then reclaims their data) or add \
         disks or nodes"
    )
}

/// Whether an error message from the file system or RocksDB says a device ran out of space.
pub fn is_no_space_message(msg: &str) -> bool {
    msg.contains("No space left on device") || msg.contains("NoSpace") || msg.contains("ENOSPC")
}

/// `b` bytes in binary units with one decimal, for messages and reports ("1.5 GiB").
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn thresholds_enter_and_leave_with_hysteresis() {
        let t = SpaceThresholds {
            min_free_percent: 10.0,
            min_free_bytes: 0,
            hysteresis_percent: 5.0,
        };
        assert_eq!(t.next(SpaceState::Ok, 11, 100), SpaceState::Ok);
        assert_eq!(t.next(SpaceState::Ok, 9, 100), SpaceState::NearFull);
        // Back over the threshold, but not over the hysteresis: still near full.
        assert_eq!(t.next(SpaceState::NearFull, 12, 100), SpaceState::NearFull);
        assert_eq!(t.next(SpaceState::NearFull, 15, 100), SpaceState::Ok);
        // Full (a write hit ENOSPC) stays until the same level.
        assert_eq!(t.next(SpaceState::Full, 14, 100), SpaceState::Full);
        assert_eq!(t.next(SpaceState::Full, 15, 100), SpaceState::Ok);
    }

    #[test]
    fn bytes_threshold_and_disabled_threshold() {
        let t = SpaceThresholds {
            min_free_percent: 0.0,
            min_free_bytes: 50,
            hysteresis_percent: 0.0,
        };
        assert_eq!(t.next(SpaceState::Ok, 49, 1000), SpaceState::NearFull);
        assert_eq!(t.next(SpaceState::NearFull, 50, 1000), SpaceState::Ok);
        let off = SpaceThresholds {
            min_free_percent: 0.0,
            min_free_bytes: 0,
            hysteresis_percent: 0.0,
        };
        assert_eq!(off.next(SpaceState::Ok, 0, 1000), SpaceState::Ok);
        // With the threshold off, a write that hit ENOSPC still holds writes until a
        // measurement sees free space.
        assert_eq!(off.next(SpaceState::Full, 0, 1000), SpaceState::Ok);
    }

    #[test]
    fn gate_refuses_while_not_ok_and_runs_the_hook() {
        let gate = SpaceGate::new();
        assert!(gate.check_write().is_ok());
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        gate.set_on_no_space(Box::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        }));
        gate.note_no_space("chunk store");
        assert_eq!(gate.state(), SpaceState::Full);
        let msg = gate.check_write().unwrap_err();
        assert!(msg.contains("out of disk space"), "{msg}");
        assert!(msg.contains("delet"), "{msg}");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        gate.set(SpaceState::Ok, String::new());
        assert!(gate.check_write().is_ok());
        assert!(is_no_space_message(
            "IO error: No space left on device: While appending to file"
        ));
        assert_eq!(
            SpaceState::parse(SpaceState::NearFull.as_str()),
            SpaceState::NearFull
        );
    }
}
