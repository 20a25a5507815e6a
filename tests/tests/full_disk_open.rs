//! Opening the stores on a disk filled to the last byte after a crash, with only the room the
//! node keeps for that (its open reserve: three write buffers per file system) given back.
//! The chunk store left records in its WAL (nothing flushed before the crash), so opening it
//! replays them. The MANIFEST a store writes at open is preallocated at 1 MiB rather than
//! RocksDB's 4 MiB: on ext4 a preallocation that runs out of space keeps what it got and
//! leaves the next write nothing.

use cairn_chunkserver::{ChunkConfig, ChunkStore, StoredChunk};
use cairn_core::space::write_buffer_for;
use cairn_core::ChunkId;
use cairn_manifestserver::{ManifestConfig, ManifestStore};
use cairn_tests::random_bytes;
use cairn_tests::smallfs::{fill_to_the_end, SmallFs};

/// Chunk size of the fill.
const CHUNK: usize = 128 << 10;

/// Allocates `size` bytes at `path` (written, so the blocks are really taken).
fn reserve(path: &std::path::Path, size: u64) {
    std::fs::write(path, vec![0xa5; size as usize]).unwrap();
    std::fs::File::open(path).unwrap().sync_all().unwrap();
}

#[test]
fn both_stores_open_on_a_full_disk_with_the_open_reserve_given_back() {
    let fs = SmallFs::new(128);
    eprintln!("file system: {}", fs.kind);
    let (chunks_dir, meta_dir) = (fs.path().join("chunks"), fs.path().join("meta"));
    let total = {
        let st = rustix::fs::statvfs(fs.path()).unwrap();
        st.f_blocks * st.f_frsize
    };
    let wb = write_buffer_for(total);

    // The node's open reserve is made first; then most of a write buffer of chunks is written
    // (no flush: the memtable holds them, and the WAL), and the stores go away without a
    // flush, as in a crash.
    let open_reserve = fs.path().join("open.reserve");
    reserve(&open_reserve, 3 * wb);
    let mut written = Vec::new();
    {
        let store = ChunkStore::open(&chunks_dir, ChunkConfig::default()).unwrap();
        let meta = ManifestStore::open(&meta_dir, ManifestConfig::default()).unwrap();
        for n in 0..(wb * 9 / 10) / CHUNK as u64 {
            let bytes = bytes::Bytes::from(random_bytes(CHUNK, n));
            let id = ChunkId::of(&bytes);
            store.put(&id, &StoredChunk::raw(bytes)).unwrap();
            written.push(id);
        }
        drop(meta);
    }
    eprintln!("{} chunks written", written.len());

    // Whatever room is left is taken to the last byte; then the reserve is given back, as
    // `cairn serve` does before it opens the stores.
    fill_to_the_end(&fs.path().join("filler"));
    std::fs::remove_file(&open_reserve).unwrap();
    eprintln!("free before the open: {} bytes", fs.free_bytes());

    let store = ChunkStore::open(&chunks_dir, ChunkConfig::default())
        .unwrap_or_else(|e| panic!("the chunk store did not open on the full disk: {e}"));
    let free = fs.free_bytes();
    eprintln!("free after the chunk store opened: {free} bytes");
    let _meta = ManifestStore::open(&meta_dir, ManifestConfig::default())
        .unwrap_or_else(|e| panic!("the metadata store did not open on the full disk: {e}"));
    // Opening a store takes what it writes (a MANIFEST, OPTIONS) and the MANIFEST's
    // preallocation: 1 MiB (RocksDB's default is 4 MiB).
    let taken = free.saturating_sub(fs.free_bytes());
    eprintln!("the metadata store's open took {taken} bytes");
    assert!(
        taken < 2 << 20,
        "opening the metadata store took {taken} bytes of a full disk"
    );
    for (i, id) in written.iter().enumerate() {
        let got = store.get(id).unwrap().expect("an acknowledged chunk");
        assert!(got[..] == random_bytes(CHUNK, i as u64)[..]);
    }
}
