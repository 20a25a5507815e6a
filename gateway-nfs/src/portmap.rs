//! Port mapper version 2 (RFC 1833): procedure numbers and the `mapping` and `pmaplist` types.
//! GETPORT answers a bare `unsigned int` port (0: not registered), SET and UNSET a `bool`.

use crate::xdr::{xdr_struct, Pack, Reader, Unpack, Writer, XdrError};

/// Procedure 0: do nothing.
pub const PROC_NULL: u32 = 0;
/// Procedure 1: register a mapping (result: bool).
pub const PROC_SET: u32 = 1;
/// Procedure 2: unregister a mapping (result: bool).
pub const PROC_UNSET: u32 = 2;
/// Procedure 3: look up the port of a program, version and protocol (result: port, 0 if none).
pub const PROC_GETPORT: u32 = 3;
/// Procedure 4: list the mappings (result: [`MappingList`]).
pub const PROC_DUMP: u32 = 4;
/// Procedure 5: call a procedure on the local machine (normally unsupported).
pub const PROC_CALLIT: u32 = 5;

/// The port mapper's well-known port.
pub const PMAP_PORT: u16 = 111;
/// `prot` of a TCP mapping.
pub const IPPROTO_TCP: u32 = 6;
/// `prot` of a UDP mapping.
pub const IPPROTO_UDP: u32 = 17;

xdr_struct! {
    /// A program registration (`mapping`); also the argument of SET, UNSET and GETPORT
    /// (GETPORT ignores `port`).
    #[derive(Copy, Hash)]
    pub struct Mapping {
        /// Program number.
        pub prog: u32,
        /// Program version.
        pub vers: u32,
        /// Transport: [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
        pub prot: u32,
        /// Port.
        pub port: u32,
    }
}

/// DUMP result (`pmaplist`): an XDR linked list of mappings.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MappingList(pub Vec<Mapping>);

impl Pack for MappingList {
    fn pack(&self, w: &mut Writer) {
        for m in &self.0 {
            w.bool(true);
            m.pack(w);
        }
        w.bool(false);
    }
}

impl Unpack for MappingList {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        // Every mapping takes 20 input bytes, so the list is bounded by the input.
        let mut v = Vec::new();
        while r.bool()? {
            v.push(Mapping::unpack(r)?);
        }
        Ok(MappingList(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::{decode, encode};

    #[test]
    fn getport_args() {
        // GETPORT(NFS, 3, TCP, 0).
        let b = [0, 1, 0x86, 0xa3, 0, 0, 0, 3, 0, 0, 0, 6, 0, 0, 0, 0];
        let m = decode::<Mapping>(&b).unwrap();
        assert_eq!(
            m,
            Mapping {
                prog: 100_003,
                vers: 3,
                prot: IPPROTO_TCP,
                port: 0
            }
        );
        assert_eq!(encode(&m), b);
        assert_eq!(decode::<Mapping>(&b[..15]), Err(XdrError::Truncated));
    }

    #[test]
    fn dump_list() {
        assert_eq!(encode(&MappingList::default()), [0, 0, 0, 0]);
        let l = MappingList(vec![
            Mapping {
                prog: 100_000,
                vers: 2,
                prot: IPPROTO_TCP,
                port: 111,
            },
            Mapping {
                prog: 100_003,
                vers: 3,
                prot: IPPROTO_TCP,
                port: 2049,
            },
        ]);
        let b = encode(&l);
        assert_eq!(b.len(), 2 * (4 + 16) + 4);
        assert_eq!(decode::<MappingList>(&b), Ok(l));
    }
}
