//! Metadata-only links: the receiving site holds manifests only; a read of data that is not
//! there fetches the chunks from the linked site, checks each against its id, and keeps them in
//! a bounded cache (least recently used out first) that GC respects; `pin` keeps an object.

use std::collections::HashSet;
use std::time::Duration;

use cairn_client::{ChunkId, FetchStats};
use cairn_isgw::{DataMode, Direction, LinkConfig, LinkPhase, Mode};
use cairn_tests::link::{get, put, versioned_bucket, LinkedSite};
use cairn_tests::random_bytes;

/// How long a scenario waits for a link to converge.
const CONVERGE: Duration = Duration::from_secs(120);

/// Two sites that trust each other; `b` receives bucket `data` from `a` as metadata only.
async fn metadata_only_pair(cache_bytes: Option<u64>) -> (LinkedSite, LinkedSite) {
    let a = LinkedSite::start().await;
    let b = LinkedSite::start().await;
    a.trust(&b);
    b.trust(&a);
    if let Some(n) = cache_bytes {
        b.links.set_cache_size(n);
    }
    versioned_bucket(&a.site.s3(), "data").await;
    b.add_link(LinkConfig {
        name: "from-a".into(),
        remote: a.link_addr.to_string(),
        buckets: Some(vec!["data".into()]),
        direction: Direction::Receive,
        mode: Mode::Both,
        data: DataMode::MetadataOnly,
        rate_bytes_per_sec: 0,
        paused: false,
    });
    (a, b)
}

/// Waits until `key`'s current version at `b` is the one `a` has (HEAD needs no data).
async fn wait_for_manifest(a: &LinkedSite, b: &LinkedSite, key: &str) {
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
    let sb = b.site.s3();
    b.wait_on_link("from-a", CONVERGE, "the manifest at b", || {
        let (sb, etag) = (sb.clone(), etag.clone());
        async move {
            let h = sb.head_object().bucket("data").key(key).send().await.ok()?;
            (h.e_tag().map(str::to_string) == etag).then_some(())
        }
    })
    .await;
}

fn stats(site: &LinkedSite) -> FetchStats {
    site.site.client.fetch_stats().expect("fetch stats")
}

fn all_ids(site: &LinkedSite) -> HashSet<ChunkId> {
    let store = site.site.client.local_chunk_store().expect("single node");
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

/// Ages every chunk of `site` two hours, past GC's hold, then runs a GC pass.
async fn age_and_collect(site: &LinkedSite) -> cairn_client::GcReport {
    let store = site.site.client.local_chunk_store().expect("single node");
    for id in all_ids(site) {
        store
            .backdate_for_test(&id, 2 * 3600 * 1000)
            .expect("backdate");
    }
    site.site
        .client
        .run_gc(cairn_client::now_ms(), 3600 * 1000, &|_| {})
        .await
        .expect("gc")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_only_site_fetches_checks_and_caches_what_it_reads() {
    let (a, b) = metadata_only_pair(None).await;
    let (sa, sb) = (a.site.s3(), b.site.s3());
    let big = random_bytes(6 << 20, 31);
    let gone = random_bytes(2 << 20, 32);
    put(&sa, "data", "big", big.clone()).await;
    put(&sa, "data", "small", b"inline bytes".to_vec()).await;
    let gone_version = put(&sa, "data", "gone", gone.clone()).await;
    for key in ["big", "small", "gone"] {
        wait_for_manifest(&a, &b, key).await;
    }
    // Only manifests crossed: no tree node, no chunk.
    let received = b.status("from-a").expect("status").received;
    assert!(received.versions >= 3, "{received:?}");
    assert_eq!(
        (received.nodes, received.chunks, received.bytes),
        (0, 0, 0),
        "{received:?}"
    );
    assert_eq!(stats(&b).cache.chunks, 0);
    assert!(stats(&b).enabled);

    // Reads fetch, and what they fetched is kept: a second read fetches nothing.
    assert_eq!(get(&sb, "data", "big").await.expect("big at b").0, big);
    assert_eq!(
        get(&sb, "data", "small").await.expect("small at b").0,
        b"inline bytes"
    );
    assert_eq!(get(&sb, "data", "gone").await.expect("gone at b").0, gone);
    let after_first = stats(&b);
    assert!(after_first.fetched_chunks >= 3, "{after_first:?}");
    assert!(after_first.cache.stored_bytes >= 8 << 20, "{after_first:?}");
    assert_eq!(get(&sb, "data", "big").await.expect("big again").0, big);
    assert_eq!(stats(&b).fetched_chunks, after_first.fetched_chunks);

    // The version `gone` is removed at a; the removal crosses; GC at b then collects its
    // cached chunks and keeps those of the live versions.
    sa.delete_object()
        .bucket("data")
        .key("gone")
        .version_id(&gone_version)
        .send()
        .await
        .expect("remove a version");
    b.wait_on_link("from-a", CONVERGE, "the removal at b", || {
        let sb = sb.clone();
        async move { get(&sb, "data", "gone").await.is_none().then_some(()) }
    })
    .await;
    let report = age_and_collect(&b).await;
    assert!(report.chunks_deleted > 0, "{report:?}");
    let kept = stats(&b);
    assert!(
        kept.cache.chunks < after_first.cache.chunks && kept.cache.stored_bytes >= 6 << 20,
        "before {after_first:?}, after {kept:?}"
    );

    // With the link paused nothing can be fetched, and the cached object is still read whole.
    b.set_paused("from-a", true);
    b.wait_on_link("from-a", CONVERGE, "the link paused", || async {
        (b.status("from-a")?.phase == LinkPhase::Paused).then_some(())
    })
    .await;
    assert_eq!(
        get(&sb, "data", "big").await.expect("big while paused").0,
        big
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_that_fails_its_check_is_refused_and_not_kept() {
    let (a, b) = metadata_only_pair(None).await;
    let (sa, sb) = (a.site.s3(), b.site.s3());
    let before = all_ids(&a);
    put(&sa, "data", "rotten", random_bytes(1 << 20, 41)).await;
    let rotten: Vec<ChunkId> = all_ids(&a).difference(&before).copied().collect();
    assert!(!rotten.is_empty());
    let store = a.site.client.local_chunk_store().expect("single node");
    for id in &rotten {
        store.corrupt_for_test(id, b"bit rot").expect("corrupt");
    }
    wait_for_manifest(&a, &b, "rotten").await;
    let r = sb.get_object().bucket("data").key("rotten").send().await;
    let failed = match r {
        Err(_) => true,
        // The headers may go out before the body fails.
        Ok(o) => o.body.collect().await.is_err(),
    };
    assert!(failed, "a read of corrupt data succeeded");
    let s = stats(&b);
    assert!(s.refused_chunks >= 1, "{s:?}");
    assert_eq!(s.cache.chunks, 0, "{s:?}");
    let held = b
        .site
        .client
        .local_chunk_store()
        .expect("single node")
        .has_many(&rotten)
        .expect("has");
    assert!(held.iter().all(|h| !h), "a refused chunk was stored");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_stays_within_its_size_and_a_pinned_object_stays_whole() {
    const LIMIT: u64 = 2 << 20;
    let (a, b) = metadata_only_pair(Some(LIMIT)).await;
    let (sa, sb) = (a.site.s3(), b.site.s3());
    let big = random_bytes(8 << 20, 51);
    put(&sa, "data", "big", big.clone()).await;
    wait_for_manifest(&a, &b, "big").await;

    // Reading 8 MiB through a 2 MiB cache: the least recently used go.
    assert_eq!(get(&sb, "data", "big").await.expect("big at b").0, big);
    let s = stats(&b);
    assert!(s.cache.stored_bytes <= LIMIT, "{s:?}");
    assert!(s.evicted_chunks > 0, "{s:?}");
    assert_eq!(get(&sb, "data", "big").await.expect("big again").0, big);

    // Pinned: all of it is here and stays, beyond the cache size.
    let p = b.site.client.pin_object("data", "big").await.expect("pin");
    assert!(p.chunks > 0 && p.pinned > 0, "{p:?}");
    let pinned = stats(&b);
    assert!(pinned.cache.pinned_bytes >= 8 << 20, "{pinned:?}");
    // Pinning again changes nothing.
    let again = b.site.client.pin_object("data", "big").await.expect("pin");
    assert_eq!((again.fetched, again.pinned), (0, 0), "{again:?}");
    b.set_paused("from-a", true);
    b.wait_on_link("from-a", CONVERGE, "the link paused", || async {
        (b.status("from-a")?.phase == LinkPhase::Paused).then_some(())
    })
    .await;
    let fetched = stats(&b).fetched_chunks;
    assert_eq!(get(&sb, "data", "big").await.expect("pinned big").0, big);
    assert_eq!(stats(&b).fetched_chunks, fetched, "a pinned read fetched");

    // Unpinned: back within the size.
    let n = b
        .site
        .client
        .unpin_object("data", "big")
        .await
        .expect("unpin");
    assert!(n > 0);
    let s = stats(&b);
    assert!(s.cache.stored_bytes <= LIMIT, "{s:?}");
    assert_eq!(s.cache.pinned_bytes, 0, "{s:?}");
    a.stop().await;
    b.stop().await;
}
