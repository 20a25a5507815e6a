//! The chunk maintenance workers (repair, rebalance, scrub) over real QUIC on loopback: nodes
//! each serve a chunk store, chunks are written through `ReplicatedChunks`, and each node's
//! `ChunkMaintenance` works on its own store.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_chunkserver::{
    ChunkMaintenance, MaintenanceConfig, PassReport, RateLimiter, ReplicatedChunks, StoredChunk,
    WorkerKind,
};
use cairn_core::cluster::{ClusterMap, NodeId, StagedChanges};
use cairn_core::placement::place_chunk;
use cairn_core::ChunkId;
use common::*;

impl Node {
    /// This node's replicating backend (its own store local) and maintenance workers.
    fn workers(&self, map: ClusterMap) -> Workers {
        let backend = Arc::new(ReplicatedChunks::with_config(
            map,
            Some((self.id, self.store.clone())),
            self.client(),
            tokio::runtime::Handle::current(),
            config(),
        ));
        let maint = ChunkMaintenance::new(
            backend.clone(),
            MaintenanceConfig {
                batch_size: 64,
                ..MaintenanceConfig::default()
            },
        )
        .unwrap();
        Workers {
            backend,
            maint: Arc::new(maint),
        }
    }
}

struct Workers {
    backend: Arc<ReplicatedChunks>,
    maint: Arc<ChunkMaintenance>,
}

/// `map` with the nodes' current addresses (a new epoch).
fn readdressed(map: &ClusterMap, nodes: &[&Node]) -> ClusterMap {
    map.apply(&StagedChanges {
        upsert: nodes.iter().map(|n| n.info()).collect(),
        ..StagedChanges::default()
    })
    .unwrap()
}

/// Every chunk reads back with its bytes through `backend`.
async fn all_readable(backend: &Arc<ReplicatedChunks>, chunks: &[(ChunkId, StoredChunk)]) {
    for (id, c) in chunks {
        let got = get(backend, *id).await.unwrap().expect("found");
        assert_eq!(got, c.decode_verified(id).unwrap(), "{id}");
    }
}

fn sorted(mut v: Vec<NodeId>) -> Vec<NodeId> {
    v.sort_unstable();
    v
}

fn total(reports: &[PassReport], f: impl Fn(&PassReport) -> u64) -> u64 {
    reports.iter().map(f).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_copies_what_a_stopped_node_missed_once_it_is_back() {
    bounded(async {
        let mut site = Site::start(&["z1", "z2", "z3"]);
        let map = site.map(3);
        let gw = site.gateway(map.clone());
        let workers: Vec<Workers> = site.nodes.iter().map(|n| n.workers(map.clone())).collect();
        site.nodes[2].stop().await;

        let chunks = chunks(200, 1000);
        for (id, c) in &chunks {
            put(&gw, *id, c).await.unwrap();
        }
        for (id, _) in &chunks {
            // The write quorum of 2 of 3 needs both live nodes.
            assert_eq!(site.holders(id), vec![1, 2], "{id}");
        }

        // While n3 is down: one failed call (then n3 is left alone for the pass), no pushes,
        // and the pass completes. A second pass of the same worker is refused meanwhile.
        let m1 = workers[0].maint.clone();
        let running = tokio::spawn(async move { m1.repair_pass().await });
        let progress = workers[0].maint.progress(WorkerKind::Repair);
        eventually("the pass runs", || progress.is_running()).await;
        let err = workers[0].maint.repair_pass().await.unwrap_err();
        assert!(err.to_string().contains("already running"), "{err}");
        let mut metrics = String::new();
        workers[0].maint.render_prometheus(&mut metrics);
        assert!(
            metrics.contains("cairn_worker_running{worker=\"repair\"} 1\n"),
            "{metrics}"
        );
        let r = running.await.unwrap().unwrap();
        assert_eq!(r.chunks_scanned, 200);
        assert_eq!(r.chunks_pushed, 0);
        assert_eq!(r.errors, 1, "{r:?}");
        let last = r.last_error.unwrap();
        assert!(last.contains("n3 ("), "{last}");
        assert!(chunks.iter().all(|(id, _)| !site.nodes[2].has(id)));

        // n3 serves the same store again, on another port: a new map says where.
        site.nodes[2].serve();
        let next = readdressed(&map, &[&site.nodes[2]]);
        for w in &workers {
            assert!(w.backend.set_map(next.clone()));
        }
        let r1 = workers[0].maint.repair_pass().await.unwrap();
        assert_eq!((r1.chunks_pushed, r1.errors), (200, 0), "{r1:?}");
        assert!(r1.bytes_pushed >= 200 * 4_000);
        let r2 = workers[1].maint.repair_pass().await.unwrap();
        assert_eq!((r2.chunks_pushed, r2.errors), (0, 0), "n3 has them all");
        let r3 = workers[2].maint.repair_pass().await.unwrap();
        assert_eq!((r3.chunks_scanned, r3.chunks_pushed), (200, 0));

        for (id, c) in &chunks {
            assert_eq!(site.holders(id), vec![1, 2, 3], "{id}");
            for n in &site.nodes {
                assert_eq!(
                    n.store.get(id).unwrap().unwrap(),
                    c.decode_verified(id).unwrap()
                );
            }
        }
        let s = workers[0].maint.progress(WorkerKind::Repair).snapshot();
        assert!(!s.running);
        assert_eq!(
            (s.passes, s.chunks_scanned, s.chunks_pushed, s.errors),
            (2, 200, 200, 1)
        );
        assert!(s.last_error.unwrap().contains("n3 ("));
        let (start, end) = (
            s.last_pass_started_ms.unwrap(),
            s.last_pass_finished_ms.unwrap(),
        );
        assert!(start <= end);
        assert_eq!(s.last_pass.unwrap().chunks_pushed, 200);
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_replaces_a_corrupt_copy_with_a_good_replica() {
    bounded(async {
        let site = Site::start(&["z1", "z2", "z3"]);
        let map = site.map(3);
        let gw = site.gateway(map.clone());
        let n1 = &site.nodes[0];
        let w = n1.workers(map.clone());
        let chunks = chunks(6, 2000);
        for (id, c) in &chunks {
            put(&gw, *id, c).await.unwrap();
        }
        for (id, _) in &chunks {
            eventually("all three hold it", || site.holders(id).len() == 3).await;
        }
        let before = n1.store.stats().unwrap();

        let (id, c) = &chunks[2];
        let mut rotten = c.payload.to_vec();
        rotten[100] ^= 0x01;
        n1.store.corrupt_for_test(id, &rotten).unwrap();
        assert!(n1.store.get(id).is_err());
        // Reads are still right: n1's backend tries its own (corrupt) copy first and moves on.
        let fallbacks = w.backend.counters().read_fallbacks;
        assert_eq!(
            get(&w.backend, *id).await.unwrap().unwrap(),
            c.decode_verified(id).unwrap()
        );
        assert_eq!(w.backend.counters().read_fallbacks, fallbacks + 1);
        assert_eq!(
            get(&gw, *id).await.unwrap().unwrap(),
            c.decode_verified(id).unwrap()
        );

        let r = w.maint.scrub_pass().await.unwrap();
        assert_eq!(r.chunks_scanned, 6);
        assert_eq!(
            (
                r.corrupt_found,
                r.corrupt_repaired,
                r.corrupt_unrepaired,
                r.errors
            ),
            (1, 1, 0, 0),
            "{r:?}"
        );
        assert_eq!(
            n1.store.get(id).unwrap().unwrap(),
            c.decode_verified(id).unwrap()
        );
        assert_eq!(
            n1.store.get_stored(id).unwrap().unwrap(),
            *c,
            "the original bytes"
        );
        assert_eq!(n1.store.stats().unwrap(), before);
        let r = w.maint.scrub_pass().await.unwrap();
        assert_eq!((r.chunks_scanned, r.corrupt_found), (6, 0));

        // Every copy rotten: nothing to repair from; the copy is kept, the failure named.
        let (id2, c2) = &chunks[4];
        let mut rotten2 = c2.payload.to_vec();
        rotten2[7] ^= 0x80;
        for n in &site.nodes {
            n.store.corrupt_for_test(id2, &rotten2).unwrap();
        }
        let r = w.maint.scrub_pass().await.unwrap();
        assert_eq!(
            (
                r.corrupt_found,
                r.corrupt_repaired,
                r.corrupt_unrepaired,
                r.errors
            ),
            (1, 0, 1, 1),
            "{r:?}"
        );
        let last = r.last_error.unwrap();
        assert!(last.contains(&id2.to_string()), "{last}");
        assert!(last.contains("n2 (") && last.contains("n3 ("), "{last}");
        assert!(n1.has(id2), "never deletes the only copy");

        let snap = w.maint.progress(WorkerKind::Scrub).snapshot();
        assert_eq!(
            (
                snap.passes,
                snap.corrupt_found,
                snap.corrupt_repaired,
                snap.corrupt_unrepaired
            ),
            (3, 2, 1, 1)
        );
        fn serializable<T: serde::Serialize + Clone + std::fmt::Debug>(_: &T) {}
        serializable(&snap);
        let mut metrics = String::new();
        w.maint.render_prometheus(&mut metrics);
        for line in [
            "# TYPE cairn_worker_errors_total counter\n",
            "cairn_worker_corrupt_found_total{worker=\"scrub\"} 2\n",
            "cairn_worker_corrupt_repaired_total{worker=\"scrub\"} 1\n",
            "cairn_worker_corrupt_unrepaired_total{worker=\"scrub\"} 1\n",
            "cairn_worker_chunks_scanned{worker=\"scrub\"} 6\n",
            "cairn_worker_errors_total{worker=\"scrub\"} 1\n",
            "cairn_worker_errors_total{worker=\"repair\"} 0\n",
            "cairn_worker_running{worker=\"scrub\"} 0\n",
        ] {
            assert!(metrics.contains(line), "{line} in:\n{metrics}");
        }
        assert!(!metrics.contains("cairn_worker_passes_total"));
        assert_eq!(
            metrics.matches("# HELP cairn_worker_errors_total").count(),
            1
        );
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_moves_chunks_to_a_new_node_and_drops_copies_outside_placement() {
    bounded(async {
        let mut site = Site::start(&["z1", "z2", "z3"]);
        let map = site.map(2);
        let gw = site.gateway(map.clone());
        let chunks = chunks(120, 3000);
        for (id, c) in &chunks {
            put(&gw, *id, c).await.unwrap();
        }
        for (id, _) in &chunks {
            let placed = sorted(place_chunk(&map, id));
            eventually("both replicas hold it", || site.holders(id) == placed).await;
        }
        let mut workers: Vec<Workers> = site.nodes.iter().map(|n| n.workers(map.clone())).collect();

        // n4 joins in its own zone: some chunks now go to it instead of an old replica.
        let n4 = site.add("z4").info();
        let next = map
            .apply(&StagedChanges {
                upsert: vec![n4],
                ..StagedChanges::default()
            })
            .unwrap();
        for w in &workers {
            assert!(w.backend.set_map(next.clone()));
        }
        workers.push(site.nodes[3].workers(next.clone()));
        assert!(gw.set_map(next.clone()));
        let moved: Vec<&ChunkId> = chunks
            .iter()
            .map(|(id, _)| id)
            .filter(|id| place_chunk(&next, id).contains(&4))
            .collect();
        assert!(moved.len() > 10, "{} moved", moved.len());
        for id in &moved {
            let old = place_chunk(&map, id);
            let new = place_chunk(&next, id);
            assert_eq!(old.iter().filter(|n| !new.contains(n)).count(), 1);
        }

        // Every node's rebalance at once, reading every chunk while they run.
        let passes: Vec<_> = workers
            .iter()
            .map(|w| {
                let m = w.maint.clone();
                tokio::spawn(async move { m.rebalance_pass().await })
            })
            .collect();
        loop {
            all_readable(&gw, &chunks).await;
            if passes.iter().all(|p| p.is_finished()) {
                break;
            }
        }
        let mut reports = Vec::new();
        for p in passes {
            reports.push(p.await.unwrap().unwrap());
        }
        assert_eq!(total(&reports, |r| r.errors), 0, "{reports:?}");
        assert_eq!(total(&reports, |r| r.chunks_scanned), 2 * 120);
        assert_eq!(total(&reports, |r| r.chunks_pushed), moved.len() as u64);
        assert_eq!(
            total(&reports, |r| r.local_copies_deleted),
            moved.len() as u64
        );

        // Nothing left to do for repair or rebalance.
        let mut again = Vec::new();
        for w in &workers {
            again.push(w.maint.repair_pass().await.unwrap());
            again.push(w.maint.rebalance_pass().await.unwrap());
        }
        assert_eq!(total(&again, |r| r.chunks_pushed), 0, "{again:?}");
        assert_eq!(total(&again, |r| r.local_copies_deleted), 0);
        assert_eq!(total(&again, |r| r.errors), 0);

        for (id, _) in &chunks {
            assert_eq!(site.holders(id), sorted(place_chunk(&next, id)), "{id}");
        }
        all_readable(&gw, &chunks).await;
        // A backend that never knew the old map finds everything too.
        all_readable(&site.gateway(next.clone()), &chunks).await;
        let snap = workers
            .iter()
            .map(|w| w.maint.progress(WorkerKind::Rebalance).snapshot())
            .collect::<Vec<_>>();
        assert_eq!(
            snap.iter().map(|s| s.local_copies_deleted).sum::<u64>(),
            moved.len() as u64
        );
        site.stop().await;
    })
    .await
}

/// Interleaving (invariant I6): a write put its chunks on the old placement and has not applied
/// its manifest yet; the map changes and the chunks' new replica already holds an aged copy
/// (left from an object deleted long ago); rebalance finds it there, sends nothing and drops
/// the old copy; that replica's GC sweep runs before the manifest is applied. The copy that
/// stays must be as young as the one dropped, or the sweep takes the write's only copy. Before
/// the fix rebalance only asked `have` and the copy kept its old time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_refreshes_the_copies_that_stay_so_a_sweep_cannot_take_them() {
    bounded(async {
        let mut site = Site::start(&["z1", "z2", "z3"]);
        let map = site.map(2);
        let gw = site.gateway(map.clone());
        let chunks = chunks(60, 5000);
        for (id, c) in &chunks {
            put(&gw, *id, c).await.unwrap();
        }
        for (id, _) in &chunks {
            let placed = sorted(place_chunk(&map, id));
            eventually("both replicas hold it", || site.holders(id) == placed).await;
        }
        let workers: Vec<Workers> = site.nodes.iter().map(|n| n.workers(map.clone())).collect();
        let n4 = site.add("z4").info();
        let next = map
            .apply(&StagedChanges {
                upsert: vec![n4],
                ..StagedChanges::default()
            })
            .unwrap();
        for w in &workers {
            assert!(w.backend.set_map(next.clone()));
        }
        let hold_ms = 3_600_000;
        let moved: Vec<&(ChunkId, StoredChunk)> = chunks
            .iter()
            .filter(|(id, _)| place_chunk(&next, id).contains(&4))
            .collect();
        assert!(moved.len() > 5, "{} moved", moved.len());
        let n4 = site.nodes[3].store.clone();
        for (id, c) in &moved {
            n4.put(id, c).unwrap();
            n4.backdate_for_test(id, 2 * hold_ms).unwrap();
        }
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            - 1000;
        for w in &workers {
            let r = w.maint.rebalance_pass().await.unwrap();
            assert_eq!((r.errors, r.chunks_pushed), (0, 0), "{r:?}");
        }
        for (id, _) in &moved {
            assert_eq!(site.holders(id), sorted(place_chunk(&next, id)), "{id}");
            let meta = n4.meta(id).unwrap().unwrap();
            assert!(
                meta.last_referenced_ms() >= started,
                "the copy of {id} that stays was not refreshed"
            );
            // A sweep of n4 now keeps it.
            let cutoff = started.saturating_sub(hold_ms);
            assert_eq!(
                n4.delete_unreferenced_before(&[*id], cutoff).unwrap(),
                vec![false]
            );
        }
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_deletes_nothing_while_a_placement_replica_is_unreachable() {
    bounded(async {
        let mut site = Site::start(&["z1", "z2", "z3"]);
        let map = site.map(2);
        let gw = site.gateway(map.clone());
        let chunks = chunks(60, 4000);
        for (id, c) in &chunks {
            put(&gw, *id, c).await.unwrap();
        }
        for (id, _) in &chunks {
            let placed = sorted(place_chunk(&map, id));
            eventually("both replicas hold it", || site.holders(id) == placed).await;
        }
        let workers: Vec<Workers> = site.nodes.iter().map(|n| n.workers(map.clone())).collect();
        // n4 is in the map but not serving.
        site.add("z4").stop().await;
        let next = map
            .apply(&StagedChanges {
                upsert: vec![site.nodes[3].info()],
                ..StagedChanges::default()
            })
            .unwrap();
        for w in &workers {
            assert!(w.backend.set_map(next.clone()));
        }
        let moved = chunks
            .iter()
            .filter(|(id, _)| place_chunk(&next, id).contains(&4))
            .count();
        assert!(moved > 5, "{moved} moved");

        let mut reports = Vec::new();
        for w in &workers {
            reports.push(w.maint.rebalance_pass().await.unwrap());
        }
        assert_eq!(
            total(&reports, |r| r.local_copies_deleted),
            0,
            "{reports:?}"
        );
        assert_eq!(total(&reports, |r| r.chunks_pushed), 0);
        assert!(total(&reports, |r| r.errors) >= 1);
        for r in reports.iter().filter(|r| r.errors > 0) {
            let last = r.last_error.as_deref().unwrap();
            assert!(last.contains("n4 ("), "{last}");
        }
        for (id, _) in &chunks {
            assert_eq!(site.holders(id), sorted(place_chunk(&map, id)), "{id} kept");
        }
        all_readable(&gw, &chunks).await;

        // Once n4 serves (on a new port, a new map), the same passes move the chunks.
        site.nodes[3].serve();
        let last = readdressed(&next, &[&site.nodes[3]]);
        for w in &workers {
            assert!(w.backend.set_map(last.clone()));
        }
        let mut reports = Vec::new();
        for w in &workers {
            reports.push(w.maint.rebalance_pass().await.unwrap());
        }
        assert_eq!(total(&reports, |r| r.local_copies_deleted), moved as u64);
        assert_eq!(total(&reports, |r| r.errors), 0, "{reports:?}");
        for (id, _) in &chunks {
            assert_eq!(site.holders(id), sorted(place_chunk(&last, id)), "{id}");
        }
        site.stop().await;
    })
    .await
}

#[test]
fn the_rate_limiter_counts_tokens_and_debts() {
    let close = |a: Duration, b: Duration| {
        let d = a.abs_diff(b);
        assert!(d < Duration::from_micros(10), "{a:?} vs {b:?}");
    };
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let l = RateLimiter::new(1000);
    assert_eq!(l.rate(), 1000);
    // Starts with a second's worth.
    assert_eq!(l.take_at(600, t0), Duration::ZERO);
    assert_eq!(l.tokens_at(t0), Some(400.0));
    // Beyond the tokens: allowed, with a debt the caller waits off.
    close(l.take_at(600, t0), ms(200));
    assert_eq!(l.tokens_at(t0), Some(-200.0));
    let debt = l.tokens_at(t0 + ms(100)).unwrap();
    assert!((debt + 100.0).abs() < 0.01, "{debt}");
    close(l.take_at(100, t0 + ms(200)), ms(100));
    // A clock reading from before the last one refills nothing.
    close(l.take_at(0, t0), ms(100));
    // Refill stops at the burst, however long the pause.
    assert_eq!(l.tokens_at(t0 + Duration::from_secs(3600)), Some(1000.0));
    assert_eq!(
        l.take_at(1000, t0 + Duration::from_secs(3600)),
        Duration::ZERO
    );
    close(l.take_at(1, t0 + Duration::from_secs(3600)), ms(1));
    // A take larger than the burst waits in proportion.
    close(l.take_at(5000, t0 + Duration::from_secs(7200)), ms(4000));

    // No burst: every byte waits its share.
    let l = RateLimiter::with_burst(2000, 0);
    close(l.take_at(500, t0), ms(250));
    close(l.take_at(500, t0 + ms(250)), ms(250));

    // 0 is unlimited: no waits, nothing counted; a rate set later applies.
    let l = RateLimiter::new(0);
    assert_eq!(l.take_at(u64::MAX, t0), Duration::ZERO);
    assert_eq!(l.tokens_at(t0), None);
    l.set_rate(100);
    assert_eq!(l.rate(), 100);
    close(l.take_at(150, t0), ms(1500));
    l.set_rate(0);
    assert_eq!(l.take_at(1 << 40, t0), Duration::ZERO);
}
