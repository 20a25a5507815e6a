//! Conversions between s3s's types and the client's: headers, metadata, times, ETags, ranges,
//! version selectors and body streams.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use cairn_client::{
    BodyStream, ByteStream, ClientError, ContentHeaders, RangeSpec, VersionManifest, VersionSel,
};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode};
use s3s::dto::{ETag, ETagCondition, Metadata, Owner, Range, StreamingBlob, Timestamp};
use s3s::stream::{ByteStream as S3ByteStream, RemainingLength};
use s3s::{s3_error, S3Error, S3Result, StdError};

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

/// An owner element for an access key id.
pub(crate) fn owner(id: &str) -> Owner {
    Owner {
        display_name: Some(id.to_string()),
        id: Some(id.to_string()),
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

/// Content headers of a request. Expires is kept as sent, so it is read from the raw headers.
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
        content_encoding,
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
