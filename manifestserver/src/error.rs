//! Errors of the manifest store.

use cairn_core::format::FormatError;
use cairn_core::ErrorKind;

/// A manifest-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// No bucket of that name.
    #[error("bucket `{0}` does not exist")]
    NoSuchBucket(String),
    /// The bucket exists (`owner` is its owner's access key id).
    #[error("bucket `{name}` already exists")]
    BucketExists {
        /// Bucket name.
        name: String,
        /// Owner access key id.
        owner: String,
    },
    /// The bucket still has versions or uploads.
    #[error("bucket `{0}` is not empty: delete its objects, versions and uploads first")]
    BucketNotEmpty(String),
    /// No multipart upload with that id for that bucket and key.
    #[error("upload `{0}` does not exist (it may have been completed or aborted)")]
    NoSuchUpload(String),
    /// An access key id is taken.
    #[error("access key `{0}` already exists")]
    KeyExists(String),
    /// A stored record failed to decode.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// RocksDB failed.
    #[error("metadata database: {0}")]
    Db(#[from] rocksdb::Error),
    /// Input out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// The version is protected by object lock (retention or legal hold).
    #[error("{0}")]
    Locked(String),
    /// A caller's check, run under the write lock, refused the change; its error is carried
    /// as is so the caller gets it back.
    #[error("{0}")]
    Refused(Box<dyn std::error::Error + Send + Sync>),
}

impl ManifestError {
    /// Wraps a caller's refusal (see [`ManifestError::Refused`]).
    pub fn refused(e: impl std::error::Error + Send + Sync + 'static) -> ManifestError {
        ManifestError::Refused(Box::new(e))
    }

    /// The [`Refusal`] this error carries, if it is one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            ManifestError::Refused(e) => e.downcast_ref::<Refusal>(),
            _ => None,
        }
    }

    /// Whether a compare-and-swap update found the stored record changed
    /// ([`Refusal::Conflict`]).
    pub fn is_conflict(&self) -> bool {
        matches!(self.refusal(), Some(Refusal::Conflict(_)))
    }
}

/// Failures of checks expressed as data (write conditions, compare-and-swap, request bounds)
/// and of calls to a remote manifest store ([`crate::rpc`]). They travel inside
/// [`ManifestError::Refused`] (read them back with [`ManifestError::refusal`]) rather than as
/// variants of their own, so that code matching every `ManifestError` variant keeps building;
/// [`ManifestError::kind`] gives each its own kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A compare-and-swap update: the stored record is not the one the caller expected.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A conditional write's condition does not hold (If-None-Match: * and the key has a
    /// current object, or If-Match with another ETag).
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// A conditional write with If-Match, and the key has no current object.
    #[error("key `{0}` has no current object")]
    NoSuchKey(String),
    /// A request asks for more than a remote call may carry.
    #[error("{0}")]
    LimitExceeded(String),
    /// The remote store failed in a way that has no variant of its own (its database, a
    /// corrupt record); `kind` is the remote error's kind.
    #[error("remote manifest store ({kind:?}): {message}")]
    Remote {
        /// The remote error's kind.
        kind: ErrorKind,
        /// The remote error's message.
        message: String,
    },
    /// The call itself failed: connection, TLS, deadline, or a peer that does not speak the
    /// manifest service.
    #[error("manifest service: {0}")]
    Transport(cairn_net::RpcError),
}

impl Refusal {
    /// The shared error kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Refusal::Conflict(_) | Refusal::PreconditionFailed(_) => ErrorKind::Conflict,
            Refusal::NoSuchKey(_) => ErrorKind::NotFound,
            Refusal::LimitExceeded(_) => ErrorKind::LimitExceeded,
            Refusal::Remote { kind, .. } => *kind,
            Refusal::Transport(e) => e.kind(),
        }
    }
}

impl From<Refusal> for ManifestError {
    fn from(r: Refusal) -> Self {
        ManifestError::refused(r)
    }
}

impl ManifestError {
    /// The shared error kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ManifestError::NoSuchBucket(_) | ManifestError::NoSuchUpload(_) => ErrorKind::NotFound,
            ManifestError::BucketExists { .. } | ManifestError::KeyExists(_) => {
                ErrorKind::AlreadyExists
            }
            ManifestError::BucketNotEmpty(_) => ErrorKind::Conflict,
            ManifestError::Format(_) => ErrorKind::Corrupt,
            ManifestError::Db(e) if cairn_core::space::is_no_space_message(e.as_ref()) => {
                ErrorKind::NoSpace
            }
            ManifestError::Db(_) => ErrorKind::Io,
            ManifestError::Invalid(_) => ErrorKind::InvalidInput,
            ManifestError::Locked(_) => ErrorKind::PermissionDenied,
            ManifestError::Refused(e) => e
                .downcast_ref::<Refusal>()
                .map_or(ErrorKind::Conflict, Refusal::kind),
        }
    }
}
