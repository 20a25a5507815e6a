//! Anti-entropy of multipart uploads and their parts (a step of
//! [`ReplicatedManifests::anti_entropy_pass`]): uploads and parts are records changed in
//! place (not versions), so the change log does not carry them; without this step a replica
//! that missed a part's write learned of it only when a read asked it.
//!
//! For every bucket both this node and the peer are replicas of: the peer's uploads in
//! progress, page by page, with their stamps; each that beats the local record is written here;
//! then each upload's parts (stamped), likewise. Last, the uploads this node still holds are
//! asked of the peer: one the peer completed or aborted (a newer tombstone there) is removed
//! here too. Pull only: the peer runs its own pass.

use std::sync::Arc;

use cairn_core::cluster::NodeId;
use cairn_core::manifest::Upload;

use super::antientropy::local;
use super::{repair_write, Node, State};
use crate::rpc::MAX_LIST;
use crate::stamped::{Record, RecordId, StampedRecord, MAX_STAMPED};
use crate::{
    AntiEntropyReport, ManifestError, ManifestRequest, ManifestResponse, ManifestStore,
    ReplicatedManifests, UploadsQuery,
};

fn upload_id(u: &Upload) -> RecordId {
    RecordId::Upload {
        bucket: u.bucket.clone(),
        key: u.key.clone(),
        upload_id: u.upload_id.clone(),
    }
}

fn unexpected(what: &str, resp: &ManifestResponse) -> ManifestError {
    ManifestError::Invalid(format!("unexpected answer to {what}: {resp:?}"))
}

impl ReplicatedManifests {
    /// Uploads and parts of every bucket this node and `peer` both replicate (see the module
    /// docs of `ae_uploads.rs`).
    pub(super) async fn pull_uploads(
        &self,
        state: &State,
        local_id: NodeId,
        store: &Arc<ManifestStore>,
        peer: &Arc<Node>,
        report: &mut AntiEntropyReport,
    ) -> Result<(), ManifestError> {
        let buckets = local(store, |s| s.list_buckets()).await?;
        for bucket in buckets {
            let shared = state.bucket_replicas(&bucket.name).is_ok_and(|r| {
                r.iter().any(|n| n.id == local_id) && r.iter().any(|n| n.id == peer.id)
            });
            if shared {
                self.pull_bucket_uploads(store, peer, &bucket.name, report)
                    .await?;
            }
        }
        Ok(())
    }

    async fn pull_bucket_uploads(
        &self,
        store: &Arc<ManifestStore>,
        peer: &Arc<Node>,
        bucket: &str,
        report: &mut AntiEntropyReport,
    ) -> Result<(), ManifestError> {
        let mut q = UploadsQuery {
            max_uploads: MAX_LIST,
            ..Default::default()
        };
        loop {
            let req = ManifestRequest::ListUploads {
                bucket: bucket.to_string(),
                query: q.clone(),
            };
            let page = match self.shared.call(peer, req).await {
                Ok(ManifestResponse::Uploads(p)) => p,
                Ok(other) => return Err(unexpected("an upload listing", &other)),
                // Not there yet: its bucket record comes with the next pass.
                Err(ManifestError::NoSuchBucket(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            self.shared
                .anti_entropy_limiter
                .acquire(page.uploads.len() as u64)
                .await;
            let ids: Vec<RecordId> = page.uploads.iter().map(upload_id).collect();
            self.take_newer(store, peer, ids, report).await?;
            for u in &page.uploads {
                self.pull_parts(store, peer, u, report).await?;
            }
            if !page.is_truncated {
                break;
            }
            q.key_marker = page.next_key_marker;
            q.upload_id_marker = page.next_upload_id_marker;
        }
        // Uploads this node holds that the peer may have completed or aborted.
        let b = bucket.to_string();
        let mine: Vec<RecordId> = local(store, move |s| {
            let mut out = Vec::new();
            let mut q = UploadsQuery {
                max_uploads: MAX_LIST,
                ..Default::default()
            };
            loop {
                let page = s.list_uploads(&b, &q)?;
                out.extend(page.uploads.iter().map(upload_id));
                if !page.is_truncated {
                    return Ok(out);
                }
                q.key_marker = page.next_key_marker;
                q.upload_id_marker = page.next_upload_id_marker;
            }
        })
        .await?;
        self.take_newer(store, peer, mine, report).await
    }

    /// Reads `ids` on the peer and writes here each record whose stamp beats this node's.
    async fn take_newer(
        &self,
        store: &Arc<ManifestStore>,
        peer: &Arc<Node>,
        ids: Vec<RecordId>,
        report: &mut AntiEntropyReport,
    ) -> Result<(), ManifestError> {
        for batch in ids.chunks(MAX_STAMPED) {
            let theirs = self.shared.get_stamped(peer, batch.to_vec()).await?;
            report.records_updated += self.apply_newer(store, theirs).await?;
        }
        Ok(())
    }

    /// Writes each of `theirs` that beats this node's copy; how many were written.
    pub(super) async fn apply_newer(
        &self,
        store: &Arc<ManifestStore>,
        theirs: Vec<StampedRecord>,
    ) -> Result<u64, ManifestError> {
        local(store, move |s| {
            let mut updated = 0u64;
            for r in &theirs {
                let here = s.get_stamped(&r.id)?;
                if r.rank() > here.rank() && s.put_stamped(&repair_write(r))?.applied {
                    updated += 1;
                }
            }
            Ok(updated)
        })
        .await
    }

    /// The parts of one of the peer's uploads.
    async fn pull_parts(
        &self,
        store: &Arc<ManifestStore>,
        peer: &Arc<Node>,
        upload: &Upload,
        report: &mut AntiEntropyReport,
    ) -> Result<(), ManifestError> {
        let mut after = 0u32;
        loop {
            let req = ManifestRequest::ListPartsStamped {
                upload_id: upload.upload_id.clone(),
                after,
                max: MAX_LIST as u32,
            };
            let parts = match self.shared.call(peer, req).await? {
                ManifestResponse::StampedParts(p) => p,
                other => return Err(unexpected("a part listing", &other)),
            };
            let Some((_, last)) = parts.last() else {
                return Ok(());
            };
            after = last.number;
            self.shared
                .anti_entropy_limiter
                .acquire(parts.len() as u64)
                .await;
            let theirs = parts
                .into_iter()
                .map(|(stamp, part)| StampedRecord {
                    id: RecordId::Part {
                        bucket: upload.bucket.clone(),
                        key: upload.key.clone(),
                        upload_id: upload.upload_id.clone(),
                        number: part.number,
                    },
                    stamp,
                    record: Some(Record::Part(part)),
                    deleted: false,
                })
                .collect();
            report.records_updated += self.apply_newer(store, theirs).await?;
        }
    }
}
