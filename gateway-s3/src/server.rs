//! The HTTP side: accept loop (with TLS when configured), per-request ids and tracing spans,
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn, Instrument};

use crate::auth::{Access, DomainHost, KeyAuth};
use crate::cors::Cors;
use crate::form::FormHead;
use crate::metrics::{Counted, Direction, S3Metrics, Tapped};
use crate::ops::Gateway;
use crate::qos::{Meter, Qos};
use crate::sigv2::SigV2;
use crate::S3Config;

/// Largest request head (request line and headers) accepted; beyond it hyper answers 431.
/// (hyper's `max_buf_size` alone is not a limit: a head read in one go can exceed it.)
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A client must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests may run after shutdown is asked.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, ...) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// See [`crate::serve`].
pub(crate) async fn serve(
    listener: TcpListener,
    config: S3Config,
    client: cairn_client::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cors = Arc::new(Cors::new(
        client.clone(),
        DomainHost::new(&config.domains).map_err(std::io::Error::other)?,
    ));
    let host = Arc::new(DomainHost::new(&config.domains).map_err(std::io::Error::other)?);
    let metrics = config.metrics.clone();
    let signature_v2 = config.signature_v2;
    let tls = config.tls.clone();
    let keys = KeyAuth::new(client.clone());
    let qos = Arc::new(Qos::new(keys.clone(), metrics.clone()));
    let service = build_service(config, client, keys.clone(), qos)?;
    let ids = Arc::new(RequestIds::new());

    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_header_size(MAX_HEAD_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);

    let graceful = GracefulShutdown::new();
    // Tells connections still in their TLS handshake (no request yet) to give up at shutdown.
    let (stopping_tx, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        info!(%addr, scheme, "s3 gateway listening");
    }

    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Small responses otherwise wait ~40 ms for the client's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, error = %e, "setting TCP_NODELAY failed");
        }
        let svc = RequestService {
            inner: service.clone(),
            cors: cors.clone(),
            ids: ids.clone(),
            metrics: metrics.clone(),
            host: host.clone(),
            keys: keys.clone(),
            signature_v2,
            peer,
            secure: tls.is_some(),
        };
        // Subscribed now, so a connection whose handshake ends after shutdown was asked
        // still sees it.
        let watcher = graceful.watcher();
        let http = http.clone();
        match &tls {
            None => {
                connections.spawn(serve_connection(http, TokioIo::new(stream), svc, watcher));
            }
            Some(tls) => {
                let (tls, mut stopping) = (tls.clone(), stopping.clone());
                // The handshake runs here, in the connection's task, never in the accept loop.
                connections.spawn(async move {
                    let stream = tokio::select! {
                        accepted = tls.accept(stream) => match accepted {
                            Ok(stream) => stream,
                            Err(e) => {
                                debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                        },
                        _ = stopping.wait_for(|s| *s) => return,
                    };
                    serve_connection(http, TokioIo::new(stream), svc, watcher).await;
                });
            }
        }
    }

    drop(listener);
    let _ = stopping_tx.send(true);
    info!(
        connections = connections.len(),
        "s3 gateway stopping: no new connections, finishing in-flight requests"
    );
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            grace_secs = SHUTDOWN_GRACE.as_secs(),
            "requests still running after the grace period are cut off"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// Serves HTTP/1.1 requests on one accepted connection (plain TCP or TLS) until it closes or
/// shutdown ends it.
async fn serve_connection<I>(
    http: hyper::server::conn::http1::Builder,
    io: I,
    svc: RequestService,
    watcher: Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = svc.peer;
    if let Err(e) = watcher.watch(http.serve_connection(io, svc)).await {
        debug!(%peer, error = %e, "connection closed with an error");
    }
}

/// Assembles the s3s service: operations, access keys, per-key limits, access rules and host
/// parsing.
fn build_service(
    config: S3Config,
    client: cairn_client::Client,
    keys: KeyAuth,
    qos: Arc<Qos>,
) -> std::io::Result<S3Service> {
    let host = DomainHost::new(&config.domains).map_err(std::io::Error::other)?;
    let config = Arc::new(config);
    let mut builder = S3ServiceBuilder::new(Gateway::new(client.clone(), config.clone()));
    builder.set_auth(keys);
    builder.set_access(Access::new(config, client, qos));
    builder.set_host(host);
    Ok(builder.build())
}

/// Hands out request ids: a random per-process prefix and a counter, as 16 hex digits.
struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> RequestIds {
        RequestIds {
            prefix: rand::random::<u64>() & 0xff_ffff,
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed) & ((1 << 40) - 1);
        format!("{:016X}", self.prefix << 40 | n)
    }
}

/// Wraps the s3s service with CORS, a request id, a tracing span, a log line, metrics and a
/// [`Meter`] (the bytes charged to a limited key, once the access hook admitted it) per request.
#[derive(Clone)]
struct RequestService {
    inner: S3Service,
    cors: Arc<Cors>,
    ids: Arc<RequestIds>,
    metrics: Arc<S3Metrics>,
    /// Tells virtual-hosted requests from path-style ones when naming the operation.
    host: Arc<DomainHost>,
    /// Secrets for the SigV2 checks before s3s's (sharing s3s's cache).
    keys: KeyAuth,
    /// [`S3Config::signature_v2`].
    signature_v2: bool,
    peer: SocketAddr,
    /// The connection is TLS (`aws:SecureTransport`).
    secure: bool,
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<s3s::Body>, std::convert::Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for RequestService {
    type Response = Response<s3s::Body>;
    type Error = std::convert::Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let id = self.ids.next();
        let method = req.method().clone();
        let span = tracing::info_span!(
            "s3_request",
            request_id = %id,
            method = %method,
            path = %req.uri().path(),
        );
        let inner = self.inner.clone();
        let cors = self.cors.clone();
        let (keys, host, signature_v2) = (self.keys.clone(), self.host.clone(), self.signature_v2);
        let peer = self.peer;
        // Counted under the operation S3 would route it to; its body bytes as they stream.
        let stats = self.metrics.op(crate::metrics::operation(&req, &self.host));
        // Both bodies pass the meter; it charges nothing unless the access hook, after the
        // signature check, attaches the byte budget of a key with a bandwidth limit.
        let meter = Meter::default();
        let mut req = req.map(|b| {
            Tapped::new(
                Counted::counted(b, stats.clone(), Direction::Request),
                meter.clone(),
            )
        });
        req.extensions_mut().insert(meter.clone());
        let form = (method == http::Method::POST)
            .then(|| FormHead::for_request(req.headers()))
            .flatten();
        req.extensions_mut().insert(crate::auth::RemoteAddr(peer));
        req.extensions_mut()
            .insert(crate::auth::SecureTransport(self.secure));
        let mut req = match form {
            Some(head) => {
                req.extensions_mut().insert(head.clone());
                req.map(|b| s3s::Body::http_body(Tapped::new(b, head)))
            }
            None => req.map(s3s::Body::http_body),
        };

        Box::pin(
            async move {
                let start = Instant::now();
                debug!(%peer, query = req.uri().query().unwrap_or(""), "request received");
                let origin = req
                    .headers()
                    .get(http::header::ORIGIN)
                    .and_then(|o| o.to_str().ok())
                    .map(str::to_string);
                let signed = req.headers().contains_key(http::header::AUTHORIZATION)
                    || req
                        .uri()
                        .query()
                        .is_some_and(|q| q.contains("X-Amz-Credential="))
                    || SigV2::of(req.headers(), req.uri()).is_some();
                let refused = crate::compat::prepare(&mut req).err().or_else(|| {
                    let now = time::OffsetDateTime::now_utc();
                    crate::sigv2::check(req.headers(), req.uri(), signature_v2, now).err()
                });
                let resp = if let Some(refused) = refused {
                    *refused
                } else if method == http::Method::OPTIONS {
                    cors.preflight(&req).await
                } else {
                    crate::sigv2::settle_bucket_path(&mut req, &keys, &host).await;
                    let rules = cors.rules_for(&req).await;
                    let mut resp = match inner.call(req).await {
                        Ok(resp) => resp,
                        Err(e) => {
                            error!(error = ?e, "request failed without an s3 response");
                            internal_error_response()
                        }
                    };
                    if let Some(origin) = &origin {
                        cors.decorate(rules, origin, &method, signed, &mut resp)
                            .await;
                    }
                    // s3s answers HeadObject with 200 whatever the operation says; a HEAD of
                    // a range or a part is 206, as its GET would be.
                    if method == http::Method::HEAD
                        && resp.status() == StatusCode::OK
                        && resp.headers().contains_key(http::header::CONTENT_RANGE)
                    {
                        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
                    }
                    resp
                };
                let mut resp = crate::compat::finish(resp, &method, &id).await;
                if let Ok(v) = HeaderValue::from_str(&id) {
                    resp.headers_mut().insert("x-amz-request-id", v);
                }
                let elapsed = start.elapsed();
                let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
                let status = resp.status().as_u16();
                // Latency is to the response head; the body's bytes are counted as they go.
                stats.record(status, elapsed);
                let resp = resp.map(|b| {
                    let counted = Counted::counted(b, stats, Direction::Response);
                    s3s::Body::http_body(Tapped::new(counted, meter))
                });
                if resp.status().is_server_error() {
                    warn!(status, elapsed_ms, "request served");
                } else {
                    info!(status, elapsed_ms, "request served");
                }
                Ok(resp)
            }
            .instrument(span),
        )
    }
}

/// A bare 500 for the rare case where s3s could not even serialize an error.
pub(crate) fn internal_error_response() -> Response<s3s::Body> {
    crate::compat::error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "internal error",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_fixed_width() {
        let ids = RequestIds::new();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
