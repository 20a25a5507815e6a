//! UNMAP, WRITE SAME and GET LBA STATUS.

use super::*;

fn unmap_list(descs: &[(u64, u32)]) -> Vec<u8> {
    let mut l = vec![0u8; 8];
    l[0..2].copy_from_slice(&((6 + 16 * descs.len()) as u16).to_be_bytes());
    l[2..4].copy_from_slice(&((16 * descs.len()) as u16).to_be_bytes());
    for (lba, n) in descs {
        l.extend_from_slice(&lba.to_be_bytes());
        l.extend_from_slice(&n.to_be_bytes());
        l.extend_from_slice(&[0; 4]);
    }
    l
}

fn unmap_cdb(len: usize) -> Vec<u8> {
    cdb10(0x42, 0, 0, len as u16)
}

#[tokio::test]
async fn unmap_trims_every_descriptor() {
    let (dev, lu, n) = ready(false).await;
    assert_good(&exec(&lu, &n, &cdb10(0x2A, 0, 0, 16), &[0xAB; 16 * 512]).await);
    let l = unmap_list(&[(2, 3), (10, 1), (12, 0)]);
    assert_good(&exec(&lu, &n, &unmap_cdb(l.len()), &l).await);
    let holes: Vec<bool> = (0..16).map(|b| dev.hole(b)).collect();
    let mut want = vec![false; 16];
    for b in [2, 3, 4, 10] {
        want[b] = true;
    }
    assert_eq!(holes, want);
    assert_eq!(dev.bytes(2 * 512, 512), vec![0; 512]);
    // No list, and a header only.
    assert_good(&exec(&lu, &n, &unmap_cdb(0), &[]).await);
    assert_good(&exec(&lu, &n, &unmap_cdb(8), &unmap_list(&[])).await);
}

#[tokio::test]
async fn unmap_checks_the_whole_list_first() {
    let (dev, lu, n) = ready(false).await;
    assert_good(&exec(&lu, &n, &cdb10(0x2A, 0, 0, 4), &[1; 2048]).await);
    // The second descriptor is out of range: the first is not trimmed either.
    let l = unmap_list(&[(0, 1), (BLOCKS - 1, 2)]);
    assert_check(&exec(&lu, &n, &unmap_cdb(l.len()), &l).await, 5, 0x21, 0);
    assert!(!dev.hole(0));
    // Over MAXIMUM UNMAP LBA COUNT.
    let l = unmap_list(&[(0, (1 << 20) + 1)]);
    let r = exec(&lu, &n, &unmap_cdb(l.len()), &l).await;
    assert_check(&r, 5, 0x26, 0);
    assert_eq!(&r.sense.unwrap()[15..18], &[0x80, 0, 16]);
    // Too short a list, too long a list, ANCHOR.
    assert_check(&exec(&lu, &n, &unmap_cdb(4), &[0; 4]).await, 5, 0x1A, 0);
    let r = exec(&lu, &n, &unmap_cdb(8 + 16 * 257), &[]).await;
    assert_invalid_cdb(&r, 7, None);
    assert_invalid_cdb(&exec(&lu, &n, &cdb10(0x42, 1, 0, 0), &[]).await, 1, Some(0));
}

#[tokio::test]
async fn write_same_zeroes_unmaps_or_repeats() {
    let (dev, lu, n) = ready(false).await;
    assert_good(&exec(&lu, &n, &cdb10(0x2A, 0, 0, 32), &[7; 32 * 512]).await);
    // A pattern.
    let block: Vec<u8> = (0..512).map(|i| i as u8).collect();
    assert_good(&exec(&lu, &n, &cdb10(0x41, 0, 0, 4), &block).await);
    assert_eq!(dev.bytes(0, 2048), block.repeat(4));
    // Zeros without UNMAP: written as zeros (not holes).
    assert_good(&exec(&lu, &n, &cdb10(0x41, 0, 4, 2), &[0; 512]).await);
    assert_eq!(dev.bytes(4 * 512, 1024), vec![0; 1024]);
    assert!(!dev.hole(4));
    // Zeros with UNMAP: trimmed.
    assert_good(&exec(&lu, &n, &cdb10(0x41, 0x08, 6, 2), &[0; 512]).await);
    assert!(dev.hole(6) && dev.hole(7) && !dev.hole(8));
    // NDOB (16): no data, unmapped.
    assert_good(&exec(&lu, &n, &cdb16(0x93, 0x09, 8, 2), &[]).await);
    assert!(dev.hole(8) && dev.hole(9));
    // UNMAP with a pattern unmaps all the same (the blocks then read as zeros).
    assert_good(&exec(&lu, &n, &cdb10(0x2A, 0, 10, 1), &block).await);
    assert_good(&exec(&lu, &n, &cdb10(0x41, 0x08, 10, 1), &block).await);
    assert!(dev.hole(10));
    assert_eq!(dev.bytes(10 * 512, 512), vec![0; 512]);
    // 0 blocks: to the end of the medium.
    assert_good(&exec(&lu, &n, &cdb16(0x93, 0x08, BLOCKS - 3, 0), &[0; 512]).await);
    assert!((BLOCKS - 3..BLOCKS).all(|b| dev.hole(b as usize)));
}

#[tokio::test]
async fn write_same_errors() {
    let (_dev, lu, n) = ready(false).await;
    let end = BLOCKS as u32;
    let r = exec(&lu, &n, &cdb10(0x41, 0, end + 1, 0), &[0; 512]).await;
    assert_check(&r, 5, 0x21, 0);
    assert_check(
        &exec(&lu, &n, &cdb10(0x41, 0, end - 1, 2), &[0; 512]).await,
        5,
        0x21,
        0,
    );
    assert_good(&exec(&lu, &n, &cdb10(0x41, 0, end, 0), &[0; 512]).await);
    // ANCHOR, WRPROTECT, LBDATA.
    assert_invalid_cdb(
        &exec(&lu, &n, &cdb10(0x41, 0x10, 0, 1), &[0; 512]).await,
        1,
        Some(4),
    );
    assert_invalid_cdb(
        &exec(&lu, &n, &cdb10(0x41, 0x20, 0, 1), &[0; 512]).await,
        1,
        Some(7),
    );
    assert_invalid_cdb(
        &exec(&lu, &n, &cdb10(0x41, 0x02, 0, 1), &[0; 512]).await,
        1,
        Some(1),
    );
    // Over MAXIMUM WRITE SAME LENGTH.
    let r = exec(&lu, &n, &cdb16(0x93, 0, 0, (1 << 20) + 1), &[0; 512]).await;
    assert_invalid_cdb(&r, 10, None);
    // The Data-Out must be one block exactly.
    assert_check(
        &exec(&lu, &n, &cdb10(0x41, 8, 0, 1), &[0; 256]).await,
        5,
        0x24,
        0,
    );
    assert_check(
        &exec(&lu, &n, &cdb10(0x41, 8, 0, 1), &[0; 1024]).await,
        5,
        0x24,
        0,
    );
}

#[tokio::test]
async fn get_lba_status_reports_mapped_and_deallocated_runs() {
    let (_dev, lu, n) = ready(false).await;
    assert_good(&exec(&lu, &n, &cdb10(0x2A, 0, 4, 2), &[1; 1024]).await);
    let d = data(&exec(&lu, &n, &cdb16(0x9E, 0x12, 0, 1024), &[]).await);
    assert_eq!(&d[..8], &[0, 0, 0, 52, 0, 0, 0, 0]);
    let desc = |i: usize| {
        let e = &d[8 + 16 * i..24 + 16 * i];
        (
            u64::from_be_bytes(e[..8].try_into().unwrap()),
            u32::from_be_bytes(e[8..12].try_into().unwrap()),
            e[12],
        )
    };
    assert_eq!(desc(0), (0, 4, 1));
    assert_eq!(desc(1), (4, 2, 0));
    assert_eq!(desc(2), (6, BLOCKS as u32 - 6, 1));
    // The allocation length bounds the descriptors.
    let d = data(&exec(&lu, &n, &cdb16(0x9E, 0x12, 5, 24), &[]).await);
    assert_eq!(
        d,
        [0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0]
    );
    // Past the end.
    for lba in [BLOCKS, BLOCKS + 1, 1 << 63, u64::MAX] {
        let r = exec(&lu, &n, &cdb16(0x9E, 0x12, lba, 24), &[]).await;
        assert_check(&r, 5, 0x21, 0);
    }
}
