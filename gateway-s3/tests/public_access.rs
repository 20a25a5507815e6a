//! PublicAccessBlock and Object Ownership through the SDK: the Get/Put/Delete round trips,
//! what each PublicAccessBlock setting refuses or ignores, CreateBucket's
//! `x-amz-object-ownership`, and how BucketOwnerEnforced and BucketOwnerPreferred decide ACLs
//! and object owners.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketCannedAcl, ObjectCannedAcl, ObjectOwnership, OwnershipControls, OwnershipControlsRule,
    PublicAccessBlockConfiguration,
};
use common::*;

async fn put_block(s3: &aws_sdk_s3::Client, bucket: &str, c: PublicAccessBlockConfiguration) {
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(c)
        .send()
        .await
        .unwrap();
}

fn ownership(o: ObjectOwnership) -> OwnershipControls {
    OwnershipControls::builder()
        .rules(
            OwnershipControlsRule::builder()
                .object_ownership(o)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// The owner id GetObjectAcl shows, and how many grants.
async fn object_owner(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> (String, usize) {
    let acl = s3
        .get_object_acl()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let id = acl.owner().and_then(|o| o.id()).unwrap_or("").to_string();
    (id, acl.grants().len())
}

fn policy(statements: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#)
}

#[tokio::test]
async fn public_access_block_round_trips_and_blocks_public_acls() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("bpa").send().await.unwrap();
    let e = s3
        .get_public_access_block()
        .bucket("bpa")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_of(&e),
        (404, "NoSuchPublicAccessBlockConfiguration".into())
    );

    put_block(
        &s3,
        "bpa",
        PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .build(),
    )
    .await;
    let got = s3
        .get_public_access_block()
        .bucket("bpa")
        .send()
        .await
        .unwrap();
    let c = got.public_access_block_configuration().unwrap();
    assert_eq!(c.block_public_acls(), Some(true));
    assert_eq!(c.ignore_public_acls(), Some(false));
    assert_eq!(c.block_public_policy(), Some(false));
    assert_eq!(c.restrict_public_buckets(), Some(false));

    // Public ACLs on writes, copies, uploads and ACL changes are refused; private ones pass.
    let e = s3
        .put_object()
        .bucket("bpa")
        .key("a")
        .acl(ObjectCannedAcl::PublicRead)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    s3.put_object()
        .bucket("bpa")
        .key("a")
        .acl(ObjectCannedAcl::Private)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let e = s3
        .copy_object()
        .bucket("bpa")
        .key("b")
        .copy_source("bpa/a")
        .acl(ObjectCannedAcl::AuthenticatedRead)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    let e = s3
        .create_multipart_upload()
        .bucket("bpa")
        .key("m")
        .acl(ObjectCannedAcl::PublicReadWrite)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    let e = s3
        .put_object_acl()
        .bucket("bpa")
        .key("a")
        .acl(ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    let e = s3
        .put_bucket_acl()
        .bucket("bpa")
        .grant_read(format!("uri=\"{ALL_USERS}\""))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    second_key(&server).await;
    s3.put_bucket_acl()
        .bucket("bpa")
        .grant_read(format!("id=\"{KEY2}\""))
        .send()
        .await
        .unwrap();
    let (_, grants) = object_owner(&s3, "bpa", "a").await;
    assert_eq!(grants, 1, "the refused ACL was not stored");

    s3.delete_public_access_block()
        .bucket("bpa")
        .send()
        .await
        .unwrap();
    let e = s3
        .get_public_access_block()
        .bucket("bpa")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 404);
    s3.put_object_acl()
        .bucket("bpa")
        .key("a")
        .acl(ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn ignore_public_acls_leaves_public_grants_out() {
    let server = start().await;
    let s3 = server.s3();
    let other = second_key(&server).await;
    s3.create_bucket()
        .bucket("ipa")
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket("ipa")
        .key("open")
        .acl(ObjectCannedAcl::PublicRead)
        .body(ByteStream::from_static(b"open"))
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket("ipa")
        .key("k2")
        .grant_read(format!("id=\"{KEY2}\""))
        .body(ByteStream::from_static(b"k2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous(&server, "GET", "/ipa/open", b"").await.status,
        200
    );
    assert_eq!(anonymous(&server, "GET", "/ipa", b"").await.status, 200);

    put_block(
        &s3,
        "ipa",
        PublicAccessBlockConfiguration::builder()
            .ignore_public_acls(true)
            .build(),
    )
    .await;
    let got = anonymous(&server, "GET", "/ipa/open", b"").await;
    assert_eq!(
        (got.status, code_of(&got)),
        (403, "AccessDenied".into()),
        "{}",
        got.text()
    );
    assert_eq!(anonymous(&server, "GET", "/ipa", b"").await.status, 403);
    let e = other
        .get_object()
        .bucket("ipa")
        .key("open")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    // Grants to keys still count, and the stored ACL is unchanged.
    other
        .get_object()
        .bucket("ipa")
        .key("k2")
        .send()
        .await
        .unwrap();
    assert_eq!(object_owner(&s3, "ipa", "open").await.1, 2);

    s3.delete_public_access_block()
        .bucket("ipa")
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous(&server, "GET", "/ipa/open", b"").await.status,
        200
    );
}

#[tokio::test]
async fn block_public_policy_refuses_public_policies_only() {
    let server = start().await;
    let s3 = server.s3();
    second_key(&server).await;
    s3.create_bucket().bucket("bpp").send().await.unwrap();
    put_block(
        &s3,
        "bpp",
        PublicAccessBlockConfiguration::builder()
            .block_public_policy(true)
            .build(),
    )
    .await;
    let public = policy(
        r#"{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::bpp/*"}"#,
    );
    let e = s3
        .put_bucket_policy()
        .bucket("bpp")
        .policy(&public)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    let e = s3
        .get_bucket_policy()
        .bucket("bpp")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).1, "NoSuchBucketPolicy", "nothing was stored");

    // Not public: a named key, or everyone from fixed source addresses.
    let named = policy(&format!(
        r#"{{"Effect":"Allow","Principal":{{"AWS":"{KEY2}"}},"Action":"s3:GetObject","Resource":"arn:aws:s3:::bpp/*"}}"#
    ));
    s3.put_bucket_policy()
        .bucket("bpp")
        .policy(&named)
        .send()
        .await
        .unwrap();
    let by_address = policy(
        r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::bpp/*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}"#,
    );
    s3.put_bucket_policy()
        .bucket("bpp")
        .policy(&by_address)
        .send()
        .await
        .unwrap();
    let status = s3
        .get_bucket_policy_status()
        .bucket("bpp")
        .send()
        .await
        .unwrap();
    assert_eq!(status.policy_status().unwrap().is_public(), Some(false));

    s3.delete_public_access_block()
        .bucket("bpp")
        .send()
        .await
        .unwrap();
    s3.put_bucket_policy()
        .bucket("bpp")
        .policy(&public)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn restrict_public_buckets_keeps_only_named_keys_and_the_owner() {
    let server = start().await;
    let s3 = server.s3();
    let other = second_key(&server).await;
    s3.create_bucket().bucket("rpb").send().await.unwrap();
    put(&s3, "rpb", "doc", b"doc").await;
    let text = policy(&format!(
        r#"{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::rpb/*"}},
           {{"Effect":"Allow","Principal":{{"AWS":"{KEY2}"}},"Action":"s3:ListBucket","Resource":"arn:aws:s3:::rpb"}}"#
    ));
    s3.put_bucket_policy()
        .bucket("rpb")
        .policy(&text)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous(&server, "GET", "/rpb/doc", b"").await.status, 200);
    other
        .get_object()
        .bucket("rpb")
        .key("doc")
        .send()
        .await
        .unwrap();

    put_block(
        &s3,
        "rpb",
        PublicAccessBlockConfiguration::builder()
            .restrict_public_buckets(true)
            .build(),
    )
    .await;
    let got = anonymous(&server, "GET", "/rpb/doc", b"").await;
    assert_eq!((got.status, code_of(&got)), (403, "AccessDenied".into()));
    let e = other
        .get_object()
        .bucket("rpb")
        .key("doc")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    // The statement naming the key still applies; the owner is not affected.
    other.list_objects_v2().bucket("rpb").send().await.unwrap();
    s3.get_object()
        .bucket("rpb")
        .key("doc")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn ownership_controls_round_trip_and_create_bucket_header() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("own").send().await.unwrap();
    let e = s3
        .get_bucket_ownership_controls()
        .bucket("own")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (404, "OwnershipControlsNotFoundError".into()));
    s3.put_bucket_ownership_controls()
        .bucket("own")
        .ownership_controls(ownership(ObjectOwnership::BucketOwnerPreferred))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_bucket_ownership_controls()
        .bucket("own")
        .send()
        .await
        .unwrap();
    let rules = got.ownership_controls().unwrap().rules();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].object_ownership(),
        &ObjectOwnership::BucketOwnerPreferred
    );
    s3.delete_bucket_ownership_controls()
        .bucket("own")
        .send()
        .await
        .unwrap();
    let e = s3
        .get_bucket_ownership_controls()
        .bucket("own")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).0, 404);

    // A bucket whose ACL grants to others cannot have its ACLs disabled.
    s3.put_bucket_acl()
        .bucket("own")
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    let e = s3
        .put_bucket_ownership_controls()
        .bucket("own")
        .ownership_controls(ownership(ObjectOwnership::BucketOwnerEnforced))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_of(&e),
        (400, "InvalidBucketAclWithObjectOwnership".into())
    );

    // CreateBucket's x-amz-object-ownership.
    s3.create_bucket()
        .bucket("enforced")
        .object_ownership(ObjectOwnership::BucketOwnerEnforced)
        .send()
        .await
        .unwrap();
    let got = s3
        .get_bucket_ownership_controls()
        .bucket("enforced")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.ownership_controls().unwrap().rules()[0].object_ownership(),
        &ObjectOwnership::BucketOwnerEnforced
    );
    let e = s3
        .create_bucket()
        .bucket("enforced-public")
        .object_ownership(ObjectOwnership::BucketOwnerEnforced)
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_of(&e),
        (400, "InvalidBucketAclWithObjectOwnership".into())
    );
    let e = s3
        .create_bucket()
        .bucket("bogus")
        .object_ownership(ObjectOwnership::from("Everyone"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidArgument".into()));
    s3.head_bucket().bucket("enforced").send().await.unwrap();
    assert!(s3.head_bucket().bucket("bogus").send().await.is_err());
}

#[tokio::test]
async fn bucket_owner_enforced_disables_acls() {
    let server = start().await;
    let s3 = server.s3();
    let other = second_key(&server).await;
    s3.create_bucket()
        .bucket("noacl")
        .object_ownership(ObjectOwnership::BucketOwnerEnforced)
        .send()
        .await
        .unwrap();
    let not_supported = (400, "AccessControlListNotSupported".to_string());
    let e = s3
        .put_bucket_acl()
        .bucket("noacl")
        .acl(BucketCannedAcl::Private)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), not_supported);
    let e = s3
        .put_object()
        .bucket("noacl")
        .key("a")
        .acl(ObjectCannedAcl::PublicRead)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), not_supported);
    let msg = e
        .as_service_error()
        .and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::message(s).map(str::to_string));
    assert!(
        msg.as_deref()
            .is_some_and(|m| m.contains("does not allow ACLs")),
        "{msg:?}"
    );
    let e = s3
        .put_object()
        .bucket("noacl")
        .key("a")
        .grant_read(format!("id=\"{KEY2}\""))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), not_supported);
    s3.put_object()
        .bucket("noacl")
        .key("a")
        .acl(ObjectCannedAcl::BucketOwnerFullControl)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let e = s3
        .put_object_acl()
        .bucket("noacl")
        .key("a")
        .acl(ObjectCannedAcl::Private)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), not_supported);
    let acl = s3.get_bucket_acl().bucket("noacl").send().await.unwrap();
    assert_eq!(acl.grants().len(), 1);
    assert_eq!(
        acl.grants()[0].permission().unwrap().as_str(),
        "FULL_CONTROL"
    );

    // Another key writing through a policy: the bucket owner owns what it writes, and the
    // writer gets no control over it from having written it.
    let text = policy(&format!(
        r#"{{"Effect":"Allow","Principal":{{"AWS":"{KEY2}"}},"Action":"s3:PutObject","Resource":"arn:aws:s3:::noacl/*"}}"#
    ));
    s3.put_bucket_policy()
        .bucket("noacl")
        .policy(&text)
        .send()
        .await
        .unwrap();
    put(&other, "noacl", "from-k2", b"k2").await;
    assert_eq!(
        object_owner(&s3, "noacl", "from-k2").await,
        (KEY_ID.to_string(), 1)
    );
    let e = other
        .get_object()
        .bucket("noacl")
        .key("from-k2")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
}

#[tokio::test]
async fn bucket_owner_preferred_takes_objects_written_with_full_control() {
    let server = start().await;
    let s3 = server.s3();
    let other = second_key(&server).await;
    s3.create_bucket().bucket("pref").send().await.unwrap();
    s3.put_bucket_acl()
        .bucket("pref")
        .grant_write(format!("id=\"{KEY2}\""))
        .send()
        .await
        .unwrap();
    let write = |key: &'static str, canned: Option<ObjectCannedAcl>| {
        let other = other.clone();
        async move {
            other
                .put_object()
                .bucket("pref")
                .key(key)
                .set_acl(canned)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
                .unwrap();
        }
    };
    // No setting (ObjectWriter): the writer owns it, whatever the canned ACL.
    write("writer", Some(ObjectCannedAcl::BucketOwnerFullControl)).await;
    assert_eq!(object_owner(&s3, "pref", "writer").await.0, KEY2);

    s3.put_bucket_ownership_controls()
        .bucket("pref")
        .ownership_controls(ownership(ObjectOwnership::BucketOwnerPreferred))
        .send()
        .await
        .unwrap();
    write("given", Some(ObjectCannedAcl::BucketOwnerFullControl)).await;
    assert_eq!(object_owner(&s3, "pref", "given").await.0, KEY_ID);
    write("kept", None).await;
    assert_eq!(object_owner(&s3, "pref", "kept").await.0, KEY2);
    // ACLs still apply under BucketOwnerPreferred.
    s3.put_object_acl()
        .bucket("pref")
        .key("given")
        .acl(ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous(&server, "GET", "/pref/given", b"").await.status,
        200
    );
}
