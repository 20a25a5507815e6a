//! Background workers of a running site and their visible status (admin `/v1/workers`,
//! `cairn workers`, and `/metrics`): lifecycle, which applies buckets' lifecycle rules, and gc,
//! which deletes chunks nothing reaches any more.

use std::sync::Arc;
use std::time::Duration;

use cairn_client::{Client, GcReport, LifecycleReport};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

/// Says whether a worker may run a pass now (multi-node sites: only one node runs lifecycle,
/// and GC waits until every manifest node answers). A pass it refuses is skipped, not queued.
pub type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

/// One worker's status.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Worker name.
    pub name: String,
    /// `idle` or `running`.
    pub state: String,
    /// Passes completed.
    pub passes: u64,
    /// Start of the current or last pass (unix ms).
    pub last_started_ms: Option<u64>,
    /// What started the current or last pass: `timer`, `map change` or `node back`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trigger: Option<String>,
    /// Passes started, by what started them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub triggers: std::collections::BTreeMap<String, u64>,
    /// End of the last completed pass (unix ms).
    pub last_finished_ms: Option<u64>,
    /// Seconds between passes.
    pub interval_secs: u64,
    /// Progress of the current pass, or the outcome of the last one (lifecycle).
    pub progress: LifecycleReport,
    /// Progress of the current pass, or the outcome of the last one (gc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc: Option<GcReport>,
    /// The last error of a pass or of an action in it.
    pub last_error: Option<String>,
    /// Counters of the current or last pass (maintenance workers: repair, rebalance, scrub,
    /// anti-entropy).
    #[serde(default)]
    pub counters: std::collections::BTreeMap<String, u64>,
    /// What the last pass found that an operator must act on (scrub: corrupt chunks and the
    /// objects reaching them), bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
}

/// A worker's progress on one line, for tables.
pub fn progress_line(w: &WorkerStatus) -> String {
    if let Some(g) = &w.gc {
        return format!(
            "{:?}: marked {}, deleted {}",
            g.phase, g.chunks_marked, g.chunks_deleted
        );
    }
    if w.name == "lifecycle" {
        let p = &w.progress;
        return format!(
            "scanned {}, expired {}, removed {}",
            p.versions_scanned,
            p.expired,
            p.noncurrent_removed + p.markers_removed
        );
    }
    w.counters
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The workers of this process.
#[derive(Default)]
pub struct Workers {
    lifecycle: Mutex<WorkerStatus>,
    gc: Mutex<WorkerStatus>,
    /// The other workers of a node of a multi-node site, by name.
    others: Mutex<std::collections::BTreeMap<String, WorkerStatus>>,
}

impl Workers {
    /// Every worker's status.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        [self.lifecycle.lock().clone(), self.gc.lock().clone()]
            .into_iter()
            .chain(self.others.lock().values().cloned())
            .filter(|s| !s.name.is_empty())
            .collect()
    }

    /// Changes the status of worker `name` (added on first use).
    pub fn update(&self, name: &str, f: impl FnOnce(&mut WorkerStatus)) {
        let mut others = self.others.lock();
        let s = others
            .entry(name.to_string())
            .or_insert_with(|| WorkerStatus {
                name: name.to_string(),
                state: "idle".into(),
                ..WorkerStatus::default()
            });
        f(s);
    }

    /// Prometheus lines for the workers.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP cairn_worker_passes_total Completed passes of a worker.\n");
        out.push_str("# TYPE cairn_worker_passes_total counter\n");
        for s in self.statuses() {
            out.push_str(&format!(
                "cairn_worker_passes_total{{worker=\"{}\"}} {}\n",
                s.name, s.passes
            ));
        }
        let others: Vec<WorkerStatus> = self.others.lock().values().cloned().collect();
        if others.iter().any(|s| !s.counters.is_empty()) {
            out.push_str(
                "# HELP cairn_worker_pass_count Counters of a worker's current or last pass.\n",
            );
            out.push_str("# TYPE cairn_worker_pass_count gauge\n");
            for s in &others {
                for (counter, n) in &s.counters {
                    out.push_str(&format!(
                        "cairn_worker_pass_count{{worker=\"{}\",counter=\"{counter}\"}} {n}\n",
                        s.name
                    ));
                }
            }
        }
        let s = self.lifecycle.lock().clone();
        out.push_str(
            "# HELP cairn_lifecycle_actions Actions of the current or last lifecycle pass.\n",
        );
        out.push_str("# TYPE cairn_lifecycle_actions gauge\n");
        for (action, n) in [
            ("versions_scanned", s.progress.versions_scanned),
            ("expired", s.progress.expired),
            ("noncurrent_removed", s.progress.noncurrent_removed),
            ("markers_removed", s.progress.markers_removed),
            ("uploads_aborted", s.progress.uploads_aborted),
            ("locked_skipped", s.progress.locked_skipped),
            ("errors", s.progress.errors),
        ] {
            out.push_str(&format!(
                "cairn_lifecycle_actions{{action=\"{action}\"}} {n}\n"
            ));
        }
        let g = self.gc.lock().gc.clone().unwrap_or_default();
        for (name, help, n) in [
            (
                "versions_scanned",
                "Versions scanned by the current or last GC pass.",
                g.versions_scanned,
            ),
            (
                "uploads_scanned",
                "Uploads in progress scanned by the current or last GC pass.",
                g.uploads_scanned,
            ),
            (
                "chunks_marked",
                "Chunks marked reachable by the current or last GC pass.",
                g.chunks_marked,
            ),
            (
                "chunks_scanned",
                "Stored chunks looked at by the current or last GC sweep.",
                g.chunks_scanned,
            ),
            (
                "chunks_deleted",
                "Chunks deleted by the current or last GC pass.",
                g.chunks_deleted,
            ),
            (
                "bytes_freed",
                "Stored bytes freed by the current or last GC pass.",
                g.bytes_freed,
            ),
        ] {
            out.push_str(&format!(
                "# HELP cairn_gc_{name} {help}\n# TYPE cairn_gc_{name} gauge\ncairn_gc_{name} {n}\n"
            ));
        }
        out
    }
}

/// Runs lifecycle passes every `interval` until `stop` turns true. The first pass starts
/// shortly after start-up.
pub async fn lifecycle_loop(
    client: Client,
    workers: Arc<Workers>,
    interval: Duration,
    versions_per_sec: u64,
    gate: Option<Gate>,
    mut stop: watch::Receiver<bool>,
) {
    let limiter = cairn_chunkserver::RateLimiter::new(versions_per_sec);
    {
        let mut s = workers.lifecycle.lock();
        s.name = "lifecycle".into();
        s.state = "idle".into();
        s.interval_secs = interval.as_secs();
    }
    let mut next = tokio::time::Instant::now() + Duration::from_secs(5).min(interval);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep_until(next) => {}
        }
        if !gate.as_ref().is_none_or(|g| g()) {
            workers.lifecycle.lock().state = "standby (another node runs it)".into();
            next = tokio::time::Instant::now() + interval;
            continue;
        }
        let started = cairn_client::now_ms();
        {
            let mut s = workers.lifecycle.lock();
            s.state = "running".into();
            s.last_started_ms = Some(started);
            s.progress = LifecycleReport::default();
        }
        let w = workers.clone();
        let progress = move |r: &LifecycleReport| {
            let mut s = w.lifecycle.lock();
            s.progress = r.clone();
            if let Some(e) = &r.last_error {
                s.last_error = Some(e.clone());
            }
        };
        let result = client
            .run_lifecycle_limited(started, &progress, &limiter)
            .await;
        let mut s = workers.lifecycle.lock();
        s.state = "idle".into();
        match result {
            Ok(r) => {
                s.passes += 1;
                s.last_finished_ms = Some(cairn_client::now_ms());
                s.progress = r.clone();
                if r.expired + r.noncurrent_removed + r.markers_removed + r.uploads_aborted > 0 {
                    info!(
                        expired = r.expired,
                        noncurrent_removed = r.noncurrent_removed,
                        markers_removed = r.markers_removed,
                        uploads_aborted = r.uploads_aborted,
                        "lifecycle pass done"
                    );
                }
            }
            Err(e) => {
                warn!(error = %e, "lifecycle pass failed");
                s.last_error = Some(e.to_string());
            }
        }
        drop(s);
        next = tokio::time::Instant::now() + interval;
    }
}

/// Runs GC passes every `interval` until `stop` turns true, each deleting unreachable chunks
/// last referenced more than `hold` before it started. The first pass starts a minute after
/// start-up (or after `interval`, if shorter).
pub async fn gc_loop(
    client: Client,
    workers: Arc<Workers>,
    interval: Duration,
    hold: Duration,
    items_per_sec: u64,
    gate: Option<Gate>,
    mut stop: watch::Receiver<bool>,
) {
    let limiter = cairn_chunkserver::RateLimiter::new(items_per_sec);
    {
        let mut s = workers.gc.lock();
        s.name = "gc".into();
        s.state = "idle".into();
        s.interval_secs = interval.as_secs();
        s.gc = Some(GcReport::default());
    }
    let hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
    let mut next = tokio::time::Instant::now() + Duration::from_secs(60).min(interval);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep_until(next) => {}
        }
        if !gate.as_ref().is_none_or(|g| g()) {
            let mut s = workers.gc.lock();
            s.state = "waiting (a manifest node does not answer)".into();
            s.last_error =
                Some("pass skipped: every manifest node must answer for a safe mark".into());
            drop(s);
            next = tokio::time::Instant::now() + interval.min(Duration::from_secs(60));
            continue;
        }
        let started = cairn_client::now_ms();
        {
            let mut s = workers.gc.lock();
            s.state = "running".into();
            s.last_started_ms = Some(started);
            s.gc = Some(GcReport::default());
        }
        let w = workers.clone();
        let progress = move |r: &GcReport| {
            w.gc.lock().gc = Some(r.clone());
        };
        let result = client
            .run_gc_limited(started, hold_ms, &progress, &limiter)
            .await;
        let mut s = workers.gc.lock();
        s.state = "idle".into();
        match result {
            Ok(r) => {
                s.passes += 1;
                s.last_finished_ms = Some(cairn_client::now_ms());
                if r.chunks_deleted > 0 {
                    info!(
                        chunks_deleted = r.chunks_deleted,
                        bytes_freed = r.bytes_freed,
                        chunks_marked = r.chunks_marked,
                        "gc pass done"
                    );
                }
                s.gc = Some(r);
            }
            Err(e) => {
                warn!(error = %e, "gc pass failed (nothing was deleted unless the sweep had begun)");
                s.last_error = Some(e.to_string());
            }
        }
        drop(s);
        next = tokio::time::Instant::now() + interval;
    }
}

/// Trims this node's metadata change log and tombstones every `interval` until `stop` (the
/// first pass a minute after start-up, or after `interval` if shorter), keeping what a reader
/// silent for less than `retention` has not read yet. Its counters show how much history the
/// node holds and which reader holds it back.
pub async fn history_trim_loop(
    client: Client,
    workers: Arc<Workers>,
    interval: Duration,
    retention: Duration,
    stop: watch::Receiver<bool>,
) {
    let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
    crate::node::tasks::maintenance_loop(
        "history-trim",
        workers,
        Duration::from_secs(60),
        interval,
        Arc::new(crate::node::tasks::Kick::default()),
        stop,
        move || {
            let client = client.clone();
            async move {
                let r = client
                    .trim_history(retention_ms)
                    .await
                    .map_err(|e| e.to_string())?;
                let h = client.history().await.map_err(|e| e.to_string())?;
                let counters = [
                    ("log_entries_removed", r.entries_removed),
                    ("tombstones_removed", r.tombstones_removed),
                    ("log_entries_held", h.log_entries()),
                    ("tombstones_held_estimate", h.tombstones_estimate),
                    ("consumers", h.consumers.len() as u64),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
                let mut findings = Vec::new();
                if let Some(slowest) = &r.slowest {
                    findings.push(format!(
                        "the change log is kept from {} on for {slowest}, the slowest reader",
                        r.horizon + 1
                    ));
                }
                for name in &r.expired {
                    findings.push(format!(
                        "{name} has not read the change log for longer than the history \
                         retention: it is trimmed without waiting for it"
                    ));
                }
                Ok(crate::node::tasks::PassOutcome {
                    counters,
                    last_error: None,
                    findings,
                })
            }
        },
    )
    .await;
}
