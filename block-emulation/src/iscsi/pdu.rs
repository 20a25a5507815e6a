//! iSCSI PDUs (RFC 7143 §11): the 48-byte basic header segment, additional header segments,
//! digests and the data segment, read with every length checked before anything is allocated.

use bytes::{Bytes, BytesMut};
use crc_fast::CrcAlgorithm;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Length of the basic header segment.
pub(crate) const BHS_LEN: usize = 48;
/// Length of a header or data digest (CRC32C).
pub(crate) const DIGEST_LEN: usize = 4;
/// The "no tag" value of task tags and target transfer tags.
pub(crate) const NO_TAG: u32 = 0xffff_ffff;

/// Opcodes (the low six bits of byte 0).
pub(crate) mod op {
    pub(crate) const NOP_OUT: u8 = 0x00;
    pub(crate) const SCSI_CMD: u8 = 0x01;
    pub(crate) const TMF_REQ: u8 = 0x02;
    pub(crate) const LOGIN_REQ: u8 = 0x03;
    pub(crate) const TEXT_REQ: u8 = 0x04;
    pub(crate) const DATA_OUT: u8 = 0x05;
    pub(crate) const LOGOUT_REQ: u8 = 0x06;
    pub(crate) const SNACK: u8 = 0x10;
    pub(crate) const NOP_IN: u8 = 0x20;
    pub(crate) const SCSI_RESP: u8 = 0x21;
    pub(crate) const TMF_RESP: u8 = 0x22;
    pub(crate) const LOGIN_RESP: u8 = 0x23;
    pub(crate) const TEXT_RESP: u8 = 0x24;
    pub(crate) const DATA_IN: u8 = 0x25;
    pub(crate) const LOGOUT_RESP: u8 = 0x26;
    pub(crate) const R2T: u8 = 0x31;
    pub(crate) const REJECT: u8 = 0x3f;
}

/// Reject reasons (RFC 7143 §11.17.1).
pub(crate) mod reject {
    pub(crate) const DATA_DIGEST: u8 = 0x02;
    pub(crate) const SNACK: u8 = 0x03;
    pub(crate) const PROTOCOL_ERROR: u8 = 0x04;
    pub(crate) const NOT_SUPPORTED: u8 = 0x05;
    pub(crate) const INVALID_FIELD: u8 = 0x09;
}

/// Final bit of byte 1.
pub(crate) const F_BIT: u8 = 0x80;

/// A basic header segment.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Bhs(pub(crate) [u8; BHS_LEN]);

impl std::fmt::Debug for Bhs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Bhs(op {:#04x}, flags {:#04x}, itt {:#x}, data {})",
            self.opcode(),
            self.flags(),
            self.itt(),
            self.data_len()
        )
    }
}

impl Bhs {
    /// A header of `opcode` with the final bit set, everything else zero.
    pub(crate) fn new(opcode: u8) -> Bhs {
        let mut b = [0u8; BHS_LEN];
        b[0] = opcode;
        b[1] = F_BIT;
        Bhs(b)
    }

    pub(crate) fn opcode(&self) -> u8 {
        self.0[0] & 0x3f
    }

    /// The I bit: an immediate command, outside the CmdSN order.
    pub(crate) fn immediate(&self) -> bool {
        self.0[0] & 0x40 != 0
    }

    pub(crate) fn flags(&self) -> u8 {
        self.0[1]
    }

    pub(crate) fn final_bit(&self) -> bool {
        self.0[1] & F_BIT != 0
    }

    /// Bytes of additional header segments.
    pub(crate) fn ahs_len(&self) -> usize {
        usize::from(self.0[4]) * 4
    }

    /// Bytes of the data segment, without padding.
    pub(crate) fn data_len(&self) -> usize {
        (usize::from(self.0[5]) << 16) | (usize::from(self.0[6]) << 8) | usize::from(self.0[7])
    }

    pub(crate) fn set_data_len(&mut self, len: usize) {
        debug_assert!(len < 1 << 24);
        self.0[5] = (len >> 16) as u8;
        self.0[6] = (len >> 8) as u8;
        self.0[7] = len as u8;
    }

    pub(crate) fn lun(&self) -> u64 {
        self.u64_at(8)
    }

    pub(crate) fn set_lun(&mut self, lun: u64) {
        self.0[8..16].copy_from_slice(&lun.to_be_bytes());
    }

    /// The initiator task tag.
    pub(crate) fn itt(&self) -> u32 {
        self.u32_at(16)
    }

    pub(crate) fn set_itt(&mut self, itt: u32) {
        self.set_u32(16, itt);
    }

    pub(crate) fn u32_at(&self, off: usize) -> u32 {
        u32::from_be_bytes([
            self.0[off],
            self.0[off + 1],
            self.0[off + 2],
            self.0[off + 3],
        ])
    }

    pub(crate) fn u16_at(&self, off: usize) -> u16 {
        u16::from_be_bytes([self.0[off], self.0[off + 1]])
    }

    pub(crate) fn u64_at(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[off..off + 8]);
        u64::from_be_bytes(b)
    }

    pub(crate) fn set_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn set_u16(&mut self, off: usize, v: u16) {
        self.0[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }
}

/// One PDU as received.
#[derive(Debug, Clone)]
pub(crate) struct Pdu {
    pub(crate) bhs: Bhs,
    /// Additional header segments (an extended CDB, say), as received.
    pub(crate) ahs: Vec<u8>,
    /// The data segment, without padding.
    pub(crate) data: Bytes,
}

/// Which digests a connection negotiated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Digests {
    pub(crate) header: bool,
    pub(crate) data: bool,
}

/// Why a PDU could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The data segment is longer than this side declared it can receive.
    #[error("data segment of {len} bytes is over the {max} bytes negotiated")]
    TooLong { len: usize, max: usize },
    /// The header digest does not match: nothing in the header can be trusted, not even its
    /// lengths, so the connection ends.
    #[error("header digest mismatch")]
    HeaderDigest,
    /// The data digest does not match: the PDU is rejected and dropped (its header is here).
    #[error("data digest mismatch")]
    DataDigest(Box<Bhs>),
}

/// CRC32C as iSCSI uses it, to be sent little-endian.
pub(crate) fn crc32c(parts: &[&[u8]]) -> u32 {
    let mut d = crc_fast::Digest::new(CrcAlgorithm::Crc32Iscsi);
    for p in parts {
        d.update(p);
    }
    d.finalize() as u32
}

/// Padding after a data segment of `len` bytes.
pub(crate) fn pad_len(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Reads one PDU. The data segment may be at most `max_data` bytes: longer ones are refused
/// before anything is allocated for them.
pub(crate) async fn read_pdu<R: AsyncRead + Unpin>(
    r: &mut R,
    digests: Digests,
    max_data: usize,
) -> Result<Pdu, ReadError> {
    let mut head = [0u8; BHS_LEN];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ReadError::Closed),
        Err(e) => return Err(e.into()),
    }
    let bhs = Bhs(head);
    // At most 255 words: bounded by the field's width.
    let mut ahs = vec![0u8; bhs.ahs_len()];
    r.read_exact(&mut ahs).await?;
    if digests.header {
        let mut d = [0u8; DIGEST_LEN];
        r.read_exact(&mut d).await?;
        if u32::from_le_bytes(d) != crc32c(&[&bhs.0, &ahs]) {
            return Err(ReadError::HeaderDigest);
        }
    }
    let len = bhs.data_len();
    if len > max_data {
        return Err(ReadError::TooLong { len, max: max_data });
    }
    let padded = len + pad_len(len);
    let mut data = BytesMut::zeroed(padded);
    r.read_exact(&mut data).await?;
    if digests.data && len > 0 {
        let mut d = [0u8; DIGEST_LEN];
        r.read_exact(&mut d).await?;
        if u32::from_le_bytes(d) != crc32c(&[&data]) {
            return Err(ReadError::DataDigest(Box::new(bhs)));
        }
    }
    data.truncate(len);
    Ok(Pdu {
        bhs,
        ahs,
        data: data.freeze(),
    })
}

/// A PDU to send: its header and its data segment as pieces (a read's pieces, unjoined). The
/// sender fills the length, padding and digests.
#[derive(Debug)]
pub(crate) struct OutPdu {
    pub(crate) bhs: Bhs,
    pub(crate) data: Vec<Bytes>,
}

impl OutPdu {
    pub(crate) fn new(bhs: Bhs) -> OutPdu {
        OutPdu {
            bhs,
            data: Vec::new(),
        }
    }

    pub(crate) fn with_data(bhs: Bhs, data: Vec<Bytes>) -> OutPdu {
        OutPdu { bhs, data }
    }

    pub(crate) fn data_len(&self) -> usize {
        self.data.iter().map(Bytes::len).sum()
    }

    /// Sets the data segment length and encodes the PDU as the buffers to write: the header
    /// (with its digest), the data pieces, and the padding with the data digest.
    pub(crate) fn finish(
        &mut self,
        digests: Digests,
    ) -> ([u8; BHS_LEN + DIGEST_LEN], usize, [u8; 8], usize) {
        let len = self.data_len();
        self.bhs.set_data_len(len);
        let mut head = [0u8; BHS_LEN + DIGEST_LEN];
        head[..BHS_LEN].copy_from_slice(&self.bhs.0);
        let mut head_len = BHS_LEN;
        if digests.header {
            head[BHS_LEN..].copy_from_slice(&crc32c(&[&self.bhs.0]).to_le_bytes());
            head_len += DIGEST_LEN;
        }
        let mut tail = [0u8; 8];
        let pad = pad_len(len);
        let mut tail_len = pad;
        if digests.data && len > 0 {
            let mut d = crc_fast::Digest::new(CrcAlgorithm::Crc32Iscsi);
            for p in &self.data {
                d.update(p);
            }
            d.update(&[0u8; 3][..pad]);
            tail[pad..pad + DIGEST_LEN].copy_from_slice(&(d.finalize() as u32).to_le_bytes());
            tail_len += DIGEST_LEN;
        }
        (head, head_len, tail, tail_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(&[b"123456789"]), 0xe306_9283);
        assert_eq!(crc32c(&[b"1234", b"56789"]), 0xe306_9283);
    }

    #[tokio::test]
    async fn pdus_round_trip_with_digests_and_padding() {
        for digests in [
            Digests::default(),
            Digests {
                header: true,
                data: true,
            },
        ] {
            let mut bhs = Bhs::new(op::NOP_IN);
            bhs.set_itt(7);
            let mut out = OutPdu::with_data(
                bhs,
                vec![Bytes::from_static(b"ping"), Bytes::from_static(b"!")],
            );
            let (head, hl, tail, tl) = out.finish(digests);
            let mut wire = head[..hl].to_vec();
            wire.extend_from_slice(b"ping!");
            wire.extend_from_slice(&tail[..tl]);
            assert_eq!(wire.len() % 4, 0);
            let pdu = read_pdu(&mut &wire[..], digests, 1024).await.unwrap();
            assert_eq!(pdu.bhs.itt(), 7);
            assert_eq!(&pdu.data[..], b"ping!");
            // A flipped data byte is caught by the data digest only.
            let mut bad = wire.clone();
            bad[hl] ^= 1;
            let r = read_pdu(&mut &bad[..], digests, 1024).await;
            if digests.data {
                assert!(matches!(r, Err(ReadError::DataDigest(_))));
            } else {
                assert_eq!(&r.unwrap().data[..], b"qing!");
            }
            let mut bad = wire.clone();
            bad[16] ^= 1;
            let r = read_pdu(&mut &bad[..], digests, 1024).await;
            assert_eq!(matches!(r, Err(ReadError::HeaderDigest)), digests.header);
        }
    }

    #[tokio::test]
    async fn oversized_data_segments_are_refused_before_reading_them() {
        let mut bhs = Bhs::new(op::SCSI_CMD);
        bhs.set_data_len((1 << 24) - 1);
        let r = read_pdu(&mut &bhs.0[..], Digests::default(), 8192).await;
        assert!(matches!(
            r,
            Err(ReadError::TooLong {
                len: 16_777_215,
                max: 8192
            })
        ));
        let r = read_pdu(&mut &bhs.0[..20], Digests::default(), 8192).await;
        assert!(matches!(r, Err(ReadError::Closed)));
    }

    /// Bounded fuzz: random byte streams never panic the reader and never make it allocate
    /// more than the limit.
    #[tokio::test]
    async fn random_streams_never_panic_the_reader() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..5_000 {
            let n = rng.gen_range(0..200);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            let digests = Digests {
                header: rng.gen(),
                data: rng.gen(),
            };
            let mut r = &bytes[..];
            while let Ok(p) = read_pdu(&mut r, digests, 64).await {
                assert!(p.data.len() <= 64);
            }
        }
    }
}
