//! Extent-tree nodes live in the chunk store like any chunk.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use cairn_chunkserver::{ChunkBackend, StoredChunk};
use cairn_core::extent::{NodeStore, TreeNode};
use cairn_core::ChunkId;
use parking_lot::Mutex;

use crate::client::Client;
use crate::ClientError;

impl NodeStore for Client {
    type Error = ClientError;

    async fn load(&self, id: ChunkId, len: u64) -> Result<TreeNode, ClientError> {
        let bytes = self.read_chunk(id).await?;
        Ok(TreeNode::decode_checked(&bytes, len)?)
    }

    async fn store(&self, id: ChunkId, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.blocking(move |i| {
            let chunk = StoredChunk::encode(Bytes::from(bytes));
            i.chunks.put(&id, &chunk)?;
            Ok(())
        })
        .await
    }
}

/// Threads reading single chunks from a local store. Many small reads at once (a block
/// device's queue) would otherwise each take a blocking-pool thread, so that dozens of threads
/// wake and sleep in turn; these few take what is queued in batches and go back to sleep only
/// when the queue is empty.
pub(crate) struct Readers {
    tx: std::sync::mpsc::Sender<ReadJob>,
}

type ReadJob = (
    ChunkId,
    tokio::sync::oneshot::Sender<Result<Option<Bytes>, ClientError>>,
);

/// Reader threads per client.
const READERS: usize = 2;
/// Most queued reads one thread takes at a time.
const READ_BATCH: usize = 32;

impl Readers {
    fn start(chunks: &Arc<dyn ChunkBackend>) -> Readers {
        let (tx, rx) = std::sync::mpsc::channel::<ReadJob>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..READERS {
            // Weak: the client's last handle going away closes the store, not these threads;
            // they end when the queue's sender (in the client) is dropped.
            let store: Weak<dyn ChunkBackend> = Arc::downgrade(chunks);
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("cairn-chunk-read-{n}"))
                .spawn(move || loop {
                    let batch: Vec<ReadJob> = {
                        let rx = rx.lock();
                        let Ok(first) = rx.recv() else {
                            return;
                        };
                        let mut batch = vec![first];
                        while batch.len() < READ_BATCH {
                            match rx.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    let Some(store) = store.upgrade() else {
                        return;
                    };
                    for (id, reply) in batch {
                        let _ = reply.send(store.get(&id).map_err(ClientError::from));
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start a chunk reader thread");
            }
        }
        Readers { tx }
    }
}

impl Client {
    /// [`Client::read_chunk`] through the reader threads when the store is local: for many
    /// small reads at once (block volumes).
    pub(crate) async fn read_chunk_queued(&self, id: ChunkId) -> Result<Bytes, ClientError> {
        if self.inner.chunks.groups_puts() {
            let readers = self
                .inner
                .readers
                .get_or_init(|| Readers::start(&self.inner.chunks));
            let (tx, rx) = tokio::sync::oneshot::channel();
            if readers.tx.send((id, tx)).is_ok() {
                if let Ok(r) = rx.await {
                    return match r? {
                        Some(b) => Ok(b),
                        None => Ok(self.fetch_missing(id).await?.0),
                    };
                }
            }
            // No reader thread could be started: the blocking pool does it.
        }
        self.read_chunk(id).await
    }

    /// A chunk's verified bytes; a missing chunk is fetched from the linked sites when this
    /// site fetches (see [`crate::fetch`]), otherwise it is corruption (a manifest reaches it).
    pub(crate) async fn read_chunk(&self, id: ChunkId) -> Result<Bytes, ClientError> {
        match self.blocking(move |i| Ok(i.chunks.get(&id)?)).await? {
            Some(b) => Ok(b),
            None => Ok(self.fetch_missing(id).await?.0),
        }
    }

    /// A tree node read from this site's store only: `None` when it is not here (GC's mark on
    /// a site that fetches from linked sites, see [`crate::fetch`]).
    pub(crate) async fn load_local(
        &self,
        id: ChunkId,
        len: u64,
    ) -> Result<Option<TreeNode>, ClientError> {
        match self.blocking(move |i| Ok(i.chunks.get(&id)?)).await? {
            Some(b) => Ok(Some(TreeNode::decode_checked(&b, len)?)),
            None => Ok(None),
        }
    }
}
