//! Where s3s decides an HTTP answer differently from S3, the gateway adjusts the request
//! before s3s sees it or the response after: presigned URL lifetimes, SigV4 dated by `Date`,
//! error bodies (request id, POST policy refusals) and POST redirects.

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;

/// Longest lifetime of a presigned URL (seven days, in seconds).
const MAX_PRESIGNED_EXPIRES: u64 = 7 * 24 * 3600;

/// Largest error body rewritten by [`finish_error`].
const MAX_ERROR_BODY: usize = 16 * 1024;

/// An S3 XML error response made outside s3s.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response<s3s::Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error>"
    );
    let mut resp = Response::new(s3s::Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

/// A query parameter's raw value.
fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
}

/// Checks and adjusts a request before s3s sees it; `Err` is the answer to send instead.
///
/// - A presigned URL may live at most seven days: S3 refuses a longer `X-Amz-Expires` with
///   400 AuthorizationQueryParametersError whatever the signature (s3s accepts any).
/// - SigV4 takes the request time from `x-amz-date` or, when that is absent, from `Date`;
///   s3s reads only `x-amz-date`, so the `Date` value is copied into it. The signature still
///   covers the `Date` header as sent, and the string to sign is the same time.
pub(crate) fn prepare<B>(req: &mut Request<B>) -> Result<(), Box<Response<s3s::Body>>> {
    let query = req.uri().query().unwrap_or("");
    if query_value(query, "X-Amz-Signature").is_some() {
        let expires = query_value(query, "X-Amz-Expires").and_then(|v| v.parse::<u64>().ok());
        if expires.is_some_and(|e| e > MAX_PRESIGNED_EXPIRES) {
            return Err(Box::new(error_response(
                StatusCode::BAD_REQUEST,
                "AuthorizationQueryParametersError",
                "X-Amz-Expires must be less than a week (in seconds) that is 604800",
            )));
        }
    }
    let headers = req.headers_mut();
    let sigv4 = headers
        .get(http::header::AUTHORIZATION)
        .is_some_and(|a| a.as_bytes().starts_with(b"AWS4-HMAC-SHA256"));
    if sigv4 && !headers.contains_key("x-amz-date") {
        let date = headers
            .get(http::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|d| {
                s3s::dto::Timestamp::parse(s3s::dto::TimestampFormat::HttpDate, d.trim()).ok()
            });
        if let Some(date) = date {
            let basic =
                time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
            let amz = time::OffsetDateTime::from(date).format(&basic).ok();
            if let Some(v) = amz.and_then(|a| HeaderValue::from_str(&a).ok()) {
                headers.insert("x-amz-date", v);
            }
        }
    }
    Ok(())
}

/// Adjusts an answer of s3s to what S3 sends:
///
/// - every XML error body carries `<RequestId>`, equal to the `x-amz-request-id` header;
/// - a browser POST whose form breaks its policy's conditions is 403 AccessDenied ("Invalid
///   according to Policy"), where s3s answers 400 InvalidPolicyDocument for both that and a
///   malformed policy;
/// - the ETag in a POST's `success_action_redirect` is quoted, as in the ETag header.
pub(crate) async fn finish(
    resp: Response<s3s::Body>,
    method: &http::Method,
    request_id: &str,
) -> Response<s3s::Body> {
    if method == http::Method::POST && resp.status() == StatusCode::SEE_OTHER {
        return quote_redirect_etag(resp);
    }
    if resp.status().is_client_error() || resp.status().is_server_error() {
        return finish_error(resp, method, request_id).await;
    }
    resp
}

async fn finish_error(
    resp: Response<s3s::Body>,
    method: &http::Method,
    request_id: &str,
) -> Response<s3s::Body> {
    let small = hyper::body::Body::size_hint(resp.body())
        .exact()
        .is_some_and(|n| (1..=MAX_ERROR_BODY as u64).contains(&n));
    if !small {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return crate::server::internal_error_response(),
    };
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if !text.contains("</Error>") {
        return Response::from_parts(parts, s3s::Body::from(bytes));
    }
    let condition_failed = text.contains("<Code>InvalidPolicyDocument</Code>")
        && (text.contains("<Message>Policy condition") || text.contains("does not match bucket"));
    if method == http::Method::POST && parts.status == StatusCode::BAD_REQUEST && condition_failed {
        let detail = text
            .split_once("<Message>")
            .and_then(|(_, rest)| rest.split_once("</Message>"))
            .map_or("", |(m, _)| m);
        text = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
             <Message>Invalid according to Policy: {detail}</Message></Error>"
        );
        parts.status = StatusCode::FORBIDDEN;
    }
    if !text.contains("<RequestId>") {
        text = text.replacen(
            "</Error>",
            &format!("<RequestId>{request_id}</RequestId></Error>"),
            1,
        );
    }
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, s3s::Body::from(text))
}

/// s3s appends `etag=VALUE` to a POST's redirect; S3 sends the quoted ETag (`%22VALUE%22`).
fn quote_redirect_etag(mut resp: Response<s3s::Body>) -> Response<s3s::Body> {
    let Some(location) = resp
        .headers()
        .get(http::header::LOCATION)
        .and_then(|l| l.to_str().ok())
    else {
        return resp;
    };
    let quoted = match location.rsplit_once("etag=") {
        Some((before, value)) if !value.starts_with("%22") && !value.contains('&') => {
            format!("{before}etag=%22{value}%22")
        }
        _ => return resp,
    };
    if let Ok(v) = HeaderValue::from_str(&quoted) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_urls_longer_than_a_week_are_refused() {
        let mut ok: Request<()> = Request::get("/b/k?X-Amz-Expires=604800&X-Amz-Signature=ab")
            .body(())
            .unwrap();
        assert!(prepare(&mut ok).is_ok());
        let mut long: Request<()> = Request::get("/b/k?X-Amz-Expires=604801&X-Amz-Signature=ab")
            .body(())
            .unwrap();
        let resp = prepare(&mut long).unwrap_err();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_date_header_dates_sigv4_without_x_amz_date() {
        let mut req: Request<()> = Request::get("/b/k")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=x")
            .header("date", "Wed, 21 Oct 2015 07:28:00 GMT")
            .body(())
            .unwrap();
        prepare(&mut req).unwrap();
        assert_eq!(req.headers()["x-amz-date"], "20151021T072800Z");
    }

    #[test]
    fn redirect_etags_are_quoted() {
        let mut resp = Response::new(s3s::Body::empty());
        resp.headers_mut().insert(
            http::header::LOCATION,
            HeaderValue::from_static("http://e.com/done?bucket=b&key=k&etag=abc"),
        );
        let resp = quote_redirect_etag(resp);
        assert_eq!(
            resp.headers()[http::header::LOCATION],
            "http://e.com/done?bucket=b&key=k&etag=%22abc%22"
        );
    }
}
