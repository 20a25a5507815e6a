//! Object operations: PutObject, GetObject, HeadObject, DeleteObject and DeleteObjects.

use cairn_client::{PutOptions, VersionManifest};
use futures::StreamExt;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::{requester, Gateway};
use crate::convert::{
    body_length, content_md5, etag, range_spec, raw_headers, request_body, response_body,
    response_metadata, timestamp, version_sel, Conditions,
};
use crate::error::client_error;

/// Most keys in one DeleteObjects request.
const MAX_DELETE_KEYS: usize = 1000;
/// Deletes of one DeleteObjects request run this many at a time.
const DELETE_CONCURRENCY: usize = 8;

/// Refuses request features the store does not implement rather than ignoring them.
pub(super) fn refuse_unsupported(
    sse: Option<&ServerSideEncryption>,
    sse_customer: Option<&String>,
) -> S3Result<()> {
    if sse.is_some() || sse_customer.is_some() {
        return Err(s3_error!(
            NotImplemented,
            "server-side encryption is not supported"
        ));
    }
    Ok(())
}

/// PutObject: streams the body into the store; ETag is the quoted MD5.
pub(super) async fn put_object(
    gw: &Gateway,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let me = requester(&req)?;
    let S3Request { input, headers, .. } = req;
    if input.if_match.is_some() || input.if_none_match.is_some() {
        return Err(s3_error!(
            NotImplemented,
            "conditional writes are not supported"
        ));
    }
    if input.write_offset_bytes.is_some() {
        return Err(s3_error!(
            NotImplemented,
            "appending writes are not supported"
        ));
    }
    let opts = PutOptions {
        content_md5: content_md5(input.content_md5.as_deref())?,
        content_length: body_length(input.content_length, input.body.as_ref()),
        ..new_object_options!(headers, input, me)
    };
    let (body, body_errors) = request_body(input.body);
    let put = gw
        .client
        .put_object(&input.bucket, &input.key, body, opts)
        .await
        .map_err(|e| body_errors.error(e))?;
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(etag(&put.manifest.etag)),
        version_id: put.version_id,
        ..Default::default()
    }))
}

/// The x-amz-checksum-* values of a version, when the client asked for them.
struct Checksums {
    crc32: Option<String>,
    crc32c: Option<String>,
    crc64nvme: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
}

impl Checksums {
    fn of(m: &VersionManifest, wanted: bool) -> Checksums {
        let get = |name: &str| wanted.then(|| m.checksums.get(name).cloned()).flatten();
        Checksums {
            crc32: get("crc32"),
            crc32c: get("crc32c"),
            crc64nvme: get("crc64nvme"),
            sha1: get("sha1"),
            sha256: get("sha256"),
        }
    }
}

/// GetObject: the version's bytes (or a range of them, 206) with its stored headers.
pub(super) async fn get_object(
    gw: &Gateway,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let input = req.input;
    if input.part_number.is_some() {
        return Err(s3_error!(
            NotImplemented,
            "reading one part of an object is not supported"
        ));
    }
    let version = version_sel(input.version_id.as_deref())?;
    let got = gw
        .client
        .get_object(
            &input.bucket,
            &input.key,
            &version,
            input.range.map(range_spec),
        )
        .await
        .map_err(client_error)?;
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
            Some(crate::convert::content_range(range, m.size)),
        ),
        None => (m.size, None),
    };
    let wanted = input.checksum_mode.is_some() && got.range.is_none();
    let sums = Checksums::of(m, wanted);
    let output = GetObjectOutput {
        accept_ranges: Some("bytes".to_string()),
        cache_control: m.headers.cache_control.clone(),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        content_disposition: m.headers.content_disposition.clone(),
        content_encoding: m.headers.content_encoding.clone(),
        content_language: m.headers.content_language.clone(),
        content_length: Some(i64::try_from(length).unwrap_or(i64::MAX)),
        content_range,
        content_type: m.headers.content_type.clone(),
        e_tag: Some(etag(&m.etag)),
        last_modified: Some(timestamp(m.mtime_ms)),
        metadata: response_metadata(m),
        tag_count: (!m.tags.is_empty()).then(|| i32::try_from(m.tags.len()).unwrap_or(i32::MAX)),
        version_id: got.version_id.clone(),
        ..Default::default()
    };
    // A response-expires override must win over the stored value.
    let headers = if input.response_expires.is_some() {
        http::HeaderMap::new()
    } else {
        raw_headers(m)
    };
    let body = response_body(got.body, length);
    let mut resp = S3Response::with_headers(output, headers);
    resp.output.body = Some(body);
    Ok(resp)
}

/// HeadObject: GetObject's headers without the body. A Range header is ignored (RFC 9110
/// lets servers do that; s3s always answers HEAD with 200).
pub(super) async fn head_object(
    gw: &Gateway,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = req.input;
    if input.part_number.is_some() {
        return Err(s3_error!(
            NotImplemented,
            "reading one part of an object is not supported"
        ));
    }
    let version = version_sel(input.version_id.as_deref())?;
    let head = gw
        .client
        .head_object(&input.bucket, &input.key, &version)
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
    let sums = Checksums::of(m, input.checksum_mode.is_some());
    let output = HeadObjectOutput {
        accept_ranges: Some("bytes".to_string()),
        cache_control: m.headers.cache_control.clone(),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        content_disposition: m.headers.content_disposition.clone(),
        content_encoding: m.headers.content_encoding.clone(),
        content_language: m.headers.content_language.clone(),
        content_length: Some(i64::try_from(m.size).unwrap_or(i64::MAX)),
        content_type: m.headers.content_type.clone(),
        e_tag: Some(etag(&m.etag)),
        last_modified: Some(timestamp(m.mtime_ms)),
        metadata: response_metadata(m),
        version_id: head.version_id.clone(),
        ..Default::default()
    };
    let headers = if input.response_expires.is_some() {
        http::HeaderMap::new()
    } else {
        raw_headers(m)
    };
    Ok(S3Response::with_headers(output, headers))
}

/// DeleteObject: 204; a marker in versioned buckets, removal otherwise. Missing keys succeed.
pub(super) async fn delete_object(
    gw: &Gateway,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let input = req.input;
    let version = version_sel(input.version_id.as_deref())?;
    let deleted = gw
        .client
        .delete_object(&input.bucket, &input.key, &version)
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
    let results: Vec<_> = futures::stream::iter(objects)
        .map(|obj| async move {
            let result = match version_sel(obj.version_id.as_deref()) {
                Ok(version) => gw
                    .client
                    .delete_object(bucket, &obj.key, &version)
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
