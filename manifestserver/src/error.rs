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
            ManifestError::Db(_) => ErrorKind::Io,
            ManifestError::Invalid(_) => ErrorKind::InvalidInput,
            ManifestError::Locked(_) => ErrorKind::PermissionDenied,
            ManifestError::Refused(_) => ErrorKind::Conflict,
        }
    }
}
