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
    // zstd contexts are costly to create (allocations and table setup); each blocking-pool
    // thread keeps one of each.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        match c.as_mut() {
            Some(c) => c.compress(data),
            None => zstd::bulk::compress(data, ZSTD_LEVEL),
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

/// Encodes `raw`: zstd when the result saves at least 1/16 of the size, raw otherwise.
/// Returns the codec and the payload (`None` payload means "store `raw` itself", saving a copy).
pub fn encode(raw: &[u8]) -> (Codec, Option<Vec<u8>>) {
    if raw.len() < 64 {
        return (Codec::Raw, None);
    }
    if raw.len() > 2 * PROBE_LEN {
        // Probe the middle of the chunk; headers of media files often compress when the rest won't.
        let mid = raw.len() / 2 - PROBE_LEN / 2;
        let sample = &raw[mid..mid + PROBE_LEN];
        match compress(sample) {
            Ok(c) if c.len() < sample.len() * 15 / 16 => {}
            _ => return (Codec::Raw, None),
        }
    }
    match compress(raw) {
        Ok(c) if c.len() < raw.len() - raw.len() / 16 => (Codec::Zstd, Some(c)),
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
    fn random_data_stays_raw() {
        let mut raw = vec![0u8; 300_000];
        rand::thread_rng().fill_bytes(&mut raw);
        assert_eq!(encode(&raw), (Codec::Raw, None));
        let mut small = vec![0u8; 10_000];
        rand::thread_rng().fill_bytes(&mut small);
        assert_eq!(encode(&small).0, Codec::Raw);
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
