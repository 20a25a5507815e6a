//! GetObjectAttributes: a version's ETag, checksum, parts, storage class and size in one call.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::{page_size, Gateway};
use crate::convert::{timestamp, version_sel, Checksums};
use crate::error::client_error;

/// Most parts listed in one response (S3's limit).
const MAX_PARTS: usize = 1000;

/// GetObjectAttributes: the attributes the request names. A delete marker that is the current
/// version is 404 NoSuchKey, one named by version id is 405 MethodNotAllowed, both with
/// `x-amz-delete-marker` (as S3). ObjectParts lists part numbers and sizes of a multipart
/// object (per-part checksums are not kept once an upload completes, so parts carry none).
pub(super) async fn get_object_attributes(
    gw: &Gateway,
    req: S3Request<GetObjectAttributesInput>,
) -> S3Result<S3Response<GetObjectAttributesOutput>> {
    let input = req.input;
    if input.sse_customer_algorithm.is_some() {
        return Err(s3_error!(
            NotImplemented,
            "server-side encryption is not supported"
        ));
    }
    // The SDKs send the attributes as one comma-separated header value.
    let named: Vec<ObjectAttributes> = input
        .object_attributes
        .iter()
        .flat_map(|a| a.as_str().split(','))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| ObjectAttributes::from(a.to_string()))
        .collect();
    let wants = |name: &str| named.iter().any(|a| a.as_str().eq_ignore_ascii_case(name));
    if named.is_empty() {
        return Err(s3_error!(
            InvalidArgument,
            "name at least one attribute in x-amz-object-attributes: ETag, Checksum, \
             ObjectParts, StorageClass or ObjectSize"
        ));
    }
    if let Some(unknown) = named.iter().find(|a| {
        ![
            ObjectAttributes::ETAG,
            ObjectAttributes::CHECKSUM,
            ObjectAttributes::OBJECT_PARTS,
            ObjectAttributes::STORAGE_CLASS,
            ObjectAttributes::OBJECT_SIZE,
        ]
        .iter()
        .any(|k| a.as_str().eq_ignore_ascii_case(k))
    }) {
        return Err(s3_error!(
            InvalidArgument,
            "`{}` is not an object attribute: use ETag, Checksum, ObjectParts, StorageClass \
             or ObjectSize",
            unknown.as_str()
        ));
    }
    let after = u32::try_from(input.part_number_marker.unwrap_or(0))
        .map_err(|_| s3_error!(InvalidArgument, "part-number-marker must not be negative"))?;
    let max = page_size(input.max_parts, MAX_PARTS)?;
    let version = version_sel(input.version_id.as_deref())?;
    let head = gw
        .client
        .head_object(&input.bucket, &input.key, &version)
        .await
        .map_err(client_error)?;
    let m = &head.manifest;

    let checksum = wants(ObjectAttributes::CHECKSUM)
        .then(|| Checksums::of(&m.checksums, m.checksum_type, true))
        .filter(|s| s.checksum_type.is_some())
        .map(|s| Checksum {
            checksum_crc32: s.crc32,
            checksum_crc32c: s.crc32c,
            checksum_crc64nvme: s.crc64nvme,
            checksum_sha1: s.sha1,
            checksum_sha256: s.sha256,
            checksum_type: s.checksum_type,
        });
    let object_parts = match (wants(ObjectAttributes::OBJECT_PARTS), m.parts) {
        (true, Some(total)) => {
            let lens = gw
                .client
                .part_lengths(m)
                .await
                .map_err(client_error)?
                .unwrap_or_default();
            let page: Vec<ObjectPart> = lens
                .iter()
                .enumerate()
                .map(|(i, len)| (i as u32 + 1, *len))
                .filter(|(n, _)| *n > after)
                .take(max)
                .map(|(n, len)| ObjectPart {
                    part_number: i32::try_from(n).ok(),
                    size: i64::try_from(len).ok(),
                    ..Default::default()
                })
                .collect();
            let last = page
                .last()
                .and_then(|p| p.part_number)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(after);
            Some(GetObjectAttributesParts {
                is_truncated: Some(last < total && !page.is_empty() && page.len() == max),
                max_parts: Some(i32::try_from(max).unwrap_or(i32::MAX)),
                next_part_number_marker: Some(i32::try_from(last).unwrap_or(i32::MAX)),
                part_number_marker: Some(i32::try_from(after).unwrap_or(i32::MAX)),
                parts: Some(page),
                total_parts_count: i32::try_from(total).ok(),
            })
        }
        _ => None,
    };
    Ok(S3Response::new(GetObjectAttributesOutput {
        checksum,
        e_tag: wants(ObjectAttributes::ETAG).then(|| ETag::Strong(m.etag.clone())),
        last_modified: Some(timestamp(m.mtime_ms)),
        object_parts,
        object_size: wants(ObjectAttributes::OBJECT_SIZE)
            .then(|| i64::try_from(m.size).unwrap_or(i64::MAX)),
        storage_class: wants(ObjectAttributes::STORAGE_CLASS)
            .then(|| StorageClass::from_static(StorageClass::STANDARD)),
        version_id: head.version_id,
        ..Default::default()
    }))
}
