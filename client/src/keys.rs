//! S3 access keys.

use cairn_core::manifest::{AccessKey, KeyGrant, KeyLimits};
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;

use crate::client::{now_ms, Client};
use crate::ClientError;

impl Client {
    /// An access key by id.
    pub async fn get_key(&self, id: &str) -> Result<Option<AccessKey>, ClientError> {
        let id = id.to_string();
        self.blocking(move |i| Ok(i.meta.get_key(&id)?)).await
    }

    /// Generates a new access key (id `CK` + 18 characters, 40-character secret).
    pub async fn create_key(&self, name: &str) -> Result<AccessKey, ClientError> {
        let (id, secret) = {
            let mut rng = rand::thread_rng();
            let id: String = (0..18)
                .map(|_| {
                    let c = rng.gen_range(0..36u8);
                    (if c < 10 { b'0' + c } else { b'A' + c - 10 }) as char
                })
                .collect();
            (id, Alphanumeric.sample_string(&mut rng, 40))
        };
        self.import_key(&format!("CK{id}"), &secret, name).await
    }

    /// Stores a key with a given id and secret.
    pub async fn import_key(
        &self,
        id: &str,
        secret: &str,
        name: &str,
    ) -> Result<AccessKey, ClientError> {
        let valid_id = (3..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_id {
            return Err(ClientError::InvalidArgument(
                "access key ids are 3-128 characters of A-Z, a-z, 0-9, '_' and '-'".into(),
            ));
        }
        if secret.len() < 8 || secret.len() > 128 || secret.chars().any(|c| c.is_control()) {
            return Err(ClientError::InvalidArgument(
                "secret keys are 8-128 printable characters".into(),
            ));
        }
        let key = AccessKey {
            id: id.to_string(),
            secret: secret.to_string(),
            name: name.to_string(),
            created_ms: now_ms(),
            grants: Default::default(),
            limits: KeyLimits::default(),
        };
        let k = key.clone();
        self.blocking(move |i| Ok(i.meta.put_key(&k)?)).await?;
        Ok(key)
    }

    /// Every access key, by id.
    pub async fn list_keys(&self) -> Result<Vec<AccessKey>, ClientError> {
        self.blocking(|i| Ok(i.meta.list_keys()?)).await
    }

    /// Sets what key `id` may do in `bucket` (a bucket it does not own): `Some` replaces the
    /// grant, `None` removes it. The bucket must exist when granting. Returns the updated key.
    pub async fn set_key_grant(
        &self,
        id: &str,
        bucket: &str,
        grant: Option<KeyGrant>,
    ) -> Result<AccessKey, ClientError> {
        if let Some(g) = &grant {
            if !(g.read || g.write || g.owner) {
                return Err(ClientError::InvalidArgument(
                    "a grant needs at least one of read, write or owner".into(),
                ));
            }
            self.head_bucket(bucket).await?;
        }
        let (id, bucket) = (id.to_string(), bucket.to_string());
        let missing = id.clone();
        self.blocking(move |i| {
            Ok(i.meta.update_key(&id, &mut |k| {
                match grant {
                    Some(g) => {
                        k.grants.insert(bucket.clone(), g);
                    }
                    None => {
                        k.grants.remove(&bucket);
                    }
                }
                Ok(())
            })?)
        })
        .await?
        .ok_or_else(|| {
            ClientError::InvalidArgument(format!(
                "access key `{missing}` does not exist: see `cairn key list`"
            ))
        })
    }

    /// Sets key `id`'s request and bandwidth limits to exactly `limits` (an empty one lifts
    /// them). Gateways see the change within a few seconds (they cache a key's record briefly).
    /// Returns the updated key.
    pub async fn set_key_limits(
        &self,
        id: &str,
        limits: KeyLimits,
    ) -> Result<AccessKey, ClientError> {
        if limits.requests_per_sec == Some(0) || limits.bytes_per_sec == Some(0) {
            return Err(ClientError::InvalidArgument(
                "a limit must be at least 1 per second: to stop a key, delete it".into(),
            ));
        }
        let id = id.to_string();
        let missing = id.clone();
        self.blocking(move |i| {
            Ok(i.meta.update_key(&id, &mut |k| {
                k.limits = limits;
                Ok(())
            })?)
        })
        .await?
        .ok_or_else(|| {
            ClientError::InvalidArgument(format!(
                "access key `{missing}` does not exist: see `cairn key list`"
            ))
        })
    }

    /// Deletes a key; `false` if it did not exist.
    pub async fn delete_key(&self, id: &str) -> Result<bool, ClientError> {
        let id = id.to_string();
        self.blocking(move |i| Ok(i.meta.delete_key(&id)?)).await
    }
}
