//! Arguments of the NFSv3 procedures.

use bytes::Bytes;

use super::*;
use crate::xdr::{xdr_struct, Pack, Reader, Unpack, Writer, XdrError};

xdr_struct! {
    /// GETATTR arguments.
    pub struct GetattrArgs {
        /// The file.
        pub object: NfsFh3,
    }
}

xdr_struct! {
    /// SETATTR arguments.
    pub struct SetattrArgs {
        /// The file.
        pub object: NfsFh3,
        /// Attributes to set.
        pub new_attributes: Sattr3,
        /// If set, apply only when the file's ctime equals it (else `NFS3ERR_NOT_SYNC`).
        pub guard: Option<Nfstime3>,
    }
}

xdr_struct! {
    /// LOOKUP arguments.
    pub struct LookupArgs {
        /// Directory and name.
        pub what: Diropargs3,
    }
}

xdr_struct! {
    /// ACCESS arguments.
    pub struct AccessArgs {
        /// The file.
        pub object: NfsFh3,
        /// `ACCESS3_*` bits to check.
        pub access: u32,
    }
}

xdr_struct! {
    /// READLINK arguments.
    pub struct ReadlinkArgs {
        /// The symbolic link.
        pub symlink: NfsFh3,
    }
}

xdr_struct! {
    /// READ arguments.
    pub struct ReadArgs {
        /// The file.
        pub file: NfsFh3,
        /// Where to start reading.
        pub offset: u64,
        /// Bytes wanted (the server may return fewer).
        pub count: u32,
    }
}

/// WRITE arguments. RFC 1813 says `count` equals the data length; both are kept so the server
/// can decide what to do with a mismatch (Linux's nfsd treats it as garbage).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteArgs {
    /// The file.
    pub file: NfsFh3,
    /// Where to write.
    pub offset: u64,
    /// Bytes to write, as the client announced.
    pub count: u32,
    /// How durably to store the data before replying.
    pub stable: StableHow,
    /// The data (at most [`MAX_DATA`] bytes).
    pub data: Bytes,
}

impl WriteArgs {
    fn unpack_with<'a>(
        r: &mut Reader<'a>,
        data_of: impl FnOnce(&'a [u8]) -> Bytes,
    ) -> Result<Self, XdrError> {
        let file = NfsFh3::unpack(r)?;
        let offset = r.u64()?;
        let count = r.u32()?;
        let stable = StableHow::unpack(r)?;
        let data = data_of(r.opaque_named("write data", MAX_DATA)?);
        Ok(WriteArgs {
            file,
            offset,
            count,
            stable,
            data,
        })
    }

    /// Decodes WRITE arguments `args` (all of it) taken from `record` without copying the data:
    /// `data` then shares `record`'s buffer. When `args` is not inside `record` the data is
    /// copied.
    pub fn decode_shared(record: &Bytes, args: &[u8]) -> Result<WriteArgs, XdrError> {
        let base = record.as_ptr() as usize;
        let mut r = Reader::new(args);
        let v = WriteArgs::unpack_with(&mut r, |data| {
            let start = (data.as_ptr() as usize).wrapping_sub(base);
            match start.checked_add(data.len()) {
                Some(end) if (data.as_ptr() as usize) >= base && end <= record.len() => {
                    record.slice(start..end)
                }
                _ => Bytes::copy_from_slice(data),
            }
        })?;
        r.finish()?;
        Ok(v)
    }
}

impl Pack for WriteArgs {
    fn pack(&self, w: &mut Writer) {
        self.file.pack(w);
        w.u64(self.offset);
        w.u32(self.count);
        self.stable.pack(w);
        w.opaque(&self.data);
    }
}

impl Unpack for WriteArgs {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        WriteArgs::unpack_with(r, Bytes::copy_from_slice)
    }
}

xdr_struct! {
    /// CREATE arguments.
    pub struct CreateArgs {
        /// Directory and name of the new file.
        pub where_: Diropargs3,
        /// How to create it.
        pub how: CreateHow,
    }
}

xdr_struct! {
    /// MKDIR arguments.
    pub struct MkdirArgs {
        /// Directory and name of the new directory.
        pub where_: Diropargs3,
        /// Its initial attributes.
        pub attributes: Sattr3,
    }
}

/// SYMLINK arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymlinkArgs {
    /// Directory and name of the new link.
    pub where_: Diropargs3,
    /// Its initial attributes.
    pub attributes: Sattr3,
    /// The link's target (at most [`PATH_MAX`] bytes).
    pub target: Vec<u8>,
}

impl Pack for SymlinkArgs {
    fn pack(&self, w: &mut Writer) {
        self.where_.pack(w);
        self.attributes.pack(w);
        w.string(&self.target);
    }
}

impl Unpack for SymlinkArgs {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let where_ = Diropargs3::unpack(r)?;
        let attributes = Sattr3::unpack(r)?;
        let target = r.opaque_named("nfspath3", PATH_MAX)?.to_vec();
        Ok(SymlinkArgs {
            where_,
            attributes,
            target,
        })
    }
}

xdr_struct! {
    /// MKNOD arguments.
    pub struct MknodArgs {
        /// Directory and name of the new node.
        pub where_: Diropargs3,
        /// What to create.
        pub what: MknodData3,
    }
}

xdr_struct! {
    /// REMOVE arguments.
    pub struct RemoveArgs {
        /// Directory and name to remove.
        pub object: Diropargs3,
    }
}

xdr_struct! {
    /// RMDIR arguments.
    pub struct RmdirArgs {
        /// Directory and name of the directory to remove.
        pub object: Diropargs3,
    }
}

xdr_struct! {
    /// RENAME arguments.
    pub struct RenameArgs {
        /// Source directory and name.
        pub from: Diropargs3,
        /// Target directory and name.
        pub to: Diropargs3,
    }
}

xdr_struct! {
    /// LINK arguments.
    pub struct LinkArgs {
        /// The existing file.
        pub file: NfsFh3,
        /// Directory and name of the new link.
        pub link: Diropargs3,
    }
}

xdr_struct! {
    /// READDIR arguments.
    pub struct ReaddirArgs {
        /// The directory.
        pub dir: NfsFh3,
        /// Where to resume (0: from the start).
        pub cookie: u64,
        /// Verifier returned with the cookie.
        pub cookieverf: Cookieverf3,
        /// Largest `READDIR3resok` wanted, in bytes.
        pub count: u32,
    }
}

xdr_struct! {
    /// READDIRPLUS arguments.
    pub struct ReaddirplusArgs {
        /// The directory.
        pub dir: NfsFh3,
        /// Where to resume (0: from the start).
        pub cookie: u64,
        /// Verifier returned with the cookie.
        pub cookieverf: Cookieverf3,
        /// Largest amount of directory information (entries without attributes and handles).
        pub dircount: u32,
        /// Largest `READDIRPLUS3resok` wanted, in bytes.
        pub maxcount: u32,
    }
}

xdr_struct! {
    /// FSSTAT arguments.
    pub struct FsstatArgs {
        /// Any handle of the file system.
        pub fsroot: NfsFh3,
    }
}

xdr_struct! {
    /// FSINFO arguments.
    pub struct FsinfoArgs {
        /// Any handle of the file system.
        pub fsroot: NfsFh3,
    }
}

xdr_struct! {
    /// PATHCONF arguments.
    pub struct PathconfArgs {
        /// The file.
        pub object: NfsFh3,
    }
}

xdr_struct! {
    /// COMMIT arguments.
    pub struct CommitArgs {
        /// The file.
        pub file: NfsFh3,
        /// Start of the range to commit.
        pub offset: u64,
        /// Length of the range (0: to the end of the file).
        pub count: u32,
    }
}
