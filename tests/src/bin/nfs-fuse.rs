//! `nfs-fuse [OPTIONS] HOST:PORT /EXPORT MOUNTPOINT`: mounts an NFSv3 export on MOUNTPOINT
//! through FUSE, for tests on machines without a kernel NFS client. MOUNT and NFS are both
//! called on HOST:PORT (as Cairn serves them), over one TCP connection, with AUTH_SYS carrying
//! the uid and gid of each FUSE request. Runs in the foreground until the mount is unmounted
//! (`fusermount3 -u MOUNTPOINT`) or it gets SIGTERM or SIGINT (then it unmounts).
//!
//! Writes go as a kernel NFS client sends them: WRITE with stable = UNSTABLE, each write kept
//! with the server's write verifier until a COMMIT (on close, fsync, or when a file has much
//! uncommitted data) returns the same verifier; writes whose verifier differs (the server
//! restarted and lost them) are sent again and committed again. A broken connection is made
//! again and the call resent, for up to `--retry-secs`.
//!
//! Options: `--ttl-ms N` attribute and entry cache time (default 0: every stat asks the
//! server, so changes made through S3 show at once); `--retry-secs N` how long a call is
//! retried while the server is unreachable (default 30); `--allow-other` lets other users use
//! the mount.

#[path = "nfs_fuse/dirty.rs"]
mod dirty;
#[path = "nfs_fuse/rpc.rs"]
mod rpc;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cairn_nfs::mount::{self as mnt, Dirpath, MntRes};
use cairn_nfs::nfs3::{
    AccessArgs, AccessRes, CommitArgs, CommitRes, CreateArgs, CreateHow, CreateRes, Diropargs3,
    Entryplus3, Fattr3, FsinfoArgs, FsinfoRes, FsinfoResOk, FsstatArgs, FsstatRes, FsstatResOk,
    Ftype3, GetattrArgs, GetattrRes, LookupArgs, LookupRes, MkdirArgs, Nfs3Res, NfsFh3, Nfsstat3,
    Nfstime3, ReadArgs, ReadRes, ReaddirplusArgs, ReaddirplusRes, ReadlinkArgs, ReadlinkRes,
    RemoveArgs, RemoveRes, RenameArgs, RenameRes, RmdirArgs, Sattr3, SetTime, SetattrArgs,
    SetattrRes, StableHow, SymlinkArgs, WriteArgs, WriteRes, WriteResOk, ACCESS3_DELETE,
    ACCESS3_EXECUTE, ACCESS3_EXTEND, ACCESS3_LOOKUP, ACCESS3_MODIFY, ACCESS3_READ, MAX_DATA,
    PROC_ACCESS, PROC_COMMIT, PROC_CREATE, PROC_FSINFO, PROC_FSSTAT, PROC_GETATTR, PROC_LOOKUP,
    PROC_MKDIR, PROC_READ, PROC_READDIRPLUS, PROC_READLINK, PROC_REMOVE, PROC_RENAME, PROC_RMDIR,
    PROC_SETATTR, PROC_SYMLINK, PROC_WRITE,
};
use cairn_nfs::rpc::{MOUNT_VERSION, NFS_VERSION, PROG_MOUNT, PROG_NFS};
use cairn_nfs::xdr::{self, Pack, Unpack};
use dirty::{Dirty, Verf};
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, SessionACL, TimeOrNow, WriteFlags,
};

const USAGE: &str = "usage: nfs-fuse [--ttl-ms N] [--retry-secs N] [--allow-other] \
                     HOST:PORT /EXPORT MOUNTPOINT";
/// FUSE's root inode.
const ROOT: u64 = 1;
/// Inode numbers from here up are not file ids (NFS file ids of Cairn have 63 bits).
const SYNTHETIC: u64 = 1 << 63;
/// A file with more uncommitted bytes than this is committed (as a kernel client's writeback).
const DIRTY_LIMIT: u64 = 64 << 20;
/// COMMIT rounds (commit, resend what the server lost) before giving up.
const COMMIT_ROUNDS: usize = 10;
/// How long a call answered NFS3ERR_JUKEBOX is tried again.
const JUKEBOX_WAIT: Duration = Duration::from_secs(30);
/// READDIRPLUS sizes.
const DIRCOUNT: u32 = 64 << 10;
const MAXCOUNT: u32 = 512 << 10;

/// The caller of a FUSE request.
#[derive(Clone, Copy, Debug)]
struct Cred {
    uid: u32,
    gid: u32,
}

fn cred(req: &Request) -> Cred {
    Cred {
        uid: req.uid(),
        gid: req.gid(),
    }
}

/// An inode the kernel may ask about: its handle (the newest one seen) and type.
struct Known {
    fh: NfsFh3,
    kind: Ftype3,
}

/// One entry of a directory listing kept for an open directory.
struct Entry {
    ino: u64,
    kind: FileType,
    name: Vec<u8>,
}

/// What was done, printed at exit.
#[derive(Default)]
struct Stats {
    writes: u64,
    write_bytes: u64,
    commits: u64,
    resent_writes: u64,
    resent_bytes: u64,
}

/// The client state, behind one lock: the connection, the inode table, uncommitted writes.
struct Inner {
    conn: rpc::Conn,
    machine: Vec<u8>,
    root: NfsFh3,
    root_fileid: u64,
    inodes: HashMap<u64, Known>,
    /// Inode of each handle in `inodes`.
    by_fh: HashMap<NfsFh3, u64>,
    /// Inode numbers given when a file id is taken (counted above [`SYNTHETIC`]).
    next_synthetic: u64,
    dirty: HashMap<u64, Dirty>,
    listings: HashMap<u64, Vec<Entry>>,
    next_handle: u64,
    wtmax: usize,
    rtmax: usize,
    ttl: Duration,
    owner: Cred,
    stats: Stats,
}

/// The result of a procedure, with whether the call was sent more than once.
type Called<R> = Result<(R, bool), Nfsstat3>;

fn ok<T, F>(r: Nfs3Res<T, F>) -> Result<T, Nfsstat3> {
    match r {
        Nfs3Res::Ok(v) => Ok(v),
        Nfs3Res::Fail(s, _) => Err(s),
    }
}

fn diropargs(dir: &NfsFh3, name: &[u8]) -> Diropargs3 {
    Diropargs3 {
        dir: dir.clone(),
        name: name.to_vec(),
    }
}

impl Inner {
    /// Calls NFS procedure `proc_`; a transport failure is NFS3ERR_IO, NFS3ERR_JUKEBOX is
    /// waited out.
    fn call<A: Pack, R: Unpack>(&mut self, cred: Cred, proc_: u32, args: &A) -> Called<R> {
        let auth = rpc::auth_sys(&self.machine, cred.uid, cred.gid);
        let args = xdr::encode(args);
        let deadline = Instant::now() + JUKEBOX_WAIT;
        let jukebox = Nfsstat3::Jukebox.to_u32().to_be_bytes();
        let mut retried = false;
        loop {
            let reply = self
                .conn
                .call(PROG_NFS, NFS_VERSION, proc_, &auth, &args)
                .map_err(|e| {
                    eprintln!("nfs-fuse: NFS procedure {proc_}: {e}");
                    Nfsstat3::Io
                })?;
            retried |= reply.retried;
            if reply.body.get(..4) == Some(&jukebox[..]) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            let r = xdr::decode::<R>(&reply.body).map_err(|e| {
                eprintln!("nfs-fuse: reply of NFS procedure {proc_} does not decode: {e}");
                Nfsstat3::Io
            })?;
            return Ok((r, retried));
        }
    }

    /// The inode of a handle found by LOOKUP or READDIRPLUS, remembered: the one the handle
    /// already has, else its file id (root = 1). When a known inode has that file id with
    /// another handle: if that handle no longer names a file, this is the same file renamed
    /// (the server's handles carry the name) and the inode takes the new handle; if it still
    /// does, the server gave two files one id, and this one gets an inode number of its own.
    fn found(&mut self, cred: Cred, fh: NfsFh3, a: &Fattr3) -> u64 {
        if a.fileid == self.root_fileid {
            return ROOT;
        }
        if let Some(&ino) = self.by_fh.get(&fh) {
            if let Some(k) = self.inodes.get_mut(&ino) {
                k.kind = a.type_;
            }
            return ino;
        }
        let ino = match self.inodes.get(&a.fileid).map(|k| k.fh.clone()) {
            Some(other) => match self.getattr(cred, &other) {
                Ok(o) if o.fileid == a.fileid => self.synthetic(),
                _ => a.fileid,
            },
            None => a.fileid,
        };
        self.bind(ino, fh, a.type_);
        ino
    }

    fn synthetic(&mut self) -> u64 {
        self.next_synthetic += 1;
        SYNTHETIC | self.next_synthetic
    }

    /// The inode of an object CREATE, MKDIR or SYMLINK just made: a new file, so a new inode,
    /// its file id unless a known inode has it (file ids are not unique on every server:
    /// another inode number then).
    fn made(&mut self, fh: NfsFh3, a: &Fattr3) -> u64 {
        let ino = if self.inodes.contains_key(&a.fileid) || self.by_fh.contains_key(&fh) {
            self.synthetic()
        } else {
            a.fileid
        };
        self.bind(ino, fh, a.type_);
        ino
    }

    /// Inode `ino` is the file of handle `fh` now (a handle it had before is no longer its).
    fn bind(&mut self, ino: u64, fh: NfsFh3, kind: Ftype3) {
        if let Some(old) = self.inodes.insert(
            ino,
            Known {
                fh: fh.clone(),
                kind,
            },
        ) {
            if self.by_fh.get(&old.fh) == Some(&ino) {
                self.by_fh.remove(&old.fh);
            }
        }
        self.by_fh.insert(fh, ino);
    }

    fn ino_of(&self, fileid: u64) -> u64 {
        if fileid == self.root_fileid {
            ROOT
        } else {
            fileid
        }
    }

    fn fh(&self, ino: u64) -> Result<NfsFh3, Nfsstat3> {
        if ino == ROOT {
            return Ok(self.root.clone());
        }
        self.inodes
            .get(&ino)
            .map(|k| k.fh.clone())
            .ok_or(Nfsstat3::Stale)
    }

    fn handle(&mut self) -> FileHandle {
        self.next_handle += 1;
        FileHandle(self.next_handle)
    }

    /// FUSE attributes; a file's size counts its uncommitted writes (as a kernel client's
    /// does, should the server have lost them).
    fn file_attr(&self, ino: u64, a: &Fattr3) -> FileAttr {
        let size = match self.dirty.get(&ino) {
            Some(d) => a.size.max(d.end()),
            None => a.size,
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: a.used.div_ceil(512),
            atime: system_time(a.atime),
            mtime: system_time(a.mtime),
            ctime: system_time(a.ctime),
            crtime: system_time(a.ctime),
            kind: file_type(a.type_),
            perm: (a.mode & 0o7777) as u16,
            nlink: a.nlink,
            uid: a.uid,
            gid: a.gid,
            rdev: 0,
            blksize: self.wtmax as u32,
            flags: 0,
        }
    }

    fn getattr(&mut self, cred: Cred, fh: &NfsFh3) -> Result<Fattr3, Nfsstat3> {
        let (r, _): (GetattrRes, _) =
            self.call(cred, PROC_GETATTR, &GetattrArgs { object: fh.clone() })?;
        ok(r)
    }

    /// LOOKUP: the handle and attributes of `name` in `dir`.
    fn lookup_fh(
        &mut self,
        cred: Cred,
        dir: &NfsFh3,
        name: &[u8],
    ) -> Result<(NfsFh3, Fattr3), Nfsstat3> {
        let (r, _): (LookupRes, _) = self.call(
            cred,
            PROC_LOOKUP,
            &LookupArgs {
                what: diropargs(dir, name),
            },
        )?;
        let found = ok(r)?;
        let attrs = match found.obj_attributes {
            Some(a) => a,
            None => self.getattr(cred, &found.object)?,
        };
        Ok((found.object, attrs))
    }

    /// LOOKUP: the inode and attributes of `name` in `dir`.
    fn lookup(&mut self, cred: Cred, dir: &NfsFh3, name: &[u8]) -> Result<(u64, Fattr3), Nfsstat3> {
        let (fh, attrs) = self.lookup_fh(cred, dir, name)?;
        Ok((self.found(cred, fh, &attrs), attrs))
    }

    fn setattr(&mut self, cred: Cred, fh: &NfsFh3, set: Sattr3) -> Result<Fattr3, Nfsstat3> {
        let (r, _): (SetattrRes, _) = self.call(
            cred,
            PROC_SETATTR,
            &SetattrArgs {
                object: fh.clone(),
                new_attributes: set,
                guard: None,
            },
        )?;
        match ok(r)?.after {
            Some(a) => Ok(a),
            None => self.getattr(cred, fh),
        }
    }

    /// A CREATE, MKDIR or SYMLINK result: the new object's inode and attributes. A call sent
    /// again after a reconnect that finds the name taken finds what its first transmission
    /// made.
    fn created(
        &mut self,
        cred: Cred,
        dir: &NfsFh3,
        name: &[u8],
        r: Called<CreateRes>,
    ) -> Result<(u64, Fattr3), Nfsstat3> {
        let (res, retried) = r?;
        let made = match res {
            Nfs3Res::Fail(Nfsstat3::Exist, _) if retried => return self.lookup(cred, dir, name),
            r => ok(r)?,
        };
        match (made.obj, made.obj_attributes) {
            (Some(fh), Some(a)) => Ok((self.made(fh, &a), a)),
            (Some(fh), None) => {
                let a = self.getattr(cred, &fh)?;
                Ok((self.made(fh, &a), a))
            }
            (None, _) => self.lookup(cred, dir, name),
        }
    }

    /// REMOVE or RMDIR; sent again after a reconnect, NOENT means the first one did it.
    fn remove(
        &mut self,
        cred: Cred,
        dir: &NfsFh3,
        name: &[u8],
        is_dir: bool,
    ) -> Result<(), Nfsstat3> {
        let object = diropargs(dir, name);
        let (r, retried): (RemoveRes, _) = if is_dir {
            self.call(cred, PROC_RMDIR, &RmdirArgs { object })?
        } else {
            self.call(cred, PROC_REMOVE, &RemoveArgs { object })?
        };
        match r {
            Nfs3Res::Fail(Nfsstat3::Noent, _) if retried => Ok(()),
            r => ok(r).map(|_| ()),
        }
    }

    fn write(
        &mut self,
        cred: Cred,
        fh: &NfsFh3,
        offset: u64,
        data: &[u8],
        stable: StableHow,
    ) -> Result<WriteResOk, Nfsstat3> {
        let (r, _): (WriteRes, _) = self.call(
            cred,
            PROC_WRITE,
            &WriteArgs {
                file: fh.clone(),
                offset,
                count: data.len() as u32,
                stable,
                data: Bytes::copy_from_slice(data),
            },
        )?;
        ok(r)
    }

    /// Writes `data` at `offset` of `ino` in WRITEs of at most `wtmax` bytes; UNSTABLE ones are
    /// kept until a COMMIT confirms them.
    fn write_data(
        &mut self,
        cred: Cred,
        ino: u64,
        offset: u64,
        data: &[u8],
        sync: bool,
    ) -> Result<(), Nfsstat3> {
        let fh = self.fh(ino)?;
        let stable = if sync {
            StableHow::FileSync
        } else {
            StableHow::Unstable
        };
        let mut done = 0;
        while done < data.len() {
            let n = (data.len() - done).min(self.wtmax);
            let at = offset + done as u64;
            let chunk = &data[done..done + n];
            let w = self.write(cred, &fh, at, chunk, stable)?;
            let wrote = (w.count as usize).min(n);
            if wrote == 0 {
                eprintln!("nfs-fuse: WRITE of {n} bytes at {at} wrote nothing");
                return Err(Nfsstat3::Io);
            }
            let d = self.dirty.entry(ino).or_default();
            if w.committed == StableHow::Unstable {
                d.insert(at, chunk[..wrote].to_vec(), w.verf);
            } else {
                // Stable now: older uncommitted bytes there must never be sent again.
                d.forget(at, wrote as u64);
            }
            self.stats.writes += 1;
            self.stats.write_bytes += wrote as u64;
            done += wrote;
        }
        if self.dirty.get(&ino).is_some_and(Dirty::is_empty) {
            self.dirty.remove(&ino);
        }
        Ok(())
    }

    fn commit(&mut self, cred: Cred, fh: &NfsFh3) -> Result<Verf, Nfsstat3> {
        let (r, _): (CommitRes, _) = self.call(
            cred,
            PROC_COMMIT,
            &CommitArgs {
                file: fh.clone(),
                offset: 0,
                count: 0,
            },
        )?;
        self.stats.commits += 1;
        ok(r).map(|c| c.verf)
    }

    /// Makes the uncommitted writes of `ino` durable: COMMIT, and while the server's verifier
    /// differs from some writes' (it restarted and lost them), send those again and COMMIT
    /// again.
    fn commit_ino(&mut self, cred: Cred, ino: u64) -> Result<(), Nfsstat3> {
        for _ in 0..COMMIT_ROUNDS {
            if self.dirty.get(&ino).is_none_or(Dirty::is_empty) {
                self.dirty.remove(&ino);
                return Ok(());
            }
            let fh = self.fh(ino)?;
            let verf = match self.commit(cred, &fh) {
                Ok(v) => v,
                Err(Nfsstat3::Stale | Nfsstat3::Noent) => {
                    // The file is gone, and its writes with it (as writes to a removed file).
                    self.dirty.remove(&ino);
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let lost = self
                .dirty
                .get(&ino)
                .map(|d| d.not_committed_by(&verf))
                .unwrap_or_default();
            if lost.is_empty() {
                self.dirty.remove(&ino);
                return Ok(());
            }
            let bytes: usize = lost.iter().map(|(_, d)| d.len()).sum();
            eprintln!(
                "nfs-fuse: the server's write verifier changed (it restarted): sending {} \
                 uncommitted writes ({bytes} bytes) of inode {ino} again",
                lost.len()
            );
            for (at, data) in lost {
                self.write_data(cred, ino, at, &data, false)?;
                self.stats.resent_writes += 1;
                self.stats.resent_bytes += data.len() as u64;
            }
        }
        eprintln!("nfs-fuse: the writes of inode {ino} could not be committed");
        Err(Nfsstat3::Io)
    }

    /// Commits every file's uncommitted writes.
    fn commit_all(&mut self, cred: Cred) -> Result<(), Nfsstat3> {
        let inos: Vec<u64> = self.dirty.keys().copied().collect();
        let mut result = Ok(());
        for ino in inos {
            if let Err(e) = self.commit_ino(cred, ino) {
                result = Err(e);
            }
        }
        result
    }

    /// `size` bytes at `offset` (fewer at the end of the file), uncommitted writes laid over
    /// what the server returns.
    fn read_data(
        &mut self,
        cred: Cred,
        ino: u64,
        offset: u64,
        size: usize,
    ) -> Result<Vec<u8>, Nfsstat3> {
        let fh = self.fh(ino)?;
        let mut buf = Vec::with_capacity(size);
        while buf.len() < size {
            let at = offset + buf.len() as u64;
            let count = (size - buf.len()).min(self.rtmax) as u32;
            let (r, _): (ReadRes, _) = self.call(
                cred,
                PROC_READ,
                &ReadArgs {
                    file: fh.clone(),
                    offset: at,
                    count,
                },
            )?;
            let got = ok(r)?;
            buf.extend_from_slice(&got.data);
            if got.eof || got.data.is_empty() {
                break;
            }
        }
        buf.truncate(size);
        if let Some(d) = self.dirty.get(&ino) {
            d.overlay(offset, size, &mut buf);
        }
        Ok(buf)
    }

    /// Every entry of directory `ino`: READDIRPLUS after READDIRPLUS following the cookies to
    /// the end (from the start again if the server no longer knows a cookie).
    fn list(&mut self, cred: Cred, ino: u64) -> Result<Vec<Entry>, Nfsstat3> {
        let dir = self.fh(ino)?;
        'listing: for _ in 0..3 {
            let (mut cookie, mut cookieverf, mut out) = (0u64, [0u8; 8], Vec::new());
            loop {
                let (r, _): (ReaddirplusRes, _) = self.call(
                    cred,
                    PROC_READDIRPLUS,
                    &ReaddirplusArgs {
                        dir: dir.clone(),
                        cookie,
                        cookieverf,
                        dircount: DIRCOUNT,
                        maxcount: MAXCOUNT,
                    },
                )?;
                let page = match r {
                    Nfs3Res::Ok(p) => p,
                    Nfs3Res::Fail(Nfsstat3::BadCookie, _) => continue 'listing,
                    Nfs3Res::Fail(s, _) => return Err(s),
                };
                let n = page.entries.len();
                for e in page.entries {
                    cookie = e.cookie;
                    out.push(self.entry(cred, ino, e));
                }
                cookieverf = page.cookieverf;
                if page.eof {
                    return Ok(out);
                }
                if n == 0 {
                    eprintln!("nfs-fuse: READDIRPLUS returned nothing before the end");
                    return Err(Nfsstat3::Io);
                }
            }
        }
        Err(Nfsstat3::Io)
    }

    fn entry(&mut self, cred: Cred, dir: u64, e: Entryplus3) -> Entry {
        let (ino, kind) = if e.name == b"." {
            (dir, FileType::Directory)
        } else {
            match (e.name_handle, &e.name_attributes) {
                (Some(fh), Some(a)) => (self.found(cred, fh, a), file_type(a.type_)),
                (None, Some(a)) => (self.ino_of(a.fileid), file_type(a.type_)),
                (_, None) => (self.ino_of(e.fileid), FileType::RegularFile),
            }
        };
        Entry {
            ino,
            kind,
            name: e.name,
        }
    }

    fn kind(&mut self, cred: Cred, ino: u64) -> Result<Ftype3, Nfsstat3> {
        if ino == ROOT {
            return Ok(Ftype3::Dir);
        }
        if let Some(k) = self.inodes.get(&ino) {
            return Ok(k.kind);
        }
        let fh = self.fh(ino)?;
        Ok(self.getattr(cred, &fh)?.type_)
    }

    /// Whether the server grants all of `want` (ACCESS3 bits) on `ino`.
    fn access(&mut self, cred: Cred, ino: u64, want: u32) -> Result<bool, Nfsstat3> {
        let fh = self.fh(ino)?;
        let (r, _): (AccessRes, _) = self.call(
            cred,
            PROC_ACCESS,
            &AccessArgs {
                object: fh,
                access: want,
            },
        )?;
        Ok(ok(r)?.access & want == want)
    }

    fn fsinfo(&mut self, cred: Cred) -> Result<FsinfoResOk, Nfsstat3> {
        let fsroot = self.root.clone();
        let (r, _): (FsinfoRes, _) = self.call(cred, PROC_FSINFO, &FsinfoArgs { fsroot })?;
        ok(r)
    }

    fn fsstat(&mut self, cred: Cred) -> Result<FsstatResOk, Nfsstat3> {
        let fsroot = self.root.clone();
        let (r, _): (FsstatRes, _) = self.call(cred, PROC_FSSTAT, &FsstatArgs { fsroot })?;
        ok(r)
    }

    fn print_stats(&self) {
        let s = &self.stats;
        eprintln!(
            "nfs-fuse: {} writes ({} bytes), {} commits, {} writes ({} bytes) sent again after \
             a server restart, {} reconnects, {} calls resent",
            s.writes,
            s.write_bytes,
            s.commits,
            s.resent_writes,
            s.resent_bytes,
            self.conn.reconnects,
            self.conn.resent_calls
        );
    }
}

fn system_time(t: Nfstime3) -> SystemTime {
    UNIX_EPOCH + Duration::new(u64::from(t.seconds), t.nseconds.min(999_999_999))
}

fn nfs_time(t: SystemTime) -> Nfstime3 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Nfstime3 {
        seconds: u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
        nseconds: d.subsec_nanos(),
    }
}

fn set_time(t: Option<TimeOrNow>) -> SetTime {
    match t {
        None => SetTime::DontChange,
        Some(TimeOrNow::Now) => SetTime::ServerTime,
        Some(TimeOrNow::SpecificTime(t)) => SetTime::ClientTime(nfs_time(t)),
    }
}

fn file_type(t: Ftype3) -> FileType {
    match t {
        Ftype3::Reg => FileType::RegularFile,
        Ftype3::Dir => FileType::Directory,
        Ftype3::Blk => FileType::BlockDevice,
        Ftype3::Chr => FileType::CharDevice,
        Ftype3::Lnk => FileType::Symlink,
        Ftype3::Sock => FileType::Socket,
        Ftype3::Fifo => FileType::NamedPipe,
    }
}

/// The errno for an NFS status.
fn errno(s: Nfsstat3) -> Errno {
    match s {
        Nfsstat3::Perm => Errno::EPERM,
        Nfsstat3::Noent => Errno::ENOENT,
        Nfsstat3::Nxio => Errno::ENXIO,
        Nfsstat3::Acces => Errno::EACCES,
        Nfsstat3::Exist => Errno::EEXIST,
        Nfsstat3::Xdev => Errno::EXDEV,
        Nfsstat3::Nodev => Errno::ENODEV,
        Nfsstat3::Notdir => Errno::ENOTDIR,
        Nfsstat3::Isdir => Errno::EISDIR,
        Nfsstat3::Inval => Errno::EINVAL,
        Nfsstat3::Fbig => Errno::EFBIG,
        Nfsstat3::Nospc => Errno::ENOSPC,
        Nfsstat3::Rofs => Errno::EROFS,
        Nfsstat3::Mlink => Errno::EMLINK,
        Nfsstat3::Nametoolong => Errno::ENAMETOOLONG,
        Nfsstat3::Notempty => Errno::ENOTEMPTY,
        Nfsstat3::Dquot => Errno::EDQUOT,
        Nfsstat3::Stale => Errno::ESTALE,
        Nfsstat3::Notsupp => Errno::EOPNOTSUPP,
        _ => Errno::EIO,
    }
}

/// The FUSE file system: every request is served under one lock, over one connection.
struct NfsFuse {
    inner: Mutex<Inner>,
}

impl NfsFuse {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reply_entry(s: &Inner, r: Result<(u64, Fattr3), Nfsstat3>, reply: ReplyEntry) {
        match r {
            Ok((ino, a)) => reply.entry(&s.ttl, &s.file_attr(ino, &a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn reply_empty(r: Result<(), Nfsstat3>, reply: ReplyEmpty) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl Filesystem for NfsFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wtmax = self.lock().wtmax as u32;
        if let Err(nearest) = config.set_max_write(wtmax) {
            let _ = config.set_max_write(nearest);
        }
        Ok(())
    }

    fn destroy(&mut self) {
        let mut s = self.lock();
        let owner = s.owner;
        if let Err(e) = s.commit_all(owner) {
            eprintln!("nfs-fuse: writes not committed at unmount: {e:?}");
        }
        s.print_stats();
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.lock();
        let r = s
            .fh(parent.0)
            .and_then(|dir| s.lookup(cred(req), &dir, name.as_bytes()));
        Self::reply_entry(&s, r, reply);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut s = self.lock();
        let r = s.fh(ino.0).and_then(|fh| s.getattr(cred(req), &fh));
        match r {
            Ok(a) => reply.attr(&s.ttl, &s.file_attr(ino.0, &a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.lock();
        let c = cred(req);
        let r = (|| {
            if size.is_some() {
                // As a kernel client flushes before a truncate: writes sent again after a
                // server restart must not land past the new size.
                s.commit_ino(c, ino.0)?;
            }
            let fh = s.fh(ino.0)?;
            let set = Sattr3 {
                mode: mode.map(|m| m & 0o7777),
                uid,
                gid,
                size,
                atime: set_time(atime),
                mtime: set_time(mtime),
            };
            if set == Sattr3::default() {
                return s.getattr(c, &fh);
            }
            s.setattr(c, &fh, set)
        })();
        match r {
            Ok(a) => reply.attr(&s.ttl, &s.file_attr(ino.0, &a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let mut s = self.lock();
        let r = s.fh(ino.0).and_then(|fh| {
            let (r, _): (ReadlinkRes, _) =
                s.call(cred(req), PROC_READLINK, &ReadlinkArgs { symlink: fh })?;
            ok(r)
        });
        match r {
            Ok(l) => reply.data(&l.data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.lock();
        let c = cred(req);
        let r = s.fh(parent.0).and_then(|dir| {
            let args = MkdirArgs {
                where_: diropargs(&dir, name.as_bytes()),
                attributes: Sattr3 {
                    mode: Some(mode & !umask & 0o7777),
                    ..Sattr3::default()
                },
            };
            let made = s.call(c, PROC_MKDIR, &args);
            s.created(c, &dir, name.as_bytes(), made)
        });
        Self::reply_entry(&s, r, reply);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.lock();
        let r = s
            .fh(parent.0)
            .and_then(|dir| s.remove(cred(req), &dir, name.as_bytes(), false));
        Self::reply_empty(r, reply);
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.lock();
        let r = s
            .fh(parent.0)
            .and_then(|dir| s.remove(cred(req), &dir, name.as_bytes(), true));
        Self::reply_empty(r, reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let mut s = self.lock();
        let c = cred(req);
        let r = s.fh(parent.0).and_then(|dir| {
            let args = SymlinkArgs {
                where_: diropargs(&dir, link_name.as_bytes()),
                attributes: Sattr3::default(),
                target: target.as_os_str().as_bytes().to_vec(),
            };
            let made = s.call(c, PROC_SYMLINK, &args);
            s.created(c, &dir, link_name.as_bytes(), made)
        });
        Self::reply_entry(&s, r, reply);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            reply.error(Errno::EINVAL);
            return;
        }
        let mut s = self.lock();
        let c = cred(req);
        let r = (|| {
            let from = s.fh(parent.0)?;
            let to = s.fh(newparent.0)?;
            // The server commits what it buffered of the files it moves; what it lost in a
            // restart must reach it first.
            s.commit_all(c)?;
            // The inode that moves: it takes the handle of its new name afterwards (its old
            // handle names whatever is made under the old name next).
            let moved = match s.lookup_fh(c, &from, name.as_bytes()) {
                Ok((fh, a)) => Some(s.found(c, fh, &a)).filter(|&i| i != ROOT),
                Err(_) => None,
            };
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                match s.lookup(c, &to, newname.as_bytes()) {
                    Ok(_) => return Err(Nfsstat3::Exist),
                    Err(Nfsstat3::Noent) => {}
                    Err(e) => return Err(e),
                }
            }
            let (r, retried): (RenameRes, _) = s.call(
                c,
                PROC_RENAME,
                &RenameArgs {
                    from: diropargs(&from, name.as_bytes()),
                    to: diropargs(&to, newname.as_bytes()),
                },
            )?;
            match r {
                Nfs3Res::Fail(Nfsstat3::Noent, _) if retried => {}
                r => {
                    ok(r)?;
                }
            }
            if let Some(ino) = moved {
                if let Ok((fh, a)) = s.lookup_fh(c, &to, newname.as_bytes()) {
                    s.bind(ino, fh, a.type_);
                }
            }
            Ok(())
        })();
        Self::reply_empty(r, reply);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.lock();
        let want = match flags.acc_mode() {
            OpenAccMode::O_RDONLY => ACCESS3_READ,
            OpenAccMode::O_WRONLY => ACCESS3_MODIFY,
            OpenAccMode::O_RDWR => ACCESS3_READ | ACCESS3_MODIFY,
        };
        // As a kernel client checks at open: the server decides.
        match s.access(cred(req), ino.0, want) {
            Ok(true) => {
                let h = s.handle();
                reply.opened(h, FopenFlags::empty());
            }
            Ok(false) => reply.error(Errno::EACCES),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut s = self.lock();
        match s.read_data(cred(req), ino.0, offset, size as usize) {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = self.lock();
        let c = cred(req);
        // O_SYNC includes O_DSYNC's bit.
        let sync = flags.0 & rustix::fs::OFlags::DSYNC.bits() as i32 != 0;
        match s.write_data(c, ino.0, offset, data, sync) {
            Ok(()) => {
                if s.dirty.get(&ino.0).is_some_and(|d| d.bytes() > DIRTY_LIMIT) {
                    if let Err(e) = s.commit_ino(c, ino.0) {
                        eprintln!("nfs-fuse: commit of inode {} failed: {e:?}", ino.0);
                    }
                }
                reply.written(data.len() as u32);
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        let r = s.commit_ino(cred(req), ino.0);
        Self::reply_empty(r, reply);
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        if let Err(e) = s.commit_ino(cred(req), ino.0) {
            eprintln!(
                "nfs-fuse: commit at release of inode {} failed: {e:?}",
                ino.0
            );
        }
        reply.ok();
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        let r = s.commit_ino(cred(req), ino.0);
        Self::reply_empty(r, reply);
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let h = self.lock().handle();
        reply.opened(h, FopenFlags::empty());
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut s = self.lock();
        if offset == 0 || !s.listings.contains_key(&fh.0) {
            match s.list(cred(req), ino.0) {
                Ok(l) => {
                    s.listings.insert(fh.0, l);
                }
                Err(e) => {
                    reply.error(errno(e));
                    return;
                }
            }
        }
        if let Some(entries) = s.listings.get(&fh.0) {
            for (i, e) in entries.iter().enumerate().skip(offset as usize) {
                let name = OsStr::from_bytes(&e.name);
                if reply.add(INodeNo(e.ino), i as u64 + 1, e.kind, name) {
                    break;
                }
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.lock().listings.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory operations are synchronous on the server.
        reply.ok();
    }

    fn statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let mut s = self.lock();
        match s.fsstat(cred(req)) {
            Ok(f) => {
                const BSIZE: u64 = 4096;
                reply.statfs(
                    f.tbytes / BSIZE,
                    f.fbytes / BSIZE,
                    f.abytes / BSIZE,
                    f.tfiles,
                    f.ffiles,
                    BSIZE as u32,
                    255,
                    BSIZE as u32,
                )
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let mut s = self.lock();
        let c = cred(req);
        let r = (|| {
            let dir = s.kind(c, ino.0)? == Ftype3::Dir;
            let mut want = 0;
            if mask.contains(AccessFlags::R_OK) {
                want |= ACCESS3_READ;
            }
            if mask.contains(AccessFlags::W_OK) {
                want |= ACCESS3_MODIFY | ACCESS3_EXTEND;
                if dir {
                    want |= ACCESS3_DELETE;
                }
            }
            if mask.contains(AccessFlags::X_OK) {
                want |= if dir { ACCESS3_LOOKUP } else { ACCESS3_EXECUTE };
            }
            if want == 0 {
                // F_OK: it exists if the server still knows it.
                let fh = s.fh(ino.0)?;
                return s.getattr(c, &fh).map(|_| ());
            }
            if s.access(c, ino.0, want)? {
                Ok(())
            } else {
                Err(Nfsstat3::Acces)
            }
        })();
        Self::reply_empty(r, reply);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.lock();
        let c = cred(req);
        let excl = flags & rustix::fs::OFlags::EXCL.bits() as i32 != 0;
        let trunc = flags & rustix::fs::OFlags::TRUNC.bits() as i32 != 0;
        let r = (|| {
            let dir = s.fh(parent.0)?;
            let args = CreateArgs {
                where_: diropargs(&dir, name.as_bytes()),
                how: CreateHow::Guarded(Sattr3 {
                    mode: Some(mode & !umask & 0o7777),
                    ..Sattr3::default()
                }),
            };
            let made = s.call(c, PROC_CREATE, &args);
            match s.created(c, &dir, name.as_bytes(), made) {
                // Made by someone else since the kernel looked: open it, as open(O_CREAT) does.
                Err(Nfsstat3::Exist) if !excl => {
                    let (ino, a) = s.lookup(c, &dir, name.as_bytes())?;
                    if a.type_ == Ftype3::Dir {
                        return Err(Nfsstat3::Isdir);
                    }
                    if trunc {
                        s.commit_ino(c, ino)?;
                        let fh = s.fh(ino)?;
                        let set = Sattr3 {
                            size: Some(0),
                            ..Sattr3::default()
                        };
                        return Ok((ino, s.setattr(c, &fh, set)?));
                    }
                    Ok((ino, a))
                }
                r => r,
            }
        })();
        match r {
            Ok((ino, a)) => {
                let h = s.handle();
                reply.created(
                    &s.ttl,
                    &s.file_attr(ino, &a),
                    Generation(0),
                    h,
                    FopenFlags::empty(),
                );
            }
            Err(e) => reply.error(errno(e)),
        }
    }
}

/// Command-line options.
struct Options {
    server: String,
    export: String,
    mountpoint: PathBuf,
    ttl: Duration,
    retry_for: Duration,
    allow_other: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let (mut ttl_ms, mut retry_secs, mut allow_other) = (0u64, 30u64, false);
    while let Some(a) = args.next() {
        let mut number = |what: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{what} needs a number"))
        };
        match a.as_str() {
            "--ttl-ms" => ttl_ms = number("--ttl-ms")?,
            "--retry-secs" => retry_secs = number("--retry-secs")?,
            "--allow-other" => allow_other = true,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => positional.push(a),
        }
    }
    let [server, export, mountpoint]: [String; 3] = positional
        .try_into()
        .map_err(|_| "HOST:PORT, /EXPORT and MOUNTPOINT are needed".to_string())?;
    Ok(Options {
        server,
        export,
        mountpoint: PathBuf::from(mountpoint),
        ttl: Duration::from_millis(ttl_ms),
        retry_for: Duration::from_secs(retry_secs),
        allow_other,
    })
}

fn hostname() -> Vec<u8> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    let mut b = if name.is_empty() { "nfs-fuse" } else { name }
        .as_bytes()
        .to_vec();
    b.truncate(cairn_nfs::rpc::MAX_MACHINE_NAME);
    b
}

/// Mounts the export and serves it until it is unmounted or a signal comes.
fn run(opts: Options) -> Result<(), String> {
    let owner = Cred {
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
    };
    let machine = hostname();
    let mut conn = rpc::Conn::new(&opts.server, opts.retry_for);
    let auth = rpc::auth_sys(&machine, owner.uid, owner.gid);
    let path = Dirpath(opts.export.as_bytes().to_vec());
    let reply = conn
        .call(
            PROG_MOUNT,
            MOUNT_VERSION,
            mnt::PROC_MNT,
            &auth,
            &xdr::encode(&path),
        )
        .map_err(|e| format!("MNT of {} on {}: {e}", opts.export, opts.server))?;
    let root = match xdr::decode::<MntRes>(&reply.body) {
        Ok(MntRes::Ok { fhandle, .. }) => fhandle,
        Ok(MntRes::Fail(s)) => {
            return Err(format!(
                "{} refused to mount {}: {s:?}",
                opts.server, opts.export
            ))
        }
        Err(e) => return Err(format!("the MNT reply does not decode: {e}")),
    };
    let mut inner = Inner {
        conn,
        machine,
        root: root.clone(),
        root_fileid: 0,
        inodes: HashMap::new(),
        by_fh: HashMap::new(),
        next_synthetic: 0,
        dirty: HashMap::new(),
        listings: HashMap::new(),
        next_handle: 0,
        wtmax: MAX_DATA,
        rtmax: MAX_DATA,
        ttl: opts.ttl,
        owner,
        stats: Stats::default(),
    };
    let root_attr = inner
        .getattr(owner, &root)
        .map_err(|e| format!("GETATTR of the export's root: {e:?}"))?;
    inner.root_fileid = root_attr.fileid;
    let info = inner.fsinfo(owner).map_err(|e| format!("FSINFO: {e:?}"))?;
    inner.wtmax = (info.wtmax as usize).clamp(4096, MAX_DATA);
    inner.rtmax = (info.rtmax as usize).clamp(4096, MAX_DATA);

    // Signals are caught before the mount exists, so that none is missed.
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stop_flag = stop.clone();
    std::thread::spawn(move || wait_for_signal(stop_flag, ready_tx));
    ready_rx
        .recv()
        .map_err(|_| "the signal thread ended".to_string())??;

    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("{}:{}", opts.server, opts.export)),
        MountOption::Subtype("nfs".into()),
        MountOption::RW,
    ];
    if opts.allow_other {
        config.acl = SessionACL::All;
    }
    let fs = NfsFuse {
        inner: Mutex::new(inner),
    };
    let session = fuser::spawn_mount(fs, &opts.mountpoint, &config)
        .map_err(|e| format!("mounting on {}: {e}", opts.mountpoint.display()))?;
    eprintln!(
        "nfs-fuse: {}:{} mounted on {}",
        opts.server,
        opts.export,
        opts.mountpoint.display()
    );
    let mut unmounted = false;
    while !session.guard.is_finished() {
        if stop.load(Ordering::SeqCst) {
            eprintln!("nfs-fuse: signal received, unmounting");
            unmount(&opts.mountpoint);
            unmounted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = session.join();
    eprintln!("nfs-fuse: {} unmounted", opts.mountpoint.display());
    match r {
        // The unmount asked for ends the session by aborting its connection to the kernel
        // (ECONNABORTED), or with the device gone (ENODEV), depending on the timing: that is
        // the end we asked for, not a failure.
        Err(e)
            if unmounted
                && (e.kind() == std::io::ErrorKind::ConnectionAborted
                    || e.raw_os_error() == Some(19)) =>
        {
            Ok(())
        }
        r => r.map_err(|e| format!("the FUSE session ended with an error: {e}")),
    }
}

/// Sets `stop` at SIGTERM or SIGINT; says on `ready` once the handlers are in place.
fn wait_for_signal(stop: Arc<AtomicBool>, ready: std::sync::mpsc::Sender<Result<(), String>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("signal runtime: {e}")));
            return;
        }
    };
    rt.block_on(async move {
        let handlers =
            signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
        let (mut term, mut int) = match handlers {
            Ok(h) => h,
            Err(e) => {
                let _ = ready.send(Err(format!("signal handlers: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        stop.store(true, Ordering::SeqCst);
    });
}

/// Unmounts `mountpoint` (lazily if it is busy): the FUSE session then ends.
fn unmount(mountpoint: &Path) {
    let run = |tool: &str, args: &[&str]| {
        Command::new(tool)
            .args(args)
            .arg(mountpoint)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    for lazy in [false, true] {
        let fusermount_args: &[&str] = if lazy { &["-u", "-z"] } else { &["-u"] };
        let umount_args: &[&str] = if lazy { &["-l"] } else { &[] };
        if run("fusermount3", fusermount_args)
            || run("fusermount", fusermount_args)
            || run("umount", umount_args)
        {
            return;
        }
    }
    eprintln!(
        "nfs-fuse: could not unmount {} (fusermount3 -u, fusermount -u and umount failed)",
        mountpoint.display()
    );
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(m) => {
            if !m.is_empty() {
                eprintln!("nfs-fuse: {m}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nfs-fuse: {e}");
            ExitCode::FAILURE
        }
    }
}
