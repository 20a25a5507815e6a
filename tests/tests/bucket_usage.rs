//! Per-bucket usage on a multi-node site (4 nodes, RF 3: one node holds none of the bucket's
//! metadata): writers on every node at once, then every replica's counters, every node's
//! answer (through its replicated backend) and `/metrics` equal what the listings count; a
//! quota set through one node refuses a write through another.

use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use cairn_client::{BucketQuota, BucketUsage};
use cairn_tests::multi::MultiSite;
use cairn_tests::scenario::{bounded, eventually, MANUAL_WORKERS};

const BOUND: Duration = Duration::from_secs(180);

/// What ListObjectVersions shows (fewer than 1000 entries: one page).
async fn listed(s3: &aws_sdk_s3::Client, bucket: &str) -> BucketUsage {
    let page = s3
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    assert_ne!(page.is_truncated(), Some(true));
    let mut u = BucketUsage {
        delete_markers: page.delete_markers().len() as u64,
        ..BucketUsage::default()
    };
    for v in page.versions() {
        let size = v.size().unwrap_or(0) as u64;
        u.versions += 1;
        u.logical_bytes += size;
        if v.is_latest() == Some(true) {
            u.objects += 1;
            u.current_bytes += size;
        }
    }
    u
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_is_exact_on_every_node_after_concurrent_writers_and_a_quota_holds_site_wide() {
    bounded(BOUND, async {
        let site = MultiSite::start(4, 3, 1, MANUAL_WORKERS).await;
        let s3 = site.s3(0);
        s3.create_bucket().bucket("acct").send().await.unwrap();
        s3.put_bucket_versioning()
            .bucket("acct")
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let writers: Vec<_> = (0..4)
            .map(|k| {
                let s3 = site.s3(k);
                tokio::spawn(async move {
                    for i in 0..25u64 {
                        let key = format!("k{}", (i * 7 + k as u64) % 5);
                        if i % 4 == 3 {
                            s3.delete_object()
                                .bucket("acct")
                                .key(&key)
                                .send()
                                .await
                                .unwrap();
                        } else {
                            let len = ((i * 131 + k as u64 * 17) % 2000) as usize;
                            s3.put_object()
                                .bucket("acct")
                                .key(&key)
                                .body(ByteStream::from(vec![k as u8; len]))
                                .send()
                                .await
                                .unwrap();
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        let want = listed(&s3, "acct").await;
        assert_eq!(want.versions + want.delete_markers, 100);

        // Every replica counted every write (a write returns at W; the last replica's copy
        // lands just after).
        let replicas = site.node(0).manifest_backend.bucket_replicas("acct");
        assert_eq!(replicas.len(), 3);
        let stores: Vec<_> = (0..4)
            .filter(|&k| replicas.contains(&site.node(k).cluster.me()))
            .map(|k| site.node(k).manifests.clone().unwrap())
            .collect();
        assert_eq!(stores.len(), 3);
        eventually("every replica counts what the listing shows", BOUND, || {
            stores
                .iter()
                .all(|s| s.bucket_usage("acct").unwrap() == want)
        })
        .await;
        for k in 0..4 {
            assert_eq!(
                site.node(k).client.bucket_usage("acct").await.unwrap(),
                want,
                "node {k}"
            );
        }
        let metrics = site.metrics(3).await;
        let line = format!("cairn_bucket_versions{{bucket=\"acct\"}} {}", want.versions);
        assert!(metrics.contains(&line), "{line} not in /metrics");

        // A quota set through one node holds for writes through every other.
        site.node(1)
            .client
            .set_bucket_quota(
                "acct",
                Some(BucketQuota {
                    max_bytes: Some(want.logical_bytes),
                    max_objects: None,
                }),
            )
            .await
            .unwrap();
        for k in [0, 2, 3] {
            let e = site
                .s3(k)
                .put_object()
                .bucket("acct")
                .key("one-more")
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.code(), Some("QuotaExceeded"), "node {k}: {e:?}");
        }
        assert_eq!(listed(&s3, "acct").await, want, "nothing was written");
        site.shutdown().await;
    })
    .await;
}
