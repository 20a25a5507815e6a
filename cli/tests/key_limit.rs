//! `cairn key limit`: set through a running site, it reaches that site's S3 gateway without a
//! restart (503 SlowDown, counted in /metrics); `key info` shows it; set on a stopped site's
//! data dir it is kept; refusals of the command line say what to give.

mod common;

use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use common::{admin_metrics, cairn, cairn_ok, start};

/// An SDK client for `endpoint` signing with `id`, without retries (a 503 is seen as is).
fn s3_as(endpoint: &str, id: &str, secret: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(id, secret, None, None, "test"))
        .force_path_style(true)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The HTTP status of a ListBuckets with `s3`, 200 when it passes.
async fn list_status(s3: &aws_sdk_s3::Client) -> u16 {
    match s3.list_buckets().send().await {
        Ok(_) => 200,
        Err(e) => e.raw_response().map_or(0, |r| r.status().as_u16()),
    }
}

/// Sends requests until one is refused with 503 (the limit took effect); fails after a minute.
async fn until_refused(s3: &aws_sdk_s3::Client) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match list_status(s3).await {
            503 => return,
            200 => {}
            other => panic!("unexpected status {other}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "never refused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_limit_reaches_the_running_gateway_and_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (mut child, endpoint) = start(dir.path());
    let out = cairn_ok(&["key", "create", "limited", "--data-dir", d]);
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .expect("field printed")
            .trim()
            .to_string()
    };
    let (id, secret) = (field("Access key id:"), field("Secret access key:"));
    let s3 = s3_as(&endpoint, &id, &secret);
    assert_eq!(list_status(&s3).await, 200);

    // Through the running site: the gateway sees it within seconds, without a restart.
    let out = cairn_ok(&[
        "key",
        "limit",
        &id,
        "--requests-per-sec",
        "1",
        "--data-dir",
        d,
    ]);
    assert!(out.contains("1 requests/s"), "{out}");
    until_refused(&s3).await;
    let metrics = admin_metrics(dir.path());
    assert!(
        metrics.contains("cairn_s3_throttled_total{reason=\"requests\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("cairn_s3_throttled_total{reason=\"requests\"} 0"),
        "{metrics}"
    );
    let out = cairn_ok(&["key", "info", &id, "--data-dir", d]);
    assert!(
        out.contains("Limits:") && out.contains("1 requests/s"),
        "{out}"
    );
    let out = cairn_ok(&["key", "limit", &id, "--clear", "--data-dir", d]);
    assert!(out.contains("no limits"), "{out}");
    let out = cairn_ok(&["key", "info", &id, "--data-dir", d]);
    assert!(out.contains("Limits:        none"), "{out}");

    // Refusals say what to give.
    let (ok, _, err) = cairn(&["key", "limit", &id, "--data-dir", d]);
    assert!(!ok);
    assert!(
        err.contains("--requests-per-sec") && err.contains("--clear"),
        "{err}"
    );
    let (ok, _, err) = cairn(&[
        "key",
        "limit",
        &id,
        "--requests-per-sec",
        "0",
        "--data-dir",
        d,
    ]);
    assert!(!ok, "{err}");
    let (ok, _, err) = cairn(&[
        "key",
        "limit",
        &id,
        "--bandwidth",
        "10 parsecs",
        "--data-dir",
        d,
    ]);
    assert!(!ok);
    assert!(err.contains("MiB"), "{err}");
    let (ok, _, err) = cairn(&["key", "limit", "NOSUCHKEY", "--clear", "--data-dir", d]);
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();

    // Directly on the data dir; `--bandwidth` takes human sizes.
    let out = cairn_ok(&[
        "key",
        "limit",
        &id,
        "--requests-per-sec",
        "50",
        "--bandwidth",
        "10MiB",
        "--data-dir",
        d,
    ]);
    assert!(out.contains("50 requests/s, 10.0 MiB/s"), "{out}");
    let out = cairn_ok(&["key", "info", &id, "--data-dir", d]);
    assert!(out.contains("50 requests/s, 10.0 MiB/s"), "{out}");
    let out = cairn_ok(&[
        "key",
        "limit",
        &id,
        "--bytes-per-sec",
        "4096",
        "--data-dir",
        d,
    ]);
    assert!(
        out.contains("4.0 KiB/s") && !out.contains("requests/s"),
        "{out}"
    );
}
