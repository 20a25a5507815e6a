//! CopyObject and UploadPartCopy: a new version or part that shares the source's chunks.

use cairn_client::{CopyOptions, MetadataDirective as Directive, PartCopyKeys, VersionSel};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::{requester, Gateway};
use crate::convert::{
    content_headers, etag, tagging, timestamp, user_metadata, version_sel, Conditions,
};
use crate::error::client_error;
use crate::sse::{customer_key, shown, write_request};

/// CopyObject from `x-amz-copy-source` (bucket/key, optionally `?versionId=`), with the
/// COPY or REPLACE metadata and tagging directives.
pub(super) async fn copy_object(
    gw: &Gateway,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let me = requester(&req)?;
    let controls = crate::public::controls(&req)?;
    let S3Request { input, headers, .. } = req;
    let encryption = write_request(
        input.server_side_encryption.as_ref(),
        input.ssekms_key_id.as_ref(),
        input.ssekms_encryption_context.as_ref(),
        input.bucket_key_enabled,
        customer_key(
            input.sse_customer_algorithm.as_ref(),
            input.sse_customer_key.as_ref(),
            input.sse_customer_key_md5.as_ref(),
        )?,
    )?;
    let source_key = customer_key(
        input.copy_source_sse_customer_algorithm.as_ref(),
        input.copy_source_sse_customer_key.as_ref(),
        input.copy_source_sse_customer_key_md5.as_ref(),
    )?;
    let (src_bucket, src_key, version) = copy_source(&input.copy_source)?;

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
        && encryption.is_none()
    {
        return Err(s3_error!(
            InvalidRequest,
            "this copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes"
        ));
    }

    check_source(
        gw,
        &src_bucket,
        &src_key,
        &version,
        Conditions {
            if_match: input.copy_source_if_match,
            if_none_match: input.copy_source_if_none_match,
            if_modified_since: input.copy_source_if_modified_since,
            if_unmodified_since: input.copy_source_if_unmodified_since,
        },
    )
    .await?;
    let acl = super::acl::object_grants(
        input.acl.as_ref(),
        input.grant_full_control.as_ref(),
        input.grant_read.as_ref(),
        input.grant_read_acp.as_ref(),
        input.grant_write_acp.as_ref(),
    )?;
    let canned = input.acl.as_ref().map(|c| c.as_str());
    controls.check_acl(canned, &acl)?;
    let owner = controls.object_owner(me, canned);
    let acl = if controls.acls_disabled() {
        Vec::new()
    } else {
        acl
    };
    let lock = super::lock::lock_from_request(
        input.object_lock_mode.as_ref(),
        input.object_lock_retain_until_date.as_ref(),
        input.object_lock_legal_hold_status.as_ref(),
    )?;

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
            CopyOptions {
                metadata: directive,
                tags,
                owner,
                acl,
                lock,
                encryption,
                source_key,
            },
        )
        .await
        .map_err(client_error)?;
    let m = &copied.result.manifest;
    let sse = shown(m.encryption.as_ref(), input.sse_customer_key_md5);
    Ok(S3Response::new(CopyObjectOutput {
        server_side_encryption: sse.sse,
        ssekms_key_id: sse.kms_key_id.clone(),
        ssekms_encryption_context: sse.context.clone(),
        bucket_key_enabled: sse.bucket_key,
        sse_customer_algorithm: sse.customer_algorithm,
        sse_customer_key_md5: sse.customer_key_md5,
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

/// UploadPartCopy: a part made of the source object or of `x-amz-copy-source-range`
/// (`bytes=first-last`) of it, by reference.
pub(super) async fn upload_part_copy(
    gw: &Gateway,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let input = req.input;
    let keys = PartCopyKeys {
        source: customer_key(
            input.copy_source_sse_customer_algorithm.as_ref(),
            input.copy_source_sse_customer_key.as_ref(),
            input.copy_source_sse_customer_key_md5.as_ref(),
        )?,
        part: customer_key(
            input.sse_customer_algorithm.as_ref(),
            input.sse_customer_key.as_ref(),
            input.sse_customer_key_md5.as_ref(),
        )?,
    };
    let part_encrypted = keys
        .part
        .as_ref()
        .map(|_| cairn_client::Encryption::Customer {
            salt: [0; 16],
            digest: [0; 32],
        });
    let (src_bucket, src_key, version) = copy_source(&input.copy_source)?;
    let range = input
        .copy_source_range
        .as_deref()
        .map(parse_copy_range)
        .transpose()?;
    let part_number = u32::try_from(input.part_number).map_err(|_| {
        s3_error!(
            InvalidArgument,
            "part number must be an integer between 1 and 10000"
        )
    })?;
    check_source(
        gw,
        &src_bucket,
        &src_key,
        &version,
        Conditions {
            if_match: input.copy_source_if_match,
            if_none_match: input.copy_source_if_none_match,
            if_modified_since: input.copy_source_if_modified_since,
            if_unmodified_since: input.copy_source_if_unmodified_since,
        },
    )
    .await?;
    let copied = gw
        .client
        .upload_part_copy(
            &input.bucket,
            &input.key,
            &input.upload_id,
            part_number,
            &src_bucket,
            &src_key,
            &version,
            range,
            keys,
        )
        .await
        .map_err(client_error)?;
    let sse = shown(part_encrypted.as_ref(), input.sse_customer_key_md5);
    Ok(S3Response::new(UploadPartCopyOutput {
        sse_customer_algorithm: sse.customer_algorithm,
        sse_customer_key_md5: sse.customer_key_md5,
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(etag(&hex::encode(copied.part.md5))),
            last_modified: Some(timestamp(copied.part.mtime_ms)),
            ..Default::default()
        }),
        copy_source_version_id: copied.source_version_id,
        ..Default::default()
    }))
}

/// Bucket, key and version of `x-amz-copy-source`.
fn copy_source(source: &CopySource) -> S3Result<(String, String, VersionSel)> {
    match source {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((
            bucket.to_string(),
            key.to_string(),
            version_sel(version_id.as_deref())?,
        )),
        _ => Err(s3_error!(
            NotImplemented,
            "copying from access points or outposts is not supported"
        )),
    }
}

/// Checks the `x-amz-copy-source-if-*` conditions against the source, when any is set.
async fn check_source(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    version: &VersionSel,
    conditions: Conditions,
) -> S3Result<()> {
    if conditions.if_match.is_none()
        && conditions.if_none_match.is_none()
        && conditions.if_modified_since.is_none()
        && conditions.if_unmodified_since.is_none()
    {
        return Ok(());
    }
    let source = gw
        .client
        .head_object(bucket, key, version)
        .await
        .map_err(client_error)?;
    conditions.check(&source.manifest, true)
}

/// `bytes=first-last` (both required, as S3 wants for a copy range).
fn parse_copy_range(s: &str) -> S3Result<(u64, u64)> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "x-amz-copy-source-range must be bytes=first-last, not `{s}`"
        )
    };
    let (first, last) = s
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let first = first.trim().parse::<u64>().map_err(|_| bad())?;
    let last = last.trim().parse::<u64>().map_err(|_| bad())?;
    if first > last {
        return Err(bad());
    }
    Ok((first, last))
}

#[cfg(test)]
mod tests {
    use super::parse_copy_range;

    #[test]
    fn copy_ranges_need_both_ends() {
        assert_eq!(parse_copy_range("bytes=0-9").unwrap(), (0, 9));
        assert_eq!(parse_copy_range("bytes=5-5").unwrap(), (5, 5));
        for bad in ["bytes=9-0", "bytes=-5", "bytes=5-", "0-9", "bytes=a-b"] {
            assert!(parse_copy_range(bad).is_err(), "{bad}");
        }
    }
}
