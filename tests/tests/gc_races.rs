//! Garbage collection against the writes it races on a multi-node site (invariant I6): five
//! storage nodes with replication factor 3 and a sixth node that only runs the S3 gateway, so
//! the gateway is a replica of nothing it writes. Each scenario names the interleaving it
//! forces; the randomized one interleaves uploads, dedup re-uploads, copies, deletes and GC
//! passes and checks every live object after each round.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use cairn_chunkserver::ChunkBackend;
use cairn_client::GcPhase;
use cairn_core::{ChunkId, VersionId};
use cairn_tests::gc::{age_everything, gc_all, slot_of, stored_copy, HOLD_MS};
use cairn_tests::multi::MultiSite;
use cairn_tests::random_bytes;
use cairn_tests::scenario::{bounded, delete, get, put, Gate, MANUAL_WORKERS};
use rand::{Rng, SeedableRng};

const BOUND: Duration = Duration::from_secs(300);

/// The gateway-only node's index.
const GATEWAY: usize = 5;

/// Five storage nodes (chunk and manifest roles) in five zones, RF 3, and a gateway-only node.
async fn site() -> MultiSite {
    let mut roles = vec!["chunk,manifest"; 5];
    roles.push("s3");
    let site = MultiSite::start_with_roles(&roles, 3, 5, MANUAL_WORKERS).await;
    site.s3(GATEWAY)
        .create_bucket()
        .bucket("src")
        .send()
        .await
        .unwrap();
    site
}

/// Interleaving: an object is deleted and its chunks age past the hold; the same bytes are
/// uploaded again through the gateway, whose chunk puts all find their chunk already on every
/// replica (dedup hits, no payload sent); a GC pass runs on every node before the upload's
/// manifest is applied; then the manifest is applied.
///
/// Before the fix a put that found its chunk on a remote replica only asked "have it?", so no
/// replica's reference time moved and every node's sweep took its copy: all three copies of
/// every chunk were gone and the upload acknowledged an object that could not be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dedup_reupload_through_a_gateway_that_is_no_replica_keeps_every_copy() {
    bounded(BOUND, async {
        let site = site().await;
        let s3 = site.s3(GATEWAY);
        let body = random_bytes(3 << 20, 1);
        put(&s3, "src", "old", body.clone()).await;
        let ids = site.all_chunks();
        assert!(ids.len() > 4, "the object spans several chunks");
        let copies: Vec<_> = ids
            .iter()
            .map(|id| (*id, stored_copy(&site, id).unwrap()))
            .collect();
        delete(&s3, "src", "old").await;
        age_everything(&site);

        // The re-upload's chunk puts, through the gateway's replicating backend, as its
        // ingest makes them.
        let backend = site.node(GATEWAY).chunk_backend.clone();
        let skipped_before = backend.counters().payloads_skipped;
        let stored = tokio::task::spawn_blocking(move || {
            copies
                .iter()
                .map(|(id, c)| backend.put(id, c).unwrap())
                .collect::<Vec<bool>>()
        })
        .await
        .unwrap();
        assert!(stored.iter().all(|s| !s), "every chunk was a dedup hit");
        assert!(site.node(GATEWAY).chunk_backend.counters().payloads_skipped > skipped_before);

        for report in gc_all(&site).await {
            assert_eq!(report.phase, GcPhase::Done);
        }
        for id in &ids {
            assert_eq!(
                site.copies(id),
                3,
                "chunk {id} a re-upload deduplicated against lost copies to a sweep"
            );
        }
        // The upload's manifest: the same bytes, written and read through the gateway.
        put(&s3, "src", "new", body.clone()).await;
        assert_eq!(get(&s3, "src", "new").await, body);
        site.shutdown().await;
    })
    .await;
}

/// Interleaving: a GC pass on node G marks; bucket `a-dst` (placed on three nodes, none of
/// them G) is scanned first and is empty but for an anchor object; then an object of bucket
/// `src` is copied by reference into `a-dst` and deleted from `src`; then the mark scans
/// `src` (empty now), re-reads the change logs, and G sweeps.
///
/// Before the fix the mark re-read only G's own change log, which holds only the buckets
/// placed on G: the copy was in no scan, G's copies of its chunks were swept, and the copy
/// was left with fewer copies than the replication factor (none at all once every node that
/// holds none of `a-dst`'s metadata ran the same pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_into_a_bucket_placed_elsewhere_during_the_mark_is_marked() {
    bounded(BOUND, async {
        let site = site().await;
        let s3 = site.s3(GATEWAY);
        s3.create_bucket().bucket("a-dst").send().await.unwrap();
        put(&s3, "a-dst", "anchor", random_bytes(200_000, 2)).await;
        let body = random_bytes(2 << 20, 3);
        let before = site.all_chunks();
        put(&s3, "src", "obj", body.clone()).await;
        let obj_chunks: BTreeSet<ChunkId> =
            site.all_chunks().difference(&before).copied().collect();
        age_everything(&site);

        let placed = site.node(0).manifest_backend.bucket_replicas("a-dst");
        let g = (0..5)
            .find(|k| !placed.iter().any(|id| slot_of(&site, *id) == *k))
            .expect("five nodes, three replicas");
        // Copy and delete once the mark has scanned `a-dst` (its one version).
        let (reached, reached_rx) = tokio::sync::oneshot::channel::<()>();
        let gate = Gate::new(BOUND);
        let go = gate.opener();
        let reached = Mutex::new(Some(reached));
        let client = site.node(g).client.clone();
        let pass = tokio::spawn(async move {
            let progress = |r: &cairn_client::GcReport| {
                if r.phase == GcPhase::Mark && r.versions_scanned == 1 {
                    if let Some(tx) = reached.lock().unwrap().take() {
                        tx.send(()).unwrap();
                        gate.wait();
                    }
                }
            };
            client
                .run_gc(cairn_client::now_ms(), HOLD_MS, &progress)
                .await
                .unwrap()
        });
        reached_rx.await.unwrap();
        s3.copy_object()
            .copy_source("src/obj")
            .bucket("a-dst")
            .key("copy")
            .send()
            .await
            .unwrap();
        delete(&s3, "src", "obj").await;
        drop(go);
        let report = pass.await.unwrap();
        assert_eq!(report.phase, GcPhase::Done);
        for id in &obj_chunks {
            assert_eq!(
                site.copies(id),
                3,
                "chunk {id} of a copy made during the mark was swept on n{}",
                g + 1
            );
        }
        assert_eq!(get(&s3, "a-dst", "copy").await, body);
        site.shutdown().await;
    })
    .await;
}

/// Interleaving: a write's version reached one replica of its bucket but not the write quorum
/// (its writer failed; a read that asks that replica returns it, and anti-entropy copies it to
/// the others later); the object it shares chunks with is deleted, the chunks age past the
/// hold, and every node runs a GC pass; then anti-entropy runs.
///
/// Before the fix the mark listed versions through a read quorum (two of the three replicas,
/// placement order first), so every node but the one holding the version missed it and swept
/// its copies: once anti-entropy spread the version, it named chunks with fewer copies than
/// the replication factor, or none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_a_failed_write_left_on_one_replica_is_marked() {
    bounded(BOUND, async {
        let site = site().await;
        let s3 = site.s3(GATEWAY);
        let body = random_bytes(3 << 20, 4);
        put(&s3, "src", "orig", body.clone()).await;
        let ids = site.all_chunks();
        let replicas = site.node(0).manifest_backend.bucket_replicas("src");
        assert_eq!(replicas.len(), 3);
        let last = slot_of(&site, replicas[2]);
        // The write is acknowledged at the write quorum: take its manifest from a replica
        // that has it.
        let mut m = replicas
            .iter()
            .find_map(|id| {
                let store = site.node(slot_of(&site, *id)).manifests.clone().unwrap();
                store.current("src", "orig").unwrap()
            })
            .expect("the write quorum holds the version");
        let store = site.node(last).manifests.clone().unwrap();
        m.key = "partial".into();
        m.parent = None;
        m.version = VersionId::new(cairn_client::now_ms(), 0, 0, replicas[2]);
        store.apply(&m).unwrap();
        delete(&s3, "src", "orig").await;
        age_everything(&site);

        for report in gc_all(&site).await {
            assert_eq!(report.phase, GcPhase::Done);
        }
        for id in &ids {
            assert_eq!(
                site.copies(id),
                3,
                "chunk {id} of a version held by one replica was swept"
            );
        }
        for k in 0..5 {
            site.node(k)
                .manifest_backend
                .anti_entropy_pass()
                .await
                .unwrap();
        }
        assert_eq!(get(&s3, "src", "partial").await, body);
        site.shutdown().await;
    })
    .await;
}

/// What the model expects under a key (`bucket/key`).
type Model = BTreeMap<String, Vec<u8>>;

/// Randomized: rounds of concurrent writes racing GC passes on every node. Between rounds,
/// with nothing in flight, every stored chunk is aged past the hold; then a round's
/// operations run at once while every node runs a GC pass: new uploads, re-uploads of bytes
/// deleted in earlier rounds (dedup against aged chunks on replicas the gateway is not),
/// copies by reference of aged objects into either bucket, multipart uploads whose one part
/// is a copy of an aged object, and deletes of aged objects — some of them the very sources
/// being copied. After each round, and again after a second pass with nothing racing, every
/// object the model holds reads back exactly; a copy may fail only when its source was
/// deleted in the same round, and then its destination must not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn randomized_uploads_copies_deletes_and_gc_passes_lose_no_live_object() {
    bounded(BOUND, async {
        let site = site().await;
        let s3 = site.s3(GATEWAY);
        s3.create_bucket().bucket("bk2").send().await.unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut model: Model = BTreeMap::new();
        // Bodies deleted in earlier rounds, for dedup re-uploads.
        let mut graveyard: Vec<Vec<u8>> = Vec::new();
        let mut next = 0u64;
        for round in 0..4 {
            age_everything(&site);
            let live: Vec<String> = model.keys().cloned().collect();
            let mut ops = Vec::new();
            for _ in 0..10 {
                next += 1;
                let bucket = if rng.gen_bool(0.5) { "src" } else { "bk2" };
                let key = format!("{bucket}/k{next}");
                let op = match rng.gen_range(0..5) {
                    0 if !graveyard.is_empty() => {
                        let body = graveyard[rng.gen_range(0..graveyard.len())].clone();
                        Op::Put { key, body }
                    }
                    1 | 2 if !live.is_empty() => Op::Copy {
                        from: live[rng.gen_range(0..live.len())].clone(),
                        to: key,
                    },
                    3 if !live.is_empty() => Op::PartCopy {
                        from: live[rng.gen_range(0..live.len())].clone(),
                        to: key,
                    },
                    _ => {
                        let len = rng.gen_range(5_000..1_500_000);
                        Op::Put {
                            key,
                            body: random_bytes(len, 1000 + next),
                        }
                    }
                };
                ops.push(op);
            }
            let deleted: Vec<String> = live.iter().filter(|_| rng.gen_bool(0.4)).cloned().collect();
            ops.extend(deleted.iter().map(|key| Op::Delete { key: key.clone() }));
            let writes = {
                let (s3, ops) = (s3.clone(), ops.clone());
                tokio::spawn(async move {
                    futures::future::join_all(ops.iter().map(|op| op.run(&s3))).await
                })
            };
            for report in gc_all(&site).await {
                assert_eq!(report.phase, GcPhase::Done);
            }
            let results = writes.await.unwrap();

            let before = model.clone();
            for key in &deleted {
                graveyard.push(model.remove(key).unwrap());
            }
            let mut absent = Vec::new();
            for (op, ok) in ops.into_iter().zip(results) {
                match op {
                    Op::Put { key, body } => {
                        assert!(ok, "round {round}: put of {key} failed");
                        model.insert(key, body);
                    }
                    Op::Copy { from, to } | Op::PartCopy { from, to } if ok => {
                        model.insert(to, before[&from].clone());
                    }
                    Op::Copy { from, to } | Op::PartCopy { from, to } => {
                        assert!(
                            deleted.contains(&from),
                            "round {round}: a copy of {from} failed while its source was live"
                        );
                        absent.push(to);
                    }
                    Op::Delete { key } => assert!(ok, "round {round}: delete of {key} failed"),
                }
            }
            check(&s3, &model, &absent, round).await;
            // A second pass on every node, nothing racing: what is live stays.
            gc_all(&site).await;
            check(&s3, &model, &absent, round).await;
        }
        site.shutdown().await;
    })
    .await;
}

/// Every object of the model reads back exactly; every key of `absent` is not found.
async fn check(s3: &aws_sdk_s3::Client, model: &Model, absent: &[String], round: usize) {
    for (key, body) in model {
        let (b, k) = key.split_once('/').unwrap();
        assert_eq!(
            &get(s3, b, k).await,
            body,
            "round {round}: {key} does not read back"
        );
    }
    for key in absent {
        let (b, k) = key.split_once('/').unwrap();
        let head = s3.head_object().bucket(b).key(k).send().await;
        assert!(head.is_err(), "round {round}: a failed copy left {key}");
    }
}

#[derive(Clone, Debug)]
enum Op {
    Delete { key: String },
    Put { key: String, body: Vec<u8> },
    Copy { from: String, to: String },
    PartCopy { from: String, to: String },
}

impl Op {
    /// Runs the operation; whether it succeeded.
    async fn run(&self, s3: &aws_sdk_s3::Client) -> bool {
        match self {
            Op::Delete { key } => {
                let (b, k) = key.split_once('/').unwrap();
                s3.delete_object().bucket(b).key(k).send().await.is_ok()
            }
            Op::Put { key, body } => {
                let (b, k) = key.split_once('/').unwrap();
                put(s3, b, k, body.clone()).await;
                true
            }
            Op::Copy { from, to } => {
                let (b, k) = to.split_once('/').unwrap();
                s3.copy_object()
                    .copy_source(from)
                    .bucket(b)
                    .key(k)
                    .send()
                    .await
                    .is_ok()
            }
            Op::PartCopy { from, to } => {
                let (b, k) = to.split_once('/').unwrap();
                let up = s3
                    .create_multipart_upload()
                    .bucket(b)
                    .key(k)
                    .send()
                    .await
                    .unwrap();
                let id = up.upload_id().unwrap();
                let Ok(part) = s3
                    .upload_part_copy()
                    .bucket(b)
                    .key(k)
                    .upload_id(id)
                    .part_number(1)
                    .copy_source(from)
                    .send()
                    .await
                else {
                    return false;
                };
                let etag = part
                    .copy_part_result()
                    .unwrap()
                    .e_tag()
                    .unwrap()
                    .to_string();
                let parts = aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .parts(
                        aws_sdk_s3::types::CompletedPart::builder()
                            .part_number(1)
                            .e_tag(etag)
                            .build(),
                    )
                    .build();
                s3.complete_multipart_upload()
                    .bucket(b)
                    .key(k)
                    .upload_id(id)
                    .multipart_upload(parts)
                    .send()
                    .await
                    .is_ok()
            }
        }
    }
}
