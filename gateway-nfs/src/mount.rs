//! MOUNT protocol version 3 (RFC 1813 appendix I): procedure numbers, statuses, the MNT
//! argument and result, and the DUMP and EXPORT lists.

use crate::nfs3::{NfsFh3, NFS3_FHSIZE};
use crate::xdr::{xdr_enum, Pack, Reader, Unpack, Writer, XdrError};

/// Procedure 0: do nothing.
pub const PROC_NULL: u32 = 0;
/// Procedure 1: mount a directory (returns its file handle).
pub const PROC_MNT: u32 = 1;
/// Procedure 2: list the mounts the server knows of.
pub const PROC_DUMP: u32 = 2;
/// Procedure 3: forget a mount.
pub const PROC_UMNT: u32 = 3;
/// Procedure 4: forget all of the caller's mounts.
pub const PROC_UMNTALL: u32 = 4;
/// Procedure 5: list the exports.
pub const PROC_EXPORT: u32 = 5;

/// Longest directory path (`dirpath`).
pub const MNTPATHLEN: usize = 1024;
/// Longest host or group name (`name`).
pub const MNTNAMLEN: usize = 255;
/// Most authentication flavors decoded from a MNT reply.
pub const MAX_AUTH_FLAVORS: usize = 16;

xdr_enum! {
    /// Status of a MNT call (`mountstat3`).
    pub enum Mountstat3 ("mountstat3") {
        /// Success.
        Ok = 0,
        /// Not owner.
        Perm = 1,
        /// No such file or directory.
        Noent = 2,
        /// I/O error.
        Io = 5,
        /// Permission denied.
        Acces = 13,
        /// Not a directory.
        Notdir = 20,
        /// Invalid argument.
        Inval = 22,
        /// File name too long.
        Nametoolong = 63,
        /// Operation not supported.
        Notsupp = 10004,
        /// Server fault.
        Serverfault = 10006,
    }
}

/// A directory path (`dirpath`, at most [`MNTPATHLEN`] bytes): the argument of MNT and UMNT.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Dirpath(pub Vec<u8>);

impl Pack for Dirpath {
    fn pack(&self, w: &mut Writer) {
        w.string(&self.0);
    }
}

impl Unpack for Dirpath {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        Ok(Dirpath(r.opaque_named("dirpath", MNTPATHLEN)?.to_vec()))
    }
}

fn name(r: &mut Reader<'_>) -> Result<Vec<u8>, XdrError> {
    Ok(r.opaque_named("name", MNTNAMLEN)?.to_vec())
}

/// Result of MNT (`mountres3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MntRes {
    /// The export's root handle and the authentication flavors accepted (e.g. `[AUTH_SYS]`).
    Ok {
        /// The root file handle.
        fhandle: NfsFh3,
        /// Accepted flavors, most preferred first.
        auth_flavors: Vec<u32>,
    },
    /// Failure (a status other than [`Mountstat3::Ok`]; `Ok` is sent as SERVERFAULT).
    Fail(Mountstat3),
}

impl Pack for MntRes {
    fn pack(&self, w: &mut Writer) {
        match self {
            MntRes::Ok {
                fhandle,
                auth_flavors,
            } => {
                Mountstat3::Ok.pack(w);
                fhandle.pack(w);
                w.u32(auth_flavors.len() as u32);
                for f in auth_flavors {
                    w.u32(*f);
                }
            }
            MntRes::Fail(Mountstat3::Ok) => Mountstat3::Serverfault.pack(w),
            MntRes::Fail(status) => status.pack(w),
        }
    }
}

impl Unpack for MntRes {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        match Mountstat3::unpack(r)? {
            Mountstat3::Ok => {
                let fhandle = NfsFh3(r.opaque_named("fhandle3", NFS3_FHSIZE)?.to_vec());
                let n = r.array_len("auth_flavors", MAX_AUTH_FLAVORS)?;
                let mut auth_flavors = Vec::with_capacity(n);
                for _ in 0..n {
                    auth_flavors.push(r.u32()?);
                }
                Ok(MntRes::Ok {
                    fhandle,
                    auth_flavors,
                })
            }
            status => Ok(MntRes::Fail(status)),
        }
    }
}

/// One entry of the DUMP list (`mountbody`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountBody {
    /// The client's host name.
    pub hostname: Vec<u8>,
    /// The directory it mounted.
    pub directory: Vec<u8>,
}

/// DUMP result (`mountlist`): an XDR linked list of mounts. Empty is acceptable.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MountList(pub Vec<MountBody>);

impl Pack for MountList {
    fn pack(&self, w: &mut Writer) {
        for m in &self.0 {
            w.bool(true);
            w.string(&m.hostname);
            w.string(&m.directory);
        }
        w.bool(false);
    }
}

impl Unpack for MountList {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let mut v = Vec::new();
        while r.bool()? {
            let hostname = name(r)?;
            let directory = Dirpath::unpack(r)?.0;
            v.push(MountBody {
                hostname,
                directory,
            });
        }
        Ok(MountList(v))
    }
}

/// One exported directory (`exportnode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportNode {
    /// The exported path.
    pub dir: Vec<u8>,
    /// Groups (host names, netgroups) allowed to mount it; empty means everyone.
    pub groups: Vec<Vec<u8>>,
}

/// EXPORT result (`exports`): an XDR linked list of exports, each with a linked list of groups.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ExportList(pub Vec<ExportNode>);

impl Pack for ExportList {
    fn pack(&self, w: &mut Writer) {
        for e in &self.0 {
            w.bool(true);
            w.string(&e.dir);
            for g in &e.groups {
                w.bool(true);
                w.string(g);
            }
            w.bool(false);
        }
        w.bool(false);
    }
}

impl Unpack for ExportList {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let mut v = Vec::new();
        while r.bool()? {
            let dir = Dirpath::unpack(r)?.0;
            let mut groups = Vec::new();
            while r.bool()? {
                groups.push(name(r)?);
            }
            v.push(ExportNode { dir, groups });
        }
        Ok(ExportList(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::{decode, encode};

    #[test]
    fn mnt_result() {
        let ok = MntRes::Ok {
            fhandle: NfsFh3(vec![0xaa; 5]),
            auth_flavors: vec![1],
        };
        let b = encode(&ok);
        assert_eq!(
            b,
            [
                0, 0, 0, 0, 0, 0, 0, 5, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
                1
            ]
        );
        assert_eq!(decode::<MntRes>(&b), Ok(ok));
        assert_eq!(encode(&MntRes::Fail(Mountstat3::Noent)), [0, 0, 0, 2]);
        assert_eq!(encode(&MntRes::Fail(Mountstat3::Ok)), [0, 0, 0x27, 0x16]);
    }

    #[test]
    fn dirpath_is_bounded() {
        assert_eq!(
            decode::<Dirpath>(&[0, 0, 0, 2, b'/', b'b', 0, 0]),
            Ok(Dirpath(b"/b".to_vec()))
        );
        assert_eq!(
            decode::<Dirpath>(&[0, 0, 4, 1]),
            Err(XdrError::TooLong {
                what: "dirpath",
                len: 1025,
                max: MNTPATHLEN
            })
        );
    }

    #[test]
    fn lists() {
        assert_eq!(encode(&MountList::default()), [0, 0, 0, 0]);
        assert_eq!(encode(&ExportList::default()), [0, 0, 0, 0]);
        let ex = ExportList(vec![
            ExportNode {
                dir: b"/a".to_vec(),
                groups: vec![],
            },
            ExportNode {
                dir: b"/bb".to_vec(),
                groups: vec![b"*".to_vec()],
            },
        ]);
        let b = encode(&ex);
        assert_eq!(
            b,
            [
                0, 0, 0, 1, 0, 0, 0, 2, b'/', b'a', 0, 0, 0, 0, 0, 0, // "/a", no groups
                0, 0, 0, 1, 0, 0, 0, 3, b'/', b'b', b'b', 0, // "/bb"
                0, 0, 0, 1, 0, 0, 0, 1, b'*', 0, 0, 0, 0, 0, 0, 0, // group "*"
                0, 0, 0, 0, // end
            ]
        );
        assert_eq!(decode::<ExportList>(&b), Ok(ex));
        let ml = MountList(vec![MountBody {
            hostname: b"h".to_vec(),
            directory: b"/a".to_vec(),
        }]);
        assert_eq!(decode::<MountList>(&encode(&ml)), Ok(ml));
    }
}
