//! A bounded randomized test of the NBD parsers and encoders (seeded, a few thousand cases,
//! well under a second): random bytes, truncations and bit flips of valid handshakes and
//! requests never panic, and every answer is protocol-correct.

use cairn_block::nbd::proto::{self, *};
use cairn_block::Allocation;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CASES: usize = 5000;

fn go_data(name: &str, infos: &[u16]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for i in infos {
        d.extend_from_slice(&i.to_be_bytes());
    }
    d
}

fn meta_data(name: &str, queries: &[&str]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        d.extend_from_slice(&(q.len() as u32).to_be_bytes());
        d.extend_from_slice(q.as_bytes());
    }
    d
}

fn mutate(rng: &mut StdRng, mut b: Vec<u8>) -> Vec<u8> {
    if b.is_empty() {
        return (0..rng.gen_range(0..16)).map(|_| rng.gen()).collect();
    }
    match rng.gen_range(0..3) {
        0 => b.truncate(rng.gen_range(0..b.len())),
        1 => {
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..b.len());
                b[i] ^= 1 << rng.gen_range(0..8);
            }
        }
        _ => {
            let n = rng.gen_range(1..8);
            b.extend((0..n).map(|_| rng.gen::<u8>()));
        }
    }
    b
}

#[test]
fn options_parse_or_refuse_without_panicking() {
    let mut rng = StdRng::seed_from_u64(1);
    let options = [
        OPT_EXPORT_NAME,
        OPT_ABORT,
        OPT_LIST,
        OPT_INFO,
        OPT_GO,
        OPT_STRUCTURED_REPLY,
        OPT_LIST_META_CONTEXT,
        OPT_SET_META_CONTEXT,
    ];
    for case in 0..CASES {
        let option = if case % 10 == 0 {
            rng.gen()
        } else {
            options[rng.gen_range(0..options.len())]
        };
        let valid = match option {
            OPT_INFO | OPT_GO => go_data("disk", &[INFO_NAME, INFO_BLOCK_SIZE]),
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                meta_data("disk", &[BASE_ALLOCATION, "x-foo:bar"])
            }
            OPT_EXPORT_NAME => b"disk".to_vec(),
            _ => Vec::new(),
        };
        // The valid encoding parses to what was encoded.
        match (option, parse_option(option, &valid)) {
            (OPT_GO, Ok(OptionRequest::Info { go, name, requests })) => {
                assert!(go);
                assert_eq!(name, "disk");
                assert_eq!(requests, [INFO_NAME, INFO_BLOCK_SIZE]);
            }
            (OPT_SET_META_CONTEXT, Ok(OptionRequest::MetaContext { set, queries, .. })) => {
                assert!(set);
                assert!(match_meta_contexts(&queries, false));
            }
            (_, Ok(_)) => {}
            (o, Err(e)) => panic!("valid option {o} refused: {e:?}"),
        }
        let data = if case % 7 == 0 {
            (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect()
        } else {
            mutate(&mut rng, valid.clone())
        };
        match parse_option(option, &data) {
            Ok(OptionRequest::Unsupported(o)) => assert_eq!(o, option),
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.reply, REP_ERR_INVALID, "{e:?}");
                assert!(!e.message.is_empty());
            }
        }
        // A strict prefix of a self-delimiting option is always malformed.
        if matches!(
            option,
            OPT_INFO | OPT_GO | OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT
        ) {
            let cut = rng.gen_range(0..valid.len());
            assert!(
                parse_option(option, &valid[..cut]).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
        let mut head = [0u8; OPTION_HEADER_LEN];
        rng.fill(&mut head[..]);
        if case % 2 == 0 {
            head[..8].copy_from_slice(&IHAVEOPT.to_be_bytes());
            assert!(parse_option_header(&head).is_ok());
        } else {
            let _ = parse_option_header(&head);
        }
        let flags: u32 = if case % 2 == 0 {
            rng.gen_range(0..4)
        } else {
            rng.gen()
        };
        match parse_client_flags(flags.to_be_bytes()) {
            Ok(no_zeroes) => {
                assert_eq!(flags & FLAG_C_FIXED_NEWSTYLE, FLAG_C_FIXED_NEWSTYLE);
                assert_eq!(no_zeroes, flags & FLAG_C_NO_ZEROES != 0);
            }
            Err(_) => assert!(flags & !3 != 0 || flags & 1 == 0),
        }
    }
}

#[test]
fn requests_are_validated_before_being_trusted() {
    let mut rng = StdRng::seed_from_u64(2);
    let kinds = [
        CMD_READ,
        CMD_WRITE,
        CMD_DISC,
        CMD_FLUSH,
        CMD_TRIM,
        CMD_WRITE_ZEROES,
        CMD_BLOCK_STATUS,
    ];
    for case in 0..CASES {
        let st = ExportState {
            size: rng.gen_range(0..1u64 << 20) * 512,
            min_block: [1, 512, 4096][rng.gen_range(0..3)],
            read_only: rng.gen(),
            structured: rng.gen(),
            base_allocation: rng.gen(),
        };
        let valid = proto::Request {
            flags: if rng.gen() { CMD_FLAG_FUA } else { 0 },
            kind: kinds[rng.gen_range(0..kinds.len())],
            cookie: rng.gen(),
            offset: rng.gen_range(0..64) * 4096,
            len: rng.gen_range(0..64) * 4096,
        };
        let bytes = if case % 5 == 0 {
            let mut b = [0u8; REQUEST_LEN];
            rng.fill(&mut b[..]);
            b.to_vec()
        } else {
            mutate(&mut rng, encode_request(&valid).to_vec())
        };
        let Ok(head) = <[u8; REQUEST_LEN]>::try_from(bytes.as_slice()) else {
            continue;
        };
        let Ok(req) = parse_request(&head) else {
            assert_ne!(head[..4], REQUEST_MAGIC.to_be_bytes());
            continue;
        };
        assert_eq!(encode_request(&req), head, "encode(parse(x)) == x");
        match check_request(&req, &st) {
            Err(Fatal::AbsurdWrite(len)) => {
                assert_eq!(req.kind, CMD_WRITE);
                assert!(len > MAX_DISCARDED_PAYLOAD);
            }
            Err(other) => panic!("unexpected fatal {other}"),
            Ok(Err(rej)) => {
                let expected_discard = if req.kind == CMD_WRITE { req.len } else { 0 };
                assert_eq!(
                    rej.discard, expected_discard,
                    "a refused write's payload is skipped"
                );
                assert!([EINVAL, ENOSPC, EPERM].contains(&rej.errno), "{rej:?}");
                if rej.errno == ENOSPC {
                    assert!(req.kind == CMD_WRITE || req.kind == CMD_WRITE_ZEROES);
                }
            }
            Ok(Ok(cmd)) => {
                let (offset, len, writes) = match cmd {
                    Command::Disc | Command::Flush => continue,
                    Command::Read { offset, len } => (offset, len, false),
                    Command::BlockStatus { offset, len, .. } => {
                        assert!(st.structured && st.base_allocation && len > 0);
                        (offset, len, false)
                    }
                    Command::Write { offset, len, .. } => (offset, len, true),
                    Command::Trim { offset, len, .. }
                    | Command::WriteZeroes { offset, len, .. } => (offset, len, true),
                };
                assert!(offset
                    .checked_add(u64::from(len))
                    .is_some_and(|e| e <= st.size));
                assert_eq!(offset % u64::from(st.min_block), 0);
                assert_eq!(len % st.min_block, 0);
                assert!(!(writes && st.read_only));
                if req.kind == CMD_READ || req.kind == CMD_WRITE {
                    assert!(len <= MAX_PAYLOAD);
                }
            }
        }
    }
}

#[test]
fn replies_are_well_formed() {
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..CASES {
        let len: u32 = rng.gen_range(1..1 << 20);
        let map: Vec<Allocation> = (0..rng.gen_range(0..20))
            .map(|_| Allocation {
                len: rng.gen_range(0..1 << 18),
                hole: rng.gen(),
            })
            .collect();
        let req_one = rng.gen();
        let b = block_status_chunk(7, &map, len, req_one);
        let payload_len = u32::from_be_bytes(b[16..20].try_into().unwrap()) as usize;
        assert_eq!(b.len(), 20 + payload_len);
        let extents: Vec<(u32, u32)> = b[24..]
            .chunks(8)
            .map(|c| {
                let n = u32::from_be_bytes(c[..4].try_into().unwrap());
                let f = u32::from_be_bytes(c[4..].try_into().unwrap());
                (n, f)
            })
            .collect();
        assert!(!extents.is_empty());
        if req_one {
            assert_eq!(extents.len(), 1);
        }
        assert!(extents.iter().all(|(n, f)| *n > 0 && (*f == 0 || *f == 3)));
        assert!(extents.iter().map(|(n, _)| u64::from(*n)).sum::<u64>() <= u64::from(len));

        let msg: String = (0..rng.gen_range(0..6000))
            .map(|_| rng.gen::<char>())
            .collect();
        let e = error_chunk(1, EIO, &msg);
        let payload_len = u32::from_be_bytes(e[16..20].try_into().unwrap()) as usize;
        assert_eq!(e.len(), 20 + payload_len);
        let mlen = u16::from_be_bytes(e[24..26].try_into().unwrap()) as usize;
        assert_eq!(mlen + 6, payload_len);
        assert!(std::str::from_utf8(&e[26..]).is_ok());
        assert!(mlen <= MAX_STRING);
    }
}
