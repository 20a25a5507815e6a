//! Cairn's S3 gateway: the S3 REST API over HTTP/1.1 (optionally HTTPS), on top of `cairn-client`.
//!
//! The `s3s` crate parses requests into typed operation inputs, checks SigV4 signatures
//! (headers, presigned query strings and aws-chunked streaming bodies) and SigV2 ones, and
//! serializes outputs and errors; this crate implements the operations against
//! [`cairn_client::Client`] and runs the hyper accept loop. The gateway keeps no data of its
//! own (invariant I7): request bodies stream straight into the client and response bodies
//! straight out of it.
//!
//! Code map:
//! - [`server`] — accept loop, TCP_NODELAY, request ids and tracing spans, graceful shutdown.
//! - [`tls`] — optional HTTPS on the listener ([`S3Tls`]): PEM loading, the per-connection
//!   handshake, `aws:SecureTransport`.
//! - [`compat`] — where s3s's HTTP answers differ from S3's: presigned URL lifetimes, SigV4
//!   dated by `Date`, request ids in error bodies, POST policy refusals and redirects.
//! - [`auth`] — access keys (secret lookup), the access hook (per-key limits, region check,
//!   then [`access`]), host parsing for virtual-hosted-style requests.
//! - [`qos`] — per-access-key request and bandwidth limits (`cairn key limit`): token
//!   buckets, 503 SlowDown, body bytes charged as they stream.
//! - [`sigv2`] — Signature Version 2 before s3s verifies it: the per-site switch, time stamps,
//!   presigned URL parameters, the `/bucket` resource signed with or without its final slash.
//! - [`access`] — who may do what: bucket owner, key grants, bucket policy, ACLs.
//! - [`policy`] — bucket policy documents: validation and evaluation.
//! - [`public`] — PublicAccessBlock and Object Ownership: refused ACLs, ignored grants, object
//!   owners.
//! - [`error`] — the one mapping from [`cairn_client::ClientError`] to S3 error codes.
//! - [`metrics`] — per-operation request counters, body bytes and latency ([`S3Metrics`]).
//! - [`cors`] — preflight (OPTIONS) answers and `Access-Control-*` response headers from the
//!   bucket's CORS rules, in front of the S3 service.
//! - [`convert`] — headers, metadata, times, ETags and body streams between s3s and the client.
//! - [`form`] — the browser POST form fields s3s does not act on (`${filename}`, tagging,
//!   checksums), captured as the form streams in.
//! - [`ops`] — the S3 operations, one file per family (buckets, objects, listings, copy,
//!   multipart).

mod access;
mod auth;
mod compat;
mod condition;
mod convert;
mod cors;
mod error;
mod form;
mod metrics;
mod ops;
mod policy;
mod public;
mod qos;
mod server;
mod sigv2;
mod sse;
mod tls;

pub use metrics::{S3Metrics, OPS as S3_OPERATIONS};
pub use tls::{S3Tls, TlsError};

/// Settings of the S3 gateway.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// The region this gateway answers for. `None` accepts requests signed for any region;
    /// `Some` refuses requests signed for another one (AuthorizationHeaderMalformed) and is
    /// what GetBucketLocation reports.
    pub region: Option<String>,
    /// Base domains for virtual-hosted-style requests: `bucket.<domain>[:port]` addresses
    /// `bucket`; a Host equal to a domain (or any other host) is path style.
    pub domains: Vec<String>,
    /// Where the gateway counts its requests (`cairn_s3_*` metrics); clones of the config
    /// share it. Render it with [`S3Metrics::render`], e.g. from the admin `/metrics`.
    pub metrics: std::sync::Arc<S3Metrics>,
    /// Whether requests signed with Signature Version 2 are taken (`Authorization: AWS
    /// id:signature`, presigned URLs with `AWSAccessKeyId` and `Signature`, POST forms with a
    /// `signature` field). When `false` they get S3's answer for regions that take only SigV4,
    /// 400 InvalidRequest "... Please use AWS4-HMAC-SHA256." (on which s3cmd switches to
    /// SigV4 by itself).
    pub signature_v2: bool,
    /// HTTPS on the listener: `None` speaks plain HTTP. With it every connection must complete
    /// a TLS handshake (ALPN `http/1.1`) within ten seconds, and bucket policies see
    /// `aws:SecureTransport` "true"; without it "false".
    pub tls: Option<S3Tls>,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            region: None,
            domains: vec!["localhost".to_string()],
            metrics: std::sync::Arc::new(S3Metrics::new()),
            signature_v2: true,
            tls: None,
        }
    }
}

/// Serves the S3 API on `listener` until `shutdown` completes, then stops accepting and lets
/// in-flight requests finish (for at most ten seconds).
///
/// Every request is authenticated with SigV4 (or SigV2, unless turned off) against the access
/// keys stored by `client`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: S3Config,
    client: cairn_client::Client,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, config, client, shutdown).await
}
