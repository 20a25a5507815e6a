//! The `Client` handle: the stores it reaches, its clock, and how blocking store calls leave the
//! async executor.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_chunkserver::{ChunkBackend, ChunkConfig, ChunkStore};
use cairn_core::chunker::FastCdc;
use cairn_core::{Hlc, NodeId, SiteId, SpaceGate};
use cairn_manifestserver::{ManifestBackend, ManifestConfig, ManifestStore};

use crate::ClientError;

/// The object store as a gateway sees it. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Where chunks go: this node's store, or the site's chunk servers.
    pub chunks: Arc<dyn ChunkBackend>,
    /// This node's own chunk store when it is the whole chunk backend (single-node sites):
    /// what garbage collection lists and sweeps.
    pub local: Option<Arc<ChunkStore>>,
    /// Where metadata goes: this node's manifest store, or the site's manifest servers.
    pub meta: Arc<dyn ManifestBackend>,
    /// Clock that names new versions.
    pub hlc: Hlc,
    /// Chunker for whole-object writes.
    pub cdc: FastCdc,
    /// This node's space gate, when its stores are the whole site (single-node sites): new
    /// writes are refused while it says the disk is near full. A multi-node gateway has none:
    /// each chunk node's store refuses for itself, and placement avoids full nodes.
    pub space: Option<Arc<SpaceGate>>,
    /// Threads that read chunks from a local store (started on first use).
    pub readers: std::sync::OnceLock<crate::nodes::Readers>,
    /// Seals and opens SSE-S3 content (the site's master keys), once given.
    pub site_sealer: parking_lot::RwLock<Option<crate::crypt::Sealer>>,
    /// KMS keys opened lately (SSE-KMS).
    pub kms: crate::kms::KmsCache,
    /// The linked sites chunks missing here are fetched from (metadata-only links).
    pub remote: parking_lot::RwLock<Option<Arc<dyn crate::fetch::RemoteChunks>>>,
    /// Most stored bytes the fetch cache keeps.
    pub cache_limit: std::sync::atomic::AtomicU64,
    /// What fetching did.
    pub fetched: crate::fetch::FetchCounters,
}

impl Client {
    /// Opens (creating if needed) a single-node store in `dir` (chunks in `dir/chunks`,
    /// metadata in `dir/meta`, the node's id in `dir/node-id`, the site's in `dir/site-id`).
    pub fn open_dir(dir: &Path) -> Result<Client, ClientError> {
        Client::open_dir_with_space(dir, None)
    }

    /// [`Client::open_dir`] with the node's space gate: the chunk store and this client
    /// refuse new writes while it says the disk is near full, and report writes that fail for
    /// lack of space to it.
    pub fn open_dir_with_space(
        dir: &Path,
        space: Option<Arc<SpaceGate>>,
    ) -> Result<Client, ClientError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            ClientError::Storage(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let node = load_or_create_node_id(dir)?;
        let site = load_or_create_site_id(dir)?;
        let config = ChunkConfig {
            space: space.clone(),
            ..ChunkConfig::default()
        };
        let chunks = Arc::new(ChunkStore::open(&dir.join("chunks"), config)?);
        let meta = ManifestStore::open(&dir.join("meta"), ManifestConfig::default())?;
        let mut client = Client::build(chunks.clone(), Some(chunks), Arc::new(meta), site, node);
        if let Some(inner) = Arc::get_mut(&mut client.inner) {
            inner.space = space;
        }
        client.set_site_keys(&crate::crypt::SiteKeys::load_or_create(dir)?);
        Ok(client)
    }

    /// A client over already-open stores, naming versions as `site`/`node`.
    pub fn from_stores(
        chunks: Arc<ChunkStore>,
        meta: Arc<ManifestStore>,
        site: u16,
        node: NodeId,
    ) -> Client {
        Client::build(chunks.clone(), Some(chunks), meta, site, node)
    }

    /// A client whose chunks go to `chunks` and whose metadata goes to `meta`: this node's
    /// stores, or backends that replicate over the site's chunk and manifest servers.
    pub fn from_backends(
        chunks: Arc<dyn ChunkBackend>,
        meta: Arc<dyn ManifestBackend>,
        site: u16,
        node: NodeId,
    ) -> Client {
        Client::build(chunks, None, meta, site, node)
    }

    /// [`Client::from_backends`] on a node that also holds chunks itself: `local` is its own
    /// chunk store, which garbage collection sweeps (each chunk node sweeps its own store,
    /// marking from the site's metadata).
    pub fn from_backends_with_local(
        chunks: Arc<dyn ChunkBackend>,
        local: Option<Arc<ChunkStore>>,
        meta: Arc<dyn ManifestBackend>,
        site: u16,
        node: NodeId,
    ) -> Client {
        Client::build(chunks, local, meta, site, node)
    }

    fn build(
        chunks: Arc<dyn ChunkBackend>,
        local: Option<Arc<ChunkStore>>,
        meta: Arc<dyn ManifestBackend>,
        site: u16,
        node: NodeId,
    ) -> Client {
        Client {
            inner: Arc::new(Inner {
                chunks,
                local,
                meta,
                hlc: Hlc::new(site, node),
                cdc: FastCdc::default(),
                space: None,
                readers: std::sync::OnceLock::new(),
                site_sealer: parking_lot::RwLock::new(None),
                kms: crate::kms::KmsCache::default(),
                remote: parking_lot::RwLock::new(None),
                cache_limit: std::sync::atomic::AtomicU64::new(crate::fetch::DEFAULT_CACHE_BYTES),
                fetched: crate::fetch::FetchCounters::default(),
            }),
        }
    }

    /// A number that changes whenever a metadata write becomes visible, when the metadata is
    /// a local store (`None` on a multi-node site): read it before a lookup and reuse the
    /// lookup while it has not changed.
    pub fn meta_generation(&self) -> Option<u64> {
        self.inner.meta.write_generation()
    }

    /// This node's own chunk store when it is the whole chunk backend (single-node sites).
    pub fn local_chunk_store(&self) -> Option<&Arc<ChunkStore>> {
        self.inner.local.as_ref()
    }

    /// The site id every version this client makes carries.
    pub fn site_id(&self) -> SiteId {
        self.inner.hlc.site()
    }

    /// The node's space state, when this client has a gate (single-node sites).
    pub fn space_gate(&self) -> Option<&Arc<SpaceGate>> {
        self.inner.space.as_ref()
    }

    /// `NoSpace` when the space gate refuses new writes. Called at the start of every
    /// operation that stores new data (PUT, parts, copies, completion); removals never are.
    pub(crate) fn check_space(&self) -> Result<(), ClientError> {
        match &self.inner.space {
            Some(gate) => gate.check_write().map_err(ClientError::NoSpace),
            None => Ok(()),
        }
    }

    /// Reports a write that failed for lack of space to the gate (the chunk store reports its
    /// own; this catches the metadata store's).
    pub(crate) fn note_error(&self, e: ClientError) -> ClientError {
        if let (ClientError::NoSpace(_), Some(gate)) = (&e, &self.inner.space) {
            gate.note_no_space("the metadata store");
        }
        e
    }

    /// Runs a blocking store call on the blocking pool.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, ClientError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, ClientError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| ClientError::Storage(format!("store task failed: {e}")))?
    }
}

fn load_or_create_node_id(dir: &Path) -> Result<NodeId, ClientError> {
    load_or_create_id(dir, "node-id", 12, || {
        rand::random::<u64>() & ((1 << 48) - 1)
    })
}

/// The site id of a single-node site, made on first start (random, never 0: 0 is the id of
/// versions written before sites had ids) and kept in `dir/site-id`. Every version the site
/// makes carries it, so versions made at different sites never share an id.
fn load_or_create_site_id(dir: &Path) -> Result<SiteId, ClientError> {
    let id = load_or_create_id(dir, "site-id", 4, || {
        u64::from(rand::random::<u16>().max(1))
    })?;
    SiteId::try_from(id).map_err(|_| {
        ClientError::Storage(format!(
            "{} holds {id:#x}, more than a site id's 16 bits: restore it",
            dir.join("site-id").display()
        ))
    })
}

/// Reads the hex id kept in `dir/name`, or makes one with `make` and writes it (`digits`
/// wide) before returning it.
fn load_or_create_id(
    dir: &Path,
    name: &str,
    digits: usize,
    make: impl FnOnce() -> u64,
) -> Result<u64, ClientError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => u64::from_str_radix(s.trim(), 16).map_err(|_| {
            ClientError::Storage(format!(
                "{} does not hold a hex id: restore it or remove it to make a new one",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = make();
            let tmp = dir.join(format!("{name}.tmp"));
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                std::io::Write::write_all(&mut f, format!("{id:0digits$x}\n").as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                // The rename itself is durable once the directory is.
                std::fs::File::open(dir)?.sync_all()
            };
            write().map_err(|e| {
                ClientError::Storage(format!("cannot write {}: {e}", path.display()))
            })?;
            Ok(id)
        }
        Err(e) => Err(ClientError::Storage(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Wall-clock unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
