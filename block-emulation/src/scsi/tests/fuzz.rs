//! A bounded fuzz run: random CDBs and mutations of valid ones, with random Data-Out, from
//! two nexuses. Nothing may panic, every status must be one the unit uses, and every CHECK
//! CONDITION must carry well-formed sense data.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::scsi::{no_such_lun, report_luns, ResetKind};

/// One valid CDB for every operation code the unit decodes.
fn seeds() -> Vec<Vec<u8>> {
    let mut s = vec![
        vec![0x00, 0, 0, 0, 0, 0],
        vec![0x03, 0, 0, 0, 252, 0],
        vec![0x08, 0, 0, 1, 4, 0],
        vec![0x0A, 0, 0, 1, 4, 0],
        vec![0x12, 0, 0, 0, 255, 0],
        vec![0x12, 1, 0x83, 1, 0, 0],
        vec![0x15, 0x10, 0, 0, 24, 0],
        vec![0x16, 0, 0, 0, 0, 0],
        vec![0x17, 0, 0, 0, 0, 0],
        vec![0x1A, 0, 0x3F, 0, 255, 0],
        vec![0x1B, 0, 0, 0, 1, 0],
        vec![0x1E, 0, 0, 0, 0, 0],
        vec![0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0],
        vec![0x55, 0x10, 0, 0, 0, 0, 0, 0, 28, 0],
        vec![0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![0x5A, 0x10, 0x3F, 0, 0, 0, 0, 1, 0, 0],
        vec![0x5E, 3, 0, 0, 0, 0, 0, 1, 0, 0],
        vec![0x5F, 1, 5, 0, 0, 0, 0, 0, 24, 0],
        vec![0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        vec![0xA3, 0x0C, 0x81, 0x9E, 0, 0x10, 0, 0, 4, 0, 0, 0],
        vec![0xA8, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0],
        vec![0xAA, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0],
        vec![0xAE, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0],
        vec![0xAF, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0],
        vec![0x37, 0, 0x18, 0, 0, 0, 0, 0, 32, 0],
        vec![0xB7, 0x1D, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
    ];
    for op in [0x28, 0x2A, 0x2E, 0x2F, 0x34, 0x35, 0x41] {
        s.push(cdb10(op, 0x02, 3, 2));
    }
    for op in [0x88, 0x8A, 0x8B, 0x8E, 0x8F, 0x90, 0x91, 0x93] {
        s.push(cdb16(op, 0x02, 3, 2));
    }
    s.push(cdb16(0x9E, 0x10, 0, 32));
    s.push(cdb16(0x9E, 0x12, 1, 64));
    let mut caw = cdb16(0x89, 0, 1, 0);
    caw[13] = 2;
    s.push(caw);
    s
}

/// Sense data is one of the two formats, its lengths add up, and its key is not NO SENSE.
fn assert_well_formed(s: &[u8]) {
    match s.first() {
        Some(0x70 | 0xF0) => {
            assert_eq!(s.len(), 18);
            assert_eq!(s[7], 10);
            assert!(s[2] & 0x0F != 0 && s[2] & 0xF0 == 0, "{s:?}");
        }
        Some(0x72) => {
            assert!(s.len() >= 8);
            assert_eq!(usize::from(s[7]), s.len() - 8);
            assert!(s[1] & 0x0F != 0 && s[1] & 0xF0 == 0);
            let mut at = 8;
            while at < s.len() {
                assert!(at + 2 <= s.len());
                at += 2 + usize::from(s[at + 1]);
            }
            assert_eq!(at, s.len());
        }
        _ => panic!("malformed sense {s:?}"),
    }
}

fn assert_sane(r: &Response, cdb: &[u8]) {
    match r.status {
        0x00 | 0x18 => assert!(r.sense.is_none(), "{cdb:02x?}: {r:?}"),
        0x02 => {
            assert_well_formed(r.sense.as_ref().expect("sense"));
            assert!(r.data.is_empty());
        }
        s => panic!("{cdb:02x?}: unexpected status {s:#x}"),
    }
    let len: usize = r.data.iter().map(|b| b.len()).sum();
    assert!(len <= 32 << 20, "{cdb:02x?}: {len} bytes of Data-In");
}

#[tokio::test]
async fn random_and_mutated_cdbs_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5C51_CA1E);
    let (dev, lu) = unit(false);
    let nexuses = [nexus(1), nexus(2)];
    let seeds = seeds();
    for case in 0..6000 {
        let mut cdb = if rng.gen_bool(0.3) {
            let len = rng.gen_range(0..32);
            let mut c: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if let (Some(first), true) = (c.first_mut(), rng.gen_bool(0.5)) {
                *first = seeds[rng.gen_range(0..seeds.len())][0];
            }
            c
        } else {
            let mut c = seeds[rng.gen_range(0..seeds.len())].clone();
            for _ in 0..rng.gen_range(0..4) {
                let i = rng.gen_range(0..c.len());
                match rng.gen_range(0..4) {
                    0 => c[i] = rng.gen(),
                    1 => c[i] ^= 1 << rng.gen_range(0..8),
                    2 => c[i] = [0, 0xFF, 1, 0x80][rng.gen_range(0..4)],
                    _ => c.truncate(i.max(1)),
                }
                if c.is_empty() {
                    break;
                }
            }
            c
        };
        // iSCSI pads CDBs to 16 bytes; sometimes do, sometimes not.
        if rng.gen_bool(0.5) && cdb.len() < 16 {
            cdb.resize(16, 0);
        }
        let n = &nexuses[rng.gen_range(0..2)];
        let wanted = lu.data_out_len(&cdb);
        if let Err(r) = &wanted {
            assert_sane(r, &cdb);
            assert_eq!(r.status, 0x02);
        }
        let len = match (wanted, rng.gen_range(0..4)) {
            (Ok(w), 0 | 1) => w as usize,
            (Ok(w), 2) => (w as usize).saturating_sub(rng.gen_range(0..600)),
            _ => rng.gen_range(0..1100),
        };
        let mut data = vec![0u8; len];
        if rng.gen_bool(0.5) {
            rng.fill(&mut data[..]);
        }
        let r = lu.execute(n, &cdb, Bytes::from(data)).await;
        assert_sane(&r, &cdb);
        assert_sane(&no_such_lun(&cdb), &cdb);
        assert_sane(&report_luns(&cdb, &[0, 1]), &cdb);
        match case % 997 {
            100 => dev.resize(BLOCKS + 8),
            300 => lu.reset(ResetKind::LogicalUnit),
            500 => lu.nexus_lost(&nexuses[0]),
            700 => dev.resize(BLOCKS),
            _ => {}
        }
    }
    // The unit still answers afterwards (reservations the run left may block media access).
    let n = nexus(9);
    let r = exec(&lu, &n, &[0x12, 0, 0, 0, 36, 0], &[]).await;
    assert_good(&r);
    assert_eq!(data(&r).len(), 36);
}
