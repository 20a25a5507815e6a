//! Object lock through the AWS SDK: bucket configuration and default retention, per-version
//! retention (governance and compliance), legal hold, and refusal to delete locked versions.

mod common;

use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{
    DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockLegalHold,
    ObjectLockLegalHoldStatus, ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode,
    ObjectLockRule,
};
use common::*;

fn in_secs(secs: i64) -> DateTime {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    DateTime::from_secs(now + secs)
}

async fn lock_bucket(s3: &aws_sdk_s3::Client, name: &str) {
    s3.create_bucket()
        .bucket(name)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn lock_configuration_and_default_retention() {
    let server = start().await;
    let s3 = server.s3();
    // A bucket without object lock has no configuration and refuses one while unversioned.
    s3.create_bucket().bucket("plain").send().await.unwrap();
    let err = s3
        .get_object_lock_configuration()
        .bucket("plain")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_of(&err),
        (404, "ObjectLockConfigurationNotFoundError".into())
    );
    let config = |mode, days| {
        ObjectLockConfiguration::builder()
            .object_lock_enabled(ObjectLockEnabled::Enabled)
            .rule(
                ObjectLockRule::builder()
                    .default_retention(DefaultRetention::builder().mode(mode).days(days).build())
                    .build(),
            )
            .build()
    };
    let err = s3
        .put_object_lock_configuration()
        .bucket("plain")
        .object_lock_configuration(config(ObjectLockRetentionMode::Governance, 1))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (409, "InvalidBucketState".into()));
    // Lock headers on a bucket without lock are refused.
    let err = s3
        .put_object()
        .bucket("plain")
        .key("k")
        .object_lock_mode(ObjectLockMode::Governance)
        .object_lock_retain_until_date(in_secs(3600))
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (400, "InvalidRequest".into()));

    // Created with lock: versioning is on and cannot be suspended.
    lock_bucket(&s3, "locked").await;
    let v = s3
        .get_bucket_versioning()
        .bucket("locked")
        .send()
        .await
        .unwrap();
    assert_eq!(v.status().map(|s| s.as_str()), Some("Enabled"));
    let err = s3
        .put_bucket_versioning()
        .bucket("locked")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (409, "InvalidBucketState".into()));

    // A zero-day default is refused; a valid one applies to new versions.
    let err = s3
        .put_object_lock_configuration()
        .bucket("locked")
        .object_lock_configuration(config(ObjectLockRetentionMode::Governance, 0))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (400, "InvalidRetentionPeriod".into()));
    s3.put_object_lock_configuration()
        .bucket("locked")
        .object_lock_configuration(config(ObjectLockRetentionMode::Governance, 1))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object_lock_configuration()
        .bucket("locked")
        .send()
        .await
        .unwrap();
    let retention = got
        .object_lock_configuration()
        .and_then(|c| c.rule())
        .and_then(|r| r.default_retention())
        .unwrap();
    assert_eq!(retention.days(), Some(1));
    assert_eq!(retention.mode(), Some(&ObjectLockRetentionMode::Governance));

    let id = put(&s3, "locked", "doc", b"v1").await.unwrap();
    let r = s3
        .get_object_retention()
        .bucket("locked")
        .key("doc")
        .version_id(&id)
        .send()
        .await
        .unwrap();
    let r = r.retention().unwrap();
    assert_eq!(r.mode(), Some(&ObjectLockRetentionMode::Governance));
    // HEAD shows the lock.
    let head = s3
        .head_object()
        .bucket("locked")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Governance));
    assert_eq!(head.object_lock_retain_until_date(), r.retain_until_date());
    assert_eq!(head.object_lock_legal_hold_status(), None);
    let until = r.retain_until_date().unwrap().secs();
    let day_from_now = in_secs(86_400).secs();
    assert!(
        (until - day_from_now).abs() < 60,
        "{until} vs {day_from_now}"
    );

    // Deleting the version is refused; deleting without a version adds a marker.
    let err = s3
        .delete_object()
        .bucket("locked")
        .key("doc")
        .version_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (403, "AccessDenied".into()));
    let marker = s3
        .delete_object()
        .bucket("locked")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(marker.delete_marker(), Some(true));
    // Governance can be bypassed.
    s3.delete_object()
        .bucket("locked")
        .key("doc")
        .version_id(&id)
        .bypass_governance_retention(true)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn retention_can_only_grow_and_compliance_cannot_be_bypassed() {
    let server = start().await;
    let s3 = server.s3();
    lock_bucket(&s3, "retain").await;
    let out = s3
        .put_object()
        .bucket("retain")
        .key("c")
        .object_lock_mode(ObjectLockMode::Compliance)
        .object_lock_retain_until_date(in_secs(3600))
        .body(b"keep me".to_vec().into())
        .send()
        .await
        .unwrap();
    let id = out.version_id().unwrap().to_string();
    let retention = |mode, secs| {
        ObjectLockRetention::builder()
            .mode(mode)
            .retain_until_date(in_secs(secs))
            .build()
    };
    // Shorter or weaker: refused even with bypass.
    for (mode, secs) in [
        (ObjectLockRetentionMode::Compliance, 60),
        (ObjectLockRetentionMode::Governance, 7200),
    ] {
        let err = s3
            .put_object_retention()
            .bucket("retain")
            .key("c")
            .version_id(&id)
            .retention(retention(mode, secs))
            .bypass_governance_retention(true)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_of(&err), (403, "AccessDenied".into()));
    }
    // Longer: fine.
    s3.put_object_retention()
        .bucket("retain")
        .key("c")
        .version_id(&id)
        .retention(retention(ObjectLockRetentionMode::Compliance, 7200))
        .send()
        .await
        .unwrap();
    let err = s3
        .delete_object()
        .bucket("retain")
        .key("c")
        .version_id(&id)
        .bypass_governance_retention(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (403, "AccessDenied".into()));
    // A date in the past is refused.
    let err = s3
        .put_object_retention()
        .bucket("retain")
        .key("c")
        .version_id(&id)
        .retention(retention(ObjectLockRetentionMode::Compliance, -60))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err).0, 400);
    assert_eq!(read(&s3, "retain", "c", Some(&id)).await, b"keep me");
}

#[tokio::test]
async fn legal_hold_blocks_deletion_until_released() {
    let server = start().await;
    let s3 = server.s3();
    lock_bucket(&s3, "hold").await;
    let id = put(&s3, "hold", "evidence", b"exhibit").await.unwrap();
    let got = s3
        .get_object_legal_hold()
        .bucket("hold")
        .key("evidence")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.legal_hold().and_then(|h| h.status()),
        Some(&ObjectLockLegalHoldStatus::Off)
    );
    let hold = |status| ObjectLockLegalHold::builder().status(status).build();
    s3.put_object_legal_hold()
        .bucket("hold")
        .key("evidence")
        .version_id(&id)
        .legal_hold(hold(ObjectLockLegalHoldStatus::On))
        .send()
        .await
        .unwrap();
    let err = s3
        .delete_object()
        .bucket("hold")
        .key("evidence")
        .version_id(&id)
        .bypass_governance_retention(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (403, "AccessDenied".into()));
    // DeleteObjects reports the refusal per key.
    let del = s3
        .delete_objects()
        .bucket("hold")
        .delete(
            aws_sdk_s3::types::Delete::builder()
                .objects(
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key("evidence")
                        .version_id(&id)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(del.errors().len(), 1);
    assert_eq!(del.errors()[0].code(), Some("AccessDenied"));

    s3.put_object_legal_hold()
        .bucket("hold")
        .key("evidence")
        .version_id(&id)
        .legal_hold(hold(ObjectLockLegalHoldStatus::Off))
        .send()
        .await
        .unwrap();
    s3.delete_object()
        .bucket("hold")
        .key("evidence")
        .version_id(&id)
        .send()
        .await
        .unwrap();

    // Legal hold on a bucket without lock is refused.
    s3.create_bucket().bucket("nolock").send().await.unwrap();
    put(&s3, "nolock", "k", b"x").await;
    let err = s3
        .put_object_legal_hold()
        .bucket("nolock")
        .key("k")
        .legal_hold(hold(ObjectLockLegalHoldStatus::On))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&err), (400, "InvalidRequest".into()));
}
