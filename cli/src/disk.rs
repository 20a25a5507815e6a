//! The disk worker: watches the free space of a node's data dirs (statvfs), sets the node's
//! [`SpaceGate`] (new writes are refused while a dir is near full, removals never are), keeps a
//! reserve file in each dir that it gives back to the file system when a write runs out of
//! space (so deletes and GC have room to run and RocksDB room to recover), and reports the state
//! to `/metrics`, `/v1/disk` and `cairn cluster status`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::metrics::MetricsSource;
use cairn_core::{SpaceGate, SpaceState, SpaceThresholds};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::workers::Workers;

/// Name of the reserve file kept in each data dir.
pub const RESERVE_FILE: &str = "space.reserve";

/// The second reserve file of a data dir, kept for the next start: a start on a full disk
/// releases it, because opening a store after a crash writes (its manifest, its options, a new
/// log, and the flush of what it replayed when there is room), while [`RESERVE_FILE`] stays
/// for the deletes and GC that come after. A write that runs out of space releases it only
/// once [`RESERVE_FILE`] is gone: deletes that cannot log would keep the disk full for good.
pub const OPEN_RESERVE_FILE: &str = "open.reserve";

/// How long writes go on running out of space after the space reserve was given back before
/// the open reserve goes too (RocksDB retries its recovery from running out of space every few
/// seconds, and refuses writes until then).
const OPEN_RESERVE_AFTER: Duration = Duration::from_secs(if cfg!(test) { 0 } else { 15 });

/// `[disk]` of a node's config and the `--disk-*` flags of `cairn serve`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    /// A data dir is near full under this percentage of its file system free (0: off).
    pub min_free_percent: f64,
    /// A data dir is near full under this many bytes free (0: off).
    pub min_free_bytes: u64,
    /// Free space, in percent of the file system, over the threshold a near-full (or full)
    /// dir needs before writes are taken again.
    pub hysteresis_percent: f64,
    /// Seconds between measurements.
    pub check_interval: u64,
    /// Bytes of the reserve file kept in each data dir and released when a write runs out of
    /// space (default: twice the chunk store's write buffer for that file system, 8–128 MiB;
    /// 0: no reserve), and of the one released by a start on a full disk (default: three
    /// write buffers).
    pub reserve_bytes: Option<u64>,
}

impl Default for DiskConfig {
    fn default() -> Self {
        let t = SpaceThresholds::default();
        DiskConfig {
            min_free_percent: t.min_free_percent,
            min_free_bytes: t.min_free_bytes,
            hysteresis_percent: t.hysteresis_percent,
            check_interval: 10,
            reserve_bytes: None,
        }
    }
}

impl DiskConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("min_free_percent", self.min_free_percent),
            ("hysteresis_percent", self.hysteresis_percent),
        ] {
            if !(0.0..=100.0).contains(&v) {
                anyhow::bail!("[disk] {name} is {v}: use a percentage from 0 to 100");
            }
        }
        if self.check_interval == 0 {
            anyhow::bail!("[disk] check_interval must be at least 1 second");
        }
        Ok(())
    }

    fn thresholds(&self) -> SpaceThresholds {
        SpaceThresholds {
            min_free_percent: self.min_free_percent,
            min_free_bytes: self.min_free_bytes,
            hysteresis_percent: self.hysteresis_percent,
        }
    }
}

/// One data dir as last measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DirSpace {
    /// What the dir holds: `chunks` or `meta`.
    pub name: String,
    /// Its path.
    pub path: String,
    /// Size of its file system.
    pub total_bytes: u64,
    /// Bytes free for this process (the reserve file not counted as free).
    pub free_bytes: u64,
    /// `ok`, `near-full` or `full`.
    pub state: String,
    /// Bytes of its reserve file.
    pub reserve_bytes: u64,
    /// Why the last measurement failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The node's disk state: `/v1/disk` and the `disk` of `cairn cluster status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DiskStatus {
    /// The worst of the dirs' states: writes are refused unless `ok`.
    pub state: String,
    /// Free bytes under which a dir counts as near full, per dir in `dirs`' order.
    pub near_full_under: Vec<u64>,
    /// Every data dir.
    pub dirs: Vec<DirSpace>,
}

/// Watches a node's data dirs and drives its [`SpaceGate`].
pub struct DiskMonitor {
    /// The gate the stores and the client consult.
    gate: Arc<SpaceGate>,
    /// The settings.
    config: DiskConfig,
    /// The data dirs, by name.
    dirs: Vec<(String, PathBuf)>,
    /// Per dir, whether it holds its file system's reserve file (the first dir of each file
    /// system does: one reserve per file system, so dirs sharing one do not count it twice).
    holds_reserve: Vec<bool>,
    /// The last measurement of each dir.
    last: Mutex<Vec<DirSpace>>,
}

impl DiskMonitor {
    /// A monitor of `dirs` (name, path), with a new gate whose hook releases the reserves. It
    /// measures once before returning, so the gate is right from the start.
    pub fn new(config: DiskConfig, dirs: Vec<(String, PathBuf)>) -> Arc<DiskMonitor> {
        use std::os::unix::fs::MetadataExt;
        let gate = Arc::new(SpaceGate::new());
        let mut devices = Vec::new();
        let holds_reserve = dirs
            .iter()
            .map(|(_, p)| match std::fs::metadata(p) {
                Ok(m) if devices.contains(&m.dev()) => false,
                Ok(m) => {
                    devices.push(m.dev());
                    true
                }
                Err(_) => true,
            })
            .collect();
        let paths: Vec<PathBuf> = dirs.iter().map(|(_, p)| p.clone()).collect();
        // When the space reserve went (or was first found gone): a store that ran out of
        // space refuses writes until its recovery, so failures go on for seconds after the
        // reserve was given back, and only a shortage that outlasts that takes the other.
        let since: Mutex<Option<std::time::Instant>> = Mutex::new(None);
        gate.set_on_no_space(Box::new(move || {
            let mut since = since.lock();
            let mut released = false;
            for p in &paths {
                released |= release_reserve(p, RESERVE_FILE);
            }
            if released {
                *since = Some(std::time::Instant::now());
                return;
            }
            let first = *since.get_or_insert_with(std::time::Instant::now);
            if first.elapsed() >= OPEN_RESERVE_AFTER {
                for p in &paths {
                    release_reserve(p, OPEN_RESERVE_FILE);
                }
            }
        }));
        let monitor = Arc::new(DiskMonitor {
            gate,
            config,
            last: Mutex::new(Vec::new()),
            dirs,
            holds_reserve,
        });
        monitor.release_to_open();
        monitor.check();
        monitor
    }

    /// The monitor of a single-node site in `data_dir`: its `chunks` and `meta` dirs (made
    /// here, so they can be measured before the stores open).
    pub fn for_single_node(
        config: DiskConfig,
        data_dir: &Path,
    ) -> anyhow::Result<Arc<DiskMonitor>> {
        let mut dirs = Vec::new();
        for name in ["chunks", "meta"] {
            let path = data_dir.join(name);
            std::fs::create_dir_all(&path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            dirs.push((name.to_string(), path));
        }
        Ok(DiskMonitor::new(config, dirs))
    }

    /// The gate to hand to the stores and the client.
    pub fn gate(&self) -> Arc<SpaceGate> {
        self.gate.clone()
    }

    /// The state as last measured.
    pub fn status(&self) -> DiskStatus {
        let dirs = self.last.lock().clone();
        let t = self.config.thresholds();
        DiskStatus {
            state: self.gate.state().as_str().to_string(),
            near_full_under: dirs
                .iter()
                .map(|d| t.near_full_under(d.total_bytes))
                .collect(),
            dirs,
        }
    }

    /// Measures every dir, moves each dir's state, sets the gate to the worst, and makes or
    /// keeps the reserve files.
    pub fn check(&self) {
        let t = self.config.thresholds();
        // A write that ran out of space since the last check counts against every dir: which
        // one it was is not known here, and each is measured again below.
        let gate_full = self.gate.state() == SpaceState::Full;
        let mut last = self.last.lock();
        let mut now = Vec::with_capacity(self.dirs.len());
        let mut worst = (SpaceState::Ok, String::new());
        for (i, (name, path)) in self.dirs.iter().enumerate() {
            let prev = last
                .get(i)
                .map_or(SpaceState::Ok, |d: &DirSpace| SpaceState::parse(&d.state));
            let prev = if gate_full { SpaceState::Full } else { prev };
            let mut dir = DirSpace {
                name: name.clone(),
                path: path.display().to_string(),
                state: prev.as_str().into(),
                ..DirSpace::default()
            };
            match measure(path) {
                Ok((free, total)) => {
                    let reserve = self.reserve_size(total);
                    let holds = self.holds_reserve.get(i).copied().unwrap_or(true);
                    let mut state = t.next(prev, free, total);
                    // Out of space earlier, so the reserve was given back (or, after a
                    // restart, it is missing): writes wait until it can be made again, or the
                    // next fill would leave deletes no room.
                    let reserve_missing = holds && reserve > 0 && !path.join(RESERVE_FILE).exists();
                    let was_out =
                        prev == SpaceState::Full || (reserve_missing && state == SpaceState::Ok);
                    if was_out && free < t.leave_at(total).saturating_add(reserve) {
                        state = SpaceState::Full;
                    }
                    if state != prev {
                        info!(dir = %name, free_bytes = free, total_bytes = total,
                            from = prev.as_str(), to = state.as_str(), "disk space state changed");
                    }
                    dir.free_bytes = free;
                    dir.total_bytes = total;
                    dir.state = state.as_str().into();
                    dir.reserve_bytes = if holds {
                        let open = self.open_reserve_size(total);
                        self.keep_reserve(&path.join(RESERVE_FILE), state, free, total, reserve)
                            + self.keep_reserve(
                                &path.join(OPEN_RESERVE_FILE),
                                state,
                                free.saturating_sub(reserve),
                                total,
                                open,
                            )
                    } else {
                        0
                    };
                    if state > worst.0 {
                        worst = (
                            state,
                            format!(
                                "{name} dir {}: {} free of {}, writes resume at {} free",
                                path.display(),
                                human(free),
                                human(total),
                                human(t.leave_at(total))
                            ),
                        );
                    }
                }
                Err(e) => dir.error = Some(e),
            }
            now.push(dir);
        }
        *last = now;
        self.gate.set(worst.0, worst.1);
    }

    /// Before the stores open: a file system with less room left than the reserves' worth
    /// (filled to the end before a crash, by writes or by the stores' own flushes and
    /// compactions) gives its open reserve back, since opening a store after a crash writes
    /// and would fail for want of a few kilobytes; the space reserve stays for the deletes and
    /// GC that free space afterwards, unless the open reserve was missing too. Writes then wait
    /// until the reserves can be made again.
    fn release_to_open(&self) {
        for (i, (_, path)) in self.dirs.iter().enumerate() {
            if !self.holds_reserve.get(i).copied().unwrap_or(true) {
                continue;
            }
            let Ok((free, total)) = measure(path) else {
                continue;
            };
            let open = self.open_reserve_size(total);
            if free >= self.reserve_size(total) + open {
                continue;
            }
            let released = std::fs::metadata(path.join(OPEN_RESERVE_FILE)).map_or(0, |m| m.len());
            let mut files = vec![OPEN_RESERVE_FILE];
            if free.saturating_add(released) < open {
                files.push(RESERVE_FILE);
            }
            for file in files {
                if std::fs::remove_file(path.join(file)).is_ok() {
                    warn!(dir = %path.display(), free_bytes = free, file,
                        "the disk is nearly full at start: released a space reserve so the \
                         stores can open; writes resume once deletes and garbage collection \
                         free enough space");
                }
            }
        }
    }

    /// Room to open the stores of one file system: each writes its manifest, its options and
    /// a new log, and flushes what it replayed when that leaves a write buffer free;
    /// `reserve_bytes`, when set, sizes both reserves (0: none).
    fn open_reserve_size(&self, total: u64) -> u64 {
        self.config
            .reserve_bytes
            .unwrap_or_else(|| 3 * cairn_core::space::write_buffer_for(total))
    }

    /// The reserve file's size on a file system of `total` bytes.
    fn reserve_size(&self, total: u64) -> u64 {
        self.config
            .reserve_bytes
            .unwrap_or_else(|| 2 * cairn_core::space::write_buffer_for(total))
    }

    /// Makes the reserve file `path` when its dir takes writes and has room for it over the
    /// point where it would leave the refusing state again; returns its size now.
    fn keep_reserve(
        &self,
        path: &Path,
        state: SpaceState,
        free: u64,
        total: u64,
        size: u64,
    ) -> u64 {
        let held = std::fs::metadata(path).map_or(0, |m| m.len());
        if held > 0 || size == 0 || state != SpaceState::Ok {
            return held;
        }
        if free
            < self
                .config
                .thresholds()
                .leave_at(total)
                .saturating_add(size)
        {
            return 0;
        }
        match make_reserve(path, size) {
            Ok(()) => size,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot make the space reserve file");
                let _ = std::fs::remove_file(path);
                0
            }
        }
    }
}

/// Free bytes (for an unprivileged writer; the reserve file is not free) and total bytes of
/// the file system of `dir`.
fn measure(dir: &Path) -> Result<(u64, u64), String> {
    let st = rustix::fs::statvfs(dir).map_err(|e| format!("statvfs {}: {e}", dir.display()))?;
    Ok((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

/// Allocates (not just sizes: a sparse file would reserve nothing) `size` bytes at `path`.
fn make_reserve(path: &Path, size: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let f = std::fs::File::create(&tmp)?;
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, size)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Gives the reserve file `file` of `dir` back to the file system; whether there was one.
fn release_reserve(dir: &Path, file: &str) -> bool {
    match std::fs::remove_file(dir.join(file)) {
        Ok(()) => {
            warn!(dir = %dir.display(), file,
                "a write ran out of disk space: released a space reserve so deletes and \
                 garbage collection can run");
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            warn!(dir = %dir.display(), file, error = %e, "cannot release the space reserve");
            false
        }
    }
}

/// `n` bytes in MiB or GiB, for messages.
fn human(n: u64) -> String {
    if n >= 10 << 30 {
        format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    }
}

/// A per-dir gauge: name, help, value.
type DirGauge = (&'static str, &'static str, fn(&DirSpace) -> u64);

impl MetricsSource for DiskMonitor {
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let status = self.status();
        let state = match SpaceState::parse(&status.state) {
            SpaceState::Ok => 0,
            SpaceState::NearFull => 1,
            SpaceState::Full => 2,
        };
        let _ = write!(
            out,
            "# HELP cairn_disk_state Space state of the node: 0 ok, 1 near full, 2 full (new writes are refused unless 0).\n\
             # TYPE cairn_disk_state gauge\ncairn_disk_state {state}\n"
        );
        let gauges: [DirGauge; 3] = [
            (
                "cairn_disk_free_bytes",
                "Bytes free on the file system of a data dir.",
                |d| d.free_bytes,
            ),
            (
                "cairn_disk_total_bytes",
                "Size of the file system of a data dir.",
                |d| d.total_bytes,
            ),
            (
                "cairn_disk_near_full",
                "1 when a data dir is near full or ran out of space (new writes are refused).",
                |d| u64::from(d.state != SpaceState::Ok.as_str()),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for d in &status.dirs {
                let _ = writeln!(out, "{name}{{dir=\"{}\"}} {}", d.name, value(d));
            }
        }
    }
}

/// The disk worker: a check every `config.check_interval` seconds until `stop`; `on_check`
/// gets each new status (`cairn serve` shows it as the `disk` worker).
pub async fn check_loop(
    monitor: Arc<DiskMonitor>,
    on_check: impl Fn(&DiskStatus) + Send,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(monitor.config.check_interval.max(1));
    loop {
        let m = monitor.clone();
        let _ = tokio::task::spawn_blocking(move || m.check()).await;
        on_check(&monitor.status());
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// [`check_loop`] reporting to the process's workers as `disk`.
pub(crate) async fn disk_worker(
    monitor: Arc<DiskMonitor>,
    workers: Arc<Workers>,
    stop: watch::Receiver<bool>,
) {
    let gate = monitor.gate();
    let interval = monitor.config.check_interval;
    check_loop(
        monitor,
        move |status| {
            workers.update("disk", |w| {
                w.state = status.state.clone();
                w.interval_secs = interval;
                w.passes += 1;
                w.last_error = gate.check_write().err();
            });
        },
        stop,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let c: DiskConfig = toml::from_str("").unwrap();
        assert_eq!(c, DiskConfig::default());
        let c: DiskConfig = toml::from_str("min_free_percent = 120.0").unwrap();
        assert!(c.validate().is_err());
        assert!(toml::from_str::<DiskConfig>("free = 1").is_err());
    }

    #[test]
    fn a_monitor_measures_its_dirs_and_keeps_a_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let config = DiskConfig {
            reserve_bytes: Some(1 << 20),
            min_free_percent: 0.0,
            ..DiskConfig::default()
        };
        let m = DiskMonitor::new(config, vec![("chunks".into(), dir.path().to_path_buf())]);
        let s = m.status();
        assert_eq!(s.state, "ok");
        assert!(s.dirs[0].total_bytes > 0);
        // The space reserve and the one kept for the next start.
        assert_eq!(s.dirs[0].reserve_bytes, 2 << 20);
        // A write that runs out of space releases the space reserve (not the other) and
        // refuses writes...
        m.gate().note_no_space("test");
        assert!(!dir.path().join(RESERVE_FILE).exists());
        assert!(dir.path().join(OPEN_RESERVE_FILE).exists());
        assert!(m.gate().check_write().is_err());
        // Running out again with the space reserve gone gives back the other one: deletes
        // that cannot log would keep the disk full.
        m.gate().note_no_space("test");
        assert!(!dir.path().join(OPEN_RESERVE_FILE).exists());
        // ...until a measurement sees the space (the threshold is off here).
        m.check();
        assert!(m.gate().check_write().is_ok());
        let mut text = String::new();
        m.render(&mut text);
        assert!(
            text.contains("cairn_disk_near_full{dir=\"chunks\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn reserves_larger_than_the_free_space_are_released_before_the_stores_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RESERVE_FILE), b"held").unwrap();
        let config = DiskConfig {
            reserve_bytes: Some(u64::MAX / 4),
            min_free_percent: 0.0,
            ..DiskConfig::default()
        };
        std::fs::write(dir.path().join(OPEN_RESERVE_FILE), b"held").unwrap();
        let m = DiskMonitor::new(config, vec![("chunks".into(), dir.path().to_path_buf())]);
        assert!(!dir.path().join(RESERVE_FILE).exists());
        assert!(!dir.path().join(OPEN_RESERVE_FILE).exists());
        // It cannot be made again here, so writes wait.
        assert!(m.gate().check_write().is_err());
        // With room for it, a reserve stays.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RESERVE_FILE), b"held").unwrap();
        let config = DiskConfig {
            reserve_bytes: Some(1 << 20),
            min_free_percent: 0.0,
            ..DiskConfig::default()
        };
        let _m = DiskMonitor::new(config, vec![("chunks".into(), dir.path().to_path_buf())]);
        assert!(dir.path().join(RESERVE_FILE).exists());
        // Room for the stores' open once the open reserve is given back: the space reserve
        // stays for the deletes that come after.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RESERVE_FILE), b"held").unwrap();
        std::fs::write(dir.path().join(OPEN_RESERVE_FILE), b"held").unwrap();
        let (free, _) = measure(dir.path()).unwrap();
        let config = DiskConfig {
            reserve_bytes: Some(free / 4 * 3),
            min_free_percent: 0.0,
            ..DiskConfig::default()
        };
        let _m = DiskMonitor::new(config, vec![("chunks".into(), dir.path().to_path_buf())]);
        assert!(!dir.path().join(OPEN_RESERVE_FILE).exists());
        assert!(dir.path().join(RESERVE_FILE).exists());
    }

    #[test]
    fn a_threshold_over_the_free_space_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let config = DiskConfig {
            min_free_percent: 100.0,
            reserve_bytes: Some(0),
            ..DiskConfig::default()
        };
        let m = DiskMonitor::new(config, vec![("meta".into(), dir.path().to_path_buf())]);
        assert_eq!(m.status().state, "near-full");
        let msg = m.gate().check_write().unwrap_err();
        assert!(msg.contains("meta dir"), "{msg}");
    }
}
