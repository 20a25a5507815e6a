//! `cairn bucket info` and `cairn bucket quota`: what a bucket holds (kept by the metadata
//! with every write) and its limits; their admin routes (`/v1/buckets/NAME`,
//! `/v1/buckets/NAME/quota`) and the per-bucket gauges of `/metrics`.

use std::fmt::Write as _;

use cairn_client::{Bucket, BucketQuota, BucketUsage, Client, ClientError, OwnerUsage};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::ops::{backend, fmt_time, human, Backend};
use crate::Target;

/// Most buckets `/metrics` reports one by one (each is a metadata read per scrape).
pub const MAX_METRICS_BUCKETS: usize = 1000;

/// A bucket with its usage and quota, as `GET /v1/buckets/NAME` answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct BucketDetail {
    /// Name.
    pub name: String,
    /// Owner key id.
    pub owner: String,
    /// Creation time, unix ms.
    pub created_ms: u64,
    /// Versioning state.
    pub versioning: String,
    /// What it holds.
    pub usage: UsageInfo,
    /// Its limits (absent: none).
    pub quota: Option<QuotaInfo>,
    /// Its bytes after dedup (absent: not counted by this site's chunk backend, or a server
    /// older than the figure).
    #[serde(default)]
    pub stored: Option<StoredInfo>,
}

/// The bytes after dedup a bucket stored: the chunks its writes stored first ("first writer
/// pays"; chunks another bucket wrote first count there), compressed, as the chunk stores
/// count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInfo {
    /// Chunk copies (every replica's copy counts).
    pub chunks: u64,
    /// Their stored bytes over every copy: bytes on disk.
    pub stored_bytes: u64,
    /// One copy's: `stored_bytes` over the copies each chunk is placed on.
    pub stored_bytes_per_copy: u64,
    /// Copies per chunk (the replication factor; 1 on a single-node site).
    pub copies: u32,
    /// Chunk nodes that did not answer (their copies are missing from the figures).
    pub nodes_unanswered: u32,
}

impl From<OwnerUsage> for StoredInfo {
    fn from(u: OwnerUsage) -> StoredInfo {
        StoredInfo {
            chunks: u.chunks,
            stored_bytes: u.stored_bytes,
            stored_bytes_per_copy: u.stored_bytes_per_copy(),
            copies: u.copies,
            nodes_unanswered: u.nodes_unanswered,
        }
    }
}

/// A bucket's usage counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageInfo {
    /// Keys whose current version is an object.
    pub objects: u64,
    /// Their bytes.
    pub current_bytes: u64,
    /// Stored object versions, current and noncurrent.
    pub versions: u64,
    /// Stored delete markers.
    pub delete_markers: u64,
    /// Bytes of every stored version.
    pub logical_bytes: u64,
}

impl From<BucketUsage> for UsageInfo {
    fn from(u: BucketUsage) -> UsageInfo {
        UsageInfo {
            objects: u.objects,
            current_bytes: u.current_bytes,
            versions: u.versions,
            delete_markers: u.delete_markers,
            logical_bytes: u.logical_bytes,
        }
    }
}

/// A bucket's quota as the admin API takes and shows it (`PUT /v1/buckets/NAME/quota`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaInfo {
    /// Most bytes over every stored version.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Most stored object versions.
    #[serde(default)]
    pub max_objects: Option<u64>,
}

impl From<QuotaInfo> for BucketQuota {
    fn from(q: QuotaInfo) -> BucketQuota {
        BucketQuota {
            max_bytes: q.max_bytes,
            max_objects: q.max_objects,
        }
    }
}

impl From<BucketQuota> for QuotaInfo {
    fn from(q: BucketQuota) -> QuotaInfo {
        QuotaInfo {
            max_bytes: q.max_bytes,
            max_objects: q.max_objects,
        }
    }
}

fn detail(b: &Bucket, u: BucketUsage, stored: Option<OwnerUsage>) -> BucketDetail {
    BucketDetail {
        name: b.name.clone(),
        owner: b.owner.clone(),
        created_ms: b.created_ms,
        versioning: format!("{:?}", b.versioning),
        usage: u.into(),
        quota: b.quota.map(Into::into),
        stored: stored.map(Into::into),
    }
}

/// A bucket, its usage and quota.
pub async fn bucket_detail(client: &Client, name: &str) -> Result<BucketDetail, ClientError> {
    let b = client.head_bucket(name).await?;
    let u = client.bucket_usage(name).await?;
    // The chunk stores answer separately from the metadata: without them (no chunk node
    // answers) the rest of the detail still shows.
    let stored = match client.bucket_stored(name).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(bucket = name, error = %e, "cannot read the bucket's bytes after dedup");
            None
        }
    };
    Ok(detail(&b, u, stored))
}

/// Sets (`Some`) or removes a bucket's quota; the bucket as it is then.
pub async fn set_quota(
    client: &Client,
    name: &str,
    quota: Option<QuotaInfo>,
) -> Result<BucketDetail, ClientError> {
    client.set_bucket_quota(name, quota.map(Into::into)).await?;
    bucket_detail(client, name).await
}

/// The admin routes under `/v1/buckets/NAME`: `GET` (detail), `PUT`/`DELETE` `…/quota`.
/// `None` when the path is not one of them.
pub(crate) async fn route(
    client: &Client,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Option<Result<BucketDetail, (StatusCode, String)>> {
    let rest = path.strip_prefix("/v1/buckets/")?;
    let (name, quota) = match rest.strip_suffix("/quota") {
        Some(name) => (name, true),
        None => (rest, false),
    };
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let result = match (method, quota) {
        (&Method::GET, false) => bucket_detail(client, name).await,
        (&Method::PUT, true) => match serde_json::from_slice::<QuotaInfo>(body) {
            Ok(q) => set_quota(client, name, Some(q)).await,
            Err(e) => return Some(Err((StatusCode::BAD_REQUEST, format!("bad JSON: {e}")))),
        },
        (&Method::DELETE, true) => set_quota(client, name, None).await,
        _ => {
            return Some(Err((
                StatusCode::METHOD_NOT_ALLOWED,
                "use GET on /v1/buckets/NAME, PUT or DELETE on /v1/buckets/NAME/quota".into(),
            )))
        }
    };
    Some(result.map_err(|e| (crate::admin::status_of(&e), e.to_string())))
}

/// Per-bucket gauges for `/metrics` (the first [`MAX_METRICS_BUCKETS`] buckets by name).
pub(crate) async fn render_metrics(client: &Client, out: &mut String) {
    let Ok(buckets) = client.list_buckets().await else {
        return;
    };
    let mut rows = Vec::new();
    for b in buckets.iter().take(MAX_METRICS_BUCKETS) {
        if let Ok(u) = client.bucket_usage(&b.name).await {
            rows.push((b, u, None));
        }
    }
    let names: Vec<String> = rows.iter().map(|(b, _, _)| b.name.clone()).collect();
    if let Ok(Some(stored)) = client.buckets_stored(&names).await {
        for (row, s) in rows.iter_mut().zip(stored) {
            row.2 = Some(s);
        }
    }
    type Figure = fn(&Bucket, &BucketUsage, Option<&OwnerUsage>) -> Option<u64>;
    let gauges: [(&str, &str, Figure); 8] = [
        (
            "cairn_bucket_objects",
            "Keys whose current version is an object, per bucket.",
            |_, u, _| Some(u.objects),
        ),
        (
            "cairn_bucket_current_bytes",
            "Bytes of the current objects, per bucket.",
            |_, u, _| Some(u.current_bytes),
        ),
        (
            "cairn_bucket_versions",
            "Stored object versions (current and noncurrent), per bucket.",
            |_, u, _| Some(u.versions),
        ),
        (
            "cairn_bucket_delete_markers",
            "Stored delete markers, per bucket.",
            |_, u, _| Some(u.delete_markers),
        ),
        (
            "cairn_bucket_logical_bytes",
            "Bytes of every stored version, per bucket (what byte quotas count).",
            |_, u, _| Some(u.logical_bytes),
        ),
        (
            "cairn_bucket_stored_bytes",
            "Stored (compressed) bytes of the chunks a bucket's writes stored first, every \
             replica's copy counted (bytes after dedup; a chunk shared with other buckets counts \
             in the bucket that wrote it first).",
            |_, _, s| s.map(|s| s.stored_bytes),
        ),
        (
            "cairn_bucket_quota_bytes",
            "A bucket's byte quota, where one is set.",
            |b, _, _| b.quota.and_then(|q| q.max_bytes),
        ),
        (
            "cairn_bucket_quota_objects",
            "A bucket's object quota, where one is set.",
            |b, _, _| b.quota.and_then(|q| q.max_objects),
        ),
    ];
    for (name, help, figure) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (b, u, s) in &rows {
            if let Some(v) = figure(b, u, s.as_ref()) {
                // Bucket names are a-z, 0-9, '.', '-': nothing to escape in a label.
                let _ = writeln!(out, "{name}{{bucket=\"{}\"}} {v}", b.name);
            }
        }
    }
}

/// `cairn bucket info NAME`.
pub async fn info(t: &Target, name: &str) -> anyhow::Result<()> {
    let d: BucketDetail = match backend(t).await? {
        Backend::Local(c) => bucket_detail(&c, name).await?,
        Backend::Remote(a) => {
            a.call(Method::GET, &format!("/v1/buckets/{name}"), None)
                .await?
        }
    };
    print_detail(&d);
    Ok(())
}

fn print_detail(d: &BucketDetail) {
    let u = &d.usage;
    println!("Bucket:          {}", d.name);
    println!("Owner:           {}", d.owner);
    println!("Created:         {}", fmt_time(d.created_ms));
    println!("Versioning:      {}", d.versioning);
    println!(
        "Objects:         {} ({})",
        u.objects,
        human(u.current_bytes)
    );
    println!(
        "Versions:        {} stored, {} delete markers",
        u.versions, u.delete_markers
    );
    println!(
        "Logical bytes:   {} ({} bytes, every stored version)",
        human(u.logical_bytes),
        u.logical_bytes
    );
    match d.stored {
        None => println!("Stored after dedup: not counted by this site's chunk stores"),
        Some(s) => {
            let copies = if s.copies > 1 {
                format!(
                    ", {} per copy, {} copies",
                    human(s.stored_bytes_per_copy),
                    s.copies
                )
            } else {
                String::new()
            };
            println!(
                "Stored after dedup: {} ({} bytes{copies}; compressed; chunks shared with \
                 other buckets count in the bucket that wrote them first)",
                human(s.stored_bytes),
                s.stored_bytes
            );
            if s.nodes_unanswered > 0 {
                println!(
                    "                 ({} chunk nodes did not answer: their copies are missing)",
                    s.nodes_unanswered
                );
            }
        }
    }
    match d.quota {
        None => println!("Quota:           none (set one with `cairn bucket quota`)"),
        Some(q) => {
            let bytes = q.max_bytes.map_or("no limit".to_string(), |m| {
                format!(
                    "{} of {} used ({:.1} %)",
                    human(u.logical_bytes),
                    human(m),
                    pct(u.logical_bytes, m)
                )
            });
            let objects = q.max_objects.map_or("no limit".to_string(), |m| {
                format!("{} of {} used ({:.1} %)", u.versions, m, pct(u.versions, m))
            });
            println!("Quota, bytes:    {bytes}");
            println!("Quota, objects:  {objects}");
        }
    }
}

fn pct(used: u64, max: u64) -> f64 {
    if max == 0 {
        100.0
    } else {
        used as f64 * 100.0 / max as f64
    }
}

/// `cairn bucket quota NAME [--max-bytes SIZE] [--max-objects N] [--clear]`.
pub async fn quota(t: &Target, name: &str, quota: Option<QuotaInfo>) -> anyhow::Result<()> {
    let d: BucketDetail = match backend(t).await? {
        Backend::Local(c) => set_quota(&c, name, quota).await?,
        Backend::Remote(a) => {
            let path = format!("/v1/buckets/{name}/quota");
            match quota {
                Some(q) => {
                    a.call(Method::PUT, &path, Some(serde_json::to_value(q)?))
                        .await?
                }
                None => a.call(Method::DELETE, &path, None).await?,
            }
        }
    };
    match d.quota {
        None => println!("Bucket {} has no quota now.", d.name),
        Some(_) => println!("Quota of bucket {} set.", d.name),
    }
    print_detail(&d);
    Ok(())
}
