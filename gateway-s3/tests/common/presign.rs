//! Presigned URLs made by hand, for expiries and times the SDK's presigner will not produce.

use super::{amz_date, hmac, sha256_hex, Signer};

impl Signer {
    /// A presigned `method` URL path and query for `path` (URI-encoded) on `host`, signed at
    /// `at` and valid for `expires` seconds.
    pub fn presign(
        &self,
        method: &str,
        host: &str,
        path: &str,
        at: time::OffsetDateTime,
        expires: u64,
    ) -> String {
        let amz_date = amz_date(at);
        let date = &amz_date[..8];
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let credential = format!("{}/{scope}", self.key_id).replace('/', "%2F");
        let query = format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={credential}&X-Amz-Date={amz_date}\
             &X-Amz-Expires={expires}&X-Amz-SignedHeaders=host"
        );
        let canonical = format!("{method}\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let signature = hex::encode(hmac(&self.key(date), &to_sign));
        format!("{path}?{query}&X-Amz-Signature={signature}")
    }
}
