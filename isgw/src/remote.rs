//! The remote end of a link: the link service of another site, called over QUIC.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cairn_client::{Bucket, Change, ChunkId, ChunkRef, StoredChunk, VersionId, VersionManifest};
use cairn_net::{Peer, SendBody};

use crate::error::{LinkError, LinkResult};
use crate::proto::{
    BucketDeleted, LinkRequest, LinkResponse, Shipped, VersionKey, MAX_BODY, PROTOCOL,
};
use crate::site::{Applied, Sink, Source};

/// Another site's link service, reached through `peer`; `site` is this site's id (the remote
/// keeps its change logs for it under that name).
#[derive(Clone)]
pub struct RemoteSite {
    peer: Peer,
    site: u16,
}

fn unexpected(what: &str, r: &LinkResponse) -> LinkError {
    LinkError::Protocol(format!("{what} was answered with {r:?}"))
}

impl RemoteSite {
    /// The link service at `peer`, called by site `site`.
    pub fn new(peer: Peer, site: u16) -> RemoteSite {
        RemoteSite { peer, site }
    }

    async fn call(&self, req: LinkRequest) -> LinkResult<LinkResponse> {
        Ok(self.peer.call(&req).await?)
    }

    /// Introduces this site for link `link`; returns the remote's site id. Refused when both
    /// sites have the same id.
    pub async fn hello(&self, link: &str) -> LinkResult<u16> {
        match self
            .call(LinkRequest::Hello {
                protocol: PROTOCOL,
                site: self.site,
                link: link.to_string(),
            })
            .await?
        {
            LinkResponse::Hello { protocol, site } => {
                if protocol != PROTOCOL {
                    return Err(LinkError::Refused(format!(
                        "the remote site speaks link protocol {protocol}, this one {PROTOCOL}: \
                         run the same Cairn release at both sites"
                    )));
                }
                Ok(site)
            }
            r => Err(unexpected("hello", &r)),
        }
    }
}

#[async_trait]
impl Source for RemoteSite {
    async fn logs(&self) -> LinkResult<Vec<(u64, u64)>> {
        match self.call(LinkRequest::Logs { reader: self.site }).await? {
            LinkResponse::Logs { logs } => Ok(logs),
            r => Err(unexpected("logs", &r)),
        }
    }

    async fn log_ends(&self) -> LinkResult<Vec<(u64, u64)>> {
        match self.call(LinkRequest::LogEnds).await? {
            LinkResponse::LogEnds { logs } => Ok(logs),
            r => Err(unexpected("log_ends", &r)),
        }
    }

    async fn changes(&self, log: u64, after: u64, max: usize) -> LinkResult<Vec<Change>> {
        match self
            .call(LinkRequest::Changes {
                reader: self.site,
                log,
                after,
                max: max as u32,
            })
            .await?
        {
            LinkResponse::Changes { changes } => Ok(changes),
            r => Err(unexpected("changes", &r)),
        }
    }

    async fn versions(&self, keys: Vec<VersionKey>) -> LinkResult<Vec<Option<VersionManifest>>> {
        match self.call(LinkRequest::Versions { keys }).await? {
            LinkResponse::Versions { versions } => Ok(versions),
            r => Err(unexpected("versions", &r)),
        }
    }

    async fn list_versions(
        &self,
        bucket: &str,
        after: Option<(String, Option<VersionId>)>,
        max: usize,
    ) -> LinkResult<(Vec<VersionManifest>, bool)> {
        match self
            .call(LinkRequest::ListVersions {
                bucket: bucket.to_string(),
                after,
                max: max as u32,
            })
            .await?
        {
            LinkResponse::ListVersions {
                versions,
                truncated,
            } => Ok((versions, truncated)),
            r => Err(unexpected("list versions", &r)),
        }
    }

    async fn buckets(&self) -> LinkResult<Vec<Bucket>> {
        match self.call(LinkRequest::BucketList).await? {
            LinkResponse::BucketList { buckets } => Ok(buckets),
            r => Err(unexpected("bucket list", &r)),
        }
    }

    async fn stored(&self, ids: Vec<ChunkId>) -> LinkResult<Vec<Option<StoredChunk>>> {
        let mut out: Vec<Option<StoredChunk>> = Vec::with_capacity(ids.len());
        while out.len() < ids.len() {
            let asked = ids[out.len()..].to_vec();
            let (resp, mut body) = self
                .peer
                .call_with_body(&LinkRequest::Fetch { ids: asked.clone() }, None)
                .await?;
            let LinkResponse::Fetch { chunks } = resp else {
                return Err(unexpected("fetch", &resp));
            };
            if chunks.is_empty() || chunks.len() > asked.len() {
                return Err(LinkError::Protocol(format!(
                    "fetch of {} chunks answered for {}",
                    asked.len(),
                    chunks.len()
                )));
            }
            let total: u64 = chunks.iter().flatten().map(|c| u64::from(c.2)).sum();
            if total > MAX_BODY {
                return Err(LinkError::Protocol(format!(
                    "fetch announced {total} bytes, more than {MAX_BODY}"
                )));
            }
            let bytes = Bytes::from(body.read_to_end(total as usize).await?);
            if bytes.len() as u64 != total {
                return Err(LinkError::Protocol(format!(
                    "fetch announced {total} bytes and sent {}",
                    bytes.len()
                )));
            }
            let mut at = 0usize;
            for c in chunks {
                out.push(c.map(|(codec, raw_len, len)| {
                    let payload = bytes.slice(at..at + len as usize);
                    at += len as usize;
                    StoredChunk {
                        codec,
                        raw_len,
                        payload,
                    }
                }));
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Sink for RemoteSite {
    async fn ensure_buckets(&self, buckets: Vec<Bucket>) -> LinkResult<u32> {
        match self.call(LinkRequest::Buckets { buckets }).await? {
            LinkResponse::Buckets { created } => Ok(created),
            r => Err(unexpected("buckets", &r)),
        }
    }

    async fn lacks(&self, versions: Vec<VersionKey>) -> LinkResult<Vec<bool>> {
        match self.call(LinkRequest::Lacks { versions }).await? {
            LinkResponse::Lacks { lacks } => Ok(lacks),
            r => Err(unexpected("lacks", &r)),
        }
    }

    async fn have(&self, refs: Vec<ChunkRef>) -> LinkResult<Vec<bool>> {
        match self.call(LinkRequest::Have { refs }).await? {
            LinkResponse::Have { have } => Ok(have),
            r => Err(unexpected("have", &r)),
        }
    }

    async fn put(&self, chunks: Vec<(ChunkRef, StoredChunk)>) -> LinkResult<()> {
        let mut body = BytesMut::new();
        let mut heads = Vec::with_capacity(chunks.len());
        for (chunk, c) in chunks {
            heads.push(Shipped {
                chunk,
                codec: c.codec,
                raw_len: c.raw_len,
                len: c.payload.len() as u32,
            });
            body.extend_from_slice(&c.payload);
        }
        let (resp, _) = self
            .peer
            .call_with_body(
                &LinkRequest::Put { chunks: heads },
                Some(SendBody::from_bytes(body.freeze())),
            )
            .await?;
        match resp {
            LinkResponse::Put => Ok(()),
            r => Err(unexpected("put", &r)),
        }
    }

    async fn apply(
        &self,
        versions: Vec<VersionManifest>,
        removals: Vec<VersionKey>,
    ) -> LinkResult<Applied> {
        match self.call(LinkRequest::Apply { versions, removals }).await? {
            LinkResponse::Apply {
                applied,
                removed,
                conflicts,
            } => Ok(Applied {
                applied,
                removed,
                conflicts,
            }),
            r => Err(unexpected("apply", &r)),
        }
    }

    async fn delete_bucket(&self, bucket: &str) -> LinkResult<BucketDeleted> {
        let req = LinkRequest::DeleteBucket {
            bucket: bucket.to_string(),
        };
        match self.call(req).await? {
            LinkResponse::DeleteBucket { outcome } => Ok(outcome),
            r => Err(unexpected("delete_bucket", &r)),
        }
    }
}
