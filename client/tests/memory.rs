//! A large PUT and GET stream through bounded memory: the body is never buffered whole.
//! (Its own test binary, so the process's peak memory belongs to this test alone.)

use bytes::Bytes;
use cairn_client::*;
use futures::StreamExt;
use md5::Digest;
use rand::{RngCore, SeedableRng};

const TOTAL: u64 = 1 << 30;
const FRAME: usize = 256 << 10;

/// Peak resident set size of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_put_and_get_stay_within_a_small_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let c = Client::open_dir(dir.path()).unwrap();
    c.create_bucket("big", "o").await.unwrap();
    let before = peak_rss();

    // Incompressible frames generated as they are sent, like a network body.
    let frames = futures::stream::unfold(
        (rand::rngs::StdRng::seed_from_u64(42), 0u64),
        |(mut rng, sent)| async move {
            if sent >= TOTAL {
                return None;
            }
            let mut buf = vec![0u8; FRAME];
            rng.fill_bytes(&mut buf);
            Some((Ok(Bytes::from(buf)), (rng, sent + FRAME as u64)))
        },
    );
    let opts = PutOptions {
        content_length: Some(TOTAL),
        ..Default::default()
    };
    let r = c
        .put_object("big", "one-gib", Box::pin(frames), opts)
        .await
        .unwrap();
    assert_eq!(r.manifest.size, TOTAL);

    let g = c
        .get_object("big", "one-gib", &VersionSel::Current, None)
        .await
        .unwrap();
    let mut body = g.body;
    let mut md5 = md5::Md5::new();
    let mut n = 0u64;
    while let Some(b) = body.next().await {
        let b = b.unwrap();
        n += b.len() as u64;
        md5.update(&b);
    }
    assert_eq!(n, TOTAL);
    assert_eq!(hex::encode(md5.finalize()), r.manifest.etag);

    let grew = peak_rss().saturating_sub(before);
    assert!(
        grew < 256 << 20,
        "peak memory grew by {} MiB for a 1 GiB object",
        grew >> 20
    );
}
