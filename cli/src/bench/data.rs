//! The bytes the benchmark writes: half-compressible, distinct in every page, and cheap to make.
//!
//! One pool is generated once; each object is a copy of a slice of it with a stamp at the
//! start of every 4 KiB page. The stamps make every chunk of every object unique (a chunk is at
//! least 64 KiB, so it always holds whole stamps), within a run and across runs, so dedup never
//! turns a PUT into a metadata write; the copy costs a memcpy, not a random generator.

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Page size of the data pattern and of the stamps.
pub const PAGE: usize = 4096;
/// Random bytes at the start of each page; the rest of the page is repetitive text.
const RANDOM_PART: usize = PAGE / 2;
/// Extra pool bytes beyond the largest object, so objects start at different offsets.
const SLACK: usize = 1 << 20;
/// Run id, object number and page number, 8 bytes each, little-endian.
const STAMP_LEN: usize = 24;

/// One line of the report saying what the data looks like and why.
pub const DESCRIPTION: &str = "half-compressible data: each 4 KiB page holds 2 KiB of random \
bytes and 2 KiB of text from a 32-word vocabulary, so zstd compresses every chunk (to about \
60 %); every page starts with a stamp (run id, object number, page number), so no two chunks \
are alike and dedup cannot make PUTs cheaper; objects are copied from one pre-generated buffer";

const WORDS: [&str; 32] = [
    "cairn", "chunk", "extent", "manifest", "version", "site", "link", "volume", "snapshot",
    "bucket", "object", "key", "tree", "node", "zone", "replica", "store", "the", "a", "of", "and",
    "to", "in", "is", "write", "read", "list", "copy", "delete", "scrub", "repair", "gc",
];

/// Where object bodies come from.
pub struct ObjectSource {
    /// Half-compressible bytes, the largest object plus [`SLACK`].
    pool: Vec<u8>,
    /// Random per run, part of every stamp.
    run_id: u64,
}

impl ObjectSource {
    /// A source for objects up to `max_size` bytes. Takes a moment for large sizes: call it
    /// off the async executor.
    pub fn new(max_size: usize, run_id: u64) -> ObjectSource {
        ObjectSource {
            pool: half_compressible(max_size + SLACK, 0x6361_6972_6e5f_6263),
            run_id,
        }
    }

    /// The body of object `number`, `size` bytes (at most the `max_size` given to `new`).
    /// The same number always gives the same bytes.
    pub fn object(&self, number: u64, size: usize) -> Vec<u8> {
        let offset = (number % (SLACK / PAGE) as u64) as usize * PAGE;
        let mut body = self.pool[offset..offset + size].to_vec();
        for (page_no, page) in body.chunks_mut(PAGE).enumerate() {
            let mut stamp = [0u8; STAMP_LEN];
            stamp[..8].copy_from_slice(&self.run_id.to_le_bytes());
            stamp[8..16].copy_from_slice(&number.to_le_bytes());
            stamp[16..].copy_from_slice(&(page_no as u64).to_le_bytes());
            let n = page.len().min(STAMP_LEN);
            page[..n].copy_from_slice(&stamp[..n]);
        }
        body
    }
}

/// `len` bytes of the pattern in [`DESCRIPTION`], the same for the same seed.
fn half_compressible(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = vec![0u8; len];
    for page in out.chunks_mut(PAGE) {
        let split = page.len().min(RANDOM_PART);
        let (random, text) = page.split_at_mut(split);
        rng.fill_bytes(random);
        let mut i = 0;
        while i < text.len() {
            let word = WORDS[rng.gen_range(0..WORDS.len())].as_bytes();
            let n = word.len().min(text.len() - i);
            text[i..i + n].copy_from_slice(&word[..n]);
            i += n;
            if i < text.len() {
                text[i] = b' ';
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::chunker::{split_all, FastCdc};
    use std::collections::HashSet;

    #[test]
    fn objects_are_deterministic_and_distinct_in_every_chunk() {
        let src = ObjectSource::new(4 << 20, 7);
        assert_eq!(src.object(3, 1 << 20), src.object(3, 1 << 20));
        let cdc = FastCdc::default();
        let mut seen = HashSet::new();
        for n in 0..4 {
            let body = src.object(n, 4 << 20);
            for c in split_all(&cdc, &body) {
                assert!(seen.insert(c.to_vec()), "object {n} repeats a chunk");
            }
        }
        // Another run stamps differently.
        let other = ObjectSource::new(1 << 20, 8);
        assert_ne!(other.object(0, 1 << 20), src.object(0, 1 << 20));
    }

    #[test]
    fn data_is_about_half_compressible() {
        let src = ObjectSource::new(1 << 20, 1);
        let body = src.object(0, 1 << 20);
        let packed = zstd::bulk::compress(&body, 1).unwrap();
        let ratio = packed.len() as f64 / body.len() as f64;
        assert!(ratio > 0.5 && ratio < 0.8, "ratio {ratio}");
        // Small objects and odd sizes work too.
        assert_eq!(src.object(1, 10).len(), 10);
        assert_eq!(src.object(2, 5000).len(), 5000);
    }
}
