//! A copy by reference whose source is deleted between the copy's read of it and the copy's
//! apply, with garbage collection running in that window (invariant I6), on five storage
//! nodes with replication factor 3 behind a gateway-only node. The copy is paused at the fail
//! point `copy-before-apply` (its own test binary: fail points are process-wide).

use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use cairn_client::GcPhase;
use cairn_tests::gc::{age_everything, chunk_nodes, gc_all, HOLD_MS};
use cairn_tests::multi::MultiSite;
use cairn_tests::random_bytes;
use cairn_tests::scenario::{bounded, Gate, GateOpener, MANUAL_WORKERS};

const BOUND: Duration = Duration::from_secs(240);
const GATEWAY: usize = 5;
const PAUSE: &str = "copy-before-apply";

/// The fail point is process-wide: the scenarios of this file take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The site, a bucket `bkt` holding `src` (aged past the hold), and its bytes.
async fn site_with_aged_source() -> (MultiSite, Vec<u8>) {
    let mut roles = vec!["chunk,manifest"; 5];
    roles.push("s3");
    let site = MultiSite::start_with_roles(&roles, 3, 5, MANUAL_WORKERS).await;
    let s3 = site.s3(GATEWAY);
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let body = random_bytes(2 << 20, 7);
    s3.put_object()
        .bucket("bkt")
        .key("src")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    age_everything(&site);
    (site, body)
}

type CopyAnswer =
    Result<(), aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::copy_object::CopyObjectError>>;

/// A copy of `bkt/src` to `bkt/dst` held at the fail point, after its read of the source.
struct PausedCopy {
    copy: tokio::task::JoinHandle<CopyAnswer>,
    go: GateOpener,
}

impl PausedCopy {
    /// Starts the copy and returns once it is held (it has read its source).
    async fn start(site: &MultiSite) -> PausedCopy {
        let (reached_tx, mut reached_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let gate = Gate::new(BOUND);
        let go = gate.opener();
        fail::cfg_callback(PAUSE, move || {
            reached_tx.send(()).unwrap();
            gate.wait();
        })
        .unwrap();
        let s3 = site.s3(GATEWAY);
        let copy = tokio::spawn(async move {
            s3.copy_object()
                .copy_source("bkt/src")
                .bucket("bkt")
                .key("dst")
                .send()
                .await
                .map(|_| ())
        });
        reached_rx.recv().await.unwrap();
        PausedCopy { copy, go }
    }

    /// Lets the copy apply; its answer.
    async fn resume(self) -> CopyAnswer {
        fail::remove(PAUSE);
        drop(self.go);
        self.copy.await.unwrap()
    }
}

/// Copies `bkt/src` to `bkt/dst`, deleting and collecting `src` (a GC pass on every node, whose
/// mark sees neither `src` nor the copy) while the copy is held before its apply; the copy
/// must fail.
async fn copy_of_a_collected_source_fails(site: &MultiSite) {
    let s3 = site.s3(GATEWAY);
    let copy = PausedCopy::start(site).await;
    s3.delete_object()
        .bucket("bkt")
        .key("src")
        .send()
        .await
        .unwrap();
    let reports = gc_all(site).await;
    assert!(reports.iter().all(|r| r.chunks_deleted > 0), "{reports:?}");
    let answer = copy.resume().await;
    assert!(
        answer.is_err(),
        "the copy of a collected source was acknowledged"
    );
}

/// Interleaving: the copy reads `src`; `src` is deleted; a GC pass runs on every node (its
/// mark sees neither `src` nor the copy); only then is the copy applied. The chunks are gone,
/// so the copy must fail and leave nothing behind. Before the fix the copy answered 200 and
/// left `dst` naming chunks no node held: a GET of it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_whose_source_was_collected_before_its_apply_fails_and_leaves_nothing() {
    let _turn = SERIAL.lock().await;
    bounded(BOUND, async {
        let (site, _) = site_with_aged_source().await;
        let s3 = site.s3(GATEWAY);
        copy_of_a_collected_source_fails(&site).await;
        assert!(
            s3.head_object()
                .bucket("bkt")
                .key("dst")
                .send()
                .await
                .is_err(),
            "the failed copy left an object behind"
        );
        site.shutdown().await;
    })
    .await;
}

/// The same interleaving onto a key that holds an object already, in a bucket without
/// versioning (where the copy's apply replaces that object). The copy must fail and the object
/// it would have replaced must still read back. Before the fix the copy was applied, found its
/// chunks gone and took itself back: the earlier object was gone with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_copy_onto_an_existing_key_leaves_the_object_there() {
    let _turn = SERIAL.lock().await;
    bounded(BOUND, async {
        let (site, _) = site_with_aged_source().await;
        let s3 = site.s3(GATEWAY);
        let earlier = random_bytes(1 << 20, 11);
        s3.put_object()
            .bucket("bkt")
            .key("dst")
            .body(ByteStream::from(earlier.clone()))
            .send()
            .await
            .unwrap();
        copy_of_a_collected_source_fails(&site).await;
        let got = s3
            .get_object()
            .bucket("bkt")
            .key("dst")
            .send()
            .await
            .expect("the object the failed copy would have replaced is still there");
        let body = got.body.collect().await.unwrap().into_bytes();
        assert!(body[..] == earlier[..], "it reads back unchanged");
        site.shutdown().await;
    })
    .await;
}

/// Interleaving: the copy reads `src`; `src` is deleted; a GC pass on every node marks (and
/// sees neither) and stops before its sweep; the copy is applied and answered; then the
/// sweeps run. The acknowledged copy must read back. Before the fix the sweeps took every
/// chunk the copy shares with its source.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_applied_between_a_mark_and_its_sweep_keeps_its_chunks() {
    let _turn = SERIAL.lock().await;
    bounded(BOUND, async {
        let (site, body) = site_with_aged_source().await;
        let s3 = site.s3(GATEWAY);
        let copy = PausedCopy::start(&site).await;
        s3.delete_object()
            .bucket("bkt")
            .key("src")
            .send()
            .await
            .unwrap();

        // Every node marks, then waits before sweeping.
        let nodes = chunk_nodes(&site);
        let (marked_tx, mut marked_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let sweep = Gate::new(BOUND);
        let open_sweep = sweep.opener();
        let mut passes = Vec::new();
        for &k in &nodes {
            let client = site.node(k).client.clone();
            let marked_tx = marked_tx.clone();
            let sweep = sweep.clone();
            passes.push(tokio::spawn(async move {
                let told = Mutex::new(false);
                let progress = |r: &cairn_client::GcReport| {
                    let mut told = told.lock().unwrap();
                    if r.phase == GcPhase::Sweep && !*told {
                        *told = true;
                        marked_tx.send(()).unwrap();
                        sweep.wait();
                    }
                };
                client
                    .run_gc(cairn_client::now_ms(), HOLD_MS, &progress)
                    .await
            }));
        }
        for _ in &nodes {
            marked_rx.recv().await.unwrap();
        }
        copy.resume()
            .await
            .expect("the copy of a source live when it was read");
        drop(open_sweep);
        for p in passes {
            assert_eq!(p.await.unwrap().unwrap().phase, GcPhase::Done);
        }
        assert_eq!(
            s3.get_object()
                .bucket("bkt")
                .key("dst")
                .send()
                .await
                .expect("the acknowledged copy")
                .body
                .collect()
                .await
                .expect("its bytes")
                .into_bytes()
                .to_vec(),
            body
        );
        site.shutdown().await;
    })
    .await;
}
