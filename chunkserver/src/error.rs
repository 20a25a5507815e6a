//! Errors of the chunk store.

use cairn_core::{ChunkId, ErrorKind};

/// A chunk-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The stored bytes do not hash to the id (bit rot, a torn disk write, tampering).
    #[error("chunk {id} is corrupt: {reason}")]
    Corrupt {
        /// The chunk.
        id: ChunkId,
        /// What failed.
        reason: String,
    },
    /// A put whose payload does not decode to bytes hashing to the given id.
    #[error("chunk {id} was sent with bytes that do not match its id")]
    Mismatch {
        /// The claimed id.
        id: ChunkId,
    },
    /// A chunk over the 4 MiB limit.
    #[error("chunk of {0} bytes is over the 4 MiB limit")]
    TooLarge(usize),
    /// RocksDB failed.
    #[error("chunk database: {0}")]
    Db(#[from] rocksdb::Error),
    /// The file system refused an operation on the store's directory.
    #[error("chunk store directory: {0}")]
    Io(String),
    /// The index holds an entry that cannot be a chunk's.
    #[error("chunk index is corrupt: {0}")]
    CorruptIndex(String),
    /// Too few replicas of a chunk answered as needed (a put below the write quorum, a get
    /// with no good copy); `message` names each replica's failure.
    #[error("replicas {nodes}: {message}")]
    Replicas {
        /// The replicas that failed.
        nodes: String,
        /// The kind the failures share (`Io` when they differ).
        kind: ErrorKind,
        /// What each replica answered.
        message: String,
    },
    /// The store refuses new chunks, or a write failed, for lack of disk space; the message
    /// says what to do.
    #[error("{0}")]
    NoSpace(String),
    /// A call to another node's chunk service failed: the remote store's error (with its
    /// kind: `NotFound`, `Corrupt`, `InvalidInput`, ...) or the transport's (timeouts and lost
    /// connections are `Io`, a refused handshake `PermissionDenied`).
    #[error("chunk service of node {node}: {source}")]
    Rpc {
        /// The node called.
        node: String,
        /// What the call returned.
        #[source]
        source: cairn_net::RpcError,
    },
}

impl ChunkError {
    /// The shared error kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ChunkError::Corrupt { .. } => ErrorKind::Corrupt,
            ChunkError::Mismatch { .. } => ErrorKind::InvalidInput,
            ChunkError::TooLarge(_) => ErrorKind::LimitExceeded,
            ChunkError::NoSpace(_) => ErrorKind::NoSpace,
            ChunkError::Db(e) if cairn_core::space::is_no_space_message(e.as_ref()) => {
                ErrorKind::NoSpace
            }
            ChunkError::Io(m) if cairn_core::space::is_no_space_message(m) => ErrorKind::NoSpace,
            ChunkError::Db(_) | ChunkError::Io(_) => ErrorKind::Io,
            ChunkError::CorruptIndex(_) => ErrorKind::Corrupt,
            ChunkError::Rpc { source, .. } => source.kind(),
            ChunkError::Replicas { kind, .. } => *kind,
        }
    }
}
