//! RESERVE/RELEASE and persistent reservations, with two and three nexuses.

use super::*;

fn prout(action: u8, kind: u8, key: u64, sa_key: u64) -> (Vec<u8>, Vec<u8>) {
    let cdb = vec![0x5F, action, kind, 0, 0, 0, 0, 0, 24, 0];
    let mut list = vec![0u8; 24];
    list[..8].copy_from_slice(&key.to_be_bytes());
    list[8..16].copy_from_slice(&sa_key.to_be_bytes());
    (cdb, list)
}

async fn out(lu: &LogicalUnit, n: &Nexus, action: u8, kind: u8, key: u64, sa: u64) -> Response {
    let (c, l) = prout(action, kind, key, sa);
    exec(lu, n, &c, &l).await
}

async fn pr_in(lu: &LogicalUnit, n: &Nexus, action: u8) -> Vec<u8> {
    let r = exec(lu, n, &[0x5E, action, 0, 0, 0, 0, 0, 0x10, 0, 0], &[]).await;
    assert_good(&r);
    data(&r)
}

const REGISTER: u8 = 0;
const RESERVE: u8 = 1;
const RELEASE: u8 = 2;
const CLEAR: u8 = 3;
const PREEMPT: u8 = 4;
const REGISTER_IGNORE: u8 = 6;

const WE: u8 = 1;
const EA: u8 = 3;
const WE_RO: u8 = 5;
const EA_AR: u8 = 8;

async fn can_read(lu: &LogicalUnit, n: &Nexus) -> bool {
    let r = exec(lu, n, &cdb10(0x28, 0, 0, 1), &[]).await;
    assert!(r.status == 0 || r.status == 0x18, "{r:?}");
    r.status == 0
}

async fn can_write(lu: &LogicalUnit, n: &Nexus) -> bool {
    let r = exec(lu, n, &cdb10(0x2A, 0, 0, 1), &[0; 512]).await;
    assert!(r.status == 0 || r.status == 0x18, "{r:?}");
    r.status == 0
}

#[tokio::test]
async fn reserve6_between_two_nexuses() {
    let (_dev, lu, a) = ready(false).await;
    let b = nexus(2);
    clear_ua(&lu, &b).await;
    assert_good(&exec(&lu, &a, &[0x16, 0, 0, 0, 0, 0], &[]).await);
    assert_good(&exec(&lu, &a, &[0x16, 0, 0, 0, 0, 0], &[]).await);
    assert_eq!(
        exec(&lu, &b, &[0x16, 0, 0, 0, 0, 0], &[]).await.status,
        0x18
    );
    // RELEASE from the other nexus does nothing; MODE SENSE, reads and writes conflict;
    // INQUIRY does not.
    assert_good(&exec(&lu, &b, &[0x17, 0, 0, 0, 0, 0], &[]).await);
    assert_eq!(
        exec(&lu, &b, &[0x1A, 0, 0x3F, 0, 255, 0], &[]).await.status,
        0x18
    );
    assert!(!can_read(&lu, &b).await && !can_write(&lu, &b).await);
    assert_good(&exec(&lu, &b, &[0x12, 0, 0, 0, 36, 0], &[]).await);
    assert!(can_write(&lu, &a).await);
    assert_good(&exec(&lu, &a, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await);
    assert_good(&exec(&lu, &b, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await);
    // Third-party RESERVE (10) is not supported.
    let r = exec(&lu, &b, &[0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await;
    assert_invalid_cdb(&r, 1, Some(4));
}

#[tokio::test]
async fn persistent_reservation_scenario() {
    let (_dev, lu, a) = ready(false).await;
    let b = nexus(2);
    let c = nexus(3);
    clear_ua(&lu, &b).await;
    clear_ua(&lu, &c).await;

    // Registration: a key other than 0 from an unregistered nexus conflicts.
    assert_eq!(out(&lu, &a, REGISTER, 0, 5, 0xA).await.status, 0x18);
    assert_good(&out(&lu, &a, REGISTER, 0, 0, 0xA).await);
    assert_good(&out(&lu, &b, REGISTER_IGNORE, 0, 0, 0xB).await);
    assert_eq!(
        pr_in(&lu, &a, 0).await,
        [0, 0, 0, 2, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0xA, 0, 0, 0, 0, 0, 0, 0, 0xB]
    );
    // Re-registering with a wrong key conflicts; the right key changes it.
    assert_eq!(out(&lu, &b, REGISTER, 0, 0xC, 0xBB).await.status, 0x18);
    assert_good(&out(&lu, &b, REGISTER, 0, 0xB, 0xBB).await);
    assert_eq!(&pr_in(&lu, &a, 0).await[..4], &[0, 0, 0, 3]);

    // WRITE EXCLUSIVE - REGISTRANTS ONLY held by a.
    assert_good(&out(&lu, &a, RESERVE, WE_RO, 0xA, 0).await);
    let rr = pr_in(&lu, &b, 1).await;
    assert_eq!(
        rr,
        [0, 0, 0, 3, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0xA, 0, 0, 0, 0, 0, WE_RO, 0, 0]
    );
    assert!(can_write(&lu, &a).await && can_write(&lu, &b).await);
    assert!(can_read(&lu, &c).await && !can_write(&lu, &c).await);
    // Reserving again with the same type is fine; another type conflicts; b cannot take it.
    assert_good(&out(&lu, &a, RESERVE, WE_RO, 0xA, 0).await);
    assert_eq!(out(&lu, &a, RESERVE, EA, 0xA, 0).await.status, 0x18);
    assert_eq!(out(&lu, &b, RESERVE, WE_RO, 0xBB, 0).await.status, 0x18);
    // RELEASE with the wrong type.
    assert_check(&out(&lu, &a, RELEASE, EA, 0xA, 0).await, 5, 0x26, 0x04);
    // RESERVE(6) conflicts while registrations exist.
    assert_eq!(
        exec(&lu, &c, &[0x16, 0, 0, 0, 0, 0], &[]).await.status,
        0x18
    );

    // Release: b (a registrant) hears RESERVATIONS RELEASED.
    assert_good(&out(&lu, &a, RELEASE, WE_RO, 0xA, 0).await);
    assert_check(&exec(&lu, &b, &[0; 6], &[]).await, 6, 0x2A, 0x04);
    assert!(can_write(&lu, &c).await);

    // EXCLUSIVE ACCESS held by b: nobody else reads or writes, registered or not.
    assert_good(&out(&lu, &b, RESERVE, EA, 0xBB, 0).await);
    assert!(!can_read(&lu, &a).await && !can_write(&lu, &a).await);
    assert!(!can_read(&lu, &c).await);
    assert!(can_read(&lu, &b).await);
    // TEST UNIT READY, INQUIRY, READ CAPACITY and PR IN still work.
    assert_good(&exec(&lu, &c, &[0; 6], &[]).await);
    assert_good(&exec(&lu, &c, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await);

    // a preempts b: b's registration goes, b hears REGISTRATIONS PREEMPTED, a holds WE.
    assert_good(&out(&lu, &a, PREEMPT, WE, 0xA, 0xBB).await);
    assert_check(&exec(&lu, &b, &[0; 6], &[]).await, 6, 0x2A, 0x05);
    let rr = pr_in(&lu, &c, 1).await;
    assert_eq!((&rr[8..16], rr[21]), (&0xAu64.to_be_bytes()[..], WE));
    assert_eq!(&pr_in(&lu, &c, 0).await[4..8], &[0, 0, 0, 8]);
    assert!(can_read(&lu, &b).await && !can_write(&lu, &b).await);
    // b's old key no longer works.
    assert_eq!(out(&lu, &b, RELEASE, EA, 0xBB, 0).await.status, 0x18);

    // Preempting a key nobody has conflicts; preempting with key 0 and no reservation
    // holder match is an invalid field.
    assert_eq!(out(&lu, &a, PREEMPT, WE, 0xA, 0x77).await.status, 0x18);

    // READ FULL STATUS: a's registration, holder, with its TransportID.
    let fs = pr_in(&lu, &c, 3).await;
    assert_eq!(&fs[8..16], &0xAu64.to_be_bytes());
    assert_eq!((fs[20], fs[21]), (1, WE));
    assert_eq!(&fs[26..28], &[0, 1]);
    let tid_len = u32::from_be_bytes(fs[28..32].try_into().unwrap()) as usize;
    assert_eq!(&fs[32..36], &[0x45, 0, 0, (tid_len - 4) as u8]);
    let name = a.initiator_port();
    assert_eq!(&fs[36..36 + name.len()], name.as_bytes());
    assert_eq!(name, "iqn.2024-01.org.test:init1,i,0x400000000001");

    // CLEAR: everything goes; other registrants hear RESERVATIONS PREEMPTED.
    assert_good(&out(&lu, &c, REGISTER, 0, 0, 0xC).await);
    let gen_before = u32::from_be_bytes(pr_in(&lu, &a, 0).await[..4].try_into().unwrap());
    assert_good(&out(&lu, &a, CLEAR, 0, 0xA, 0).await);
    assert_check(&exec(&lu, &c, &[0; 6], &[]).await, 6, 0x2A, 0x03);
    let keys = pr_in(&lu, &a, 0).await;
    assert_eq!(
        u32::from_be_bytes(keys[..4].try_into().unwrap()),
        gen_before + 1
    );
    assert_eq!(&keys[4..8], &[0, 0, 0, 0]);
    assert_eq!(&pr_in(&lu, &a, 1).await[4..8], &[0, 0, 0, 0]);
    assert!(can_write(&lu, &b).await);
}

#[tokio::test]
async fn all_registrants_reservation_outlives_its_reserver() {
    let (_dev, lu, a) = ready(false).await;
    let b = nexus(2);
    clear_ua(&lu, &b).await;
    assert_good(&out(&lu, &a, REGISTER, 0, 0, 1).await);
    assert_good(&out(&lu, &b, REGISTER, 0, 0, 2).await);
    assert_good(&out(&lu, &a, RESERVE, EA_AR, 1, 0).await);
    // Key 0 in READ RESERVATION for all-registrants types.
    let rr = pr_in(&lu, &b, 1).await;
    assert_eq!((&rr[8..16], rr[21]), (&[0u8; 8][..], EA_AR));
    assert!(can_write(&lu, &b).await);
    // a unregisters: b still holds it.
    assert_good(&out(&lu, &a, REGISTER, 0, 1, 0).await);
    assert_eq!(pr_in(&lu, &b, 1).await[21], EA_AR);
    assert!(!can_read(&lu, &a).await);
    assert_good(&out(&lu, &b, RELEASE, EA_AR, 2, 0).await);
    assert!(can_read(&lu, &a).await);
}

#[tokio::test]
async fn persistent_reserve_field_errors() {
    let (_dev, lu, a) = ready(false).await;
    assert_good(&out(&lu, &a, REGISTER, 0, 0, 1).await);
    // Scope other than LU, unknown type.
    assert_invalid_cdb(&out(&lu, &a, RESERVE, 0x10 | WE, 1, 0).await, 2, Some(7));
    assert_invalid_cdb(&out(&lu, &a, RESERVE, 2, 1, 0).await, 2, Some(3));
    // APTPL, ALL_TG_PT, SPEC_I_PT.
    for (bit, flag) in [(0, 0x01), (2, 0x04), (3, 0x08)] {
        let (c, mut l) = prout(REGISTER, 0, 1, 2);
        l[20] = flag;
        let r = exec(&lu, &a, &c, &l).await;
        assert_check(&r, 5, 0x26, 0);
        assert_eq!(&r.sense.unwrap()[15..18], &[0x88 | bit, 0, 20]);
    }
    // REGISTER AND MOVE and unknown service actions; PR IN beyond READ FULL STATUS.
    let (mut c, l) = prout(7, 0, 1, 2);
    assert_invalid_cdb(&exec(&lu, &a, &c, &l).await, 1, Some(4));
    c[1] = 0;
    c[8] = 0;
    assert_check(&exec(&lu, &a, &c, &[]).await, 5, 0x1A, 0);
    for sa in 4..0x20 {
        let r = exec(&lu, &a, &[0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0, 0], &[]).await;
        assert_invalid_cdb(&r, 1, Some(4));
    }
    // REPORT CAPABILITIES.
    assert_eq!(
        pr_in(&lu, &a, 2).await,
        [0, 8, 0x10, 0x80, 0xEA, 0x01, 0, 0]
    );
    // Allocation length truncates.
    let r = exec(&lu, &a, &[0x5E, 0, 0, 0, 0, 0, 0, 0, 6, 0], &[]).await;
    assert_eq!(data(&r).len(), 6);
}
