//! Client errors: one variant per outcome a gateway must report distinctly.

use cairn_core::ErrorKind;

/// An object-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No such bucket.
    #[error("bucket `{0}` does not exist")]
    NoSuchBucket(String),
    /// No current object under the key. `delete_marker` is the marker's version label when the
    /// newest version is a delete marker.
    #[error("key `{key}` does not exist")]
    NoSuchKey {
        /// Object key.
        key: String,
        /// Version label of the delete marker that hides the key, if any.
        delete_marker: Option<String>,
    },
    /// No such version of the key.
    #[error("version `{version}` of key `{key}` does not exist")]
    NoSuchVersion {
        /// Object key.
        key: String,
        /// Requested version label.
        version: String,
    },
    /// The requested version is a delete marker (GET/HEAD by version id).
    #[error("version `{version}` is a delete marker")]
    MethodNotAllowed {
        /// Version label of the marker.
        version: String,
    },
    /// The caller already owns a bucket of that name.
    #[error("you already own bucket `{0}`")]
    BucketAlreadyOwnedByYou(String),
    /// Someone else owns a bucket of that name.
    #[error("bucket `{0}` exists and belongs to another owner")]
    BucketAlreadyExists(String),
    /// Bucket still has content.
    #[error("bucket `{0}` is not empty: delete its objects, versions and uploads first")]
    BucketNotEmpty(String),
    /// Bucket name breaks S3's rules.
    #[error("invalid bucket name `{0}`: use 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit")]
    InvalidBucketName(String),
    /// Key longer than 1024 bytes or empty.
    #[error("object keys must be 1 to 1024 bytes of UTF-8")]
    KeyTooLong,
    /// No such multipart upload.
    #[error("upload `{0}` does not exist (it may have been completed or aborted)")]
    NoSuchUpload(String),
    /// A listed part is missing or its ETag differs.
    #[error("{0}")]
    InvalidPart(String),
    /// Parts not in ascending order.
    #[error("the list of parts must be in ascending part-number order")]
    InvalidPartOrder,
    /// A part other than the last is under 5 MiB.
    #[error("part {part} is {size} bytes; every part but the last must be at least 5 MiB")]
    EntityTooSmall {
        /// Part number.
        part: u32,
        /// Its size.
        size: u64,
    },
    /// Over the size limit.
    #[error("{0}")]
    EntityTooLarge(String),
    /// The write would take the bucket past its quota (`cairn bucket quota`).
    #[error("{0}")]
    QuotaExceeded(String),
    /// Range not satisfiable.
    #[error("the range is not satisfiable for an object of {size} bytes")]
    InvalidRange {
        /// Object size.
        size: u64,
    },
    /// Content-MD5 mismatch.
    #[error("the Content-MD5 you specified did not match what was received")]
    BadDigest,
    /// Body shorter (or longer) than announced, or the connection dropped mid-body.
    #[error("the request body ended early or did not match its Content-Length: {0}")]
    IncompleteBody(String),
    /// Any other bad argument.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request cannot be served as sent (S3's InvalidRequest).
    #[error("{0}")]
    InvalidRequest(String),
    /// The bucket's state does not allow the request (object lock and versioning).
    #[error("{0}")]
    InvalidBucketState(String),
    /// The request is not allowed (object lock, permissions).
    #[error("{0}")]
    AccessDenied(String),
    /// A precondition (If-Match and friends) did not hold.
    #[error("at least one of the preconditions you specified did not hold")]
    PreconditionFailed,
    /// Stored data failed verification and no good copy was found.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Disk or database failure.
    #[error("storage failure: {0}")]
    Storage(String),
    /// New writes are refused, or a write failed, for lack of disk space; the message says
    /// what to do. Removals are never refused for it.
    #[error("{0}")]
    NoSpace(String),
    /// The KMS key a request uses is disabled (S3's `KMS.DisabledException`).
    #[error("{0}")]
    KmsDisabled(String),
    /// The KMS key a request names does not exist (S3's `KMS.NotFoundException`).
    #[error("{0}")]
    KmsNotFound(String),
}

impl ClientError {
    /// The shared error kind.
    pub fn kind(&self) -> ErrorKind {
        use ClientError::*;
        match self {
            NoSuchBucket(_) | NoSuchKey { .. } | NoSuchVersion { .. } | NoSuchUpload(_) => {
                ErrorKind::NotFound
            }
            BucketAlreadyOwnedByYou(_) | BucketAlreadyExists(_) => ErrorKind::AlreadyExists,
            BucketNotEmpty(_) | MethodNotAllowed { .. } => ErrorKind::Conflict,
            EntityTooLarge(_) | QuotaExceeded(_) => ErrorKind::LimitExceeded,
            AccessDenied(_) => ErrorKind::PermissionDenied,
            PreconditionFailed => ErrorKind::Conflict,
            Corrupt(_) => ErrorKind::Corrupt,
            Storage(_) => ErrorKind::Io,
            NoSpace(_) => ErrorKind::NoSpace,
            _ => ErrorKind::InvalidInput,
        }
    }
}

/// The message of a failure for lack of space, as the user should read it.
fn no_space(detail: &str) -> ClientError {
    ClientError::NoSpace(cairn_core::space::no_space_message(
        cairn_core::SpaceState::Full,
        detail,
    ))
}

impl From<cairn_manifestserver::ManifestError> for ClientError {
    fn from(e: cairn_manifestserver::ManifestError) -> Self {
        use cairn_manifestserver::ManifestError as M;
        if e.kind() == ErrorKind::NoSpace {
            return no_space(&format!("metadata store: {e}"));
        }
        match e {
            M::NoSuchBucket(b) => ClientError::NoSuchBucket(b),
            M::BucketNotEmpty(b) => ClientError::BucketNotEmpty(b),
            M::NoSuchUpload(u) => ClientError::NoSuchUpload(u),
            M::BucketExists { name, .. } => ClientError::BucketAlreadyExists(name),
            M::Invalid(m) => ClientError::InvalidArgument(m),
            M::Locked(m) => ClientError::AccessDenied(m),
            M::Refused(e) => match e.downcast::<ClientError>() {
                Ok(c) => *c,
                Err(e) => match e.downcast::<cairn_manifestserver::Refusal>() {
                    Ok(r) => match *r {
                        cairn_manifestserver::Refusal::PreconditionFailed(_) => {
                            ClientError::PreconditionFailed
                        }
                        cairn_manifestserver::Refusal::NoSuchKey(key) => ClientError::NoSuchKey {
                            key,
                            delete_marker: None,
                        },
                        r => ClientError::InvalidArgument(r.to_string()),
                    },
                    Err(e) => ClientError::InvalidArgument(e.to_string()),
                },
            },
            M::KeyExists(k) => {
                ClientError::InvalidArgument(format!("access key `{k}` already exists"))
            }
            M::Format(f) => ClientError::Corrupt(f.to_string()),
            M::Db(d) => ClientError::Storage(d.to_string()),
        }
    }
}

impl From<cairn_chunkserver::ChunkError> for ClientError {
    fn from(e: cairn_chunkserver::ChunkError) -> Self {
        use cairn_chunkserver::ChunkError as C;
        match e {
            // The store's own refusal already says what to do.
            C::NoSpace(m) => ClientError::NoSpace(m),
            _ if e.kind() == ErrorKind::NoSpace => no_space(&e.to_string()),
            C::Corrupt { .. } | C::Mismatch { .. } | C::CorruptIndex(_) => {
                ClientError::Corrupt(e.to_string())
            }
            C::Replicas {
                kind: ErrorKind::Corrupt,
                ..
            } => ClientError::Corrupt(e.to_string()),
            C::TooLarge(_) | C::Db(_) | C::Io(_) | C::Rpc { .. } | C::Replicas { .. } => {
                ClientError::Storage(e.to_string())
            }
        }
    }
}

impl From<cairn_core::extent::TreeError> for ClientError {
    fn from(e: cairn_core::extent::TreeError) -> Self {
        ClientError::Corrupt(e.to_string())
    }
}
