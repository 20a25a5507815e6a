//! Bucket operations and S3's bucket-name rules.

use cairn_core::manifest::{Bucket, Versioning};
use cairn_manifestserver::ManifestError;

use crate::client::{now_ms, Client};
use crate::{ClientError, UploadsQuery, VersionsQuery};

/// S3's rules for new bucket names: 3-63 characters of `a-z0-9.-`, starting and ending with a
/// letter or digit, no `..`, not shaped like an IP address.
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && !name.contains(".-")
        && !name.contains("-.")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

impl Client {
    /// Creates a bucket owned by `owner` (an access key id).
    pub async fn create_bucket(&self, name: &str, owner: &str) -> Result<Bucket, ClientError> {
        self.create_bucket_with(Bucket::new(name, owner, now_ms()))
            .await
    }

    /// Creates a bucket with its initial configuration (ACL, object lock) already set.
    pub async fn create_bucket_with(&self, mut bucket: Bucket) -> Result<Bucket, ClientError> {
        if !valid_bucket_name(&bucket.name) {
            return Err(ClientError::InvalidBucketName(bucket.name));
        }
        bucket.revision = Some(self.inner.hlc.tick());
        let b = bucket.clone();
        let owner = bucket.owner.clone();
        self.blocking(move |i| match i.meta.create_bucket(&b) {
            Ok(()) => Ok(()),
            Err(ManifestError::BucketExists { name, owner: o }) if o == owner => {
                Err(ClientError::BucketAlreadyOwnedByYou(name))
            }
            Err(e) => Err(e.into()),
        })
        .await?;
        Ok(bucket)
    }

    /// A bucket by name; `NoSuchBucket` if absent.
    pub async fn head_bucket(&self, name: &str) -> Result<Bucket, ClientError> {
        if let Some(found) = self.inner.meta.get_bucket_now(name) {
            return found?.ok_or_else(|| ClientError::NoSuchBucket(name.to_string()));
        }
        let n = name.to_string();
        self.blocking(move |i| i.meta.get_bucket(&n)?.ok_or(ClientError::NoSuchBucket(n)))
            .await
    }

    /// Every bucket, by name.
    pub async fn list_buckets(&self) -> Result<Vec<Bucket>, ClientError> {
        self.blocking(|i| Ok(i.meta.list_buckets()?)).await
    }

    /// Deletes a bucket that holds no objects, versions or delete markers. Multipart uploads
    /// in progress do not keep it: as in S3, they are aborted with it.
    pub async fn delete_bucket(&self, name: &str) -> Result<(), ClientError> {
        match self.delete_empty_bucket(name).await {
            Err(ClientError::BucketNotEmpty(_)) if self.holds_only_uploads(name).await? => {
                self.abort_all_uploads(name).await?;
                self.delete_empty_bucket(name).await
            }
            result => result,
        }
    }

    async fn delete_empty_bucket(&self, name: &str) -> Result<(), ClientError> {
        let n = name.to_string();
        self.blocking(move |i| Ok(i.meta.delete_bucket(&n)?)).await
    }

    /// Whether the bucket has no version of any key (it may have uploads in progress).
    async fn holds_only_uploads(&self, name: &str) -> Result<bool, ClientError> {
        let query = VersionsQuery {
            max_keys: 1,
            ..Default::default()
        };
        let page = self.list_versions(name, &query).await?;
        Ok(page.versions.is_empty() && page.common_prefixes.is_empty())
    }

    /// Aborts every multipart upload in progress in the bucket.
    async fn abort_all_uploads(&self, name: &str) -> Result<(), ClientError> {
        let query = UploadsQuery {
            max_uploads: 1000,
            ..Default::default()
        };
        loop {
            let page = self.list_uploads(name, &query).await?;
            if page.uploads.is_empty() {
                return Ok(());
            }
            for u in page.uploads {
                match self.abort_multipart(name, &u.key, &u.upload_id).await {
                    // Completed or aborted meanwhile.
                    Ok(()) | Err(ClientError::NoSuchUpload(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Sets Enabled or Suspended (a bucket cannot go back to never-versioned).
    pub async fn set_versioning(&self, name: &str, state: Versioning) -> Result<(), ClientError> {
        if state == Versioning::Unversioned {
            return Err(ClientError::InvalidArgument(
                "versioning can be Enabled or Suspended, not turned off".into(),
            ));
        }
        self.update_bucket(name, move |b| {
            if b.object_lock.is_some() && state == Versioning::Suspended {
                return Err(ClientError::InvalidBucketState(
                    "versioning cannot be suspended on a bucket with object lock".into(),
                ));
            }
            b.versioning = state;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Changes a bucket's configuration: `change` sees the stored record under the store's
    /// write lock and may refuse. Returns the new record, with a new revision (what linked
    /// sites compare).
    pub async fn update_bucket(
        &self,
        name: &str,
        change: impl FnOnce(&mut Bucket) -> Result<(), ClientError> + Send + 'static,
    ) -> Result<Bucket, ClientError> {
        let n = name.to_string();
        self.blocking(move |i| {
            let mut change = crate::objects::once(change);
            let mut revised = |b: &mut Bucket| {
                change(b)?;
                b.revision = Some(i.hlc.tick_after(b.revision));
                Ok(())
            };
            Ok(i.meta.update_bucket(&n, &mut revised)?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::valid_bucket_name;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "my-bucket.2", "a".repeat(63).as_str(), "1bucket"] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "ABC",
            "-abc",
            "abc-",
            "a..b",
            "a_b",
            "192.168.1.1",
            &"a".repeat(64),
            "a.-b",
            "bücket",
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }
}
