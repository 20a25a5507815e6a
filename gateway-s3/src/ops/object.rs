//! Object operations: PutObject, GetObject, HeadObject, DeleteObject and DeleteObjects.

use cairn_client::{PutOptions, VersionManifest, WriteCondition};
use futures::StreamExt;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::{requester, Gateway};
use crate::access::CheckedObject;
use crate::convert::{
    body_length, checksum_request, content_range, etag, range_spec, raw_headers, request_body,
    request_md5, resolve_range, response_body, response_metadata, timestamp, upload_error,
    version_sel, Checksums, Conditions,
};
use crate::error::client_error;
use crate::error::custom_error;
use crate::sse::{customer_key, shown};

/// Most keys in one DeleteObjects request.
const MAX_DELETE_KEYS: usize = 1000;
/// Deletes of one DeleteObjects request run this many at a time.
const DELETE_CONCURRENCY: usize = 8;

/// The condition of a conditional write: `If-None-Match: *` or `"etag"`, `If-Match: *` or
/// `"etag"`.
pub(super) fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Option<WriteCondition>> {
    match (if_match, if_none_match) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-Match and If-None-Match cannot be combined on a write: send one of them"
        )),
        (None, Some(ETagCondition::Any)) => Ok(Some(WriteCondition::IfNoneMatchAny)),
        (None, Some(ETagCondition::ETag(e))) => {
            Ok(Some(WriteCondition::IfNoneMatch(e.value().to_string())))
        }
        (Some(ETagCondition::Any), None) => Ok(Some(WriteCondition::IfMatchAny)),
        (Some(ETagCondition::ETag(e)), None) => {
            Ok(Some(WriteCondition::IfMatch(e.value().to_string())))
        }
    }
}

/// PutObject: streams the body into the store; ETag is the quoted MD5. An additional checksum
/// (header, trailer or algorithm only) is computed while the body streams and verified;
/// If-None-Match / If-Match make the write conditional on the key's current object.
pub(super) async fn put_object(
    gw: &Gateway,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let me = requester(&req)?;
    let controls = crate::public::controls(&req)?;
    let S3Request {
        input,
        headers,
        trailing_headers,
        ..
    } = req;
    let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let checksum = checksum_request(&headers, trailing_headers.as_ref())?;
    if input.write_offset_bytes.is_some() {
        return Err(s3_error!(
            NotImplemented,
            "appending writes are not supported"
        ));
    }
    let md5 = request_md5(&headers)?;
    let opts = PutOptions {
        content_md5: md5,
        content_length: body_length(input.content_length, input.body.as_ref()),
        checksum: checksum.clone(),
        condition,
        ..new_object_options!(headers, input, me, controls)
    };
    let (body, body_errors) = request_body(input.body);
    let put = gw
        .client
        .put_object(&input.bucket, &input.key, body, opts)
        .await
        .map_err(|e| upload_error(e, &body_errors, checksum.as_ref(), md5.is_some()))?;
    let sums = Checksums::of(&put.manifest.checksums, None, true);
    let sse = shown(put.manifest.encryption.as_ref(), input.sse_customer_key_md5);
    Ok(S3Response::new(PutObjectOutput {
        server_side_encryption: sse.sse,
        ssekms_key_id: sse.kms_key_id.clone(),
        ssekms_encryption_context: sse.context.clone(),
        bucket_key_enabled: sse.bucket_key,
        sse_customer_algorithm: sse.customer_algorithm,
        sse_customer_key_md5: sse.customer_key_md5,
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_type: sums.checksum_type,
        e_tag: Some(etag(&put.manifest.etag)),
        size: i64::try_from(put.manifest.size).ok(),
        version_id: put.version_id,
        ..Default::default()
    }))
}

/// What of an object a GET or HEAD serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Served {
    Whole,
    Part,
    Range,
}

impl Served {
    /// A part when `partNumber` is asked for, else a range when one is, else the whole.
    fn of<R>(part: Option<u32>, range: Option<R>) -> Served {
        match (part, range) {
            (Some(_), _) => Served::Part,
            (None, Some(_)) => Served::Range,
            (None, None) => Served::Whole,
        }
    }
}

/// Checksums of `m` for a GET or HEAD: only with `x-amz-checksum-mode: ENABLED`. The values
/// only when the whole object is served; a part of a multipart object with checksums still
/// tells their type (per-part values are not kept once the upload completes), as S3 does; a
/// range has none.
fn served_checksums(m: &VersionManifest, mode: Option<&ChecksumMode>, served: Served) -> Checksums {
    let enabled = mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case("ENABLED"));
    let all = Checksums::of(&m.checksums, m.checksum_type, enabled);
    match served {
        Served::Whole => all,
        Served::Part if m.checksum_type.is_some() => Checksums {
            checksum_type: all.checksum_type,
            ..Checksums::default()
        },
        Served::Part | Served::Range => Checksums::default(),
    }
}

/// What S3 serves as the Content-Type of an object stored without one.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// The stored Content-Type, or S3's default.
fn content_type(m: &VersionManifest) -> Option<String> {
    Some(
        m.headers
            .content_type
            .clone()
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string()),
    )
}

/// A `partNumber` parameter as a part number; Range and partNumber together are refused.
fn part_number(part: Option<i32>, range: Option<&Range>) -> S3Result<Option<u32>> {
    let Some(n) = part else { return Ok(None) };
    if range.is_some() {
        return Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        ));
    }
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .map(Some)
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            )
        })
}

/// The error for a part number beyond an object's last part (400, as S3).
fn invalid_part_number() -> s3s::S3Error {
    custom_error(
        "InvalidPartNumber",
        http::StatusCode::BAD_REQUEST,
        "The requested partnumber is not satisfiable: ask for a part between 1 and the \
         object's x-amz-mp-parts-count",
    )
}

/// The bucket's record and the version GetObject or HeadObject serves: what the access check
/// read, when it read this very object (it does for both operations), else one read now.
async fn read_object(
    gw: &Gateway,
    checked: Option<CheckedObject>,
    bucket: &str,
    key: &str,
    version: &cairn_client::VersionSel,
) -> S3Result<cairn_client::ObjectRead> {
    match checked {
        Some(CheckedObject(read)) if read.is_for(bucket, key, version) => Ok(read),
        _ => gw
            .client
            .read_object(bucket, key, version)
            .await
            .map_err(client_error),
    }
}

/// GetObject: the version's bytes (or a range of them, 206) with its stored headers.
pub(super) async fn get_object(
    gw: &Gateway,
    mut req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let checked = req.extensions.remove::<CheckedObject>();
    let input = req.input;
    let part = part_number(input.part_number, input.range.as_ref())?;
    let version = version_sel(input.version_id.as_deref())?;
    let key = customer_key(
        input.sse_customer_algorithm.as_ref(),
        input.sse_customer_key.as_ref(),
        input.sse_customer_key_md5.as_ref(),
    )?;
    let read = read_object(gw, checked, &input.bucket, &input.key, &version)
        .await?
        .with_customer_key(key);
    let siblings = read.siblings;
    let (got, parts_count) = match part {
        Some(n) => gw
            .client
            .get_object_part_from(read, n)
            .await
            .map_err(|e| match e {
                cairn_client::ClientError::InvalidRange { .. } => invalid_part_number(),
                e => client_error(e),
            })?,
        None => (
            gw.client
                .get_object_from(read, input.range.map(range_spec))
                .await
                .map_err(client_error)?,
            None,
        ),
    };
    let m = &got.manifest;
    Conditions {
        if_match: input.if_match,
        if_none_match: input.if_none_match,
        if_modified_since: input.if_modified_since,
        if_unmodified_since: input.if_unmodified_since,
    }
    .check(m, false)?;

    let (length, content_range) = match got.range {
        Some(range) => (
            range.1.saturating_sub(range.0),
            Some(content_range(range, m.size)),
        ),
        None => (m.size, None),
    };
    let sums = served_checksums(m, input.checksum_mode.as_ref(), Served::of(part, got.range));
    let lock = super::lock::LockHeaders::of(m);
    let sse = shown(m.encryption.as_ref(), input.sse_customer_key_md5);
    let output = GetObjectOutput {
        server_side_encryption: sse.sse,
        ssekms_key_id: sse.kms_key_id.clone(),
        bucket_key_enabled: sse.bucket_key,
        sse_customer_algorithm: sse.customer_algorithm,
        sse_customer_key_md5: sse.customer_key_md5,
        accept_ranges: Some("bytes".to_string()),
        cache_control: m.headers.cache_control.clone(),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_type: sums.checksum_type,
        content_disposition: m.headers.content_disposition.clone(),
        content_encoding: m.headers.content_encoding.clone(),
        content_language: m.headers.content_language.clone(),
        content_length: Some(i64::try_from(length).unwrap_or(i64::MAX)),
        content_range,
        content_type: content_type(m),
        e_tag: Some(etag(&m.etag)),
        last_modified: Some(timestamp(m.mtime_ms)),
        metadata: response_metadata(m),
        parts_count: parts_count.and_then(|n| i32::try_from(n).ok()),
        tag_count: (!m.tags.is_empty()).then(|| i32::try_from(m.tags.len()).unwrap_or(i32::MAX)),
        version_id: got.version_id.clone(),
        object_lock_mode: lock.mode,
        object_lock_retain_until_date: lock.until,
        object_lock_legal_hold_status: lock.legal_hold,
        ..Default::default()
    };
    // A response-expires override must win over the stored value.
    let mut headers = if input.response_expires.is_some() {
        http::HeaderMap::new()
    } else {
        raw_headers(m)
    };
    siblings_header(&mut headers, siblings);
    let body = response_body(got.body, length);
    let mut resp = S3Response::with_headers(output, headers);
    resp.output.body = Some(body);
    Ok(resp)
}

/// HeadObject: GetObject's headers without the body. With Range or partNumber, Content-Length
/// and Content-Range describe those bytes (and x-amz-mp-parts-count the object's parts), as a
/// GET of them would.
pub(super) async fn head_object(
    gw: &Gateway,
    mut req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let checked = req.extensions.remove::<CheckedObject>();
    let input = req.input;
    let part = part_number(input.part_number, input.range.as_ref())?;
    let version = version_sel(input.version_id.as_deref())?;
    let key = customer_key(
        input.sse_customer_algorithm.as_ref(),
        input.sse_customer_key.as_ref(),
        input.sse_customer_key_md5.as_ref(),
    )?;
    let read = read_object(gw, checked, &input.bucket, &input.key, &version)
        .await?
        .with_customer_key(key);
    let siblings = read.siblings;
    let head = gw
        .client
        .head_object_from(read)
        .await
        .map_err(client_error)?;
    let m = &head.manifest;
    Conditions {
        if_match: input.if_match,
        if_none_match: input.if_none_match,
        if_modified_since: input.if_modified_since,
        if_unmodified_since: input.if_unmodified_since,
    }
    .check(m, false)?;
    let mut parts_count = None;
    let served = match (part, input.range) {
        (Some(n), _) => {
            let lens = gw.client.part_lengths(m).await.map_err(client_error)?;
            parts_count = lens.as_ref().map(Vec::len);
            let i = n as usize - 1;
            match lens {
                None if n == 1 => Some((0, m.size)),
                Some(lens) if i < lens.len() => {
                    let start: u64 = lens[..i].iter().sum();
                    Some((start, start + lens[i]))
                }
                _ => return Err(invalid_part_number()),
            }
        }
        (None, Some(range)) => Some(resolve_range(range, m.size)?),
        (None, None) => None,
    };
    let length = served.map_or(m.size, |(start, end)| end - start);
    let sums = served_checksums(m, input.checksum_mode.as_ref(), Served::of(part, served));
    let lock = super::lock::LockHeaders::of(m);
    let sse = shown(m.encryption.as_ref(), input.sse_customer_key_md5);
    let output = HeadObjectOutput {
        server_side_encryption: sse.sse,
        ssekms_key_id: sse.kms_key_id.clone(),
        bucket_key_enabled: sse.bucket_key,
        sse_customer_algorithm: sse.customer_algorithm,
        sse_customer_key_md5: sse.customer_key_md5,
        accept_ranges: Some("bytes".to_string()),
        cache_control: input
            .response_cache_control
            .or_else(|| m.headers.cache_control.clone()),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_type: sums.checksum_type,
        content_disposition: input
            .response_content_disposition
            .or_else(|| m.headers.content_disposition.clone()),
        content_encoding: input
            .response_content_encoding
            .or_else(|| m.headers.content_encoding.clone()),
        content_language: input
            .response_content_language
            .or_else(|| m.headers.content_language.clone()),
        content_length: Some(i64::try_from(length).unwrap_or(i64::MAX)),
        content_range: served.map(|r| content_range(r, m.size)),
        content_type: input.response_content_type.or_else(|| content_type(m)),
        e_tag: Some(etag(&m.etag)),
        expires: input.response_expires.clone(),
        last_modified: Some(timestamp(m.mtime_ms)),
        metadata: response_metadata(m),
        parts_count: parts_count.and_then(|n| i32::try_from(n).ok()),
        version_id: head.version_id.clone(),
        object_lock_mode: lock.mode,
        object_lock_retain_until_date: lock.until,
        object_lock_legal_hold_status: lock.legal_hold,
        ..Default::default()
    };
    let mut headers = if input.response_expires.is_some() {
        http::HeaderMap::new()
    } else {
        raw_headers(m)
    };
    // S3 tells the tag count on HEAD too, though HeadObject's model has no field for it.
    if !m.tags.is_empty() {
        headers.insert("x-amz-tagging-count", http::HeaderValue::from(m.tags.len()));
    }
    siblings_header(&mut headers, siblings);
    Ok(S3Response::with_headers(output, headers))
}

/// `x-cairn-siblings: N` on the current version of a key that linked sites wrote at once: N
/// other versions were written over the same parent (ListObjectVersions lists them).
fn siblings_header(headers: &mut http::HeaderMap, siblings: u32) {
    if siblings > 0 {
        headers.insert("x-cairn-siblings", http::HeaderValue::from(siblings));
    }
}

/// DeleteObject: 204; a marker in versioned buckets, removal otherwise. Missing keys succeed.
pub(super) async fn delete_object(
    gw: &Gateway,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let input = req.input;
    let version = version_sel(input.version_id.as_deref())?;
    let bypass = input.bypass_governance_retention == Some(true);
    let deleted = gw
        .client
        .delete_object_with(&input.bucket, &input.key, &version, bypass)
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(DeleteObjectOutput {
        delete_marker: deleted.delete_marker.then_some(true),
        version_id: deleted.version_id,
        ..Default::default()
    }))
}

/// DeleteObjects: up to 1000 keys, each reported as deleted or with its own error.
pub(super) async fn delete_objects(
    gw: &Gateway,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let input = req.input;
    let objects = input.delete.objects;
    if objects.is_empty() || objects.len() > MAX_DELETE_KEYS {
        return Err(s3_error!(
            MalformedXML,
            "a delete request must name 1 to {MAX_DELETE_KEYS} objects"
        ));
    }
    let quiet = input.delete.quiet.unwrap_or(false);
    gw.client
        .head_bucket(&input.bucket)
        .await
        .map_err(client_error)?;

    let bucket = input.bucket.as_str();
    let bypass = input.bypass_governance_retention == Some(true);
    let results: Vec<_> = futures::stream::iter(objects)
        .map(|obj| async move {
            let result = match version_sel(obj.version_id.as_deref()) {
                Ok(version) => gw
                    .client
                    .delete_object_with(bucket, &obj.key, &version, bypass)
                    .await
                    .map_err(client_error),
                Err(e) => Err(e),
            };
            (obj, result)
        })
        .buffered(DELETE_CONCURRENCY)
        .collect()
        .await;

    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for (obj, result) in results {
        match result {
            Ok(r) if !quiet => deleted.push(DeletedObject {
                delete_marker: r.delete_marker.then_some(true),
                delete_marker_version_id: if r.delete_marker {
                    r.version_id.clone()
                } else {
                    None
                },
                version_id: obj.version_id.clone(),
                key: Some(obj.key),
            }),
            Ok(_) => {}
            Err(e) => errors.push(Error {
                code: Some(e.code().as_str().to_string()),
                message: e.message().map(str::to_string),
                key: Some(obj.key),
                version_id: obj.version_id,
            }),
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    }))
}
