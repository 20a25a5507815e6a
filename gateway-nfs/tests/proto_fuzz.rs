//! Bounded randomized tests of the wire-protocol layer: every NFSv3, MOUNT and port mapper
//! argument type round-trips through pack and unpack; random bytes, truncations and mutations of
//! valid encodings (and of whole RPC calls) never panic a decoder, and what decodes stays within
//! the protocol limits; `read_record` reassembles fragments and refuses oversize or cut records.
//!
//! Seeds are fixed; each randomized loop also stops after a time budget of about a second.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::io::AsyncWriteExt;

use cairn_nfs::mount::{self, Dirpath, ExportList, ExportNode, MntRes, MountBody, MountList};
use cairn_nfs::nfs3::*;
use cairn_nfs::portmap::{self, Mapping, MappingList};
use cairn_nfs::rpc::{self, Auth, AuthUnix, CallError};
use cairn_nfs::xdr::{decode, encode, Pack, Unpack, XdrError};

const SEEDS: [u64; 4] = [1, 0x5eed, 0xdead_beef, 20_240_601];
const BUDGET: Duration = Duration::from_millis(1200);

/// Stops a randomized loop after its time budget.
struct Budget(Instant);

impl Budget {
    fn start() -> Self {
        Budget(Instant::now() + BUDGET)
    }

    fn over(&self) -> bool {
        Instant::now() > self.0
    }
}

// ----- Random values -----

fn bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let mut v = vec![0u8; rng.gen_range(0..=max)];
    rng.fill_bytes(&mut v);
    v
}

fn fh(rng: &mut StdRng) -> NfsFh3 {
    NfsFh3(bytes(rng, NFS3_FHSIZE))
}

fn name(rng: &mut StdRng) -> Vec<u8> {
    if rng.gen_bool(0.05) {
        bytes(rng, NAME_DECODE_MAX)
    } else {
        bytes(rng, 40)
    }
}

fn time(rng: &mut StdRng) -> Nfstime3 {
    Nfstime3 {
        seconds: rng.gen(),
        nseconds: rng.gen_range(0..1_000_000_000),
    }
}

fn opt<T>(rng: &mut StdRng, f: impl FnOnce(&mut StdRng) -> T) -> Option<T> {
    if rng.gen() {
        Some(f(rng))
    } else {
        None
    }
}

fn set_time(rng: &mut StdRng) -> SetTime {
    match rng.gen_range(0..3) {
        0 => SetTime::DontChange,
        1 => SetTime::ServerTime,
        _ => SetTime::ClientTime(time(rng)),
    }
}

fn sattr(rng: &mut StdRng) -> Sattr3 {
    Sattr3 {
        mode: opt(rng, |r| r.gen()),
        uid: opt(rng, |r| r.gen()),
        gid: opt(rng, |r| r.gen()),
        size: opt(rng, |r| r.gen()),
        atime: set_time(rng),
        mtime: set_time(rng),
    }
}

fn dirop(rng: &mut StdRng) -> Diropargs3 {
    Diropargs3 {
        dir: fh(rng),
        name: name(rng),
    }
}

fn ftype(rng: &mut StdRng) -> Ftype3 {
    Ftype3::from_u32(rng.gen_range(1..=7)).unwrap()
}

fn fattr(rng: &mut StdRng) -> Fattr3 {
    Fattr3 {
        type_: ftype(rng),
        mode: rng.gen(),
        nlink: rng.gen(),
        uid: rng.gen(),
        gid: rng.gen(),
        size: rng.gen(),
        used: rng.gen(),
        rdev: Specdata3 {
            specdata1: rng.gen(),
            specdata2: rng.gen(),
        },
        fsid: rng.gen(),
        fileid: rng.gen(),
        atime: time(rng),
        mtime: time(rng),
        ctime: time(rng),
    }
}

fn post_op(rng: &mut StdRng) -> PostOpAttr {
    opt(rng, fattr)
}

fn wcc(rng: &mut StdRng) -> WccData {
    WccData {
        before: opt(rng, |r| WccAttr {
            size: r.gen(),
            mtime: time(r),
            ctime: time(r),
        }),
        after: post_op(rng),
    }
}

fn stable(rng: &mut StdRng) -> StableHow {
    StableHow::from_u32(rng.gen_range(0..3)).unwrap()
}

fn data(rng: &mut StdRng) -> Bytes {
    let max = if rng.gen_ratio(1, 100) { MAX_DATA } else { 300 };
    Bytes::from(bytes(rng, max))
}

fn status(rng: &mut StdRng) -> Nfsstat3 {
    loop {
        if let Some(s) = Nfsstat3::from_u32(rng.gen_range(1..=10008)) {
            return s;
        }
    }
}

fn auth(rng: &mut StdRng) -> Auth {
    match rng.gen_range(0..3) {
        0 => Auth::None,
        1 => Auth::Unix(AuthUnix {
            stamp: rng.gen(),
            machine: bytes(rng, rpc::MAX_MACHINE_NAME),
            uid: rng.gen(),
            gid: rng.gen(),
            gids: (0..rng.gen_range(0..=rpc::MAX_AUTH_GIDS))
                .map(|_| rng.gen())
                .collect(),
        }),
        _ => Auth::Other(rng.gen_range(2..10)),
    }
}

// ----- Arguments of every procedure -----

#[derive(Clone, Debug, PartialEq, Eq)]
enum Args {
    Null(()),
    Getattr(GetattrArgs),
    Setattr(SetattrArgs),
    Lookup(LookupArgs),
    Access(AccessArgs),
    Readlink(ReadlinkArgs),
    Read(ReadArgs),
    Write(WriteArgs),
    Create(CreateArgs),
    Mkdir(MkdirArgs),
    Symlink(SymlinkArgs),
    Mknod(MknodArgs),
    Remove(RemoveArgs),
    Rmdir(RmdirArgs),
    Rename(RenameArgs),
    Link(LinkArgs),
    Readdir(ReaddirArgs),
    Readdirplus(ReaddirplusArgs),
    Fsstat(FsstatArgs),
    Fsinfo(FsinfoArgs),
    Pathconf(PathconfArgs),
    Commit(CommitArgs),
    MntDirpath(Dirpath),
    Pmap(Mapping),
}

/// The programs whose arguments are exercised: (program, procedure).
fn all_procs() -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = (PROC_NULL..=PROC_COMMIT)
        .map(|p| (rpc::PROG_NFS, p))
        .collect();
    v.extend([
        (rpc::PROG_MOUNT, mount::PROC_NULL),
        (rpc::PROG_MOUNT, mount::PROC_MNT),
        (rpc::PROG_MOUNT, mount::PROC_UMNT),
        (rpc::PROG_PORTMAP, portmap::PROC_GETPORT),
        (rpc::PROG_PORTMAP, portmap::PROC_SET),
    ]);
    v
}

fn gen_args(rng: &mut StdRng, prog: u32, proc_: u32) -> Args {
    if prog == rpc::PROG_MOUNT {
        return match proc_ {
            mount::PROC_MNT | mount::PROC_UMNT => {
                Args::MntDirpath(Dirpath(bytes(rng, mount::MNTPATHLEN)))
            }
            _ => Args::Null(()),
        };
    }
    if prog == rpc::PROG_PORTMAP {
        return match proc_ {
            portmap::PROC_NULL | portmap::PROC_DUMP => Args::Null(()),
            _ => Args::Pmap(Mapping {
                prog: rng.gen(),
                vers: rng.gen(),
                prot: rng.gen(),
                port: rng.gen(),
            }),
        };
    }
    match proc_ {
        PROC_GETATTR => Args::Getattr(GetattrArgs { object: fh(rng) }),
        PROC_SETATTR => Args::Setattr(SetattrArgs {
            object: fh(rng),
            new_attributes: sattr(rng),
            guard: opt(rng, time),
        }),
        PROC_LOOKUP => Args::Lookup(LookupArgs { what: dirop(rng) }),
        PROC_ACCESS => Args::Access(AccessArgs {
            object: fh(rng),
            access: rng.gen(),
        }),
        PROC_READLINK => Args::Readlink(ReadlinkArgs { symlink: fh(rng) }),
        PROC_READ => Args::Read(ReadArgs {
            file: fh(rng),
            offset: rng.gen(),
            count: rng.gen(),
        }),
        PROC_WRITE => {
            let data = data(rng);
            Args::Write(WriteArgs {
                file: fh(rng),
                offset: rng.gen(),
                count: if rng.gen_bool(0.9) {
                    data.len() as u32
                } else {
                    rng.gen()
                },
                stable: stable(rng),
                data,
            })
        }
        PROC_CREATE => Args::Create(CreateArgs {
            where_: dirop(rng),
            how: match rng.gen_range(0..3) {
                0 => CreateHow::Unchecked(sattr(rng)),
                1 => CreateHow::Guarded(sattr(rng)),
                _ => CreateHow::Exclusive(rng.gen()),
            },
        }),
        PROC_MKDIR => Args::Mkdir(MkdirArgs {
            where_: dirop(rng),
            attributes: sattr(rng),
        }),
        PROC_SYMLINK => Args::Symlink(SymlinkArgs {
            where_: dirop(rng),
            attributes: sattr(rng),
            target: bytes(rng, PATH_MAX),
        }),
        PROC_MKNOD => Args::Mknod(MknodArgs {
            where_: dirop(rng),
            what: match ftype(rng) {
                Ftype3::Chr => MknodData3::Chr {
                    attributes: sattr(rng),
                    spec: Specdata3 {
                        specdata1: rng.gen(),
                        specdata2: rng.gen(),
                    },
                },
                Ftype3::Blk => MknodData3::Blk {
                    attributes: sattr(rng),
                    spec: Specdata3 {
                        specdata1: rng.gen(),
                        specdata2: rng.gen(),
                    },
                },
                Ftype3::Sock => MknodData3::Sock(sattr(rng)),
                Ftype3::Fifo => MknodData3::Fifo(sattr(rng)),
                other => MknodData3::Other(other),
            },
        }),
        PROC_REMOVE => Args::Remove(RemoveArgs { object: dirop(rng) }),
        PROC_RMDIR => Args::Rmdir(RmdirArgs { object: dirop(rng) }),
        PROC_RENAME => Args::Rename(RenameArgs {
            from: dirop(rng),
            to: dirop(rng),
        }),
        PROC_LINK => Args::Link(LinkArgs {
            file: fh(rng),
            link: dirop(rng),
        }),
        PROC_READDIR => Args::Readdir(ReaddirArgs {
            dir: fh(rng),
            cookie: rng.gen(),
            cookieverf: rng.gen(),
            count: rng.gen(),
        }),
        PROC_READDIRPLUS => Args::Readdirplus(ReaddirplusArgs {
            dir: fh(rng),
            cookie: rng.gen(),
            cookieverf: rng.gen(),
            dircount: rng.gen(),
            maxcount: rng.gen(),
        }),
        PROC_FSSTAT => Args::Fsstat(FsstatArgs { fsroot: fh(rng) }),
        PROC_FSINFO => Args::Fsinfo(FsinfoArgs { fsroot: fh(rng) }),
        PROC_PATHCONF => Args::Pathconf(PathconfArgs { object: fh(rng) }),
        PROC_COMMIT => Args::Commit(CommitArgs {
            file: fh(rng),
            offset: rng.gen(),
            count: rng.gen(),
        }),
        _ => Args::Null(()),
    }
}

fn encode_args(a: &Args) -> Vec<u8> {
    match a {
        Args::Null(v) => encode(v),
        Args::Getattr(v) => encode(v),
        Args::Setattr(v) => encode(v),
        Args::Lookup(v) => encode(v),
        Args::Access(v) => encode(v),
        Args::Readlink(v) => encode(v),
        Args::Read(v) => encode(v),
        Args::Write(v) => encode(v),
        Args::Create(v) => encode(v),
        Args::Mkdir(v) => encode(v),
        Args::Symlink(v) => encode(v),
        Args::Mknod(v) => encode(v),
        Args::Remove(v) => encode(v),
        Args::Rmdir(v) => encode(v),
        Args::Rename(v) => encode(v),
        Args::Link(v) => encode(v),
        Args::Readdir(v) => encode(v),
        Args::Readdirplus(v) => encode(v),
        Args::Fsstat(v) => encode(v),
        Args::Fsinfo(v) => encode(v),
        Args::Pathconf(v) => encode(v),
        Args::Commit(v) => encode(v),
        Args::MntDirpath(v) => encode(v),
        Args::Pmap(v) => encode(v),
    }
}

/// Decodes the arguments of `proc_` of `prog` as a server would.
fn decode_args(prog: u32, proc_: u32, b: &[u8]) -> Result<Args, XdrError> {
    if prog == rpc::PROG_MOUNT {
        return match proc_ {
            mount::PROC_MNT | mount::PROC_UMNT => decode(b).map(Args::MntDirpath),
            _ => decode(b).map(Args::Null),
        };
    }
    if prog == rpc::PROG_PORTMAP {
        return match proc_ {
            portmap::PROC_NULL | portmap::PROC_DUMP => decode(b).map(Args::Null),
            _ => decode(b).map(Args::Pmap),
        };
    }
    match proc_ {
        PROC_GETATTR => decode(b).map(Args::Getattr),
        PROC_SETATTR => decode(b).map(Args::Setattr),
        PROC_LOOKUP => decode(b).map(Args::Lookup),
        PROC_ACCESS => decode(b).map(Args::Access),
        PROC_READLINK => decode(b).map(Args::Readlink),
        PROC_READ => decode(b).map(Args::Read),
        PROC_WRITE => decode(b).map(Args::Write),
        PROC_CREATE => decode(b).map(Args::Create),
        PROC_MKDIR => decode(b).map(Args::Mkdir),
        PROC_SYMLINK => decode(b).map(Args::Symlink),
        PROC_MKNOD => decode(b).map(Args::Mknod),
        PROC_REMOVE => decode(b).map(Args::Remove),
        PROC_RMDIR => decode(b).map(Args::Rmdir),
        PROC_RENAME => decode(b).map(Args::Rename),
        PROC_LINK => decode(b).map(Args::Link),
        PROC_READDIR => decode(b).map(Args::Readdir),
        PROC_READDIRPLUS => decode(b).map(Args::Readdirplus),
        PROC_FSSTAT => decode(b).map(Args::Fsstat),
        PROC_FSINFO => decode(b).map(Args::Fsinfo),
        PROC_PATHCONF => decode(b).map(Args::Pathconf),
        PROC_COMMIT => decode(b).map(Args::Commit),
        _ => decode(b).map(Args::Null),
    }
}

// ----- Limits of what decodes -----

fn within(what: &str, v: &[u8], cap: usize, max: usize) {
    assert!(
        v.len() <= max && cap <= max.max(v.len()),
        "{what}: {} bytes (capacity {cap}) over the limit {max}",
        v.len()
    );
}

fn check_fh(fh: &NfsFh3) {
    within("file handle", &fh.0, fh.0.capacity(), NFS3_FHSIZE);
}

fn check_dirop(d: &Diropargs3) {
    check_fh(&d.dir);
    within("name", &d.name, d.name.capacity(), NAME_DECODE_MAX);
}

fn check_args(a: &Args) {
    match a {
        Args::Null(()) | Args::Pmap(_) => {}
        Args::Getattr(v) => check_fh(&v.object),
        Args::Setattr(v) => check_fh(&v.object),
        Args::Lookup(v) => check_dirop(&v.what),
        Args::Access(v) => check_fh(&v.object),
        Args::Readlink(v) => check_fh(&v.symlink),
        Args::Read(v) => check_fh(&v.file),
        Args::Write(v) => {
            check_fh(&v.file);
            within("write data", &v.data, v.data.len(), MAX_DATA);
        }
        Args::Create(v) => check_dirop(&v.where_),
        Args::Mkdir(v) => check_dirop(&v.where_),
        Args::Symlink(v) => {
            check_dirop(&v.where_);
            within("target", &v.target, v.target.capacity(), PATH_MAX);
        }
        Args::Mknod(v) => check_dirop(&v.where_),
        Args::Remove(v) => check_dirop(&v.object),
        Args::Rmdir(v) => check_dirop(&v.object),
        Args::Rename(v) => {
            check_dirop(&v.from);
            check_dirop(&v.to);
        }
        Args::Link(v) => {
            check_fh(&v.file);
            check_dirop(&v.link);
        }
        Args::Readdir(v) => check_fh(&v.dir),
        Args::Readdirplus(v) => check_fh(&v.dir),
        Args::Fsstat(v) => check_fh(&v.fsroot),
        Args::Fsinfo(v) => check_fh(&v.fsroot),
        Args::Pathconf(v) => check_fh(&v.object),
        Args::Commit(v) => check_fh(&v.file),
        Args::MntDirpath(v) => within("dirpath", &v.0, v.0.capacity(), mount::MNTPATHLEN),
    }
}

fn check_auth(a: &Auth) {
    if let Auth::Unix(u) = a {
        within(
            "machine name",
            &u.machine,
            u.machine.capacity(),
            rpc::MAX_MACHINE_NAME,
        );
        assert!(u.gids.len() <= rpc::MAX_AUTH_GIDS && u.gids.capacity() <= rpc::MAX_AUTH_GIDS);
    }
}

/// Runs `f` on `input`, turning a panic into a failure that shows the input.
fn no_panic<'a, T>(label: &str, input: &'a [u8], f: impl FnOnce(&'a [u8]) -> T) -> T {
    match catch_unwind(AssertUnwindSafe(|| f(input))) {
        Ok(v) => v,
        Err(_) => panic!(
            "{label}: decoder panicked on {} bytes: {}",
            input.len(),
            hex::encode(&input[..input.len().min(512)])
        ),
    }
}

/// Decodes `input` as the arguments of (`prog`, `proc_`); checks limits if it decodes.
/// Returns whether it decoded.
fn fuzz_args(prog: u32, proc_: u32, input: &[u8]) -> bool {
    let label = format!("args of {prog}/{proc_}");
    match no_panic(&label, input, |b| decode_args(prog, proc_, b)) {
        Ok(a) => {
            check_args(&a);
            true
        }
        Err(_) => false,
    }
}

/// Parses `input` as an RPC call and, if it is one, its arguments. Returns whether the header
/// parsed.
fn fuzz_call(input: &[u8]) -> bool {
    match no_panic("call header", input, rpc::parse_call) {
        Ok(call) => {
            check_auth(&call.auth);
            assert!(call.args.len() <= input.len());
            let _ = fuzz_args(call.prog, call.proc_, call.args);
            if call.prog == rpc::PROG_NFS && call.proc_ == PROC_WRITE {
                let record = Bytes::copy_from_slice(input);
                let args = &record[input.len() - call.args.len()..];
                if let Ok(w) = WriteArgs::decode_shared(&record, args) {
                    assert!(w.data.len() <= MAX_DATA);
                }
            }
            true
        }
        Err(e) => {
            let _ = e.reply();
            false
        }
    }
}

/// Decodes `input` as every result, MOUNT and port mapper type (as a client would).
fn fuzz_results(input: &[u8]) {
    fn try_all<T: Unpack>(label: &str, input: &[u8]) -> Option<T> {
        no_panic(label, input, |b| decode::<T>(b).ok())
    }
    try_all::<GetattrRes>("getattr res", input);
    try_all::<SetattrRes>("setattr res", input);
    if let Some(Nfs3Res::Ok(ok)) = try_all::<LookupRes>("lookup res", input) {
        check_fh(&ok.object);
    }
    try_all::<AccessRes>("access res", input);
    if let Some(Nfs3Res::Ok(ok)) = try_all::<ReadlinkRes>("readlink res", input) {
        assert!(ok.data.len() <= PATH_MAX);
    }
    if let Some(Nfs3Res::Ok(ok)) = try_all::<ReadRes>("read res", input) {
        assert!(ok.data.len() <= MAX_DATA);
    }
    try_all::<WriteRes>("write res", input);
    try_all::<CreateRes>("create res", input);
    try_all::<RenameRes>("rename res", input);
    try_all::<LinkRes>("link res", input);
    if let Some(Nfs3Res::Ok(ok)) = try_all::<ReaddirRes>("readdir res", input) {
        let size: usize = ok.entries.iter().map(Entry3::encoded_len).sum();
        assert!(size <= input.len());
    }
    if let Some(Nfs3Res::Ok(ok)) = try_all::<ReaddirplusRes>("readdirplus res", input) {
        let size: usize = ok.entries.iter().map(Entryplus3::encoded_len).sum();
        assert!(size <= input.len());
    }
    try_all::<FsstatRes>("fsstat res", input);
    try_all::<FsinfoRes>("fsinfo res", input);
    try_all::<PathconfRes>("pathconf res", input);
    try_all::<CommitRes>("commit res", input);
    if let Some(MntRes::Ok { auth_flavors, .. }) = try_all::<MntRes>("mnt res", input) {
        assert!(auth_flavors.len() <= mount::MAX_AUTH_FLAVORS);
    }
    try_all::<ExportList>("export list", input);
    try_all::<MountList>("mount list", input);
    try_all::<MappingList>("pmap list", input);
    no_panic("auth_sys body", input, AuthUnix::decode).ok();
}

/// Interesting values for a length or discriminant word.
const WORDS: [u32; 20] = [
    0,
    1,
    2,
    3,
    7,
    8,
    64,
    65,
    255,
    256,
    400,
    401,
    1024,
    1025,
    4096,
    4097,
    1 << 20,
    (1 << 20) + 1,
    0x7fff_ffff,
    0xffff_ffff,
];

fn mutate(rng: &mut StdRng, valid: &[u8]) -> Vec<u8> {
    let mut v = valid.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        match rng.gen_range(0..7) {
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] = rng.gen();
            }
            2 if v.len() >= 4 => {
                let i = rng.gen_range(0..v.len() / 4) * 4;
                let w = if rng.gen_bool(0.8) {
                    WORDS[rng.gen_range(0..WORDS.len())]
                } else {
                    rng.gen()
                };
                v[i..i + 4].copy_from_slice(&w.to_be_bytes());
            }
            3 => {
                let n = rng.gen_range(0..=v.len());
                v.truncate(n);
            }
            4 => {
                let at = rng.gen_range(0..=v.len());
                let extra = bytes(rng, 12);
                v.splice(at..at, extra);
            }
            5 if !v.is_empty() => {
                let a = rng.gen_range(0..v.len());
                let b = rng.gen_range(a..=v.len().min(a + 16));
                v.drain(a..b);
            }
            _ => v.extend(bytes(rng, 8)),
        }
    }
    v
}

fn call_bytes(xid: u32, prog: u32, vers: u32, proc_: u32, auth: &Auth, args: &[u8]) -> Vec<u8> {
    let mut v = rpc::encode_call(xid, prog, vers, proc_, auth).into_inner();
    v.extend_from_slice(args);
    v
}

// ----- Tests -----

#[test]
fn every_args_type_round_trips() {
    for seed in SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        for (prog, proc_) in all_procs() {
            for _ in 0..30 {
                let a = gen_args(&mut rng, prog, proc_);
                let b = encode_args(&a);
                assert_eq!(b.len() % 4, 0, "{prog}/{proc_}: not a multiple of 4");
                assert_eq!(decode_args(prog, proc_, &b).as_ref(), Ok(&a));
                // Every proper prefix is truncated (the decoder reads left to right).
                let cuts: Vec<usize> = if b.len() <= 2048 {
                    (0..b.len()).collect()
                } else {
                    (0..64).map(|_| rng.gen_range(0..b.len())).collect()
                };
                for cut in cuts {
                    assert_eq!(
                        decode_args(prog, proc_, &b[..cut]),
                        Err(XdrError::Truncated),
                        "{prog}/{proc_} cut at {cut}"
                    );
                }
                // Through a whole call.
                let auth = auth(&mut rng);
                let call = call_bytes(rng.gen(), prog, 3, proc_, &auth, &b);
                let parsed = rpc::parse_call(&call).unwrap();
                assert_eq!((parsed.prog, parsed.proc_), (prog, proc_));
                assert_eq!(parsed.auth, auth);
                assert_eq!(parsed.args, &b[..]);
            }
        }
    }
}

#[test]
fn results_round_trip() {
    fn rt<T: Pack + Unpack + PartialEq + std::fmt::Debug>(v: T) {
        let b = encode(&v);
        assert_eq!(b.len() % 4, 0);
        assert_eq!(decode::<T>(&b), Ok(v));
    }
    fn res<T, F>(rng: &mut StdRng, ok: impl FnOnce(&mut StdRng) -> T, fail: F) -> Nfs3Res<T, F> {
        if rng.gen_bool(0.7) {
            Nfs3Res::Ok(ok(rng))
        } else {
            Nfs3Res::Fail(status(rng), fail)
        }
    }
    for seed in SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..200 {
            let r = &mut rng;
            let fail_attr = post_op(r);
            let fail_wcc = wcc(r);
            rt::<GetattrRes>(res(r, fattr, ()));
            rt::<SetattrRes>(res(r, wcc, fail_wcc.clone()));
            rt::<LookupRes>(res(
                r,
                |r| LookupResOk {
                    object: fh(r),
                    obj_attributes: post_op(r),
                    dir_attributes: post_op(r),
                },
                fail_attr.clone(),
            ));
            rt::<AccessRes>(res(
                r,
                |r| AccessResOk {
                    obj_attributes: post_op(r),
                    access: r.gen(),
                },
                fail_attr.clone(),
            ));
            rt::<ReadlinkRes>(res(
                r,
                |r| ReadlinkResOk {
                    symlink_attributes: post_op(r),
                    data: bytes(r, PATH_MAX),
                },
                fail_attr.clone(),
            ));
            rt::<ReadRes>(res(
                r,
                |r| {
                    let data = data(r);
                    ReadResOk {
                        file_attributes: post_op(r),
                        count: data.len() as u32,
                        eof: r.gen(),
                        data,
                    }
                },
                fail_attr.clone(),
            ));
            rt::<WriteRes>(res(
                r,
                |r| WriteResOk {
                    file_wcc: wcc(r),
                    count: r.gen(),
                    committed: stable(r),
                    verf: r.gen(),
                },
                fail_wcc.clone(),
            ));
            rt::<CreateRes>(res(
                r,
                |r| CreateResOk {
                    obj: opt(r, fh),
                    obj_attributes: post_op(r),
                    dir_wcc: wcc(r),
                },
                fail_wcc.clone(),
            ));
            rt::<RemoveRes>(res(r, wcc, fail_wcc.clone()));
            let rename = RenameWcc {
                fromdir_wcc: wcc(r),
                todir_wcc: wcc(r),
            };
            rt::<RenameRes>(res(r, |_| rename.clone(), rename.clone()));
            let link = LinkWcc {
                file_attributes: post_op(r),
                linkdir_wcc: wcc(r),
            };
            rt::<LinkRes>(res(r, |_| link.clone(), link.clone()));
            rt::<ReaddirRes>(res(
                r,
                |r| ReaddirResOk {
                    dir_attributes: post_op(r),
                    cookieverf: r.gen(),
                    entries: (0..r.gen_range(0..20))
                        .map(|_| Entry3 {
                            fileid: r.gen(),
                            name: name(r),
                            cookie: r.gen(),
                        })
                        .collect(),
                    eof: r.gen(),
                },
                fail_attr.clone(),
            ));
            rt::<ReaddirplusRes>(res(
                r,
                |r| ReaddirplusResOk {
                    dir_attributes: post_op(r),
                    cookieverf: r.gen(),
                    entries: (0..r.gen_range(0..20))
                        .map(|_| Entryplus3 {
                            fileid: r.gen(),
                            name: name(r),
                            cookie: r.gen(),
                            name_attributes: post_op(r),
                            name_handle: opt(r, fh),
                        })
                        .collect(),
                    eof: r.gen(),
                },
                fail_attr.clone(),
            ));
            rt::<FsstatRes>(res(
                r,
                |r| FsstatResOk {
                    obj_attributes: post_op(r),
                    tbytes: r.gen(),
                    fbytes: r.gen(),
                    abytes: r.gen(),
                    tfiles: r.gen(),
                    ffiles: r.gen(),
                    afiles: r.gen(),
                    invarsec: r.gen(),
                },
                fail_attr.clone(),
            ));
            rt::<FsinfoRes>(res(
                r,
                |r| FsinfoResOk {
                    obj_attributes: post_op(r),
                    rtmax: r.gen(),
                    rtpref: r.gen(),
                    rtmult: r.gen(),
                    wtmax: r.gen(),
                    wtpref: r.gen(),
                    wtmult: r.gen(),
                    dtpref: r.gen(),
                    maxfilesize: r.gen(),
                    time_delta: time(r),
                    properties: r.gen(),
                },
                fail_attr.clone(),
            ));
            rt::<PathconfRes>(res(
                r,
                |r| PathconfResOk {
                    obj_attributes: post_op(r),
                    linkmax: r.gen(),
                    name_max: r.gen(),
                    no_trunc: r.gen(),
                    chown_restricted: r.gen(),
                    case_insensitive: r.gen(),
                    case_preserving: r.gen(),
                },
                fail_attr.clone(),
            ));
            rt::<CommitRes>(res(
                r,
                |r| CommitResOk {
                    file_wcc: wcc(r),
                    verf: r.gen(),
                },
                fail_wcc,
            ));
            rt(if r.gen() {
                MntRes::Ok {
                    fhandle: fh(r),
                    auth_flavors: (0..r.gen_range(0..=mount::MAX_AUTH_FLAVORS))
                        .map(|_| r.gen())
                        .collect(),
                }
            } else {
                MntRes::Fail(mount::Mountstat3::from_u32(13).unwrap())
            });
            rt(ExportList(
                (0..r.gen_range(0..5))
                    .map(|_| ExportNode {
                        dir: bytes(r, mount::MNTPATHLEN),
                        groups: (0..r.gen_range(0..4))
                            .map(|_| bytes(r, mount::MNTNAMLEN))
                            .collect(),
                    })
                    .collect(),
            ));
            rt(MountList(
                (0..r.gen_range(0..5))
                    .map(|_| MountBody {
                        hostname: bytes(r, mount::MNTNAMLEN),
                        directory: bytes(r, mount::MNTPATHLEN),
                    })
                    .collect(),
            ));
            rt(MappingList(
                (0..r.gen_range(0..5))
                    .map(|_| Mapping {
                        prog: r.gen(),
                        vers: r.gen(),
                        prot: r.gen(),
                        port: r.gen(),
                    })
                    .collect(),
            ));
        }
    }
}

#[test]
fn huge_lengths_are_refused_before_allocating() {
    let ff = [0xffu8; 4];
    assert_eq!(
        decode::<GetattrArgs>(&ff),
        Err(XdrError::TooLong {
            what: "nfs_fh3",
            len: 0xffff_ffff,
            max: NFS3_FHSIZE
        })
    );
    // LOOKUP with a 4 GiB name.
    let mut b = encode(&NfsFh3(vec![1; 8]));
    b.extend_from_slice(&ff);
    assert!(matches!(
        decode::<LookupArgs>(&b),
        Err(XdrError::TooLong {
            what: "filename3",
            ..
        })
    ));
    // WRITE of 1 MiB is accepted, one byte more is not.
    for (len, ok) in [(MAX_DATA, true), (MAX_DATA + 1, false)] {
        let w = WriteArgs {
            file: NfsFh3(vec![2; 16]),
            offset: 0,
            count: len as u32,
            stable: StableHow::FileSync,
            data: Bytes::from(vec![7u8; len]),
        };
        let got = decode::<WriteArgs>(&encode(&w));
        if ok {
            assert_eq!(got, Ok(w));
        } else {
            assert!(matches!(
                got,
                Err(XdrError::TooLong {
                    what: "write data",
                    ..
                })
            ));
        }
    }
    // A READ reply claiming 4 GiB of data, and a call credential claiming 4 GiB.
    let mut read = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
    read.extend_from_slice(&ff);
    assert!(matches!(
        decode::<ReadRes>(&read),
        Err(XdrError::TooLong { .. })
    ));
    let mut call = call_bytes(9, rpc::PROG_NFS, 3, 0, &Auth::None, &[]);
    call[28..32].copy_from_slice(&ff);
    assert_eq!(rpc::parse_call(&call), Err(CallError::BadCred { xid: 9 }));
    // Replace every word of valid encodings by huge lengths: errors, never a panic.
    let mut rng = StdRng::seed_from_u64(SEEDS[0]);
    for (prog, proc_) in all_procs() {
        for _ in 0..5 {
            let b = encode_args(&gen_args(&mut rng, prog, proc_));
            if b.len() > 4096 {
                continue;
            }
            for i in (0..b.len()).step_by(4) {
                for w in [0xffff_ffffu32, 0x8000_0000, 0x7fff_ffff, 0x0001_0000] {
                    let mut m = b.clone();
                    m[i..i + 4].copy_from_slice(&w.to_be_bytes());
                    let _ = fuzz_args(prog, proc_, &m);
                }
            }
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let budget = Budget::start();
    let procs = all_procs();
    'outer: for seed in SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..10_000 {
            if budget.over() {
                break 'outer;
            }
            let len = if rng.gen_bool(0.9) {
                rng.gen_range(0..200)
            } else {
                rng.gen_range(0..5000)
            };
            let mut input = vec![0u8; len];
            rng.fill_bytes(&mut input);
            // Small words make random data look like plausible lengths and discriminants.
            if rng.gen() {
                for chunk in input.chunks_mut(4) {
                    if rng.gen_bool(0.7) && chunk.len() == 4 {
                        let w = WORDS[rng.gen_range(0..8)];
                        chunk.copy_from_slice(&w.to_be_bytes());
                    }
                }
            }
            for &(prog, proc_) in &procs {
                let _ = fuzz_args(prog, proc_, &input);
            }
            let _ = fuzz_call(&input);
            fuzz_results(&input);
        }
    }
}

#[test]
fn mutated_args_never_panic() {
    let budget = Budget::start();
    let procs = all_procs();
    let (mut tried, mut decoded) = (0u64, 0u64);
    'outer: for seed in SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..10_000 {
            if budget.over() {
                break 'outer;
            }
            let (prog, proc_) = procs[rng.gen_range(0..procs.len())];
            let valid = encode_args(&gen_args(&mut rng, prog, proc_));
            for _ in 0..8 {
                let m = mutate(&mut rng, &valid);
                tried += 1;
                decoded += u64::from(fuzz_args(prog, proc_, &m));
                // The same bytes as another procedure's arguments.
                let (p2, q2) = procs[rng.gen_range(0..procs.len())];
                let _ = fuzz_args(p2, q2, &m);
            }
        }
    }
    // The mutations must reach the success paths too, not only fail at the first word.
    assert!(
        tried > 1000 && decoded * 20 > tried,
        "{decoded} of {tried} decoded"
    );
}

#[test]
fn mutated_calls_never_panic() {
    let budget = Budget::start();
    let procs = all_procs();
    let (mut tried, mut parsed) = (0u64, 0u64);
    'outer: for seed in SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..10_000 {
            if budget.over() {
                break 'outer;
            }
            let (prog, proc_) = procs[rng.gen_range(0..procs.len())];
            let args = encode_args(&gen_args(&mut rng, prog, proc_));
            let auth = auth(&mut rng);
            let call = call_bytes(rng.gen(), prog, rng.gen_range(1..4), proc_, &auth, &args);
            // Every truncation of the header, then random mutations.
            let header = call.len() - args.len();
            for cut in 0..header {
                let got = no_panic("call header", &call[..cut], rpc::parse_call);
                assert!(got.is_err(), "header cut at {cut} parsed");
            }
            for _ in 0..8 {
                tried += 1;
                parsed += u64::from(fuzz_call(&mutate(&mut rng, &call)));
            }
        }
    }
    assert!(
        tried > 1000 && parsed * 20 > tried,
        "{parsed} of {tried} parsed"
    );
}

#[test]
fn mutated_results_never_panic() {
    let budget = Budget::start();
    'outer: for seed in SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..5000 {
            if budget.over() {
                break 'outer;
            }
            let r = &mut rng;
            let valid = match r.gen_range(0..5) {
                0 => encode::<ReaddirplusRes>(&Nfs3Res::Ok(ReaddirplusResOk {
                    dir_attributes: post_op(r),
                    cookieverf: r.gen(),
                    entries: (0..r.gen_range(0..5))
                        .map(|_| Entryplus3 {
                            fileid: r.gen(),
                            name: name(r),
                            cookie: r.gen(),
                            name_attributes: post_op(r),
                            name_handle: opt(r, fh),
                        })
                        .collect(),
                    eof: r.gen(),
                })),
                1 => encode::<LookupRes>(&Nfs3Res::Ok(LookupResOk {
                    object: fh(r),
                    obj_attributes: post_op(r),
                    dir_attributes: post_op(r),
                })),
                2 => encode(&MntRes::Ok {
                    fhandle: fh(r),
                    auth_flavors: vec![1, 0],
                }),
                3 => encode(&ExportList(vec![ExportNode {
                    dir: b"/bucket".to_vec(),
                    groups: vec![b"*".to_vec()],
                }])),
                _ => encode::<ReadRes>(&Nfs3Res::Ok(ReadResOk {
                    file_attributes: post_op(r),
                    count: 3,
                    eof: true,
                    data: Bytes::from_static(b"abc"),
                })),
            };
            for _ in 0..4 {
                let m = mutate(r, &valid);
                fuzz_results(&m);
            }
        }
    }
}

// ----- Record marking -----

/// Splits `rec` into fragments (some empty) with their record-marking headers.
fn fragment(rng: &mut StdRng, rec: &[u8], out: &mut Vec<u8>) {
    let mut rest = rec;
    loop {
        let n = if rest.is_empty() || rng.gen_bool(0.4) {
            rest.len()
        } else {
            rng.gen_range(0..=rest.len())
        };
        let (frag, tail) = rest.split_at(n);
        let last = tail.is_empty() && rng.gen_bool(0.8);
        let word = n as u32 | if last { 0x8000_0000 } else { 0 };
        out.extend_from_slice(&word.to_be_bytes());
        out.extend_from_slice(frag);
        rest = tail;
        if last {
            return;
        }
    }
}

#[tokio::test]
async fn read_record_reassembles_fragments() {
    for seed in SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut records = Vec::new();
        let mut stream = Vec::new();
        for i in 0..60 {
            let max = match i % 20 {
                0 => 200_000,
                1 => 0,
                _ => 3000,
            };
            let rec = bytes(&mut rng, max);
            fragment(&mut rng, &rec, &mut stream);
            records.push(rec);
        }
        let (mut client, mut server) = tokio::io::duplex(rng.gen_range(1..=8192));
        let mut wrng = StdRng::seed_from_u64(seed ^ 0xffff);
        let writer = tokio::spawn(async move {
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let n = wrng.gen_range(1..=rest.len().min(10_000));
                client.write_all(&rest[..n]).await.unwrap();
                rest = &rest[n..];
            }
            client.shutdown().await.unwrap();
        });
        for rec in records {
            let got = rpc::read_record(&mut server, rpc::MAX_RECORD)
                .await
                .unwrap();
            assert_eq!(got.as_deref(), Some(&rec[..]));
        }
        assert_eq!(
            rpc::read_record(&mut server, rpc::MAX_RECORD)
                .await
                .unwrap(),
            None
        );
        writer.await.unwrap();
    }
}

#[tokio::test]
async fn read_record_limits_and_eof() {
    use std::io::ErrorKind;
    // Exactly MAX_RECORD bytes in several fragments pass; one more byte does not.
    for (len, ok) in [(rpc::MAX_RECORD, true), (rpc::MAX_RECORD + 1, false)] {
        let rec = vec![5u8; len];
        let mut s = Vec::new();
        let third = len / 3;
        s.extend_from_slice(&(third as u32).to_be_bytes());
        s.extend_from_slice(&rec[..third]);
        s.extend_from_slice(&(third as u32).to_be_bytes());
        s.extend_from_slice(&rec[third..2 * third]);
        s.extend_from_slice(&((len - 2 * third) as u32 | 0x8000_0000).to_be_bytes());
        s.extend_from_slice(&rec[2 * third..]);
        let got = rpc::read_record(&mut &s[..], rpc::MAX_RECORD).await;
        if ok {
            assert_eq!(got.unwrap(), Some(rec));
        } else {
            assert_eq!(got.unwrap_err().kind(), ErrorKind::InvalidData);
        }
    }
    // A 2 GiB fragment announced with nothing behind it is refused at once, not read.
    let huge = [0xff, 0xff, 0xff, 0xff];
    let e = rpc::read_record(&mut &huge[..], rpc::MAX_RECORD)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    // Fragments that add up past the limit.
    let mut s = Vec::new();
    for _ in 0..3 {
        s.extend_from_slice(&[0, 0, 0, 8]);
        s.extend_from_slice(&[0; 8]);
    }
    let e = rpc::read_record(&mut &s[..], 20).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    // End of stream: before a record (clean), inside a header, inside a fragment, between
    // fragments, and with a large fragment announced but barely started.
    assert_eq!(rpc::read_record(&mut &[][..], 64).await.unwrap(), None);
    let cut_cases: [&[u8]; 4] = [
        &[0x80, 0],
        &[0x80, 0, 0, 4, 1, 2],
        &[0, 0, 0, 2, 1, 2],
        &[0x80, 0x10, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    ];
    for case in cut_cases {
        let e = rpc::read_record(&mut &case[..], rpc::MAX_RECORD)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{case:?}");
    }
    // The same through a pipe whose writer goes away mid-record.
    let (mut client, mut server) = tokio::io::duplex(64);
    client.write_all(&[0x80, 0, 1, 0, 1, 2, 3]).await.unwrap();
    drop(client);
    let e = rpc::read_record(&mut server, rpc::MAX_RECORD)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn read_record_random_streams() {
    let budget = Budget::start();
    let max = 4096;
    'outer: for seed in SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..2000 {
            if budget.over() {
                break 'outer;
            }
            let mut valid = Vec::new();
            for _ in 0..rng.gen_range(1..4) {
                let rec = bytes(&mut rng, 2000);
                fragment(&mut rng, &rec, &mut valid);
            }
            let input = if rng.gen() {
                mutate(&mut rng, &valid)
            } else {
                bytes(&mut rng, 64)
            };
            let mut r = &input[..];
            // Every record returned is within the limit; the loop ends on error or EOF.
            let mut total = 0;
            while let Ok(Some(rec)) = rpc::read_record(&mut r, max).await {
                assert!(rec.len() <= max);
                total += rec.len();
                assert!(total <= input.len());
            }
        }
    }
}
