//! READ, WRITE, WRITE AND VERIFY, VERIFY, SYNCHRONIZE CACHE, PRE-FETCH and COMPARE AND WRITE.

use std::sync::atomic::Ordering;

use super::*;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
}

#[tokio::test]
async fn write_then_read_in_every_size() {
    let (dev, lu, n) = ready(false).await;
    let data1 = pattern(4 * 512, 1);
    // WRITE (10) at LBA 8, READ (10) back: the pieces come straight from the device.
    assert_good(&exec(&lu, &n, &cdb10(0x2A, 0, 8, 4), &data1).await);
    assert_eq!(dev.bytes(8 * 512, 2048), data1);
    let r = exec(&lu, &n, &cdb10(0x28, 0, 8, 4), &[]).await;
    assert_eq!(r.data.len(), 2, "read pieces are passed through");
    assert_eq!(data(&r), data1);
    // (6): 21-bit LBA, length 0 means 256 blocks.
    let data2 = pattern(256 * 512, 2);
    assert_good(&exec(&lu, &n, &[0x0A, 0, 0, 100, 0, 0], &data2).await);
    assert_eq!(
        data(&exec(&lu, &n, &[0x08, 0, 0, 100, 0, 0], &[]).await),
        data2
    );
    // (12) and (16).
    let mut c12 = vec![0xAA, 0, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0];
    let data3 = pattern(512, 3);
    assert_good(&exec(&lu, &n, &c12, &data3).await);
    c12[0] = 0xA8;
    assert_eq!(data(&exec(&lu, &n, &c12, &[]).await), data3);
    assert_good(&exec(&lu, &n, &cdb16(0x8A, 0, BLOCKS - 1, 1), &data3).await);
    assert_eq!(
        data(&exec(&lu, &n, &cdb16(0x88, 0, BLOCKS - 1, 1), &[]).await),
        data3
    );
    // WRITE AND VERIFY writes through.
    let before = dev.flushes.load(Ordering::Relaxed);
    assert_good(&exec(&lu, &n, &cdb10(0x2E, 0x02, 30, 1), &data3).await);
    assert_eq!(dev.bytes(30 * 512, 512), data3);
    assert_eq!(dev.flushes.load(Ordering::Relaxed), before + 1);
}

#[tokio::test]
async fn fua_reaches_the_device() {
    let (dev, lu, n) = ready(false).await;
    let before = dev.flushes.load(Ordering::Relaxed);
    assert_good(&exec(&lu, &n, &cdb10(0x2A, 0x10, 0, 1), &[1; 512]).await); // DPO only
    assert_eq!(dev.flushes.load(Ordering::Relaxed), before);
    assert_good(&exec(&lu, &n, &cdb10(0x2A, 0x08, 0, 1), &[1; 512]).await); // FUA
    assert_eq!(dev.flushes.load(Ordering::Relaxed), before + 1);
}

#[tokio::test]
async fn zero_lengths_and_ranges() {
    let (_dev, lu, n) = ready(false).await;
    let end = BLOCKS as u32;
    assert_good(&exec(&lu, &n, &cdb10(0x28, 0, 0, 0), &[]).await);
    assert!(exec(&lu, &n, &cdb10(0x28, 0, end, 0), &[])
        .await
        .data
        .is_empty());
    assert_check(
        &exec(&lu, &n, &cdb10(0x28, 0, end + 1, 0), &[]).await,
        5,
        0x21,
        0,
    );
    assert_check(
        &exec(&lu, &n, &cdb10(0x28, 0, end - 1, 2), &[]).await,
        5,
        0x21,
        0,
    );
    assert_check(
        &exec(&lu, &n, &cdb10(0x28, 0, u32::MAX, 1), &[]).await,
        5,
        0x21,
        0,
    );
    let r = exec(&lu, &n, &cdb16(0x88, 0, u64::MAX, 2), &[]).await;
    assert_check(&r, 5, 0x21, 0);
    let r = exec(&lu, &n, &cdb16(0x8A, 0, u64::MAX, 1), &[0; 512]).await;
    assert_check(&r, 5, 0x21, 0);
    assert_good(&exec(&lu, &n, &cdb10(0x2A, 0, 0, 0), &[]).await);
    // READ (6) past the end, with its 256-block meaning of 0.
    assert_check(
        &exec(&lu, &n, &[0x08, 0, 0x07, 0x01, 0, 0], &[]).await,
        5,
        0x21,
        0,
    );
}

#[tokio::test]
async fn field_errors() {
    let (_dev, lu, n) = ready(false).await;
    for op in [0x28, 0x2A, 0x2E, 0x2F] {
        let r = exec(&lu, &n, &cdb10(op, 0x20, 0, 1), &[0; 512]).await;
        assert_invalid_cdb(&r, 1, Some(7));
    }
    assert_invalid_cdb(
        &exec(&lu, &n, &cdb16(0x88, 0xE0, 0, 1), &[]).await,
        1,
        Some(7),
    );
    // Over the maximum transfer length.
    assert_invalid_cdb(
        &exec(&lu, &n, &cdb16(0x88, 0, 0, 65537), &[]).await,
        10,
        None,
    );
    assert_invalid_cdb(
        &exec(&lu, &n, &cdb16(0x88, 0, 0, 1 << 20), &[]).await,
        10,
        None,
    );
    // VERIFY's reserved BYTCHK 10b.
    assert_invalid_cdb(
        &exec(&lu, &n, &cdb10(0x2F, 0x04, 0, 1), &[]).await,
        1,
        Some(2),
    );
    // Less Data-Out than the CDB says, not whole blocks: nothing written.
    let r = exec(&lu, &n, &cdb10(0x2A, 0, 0, 2), &[9; 700]).await;
    assert_check(&r, 5, 0x0E, 0x03);
    assert_eq!(
        data(&exec(&lu, &n, &cdb10(0x28, 0, 0, 2), &[]).await),
        [0; 1024]
    );
    // Whole blocks, fewer than the CDB says: those are written, nothing past them (the
    // transport reports the residual).
    assert_good(&exec(&lu, &n, &cdb10(0x2A, 0, 0, 2), &[9; 512]).await);
    let d = data(&exec(&lu, &n, &cdb10(0x28, 0, 0, 2), &[]).await);
    assert_eq!((&d[..512], &d[512..]), (&[9u8; 512][..], &[0u8; 512][..]));
}

#[tokio::test]
async fn read_only_device_refuses_writes() {
    let (_dev, lu, n) = ready(true).await;
    assert_check(
        &exec(&lu, &n, &cdb10(0x2A, 0, 0, 1), &[1; 512]).await,
        7,
        0x27,
        0,
    );
    assert_check(
        &exec(&lu, &n, &cdb10(0x41, 0x08, 0, 1), &[]).await,
        7,
        0x27,
        0,
    );
    let unmap = [
        0, 22, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
    ];
    assert_check(
        &exec(&lu, &n, &cdb10(0x42, 0, 0, 24), &unmap).await,
        7,
        0x27,
        0,
    );
    assert_good(&exec(&lu, &n, &cdb10(0x28, 0, 0, 1), &[]).await);
    // MODE SENSE reports WP.
    let r = exec(&lu, &n, &[0x1A, 0x08, 0x3F, 0, 255, 0], &[]).await;
    assert_eq!(data(&r)[2], 0x90);
}

#[tokio::test]
async fn verify_with_and_without_bytchk() {
    let (_dev, lu, n) = ready(false).await;
    let d = pattern(3 * 512, 5);
    assert_good(&exec(&lu, &n, &cdb10(0x2A, 0, 10, 3), &d).await);
    assert_good(&exec(&lu, &n, &cdb10(0x2F, 0, 10, 3), &[]).await);
    assert_good(&exec(&lu, &n, &cdb10(0x2F, 0x02, 10, 3), &d).await);
    let mut bad = d.clone();
    bad[700] ^= 1;
    let r = exec(&lu, &n, &cdb10(0x2F, 0x02, 10, 3), &bad).await;
    assert_check(&r, 0x0E, 0x1D, 0);
    let s = r.sense.unwrap();
    assert_eq!((s[0], &s[3..7]), (0xF0, &700u32.to_be_bytes()[..]));
    assert_check(
        &exec(&lu, &n, &cdb10(0x2F, 0, BLOCKS as u32, 1), &[]).await,
        5,
        0x21,
        0,
    );
    // BYTCHK 11b: one block against each.
    assert_good(&exec(&lu, &n, &cdb16(0x8F, 0x06, 100, 4), &[0; 512]).await);
    // Block 12 holds the pattern again (its period is 256 bytes); block 13 is zeros.
    let r = exec(&lu, &n, &cdb16(0x8F, 0x06, 12, 2), &d[..512]).await;
    assert_check(&r, 0x0E, 0x1D, 0);
    assert_eq!(&r.sense.unwrap()[3..7], &512u32.to_be_bytes());
}

#[tokio::test]
async fn sync_cache_and_pre_fetch() {
    let (dev, lu, n) = ready(false).await;
    let before = dev.flushes.load(Ordering::Relaxed);
    assert_good(&exec(&lu, &n, &cdb10(0x35, 0x02, 0, 0), &[]).await);
    assert_good(&exec(&lu, &n, &cdb16(0x91, 0, 5, 10), &[]).await);
    assert_eq!(dev.flushes.load(Ordering::Relaxed), before + 2);
    let r = exec(&lu, &n, &cdb10(0x35, 0, BLOCKS as u32, 1), &[]).await;
    assert_check(&r, 5, 0x21, 0);
    assert_good(&exec(&lu, &n, &cdb10(0x34, 0, 0, 8), &[]).await);
    assert_check(
        &exec(&lu, &n, &cdb16(0x90, 0, BLOCKS, 1), &[]).await,
        5,
        0x21,
        0,
    );
}

#[tokio::test]
async fn compare_and_write_match_and_miscompare() {
    let (dev, lu, n) = ready(false).await;
    let old = pattern(2 * 512, 1);
    let new = pattern(2 * 512, 2);
    assert_good(&exec(&lu, &n, &cdb10(0x2A, 0, 40, 2), &old).await);
    let mut c = cdb16(0x89, 0, 40, 0);
    c[13] = 2;
    let mut both = old.clone();
    both.extend_from_slice(&new);
    assert_good(&exec(&lu, &n, &c, &both).await);
    assert_eq!(dev.bytes(40 * 512, 1024), new);
    // Compare against the old data again: byte 513 differs first.
    let mut stale = old.clone();
    stale[..513].copy_from_slice(&new[..513]);
    stale.extend_from_slice(&old);
    let r = exec(&lu, &n, &c, &stale).await;
    assert_check(&r, 0x0E, 0x1D, 0);
    assert_eq!(&r.sense.unwrap()[3..7], &513u32.to_be_bytes());
    assert_eq!(
        dev.bytes(40 * 512, 1024),
        new,
        "nothing written on a miscompare"
    );
    // Zero blocks, too many blocks, beyond the end, protection.
    c[13] = 0;
    assert_good(&exec(&lu, &n, &c, &[]).await);
    c[13] = 129;
    assert_invalid_cdb(&exec(&lu, &n, &c, &[]).await, 13, None);
    let mut c = cdb16(0x89, 0, BLOCKS, 0);
    c[13] = 1;
    assert_check(&exec(&lu, &n, &c, &[0; 1024]).await, 5, 0x21, 0);
    c[1] = 0x20;
    assert_invalid_cdb(&exec(&lu, &n, &c, &[0; 1024]).await, 1, Some(7));
}

#[tokio::test]
async fn write_cache_disabled_makes_writes_durable() {
    let (dev, lu, n) = ready(false).await;
    // MODE SELECT (6) of the caching page with WCE cleared.
    let mut list = vec![0, 0, 0, 0, 0x08, 0x12];
    list.extend_from_slice(&[0; 18]);
    assert_good(&exec(&lu, &n, &[0x15, 0x10, 0, 0, list.len() as u8, 0], &list).await);
    let before = dev.flushes.load(Ordering::Relaxed);
    assert_good(&exec(&lu, &n, &cdb10(0x2A, 0, 0, 1), &[1; 512]).await);
    assert_eq!(dev.flushes.load(Ordering::Relaxed), before + 1);
}
