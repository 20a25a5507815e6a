//! Scrub of a single-node site: every stored chunk is read back and re-hashed without any
//! client asking for it, so rot is found before a reader meets it. A node of a multi-node site
//! scrubs with the chunk maintenance workers instead, which replace a corrupt copy with a good
//! replica; here there is no replica, so a corrupt chunk is reported together with every
//! object version (and upload in progress) that reaches it — what the operator has to restore
//! from elsewhere. A corrupt chunk is never deleted: its id still names what was lost.

use std::collections::HashSet;

use cairn_chunkserver::{ChunkError, RateLimiter};
use cairn_core::extent::{Child, NodeStore, Target, TreeNode, MAX_DEPTH};
use cairn_core::manifest::Content;
use cairn_core::ChunkId;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::{ClientError, UploadsQuery, VersionsQuery};

/// Chunk ids read per page of the walk.
const PAGE: usize = 1000;
/// Corrupt chunks and affected objects a report names at most (the counts go on).
pub const MAX_LISTED: usize = 1000;

/// What a scrub pass found (also its progress while it runs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubReport {
    /// Stored chunks read and re-hashed.
    pub chunks_scanned: u64,
    /// Their stored (on-disk) bytes.
    pub bytes_scanned: u64,
    /// Chunks whose bytes do not hash to their id, or whose payload is missing.
    pub corrupt_found: u64,
    /// The corrupt chunks' ids (the first [`MAX_LISTED`]).
    pub corrupt: Vec<String>,
    /// Object versions and uploads that reach a corrupt chunk, as `bucket/key (version V)` or
    /// `bucket/key (upload U, part N)` (the first [`MAX_LISTED`]).
    pub affected: Vec<String>,
    /// How many versions and parts reach a corrupt chunk (may exceed what `affected` lists).
    pub affected_count: u64,
}

impl Client {
    /// One scrub pass over this node's chunk store (a single-node site), reading at most as
    /// fast as `limiter` allows (tokens are stored bytes); `progress` sees the report after
    /// every page. When corrupt chunks are found, the versions and uploads reaching them are
    /// listed by walking every extent tree once more.
    pub async fn run_scrub_limited(
        &self,
        progress: &(dyn Fn(&ScrubReport) + Sync),
        limiter: &RateLimiter,
    ) -> Result<ScrubReport, ClientError> {
        let store = self.inner.local.clone().ok_or_else(|| {
            ClientError::InvalidRequest(
                "this scrub needs the node's own chunk store: on a multi-node site the chunk \
                 maintenance workers scrub"
                    .into(),
            )
        })?;
        let mut report = ScrubReport::default();
        let mut corrupt = HashSet::new();
        let mut after: Option<ChunkId> = None;
        loop {
            let s = store.clone();
            let ids = self
                .blocking(move |_| Ok(s.list_ids(after.as_ref(), PAGE)?))
                .await?;
            let Some(last) = ids.last().copied() else {
                break;
            };
            after = Some(last);
            for id in ids {
                let s = store.clone();
                let checked = self
                    .blocking(move |_| {
                        let len = s.meta(&id).ok().flatten().map_or(0, |m| m.stored_len);
                        Ok((len, s.get(&id)))
                    })
                    .await?;
                let (len, result) = checked;
                limiter.acquire(u64::from(len)).await;
                report.chunks_scanned += 1;
                report.bytes_scanned += u64::from(len);
                match result {
                    // Removed by GC since it was listed.
                    Ok(_) => {}
                    Err(
                        ChunkError::Corrupt { .. }
                        | ChunkError::Mismatch { .. }
                        | ChunkError::CorruptIndex(_),
                    ) => {
                        tracing::error!(chunk = %id, "scrub: stored chunk is corrupt");
                        report.corrupt_found += 1;
                        if report.corrupt.len() < MAX_LISTED {
                            report.corrupt.push(id.to_string());
                        }
                        corrupt.insert(id);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            progress(&report);
        }
        if !corrupt.is_empty() {
            self.list_affected(&corrupt, &mut report).await?;
            progress(&report);
        }
        Ok(report)
    }

    /// Fills `report.affected` with every version and upload part that reaches a chunk of
    /// `corrupt`.
    async fn list_affected(
        &self,
        corrupt: &HashSet<ChunkId>,
        report: &mut ScrubReport,
    ) -> Result<(), ClientError> {
        let note = |report: &mut ScrubReport, what: String| {
            tracing::error!(object = %what, "scrub: reaches a corrupt chunk");
            report.affected_count += 1;
            if report.affected.len() < MAX_LISTED {
                report.affected.push(what);
            }
        };
        for bucket in self.list_buckets().await? {
            let mut q = VersionsQuery {
                max_keys: PAGE,
                ..Default::default()
            };
            loop {
                let (b, query) = (bucket.name.clone(), q.clone());
                let page = self
                    .blocking(move |i| Ok(i.meta.list_versions_everywhere(&b, &query)?))
                    .await?;
                for m in page.versions {
                    if self.reaches(&m.content, corrupt).await {
                        note(
                            report,
                            format!("{}/{} (version {})", bucket.name, m.key, m.version),
                        );
                    }
                }
                if !page.is_truncated {
                    break;
                }
                q.key_marker = page.next_key_marker;
                q.version_marker = page.next_version_marker;
            }
            let mut q = UploadsQuery {
                max_uploads: PAGE,
                ..Default::default()
            };
            loop {
                let (b, query) = (bucket.name.clone(), q.clone());
                let page = self
                    .blocking(move |i| Ok(i.meta.list_uploads_everywhere(&b, &query)?))
                    .await?;
                for u in page.uploads {
                    let mut after = 0u32;
                    loop {
                        let (b, id) = (bucket.name.clone(), u.upload_id.clone());
                        let parts = self
                            .blocking(move |i| {
                                Ok(i.meta.list_parts_everywhere(&b, &id, after, PAGE)?)
                            })
                            .await?;
                        let Some(last) = parts.last() else { break };
                        after = last.number;
                        for p in &parts {
                            if self.reaches(&p.content, corrupt).await {
                                let what = format!(
                                    "{}/{} (upload {}, part {})",
                                    bucket.name, u.key, u.upload_id, p.number
                                );
                                note(report, what);
                            }
                        }
                    }
                }
                if !page.is_truncated {
                    break;
                }
                q.key_marker = page.next_key_marker;
                q.upload_id_marker = page.next_upload_id_marker;
            }
        }
        Ok(())
    }

    /// Whether `content`'s extent tree reaches a chunk of `corrupt` (a tree node that cannot
    /// be read counts as reaching one: what lies under it is lost too).
    async fn reaches(&self, content: &Content, corrupt: &HashSet<ChunkId>) -> bool {
        let Some(root) = content.tree() else {
            return false;
        };
        let mut stack: Vec<(Child, usize)> = vec![(root, 1)];
        while let Some((child, depth)) = stack.pop() {
            if corrupt.contains(&child.node) || depth > MAX_DEPTH {
                return true;
            }
            match self.load(child.node, child.len).await {
                Ok(TreeNode::Children(children)) => {
                    stack.extend(children.into_iter().map(|c| (c, depth + 1)));
                }
                Ok(TreeNode::Leaves(leaves)) => {
                    let hit = leaves.iter().any(|l| match &l.target {
                        Target::Chunk { id, .. } => corrupt.contains(id),
                        _ => false,
                    });
                    if hit {
                        return true;
                    }
                }
                Err(_) => return true,
            }
        }
        false
    }
}
