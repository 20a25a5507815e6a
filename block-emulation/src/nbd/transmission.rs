//! The transmission phase: one task reads and validates requests, each command runs as its
//! own task (bounded per connection in number and in buffered bytes), and one writer task
//! sends the replies whole, in the order they complete.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use super::handshake::Session;
use super::proto::{self, Command, ExportState, Request};
use super::server::{OpStats, Shared};
use crate::device::{BlockDevice, BlockError};
use crate::wire::write_pieces;

/// One reply, written whole; its permits are released once it is on the socket.
struct Reply {
    head: Vec<u8>,
    /// The data after `head`, in pieces sent as they are (vectored writes, no joining).
    data: Vec<Bytes>,
    _permits: Vec<OwnedSemaphorePermit>,
}

/// What a command task needs.
#[derive(Clone)]
struct Ctx {
    device: Arc<dyn BlockDevice>,
    structured: bool,
    shared: Shared,
    replies: mpsc::Sender<Reply>,
}

/// Serves requests on `stream` until the client disconnects, breaks the protocol or the
/// server stops; then waits for in-flight commands, sends their replies and, if the
/// connection wrote anything, flushes the device.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    session: Session,
    shared: Shared,
) {
    let config = shared.config.clone();
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 << 10, rd);
    let (tx, rx) = mpsc::channel(config.max_in_flight);
    let writer = tokio::spawn(write_replies(wr, rx));
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
    let budget = Arc::new(Semaphore::new(config.max_buffered_bytes));
    let state = ExportState {
        size: session.device.size(),
        min_block: if session.block_sizes_agreed {
            let d = &session.device;
            proto::BlockSizes::for_device(d.min_io_size(), d.block_size()).min
        } else {
            1
        },
        read_only: session.device.read_only(),
        structured: session.structured,
        base_allocation: session.base_allocation,
    };
    let ctx = Ctx {
        device: session.device.clone(),
        structured: session.structured,
        shared: shared.clone(),
        replies: tx,
    };
    let wrote = AtomicBool::new(false);
    let mut tasks = JoinSet::new();
    let mut stop = shared.stop.clone();

    loop {
        let mut head = [0u8; proto::REQUEST_LEN];
        let read = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => {
                debug!(%peer, "nbd server stopping: no more requests read on this connection");
                break;
            }
            () = ctx.replies.closed() => break,
            r = rd.read_exact(&mut head) => r,
        };
        if let Err(e) = read {
            if e.kind() != std::io::ErrorKind::UnexpectedEof {
                debug!(%peer, error = %e, "reading an nbd request failed");
            }
            break;
        }
        while let Some(done) = tasks.try_join_next() {
            log_task(done);
        }
        let req = match proto::parse_request(&head) {
            Ok(req) => req,
            Err(e) => {
                warn!(%peer, error = %e, "malformed nbd request; closing the connection");
                break;
            }
        };
        let cmd = match proto::check_request(&req, &state) {
            Err(e) => {
                warn!(%peer, error = %e, "nbd request cannot be answered; closing the connection");
                break;
            }
            Ok(Err(rejection)) => {
                shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                if let Some(stats) = op_stats(&shared, req.kind) {
                    stats.failed();
                }
                debug!(%peer, cookie = req.cookie, errno = rejection.errno, reason = %rejection.message, "nbd request refused");
                if rejection.discard > 0 {
                    let mut rest = (&mut rd).take(u64::from(rejection.discard));
                    match tokio::io::copy(&mut rest, &mut tokio::io::sink()).await {
                        Ok(n) if n == u64::from(rejection.discard) => {}
                        _ => break,
                    }
                }
                let reply = error_reply(
                    ctx.structured,
                    req.cookie,
                    rejection.errno,
                    &rejection.message,
                );
                if ctx.replies.send(reply).await.is_err() {
                    break;
                }
                continue;
            }
            Ok(Ok(cmd)) => cmd,
        };
        if cmd == Command::Disc {
            debug!(%peer, "nbd client disconnects");
            break;
        }
        let Ok(slot) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let mut permits = vec![slot];
        let buffered = match cmd {
            Command::Read { len, .. } | Command::Write { len, .. } => len,
            _ => 0,
        };
        if buffered > 0 {
            let Ok(bytes) = budget.clone().acquire_many_owned(buffered).await else {
                break;
            };
            permits.push(bytes);
        }
        let mut payload = Bytes::new();
        if let Command::Write { len, .. } = cmd {
            let mut buf = vec![0u8; len as usize];
            if let Err(e) = rd.read_exact(&mut buf).await {
                debug!(%peer, error = %e, "the nbd client left in the middle of a write payload");
                break;
            }
            payload = Bytes::from(buf);
        }
        if matches!(
            cmd,
            Command::Write { .. } | Command::Trim { .. } | Command::WriteZeroes { .. }
        ) && !wrote.swap(true, Ordering::Relaxed)
        {
            lock(&shared).insert(id, session.device.clone());
        }
        tasks.spawn(run(ctx.clone(), req, cmd, payload, permits));
    }

    drop(rd);
    while let Some(done) = tasks.join_next().await {
        log_task(done);
    }
    drop(ctx);
    match writer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(%peer, error = %e, "sending nbd replies failed"),
        Err(e) => error!(%peer, error = %e, "the nbd reply writer failed"),
    }
    if wrote.load(Ordering::Relaxed) {
        if let Err(e) = session.device.flush().await {
            error!(%peer, export = %session.name, error = %e, "flushing the device after its connection closed failed");
            return;
        }
        lock(&shared).remove(&id);
    }
}

fn lock(
    shared: &Shared,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<dyn BlockDevice>>> {
    shared.dirty.lock().unwrap_or_else(|e| e.into_inner())
}

fn log_task(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        error!(error = %e, "an nbd command task failed");
    }
}

/// Runs one command on the device and queues its reply.
async fn run(
    ctx: Ctx,
    req: Request,
    cmd: Command,
    payload: Bytes,
    permits: Vec<OwnedSemaphorePermit>,
) {
    let cookie = req.cookie;
    let dev = &ctx.device;
    let stats = op_stats(&ctx.shared, req.kind);
    let result: Result<(Vec<u8>, Vec<Bytes>), BlockError> = match cmd {
        Command::Read { offset, len } => read(dev.as_ref(), offset, len).await.map(|data| {
            let head = if ctx.structured {
                proto::offset_data_header(cookie, offset, len)
            } else {
                proto::simple_reply(cookie, 0).to_vec()
            };
            (head, data)
        }),
        Command::Write { offset, len, fua } => {
            if len == 0 {
                Ok(())
            } else {
                dev.write(offset, payload, fua).await
            }
        }
        .map(|()| done(ctx.structured, cookie)),
        Command::Flush => dev.flush().await.map(|()| done(ctx.structured, cookie)),
        Command::Trim { offset, len, fua } => {
            if len == 0 {
                Ok(())
            } else {
                dev.trim(offset, u64::from(len), fua).await
            }
        }
        .map(|()| done(ctx.structured, cookie)),
        Command::WriteZeroes { offset, len, fua } => {
            if len == 0 {
                Ok(())
            } else {
                dev.write_zeroes(offset, u64::from(len), fua).await
            }
        }
        .map(|()| done(ctx.structured, cookie)),
        Command::BlockStatus {
            offset,
            len,
            req_one,
        } => dev.allocation(offset, u64::from(len)).await.map(|map| {
            (
                proto::block_status_chunk(cookie, &map, len, req_one),
                Vec::new(),
            )
        }),
        Command::Disc => return,
    };
    let (head, data) = match result {
        Ok(reply) => {
            if let Some(stats) = stats {
                let bytes = match cmd {
                    Command::Read { len, .. }
                    | Command::Write { len, .. }
                    | Command::Trim { len, .. }
                    | Command::WriteZeroes { len, .. }
                    | Command::BlockStatus { len, .. } => u64::from(len),
                    _ => 0,
                };
                stats.ok(bytes);
            }
            reply
        }
        Err(e) => {
            if let Some(stats) = stats {
                stats.failed();
            }
            debug!(cookie, error = %e, "nbd command failed on the device");
            let r = error_reply(ctx.structured, cookie, proto::errno_for(&e), &e.to_string());
            (r.head, r.data)
        }
    };
    // A send error means the connection is gone; there is no one left to tell.
    let _ = ctx
        .replies
        .send(Reply {
            head,
            data,
            _permits: permits,
        })
        .await;
}

/// A read that returned exactly `len` bytes (a simple reply cannot say otherwise).
async fn read(dev: &dyn BlockDevice, offset: u64, len: u32) -> Result<Vec<Bytes>, BlockError> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let data = dev.read_pieces(offset, len).await?;
    let got: usize = data.iter().map(Bytes::len).sum();
    if got != len as usize {
        return Err(BlockError::Io(format!(
            "the device returned {got} bytes for a {len}-byte read"
        )));
    }
    Ok(data)
}

/// The success reply of a command without data.
fn done(structured: bool, cookie: u64) -> (Vec<u8>, Vec<Bytes>) {
    let head = if structured {
        proto::chunk_header(proto::REPLY_FLAG_DONE, proto::REPLY_TYPE_NONE, cookie, 0).to_vec()
    } else {
        proto::simple_reply(cookie, 0).to_vec()
    };
    (head, Vec::new())
}

fn error_reply(structured: bool, cookie: u64, errno: u32, message: &str) -> Reply {
    let head = if structured {
        proto::error_chunk(cookie, errno, message)
    } else {
        proto::simple_reply(cookie, errno).to_vec()
    };
    Reply {
        head,
        data: Vec::new(),
        _permits: Vec::new(),
    }
}

fn op_stats(shared: &Shared, kind: u16) -> Option<&OpStats> {
    let s = &shared.stats;
    Some(match kind {
        proto::CMD_READ => &s.read,
        proto::CMD_WRITE => &s.write,
        proto::CMD_FLUSH => &s.flush,
        proto::CMD_TRIM => &s.trim,
        proto::CMD_WRITE_ZEROES => &s.write_zeroes,
        proto::CMD_BLOCK_STATUS => &s.block_status,
        _ => return None,
    })
}

/// Writes replies as they come, flushing whenever none is waiting; ends when every sender is
/// gone (then closes the sending side) or the socket fails.
async fn write_replies(wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Reply>) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(64 << 10, wr);
    while let Some(reply) = rx.recv().await {
        write_pieces(&mut w, &[&reply.head], &reply.data, &[]).await?;
        drop(reply);
        if rx.is_empty() {
            w.flush().await?;
        }
    }
    w.flush().await?;
    w.shutdown().await
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::AsyncWrite;

    use super::*;

    /// A socket that takes at most 7 bytes per write, vectored or not.
    struct Trickle(Vec<u8>);

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(7 - n);
                self.0.extend_from_slice(&b[..take]);
                n += take;
                if n == 7 {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn pieces_are_written_whole_and_in_order_through_short_writes() {
        let pieces: Vec<Bytes> = (0..100u8)
            .map(|i| Bytes::from(vec![i; usize::from(i % 13)]))
            .collect();
        let mut want = b"head".to_vec();
        pieces.iter().for_each(|p| want.extend_from_slice(p));
        let mut w = Trickle(Vec::new());
        write_pieces(&mut w, &[b"head"], &pieces, &[])
            .await
            .unwrap();
        assert_eq!(w.0, want);
        // Through the connection's buffered writer too, large and small.
        let mut w = BufWriter::with_capacity(64, Trickle(Vec::new()));
        write_pieces(&mut w, &[b"head"], &pieces, &[])
            .await
            .unwrap();
        w.flush().await.unwrap();
        assert_eq!(w.into_inner().0, want);
    }
}
