//! Additional object checksums (S3's `x-amz-checksum-*`): CRC32, CRC32C, CRC64NVME, SHA-1 and
//! SHA-256 of an object's or part's bytes, computed in the ingest pipeline's sequential pass,
//! plus what multipart completion needs: composite checksums (a checksum of the parts'
//! checksums) and full-object CRCs combined from the parts' CRCs without reading any data.
//!
//! Values are kept as S3 shows them: base64 of the big-endian digest bytes, with a `-N` suffix
//! for a composite checksum over N parts.

use base64::Engine as _;
use cairn_core::manifest::ChecksumType;
use crc_fast::CrcAlgorithm;
use sha1::Digest as _;

use crate::{ChecksumRequest, ClientError, ExpectedChecksum};

/// A checksum algorithm S3 supports besides MD5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChecksumAlgorithm {
    /// CRC-32 (ISO-HDLC, as zlib), 4 bytes.
    Crc32,
    /// CRC-32C (Castagnoli), 4 bytes.
    Crc32c,
    /// CRC-64/NVME, 8 bytes.
    Crc64Nvme,
    /// SHA-1, 20 bytes.
    Sha1,
    /// SHA-256, 32 bytes.
    Sha256,
}

impl ChecksumAlgorithm {
    /// Every algorithm.
    pub const ALL: [ChecksumAlgorithm; 5] = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];

    /// The name checksums are stored under (`crc32`, `crc32c`, `crc64nvme`, `sha1`, `sha256`);
    /// it is also the suffix of the `x-amz-checksum-*` header.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "crc32",
            ChecksumAlgorithm::Crc32c => "crc32c",
            ChecksumAlgorithm::Crc64Nvme => "crc64nvme",
            ChecksumAlgorithm::Sha1 => "sha1",
            ChecksumAlgorithm::Sha256 => "sha256",
        }
    }

    /// The name S3 uses in `x-amz-checksum-algorithm` and XML (`CRC32`, ..., `SHA256`).
    pub fn s3_name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
        }
    }

    /// Parses either form of the name, ignoring case.
    pub fn parse(s: &str) -> Option<ChecksumAlgorithm> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Length of the digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64Nvme => 8,
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }

    /// Whether a multipart object may carry a full-object checksum of this algorithm (the CRCs,
    /// which can be combined from the parts' values).
    pub fn supports_full_object(self) -> bool {
        self.crc().is_some()
    }

    /// Whether a multipart object may carry a composite checksum of this algorithm (all but
    /// CRC64NVME, as in S3).
    pub fn supports_composite(self) -> bool {
        self != ChecksumAlgorithm::Crc64Nvme
    }

    /// The checksum type of a multipart upload that did not name one: full-object for
    /// CRC64NVME, composite for the others (S3's defaults).
    pub fn default_type(self) -> ChecksumType {
        if self.supports_composite() {
            ChecksumType::Composite
        } else {
            ChecksumType::FullObject
        }
    }

    fn crc(self) -> Option<Crc> {
        match self {
            ChecksumAlgorithm::Crc32 => Some(Crc {
                algorithm: CrcAlgorithm::Crc32IsoHdlc,
                reflected_poly: 0xEDB8_8320,
                width: 32,
            }),
            ChecksumAlgorithm::Crc32c => Some(Crc {
                algorithm: CrcAlgorithm::Crc32Iscsi,
                reflected_poly: 0x82F6_3B78,
                width: 32,
            }),
            ChecksumAlgorithm::Crc64Nvme => Some(Crc {
                algorithm: CrcAlgorithm::Crc64Nvme,
                reflected_poly: 0x9A6C_9329_AC4B_C9B5,
                width: 64,
            }),
            ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256 => None,
        }
    }
}

impl std::fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.s3_name())
    }
}

/// A reflected CRC with equal initial value and final XOR (all of S3's CRCs are).
#[derive(Clone, Copy)]
struct Crc {
    algorithm: CrcAlgorithm,
    reflected_poly: u64,
    width: u32,
}

impl Crc {
    /// The polynomial `x^0` in the reflected representation.
    fn one(self) -> u64 {
        1 << (self.width - 1)
    }

    /// `a * b mod P` over GF(2), reflected (as zlib's `multmodp`, for any width ≤ 64).
    fn mul(self, a: u64, mut b: u64) -> u64 {
        let mut m = self.one();
        let mut p = 0;
        while m != 0 {
            if a & m != 0 {
                p ^= b;
                if a & (m - 1) == 0 {
                    break;
                }
            }
            m >>= 1;
            b = if b & 1 != 0 {
                (b >> 1) ^ self.reflected_poly
            } else {
                b >> 1
            };
        }
        p
    }

    /// `x^(8 * n) mod P`: the operator that shifts a CRC over `n` zero bytes.
    fn x_pow_8n(self, mut n: u64) -> u64 {
        // x^1, squared three times: x^8.
        let mut square = self.one() >> 1;
        for _ in 0..3 {
            square = self.mul(square, square);
        }
        let mut p = self.one();
        while n != 0 {
            if n & 1 != 0 {
                p = self.mul(square, p);
            }
            n >>= 1;
            square = self.mul(square, square);
        }
        p
    }

    /// The CRC of `A || B` from `crc(A)`, `crc(B)` and the length of B.
    fn combine(self, crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
        self.mul(self.x_pow_8n(len_b), crc_a) ^ crc_b
    }

    fn to_bytes(self, value: u64) -> Vec<u8> {
        let bytes = value.to_be_bytes();
        bytes[(8 - self.width as usize / 8)..].to_vec()
    }

    fn value_of(self, bytes: &[u8]) -> Option<u64> {
        (bytes.len() == self.width as usize / 8)
            .then(|| bytes.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
    }
}

/// A running checksum of one algorithm.
pub(crate) enum Hasher {
    Crc(crc_fast::Digest),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    /// A new hasher for `algorithm`.
    pub(crate) fn new(algorithm: ChecksumAlgorithm) -> Hasher {
        match (algorithm, algorithm.crc()) {
            (_, Some(crc)) => Hasher::Crc(crc_fast::Digest::new(crc.algorithm)),
            (ChecksumAlgorithm::Sha1, None) => Hasher::Sha1(sha1::Sha1::new()),
            (_, None) => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    /// Adds bytes.
    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc(d) => d.update(data),
            Hasher::Sha1(d) => d.update(data),
            Hasher::Sha256(d) => d.update(data),
        }
    }

    /// The digest bytes (big-endian for CRCs).
    pub(crate) fn finish(self, algorithm: ChecksumAlgorithm) -> Vec<u8> {
        match (self, algorithm.crc()) {
            (Hasher::Crc(d), Some(crc)) => crc.to_bytes(d.finalize()),
            (Hasher::Crc(d), None) => d.finalize().to_be_bytes().to_vec(),
            (Hasher::Sha1(d), _) => d.finalize().to_vec(),
            (Hasher::Sha256(d), _) => d.finalize().to_vec(),
        }
    }
}

/// The checksum of `data` as S3 shows it (base64).
pub fn checksum_of(algorithm: ChecksumAlgorithm, data: &[u8]) -> String {
    let mut h = Hasher::new(algorithm);
    h.update(data);
    encode(&h.finish(algorithm))
}

/// Base64 of digest bytes.
pub(crate) fn encode(digest: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// The digest bytes of a single-object checksum value, `None` unless it is base64 of exactly
/// the algorithm's digest length.
pub fn decode(algorithm: ChecksumAlgorithm, value: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
        .filter(|b| b.len() == algorithm.digest_len())
}

/// Checks the digest computed over a body against what `req` expects and returns the value
/// to store (base64). A mismatch is `BadDigest`; a malformed or missing expected value is
/// `InvalidArgument`.
pub(crate) fn verify(req: &ChecksumRequest, digest: &[u8]) -> Result<String, ClientError> {
    let a = req.algorithm;
    let expected = match &req.expected {
        ExpectedChecksum::Compute => None,
        ExpectedChecksum::Value(v) => Some(v.clone()),
        ExpectedChecksum::AfterBody(f) => Some(f().ok_or_else(|| {
            ClientError::InvalidArgument(format!(
                "the {a} checksum announced to follow the body was not received: send it as a \
                 trailer or as a header"
            ))
        })?),
    };
    if let Some(v) = expected {
        let want = decode(a, &v).ok_or_else(|| {
            ClientError::InvalidArgument(format!(
                "the {a} checksum `{v}` is not valid: send base64 of the {}-byte digest",
                a.digest_len()
            ))
        })?;
        if want != digest {
            return Err(ClientError::BadDigest);
        }
    }
    Ok(encode(digest))
}

/// The composite checksum of a multipart object: the checksum of the parts' concatenated
/// digests, shown with a `-N` suffix.
pub(crate) fn composite(algorithm: ChecksumAlgorithm, part_digests: &[Vec<u8>]) -> String {
    let mut h = Hasher::new(algorithm);
    for d in part_digests {
        h.update(d);
    }
    format!("{}-{}", encode(&h.finish(algorithm)), part_digests.len())
}

/// The full-object CRC of a multipart object from its parts' CRC digests and lengths, in
/// order; `None` for an algorithm that is not a CRC or a malformed digest.
pub(crate) fn combine_parts(
    algorithm: ChecksumAlgorithm,
    parts: &[(Vec<u8>, u64)],
) -> Option<String> {
    let crc = algorithm.crc()?;
    let mut total: Option<u64> = None;
    for (digest, len) in parts {
        let value = crc.value_of(digest)?;
        total = Some(match total {
            None => value,
            Some(t) => crc.combine(t, value, *len),
        });
    }
    // The CRC of no bytes is 0 for every algorithm here.
    Some(encode(&crc.to_bytes(total.unwrap_or(0))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // The check values of the CRC catalogue and of the hashes, for "123456789".
        let data = b"123456789";
        let hex = |a| hex::encode(decode(a, &checksum_of(a, data)).unwrap());
        assert_eq!(hex(ChecksumAlgorithm::Crc32), "cbf43926");
        assert_eq!(hex(ChecksumAlgorithm::Crc32c), "e3069283");
        assert_eq!(hex(ChecksumAlgorithm::Crc64Nvme), "ae8b14860a799888");
        assert_eq!(
            hex(ChecksumAlgorithm::Sha1),
            "f7c3bc1d808e04732adf679965ccc34ca7ae3441"
        );
        assert_eq!(
            hex(ChecksumAlgorithm::Sha256),
            "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225"
        );
    }

    #[test]
    fn combining_part_crcs_gives_the_crc_of_the_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for a in [
            ChecksumAlgorithm::Crc32,
            ChecksumAlgorithm::Crc32c,
            ChecksumAlgorithm::Crc64Nvme,
        ] {
            for cuts in [
                vec![0, 100_000],
                vec![0, 1, 99_999, 100_000],
                vec![0, 40_000, 40_000, 77_777, 100_000],
            ] {
                let parts: Vec<(Vec<u8>, u64)> = cuts
                    .windows(2)
                    .map(|w| {
                        let piece = &data[w[0]..w[1]];
                        (
                            decode(a, &checksum_of(a, piece)).unwrap(),
                            piece.len() as u64,
                        )
                    })
                    .collect();
                assert_eq!(
                    combine_parts(a, &parts).unwrap(),
                    checksum_of(a, &data),
                    "{a} over {cuts:?}"
                );
            }
            assert_eq!(combine_parts(a, &[]).unwrap(), checksum_of(a, b""));
        }
        assert!(combine_parts(ChecksumAlgorithm::Sha256, &[]).is_none());
    }

    #[test]
    fn composite_is_a_checksum_of_checksums() {
        let a = ChecksumAlgorithm::Sha256;
        let p1 = decode(a, &checksum_of(a, b"one")).unwrap();
        let p2 = decode(a, &checksum_of(a, b"two")).unwrap();
        let joined = [p1.clone(), p2.clone()].concat();
        assert_eq!(
            composite(a, &[p1, p2]),
            format!("{}-2", checksum_of(a, &joined))
        );
    }

    #[test]
    fn names_parse_both_ways() {
        for a in ChecksumAlgorithm::ALL {
            assert_eq!(ChecksumAlgorithm::parse(a.name()), Some(a));
            assert_eq!(ChecksumAlgorithm::parse(a.s3_name()), Some(a));
        }
        assert_eq!(ChecksumAlgorithm::parse("md5"), None);
        assert!(decode(ChecksumAlgorithm::Crc32, "AAAA").is_none());
        assert!(decode(ChecksumAlgorithm::Crc32, "AAAAAA==").is_some());
        assert!(decode(ChecksumAlgorithm::Crc32, "AAAAAA").is_none());
    }
}
