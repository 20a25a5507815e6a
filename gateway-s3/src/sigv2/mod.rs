//! Signature Version 2 in front of s3s. s3s verifies V2 signatures (`Authorization: AWS
//! id:signature` and presigned `AWSAccessKeyId`/`Expires`/`Signature` query strings) but does
//! not check their time stamps, answers malformed ones differently from S3, and signs a
//! path-style bucket request with its path exactly as sent. Before s3s sees a V2 request, this
//! module:
//!
//! - refuses it when the site turned V2 off ([`crate::S3Config::signature_v2`]), with S3's answer
//!   for regions that take only SigV4 (s3cmd switches to SigV4 by itself on it) — [`check`];
//! - checks the time stamp of a header-signed request (`x-amz-date`, else `Date`, in one of
//!   HTTP's date formats, [`date`]): missing, unparseable or before 1970 is 403 AccessDenied,
//!   more than 15 minutes from the gateway's clock 403 RequestTimeTooSkewed — [`check`];
//! - checks a presigned URL's parameters and `Expires` (403 AccessDenied, S3's messages) —
//!   [`check`];
//! - takes `/bucket/` as well as `/bucket` as the resource of a request to `/bucket`: botocore
//!   and the AWS SDK for Java sign the first, minio-go and rclone the second, and S3 takes both
//!   — [`bucket_path`].

mod bucket_path;
mod date;

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Response, StatusCode, Uri};
use time::OffsetDateTime;

use crate::auth::form_decode;

pub(crate) use bucket_path::settle_bucket_path;

/// Largest difference between a header-signed request's time stamp and the gateway's clock.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// S3's message when a region does not take the signature version a request uses; s3cmd
/// compares it literally to fall back to SigV4.
pub(crate) const UNSUPPORTED: &str =
    "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.";
const NO_DATE: &str = "AWS authentication requires a valid Date or x-amz-date header";

/// How a request is signed with Signature Version 2, told apart as s3s does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SigV2 {
    /// `Authorization: AWS id:signature`.
    Header,
    /// A presigned URL: `?AWSAccessKeyId=…&Expires=…&Signature=…`.
    Query,
}

impl SigV2 {
    /// `None` for SigV4 and anonymous requests.
    pub(crate) fn of(headers: &HeaderMap, uri: &Uri) -> Option<SigV2> {
        let names = uri.query().unwrap_or("").split('&');
        if names
            .map(|p| p.split_once('=').map_or(p, |(name, _)| name))
            .any(|name| {
                name == "Signature"
                    || (name.contains(['%', '+']) && form_decode(name) == "Signature")
            })
        {
            return Some(SigV2::Query);
        }
        let auth = headers.get(http::header::AUTHORIZATION)?;
        auth.as_bytes()
            .starts_with(b"AWS ")
            .then_some(SigV2::Header)
    }
}

/// Checks a V2-signed request before s3s verifies its signature; `Err` is S3's answer.
pub(crate) fn check(
    headers: &HeaderMap,
    uri: &Uri,
    enabled: bool,
    now: OffsetDateTime,
) -> Result<(), Box<Response<s3s::Body>>> {
    let Some(kind) = SigV2::of(headers, uri) else {
        return Ok(());
    };
    if !enabled {
        return Err(answer(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            UNSUPPORTED,
            &[],
        ));
    }
    match kind {
        SigV2::Header => check_header(headers, now),
        SigV2::Query => check_query(uri, now),
    }
}

fn check_header(headers: &HeaderMap, now: OffsetDateTime) -> Result<(), Box<Response<s3s::Body>>> {
    if header_credentials(headers).is_none() {
        return Err(answer(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
            &[],
        ));
    }
    // `x-amz-date` wins over `Date` even when it is empty or invalid, as at S3.
    let name = if headers.contains_key("x-amz-date") {
        "x-amz-date"
    } else {
        "date"
    };
    let mut values = headers.get_all(name).iter();
    let raw = match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok(),
        _ => None,
    };
    let stamp = raw
        .and_then(date::parse_http_date)
        .filter(|t| t.unix_timestamp() >= 0);
    let (Some(raw), Some(stamp)) = (raw, stamp) else {
        return Err(answer(StatusCode::FORBIDDEN, "AccessDenied", NO_DATE, &[]));
    };
    if (now - stamp).unsigned_abs() > MAX_SKEW {
        return Err(answer(
            StatusCode::FORBIDDEN,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            &[
                ("RequestTime", raw.to_string()),
                ("ServerTime", iso8601(now)),
                (
                    "MaxAllowedSkewMilliseconds",
                    MAX_SKEW.as_millis().to_string(),
                ),
            ],
        ));
    }
    Ok(())
}

fn check_query(uri: &Uri, now: OffsetDateTime) -> Result<(), Box<Response<s3s::Body>>> {
    let params: Vec<(String, String)> = query(uri).collect();
    let (Some(_), Some(expires), Some(_)) = (
        unique(&params, "AWSAccessKeyId"),
        unique(&params, "Expires"),
        unique(&params, "Signature"),
    ) else {
        return Err(answer(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId \
             parameters",
            &[],
        ));
    };
    let Some(expires_at) = expires
        .parse::<u64>()
        .ok()
        .and_then(|s| i64::try_from(s).ok())
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
    else {
        let message = format!("Invalid date (should be seconds since epoch): {expires}");
        return Err(answer(StatusCode::FORBIDDEN, "AccessDenied", &message, &[]));
    };
    if now > expires_at {
        return Err(answer(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Request has expired",
            &[
                ("Expires", iso8601(expires_at)),
                ("ServerTime", iso8601(now)),
            ],
        ));
    }
    Ok(())
}

/// The access key id and signature of `Authorization: AWS id:signature`.
pub(super) fn header_credentials(headers: &HeaderMap) -> Option<(&str, &str)> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (id, signature) = auth.strip_prefix("AWS ")?.split_once(':')?;
    (!id.is_empty() && !signature.is_empty()).then_some((id, signature))
}

/// The query's parameters, decoded as s3s decodes them (`+` is a space).
pub(super) fn query(uri: &Uri) -> impl Iterator<Item = (String, String)> + '_ {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(name), form_decode(value))
        })
}

/// A parameter given exactly once.
pub(super) fn unique<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut found = params.iter().filter(|(n, _)| n == name);
    match (found.next(), found.next()) {
        (Some((_, v)), None) => Some(v.as_str()),
        _ => None,
    }
}

fn iso8601(t: OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// An S3 XML error with extra elements after the message (their values escaped).
fn answer(
    status: StatusCode,
    code: &str,
    message: &str,
    extra: &[(&str, String)],
) -> Box<Response<s3s::Body>> {
    let mut body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{}</Message>",
        escape(message)
    );
    for (name, value) in extra {
        body.push_str(&format!("<{name}>{}</{name}>", escape(value)));
    }
    body.push_str("</Error>");
    let mut resp = Response::new(s3s::Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    Box::new(resp)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A header map of `pairs` (the module's tests and its parts').
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn status_and_body(r: Result<(), Box<Response<s3s::Body>>>) -> Option<(u16, String)> {
        let resp = r.err()?;
        let status = resp.status().as_u16();
        let body = futures::executor::block_on(http_body_util::BodyExt::collect(resp.into_body()))
            .unwrap()
            .to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    }

    #[test]
    fn header_time_stamps_are_checked() {
        let now = date::parse_http_date("Wed, 28 Mar 2007 01:29:59 GMT").unwrap();
        let uri: Uri = "/b/k".parse().unwrap();
        let auth = ("authorization", "AWS id:sig");
        let check_with = |more: &[(&str, &str)]| {
            let mut pairs = vec![auth];
            pairs.extend_from_slice(more);
            status_and_body(check(&headers(&pairs), &uri, true, now))
        };
        assert_eq!(
            check_with(&[("date", "Wed, 28 Mar 2007 01:20:00 GMT")]),
            None
        );
        let (status, body) = check_with(&[]).unwrap();
        assert_eq!(status, 403);
        assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
        // x-amz-date wins, even empty.
        let (status, _) = check_with(&[
            ("date", "Wed, 28 Mar 2007 01:29:59 GMT"),
            ("x-amz-date", ""),
        ])
        .unwrap();
        assert_eq!(status, 403);
        let (status, body) =
            check_with(&[("x-amz-date", "Tue, 07 Jul 1950 21:53:04 GMT")]).unwrap();
        assert_eq!((status, body.contains("AccessDenied")), (403, true));
        let (status, body) = check_with(&[("date", "Wed, 28 Mar 2007 01:45:00 GMT")]).unwrap();
        assert_eq!(status, 403);
        assert!(body.contains("<Code>RequestTimeTooSkewed</Code>"), "{body}");
        assert!(
            body.contains("<MaxAllowedSkewMilliseconds>900000<"),
            "{body}"
        );
        let (status, body) =
            check_with(&[("x-amz-date", "Tue, 07 Jul 9999 21:53:04 GMT")]).unwrap();
        assert_eq!((status, body.contains("RequestTimeTooSkewed")), (403, true));

        let malformed = headers(&[("authorization", "AWS HAHAHA"), ("date", "x")]);
        let (status, body) = status_and_body(check(&malformed, &uri, true, now)).unwrap();
        assert_eq!(status, 400);
        assert!(body.contains("<Code>InvalidArgument</Code>"), "{body}");
    }

    #[test]
    fn presigned_urls_are_checked() {
        let now = OffsetDateTime::from_unix_timestamp(1_175_139_000).unwrap();
        let none = HeaderMap::new();
        let get = |target: &str| status_and_body(check(&none, &target.parse().unwrap(), true, now));
        assert_eq!(
            get("/b/k?AWSAccessKeyId=id&Expires=1175139620&Signature=s%2B"),
            None
        );
        let (status, body) = get("/b/k?AWSAccessKeyId=id&Expires=1175138000&Signature=s").unwrap();
        assert_eq!(status, 403);
        assert!(
            body.contains("<Message>Request has expired</Message>"),
            "{body}"
        );
        assert!(
            body.contains("<Expires>2007-03-29T03:13:20Z</Expires>"),
            "{body}"
        );
        let (status, body) = get("/b/k?AWSAccessKeyId=id&Expires=soon&Signature=s").unwrap();
        assert_eq!(status, 403);
        assert!(
            body.contains("should be seconds since epoch): soon<"),
            "{body}"
        );
        let (status, body) = get("/b/k?Expires=1175139620&Signature=s").unwrap();
        assert_eq!(status, 403);
        assert!(body.contains("requires the Signature, Expires"), "{body}");
    }

    #[test]
    fn turned_off_v2_gets_the_sigv4_only_answer() {
        let now = OffsetDateTime::now_utc();
        let header = headers(&[("authorization", "AWS id:sig")]);
        let uri: Uri = "/b/k".parse().unwrap();
        let (status, body) = status_and_body(check(&header, &uri, false, now)).unwrap();
        assert_eq!(status, 400);
        assert!(body.contains(UNSUPPORTED), "{body}");
        let presigned: Uri = "/b/k?AWSAccessKeyId=id&Expires=1&Signature=s"
            .parse()
            .unwrap();
        let (status, _) =
            status_and_body(check(&HeaderMap::new(), &presigned, false, now)).unwrap();
        assert_eq!(status, 400);
        // SigV4 and anonymous requests are not this module's.
        let v4 = headers(&[("authorization", "AWS4-HMAC-SHA256 Credential=x")]);
        assert!(check(&v4, &uri, false, now).is_ok());
        assert!(check(&HeaderMap::new(), &uri, false, now).is_ok());
    }

    /// Random and mutated Authorization headers, dates and presigned query strings: the checks
    /// never panic, and each answers or lets the request through. Bounded: 4000 requests.
    #[test]
    fn random_v2_requests_get_an_answer_and_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let now = OffsetDateTime::now_utc();
        let pieces = [
            "AWS ",
            "AWS",
            "AKID",
            ":",
            "sig=",
            "Mon, 07 Dec 2026 12:00:00 GMT",
            "+0000",
            "GMT",
            "Expires=",
            "AWSAccessKeyId=",
            "Signature=",
            "&",
            "?",
            "9999999999999999999999",
            "-1",
            "\u{0}",
            "é",
            " ",
            "Sun Nov  6 08:49:37 1994",
            "Sunday, 06-Nov-94 08:49:37 GMT",
        ];
        let text = |rng: &mut rand::rngs::StdRng| -> String {
            let n = rng.gen_range(0..6);
            (0..n)
                .map(|_| pieces[rng.gen_range(0..pieces.len())])
                .collect::<String>()
        };
        for _ in 0..4000 {
            let mut map = HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(&format!("AWS {}", text(&mut rng))) {
                map.insert(http::header::AUTHORIZATION, v);
            }
            for name in ["date", "x-amz-date"] {
                if rng.gen_bool(0.5) {
                    if let Ok(v) = http::HeaderValue::from_str(&text(&mut rng)) {
                        map.insert(name, v);
                    }
                }
            }
            let query: String = text(&mut rng)
                .chars()
                .filter(|c| c.is_ascii_graphic() && *c != '#')
                .collect();
            let uri: Uri = format!("/b/k?AWSAccessKeyId=a&Signature=s&{query}")
                .parse()
                .unwrap_or_else(|_| "/b/k".parse().unwrap());
            let _ = check(&map, &uri, rng.gen_bool(0.9), now);
            let _ = check(&HeaderMap::new(), &uri, true, now);
        }
    }
}
