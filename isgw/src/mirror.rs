//! Send-only links whose remote is any S3 endpoint: each linked bucket is mirrored to the
//! bucket of the same name there (created if missing), as ordinary objects.
//!
//! The link reads this site's change logs like any link (consumer `link/s3/NAME`) and, for every
//! key a batch touches, makes the remote object equal to this site's current one: the current
//! version's bytes, content type and user metadata are PUT (multipart above
//! [`SINGLE_PUT_MAX`], in [`PART_SIZE`] parts read as ranges), and a key without a current
//! object (deleted, or only a delete marker left) is DELETEd there. Versions and their ids do
//! not travel: a plain S3 store names its own. The initial copy walks each bucket's current
//! objects. Progress is the link's state file, as for other links, so a restart resumes at the
//! batch it was in (PUTting a key again is harmless).

use std::collections::BTreeSet;

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use bytes::BytesMut;
use cairn_client::{Client, ClientError, ListQuery, RangeSpec, VersionSel};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::config::{LinkConfig, Progress};
use crate::error::{LinkError, LinkResult};
use crate::proto::MAX_VERSIONS;
use crate::ship::Traffic;
use crate::site::{LocalSite, Source};

/// Objects up to this size are sent in one PUT.
pub const SINGLE_PUT_MAX: u64 = 64 << 20;
/// Part size of larger objects.
pub const PART_SIZE: u64 = 16 << 20;

/// Where an S3 mirror link writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Target {
    /// The endpoint, e.g. `https://s3.example.com`.
    pub endpoint: String,
    /// Region to sign for.
    pub region: String,
    /// Access key id at the endpoint.
    pub access_key_id: String,
    /// Its secret (the links file is readable by its owner only).
    pub secret_access_key: String,
}

impl S3Target {
    /// A client for any S3 store (volume backups use it too): path-style, retried, bounded
    /// in time, and sending checksums only where S3 requires them, which every implementation
    /// takes (what is stored is checked by its BLAKE3 name or its ETag anyway).
    pub fn client(&self) -> aws_sdk_s3::Client {
        let creds = Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            None,
            None,
            "cairn",
        );
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(creds)
            .force_path_style(true)
            .retry_config(RetryConfig::standard().with_max_attempts(4))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(300))
                    .connect_timeout(Duration::from_secs(10))
                    .build(),
            )
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

/// The consumer name of mirror link `name`.
pub fn holder(name: &str) -> String {
    format!("link/s3/{name}")
}

fn remote_err(what: &str, e: impl ProvideErrorMetadata + std::fmt::Display) -> LinkError {
    LinkError::Refused(format!(
        "S3 endpoint: {what}: {}",
        e.message().map_or_else(|| e.to_string(), str::to_string)
    ))
}

/// One mirror link's work against its endpoint.
pub(crate) struct Mirror<'a> {
    client: &'a Client,
    local: LocalSite,
    s3: aws_sdk_s3::Client,
    traffic: &'a Traffic,
    /// Buckets known to exist at the endpoint in this session.
    made: BTreeSet<String>,
}

impl<'a> Mirror<'a> {
    pub(crate) fn new(
        client: &'a Client,
        cfg: &LinkConfig,
        target: &S3Target,
        traffic: &'a Traffic,
    ) -> Self {
        Mirror {
            client,
            local: LocalSite::new(client.clone(), holder(&cfg.name)),
            s3: target.client(),
            traffic,
            made: BTreeSet::new(),
        }
    }

    /// Checks the endpoint answers and the credentials are good.
    pub(crate) async fn hello(&self) -> LinkResult<()> {
        self.s3
            .list_buckets()
            .send()
            .await
            .map(|_| ())
            .map_err(|e| remote_err("listing buckets", e))
    }

    /// Mirrors one batch, if there is one; returns whether there was.
    pub(crate) async fn step(&mut self, cfg: &LinkConfig, p: &mut Progress) -> LinkResult<bool> {
        if !p.started {
            crate::runner::begin(&self.local, cfg, p).await?;
            return Ok(true);
        }
        if let Some(bucket) = p.initial.first().cloned() {
            let q = ListQuery {
                start_after: p.initial_after.as_ref().map(|(k, _)| k.clone()),
                max_keys: MAX_VERSIONS,
                ..Default::default()
            };
            let page = match self.client.list_objects(&bucket, &q).await {
                Ok(page) => page,
                Err(ClientError::NoSuchBucket(_)) => Default::default(),
                Err(e) => return Err(e.into()),
            };
            for m in &page.objects {
                self.sync_key(&bucket, &m.key).await?;
            }
            match (page.is_truncated, page.objects.last()) {
                (true, Some(last)) => p.initial_after = Some((last.key.clone(), None)),
                _ => {
                    p.initial.remove(0);
                    p.initial_after = None;
                }
            }
            return Ok(true);
        }
        if !cfg.mode.continuous() {
            return Ok(false);
        }
        let mut worked = false;
        for (log, cursor) in p.cursors.clone() {
            let changes = self.local.changes(log, cursor, MAX_VERSIONS).await?;
            let Some(last) = changes.last() else {
                continue;
            };
            let last_seq = last.seq;
            // Each key once per batch, in the order first touched.
            let mut seen = BTreeSet::new();
            for c in changes.iter().filter(|c| cfg.carries(&c.bucket)) {
                if seen.insert((c.bucket.clone(), c.key.clone())) {
                    self.sync_key(&c.bucket, &c.key).await?;
                }
            }
            p.cursors.insert(log, last_seq);
            worked = true;
        }
        Ok(worked)
    }

    /// Makes the endpoint's `bucket/key` what this site's current object is (or removes it).
    async fn sync_key(&mut self, bucket: &str, key: &str) -> LinkResult<()> {
        self.make_bucket(bucket).await?;
        let got = match self
            .client
            .get_object(bucket, key, &VersionSel::Current, None)
            .await
        {
            Ok(got) => got,
            Err(ClientError::NoSuchKey { .. } | ClientError::NoSuchBucket(_)) => {
                self.s3
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| remote_err(&format!("deleting {bucket}/{key}"), e))?;
                Traffic::add(&self.traffic.removals, 1);
                return Ok(());
            }
            // An object stored with a customer's key (SSE-C) cannot be read without it: it
            // is not mirrored, and the rest of the bucket is.
            Err(ClientError::InvalidRequest(why)) => {
                let head = self
                    .client
                    .head_object(bucket, key, &VersionSel::Current)
                    .await?;
                if matches!(
                    head.manifest.encryption,
                    Some(cairn_client::Encryption::Customer { .. })
                ) {
                    tracing::warn!(
                        bucket,
                        key,
                        "not mirrored: the object is encrypted with a customer-provided key"
                    );
                    return Ok(());
                }
                return Err(ClientError::InvalidRequest(why).into());
            }
            Err(e) => return Err(e.into()),
        };
        let m = got.manifest.clone();
        // What is encrypted at rest here is asked to be encrypted at rest there.
        let sse = m
            .encryption
            .is_some()
            .then_some(ServerSideEncryption::Aes256);
        if m.size <= SINGLE_PUT_MAX {
            let mut body = BytesMut::with_capacity(m.size as usize);
            let mut stream = got.body;
            while let Some(piece) = stream.next().await {
                body.extend_from_slice(&piece?);
            }
            self.traffic.limit.acquire(m.size).await;
            let mut put = self
                .s3
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(SdkBody::from(body.freeze()))
                .set_content_type(m.headers.content_type.clone())
                .set_cache_control(m.headers.cache_control.clone())
                .set_content_disposition(m.headers.content_disposition.clone())
                .set_content_encoding(m.headers.content_encoding.clone())
                .set_server_side_encryption(sse);
            for (k, v) in &m.user_metadata {
                put = put.metadata(k, v);
            }
            put.send()
                .await
                .map_err(|e| remote_err(&format!("PUT {bucket}/{key}"), e))?;
        } else {
            drop(got);
            self.put_multipart(bucket, key, &m).await?;
        }
        Traffic::add(&self.traffic.versions, 1);
        Traffic::add(&self.traffic.bytes, m.size);
        Ok(())
    }

    /// A large object in [`PART_SIZE`] parts, each read as a range of the version.
    async fn put_multipart(
        &self,
        bucket: &str,
        key: &str,
        m: &cairn_client::VersionManifest,
    ) -> LinkResult<()> {
        let what = format!("multipart upload of {bucket}/{key}");
        let mut create = self
            .s3
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_content_type(m.headers.content_type.clone())
            .set_server_side_encryption(
                m.encryption
                    .is_some()
                    .then_some(ServerSideEncryption::Aes256),
            );
        for (k, v) in &m.user_metadata {
            create = create.metadata(k, v);
        }
        let upload = create.send().await.map_err(|e| remote_err(&what, e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_string();
        let result = async {
            let mut parts = Vec::new();
            let mut start = 0u64;
            let mut number = 1;
            while start < m.size {
                let end = (start + PART_SIZE).min(m.size);
                let version = VersionSel::Id(m.version);
                let got = self
                    .client
                    .get_object(
                        bucket,
                        key,
                        &version,
                        Some(RangeSpec::FromTo(start, Some(end - 1))),
                    )
                    .await?;
                let mut body = BytesMut::with_capacity((end - start) as usize);
                let mut stream = got.body;
                while let Some(piece) = stream.next().await {
                    body.extend_from_slice(&piece?);
                }
                self.traffic.limit.acquire(end - start).await;
                let part = self
                    .s3
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(SdkBody::from(body.freeze()))
                    .send()
                    .await
                    .map_err(|e| remote_err(&what, e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                );
                start = end;
                number += 1;
            }
            self.s3
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| remote_err(&what, e))?;
            Ok::<(), LinkError>(())
        }
        .await;
        if result.is_err() {
            let _ = self
                .s3
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    /// Creates `bucket` at the endpoint unless it is known to exist.
    async fn make_bucket(&mut self, bucket: &str) -> LinkResult<()> {
        if self.made.contains(bucket) {
            return Ok(());
        }
        if self.s3.head_bucket().bucket(bucket).send().await.is_err() {
            if let Err(e) = self.s3.create_bucket().bucket(bucket).send().await {
                let code = e.code().unwrap_or_default();
                if code != "BucketAlreadyOwnedByYou" && code != "BucketAlreadyExists" {
                    return Err(remote_err(&format!("creating bucket {bucket}"), e));
                }
            }
        }
        self.made.insert(bucket.to_string());
        Ok(())
    }
}
