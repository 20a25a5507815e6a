//! What the front ends (NBD, iSCSI) share: vectored writes of pieces, the accept loop with
//! its graceful stop, and the handle of a server running on a task.

use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, error, info, warn};

/// Pause after a failed accept (out of file descriptors, ...) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Writes `head`, then `pieces`, then `tail`, whole: vectored writes, so a large read's pieces
/// go to the socket without being joined (a buffered writer passes writes of its size or more
/// through).
pub(crate) async fn write_pieces<W: AsyncWrite + Unpin>(
    w: &mut W,
    head: &[&[u8]],
    pieces: &[Bytes],
    tail: &[&[u8]],
) -> std::io::Result<()> {
    let bufs: Vec<&[u8]> = head
        .iter()
        .copied()
        .chain(pieces.iter().map(|p| &p[..]))
        .chain(tail.iter().copied())
        .filter(|b| !b.is_empty())
        .collect();
    // The first buffer not wholly written, and how much of it was.
    let (mut first, mut skip) = (0, 0);
    while first < bufs.len() {
        let slices: Vec<IoSlice<'_>> = bufs[first..]
            .iter()
            .take(64)
            .enumerate()
            .map(|(i, b)| IoSlice::new(if i == 0 { &b[skip..] } else { b }))
            .collect();
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && first < bufs.len() {
            let left = bufs[first].len() - skip;
            if n >= left {
                n -= left;
                first += 1;
                skip = 0;
            } else {
                skip += n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// Accepts connections until `shutdown` completes, running `connection` on a task for each
/// (TCP_NODELAY set); then stops accepting, tells the connections through `stop`, and waits
/// up to `grace` for them before cutting them off. `what` names the server in logs.
pub(crate) async fn serve_connections<F, Fut>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    stop: watch::Sender<bool>,
    grace: Duration,
    what: &'static str,
    mut connection: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "{what} listening");
    }
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    error!(error = %e, "a {what} connection task failed");
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    warn!(error = %e, "accepting a {what} connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, error = %e, "setting TCP_NODELAY failed");
        }
        connections.spawn(connection(stream, peer));
    }
    drop(listener);
    let _ = stop.send(true);
    info!(
        connections = connections.len(),
        "{what} stopping: no new connections, finishing in-flight commands"
    );
    let drained = tokio::time::timeout(grace, async {
        while let Some(done) = connections.join_next().await {
            if let Err(e) = done {
                error!(error = %e, "a {what} connection task failed");
            }
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            grace_secs = grace.as_secs(),
            "{what} commands still running after the grace period are cut off"
        );
        connections.shutdown().await;
    }
}

/// A server running on a task (`NbdServer::spawn`, `IscsiServer::spawn`); `S` is its
/// counters. Dropping it without [`ServerHandle::shutdown`] stops the server too.
pub struct ServerHandle<S> {
    pub(crate) addr: SocketAddr,
    pub(crate) stats: Arc<S>,
    pub(crate) stop: Option<oneshot::Sender<()>>,
    pub(crate) task: JoinHandle<std::io::Result<()>>,
}

impl<S> ServerHandle<S> {
    /// Runs `serve` (given the future that ends it) on a task.
    pub(crate) fn spawn<Fut>(
        addr: SocketAddr,
        stats: Arc<S>,
        serve: impl FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    ) -> ServerHandle<S>
    where
        Fut: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(Box::pin(async move {
            let _ = rx.await;
        })));
        ServerHandle {
            addr,
            stats,
            stop: Some(tx),
            task,
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's counters.
    pub fn stats(&self) -> &Arc<S> {
        &self.stats
    }

    /// Stops the server gracefully and waits until it has.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(format!(
                "the server task failed: {e}"
            ))),
        }
    }
}
