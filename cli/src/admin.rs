//! The admin endpoint: a small JSON API over HTTP for keys (and their bucket grants), buckets and
//! stats, plus /health and Prometheus /metrics. Every /v1 call needs the bearer token kept in DATA_DIR/admin.token.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use cairn_client::{Client, ClientError};
use cairn_core::metrics::MetricsSource;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::serve::write_private;
use crate::workers::Workers;

/// Largest admin request body.
const MAX_BODY: usize = 64 * 1024;

/// Where a running site's admin endpoint is, written to DATA_DIR/admin.json.
#[derive(Serialize, Deserialize)]
pub struct EndpointFile {
    /// http://IP:PORT
    pub url: String,
}

/// The token from DATA_DIR/admin.token, created (0600) if missing.
pub fn load_or_create_token(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => {
            let t = Alphanumeric.sample_string(&mut rand::thread_rng(), 40);
            write_private(&path, &format!("{t}\n"))?;
            Ok(t)
        }
    }
}

/// Records the admin address for commands run against the data dir.
pub fn write_endpoint_file(dir: &Path, addr: SocketAddr) -> anyhow::Result<()> {
    let f = EndpointFile {
        url: format!("http://{addr}"),
    };
    write_private(&dir.join("admin.json"), &serde_json::to_string(&f)?)
}

/// A key as the admin API lists it (no secret).
#[derive(Serialize, Deserialize)]
pub struct KeyInfo {
    /// Access key id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Creation time, unix ms.
    pub created_ms: u64,
    /// Secret: only in the answer to a create.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret: Option<String>,
    /// What the key may do in buckets it does not own, by bucket name.
    #[serde(default)]
    pub grants: BTreeMap<String, GrantInfo>,
    /// The key's request and bandwidth limits (`cairn key limit`).
    #[serde(default)]
    pub limits: LimitsInfo,
}

/// A key's limits as the admin API shows and takes them (`PUT /v1/keys/{id}/limits`); a
/// missing or null field is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsInfo {
    /// Requests per second.
    #[serde(default)]
    pub requests_per_sec: Option<u64>,
    /// Body bytes per second, in and out together.
    #[serde(default)]
    pub bytes_per_sec: Option<u64>,
}

impl LimitsInfo {
    /// The limits on one line, e.g. `100 requests/s, 10.0 MiB/s`, or `none`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.requests_per_sec {
            parts.push(format!("{n} requests/s"));
        }
        if let Some(b) = self.bytes_per_sec {
            parts.push(format!("{}/s", crate::ops::human(b)));
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }
}

impl From<cairn_client::KeyLimits> for LimitsInfo {
    fn from(l: cairn_client::KeyLimits) -> LimitsInfo {
        LimitsInfo {
            requests_per_sec: l.requests_per_sec,
            bytes_per_sec: l.bytes_per_sec,
        }
    }
}

impl From<LimitsInfo> for cairn_client::KeyLimits {
    fn from(l: LimitsInfo) -> cairn_client::KeyLimits {
        cairn_client::KeyLimits {
            requests_per_sec: l.requests_per_sec,
            bytes_per_sec: l.bytes_per_sec,
        }
    }
}

/// A key's permissions in one bucket (`cairn key allow`), as the admin API shows and takes
/// them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    /// List and read objects.
    #[serde(default)]
    pub read: bool,
    /// Write and delete objects.
    #[serde(default)]
    pub write: bool,
    /// Everything the bucket owner may do.
    #[serde(default)]
    pub owner: bool,
}

impl GrantInfo {
    /// The permissions as a short list, e.g. `read,write`.
    pub fn describe(&self) -> String {
        let names = [
            (self.read, "read"),
            (self.write, "write"),
            (self.owner, "owner"),
        ];
        names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl From<cairn_client::KeyGrant> for GrantInfo {
    fn from(g: cairn_client::KeyGrant) -> GrantInfo {
        GrantInfo {
            read: g.read,
            write: g.write,
            owner: g.owner,
        }
    }
}

impl From<GrantInfo> for cairn_client::KeyGrant {
    fn from(g: GrantInfo) -> cairn_client::KeyGrant {
        cairn_client::KeyGrant {
            read: g.read,
            write: g.write,
            owner: g.owner,
        }
    }
}

/// A bucket as the admin API lists it.
#[derive(Serialize, Deserialize)]
pub struct BucketInfo {
    /// Name.
    pub name: String,
    /// Owner key id.
    pub owner: String,
    /// Creation time, unix ms.
    pub created_ms: u64,
    /// Versioning state.
    pub versioning: String,
}

/// Storage totals as the admin API reports them.
#[derive(Serialize, Deserialize)]
pub struct StatsInfo {
    /// Buckets.
    pub buckets: u64,
    /// Versions, delete markers included.
    pub versions: u64,
    /// Sum of object sizes over all versions.
    pub logical_bytes: u64,
    /// Distinct chunks.
    pub chunks: u64,
    /// Uncompressed bytes of distinct chunks.
    pub unique_bytes: u64,
    /// Chunk payload bytes on disk.
    pub physical_bytes: u64,
}

/// Request body of key and bucket creation.
#[derive(Serialize, Deserialize)]
pub struct CreateRequest {
    /// Key or bucket name.
    pub name: String,
    /// Bucket owner key id.
    #[serde(default)]
    pub owner: Option<String>,
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn error(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": msg }))
}

fn client_error(e: ClientError) -> Response<Full<Bytes>> {
    error(status_of(&e), &e.to_string())
}

/// The HTTP status of an admin call that failed with `e`.
pub(crate) fn status_of(e: &ClientError) -> StatusCode {
    match e.kind() {
        cairn_core::ErrorKind::NotFound => StatusCode::NOT_FOUND,
        cairn_core::ErrorKind::AlreadyExists | cairn_core::ErrorKind::Conflict => {
            StatusCode::CONFLICT
        }
        cairn_core::ErrorKind::InvalidInput | cairn_core::ErrorKind::LimitExceeded => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Key info from a stored key.
pub fn key_info(k: &cairn_client::AccessKey, with_secret: bool) -> KeyInfo {
    KeyInfo {
        id: k.id.clone(),
        name: k.name.clone(),
        created_ms: k.created_ms,
        secret: with_secret.then(|| k.secret.clone()),
        grants: k
            .grants
            .iter()
            .map(|(b, g)| (b.clone(), GrantInfo::from(*g)))
            .collect(),
        limits: k.limits.into(),
    }
}

/// Bucket info from a stored bucket.
pub fn bucket_info(b: &cairn_client::Bucket) -> BucketInfo {
    BucketInfo {
        name: b.name.clone(),
        owner: b.owner.clone(),
        created_ms: b.created_ms,
        versioning: format!("{:?}", b.versioning),
    }
}

/// Totals from client stats.
pub fn stats_info(s: &cairn_client::Stats) -> StatsInfo {
    StatsInfo {
        buckets: s.buckets,
        versions: s.versions,
        logical_bytes: s.logical_bytes,
        chunks: s.chunks,
        unique_bytes: s.unique_bytes,
        physical_bytes: s.physical_bytes,
    }
}

/// The owner for a new bucket: the given key, or the oldest key.
pub async fn default_owner(client: &Client, owner: Option<&str>) -> Result<String, ClientError> {
    if let Some(o) = owner {
        return match client.get_key(o).await? {
            Some(k) => Ok(k.id),
            None => Err(ClientError::InvalidArgument(format!(
                "access key `{o}` does not exist: see `cairn key list`"
            ))),
        };
    }
    let mut keys = client.list_keys().await?;
    keys.sort_by_key(|k| k.created_ms);
    keys.first().map(|k| k.id.clone()).ok_or_else(|| {
        ClientError::InvalidArgument(
            "no access key exists: create one with `cairn key create`".into(),
        )
    })
}

async fn metrics(
    client: &Client,
    workers: &Workers,
    sources: &[Arc<dyn MetricsSource>],
) -> Response<Full<Bytes>> {
    match client.stats().await {
        Ok(s) => {
            let mut text = format!(
                "# HELP cairn_buckets Buckets.\n# TYPE cairn_buckets gauge\ncairn_buckets {}\n\
                 # HELP cairn_versions Object versions stored, delete markers included.\n# TYPE cairn_versions gauge\ncairn_versions {}\n\
                 # HELP cairn_logical_bytes Sum of object sizes over all versions.\n# TYPE cairn_logical_bytes gauge\ncairn_logical_bytes {}\n\
                 # HELP cairn_chunks Distinct chunks stored.\n# TYPE cairn_chunks gauge\ncairn_chunks {}\n\
                 # HELP cairn_unique_bytes Uncompressed bytes of distinct chunks.\n# TYPE cairn_unique_bytes gauge\ncairn_unique_bytes {}\n\
                 # HELP cairn_physical_bytes Chunk payload bytes on disk.\n# TYPE cairn_physical_bytes gauge\ncairn_physical_bytes {}\n",
                s.buckets, s.versions, s.logical_bytes, s.chunks, s.unique_bytes, s.physical_bytes
            );
            text.push_str(&workers.metrics());
            crate::bucket_cmd::render_metrics(client, &mut text).await;
            for source in sources {
                source.render(&mut text);
            }
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(Full::new(Bytes::from(text)))
                .unwrap_or_default()
        }
        Err(e) => client_error(e),
    }
}

/// What every admin request may use.
struct Ctx {
    client: Client,
    token: String,
    workers: Arc<Workers>,
    sources: Vec<Arc<dyn MetricsSource>>,
    cluster: Option<crate::node::admin::ClusterAdmin>,
    /// This node's disk worker (`/v1/disk`).
    disk: Option<Arc<crate::disk::DiskMonitor>>,
    /// The site's block volumes as this process serves them (`/v1/volumes`).
    volumes: Option<Arc<cairn_block::Volumes>>,
    /// The site's links (`/v1/links`).
    links: Option<cairn_isgw::Links>,
}

async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (client, token, workers, sources) = (&ctx.client, &ctx.token, &ctx.workers, &ctx.sources);
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/health") => {
            return json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
        }
        (&Method::GET, "/metrics") => return metrics(client, workers, sources).await,
        _ => {}
    }
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token: send `Authorization: Bearer TOKEN` (see DATA_DIR/admin.token)",
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "request body over 64 KiB"),
    };
    if let Some(cluster) = &ctx.cluster {
        if let Some((status, answer)) = cluster.handle(&method, &path, &body).await {
            return json(status, &answer);
        }
    }
    if let Some(vols) = &ctx.volumes {
        let answer =
            crate::volume_cmd::handle_admin(vols, &method, &path, query.as_deref(), &body).await;
        if let Some((status, answer)) = answer {
            return json(status, &answer);
        }
    }
    if let Some(answer) = crate::kms_cmd::handle_admin(client, &method, &path, &body).await {
        return match answer {
            Ok((status, v)) => json(status, &v),
            Err(e) => client_error(e),
        };
    }
    let create = || serde_json::from_slice::<CreateRequest>(&body);
    match (method, path.as_str()) {
        (Method::GET, "/v1/workers") => json(StatusCode::OK, &workers.statuses()),
        (Method::GET, "/v1/site") => json(
            StatusCode::OK,
            &serde_json::json!({ "id": client.site_id(), "id_hex": format!("{:04x}", client.site_id()) }),
        ),
        (Method::GET, "/v1/links") => match &ctx.links {
            Some(l) => json(StatusCode::OK, &l.status()),
            None => error(StatusCode::NOT_FOUND, "this process runs no links"),
        },
        (Method::GET, "/v1/links/cache") => match client.fetch_stats() {
            Ok(f) => json(StatusCode::OK, &f),
            Err(e) => client_error(e),
        },
        (Method::POST, "/v1/pin") => {
            match serde_json::from_slice::<crate::object_cmd::SiblingsRequest>(&body) {
                Ok(r) => match client.pin_object(&r.bucket, &r.key).await {
                    Ok(p) => json(StatusCode::OK, &p),
                    Err(e) => client_error(e),
                },
                Err(e) => error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
            }
        }
        (Method::POST, "/v1/unpin") => {
            match serde_json::from_slice::<crate::object_cmd::SiblingsRequest>(&body) {
                Ok(r) => match client.unpin_object(&r.bucket, &r.key).await {
                    Ok(n) => json(StatusCode::OK, &serde_json::json!({ "unpinned": n })),
                    Err(e) => client_error(e),
                },
                Err(e) => error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
            }
        }
        (Method::GET, "/v1/disk") => match &ctx.disk {
            Some(d) => json(StatusCode::OK, &d.status()),
            None => error(StatusCode::NOT_FOUND, "this process watches no data dir"),
        },
        (Method::GET, "/v1/keys") => match client.list_keys().await {
            Ok(keys) => json(
                StatusCode::OK,
                &keys.iter().map(|k| key_info(k, false)).collect::<Vec<_>>(),
            ),
            Err(e) => client_error(e),
        },
        (Method::POST, "/v1/keys") => match create() {
            Ok(r) => match client.create_key(&r.name).await {
                Ok(k) => json(StatusCode::CREATED, &key_info(&k, true)),
                Err(e) => client_error(e),
            },
            Err(e) => error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
        },
        (m, p) if p.starts_with("/v1/keys/") && p.contains("/grants/") => {
            let rest = &p["/v1/keys/".len()..];
            let Some((id, bucket)) = rest.split_once("/grants/") else {
                return error(StatusCode::NOT_FOUND, "no such admin endpoint");
            };
            let grant = match m {
                Method::PUT => match serde_json::from_slice::<GrantInfo>(&body) {
                    Ok(g) => Some(g.into()),
                    Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
                },
                Method::DELETE => None,
                _ => return error(StatusCode::METHOD_NOT_ALLOWED, "use PUT or DELETE"),
            };
            match client.set_key_grant(id, bucket, grant).await {
                Ok(k) => json(StatusCode::OK, &key_info(&k, false)),
                Err(e) => client_error(e),
            }
        }
        (m, p) if p.starts_with("/v1/keys/") && p.ends_with("/limits") => {
            let id = &p["/v1/keys/".len()..p.len() - "/limits".len()];
            let limits = match m {
                Method::PUT => match serde_json::from_slice::<LimitsInfo>(&body) {
                    Ok(l) => l.into(),
                    Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
                },
                Method::DELETE => cairn_client::KeyLimits::default(),
                _ => return error(StatusCode::METHOD_NOT_ALLOWED, "use PUT or DELETE"),
            };
            match client.set_key_limits(id, limits).await {
                Ok(k) => json(StatusCode::OK, &key_info(&k, false)),
                Err(e) => client_error(e),
            }
        }
        (Method::GET, p) if p.starts_with("/v1/keys/") => {
            match client.get_key(&p["/v1/keys/".len()..]).await {
                Ok(Some(k)) => json(StatusCode::OK, &key_info(&k, false)),
                Ok(None) => error(StatusCode::NOT_FOUND, "no such access key"),
                Err(e) => client_error(e),
            }
        }
        (Method::DELETE, p) if p.starts_with("/v1/keys/") => {
            match client.delete_key(&p["/v1/keys/".len()..]).await {
                Ok(true) => json(StatusCode::OK, &serde_json::json!({"deleted": true})),
                Ok(false) => error(StatusCode::NOT_FOUND, "no such access key"),
                Err(e) => client_error(e),
            }
        }
        (m, p) if p.starts_with("/v1/buckets/") => {
            match crate::bucket_cmd::route(client, &m, p, &body).await {
                Some(Ok(d)) => json(StatusCode::OK, &d),
                Some(Err((status, msg))) => error(status, &msg),
                None => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
            }
        }
        (Method::GET, "/v1/buckets") => match client.list_buckets().await {
            Ok(b) => json(
                StatusCode::OK,
                &b.iter().map(bucket_info).collect::<Vec<_>>(),
            ),
            Err(e) => client_error(e),
        },
        (Method::POST, "/v1/buckets") => match create() {
            Ok(r) => {
                let owner = match default_owner(client, r.owner.as_deref()).await {
                    Ok(o) => o,
                    Err(e) => return client_error(e),
                };
                match client.create_bucket(&r.name, &owner).await {
                    Ok(b) => json(StatusCode::CREATED, &bucket_info(&b)),
                    Err(e) => client_error(e),
                }
            }
            Err(e) => error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
        },
        (Method::POST, "/v1/siblings") => {
            match serde_json::from_slice::<crate::object_cmd::SiblingsRequest>(&body) {
                Ok(r) => match crate::object_cmd::siblings_of(client, &r.bucket, &r.key).await {
                    Ok(list) => json(StatusCode::OK, &list),
                    Err(e) => client_error(e),
                },
                Err(e) => error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
            }
        }
        (Method::GET, "/v1/stats") => match client.stats().await {
            Ok(s) => json(StatusCode::OK, &stats_info(&s)),
            Err(e) => client_error(e),
        },
        _ => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What an admin endpoint serves besides keys, buckets and stats.
#[derive(Default)]
pub struct AdminParts {
    /// `/metrics` sources besides the site's totals and the workers.
    pub sources: Vec<Arc<dyn MetricsSource>>,
    /// A node of a multi-node site: `/v1/cluster` calls go here.
    pub cluster: Option<crate::node::admin::ClusterAdmin>,
    /// This node's disk worker (`/v1/disk`).
    pub disk: Option<Arc<crate::disk::DiskMonitor>>,
    /// The site's block volumes as this process serves them (`/v1/volumes`).
    pub volumes: Option<Arc<cairn_block::Volumes>>,
    /// The site's links (`/v1/links`).
    pub links: Option<cairn_isgw::Links>,
}

/// Serves the admin endpoint on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    client: Client,
    token: String,
    workers: Arc<Workers>,
    parts: AdminParts,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let AdminParts {
        sources,
        cluster,
        disk,
        volumes,
        links,
    } = parts;
    let mut shutdown = std::pin::pin!(shutdown);
    let ctx = Arc::new(Ctx {
        client,
        token,
        workers,
        sources,
        cluster,
        disk,
        volumes,
        links,
    });
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => r?,
            _ = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(ctx, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await
            {
                warn!("admin connection: {e}");
            }
        });
    }
}

/// A client of a running site's admin API.
pub struct AdminClient {
    url: String,
    token: String,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl AdminClient {
    /// A client for `url` with `token`.
    pub fn new(url: &str, token: &str) -> AdminClient {
        AdminClient {
            url: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http(),
        }
    }

    /// Calls `method path` with an optional JSON body and decodes the JSON answer.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.url, path))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let resp = self.http.request(req).await.with_context(|| {
            format!(
                "cannot reach the admin endpoint {}: is the site running?",
                self.url
            )
        })?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            let msg = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            anyhow::bail!("{msg}");
        }
        Ok(serde_json::from_slice(&bytes)?)
    }
}
