//! The chunk codec: zstd when it pays, raw otherwise. A quick probe on a sample skips
//! compression of incompressible data (media, archives, encrypted bytes), which is where a naive
//! "compress everything" store burns most of its write CPU.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

/// How a stored payload is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Codec {
    /// The chunk's bytes as they are.
    Raw = 0,
    /// zstd frame of the chunk's bytes.
    Zstd = 1,
}

impl Codec {
    /// The byte stored in front of a payload.
    pub fn tag(self) -> u8 {
        self as u8
    }

    /// Inverse of [`Codec::tag`].
    pub fn from_tag(t: u8) -> Option<Codec> {
        match t {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// zstd level used for chunks: fast, most of the gain for text-like data.
pub const ZSTD_LEVEL: i32 = 1;
const PROBE_LEN: usize = 16 * 1024;

thread_local! {
    // zstd contexts are costly to create (allocations and table setup) and a chunk-sized output
    // buffer per call means fresh pages to fault in; each blocking-pool thread keeps one of each.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Compresses `data` into `out` (cleared first); returns the compressed length.
fn compress_into(data: &[u8], out: &mut Vec<u8>) -> std::io::Result<usize> {
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        match c.as_mut() {
            Some(c) => c.compress_to_buffer(data, out),
            None => Err(std::io::Error::other("no zstd context")),
        }
    })
}

fn decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(d) => d.decompress(data, capacity),
            None => zstd::bulk::decompress(data, capacity),
        }
    })
}

/// Whether zstd saves at least an eighth of `len` bytes by producing `compressed` bytes. Below
/// that (as ZFS decides for its blocks) the saving is not worth the CPU: data that only
/// shrinks by a few percent (random payloads with small headers, fio's buffers, partly
/// compressed media) would be compressed on every write and decompressed on every read for
/// almost nothing.
fn pays(compressed: usize, len: usize) -> bool {
    compressed <= len - len / 8
}

/// Leading bytes of a small chunk whose byte frequencies are looked at before compressing it.
const SMALL_PROBE_LEN: usize = 4096;

/// Whether `sample`'s byte frequencies are as even as random bytes' (compressed, encrypted or
/// random data, which zstd cannot shrink): the sum of squared byte counts of `n` random bytes
/// is about n²/256 + n, and any skew (text, code, records, sparse data) raises it well above.
/// Costs a histogram, a fraction of a failed zstd attempt on the same bytes.
fn looks_random(sample: &[u8]) -> bool {
    if sample.len() < 512 {
        return false;
    }
    let mut counts = [0u32; 256];
    for &b in sample {
        counts[usize::from(b)] += 1;
    }
    let n = sample.len() as u64;
    let sum_sq: u64 = counts.iter().map(|&c| u64::from(c) * u64::from(c)).sum();
    sum_sq * 4 <= (n * n / 256 + n) * 5
}

/// The probe, so the full attempt is skipped for data that will not compress: for a large
/// chunk, compresses 16 KiB from its middle into `buf` and says whether that paid (the middle,
/// because headers of media files often compress when the rest won't); for a small one (a
/// volume's 4 KiB write, say), whether its first bytes are not evenly spread like random ones.
fn probe_pays(raw: &[u8], buf: &mut Vec<u8>) -> bool {
    if raw.len() <= 2 * PROBE_LEN {
        return !looks_random(&raw[..raw.len().min(SMALL_PROBE_LEN)]);
    }
    let mid = raw.len() / 2 - PROBE_LEN / 2;
    let sample = &raw[mid..mid + PROBE_LEN];
    matches!(compress_into(sample, buf), Ok(n) if pays(n, sample.len()))
}

/// Encodes `raw` and hands the payload to `f` without allocating: zstd output goes to a
/// per-thread buffer, a raw payload is `raw` itself. zstd is used when it saves at least an
/// eighth of the size.
pub fn encode_with<R>(raw: &[u8], f: impl FnOnce(Codec, &[u8]) -> R) -> R {
    if raw.len() < 64 {
        return f(Codec::Raw, raw);
    }
    SCRATCH.with(|s| {
        let Ok(mut buf) = s.try_borrow_mut() else {
            // Re-entered from `f`: fall back to an owned buffer.
            let (codec, payload) = encode(raw);
            return f(codec, payload.as_deref().unwrap_or(raw));
        };
        if !probe_pays(raw, &mut buf) {
            return f(Codec::Raw, raw);
        }
        match compress_into(raw, &mut buf) {
            Ok(n) if pays(n, raw.len()) => f(Codec::Zstd, &buf[..n]),
            _ => f(Codec::Raw, raw),
        }
    })
}

/// Encodes `raw` like [`encode_with`], returning an owned payload (`None`: store `raw` itself).
pub fn encode(raw: &[u8]) -> (Codec, Option<Vec<u8>>) {
    if raw.len() < 64 {
        return (Codec::Raw, None);
    }
    let mut out = Vec::new();
    if !probe_pays(raw, &mut out) {
        return (Codec::Raw, None);
    }
    match compress_into(raw, &mut out) {
        Ok(n) if pays(n, raw.len()) => {
            out.truncate(n);
            (Codec::Zstd, Some(out))
        }
        _ => (Codec::Raw, None),
    }
}

/// Decodes a payload back to the chunk's bytes; `raw_len` bounds the output.
pub fn decode(codec: Codec, payload: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    match codec {
        Codec::Raw => Ok(payload.to_vec()),
        Codec::Zstd => {
            if raw_len > crate::MAX_CHUNK_SIZE {
                return Err(format!(
                    "chunk claims {raw_len} bytes, over the 4 MiB limit"
                ));
            }
            let out = decompress(payload, raw_len).map_err(|e| e.to_string())?;
            if out.len() != raw_len {
                return Err(format!(
                    "decompressed {} bytes, expected {raw_len}",
                    out.len()
                ));
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn compressible_data_is_compressed_and_round_trips() {
        let raw: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 17).to_le_bytes())
            .collect();
        let (codec, payload) = encode(&raw);
        assert_eq!(codec, Codec::Zstd);
        let payload = payload.unwrap();
        assert!(payload.len() < raw.len() / 4);
        assert_eq!(decode(codec, &payload, raw.len()).unwrap(), raw);
    }

    #[test]
    fn encode_with_matches_encode() {
        let raw: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let owned = encode(&raw);
        encode_with(&raw, |codec, payload| {
            assert_eq!(codec, owned.0);
            assert_eq!(payload, owned.1.as_deref().unwrap());
            // Re-entering (a callback that encodes) still works.
            encode_with(&raw, |c2, p2| assert_eq!((c2, p2), (codec, payload)));
        });
        let tiny = b"short";
        encode_with(tiny, |codec, payload| {
            assert_eq!(codec, Codec::Raw);
            assert_eq!(payload, tiny);
        });
    }

    #[test]
    fn small_chunks_are_probed_by_their_byte_frequencies() {
        let mut random = vec![0u8; 4096];
        rand::thread_rng().fill_bytes(&mut random);
        assert!(looks_random(&random));
        assert_eq!(encode(&random), (Codec::Raw, None));
        // Text, sparse records and skewed binary data still compress.
        let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog. "
            .iter()
            .copied()
            .cycle()
            .take(4096)
            .collect();
        let sparse: Vec<u8> = (0..4096u32)
            .map(|i| if i % 64 < 8 { i as u8 } else { 0 })
            .collect();
        let mut skewed = random.clone();
        skewed.iter_mut().for_each(|b| *b &= 0x3f);
        for data in [&text, &sparse, &skewed] {
            assert!(!looks_random(data));
            assert_eq!(encode(data).0, Codec::Zstd);
        }
        // Too small to judge: left to zstd.
        assert!(!looks_random(&random[..100]));
    }

    #[test]
    fn random_data_stays_raw() {
        let mut raw = vec![0u8; 300_000];
        rand::thread_rng().fill_bytes(&mut raw);
        assert_eq!(encode(&raw), (Codec::Raw, None));
        let mut small = vec![0u8; 10_000];
        rand::thread_rng().fill_bytes(&mut small);
        assert_eq!(encode(&small).0, Codec::Raw);
    }

    #[test]
    fn data_that_shrinks_by_less_than_an_eighth_stays_raw() {
        // Random bytes, seven in eight of them 7-bit: zstd saves about a twelfth, not an eighth.
        let mut raw = vec![0u8; 64 << 10];
        rand::thread_rng().fill_bytes(&mut raw);
        raw.iter_mut()
            .enumerate()
            .filter(|(i, _)| i % 8 != 0)
            .for_each(|(_, b)| *b &= 0x7f);
        let mut out = Vec::new();
        let n = compress_into(&raw, &mut out).unwrap();
        assert!(n < raw.len() - raw.len() / 16, "zstd saves over 1/16: {n}");
        assert!(!pays(n, raw.len()), "zstd saves an eighth: {n}");
        assert_eq!(encode(&raw), (Codec::Raw, None));
        // Half of them 6-bit: well over an eighth, compressed.
        raw.iter_mut().step_by(2).for_each(|b| *b &= 0x3f);
        assert_eq!(encode(&raw).0, Codec::Zstd);
    }

    #[test]
    fn decode_rejects_wrong_length_and_garbage() {
        let raw = vec![b'a'; 10_000];
        let (codec, payload) = encode(&raw);
        let payload = payload.unwrap();
        assert!(decode(codec, &payload, 9_999).is_err());
        assert!(decode(Codec::Zstd, b"not zstd at all", 100).is_err());
        assert!(decode(Codec::Zstd, &payload, usize::MAX).is_err());
        assert_eq!(Codec::from_tag(9), None);
    }
}
