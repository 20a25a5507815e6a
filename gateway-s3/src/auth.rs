//! Who may call: secret lookup (for SigV4 and SigV2), the region check, the access hook (the
//! decision itself is in [`crate::access`]), and the Host header parsing that tells
//! virtual-hosted-style requests from path-style ones.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cairn_client::{AccessKey, KeyLimits};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::PutObjectInput;
use s3s::host::{S3Host, VirtualHost};
use s3s::path::S3Path;
use s3s::{s3_error, S3Request, S3Result};
use tracing::error;

use crate::access::{AccessRequest, Authorizer, BucketOwner, Checked, CheckedObject};
use crate::condition::RequestContext;
use crate::form::{self, tagging_query, FormHead, PostForm};
use crate::public::BucketControls;
use crate::qos::{Meter, Qos};
use crate::sigv2::SigV2;
use crate::S3Config;

/// How long a secret looked up in the store is used without asking again: a deleted or
/// rotated access key stops working within this time on every gateway. On a multi-node site
/// each lookup is a quorum read (a network round trip), which every signed request would
/// otherwise pay.
const SECRET_TTL: Duration = Duration::from_secs(1);
/// How long a key's limits ([`KeyLimits`]) read with its secret are used: `cairn key limit`
/// takes effect within this time. Longer than [`SECRET_TTL`] so that the lookup of the secret
/// just before the access check, which refreshes both, is the only one.
const LIMITS_TTL: Duration = Duration::from_secs(2);
/// Most keys kept (past it, expired ones are dropped, then all).
const MAX_SECRETS: usize = 4096;

/// Looks access keys up in the store; s3s verifies signatures and payload hashes with them.
/// Clones share their cache: s3s holds one, the SigV2 checks before it ([`crate::sigv2`])
/// another, and the per-key limits ([`crate::qos`]) read the limits kept with the secrets.
#[derive(Clone)]
pub(crate) struct KeyAuth {
    client: cairn_client::Client,
    /// Keys found in the last [`LIMITS_TTL`], by access key id (absent keys are not kept).
    secrets: Arc<Mutex<HashMap<String, KnownKey>>>,
}

/// What the gateway keeps of a key it looked up.
struct KnownKey {
    at: Instant,
    secret: String,
    limits: KeyLimits,
}

impl KeyAuth {
    pub(crate) fn new(client: cairn_client::Client) -> KeyAuth {
        KeyAuth {
            client,
            secrets: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn cached(&self, access_key: &str) -> Option<String> {
        let secrets = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        let known = secrets.get(access_key)?;
        (known.at.elapsed() < SECRET_TTL).then(|| known.secret.clone())
    }

    fn keep(&self, key: &AccessKey) {
        let mut secrets = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        if secrets.len() >= MAX_SECRETS {
            secrets.retain(|_, k| k.at.elapsed() < LIMITS_TTL);
            if secrets.len() >= MAX_SECRETS {
                secrets.clear();
            }
        }
        let known = KnownKey {
            at: Instant::now(),
            secret: key.secret.clone(),
            limits: key.limits,
        };
        secrets.insert(key.id.clone(), known);
    }

    /// The limits of key `access_key`, as read with its secret in the last [`LIMITS_TTL`], else
    /// from the store. A key that no longer exists has none (its requests fail anyway).
    pub(crate) async fn limits(
        &self,
        access_key: &str,
    ) -> Result<KeyLimits, cairn_client::ClientError> {
        {
            let secrets = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(k) = secrets.get(access_key) {
                if k.at.elapsed() < LIMITS_TTL {
                    return Ok(k.limits);
                }
            }
        }
        Ok(match self.client.get_key(access_key).await? {
            Some(key) => {
                self.keep(&key);
                key.limits
            }
            None => KeyLimits::default(),
        })
    }
}

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if let Some(secret) = self.cached(access_key) {
            return Ok(SecretKey::from(secret));
        }
        match self.client.get_key(access_key).await {
            Ok(Some(key)) => {
                self.keep(&key);
                Ok(SecretKey::from(key.secret))
            }
            Ok(None) => Err(s3_error!(
                InvalidAccessKeyId,
                "the access key id you provided does not exist in our records"
            )),
            Err(e) => {
                error!(error = %e, "looking up an access key failed");
                Err(s3_error!(InternalError, "looking up the access key failed"))
            }
        }
    }
}

/// Runs after the signature check: admits the request under its key's limits ([`Qos`]),
/// refuses requests signed for another region (when the gateway has one), then decides who
/// may do what ([`crate::access`]): signed keys for ListBuckets and CreateBucket, bucket
/// policies, key grants and ACLs for everything on a bucket. Leaves the bucket's owner in the
/// request's extensions ([`BucketOwner`]).
pub(crate) struct Access {
    config: Arc<S3Config>,
    authorizer: Authorizer,
    qos: Arc<Qos>,
}

impl Access {
    pub(crate) fn new(
        config: Arc<S3Config>,
        client: cairn_client::Client,
        qos: Arc<Qos>,
    ) -> Access {
        Access {
            config,
            authorizer: Authorizer::new(client),
            qos,
        }
    }
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        // First, so a throttled key costs no access lookups. Only here is the signature known
        // to be good: someone who only knows a key id cannot spend its allowance.
        if let Some(id) = cx.credentials().map(|c| c.access_key.clone()) {
            let meter = cx.extensions_mut().get::<Meter>().cloned();
            self.qos.admit(&id, meter.as_ref()).await?;
        }
        if let (Some(expected), Some(_)) = (self.config.region.as_deref(), cx.credentials()) {
            if let Some(region) = signed_region(cx.headers(), cx.uri()) {
                if region != expected {
                    return Err(s3_error!(
                        AuthorizationHeaderMalformed,
                        "the authorization header is malformed; the region '{region}' is wrong; expecting '{expected}'"
                    ));
                }
            }
        }
        let remote = cx.extensions_mut().get::<RemoteAddr>().map(|r| r.0);
        let secure = cx
            .extensions_mut()
            .get::<SecureTransport>()
            .is_some_and(|t| t.0);
        let op = cx.s3_op().name();
        let who = cx.credentials().map(|c| c.access_key.clone());
        let (bucket, key) = match cx.s3_path() {
            S3Path::Bucket { bucket } if op != "CreateBucket" => (bucket.to_string(), None),
            S3Path::Object { bucket, key } => (bucket.to_string(), Some(key.to_string())),
            // ListBuckets, CreateBucket: any valid key.
            _ => {
                return match who {
                    Some(_) => Ok(()),
                    None => Err(s3_error!(
                        AccessDenied,
                        "anonymous access is not allowed: sign the request"
                    )),
                }
            }
        };
        if op == "PostObject" {
            let form = cx.extensions_mut().get::<FormHead>().map(FormHead::form);
            // s3s takes a form without a signature as anonymous; S3 refuses one that carries
            // a policy or credential but no signature as a malformed request.
            let half_signed = form.as_ref().is_some_and(|f| {
                ["policy", "x-amz-credential", "awsaccesskeyid"]
                    .iter()
                    .any(|n| f.field(n).is_some())
            });
            if cx.credentials().is_none() && half_signed {
                return Err(s3_error!(
                    InvalidArgument,
                    "Bucket POST must contain a field named 'x-amz-signature' when it carries a \
                     policy: sign the form"
                ));
            }
            if !self.config.signature_v2 && form.as_ref().is_some_and(form_signed_v2) {
                return Err(s3_error!(InvalidRequest, "{}", crate::sigv2::UNSUPPORTED));
            }
            if let Some(policy) = form.as_ref().and_then(|f| f.field("policy")) {
                form::check_policy_expiration(policy)
                    .map_err(|m| s3_error!(InvalidPolicyDocument, "{m}"))?;
            }
            // The key is a form field s3s reads after this hook: decided in `put_object` below.
            cx.extensions_mut().insert(PendingPost);
            return Ok(());
        }
        let version_id = query_param(cx.uri(), "versionId");
        let facts = RequestFacts {
            headers: cx.headers(),
            uri: cx.uri(),
            remote,
            secure,
            post: None,
        };
        let copy_source = cx
            .headers()
            .get("x-amz-copy-source")
            .and_then(|v| v.to_str().ok())
            .map(percent_decode);
        let checked = self
            .authorizer
            .authorize(&AccessRequest {
                op,
                who: who.as_deref(),
                bucket: &bucket,
                key: key.as_deref(),
                version_id: version_id.as_deref(),
                copy_source: copy_source.as_deref(),
                facts: &facts,
            })
            .await?;
        let owner = checked.bucket().owner.clone();
        expect_owner(cx.headers(), &owner)?;
        cx.extensions_mut()
            .insert(BucketControls::of(checked.bucket()));
        cx.extensions_mut().insert(BucketOwner(owner));
        if let Checked::Object(read) = checked {
            cx.extensions_mut().insert(CheckedObject(read));
        }
        Ok(())
    }

    /// s3s runs this for PutObject and for browser POST uploads, which it turns into a
    /// PutObject once the form (and its key) is read; only the latter is decided here.
    async fn put_object(&self, req: &mut S3Request<PutObjectInput>) -> S3Result<()> {
        if req.extensions.remove::<PendingPost>().is_none() {
            return Ok(());
        }
        if let Some(head) = req.extensions.get::<FormHead>() {
            apply_form(&head.form(), req)?;
        }
        let who = req.credentials.as_ref().map(|c| c.access_key.clone());
        let signature_v2 = req
            .extensions
            .get::<FormHead>()
            .is_some_and(|head| form_signed_v2(&head.form()));
        let facts = RequestFacts {
            headers: &req.headers,
            uri: &req.uri,
            remote: req.extensions.get::<RemoteAddr>().map(|r| r.0),
            secure: req.extensions.get::<SecureTransport>().is_some_and(|t| t.0),
            // The form's fields, which s3s moved into the input.
            post: Some(PostFields {
                acl: req.input.acl.as_ref().map(|a| a.as_str()),
                tagging: req.input.tagging.as_deref(),
                signature_v2,
            }),
        };
        let checked = self
            .authorizer
            .authorize(&AccessRequest {
                op: "PostObject",
                who: who.as_deref(),
                bucket: &req.input.bucket,
                key: Some(&req.input.key),
                version_id: None,
                copy_source: None,
                facts: &facts,
            })
            .await?;
        req.extensions
            .insert(BucketOwner(checked.bucket().owner.clone()));
        req.extensions.insert(BucketControls::of(checked.bucket()));
        Ok(())
    }
}

/// `x-amz-expected-bucket-owner`: a request meant for a bucket of another owner is refused with
/// 403 AccessDenied, as S3 does, rather than run against the wrong bucket.
fn expect_owner(headers: &http::HeaderMap, owner: &str) -> S3Result<()> {
    match headers.get("x-amz-expected-bucket-owner") {
        Some(expected) if expected.as_bytes() != owner.as_bytes() => Err(s3_error!(
            AccessDenied,
            "the bucket is not owned by the expected bucket owner"
        )),
        _ => Ok(()),
    }
}

/// What S3 does with POST form fields that s3s leaves alone: `${filename}` in the key becomes
/// the uploaded file's name, `tagging` (a Tagging XML document) tags the object, and an
/// `x-amz-checksum-*` field is checked like the header of a PutObject.
fn apply_form(form: &PostForm, req: &mut S3Request<PutObjectInput>) -> S3Result<()> {
    if let Some(name) = &form.filename {
        req.input.key = req.input.key.replace("${filename}", name);
    }
    if let Some(xml) = form.field("tagging") {
        let query = tagging_query(xml).ok_or_else(|| {
            s3_error!(
                MalformedXML,
                "the tagging field must be a Tagging XML document"
            )
        })?;
        req.input.tagging = Some(query);
    }
    for (name, value) in &form.fields {
        if name.starts_with("x-amz-checksum-") || name == "x-amz-sdk-checksum-algorithm" {
            let header = http::HeaderName::from_bytes(name.as_bytes());
            let value = http::HeaderValue::from_str(value.trim());
            if let (Ok(header), Ok(value)) = (header, value) {
                req.headers.insert(header, value);
            }
        }
    }
    Ok(())
}

/// Whether a POST form is signed with Signature Version 2 (`signature`, not `x-amz-signature`,
/// which s3s looks for first).
fn form_signed_v2(form: &PostForm) -> bool {
    form.field("signature").is_some() && form.field("x-amz-signature").is_none()
}

/// Marks a POST upload whose access decision waits for its form fields.
#[derive(Clone, Copy, Debug)]
struct PendingPost;

/// The client's address, as the S3 server accepted its connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RemoteAddr(pub(crate) std::net::SocketAddr);

/// Whether the request came over TLS (`aws:SecureTransport`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SecureTransport(pub(crate) bool);

/// What a request carries that bucket policies' conditions read. The condition keys are made
/// from it only when a policy is evaluated ([`RequestFacts::context`]), not on every request.
pub(crate) struct RequestFacts<'a> {
    pub(crate) headers: &'a http::HeaderMap,
    pub(crate) uri: &'a http::Uri,
    pub(crate) remote: Option<std::net::SocketAddr>,
    /// Came over TLS.
    pub(crate) secure: bool,
    /// A browser POST upload's form fields.
    pub(crate) post: Option<PostFields<'a>>,
}

/// The form fields of a browser POST upload that conditions read.
pub(crate) struct PostFields<'a> {
    pub(crate) acl: Option<&'a str>,
    pub(crate) tagging: Option<&'a str>,
    /// Signed with Signature Version 2 (`signature` rather than `x-amz-signature`).
    pub(crate) signature_v2: bool,
}

impl RequestFacts<'_> {
    /// The request's condition keys (see [`crate::condition`]), `who` signing it.
    pub(crate) fn context(&self, who: Option<&str>) -> RequestContext {
        let mut ctx = request_context(self.headers, self.uri, self.remote, self.secure, who);
        if let Some(post) = &self.post {
            ctx.set_one("s3:authType", "POST");
            if post.signature_v2 {
                ctx.set_one("s3:signatureversion", "AWS");
            }
            if let Some(acl) = post.acl {
                ctx.set_one("s3:x-amz-acl", acl);
            }
            if let Some(tagging) = post.tagging {
                request_tags(&mut ctx, tagging);
            }
        }
        ctx
    }
}

fn request_context(
    headers: &http::HeaderMap,
    uri: &http::Uri,
    remote: Option<std::net::SocketAddr>,
    secure: bool,
    who: Option<&str>,
) -> RequestContext {
    let mut ctx = RequestContext::default();
    if let Some(addr) = remote {
        ctx.set_one("aws:SourceIp", addr.ip().to_string());
    }
    ctx.set_one("aws:SecureTransport", if secure { "true" } else { "false" });
    let now = time::OffsetDateTime::now_utc();
    if let Ok(iso) = now.format(&time::format_description::well_known::Rfc3339) {
        ctx.set_one("aws:CurrentTime", iso);
    }
    ctx.set_one("aws:EpochTime", now.unix_timestamp().to_string());
    match who {
        Some(id) => {
            ctx.set_one("aws:username", id);
            ctx.set_one("aws:userid", id);
            ctx.set_one("aws:PrincipalType", "User");
        }
        None => ctx.set_one("aws:PrincipalType", "Anonymous"),
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    for (key, name) in [
        ("aws:Referer", "referer"),
        ("aws:UserAgent", "user-agent"),
        ("s3:x-amz-acl", "x-amz-acl"),
        (
            "s3:x-amz-server-side-encryption",
            "x-amz-server-side-encryption",
        ),
        (
            "s3:x-amz-server-side-encryption-aws-kms-key-id",
            "x-amz-server-side-encryption-aws-kms-key-id",
        ),
        ("s3:x-amz-content-sha256", "x-amz-content-sha256"),
        ("s3:x-amz-copy-source", "x-amz-copy-source"),
        ("s3:x-amz-metadata-directive", "x-amz-metadata-directive"),
        ("s3:x-amz-storage-class", "x-amz-storage-class"),
    ] {
        if let Some(v) = header(name) {
            ctx.set_one(key, v);
        }
    }
    for (key, name) in [
        ("s3:prefix", "prefix"),
        ("s3:delimiter", "delimiter"),
        ("s3:max-keys", "max-keys"),
        ("s3:VersionId", "versionId"),
    ] {
        if let Some(v) = query_param(uri, name) {
            ctx.set_one(key, v);
        }
    }
    if who.is_some() {
        let (version, auth) = match SigV2::of(headers, uri) {
            Some(SigV2::Header) => ("AWS", "REST-HEADER"),
            Some(SigV2::Query) => ("AWS", "REST-QUERY-STRING"),
            None if query_param(uri, "X-Amz-Signature").is_some() => {
                ("AWS4-HMAC-SHA256", "REST-QUERY-STRING")
            }
            None => ("AWS4-HMAC-SHA256", "REST-HEADER"),
        };
        ctx.set_one("s3:signatureversion", version);
        ctx.set_one("s3:authType", auth);
    }
    if let Some(tagging) = header("x-amz-tagging") {
        request_tags(&mut ctx, tagging);
    }
    ctx
}

/// `s3:RequestObjectTag/KEY` and `s3:RequestObjectTagKeys` of a URL-encoded tag set.
fn request_tags(ctx: &mut RequestContext, tagging: &str) {
    let mut keys = Vec::new();
    for pair in tagging.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        ctx.set_one(&format!("s3:RequestObjectTag/{k}"), v);
        keys.push(k);
    }
    ctx.set("s3:RequestObjectTagKeys", keys);
}

fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then(|| percent_decode(v))
    })
}

/// The region of a SigV4 credential scope (`id/date/region/service/aws4_request`), from the
/// Authorization header or the presigned `X-Amz-Credential` parameter. `None` for SigV2.
fn signed_region(headers: &http::HeaderMap, uri: &http::Uri) -> Option<String> {
    if let Some(auth) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256") {
            let cred = rest
                .split(',')
                .find_map(|p| p.trim().strip_prefix("Credential="))?;
            return scope_region(cred);
        }
    }
    let query = uri.query()?;
    let cred = query
        .split('&')
        .find_map(|p| p.strip_prefix("X-Amz-Credential="))?;
    scope_region(&percent_decode(cred))
}

fn scope_region(credential: &str) -> Option<String> {
    let parts: Vec<&str> = credential.trim().split('/').collect();
    (parts.len() >= 5).then(|| parts[parts.len() - 3].to_string())
}

/// Decodes a query string's name or value as HTML forms encode it: `+` is a space, then `%XX`
/// escapes.
pub(crate) fn form_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

/// Decodes `%XX` escapes; invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Host parsing against configured base domains, ports ignored unless a domain names one.
///
/// `bucket.<domain>` is virtual-hosted style; anything else (the domain itself, an IP address,
/// an unknown name) is path style. Unlike s3s's own parsers, unknown hosts are not taken as
/// CNAME bucket names, so `http://myhost:9000/bucket/key` works without configuring `myhost`.
#[derive(Debug)]
pub(crate) struct DomainHost {
    domains: Vec<String>,
}

impl DomainHost {
    pub(crate) fn new(domains: &[String]) -> Result<DomainHost, String> {
        let mut out = Vec::new();
        for d in domains {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            if d.is_empty() || d.contains('/') {
                return Err(format!(
                    "invalid s3 domain `{d}`: use a host name such as s3.example.com"
                ));
            }
            out.push(d);
        }
        Ok(DomainHost { domains: out })
    }

    /// The bucket a Host header addresses, if it is virtual-hosted style.
    pub(crate) fn bucket_of<'a>(&self, host: &'a str) -> Option<&'a str> {
        let without_port = strip_port(host);
        for domain in &self.domains {
            // A domain configured with a port matches only that port.
            let candidate = if domain.contains(':') {
                host
            } else {
                without_port
            };
            let Some(split) = candidate.len().checked_sub(domain.len() + 1) else {
                continue;
            };
            // `get` rather than indexing: a split inside a multi-byte character is no match.
            let (Some(bucket), Some(rest)) = (candidate.get(..split), candidate.get(split..))
            else {
                continue;
            };
            if !bucket.is_empty()
                && rest
                    .strip_prefix('.')
                    .is_some_and(|d| d.eq_ignore_ascii_case(domain))
            {
                return Some(bucket);
            }
        }
        None
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

impl S3Host for DomainHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        match self.bucket_of(host) {
            Some(bucket) => Ok(VirtualHost::new(host).with_bucket(Cow::Borrowed(bucket))),
            None => Ok(VirtualHost::new(host)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(domains: &[&str]) -> DomainHost {
        DomainHost::new(&domains.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn virtual_hosted_buckets_are_found_with_or_without_port() {
        let h = host(&["localhost", "s3.example.com"]);
        assert_eq!(h.bucket_of("photos.localhost"), Some("photos"));
        assert_eq!(h.bucket_of("photos.localhost:9000"), Some("photos"));
        assert_eq!(h.bucket_of("a.b.s3.example.com"), Some("a.b"));
        assert_eq!(h.bucket_of("localhost:9000"), None);
        assert_eq!(h.bucket_of("localhost"), None);
        assert_eq!(h.bucket_of("127.0.0.1:9000"), None);
        assert_eq!(h.bucket_of("otherhost:9000"), None);
        assert_eq!(h.bucket_of(".localhost"), None);
        assert_eq!(h.bucket_of("[::1]:9000"), None);
        assert_eq!(h.bucket_of("é.localhost"), Some("é"));
        assert_eq!(h.bucket_of("ééééééééééx"), None);
    }

    #[test]
    fn domain_with_port_matches_that_port_only() {
        let h = host(&["s3.local:9000"]);
        assert_eq!(h.bucket_of("b.s3.local:9000"), Some("b"));
        assert_eq!(h.bucket_of("b.s3.local:9001"), None);
    }

    #[test]
    fn region_comes_from_the_credential_scope() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=abc"
                .parse()
                .unwrap(),
        );
        let uri: http::Uri = "/b/k".parse().unwrap();
        assert_eq!(signed_region(&headers, &uri).as_deref(), Some("eu-west-1"));

        let uri: http::Uri =
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20240101%2Fus-west-2%2Fs3%2Faws4_request"
                .parse()
                .unwrap();
        assert_eq!(
            signed_region(&http::HeaderMap::new(), &uri).as_deref(),
            Some("us-west-2")
        );
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }
}
