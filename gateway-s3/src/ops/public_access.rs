//! Put/Get/DeletePublicAccessBlock and Put/Get/DeleteBucketOwnershipControls: the bucket
//! settings that keep a bucket from being made public and decide whether ACLs apply. What they
//! refuse and ignore is in `crate::public` and `crate::access`.

use cairn_core::manifest::{ObjectOwnership, PublicAccessBlock};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::Gateway;
use crate::error::{client_error, custom_error};

/// PutPublicAccessBlock: the four settings, an absent one off.
pub(super) async fn put_public_access_block(
    gw: &Gateway,
    req: S3Request<PutPublicAccessBlockInput>,
) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
    let c = req.input.public_access_block_configuration;
    let block = PublicAccessBlock {
        block_public_acls: c.block_public_acls.unwrap_or(false),
        ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
        block_public_policy: c.block_public_policy.unwrap_or(false),
        restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
    };
    gw.client
        .update_bucket(&req.input.bucket, move |b| {
            b.public_access_block = Some(block);
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(PutPublicAccessBlockOutput {}))
}

/// GetPublicAccessBlock: the settings as put; 404 NoSuchPublicAccessBlockConfiguration when
/// none were.
pub(super) async fn get_public_access_block(
    gw: &Gateway,
    req: S3Request<GetPublicAccessBlockInput>,
) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
    let b = gw
        .client
        .head_bucket(&req.input.bucket)
        .await
        .map_err(client_error)?;
    let Some(block) = b.public_access_block else {
        return Err(custom_error(
            "NoSuchPublicAccessBlockConfiguration",
            http::StatusCode::NOT_FOUND,
            "The public access block configuration was not found",
        ));
    };
    Ok(S3Response::new(GetPublicAccessBlockOutput {
        public_access_block_configuration: Some(PublicAccessBlockConfiguration {
            block_public_acls: Some(block.block_public_acls),
            block_public_policy: Some(block.block_public_policy),
            ignore_public_acls: Some(block.ignore_public_acls),
            restrict_public_buckets: Some(block.restrict_public_buckets),
        }),
    }))
}

/// DeletePublicAccessBlock: 204 whether or not settings were put.
pub(super) async fn delete_public_access_block(
    gw: &Gateway,
    req: S3Request<DeletePublicAccessBlockInput>,
) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
    gw.client
        .update_bucket(&req.input.bucket, |b| {
            b.public_access_block = None;
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(DeletePublicAccessBlockOutput {}))
}

/// An `ObjectOwnership` value as sent (CreateBucket's `x-amz-object-ownership` or an
/// ownership rule).
pub(super) fn parse_ownership(value: &str) -> S3Result<ObjectOwnership> {
    ObjectOwnership::parse(value).ok_or_else(|| {
        s3_error!(
            InvalidArgument,
            "`{value}` is not an object ownership: use BucketOwnerEnforced, \
             BucketOwnerPreferred or ObjectWriter"
        )
    })
}

/// S3's refusal to disable ACLs on a bucket whose ACL grants to others.
pub(super) fn acl_with_enforced() -> s3s::S3Error {
    s3_error!(
        InvalidBucketAclWithObjectOwnership,
        "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting: reset \
         the bucket ACL to private first"
    )
}

/// PutBucketOwnershipControls: exactly one rule. BucketOwnerEnforced is refused while the
/// bucket's ACL grants to anyone besides its owner, as in S3.
pub(super) async fn put_bucket_ownership_controls(
    gw: &Gateway,
    req: S3Request<PutBucketOwnershipControlsInput>,
) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
    let rules = &req.input.ownership_controls.rules;
    let [rule] = rules.as_slice() else {
        return Err(s3_error!(
            MalformedXML,
            "ownership controls have exactly one rule, {} were sent",
            rules.len()
        ));
    };
    let ownership = ObjectOwnership::parse(rule.object_ownership.as_str()).ok_or_else(|| {
        s3_error!(
            MalformedXML,
            "`{}` is not an object ownership: use BucketOwnerEnforced, BucketOwnerPreferred \
             or ObjectWriter",
            rule.object_ownership.as_str()
        )
    })?;
    gw.client
        .update_bucket(&req.input.bucket, move |b| {
            if ownership == ObjectOwnership::BucketOwnerEnforced && !b.acl.is_empty() {
                return Err(cairn_client::ClientError::InvalidRequest(
                    ACL_WITH_ENFORCED.into(),
                ));
            }
            b.ownership = Some(ownership);
            Ok(())
        })
        .await
        .map_err(|e| match e {
            cairn_client::ClientError::InvalidRequest(m) if m == ACL_WITH_ENFORCED => {
                acl_with_enforced()
            }
            e => client_error(e),
        })?;
    Ok(S3Response::new(PutBucketOwnershipControlsOutput {}))
}

/// Marks the refusal inside [`put_bucket_ownership_controls`]'s update, which may only fail
/// with a client error.
const ACL_WITH_ENFORCED: &str = "the bucket ACL grants to others";

/// GetBucketOwnershipControls: the rule as put; 404 OwnershipControlsNotFoundError when none
/// was (the bucket then behaves as ObjectWriter).
pub(super) async fn get_bucket_ownership_controls(
    gw: &Gateway,
    req: S3Request<GetBucketOwnershipControlsInput>,
) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
    let b = gw
        .client
        .head_bucket(&req.input.bucket)
        .await
        .map_err(client_error)?;
    let Some(ownership) = b.ownership else {
        return Err(s3_error!(
            OwnershipControlsNotFoundError,
            "The bucket ownership controls were not found"
        ));
    };
    Ok(S3Response::new(GetBucketOwnershipControlsOutput {
        ownership_controls: Some(OwnershipControls {
            rules: vec![OwnershipControlsRule {
                object_ownership: s3s::dto::ObjectOwnership::from_static(ownership.as_str()),
            }],
        }),
    }))
}

/// DeleteBucketOwnershipControls: 204; the bucket behaves as ObjectWriter again.
pub(super) async fn delete_bucket_ownership_controls(
    gw: &Gateway,
    req: S3Request<DeleteBucketOwnershipControlsInput>,
) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
    gw.client
        .update_bucket(&req.input.bucket, |b| {
            b.ownership = None;
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(DeleteBucketOwnershipControlsOutput {}))
}
