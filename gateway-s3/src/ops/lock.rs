//! Object lock: a new version's retention and legal hold from its request headers.

use cairn_core::manifest::{LockMode, ObjectLock, Retention};
use s3s::dto::{ObjectLockLegalHoldStatus, ObjectLockMode, ObjectLockRetainUntilDate};
use s3s::{s3_error, S3Result};

/// The lock state a PutObject or CreateMultipartUpload asks for (mode and date together, or
/// neither).
pub(crate) fn lock_from_request(
    mode: Option<&ObjectLockMode>,
    until: Option<&ObjectLockRetainUntilDate>,
    legal_hold: Option<&ObjectLockLegalHoldStatus>,
) -> S3Result<ObjectLock> {
    let retention = match (mode, until) {
        (None, None) => None,
        (Some(m), Some(u)) => Some(Retention {
            mode: lock_mode(m.as_str())?,
            until_ms: crate::convert::timestamp_ms(u)?,
        }),
        _ => return Err(s3_error!(
            InvalidArgument,
            "x-amz-object-lock-mode and x-amz-object-lock-retain-until-date must be sent together"
        )),
    };
    let legal_hold = match legal_hold.map(|h| h.as_str()) {
        None | Some("OFF") => false,
        Some("ON") => true,
        Some(other) => {
            return Err(s3_error!(
                InvalidArgument,
                "legal hold status must be ON or OFF, not `{other}`"
            ))
        }
    };
    Ok(ObjectLock {
        retention,
        legal_hold,
    })
}

/// A retention mode by its S3 name.
pub(crate) fn lock_mode(s: &str) -> S3Result<LockMode> {
    match s {
        "GOVERNANCE" => Ok(LockMode::Governance),
        "COMPLIANCE" => Ok(LockMode::Compliance),
        other => Err(s3_error!(
            InvalidArgument,
            "object lock mode must be GOVERNANCE or COMPLIANCE, not `{other}`"
        )),
    }
}
