//! Database key encoding: how buckets, object keys, versions, uploads and parts map to byte
//! strings whose RocksDB order is the listing order.
//!
//! An object key is escaped so that byte order is preserved and no key is confusable with a
//! prefix of another: each 0x00 becomes 0x00 0xFF, and a key that is followed by more fields ends
//! with the terminator 0x00 0x01, which sorts before any continuation of the key. Bucket names
//! never contain 0x00, so `bucket 0x00` starts every record of a bucket.

use cairn_core::format::FormatError;
use cairn_core::VersionId;

use crate::ManifestError;

/// Longest bucket name (S3 allows 63 bytes).
pub(crate) const MAX_BUCKET_LEN: usize = 63;
/// Longest object key (S3 allows 1024 bytes).
pub(crate) const MAX_KEY_LEN: usize = 1024;
/// Ends an escaped object key that other fields follow.
const TERMINATOR: [u8; 2] = [0x00, 0x01];

/// Rejects bucket names the encoding or S3 cannot hold.
pub(crate) fn check_bucket(bucket: &str) -> Result<(), ManifestError> {
    if bucket.is_empty() || bucket.len() > MAX_BUCKET_LEN {
        return Err(ManifestError::Invalid(format!(
            "bucket name `{bucket}` must be 1 to {MAX_BUCKET_LEN} bytes long"
        )));
    }
    if bucket.as_bytes().contains(&0) {
        return Err(ManifestError::Invalid(
            "bucket name must not contain NUL bytes".to_string(),
        ));
    }
    Ok(())
}

/// Rejects object keys longer than S3 allows.
pub(crate) fn check_key(key: &str) -> Result<(), ManifestError> {
    if key.len() > MAX_KEY_LEN {
        return Err(ManifestError::Invalid(format!(
            "object key is {} bytes long; the limit is {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(())
}

/// Rejects upload ids that would break the `parts` key layout.
pub(crate) fn check_upload_id(upload_id: &str) -> Result<(), ManifestError> {
    if upload_id.is_empty() || upload_id.as_bytes().contains(&0) {
        return Err(ManifestError::Invalid(
            "upload id must be non-empty and must not contain NUL bytes".to_string(),
        ));
    }
    Ok(())
}

/// `bucket 0x00`: the start of every record of the bucket.
pub(crate) fn bucket_prefix(bucket: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bucket.len() + 1);
    out.extend_from_slice(bucket.as_bytes());
    out.push(0);
    out
}

/// Appends `key` escaped (0x00 becomes 0x00 0xFF).
pub(crate) fn escape_into(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

/// `bucket 0x00 escaped(prefix)`: every record whose key starts with `prefix` starts with this.
pub(crate) fn object_prefix(bucket: &str, prefix: &str) -> Vec<u8> {
    let mut out = bucket_prefix(bucket);
    escape_into(&mut out, prefix.as_bytes());
    out
}

/// Key of the `current` index: `bucket 0x00 escaped(key)`.
pub(crate) fn current_key(bucket: &str, key: &str) -> Vec<u8> {
    object_prefix(bucket, key)
}

/// `bucket 0x00 escaped(key) 0x00 0x01`: the start of a key's versions or uploads.
pub(crate) fn terminated_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut out = object_prefix(bucket, key);
    out.extend_from_slice(&TERMINATOR);
    out
}

/// The 16 bytes that make versions of one key sort newest first.
pub(crate) fn inverted_version(version: VersionId) -> [u8; 16] {
    (!version.0).to_be_bytes()
}

/// Key of the `versions` table.
pub(crate) fn version_key(bucket: &str, key: &str, version: VersionId) -> Vec<u8> {
    let mut out = terminated_key(bucket, key);
    out.extend_from_slice(&inverted_version(version));
    out
}

/// Key of the `uploads` table.
pub(crate) fn upload_key(bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut out = terminated_key(bucket, key);
    out.extend_from_slice(upload_id.as_bytes());
    out
}

/// `upload_id 0x00`: the start of an upload's parts.
pub(crate) fn parts_prefix(upload_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(upload_id.len() + 5);
    out.extend_from_slice(upload_id.as_bytes());
    out.push(0);
    out
}

/// Key of the `parts` table.
pub(crate) fn part_key(upload_id: &str, number: u32) -> Vec<u8> {
    let mut out = parts_prefix(upload_id);
    out.extend_from_slice(&number.to_be_bytes());
    out
}

/// The smallest byte string greater than `k`.
pub(crate) fn after(k: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(k.len() + 1);
    out.extend_from_slice(k);
    out.push(0);
    out
}

/// The smallest byte string greater than every string that starts with `prefix`; `None` if
/// there is none (the prefix is all 0xFF).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(&last) = out.last() {
        if last == 0xFF {
            out.pop();
        } else {
            *out.last_mut().expect("checked non-empty") += 1;
            return Some(out);
        }
    }
    None
}

/// A corrupt index key.
pub(crate) fn corrupt(what: &'static str, reason: impl Into<String>) -> ManifestError {
    ManifestError::Format(FormatError::Corrupt {
        what,
        reason: reason.into(),
    })
}

/// Splits an escaped object key off the front of `bytes` (the part after `bucket 0x00`): the
/// key, then whatever follows its terminator (empty if there is none, as in `current`).
pub(crate) fn split_object_key(bytes: &[u8]) -> Result<(String, &[u8]), ManifestError> {
    let mut key = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != 0 {
            key.push(b);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(0xFF) => {
                key.push(0);
                i += 2;
            }
            Some(0x01) => {
                let rest = &bytes[i + 2..];
                return Ok((utf8(key)?, rest));
            }
            _ => return Err(corrupt("index key", "bad escape in object key")),
        }
    }
    Ok((utf8(key)?, &[]))
}

fn utf8(key: Vec<u8>) -> Result<String, ManifestError> {
    String::from_utf8(key).map_err(|_| corrupt("index key", "object key is not utf-8"))
}

/// The version id at the end of a `versions` key (the part after the terminator).
pub(crate) fn parse_inverted_version(rest: &[u8]) -> Result<VersionId, ManifestError> {
    let b: [u8; 16] = rest.try_into().map_err(|_| {
        corrupt(
            "version key",
            format!("{} version bytes, expected 16", rest.len()),
        )
    })?;
    Ok(VersionId(!u128::from_be_bytes(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(key: &str) -> Vec<u8> {
        current_key("b", key)
    }

    #[test]
    fn escaping_preserves_order_and_round_trips() {
        let mut keys = vec![
            "",
            "a",
            "a\0",
            "a\0\0",
            "a\0b",
            "a\u{1}",
            "ab",
            "a/",
            "a/b",
            "é",
            "\u{10FFFF}",
            "b",
        ];
        keys.sort();
        let mut encoded: Vec<Vec<u8>> = keys.iter().map(|k| enc(k)).collect();
        let sorted = encoded.clone();
        encoded.sort();
        assert_eq!(encoded, sorted);
        for k in &keys {
            let e = enc(k);
            let (back, rest) = split_object_key(&e[2..]).unwrap();
            assert_eq!(&back, k);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn versions_sort_by_key_then_newest_first() {
        let v1 = VersionId(1);
        let v2 = VersionId(2);
        let mut ks = [
            version_key("b", "a\0", v1),
            version_key("b", "a", v1),
            version_key("b", "a", v2),
            version_key("b", "ab", v2),
        ];
        ks.sort();
        assert_eq!(ks[0], version_key("b", "a", v2));
        assert_eq!(ks[1], version_key("b", "a", v1));
        assert_eq!(ks[2], version_key("b", "a\0", v1));
        assert_eq!(ks[3], version_key("b", "ab", v2));
        let k = version_key("b", "a\0", VersionId(77));
        let (key, rest) = split_object_key(&k[2..]).unwrap();
        assert_eq!(key, "a\0");
        assert_eq!(parse_inverted_version(rest).unwrap(), VersionId(77));
    }

    #[test]
    fn prefix_end_and_after() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
        assert_eq!(after(b"a"), b"a\0".to_vec());
        assert!(split_object_key(&[b'a', 0, 7]).is_err());
        assert!(check_bucket(&"x".repeat(64)).is_err());
        assert!(check_bucket("a\0").is_err());
        assert!(check_key(&"k".repeat(1025)).is_err());
        assert!(check_key(&"k".repeat(1024)).is_ok());
    }
}
