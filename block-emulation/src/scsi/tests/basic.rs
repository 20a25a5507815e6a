//! TEST UNIT READY, REQUEST SENSE, INQUIRY and its VPD pages, READ CAPACITY, REPORT LUNS,
//! answers for missing LUNs, unit attentions and CDB-level errors.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::*;
use crate::scsi::{no_such_lun, report_luns, ResetKind};

#[tokio::test]
async fn new_nexus_gets_power_on_unit_attention_once() {
    let (_dev, lu) = unit(false);
    let n = nexus(1);
    // INQUIRY neither reports nor clears it.
    assert_good(&exec(&lu, &n, &[0x12, 0, 0, 0, 36, 0], &[]).await);
    assert_check(&exec(&lu, &n, &[0; 6], &[]).await, 6, 0x29, 0);
    assert_good(&exec(&lu, &n, &[0; 6], &[]).await);
    // REQUEST SENSE reports a pending one as data, and clears it.
    let m = nexus(2);
    let r = exec(&lu, &m, &[0x03, 0, 0, 0, 252, 0], &[]).await;
    assert_good(&r);
    assert_eq!(decode(&data(&r)), (6, 0x29, 0));
    assert_good(&exec(&lu, &m, &[0; 6], &[]).await);
    // A lost nexus that comes back starts over.
    lu.nexus_lost(&m);
    assert_check(&exec(&lu, &m, &[0; 6], &[]).await, 6, 0x29, 0);
}

#[tokio::test]
async fn request_sense_formats_and_allocation_length() {
    let (_dev, lu, n) = ready(false).await;
    let r = exec(&lu, &n, &[0x03, 0, 0, 0, 252, 0], &[]).await;
    assert_eq!(
        data(&r),
        [0x70, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    let r = exec(&lu, &n, &[0x03, 1, 0, 0, 252, 0], &[]).await;
    assert_eq!(data(&r), [0x72, 0, 0, 0, 0, 0, 0, 0]);
    let r = exec(&lu, &n, &[0x03, 0, 0, 0, 4, 0], &[]).await;
    assert_eq!(data(&r).len(), 4);
}

#[tokio::test]
async fn inquiry_standard_data() {
    let (_dev, lu, n) = ready(false).await;
    let r = exec(&lu, &n, &[0x12, 0, 0, 1, 0, 0], &[]).await;
    assert_good(&r);
    let d = data(&r);
    assert_eq!(d.len(), 66);
    assert_eq!(&d[..8], &[0, 0, 6, 0x12, 61, 0, 0, 2]);
    assert_eq!(&d[8..32], b"CAIRN   Volume          ");
    assert!(d[32..36].iter().all(|c| (0x20..0x7F).contains(c)));
    assert_eq!(
        &d[58..66],
        &[0x00, 0xA0, 0x04, 0x60, 0x04, 0xC0, 0x09, 0x60]
    );
    // Truncated to the allocation length.
    assert_eq!(
        data(&exec(&lu, &n, &[0x12, 0, 0, 0, 5, 0], &[]).await),
        &d[..5]
    );
    assert!(exec(&lu, &n, &[0x12, 0, 0, 0, 0, 0], &[])
        .await
        .data
        .is_empty());
    // CmdDt, and a page code without EVPD.
    assert_invalid_cdb(
        &exec(&lu, &n, &[0x12, 2, 0, 0, 36, 0], &[]).await,
        1,
        Some(1),
    );
    assert_invalid_cdb(
        &exec(&lu, &n, &[0x12, 0, 0x80, 0, 36, 0], &[]).await,
        2,
        None,
    );
    assert_invalid_cdb(
        &exec(&lu, &n, &[0x12, 1, 0x99, 0, 36, 0], &[]).await,
        2,
        None,
    );
}

#[tokio::test]
async fn inquiry_vpd_pages() {
    let (_dev, lu, n) = ready(false).await;
    let page = |p: u8| {
        let lu = &lu;
        let n = n.clone();
        async move { data(&exec(lu, &n, &[0x12, 1, p, 1, 0, 0], &[]).await) }
    };
    assert_eq!(
        page(0x00).await,
        [0, 0, 0, 6, 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2]
    );
    assert_eq!(page(0x80).await, b"\x00\x80\x00\x0acairn-0001");

    let d = page(0x83).await;
    assert_eq!(&d[..2], &[0, 0x83]);
    assert_eq!(usize::from(u16::from_be_bytes([d[2], d[3]])), d.len() - 4);
    // NAA first, for the logical unit.
    assert_eq!(&d[4..16], &[1, 3, 0, 8, 0x60, 0x01, 0x40, 0x50, 0, 0, 0, 1]);
    // T10 vendor id: vendor then serial.
    assert_eq!(&d[16..20], &[2, 1, 0, 18]);
    assert_eq!(&d[20..38], b"CAIRN   cairn-0001");
    // Relative target port 1, target port group 1.
    assert_eq!(&d[38..46], &[0x51, 0x94, 0, 4, 0, 0, 0, 1]);
    assert_eq!(&d[46..54], &[0x51, 0x95, 0, 4, 0, 0, 0, 1]);
    // The target port's SCSI name string, NUL-terminated and padded.
    assert_eq!(&d[54..56], &[0x53, 0x98]);
    let len = usize::from(d[57]);
    assert_eq!(len % 4, 0);
    let name = &d[58..58 + len];
    assert!(name.starts_with(b"iqn.2024-01.org.cairn:vol1,t,0x0001\0"));

    let d = page(0xB0).await;
    assert_eq!(&d[..4], &[0, 0xB0, 0, 0x3C]);
    assert_eq!(d[5], 128, "maximum compare and write length");
    assert_eq!(
        &d[8..12],
        &(32u32 << 20 >> 9).to_be_bytes(),
        "maximum transfer"
    );
    assert_eq!(&d[12..16], &2048u32.to_be_bytes(), "optimal transfer");
    assert_eq!(
        &d[20..24],
        &(1u32 << 20).to_be_bytes(),
        "max unmap lba count"
    );
    assert_eq!(&d[24..28], &256u32.to_be_bytes(), "max unmap descriptors");
    assert_eq!(&d[36..44], &(1u64 << 20).to_be_bytes(), "max write same");

    let d = page(0xB1).await;
    assert_eq!((&d[..4], d[4], d[5]), (&[0, 0xB1, 0, 0x3C][..], 0, 1));
    assert_eq!(page(0xB2).await, [0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0]);
}

#[tokio::test]
async fn read_capacity() {
    let (_dev, lu, n) = ready(false).await;
    let r = exec(&lu, &n, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await;
    assert_eq!(data(&r), [0, 0, 0x07, 0xFF, 0, 0, 2, 0]);
    // An LBA without PMI is an error.
    let r = exec(&lu, &n, &[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], &[]).await;
    assert_invalid_cdb(&r, 2, None);
    let mut rc16 = cdb16(0x9E, 0x10, 0, 32);
    let d = data(&exec(&lu, &n, &rc16, &[]).await);
    assert_eq!(d.len(), 32);
    assert_eq!(
        &d[..16],
        &[0, 0, 0, 0, 0, 0, 0x07, 0xFF, 0, 0, 2, 0, 0, 0, 0xC0, 0]
    );
    assert!(d[16..].iter().all(|b| *b == 0));
    rc16[10..14].copy_from_slice(&10u32.to_be_bytes());
    assert_eq!(data(&exec(&lu, &n, &rc16, &[]).await), &d[..10]);
    // Unknown service action.
    assert_invalid_cdb(
        &exec(&lu, &n, &cdb16(0x9E, 0x11, 0, 32), &[]).await,
        1,
        Some(4),
    );
}

/// A device too large for READ CAPACITY (10), that stores nothing.
struct Huge;

#[async_trait]
impl BlockDevice for Huge {
    fn size(&self) -> u64 {
        (1u64 << 33) * 512
    }
    fn block_size(&self) -> u32 {
        512
    }
    fn read_only(&self) -> bool {
        true
    }
    async fn read(&self, _: u64, len: u32) -> Result<Bytes, BlockError> {
        Ok(Bytes::from(vec![0; len as usize]))
    }
    async fn write(&self, _: u64, _: Bytes, _: bool) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }
    async fn write_zeroes(&self, _: u64, _: u64, _: bool) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }
    async fn trim(&self, _: u64, _: u64, _: bool) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }
    async fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }
    async fn allocation(&self, _: u64, len: u64) -> Result<Vec<Allocation>, BlockError> {
        Ok(vec![Allocation { len, hole: true }])
    }
}

#[tokio::test]
async fn read_capacity_of_a_huge_device() {
    let lu = LogicalUnit::new(Arc::new(Huge), identity());
    let n = nexus(1);
    clear_ua(&lu, &n).await;
    let r = exec(&lu, &n, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await;
    assert_eq!(data(&r), [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 2, 0]);
    let d = data(&exec(&lu, &n, &cdb16(0x9E, 0x10, 0, 32), &[]).await);
    assert_eq!(&d[..8], &((1u64 << 33) - 1).to_be_bytes());
    // Far past 2^32 blocks, reads still work and GET LBA STATUS reports holes.
    assert_good(&exec(&lu, &n, &cdb16(0x88, 0, (1 << 33) - 1, 1), &[]).await);
    let d = data(&exec(&lu, &n, &cdb16(0x9E, 0x12, 1 << 32, 24), &[]).await);
    assert_eq!(&d[8..16], &(1u64 << 32).to_be_bytes());
    assert_eq!(d[20], 1);
}

#[tokio::test]
async fn cdb_level_errors() {
    let (_dev, lu, n) = ready(false).await;
    assert_check(&exec(&lu, &n, &[0xC0; 16], &[]).await, 5, 0x20, 0);
    assert_check(&exec(&lu, &n, &[0x7F; 16], &[]).await, 5, 0x20, 0);
    assert_check(&exec(&lu, &n, &[], &[]).await, 5, 0x20, 0);
    // NACA in READ (10)'s CONTROL byte.
    let mut c = cdb10(0x28, 0, 0, 1);
    c[9] = 0x04;
    assert_invalid_cdb(&exec(&lu, &n, &c, &[]).await, 9, Some(2));
    // Shorter than the operation code's length.
    assert_invalid_cdb(&exec(&lu, &n, &[0x28, 0, 0], &[]).await, 0, None);
    // data_out_len refuses the same CDBs before any data.
    assert!(lu.data_out_len(&[0xC0; 16]).is_err());
    assert_eq!(lu.data_out_len(&cdb10(0x2A, 0, 0, 8)), Ok(4096));
    assert_eq!(lu.data_out_len(&cdb10(0x28, 0, 0, 8)), Ok(0));
    let mut caw = cdb16(0x89, 0, 0, 0);
    caw[13] = 2;
    assert_eq!(lu.data_out_len(&caw), Ok(2048));
    let mut prout = vec![0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0];
    assert_eq!(lu.data_out_len(&prout), Ok(24));
    prout[8] = 23;
    let r = lu.data_out_len(&prout).unwrap_err();
    assert_eq!(sense_of(&r), (5, 0x1A, 0));
    // Over the maximum transfer length: refused before the data.
    let r = lu.data_out_len(&cdb16(0x8A, 0, 0, 65537)).unwrap_err();
    assert_eq!(&r.sense.unwrap()[15..18], &[0xC0, 0, 10]);
}

#[tokio::test]
async fn report_luns_and_missing_luns() {
    let mut c = [0u8; 12];
    c[0] = 0xA0;
    c[6..10].copy_from_slice(&64u32.to_be_bytes());
    let r = report_luns(&c, &[0, 1, 300]);
    assert_eq!(
        data(&r),
        [
            0, 0, 0, 24, 0, 0, 0, 0, //
            0, 0, 0, 0, 0, 0, 0, 0, //
            0, 1, 0, 0, 0, 0, 0, 0, //
            0x41, 0x2C, 0, 0, 0, 0, 0, 0
        ]
    );
    c[9] = 16;
    assert_eq!(data(&report_luns(&c, &[0, 1, 300])).len(), 16);
    c[2] = 1;
    assert_eq!(data(&report_luns(&c, &[0, 1])), [0, 0, 0, 0, 0, 0, 0, 0]);
    c[2] = 7;
    assert_invalid_cdb(&report_luns(&c, &[0]), 2, None);
    c[2] = 0;
    c[9] = 15;
    assert_invalid_cdb(&report_luns(&c, &[0]), 6, None);

    let r = no_such_lun(&[0x12, 0, 0, 0, 36, 0]);
    let d = data(&r);
    assert_eq!((d[0], d.len()), (0x7F, 36));
    let r = no_such_lun(&[0x03, 0, 0, 0, 18, 0]);
    assert_good(&r);
    assert_eq!(decode(&data(&r)), (5, 0x25, 0));
    assert_check(&no_such_lun(&[0; 6]), 5, 0x25, 0);
    assert_check(&no_such_lun(&cdb10(0x28, 0, 0, 1)), 5, 0x25, 0);
    assert_check(&no_such_lun(&[]), 5, 0x25, 0);
}

#[tokio::test]
async fn capacity_change_reaches_every_nexus() {
    let (dev, lu, a) = ready(false).await;
    let b = nexus(2);
    clear_ua(&lu, &b).await;
    dev.resize(BLOCKS * 2);
    assert_check(&exec(&lu, &a, &[0; 6], &[]).await, 6, 0x2A, 0x09);
    assert_good(&exec(&lu, &a, &[0; 6], &[]).await);
    let r = exec(&lu, &b, &cdb10(0x28, 0, BLOCKS as u32, 1), &[]).await;
    assert_check(&r, 6, 0x2A, 0x09);
    let r = exec(&lu, &b, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await;
    assert_eq!(&data(&r)[..4], &(BLOCKS as u32 * 2 - 1).to_be_bytes());
    assert_good(&exec(&lu, &b, &cdb10(0x28, 0, BLOCKS as u32, 1), &[]).await);
}

#[tokio::test]
async fn resets_queue_unit_attentions_and_release_reserve() {
    let (_dev, lu, a) = ready(false).await;
    let b = nexus(2);
    clear_ua(&lu, &b).await;
    assert_good(&exec(&lu, &a, &[0x16, 0, 0, 0, 0, 0], &[]).await);
    assert_eq!(exec(&lu, &b, &[0; 6], &[]).await.status, 0x18);
    lu.reset(ResetKind::LogicalUnit);
    assert_check(&exec(&lu, &a, &[0; 6], &[]).await, 6, 0x29, 0x03);
    assert_check(&exec(&lu, &b, &[0; 6], &[]).await, 6, 0x29, 0x03);
    assert_good(&exec(&lu, &b, &[0x16, 0, 0, 0, 0, 0], &[]).await);
    lu.reset(ResetKind::TargetWarm);
    assert_check(&exec(&lu, &a, &[0; 6], &[]).await, 6, 0x29, 0x00);
    assert_good(&exec(&lu, &a, &[0x16, 0, 0, 0, 0, 0], &[]).await);
    // The reservation holder's nexus is lost: the reservation goes with it.
    lu.nexus_lost(&a);
    clear_ua(&lu, &b).await;
    assert_good(&exec(&lu, &b, &[0x16, 0, 0, 0, 0, 0], &[]).await);
}

#[tokio::test]
async fn report_supported_operation_codes() {
    let (_dev, lu, n) = ready(false).await;
    let mut c = [0u8; 12];
    c[0] = 0xA3;
    c[1] = 0x0C;
    c[6..10].copy_from_slice(&4096u32.to_be_bytes());
    let d = data(&exec(&lu, &n, &c, &[]).await);
    let len = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize;
    assert_eq!(len, d.len() - 4);
    let descs: Vec<&[u8]> = d[4..].chunks(8).collect();
    assert!(descs.contains(&&[0x28, 0, 0, 0, 0, 0, 0, 10][..]));
    assert!(descs.contains(&&[0x9E, 0, 0, 0x12, 0, 1, 0, 16][..]));
    // One command, without and with a service action.
    c[2] = 1;
    c[3] = 0x28;
    let d = data(&exec(&lu, &n, &c, &[]).await);
    assert_eq!(&d[..5], &[0, 3, 0, 10, 0x28]);
    assert_eq!(d.len(), 14);
    c[3] = 0x9E;
    assert_invalid_cdb(&exec(&lu, &n, &c, &[]).await, 2, Some(2));
    c[2] = 2;
    c[5] = 0x10;
    let d = data(&exec(&lu, &n, &c, &[]).await);
    assert_eq!(&d[..5], &[0, 3, 0, 16, 0x9E]);
    c[2] = 1;
    c[3] = 0xC5;
    assert_eq!(&data(&exec(&lu, &n, &c, &[]).await)[..2], &[0, 1]);
}

/// The transport spawns each command as its own task: the future must be `Send`.
#[test]
fn execute_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let (_dev, lu) = unit(false);
    let n = nexus(1);
    let fut = lu.execute(&n, &[0; 6], Bytes::new());
    assert_send(&fut);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(fut).status, 0x02, "the power-on unit attention");
}
