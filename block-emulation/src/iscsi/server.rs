//! The iSCSI server: configuration, access rules, counters, the accept loop, and what
//! connections share: the targets' logical units and the sessions (for reinstatement).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::text::TargetLimits;
use crate::device::{BlockError, Exports};
use crate::scsi::{LogicalUnit, LunIdentity, Reservations};
use crate::wire::ServerHandle;

/// How the target behaves. [`IscsiConfig::default`] suits most uses; the CLI sets the name
/// prefix from the site's name.
#[derive(Debug, Clone)]
pub struct IscsiConfig {
    /// Target names are `PREFIX:VOLUME` (see [`target_name`]).
    pub target_prefix: String,
    /// Largest data segment the target receives (declared at login; default 256 KiB).
    pub max_recv_data_segment_length: u32,
    /// Largest solicited burst the target accepts (default 1 MiB).
    pub max_burst_length: u32,
    /// Largest unsolicited data (immediate and unsolicited Data-Out) per command (default
    /// 256 KiB).
    pub first_burst_length: u32,
    /// R2Ts outstanding per command (default 8).
    pub max_outstanding_r2t: u16,
    /// Commands queued per session: the CmdSN window (default 128).
    pub queue_depth: u32,
    /// Bytes of write data and read results held at once per connection (default 256 MiB).
    pub max_buffered_bytes: usize,
    /// Largest data transfer of one command gathered (default: the logical units' MAXIMUM
    /// TRANSFER LENGTH, 32 MiB); larger writes are refused without reading their data.
    pub max_transfer: u32,
    /// Time an initiator has to finish logging in (default 30 s).
    pub login_timeout: Duration,
    /// A connection silent this long gets a NOP-In ping (default 30 s) ...
    pub nop_interval: Duration,
    /// ... and is closed if the ping is not answered within this (default 30 s).
    pub nop_timeout: Duration,
    /// How long in-flight commands may run after shutdown is asked (default 10 s).
    pub shutdown_grace: Duration,
}

impl Default for IscsiConfig {
    fn default() -> IscsiConfig {
        IscsiConfig {
            target_prefix: default_target_prefix(""),
            max_recv_data_segment_length: 256 << 10,
            max_burst_length: 1 << 20,
            first_burst_length: 256 << 10,
            max_outstanding_r2t: 8,
            queue_depth: 128,
            max_buffered_bytes: 256 << 20,
            max_transfer: crate::scsi::limits::MAX_TRANSFER_BYTES,
            login_timeout: Duration::from_secs(30),
            nop_interval: Duration::from_secs(30),
            nop_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl IscsiConfig {
    pub(crate) fn limits(&self) -> TargetLimits {
        TargetLimits {
            max_recv_data_segment_length: self.max_recv_data_segment_length,
            max_burst_length: self.max_burst_length,
            first_burst_length: self.first_burst_length.min(self.max_burst_length),
            max_outstanding_r2t: self.max_outstanding_r2t,
            initial_r2t: false,
            immediate_data: true,
        }
    }
}

/// A CHAP user name and secret (RFC 1994 with MD5, as RFC 7143 §12.1.3 uses it).
#[derive(Clone, PartialEq, Eq)]
pub struct ChapSecret {
    /// The name sent in `CHAP_N`.
    pub user: String,
    /// The shared secret (12-16 characters or more, as initiators require).
    pub secret: String,
}

impl std::fmt::Debug for ChapSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapSecret")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Who may log in to a volume's target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportAccess {
    /// The volume is not served over iSCSI at all.
    pub disabled: bool,
    /// Initiator names allowed to log in; empty: any initiator.
    pub initiators: Vec<String>,
    /// With it, initiators must answer this CHAP challenge.
    pub chap: Option<ChapSecret>,
    /// With it (and `chap`), the target proves itself to initiators that ask (mutual CHAP).
    pub mutual_chap: Option<ChapSecret>,
}

/// Most initiator names one target lists.
pub const MAX_INITIATORS: usize = 256;

impl ExportAccess {
    /// Checks the rules: initiator names are iSCSI names, CHAP secrets are 12 to 255
    /// characters (initiators refuse shorter ones), and mutual CHAP has a secret of its own.
    pub fn validate(&self) -> Result<(), String> {
        if self.initiators.len() > MAX_INITIATORS {
            return Err(format!("at most {MAX_INITIATORS} initiators per volume"));
        }
        for i in &self.initiators {
            if !super::text::valid_iscsi_name(&i.to_ascii_lowercase()) {
                return Err(format!(
                    "{i:?} is not an iSCSI initiator name (iqn.YYYY-MM.domain:name, eui.HEX16 or naa.HEX): see /etc/iscsi/initiatorname.iscsi on the initiator"
                ));
            }
        }
        let check = |what: &str, c: &ChapSecret| {
            if c.user.is_empty() || c.user.len() > 255 || c.user.chars().any(|ch| ch.is_control()) {
                return Err(format!(
                    "{what} user name must be 1-255 printable characters"
                ));
            }
            if !(12..=255).contains(&c.secret.len()) || c.secret.chars().any(|ch| ch.is_control()) {
                return Err(format!(
                    "{what} secret must be 12-255 printable characters (initiators refuse shorter ones)"
                ));
            }
            Ok(())
        };
        if let Some(c) = &self.chap {
            check("CHAP", c)?;
        }
        if let Some(m) = &self.mutual_chap {
            let Some(c) = &self.chap else {
                return Err("mutual CHAP needs CHAP for the initiator too (--chap)".into());
            };
            check("mutual CHAP", m)?;
            if m.secret == c.secret {
                return Err(
                    "the mutual CHAP secret must differ from the initiator's CHAP secret".into(),
                );
            }
        }
        Ok(())
    }

    /// Whether `initiator` may log in (names compare case-insensitively, as iSCSI names do).
    pub fn allows(&self, initiator: &str) -> bool {
        !self.disabled
            && (self.initiators.is_empty()
                || self
                    .initiators
                    .iter()
                    .any(|i| i.eq_ignore_ascii_case(initiator)))
    }
}

/// The access rules of each volume's target.
#[async_trait]
pub trait IscsiAccess: Send + Sync {
    /// The rules for `volume`'s target.
    async fn access(&self, volume: &str) -> Result<ExportAccess, BlockError>;
}

/// Every initiator may log in to every target, without CHAP.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenAccess;

#[async_trait]
impl IscsiAccess for OpenAccess {
    async fn access(&self, _volume: &str) -> Result<ExportAccess, BlockError> {
        Ok(ExportAccess::default())
    }
}

/// The target name of `volume`: `PREFIX:name`, the name lowercased and `_` made `-` (iSCSI
/// names are case-insensitive and have no `_`). Two volumes whose names differ only there
/// share a target name; logins to it are refused until one is renamed.
pub fn target_name(prefix: &str, volume: &str) -> String {
    let name: String = volume
        .chars()
        .map(|c| match c {
            '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    format!("{prefix}:{name}")
}

/// The target name prefix of a site named `site` (empty for a single-node site):
/// `iqn.2026-12.dev.cairn:SITE`, the name lowercased with characters iSCSI names cannot have
/// made `-`.
pub fn default_target_prefix(site: &str) -> String {
    let site: String = site
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-') => c,
            _ => '-',
        })
        .collect();
    let site = if site.is_empty() {
        "local".to_string()
    } else {
        site
    };
    format!("iqn.2026-12.dev.cairn:{site}")
}

/// Checks a target name prefix: an iSCSI name (`iqn.YYYY-MM.reversed.domain[:...]`) short
/// enough to take a volume name after it.
pub fn check_target_prefix(prefix: &str) -> Result<(), String> {
    if !super::text::valid_iscsi_name(prefix) || !prefix.starts_with("iqn.") {
        return Err(format!(
            "{prefix:?} is not an iSCSI qualified name: use iqn.YYYY-MM.reversed.domain[:name], lowercase, e.g. iqn.2026-12.com.example:storage"
        ));
    }
    if prefix.len() > 223 - 65 {
        return Err(format!(
            "{prefix:?} is too long: target names (prefix, ':' and a volume name of up to 64 characters) must fit in 223 bytes"
        ));
    }
    Ok(())
}

/// Counters of the target, for metrics. Every field only grows except `active_sessions`.
#[derive(Default)]
pub struct IscsiStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Sessions in the full-feature phase now.
    pub active_sessions: AtomicU64,
    /// Logins refused (unknown target, initiator not allowed, failed CHAP, bad request).
    pub login_failures: AtomicU64,
    /// SCSI commands completed (any status).
    pub commands: AtomicU64,
    /// SCSI commands that ended with CHECK CONDITION.
    pub check_conditions: AtomicU64,
    /// Bytes sent in Data-In.
    pub read_bytes: AtomicU64,
    /// Bytes received in immediate data and Data-Out.
    pub write_bytes: AtomicU64,
    /// Task management requests.
    pub task_management: AtomicU64,
    /// PDUs rejected, and connections dropped for breaking the protocol.
    pub protocol_errors: AtomicU64,
    /// Per target and LUN.
    pub(crate) units: super::metrics::Units,
}

/// A running session, for reinstatement: a new login with the same initiator port (name and
/// ISID) to the same target replaces it.
pub(crate) struct SessionEntry {
    pub(crate) tsih: u16,
    pub(crate) kill: watch::Sender<bool>,
}

/// Sessions by (initiator name, ISID, target name).
pub(crate) type Sessions = Arc<Mutex<HashMap<(String, [u8; 6], String), SessionEntry>>>;

/// What every connection shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) exports: Arc<dyn Exports>,
    pub(crate) access: Arc<dyn IscsiAccess>,
    pub(crate) config: Arc<IscsiConfig>,
    pub(crate) stats: Arc<IscsiStats>,
    pub(crate) stop: watch::Receiver<bool>,
    /// Logical units by volume, while some session uses them, and the persistent
    /// reservations of volumes no session uses.
    pub(crate) units: Arc<Mutex<OpenUnits>>,
    pub(crate) sessions: Sessions,
    pub(crate) next_tsih: Arc<Mutex<u16>>,
}

/// The logical units sessions use, by volume, and the persistent reservations of volumes no
/// session uses now (at most one of the two per volume).
#[derive(Default)]
pub(crate) struct OpenUnits {
    live: HashMap<String, Arc<LogicalUnit>>,
    parked: HashMap<String, Reservations>,
}

impl Shared {
    /// The volume served as `target`, if exactly one is.
    pub(crate) async fn volume_of(&self, target: &str) -> Result<Option<String>, BlockError> {
        let prefix = &self.config.target_prefix;
        let Some(rest) = target.strip_prefix(prefix.as_str()) else {
            return Ok(None);
        };
        if !rest.starts_with(':') {
            return Ok(None);
        }
        let names = self.exports.list().await?;
        let mut found = names
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| target_name(prefix, n) == target);
        let first = found.next();
        if let (Some(first), Some(second)) = (&first, found.next()) {
            warn!(%target, %first, %second, "two volumes have the same iSCSI target name; rename one to serve either");
            return Ok(None);
        }
        Ok(first)
    }

    /// The logical unit of `volume`, opening the volume if no session has it. A session
    /// that got one hands it back with [`Shared::release_unit`].
    pub(crate) async fn unit(&self, volume: &str) -> Result<Arc<LogicalUnit>, BlockError> {
        if let Some(lu) = self.lock_units().live.get(volume) {
            return Ok(lu.clone());
        }
        let device = self.exports.open(volume).await?;
        let target = target_name(&self.config.target_prefix, volume);
        let hash = blake3::hash(target.as_bytes());
        let h = hash.as_bytes();
        let mut id = [0u8; 8];
        id.copy_from_slice(&h[..8]);
        // NAA 3: a locally assigned 60-bit identifier.
        let naa = (u64::from_be_bytes(id) & 0x0fff_ffff_ffff_ffff) | (3 << 60);
        let identity = LunIdentity {
            volume: volume.to_string(),
            target_name: target,
            serial: hex16(&h[8..16]),
            naa,
        };
        let mut units = self.lock_units();
        // Another login may have opened it meanwhile: one unit per volume.
        if let Some(lu) = units.live.get(volume) {
            return Ok(lu.clone());
        }
        let lu = Arc::new(LogicalUnit::new(device, identity));
        if let Some(pr) = units.parked.remove(volume) {
            lu.restore_reservations(pr);
        }
        units.live.insert(volume.to_string(), lu.clone());
        Ok(lu)
    }

    /// A session is done with `unit`: when no other session uses it, the volume is closed
    /// and its persistent reservations are kept for the next session (SPC-5 5.14.7:
    /// registrations survive the loss of every I_T nexus; only a power loss, here a restart
    /// of the target, clears them).
    pub(crate) fn release_unit(&self, unit: Arc<LogicalUnit>) {
        let volume = unit.identity().volume.clone();
        drop(unit);
        let mut units = self.lock_units();
        let Some(lu) = units.live.get(&volume) else {
            return;
        };
        if Arc::strong_count(lu) > 1 {
            return;
        }
        let lu = units.live.remove(&volume).expect("present");
        if let Some(pr) = lu.take_reservations() {
            units.parked.insert(volume, pr);
        }
    }

    fn lock_units(&self) -> std::sync::MutexGuard<'_, OpenUnits> {
        self.units.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh, nonzero session handle.
    pub(crate) fn new_tsih(&self) -> u16 {
        let mut t = self.next_tsih.lock().unwrap_or_else(|e| e.into_inner());
        *t = t.wrapping_add(1).max(1);
        *t
    }
}

fn hex16(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An iSCSI target bound to a TCP address. Run it with [`IscsiServer::serve`] or
/// [`IscsiServer::spawn`].
pub struct IscsiServer {
    listener: TcpListener,
    exports: Arc<dyn Exports>,
    access: Arc<dyn IscsiAccess>,
    config: IscsiConfig,
    stats: Arc<IscsiStats>,
}

impl IscsiServer {
    /// Binds `addr` (port 0 picks a free port) to serve `exports` as targets, with `access`
    /// deciding who may log in to each.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        exports: Arc<dyn Exports>,
        access: Arc<dyn IscsiAccess>,
        mut config: IscsiConfig,
    ) -> io::Result<IscsiServer> {
        config.queue_depth = config.queue_depth.clamp(1, 1 << 16);
        config.max_recv_data_segment_length = config
            .max_recv_data_segment_length
            .clamp(512, (1 << 24) - 1);
        config.max_burst_length = config.max_burst_length.clamp(512, (1 << 24) - 1);
        config.first_burst_length = config
            .first_burst_length
            .clamp(512, config.max_burst_length);
        config.max_outstanding_r2t = config.max_outstanding_r2t.max(1);
        config.max_transfer = config.max_transfer.max(1 << 20);
        config.max_buffered_bytes = config.max_buffered_bytes.max(config.max_transfer as usize);
        let listener = TcpListener::bind(addr).await?;
        Ok(IscsiServer {
            listener,
            exports,
            access,
            config,
            stats: Arc::new(IscsiStats::default()),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The server's counters, readable while it runs.
    pub fn stats(&self) -> Arc<IscsiStats> {
        self.stats.clone()
    }

    /// Serves initiators until `shutdown` completes; then stops accepting, lets in-flight
    /// commands finish (up to [`IscsiConfig::shutdown_grace`]) and closes the sessions, each
    /// flushing its volume if it wrote.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let IscsiServer {
            listener,
            exports,
            access,
            config,
            stats,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Shared {
            exports,
            access,
            config: Arc::new(config),
            stats,
            stop: stop_rx,
            units: Arc::default(),
            sessions: Arc::default(),
            next_tsih: Arc::default(),
        };
        let grace = shared.config.shutdown_grace;
        let conns = shared.clone();
        crate::wire::serve_connections(
            listener,
            shutdown,
            stop_tx,
            grace,
            "iscsi target",
            |stream, peer| {
                conns.stats.connections.fetch_add(1, Ordering::Relaxed);
                connection(stream, peer, conns.clone())
            },
        )
        .await;
        info!("iscsi target stopped");
        Ok(())
    }

    /// Runs [`IscsiServer::serve`] on a task; the handle stops it.
    pub fn spawn(self) -> io::Result<IscsiHandle> {
        let addr = self.local_addr()?;
        let stats = self.stats();
        Ok(ServerHandle::spawn(addr, stats, |stop| self.serve(stop)))
    }
}

/// An iSCSI target running on a task (see [`IscsiServer::spawn`]).
pub type IscsiHandle = ServerHandle<IscsiStats>;

/// One connection, from login to close.
async fn connection(mut stream: TcpStream, peer: SocketAddr, shared: Shared) {
    let mut stop = shared.stop.clone();
    let timeout = shared.config.login_timeout;
    let local = stream.local_addr().ok();
    let logged_in = tokio::select! {
        r = tokio::time::timeout(timeout, super::login::login(&mut stream, local, &shared)) => r,
        _ = stop.wait_for(|s| *s) => {
            debug!(%peer, "iscsi target stopping: closing a connection still logging in");
            return;
        }
    };
    let session = match logged_in {
        Err(_) => {
            shared.stats.login_failures.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, timeout_secs = timeout.as_secs(), "iscsi login not finished in time; closing the connection");
            return;
        }
        Ok(Err(e)) => {
            shared.stats.login_failures.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, error = %e, "iscsi login failed; closing the connection");
            return;
        }
        Ok(Ok(None)) => {
            debug!(%peer, "iscsi initiator closed the connection during login");
            return;
        }
        Ok(Ok(Some(session))) => session,
    };
    info!(
        %peer,
        initiator = %session.initiator,
        target = session.target.as_deref().unwrap_or("(discovery)"),
        "iscsi login"
    );
    shared.stats.active_sessions.fetch_add(1, Ordering::Relaxed);
    super::session::serve(stream, peer, session, shared.clone()).await;
    shared.stats.active_sessions.fetch_sub(1, Ordering::Relaxed);
    debug!(%peer, "iscsi connection closed");
}
