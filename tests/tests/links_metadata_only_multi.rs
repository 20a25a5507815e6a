//! Metadata-only links received by a multi-node site: the node that runs the link keeps the
//! site's fetch cache in its own store, outside placement; every other node reads through it
//! (a chunk no replica holds is asked of that node, which serves it from its cache or fetches
//! it), and checks what it gets without keeping it. Repair and rebalance leave cached chunks
//! where they are, GC on every node skips the trees only the other site holds, and pins are
//! kept by the node that runs the link.

use std::collections::HashSet;
use std::time::Duration;

use cairn_chunkserver::ChunkStore;
use cairn_client::{ChunkId, FetchStats};
use cairn_isgw::{DataMode, Direction, LinkConfig, LinkDir, LinkPhase, Mode};
use cairn_tests::link::{get, put, versioned_bucket, wait_for, LinkedSite};
use cairn_tests::multi::MultiSite;
use cairn_tests::random_bytes;

/// How long a scenario waits for a link to converge.
const CONVERGE: Duration = Duration::from_secs(120);

/// Every chunk id `store` holds.
fn ids_of(store: &ChunkStore) -> HashSet<ChunkId> {
    let mut out = HashSet::new();
    let mut after = None;
    loop {
        let page = store.list_ids(after.as_ref(), 1000).expect("list");
        let Some(last) = page.last().copied() else {
            return out;
        };
        out.extend(page);
        after = Some(last);
    }
}

fn store(multi: &MultiSite, k: usize) -> &ChunkStore {
    multi.node(k).chunks.as_deref().expect("chunk role")
}

fn cache(multi: &MultiSite) -> FetchStats {
    multi.node(0).links.fetch_stats().expect("fetch stats")
}

/// Link `from-a` on node 1 (index 0) of `multi`, receiving bucket `data` of `a` as
/// metadata only; the two trust each other.
fn link_metadata_only(a: &LinkedSite, multi: &MultiSite) {
    let multi_ca = a.site.dir().join("multi-ca.pem");
    std::fs::write(&multi_ca, multi.ca.cert_pem()).expect("write CA");
    cairn_isgw::identity::trust_ca(a.site.dir(), &multi_ca).expect("trust multi");
    cairn_isgw::identity::trust_ca(&multi.data_dir(0), &a.site.dir().join("ca.pem"))
        .expect("trust a");
    let dir = LinkDir::new(&multi.data_dir(0));
    let mut file = dir.load().expect("links file");
    file.links.push(LinkConfig {
        name: "from-a".into(),
        remote: a.link_addr.to_string(),
        buckets: Some(vec!["data".into()]),
        direction: Direction::Receive,
        mode: Mode::Both,
        data: DataMode::MetadataOnly,
        rate_bytes_per_sec: 0,
        paused: false,
    });
    dir.save(&file).expect("save links");
}

/// Waits until every node of `multi` answers HEAD of `key` with `a`'s ETag.
async fn wait_for_manifest(a: &LinkedSite, multi: &MultiSite, key: &str) {
    let etag = a
        .site
        .s3()
        .head_object()
        .bucket("data")
        .key(key)
        .send()
        .await
        .expect("head at a")
        .e_tag()
        .map(str::to_string);
    for k in 0..3 {
        let s3 = multi.s3(k);
        let etag = etag.clone();
        wait_for(CONVERGE, &format!("{key} at node {}", k + 1), || {
            let (s3, etag) = (s3.clone(), etag.clone());
            async move {
                let h = s3.head_object().bucket("data").key(key).send().await.ok()?;
                (h.e_tag().map(str::to_string) == etag).then_some(())
            }
        })
        .await;
    }
}

/// Three nodes, replication factor 2 (so each chunk's placement leaves one node out), a
/// 4 MiB fetch cache on the node that runs the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_of_a_multi_node_site_reads_through_the_node_that_runs_the_link() {
    let a = LinkedSite::start().await;
    let multi = MultiSite::start(3, 2, 3, "[link_cache]\nsize_mib = 4\n").await;
    let sa = a.site.s3();
    versioned_bucket(&sa, "data").await;
    link_metadata_only(&a, &multi);
    let small = random_bytes(1 << 20, 51);
    let big = random_bytes(8 << 20, 52);
    put(&sa, "data", "small", small.clone()).await;
    put(&sa, "data", "big", big.clone()).await;
    wait_for_manifest(&a, &multi, "small").await;
    wait_for_manifest(&a, &multi, "big").await;

    // Only manifests crossed.
    let status = multi.node(0).links.status();
    let received = status
        .iter()
        .find(|s| s.config.name == "from-a")
        .expect("link status")
        .received;
    assert!(received.versions >= 2, "{received:?}");
    assert_eq!(
        (received.nodes, received.chunks, received.bytes),
        (0, 0, 0),
        "{received:?}"
    );
    let before: Vec<HashSet<ChunkId>> = (0..3).map(|k| ids_of(store(&multi, k))).collect();

    // A read at node 2 is fetched by node 1, which keeps it; node 3 then reads it from node
    // 1's cache, and nothing more crosses.
    assert_eq!(
        get(&multi.s3(1), "data", "small").await.expect("small").0,
        small
    );
    let first = cache(&multi);
    assert!(first.enabled && first.fetched_chunks >= 1, "{first:?}");
    assert!(first.cache.stored_bytes > 0, "{first:?}");
    assert_eq!(
        get(&multi.s3(2), "data", "small").await.expect("again").0,
        small
    );
    assert_eq!(
        get(&multi.s3(0), "data", "small").await.expect("at 1").0,
        small
    );
    assert_eq!(cache(&multi).fetched_chunks, first.fetched_chunks);

    // Node 1 holds what it fetched as cached chunks; nodes 2 and 3 stored nothing.
    let fetched: Vec<ChunkId> = ids_of(store(&multi, 0))
        .difference(&before[0])
        .copied()
        .collect();
    assert!(!fetched.is_empty());
    assert!(fetched.iter().all(|id| store(&multi, 0).is_cached(id)));
    for (k, ids) in before.iter().enumerate().skip(1) {
        assert_eq!(&ids_of(store(&multi, k)), ids, "node {} stored", k + 1);
    }

    // Repair, rebalance and scrub leave the cached chunks where they are.
    for k in 0..3 {
        let m = multi.node(k).maintenance.clone().expect("maintenance");
        m.repair_pass().await.expect("repair");
        m.rebalance_pass().await.expect("rebalance");
        m.scrub_pass().await.expect("scrub");
    }
    let held = store(&multi, 0).has_many(&fetched).expect("has");
    assert!(held.iter().all(|h| *h), "a cached chunk moved off node 1");
    for (k, ids) in before.iter().enumerate().skip(1) {
        assert_eq!(&ids_of(store(&multi, k)), ids, "node {} took copies", k + 1);
    }

    // GC on every node, every chunk aged past the hold: each mark skips the trees only the
    // other site holds (none fails), and node 1 keeps the cached chunks the live versions
    // reach.
    for k in 0..3 {
        let s = store(&multi, k);
        for id in ids_of(s) {
            s.backdate_for_test(&id, 2 * 3600 * 1000).expect("backdate");
        }
    }
    for k in 0..3 {
        multi
            .node(k)
            .client
            .run_gc(cairn_client::now_ms(), 3600 * 1000, &|_| {})
            .await
            .unwrap_or_else(|e| panic!("gc on node {}: {e}", k + 1));
    }
    let held = store(&multi, 0).has_many(&fetched).expect("has");
    assert!(
        held.iter().all(|h| *h),
        "GC collected a cached chunk a live version reaches"
    );
    let fetched_before = cache(&multi).fetched_chunks;
    assert_eq!(
        get(&multi.s3(2), "data", "small")
            .await
            .expect("after gc")
            .0,
        small
    );
    assert_eq!(cache(&multi).fetched_chunks, fetched_before);

    // The cache stays within its size: 8 MiB read through a 4 MiB cache.
    assert_eq!(get(&multi.s3(1), "data", "big").await.expect("big").0, big);
    let bounded = cache(&multi);
    assert!(
        bounded.cache.stored_bytes <= 4 << 20 && bounded.evicted_chunks > 0,
        "{bounded:?}"
    );

    // Pins are kept by the node that runs the link: refused elsewhere, with where to go.
    let e = multi
        .node(1)
        .client
        .pin_object("data", "big")
        .await
        .expect_err("a pin on a node without the cache");
    assert!(e.to_string().contains("runs the metadata-only link"), "{e}");
    let pinned = multi
        .node(0)
        .client
        .pin_object("data", "big")
        .await
        .expect("pin");
    assert!(pinned.fetched > 0, "{pinned:?}");
    let kept = cache(&multi);
    assert!(kept.cache.pinned_bytes >= 8 << 20, "{kept:?}");

    // With the link paused nothing can be fetched: the pinned object still reads whole at
    // every node.
    let dir = LinkDir::new(&multi.data_dir(0));
    let mut file = dir.load().expect("links file");
    file.links.iter_mut().for_each(|l| l.paused = true);
    dir.save(&file).expect("save links");
    wait_for(CONVERGE, "the link paused", || async {
        multi
            .node(0)
            .links
            .status()
            .iter()
            .any(|s| s.config.name == "from-a" && s.phase == LinkPhase::Paused)
            .then_some(())
    })
    .await;
    let fetched_before = cache(&multi).fetched_chunks;
    for k in 0..3 {
        assert_eq!(
            get(&multi.s3(k), "data", "big").await.expect("pinned").0,
            big
        );
    }
    assert_eq!(cache(&multi).fetched_chunks, fetched_before);

    // Unpinned, the cache goes back under its size.
    multi
        .node(0)
        .client
        .unpin_object("data", "big")
        .await
        .expect("unpin");
    assert!(cache(&multi).cache.stored_bytes <= 4 << 20);
    a.stop().await;
    multi.shutdown().await;
}
