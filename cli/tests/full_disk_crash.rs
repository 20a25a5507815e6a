//! A full disk and kill -9: `cairn serve` on a small file system takes writes until the disk
//! is full (no threshold: RocksDB itself runs out of space), refuses the next ones with S3's
//! 507, and is then killed with SIGKILL while writers are still sending. Restarted on the disk
//! filled to the last byte, it serves every acknowledged object intact, and deletes work.

mod common;
#[allow(dead_code)] // the helpers this test does not use
#[path = "../../tests/src/smallfs.rs"]
mod smallfs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use common::{s3, start_with};
use tokio::sync::Mutex;

const OBJ: usize = 1 << 20;

/// Object `i`'s bytes: incompressible and its own.
fn content(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..OBJ / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_killed_mid_write_keeps_every_acknowledged_object() {
    let fs = smallfs::SmallFs::new(160);
    eprintln!("file system: {}", fs.kind);
    let dir = fs.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let flags = ["--disk-min-free-percent", "0", "--disk-check-interval", "1"];
    let (mut child, endpoint) = start_with(&dir, &flags);
    let client = s3(&endpoint);
    client.create_bucket().bucket("fill").send().await.unwrap();

    // Writers go on until the kill; 507s (the disk is full) do not stop them.
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..3u64 {
        let (client, acked, refused) = (client.clone(), acked.clone(), refused.clone());
        writers.push(tokio::spawn(async move {
            for n in 0u64.. {
                let i = n * 3 + w;
                let r = client
                    .put_object()
                    .bucket("fill")
                    .key(format!("o{i}"))
                    .body(ByteStream::from(content(i)))
                    .send()
                    .await;
                match r {
                    Ok(_) => acked.lock().await.push(i),
                    Err(e) => {
                        let status = e.raw_response().map(|r| r.status().as_u16());
                        if status != Some(507) {
                            return; // the process is gone
                        }
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    while refused.load(std::sync::atomic::Ordering::Relaxed) < 6 {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("160 MiB never filled up in 240 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().await.clone();
    assert!(acked.len() > 60, "only {} objects fit", acked.len());
    eprintln!("{} objects acknowledged before the kill", acked.len());

    // Whatever room the stores' background work left, something else takes: the disk is
    // full to the last block when the site starts again (opening a store after a crash
    // writes, so the start must make room from its reserve).
    smallfs::fill_to_the_end(&dir.join("filler"));

    // Restarted on the full disk: every acknowledged object reads back intact.
    let (mut child, endpoint) = start_with(&dir, &flags);
    let client = s3(&endpoint);
    for &i in &acked {
        let got = client
            .get_object()
            .bucket("fill")
            .key(format!("o{i}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("o{i} after the restart: {e:?}"));
        let body = got.body.collect().await.unwrap().into_bytes();
        assert!(body[..] == content(i)[..], "o{i} differs after the restart");
    }
    // Deletes work on the full disk.
    for &i in acked.iter().take(10) {
        client
            .delete_object()
            .bucket("fill")
            .key(format!("o{i}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("delete of o{i} on the full disk: {e:?}"));
    }
    child.kill().ok();
    child.wait().ok();
}
