//! `cairn volume backup` and `cairn volume restore`: a snapshot to and from any S3 store.
//!
//! Layout under `s3://BUCKET/PREFIX`:
//! - `chunks/<64 hex digits>`: a chunk's raw bytes, named by their BLAKE3 hash. Content
//!   addressed, so an object that exists is never sent again: a backup lists `chunks/` once
//!   and sends only the chunks missing there, and a second backup of a snapshot that changed
//!   1 % sends about 1 % of its bytes.
//! - `snapshots/<VOLUME>@<SNAPSHOT>.json`: the manifest (settings and the snapshot's pieces in
//!   order: zeros, inline bytes, or a slice of a chunk), written after every chunk it names.
//!
//! A restore fetches the manifest, creates the volume, and writes each piece through the
//! volume's controller, checking every chunk's bytes against its name first; on any failure
//! the new volume is deleted again. On a data dir no site runs on, the command does the work
//! itself, with progress bars; when a site is running on it, the command asks the site
//! (`POST /v1/volumes/backup`, `/v1/volumes/restore` on its admin endpoint), whose volume
//! controllers own its volumes, to do the same work, and prints its report.

use std::collections::HashSet;

use anyhow::{anyhow, bail, Context};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine;
use bytes::Bytes;
use cairn_block::volume::{LayoutPiece, SnapshotLayout};
use cairn_block::{VolumeConfig, Volumes};
use cairn_core::extent::Target as Extent;
use cairn_core::ChunkId;
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::ops::{backend, human, Backend};
use crate::Target;

/// Version of the manifest format written.
const FORMAT: u32 = 1;
/// Chunks sent or fetched at once (each at most 4 MiB in memory).
const IN_FLIGHT: usize = 4;

/// Where and how to reach the S3 store backups go to.
#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct S3Args {
    /// S3 endpoint of the backup store, e.g. http://127.0.0.1:3900 (another Cairn site) or
    /// https://s3.eu-west-1.amazonaws.com. Path-style requests are used.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub endpoint: String,
    /// Access key id on that store.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key: String,
    /// Its secret.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_key: String,
    /// Region to sign requests for.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
}

impl S3Args {
    fn client(&self) -> aws_sdk_s3::Client {
        cairn_isgw::mirror::S3Target {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key.clone(),
            secret_access_key: self.secret_key.clone(),
        }
        .client()
    }
}

/// `s3://BUCKET/PREFIX`.
struct Location {
    bucket: String,
    prefix: String,
}

impl Location {
    fn parse(url: &str) -> anyhow::Result<Location> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| anyhow!("`{url}` is not an S3 location: use s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("`{url}` names no bucket: use s3://BUCKET/PREFIX");
        }
        Ok(Location {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    fn key(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    fn chunk_prefix(&self) -> String {
        self.key("chunks/")
    }

    fn chunk_key(&self, id: &ChunkId) -> String {
        self.key(&format!("chunks/{id}"))
    }

    fn manifest_key(&self, volume: &str, snap: &str) -> String {
        self.key(&format!("snapshots/{volume}@{snap}.json"))
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// The manifest object of one backed-up snapshot.
#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    volume: String,
    snapshot: String,
    size: u64,
    block_size: u32,
    extent_size: u32,
    created_ms: u64,
    pieces: Vec<Piece>,
}

/// One byte range of the snapshot.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Piece {
    Zeros {
        offset: u64,
        len: u64,
    },
    Chunk {
        offset: u64,
        len: u64,
        /// Hex BLAKE3 of the chunk object.
        id: String,
        /// Where the range starts in the chunk.
        skip: u32,
    },
    Inline {
        offset: u64,
        len: u64,
        /// The bytes, base64.
        data: String,
    },
}

impl Piece {
    fn range(&self) -> (u64, u64) {
        match self {
            Piece::Zeros { offset, len }
            | Piece::Chunk { offset, len, .. }
            | Piece::Inline { offset, len, .. } => (*offset, *len),
        }
    }
}

fn to_manifest(l: &SnapshotLayout) -> Manifest {
    let b64 = base64::engine::general_purpose::STANDARD;
    let pieces = l
        .pieces
        .iter()
        .map(
            |LayoutPiece {
                 offset,
                 len,
                 target,
             }| {
                let (offset, len) = (*offset, *len);
                match target {
                    Extent::Zeros => Piece::Zeros { offset, len },
                    Extent::Chunk { id, skip } => Piece::Chunk {
                        offset,
                        len,
                        id: id.to_string(),
                        skip: *skip,
                    },
                    Extent::Inline(b) => Piece::Inline {
                        offset,
                        len,
                        data: b64.encode(b),
                    },
                }
            },
        )
        .collect();
    Manifest {
        format: FORMAT,
        volume: l.volume.clone(),
        snapshot: l.snapshot.clone(),
        size: l.size,
        block_size: l.block_size,
        extent_size: l.extent_size,
        created_ms: l.created_ms,
        pieces,
    }
}

/// A backup, as the command and the admin API take it.
#[derive(Serialize, Deserialize)]
pub struct BackupRequest {
    /// VOLUME@SNAPSHOT.
    pub source: String,
    /// s3://BUCKET/PREFIX.
    pub dest: String,
    /// The store.
    pub s3: S3Args,
}

/// What a backup did.
#[derive(Serialize, Deserialize)]
pub struct BackupReport {
    /// The snapshot's size.
    pub size: u64,
    /// Chunk bytes sent.
    pub sent_bytes: u64,
    /// Chunks sent.
    pub sent_chunks: usize,
    /// Chunks the target had already.
    pub present_chunks: usize,
    /// s3:// URL of the manifest.
    pub manifest: String,
}

/// A restore, as the command and the admin API take it.
#[derive(Serialize, Deserialize)]
pub struct RestoreRequest {
    /// s3://BUCKET/PREFIX.
    pub source: String,
    /// VOLUME@SNAPSHOT.
    pub snapshot: String,
    /// Name of the new volume.
    pub name: String,
    /// The store.
    pub s3: S3Args,
}

/// What a restore did.
#[derive(Serialize, Deserialize)]
pub struct RestoreReport {
    /// The new volume.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Chunk bytes fetched (and verified).
    pub fetched_bytes: u64,
    /// Chunk objects fetched.
    pub chunks: usize,
}

fn bar(len: u64, prefix: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix:>7} [{bar:20}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    ProgressBar::new(len)
        .with_style(style)
        .with_prefix(prefix.to_string())
}

/// An S3 error as a short line: the service's code and message when it answered (else its HTTP
/// status), the chain of causes (connection refused, timeout...) when it did not.
fn s3_err<E>(what: &str, e: SdkError<E, HttpResponse>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let Some(code) = e.code() {
        return match e.message() {
            Some(m) => anyhow!("{what}: {code}: {m}"),
            None => anyhow!("{what}: {code}"),
        };
    }
    if let Some(r) = e.raw_response() {
        return anyhow!("{what}: HTTP status {}", r.status().as_u16());
    }
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    anyhow!("{what}: {msg}")
}
async fn check_bucket(
    s3: &aws_sdk_s3::Client,
    loc: &Location,
    endpoint: &str,
) -> anyhow::Result<()> {
    let e = match s3.head_bucket().bucket(&loc.bucket).send().await {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    let b = &loc.bucket;
    match e.raw_response().map(|r| r.status().as_u16()) {
        Some(404) => bail!("bucket `{b}` does not exist at {endpoint}: create it first"),
        Some(401 | 403) => bail!(
            "{endpoint} refuses access to bucket `{b}`: check the keys (--access-key, --secret-key) and the bucket's permissions"
        ),
        _ => Err(s3_err(&format!("cannot reach bucket `{b}` at {endpoint}"), e)),
    }
}

/// The chunk ids stored under `loc` (one paginated listing).
async fn stored_chunks(
    s3: &aws_sdk_s3::Client,
    loc: &Location,
) -> anyhow::Result<HashSet<ChunkId>> {
    let prefix = loc.chunk_prefix();
    let mut out = HashSet::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(&loc.bucket)
        .prefix(&prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| s3_err(&format!("listing {}", loc.url(&prefix)), e))?;
        for o in page.contents() {
            if let Some(id) = o
                .key()
                .and_then(|k| k.strip_prefix(&prefix))
                .and_then(|h| h.parse::<ChunkId>().ok())
            {
                out.insert(id);
            }
        }
    }
    Ok(out)
}

/// `cairn volume backup VOLUME@SNAPSHOT s3://BUCKET/PREFIX`: here, or on the site running on
/// the data dir.
pub async fn backup(req: BackupRequest, target: &Target) -> anyhow::Result<()> {
    let (volume, snap) = crate::volume_cmd::split_snapshot(&req.source)?;
    let loc = Location::parse(&req.dest)?;
    let r: BackupReport = match backend(target).await? {
        Backend::Local(client) => {
            let vols = Volumes::new(client, VolumeConfig::default());
            let pb = bar(0, "backup");
            let r = run_backup(&vols, &req, &pb).await;
            pb.finish_and_clear();
            r?
        }
        Backend::Remote(admin) => {
            // The site runs it with its own controllers; its progress is polled.
            let pb = bar(0, "backup");
            let body = serde_json::to_value(&req)?;
            let r = crate::volume_jobs::follow(&admin, "/v1/volumes/backup", body, &pb).await;
            pb.finish_and_clear();
            r?
        }
    };
    println!(
        "Backed up {volume}@{snap} ({}) to {loc}: sent {} bytes in {} chunks, {} chunks already there",
        human(r.size),
        r.sent_bytes,
        r.sent_chunks,
        r.present_chunks
    );
    println!("Manifest: {}", r.manifest);
    Ok(())
}

/// Backs `req.source` of `vols` up, showing progress on `pb`.
pub async fn run_backup(
    vols: &Volumes,
    req: &BackupRequest,
    pb: &ProgressBar,
) -> anyhow::Result<BackupReport> {
    let (volume, snap) = crate::volume_cmd::split_snapshot(&req.source)?;
    let loc = Location::parse(&req.dest)?;
    let s3args = &req.s3;
    let layout = vols.snapshot_layout(volume, snap).await?;
    let s3 = s3args.client();
    check_bucket(&s3, &loc, &s3args.endpoint).await?;
    let present = stored_chunks(&s3, &loc).await?;
    let (have, todo): (Vec<ChunkId>, Vec<ChunkId>) = layout
        .chunks()
        .into_iter()
        .partition(|id| present.contains(id));

    pb.set_length(layout.size);
    // The position counts volume bytes done: zeros and chunks already there at once.
    let sent_len: u64 = {
        let todo: HashSet<&ChunkId> = todo.iter().collect();
        layout
            .pieces
            .iter()
            .filter(|p| matches!(&p.target, Extent::Chunk { id, .. } if todo.contains(id)))
            .map(|p| p.len)
            .sum()
    };
    pb.set_position(layout.size - sent_len);
    pb.set_message(format!("{} chunks skipped", have.len()));

    let sent_chunks = todo.len();
    let sent_bytes: u64 = futures::stream::iter(todo)
        .map(|id| {
            let (s3, loc) = (&s3, &loc);
            async move {
                let bytes = vols.read_chunk(id).await?;
                if ChunkId::of(&bytes) != id {
                    bail!("chunk {id} of {volume}@{snap} is corrupt on this site: run `cairn scrub` and back up again");
                }
                let n = bytes.len() as u64;
                let key = loc.chunk_key(&id);
                s3.put_object()
                    .bucket(&loc.bucket)
                    .key(&key)
                    .content_type("application/octet-stream")
                    .body(ByteStream::from(bytes))
                    .send()
                    .await
                    .map_err(|e| s3_err(&format!("PUT {}", loc.url(&key)), e))?;
                pb.inc(n);
                Ok::<u64, anyhow::Error>(n)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_fold(0u64, |acc, n| async move { Ok::<u64, anyhow::Error>(acc + n) })
        .await?;

    let manifest = serde_json::to_vec(&to_manifest(&layout))?;
    let key = loc.manifest_key(volume, snap);
    s3.put_object()
        .bucket(&loc.bucket)
        .key(&key)
        .content_type("application/json")
        .body(ByteStream::from(manifest))
        .send()
        .await
        .map_err(|e| s3_err(&format!("PUT {}", loc.url(&key)), e))?;
    Ok(BackupReport {
        size: layout.size,
        sent_bytes,
        sent_chunks,
        present_chunks: have.len(),
        manifest: loc.url(&key),
    })
}

/// Checks that the pieces cover `[0, size)` in order without gaps.
fn check_manifest(m: &Manifest, url: &str) -> anyhow::Result<()> {
    if m.format != FORMAT {
        bail!(
            "{url} has manifest format {}; this cairn reads format {FORMAT}: use a matching cairn version",
            m.format
        );
    }
    let mut at = 0u64;
    for p in &m.pieces {
        let (offset, len) = p.range();
        if offset != at || len == 0 {
            bail!("{url} is corrupt: its pieces do not cover the volume in order (at byte {at})");
        }
        at = offset
            .checked_add(len)
            .ok_or_else(|| anyhow!("{url} is corrupt: a piece passes the end"))?;
    }
    if at != m.size {
        bail!(
            "{url} is corrupt: its pieces cover {at} bytes of {}",
            m.size
        );
    }
    Ok(())
}

/// Consecutive pieces that read one chunk: fetched once.
struct Fetch {
    id: ChunkId,
    /// (offset in the volume, skip in the chunk, len).
    slices: Vec<(u64, u32, u64)>,
}

/// `cairn volume restore s3://BUCKET/PREFIX VOLUME@SNAPSHOT NEW`: here, or on the site running
/// on the data dir.
pub async fn restore(req: RestoreRequest, target: &Target) -> anyhow::Result<()> {
    let (volume, snap) = crate::volume_cmd::split_snapshot(&req.snapshot)?;
    let loc = Location::parse(&req.source)?;
    let r: RestoreReport = match backend(target).await? {
        Backend::Local(client) => {
            let vols = Volumes::new(client, VolumeConfig::default());
            let pb = bar(0, "restore");
            let r = run_restore(&vols, &req, &pb).await;
            pb.finish_and_clear();
            r?
        }
        Backend::Remote(admin) => {
            let pb = bar(0, "restore");
            let body = serde_json::to_value(&req)?;
            let r = crate::volume_jobs::follow(&admin, "/v1/volumes/restore", body, &pb).await;
            pb.finish_and_clear();
            r?
        }
    };
    println!(
        "Restored {volume}@{snap} from {loc} into volume {} ({}): fetched {} bytes in {} chunks, every chunk verified",
        r.name,
        human(r.size),
        r.fetched_bytes,
        r.chunks
    );
    Ok(())
}

/// Restores `req` into `vols`, showing progress on `pb`; on failure the new volume is deleted.
pub async fn run_restore(
    vols: &Volumes,
    req: &RestoreRequest,
    pb: &ProgressBar,
) -> anyhow::Result<RestoreReport> {
    let (volume, snap) = crate::volume_cmd::split_snapshot(&req.snapshot)?;
    let loc = Location::parse(&req.source)?;
    let new = req.name.as_str();
    let s3 = req.s3.client();
    let key = loc.manifest_key(volume, snap);
    let url = loc.url(&key);
    let body = match s3.get_object().bucket(&loc.bucket).key(&key).send().await {
        Ok(o) => o.body.collect().await.with_context(|| format!("GET {url}"))?,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => bail!(
            "there is no backup of {volume}@{snap} at {loc} ({url} does not exist): check the location and the snapshot name"
        ),
        Err(e) => return Err(s3_err(&format!("GET {url}"), e)),
    };
    let m: Manifest = serde_json::from_slice(&body.into_bytes())
        .with_context(|| format!("{url} is not a backup manifest"))?;
    check_manifest(&m, &url)?;

    // Decode everything before creating anything.
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut inline: Vec<(u64, Bytes)> = Vec::new();
    let mut fetches: Vec<Fetch> = Vec::new();
    let mut total = 0u64;
    for p in &m.pieces {
        match p {
            Piece::Zeros { .. } => {}
            Piece::Inline { offset, len, data } => {
                let b = b64
                    .decode(data)
                    .ok()
                    .filter(|b| b.len() as u64 == *len)
                    .ok_or_else(|| anyhow!("{url} is corrupt: bad inline bytes at {offset}"))?;
                inline.push((*offset, Bytes::from(b)));
                total += len;
            }
            Piece::Chunk {
                offset,
                len,
                id,
                skip,
            } => {
                let id: ChunkId = id.parse().map_err(|e| anyhow!("{url} is corrupt: {e}"))?;
                match fetches.last_mut() {
                    Some(f) if f.id == id => f.slices.push((*offset, *skip, *len)),
                    _ => fetches.push(Fetch {
                        id,
                        slices: vec![(*offset, *skip, *len)],
                    }),
                }
                total += len;
            }
        }
    }

    let r = vols
        .begin_restore(new, m.size, m.block_size, m.extent_size)
        .await?;
    pb.set_length(total);
    let chunks = fetches.len();
    let written = async {
        for (offset, b) in inline {
            let n = b.len() as u64;
            r.write(offset, b).await?;
            pb.inc(n);
        }
        let mut fetched = 0u64;
        let mut stream = std::pin::pin!(futures::stream::iter(fetches)
            .map(|f| {
                let (s3, loc) = (&s3, &loc);
                async move {
                    let bytes = fetch_chunk(s3, loc, &f.id).await?;
                    Ok::<_, anyhow::Error>((f, bytes))
                }
            })
            .buffered(IN_FLIGHT));
        let mut verified = 0usize;
        while let Some((f, bytes)) = stream.try_next().await? {
            fetched += bytes.len() as u64;
            verified += 1;
            pb.set_message(format!("{verified}/{chunks} chunks verified"));
            for (offset, skip, len) in f.slices {
                let (from, to) = (skip as usize, skip as u64 + len);
                if to > bytes.len() as u64 {
                    bail!(
                        "{url} is corrupt: it reads bytes {from}..{to} of {}, which has {}",
                        loc.url(&loc.chunk_key(&f.id)),
                        bytes.len()
                    );
                }
                r.write(offset, bytes.slice(from..to as usize)).await?;
                pb.inc(len);
            }
        }
        Ok::<_, anyhow::Error>(fetched)
    }
    .await;
    let fetched = match written {
        Ok(n) => n,
        Err(e) => {
            r.abort().await;
            return Err(e.context(format!(
                "restoring {volume}@{snap} from {loc} failed; volume {new} was removed again"
            )));
        }
    };
    let info = r.finish().await?;
    Ok(RestoreReport {
        name: info.name,
        size: info.size,
        fetched_bytes: fetched,
        chunks,
    })
}

/// One chunk object's bytes, checked against its name.
async fn fetch_chunk(
    s3: &aws_sdk_s3::Client,
    loc: &Location,
    id: &ChunkId,
) -> anyhow::Result<Bytes> {
    let key = loc.chunk_key(id);
    let url = loc.url(&key);
    let out = match s3.get_object().bucket(&loc.bucket).key(&key).send().await {
        Ok(o) => o,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
            bail!("chunk object {url} is missing: the backup is incomplete; back the snapshot up again")
        }
        Err(e) => return Err(s3_err(&format!("GET {url}"), e)),
    };
    let bytes = out
        .body
        .collect()
        .await
        .with_context(|| format!("GET {url}"))?
        .into_bytes();
    if ChunkId::of(&bytes) != *id {
        bail!(
            "chunk object {url} is corrupt: its bytes do not hash to its name; back the snapshot up again to a new prefix"
        );
    }
    Ok(bytes)
}
