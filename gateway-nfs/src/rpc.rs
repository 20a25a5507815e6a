//! ONC RPC version 2 (RFC 5531) over TCP: record marking (section 11), call headers with their
//! credentials, and the reply headers a server sends back.
//!
//! A reply is built in a [`Writer`] that starts with the reply header (see [`reply_success`] and
//! friends); the caller packs the procedure's result after it and sends
//! [`record_header`]`(len)` followed by the bytes.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::xdr::{Reader, Writer, XdrError};

/// Largest record accepted: a WRITE of 1 MiB plus its RPC and NFS headers.
pub const MAX_RECORD: usize = (1 << 20) + (64 << 10);

/// The RPC protocol version this module speaks.
pub const RPC_VERSION: u32 = 2;

/// Port mapper program number (RFC 1833).
pub const PROG_PORTMAP: u32 = 100_000;
/// The port mapper version served.
pub const PORTMAP_VERSION: u32 = 2;
/// NFS program number (RFC 1813).
pub const PROG_NFS: u32 = 100_003;
/// The NFS version served.
pub const NFS_VERSION: u32 = 3;
/// MOUNT program number (RFC 1813 appendix I).
pub const PROG_MOUNT: u32 = 100_005;
/// The MOUNT version served.
pub const MOUNT_VERSION: u32 = 3;

/// `msg_type` of a call.
pub const MSG_CALL: u32 = 0;
/// `msg_type` of a reply.
pub const MSG_REPLY: u32 = 1;
/// `reply_stat`: the call was accepted (its `accept_stat` follows).
pub const MSG_ACCEPTED: u32 = 0;
/// `reply_stat`: the call was denied (its `reject_stat` follows).
pub const MSG_DENIED: u32 = 1;

/// `accept_stat`: executed; the results follow.
pub const SUCCESS: u32 = 0;
/// `accept_stat`: the program is not served here.
pub const PROG_UNAVAIL: u32 = 1;
/// `accept_stat`: the program version is not served (lowest and highest served follow).
pub const PROG_MISMATCH: u32 = 2;
/// `accept_stat`: the program has no such procedure.
pub const PROC_UNAVAIL: u32 = 3;
/// `accept_stat`: the arguments could not be decoded.
pub const GARBAGE_ARGS: u32 = 4;
/// `accept_stat`: a server error (e.g. out of memory).
pub const SYSTEM_ERR: u32 = 5;

/// `reject_stat`: RPC version not 2 (lowest and highest supported follow).
pub const RPC_MISMATCH: u32 = 0;
/// `reject_stat`: authentication failed (an `auth_stat` follows).
pub const AUTH_ERROR: u32 = 1;

/// `auth_stat`: success.
pub const AUTH_OK: u32 = 0;
/// `auth_stat`: bad credential (seal broken).
pub const AUTH_BADCRED: u32 = 1;
/// `auth_stat`: the client must begin a new session.
pub const AUTH_REJECTEDCRED: u32 = 2;
/// `auth_stat`: bad verifier (seal broken).
pub const AUTH_BADVERF: u32 = 3;
/// `auth_stat`: verifier expired or replayed.
pub const AUTH_REJECTEDVERF: u32 = 4;
/// `auth_stat`: rejected for security reasons (e.g. an unsupported flavor).
pub const AUTH_TOOWEAK: u32 = 5;
/// `auth_stat`: bogus response verifier.
pub const AUTH_INVALIDRESP: u32 = 6;
/// `auth_stat`: reason unknown.
pub const AUTH_FAILED: u32 = 7;

/// Authentication flavor: none.
pub const AUTH_NONE: u32 = 0;
/// Authentication flavor: AUTH_SYS (also known as AUTH_UNIX).
pub const AUTH_SYS: u32 = 1;
/// Authentication flavor: AUTH_SHORT.
pub const AUTH_SHORT: u32 = 2;
/// Authentication flavor: AUTH_DH.
pub const AUTH_DH: u32 = 3;
/// Authentication flavor: RPCSEC_GSS (RFC 2203).
pub const RPCSEC_GSS: u32 = 6;

/// Largest credential or verifier body (RFC 5531 `opaque body<400>`).
pub const MAX_AUTH_BYTES: usize = 400;
/// Largest AUTH_SYS machine name.
pub const MAX_MACHINE_NAME: usize = 255;
/// Most supplementary groups in an AUTH_SYS credential.
pub const MAX_AUTH_GIDS: usize = 16;

/// Size of the header [`reply_success`] writes: xid, REPLY, MSG_ACCEPTED, an empty AUTH_NONE
/// verifier and `accept_stat`.
pub const ACCEPTED_REPLY_HEADER_LEN: usize = 24;

/// Bit of a record-marking header that flags the last fragment of a record.
const LAST_FRAGMENT: u32 = 0x8000_0000;
/// Fragments of a record are grown into its buffer at most this much ahead of the bytes
/// received, so a peer announcing a large fragment and sending nothing costs little memory.
const READ_STEP: usize = 64 << 10;

/// Reads one record (RFC 5531 section 11): fragments, each behind a 4-byte header whose top
/// bit marks the last one, concatenated. `Ok(None)` on end of stream before a record starts;
/// `InvalidData` when the record would exceed `max` bytes (refused before reading the fragment);
/// `UnexpectedEof` when the stream ends inside a record. Headers are read 4 bytes at a time, so
/// wrap a socket in a `BufReader`. Not cancel-safe: a cancelled read loses the partial record.
pub async fn read_record<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut first = true;
    loop {
        let mut hdr = [0u8; 4];
        let mut got = 0;
        while let Some(dst) = hdr.get_mut(got..).filter(|d| !d.is_empty()) {
            let n = r.read(dst).await?;
            if n == 0 {
                if first && got == 0 {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "end of stream inside an RPC record header",
                ));
            }
            got += n;
        }
        first = false;
        let word = u32::from_be_bytes(hdr);
        let len = (word & !LAST_FRAGMENT) as usize;
        let end = match buf.len().checked_add(len) {
            Some(end) if end <= max => end,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "RPC record of more than {} bytes exceeds the limit of {max}",
                        buf.len().saturating_add(len)
                    ),
                ))
            }
        };
        while buf.len() < end {
            let start = buf.len();
            // Grow geometrically, but never past the fragment's end nor far past what arrived.
            let step = (end - start).min(READ_STEP.max(start));
            buf.reserve_exact(step);
            buf.resize(start + step, 0);
            if let Some(dst) = buf.get_mut(start..) {
                r.read_exact(dst).await.map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "end of stream inside an RPC record",
                        )
                    } else {
                        e
                    }
                })?;
            }
        }
        if word & LAST_FRAGMENT != 0 {
            return Ok(Some(buf));
        }
    }
}

/// The record-marking header of a one-fragment record of `len` bytes (`len` < 2^31).
pub fn record_header(len: usize) -> [u8; 4] {
    debug_assert!(len <= (!LAST_FRAGMENT) as usize);
    ((len as u32 & !LAST_FRAGMENT) | LAST_FRAGMENT).to_be_bytes()
}

/// An AUTH_SYS (AUTH_UNIX) credential.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AuthUnix {
    /// Arbitrary id the caller's machine may generate.
    pub stamp: u32,
    /// The caller's host name (at most 255 bytes).
    pub machine: Vec<u8>,
    /// The caller's effective user id.
    pub uid: u32,
    /// The caller's effective group id.
    pub gid: u32,
    /// Supplementary groups (at most 16).
    pub gids: Vec<u32>,
}

impl AuthUnix {
    /// Decodes an AUTH_SYS credential body; the whole body must be consumed.
    pub fn decode(body: &[u8]) -> Result<AuthUnix, XdrError> {
        let mut r = Reader::new(body);
        let stamp = r.u32()?;
        let machine = r.opaque_named("machinename", MAX_MACHINE_NAME)?.to_vec();
        let uid = r.u32()?;
        let gid = r.u32()?;
        let n = r.array_len("gids", MAX_AUTH_GIDS)?;
        let mut gids = Vec::with_capacity(n);
        for _ in 0..n {
            gids.push(r.u32()?);
        }
        r.finish()?;
        Ok(AuthUnix {
            stamp,
            machine,
            uid,
            gid,
            gids,
        })
    }

    /// Encodes the credential body (without flavor and length).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.stamp);
        w.string(&self.machine);
        w.u32(self.uid);
        w.u32(self.gid);
        w.u32(self.gids.len() as u32);
        for g in &self.gids {
            w.u32(*g);
        }
        w.into_inner()
    }
}

/// The credential of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// AUTH_NONE.
    None,
    /// AUTH_SYS, decoded.
    Unix(AuthUnix),
    /// Another flavor (its number); the server normally answers AUTH_TOOWEAK or treats it as
    /// anonymous.
    Other(u32),
}

/// A decoded RPC call header; `args` are the procedure's undecoded arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call<'a> {
    /// Transaction id, echoed in the reply.
    pub xid: u32,
    /// Program number.
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// Procedure number.
    pub proc_: u32,
    /// The caller's credential (the verifier is checked for shape and dropped).
    pub auth: Auth,
    /// The procedure's arguments.
    pub args: &'a [u8],
}

/// Why [`parse_call`] refused a message, and so what to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Not a call (a reply, another message type, or too short to hold a transaction id):
    /// drop it.
    #[error("not an RPC call")]
    NotACall,
    /// RPC version other than 2: answer [`reply_rpc_mismatch`].
    #[error("RPC version mismatch (xid {xid:#x})")]
    RpcMismatch {
        /// Transaction id.
        xid: u32,
    },
    /// Malformed credential or verifier: answer [`reply_auth_error`] with [`AUTH_BADCRED`].
    #[error("malformed RPC credential (xid {xid:#x})")]
    BadCred {
        /// Transaction id.
        xid: u32,
    },
    /// Call header truncated after the transaction id: answer [`reply_garbage_args`].
    #[error("truncated RPC call header (xid {xid:#x})")]
    Garbage {
        /// Transaction id.
        xid: u32,
    },
}

impl CallError {
    /// The reply this error calls for (`None`: send nothing).
    pub fn reply(&self) -> Option<Writer> {
        match *self {
            CallError::NotACall => None,
            CallError::RpcMismatch { xid } => Some(reply_rpc_mismatch(xid)),
            CallError::BadCred { xid } => Some(reply_auth_error(xid, AUTH_BADCRED)),
            CallError::Garbage { xid } => Some(reply_garbage_args(xid)),
        }
    }
}

/// Reads an `opaque_auth` (flavor and a body of at most 400 bytes).
fn opaque_auth<'a>(r: &mut Reader<'a>) -> Result<(u32, &'a [u8]), XdrError> {
    let flavor = r.u32()?;
    let body = r.opaque_named("opaque_auth body", MAX_AUTH_BYTES)?;
    Ok((flavor, body))
}

/// Decodes the header of an RPC call message (one record).
pub fn parse_call(buf: &[u8]) -> Result<Call<'_>, CallError> {
    let mut r = Reader::new(buf);
    let xid = r.u32().map_err(|_| CallError::NotACall)?;
    let garbage = |_| CallError::Garbage { xid };
    let mtype = r.u32().map_err(garbage)?;
    if mtype != MSG_CALL {
        return Err(CallError::NotACall);
    }
    let rpcvers = r.u32().map_err(garbage)?;
    if rpcvers != RPC_VERSION {
        return Err(CallError::RpcMismatch { xid });
    }
    let prog = r.u32().map_err(garbage)?;
    let vers = r.u32().map_err(garbage)?;
    let proc_ = r.u32().map_err(garbage)?;
    let bad_cred = |_| CallError::BadCred { xid };
    let (flavor, body) = opaque_auth(&mut r).map_err(bad_cred)?;
    let auth = match flavor {
        AUTH_NONE => Auth::None,
        AUTH_SYS => Auth::Unix(AuthUnix::decode(body).map_err(bad_cred)?),
        other => Auth::Other(other),
    };
    opaque_auth(&mut r).map_err(bad_cred)?;
    Ok(Call {
        xid,
        prog,
        vers,
        proc_,
        auth,
        args: r.rest(),
    })
}

/// Encodes a call header with an AUTH_NONE verifier, ready for the arguments (for clients and
/// tests).
pub fn encode_call(xid: u32, prog: u32, vers: u32, proc_: u32, auth: &Auth) -> Writer {
    let mut w = Writer::new();
    w.u32(xid);
    w.u32(MSG_CALL);
    w.u32(RPC_VERSION);
    w.u32(prog);
    w.u32(vers);
    w.u32(proc_);
    match auth {
        Auth::None => {
            w.u32(AUTH_NONE);
            w.opaque(&[]);
        }
        Auth::Unix(u) => {
            w.u32(AUTH_SYS);
            w.opaque(&u.encode());
        }
        Auth::Other(flavor) => {
            w.u32(*flavor);
            w.opaque(&[]);
        }
    }
    w.u32(AUTH_NONE);
    w.opaque(&[]);
    w
}

fn accepted(xid: u32, stat: u32) -> Writer {
    let mut w = Writer::with_capacity(128);
    w.u32(xid);
    w.u32(MSG_REPLY);
    w.u32(MSG_ACCEPTED);
    w.u32(AUTH_NONE);
    w.u32(0);
    w.u32(stat);
    w
}

fn denied(xid: u32, stat: u32) -> Writer {
    let mut w = Writer::with_capacity(24);
    w.u32(xid);
    w.u32(MSG_REPLY);
    w.u32(MSG_DENIED);
    w.u32(stat);
    w
}

/// Header of a successful reply; the caller packs the procedure's results after it.
pub fn reply_success(xid: u32) -> Writer {
    accepted(xid, SUCCESS)
}

/// Complete reply: program not served.
pub fn reply_prog_unavail(xid: u32) -> Writer {
    accepted(xid, PROG_UNAVAIL)
}

/// Complete reply: program version not served; `low..=high` are the versions served.
pub fn reply_prog_mismatch(xid: u32, low: u32, high: u32) -> Writer {
    let mut w = accepted(xid, PROG_MISMATCH);
    w.u32(low);
    w.u32(high);
    w
}

/// Complete reply: no such procedure.
pub fn reply_proc_unavail(xid: u32) -> Writer {
    accepted(xid, PROC_UNAVAIL)
}

/// Complete reply: the arguments could not be decoded.
pub fn reply_garbage_args(xid: u32) -> Writer {
    accepted(xid, GARBAGE_ARGS)
}

/// Complete reply: server error.
pub fn reply_system_err(xid: u32) -> Writer {
    accepted(xid, SYSTEM_ERR)
}

/// Complete reply: RPC version mismatch (only version 2 is supported).
pub fn reply_rpc_mismatch(xid: u32) -> Writer {
    let mut w = denied(xid, RPC_MISMATCH);
    w.u32(RPC_VERSION);
    w.u32(RPC_VERSION);
    w
}

/// Complete reply: authentication error `stat` (e.g. [`AUTH_BADCRED`], [`AUTH_TOOWEAK`]).
pub fn reply_auth_error(xid: u32, stat: u32) -> Writer {
    let mut w = denied(xid, AUTH_ERROR);
    w.u32(stat);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    // A Linux client's NFSv3 GETATTR call, byte by byte: AUTH_SYS credential for root on host
    // "client" with one supplementary group, AUTH_NONE verifier, an 8-byte file handle.
    const GETATTR_CALL: [u8; 84] = [
        0x12, 0x34, 0x56, 0x78, // xid
        0, 0, 0, 0, // CALL
        0, 0, 0, 2, // rpcvers
        0, 1, 0x86, 0xa3, // prog 100003
        0, 0, 0, 3, // vers
        0, 0, 0, 1, // proc GETATTR
        0, 0, 0, 1, // cred flavor AUTH_SYS
        0, 0, 0, 32, // cred length
        0x5f, 0x00, 0x00, 0x01, // stamp
        0, 0, 0, 6, b'c', b'l', b'i', b'e', b'n', b't', 0, 0, // machine name
        0, 0, 0, 0, // uid
        0, 0, 0, 0, // gid
        0, 0, 0, 1, 0, 0, 0, 0, // gids [0]
        0, 0, 0, 0, // verf flavor AUTH_NONE
        0, 0, 0, 0, // verf length
        0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, // nfs_fh3
    ];

    #[test]
    fn parses_a_getattr_call() {
        let call = parse_call(&GETATTR_CALL).unwrap();
        assert_eq!(call.xid, 0x1234_5678);
        assert_eq!((call.prog, call.vers, call.proc_), (PROG_NFS, 3, 1));
        assert_eq!(
            call.auth,
            Auth::Unix(AuthUnix {
                stamp: 0x5f00_0001,
                machine: b"client".to_vec(),
                uid: 0,
                gid: 0,
                gids: vec![0],
            })
        );
        assert_eq!(call.args, &[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        let again = encode_call(0x1234_5678, PROG_NFS, 3, 1, &call.auth);
        let mut bytes = again.into_inner();
        bytes.extend_from_slice(call.args);
        assert_eq!(bytes, GETATTR_CALL);
    }

    #[test]
    fn call_errors() {
        assert_eq!(parse_call(&[]), Err(CallError::NotACall));
        assert_eq!(parse_call(&[0, 0, 0]), Err(CallError::NotACall));
        assert_eq!(
            parse_call(&[0, 0, 0, 1]),
            Err(CallError::Garbage { xid: 1 })
        );
        // A reply.
        assert_eq!(
            parse_call(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]),
            Err(CallError::NotACall)
        );
        assert_eq!(
            parse_call(&[0, 0, 0, 9, 0, 0, 0, 0]),
            Err(CallError::Garbage { xid: 9 })
        );
        let mut v3 = GETATTR_CALL;
        v3[11] = 3;
        assert_eq!(
            parse_call(&v3),
            Err(CallError::RpcMismatch { xid: 0x1234_5678 })
        );
        for cut in 4..GETATTR_CALL.len() - 12 {
            let e = parse_call(&GETATTR_CALL[..cut]).unwrap_err();
            let want = if cut < 24 {
                CallError::Garbage { xid: 0x1234_5678 }
            } else {
                CallError::BadCred { xid: 0x1234_5678 }
            };
            assert_eq!(e, want, "cut at {cut}");
        }
        // A credential claiming 401 bytes.
        let mut big = GETATTR_CALL;
        big[31] = 0x91;
        big[30] = 0x01;
        assert_eq!(
            parse_call(&big),
            Err(CallError::BadCred { xid: 0x1234_5678 })
        );
        // 17 supplementary groups.
        let mut groups = GETATTR_CALL;
        groups[59] = 17;
        assert_eq!(
            parse_call(&groups),
            Err(CallError::BadCred { xid: 0x1234_5678 })
        );
    }

    #[test]
    fn reply_headers() {
        assert_eq!(
            reply_success(7).into_inner(),
            [0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(reply_success(7).len(), ACCEPTED_REPLY_HEADER_LEN);
        assert_eq!(
            reply_prog_mismatch(7, 3, 3).into_inner(),
            [
                0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 3,
                0, 0, 0, 3
            ]
        );
        assert_eq!(
            reply_rpc_mismatch(7).into_inner(),
            [0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2]
        );
        assert_eq!(
            reply_auth_error(7, AUTH_TOOWEAK).into_inner(),
            [0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 5]
        );
        assert_eq!(reply_garbage_args(7).as_slice()[20..], [0, 0, 0, 4]);
        assert_eq!(reply_proc_unavail(7).as_slice()[20..], [0, 0, 0, 3]);
        assert_eq!(reply_prog_unavail(7).as_slice()[20..], [0, 0, 0, 1]);
        assert_eq!(reply_system_err(7).as_slice()[20..], [0, 0, 0, 5]);
        assert!(CallError::NotACall.reply().is_none());
        assert_eq!(
            CallError::BadCred { xid: 7 }
                .reply()
                .map(Writer::into_inner),
            Some(reply_auth_error(7, AUTH_BADCRED).into_inner())
        );
    }

    #[test]
    fn record_marking() {
        assert_eq!(record_header(0x1234), [0x80, 0, 0x12, 0x34]);
    }

    #[tokio::test]
    async fn reads_fragmented_records() {
        let mut input = Vec::new();
        input.extend_from_slice(&[0, 0, 0, 3, b'a', b'b', b'c']);
        input.extend_from_slice(&[0, 0, 0, 0]);
        input.extend_from_slice(&[0x80, 0, 0, 2, b'd', b'e']);
        input.extend_from_slice(&[0x80, 0, 0, 1, b'f']);
        let mut r = &input[..];
        assert_eq!(
            read_record(&mut r, 16).await.unwrap(),
            Some(b"abcde".to_vec())
        );
        assert_eq!(read_record(&mut r, 16).await.unwrap(), Some(b"f".to_vec()));
        assert_eq!(read_record(&mut r, 16).await.unwrap(), None);
        let mut r = &input[..];
        let e = read_record(&mut r, 4).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let mut r = &input[..9];
        let e = read_record(&mut r, 16).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let mut r = &input[..5];
        let e = read_record(&mut r, 16).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
