//! The replicating chunk backend over real QUIC on loopback: nodes each serve a chunk store,
//! and a gateway (or one of the nodes) stores chunks through `ReplicatedChunks`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cairn_chunkserver::{ChunkBackend, ReplicatedChunks};
use cairn_core::cluster::{NodeId, StagedChanges};
use cairn_core::placement::place_chunk;
use cairn_core::{ChunkId, ErrorKind};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_lands_on_every_replica_and_a_second_put_sends_no_payload() {
    bounded(async {
        let site = Site::start(&["z1", "z2", "z3"]);
        let backend = site.gateway(site.map(3));
        let raw = random_bytes(300_000, 1);
        let (id, c) = chunk(raw.clone());

        assert!(put(&backend, id, &c).await.unwrap(), "new chunk");
        // Two replicas acknowledged; the third finishes in the background.
        eventually("all three replicas hold the chunk", || {
            site.holders(&id).len() == 3
        })
        .await;
        for n in &site.nodes {
            assert_eq!(n.store.get(&id).unwrap().unwrap(), raw, "{}", n.name);
        }
        eventually("every payload sent", || {
            backend.counters().payloads_sent == 3
        })
        .await;
        // Each node got one have and one put.
        eventually("calls settled", || site.calls() == vec![2, 2, 2]).await;
        let stored = site.store_stats();

        // Again: every replica has it, so only "have it?" goes out, no payload.
        assert!(!put(&backend, id, &c).await.unwrap(), "not new");
        eventually("every replica asked", || site.calls() == vec![3, 3, 3]).await;
        eventually("every replica skipped", || {
            backend.counters().payloads_skipped == 3
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(site.calls(), vec![3, 3, 3], "no put calls");
        assert_eq!(backend.counters().payloads_sent, 3);
        assert_eq!(site.store_stats(), stored);

        // A replica that lost its copy gets the payload again; the others do not.
        site.nodes[1].store.delete(&id).unwrap();
        // (Whether it says "new" depends on which replicas answered first.)
        put(&backend, id, &c).await.unwrap();
        eventually("the lost copy is back", || site.holders(&id).len() == 3).await;
        eventually("one more payload", || backend.counters().payloads_sent == 4).await;

        assert_eq!(get(&backend, id).await.unwrap().unwrap(), raw);
        let unknown = ChunkId::of(b"never stored");
        assert_eq!(get(&backend, unknown).await.unwrap(), None);
        let ids = vec![id, unknown, id];
        let present = blocking(&backend, move |b| b.has_many(&ids)).await.unwrap();
        assert_eq!(present, vec![true, false, true]);

        // Stats are physical: each replica counts.
        let stats = blocking(&backend, |b| b.stats()).await.unwrap();
        assert_eq!(stats.chunks, 3);
        assert_eq!(stats.raw_bytes, 3 * 300_000);
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_a_replica_writes_and_reads_its_own_store_without_calls() {
    bounded(async {
        let site = Site::start(&["z1", "z2", "z3"]);
        let map = site.map(3);
        let n1 = &site.nodes[0];
        let backend = Arc::new(ReplicatedChunks::with_config(
            map,
            Some((n1.id, n1.store.clone())),
            site.client("n1"),
            tokio::runtime::Handle::current(),
            config(),
        ));
        let chunks: Vec<_> = (0..5)
            .map(|i| chunk(random_bytes(50_000, 10 + i)))
            .collect();
        for (id, c) in &chunks {
            assert!(put(&backend, *id, c).await.unwrap());
        }
        for (id, c) in &chunks {
            eventually("all three replicas hold it", || site.holders(id).len() == 3).await;
            assert_eq!(
                get(&backend, *id).await.unwrap().unwrap(),
                c.decode_verified(id).unwrap()
            );
        }
        // RF 3 of 3 nodes: n1 is a replica of everything and was never called.
        assert_eq!(n1.stats.calls(), 0);
        assert_eq!(backend.counters().payloads_sent, 10);
        let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
        let present = blocking(&backend, move |b| b.has_many(&ids)).await.unwrap();
        assert_eq!(present, vec![true; 5]);
        assert_eq!(n1.stats.calls(), 0);
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_node_down_puts_reach_quorum_and_gets_return_good_bytes() {
    bounded(async {
        let mut site = Site::start(&["z1", "z2", "z3"]);
        let map = site.map(3);
        let backend = site.gateway(map.clone());
        // Stored while all are up.
        let (early, early_c) = chunk(random_bytes(40_000, 20));
        put(&backend, early, &early_c).await.unwrap();
        eventually("all three hold it", || site.holders(&early).len() == 3).await;

        let down = site.nodes[1].id;
        site.nodes[1].stop().await;

        let chunks: Vec<_> = (0..6)
            .map(|i| chunk(random_bytes(60_000, 30 + i)))
            .collect();
        for (id, c) in &chunks {
            // Replicas are written at once: the stopped one, even as the primary, does not
            // fail the put.
            assert!(put(&backend, *id, c).await.unwrap(), "quorum 2 of 3");
            // The two live replicas have it (both acknowledged: the third cannot).
            let holders = site.holders(id);
            assert_eq!(holders.len(), 2, "{holders:?}");
            assert!(!holders.contains(&down));
        }
        // Some of these have the stopped node as their primary: the get moves on.
        let primaries_down = chunks
            .iter()
            .map(|(id, _)| id)
            .chain([&early])
            .filter(|id| place_chunk(&map, id)[0] == down)
            .count();
        for (id, c) in chunks.iter().chain([(early, early_c.clone())].iter()) {
            let got = get(&backend, *id).await.unwrap().expect("found");
            assert_eq!(got, c.decode_verified(id).unwrap());
        }
        // The first call that meets the stopped node marks it suspect; later reads try it
        // last, so it costs at most one fallback, not one per chunk it is the primary of. (The
        // failed replica writes above may already have marked it, as they finish in the
        // background after the quorum answered: then no read falls back at all.)
        assert!(
            primaries_down > 1,
            "the scenario needs several chunks led by the stopped node"
        );
        let fallbacks = backend.counters().read_fallbacks;
        assert!(
            fallbacks <= 1,
            "{fallbacks} fallbacks for {primaries_down} chunks led by the stopped node"
        );
        // Every put's write to the stopped node failed (some end in the background).
        eventually("six failed replica writes", || {
            backend.counters().replica_write_failures >= 6
        })
        .await;
        let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
        let present = blocking(&backend, move |b| b.has_many(&ids)).await.unwrap();
        assert_eq!(present, vec![true; 6], "two of three is the quorum");
        // Stats leave the stopped node out.
        let stats = blocking(&backend, |b| b.stats()).await.unwrap();
        assert_eq!(stats.chunks, 2 * 7);
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_nodes_down_a_put_fails_naming_the_replicas() {
    bounded(async {
        let mut site = Site::start(&["z1", "z2", "z3"]);
        let backend = site.gateway(site.map(3));
        let (early, early_c) = chunk(random_bytes(40_000, 40));
        put(&backend, early, &early_c).await.unwrap();
        eventually("all three hold it", || site.holders(&early).len() == 3).await;

        site.nodes[0].stop().await;
        site.nodes[2].stop().await;
        let (id, c) = chunk(random_bytes(70_000, 41));
        let err = put(&backend, id, &c).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("n1 (") && msg.contains("n3 ("), "{msg}");
        // The put fails as soon as the quorum cannot be reached: n2's write has succeeded by
        // then, or is still going (a stopped node can fail faster than a live one answers).
        let n2_pending = msg.contains("n2 (000000000002): no answer yet");
        assert!(!msg.contains("n2 (") || n2_pending, "n2 failed: {msg}");
        let stored = if n2_pending { 0 } else { 1 };
        assert!(
            msg.contains(&format!("{stored} of 3 replicas")) && msg.contains("quorum is 2"),
            "{msg}"
        );
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        // The live replica takes it anyway (repair copies it to the others later).
        eventually("n2 holds it", || site.nodes[1].has(&id)).await;

        // Reads still work from the one live replica.
        let got = get(&backend, early).await.unwrap().unwrap();
        assert_eq!(got, early_c.decode_verified(&early).unwrap());
        // A chunk nobody has: not "not found", since two replicas could not answer.
        let err = get(&backend, ChunkId::of(b"nowhere")).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("n1 (") && msg.contains("n3 ("), "{msg}");
        // Only one replica of three answers "have it": below the quorum.
        let ids = vec![early];
        let present = blocking(&backend, move |b| b.has_many(&ids)).await.unwrap();
        assert_eq!(present, vec![false]);
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_copy_on_the_primary_is_skipped() {
    bounded(async {
        let site = Site::start(&["z1", "z2", "z3"]);
        let map = site.map(3);
        let backend = site.gateway(map.clone());
        let raw = random_bytes(200_000, 50);
        let (id, c) = chunk(raw.clone());
        put(&backend, id, &c).await.unwrap();
        eventually("all three hold it", || site.holders(&id).len() == 3).await;

        let primary = place_chunk(&map, &id)[0];
        assert_eq!(backend.replicas(&id), place_chunk(&map, &id));
        let mut rotten = c.payload.to_vec();
        rotten[1000] ^= 0x10;
        site.node(primary)
            .store
            .corrupt_for_test(&id, &rotten)
            .unwrap();
        assert!(site.node(primary).store.get(&id).is_err());

        let before = backend.counters().read_fallbacks;
        assert_eq!(get(&backend, id).await.unwrap().unwrap(), raw);
        assert_eq!(backend.counters().read_fallbacks, before + 1);

        // Every copy corrupt: an error of kind Corrupt, not a wrong answer.
        for n in &site.nodes {
            n.store.corrupt_for_test(&id, &rotten).unwrap();
        }
        let err = get(&backend, id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_in_two_zones_get_replicas_in_distinct_zones_first() {
    bounded(async {
        let site = Site::start(&["z1", "z1", "z2", "z2"]);
        let map = site.map(3);
        let backend = site.gateway(map.clone());
        let zone = |n: NodeId| site.node(n).zone.clone();
        let chunks: Vec<_> = (0..16)
            .map(|i| chunk(random_bytes(20_000, 60 + i)))
            .collect();
        for (id, c) in &chunks {
            assert!(put(&backend, *id, c).await.unwrap());
        }
        let mut primaries = std::collections::BTreeSet::new();
        for (id, _) in &chunks {
            let replicas = place_chunk(&map, id);
            assert_eq!(replicas.len(), 3);
            // The first two replicas cover both zones.
            assert_ne!(zone(replicas[0]), zone(replicas[1]), "{id}");
            primaries.insert(replicas[0]);
            eventually("the replicas hold it", || {
                let mut holders = site.holders(id);
                let mut expected = replicas.clone();
                holders.sort_unstable();
                expected.sort_unstable();
                holders == expected
            })
            .await;
        }
        assert!(primaries.len() > 1, "placement spreads primaries");
        let total: u64 = site.store_stats().iter().map(|s| s.chunks).sum();
        assert_eq!(total, 3 * 16);
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_map_change_gets_still_find_chunks_on_the_previous_replicas() {
    bounded(async {
        let mut site = Site::start(&["z1", "z2", "z3"]);
        let map = site.map(2);
        let backend = site.gateway(map.clone());
        let chunks: Vec<_> = (0..12)
            .map(|i| chunk(random_bytes(10_000, 80 + i)))
            .collect();
        for (id, c) in &chunks {
            put(&backend, *id, c).await.unwrap();
        }
        // A fourth node joins: some chunks are now placed on it, which has none of them yet.
        site.add("z4");
        let next = map
            .apply(&StagedChanges {
                upsert: vec![site.nodes[3].info()],
                ..StagedChanges::default()
            })
            .unwrap();
        assert!(backend.set_map(next.clone()));
        assert!(!backend.set_map(map.clone()), "an older epoch is ignored");
        assert_eq!(backend.map().epoch, next.epoch);
        let moved = chunks
            .iter()
            .filter(|(id, _)| place_chunk(&next, id).contains(&4))
            .count();
        assert!(moved > 0, "some chunks are placed on the new node");
        for (id, c) in &chunks {
            let got = get(&backend, *id).await.unwrap().expect("found");
            assert_eq!(got, c.decode_verified(id).unwrap());
        }
        site.stop().await;
    })
    .await
}
