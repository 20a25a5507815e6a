//! S3 PUT and GET phases against an endpoint with the AWS SDK, and the bucket they use.
//!
//! A phase runs a fixed number of workers, each sending one request after another until the
//! phase's time is up or its operation budget is spent; requests in flight at the deadline
//! finish and count. Bodies are made before a request's clock starts, and GET bodies are
//! streamed and counted rather than kept.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use bytes::Bytes;
use futures::StreamExt;
use indicatif::ProgressBar;
use md5::{Digest, Md5};

use super::data::ObjectSource;

/// Longest a single request may take before the phase fails.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);
/// Keys per DeleteObjects request.
const DELETE_BATCH: usize = 1000;

/// Builds the SDK client: path-style addressing, static credentials, region us-east-1, no
/// retries (a failed request fails the run rather than hiding in the latencies), and no
/// optional client-side checksums, which would measure the client rather than the endpoint.
pub fn client(endpoint: &str, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
    let creds = Credentials::new(access_key, secret_key, None, None, "cairn-bench");
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .force_path_style(true)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(OPERATION_TIMEOUT)
                .connect_timeout(Duration::from_secs(10))
                .build(),
        )
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// What the phases share.
pub struct Bench {
    /// The SDK client.
    pub s3: aws_sdk_s3::Client,
    /// Bucket written to.
    pub bucket: String,
    /// Key prefix of this run, `bench-<run id>`.
    pub prefix: String,
    /// Object bodies.
    pub source: Arc<ObjectSource>,
    /// Sign PUT bodies (SHA-256 of the payload) instead of sending UNSIGNED-PAYLOAD.
    pub sign_payload: bool,
    /// Additional checksum the endpoint computes for every PUT (S3's name, e.g. `CRC32C`).
    pub checksum: Option<String>,
    /// Encryption headers of every PUT, and of every GET (a customer key is sent with both).
    pub sse: SseHeaders,
    /// Next object number: every object of the run gets its own.
    pub next_object: AtomicU64,
    /// Keys of every object written so far, for the cleanup (even after a failure).
    pub written: Mutex<Vec<String>>,
}

/// How long and how wide one phase runs.
#[derive(Clone, Copy)]
pub struct PhaseLimits {
    /// Parallel workers.
    pub workers: usize,
    /// Time after which no new request starts.
    pub duration: Duration,
    /// Requests after which no new one starts.
    pub max_ops: Option<u64>,
}

/// An object a PUT phase wrote.
#[derive(Clone)]
pub struct Written {
    /// Its key.
    pub key: String,
    /// Its object number (its body is `source.object(number, size)`).
    pub number: u64,
    /// The ETag the PUT returned, without quotes.
    pub etag: String,
}

/// One finished request.
struct Done {
    /// Time from sending the request to the end of the response body.
    latency: Duration,
    /// The object, for a PUT.
    written: Option<Written>,
}

/// What a phase measured.
pub struct Phase {
    /// Requests completed.
    pub ops: u64,
    /// Body bytes moved.
    pub bytes: u64,
    /// From the first request's start to the last one's end.
    pub secs: f64,
    /// Latency of each request, in ms, ascending.
    pub latencies_ms: Vec<f64>,
}

impl Bench {
    /// Creates the bucket if it does not exist; returns whether it did not.
    pub async fn ensure_bucket(&self) -> anyhow::Result<bool> {
        let err = match self.s3.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(true),
            Err(e) => e,
        };
        if self
            .s3
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(false);
        }
        bail!(
            "cannot create bucket `{}`: {}: check the keys, or choose another bucket with --bucket",
            self.bucket,
            DisplayErrorContext(err)
        )
    }

    /// Runs a PUT phase of `size`-byte objects; returns it and the objects written.
    pub async fn put_phase(
        self: &Arc<Self>,
        size: u64,
        limits: PhaseLimits,
        pb: &ProgressBar,
    ) -> anyhow::Result<(Phase, Vec<Written>)> {
        let bench = self.clone();
        run_phase(limits, size, pb, move |_| {
            let bench = bench.clone();
            async move { bench.put_one(size).await }
        })
        .await
    }

    async fn put_one(&self, size: u64) -> anyhow::Result<Done> {
        let number = self.next_object.fetch_add(1, Ordering::Relaxed);
        let source = self.source.clone();
        // A memcpy of up to the object size: off the executor when it is large.
        let body = if size >= 1 << 20 {
            tokio::task::spawn_blocking(move || source.object(number, size as usize)).await?
        } else {
            source.object(number, size as usize)
        };
        let key = format!("{}/{}/{number:010}", self.prefix, size);
        let start = Instant::now();
        let req = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(Bytes::from(body)));
        let algorithm = self.checksum.clone();
        let sse = self.sse.put.clone();
        let req = req.customize().mutate_request(move |r| {
            if let Some(a) = &algorithm {
                r.headers_mut()
                    .insert("x-amz-sdk-checksum-algorithm", a.clone());
            }
            for (name, value) in &sse {
                r.headers_mut().insert(*name, value.clone());
            }
        });
        let out = if self.sign_payload {
            req.send().await
        } else {
            req.disable_payload_signing().send().await
        }
        .map_err(|e| anyhow!("PUT {key}: {}", DisplayErrorContext(e)))?;
        let latency = start.elapsed();
        let etag = out
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string();
        self.written
            .lock()
            .map_err(|_| anyhow!("the bench's key list is poisoned"))?
            .push(key.clone());
        Ok(Done {
            latency,
            written: Some(Written { key, number, etag }),
        })
    }

    /// Runs a GET phase over `objects` (cycling through them), checking every length.
    pub async fn get_phase(
        self: &Arc<Self>,
        size: u64,
        objects: Arc<Vec<Written>>,
        limits: PhaseLimits,
        pb: &ProgressBar,
    ) -> anyhow::Result<Phase> {
        if objects.is_empty() {
            bail!("no objects to read: the PUT phase wrote none");
        }
        let bench = self.clone();
        let (phase, _) = run_phase(limits, size, pb, move |i| {
            let bench = bench.clone();
            let objects = objects.clone();
            async move {
                let w = &objects[(i % objects.len() as u64) as usize];
                bench.get_one(&w.key, size).await
            }
        })
        .await?;
        Ok(phase)
    }

    async fn get_one(&self, key: &str, size: u64) -> anyhow::Result<Done> {
        let start = Instant::now();
        let out = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .customize()
            .mutate_request({
                let sse = self.sse.get.clone();
                move |r| {
                    for (name, value) in &sse {
                        r.headers_mut().insert(*name, value.clone());
                    }
                }
            })
            .send()
            .await
            .map_err(|e| anyhow!("GET {key}: {}", DisplayErrorContext(e)))?;
        if out.content_length() != Some(size as i64) {
            bail!(
                "GET {key}: Content-Length {:?}, expected {size}",
                out.content_length()
            );
        }
        let mut body = out.body;
        let mut read = 0u64;
        while let Some(b) = body
            .try_next()
            .await
            .with_context(|| format!("GET {key}"))?
        {
            read += b.len() as u64;
        }
        if read != size {
            bail!("GET {key}: read {read} bytes, expected {size}");
        }
        Ok(Done {
            latency: start.elapsed(),
            written: None,
        })
    }

    /// Reads `w` back whole and checks its bytes: their MD5 against the PUT's ETag (which is
    /// the body's MD5 for a single PUT) and against the body that was sent.
    pub async fn verify(&self, w: &Written, size: u64) -> anyhow::Result<()> {
        let out = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(&w.key)
            .customize()
            .mutate_request({
                let sse = self.sse.get.clone();
                move |r| {
                    for (name, value) in &sse {
                        r.headers_mut().insert(*name, value.clone());
                    }
                }
            })
            .send()
            .await
            .map_err(|e| anyhow!("GET {}: {}", w.key, DisplayErrorContext(e)))?;
        let got = out.body.collect().await?.into_bytes();
        let source = self.source.clone();
        let number = w.number;
        let (got_md5, sent_md5) = tokio::task::spawn_blocking(move || {
            let sent = source.object(number, size as usize);
            (
                hex::encode(Md5::digest(&got)),
                hex::encode(Md5::digest(&sent)),
            )
        })
        .await?;
        if got_md5 != sent_md5 {
            bail!(
                "GET {}: the bytes read back differ from the bytes written",
                w.key
            );
        }
        // An SSE-C object's ETag is not the MD5 of its body (as in S3).
        if self.sse.get.is_empty() && got_md5 != w.etag.to_ascii_lowercase() {
            bail!(
                "PUT {}: ETag {} is not the MD5 of the body ({got_md5})",
                w.key,
                w.etag
            );
        }
        Ok(())
    }

    /// The keys of every object written so far.
    pub fn written_keys(&self) -> Vec<String> {
        self.written.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// Deletes `keys`, a thousand per DeleteObjects request, falling back to one DeleteObject
    /// per key if the endpoint refuses batches.
    pub async fn delete(&self, keys: &[String], pb: &ProgressBar) -> anyhow::Result<()> {
        for batch in keys.chunks(DELETE_BATCH) {
            if let Err(e) = self.delete_batch(batch).await {
                pb.println(format!(
                    "DeleteObjects failed ({e}): deleting one object at a time"
                ));
                let mut deletes = futures::stream::iter(batch)
                    .map(|key| async move {
                        self.s3
                            .delete_object()
                            .bucket(&self.bucket)
                            .key(key)
                            .send()
                            .await
                            .map_err(|e| anyhow!("DELETE {key}: {}", DisplayErrorContext(e)))
                    })
                    .buffer_unordered(16);
                while let Some(r) = deletes.next().await {
                    r?;
                    pb.inc(1);
                }
                continue;
            }
            pb.inc(batch.len() as u64);
        }
        Ok(())
    }

    async fn delete_batch(&self, keys: &[String]) -> anyhow::Result<()> {
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()?;
        let out = self
            .s3
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| anyhow!("{}", DisplayErrorContext(e)))?;
        if let Some(err) = out.errors().first() {
            bail!(
                "{} of {} keys not deleted, e.g. {}: {}",
                out.errors().len(),
                keys.len(),
                err.key().unwrap_or_default(),
                err.message().unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Deletes the bucket (after its objects).
    pub async fn delete_bucket(&self) -> anyhow::Result<()> {
        self.s3
            .delete_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot delete bucket `{}`: {}",
                    self.bucket,
                    DisplayErrorContext(e)
                )
            })?;
        Ok(())
    }
}

/// Runs `op(i)` for i = 0, 1, ... on `limits.workers` workers until the time or the budget is
/// spent. The bar's position is the elapsed time; its message the requests done.
async fn run_phase<F, Fut>(
    limits: PhaseLimits,
    size: u64,
    pb: &ProgressBar,
    op: F,
) -> anyhow::Result<(Phase, Vec<Written>)>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Done>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + limits.duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..limits.workers {
        let (op, next, completed) = (op.clone(), next.clone(), completed.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if limits.max_ops.is_some_and(|max| i >= max) {
                    break;
                }
                done.push(op(i).await?);
                completed.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(done)
        });
    }

    let joined = async {
        let mut all = Vec::new();
        while let Some(res) = workers.join_next().await {
            match res {
                Ok(Ok(done)) => all.extend(done),
                Ok(Err(e)) => {
                    workers.abort_all();
                    return Err(e);
                }
                Err(e) if e.is_cancelled() => {}
                Err(e) => {
                    workers.abort_all();
                    return Err(anyhow!("a bench worker panicked: {e}"));
                }
            }
        }
        Ok(all)
    };
    let ticker = async {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        loop {
            every.tick().await;
            let ms = start.elapsed().as_millis() as u64;
            pb.set_position(ms.min(pb.length().unwrap_or(u64::MAX)));
            pb.set_message(format!("{} ops", completed.load(Ordering::Relaxed)));
        }
    };
    let done = tokio::select! {
        r = joined => r?,
        () = ticker => unreachable!("the ticker never ends"),
    };
    let secs = start.elapsed().as_secs_f64();

    let mut latencies_ms: Vec<f64> = done.iter().map(|d| d.latency.as_secs_f64() * 1e3).collect();
    latencies_ms.sort_by(f64::total_cmp);
    let ops = done.len() as u64;
    let written = done.into_iter().filter_map(|d| d.written).collect();
    Ok((
        Phase {
            ops,
            bytes: ops * size,
            secs,
            latencies_ms,
        },
        written,
    ))
}

/// Server-side encryption headers of a run's PUTs and GETs.
#[derive(Clone, Default)]
pub struct SseHeaders {
    /// Sent with every PUT.
    pub put: Vec<(&'static str, String)>,
    /// Sent with every GET.
    pub get: Vec<(&'static str, String)>,
}

/// The headers of `--sse KIND`: SSE-S3 on PUTs, or one random customer key on PUTs and GETs.
pub fn sse_headers(kind: Option<&str>) -> SseHeaders {
    use base64::Engine;
    use md5::Digest;
    match kind {
        Some("aes256") => SseHeaders {
            put: vec![("x-amz-server-side-encryption", "AES256".into())],
            get: Vec::new(),
        },
        Some(_) => {
            let key: [u8; 32] = rand::random();
            let b64 = base64::engine::general_purpose::STANDARD;
            let headers = vec![
                (
                    "x-amz-server-side-encryption-customer-algorithm",
                    "AES256".to_string(),
                ),
                ("x-amz-server-side-encryption-customer-key", b64.encode(key)),
                (
                    "x-amz-server-side-encryption-customer-key-MD5",
                    b64.encode(md5::Md5::digest(key)),
                ),
            ];
            SseHeaders {
                put: headers.clone(),
                get: headers,
            }
        }
        None => SseHeaders::default(),
    }
}
