//! Bucket and object configuration that is not data: bucket and object tagging, CORS rules and
//! lifecycle rules. Each is stored on the bucket or version record and changed in place under
//! the metadata store's write lock (no new object version is made).

use std::collections::BTreeMap;

use cairn_core::manifest::{CorsRule, LifecycleFilter, LifecycleRule};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::Gateway;
use crate::convert::{timestamp, timestamp_ms, version_sel};
use crate::error::client_error;

/// Most tags an object may carry (S3's limit).
const MAX_OBJECT_TAGS: usize = 10;
/// Most tags a bucket may carry.
const MAX_BUCKET_TAGS: usize = 50;
/// Most CORS rules (S3's limit).
const MAX_CORS_RULES: usize = 100;
/// Most lifecycle rules (S3's limit).
const MAX_LIFECYCLE_RULES: usize = 1000;
/// A day in milliseconds.
const DAY_MS: u64 = 86_400_000;

/// A tag set as S3 validates it: keys 1-128 characters, values up to 256, no duplicates, no
/// `aws:` prefix, at most `max` tags.
pub(crate) fn tag_map(set: TagSet, max: usize) -> S3Result<BTreeMap<String, String>> {
    if set.len() > max {
        return Err(s3_error!(
            InvalidTag,
            "at most {max} tags are allowed, {} were sent",
            set.len()
        ));
    }
    let mut tags = BTreeMap::new();
    for t in set {
        let key = t.key.unwrap_or_default();
        let value = t.value.unwrap_or_default();
        if key.is_empty() || key.chars().count() > 128 {
            return Err(s3_error!(
                InvalidTag,
                "tag keys must be 1 to 128 characters"
            ));
        }
        if value.chars().count() > 256 {
            return Err(s3_error!(
                InvalidTag,
                "tag values must be at most 256 characters"
            ));
        }
        if key.starts_with("aws:") {
            return Err(s3_error!(
                InvalidTag,
                "tag keys starting with `aws:` are reserved"
            ));
        }
        if tags.insert(key.clone(), value).is_some() {
            return Err(s3_error!(
                InvalidTag,
                "cannot provide multiple tags with the same key `{key}`"
            ));
        }
    }
    Ok(tags)
}

/// A stored tag map as an S3 tag set.
pub(crate) fn tag_set(tags: &BTreeMap<String, String>) -> TagSet {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

// ---- bucket tagging ----

pub(super) async fn put_bucket_tagging(
    gw: &Gateway,
    req: S3Request<PutBucketTaggingInput>,
) -> S3Result<S3Response<PutBucketTaggingOutput>> {
    let tags = tag_map(req.input.tagging.tag_set, MAX_BUCKET_TAGS)?;
    gw.client
        .update_bucket(&req.input.bucket, move |b| {
            b.tags = tags;
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(PutBucketTaggingOutput {}))
}

pub(super) async fn get_bucket_tagging(
    gw: &Gateway,
    req: S3Request<GetBucketTaggingInput>,
) -> S3Result<S3Response<GetBucketTaggingOutput>> {
    let b = gw
        .client
        .head_bucket(&req.input.bucket)
        .await
        .map_err(client_error)?;
    if b.tags.is_empty() {
        return Err(s3_error!(NoSuchTagSet, "the bucket has no tag set"));
    }
    Ok(S3Response::new(GetBucketTaggingOutput {
        tag_set: tag_set(&b.tags),
    }))
}

pub(super) async fn delete_bucket_tagging(
    gw: &Gateway,
    req: S3Request<DeleteBucketTaggingInput>,
) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
    gw.client
        .update_bucket(&req.input.bucket, |b| {
            b.tags.clear();
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(DeleteBucketTaggingOutput {}))
}

// ---- default encryption ----

/// PutBucketEncryption: one rule, `AES256` or `aws:kms` (with a key of the site's key manager,
/// or its default key), applied to new objects that ask for no encryption.
pub(super) async fn put_bucket_encryption(
    gw: &Gateway,
    req: S3Request<PutBucketEncryptionInput>,
) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
    let rules = req.input.server_side_encryption_configuration.rules;
    let [rule] = rules.as_slice() else {
        return Err(s3_error!(
            MalformedXML,
            "a server-side encryption configuration has exactly one rule"
        ));
    };
    let Some(default) = &rule.apply_server_side_encryption_by_default else {
        return Err(s3_error!(
            MalformedXML,
            "the rule has no ApplyServerSideEncryptionByDefault"
        ));
    };
    let encryption = match default.sse_algorithm.as_str() {
        ServerSideEncryption::AES256 if default.kms_master_key_id.is_none() => {
            cairn_client::DefaultEncryption::Site {
                bucket_key: rule.bucket_key_enabled.unwrap_or(false),
            }
        }
        ServerSideEncryption::AES256 => {
            return Err(s3_error!(
                InvalidArgument,
                "a KMS key id is only valid with the aws:kms algorithm"
            ))
        }
        ServerSideEncryption::AWS_KMS => cairn_client::DefaultEncryption::Kms {
            key_id: default.kms_master_key_id.clone(),
            bucket_key: rule.bucket_key_enabled.unwrap_or(false),
        },
        ServerSideEncryption::AWS_KMS_DSSE => {
            return Err(s3_error!(
                NotImplemented,
                "dual-layer SSE-KMS (aws:kms:dsse) is not available: use aws:kms or AES256"
            ))
        }
        other => {
            return Err(s3_error!(
                InvalidArgument,
                "`{other}` is not a server-side encryption algorithm: use AES256"
            ))
        }
    };
    gw.client
        .update_bucket(&req.input.bucket, move |b| {
            b.encryption = Some(encryption);
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(PutBucketEncryptionOutput {}))
}

pub(super) async fn get_bucket_encryption(
    gw: &Gateway,
    req: S3Request<GetBucketEncryptionInput>,
) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
    let b = gw
        .client
        .head_bucket(&req.input.bucket)
        .await
        .map_err(client_error)?;
    let (algorithm, kms_master_key_id, bucket_key) = match b.encryption {
        Some(cairn_client::DefaultEncryption::Site { bucket_key }) => {
            (ServerSideEncryption::AES256, None, bucket_key)
        }
        Some(cairn_client::DefaultEncryption::Kms { key_id, bucket_key }) => {
            (ServerSideEncryption::AWS_KMS, key_id, bucket_key)
        }
        None => {
            return Err(crate::error::custom_error(
                "ServerSideEncryptionConfigurationNotFoundError",
                http::StatusCode::NOT_FOUND,
                "The server side encryption configuration was not found",
            ))
        }
    };
    Ok(S3Response::new(GetBucketEncryptionOutput {
        server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
            rules: vec![ServerSideEncryptionRule {
                apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                    kms_master_key_id,
                    sse_algorithm: ServerSideEncryption::from_static(algorithm),
                }),
                bucket_key_enabled: Some(bucket_key),
            }],
        }),
    }))
}

pub(super) async fn delete_bucket_encryption(
    gw: &Gateway,
    req: S3Request<DeleteBucketEncryptionInput>,
) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
    gw.client
        .update_bucket(&req.input.bucket, |b| {
            b.encryption = None;
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(DeleteBucketEncryptionOutput {}))
}

// ---- object tagging ----

pub(super) async fn put_object_tagging(
    gw: &Gateway,
    req: S3Request<PutObjectTaggingInput>,
) -> S3Result<S3Response<PutObjectTaggingOutput>> {
    let input = req.input;
    let tags = tag_map(input.tagging.tag_set, MAX_OBJECT_TAGS)?;
    let sel = version_sel(input.version_id.as_deref())?;
    let (b, m) = gw
        .client
        .update_version(&input.bucket, &input.key, &sel, move |m| {
            m.tags = tags;
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(PutObjectTaggingOutput {
        version_id: cairn_client::shown_version(&b, &m),
    }))
}

pub(super) async fn get_object_tagging(
    gw: &Gateway,
    req: S3Request<GetObjectTaggingInput>,
) -> S3Result<S3Response<GetObjectTaggingOutput>> {
    let input = req.input;
    let sel = version_sel(input.version_id.as_deref())?;
    let r = gw
        .client
        .head_object(&input.bucket, &input.key, &sel)
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(GetObjectTaggingOutput {
        tag_set: tag_set(&r.manifest.tags),
        version_id: r.version_id,
    }))
}

pub(super) async fn delete_object_tagging(
    gw: &Gateway,
    req: S3Request<DeleteObjectTaggingInput>,
) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
    let input = req.input;
    let sel = version_sel(input.version_id.as_deref())?;
    let (b, m) = gw
        .client
        .update_version(&input.bucket, &input.key, &sel, |m| {
            m.tags.clear();
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(DeleteObjectTaggingOutput {
        version_id: cairn_client::shown_version(&b, &m),
    }))
}

// ---- CORS ----

const CORS_METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

/// Checks and converts S3 CORS rules.
fn cors_rules(rules: CORSRules) -> S3Result<Vec<CorsRule>> {
    if rules.is_empty() || rules.len() > MAX_CORS_RULES {
        return Err(s3_error!(
            MalformedXML,
            "a CORS configuration needs 1 to {MAX_CORS_RULES} rules"
        ));
    }
    rules
        .into_iter()
        .map(|r| {
            if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
                return Err(s3_error!(
                    MalformedXML,
                    "every CORS rule needs at least one AllowedOrigin and one AllowedMethod"
                ));
            }
            for m in &r.allowed_methods {
                if !CORS_METHODS.contains(&m.as_str()) {
                    return Err(s3_error!(
                        InvalidRequest,
                        "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
                    ));
                }
            }
            for o in &r.allowed_origins {
                if o.matches('*').count() > 1 {
                    return Err(s3_error!(
                        InvalidRequest,
                        "AllowedOrigin `{o}` can not have more than one wildcard"
                    ));
                }
            }
            Ok(CorsRule {
                id: r.id,
                allowed_origins: r.allowed_origins,
                allowed_methods: r.allowed_methods,
                allowed_headers: r.allowed_headers.unwrap_or_default(),
                expose_headers: r.expose_headers.unwrap_or_default(),
                max_age_seconds: r.max_age_seconds,
            })
        })
        .collect()
}

pub(super) async fn put_bucket_cors(
    gw: &Gateway,
    req: S3Request<PutBucketCorsInput>,
) -> S3Result<S3Response<PutBucketCorsOutput>> {
    let rules = cors_rules(req.input.cors_configuration.cors_rules)?;
    gw.client
        .update_bucket(&req.input.bucket, move |b| {
            b.cors = Some(rules);
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(PutBucketCorsOutput {}))
}

pub(super) async fn get_bucket_cors(
    gw: &Gateway,
    req: S3Request<GetBucketCorsInput>,
) -> S3Result<S3Response<GetBucketCorsOutput>> {
    let b = gw
        .client
        .head_bucket(&req.input.bucket)
        .await
        .map_err(client_error)?;
    let Some(rules) = b.cors else {
        return Err(s3_error!(
            NoSuchCORSConfiguration,
            "the bucket has no CORS configuration"
        ));
    };
    let cors_rules = rules
        .into_iter()
        .map(|r| CORSRule {
            allowed_headers: (!r.allowed_headers.is_empty()).then_some(r.allowed_headers),
            allowed_methods: r.allowed_methods,
            allowed_origins: r.allowed_origins,
            expose_headers: (!r.expose_headers.is_empty()).then_some(r.expose_headers),
            id: r.id,
            max_age_seconds: r.max_age_seconds,
        })
        .collect();
    Ok(S3Response::new(GetBucketCorsOutput {
        cors_rules: Some(cors_rules),
    }))
}

pub(super) async fn delete_bucket_cors(
    gw: &Gateway,
    req: S3Request<DeleteBucketCorsInput>,
) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
    gw.client
        .update_bucket(&req.input.bucket, |b| {
            b.cors = None;
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(DeleteBucketCorsOutput {}))
}

// ---- lifecycle ----

/// A lifecycle Date in unix ms; S3 wants it at midnight UTC (InvalidArgument otherwise).
fn midnight_date(date: Option<&Timestamp>, what: &str) -> S3Result<Option<u64>> {
    let date = date.map(timestamp_ms).transpose()?;
    if date.is_some_and(|d| d % DAY_MS != 0) {
        return Err(s3_error!(
            InvalidArgument,
            "{what} Date must be at midnight UTC"
        ));
    }
    Ok(date)
}

/// Checks and converts one S3 lifecycle rule.
fn lifecycle_rule(r: LifecycleRule_) -> S3Result<LifecycleRule> {
    // A malformed transition is the client's error (400) before it is an unsupported one.
    for t in r.transitions.iter().flatten() {
        midnight_date(t.date.as_ref(), "a transition")?;
    }
    if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_transitions
            .as_ref()
            .is_some_and(|t| !t.is_empty())
    {
        return Err(s3_error!(
            NotImplemented,
            "lifecycle transitions are not supported: Cairn has one storage class"
        ));
    }
    let enabled = match r.status.as_str() {
        ExpirationStatus::ENABLED => true,
        ExpirationStatus::DISABLED => false,
        _ => {
            return Err(s3_error!(
                MalformedXML,
                "a lifecycle rule's Status must be Enabled or Disabled"
            ))
        }
    };
    if r.id.as_ref().is_some_and(|id| id.len() > 255) {
        return Err(s3_error!(
            InvalidArgument,
            "a lifecycle rule's ID must be at most 255 characters"
        ));
    }
    let mut filter = LifecycleFilter::default();
    let legacy_prefix = r.prefix.is_some();
    match (r.prefix, r.filter) {
        (Some(_), Some(_)) => {
            return Err(s3_error!(
                MalformedXML,
                "a lifecycle rule has either Prefix or Filter, not both"
            ))
        }
        (Some(p), None) => filter.prefix = p,
        (None, Some(f)) => {
            let mut tags = Vec::new();
            let parts = usize::from(f.prefix.is_some())
                + usize::from(f.tag.is_some())
                + usize::from(f.object_size_greater_than.is_some())
                + usize::from(f.object_size_less_than.is_some())
                + usize::from(f.and.is_some());
            if parts > 1 {
                return Err(s3_error!(
                    MalformedXML,
                    "a lifecycle Filter holds one condition; combine several with And"
                ));
            }
            filter.prefix = f.prefix.unwrap_or_default();
            filter.size_greater_than = size_bound(f.object_size_greater_than)?;
            filter.size_less_than = size_bound(f.object_size_less_than)?;
            tags.extend(f.tag);
            if let Some(and) = f.and {
                filter.prefix = and.prefix.unwrap_or_default();
                filter.size_greater_than = size_bound(and.object_size_greater_than)?;
                filter.size_less_than = size_bound(and.object_size_less_than)?;
                tags.extend(and.tags.unwrap_or_default());
            }
            filter.tags = tag_map(tags, MAX_OBJECT_TAGS)?;
        }
        (None, None) => {}
    }
    let mut rule = LifecycleRule {
        id: r.id,
        enabled,
        filter,
        legacy_prefix,
        ..Default::default()
    };
    if let Some(e) = r.expiration {
        let days = positive_days(e.days, "Expiration Days")?;
        let date = midnight_date(e.date.as_ref(), "an expiration")?;
        let marker = e.expired_object_delete_marker.unwrap_or(false);
        if usize::from(days.is_some()) + usize::from(date.is_some()) + usize::from(marker) != 1 {
            return Err(s3_error!(
                MalformedXML,
                "an Expiration holds exactly one of Days, Date or ExpiredObjectDeleteMarker"
            ));
        }
        rule.expiration_days = days;
        rule.expiration_date_ms = date;
        rule.expired_object_delete_marker = marker;
    }
    if let Some(n) = r.noncurrent_version_expiration {
        rule.noncurrent_days = positive_days(n.noncurrent_days, "NoncurrentDays")?;
        rule.newer_noncurrent_versions = n
            .newer_noncurrent_versions
            .map(|v| {
                u32::try_from(v)
                    .ok()
                    .filter(|v| (1..=100).contains(v))
                    .ok_or_else(|| {
                        s3_error!(
                            InvalidArgument,
                            "NewerNoncurrentVersions must be between 1 and 100"
                        )
                    })
            })
            .transpose()?;
        if rule.noncurrent_days.is_none() {
            return Err(s3_error!(
                MalformedXML,
                "NoncurrentVersionExpiration needs NoncurrentDays"
            ));
        }
    }
    if let Some(a) = r.abort_incomplete_multipart_upload {
        rule.abort_incomplete_multipart_days =
            positive_days(a.days_after_initiation, "DaysAfterInitiation")?;
    }
    if rule.expiration_days.is_none()
        && rule.expiration_date_ms.is_none()
        && !rule.expired_object_delete_marker
        && rule.noncurrent_days.is_none()
        && rule.abort_incomplete_multipart_days.is_none()
    {
        return Err(s3_error!(
            MalformedXML,
            "a lifecycle rule needs at least one action"
        ));
    }
    Ok(rule)
}

type LifecycleRule_ = s3s::dto::LifecycleRule;

/// A day count that must be positive when present.
fn positive_days(days: Option<i32>, what: &str) -> S3Result<Option<u32>> {
    days.map(|d| {
        u32::try_from(d)
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(|| s3_error!(InvalidArgument, "{what} must be a positive integer"))
    })
    .transpose()
}

/// An object size bound that must not be negative.
fn size_bound(v: Option<i64>) -> S3Result<Option<u64>> {
    v.map(|v| {
        u64::try_from(v)
            .map_err(|_| s3_error!(InvalidArgument, "object size bounds must not be negative"))
    })
    .transpose()
}

pub(super) async fn put_bucket_lifecycle_configuration(
    gw: &Gateway,
    req: S3Request<PutBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
    let Some(config) = req.input.lifecycle_configuration else {
        return Err(s3_error!(
            MalformedXML,
            "the request needs a LifecycleConfiguration body"
        ));
    };
    if config.rules.is_empty() || config.rules.len() > MAX_LIFECYCLE_RULES {
        return Err(s3_error!(
            MalformedXML,
            "a lifecycle configuration needs 1 to {MAX_LIFECYCLE_RULES} rules"
        ));
    }
    let rules = config
        .rules
        .into_iter()
        .map(lifecycle_rule)
        .collect::<S3Result<Vec<_>>>()?;
    let mut ids = std::collections::HashSet::new();
    if rules
        .iter()
        .filter_map(|r| r.id.as_deref())
        .any(|id| !ids.insert(id))
    {
        return Err(s3_error!(
            InvalidArgument,
            "lifecycle rule IDs must be unique"
        ));
    }
    gw.client
        .update_bucket(&req.input.bucket, move |b| {
            b.lifecycle = Some(rules);
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(
        PutBucketLifecycleConfigurationOutput::default(),
    ))
}

pub(super) async fn get_bucket_lifecycle_configuration(
    gw: &Gateway,
    req: S3Request<GetBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
    let b = gw
        .client
        .head_bucket(&req.input.bucket)
        .await
        .map_err(client_error)?;
    let Some(rules) = b.lifecycle else {
        return Err(s3_error!(
            NoSuchLifecycleConfiguration,
            "the bucket has no lifecycle configuration"
        ));
    };
    let rules = rules.into_iter().map(s3_lifecycle_rule).collect();
    Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
        rules: Some(rules),
        ..Default::default()
    }))
}

/// A stored lifecycle rule in S3's form.
fn s3_lifecycle_rule(r: LifecycleRule) -> LifecycleRule_ {
    let f = r.filter;
    // A rule given with the older rule-level Prefix is shown back that way, as S3 does.
    let (filter, prefix) = if r.legacy_prefix {
        (None, Some(f.prefix.clone()))
    } else {
        (Some(s3_lifecycle_filter(f)), None)
    };
    let days = |d: Option<u32>| d.map(|d| i32::try_from(d).unwrap_or(i32::MAX));
    let expiration = (r.expiration_days.is_some()
        || r.expiration_date_ms.is_some()
        || r.expired_object_delete_marker)
        .then(|| LifecycleExpiration {
            days: days(r.expiration_days),
            date: r.expiration_date_ms.map(timestamp),
            expired_object_delete_marker: r.expired_object_delete_marker.then_some(true),
        });
    LifecycleRule_ {
        abort_incomplete_multipart_upload: r.abort_incomplete_multipart_days.map(|d| {
            AbortIncompleteMultipartUpload {
                days_after_initiation: days(Some(d)),
            }
        }),
        expiration,
        filter,
        id: r.id,
        noncurrent_version_expiration: r.noncurrent_days.map(|d| NoncurrentVersionExpiration {
            noncurrent_days: days(Some(d)),
            newer_noncurrent_versions: r
                .newer_noncurrent_versions
                .map(|v| i32::try_from(v).unwrap_or(i32::MAX)),
        }),
        noncurrent_version_transitions: None,
        prefix,
        status: ExpirationStatus::from_static(if r.enabled {
            ExpirationStatus::ENABLED
        } else {
            ExpirationStatus::DISABLED
        }),
        transitions: None,
    }
}

/// A stored rule's filter in S3's form.
fn s3_lifecycle_filter(f: LifecycleFilter) -> LifecycleRuleFilter {
    let conditions = usize::from(!f.prefix.is_empty())
        + f.tags.len()
        + usize::from(f.size_greater_than.is_some())
        + usize::from(f.size_less_than.is_some());
    let size = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    if conditions > 1 {
        LifecycleRuleFilter {
            and: Some(LifecycleRuleAndOperator {
                object_size_greater_than: size(f.size_greater_than),
                object_size_less_than: size(f.size_less_than),
                prefix: (!f.prefix.is_empty()).then_some(f.prefix),
                tags: (!f.tags.is_empty()).then(|| tag_set(&f.tags)),
            }),
            ..Default::default()
        }
    } else {
        LifecycleRuleFilter {
            prefix: Some(f.prefix),
            tag: tag_set(&f.tags).into_iter().next(),
            object_size_greater_than: size(f.size_greater_than),
            object_size_less_than: size(f.size_less_than),
            and: None,
        }
    }
}

pub(super) async fn delete_bucket_lifecycle(
    gw: &Gateway,
    req: S3Request<DeleteBucketLifecycleInput>,
) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
    gw.client
        .update_bucket(&req.input.bucket, |b| {
            b.lifecycle = None;
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(DeleteBucketLifecycleOutput {}))
}
