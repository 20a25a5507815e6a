//! The scrub worker of a single-node `cairn serve`: a chunk that rots on disk is found without
//! any client reading it, and since a single node has no replica to repair it from, the
//! objects reaching it are listed by `cairn workers`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cairn_chunkserver::{ChunkConfig, ChunkStore};
use cairn_core::ChunkId;
use common::*;

/// Kills the site when the test ends, passed or not (a panicking test leaves no server).
struct Site(std::process::Child);

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stored_ids(dir: &std::path::Path) -> BTreeSet<ChunkId> {
    let store = ChunkStore::open(&dir.join("chunks"), ChunkConfig::default()).unwrap();
    store.list_ids(None, 10_000).unwrap().into_iter().collect()
}

#[tokio::test]
async fn scrub_finds_a_corrupt_chunk_no_client_read_and_lists_the_objects_reaching_it() {
    let dir = tempfile::tempdir().unwrap();
    let (child, endpoint) = start(dir.path());
    let site = Site(child);
    let client = s3(&endpoint);
    client
        .create_bucket()
        .bucket("photos")
        .send()
        .await
        .unwrap();
    let body: Vec<u8> = (0..600_000u64).map(|i| (i * 7919 % 251) as u8).collect();
    client
        .put_object()
        .bucket("photos")
        .key("rotten.jpg")
        .body(body.into())
        .send()
        .await
        .unwrap();
    drop(site);

    // One chunk of the object rots on disk while the site is down.
    let ids = stored_ids(dir.path());
    assert!(!ids.is_empty());
    let victim = *ids.iter().next().unwrap();
    {
        let store = ChunkStore::open(&dir.path().join("chunks"), ChunkConfig::default()).unwrap();
        store
            .corrupt_for_test(&victim, b"not what was stored")
            .unwrap();
    }

    let (child, endpoint) = start_with(dir.path(), &["--scrub-interval", "1"]);
    let _site = Site(child);
    let s3 = s3(&endpoint);
    s3.put_object()
        .bucket("photos")
        .key("fine.jpg")
        .body(vec![3u8; 200_000].into())
        .send()
        .await
        .unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = loop {
        let (ok, out, err) = cairn(&["workers", "--data-dir", data_dir]);
        assert!(ok, "{err}");
        if out.contains("corrupt_found 1") || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(out.contains("scrub ("), "{out}");
    assert!(out.contains("corrupt_found 1"), "{out}");
    assert!(out.contains(&format!("corrupt chunk {victim}")), "{out}");
    assert!(out.contains("affected photos/rotten.jpg (version"), "{out}");
    assert!(!out.contains("fine.jpg"), "{out}");
    assert!(out.contains("restore them from a backup"), "{out}");
}
