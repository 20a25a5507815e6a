//! What every multi-node scenario file shares: a bound on the whole scenario, the worker
//! settings that leave passes to the scenario, and S3 calls that fail the test with the key.

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;

/// Workers stay out of the way: scenarios run their passes themselves (no timed pass within a
/// scenario, none started by a map change or a node's return).
pub const MANUAL_WORKERS: &str = "[workers]\nlifecycle_interval = 100000\ngc_interval = 100000\n\
    repair_interval = 100000\nscrub_interval = 100000\nanti_entropy_interval = 100000\n\
    map_settle = 0\nreact_to_changes = false\n";

/// Runs a scenario, failing it if it takes longer than `bound`.
pub async fn bounded<T>(bound: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(bound, f)
        .await
        .expect("scenario did not finish in time")
}

/// PUT of `body`; panics naming the key on failure.
pub async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e:?}"));
}

/// GET of a whole object; panics naming the key on failure.
pub async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {bucket}/{key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap_or_else(|e| panic!("reading {bucket}/{key}: {e:?}"))
        .into_bytes()
        .to_vec()
}

/// DELETE of an object; panics naming the key on failure.
pub async fn delete(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("delete {bucket}/{key}: {e:?}"));
}

/// Waits until `cond` holds, checking every 100 ms; panics naming `what` after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
