//! The `link` service: what a site answers to the sites linked to it. Every call comes over
//! mutual TLS from a site whose CA this site trusts (the listener refuses every other
//! certificate at the handshake); counts and sizes are bounded before anything is read.

use bytes::{Bytes, BytesMut};
use cairn_client::{Client, StoredChunk};
use cairn_core::ErrorKind;
use cairn_net::{PeerInfo, RecvBody, RpcError, SendBody, Service};

use crate::error::LinkError;
use crate::proto::{
    LinkRequest, LinkResponse, MAX_BODY, MAX_BUCKETS, MAX_REFS, MAX_VERSIONS, PROTOCOL,
};
use crate::site::{holder_for, LocalSite, Sink, Source};

/// Serves this site's end of links.
#[derive(Clone)]
pub struct LinkService {
    client: Client,
}

impl LinkService {
    /// A service over this site (`client`).
    pub fn new(client: Client) -> LinkService {
        LinkService { client }
    }

    fn site(&self, reader: u16) -> LocalSite {
        LocalSite::new(self.client.clone(), holder_for(reader))
    }
}

fn remote(e: LinkError) -> RpcError {
    RpcError::remote(e.kind(), e.to_string())
}

fn bound(what: &str, n: usize, max: usize) -> Result<(), RpcError> {
    if n > max {
        return Err(RpcError::remote(
            ErrorKind::LimitExceeded,
            format!("{what} of {n} entries: at most {max} per call"),
        ));
    }
    Ok(())
}

/// Reads a body of exactly `len` bytes, refusing more.
async fn read_body(body: &mut RecvBody, len: u64) -> Result<Bytes, RpcError> {
    let mut buf = BytesMut::with_capacity((len as usize).min(1 << 20));
    while let Some(piece) = body.chunk().await? {
        if (buf.len() + piece.len()) as u64 > len {
            return Err(RpcError::remote(
                ErrorKind::LimitExceeded,
                format!("put body is longer than the {len} bytes announced"),
            ));
        }
        buf.extend_from_slice(&piece);
    }
    if buf.len() as u64 != len {
        return Err(RpcError::remote(
            ErrorKind::InvalidInput,
            format!("put body ended after {} of {len} bytes", buf.len()),
        ));
    }
    Ok(buf.freeze())
}

impl Service for LinkService {
    type Request = LinkRequest;

    async fn handle(
        &self,
        peer: PeerInfo,
        req: LinkRequest,
        mut body: RecvBody,
    ) -> Result<(LinkResponse, Option<SendBody>), RpcError> {
        // The sink side needs no reader name: only log reads are kept per reader.
        let local = self.site(0);
        let resp = match req {
            LinkRequest::Hello {
                protocol,
                site,
                link,
            } => {
                let own = self.client.site_id();
                if protocol != PROTOCOL {
                    return Err(RpcError::remote(
                        ErrorKind::InvalidInput,
                        format!(
                            "this site speaks link protocol {PROTOCOL}, the caller {protocol}: \
                             run the same Cairn release at both sites"
                        ),
                    ));
                }
                if site == own {
                    return Err(RpcError::remote(
                        ErrorKind::PermissionDenied,
                        format!(
                            "both sites have site id {own:04x}: they cannot be linked (one was \
                             probably copied from the other). Give one a new id: stop it, \
                             delete site-id in its data dir (single-node sites) or set `id` in \
                             the [site] section of every node's config (multi-node sites), and \
                             start it again"
                        ),
                    ));
                }
                tracing::info!(%link, remote_site = format!("{site:04x}"),
                    remote = %peer.addr, from = %peer.site, "link connected");
                LinkResponse::Hello {
                    protocol: PROTOCOL,
                    site: own,
                }
            }
            LinkRequest::LogEnds => LinkResponse::LogEnds {
                logs: local.log_ends().await.map_err(remote)?,
            },
            LinkRequest::DeleteBucket { bucket } => {
                let outcome = local.delete_bucket(&bucket).await.map_err(remote)?;
                LinkResponse::DeleteBucket { outcome }
            }
            LinkRequest::Buckets { buckets } => {
                bound("buckets", buckets.len(), MAX_BUCKETS)?;
                let created = local.ensure_buckets(buckets).await.map_err(remote)?;
                LinkResponse::Buckets { created }
            }
            LinkRequest::Lacks { versions } => {
                bound("lacks", versions.len(), MAX_VERSIONS)?;
                let lacks = local.lacks(versions).await.map_err(remote)?;
                LinkResponse::Lacks { lacks }
            }
            LinkRequest::Have { refs } => {
                bound("have", refs.len(), MAX_REFS)?;
                let have = local.have(refs).await.map_err(remote)?;
                LinkResponse::Have { have }
            }
            LinkRequest::Put { chunks } => {
                bound("put", chunks.len(), MAX_REFS)?;
                let total: u64 = chunks.iter().map(|c| u64::from(c.len)).sum();
                if total > MAX_BODY {
                    return Err(RpcError::remote(
                        ErrorKind::LimitExceeded,
                        format!("put of {total} bytes: at most {MAX_BODY} per call"),
                    ));
                }
                let bytes = read_body(&mut body, total).await?;
                let mut at = 0usize;
                let mut shipped = Vec::with_capacity(chunks.len());
                for c in chunks {
                    let payload = bytes.slice(at..at + c.len as usize);
                    at += c.len as usize;
                    shipped.push((
                        c.chunk,
                        StoredChunk {
                            codec: c.codec,
                            raw_len: c.raw_len,
                            payload,
                        },
                    ));
                }
                local.put(shipped).await.map_err(remote)?;
                LinkResponse::Put
            }
            LinkRequest::Apply { versions, removals } => {
                bound("apply", versions.len(), MAX_VERSIONS)?;
                bound("apply", removals.len(), MAX_VERSIONS)?;
                let a = local.apply(versions, removals).await.map_err(remote)?;
                LinkResponse::Apply {
                    applied: a.applied,
                    removed: a.removed,
                    conflicts: a.conflicts,
                }
            }
            LinkRequest::Logs { reader } => LinkResponse::Logs {
                logs: self.site(reader).logs().await.map_err(remote)?,
            },
            LinkRequest::Changes {
                reader,
                log,
                after,
                max,
            } => LinkResponse::Changes {
                changes: self
                    .site(reader)
                    .changes(log, after, (max as usize).min(MAX_VERSIONS))
                    .await
                    .map_err(remote)?,
            },
            LinkRequest::Versions { keys } => {
                bound("versions", keys.len(), MAX_VERSIONS)?;
                LinkResponse::Versions {
                    versions: local.versions(keys).await.map_err(remote)?,
                }
            }
            LinkRequest::ListVersions { bucket, after, max } => {
                let (versions, truncated) = local
                    .list_versions(&bucket, after, (max as usize).clamp(1, MAX_VERSIONS))
                    .await
                    .map_err(remote)?;
                LinkResponse::ListVersions {
                    versions,
                    truncated,
                }
            }
            LinkRequest::Fetch { ids } => {
                bound("fetch", ids.len(), MAX_REFS)?;
                let found = self
                    .client
                    .local_stored_chunks(ids)
                    .await
                    .map_err(|e| remote(e.into()))?;
                let mut chunks = Vec::new();
                let mut out = BytesMut::new();
                for c in found {
                    let Some(c) = c else {
                        chunks.push(None);
                        continue;
                    };
                    if !chunks.is_empty() && (out.len() + c.payload.len()) as u64 > MAX_BODY {
                        // The caller asks again for the ids left unanswered.
                        break;
                    }
                    chunks.push(Some((c.codec, c.raw_len, c.payload.len() as u32)));
                    out.extend_from_slice(&c.payload);
                }
                return Ok((
                    LinkResponse::Fetch { chunks },
                    Some(SendBody::from_bytes(out.freeze())),
                ));
            }
            LinkRequest::BucketList => LinkResponse::BucketList {
                buckets: local.buckets().await.map_err(remote)?,
            },
        };
        Ok((resp, None))
    }
}
