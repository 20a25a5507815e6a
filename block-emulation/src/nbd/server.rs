//! The NBD server: configuration, counters, the accept loop and graceful shutdown. The
//! handshake is in [`super::handshake`], the command loop in [`super::transmission`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::device::{BlockDevice, Exports};
use crate::wire::ServerHandle;

/// How the NBD server behaves. [`NbdConfig::default`] suits most uses.
#[derive(Debug, Clone)]
pub struct NbdConfig {
    /// The export served to clients that ask for the empty name (`nbd://host/`). Without
    /// one, the empty name is refused like any unknown export.
    pub default_export: Option<String>,
    /// Commands run at once per connection; further requests wait to be read (default 64).
    pub max_in_flight: usize,
    /// Bytes of write payloads and read results held at once per connection (default
    /// 256 MiB; raised to at least the 32 MiB maximum request).
    pub max_buffered_bytes: usize,
    /// Largest option data accepted during the handshake; larger options are read, dropped
    /// and refused with `NBD_REP_ERR_TOO_BIG` (default 64 KiB).
    pub max_option_len: u32,
    /// Options a client may send on one connection before it is dropped (default 256).
    pub max_options: u32,
    /// Time a client has to finish the handshake (default 60 s).
    pub handshake_timeout: Duration,
    /// How long in-flight commands may run after shutdown is asked (default 10 s).
    pub shutdown_grace: Duration,
}

impl Default for NbdConfig {
    fn default() -> NbdConfig {
        NbdConfig {
            default_export: None,
            max_in_flight: 64,
            max_buffered_bytes: 256 << 20,
            max_option_len: 64 << 10,
            max_options: 256,
            handshake_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Counters of one kind of command.
#[derive(Debug, Default)]
pub struct OpStats {
    /// Commands that succeeded.
    pub ops: AtomicU64,
    /// Bytes they covered (read, written, trimmed, zeroed or mapped).
    pub bytes: AtomicU64,
    /// Commands that failed, in validation or on the device.
    pub errors: AtomicU64,
}

impl OpStats {
    pub(crate) fn ok(&self, bytes: u64) {
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the server has done, for metrics. Every field only grows except
/// `active_connections`.
#[derive(Debug, Default)]
pub struct NbdStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections open now.
    pub active_connections: AtomicU64,
    /// Connections closed because their handshake was malformed, timed out or refused.
    pub handshake_failures: AtomicU64,
    /// `NBD_CMD_READ`.
    pub read: OpStats,
    /// `NBD_CMD_WRITE`.
    pub write: OpStats,
    /// `NBD_CMD_FLUSH`.
    pub flush: OpStats,
    /// `NBD_CMD_TRIM`.
    pub trim: OpStats,
    /// `NBD_CMD_WRITE_ZEROES`.
    pub write_zeroes: OpStats,
    /// `NBD_CMD_BLOCK_STATUS`.
    pub block_status: OpStats,
    /// Requests refused before reaching a device (bad range, flags, command, ...).
    pub rejected: AtomicU64,
}

/// Devices written by open connections, flushed when they close (and at shutdown for those
/// that were cut off).
pub(crate) type Dirty = Arc<Mutex<HashMap<u64, Arc<dyn BlockDevice>>>>;

/// What every connection shares with the server.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) exports: Arc<dyn Exports>,
    pub(crate) config: Arc<NbdConfig>,
    pub(crate) stats: Arc<NbdStats>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) dirty: Dirty,
}

/// An NBD server bound to a TCP address. Run it with [`NbdServer::serve`] or
/// [`NbdServer::spawn`].
pub struct NbdServer {
    listener: TcpListener,
    exports: Arc<dyn Exports>,
    config: NbdConfig,
    stats: Arc<NbdStats>,
}

impl NbdServer {
    /// Binds `addr` (port 0 picks a free port; see [`NbdServer::local_addr`]) to serve
    /// `exports`. Fails if the address is taken or not local.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        exports: Arc<dyn Exports>,
        mut config: NbdConfig,
    ) -> io::Result<NbdServer> {
        config.max_in_flight = config.max_in_flight.max(1);
        config.max_buffered_bytes = config
            .max_buffered_bytes
            .max(crate::nbd::proto::MAX_PAYLOAD as usize);
        let listener = TcpListener::bind(addr).await?;
        Ok(NbdServer {
            listener,
            exports,
            config,
            stats: Arc::new(NbdStats::default()),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The server's counters, readable while it runs.
    pub fn stats(&self) -> Arc<NbdStats> {
        self.stats.clone()
    }

    /// Serves clients until `shutdown` completes; then stops accepting, lets in-flight
    /// commands finish (up to [`NbdConfig::shutdown_grace`]), closes the connections and
    /// flushes every device that was written, so no acknowledged write is lost.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let NbdServer {
            listener,
            exports,
            config,
            stats,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Shared {
            exports,
            config: Arc::new(config),
            stats,
            stop: stop_rx,
            dirty: Arc::new(Mutex::new(HashMap::new())),
        };
        let mut next_id = 0u64;
        let grace = shared.config.shutdown_grace;
        let conns = shared.clone();
        crate::wire::serve_connections(
            listener,
            shutdown,
            stop_tx,
            grace,
            "nbd server",
            |stream, peer| {
                next_id += 1;
                connection(stream, peer, next_id, conns.clone())
            },
        )
        .await;
        flush_dirty(&shared.dirty).await;
        info!("nbd server stopped");
        Ok(())
    }

    /// Runs [`NbdServer::serve`] on a task; the handle stops it. Dropping the handle without
    /// calling [`NbdHandle::shutdown`] stops the server too.
    pub fn spawn(self) -> io::Result<NbdHandle> {
        let addr = self.local_addr()?;
        let stats = self.stats();
        Ok(ServerHandle::spawn(addr, stats, |stop| self.serve(stop)))
    }
}

/// An NBD server running on a task (see [`NbdServer::spawn`]).
pub type NbdHandle = ServerHandle<NbdStats>;

/// Flushes and forgets every device still marked written.
pub(crate) async fn flush_dirty(dirty: &Dirty) {
    let devices: Vec<Arc<dyn BlockDevice>> = {
        let mut map = dirty.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen: Vec<Arc<dyn BlockDevice>> = Vec::new();
        for (_, dev) in map.drain() {
            if !seen.iter().any(|d| Arc::ptr_eq(d, &dev)) {
                seen.push(dev);
            }
        }
        seen
    };
    for dev in devices {
        if let Err(e) = dev.flush().await {
            error!(error = %e, "flushing a written nbd device at shutdown failed: acknowledged writes may be lost");
        }
    }
}

/// One client, from handshake to close.
async fn connection(mut stream: TcpStream, peer: SocketAddr, id: u64, shared: Shared) {
    let stats = shared.stats.clone();
    stats.connections.fetch_add(1, Ordering::Relaxed);
    stats.active_connections.fetch_add(1, Ordering::Relaxed);
    let _active = ActiveGuard(stats.clone());
    let mut stop = shared.stop.clone();
    let timeout = shared.config.handshake_timeout;
    let negotiated = tokio::select! {
        r = tokio::time::timeout(timeout, super::handshake::negotiate(&mut stream, &shared)) => r,
        _ = stop.wait_for(|s| *s) => {
            debug!(%peer, "nbd server stopping: closing a connection still in its handshake");
            return;
        }
    };
    let session = match negotiated {
        Err(_) => {
            stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, timeout_secs = timeout.as_secs(), "nbd handshake not finished in time; closing the connection");
            return;
        }
        Ok(Err(e)) => {
            stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, error = %e, "nbd handshake failed; closing the connection");
            return;
        }
        Ok(Ok(None)) => {
            debug!(%peer, "nbd client ended the handshake without choosing an export");
            return;
        }
        Ok(Ok(Some(session))) => session,
    };
    info!(%peer, export = %session.name, structured = session.structured, "nbd client connected");
    super::transmission::serve(stream, peer, id, session, shared).await;
    debug!(%peer, "nbd connection closed");
}

/// Decrements the active connection count when a connection ends, however it ends.
struct ActiveGuard(Arc<NbdStats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Ordering::Relaxed);
    }
}
