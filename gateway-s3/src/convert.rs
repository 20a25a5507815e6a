//! Conversions between s3s's types and the client's: headers, metadata, times, ETags, ranges,
//! version selectors and body streams.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use cairn_client::{
    BodyStream, ByteStream, ChecksumAlgorithm, ChecksumRequest, ClientError, ContentHeaders,
    ExpectedChecksum, RangeSpec, VersionManifest, VersionSel,
};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode};
use s3s::dto::{ETag, ETagCondition, Metadata, Range, StreamingBlob, Timestamp};
use s3s::stream::{ByteStream as S3ByteStream, RemainingLength};
use s3s::{s3_error, S3Error, S3Result, StdError, TrailingHeaders};

use crate::error::{client_error, custom_error};

/// The S3 form of a unix-milliseconds time.
pub(crate) fn timestamp(ms: u64) -> Timestamp {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .into()
}

/// Unix milliseconds of an S3 time; times before 1970 are refused.
pub(crate) fn timestamp_ms(t: &Timestamp) -> S3Result<u64> {
    let nanos = time::OffsetDateTime::from(t.clone()).unix_timestamp_nanos();
    u64::try_from(nanos / 1_000_000)
        .map_err(|_| s3_error!(InvalidArgument, "dates before 1970 are not accepted"))
}

/// A stored ETag (kept unquoted) as a strong HTTP ETag.
pub(crate) fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_string())
}

/// The Content-MD5 of a request, read from its headers: s3s drops an empty value, which S3
/// refuses like any other malformed digest.
pub(crate) fn request_md5(headers: &HeaderMap) -> S3Result<Option<[u8; 16]>> {
    match headers.get("content-md5") {
        None => Ok(None),
        Some(v) => content_md5(Some(v.to_str().unwrap_or_default())),
    }
}

/// Decodes Content-MD5 (base64 of 16 bytes); anything else is InvalidDigest.
pub(crate) fn content_md5(value: Option<&str>) -> S3Result<Option<[u8; 16]>> {
    let Some(value) = value else { return Ok(None) };
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
        .map(Some)
        .ok_or_else(|| s3_error!(InvalidDigest, "the Content-MD5 you specified is not valid"))
}

/// Header naming the checksum the client wants computed (sent by the AWS SDKs).
const SDK_CHECKSUM_ALGORITHM: &str = "x-amz-sdk-checksum-algorithm";
/// The same, as the S3 API documents it.
const CHECKSUM_ALGORITHM: &str = "x-amz-checksum-algorithm";
/// Header announcing trailers after an aws-chunked body.
const TRAILER: &str = "x-amz-trailer";

/// The `x-amz-checksum-*` header of an algorithm.
fn checksum_header(a: ChecksumAlgorithm) -> String {
    format!("x-amz-checksum-{}", a.name())
}

/// The additional checksum a PutObject or UploadPart asks for: a value in an
/// `x-amz-checksum-*` header, a trailer announced by `x-amz-trailer` (read once the body has
/// been consumed), or only an algorithm (`x-amz-sdk-checksum-algorithm` /
/// `x-amz-checksum-algorithm`) for the store to compute. More than one algorithm, an unknown
/// one, or a malformed value is InvalidRequest, before any of the body is read.
pub(crate) fn checksum_request(
    headers: &HeaderMap,
    trailers: Option<&TrailingHeaders>,
) -> S3Result<Option<ChecksumRequest>> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let mut found: Vec<(ChecksumAlgorithm, ExpectedChecksum)> = Vec::new();
    for a in ChecksumAlgorithm::ALL {
        let name = checksum_header(a);
        if let Some(value) = text(&name) {
            if cairn_client::decode_checksum(a, value).is_none() {
                return Err(s3_error!(
                    InvalidRequest,
                    "Value for {name} header is invalid: send base64 of the {}-byte digest",
                    a.digest_len()
                ));
            }
            found.push((a, ExpectedChecksum::Value(value.to_string())));
        }
    }
    if let Some(trailer) = text(TRAILER) {
        for name in trailer.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let a = name
                .to_ascii_lowercase()
                .strip_prefix("x-amz-checksum-")
                .and_then(ChecksumAlgorithm::parse)
                .ok_or_else(|| {
                    s3_error!(
                        InvalidRequest,
                        "the trailer `{name}` is not supported: announce an x-amz-checksum-* \
                         trailer (crc32, crc32c, crc64nvme, sha1 or sha256)"
                    )
                })?;
            let handle = trailers.cloned().ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "x-amz-trailer needs an aws-chunked body with trailers \
                     (x-amz-content-sha256: STREAMING-*-TRAILER)"
                )
            })?;
            let header = checksum_header(a);
            let read = move || {
                handle
                    .read(|h| {
                        h.get(header.as_str())
                            .and_then(|v| v.to_str().ok())
                            .map(|v| v.trim().to_string())
                    })
                    .flatten()
            };
            found.push((a, ExpectedChecksum::AfterBody(Arc::new(read))));
        }
    }
    let asked = match text(SDK_CHECKSUM_ALGORITHM).or_else(|| text(CHECKSUM_ALGORITHM)) {
        Some(name) => Some(ChecksumAlgorithm::parse(name).ok_or_else(|| {
            s3_error!(
                InvalidRequest,
                "checksum algorithm `{name}` is not supported: use CRC32, CRC32C, CRC64NVME, \
                 SHA1 or SHA256"
            )
        })?),
        None => None,
    };
    if found.len() > 1 {
        return Err(s3_error!(
            InvalidRequest,
            "Expecting a single x-amz-checksum- header: send one checksum per request"
        ));
    }
    match (found.pop(), asked) {
        (Some((a, _)), Some(b)) if a != b => Err(s3_error!(
            InvalidRequest,
            "the checksum algorithm {b} does not match the x-amz-checksum-{} sent",
            a.name()
        )),
        (Some((algorithm, expected)), _) => Ok(Some(ChecksumRequest {
            algorithm,
            expected,
        })),
        (None, Some(algorithm)) => Ok(Some(ChecksumRequest {
            algorithm,
            expected: ExpectedChecksum::Compute,
        })),
        (None, None) => Ok(None),
    }
}

/// The S3 error of a failed upload that sent a checksum: BadDigest names the checksum
/// rather than Content-MD5 when that is what was checked.
pub(crate) fn upload_error(
    e: ClientError,
    body_errors: &BodyErrors,
    checksum: Option<&ChecksumRequest>,
    md5_sent: bool,
) -> S3Error {
    match (e, checksum) {
        (ClientError::BadDigest, Some(c)) if !matches!(c.expected, ExpectedChecksum::Compute) => {
            let what = if md5_sent {
                format!("The Content-MD5 or {} you specified", c.algorithm)
            } else {
                format!("The {} you specified", c.algorithm)
            };
            s3_error!(
                BadDigest,
                "{what} did not match the calculated checksum: nothing was stored"
            )
        }
        (e, _) => body_errors.error(e),
    }
}

/// A version's stored checksums as S3's five response fields.
#[derive(Default)]
pub(crate) struct Checksums {
    pub(crate) crc32: Option<String>,
    pub(crate) crc32c: Option<String>,
    pub(crate) crc64nvme: Option<String>,
    pub(crate) sha1: Option<String>,
    pub(crate) sha256: Option<String>,
    /// FULL_OBJECT or COMPOSITE, when there is a checksum.
    pub(crate) checksum_type: Option<s3s::dto::ChecksumType>,
}

impl Checksums {
    /// The checksums in `map` (algorithm name → value), or none when not `wanted`;
    /// `multipart_type` is a multipart object's checksum type (single PUTs are full-object).
    pub(crate) fn of(
        map: &BTreeMap<String, String>,
        multipart_type: Option<cairn_client::ChecksumType>,
        wanted: bool,
    ) -> Checksums {
        if !wanted || map.is_empty() {
            return Checksums::default();
        }
        let get = |a: ChecksumAlgorithm| map.get(a.name()).cloned();
        let kind = match multipart_type {
            Some(cairn_client::ChecksumType::Composite) => s3s::dto::ChecksumType::COMPOSITE,
            _ => s3s::dto::ChecksumType::FULL_OBJECT,
        };
        Checksums {
            crc32: get(ChecksumAlgorithm::Crc32),
            crc32c: get(ChecksumAlgorithm::Crc32c),
            crc64nvme: get(ChecksumAlgorithm::Crc64Nvme),
            sha1: get(ChecksumAlgorithm::Sha1),
            sha256: get(ChecksumAlgorithm::Sha256),
            checksum_type: Some(s3s::dto::ChecksumType::from_static(kind)),
        }
    }
}

/// Content headers of a request. Expires is kept as sent, so it is read from the raw headers.
/// `aws-chunked` says how the body was sent, not how the object is encoded: S3 drops it from
/// the stored Content-Encoding (and the header with it when nothing else is left).
pub(crate) fn content_headers(
    headers: &HeaderMap,
    content_type: Option<String>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
) -> ContentHeaders {
    ContentHeaders {
        content_type,
        cache_control,
        content_disposition,
        content_encoding: content_encoding.and_then(|e| {
            let kept: Vec<&str> = e
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("aws-chunked"))
                .collect();
            (!kept.is_empty()).then(|| kept.join(","))
        }),
        content_language,
        expires: headers
            .get(http::header::EXPIRES)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

/// `x-amz-meta-*` of a request, names lowercased.
pub(crate) fn user_metadata(metadata: Option<Metadata>) -> BTreeMap<String, String> {
    metadata
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// `x-amz-meta-*` for a response.
pub(crate) fn response_metadata(m: &VersionManifest) -> Option<Metadata> {
    (!m.user_metadata.is_empty()).then(|| {
        m.user_metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// Parses `x-amz-tagging` (a URL query string of tags).
pub(crate) fn tagging(value: Option<&str>) -> S3Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    let Some(value) = value else { return Ok(tags) };
    for pair in value.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (form_decode(k), form_decode(v));
        if k.is_empty() || tags.insert(k, v).is_some() {
            return Err(s3_error!(
                InvalidArgument,
                "the tag set in x-amz-tagging is not valid"
            ));
        }
    }
    Ok(tags)
}

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// S3's `encoding-type=url`: everything but unreserved characters and `/` is percent-encoded.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `versionId` parameter as a selector; a malformed id is InvalidArgument.
pub(crate) fn version_sel(version_id: Option<&str>) -> S3Result<VersionSel> {
    VersionSel::parse(version_id).map_err(client_error)
}

/// An HTTP range in the client's terms.
pub(crate) fn range_spec(range: Range) -> RangeSpec {
    match range {
        Range::Int { first, last } => RangeSpec::FromTo(first, last),
        Range::Suffix { length } => RangeSpec::Suffix(length),
    }
}

/// The `[start, end)` bytes a Range names in an object of `size` bytes (as GET serves them);
/// InvalidRange (416) when it is not satisfiable.
pub(crate) fn resolve_range(range: Range, size: u64) -> S3Result<(u64, u64)> {
    let unsatisfiable = || client_error(ClientError::InvalidRange { size });
    match range_spec(range) {
        RangeSpec::FromTo(first, _) if first >= size => Err(unsatisfiable()),
        RangeSpec::FromTo(first, last) => {
            let end = last.map_or(size, |l| l.saturating_add(1).min(size));
            if end <= first {
                return Err(unsatisfiable());
            }
            Ok((first, end))
        }
        RangeSpec::Suffix(n) if n == 0 || size == 0 => Err(unsatisfiable()),
        RangeSpec::Suffix(n) => Ok((size - n.min(size), size)),
    }
}

/// The Content-Range value of a served range.
pub(crate) fn content_range((start, end): (u64, u64), size: u64) -> String {
    format!("bytes {start}-{}/{size}", end.saturating_sub(1))
}

/// Headers sent as stored rather than through s3s's typed fields (Expires is free text).
pub(crate) fn raw_headers(m: &VersionManifest) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(v) = m
        .headers
        .expires
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(http::header::EXPIRES, v);
    }
    headers
}

/// Conditional request headers (If-Match and friends, or their x-amz-copy-source-if forms).
#[derive(Default)]
pub(crate) struct Conditions {
    pub(crate) if_match: Option<ETagCondition>,
    pub(crate) if_none_match: Option<ETagCondition>,
    pub(crate) if_modified_since: Option<Timestamp>,
    pub(crate) if_unmodified_since: Option<Timestamp>,
}

impl Conditions {
    /// Checks a version against the conditions as RFC 9110 orders them: a failed If-Match or
    /// If-Unmodified-Since is 412, a failed If-None-Match or If-Modified-Since is 304 (412 for
    /// a copy source, where "not modified" means nothing).
    pub(crate) fn check(&self, m: &VersionManifest, copy_source: bool) -> S3Result<()> {
        let matches = |c: &ETagCondition| match c {
            ETagCondition::Any => true,
            ETagCondition::ETag(e) => e.value() == m.etag,
        };
        let mtime = (m.mtime_ms / 1000) as i64;
        let secs = |t: &Timestamp| time::OffsetDateTime::from(t.clone()).unix_timestamp();
        let failed = match &self.if_match {
            Some(c) => !matches(c),
            None => self
                .if_unmodified_since
                .as_ref()
                .is_some_and(|t| mtime > secs(t)),
        };
        if failed {
            return Err(s3_error!(
                PreconditionFailed,
                "at least one of the preconditions you specified did not hold"
            ));
        }
        let unchanged = match &self.if_none_match {
            Some(c) => matches(c),
            None => self
                .if_modified_since
                .as_ref()
                .is_some_and(|t| mtime <= secs(t)),
        };
        if unchanged {
            if copy_source {
                return Err(s3_error!(
                    PreconditionFailed,
                    "at least one of the preconditions you specified did not hold"
                ));
            }
            let mut err = s3_error!(NotModified, "not modified");
            let mut headers = HeaderMap::new();
            if let Ok(v) = etag(&m.etag).to_http_header() {
                headers.insert(http::header::ETAG, v);
            }
            err.set_headers(headers);
            return Err(err);
        }
        Ok(())
    }
}

/// What went wrong inside a request body, as seen by s3s's signature and hash checks.
#[derive(Clone, Copy, Debug)]
enum BodyFault {
    Sha256Mismatch,
    ChunkSignatureMismatch,
    Malformed,
}

/// Remembers why a request body failed, so the S3 error names the cause rather than the
/// client's generic "body ended early".
#[derive(Clone, Default)]
pub(crate) struct BodyErrors(Arc<Mutex<Option<BodyFault>>>);

impl BodyErrors {
    fn record(&self, e: &StdError) {
        let text = e.to_string();
        let fault = if text.contains("Sha256Mismatch") {
            BodyFault::Sha256Mismatch
        } else if text.contains("SignatureMismatch") {
            BodyFault::ChunkSignatureMismatch
        } else if text.contains("AwsChunkedStreamError") || text.contains("UploadStreamError") {
            BodyFault::Malformed
        } else {
            return;
        };
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(fault);
    }

    /// The S3 error for a failed upload.
    pub(crate) fn error(&self, e: ClientError) -> S3Error {
        let fault = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match fault {
            Some(BodyFault::Sha256Mismatch) => custom_error(
                "XAmzContentSHA256Mismatch",
                StatusCode::BAD_REQUEST,
                "the provided x-amz-content-sha256 header does not match what was computed",
            ),
            Some(BodyFault::ChunkSignatureMismatch) => s3_error!(
                SignatureDoesNotMatch,
                "a chunk signature of the streaming body does not match"
            ),
            Some(BodyFault::Malformed) => {
                s3_error!(
                    IncompleteBody,
                    "the aws-chunked request body is malformed or incomplete"
                )
            }
            None => client_error(e),
        }
    }
}

/// A request body as the client's stream; errors are recorded in the returned [`BodyErrors`].
pub(crate) fn request_body(body: Option<StreamingBlob>) -> (BodyStream, BodyErrors) {
    let errors = BodyErrors::default();
    let Some(body) = body else {
        return (Box::pin(futures::stream::empty()), errors);
    };
    let seen = errors.clone();
    let stream = body.map(move |item| {
        item.map_err(|e| {
            seen.record(&e);
            std::io::Error::other(e)
        })
    });
    (Box::pin(stream), errors)
}

/// The length a request body announces: Content-Length (s3s rewrites it to the decoded
/// length for aws-chunked bodies), else the stream's exact length if known.
pub(crate) fn body_length(
    content_length: Option<i64>,
    body: Option<&StreamingBlob>,
) -> Option<u64> {
    content_length
        .and_then(|n| u64::try_from(n).ok())
        .or_else(|| {
            body.and_then(|b| b.remaining_length().exact())
                .and_then(|n| u64::try_from(n).ok())
        })
}

/// A response body from the client's stream of `len` bytes.
pub(crate) fn response_body(stream: ByteStream, len: u64) -> StreamingBlob {
    StreamingBlob::new(ClientBody {
        inner: Mutex::new(stream),
        remaining: len,
    })
}

/// Makes the client's `Send` stream `Sync` as s3s requires: the mutex is only reached through
/// `&mut`, so it never blocks.
struct ClientBody {
    inner: Mutex<ByteStream>,
    remaining: u64,
}

impl Stream for ClientBody {
    type Item = Result<Bytes, StdError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let stream = this.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        match stream.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                this.remaining = this.remaining.saturating_sub(bytes.len() as u64);
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::error!(error = %e, "reading an object failed mid-response");
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl S3ByteStream for ClientBody {
    fn remaining_length(&self) -> RemainingLength {
        usize::try_from(self.remaining)
            .map_or_else(|_| RemainingLength::unknown(), RemainingLength::new_exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_inclusive() {
        assert_eq!(content_range((0, 10), 100), "bytes 0-9/100");
        assert_eq!(content_range((99, 100), 100), "bytes 99-99/100");
    }

    #[test]
    fn content_md5_must_be_16_bytes_of_base64() {
        assert_eq!(
            content_md5(Some("1B2M2Y8AsgTpgAmY7PhCfg=="))
                .unwrap()
                .unwrap()[0],
            0xd4
        );
        assert!(content_md5(Some("not base64!")).is_err());
        assert!(content_md5(Some("AAAA")).is_err());
        assert!(content_md5(None).unwrap().is_none());
    }

    #[test]
    fn tagging_is_a_query_string() {
        let tags = tagging(Some("a=1&b=x%20y&c=p+q")).unwrap();
        assert_eq!(tags["a"], "1");
        assert_eq!(tags["b"], "x y");
        assert_eq!(tags["c"], "p q");
        assert!(tagging(Some("a=1&a=2")).is_err());
    }

    #[test]
    fn url_encoding_keeps_slashes() {
        assert_eq!(url_encode("a b/c+d"), "a%20b/c%2Bd");
        assert_eq!(url_encode("é"), "%C3%A9");
    }
}
