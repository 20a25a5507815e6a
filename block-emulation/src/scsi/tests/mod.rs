//! Tests of the logical unit over an in-memory device: one file per command family, a
//! persistent reservation scenario and a bounded fuzz run over random and mutated CDBs.

mod basic;
mod fuzz;
mod media;
mod mode;
mod pr;
mod provisioning;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::{LogicalUnit, LunIdentity, Nexus, Response};
use crate::device::{Allocation, BlockDevice, BlockError};

/// Logical block size of the test device.
pub(super) const BS: u32 = 512;
/// Blocks of the test device.
pub(super) const BLOCKS: u64 = 2048;

/// An in-memory device: bytes and one hole bit per block, resizable, optionally read-only.
pub(super) struct MemDevice {
    state: Mutex<(Vec<u8>, Vec<bool>)>,
    read_only: bool,
    /// Flushes served (FUA writes count as one each).
    pub(super) flushes: AtomicU64,
}

impl MemDevice {
    pub(super) fn new(blocks: u64, read_only: bool) -> MemDevice {
        let size = (blocks * u64::from(BS)) as usize;
        MemDevice {
            state: Mutex::new((vec![0; size], vec![true; blocks as usize])),
            read_only,
            flushes: AtomicU64::new(0),
        }
    }

    /// The content of `[offset, offset + len)`.
    pub(super) fn bytes(&self, offset: usize, len: usize) -> Vec<u8> {
        self.state.lock().unwrap().0[offset..offset + len].to_vec()
    }

    /// Whether block `b` is a hole.
    pub(super) fn hole(&self, b: usize) -> bool {
        self.state.lock().unwrap().1[b]
    }

    /// Grows or shrinks the device to `blocks`.
    pub(super) fn resize(&self, blocks: u64) {
        let mut st = self.state.lock().unwrap();
        st.0.resize((blocks * u64::from(BS)) as usize, 0);
        st.1.resize(blocks as usize, true);
    }

    fn check(&self, offset: u64, len: u64) -> Result<(usize, usize), BlockError> {
        let size = self.size();
        match offset.checked_add(len) {
            Some(end) if end <= size => {
                let bs = u64::from(BS);
                if !offset.is_multiple_of(bs) || !end.is_multiple_of(bs) {
                    return Err(BlockError::Invalid("misaligned".into()));
                }
                Ok((offset as usize, end as usize))
            }
            _ => Err(BlockError::OutOfRange { offset, len, size }),
        }
    }

    fn set(&self, offset: u64, len: u64, data: Option<&[u8]>) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        let (start, end) = self.check(offset, len)?;
        let mut st = self.state.lock().unwrap();
        match data {
            Some(d) => st.0[start..end].copy_from_slice(d),
            None => st.0[start..end].fill(0),
        }
        let bs = BS as usize;
        for b in start / bs..end / bs {
            st.1[b] = data.is_none();
        }
        Ok(())
    }
}

#[async_trait]
impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.state.lock().unwrap().0.len() as u64
    }
    fn block_size(&self) -> u32 {
        BS
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, BlockError> {
        let (start, end) = self.check(offset, u64::from(len))?;
        Ok(Bytes::copy_from_slice(
            &self.state.lock().unwrap().0[start..end],
        ))
    }
    async fn read_pieces(&self, offset: u64, len: u32) -> Result<Vec<Bytes>, BlockError> {
        // In 1 KiB pieces, so that tests see pieces passed through unjoined.
        let whole = self.read(offset, len).await?;
        Ok((0..whole.len())
            .step_by(1024)
            .map(|at| whole.slice(at..(at + 1024).min(whole.len())))
            .collect())
    }
    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), BlockError> {
        self.set(offset, data.len() as u64, Some(&data))?;
        if fua {
            self.flush().await?;
        }
        Ok(())
    }
    async fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> Result<(), BlockError> {
        // Zeroes are stored as data, unlike trim, so tests can tell the two apart.
        let zeros = vec![0u8; len as usize];
        self.write(offset, Bytes::from(zeros), fua).await
    }
    async fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), BlockError> {
        self.set(offset, len, None)?;
        if fua {
            self.flush().await?;
        }
        Ok(())
    }
    async fn flush(&self) -> Result<(), BlockError> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Allocation>, BlockError> {
        let (start, end) = self.check(offset, len)?;
        let bs = BS as usize;
        let st = self.state.lock().unwrap();
        let mut runs: Vec<Allocation> = Vec::new();
        for b in start / bs..end / bs {
            let hole = st.1[b];
            match runs.last_mut() {
                Some(r) if r.hole == hole => r.len += u64::from(BS),
                _ => runs.push(Allocation {
                    len: u64::from(BS),
                    hole,
                }),
            }
        }
        Ok(runs)
    }
}

/// The identity every test unit has.
pub(super) fn identity() -> LunIdentity {
    LunIdentity {
        volume: "vol1".into(),
        target_name: "iqn.2024-01.org.cairn:vol1".into(),
        serial: "cairn-0001".into(),
        naa: 0x6001_4050_0000_0001,
    }
}

/// A logical unit over a fresh device of [`BLOCKS`] blocks.
pub(super) fn unit(read_only: bool) -> (Arc<MemDevice>, LogicalUnit) {
    let dev = Arc::new(MemDevice::new(BLOCKS, read_only));
    let lu = LogicalUnit::new(dev.clone(), identity());
    (dev, lu)
}

/// Initiator `n`'s nexus.
pub(super) fn nexus(n: u8) -> Nexus {
    Nexus {
        initiator_name: format!("iqn.2024-01.org.test:init{n}"),
        isid: [0x40, 0, 0, 0, 0, n],
        target_port: 1,
    }
}

/// Runs `cdb` with `data`.
pub(super) async fn exec(lu: &LogicalUnit, n: &Nexus, cdb: &[u8], data: &[u8]) -> Response {
    lu.execute(n, cdb, Bytes::copy_from_slice(data)).await
}

/// Sends TEST UNIT READY until it is GOOD (clears the power-on and other unit attentions).
pub(super) async fn clear_ua(lu: &LogicalUnit, n: &Nexus) {
    for _ in 0..=super::limits::MAX_PENDING_UA {
        if exec(lu, n, &[0; 6], &[]).await.status == 0 {
            return;
        }
    }
    panic!("unit attentions never cleared");
}

/// A unit whose nexus 1 has seen its power-on unit attention already.
pub(super) async fn ready(read_only: bool) -> (Arc<MemDevice>, LogicalUnit, Nexus) {
    let (dev, lu) = unit(read_only);
    let n = nexus(1);
    clear_ua(&lu, &n).await;
    (dev, lu, n)
}

/// The Data-In joined.
pub(super) fn data(r: &Response) -> Vec<u8> {
    r.data.iter().flat_map(|b| b.iter().copied()).collect()
}

/// Key, ASC and ASCQ of a response's sense data, in either format.
pub(super) fn sense_of(r: &Response) -> (u8, u8, u8) {
    let s = r.sense.as_ref().expect("a CHECK CONDITION with sense data");
    decode(s)
}

/// Key, ASC and ASCQ of encoded sense data.
pub(super) fn decode(s: &[u8]) -> (u8, u8, u8) {
    match s[0] & 0x7F {
        0x70 => (s[2] & 0x0F, s[12], s[13]),
        0x72 => (s[1] & 0x0F, s[2], s[3]),
        f => panic!("unknown sense format {f:#x}"),
    }
}

/// Asserts CHECK CONDITION with key/ASC/ASCQ.
#[track_caller]
pub(super) fn assert_check(r: &Response, key: u8, asc: u8, ascq: u8) {
    assert_eq!(r.status, 0x02, "status of {r:?}");
    assert_eq!(sense_of(r), (key, asc, ascq), "sense of {r:?}");
    assert!(r.data.is_empty());
}

/// Asserts INVALID FIELD IN CDB pointing at `byte` (and `bit`), in fixed format.
#[track_caller]
pub(super) fn assert_invalid_cdb(r: &Response, byte: u16, bit: Option<u8>) {
    assert_check(r, 5, 0x24, 0);
    let s = r.sense.as_ref().unwrap();
    let mut b0 = 0xC0;
    if let Some(bit) = bit {
        b0 |= 0x08 | bit;
    }
    assert_eq!(
        &s[15..18],
        &[b0, (byte >> 8) as u8, byte as u8],
        "field pointer"
    );
}

/// Asserts GOOD.
#[track_caller]
pub(super) fn assert_good(r: &Response) {
    assert_eq!((r.status, &r.sense), (0, &None), "{r:?}");
}

/// A 10-byte CDB with `b1`, a 4-byte LBA and a 2-byte length.
pub(super) fn cdb10(op: u8, b1: u8, lba: u32, len: u16) -> Vec<u8> {
    let mut c = vec![op, b1, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&len.to_be_bytes());
    c
}

/// A 16-byte CDB with `b1`, an 8-byte LBA and a 4-byte length.
pub(super) fn cdb16(op: u8, b1: u8, lba: u64, len: u32) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = op;
    c[1] = b1;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}
