//! The file system an export shows, over the bucket's objects: a file `a/b/c` is object
//! `a/b/c`, a directory is a key prefix (with a `a/b/` marker object when it was made empty,
//! as s3fs and rclone make them), attributes are object metadata (see `attr`).
//!
//! Writes at any offset go into a per-file write-back buffer and are acknowledged there
//! (UNSTABLE) or after a commit (FILE_SYNC, DATA_SYNC); a commit turns the buffer into a new
//! version whose extent tree shares every untouched node and chunk with the previous one
//! (copy on write, fixed extents as for volumes: only the written bytes are stored).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cairn_client::{
    Client, ClientError, ContentHeaders, CopyOptions, Hashed, ListQuery, MetadataDirective,
    PutOptions, VersionManifest, VersionSel, WriteCondition,
};
use cairn_core::extent::{overwrite, splice, Child, Leaf, Overwrite};
use cairn_core::manifest::Content;
use cairn_core::{ChunkId, ErrorKind};
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};

use crate::attr::{self, Kind};
use crate::export::{Export, ExportConfig};
use crate::handle::Handle;
use crate::nfs3::{
    name_too_long, CreateHow, Fattr3, NfsFh3, Nfsstat3, Nfstime3, Sattr3, SetTime, WccData,
};
use crate::segments::Segments;

/// Extent size of files written over NFS (as volumes': a write stores only its bytes, cut at
/// these boundaries).
pub const EXTENT: u64 = 64 << 10;
/// Largest file (S3's object limit).
pub const MAX_FILE_SIZE: u64 = 5 << 40;
/// The reserved bucket holding each export's id table (file id → key, for handles that do not
/// carry their key, and for files renamed since their handle was made).
pub const ID_BUCKET: &str = "cairn-nfs";
/// Owner of the id table's bucket (no access key has it, so S3 users do not see it).
const ID_OWNER: &str = "cairn-system";
/// Keys per listing page.
const PAGE: usize = 256;
/// Lookups of current versions kept for reuse (see `Fs::current_of`).
const MAX_RESOLVED: usize = 4096;
/// Cookies remembered for READDIR resumption.
const MAX_COOKIES: usize = 100_000;
/// Bytes of chunks (and an eighth of that of tree nodes) reads keep in memory when not told
/// otherwise ([`Fs::with_read_cache`]).
pub const DEFAULT_READ_CACHE_BYTES: u64 = 128 << 20;
/// How often an export's id table is read again (renames made through other gateways).
const IDS_RELOAD: Duration = Duration::from_secs(10);

/// The caller, from its AUTH_SYS credential (after root squash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cred {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Other groups.
    pub gids: Vec<u32>,
}

impl Cred {
    /// A caller without a credential.
    pub fn nobody() -> Cred {
        Cred {
            uid: crate::export::NOBODY,
            gid: crate::export::NOBODY,
            gids: Vec::new(),
        }
    }

    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.gids.contains(&gid)
    }
}

/// Read, write, execute (search) bits of a permission check.
pub const PERM_R: u32 = 4;
/// Write.
pub const PERM_W: u32 = 2;
/// Execute, or search a directory.
pub const PERM_X: u32 = 1;

/// Whether `cred` has `want` (PERM_* bits) on a file with attributes `a`.
pub fn permitted(cred: &Cred, a: &Fattr3, want: u32) -> bool {
    if cred.uid == 0 {
        // Root may do anything but execute a file no one may execute.
        return want & PERM_X == 0 || a.type_ == crate::nfs3::Ftype3::Dir || a.mode & 0o111 != 0;
    }
    let bits = if cred.uid == a.uid {
        a.mode >> 6
    } else if cred.in_group(a.gid) {
        a.mode >> 3
    } else {
        a.mode
    } & 7;
    bits & want == want
}

/// A name of an export, resolved.
#[derive(Clone, Debug)]
pub struct Node {
    /// Its export.
    pub export: Arc<Export>,
    /// Its key: `""` for the root, `a/b/` for a directory, `a/b` for a file or symlink.
    pub key: String,
    /// What it is.
    pub kind: Kind,
    /// Its attributes (with buffered writes counted).
    pub attr: Fattr3,
    /// The stored version (a file, symlink or directory marker), if any (shared, not copied,
    /// by every call that resolves the node).
    pub version: Option<Arc<VersionManifest>>,
}

impl Node {
    /// Its handle.
    pub fn handle(&self) -> NfsFh3 {
        Handle::new(self.export.id, self.attr.fileid, &self.key).encode()
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

/// One READDIR entry.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// Its name.
    pub name: Vec<u8>,
    /// Its file id.
    pub fileid: u64,
    /// The cookie that resumes after it.
    pub cookie: u64,
    /// Its attributes and handle (READDIRPLUS).
    pub plus: Option<(Fattr3, NfsFh3)>,
}

/// A file with buffered writes.
struct OpenFile {
    export: Arc<Export>,
    key: String,
    fileid: u64,
    state: Mutex<FileState>,
    /// One commit at a time.
    commit: tokio::sync::Mutex<()>,
}

struct FileState {
    /// The version the buffer applies to.
    base: Arc<VersionManifest>,
    /// Buffered writes.
    segs: Segments,
    /// The file's size with the buffer applied.
    size: u64,
    /// Modification time of the newest buffered write or SETATTR.
    mtime: Nfstime3,
    /// When the buffer last changed.
    touched: Instant,
}

/// Remembered READDIR positions: cookie → (directory file id, key to resume after).
#[derive(Default)]
struct Cookies {
    next: u64,
    map: HashMap<u64, (u64, String)>,
    order: VecDeque<u64>,
}

impl Cookies {
    fn issue(&mut self, dir: u64, after: String) -> u64 {
        // 1 and 2 are "." and "..".
        self.next = self.next.max(2) + 1;
        let c = self.next;
        self.map.insert(c, (dir, after));
        self.order.push_back(c);
        while self.order.len() > MAX_COOKIES {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        c
    }
}

/// Counters of the write-back buffers.
#[derive(Default)]
pub struct FsCounters {
    /// Commits made.
    pub commits: AtomicU64,
    /// Commits that failed.
    pub commit_errors: AtomicU64,
    /// Bytes buffered now.
    pub dirty_bytes: AtomicU64,
}

/// The file systems of every export, over one client.
pub struct Fs {
    client: Client,
    exports: RwLock<Vec<Arc<Export>>>,
    files: Mutex<HashMap<(u32, u64), Arc<OpenFile>>>,
    cookies: Mutex<Cookies>,
    /// Each export's id table (file id → key), loaded when an export is first used and
    /// again every [`IDS_RELOAD`] (other gateways' renames); kept up to date by this one.
    ids: Mutex<HashMap<(u32, u64), String>>,
    ids_loaded: Mutex<HashMap<u32, Instant>>,
    /// This server instance's write verifier (new at each start, so clients resend what was
    /// not committed) and cookie verifier.
    verf: [u8; 8],
    /// Most bytes buffered over all files before writers wait for commits.
    max_dirty: u64,
    dirty_changed: tokio::sync::Notify,
    /// Counters.
    pub counters: FsCounters,
    /// Tree nodes and chunks recently read.
    cache: crate::cache::ReadCache,
    /// Current versions looked up, with the metadata generation they were read at.
    resolved: Mutex<HashMap<(u32, String), Resolved>>,
}

/// A lookup: the metadata generation it was read at, and the version found.
type Resolved = (u64, Arc<VersionManifest>);

/// The NFS status for a client error.
pub fn status_of(e: &ClientError) -> Nfsstat3 {
    match e {
        ClientError::NoSuchBucket(_) => Nfsstat3::Stale,
        ClientError::KeyTooLong => Nfsstat3::Nametoolong,
        ClientError::EntityTooLarge(_) => Nfsstat3::Fbig,
        // The bucket's quota (`cairn bucket quota`): what a client shows as "quota exceeded".
        ClientError::QuotaExceeded(_) => Nfsstat3::Dquot,
        _ => match e.kind() {
            ErrorKind::NotFound => Nfsstat3::Noent,
            ErrorKind::AlreadyExists => Nfsstat3::Exist,
            ErrorKind::PermissionDenied => Nfsstat3::Acces,
            ErrorKind::NoSpace => Nfsstat3::Nospc,
            ErrorKind::InvalidInput | ErrorKind::LimitExceeded => Nfsstat3::Inval,
            _ => Nfsstat3::Io,
        },
    }
}

/// Objects stored with a customer's key (SSE-C) are not served over NFS (no key comes with an
/// NFS call): ACCES, said in the log.
fn refuse_customer_key(m: &VersionManifest) -> Result<(), Nfsstat3> {
    if matches!(
        m.encryption,
        Some(cairn_client::Encryption::Customer { .. })
    ) {
        tracing::info!(bucket = %m.bucket, key = %m.key,
            "NFS: the object is stored with a customer-provided key; read it through S3");
        return Err(Nfsstat3::Acces);
    }
    Ok(())
}

fn io(e: ClientError) -> Nfsstat3 {
    if !matches!(e.kind(), ErrorKind::NotFound) {
        tracing::warn!(error = %e, "NFS: store error");
    }
    status_of(&e)
}

/// A name checked for use as one path component: not empty, `.` or `..`, no `/` or NUL,
/// UTF-8 (keys are), at most 255 bytes.
pub fn check_name(name: &[u8]) -> Result<&str, Nfsstat3> {
    if name_too_long(name) {
        return Err(Nfsstat3::Nametoolong);
    }
    let s = std::str::from_utf8(name).map_err(|_| Nfsstat3::Inval)?;
    if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('\0') {
        return Err(Nfsstat3::Inval);
    }
    Ok(s)
}

/// The key of the parent directory of `key` (`""` for the root's children).
pub fn parent_key(key: &str) -> String {
    let trimmed = key.strip_suffix('/').unwrap_or(key);
    match trimmed.rfind('/') {
        Some(i) => trimmed[..=i].to_string(),
        None => String::new(),
    }
}

fn empty_body() -> cairn_client::BodyStream {
    Box::pin(futures::stream::empty())
}

fn body_of(b: Bytes) -> cairn_client::BodyStream {
    Box::pin(futures::stream::once(async move { Ok(b) }))
}

fn set_time(t: SetTime) -> Option<Nfstime3> {
    match t {
        SetTime::DontChange => None,
        SetTime::ServerTime => Some(attr::now()),
        SetTime::ClientTime(t) => Some(t),
    }
}

impl Fs {
    /// The file systems of `exports` over `client`; at most `max_dirty` bytes buffered, and
    /// [`DEFAULT_READ_CACHE_BYTES`] of read data kept.
    pub fn new(client: Client, exports: Vec<ExportConfig>, max_dirty: u64) -> Fs {
        Fs::with_read_cache(client, exports, max_dirty, DEFAULT_READ_CACHE_BYTES)
    }

    /// [`Fs::new`] keeping about `read_cache` bytes of chunks read (and an eighth of that of
    /// tree nodes) in memory: random reads of files that fit in it skip the store, as a
    /// kernel NFS server's reads hit its page cache.
    pub fn with_read_cache(
        client: Client,
        exports: Vec<ExportConfig>,
        max_dirty: u64,
        read_cache: u64,
    ) -> Fs {
        let mut verf = [0u8; 8];
        rand::Rng::fill(&mut rand::thread_rng(), &mut verf);
        let budget = usize::try_from(read_cache).unwrap_or(usize::MAX);
        let cache = crate::cache::ReadCache::new(client.clone(), budget);
        Fs {
            client,
            exports: RwLock::new(
                exports
                    .into_iter()
                    .map(|c| Arc::new(Export::new(c)))
                    .collect(),
            ),
            files: Mutex::new(HashMap::new()),
            cookies: Mutex::new(Cookies::default()),
            ids: Mutex::new(HashMap::new()),
            ids_loaded: Mutex::new(HashMap::new()),
            verf,
            max_dirty: max_dirty.max(8 << 20),
            dirty_changed: tokio::sync::Notify::new(),
            counters: FsCounters::default(),
            cache,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// The write verifier of this server instance.
    pub fn verifier(&self) -> [u8; 8] {
        self.verf
    }

    /// Replaces the exports (a reload of the exports file).
    pub fn set_exports(&self, exports: Vec<ExportConfig>) {
        let mut cur = self.exports.write();
        if cur.iter().map(|e| &e.config).eq(exports.iter()) {
            return;
        }
        *cur = exports
            .into_iter()
            .map(|c| Arc::new(Export::new(c)))
            .collect();
    }

    /// The exports.
    pub fn exports(&self) -> Vec<Arc<Export>> {
        self.exports.read().clone()
    }

    /// The export mounted as `path` (`/BUCKET` or `BUCKET`).
    pub fn export_by_path(&self, path: &str) -> Option<Arc<Export>> {
        let b = path.trim_start_matches('/').trim_end_matches('/');
        self.exports
            .read()
            .iter()
            .find(|e| e.config.bucket == b)
            .cloned()
    }

    fn export_by_id(&self, id: u32) -> Option<Arc<Export>> {
        self.exports.read().iter().find(|e| e.id == id).cloned()
    }

    /// The root of `export` (STALE when its bucket is gone).
    pub async fn root(&self, export: &Arc<Export>) -> Result<Node, Nfsstat3> {
        self.client
            .head_bucket(export.bucket())
            .await
            .map_err(|e| match e {
                ClientError::NoSuchBucket(_) => Nfsstat3::Noent,
                e => io(e),
            })?;
        Ok(self.root_node(export))
    }

    fn root_node(&self, export: &Arc<Export>) -> Node {
        let fileid = attr::fileid_of(export.bucket(), "");
        Node {
            export: export.clone(),
            key: String::new(),
            kind: Kind::Dir,
            attr: attr::implicit_dir(export.id as u64, fileid, attr::ROOT_MODE),
            version: None,
        }
    }

    /// What `key` is now (`a/` a directory, `a` a file or symlink), with attributes.
    /// The current version of `key` in `export`'s bucket. On a site whose metadata store
    /// says when it changed (single-node sites), a lookup is reused while no metadata write
    /// became visible since it was made: every READ, WRITE and GETATTR resolves its handle,
    /// and a file read at random otherwise costs a metadata read per call. Any write makes
    /// the next lookup read again, so what S3 writers change is seen at once.
    async fn current_of(
        &self,
        export: &Arc<Export>,
        key: &str,
    ) -> Result<Option<Arc<VersionManifest>>, Nfsstat3> {
        // Taken before the read: a write that becomes visible after it changes it.
        let generation = self.client.meta_generation();
        let slot = (export.id, key.to_string());
        if let Some(g) = generation {
            if let Some((at, m)) = self.resolved.lock().get(&slot) {
                if *at == g {
                    return Ok(Some(m.clone()));
                }
            }
        }
        // Boxed here and below: calls on the per-READ path that are often skipped keep their
        // large futures off the stack of every call (each await copied them whole).
        let read = Box::pin(
            self.client
                .read_object(export.bucket(), key, &VersionSel::Current),
        )
        .await
        .map_err(io)?;
        let found = read.manifest().ok().cloned().map(Arc::new);
        if let (Some(g), Some(m)) = (generation, &found) {
            let mut resolved = self.resolved.lock();
            if resolved.len() >= MAX_RESOLVED {
                resolved.clear();
            }
            resolved.insert(slot, (g, m.clone()));
        }
        Ok(found)
    }

    async fn stat(&self, export: &Arc<Export>, key: &str) -> Result<Node, Nfsstat3> {
        if key.is_empty() {
            return Ok(self.root_node(export));
        }
        let bucket = export.bucket();
        let found = self.current_of(export, key).await?;
        self.ensure_ids(export).await?;
        if let Some(m) = found {
            let fileid = self.fileid(export, key, Some(&m));
            let mut node = Node {
                export: export.clone(),
                key: key.to_string(),
                kind: attr::kind_of(key, &m),
                attr: attr::attr_of(export.id as u64, fileid, key, &m),
                version: Some(m),
            };
            self.overlay_attr(&mut node);
            return Ok(node);
        }
        if key.ends_with('/') {
            let page = Box::pin(self.client.list_objects(
                bucket,
                &ListQuery {
                    prefix: key.to_string(),
                    delimiter: None,
                    start_after: None,
                    max_keys: 1,
                },
            ))
            .await
            .map_err(io)?;
            if !page.objects.is_empty() {
                let fileid = self.fileid(export, key, None);
                return Ok(Node {
                    export: export.clone(),
                    key: key.to_string(),
                    kind: Kind::Dir,
                    attr: attr::implicit_dir(export.id as u64, fileid, attr::DEFAULT_DIR_MODE),
                    version: None,
                });
            }
        }
        Err(Nfsstat3::Noent)
    }

    /// Counts a file's buffered writes in its attributes.
    fn overlay_attr(&self, node: &mut Node) {
        if node.kind == Kind::Dir {
            return;
        }
        let f = self
            .files
            .lock()
            .get(&(node.export.id, node.attr.fileid))
            .cloned();
        if let Some(f) = f {
            let st = f.state.lock();
            node.attr.size = st.size;
            node.attr.used = attr::used_of(st.size);
            node.attr.mtime = st.mtime;
            node.attr.ctime = node.attr.ctime.max(st.mtime);
        }
    }

    /// The node a handle names: BADHANDLE for what this server never made, STALE for what
    /// no longer exists.
    pub async fn resolve(&self, fh: &NfsFh3) -> Result<Node, Nfsstat3> {
        let h = Handle::decode(fh).ok_or(Nfsstat3::Badhandle)?;
        let export = self.export_by_id(h.export).ok_or(Nfsstat3::Stale)?;
        if let Some(key) = &h.key {
            match self.stat(&export, key).await {
                Ok(n) if n.attr.fileid == h.fileid => return Ok(n),
                Ok(_) | Err(Nfsstat3::Noent) => {}
                Err(e) => return Err(e),
            }
        }
        // Renamed since the handle was made, or a key too long for it.
        let key = Box::pin(self.id_lookup(&export, h.fileid)).await?;
        match key {
            Some(key) => match self.stat(&export, &key).await {
                Ok(n) if n.attr.fileid == h.fileid => Ok(n),
                Ok(_) | Err(Nfsstat3::Noent) => Err(Nfsstat3::Stale),
                Err(e) => Err(e),
            },
            None => Err(Nfsstat3::Stale),
        }
    }

    fn id_key(export: &Export, fileid: u64) -> String {
        format!("ids/{:08x}/{fileid:016x}", export.id)
    }

    async fn id_lookup(&self, export: &Export, fileid: u64) -> Result<Option<String>, Nfsstat3> {
        if let Some(k) = self.ids.lock().get(&(export.id, fileid)) {
            return Ok(Some(k.clone()));
        }
        let read = match Box::pin(self.client.read_object(
            ID_BUCKET,
            &Self::id_key(export, fileid),
            &VersionSel::Current,
        ))
        .await
        {
            Ok(r) => r,
            Err(ClientError::NoSuchBucket(_)) => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let Ok(m) = read.manifest() else {
            return Ok(None);
        };
        let key = match attr::inline_bytes(m) {
            Some(b) => String::from_utf8(b.to_vec()).map_err(|_| Nfsstat3::Serverfault)?,
            None => return Ok(None),
        };
        self.remember_id(export.id, fileid, &key);
        Ok(Some(key))
    }

    fn remember_id(&self, export: u32, fileid: u64, key: &str) {
        self.ids.lock().insert((export, fileid), key.to_string());
    }

    /// Loads the export's id table when it was not read in the last [`IDS_RELOAD`].
    async fn ensure_ids(&self, export: &Export) -> Result<(), Nfsstat3> {
        let fresh = self
            .ids_loaded
            .lock()
            .get(&export.id)
            .is_some_and(|t| t.elapsed() < IDS_RELOAD);
        if fresh {
            return Ok(());
        }
        let prefix = format!("ids/{:08x}/", export.id);
        let (mut after, mut found) = (None, Vec::new());
        loop {
            let q = ListQuery {
                prefix: prefix.clone(),
                delimiter: None,
                start_after: after.clone(),
                max_keys: 1000,
            };
            let page = match Box::pin(self.client.list_objects(ID_BUCKET, &q)).await {
                Ok(p) => p,
                Err(ClientError::NoSuchBucket(_)) => break,
                Err(e) => return Err(io(e)),
            };
            for m in &page.objects {
                let id = m
                    .key
                    .strip_prefix(&prefix)
                    .and_then(|h| u64::from_str_radix(h, 16).ok());
                let key = attr::inline_bytes(m).and_then(|b| String::from_utf8(b.to_vec()).ok());
                if let (Some(id), Some(key)) = (id, key) {
                    found.push((id, key));
                }
            }
            match page.objects.last() {
                Some(m) if page.is_truncated => after = Some(m.key.clone()),
                _ => break,
            }
        }
        let mut ids = self.ids.lock();
        for (id, key) in found {
            ids.insert((export.id, id), key);
        }
        self.ids_loaded.lock().insert(export.id, Instant::now());
        Ok(())
    }

    /// The file id of `key` (holding version `m`, or an implicit directory when `None`): the
    /// id the version keeps, else its key's, unless a file renamed away from this key took
    /// that one (the id table says it lives elsewhere): then one of its own, from its version
    /// (or, for an implicit directory, from the key alone).
    fn fileid(&self, export: &Export, key: &str, m: Option<&VersionManifest>) -> u64 {
        if let Some(id) = m.and_then(|m| attr::stored_ino(&m.user_metadata)) {
            return id;
        }
        let bucket = export.bucket();
        let own = attr::fileid_of(bucket, key);
        let moved = self
            .ids
            .lock()
            .get(&(export.id, own))
            .is_some_and(|k| k != key);
        if !moved {
            return own;
        }
        match m {
            Some(m) => attr::fileid_of(bucket, &format!("{key}\0{}", m.version)),
            None => attr::fileid_of(bucket, &format!("{key}\0implicit")),
        }
    }

    /// Records that `fileid` is at `key` now (a rename, or a key its handle cannot carry).
    async fn id_record(&self, export: &Export, fileid: u64, key: &str) -> Result<(), Nfsstat3> {
        if self
            .ids
            .lock()
            .get(&(export.id, fileid))
            .map(String::as_str)
            == Some(key)
        {
            return Ok(());
        }
        let put = |c: Client, k: String, v: String| async move {
            c.put_object(
                ID_BUCKET,
                &k,
                body_of(Bytes::from(v.clone().into_bytes())),
                PutOptions {
                    content_length: Some(v.len() as u64),
                    owner: ID_OWNER.to_string(),
                    ..PutOptions::default()
                },
            )
            .await
        };
        let k = Self::id_key(export, fileid);
        match put(self.client.clone(), k.clone(), key.to_string()).await {
            Ok(_) => {}
            Err(ClientError::NoSuchBucket(_)) => {
                match self.client.create_bucket(ID_BUCKET, ID_OWNER).await {
                    Ok(_) | Err(ClientError::BucketAlreadyOwnedByYou(_)) => {}
                    Err(ClientError::BucketAlreadyExists(_)) => {}
                    Err(e) => return Err(io(e)),
                }
                put(self.client.clone(), k, key.to_string())
                    .await
                    .map_err(io)?;
            }
            Err(e) => return Err(io(e)),
        }
        self.remember_id(export.id, fileid, key);
        Ok(())
    }

    /// A node to hand out: long keys get an id table entry first, so their handles resolve.
    async fn handed_out(&self, node: Node) -> Result<Node, Nfsstat3> {
        if node.key.len() > crate::handle::MAX_INLINE_KEY {
            self.id_record(&node.export, node.attr.fileid, &node.key)
                .await?;
        }
        Ok(node)
    }

    /// Looks `name` up in `dir`.
    pub async fn lookup(&self, dir: &Node, name: &[u8]) -> Result<Node, Nfsstat3> {
        if !dir.is_dir() {
            return Err(Nfsstat3::Notdir);
        }
        match name {
            b"." => return Ok(dir.clone()),
            b".." => {
                let parent = parent_key(&dir.key);
                return self.stat(&dir.export, &parent).await;
            }
            _ => {}
        }
        let name = check_name(name)?;
        let key = format!("{}{name}", dir.key);
        let node = match self.stat(&dir.export, &key).await {
            Err(Nfsstat3::Noent) => self.stat(&dir.export, &format!("{key}/")).await?,
            r => r?,
        };
        self.handed_out(node).await
    }

    /// Attributes of `node` as they are now.
    pub async fn getattr(&self, node: &Node) -> Fattr3 {
        let mut n = node.clone();
        self.overlay_attr(&mut n);
        n.attr
    }

    fn writable(&self, node: &Node) -> Result<(), Nfsstat3> {
        if node.export.config.read_only {
            Err(Nfsstat3::Rofs)
        } else {
            Ok(())
        }
    }

    /// Checks that `cred` may change the entries of `dir`.
    fn may_change_dir(&self, dir: &Node, cred: &Cred) -> Result<(), Nfsstat3> {
        self.writable(dir)?;
        if !dir.is_dir() {
            return Err(Nfsstat3::Notdir);
        }
        if !permitted(cred, &dir.attr, PERM_W | PERM_X) {
            return Err(Nfsstat3::Acces);
        }
        Ok(())
    }

    /// The bytes `[offset, offset + count)` of a file (fewer at its end), and whether they
    /// reach its end.
    pub async fn read(
        &self,
        node: &Node,
        offset: u64,
        count: u32,
    ) -> Result<(Bytes, bool), Nfsstat3> {
        match node.kind {
            Kind::Dir => return Err(Nfsstat3::Isdir),
            Kind::Symlink => return Err(Nfsstat3::Inval),
            Kind::File => {}
        }
        let open = self.open_file(node);
        let (base, pieces, size) = match &open {
            Some(f) => {
                let st = f.state.lock();
                let end = offset.saturating_add(count as u64).min(st.size);
                (st.base.clone(), st.segs.pieces(offset, end), st.size)
            }
            None => match &node.version {
                Some(v) => (v.clone(), Vec::new(), v.size),
                None => return Err(Nfsstat3::Stale),
            },
        };
        if offset >= size {
            return Ok((Bytes::new(), true));
        }
        let end = offset.saturating_add(count as u64).min(size);
        let stored_end = end.min(base.size);
        let stored = if offset < stored_end {
            self.read_stored(&base, offset, stored_end).await?
        } else {
            Bytes::new()
        };
        let len = (end - offset) as usize;
        if pieces.is_empty() && stored.len() == len {
            return Ok((stored, end == size));
        }
        let mut buf = BytesMut::zeroed(len);
        buf[..stored.len()].copy_from_slice(&stored);
        for (at, b) in pieces {
            let o = (at - offset) as usize;
            buf[o..o + b.len()].copy_from_slice(&b);
        }
        Ok((buf.freeze(), end == size))
    }

    async fn read_stored(
        &self,
        m: &VersionManifest,
        start: u64,
        end: u64,
    ) -> Result<Bytes, Nfsstat3> {
        refuse_customer_key(m)?;
        if m.encryption.is_some() {
            // Sealed under the site's or a KMS key: read (opened) through the object API,
            // not the chunk cache, which holds stored bytes.
            let got = Box::pin(self.client.get_object(
                &m.bucket,
                &m.key,
                &VersionSel::Id(m.version),
                Some(cairn_client::RangeSpec::FromTo(
                    start,
                    Some(end.saturating_sub(1)),
                )),
            ))
            .await
            .map_err(io)?;
            let mut out = BytesMut::with_capacity((end - start) as usize);
            let mut body = got.body;
            while let Some(piece) = body.next().await {
                out.extend_from_slice(&piece.map_err(io)?);
            }
            return Ok(out.freeze());
        }
        match &m.content {
            Content::Empty => Ok(Bytes::new()),
            Content::Inline(b) => Ok(b.slice(start as usize..(end as usize).min(b.len()))),
            Content::Tree(root) => self.cache.read(*root, start, end).await.map_err(io),
        }
    }

    /// A symlink's target.
    pub async fn readlink(&self, node: &Node) -> Result<Bytes, Nfsstat3> {
        if node.kind != Kind::Symlink {
            return Err(Nfsstat3::Inval);
        }
        let m = node.version.as_ref().ok_or(Nfsstat3::Stale)?;
        if m.size > crate::nfs3::PATH_MAX as u64 {
            return Err(Nfsstat3::Io);
        }
        self.read_stored(m, 0, m.size).await
    }

    fn open_file(&self, node: &Node) -> Option<Arc<OpenFile>> {
        self.files
            .lock()
            .get(&(node.export.id, node.attr.fileid))
            .cloned()
    }

    fn open_or_create(&self, node: &Node) -> Result<Arc<OpenFile>, Nfsstat3> {
        let base = node.version.clone().ok_or(Nfsstat3::Stale)?;
        let mut files = self.files.lock();
        let f = files
            .entry((node.export.id, node.attr.fileid))
            .or_insert_with(|| {
                Arc::new(OpenFile {
                    export: node.export.clone(),
                    key: node.key.clone(),
                    fileid: node.attr.fileid,
                    state: Mutex::new(FileState {
                        size: base.size,
                        mtime: node.attr.mtime,
                        base,
                        segs: Segments::default(),
                        touched: Instant::now(),
                    }),
                    commit: tokio::sync::Mutex::new(()),
                })
            });
        Ok(f.clone())
    }

    /// Writes `data` at `offset`; `sync` commits before returning. Returns whether the data
    /// is durable (committed) now.
    pub async fn write(
        &self,
        node: &Node,
        cred: &Cred,
        offset: u64,
        data: Bytes,
        sync: bool,
    ) -> Result<bool, Nfsstat3> {
        self.writable(node)?;
        match node.kind {
            Kind::Dir => return Err(Nfsstat3::Isdir),
            Kind::Symlink => return Err(Nfsstat3::Inval),
            Kind::File => {}
        }
        if !permitted(cred, &node.attr, PERM_W) && cred.uid != node.attr.uid {
            return Err(Nfsstat3::Acces);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= MAX_FILE_SIZE)
            .ok_or(Nfsstat3::Fbig)?;
        // Writers wait while the buffers are full: commits of the oldest files make room.
        while self.counters.dirty_bytes.load(Ordering::Relaxed) > self.max_dirty {
            let notified = self.dirty_changed.notified();
            self.commit_oldest().await;
            if self.counters.dirty_bytes.load(Ordering::Relaxed) > self.max_dirty {
                let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
            }
        }
        let f = self.open_or_create(node)?;
        {
            let mut st = f.state.lock();
            let before = st.segs.bytes();
            st.segs.write(offset, data);
            st.size = st.size.max(end);
            st.mtime = attr::now();
            st.touched = Instant::now();
            let after = st.segs.bytes();
            self.account(before, after);
        }
        if sync {
            self.commit_file(&f).await?;
        }
        Ok(sync)
    }

    fn account(&self, before: u64, after: u64) {
        if after >= before {
            self.counters
                .dirty_bytes
                .fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.counters
                .dirty_bytes
                .fetch_sub(before - after, Ordering::Relaxed);
            self.dirty_changed.notify_waiters();
        }
    }

    /// Makes everything buffered for `node` durable as a new version (COMMIT).
    pub async fn commit(&self, node: &Node) -> Result<(), Nfsstat3> {
        match self.open_file(node) {
            Some(f) => self.commit_file(&f).await,
            None => Ok(()),
        }
    }

    async fn commit_oldest(&self) {
        let oldest = {
            let files = self.files.lock();
            files
                .values()
                .filter(|f| !f.state.lock().segs.is_empty())
                .min_by_key(|f| f.state.lock().touched)
                .cloned()
        };
        if let Some(f) = oldest {
            if let Err(e) = self.commit_file(&f).await {
                tracing::warn!(key = %f.key, error = ?e, "NFS: a background commit failed");
            }
        }
    }

    /// Commits files whose buffers have not changed for `idle`, and forgets clean ones.
    pub async fn commit_idle(&self, idle: Duration) {
        let due: Vec<Arc<OpenFile>> = self
            .files
            .lock()
            .values()
            .filter(|f| f.state.lock().touched.elapsed() >= idle)
            .cloned()
            .collect();
        for f in due {
            if let Err(e) = self.commit_file(&f).await {
                tracing::warn!(key = %f.key, error = ?e, "NFS: a background commit failed");
                continue;
            }
            let mut files = self.files.lock();
            let clean = {
                let st = f.state.lock();
                st.segs.is_empty() && st.size == st.base.size && st.touched.elapsed() >= idle
            };
            if clean && Arc::strong_count(&f) <= 2 {
                files.remove(&(f.export.id, f.fileid));
            }
        }
    }

    /// Commits every buffered write (at shutdown).
    pub async fn commit_all(&self) {
        let all: Vec<Arc<OpenFile>> = self.files.lock().values().cloned().collect();
        for f in all {
            if let Err(e) = self.commit_file(&f).await {
                tracing::warn!(key = %f.key, error = ?e, "NFS: a commit at shutdown failed");
            }
        }
    }

    async fn commit_file(&self, f: &Arc<OpenFile>) -> Result<(), Nfsstat3> {
        let _one = f.commit.lock().await;
        for _ in 0..4 {
            let (base, snap, size, mtime) = {
                let st = f.state.lock();
                let unchanged = st.segs.is_empty()
                    && st.size == st.base.size
                    && attr::attr_of(0, 0, &f.key, &st.base).mtime == st.mtime;
                if unchanged {
                    return Ok(());
                }
                (st.base.clone(), st.segs.clone(), st.size, st.mtime)
            };
            let root = match self.build_tree(&base, &snap, size).await {
                Ok(r) => r,
                Err(e) => {
                    self.counters.commit_errors.fetch_add(1, Ordering::Relaxed);
                    return Err(io(e));
                }
            };
            let mut meta = base.user_metadata.clone();
            if attr::stored_ino(&meta).is_none()
                && f.fileid != attr::fileid_of(f.export.bucket(), &f.key)
            {
                // An id of its own (see `Fs::fileid`): kept, so the next versions keep it.
                meta.insert(attr::META_INO.into(), format!("{:x}", f.fileid));
            }
            meta.insert(attr::META_MTIME.into(), attr::format_time(mtime));
            meta.insert(attr::META_CTIME.into(), attr::format_time(attr::now()));
            let put = self
                .client
                .put_tree_with(
                    f.export.bucket(),
                    &f.key,
                    root,
                    base.headers.clone(),
                    meta,
                    Some(WriteCondition::IfMatch(base.etag.clone())),
                )
                .await;
            match put {
                Ok(put) => {
                    self.counters.commits.fetch_add(1, Ordering::Relaxed);
                    let mut st = f.state.lock();
                    let before = st.segs.bytes();
                    st.segs.forget(&snap);
                    let after = st.segs.bytes();
                    st.base = Arc::new(put.manifest);
                    if st.segs.is_empty() && st.mtime == mtime {
                        // As stored (whole seconds), so a clean file is not committed again.
                        st.mtime = attr::attr_of(0, 0, &f.key, &st.base).mtime;
                    }
                    self.account(before, after);
                    return Ok(());
                }
                Err(ClientError::PreconditionFailed) => {
                    // Another writer (S3, or another gateway) made a newer version: the
                    // buffered writes apply on top of it, as on a shared file.
                    let read = self
                        .client
                        .read_object(f.export.bucket(), &f.key, &VersionSel::Current)
                        .await
                        .map_err(io)?;
                    match read.manifest() {
                        Ok(m) => f.state.lock().base = Arc::new(m.clone()),
                        Err(_) => return Err(self.drop_file(f)),
                    }
                }
                Err(e) if e.kind() == ErrorKind::NotFound => return Err(self.drop_file(f)),
                Err(e) => {
                    self.counters.commit_errors.fetch_add(1, Ordering::Relaxed);
                    return Err(io(e));
                }
            }
        }
        Err(Nfsstat3::Jukebox)
    }

    /// The file was removed while it had buffered writes: they go (as writes to an unlinked
    /// file do).
    fn drop_file(&self, f: &Arc<OpenFile>) -> Nfsstat3 {
        let mut files = self.files.lock();
        let before = f.state.lock().segs.bytes();
        self.account(before, 0);
        f.state.lock().segs = Segments::default();
        files.remove(&(f.export.id, f.fileid));
        Nfsstat3::Stale
    }

    /// The tree of `base` resized to `size` with `segs` written over it; every chunk and node
    /// is durable when it returns.
    async fn build_tree(
        &self,
        base: &VersionManifest,
        segs: &Segments,
        size: u64,
    ) -> Result<Option<Child>, ClientError> {
        if base.encryption.is_some() {
            return Err(ClientError::AccessDenied(format!(
                "{} is stored with server-side encryption, which NFS does not write",
                base.key
            )));
        }
        let client = &self.client;
        let mut root = match &base.content {
            Content::Empty => None,
            Content::Tree(r) => Some(*r),
            Content::Inline(b) => {
                let leaf = Leaf {
                    len: b.len() as u64,
                    target: cairn_core::extent::Target::Inline(b.clone()),
                };
                splice(client, None, 0, 0, vec![leaf]).await?
            }
        };
        let len = root.map_or(0, |r| r.len);
        if size > len {
            root = splice(client, root, len, len, vec![Leaf::zeros(size - len)]).await?;
        } else if size < len {
            root = splice(client, root, size, len, Vec::new()).await?;
        }
        let Some(r) = root else {
            return Ok(None);
        };
        // Each buffered segment cut at extent boundaries: a chunk of just those bytes each
        // (all-zero ones cost nothing).
        let mut windows: Vec<(u64, Bytes)> = Vec::new();
        for (at, b) in segs.iter() {
            let mut pos = at;
            let end = (at + b.len() as u64).min(size);
            while pos < end {
                let w_end = ((pos / EXTENT + 1) * EXTENT).min(end);
                windows.push((pos, b.slice((pos - at) as usize..(w_end - at) as usize)));
                pos = w_end;
            }
        }
        if windows.is_empty() {
            return Ok(Some(r));
        }
        let to_hash = windows.clone();
        let leaves = tokio::task::spawn_blocking(move || {
            to_hash
                .iter()
                .map(|(_, b)| {
                    if b.iter().all(|&x| x == 0) {
                        (Leaf::zeros(b.len() as u64), None)
                    } else {
                        let id = ChunkId::of(b);
                        (Leaf::chunk(id, b.len() as u64), Some(id))
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| ClientError::Storage(format!("hashing a file's writes failed: {e}")))?;
        let chunks: Vec<Hashed> = leaves
            .iter()
            .zip(&windows)
            .filter_map(|((_, id), (_, b))| {
                id.map(|id| Hashed {
                    id,
                    bytes: b.clone(),
                    raw: false,
                })
            })
            .collect();
        let written: Vec<(ChunkId, Bytes)> =
            chunks.iter().map(|c| (c.id, c.bytes.clone())).collect();
        client.store_hashed_for(&base.bucket, chunks).await?;
        // What was just written is what is read next (the buffered bytes leave the write-back
        // buffer with this commit): reads find it in memory, not on disk.
        self.cache.insert_chunks(written);
        // Contiguous windows make one edit each.
        let mut edits: Vec<Overwrite> = Vec::new();
        let mut next = u64::MAX;
        for ((leaf, _), (at, b)) in leaves.into_iter().zip(windows) {
            match edits.last_mut() {
                Some(e) if next == at => e.leaves.push(leaf),
                _ => edits.push(Overwrite {
                    at,
                    leaves: vec![leaf],
                }),
            }
            next = at + b.len() as u64;
        }
        Ok(Some(overwrite(client, r, edits).await?))
    }

    /// Applies SETATTR: size (a commit follows), mode, owner, times. `guard` is the ctime the
    /// client expects (NOT_SYNC if it differs).
    pub async fn setattr(
        &self,
        node: &Node,
        cred: &Cred,
        set: &Sattr3,
        guard: Option<Nfstime3>,
    ) -> Result<(), Nfsstat3> {
        self.writable(node)?;
        if guard.is_some_and(|g| g != node.attr.ctime) {
            return Err(Nfsstat3::NotSync);
        }
        let owner = cred.uid == 0 || cred.uid == node.attr.uid;
        if (set.mode.is_some() || set.gid.is_some()) && !owner {
            return Err(Nfsstat3::Perm);
        }
        if set.uid.is_some_and(|u| u != node.attr.uid) && cred.uid != 0 {
            return Err(Nfsstat3::Perm);
        }
        let times = (set_time(set.atime), set_time(set.mtime));
        if (times.0.is_some() || times.1.is_some())
            && !owner
            && !permitted(cred, &node.attr, PERM_W)
        {
            return Err(Nfsstat3::Acces);
        }
        if let Some(size) = set.size {
            if node.kind != Kind::File {
                return Err(if node.is_dir() {
                    Nfsstat3::Isdir
                } else {
                    Nfsstat3::Inval
                });
            }
            if !permitted(cred, &node.attr, PERM_W) && !owner {
                return Err(Nfsstat3::Acces);
            }
            if size > MAX_FILE_SIZE {
                return Err(Nfsstat3::Fbig);
            }
            let f = self.open_or_create(node)?;
            {
                let mut st = f.state.lock();
                let before = st.segs.bytes();
                st.segs.truncate(size);
                st.size = size;
                st.mtime = times.1.unwrap_or_else(attr::now);
                st.touched = Instant::now();
                let after = st.segs.bytes();
                self.account(before, after);
            }
            self.commit_file(&f).await?;
        }
        if set.mode.is_none() && set.uid.is_none() && set.gid.is_none() && times == (None, None) {
            return Ok(());
        }
        // Attributes change in place (no new version), as S3 changes tags.
        if let Some(f) = self.open_file(node) {
            self.commit_file(&f).await?;
        }
        let kind = node.kind;
        let (mode, uid, gid) = (set.mode, set.uid, set.gid);
        let change = move |meta: &mut BTreeMap<String, String>| {
            if let Some(m) = set_mode_of(mode) {
                meta.insert(attr::META_MODE.into(), (kind.type_bits() | m).to_string());
            }
            if let Some(u) = uid {
                meta.insert(attr::META_UID.into(), u.to_string());
            }
            if let Some(g) = gid {
                meta.insert(attr::META_GID.into(), g.to_string());
            }
            if let Some(t) = times.0 {
                meta.insert(attr::META_ATIME.into(), attr::format_time(t));
            }
            if let Some(t) = times.1 {
                meta.insert(attr::META_MTIME.into(), attr::format_time(t));
            }
            meta.insert(attr::META_CTIME.into(), attr::format_time(attr::now()));
        };
        if node.key.is_empty() {
            // The root's attributes are the export's.
            return Ok(());
        }
        if node.version.is_none() {
            // A directory with no marker gets one, holding the attributes.
            let mut meta = attr::new_meta(Kind::Dir, attr::DEFAULT_DIR_MODE, 0, 0);
            meta.insert(attr::META_INO.into(), format!("{:x}", node.attr.fileid));
            change(&mut meta);
            return self
                .put_empty(&node.export, &node.key, meta, dir_headers(), None)
                .await;
        }
        self.client
            .update_version(
                node.export.bucket(),
                &node.key,
                &VersionSel::Current,
                move |m: &mut VersionManifest| {
                    change(&mut m.user_metadata);
                    Ok(())
                },
            )
            .await
            .map_err(io)?;
        if let Some(f) = self.open_file(node) {
            // The buffer's base is the version just changed.
            if let Ok(r) = self
                .client
                .read_object(node.export.bucket(), &node.key, &VersionSel::Current)
                .await
            {
                if let Ok(m) = r.manifest() {
                    let mut st = f.state.lock();
                    st.base = Arc::new(m.clone());
                    st.mtime = attr::attr_of(0, 0, &node.key, m).mtime;
                }
            }
        }
        Ok(())
    }

    async fn put_empty(
        &self,
        export: &Export,
        key: &str,
        meta: BTreeMap<String, String>,
        headers: ContentHeaders,
        condition: Option<WriteCondition>,
    ) -> Result<(), Nfsstat3> {
        self.put_bytes(export, key, Bytes::new(), meta, headers, condition)
            .await
    }

    async fn put_bytes(
        &self,
        export: &Export,
        key: &str,
        body: Bytes,
        meta: BTreeMap<String, String>,
        headers: ContentHeaders,
        condition: Option<WriteCondition>,
    ) -> Result<(), Nfsstat3> {
        let owner = self
            .client
            .head_bucket(export.bucket())
            .await
            .map_err(io)?
            .owner;
        let len = body.len() as u64;
        let b = if body.is_empty() {
            empty_body()
        } else {
            body_of(body)
        };
        self.client
            .put_object(
                export.bucket(),
                key,
                b,
                PutOptions {
                    headers,
                    user_metadata: meta,
                    content_length: Some(len),
                    owner,
                    condition,
                    ..PutOptions::default()
                },
            )
            .await
            .map(|_| ())
            .map_err(|e| match e {
                ClientError::PreconditionFailed => Nfsstat3::Exist,
                e => io(e),
            })
    }

    /// Whether `key` (a file) or `key/` (a directory) exists in `dir`.
    async fn existing(&self, dir: &Node, name: &str) -> Result<Option<Node>, Nfsstat3> {
        match self.lookup(dir, name.as_bytes()).await {
            Ok(n) => Ok(Some(n)),
            Err(Nfsstat3::Noent) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// CREATE.
    pub async fn create(
        &self,
        dir: &Node,
        name: &[u8],
        how: &CreateHow,
        cred: &Cred,
    ) -> Result<Node, Nfsstat3> {
        let name = check_name(name)?;
        self.may_change_dir(dir, cred)?;
        let key = format!("{}{name}", dir.key);
        let existing = self.existing(dir, name).await?;
        let (set, verf) = match how {
            CreateHow::Unchecked(s) => (s.clone(), None),
            CreateHow::Guarded(s) => {
                if existing.is_some() {
                    return Err(Nfsstat3::Exist);
                }
                (s.clone(), None)
            }
            CreateHow::Exclusive(v) => (Sattr3::default(), Some(hex::encode(v))),
        };
        if let Some(n) = existing {
            if n.is_dir() {
                return Err(Nfsstat3::Exist);
            }
            if let Some(v) = &verf {
                // A retransmitted exclusive create finds its own file.
                let same = n
                    .version
                    .as_ref()
                    .and_then(|m| m.user_metadata.get(attr::META_CREATEVERF))
                    == Some(v);
                return if same { Ok(n) } else { Err(Nfsstat3::Exist) };
            }
            // UNCHECKED on an existing file: only its attributes (a size of 0 truncates).
            self.setattr(&n, cred, &set, None).await?;
            return self.lookup(dir, name.as_bytes()).await;
        }
        let perm = set_mode_of(set.mode).unwrap_or(attr::DEFAULT_FILE_MODE);
        let mut meta = attr::new_meta(Kind::File, perm, cred.uid, set.gid.unwrap_or(cred.gid));
        if let Some(u) = set.uid.filter(|_| cred.uid == 0) {
            meta.insert(attr::META_UID.into(), u.to_string());
        }
        if let Some(v) = verf {
            meta.insert(attr::META_CREATEVERF.into(), v);
        }
        let condition =
            (!matches!(how, CreateHow::Unchecked(_))).then_some(WriteCondition::IfNoneMatchAny);
        self.put_empty(
            &dir.export,
            &key,
            meta,
            ContentHeaders::default(),
            condition,
        )
        .await?;
        let node = self.stat(&dir.export, &key).await?;
        self.handed_out(node).await
    }

    /// MKDIR: a `name/` marker object.
    pub async fn mkdir(
        &self,
        dir: &Node,
        name: &[u8],
        set: &Sattr3,
        cred: &Cred,
    ) -> Result<Node, Nfsstat3> {
        let name = check_name(name)?;
        self.may_change_dir(dir, cred)?;
        if self.existing(dir, name).await?.is_some() {
            return Err(Nfsstat3::Exist);
        }
        let key = format!("{}{name}/", dir.key);
        let perm = set_mode_of(set.mode).unwrap_or(attr::DEFAULT_DIR_MODE);
        let meta = attr::new_meta(Kind::Dir, perm, cred.uid, set.gid.unwrap_or(cred.gid));
        self.put_empty(
            &dir.export,
            &key,
            meta,
            dir_headers(),
            Some(WriteCondition::IfNoneMatchAny),
        )
        .await?;
        let node = self.stat(&dir.export, &key).await?;
        self.handed_out(node).await
    }

    /// SYMLINK: an object holding the target, with a symlink mode.
    pub async fn symlink(
        &self,
        dir: &Node,
        name: &[u8],
        target: &[u8],
        cred: &Cred,
    ) -> Result<Node, Nfsstat3> {
        let name = check_name(name)?;
        self.may_change_dir(dir, cred)?;
        if target.is_empty() || target.len() > crate::nfs3::PATH_MAX {
            return Err(Nfsstat3::Inval);
        }
        if self.existing(dir, name).await?.is_some() {
            return Err(Nfsstat3::Exist);
        }
        let key = format!("{}{name}", dir.key);
        let meta = attr::new_meta(Kind::Symlink, 0o777, cred.uid, cred.gid);
        self.put_bytes(
            &dir.export,
            &key,
            Bytes::copy_from_slice(target),
            meta,
            ContentHeaders::default(),
            Some(WriteCondition::IfNoneMatchAny),
        )
        .await?;
        let node = self.stat(&dir.export, &key).await?;
        self.handed_out(node).await
    }

    /// REMOVE (files and symlinks).
    pub async fn remove(&self, dir: &Node, name: &[u8], cred: &Cred) -> Result<(), Nfsstat3> {
        let name = check_name(name)?;
        self.may_change_dir(dir, cred)?;
        let node = self.lookup(dir, name.as_bytes()).await?;
        if node.is_dir() {
            return Err(Nfsstat3::Isdir);
        }
        self.forget_file(&node);
        self.client
            .delete_object(node.export.bucket(), &node.key, &VersionSel::Current)
            .await
            .map_err(io)?;
        Ok(())
    }

    fn forget_file(&self, node: &Node) {
        let f = self
            .files
            .lock()
            .remove(&(node.export.id, node.attr.fileid));
        if let Some(f) = f {
            let before = f.state.lock().segs.bytes();
            self.account(before, 0);
        }
    }

    /// RMDIR (empty directories only).
    pub async fn rmdir(&self, dir: &Node, name: &[u8], cred: &Cred) -> Result<(), Nfsstat3> {
        let name = check_name(name)?;
        self.may_change_dir(dir, cred)?;
        let node = self.lookup(dir, name.as_bytes()).await?;
        if !node.is_dir() {
            return Err(Nfsstat3::Notdir);
        }
        if !self.dir_is_empty(&node).await? {
            return Err(Nfsstat3::Notempty);
        }
        if node.version.is_some() {
            self.client
                .delete_object(node.export.bucket(), &node.key, &VersionSel::Current)
                .await
                .map_err(io)?;
        }
        Ok(())
    }

    async fn dir_is_empty(&self, dir: &Node) -> Result<bool, Nfsstat3> {
        let page = self
            .client
            .list_objects(
                dir.export.bucket(),
                &ListQuery {
                    prefix: dir.key.clone(),
                    delimiter: None,
                    start_after: None,
                    max_keys: 2,
                },
            )
            .await
            .map_err(io)?;
        Ok(page.objects.iter().all(|m| m.key == dir.key))
    }

    /// RENAME of a file, symlink or directory (a directory's keys are re-keyed by reference:
    /// no data moves). Files and directories keep their file ids and handles.
    pub async fn rename(
        &self,
        from_dir: &Node,
        from_name: &[u8],
        to_dir: &Node,
        to_name: &[u8],
        cred: &Cred,
    ) -> Result<(), Nfsstat3> {
        let from_name = check_name(from_name)?;
        let to_name = check_name(to_name)?;
        self.may_change_dir(from_dir, cred)?;
        self.may_change_dir(to_dir, cred)?;
        if from_dir.export.id != to_dir.export.id {
            return Err(Nfsstat3::Xdev);
        }
        let src = self.lookup(from_dir, from_name.as_bytes()).await?;
        let target = self.existing(to_dir, to_name).await?;
        let export = from_dir.export.clone();
        if !src.is_dir() {
            let dst_key = format!("{}{to_name}", to_dir.key);
            if dst_key == src.key {
                return Ok(());
            }
            if let Some(t) = &target {
                if t.is_dir() {
                    return Err(Nfsstat3::Isdir);
                }
                self.forget_file(t);
            }
            // Buffered writes go with the file: committed under its old key first.
            if let Some(f) = self.open_file(&src) {
                self.commit_file(&f).await?;
                self.files.lock().remove(&(f.export.id, f.fileid));
            }
            self.move_object(&export, &src.key, &dst_key, src.attr.fileid)
                .await?;
            return Ok(());
        }
        let dst_prefix = format!("{}{to_name}/", to_dir.key);
        if dst_prefix == src.key {
            return Ok(());
        }
        if dst_prefix.starts_with(&src.key) {
            return Err(Nfsstat3::Inval);
        }
        if let Some(t) = &target {
            if !t.is_dir() {
                return Err(Nfsstat3::Notdir);
            }
            if !self.dir_is_empty(t).await? {
                return Err(Nfsstat3::Notempty);
            }
            if t.version.is_some() {
                self.client
                    .delete_object(export.bucket(), &t.key, &VersionSel::Current)
                    .await
                    .map_err(io)?;
            }
        }
        // Buffered writes under the directory are committed first, then every key moves.
        let pending: Vec<Arc<OpenFile>> = self
            .files
            .lock()
            .values()
            .filter(|f| f.export.id == export.id && f.key.starts_with(&src.key))
            .cloned()
            .collect();
        for f in pending {
            self.commit_file(&f).await?;
            self.files.lock().remove(&(f.export.id, f.fileid));
        }
        let mut after: Option<String> = None;
        let mut had_marker = false;
        loop {
            let page = self
                .client
                .list_objects(
                    export.bucket(),
                    &ListQuery {
                        prefix: src.key.clone(),
                        delimiter: None,
                        start_after: after.clone(),
                        max_keys: 1000,
                    },
                )
                .await
                .map_err(io)?;
            for m in &page.objects {
                let rest = &m.key[src.key.len()..];
                let new_key = format!("{dst_prefix}{rest}");
                let fileid = self.fileid(&export, &m.key, Some(m));
                had_marker |= rest.is_empty();
                self.move_object(&export, &m.key, &new_key, fileid).await?;
            }
            match page.objects.last() {
                Some(m) if page.is_truncated => after = Some(m.key.clone()),
                _ => break,
            }
        }
        if !had_marker {
            // The directory had no marker: the new one keeps its file id.
            let mut meta = attr::new_meta(Kind::Dir, attr::DEFAULT_DIR_MODE, 0, 0);
            meta.insert(attr::META_INO.into(), format!("{:x}", src.attr.fileid));
            self.put_empty(&export, &dst_prefix, meta, dir_headers(), None)
                .await?;
            self.id_record(&export, src.attr.fileid, &dst_prefix)
                .await?;
        }
        Ok(())
    }

    /// Copies `from` to `to` by reference, keeping its file id, then removes `from`.
    async fn move_object(
        &self,
        export: &Export,
        from: &str,
        to: &str,
        fileid: u64,
    ) -> Result<(), Nfsstat3> {
        let bucket = export.bucket();
        let src = self
            .client
            .read_object(bucket, from, &VersionSel::Current)
            .await
            .map_err(io)?;
        let m = src.manifest().map_err(|_| Nfsstat3::Noent)?.clone();
        // The moved object stays encrypted as it was; a customer's key is not known here.
        let encryption = match &m.encryption {
            None => None,
            Some(cairn_client::Encryption::Site) => Some(cairn_client::crypt::Sse::Site),
            Some(cairn_client::Encryption::Kms {
                key_id,
                context,
                bucket_key,
            }) => Some(cairn_client::crypt::Sse::Kms {
                key_id: Some(key_id.clone()),
                context: context.clone(),
                bucket_key: *bucket_key,
            }),
            Some(cairn_client::Encryption::Customer { .. }) => return Err(Nfsstat3::Acces),
        };
        let mut meta = m.user_metadata.clone();
        meta.insert(attr::META_INO.into(), format!("{fileid:x}"));
        meta.insert(attr::META_CTIME.into(), attr::format_time(attr::now()));
        self.client
            .copy_object(
                bucket,
                from,
                &VersionSel::Current,
                bucket,
                to,
                CopyOptions {
                    metadata: MetadataDirective::Replace {
                        headers: m.headers.clone(),
                        user_metadata: meta,
                    },
                    tags: None,
                    owner: m.owner.clone(),
                    acl: Vec::new(),
                    lock: Default::default(),
                    encryption,
                    source_key: None,
                },
            )
            .await
            .map_err(io)?;
        // The id table first: a handle made before the rename finds the file at once.
        self.id_record(export, fileid, to).await?;
        self.client
            .delete_object(bucket, from, &VersionSel::Current)
            .await
            .map_err(io)?;
        Ok(())
    }

    /// READDIR / READDIRPLUS: entries of `dir` after `cookie`, as many as `fits` accepts
    /// (it is given each entry in turn and says whether it still fits the reply). Returns
    /// the entries and whether the listing reached the end.
    pub async fn readdir(
        &self,
        dir: &Node,
        cookie: u64,
        verf: [u8; 8],
        plus: bool,
        mut fits: impl FnMut(&DirEntry) -> bool,
    ) -> Result<(Vec<DirEntry>, bool), Nfsstat3> {
        if !dir.is_dir() {
            return Err(Nfsstat3::Notdir);
        }
        if cookie != 0 && verf != self.verf && verf != [0; 8] {
            return Err(Nfsstat3::BadCookie);
        }
        self.ensure_ids(&dir.export).await?;
        let mut out: Vec<DirEntry> = Vec::new();
        // "." and ".." come first, with cookies 1 and 2.
        let mut after: Option<String> = match cookie {
            0..=2 => None,
            c => {
                let found = self.cookies.lock().map.get(&c).cloned();
                match found {
                    Some((d, k)) if d == dir.attr.fileid => Some(k),
                    _ => return Err(Nfsstat3::BadCookie),
                }
            }
        };
        if cookie < 2 {
            let dots: &[(&[u8], u64)] = if cookie == 0 {
                &[(b".", 1), (b"..", 2)]
            } else {
                &[(b"..", 2)]
            };
            for (name, c) in dots {
                let node = if *name == b"." {
                    dir.clone()
                } else {
                    self.stat(&dir.export, &parent_key(&dir.key))
                        .await
                        .unwrap_or_else(|_| dir.clone())
                };
                let e = DirEntry {
                    name: name.to_vec(),
                    fileid: node.attr.fileid,
                    cookie: *c,
                    plus: plus.then(|| (node.attr.clone(), node.handle())),
                };
                if !fits(&e) {
                    return Ok((out, false));
                }
                out.push(e);
            }
        }
        let bucket = dir.export.bucket().to_string();
        loop {
            let page = self
                .client
                .list_objects(
                    &bucket,
                    &ListQuery {
                        prefix: dir.key.clone(),
                        delimiter: Some("/".into()),
                        start_after: after.clone(),
                        max_keys: PAGE,
                    },
                )
                .await
                .map_err(io)?;
            // Objects and prefixes, merged in key order.
            let mut items: Vec<(String, Option<&VersionManifest>)> = page
                .objects
                .iter()
                .map(|m| (m.key.clone(), Some(m)))
                .chain(page.common_prefixes.iter().map(|p| (p.clone(), None)))
                .collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, m) in items {
                let name = key[dir.key.len()..].trim_end_matches('/');
                if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                    // The directory's own marker, or a key no file name can show.
                    after = Some(key);
                    continue;
                }
                let (fileid, plus_attrs) = match m {
                    Some(m) => {
                        let id = self.fileid(&dir.export, &key, Some(m));
                        let node = Node {
                            export: dir.export.clone(),
                            key: key.clone(),
                            kind: attr::kind_of(&key, m),
                            attr: attr::attr_of(dir.export.id as u64, id, &key, m),
                            version: Some(Arc::new(m.clone())),
                        };
                        (id, plus.then_some(node))
                    }
                    None if plus => match self.stat(&dir.export, &key).await {
                        Ok(n) => (n.attr.fileid, Some(n)),
                        Err(_) => (self.fileid(&dir.export, &key, None), None),
                    },
                    None => (self.fileid(&dir.export, &key, None), None),
                };
                let plus_attrs = match plus_attrs {
                    Some(mut n) => {
                        self.overlay_attr(&mut n);
                        if n.key.len() > crate::handle::MAX_INLINE_KEY {
                            self.id_record(&n.export, n.attr.fileid, &n.key).await?;
                        }
                        Some((n.attr.clone(), n.handle()))
                    }
                    None => None,
                };
                let mut e = DirEntry {
                    name: name.as_bytes().to_vec(),
                    fileid,
                    cookie: 0,
                    plus: plus_attrs,
                };
                if !fits(&e) {
                    return Ok((out, false));
                }
                e.cookie = self.cookies.lock().issue(dir.attr.fileid, key.clone());
                out.push(e);
                after = Some(key);
            }
            if !page.is_truncated {
                return Ok((out, true));
            }
            if let Some(m) = page.next_marker {
                after = Some(m);
            }
        }
    }

    /// Bytes stored and the number of versions, for FSSTAT.
    pub async fn usage(&self) -> (u64, u64) {
        match self.client.stats().await {
            Ok(s) => (s.physical_bytes, s.versions),
            Err(_) => (0, 0),
        }
    }

    /// The pre-operation attributes and post-operation attributes of `node` after a change.
    pub async fn wcc(&self, before: &Fattr3, node: &Node) -> WccData {
        let after = self
            .stat(&node.export, &node.key)
            .await
            .ok()
            .map(|n| n.attr);
        WccData {
            before: Some(attr::wcc_of(before)),
            after,
        }
    }

    /// Attributes of `node` read again (after a change), if it still exists.
    pub async fn reread(&self, node: &Node) -> Option<Fattr3> {
        self.stat(&node.export, &node.key)
            .await
            .ok()
            .map(|n| n.attr)
    }
}

fn set_mode_of(mode: Option<u32>) -> Option<u32> {
    mode.map(|m| m & 0o7777)
}

fn dir_headers() -> ContentHeaders {
    ContentHeaders {
        content_type: Some("application/x-directory".into()),
        ..ContentHeaders::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_parents() {
        assert_eq!(check_name(b"a.txt"), Ok("a.txt"));
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0", &[0xff, 0xfe]] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_name(&[b'x'; 256]), Err(Nfsstat3::Nametoolong));
        assert_eq!(parent_key("a/b/c"), "a/b/");
        assert_eq!(parent_key("a/b/"), "a/");
        assert_eq!(parent_key("a"), "");
        assert_eq!(parent_key("a/"), "");
    }

    #[test]
    fn permissions_follow_owner_group_other() {
        let a = attr::implicit_dir(1, 5, 0o750);
        let mut a = Fattr3 {
            uid: 10,
            gid: 20,
            ..a
        };
        let user = Cred {
            uid: 10,
            gid: 99,
            gids: vec![],
        };
        let group = Cred {
            uid: 11,
            gid: 1,
            gids: vec![20],
        };
        let other = Cred {
            uid: 12,
            gid: 1,
            gids: vec![],
        };
        assert!(permitted(&user, &a, PERM_R | PERM_W | PERM_X));
        assert!(permitted(&group, &a, PERM_R | PERM_X));
        assert!(!permitted(&group, &a, PERM_W));
        assert!(!permitted(&other, &a, PERM_R));
        assert!(permitted(
            &Cred {
                uid: 0,
                gid: 0,
                gids: vec![]
            },
            &a,
            PERM_W
        ));
        a.type_ = crate::nfs3::Ftype3::Reg;
        a.mode = 0o644;
        assert!(!permitted(
            &Cred {
                uid: 0,
                gid: 0,
                gids: vec![]
            },
            &a,
            PERM_X
        ));
    }
}
