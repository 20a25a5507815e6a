//! The gateway counts requests per operation and status, body bytes both ways, and latency.

mod common;

use std::sync::Arc;

use cairn_s3::{S3Config, S3Metrics};
use common::*;

/// The value of the sample line `name_and_labels` in `text`.
fn value(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_bytes_and_latency_are_counted_per_operation() {
    let metrics = Arc::new(S3Metrics::new());
    let server = start_with(S3Config {
        metrics: metrics.clone(),
        ..S3Config::default()
    })
    .await;
    let s3 = server.s3();
    s3.create_bucket().bucket("mbucket").send().await.unwrap();
    let body = random_bytes(300_000);
    put(&s3, "mbucket", "obj", &body).await;
    assert_eq!(read(&s3, "mbucket", "obj", None).await, body);
    let e = s3
        .get_object()
        .bucket("mbucket")
        .key("missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 404);
    // A CORS preflight (no rules: refused) is counted as Options.
    let resp = raw_request(
        server.addr,
        &format!(
            "OPTIONS /mbucket/obj HTTP/1.1\nHost: {}\nOrigin: http://a.example\nAccess-Control-Request-Method: GET\n",
            server.addr
        ),
        b"",
    )
    .await;
    assert_eq!(resp.status, 403);

    let mut text = String::new();
    metrics.render(&mut text);
    let n = body.len() as f64;
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no `{s}` in\n{text}"));
    assert_eq!(
        v("cairn_s3_requests_total{op=\"CreateBucket\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        v("cairn_s3_requests_total{op=\"PutObject\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        v("cairn_s3_requests_total{op=\"GetObject\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        v("cairn_s3_requests_total{op=\"GetObject\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        v("cairn_s3_requests_total{op=\"Options\",status=\"403\"}"),
        1.0
    );
    assert!(v("cairn_s3_request_bytes_total{op=\"PutObject\"}") >= n);
    assert!(v("cairn_s3_response_bytes_total{op=\"GetObject\"}") >= n);
    // The 404's error document, not the object, is all GetObject sent beyond the body.
    assert!(v("cairn_s3_response_bytes_total{op=\"GetObject\"}") < n + 4096.0);
    assert!(v("cairn_s3_response_bytes_total{op=\"PutObject\"}") < 4096.0);
    assert_eq!(
        v("cairn_s3_request_duration_seconds_count{op=\"PutObject\"}"),
        1.0
    );
    assert_eq!(
        v("cairn_s3_request_duration_seconds_count{op=\"GetObject\"}"),
        2.0
    );
    assert_eq!(
        v("cairn_s3_request_duration_seconds_bucket{op=\"GetObject\",le=\"+Inf\"}"),
        2.0
    );
    assert!(v("cairn_s3_request_duration_seconds_sum{op=\"PutObject\"}") > 0.0);
    for kind in [
        "# TYPE cairn_s3_requests_total counter",
        "# TYPE cairn_s3_request_bytes_total counter",
        "# TYPE cairn_s3_response_bytes_total counter",
        "# TYPE cairn_s3_request_duration_seconds histogram",
    ] {
        assert!(text.contains(kind), "{kind}");
    }
    // No key or bucket name ever becomes a label.
    assert!(
        !text.contains("obj") && !text.contains("missing") && !text.contains("mbucket"),
        "{text}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_unroutable_requests_are_counted_too() {
    let metrics = Arc::new(S3Metrics::new());
    let server = start_with(S3Config {
        metrics: metrics.clone(),
        ..S3Config::default()
    })
    .await;
    let bad = server.s3_as("AKIANOSUCHKEY0000000", "wrong", "us-east-1");
    let e = bad.list_buckets().send().await.unwrap_err();
    assert_eq!(error_of(&e).0, 403);
    let resp = raw_request(
        server.addr,
        &format!("PATCH /m/k HTTP/1.1\nHost: {}\n", server.addr),
        b"",
    )
    .await;
    assert!(resp.status >= 400);

    let mut text = String::new();
    metrics.render(&mut text);
    assert!(
        text.contains("cairn_s3_requests_total{op=\"ListBuckets\",status=\"403\"} 1\n"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "cairn_s3_requests_total{{op=\"unknown\",status=\"{}\"}} 1\n",
        resp.status
    )));
    server.stop().await.unwrap();
}
