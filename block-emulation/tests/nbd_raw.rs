//! The NBD server fed raw bytes: malformed handshakes, refused options, requests out of range,
//! oversized or unknown, structured replies, concurrency, shutdown durability, and a bounded
//! random stream of mutated messages. Each test is bounded by a timeout and waits for
//! conditions (replies, closes), never for fixed sleeps.

mod nbd_common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn_block::nbd::proto::{self, *};
use cairn_block::NbdConfig;
use nbd_common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio::sync::Barrier;
use tokio::time::timeout;

const MIB: usize = 1 << 20;

fn exports() -> (MemExports, Arc<MemDevice>) {
    let dev = Arc::new(MemDevice::new(4 * MIB, 512, false));
    let ro = Arc::new(MemDevice::new(MIB, 4096, true));
    let e = MemExports::default()
        .with("disk", "a test disk", dev.clone())
        .with("ro", "a read-only disk", ro);
    (e, dev)
}

async fn server() -> (cairn_block::NbdHandle, Arc<MemDevice>) {
    let (e, dev) = exports();
    (start(e, NbdConfig::default()).await, dev)
}

#[tokio::test]
async fn bad_magic_and_bad_flags_close_the_connection() {
    timeout(TEST_TIMEOUT, async {
        let (srv, _) = server().await;
        let mut raw = Raw::handshake(srv.local_addr()).await;
        raw.s.write_all(b"NOTANOPTION_____").await.unwrap();
        assert!(
            raw.closed().await,
            "a bad option magic must close the connection"
        );

        let mut raw = Raw::connect(srv.local_addr()).await;
        raw.s
            .write_all(&0x8000_0001u32.to_be_bytes())
            .await
            .unwrap();
        assert!(
            raw.closed().await,
            "unknown client flags must close the connection"
        );

        let mut raw = Raw::connect(srv.local_addr()).await;
        raw.s.write_all(&0u32.to_be_bytes()).await.unwrap();
        assert!(
            raw.closed().await,
            "a client without fixed newstyle is refused"
        );
        assert_eq!(srv.stats().handshake_failures.load(Ordering::Relaxed), 3);
        srv.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn options_are_refused_with_the_right_errors() {
    timeout(TEST_TIMEOUT, async {
        let (srv, _) = server().await;
        let mut raw = Raw::handshake(srv.local_addr()).await;
        // Oversized: read, dropped, refused; the connection goes on.
        raw.option(OPT_GO, &vec![7u8; 100 << 10]).await;
        assert_eq!(raw.opt_replies().await[0].kind, REP_ERR_TOO_BIG);
        raw.option(4242, b"whatever").await;
        assert_eq!(raw.opt_replies().await[0].kind, REP_ERR_UNSUP);
        raw.option(OPT_STARTTLS, &[]).await;
        assert_eq!(raw.opt_replies().await[0].kind, REP_ERR_UNSUP);
        raw.option(OPT_LIST, b"x").await;
        assert_eq!(raw.opt_replies().await[0].kind, REP_ERR_INVALID);
        raw.option(OPT_GO, &[0, 0, 0, 9, b'd']).await;
        assert_eq!(raw.opt_replies().await[0].kind, REP_ERR_INVALID);
        raw.option(OPT_GO, &Raw::go_data("nope")).await;
        assert_eq!(raw.opt_replies().await[0].kind, REP_ERR_UNKNOWN);
        // No default export is configured: the empty name is unknown.
        raw.option(OPT_INFO, &Raw::go_data("")).await;
        assert_eq!(raw.opt_replies().await[0].kind, REP_ERR_UNKNOWN);
        // Metadata contexts need structured replies first.
        raw.option(OPT_SET_META_CONTEXT, &Raw::meta_data("disk"))
            .await;
        assert_eq!(raw.opt_replies().await[0].kind, REP_ERR_INVALID);
        // Still usable: list the exports.
        raw.option(OPT_LIST, &[]).await;
        let list = raw.opt_replies().await;
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].kind, REP_SERVER);
        assert_eq!(&list[0].data[4..8], b"disk");
        assert_eq!(&list[0].data[8..], b"a test disk");
        raw.option(OPT_ABORT, &[]).await;
        assert_eq!(raw.opt_replies().await[0].kind, REP_ACK);
        assert!(raw.closed().await);

        // EXPORT_NAME of an unknown export cannot be answered: the connection closes.
        let mut raw = Raw::handshake(srv.local_addr()).await;
        raw.option(OPT_EXPORT_NAME, b"nope").await;
        assert!(raw.closed().await);
        srv.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn too_many_options_close_the_connection() {
    timeout(TEST_TIMEOUT, async {
        let (e, _) = exports();
        let config = NbdConfig {
            max_options: 5,
            ..NbdConfig::default()
        };
        let srv = start(e, config).await;
        let mut raw = Raw::handshake(srv.local_addr()).await;
        for _ in 0..5 {
            raw.option(OPT_STRUCTURED_REPLY, &[]).await;
            assert_eq!(raw.opt_replies().await[0].kind, REP_ACK);
        }
        raw.option(OPT_STRUCTURED_REPLY, &[]).await;
        assert_eq!(raw.opt_replies().await[0].kind, REP_ERR_POLICY);
        assert!(raw.closed().await);
        srv.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn export_name_and_default_export() {
    timeout(TEST_TIMEOUT, async {
        let (e, _) = exports();
        let config = NbdConfig {
            default_export: Some("disk".into()),
            ..NbdConfig::default()
        };
        let srv = start(e, config).await;
        let mut raw = Raw::handshake(srv.local_addr()).await;
        raw.option(OPT_EXPORT_NAME, b"").await;
        let b = raw.bytes(10).await;
        assert_eq!(
            u64::from_be_bytes(b[..8].try_into().unwrap()),
            4 * MIB as u64
        );
        let flags = u16::from_be_bytes(b[8..].try_into().unwrap());
        assert_eq!(flags, transmission_flags(false));
        raw.request(CMD_DISC, 0, 1, 0, 0, &[]).await;
        assert!(raw.closed().await);
        srv.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn bad_requests_get_errors_and_the_connection_goes_on() {
    timeout(TEST_TIMEOUT, async {
        let (srv, dev) = server().await;
        let size = 4 * MIB as u64;
        let mut raw = Raw::open(srv.local_addr(), "disk", false).await;
        let expect = |cookie, error| TxReply::Simple { error, cookie };
        raw.request(CMD_READ, 0, 1, size - 512, 1024, &[]).await;
        assert_eq!(raw.simple().await.unwrap(), expect(1, EINVAL));
        raw.request(CMD_WRITE, 0, 2, size, 512, &[1u8; 512]).await;
        assert_eq!(raw.simple().await.unwrap(), expect(2, ENOSPC));
        raw.request(CMD_WRITE_ZEROES, 0, 3, u64::MAX - 511, 512, &[])
            .await;
        assert_eq!(raw.simple().await.unwrap(), expect(3, ENOSPC));
        raw.request(CMD_READ, 0, 4, 0, 64 << 20, &[]).await;
        assert_eq!(raw.simple().await.unwrap(), expect(4, EINVAL));
        // An oversized write's payload is read and dropped.
        let big = vec![9u8; (32 << 20) + 512];
        raw.request(CMD_WRITE, 0, 5, 0, big.len() as u32, &big)
            .await;
        assert_eq!(raw.simple().await.unwrap(), expect(5, EINVAL));
        raw.request(99, 0, 6, 0, 0, &[]).await;
        assert_eq!(raw.simple().await.unwrap(), expect(6, EINVAL));
        raw.request(CMD_READ, 0, 7, 100, 512, &[]).await;
        assert_eq!(raw.simple().await.unwrap(), expect(7, EINVAL));
        raw.request(CMD_WRITE, CMD_FLAG_REQ_ONE, 8, 0, 512, &[1u8; 512])
            .await;
        assert_eq!(raw.simple().await.unwrap(), expect(8, EINVAL));
        // Block status without structured replies.
        raw.request(CMD_BLOCK_STATUS, 0, 9, 0, 512, &[]).await;
        assert_eq!(raw.simple().await.unwrap(), expect(9, EINVAL));
        // None of those wrote anything; a good write and read still work.
        assert!(dev.data().iter().all(|b| *b == 0));
        raw.request(CMD_WRITE, CMD_FLAG_FUA, 10, 512, 512, &[3u8; 512])
            .await;
        assert_eq!(raw.simple().await.unwrap(), expect(10, 0));
        raw.request(CMD_READ, 0, 11, 512, 512, &[]).await;
        assert_eq!(raw.simple().await.unwrap(), expect(11, 0));
        assert_eq!(raw.bytes(512).await, vec![3u8; 512]);
        assert_eq!(
            dev.durable()[512..1024],
            [3u8; 512],
            "FUA makes the write durable"
        );
        assert_eq!(srv.stats().rejected.load(Ordering::Relaxed), 9);
        // A write too large to even discard drops the connection.
        raw.request(CMD_WRITE, 0, 12, 0, u32::MAX, &[]).await;
        assert!(raw.closed().await);
        // So does a bad request magic.
        let mut raw = Raw::open(srv.local_addr(), "disk", false).await;
        raw.s.write_all(&[0u8; 28]).await.unwrap();
        assert!(raw.closed().await);
        srv.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn read_only_exports_refuse_writes() {
    timeout(TEST_TIMEOUT, async {
        let (srv, _) = server().await;
        let mut raw = Raw::open(srv.local_addr(), "ro", false).await;
        raw.request(CMD_WRITE, 0, 1, 0, 4096, &[1u8; 4096]).await;
        assert_eq!(
            raw.simple().await.unwrap(),
            TxReply::Simple {
                error: EPERM,
                cookie: 1
            }
        );
        raw.request(CMD_TRIM, 0, 2, 0, 4096, &[]).await;
        assert_eq!(
            raw.simple().await.unwrap(),
            TxReply::Simple {
                error: EPERM,
                cookie: 2
            }
        );
        // Misaligned to the 4 KiB block size.
        raw.request(CMD_READ, 0, 3, 512, 512, &[]).await;
        assert_eq!(
            raw.simple().await.unwrap(),
            TxReply::Simple {
                error: EINVAL,
                cookie: 3
            }
        );
        raw.request(CMD_FLUSH, 0, 4, 0, 0, &[]).await;
        assert_eq!(
            raw.simple().await.unwrap(),
            TxReply::Simple {
                error: 0,
                cookie: 4
            }
        );
        srv.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn structured_replies_for_reads_errors_and_block_status() {
    timeout(TEST_TIMEOUT, async {
        let (srv, dev) = server().await;
        dev.fill(8192, &[7u8; 4096]);
        let mut raw = Raw::open(srv.local_addr(), "disk", true).await;
        raw.request(CMD_READ, 0, 1, 8192, 4096, &[]).await;
        let TxReply::Chunk {
            flags,
            kind,
            cookie,
            payload,
        } = raw.chunk().await.unwrap()
        else {
            panic!("expected a chunk");
        };
        assert_eq!(
            (flags, kind, cookie),
            (REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 1)
        );
        assert_eq!(u64::from_be_bytes(payload[..8].try_into().unwrap()), 8192);
        assert_eq!(payload[8..], [7u8; 4096]);

        raw.request(CMD_READ, 0, 2, 4 * MIB as u64, 512, &[]).await;
        let TxReply::Chunk { kind, payload, .. } = raw.chunk().await.unwrap() else {
            panic!("expected a chunk");
        };
        assert_eq!(kind, REPLY_TYPE_ERROR);
        assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), EINVAL);

        raw.request(CMD_BLOCK_STATUS, 0, 3, 0, 16384, &[]).await;
        let TxReply::Chunk { kind, payload, .. } = raw.chunk().await.unwrap() else {
            panic!("expected a chunk");
        };
        assert_eq!(kind, REPLY_TYPE_BLOCK_STATUS);
        let words: Vec<u32> = payload
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect();
        let hz = STATE_HOLE | STATE_ZERO;
        assert_eq!(words, [BASE_ALLOCATION_ID, 8192, hz, 4096, 0, 4096, hz]);

        raw.request(
            CMD_BLOCK_STATUS,
            CMD_FLAG_REQ_ONE,
            4,
            8192,
            16384 - 8192,
            &[],
        )
        .await;
        let TxReply::Chunk { payload, .. } = raw.chunk().await.unwrap() else {
            panic!("expected a chunk");
        };
        assert_eq!(payload.len(), 12, "REQ_ONE gives one extent");
        assert_eq!(payload[4..], [0, 0, 16, 0, 0, 0, 0, 0]);

        raw.request(CMD_TRIM, 0, 5, 8192, 4096, &[]).await;
        let TxReply::Chunk {
            flags,
            kind,
            cookie,
            ..
        } = raw.chunk().await.unwrap()
        else {
            panic!("expected a chunk");
        };
        assert_eq!((flags, kind, cookie), (REPLY_FLAG_DONE, REPLY_TYPE_NONE, 5));
        assert!(dev.data()[8192..12288].iter().all(|b| *b == 0));
        srv.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_run_concurrently() {
    timeout(TEST_TIMEOUT, async {
        // Every read waits until 32 reads are inside the device at once: served one at a time
        // they would never finish.
        let mut dev = MemDevice::new(MIB, 512, false);
        dev.read_barrier = Some(Arc::new(Barrier::new(32)));
        let e = MemExports::default().with("disk", "", Arc::new(dev));
        let srv = start(e, NbdConfig::default()).await;
        let mut raw = Raw::open(srv.local_addr(), "disk", false).await;
        for i in 0..32u64 {
            raw.request(CMD_READ, 0, i, i * 4096, 4096, &[]).await;
        }
        let mut seen = Vec::new();
        for _ in 0..32 {
            let TxReply::Simple { error, cookie } = raw.simple().await.unwrap() else {
                unreachable!()
            };
            assert_eq!(error, 0);
            raw.bytes(4096).await;
            seen.push(cookie);
        }
        seen.sort();
        assert_eq!(seen, (0..32).collect::<Vec<_>>());
        assert_eq!(srv.stats().read.ops.load(Ordering::Relaxed), 32);
        assert_eq!(srv.stats().read.bytes.load(Ordering::Relaxed), 32 * 4096);
        srv.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn shutdown_flushes_acknowledged_writes() {
    timeout(TEST_TIMEOUT, async {
        let (srv, dev) = server().await;
        let mut raw = Raw::open(srv.local_addr(), "disk", false).await;
        raw.request(CMD_WRITE, 0, 1, 0, 4096, &[5u8; 4096]).await;
        assert_eq!(
            raw.simple().await.unwrap(),
            TxReply::Simple {
                error: 0,
                cookie: 1
            }
        );
        assert!(dev.durable().iter().all(|b| *b == 0), "not flushed yet");
        // The client stays connected; the server stops.
        srv.shutdown().await.unwrap();
        assert_eq!(dev.durable()[..4096], [5u8; 4096]);
        assert!(raw.closed().await);
    })
    .await
    .expect("test timed out");
}

/// Valid handshakes and requests, mutated at random (seeded): the server must never panic,
/// and must still serve a good client afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_streams_do_not_break_the_server() {
    static PANICS: AtomicU64 = AtomicU64::new(0);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        hook(info);
    }));
    timeout(TEST_TIMEOUT, async {
        let (srv, _) = server().await;
        let addr = srv.local_addr();
        let mut valid = Vec::new();
        valid.extend_from_slice(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes());
        for (opt, data) in [
            (OPT_STRUCTURED_REPLY, Vec::new()),
            (OPT_LIST, Vec::new()),
            (OPT_SET_META_CONTEXT, Raw::meta_data("disk")),
            (OPT_GO, Raw::go_data("disk")),
        ] {
            valid.extend_from_slice(&IHAVEOPT.to_be_bytes());
            valid.extend_from_slice(&opt.to_be_bytes());
            valid.extend_from_slice(&(data.len() as u32).to_be_bytes());
            valid.extend_from_slice(&data);
        }
        for (kind, len) in [
            (CMD_WRITE, 512u32),
            (CMD_READ, 512),
            (CMD_BLOCK_STATUS, 4096),
            (CMD_TRIM, 512),
            (CMD_FLUSH, 0),
        ] {
            let req = proto::Request {
                flags: 0,
                kind,
                cookie: 1,
                offset: 0,
                len,
            };
            valid.extend_from_slice(&encode_request(&req));
            if kind == CMD_WRITE {
                valid.extend_from_slice(&[1u8; 512]);
            }
        }
        let mut rng = StdRng::seed_from_u64(0x006e_6264);
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..300 {
            let mut bytes = valid.clone();
            match rng.gen_range(0..3) {
                0 => bytes.truncate(rng.gen_range(0..valid.len())),
                1 => {
                    for _ in 0..rng.gen_range(1..8) {
                        let i = rng.gen_range(0..bytes.len());
                        bytes[i] ^= 1 << rng.gen_range(0..8);
                    }
                }
                _ => {
                    let i = rng.gen_range(0..bytes.len());
                    for b in &mut bytes[i..] {
                        *b = rng.gen();
                    }
                }
            }
            clients.spawn(async move {
                let mut raw = Raw::connect(addr).await;
                let _ = raw.s.write_all(&bytes).await;
                let _ = raw.s.shutdown().await;
                // The server must end the connection once the input runs out.
                let mut sink = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut raw.s, &mut sink).await;
            });
            if clients.len() >= 16 {
                clients.join_next().await;
            }
        }
        while clients.join_next().await.is_some() {}
        // Some streams got as far as commands, valid or refused.
        let stats = srv.stats();
        let served =
            stats.read.ops.load(Ordering::Relaxed) + stats.write.ops.load(Ordering::Relaxed);
        assert!(served > 0 && stats.rejected.load(Ordering::Relaxed) > 0);
        assert!(stats.handshake_failures.load(Ordering::Relaxed) > 0);
        assert_eq!(stats.connections.load(Ordering::Relaxed), 300);
        let mut raw = Raw::open(addr, "disk", true).await;
        raw.request(CMD_FLUSH, 0, 9, 0, 0, &[]).await;
        assert!(matches!(
            raw.chunk().await.unwrap(),
            TxReply::Chunk { cookie: 9, .. }
        ));
        srv.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
    assert_eq!(
        PANICS.load(Ordering::Relaxed),
        0,
        "the server panicked on some input"
    );
}
