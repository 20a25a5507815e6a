//! Manifest anti-entropy: a node with a local store pulls from every other manifest node what
//! it missed (see [`ReplicatedManifests::anti_entropy_pass`]).
//!
//! Per peer, in order:
//! 1. bucket records and access keys: the peer's stamped listing, page by page; a record this
//!    node is a replica of and whose stamp beats the local one (deletions included) is written
//!    here. Pull only: the peer runs its own pass.
//! 2. the peer's change log after a cursor kept in the local store's `meta` column family (per
//!    peer, with the map epoch it was kept under; reset when the peer's log is shorter than the
//!    cursor, as after a rebuilt store), at most
//!    [`ManifestReplicationConfig::anti_entropy_pages`] pages of ≤ 1000 changes per pass. Each
//!    read acknowledges the cursor to the peer (consumer `ae/<this node>`), which trims its log
//!    up to what its slowest live reader acknowledged (`crate::history`). When the cursor was
//!    kept under another map, the buckets placed here now but not under that map (every bucket
//!    placed here, when that map is no longer known) are first filled from the peer's stamped
//!    listing of versions and tombstones, since the cursor skipped their older changes; the log
//!    is then read on from the cursor, not from its start. When the peer's answer starts past
//!    the cursor (its log was trimmed while this node was away longer than the retention),
//!    every bucket placed here is filled that way and the cursor jumps to the log's start.
//!    Changes of buckets this node is not a replica of are skipped. A removal is applied as a
//!    tombstone. Any other change fetches the version from the peer (at most
//!    [`crate::MAX_STAMPED`] per call) and applies it with its stamp: a version this node lacks
//!    is added, an in-place update with a greater stamp replaces the local copy, anything else
//!    is ignored; a version the peer has since removed is tombstoned here too. The cursor moves
//!    after each page; an error stops the peer's log for this pass (it is read again next time),
//!    except a version of a bucket this node does not have, which is counted and skipped.
//!
//! A pass that did both steps with every peer without an error, reading each peer's log to its
//! end, and that started at least `map_settle` after this node took the map, records the map's
//! epoch as synced in the local store: once every manifest node of the map has, the previous
//! map can be forgotten (see "Map changes" in the `replicated` module docs).
//!
//! Between the two, uploads in progress and their parts (records changed in place, which
//! the change log does not carry) are reconciled by stamp for every bucket both nodes
//! replicate: see `ae_uploads.rs`.
//!
//! [`ManifestReplicationConfig::anti_entropy_pages`]: crate::ManifestReplicationConfig::anti_entropy_pages

use std::collections::HashSet;
use std::sync::Arc;

use cairn_core::cluster::NodeId;
use cairn_core::VersionId;

use super::{add, repair_write, Node, Shared, State};
use crate::error::Refusal;
use crate::rpc::MAX_LIST;
use crate::stamped::{
    Record, RecordId, StampCheck, StampedRecord, StampedWrite, MAX_STAMPED, TOMBSTONE,
};
use crate::{
    AntiEntropyReport, ManifestError, ManifestRequest, ManifestResponse, ManifestStore,
    ReplicatedManifests,
};

/// Records per page of a stamped bucket or key listing.
const RECORD_PAGE: u32 = 100;

/// Runs a closure on the local store on the blocking pool.
pub(super) async fn local<T: Send + 'static>(
    store: &Arc<ManifestStore>,
    f: impl FnOnce(&ManifestStore) -> Result<T, ManifestError> + Send + 'static,
) -> Result<T, ManifestError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| {
            ManifestError::from(Refusal::Remote {
                kind: cairn_core::ErrorKind::Internal,
                message: format!("manifest store task failed: {e}"),
            })
        })?
}

impl ReplicatedManifests {
    /// This node's id and store; fails naming `what` on a node that holds none.
    pub(super) fn local_store(
        &self,
        what: &str,
    ) -> Result<(NodeId, Arc<ManifestStore>), ManifestError> {
        self.shared.local.clone().ok_or_else(|| {
            ManifestError::Invalid(format!("{what} runs on a node that holds a manifest store"))
        })
    }

    /// One anti-entropy pass over every other manifest node of the map (see the module docs
    /// of `antientropy.rs`). Fails only on a node without a local store; errors with a peer
    /// are counted in the report and the pass goes on with the next peer. Run it from async
    /// code on the backend's runtime, periodically.
    pub async fn anti_entropy_pass(&self) -> Result<AntiEntropyReport, ManifestError> {
        let (local_id, store) = self.local_store("anti-entropy")?;
        let state = self.state();
        // Writes through nodes that took the map later than this one may still reach only the
        // old placement: a pass this early does not count as caught up.
        let settled = state.taken.elapsed() >= self.shared.config.map_settle;
        let mut report = AntiEntropyReport::default();
        let mut complete = true;
        for peer in state.manifest_nodes.iter().filter(|n| n.id != local_id) {
            report.peers += 1;
            let errors = report.errors;
            let result = async {
                self.pull_records(&state, local_id, &store, peer, false, &mut report)
                    .await?;
                self.pull_records(&state, local_id, &store, peer, true, &mut report)
                    .await?;
                self.pull_uploads(&state, local_id, &store, peer, &mut report)
                    .await?;
                self.pull_changes(&state, local_id, &store, peer, &mut report)
                    .await
            }
            .await;
            match result {
                Ok(at_end) => complete &= at_end && report.errors == errors,
                Err(e) => {
                    complete = false;
                    report.errors += 1;
                    report.last_error = Some(format!("{}: {e}", peer.label()));
                    tracing::debug!(peer = %peer.label(), error = %e, "anti-entropy with a peer failed");
                }
            }
        }
        if complete && settled {
            let epoch = state.map.epoch;
            local(&store, move |s| s.set_synced_epoch(epoch)).await?;
            report.synced = true;
        }
        let c = &self.shared.counters;
        add(&c.ae_passes, 1);
        add(&c.ae_changes_read, report.changes_read);
        add(&c.ae_versions_fetched, report.versions_fetched);
        add(&c.ae_removals_applied, report.removals_applied);
        add(&c.ae_records_updated, report.records_updated);
        add(&c.ae_errors, report.errors);
        Ok(report)
    }

    /// Step 1: bucket records (`keys` false) or access keys.
    async fn pull_records(
        &self,
        state: &State,
        local_id: NodeId,
        store: &Arc<ManifestStore>,
        peer: &Arc<Node>,
        keys: bool,
        report: &mut AntiEntropyReport,
    ) -> Result<(), ManifestError> {
        let mut after: Option<String> = None;
        loop {
            let req = ManifestRequest::ListStamped {
                keys,
                after: after.clone(),
                max: RECORD_PAGE,
            };
            let (records, truncated) = stamped_page(&self.shared, peer, req).await?;
            let Some(last) = records.last() else {
                return Ok(());
            };
            self.shared
                .anti_entropy_limiter
                .acquire(records.len() as u64)
                .await;
            after = match &last.id {
                RecordId::Bucket(n) | RecordId::Key(n) => Some(n.clone()),
                _ => None,
            };
            let mine: Vec<StampedRecord> = records
                .into_iter()
                .filter(|r| {
                    let replicas = match &r.id {
                        RecordId::Bucket(n) => state.bucket_replicas(n),
                        RecordId::Key(n) => state.key_replicas(n),
                        _ => return false,
                    };
                    replicas.is_ok_and(|v| v.iter().any(|n| n.id == local_id))
                })
                .collect();
            report.records_updated += self.apply_newer(store, mine).await?;
            if !truncated || after.is_none() {
                return Ok(());
            }
        }
    }

    /// Step 2: the peer's change log since the cursor. True when it read to the end of the
    /// log (false when the pass's page budget ran out first).
    ///
    /// The read acknowledges the cursor to the peer (consumer `ae/<this node>`, see
    /// `crate::history`). Where the log cannot tell this node what it lacks, it is filled
    /// from the peer's listings of the buckets placed on it instead ([`Self::fill_from`]):
    /// after a map change, the buckets newly placed here (all of them when the cursor's map is
    /// no longer known), whose older changes the cursor skipped; and when the peer has trimmed
    /// its log past the cursor, every bucket placed here.
    async fn pull_changes(
        &self,
        state: &State,
        local_id: NodeId,
        store: &Arc<ManifestStore>,
        peer: &Arc<Node>,
        report: &mut AntiEntropyReport,
    ) -> Result<bool, ManifestError> {
        let peer_id = peer.id;
        let epoch = state.map.epoch;
        let consumer = format!("ae/{local_id}");
        let kept = local(store, move |s| s.sync_cursor(peer_id)).await?;
        let mut cursor = kept.map_or(0, |(_, seq)| seq);
        // A rebuilt peer numbers its log from the start again.
        if let ManifestResponse::History(h) =
            self.shared.call(peer, ManifestRequest::History).await?
        {
            if h.last_seq < cursor {
                cursor = 0;
            }
        }
        // Buckets placed here now that were not under the cursor's map.
        if let Some((kept_epoch, _)) = kept.filter(|(e, _)| *e != epoch) {
            let filled = self
                .fill_from(state, local_id, store, peer, report, |bucket| {
                    state.held_bucket_under(bucket, local_id, kept_epoch) != Some(true)
                })
                .await?;
            report.buckets_filled += filled;
            local(store, move |s| s.set_sync_cursor(peer_id, epoch, cursor)).await?;
        }
        for _ in 0..self.shared.config.anti_entropy_pages.max(1) {
            let req = ManifestRequest::ChangesFor {
                consumer: consumer.clone(),
                after: cursor,
                max: MAX_LIST as u32,
            };
            let (first, changes) = match self.shared.call(peer, req).await? {
                ManifestResponse::ChangesFrom { first, changes } => (first, changes),
                other => {
                    return Err(ManifestError::Invalid(format!(
                        "unexpected answer to a change-log read: {other:?}"
                    )))
                }
            };
            if first > cursor.saturating_add(1) {
                // Changes this node never read were trimmed: the listings tell what they did.
                report.history_gaps += 1;
                let filled = self
                    .fill_from(state, local_id, store, peer, report, |_| true)
                    .await?;
                report.buckets_filled += filled;
                report.last_error = Some(format!(
                    "{}: its change log was trimmed past what this node had read (away longer \
                     than the history retention): filled {filled} buckets from its listings; \
                     versions removed more than the retention ago may have come back",
                    peer.label()
                ));
                cursor = first - 1;
                local(store, move |s| s.set_sync_cursor(peer_id, epoch, cursor)).await?;
            }
            let Some(last_seq) = changes.last().map(|c| c.seq) else {
                return Ok(true);
            };
            self.shared
                .anti_entropy_limiter
                .acquire(changes.len() as u64)
                .await;
            report.changes_read += changes.len() as u64;
            let mut removals = Vec::new();
            let mut fetch = Vec::new();
            let mut seen = HashSet::new();
            for c in changes {
                let here = state
                    .bucket_replicas(&c.bucket)
                    .is_ok_and(|v| v.iter().any(|n| n.id == local_id));
                if !here {
                    continue;
                }
                let id = RecordId::Version {
                    bucket: c.bucket,
                    key: c.key,
                    version: c.version,
                };
                if c.removed {
                    removals.push(id);
                } else if seen.insert(id.clone()) {
                    fetch.push(id);
                }
            }
            // Fetch what the peer holds now (removed since: it answers with a tombstone).
            let mut writes: Vec<StampedWrite> = removals
                .into_iter()
                .map(|id| StampedWrite {
                    id,
                    record: None,
                    stamp: TOMBSTONE,
                    check: StampCheck::None,
                })
                .collect();
            for batch in fetch.chunks(MAX_STAMPED) {
                let fetched = self.shared.get_stamped(peer, batch.to_vec()).await?;
                writes.extend(
                    fetched
                        .into_iter()
                        .filter(|r| r.record.is_some() || r.deleted)
                        .map(|r| repair_write(&r)),
                );
            }
            apply_pulled(store, writes, peer, report).await?;
            cursor = last_seq;
            local(store, move |s| s.set_sync_cursor(peer_id, epoch, last_seq)).await?;
        }
        Ok(false)
    }

    /// Copies from `peer` every version and tombstone it holds of the buckets placed on this
    /// node that `wanted` selects (this node's bucket records are up to date: step 1 ran).
    /// Returns how many buckets it went through.
    async fn fill_from(
        &self,
        state: &State,
        local_id: NodeId,
        store: &Arc<ManifestStore>,
        peer: &Arc<Node>,
        report: &mut AntiEntropyReport,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<u64, ManifestError> {
        let buckets = local(store, |s| s.list_buckets()).await?;
        let mut filled = 0;
        for bucket in buckets.into_iter().map(|b| b.name).filter(|name| {
            state
                .bucket_replicas(name)
                .is_ok_and(|v| v.iter().any(|n| n.id == local_id))
                && wanted(name)
        }) {
            filled += 1;
            let mut after: Option<(String, VersionId)> = None;
            loop {
                let req = ManifestRequest::ListVersionsStamped {
                    bucket: bucket.clone(),
                    after: after.clone(),
                    max: RECORD_PAGE,
                };
                let (records, truncated) = stamped_page(&self.shared, peer, req).await?;
                let Some(last) = records.last() else { break };
                after = match &last.id {
                    RecordId::Version { key, version, .. } => Some((key.clone(), *version)),
                    _ => None,
                };
                self.shared
                    .anti_entropy_limiter
                    .acquire(records.len() as u64)
                    .await;
                let writes = records
                    .iter()
                    .filter(|r| r.record.is_some() || r.deleted)
                    .map(repair_write)
                    .collect();
                apply_pulled(store, writes, peer, report).await?;
                if !truncated || after.is_none() {
                    break;
                }
            }
        }
        Ok(filled)
    }
}

/// A page of stamped records `peer` answers `req` with, and whether more follow.
async fn stamped_page(
    shared: &Shared,
    peer: &Arc<Node>,
    req: ManifestRequest,
) -> Result<(Vec<StampedRecord>, bool), ManifestError> {
    match shared.call(peer, req).await? {
        ManifestResponse::StampedPage { records, truncated } => Ok((records, truncated)),
        other => Err(ManifestError::Invalid(format!(
            "unexpected answer to a stamped listing: {other:?}"
        ))),
    }
}

/// Applies stamped writes pulled from `peer` to the local store, counting them in `report`.
async fn apply_pulled(
    store: &Arc<ManifestStore>,
    writes: Vec<StampedWrite>,
    peer: &Arc<Node>,
    report: &mut AntiEntropyReport,
) -> Result<(), ManifestError> {
    let (fetched, removed, skipped) = local(store, move |s| {
        let (mut fetched, mut removed, mut skipped) = (0u64, 0u64, 0u64);
        for w in &writes {
            match s.put_stamped(w) {
                Ok(o) if o.applied => match w.record {
                    Some(Record::Version(_)) => fetched += 1,
                    _ => removed += 1,
                },
                Ok(_) => {}
                Err(ManifestError::NoSuchBucket(_)) => skipped += 1,
                Err(e) => return Err(e),
            }
        }
        Ok((fetched, removed, skipped))
    })
    .await?;
    report.versions_fetched += fetched;
    report.removals_applied += removed;
    if skipped > 0 {
        report.errors += skipped;
        report.last_error = Some(format!(
            "{}: {skipped} versions of buckets this node does not have",
            peer.label()
        ));
    }
    Ok(())
}
