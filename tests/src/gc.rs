//! Helpers for garbage-collection scenarios on a [`MultiSite`]: passes on every chunk node,
//! ageing every stored chunk past the hold, and where a node sits in placement.

use cairn_chunkserver::StoredChunk;
use cairn_client::GcReport;
use cairn_core::ChunkId;

use crate::multi::MultiSite;

/// GC's default hold, which the scenarios keep: one hour.
pub const HOLD_MS: u64 = 3_600_000;

/// Runs one GC pass on every running chunk node, one after the other; returns their reports.
pub async fn gc_all(site: &MultiSite) -> Vec<GcReport> {
    let mut reports = Vec::new();
    for k in chunk_nodes(site) {
        reports.push(gc_on(site, k).await);
    }
    reports
}

/// One GC pass on node `k` (which must hold a chunk store).
pub async fn gc_on(site: &MultiSite, k: usize) -> GcReport {
    site.node(k)
        .client
        .run_gc(cairn_client::now_ms(), HOLD_MS, &|_| {})
        .await
        .unwrap_or_else(|e| panic!("gc pass on n{}: {e}", k + 1))
}

/// The running nodes that hold a chunk store.
pub fn chunk_nodes(site: &MultiSite) -> Vec<usize> {
    (0..site.slots.len())
        .filter(|&k| {
            site.slots[k]
                .node
                .as_ref()
                .is_some_and(|n| n.chunks.is_some())
        })
        .collect()
}

/// Moves every chunk stored on any running node two hours into the past: the hold has passed
/// for everything written so far (call it only while no write is in flight).
pub fn age_everything(site: &MultiSite) {
    let ids = site.all_chunks();
    for k in chunk_nodes(site) {
        let store = site.node(k).chunks.clone().unwrap();
        for id in &ids {
            store.backdate_for_test(id, 2 * HOLD_MS).unwrap();
        }
    }
}

/// A stored copy of `id` from any running node, as a replica ships it.
pub fn stored_copy(site: &MultiSite, id: &ChunkId) -> Option<StoredChunk> {
    chunk_nodes(site).into_iter().find_map(|k| {
        site.node(k)
            .chunks
            .as_ref()
            .unwrap()
            .get_stored(id)
            .unwrap()
    })
}

/// The slot index of the node with map id `id`.
pub fn slot_of(site: &MultiSite, id: u64) -> usize {
    let map = site.node(0).cluster.map();
    let name = &map.nodes[&id].name;
    site.slots
        .iter()
        .position(|s| &s.config.node.name == name)
        .expect("a node of the map")
}
