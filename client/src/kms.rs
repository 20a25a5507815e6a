//! The site's built-in key manager for SSE-KMS (`x-amz-server-side-encryption: aws:kms`), so
//! the whole S3 API works without an external KMS.
//!
//! A KMS key is 32 random bytes of key material, kept sealed under the site's master keys (the
//! same seal as SSE-S3 chunks: it opens only where the master keys are), with its id, alias,
//! description, creation time and state, as one small object in the reserved bucket
//! [`KMS_BUCKET`] (so a multi-node site replicates it like any metadata, and the master keys
//! never enter the metadata store). Each KMS key is its own encryption domain: objects under
//! one key deduplicate with each other and with nothing else. A disabled key neither seals nor
//! opens (S3's `KMS.DisabledException`), and enabling it again brings its objects back.
//!
//! The seam for an external KMS is [`KmsKey::material`]'s unwrapping: a provider that returns
//! the material (or performs the seal) given the key id could stand where the site's sealer is.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::client::{now_ms, Client};
use crate::crypt::Sealer;
use crate::{ClientError, Content, ListQuery, VersionManifest, VersionSel};

/// The reserved bucket holding the KMS keys.
pub const KMS_BUCKET: &str = "cairn-kms";
/// Owner of [`KMS_BUCKET`] (no access key has this id, so no S3 client reaches it).
const KMS_OWNER: &str = "cairn-kms";
/// Alias of the key SSE-KMS uses when a request names none (S3's AWS-managed key).
pub const DEFAULT_ALIAS: &str = "aws/s3";
/// How long an opened key is used without reading its record again (so a disable takes effect
/// on every gateway within this time).
const CACHE_FOR: Duration = Duration::from_secs(5);
/// Most KMS keys listed.
const MAX_KEYS: usize = 10_000;

/// One KMS key, as stored (the material sealed).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KmsKey {
    /// Its id (a UUID).
    pub id: String,
    /// Its alias without the `alias/` prefix, if it has one.
    pub alias: Option<String>,
    /// What it is for.
    pub description: String,
    /// Creation time, unix ms.
    pub created_ms: u64,
    /// Whether it may seal and open.
    pub enabled: bool,
    /// The key material, sealed under the site's master keys, base64.
    material: String,
}

impl KmsKey {
    /// The key's ARN as S3 shows it in `x-amz-server-side-encryption-aws-kms-key-id`.
    pub fn arn(&self, region: &str) -> String {
        format!("arn:aws:kms:{region}:000000000000:key/{}", self.id)
    }
}

/// Opened keys by id, with when they were read.
#[derive(Default)]
pub(crate) struct KmsCache {
    opened: parking_lot::Mutex<HashMap<String, (Instant, KmsKey, Sealer)>>,
}

/// A key id, alias or ARN as requests name keys: `ID`, `alias/NAME`,
/// `arn:aws:kms:REGION:ACCOUNT:key/ID` or `arn:…:alias/NAME`.
enum KeyName<'a> {
    Id(&'a str),
    Alias(&'a str),
}

fn parse_name(name: &str) -> KeyName<'_> {
    let tail = if name.starts_with("arn:") {
        name.splitn(6, ':').nth(5).unwrap_or("")
    } else {
        name
    };
    match tail.strip_prefix("alias/") {
        Some(a) => KeyName::Alias(a),
        None => KeyName::Id(tail.strip_prefix("key/").unwrap_or(tail)),
    }
}

/// The error a disabled key gets (S3: 400 `KMS.DisabledException`).
fn disabled(id: &str) -> ClientError {
    ClientError::KmsDisabled(format!(
        "KMS key {id} is disabled: enable it with `cairn kms enable {id}` to use it"
    ))
}

fn not_found(name: &str) -> ClientError {
    ClientError::KmsNotFound(format!(
        "Invalid keyId {name}: no such KMS key on this site (see `cairn kms list`)"
    ))
}

impl Client {
    /// Creates a KMS key, with an alias (unique) and a description.
    pub async fn kms_create(
        &self,
        alias: Option<&str>,
        description: &str,
    ) -> Result<KmsKey, ClientError> {
        let alias = alias.map(|a| a.strip_prefix("alias/").unwrap_or(a).to_string());
        if let Some(a) = &alias {
            let valid = !a.is_empty()
                && a.len() <= 250
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c));
            if !valid {
                return Err(ClientError::InvalidArgument(format!(
                    "alias `{a}`: use 1-250 letters, digits, '/', '_' and '-'"
                )));
            }
            if self.kms_find(&KeyName::Alias(a)).await?.is_some() {
                return Err(ClientError::InvalidArgument(format!(
                    "alias `{a}` is taken: choose another"
                )));
            }
        }
        let material: [u8; 32] = rand::random();
        let site = self.site_sealer()?;
        let id = uuid();
        let key = KmsKey {
            id: id.clone(),
            alias,
            description: description.to_string(),
            created_ms: now_ms(),
            enabled: true,
            material: {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(site.seal(&material))
            },
        };
        self.kms_store(&key).await?;
        Ok(key)
    }

    /// Every KMS key, oldest first.
    pub async fn kms_list(&self) -> Result<Vec<KmsKey>, ClientError> {
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let q = ListQuery {
                prefix: "keys/".into(),
                start_after: after.take(),
                max_keys: 1000,
                ..ListQuery::default()
            };
            let page = match self.list_objects(KMS_BUCKET, &q).await {
                Ok(p) => p,
                Err(ClientError::NoSuchBucket(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            for m in &page.objects {
                // Records are small: their bytes are in the listing.
                let key = match &m.content {
                    Content::Inline(b) => serde_json::from_slice(b).map_err(|e| {
                        ClientError::Corrupt(format!("KMS key record {}: {e}", m.key))
                    })?,
                    _ => match self.kms_read(&m.key).await? {
                        Some(k) => k,
                        None => continue,
                    },
                };
                keys.push(key);
            }
            after = page.objects.last().map(|m| m.key.clone());
            if !page.is_truncated || after.is_none() || keys.len() >= MAX_KEYS {
                break;
            }
        }
        keys.sort_by_key(|k| k.created_ms);
        Ok(keys)
    }

    /// Enables or disables a key (named by id, alias or ARN).
    pub async fn kms_set_enabled(&self, name: &str, enabled: bool) -> Result<KmsKey, ClientError> {
        let mut key = self
            .kms_find(&parse_name(name))
            .await?
            .ok_or_else(|| not_found(name))?;
        key.enabled = enabled;
        self.kms_store(&key).await?;
        self.inner.kms.opened.lock().remove(&key.id);
        Ok(key)
    }

    /// The key a request names (`None`: the site's default key, made on first use), enabled,
    /// with the sealer of its domain.
    pub(crate) async fn kms_open(
        &self,
        name: Option<&str>,
    ) -> Result<(KmsKey, Sealer), ClientError> {
        // A key opened lately, named by id or by alias (the default key by its alias): an
        // SSE-KMS write that names no key, or an alias, would otherwise list every key.
        let wanted = name.map_or(KeyName::Alias(DEFAULT_ALIAS), parse_name);
        let cached = self
            .inner
            .kms
            .opened
            .lock()
            .values()
            .find(|(at, k, _)| {
                at.elapsed() < CACHE_FOR
                    && match &wanted {
                        KeyName::Id(id) => k.id == *id,
                        KeyName::Alias(a) => k.alias.as_deref() == Some(*a),
                    }
            })
            .map(|(_, k, s)| (k.clone(), s.clone()));
        if let Some((k, s)) = cached {
            return if k.enabled {
                Ok((k, s))
            } else {
                Err(disabled(&k.id))
            };
        }
        let key = match name {
            Some(n) => self
                .kms_find(&parse_name(n))
                .await?
                .ok_or_else(|| not_found(n))?,
            None => match self.kms_find(&KeyName::Alias(DEFAULT_ALIAS)).await? {
                Some(k) => k,
                None => {
                    self.kms_create(Some(DEFAULT_ALIAS), "default key for SSE-KMS (aws/s3)")
                        .await?
                }
            },
        };
        let sealer = {
            use base64::Engine;
            let sealed = base64::engine::general_purpose::STANDARD
                .decode(&key.material)
                .map_err(|_| ClientError::Corrupt(format!("KMS key {}: bad material", key.id)))?;
            let material = self.site_sealer()?.open(&sealed)?;
            let material: [u8; 32] = material[..]
                .try_into()
                .map_err(|_| ClientError::Corrupt(format!("KMS key {}: bad material", key.id)))?;
            Sealer::kms(&material)
        };
        self.inner.kms.opened.lock().insert(
            key.id.clone(),
            (Instant::now(), key.clone(), sealer.clone()),
        );
        if !key.enabled {
            return Err(disabled(&key.id));
        }
        Ok((key, sealer))
    }

    async fn kms_find(&self, name: &KeyName<'_>) -> Result<Option<KmsKey>, ClientError> {
        match name {
            KeyName::Id(id) => self.kms_read(&format!("keys/{id}")).await,
            KeyName::Alias(a) => Ok(self
                .kms_list()
                .await?
                .into_iter()
                .find(|k| k.alias.as_deref() == Some(a))),
        }
    }

    /// A key's record (read without `get_object`, whose decryption could open a KMS key).
    async fn kms_read(&self, object: &str) -> Result<Option<KmsKey>, ClientError> {
        let read = match self
            .read_object(KMS_BUCKET, object, &VersionSel::Current)
            .await
        {
            Ok(r) => r,
            Err(ClientError::NoSuchBucket(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let m = match read.manifest() {
            Ok(m) => m,
            Err(ClientError::NoSuchKey { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        let mut body = self.read_range(&m.content, 0, m.size, None);
        while let Some(piece) = body.next().await {
            bytes.extend_from_slice(&piece?);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::Corrupt(format!("KMS key record {object}: {e}")))
    }

    /// Writes a key's record: a plain inline object made here (not through `put_object`,
    /// whose encryption could open a KMS key in turn).
    async fn kms_store(&self, key: &KmsKey) -> Result<(), ClientError> {
        let body = Bytes::from(serde_json::to_vec(key).expect("serializable"));
        let bucket = match self.head_bucket(KMS_BUCKET).await {
            Ok(b) => b,
            Err(ClientError::NoSuchBucket(_)) => {
                match self.create_bucket(KMS_BUCKET, KMS_OWNER).await {
                    Ok(b) => b,
                    Err(ClientError::BucketAlreadyOwnedByYou(_)) => {
                        self.head_bucket(KMS_BUCKET).await?
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if bucket.owner != KMS_OWNER {
            return Err(ClientError::Storage(format!(
                "bucket `{KMS_BUCKET}` belongs to `{}`, not to the key manager: rename it",
                bucket.owner
            )));
        }
        let mut m = VersionManifest::delete_marker(
            KMS_BUCKET,
            &format!("keys/{}", key.id),
            cairn_core::VersionId::MIN,
            None,
            false,
            now_ms(),
        );
        m.delete_marker = false;
        m.size = body.len() as u64;
        m.etag = hex::encode(<md5::Md5 as md5::Digest>::digest(&body));
        m.content = Content::Inline(body);
        m.owner = KMS_OWNER.to_string();
        self.commit_version(&bucket, m).await.map(|_| ())
    }
}

/// A random UUID (version 4) as text.
fn uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_parse_as_requests_give_them() {
        let id = |n| match parse_name(n) {
            KeyName::Id(i) => i.to_string(),
            KeyName::Alias(a) => format!("alias:{a}"),
        };
        assert_eq!(id("1234"), "1234");
        assert_eq!(id("arn:aws:kms:us-east-1:000000000000:key/1234"), "1234");
        assert_eq!(id("alias/aws/s3"), "alias:aws/s3");
        assert_eq!(id("arn:aws:kms:eu-west-1:1:alias/mine"), "alias:mine");
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
