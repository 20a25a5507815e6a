//! Results of the NFSv3 procedures, and the sizes READDIR and READDIRPLUS budget with.

use bytes::Bytes;

use super::*;
use crate::xdr::{padded_len, xdr_struct, Pack, Reader, Unpack, Writer, XdrError};

/// A procedure's result: `status` then the `resok` arm (`T`) or the `resfail` arm (`F`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Nfs3Res<T, F> {
    /// `NFS3_OK` and the success body.
    Ok(T),
    /// An error status and the failure body. A `Fail` with [`Nfsstat3::Ok`] is sent as
    /// `NFS3ERR_SERVERFAULT`.
    Fail(Nfsstat3, F),
}

impl<T, F> Nfs3Res<T, F> {
    /// The status this result sends.
    pub fn status(&self) -> Nfsstat3 {
        match self {
            Nfs3Res::Ok(_) => Nfsstat3::Ok,
            Nfs3Res::Fail(Nfsstat3::Ok, _) => Nfsstat3::Serverfault,
            Nfs3Res::Fail(s, _) => *s,
        }
    }
}

impl<T: Pack, F: Pack> Pack for Nfs3Res<T, F> {
    fn pack(&self, w: &mut Writer) {
        self.status().pack(w);
        match self {
            Nfs3Res::Ok(ok) => ok.pack(w),
            Nfs3Res::Fail(_, fail) => fail.pack(w),
        }
    }
}

impl<T: Unpack, F: Unpack> Unpack for Nfs3Res<T, F> {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        match Nfsstat3::unpack(r)? {
            Nfsstat3::Ok => Ok(Nfs3Res::Ok(T::unpack(r)?)),
            status => Ok(Nfs3Res::Fail(status, F::unpack(r)?)),
        }
    }
}

/// GETATTR result: the attributes, or nothing.
pub type GetattrRes = Nfs3Res<Fattr3, ()>;
/// SETATTR result: the object's wcc data either way.
pub type SetattrRes = Nfs3Res<WccData, WccData>;
/// LOOKUP result; on failure, the directory's attributes.
pub type LookupRes = Nfs3Res<LookupResOk, PostOpAttr>;
/// ACCESS result; on failure, the object's attributes.
pub type AccessRes = Nfs3Res<AccessResOk, PostOpAttr>;
/// READLINK result; on failure, the link's attributes.
pub type ReadlinkRes = Nfs3Res<ReadlinkResOk, PostOpAttr>;
/// READ result; on failure, the file's attributes.
pub type ReadRes = Nfs3Res<ReadResOk, PostOpAttr>;
/// WRITE result; on failure, the file's wcc data.
pub type WriteRes = Nfs3Res<WriteResOk, WccData>;
/// CREATE result; on failure, the directory's wcc data.
pub type CreateRes = Nfs3Res<CreateResOk, WccData>;
/// MKDIR result (same shape as CREATE's).
pub type MkdirRes = CreateRes;
/// SYMLINK result (same shape as CREATE's).
pub type SymlinkRes = CreateRes;
/// MKNOD result (same shape as CREATE's).
pub type MknodRes = CreateRes;
/// REMOVE result: the directory's wcc data either way.
pub type RemoveRes = Nfs3Res<WccData, WccData>;
/// RMDIR result: the directory's wcc data either way.
pub type RmdirRes = Nfs3Res<WccData, WccData>;
/// RENAME result: both directories' wcc data either way.
pub type RenameRes = Nfs3Res<RenameWcc, RenameWcc>;
/// LINK result: the file's attributes and the directory's wcc data either way.
pub type LinkRes = Nfs3Res<LinkWcc, LinkWcc>;
/// READDIR result; on failure, the directory's attributes.
pub type ReaddirRes = Nfs3Res<ReaddirResOk, PostOpAttr>;
/// READDIRPLUS result; on failure, the directory's attributes.
pub type ReaddirplusRes = Nfs3Res<ReaddirplusResOk, PostOpAttr>;
/// FSSTAT result; on failure, the root's attributes.
pub type FsstatRes = Nfs3Res<FsstatResOk, PostOpAttr>;
/// FSINFO result; on failure, the root's attributes.
pub type FsinfoRes = Nfs3Res<FsinfoResOk, PostOpAttr>;
/// PATHCONF result; on failure, the object's attributes.
pub type PathconfRes = Nfs3Res<PathconfResOk, PostOpAttr>;
/// COMMIT result; on failure, the file's wcc data.
pub type CommitRes = Nfs3Res<CommitResOk, WccData>;

xdr_struct! {
    /// LOOKUP success.
    pub struct LookupResOk {
        /// Handle of the object found.
        pub object: NfsFh3,
        /// Its attributes.
        pub obj_attributes: PostOpAttr,
        /// The directory's attributes.
        pub dir_attributes: PostOpAttr,
    }
}

xdr_struct! {
    /// ACCESS success.
    pub struct AccessResOk {
        /// The object's attributes.
        pub obj_attributes: PostOpAttr,
        /// The `ACCESS3_*` bits granted (a subset of those asked).
        pub access: u32,
    }
}

/// READLINK success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadlinkResOk {
    /// The link's attributes.
    pub symlink_attributes: PostOpAttr,
    /// The link's target.
    pub data: Vec<u8>,
}

impl Pack for ReadlinkResOk {
    fn pack(&self, w: &mut Writer) {
        self.symlink_attributes.pack(w);
        w.string(&self.data);
    }
}

impl Unpack for ReadlinkResOk {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let symlink_attributes = PostOpAttr::unpack(r)?;
        let data = r.opaque_named("nfspath3", PATH_MAX)?.to_vec();
        Ok(ReadlinkResOk {
            symlink_attributes,
            data,
        })
    }
}

/// READ success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResOk {
    /// The file's attributes.
    pub file_attributes: PostOpAttr,
    /// Bytes read (the length of `data`).
    pub count: u32,
    /// Whether the read reached the end of the file.
    pub eof: bool,
    /// The bytes read.
    pub data: Bytes,
}

impl ReadResOk {
    /// Packs a whole successful READ reply body (status included) except the data bytes and
    /// their padding, so the caller can send `data` and [`crate::xdr::pad_len`]`(data.len())`
    /// zeros after it without copying.
    pub fn pack_ok_head(&self, w: &mut Writer) {
        Nfsstat3::Ok.pack(w);
        self.file_attributes.pack(w);
        w.u32(self.count);
        w.bool(self.eof);
        w.u32(self.data.len() as u32);
    }
}

impl Pack for ReadResOk {
    fn pack(&self, w: &mut Writer) {
        self.file_attributes.pack(w);
        w.u32(self.count);
        w.bool(self.eof);
        w.opaque(&self.data);
    }
}

impl Unpack for ReadResOk {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let file_attributes = PostOpAttr::unpack(r)?;
        let count = r.u32()?;
        let eof = r.bool()?;
        let data = Bytes::copy_from_slice(r.opaque_named("read data", MAX_DATA)?);
        Ok(ReadResOk {
            file_attributes,
            count,
            eof,
            data,
        })
    }
}

xdr_struct! {
    /// WRITE success.
    pub struct WriteResOk {
        /// The file's wcc data.
        pub file_wcc: WccData,
        /// Bytes written.
        pub count: u32,
        /// How durably they were stored.
        pub committed: StableHow,
        /// The server's write verifier.
        pub verf: Writeverf3,
    }
}

xdr_struct! {
    /// CREATE, MKDIR, SYMLINK and MKNOD success.
    pub struct CreateResOk {
        /// Handle of the new object.
        pub obj: PostOpFh3,
        /// Its attributes.
        pub obj_attributes: PostOpAttr,
        /// The directory's wcc data.
        pub dir_wcc: WccData,
    }
}

xdr_struct! {
    /// RENAME result body (success and failure alike).
    #[derive(Default)]
    pub struct RenameWcc {
        /// The source directory's wcc data.
        pub fromdir_wcc: WccData,
        /// The target directory's wcc data.
        pub todir_wcc: WccData,
    }
}

xdr_struct! {
    /// LINK result body (success and failure alike).
    #[derive(Default)]
    pub struct LinkWcc {
        /// The file's attributes.
        pub file_attributes: PostOpAttr,
        /// The directory's wcc data.
        pub linkdir_wcc: WccData,
    }
}

/// Encoded size of a `post_op_attr` with or without attributes.
pub const fn post_op_attr_size(present: bool) -> usize {
    if present {
        4 + FATTR3_SIZE
    } else {
        4
    }
}

/// Encoded size of a `post_op_fh3` carrying a handle of `len` bytes, or none.
pub const fn post_op_fh3_size(handle_len: Option<usize>) -> usize {
    match handle_len {
        Some(len) => 4 + 4 + padded_len(len),
        None => 4,
    }
}

/// Encoded size of one READDIR entry with a name of `name_len` bytes, including the
/// "value follows" word in front of it. Also the amount an entry counts against READDIRPLUS's
/// `dircount`.
pub const fn entry3_size(name_len: usize) -> usize {
    4 + 8 + 4 + padded_len(name_len) + 8
}

/// Encoded size of one READDIRPLUS entry, including the "value follows" word in front of it.
pub const fn entryplus3_size(
    name_len: usize,
    with_attrs: bool,
    handle_len: Option<usize>,
) -> usize {
    entry3_size(name_len) + post_op_attr_size(with_attrs) + post_op_fh3_size(handle_len)
}

/// Encoded size of a `READDIR3resok` or `READDIRPLUS3resok` without entries: directory
/// attributes, cookie verifier, end of list and `eof`. Entries' sizes add to it; the status
/// word in front is not part of what `count`/`maxcount` limit.
pub const fn readdir_resok_base_size(dir_attrs: bool) -> usize {
    post_op_attr_size(dir_attrs) + NFS3_COOKIEVERFSIZE + 4 + 4
}

/// One READDIR entry (`entry3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry3 {
    /// File id.
    pub fileid: u64,
    /// Name in the directory.
    pub name: Vec<u8>,
    /// Cookie to resume after this entry.
    pub cookie: u64,
}

impl Entry3 {
    /// This entry's encoded size in a list (see [`entry3_size`]).
    pub fn encoded_len(&self) -> usize {
        entry3_size(self.name.len())
    }
}

impl Pack for Entry3 {
    fn pack(&self, w: &mut Writer) {
        w.u64(self.fileid);
        w.string(&self.name);
        w.u64(self.cookie);
    }
}

impl Unpack for Entry3 {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let fileid = r.u64()?;
        let name = filename(r)?;
        let cookie = r.u64()?;
        Ok(Entry3 {
            fileid,
            name,
            cookie,
        })
    }
}

/// One READDIRPLUS entry (`entryplus3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entryplus3 {
    /// File id.
    pub fileid: u64,
    /// Name in the directory.
    pub name: Vec<u8>,
    /// Cookie to resume after this entry.
    pub cookie: u64,
    /// The entry's attributes.
    pub name_attributes: PostOpAttr,
    /// The entry's handle.
    pub name_handle: PostOpFh3,
}

impl Entryplus3 {
    /// This entry's encoded size in a list (see [`entryplus3_size`]).
    pub fn encoded_len(&self) -> usize {
        entryplus3_size(
            self.name.len(),
            self.name_attributes.is_some(),
            self.name_handle.as_ref().map(|h| h.0.len()),
        )
    }
}

impl Pack for Entryplus3 {
    fn pack(&self, w: &mut Writer) {
        w.u64(self.fileid);
        w.string(&self.name);
        w.u64(self.cookie);
        self.name_attributes.pack(w);
        self.name_handle.pack(w);
    }
}

impl Unpack for Entryplus3 {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let fileid = r.u64()?;
        let name = filename(r)?;
        let cookie = r.u64()?;
        let name_attributes = PostOpAttr::unpack(r)?;
        let name_handle = PostOpFh3::unpack(r)?;
        Ok(Entryplus3 {
            fileid,
            name,
            cookie,
            name_attributes,
            name_handle,
        })
    }
}

/// Packs an XDR linked list (`*entry`): each item behind a "value follows" TRUE, then FALSE.
fn pack_list<T: Pack>(items: &[T], w: &mut Writer) {
    for item in items {
        w.bool(true);
        item.pack(w);
    }
    w.bool(false);
}

/// Decodes an XDR linked list. Every item takes input bytes, so its length is bounded by the
/// input's.
fn unpack_list<T: Unpack>(r: &mut Reader<'_>) -> Result<Vec<T>, XdrError> {
    let mut items = Vec::new();
    while r.bool()? {
        items.push(T::unpack(r)?);
    }
    Ok(items)
}

/// READDIR success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaddirResOk {
    /// The directory's attributes.
    pub dir_attributes: PostOpAttr,
    /// Verifier to send back with the cookies.
    pub cookieverf: Cookieverf3,
    /// The entries, in order.
    pub entries: Vec<Entry3>,
    /// Whether the last entry of the directory is included.
    pub eof: bool,
}

impl Pack for ReaddirResOk {
    fn pack(&self, w: &mut Writer) {
        self.dir_attributes.pack(w);
        self.cookieverf.pack(w);
        pack_list(&self.entries, w);
        w.bool(self.eof);
    }
}

impl Unpack for ReaddirResOk {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let dir_attributes = PostOpAttr::unpack(r)?;
        let cookieverf = Cookieverf3::unpack(r)?;
        let entries = unpack_list(r)?;
        let eof = r.bool()?;
        Ok(ReaddirResOk {
            dir_attributes,
            cookieverf,
            entries,
            eof,
        })
    }
}

/// READDIRPLUS success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaddirplusResOk {
    /// The directory's attributes.
    pub dir_attributes: PostOpAttr,
    /// Verifier to send back with the cookies.
    pub cookieverf: Cookieverf3,
    /// The entries, in order.
    pub entries: Vec<Entryplus3>,
    /// Whether the last entry of the directory is included.
    pub eof: bool,
}

impl Pack for ReaddirplusResOk {
    fn pack(&self, w: &mut Writer) {
        self.dir_attributes.pack(w);
        self.cookieverf.pack(w);
        pack_list(&self.entries, w);
        w.bool(self.eof);
    }
}

impl Unpack for ReaddirplusResOk {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let dir_attributes = PostOpAttr::unpack(r)?;
        let cookieverf = Cookieverf3::unpack(r)?;
        let entries = unpack_list(r)?;
        let eof = r.bool()?;
        Ok(ReaddirplusResOk {
            dir_attributes,
            cookieverf,
            entries,
            eof,
        })
    }
}

xdr_struct! {
    /// FSSTAT success.
    pub struct FsstatResOk {
        /// The root's attributes.
        pub obj_attributes: PostOpAttr,
        /// Total size in bytes.
        pub tbytes: u64,
        /// Free bytes.
        pub fbytes: u64,
        /// Free bytes available to the caller.
        pub abytes: u64,
        /// Total file slots.
        pub tfiles: u64,
        /// Free file slots.
        pub ffiles: u64,
        /// Free file slots available to the caller.
        pub afiles: u64,
        /// Seconds for which these values will not change (0: volatile).
        pub invarsec: u32,
    }
}

xdr_struct! {
    /// FSINFO success.
    pub struct FsinfoResOk {
        /// The root's attributes.
        pub obj_attributes: PostOpAttr,
        /// Largest READ.
        pub rtmax: u32,
        /// Preferred READ size.
        pub rtpref: u32,
        /// Suggested READ size multiple.
        pub rtmult: u32,
        /// Largest WRITE.
        pub wtmax: u32,
        /// Preferred WRITE size.
        pub wtpref: u32,
        /// Suggested WRITE size multiple.
        pub wtmult: u32,
        /// Preferred READDIR `count`.
        pub dtpref: u32,
        /// Largest file size.
        pub maxfilesize: u64,
        /// Granularity of the server's times.
        pub time_delta: Nfstime3,
        /// `FSF3_*` bits.
        pub properties: u32,
    }
}

xdr_struct! {
    /// PATHCONF success.
    pub struct PathconfResOk {
        /// The object's attributes.
        pub obj_attributes: PostOpAttr,
        /// Most hard links to an object.
        pub linkmax: u32,
        /// Longest name.
        pub name_max: u32,
        /// Whether longer names are refused (rather than truncated).
        pub no_trunc: bool,
        /// Whether only root may change an owner.
        pub chown_restricted: bool,
        /// Whether names are compared ignoring case.
        pub case_insensitive: bool,
        /// Whether names keep their case.
        pub case_preserving: bool,
    }
}

xdr_struct! {
    /// COMMIT success.
    pub struct CommitResOk {
        /// The file's wcc data.
        pub file_wcc: WccData,
        /// The server's write verifier.
        pub verf: Writeverf3,
    }
}
