//! The loop every maintenance worker of a node runs: a pass every interval, its counters and
//! last error in the node's worker status (so `cairn cluster status` and /metrics show them).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::workers::Workers;

/// What one pass reports: its counters, and the last error it met while going on.
pub struct PassOutcome {
    /// Counters of the pass.
    pub counters: BTreeMap<String, u64>,
    /// The last error the pass met (it went on).
    pub last_error: Option<String>,
    /// What the pass found for an operator to act on (replaces the previous pass's).
    pub findings: Vec<String>,
}

/// What starts a worker's next pass before its timer (a map change, a node back), and why.
#[derive(Default)]
pub struct Kick {
    notify: Notify,
    why: parking_lot::Mutex<Option<&'static str>>,
}

impl Kick {
    /// Starts the next pass now, or right after the one running.
    pub fn kick(&self, why: &'static str) {
        *self.why.lock() = Some(why);
        self.notify.notify_one();
    }
}

/// Runs `pass` every `interval` (the first after `first`) until `stop`, recording it as worker
/// `name`; a notification on `kick` (a map change, a node back) starts the next pass at once,
/// or right after the one running.
#[allow(clippy::too_many_arguments)]
pub async fn maintenance_loop<F, Fut>(
    name: &'static str,
    workers: Arc<Workers>,
    first: Duration,
    interval: Duration,
    kick: Arc<Kick>,
    mut stop: watch::Receiver<bool>,
    pass: F,
) where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<PassOutcome, String>> + Send,
{
    workers.update(name, |s| s.interval_secs = interval.as_secs());
    let mut next = tokio::time::Instant::now() + first.min(interval);
    loop {
        let trigger = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep_until(next) => "timer",
            () = kick.notify.notified() => {
                let why = kick.why.lock().take().unwrap_or("kick");
                info!(worker = name, why, "pass started before its timer");
                why
            }
        };
        let started = cairn_client::now_ms();
        workers.update(name, |s| {
            s.state = "running".into();
            s.last_started_ms = Some(started);
            s.last_trigger = Some(trigger.to_string());
            *s.triggers.entry(trigger.to_string()).or_default() += 1;
        });
        let result = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = pass() => r,
        };
        workers.update(name, |s| {
            s.state = "idle".into();
            match result {
                Ok(outcome) => {
                    s.passes += 1;
                    s.last_finished_ms = Some(cairn_client::now_ms());
                    s.counters = outcome.counters;
                    s.findings = outcome.findings;
                    if outcome.last_error.is_some() {
                        s.last_error = outcome.last_error;
                    }
                }
                Err(e) => {
                    warn!(worker = name, error = %e, "pass failed");
                    s.last_error = Some(e);
                }
            }
        });
        next = tokio::time::Instant::now() + interval;
    }
}

/// The `volume-health` worker: every `interval`, each volume's health and used bytes (what
/// `/metrics` shows as `cairn_volume_health` and `cairn_volume_used_bytes`), the volumes that
/// are not healthy as its findings.
pub async fn volume_monitor_loop(
    monitor: Arc<cairn_block::volume::VolumeMonitor>,
    workers: Arc<Workers>,
    interval: Duration,
    stop: watch::Receiver<bool>,
) {
    maintenance_loop(
        "volume-health",
        workers,
        Duration::from_secs(5),
        interval,
        Arc::new(Kick::default()),
        stop,
        move || {
            let monitor = monitor.clone();
            async move {
                let r = monitor.pass().await.map_err(|e| e.to_string())?;
                let mut counters: BTreeMap<String, u64> =
                    BTreeMap::from([("volumes".to_string(), r.volumes)]);
                for (state, n) in &r.by_state {
                    counters.insert(state.name().to_string(), *n);
                }
                Ok(PassOutcome {
                    counters,
                    last_error: None,
                    findings: r.unhealthy,
                })
            }
        },
    )
    .await;
}
