//! The RocksDB-backed chunk store.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cairn_core::codec::{self, Codec};
use cairn_core::format::{decode_body, FormatError, Versioned};
use cairn_core::space::{
    free_bytes, is_no_space_message, room_to_flush, write_buffer_for, SpaceGate, MAX_WRITE_BUFFER,
    ROCKSDB_OPEN_OPTIONS, WAL_WRITE_BUFFERS,
};
use cairn_core::{ChunkId, ChunkIdMap, MAX_CHUNK_SIZE};
use parking_lot::Mutex;
use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, MergeOperands, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

use crate::ChunkError;

const CF_INDEX: &str = "index";
const CF_DATA: &str = "data";
const CF_META: &str = "meta";
const STAT_CHUNKS: &[u8] = b"chunks";
const STAT_RAW: &[u8] = b"raw_bytes";
const STAT_STORED: &[u8] = b"stored_bytes";
/// `meta` key prefix of the fetch cache's entries: `cache/` + 32-byte id → [`CacheEntry`].
const CACHE_PREFIX: &[u8] = b"cache/";
/// `meta` key prefix of cache pins: `pinid/` + pin name + `\0` + 32-byte id → the
/// [`CacheEntry::stamp`] of the entry pinned (little-endian u64).
const PIN_PREFIX: &[u8] = b"pinid/";
/// Chunks evicted (or unpinned) per synced write batch.
const CACHE_BATCH: usize = 256;
/// The longest payload a chunk may be stored as: a compressed payload is only kept when it is
/// shorter than the raw bytes, so this leaves room for codec framing and nothing more.
pub const MAX_STORED_LEN: usize = MAX_CHUNK_SIZE + 1024;
/// Puts of the same chunk serialize on one of these stripes so "have it?" and the write are
/// atomic (exact stats, one write per chunk); different chunks rarely share a stripe.
const STRIPES: usize = 256;
/// Default [`ChunkConfig::touch_interval_ms`]: 10 minutes, a sixth of GC's default hold of an
/// hour, so a chunk a put deduplicated against stays protected for at least 50 minutes.
pub const DEFAULT_TOUCH_INTERVAL_MS: u64 = 10 * 60 * 1000;

/// Chunk-store settings.
#[derive(Clone, Debug)]
pub struct ChunkConfig {
    /// Sync the WAL on every put (on by default; only benchmarks of the engine turn it off).
    pub sync_writes: bool,
    /// Values at least this large go to blob files.
    pub min_blob_size: u64,
    /// A put of a chunk that is already stored refreshes its `touched_ms` only when the stored
    /// one is older than this (so a hot chunk is not rewritten on every put). GC's hold must be
    /// larger: see [`ChunkStore::touch_interval_ms`].
    pub touch_interval_ms: u64,
    /// The node's space gate: while it refuses writes, puts of chunks not stored yet fail
    /// with [`ChunkError::NoSpace`] (deletes, touches and scrub's `replace` go on), and a
    /// write that fails for lack of space is reported to it. `None`: no gate (tools, tests).
    pub space: Option<Arc<SpaceGate>>,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            sync_writes: true,
            min_blob_size: 4096,
            touch_interval_ms: DEFAULT_TOUCH_INTERVAL_MS,
            space: None,
        }
    }
}

/// Total bytes of the file system holding `dir` (`None` when it cannot be read).
fn fs_total_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_blocks.saturating_mul(st.f_frsize))
}

/// What the index knows of a stored chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkMeta {
    /// How the payload is encoded.
    pub codec: Codec,
    /// Uncompressed length.
    pub raw_len: u32,
    /// Payload length on disk.
    pub stored_len: u32,
    /// When it was first stored, unix ms.
    pub created_ms: u64,
    /// When a put last found it already stored (a deduplicated write), unix ms, refreshed at
    /// most once per touch interval; `created_ms` for entries written before this existed.
    pub touched_ms: u64,
    /// The owner tag ([`cairn_core::owner_tag`]) of the bucket whose write stored the chunk
    /// first ("first writer pays"), 0 when unattributed (written without a bucket, or before
    /// format 3). Set once when the chunk is stored and never changed by a deduplicated put:
    /// the store's per-owner counters follow it.
    pub owner: u64,
}

impl ChunkMeta {
    /// When the chunk was last written or deduplicated against: what GC's speculative hold
    /// counts from.
    pub fn last_referenced_ms(&self) -> u64 {
        self.created_ms.max(self.touched_ms)
    }
}

impl Versioned for ChunkMeta {
    const FORMAT: u8 = 3;
    const WHAT: &'static str = "chunk index entry";

    fn decode_older(version: u8, body: &[u8]) -> Option<Result<Self, FormatError>> {
        match version {
            1 => Some(
                decode_body::<ChunkMetaV1>(Self::WHAT, body).map(|m| ChunkMeta {
                    codec: m.codec,
                    raw_len: m.raw_len,
                    stored_len: m.stored_len,
                    created_ms: m.created_ms,
                    touched_ms: m.created_ms,
                    owner: 0,
                }),
            ),
            2 => Some(
                decode_body::<ChunkMetaV2>(Self::WHAT, body).map(|m| ChunkMeta {
                    codec: m.codec,
                    raw_len: m.raw_len,
                    stored_len: m.stored_len,
                    created_ms: m.created_ms,
                    touched_ms: m.touched_ms,
                    owner: 0,
                }),
            ),
            _ => None,
        }
    }
}

/// Format 2 of [`ChunkMeta`]: no `owner` (read as unattributed).
#[derive(Serialize, Deserialize)]
struct ChunkMetaV2 {
    codec: Codec,
    raw_len: u32,
    stored_len: u32,
    created_ms: u64,
    touched_ms: u64,
}

/// Format 1 of [`ChunkMeta`]: no `touched_ms`.
#[derive(Serialize, Deserialize)]
struct ChunkMetaV1 {
    codec: Codec,
    raw_len: u32,
    stored_len: u32,
    created_ms: u64,
}

/// A chunk in its stored (possibly compressed) form, as shipped between nodes and sites.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredChunk {
    /// Encoding of `payload`.
    pub codec: Codec,
    /// Uncompressed length.
    pub raw_len: u32,
    /// Encoded bytes.
    pub payload: Bytes,
}

impl StoredChunk {
    /// Raw chunk bytes stored as they are (no compression attempt).
    pub fn raw(raw: Bytes) -> StoredChunk {
        StoredChunk {
            codec: Codec::Raw,
            raw_len: raw.len() as u32,
            payload: raw,
        }
    }

    /// Encodes raw chunk bytes (compressing when it pays).
    pub fn encode(raw: Bytes) -> StoredChunk {
        let raw_len = raw.len() as u32;
        match codec::encode(&raw) {
            (Codec::Zstd, Some(c)) => StoredChunk {
                codec: Codec::Zstd,
                raw_len,
                payload: Bytes::from(c),
            },
            _ => StoredChunk {
                codec: Codec::Raw,
                raw_len,
                payload: raw,
            },
        }
    }

    /// Decodes to the raw bytes and checks they hash to `id`.
    pub fn decode_verified(&self, id: &ChunkId) -> Result<Bytes, ChunkError> {
        let raw = match self.codec {
            Codec::Raw => self.payload.clone(),
            Codec::Zstd => codec::decode(Codec::Zstd, &self.payload, self.raw_len as usize)
                .map(Bytes::from)
                .map_err(|reason| ChunkError::Corrupt { id: *id, reason })?,
        };
        if raw.len() != self.raw_len as usize || !id.verify(&raw) {
            return Err(ChunkError::Corrupt {
                id: *id,
                reason: "bytes do not hash to the chunk id".into(),
            });
        }
        Ok(raw)
    }
}

/// Totals of the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkStats {
    /// Distinct chunks stored.
    pub chunks: u64,
    /// Their uncompressed bytes.
    pub raw_bytes: u64,
    /// Their payload bytes on disk.
    pub stored_bytes: u64,
}

/// Totals of the fetch cache: chunks fetched from another site and stored here as cached
/// (see [`ChunkStore::put_cached`]), which eviction may delete unless pinned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Cached chunks.
    pub chunks: u64,
    /// Their payload bytes on disk.
    pub stored_bytes: u64,
    /// Cached chunks pinned under at least one name (never evicted).
    pub pinned_chunks: u64,
    /// Their payload bytes on disk.
    pub pinned_bytes: u64,
}

/// The durable record of a cached chunk, in `meta` under [`cache_key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct CacheEntry {
    /// Payload length on disk (as in the chunk's index entry).
    stored_len: u32,
    /// Pin names holding it: evicted only at 0.
    pins: u32,
    /// RocksDB's latest sequence number when the chunk was cached: tells this entry's pin
    /// records from those left by an earlier entry of the same chunk (deleted by GC while
    /// pinned, then fetched again), which no longer count.
    stamp: u64,
}

impl Versioned for CacheEntry {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "fetch cache entry";
}

/// In-memory mirror of one [`CacheEntry`], with its last use.
#[derive(Clone, Copy, Debug)]
struct CacheSlot {
    /// Last use on the cache's logical clock (0: not used since the store was opened).
    last_use: u64,
    /// See [`CacheEntry::stored_len`].
    stored_len: u32,
    /// See [`CacheEntry::pins`].
    pins: u32,
    /// See [`CacheEntry::stamp`].
    stamp: u64,
}

impl CacheSlot {
    fn entry(&self) -> CacheEntry {
        CacheEntry {
            stored_len: self.stored_len,
            pins: self.pins,
            stamp: self.stamp,
        }
    }
}

/// The in-memory mirror of the durable cache set. Changed only after the write batch
/// recording the change succeeded, under the stripe lock of each chunk changed.
#[derive(Default)]
struct CacheSet {
    /// Cached chunks.
    slots: ChunkIdMap<CacheSlot>,
    /// Sum of their stored lengths.
    stored_bytes: u64,
    /// Logical clock of uses: every use takes the next tick, so the order of uses is exact
    /// (wall-clock milliseconds would tie).
    clock: u64,
}

impl CacheSet {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn insert(&mut self, id: ChunkId, slot: CacheSlot) {
        if let Some(old) = self.slots.insert(id, slot) {
            self.stored_bytes -= u64::from(old.stored_len);
        }
        self.stored_bytes += u64::from(slot.stored_len);
    }

    fn remove(&mut self, id: &ChunkId) {
        if let Some(old) = self.slots.remove(id) {
            self.stored_bytes -= u64::from(old.stored_len);
        }
    }
}

/// The `meta` key of a chunk's [`CacheEntry`].
fn cache_key(id: &ChunkId) -> Vec<u8> {
    [CACHE_PREFIX, &id.0[..]].concat()
}

/// The `meta` key prefix of every record of pin name `pin`.
fn pin_prefix(pin: &str) -> Vec<u8> {
    [PIN_PREFIX, pin.as_bytes(), b"\0"].concat()
}

/// The `meta` key recording that pin name `pin` holds chunk `id`.
fn pin_key(pin: &str, id: &ChunkId) -> Vec<u8> {
    [PIN_PREFIX, pin.as_bytes(), b"\0", &id.0[..]].concat()
}

/// The stamp a pin record holds (0, matching no entry, if it cannot be read).
fn decode_stamp(b: &[u8]) -> u64 {
    <[u8; 8]>::try_from(b).map_or(0, u64::from_le_bytes)
}

/// The sorted, deduplicated stripes of `ids`: the order every multi-chunk operation locks
/// them in, so they never deadlock.
fn stripes_of<'a>(ids: impl Iterator<Item = &'a ChunkId>) -> Vec<usize> {
    let mut stripes: Vec<usize> = ids.map(|id| id.0[0] as usize).collect();
    stripes.sort_unstable();
    stripes.dedup();
    stripes
}

/// A node's chunk store.
pub struct ChunkStore {
    /// The database: `index` (id → [`ChunkMeta`]), `data` (id → payload, in blob files),
    /// `meta` (counters, merged with an add operator; the fetch cache's entries and pin
    /// records, see [`ChunkStore::put_cached`]).
    db: DB,
    /// Write options for every mutation (synced WAL).
    write_opts: WriteOptions,
    /// Stripe locks making check-then-put atomic per chunk.
    stripes: Vec<Mutex<()>>,
    /// See [`ChunkConfig::touch_interval_ms`].
    touch_interval_ms: u64,
    /// See [`ChunkConfig::space`].
    space: Option<Arc<SpaceGate>>,
    /// In-memory mirror of the fetch cache's entries (see [`ChunkStore::put_cached`]). Lock
    /// order: a chunk's stripe lock, then this, never the reverse.
    cache: Mutex<CacheSet>,
    /// How many chunks `cache` holds, read without its lock: while 0 (no fetch cache in use),
    /// the hot paths pay this one atomic load. Changed under `cache`'s lock and the stripe
    /// lock of the chunk added or removed, so a reader holding a chunk's stripe lock sees
    /// every change made to that chunk.
    cached: AtomicUsize,
}

fn add_merge(_key: &[u8], existing: Option<&[u8]>, ops: &MergeOperands) -> Option<Vec<u8>> {
    let mut v = existing.map_or(0i64, decode_i64);
    for op in ops {
        v = v.wrapping_add(decode_i64(op));
    }
    Some(v.to_le_bytes().to_vec())
}

fn decode_i64(b: &[u8]) -> i64 {
    <[u8; 8]>::try_from(b).map_or(0, i64::from_le_bytes)
}

/// The `meta` key of an owner's counter (`what`: `chunks` or `bytes`).
fn owner_key(owner: u64, what: &str) -> Vec<u8> {
    format!("owner/{owner:016x}/{what}").into_bytes()
}

/// Per-owner (chunks, stored bytes) deltas of one write batch; owner 0 is not counted.
#[derive(Default)]
struct OwnerDeltas(std::collections::BTreeMap<u64, (i64, i64)>);

impl OwnerDeltas {
    fn add(&mut self, owner: u64, chunks: i64, bytes: i64) {
        if owner != 0 && (chunks != 0 || bytes != 0) {
            let e = self.0.entry(owner).or_default();
            e.0 += chunks;
            e.1 += bytes;
        }
    }

    /// Adds the deltas to the summed counters of `meta`, in `batch`.
    fn merge_into(self, batch: &mut WriteBatch, meta: &rocksdb::ColumnFamily) {
        for (owner, (chunks, bytes)) in self.0 {
            if chunks != 0 {
                batch.merge_cf(meta, owner_key(owner, "chunks"), chunks.to_le_bytes());
            }
            if bytes != 0 {
                batch.merge_cf(meta, owner_key(owner, "bytes"), bytes.to_le_bytes());
            }
        }
    }
}

/// Whether files in `dir` can be opened with O_DIRECT.
fn supports_direct_io(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join(".direct-io-probe");
    let ok = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ChunkStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path, config: ChunkConfig) -> Result<ChunkStore, ChunkError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_open_files(512);
        opts.set_keep_log_file_num(4);
        opts.increase_parallelism(2);
        opts.set_bytes_per_sync(1 << 20);
        // Flushes write payloads into blob files: bypassing the page cache saves a copy of every
        // byte (the WAL already holds it until the flush is durable). Not every file system
        // takes O_DIRECT (tmpfs refuses it), so ask this one first.
        std::fs::create_dir_all(dir).map_err(|e| ChunkError::Io(e.to_string()))?;
        opts.set_use_direct_io_for_flush_and_compaction(supports_direct_io(dir));
        // Memtables, WAL preallocation and compaction outputs sized to the disk (see
        // `write_buffer_for`: unchanged from 2 GiB up).
        let write_buffer = fs_total_bytes(dir).map_or(MAX_WRITE_BUFFER, write_buffer_for);
        opts.set_write_buffer_size(write_buffer as usize);
        opts.set_target_file_size_base(write_buffer);
        // A WAL file is deleted only once every column family flushed what it logged; the
        // small ones rarely fill a write buffer, so without a cap they would keep gigabytes of
        // WAL (RocksDB's default: 4 × the sum of all write buffers) on disk.
        opts.set_max_total_wal_size(cairn_core::space::WAL_WRITE_BUFFERS * write_buffer);
        opts.set_manifest_preallocation_size(cairn_core::space::MANIFEST_PREALLOCATION);

        let mut index = Options::default();
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        index.set_block_based_table_factory(&table);

        let mut data = Options::default();
        let mut data_table = BlockBasedOptions::default();
        data_table.set_bloom_filter(10.0, false);
        data.set_block_based_table_factory(&data_table);
        data.set_enable_blob_files(true);
        data.set_min_blob_size(config.min_blob_size);
        data.set_blob_file_size(256 << 20);
        // No blob GC in automatic compactions: it rewrites the live payloads of the oldest
        // blob files whether or not they hold garbage, which needs free space a full disk does
        // not have (and costs write bandwidth while nothing was deleted). GC's sweep runs it
        // through `reclaim_space` when it deleted chunks.
        data.set_enable_blob_gc(false);

        let mut meta = Options::default();
        meta.set_merge_operator_associative("add_i64", add_merge);

        // Opened with memtables that hold the whole WAL (at most `max_total_wal_size`), so
        // replaying it after a crash never flushes (see `avoid_flush_during_recovery` below);
        // the write buffer is set back once open.
        for cf in [&mut index, &mut data, &mut meta] {
            cf.set_write_buffer_size((WAL_WRITE_BUFFERS * write_buffer) as usize);
            cf.set_target_file_size_base(write_buffer);
        }
        // Chunk ids are random: a read of an older chunk would otherwise search every memtable
        // (a skip list of up to a write buffer of entries) before the files; a bloom filter
        // over each memtable's keys answers "not here" at once.
        for cf in [&mut index, &mut data] {
            cf.set_memtable_whole_key_filtering(true);
            cf.set_memtable_prefix_bloom_ratio(0.05);
        }
        let cfs = vec![
            // Unused, but its write buffer counts in RocksDB's WAL preallocation too.
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, opts.clone()),
            ColumnFamilyDescriptor::new(CF_INDEX, index),
            ColumnFamilyDescriptor::new(CF_DATA, data),
            ColumnFamilyDescriptor::new(CF_META, meta),
        ];
        // A store killed on a full disk must open again: replaying the WAL into memtables is
        // enough, while flushing them at open would need free space that is not there (the
        // WAL stays until the next flush).
        let opts = opts.get_options_from_string(ROCKSDB_OPEN_OPTIONS)?;
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        let size = write_buffer.to_string();
        for name in [CF_INDEX, CF_DATA, CF_META] {
            let cf = db.cf_handle(name).expect("opened with the database");
            // In effect at once; only writing the OPTIONS file can fail (a full disk), which
            // costs nothing but the file.
            if let Err(e) = db.set_options_cf(&cf, &[("write_buffer_size", size.as_str())]) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot record the chunk store's options");
            }
        }
        // What the WAL replayed is flushed now when there is room, as a plain open would have;
        // on a full disk it stays in memory (and in the WAL) until space is freed.
        for name in [CF_INDEX, CF_DATA, CF_META] {
            let cf = db.cf_handle(name).expect("opened with the database");
            let pending = db
                .property_int_value_cf(&cf, "rocksdb.cur-size-all-mem-tables")
                .ok()
                .flatten()
                .unwrap_or(0);
            let free = free_bytes(dir).unwrap_or(u64::MAX);
            if !room_to_flush(free, pending, write_buffer) {
                tracing::warn!(dir = %dir.display(), pending_bytes = pending, free_bytes = free,
                    "the chunk store keeps what it recovered in its WAL until space is freed");
                continue;
            }
            if let Err(e) = db.flush_cf(&cf) {
                tracing::warn!(dir = %dir.display(), error = %e,
                    "the chunk store could not flush what it recovered: it stays in the WAL until space is freed");
            }
        }
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(config.sync_writes);
        let cache = Self::load_cache(&db)?;
        Ok(ChunkStore {
            db,
            write_opts,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            touch_interval_ms: config.touch_interval_ms,
            space: config.space,
            cached: AtomicUsize::new(cache.slots.len()),
            cache: Mutex::new(cache),
        })
    }

    /// Reads the fetch cache's entries into their in-memory mirror, every one unused yet
    /// (ties in eviction order go by id).
    fn load_cache(db: &DB) -> Result<CacheSet, ChunkError> {
        let cf = db.cf_handle(CF_META).expect("opened with the database");
        let mut set = CacheSet::default();
        let mut it = db.raw_iterator_cf(&cf);
        it.seek(CACHE_PREFIX);
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            let Some(rest) = key.strip_prefix(CACHE_PREFIX) else {
                break;
            };
            let id = ChunkId::from_slice(rest).ok_or_else(|| {
                ChunkError::CorruptIndex(format!(
                    "a fetch cache key of {} bytes does not end in a chunk id",
                    key.len()
                ))
            })?;
            let entry = CacheEntry::decode(value).map_err(|e| ChunkError::Corrupt {
                id,
                reason: e.to_string(),
            })?;
            set.insert(
                id,
                CacheSlot {
                    last_use: 0,
                    stored_len: entry.stored_len,
                    pins: entry.pins,
                    stamp: entry.stamp,
                },
            );
            it.next();
        }
        it.status()?;
        Ok(set)
    }

    /// Writes `batch` with the store's (synced) write options. A failure for lack of space is
    /// [`ChunkError::NoSpace`] and is reported to the space gate; RocksDB then refuses writes
    /// until it has recovered, which it does by itself once space is freed, and nothing of the
    /// failed batch is visible (a batch is atomic).
    fn write(&self, batch: WriteBatch) -> Result<(), ChunkError> {
        self.db
            .write_opt(batch, &self.write_opts)
            .map_err(|e| self.db_error(e))
    }

    /// A RocksDB error as a [`ChunkError`], noting a lack of space on the gate.
    fn db_error(&self, e: rocksdb::Error) -> ChunkError {
        if !is_no_space_message(e.as_ref()) {
            return ChunkError::Db(e);
        }
        if let Some(gate) = &self.space {
            gate.note_no_space("the chunk store");
        }
        ChunkError::NoSpace(cairn_core::space::no_space_message(
            cairn_core::SpaceState::Full,
            &format!("chunk store: {e}"),
        ))
    }

    /// Compacts the store so the space of deleted chunks returns to the file system: deleted
    /// entries leave the SST files, and blob files no entry points to any more are removed.
    /// Run after GC deleted chunks (automatic compactions would get there only later).
    /// A compaction that fails (for lack of space itself) leaves the data as it was.
    pub fn reclaim_space(&self) {
        let data = self.cf(CF_DATA);
        // Blob GC for this compaction only: the live payloads of the oldest quarter of blob
        // files move to new ones, so a file whose chunks were partly deleted is freed too.
        let gc = |on: &str| {
            if let Err(e) = self
                .db
                .set_options_cf(data, &[("enable_blob_garbage_collection", on)])
            {
                tracing::warn!(error = %e, "cannot switch blob garbage collection");
            }
        };
        gc("true");
        self.db.compact_range_cf(data, None::<&[u8]>, None::<&[u8]>);
        gc("false");
        self.db
            .compact_range_cf(self.cf(CF_INDEX), None::<&[u8]>, None::<&[u8]>);
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // The column families are created at open; their absence is a bug.
        self.db.cf_handle(name).expect("column family exists")
    }

    /// Stores a chunk unless it is already there; returns whether it was new. Idempotent: a
    /// chunk already present costs one index lookup and writes no data; its index entry's
    /// `touched_ms` is refreshed when older than the touch interval, so GC's hold protects a
    /// chunk a new write deduplicated against as it protects a new chunk. A put of a cached
    /// chunk ([`ChunkStore::put_cached`]) promotes it to an ordinary one, never evicted, in the
    /// same batch. The caller vouches that `chunk` decodes to bytes hashing to `id` (see
    /// [`ChunkStore::put_verified`] otherwise).
    pub fn put(&self, id: &ChunkId, chunk: &StoredChunk) -> Result<bool, ChunkError> {
        self.put_encoded(id, chunk.codec, chunk.raw_len, &chunk.payload)
    }

    /// [`ChunkStore::put`] attributed to `owner` ([`cairn_core::owner_tag`] of the bucket
    /// written, 0 for none) when the chunk is new; a deduplicated put changes no attribution.
    pub fn put_owned(
        &self,
        id: &ChunkId,
        chunk: &StoredChunk,
        owner: u64,
    ) -> Result<bool, ChunkError> {
        self.put_encoded_owned(id, chunk.codec, chunk.raw_len, &chunk.payload, owner)
    }

    /// [`ChunkStore::put`] of a payload the caller encoded (in a reused buffer: the payload is
    /// copied once, into RocksDB's write path).
    pub fn put_encoded(
        &self,
        id: &ChunkId,
        codec: Codec,
        raw_len: u32,
        payload: &[u8],
    ) -> Result<bool, ChunkError> {
        self.put_encoded_owned(id, codec, raw_len, payload, 0)
    }

    /// [`ChunkStore::put_encoded`] attributed to `owner` (see [`ChunkStore::put_owned`]): the
    /// owner's counters move in the same write batch as the chunk.
    pub fn put_encoded_owned(
        &self,
        id: &ChunkId,
        codec: Codec,
        raw_len: u32,
        payload: &[u8],
        owner: u64,
    ) -> Result<bool, ChunkError> {
        if raw_len as usize > MAX_CHUNK_SIZE || payload.len() > MAX_STORED_LEN {
            return Err(ChunkError::TooLarge(raw_len as usize));
        }
        let _guard = self.stripes[id.0[0] as usize].lock();
        let now = now_ms();
        if let Some(meta) = self.meta(id)? {
            // Under the stripe lock, so a GC sweep (which checks the time under the same lock)
            // either deleted the chunk before this put (which then stores it anew) or sees
            // the refreshed time and keeps it.
            let refreshed = self.refreshed(meta, now);
            // A local write of a cached chunk promotes it: no longer evictable.
            let promote = self.is_cached(id);
            if refreshed.is_some() || promote {
                let mut batch = WriteBatch::default();
                if let Some(meta) = refreshed {
                    batch.put_cf(self.cf(CF_INDEX), id.0, meta.encode());
                }
                if promote {
                    batch.delete_cf(self.cf(CF_META), cache_key(id));
                }
                self.write(batch)?;
                if promote {
                    self.uncache([id]);
                }
            }
            return Ok(false);
        }
        if let Some(gate) = &self.space {
            gate.check_write().map_err(ChunkError::NoSpace)?;
        }
        let batch = self.new_chunk_batch(id, codec, raw_len, payload, owner, now);
        self.write(batch)?;
        Ok(true)
    }

    /// The write batch storing a chunk that is not stored yet: payload, index entry, totals
    /// and the owner's counters.
    fn new_chunk_batch(
        &self,
        id: &ChunkId,
        codec: Codec,
        raw_len: u32,
        payload: &[u8],
        owner: u64,
        now: u64,
    ) -> WriteBatch {
        let meta = ChunkMeta {
            codec,
            raw_len,
            stored_len: payload.len() as u32,
            created_ms: now,
            touched_ms: now,
            owner,
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_DATA), id.0, payload);
        batch.put_cf(self.cf(CF_INDEX), id.0, meta.encode());
        let m = self.cf(CF_META);
        batch.merge_cf(m, STAT_CHUNKS, 1i64.to_le_bytes());
        batch.merge_cf(m, STAT_RAW, (raw_len as i64).to_le_bytes());
        batch.merge_cf(m, STAT_STORED, (payload.len() as i64).to_le_bytes());
        let mut owners = OwnerDeltas::default();
        owners.add(owner, 1, payload.len() as i64);
        owners.merge_into(&mut batch, m);
        batch
    }

    /// Stores a chunk fetched from another site as a *cached* chunk: unless it is already
    /// stored (then nothing changes and this returns `false`: a chunk held locally is not
    /// the cache's), it is stored as an unattributed [`ChunkStore::put`] would store it and
    /// recorded in the durable cache set, in the same synced write batch under the chunk's
    /// stripe lock; returns `true`. A cached chunk may be deleted by
    /// [`ChunkStore::evict_cache`] unless pinned ([`ChunkStore::pin_cached`]); any later put
    /// or touch of it promotes it to an ordinary chunk, never evicted. The caller vouches
    /// that `chunk` decodes to bytes hashing to `id`.
    pub fn put_cached(&self, id: &ChunkId, chunk: &StoredChunk) -> Result<bool, ChunkError> {
        if chunk.raw_len as usize > MAX_CHUNK_SIZE || chunk.payload.len() > MAX_STORED_LEN {
            return Err(ChunkError::TooLarge(chunk.raw_len as usize));
        }
        let _guard = self.stripes[id.0[0] as usize].lock();
        if self.meta(id)?.is_some() {
            return Ok(false);
        }
        if let Some(gate) = &self.space {
            gate.check_write().map_err(ChunkError::NoSpace)?;
        }
        let now = now_ms();
        let mut batch =
            self.new_chunk_batch(id, chunk.codec, chunk.raw_len, &chunk.payload, 0, now);
        let slot = CacheSlot {
            last_use: 0,
            stored_len: chunk.payload.len() as u32,
            pins: 0,
            // Every write since the chunk's previous cache entry (if any) was stored, its
            // deletion included, moved the sequence past that entry's stamp.
            stamp: self.db.latest_sequence_number(),
        };
        batch.put_cf(self.cf(CF_META), cache_key(id), slot.entry().encode());
        self.write(batch)?;
        let mut cache = self.cache.lock();
        let last_use = cache.tick();
        cache.insert(*id, CacheSlot { last_use, ..slot });
        self.cached.store(cache.slots.len(), Ordering::Release);
        Ok(true)
    }

    /// Whether `id` is a cached chunk (see [`ChunkStore::put_cached`]): one atomic load while
    /// the cache is empty.
    pub fn is_cached(&self, id: &ChunkId) -> bool {
        self.cached_slot(id).is_some()
    }

    /// `id`'s cache slot, if cached. A caller acting on the answer holds `id`'s stripe lock.
    fn cached_slot(&self, id: &ChunkId) -> Option<CacheSlot> {
        if self.cached.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.cache.lock().slots.get(id).copied()
    }

    /// Removes `ids` from the cache's in-memory mirror, once the batch deleting their entries
    /// is written (under their stripe locks).
    fn uncache<'a>(&self, ids: impl IntoIterator<Item = &'a ChunkId>) {
        let mut cache = self.cache.lock();
        for id in ids {
            cache.remove(id);
        }
        self.cached.store(cache.slots.len(), Ordering::Release);
    }

    /// Records a read of `id` as its last use, if cached (in memory only).
    fn note_use(&self, id: &ChunkId) {
        if self.cached.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut cache = self.cache.lock();
        if cache.slots.contains_key(id) {
            let tick = cache.tick();
            if let Some(slot) = cache.slots.get_mut(id) {
                slot.last_use = tick;
            }
        }
    }

    /// [`ChunkStore::put`] of several chunks in one synced write batch, under the stripe locks
    /// of all of them (taken in stripe order, like deletes); returns, per chunk, whether it
    /// was new (a repeated id counts once). All or nothing: when the site is full and any
    /// chunk is new, nothing is written.
    pub fn put_many(&self, chunks: &[(ChunkId, StoredChunk)]) -> Result<Vec<bool>, ChunkError> {
        self.put_many_owned(chunks, 0)
    }

    /// [`ChunkStore::put_many`] with the new chunks attributed to `owner` (see
    /// [`ChunkStore::put_owned`]).
    pub fn put_many_owned(
        &self,
        chunks: &[(ChunkId, StoredChunk)],
        owner: u64,
    ) -> Result<Vec<bool>, ChunkError> {
        for (_, c) in chunks {
            if c.raw_len as usize > MAX_CHUNK_SIZE || c.payload.len() > MAX_STORED_LEN {
                return Err(ChunkError::TooLarge(c.raw_len as usize));
            }
        }
        let stripes = stripes_of(chunks.iter().map(|(id, _)| id));
        let _guards: Vec<_> = stripes.iter().map(|&s| self.stripes[s].lock()).collect();
        let now = now_ms();
        let mut seen = std::collections::HashSet::with_capacity(chunks.len());
        let mut batch = WriteBatch::default();
        let (mut new, mut raw, mut stored) = (0i64, 0i64, 0i64);
        let mut promoted = Vec::new();
        let mut out = Vec::with_capacity(chunks.len());
        for (id, c) in chunks {
            if !seen.insert(*id) {
                out.push(false);
                continue;
            }
            if let Some(meta) = self.meta(id)? {
                // As in `put`: the stripe lock orders this refresh against a GC sweep.
                if let Some(meta) = self.refreshed(meta, now) {
                    batch.put_cf(self.cf(CF_INDEX), id.0, meta.encode());
                }
                if self.is_cached(id) {
                    batch.delete_cf(self.cf(CF_META), cache_key(id));
                    promoted.push(*id);
                }
                out.push(false);
                continue;
            }
            let meta = ChunkMeta {
                codec: c.codec,
                raw_len: c.raw_len,
                stored_len: c.payload.len() as u32,
                created_ms: now,
                touched_ms: now,
                owner,
            };
            batch.put_cf(self.cf(CF_DATA), id.0, &c.payload);
            batch.put_cf(self.cf(CF_INDEX), id.0, meta.encode());
            new += 1;
            raw += i64::from(c.raw_len);
            stored += c.payload.len() as i64;
            out.push(true);
        }
        if new > 0 {
            if let Some(gate) = &self.space {
                gate.check_write().map_err(ChunkError::NoSpace)?;
            }
            let m = self.cf(CF_META);
            batch.merge_cf(m, STAT_CHUNKS, new.to_le_bytes());
            batch.merge_cf(m, STAT_RAW, raw.to_le_bytes());
            batch.merge_cf(m, STAT_STORED, stored.to_le_bytes());
            let mut owners = OwnerDeltas::default();
            owners.add(owner, new, stored);
            owners.merge_into(&mut batch, m);
        }
        if !batch.is_empty() {
            self.write(batch)?;
        }
        if !promoted.is_empty() {
            self.uncache(&promoted);
        }
        Ok(out)
    }

    /// Like [`ChunkStore::put`] but first checks the payload against `id` (for chunks that
    /// arrive from the network).
    pub fn put_verified(&self, id: &ChunkId, chunk: &StoredChunk) -> Result<bool, ChunkError> {
        self.put_verified_owned(id, chunk, 0)
    }

    /// [`ChunkStore::put_verified`] attributed to `owner` (see [`ChunkStore::put_owned`]).
    pub fn put_verified_owned(
        &self,
        id: &ChunkId,
        chunk: &StoredChunk,
        owner: u64,
    ) -> Result<bool, ChunkError> {
        chunk
            .decode_verified(id)
            .map_err(|_| ChunkError::Mismatch { id: *id })?;
        self.put_owned(id, chunk, owner)
    }

    /// Overwrites the stored copy of a chunk with `chunk` (scrub's repair of a corrupt copy),
    /// or stores it if absent; returns whether an index entry was there. The payload is first
    /// checked against `id` (`Mismatch` otherwise, and nothing is written); the write is one
    /// synced batch under the chunk's stripe lock. The entry keeps its stored times, and the
    /// stats move by the difference in lengths (an entry that cannot be decoded is taken to
    /// have had the new copy's lengths: it was counted when stored, with unknown lengths). The
    /// entry keeps its owner, whose stored bytes move by the difference too; a chunk stored
    /// anew here, or over an entry that cannot be decoded, is unattributed.
    pub fn replace(&self, id: &ChunkId, chunk: &StoredChunk) -> Result<bool, ChunkError> {
        if chunk.raw_len as usize > MAX_CHUNK_SIZE || chunk.payload.len() > MAX_STORED_LEN {
            return Err(ChunkError::TooLarge(
                (chunk.raw_len as usize).max(chunk.payload.len()),
            ));
        }
        chunk
            .decode_verified(id)
            .map_err(|_| ChunkError::Mismatch { id: *id })?;
        let _guard = self.stripes[id.0[0] as usize].lock();
        let now = now_ms();
        let stored_len = chunk.payload.len() as u32;
        // (chunks, raw, stored) deltas, and the times to keep.
        let (existed, deltas, created_ms, touched_ms, owner) = match self.meta(id) {
            Ok(Some(old)) => (
                true,
                (
                    0,
                    i64::from(chunk.raw_len) - i64::from(old.raw_len),
                    i64::from(stored_len) - i64::from(old.stored_len),
                ),
                old.created_ms,
                old.touched_ms,
                old.owner,
            ),
            Ok(None) => (
                false,
                (1, i64::from(chunk.raw_len), i64::from(stored_len)),
                now,
                now,
                0,
            ),
            Err(ChunkError::Corrupt { .. }) => (true, (0, 0, 0), now, now, 0),
            Err(e) => return Err(e),
        };
        let meta = ChunkMeta {
            codec: chunk.codec,
            raw_len: chunk.raw_len,
            stored_len,
            created_ms,
            touched_ms,
            owner,
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_DATA), id.0, &chunk.payload);
        batch.put_cf(self.cf(CF_INDEX), id.0, meta.encode());
        let m = self.cf(CF_META);
        for (key, delta) in [
            (STAT_CHUNKS, deltas.0),
            (STAT_RAW, deltas.1),
            (STAT_STORED, deltas.2),
        ] {
            if delta != 0 {
                batch.merge_cf(m, key, delta.to_le_bytes());
            }
        }
        let mut owners = OwnerDeltas::default();
        owners.add(owner, 0, deltas.2);
        owners.merge_into(&mut batch, m);
        // A cached chunk stays cached, its entry following the new stored length.
        let recached = self
            .cached_slot(id)
            .filter(|slot| slot.stored_len != stored_len)
            .map(|slot| CacheSlot { stored_len, ..slot });
        if let Some(slot) = &recached {
            batch.put_cf(m, cache_key(id), slot.entry().encode());
        }
        self.write(batch)?;
        if let Some(slot) = recached {
            let mut cache = self.cache.lock();
            if let Some(current) = cache.slots.get(id).copied() {
                cache.insert(
                    *id,
                    CacheSlot {
                        last_use: current.last_use,
                        ..slot
                    },
                );
            }
        }
        Ok(existed)
    }

    /// The index entry of a chunk, if stored.
    pub fn meta(&self, id: &ChunkId) -> Result<Option<ChunkMeta>, ChunkError> {
        match self.db.get_pinned_cf(self.cf(CF_INDEX), id.0)? {
            None => Ok(None),
            Some(v) => ChunkMeta::decode(&v)
                .map(Some)
                .map_err(|e| ChunkError::Corrupt {
                    id: *id,
                    reason: e.to_string(),
                }),
        }
    }

    /// `meta` with its reference time moved to `at_ms`, when that is more than the touch
    /// interval after it (`None`: nothing to write).
    fn refreshed(&self, mut meta: ChunkMeta, at_ms: u64) -> Option<ChunkMeta> {
        if meta.touched_ms.saturating_add(self.touch_interval_ms) < at_ms {
            meta.touched_ms = at_ms;
            return Some(meta);
        }
        None
    }

    /// Which of `ids` are stored, refreshing each stored one's reference time as a put
    /// deduplicating against it would ("have it? then keep it"): to `at_ms` when given (a
    /// copy moved from another node keeps that copy's time), else to now. Checked and written
    /// under the stripe locks GC's sweep takes, so a sweep racing this call either deleted the
    /// chunk first (answered `false`: the caller must store it again) or sees the new time and
    /// keeps it. A cached chunk touched is promoted to an ordinary one, as a put would. The
    /// refreshed entries are written in one synced batch.
    pub fn touch_many(&self, ids: &[ChunkId], at_ms: Option<u64>) -> Result<Vec<bool>, ChunkError> {
        let stripes = stripes_of(ids.iter());
        let _guards: Vec<_> = stripes.iter().map(|&s| self.stripes[s].lock()).collect();
        let at = at_ms.unwrap_or_else(now_ms);
        let mut batch = WriteBatch::default();
        let mut writes = 0;
        let mut promoted = cairn_core::ChunkIdSet::default();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(meta) = self.meta(id)? else {
                out.push(false);
                continue;
            };
            if let Some(meta) = self.refreshed(meta, at) {
                batch.put_cf(self.cf(CF_INDEX), id.0, meta.encode());
                writes += 1;
            }
            // A chunk referenced by a local writer is promoted out of the fetch cache (a
            // repeated id is promoted once).
            if self.is_cached(id) && promoted.insert(*id) {
                batch.delete_cf(self.cf(CF_META), cache_key(id));
                writes += 1;
            }
            out.push(true);
        }
        if writes > 0 {
            self.write(batch)?;
        }
        if !promoted.is_empty() {
            self.uncache(&promoted);
        }
        Ok(out)
    }

    /// Which of `ids` are stored ("have it?" for a batch).
    pub fn has_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ChunkError> {
        let cf = self.cf(CF_INDEX);
        let keys: Vec<_> = ids.iter().map(|id| (cf, id.0)).collect();
        self.db
            .multi_get_cf(keys)
            .into_iter()
            .map(|r| r.map(|v| v.is_some()).map_err(ChunkError::from))
            .collect()
    }

    /// A chunk in stored form, unverified (for shipping; the receiver verifies).
    pub fn get_stored(&self, id: &ChunkId) -> Result<Option<StoredChunk>, ChunkError> {
        Ok(self.get_stored_owned(id)?.map(|(c, _)| c))
    }

    /// [`ChunkStore::get_stored`] with the chunk's owner tag (0: unattributed), for a copy
    /// pushed to another replica to keep its attribution.
    pub fn get_stored_owned(&self, id: &ChunkId) -> Result<Option<(StoredChunk, u64)>, ChunkError> {
        let Some(meta) = self.meta(id)? else {
            return Ok(None);
        };
        let Some(payload) = self.db.get_cf(self.cf(CF_DATA), id.0)? else {
            return Err(ChunkError::Corrupt {
                id: *id,
                reason: "index entry without payload".into(),
            });
        };
        self.note_use(id);
        Ok(Some((
            StoredChunk {
                codec: meta.codec,
                raw_len: meta.raw_len,
                payload: Bytes::from(payload),
            },
            meta.owner,
        )))
    }

    /// A chunk's bytes, verified against its id; `Corrupt` if they do not hash to it.
    pub fn get(&self, id: &ChunkId) -> Result<Option<Bytes>, ChunkError> {
        match self.get_stored(id)? {
            None => Ok(None),
            Some(c) => c.decode_verified(id).map(Some),
        }
    }

    /// Removes a chunk (GC), and its cache entry if it was cached; returns whether it existed.
    pub fn delete(&self, id: &ChunkId) -> Result<bool, ChunkError> {
        let _guard = self.stripes[id.0[0] as usize].lock();
        let Some(meta) = self.meta(id)? else {
            return Ok(false);
        };
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_DATA), id.0);
        batch.delete_cf(self.cf(CF_INDEX), id.0);
        let m = self.cf(CF_META);
        batch.merge_cf(m, STAT_CHUNKS, (-1i64).to_le_bytes());
        batch.merge_cf(m, STAT_RAW, (-(meta.raw_len as i64)).to_le_bytes());
        batch.merge_cf(m, STAT_STORED, (-(meta.stored_len as i64)).to_le_bytes());
        let mut owners = OwnerDeltas::default();
        owners.add(meta.owner, -1, -i64::from(meta.stored_len));
        owners.merge_into(&mut batch, m);
        let cached = self.is_cached(id);
        if cached {
            batch.delete_cf(m, cache_key(id));
        }
        self.write(batch)?;
        if cached {
            self.uncache([id]);
        }
        Ok(true)
    }

    /// Removes several chunks in one synced write batch (GC); returns, per id, whether it
    /// existed (a repeated id counts once). Takes the stripe locks of all the ids, in stripe
    /// order, so it never deadlocks with puts or other deletes.
    pub fn delete_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>, ChunkError> {
        self.delete_many_if(ids, u64::MAX)
    }

    /// The touch interval this store was opened with: a put deduplicating against a stored
    /// chunk refreshes its `touched_ms` when older than this. A GC hold must exceed it; the
    /// protection a hold gives an in-flight write is `hold - touch interval`.
    pub fn touch_interval_ms(&self) -> u64 {
        self.touch_interval_ms
    }

    /// GC's sweep: [`ChunkStore::delete_many`] of only those ids whose
    /// [`ChunkMeta::last_referenced_ms`] is before `before_ms`, checked under the stripe locks
    /// puts take, so a put deduplicating against a chunk at the same moment either comes
    /// first (refreshing its time, so it is kept) or after (storing it anew).
    pub fn delete_unreferenced_before(
        &self,
        ids: &[ChunkId],
        before_ms: u64,
    ) -> Result<Vec<bool>, ChunkError> {
        self.delete_many_if(ids, before_ms)
    }

    fn delete_many_if(&self, ids: &[ChunkId], before_ms: u64) -> Result<Vec<bool>, ChunkError> {
        let deleted = self.delete_many_where(ids, |_, m| {
            before_ms == u64::MAX || m.last_referenced_ms() < before_ms
        })?;
        Ok(deleted.iter().map(Option::is_some).collect())
    }

    /// Deletes, in one synced write batch under the stripe locks of all `ids` (taken in
    /// stripe order), those stored ids for which `doomed` (called under those locks) holds:
    /// payload, index entry, cache entry, totals and owner counters. Returns, per id, the
    /// index entry of the chunk deleted (`None`: absent, spared, or a repeated id).
    fn delete_many_where(
        &self,
        ids: &[ChunkId],
        mut doomed: impl FnMut(&ChunkId, &ChunkMeta) -> bool,
    ) -> Result<Vec<Option<ChunkMeta>>, ChunkError> {
        let stripes = stripes_of(ids.iter());
        let _guards: Vec<_> = stripes.iter().map(|&s| self.stripes[s].lock()).collect();
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        let mut batch = WriteBatch::default();
        let (mut chunks, mut raw, mut stored) = (0i64, 0i64, 0i64);
        let mut owners = OwnerDeltas::default();
        let mut uncached = Vec::new();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let meta = if seen.insert(*id) {
                self.meta(id)?.filter(|m| doomed(id, m))
            } else {
                None
            };
            let Some(meta) = meta else {
                out.push(None);
                continue;
            };
            batch.delete_cf(self.cf(CF_DATA), id.0);
            batch.delete_cf(self.cf(CF_INDEX), id.0);
            if self.is_cached(id) {
                batch.delete_cf(self.cf(CF_META), cache_key(id));
                uncached.push(*id);
            }
            chunks += 1;
            raw += i64::from(meta.raw_len);
            stored += i64::from(meta.stored_len);
            owners.add(meta.owner, -1, -i64::from(meta.stored_len));
            out.push(Some(meta));
        }
        if chunks > 0 {
            let m = self.cf(CF_META);
            batch.merge_cf(m, STAT_CHUNKS, (-chunks).to_le_bytes());
            batch.merge_cf(m, STAT_RAW, (-raw).to_le_bytes());
            batch.merge_cf(m, STAT_STORED, (-stored).to_le_bytes());
            owners.merge_into(&mut batch, m);
            self.write(batch)?;
        }
        if !uncached.is_empty() {
            self.uncache(&uncached);
        }
        Ok(out)
    }

    /// Evicts cached chunks (see [`ChunkStore::put_cached`]) until the cache's stored bytes
    /// are at most `max_bytes`: least recently used first (a read by [`ChunkStore::get`] or
    /// [`ChunkStore::get_stored`] is a use; chunks not used since the store was opened go
    /// first, in id order), never a pinned one. Each chunk is deleted as
    /// [`ChunkStore::delete`] deletes it (payload, index entry, cache entry, totals and owner
    /// counters), in synced batches, after checking under its stripe lock that it is still
    /// cached, unpinned and unused since it was chosen (a concurrent promotion, pin or read
    /// wins). Returns the chunks evicted and their stored bytes; stops early when only pinned
    /// chunks remain.
    pub fn evict_cache(&self, max_bytes: u64) -> Result<(u64, u64), ChunkError> {
        let (mut evicted, mut evicted_bytes) = (0u64, 0u64);
        // A pass that evicted nothing because every candidate was read meanwhile is retried
        // a few times; one that evicted something always is.
        let mut idle_passes = 0;
        while idle_passes < 4 {
            // The least recently used unpinned chunks, just enough of them to get under the
            // bound if all are evicted.
            let victims: Vec<(ChunkId, u64)> = {
                let cache = self.cache.lock();
                if cache.stored_bytes <= max_bytes {
                    break;
                }
                let mut unpinned: Vec<(u64, ChunkId, u32)> = cache
                    .slots
                    .iter()
                    .filter(|(_, s)| s.pins == 0)
                    .map(|(id, s)| (s.last_use, *id, s.stored_len))
                    .collect();
                unpinned.sort_unstable();
                let mut excess = cache.stored_bytes - max_bytes;
                let mut victims = Vec::new();
                for (last_use, id, len) in unpinned {
                    if excess == 0 {
                        break;
                    }
                    excess = excess.saturating_sub(u64::from(len));
                    victims.push((id, last_use));
                }
                victims
            };
            if victims.is_empty() {
                break;
            }
            let before = evicted;
            for group in victims.chunks(CACHE_BATCH) {
                let ids: Vec<ChunkId> = group.iter().map(|(id, _)| *id).collect();
                let chosen: ChunkIdMap<u64> = group.iter().copied().collect();
                let deleted = self.delete_many_where(&ids, |id, _| {
                    self.cache.lock().slots.get(id).is_some_and(|s| {
                        s.pins == 0 && chosen.get(id).is_some_and(|&used| used == s.last_use)
                    })
                })?;
                for meta in deleted.into_iter().flatten() {
                    evicted += 1;
                    evicted_bytes += u64::from(meta.stored_len);
                }
                if self.cache.lock().stored_bytes <= max_bytes {
                    break;
                }
            }
            if evicted == before {
                idle_passes += 1;
            }
        }
        Ok((evicted, evicted_bytes))
    }

    /// Pins cached chunks under the name `pin`, so eviction spares them until
    /// [`ChunkStore::unpin_cached`] of that name: for each of `ids` that is cached and not yet
    /// held by this name, records `pin` → id durably and counts the pin in its cache entry,
    /// in one synced batch under the stripe locks of `ids`. Returns how many were newly
    /// pinned: pinning again under the same name changes nothing; ids not cached are
    /// skipped.
    pub fn pin_cached(&self, pin: &str, ids: &[ChunkId]) -> Result<u64, ChunkError> {
        if self.cached.load(Ordering::Acquire) == 0 {
            return Ok(0);
        }
        let stripes = stripes_of(ids.iter());
        let _guards: Vec<_> = stripes.iter().map(|&s| self.stripes[s].lock()).collect();
        let m = self.cf(CF_META);
        let mut batch = WriteBatch::default();
        let mut pinned: Vec<(ChunkId, u32)> = Vec::new();
        let mut seen = cairn_core::ChunkIdSet::default();
        for id in ids {
            if !seen.insert(*id) {
                continue;
            }
            let Some(slot) = self.cached_slot(id) else {
                continue;
            };
            let key = pin_key(pin, id);
            // A record left by an earlier cache entry of the chunk (deleted while pinned)
            // does not hold this one.
            if let Some(v) = self.db.get_pinned_cf(m, &key)? {
                if decode_stamp(&v) == slot.stamp {
                    continue;
                }
            }
            let pins = slot.pins.saturating_add(1);
            batch.put_cf(m, key, slot.stamp.to_le_bytes());
            batch.put_cf(
                m,
                cache_key(id),
                CacheSlot { pins, ..slot }.entry().encode(),
            );
            pinned.push((*id, pins));
        }
        if pinned.is_empty() {
            return Ok(0);
        }
        self.write(batch)?;
        let mut cache = self.cache.lock();
        for (id, pins) in &pinned {
            if let Some(slot) = cache.slots.get_mut(id) {
                slot.pins = *pins;
            }
        }
        Ok(pinned.len() as u64)
    }

    /// Removes every record of pin name `pin` (see [`ChunkStore::pin_cached`]), counting the
    /// pin off the cache entries of the chunks it held that are still cached (a chunk GC
    /// deleted meanwhile is only forgotten); returns how many records it removed. Works in
    /// synced batches under the stripe locks of the chunks concerned.
    pub fn unpin_cached(&self, pin: &str) -> Result<u64, ChunkError> {
        let prefix = pin_prefix(pin);
        let m = self.cf(CF_META);
        let mut ids = Vec::new();
        {
            let mut it = self.db.raw_iterator_cf(m);
            it.seek(&prefix);
            while let Some(key) = it.key() {
                let Some(rest) = key.strip_prefix(&prefix[..]) else {
                    break;
                };
                // Longer keys are records of a name extending this one with a `\0`.
                if let Some(id) = ChunkId::from_slice(rest) {
                    ids.push(id);
                }
                it.next();
            }
            it.status()?;
        }
        let mut removed = 0u64;
        for group in ids.chunks(CACHE_BATCH) {
            let stripes = stripes_of(group.iter());
            let _guards: Vec<_> = stripes.iter().map(|&s| self.stripes[s].lock()).collect();
            let mut batch = WriteBatch::default();
            let mut unpinned: Vec<(ChunkId, u32)> = Vec::new();
            let mut records = 0u64;
            for id in group {
                let key = pin_key(pin, id);
                // Re-read under the lock: a concurrent unpin of this name may have taken it.
                let Some(v) = self.db.get_pinned_cf(m, &key)? else {
                    continue;
                };
                let stamp = decode_stamp(&v);
                drop(v);
                batch.delete_cf(m, key);
                records += 1;
                if let Some(slot) = self.cached_slot(id).filter(|s| s.stamp == stamp) {
                    let pins = slot.pins.saturating_sub(1);
                    batch.put_cf(
                        m,
                        cache_key(id),
                        CacheSlot { pins, ..slot }.entry().encode(),
                    );
                    unpinned.push((*id, pins));
                }
            }
            if records == 0 {
                continue;
            }
            self.write(batch)?;
            removed += records;
            let mut cache = self.cache.lock();
            for (id, pins) in &unpinned {
                if let Some(slot) = cache.slots.get_mut(id) {
                    slot.pins = *pins;
                }
            }
        }
        Ok(removed)
    }

    /// Totals of the fetch cache (see [`CacheStats`]), from memory.
    pub fn cache_stats(&self) -> CacheStats {
        let cache = self.cache.lock();
        let mut stats = CacheStats {
            chunks: cache.slots.len() as u64,
            stored_bytes: cache.stored_bytes,
            ..CacheStats::default()
        };
        for slot in cache.slots.values().filter(|s| s.pins > 0) {
            stats.pinned_chunks += 1;
            stats.pinned_bytes += u64::from(slot.stored_len);
        }
        stats
    }

    /// Up to `max` stored chunk ids in id order, starting after `after` (from the first id if
    /// `None`): one range scan of the index, for walking the whole store a page at a time
    /// (repair, rebalance, scrub). An id stored or removed during the walk may or may not be
    /// seen; every id present throughout is seen exactly once.
    pub fn list_ids(
        &self,
        after: Option<&ChunkId>,
        max: usize,
    ) -> Result<Vec<ChunkId>, ChunkError> {
        let mut out = Vec::with_capacity(max.min(1024));
        if max == 0 {
            return Ok(out);
        }
        let mut it = self.db.raw_iterator_cf(self.cf(CF_INDEX));
        match after {
            Some(a) => {
                it.seek(a.0);
                if it.key() == Some(&a.0[..]) {
                    it.next();
                }
            }
            None => it.seek_to_first(),
        }
        while out.len() < max {
            let Some(key) = it.key() else { break };
            let id = ChunkId::from_slice(key).ok_or_else(|| {
                ChunkError::CorruptIndex(format!(
                    "an index key of {} bytes is not a chunk id",
                    key.len()
                ))
            })?;
            out.push(id);
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// Store totals.
    pub fn stats(&self) -> Result<ChunkStats, ChunkError> {
        let m = self.cf(CF_META);
        let get = |k: &[u8]| -> Result<u64, ChunkError> {
            Ok(self
                .db
                .get_cf(m, k)?
                .map_or(0, |v| decode_i64(&v).max(0) as u64))
        };
        Ok(ChunkStats {
            chunks: get(STAT_CHUNKS)?,
            raw_bytes: get(STAT_RAW)?,
            stored_bytes: get(STAT_STORED)?,
        })
    }

    /// The chunks `owner` ([`cairn_core::owner_tag`] of a bucket) stored first that this store
    /// holds, and their stored (compressed) bytes: counters kept in the write batch of every
    /// put, delete and replace, so exact at every write and read without a scan. Owner 0
    /// (unattributed) is not counted: answers (0, 0).
    pub fn owner_usage(&self, owner: u64) -> Result<(u64, u64), ChunkError> {
        if owner == 0 {
            return Ok((0, 0));
        }
        let m = self.cf(CF_META);
        let get = |k: Vec<u8>| -> Result<u64, ChunkError> {
            Ok(self
                .db
                .get_cf(m, k)?
                .map_or(0, |v| decode_i64(&v).max(0) as u64))
        };
        Ok((
            get(owner_key(owner, "chunks"))?,
            get(owner_key(owner, "bytes"))?,
        ))
    }

    /// Test hook: moves a chunk's stored times `by_ms` into the past, as if it had been
    /// written (and last deduplicated against) that much earlier.
    #[doc(hidden)]
    pub fn backdate_for_test(&self, id: &ChunkId, by_ms: u64) -> Result<(), ChunkError> {
        let _guard = self.stripes[id.0[0] as usize].lock();
        if let Some(mut meta) = self.meta(id)? {
            meta.created_ms = meta.created_ms.saturating_sub(by_ms);
            meta.touched_ms = meta.touched_ms.saturating_sub(by_ms);
            self.db
                .put_cf_opt(self.cf(CF_INDEX), id.0, meta.encode(), &self.write_opts)?;
        }
        Ok(())
    }

    /// Test hook: overwrites a chunk's payload with other bytes, as disk corruption would.
    #[doc(hidden)]
    pub fn corrupt_for_test(&self, id: &ChunkId, payload: &[u8]) -> Result<(), ChunkError> {
        self.db
            .put_cf_opt(self.cf(CF_DATA), id.0, payload, &self.write_opts)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> ChunkStore {
        ChunkStore::open(dir, ChunkConfig::default()).unwrap()
    }

    #[test]
    fn put_is_idempotent_and_get_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let raw = Bytes::from(vec![b'x'; 100_000]);
        let id = ChunkId::of(&raw);
        let c = StoredChunk::encode(raw.clone());
        assert_eq!(c.codec, Codec::Zstd);
        assert!(s.put(&id, &c).unwrap());
        let after_first = s.stats().unwrap();
        assert!(!s.put(&id, &c).unwrap());
        assert_eq!(s.stats().unwrap(), after_first);
        assert_eq!(after_first.chunks, 1);
        assert_eq!(after_first.raw_bytes, 100_000);
        assert_eq!(after_first.stored_bytes, c.payload.len() as u64);
        assert_eq!(s.get(&id).unwrap().unwrap(), raw);
        let other = ChunkId::of(b"other");
        assert_eq!(s.get(&other).unwrap(), None);
        assert_eq!(s.has_many(&[id, other]).unwrap(), vec![true, false]);
    }

    #[test]
    fn put_many_stores_new_chunks_once_and_counts_them_like_single_puts() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let chunk = |i: u32| {
            let raw = Bytes::from(i.to_le_bytes().repeat(1000));
            (ChunkId::of(&raw), StoredChunk::encode(raw))
        };
        assert!(s.put(&chunk(0).0, &chunk(0).1).unwrap());
        // Chunk 0 is there already and chunk 2 comes twice: only the new ones count.
        let batch = vec![chunk(0), chunk(1), chunk(2), chunk(2), chunk(3)];
        assert_eq!(
            s.put_many(&batch).unwrap(),
            vec![false, true, true, false, true]
        );
        let st = s.stats().unwrap();
        assert_eq!((st.chunks, st.raw_bytes), (4, 4 * 4000));
        for i in 0..4 {
            let (id, _) = chunk(i);
            assert_eq!(
                s.get(&id).unwrap().unwrap(),
                Bytes::from(i.to_le_bytes().repeat(1000))
            );
        }
        assert_eq!(s.put_many(&[]).unwrap(), Vec::<bool>::new());
        drop(s);
        assert_eq!(
            open(dir.path()).stats().unwrap().chunks,
            4,
            "durable across reopen"
        );
    }

    #[test]
    fn corrupt_payload_is_detected_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let raw = Bytes::from_static(b"some bytes that will rot on disk......");
        let id = ChunkId::of(&raw);
        s.put(&id, &StoredChunk::encode(raw)).unwrap();
        s.corrupt_for_test(&id, b"some bytes that will rot on disk....X.")
            .unwrap();
        assert!(matches!(s.get(&id), Err(ChunkError::Corrupt { .. })));
    }

    #[test]
    fn put_verified_rejects_mismatched_payload() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let c = StoredChunk::encode(Bytes::from_static(b"abc"));
        let wrong = ChunkId::of(b"abd");
        assert!(matches!(
            s.put_verified(&wrong, &c),
            Err(ChunkError::Mismatch { .. })
        ));
        assert_eq!(s.stats().unwrap().chunks, 0);
        assert!(s.put_verified(&ChunkId::of(b"abc"), &c).unwrap());
    }

    #[test]
    fn data_and_stats_survive_reopen_and_delete_updates_them() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<ChunkId> = {
            let s = open(dir.path());
            (0..50u32)
                .map(|i| {
                    let raw = Bytes::from(i.to_le_bytes().repeat(3000));
                    let id = ChunkId::of(&raw);
                    s.put(&id, &StoredChunk::encode(raw)).unwrap();
                    id
                })
                .collect()
        };
        let s = open(dir.path());
        assert_eq!(s.stats().unwrap().chunks, 50);
        assert_eq!(s.stats().unwrap().raw_bytes, 50 * 12_000);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                s.get(id).unwrap().unwrap(),
                Bytes::from((i as u32).to_le_bytes().repeat(3000))
            );
        }
        assert!(s.delete(&ids[0]).unwrap());
        assert!(!s.delete(&ids[0]).unwrap());
        assert_eq!(s.stats().unwrap().chunks, 49);
        assert_eq!(s.get(&ids[0]).unwrap(), None);
    }

    #[test]
    fn flushes_on_tmpfs_whatever_its_direct_io_support() {
        // tmpfs took O_DIRECT only from Linux 6.6 on; the store must open and flush there
        // either way (the probe decides).
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            return;
        }
        let dir = tempfile::tempdir_in(shm).unwrap();
        let s = open(dir.path());
        let raw = Bytes::from(vec![3u8; 300_000]);
        let id = ChunkId::of(&raw);
        s.put(&id, &StoredChunk::encode(raw.clone())).unwrap();
        s.db.flush_cf(s.cf(CF_DATA)).unwrap();
        assert_eq!(s.get(&id).unwrap().unwrap(), raw);
    }

    impl Versioned for ChunkMetaV1 {
        const FORMAT: u8 = 1;
        const WHAT: &'static str = "chunk index entry (format 1)";
    }

    #[test]
    fn format_1_index_entries_read_with_touched_as_created() {
        let v1 = ChunkMetaV1 {
            codec: Codec::Zstd,
            raw_len: 10,
            stored_len: 7,
            created_ms: 1234,
        };
        let m = ChunkMeta::decode(&v1.encode()).unwrap();
        assert_eq!((m.created_ms, m.touched_ms, m.raw_len), (1234, 1234, 10));
        assert_eq!(ChunkMeta::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn dedup_put_refreshes_touched_and_guards_the_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let raw = Bytes::from(vec![b'y'; 5000]);
        let id = ChunkId::of(&raw);
        let c = StoredChunk::encode(raw);
        assert!(s.put(&id, &c).unwrap());
        let fresh = s.meta(&id).unwrap().unwrap();
        // A dedup hit within the touch interval writes nothing.
        assert!(!s.put(&id, &c).unwrap());
        assert_eq!(s.meta(&id).unwrap().unwrap(), fresh);
        s.backdate_for_test(&id, 3_600_000).unwrap();
        let cutoff = now_ms() - 1_800_000;
        assert!(s.meta(&id).unwrap().unwrap().last_referenced_ms() < cutoff);
        // An old chunk deduplicated against is young again for the sweep.
        assert!(!s.put(&id, &c).unwrap());
        let touched = s.meta(&id).unwrap().unwrap();
        assert!(touched.touched_ms >= cutoff);
        assert_eq!(touched.created_ms, fresh.created_ms - 3_600_000);
        assert_eq!(
            s.delete_unreferenced_before(&[id], cutoff).unwrap(),
            vec![false]
        );
        assert_eq!(s.stats().unwrap().chunks, 1);
        s.backdate_for_test(&id, 3_600_000).unwrap();
        assert_eq!(
            s.delete_unreferenced_before(&[id], cutoff).unwrap(),
            vec![true]
        );
        assert_eq!(s.stats().unwrap().chunks, 0);
    }

    #[test]
    fn touch_refreshes_only_stored_chunks_and_keeps_a_given_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let raw = Bytes::from(vec![b't'; 5000]);
        let id = ChunkId::of(&raw);
        let absent = ChunkId::of(b"never stored");
        s.put(&id, &StoredChunk::encode(raw)).unwrap();
        s.backdate_for_test(&id, 7_200_000).unwrap();
        let cutoff = now_ms() - 3_600_000;
        // A time older than the stored one, or within the touch interval of it, changes nothing.
        let old = s.meta(&id).unwrap().unwrap();
        assert_eq!(
            s.touch_many(&[id, absent], Some(old.touched_ms + 1000))
                .unwrap(),
            vec![true, false]
        );
        assert_eq!(s.meta(&id).unwrap().unwrap(), old);
        // A later time moves it (a rebalanced copy keeps its source's time)...
        let moved = old.touched_ms + 2 * DEFAULT_TOUCH_INTERVAL_MS;
        s.touch_many(&[id], Some(moved)).unwrap();
        assert_eq!(s.meta(&id).unwrap().unwrap().touched_ms, moved);
        // ...and a touch without a time makes it young for the sweep, as a dedup put does.
        assert_eq!(s.touch_many(&[id], None).unwrap(), vec![true]);
        assert_eq!(
            s.delete_unreferenced_before(&[id], cutoff).unwrap(),
            vec![false]
        );
        assert!(!s.has_many(&[absent]).unwrap()[0]);
    }

    #[test]
    fn replace_overwrites_a_corrupt_copy_and_keeps_stats_exact() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let raw = Bytes::from(vec![b'r'; 20_000]);
        let id = ChunkId::of(&raw);
        let c = StoredChunk::encode(raw.clone());
        s.put(&id, &c).unwrap();
        let stats = s.stats().unwrap();
        let meta = s.meta(&id).unwrap().unwrap();
        s.corrupt_for_test(&id, b"rotten").unwrap();
        assert!(s.get(&id).is_err());
        // A payload that does not match the id is refused and changes nothing.
        let wrong = StoredChunk::encode(Bytes::from_static(b"other bytes"));
        assert!(matches!(
            s.replace(&id, &wrong),
            Err(ChunkError::Mismatch { .. })
        ));
        assert!(s.get(&id).is_err());
        // A good copy in another encoding: lengths and stats follow it, times are kept.
        let raw_copy = StoredChunk {
            codec: Codec::Raw,
            raw_len: raw.len() as u32,
            payload: raw.clone(),
        };
        assert!(s.replace(&id, &raw_copy).unwrap());
        assert_eq!(s.get(&id).unwrap().unwrap(), raw);
        let after = s.meta(&id).unwrap().unwrap();
        assert_eq!(
            (after.created_ms, after.touched_ms),
            (meta.created_ms, meta.touched_ms)
        );
        assert_eq!(after.stored_len, 20_000);
        assert_eq!(s.stats().unwrap().chunks, stats.chunks);
        assert_eq!(s.stats().unwrap().stored_bytes, 20_000);
        assert!(s.replace(&id, &c).unwrap());
        assert_eq!(s.stats().unwrap(), stats);
        // Absent: stored anew and counted.
        s.delete(&id).unwrap();
        assert!(!s.replace(&id, &c).unwrap());
        assert_eq!(s.stats().unwrap(), stats);
    }

    impl Versioned for ChunkMetaV2 {
        const FORMAT: u8 = 2;
        const WHAT: &'static str = "chunk index entry (format 2)";
    }

    #[test]
    fn format_2_index_entries_read_as_unattributed() {
        let v2 = ChunkMetaV2 {
            codec: Codec::Raw,
            raw_len: 10,
            stored_len: 10,
            created_ms: 1234,
            touched_ms: 5678,
        };
        let m = ChunkMeta::decode(&v2.encode()).unwrap();
        assert_eq!(
            (m.created_ms, m.touched_ms, m.stored_len, m.owner),
            (1234, 5678, 10, 0)
        );
        let owned = ChunkMeta { owner: 42, ..m };
        assert_eq!(ChunkMeta::decode(&owned.encode()).unwrap(), owned);
    }

    /// Per-owner counters: "first writer pays", kept exact by every write that adds or
    /// removes a chunk.
    #[test]
    fn owner_counters_follow_puts_deletes_sweeps_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let (a, b) = (cairn_core::owner_tag("a"), cairn_core::owner_tag("b"));
        let chunk = |i: u32| {
            let raw = Bytes::from(i.to_le_bytes().repeat(1000 + i as usize));
            (ChunkId::of(&raw), StoredChunk::encode(raw))
        };
        let len = |i: u32| chunk(i).1.payload.len() as u64;
        // New for a; the same chunk for b is a dedup hit: b pays nothing.
        assert!(s.put_owned(&chunk(0).0, &chunk(0).1, a).unwrap());
        assert!(!s.put_owned(&chunk(0).0, &chunk(0).1, b).unwrap());
        assert_eq!(s.owner_usage(a).unwrap(), (1, len(0)));
        assert_eq!(s.owner_usage(b).unwrap(), (0, 0));
        assert_eq!(s.meta(&chunk(0).0).unwrap().unwrap().owner, a);
        // A group: chunk 0 deduplicates, 1 and 2 are new for b (2 twice counts once).
        let group = vec![chunk(0), chunk(1), chunk(2), chunk(2)];
        s.put_many_owned(&group, b).unwrap();
        assert_eq!(s.owner_usage(b).unwrap(), (2, len(1) + len(2)));
        assert_eq!(s.owner_usage(a).unwrap(), (1, len(0)));
        // Unattributed puts count in the totals only.
        s.put(&chunk(3).0, &chunk(3).1).unwrap();
        assert_eq!(s.owner_usage(0).unwrap(), (0, 0));
        let st = s.stats().unwrap();
        let (ua, ub) = (s.owner_usage(a).unwrap(), s.owner_usage(b).unwrap());
        assert_eq!(st.stored_bytes, ua.1 + ub.1 + len(3));
        // Deletes subtract from the owner recorded in the index entry.
        assert!(s.delete(&chunk(1).0).unwrap());
        assert_eq!(s.owner_usage(b).unwrap(), (1, len(2)));
        s.delete_many(&[chunk(2).0, chunk(3).0, chunk(2).0])
            .unwrap();
        assert_eq!(s.owner_usage(b).unwrap(), (0, 0));
        // GC's sweep: a young chunk is kept (and stays counted), an old one goes.
        s.put_owned(&chunk(4).0, &chunk(4).1, b).unwrap();
        let cutoff = now_ms() - 1_800_000;
        assert_eq!(
            s.delete_unreferenced_before(&[chunk(0).0, chunk(4).0], cutoff)
                .unwrap(),
            vec![false, false]
        );
        assert_eq!(s.owner_usage(a).unwrap(), (1, len(0)));
        s.backdate_for_test(&chunk(0).0, 3_600_000).unwrap();
        assert_eq!(
            s.delete_unreferenced_before(&[chunk(0).0, chunk(4).0], cutoff)
                .unwrap(),
            vec![true, false]
        );
        assert_eq!(s.owner_usage(a).unwrap(), (0, 0));
        assert_eq!(s.owner_usage(b).unwrap(), (1, len(4)));
        // Scrub's replace with another encoding moves the owner's bytes by the difference and
        // keeps the owner.
        let (id4, c4) = chunk(4);
        let raw4 = c4.decode_verified(&id4).unwrap();
        assert!(s.replace(&id4, &StoredChunk::raw(raw4.clone())).unwrap());
        assert_eq!(s.owner_usage(b).unwrap(), (1, raw4.len() as u64));
        assert_eq!(s.meta(&id4).unwrap().unwrap().owner, b);
        assert!(s.replace(&id4, &c4).unwrap());
        assert_eq!(s.owner_usage(b).unwrap(), (1, len(4)));
        assert_eq!(s.get_stored_owned(&id4).unwrap().unwrap().1, b);
        // The counters are durable and the sum matches the store's bytes.
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.owner_usage(b).unwrap(), (1, len(4)));
        assert_eq!(s.stats().unwrap().stored_bytes, len(4));
    }

    #[test]
    fn oversized_chunk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let c = StoredChunk {
            codec: Codec::Raw,
            raw_len: (MAX_CHUNK_SIZE + 1) as u32,
            payload: Bytes::from(vec![1u8; MAX_CHUNK_SIZE + 1]),
        };
        assert!(matches!(
            s.put(&ChunkId::of(&c.payload), &c),
            Err(ChunkError::TooLarge(_))
        ));
    }

    /// A chunk of `len` distinct-per-`i` bytes, stored raw (stored length = `len`).
    fn fetched(i: u32, len: usize) -> (ChunkId, StoredChunk) {
        let mut raw = i.to_le_bytes().repeat(len / 4 + 1);
        raw.truncate(len);
        let raw = Bytes::from(raw);
        (ChunkId::of(&raw), StoredChunk::raw(raw))
    }

    #[test]
    fn put_cached_stores_a_new_chunk_and_leaves_a_stored_one_uncached() {
        use crate::ChunkBackend;
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        assert_eq!(s.cache_stats(), CacheStats::default());
        let (id, c) = fetched(1, 5000);
        assert!(s.put_cached(&id, &c).unwrap());
        assert!(s.is_cached(&id));
        assert_eq!(s.get(&id).unwrap().unwrap(), c.payload);
        assert_eq!(s.meta(&id).unwrap().unwrap().owner, 0);
        let stats = s.stats().unwrap();
        assert_eq!(
            (stats.chunks, stats.raw_bytes, stats.stored_bytes),
            (1, 5000, 5000)
        );
        let cached = CacheStats {
            chunks: 1,
            stored_bytes: 5000,
            pinned_chunks: 0,
            pinned_bytes: 0,
        };
        assert_eq!(s.cache_stats(), cached);
        // Cached already: nothing changes.
        assert!(!s.put_cached(&id, &c).unwrap());
        assert_eq!(s.stats().unwrap(), stats);
        assert_eq!(s.cache_stats(), cached);
        // Stored locally: not the cache's.
        let (local, lc) = fetched(2, 3000);
        assert!(s.put(&local, &lc).unwrap());
        assert!(!s.put_cached(&local, &lc).unwrap());
        assert!(!s.is_cached(&local));
        assert_eq!(s.cache_stats(), cached);
        assert_eq!(s.stats().unwrap().chunks, 2);
        // Through the backend trait.
        let b: &dyn ChunkBackend = &s;
        assert!(b.caches());
        assert_eq!(b.cache_stats().unwrap(), Some(cached));
        let (other, oc) = fetched(3, 1000);
        assert!(b.put_cached(&other, &oc).unwrap());
        assert!(s.is_cached(&other));
        assert_eq!(b.evict_cache(0).unwrap(), (2, 6000));
        assert_eq!(s.stats().unwrap().chunks, 1);
        assert_eq!(s.get(&local).unwrap().unwrap(), lc.payload);
    }

    #[test]
    fn cache_set_pins_and_bytes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, ca) = fetched(1, 1000);
        let (b, cb) = fetched(2, 2000);
        let (c, cc) = fetched(3, 4000);
        let before = {
            let s = open(dir.path());
            for (id, ch) in [(&a, &ca), (&b, &cb), (&c, &cc)] {
                assert!(s.put_cached(id, ch).unwrap());
            }
            assert_eq!(s.pin_cached("keep", &[b]).unwrap(), 1);
            // A promoted chunk leaves the cache durably.
            assert!(!s.put(&c, &cc).unwrap());
            s.cache_stats()
        };
        assert_eq!(
            before,
            CacheStats {
                chunks: 2,
                stored_bytes: 3000,
                pinned_chunks: 1,
                pinned_bytes: 2000,
            }
        );
        let s = open(dir.path());
        assert_eq!(s.cache_stats(), before);
        assert!(s.is_cached(&a) && s.is_cached(&b) && !s.is_cached(&c));
        assert_eq!(s.pin_cached("keep", &[b]).unwrap(), 0, "pin is durable");
        assert_eq!(s.evict_cache(0).unwrap(), (1, 1000));
        assert_eq!(s.get(&a).unwrap(), None);
        assert_eq!(s.get(&b).unwrap().unwrap(), cb.payload);
        assert_eq!(s.get(&c).unwrap().unwrap(), cc.payload);
        assert_eq!(s.unpin_cached("keep").unwrap(), 1);
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.cache_stats().pinned_chunks, 0);
        assert_eq!(s.evict_cache(0).unwrap(), (1, 2000));
        assert_eq!(s.cache_stats(), CacheStats::default());
        let stats = s.stats().unwrap();
        assert_eq!((stats.chunks, stats.stored_bytes), (1, 4000));
    }

    #[test]
    fn a_local_put_or_touch_promotes_a_cached_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let chunks: Vec<_> = (0..6).map(|i| fetched(i, 1000 + i as usize)).collect();
        for (id, c) in &chunks {
            assert!(s.put_cached(id, c).unwrap());
        }
        let owner = cairn_core::owner_tag("bucket");
        assert!(!s.put(&chunks[0].0, &chunks[0].1).unwrap());
        assert!(!s
            .put_encoded_owned(
                &chunks[1].0,
                chunks[1].1.codec,
                chunks[1].1.raw_len,
                &chunks[1].1.payload,
                owner
            )
            .unwrap());
        assert_eq!(
            s.put_many_owned(&[chunks[2].clone(), chunks[2].clone()], owner)
                .unwrap(),
            vec![false, false]
        );
        assert!(!s.put_verified(&chunks[3].0, &chunks[3].1).unwrap());
        assert_eq!(
            s.touch_many(&[chunks[4].0, chunks[4].0], None).unwrap(),
            vec![true, true]
        );
        for (id, _) in &chunks[..5] {
            assert!(!s.is_cached(id));
        }
        // A dedup put changes no attribution: the promoted chunks stay unattributed.
        assert_eq!(s.owner_usage(owner).unwrap(), (0, 0));
        assert_eq!(s.cache_stats().chunks, 1);
        assert_eq!(s.evict_cache(0).unwrap(), (1, 1005));
        assert_eq!(s.evict_cache(0).unwrap(), (0, 0));
        for (id, c) in &chunks[..5] {
            assert_eq!(s.get(id).unwrap().unwrap(), c.payload);
        }
        assert_eq!(s.get(&chunks[5].0).unwrap(), None);
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.cache_stats(), CacheStats::default());
        assert_eq!(s.stats().unwrap().chunks, 5);
    }

    #[test]
    fn evict_cache_evicts_least_recently_used_first_and_keeps_stats_exact() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let (local, lc) = fetched(9, 500);
        s.put(&local, &lc).unwrap();
        let chunks: Vec<_> = (0..3).map(|i| fetched(i, 1000)).collect();
        for (id, c) in &chunks {
            assert!(s.put_cached(id, c).unwrap());
        }
        assert_eq!(s.get(&chunks[0].0).unwrap().unwrap(), chunks[0].1.payload);
        // Within the bound: nothing to do.
        assert_eq!(s.evict_cache(3000).unwrap(), (0, 0));
        assert_eq!(s.evict_cache(2000).unwrap(), (1, 1000));
        assert_eq!(s.get(&chunks[1].0).unwrap(), None);
        assert!(!s.has_many(&[chunks[1].0]).unwrap()[0]);
        assert_eq!(s.get(&chunks[0].0).unwrap().unwrap(), chunks[0].1.payload);
        assert_eq!(s.get(&chunks[2].0).unwrap().unwrap(), chunks[2].1.payload);
        assert_eq!(
            s.stats().unwrap(),
            ChunkStats {
                chunks: 3,
                raw_bytes: 2500,
                stored_bytes: 2500,
            }
        );
        assert_eq!(s.cache_stats().stored_bytes, 2000);
        // The reads above used chunk 0 then chunk 2: a stored read (shipping) is a use too.
        s.get_stored(&chunks[0].0).unwrap().unwrap();
        assert_eq!(s.evict_cache(1500).unwrap(), (1, 1000));
        assert!(s.is_cached(&chunks[0].0) && !s.is_cached(&chunks[2].0));
        assert_eq!(s.stats().unwrap().chunks, 2);
        assert_eq!(s.get(&local).unwrap().unwrap(), lc.payload);
    }

    #[test]
    fn pinned_chunks_survive_eviction_until_every_pin_name_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let (a, ca) = fetched(1, 1000);
        let (b, cb) = fetched(2, 2000);
        let (local, lc) = fetched(3, 100);
        s.put_cached(&a, &ca).unwrap();
        s.put_cached(&b, &cb).unwrap();
        s.put(&local, &lc).unwrap();
        // Idempotent per name; ids not cached are skipped.
        assert_eq!(s.pin_cached("x", &[a, local, a]).unwrap(), 1);
        assert_eq!(s.pin_cached("x", &[a]).unwrap(), 0);
        assert_eq!(
            s.cache_stats(),
            CacheStats {
                chunks: 2,
                stored_bytes: 3000,
                pinned_chunks: 1,
                pinned_bytes: 1000,
            }
        );
        assert_eq!(s.evict_cache(0).unwrap(), (1, 2000));
        assert_eq!(
            s.evict_cache(0).unwrap(),
            (0, 0),
            "only pinned chunks remain"
        );
        assert_eq!(s.get(&a).unwrap().unwrap(), ca.payload);
        assert_eq!(s.unpin_cached("x").unwrap(), 1);
        assert_eq!(s.unpin_cached("x").unwrap(), 0);
        assert_eq!(s.evict_cache(0).unwrap(), (1, 1000));
        // Two names: both must go.
        s.put_cached(&b, &cb).unwrap();
        assert_eq!(s.pin_cached("x", &[b]).unwrap(), 1);
        assert_eq!(s.pin_cached("x\0y", &[b]).unwrap(), 1);
        assert_eq!(s.pin_cached("y", &[b]).unwrap(), 1);
        assert_eq!(s.unpin_cached("x").unwrap(), 1, "a longer name is its own");
        assert_eq!(s.evict_cache(0).unwrap(), (0, 0));
        assert_eq!(s.unpin_cached("y").unwrap(), 1);
        assert_eq!(s.evict_cache(0).unwrap(), (0, 0));
        assert_eq!(s.unpin_cached("x\0y").unwrap(), 1);
        assert_eq!(s.cache_stats().pinned_chunks, 0);
        assert_eq!(s.evict_cache(0).unwrap(), (1, 2000));
        assert_eq!(s.stats().unwrap().chunks, 1);
        assert_eq!(s.pin_cached("x", &[b]).unwrap(), 0, "no longer cached");
    }

    #[test]
    fn gc_deletion_of_a_cached_chunk_removes_it_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let (a, ca) = fetched(1, 1000);
        let (b, cb) = fetched(2, 2000);
        let (c, cc) = fetched(3, 3000);
        for (id, ch) in [(&a, &ca), (&b, &cb), (&c, &cc)] {
            s.put_cached(id, ch).unwrap();
        }
        assert_eq!(s.pin_cached("p", &[a]).unwrap(), 1);
        let cutoff = now_ms() - 1_800_000;
        // Young chunks are kept by the sweep, and stay cached.
        assert_eq!(
            s.delete_unreferenced_before(&[a, b], cutoff).unwrap(),
            vec![false, false]
        );
        assert_eq!(s.cache_stats().chunks, 3);
        s.backdate_for_test(&a, 3_600_000).unwrap();
        s.backdate_for_test(&b, 3_600_000).unwrap();
        // Pinned or not, an unreferenced chunk goes, and its cache entry with it.
        assert_eq!(
            s.delete_unreferenced_before(&[a, b], cutoff).unwrap(),
            vec![true, true]
        );
        assert_eq!(
            s.cache_stats(),
            CacheStats {
                chunks: 1,
                stored_bytes: 3000,
                pinned_chunks: 0,
                pinned_bytes: 0,
            }
        );
        assert!(s.delete(&c).unwrap());
        assert_eq!(s.cache_stats(), CacheStats::default());
        assert_eq!(s.stats().unwrap(), ChunkStats::default());
        // Fetched again: the pin record left by the deleted entry does not hold the new one.
        s.put_cached(&a, &ca).unwrap();
        assert_eq!(s.cache_stats().pinned_chunks, 0);
        assert_eq!(s.pin_cached("p", &[a]).unwrap(), 1);
        assert_eq!(s.cache_stats().pinned_chunks, 1);
        assert_eq!(s.unpin_cached("p").unwrap(), 1);
        assert_eq!(s.cache_stats().pinned_chunks, 0);
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.cache_stats().stored_bytes, 1000);
        assert_eq!(s.delete_many(&[a, b]).unwrap(), vec![true, false]);
        assert_eq!(s.cache_stats(), CacheStats::default());
        drop(s);
        assert_eq!(open(dir.path()).cache_stats(), CacheStats::default());
    }

    #[test]
    fn replace_keeps_a_cached_chunk_cached_and_its_bytes_exact() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let raw = Bytes::from(vec![b'z'; 20_000]);
        let id = ChunkId::of(&raw);
        let c = StoredChunk::encode(raw.clone());
        assert!(s.put_cached(&id, &c).unwrap());
        s.corrupt_for_test(&id, b"rotten").unwrap();
        assert!(s.replace(&id, &StoredChunk::raw(raw)).unwrap());
        assert!(s.is_cached(&id));
        assert_eq!(s.cache_stats().stored_bytes, 20_000);
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.cache_stats().stored_bytes, 20_000);
        assert_eq!(s.evict_cache(0).unwrap(), (1, 20_000));
        assert_eq!(s.stats().unwrap(), ChunkStats::default());
    }
}
