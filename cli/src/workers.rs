//! Background workers of a running site and their visible status (admin `/v1/workers`,
//! `cairn workers`, and `/metrics`). Today: lifecycle, which applies buckets' lifecycle rules.

use std::sync::Arc;
use std::time::Duration;

use cairn_client::{Client, LifecycleReport};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

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
    /// End of the last completed pass (unix ms).
    pub last_finished_ms: Option<u64>,
    /// Seconds between passes.
    pub interval_secs: u64,
    /// Progress of the current pass, or the outcome of the last one.
    pub progress: LifecycleReport,
    /// The last error of a pass or of an action in it.
    pub last_error: Option<String>,
}

/// The workers of this process.
#[derive(Default)]
pub struct Workers {
    lifecycle: Mutex<WorkerStatus>,
}

impl Workers {
    /// Every worker's status.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        vec![self.lifecycle.lock().clone()]
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
        out
    }
}

/// Runs lifecycle passes every `interval` until `stop` turns true. The first pass starts
/// shortly after start-up.
pub async fn lifecycle_loop(
    client: Client,
    workers: Arc<Workers>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
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
        let result = client.run_lifecycle(started, &progress).await;
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
