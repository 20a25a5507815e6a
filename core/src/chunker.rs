//! Chunkers decide where a byte stream is cut into chunks.
//!
//! Objects written whole use [`FastCdc`] (content-defined, so an insertion only changes the chunks
//! around it); volumes and files written at offsets use [`FixedChunker`]. Both are incremental: the
//! caller keeps the bytes of the chunk in progress and asks where to cut, so memory stays bounded
//! by the maximum chunk size whatever the object size.

/// Decides chunk boundaries over a buffer that starts at the current chunk's first byte.
pub trait Chunker: Send {
    /// Length of the next chunk in `buf`, or `None` when more bytes are needed to decide.
    /// With `eof`, the rest of the stream is in `buf` and a non-empty `buf` always gets a cut.
    fn cut(&self, buf: &[u8], eof: bool) -> Option<usize>;

    /// Largest chunk this chunker emits: callers buffer at most this much.
    fn max_size(&self) -> usize;
}

/// FastCDC with normalized chunking (level 2), as in Xia et al., 2016.
#[derive(Clone, Debug)]
pub struct FastCdc {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
}

/// Default content-defined chunk sizes: min 64 KiB, average 256 KiB, max 1 MiB.
pub const CDC_MIN: usize = 64 << 10;
/// See [`CDC_MIN`].
pub const CDC_AVG: usize = 256 << 10;
/// See [`CDC_MIN`].
pub const CDC_MAX: usize = 1 << 20;

const fn gear_table() -> [u64; 256] {
    // splitmix64: a fixed, well-mixed table; changing it would change every chunk boundary.
    let mut table = [0u64; 256];
    let mut state: u64 = 0x6361_6972_6e5f_6364; // "cairn_cd"
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
}

static GEAR: [u64; 256] = gear_table();

/// A mask of `bits` ones in the high bits, where the gear hash mixes the last 64 bytes.
fn high_mask(bits: u32) -> u64 {
    !0u64 << (64 - bits)
}

impl FastCdc {
    /// A chunker with the given sizes; `min <= avg <= max <= 4 MiB`, `avg` a power of two.
    pub fn new(min: usize, avg: usize, max: usize) -> Result<FastCdc, String> {
        if !(64..=avg).contains(&min) || avg > max || max > crate::MAX_CHUNK_SIZE {
            return Err(format!(
                "chunk sizes must satisfy 64 <= min <= avg <= max <= 4MiB (got {min}/{avg}/{max})"
            ));
        }
        if !avg.is_power_of_two() {
            return Err(format!("average chunk size {avg} must be a power of two"));
        }
        let bits = avg.trailing_zeros();
        Ok(FastCdc {
            min,
            avg,
            max,
            mask_s: high_mask(bits + 2),
            mask_l: high_mask(bits.saturating_sub(2).max(1)),
        })
    }
}

impl FastCdc {
    /// Length of every chunk a run of zero bytes is cut into (but a run's last, cut short by
    /// the end of the stream or by the bytes after the run): the cut decision reads only the
    /// bytes since the chunk's start, so inside a run of zeros it is the same for every chunk.
    pub fn zeros_cut(&self) -> usize {
        let mut fp: u64 = 0;
        for i in self.min..self.max {
            fp = (fp << 1).wrapping_add(GEAR[0]);
            let mask = if i < self.avg {
                self.mask_s
            } else {
                self.mask_l
            };
            if fp & mask == 0 {
                return i + 1;
            }
        }
        self.max
    }
}

impl Default for FastCdc {
    fn default() -> Self {
        FastCdc::new(CDC_MIN, CDC_AVG, CDC_MAX).expect("default sizes are valid")
    }
}

impl Chunker for FastCdc {
    fn cut(&self, buf: &[u8], eof: bool) -> Option<usize> {
        if buf.len() <= self.min {
            return (eof && !buf.is_empty()).then_some(buf.len());
        }
        let end = buf.len().min(self.max);
        let normal = self.avg.min(end);
        let mut fp: u64 = 0;
        let mut i = self.min;
        while i < normal {
            fp = (fp << 1).wrapping_add(GEAR[buf[i] as usize]);
            if fp & self.mask_s == 0 {
                return Some(i + 1);
            }
            i += 1;
        }
        while i < end {
            fp = (fp << 1).wrapping_add(GEAR[buf[i] as usize]);
            if fp & self.mask_l == 0 {
                return Some(i + 1);
            }
            i += 1;
        }
        if end == self.max || eof {
            Some(end)
        } else {
            None
        }
    }

    fn max_size(&self) -> usize {
        self.max
    }
}

/// Cuts every `size` bytes (volumes, random-offset files).
#[derive(Clone, Debug)]
pub struct FixedChunker {
    size: usize,
}

impl FixedChunker {
    /// A chunker of `size`-byte chunks, `1 <= size <= 4 MiB`.
    pub fn new(size: usize) -> Result<FixedChunker, String> {
        if size == 0 || size > crate::MAX_CHUNK_SIZE {
            return Err(format!("fixed chunk size {size} must be 1..=4MiB"));
        }
        Ok(FixedChunker { size })
    }
}

impl Chunker for FixedChunker {
    fn cut(&self, buf: &[u8], eof: bool) -> Option<usize> {
        if buf.len() >= self.size {
            Some(self.size)
        } else if eof && !buf.is_empty() {
            Some(buf.len())
        } else {
            None
        }
    }

    fn max_size(&self) -> usize {
        self.size
    }
}

/// Splits a whole buffer with `chunker` (tests and small inputs).
pub fn split_all<'a>(chunker: &dyn Chunker, mut data: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(n) = chunker.cut(data, true) {
        out.push(&data[..n]);
        data = &data[n..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<u8> {
        let mut v = vec![0u8; n];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
        v
    }

    #[test]
    fn cdc_sizes_are_bounded_and_average_near_target() {
        let data = random(32 << 20, 1);
        let cdc = FastCdc::default();
        let chunks = split_all(&cdc, &data);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), data.len());
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.len() >= CDC_MIN && c.len() <= CDC_MAX, "{}", c.len());
        }
        let avg = data.len() / chunks.len();
        assert!(avg > 150 << 10 && avg < 400 << 10, "average {avg}");
    }

    #[test]
    fn cdc_insertion_only_changes_nearby_chunks() {
        let data = random(8 << 20, 2);
        let mut edited = data.clone();
        let mid = data.len() / 2;
        edited.splice(mid..mid, random(100, 3));
        let cdc = FastCdc::default();
        let a: std::collections::HashSet<_> = split_all(&cdc, &data).into_iter().collect();
        let b = split_all(&cdc, &edited);
        let new_bytes: usize = b.iter().filter(|c| !a.contains(*c)).map(|c| c.len()).sum();
        assert!(new_bytes <= 2 * CDC_MAX, "{new_bytes} new bytes");
    }

    #[test]
    fn incremental_cuts_match_whole_buffer_cuts() {
        let data = random(3 << 20, 4);
        let cdc = FastCdc::default();
        let whole: Vec<usize> = split_all(&cdc, &data).iter().map(|c| c.len()).collect();
        // Feed 100 KiB at a time, as a network stream would.
        let mut cuts = Vec::new();
        let mut start = 0;
        let mut avail = 0;
        while start < data.len() {
            avail = (avail + (100 << 10)).min(data.len());
            let eof = avail == data.len();
            while let Some(n) = cdc.cut(&data[start..avail], eof) {
                cuts.push(n);
                start += n;
            }
        }
        assert_eq!(cuts, whole);
    }

    #[test]
    fn zeros_are_cut_into_chunks_of_zeros_cut() {
        for cdc in [
            FastCdc::default(),
            FastCdc::new(64, 256, 1024).unwrap(),
            FastCdc::new(1024, 4096, 16384).unwrap(),
        ] {
            let zeros = vec![0u8; cdc.max_size() * 3 + 5];
            let chunks = split_all(&cdc, &zeros);
            let z = cdc.zeros_cut();
            assert!(chunks[..chunks.len() - 1].iter().all(|c| c.len() == z));
        }
    }

    #[test]
    fn fixed_chunker_and_bad_parameters() {
        let f = FixedChunker::new(4096).unwrap();
        let parts = split_all(&f, &[1u8; 10_000]);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![4096, 4096, 1808]
        );
        assert!(FixedChunker::new(0).is_err());
        assert!(FastCdc::new(1024, 3000, 8192).is_err());
        assert!(FastCdc::new(1024, 4096, 8 << 20).is_err());
        assert_eq!(f.cut(&[], true), None);
    }
}
