//! Bytes after dedup per bucket on a multi-node site (3 nodes, RF 3): every chunk copy counts
//! for the bucket whose write stored the chunk first, on every node, so the site figure is
//! three times the per-copy one; a second bucket writing the same bytes is charged nothing;
//! and a copy repair pushes to a node that missed a write keeps its owner.

use std::time::Duration;

use cairn_chunkserver::WorkerKind;
use cairn_tests::multi::MultiSite;
use cairn_tests::random_bytes;
use cairn_tests::scenario::{bounded, eventually, put, MANUAL_WORKERS};

const BOUND: Duration = Duration::from_secs(240);

/// Runs repair passes on every running chunk node.
async fn repair_all(site: &MultiSite) {
    for slot in &site.slots {
        if let Some(m) = slot.node.as_ref().and_then(|n| n.maintenance.clone()) {
            let mut tries = 0;
            loop {
                match m.run_pass(WorkerKind::Repair).await {
                    Ok(_) => break,
                    Err(e) if e.to_string().contains("already running") && tries < 600 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("repair pass: {e}"),
                }
            }
        }
    }
}

/// Node `k`'s own counters of `bucket`: (chunks, stored bytes).
fn on_node(site: &MultiSite, k: usize, bucket: &str) -> (u64, u64) {
    let store = site.node(k).chunks.clone().expect("a chunk node");
    store.owner_usage(cairn_core::owner_tag(bucket)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_copy_counts_for_the_first_writer_and_repair_keeps_the_owner() {
    bounded(BOUND, async {
        let mut site = MultiSite::start(3, 3, 1, MANUAL_WORKERS).await;
        let s3 = site.s3(0);
        for b in ["acct", "other"] {
            s3.create_bucket().bucket(b).send().await.unwrap();
        }
        // Random bytes do not compress: a copy stores each byte once.
        let a = random_bytes(2 << 20, 31);
        put(&s3, "acct", "a", a.clone()).await;
        // A write returns at the write quorum; the last copy lands just after.
        eventually("every node holds acct's chunks", BOUND, || {
            (0..3).all(|k| on_node(&site, k, "acct").1 == a.len() as u64)
        })
        .await;
        let per_node = on_node(&site, 0, "acct");
        assert!(per_node.0 > 1);
        for k in 0..3 {
            let u = site.node(k).client.bucket_stored("acct").await.unwrap();
            let u = u.expect("a replicated backend counts them");
            assert_eq!(u.copies, 3, "node {k}");
            assert_eq!(u.nodes_unanswered, 0);
            assert_eq!(u.stored_bytes, 3 * a.len() as u64, "node {k}");
            assert_eq!(u.stored_bytes_per_copy(), a.len() as u64);
            assert_eq!(u.chunks, 3 * per_node.0);
        }

        // The same bytes in another bucket, through another node: nothing new is charged.
        put(&site.s3(1), "other", "a", a.clone()).await;
        let other = site.node(2).client.bucket_stored("other").await.unwrap();
        assert_eq!(other.unwrap().stored_bytes, 0);
        assert_eq!(on_node(&site, 1, "acct"), per_node);

        // A write while node 2 is down reaches two copies; repair pushes the third, and that
        // copy counts for the bucket too.
        site.stop_node(2).await;
        let b = random_bytes(1 << 20, 32);
        put(&s3, "acct", "b", b.clone()).await;
        site.start_node(2).await;
        let total = (a.len() + b.len()) as u64;
        eventually("the live nodes hold acct's new chunks", BOUND, || {
            (0..2).all(|k| on_node(&site, k, "acct").1 == total)
        })
        .await;
        assert_eq!(
            on_node(&site, 2, "acct").1,
            a.len() as u64,
            "node 2 missed b"
        );
        repair_all(&site).await;
        assert_eq!(on_node(&site, 2, "acct"), on_node(&site, 0, "acct"));
        let u = site.node(2).client.bucket_stored("acct").await.unwrap();
        let u = u.unwrap();
        assert_eq!(
            (u.stored_bytes, u.stored_bytes_per_copy()),
            (3 * total, total)
        );
        let metrics = site.metrics(1).await;
        let line = format!("cairn_bucket_stored_bytes{{bucket=\"acct\"}} {}", 3 * total);
        assert!(metrics.contains(&line), "{line} not in /metrics");
        site.shutdown().await;
    })
    .await;
}
