//! What a maintenance worker has done, readable while it runs: [`WorkerProgress`] is updated
//! as a pass goes, [`WorkerProgress::snapshot`] copies it out for an admin endpoint, and
//! [`render_prometheus`] writes it as Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;

use crate::ChunkError;

/// The maintenance workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerKind {
    /// Copies this node's chunks to the replicas placement names that lack them.
    Repair,
    /// Moves chunks placement no longer gives this node to their replicas, then drops them.
    Rebalance,
    /// Re-hashes this node's copies and replaces corrupt ones from another replica.
    Scrub,
}

impl WorkerKind {
    /// Every worker, in a fixed order.
    pub const ALL: [WorkerKind; 3] = [WorkerKind::Repair, WorkerKind::Rebalance, WorkerKind::Scrub];

    /// The worker's name: `repair`, `rebalance` or `scrub`.
    pub fn name(self) -> &'static str {
        match self {
            WorkerKind::Repair => "repair",
            WorkerKind::Rebalance => "rebalance",
            WorkerKind::Scrub => "scrub",
        }
    }

    fn pushes(self) -> bool {
        matches!(self, WorkerKind::Repair | WorkerKind::Rebalance)
    }
}

/// What one pass did (returned by a pass; the last one is kept in the snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    /// Local chunks looked at.
    pub chunks_scanned: u64,
    /// Copies sent to replicas that lacked them (one per chunk per replica).
    pub chunks_pushed: u64,
    /// Payload bytes of those copies.
    pub bytes_pushed: u64,
    /// Local copies removed once every replica placement names held them (rebalance).
    pub local_copies_deleted: u64,
    /// Local copies that failed verification (scrub).
    pub corrupt_found: u64,
    /// Of those, copies replaced by a good one from another replica.
    pub corrupt_repaired: u64,
    /// Of those, copies no replica had a good copy for (kept as they are).
    pub corrupt_unrepaired: u64,
    /// Failures: calls to a replica, local reads, copies that could not be repaired.
    pub errors: u64,
    /// The last failure, naming the node it concerns.
    pub last_error: Option<String>,
    /// When the pass started, unix ms.
    pub started_ms: u64,
    /// When it ended, unix ms (0 while it runs).
    pub finished_ms: u64,
}

/// A copy of a worker's progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerSnapshot {
    /// The worker's name.
    pub worker: String,
    /// Whether a pass is running.
    pub running: bool,
    /// Passes completed (a pass that failed as a whole does not count).
    pub passes: u64,
    /// Chunks looked at by the current pass, or by the last one when none runs.
    pub chunks_scanned: u64,
    /// Copies sent to replicas, over every pass.
    pub chunks_pushed: u64,
    /// Their payload bytes.
    pub bytes_pushed: u64,
    /// Local copies removed, over every pass.
    pub local_copies_deleted: u64,
    /// Corrupt local copies found, over every pass.
    pub corrupt_found: u64,
    /// Corrupt copies replaced by good ones.
    pub corrupt_repaired: u64,
    /// Corrupt copies left as they were: no good copy found.
    pub corrupt_unrepaired: u64,
    /// Failures, over every pass.
    pub errors: u64,
    /// The last failure, naming the node it concerns.
    pub last_error: Option<String>,
    /// Start of the current or last pass, unix ms.
    pub last_pass_started_ms: Option<u64>,
    /// End of the last completed or failed pass, unix ms.
    pub last_pass_finished_ms: Option<u64>,
    /// The last completed pass.
    pub last_pass: Option<PassReport>,
}

/// A worker's progress, updated while a pass runs (shared: read it from any thread).
pub struct WorkerProgress {
    kind: WorkerKind,
    running: AtomicBool,
    passes: AtomicU64,
    scanned: AtomicU64,
    pushed: AtomicU64,
    bytes_pushed: AtomicU64,
    deleted: AtomicU64,
    corrupt_found: AtomicU64,
    corrupt_repaired: AtomicU64,
    corrupt_unrepaired: AtomicU64,
    errors: AtomicU64,
    /// 0 = never.
    started_ms: AtomicU64,
    /// 0 = never.
    finished_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
    last_pass: Mutex<Option<PassReport>>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl WorkerProgress {
    /// The progress of a worker that has not run yet.
    pub fn new(kind: WorkerKind) -> Self {
        WorkerProgress {
            kind,
            running: AtomicBool::new(false),
            passes: AtomicU64::new(0),
            scanned: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
            bytes_pushed: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            corrupt_found: AtomicU64::new(0),
            corrupt_repaired: AtomicU64::new(0),
            corrupt_unrepaired: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            started_ms: AtomicU64::new(0),
            finished_ms: AtomicU64::new(0),
            last_error: Mutex::new(None),
            last_pass: Mutex::new(None),
        }
    }

    /// Which worker this is.
    pub fn kind(&self) -> WorkerKind {
        self.kind
    }

    /// Whether a pass is running.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// A copy of the progress.
    pub fn snapshot(&self) -> WorkerSnapshot {
        let ms = |c: &AtomicU64| Some(load(c)).filter(|&v| v != 0);
        WorkerSnapshot {
            worker: self.kind.name().to_string(),
            running: self.is_running(),
            passes: load(&self.passes),
            chunks_scanned: load(&self.scanned),
            chunks_pushed: load(&self.pushed),
            bytes_pushed: load(&self.bytes_pushed),
            local_copies_deleted: load(&self.deleted),
            corrupt_found: load(&self.corrupt_found),
            corrupt_repaired: load(&self.corrupt_repaired),
            corrupt_unrepaired: load(&self.corrupt_unrepaired),
            errors: load(&self.errors),
            last_error: self.last_error.lock().clone(),
            last_pass_started_ms: ms(&self.started_ms),
            last_pass_finished_ms: ms(&self.finished_ms),
            last_pass: self.last_pass.lock().clone(),
        }
    }

    /// This worker's Prometheus lines (with their `# HELP`/`# TYPE` lines; to render several
    /// workers into one page, use [`render_prometheus`], which groups each metric's lines).
    pub fn render_prometheus(&self, out: &mut String) {
        render_prometheus(&[self], out);
    }

    /// Starts a pass: fails if one is running already.
    pub(crate) fn begin(&self) -> Result<Pass<'_>, ChunkError> {
        if self
            .running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(ChunkError::Io(format!(
                "a {} pass is already running",
                self.kind.name()
            )));
        }
        let started_ms = now_ms();
        self.scanned.store(0, Ordering::Relaxed);
        self.started_ms.store(started_ms, Ordering::Relaxed);
        Ok(Pass {
            progress: self,
            report: PassReport {
                started_ms,
                ..PassReport::default()
            },
        })
    }
}

/// A running pass: counts into its report and the worker's progress at once; the worker is
/// marked idle when it is dropped.
pub(crate) struct Pass<'a> {
    progress: &'a WorkerProgress,
    report: PassReport,
}

impl Pass<'_> {
    pub(crate) fn scanned(&mut self, n: u64) {
        self.report.chunks_scanned += n;
        add(&self.progress.scanned, n);
    }

    pub(crate) fn pushed(&mut self, bytes: u64) {
        self.report.chunks_pushed += 1;
        self.report.bytes_pushed += bytes;
        add(&self.progress.pushed, 1);
        add(&self.progress.bytes_pushed, bytes);
    }

    pub(crate) fn deleted(&mut self, n: u64) {
        self.report.local_copies_deleted += n;
        add(&self.progress.deleted, n);
    }

    pub(crate) fn corrupt_found(&mut self) {
        self.report.corrupt_found += 1;
        add(&self.progress.corrupt_found, 1);
    }

    pub(crate) fn corrupt_repaired(&mut self) {
        self.report.corrupt_repaired += 1;
        add(&self.progress.corrupt_repaired, 1);
    }

    pub(crate) fn corrupt_unrepaired(&mut self) {
        self.report.corrupt_unrepaired += 1;
        add(&self.progress.corrupt_unrepaired, 1);
    }

    /// Counts a failure and keeps its message as the last error.
    pub(crate) fn error(&mut self, message: String) {
        tracing::warn!(worker = self.progress.kind.name(), error = %message, "maintenance");
        self.report.errors += 1;
        add(&self.progress.errors, 1);
        *self.progress.last_error.lock() = Some(message.clone());
        self.report.last_error = Some(message);
    }

    /// Ends the pass with the outcome of its body: a completed pass counts and is kept as
    /// the last one; a failed one counts as an error.
    pub(crate) fn end(mut self, result: Result<(), ChunkError>) -> Result<PassReport, ChunkError> {
        let finished_ms = now_ms();
        let p = self.progress;
        match result {
            Ok(()) => {
                self.report.finished_ms = finished_ms;
                *p.last_pass.lock() = Some(self.report.clone());
                p.finished_ms.store(finished_ms, Ordering::Relaxed);
                add(&p.passes, 1);
                Ok(std::mem::take(&mut self.report))
            }
            Err(e) => {
                self.error(format!("{} pass failed: {e}", p.kind.name()));
                p.finished_ms.store(finished_ms, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.progress.running.store(false, Ordering::Release);
    }
}

/// Writes the Prometheus lines of `workers`, each metric's `# HELP` and `# TYPE` once, then
/// one line per worker it applies to (pushes for repair and rebalance, deletions for
/// rebalance, corrupt copies for scrub). `cairn_worker_passes_total` is left to the caller,
/// which reports it for every worker of the process.
pub fn render_prometheus(workers: &[&WorkerProgress], out: &mut String) {
    type Value = fn(&WorkerProgress) -> Option<u64>;
    let metrics: [(&str, &str, &str, Value); 11] = [
        (
            "cairn_worker_running",
            "gauge",
            "Whether a pass of the worker is running (1) or not (0).",
            |w| Some(u64::from(w.is_running())),
        ),
        (
            "cairn_worker_chunks_scanned",
            "gauge",
            "Local chunks looked at by the current or last pass.",
            |w| Some(load(&w.scanned)),
        ),
        (
            "cairn_worker_chunks_pushed_total",
            "counter",
            "Chunk copies sent to replicas that lacked them.",
            |w| w.kind.pushes().then(|| load(&w.pushed)),
        ),
        (
            "cairn_worker_bytes_pushed_total",
            "counter",
            "Payload bytes of the chunk copies sent to replicas.",
            |w| w.kind.pushes().then(|| load(&w.bytes_pushed)),
        ),
        (
            "cairn_worker_local_copies_deleted_total",
            "counter",
            "Local chunk copies removed once their placement's replicas held them.",
            |w| (w.kind == WorkerKind::Rebalance).then(|| load(&w.deleted)),
        ),
        (
            "cairn_worker_corrupt_found_total",
            "counter",
            "Local chunk copies that failed verification.",
            |w| (w.kind == WorkerKind::Scrub).then(|| load(&w.corrupt_found)),
        ),
        (
            "cairn_worker_corrupt_repaired_total",
            "counter",
            "Corrupt local copies replaced by a good copy from another replica.",
            |w| (w.kind == WorkerKind::Scrub).then(|| load(&w.corrupt_repaired)),
        ),
        (
            "cairn_worker_corrupt_unrepaired_total",
            "counter",
            "Corrupt local copies for which no replica had a good copy.",
            |w| (w.kind == WorkerKind::Scrub).then(|| load(&w.corrupt_unrepaired)),
        ),
        (
            "cairn_worker_errors_total",
            "counter",
            "Failed calls, reads and repairs of a worker.",
            |w| Some(load(&w.errors)),
        ),
        (
            "cairn_worker_last_pass_start_ms",
            "gauge",
            "Start of the current or last pass, unix milliseconds.",
            |w| Some(load(&w.started_ms)).filter(|&v| v != 0),
        ),
        (
            "cairn_worker_last_pass_end_ms",
            "gauge",
            "End of the last pass, unix milliseconds.",
            |w| Some(load(&w.finished_ms)).filter(|&v| v != 0),
        ),
    ];
    for (name, kind, help, value) in metrics {
        let lines: Vec<(&str, u64)> = workers
            .iter()
            .filter_map(|w| value(w).map(|v| (w.kind.name(), v)))
            .collect();
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (worker, v) in lines {
            let _ = writeln!(out, "{name}{{worker=\"{worker}\"}} {v}");
        }
    }
}
