//! Bucket behaviours that must match S3: deleting a bucket that only holds unfinished uploads,
//! re-creating an owned bucket in us-east-1, owner display names, ACL grant lists, the
//! expected-bucket-owner check, lifecycle transition dates and the older rule-level Prefix.

mod common;

use aws_sdk_s3::types::{
    AccessControlPolicy, BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleFilter, ObjectCannedAcl, Owner, Permission, Transition,
    TransitionStorageClass, Type,
};
use common::*;

#[tokio::test]
async fn deleting_a_bucket_with_only_unfinished_uploads_deletes_them() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    let upload = s3
        .create_multipart_upload()
        .bucket("mpu")
        .key("big")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap().to_string();
    s3.upload_part()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .part_number(1)
        .body(b"part".to_vec().into())
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket("mpu").send().await.unwrap();
    let e = s3.head_bucket().bucket("mpu").send().await.unwrap_err();
    assert_eq!(error_of(&e).0, 404);
    // A bucket with an object still refuses.
    s3.create_bucket().bucket("full").send().await.unwrap();
    put(&s3, "full", "k", b"x").await;
    let e = s3.delete_bucket().bucket("full").send().await.unwrap_err();
    assert_eq!(error_of(&e), (409, "BucketNotEmpty".to_string()));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn creating_an_owned_bucket_again_in_us_east_1_succeeds() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("again").send().await.unwrap();
    s3.create_bucket().bucket("again").send().await.unwrap();
    server.stop().await.unwrap();
    // Another region keeps BucketAlreadyOwnedByYou.
    let server = start_with(cairn_s3::S3Config {
        region: Some("eu-west-1".into()),
        ..Default::default()
    })
    .await;
    let s3 = server.s3_as(KEY_ID, SECRET, "eu-west-1");
    s3.create_bucket().bucket("again").send().await.unwrap();
    let e = s3.create_bucket().bucket("again").send().await.unwrap_err();
    assert_eq!(error_of(&e), (409, "BucketAlreadyOwnedByYou".to_string()));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn owner_display_names_are_the_same_everywhere() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("names").send().await.unwrap();
    put(&s3, "names", "k", b"x").await;
    let buckets = s3.list_buckets().send().await.unwrap();
    let listed = buckets
        .owner()
        .and_then(Owner::display_name)
        .map(str::to_string);
    let objects = s3.list_objects().bucket("names").send().await.unwrap();
    let in_v1 = objects.contents()[0]
        .owner()
        .and_then(Owner::display_name)
        .map(str::to_string);
    let acl = s3.get_bucket_acl().bucket("names").send().await.unwrap();
    let in_acl = acl
        .owner()
        .and_then(Owner::display_name)
        .map(str::to_string);
    let object_acl = s3
        .get_object_acl()
        .bucket("names")
        .key("k")
        .send()
        .await
        .unwrap();
    let in_object_acl = object_acl
        .owner()
        .and_then(Owner::display_name)
        .map(str::to_string);
    assert_eq!(listed.as_deref(), Some("test"));
    assert_eq!(in_v1, listed);
    assert_eq!(in_acl, listed);
    assert_eq!(in_object_acl, listed);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn object_acls_follow_s3_grant_lists() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("acls").send().await.unwrap();
    put(&s3, "acls", "k", b"x").await;
    // A canned public-read-write ACL on an object is accepted: the owner's full control first,
    // then everyone's READ and WRITE.
    s3.put_object_acl()
        .bucket("acls")
        .key("k")
        .acl(ObjectCannedAcl::PublicReadWrite)
        .send()
        .await
        .unwrap();
    let acl = s3
        .get_object_acl()
        .bucket("acls")
        .key("k")
        .send()
        .await
        .unwrap();
    let grants: Vec<_> = acl
        .grants()
        .iter()
        .map(|g| {
            let grantee = g.grantee().unwrap();
            (
                grantee.r#type().clone(),
                grantee.id().or(grantee.uri()).unwrap_or("").to_string(),
                g.permission().unwrap().clone(),
            )
        })
        .collect();
    let all = "http://acs.amazonaws.com/groups/global/AllUsers".to_string();
    assert_eq!(
        grants,
        vec![
            (
                Type::CanonicalUser,
                KEY_ID.to_string(),
                Permission::FullControl
            ),
            (Type::Group, all.clone(), Permission::Read),
            (Type::Group, all, Permission::Write),
        ]
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_wrong_expected_bucket_owner_is_access_denied() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("mine").send().await.unwrap();
    put(&s3, "mine", "k", b"x").await;
    s3.get_object()
        .bucket("mine")
        .key("k")
        .expected_bucket_owner(KEY_ID)
        .send()
        .await
        .unwrap();
    let e = s3
        .get_object()
        .bucket("mine")
        .key("k")
        .expected_bucket_owner("AKIASOMEONEELSE00000")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".to_string()));
    let e = s3
        .list_objects_v2()
        .bucket("mine")
        .expected_bucket_owner("AKIASOMEONEELSE00000")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".to_string()));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn lifecycle_transitions_with_a_bad_date_are_bad_requests() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("life").send().await.unwrap();
    // Not at midnight UTC.
    let date = aws_smithy_types::DateTime::from_secs(1_900_000_123);
    let rule = LifecycleRule::builder()
        .id("move")
        .filter(
            aws_sdk_s3::types::LifecycleRuleFilter::builder()
                .prefix("")
                .build(),
        )
        .status(ExpirationStatus::Enabled)
        .transitions(
            Transition::builder()
                .date(date)
                .storage_class(TransitionStorageClass::Glacier)
                .build(),
        )
        .build()
        .unwrap();
    let e = s3
        .put_bucket_lifecycle_configuration()
        .bucket("life")
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidArgument".to_string()));
    server.stop().await.unwrap();
}

/// An AccessControlPolicy with no grants leaves an ACL with no grants (S3 does not keep the
/// owner's FULL_CONTROL unless the body lists it); a canned ACL afterwards lists it again.
#[tokio::test]
async fn an_acl_body_without_grants_lists_none() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("noacl").send().await.unwrap();
    put(&s3, "noacl", "k", b"x").await;
    let empty = || {
        AccessControlPolicy::builder()
            .owner(Owner::builder().id(KEY_ID).build())
            .build()
    };
    s3.put_object_acl()
        .bucket("noacl")
        .key("k")
        .access_control_policy(empty())
        .send()
        .await
        .unwrap();
    let acl = s3
        .get_object_acl()
        .bucket("noacl")
        .key("k")
        .send()
        .await
        .unwrap();
    assert!(acl.grants().is_empty(), "{:?}", acl.grants());
    assert_eq!(acl.owner().and_then(|o| o.id()), Some(KEY_ID));
    s3.put_bucket_acl()
        .bucket("noacl")
        .access_control_policy(empty())
        .send()
        .await
        .unwrap();
    let acl = s3.get_bucket_acl().bucket("noacl").send().await.unwrap();
    assert!(acl.grants().is_empty(), "{:?}", acl.grants());

    s3.put_object_acl()
        .bucket("noacl")
        .key("k")
        .acl(ObjectCannedAcl::Private)
        .send()
        .await
        .unwrap();
    let acl = s3
        .get_object_acl()
        .bucket("noacl")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(acl.grants().len(), 1);
    assert_eq!(acl.grants()[0].permission(), Some(&Permission::FullControl));
    server.stop().await.unwrap();
}

/// A lifecycle rule given with the older rule-level Prefix is shown back with it, and one
/// given with a Filter with its Filter, as S3 does.
#[tokio::test]
#[allow(deprecated)] // the rule-level Prefix is what this test is about
async fn a_lifecycle_rule_keeps_the_form_of_its_prefix() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("lcprefix").send().await.unwrap();
    let expire = || LifecycleExpiration::builder().days(3).build();
    let legacy = LifecycleRule::builder()
        .id("legacy")
        .status(ExpirationStatus::Enabled)
        .prefix("logs/")
        .expiration(expire())
        .build()
        .unwrap();
    let filtered = LifecycleRule::builder()
        .id("filtered")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
        .expiration(expire())
        .build()
        .unwrap();
    s3.put_bucket_lifecycle_configuration()
        .bucket("lcprefix")
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(legacy)
                .rules(filtered)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let got = s3
        .get_bucket_lifecycle_configuration()
        .bucket("lcprefix")
        .send()
        .await
        .unwrap();
    let rules = got.rules();
    assert_eq!(rules.len(), 2);
    let legacy = rules.iter().find(|r| r.id() == Some("legacy")).unwrap();
    assert_eq!(legacy.prefix(), Some("logs/"));
    assert!(legacy.filter().is_none(), "{legacy:?}");
    let filtered = rules.iter().find(|r| r.id() == Some("filtered")).unwrap();
    assert_eq!(filtered.prefix(), None);
    assert_eq!(filtered.filter().and_then(|f| f.prefix()), Some("tmp/"));
    server.stop().await.unwrap();
}
