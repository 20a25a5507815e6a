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
    /// A disk is (nearly) full: new writes are refused until space is freed or added.
    NoSpace,
}

impl ErrorKind {
    /// The kind's code on the wire (node-to-node calls). Codes are part of the protocol:
    /// never renumber.
    pub fn code(self) -> u8 {
        match self {
            ErrorKind::NotFound => 1,
            ErrorKind::AlreadyExists => 2,
            ErrorKind::InvalidInput => 3,
            ErrorKind::Conflict => 4,
            ErrorKind::Corrupt => 5,
            ErrorKind::PermissionDenied => 6,
            ErrorKind::LimitExceeded => 7,
            ErrorKind::Io => 8,
            ErrorKind::Internal => 9,
            ErrorKind::NoSpace => 10,
        }
    }

    /// The kind of a wire code; codes from a newer build read as `Internal`.
    pub fn from_code(code: u8) -> ErrorKind {
        match code {
            1 => ErrorKind::NotFound,
            2 => ErrorKind::AlreadyExists,
            3 => ErrorKind::InvalidInput,
            4 => ErrorKind::Conflict,
            5 => ErrorKind::Corrupt,
            6 => ErrorKind::PermissionDenied,
            7 => ErrorKind::LimitExceeded,
            8 => ErrorKind::Io,
            10 => ErrorKind::NoSpace,
            _ => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorKind;

    #[test]
    fn wire_codes_round_trip() {
        for k in [
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::InvalidInput,
            ErrorKind::Conflict,
            ErrorKind::Corrupt,
            ErrorKind::PermissionDenied,
            ErrorKind::LimitExceeded,
            ErrorKind::Io,
            ErrorKind::Internal,
            ErrorKind::NoSpace,
        ] {
            assert_eq!(ErrorKind::from_code(k.code()), k);
        }
        assert_eq!(ErrorKind::from_code(200), ErrorKind::Internal);
    }
}
