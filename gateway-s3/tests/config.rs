//! Bucket and object configuration through the AWS SDK: tagging, CORS (configuration,
//! preflight and response headers), lifecycle (configuration and a worker pass).

mod common;

use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, CorsConfiguration, CorsRule,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    NoncurrentVersionExpiration, Tag, Tagging, VersioningConfiguration,
};
use common::*;

fn tagging(pairs: &[(&str, &str)]) -> Tagging {
    let mut t = Tagging::builder();
    for (k, v) in pairs {
        t = t.tag_set(Tag::builder().key(*k).value(*v).build().unwrap());
    }
    t.build().unwrap()
}

#[tokio::test]
async fn object_and_bucket_tagging() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("tags").send().await.unwrap();
    put(&s3, "tags", "k", b"data").await;

    let got = s3
        .get_object_tagging()
        .bucket("tags")
        .key("k")
        .send()
        .await
        .unwrap();
    assert!(got.tag_set().is_empty());
    s3.put_object_tagging()
        .bucket("tags")
        .key("k")
        .tagging(tagging(&[("a", "1"), ("b", "two words")]))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object_tagging()
        .bucket("tags")
        .key("k")
        .send()
        .await
        .unwrap();
    let tags: Vec<_> = got.tag_set().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags, vec![("a", "1"), ("b", "two words")]);
    // Tagging changes no data and makes no new version.
    assert_eq!(read(&s3, "tags", "k", None).await, b"data");

    // Limits and duplicates.
    let eleven: Vec<(String, String)> = (0..11).map(|i| (format!("k{i}"), "v".into())).collect();
    let eleven: Vec<(&str, &str)> = eleven
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let err = s3
        .put_object_tagging()
        .bucket("tags")
        .key("k")
        .tagging(tagging(&eleven))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (400, "InvalidTag".into()));
    let long_key = "k".repeat(129);
    let err = s3
        .put_object_tagging()
        .bucket("tags")
        .key("k")
        .tagging(tagging(&[(&long_key, "v")]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (400, "InvalidTag".into()));
    let err = s3
        .get_object_tagging()
        .bucket("tags")
        .key("missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (404, "NoSuchKey".into()));

    s3.delete_object_tagging()
        .bucket("tags")
        .key("k")
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object_tagging()
        .bucket("tags")
        .key("k")
        .send()
        .await
        .unwrap();
    assert!(got.tag_set().is_empty());

    // Bucket tags.
    let err = s3
        .get_bucket_tagging()
        .bucket("tags")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (404, "NoSuchTagSet".into()));
    s3.put_bucket_tagging()
        .bucket("tags")
        .tagging(tagging(&[("team", "storage")]))
        .send()
        .await
        .unwrap();
    let got = s3.get_bucket_tagging().bucket("tags").send().await.unwrap();
    assert_eq!(got.tag_set()[0].key(), "team");
    assert_eq!(got.tag_set()[0].value(), "storage");
    s3.delete_bucket_tagging()
        .bucket("tags")
        .send()
        .await
        .unwrap();
    let err = s3
        .get_bucket_tagging()
        .bucket("tags")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (404, "NoSuchTagSet".into()));
}

#[tokio::test]
async fn tagging_a_specific_version() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("vtag").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("vtag")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let v1 = put(&s3, "vtag", "k", b"one").await.unwrap();
    let v2 = put(&s3, "vtag", "k", b"two").await.unwrap();
    let out = s3
        .put_object_tagging()
        .bucket("vtag")
        .key("k")
        .version_id(&v1)
        .tagging(tagging(&[("old", "yes")]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.version_id(), Some(v1.as_str()));
    let old = s3
        .get_object_tagging()
        .bucket("vtag")
        .key("k")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(old.tag_set().len(), 1);
    let current = s3
        .get_object_tagging()
        .bucket("vtag")
        .key("k")
        .send()
        .await
        .unwrap();
    assert!(current.tag_set().is_empty());
    assert_eq!(current.version_id(), Some(v2.as_str()));
}

fn cors_rule() -> CorsRule {
    CorsRule::builder()
        .allowed_origins("https://*.example.com")
        .allowed_methods("GET")
        .allowed_methods("PUT")
        .allowed_headers("x-amz-*")
        .allowed_headers("content-type")
        .expose_headers("ETag")
        .max_age_seconds(600)
        .build()
        .unwrap()
}

#[tokio::test]
async fn cors_configuration_preflight_and_response_headers() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("web").send().await.unwrap();
    put(&s3, "web", "page.html", b"<html/>").await;
    let preflight = |origin: &str, method: &str, headers: &str| {
        let mut head = format!(
            "OPTIONS /web/page.html HTTP/1.1\nHost: {}\nOrigin: {origin}\n\
             Access-Control-Request-Method: {method}",
            server.addr
        );
        if !headers.is_empty() {
            head.push_str(&format!("\nAccess-Control-Request-Headers: {headers}"));
        }
        let addr = server.addr;
        async move { raw_request(addr, &head, b"").await }
    };

    // No configuration yet: preflight refused.
    let r = preflight("https://app.example.com", "GET", "").await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("CORS is not enabled"), "{}", r.text());
    let err = s3.get_bucket_cors().bucket("web").send().await.unwrap_err();
    assert_eq!(error_of(&err), (404, "NoSuchCORSConfiguration".into()));

    s3.put_bucket_cors()
        .bucket("web")
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(cors_rule())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let got = s3.get_bucket_cors().bucket("web").send().await.unwrap();
    let rule = &got.cors_rules()[0];
    assert_eq!(rule.allowed_origins(), ["https://*.example.com"]);
    assert_eq!(rule.allowed_methods(), ["GET", "PUT"]);
    assert_eq!(rule.max_age_seconds(), Some(600));

    let r = preflight("https://app.example.com", "PUT", "x-amz-date, Content-Type").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("x-amz-date, content-type")
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    for (origin, method, headers) in [
        ("https://evil.org", "GET", ""),
        ("https://app.example.com", "DELETE", ""),
        ("https://app.example.com", "PUT", "authorization-x"),
    ] {
        let r = preflight(origin, method, headers).await;
        assert_eq!(r.status, 403, "{origin} {method} {headers}");
    }

    // A signed GET with an Origin gets the CORS headers; another origin gets none.
    let signer = server.signer();
    let host = server.addr.to_string();
    let get = |origin: &'static str| {
        let signed = signer.sign(
            "GET",
            &host,
            "/web/page.html",
            "",
            &[("origin", origin.to_string())],
            &sha256_hex(b""),
        );
        let addr = server.addr;
        async move { raw_request(addr, &signed.head, b"").await }
    };
    let r = get("https://app.example.com").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-expose-headers"), Some("ETag"));
    let r = get("https://evil.org").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);

    // Bad rules are refused; deletion removes the configuration.
    let bad = CorsRule::builder()
        .allowed_origins("*")
        .allowed_methods("PATCH")
        .build()
        .unwrap();
    let err = s3
        .put_bucket_cors()
        .bucket("web")
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(bad)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err).0, 400);
    s3.delete_bucket_cors().bucket("web").send().await.unwrap();
    let r = preflight("https://app.example.com", "GET", "").await;
    assert_eq!(r.status, 403);
}

fn expire_rule(id: &str, prefix: &str) -> LifecycleRule {
    LifecycleRule::builder()
        .id(id)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
        .expiration(LifecycleExpiration::builder().days(1).build())
        .build()
        .unwrap()
}

#[tokio::test]
async fn lifecycle_configuration_round_trip_and_validation() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("lcfg").send().await.unwrap();
    let err = s3
        .get_bucket_lifecycle_configuration()
        .bucket("lcfg")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (404, "NoSuchLifecycleConfiguration".into()));

    let noncurrent = LifecycleRule::builder()
        .id("old-versions")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(2)
                .newer_noncurrent_versions(1)
                .build(),
        )
        .build()
        .unwrap();
    s3.put_bucket_lifecycle_configuration()
        .bucket("lcfg")
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(expire_rule("tmp", "tmp/"))
                .rules(noncurrent)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let got = s3
        .get_bucket_lifecycle_configuration()
        .bucket("lcfg")
        .send()
        .await
        .unwrap();
    let rules = got.rules();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].id(), Some("tmp"));
    assert_eq!(rules[0].expiration().and_then(|e| e.days()), Some(1));
    assert_eq!(
        rules[1]
            .noncurrent_version_expiration()
            .and_then(|n| n.newer_noncurrent_versions()),
        Some(1)
    );

    // Duplicate ids and rules without an action are refused.
    let err = s3
        .put_bucket_lifecycle_configuration()
        .bucket("lcfg")
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(expire_rule("same", "a/"))
                .rules(expire_rule("same", "b/"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (400, "InvalidArgument".into()));
    let no_action = LifecycleRule::builder()
        .id("x")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .build()
        .unwrap();
    let err = s3
        .put_bucket_lifecycle_configuration()
        .bucket("lcfg")
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(no_action)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err).0, 400);

    s3.delete_bucket_lifecycle()
        .bucket("lcfg")
        .send()
        .await
        .unwrap();
    let err = s3
        .get_bucket_lifecycle_configuration()
        .bucket("lcfg")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (404, "NoSuchLifecycleConfiguration".into()));
}

const DAY_MS: u64 = 86_400_000;

#[tokio::test]
async fn lifecycle_pass_expires_what_the_rules_say() {
    let server = start().await;
    let s3 = server.s3();
    // An unversioned bucket: expiry removes.
    s3.create_bucket().bucket("plain").send().await.unwrap();
    put(&s3, "plain", "tmp/a", b"a").await;
    put(&s3, "plain", "keep/b", b"b").await;
    s3.put_bucket_lifecycle_configuration()
        .bucket("plain")
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(expire_rule("tmp", "tmp/"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // A versioned bucket: expiry adds a delete marker; old versions go after 2 days beyond
    // the newest one; a lone delete marker goes.
    s3.create_bucket().bucket("vers").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("vers")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    for body in [b"1", b"2", b"3"] {
        put(&s3, "vers", "doc", body).await;
    }
    put(&s3, "vers", "gone", b"x").await;
    let marker = s3
        .delete_object()
        .bucket("vers")
        .key("gone")
        .send()
        .await
        .unwrap();
    let marker_id = marker.version_id().unwrap().to_string();
    // Remove the data version under the marker so the marker is the key's only entry.
    let versions = s3
        .list_object_versions()
        .bucket("vers")
        .prefix("gone")
        .send()
        .await
        .unwrap();
    let data_id = versions.versions()[0].version_id().unwrap().to_string();
    s3.delete_object()
        .bucket("vers")
        .key("gone")
        .version_id(&data_id)
        .send()
        .await
        .unwrap();
    let rules = BucketLifecycleConfiguration::builder()
        .rules(
            LifecycleRule::builder()
                .id("versions")
                .status(ExpirationStatus::Enabled)
                .filter(LifecycleRuleFilter::builder().prefix("").build())
                .noncurrent_version_expiration(
                    NoncurrentVersionExpiration::builder()
                        .noncurrent_days(2)
                        .newer_noncurrent_versions(1)
                        .build(),
                )
                .expiration(
                    LifecycleExpiration::builder()
                        .expired_object_delete_marker(true)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    s3.put_bucket_lifecycle_configuration()
        .bucket("vers")
        .lifecycle_configuration(rules)
        .send()
        .await
        .unwrap();

    // Today nothing is due but the lone marker.
    let now = cairn_client::now_ms();
    let report = server.client.run_lifecycle(now, &|_| {}).await.unwrap();
    assert_eq!(report.buckets, 2);
    assert_eq!(report.expired, 0);
    assert_eq!(report.noncurrent_removed, 0);
    assert_eq!(report.markers_removed, 1);
    let left = s3
        .list_object_versions()
        .bucket("vers")
        .prefix("gone")
        .send()
        .await
        .unwrap();
    assert!(
        left.delete_markers().is_empty(),
        "marker {marker_id} removed"
    );

    // Three days on: tmp/a is expired, keep/b is not; of doc's two noncurrent versions the
    // newest one is kept (NewerNoncurrentVersions = 1), the older removed.
    let report = server
        .client
        .run_lifecycle(now + 3 * DAY_MS, &|_| {})
        .await
        .unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(report.noncurrent_removed, 1);
    assert_eq!(report.errors, 0, "{:?}", report.last_error);
    let listed = s3.list_objects_v2().bucket("plain").send().await.unwrap();
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec!["keep/b"]);
    let doc = s3
        .list_object_versions()
        .bucket("vers")
        .prefix("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(doc.versions().len(), 2);
    assert_eq!(read(&s3, "vers", "doc", None).await, b"3");
}

#[tokio::test]
async fn cors_any_origin_is_echoed_for_signed_requests() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket()
        .bucket("anyorigin")
        .acl(aws_sdk_s3::types::BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    let rule = CorsRule::builder()
        .allowed_origins("*")
        .allowed_methods("GET")
        .build()
        .unwrap();
    s3.put_bucket_cors()
        .bucket("anyorigin")
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // Anonymous listing of a public-read bucket: any origin, `*`.
    let head = format!(
        "GET /anyorigin HTTP/1.1\nHost: {}\nOrigin: http://www.example1.com",
        server.addr
    );
    let r = raw_request(server.addr, &head, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET"));
    // A missing object still carries the CORS headers.
    let head = format!(
        "GET /anyorigin/missing HTTP/1.1\nHost: {}\nOrigin: http://www.example1.com",
        server.addr
    );
    let r = raw_request(server.addr, &head, b"").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // Signed: the origin is echoed (browsers refuse `*` with credentials).
    let signed = server.signer().sign(
        "GET",
        &server.addr.to_string(),
        "/anyorigin",
        "",
        &[("origin", "http://not.exists".to_string())],
        &sha256_hex(b""),
    );
    let r = raw_request(server.addr, &signed.head, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://not.exists")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
}
