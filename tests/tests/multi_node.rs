//! A whole multi-node site in one test process ([`MultiSite`]: every node a full
//! `cairn serve --config` node with real QUIC, mutual TLS and RocksDB), driven through the AWS
//! SDK: losing a node under load, repair, scrub, adding a node, garbage collection, and a node
//! from another CA.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use cairn_chunkserver::WorkerKind;
use cairn_core::cluster::NodeInfo;
use cairn_core::placement::place_chunk;
use cairn_core::ChunkId;
use cairn_tests::multi::{MultiSite, SITE};
use cairn_tests::random_bytes;
use cairn_tests::scenario::{bounded, eventually, get, put, MANUAL_WORKERS};

/// Every scenario runs under this bound.
const BOUND: Duration = Duration::from_secs(240);

/// Runs repair and rebalance passes on every running chunk node, `rounds` times.
async fn repair_all(site: &MultiSite, rounds: usize) {
    for _ in 0..rounds {
        for slot in &site.slots {
            if let Some(m) = slot.node.as_ref().and_then(|n| n.maintenance.clone()) {
                for kind in [WorkerKind::Repair, WorkerKind::Rebalance] {
                    // The node's own worker may be running a pass (its first comes 30 s after
                    // start): wait for it, then run one.
                    let mut tries = 0;
                    loop {
                        match m.run_pass(kind).await {
                            Ok(_) => break,
                            Err(e) if e.to_string().contains("already running") && tries < 600 => {
                                tries += 1;
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(e) => panic!("{} pass: {e}", kind.name()),
                        }
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_a_node_under_load_fails_no_request_and_repair_restores_every_copy() {
    bounded(BOUND, async {
        let mut site = MultiSite::start(3, 3, 3, MANUAL_WORKERS).await;
        site.s3(0)
            .create_bucket()
            .bucket("load")
            .send()
            .await
            .unwrap();

        // The node killed is the bucket's primary metadata replica (which decides conditional
        // writes); two writers go through the other two nodes, each writing (every third PUT
        // with If-None-Match: *) and reading back its objects.
        let primary = site.node(0).manifest_backend.bucket_replicas("load")[0];
        let victim = (0..3)
            .find(|&k| site.node(k).cluster.me() == primary)
            .unwrap();
        let gateways: Vec<usize> = (0..3).filter(|&k| k != victim).collect();
        // Each writer does its first 8 objects with every node up, then waits for the kill,
        // then does 16 more: the kill falls in the middle of the load whatever the timing.
        let (killed_tx, killed_rx) = tokio::sync::watch::channel(false);
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(2);
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let s3 = site.s3(gateways[w]);
                let (mut killed, ready) = (killed_rx.clone(), ready_tx.clone());
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    for i in 0..24u64 {
                        if i == 8 {
                            ready.send(()).await.unwrap();
                            killed.wait_for(|k| *k).await.unwrap();
                        }
                        let key = format!("w{w}/obj{i}");
                        let body = random_bytes(
                            64 * 1024 + (i as usize % 5) * 150_000,
                            w as u64 * 1000 + i,
                        );
                        let mut req = s3
                            .put_object()
                            .bucket("load")
                            .key(&key)
                            .body(ByteStream::from(body.clone()));
                        if i % 3 == 0 {
                            req = req.if_none_match("*");
                        }
                        if let Err(e) = req.send().await {
                            failures.push(format!("put {key}: {e:?}"));
                            continue;
                        }
                        match s3.get_object().bucket("load").key(&key).send().await {
                            Ok(o) => {
                                let got = o.body.collect().await.unwrap().into_bytes();
                                if got.as_ref() != body.as_slice() {
                                    failures.push(format!("get {key}: other bytes"));
                                }
                            }
                            Err(e) => failures.push(format!("get {key}: {e:?}")),
                        }
                    }
                    failures
                })
            })
            .collect();
        for _ in 0..2 {
            ready_rx.recv().await.unwrap();
        }
        site.kill_node(victim).await;
        killed_tx.send(true).unwrap();
        let mut failures = Vec::new();
        for w in writers {
            failures.extend(w.await.unwrap());
        }
        assert!(
            failures.is_empty(),
            "requests failed with a node down: {failures:#?}"
        );

        // Back up: repair brings every chunk back to three copies.
        site.start_node(victim).await;
        let chunks = site.all_chunks();
        assert!(chunks.len() > 48, "{} chunks", chunks.len());
        let under: usize = chunks.iter().filter(|id| site.copies(id) < 3).count();
        assert!(
            under > 0,
            "the killed node missed nothing while it was down: the scenario tests nothing"
        );
        repair_all(&site, 1).await;
        let short: Vec<&ChunkId> = chunks.iter().filter(|id| site.copies(id) != 3).collect();
        assert!(
            short.is_empty(),
            "{} of {} chunks lack a copy after repair",
            short.len(),
            chunks.len()
        );

        // Every object reads back through the restarted node.
        for w in 0..2u64 {
            for i in 0..24u64 {
                let body = random_bytes(64 * 1024 + (i as usize % 5) * 150_000, w * 1000 + i);
                assert_eq!(
                    get(&site.s3(victim), "load", &format!("w{w}/obj{i}")).await,
                    body
                );
            }
        }
        site.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scrub_repairs_a_corrupt_copy_and_reads_stay_correct_meanwhile() {
    bounded(BOUND, async {
        let site = MultiSite::start(3, 3, 3, MANUAL_WORKERS).await;
        let s3 = site.s3(0);
        s3.create_bucket().bucket("scrub").send().await.unwrap();
        let body = random_bytes(3 << 20, 7);
        put(&s3, "scrub", "obj", body.clone()).await;

        let store = site.node(0).chunks.clone().unwrap();
        let ids: Vec<ChunkId> = site.all_chunks().into_iter().collect();
        let victim = ids[ids.len() / 2];
        let good = store.get(&victim).unwrap().unwrap();
        store.corrupt_for_test(&victim, b"bit rot").unwrap();
        assert!(
            store.get(&victim).is_err(),
            "the corrupt copy still verifies"
        );

        // A read in between still returns the right bytes (another replica serves the chunk).
        assert_eq!(get(&s3, "scrub", "obj").await, body);

        let m = site.node(0).maintenance.clone().unwrap();
        let report = m.run_pass(WorkerKind::Scrub).await.unwrap();
        assert_eq!(
            (report.corrupt_found, report.corrupt_repaired),
            (1, 1),
            "{report:?}"
        );
        assert_eq!(store.get(&victim).unwrap().unwrap(), good);
        assert_eq!(get(&s3, "scrub", "obj").await, body);

        // The node's /metrics show its own store, its calls to peers, its S3 requests and the
        // scrub it ran.
        let text = site.metrics(0).await;
        let chunks = store.stats().unwrap().chunks;
        for line in [
            format!("cairn_node_chunks {chunks}"),
            "cairn_s3_requests_total{op=\"GetObject\",status=\"200\"} 2".to_string(),
            "cairn_rpc_calls_total{peer=\"n2\"}".to_string(),
            "cairn_worker_corrupt_repaired_total{worker=\"scrub\"} 1".to_string(),
            "cairn_manifest_".to_string(),
        ] {
            assert!(text.contains(&line), "/metrics lacks `{line}`:\n{text}");
        }
        site.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_node_takes_its_share_and_every_object_stays_readable() {
    bounded(BOUND, async {
        let mut site = MultiSite::start(3, 3, 3, MANUAL_WORKERS).await;
        site.s3(0)
            .create_bucket()
            .bucket("grow")
            .send()
            .await
            .unwrap();
        let mut bodies = Vec::new();
        for i in 0..20u64 {
            let body = random_bytes(200_000 + i as usize * 10_000, 100 + i);
            put(&site.s3(0), "grow", &format!("o{i}"), body.clone()).await;
            bodies.push(body);
        }

        let (k, map, answers) = site.join_new_node().await;
        assert_eq!(map.epoch, 2);
        assert!(answers.values().all(|a| a.is_ok()), "{answers:?}");
        for slot in &site.slots {
            assert_eq!(slot.node.as_ref().unwrap().cluster.map().epoch, 2);
        }

        // Rebalance while reading every object through the old and the new node.
        let readers: Vec<_> = [0usize, k]
            .into_iter()
            .map(|n| {
                let (s3, bodies) = (site.s3(n), bodies.clone());
                tokio::spawn(async move {
                    for round in 0..3 {
                        for (i, body) in bodies.iter().enumerate() {
                            let o = s3
                                .get_object()
                                .bucket("grow")
                                .key(format!("o{i}"))
                                .send()
                                .await;
                            let got = match o {
                                Ok(o) => o.body.collect().await.unwrap().into_bytes(),
                                Err(e) => panic!("round {round}, o{i} through node {n}: {e:?}"),
                            };
                            assert_eq!(got.as_ref(), body.as_slice(), "o{i}");
                        }
                    }
                })
            })
            .collect();
        repair_all(&site, 2).await;
        for r in readers {
            r.await.unwrap();
        }

        let chunks = site.all_chunks();
        let on_new = site
            .node(k)
            .chunks
            .as_ref()
            .unwrap()
            .stats()
            .unwrap()
            .chunks;
        assert!(on_new > 0, "n4 received nothing");
        for id in &chunks {
            let want: BTreeSet<_> = place_chunk(&map, id).into_iter().collect();
            let have: BTreeSet<_> = site
                .slots
                .iter()
                .filter_map(|s| s.node.as_ref())
                .filter(|n| n.chunks.as_ref().unwrap().meta(id).unwrap().is_some())
                .map(|n| n.cluster.me())
                .collect();
            assert_eq!(have, want, "chunk {id} is not where placement puts it");
        }
        for (i, body) in bodies.iter().enumerate() {
            assert_eq!(&get(&site.s3(k), "grow", &format!("o{i}")).await, body);
        }
        site.shutdown().await;
    })
    .await;
}

/// How many passes of worker `name` on node `k` were started by `why`.
fn triggered(site: &MultiSite, k: usize, name: &str, why: &str) -> u64 {
    site.node(k)
        .workers
        .statuses()
        .into_iter()
        .find(|w| w.name == name)
        .and_then(|w| w.triggers.get(why).copied())
        .unwrap_or(0)
}

/// Whether every chunk is on exactly the nodes `map` places it on.
fn placed_as(site: &MultiSite, map: &cairn_core::cluster::ClusterMap) -> bool {
    site.all_chunks().iter().all(|id| {
        let want: BTreeSet<_> = place_chunk(map, id).into_iter().collect();
        let have: BTreeSet<_> = site
            .slots
            .iter()
            .filter_map(|s| s.node.as_ref())
            .filter(|n| n.chunks.as_ref().unwrap().meta(id).unwrap().is_some())
            .map(|n| n.cluster.me())
            .collect();
        have == want
    })
}

/// Repair and rebalance react instead of waiting for their timers (hours here): a node back
/// from a crash gets what it missed from a repair pass its peers start when it answers again,
/// and a map change (a fourth node) starts rebalance on every node at once. The workers'
/// status says what started each pass. (With `react_to_changes = false` the first check
/// fails: only a timed pass repairs n3.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_and_rebalance_start_at_once_when_a_node_is_back_or_the_map_changes() {
    bounded(BOUND, async {
        let reacting =
            MANUAL_WORKERS.replace("react_to_changes = false", "react_to_changes = true");
        let mut site = MultiSite::start(3, 3, 3, &reacting).await;
        let s3 = site.s3(0);
        s3.create_bucket().bucket("react").send().await.unwrap();
        for i in 0..4u64 {
            put(
                &s3,
                "react",
                &format!("before{i}"),
                random_bytes(300_000, 200 + i),
            )
            .await;
        }
        let before = site.all_chunks();
        site.kill_node(2).await;
        for i in 0..8u64 {
            put(
                &s3,
                "react",
                &format!("missed{i}"),
                random_bytes(300_000, 300 + i),
            )
            .await;
        }
        let missed: Vec<ChunkId> = site.all_chunks().difference(&before).copied().collect();
        assert!(!missed.is_empty());
        // n1 and n2 have seen n3 fail (their map gossip, every few seconds), so its return is
        // news to them.
        let n3_id = cairn::node::config::node_id(SITE, "n3");
        eventually("n1 and n2 saw n3 down", BOUND, || {
            (0..2).all(|k| site.node(k).cluster.is_unreachable(n3_id))
        })
        .await;
        site.start_node(2).await;
        let n3 = site.node(2).chunks.clone().unwrap();
        eventually(
            "n3 holds every chunk written while it was down",
            BOUND,
            || missed.iter().all(|id| n3.meta(id).unwrap().is_some()),
        )
        .await;
        assert!(
            (0..2).any(|k| triggered(&site, k, "repair", "node back") > 0),
            "no repair pass was started by n3's return"
        );

        let (k, map, _) = site.join_new_node().await;
        eventually("every chunk is where the new map places it", BOUND, || {
            placed_as(&site, &map)
        })
        .await;
        assert!(
            (0..3).any(|k| triggered(&site, k, "rebalance", "map change") > 0),
            "no rebalance pass was started by the map change"
        );
        for i in 0..8u64 {
            assert_eq!(
                get(&site.s3(k), "react", &format!("missed{i}")).await,
                random_bytes(300_000, 300 + i)
            );
        }
        site.shutdown().await;
    })
    .await;
}

/// Site totals come from every node: on five nodes with RF 3 each node holds the metadata of
/// only some buckets, yet every node's `cairn stats` totals (and its /metrics gauges) count
/// every bucket and version of the site once. (Before, a node reported its own store's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_reports_the_whole_sites_totals() {
    bounded(BOUND, async {
        let site = MultiSite::start(5, 3, 5, MANUAL_WORKERS).await;
        let s3 = site.s3(0);
        let mut logical = 0u64;
        for b in 0..6u64 {
            let name = format!("tot{b}");
            s3.create_bucket().bucket(&name).send().await.unwrap();
            for i in 0..=b {
                let len = 5_000 + (b * 10 + i) as usize * 100;
                put(&s3, &name, &format!("o{i}"), random_bytes(len, b * 10 + i)).await;
                logical += len as u64;
            }
        }
        let placed: Vec<usize> = (0..6)
            .map(|b| {
                site.node(0)
                    .manifest_backend
                    .bucket_replicas(&format!("tot{b}"))
                    .len()
            })
            .collect();
        assert!(placed.iter().all(|n| *n == 3));
        let versions = (1..=6u64).sum::<u64>();
        for k in 0..5 {
            let client = site.node(k).client.clone();
            let own = site.node(k).manifests.as_ref().unwrap().stats().unwrap();
            assert!(
                own.buckets < 6,
                "n{} holds every bucket: pick other names",
                k + 1
            );
            let mut last = None;
            for _ in 0..100 {
                let s = client.stats().await.unwrap();
                if (s.buckets, s.versions, s.logical_bytes) == (6, versions, logical) {
                    last = None;
                    break;
                }
                last = Some(s);
                // Third replicas are written in the background: wait for them.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(last.is_none(), "n{} totals: {last:?}", k + 1);
            let metrics = site.metrics(k).await;
            assert!(
                metrics.contains(&format!("cairn_logical_bytes {logical}")),
                "n{}: {metrics}",
                k + 1
            );
        }
        site.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_removes_only_what_deleted_objects_alone_used_and_racing_uploads_lose_nothing() {
    bounded(BOUND, async {
        let site = MultiSite::start(3, 3, 3, MANUAL_WORKERS).await;
        let s3 = site.s3(0);
        s3.create_bucket().bucket("gcb").send().await.unwrap();
        let live = random_bytes(2 << 20, 1);
        put(&s3, "gcb", "live", live.clone()).await;
        let live_chunks = site.all_chunks();
        put(&s3, "gcb", "twin", live.clone()).await; // same chunks as `live`
        let doomed = random_bytes(2 << 20, 2);
        put(&s3, "gcb", "doomed", doomed).await;
        let doomed_chunks: BTreeSet<ChunkId> = site
            .all_chunks()
            .difference(&live_chunks)
            .copied()
            .collect();
        assert!(!doomed_chunks.is_empty());
        for key in ["twin", "doomed"] {
            s3.delete_object()
                .bucket("gcb")
                .key(key)
                .send()
                .await
                .unwrap();
        }

        // Everything stored so far is two hours old: the one-hour hold has passed for it.
        for slot in &site.slots {
            let store = slot.node.as_ref().unwrap().chunks.clone().unwrap();
            for id in site.all_chunks() {
                store.backdate_for_test(&id, 2 * 3600 * 1000).unwrap();
            }
        }

        // Uploads race the GC passes of every node.
        let racer = {
            let s3 = s3.clone();
            tokio::spawn(async move {
                for i in 0..8u64 {
                    put(
                        &s3,
                        "gcb",
                        &format!("racing{i}"),
                        random_bytes(300_000, 50 + i),
                    )
                    .await;
                }
            })
        };
        for slot in &site.slots {
            let client = slot.node.as_ref().unwrap().client.clone();
            let report = client
                .run_gc(cairn_client::now_ms(), 3600 * 1000, &|_| {})
                .await
                .expect("gc pass");
            assert!(report.chunks_deleted > 0, "{report:?}");
        }
        racer.await.unwrap();

        for id in &doomed_chunks {
            assert_eq!(
                site.copies(id),
                0,
                "chunk {id} of a deleted object survived"
            );
        }
        for id in &live_chunks {
            assert_eq!(
                site.copies(id),
                3,
                "chunk {id} of a live object was collected"
            );
        }
        assert_eq!(get(&s3, "gcb", "live").await, live);
        for i in 0..8u64 {
            assert_eq!(
                get(&site.s3(1), "gcb", &format!("racing{i}")).await,
                random_bytes(300_000, 50 + i)
            );
        }
        site.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_a_certificate_from_another_ca_cannot_join_or_call() {
    bounded(BOUND, async {
        let site = MultiSite::start(3, 3, 3, MANUAL_WORKERS).await;
        // An impostor with the right site and node name, from another CA.
        let other = cairn_net::SiteCa::generate(SITE).unwrap();
        let impostor = other.issue_node("n4", &[]).unwrap();
        let client = cairn_net::Client::new(
            &impostor,
            cairn_net::NetConfig::default(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let n1 = site.node(0);
        let peer = client
            .peer(n1.rpc_addr, "n1")
            .with_timeout(Duration::from_secs(3));
        let map = peer
            .call(&cairn::node::cluster::ClusterRequest::GetMap { epoch: 0 })
            .await;
        assert!(map.is_err(), "the cluster service answered an impostor");
        let chunks = cairn_chunkserver::RemoteChunks::new(peer.clone());
        assert!(chunks.have(&[ChunkId([7; 32])]).await.is_err());
        let meta = cairn_manifestserver::RemoteManifest::new(peer);
        assert!(meta.list_buckets().await.is_err());

        // Served by a node of the impostor's CA, it is not reachable from the site either:
        // a map naming it cannot be pushed to it.
        let server = cairn_net::Server::builder(&impostor, cairn_net::NetConfig::default())
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stop_rx.await;
        }));
        let cluster = n1.cluster.clone();
        let id = cairn::node::config::node_id(SITE, "n4");
        cluster
            .stage(|s| {
                s.upsert
                    .push(NodeInfo::new(id, "n4", addr.to_string(), "z4"))
            })
            .unwrap();
        let (_, _, answers) = cluster.apply_staged().await.unwrap();
        assert!(answers["n4"].is_err(), "{answers:?}");
        for n in ["n2", "n3"] {
            assert_eq!(answers[n], Ok(true), "{answers:?}");
        }
        let _ = stop_tx.send(());
        task.await.unwrap().unwrap();
        site.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_minority_refuses_writes_and_catches_up_after_healing() {
    bounded(BOUND, async {
        let site = MultiSite::start(3, 3, 3, MANUAL_WORKERS).await;
        site.s3(0)
            .create_bucket()
            .bucket("split")
            .send()
            .await
            .unwrap();
        put(&site.s3(0), "split", "before", random_bytes(100_000, 1)).await;

        site.partition(&[2], &[0, 1]);
        // The majority side takes writes and serves reads.
        let mut bodies = Vec::new();
        for i in 0..6u64 {
            let body = random_bytes(150_000, 10 + i);
            put(
                &site.s3(i as usize % 2),
                "split",
                &format!("during{i}"),
                body.clone(),
            )
            .await;
            bodies.push(body);
        }
        assert_eq!(get(&site.s3(1), "split", "during0").await, bodies[0]);
        // The minority cannot reach a write quorum: it refuses rather than acknowledging.
        let refused = site
            .s3(2)
            .put_object()
            .bucket("split")
            .key("minority")
            .body(ByteStream::from(random_bytes(1000, 99)))
            .send()
            .await;
        assert!(
            refused.is_err(),
            "a node cut off from the others acknowledged a write"
        );

        site.heal();
        // Anti-entropy and repair bring n3 up to date; every object reads back through it.
        for k in 0..3 {
            site.node(k)
                .manifest_backend
                .anti_entropy_pass()
                .await
                .unwrap();
        }
        repair_all(&site, 1).await;
        let short = site
            .all_chunks()
            .into_iter()
            .filter(|id| site.copies(id) != 3)
            .count();
        assert_eq!(short, 0, "chunks without three copies after healing");
        let n3_meta = site.node(2).manifests.clone().unwrap();
        for i in 0..6u64 {
            let key = format!("during{i}");
            assert!(
                n3_meta.current("split", &key).unwrap().is_some(),
                "{key} missing on n3"
            );
            assert_eq!(get(&site.s3(2), "split", &key).await, bodies[i as usize]);
        }
        assert!(n3_meta.current("split", "minority").unwrap().is_none());
        site.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_node_is_removed_repair_and_anti_entropy_restore_every_copy_elsewhere() {
    bounded(BOUND, async {
        let mut site = MultiSite::start(4, 3, 4, MANUAL_WORKERS).await;
        let mut bodies = Vec::new();
        for b in 0..3 {
            let bucket = format!("shrink{b}");
            site.s3(0)
                .create_bucket()
                .bucket(&bucket)
                .send()
                .await
                .unwrap();
            for i in 0..6u64 {
                let body = random_bytes(120_000, 1000 * b + i);
                put(
                    &site.s3(b as usize),
                    &bucket,
                    &format!("o{i}"),
                    body.clone(),
                )
                .await;
                bodies.push((bucket.clone(), format!("o{i}"), body));
            }
        }

        // Anti-entropy has run before: every node's cursor is at the end of its peers' logs.
        for k in 0..4 {
            site.node(k)
                .manifest_backend
                .anti_entropy_pass()
                .await
                .unwrap();
        }

        // n2 goes away for good: removed from the map, then stopped.
        let cluster = site.node(0).cluster.clone();
        let n2 = site.node(1).cluster.me();
        cluster.stage(|s| s.remove.push(n2)).unwrap();
        let (map, _, _) = cluster.apply_staged().await.unwrap();
        site.kill_node(1).await;
        for k in [0, 2, 3] {
            assert_eq!(site.node(k).cluster.map().epoch, map.epoch);
            // Reads still ask the old placement: no node has caught up under the new map.
            let backend = &site.node(k).manifest_backend;
            assert!(backend.has_previous_map());
            assert!(!backend.forget_previous_map_when_synced().await.unwrap());
        }

        // Metadata: each remaining node's anti-entropy re-reads its peers' logs under the new
        // map, so the buckets placement now gives it are filled; then reads stop falling back
        // to the old placement.
        for k in [0, 2, 3] {
            site.node(k)
                .manifest_backend
                .anti_entropy_pass()
                .await
                .unwrap();
        }
        // Every replica the new placement names holds every object in its own store (checked
        // before any read, which would repair it).
        for (bucket, key, _) in &bodies {
            let replicas = site.node(0).manifest_backend.bucket_replicas(bucket);
            assert_eq!(replicas.len(), 3);
            for k in [0, 2, 3] {
                let node = site.node(k);
                if replicas.contains(&node.cluster.me()) {
                    let store = node.manifests.as_ref().unwrap();
                    assert!(
                        store.current(bucket, key).unwrap().is_some(),
                        "n{} is a replica of {bucket} but lacks {key}",
                        k + 1
                    );
                }
            }
        }
        // Every node caught up under the new map: each node's backend (the map-handover worker
        // does this every few seconds) stops asking the old placement.
        for k in [0, 2, 3] {
            let backend = &site.node(k).manifest_backend;
            backend.forget_previous_map_when_synced().await.unwrap();
            assert!(!backend.has_previous_map(), "n{} kept the old map", k + 1);
        }
        repair_all(&site, 1).await;

        for id in site.all_chunks() {
            let want: BTreeSet<_> = place_chunk(&map, &id).into_iter().collect();
            assert_eq!(want.len(), 3);
            assert!(!want.contains(&n2));
            assert_eq!(site.copies(&id), 3, "chunk {id} lacks copies after n2 left");
        }
        for k in [0, 2, 3] {
            for (bucket, key, body) in &bodies {
                assert_eq!(
                    &get(&site.s3(k), bucket, key).await,
                    body,
                    "{bucket}/{key} via n{}",
                    k + 1
                );
            }
            let listed = site
                .s3(k)
                .list_objects_v2()
                .bucket("shrink1")
                .send()
                .await
                .unwrap()
                .key_count();
            assert_eq!(listed, Some(6), "listing through n{}", k + 1);
        }
        site.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_only_node_serves_s3_from_storage_nodes_that_serve_none() {
    bounded(BOUND, async {
        let roles = ["chunk,manifest", "chunk,manifest", "chunk,manifest", "s3"];
        let site = MultiSite::start_with_roles(&roles, 3, 3, MANUAL_WORKERS).await;
        let gateway = site.node(3);
        assert!(gateway.chunks.is_none() && gateway.manifests.is_none());
        assert!(
            site.node(0).s3_addr.is_none(),
            "a storage-only node serves S3"
        );

        let s3 = site.s3(3);
        s3.create_bucket()
            .bucket("split-roles")
            .send()
            .await
            .unwrap();
        let body = random_bytes(1 << 20, 5);
        put(&s3, "split-roles", "obj", body.clone()).await;
        assert_eq!(get(&s3, "split-roles", "obj").await, body);

        // The data is on the storage nodes, three copies of every chunk, and the metadata on
        // all three manifest nodes; the gateway holds nothing.
        let chunks = site.all_chunks();
        assert!(!chunks.is_empty());
        for id in &chunks {
            assert_eq!(site.copies(id), 3, "chunk {id}");
        }
        for k in 0..3 {
            let store = site.node(k).manifests.clone().unwrap();
            assert!(
                store.current("split-roles", "obj").unwrap().is_some(),
                "n{}",
                k + 1
            );
        }
        site.shutdown().await;
    })
    .await;
}

/// The status, S3 code and `x-amz-delete-marker` header of a failed GET or HEAD.
fn refusal<E: ProvideErrorMetadata>(
    e: &SdkError<E, HttpResponse>,
) -> (u16, String, Option<String>) {
    let raw = e.raw_response().expect("an http response");
    (
        raw.status().as_u16(),
        e.code().unwrap_or_default().to_string(),
        raw.headers().get("x-amz-delete-marker").map(str::to_string),
    )
}

/// GET and HEAD answer as S3 does when the access check's one read hands the version to the
/// operation on a multi-node site (the S3 behaviour tests run on a single node): a missing
/// bucket, a missing key, a key hidden by a delete marker (404 naming it), the marker by id
/// (405), an older version by id, the null version, a range, a part number and a condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gets_and_heads_answer_as_s3_on_a_multi_node_site() {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    bounded(BOUND, async {
        let site = MultiSite::start(3, 3, 3, MANUAL_WORKERS).await;
        let s3 = site.s3(1);
        s3.create_bucket().bucket("ver").send().await.unwrap();
        put(&s3, "ver", "k", b"before".to_vec()).await;
        s3.put_bucket_versioning()
            .bucket("ver")
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let v1 = s3
            .put_object()
            .bucket("ver")
            .key("k")
            .body(ByteStream::from_static(b"version one"))
            .send()
            .await
            .unwrap()
            .version_id
            .unwrap();
        let marker = s3
            .delete_object()
            .bucket("ver")
            .key("k")
            .send()
            .await
            .unwrap();
        assert_eq!(marker.delete_marker, Some(true));
        let marker = marker.version_id.unwrap();

        let get = |bucket: &'static str, key: &'static str, version: Option<&str>| {
            s3.get_object()
                .bucket(bucket)
                .key(key)
                .set_version_id(version.map(str::to_string))
        };
        let e = get("nobucket", "k", None).send().await.unwrap_err();
        assert_eq!(refusal(&e), (404, "NoSuchBucket".into(), None));
        let e = get("ver", "never", None).send().await.unwrap_err();
        assert_eq!(refusal(&e), (404, "NoSuchKey".into(), None));
        let e = get("ver", "k", None).send().await.unwrap_err();
        assert_eq!(refusal(&e), (404, "NoSuchKey".into(), Some("true".into())));
        let e = get("ver", "k", Some(&marker)).send().await.unwrap_err();
        assert_eq!(
            refusal(&e),
            (405, "MethodNotAllowed".into(), Some("true".into()))
        );
        let e = s3
            .head_object()
            .bucket("ver")
            .key("k")
            .send()
            .await
            .unwrap_err();
        assert_eq!(refusal(&e).0, 404);
        let got = get("ver", "k", Some(&v1)).send().await.unwrap();
        assert_eq!(got.version_id.as_deref(), Some(v1.as_str()));
        let body = got.body.collect().await.unwrap().into_bytes();
        assert_eq!(&body[..], b"version one");
        let got = get("ver", "k", Some("null")).send().await.unwrap();
        assert_eq!(got.version_id.as_deref(), Some("null"));
        assert_eq!(
            &got.body.collect().await.unwrap().into_bytes()[..],
            b"before"
        );
        let got = get("ver", "k", Some(&v1))
            .range("bytes=8-")
            .send()
            .await
            .unwrap();
        assert_eq!(&got.body.collect().await.unwrap().into_bytes()[..], b"one");
        let got = get("ver", "k", Some(&v1))
            .part_number(1)
            .send()
            .await
            .unwrap();
        assert_eq!(got.content_length(), Some(11));
        let head = s3
            .head_object()
            .bucket("ver")
            .key("k")
            .version_id("null")
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(6));
        let e = s3
            .head_object()
            .bucket("ver")
            .key("k")
            .version_id(&v1)
            .if_none_match(head_etag(&s3, &v1).await)
            .send()
            .await
            .unwrap_err();
        assert_eq!(refusal(&e).0, 304);
        site.shutdown().await;
    })
    .await;
}

/// The ETag of version `v` of `ver/k`.
async fn head_etag(s3: &aws_sdk_s3::Client, v: &str) -> String {
    s3.head_object()
        .bucket("ver")
        .key("k")
        .version_id(v)
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap()
}

/// The `cairn_rpc_calls_total` counters of a node's /metrics, summed over its peers.
fn rpc_calls(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("cairn_rpc_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A small GET or HEAD through a node that replicates its bucket costs one metadata round
/// trip: one read at R = 2 (this node's store and one peer) that returns the bucket record,
/// which the access check needs, and the version the operation serves, together (the bucket's
/// replicas hold both). The secret of a key seen within the last second is not looked up
/// again. Before, a GET made two quorum reads one after the other (the bucket for the access
/// check, then the version), and before that four (the key, the bucket for the access check,
/// the bucket again, the version).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_get_or_head_costs_one_metadata_round_trip() {
    bounded(BOUND, async {
        let site = MultiSite::start(3, 3, 3, MANUAL_WORKERS).await;
        let s3 = site.s3(0);
        s3.create_bucket().bucket("small").send().await.unwrap();
        let body = random_bytes(4096, 7);
        put(&s3, "small", "obj", body.clone()).await;
        assert_eq!(get(&s3, "small", "obj").await, body);
        const GETS: u64 = 40;
        let before = rpc_calls(&site.metrics(0).await);
        for _ in 0..GETS {
            assert_eq!(get(&s3, "small", "obj").await, body);
        }
        let calls = rpc_calls(&site.metrics(0).await) - before;
        eprintln!("{GETS} GETs made {calls} calls to peers");
        // The map's gossip and the second /metrics' site totals add a few calls of their own,
        // and a secret older than a second is looked up again.
        assert!(
            calls <= GETS + GETS / 2,
            "{GETS} GETs made {calls} calls to peers"
        );
        let before = rpc_calls(&site.metrics(0).await);
        for _ in 0..GETS {
            let head = s3
                .head_object()
                .bucket("small")
                .key("obj")
                .send()
                .await
                .unwrap();
            assert_eq!(head.content_length(), Some(4096));
        }
        let calls = rpc_calls(&site.metrics(0).await) - before;
        eprintln!("{GETS} HEADs made {calls} calls to peers");
        assert!(
            calls <= GETS + GETS / 2,
            "{GETS} HEADs made {calls} calls to peers"
        );
        site.shutdown().await;
    })
    .await;
}

/// Every node of a multi-node site derives the same site id from the site's CA, and the
/// versions written through any of them carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_names_versions_with_the_site_id_of_its_ca() {
    bounded(BOUND, async {
        let site = MultiSite::start(3, 3, 3, MANUAL_WORKERS).await;
        let id = cairn::node::config::site_id(site.ca.cert_pem());
        assert_ne!(id, 0);
        for k in 0..3 {
            assert_eq!(site.node(k).client.site_id(), id, "n{}", k + 1);
        }
        let s3 = site.s3(1);
        s3.create_bucket().bucket("sid").send().await.unwrap();
        s3.put_bucket_versioning()
            .bucket("sid")
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        for k in 0..3 {
            let out = site
                .s3(k)
                .put_object()
                .bucket("sid")
                .key(format!("k{k}"))
                .body(ByteStream::from_static(b"v"))
                .send()
                .await
                .unwrap();
            let v = u128::from_str_radix(out.version_id().unwrap(), 16).unwrap();
            assert_eq!((v >> 48) as u16, id, "a version written through n{}", k + 1);
        }
        site.shutdown().await;
    })
    .await;
}
