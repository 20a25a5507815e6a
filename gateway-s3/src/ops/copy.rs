//! CopyObject: a new version that shares the source's chunks.

use cairn_client::{MetadataDirective as Directive, VersionSel};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::object::refuse_unsupported;
use super::Gateway;
use crate::convert::{
    content_headers, etag, tagging, timestamp, user_metadata, version_sel, Conditions,
};
use crate::error::client_error;

/// CopyObject from `x-amz-copy-source` (bucket/key, optionally `?versionId=`), with the
/// COPY or REPLACE metadata and tagging directives.
pub(super) async fn copy_object(
    gw: &Gateway,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let S3Request { input, headers, .. } = req;
    refuse_unsupported(
        input.server_side_encryption.as_ref(),
        input.sse_customer_algorithm.as_ref(),
    )?;
    if input.copy_source_sse_customer_algorithm.is_some() {
        return Err(s3_error!(
            NotImplemented,
            "server-side encryption is not supported"
        ));
    }
    let (src_bucket, src_key, src_version) = match &input.copy_source {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => (
            bucket.to_string(),
            key.to_string(),
            version_id.as_deref().map(str::to_string),
        ),
        _ => {
            return Err(s3_error!(
                NotImplemented,
                "copying from access points or outposts is not supported"
            ))
        }
    };
    let version = version_sel(src_version.as_deref())?;

    let replace = match input
        .metadata_directive
        .as_ref()
        .map(MetadataDirective::as_str)
    {
        None | Some(MetadataDirective::COPY) => false,
        Some(MetadataDirective::REPLACE) => true,
        Some(other) => {
            return Err(s3_error!(
                InvalidArgument,
                "unknown metadata directive `{other}`: use COPY or REPLACE"
            ))
        }
    };
    let tags = match input
        .tagging_directive
        .as_ref()
        .map(TaggingDirective::as_str)
    {
        None | Some(TaggingDirective::COPY) => None,
        Some(TaggingDirective::REPLACE) => Some(tagging(input.tagging.as_deref())?),
        Some(other) => {
            return Err(s3_error!(
                InvalidArgument,
                "unknown tagging directive `{other}`: use COPY or REPLACE"
            ))
        }
    };
    // S3 refuses a copy onto itself that changes nothing; naming a version is a restore.
    if src_bucket == input.bucket
        && src_key == input.key
        && version == VersionSel::Current
        && !replace
        && tags.is_none()
        && input.storage_class.is_none()
        && input.website_redirect_location.is_none()
    {
        return Err(s3_error!(
            InvalidRequest,
            "this copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes"
        ));
    }

    let conditions = Conditions {
        if_match: input.copy_source_if_match,
        if_none_match: input.copy_source_if_none_match,
        if_modified_since: input.copy_source_if_modified_since,
        if_unmodified_since: input.copy_source_if_unmodified_since,
    };
    if conditions.if_match.is_some()
        || conditions.if_none_match.is_some()
        || conditions.if_modified_since.is_some()
        || conditions.if_unmodified_since.is_some()
    {
        let source = gw
            .client
            .head_object(&src_bucket, &src_key, &version)
            .await
            .map_err(client_error)?;
        conditions.check(&source.manifest, true)?;
    }

    let directive = if replace {
        Directive::Replace {
            headers: content_headers(
                &headers,
                input.content_type,
                input.cache_control,
                input.content_disposition,
                input.content_encoding,
                input.content_language,
            ),
            user_metadata: user_metadata(input.metadata),
        }
    } else {
        Directive::Copy
    };
    let copied = gw
        .client
        .copy_object(
            &src_bucket,
            &src_key,
            &version,
            &input.bucket,
            &input.key,
            directive,
            tags,
        )
        .await
        .map_err(client_error)?;
    let m = &copied.result.manifest;
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(etag(&m.etag)),
            last_modified: Some(timestamp(m.mtime_ms)),
            ..Default::default()
        }),
        copy_source_version_id: copied.source_version_id,
        version_id: copied.result.version_id,
        ..Default::default()
    }))
}
