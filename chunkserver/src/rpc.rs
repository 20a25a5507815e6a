//! The chunk service: how one node's [`ChunkStore`] is reached by the other nodes of its site
//! over cairn-net (QUIC with mutual TLS, typed RPC).
//!
//! A node serves its store with [`ChunkService`] (service name `chunk`); other nodes call it
//! through [`RemoteChunks`], a typed wrapper of a [`Peer`]. Requests are [`ChunkRequest`]s and
//! responses [`ChunkResponse`]s, both versioned records (format 1).
//!
//! # Calls
//!
//! | request | request body | response | response body |
//! |---|---|---|---|
//! | `Have { ids }` | — | `Have { present }`, one flag per id | — |
//! | `Put { id, codec, raw_len, len }` | the encoded payload (`len` bytes) | `Put { stored }` | — |
//! | `Get { id }` | — | `Get { found: Option<ChunkHeader> }` | the encoded payload, if found |
//! | `Delete { ids }` | — | `Delete { existed }`, one flag per id | — |
//! | `Stats` | — | `Stats(ChunkStats)` | — |
//! | `List { after, max }` | — | `List { ids }`, in id order | — |
//! | `Touch { ids, at_ms }` | — | `Touch { present }`, one flag per id | — |
//! | `PutOwned { id, codec, raw_len, len, owner }` | as `Put` | `Put { stored }` | — |
//! | `OwnerUsage { owners }` | — | `OwnerUsage { usage }`, (chunks, stored bytes) per owner | — |
//! | `Fetches` | — | `Fetches { enabled }` | — |
//! | `Fetch { id }` | — | `Get { found: Option<ChunkHeader> }` | the encoded payload, if found |
//!
//! `Fetches` and `Fetch` reach a site's fetch cache on a multi-node site: the node that runs a
//! metadata-only link keeps the chunks it fetched from the linked site in its own store
//! ([`FetchSource`], see the client's `fetch` module), and the other nodes ask it for a chunk
//! their replicas do not hold. `Fetches` says whether the node has such a source; `Fetch`
//! answers from its store or fetches the chunk from the linked site (verified, and kept in its
//! cache). A node without a source refuses `Fetch` (`InvalidInput`).
//!
//! `PutOwned` is `Put` attributed to a bucket's owner tag when the node stores the chunk
//! ([`ChunkStore::put_owned`]: "first writer pays"); `OwnerUsage` reads the node's counters of
//! tags ([`ChunkStore::owner_usage`]; at most [`MAX_IDS_PER_CALL`] tags). A node older than them answers an error that names
//! the request as unknown: a site writes attributed chunks only once all its nodes run them.
//!
//! A writer asks `Touch` first and sends only the chunks the node lacks; a `Put` of a chunk the
//! node already holds is answered (`stored: false`) before its payload is read. Both refresh
//! the stored copy's reference time as a local deduplicating put does: GC's hold counts from
//! it, so a write that found its chunk already on a replica keeps that copy for the hold, as
//! it keeps a chunk it stored itself. `Have` only asks (repair, counts) and refreshes nothing.
//!
//! # Integrity
//!
//! Payloads travel in their stored (possibly compressed) form. The server checks a `Put`'s
//! payload against its id (decoding it and hashing the raw bytes) before it stores anything,
//! and acknowledges only after the synced write: a payload that does not hash to its id is
//! refused (`InvalidInput`) and nothing is stored. A `Get` is verified on the server before
//! it is sent: a corrupt local copy answers a `Corrupt` error, so the caller can try another
//! replica. [`RemoteChunks::get_verified`] checks again on the receiving side.
//!
//! # Limits
//!
//! - `Have` and `Delete`: at most [`MAX_IDS_PER_CALL`] ids; `List`: at most
//!   [`MAX_IDS_PER_CALL`] ids per page. More is refused with `LimitExceeded`.
//! - payloads: raw length at most 4 MiB, encoded length at most [`MAX_STORED_LEN`]. A `Put`
//!   announcing more is refused before its body is read; a body longer than announced is
//!   refused as soon as the excess arrives, so a server buffers at most one chunk per call.
//!
//! Every store call runs on tokio's blocking pool, never on the async executor.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cairn_core::codec::Codec;
use cairn_core::format::Versioned;
use cairn_core::{ChunkId, ErrorKind, MAX_CHUNK_SIZE};
use cairn_net::{Peer, PeerInfo, RecvBody, Rpc, RpcError, SendBody, Service};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::store::MAX_STORED_LEN;
use crate::{ChunkError, ChunkStats, ChunkStore, StoredChunk};

/// Most ids a `Have` or `Delete` call may carry, and most ids a `List` page may ask for.
pub const MAX_IDS_PER_CALL: usize = 10_000;

/// How long [`RemoteChunks`] waits for a `Get`'s payload to arrive after its response head,
/// unless told otherwise ([`RemoteChunks::with_body_timeout`]).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// A call to the chunk service. Variants are part of the wire format: never reorder them,
/// only add new ones at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkRequest {
    /// Which of `ids` are stored? At most [`MAX_IDS_PER_CALL`].
    Have {
        /// The chunks asked about.
        ids: Vec<ChunkId>,
    },
    /// Store a chunk whose encoded payload follows as the request body.
    Put {
        /// The chunk's id (BLAKE3 of its raw bytes).
        id: ChunkId,
        /// How the payload is encoded.
        codec: Codec,
        /// Length of the raw bytes (at most 4 MiB).
        raw_len: u32,
        /// Length of the payload in the body (at most [`MAX_STORED_LEN`]).
        len: u32,
    },
    /// Send a chunk's encoded payload as the response body.
    Get {
        /// The chunk.
        id: ChunkId,
    },
    /// Remove chunks (GC). At most [`MAX_IDS_PER_CALL`].
    Delete {
        /// The chunks to remove.
        ids: Vec<ChunkId>,
    },
    /// The store's totals.
    Stats,
    /// A page of stored ids in id order.
    List {
        /// Start after this id (from the first id if `None`).
        after: Option<ChunkId>,
        /// Most ids to return (at most [`MAX_IDS_PER_CALL`]).
        max: u32,
    },
    /// Which of `ids` are stored? Each stored one's reference time is refreshed, as a put
    /// deduplicating against it would (to `at_ms`, or the server's now), so GC's hold protects
    /// it again. At most [`MAX_IDS_PER_CALL`].
    Touch {
        /// The chunks asked about.
        ids: Vec<ChunkId>,
        /// The reference time to keep (a copy moved from another node keeps that copy's),
        /// or `None` for the server's current time.
        at_ms: Option<u64>,
    },
    /// `Put` attributed to `owner` (a bucket's [`cairn_core::owner_tag`]) when the node stores
    /// the chunk; a chunk it already holds keeps its owner.
    PutOwned {
        /// The chunk's id (BLAKE3 of its raw bytes).
        id: ChunkId,
        /// How the payload is encoded.
        codec: Codec,
        /// Length of the raw bytes (at most 4 MiB).
        raw_len: u32,
        /// Length of the payload in the body (at most [`MAX_STORED_LEN`]).
        len: u32,
        /// The owner tag to record (0: unattributed).
        owner: u64,
    },
    /// The node's counters of the chunks each of `owners` stored first. At most
    /// [`MAX_IDS_PER_CALL`].
    OwnerUsage {
        /// The owner tags.
        owners: Vec<u64>,
    },
    /// Whether this node answers `Fetch` (it runs a metadata-only link).
    Fetches,
    /// Send a chunk's encoded payload as the response body (answered `Get`), from this node's
    /// store or fetched from a linked site; at most one chunk per call.
    Fetch {
        /// The chunk.
        id: ChunkId,
    },
}

impl Versioned for ChunkRequest {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "chunk request";
}

impl Rpc for ChunkRequest {
    const SERVICE: &'static str = "chunk";
    type Response = ChunkResponse;
}

/// What a `Get` found: the encoding of the payload in the response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHeader {
    /// How the payload is encoded.
    pub codec: Codec,
    /// Length of the raw bytes.
    pub raw_len: u32,
    /// Length of the payload in the body.
    pub len: u32,
}

/// The chunk service's answers, one variant per [`ChunkRequest`] variant (same order; never
/// reorder, only add at the end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkResponse {
    /// Answer to `Have`: one flag per id asked, in order.
    Have {
        /// Whether each id is stored.
        present: Vec<bool>,
    },
    /// Answer to `Put`, sent once the chunk is durable.
    Put {
        /// True if this call stored it, false if it was already there.
        stored: bool,
    },
    /// Answer to `Get`; if found, the payload follows as the response body.
    Get {
        /// The payload's encoding, or `None` if the chunk is not stored here.
        found: Option<ChunkHeader>,
    },
    /// Answer to `Delete`: one flag per id, in order.
    Delete {
        /// Whether each id was stored (and is now removed).
        existed: Vec<bool>,
    },
    /// Answer to `Stats`.
    Stats(ChunkStats),
    /// Answer to `List`: ids in increasing order; fewer than `max` means the walk is done.
    List {
        /// The page.
        ids: Vec<ChunkId>,
    },
    /// Answer to `Touch`: one flag per id asked, in order.
    Touch {
        /// Whether each id is stored (and now refreshed).
        present: Vec<bool>,
    },
    /// Answer to `OwnerUsage`: per owner asked, in order, the chunks this node holds that
    /// the owner stored first and their stored (compressed) bytes here.
    OwnerUsage {
        /// (chunks, stored bytes) per owner.
        usage: Vec<(u64, u64)>,
    },
    /// Answer to `Fetches`.
    Fetches {
        /// Whether the node answers `Fetch`.
        enabled: bool,
    },
}

impl Versioned for ChunkResponse {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "chunk response";
}

/// The error a handler answers for a store error: same kind, same message.
fn remote(e: ChunkError) -> RpcError {
    RpcError::remote(e.kind(), e.to_string())
}

/// Refuses a list of more than [`MAX_IDS_PER_CALL`] ids.
fn check_count(what: &'static str, n: usize) -> Result<(), RpcError> {
    if n > MAX_IDS_PER_CALL {
        return Err(RpcError::remote(
            ErrorKind::LimitExceeded,
            format!("{what} of {n} chunk ids: at most {MAX_IDS_PER_CALL} per call"),
        ));
    }
    Ok(())
}

/// Refuses payload lengths over the chunk limits.
fn check_lengths(raw_len: u32, len: u32) -> Result<(), String> {
    if raw_len as usize > MAX_CHUNK_SIZE {
        return Err(format!(
            "chunk of {raw_len} raw bytes is over the {MAX_CHUNK_SIZE}-byte limit"
        ));
    }
    if len as usize > MAX_STORED_LEN {
        return Err(format!(
            "chunk payload of {len} bytes is over the {MAX_STORED_LEN}-byte limit"
        ));
    }
    Ok(())
}

/// Why a payload body could not be read.
enum BodyError {
    /// The transport failed, or the sender aborted its body.
    Rpc(RpcError),
    /// More bytes than announced arrived (reading stopped at the excess).
    Longer,
    /// The body ended after this many bytes, short of what was announced.
    Shorter(usize),
}

/// Reads a body of exactly `len` bytes, never holding more than `len`.
async fn read_exact(body: &mut RecvBody, len: usize) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::with_capacity(len.min(1 << 20));
    while let Some(piece) = body.chunk().await.map_err(BodyError::Rpc)? {
        if piece.len() > len - buf.len() {
            return Err(BodyError::Longer);
        }
        buf.extend_from_slice(&piece);
    }
    if buf.len() != len {
        return Err(BodyError::Shorter(buf.len()));
    }
    Ok(buf.freeze())
}

/// Where a node's `Fetch` answers come from: the node's client when it runs a metadata-only
/// link (chunks this site lacks, fetched from the linked site, checked and cached here).
pub trait FetchSource: Send + Sync + 'static {
    /// Whether `fetch` can be asked now (a metadata-only link is configured here).
    fn fetches(&self) -> bool;

    /// The chunk in stored form, from this site or fetched from a linked site (checked against
    /// `id`); `None` when no one holds it.
    fn fetch(&self, id: ChunkId) -> BoxFuture<'_, Result<Option<StoredChunk>, ChunkError>>;
}

/// Serves a node's [`ChunkStore`] to the other nodes of its site (register it with
/// `cairn_net::Server::builder(..).service(ChunkService::new(store))`).
#[derive(Clone)]
pub struct ChunkService {
    store: Arc<ChunkStore>,
    fetch: Option<Arc<dyn FetchSource>>,
}

impl ChunkService {
    /// A service over `store`.
    pub fn new(store: Arc<ChunkStore>) -> Self {
        ChunkService { store, fetch: None }
    }

    /// The same service, answering `Fetch` through `source`.
    pub fn with_fetch_source(mut self, source: Arc<dyn FetchSource>) -> Self {
        self.fetch = Some(source);
        self
    }

    /// Answers `Fetch` of `id` through the fetch source.
    async fn fetch(&self, id: ChunkId) -> Result<(ChunkResponse, Option<SendBody>), RpcError> {
        let source = self.fetch.as_ref().filter(|s| s.fetches()).ok_or_else(|| {
            RpcError::remote(
                ErrorKind::InvalidInput,
                "this node runs no metadata-only link: it fetches nothing from other sites",
            )
        })?;
        let found = source.fetch(id).await.map_err(remote)?;
        found_answer(id, found)
    }

    /// Runs `f` on the store on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ChunkStore) -> Result<T, ChunkError> + Send + 'static,
    ) -> Result<T, RpcError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| {
                RpcError::remote(ErrorKind::Internal, format!("chunk store task failed: {e}"))
            })?
            .map_err(remote)
    }

    async fn put(
        &self,
        id: ChunkId,
        codec: Codec,
        raw_len: u32,
        len: u32,
        owner: u64,
        mut body: RecvBody,
    ) -> Result<ChunkResponse, RpcError> {
        check_lengths(raw_len, len)
            .map_err(|m| RpcError::remote(ErrorKind::LimitExceeded, format!("put of {id}: {m}")))?;
        // Already here: answer before reading the payload (the sender stops sending). The
        // stored copy is touched as a local dedup put would, so GC's hold keeps protecting it.
        if self.blocking(move |s| s.touch_many(&[id], None)).await?[0] {
            return Ok(ChunkResponse::Put { stored: false });
        }
        let payload = read_exact(&mut body, len as usize)
            .await
            .map_err(|e| match e {
                BodyError::Rpc(e) => e,
                BodyError::Longer => RpcError::remote(
                    ErrorKind::LimitExceeded,
                    format!("put of {id}: payload is longer than the {len} bytes announced"),
                ),
                BodyError::Shorter(n) => RpcError::remote(
                    ErrorKind::InvalidInput,
                    format!("put of {id}: payload ended after {n} of the {len} bytes announced"),
                ),
            })?;
        let chunk = StoredChunk {
            codec,
            raw_len,
            payload,
        };
        let stored = self
            .blocking(move |s| s.put_verified_owned(&id, &chunk, owner))
            .await?;
        Ok(ChunkResponse::Put { stored })
    }

    async fn get(&self, id: ChunkId) -> Result<(ChunkResponse, Option<SendBody>), RpcError> {
        let found = self
            .blocking(move |s| {
                let Some(chunk) = s.get_stored(&id)? else {
                    return Ok(None);
                };
                // Never ship bytes that do not hash to their id.
                chunk.decode_verified(&id)?;
                Ok(Some(chunk))
            })
            .await?;
        found_answer(id, found)
    }
}

/// The `Get` answer (and body) of a chunk found or not.
fn found_answer(
    id: ChunkId,
    found: Option<StoredChunk>,
) -> Result<(ChunkResponse, Option<SendBody>), RpcError> {
    let Some(chunk) = found else {
        return Ok((ChunkResponse::Get { found: None }, None));
    };
    let header = ChunkHeader {
        codec: chunk.codec,
        raw_len: chunk.raw_len,
        // A stored payload is at most MAX_STORED_LEN (put refuses more), so it fits.
        len: u32::try_from(chunk.payload.len()).map_err(|_| {
            RpcError::remote(ErrorKind::Corrupt, format!("chunk {id}: oversized payload"))
        })?,
    };
    Ok((
        ChunkResponse::Get {
            found: Some(header),
        },
        Some(SendBody::from_bytes(chunk.payload)),
    ))
}

impl Service for ChunkService {
    type Request = ChunkRequest;

    async fn handle(
        &self,
        _peer: PeerInfo,
        req: ChunkRequest,
        body: RecvBody,
    ) -> Result<(ChunkResponse, Option<SendBody>), RpcError> {
        match req {
            ChunkRequest::Have { ids } => {
                check_count("have", ids.len())?;
                let present = self.blocking(move |s| s.has_many(&ids)).await?;
                Ok((ChunkResponse::Have { present }, None))
            }
            ChunkRequest::Put {
                id,
                codec,
                raw_len,
                len,
            } => Ok((self.put(id, codec, raw_len, len, 0, body).await?, None)),
            ChunkRequest::Get { id } => self.get(id).await,
            ChunkRequest::Delete { ids } => {
                check_count("delete", ids.len())?;
                let existed = self.blocking(move |s| s.delete_many(&ids)).await?;
                Ok((ChunkResponse::Delete { existed }, None))
            }
            ChunkRequest::Stats => {
                let stats = self.blocking(|s| s.stats()).await?;
                Ok((ChunkResponse::Stats(stats), None))
            }
            ChunkRequest::List { after, max } => {
                check_count("list", max as usize)?;
                let ids = self
                    .blocking(move |s| s.list_ids(after.as_ref(), max as usize))
                    .await?;
                Ok((ChunkResponse::List { ids }, None))
            }
            ChunkRequest::Touch { ids, at_ms } => {
                check_count("touch", ids.len())?;
                let present = self.blocking(move |s| s.touch_many(&ids, at_ms)).await?;
                Ok((ChunkResponse::Touch { present }, None))
            }
            ChunkRequest::PutOwned {
                id,
                codec,
                raw_len,
                len,
                owner,
            } => Ok((self.put(id, codec, raw_len, len, owner, body).await?, None)),
            ChunkRequest::OwnerUsage { owners } => {
                check_count("owner usage", owners.len())?;
                let usage = self
                    .blocking(move |s| owners.iter().map(|o| s.owner_usage(*o)).collect())
                    .await?;
                Ok((ChunkResponse::OwnerUsage { usage }, None))
            }
            ChunkRequest::Fetches => {
                let enabled = self.fetch.as_ref().is_some_and(|s| s.fetches());
                Ok((ChunkResponse::Fetches { enabled }, None))
            }
            ChunkRequest::Fetch { id } => self.fetch(id).await,
        }
    }
}

/// Another node's chunk store, called over cairn-net. Cheap to clone; clones share the
/// client's connection to the node.
#[derive(Clone)]
pub struct RemoteChunks {
    peer: Peer,
    body_timeout: Duration,
}

impl RemoteChunks {
    /// Calls the chunk service of `peer` (its call deadline applies to every call).
    pub fn new(peer: Peer) -> Self {
        RemoteChunks {
            peer,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    /// The same node, with another bound on receiving a `Get`'s payload after its response
    /// head (the call deadline covers only up to the head).
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The peer called.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    fn error(&self, source: RpcError) -> ChunkError {
        ChunkError::Rpc {
            node: self.peer.node().to_string(),
            source,
        }
    }

    fn unexpected(&self, what: &str, resp: &ChunkResponse) -> ChunkError {
        self.error(RpcError::Protocol(format!(
            "{what} answered with {}",
            variant_name(resp)
        )))
    }

    async fn call(&self, req: &ChunkRequest) -> Result<ChunkResponse, ChunkError> {
        self.peer.call(req).await.map_err(|e| self.error(e))
    }

    fn check_count(&self, what: &'static str, n: usize) -> Result<(), ChunkError> {
        if n > MAX_IDS_PER_CALL {
            return Err(self.error(RpcError::TooLarge {
                what,
                len: n as u64,
                limit: MAX_IDS_PER_CALL as u64,
            }));
        }
        Ok(())
    }

    /// Which of `ids` the node stores, one flag per id (at most [`MAX_IDS_PER_CALL`] ids),
    /// refreshing the reference time of each stored one (see [`ChunkStore::touch_many`]).
    pub async fn touch(
        &self,
        ids: &[ChunkId],
        at_ms: Option<u64>,
    ) -> Result<Vec<bool>, ChunkError> {
        self.check_count("touch request (chunk ids)", ids.len())?;
        let resp = self
            .call(&ChunkRequest::Touch {
                ids: ids.to_vec(),
                at_ms,
            })
            .await?;
        match resp {
            ChunkResponse::Touch { present } if present.len() == ids.len() => Ok(present),
            other => Err(self.unexpected("touch", &other)),
        }
    }

    /// Which of `ids` the node stores, one flag per id (at most [`MAX_IDS_PER_CALL`] ids).
    pub async fn have(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ChunkError> {
        self.check_count("have request (chunk ids)", ids.len())?;
        let resp = self.call(&ChunkRequest::Have { ids: ids.to_vec() }).await?;
        match resp {
            ChunkResponse::Have { present } if present.len() == ids.len() => Ok(present),
            other => Err(self.unexpected("have", &other)),
        }
    }

    /// Stores `chunk` under `id` on the node; true if the node did not have it. Returns once
    /// the node has verified the payload against `id` and made it durable. A chunk the node
    /// already holds is acknowledged (false) without its payload being sent in full.
    pub async fn put(&self, id: &ChunkId, chunk: &StoredChunk) -> Result<bool, ChunkError> {
        self.put_owned(id, chunk, 0).await
    }

    /// [`RemoteChunks::put`] attributed to `owner` when the node stores the chunk (a
    /// `PutOwned`; owner 0 sends a plain `Put`, which every node version takes).
    pub async fn put_owned(
        &self,
        id: &ChunkId,
        chunk: &StoredChunk,
        owner: u64,
    ) -> Result<bool, ChunkError> {
        if chunk.raw_len as usize > MAX_CHUNK_SIZE || chunk.payload.len() > MAX_STORED_LEN {
            return Err(ChunkError::TooLarge(
                (chunk.raw_len as usize).max(chunk.payload.len()),
            ));
        }
        // At most MAX_STORED_LEN, checked above.
        let len = chunk.payload.len() as u32;
        let req = match owner {
            0 => ChunkRequest::Put {
                id: *id,
                codec: chunk.codec,
                raw_len: chunk.raw_len,
                len,
            },
            owner => ChunkRequest::PutOwned {
                id: *id,
                codec: chunk.codec,
                raw_len: chunk.raw_len,
                len,
                owner,
            },
        };
        let body = SendBody::from_bytes(chunk.payload.clone());
        let resp = match self.peer.call_with_body(&req, Some(body)).await {
            Ok((resp, _)) => resp,
            // A node of an older release cannot read `PutOwned` (during a rolling upgrade):
            // the chunk is stored there unattributed rather than not at all.
            Err(RpcError::Remote {
                kind: ErrorKind::InvalidInput,
                ..
            }) if owner != 0 => return Box::pin(self.put_owned(id, chunk, 0)).await,
            Err(e) => return Err(self.error(e)),
        };
        match resp {
            ChunkResponse::Put { stored } => Ok(stored),
            other => Err(self.unexpected("put", &other)),
        }
    }

    /// The chunk in its stored form, or `None` if the node does not have it. The node verified
    /// it before sending; a corrupt copy there fails with kind `Corrupt` (try another replica).
    /// Use [`RemoteChunks::get_verified`] for the raw bytes checked on this side too.
    pub async fn get(&self, id: &ChunkId) -> Result<Option<StoredChunk>, ChunkError> {
        self.get_by(id, ChunkRequest::Get { id: *id }).await
    }

    /// Whether the node answers [`RemoteChunks::fetch`] (it runs a metadata-only link). A node
    /// of a release without `Fetches` answers an error.
    pub async fn fetches(&self) -> Result<bool, ChunkError> {
        match self.call(&ChunkRequest::Fetches).await? {
            ChunkResponse::Fetches { enabled } => Ok(enabled),
            other => Err(self.unexpected("fetches", &other)),
        }
    }

    /// The chunk in stored form from the node's store or, through its metadata-only link, from
    /// the linked site (which the node checks and caches); `None` when no one holds it. The
    /// caller checks it against `id`.
    pub async fn fetch(&self, id: &ChunkId) -> Result<Option<StoredChunk>, ChunkError> {
        self.get_by(id, ChunkRequest::Fetch { id: *id }).await
    }

    /// A `Get`-shaped answer to `req`: the chunk's header, then its payload.
    async fn get_by(
        &self,
        id: &ChunkId,
        req: ChunkRequest,
    ) -> Result<Option<StoredChunk>, ChunkError> {
        let (resp, mut body) = self
            .peer
            .call_with_body(&req, None)
            .await
            .map_err(|e| self.error(e))?;
        let header = match resp {
            ChunkResponse::Get { found: None } => return Ok(None),
            ChunkResponse::Get { found: Some(h) } => h,
            other => return Err(self.unexpected("get", &other)),
        };
        check_lengths(header.raw_len, header.len)
            .map_err(|m| self.error(RpcError::Protocol(format!("get of {id}: {m}"))))?;
        let len = header.len as usize;
        let payload =
            match tokio::time::timeout(self.body_timeout, read_exact(&mut body, len)).await {
                Err(_) => return Err(self.error(RpcError::Timeout(self.body_timeout))),
                Ok(Ok(p)) => p,
                Ok(Err(BodyError::Rpc(e))) => return Err(self.error(e)),
                Ok(Err(BodyError::Longer)) => {
                    return Err(self.error(RpcError::Protocol(format!(
                        "get of {id}: payload is longer than the {len} bytes announced"
                    ))))
                }
                Ok(Err(BodyError::Shorter(n))) => {
                    return Err(self.error(RpcError::Protocol(format!(
                        "get of {id}: payload ended after {n} of the {len} bytes announced"
                    ))))
                }
            };
        Ok(Some(StoredChunk {
            codec: header.codec,
            raw_len: header.raw_len,
            payload,
        }))
    }

    /// The chunk's raw bytes, decoded and checked against `id` on this side (on the blocking
    /// pool), or `None` if the node does not have it.
    pub async fn get_verified(&self, id: &ChunkId) -> Result<Option<Bytes>, ChunkError> {
        let Some(chunk) = self.get(id).await? else {
            return Ok(None);
        };
        let id = *id;
        tokio::task::spawn_blocking(move || chunk.decode_verified(&id))
            .await
            .map_err(|e| ChunkError::Io(format!("decoding task failed: {e}")))?
            .map(Some)
    }

    /// Removes `ids` from the node (at most [`MAX_IDS_PER_CALL`]); one flag per id, true if it
    /// was stored.
    pub async fn delete(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ChunkError> {
        self.check_count("delete request (chunk ids)", ids.len())?;
        let resp = self
            .call(&ChunkRequest::Delete { ids: ids.to_vec() })
            .await?;
        match resp {
            ChunkResponse::Delete { existed } if existed.len() == ids.len() => Ok(existed),
            other => Err(self.unexpected("delete", &other)),
        }
    }

    /// The node's counters of the chunks each of `owners` stored first (at most
    /// [`MAX_IDS_PER_CALL`]): (chunks, stored bytes) per owner, in order.
    pub async fn owner_usage(&self, owners: &[u64]) -> Result<Vec<(u64, u64)>, ChunkError> {
        self.check_count("owner usage request (owner tags)", owners.len())?;
        let req = ChunkRequest::OwnerUsage {
            owners: owners.to_vec(),
        };
        match self.call(&req).await? {
            ChunkResponse::OwnerUsage { usage } if usage.len() == owners.len() => Ok(usage),
            other => Err(self.unexpected("owner usage", &other)),
        }
    }

    /// The node's store totals.
    pub async fn stats(&self) -> Result<ChunkStats, ChunkError> {
        match self.call(&ChunkRequest::Stats).await? {
            ChunkResponse::Stats(s) => Ok(s),
            other => Err(self.unexpected("stats", &other)),
        }
    }

    /// Up to `max` (at most [`MAX_IDS_PER_CALL`]) of the node's chunk ids in id order, after
    /// `after`. Fewer than `max` means the walk reached the end; pass the last id as the next
    /// page's `after`.
    pub async fn list(
        &self,
        after: Option<ChunkId>,
        max: usize,
    ) -> Result<Vec<ChunkId>, ChunkError> {
        self.check_count("list page (chunk ids)", max)?;
        let resp = self
            .call(&ChunkRequest::List {
                after,
                // At most MAX_IDS_PER_CALL, checked above.
                max: max as u32,
            })
            .await?;
        match resp {
            ChunkResponse::List { ids }
                if ids.len() <= max
                    && ids.windows(2).all(|w| w[0] < w[1])
                    && ids.first().is_none_or(|f| after.is_none_or(|a| a < *f)) =>
            {
                Ok(ids)
            }
            other => Err(self.unexpected("list", &other)),
        }
    }
}

/// A response's variant, for error messages.
fn variant_name(resp: &ChunkResponse) -> &'static str {
    match resp {
        ChunkResponse::Have { present } if present.len() > MAX_IDS_PER_CALL => "an oversized have",
        ChunkResponse::Have { .. } => "have (of another length)",
        ChunkResponse::Put { .. } => "put",
        ChunkResponse::Get { .. } => "get",
        ChunkResponse::Delete { .. } => "delete (of another length)",
        ChunkResponse::Stats(_) => "stats",
        ChunkResponse::List { .. } => "list (out of order or too long)",
        ChunkResponse::Touch { .. } => "touch (of another length)",
        ChunkResponse::OwnerUsage { .. } => "owner usage (of another length)",
        ChunkResponse::Fetches { .. } => "fetches",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_in_their_versioned_encoding() {
        let id = ChunkId::of(b"x");
        let reqs = [
            ChunkRequest::Have { ids: vec![id, id] },
            ChunkRequest::Put {
                id,
                codec: Codec::Zstd,
                raw_len: 10,
                len: 5,
            },
            ChunkRequest::Get { id },
            ChunkRequest::Delete { ids: vec![id] },
            ChunkRequest::Stats,
            ChunkRequest::List {
                after: Some(id),
                max: 7,
            },
            ChunkRequest::Touch {
                ids: vec![id],
                at_ms: Some(42),
            },
            ChunkRequest::PutOwned {
                id,
                codec: Codec::Raw,
                raw_len: 3,
                len: 3,
                owner: cairn_core::owner_tag("b"),
            },
            ChunkRequest::OwnerUsage { owners: vec![7, 8] },
        ];
        for r in reqs {
            let bytes = r.encode();
            assert_eq!(bytes[0], 1);
            assert_eq!(ChunkRequest::decode(&bytes).unwrap(), r);
        }
        let resp = ChunkResponse::Get {
            found: Some(ChunkHeader {
                codec: Codec::Raw,
                raw_len: 3,
                len: 3,
            }),
        };
        assert_eq!(ChunkResponse::decode(&resp.encode()).unwrap(), resp);
        let usage = ChunkResponse::OwnerUsage {
            usage: vec![(2, 9), (0, 0)],
        };
        assert_eq!(ChunkResponse::decode(&usage.encode()).unwrap(), usage);
        // Another format version is refused, not guessed.
        let mut bytes = ChunkRequest::Stats.encode();
        bytes[0] = 2;
        assert!(ChunkRequest::decode(&bytes).is_err());
    }

    #[test]
    fn lengths_over_the_chunk_limits_are_refused() {
        assert!(check_lengths(MAX_CHUNK_SIZE as u32, MAX_STORED_LEN as u32).is_ok());
        assert!(check_lengths(MAX_CHUNK_SIZE as u32 + 1, 10).is_err());
        assert!(check_lengths(10, MAX_STORED_LEN as u32 + 1).is_err());
        assert!(check_count("have", MAX_IDS_PER_CALL).is_ok());
        let err = check_count("have", MAX_IDS_PER_CALL + 1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded);
    }
}
