//! Request metrics of the S3 gateway, per operation: requests by status code, body bytes
//! received and sent, and latency, rendered as Prometheus text.
//!
//! The operation is named the way S3 (and s3s) routes a request — method, bucket/object shape
//! of the path, query keys and a few headers ([`operation`]) — before s3s sees it, so requests
//! s3s refuses early (bad signature, unknown key) are still counted under their operation.
//! Every name comes from the fixed list [`OPS`], so the `op` label is bounded whatever clients
//! send; keys, bucket names and paths never become labels.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cairn_core::metrics::{header, labels, sample, Histogram, MetricsSource};
use http::{Method, Request};
use hyper::body::{Body, Frame, SizeHint};
use s3s::host::S3Host;

use crate::auth::DomainHost;
use crate::qos::Throttle;

/// Request counters of an S3 gateway (see [`crate::S3Config::metrics`]):
/// `cairn_s3_requests_total{op,status}`, `cairn_s3_request_bytes_total{op}`,
/// `cairn_s3_response_bytes_total{op}`, `cairn_s3_request_duration_seconds{op}` and
/// `cairn_s3_throttled_total{reason}` (requests refused with 503 SlowDown by their key's
/// limits, [`crate::qos`]; not by key, which would make the labels unbounded).
///
/// Recording is lock-free (relaxed atomics); an operation's counters are allocated the first
/// time it is seen, and only operations seen so far are rendered.
pub struct S3Metrics {
    /// One slot per entry of [`OPS`].
    ops: Box<[OnceLock<Arc<OpStats>>]>,
    /// Requests refused by their key's limits, one counter per [`Throttle`] reason.
    throttled: [AtomicU64; Throttle::ALL.len()],
}

impl Default for S3Metrics {
    fn default() -> Self {
        S3Metrics {
            ops: (0..OPS.len()).map(|_| OnceLock::new()).collect(),
            throttled: Default::default(),
        }
    }
}

impl std::fmt::Debug for S3Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seen = self.ops.iter().filter(|o| o.get().is_some()).count();
        f.debug_struct("S3Metrics")
            .field("operations_seen", &seen)
            .finish()
    }
}

/// Status codes counted one by one: 100..=599; anything else is counted as `other`.
const FIRST_STATUS: u16 = 100;
const STATUSES: usize = 500;

/// The counters of one operation.
pub(crate) struct OpStats {
    statuses: Box<[AtomicU64]>,
    other_status: AtomicU64,
    request_bytes: AtomicU64,
    response_bytes: AtomicU64,
    duration: Histogram,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats {
            statuses: (0..STATUSES).map(|_| AtomicU64::new(0)).collect(),
            other_status: AtomicU64::new(0),
            request_bytes: AtomicU64::new(0),
            response_bytes: AtomicU64::new(0),
            duration: Histogram::latency(),
        }
    }

    /// Records a request whose response head is ready: its status and the time it took.
    pub(crate) fn record(&self, status: u16, elapsed: Duration) {
        match status
            .checked_sub(FIRST_STATUS)
            .and_then(|i| self.statuses.get(usize::from(i)))
        {
            Some(c) => c.fetch_add(1, Ordering::Relaxed),
            None => self.other_status.fetch_add(1, Ordering::Relaxed),
        };
        self.duration.observe_duration(elapsed);
    }
}

impl S3Metrics {
    /// Empty counters.
    pub fn new() -> S3Metrics {
        S3Metrics::default()
    }

    /// The counters of `op` (a name from [`operation`]; anything else counts as `unknown`).
    pub(crate) fn op(&self, op: &str) -> Arc<OpStats> {
        let i = OPS.iter().position(|o| *o == op).unwrap_or(UNKNOWN);
        self.ops[i].get_or_init(|| Arc::new(OpStats::new())).clone()
    }

    /// Counts a request refused by its key's limits.
    pub(crate) fn throttled(&self, reason: Throttle) {
        self.throttled[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the Prometheus text of every operation seen so far to `out`.
    pub fn render(&self, out: &mut String) {
        let seen: Vec<(&str, &OpStats)> = OPS
            .iter()
            .zip(self.ops.iter())
            .filter_map(|(name, slot)| slot.get().map(|s| (*name, &**s)))
            .collect();
        header(
            out,
            "cairn_s3_requests_total",
            "counter",
            "S3 requests answered, by operation and HTTP status code.",
        );
        for (op, s) in &seen {
            for (i, c) in s.statuses.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    let status = (usize::from(FIRST_STATUS) + i).to_string();
                    sample(
                        out,
                        "cairn_s3_requests_total",
                        &labels(&[("op", op), ("status", &status)]),
                        n,
                    );
                }
            }
            let n = s.other_status.load(Ordering::Relaxed);
            if n > 0 {
                sample(
                    out,
                    "cairn_s3_requests_total",
                    &labels(&[("op", op), ("status", "other")]),
                    n,
                );
            }
        }
        for (name, help, get) in [
            (
                "cairn_s3_request_bytes_total",
                "S3 request body bytes received (as sent on the wire, aws-chunked framing included), by operation.",
                (|s: &OpStats| s.request_bytes.load(Ordering::Relaxed)) as fn(&OpStats) -> u64,
            ),
            (
                "cairn_s3_response_bytes_total",
                "S3 response body bytes sent, by operation.",
                |s: &OpStats| s.response_bytes.load(Ordering::Relaxed),
            ),
        ] {
            header(out, name, "counter", help);
            for (op, s) in &seen {
                sample(out, name, &labels(&[("op", op)]), get(s));
            }
        }
        header(
            out,
            "cairn_s3_request_duration_seconds",
            "histogram",
            "S3 request latency from the request head to the response head, by operation.",
        );
        for (op, s) in &seen {
            s.duration.render(
                out,
                "cairn_s3_request_duration_seconds",
                &labels(&[("op", op)]),
            );
        }
        header(
            out,
            "cairn_s3_throttled_total",
            "counter",
            "S3 requests refused with 503 SlowDown by their access key's limits, by the limit reached.",
        );
        for reason in Throttle::ALL {
            let n = self.throttled[reason as usize].load(Ordering::Relaxed);
            sample(
                out,
                "cairn_s3_throttled_total",
                &labels(&[("reason", reason.as_str())]),
                n,
            );
        }
    }
}

impl MetricsSource for S3Metrics {
    fn render(&self, out: &mut String) {
        S3Metrics::render(self, out);
    }
}

/// Which byte counter a [`Counted`] body adds to.
#[derive(Clone, Copy)]
pub(crate) enum Direction {
    Request,
    Response,
}

/// Sees each data frame of a [`Tapped`] body as it passes.
pub(crate) trait Tap {
    fn data(&self, data: &Bytes);
}

/// A body whose data frames pass a [`Tap`] (nothing is buffered here); size hints and end of
/// stream are the inner body's.
pub(crate) struct Tapped<B, T> {
    inner: B,
    tap: T,
}

impl<B, T> Tapped<B, T> {
    pub(crate) fn new(inner: B, tap: T) -> Tapped<B, T> {
        Tapped { inner, tap }
    }
}

/// Adds the length of each data frame to its operation's byte counter.
pub(crate) struct ByteCounter {
    stats: Arc<OpStats>,
    direction: Direction,
}

impl Tap for ByteCounter {
    fn data(&self, data: &Bytes) {
        let counter = match self.direction {
            Direction::Request => &self.stats.request_bytes,
            Direction::Response => &self.stats.response_bytes,
        };
        counter.fetch_add(data.len() as u64, Ordering::Relaxed);
    }
}

/// A body counted into its operation's byte counter as it streams.
pub(crate) type Counted<B> = Tapped<B, ByteCounter>;

impl<B> Counted<B> {
    pub(crate) fn counted(inner: B, stats: Arc<OpStats>, direction: Direction) -> Counted<B> {
        Tapped::new(inner, ByteCounter { stats, direction })
    }
}

impl<B: Body<Data = Bytes> + Unpin, T: Tap + Unpin> Body for Tapped<B, T> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.tap.data(data);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Every operation name a request can be counted under: S3's operations as s3s routes them,
/// `PostObject` (browser form uploads), `Options` (CORS preflights) and `unknown` (no S3
/// operation matches).
pub const OPS: &[&str] = &[
    "unknown",
    "Options",
    "PostObject",
    // Service.
    "ListBuckets",
    "ListDirectoryBuckets",
    // Buckets.
    "HeadBucket",
    "CreateBucket",
    "DeleteBucket",
    "ListObjects",
    "ListObjectsV2",
    "ListObjectVersions",
    "ListMultipartUploads",
    "DeleteObjects",
    "CreateSession",
    "WriteGetObjectResponse",
    "GetBucketAccelerateConfiguration",
    "GetBucketAcl",
    "GetBucketAnalyticsConfiguration",
    "GetBucketCors",
    "GetBucketEncryption",
    "GetBucketIntelligentTieringConfiguration",
    "GetBucketInventoryConfiguration",
    "GetBucketLifecycleConfiguration",
    "GetBucketLocation",
    "GetBucketLogging",
    "GetBucketMetadataTableConfiguration",
    "GetBucketMetricsConfiguration",
    "GetBucketNotificationConfiguration",
    "GetBucketOwnershipControls",
    "GetBucketPolicy",
    "GetBucketPolicyStatus",
    "GetBucketReplication",
    "GetBucketRequestPayment",
    "GetBucketTagging",
    "GetBucketVersioning",
    "GetBucketWebsite",
    "GetObjectLockConfiguration",
    "GetPublicAccessBlock",
    "ListBucketAnalyticsConfigurations",
    "ListBucketIntelligentTieringConfigurations",
    "ListBucketInventoryConfigurations",
    "ListBucketMetricsConfigurations",
    "CreateBucketMetadataTableConfiguration",
    "PutBucketAccelerateConfiguration",
    "PutBucketAcl",
    "PutBucketAnalyticsConfiguration",
    "PutBucketCors",
    "PutBucketEncryption",
    "PutBucketIntelligentTieringConfiguration",
    "PutBucketInventoryConfiguration",
    "PutBucketLifecycleConfiguration",
    "PutBucketLogging",
    "PutBucketMetricsConfiguration",
    "PutBucketNotificationConfiguration",
    "PutBucketOwnershipControls",
    "PutBucketPolicy",
    "PutBucketReplication",
    "PutBucketRequestPayment",
    "PutBucketTagging",
    "PutBucketVersioning",
    "PutBucketWebsite",
    "PutObjectLockConfiguration",
    "PutPublicAccessBlock",
    "DeleteBucketAnalyticsConfiguration",
    "DeleteBucketCors",
    "DeleteBucketEncryption",
    "DeleteBucketIntelligentTieringConfiguration",
    "DeleteBucketInventoryConfiguration",
    "DeleteBucketLifecycle",
    "DeleteBucketMetadataTableConfiguration",
    "DeleteBucketMetricsConfiguration",
    "DeleteBucketOwnershipControls",
    "DeleteBucketPolicy",
    "DeleteBucketReplication",
    "DeleteBucketTagging",
    "DeleteBucketWebsite",
    "DeletePublicAccessBlock",
    // Objects.
    "HeadObject",
    "GetObject",
    "GetObjectAcl",
    "GetObjectAttributes",
    "GetObjectLegalHold",
    "GetObjectRetention",
    "GetObjectTagging",
    "GetObjectTorrent",
    "ListParts",
    "PutObject",
    "CopyObject",
    "PutObjectAcl",
    "PutObjectLegalHold",
    "PutObjectRetention",
    "PutObjectTagging",
    "UploadPart",
    "UploadPartCopy",
    "CreateMultipartUpload",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "RestoreObject",
    "SelectObjectContent",
    "DeleteObject",
    "DeleteObjectTagging",
];

/// Index of `unknown` in [`OPS`].
const UNKNOWN: usize = 0;

/// The query string's parameter names, for routing.
struct Query<'a>(&'a str);

impl Query<'_> {
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
    }

    fn has(&self, name: &str) -> bool {
        self.pairs().any(|(k, _)| k == name)
    }

    fn is(&self, name: &str, value: &str) -> bool {
        self.pairs().any(|(k, v)| k == name && v == value)
    }
}

/// What a request's path addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Root,
    Bucket,
    Object,
}

fn target<B>(req: &Request<B>, host: &DomainHost) -> Target {
    let path = req.uri().path();
    let virtual_hosted = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| host.parse_host_header(h).ok())
        .is_some_and(|vh| vh.bucket().is_some());
    let rest = path.strip_prefix('/').unwrap_or(path);
    if virtual_hosted {
        return if rest.is_empty() {
            Target::Bucket
        } else {
            Target::Object
        };
    }
    match rest.split_once('/') {
        _ if rest.is_empty() => Target::Root,
        None | Some((_, "")) => Target::Bucket,
        Some(_) => Target::Object,
    }
}

/// Bucket subresources, in s3s's order: (query key, GET op, PUT op, DELETE op). A key with
/// `id` is a single configuration, without it a listing (`analytics`, `intelligent-tiering`,
/// `inventory`, `metrics`), handled before this table for GET.
const BUCKET_SUBRESOURCES: &[(&str, &str, &str, &str)] = &[
    (
        "analytics",
        "",
        "PutBucketAnalyticsConfiguration",
        "DeleteBucketAnalyticsConfiguration",
    ),
    (
        "intelligent-tiering",
        "",
        "PutBucketIntelligentTieringConfiguration",
        "DeleteBucketIntelligentTieringConfiguration",
    ),
    (
        "inventory",
        "",
        "PutBucketInventoryConfiguration",
        "DeleteBucketInventoryConfiguration",
    ),
    (
        "metrics",
        "",
        "PutBucketMetricsConfiguration",
        "DeleteBucketMetricsConfiguration",
    ),
    ("session", "CreateSession", "", ""),
    (
        "accelerate",
        "GetBucketAccelerateConfiguration",
        "PutBucketAccelerateConfiguration",
        "",
    ),
    ("acl", "GetBucketAcl", "PutBucketAcl", ""),
    ("cors", "GetBucketCors", "PutBucketCors", "DeleteBucketCors"),
    (
        "encryption",
        "GetBucketEncryption",
        "PutBucketEncryption",
        "DeleteBucketEncryption",
    ),
    (
        "lifecycle",
        "GetBucketLifecycleConfiguration",
        "PutBucketLifecycleConfiguration",
        "DeleteBucketLifecycle",
    ),
    ("location", "GetBucketLocation", "", ""),
    ("logging", "GetBucketLogging", "PutBucketLogging", ""),
    (
        "metadataTable",
        "GetBucketMetadataTableConfiguration",
        "",
        "DeleteBucketMetadataTableConfiguration",
    ),
    (
        "notification",
        "GetBucketNotificationConfiguration",
        "PutBucketNotificationConfiguration",
        "",
    ),
    (
        "ownershipControls",
        "GetBucketOwnershipControls",
        "PutBucketOwnershipControls",
        "DeleteBucketOwnershipControls",
    ),
    (
        "policy",
        "GetBucketPolicy",
        "PutBucketPolicy",
        "DeleteBucketPolicy",
    ),
    ("policyStatus", "GetBucketPolicyStatus", "", ""),
    (
        "replication",
        "GetBucketReplication",
        "PutBucketReplication",
        "DeleteBucketReplication",
    ),
    (
        "requestPayment",
        "GetBucketRequestPayment",
        "PutBucketRequestPayment",
        "",
    ),
    (
        "tagging",
        "GetBucketTagging",
        "PutBucketTagging",
        "DeleteBucketTagging",
    ),
    (
        "versioning",
        "GetBucketVersioning",
        "PutBucketVersioning",
        "",
    ),
    (
        "website",
        "GetBucketWebsite",
        "PutBucketWebsite",
        "DeleteBucketWebsite",
    ),
    (
        "object-lock",
        "GetObjectLockConfiguration",
        "PutObjectLockConfiguration",
        "",
    ),
    (
        "publicAccessBlock",
        "GetPublicAccessBlock",
        "PutPublicAccessBlock",
        "DeletePublicAccessBlock",
    ),
];

/// The S3 operation a request asks for, as s3s routes it (see the module docs); always a
/// name from [`OPS`].
pub(crate) fn operation<B>(req: &Request<B>, host: &DomainHost) -> &'static str {
    let q = Query(req.uri().query().unwrap_or(""));
    let header = |name: &str| req.headers().contains_key(name);
    let target = target(req, host);
    let method = req.method();
    // The first bucket subresource in the query with an op for this method.
    let subresource =
        |pick: fn(&(&str, &'static str, &'static str, &'static str)) -> &'static str| {
            BUCKET_SUBRESOURCES
                .iter()
                .find(|r| !pick(r).is_empty() && q.has(r.0))
                .map(pick)
        };
    let op = match (method, target) {
        (&Method::OPTIONS, _) => "Options",
        (&Method::HEAD, Target::Bucket) => "HeadBucket",
        (&Method::HEAD, Target::Object) => "HeadObject",
        (&Method::GET, Target::Root) if q.is("x-id", "ListDirectoryBuckets") => {
            "ListDirectoryBuckets"
        }
        (&Method::GET, Target::Root) => "ListBuckets",
        (&Method::GET, Target::Bucket) => {
            let configured = [
                (
                    "analytics",
                    "GetBucketAnalyticsConfiguration",
                    "ListBucketAnalyticsConfigurations",
                ),
                (
                    "intelligent-tiering",
                    "GetBucketIntelligentTieringConfiguration",
                    "ListBucketIntelligentTieringConfigurations",
                ),
                (
                    "inventory",
                    "GetBucketInventoryConfiguration",
                    "ListBucketInventoryConfigurations",
                ),
                (
                    "metrics",
                    "GetBucketMetricsConfiguration",
                    "ListBucketMetricsConfigurations",
                ),
            ];
            let with_id = configured
                .iter()
                .find(|(k, _, _)| q.has(k) && q.has("id"))
                .map(|(_, get, _)| *get);
            let listing = || {
                configured
                    .iter()
                    .find(|(k, _, _)| q.has(k))
                    .map(|(_, _, list)| *list)
            };
            with_id
                .or_else(|| subresource(|r| r.1))
                .or_else(listing)
                .unwrap_or(if q.has("uploads") {
                    "ListMultipartUploads"
                } else if q.has("versions") {
                    "ListObjectVersions"
                } else if q.is("list-type", "2") {
                    "ListObjectsV2"
                } else {
                    "ListObjects"
                })
        }
        (&Method::GET, Target::Object) => [
            ("attributes", "GetObjectAttributes"),
            ("acl", "GetObjectAcl"),
            ("legal-hold", "GetObjectLegalHold"),
            ("retention", "GetObjectRetention"),
            ("tagging", "GetObjectTagging"),
            ("torrent", "GetObjectTorrent"),
            ("uploadId", "ListParts"),
        ]
        .iter()
        .find(|(k, _)| q.has(k))
        .map_or("GetObject", |(_, op)| *op),
        (&Method::POST, Target::Bucket) => {
            let form = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("multipart/form-data")
                });
            if form {
                "PostObject"
            } else if q.has("metadataTable") {
                "CreateBucketMetadataTableConfiguration"
            } else if q.has("delete") {
                "DeleteObjects"
            } else if header("x-amz-request-route") && header("x-amz-request-token") {
                "WriteGetObjectResponse"
            } else {
                "unknown"
            }
        }
        (&Method::POST, Target::Object) => {
            if q.has("select") && q.is("select-type", "2") {
                "SelectObjectContent"
            } else if q.has("uploads") {
                "CreateMultipartUpload"
            } else if q.has("restore") {
                "RestoreObject"
            } else if q.has("uploadId") {
                "CompleteMultipartUpload"
            } else {
                "unknown"
            }
        }
        (&Method::PUT, Target::Bucket) => subresource(|r| r.2).unwrap_or("CreateBucket"),
        (&Method::PUT, Target::Object) => {
            let part = q.has("partNumber") && q.has("uploadId");
            let copy = header("x-amz-copy-source");
            [
                ("acl", "PutObjectAcl"),
                ("legal-hold", "PutObjectLegalHold"),
                ("retention", "PutObjectRetention"),
                ("tagging", "PutObjectTagging"),
            ]
            .iter()
            .find(|(k, _)| q.has(k))
            .map_or(
                match (part, copy) {
                    (true, true) => "UploadPartCopy",
                    (true, false) => "UploadPart",
                    (false, true) => "CopyObject",
                    (false, false) => "PutObject",
                },
                |(_, op)| *op,
            )
        }
        (&Method::DELETE, Target::Bucket) => subresource(|r| r.3).unwrap_or("DeleteBucket"),
        (&Method::DELETE, Target::Object) => {
            if q.has("tagging") {
                "DeleteObjectTagging"
            } else if q.has("uploadId") {
                "AbortMultipartUpload"
            } else {
                "DeleteObject"
            }
        }
        _ => "unknown",
    };
    debug_assert!(OPS.contains(&op), "{op} is missing from OPS");
    op
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: &str, uri: &str, headers: &[(&str, &str)]) -> &'static str {
        let host = DomainHost::new(&["s3.test".to_string()]).unwrap();
        let mut b = Request::builder().method(method).uri(uri);
        let mut has_host = false;
        for (n, v) in headers {
            has_host |= n.eq_ignore_ascii_case("host");
            b = b.header(*n, *v);
        }
        if !has_host {
            b = b.header("host", "127.0.0.1:9000");
        }
        let req = b.body(()).unwrap();
        let op = operation(&req, &host);
        assert!(OPS.contains(&op));
        op
    }

    #[test]
    fn requests_are_named_as_s3_routes_them() {
        assert_eq!(op("GET", "/", &[]), "ListBuckets");
        assert_eq!(op("PUT", "/b", &[]), "CreateBucket");
        assert_eq!(op("PUT", "/b/", &[]), "CreateBucket");
        assert_eq!(op("HEAD", "/b", &[]), "HeadBucket");
        assert_eq!(op("DELETE", "/b", &[]), "DeleteBucket");
        assert_eq!(op("GET", "/b", &[]), "ListObjects");
        assert_eq!(op("GET", "/b?list-type=2&prefix=a", &[]), "ListObjectsV2");
        assert_eq!(op("GET", "/b?versions", &[]), "ListObjectVersions");
        assert_eq!(op("GET", "/b?uploads", &[]), "ListMultipartUploads");
        assert_eq!(op("GET", "/b?location", &[]), "GetBucketLocation");
        assert_eq!(
            op("GET", "/b?metrics", &[]),
            "ListBucketMetricsConfigurations"
        );
        assert_eq!(
            op("GET", "/b?metrics&id=x", &[]),
            "GetBucketMetricsConfiguration"
        );
        assert_eq!(op("PUT", "/b?versioning", &[]), "PutBucketVersioning");
        assert_eq!(op("PUT", "/b?policy", &[]), "PutBucketPolicy");
        assert_eq!(op("DELETE", "/b?cors", &[]), "DeleteBucketCors");
        assert_eq!(op("DELETE", "/b?lifecycle", &[]), "DeleteBucketLifecycle");
        assert_eq!(op("POST", "/b?delete", &[]), "DeleteObjects");
        assert_eq!(
            op(
                "POST",
                "/b",
                &[("content-type", "multipart/form-data; boundary=x")]
            ),
            "PostObject"
        );
        assert_eq!(op("POST", "/b", &[]), "unknown");
        assert_eq!(op("GET", "/b/k", &[]), "GetObject");
        assert_eq!(op("GET", "/b/a/b/c?versionId=1", &[]), "GetObject");
        assert_eq!(op("HEAD", "/b/k", &[]), "HeadObject");
        assert_eq!(op("GET", "/b/k?tagging", &[]), "GetObjectTagging");
        assert_eq!(op("GET", "/b/k?uploadId=u", &[]), "ListParts");
        assert_eq!(op("PUT", "/b/k", &[]), "PutObject");
        assert_eq!(
            op("PUT", "/b/k", &[("x-amz-copy-source", "/a/b")]),
            "CopyObject"
        );
        assert_eq!(op("PUT", "/b/k?partNumber=1&uploadId=u", &[]), "UploadPart");
        assert_eq!(
            op(
                "PUT",
                "/b/k?partNumber=1&uploadId=u",
                &[("x-amz-copy-source", "/a/b")]
            ),
            "UploadPartCopy"
        );
        assert_eq!(op("PUT", "/b/k?retention", &[]), "PutObjectRetention");
        assert_eq!(op("POST", "/b/k?uploads", &[]), "CreateMultipartUpload");
        assert_eq!(
            op("POST", "/b/k?uploadId=u", &[]),
            "CompleteMultipartUpload"
        );
        assert_eq!(op("POST", "/b/k", &[]), "unknown");
        assert_eq!(op("DELETE", "/b/k", &[]), "DeleteObject");
        assert_eq!(op("DELETE", "/b/k?uploadId=u", &[]), "AbortMultipartUpload");
        assert_eq!(op("DELETE", "/b/k?tagging", &[]), "DeleteObjectTagging");
        assert_eq!(op("OPTIONS", "/b/k", &[]), "Options");
        assert_eq!(op("PATCH", "/b/k", &[]), "unknown");
        assert_eq!(op("HEAD", "/", &[]), "unknown");
    }

    #[test]
    fn virtual_hosted_requests_address_their_bucket() {
        let vh = [("host", "photos.s3.test:9000")];
        assert_eq!(op("GET", "/", &vh), "ListObjects");
        assert_eq!(op("PUT", "/", &vh), "CreateBucket");
        assert_eq!(op("GET", "/?versioning", &vh), "GetBucketVersioning");
        assert_eq!(op("GET", "/k", &vh), "GetObject");
        assert_eq!(op("PUT", "/a/b", &vh), "PutObject");
        assert_eq!(op("GET", "/", &[("host", "s3.test")]), "ListBuckets");
    }

    #[test]
    fn statuses_and_bytes_are_counted_per_operation() {
        let m = S3Metrics::new();
        let put = m.op("PutObject");
        put.record(200, Duration::from_millis(3));
        put.record(200, Duration::from_millis(30));
        put.record(403, Duration::from_millis(1));
        put.request_bytes.fetch_add(10, Ordering::Relaxed);
        m.op("no such op").record(1000, Duration::ZERO);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("cairn_s3_requests_total{op=\"PutObject\",status=\"200\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("cairn_s3_requests_total{op=\"PutObject\",status=\"403\"} 1\n"));
        assert!(out.contains("cairn_s3_requests_total{op=\"unknown\",status=\"other\"} 1\n"));
        assert!(out.contains("cairn_s3_request_bytes_total{op=\"PutObject\"} 10\n"));
        assert!(out.contains("cairn_s3_response_bytes_total{op=\"PutObject\"} 0\n"));
        assert!(out.contains("cairn_s3_request_duration_seconds_count{op=\"PutObject\"} 3\n"));
        assert!(out.contains(
            "cairn_s3_request_duration_seconds_bucket{op=\"PutObject\",le=\"0.005\"} 2\n"
        ));
        assert!(!out.contains("GetObject"));
        assert!(out.contains("cairn_s3_throttled_total{reason=\"requests\"} 0\n"));
        m.throttled(Throttle::Bandwidth);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("cairn_s3_throttled_total{reason=\"bandwidth\"} 1\n"));
        assert_eq!(out.matches("# TYPE ").count(), 5);
    }

    #[test]
    fn operation_names_are_unique() {
        let mut names = OPS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OPS.len());
        assert_eq!(OPS[UNKNOWN], "unknown");
    }
}
