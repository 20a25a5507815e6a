//! Bucket operations: list, create, head, delete, location and versioning.

use base64::Engine as _;
use cairn_client::Versioning;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::owners::owner_of;
use super::{page_size, requester, Gateway};
use crate::convert::timestamp;
use crate::error::client_error;

const TOKEN: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Largest page of ListBuckets.
const MAX_BUCKETS: usize = 10_000;

/// ListBuckets: the buckets the requesting key owns or has a grant on (`cairn key allow`), by
/// name, optionally filtered by prefix and paged.
pub(super) async fn list_buckets(
    gw: &Gateway,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let me = requester(&req)?;
    let input = req.input;
    let limit = page_size(input.max_buckets, MAX_BUCKETS)?;
    let after = match input.continuation_token.as_deref() {
        Some(token) => Some(
            TOKEN
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| s3_error!(InvalidArgument, "the continuation token is not valid"))?,
        ),
        None => None,
    };
    let granted = gw
        .client
        .get_key(&me)
        .await
        .map_err(client_error)?
        .map(|k| k.grants)
        .unwrap_or_default();
    let mut buckets = gw.client.list_buckets().await.map_err(client_error)?;
    buckets.retain(|b| b.owner == me || granted.contains_key(&b.name));
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    let prefix = input.prefix.clone().unwrap_or_default();
    let mut selected: Vec<_> = buckets
        .into_iter()
        .filter(|b| b.name.starts_with(&prefix))
        .filter(|b| after.as_ref().is_none_or(|a| b.name > *a))
        .collect();
    let truncated = selected.len() > limit;
    selected.truncate(limit);
    let next = truncated
        .then(|| selected.last().map(|b| TOKEN.encode(&b.name)))
        .flatten();
    let output = ListBucketsOutput {
        buckets: Some(
            selected
                .into_iter()
                .map(|b| s3s::dto::Bucket {
                    bucket_region: gw.config.region.clone(),
                    creation_date: Some(timestamp(b.created_ms)),
                    name: Some(b.name),
                })
                .collect(),
        ),
        continuation_token: next,
        owner: Some(owner_of(gw, &me).await?),
        prefix: input.prefix,
    };
    Ok(S3Response::new(output))
}

/// CreateBucket, owned by the requesting access key, with its ACL, its Object Ownership
/// (`x-amz-object-ownership`; none set when absent, which behaves as ObjectWriter) and, if
/// asked, object lock (which turns versioning on for good). A location constraint is accepted as is. Creating a
/// bucket the caller already owns succeeds in us-east-1 (the default region) and is
/// BucketAlreadyOwnedByYou elsewhere, as in S3.
pub(super) async fn create_bucket(
    gw: &Gateway,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let me = requester(&req)?;
    let region = gw
        .config
        .region
        .clone()
        .or_else(|| req.region.as_ref().map(|r| r.as_str().to_string()));
    let default_region = region.as_deref().is_none_or(|r| r == "us-east-1");
    let input = req.input;
    let name = input.bucket;
    let mut bucket = cairn_core::manifest::Bucket::new(&name, &me, cairn_client::now_ms());
    bucket.acl = super::acl::grants_from_headers(
        input.acl.as_ref().map(|a| a.as_str()),
        input.grant_full_control.as_deref(),
        input.grant_read.as_deref(),
        input.grant_write.as_deref(),
        input.grant_read_acp.as_deref(),
        input.grant_write_acp.as_deref(),
    )?;
    if let Some(o) = input.object_ownership.as_ref() {
        bucket.ownership = Some(super::public_access::parse_ownership(o.as_str())?);
    }
    // S3 refuses an ACL other than the owner's full control on a bucket created without ACLs.
    if bucket.acls_disabled() && !bucket.acl.is_empty() {
        return Err(super::public_access::acl_with_enforced());
    }
    super::acl::check_grantees(gw, &bucket.acl).await?;
    if input.object_lock_enabled_for_bucket == Some(true) {
        bucket.versioning = Versioning::Enabled;
        bucket.object_lock = Some(cairn_core::manifest::ObjectLockConfig {
            default_retention: None,
        });
    }
    match gw.client.create_bucket_with(bucket).await {
        Ok(_) => {}
        Err(cairn_client::ClientError::BucketAlreadyOwnedByYou(_)) if default_region => {}
        Err(e) => return Err(client_error(e)),
    }
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{name}")),
    }))
}

/// HeadBucket: 200 if the bucket exists (errors carry no body on HEAD).
pub(super) async fn head_bucket(
    gw: &Gateway,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    gw.client
        .head_bucket(&req.input.bucket)
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(HeadBucketOutput {
        bucket_region: gw.config.region.clone(),
        ..Default::default()
    }))
}

/// DeleteBucket: 204; BucketNotEmpty while it holds objects, versions or uploads.
pub(super) async fn delete_bucket(
    gw: &Gateway,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    gw.client
        .delete_bucket(&req.input.bucket)
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(DeleteBucketOutput {}))
}

/// GetBucketLocation: the gateway's region, empty for us-east-1 or when none is configured.
pub(super) async fn get_bucket_location(
    gw: &Gateway,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    gw.client
        .head_bucket(&req.input.bucket)
        .await
        .map_err(client_error)?;
    let location_constraint = gw
        .config
        .region
        .as_deref()
        .filter(|r| *r != "us-east-1")
        .map(|r| BucketLocationConstraint::from(r.to_string()));
    Ok(S3Response::new(GetBucketLocationOutput {
        location_constraint,
    }))
}

/// PutBucketVersioning: Enabled or Suspended; any other status is MalformedXML.
pub(super) async fn put_bucket_versioning(
    gw: &Gateway,
    req: S3Request<PutBucketVersioningInput>,
) -> S3Result<S3Response<PutBucketVersioningOutput>> {
    let config = req.input.versioning_configuration;
    if config
        .mfa_delete
        .as_ref()
        .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
    {
        return Err(s3_error!(NotImplemented, "MFA delete is not supported"));
    }
    let state = match config.status.as_ref().map(BucketVersioningStatus::as_str) {
        Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
        Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
        _ => {
            return Err(s3_error!(
                MalformedXML,
                "the versioning status must be Enabled or Suspended"
            ))
        }
    };
    gw.client
        .set_versioning(&req.input.bucket, state)
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(PutBucketVersioningOutput {}))
}

/// GetBucketVersioning: no Status until versioning was first enabled.
pub(super) async fn get_bucket_versioning(
    gw: &Gateway,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    let bucket = gw
        .client
        .head_bucket(&req.input.bucket)
        .await
        .map_err(client_error)?;
    let status = match bucket.versioning {
        Versioning::Unversioned => None,
        Versioning::Enabled => Some(BucketVersioningStatus::from_static(
            BucketVersioningStatus::ENABLED,
        )),
        Versioning::Suspended => Some(BucketVersioningStatus::from_static(
            BucketVersioningStatus::SUSPENDED,
        )),
    };
    Ok(S3Response::new(GetBucketVersioningOutput {
        mfa_delete: None,
        status,
    }))
}
