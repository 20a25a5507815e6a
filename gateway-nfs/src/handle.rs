//! NFS file handles. A handle names an export (by a hash of its bucket's name), the file's id
//! (its inode number) and, when it fits, its key: most handles resolve with one metadata read
//! and no table. A key too long for the handle, and a file renamed since the handle was made,
//! resolve through the export's id table (see `Fs::resolve`). Handles stay valid across
//! restarts: nothing in them depends on the server's memory.

use crate::nfs3::{NfsFh3, NFS3_FHSIZE};

/// Handle format version.
const VERSION: u8 = 1;
/// The key follows the fixed part.
const KIND_KEY: u8 = 0;
/// The key is looked up by file id.
const KIND_ID: u8 = 1;
/// Bytes before the key.
const HEAD: usize = 1 + 1 + 4 + 8;
/// Longest key a handle carries.
pub const MAX_INLINE_KEY: usize = NFS3_FHSIZE - HEAD;

/// A decoded handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handle {
    /// The export's id ([`export_id`] of its bucket).
    pub export: u32,
    /// The file id (inode number).
    pub fileid: u64,
    /// The key, when the handle carries it (`""` is the export's root; a directory's key
    /// ends with `/`).
    pub key: Option<String>,
}

/// An export's id: the first four bytes of the BLAKE3 hash of its bucket's name (also its
/// file system id).
pub fn export_id(bucket: &str) -> u32 {
    let h = blake3::hash(bucket.as_bytes());
    let mut x = [0u8; 4];
    x.copy_from_slice(&h.as_bytes()[..4]);
    u32::from_be_bytes(x)
}

impl Handle {
    /// The handle of `key` with file id `fileid` in export `export`.
    pub fn new(export: u32, fileid: u64, key: &str) -> Handle {
        Handle {
            export,
            fileid,
            key: (key.len() <= MAX_INLINE_KEY).then(|| key.to_string()),
        }
    }

    /// The wire form.
    pub fn encode(&self) -> NfsFh3 {
        let mut v = Vec::with_capacity(NFS3_FHSIZE);
        v.push(VERSION);
        v.push(if self.key.is_some() {
            KIND_KEY
        } else {
            KIND_ID
        });
        v.extend_from_slice(&self.export.to_be_bytes());
        v.extend_from_slice(&self.fileid.to_be_bytes());
        if let Some(k) = &self.key {
            v.extend_from_slice(k.as_bytes());
        }
        NfsFh3(v)
    }

    /// Parses a handle; `None` for anything this server did not make (BADHANDLE).
    pub fn decode(fh: &NfsFh3) -> Option<Handle> {
        let b = &fh.0;
        if b.len() < HEAD || b.len() > NFS3_FHSIZE || b[0] != VERSION {
            return None;
        }
        let export = u32::from_be_bytes(b[2..6].try_into().ok()?);
        let fileid = u64::from_be_bytes(b[6..14].try_into().ok()?);
        let key = match b[1] {
            KIND_KEY => Some(String::from_utf8(b[HEAD..].to_vec()).ok()?),
            KIND_ID if b.len() == HEAD => None,
            _ => return None,
        };
        Some(Handle {
            export,
            fileid,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_long_keys_go_by_id() {
        let h = Handle::new(7, 42, "a/b/c");
        assert_eq!(Handle::decode(&h.encode()), Some(h));
        let long = "k".repeat(MAX_INLINE_KEY + 1);
        let h = Handle::new(7, 42, &long);
        assert_eq!(h.key, None);
        assert_eq!(h.encode().0.len(), HEAD);
        assert_eq!(Handle::decode(&h.encode()), Some(h));
        let fits = "k".repeat(MAX_INLINE_KEY);
        assert_eq!(Handle::new(7, 42, &fits).encode().0.len(), NFS3_FHSIZE);
        for bad in [
            vec![],
            vec![2; 20],
            vec![1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert_eq!(Handle::decode(&NfsFh3(bad)), None);
        }
        // A by-id handle carries nothing after its head; invalid UTF-8 keys are refused.
        let mut e = Handle::new(1, 2, &long).encode();
        e.0.push(b'x');
        assert_eq!(Handle::decode(&e), None);
        let mut e = Handle::new(1, 2, "a").encode();
        e.0.push(0xff);
        assert_eq!(Handle::decode(&e), None);
    }
}
