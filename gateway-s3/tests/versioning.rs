//! Versioning through the AWS SDK: versions, delete markers, null versions, suspension and
//! version listings.

mod common;

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use common::*;

fn versioning(status: BucketVersioningStatus) -> VersioningConfiguration {
    VersioningConfiguration::builder().status(status).build()
}

#[tokio::test]
async fn versions_and_delete_markers() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("ver").send().await.unwrap();

    let got = s3
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert!(
        got.status().is_none(),
        "no status before versioning was enabled"
    );

    // A null version from before versioning.
    assert_eq!(put(&s3, "ver", "k", b"zero").await, None);

    s3.put_bucket_versioning()
        .bucket("ver")
        .versioning_configuration(versioning(BucketVersioningStatus::Enabled))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), Some(&BucketVersioningStatus::Enabled));

    let v1 = put(&s3, "ver", "k", b"one").await.expect("version id");
    let v2 = put(&s3, "ver", "k", b"two").await.expect("version id");
    assert_ne!(v1, v2);
    assert_eq!(read(&s3, "ver", "k", None).await, b"two");
    assert_eq!(read(&s3, "ver", "k", Some(&v1)).await, b"one");
    assert_eq!(read(&s3, "ver", "k", Some("null")).await, b"zero");
    let head = s3
        .head_object()
        .bucket("ver")
        .key("k")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(head.version_id(), Some(v1.as_str()));

    // Delete adds a marker.
    let del = s3
        .delete_object()
        .bucket("ver")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    let marker = del.version_id().expect("marker version").to_string();

    let signed = server.signer().sign(
        "GET",
        &server.addr.to_string(),
        "/ver/k",
        "",
        &[],
        &sha256_hex(b""),
    );
    let resp = raw_request(server.addr, &signed.head, b"").await;
    assert_eq!(resp.status, 404);
    assert!(
        resp.text().contains("<Code>NoSuchKey</Code>"),
        "{}",
        resp.text()
    );
    assert_eq!(resp.header("x-amz-delete-marker"), Some("true"));
    assert_eq!(resp.header("x-amz-version-id"), Some(marker.as_str()));

    let query = format!("versionId={marker}");
    let signed = server.signer().sign(
        "GET",
        &server.addr.to_string(),
        "/ver/k",
        &query,
        &[],
        &sha256_hex(b""),
    );
    let resp = raw_request(server.addr, &signed.head, b"").await;
    assert_eq!(resp.status, 405);
    assert!(
        resp.text().contains("<Code>MethodNotAllowed</Code>"),
        "{}",
        resp.text()
    );
    assert_eq!(resp.header("x-amz-delete-marker"), Some("true"));
    assert_eq!(resp.header("x-amz-version-id"), Some(marker.as_str()));

    let e = s3
        .head_object()
        .bucket("ver")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 404);
    let e = s3
        .get_object()
        .bucket("ver")
        .key("k")
        .version_id("0123456789abcdef0123456789abcdef")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchVersion".into()));
    let e = s3
        .get_object()
        .bucket("ver")
        .key("k")
        .version_id("garbage")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidArgument".into()));

    // Listing versions: marker, v2, v1, null; the marker is latest.
    let listed = s3
        .list_object_versions()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    let markers = listed.delete_markers();
    assert_eq!(markers.len(), 1);
    assert_eq!(markers[0].version_id(), Some(marker.as_str()));
    assert_eq!(markers[0].is_latest(), Some(true));
    let versions: Vec<_> = listed
        .versions()
        .iter()
        .map(|v| (v.version_id().unwrap().to_string(), v.is_latest().unwrap()))
        .collect();
    assert_eq!(
        versions,
        [
            (v2.clone(), false),
            (v1.clone(), false),
            ("null".to_string(), false)
        ]
    );

    // Paging one entry at a time visits every version once.
    let mut seen = Vec::new();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let page = s3
            .list_object_versions()
            .bucket("ver")
            .max_keys(1)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .unwrap();
        seen.extend(
            page.versions()
                .iter()
                .filter_map(|v| v.version_id().map(str::to_string)),
        );
        seen.extend(
            page.delete_markers()
                .iter()
                .filter_map(|v| v.version_id().map(str::to_string)),
        );
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
        assert!(seen.len() <= 4, "paging must end");
    }
    assert_eq!(
        seen,
        [marker.clone(), v2.clone(), v1.clone(), "null".to_string()]
    );

    // Deleting the marker by id brings v2 back.
    let del = s3
        .delete_object()
        .bucket("ver")
        .key("k")
        .version_id(&marker)
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    assert_eq!(del.version_id(), Some(marker.as_str()));
    assert_eq!(read(&s3, "ver", "k", None).await, b"two");

    // Copy from an old version restores it.
    let out = s3
        .copy_object()
        .bucket("ver")
        .key("k")
        .copy_source(format!("ver/k?versionId={v1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.copy_source_version_id(), Some(v1.as_str()));
    assert!(out.version_id().is_some());
    assert_eq!(read(&s3, "ver", "k", None).await, b"one");

    // Suspended: writes replace the null version.
    s3.put_bucket_versioning()
        .bucket("ver")
        .versioning_configuration(versioning(BucketVersioningStatus::Suspended))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), Some(&BucketVersioningStatus::Suspended));
    assert_eq!(
        put(&s3, "ver", "k", b"suspended").await.as_deref(),
        Some("null")
    );
    assert_eq!(read(&s3, "ver", "k", Some("null")).await, b"suspended");
    assert_eq!(read(&s3, "ver", "k", Some(&v2)).await, b"two");

    // Only Enabled and Suspended are valid.
    let signed_body =
        b"<VersioningConfiguration><Status>Sideways</Status></VersioningConfiguration>";
    let signed = server.signer().sign(
        "PUT",
        &server.addr.to_string(),
        "/ver",
        "versioning=",
        &[("content-length", signed_body.len().to_string())],
        &sha256_hex(signed_body),
    );
    let resp = raw_request(server.addr, &signed.head, signed_body).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(
        resp.text().contains("<Code>MalformedXML</Code>"),
        "{}",
        resp.text()
    );

    server.stop().await.unwrap();
}
