//! Garbage collection against real stores in a temp dir: what a pass deletes (chunks only
//! deleted versions, replaced null versions and aborted uploads reached, once past the hold)
//! and what it must keep (anything a live version or an upload in progress reaches, and chunks
//! a write deduplicated against while the pass ran).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_chunkserver::{ChunkConfig, ChunkStore};
use cairn_client::*;
use cairn_core::ChunkId;
use cairn_manifestserver::{ManifestConfig, ManifestStore};
use futures::StreamExt;
use rand::{RngCore, SeedableRng};

const HOUR: u64 = 3_600_000;
const MINUTE: u64 = 60_000;

fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

fn body(data: &[u8]) -> BodyStream {
    let frames: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(frames))
}

async fn read(c: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, ClientError> {
    let mut s = c
        .get_object(bucket, key, &VersionSel::Current, None)
        .await?
        .body;
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b?);
    }
    Ok(out)
}

/// A client over stores in `dir`, with the chunk store at hand for checks.
fn open(dir: &std::path::Path, touch_interval_ms: u64) -> (Client, Arc<ChunkStore>) {
    let config = ChunkConfig {
        touch_interval_ms,
        ..Default::default()
    };
    let chunks = Arc::new(ChunkStore::open(&dir.join("chunks"), config).unwrap());
    let meta = Arc::new(ManifestStore::open(&dir.join("meta"), ManifestConfig::default()).unwrap());
    (Client::from_stores(chunks.clone(), meta, 0, 1), chunks)
}

fn ids(s: &ChunkStore) -> BTreeSet<ChunkId> {
    let mut out = BTreeSet::new();
    let mut after = None;
    loop {
        let page = s.list_ids(after.as_ref(), 100).unwrap();
        let Some(last) = page.last().copied() else {
            return out;
        };
        after = Some(last);
        out.extend(page);
    }
}

async fn put(c: &Client, bucket: &str, key: &str, data: &[u8]) {
    c.put_object(bucket, key, body(data), PutOptions::default())
        .await
        .unwrap();
}

/// A pass far enough in the future that everything stored so far is past the hold.
async fn gc_later(c: &Client) -> GcReport {
    c.run_gc(now_ms() + HOUR + MINUTE, HOUR, &|_| {})
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_objects_chunks_go_and_shared_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (c, store) = open(dir.path(), 10 * MINUTE);
    c.create_bucket("bkt", "o").await.unwrap();
    let a = random(3 << 20, 1);
    let mut b = a.clone();
    b.extend(random(1 << 20, 2));
    let only_c = random(2 << 20, 3);
    put(&c, "bkt", "a", &a).await;
    let ids_a = ids(&store);
    put(&c, "bkt", "bkt", &b).await;
    let ids_ab = ids(&store);
    put(&c, "bkt", "c", &only_c).await;
    let ids_abc = ids(&store);
    assert!(ids_a.len() > 2 && ids_ab.len() > ids_a.len() && ids_abc.len() > ids_ab.len());

    c.delete_object("bkt", "c", &VersionSel::Current)
        .await
        .unwrap();
    c.delete_object("bkt", "a", &VersionSel::Current)
        .await
        .unwrap();
    // Within the hold nothing is deleted, reachable or not.
    let r = c.run_gc(now_ms(), HOUR, &|_| {}).await.unwrap();
    assert_eq!(r.chunks_deleted, 0);
    assert_eq!(r.phase, GcPhase::Done);
    assert_eq!(ids(&store), ids_abc);

    let before = store.stats().unwrap();
    let r = gc_later(&c).await;
    let left = ids(&store);
    // c's chunks are gone; b's (some shared with a) stay; a's own tree node went.
    assert!(left.is_disjoint(&(&ids_abc - &ids_ab).into_iter().collect()));
    assert!(left.is_subset(&ids_ab) && left.len() < ids_ab.len());
    assert!(left.is_superset(&(&ids_ab - &ids_a).into_iter().collect()));
    assert!(!left.is_disjoint(&ids_a), "chunks shared with b stay");
    let after = store.stats().unwrap();
    assert_eq!(r.chunks_deleted, before.chunks - after.chunks);
    assert_eq!(r.bytes_freed, before.stored_bytes - after.stored_bytes);
    assert_eq!(r.chunks_marked, left.len() as u64);
    assert_eq!(read(&c, "bkt", "bkt").await.unwrap(), b);
    // A second pass finds nothing more.
    assert_eq!(gc_later(&c).await.chunks_deleted, 0);
    assert_eq!(read(&c, "bkt", "bkt").await.unwrap(), b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_null_version_and_an_aborted_upload_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let (c, store) = open(dir.path(), 10 * MINUTE);
    c.create_bucket("bkt", "o").await.unwrap();
    let old = random(2 << 20, 10);
    let new = random(2 << 20, 11);
    put(&c, "bkt", "k", &old).await;
    let ids_old = ids(&store);
    put(&c, "bkt", "k", &new).await;

    let aborted = c
        .create_multipart("bkt", "m1", "o", PutOptions::default(), (None, None))
        .await
        .unwrap();
    let before_parts = ids(&store);
    c.upload_part(
        "bkt",
        "m1",
        &aborted.upload_id,
        1,
        body(&random(1 << 20, 12)),
        PartOptions::default(),
    )
    .await
    .unwrap();
    let ids_aborted = &ids(&store) - &before_parts;
    let open_upload = c
        .create_multipart("bkt", "m2", "o", PutOptions::default(), (None, None))
        .await
        .unwrap();
    let before_open = ids(&store);
    let part = random(1 << 20, 13);
    let stored = c
        .upload_part(
            "bkt",
            "m2",
            &open_upload.upload_id,
            1,
            body(&part),
            PartOptions::default(),
        )
        .await
        .unwrap();
    let ids_open = &ids(&store) - &before_open;
    assert!(!ids_aborted.is_empty() && !ids_open.is_empty());
    c.abort_multipart("bkt", "m1", &aborted.upload_id)
        .await
        .unwrap();

    let r = gc_later(&c).await;
    assert!(r.uploads_scanned >= 1 && r.parts_scanned >= 1, "{r:?}");
    let left = ids(&store);
    assert!(
        left.is_disjoint(&ids_old),
        "the replaced null version's chunks go"
    );
    assert!(
        left.is_disjoint(&ids_aborted),
        "the aborted upload's chunks go"
    );
    assert!(left.is_superset(&ids_open), "the open upload's chunks stay");
    assert_eq!(read(&c, "bkt", "k").await.unwrap(), new);
    c.complete_multipart(
        "bkt",
        "m2",
        &open_upload.upload_id,
        [(1u32, hex::encode(stored.md5))],
        CompleteOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(read(&c, "bkt", "m2").await.unwrap(), part);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_tree_node_aborts_the_pass_with_nothing_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (c, store) = open(dir.path(), 10 * MINUTE);
    c.create_bucket("bkt", "o").await.unwrap();
    put(&c, "bkt", "gone", &random(1 << 20, 20)).await;
    c.delete_object("bkt", "gone", &VersionSel::Current)
        .await
        .unwrap();
    let r = c
        .put_object(
            "bkt",
            "live",
            body(&random(1 << 20, 21)),
            PutOptions::default(),
        )
        .await
        .unwrap();
    let root = r.manifest.content.tree().unwrap().node;
    store.corrupt_for_test(&root, b"not a tree node").unwrap();
    let before = ids(&store);
    let err = c
        .run_gc(now_ms() + HOUR + MINUTE, HOUR, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Corrupt(_)), "{err}");
    assert_eq!(ids(&store), before);
    // A hold shorter than twice the touch interval is refused.
    assert!(c.run_gc(now_ms(), 10 * MINUTE, &|_| {}).await.is_err());
}

/// A PUT that writes nothing new (every chunk and node deduplicates against a deleted object's
/// old chunks) lands between the mark and the sweep of a pass for which those chunks are past
/// the hold: the touch on deduplication must keep them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_deduplicating_against_old_chunks_during_a_pass_survives() {
    let dir = tempfile::tempdir().unwrap();
    let (c, store) = open(dir.path(), 10 * MINUTE);
    c.create_bucket("bkt", "o").await.unwrap();
    let data = random(3 << 20, 30);
    put(&c, "bkt", "old", &data).await;
    c.delete_object("bkt", "old", &VersionSel::Current)
        .await
        .unwrap();
    let old_ids = ids(&store);
    for id in &old_ids {
        store.backdate_for_test(id, 2 * HOUR).unwrap();
    }

    let handle = tokio::runtime::Handle::current();
    let fired = AtomicBool::new(false);
    let (c2, data2, store2) = (c.clone(), data.clone(), store.clone());
    let progress = move |r: &GcReport| {
        if r.phase == GcPhase::Sweep && !fired.swap(true, Ordering::SeqCst) {
            tokio::task::block_in_place(|| {
                handle.block_on(async {
                    let n = store2.stats().unwrap().chunks;
                    put(&c2, "bkt", "new", &data2).await;
                    assert_eq!(store2.stats().unwrap().chunks, n, "the PUT wrote no chunk");
                })
            });
        }
    };
    let r = c.run_gc(now_ms(), HOUR, &progress).await.unwrap();
    assert_eq!(r.chunks_marked, 0, "nothing was live when the mark ran");
    assert_eq!(r.chunks_deleted, 0, "{r:?}");
    assert_eq!(ids(&store), old_ids);
    assert_eq!(read(&c, "bkt", "new").await.unwrap(), data);
}

/// PUTs (mostly deduplicating against deleted objects' chunks) and deletes run while GC passes
/// with a short hold run back to back: every acknowledged object reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_and_passes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (c, store) = open(dir.path(), 250);
    c.create_bucket("bkt", "o").await.unwrap();
    let pool: Vec<Vec<u8>> = (0..4).map(|i| random(600 << 10, 40 + i)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let gc = {
        let (c, stop) = (c.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut passes, mut deleted) = (0u64, 0u64);
            while !stop.load(Ordering::SeqCst) {
                let r = c.run_gc(now_ms(), 1000, &|_| {}).await.unwrap();
                passes += 1;
                deleted += r.chunks_deleted;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (passes, deleted)
        })
    };
    let mut live: HashMap<String, Vec<u8>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for i in 0..60u64 {
        if tokio::time::Instant::now() > deadline {
            break;
        }
        let mut data = pool[(i % 4) as usize].clone();
        data.extend(random(20 << 10, 100 + i));
        let key = format!("k{i}");
        put(&c, "bkt", &key, &data).await;
        live.insert(key, data);
        if i % 3 == 2 {
            let victim = format!("k{}", i - 1);
            c.delete_object("bkt", &victim, &VersionSel::Current)
                .await
                .unwrap();
            live.remove(&victim);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (passes, deleted) = gc.await.unwrap();
    assert!(passes >= 2, "{passes} passes");
    let r = c.run_gc(now_ms() + HOUR, 1000, &|_| {}).await.unwrap();
    assert!(
        deleted + r.chunks_deleted > 0,
        "deleted objects' chunks were collected"
    );
    for (key, data) in &live {
        assert_eq!(&read(&c, "bkt", key).await.unwrap(), data, "{key}");
    }
    assert!(store.stats().unwrap().chunks > 0);
}

/// The stored bytes of the chunks `store` holds whose index entry names an owner: what the
/// per-bucket figures must add up to.
fn attributed_bytes(store: &ChunkStore) -> u64 {
    ids(store)
        .iter()
        .map(|id| store.meta(id).unwrap().unwrap())
        .filter(|m| m.owner != 0)
        .map(|m| u64::from(m.stored_len))
        .sum()
}

/// Bytes after dedup per bucket, "first writer pays": a chunk counts for the bucket whose
/// write stored it first. A second bucket writing the same bytes is charged nothing, and the
/// chunks stay charged to the first bucket after its objects are deleted, for as long as any
/// bucket (here the second) still references them, so GC keeps them; once nothing does, GC
/// deletes them and both figures go to 0. At every step the figures add up to the stored
/// bytes of the attributed chunks (tree nodes are written for no bucket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_after_dedup_are_charged_to_the_first_writer_until_gc_frees_the_chunks() {
    let dir = tempfile::tempdir().unwrap();
    // A touch interval of 0 allows GC passes with a hold of 0.
    let (c, store) = open(dir.path(), 0);
    let gc_now = || async { c.run_gc(now_ms() + 1, 0, &|_| {}).await.unwrap() };
    let stored = |b: &'static str| {
        let c = &c;
        async move { c.bucket_stored(b).await.unwrap().unwrap() }
    };
    c.create_bucket("first", "o").await.unwrap();
    c.create_bucket("second", "o").await.unwrap();
    assert_eq!(
        stored("first").await,
        OwnerUsage {
            copies: 1,
            ..OwnerUsage::default()
        }
    );

    let shared = random(3 << 20, 21);
    put(&c, "first", "a", &shared).await;
    let first = stored("first").await;
    // Random bytes do not compress: every byte is stored once.
    assert!(first.chunks > 1);
    assert_eq!(first.stored_bytes, shared.len() as u64);
    assert_eq!(first.stored_bytes_per_copy(), first.stored_bytes);

    // The same bytes in another bucket: deduplicated, charged to nobody new.
    put(&c, "second", "b", &shared).await;
    assert_eq!(stored("second").await.stored_bytes, 0);
    assert_eq!(stored("first").await, first);
    // Bytes of its own are charged to the second bucket.
    let own = random(1 << 20, 22);
    put(&c, "second", "own", &own).await;
    let second = stored("second").await;
    assert_eq!(second.stored_bytes, own.len() as u64);
    assert_eq!(
        first.stored_bytes + second.stored_bytes,
        attributed_bytes(&store)
    );
    let unattributed = store.stats().unwrap().stored_bytes - attributed_bytes(&store);
    assert!(unattributed > 0, "tree nodes are written for no bucket");
    let tags = ["first".to_string(), "second".to_string()];
    let both = c.buckets_stored(&tags).await.unwrap().unwrap();
    assert_eq!(both, vec![first, second]);

    // The first bucket's object goes; the second still references its chunks, so GC keeps
    // them and they stay charged to the first bucket.
    c.delete_object("first", "a", &VersionSel::Current)
        .await
        .unwrap();
    gc_now().await;
    assert_eq!(stored("first").await, first);
    assert_eq!(stored("second").await, second);
    assert_eq!(read(&c, "second", "b").await.unwrap(), shared);

    // Nothing references anything: GC deletes it all and both figures are 0.
    c.delete_object("second", "b", &VersionSel::Current)
        .await
        .unwrap();
    c.delete_object("second", "own", &VersionSel::Current)
        .await
        .unwrap();
    let report = gc_now().await;
    assert!(report.chunks_deleted > 0, "{report:?}");
    assert_eq!(stored("first").await.stored_bytes, 0);
    assert_eq!(stored("second").await.stored_bytes, 0);
    assert_eq!(stored("first").await.chunks, 0);
    assert_eq!(attributed_bytes(&store), 0);
    assert_eq!(store.stats().unwrap().stored_bytes, 0);
}
