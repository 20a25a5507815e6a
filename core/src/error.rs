//! The shared error vocabulary. Each crate has its own typed error; every one of them maps to an
//! [`ErrorKind`], and each front end maps an `ErrorKind` once to its protocol's status (S3 error
//! code, SCSI sense, NFS status, RPC status).

/// What kind of failure happened, independent of which layer noticed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The named thing does not exist.
    NotFound,
    /// It exists already.
    AlreadyExists,
    /// The request is malformed or out of range.
    InvalidInput,
    /// The state does not allow it (non-empty bucket, upload aborted...).
    Conflict,
    /// Stored data failed verification.
    Corrupt,
    /// Not permitted.
    PermissionDenied,
    /// A limit was hit (size, count, depth).
    LimitExceeded,
    /// A disk, database or network failure: retrying may succeed.
    Io,
    /// A bug or an impossible state.
    Internal,
}
