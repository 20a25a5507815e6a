//! The NFS server: one TCP port serving NFSv3, MOUNT v3 and a port mapper (version 2, for
//! clients that ask where NFS and MOUNT are), ONC RPC with record marking. Calls of one
//! connection run concurrently (up to [`IN_FLIGHT`]); one writer task sends whole replies.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use parking_lot::Mutex;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, info, warn};

use crate::export::ExportsFile;
use crate::fs::{Cred, Fs};
use crate::mount::{self, Dirpath, ExportList, ExportNode, MntRes, MountList, Mountstat3};
use crate::nfs3::Nfsstat3;
use crate::ops::{self, Caller};
use crate::portmap::{self, Mapping, MappingList};
use crate::rpc::{self, Auth, Call};
use crate::xdr::{self, Pack, Writer};

/// Calls one connection runs at once.
pub const IN_FLIGHT: usize = 32;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct NfsConfig {
    /// Most bytes buffered by writes over all files before writers wait for commits.
    pub max_dirty_bytes: u64,
    /// A file's buffered writes are committed once they are this old without a COMMIT.
    pub commit_after: Duration,
    /// Where the exports file is read from (again within a second of a change), if anywhere.
    pub exports_file: Option<PathBuf>,
    /// Exports served whatever the file says (a node's config); the file's exports of other
    /// buckets are served beside them.
    pub fixed_exports: Vec<crate::ExportConfig>,
}

impl Default for NfsConfig {
    fn default() -> Self {
        NfsConfig {
            max_dirty_bytes: 256 << 20,
            commit_after: Duration::from_secs(5),
            exports_file: None,
            fixed_exports: Vec::new(),
        }
    }
}

/// Per procedure and status: calls, bytes and total latency.
#[derive(Default)]
pub struct NfsMetrics {
    by_op: Mutex<BTreeMap<(&'static str, &'static str), OpStats>>,
    /// Connections accepted.
    pub connections: AtomicU64,
}

#[derive(Clone, Copy, Default)]
struct OpStats {
    calls: u64,
    bytes: u64,
    seconds: f64,
}

fn status_name(s: Nfsstat3) -> &'static str {
    match s {
        Nfsstat3::Ok => "OK",
        Nfsstat3::Perm => "PERM",
        Nfsstat3::Noent => "NOENT",
        Nfsstat3::Io => "IO",
        Nfsstat3::Acces => "ACCES",
        Nfsstat3::Exist => "EXIST",
        Nfsstat3::Xdev => "XDEV",
        Nfsstat3::Notdir => "NOTDIR",
        Nfsstat3::Isdir => "ISDIR",
        Nfsstat3::Inval => "INVAL",
        Nfsstat3::Fbig => "FBIG",
        Nfsstat3::Nospc => "NOSPC",
        Nfsstat3::Rofs => "ROFS",
        Nfsstat3::Nametoolong => "NAMETOOLONG",
        Nfsstat3::Notempty => "NOTEMPTY",
        Nfsstat3::Stale => "STALE",
        Nfsstat3::Badhandle => "BADHANDLE",
        Nfsstat3::NotSync => "NOT_SYNC",
        Nfsstat3::BadCookie => "BAD_COOKIE",
        Nfsstat3::Notsupp => "NOTSUPP",
        Nfsstat3::Toosmall => "TOOSMALL",
        Nfsstat3::Serverfault => "SERVERFAULT",
        Nfsstat3::Jukebox => "JUKEBOX",
        _ => "OTHER",
    }
}

impl NfsMetrics {
    fn record(&self, op: &'static str, status: &'static str, bytes: u64, took: Duration) {
        let mut m = self.by_op.lock();
        let s = m.entry((op, status)).or_default();
        s.calls += 1;
        s.bytes += bytes;
        s.seconds += took.as_secs_f64();
    }

    /// Prometheus text: `cairn_nfs_ops_total{op,status}`, `cairn_nfs_bytes_total{op}`,
    /// `cairn_nfs_op_seconds_total{op}`, connections.
    pub fn render(&self, fs: &Fs, out: &mut String) {
        use std::fmt::Write;
        let m = self.by_op.lock().clone();
        let _ = writeln!(out, "# TYPE cairn_nfs_ops_total counter");
        for ((op, status), s) in &m {
            let _ = writeln!(
                out,
                "cairn_nfs_ops_total{{op=\"{op}\",status=\"{status}\"}} {}",
                s.calls
            );
        }
        let mut per_op: BTreeMap<&str, OpStats> = BTreeMap::new();
        for ((op, _), s) in &m {
            let e = per_op.entry(op).or_default();
            e.bytes += s.bytes;
            e.seconds += s.seconds;
        }
        let _ = writeln!(out, "# TYPE cairn_nfs_bytes_total counter");
        for (op, s) in &per_op {
            if *op == "READ" || *op == "WRITE" {
                let _ = writeln!(out, "cairn_nfs_bytes_total{{op=\"{op}\"}} {}", s.bytes);
            }
        }
        let _ = writeln!(out, "# TYPE cairn_nfs_op_seconds_total counter");
        for (op, s) in &per_op {
            let _ = writeln!(
                out,
                "cairn_nfs_op_seconds_total{{op=\"{op}\"}} {:.6}",
                s.seconds
            );
        }
        let _ = writeln!(out, "# TYPE cairn_nfs_connections_total counter");
        let _ = writeln!(
            out,
            "cairn_nfs_connections_total {}",
            self.connections.load(Ordering::Relaxed)
        );
        let c = &fs.counters;
        let _ = writeln!(out, "# TYPE cairn_nfs_commits_total counter");
        let _ = writeln!(
            out,
            "cairn_nfs_commits_total {}",
            c.commits.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE cairn_nfs_commit_errors_total counter");
        let _ = writeln!(
            out,
            "cairn_nfs_commit_errors_total {}",
            c.commit_errors.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE cairn_nfs_dirty_bytes gauge");
        let _ = writeln!(
            out,
            "cairn_nfs_dirty_bytes {}",
            c.dirty_bytes.load(Ordering::Relaxed)
        );
    }
}

struct MetricsOf {
    metrics: Arc<NfsMetrics>,
    fs: Arc<Fs>,
}

impl cairn_core::metrics::MetricsSource for MetricsOf {
    fn render(&self, out: &mut String) {
        self.metrics.render(&self.fs, out);
    }
}

/// A bound NFS server.
pub struct NfsServer {
    listener: TcpListener,
    fs: Arc<Fs>,
    config: NfsConfig,
    /// Its metrics.
    pub metrics: Arc<NfsMetrics>,
}

impl NfsServer {
    /// Binds `addr` for `fs`.
    pub async fn bind(
        addr: SocketAddr,
        fs: Arc<Fs>,
        config: NfsConfig,
    ) -> std::io::Result<NfsServer> {
        let listener = TcpListener::bind(addr).await?;
        Ok(NfsServer {
            listener,
            fs,
            config,
            metrics: Arc::new(NfsMetrics::default()),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The file systems it serves.
    pub fn fs(&self) -> Arc<Fs> {
        self.fs.clone()
    }

    /// Its metrics, for `/metrics`.
    pub fn metrics_source(&self) -> Arc<dyn cairn_core::metrics::MetricsSource> {
        Arc::new(MetricsOf {
            metrics: self.metrics.clone(),
            fs: self.fs.clone(),
        })
    }

    /// Serves until `shutdown` resolves, then commits every buffered write.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let port = self.listener.local_addr().map_or(0, |a| a.port());
        let conns = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let fs = self.fs.clone();
        // Every task holding the file systems (and so the stores) ends before this returns,
        // or is aborted when this future is dropped (a JoinSet aborts its tasks then), so a
        // node stopped in-process can be started again on the same data dir at once.
        let mut running = tokio::task::JoinSet::new();
        running.spawn(background(Arc::downgrade(&fs), self.config.clone()));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (sock, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            warn!(error = %e, "NFS: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = conns.clone().try_acquire_owned() else {
                        debug!(%peer, "NFS: too many connections, refused");
                        continue;
                    };
                    self.metrics.connections.fetch_add(1, Ordering::Relaxed);
                    let (fs, metrics) = (fs.clone(), self.metrics.clone());
                    running.spawn(async move {
                        let _permit = permit;
                        if let Err(e) = connection(sock, peer, port, fs, metrics).await {
                            debug!(%peer, error = %e, "NFS: connection ended");
                        }
                    });
                    // Reap the connections that ended.
                    while running.try_join_next().is_some() {}
                }
            }
        }
        running.shutdown().await;
        fs.commit_all().await;
    }
}

/// Commits idle buffers and reloads the exports file, while the server's file systems exist.
async fn background(fs: std::sync::Weak<Fs>, config: NfsConfig) {
    let file = config
        .exports_file
        .as_ref()
        .map(|p| ExportsFile::at(p.clone()));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(fs) = fs.upgrade() else {
            return;
        };
        if let Some(f) = &file {
            match f.load() {
                Ok(from_file) => {
                    let mut all = config.fixed_exports.clone();
                    for e in from_file {
                        if !all.iter().any(|x| x.bucket == e.bucket) {
                            all.push(e);
                        }
                    }
                    fs.set_exports(all)
                }
                Err(e) => {
                    warn!(error = %e, "NFS: the exports file is not valid; keeping the exports as they were")
                }
            }
        }
        fs.commit_idle(config.commit_after).await;
    }
}

/// Bytes of small replies gathered into one write.
const COALESCE: usize = 256 << 10;

async fn connection(
    sock: TcpStream,
    peer: SocketAddr,
    port: u16,
    fs: Arc<Fs>,
    metrics: Arc<NfsMetrics>,
) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::with_capacity(256 << 10, rd);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(IN_FLIGHT * 2);
    let writer = tokio::spawn(async move {
        // Replies ready together go out in one write (a send each woke the client once per
        // reply and cost two system calls); a large reply's body is written as it is, not
        // copied.
        let mut out: Vec<u8> = Vec::with_capacity(COALESCE);
        while let Some(mut reply) = rx.recv().await {
            out.clear();
            loop {
                out.extend_from_slice(&rpc::record_header(reply.len()));
                if reply.len() > COALESCE / 4 {
                    if wr.write_all(&out).await.is_err() || wr.write_all(&reply).await.is_err() {
                        return;
                    }
                    out.clear();
                } else {
                    out.extend_from_slice(&reply);
                }
                if out.len() >= COALESCE {
                    break;
                }
                match rx.try_recv() {
                    Ok(next) => reply = next,
                    Err(_) => break,
                }
            }
            if !out.is_empty() && wr.write_all(&out).await.is_err() {
                return;
            }
        }
    });
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut calls = tokio::task::JoinSet::new();
    let addr = peer.ip();
    loop {
        let Some(record) = rpc::read_record(&mut rd, rpc::MAX_RECORD).await? else {
            break;
        };
        let record = Bytes::from(record);
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| std::io::Error::other("closed"))?;
        let (fs, metrics, tx) = (fs.clone(), metrics.clone(), tx.clone());
        // Owned by this connection: they end with it (a server stopping aborts it).
        calls.spawn(async move {
            let _permit = permit;
            // A call that panics (a bug: no input should make one) gets SYSTEM_ERR, so the
            // client is not left waiting for a reply that never comes.
            let answered = std::panic::AssertUnwindSafe(handle(&fs, &metrics, addr, port, &record))
                .catch_unwind()
                .await;
            let reply = match answered {
                Ok(reply) => reply,
                Err(_) => {
                    tracing::error!(%addr, "NFS: a call panicked; answered SYSTEM_ERR");
                    record.get(..4).map(|x| {
                        rpc::reply_system_err(u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
                    })
                }
            };
            if let Some(reply) = reply {
                let _ = tx.send(reply.into_inner()).await;
            }
        });
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
    drop(tx);
    let _ = writer.await;
    Ok(())
}

/// The reply to one record, or nothing (not a call).
async fn handle(
    fs: &Fs,
    metrics: &NfsMetrics,
    addr: IpAddr,
    port: u16,
    record: &Bytes,
) -> Option<Writer> {
    let call = match rpc::parse_call(record) {
        Ok(c) => c,
        Err(e) => return e.reply(),
    };
    let started = Instant::now();
    let xid = call.xid;
    Some(match call.prog {
        rpc::PROG_NFS if call.vers != rpc::NFS_VERSION => {
            rpc::reply_prog_mismatch(xid, rpc::NFS_VERSION, rpc::NFS_VERSION)
        }
        rpc::PROG_NFS => {
            let caller = Caller {
                cred: cred_of(&call.auth),
                addr,
            };
            match ops::call(fs, &caller, call.proc_, record, call.args).await {
                None => rpc::reply_proc_unavail(xid),
                Some(Err(e)) => {
                    debug!(error = %e, proc = call.proc_, "NFS: arguments do not decode");
                    rpc::reply_garbage_args(xid)
                }
                Some(Ok(ans)) => {
                    let op = ops::proc_name(call.proc_);
                    metrics.record(op, status_name(ans.status), ans.bytes, started.elapsed());
                    let mut w = ans.body;
                    w.set_prefix(rpc::reply_success(xid).as_slice());
                    w
                }
            }
        }
        rpc::PROG_MOUNT if call.vers != rpc::MOUNT_VERSION => {
            rpc::reply_prog_mismatch(xid, rpc::MOUNT_VERSION, rpc::MOUNT_VERSION)
        }
        rpc::PROG_MOUNT => Box::pin(mount_call(fs, metrics, addr, &call, started)).await,
        rpc::PROG_PORTMAP if call.vers != rpc::PORTMAP_VERSION => {
            rpc::reply_prog_mismatch(xid, rpc::PORTMAP_VERSION, rpc::PORTMAP_VERSION)
        }
        rpc::PROG_PORTMAP => portmap_call(port, &call),
        _ => rpc::reply_prog_unavail(xid),
    })
}

fn cred_of(auth: &Auth) -> Cred {
    match auth {
        Auth::Unix(u) => Cred {
            uid: u.uid,
            gid: u.gid,
            gids: u.gids.clone(),
        },
        _ => Cred::nobody(),
    }
}

async fn mount_call(
    fs: &Fs,
    metrics: &NfsMetrics,
    addr: IpAddr,
    call: &Call<'_>,
    started: Instant,
) -> Writer {
    let xid = call.xid;
    let mut w = rpc::reply_success(xid);
    match call.proc_ {
        mount::PROC_NULL => {}
        mount::PROC_MNT => {
            let Ok(path) = xdr::decode::<Dirpath>(call.args) else {
                return rpc::reply_garbage_args(xid);
            };
            let res = mnt(fs, addr, &path).await;
            let status = match &res {
                MntRes::Ok { .. } => "OK",
                MntRes::Fail(_) => "FAIL",
            };
            metrics.record("MNT", status, 0, started.elapsed());
            res.pack(&mut w);
        }
        mount::PROC_DUMP => MountList(Vec::new()).pack(&mut w),
        mount::PROC_UMNT => {
            if xdr::decode::<Dirpath>(call.args).is_err() {
                return rpc::reply_garbage_args(xid);
            }
        }
        mount::PROC_UMNTALL => {}
        mount::PROC_EXPORT => {
            let list = fs
                .exports()
                .iter()
                .filter(|e| e.config.allows(addr))
                .map(|e| ExportNode {
                    dir: e.config.path().into_bytes(),
                    groups: e
                        .config
                        .clients
                        .iter()
                        .map(|c| c.clone().into_bytes())
                        .collect(),
                })
                .collect();
            ExportList(list).pack(&mut w);
        }
        _ => return rpc::reply_proc_unavail(xid),
    }
    w
}

async fn mnt(fs: &Fs, addr: IpAddr, path: &Dirpath) -> MntRes {
    let Ok(p) = std::str::from_utf8(&path.0) else {
        return MntRes::Fail(Mountstat3::Noent);
    };
    // `/BUCKET`, or a directory in it (`/BUCKET/a/b`), as NFS servers let clients mount.
    let mut parts = p.split('/').filter(|c| !c.is_empty());
    let Some(export) = parts.next().and_then(|b| fs.export_by_path(b)) else {
        info!(path = p, %addr, "NFS: MNT of a path that is not exported");
        return MntRes::Fail(Mountstat3::Noent);
    };
    if !export.config.allows(addr) {
        info!(path = p, %addr, "NFS: MNT refused: the address is not in the export's client list");
        return MntRes::Fail(Mountstat3::Acces);
    }
    let mut node = fs.root(&export).await;
    for name in parts {
        node = match node {
            Ok(dir) => fs.lookup(&dir, name.as_bytes()).await,
            e => e,
        };
    }
    match node {
        Ok(n) if !n.is_dir() => MntRes::Fail(Mountstat3::Notdir),
        Ok(n) => MntRes::Ok {
            fhandle: n.handle(),
            auth_flavors: vec![rpc::AUTH_SYS, rpc::AUTH_NONE],
        },
        Err(Nfsstat3::Noent) => {
            info!(
                path = p,
                "NFS: MNT of a path that does not exist (or a bucket that does not)"
            );
            MntRes::Fail(Mountstat3::Noent)
        }
        Err(Nfsstat3::Notdir) => MntRes::Fail(Mountstat3::Notdir),
        Err(Nfsstat3::Nametoolong) => MntRes::Fail(Mountstat3::Nametoolong),
        Err(Nfsstat3::Acces) => MntRes::Fail(Mountstat3::Acces),
        Err(_) => MntRes::Fail(Mountstat3::Io),
    }
}

fn portmap_call(port: u16, call: &Call<'_>) -> Writer {
    let xid = call.xid;
    let mut w = rpc::reply_success(xid);
    let ours = [
        (rpc::PROG_NFS, rpc::NFS_VERSION),
        (rpc::PROG_MOUNT, rpc::MOUNT_VERSION),
        (rpc::PROG_PORTMAP, rpc::PORTMAP_VERSION),
    ];
    match call.proc_ {
        portmap::PROC_NULL => {}
        portmap::PROC_GETPORT => {
            let Ok(m) = xdr::decode::<Mapping>(call.args) else {
                return rpc::reply_garbage_args(xid);
            };
            let found = m.prot == portmap::IPPROTO_TCP
                && ours.iter().any(|&(p, v)| p == m.prog && v == m.vers);
            w.u32(if found { port as u32 } else { 0 });
        }
        portmap::PROC_DUMP => MappingList(
            ours.iter()
                .map(|&(prog, vers)| Mapping {
                    prog,
                    vers,
                    prot: portmap::IPPROTO_TCP,
                    port: port as u32,
                })
                .collect(),
        )
        .pack(&mut w),
        // Nothing else registers here.
        portmap::PROC_SET | portmap::PROC_UNSET => w.bool(false),
        _ => return rpc::reply_proc_unavail(xid),
    }
    w
}
