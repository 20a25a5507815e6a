//! Encryption at rest of object content (S3's server-side encryption).
//!
//! An encrypted object's chunks are stored sealed: each cut chunk is compressed, then sealed
//! with AES-256-GCM under the key of its *domain*, and the sealed bytes are an ordinary chunk
//! whose id is the BLAKE3 of what is stored. So the chunk layer knows nothing of encryption:
//! scrub verifies, repair copies and links ship sealed chunks without any key, and GC reaches
//! them through the extent tree like any other (the tree's offsets and lengths are those of the
//! plaintext).
//!
//! The nonce is synthetic: a keyed BLAKE3 of the compressed plaintext under a key derived from
//! the domain key, so equal chunks sealed in one domain are equal sealed chunks (they
//! deduplicate) and different chunks get different nonces (a collision of 96-bit PRF outputs is
//! the only way a nonce repeats with other plaintext). Across domains nothing is shared.
//!
//! Domains: every SSE-S3 object of a site shares one (site-wide dedup of encrypted data, whose
//! equality is then visible to whoever reads the chunk store, as it is for plaintext); each
//! SSE-C customer key is its own (two customers' identical data share nothing). Sealed chunks
//! name the master key they were sealed under (`key_id`), so the site's key can be rotated:
//! new writes use the newest key, older chunks open with theirs.
//!
//! A sealed chunk: `0xCE, 1, key_id (u32 LE), nonce (12), ciphertext, tag (16)`; the first six
//! bytes are authenticated too. The plaintext is a codec byte, the chunk's length (u32 LE) and
//! the (possibly zstd) payload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use cairn_core::codec::{self, Codec};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use cairn_core::manifest::{Bucket, DefaultEncryption, Encryption};

use crate::client::Client;
use crate::ClientError;

/// First byte of a sealed chunk.
const MAGIC: u8 = 0xCE;
/// Format of sealed chunks.
const SEAL_VERSION: u8 = 1;
/// Bytes before the ciphertext: magic, version, key id, nonce.
const HEADER: usize = 2 + 4 + 12;
/// Bytes a seal adds to its (compressed) plaintext: header, codec byte, length, tag.
pub const SEAL_OVERHEAD: usize = HEADER + 1 + 4 + 16;

/// Name of the file holding a site's master keys, in its data dir (mode 0600).
pub const KEYS_FILE: &str = "sse-master.keys";
/// Environment variable that gives the master keys instead of the file: `ID:BASE64[,ID:BASE64]`
/// (32-byte keys, the greatest id is the one new writes use).
pub const KEYS_ENV: &str = "CAIRN_SSE_MASTER_KEYS";

/// The site's master keys for SSE-S3, by id; the greatest id seals new writes.
pub struct SiteKeys {
    keys: BTreeMap<u32, [u8; 32]>,
    /// Where they came from (for messages).
    source: String,
}

impl std::fmt::Debug for SiteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteKeys")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .field("source", &self.source)
            .finish()
    }
}

impl SiteKeys {
    /// The keys from [`KEYS_ENV`] when it is set, else from `dir/`[`KEYS_FILE`], which is made
    /// (one new random key, id 1, mode 0600) when missing.
    pub fn load_or_create(dir: &Path) -> Result<SiteKeys, ClientError> {
        if let Ok(text) = std::env::var(KEYS_ENV) {
            return SiteKeys::parse(&text, KEYS_ENV);
        }
        let path = dir.join(KEYS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => SiteKeys::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = SiteKeys {
                    keys: BTreeMap::from([(1, rand::random::<[u8; 32]>())]),
                    source: path.display().to_string(),
                };
                keys.save(&path)?;
                Ok(keys)
            }
            Err(e) => Err(ClientError::Storage(format!(
                "cannot read the site's encryption keys {}: {e}",
                path.display()
            ))),
        }
    }

    /// The keys from [`KEYS_ENV`] when it is set, else from `dir/`[`KEYS_FILE`] if it exists
    /// (a node of a multi-node site: every node must hold the same keys, which `cairn init`
    /// writes beside each node's certificates, so none is made here).
    pub fn load(dir: &Path) -> Result<Option<SiteKeys>, ClientError> {
        if std::env::var_os(KEYS_ENV).is_some() || dir.join(KEYS_FILE).exists() {
            return SiteKeys::load_or_create(dir).map(Some);
        }
        Ok(None)
    }

    /// Writes these keys to `dir/`[`KEYS_FILE`] (mode 0600), as `cairn init` gives each node
    /// its site's keys.
    pub fn save_to(&self, dir: &Path) -> Result<(), ClientError> {
        self.save(&dir.join(KEYS_FILE))
    }

    /// Keys as `ID:BASE64` entries separated by commas or new lines (`#` starts a comment).
    pub fn parse(text: &str, source: &str) -> Result<SiteKeys, ClientError> {
        let bad = |why: String| {
            ClientError::Storage(format!(
                "the site's encryption keys in {source} are not usable: {why} (each entry is \
                 ID:BASE64 of 32 random bytes, e.g. `1:$(head -c32 /dev/urandom | base64)`)"
            ))
        };
        let mut keys = BTreeMap::new();
        for entry in text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (id, key) = entry
                .split_once(':')
                .ok_or_else(|| bad(format!("`{}…` has no ID:", &entry[..entry.len().min(4)])))?;
            let id: u32 = id
                .trim()
                .parse()
                .map_err(|_| bad(format!("key id `{id}` is not a number")))?;
            let key = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or_else(|| bad(format!("key {id} is not base64 of 32 bytes")))?;
            if keys.insert(id, key).is_some() {
                return Err(bad(format!("key id {id} is given twice")));
            }
        }
        if keys.is_empty() {
            return Err(bad("there is no key".into()));
        }
        Ok(SiteKeys {
            keys,
            source: source.to_string(),
        })
    }

    /// Adds a new key (id one over the greatest) that seals new writes from now on, and saves
    /// the file; returns its id. Keys from the environment cannot be rotated here.
    pub fn rotate(dir: &Path) -> Result<u32, ClientError> {
        let path = dir.join(KEYS_FILE);
        let mut keys = SiteKeys::load_or_create(dir)?;
        if keys.source == KEYS_ENV {
            return Err(ClientError::InvalidRequest(format!(
                "the keys come from {KEYS_ENV}: add an entry there instead"
            )));
        }
        let id = keys.current().0 + 1;
        keys.keys.insert(id, rand::random());
        keys.save(&path)?;
        Ok(id)
    }

    /// Ids of the keys held.
    pub fn ids(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// The key new writes are sealed under.
    fn current(&self) -> (u32, &[u8; 32]) {
        let (id, key) = self.keys.iter().next_back().expect("never empty");
        (*id, key)
    }

    fn save(&self, path: &Path) -> Result<(), ClientError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut text = String::from(
            "# Cairn's SSE-S3 master keys: ID:BASE64. Keep this file secret and backed up:\n\
             # objects stored with server-side encryption cannot be read without it.\n",
        );
        for (id, key) in &self.keys {
            text.push_str(&format!(
                "{id}:{}\n",
                base64::engine::general_purpose::STANDARD.encode(key)
            ));
        }
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            ClientError::Storage(format!(
                "cannot write the site's encryption keys {}: {e}",
                path.display()
            ))
        })
    }
}

/// A customer-provided key (SSE-C): 32 bytes, checked against its MD5 by the gateway.
#[derive(Clone)]
pub struct CustomerKey(pub [u8; 32]);

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerKey(..)")
    }
}

impl CustomerKey {
    /// A salted digest of the key, kept with the object to check the key of a later read
    /// (the key itself is never stored).
    pub fn digest(&self, salt: &[u8; 16]) -> [u8; 32] {
        let k = blake3::derive_key("cairn sse-c key digest v1", salt);
        *blake3::keyed_hash(&k, &self.0).as_bytes()
    }
}

/// The keys that seal and open one object's chunks.
#[derive(Clone)]
pub struct Sealer {
    inner: Arc<SealerInner>,
}

struct SealerInner {
    /// Key id of new seals, and its keys.
    current: u32,
    /// Per key id: the AEAD key and the nonce key.
    keys: BTreeMap<u32, (LessSafeKey, [u8; 32])>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("current", &self.inner.current)
            .finish()
    }
}

/// The AEAD key and nonce key of a domain key.
fn domain(key: &[u8; 32]) -> (LessSafeKey, [u8; 32]) {
    let aead = blake3::derive_key("cairn sealed chunk aead key v1", key);
    let nonce = blake3::derive_key("cairn sealed chunk nonce key v1", key);
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &aead).expect("32-byte key"));
    (aead, nonce)
}

impl Sealer {
    /// The sealer of SSE-S3 objects: one domain per master key.
    pub fn site(keys: &SiteKeys) -> Sealer {
        let keys_by_id = keys
            .keys
            .iter()
            .map(|(id, k)| {
                (
                    *id,
                    domain(&blake3::derive_key("cairn sse-s3 domain v1", k)),
                )
            })
            .collect();
        Sealer {
            inner: Arc::new(SealerInner {
                current: keys.current().0,
                keys: keys_by_id,
            }),
        }
    }

    /// The sealer of SSE-C objects under `key`: the customer key is the domain.
    pub fn customer(key: &CustomerKey) -> Sealer {
        Sealer {
            inner: Arc::new(SealerInner {
                current: 0,
                keys: BTreeMap::from([(
                    0,
                    domain(&blake3::derive_key("cairn sse-c domain v1", &key.0)),
                )]),
            }),
        }
    }

    /// The sealer of SSE-KMS objects under one KMS key's material: the key is the domain.
    pub fn kms(material: &[u8; 32]) -> Sealer {
        Sealer {
            inner: Arc::new(SealerInner {
                current: 0,
                keys: BTreeMap::from([(
                    0,
                    domain(&blake3::derive_key("cairn sse-kms domain v1", material)),
                )]),
            }),
        }
    }

    /// `plain` compressed and sealed under the current key.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let (aead, nonce_key) = &self.inner.keys[&self.inner.current];
        let (codec, payload) = codec::encode(plain);
        let payload = payload.as_deref().unwrap_or(plain);
        let mut out = Vec::with_capacity(SEAL_OVERHEAD + payload.len());
        out.push(MAGIC);
        out.push(SEAL_VERSION);
        out.extend_from_slice(&self.inner.current.to_le_bytes());
        let len = u32::try_from(plain.len()).expect("chunks are at most 4 MiB");
        let mut h = blake3::Hasher::new_keyed(nonce_key);
        h.update(&[codec.tag()]);
        h.update(&len.to_le_bytes());
        h.update(payload);
        let nonce: [u8; 12] = h.finalize().as_bytes()[..12].try_into().expect("12 bytes");
        out.extend_from_slice(&nonce);
        out.push(codec.tag());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(payload);
        let (header, body) = out.split_at_mut(HEADER);
        let tag = aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header[..6]),
                body,
            )
            .expect("AES-GCM seals any length a chunk has");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// The plaintext of a sealed chunk.
    pub fn open(&self, sealed: &[u8]) -> Result<Bytes, ClientError> {
        if sealed.len() < SEAL_OVERHEAD || sealed[0] != MAGIC || sealed[1] != SEAL_VERSION {
            return Err(ClientError::Corrupt(
                "an encrypted object's chunk is not a sealed chunk".into(),
            ));
        }
        let id = u32::from_le_bytes(sealed[2..6].try_into().expect("4 bytes"));
        let Some((aead, _)) = self.inner.keys.get(&id) else {
            return Err(ClientError::Storage(format!(
                "the object was sealed under master key {id}, which this site does not hold: \
                 add it to the site's encryption keys"
            )));
        };
        let nonce: [u8; 12] = sealed[6..HEADER].try_into().expect("12 bytes");
        let mut body = sealed[HEADER..].to_vec();
        let plain = aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&sealed[..6]),
                &mut body,
            )
            .map_err(|_| {
                ClientError::AccessDenied(
                    "the object's data does not open with this key (a wrong key, or the data \
                     was altered)"
                        .into(),
                )
            })?;
        if plain.len() < 5 {
            return Err(ClientError::Corrupt("a sealed chunk is too short".into()));
        }
        let codec = Codec::from_tag(plain[0]).ok_or_else(|| {
            ClientError::Corrupt(format!("unknown codec {} in a sealed chunk", plain[0]))
        })?;
        let len = u32::from_le_bytes(plain[1..5].try_into().expect("4 bytes")) as usize;
        codec::decode(codec, &plain[5..], len)
            .map(Bytes::from)
            .map_err(|e| ClientError::Corrupt(format!("a sealed chunk does not decode: {e}")))
    }

    /// An ETag for a body of MD5 `md5` that does not reveal it (SSE-C objects: S3's ETag of
    /// those is not the MD5 of the data either).
    pub fn mask_etag(&self, md5: &[u8; 16]) -> [u8; 16] {
        let (_, nonce_key) = &self.inner.keys[&self.inner.current];
        let k = blake3::derive_key("cairn sse etag v1", nonce_key);
        blake3::keyed_hash(&k, md5).as_bytes()[..16]
            .try_into()
            .expect("16 bytes")
    }
}

/// The server-side encryption a write asks for.
#[derive(Clone, Debug)]
pub enum Sse {
    /// SSE-S3: under the site's master keys.
    Site,
    /// SSE-C: under the customer's key.
    Customer(CustomerKey),
    /// SSE-KMS: under a key of the site's key manager.
    Kms {
        /// The key's id, alias or ARN (`None`: the site's default key, `aws/s3`).
        key_id: Option<String>,
        /// The encryption context (base64 of a JSON object), kept with the object.
        context: Option<String>,
        /// `BucketKeyEnabled`, kept and shown.
        bucket_key: bool,
    },
}

impl Client {
    /// The site's master keys, for SSE-S3 writes and reads ([`Client::open_dir`] loads them
    /// from its data dir; a node of a multi-node site is given its site's).
    pub fn set_site_keys(&self, keys: &SiteKeys) {
        *self.inner.site_sealer.write() = Some(Sealer::site(keys));
    }

    /// The sealer of the site's master keys (SSE-S3 content, and KMS keys' material).
    pub(crate) fn site_sealer(&self) -> Result<Sealer, ClientError> {
        self.inner.site_sealer.read().clone().ok_or_else(|| {
            ClientError::InvalidRequest(
                "server-side encryption with the site's keys (AES256, aws:kms) is not set up on \
                 this gateway: give it the site's master keys"
                    .into(),
            )
        })
    }

    /// The sealer of a write asking for `sse`, and what its manifest records.
    pub(crate) async fn seal_for(
        &self,
        sse: Option<&Sse>,
    ) -> Result<Option<(Sealer, Encryption)>, ClientError> {
        Ok(match sse {
            None => None,
            Some(Sse::Site) => Some((self.site_sealer()?, Encryption::Site)),
            Some(Sse::Customer(key)) => {
                let salt: [u8; 16] = rand::random();
                Some((
                    Sealer::customer(key),
                    Encryption::Customer {
                        salt,
                        digest: key.digest(&salt),
                    },
                ))
            }
            Some(Sse::Kms {
                key_id,
                context,
                bucket_key,
            }) => {
                let (key, sealer) = self.kms_open(key_id.as_deref()).await?;
                Some((
                    sealer,
                    Encryption::Kms {
                        key_id: key.id,
                        context: context.clone(),
                        bucket_key: *bucket_key,
                    },
                ))
            }
        })
    }

    /// [`Client::seal_for`] a write into `bucket`: a write that asks for no encryption gets
    /// the bucket's default.
    pub(crate) async fn seal_for_bucket(
        &self,
        bucket: &Bucket,
        sse: Option<&Sse>,
    ) -> Result<Option<(Sealer, Encryption)>, ClientError> {
        let default = match (sse, &bucket.encryption) {
            (None, Some(DefaultEncryption::Site { .. })) => Some(Sse::Site),
            (None, Some(DefaultEncryption::Kms { key_id, bucket_key })) => Some(Sse::Kms {
                key_id: key_id.clone(),
                context: None,
                bucket_key: *bucket_key,
            }),
            _ => None,
        };
        self.seal_for(default.as_ref().or(sse)).await
    }

    /// The sealer that opens content recorded as `enc`, given the customer key a request sent
    /// (`key`): S3's errors for a missing, wrong or needless key, or a disabled KMS key.
    pub(crate) async fn open_for(
        &self,
        enc: Option<&Encryption>,
        key: Option<&CustomerKey>,
    ) -> Result<Option<Sealer>, ClientError> {
        match (enc, key) {
            (None, None) => Ok(None),
            (None | Some(Encryption::Site | Encryption::Kms { .. }), Some(_)) => {
                Err(ClientError::InvalidRequest(
                    "The encryption parameters are not applicable to this object: it is not \
                     stored with a customer-provided key"
                        .into(),
                ))
            }
            (Some(Encryption::Site), None) => Ok(Some(self.site_sealer()?)),
            (Some(Encryption::Kms { key_id, .. }), None) => {
                Ok(Some(self.kms_open(Some(key_id)).await?.1))
            }
            (Some(Encryption::Customer { .. }), None) => Err(ClientError::InvalidRequest(
                "The object was stored using a form of Server Side Encryption. The correct \
                 parameters must be provided to retrieve the object: send its \
                 x-amz-server-side-encryption-customer-* headers"
                    .into(),
            )),
            (Some(Encryption::Customer { salt, digest }), Some(key)) => {
                if key.digest(salt) != *digest {
                    return Err(ClientError::AccessDenied(
                        "the customer-provided encryption key does not match the key the \
                         object was stored with"
                            .into(),
                    ));
                }
                Ok(Some(Sealer::customer(key)))
            }
        }
    }
}

/// The MD5 a part or object shows as its ETag: the body's, but masked for SSE-C content (S3's
/// ETag of those is not the MD5 of the data, which would fingerprint it).
pub(crate) fn shown_md5(
    md5: &[u8; 16],
    sealer: Option<&Sealer>,
    enc: Option<&Encryption>,
) -> [u8; 16] {
    match (sealer, enc) {
        (Some(s), Some(Encryption::Customer { .. })) => s.mask_etag(md5),
        _ => *md5,
    }
}

/// Whether content sealed for `a` can be referred to by content recorded as `b` (a copy by
/// reference): the same domain, so the same sealer opens both.
pub(crate) fn same_domain(
    a: Option<&Encryption>,
    b: Option<&Encryption>,
    key_a: Option<&CustomerKey>,
    key_b: Option<&CustomerKey>,
) -> bool {
    match (a, b) {
        (None, None) | (Some(Encryption::Site), Some(Encryption::Site)) => true,
        (Some(Encryption::Kms { key_id: x, .. }), Some(Encryption::Kms { key_id: y, .. })) => {
            x == y
        }
        (Some(Encryption::Customer { .. }), Some(Encryption::Customer { .. })) => {
            matches!((key_a, key_b), (Some(x), Some(y)) if x.0 == y.0)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> SiteKeys {
        SiteKeys::parse(
            &format!(
                "1:{}\n2:{}",
                base64::engine::general_purpose::STANDARD.encode([1u8; 32]),
                base64::engine::general_purpose::STANDARD.encode([2u8; 32])
            ),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn a_sealed_chunk_opens_to_its_plaintext_and_hides_it() {
        let s = Sealer::site(&site());
        let plain: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let sealed = s.seal(&plain);
        assert_eq!(&sealed[2..6], &2u32.to_le_bytes(), "the newest key seals");
        assert!(!sealed.windows(16).any(|w| w == &plain[1000..1016]));
        assert_eq!(s.open(&sealed).unwrap(), plain);
        // Deterministic within a domain (dedup), different across domains.
        assert_eq!(s.seal(&plain), sealed);
        let c = Sealer::customer(&CustomerKey([7; 32]));
        assert_ne!(c.seal(&plain), sealed);
        assert!(matches!(
            c.open(&sealed),
            Err(ClientError::Corrupt(_) | ClientError::Storage(_) | ClientError::AccessDenied(_))
        ));
        let other = Sealer::customer(&CustomerKey([8; 32]));
        assert!(matches!(
            other.open(&c.seal(&plain)),
            Err(ClientError::AccessDenied(_))
        ));
    }

    #[test]
    fn chunks_sealed_under_an_older_key_still_open() {
        let old = SiteKeys::parse(
            &format!(
                "1:{}",
                base64::engine::general_purpose::STANDARD.encode([1u8; 32])
            ),
            "test",
        )
        .unwrap();
        let sealed =
            Sealer::site(&old).seal(b"written before the rotation, long enough to compress? no");
        assert_eq!(
            Sealer::site(&site()).open(&sealed).unwrap(),
            &b"written before the rotation, long enough to compress? no"[..]
        );
    }

    #[test]
    fn altered_or_truncated_seals_are_refused() {
        let s = Sealer::site(&site());
        let mut sealed = s.seal(b"some bytes of an object");
        for i in [0, 3, HEADER + 2, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(s.open(&bad).is_err(), "byte {i}");
        }
        sealed.truncate(SEAL_OVERHEAD - 1);
        assert!(s.open(&sealed).is_err());
        assert!(s.open(&[]).is_err());
    }

    #[test]
    fn key_files_parse_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let k = SiteKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(k.ids(), vec![1]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEYS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(SiteKeys::rotate(dir.path()).unwrap(), 2);
        let again = SiteKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(again.ids(), vec![1, 2]);
        assert_eq!(again.keys[&1], k.keys[&1]);
        for bad in ["", "x", "1:abc", "one:AAAA", "1:AAAA"] {
            assert!(SiteKeys::parse(bad, "t").is_err(), "{bad}");
        }
        let dup = format!(
            "1:{0},1:{0}",
            base64::engine::general_purpose::STANDARD.encode([0u8; 32])
        );
        assert!(SiteKeys::parse(&dup, "t").is_err());
    }

    #[test]
    fn customer_key_digests_depend_on_key_and_salt() {
        let a = CustomerKey([1; 32]);
        let b = CustomerKey([2; 32]);
        assert_ne!(a.digest(&[0; 16]), b.digest(&[0; 16]));
        assert_ne!(a.digest(&[0; 16]), a.digest(&[1; 16]));
        assert_eq!(a.digest(&[3; 16]), a.digest(&[3; 16]));
    }
}
