//! Server-side encryption headers: what a request asks for (SSE-S3 with
//! `x-amz-server-side-encryption: AES256`, SSE-C with the three
//! `x-amz-server-side-encryption-customer-*` headers) and what a response shows, with S3's
//! errors for incomplete or inconsistent sets. Nothing asked for is ever silently dropped: a set
//! S3 would refuse is refused, so no object is stored in plaintext by mistake.

use base64::Engine;
use cairn_client::crypt::{CustomerKey, Sse};
use cairn_client::Encryption;
use md5::{Digest, Md5};
use s3s::dto::ServerSideEncryption;
use s3s::{s3_error, S3Result};

/// The one algorithm S3 has for both kinds.
const AES256: &str = "AES256";
/// The region KMS key ARNs name (keys belong to the site, not to a region).
const ARN_REGION: &str = "us-east-1";

/// The customer key of a request's three SSE-C headers (or of its three copy-source ones):
/// `None` when none is sent; S3's 400 errors for a partial set, another algorithm, a key that
/// is not 32 bytes or one whose MD5 differs from the header's.
pub(crate) fn customer_key(
    algorithm: Option<&String>,
    key: Option<&String>,
    key_md5: Option<&String>,
) -> S3Result<Option<CustomerKey>> {
    let Some(algorithm) = algorithm else {
        if key.is_some() || key_md5.is_some() {
            return Err(s3_error!(
                InvalidArgument,
                "Requests specifying Server Side Encryption with Customer provided keys must \
                 provide a valid encryption algorithm."
            ));
        }
        return Ok(None);
    };
    if algorithm != AES256 {
        return Err(s3_error!(
            InvalidEncryptionAlgorithmError,
            "The encryption request you specified is not valid. The valid value is AES256."
        ));
    }
    let Some(key) = key else {
        return Err(s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must \
             provide an appropriate secret key."
        ));
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The secret key was invalid for the specified algorithm: send the base64 of a \
                 256-bit key."
            )
        })?;
    let Some(key_md5) = key_md5 else {
        return Err(s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must \
             provide the client calculated MD5 of the secret key."
        ));
    };
    if key_md5.trim() != key_digest(&key) {
        return Err(s3_error!(
            InvalidArgument,
            "The calculated MD5 hash of the key did not match the hash that was provided."
        ));
    }
    Ok(Some(CustomerKey(key)))
}

/// Base64 of the MD5 of a key, as the `...-customer-key-MD5` headers carry it.
fn key_digest(key: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(key))
}

/// The encryption a write asks for: `x-amz-server-side-encryption` (with, for SSE-KMS, its
/// key id, encryption context and bucket-key flag), or a customer key, not both; `None` leaves
/// it to the bucket's default.
pub(crate) fn write_request(
    sse: Option<&ServerSideEncryption>,
    kms_key_id: Option<&String>,
    context: Option<&String>,
    bucket_key: Option<bool>,
    customer: Option<CustomerKey>,
) -> S3Result<Option<Sse>> {
    if context.is_some() && sse.is_none_or(|s| s.as_str() != ServerSideEncryption::AWS_KMS) {
        return Err(s3_error!(
            InvalidArgument,
            "x-amz-server-side-encryption-context is only valid with \
             x-amz-server-side-encryption: aws:kms"
        ));
    }
    if let Some(c) = context {
        check_context(c)?;
    }
    if kms_key_id.is_some()
        && sse.is_none_or(|s| !s.as_str().starts_with(ServerSideEncryption::AWS_KMS))
    {
        return Err(s3_error!(
            InvalidArgument,
            "x-amz-server-side-encryption-aws-kms-key-id is only valid with \
             x-amz-server-side-encryption: aws:kms"
        ));
    }
    match (sse.map(ServerSideEncryption::as_str), customer) {
        (None, None) => Ok(None),
        (None, Some(key)) => Ok(Some(Sse::Customer(key))),
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with Customer provided key is incompatible with the \
             encryption method specified: send either x-amz-server-side-encryption or the \
             customer key headers"
        )),
        (Some(AES256), None) => Ok(Some(Sse::Site)),
        (Some(ServerSideEncryption::AWS_KMS), None) => Ok(Some(Sse::Kms {
            key_id: kms_key_id.cloned(),
            context: context.cloned(),
            bucket_key: bucket_key.unwrap_or(false),
        })),
        (Some(ServerSideEncryption::AWS_KMS_DSSE), None) => Err(s3_error!(
            NotImplemented,
            "dual-layer SSE-KMS (aws:kms:dsse) is not available: use aws:kms, AES256 or SSE-C"
        )),
        (Some(s), None) => Err(s3_error!(
            InvalidArgument,
            "The encryption method specified is not supported: `{s}` (use AES256)"
        )),
    }
}

/// An encryption context: base64 of a JSON object of strings, at most 8 KiB (S3's limits).
fn check_context(c: &str) -> S3Result<()> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "x-amz-server-side-encryption-context must be base64 of a JSON object of string \
             values"
        )
    };
    if c.len() > 8192 {
        return Err(bad());
    }
    let json = base64::engine::general_purpose::STANDARD
        .decode(c.trim())
        .map_err(|_| bad())?;
    match serde_json::from_slice::<serde_json::Value>(&json) {
        Ok(serde_json::Value::Object(m)) if m.values().all(serde_json::Value::is_string) => Ok(()),
        _ => Err(bad()),
    }
}

/// What a response says about an object's encryption.
#[derive(Default)]
pub(crate) struct Shown {
    /// `x-amz-server-side-encryption`.
    pub sse: Option<ServerSideEncryption>,
    /// `x-amz-server-side-encryption-aws-kms-key-id` (the key's ARN).
    pub kms_key_id: Option<String>,
    /// `x-amz-server-side-encryption-context`.
    pub context: Option<String>,
    /// `x-amz-server-side-encryption-bucket-key-enabled`.
    pub bucket_key: Option<bool>,
    /// `x-amz-server-side-encryption-customer-algorithm`.
    pub customer_algorithm: Option<String>,
    /// `x-amz-server-side-encryption-customer-key-MD5` (of the key the request sent).
    pub customer_key_md5: Option<String>,
}

/// The encryption headers of a response about content stored as `enc`, read or written with
/// the customer key whose MD5 header (checked by [`customer_key`]) was `key_md5`, for SSE-C.
pub(crate) fn shown(enc: Option<&Encryption>, key_md5: Option<String>) -> Shown {
    match enc {
        None => Shown::default(),
        Some(Encryption::Site) => Shown {
            sse: Some(ServerSideEncryption::from_static(AES256)),
            ..Shown::default()
        },
        Some(Encryption::Customer { .. }) => Shown {
            customer_algorithm: Some(AES256.to_string()),
            customer_key_md5: key_md5,
            ..Shown::default()
        },
        Some(Encryption::Kms {
            key_id,
            context,
            bucket_key,
        }) => Shown {
            sse: Some(ServerSideEncryption::from_static(
                ServerSideEncryption::AWS_KMS,
            )),
            kms_key_id: Some(format!(
                "arn:aws:kms:{ARN_REGION}:000000000000:key/{key_id}"
            )),
            context: context.clone(),
            bucket_key: bucket_key.then_some(true),
            ..Shown::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn customer_key_headers_are_checked_as_s3_checks_them() {
        let key = [9u8; 32];
        let (alg, k, md5) = (AES256.to_string(), b64(&key), key_digest(&key));
        let ok = customer_key(Some(&alg), Some(&k), Some(&md5))
            .unwrap()
            .unwrap();
        assert_eq!(ok.0, key);
        assert!(customer_key(None, None, None).unwrap().is_none());
        let code = |r: S3Result<Option<CustomerKey>>| r.unwrap_err().code().as_str().to_string();
        assert_eq!(
            code(customer_key(None, Some(&k), Some(&md5))),
            "InvalidArgument"
        );
        assert_eq!(
            code(customer_key(Some(&alg), None, Some(&md5))),
            "InvalidArgument"
        );
        assert_eq!(
            code(customer_key(Some(&alg), Some(&k), None)),
            "InvalidArgument"
        );
        let short = b64(&[1; 16]);
        assert_eq!(
            code(customer_key(Some(&alg), Some(&short), Some(&md5))),
            "InvalidArgument"
        );
        let other = key_digest(&[8; 32]);
        assert_eq!(
            code(customer_key(Some(&alg), Some(&k), Some(&other))),
            "InvalidArgument"
        );
        let des = "DES".to_string();
        assert_eq!(
            code(customer_key(Some(&des), Some(&k), Some(&md5))),
            "InvalidEncryptionAlgorithmError"
        );
    }

    #[test]
    fn write_requests_take_one_kind() {
        let aes = ServerSideEncryption::from_static(AES256);
        let w = |sse, id, ctx, key| write_request(sse, id, ctx, None, key);
        assert!(matches!(
            w(Some(&aes), None, None, None),
            Ok(Some(Sse::Site))
        ));
        assert!(matches!(w(None, None, None, None), Ok(None)));
        let key = CustomerKey([1; 32]);
        assert!(matches!(
            w(None, None, None, Some(key.clone())),
            Ok(Some(Sse::Customer(_)))
        ));
        assert!(w(Some(&aes), None, None, Some(key)).is_err());
        let id = "k".to_string();
        assert!(w(Some(&aes), Some(&id), None, None).is_err());
        let bad = ServerSideEncryption::from("rot13".to_string());
        assert!(w(Some(&bad), None, None, None).is_err());
        let kms = ServerSideEncryption::from_static(ServerSideEncryption::AWS_KMS);
        let ctx = b64(br#"{"team":"blue"}"#);
        assert!(matches!(
            w(Some(&kms), Some(&id), Some(&ctx), None),
            Ok(Some(Sse::Kms {
                key_id: Some(_),
                context: Some(_),
                ..
            }))
        ));
        assert!(
            w(Some(&aes), None, Some(&ctx), None).is_err(),
            "a context needs aws:kms"
        );
        let not_object = b64(b"[1]");
        assert!(w(Some(&kms), None, Some(&not_object), None).is_err());
        assert!(w(Some(&kms), None, Some(&"%%".to_string()), None).is_err());
    }

    /// Random header values for every SSE header: each set is taken or refused with an S3
    /// error, never a panic. Bounded: 4000 sets.
    #[test]
    fn random_encryption_headers_are_taken_or_refused() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let key = [4u8; 32];
        let values = [
            String::new(),
            "AES256".into(),
            "aws:kms".into(),
            "aws:kms:dsse".into(),
            b64(&key),
            key_digest(&key),
            b64(br#"{"a":"b"}"#),
            b64(b"[]"),
            b64(&[0xff; 40]),
            "%%%".into(),
            "A".repeat(9000),
        ];
        let pick = |rng: &mut rand::rngs::StdRng| {
            rng.gen_bool(0.6)
                .then(|| values[rng.gen_range(0..values.len())].clone())
        };
        for _ in 0..4000 {
            let (alg, k, md5) = (pick(&mut rng), pick(&mut rng), pick(&mut rng));
            let customer = customer_key(alg.as_ref(), k.as_ref(), md5.as_ref());
            let sse = pick(&mut rng).map(ServerSideEncryption::from);
            let (id, ctx) = (pick(&mut rng), pick(&mut rng));
            if let Ok(c) = customer {
                let _ = write_request(sse.as_ref(), id.as_ref(), ctx.as_ref(), Some(true), c);
            }
        }
    }
}
