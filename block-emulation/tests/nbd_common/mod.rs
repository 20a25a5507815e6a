//! Shared by the NBD integration tests: an in-memory device, its exports, a server on a free
//! port, and a minimal raw NBD client for feeding the server bytes no real client sends.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_block::nbd::proto;
use cairn_block::{Allocation, BlockDevice, BlockError, Exports, NbdConfig, NbdHandle, NbdServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// Every test's overall bound.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An in-memory block device: bytes in a `Vec<u8>` behind a mutex and one hole bit per block.
/// It exists to test the NBD protocol layer with real clients and raw sockets; the real
/// volumes behind the server are tested with their own crate's tests.
pub struct MemDevice {
    state: Mutex<MemState>,
    block_size: u32,
    read_only: bool,
    /// Flushes served.
    pub flushes: AtomicU64,
    /// When set, every read waits here first (to prove reads run concurrently).
    pub read_barrier: Option<Arc<Barrier>>,
}

struct MemState {
    data: Vec<u8>,
    /// One bit per block: never written, or trimmed/zeroed.
    holes: Vec<bool>,
    /// The content as of the last flush: what would survive a crash.
    durable: Vec<u8>,
}

impl MemDevice {
    /// A device of `size` bytes (a multiple of `block_size`), all holes.
    pub fn new(size: usize, block_size: u32, read_only: bool) -> MemDevice {
        let blocks = size / block_size as usize;
        MemDevice {
            state: Mutex::new(MemState {
                data: vec![0; size],
                holes: vec![true; blocks],
                durable: vec![0; size],
            }),
            block_size,
            read_only,
            flushes: AtomicU64::new(0),
            read_barrier: None,
        }
    }

    /// The current content.
    pub fn data(&self) -> Vec<u8> {
        self.state.lock().unwrap().data.clone()
    }

    /// The content as of the last flush.
    pub fn durable(&self) -> Vec<u8> {
        self.state.lock().unwrap().durable.clone()
    }

    /// Overwrites the content directly (as data, not holes).
    pub fn fill(&self, offset: usize, bytes: &[u8]) {
        let mut st = self.state.lock().unwrap();
        st.data[offset..offset + bytes.len()].copy_from_slice(bytes);
        let bs = self.block_size as usize;
        for b in offset / bs..(offset + bytes.len()).div_ceil(bs) {
            st.holes[b] = false;
        }
    }

    fn check(&self, offset: u64, len: u64) -> Result<(usize, usize), BlockError> {
        let size = self.size();
        let end = offset.checked_add(len).filter(|e| *e <= size);
        let Some(end) = end else {
            return Err(BlockError::OutOfRange { offset, len, size });
        };
        let bs = u64::from(self.block_size);
        if !offset.is_multiple_of(bs) || !end.is_multiple_of(bs) {
            return Err(BlockError::Invalid("misaligned".into()));
        }
        Ok((offset as usize, end as usize))
    }

    fn set(&self, offset: u64, len: u64, data: Option<&[u8]>) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        let (start, end) = self.check(offset, len)?;
        let mut st = self.state.lock().unwrap();
        match data {
            Some(d) => st.data[start..end].copy_from_slice(d),
            None => st.data[start..end].fill(0),
        }
        let bs = self.block_size as usize;
        for b in start / bs..end / bs {
            st.holes[b] = data.is_none();
        }
        Ok(())
    }
}

#[async_trait]
impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.state.lock().unwrap().data.len() as u64
    }

    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, BlockError> {
        if let Some(barrier) = &self.read_barrier {
            barrier.wait().await;
        }
        let (start, end) = self.check(offset, u64::from(len))?;
        Ok(Bytes::copy_from_slice(
            &self.state.lock().unwrap().data[start..end],
        ))
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), BlockError> {
        self.set(offset, data.len() as u64, Some(&data))?;
        if fua {
            self.flush().await?;
        }
        Ok(())
    }

    async fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> Result<(), BlockError> {
        self.set(offset, len, None)?;
        if fua {
            self.flush().await?;
        }
        Ok(())
    }

    async fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), BlockError> {
        self.write_zeroes(offset, len, fua).await
    }

    async fn flush(&self) -> Result<(), BlockError> {
        let mut st = self.state.lock().unwrap();
        st.durable = st.data.clone();
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Allocation>, BlockError> {
        let (start, end) = self.check(offset, len)?;
        let bs = self.block_size as usize;
        let st = self.state.lock().unwrap();
        let mut runs: Vec<Allocation> = Vec::new();
        for b in start / bs..end / bs {
            let hole = st.holes[b];
            match runs.last_mut() {
                Some(last) if last.hole == hole => last.len += bs as u64,
                _ => runs.push(Allocation {
                    len: bs as u64,
                    hole,
                }),
            }
        }
        Ok(runs)
    }
}

/// Named in-memory devices with descriptions.
#[derive(Default)]
pub struct MemExports {
    devices: HashMap<String, (Arc<MemDevice>, String)>,
}

impl MemExports {
    /// Adds `device` as `name`.
    pub fn with(mut self, name: &str, description: &str, device: Arc<MemDevice>) -> MemExports {
        self.devices
            .insert(name.to_string(), (device, description.to_string()));
        self
    }
}

#[async_trait]
impl Exports for MemExports {
    async fn open(&self, name: &str) -> Result<Arc<dyn BlockDevice>, BlockError> {
        match self.devices.get(name) {
            Some((dev, _)) => Ok(dev.clone()),
            None => Err(BlockError::NotFound(name.to_string())),
        }
    }

    async fn list(&self) -> Result<Vec<(String, String)>, BlockError> {
        let mut list: Vec<_> = self
            .devices
            .iter()
            .map(|(n, (_, d))| (n.clone(), d.clone()))
            .collect();
        list.sort();
        Ok(list)
    }
}

/// Serves `exports` on a free port of 127.0.0.1.
pub async fn start(exports: MemExports, config: NbdConfig) -> NbdHandle {
    NbdServer::bind("127.0.0.1:0", Arc::new(exports), config)
        .await
        .expect("binding 127.0.0.1:0")
        .spawn()
        .expect("starting the server")
}

/// A raw NBD client: just enough protocol to send well- and ill-formed messages.
pub struct Raw {
    /// The connection.
    pub s: TcpStream,
}

/// One option reply.
#[derive(Debug)]
pub struct OptReply {
    /// `NBD_REP_*`.
    pub kind: u32,
    /// Its data.
    pub data: Vec<u8>,
}

/// One transmission reply, simple or structured (one chunk).
#[derive(Debug, PartialEq, Eq)]
pub enum TxReply {
    /// A simple reply: error and cookie (data for reads is read separately).
    Simple { error: u32, cookie: u64 },
    /// A structured chunk.
    Chunk {
        flags: u16,
        kind: u16,
        cookie: u64,
        payload: Vec<u8>,
    },
}

impl Raw {
    /// Connects and reads the greeting, checking it.
    pub async fn connect(addr: std::net::SocketAddr) -> Raw {
        let mut s = TcpStream::connect(addr).await.expect("connecting");
        let mut g = [0u8; 18];
        s.read_exact(&mut g).await.expect("reading the greeting");
        assert_eq!(g, proto::greeting());
        Raw { s }
    }

    /// Connects and sends fixed-newstyle, no-zeroes client flags.
    pub async fn handshake(addr: std::net::SocketAddr) -> Raw {
        let mut raw = Raw::connect(addr).await;
        let flags = proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES;
        raw.s.write_all(&flags.to_be_bytes()).await.unwrap();
        raw
    }

    /// Sends an option.
    pub async fn option(&mut self, option: u32, data: &[u8]) {
        let mut b = proto::IHAVEOPT.to_be_bytes().to_vec();
        b.extend_from_slice(&option.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.s.write_all(&b).await.unwrap();
    }

    /// Reads one option reply.
    pub async fn opt_reply(&mut self) -> std::io::Result<OptReply> {
        let mut h = [0u8; 20];
        self.s.read_exact(&mut h).await?;
        assert_eq!(
            u64::from_be_bytes(h[..8].try_into().unwrap()),
            proto::OPTION_REPLY_MAGIC
        );
        let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
        let mut data = vec![0u8; len as usize];
        self.s.read_exact(&mut data).await?;
        Ok(OptReply { kind, data })
    }

    /// Reads option replies up to and including the final one (an ACK or an error).
    pub async fn opt_replies(&mut self) -> Vec<OptReply> {
        let mut all = Vec::new();
        loop {
            let r = self.opt_reply().await.expect("reading an option reply");
            let last = r.kind == proto::REP_ACK || r.kind & (1 << 31) != 0;
            all.push(r);
            if last {
                return all;
            }
        }
    }

    /// `NBD_OPT_GO` data for `name` asking for the block size.
    pub fn go_data(name: &str) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&1u16.to_be_bytes());
        d.extend_from_slice(&proto::INFO_BLOCK_SIZE.to_be_bytes());
        d
    }

    /// `NBD_OPT_SET_META_CONTEXT` data for `name` and `base:allocation`.
    pub fn meta_data(name: &str) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&1u32.to_be_bytes());
        d.extend_from_slice(&(proto::BASE_ALLOCATION.len() as u32).to_be_bytes());
        d.extend_from_slice(proto::BASE_ALLOCATION.as_bytes());
        d
    }

    /// Handshakes into transmission on `name`, with structured replies and
    /// `base:allocation` if `structured`.
    pub async fn open(addr: std::net::SocketAddr, name: &str, structured: bool) -> Raw {
        let mut raw = Raw::handshake(addr).await;
        if structured {
            raw.option(proto::OPT_STRUCTURED_REPLY, &[]).await;
            assert_eq!(raw.opt_replies().await[0].kind, proto::REP_ACK);
            raw.option(proto::OPT_SET_META_CONTEXT, &Raw::meta_data(name))
                .await;
            let r = raw.opt_replies().await;
            assert_eq!(r[0].kind, proto::REP_META_CONTEXT);
        }
        raw.option(proto::OPT_GO, &Raw::go_data(name)).await;
        let r = raw.opt_replies().await;
        assert_eq!(
            r.last().unwrap().kind,
            proto::REP_ACK,
            "GO {name:?} refused: {r:?}"
        );
        raw
    }

    /// Sends a request (and `payload` after it).
    pub async fn request(
        &mut self,
        kind: u16,
        flags: u16,
        cookie: u64,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) {
        let req = proto::Request {
            flags,
            kind,
            cookie,
            offset,
            len,
        };
        let mut b = proto::encode_request(&req).to_vec();
        b.extend_from_slice(payload);
        self.s.write_all(&b).await.unwrap();
    }

    /// Reads one simple reply header.
    pub async fn simple(&mut self) -> std::io::Result<TxReply> {
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h).await?;
        assert_eq!(
            u32::from_be_bytes(h[..4].try_into().unwrap()),
            proto::SIMPLE_REPLY_MAGIC
        );
        Ok(TxReply::Simple {
            error: u32::from_be_bytes(h[4..8].try_into().unwrap()),
            cookie: u64::from_be_bytes(h[8..16].try_into().unwrap()),
        })
    }

    /// Reads one structured reply chunk.
    pub async fn chunk(&mut self) -> std::io::Result<TxReply> {
        let mut h = [0u8; 20];
        self.s.read_exact(&mut h).await?;
        assert_eq!(
            u32::from_be_bytes(h[..4].try_into().unwrap()),
            proto::STRUCTURED_REPLY_MAGIC
        );
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
        let mut payload = vec![0u8; len as usize];
        self.s.read_exact(&mut payload).await?;
        Ok(TxReply::Chunk {
            flags: u16::from_be_bytes(h[4..6].try_into().unwrap()),
            kind: u16::from_be_bytes(h[6..8].try_into().unwrap()),
            cookie: u64::from_be_bytes(h[8..16].try_into().unwrap()),
            payload,
        })
    }

    /// Reads `n` bytes (a simple read reply's data).
    pub async fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.s.read_exact(&mut b).await.unwrap();
        b
    }

    /// Waits for the server to close the connection: true if it did (EOF or reset) before
    /// sending anything more.
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b).await, Ok(0) | Err(_))
    }
}
