//! A minimal NBD client for scenarios: the fixed newstyle handshake with `NBD_OPT_EXPORT_NAME`,
//! then READ, WRITE and FLUSH one at a time with simple replies — the wire exchange a kernel
//! `nbd-client` makes, so a test drives a node's NBD server as a host would.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const FLAG_NO_ZEROES: u16 = 1 << 1;
const OPT_EXPORT_NAME: u32 = 1;
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;

/// One NBD connection to an export.
pub struct NbdClient {
    conn: TcpStream,
    /// The export's size in bytes.
    pub size: u64,
    cookie: u64,
}

impl NbdClient {
    /// Connects to `addr` and opens export `name`.
    pub async fn open(addr: SocketAddr, name: &str) -> std::io::Result<NbdClient> {
        let mut conn = TcpStream::connect(addr).await?;
        conn.set_nodelay(true)?;
        let magic = conn.read_u64().await?;
        let opt = conn.read_u64().await?;
        if (magic, opt) != (NBD_MAGIC, IHAVEOPT) {
            return Err(std::io::Error::other("not an NBD newstyle server"));
        }
        let server_flags = conn.read_u16().await?;
        let no_zeroes = server_flags & FLAG_NO_ZEROES != 0;
        // Fixed newstyle, and no zeroes when the server offers it.
        conn.write_u32(1 | if no_zeroes { 2 } else { 0 }).await?;
        conn.write_u64(IHAVEOPT).await?;
        conn.write_u32(OPT_EXPORT_NAME).await?;
        conn.write_u32(name.len() as u32).await?;
        conn.write_all(name.as_bytes()).await?;
        let size = conn.read_u64().await?;
        let _transmission_flags = conn.read_u16().await?;
        if !no_zeroes {
            let mut zeroes = [0u8; 124];
            conn.read_exact(&mut zeroes).await?;
        }
        Ok(NbdClient {
            conn,
            size,
            cookie: 0,
        })
    }

    async fn request(
        &mut self,
        kind: u16,
        offset: u64,
        len: u32,
        data: &[u8],
    ) -> std::io::Result<()> {
        self.cookie += 1;
        let mut head = Vec::with_capacity(28 + data.len());
        head.extend(REQUEST_MAGIC.to_be_bytes());
        head.extend(0u16.to_be_bytes());
        head.extend(kind.to_be_bytes());
        head.extend(self.cookie.to_be_bytes());
        head.extend(offset.to_be_bytes());
        head.extend(len.to_be_bytes());
        head.extend(data);
        self.conn.write_all(&head).await?;
        let magic = self.conn.read_u32().await?;
        let error = self.conn.read_u32().await?;
        let cookie = self.conn.read_u64().await?;
        if magic != SIMPLE_REPLY_MAGIC || cookie != self.cookie {
            return Err(std::io::Error::other("unexpected NBD reply"));
        }
        if error != 0 {
            return Err(std::io::Error::other(format!("NBD error {error}")));
        }
        Ok(())
    }

    /// Writes `data` at `offset` (acknowledged once the server buffered it).
    pub async fn write(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.request(CMD_WRITE, offset, data.len() as u32, data)
            .await
    }

    /// Makes every acknowledged write durable.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.request(CMD_FLUSH, 0, 0, &[]).await
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(&mut self, offset: u64, len: u32) -> std::io::Result<Vec<u8>> {
        self.request(CMD_READ, offset, len, &[]).await?;
        let mut out = vec![0u8; len as usize];
        self.conn.read_exact(&mut out).await?;
        Ok(out)
    }

    /// Ends the connection as a client does (`NBD_CMD_DISC`: the server flushes).
    pub async fn disconnect(mut self) -> std::io::Result<()> {
        self.cookie += 1;
        let mut head = Vec::with_capacity(28);
        head.extend(REQUEST_MAGIC.to_be_bytes());
        head.extend(0u16.to_be_bytes());
        head.extend(CMD_DISC.to_be_bytes());
        head.extend(self.cookie.to_be_bytes());
        head.extend(0u64.to_be_bytes());
        head.extend(0u32.to_be_bytes());
        self.conn.write_all(&head).await?;
        let mut rest = Vec::new();
        self.conn.read_to_end(&mut rest).await?;
        Ok(())
    }
}
