//! Trimming this node's metadata history (see `crate::history`): the consumers a site's
//! manifest node waits for are the anti-entropy of every other manifest node of the current
//! map and of the previous one, plus whatever holds the log (garbage-collection passes, links).

use super::antientropy::local;
use super::ReplicatedManifests;
use crate::history::{now_ms, HistoryState, TrimPolicy, TrimReport};
use crate::ManifestError;

impl ReplicatedManifests {
    /// One trim of this node's change log and tombstones, waiting for consumers that
    /// acknowledged within `retention_ms`. Fails on a node without a local store. Run it from
    /// async code on the backend's runtime, periodically.
    pub async fn trim_history_pass(&self, retention_ms: u64) -> Result<TrimReport, ManifestError> {
        let (local_id, store) = self.local_store("history trimming")?;
        let state = self.state();
        let mut peers: Vec<String> = state
            .nodes
            .keys()
            .filter(|id| **id != local_id)
            .map(|id| format!("ae/{id}"))
            .collect();
        peers.sort();
        let policy = TrimPolicy {
            now_ms: now_ms(),
            retention_ms,
            peers,
        };
        local(&store, move |s| s.trim_history_with(&policy)).await
    }

    /// This node's change log extent and consumers. Fails on a node without a local store.
    pub async fn local_history(&self) -> Result<HistoryState, ManifestError> {
        let (_, store) = self.local_store("history")?;
        local(&store, |s| s.history()).await
    }
}
