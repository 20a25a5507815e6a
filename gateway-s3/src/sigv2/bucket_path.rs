//! A path-style request to `/bucket` (no final slash) signed with V2 over `/bucket/`, as
//! botocore and the AWS SDK for Java sign it, where s3s signs the path as sent (as minio-go and
//! rclone do): S3 takes both, so when the signature is over `/bucket/`, the path becomes that
//! before s3s checks it. This needs the key's secret and the string to sign, built as s3s builds
//! it.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, Method, Request, Uri};
use s3s::auth::S3Auth;

use super::{header_credentials, query, unique, SigV2};
use crate::auth::{DomainHost, KeyAuth};

/// The query parameters in a V2 string to sign (S3's sub-resources and response overrides),
/// sorted as they are signed. The same list as s3s's, which verifies the signature after us.
const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// For a V2-signed path-style request to `/bucket` whose signature is over `/bucket/`, makes
/// the path `/bucket/`, which addresses the same bucket and is what s3s then signs. Any other
/// request is left as it is, to be verified by s3s as sent.
pub(crate) async fn settle_bucket_path<B>(req: &mut Request<B>, keys: &KeyAuth, host: &DomainHost) {
    let Some(kind) = SigV2::of(req.headers(), req.uri()) else {
        return;
    };
    let path = req.uri().path();
    let one_segment = path
        .strip_prefix('/')
        .is_some_and(|bucket| !bucket.is_empty() && !bucket.contains('/'));
    let virtual_hosted = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| host.bucket_of(h).is_some());
    if !one_segment || virtual_hosted {
        return;
    }
    let params: Vec<(String, String)> = query(req.uri()).collect();
    let (id, signature) = match kind {
        SigV2::Header => match header_credentials(req.headers()) {
            Some((id, signature)) => (id.to_string(), signature.to_string()),
            None => return,
        },
        SigV2::Query => match (
            unique(&params, "AWSAccessKeyId"),
            unique(&params, "Signature"),
        ) {
            (Some(id), Some(signature)) => (id.to_string(), signature.to_string()),
            _ => return,
        },
    };
    // An unknown key is s3s's to answer (InvalidAccessKeyId).
    let Ok(secret) = keys.get_secret_key(&id).await else {
        return;
    };
    let with_slash = format!("{path}/");
    let to_sign = string_to_sign(kind, req.method(), req.headers(), &with_slash, &params);
    if !same(&sign(secret.expose(), &to_sign), &signature) {
        return;
    }
    let target = match req.uri().query() {
        Some(q) => format!("{with_slash}?{q}"),
        None => with_slash,
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = target.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

/// The V2 string to sign of a path-style request, as s3s builds it.
fn string_to_sign(
    kind: SigV2,
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    params: &[(String, String)],
) -> String {
    let header = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().unwrap_or(""),
            _ => "",
        }
    };
    let date = match kind {
        SigV2::Header if headers.contains_key("x-amz-date") => "",
        SigV2::Header => header("date"),
        SigV2::Query => unique(params, "Expires").unwrap_or(""),
    };
    let mut out = format!(
        "{method}\n{}\n{}\n{date}\n",
        header("content-md5"),
        header("content-type")
    );
    let mut names: Vec<&str> = headers
        .keys()
        .map(|n| n.as_str())
        .filter(|n| n.starts_with("x-amz-"))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .collect();
        if !values.is_empty() {
            out.push_str(&format!("{name}:{}\n", values.join(",")));
        }
    }
    out.push_str(path);
    let mut separator = '?';
    for name in SUBRESOURCES {
        if let Some(value) = unique(params, name) {
            out.push(separator);
            out.push_str(name);
            if !value.is_empty() {
                out.push('=');
                out.push_str(value);
            }
            separator = '&';
        }
    }
    out
}

fn sign(secret: &str, to_sign: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Compares signatures in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigv2::tests::headers;

    #[test]
    fn string_to_sign_follows_the_documented_rules() {
        // The Upload example of S3's "Signing and authenticating REST requests".
        let h = headers(&[
            ("date", "Tue, 27 Mar 2007 21:06:08 +0000"),
            ("x-amz-acl", "public-read"),
            ("content-type", "application/x-download"),
            ("content-md5", "4gJE4saaMU4BqNR0kLY+lw=="),
            ("x-amz-meta-reviewedby", "joe@example.com"),
            ("x-amz-meta-reviewedby", "jane@example.com"),
            ("x-amz-meta-filechecksum", "0x02661779"),
            ("x-amz-meta-checksumalgorithm", " crc32 "),
            ("content-length", "5913339"),
        ]);
        let s = string_to_sign(
            SigV2::Header,
            &Method::PUT,
            &h,
            "/static.example.com/db.gz",
            &[],
        );
        assert_eq!(
            s,
            "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\nTue, 27 Mar 2007 21:06:08 +0000\n\
             x-amz-acl:public-read\nx-amz-meta-checksumalgorithm:crc32\n\
             x-amz-meta-filechecksum:0x02661779\n\
             x-amz-meta-reviewedby:joe@example.com,jane@example.com\n/static.example.com/db.gz"
        );
        // x-amz-date empties the Date line; sub-resources are sorted, other parameters left out.
        let h = headers(&[("x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000")]);
        let params: Vec<(String, String)> =
            query(&"/b/?uploads&prefix=a&acl&versionId=v%2B1".parse().unwrap()).collect();
        let s = string_to_sign(SigV2::Header, &Method::GET, &h, "/b/", &params);
        assert_eq!(
            s,
            "GET\n\n\n\nx-amz-date:Tue, 27 Mar 2007 21:20:26 +0000\n/b/?acl&uploads&versionId=v+1"
        );
        assert_eq!(
            sign(
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "GET\n\n\nWed, 28 Mar 2007 01:29:59 +0000\n/"
            ),
            "qGdzdERIC03wnaRNKh6OqZehG9s="
        );
    }
}
