//! Extent-tree nodes live in the chunk store like any chunk.

use bytes::Bytes;
use cairn_chunkserver::StoredChunk;
use cairn_core::extent::{NodeStore, TreeNode};
use cairn_core::ChunkId;

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

impl Client {
    /// A chunk's verified bytes; a missing chunk is corruption (a manifest reaches it).
    pub(crate) async fn read_chunk(&self, id: ChunkId) -> Result<Bytes, ClientError> {
        self.blocking(move |i| {
            i.chunks
                .get(&id)?
                .ok_or_else(|| ClientError::Corrupt(format!("chunk {id} is missing")))
        })
        .await
    }
}
