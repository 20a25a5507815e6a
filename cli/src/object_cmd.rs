//! `cairn object`: looking at one object's versions as the site keeps them.

use clap::Subcommand;
use http::Method;
use serde::{Deserialize, Serialize};

use crate::ops::{backend, fmt_time, human, Backend};
use crate::Target;

/// `cairn object ...`
#[derive(Subcommand)]
pub enum ObjectCommand {
    /// List a key's current version and its siblings: versions written at two linked sites at
    /// once over the same version. The newest is current at every site; the others stay
    /// readable by version id (S3's ListObjectVersions lists them too).
    Siblings {
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Keep an object's data at this site: on a site that receives a link as metadata only,
    /// every chunk of the key's current version missing here is fetched from the linked site
    /// now, and none is evicted from the fetch cache until `cairn object unpin`. Pinning again
    /// after the key changed keeps the new version's data too. On a multi-node site, give
    /// the admin endpoint of the node that runs the metadata-only link (it keeps the cache).
    Pin {
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Let the fetch cache evict an object pinned with `cairn object pin` again (least
    /// recently used first, once the cache is over its size).
    Unpin {
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
        #[command(flatten)]
        target: Target,
    },
}

/// What `/v1/unpin` answers.
#[derive(Serialize, Deserialize)]
struct Unpinned {
    unpinned: u64,
}

/// Which key `/v1/siblings` is asked about.
#[derive(Serialize, Deserialize)]
pub struct SiblingsRequest {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
}

/// A version as `cairn object siblings` shows it.
#[derive(Serialize, Deserialize)]
pub struct SiblingInfo {
    /// Version id as S3 shows it.
    pub version_id: String,
    /// The site that wrote it (hex).
    pub site: String,
    /// Written at, unix ms.
    pub mtime_ms: u64,
    /// Size in bytes.
    pub size: u64,
    /// A delete marker.
    pub delete_marker: bool,
}

/// The siblings of `bucket/key` as the admin API answers them, newest (current) first.
pub async fn siblings_of(
    client: &cairn_client::Client,
    bucket: &str,
    key: &str,
) -> Result<Vec<SiblingInfo>, cairn_client::ClientError> {
    Ok(client
        .siblings(bucket, key)
        .await?
        .into_iter()
        .map(|v| SiblingInfo {
            version_id: v.version.to_string(),
            site: format!("{:04x}", v.version.site()),
            mtime_ms: v.mtime_ms,
            size: v.size,
            delete_marker: v.delete_marker,
        })
        .collect())
}

/// Runs a `cairn object` command.
pub async fn run(cmd: ObjectCommand) -> anyhow::Result<()> {
    match cmd {
        ObjectCommand::Pin {
            bucket,
            key,
            target,
        } => {
            let p: cairn_client::PinReport = match backend(&target).await? {
                Backend::Local(c) => c.pin_object(&bucket, &key).await?,
                Backend::Remote(a) => {
                    let body = serde_json::to_value(SiblingsRequest {
                        bucket: bucket.clone(),
                        key: key.clone(),
                    })?;
                    a.call(Method::POST, "/v1/pin", Some(body)).await?
                }
            };
            println!(
                "{bucket}/{key} is kept here: {} chunks, {} fetched from the linked site now, \
                 {} newly pinned",
                p.chunks, p.fetched, p.pinned
            );
            Ok(())
        }
        ObjectCommand::Unpin {
            bucket,
            key,
            target,
        } => {
            let n = match backend(&target).await? {
                Backend::Local(c) => c.unpin_object(&bucket, &key).await?,
                Backend::Remote(a) => {
                    let body = serde_json::to_value(SiblingsRequest {
                        bucket: bucket.clone(),
                        key: key.clone(),
                    })?;
                    let u: Unpinned = a.call(Method::POST, "/v1/unpin", Some(body)).await?;
                    u.unpinned
                }
            };
            println!("{bucket}/{key}: {n} chunks may be evicted from the fetch cache again");
            Ok(())
        }
        ObjectCommand::Siblings {
            bucket,
            key,
            target,
        } => {
            let list = match backend(&target).await? {
                Backend::Local(c) => siblings_of(&c, &bucket, &key).await?,
                Backend::Remote(a) => {
                    let body = serde_json::to_value(SiblingsRequest {
                        bucket: bucket.clone(),
                        key: key.clone(),
                    })?;
                    a.call(Method::POST, "/v1/siblings", Some(body)).await?
                }
            };
            match list.len() {
                0 => anyhow::bail!("{bucket}/{key} has no version"),
                1 => println!("{bucket}/{key} has no siblings"),
                n => println!("{bucket}/{key}: the current version and {} siblings", n - 1),
            }
            for (i, v) in list.iter().enumerate() {
                println!(
                    "  {} {}  site {}  {}  {}{}",
                    if i == 0 { "current" } else { "sibling" },
                    v.version_id,
                    v.site,
                    fmt_time(v.mtime_ms),
                    human(v.size),
                    if v.delete_marker {
                        "  (delete marker)"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
    }
}
