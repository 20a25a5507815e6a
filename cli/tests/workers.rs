//! The lifecycle worker of a running `cairn serve`: it applies a bucket's rules on its own, and
//! `cairn workers` shows what it did.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter,
};
use common::*;

#[tokio::test]
async fn lifecycle_worker_expires_objects_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, endpoint) = start_with(dir.path(), &["--lifecycle-interval", "1"]);
    let s3 = s3(&endpoint);
    s3.create_bucket().bucket("expiring").send().await.unwrap();
    for key in ["tmp/a", "tmp/b", "keep/c"] {
        s3.put_object()
            .bucket("expiring")
            .key(key)
            .body(b"data".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    // Expire everything under tmp/ from a date in the past.
    let rule = LifecycleRule::builder()
        .id("tmp")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
        .expiration(
            LifecycleExpiration::builder()
                .date(DateTime::from_secs(1_577_836_800)) // 2020-01-01T00:00Z
                .build(),
        )
        .build()
        .unwrap();
    s3.put_bucket_lifecycle_configuration()
        .bucket("expiring")
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let keys = loop {
        let listed = s3
            .list_objects_v2()
            .bucket("expiring")
            .send()
            .await
            .unwrap();
        let keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        if keys.len() == 1 || Instant::now() > deadline {
            break keys;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(keys, vec!["keep/c".to_string()], "the worker expired tmp/");

    let data_dir = dir.path().to_str().unwrap();
    // Wait for the pass that expired tmp/ to be counted.
    let out = after_a_pass(data_dir, "lifecycle").await;
    assert!(out.starts_with("lifecycle ("), "{out}");
    assert!(out.contains("every 1 s"), "{out}");
    assert!(out.contains("errors 0"), "{out}");

    child.kill().unwrap();
    child.wait().unwrap();
    // Without a running site the command says where workers run.
    let (ok, _, err) = cairn(&["workers", "--data-dir", data_dir]);
    assert!(!ok);
    assert!(err.contains("workers run inside `cairn serve`"), "{err}");
}

#[tokio::test]
async fn gc_worker_runs_passes_and_shows_in_workers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, endpoint) =
        start_with(dir.path(), &["--gc-interval", "1", "--gc-hold", "3600"]);
    let s3 = s3(&endpoint);
    s3.create_bucket().bucket("kept").send().await.unwrap();
    s3.put_object()
        .bucket("kept")
        .key("big")
        .body(vec![7u8; 300_000].into())
        .send()
        .await
        .unwrap();
    let data_dir = dir.path().to_str().unwrap();
    // The first pass starts a second after start-up: wait for one to complete.
    let out = after_a_pass(data_dir, "gc").await;
    assert!(out.starts_with("lifecycle ("), "{out}");
    assert!(out.contains("chunks marked "), "{out}");
    // Within the hold nothing is deleted, and the object's chunks are reachable anyway.
    assert!(out.contains("chunks deleted 0"), "{out}");
    assert!(!out.contains("last error"), "{out}");
    let got = s3
        .get_object()
        .bucket("kept")
        .key("big")
        .send()
        .await
        .unwrap();
    let body = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(body.len(), 300_000);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `cairn workers` once `worker` ("NAME (idle|running), N passes, every S s") has completed a
/// pass; panics after 30 s.
async fn after_a_pass(data_dir: &str, worker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = cairn(&["workers", "--data-dir", data_dir]);
        assert!(ok, "{err}");
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{worker} (")))
            .unwrap_or_else(|| panic!("no {worker} worker in {out}"));
        let passes: u64 = line
            .split("), ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no pass count in {line}"));
        if passes >= 1 {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "no {worker} pass completed: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
