//! What every multi-node scenario file shares: a bound on the whole scenario, the worker
//! settings that leave passes to the scenario, and S3 calls that fail the test with the key.

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;

/// Workers stay out of the way: scenarios run their passes themselves (no timed pass within a
/// scenario, none started by a map change or a node's return).
pub const MANUAL_WORKERS: &str = "[workers]\nlifecycle_interval = 100000\ngc_interval = 100000\n\
    repair_interval = 100000\nscrub_interval = 100000\nanti_entropy_interval = 100000\n\
    map_settle = 0\nreact_to_changes = false\nhistory_trim_interval = 100000\n";

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

/// A gate that synchronous code inside the site (a fail point, a GC progress callback) waits
/// at until the scenario opens it.
///
/// The wait runs in [`tokio::task::block_in_place`], which hands the worker's queued tasks to
/// another thread: a plain blocking wait strands whatever the waiting task had just woken on
/// its worker (the runtime's LIFO slot cannot be stolen), so a request the scenario then needs
/// never runs. The wait gives up after its bound (and panics, failing the pass or request that
/// waited), and [`Gate::opener`] opens the gate when the scenario ends, passing or failing, so
/// no runtime thread is left blocked: a test runtime's shutdown waits for all of its threads.
#[derive(Clone)]
pub struct Gate {
    state: Arc<(Mutex<bool>, Condvar)>,
    bound: Duration,
}

/// Opens its gate when dropped.
pub struct GateOpener(Gate);

impl Gate {
    /// A closed gate whose waits give up after `bound`.
    pub fn new(bound: Duration) -> Gate {
        Gate {
            state: Arc::new((Mutex::new(false), Condvar::new())),
            bound,
        }
    }

    /// Waits until the gate is open; panics once the bound has passed. Call it only from a
    /// task of a multi-threaded runtime.
    pub fn wait(&self) {
        let (open, cv) = &*self.state;
        tokio::task::block_in_place(|| {
            let (_open, waited) = cv
                .wait_timeout_while(open.lock().unwrap(), self.bound, |open| !*open)
                .unwrap();
            assert!(
                !waited.timed_out(),
                "the scenario did not open its gate within {:?}",
                self.bound
            );
        });
    }

    /// Opens the gate: every wait returns, now and later.
    pub fn open(&self) {
        let (open, cv) = &*self.state;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }

    /// A guard that opens the gate when dropped, also when the scenario panics or times out.
    pub fn opener(&self) -> GateOpener {
        GateOpener(self.clone())
    }
}

impl Drop for GateOpener {
    fn drop(&mut self) {
        self.0.open();
    }
}
