//! Multipart uploads: create, upload part, complete, abort, list parts, list uploads.

use cairn_client::{ChecksumAlgorithm, CompleteOptions, CompletedPart, PartOptions, UploadsQuery};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::list::{non_empty, Names, MAX_KEYS};
use super::object::write_condition;
use super::owners::{owner_of, Owners};
use super::{page_size, requester, Gateway};
use crate::convert::{
    body_length, checksum_request, etag, request_body, request_md5, timestamp, upload_error,
    Checksums,
};
use crate::error::client_error;

/// Highest part number S3 allows.
const MAX_PART_NUMBER: i32 = 10_000;

/// CreateMultipartUpload: headers, metadata and tags are kept for the final object.
pub(super) async fn create_multipart_upload(
    gw: &Gateway,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let me = requester(&req)?;
    let controls = crate::public::controls(&req)?;
    let S3Request { input, headers, .. } = req;
    let algorithm = match input.checksum_algorithm.as_ref() {
        Some(a) => Some(ChecksumAlgorithm::parse(a.as_str()).ok_or_else(|| {
            s3_error!(
                InvalidRequest,
                "checksum algorithm `{}` is not supported: use CRC32, CRC32C, CRC64NVME, SHA1 \
                 or SHA256",
                a.as_str()
            )
        })?),
        None => None,
    };
    let checksum_type = match input.checksum_type.as_ref().map(|t| t.as_str()) {
        None => None,
        Some(t) if t.eq_ignore_ascii_case(ChecksumType::FULL_OBJECT) => {
            Some(cairn_client::ChecksumType::FullObject)
        }
        Some(t) if t.eq_ignore_ascii_case(ChecksumType::COMPOSITE) => {
            Some(cairn_client::ChecksumType::Composite)
        }
        Some(t) => {
            return Err(s3_error!(
                InvalidRequest,
                "checksum type `{t}` is not valid: use COMPOSITE or FULL_OBJECT"
            ))
        }
    };
    let opts = new_object_options!(headers, input, me, controls);
    // The upload's owner becomes the object's.
    let owner = opts.owner.clone();
    let upload = gw
        .client
        .create_multipart(
            &input.bucket,
            &input.key,
            &owner,
            opts,
            (algorithm, checksum_type),
        )
        .await
        .map_err(client_error)?;
    let sse = crate::sse::shown(upload.encryption.as_ref(), input.sse_customer_key_md5);
    Ok(S3Response::new(CreateMultipartUploadOutput {
        server_side_encryption: sse.sse,
        ssekms_key_id: sse.kms_key_id.clone(),
        ssekms_encryption_context: sse.context.clone(),
        bucket_key_enabled: sse.bucket_key,
        sse_customer_algorithm: sse.customer_algorithm,
        sse_customer_key_md5: sse.customer_key_md5,
        bucket: Some(input.bucket),
        checksum_algorithm: algorithm
            .map(|a| s3s::dto::ChecksumAlgorithm::from(a.s3_name().to_string())),
        checksum_type: upload.checksum_type.map(checksum_type_dto),
        key: Some(input.key),
        upload_id: Some(upload.upload_id),
        ..Default::default()
    }))
}

/// The S3 form of a checksum type.
pub(super) fn checksum_type_dto(t: cairn_client::ChecksumType) -> ChecksumType {
    ChecksumType::from_static(match t {
        cairn_client::ChecksumType::FullObject => ChecksumType::FULL_OBJECT,
        cairn_client::ChecksumType::Composite => ChecksumType::COMPOSITE,
    })
}

/// UploadPart: streams one part (1..=10000); its ETag is the quoted MD5 of its bytes. A
/// checksum (header, trailer or algorithm only) is computed, verified and kept with the part.
pub(super) async fn upload_part(
    gw: &Gateway,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let checksum = checksum_request(&req.headers, req.trailing_headers.as_ref())?;
    let input = req.input;
    let customer_key = crate::sse::customer_key(
        input.sse_customer_algorithm.as_ref(),
        input.sse_customer_key.as_ref(),
        input.sse_customer_key_md5.as_ref(),
    )?;
    let number = u32::try_from(input.part_number)
        .ok()
        .filter(|n| (1..=MAX_PART_NUMBER.unsigned_abs()).contains(n))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"
            )
        })?;
    let md5 = request_md5(&req.headers)?;
    let opts = PartOptions {
        content_md5: md5,
        content_length: body_length(input.content_length, input.body.as_ref()),
        checksum: checksum.clone(),
        customer_key: customer_key.clone(),
    };
    let (body, body_errors) = request_body(input.body);
    let (part, encryption) = gw
        .client
        .upload_part_sealed(
            &input.bucket,
            &input.key,
            &input.upload_id,
            number,
            body,
            opts,
        )
        .await
        .map_err(|e| upload_error(e, &body_errors, checksum.as_ref(), md5.is_some()))?;
    let sums = Checksums::of(&part.checksums, None, true);
    // The part is sealed as its upload is, and the response says how.
    let sse = crate::sse::shown(encryption.as_ref(), input.sse_customer_key_md5);
    Ok(S3Response::new(UploadPartOutput {
        server_side_encryption: sse.sse,
        ssekms_key_id: sse.kms_key_id,
        bucket_key_enabled: sse.bucket_key,
        sse_customer_algorithm: sse.customer_algorithm,
        sse_customer_key_md5: sse.customer_key_md5,
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        e_tag: Some(etag(&hex::encode(part.md5))),
        ..Default::default()
    }))
}

/// The one checksum value among S3's five fields, if any.
fn one_checksum(values: [Option<&String>; 5]) -> Option<String> {
    values.into_iter().flatten().next().cloned()
}

/// CompleteMultipartUpload: the client checks the part list (ETags and listed checksums) and
/// builds the object, with its composite or full-object checksum when the upload has an
/// algorithm; If-None-Match / If-Match make the completion conditional.
pub(super) async fn complete_multipart_upload(
    gw: &Gateway,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let input = req.input;
    let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let whole = one_checksum([
        input.checksum_crc32.as_ref(),
        input.checksum_crc32c.as_ref(),
        input.checksum_crc64nvme.as_ref(),
        input.checksum_sha1.as_ref(),
        input.checksum_sha256.as_ref(),
    ]);
    let listed = input
        .multipart_upload
        .and_then(|u| u.parts)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            s3_error!(
                MalformedXML,
                "the XML you provided was not well-formed or did not validate against our published schema"
            )
        })?;
    let mut parts = Vec::with_capacity(listed.len());
    for p in listed {
        let number = p
            .part_number
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| s3_error!(MalformedXML, "every part needs a PartNumber"))?;
        let tag = p
            .e_tag
            .map(|e| e.value().to_string())
            .ok_or_else(|| s3_error!(MalformedXML, "every part needs an ETag"))?;
        let checksum = one_checksum([
            p.checksum_crc32.as_ref(),
            p.checksum_crc32c.as_ref(),
            p.checksum_crc64nvme.as_ref(),
            p.checksum_sha1.as_ref(),
            p.checksum_sha256.as_ref(),
        ]);
        parts.push(CompletedPart {
            number,
            etag: tag,
            checksum,
        });
    }
    let opts = CompleteOptions {
        condition,
        checksum: whole,
    };
    let done = gw
        .client
        .complete_multipart(&input.bucket, &input.key, &input.upload_id, parts, opts)
        .await
        .map_err(|e| match e {
            cairn_client::ClientError::BadDigest => s3_error!(
                BadDigest,
                "the checksum you specified for the whole object did not match the one computed \
                 from its parts"
            ),
            e => client_error(e),
        })?;
    let m = &done.manifest;
    let sums = Checksums::of(&m.checksums, m.checksum_type, true);
    let shown_sse = crate::sse::shown(m.encryption.as_ref(), None);
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        server_side_encryption: shown_sse.sse,
        ssekms_key_id: shown_sse.kms_key_id,
        bucket_key_enabled: shown_sse.bucket_key,
        bucket: Some(input.bucket.clone()),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_type: sums.checksum_type,
        e_tag: Some(etag(&done.manifest.etag)),
        key: Some(input.key.clone()),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        version_id: done.version_id,
        ..Default::default()
    }))
}

/// AbortMultipartUpload: 204; NoSuchUpload if it is not in progress.
pub(super) async fn abort_multipart_upload(
    gw: &Gateway,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    gw.client
        .abort_multipart(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

/// ListParts: parts after `part-number-marker`, at most `max-parts` (default 1000).
pub(super) async fn list_parts(
    gw: &Gateway,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    let after = u32::try_from(input.part_number_marker.unwrap_or(0))
        .map_err(|_| s3_error!(InvalidArgument, "part-number-marker must not be negative"))?;
    let max = page_size(input.max_parts, MAX_KEYS)?;
    let (upload, parts, truncated) = gw
        .client
        .list_parts(&input.bucket, &input.key, &input.upload_id, after, max)
        .await
        .map_err(client_error)?;
    let next = parts.last().map(|p| p.number).unwrap_or(after);
    let shown = owner_of(gw, &upload.owner).await?;
    let output = ListPartsOutput {
        bucket: Some(input.bucket),
        initiator: Some(Initiator {
            display_name: shown.display_name.clone(),
            id: shown.id.clone(),
        }),
        is_truncated: Some(truncated),
        key: Some(input.key),
        max_parts: Some(i32::try_from(max).unwrap_or(i32::MAX)),
        next_part_number_marker: Some(i32::try_from(next).unwrap_or(i32::MAX)),
        owner: Some(shown),
        part_number_marker: Some(i32::try_from(after).unwrap_or(i32::MAX)),
        parts: Some(
            parts
                .iter()
                .map(|p| {
                    let sums = Checksums::of(&p.checksums, None, true);
                    Part {
                        checksum_crc32: sums.crc32,
                        checksum_crc32c: sums.crc32c,
                        checksum_crc64nvme: sums.crc64nvme,
                        checksum_sha1: sums.sha1,
                        checksum_sha256: sums.sha256,
                        e_tag: Some(etag(&hex::encode(p.md5))),
                        last_modified: Some(timestamp(p.mtime_ms)),
                        part_number: i32::try_from(p.number).ok(),
                        size: Some(i64::try_from(p.size).unwrap_or(i64::MAX)),
                    }
                })
                .collect(),
        ),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        upload_id: Some(input.upload_id),
        checksum_algorithm: upload
            .checksum_algorithm
            .as_deref()
            .and_then(ChecksumAlgorithm::parse)
            .map(|a| s3s::dto::ChecksumAlgorithm::from(a.s3_name().to_string())),
        checksum_type: upload.checksum_type.map(checksum_type_dto),
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

/// ListMultipartUploads: uploads in progress by key then upload id, with S3's markers.
pub(super) async fn list_multipart_uploads(
    gw: &Gateway,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    let names = Names::new(input.encoding_type.as_ref())?;
    let delimiter = non_empty(input.delimiter.as_ref());
    let key_marker = non_empty(input.key_marker.as_ref());
    let query = UploadsQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: delimiter.clone(),
        key_marker: key_marker.clone(),
        // S3 ignores the upload id marker without a key marker.
        upload_id_marker: key_marker
            .as_ref()
            .and_then(|_| non_empty(input.upload_id_marker.as_ref())),
        max_uploads: page_size(input.max_uploads, MAX_KEYS)?,
    };
    let page = gw
        .client
        .list_uploads(&input.bucket, &query)
        .await
        .map_err(client_error)?;
    let ids = page.uploads.iter().map(|u| u.owner.clone()).collect();
    let owners = Owners::load(gw, ids).await?;
    let uploads = page
        .uploads
        .iter()
        .map(|u| MultipartUpload {
            initiated: Some(timestamp(u.initiated_ms)),
            initiator: Some(Initiator {
                display_name: owners.owner(&u.owner).display_name,
                id: Some(u.owner.clone()),
            }),
            key: Some(names.name(&u.key)),
            owner: Some(owners.owner(&u.owner)),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            upload_id: Some(u.upload_id.clone()),
            ..Default::default()
        })
        .collect();
    let output = ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        common_prefixes: names.prefixes(&page.common_prefixes),
        delimiter: names.opt(delimiter.as_deref()),
        encoding_type: input.encoding_type,
        is_truncated: Some(page.is_truncated),
        key_marker: Some(names.name(key_marker.as_deref().unwrap_or(""))),
        max_uploads: Some(i32::try_from(query.max_uploads).unwrap_or(i32::MAX)),
        next_key_marker: names.opt(page.next_key_marker.as_deref()),
        next_upload_id_marker: page.next_upload_id_marker,
        prefix: Some(names.name(&query.prefix)),
        upload_id_marker: query.upload_id_marker,
        uploads: Some(uploads),
        ..Default::default()
    };
    Ok(S3Response::new(output))
}
