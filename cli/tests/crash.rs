//! Durability: a `cairn serve` process killed with SIGKILL loses no acknowledged write.

mod common;

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use common::{s3, start};
use tokio::sync::Mutex;

fn content(i: usize) -> Vec<u8> {
    // Sizes from inline (tiny) to multi-chunk; content unique per object.
    let len = [100usize, 5000, 200_000, 1_500_000][i % 4];
    (0..len)
        .map(|j| ((i * 7919 + j * 31) % 251) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, endpoint) = start(dir.path());
    let client = s3(&endpoint);
    client.create_bucket().bucket("crash").send().await.unwrap();

    // Writers run until the kill; every acknowledged key is recorded.
    let acked = Arc::new(Mutex::new(Vec::<usize>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, acked) = (client.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let i = n * 4 + w;
                let r = client
                    .put_object()
                    .bucket("crash")
                    .key(format!("k{i}"))
                    .body(ByteStream::from(content(i)))
                    .send()
                    .await;
                match r {
                    Ok(_) => acked.lock().await.push(i),
                    Err(_) => return,
                }
            }
        }));
    }
    // Let a good number of writes get acknowledged, then kill without warning.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if acked.lock().await.len() >= 40 {
            break;
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            panic!("fewer than 40 PUTs were acknowledged in 120 s");
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().await.clone();
    assert!(acked.len() >= 40);

    let (mut child, endpoint) = start(dir.path());
    let client = s3(&endpoint);
    for i in &acked {
        let got = client
            .get_object()
            .bucket("crash")
            .key(format!("k{i}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("acknowledged k{i} lost: {e:?}"));
        let body = got.body.collect().await.unwrap().into_bytes();
        assert!(body == content(*i), "k{i} differs after the crash");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
