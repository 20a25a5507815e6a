//! `cairn bucket info` and `cairn bucket quota` through a running site: the usage it shows
//! follows S3 writes, a quota set there refuses the write that would pass it (403
//! QuotaExceeded), `/metrics` carries the per-bucket gauges, and the command line says what to
//! give when it is given nothing.

mod common;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use common::{admin_metrics, cairn, cairn_ok, s3, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_info_and_quota_through_a_running_site() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (mut child, endpoint) = start(dir.path());
    let s3 = s3(&endpoint);
    s3.create_bucket().bucket("media").send().await.unwrap();
    for (key, len) in [("a", 3000), ("b", 2000)] {
        s3.put_object()
            .bucket("media")
            .key(key)
            .body(ByteStream::from(vec![1u8; len]))
            .send()
            .await
            .unwrap();
    }
    let out = cairn_ok(&["bucket", "info", "media", "--data-dir", d]);
    assert!(out.contains("Objects:         2 (4.9 KiB)"), "{out}");
    assert!(out.contains("(5000 bytes, every stored version)"), "{out}");
    assert!(out.contains("Quota:           none"), "{out}");

    let out = cairn_ok(&[
        "bucket",
        "quota",
        "media",
        "--max-bytes",
        "6000B",
        "--data-dir",
        d,
    ]);
    assert!(
        out.contains("Quota, bytes:    4.9 KiB of 5.9 KiB used"),
        "{out}"
    );
    let e = s3
        .put_object()
        .bucket("media")
        .key("c")
        .body(ByteStream::from(vec![1u8; 1001]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("QuotaExceeded"), "{e:?}");
    assert!(
        e.message()
            .unwrap_or("")
            .contains("cairn bucket quota media"),
        "the error says how to make room: {e:?}"
    );
    s3.put_object()
        .bucket("media")
        .key("c")
        .body(ByteStream::from(vec![1u8; 1000]))
        .send()
        .await
        .unwrap();
    let metrics = admin_metrics(dir.path());
    for line in [
        "cairn_bucket_objects{bucket=\"media\"} 3",
        "cairn_bucket_logical_bytes{bucket=\"media\"} 6000",
        "cairn_bucket_quota_bytes{bucket=\"media\"} 6000",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }

    let (ok, _, err) = cairn(&["bucket", "quota", "media", "--data-dir", d]);
    assert!(!ok && err.contains("--max-bytes"), "{err}");
    let (ok, _, err) = cairn(&["bucket", "info", "nothere", "--data-dir", d]);
    assert!(!ok && err.contains("nothere"), "{err}");

    let out = cairn_ok(&["bucket", "quota", "media", "--clear", "--data-dir", d]);
    assert!(out.contains("has no quota now"), "{out}");
    s3.put_object()
        .bucket("media")
        .key("d")
        .body(ByteStream::from(vec![1u8; 10_000]))
        .send()
        .await
        .unwrap();
    // That one is a stored chunk (the others are inline): bytes after dedup, compressed, as
    // `/metrics` and `cairn bucket info` show them.
    let metrics = admin_metrics(dir.path());
    let prefix = "cairn_bucket_stored_bytes{bucket=\"media\"} ";
    let stored: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("{prefix} not in {metrics}"))
        .parse()
        .unwrap();
    assert!(stored > 0 && stored < 10_000, "compressed: {stored}");
    let out = cairn_ok(&["bucket", "info", "media", "--data-dir", d]);
    assert!(
        out.contains("Stored after dedup: ")
            && out.contains(&format!("({stored} bytes; compressed")),
        "{out}"
    );
    child.kill().unwrap();
    let _ = child.wait();

    // On the data dir of a stopped site, the same commands open the store directly.
    let out = cairn_ok(&["bucket", "info", "media", "--data-dir", d]);
    assert!(out.contains("Objects:         4"), "{out}");
}
