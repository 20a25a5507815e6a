//! Object lock: the bucket's configuration (default retention), a version's retention and legal
//! hold, and the lock a new version gets from its request headers or the bucket's default.
//! Deletion of protected versions is refused by the client library under the metadata store's
//! write lock.

use cairn_client::ClientError;
use cairn_core::manifest::{
    Bucket, DefaultRetention, LockMode, ObjectLock, ObjectLockConfig, Retention, Versioning,
};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::Gateway;
use crate::convert::{timestamp, timestamp_ms, version_sel};
use crate::error::{client_error, custom_error};

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
        _ => {
            return Err(s3_error!(
            InvalidArgument,
            "x-amz-object-lock-mode and x-amz-object-lock-retain-until-date must be sent together"
        ))
        }
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

/// `InvalidRequest` for a lock operation on a bucket without object lock.
fn no_lock_config() -> s3s::S3Error {
    s3_error!(
        InvalidRequest,
        "Bucket is missing Object Lock Configuration: create the bucket with object lock enabled"
    )
}

/// A version's lock as GET and HEAD show it (x-amz-object-lock-mode, -retain-until-date,
/// -legal-hold).
pub(crate) struct LockHeaders {
    pub(crate) mode: Option<ObjectLockMode>,
    pub(crate) until: Option<Timestamp>,
    pub(crate) legal_hold: Option<ObjectLockLegalHoldStatus>,
}

impl LockHeaders {
    pub(crate) fn of(m: &cairn_client::VersionManifest) -> LockHeaders {
        let r = m.lock.retention.as_ref();
        LockHeaders {
            mode: r.map(|r| {
                ObjectLockMode::from_static(match r.mode {
                    LockMode::Governance => ObjectLockMode::GOVERNANCE,
                    LockMode::Compliance => ObjectLockMode::COMPLIANCE,
                })
            }),
            until: r.map(|r| timestamp(r.until_ms)),
            legal_hold: m
                .lock
                .legal_hold
                .then(|| ObjectLockLegalHoldStatus::from_static(ObjectLockLegalHoldStatus::ON)),
        }
    }
}

/// The S3 name of a retention mode.
fn mode_name(m: LockMode) -> ObjectLockRetentionMode {
    ObjectLockRetentionMode::from_static(match m {
        LockMode::Governance => ObjectLockRetentionMode::GOVERNANCE,
        LockMode::Compliance => ObjectLockRetentionMode::COMPLIANCE,
    })
}

pub(super) async fn put_object_lock_configuration(
    gw: &Gateway,
    req: S3Request<PutObjectLockConfigurationInput>,
) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
    let Some(config) = req.input.object_lock_configuration else {
        return Err(s3_error!(
            MalformedXML,
            "the request needs an ObjectLockConfiguration body"
        ));
    };
    if config.object_lock_enabled.as_ref().map(|e| e.as_str()) != Some(ObjectLockEnabled::ENABLED) {
        return Err(s3_error!(MalformedXML, "ObjectLockEnabled must be Enabled"));
    }
    let default_retention = match config.rule.and_then(|r| r.default_retention) {
        None => None,
        Some(d) => {
            let Some(mode) = d.mode else {
                return Err(s3_error!(MalformedXML, "a DefaultRetention needs a Mode"));
            };
            let mode = lock_mode(mode.as_str())
                .map_err(|_| s3_error!(MalformedXML, "Mode must be GOVERNANCE or COMPLIANCE"))?;
            let period = match (d.days, d.years) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(s3_error!(
                        MalformedXML,
                        "a DefaultRetention holds exactly one of Days or Years"
                    ))
                }
                (Some(n), None) | (None, Some(n)) => n,
            };
            let Some(period) = u32::try_from(period).ok().filter(|p| *p > 0) else {
                return Err(custom_error(
                    "InvalidRetentionPeriod",
                    http::StatusCode::BAD_REQUEST,
                    "the default retention period must be a positive integer",
                ));
            };
            Some(DefaultRetention {
                mode,
                days: d.days.map(|_| period),
                years: d.years.map(|_| period),
            })
        }
    };
    gw.client
        .update_bucket(&req.input.bucket, move |b| {
            if b.object_lock.is_none() && b.versioning != Versioning::Enabled {
                return Err(ClientError::InvalidBucketState(
                    "object lock needs versioning: enable versioning on the bucket first".into(),
                ));
            }
            b.versioning = Versioning::Enabled;
            b.object_lock = Some(ObjectLockConfig { default_retention });
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
}

pub(super) async fn get_object_lock_configuration(
    gw: &Gateway,
    req: S3Request<GetObjectLockConfigurationInput>,
) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
    let b = gw
        .client
        .head_bucket(&req.input.bucket)
        .await
        .map_err(client_error)?;
    let Some(config) = b.object_lock else {
        return Err(s3_error!(
            ObjectLockConfigurationNotFoundError,
            "Object Lock configuration does not exist for this bucket"
        ));
    };
    let rule = config.default_retention.map(|d| ObjectLockRule {
        default_retention: Some(s3s::dto::DefaultRetention {
            days: d.days.map(|v| i32::try_from(v).unwrap_or(i32::MAX)),
            years: d.years.map(|v| i32::try_from(v).unwrap_or(i32::MAX)),
            mode: Some(mode_name(d.mode)),
        }),
    });
    Ok(S3Response::new(GetObjectLockConfigurationOutput {
        object_lock_configuration: Some(ObjectLockConfiguration {
            object_lock_enabled: Some(ObjectLockEnabled::from_static(ObjectLockEnabled::ENABLED)),
            rule,
        }),
    }))
}

pub(super) async fn put_object_retention(
    gw: &Gateway,
    req: S3Request<PutObjectRetentionInput>,
) -> S3Result<S3Response<PutObjectRetentionOutput>> {
    let input = req.input;
    let bypass = input.bypass_governance_retention == Some(true);
    let retention = match input.retention {
        None => None,
        Some(r) => match (r.mode, r.retain_until_date) {
            (None, None) => None,
            (Some(m), Some(d)) => Some(Retention {
                mode: lock_mode(m.as_str()).map_err(|_| {
                    s3_error!(MalformedXML, "Mode must be GOVERNANCE or COMPLIANCE")
                })?,
                until_ms: timestamp_ms(&d)?,
            }),
            _ => {
                return Err(s3_error!(
                    MalformedXML,
                    "a Retention needs both Mode and RetainUntilDate"
                ))
            }
        },
    };
    let now = cairn_client::now_ms();
    if retention.as_ref().is_some_and(|r| r.until_ms <= now) {
        return Err(s3_error!(
            InvalidArgument,
            "The retain until date must be in the future!"
        ));
    }
    require_lock_bucket(gw, &input.bucket).await?;
    let sel = version_sel(input.version_id.as_deref())?;
    gw.client
        .update_version(&input.bucket, &input.key, &sel, move |m| {
            if let Some(old) = &m.lock.retention {
                let weaker = match &retention {
                    None => true,
                    Some(new) => new.until_ms < old.until_ms || new.mode != old.mode,
                };
                let protected = old.until_ms > now && (old.mode == LockMode::Compliance || !bypass);
                if weaker && protected {
                    return Err(ClientError::AccessDenied(
                        "Access Denied because object protected by object lock: a retention \
                         can only be extended (governance retention can be changed with \
                         x-amz-bypass-governance-retention)"
                            .into(),
                    ));
                }
            }
            m.lock.retention = retention;
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(PutObjectRetentionOutput::default()))
}

pub(super) async fn get_object_retention(
    gw: &Gateway,
    req: S3Request<GetObjectRetentionInput>,
) -> S3Result<S3Response<GetObjectRetentionOutput>> {
    let input = req.input;
    let sel = version_sel(input.version_id.as_deref())?;
    let m = version_in_lock_bucket(gw, &input.bucket, &input.key, &sel).await?;
    let Some(r) = m.lock.retention else {
        return Err(s3_error!(
            NoSuchObjectLockConfiguration,
            "The specified object does not have a ObjectLock configuration"
        ));
    };
    Ok(S3Response::new(GetObjectRetentionOutput {
        retention: Some(ObjectLockRetention {
            mode: Some(mode_name(r.mode)),
            retain_until_date: Some(timestamp(r.until_ms)),
        }),
    }))
}

/// The bucket, if it has object lock (InvalidRequest for other buckets).
async fn require_lock_bucket(gw: &Gateway, bucket: &str) -> S3Result<Bucket> {
    let b = gw.client.head_bucket(bucket).await.map_err(client_error)?;
    if b.object_lock.is_none() {
        return Err(no_lock_config());
    }
    Ok(b)
}

/// A version of an object in a bucket with object lock (InvalidRequest for other buckets).
async fn version_in_lock_bucket(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    sel: &cairn_client::VersionSel,
) -> S3Result<cairn_client::VersionManifest> {
    let r = gw
        .client
        .head_object(bucket, key, sel)
        .await
        .map_err(client_error)?;
    require_lock_bucket(gw, bucket).await?;
    Ok(r.manifest)
}

pub(super) async fn put_object_legal_hold(
    gw: &Gateway,
    req: S3Request<PutObjectLegalHoldInput>,
) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
    let input = req.input;
    let on = match input
        .legal_hold
        .and_then(|h| h.status)
        .as_ref()
        .map(|s| s.as_str())
    {
        Some("ON") => true,
        Some("OFF") => false,
        _ => {
            return Err(s3_error!(
                MalformedXML,
                "a LegalHold needs a Status of ON or OFF"
            ))
        }
    };
    require_lock_bucket(gw, &input.bucket).await?;
    let sel = version_sel(input.version_id.as_deref())?;
    gw.client
        .update_version(&input.bucket, &input.key, &sel, move |m| {
            m.lock.legal_hold = on;
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
}

pub(super) async fn get_object_legal_hold(
    gw: &Gateway,
    req: S3Request<GetObjectLegalHoldInput>,
) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
    let input = req.input;
    let sel = version_sel(input.version_id.as_deref())?;
    let m = version_in_lock_bucket(gw, &input.bucket, &input.key, &sel).await?;
    let status = if m.lock.legal_hold { "ON" } else { "OFF" };
    Ok(S3Response::new(GetObjectLegalHoldOutput {
        legal_hold: Some(ObjectLockLegalHold {
            status: Some(ObjectLockLegalHoldStatus::from(status.to_string())),
        }),
    }))
}
