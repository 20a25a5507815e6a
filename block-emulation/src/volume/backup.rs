//! What backups of snapshots need from a site, without any notion of where they go: a
//! snapshot's layout (its byte ranges in order, each zeros, a slice of a stored chunk, or
//! inline bytes), a chunk's verified bytes, and a volume rebuilt from such a layout by writing
//! it through a controller like any client would (zeros are skipped: the volume is thin).
//!
//! A backup tool copies each chunk the layout names once, by id, so a second backup of a
//! snapshot that shares most chunks with an earlier one sends only the new ones.

use std::sync::Arc;

use bytes::Bytes;
use cairn_core::extent::{RangeWalker, Target};
use cairn_core::ChunkId;

use super::{info_of, tree_root, Volume, VolumeError, VolumeInfo, Volumes};
use crate::device::BlockDevice;

/// How long an aborted restore waits for the new volume's controller to end.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// One byte range of a snapshot, in order, covering it without gaps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutPiece {
    /// Offset in the volume.
    pub offset: u64,
    /// Bytes covered.
    pub len: u64,
    /// Where they are: [`Target::Zeros`], [`Target::Inline`] (exactly `len` bytes), or
    /// [`Target::Chunk`] (bytes `[skip, skip + len)` of the chunk).
    pub target: Target,
}

/// A snapshot's settings and its content as pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotLayout {
    /// The volume's name.
    pub volume: String,
    /// The snapshot's name.
    pub snapshot: String,
    /// Size in bytes.
    pub size: u64,
    /// Logical block size.
    pub block_size: u32,
    /// Extent size.
    pub extent_size: u32,
    /// When the snapshot was taken (unix ms).
    pub created_ms: u64,
    /// The content, in order; adjacent zero ranges are merged.
    pub pieces: Vec<LayoutPiece>,
}

impl SnapshotLayout {
    /// The distinct chunks the pieces reference, in first-use order.
    pub fn chunks(&self) -> Vec<ChunkId> {
        let mut seen = std::collections::HashSet::new();
        self.pieces
            .iter()
            .filter_map(|p| match p.target {
                Target::Chunk { id, .. } if seen.insert(id) => Some(id),
                _ => None,
            })
            .collect()
    }
}

impl Volumes {
    /// The layout of snapshot `name@snap`: reads its tree nodes only, no data.
    pub async fn snapshot_layout(
        &self,
        name: &str,
        snap: &str,
    ) -> Result<SnapshotLayout, VolumeError> {
        let head = self.snapshot_head(name, snap).await?;
        let info = info_of(name, &head)?;
        let root = tree_root(&head)?;
        let mut walker =
            RangeWalker::new(root, 0, root.len).map_err(cairn_client::ClientError::from)?;
        let mut pieces: Vec<LayoutPiece> = Vec::new();
        let mut at = 0u64;
        while let Some(p) = walker.next(&self.client).await? {
            let target = match p.target {
                Target::Zeros => Target::Zeros,
                Target::Inline(b) => {
                    let (from, to) = (p.offset as usize, (p.offset + p.len) as usize);
                    if to > b.len() {
                        return Err(corrupt(format!(
                            "snapshot {name}@{snap} has an inline piece shorter than its length"
                        )));
                    }
                    Target::Inline(b.slice(from..to))
                }
                Target::Chunk { id, .. } => Target::Chunk {
                    id,
                    skip: u32::try_from(p.offset).map_err(|_| {
                        corrupt(format!(
                            "snapshot {name}@{snap} slices chunk {id} past 4 GiB"
                        ))
                    })?,
                },
            };
            let merged = match (pieces.last_mut(), &target) {
                (Some(last), Target::Zeros) if last.target == Target::Zeros => {
                    last.len += p.len;
                    true
                }
                _ => false,
            };
            if !merged {
                pieces.push(LayoutPiece {
                    offset: at,
                    len: p.len,
                    target,
                });
            }
            at += p.len;
        }
        Ok(SnapshotLayout {
            volume: name.to_string(),
            snapshot: snap.to_string(),
            size: info.size,
            block_size: info.block_size,
            extent_size: info.extent_size,
            created_ms: head.mtime_ms,
            pieces,
        })
    }

    /// The bytes of chunk `id`, verified against it by the store.
    pub async fn read_chunk(&self, id: ChunkId) -> Result<Bytes, VolumeError> {
        Ok(self.client.read_chunk_bytes(id).await?)
    }

    /// Creates volume `name` (empty, thin) to be filled with [`Restore::write`]; nobody else
    /// should open it until [`Restore::finish`]. [`Restore::abort`] deletes it again.
    pub async fn begin_restore(
        &self,
        name: &str,
        size: u64,
        block_size: u32,
        extent_size: u32,
    ) -> Result<Restore<'_>, VolumeError> {
        self.create(name, size, block_size, extent_size).await?;
        match self.open(name).await {
            Ok(volume) => Ok(Restore {
                volumes: self,
                name: name.to_string(),
                volume,
            }),
            Err(e) => {
                let _ = self.delete(name, true).await;
                Err(e)
            }
        }
    }

    /// Waits until the controller of `name`, whose handles are all gone, has ended.
    async fn wait_closed(&self, name: &str) {
        let exited = {
            let open = self.open.lock().await;
            open.get(name).map(|o| o.exited.clone())
        };
        if let Some(mut exited) = exited {
            let _ = exited.wait_for(|done| *done).await;
        }
    }
}

/// A volume being rebuilt from a backup.
pub struct Restore<'a> {
    volumes: &'a Volumes,
    name: String,
    volume: Arc<Volume>,
}

impl Restore<'_> {
    /// The volume's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes `data` at `offset` (buffered like any write; large pieces are split).
    pub async fn write(&self, offset: u64, data: Bytes) -> Result<(), VolumeError> {
        let max = super::MAX_IO as usize;
        let mut at = 0;
        while at < data.len() {
            let end = (at + max).min(data.len());
            self.volume
                .write(offset + at as u64, data.slice(at..end), false)
                .await?;
            at = end;
        }
        Ok(())
    }

    /// Makes everything written durable and returns the volume.
    pub async fn finish(self) -> Result<VolumeInfo, VolumeError> {
        if let Err(e) = self.volume.flush().await {
            self.abort().await;
            return Err(e.into());
        }
        self.volumes.info(&self.name).await
    }

    /// Deletes the half-restored volume (its chunks go at the next GC pass).
    pub async fn abort(self) {
        let Restore {
            volumes,
            name,
            volume,
        } = self;
        drop(volume);
        // A client that opened the new volume meanwhile keeps it open; give up after a while.
        let _ = tokio::time::timeout(CLOSE_WAIT, volumes.wait_closed(&name)).await;
        if let Err(e) = volumes.delete(&name, true).await {
            tracing::error!(volume = %name, error = %e, "could not delete a half-restored volume; delete it with `cairn volume delete`");
        }
    }
}

fn corrupt(msg: String) -> VolumeError {
    VolumeError::Client(cairn_client::ClientError::Corrupt(msg))
}
