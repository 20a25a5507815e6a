//! Browser POST uploads: signed policy forms and multipart/form-data requests.

use base64::Engine as _;

use super::{raw_request, RawResponse, Server, KEY_ID, SECRET};

/// The S3 error code in an XML error body ("" when there is none).
pub fn code_of(resp: &RawResponse) -> String {
    let text = resp.text();
    text.split("<Code>")
        .nth(1)
        .and_then(|s| s.split("</Code>").next())
        .unwrap_or("")
        .to_string()
}

/// A signed browser POST form: the fields (besides `file`) for `conditions`, with the
/// policy's `expiration` written as given.
pub fn post_form(
    conditions: &[String],
    fields: &[(&str, &str)],
    expiration: &str,
) -> Vec<(String, String)> {
    let amz_date = super::amz_date(time::OffsetDateTime::now_utc());
    let date = &amz_date[..8];
    let credential = format!("{KEY_ID}/{date}/us-east-1/s3/aws4_request");
    let mut all = conditions.to_vec();
    all.push(r#"{"x-amz-algorithm":"AWS4-HMAC-SHA256"}"#.to_string());
    all.push(format!(r#"{{"x-amz-credential":"{credential}"}}"#));
    all.push(format!(r#"{{"x-amz-date":"{amz_date}"}}"#));
    let policy = format!(
        r#"{{"expiration":"{expiration}","conditions":[{}]}}"#,
        all.join(",")
    );
    let policy_b64 = base64::engine::general_purpose::STANDARD.encode(policy);
    let key = super::hmac(format!("AWS4{SECRET}").as_bytes(), date);
    let key = super::hmac(&key, "us-east-1");
    let key = super::hmac(&key, "s3");
    let key = super::hmac(&key, "aws4_request");
    let signature = hex::encode(super::hmac(&key, &policy_b64));
    let mut out: Vec<(String, String)> = fields
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    out.push(("x-amz-algorithm".into(), "AWS4-HMAC-SHA256".into()));
    out.push(("x-amz-credential".into(), credential));
    out.push(("x-amz-date".into(), amz_date));
    out.push(("policy".into(), policy_b64));
    out.push(("x-amz-signature".into(), signature));
    out
}

/// POSTs a multipart/form-data upload of `file` (named `up.txt`) with `fields` to `/bucket`.
pub async fn post_upload(
    server: &Server,
    bucket: &str,
    fields: &[(String, String)],
    file: &[u8],
) -> RawResponse {
    post_upload_named(server, bucket, fields, "up.txt", file).await
}

/// Like [`post_upload`], with the file's name as the browser sends it.
pub async fn post_upload_named(
    server: &Server,
    bucket: &str,
    fields: &[(String, String)],
    filename: &str,
    file: &[u8],
) -> RawResponse {
    let boundary = "----cairnformboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /{bucket} HTTP/1.1\nHost: {}\nContent-Type: multipart/form-data; boundary={boundary}\nContent-Length: {}",
        server.addr,
        body.len()
    );
    raw_request(server.addr, &head, &body).await
}
