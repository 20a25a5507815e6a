//! CORS: answers browsers' preflight requests (OPTIONS) from the bucket's CORS rules and adds
//! the `Access-Control-*` headers to responses of requests that carry an `Origin`. Both happen
//! in front of the S3 service: a preflight is never signed.

use cairn_core::manifest::CorsRule;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use s3s::host::S3Host;

use crate::auth::DomainHost;
use crate::compat::error_response;

/// The CORS side of the gateway.
pub(crate) struct Cors {
    client: cairn_client::Client,
    host: DomainHost,
}

/// What a request asks of CORS: its origin, the method (the preflight's requested method) and
/// the headers it wants to send.
struct Ask<'a> {
    origin: &'a str,
    method: &'a str,
    headers: Vec<String>,
}

impl Cors {
    pub(crate) fn new(client: cairn_client::Client, host: DomainHost) -> Cors {
        Cors { client, host }
    }

    /// The bucket a request addresses: from a virtual-hosted Host, else the path's first
    /// segment.
    fn bucket_of<B>(&self, req: &Request<B>) -> Option<String> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if let Some(b) = host
            .and_then(|h| self.host.parse_host_header(h).ok())
            .and_then(|v| v.bucket().map(str::to_string))
        {
            return Some(b);
        }
        let first = req.uri().path().trim_start_matches('/').split('/').next()?;
        (!first.is_empty()).then(|| first.to_string())
    }

    /// The bucket's CORS rules (`None`: no bucket or no configuration).
    async fn rules_of<B>(&self, req: &Request<B>) -> Option<Vec<CorsRule>> {
        let bucket = self.bucket_of(req)?;
        self.client.head_bucket(&bucket).await.ok()?.cors
    }

    /// Answers an OPTIONS request.
    pub(crate) async fn preflight<B>(&self, req: &Request<B>) -> Response<s3s::Body> {
        let h = req.headers();
        let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        let (Some(origin), Some(method)) = (text("origin"), text("access-control-request-method"))
        else {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Insufficient information. Origin request header and \
                 Access-Control-Request-Method are needed.",
            );
        };
        let ask = Ask {
            origin,
            method,
            headers: text("access-control-request-headers")
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_ascii_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        };
        let Some(rules) = self.rules_of(req).await else {
            return error_response(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: CORS is not enabled for this bucket.",
            );
        };
        let Some(rule) = rules.iter().find(|r| r.allows(&ask)) else {
            return error_response(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed. This is usually because the \
                 evaluation of Origin, request method / Access-Control-Request-Method or \
                 Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
            );
        };
        let mut resp = Response::new(s3s::Body::empty());
        let out = resp.headers_mut();
        allow_headers(out, rule, origin);
        if !ask.headers.is_empty() {
            set(out, "access-control-allow-headers", &ask.headers.join(", "));
        }
        resp
    }

    /// Adds the CORS headers to the response of a request that carries an `Origin`, when a
    /// rule of the bucket allows it. A signed request (`signed`) gets its origin echoed even
    /// where the rule allows any origin, since browsers refuse `*` for credentialed requests.
    pub(crate) async fn decorate(
        &self,
        bucket_rules: Option<Vec<CorsRule>>,
        origin: &str,
        method: &Method,
        signed: bool,
        resp: &mut Response<s3s::Body>,
    ) {
        let Some(rules) = bucket_rules else { return };
        let ask = Ask {
            origin,
            method: method.as_str(),
            headers: Vec::new(),
        };
        if let Some(rule) = rules.iter().find(|r| r.allows(&ask)) {
            allow_headers(resp.headers_mut(), rule, origin);
            if signed {
                set(resp.headers_mut(), "access-control-allow-origin", origin);
                set(
                    resp.headers_mut(),
                    "access-control-allow-credentials",
                    "true",
                );
            }
        }
    }

    /// The rules that apply to a request with an `Origin` header, looked up before the request
    /// is served (its body is consumed by then).
    pub(crate) async fn rules_for<B>(&self, req: &Request<B>) -> Option<Vec<CorsRule>> {
        if !req.headers().contains_key(header::ORIGIN) {
            return None;
        }
        self.rules_of(req).await
    }
}

/// Matching of one rule.
trait Allows {
    fn allows(&self, ask: &Ask<'_>) -> bool;
}

impl Allows for CorsRule {
    fn allows(&self, ask: &Ask<'_>) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| wildcard_match(o, ask.origin))
            && self.allowed_methods.iter().any(|m| m == ask.method)
            && ask.headers.iter().all(|h| {
                self.allowed_headers
                    .iter()
                    .any(|a| wildcard_match(&a.to_ascii_lowercase(), h))
            })
    }
}

/// `pattern` with at most one `*` matching any run of characters.
fn wildcard_match(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((pre, post)) => {
            s.len() >= pre.len() + post.len() && s.starts_with(pre) && s.ends_with(post)
        }
    }
}

/// The headers a matching rule grants.
fn allow_headers(out: &mut HeaderMap, rule: &CorsRule, origin: &str) {
    let any = rule.allowed_origins.iter().any(|o| o == "*");
    set(
        out,
        "access-control-allow-origin",
        if any { "*" } else { origin },
    );
    if !any {
        set(out, "access-control-allow-credentials", "true");
    }
    set(
        out,
        "access-control-allow-methods",
        &rule.allowed_methods.join(", "),
    );
    if !rule.expose_headers.is_empty() {
        set(
            out,
            "access-control-expose-headers",
            &rule.expose_headers.join(", "),
        );
    }
    if let Some(age) = rule.max_age_seconds {
        set(out, "access-control-max-age", &age.to_string());
    }
    set(
        out,
        "vary",
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    );
}

fn set(out: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        out.insert(HeaderName::from_static(name), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        CorsRule {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
            allowed_headers: headers.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn ask<'a>(origin: &'a str, method: &'a str, headers: &[&str]) -> Ask<'a> {
        Ask {
            origin,
            method,
            headers: headers.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn origins_methods_and_headers_must_all_match() {
        let r = rule(&["https://*.example.com"], &["GET", "PUT"], &["x-amz-*"]);
        assert!(r.allows(&ask("https://app.example.com", "GET", &[])));
        assert!(r.allows(&ask("https://app.example.com", "PUT", &["x-amz-date"])));
        assert!(!r.allows(&ask("https://example.org", "GET", &[])));
        assert!(!r.allows(&ask("https://app.example.com", "DELETE", &[])));
        assert!(!r.allows(&ask("https://app.example.com", "PUT", &["content-md5"])));
        let any = rule(&["*"], &["GET"], &[]);
        assert!(any.allows(&ask("http://anything", "GET", &[])));
    }

    #[test]
    fn wildcards_match_one_run() {
        assert!(wildcard_match("a*c", "abbc"));
        assert!(wildcard_match("a*c", "ac"));
        assert!(!wildcard_match("a*c", "abd"));
        assert!(!wildcard_match("ab*ba", "aba"));
        assert!(wildcard_match("exact", "exact"));
    }
}
