//! Chunks this site lacks, asked of the sites its links are connected to: what
//! `cairn_client`'s fetch cache calls when a read reaches data a metadata-only link did not
//! ship.

use std::sync::Weak;

use cairn_client::{ChunkId, RemoteChunks, StoredChunk};
use futures::future::BoxFuture;

use crate::runner::Shared;
use crate::site::Source;

/// Asks every connected link's remote site in turn (metadata-only links first) for what the
/// ones before did not have.
pub(crate) struct LinkFetcher {
    shared: Weak<Shared>,
}

impl LinkFetcher {
    pub(crate) fn new(shared: Weak<Shared>) -> LinkFetcher {
        LinkFetcher { shared }
    }
}

impl RemoteChunks for LinkFetcher {
    fn fetch(&self, ids: Vec<ChunkId>) -> BoxFuture<'_, Result<Vec<Option<StoredChunk>>, String>> {
        Box::pin(async move {
            let Some(shared) = self.shared.upgrade() else {
                return Err("the links are stopping".to_string());
            };
            let remotes = shared.connected();
            drop(shared);
            if remotes.is_empty() {
                return Err("no link is connected now (`cairn link status` says why)".to_string());
            }
            let mut out: Vec<Option<StoredChunk>> = vec![None; ids.len()];
            let mut errors = Vec::new();
            let mut asked = 0;
            for remote in remotes {
                let left: Vec<usize> = (0..ids.len()).filter(|&n| out[n].is_none()).collect();
                if left.is_empty() {
                    break;
                }
                match remote.stored(left.iter().map(|&n| ids[n]).collect()).await {
                    Ok(found) => {
                        asked += 1;
                        for (n, c) in left.into_iter().zip(found) {
                            out[n] = c;
                        }
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            if asked == 0 {
                return Err(errors.join("; "));
            }
            Ok(out)
        })
    }
}
