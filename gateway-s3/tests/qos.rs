//! Per-key request and bandwidth limits (`cairn key limit`): a limited key gets 503 SlowDown
//! past its allowance while other keys go on, its requests pass again once the allowance is
//! back or the limits are lifted, and only requests it really signed spend it. The SDK's
//! retries are off (see `common`), so every 503 is seen.

mod common;

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use cairn_client::KeyLimits;
use cairn_s3::S3Config;
use common::*;

/// How long a condition may take before the test fails: far more than any limit here needs.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `attempt` until it passes, while it is refused with 503 SlowDown; any other answer
/// fails the test. Returns how many attempts were refused.
async fn until_admitted<F, Fut>(mut attempt: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), (u16, String)>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut refused = 0;
    loop {
        match attempt().await {
            Ok(()) => return refused,
            Err(e) => assert_eq!(
                e,
                (503, "SlowDown".to_string()),
                "only SlowDown is expected"
            ),
        }
        refused += 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refused after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn list_buckets(s3: &aws_sdk_s3::Client) -> Result<(), (u16, String)> {
    s3.list_buckets()
        .send()
        .await
        .map(drop)
        .map_err(|e| error_of(&e))
}

/// A small request on `bucket` (not a HEAD: its error would have no body to name the code).
async fn list(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), (u16, String)> {
    s3.list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .map(drop)
        .map_err(|e| error_of(&e))
}

/// The value of one sample of `/metrics` text.
fn sample(metrics: &cairn_s3::S3Metrics, name: &str) -> u64 {
    let mut text = String::new();
    metrics.render(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

#[tokio::test]
async fn a_key_over_its_request_rate_gets_slow_down_and_other_keys_do_not() {
    let config = S3Config::default();
    let metrics = config.metrics.clone();
    let server = start_with(config).await;
    let free = server.s3();
    let limited = second_key(&server).await;
    server
        .client
        .set_key_limits(
            KEY2,
            KeyLimits {
                requests_per_sec: Some(2),
                bytes_per_sec: None,
            },
        )
        .await
        .unwrap();

    // The burst passes, then the key is refused until a token comes back. However slow this
    // machine, 200 requests take less than the 100 s that would refill them.
    let mut passed = 0;
    let mut refused = None;
    for _ in 0..200 {
        match list_buckets(&limited).await {
            Ok(()) => passed += 1,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(passed >= 1, "the first request is within the burst");
    assert_eq!(refused, Some((503, "SlowDown".to_string())));
    // The unlimited key in the same gateway is not slowed down.
    for _ in 0..20 {
        list_buckets(&free).await.unwrap();
    }
    assert!(sample(&metrics, "cairn_s3_throttled_total{reason=\"requests\"}") >= 1);
    assert_eq!(
        sample(&metrics, "cairn_s3_throttled_total{reason=\"bandwidth\"}"),
        0
    );

    // A token comes back.
    until_admitted(|| list_buckets(&limited)).await;

    // Lifted: once the gateway sees it, far more requests than the old rate pass in a row.
    server
        .client
        .set_key_limits(KEY2, KeyLimits::default())
        .await
        .unwrap();
    until_admitted(|| list_buckets(&limited)).await;
    for _ in 0..20 {
        list_buckets(&limited).await.unwrap();
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_bandwidth_limited_key_is_refused_until_its_transfers_are_paid_off() {
    let config = S3Config::default();
    let metrics = config.metrics.clone();
    let server = start_with(config).await;
    let free = server.s3();
    let limited = second_key(&server).await;
    server.client.create_bucket("slow", KEY2).await.unwrap();
    free.create_bucket().bucket("fast").send().await.unwrap();
    // 2 MiB at 256 KiB/s: about 7 s of debt after a 2 MiB transfer, far more than the next
    // request takes to arrive.
    server
        .client
        .set_key_limits(
            KEY2,
            KeyLimits {
                requests_per_sec: None,
                bytes_per_sec: Some(256 << 10),
            },
        )
        .await
        .unwrap();
    let body = random_bytes(2 << 20);

    // The upload is admitted (the budget is full) and its body is charged as it streams in.
    limited
        .put_object()
        .bucket("slow")
        .key("big")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        list(&limited, "slow").await,
        Err((503, "SlowDown".to_string()))
    );
    // Other keys are not slowed down.
    put(&free, "fast", "big", &body).await;
    assert_eq!(read(&free, "fast", "big", None).await, body);
    assert!(sample(&metrics, "cairn_s3_throttled_total{reason=\"bandwidth\"}") >= 1);

    // Once the debt is paid off, requests pass again.
    until_admitted(|| list(&limited, "slow")).await;

    // A download is charged as it streams out.
    assert_eq!(read(&limited, "slow", "big", None).await, body);
    assert_eq!(
        list(&limited, "slow").await,
        Err((503, "SlowDown".to_string()))
    );

    // Lifting the limits ends the wait without paying it off.
    server
        .client
        .set_key_limits(KEY2, KeyLimits::default())
        .await
        .unwrap();
    until_admitted(|| list(&limited, "slow")).await;
    assert_eq!(read(&limited, "slow", "big", None).await, body);
    list(&limited, "slow").await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn only_requests_the_key_really_signed_spend_its_allowance() {
    let server = start().await;
    let _ = second_key(&server).await;
    server
        .client
        .set_key_limits(
            KEY2,
            KeyLimits {
                requests_per_sec: Some(1),
                bytes_per_sec: Some(1024),
            },
        )
        .await
        .unwrap();
    // Someone who knows the key id but not its secret: refused by the signature check, before
    // the limits, with bodies larger than the byte allowance.
    let forger = server.s3_as(KEY2, "not-the-secret-of-key-2", "us-east-1");
    let big = vec![7u8; 64 << 10];
    for _ in 0..10 {
        let e = forger
            .put_object()
            .bucket("any")
            .key("k")
            .body(ByteStream::from(big.clone()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_of(&e), (403, "SignatureDoesNotMatch".to_string()));
    }
    // The key's one request per second and its byte budget are all there.
    let owner = server.s3_as(KEY2, SECRET2, "us-east-1");
    list_buckets(&owner).await.unwrap();
    server.stop().await.unwrap();
}
