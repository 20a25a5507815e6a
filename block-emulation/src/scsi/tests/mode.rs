//! MODE SENSE (6/10) and MODE SELECT (6/10).

use super::*;

#[tokio::test]
async fn mode_sense_all_pages() {
    let (_dev, lu, n) = ready(false).await;
    let d = data(&exec(&lu, &n, &[0x1A, 0, 0x3F, 0, 255, 0], &[]).await);
    // Header: length, medium type, DPOFUA, one 8-byte block descriptor.
    assert_eq!(&d[..4], &[d.len() as u8 - 1, 0, 0x10, 8]);
    assert_eq!(&d[4..12], &[0, 0, 0x08, 0, 0, 0, 2, 0]);
    // Caching (WCE), control, informational exceptions.
    assert_eq!(&d[12..15], &[0x08, 0x12, 0x04]);
    assert_eq!(&d[32..36], &[0x0A, 0x0A, 0x00, 0x10]);
    assert_eq!(&d[44..47], &[0x1C, 0x0A, 0x08]);
    assert_eq!(d.len(), 56);
    // DBD, allocation length.
    let d = data(&exec(&lu, &n, &[0x1A, 0x08, 0x08, 0, 255, 0], &[]).await);
    assert_eq!(d.len(), 24);
    assert_eq!(&d[..4], &[23, 0, 0x10, 0]);
    let r = exec(&lu, &n, &[0x1A, 0, 0x3F, 0, 4, 0], &[]).await;
    assert_eq!(data(&r).len(), 4);
    // MODE SENSE (10) with LLBAA: a 16-byte descriptor.
    let d = data(&exec(&lu, &n, &[0x5A, 0x10, 0x0A, 0, 0, 0, 0, 1, 0, 0], &[]).await);
    assert_eq!(&d[..8], &[0, 34, 0, 0x10, 1, 0, 0, 16]);
    assert_eq!(&d[8..24], &[0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 2, 0]);
    assert_eq!(&d[24..26], &[0x0A, 0x0A]);
}

#[tokio::test]
async fn mode_sense_page_control_and_errors() {
    let (_dev, lu, n) = ready(false).await;
    // Changeable values: WCE and D_SENSE only.
    let d = data(&exec(&lu, &n, &[0x1A, 0x08, 0x7F, 0, 255, 0], &[]).await);
    assert_eq!(&d[4..7], &[0x08, 0x12, 0x04]);
    assert!(d[7..24].iter().all(|b| *b == 0));
    assert_eq!(&d[24..27], &[0x0A, 0x0A, 0x04]);
    assert!(d[27..36].iter().all(|b| *b == 0));
    assert!(d[38..48].iter().all(|b| *b == 0));
    // Saved values are not supported.
    let r = exec(&lu, &n, &[0x1A, 0, 0xC8, 0, 255, 0], &[]).await;
    assert_check(&r, 5, 0x39, 0);
    assert_eq!(&r.sense.unwrap()[15..18], &[0xCF, 0, 2]);
    assert_invalid_cdb(
        &exec(&lu, &n, &[0x1A, 0, 0x19, 0, 255, 0], &[]).await,
        2,
        Some(5),
    );
    assert_invalid_cdb(
        &exec(&lu, &n, &[0x1A, 0, 0x08, 1, 255, 0], &[]).await,
        3,
        None,
    );
    assert_good(&exec(&lu, &n, &[0x1A, 0, 0x3F, 0xFF, 255, 0], &[]).await);
}

#[tokio::test]
async fn mode_select_d_sense_switches_sense_format() {
    let (_dev, lu, n) = ready(false).await;
    let other = nexus(2);
    clear_ua(&lu, &other).await;
    // Read the control page (MODE SENSE (10), DBD) and send it back with D_SENSE set.
    let d = data(&exec(&lu, &n, &[0x5A, 0x08, 0x0A, 0, 0, 0, 0, 0, 255, 0], &[]).await);
    let mut list = d.clone();
    list[0] = 0;
    list[1] = 0;
    list[10] |= 0x04;
    let c = [0x55, 0x10, 0, 0, 0, 0, 0, 0, list.len() as u8, 0];
    assert_good(&exec(&lu, &n, &c, &list).await);
    let r = exec(&lu, &n, &cdb16(0x88, 0, u64::MAX, 1), &[]).await;
    assert_eq!(&r.sense.unwrap()[..4], &[0x72, 5, 0x21, 0]);
    // The other nexus hears that mode parameters changed, in the new format.
    let r = exec(&lu, &other, &[0; 6], &[]).await;
    assert_eq!(&r.sense.unwrap()[..4], &[0x72, 6, 0x2A, 0x01]);
    // A field pointer in descriptor format.
    let r = exec(&lu, &n, &[0x12, 2, 0, 0, 36, 0], &[]).await;
    assert_eq!(&r.sense.unwrap()[8..16], &[2, 6, 0, 0, 0xC9, 0, 1, 0]);
}

#[tokio::test]
async fn mode_select_refuses_what_cannot_change() {
    let (_dev, lu, n) = ready(false).await;
    let caching = |b2: u8, b3: u8| {
        let mut l = vec![0, 0, 0, 0, 0x08, 0x12, b2, b3];
        l.extend_from_slice(&[0; 16]);
        l
    };
    let sel = |len: usize| [0x15, 0x10, 0, 0, len as u8, 0];
    // RCD is not changeable.
    let l = caching(0x05, 0);
    let r = exec(&lu, &n, &sel(l.len()), &l).await;
    assert_check(&r, 5, 0x26, 0);
    assert_eq!(&r.sense.unwrap()[15..18], &[0x80, 0, 6]);
    // Wrong page length; unknown page; truncated page.
    let mut l = caching(0x04, 0);
    l[5] = 0x10;
    assert_check(&exec(&lu, &n, &sel(l.len()), &l).await, 5, 0x26, 0);
    let l = [0, 0, 0, 0, 0x19, 0x02, 0, 0];
    assert_check(&exec(&lu, &n, &sel(l.len()), &l).await, 5, 0x26, 0);
    let l = &caching(0x04, 0)[..10];
    assert_check(&exec(&lu, &n, &sel(l.len()), l).await, 5, 0x1A, 0);
    // A block descriptor with another block length.
    let mut l = vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0];
    l.extend_from_slice(&caching(0x04, 0)[4..]);
    assert_check(&exec(&lu, &n, &sel(l.len()), &l).await, 5, 0x26, 0);
    l[10] = 0x02;
    assert_good(&exec(&lu, &n, &sel(l.len()), &l).await);
    // SP is refused; PF=0 too.
    let l = caching(0x04, 0);
    let r = exec(&lu, &n, &[0x15, 0x11, 0, 0, l.len() as u8, 0], &l).await;
    assert_check(&r, 5, 0x39, 0);
    let r = exec(&lu, &n, &[0x15, 0x00, 0, 0, l.len() as u8, 0], &l).await;
    assert_invalid_cdb(&r, 1, Some(4));
    // An empty list changes nothing.
    assert_good(&exec(&lu, &n, &sel(0), &[]).await);
}
