//! Signature Version 2: requests signed by hand with HMAC-SHA1 as S3's "Signing and
//! authenticating REST requests" describes (headers and presigned query strings), their time
//! stamps, wrong signatures, the per-site switch, and the condition keys policies see.

mod common;

use base64::Engine as _;
use cairn_s3::S3Config;
use common::*;
use hmac::{Hmac, KeyInit, Mac};

/// Base64 of the HMAC-SHA1 of `to_sign` under `secret`.
fn signature(secret: &str, to_sign: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `%XX`-encodes everything but unreserved characters (for query values and signatures).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An HTTP date (RFC 1123) `offset` seconds from now.
fn http_date(offset: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(offset);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&format).unwrap()
}

/// A request head signed with `Authorization: AWS id:signature` over `to_sign`, with `Host`
/// and `headers` (which must hold whatever `to_sign` names).
fn signed_as(
    id: &str,
    secret: &str,
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    to_sign: &str,
) -> String {
    let mut head = format!("{method} {target} HTTP/1.1\nHost: {host}\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\n"));
    }
    head.push_str(&format!(
        "Authorization: AWS {id}:{}\n",
        signature(secret, to_sign)
    ));
    head
}

/// [`signed_as`] with the test key, path style.
fn signed(
    server: &Server,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    to_sign: &str,
) -> String {
    let host = server.addr.to_string();
    signed_as(KEY_ID, SECRET, method, target, &host, headers, to_sign)
}

/// A GET of `target` signed over `resource` with a current `Date`.
async fn get(server: &Server, target: &str, resource: &str) -> RawResponse {
    let date = http_date(0);
    let head = signed(
        server,
        "GET",
        target,
        &[("Date", &date)],
        &format!("GET\n\n\n{date}\n{resource}"),
    );
    raw_request(server.addr, &head, b"").await
}

/// Asserts the status and S3 error code of a response.
fn assert_error(resp: &RawResponse, status: u16, code: &str) {
    let text = resp.text();
    assert_eq!(resp.status, status, "{text}");
    assert!(text.contains(&format!("<Code>{code}</Code>")), "{text}");
}

/// A URL presigned with V2 for `GET resource`, expiring at `expires` (seconds since 1970),
/// with more parameters (`query`, encoded) of which `signed` (decoded) are signed.
fn presigned_get(resource: &str, expires: i64, query: &str, signed: &str) -> String {
    let sig = signature(SECRET, &format!("GET\n\n\n{expires}\n{resource}{signed}"));
    let auth = format!(
        "AWSAccessKeyId={KEY_ID}&Expires={expires}&Signature={}",
        encode(&sig)
    );
    if query.is_empty() {
        format!("{resource}?{auth}")
    } else {
        format!("{resource}?{query}&{auth}")
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The text of the first `<name>` element of an XML body.
fn element(xml: &str, name: &str) -> String {
    let start = xml.find(&format!("<{name}>")).expect("element") + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>")).expect("end tag");
    xml[start..end].to_string()
}

#[tokio::test]
async fn objects_sub_resources_and_listings() {
    let server = start().await;
    server
        .s3()
        .create_bucket()
        .bucket("sigv2")
        .send()
        .await
        .unwrap();

    // PutObject with a Content-Type, Content-MD5 and metadata: x-amz-* headers lowercased,
    // sorted, values trimmed.
    let body = b"signed with version 2";
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5_digest(body));
    let date = http_date(0);
    let len = body.len().to_string();
    let head = signed(
        &server,
        "PUT",
        "/sigv2/dir/a.txt",
        &[
            ("Content-Type", "text/plain"),
            ("Content-MD5", &md5),
            ("Content-Length", &len),
            ("Date", &date),
            ("X-Amz-Meta-Reviewed-By", "  joe "),
            ("x-amz-meta-color", "blue"),
        ],
        &format!(
            "PUT\n{md5}\ntext/plain\n{date}\nx-amz-meta-color:blue\n\
             x-amz-meta-reviewed-by:joe\n/sigv2/dir/a.txt"
        ),
    );
    let resp = raw_request(server.addr, &head, body).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    put(&server.s3(), "sigv2", "dir/b.txt", b"b").await;
    put(&server.s3(), "sigv2", "other/c.txt", b"c").await;

    // GetObject, dated by x-amz-date (the Date line is then empty); a repeated x-amz-* header
    // is signed once, its values joined by commas.
    let amz_date = http_date(0);
    let head = signed(
        &server,
        "GET",
        "/sigv2/dir/a.txt",
        &[
            ("x-amz-date", &amz_date),
            ("X-Amz-Trace", "one"),
            ("x-amz-trace", "two"),
        ],
        &format!("GET\n\n\n\nx-amz-date:{amz_date}\nx-amz-trace:one,two\n/sigv2/dir/a.txt"),
    );
    let resp = raw_request(server.addr, &head, b"").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.body, body);
    assert_eq!(resp.header("x-amz-meta-reviewed-by"), Some("joe"));

    // Response overrides are signed decoded, sorted with the sub-resources.
    let resp = get(
        &server,
        concat!(
            "/sigv2/dir/a.txt?response-content-type=text%2Fx-test%3B%20a%3Db",
            "&response-content-disposition=attachment%3B%20filename%3D%22a%20b.txt%22",
        ),
        concat!(
            "/sigv2/dir/a.txt?response-content-disposition=attachment; filename=\"a b.txt\"",
            "&response-content-type=text/x-test; a=b",
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("text/x-test; a=b"));

    // A sub-resource: the object's and the bucket's ACL.
    let resp = get(&server, "/sigv2/dir/a.txt?acl", "/sigv2/dir/a.txt?acl").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        resp.text().contains("<AccessControlPolicy"),
        "{}",
        resp.text()
    );
    let resp = get(&server, "/sigv2/?acl", "/sigv2/?acl").await;
    assert_eq!(resp.status, 200, "{}", resp.text());

    // ListObjects with a prefix (not a sub-resource, so not signed). `/sigv2` is signed as sent
    // (minio-go, rclone) or as `/sigv2/` (botocore, the AWS SDK for Java): S3 takes both.
    for resource in ["/sigv2", "/sigv2/"] {
        let resp = get(&server, "/sigv2?prefix=dir%2F", resource).await;
        assert_eq!(resp.status, 200, "{resource}: {}", resp.text());
        let text = resp.text();
        assert!(text.contains("<Key>dir/a.txt</Key>"), "{text}");
        assert!(text.contains("<Key>dir/b.txt</Key>"), "{text}");
        assert!(!text.contains("other/c.txt"), "{text}");
    }
    // Likewise with a sub-resource: `GET /sigv2?versioning` signed over `/sigv2/?versioning`.
    let resp = get(&server, "/sigv2?versioning", "/sigv2/?versioning").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        resp.text().contains("VersioningConfiguration"),
        "{}",
        resp.text()
    );

    // Virtual-hosted style: the bucket from the Host header leads the resource.
    let host = format!("sigv2.localhost:{}", server.addr.port());
    let date = http_date(0);
    let head = signed_as(
        KEY_ID,
        SECRET,
        "GET",
        "/dir/a.txt",
        &host,
        &[("Date", &date)],
        &format!("GET\n\n\n{date}\n/sigv2/dir/a.txt"),
    );
    let resp = raw_request(server.addr, &head, b"").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.body, body);

    // DeleteObject, then the object is gone.
    let date = http_date(0);
    let head = signed(
        &server,
        "DELETE",
        "/sigv2/dir/a.txt",
        &[("Date", &date)],
        &format!("DELETE\n\n\n{date}\n/sigv2/dir/a.txt"),
    );
    let resp = raw_request(server.addr, &head, b"").await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    let resp = get(&server, "/sigv2/dir/a.txt", "/sigv2/dir/a.txt").await;
    assert_error(&resp, 404, "NoSuchKey");

    server.stop().await.unwrap();
}

#[tokio::test]
async fn multipart_uploads_sign_their_sub_resources() {
    let server = start().await;
    server
        .s3()
        .create_bucket()
        .bucket("mpart")
        .send()
        .await
        .unwrap();
    let send = |method: &'static str, target: String, resource: String, body: Vec<u8>| {
        let server = &server;
        async move {
            let date = http_date(0);
            let len = body.len().to_string();
            let head = signed(
                server,
                method,
                &target,
                &[("Date", &date), ("Content-Length", &len)],
                &format!("{method}\n\n\n{date}\n{resource}"),
            );
            raw_request(server.addr, &head, &body).await
        }
    };
    let resp = send(
        "POST",
        "/mpart/big?uploads".into(),
        "/mpart/big?uploads".into(),
        vec![],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let upload = element(&resp.text(), "UploadId");

    let part1 = random_bytes(5 << 20);
    let part2 = b"tail".to_vec();
    let mut etags = Vec::new();
    for (n, part) in [(1, part1.clone()), (2, part2.clone())] {
        let target = format!("/mpart/big?partNumber={n}&uploadId={}", encode(&upload));
        let resource = format!("/mpart/big?partNumber={n}&uploadId={upload}");
        let resp = send("PUT", target, resource, part).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        etags.push(resp.header("etag").unwrap().to_string());
    }
    let complete = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{}</ETag></Part>\
         <Part><PartNumber>2</PartNumber><ETag>{}</ETag></Part></CompleteMultipartUpload>",
        etags[0], etags[1]
    );
    let target = format!("/mpart/big?uploadId={}", encode(&upload));
    let resource = format!("/mpart/big?uploadId={upload}");
    let resp = send("POST", target, resource, complete.into_bytes()).await;
    assert_eq!(resp.status, 200, "{}", resp.text());

    let got = read(&server.s3(), "mpart", "big", None).await;
    assert_eq!(got.len(), part1.len() + part2.len());
    assert!(got.starts_with(&part1) && got.ends_with(&part2));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn presigned_urls() {
    let server = start().await;
    put(
        &server.s3(),
        &create(&server, "pre").await,
        "k.txt",
        b"presigned",
    )
    .await;

    let url = presigned_get("/pre/k.txt", unix_now() + 300, "", "");
    let resp = raw_request(server.addr, &format!("GET {url} HTTP/1.1\nHost: x"), b"").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.body, b"presigned");

    // With a response override, signed in the resource.
    let url = presigned_get(
        "/pre/k.txt",
        unix_now() + 300,
        "response-content-type=text%2Fplain",
        "?response-content-type=text/plain",
    );
    let resp = raw_request(server.addr, &format!("GET {url} HTTP/1.1\nHost: x"), b"").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("text/plain"));

    // Past Expires: 403 AccessDenied, "Request has expired", with when it expired.
    let url = presigned_get("/pre/k.txt", unix_now() - 5, "", "");
    let resp = raw_request(server.addr, &format!("GET {url} HTTP/1.1\nHost: x"), b"").await;
    assert_error(&resp, 403, "AccessDenied");
    assert!(resp
        .text()
        .contains("<Message>Request has expired</Message>"));
    assert!(resp.text().contains("<Expires>"), "{}", resp.text());

    // Expires in milliseconds is not a date S3 takes.
    let url = presigned_get("/pre/k.txt", (unix_now() + 300) * 1000, "", "");
    let resp = raw_request(server.addr, &format!("GET {url} HTTP/1.1\nHost: x"), b"").await;
    assert_error(&resp, 403, "AccessDenied");
    assert!(
        resp.text().contains("should be seconds since epoch"),
        "{}",
        resp.text()
    );

    // A missing parameter.
    let url = format!("/pre/k.txt?Expires={}&Signature=abc", unix_now() + 300);
    let resp = raw_request(server.addr, &format!("GET {url} HTTP/1.1\nHost: x"), b"").await;
    assert_error(&resp, 403, "AccessDenied");

    // A URL for another key, or with another secret.
    let url = presigned_get("/pre/k.txt", unix_now() + 300, "", "").replace("k.txt?", "other?");
    let resp = raw_request(server.addr, &format!("GET {url} HTTP/1.1\nHost: x"), b"").await;
    assert_error(&resp, 403, "SignatureDoesNotMatch");

    server.stop().await.unwrap();
}

/// Creates `bucket` with the SDK.
async fn create(server: &Server, bucket: &str) -> String {
    server
        .s3()
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    bucket.to_string()
}

#[tokio::test]
async fn time_stamps_are_required_and_checked() {
    let server = start().await;
    put(
        &server.s3(),
        &create(&server, "stamps").await,
        "k",
        b"timely",
    )
    .await;
    // A GET dated by `name` (Date or x-amz-date).
    let with_date = |name: &'static str, value: String| {
        let server = &server;
        async move {
            let to_sign = if name == "x-amz-date" {
                format!("GET\n\n\n\nx-amz-date:{value}\n/stamps/k")
            } else {
                format!("GET\n\n\n{value}\n/stamps/k")
            };
            let head = signed(server, "GET", "/stamps/k", &[(name, &value)], &to_sign);
            raw_request(server.addr, &head, b"").await
        }
    };
    let no_date = "AWS authentication requires a valid Date or x-amz-date header";

    // Within 15 minutes either way: fine.
    assert_eq!(with_date("Date", http_date(-600)).await.status, 200);
    assert_eq!(with_date("x-amz-date", http_date(600)).await.status, 200);
    let s3cmd_style = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] +0000"
        ))
        .unwrap();
    assert_eq!(with_date("x-amz-date", s3cmd_style).await.status, 200);

    // No time stamp at all.
    let head = signed(&server, "GET", "/stamps/k", &[], "GET\n\n\n\n/stamps/k");
    let resp = raw_request(server.addr, &head, b"").await;
    assert_error(&resp, 403, "AccessDenied");
    assert!(resp.text().contains(no_date), "{}", resp.text());

    // Not a date, or before 1970.
    for bad in ["Bad Date", "Tue, 07 Jul 1950 21:53:04 GMT"] {
        let resp = with_date("Date", bad.to_string()).await;
        assert_error(&resp, 403, "AccessDenied");
        assert!(resp.text().contains(no_date), "{}", resp.text());
        let resp = with_date("x-amz-date", bad.to_string()).await;
        assert_error(&resp, 403, "AccessDenied");
    }
    // An empty x-amz-date is the time stamp even beside a valid Date.
    let date = http_date(0);
    let head = signed(
        &server,
        "GET",
        "/stamps/k",
        &[("Date", &date), ("x-amz-date", "")],
        "GET\n\n\n\nx-amz-date:\n/stamps/k",
    );
    let resp = raw_request(server.addr, &head, b"").await;
    assert_error(&resp, 403, "AccessDenied");

    // More than 15 minutes off, before or after.
    for offset in [-20 * 60, 20 * 60, -10 * 365 * 86_400] {
        let resp = with_date("Date", http_date(offset)).await;
        assert_error(&resp, 403, "RequestTimeTooSkewed");
        assert!(
            resp.text().contains("<MaxAllowedSkewMilliseconds>900000<"),
            "{}",
            resp.text()
        );
        let resp = with_date("x-amz-date", http_date(offset)).await;
        assert_error(&resp, 403, "RequestTimeTooSkewed");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_signatures_and_keys_are_refused() {
    let server = start().await;
    put(&server.s3(), &create(&server, "bad").await, "k", b"x").await;
    let host = server.addr.to_string();
    let date = http_date(0);
    let to_sign = format!("GET\n\n\n{date}\n/bad/k");

    let head = signed_as(
        KEY_ID,
        "not-the-secret",
        "GET",
        "/bad/k",
        &host,
        &[("Date", &date)],
        &to_sign,
    );
    assert_error(
        &raw_request(server.addr, &head, b"").await,
        403,
        "SignatureDoesNotMatch",
    );
    // Signed over another resource than the one asked for.
    let head = signed(&server, "GET", "/bad/other", &[("Date", &date)], &to_sign);
    assert_error(
        &raw_request(server.addr, &head, b"").await,
        403,
        "SignatureDoesNotMatch",
    );
    // The right signature of a request whose Date changed on the way.
    let later = http_date(60);
    let mut head = signed(&server, "GET", "/bad/k", &[("Date", &date)], &to_sign);
    head = head.replace(&date, &later);
    assert_error(
        &raw_request(server.addr, &head, b"").await,
        403,
        "SignatureDoesNotMatch",
    );

    let head = signed_as(
        "AKIAUNKNOWN000000000",
        SECRET,
        "GET",
        "/bad/k",
        &host,
        &[("Date", &date)],
        &to_sign,
    );
    assert_error(
        &raw_request(server.addr, &head, b"").await,
        403,
        "InvalidAccessKeyId",
    );

    let head =
        format!("GET /bad/k HTTP/1.1\nHost: {host}\nDate: {date}\nAuthorization: AWS HAHAHA");
    assert_error(
        &raw_request(server.addr, &head, b"").await,
        400,
        "InvalidArgument",
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_site_can_turn_signature_v2_off() {
    let server = start_with(S3Config {
        signature_v2: false,
        ..S3Config::default()
    })
    .await;
    put(&server.s3(), &create(&server, "off").await, "k", b"v4 only").await;
    let unsupported = concat!(
        "The authorization mechanism you have provided is not supported. ",
        "Please use AWS4-HMAC-SHA256."
    );

    let resp = get(&server, "/off/k", "/off/k").await;
    assert_error(&resp, 400, "InvalidRequest");
    assert!(resp.text().contains(unsupported), "{}", resp.text());
    let url = presigned_get("/off/k", unix_now() + 300, "", "");
    let resp = raw_request(server.addr, &format!("GET {url} HTTP/1.1\nHost: x"), b"").await;
    assert_error(&resp, 400, "InvalidRequest");
    assert!(resp.text().contains(unsupported), "{}", resp.text());

    // SigV4 is untouched.
    assert_eq!(read(&server.s3(), "off", "k", None).await, b"v4 only");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn policies_see_the_signature_version_and_auth_type() {
    let server = start().await;
    let s3 = server.s3();
    let bucket = create(&server, "pol").await;
    put(&s3, &bucket, "v4-only/k", b"a").await;
    put(&s3, &bucket, "no-urls/k", b"b").await;
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::pol/v4-only/*",
         "Condition":{"StringEquals":{"s3:signatureversion":"AWS"}}},
        {"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::pol/no-urls/*",
         "Condition":{"StringEquals":{"s3:authType":"REST-QUERY-STRING"}}}]}"#;
    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(policy)
        .send()
        .await
        .unwrap();

    // s3:signatureversion is "AWS" for V2, "AWS4-HMAC-SHA256" for V4.
    assert_error(
        &get(&server, "/pol/v4-only/k", "/pol/v4-only/k").await,
        403,
        "AccessDenied",
    );
    assert_eq!(read(&s3, "pol", "v4-only/k", None).await, b"a");
    // s3:authType is "REST-HEADER" for an Authorization header, "REST-QUERY-STRING" for URLs.
    assert_eq!(
        get(&server, "/pol/no-urls/k", "/pol/no-urls/k")
            .await
            .status,
        200
    );
    let url = presigned_get("/pol/no-urls/k", unix_now() + 300, "", "");
    let resp = raw_request(server.addr, &format!("GET {url} HTTP/1.1\nHost: x"), b"").await;
    assert_error(&resp, 403, "AccessDenied");
    let url = presigned_get("/pol/v4-only/k", unix_now() + 300, "", "");
    let resp = raw_request(server.addr, &format!("GET {url} HTTP/1.1\nHost: x"), b"").await;
    assert_error(&resp, 403, "AccessDenied");
    server.stop().await.unwrap();
}

/// The fields of a browser POST form signed with V2: the policy's base64 signed with HMAC-SHA1.
fn post_form_v2(bucket: &str, key: &str) -> Vec<(String, String)> {
    let expiration = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].000Z"
        ))
        .unwrap();
    let policy = format!(
        r#"{{"expiration":"{expiration}","conditions":[{{"bucket":"{bucket}"}},["starts-with","$key",""]]}}"#
    );
    let policy = base64::engine::general_purpose::STANDARD.encode(policy);
    vec![
        ("key".into(), key.into()),
        ("AWSAccessKeyId".into(), KEY_ID.into()),
        ("signature".into(), signature(SECRET, &policy)),
        ("policy".into(), policy),
    ]
}

#[tokio::test]
async fn post_forms_signed_with_v2() {
    let server = start().await;
    let s3 = server.s3();
    let bucket = create(&server, "form").await;
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::form/v4-only/*",
         "Condition":{"StringEquals":{"s3:signatureversion":"AWS"}}}]}"#;
    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(policy)
        .send()
        .await
        .unwrap();

    let resp = post_upload(
        &server,
        &bucket,
        &post_form_v2(&bucket, "up/a.txt"),
        b"form",
    )
    .await;
    assert!((200..300).contains(&resp.status), "{}", resp.text());
    assert_eq!(read(&s3, "form", "up/a.txt", None).await, b"form");
    // A form's s3:signatureversion is "AWS" when it is signed with V2.
    let fields = post_form_v2(&bucket, "v4-only/a.txt");
    assert_error(
        &post_upload(&server, &bucket, &fields, b"x").await,
        403,
        "AccessDenied",
    );
    let mut forged = post_form_v2(&bucket, "up/b.txt");
    forged[2].1 = signature("not-the-secret", &forged[3].1);
    let resp = post_upload(&server, &bucket, &forged, b"x").await;
    assert_error(&resp, 403, "SignatureDoesNotMatch");
    server.stop().await.unwrap();

    let server = start_with(S3Config {
        signature_v2: false,
        ..S3Config::default()
    })
    .await;
    let bucket = create(&server, "form").await;
    let resp = post_upload(&server, &bucket, &post_form_v2(&bucket, "a.txt"), b"x").await;
    assert_error(&resp, 400, "InvalidRequest");
    server.stop().await.unwrap();
}

/// MD5 of `data`.
fn md5_digest(data: &[u8]) -> Vec<u8> {
    use md5::Digest as _;
    md5::Md5::digest(data).to_vec()
}
