//! POSIX attributes of files kept in object metadata, under the names s3fs and rclone use
//! (`x-amz-meta-mode`, `-uid`, `-gid`, `-mtime`, `-atime`, `-ctime`), so an s3fs mount,
//! rclone and an NFS mount of one bucket agree on them; and the mapping of a stored version
//! to NFS attributes.

use std::collections::BTreeMap;

use cairn_client::VersionManifest;
use cairn_core::manifest::Content;

use crate::nfs3::{Fattr3, Ftype3, Nfstime3, Specdata3, WccAttr};

/// `mode`: the file's type and permission bits, decimal (s3fs writes it so: `33188` is a
/// regular file with 0644). Octal with a leading `0` is read too.
pub const META_MODE: &str = "mode";
/// `uid`: the owner, decimal.
pub const META_UID: &str = "uid";
/// `gid`: the group, decimal.
pub const META_GID: &str = "gid";
/// `mtime`: modification time, seconds since the epoch (s3fs writes whole seconds, rclone a
/// decimal fraction; both are read, whole seconds are written).
pub const META_MTIME: &str = "mtime";
/// `atime`: access time, as `mtime`.
pub const META_ATIME: &str = "atime";
/// `ctime`: attribute change time, as `mtime`.
pub const META_CTIME: &str = "ctime";
/// `cairn-ino`: the file id a renamed file keeps (hex), so its NFS handle and inode number
/// stay what they were before the rename.
pub const META_INO: &str = "cairn-ino";
/// `cairn-createverf`: the verifier of an exclusive CREATE, so its retransmission succeeds.
pub const META_CREATEVERF: &str = "cairn-createverf";

/// File type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170000;
/// A regular file.
pub const S_IFREG: u32 = 0o100000;
/// A directory.
pub const S_IFDIR: u32 = 0o040000;
/// A symbolic link.
pub const S_IFLNK: u32 = 0o120000;

/// Permission bits of a file with none stored (S3 wrote it).
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// Permission bits of a directory with none stored.
pub const DEFAULT_DIR_MODE: u32 = 0o755;
/// Permission bits of an export's root directory.
pub const ROOT_MODE: u32 = 0o777;

/// What a name of the export is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file: an object.
    File,
    /// A directory: a key prefix, with or without a `dir/` marker object.
    Dir,
    /// A symbolic link: an object whose body is the target and whose mode says so.
    Symlink,
}

impl Kind {
    /// The NFS file type.
    pub fn ftype(self) -> Ftype3 {
        match self {
            Kind::File => Ftype3::Reg,
            Kind::Dir => Ftype3::Dir,
            Kind::Symlink => Ftype3::Lnk,
        }
    }

    /// The `st_mode` type bits.
    pub fn type_bits(self) -> u32 {
        match self {
            Kind::File => S_IFREG,
            Kind::Dir => S_IFDIR,
            Kind::Symlink => S_IFLNK,
        }
    }
}

/// A parsed mode: the type it names (if any) and the permission bits.
pub fn parse_mode(s: &str) -> Option<(Option<Kind>, u32)> {
    let s = s.trim();
    let v = if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse::<u32>().ok()?
    };
    let kind = match v & S_IFMT {
        S_IFDIR => Some(Kind::Dir),
        S_IFLNK => Some(Kind::Symlink),
        S_IFREG => Some(Kind::File),
        _ => None,
    };
    Some((kind, v & 0o7777))
}

/// A time stored as seconds (whole or with a fraction).
pub fn parse_time(s: &str) -> Option<Nfstime3> {
    let s = s.trim();
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let seconds = secs.parse::<u32>().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nseconds = if digits.is_empty() {
        0
    } else {
        let n = digits.parse::<u32>().ok()?;
        n * 10u32.pow(9 - digits.len() as u32)
    };
    Some(Nfstime3 { seconds, nseconds })
}

/// A time as stored: whole seconds (what s3fs reads).
pub fn format_time(t: Nfstime3) -> String {
    t.seconds.to_string()
}

/// Milliseconds since the epoch as an NFS time.
pub fn time_of_ms(ms: u64) -> Nfstime3 {
    Nfstime3 {
        seconds: (ms / 1000).min(u32::MAX as u64) as u32,
        nseconds: ((ms % 1000) * 1_000_000) as u32,
    }
}

/// Now, as an NFS time.
pub fn now() -> Nfstime3 {
    time_of_ms(cairn_client::now_ms())
}

/// The kind of a stored version at a key (a key ending in `/` is a directory marker).
pub fn kind_of(key: &str, m: &VersionManifest) -> Kind {
    if key.ends_with('/') {
        return Kind::Dir;
    }
    match m.user_metadata.get(META_MODE).and_then(|s| parse_mode(s)) {
        Some((Some(Kind::Symlink), _)) => Kind::Symlink,
        _ => Kind::File,
    }
}

/// A file id from a bucket and a key: stable across restarts, never 0 or 1 (reserved).
pub fn fileid_of(bucket: &str, key: &str) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(bucket.as_bytes());
    h.update(&[0]);
    h.update(key.as_bytes());
    let b = h.finalize();
    let mut x = [0u8; 8];
    x.copy_from_slice(&b.as_bytes()[..8]);
    // 63 bits: some clients keep inode numbers signed.
    (u64::from_be_bytes(x) >> 1).max(2)
}

/// The file id a version keeps in its metadata (through renames, or given at creation).
pub fn stored_ino(meta: &BTreeMap<String, String>) -> Option<u64> {
    meta.get(META_INO)
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .filter(|&x| x >= 2)
}

/// Attributes of a stored version (a file, a symlink or a directory marker) of `key`.
pub fn attr_of(fsid: u64, fileid: u64, key: &str, m: &VersionManifest) -> Fattr3 {
    let kind = kind_of(key, m);
    let meta = &m.user_metadata;
    let perm = meta
        .get(META_MODE)
        .and_then(|s| parse_mode(s))
        .map(|(_, p)| p)
        .unwrap_or(match kind {
            Kind::Dir => DEFAULT_DIR_MODE,
            Kind::Symlink => 0o777,
            Kind::File => DEFAULT_FILE_MODE,
        });
    let num = |k: &str| meta.get(k).and_then(|s| s.trim().parse::<u32>().ok());
    let written = time_of_ms(m.mtime_ms);
    let mtime = meta
        .get(META_MTIME)
        .and_then(|s| parse_time(s))
        .unwrap_or(written);
    let atime = meta
        .get(META_ATIME)
        .and_then(|s| parse_time(s))
        .unwrap_or(mtime);
    // The change time is the later of the version's write and a stored attribute change.
    let ctime = meta
        .get(META_CTIME)
        .and_then(|s| parse_time(s))
        .map_or(written, |c| c.max(written));
    let size = match kind {
        Kind::Dir => 4096,
        _ => m.size,
    };
    Fattr3 {
        type_: kind.ftype(),
        mode: perm,
        nlink: if kind == Kind::Dir { 2 } else { 1 },
        uid: num(META_UID).unwrap_or(0),
        gid: num(META_GID).unwrap_or(0),
        size,
        used: used_of(size),
        rdev: Specdata3::default(),
        fsid,
        fileid,
        atime,
        mtime,
        ctime,
    }
}

/// Attributes of a directory with no marker object (a prefix other keys share), or of an
/// export's root.
pub fn implicit_dir(fsid: u64, fileid: u64, mode: u32) -> Fattr3 {
    let t = Nfstime3::default();
    Fattr3 {
        type_: Ftype3::Dir,
        mode,
        nlink: 2,
        uid: 0,
        gid: 0,
        size: 4096,
        used: 4096,
        rdev: Specdata3::default(),
        fsid,
        fileid,
        atime: t,
        mtime: t,
        ctime: t,
    }
}

/// Bytes a file of `size` takes, as `du` counts them.
pub fn used_of(size: u64) -> u64 {
    size.div_ceil(4096) * 4096
}

/// The pre-operation attributes of `a`.
pub fn wcc_of(a: &Fattr3) -> WccAttr {
    WccAttr {
        size: a.size,
        mtime: a.mtime,
        ctime: a.ctime,
    }
}

/// Metadata of a new file, directory or symlink.
/// A new file gets an id of its own (random, kept in its metadata): never one a renamed file
/// took with it from the same key.
pub fn new_meta(kind: Kind, perm: u32, uid: u32, gid: u32) -> BTreeMap<String, String> {
    let t = format_time(now());
    let ino = (rand::random::<u64>() >> 1).max(2);
    BTreeMap::from([
        (META_INO.to_string(), format!("{ino:x}")),
        (META_MODE.to_string(), (kind.type_bits() | perm).to_string()),
        (META_UID.to_string(), uid.to_string()),
        (META_GID.to_string(), gid.to_string()),
        (META_MTIME.to_string(), t.clone()),
        (META_ATIME.to_string(), t.clone()),
        (META_CTIME.to_string(), t),
    ])
}

/// Content bytes of a small version held in its manifest, if it is.
pub fn inline_bytes(m: &VersionManifest) -> Option<bytes::Bytes> {
    match &m.content {
        Content::Empty => Some(bytes::Bytes::new()),
        Content::Inline(b) => Some(b.clone()),
        Content::Tree(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_times_parse_as_s3fs_and_rclone_write_them() {
        assert_eq!(parse_mode("33188"), Some((Some(Kind::File), 0o644)));
        assert_eq!(parse_mode("16877"), Some((Some(Kind::Dir), 0o755)));
        assert_eq!(parse_mode("41471"), Some((Some(Kind::Symlink), 0o777)));
        assert_eq!(parse_mode("0100600"), Some((Some(Kind::File), 0o600)));
        assert_eq!(parse_mode("420"), Some((None, 0o644)));
        assert_eq!(parse_mode("x"), None);
        assert_eq!(
            parse_time("1700000000"),
            Some(Nfstime3 {
                seconds: 1_700_000_000,
                nseconds: 0
            })
        );
        assert_eq!(
            parse_time("1700000000.5"),
            Some(Nfstime3 {
                seconds: 1_700_000_000,
                nseconds: 500_000_000
            })
        );
        assert_eq!(
            parse_time("1700000000.123456789123"),
            Some(Nfstime3 {
                seconds: 1_700_000_000,
                nseconds: 123_456_789
            })
        );
        assert_eq!(parse_time("-1"), None);
    }

    #[test]
    fn file_ids_are_stable_and_never_reserved() {
        let a = fileid_of("b", "a/b");
        assert_eq!(a, fileid_of("b", "a/b"));
        assert_ne!(a, fileid_of("b", "a/c"));
        assert_ne!(a, fileid_of("c", "a/b"));
        assert!((2..1 << 63).contains(&a));
        let kept = BTreeMap::from([(META_INO.to_string(), format!("{a:x}"))]);
        assert_eq!(stored_ino(&kept), Some(a));
        assert_eq!(stored_ino(&BTreeMap::new()), None);
    }
}
