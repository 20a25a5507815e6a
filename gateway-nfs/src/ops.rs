//! The NFSv3 procedures (RFC 1813): arguments decoded, the file system asked, results packed.

use std::net::IpAddr;

use bytes::Bytes;

use crate::attr;
use crate::fs::{Cred, DirEntry, Fs, Node, PERM_R, PERM_W, PERM_X};
use crate::nfs3::*;
use crate::xdr::{self, Pack, Writer, XdrError};

/// What a procedure produced: the reply body (after the RPC header), and the status it
/// answered (for metrics).
pub struct Answer {
    /// Packed result, behind [`crate::rpc::ACCEPTED_REPLY_HEADER_LEN`] reserved bytes (for the
    /// reply header: see [`Writer::set_prefix`]).
    pub body: Writer,
    /// Its status.
    pub status: Nfsstat3,
    /// Bytes read or written by it.
    pub bytes: u64,
}

/// A reply body: packed behind room for the RPC reply header (the server puts the header in
/// front without copying the body).
fn body(room: usize) -> Writer {
    Writer::with_prefix(crate::rpc::ACCEPTED_REPLY_HEADER_LEN, room)
}

fn answer<T: Pack, F: Pack>(res: Nfs3Res<T, F>) -> Answer {
    answer_with_room(res, 256)
}

/// [`answer`] with room for `room` bytes of body (a READ's data: no reallocation).
fn answer_with_room<T: Pack, F: Pack>(res: Nfs3Res<T, F>, room: usize) -> Answer {
    let status = res.status();
    let mut w = body(room);
    res.pack(&mut w);
    Answer {
        body: w,
        status,
        bytes: 0,
    }
}

/// The procedure's name, for metrics and logs.
pub fn proc_name(p: u32) -> &'static str {
    const NAMES: [&str; 22] = [
        "NULL",
        "GETATTR",
        "SETATTR",
        "LOOKUP",
        "ACCESS",
        "READLINK",
        "READ",
        "WRITE",
        "CREATE",
        "MKDIR",
        "SYMLINK",
        "MKNOD",
        "REMOVE",
        "RMDIR",
        "RENAME",
        "LINK",
        "READDIR",
        "READDIRPLUS",
        "FSSTAT",
        "FSINFO",
        "PATHCONF",
        "COMMIT",
    ];
    NAMES.get(p as usize).copied().unwrap_or("UNKNOWN")
}

/// Who is calling, for access checks.
pub struct Caller {
    /// The credential (after root squash of the export it reaches).
    pub cred: Cred,
    /// Its address.
    pub addr: IpAddr,
}

/// Runs procedure `proc_` with `args` (from `record`, which WRITE's data shares). `None` for
/// a procedure that does not exist (PROC_UNAVAIL); `Err` for arguments that do not decode
/// (GARBAGE_ARGS).
///
/// Each procedure's future is boxed: unboxed, this future is as large as the largest of them
/// (tens of KiB), and every call's task copied it several times on its way to the runtime
/// (the profile of 4 KiB random reads showed those copies as the top cost).
pub async fn call(
    fs: &Fs,
    caller: &Caller,
    proc_: u32,
    record: &Bytes,
    args: &[u8],
) -> Option<Result<Answer, XdrError>> {
    Some(match proc_ {
        PROC_NULL => Ok(Answer {
            body: body(0),
            status: Nfsstat3::Ok,
            bytes: 0,
        }),
        PROC_GETATTR => match xdr::decode::<GetattrArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(getattr(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        PROC_SETATTR => match xdr::decode::<SetattrArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(setattr(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        PROC_LOOKUP => match xdr::decode::<LookupArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(lookup(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        PROC_ACCESS => match xdr::decode::<AccessArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(access(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        PROC_READLINK => match xdr::decode::<ReadlinkArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(readlink(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        PROC_READ => match xdr::decode::<ReadArgs>(args) {
            Ok(a) => Ok(Box::pin(read(fs, caller, a)).await),
            Err(e) => Err(e),
        },
        PROC_WRITE => match WriteArgs::decode_shared(record, args) {
            Ok(a) => Ok(Box::pin(write(fs, caller, a)).await),
            Err(e) => Err(e),
        },
        PROC_CREATE => match xdr::decode::<CreateArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(create(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        PROC_MKDIR => match xdr::decode::<MkdirArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(mkdir(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        PROC_SYMLINK => match xdr::decode::<SymlinkArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(symlink(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        PROC_MKNOD => match xdr::decode::<MknodArgs>(args) {
            // Devices, sockets and FIFOs have no object form.
            Ok(a) => Ok(answer(
                Box::pin(not_supported_in(fs, &a.where_.dir)).await as CreateRes,
            )),
            Err(e) => Err(e),
        },
        PROC_REMOVE => match xdr::decode::<RemoveArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(remove(fs, caller, a.object, false)).await)),
            Err(e) => Err(e),
        },
        PROC_RMDIR => match xdr::decode::<RmdirArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(remove(fs, caller, a.object, true)).await)),
            Err(e) => Err(e),
        },
        PROC_RENAME => match xdr::decode::<RenameArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(rename(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        PROC_LINK => match xdr::decode::<LinkArgs>(args) {
            // Hard links: one object cannot have two keys.
            Ok(a) => Ok(answer(Box::pin(link(fs, a)).await)),
            Err(e) => Err(e),
        },
        PROC_READDIR => match xdr::decode::<ReaddirArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(readdir(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        PROC_READDIRPLUS => match xdr::decode::<ReaddirplusArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(readdirplus(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        PROC_FSSTAT => match xdr::decode::<FsstatArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(fsstat(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        PROC_FSINFO => match xdr::decode::<FsinfoArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(fsinfo(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        PROC_PATHCONF => match xdr::decode::<PathconfArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(pathconf(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        PROC_COMMIT => match xdr::decode::<CommitArgs>(args) {
            Ok(a) => Ok(answer(Box::pin(commit(fs, caller, a)).await)),
            Err(e) => Err(e),
        },
        _ => return None,
    })
}

/// Resolves a handle for `caller`: the export must allow its address (ACCES otherwise).
async fn node(fs: &Fs, caller: &Caller, fh: &NfsFh3) -> Result<Node, Nfsstat3> {
    let n = fs.resolve(fh).await?;
    if !n.export.config.allows(caller.addr) {
        return Err(Nfsstat3::Acces);
    }
    Ok(n)
}

/// The caller's credential as the export of `n` sees it (root squash).
fn cred_for(caller: &Caller, n: &Node) -> Cred {
    if n.export.config.root_squash && caller.cred.uid == 0 {
        Cred::nobody()
    } else {
        caller.cred.clone()
    }
}

async fn getattr(fs: &Fs, caller: &Caller, a: GetattrArgs) -> GetattrRes {
    match node(fs, caller, &a.object).await {
        Ok(n) => Nfs3Res::Ok(fs.getattr(&n).await),
        Err(s) => Nfs3Res::Fail(s, ()),
    }
}

async fn setattr(fs: &Fs, caller: &Caller, a: SetattrArgs) -> SetattrRes {
    let n = match node(fs, caller, &a.object).await {
        Ok(n) => n,
        Err(s) => return Nfs3Res::Fail(s, WccData::default()),
    };
    let before = fs.getattr(&n).await;
    let cred = cred_for(caller, &n);
    let r = fs.setattr(&n, &cred, &a.new_attributes, a.guard).await;
    let wcc = WccData {
        before: Some(attr::wcc_of(&before)),
        after: fs.reread(&n).await,
    };
    match r {
        Ok(()) => Nfs3Res::Ok(wcc),
        Err(s) => Nfs3Res::Fail(s, wcc),
    }
}

async fn lookup(fs: &Fs, caller: &Caller, a: LookupArgs) -> LookupRes {
    let dir = match node(fs, caller, &a.what.dir).await {
        Ok(n) => n,
        Err(s) => return Nfs3Res::Fail(s, None),
    };
    if !dir.is_dir() {
        return Nfs3Res::Fail(Nfsstat3::Notdir, Some(dir.attr));
    }
    if !crate::fs::permitted(&cred_for(caller, &dir), &dir.attr, PERM_X) {
        return Nfs3Res::Fail(Nfsstat3::Acces, Some(dir.attr));
    }
    match fs.lookup(&dir, &a.what.name).await {
        Ok(n) => Nfs3Res::Ok(LookupResOk {
            object: n.handle(),
            obj_attributes: Some(n.attr),
            dir_attributes: Some(dir.attr),
        }),
        Err(s) => Nfs3Res::Fail(s, Some(dir.attr)),
    }
}

async fn access(fs: &Fs, caller: &Caller, a: AccessArgs) -> AccessRes {
    let n = match node(fs, caller, &a.object).await {
        Ok(n) => n,
        Err(s) => return Nfs3Res::Fail(s, None),
    };
    let cred = cred_for(caller, &n);
    let attr = fs.getattr(&n).await;
    let ro = n.export.config.read_only;
    let mut granted = 0;
    let may = |want| crate::fs::permitted(&cred, &attr, want);
    if may(PERM_R) {
        granted |= ACCESS3_READ;
    }
    if n.is_dir() {
        if may(PERM_X) {
            granted |= ACCESS3_LOOKUP;
        }
        if !ro && may(PERM_W | PERM_X) {
            granted |= ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE;
        }
    } else {
        if !ro && may(PERM_W) {
            granted |= ACCESS3_MODIFY | ACCESS3_EXTEND;
        }
        if may(PERM_X) {
            granted |= ACCESS3_EXECUTE;
        }
    }
    Nfs3Res::Ok(AccessResOk {
        obj_attributes: Some(attr),
        access: a.access & granted,
    })
}

async fn readlink(fs: &Fs, caller: &Caller, a: ReadlinkArgs) -> ReadlinkRes {
    let n = match node(fs, caller, &a.symlink).await {
        Ok(n) => n,
        Err(s) => return Nfs3Res::Fail(s, None),
    };
    match fs.readlink(&n).await {
        Ok(b) => Nfs3Res::Ok(ReadlinkResOk {
            symlink_attributes: Some(n.attr),
            data: b.to_vec(),
        }),
        Err(s) => Nfs3Res::Fail(s, Some(n.attr)),
    }
}

async fn read(fs: &Fs, caller: &Caller, a: ReadArgs) -> Answer {
    let r: ReadRes = async {
        let n = node(fs, caller, &a.file).await.map_err(|s| (s, None))?;
        let cred = cred_for(caller, &n);
        if !crate::fs::permitted(&cred, &n.attr, PERM_R) && cred.uid != n.attr.uid {
            return Err((Nfsstat3::Acces, Some(n.attr)));
        }
        let count = a.count.min(MAX_DATA as u32);
        let (data, eof) = fs
            .read(&n, a.offset, count)
            .await
            .map_err(|s| (s, Some(n.attr.clone())))?;
        Ok(ReadResOk {
            file_attributes: Some(fs.getattr(&n).await),
            count: data.len() as u32,
            eof,
            data,
        })
    }
    .await
    .map_or_else(|(s, a)| Nfs3Res::Fail(s, a), Nfs3Res::Ok);
    let bytes = match &r {
        Nfs3Res::Ok(ok) => ok.data.len() as u64,
        _ => 0,
    };
    let mut ans = answer_with_room(r, bytes as usize + 256);
    ans.bytes = bytes;
    ans
}

async fn write(fs: &Fs, caller: &Caller, a: WriteArgs) -> Answer {
    let len = a.data.len() as u64;
    let r: WriteRes = async {
        let n = node(fs, caller, &a.file)
            .await
            .map_err(|s| (s, WccData::default()))?;
        let before = fs.getattr(&n).await;
        let cred = cred_for(caller, &n);
        if a.count as usize != a.data.len() {
            return Err((Nfsstat3::Inval, WccData::default()));
        }
        let sync = a.stable != StableHow::Unstable;
        let durable = fs
            .write(&n, &cred, a.offset, a.data, sync)
            .await
            .map_err(|s| (s, WccData::default()))?;
        Ok(WriteResOk {
            file_wcc: WccData {
                before: Some(attr::wcc_of(&before)),
                after: Some(fs.getattr(&n).await),
            },
            count: a.count,
            committed: if durable {
                StableHow::FileSync
            } else {
                StableHow::Unstable
            },
            verf: fs.verifier(),
        })
    }
    .await
    .map_or_else(|(s, w)| Nfs3Res::Fail(s, w), Nfs3Res::Ok);
    let ok = matches!(r, Nfs3Res::Ok(_));
    let mut ans = answer(r);
    ans.bytes = if ok { len } else { 0 };
    ans
}

/// The reply to a change in `dir`: the new node's handle and attributes, and the directory's
/// before and after.
async fn created(fs: &Fs, dir: &Node, before: &Fattr3, r: Result<Node, Nfsstat3>) -> CreateRes {
    let wcc = fs.wcc(before, dir).await;
    match r {
        Ok(n) => Nfs3Res::Ok(CreateResOk {
            obj: Some(n.handle()),
            obj_attributes: Some(n.attr),
            dir_wcc: wcc,
        }),
        Err(s) => Nfs3Res::Fail(s, wcc),
    }
}

async fn create(fs: &Fs, caller: &Caller, a: CreateArgs) -> CreateRes {
    let dir = match node(fs, caller, &a.where_.dir).await {
        Ok(n) => n,
        Err(s) => return Nfs3Res::Fail(s, WccData::default()),
    };
    let before = dir.attr.clone();
    let r = fs
        .create(&dir, &a.where_.name, &a.how, &cred_for(caller, &dir))
        .await;
    created(fs, &dir, &before, r).await
}

async fn mkdir(fs: &Fs, caller: &Caller, a: MkdirArgs) -> MkdirRes {
    let dir = match node(fs, caller, &a.where_.dir).await {
        Ok(n) => n,
        Err(s) => return Nfs3Res::Fail(s, WccData::default()),
    };
    let before = dir.attr.clone();
    let r = fs
        .mkdir(&dir, &a.where_.name, &a.attributes, &cred_for(caller, &dir))
        .await;
    created(fs, &dir, &before, r).await
}

async fn symlink(fs: &Fs, caller: &Caller, a: SymlinkArgs) -> SymlinkRes {
    let dir = match node(fs, caller, &a.where_.dir).await {
        Ok(n) => n,
        Err(s) => return Nfs3Res::Fail(s, WccData::default()),
    };
    let before = dir.attr.clone();
    let r = fs
        .symlink(&dir, &a.where_.name, &a.target, &cred_for(caller, &dir))
        .await;
    created(fs, &dir, &before, r).await
}

async fn not_supported_in(fs: &Fs, dir: &NfsFh3) -> CreateRes {
    let wcc = match fs.resolve(dir).await {
        Ok(d) => WccData {
            before: Some(attr::wcc_of(&d.attr)),
            after: Some(d.attr),
        },
        Err(_) => WccData::default(),
    };
    Nfs3Res::Fail(Nfsstat3::Notsupp, wcc)
}

async fn link(fs: &Fs, a: LinkArgs) -> LinkRes {
    let file_attributes = fs.resolve(&a.file).await.ok().map(|n| n.attr);
    let linkdir_wcc = match fs.resolve(&a.link.dir).await {
        Ok(d) => WccData {
            before: Some(attr::wcc_of(&d.attr)),
            after: Some(d.attr),
        },
        Err(_) => WccData::default(),
    };
    Nfs3Res::Fail(
        Nfsstat3::Notsupp,
        LinkWcc {
            file_attributes,
            linkdir_wcc,
        },
    )
}

async fn remove(fs: &Fs, caller: &Caller, a: Diropargs3, dir_too: bool) -> RemoveRes {
    let dir = match node(fs, caller, &a.dir).await {
        Ok(n) => n,
        Err(s) => return Nfs3Res::Fail(s, WccData::default()),
    };
    let before = dir.attr.clone();
    let cred = cred_for(caller, &dir);
    let r = if dir_too {
        fs.rmdir(&dir, &a.name, &cred).await
    } else {
        fs.remove(&dir, &a.name, &cred).await
    };
    let wcc = fs.wcc(&before, &dir).await;
    match r {
        Ok(()) => Nfs3Res::Ok(wcc),
        Err(s) => Nfs3Res::Fail(s, wcc),
    }
}

async fn rename(fs: &Fs, caller: &Caller, a: RenameArgs) -> RenameRes {
    let from = node(fs, caller, &a.from.dir).await;
    let to = node(fs, caller, &a.to.dir).await;
    let (from, to) = match (from, to) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(s), _) | (_, Err(s)) => return Nfs3Res::Fail(s, RenameWcc::default()),
    };
    let (fb, tb) = (from.attr.clone(), to.attr.clone());
    let cred = cred_for(caller, &from);
    let r = fs.rename(&from, &a.from.name, &to, &a.to.name, &cred).await;
    let wcc = RenameWcc {
        fromdir_wcc: fs.wcc(&fb, &from).await,
        todir_wcc: fs.wcc(&tb, &to).await,
    };
    match r {
        Ok(()) => Nfs3Res::Ok(wcc),
        Err(s) => Nfs3Res::Fail(s, wcc),
    }
}

async fn dir_for_listing(
    fs: &Fs,
    caller: &Caller,
    fh: &NfsFh3,
) -> Result<Node, (Nfsstat3, PostOpAttr)> {
    let dir = node(fs, caller, fh).await.map_err(|s| (s, None))?;
    if !dir.is_dir() {
        return Err((Nfsstat3::Notdir, Some(dir.attr)));
    }
    if !crate::fs::permitted(&cred_for(caller, &dir), &dir.attr, PERM_R) {
        return Err((Nfsstat3::Acces, Some(dir.attr)));
    }
    Ok(dir)
}

async fn readdir(fs: &Fs, caller: &Caller, a: ReaddirArgs) -> ReaddirRes {
    let dir = match dir_for_listing(fs, caller, &a.dir).await {
        Ok(d) => d,
        Err((s, attr)) => return Nfs3Res::Fail(s, attr),
    };
    // The whole reply must fit `count`, with the status word.
    let budget = (a.count as usize).min(MAX_DATA);
    let mut used = 4 + readdir_resok_base_size(true);
    let r = fs
        .readdir(&dir, a.cookie, a.cookieverf, false, |e: &DirEntry| {
            let size = entry3_size(e.name.len());
            if used + size > budget {
                return false;
            }
            used += size;
            true
        })
        .await;
    match r {
        Ok((entries, eof)) if entries.is_empty() && !eof => {
            Nfs3Res::Fail(Nfsstat3::Toosmall, Some(dir.attr))
        }
        Ok((entries, eof)) => Nfs3Res::Ok(ReaddirResOk {
            dir_attributes: Some(dir.attr),
            cookieverf: fs.verifier(),
            entries: entries
                .into_iter()
                .map(|e| Entry3 {
                    fileid: e.fileid,
                    name: e.name,
                    cookie: e.cookie,
                })
                .collect(),
            eof,
        }),
        Err(s) => Nfs3Res::Fail(s, Some(dir.attr)),
    }
}

async fn readdirplus(fs: &Fs, caller: &Caller, a: ReaddirplusArgs) -> ReaddirplusRes {
    let dir = match dir_for_listing(fs, caller, &a.dir).await {
        Ok(d) => d,
        Err((s, attr)) => return Nfs3Res::Fail(s, attr),
    };
    let max = (a.maxcount as usize).min(MAX_DATA);
    let dircount = a.dircount as usize;
    let (mut used, mut names) = (4 + readdir_resok_base_size(true), 0usize);
    let r = fs
        .readdir(&dir, a.cookie, a.cookieverf, true, |e: &DirEntry| {
            let handle = e.plus.as_ref().map(|(_, h)| h.0.len());
            let size = entryplus3_size(e.name.len(), e.plus.is_some(), handle);
            let name_size = entry3_size(e.name.len());
            if used + size > max || (dircount > 0 && names + name_size > dircount) {
                return false;
            }
            used += size;
            names += name_size;
            true
        })
        .await;
    match r {
        Ok((entries, eof)) if entries.is_empty() && !eof => {
            Nfs3Res::Fail(Nfsstat3::Toosmall, Some(dir.attr))
        }
        Ok((entries, eof)) => Nfs3Res::Ok(ReaddirplusResOk {
            dir_attributes: Some(dir.attr),
            cookieverf: fs.verifier(),
            entries: entries
                .into_iter()
                .map(|e| {
                    let (attrs, handle) = match e.plus {
                        Some((a, h)) => (Some(a), Some(h)),
                        None => (None, None),
                    };
                    Entryplus3 {
                        fileid: e.fileid,
                        name: e.name,
                        cookie: e.cookie,
                        name_attributes: attrs,
                        name_handle: handle,
                    }
                })
                .collect(),
            eof,
        }),
        Err(s) => Nfs3Res::Fail(s, Some(dir.attr)),
    }
}

async fn fsstat(fs: &Fs, caller: &Caller, a: FsstatArgs) -> FsstatRes {
    let n = match node(fs, caller, &a.fsroot).await {
        Ok(n) => n,
        Err(s) => return Nfs3Res::Fail(s, None),
    };
    let (used, files) = fs.usage().await;
    // An object store has no fixed size: what is stored, and as much again free, at least
    // 1 TiB (clients only show these).
    let total = used.saturating_mul(2).max(1 << 40);
    Nfs3Res::Ok(FsstatResOk {
        obj_attributes: Some(n.attr),
        tbytes: total,
        fbytes: total - used,
        abytes: total - used,
        tfiles: files.saturating_add(1 << 30),
        ffiles: 1 << 30,
        afiles: 1 << 30,
        invarsec: 0,
    })
}

async fn fsinfo(fs: &Fs, caller: &Caller, a: FsinfoArgs) -> FsinfoRes {
    let n = match node(fs, caller, &a.fsroot).await {
        Ok(n) => n,
        Err(s) => return Nfs3Res::Fail(s, None),
    };
    Nfs3Res::Ok(FsinfoResOk {
        obj_attributes: Some(n.attr),
        rtmax: MAX_DATA as u32,
        rtpref: MAX_DATA as u32,
        rtmult: 4096,
        wtmax: MAX_DATA as u32,
        wtpref: MAX_DATA as u32,
        wtmult: 4096,
        dtpref: 64 << 10,
        maxfilesize: crate::fs::MAX_FILE_SIZE,
        // Times are stored in whole seconds (as s3fs stores them).
        time_delta: Nfstime3 {
            seconds: 1,
            nseconds: 0,
        },
        properties: FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
    })
}

async fn pathconf(fs: &Fs, caller: &Caller, a: PathconfArgs) -> PathconfRes {
    let n = match node(fs, caller, &a.object).await {
        Ok(n) => n,
        Err(s) => return Nfs3Res::Fail(s, None),
    };
    Nfs3Res::Ok(PathconfResOk {
        obj_attributes: Some(n.attr),
        linkmax: 1,
        name_max: NAME_MAX as u32,
        no_trunc: true,
        chown_restricted: true,
        case_insensitive: false,
        case_preserving: true,
    })
}

async fn commit(fs: &Fs, caller: &Caller, a: CommitArgs) -> CommitRes {
    let n = match node(fs, caller, &a.file).await {
        Ok(n) => n,
        Err(s) => return Nfs3Res::Fail(s, WccData::default()),
    };
    let before = fs.getattr(&n).await;
    let r = fs.commit(&n).await;
    let wcc = WccData {
        before: Some(attr::wcc_of(&before)),
        after: Some(fs.getattr(&n).await),
    };
    match r {
        Ok(()) => Nfs3Res::Ok(CommitResOk {
            file_wcc: wcc,
            verf: fs.verifier(),
        }),
        Err(s) => Nfs3Res::Fail(s, wcc),
    }
}
