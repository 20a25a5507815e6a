//! NFS version 3 (RFC 1813): the data types, every procedure's arguments and results.
//!
//! Arguments implement [`Unpack`] (and [`Pack`], for clients and tests); results implement
//! [`Pack`] (and [`Unpack`]). A result is an [`Nfs3Res`]: `Ok(body)` packs `NFS3_OK` then the
//! procedure's `resok` arm, `Fail(status, body)` packs the status then the `resfail` arm.
//!
//! Limits enforced while decoding: file handles ≤ [`NFS3_FHSIZE`] bytes, names ≤
//! [`NAME_DECODE_MAX`] bytes (longer is garbage), symlink targets ≤ [`PATH_MAX`] bytes, WRITE data
//! ≤ [`MAX_DATA`] bytes. Names are kept as raw bytes up to [`NAME_DECODE_MAX`] so that the server,
//! not the decoder, answers `NFS3ERR_NAMETOOLONG` for a name over [`NAME_MAX`] (see
//! [`name_too_long`]).

use crate::xdr::{xdr_enum, xdr_struct, Pack, Reader, Unpack, Writer, XdrError};

mod args;
mod res;
#[cfg(test)]
mod tests;

pub use args::*;
pub use res::*;

/// Procedure 0: do nothing.
pub const PROC_NULL: u32 = 0;
/// Procedure 1: get file attributes.
pub const PROC_GETATTR: u32 = 1;
/// Procedure 2: set file attributes.
pub const PROC_SETATTR: u32 = 2;
/// Procedure 3: look up a file name.
pub const PROC_LOOKUP: u32 = 3;
/// Procedure 4: check access permission.
pub const PROC_ACCESS: u32 = 4;
/// Procedure 5: read a symbolic link.
pub const PROC_READLINK: u32 = 5;
/// Procedure 6: read from a file.
pub const PROC_READ: u32 = 6;
/// Procedure 7: write to a file.
pub const PROC_WRITE: u32 = 7;
/// Procedure 8: create a file.
pub const PROC_CREATE: u32 = 8;
/// Procedure 9: create a directory.
pub const PROC_MKDIR: u32 = 9;
/// Procedure 10: create a symbolic link.
pub const PROC_SYMLINK: u32 = 10;
/// Procedure 11: create a special device.
pub const PROC_MKNOD: u32 = 11;
/// Procedure 12: remove a file.
pub const PROC_REMOVE: u32 = 12;
/// Procedure 13: remove a directory.
pub const PROC_RMDIR: u32 = 13;
/// Procedure 14: rename a file or directory.
pub const PROC_RENAME: u32 = 14;
/// Procedure 15: create a hard link.
pub const PROC_LINK: u32 = 15;
/// Procedure 16: read from a directory.
pub const PROC_READDIR: u32 = 16;
/// Procedure 17: extended read from a directory.
pub const PROC_READDIRPLUS: u32 = 17;
/// Procedure 18: get dynamic file system information.
pub const PROC_FSSTAT: u32 = 18;
/// Procedure 19: get static file system information.
pub const PROC_FSINFO: u32 = 19;
/// Procedure 20: retrieve POSIX information.
pub const PROC_PATHCONF: u32 = 20;
/// Procedure 21: commit cached data to stable storage.
pub const PROC_COMMIT: u32 = 21;

/// Largest file handle.
pub const NFS3_FHSIZE: usize = 64;
/// Size of a READDIR cookie verifier.
pub const NFS3_COOKIEVERFSIZE: usize = 8;
/// Size of an exclusive CREATE verifier.
pub const NFS3_CREATEVERFSIZE: usize = 8;
/// Size of a WRITE/COMMIT verifier.
pub const NFS3_WRITEVERFSIZE: usize = 8;
/// Longest file name the server accepts; longer ones get `NFS3ERR_NAMETOOLONG`.
pub const NAME_MAX: usize = 255;
/// Longest file name decoded; a longer one makes the arguments garbage.
pub const NAME_DECODE_MAX: usize = 1024;
/// Longest symbolic link target decoded.
pub const PATH_MAX: usize = 4096;
/// Most data bytes a WRITE may carry (and the largest READ reply decoded).
pub const MAX_DATA: usize = 1 << 20;

/// ACCESS bit: read data or list a directory.
pub const ACCESS3_READ: u32 = 0x0001;
/// ACCESS bit: look up a name in a directory.
pub const ACCESS3_LOOKUP: u32 = 0x0002;
/// ACCESS bit: rewrite data or modify a directory's entries.
pub const ACCESS3_MODIFY: u32 = 0x0004;
/// ACCESS bit: write past the end of a file or add directory entries.
pub const ACCESS3_EXTEND: u32 = 0x0008;
/// ACCESS bit: delete a directory entry.
pub const ACCESS3_DELETE: u32 = 0x0010;
/// ACCESS bit: execute a file.
pub const ACCESS3_EXECUTE: u32 = 0x0020;

/// FSINFO property: the file system supports hard links.
pub const FSF3_LINK: u32 = 0x0001;
/// FSINFO property: the file system supports symbolic links.
pub const FSF3_SYMLINK: u32 = 0x0002;
/// FSINFO property: PATHCONF is the same for every file.
pub const FSF3_HOMOGENEOUS: u32 = 0x0008;
/// FSINFO property: SETATTR can set times.
pub const FSF3_CANSETTIME: u32 = 0x0010;

/// Encoded size of an [`Fattr3`].
pub const FATTR3_SIZE: usize = 84;
/// Encoded size of a [`WccAttr`].
pub const WCC_ATTR_SIZE: usize = 24;

/// Whether `name` is longer than the server accepts (answer `NFS3ERR_NAMETOOLONG`).
pub fn name_too_long(name: &[u8]) -> bool {
    name.len() > NAME_MAX
}

xdr_enum! {
    /// Status of an NFS procedure (`nfsstat3`).
    pub enum Nfsstat3 ("nfsstat3") {
        /// Success.
        Ok = 0,
        /// Not owner.
        Perm = 1,
        /// No such file or directory.
        Noent = 2,
        /// Hard I/O error.
        Io = 5,
        /// No such device or address.
        Nxio = 6,
        /// Permission denied.
        Acces = 13,
        /// File exists.
        Exist = 17,
        /// Cross-device hard link.
        Xdev = 18,
        /// No such device.
        Nodev = 19,
        /// Not a directory.
        Notdir = 20,
        /// Is a directory.
        Isdir = 21,
        /// Invalid or unsupported argument.
        Inval = 22,
        /// File too large.
        Fbig = 27,
        /// No space left on device.
        Nospc = 28,
        /// Read-only file system.
        Rofs = 30,
        /// Too many hard links.
        Mlink = 31,
        /// File name too long.
        Nametoolong = 63,
        /// Directory not empty.
        Notempty = 66,
        /// Quota exceeded.
        Dquot = 69,
        /// Stale file handle.
        Stale = 70,
        /// Too many levels of remote in path.
        Remote = 71,
        /// Illegal file handle.
        Badhandle = 10001,
        /// SETATTR guard mismatch.
        NotSync = 10002,
        /// READDIR cookie is stale.
        BadCookie = 10003,
        /// Operation not supported.
        Notsupp = 10004,
        /// Buffer or request too small.
        Toosmall = 10005,
        /// Server error not mapped to another status.
        Serverfault = 10006,
        /// Object type not supported by the server.
        Badtype = 10007,
        /// Slow to respond: retry later.
        Jukebox = 10008,
    }
}

xdr_enum! {
    /// Type of a file (`ftype3`).
    pub enum Ftype3 ("ftype3") {
        /// Regular file.
        Reg = 1,
        /// Directory.
        Dir = 2,
        /// Block special device.
        Blk = 3,
        /// Character special device.
        Chr = 4,
        /// Symbolic link.
        Lnk = 5,
        /// Socket.
        Sock = 6,
        /// Named pipe.
        Fifo = 7,
    }
}

xdr_enum! {
    /// How durably a WRITE must be stored before replying (`stable_how`).
    pub enum StableHow ("stable_how") {
        /// The server may cache the data; COMMIT makes it stable.
        Unstable = 0,
        /// Data stable before reply, metadata may be cached.
        DataSync = 1,
        /// Data and metadata stable before reply.
        FileSync = 2,
    }
}

/// Exclusive CREATE verifier.
pub type Createverf3 = [u8; NFS3_CREATEVERFSIZE];
/// WRITE/COMMIT verifier (changes when the server loses unstable data).
pub type Writeverf3 = [u8; NFS3_WRITEVERFSIZE];
/// READDIR cookie verifier.
pub type Cookieverf3 = [u8; NFS3_COOKIEVERFSIZE];

xdr_struct! {
    /// Device numbers of a special file (`specdata3`).
    #[derive(Copy, Default)]
    pub struct Specdata3 {
        /// Major number.
        pub specdata1: u32,
        /// Minor number.
        pub specdata2: u32,
    }
}

/// A file handle (`nfs_fh3`): at most [`NFS3_FHSIZE`] opaque bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct NfsFh3(pub Vec<u8>);

impl Pack for NfsFh3 {
    fn pack(&self, w: &mut Writer) {
        w.opaque(&self.0);
    }
}

impl Unpack for NfsFh3 {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        Ok(NfsFh3(r.opaque_named("nfs_fh3", NFS3_FHSIZE)?.to_vec()))
    }
}

xdr_struct! {
    /// A time (`nfstime3`): seconds and nanoseconds since the Unix epoch.
    #[derive(Copy, Default, Hash, PartialOrd, Ord)]
    pub struct Nfstime3 {
        /// Seconds.
        pub seconds: u32,
        /// Nanoseconds.
        pub nseconds: u32,
    }
}

xdr_struct! {
    /// File attributes (`fattr3`), 84 bytes encoded.
    pub struct Fattr3 {
        /// File type.
        pub type_: Ftype3,
        /// Protection mode bits.
        pub mode: u32,
        /// Number of hard links.
        pub nlink: u32,
        /// Owner's user id.
        pub uid: u32,
        /// Owner's group id.
        pub gid: u32,
        /// Size in bytes.
        pub size: u64,
        /// Bytes of disk space used.
        pub used: u64,
        /// Device numbers (special files).
        pub rdev: Specdata3,
        /// File system id.
        pub fsid: u64,
        /// File id, unique within the file system.
        pub fileid: u64,
        /// Last access.
        pub atime: Nfstime3,
        /// Last data modification.
        pub mtime: Nfstime3,
        /// Last attribute change.
        pub ctime: Nfstime3,
    }
}

xdr_struct! {
    /// Attributes kept for weak cache consistency (`wcc_attr`).
    #[derive(Copy)]
    pub struct WccAttr {
        /// Size in bytes.
        pub size: u64,
        /// Last data modification.
        pub mtime: Nfstime3,
        /// Last attribute change.
        pub ctime: Nfstime3,
    }
}

/// Attributes before an operation (`pre_op_attr`).
pub type PreOpAttr = Option<WccAttr>;
/// Attributes after an operation (`post_op_attr`).
pub type PostOpAttr = Option<Fattr3>;
/// A file handle a result may carry (`post_op_fh3`).
pub type PostOpFh3 = Option<NfsFh3>;

xdr_struct! {
    /// Weak cache consistency data (`wcc_data`).
    #[derive(Default)]
    pub struct WccData {
        /// Attributes before the operation.
        pub before: PreOpAttr,
        /// Attributes after the operation.
        pub after: PostOpAttr,
    }
}

/// How SETATTR sets a time (`set_atime` / `set_mtime`, switched on `time_how`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SetTime {
    /// Leave the time as it is.
    #[default]
    DontChange,
    /// Set it to the server's current time.
    ServerTime,
    /// Set it to the given time.
    ClientTime(Nfstime3),
}

impl Pack for SetTime {
    fn pack(&self, w: &mut Writer) {
        match self {
            SetTime::DontChange => w.u32(0),
            SetTime::ServerTime => w.u32(1),
            SetTime::ClientTime(t) => {
                w.u32(2);
                t.pack(w);
            }
        }
    }
}

impl Unpack for SetTime {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        match r.u32()? {
            0 => Ok(SetTime::DontChange),
            1 => Ok(SetTime::ServerTime),
            2 => Ok(SetTime::ClientTime(Nfstime3::unpack(r)?)),
            value => Err(XdrError::BadValue {
                what: "time_how",
                value,
            }),
        }
    }
}

xdr_struct! {
    /// Attributes to set (`sattr3`); `None` leaves an attribute unchanged.
    #[derive(Default)]
    pub struct Sattr3 {
        /// New mode bits.
        pub mode: Option<u32>,
        /// New owner.
        pub uid: Option<u32>,
        /// New group.
        pub gid: Option<u32>,
        /// New size (truncate or extend).
        pub size: Option<u64>,
        /// New access time.
        pub atime: SetTime,
        /// New modification time.
        pub mtime: SetTime,
    }
}

/// Decodes a `filename3` of at most [`NAME_DECODE_MAX`] bytes.
fn filename(r: &mut Reader<'_>) -> Result<Vec<u8>, XdrError> {
    Ok(r.opaque_named("filename3", NAME_DECODE_MAX)?.to_vec())
}

/// A directory and a name in it (`diropargs3`). The name is at most [`NAME_DECODE_MAX`] bytes
/// once decoded; the server checks [`name_too_long`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Diropargs3 {
    /// The directory.
    pub dir: NfsFh3,
    /// The name (raw bytes, not necessarily UTF-8).
    pub name: Vec<u8>,
}

impl Pack for Diropargs3 {
    fn pack(&self, w: &mut Writer) {
        self.dir.pack(w);
        w.string(&self.name);
    }
}

impl Unpack for Diropargs3 {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let dir = NfsFh3::unpack(r)?;
        let name = filename(r)?;
        Ok(Diropargs3 { dir, name })
    }
}

/// How CREATE creates a file (`createhow3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateHow {
    /// Create or truncate, setting these attributes.
    Unchecked(Sattr3),
    /// Create, failing with EXIST if the name exists.
    Guarded(Sattr3),
    /// Create exclusively, remembering the verifier to recognise a retransmission.
    Exclusive(Createverf3),
}

impl Pack for CreateHow {
    fn pack(&self, w: &mut Writer) {
        match self {
            CreateHow::Unchecked(a) => {
                w.u32(0);
                a.pack(w);
            }
            CreateHow::Guarded(a) => {
                w.u32(1);
                a.pack(w);
            }
            CreateHow::Exclusive(v) => {
                w.u32(2);
                v.pack(w);
            }
        }
    }
}

impl Unpack for CreateHow {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        match r.u32()? {
            0 => Ok(CreateHow::Unchecked(Sattr3::unpack(r)?)),
            1 => Ok(CreateHow::Guarded(Sattr3::unpack(r)?)),
            2 => Ok(CreateHow::Exclusive(Createverf3::unpack(r)?)),
            value => Err(XdrError::BadValue {
                what: "createmode3",
                value,
            }),
        }
    }
}

/// What MKNOD creates (`mknoddata3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MknodData3 {
    /// A character device.
    Chr {
        /// Initial attributes.
        attributes: Sattr3,
        /// Device numbers.
        spec: Specdata3,
    },
    /// A block device.
    Blk {
        /// Initial attributes.
        attributes: Sattr3,
        /// Device numbers.
        spec: Specdata3,
    },
    /// A socket.
    Sock(Sattr3),
    /// A named pipe.
    Fifo(Sattr3),
    /// Another type (regular file, directory, symlink: no data; answer `NFS3ERR_BADTYPE`).
    Other(Ftype3),
}

impl Pack for MknodData3 {
    fn pack(&self, w: &mut Writer) {
        match self {
            MknodData3::Chr { attributes, spec } => {
                Ftype3::Chr.pack(w);
                attributes.pack(w);
                spec.pack(w);
            }
            MknodData3::Blk { attributes, spec } => {
                Ftype3::Blk.pack(w);
                attributes.pack(w);
                spec.pack(w);
            }
            MknodData3::Sock(a) => {
                Ftype3::Sock.pack(w);
                a.pack(w);
            }
            MknodData3::Fifo(a) => {
                Ftype3::Fifo.pack(w);
                a.pack(w);
            }
            MknodData3::Other(t) => t.pack(w),
        }
    }
}

impl Unpack for MknodData3 {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        Ok(match Ftype3::unpack(r)? {
            Ftype3::Chr => MknodData3::Chr {
                attributes: Sattr3::unpack(r)?,
                spec: Specdata3::unpack(r)?,
            },
            Ftype3::Blk => MknodData3::Blk {
                attributes: Sattr3::unpack(r)?,
                spec: Specdata3::unpack(r)?,
            },
            Ftype3::Sock => MknodData3::Sock(Sattr3::unpack(r)?),
            Ftype3::Fifo => MknodData3::Fifo(Sattr3::unpack(r)?),
            other => MknodData3::Other(other),
        })
    }
}
