//! Full disks: a single-node site on a small real file system filled through S3 to the very
//! end (ENOSPC from RocksDB and its blob files), a near-full threshold that refuses writes
//! first, and a multi-node site whose full node placement goes around.

use std::time::{Duration, Instant};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use cairn::disk::DiskConfig;
use cairn_core::SpaceState;
use cairn_tests::multi::MultiSite;
use cairn_tests::scenario::get;
use cairn_tests::smallfs::SmallFs;
use cairn_tests::{random_bytes, TestSite};

/// Object size of the fills.
const OBJ: usize = 1 << 20;

/// The HTTP status, S3 code and message of a failed SDK call.
fn status_and_code<E: ProvideErrorMetadata>(
    e: &SdkError<E, HttpResponse>,
) -> (u16, String, String) {
    (
        e.raw_response().map_or(0, |r| r.status().as_u16()),
        e.code().unwrap_or_default().to_string(),
        e.message().unwrap_or_default().to_string(),
    )
}

async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
) -> Result<(), (u16, String, String)> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| status_and_code(&e))
}

async fn read_back(s3: &aws_sdk_s3::Client, bucket: &str, seeds: &[u64]) {
    for &i in seeds {
        let got = get(s3, bucket, &format!("o{i}")).await;
        assert!(
            got == random_bytes(OBJ, i),
            "acknowledged object o{i} came back different"
        );
    }
}

/// Waits up to `secs` for `cond`, polling.
async fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GC's hold: the shortest the chunk store's touch interval allows.
const HOLD_MS: u64 = 1_200_000;

/// A GC pass as if run a hold after now, so every chunk nothing reaches is collected.
async fn gc_pass(site: &TestSite) -> Result<cairn_client::GcReport, cairn_client::ClientError> {
    let later = cairn_client::now_ms() + HOLD_MS + 1000;
    site.client.run_gc(later, HOLD_MS, &|_| {}).await
}

/// [`gc_pass`], retried while the chunk store is still recovering from running out of space
/// (RocksDB retries its recovery every 5 s once space is free).
async fn gc_until_done(site: &TestSite) -> cairn_client::GcReport {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match gc_pass(site).await {
            Ok(r) => return r,
            Err(
                e @ (cairn_client::ClientError::NoSpace(_) | cairn_client::ClientError::Storage(_)),
            ) if Instant::now() < deadline => {
                eprintln!("gc pass failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("gc never ran on the full disk: {e}"),
        }
    }
}

fn state(site: &TestSite) -> SpaceState {
    site.disk.as_ref().expect("disk worker").gate().state()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filling_the_disk_to_the_end_loses_nothing_acknowledged() {
    let fs = SmallFs::new(160);
    eprintln!("file system: {}", fs.kind);
    let dir = fs.path().join("data");
    // No threshold: writes go on until RocksDB itself gets ENOSPC.
    let config = DiskConfig {
        min_free_percent: 0.0,
        min_free_bytes: 0,
        hysteresis_percent: 1.0,
        check_interval: 1,
        reserve_bytes: None,
    };
    let site = TestSite::start_with_disk(&dir, config).await;
    let s3 = site.s3();
    s3.create_bucket()
        .bucket("fill")
        .send()
        .await
        .expect("bucket");

    let mut acked = Vec::new();
    let mut refusals = 0;
    for i in 0..400u64 {
        match put(&s3, "fill", &format!("o{i}"), random_bytes(OBJ, i)).await {
            Ok(()) => acked.push(i),
            Err((status, code, message)) => {
                eprintln!("put o{i} refused: {status} {code} {message}");
                assert_eq!(
                    (status, code.as_str()),
                    (507, "InsufficientStorage"),
                    "a PUT on a full disk must fail cleanly: {message}"
                );
                assert!(message.contains("free space"), "{message}");
                refusals += 1;
                if refusals == 3 {
                    break;
                }
            }
        }
    }
    assert!(refusals > 0, "160 MiB never filled up");
    assert!(acked.len() > 60, "only {} objects fit", acked.len());
    eprintln!(
        "{} objects acknowledged before the disk filled",
        acked.len()
    );
    assert_eq!(state(&site), SpaceState::Full);
    read_back(&s3, "fill", &acked).await;

    // A restart on the full disk: the stores reopen consistent and everything acknowledged
    // reads back. A write is taken only if the reserve could be made again (RocksDB's own
    // recovery at open may have freed some space); otherwise it is a clean 507.
    let site = site.restart().await;
    let s3 = site.s3();
    read_back(&s3, "fill", &acked).await;
    if let Err((status, code, message)) =
        put(&s3, "fill", "after-restart", random_bytes(OBJ, 9999)).await
    {
        assert_eq!(
            (status, code.as_str()),
            (507, "InsufficientStorage"),
            "{message}"
        );
    }

    // Deletes and GC work on the full disk and give the space back.
    let free_before = fs.free_bytes();
    let (gone, kept) = acked.split_at(acked.len() / 2);
    for i in gone {
        s3.delete_object()
            .bucket("fill")
            .key(format!("o{i}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("delete of o{i} refused on a full disk: {e:?}"));
    }
    let report = gc_until_done(&site).await;
    assert!(report.chunks_deleted > 0, "{report:?}");
    let freed = fs.free_bytes().saturating_sub(free_before);
    assert!(
        freed > (gone.len() * OBJ / 2) as u64,
        "deleting {} MiB and collecting freed only {freed} bytes",
        gone.len()
    );

    // Once the disk worker sees the space, writes work again.
    wait_for(20, "the disk worker to take writes again", || {
        state(&site) == SpaceState::Ok
    })
    .await;
    put(&s3, "fill", "after", random_bytes(OBJ, 7777))
        .await
        .expect("a PUT after space was freed");
    read_back(&s3, "fill", kept).await;
    assert!(get(&s3, "fill", "after").await == random_bytes(OBJ, 7777));
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_near_full_disk_refuses_writes_and_recovers_when_space_is_freed() {
    let fs = SmallFs::new(128);
    let dir = fs.path().join("data");
    let config = DiskConfig {
        min_free_percent: 50.0,
        min_free_bytes: 0,
        hysteresis_percent: 5.0,
        check_interval: 1,
        reserve_bytes: Some(4 << 20),
    };
    let site = TestSite::start_with_disk(&dir, config).await;
    let s3 = site.s3();
    s3.create_bucket()
        .bucket("near")
        .send()
        .await
        .expect("bucket");

    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..200u64 {
        match put(&s3, "near", &format!("o{i}"), random_bytes(OBJ, i)).await {
            Ok(()) => acked.push(i),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        // One measurement per second: give the worker a chance to see each MiB.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, code, message) = refused.expect("the threshold was never reached");
    assert_eq!(
        (status, code.as_str()),
        (507, "InsufficientStorage"),
        "{message}"
    );
    assert!(message.contains("near full"), "{message}");
    assert!(message.contains("add"), "{message}");
    assert_eq!(state(&site), SpaceState::NearFull);
    let disk = site.disk.as_ref().unwrap().clone();
    let status = disk.status();
    assert_eq!(status.state, "near-full");
    assert!(status
        .dirs
        .iter()
        .any(|d| d.name == "chunks" && d.state == "near-full"));
    let mut metrics = String::new();
    cairn_core::metrics::MetricsSource::render(&*disk, &mut metrics);
    assert!(
        metrics.contains("cairn_disk_near_full{dir=\"chunks\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("cairn_disk_state 1"), "{metrics}");

    // Every other write is refused too: parts and copies. Reads and listings are not.
    let up = s3
        .create_multipart_upload()
        .bucket("near")
        .key("mp")
        .send()
        .await
        .expect("create upload");
    let part = s3
        .upload_part()
        .bucket("near")
        .key("mp")
        .upload_id(up.upload_id().unwrap())
        .part_number(1)
        .body(ByteStream::from(random_bytes(OBJ, 5000)))
        .send()
        .await
        .expect_err("a part is refused");
    assert_eq!(status_and_code(&part).0, 507);
    let copy = s3
        .copy_object()
        .bucket("near")
        .key("copy")
        .copy_source(format!("near/o{}", acked[0]))
        .send()
        .await
        .expect_err("a copy is refused");
    assert_eq!(status_and_code(&copy).0, 507);
    read_back(&s3, "near", &acked).await;
    let listed = s3
        .list_objects_v2()
        .bucket("near")
        .send()
        .await
        .expect("list")
        .key_count();
    assert_eq!(listed, Some(acked.len() as i32));

    // Removals are never refused: abort, deletes; GC gives the space back.
    s3.abort_multipart_upload()
        .bucket("near")
        .key("mp")
        .upload_id(up.upload_id().unwrap())
        .send()
        .await
        .expect("abort");
    for i in &acked {
        s3.delete_object()
            .bucket("near")
            .key(format!("o{i}"))
            .send()
            .await
            .expect("delete on a near-full disk");
    }
    let report = gc_pass(&site).await.expect("gc on a near-full disk");
    assert!(report.chunks_deleted > 0);
    wait_for(20, "the disk worker to leave near-full", || {
        state(&site) == SpaceState::Ok
    })
    .await;
    put(&s3, "near", "again", random_bytes(OBJ, 4242))
        .await
        .expect("writes work again once space is freed");
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placement_goes_around_a_full_node() {
    // Four nodes in four zones, RF 3 (W 2); n4's threshold says it is always near full.
    let mut site = MultiSite::start(4, 3, 4, "").await;
    site.stop_node(3).await;
    site.slots[3].config.disk.min_free_percent = 100.0;
    site.start_node(3).await;
    let full = site.node(3).chunks.clone().expect("n4 stores chunks");
    let n4 = site.node(3).cluster.me();
    // n4 tells its peers it is full (every few seconds while it is).
    let n1 = site.node(0).chunk_backend.clone();
    wait_for(30, "n1 to hear that n4 is full", || {
        n1.full_nodes().contains(&n4)
    })
    .await;
    assert_eq!(full.stats().unwrap().chunks, 0);

    let s3 = site.s3(0);
    s3.create_bucket()
        .bucket("around")
        .send()
        .await
        .expect("bucket");
    let seeds: Vec<u64> = (0..12).collect();
    for &i in &seeds {
        put(&s3, "around", &format!("o{i}"), random_bytes(OBJ, i))
            .await
            .unwrap_or_else(|e| panic!("put o{i} with one full node of four: {e:?}"));
    }
    read_back(&s3, "around", &seeds).await;
    // With one node of four full, every bucket still has a write quorum of metadata replicas
    // with space: small (metadata-only) objects are taken.
    put(&s3, "around", "small-ok", random_bytes(1000, 97))
        .await
        .expect("a small object with one full node of four");
    assert_eq!(
        full.stats().unwrap().chunks,
        0,
        "the full node took new chunks"
    );
    // Chunks placed on n4 went to the next node of their ranking: every chunk has 3 copies.
    let chunks = site.all_chunks();
    assert!(!chunks.is_empty());
    let short: Vec<_> = chunks.iter().filter(|id| site.copies(id) < 3).collect();
    assert!(
        short.is_empty(),
        "{} of {} chunks have fewer than 3 copies",
        short.len(),
        chunks.len()
    );

    // With n2 and n3 full as well, one node has space, under the write quorum: new writes
    // fail with 507, reads go on.
    for k in [1, 2] {
        site.stop_node(k).await;
        site.slots[k].config.disk.min_free_percent = 100.0;
        site.start_node(k).await;
    }
    let n1 = site.node(0).chunk_backend.clone();
    wait_for(30, "n1 to hear that three nodes are full", || {
        n1.full_nodes().len() == 3
    })
    .await;
    let (status, code, message) = put(&s3, "around", "too-full", random_bytes(OBJ, 99))
        .await
        .expect_err("a write with one node of four taking chunks");
    assert_eq!(
        (status, code.as_str()),
        (507, "InsufficientStorage"),
        "{message}"
    );
    // A small object is metadata only (inline in its manifest): it is refused too, since at
    // most one of its bucket's three metadata replicas has space, under the write quorum.
    let m1 = site.node(0).manifest_backend.clone();
    wait_for(30, "n1 to count three metadata nodes full", || {
        m1.full_nodes().len() == 3
    })
    .await;
    let (status, code, message) = put(&s3, "around", "small", random_bytes(1000, 98))
        .await
        .expect_err("a metadata-only write with one node of four with space");
    assert_eq!(
        (status, code.as_str()),
        (507, "InsufficientStorage"),
        "{message}"
    );
    assert!(message.contains("free space"), "{message}");
    read_back(&s3, "around", &seeds).await;
    // Deletes still work, and free what they can.
    s3.delete_object()
        .bucket("around")
        .key("o0")
        .send()
        .await
        .expect("a delete with three nodes full");
    site.shutdown().await;
}
