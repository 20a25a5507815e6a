//! Blocking ONC RPC over one TCP connection (record marking, AUTH_SYS), built from
//! `cairn_nfs`'s encoders. When the connection breaks (the server restarted, or went away for
//! a while) the call is sent again on a new connection, for up to `retry_for`.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use cairn_nfs::rpc::{self, Auth, AuthUnix};
use cairn_nfs::xdr::Reader;

/// Largest reply record accepted (a 1 MiB READ and its header fit with room to spare).
const MAX_REPLY: usize = 4 << 20;
/// How long one reply may take before the connection is taken for dead and the call resent.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// No answer within the retry window: the server is down or unreachable.
    Unreachable(io::Error),
    /// The server answered with an RPC-level error (not a procedure's status).
    Rpc(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "server unreachable: {e}"),
            CallError::Rpc(m) => write!(f, "RPC error: {m}"),
        }
    }
}

/// A reply's result bytes, and whether the call had to be sent more than once (a
/// non-idempotent procedure may then report what its first transmission already did).
pub struct Reply {
    /// The procedure's results.
    pub body: Vec<u8>,
    /// Sent again after the connection broke.
    pub retried: bool,
}

/// AUTH_SYS for `uid`/`gid` from `machine`.
pub fn auth_sys(machine: &[u8], uid: u32, gid: u32) -> Auth {
    Auth::Unix(AuthUnix {
        stamp: 0,
        machine: machine.to_vec(),
        uid,
        gid,
        gids: vec![gid],
    })
}

/// One connection to an RPC server, made again whenever it breaks.
pub struct Conn {
    addr: String,
    stream: Option<TcpStream>,
    xid: u32,
    retry_for: Duration,
    /// Connections made after the first.
    pub reconnects: u64,
    /// Calls sent again on a new connection.
    pub resent_calls: u64,
    connected_once: bool,
}

impl Conn {
    /// A connection to `addr` (`HOST:PORT`), made at the first call.
    pub fn new(addr: &str, retry_for: Duration) -> Conn {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() ^ std::process::id());
        Conn {
            addr: addr.to_string(),
            stream: None,
            xid: seed,
            retry_for,
            reconnects: 0,
            resent_calls: 0,
            connected_once: false,
        }
    }

    fn connect(&mut self) -> io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
            let mut found = None;
            for a in self.addr.to_socket_addrs()? {
                match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                    Ok(s) => {
                        found = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let s = found.ok_or(last)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(REPLY_TIMEOUT))?;
            s.set_write_timeout(Some(REPLY_TIMEOUT))?;
            if self.connected_once {
                self.reconnects += 1;
                eprintln!("nfs-fuse: reconnected to {}", self.addr);
            }
            self.connected_once = true;
            self.stream = Some(s);
        }
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::other("not connected"))
    }

    /// Sends `record` (a whole call) and reads records until the one answering `xid`.
    fn exchange(&mut self, record: &[u8], xid: u32) -> io::Result<Vec<u8>> {
        let s = self.connect()?;
        let mut out = Vec::with_capacity(record.len() + 4);
        out.extend_from_slice(&rpc::record_header(record.len()));
        out.extend_from_slice(record);
        s.write_all(&out)?;
        loop {
            let reply = read_record(s, MAX_REPLY)?;
            if reply.get(..4) == Some(&xid.to_be_bytes()[..]) {
                return Ok(reply);
            }
            // A late reply to an earlier transmission: not ours.
        }
    }

    /// Calls `prog`/`vers`/`proc_` with the encoded `args` as `auth`, sending the call again on
    /// a new connection while the connection breaks, for up to the retry window.
    pub fn call(
        &mut self,
        prog: u32,
        vers: u32,
        proc_: u32,
        auth: &Auth,
        args: &[u8],
    ) -> Result<Reply, CallError> {
        self.xid = self.xid.wrapping_add(1);
        let xid = self.xid;
        let mut w = rpc::encode_call(xid, prog, vers, proc_, auth);
        w.opaque_fixed(args);
        let record = w.into_inner();
        let deadline = Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(20);
        let mut retried = false;
        let reply = loop {
            match self.exchange(&record, xid) {
                Ok(r) => break r,
                Err(e) => {
                    self.stream = None;
                    if Instant::now() >= deadline {
                        return Err(CallError::Unreachable(e));
                    }
                    if !retried {
                        eprintln!(
                            "nfs-fuse: call to {} failed ({e}); retrying for up to {:?}",
                            self.addr, self.retry_for
                        );
                    }
                    retried = true;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            }
        };
        if retried {
            self.resent_calls += 1;
        }
        parse_reply(&reply).map(|body| Reply { body, retried })
    }
}

/// The results of a successful reply, or what the server refused.
fn parse_reply(reply: &[u8]) -> Result<Vec<u8>, CallError> {
    let bad = |e: cairn_nfs::xdr::XdrError| CallError::Rpc(format!("malformed reply: {e}"));
    let mut r = Reader::new(reply);
    let _xid = r.u32().map_err(bad)?;
    if r.u32().map_err(bad)? != rpc::MSG_REPLY {
        return Err(CallError::Rpc("not a reply".into()));
    }
    if r.u32().map_err(bad)? != rpc::MSG_ACCEPTED {
        let stat = r.u32().map_err(bad)?;
        let why = r.u32().unwrap_or(0);
        return Err(CallError::Rpc(format!(
            "call denied (reject_stat {stat}, {why})"
        )));
    }
    let _flavor = r.u32().map_err(bad)?;
    let _verf = r.opaque(rpc::MAX_AUTH_BYTES).map_err(bad)?;
    match r.u32().map_err(bad)? {
        rpc::SUCCESS => Ok(r.rest().to_vec()),
        stat => Err(CallError::Rpc(format!(
            "call not accepted (accept_stat {stat})"
        ))),
    }
}

/// Reads one record (all its fragments) of at most `max` bytes.
pub fn read_record(r: &mut impl Read, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    loop {
        let mut head = [0u8; 4];
        r.read_exact(&mut head)?;
        let word = u32::from_be_bytes(head);
        let len = (word & 0x7fff_ffff) as usize;
        if buf.len() + len > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("RPC record over {max} bytes"),
            ));
        }
        let start = buf.len();
        buf.resize(start + len, 0);
        r.read_exact(&mut buf[start..])?;
        if word & 0x8000_0000 != 0 {
            return Ok(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fragmented_records() {
        let mut input = Vec::new();
        input.extend_from_slice(&[0, 0, 0, 3, b'a', b'b', b'c']);
        input.extend_from_slice(&[0x80, 0, 0, 2, b'd', b'e']);
        input.extend_from_slice(&[0x80, 0, 0, 1, b'f']);
        let mut r = &input[..];
        assert_eq!(read_record(&mut r, 16).unwrap(), b"abcde");
        assert_eq!(read_record(&mut r, 16).unwrap(), b"f");
        assert!(read_record(&mut r, 16).is_err());
        let mut r = &input[..];
        assert!(read_record(&mut r, 4).is_err());
    }
}
